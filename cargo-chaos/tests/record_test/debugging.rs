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

/// Runs gdb in batch mode on `archive` (`cargo replay-artifact ARCHIVE --gdb`) with the
/// script `script`, written to `<sandbox>/name`; returns what gdb and the server printed
/// (both streams), once they exited with status 0.
fn gdb_on(sb: &Sandbox, archive: &Path, name: &str, script: &str) -> String {
    let path = sb.path(name);
    std::fs::write(&path, script).unwrap();
    let mut cmd = sb.replay_cmd([
        archive.as_os_str(),
        "--quiet".as_ref(),
        "--gdb".as_ref(),
        "--gdb-arg=-batch".as_ref(),
        "--gdb-arg=-nx".as_ref(),
        "--gdb-arg=-x".as_ref(),
    ]);
    cmd.arg(format!("--gdb-arg={}", path.display()));
    let out = Run::of(cmd);
    assert_eq!(out.status, 0, "{}", out.show());
    format!("{}\n{}", out.stdout_str(), out.stderr_str())
}

/// Hunts the rust-races `lost_update` test built with `--instrument` (and `extra`
/// options) until it fails, with [`ITERATIONS`] increments a thread; returns the archive.
fn capture_lost_update(sb: &Sandbox, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "--instrument",
        "--until-fail",
        "--max-runs",
        "50",
        "--per-test",
    ];
    args.extend_from_slice(extra);
    args.push("lost_update");
    let mut hunt = sb.hunt_json_cmd(&races_manifest(), &args);
    hunt.env("LOST_UPDATE_ITERATIONS", ITERATIONS);
    let hunt = Run::of(hunt);
    hunt.expect_status(1);
    PathBuf::from(hunt.captured()["archive"].as_str().expect("archive path"))
}

fn races_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rust-races/Cargo.toml")
}

#[test]
fn watch_and_reverse_continue_reach_the_racing_stores_of_an_instrumented_capture() {
    let sb = Sandbox::new();
    let manifest = races_manifest();
    let archive = capture_lost_update(&sb, &[]);
    let recorded = recorded_stdout(&archive, &sb.path("unpacked"));
    let total: u64 = capture1(r"counted (\d+) of 40000", &recorded)
        .parse()
        .unwrap();
    assert!(total < 40_000, "updates were lost: {recorded}");

    let store = store_line(&manifest);
    let mut first: Option<Session> = None;
    for _ in 0..5 {
        let text = gdb_on(&sb, &archive, "script.gdb", SCRIPT);
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

/// Instructions stepped forward, then back.
const STEPS: usize = 20;

/// Defines `dump(tag)`: prints `STATE tag` with every general register and the counter.
const DUMP: &str = "\
set language rust
python
def dump(tag):
    regs = gdb.execute('info registers', to_string=True).split('\\n')
    words = [' '.join(l.split()[:2]) for l in regs if l.strip()]
    counter = gdb.parse_and_eval('races::lost_update::COUNTER.v.value')
    print('STATE %s | %s | %d' % (tag, ', '.join(words), int(counter)))
end
";

/// The states `dump` printed, by tag, in order.
fn states(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("STATE "))
        .map(|l| {
            let (tag, rest) = l.split_once(" | ").expect("a tagged state");
            (tag.to_string(), rest.to_string())
        })
        .collect()
}

/// `monitor stats`' instruction count, each time it was asked.
fn stepped(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once("instructions stepped: "))
        .map(|(_, n)| n.trim().parse().expect("a step count"))
        .collect()
}

