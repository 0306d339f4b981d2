//! The properties that must hold for any input to the trace readers, checked the same way
//! by the bounded proptest runs (`tests/fuzz_readers.rs`, on CI) and by the libFuzzer
//! targets in `fuzz/` (which include this file). A broken property panics, with the
//! reason. Kept free of proptest so that both can use it.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

use recorder::trace::TraceDir;

/// What reading an event stream gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventsRead {
    /// Events decoded.
    pub events: u64,
    /// The stream ended in a damaged chunk (`EventReader::truncated`).
    pub truncated: bool,
    /// `next_event` returned an error.
    pub error: bool,
}

/// Reads `path` (an `events` file) to its end as `cargo chaos dump` and replay do
/// (`Event::tid`, `Event::describe` on every event), and checks that it never panics and
/// ends.
pub fn read_events_file(path: &Path) -> EventsRead {
    let mut out = EventsRead::default();
    let mut reader = match recorder::trace::EventReader::open(path) {
        Ok(r) => r,
        Err(_) => {
            out.error = true;
            return out;
        }
    };
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => {
                let _ = ev.tid();
                let _ = ev.describe();
                out.events += 1;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_string();
                out.error = true;
                break;
            }
        }
        // Every record takes at least 5 bytes of decompressed data, and a zstd block
        // expands at most ~32768 times: a reader that goes on for longer is looping.
        assert!(
            out.events <= (size + 1) * 32768 / 5 + 1,
            "{} events from {size} bytes",
            out.events
        );
    }
    out.truncated = reader.truncated.is_some();
    out
}

/// [`read_events_file`] on `data` written as a trace's `events` file.
pub fn check_events(data: &[u8]) -> EventsRead {
    let dir = tempfile::Builder::new()
        .prefix("chaos-fuzz-")
        .tempdir()
        .expect("temporary directory");
    let path = dir.path().join("events");
    fs::write(&path, data).expect("write the input");
    read_events_file(&path)
}

/// What reading a trace's metadata gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MetaRead {
    /// `TraceDir::open` accepted the `version` file.
    pub opened: bool,
    /// `header.json` parsed.
    pub header: bool,
    /// `result.json` parsed (or was absent: `Ok(None)`).
    pub result: bool,
    /// The header's `untraced` list passed replay's check (`validate::untraced_calls`).
    pub untraced: bool,
}

/// Writes a trace directory with the given `version`, `header.json` and `result.json`
/// (absent when `None`) and reads it as replay does: `TraceDir::open`, `header()`,
/// `result()`, the check of the header's `untraced` list. Checks that nothing panics,
/// that what parses survives a JSON round trip, and that no call outside the engine's
/// own list of untraced calls is let through.
pub fn check_trace_meta(version: &[u8], header: Option<&[u8]>, result: Option<&[u8]>) -> MetaRead {
    let dir = tempfile::Builder::new()
        .prefix("chaos-fuzz-")
        .tempdir()
        .expect("temporary directory");
    let t = dir.path();
    fs::create_dir_all(t.join("files")).expect("files/");
    fs::write(t.join("version"), version).expect("version");
    if let Some(h) = header {
        fs::write(t.join("header.json"), h).expect("header.json");
    }
    if let Some(r) = result {
        fs::write(t.join("result.json"), r).expect("result.json");
    }
    let mut out = MetaRead::default();
    let Ok(trace) = TraceDir::open(t) else {
        return out;
    };
    out.opened = true;
    match trace.header() {
        Ok(h) => {
            out.header = true;
            let v = serde_json::to_value(&h).expect("a header serializes");
            let back: recorder::trace::Header =
                serde_json::from_value(v.clone()).expect("a written header parses");
            assert_eq!(serde_json::to_value(&back).expect("serializes"), v);
            // What replay checks before it runs anything natively: a trace may only
            // narrow the engine's own list of calls that run natively.
            if let Ok(allowed) = recorder::trace::validate::untraced_calls(t, &h) {
                out.untraced = true;
                for nr in allowed {
                    assert!(
                        recorder::syscalls::lookup(nr).is_some_and(|d| d.untraced),
                        "replay would run call {nr} natively"
                    );
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match trace.result() {
        Ok(r) => {
            out.result = true;
            if let Some(r) = r {
                let v = serde_json::to_value(&r).expect("a result serializes");
                let back: recorder::trace::RunResult =
                    serde_json::from_value(v.clone()).expect("a written result parses");
                assert_eq!(serde_json::to_value(&back).expect("serializes"), v);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    out
}
