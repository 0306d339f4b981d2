//! The seccomp filter that decides which system calls stop the program.
//!
//! Tracing with `PTRACE_SYSCALL` stops a thread twice at every call. The recorder instead
//! installs a seccomp filter in the program at its first exec (children and later execs
//! inherit it) and resumes threads with `PTRACE_CONT`: a call stops only when the filter
//! returns `SECCOMP_RET_TRACE` (a `PTRACE_EVENT_SECCOMP` stop, where the engine handles
//! it as an entry and resumes with `PTRACE_SYSCALL` to see its exit). The calls marked
//! `untraced` in `syscalls.toml` are let through: they only change the program's own
//! state (signal handlers, alternate stacks, page protections, a signal mask that only
//! grows: rt_sigprocmask as `SIG_BLOCK` or a query, told apart by its arguments, see
//! [`syscalls::untraced_call`]), which replay re-creates by running them when the
//! program makes them, so they need neither a stop nor an event.
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
/// `offsetof(struct seccomp_data, instruction_pointer)` (low word; the high one follows).
const DATA_IP: u32 = 8;
/// `seccomp_data.args`.
const DATA_ARGS: u32 = 16;

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

/// The numbers the preload library may make at its untraced entry (`buffered` in the
/// table).
pub fn buffered() -> Vec<u64> {
    syscalls::SYSCALLS
        .iter()
        .filter(|d| d.buffered)
        .map(|d| d.nr)
        .collect()
}

