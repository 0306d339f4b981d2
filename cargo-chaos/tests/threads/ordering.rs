//! Issue 16, item 1: output written by several threads at once. The replay must print
//! it in the order it reached stdout when the program ran, and so must the trace's copy
//! of stdout: both are compared byte for byte with what the program really wrote (the
//! recorder's stdout pipe, as this harness captured it), over [`REPEAT`] recordings.

use recorder::trace::Event;

use super::common::*;

/// Recordings per fixture: an order that depends on the schedule must come out right
/// every time, not once.
const REPEAT: usize = 10;

/// x86_64 numbers of the write calls the fixtures make.
const WRITE_CALLS: [u64; 2] = [sys::WRITE, sys::WRITEV];

/// How many times, in `events`, a thread entered a write-family call on an fd chosen by
/// `on` while another thread's write-family call on such an fd was still unfinished (a
/// `Blocked` event not yet followed by that thread's `Syscall` event): the proof that
/// the threads really wrote at the same time.
fn overlapping_writes(events: &[Event], on: impl Fn(u64, &[u64; 6]) -> bool) -> usize {
    let mut open: Vec<i32> = Vec::new();
    let mut overlaps = 0;
    for ev in events {
        match ev {
            Event::Blocked { tid, nr, args } if on(*nr, args) => {
                if open.iter().any(|t| t != tid) {
                    overlaps += 1;
                }
                open.push(*tid);
            }
            Event::Syscall(s) if on(s.nr, &s.args) => open.retain(|t| *t != s.tid),
            _ => {}
        }
    }
    overlaps
}

/// Records fixture `name` [`REPEAT`] times; each time the trace's copy of stdout and the
/// replay's stdout must equal the program's real stdout, and `check_output` must accept
/// that output. Returns how many overlapping writes (see [`overlapping_writes`]) the
/// traces showed in all.
fn record_replay_repeatedly(
    name: &str,
    args: &[&str],
    check_output: impl Fn(&str),
    on: impl Fn(u64, &[u64; 6]) -> bool,
) -> usize {
    let program = c_fixture(name);
    let mut overlaps = 0;
    for run in 1..=REPEAT {
        let dir = temp();
        let trace = dir.path().join("trace");
        let rec = record(&program, args, &trace);
        assert_eq!(
            rec.program.status,
            0,
            "{name} failed while recorded (run {run})\n{}",
            rec.program.show()
        );
        assert_eq!(rec.program.stderr_str(), format!("{name}: done\n"));
        check_output(&rec.program.stdout_str());
        let stored = std::fs::read(trace.join("stdout")).expect("the trace's copy of stdout");
        let diff = text_diff(&rec.program.stdout, &stored);
        assert!(
            diff.is_empty(),
            "run {run}: the trace's copy of stdout differs from what {name} really wrote \
             (- real, + trace):\n{diff}"
        );
        let replayed = replay(&trace);
        assert_same(&format!("{name} (run {run})"), &rec.program, &replayed);
        overlaps += overlapping_writes(&read_events(&trace), &on);
    }
    overlaps
}

/// Each of `threads` threads' lines, `prefix`ed with its number, come in sequence order
/// and are all there.
fn each_thread_in_sequence(out: &str, threads: usize, per_thread: usize, prefix: &str) {
    let mut next = vec![0usize; threads];
    for line in out.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let id: usize = words.next().and_then(|w| w.parse().ok()).expect("thread");
        let seq: usize = words.last().and_then(|w| w.parse().ok()).expect("sequence");
        assert_eq!(seq, next[id], "thread {id} out of sequence in:\n{out}");
        next[id] += 1;
    }
    assert_eq!(
        next,
        vec![per_thread; threads],
        "lines missing from:\n{out}"
    );
}

#[test]
fn racing_threads_stdout_replays_in_real_order() {
    let overlaps = record_replay_repeatedly(
        "threads_stdout",
        &[],
        |out| each_thread_in_sequence(out, 4, 100, "thread "),
        |nr, args| WRITE_CALLS.contains(&nr) && args[0] == 1,
    );
    assert!(
        overlaps > 0,
        "no two threads ever wrote to stdout at the same time in {REPEAT} recordings"
    );
}

#[test]
fn racing_threads_of_two_processes_stdout_replays_in_real_order() {
    // Parent and child each run two of the threads: the file is the same, the fd tables
    // are not.
    let overlaps = record_replay_repeatedly(
        "threads_stdout",
        &["processes"],
        |out| each_thread_in_sequence(out, 4, 100, "thread "),
        |nr, args| WRITE_CALLS.contains(&nr) && args[0] == 1,
    );
    assert!(
        overlaps > 0,
        "no two threads ever wrote to stdout at the same time in {REPEAT} recordings"
    );
}

#[test]
fn writers_filling_a_pipe_beyond_capacity_do_not_deadlock() {
    let overlaps = record_replay_repeatedly(
        "threads_pipe_fill",
        &[],
        |out| {
            // Each writer writes as many chunks as fill the pipe alone.
            let capacity: usize = line_with(out.as_bytes(), "reader: the pipe is full (")
                .split(['(', ' '])
                .find_map(|w| w.parse().ok())
                .expect("the pipe's capacity");
            let per_writer = capacity / 1024;
            assert!(
                out.contains(&format!("eof after {} chunks", 3 * per_writer)),
                "the reader did not get every chunk:\n{out}"
            );
            each_thread_in_sequence(out, 3, per_writer, "writer ");
            each_thread_in_sequence(out, 3, per_writer, "reader got writer ");
        },
        // The chunks: 1024 bytes each, to an fd other than stdout.
        |nr, args| nr == sys::WRITE && args[0] > 2 && args[2] == 1024,
    );
    assert!(
        overlaps > 0,
        "no two writers were ever in write() on the pipe together in {REPEAT} recordings"
    );
}
