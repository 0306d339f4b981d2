//! Issue 15: races whose window holds no syscall, from `tests/fixtures/flaky-corpus`,
//! captured by `cargo record-test --until-fail` with its default flags (chaos
//! scheduling, `--instrument auto`), and the captures replay.
//!
//! Each hunt has a fixed `--seed`: the decisions at syscalls and tick budgets follow
//! from it, so the run that captures is known (measured when this test was written:
//! lost update and missed wake-up at run 22, the first on the instrumented build, which
//! joined after 20 runs then; since it joins after 6, the lost update at run 7, its
//! first instrumented run, and the missed wake-up at run 4, before it (0-based);
//! check-then-act at run 160, and again at runs 294 and 298). What the seed cannot fix
//! (where a CPU-time or wall-clock slice ends under load) moves the capture to another
//! run, earlier or later: with syscall buffering on, `--seed 1` captured check-then-act
//! at run 47 in one hunt and not within 300 runs in another (load 20-35), so its
//! `--max-runs` leaves a wide margin. None of these tests fails natively on one core
//! (see docs/benchmarks.md, "Capture rate").

use std::path::Path;

use super::common::{recorded_stdout, Messages, Sandbox};

/// Hunts `kind` of the corpus with the default flags and `--seed seed`; checks that it
/// is captured within `within` runs, that the capture was verified, and that
/// `cargo replay-artifact` prints the failing run's output again.
fn captured_within(sb: &Sandbox, kind: &str, seed: u64, within: u64, expect: &str) {
    captured_within_with(sb, kind, &[], seed, within, expect)
}

/// [`captured_within`] with more flags for the hunt.
fn captured_within_with(
    sb: &Sandbox,
    kind: &str,
    flags: &[&str],
    seed: u64,
    within: u64,
    expect: &str,
) {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flaky-corpus/Cargo.toml");
    let (within_s, seed_s) = (within.to_string(), seed.to_string());
    let mut args = vec![
        "--test",
        kind,
        "--until-fail",
        "--jobs",
        "1",
        "--max-runs",
        &within_s,
        "--seed",
        &seed_s,
    ];
    args.extend_from_slice(flags);
    let hunt = sb.hunt_json(&manifest, &args);
    hunt.expect_status(1);
    let captured = hunt.captured();
    assert_eq!(captured["binary"], kind, "{captured}");
    assert_eq!(captured["verified"], true, "{captured}");
    let run = captured["run"].as_u64().expect("run number");
    assert!(run < within, "{kind}: captured at run {run}");
    let archive = Path::new(captured["archive"].as_str().expect("archive")).to_path_buf();
    let recorded = recorded_stdout(&archive, &sb.path(&format!("unpacked-{kind}")));
    assert!(recorded.contains(expect), "{kind}: {recorded}");
    let replay = sb.replay([&archive]);
    replay.expect_status(101);
    assert_eq!(
        replay.stdout_str(),
        recorded,
        "{kind}: the replay printed something else"
    );
}

#[test]
fn syscall_free_races_are_captured_with_the_default_flags() {
    // One sandbox: the corpus is built once, plain and instrumented.
    let sb = Sandbox::new();
    captured_within(&sb, "lost_update", 1, 50, "lost updates");
    captured_within(&sb, "missed_wakeup", 1, 100, "the wake-up was missed");
    captured_within(&sb, "check_then_act", 1, 600, "overdrawn");
}

/// Chaos alone (`--no-instrument`: preemption points only where a time slice ends)
/// captures the lost update within 300 runs (issue 15's "must show"). Short chaos
/// slices, measured in the thread's own CPU time, end inside the workers' loops however
/// loaded the machine is. The seed fixes the decisions at syscalls, not where a slice
/// ends, so the capture run varies: twelve `--seed 1` hunts under load averages of
/// 12..25 captured at runs 6 to 138 (median 11); all 40 CPU-time hunts of seeds 1..20
/// captured, about one run in 35. With wall-clock slices 4 of 20 hunts missed in 300
/// runs. See docs/benchmarks.md, "Time slices in CPU time", for the margin.
#[test]
fn lost_update_is_captured_by_chaos_alone() {
    let me = std::process::id() as i32;
    if let Err(recorder::preempt::cpu_clock::OpenError::Refused(e)) =
        recorder::preempt::cpu_clock::CpuClock::open(me)
    {
        panic!(
            "this test needs software perf events for CPU-time slices ({e}; root, or \
             kernel.perf_event_paranoid at most 2): with wall-clock slices the capture \
             is not reliable"
        );
    }
    let sb = Sandbox::new();
    captured_within_with(
        &sb,
        "lost_update",
        &["--no-instrument"],
        1,
        300,
        "lost updates",
    );
}
