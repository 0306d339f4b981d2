//! Signals at replay: a signal that ends a process other than the main one, delivery
//! under a call's temporary mask, what `/proc` says about a signal's disposition, and
//! the trapped instructions (rdtsc, cpuid) answered from the trace.

use super::tree::reap;
use super::*;
use crate::kernel::restart::ERESTARTNOHAND;

impl Replayer<'_> {
    /// Thread `th` (recorded as `ev.tid()`) has just been given a signal (`th.signal`,
    /// event `ev`). If that signal ends a process other than the main one (no handler,
    /// not ignored, a default action that terminates), it is delivered now and the
    /// process reaped, as it died there at record: the kernel's cleanup of robust futexes
    /// at its end (see [`robust`]) is then done at the same point, with the recorded
    /// tids, which matters for futexes in memory it shared with others. The main
    /// process's end is replayed with the trace's end.
    pub(super) fn end_if_fatal(&mut self, ev: &Event, th: &mut RThread) -> Result<Step> {
        let (sig, tgid, tid) = (th.signal, th.tgid, ev.tid());
        if tgid == self.leader
            || !terminates_by_default(sig)
            || caught(th.task.tid, sig)
            || ignored(th.task.tid, sig)
        {
            return Ok(Step::Done);
        }
        robust::owner_died(&mut th.task, self.pidns.own(tid))?;
        let others: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, x)| x.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        for t in &others {
            if let Some(x) = self.threads.get_mut(t) {
                robust::owner_died(&mut x.task, self.pidns.own(*t))?;
            }
        }
        th.signal = 0;
        th.task.resume(Resume::Cont, sig)?;
        // A leader's end is reported only once its other threads are collected.
        let mut tasks: Vec<(bool, Task)> = others
            .iter()
            .filter_map(|t| self.threads.remove(t).map(|x| (*t == tgid, x.task)))
            .chain(self.zombies.remove(&tgid).map(|z| (true, z)))
            .collect();
        tasks.push((tid == tgid, Task::new(th.task.tid)));
        tasks.sort_by_key(|(leader, _)| *leader);
        for (_, t) in &tasks {
            reap(t);
        }
        tracing::debug!(
            "process {tgid} ended by {} at replay, as at record",
            signal_name(sig)
        );
        self.end_namespace_of(tgid)?;
        Ok(Step::Gone)
    }

    /// Gives thread `th`, standing at the preemption point its last event found
    /// (`at_point`), the signal the recording gave it there ([`Event::SignalAtPoint`]).
    /// Whatever stop the search left it in (a trap, or the exit of the call that removed
    /// the patch), the signal is queued to it (`tkill`) and it is resumed without one:
    /// it stops to take the queued signal before it runs an instruction. There its
    /// siginfo becomes the recorded one, and the next resume delivers it, as the
    /// recording did at its own signal stop at that point.
    pub(super) fn signal_at_point(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        at_point: bool,
        signo: i32,
        rip: u64,
        info: &[u8],
    ) -> Result<Step> {
        if !at_point {
            return Err(self.diverge(ev, "did not stand at a preemption point".into()));
        }
        let regs = th.task.regs()?;
        if regs.rip != rip {
            return Err(self.diverge(ev, format!("stood at {:#x}", regs.rip)));
        }
        // SAFETY: plain syscall to a stopped tracee of ours.
        if unsafe { libc::syscall(libc::SYS_tkill, th.task.tid, signo) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(self.diverge(ev, format!("could not be sent it ({e})")));
        }
        th.task.resume(Resume::Sysemu, 0)?;
        // A SIGCHLD is the stop awaited here, not one of the replay's own to skip: the
        // replayed child's exit may have queued one already, which merges with ours.
        let stop = if signo == libc::SIGCHLD {
            th.task.wait()?
        } else {
            th.task.wait_skipping_sigchld()?.0
        };
        match stop {
            Stop::Signal(sig) if sig == signo => {}
            other => {
                return Err(self.diverge(ev, format!("stopped with {other:?} instead")));
            }
        }
        let mut regs = th.task.regs()?;
        if regs.rip != rip {
            return Err(self.diverge(ev, format!("got it at {:#x}", regs.rip)));
        }
        if regs.eflags & crate::record::signal::DEBUG_FLAGS != 0 {
            regs.eflags &= !crate::record::signal::DEBUG_FLAGS;
            th.task.set_regs(&regs)?;
        }
        if info.len() == std::mem::size_of::<libc::siginfo_t>() {
            // SAFETY: 128 bytes of plain data, copied from a siginfo_t.
            let si: libc::siginfo_t =
                unsafe { std::ptr::read_unaligned(info.as_ptr() as *const libc::siginfo_t) };
            th.task.set_siginfo(&si)?;
        }
        th.signal = signo;
        self.clean_frame_later(th);
        Ok(Step::Done)
    }

    /// Thread `th` stands at the delivery stop of the asynchronous signal `ev` gave it
    /// (`th.signal`): as at record (`Recorder::deliver_to_handler`), a caught one is to be
    /// delivered by a step of its own, which stops at the handler's first instruction,
    /// where the frame's stale fault fields are cleared
    /// (`record::signal::clear_fault_fields`). Done when the thread is next resumed
    /// ([`Replayer::enter_handler_first`]): a debugger sees the signal's stop before
    /// the handler, as natively. Traces of format 8 and older did not clear them.
    pub(super) fn clean_frame_later(&mut self, th: &mut RThread) {
        let sig = th.signal;
        th.clean_frame = self.clean_frames
            && sig != 0
            && !matches!(
                sig,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
            )
            && caught(th.task.tid, sig);
    }

    /// Before `th` is resumed with `sig`: if that is a signal whose frame is to be
    /// cleaned ([`Self::clean_frame_later`]), it is delivered by one step, the frame cleaned,
    /// and the step's stop returned (a trap at the handler's first instruction, where a
    /// breakpoint is then hit before the handler runs, see `entered_handler`).
    pub(super) fn enter_handler_first(
        &mut self,
        th: &mut RThread,
        sig: i32,
    ) -> Result<Option<Stop>> {
        if !std::mem::take(&mut th.clean_frame) || sig == 0 {
            return Ok(None);
        }
        let stop = crate::record::signal::step_into_handler(&mut th.task, sig)?;
        if stop == Stop::Signal(libc::SIGTRAP) {
            th.entered_handler = Some(th.task.regs()?.rip);
            crate::record::signal::clear_fault_fields(&mut th.task)?;
        }
        Ok(Some(stop))
    }

    pub(super) fn on_trapped(
        &self,
        ev: &Event,
        task: &Task,
        mut regs: crate::ptrace::Regs,
    ) -> Result<()> {
        match *ev {
            Event::Rdtsc {
                rip,
                rdtscp,
                tsc,
                aux,
                ..
            } if rip == regs.rip => {
                crate::arch::apply_tsc(&mut regs, tsc, aux, rdtscp);
            }
            Event::Cpuid {
                rip,
                leaf,
                subleaf,
                out,
                ..
            } if rip == regs.rip => {
                if regs.rax as u32 != leaf || (regs.rcx as u32 != subleaf && needs_subleaf(leaf)) {
                    return Err(self.diverge(
                        ev,
                        format!(
                            "asked cpuid({:#x}, {:#x})",
                            regs.rax as u32, regs.rcx as u32
                        ),
                    ));
                }
                crate::arch::apply_cpuid(&mut regs, out);
            }
            _ => return Err(self.diverge(ev, format!("trapped an instruction at {:#x}", regs.rip))),
        }
        task.set_regs(&regs)
    }

    /// Delivers the signal that interrupted a call with a temporary mask (`th.signal`, at
    /// its delivery stop, the thread's mask set to the call's temporary one) the way the
    /// kernel does: a handler runs under the temporary mask, and the mask from before the
    /// call is the one its signal frame saves, so `sigreturn` restores it. Emulated, the
    /// call never saved that mask; it is written into the frame here, at the handler's
    /// first instruction.
    pub(super) fn deliver_under_temporary_mask(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        orig: u64,
    ) -> Result<()> {
        let sig = th.signal;
        if !caught(th.task.tid, sig) {
            if ignored(th.task.tid, sig) {
                // No handler runs: the kernel discarded it and gave the caller its own
                // mask back (and restarted the call, which the restart code in the
                // result makes it do here too). Discarding is not delivering it.
                th.signal = 0;
                th.task.set_sigmask(orig)?;
            }
            // Otherwise its default action ends the process: the mask no longer matters.
            return Ok(());
        }
        th.task.resume(Resume::Step, sig)?;
        th.signal = 0;
        match th.task.wait()? {
            Stop::Signal(libc::SIGTRAP) => {
                // rsp: the frame's return address, then its ucontext; uc_sigmask is 296
                // bytes into the ucontext (flags, link, stack_t, 256-byte sigcontext).
                let rsp = th.task.regs()?.rsp;
                th.task.write_mem(rsp + 8 + 296, &orig.to_le_bytes())?;
                if self.clean_frames {
                    // As at record (see `clean_frame_later`).
                    crate::record::signal::clear_fault_fields(&mut th.task)?;
                }
                Ok(())
            }
            other => Err(self.diverge(
                ev,
                format!("stopped with {other:?} instead of entering the handler"),
            )),
        }
    }
}

