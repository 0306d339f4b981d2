//! Re-execution on multi-threaded programs: edit one recorded value (the bytes a
//! thread's blocked read() got from a pipe; the time a Rust test thread got from
//! clock_gettime) by rewriting the trace's `events` file, and the replayed program
//! computes with the edited value. It either prints it, or the replay stops with a
//! divergence at exactly the edited event or at the first write to stdout by the same
//! thread after it (the write that carries the edited value, whose data no longer hashes
//! to the recorded hash). Nothing of the original value may be printed.

use recorder::trace::Event;

use super::common::*;

/// The first write or writev to fd 1 by `tid` after event `after`.
fn next_stdout_write(events: &[Event], after: u64, tid: i32) -> u64 {
    syscalls(events)
        .find(|(i, s)| {
            *i > after
                && s.tid == tid
                && (s.nr == sys::WRITE || s.nr == sys::WRITEV)
                && s.args[0] == 1
        })
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("thread {tid} never writes to stdout after event {after}"))
}

#[test]
fn edited_pipe_bytes_in_the_reader_thread() {
    let dir = temp();
    let rec = record_and_replay(
        "threads_pipe",
        &c_fixture("threads_pipe"),
        &[],
        &dir.path().join("trace"),
    );
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    // `reader TID got 48 bytes [msg 1 from ...] at ...`
    let line = line_with(&rec.program.stdout, "got 48 bytes [msg 1 ");
    let (_, rest) = line.split_once('[').expect("a bracketed message");
    let (message, _) = rest.split_once(']').expect("a bracketed message");
    assert_eq!(message.len(), 48, "{line}");
    let reader: i32 = line
        .strip_prefix("reader ")
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no reader tid in `{line}`"));

    let mut events = read_events(&rec.trace);
    let (index, _) = syscalls(&events)
        .find(|(_, s)| {
            s.tid == reader
                && s.nr == sys::READ
                && s.ret == 48
                && s.writes.iter().any(|w| w.data == message.as_bytes())
        })
        .unwrap_or_else(|| panic!("no read by thread {reader} wrote `{message}` in the trace"));
    let edited = format!("{:#<48}", "EDITED message for the reader");
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    let w = s
        .writes
        .iter_mut()
        .find(|w| w.data == message.as_bytes())
        .expect("the write found above");
    w.data = edited.clone().into_bytes();
    write_events(&rec.trace, &events);

    let write = next_stdout_write(&events, index, reader);
    let replayed = replay(&rec.trace);
    assert_edit_seen(
        &replayed,
        &rec.program,
        index,
        write,
        &format!("[{message}]"),
        &format!("[{edited}]"),
    );
}

#[test]
fn edited_clock_in_a_rust_test_thread() {
    let dir = temp();
    let rec = record_and_replay(
        "std_threads",
        suite().test("std_threads"),
        &[],
        &dir.path().join("trace"),
    );
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    // `times: system NANOS ns, main test thread ...`, not always at the start of its
    // line: libtest's `ok` for another test may come just before it.
    let line = line_with(&rec.program.stdout, "times: system ");
    let nanos: u128 = line
        .split_once("times: system ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no time in `{line}`"));
    let (sec, nsec) = (
        (nanos / 1_000_000_000) as i64,
        (nanos % 1_000_000_000) as i64,
    );

    let mut events = read_events(&rec.trace);
    let (index, s) = syscalls(&events)
        .find(|(_, s)| {
            s.nr == sys::CLOCK_GETTIME
                && s.args[0] == 0
                && s.writes.iter().any(|w| {
                    w.data.len() == 16
                        && i64::from_le_bytes(w.data[..8].try_into().unwrap()) == sec
                        && i64::from_le_bytes(w.data[8..].try_into().unwrap()) == nsec
                })
        })
        .unwrap_or_else(|| panic!("no clock_gettime(CLOCK_REALTIME) event wrote {sec}.{nsec:09}"));
    let tid = s.tid;
    assert_ne!(
        tid,
        events[0].tid(),
        "the time was read on a libtest test thread, not the main thread"
    );
    // Same number of digits, so nothing else about the output changes shape.
    let (new_sec, new_nsec) = (1_600_000_000i64, 123_456_789i64);
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    let w = s
        .writes
        .iter_mut()
        .find(|w| w.data.len() == 16)
        .expect("the timespec found above");
    w.data[..8].copy_from_slice(&new_sec.to_le_bytes());
    w.data[8..].copy_from_slice(&new_nsec.to_le_bytes());
    write_events(&rec.trace, &events);

    let write = next_stdout_write(&events, index, tid);
    let replayed = replay(&rec.trace);
    assert_edit_seen(
        &replayed,
        &rec.program,
        index,
        write,
        &format!("times: system {nanos} ns"),
        &format!("times: system {new_sec}{new_nsec:09} ns"),
    );
}
