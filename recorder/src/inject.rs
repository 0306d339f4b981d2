//! Making a stopped task run a system call of the engine's choosing.

use crate::errors::{Error, Result};
use crate::ptrace::{Resume, Stop, SyscallStop, Task};

/// Runs syscall `nr` with `args` in `task`, using the `syscall` instruction at `insn`,
/// and restores the task's registers afterwards.
///
/// Precondition: the task is in a ptrace stop that is not a syscall-entry stop of a call
/// that is still to run (an exit stop, an event stop, a signal stop that is being
/// suppressed, or a `PTRACE_SYSEMU` entry stop, whose call the kernel skips anyway).
/// Postcondition: the task is at the injected call's exit stop with its original
/// registers; resuming it continues where it was.
pub fn inject_syscall(task: &mut Task, insn: u64, nr: u64, args: &[u64]) -> Result<i64> {
    let saved = task.regs()?;
    let mut r = saved;
    r.rip = insn;
    r.rax = nr;
    r.orig_rax = u64::MAX;
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    crate::arch::set_syscall_args(&mut r, &a);
    task.set_regs(&r)?;
    // Run to the injected call's entry. A task leaving a SYSEMU entry stop under
    // PTRACE_SYSCALL may first report the exit of the skipped call: step over it.
    let mut guard = 0;
    // SIGCHLDs that arrived meanwhile are sent again afterwards (their siginfo is lost;
    // replay skips real SIGCHLDs and injects the recorded ones).
    let mut requeue = 0u32;
    loop {
        task.resume(Resume::Syscall, 0)?;
        let (stop, skipped) = task.wait_skipping_sigchld()?;
        requeue += skipped;
        match stop {
            Stop::Syscall => {}
            Stop::Exited(_) | Stop::Killed(_) => return Err(Error::TaskGone { pid: task.tid }),
            other => {
                return Err(Error::Unsupported {
                    what: format!(
                        "task {} stopped with {other:?} while the engine injected syscall {nr}",
                        task.tid
                    ),
                    hint: "report this as a bug".into(),
                })
            }
        }
        match task.syscall_stop()? {
            SyscallStop::Entry { nr: got, .. } if got == nr => break,
            _ => {
                guard += 1;
                if guard > 2 {
                    return Err(Error::Unsupported {
                        what: format!("could not inject syscall {nr} into task {}", task.tid),
                        hint: "report this as a bug".into(),
                    });
                }
            }
        }
    }
    loop {
        task.resume(Resume::Syscall, 0)?;
        let (stop, skipped) = task.wait_skipping_sigchld()?;
        requeue += skipped;
        match stop {
            Stop::Syscall => break,
            // The recorder's seccomp filter stops the call after its entry stop (see
            // `record::seccomp`): on to its exit.
            Stop::Event(libc::PTRACE_EVENT_SECCOMP) => {}
            Stop::Exited(_) | Stop::Killed(_) => return Err(Error::TaskGone { pid: task.tid }),
            other => {
                return Err(Error::Unsupported {
                    what: format!(
                        "task {} stopped with {other:?} in injected syscall {nr}",
                        task.tid
                    ),
                    hint: "report this as a bug".into(),
                })
            }
        }
    }
    let ret = match task.syscall_stop()? {
        SyscallStop::Exit { ret, .. } => ret,
        other => {
            return Err(Error::Unsupported {
                what: format!("expected the exit of injected syscall {nr}, got {other:?}"),
                hint: "report this as a bug".into(),
            })
        }
    };
    task.set_regs(&saved)?;
    if requeue > 0 {
        // SAFETY: plain syscall to our own tracee.
        unsafe { libc::syscall(libc::SYS_tgkill, task.tid, task.tid, libc::SIGCHLD) };
    }
    Ok(ret)
}

/// Runs `f` with a `syscall` instruction written at `at` (for [`inject_syscall`] at
/// that address, at a stop where the program has none at hand, such as an exec's entry
/// point), then puts the two bytes that were there back.
pub fn with_syscall_at<T>(task: &mut Task, at: u64, f: impl FnOnce(&mut Task) -> T) -> Result<T> {
    let saved = task.read_mem(at, 2)?;
    task.write_mem(at, &[0x0f, 0x05])?;
    let out = f(task);
    task.write_mem(at, &saved)?;
    Ok(out)
}
