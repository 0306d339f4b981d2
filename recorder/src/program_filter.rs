//! The program's own seccomp filters (`seccomp(SECCOMP_SET_MODE_FILTER)`,
//! `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`).
//!
//! The kernel stacks filters and acts on the most severe verdict of all of them, so a
//! program filter that answers `ERRNO`, `TRAP` or `KILL` would act before the
//! recorder's `TRACE`: the call would never stop, and replay (which skips calls with
//! `PTRACE_SYSEMU`, where no filter runs) could not know. So the recorder installs a
//! rewritten copy instead ([`rewrite`]): every verdict other than `ALLOW` and `LOG`
//! becomes `TRACE`, the call stops, and the engine computes the original verdict
//! itself from a copy of the thread's filters ([`Chain::verdict`], a classic-BPF
//! interpreter) and applies it (`record::Recorder::apply_verdict`), writing an
//! [`crate::trace::Event::Filtered`] that replay applies the same way. The kernel keeps
//! what it is good at: inheritance by children and across exec, `TSYNC`.

use std::sync::Arc;

use crate::errors::Result;
use crate::inject::inject_syscall;
use crate::ptrace::Task;

/// `seccomp()` operation: strict mode.
pub const SECCOMP_SET_MODE_STRICT: u64 = 0;
/// `seccomp()` operation: install a filter.
pub const SECCOMP_SET_MODE_FILTER: u64 = 1;
/// `seccomp()` operation: the user-notification structures' sizes.
pub const SECCOMP_GET_NOTIF_SIZES: u64 = 3;
/// Install the filter in every thread of the process.
pub const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
/// Return a user-notification fd.
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 8;
/// `prctl(PR_SET_SECCOMP)`'s and `PR_GET_SECCOMP`'s filter mode.
pub const SECCOMP_MODE_FILTER: u64 = 2;

/// Filter actions (`SECCOMP_RET_*`), most severe first.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// Kill the calling thread.
pub const RET_KILL_THREAD: u32 = 0;
/// Skip the call, send SIGSYS.
pub const RET_TRAP: u32 = 0x0003_0000;
/// Skip the call, return `-data`.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// Ask a user-space supervisor.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// Stop for the tracer (`PTRACE_EVENT_SECCOMP`).
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// Allow, and log.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// Allow.
pub const RET_ALLOW: u32 = 0x7fff_0000;
const ACTION_FULL: u32 = 0xffff_0000;
const DATA: u32 = 0x0000_ffff;
/// The data of the rewritten filters' `TRACE` (the recorder's own filter says 0).
const MARK: u32 = 0x5ec0;
/// `BPF_MAXINSNS`.
const MAX_INSNS: usize = 4096;
/// `SYS_SECCOMP`, the `si_code` of a filter's `SIGSYS`.
const SYS_SECCOMP: i32 = 1;

/// One installed program filter (the program's own instructions).
pub type Filter = Arc<Vec<libc::sock_filter>>;

/// The program filters in effect for a thread, oldest first (the recorder's own one,
/// installed before them, is not in it).
#[derive(Clone, Default)]
pub struct Chain(
    /// The filters' programs.
    pub Vec<Filter>,
);

/// What the kernel does with a call, from the most severe verdict of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// ALLOW or LOG: the call runs.
    Allow,
    /// The call is skipped and returns this (`-errno`; `-ENOSYS` for a `TRACE` when the
    /// program has no tracer of its own).
    Fail(i64),
    /// The call is skipped, `rax` keeps the call's number, and `SIGSYS` is forced on
    /// the thread with this `si_errno`.
    Trap(u16),
    /// The whole process dies of `SIGSYS` (`KILL_PROCESS`, `KILL_THREAD` of a last
    /// thread, or an unknown action).
    KillProcess(u16),
    /// Only the thread dies.
    KillThread(u16),
    /// `USER_NOTIF`: a supervisor would answer.
    Notify,
}

impl Verdict {
    /// The verdict for the kernel's return value `ret` (`live`: threads alive in the
    /// process).
    pub fn from_ret(ret: u32, live: usize) -> Verdict {
        let data = (ret & DATA) as u16;
        match ret & ACTION_FULL {
            RET_ALLOW | RET_LOG => Verdict::Allow,
            RET_ERRNO => Verdict::Fail(-(i64::from(data).min(4095))),
            RET_TRACE => Verdict::Fail(-(libc::ENOSYS as i64)),
            RET_TRAP => Verdict::Trap(data),
            RET_USER_NOTIF => Verdict::Notify,
            RET_KILL_THREAD if live > 1 => Verdict::KillThread(data),
            _ => Verdict::KillProcess(data),
        }
    }
}

