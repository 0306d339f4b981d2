//! Ctrl-C and SIGTERM during a recording: stop the recorded program, keep the trace.

use std::sync::Arc;

use recorder::record::Interrupter;
use recorder::trace::Outcome;

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and the threads it spawns later)
/// and starts a thread that turns them into an interruption of the recording. Call it
/// before starting the recording.
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
        match set.wait() {
            Ok(Signal::SIGINT) => {
                eprintln!("chaos: interrupted; stopping the program and keeping the trace");
                interrupter.interrupt(Outcome::Interrupted);
            }
            Ok(_) => interrupter.interrupt(Outcome::Interrupted),
            Err(_) => return,
        }
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
