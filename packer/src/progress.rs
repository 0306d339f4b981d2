//! Progress reporting. The library never prints: long operations take a callback and
//! send it [`ProgressEvent`]s, which the binary renders (progress bars on a terminal,
//! plain lines in CI).

use std::time::Duration;

/// What a long operation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Reading the recording to hash and check it.
    Hashing,
    /// Compressing into the archive.
    Packing,
    /// Extracting and verifying an archive.
    Unpacking,
    /// Sending an archive to a remote location.
    Uploading,
    /// Fetching an archive from a remote location.
    Downloading,
}

impl Phase {
    /// A cargo-style status word for this phase ("Packing", ...).
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Hashing => "Hashing",
            Phase::Packing => "Packing",
            Phase::Unpacking => "Unpacking",
            Phase::Uploading => "Uploading",
            Phase::Downloading => "Downloading",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// `done` of `total` bytes are processed (`total` is `None` when unknown).
    Bytes {
        /// The phase.
        phase: Phase,
        /// Bytes processed so far in this phase.
        done: u64,
        /// Bytes the phase will process, if known.
        total: Option<u64>,
    },
    /// A transient failure happened; the operation is retried after `delay`.
    Retrying {
        /// The phase.
        phase: Phase,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// How long the operation waits before the next attempt.
        delay: Duration,
        /// The failure, in words.
        reason: String,
    },
    /// The phase is complete.
    Finished {
        /// The phase.
        phase: Phase,
        /// Bytes processed.
        bytes: u64,
    },
}

/// The callback type long operations take. Pass `&mut |_| {}` to ignore progress.
pub type ProgressFn<'a> = &'a mut dyn FnMut(&ProgressEvent);

/// Emits `Bytes` events at most once per `STEP` bytes, plus the final one.
pub(crate) struct Meter<'a, 'b> {
    pub(crate) phase: Phase,
    pub(crate) total: Option<u64>,
    pub(crate) done: u64,
    last: u64,
    sink: &'a mut (dyn FnMut(&ProgressEvent) + 'b),
}

const STEP: u64 = 1 << 20;

impl<'a, 'b> Meter<'a, 'b> {
    pub(crate) fn new(
        phase: Phase,
        total: Option<u64>,
        sink: &'a mut (dyn FnMut(&ProgressEvent) + 'b),
    ) -> Self {
        sink(&ProgressEvent::Bytes {
            phase,
            done: 0,
            total,
        });
        Meter {
            phase,
            total,
            done: 0,
            last: 0,
            sink,
        }
    }

    pub(crate) fn add(&mut self, n: u64) {
        self.done += n;
        if self.done - self.last >= STEP {
            self.last = self.done;
            (self.sink)(&ProgressEvent::Bytes {
                phase: self.phase,
                done: self.done,
                total: self.total,
            });
        }
    }

    pub(crate) fn finish(&mut self) {
        (self.sink)(&ProgressEvent::Bytes {
            phase: self.phase,
            done: self.done,
            total: self.total,
        });
        (self.sink)(&ProgressEvent::Finished {
            phase: self.phase,
            bytes: self.done,
        });
    }
}
