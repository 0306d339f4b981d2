//! Threads that never make a syscall (issue 4), on the Rust fixture crate
//! `tests/fixtures/rust-races` built twice: plainly, and instrumented with the recorder's
//! tick counter the way `cargo record-test --instrument` builds it. Each program is
//! recorded and replayed; the replay must print exactly what the recording printed.

#[path = "threads/suite.rs"]
mod suite;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use suite::{build_crate, workspace_root, Suite};

use test_support::{run, Run};

fn bin() -> &'static Path {
    test_support::cargo_chaos!()
}

fn races_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/rust-races")
}

/// The fixture crate built without instrumentation.
fn plain() -> &'static Suite {
    static BUILT: OnceLock<Result<Suite, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workspace_root().join("target/fixture-rust-races");
            build_crate(&races_dir(), &target, &|_| {})
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("cannot build the fixture crate: {e}"))
}

/// The fixture crate built with the tick counter, exactly as `cargo record-test
/// --instrument` builds (its own directory under the target dir, `--target <host>`).
fn instrumented() -> &'static Suite {
    static BUILT: OnceLock<Result<Suite, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workspace_root().join("target/fixture-rust-races");
            let settings = cargo_chaos::record_test::instrument::prepare(&target)
                .map_err(|e| format!("{e:#}"))?;
            build_crate(&races_dir(), &target, &|cmd| settings.apply(cmd))
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("cannot build the instrumented fixture crate: {e}"))
}

/// A recording and its replay, which must agree byte for byte.
struct RoundTrip {
    recorded: Run,
    replayed: Run,
    /// `tick_requests` from the trace's result.json.
    tick_requests: u64,
    /// Preemption points the replay found (`replay --stats`).
    points: u64,
}

/// Records one libtest test of `exe` (`--exact NAME --nocapture`) with `seed`, replays it.
fn roundtrip(exe: &Path, test: &str, seed: u64) -> RoundTrip {
    roundtrip_env(exe, test, seed, &[])
}

/// [`roundtrip`] with `env` for the recorded program.
fn roundtrip_env(exe: &Path, test: &str, seed: u64, env: &[(&str, &str)]) -> RoundTrip {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let recorded = run(test_support::under_timeout(bin())
        .args(["record", "--seed", &seed.to_string()])
        .arg("--trace-dir")
        .arg(&trace)
        .arg("--")
        .arg(exe)
        .args([test, "--exact", "--nocapture"])
        .envs(env.iter().copied()));
    let replayed = run(test_support::under_timeout(bin())
        .args(["replay", "--stats"])
        .arg(&trace));
    assert_eq!(
        recorded.stdout_str(),
        replayed.stdout_str(),
        "{test}: the replay printed something else\nrecord stderr:\n{}\nreplay stderr:\n{}",
        recorded.stderr_str(),
        replayed.stderr_str()
    );
    assert_eq!(
        recorded.status,
        replayed.status,
        "{test}: exit status differs\n{}",
        replayed.stderr_str()
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace.join("result.json")).unwrap()).unwrap();
    let stats = replayed.stderr_str();
    // "chaos: N events, P preemption points found with T breakpoint hits in X ms"
    let points = stats
        .lines()
        .find(|l| l.contains("preemption points"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("{test}: no replay statistics:\n{stats}"));
    RoundTrip {
        tick_requests: result["tick_requests"].as_u64().unwrap_or(0),
        points,
        recorded,
        replayed,
    }
}

/// "counted C of T: L updates lost" -> L.
fn lost(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("counted "))
        .unwrap_or_else(|| panic!("no count printed:\n{stdout}"));
    line.split_whitespace()
        .nth(4)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the count: {line}"))
}

#[test]
fn instrumented_lost_update_race_loses_updates_and_replays_the_count() {
    let exe = instrumented().test("races");
    // Seeds chosen once; every one of them must show the race.
    for seed in [1, 2, 3] {
        let rt = roundtrip(exe, "lost_update", seed);
        assert_eq!(rt.recorded.status, 101, "{}", rt.recorded.stderr_str());
        assert!(
            lost(&rt.recorded.stdout_str()) > 0,
            "seed {seed}: no update was lost\n{}",
            rt.recorded.stdout_str()
        );
        assert!(
            rt.tick_requests > 0,
            "the trace does not say the code was instrumented"
        );
    }
}

#[test]
fn uninstrumented_lost_update_race_replays_whatever_count_it_got() {
    // 50 million increments a thread (debug build): many time slices, so a worker is
    // preempted inside its loop without a tick counter. RACE_REPORT_ONLY: the test
    // prints its count instead of failing on it.
    let rt = roundtrip_env(
        plain().test("races"),
        "lost_update",
        1,
        &[
            ("LOST_UPDATE_ITERATIONS", "50000000"),
            ("RACE_REPORT_ONLY", "1"),
        ],
    );
    let _ = lost(&rt.recorded.stdout_str());
    assert_eq!(rt.tick_requests, 0, "plain code made tick requests");
    assert!(
        rt.points >= 1,
        "no worker was preempted:\n{}",
        rt.replayed.show()
    );
}

#[test]
fn instrumented_spin_wait_replays_identically() {
    let rt = roundtrip(instrumented().test("races"), "spin_wait", 1);
    assert_eq!(rt.recorded.status, 0, "{}", rt.recorded.stderr_str());
    assert!(rt.recorded.stdout_str().contains("saw the flag after"));
    assert!(rt.tick_requests > 0);
}

#[test]
fn test_running_a_shell_child_replays_its_pid_and_clock() {
    let rt = roundtrip(plain().test("shell"), "shell_child", 1);
    assert_eq!(rt.recorded.status, 0, "{}", rt.recorded.stderr_str());
    assert!(
        rt.recorded.stdout_str().contains("sh had pid"),
        "{}",
        rt.recorded.stdout_str()
    );
    assert!(
        rt.replayed.stderr_str().contains("events"),
        "{}",
        rt.replayed.stderr_str()
    );
}
