//! The recording's event stream, which stops writing, rather than stopping the
//! recording, when writing fails (see [`crate::trace::TraceFault`]).

use crate::errors::Result;
use crate::trace::{Event, EventWriter, TraceFault};

/// Appends events to the trace until writing fails once; then drops them.
pub(super) struct EventSink {
    writer: EventWriter,
    fault: TraceFault,
}

impl EventSink {
    /// Writes through `writer`; its failures go to `fault`, shared with the trace's other
    /// writers (once any of them failed, nothing more is written).
    pub(super) fn new(writer: EventWriter, fault: TraceFault) -> Self {
        EventSink { writer, fault }
    }

    /// Appends one event. Fails only when the event cannot be encoded.
    pub(super) fn push(&mut self, event: &Event) -> Result<()> {
        if self.fault.is_set() {
            return Ok(());
        }
        match self.writer.push(event) {
            Err(e @ crate::errors::Error::Io { .. }) => {
                self.fault.note(e);
                Ok(())
            }
            other => other,
        }
    }

    /// Writes out the events pushed so far.
    pub(super) fn flush(&mut self) {
        if self.fault.is_set() {
            return;
        }
        if let Err(e) = self.writer.flush() {
            self.fault.note(e);
        }
    }

    /// Number of events written (or waiting to be).
    pub(super) fn count(&self) -> u64 {
        self.writer.count()
    }
}
