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
pub fn interrupt_on_ctrl_c(interrupter: Arc<Interrupter>) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: the set is valid and blocked in this thread; `info` is written by the
        // kernel when the call succeeds.
        let sig = unsafe { libc::sigwaitinfo(set.as_ref(), info.as_mut_ptr()) };
        if sig < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        // SAFETY: sigwaitinfo succeeded, so `info` is initialised; si_pid is valid for
        // the signals this set holds (sent by kill, tgkill or the terminal's driver,
        // which gives 0).
        let sender = unsafe { info.assume_init().si_pid() };
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
        if sig == libc::SIGINT {
            eprintln!("chaos: interrupted; stopping the program and keeping the trace");
        }
        interrupter.interrupt(Outcome::Interrupted);
    });
}

/// For commands that write an archive under a temporary name (pack, upload, download):
/// blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it spawns later) and
/// starts a thread that, on one of them, removes the partial files being written and ends
/// the process with the shell's status for that signal (128 + its number).
pub fn remove_partial_files_on_signal() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            packer::partial::remove_in_progress();
            std::process::exit(128 + sig as i32);
        }
    });
}
