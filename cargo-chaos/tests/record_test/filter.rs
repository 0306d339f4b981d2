//! Issue 15 item 4: a name filter sends runs only to the test binaries that hold a
//! matching test, and a filter that matches no test anywhere is an error (exit code 4,
//! nextest's `NO_TESTS_RUN`), with or without `--per-test`.
//!
//! `tests/fixtures/rust-races` has four test binaries (the library, `cpu_bound`,
//! `races`, `shell`) and no dependencies: it builds in seconds.

use std::path::Path;

use super::common::{Messages, Run, Sandbox};

fn hunt(sb: &Sandbox, extra: &[&str]) -> Run {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rust-races/Cargo.toml");
    let mut args = vec!["--fail-on", "no output says this"];
    args.extend(extra);
    sb.hunt_json(&manifest, &args)
}

#[test]
fn runs_go_only_to_binaries_where_the_filter_matches() {
    let sb = Sandbox::new();
    let run = hunt(&sb, &["shell_child", "--until-fail", "--max-runs", "4"]);
    run.expect_status(0);
    let units: Vec<String> = run
        .messages_of("run-started")
        .iter()
        .map(|m| m["unit"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(units.len(), 4, "{}", run.show());
    for u in &units {
        assert_eq!(u, "chaos-rust-races/shell", "{}", run.show());
    }
    // Each run ran the matching test, and only it.
    for m in run.messages_of("run-finished") {
        assert_eq!(m["failed"], false, "{m}");
    }

    for per_test in [false, true] {
        let mut args = vec!["no_test_has_this_name"];
        if per_test {
            args.push("--per-test");
        }
        let run = hunt(&sb, &args);
        run.expect_status(4);
        assert!(
            run.stderr_str()
                .contains("no test matches `no_test_has_this_name` in the 4 test binaries"),
            "{}",
            run.show()
        );
        assert!(run.messages_of("run-started").is_empty(), "{}", run.show());
        let finished = run.messages_of("finished");
        assert_eq!(finished.len(), 1, "{}", run.show());
        assert_eq!(finished[0]["exit_code"], 4, "{}", run.show());
    }
}
