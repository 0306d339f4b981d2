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
    let mut aside = SetAside::default();
    let ret = run_injected(task, &mut aside, &saved, insn, nr, args);
    if matches!(ret, Err(Error::TaskGone { .. })) {
        return ret;
    }
    // Back where it was, even when the call could not be made.
    task.set_regs(&saved)?;
    // The program's signals that stopped it on the way, queued again as they were,
    // with every signal blocked meanwhile: a signal queued again is pending, and would
    // otherwise stop the task on its way to the next one's call, be set aside again, and
    // so on (two or more were a round-robin that lost one, issue 16). The task ran to
    // its call already, so the kernel restored any temporary mask (`ppoll`'s) then: the
    // mask read here is the task's own.
    if !aside.foreign.is_empty() {
        let mask = task.sigmask()?;
        task.set_sigmask(!0)?;
        let queued = std::mem::take(&mut aside.foreign)
            .iter()
            .try_for_each(|si| requeue(task, &mut aside, &saved, insn, si));
        task.set_sigmask(mask)?;
        queued?;
        for si in &aside.foreign {
            // Only a signal no mask holds back (SIGSTOP of another's) can come here.
            tracing::warn!(
                "thread {}: signal {} met while queuing the program's signals again, dropped",
                task.tid,
                si.si_signo
            );
        }
    }
    // Sent last: what the requeuing met is in them too.
    aside.send_again(task);
    ret
}

/// Queues `si` to the task again, sent by the task itself (`rt_tgsigqueueinfo` to its
/// own thread, which the kernel allows with any code: the program's handler sees the
/// siginfo the sender gave), with the siginfo on the stack below the red zone (put
/// back afterwards).
fn requeue(
    task: &mut Task,
    aside: &mut SetAside,
    saved: &crate::ptrace::Regs,
    insn: u64,
    si: &libc::siginfo_t,
) -> Result<()> {
    let size = std::mem::size_of::<libc::siginfo_t>();
    let at = (saved.rsp - 128 - size as u64) & !15;
    let tgid = crate::kernel::thread_group(task.tid).unwrap_or(task.tid);
    let under = task.read_mem(at, size)?;
    // SAFETY: siginfo_t is plain old data; the slice covers exactly one.
    let bytes = unsafe { std::slice::from_raw_parts(si as *const _ as *const u8, size) };
    task.write_mem(at, bytes)?;
    let ret = run_injected(
        task,
        aside,
        saved,
        insn,
        libc::SYS_rt_tgsigqueueinfo as u64,
        &[tgid as u64, task.tid as u64, si.si_signo as u64, at],
    );
    if matches!(ret, Err(Error::TaskGone { .. })) {
        return ret.map(|_| ());
    }
    task.write_mem(at, &under)?;
    task.set_regs(saved)?;
    if ret? != 0 {
        tracing::warn!(
            "thread {}: signal {} could not be queued again after an injected call",
            task.tid,
            si.si_signo
        );
    }
    Ok(())
}

