//! x86_64 specifics: register layout, trapped instructions, CPUID masking, whether this
//! machine can trap `cpuid`.

pub mod self_traps;

use crate::ptrace::Regs;

/// The `syscall` instruction.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];

/// Instructions the recorder traps and emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trapped {
    /// `rdtsc` (2 bytes).
    Rdtsc,
    /// `rdtscp` (3 bytes).
    Rdtscp,
    /// `cpuid` (2 bytes).
    Cpuid,
}

impl Trapped {
    /// Decodes the instruction at the faulting address.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x0f, 0x31, ..] => Some(Trapped::Rdtsc),
            [0x0f, 0x01, 0xf9, ..] => Some(Trapped::Rdtscp),
            [0x0f, 0xa2, ..] => Some(Trapped::Cpuid),
            _ => None,
        }
    }

    /// Instruction length in bytes.
    pub fn length(self) -> u64 {
        match self {
            Trapped::Rdtscp => 3,
            _ => 2,
        }
    }
}

/// Writes an rdtsc/rdtscp result into the registers and steps over the instruction.
pub fn apply_tsc(regs: &mut Regs, tsc: u64, aux: u32, rdtscp: bool) {
    regs.rax = tsc & 0xffff_ffff;
    regs.rdx = tsc >> 32;
    if rdtscp {
        regs.rcx = aux as u64;
    }
    regs.rip += if rdtscp {
        Trapped::Rdtscp.length()
    } else {
        Trapped::Rdtsc.length()
    };
}

/// Writes a cpuid result (eax, ebx, ecx, edx) into the registers and steps over it.
pub fn apply_cpuid(regs: &mut Regs, out: [u32; 4]) {
    regs.rax = out[0] as u64;
    regs.rbx = out[1] as u64;
    regs.rcx = out[2] as u64;
    regs.rdx = out[3] as u64;
    regs.rip += Trapped::Cpuid.length();
}

/// Registers as a flat vector for the trace (the 27 words of `user_regs_struct`).
pub fn regs_to_vec(r: &Regs) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}

/// The inverse of [`regs_to_vec`]; `None` if the vector has the wrong length.
pub fn regs_from_vec(v: &[u64]) -> Option<Regs> {
    if v.len() != 27 {
        return None;
    }
    Some(Regs {
        r15: v[0],
        r14: v[1],
        r13: v[2],
        r12: v[3],
        rbp: v[4],
        rbx: v[5],
        r11: v[6],
        r10: v[7],
        r9: v[8],
        r8: v[9],
        rax: v[10],
        rcx: v[11],
        rdx: v[12],
        rsi: v[13],
        rdi: v[14],
        orig_rax: v[15],
        rip: v[16],
        cs: v[17],
        eflags: v[18],
        rsp: v[19],
        ss: v[20],
        fs_base: v[21],
        gs_base: v[22],
        ds: v[23],
        es: v[24],
        fs: v[25],
        gs: v[26],
    })
}

/// Executes cpuid on this CPU and hides the features a trace should not depend on, so a
/// recording replays on common machines: AVX-512, RDRAND, RDSEED, TSX (HLE/RTM), and the
/// hypervisor's own leaves stay as they are. Also hides PKU/OSPKE.
pub fn masked_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let mut out = cached_cpuid(leaf, subleaf);
    match (leaf, subleaf) {
        (1, _) => {
            out[2] &= !(1 << 30); // RDRAND
        }
        (7, 0) => {
            // ebx: HLE(4) RTM(11) RDSEED(18) AVX512F(16) DQ(17) IFMA(21) PF(26) ER(27) CD(28) BW(30) VL(31)
            out[1] &= !((1 << 4)
                | (1 << 11)
                | (1 << 18)
                | (1 << 16)
                | (1 << 17)
                | (1 << 21)
                | (1 << 26)
                | (1 << 27)
                | (1 << 28)
                | (1 << 30)
                | (1 << 31));
            // ecx: AVX512_VBMI(1) PKU(3) OSPKE(4) AVX512_VBMI2(6) AVX512_VNNI(11) BITALG(12) VPOPCNTDQ(14)
            out[2] &=
                !((1 << 1) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14));
            // edx: AVX512_4VNNIW(2) 4FMAPS(3) VP2INTERSECT(8) RTM_ALWAYS_ABORT(11) AVX512_FP16(23)
            out[3] &= !((1 << 2) | (1 << 3) | (1 << 8) | (1 << 23));
        }
        _ => {}
    }
    out
}

/// Executes cpuid once per (CPU, leaf, subleaf) and remembers the answer.
///
/// The engine thread has CPUID faulting armed (see [`self_traps`]), so each cpuid it
/// executes costs a fault and two MSR writes (~20 µs here); glibc's start-up alone asks
/// ~80 times per exec. The CPU is part of the key because some leaves (the APIC ids in
/// leaves 1, 0xB and 0x1F) differ between CPUs, and recordings run pinned to one.
fn cached_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    /// (CPU, leaf, subleaf) -> eax, ebx, ecx, edx.
    type Answers = HashMap<(i32, u32, u32), [u32; 4]>;
    static CACHE: OnceLock<Mutex<Answers>> = OnceLock::new();
    // SAFETY: plain libc call.
    let cpu = unsafe { libc::sched_getcpu() };
    let key = (cpu, leaf, subleaf);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return *hit;
    }
    let r = std::arch::x86_64::__cpuid_count(leaf, subleaf);
    let out = [r.eax, r.ebx, r.ecx, r.edx];
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, out);
    out
}

/// Whether CPUID faulting works on this machine (`arch_prctl(ARCH_SET_CPUID, 0)`): replay
/// needs it to hand a program the recorded `cpuid` answers, and an archive's
/// compatibility check asks the same question (`packer::compat`).
///
/// Probed in a forked child: turning faulting on in this thread would make its own
/// `cpuid` instructions fault.
pub fn cpuid_faulting_available() -> bool {
    // SAFETY: the child makes only raw system calls and `_exit` (async-signal-safe, as
    // required after a fork of a possibly multithreaded process); the parent waits for
    // it with a pointer to a local.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return false;
        }
        if pid == 0 {
            let r = libc::syscall(
                libc::SYS_arch_prctl,
                crate::kernel::ARCH_SET_CPUID,
                0 as libc::c_ulong,
            );
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                return false;
            }
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// Reads the time-stamp counter of this CPU.
pub fn read_tsc() -> (u64, u32) {
    let mut aux = 0u32;
    // SAFETY: rdtscp is available on every x86_64 CPU this runs on.
    let tsc = unsafe { std::arch::x86_64::__rdtscp(&mut aux) };
    (tsc, aux)
}

/// The six system call argument registers, in order (x86_64: rdi, rsi, rdx, r10, r8, r9).
pub fn syscall_args(r: &Regs) -> [u64; 6] {
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
}

/// Sets the six system call argument registers.
pub fn set_syscall_args(r: &mut Regs, a: &[u64; 6]) {
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] = *a;
}
