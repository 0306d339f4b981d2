//! Ctrl-C and SIGTERM during a recording: stop the recorded program, keep the trace.

use std::sync::Arc;

use recorder::record::Interrupter;
use recorder::trace::Outcome;

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it spawns later)
/// and starts a thread that turns them into an interruption of the recording. Call it
/// before starting the recording.
///
/// One sent by a process of the recording itself (the recorder is the recorded
/// program's parent, and `kill(getppid(), SIGINT)` is how some programs tell their
/// parent something) is ignored, as a shell ignores it: the program's call succeeded
/// and is recorded like any other; ending the recording for it would lose the run.
///
/// A second signal kills the program at once, except the same signal again from the
/// same process: wrappers such as GNU `timeout` pass a signal to their child and then
/// to their whole process group, so the recorder gets it twice.
pub fn interrupt_on_ctrl_c(interrupter: Arc<Interrupter>) {
    let Some(set) = block_termination_signals() else {
        return;
    };
    let mut first: Option<(i32, i32)> = None;
    std::thread::spawn(move || loop {
        let Some((sig, sender)) = wait_with_sender(&set) else {
            return;
        };
        // Any task the recording had, gone or not (a program that signals its parent
        // and exits may be reaped before this runs): every descendant is traced and
        // becomes a member before it runs.
        if sender > 0 && interrupter.is_member(sender) {
            tracing::info!(
                signal = sig,
                sender,
                "ignored a signal the recorded program sent to the recorder"
            );
            continue;
        }
        if sender > 0 && first == Some((sig, sender)) {
            tracing::info!(
                signal = sig,
                sender,
                "ignored the same signal again from the same process (a wrapper passing it on)"
            );
            continue;
        }
        first.get_or_insert((sig, sender));
        if sig == libc::SIGINT {
            eprintln!("chaos: interrupted; stopping the program and keeping the trace");
        }
        interrupter.interrupt(Outcome::Interrupted);
    });
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it starts
/// later) and returns that set, for a thread to wait for them with [`wait_with_sender`]
/// or `SigSet::wait`; `None` if they could not be blocked.
pub fn block_termination_signals() -> Option<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().ok()?;
    Some(set)
}

/// Waits for one of `set`'s signals (blocked in the calling thread) and returns it with
/// the pid of the process that sent it (0 for the kernel: the terminal's Ctrl-C).
/// `None` when waiting fails for good.
pub fn wait_with_sender(set: &nix::sys::signal::SigSet) -> Option<(i32, i32)> {
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: the set is valid; `info` is written by the kernel when the call
        // succeeds.
        let sig = unsafe { libc::sigwaitinfo(set.as_ref(), info.as_mut_ptr()) };
        if sig < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        // SAFETY: sigwaitinfo succeeded, so `info` is initialised; si_pid is valid for
        // SIGINT, SIGTERM and SIGHUP (sent by kill, tgkill or the terminal's driver,
        // which gives 0).
        let sender = unsafe { info.assume_init().si_pid() };
        return Some((sig, sender));
    }
}

/// For commands that write an archive under a temporary name (pack, upload, download):
/// blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it spawns later) and
/// starts a thread that, on one of them, removes the partial files being written and ends
/// the process with the shell's status for that signal (128 + its number).
pub fn remove_partial_files_on_signal() {
    let Some(set) = block_termination_signals() else {
        return;
    };
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            packer::partial::remove_in_progress();
            std::process::exit(128 + sig as i32);
        }
    });
}