/// The filter program: x86_64 calls in `allowed` pass (`rt_sigprocmask` only when it
/// cannot unblock, see [`syscalls::untraced_call`]); so do the calls in `buffered`
/// made from the syscall-buffering entry (instruction pointer
/// [`crate::syscallbuf::abi::ENTRY_IP`]) and `ioctl` from its quiet entry
/// ([`crate::syscallbuf::abi::QUIET_IP`], the desched event's arming); everything else
/// stops the thread for the tracer. With `buffered` empty there is no entry clause.
pub fn program(allowed: &[u64], buffered: &[u64]) -> Vec<libc::sock_filter> {
    let m = buffered.len();
    // The entry's clause: its address, the quiet entry, the buffered numbers, and the
    // one buffered request of a traced row (`FUTEX_WAKE_PRIVATE`, three instructions).
    let entry_clause = if m == 0 { 0 } else { 8 + m + 3 };
    // rt_sigprocmask passes only when it cannot unblock (`syscalls::untraced_call`): a
    // clause of its own after the unconditional numbers, seven instructions.
    let sigmask = allowed.contains(&syscalls::nr::RT_SIGPROCMASK);
    let plain: Vec<u64> = allowed
        .iter()
        .copied()
        .filter(|&nr| nr != syscalls::nr::RT_SIGPROCMASK)
        .collect();
    let n = plain.len() + if sigmask { 7 } else { 0 };
    assert!(n + entry_clause < 250, "jump offsets are 8 bits");
    let trace = 4 + n + entry_clause; // index of `ret TRACE`
    let allow = trace + 1;
    // A jump from instruction `at` to `to` skips `to - at - 1` instructions.
    let to = |at: usize, target: usize| (target - at - 1) as u8;
    let mut p = vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        insn(BPF_JEQ_K, 0, to(1, trace), AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
        insn(BPF_JGE_K, to(3, trace), 0, X32_SYSCALL_BIT),
    ];
    for &nr in &plain {
        let at = p.len();
        p.push(insn(BPF_JEQ_K, to(at, allow), 0, nr as u32));
    }
    if sigmask {
        // `how` is an int (the low word); `set` a pointer (both words zero: a query).
        let at = p.len();
        p.push(insn(BPF_JEQ_K, 0, 6, syscalls::nr::RT_SIGPROCMASK as u32));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_ARGS));
        p.push(insn(
            BPF_JEQ_K,
            to(at + 2, allow),
            0,
            libc::SIG_BLOCK as u32,
        ));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_ARGS + 8));
        p.push(insn(BPF_JEQ_K, 0, to(at + 4, trace), 0));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_ARGS + 12));
        p.push(insn(BPF_JEQ_K, to(at + 6, allow), to(at + 6, trace), 0));
    }
    if m > 0 {
        let ip = crate::syscallbuf::abi::ENTRY_IP;
        let quiet = crate::syscallbuf::abi::QUIET_IP;
        debug_assert_eq!(ip >> 32, quiet >> 32);
        let at = p.len();
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_IP + 4));
        p.push(insn(BPF_JEQ_K, 0, to(at + 1, trace), (ip >> 32) as u32));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_IP));
        // The quiet entry: ioctl only (the desched event's arming, not recorded).
        p.push(insn(BPF_JEQ_K, 0, 2, quiet as u32));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_NR));
        p.push(insn(
            BPF_JEQ_K,
            to(at + 5, allow),
            to(at + 5, trace),
            libc::SYS_ioctl as u32,
        ));
        p.push(insn(BPF_JEQ_K, 0, to(at + 6, trace), ip as u32));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_NR));
        for &nr in buffered {
            let at = p.len();
            p.push(insn(BPF_JEQ_K, to(at, allow), 0, nr as u32));
        }
        // futex: only the private wake, which never blocks (see
        // `syscallbuf::is_buffered`); its op is an int, the low word of the argument.
        let at = p.len();
        p.push(insn(BPF_JEQ_K, 0, to(at, trace), libc::SYS_futex as u32));
        p.push(insn(BPF_LD_W_ABS, 0, 0, DATA_ARGS + 8));
        p.push(insn(
            BPF_JEQ_K,
            to(at + 2, allow),
            to(at + 2, trace),
            crate::syscallbuf::FUTEX_WAKE_PRIVATE as u32,
        ));
    }
    debug_assert_eq!(p.len(), trace);
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
pub fn install(task: &mut Task, at: u64, allowed: &[u64], buffered: &[u64]) -> Result<bool> {
    let prog = program(allowed, buffered);
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
        run_at(p, arch, nr, 0x40_1000)
    }

    /// Runs the filter on (arch, nr) made at instruction pointer `ip`.
    fn run_at(p: &[libc::sock_filter], arch: u32, nr: u32, ip: u64) -> u32 {
        run_with(p, arch, nr, ip, 0)
    }

    /// Runs the filter on (arch, nr) made at `ip` with second argument `arg1`.
    fn run_with(p: &[libc::sock_filter], arch: u32, nr: u32, ip: u64, arg1: u64) -> u32 {
        run_args(p, arch, nr, ip, [0, arg1])
    }

    /// Runs the filter on (arch, nr) made at `ip` with first arguments `args`.
    fn run_args(p: &[libc::sock_filter], arch: u32, nr: u32, ip: u64, args: [u64; 2]) -> u32 {
        let [arg0, arg1] = args;
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        DATA_ARCH => arch,
                        DATA_NR => nr,
                        DATA_IP => ip as u32,
                        k if k == DATA_IP + 4 => (ip >> 32) as u32,
                        DATA_ARGS => arg0 as u32,
                        k if k == DATA_ARGS + 4 => (arg0 >> 32) as u32,
                        k if k == DATA_ARGS + 8 => arg1 as u32,
                        k if k == DATA_ARGS + 12 => (arg1 >> 32) as u32,
                        k => panic!("load of offset {k}"),
                    }
                }
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
        let p = program(&allowed, &[]);
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
    fn buffered_calls_pass_only_at_the_entry() {
        let allowed = untraced();
        let buffered = buffered();
        assert!(buffered.contains(&(libc::SYS_read as u64)));
        let p = program(&allowed, &buffered);
        let entry = crate::syscallbuf::abi::ENTRY_IP;
        for nr in 0..500u32 {
            let untraced = allowed.contains(&(nr as u64));
            let at_entry = untraced || buffered.contains(&(nr as u64));
            let want = |pass: bool| {
                if pass {
                    SECCOMP_RET_ALLOW
                } else {
                    SECCOMP_RET_TRACE
                }
            };
            assert_eq!(
                run_at(&p, AUDIT_ARCH_X86_64, nr, entry),
                want(at_entry),
                "{nr} at the entry"
            );
            assert_eq!(
                run_at(&p, AUDIT_ARCH_X86_64, nr, 0x40_1000),
                want(untraced),
                "{nr} elsewhere"
            );
            // Same low word, another high word; and the entry's own address (before the
            // syscall instruction) are not the entry.
            assert_eq!(
                run_at(&p, AUDIT_ARCH_X86_64, nr, entry + (1 << 32)),
                want(untraced),
                "{nr}"
            );
            assert_eq!(
                run_at(&p, AUDIT_ARCH_X86_64, nr, entry - 2),
                want(untraced),
                "{nr}"
            );
        }
        // The quiet entry lets ioctl through, nothing else.
        let quiet = crate::syscallbuf::abi::QUIET_IP;
        for nr in 0..500u32 {
            let pass = nr == libc::SYS_ioctl as u32 || allowed.contains(&(nr as u64));
            assert_eq!(
                run_at(&p, AUDIT_ARCH_X86_64, nr, quiet),
                if pass {
                    SECCOMP_RET_ALLOW
                } else {
                    SECCOMP_RET_TRACE
                },
                "{nr} at the quiet entry"
            );
        }
        let ioctl = libc::SYS_ioctl as u32;
        assert_eq!(
            run_at(&p, AUDIT_ARCH_X86_64, ioctl, quiet + (1 << 32)),
            SECCOMP_RET_TRACE
        );
        let read = libc::SYS_read as u32;
        assert_eq!(run_at(&p, 0x4000_0003, read, entry), SECCOMP_RET_TRACE);
        assert_eq!(
            run_at(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | read, entry),
            SECCOMP_RET_TRACE
        );
    }

    /// Of the futex requests, only the private wake passes, and only at the entry.
    #[test]
    fn futex_wakes_pass_at_the_entry_and_nothing_else_of_futex() {
        let p = program(&untraced(), &buffered());
        let entry = crate::syscallbuf::abi::ENTRY_IP;
        let futex = libc::SYS_futex as u32;
        let wake = crate::syscallbuf::FUTEX_WAKE_PRIVATE;
        assert_eq!(
            run_with(&p, AUDIT_ARCH_X86_64, futex, entry, wake),
            SECCOMP_RET_ALLOW
        );
        // The high word of an int argument is whatever the register held.
        assert_eq!(
            run_with(&p, AUDIT_ARCH_X86_64, futex, entry, wake | 0x5_0000_0000),
            SECCOMP_RET_ALLOW
        );
        for op in [
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            libc::FUTEX_WAKE,
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            libc::FUTEX_WAKE_OP | libc::FUTEX_PRIVATE_FLAG,
            libc::FUTEX_LOCK_PI | libc::FUTEX_PRIVATE_FLAG,
        ] {
            assert_eq!(
                run_with(&p, AUDIT_ARCH_X86_64, futex, entry, op as u64),
                SECCOMP_RET_TRACE,
                "op {op:#x}"
            );
        }
        assert_eq!(
            run_with(&p, AUDIT_ARCH_X86_64, futex, 0x40_1000, wake),
            SECCOMP_RET_TRACE
        );
        // Another call with that argument is not let through by it.
        let openat = libc::SYS_openat as u32;
        assert_eq!(
            run_with(&p, AUDIT_ARCH_X86_64, openat, entry, wake),
            SECCOMP_RET_TRACE
        );
    }

    /// rt_sigprocmask passes only as `SIG_BLOCK` or a query (null set), with or without
    /// the entry clause, and agrees with `syscalls::untraced_call`.
    #[test]
    fn sigprocmask_passes_only_when_it_cannot_unblock() {
        let nr = libc::SYS_rt_sigprocmask as u32;
        let set = 0x7fff_ffff_e000u64;
        for p in [program(&untraced(), &[]), program(&untraced(), &buffered())] {
            for (how, set, pass) in [
                (libc::SIG_BLOCK as u64, set, true),
                (libc::SIG_UNBLOCK as u64, set, false),
                (libc::SIG_SETMASK as u64, set, false),
                (libc::SIG_SETMASK as u64, 0, true),
                (libc::SIG_UNBLOCK as u64, 0, true),
                // The kernel reads `how` as an int.
                (libc::SIG_BLOCK as u64 | 0x1_0000_0000, set, true),
                (libc::SIG_SETMASK as u64, set & 0xffff_ffff, false),
                (libc::SIG_SETMASK as u64, set & !0xffff_ffff, false),
                (7, set, false),
            ] {
                let args = [how, set, 0, 8, 0, 0];
                assert_eq!(syscalls::untraced_call(nr as u64, &args), pass);
                let want = if pass {
                    SECCOMP_RET_ALLOW
                } else {
                    SECCOMP_RET_TRACE
                };
                for ip in [0x40_1000, crate::syscallbuf::abi::ENTRY_IP] {
                    assert_eq!(
                        run_args(&p, AUDIT_ARCH_X86_64, nr, ip, [how, set]),
                        want,
                        "how {how:#x} set {set:#x} at {ip:#x}"
                    );
                }
            }
            // The clause lets nothing else through by those arguments.
            let openat = libc::SYS_openat as u32;
            assert_eq!(
                run_args(&p, AUDIT_ARCH_X86_64, openat, 0x40_1000, [0, 0]),
                SECCOMP_RET_TRACE
            );
        }
    }

    #[test]
    fn untraced_calls_are_executed_and_never_block() {
        for d in syscalls::SYSCALLS.iter().filter(|d| d.untraced) {
            assert!(matches!(d.class, syscalls::Class::Executed), "{}", d.name);
            assert!(!d.may_block && !d.special, "{}", d.name);
        }
    }
}
