//! Shared helpers: building the C fixtures, running `cargo-chaos record` and `replay`,
//! comparing a replay with its recording, reading and rewriting traces.

use std::path::{Path, PathBuf};
use std::process::Command;

use recorder::trace::Event;
pub use test_support::{read_events, syscalls, text_diff};

pub use super::suite::suite;

pub use recorder::syscalls::nr as sys;
pub use test_support::{assert_edit_seen, run, timeout_secs, Run, FAILED};

/// The binary under test.
pub fn bin() -> &'static Path {
    test_support::cargo_chaos!()
}

/// A fresh temporary directory for one test.
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chaos-threads-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The machine's parallelism as this test process sees it.
pub fn machine_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .expect("available_parallelism in the test process")
}

/// The C fixture `tests/fixtures/c/NAME.c`, built once per process.
pub fn c_fixture(name: &str) -> PathBuf {
    test_support::fixture!(name)
}

/// `cargo-chaos ARGS...` under `timeout` (a safety net against hangs).
pub fn chaos() -> Command {
    test_support::under_timeout(bin())
}

/// A recording: its trace and what the program showed while it was recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub trace: PathBuf,
    /// Status, stdout and stderr of the program (without the recorder's own line).
    pub program: Run,
}

/// The environment of a recorded program: libtest's defaults (no variable that changes
/// the number of test threads or the capture), and RUST_BACKTRACE=1.
fn program_env(cmd: &mut Command) {
    for var in [
        "RUST_TEST_THREADS",
        "RUST_TEST_NOCAPTURE",
        "RUST_TEST_SHUFFLE",
        "RUST_TEST_SHUFFLE_SEED",
        "RUST_TEST_TIME_UNIT",
        "RUST_TEST_TIME_INTEGRATION",
        "RUST_TEST_TIME_DOCTEST",
        "RUST_LIB_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "1");
}

/// `cargo-chaos record --trace-dir TRACE -- PROGRAM ARGS...`; the recorder itself must
/// succeed (its line `chaos: trace written to TRACE` ends stderr and is removed).
pub fn record(program: &Path, args: &[&str], trace: &Path) -> Recording {
    let mut cmd = chaos();
    cmd.arg("record")
        .arg("--trace-dir")
        .arg(trace)
        .arg("--")
        .arg(program)
        .args(args);
    program_env(&mut cmd);
    let raw = run(&mut cmd);
    let line = format!("chaos: trace written to {}\n", trace.display());
    let Some(stderr) = raw.stderr.strip_suffix(line.as_bytes()) else {
        panic!(
            "recording {} did not end with `{}` on stderr: the recorder failed\n{}",
            program.display(),
            line.trim_end(),
            raw.show()
        );
    };
    Recording {
        trace: trace.to_path_buf(),
        program: Run {
            what: raw.what.clone(),
            status: raw.status,
            stdout: raw.stdout.clone(),
            stderr: stderr.to_vec(),
        },
    }
}

/// `cargo-chaos replay TRACE`.
pub fn replay(trace: &Path) -> Run {
    run(chaos().arg("replay").arg(trace))
}

/// The replay showed exactly what the recording showed: stdout, stderr, status.
#[track_caller]
pub fn assert_same(what: &str, recorded: &Run, replayed: &Run) {
    let mut problems = String::new();
    if recorded.status != replayed.status {
        problems.push_str(&format!(
            "exit status: recorded {}, replayed {}\n",
            recorded.status, replayed.status
        ));
    }
    let out = text_diff(&recorded.stdout, &replayed.stdout);
    if !out.is_empty() {
        problems.push_str(&format!(
            "stdout differs (- recorded, + replayed):\n{out}\n"
        ));
    }
    let err = text_diff(&recorded.stderr, &replayed.stderr);
    if !err.is_empty() {
        problems.push_str(&format!(
            "stderr differs (- recorded, + replayed):\n{err}\n"
        ));
    }
    assert!(
        problems.is_empty(),
        "the replay of {what} differs from its recording:\n{problems}\n=== recorded ===\n{}\n=== replayed ===\n{}",
        recorded.show(),
        replayed.show()
    );
}

/// Records `program args` into `trace`, replays it and asserts that the replay showed
/// the same; returns the recording.
#[track_caller]
pub fn record_and_replay(what: &str, program: &Path, args: &[&str], trace: &Path) -> Recording {
    let rec = record(program, args, trace);
    assert_ne!(
        rec.program.status,
        FAILED,
        "recording {what} failed\n{}",
        rec.program.show()
    );
    let replayed = replay(trace);
    assert_same(what, &rec.program, &replayed);
    rec
}

/// Rewrites the trace's `events` file with `events`.
pub fn write_events(trace: &Path, events: &[Event]) {
    test_support::write_events(trace, events)
        .unwrap_or_else(|e| panic!("cannot rewrite the events of {}: {e}", trace.display()));
}

/// The line of `out` that contains `needle`.
#[track_caller]
pub fn line_with(out: &[u8], needle: &str) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no line with `{needle}` in:\n{}",
                String::from_utf8_lossy(out)
            )
        })
        .to_string()
}