/// `struct seccomp_data` for a call made on x86_64.
pub fn seccomp_data(nr: u64, ip: u64, args: &[u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
    d[4..8].copy_from_slice(&crate::kernel::AUDIT_ARCH_X86_64.to_le_bytes());
    d[8..16].copy_from_slice(&ip.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs one classic-BPF seccomp program on `data` as the kernel does; `None` for a
/// program the kernel would not have accepted (it never gets that far).
pub fn run(prog: &[libc::sock_filter], data: &[u8; 64]) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    for _ in 0..=prog.len() {
        let i = *prog.get(pc)?;
        let k = i.k;
        pc += 1;
        let src = if i.code & 0x08 != 0 { x } else { k };
        match i.code {
            0x20 => {
                let o = k as usize;
                a = u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?);
            }
            0x80 => a = 64,
            0x81 => x = 64,
            0x00 => a = k,
            0x01 => x = k,
            0x60 => a = *mem.get(k as usize)?,
            0x61 => x = *mem.get(k as usize)?,
            0x02 => *mem.get_mut(k as usize)? = a,
            0x03 => *mem.get_mut(k as usize)? = x,
            0x07 => x = a,
            0x87 => a = x,
            0x06 => return Some(k),
            0x16 => return Some(a),
            0x84 => a = a.wrapping_neg(),
            c if c & 0x07 == 0x04 => {
                a = match c & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    // Division by zero ends the program with 0 (KILL_THREAD).
                    0x30 => match a.checked_div(src) {
                        Some(q) => q,
                        None => return Some(0),
                    },
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x90 => match a.checked_rem(src) {
                        Some(r) => r,
                        None => return Some(0),
                    },
                    0xa0 => a ^ src,
                    _ => return None,
                };
            }
            0x05 => pc = pc.checked_add(k as usize)?,
            c if c & 0x07 == 0x05 => {
                let hit = match c & 0xf0 {
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return None,
                };
                pc += if hit { i.jt } else { i.jf } as usize;
            }
            _ => return None,
        }
    }
    None
}

impl Chain {
    /// The kernel's verdict on a call: the most severe of all filters' (the lowest
    /// action as a signed number; the newest filter's among equals).
    pub fn verdict(&self, nr: u64, ip: u64, args: &[u64; 6]) -> Option<u32> {
        let data = seccomp_data(nr, ip, args);
        let mut best: Option<u32> = None;
        for f in self.0.iter().rev() {
            let r = run(f, &data)?;
            if best.map_or(true, |b| {
                ((r & ACTION_FULL) as i32) < ((b & ACTION_FULL) as i32)
            }) {
                best = Some(r);
            }
        }
        best
    }

    /// No program filter is in effect.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a program filter cannot be recorded.
pub enum Refusal {
    /// The kernel would refuse it (EINVAL): let the program see that.
    Invalid,
    /// Too long once rewritten, or it asks for a user-space supervisor (why).
    Unsupported(&'static str),
}

/// The rewritten copy the recorder installs: `ALLOW` and `LOG` stay `ALLOW`, every
/// other verdict becomes `TRACE` (the engine decides at the stop). A `ret A` jumps to
/// an epilogue that does the same with the accumulator.
pub fn rewrite(prog: &[libc::sock_filter]) -> std::result::Result<Vec<libc::sock_filter>, Refusal> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(Refusal::Invalid);
    }
    let trace = RET_TRACE | MARK;
    let n = prog.len();
    let mut out = Vec::with_capacity(n + 5);
    let mut ret_a = false;
    for (at, i) in prog.iter().enumerate() {
        let mut i = *i;
        match i.code {
            0x06 => {
                let action = i.k & ACTION_FULL;
                if action == RET_USER_NOTIF {
                    return Err(Refusal::Unsupported(
                        "it answers SECCOMP_RET_USER_NOTIF (a user-space supervisor)",
                    ));
                }
                i.k = if matches!(action, RET_ALLOW | RET_LOG) {
                    RET_ALLOW
                } else {
                    trace
                };
            }
            0x16 => {
                ret_a = true;
                i = libc::sock_filter {
                    code: 0x05,
                    jt: 0,
                    jf: 0,
                    k: (n - at - 1) as u32,
                };
            }
            _ => {}
        }
        out.push(i);
    }
    if ret_a {
        if n + 5 > MAX_INSNS {
            return Err(Refusal::Unsupported(
                "it is too long to be rewritten (4091 instructions at most)",
            ));
        }
        let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        out.push(ins(0x54, 0, 0, ACTION_FULL));
        out.push(ins(0x15, 2, 0, RET_ALLOW));
        out.push(ins(0x15, 1, 0, RET_LOG));
        out.push(ins(0x06, 0, 0, trace));
        out.push(ins(0x06, 0, 0, RET_ALLOW));
    }
    Ok(out)
}

