//! Stopping a hunt from outside: Ctrl-C, SIGTERM (a cancelled CI job), SIGHUP.
//!
//! The recorder is the parent of every test it records, and some tests signal their
//! parent (`kill(getppid(), SIGINT)`, or a helper process they start). Such a signal
//! must not end the hunt: the test's call succeeded natively and is recorded like any
//! other. So `cargo record-test` blocks the three signals in all its threads and one
//! thread takes them: a signal sent by a task of any recording of the hunt (a member of
//! [`HuntControl`]'s shared set, even after that task exited) is ignored; any other
//! stops the hunt: the recordings in progress are killed (the tracees die with the
//! recorder's `PTRACE_O_EXITKILL` anyway), what was captured already is kept, the
//! hunt's scratch directory is removed and the command exits with 128 + the signal's
//! number. A second such signal, or one outside the hunt (while building or
//! uploading), removes the partial files being written and exits at once; except the
//! same signal again from the same process, which is ignored: wrappers such as GNU
//! `timeout` pass a signal to their child and then to their whole process group, so
//! the hunt gets it twice. A terminal's second Ctrl-C (sent by the kernel), another
//! signal or another sender still ends the hunt at once.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use recorder::record::Interrupter;
use recorder::trace::Outcome;

/// What the signal thread and the hunt's workers share.
#[derive(Debug, Default)]
pub struct HuntControl {
    /// Never armed: it holds the task ids of every recording of the hunt (each run's
    /// interrupter shares its set).
    members: Arc<Interrupter>,
    /// The signal that stopped the hunt; 0 while none did.
    stopped_by: AtomicI32,
    /// Whether runs are being recorded (a signal then stops the hunt instead of
    /// ending the process).
    hunting: AtomicBool,
    /// The recordings in progress.
    running: Mutex<Vec<Arc<Interrupter>>>,
}

impl HuntControl {
    /// A control for one invocation of `cargo record-test`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An interrupter for one run, registered as in progress until [`Self::finished`].
    /// Already aborted when the hunt was stopped meanwhile.
    pub fn recording(&self) -> Arc<Interrupter> {
        let i = self.members.sharing_members();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&i));
        if self.stopped_by().is_some() {
            i.abort(Outcome::Interrupted);
        }
        i
    }

    /// The run of `i` ended.
    pub fn finished(&self, i: &Arc<Interrupter>) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| !Arc::ptr_eq(r, i));
    }

    /// The signal that stopped the hunt, if one did.
    pub fn stopped_by(&self) -> Option<i32> {
        match self.stopped_by.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Marks the span in which runs are recorded (see [`watch`]).
    pub fn set_hunting(&self, on: bool) {
        self.hunting.store(on, Ordering::SeqCst);
    }

    /// Stops the hunt for `sig`: no run starts any more and those in progress are
    /// killed. Returns false when it was stopped already.
    fn stop(&self, sig: i32) -> bool {
        if self.stopped_by.swap(sig, Ordering::SeqCst) != 0 {
            return false;
        }
        for i in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            i.abort(Outcome::Interrupted);
        }
        true
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and those it starts later, and
/// starts the thread that handles them for `control` (see the module's comment). Call
/// it first thing, before any other thread exists: a thread that does not block them
/// would take the default action (the end of the process) instead.
pub fn watch(control: Arc<HuntControl>) {
    let Some(set) = crate::signals::block_termination_signals() else {
        return;
    };
    let mut stopped_by: Option<(i32, i32)> = None;
    std::thread::spawn(move || loop {
        let Some((sig, sender)) = crate::signals::wait_with_sender(&set) else {
            return;
        };
        if sender > 0 && control.members.is_member(sender) {
            tracing::info!(
                signal = sig,
                sender,
                "ignored a signal a recorded test sent to the recorder"
            );
            continue;
        }
        if sender > 0 && stopped_by == Some((sig, sender)) {
            tracing::info!(
                signal = sig,
                sender,
                "ignored the same signal again from the same process (a wrapper passing it on)"
            );
            continue;
        }
        if control.hunting.load(Ordering::SeqCst) && control.stop(sig) {
            stopped_by = Some((sig, sender));
            if sig == libc::SIGINT {
                eprintln!("chaos: interrupted; stopping the hunt (again to quit at once)");
            }
            continue;
        }
        packer::partial::remove_in_progress();
        std::process::exit(crate::exit_codes::stopped_by_signal(sig));
    });
}
