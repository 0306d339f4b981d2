//! Job control at record: a stop signal (SIGSTOP; SIGTSTP, SIGTTIN, SIGTTOU without a
//! handler) stops every thread of its process until a SIGCONT.
//!
//! The tree is traced with `PTRACE_TRACEME` (not `PTRACE_SEIZE`): each thread of a
//! stopping process reports a *group-stop* (a stop with the signal's number and no
//! siginfo), and resuming it from there would make it run on, stopped for its parent
//! and yet running. So a thread that reports one is left in that stop
//! ([`Where::Stopped`]: not scheduled) until its process has a SIGCONT pending, which
//! the kernel keeps queued for a traced process: after every signal-sending call of
//! the program, at every scheduling decision while some thread is stopped, and every few
//! milliseconds while nothing else can run (a SIGCONT from outside the recording).
//!
//! A thread that stops right after a call, where the stop signal was delivered, is still
//! there when continued: a signal it then reports (the SIGHUP of an orphaned process
//! group) is delivered at once, at that point, where replay finds the thread too (see
//! `replay::signal::drop_if_stop`).
//!
//! No event marks a group-stop: the thread makes no progress while stopped, and the
//! order of the others' events is what the trace keeps. Replay does not stop the
//! process for the recorded stop signal (see `replay::signal`).

use super::*;

/// How often a recording whose threads are all stopped or blocked looks for a SIGCONT
/// sent from outside it.
const CONTINUE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Recorder {
    /// Whether thread `tid`, stopped with stop signal `sig`, reports a group-stop (no
    /// siginfo) rather than the signal's delivery.
    pub(super) fn is_group_stop(&self, tid: i32, sig: i32) -> Result<bool> {
        if !is_stop_signal(sig) {
            return Ok(false);
        }
        match self.threads[&tid].task.siginfo() {
            Ok(_) => Ok(false),
            Err(Error::Ptrace { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Whether some thread is in a group-stop.
    pub(super) fn any_stopped(&self) -> bool {
        self.threads.values().any(|t| t.state == Where::Stopped)
    }

    /// Makes the group-stopped threads whose process was sent a SIGCONT ready to run
    /// again (each reports the SIGCONT next, when its process has no other thread to
    /// take it). Returns whether any was.
    pub(super) fn wake_continued(&mut self) -> bool {
        let mut woken = false;
        for (tid, t) in self.threads.iter_mut() {
            if t.state == Where::Stopped && continue_pending(*tid) {
                tracing::debug!("thread {tid} continued");
                t.state = Where::Ready(0);
                woken = true;
            }
        }
        woken
    }

    /// Waits for a stop of one of the recording's tasks when none can run; `None` when
    /// a group-stopped thread was continued from outside meanwhile (or the recording is
    /// to stop: the caller checks the interrupter).
    pub(super) fn wait_or_continued(&mut self) -> Result<Option<(i32, Stop)>> {
        if !self.any_stopped() {
            return self.wait_any().map(Some);
        }
        loop {
            if self.interrupter.requested() || self.wake_continued() {
                return Ok(None);
            }
            match crate::ptrace::try_wait_own()? {
                Some((tid, _)) if self.reaped_group_holder(tid) => {}
                Some((tid, stop)) if self.is_ours(tid, stop) => return Ok(Some((tid, stop))),
                Some((tid, stop)) => {
                    // A new thread's first stop before its parent's clone event.
                    self.early.insert(tid, stop);
                }
                None => std::thread::sleep(CONTINUE_POLL),
            }
        }
    }
}

/// Whether `sig` is one of the signals whose default action stops the process.
pub(super) fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// Whether a call sends a signal (the calls after which a stopped process may have been
/// continued).
pub(super) fn sends_signal(sysno: u64) -> bool {
    matches!(
        sysno,
        nr::KILL
            | nr::TKILL
            | nr::TGKILL
            | nr::RT_SIGQUEUEINFO
            | nr::RT_TGSIGQUEUEINFO
            | nr::PIDFD_SEND_SIGNAL
    )
}

/// Whether thread `tid` (or its process) has a SIGCONT pending (`/proc/TID/status`).
/// A traced process keeps it queued even without a handler, and a stop signal sent
/// after it discards it: pending while stopped means continued.
fn continue_pending(tid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let bit = 1u64 << (libc::SIGCONT - 1);
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .filter_map(|h| u64::from_str_radix(h.trim(), 16).ok())
        .any(|mask| mask & bit != 0)
}
