//! Each flaky test of `tests/example-crate` is hunted with `cargo record-test
//! --until-fail`, its archive moved elsewhere and the target directory deleted; then
//! `cargo replay-artifact` must print the failing run's output again (same panic, same
//! values) and exit with its status.
//!
//! ## Failure rates and `--max-runs`
//!
//! Measured under the recorder (`--until-fail --keep-going --message-format json`,
//! counting `run-finished` messages with `failed: true`; 2-core VM, November 2026):
//!
//! | test | why it fails | failed runs |
//! |---|---|---|
//! | `wall_clock` | nanoseconds % 3 == 0 | 333 / 1000 |
//! | `hashmap_order` | the random SipHash keys put "beta" first | 438 / 1000, 184 / 400 |
//! | `mutex_interleaving` | both threads yield first; the scheduler picks who locks | 405 / 1000 |
//! | `channel_interleaving` | both senders yield first; the scheduler picks who sends | 408 / 1000 |
//! | `temp_file_race` (a and b at once) | the scheduler always switches at `sched_yield`, between write and read-back | 1000 / 1000 |
//! | `child_process` | the child's nanoseconds % 3 == 0 | 106 / 300, 95 / 300 |
//!
//! Each rate comes from the test's design (a value modulo 3, a coin flip of the hash
//! keys, a scheduling choice forced by `yield_now`), and runs are independent (fresh
//! process, fresh clock and random bytes, seed + run number). Taking 0.25 as a safe
//! lower bound of every rate, a hunt of N runs misses with probability 0.75^N:
//! N = 80 gives 1.0e-10 < 1e-9.

use std::path::Path;

use super::common::{capture1, example_manifest, move_to, recorded_stdout, Messages, Run, Sandbox};

/// Runs per hunt: 0.75^80 = 1.0e-10 (see the module docs).
const MAX_RUNS: &str = "80";

/// One flaky test to capture and replay.
struct Case<'a> {
    /// TESTNAME given to `cargo record-test`.
    filter: &'a str,
    /// One process per test (`--per-test`): the filter names exactly one test.
    per_test: bool,
    /// Arguments after `--`, for libtest.
    test_args: &'a [&'a str],
    /// The failing test(s), as the `captured` message names them.
    test: &'a [&'a str],
    /// Checks the failing run's stdout: the printed value and the panic message agree.
    check: fn(&str),
    /// Another fixture crate than the example crate (its manifest, from the workspace
    /// root), with the package and binary names the `captured` message must give.
    other_crate: Option<(&'a str, &'a str, &'a str)>,
    /// More options for `cargo record-test`.
    extra: &'a [&'a str],
}

/// Hunts, moves the archive, deletes the target directory, replays; returns the replay.
fn capture_and_replay(case: &Case) -> Run {
    let sb = Sandbox::new();
    let manifest = match case.other_crate {
        Some((m, _, _)) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(m),
        None => example_manifest(),
    };
    let (package, binary) = case
        .other_crate
        .map(|(_, p, b)| (p, b))
        .unwrap_or(("flaky-example", "flaky_example"));
    let target = sb.target();
    let mut args: Vec<&str> = vec![
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ];
    args.extend([
        "--until-fail",
        "--max-runs",
        MAX_RUNS,
        "--message-format",
        "json",
    ]);
    if case.per_test {
        args.push("--per-test");
    }
    args.extend(case.extra);
    args.push(case.filter);
    if !case.test_args.is_empty() {
        args.push("--");
        args.extend(case.test_args);
    }
    let hunt = sb.record_test(&args);
    hunt.expect_status(1);

    // A run where several tests failed gives one archive per failing test (all from the
    // one recording): the first is checked and replayed.
    let all = hunt.messages_of("captured");
    assert!(!all.is_empty(), "a capture\n{}", hunt.show());
    assert!(
        all.iter().all(|c| c["run"] == all[0]["run"]),
        "without --keep-going, the captures are of one run\n{}",
        hunt.show()
    );
    let captured = all[0].clone();
    assert_eq!(captured["package"], package, "{captured}");
    assert_eq!(captured["binary"], binary, "{captured}");
    let test = captured["test"]
        .as_str()
        .expect("the failing test is named");
    let tests: Vec<&str> = test.split(',').collect();
    assert!(
        tests.iter().all(|t| case.test.contains(t)),
        "captured test {test:?}, expected among {:?}",
        case.test
    );
    let archive = Path::new(captured["archive"].as_str().expect("archive path")).to_path_buf();
    assert!(
        archive.starts_with(target.join("chaos/archives")),
        "default upload directory: {}",
        archive.display()
    );
    assert!(archive.is_file(), "{} exists", archive.display());
    let replay_command = captured["replay_command"].as_str().expect("replay command");
    assert_eq!(
        replay_command,
        format!("cargo replay-artifact {}", archive.display())
    );

    let recorded = recorded_stdout(&archive, &sb.path("unpacked"));
    (case.check)(&recorded);

    // The archive alone must be enough: move it, and delete everything the build made.
    let moved = move_to(&archive, &sb.path("elsewhere"));
    std::fs::remove_dir_all(&target).expect("delete the target directory");
    std::fs::remove_dir_all(sb.path("unpacked")).expect("delete the scratch copy");

    let replay = sb.replay([&moved]);
    replay.expect_status(101);
    assert_eq!(
        replay.stdout_str(),
        recorded,
        "the replay printed something else than the failing run\n{}",
        replay.show()
    );
    (case.check)(&replay.stdout_str());
    let stderr = replay.stderr_str();
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains("the replay matched the recording (status 101)"),
        "summary line: {summary}\n{}",
        replay.show()
    );
    replay
}

