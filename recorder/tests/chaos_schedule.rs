//! Chaos scheduling is seeded: on a program with deterministic inputs whose threads
//! never block while they work (`chaos_sched`: three workers making syscalls and asking
//! for tick budgets), the same seed gives the same event sequence every time and
//! different seeds give different ones. The watchdog is off (`no_watchdog`): where a
//! wall-clock slice ends is a decision a seed cannot fix, and so is when a blocking call
//! returns, which is why the sequence compared is the workers' steps (their syscalls
//! and tick budgets, with the thread that made each) until the last one. The recording
//! replays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use recorder::output::Stream;
use recorder::record::{record, RecordOptions, Stdio};
use recorder::replay::replay;
use recorder::sched::Chaos;
use recorder::trace::Event;
use test_support::read_events;

/// The event sequence with thread ids numbered by first appearance, and the output.
fn schedule(dir: &Path, name: &str, seed: u64, chaos: Chaos) -> (Vec<String>, String) {
    let trace = dir.join(name);
    let opts = RecordOptions {
        program: test_support::fixture!("chaos_sched"),
        args: vec![
            STEPS.to_string().into(),
            recorder::ticks::TICK_SYSCALL.to_string().into(),
        ],
        trace_dir: trace.clone(),
        seed: Some(seed),
        chaos,
        no_watchdog: true,
        stdio: Stdio::Files {
            stdout: dir.join(format!("{name}.out")),
            stderr: dir.join(format!("{name}.err")),
        },
        ..Default::default()
    };
    let summary = record(&opts).unwrap_or_else(|e| panic!("recording failed: {e}"));
    assert_eq!(summary.result.status, 0, "chaos_sched failed");
    let mut ids: HashMap<i32, usize> = HashMap::new();
    let mut seq = Vec::new();
    for e in read_events(&trace) {
        let n = ids.len();
        let id = *ids.entry(e.tid()).or_insert(n);
        match &e {
            Event::Syscall(s) if s.nr == GETPPID || s.nr == recorder::ticks::TICK_SYSCALL => {
                seq.push(format!("{id} syscall {} = {}", s.nr, s.ret))
            }
            Event::Preempt { .. } => panic!("a watchdog preemption with the watchdog off"),
            _ => {}
        }
    }
    assert_eq!(
        seq.len(),
        3 * (STEPS + STEPS.div_ceil(3)),
        "not every step recorded"
    );
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    (seq, out)
}

const GETPPID: u64 = libc::SYS_getppid as u64;
const STEPS: usize = 60;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chaos-schedule-")
        .tempdir()
        .unwrap()
}

#[test]
fn same_seed_same_events_ten_times_other_seeds_differ() {
    let dir = tmp();
    let (first, out) = schedule(dir.path(), "seed7-0", 7, Chaos::On);
    // Tick budgets, switches at syscalls, priorities and change points all took part.
    assert!(out.contains(" tick "), "no tick budget answered:\n{out}");
    assert!(out.ends_with("done\n"));
    for i in 1..10 {
        let (again, out_again) = schedule(dir.path(), &format!("seed7-{i}"), 7, Chaos::On);
        assert_eq!(out_again, out, "seed 7, recording {i}: another output");
        assert_eq!(
            again, first,
            "seed 7, recording {i}: another event sequence"
        );
    }
    let mut outputs = vec![out];
    for seed in [8, 9, 10] {
        let (seq, o) = schedule(dir.path(), &format!("seed{seed}"), seed, Chaos::On);
        assert_ne!(seq, first, "seed {seed} gave seed 7's event sequence");
        assert!(
            !outputs.contains(&o),
            "seed {seed} gave an earlier seed's schedule"
        );
        outputs.push(o);
    }
}

#[test]
fn chaos_off_is_the_default_schedule() {
    let dir = tmp();
    let (default, _) = schedule(dir.path(), "default", 11, Chaos::default());
    let (off, _) = schedule(dir.path(), "off", 11, Chaos::Off);
    let (on, _) = schedule(dir.path(), "on", 11, Chaos::On);
    assert_eq!(off, default);
    assert_ne!(on, off, "chaos mode made no difference");
}

#[test]
fn a_chaos_recording_replays_and_says_so_in_its_header() {
    let dir = tmp();
    schedule(dir.path(), "t", 3, Chaos::On);
    let trace: PathBuf = dir.path().join("t");
    let header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace.join("header.json")).unwrap()).unwrap();
    assert_eq!(header["chaos"], "on");
    let mut out = Vec::new();
    let mut sink = |stream: Stream, data: &[u8]| {
        if let Stream::Stdout = stream {
            out.extend_from_slice(data);
        }
    };
    let summary = replay(&trace, &mut sink).unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(summary.exit.status(), 0);
    let recorded = std::fs::read(dir.path().join("t.out")).unwrap();
    assert_eq!(out, recorded, "replay wrote another output");
}
