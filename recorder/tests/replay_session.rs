//! A replay driven as a session, the way a debugger drives it: event by event, to a
//! given event, to breakpoints, one instruction at a time. The fixture
//! (`breakpoint_target.c`) prints the nondeterministic arguments of each call to
//! `target()` just before making it; a breakpoint there must see them in rdi and rsi.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use recorder::record::record;
use recorder::replay::{replay, ReplayOptions, ReplaySession, SessionStop};
use recorder::trace::Event;
use test_support::{read_events, text_diff, write_events};

const FIXTURE: &str = "breakpoint_target";

struct Recorded {
    _dir: tempfile::TempDir,
    program: PathBuf,
    trace: PathBuf,
    stdout: Vec<u8>,
}

fn record_fixture() -> Recorded {
    record_fixture_with(&[], 5)
}

/// Records the fixture with `args`; it must print `calls` calls.
fn record_fixture_with(args: &[&str], calls_printed: usize) -> Recorded {
    let dir = tempfile::Builder::new()
        .prefix("chaos-session-")
        .tempdir()
        .unwrap();
    let program = dir.path().join(FIXTURE);
    std::fs::copy(test_support::fixture!(FIXTURE), &program).unwrap();
    let opts = test_support::record_options_in(
        dir.path(),
        program.clone(),
        args.iter().map(Into::into).collect(),
    );
    let trace = opts.trace_dir.clone();
    let summary = record(&opts).unwrap_or_else(|e| panic!("recording failed: {e}"));
    assert_eq!(summary.result.status, 0, "the recording should exit 0");
    let stdout = std::fs::read(trace.join("stdout")).unwrap();
    assert_eq!(
        calls(&stdout).len(),
        calls_printed,
        "the fixture prints {calls_printed} calls:\n{}",
        String::from_utf8_lossy(&stdout)
    );
    Recorded {
        _dir: dir,
        program,
        trace,
        stdout,
    }
}

/// A session whose output goes to the returned buffer.
fn open(trace: &Path) -> (ReplaySession<'static>, Rc<RefCell<Vec<u8>>>) {
    let out = Rc::new(RefCell::new(Vec::new()));
    let o = out.clone();
    let options = ReplayOptions {
        sink: Box::new(move |_, data: &[u8]| o.borrow_mut().extend_from_slice(data)),
        ..Default::default()
    };
    let s = ReplaySession::open(trace, options).unwrap_or_else(|e| panic!("open failed: {e}"));
    (s, out)
}

/// The `(a, b)` of each "call N: target(a, b)" line.
fn calls(out: &[u8]) -> Vec<(u64, u64)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            let args = l.split_once("target(")?.1.strip_suffix(')')?;
            let (a, b) = args.split_once(", ")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// The address of `target` in the replayed program: the symbol's value (`nm`) plus the
/// address the recorded exec mapped the executable at (offset 0).
fn target_address(rec: &Recorded) -> u64 {
    let nm = std::process::Command::new("nm")
        .arg(&rec.program)
        .output()
        .expect("nm (binutils) runs");
    assert!(nm.status.success(), "nm failed");
    let value = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (v, kind, name) = (f.next()?, f.next()?, f.next()?);
            (name == "target" && kind.eq_ignore_ascii_case("t"))
                .then(|| u64::from_str_radix(v, 16).ok())
                .flatten()
        })
        .expect("the fixture has a `target` symbol");
    let events = read_events(&rec.trace);
    let Some(Event::Exec(state)) = events.first() else {
        panic!("the trace starts with an exec");
    };
    let base = state
        .mappings
        .iter()
        .find(|m| m.offset == 0 && m.name.ends_with(&format!("/{FIXTURE}")))
        .map(|m| m.start)
        .expect("the exec maps the fixture");
    base + value
}

fn assert_same(expected: &[u8], actual: &[u8], what: &str) {
    assert!(
        expected == actual,
        "{what}: output differs from the recording's:\n{}",
        text_diff(expected, actual)
    );
}

fn expect_exited(stop: SessionStop) {
    match stop {
        SessionStop::Exited { status, .. } => assert_eq!(status.status(), 0),
        other => panic!("expected the end, got {other:?}"),
    }
}

