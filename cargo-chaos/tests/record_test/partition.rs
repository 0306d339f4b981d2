//! Issue 18 item 2: `--partition count:M/N` and `hash:M/N` split the tests between the
//! machines of a CI matrix: the two halves of a 2-way split together run every test of
//! the example crate exactly once.

use std::collections::BTreeSet;

use super::common::{example_manifest, Messages, Sandbox};

/// The tests one hunt ran (each once, without `--until-fail`). `--fail-on` matches no
/// output, so failing runs are not captured: this is about which tests run.
fn tests_run(sb: &Sandbox, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--fail-on", "no output says this"];
    args.extend(extra);
    let run = sb.hunt_json(&example_manifest(), &args);
    run.expect_status(0);
    let mut units: Vec<String> = run
        .messages_of("run-started")
        .iter()
        .map(|m| m["unit"].as_str().unwrap().to_string())
        .collect();
    units.sort();
    units
}

#[test]
fn two_shards_cover_every_test_once() {
    let sb = Sandbox::new();
    let all = tests_run(&sb, &["--per-test"]);
    assert_eq!(all.len(), 8, "the example crate's tests: {all:?}");
    for kind in ["count", "hash"] {
        let one = tests_run(&sb, &["--per-test", "--partition", &format!("{kind}:1/2")]);
        let two = tests_run(&sb, &["--per-test", "--partition", &format!("{kind}:2/2")]);
        assert!(
            !one.is_empty() && !two.is_empty(),
            "{kind}: {one:?} {two:?}"
        );
        let a: BTreeSet<_> = one.iter().collect();
        let b: BTreeSet<_> = two.iter().collect();
        assert!(a.is_disjoint(&b), "{kind}: {one:?} and {two:?} overlap");
        let mut both: Vec<String> = one.iter().chain(&two).cloned().collect();
        both.sort();
        assert_eq!(both, all, "{kind}: the halves cover every test once");
        if kind == "count" {
            assert_eq!(one.len(), 4, "round-robin halves 8 tests: {one:?}");
        }
    }
}

/// Without `--per-test`, a shard's tests run together in one process of their binary:
/// the failing run's libtest output lists exactly the shard's tests. count:1/2 of the
/// example crate's 8 tests (libtest lists them alphabetically) holds child_process and
/// mutex_interleaving, each failing at least one run in four (see flaky.rs): 30 runs
/// all pass with probability below 0.75^60 ≈ 3e-8.
#[test]
fn a_shard_runs_its_tests_in_one_process() {
    let sb = Sandbox::new();
    let expected: BTreeSet<String> = tests_run(&sb, &["--per-test", "--partition", "count:1/2"])
        .into_iter()
        .map(|u| u.rsplit("::").next().unwrap().to_string())
        .collect();
    let manifest = example_manifest();
    let target = sb.target();
    let run = sb.hunt_json(
        &manifest,
        &[
            "--until-fail",
            "--max-runs",
            "30",
            "--no-verify",
            "--partition",
            "count:1/2",
        ],
    );
    run.expect_status(1);
    let failing = run
        .messages_of("run-finished")
        .into_iter()
        .find(|m| m["failed"] == true)
        .expect("a failing run");
    assert_eq!(failing["unit"], "flaky-example/flaky_example");
    let stdout = failing["output"]["stdout"].as_str().unwrap();
    let ran: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test tests::"))
        .filter_map(|l| l.split(" ... ").next())
        .map(str::to_string)
        .collect();
    assert_eq!(ran, expected, "{stdout}");

    // More shards than tests: an empty shard runs nothing and passes.
    let run = sb.record_test([
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--partition",
        "count:9/9",
        "--junit",
        sb.path("empty.xml").to_str().unwrap(),
    ]);
    run.expect_status(0);
    assert!(
        run.stderr_str().contains("holds none of the 8 tests"),
        "{}",
        run.show()
    );
    let xml = std::fs::read_to_string(sb.path("empty.xml")).expect("an empty report");
    let (suite, cases) = super::junit::read_report(&xml);
    assert_eq!((suite["tests"].as_str(), cases.len()), ("0", 0), "{xml}");

    let run = sb.record_test(["--partition", "count:3/2"]);
    run.expect_status(2);
    assert!(
        run.stderr_str().contains("count:M/N or hash:M/N"),
        "{}",
        run.show()
    );
}