/// [`inject_syscall`]'s call, up to its exit stop.
fn run_injected(
    task: &mut Task,
    aside: &mut SetAside,
    saved: &crate::ptrace::Regs,
    insn: u64,
    nr: u64,
    args: &[u64],
) -> Result<i64> {
    let mut r = *saved;
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
    loop {
        task.resume(Resume::Syscall, 0)?;
        match aside.wait(task)? {
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
        match aside.wait(task)? {
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
    match task.syscall_stop()? {
        SyscallStop::Exit { ret, .. } => Ok(ret),
        other => Err(Error::Unsupported {
            what: format!("expected the exit of injected syscall {nr}, got {other:?}"),
            hint: "report this as a bug".into(),
        }),
    }
}

/// Signals that reach a task while the engine runs an injected call in it, set aside
/// and sent again once the task is back where it was: standard signals do not queue,
/// so one of each is enough.
#[derive(Debug, Default)]
struct SetAside {
    /// Another task changed state. Its siginfo is lost; replay skips real SIGCHLDs and
    /// injects the recorded ones.
    sigchld: bool,
    /// A SIGSTOP this process sent (the watchdog's slice ended, or an interrupt was
    /// asked for) just as the task stopped for another reason. Sent again, it stops
    /// the task where it would have stopped without the injection: right after the
    /// stop the engine is handling.
    sigstop: bool,
    /// Signals the program sent or caused (another process's `kill(child, SIGSTOP)`, a
    /// SIGURG through a pidfd, a timer's SIGALRM), each met as a signal-delivery stop on
    /// the way to the injected call: suppressed there, and queued again, as they were,
    /// once the task is back ([`requeue`]).
    foreign: Vec<libc::siginfo_t>,
}

impl SetAside {
    fn wait(&mut self, task: &mut Task) -> Result<Stop> {
        loop {
            let (stop, skipped) = task.wait_skipping_sigchld()?;
            self.sigchld |= skipped > 0;
            if let Stop::Signal(sig) = stop {
                let si = task.siginfo()?;
                if sig == libc::SIGSTOP && sent_by_this_process(task) {
                    self.sigstop = true;
                } else if !synchronous(&si) {
                    self.foreign.push(si);
                } else {
                    return Ok(stop);
                }
                task.resume(Resume::Syscall, 0)?;
                continue;
            }
            return Ok(stop);
        }
    }

    fn send_again(&self, task: &Task) {
        for (pending, sig) in [(self.sigchld, libc::SIGCHLD), (self.sigstop, libc::SIGSTOP)] {
            if pending {
                // SAFETY: plain syscall to our own tracee (tkill: the thread may not
                // lead its group).
                unsafe { libc::syscall(libc::SYS_tkill, task.tid, sig) };
            }
        }
    }
}

/// Whether a signal is a fault of the instruction the task ran (the injection's own
/// failure, never sent again), not one sent to it.
fn synchronous(si: &libc::siginfo_t) -> bool {
    matches!(
        si.si_signo,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && si.si_code > 0
        && si.si_code != libc::SI_KERNEL
}

/// Whether the signal of the task's signal-delivery stop came from this process
/// (`tgkill` or `tkill`), or from the thread's CPU-time slice clock (see
/// [`crate::preempt::cpu_clock`]).
fn sent_by_this_process(task: &Task) -> bool {
    task.siginfo().is_ok_and(|si| {
        crate::pidns::tkill_from_this_process(&si) || crate::preempt::cpu_clock::from_a_clock(&si)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::{spawn_traced, SpawnSpec};

    /// The watchdog's SIGSTOP can reach a task just as it stopped for something else;
    /// an injection then meets it on the way to its call. The call still runs, and
    /// the SIGSTOP stops the task once it goes on (a chaos hunt with 10 ms slices
    /// failed with "stopped with Signal(19) while the engine injected syscall 158").
    #[test]
    fn a_sigstop_from_the_engine_waits_until_the_injected_call_ran() {
        let spec = SpawnSpec {
            path: std::path::Path::new("/bin/true"),
            argv: vec!["true".into()],
            env: Vec::new(),
            cwd: None,
            cpu: None,
            no_aslr: true,
            null_stdio: true,
            stdio_fds: None,
            no_core: true,
            trap_tsc_no_new_privs: false,
            landlock: None,
            process_group: Some(0),
            foreground_tty: None,
        };
        let pid = spawn_traced(&spec).expect("spawn /bin/true");
        let mut task = Task::new(pid);
        task.set_options(crate::ptrace::OPTIONS).unwrap();
        // At the stop after exec: a SIGSTOP from us is now pending.
        // SAFETY: plain syscall to our own tracee.
        unsafe { libc::syscall(libc::SYS_tkill, pid, libc::SIGSTOP) };
        let rip = task.regs().unwrap().rip;
        let got = with_syscall_at(&mut task, rip, |t| {
            inject_syscall(t, rip, libc::SYS_getpid as u64, &[])
        })
        .unwrap();
        assert_eq!(got.unwrap(), pid as i64);
        assert_eq!(task.regs().unwrap().rip, rip, "registers restored");
        // Going on, the task stops for that SIGSTOP first.
        task.resume(Resume::Cont, 0).unwrap();
        assert_eq!(task.wait().unwrap(), Stop::Signal(libc::SIGSTOP));
        task.kill();
        while !matches!(task.wait(), Ok(Stop::Killed(_) | Stop::Exited(_)) | Err(_)) {}
    }
}