/// Issue 14: `reverse-stepi` in code built with `--instrument` lands after a number of
/// ticks instead of single-stepping from the event boundary, and lands exactly. A
/// capture with large tick budgets (`--chaos off`: up to 100,000 ticks between two
/// events of a worker); from a stop at the end of a worker's loop reached by
/// `continue` (thousands of ticks after the boundary before it), one
/// session steps forward and prints every state; another steps forward the same way,
/// then goes back with `reverse-stepi` over the same instructions and further, then
/// forward again: every state (all registers, the flags included, and the counter)
/// matches the forward session's, and `monitor stats` shows far fewer instructions
/// stepped than the ticks of the position. A third session goes to the boundary
/// before the stop, reverse-steps into the interval before it and steps forward again
/// to the registers the thread has at that boundary.
#[test]
fn reverse_stepi_in_instrumented_code_lands_on_the_exact_states() {
    let sb = Sandbox::new();
    let manifest = races_manifest();
    let archive = capture_lost_update(&sb, &["--chaos", "off"]);

    // The end of a worker's closure, reached once, after its loop: thousands of ticks
    // after the last budget it got.
    let source = std::fs::read_to_string(manifest.with_file_name("tests").join("races.rs"))
        .expect("read the fixture's source");
    let end = store_line(&manifest) as usize
        + source
            .lines()
            .skip(store_line(&manifest) as usize)
            .position(|l| l.trim() == "})")
            .expect("the closure's end")
        + 1;
    let reach = format!(
        "set breakpoint pending on\nbreak races.rs:{end}\ncontinue\ndelete\n{DUMP}monitor where\n"
    );
    let forward = format!(
        "{reach}python\ndump(0)\nfor i in range(1, {n} + 1):\n    gdb.execute('stepi', \
         to_string=True)\n    dump(i)\nend\nmonitor when\n",
        n = STEPS
    );
    let backward = format!(
        "{reach}python\ndump(0)\n\
         for i in range(1, {n} + 1):\n    gdb.execute('stepi', to_string=True)\n    dump(i)\n\
         end\nmonitor stats\npython\n\
         for i in range({n} - 1, -{n} - 1, -1):\n    gdb.execute('reverse-stepi', to_string=True)\n    dump(i)\n\
         end\nmonitor stats\nmonitor where\npython\n\
         for i in range(-{n} + 1, 1):\n    gdb.execute('stepi', to_string=True)\n    dump('again %d' % i)\n\
         end\nmonitor when\n",
        n = STEPS
    );
    let run = |name: &str, script: &str| gdb_on(&sb, &archive, name, script);
    // From the boundary before the stop (`monitor goto`): three reverse-stepi into the
    // interval before it (another thread's, or this one's), then three stepi back to
    // the boundary, which must show the registers the thread had there.
    let boundary = format!(
        "{reach}python\n\
         e = int(gdb.execute('monitor when', to_string=True).split(':')[1])\n\
         gdb.execute('monitor goto %d' % e)\n\
         gdb.execute('maintenance flush register-cache')\n\
         here = gdb.selected_thread()\n\
         for th in gdb.selected_inferior().threads():\n    th.switch()\n    dump('at %d' % th.ptid[1])\n\
         here.switch()\n\
         gdb.execute('monitor stats')\n\
         for i in range(1, 4):\n    gdb.execute('reverse-stepi', to_string=True)\n    dump('back %d' % i)\n\
         for i in range(2, -1, -1):\n    gdb.execute('stepi', to_string=True)\n    dump('fwd %d' % i)\n\
         print('LWP %d' % gdb.selected_thread().ptid[1])\n\
         print('BOUNDARY %d' % e)\n\
         end\nmonitor when\nmonitor stats\n"
    );
    let f = run("forward.gdb", &forward);
    let b = run("backward.gdb", &backward);
    let g = run("boundary.gdb", &boundary);
    let gs = states(&g);
    let lwp = capture1(r"LWP (\d+)", &g);
    assert_eq!(
        by_tag_of(&gs, "fwd 0"),
        by_tag_of(&gs, &format!("at {lwp}")),
        "{g}"
    );
    assert_eq!(by_tag_of(&gs, "fwd 1"), by_tag_of(&gs, "back 1"), "{g}");
    assert_eq!(by_tag_of(&gs, "fwd 2"), by_tag_of(&gs, "back 2"), "{g}");
    let events: Vec<&str> = g
        .lines()
        .filter_map(|l| l.strip_prefix("Current event: "))
        .collect();
    let boundary_event = capture1(r"BOUNDARY (\d+)", &g);
    assert_eq!(events.last(), Some(&boundary_event.as_str()), "{g}");
    let landed = counts(&g, "tick landings: ");
    assert_eq!(landed.len(), 2, "{g}");
    assert!(
        landed[1] - landed[0] >= 3,
        "each reverse-stepi landed:\n{g}"
    );
    let (fs, bs) = (states(&f), states(&b));
    assert_eq!(fs.len(), STEPS + 1, "{f}");
    assert_eq!(bs.len(), 4 * STEPS + 1, "{b}");
    let by_tag = by_tag_of;
    for i in 0..=STEPS {
        let want = by_tag(&fs, &i.to_string());
        let got: Vec<&(String, String)> = bs.iter().filter(|(t, _)| *t == i.to_string()).collect();
        let expected = if i == STEPS { 1 } else { 2 };
        assert_eq!(got.len(), expected, "state {i} forward and back:\n{b}");
        for (_, s) in got {
            assert_eq!(
                s, &want,
                "state {i}, forward session vs this one:\n{f}\n{b}"
            );
        }
    }
    for i in -(STEPS as i64) + 1..=0 {
        assert_eq!(
            by_tag(&bs, &format!("again {i}")),
            by_tag(&bs, &i.to_string()),
            "state {i} going back, then forward from {} steps back:\n{b}",
            STEPS
        );
    }
    assert!(
        b.lines()
            .any(|l| l == format!("Current event: {}", when(&f))),
        "back at the forward session's event:\n{f}\n{b}"
    );
    // The position's distance from its boundary, in ticks, and the steps paid.
    let ticks: u64 = capture1(r"\+(\d+) ticks", &b).parse().unwrap();
    let steps = stepped(&b);
    assert_eq!(steps.len(), 2, "{b}");
    let paid = steps[1] - steps[0];
    // Landed, each reverse-stepi steps within one block (tens of instructions); from
    // the boundary, it would step every instruction of the `ticks` blocks before it.
    // (How far the stop lies from its boundary depends on the drawn budget: not bounded
    // here.)
    assert!(
        paid < 50 * 2 * STEPS as u64,
        "{paid} instructions stepped for {} reverse-stepi, {ticks} ticks from the boundary:\n{b}",
        2 * STEPS
    );
    let landings = counts(&b, "tick landings: ");
    assert_eq!(landings.len(), 2, "{b}");
    assert!(landings[1] - landings[0] >= 2 * STEPS as u64, "{b}");
}

