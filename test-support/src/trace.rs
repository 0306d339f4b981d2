//! Reading and rewriting a trace's event stream, for tests that inspect or edit a
//! recording.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use recorder::record::RecordOptions;

use recorder::trace::{Event, EventReader, EventWriter, SyscallEvent, TraceDir};

/// All events of the trace at `trace`, and the reader's note when the stream ended in
/// a damaged chunk.
pub fn read_events_checked(trace: &Path) -> recorder::Result<(Vec<Event>, Option<String>)> {
    let dir = TraceDir::open(trace)?;
    let mut reader: EventReader = dir.events()?;
    let mut events = Vec::new();
    while let Some(ev) = reader.next_event()? {
        events.push(ev);
    }
    Ok((events, reader.truncated.clone()))
}

/// All events of the trace at `trace`.
///
/// # Panics
/// When the trace cannot be read completely (tests want a plain failure there).
pub fn read_events(trace: &Path) -> Vec<Event> {
    match read_events_checked(trace) {
        Ok((events, None)) => events,
        Ok((_, Some(t))) => panic!("the events of {} are damaged: {t}", trace.display()),
        Err(e) => panic!("cannot read the events of {}: {e}", trace.display()),
    }
}

/// Replaces the trace's `events` stream with `events`, as the recorder writes it.
pub fn write_events(trace: &Path, events: &[Event]) -> recorder::Result<()> {
    write_events_chunked(trace, events, 0)
}

/// Replaces the trace's `events` stream with `events`, closing a chunk (an independent
/// zstd frame) after every `per_chunk` events (`0`: the writer's own chunking). Tests use
/// one event per chunk to cut a stream after an exact event.
pub fn write_events_chunked(
    trace: &Path,
    events: &[Event],
    per_chunk: usize,
) -> recorder::Result<()> {
    let path = trace.join("events");
    let mut w = EventWriter::create(&path)?;
    for (i, ev) in events.iter().enumerate() {
        w.push(ev)?;
        if per_chunk > 0 && (i + 1) % per_chunk == 0 {
            w.flush()?;
        }
    }
    w.flush()
}

/// Byte offsets in `events` at which each chunk ends, read from the chunk length
/// prefixes (see `docs/trace-format.md`): cutting the file at `ends[k]` keeps exactly the
/// first `k + 1` chunks.
pub fn chunk_ends(events_file: &Path) -> std::io::Result<Vec<u64>> {
    let data = std::fs::read(events_file)?;
    let mut ends = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= data.len() {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        pos += 4 + len;
        if pos > data.len() {
            break;
        }
        ends.push(pos as u64);
    }
    Ok(ends)
}

/// The options of a recording of `program args` started in `dir` with this process's
/// environment and seed 1, into `dir/trace`.
pub fn record_options_in(dir: &Path, program: PathBuf, args: Vec<OsString>) -> RecordOptions {
    RecordOptions {
        program,
        args,
        env: std::env::vars_os().collect(),
        removed_env: Vec::new(),
        cwd: Some(dir.to_path_buf()),
        trace_dir: dir.join("trace"),
        seed: Some(1),
        ..Default::default()
    }
}

/// The syscall events of a trace with their event numbers.
pub fn syscalls(events: &[Event]) -> impl Iterator<Item = (u64, &SyscallEvent)> {
    events.iter().enumerate().filter_map(|(i, e)| match e {
        Event::Syscall(s) => Some((i as u64, s)),
        _ => None,
    })
}
