//! Checkpoints of a replay session: a copy of the replayed program taken at an event
//! boundary (injected fork, threads made again) goes on exactly as the original does,
//! as many times as it is restored. Every event replayed from a copy is checked as
//! usual, so a copy that lost a thread's registers, mask or memory diverges.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use recorder::record::{record, RecordOptions};
use recorder::replay::{Checkpoint, ReplayOptions, ReplaySession, SessionStop};
use test_support::{fixture::fixture, text_diff};

struct Recorded {
    _dir: tempfile::TempDir,
    trace: PathBuf,
    stdout: Vec<u8>,
}

fn record_fixture(name: &str, args: &[&str]) -> Recorded {
    let dir = tempfile::Builder::new()
        .prefix("chaos-checkpoint-")
        .tempdir()
        .unwrap();
    let program = dir.path().join(name);
    std::fs::copy(
        fixture(Path::new(env!("CARGO_TARGET_TMPDIR")), name),
        &program,
    )
    .unwrap();
    let trace = dir.path().join("trace");
    let opts = RecordOptions {
        program,
        args: args.iter().map(Into::into).collect(),
        env: std::env::vars_os().collect(),
        removed_env: Vec::new(),
        cwd: Some(dir.path().to_path_buf()),
        trace_dir: trace.clone(),
        seed: Some(1),
        ..Default::default()
    };
    let summary = record(&opts).unwrap_or_else(|e| panic!("recording failed: {e}"));
    assert_eq!(summary.result.status, 0, "the recording should exit 0");
    let stdout = std::fs::read(trace.join("stdout")).unwrap();
    Recorded {
        _dir: dir,
        trace,
        stdout,
    }
}

type Out = Rc<RefCell<Vec<u8>>>;

fn options(out: &Out) -> ReplayOptions<'static> {
    let o = out.clone();
    ReplayOptions {
        sink: Box::new(move |_, data: &[u8]| o.borrow_mut().extend_from_slice(data)),
        ..Default::default()
    }
}

fn run_out(s: &mut ReplaySession<'_>) {
    match s.run_to_end().unwrap() {
        SessionStop::Exited { status, .. } => assert_eq!(status.status(), 0),
        other => panic!("expected the end, got {other:?}"),
    }
}

fn assert_same(expected: &[u8], actual: &[u8], what: &str) {
    assert!(
        expected == actual,
        "{what}: output differs:\n{}",
        text_diff(expected, actual)
    );
}

/// At every event boundary of the fixture's replay: a checkpoint, then the original
/// and two restored sessions run to the end, each printing what the recording printed
/// from there on. Returns how many boundaries had more than one thread copied.
fn every_boundary(rec: &Recorded) -> (u64, u64) {
    let out: Out = Default::default();
    let mut s = ReplaySession::open(&rec.trace, options(&out)).unwrap();
    let mut checkpoints: Vec<(Checkpoint, usize, usize)> = Vec::new();
    loop {
        let threads = s.threads().len();
        if let Some(cp) = s.checkpoint().unwrap() {
            assert_eq!(cp.event_index(), s.event_index());
            checkpoints.push((cp, out.borrow().len(), threads));
        }
        match s.step_event().unwrap() {
            SessionStop::Event(_) => {}
            SessionStop::Exited { status, .. } => {
                assert_eq!(status.status(), 0);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_same(
        &rec.stdout,
        &out.borrow(),
        "the session that took checkpoints",
    );
    let multi = checkpoints.iter().filter(|c| c.2 > 1).count() as u64;
    for (cp, printed, _) in &mut checkpoints {
        for round in 0..2 {
            let tail: Out = Default::default();
            let mut r = ReplaySession::restore(cp, options(&tail)).unwrap();
            assert_eq!(r.event_index(), cp.event_index());
            run_out(&mut r);
            assert_same(
                &rec.stdout[*printed..],
                &tail.borrow(),
                &format!("restored at event {} (round {round})", cp.event_index()),
            );
        }
    }
    (checkpoints.len() as u64, multi)
}

#[test]
fn restored_checkpoints_replay_the_rest_of_a_single_threaded_run() {
    let rec = record_fixture("breakpoint_target", &[]);
    let (taken, _) = every_boundary(&rec);
    assert!(taken >= 5, "checkpoints at most boundaries: {taken}");
}

#[test]
fn restored_checkpoints_remake_every_thread() {
    let rec = record_fixture("breakpoint_target", &["threads"]);
    let (taken, multi) = every_boundary(&rec);
    assert!(
        multi >= 3,
        "checkpoints with two or three threads copied: {multi} of {taken}"
    );
}
