//! Issue 14: debugging a capture of `cargo record-test` with real gdb
//! (`cargo replay-artifact ARCHIVE --gdb`), on a lost-update race built with
//! `--instrument`: from the failed assertion, a watchpoint on the shared counter and
//! `reverse-continue` go back to the racing stores on the worker threads, and `continue`
//! returns to the failure, at the same positions in every session.

use std::path::{Path, PathBuf};

use super::common::{capture1, recorded_stdout, Messages, Run, Sandbox};

/// Increments per worker thread: few enough that a reverse watchpoint search over all
/// of them stays short, enough that the tick counter preempts a worker between its load
/// and its store in most runs.
const ITERATIONS: &str = "20000";

/// The gdb session: stop at the panic, watch the counter, go back two stores, delete
/// the watchpoint and run forward to the panic again.
const SCRIPT: &str = "\
set breakpoint pending on
break rust_panic
continue
monitor when
p races::lost_update::COUNTER.v.value
watch -l races::lost_update::COUNTER.v.value
reverse-continue
bt 3
monitor when
reverse-continue
bt 3
monitor when
delete 2
continue
monitor when
p races::lost_update::COUNTER.v.value
";

/// What one gdb session showed, in the order it happened.
#[derive(Debug, PartialEq, Eq)]
struct Session {
    /// gdb's thread number of each stop (`Thread N hit ...`).
    stopped_threads: Vec<u32>,
    /// Each `Old value = A` / `New value = B` pair of a watchpoint stop.
    changes: Vec<(u64, u64)>,
    /// Each `Current event: N` answer of `monitor when`.
    events: Vec<u64>,
    /// Each value printed by `p` (`$N = V`).
    printed: Vec<u64>,
    /// The source lines of `tests/races.rs` in the backtraces.
    race_lines: Vec<u32>,
}

fn parse(text: &str) -> Session {
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let mut s = Session {
        stopped_threads: Vec::new(),
        changes: Vec::new(),
        events: Vec::new(),
        printed: Vec::new(),
        race_lines: Vec::new(),
    };
    let mut old = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            if let Some((n, what)) = rest.split_once(' ') {
                if what.starts_with("hit ") {
                    s.stopped_threads.push(n.parse().expect("a thread number"));
                }
            }
        } else if let Some(v) = line.strip_prefix("Old value = ") {
            old = number(v);
        } else if let Some(v) = line.strip_prefix("New value = ") {
            let old = old.take().expect("Old value before New value");
            s.changes.push((old, number(v).expect("a counter value")));
        } else if let Some(v) = line.strip_prefix("Current event: ") {
            s.events.push(number(v).expect("an event number"));
        } else if line.starts_with('$') {
            if let Some(v) = line.split_once(" = ").and_then(|(_, v)| number(v)) {
                s.printed.push(v);
            }
        } else if let Some((_, at)) = line.split_once(" at tests/races.rs:") {
            s.race_lines.push(at.trim().parse().expect("a line number"));
        }
    }
    s
}

/// The line of `tests/races.rs` (rust-races fixture) with the racing store.
fn store_line(manifest: &Path) -> u32 {
    let source = std::fs::read_to_string(manifest.with_file_name("tests").join("races.rs"))
        .expect("read the fixture's source");
    let index = source
        .lines()
        .position(|l| l.contains("COUNTER.store(v + 1"))
        .expect("the racing store in the fixture");
    index as u32 + 1
}

fn races_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rust-races/Cargo.toml")
}

#[test]
fn watch_and_reverse_continue_reach_the_racing_stores_of_an_instrumented_capture() {
    let sb = Sandbox::new();
    let manifest = races_manifest();
    let mut hunt = sb.hunt_json_cmd(
        &manifest,
        &[
            "--instrument",
            "--until-fail",
            "--max-runs",
            "50",
            "--per-test",
            "lost_update",
        ],
    );
    hunt.env("LOST_UPDATE_ITERATIONS", ITERATIONS);
    let hunt = Run::of(hunt);
    hunt.expect_status(1);
    let captured = hunt.captured();
    let archive = PathBuf::from(captured["archive"].as_str().expect("archive path"));
    let recorded = recorded_stdout(&archive, &sb.path("unpacked"));
    let total: u64 = capture1(r"counted (\d+) of 40000", &recorded)
        .parse()
        .unwrap();
    assert!(total < 40_000, "updates were lost: {recorded}");

    let script = sb.path("script.gdb");
    std::fs::write(&script, SCRIPT).unwrap();
    let store = store_line(&manifest);
    let mut first: Option<Session> = None;
    for _ in 0..5 {
        let mut cmd = sb.replay_cmd([
            archive.as_os_str(),
            "--quiet".as_ref(),
            "--gdb".as_ref(),
            "--gdb-arg=-batch".as_ref(),
            "--gdb-arg=-nx".as_ref(),
            "--gdb-arg=-x".as_ref(),
        ]);
        cmd.arg(format!("--gdb-arg={}", script.display()));
        let out = Run::of(cmd);
        let text = format!("{}\n{}", out.stdout_str(), out.stderr_str());
        assert_eq!(out.status, 0, "{}", out.show());
        let s = parse(&text);

        // Stops: the panic, two stores going back, the panic again.
        assert_eq!(s.stopped_threads.len(), 4, "{text}");
        let panicking = s.stopped_threads[0];
        assert_eq!(s.stopped_threads[3], panicking, "back at the panic: {text}");
        for worker in &s.stopped_threads[1..3] {
            assert_ne!(*worker, panicking, "a store of another thread: {text}");
        }
        // Going back, each store undone in turn (gdb shows the value after the store as
        // "Old" and the one before as "New"): the first is the counter's final value.
        assert_eq!(s.printed, [total, total], "{text}");
        assert_eq!(s.changes.len(), 2, "{text}");
        assert_eq!(
            s.changes[0].0, total,
            "the last store wrote the total: {text}"
        );
        assert_eq!(
            s.changes[1].0, s.changes[0].1,
            "the store before it: {text}"
        );
        // Both stores are at the racing store's line.
        assert_eq!(s.race_lines, [store, store], "{text}");
        // The positions: back before the panic, then forward to the same event.
        assert_eq!(s.events.len(), 4, "{text}");
        assert!(s.events[1] <= s.events[0], "{text}");
        assert!(s.events[2] <= s.events[1], "{text}");
        assert_eq!(s.events[3], s.events[0], "{text}");

        match &first {
            None => first = Some(s),
            Some(f) => assert_eq!(&s, f, "every session stops at the same positions"),
        }
    }
}