/// The signal mask a call puts in force while it waits, if it returned interrupted by a
/// signal: the kernel then keeps that mask until the signal is delivered (its handler
/// runs under it, and its frame saves the caller's mask), where a call that returned
/// otherwise has already restored the caller's. Emulated at replay, the call sets no
/// mask, so replay sets it (see [`Replayer::deliver_under_temporary_mask`]); without
/// it, a signal the caller blocks outside the call would not even be delivered.
pub(super) fn temporary_mask(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    ret: i64,
) -> Result<Option<u64>> {
    let (ptr, interrupted) = match sysno {
        nr::RT_SIGSUSPEND => (args[0], ERESTARTNOHAND),
        nr::PPOLL => (args[3], ERESTARTNOHAND),
        nr::EPOLL_PWAIT | nr::EPOLL_PWAIT2 => (args[4], -(libc::EINTR as i64)),
        // Argument 5 points to { const sigset_t *ss; size_t ss_len; }.
        nr::PSELECT6 if args[5] != 0 && ret == ERESTARTNOHAND => {
            let b = task.read_mem(args[5], 8)?;
            (
                u64::from_le_bytes(b[..8].try_into().expect("8")),
                ERESTARTNOHAND,
            )
        }
        _ => return Ok(None),
    };
    if ptr == 0 || ret != interrupted {
        return Ok(None);
    }
    let b = task.read_mem(ptr, 8)?;
    Ok(Some(u64::from_le_bytes(b[..8].try_into().expect("8"))))
}

