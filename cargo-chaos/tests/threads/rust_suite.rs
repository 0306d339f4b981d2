//! The Rust fixture crate (`tests/fixtures/rust-suite`): each unmodified libtest binary
//! run with libtest's default number of test threads and RUST_BACKTRACE=1, recorded and
//! replayed, byte for byte; the parallelism it prints is the machine's; and each binary
//! recorded 20 times without a hang, every replay identical to its recording.

use super::common::*;

/// Records and replays test target `name` once and returns the recording.
fn once(name: &str) -> (tempfile::TempDir, Recording) {
    let exe = suite().test(name);
    let dir = temp();
    let rec = record_and_replay(name, exe, &[], &dir.path().join("trace"));
    (dir, rec)
}

#[track_caller]
fn assert_contains(what: &str, run: &Run, needles: &[&str]) {
    let out = run.stdout_str();
    for n in needles {
        assert!(
            out.contains(n),
            "{what}: the recorded output lacks `{n}`\n{}",
            run.show()
        );
    }
}

#[test]
fn std_threads_suite() {
    let (_dir, rec) = once("std_threads");
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    assert_contains(
        "std_threads",
        &rec.program,
        &[
            "running 7 tests",
            "channel_fan_in: arrival order",
            "mutex_lock_order:",
            "hashmap_order:",
            "test result: ok. 7 passed",
        ],
    );
}

#[test]
fn tokio_multi_thread_suite() {
    let (_dir, rec) = once("tokio_net");
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    assert_contains(
        "tokio_net",
        &rec.program,
        &[
            "echo: listening on port",
            "echo: client 5 port",
            "runtime: ",
            "test result: ok. 4 passed",
        ],
    );
    let workers = format!(
        "runtime: {} workers (available_parallelism Ok({}))",
        machine_parallelism(),
        machine_parallelism()
    );
    assert_contains("tokio_net", &rec.program, &[&workers]);
}

#[test]
fn panicking_test_with_backtrace() {
    let (_dir, rec) = once("panic");
    assert_eq!(
        rec.program.status,
        101,
        "a libtest binary with a failing test exits with 101\n{}",
        rec.program.show()
    );
    assert_contains(
        "panic",
        &rec.program,
        &[
            "test panics_with_a_backtrace ... FAILED",
            "panicked at tests/panic.rs",
            "deliberate failure with value",
            "stack backtrace:",
            "panic::innermost",
            "test result: FAILED. 2 passed; 1 failed",
        ],
    );
}

#[test]
fn printed_parallelism_is_the_machines() {
    let machine = machine_parallelism();
    let (_dir, rec) = once("parallelism");
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let line = line_with(&rec.program.stdout, "available_parallelism=");
    assert_eq!(
        line.trim(),
        format!("available_parallelism={machine}"),
        "the recorded program must see the machine's CPUs, not the recorder's pin\n{}",
        rec.program.show()
    );
    let header = recorder::trace::TraceDir::open(&rec.trace)
        .and_then(|t| t.header())
        .expect("read the trace header");
    assert_eq!(
        header.cpu_set.len(),
        machine,
        "the CPU set recorded in the header: {:?}",
        header.cpu_set
    );
}

#[test]
fn channel_ping_pong_binary() {
    let exe = suite().bin("pingpong");
    let dir = temp();
    let rec = record_and_replay("pingpong", exe, &["500"], &dir.path().join("trace"));
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    assert_contains(
        "pingpong",
        &rec.program,
        &["pingpong: 500 round trips, value 500"],
    );
}

/// Records `exe args` 20 times; every recording finishes (the `timeout` safety net
/// turns a hang into a failure) and every replay shows what its recording showed.
fn twenty(what: &str, exe: &std::path::Path, args: &[&str], status: i32) {
    let dir = temp();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..20 {
        let trace = dir.path().join(format!("trace-{i:02}"));
        let rec = record(exe, args, &trace);
        assert_eq!(
            rec.program.status,
            status,
            "recording {i} of {what}\n{}",
            rec.program.show()
        );
        let replayed = replay(&trace);
        assert_same(&format!("recording {i} of {what}"), &rec.program, &replayed);
        distinct.insert(rec.program.stdout);
        // Keep the disk use of the loop small.
        std::fs::remove_dir_all(&trace).expect("remove a checked trace");
    }
    eprintln!(
        "{what}: 20 recordings, all replayed identically; {} distinct outputs",
        distinct.len()
    );
}

#[test]
fn twenty_recordings_std_threads() {
    twenty("std_threads", suite().test("std_threads"), &[], 0);
}

#[test]
fn twenty_recordings_tokio_net() {
    twenty("tokio_net", suite().test("tokio_net"), &[], 0);
}

#[test]
fn twenty_recordings_panic() {
    twenty("panic", suite().test("panic"), &[], 101);
}

#[test]
fn twenty_recordings_parallelism() {
    twenty("parallelism", suite().test("parallelism"), &[], 0);
}

#[test]
fn twenty_recordings_pingpong() {
    twenty("pingpong", suite().bin("pingpong"), &["500"], 0);
}
