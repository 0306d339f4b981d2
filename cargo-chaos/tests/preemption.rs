//! Threads that never make a syscall (issue 4), on the Rust fixture crate
//! `tests/fixtures/rust-races` built twice: plainly, and instrumented with the recorder's
//! tick counter the way `cargo record-test --instrument` builds it. Each program is
//! recorded and replayed; the replay must print exactly what the recording printed.

#[path = "threads/suite.rs"]
mod suite;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use suite::{build_crate, workspace_root, Suite};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cargo-chaos")
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

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("running cargo-chaos");
    use std::os::unix::process::ExitStatusExt;
    let status = out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The recorded tests panic on purpose; the tool's own code must not.
    for ours in ["recorder/", "cargo-chaos/", "packer/"] {
        assert!(
            !stderr.contains(&format!("panicked at {ours}")),
            "the tool panicked:\n{stderr}"
        );
    }
    Run {
        status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// A recording and its replay, which must agree byte for byte.
struct RoundTrip {
    recorded: Run,
    replayed: Run,
    /// `tick_requests` from the trace's result.json.
    tick_requests: u64,
}

/// Records one libtest test of `exe` (`--exact NAME --nocapture`) with `seed`, replays it.
fn roundtrip(exe: &Path, test: &str, seed: u64) -> RoundTrip {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let recorded = run(Command::new("timeout")
        .args(["300", bin(), "record", "--seed", &seed.to_string()])
        .arg("--trace-dir")
        .arg(&trace)
        .arg("--")
        .arg(exe)
        .args([test, "--exact", "--nocapture"]));
    let replayed = run(Command::new("timeout")
        .args(["300", bin(), "replay", "--stats"])
        .arg(&trace));
    assert_eq!(
        recorded.stdout, replayed.stdout,
        "{test}: the replay printed something else\nrecord stderr:\n{}\nreplay stderr:\n{}",
        recorded.stderr, replayed.stderr
    );
    assert_eq!(
        recorded.status, replayed.status,
        "{test}: exit status differs\n{}",
        replayed.stderr
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace.join("result.json")).unwrap()).unwrap();
    RoundTrip {
        tick_requests: result["tick_requests"].as_u64().unwrap_or(0),
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
        assert_eq!(rt.recorded.status, 101, "{}", rt.recorded.stderr);
        assert!(
            lost(&rt.recorded.stdout) > 0,
            "seed {seed}: no update was lost\n{}",
            rt.recorded.stdout
        );
        assert!(
            rt.tick_requests > 0,
            "the trace does not say the code was instrumented"
        );
    }
}

#[test]
fn uninstrumented_lost_update_race_replays_whatever_count_it_got() {
    let rt = roundtrip(plain().test("races"), "lost_update", 1);
    let _ = lost(&rt.recorded.stdout);
    assert_eq!(rt.tick_requests, 0, "plain code made tick requests");
}

#[test]
fn instrumented_spin_wait_replays_identically() {
    let rt = roundtrip(instrumented().test("races"), "spin_wait", 1);
    assert_eq!(rt.recorded.status, 0, "{}", rt.recorded.stderr);
    assert!(rt.recorded.stdout.contains("saw the flag after"));
    assert!(rt.tick_requests > 0);
}

#[test]
fn test_running_a_shell_child_replays_its_pid_and_clock() {
    let rt = roundtrip(plain().test("shell"), "shell_child", 1);
    assert_eq!(rt.recorded.status, 0, "{}", rt.recorded.stderr);
    assert!(
        rt.recorded.stdout.contains("sh had pid"),
        "{}",
        rt.recorded.stdout
    );
    assert!(
        rt.replayed.stderr.contains("events"),
        "{}",
        rt.replayed.stderr
    );
}