/// The state tagged `tag`.
fn by_tag_of(states: &[(String, String)], tag: &str) -> String {
    states
        .iter()
        .find(|(t, _)| t == tag)
        .unwrap_or_else(|| panic!("no state {tag}"))
        .1
        .clone()
}

/// The numbers after `prefix` at the start of lines.
fn counts(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|n| n.trim().parse().expect("a number"))
        .collect()
}

fn when(text: &str) -> u64 {
    capture1(r"Current event: (\d+)", text).parse().unwrap()
}

/// The example crate's hash-order failure, captured by a hunt and debugged from its
/// archive (gdb is `rust-gdb` when installed: rustup puts it next to cargo): the panic
/// breakpoint is hit on the test's thread, the backtrace shows the test function at its
/// line, the local `keys` prints the order the recorded run saw, and libtest's threads
/// are listed.
#[test]
fn a_captured_hash_order_failure_shows_its_test_its_line_and_its_values_in_gdb() {
    let sb = Sandbox::new();
    let hunt = sb.hunt_json(
        &super::common::example_manifest(),
        &["--until-fail", "--max-runs", "80", "hashmap_order"],
    );
    hunt.expect_status(1);
    let captured = hunt.captured();
    let archive = PathBuf::from(captured["archive"].as_str().expect("archive path"));
    let recorded = recorded_stdout(&archive, &sb.path("unpacked"));
    // `iteration order: ["beta", "alpha"]`, as gdb prints it: {"beta", "alpha"}.
    let order = capture1(r"iteration order: \[([^\]]*)\]", &recorded);
    let text = gdb_on(
        &sb,
        &archive,
        "script.gdb",
        "set breakpoint pending on\nbreak rust_panic\ncontinue\nbt\n\
         frame function flaky_example::tests::hashmap_order\np keys\ninfo threads\n",
    );
    assert!(
        text.contains("hit Breakpoint 1, std::panicking::rust_panic ()"),
        "{text}"
    );
    let line = std::fs::read_to_string(super::common::example_crate().join("src").join("lib.rs"))
        .unwrap()
        .lines()
        .position(|l| l.contains("assert_eq!(keys[0], \"alpha\""))
        .expect("the assertion in the example crate")
        + 1;
    assert!(
        text.contains(&format!(
            "flaky_example::tests::hashmap_order () at src/lib.rs:{line}"
        )),
        "the test function at its line {line}: {text}"
    );
    assert!(
        text.contains(&format!("Vec(size=2) = {{{order}}}")),
        "keys as recorded ({order}): {text}"
    );
    let threads = text.lines().filter(|l| l.contains("Thread 1.")).count();
    assert!(threads >= 2, "libtest's main thread and the test's: {text}");
    assert!(
        text.lines()
            .any(|l| l.contains("Thread 1.") && l.contains("(tests::hashmap_)")),
        "the test's thread by its name: {text}"
    );
}