/// Parses a `sock_filter` array.
pub fn parse(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// Serialises a `sock_filter` array.
pub fn to_bytes(prog: &[libc::sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        bytes.extend_from_slice(&i.code.to_le_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_le_bytes());
    }
    bytes
}

/// The siginfo of a filter's `SIGSYS` for call `nr` made at `ip` (the address after
/// its `syscall` instruction).
pub fn sigsys_info(nr: u64, ip: u64, errno: u16) -> libc::siginfo_t {
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&libc::SIGSYS.to_le_bytes());
    b[4..8].copy_from_slice(&i32::from(errno).to_le_bytes());
    b[8..12].copy_from_slice(&SYS_SECCOMP.to_le_bytes());
    b[16..24].copy_from_slice(&ip.to_le_bytes());
    b[24..28].copy_from_slice(&(nr as i32).to_le_bytes());
    b[28..32].copy_from_slice(&crate::kernel::AUDIT_ARCH_X86_64.to_le_bytes());
    // SAFETY: 128 bytes of plain data, the size of a siginfo_t.
    unsafe { std::ptr::read_unaligned(b.as_ptr() as *const libc::siginfo_t) }
}

/// What the kernel does before forcing a filter's `SIGSYS`: for a kill, or when the
/// thread blocks or ignores it, its action becomes the default one (the process dies)
/// and it is unblocked. `task` is stopped at the call's entry, the call skipped; the
/// `rt_sigaction` runs through the call's own `syscall` instruction with its
/// `struct sigaction` below the stack's red zone (put back afterwards).
pub fn force_default_sigsys(task: &mut Task, kill: bool) -> Result<()> {
    let bit = 1u64 << (libc::SIGSYS - 1);
    let mask = task.sigmask()?;
    let blocked = mask & bit != 0;
    let ignored = status_has(task.tid, "SigIgn:", bit);
    if !(kill || blocked || ignored) {
        return Ok(());
    }
    let regs = task.regs()?;
    let at = (regs.rsp - 128 - 64) & !15;
    let saved = task.read_mem(at, 32)?;
    task.write_mem(at, &[0u8; 32])?;
    let r = inject_syscall(
        task,
        regs.rip - 2,
        libc::SYS_rt_sigaction as u64,
        &[libc::SIGSYS as u64, at, 0, 8],
    );
    task.write_mem(at, &saved)?;
    r?;
    task.set_sigmask(mask & !bit)
}

fn status_has(tid: i32, key: &str, bit: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|m| m & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// nr == 39 (getpid) -> ERRNO 5; nr == 102 -> A-return of TRAP|7; else ALLOW.
    fn sample() -> Vec<libc::sock_filter> {
        vec![
            ins(0x20, 0, 0, 0),
            ins(0x15, 0, 1, 39),
            ins(0x06, 0, 0, RET_ERRNO | 5),
            ins(0x15, 0, 2, 102),
            ins(0x00, 0, 0, RET_TRAP | 7),
            ins(0x16, 0, 0, 0),
            ins(0x06, 0, 0, RET_ALLOW),
        ]
    }

    #[test]
    fn verdicts_and_rewrite() {
        let p = sample();
        let d = |nr| seccomp_data(nr, 0x1000, &[0; 6]);
        assert_eq!(run(&p, &d(39)), Some(RET_ERRNO | 5));
        assert_eq!(run(&p, &d(102)), Some(RET_TRAP | 7));
        assert_eq!(run(&p, &d(1)), Some(RET_ALLOW));
        let Ok(r) = rewrite(&p) else { panic!() };
        assert_eq!(run(&r, &d(39)), Some(RET_TRACE | MARK));
        assert_eq!(run(&r, &d(102)), Some(RET_TRACE | MARK));
        assert_eq!(run(&r, &d(1)), Some(RET_ALLOW));
        let chain = Chain(vec![
            Arc::new(p),
            Arc::new(vec![ins(0x06, 0, 0, RET_ERRNO | 1)]),
        ]);
        // TRAP beats ERRNO; ERRNO 5 of the older filter and ERRNO 1 of the newer: newer.
        assert_eq!(chain.verdict(102, 0, &[0; 6]), Some(RET_TRAP | 7));
        assert_eq!(chain.verdict(39, 0, &[0; 6]), Some(RET_ERRNO | 1));
        assert_eq!(Verdict::from_ret(RET_ERRNO | 5000, 1), Verdict::Fail(-4095));
        assert_eq!(
            Verdict::from_ret(RET_KILL_THREAD, 1),
            Verdict::KillProcess(0)
        );
        assert_eq!(
            Verdict::from_ret(RET_KILL_THREAD, 2),
            Verdict::KillThread(0)
        );
    }
}