#[test]
fn wall_clock() {
    capture_and_replay(&Case {
        filter: "wall_clock",
        per_test: true,
        test_args: &[],
        test: &["tests::wall_clock"],
        other_crate: None,
        extra: &[],
        check: |out| {
            let printed = capture1(r"wall clock nanoseconds: (\d+)", out);
            let panicked = capture1(r"the clock read (\d+) ns, a multiple of 3", out);
            assert_eq!(printed, panicked);
            assert_eq!(printed.parse::<u64>().unwrap() % 3, 0, "{out}");
        },
    });
}

#[test]
fn hashmap_order() {
    capture_and_replay(&Case {
        filter: "hashmap_order",
        per_test: true,
        test_args: &[],
        test: &["tests::hashmap_order"],
        other_crate: None,
        extra: &[],
        check: |out| {
            assert!(
                out.contains(r#"iteration order: ["beta", "alpha"]"#),
                "{out}"
            );
            assert!(
                out.contains(r#"iteration order was ["beta", "alpha"]"#),
                "{out}"
            );
        },
    });
}

#[test]
fn mutex_interleaving() {
    capture_and_replay(&Case {
        filter: "mutex_interleaving",
        per_test: true,
        test_args: &[],
        test: &["tests::mutex_interleaving"],
        other_crate: None,
        extra: &[],
        check: |out| {
            assert!(out.contains("lock order: [1, 0]"), "{out}");
            assert!(out.contains("thread 1 got the lock first"), "{out}");
        },
    });
}

#[test]
fn channel_interleaving() {
    capture_and_replay(&Case {
        filter: "channel_interleaving",
        per_test: true,
        test_args: &[],
        test: &["tests::channel_interleaving"],
        other_crate: None,
        extra: &[],
        check: |out| {
            assert!(out.contains("received order: [1, 0]"), "{out}");
            assert!(out.contains("sender 1 was first, order [1, 0]"), "{out}");
        },
    });
}

/// Both tests in one process, as `cargo test` runs them (not `--per-test`: alone, neither
/// can fail). Two test threads whatever the machine's core count.
#[test]
fn temp_file_race() {
    capture_and_replay(&Case {
        filter: "temp_file_race",
        per_test: false,
        test_args: &["--test-threads", "2"],
        test: &["tests::temp_file_race_a", "tests::temp_file_race_b"],
        other_crate: None,
        extra: &[],
        check: |out| {
            let tag = capture1(r#"was changed under us: wrote "(written by [ab])""#, out);
            let read = capture1(
                r#"was changed under us: wrote "written by [ab]", read back "([^"]*)""#,
                out,
            );
            assert_ne!(tag, read, "{out}");
            assert!(out.contains(&format!("wrote {tag:?} to ")), "{out}");
        },
    });
}

/// A test that runs a child process (`date`): the child's output replays too.
#[test]
fn child_process() {
    capture_and_replay(&Case {
        filter: "child_process",
        per_test: true,
        test_args: &[],
        test: &["tests::child_process"],
        other_crate: None,
        extra: &[],
        check: |out| {
            let printed = capture1(r"the child process printed (\d+)", out);
            let panicked = capture1(r"the child read (\d+) ns, a multiple of 3", out);
            assert_eq!(printed, panicked);
            assert_eq!(printed.parse::<u64>().unwrap() % 3, 0, "{out}");
        },
    });
}

/// `--message-format json` of the replay: one `replayed` message.
#[test]
fn replay_json_message() {
    let sb = Sandbox::new();
    let hunt = sb.hunt_json(
        &example_manifest(),
        &[
            "--until-fail",
            "--max-runs",
            MAX_RUNS,
            "--per-test",
            "hashmap_order",
        ],
    );
    hunt.expect_status(1);
    let archive = hunt.captured()["archive"].as_str().unwrap().to_string();
    let replay = sb.replay([archive.as_str(), "--message-format", "json", "--quiet"]);
    replay.expect_status(101);
    let replayed = replay.messages_of("replayed");
    assert_eq!(replayed.len(), 1, "{}", replay.show());
    let r = &replayed[0];
    assert_eq!(r["matched"], true, "{r}");
    assert_eq!(r["status"], 101, "{r}");
    assert_eq!(r["test"], "tests::hashmap_order", "{r}");
    assert!(r["events"].as_u64().unwrap() > 0, "{r}");
    assert!(
        !replay.stdout_str().contains("iteration order"),
        "--quiet hides the program's output\n{}",
        replay.show()
    );
}

/// A lost-update race in code built with `--instrument`: the tick counter preempts the
/// threads between a load and the store that depends on it, so updates are lost in every
/// run; the replay prints the same count.
#[test]
fn instrumented_lost_update_race() {
    capture_and_replay(&Case {
        filter: "lost_update",
        per_test: true,
        test_args: &[],
        test: &["lost_update"],
        other_crate: Some((
            "tests/fixtures/rust-races/Cargo.toml",
            "chaos-rust-races",
            "races",
        )),
        extra: &["--instrument"],
        check: |out| {
            let lost = capture1(r"counted \d+ of 4000000: (\d+) updates lost", out);
            assert_ne!(lost, "0", "{out}");
        },
    });
}

/// Issue 18: two tests failing in one run are two failures, each with its own archive
/// named after it and its own panic in the `captured` message; `--keep-going` then drops
/// later runs failing the same ways (by test and that test's panic location). The two
/// `temp_file_race` tests fail together (1000 of 1000 runs, see the table above).
#[test]
fn two_failing_tests_in_one_run_give_two_archives() {
    let sb = Sandbox::new();
    let hunt = sb.hunt_json(
        &example_manifest(),
        &[
            "--until-fail",
            "--keep-going",
            "--max-runs",
            "6",
            "temp_file_race",
            "--",
            "--test-threads",
            "2",
        ],
    );
    hunt.expect_status(1);
    let captured = hunt.messages_of("captured");
    let mut tests: Vec<&str> = captured
        .iter()
        .map(|c| c["test"].as_str().expect("each capture names its test"))
        .collect();
    tests.sort();
    assert_eq!(
        tests,
        ["tests::temp_file_race_a", "tests::temp_file_race_b"],
        "one capture per failing test, each once\n{}",
        hunt.show()
    );
    assert_ne!(captured[0]["archive"], captured[1]["archive"]);
    for c in &captured {
        let archive = Path::new(c["archive"].as_str().unwrap());
        assert!(archive.is_file(), "{}", archive.display());
        let name = archive.file_name().unwrap().to_string_lossy().into_owned();
        let test = c["test"].as_str().unwrap();
        assert!(
            name.contains(test.rsplit("::").next().unwrap()),
            "{name} is named after {test}"
        );
        let location = c["panic_location"].as_str().expect("panic location");
        assert!(location.starts_with("src/lib.rs:"), "{c}");
        let message = c["panic_message"].as_str().expect("panic message");
        assert!(message.contains("was changed under us"), "{c}");
        let tag = if test.ends_with("_a") { "a" } else { "b" };
        assert!(
            message.contains(&format!("wrote \"written by {tag}\"")),
            "the message is {test}'s own: {c}"
        );
    }
    let end = &hunt.messages_of("finished")[0];
    assert_eq!(end["failures"], 2, "{end}");
}
