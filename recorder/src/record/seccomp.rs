//! The seccomp filter that decides which system calls stop the program.
//!
//! Tracing with `PTRACE_SYSCALL` stops a thread twice at every call. The recorder instead
//! installs a seccomp filter in the program at its first exec (children and later execs
//! inherit it) and resumes threads with `PTRACE_CONT`: a call stops only when the filter
//! returns `SECCOMP_RET_TRACE` (a `PTRACE_EVENT_SECCOMP` stop, where the engine handles
//! it as an entry and resumes with `PTRACE_SYSCALL` to see its exit). The calls marked
//! `untraced` in `syscalls.toml` are let through: they only change the program's own
//! state (signal handlers, alternate stacks, page protections), which replay re-creates by
//! running them when the program makes them, so they need neither a stop nor an event.
//! A test binary's start-up makes dozens of them; each skipped stop saves ~5 µs.
//!
//! The trace lists the untraced numbers (`Header::untraced`), so replay knows which
//! calls are not in it. Where seccomp is unavailable, the recording traces every call.

use crate::errors::Result;
use crate::inject::{inject_syscall, with_syscall_at};
use crate::ptrace::Task;
use crate::syscalls;

use super::redirect::SCRATCH_BASE;

use crate::kernel::AUDIT_ARCH_X86_64;
/// Numbers from here on are the x32 ABI (or unknown): traced, and answered by the engine.
const X32_SYSCALL_BIT: u32 = syscalls::X32_SYSCALL_BIT as u32;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// The numbers of the calls the filter lets through (`untraced` in the table).
pub fn untraced() -> Vec<u64> {
    syscalls::SYSCALLS
        .iter()
        .filter(|d| d.untraced)
        .map(|d| d.nr)
        .collect()
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program: x86_64 calls in `allowed` pass, everything else stops the
/// thread for the tracer.
pub fn program(allowed: &[u64]) -> Vec<libc::sock_filter> {
    let n = allowed.len();
    assert!(n < 200, "jump offsets are 8 bits");
    let trace = 4 + n; // index of `ret TRACE`
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        insn(BPF_JEQ_K, 0, (trace - 2) as u8, AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
        insn(BPF_JGE_K, (trace - 4) as u8, 0, X32_SYSCALL_BIT),
    ];
    for (i, &nr) in allowed.iter().enumerate() {
        // From instruction 4 + i, `ret ALLOW` (at trace + 1) is trace - 4 - i away.
        p.push(insn(BPF_JEQ_K, (trace - 4 - i) as u8, 0, nr as u32));
    }
    p.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE));
    p.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p
}

/// Installs the filter in a task stopped just after its (first) exec, with the ptrace
/// option `PTRACE_O_TRACESECCOMP` set, borrowing the instruction bytes at `at` for the
/// `syscall` instruction, as `exec::arm_traps` does. Unprivileged filters need
/// `no_new_privs`, which the spawn set before the exec (`SpawnSpec`). Returns whether the
/// filter is in place; `Ok(false)` when the kernel refused (the recording then traces
/// every call).
pub fn install(task: &mut Task, at: u64, allowed: &[u64]) -> Result<bool> {
    let prog = program(allowed);
    // The filter, then its `struct sock_fprog`, in the scratch area's first slot (no
    // call is redirected there at an exec).
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for i in &prog {
        bytes.extend_from_slice(&i.code.to_le_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_le_bytes());
    }
    let fprog = SCRATCH_BASE + bytes.len() as u64;
    bytes.extend_from_slice(&(prog.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&[0u8; 6]);
    bytes.extend_from_slice(&SCRATCH_BASE.to_le_bytes());
    task.write_mem(SCRATCH_BASE, &bytes)?;

    let filter = with_syscall_at(task, at, |task| {
        inject_syscall(
            task,
            at,
            libc::SYS_seccomp as u64,
            &[SECCOMP_SET_MODE_FILTER, 0, fprog],
        )
    })?;
    task.write_mem(SCRATCH_BASE, &vec![0u8; bytes.len()])?;
    match filter? {
        0 => Ok(true),
        err => {
            tracing::warn!("seccomp filter refused ({err}): every system call stops the program");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter the way the kernel does, on (arch, nr).
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => acc = if i.k == DATA_ARCH { arch } else { nr },
                BPF_JEQ_K | BPF_JGE_K => {
                    let hit = if i.code == BPF_JEQ_K {
                        acc == i.k
                    } else {
                        acc >= i.k
                    };
                    pc += if hit { i.jt as usize } else { i.jf as usize };
                }
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn lets_through_exactly_the_untraced_calls() {
        let allowed = untraced();
        assert!(allowed.contains(&(libc::SYS_mprotect as u64)));
        assert!(!allowed.contains(&(libc::SYS_read as u64)));
        assert!(!allowed.contains(&(libc::SYS_rt_sigprocmask as u64)));
        let p = program(&allowed);
        for nr in 0..500u32 {
            let want = if allowed.contains(&(nr as u64)) {
                SECCOMP_RET_ALLOW
            } else {
                SECCOMP_RET_TRACE
            };
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr), want, "syscall {nr}");
        }
        // Another ABI, or x32 numbering: always traced.
        let mprotect = libc::SYS_mprotect as u32;
        assert_eq!(run(&p, 0x4000_0003, mprotect), SECCOMP_RET_TRACE);
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | mprotect),
            SECCOMP_RET_TRACE
        );
    }

    #[test]
    fn untraced_calls_are_executed_and_never_block() {
        for d in syscalls::SYSCALLS.iter().filter(|d| d.untraced) {
            assert!(matches!(d.class, syscalls::Class::Executed), "{}", d.name);
            assert!(!d.may_block && !d.special, "{}", d.name);
        }
    }
}
