//! The first error writing a trace while it is recorded (a full disk, a quota, an I/O
//! error).
//!
//! Such an error must not cost the program under test its run: the recorder keeps
//! handling its stops, writes nothing more, and marks the trace incomplete when the
//! program has ended (`trace_error` in `result.json`). The writers of one recording share
//! one [`TraceFault`], which keeps the first error only: later ones are usually its
//! consequences.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::errors::Error;

/// The first error writing one trace, shared by its writers (clones share it).
#[derive(Debug, Clone, Default)]
pub struct TraceFault(Arc<Mutex<Option<Error>>>);

impl TraceFault {
    /// A fault-free trace.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> MutexGuard<'_, Option<Error>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `error` unless an earlier one is remembered already.
    pub fn note(&self, error: Error) {
        let mut slot = self.slot();
        if slot.is_none() {
            tracing::debug!("writing the trace failed, nothing more is written: {error}");
            *slot = Some(error);
        } else {
            tracing::debug!("writing the trace failed again: {error}");
        }
    }

    /// Whether writing the trace has failed.
    pub fn is_set(&self) -> bool {
        self.slot().is_some()
    }

    /// The first error, as text.
    pub fn message(&self) -> Option<String> {
        self.slot().as_ref().map(ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_error() {
        let fault = TraceFault::new();
        assert!(!fault.is_set());
        let clone = fault.clone();
        clone.note(Error::io(
            "/t/events",
            std::io::Error::from_raw_os_error(28),
        ));
        fault.note(Error::io(
            "/t/result.json",
            std::io::Error::from_raw_os_error(5),
        ));
        assert!(fault.is_set());
        let message = fault.message().unwrap();
        assert!(message.contains("/t/events"), "{message}");
        assert!(message.contains("No space left on device"), "{message}");
    }
}