/// Thread `th` was given a signal (`th.signal`) whose action is to stop its process
/// (SIGSTOP; SIGTSTP, SIGTTIN, SIGTTOU without a handler and not ignored). At record its
/// process stopped there until a SIGCONT, and the recorder scheduled none of its threads
/// meanwhile: the order of the trace's events says so already. Replay does not stop it
/// (a stopped process would report group-stops the trace does not have): the signal is
/// dropped, and resumed without one the thread goes on as the kernel made it go on after
/// the SIGCONT (a call the signal interrupted restarts). A signal recorded next at the
/// same point (the thread was continued there and took it at once) is given at this
/// delivery stop.
pub(super) fn drop_if_stop(th: &mut RThread) {
    let (tid, sig) = (th.task.tid, th.signal);
    let stops = match sig {
        libc::SIGSTOP => true,
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => !caught(tid, sig) && !ignored(tid, sig),
        _ => false,
    };
    if stops {
        th.at_dropped_stop = true;
        tracing::debug!(
            "{} not delivered at replay: it only stopped the process",
            signal_name(sig)
        );
        th.signal = 0;
    }
}

/// Thread `th` belongs to the first process of a pid namespace of the program's, and
/// was given a signal (`th.signal`) without a handler: the kernel drops it at delivery
/// (such a process gets no signal it did not ask for, but SIGKILL and SIGSTOP), while the
/// replayed process, in no namespace of its own, would die of it. Dropped here too, as
/// [`drop_if_stop`] does.
pub(super) fn drop_if_init_ignores(th: &mut RThread) {
    let (tid, sig) = (th.task.tid, th.signal);
    if sig != 0 && sig != libc::SIGKILL && sig != libc::SIGSTOP && !caught(tid, sig) {
        th.at_dropped_stop = true;
        tracing::debug!(
            "{} not delivered at replay: the first process of a pid namespace ignores it",
            signal_name(sig)
        );
        th.signal = 0;
    }
}

/// Whether signal `sig` ends a process when it has no handler and is not ignored.
pub(super) fn terminates_by_default(sig: i32) -> bool {
    (1..=64).contains(&sig)
        && !matches!(
            sig,
            libc::SIGCHLD
                | libc::SIGCONT
                | libc::SIGURG
                | libc::SIGWINCH
                | libc::SIGSTOP
                | libc::SIGTSTP
                | libc::SIGTTIN
                | libc::SIGTTOU
        )
}

/// Whether signal `sig` has a handler in thread `tid`'s process (`SigCgt` in
/// `/proc/TID/status`).
pub(crate) fn caught(tid: i32, sig: i32) -> bool {
    status_mask(tid, "SigCgt:").is_some_and(|mask| has_signal(mask, sig))
}

/// Whether delivering signal `sig` to thread `tid` discards it: it is ignored
/// (`SigIgn`), or has its default action and that action is to ignore it (or, for
/// SIGCONT, only to continue a stopped process).
pub(super) fn ignored(tid: i32, sig: i32) -> bool {
    status_mask(tid, "SigIgn:").is_some_and(|mask| has_signal(mask, sig))
        || (!caught(tid, sig)
            && matches!(
                sig,
                libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
            ))
}

/// A signal mask line (`SigCgt:`, `SigIgn:`...) of `/proc/TID/status`.
pub(super) fn status_mask(tid: i32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}

pub(super) fn has_signal(mask: u64, sig: i32) -> bool {
    (1..=64).contains(&sig) && mask & (1 << (sig - 1)) != 0
}

pub(super) fn needs_subleaf(leaf: u32) -> bool {
    matches!(
        leaf,
        4 | 7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}