#[test]
fn stepping_event_by_event_gives_the_straight_replays_output() {
    let rec = record_fixture();
    let mut straight = Vec::new();
    let summary = replay(&rec.trace, &mut |_, d: &[u8]| straight.extend_from_slice(d))
        .unwrap_or_else(|e| panic!("straight replay failed: {e}"));
    assert_same(&rec.stdout, &straight, "straight replay");

    let (mut s, out) = open(&rec.trace);
    assert_eq!(s.event_index(), 1, "a session starts after the first exec");
    let mut steps = 0u64;
    let stop = loop {
        let before = s.event_index();
        assert!(s.next_event_peek().is_some() && s.describe_next().is_some());
        match s.step_event().unwrap() {
            SessionStop::Event(n) => {
                assert_eq!(n, before + 1, "one event per step");
                assert_eq!(s.event_index(), n);
                steps += 1;
            }
            other => break other,
        }
    };
    expect_exited(stop);
    assert!(s.is_over());
    assert_eq!(s.summary().map(|x| x.events), Some(summary.events));
    // Event 0 (the exec) is replayed by opening, the last one (the exit) ends it.
    assert_eq!(steps + 2, summary.events);
    assert!(s.step_event().is_err(), "an ended session does not go on");
    assert_same(&straight, &out.borrow(), "event by event");
}

#[test]
fn breakpoint_on_a_function_sees_the_printed_arguments() {
    let rec = record_fixture();
    let addr = target_address(&rec);
    let (mut s, out) = open(&rec.trace);
    let tid = s.threads()[0].tid;
    let original = s.read_memory(tid, addr, 16).unwrap();
    assert_eq!(original.len(), 16);
    let file = std::fs::read(&rec.program).unwrap();
    s.insert_breakpoint(addr).unwrap();
    let mut hits = Vec::new();
    let stop = loop {
        match s.run_to_end().unwrap() {
            SessionStop::Breakpoint { tid, addr: at } => {
                assert_eq!(at, addr);
                let regs = s.regs(tid).unwrap();
                assert_eq!(
                    regs.rip, addr,
                    "stopped before the breakpoint's instruction"
                );
                let printed = calls(&out.borrow());
                assert_eq!(printed.len(), hits.len() + 1, "one call printed per hit");
                assert_eq!(
                    (regs.rdi, regs.rsi),
                    *printed.last().unwrap(),
                    "hit {}: the arguments in rdi, rsi are the printed ones",
                    hits.len()
                );
                let mem = s.read_memory(tid, addr, 16).unwrap();
                assert_eq!(mem, original, "memory reads show the program's bytes");
                assert_ne!(mem[0], 0xcc);
                assert!(s.fpu_state(tid).is_ok());
                hits.push((regs.rdi, regs.rsi));
            }
            other => break other,
        }
    };
    expect_exited(stop);
    assert_eq!(
        hits,
        calls(&rec.stdout),
        "five hits, with the recorded values"
    );
    assert!(
        file.windows(16).any(|w| w == original.as_slice()),
        "the bytes read at the breakpoint are the executable's"
    );
    assert_same(&rec.stdout, &out.borrow(), "with a breakpoint");
}

#[test]
fn single_steps_from_a_breakpoint_then_continue() {
    let rec = record_fixture();
    let addr = target_address(&rec);
    let (mut s, out) = open(&rec.trace);
    s.insert_breakpoint(addr).unwrap();
    let tid = match s.run_to_end().unwrap() {
        SessionStop::Breakpoint { tid, .. } => tid,
        other => panic!("expected the first hit, got {other:?}"),
    };
    // Through the rest of target(), back into main, printf and its write (a recorded
    // syscall), and into target() again (where a step stops before the breakpoint
    // rather than reporting it).
    let mut entered = 0;
    let events = s.event_index();
    for i in 0..20_000 {
        match s.single_step(tid).unwrap() {
            SessionStop::Stepped { tid: t } => assert_eq!(t, tid),
            other => panic!("step {i}: {other:?}"),
        }
        if s.regs(tid).unwrap().rip == addr {
            entered += 1;
            if entered == 2 {
                break;
            }
        }
    }
    assert_eq!(entered, 2, "stepping reached target() twice more");
    assert_eq!(calls(&out.borrow()).len(), 3, "stepped through two printfs");
    assert!(
        s.event_index() > events,
        "the steps replayed the writes' events"
    );
    let mut hits = 0;
    let stop = loop {
        match s.run_to_end().unwrap() {
            SessionStop::Breakpoint { .. } => hits += 1,
            other => break other,
        }
    };
    expect_exited(stop);
    assert_eq!(hits, 2, "the two calls left hit the breakpoint");
    assert_same(&rec.stdout, &out.borrow(), "after single steps");
}

#[test]
fn run_to_event_then_continue_gives_identical_output() {
    let rec = record_fixture();
    let total = read_events(&rec.trace).len() as u64;
    let n = total / 2;
    let (mut s, out) = open(&rec.trace);
    match s.run_to_event(n).unwrap() {
        SessionStop::Event(at) => assert_eq!(at, n),
        other => panic!("expected event {n}, got {other:?}"),
    }
    assert_eq!(s.event_index(), n);
    assert!(s.run_to_event(n - 1).is_err(), "a session does not go back");
    let half = out.borrow().clone();
    assert!(
        rec.stdout.starts_with(&half) && half.len() < rec.stdout.len(),
        "stopped in the middle of the output"
    );
    expect_exited(s.run_to_end().unwrap());
    assert_same(&rec.stdout, &out.borrow(), "run to an event, then on");
}

#[test]
fn a_mutated_trace_diverges_at_the_mutated_event() {
    let rec = record_fixture();
    let mut events = read_events(&rec.trace);
    let writes: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            matches!(e, Event::Syscall(s) if s.nr == recorder::syscalls::nr::WRITE && s.args[0] == 1)
        })
        .map(|(i, _)| i)
        .collect();
    assert!(writes.len() >= 3, "the fixture writes each line");
    let at = writes[2];
    if let Event::Syscall(s) = &mut events[at] {
        s.args[2] += 1;
    }
    write_events(&rec.trace, &events).unwrap();

    let (mut s, _out) = open(&rec.trace);
    match s.run_to_end().unwrap() {
        SessionStop::Diverged(recorder::Error::Divergence { event, actual, .. }) => {
            assert_eq!(event, at as u64, "diverged at the mutated event");
            assert!(actual.contains("made syscall write"), "{actual}");
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    assert!(s.is_over());
    match replay(&rec.trace, &mut |_, _| {}) {
        Err(recorder::Error::Divergence { event, .. }) => assert_eq!(event, at as u64),
        other => panic!("the straight replay should diverge the same way: {other:?}"),
    }
}

/// The `(a, b)` of the last call thread `tid` printed ("thread TID call N: ...").
fn last_call_of(out: &[u8], tid: i32) -> Option<(u64, u64)> {
    let prefix = format!("thread {tid} ");
    let lines: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect();
    calls(lines.last()?.as_bytes()).first().copied()
}

#[test]
fn breakpoints_in_two_threads_see_each_threads_arguments() {
    let rec = record_fixture_with(&["threads"], 6);
    let addr = target_address(&rec);
    let (mut s, out) = open(&rec.trace);
    s.insert_breakpoint(addr).unwrap();
    let mut hits: Vec<(i32, u64, u64)> = Vec::new();
    let mut stepped = false;
    let stop = loop {
        match s.run_to_end().unwrap() {
            SessionStop::Breakpoint { tid, addr: at } => {
                assert_eq!(at, addr);
                assert!(
                    s.threads().iter().any(|t| t.tid == tid),
                    "the stopped thread is listed"
                );
                let regs = s.regs(tid).unwrap();
                assert_eq!(regs.rip, addr);
                let printed = last_call_of(&out.borrow(), tid)
                    .unwrap_or_else(|| panic!("thread {tid} printed no call before its hit"));
                assert_eq!(
                    (regs.rdi, regs.rsi),
                    printed,
                    "thread {tid}: the arguments are the ones it printed"
                );
                hits.push((tid, regs.rdi, regs.rsi));
                if !stepped {
                    // A few instructions of this thread, then on as before.
                    stepped = true;
                    for i in 0..50 {
                        match s.single_step(tid).unwrap() {
                            SessionStop::Stepped { tid: t } => assert_eq!(t, tid),
                            other => panic!("step {i}: {other:?}"),
                        }
                    }
                }
            }
            other => break other,
        }
    };
    expect_exited(stop);
    assert_eq!(hits.len(), 6, "three hits in each of two threads: {hits:?}");
    let mut tids: Vec<i32> = hits.iter().map(|h| h.0).collect();
    tids.sort();
    tids.dedup();
    assert_eq!(tids.len(), 2, "both threads hit it: {hits:?}");
    assert_same(&rec.stdout, &out.borrow(), "two threads with a breakpoint");
}
