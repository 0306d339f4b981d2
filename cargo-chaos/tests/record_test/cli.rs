//! Exit codes, JSON messages, human output, build errors, upload failures and the GitHub
//! Actions files of `cargo record-test`.

use std::collections::HashMap;
use std::path::Path;

use super::common::{copy_example, example_manifest, move_to, Messages, Sandbox};

/// Runs per hunt of `hashmap_order` (fails 44% of runs): 0.75^80 < 1e-9, see flaky.rs.
const MAX_RUNS: &str = "80";

/// `--manifest-path <example> --target-dir <sandbox target>` plus `rest`.
fn hunt_args(sb: &Sandbox, rest: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--manifest-path".to_string(),
        example_manifest().display().to_string(),
        "--target-dir".to_string(),
        sb.target().display().to_string(),
    ];
    a.extend(rest.iter().map(|s| s.to_string()));
    a
}

/// A hunt of the example crate's `hashmap_order` test until it fails, with `flags`.
fn hashmap_hunt(sb: &Sandbox, flags: &[&str]) -> Vec<String> {
    let mut a = vec!["--until-fail", "--max-runs", MAX_RUNS];
    a.extend_from_slice(flags);
    a.push("hashmap_order");
    hunt_args(sb, &a)
}

#[test]
fn json_messages_of_a_captured_hunt() {
    let sb = Sandbox::new();
    let seed = 1000u64;
    let run = sb.record_test(hashmap_hunt(
        &sb,
        &[
            "--per-test",
            "--seed",
            "1000",
            "--jobs",
            "2",
            "--message-format",
            "json",
        ],
    ));
    run.expect_status(1);
    let messages = run.messages();
    let unit = "flaky-example/flaky_example::tests::hashmap_order";

    let started = run.messages_of("run-started");
    assert!(!started.is_empty(), "{}", run.show());
    let mut seeds = HashMap::new();
    for s in &started {
        let n = s["run"].as_u64().expect("run number");
        assert_eq!(s["unit"], unit, "{s}");
        assert_eq!(
            s["seed"].as_u64(),
            Some(seed + n),
            "run n uses seed + n: {s}"
        );
        seeds.insert(n, s["seed"].as_u64().unwrap());
    }

    let finished = run.messages_of("run-finished");
    for f in &finished {
        let n = f["run"].as_u64().expect("run number");
        assert!(seeds.contains_key(&n), "run {n} finished without starting");
        assert_eq!(f["unit"], unit, "{f}");
        assert!(f["duration_ms"].is_u64(), "{f}");
        let status = f["status"].as_i64().expect("status");
        match f["outcome"].as_str() {
            Some("exited") => {
                assert!(
                    status == 0 || status == 101,
                    "a libtest binary exits 0 or 101: {f}"
                );
                assert_eq!(f["failed"], status != 0, "{f}");
            }
            // The other job's run, stopped once a failure was found: never a failure.
            Some("interrupted") => assert_eq!(f["failed"], false, "{f}"),
            _ => panic!("unexpected outcome: {f}"),
        }
    }

    let c = run.captured();
    let n = c["run"].as_u64().expect("run number");
    assert_eq!(c["seed"].as_u64(), Some(seeds[&n]), "{c}");
    assert_eq!(c["package"], "flaky-example", "{c}");
    assert_eq!(c["binary"], "flaky_example", "{c}");
    assert_eq!(c["test"], "tests::hashmap_order", "{c}");
    assert_eq!(c["url"], serde_json::Value::Null, "no --upload: {c}");
    assert_eq!(
        c["verified"], true,
        "replayed once before it was captured: {c}"
    );
    let archive = c["archive"].as_str().expect("archive");
    assert!(Path::new(archive).is_file(), "{c}");
    assert!(archive.ends_with(".chaos.tar.zst"), "{c}");
    let failing = finished
        .iter()
        .find(|f| f["run"] == n)
        .expect("the captured run finished");
    assert_eq!(failing["status"], 101, "{failing}");
    assert_eq!(failing["failed"], true, "{failing}");

    // The captured run's messages come in order: started, finished, captured.
    let pos = |ty: &str| {
        messages
            .iter()
            .position(|m| m["type"] == ty && m["data"]["run"] == n)
            .unwrap()
    };
    assert!(
        pos("run-started") < pos("run-finished") && pos("run-finished") < pos("captured"),
        "{}",
        run.show()
    );

    let end = messages.last().expect("messages");
    assert_eq!(end["type"], "finished", "the last message: {end}");
    assert_eq!(end["data"]["failures"], 1, "{end}");
    assert_eq!(end["data"]["verify_failed"], 0, "{end}");
    assert_eq!(end["data"]["exit_code"], 1, "{end}");
    assert_eq!(
        end["data"]["runs"].as_u64(),
        Some(finished.len() as u64),
        "{end}"
    );
}

/// `--no-verify` captures without the verifying replay, and says so.
#[test]
fn no_verify_captures_without_replaying() {
    let sb = Sandbox::new();
    let run = sb.record_test(hashmap_hunt(
        &sb,
        &[
            "--per-test",
            "--seed",
            "1000",
            "--no-verify",
            "--message-format",
            "json",
        ],
    ));
    run.expect_status(1);
    let c = run.captured();
    assert_eq!(c["verified"], false, "{c}");
    let end = &run.messages_of("finished")[0];
    assert_eq!(end["verify_failed"], 0, "{end}");
}

/// The human output shows the failing run; the replay prints the same thing.
#[test]
fn human_output_shows_the_failing_run_and_the_replay_command() {
    let sb = Sandbox::new();
    let run = sb.record_test(hashmap_hunt(&sb, &["--per-test"]));
    run.expect_status(1);
    assert!(
        run.stdout_str().is_empty(),
        "human output goes to stderr\n{}",
        run.show()
    );
    let output = run
        .stderr_str()
        .split_once("---- output of the failing run ----\n")
        .and_then(|(_, rest)| rest.split_once("---- end of output ----"))
        .map(|(o, _)| o.to_string())
        .unwrap_or_else(|| panic!("no failing run's output\n{}", run.show()));
    assert!(output.contains("panicked at src/lib.rs"), "{output}");
    let stderr = run.stderr_str();
    let replay_line = stderr
        .lines()
        .skip_while(|l| !l.starts_with("replay it anywhere with:"))
        .nth(1)
        .expect("a replay command");
    let archive = replay_line
        .trim()
        .strip_prefix("cargo replay-artifact ")
        .expect("the command")
        .to_string();
    assert!(
        run.stderr_str().contains(&format!("Captured {archive} (")),
        "{}",
        run.show()
    );

    let moved = move_to(Path::new(&archive), &sb.path("elsewhere"));
    std::fs::remove_dir_all(sb.target()).unwrap();
    let replay = sb.replay([&moved]);
    replay.expect_status(101);
    assert!(
        replay
            .stdout_str()
            .contains("iteration order was [\"beta\", \"alpha\"]"),
        "{}",
        replay.show()
    );
    assert!(
        output.starts_with(&replay.stdout_str()),
        "the hunt showed:\n{output}\nthe replay printed:\n{}",
        replay.stdout_str()
    );
}

#[test]
fn a_hunt_where_every_run_passes_exits_0() {
    let sb = Sandbox::new();
    let run = sb.record_test(hunt_args(
        &sb,
        &[
            "--until-fail",
            "--max-runs",
            "3",
            "--per-test",
            "--message-format",
            "json",
            "always_passes",
        ],
    ));
    run.expect_status(0);
    let finished = run.messages_of("run-finished");
    assert_eq!(finished.len(), 3, "{}", run.show());
    for f in &finished {
        assert_eq!(f["status"], 0, "{f}");
        assert_eq!(f["failed"], false, "{f}");
    }
    assert!(run.messages_of("captured").is_empty(), "{}", run.show());
    let end = &run.messages_of("finished")[0];
    assert_eq!(
        (
            end["runs"].as_u64(),
            end["failures"].as_u64(),
            end["exit_code"].as_i64()
        ),
        (Some(3), Some(0), Some(0)),
        "{end}"
    );
    let archives = sb.target().join("chaos/archives");
    assert!(
        !archives.exists() || std::fs::read_dir(&archives).unwrap().next().is_none(),
        "no archive for a passing hunt"
    );
}

/// Without `--until-fail`, each selected unit runs once.
#[test]
fn without_until_fail_each_test_runs_once() {
    let sb = Sandbox::new();
    let run = sb.record_test(hunt_args(
        &sb,
        &["--per-test", "--message-format", "json", "always_passes"],
    ));
    run.expect_status(0);
    assert_eq!(run.messages_of("run-finished").len(), 1, "{}", run.show());
}

/// `--fail-on`: a failure whose output does not match does not count.
#[test]
fn fail_on_ignores_other_failures() {
    let sb = Sandbox::new();
    // wall_clock and hashmap_order both fail often, with other messages than this.
    let run = sb.record_test(hunt_args(
        &sb,
        &[
            "--until-fail",
            "--max-runs",
            "6",
            "--per-test",
            "--fail-on",
            "no test prints this",
            "--message-format",
            "json",
            "hashmap_order",
        ],
    ));
    run.expect_status(0);
    let finished = run.messages_of("run-finished");
    assert_eq!(finished.len(), 6, "{}", run.show());
    assert!(
        finished.iter().all(|f| f["failed"] == false),
        "{}",
        run.show()
    );
}

#[test]
fn a_build_error_exits_2_with_cargos_diagnostics() {
    let sb = Sandbox::new();
    let krate = sb.path("broken-crate");
    copy_example(&krate);
    let lib = krate.join("src/lib.rs");
    let mut src = std::fs::read_to_string(&lib).unwrap();
    src.push_str("\nfn broken() -> u32 { let x: u32 = \"not a number\"; x }\n");
    std::fs::write(&lib, src).unwrap();
    let manifest = krate.join("Cargo.toml");
    let run = sb.record_test([
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        sb.target().to_str().unwrap(),
        "--until-fail",
        "--max-runs",
        "3",
        "--message-format",
        "json",
    ]);
    run.expect_status(2);
    // Cargo's rendered diagnostic: the error code, the file and the line.
    assert!(
        run.stderr_str().contains("error[E0308]: mismatched types"),
        "{}",
        run.show()
    );
    assert!(run.stderr_str().contains("src/lib.rs:"), "{}", run.show());
    assert!(
        run.stderr_str()
            .contains("could not compile `flaky-example`"),
        "{}",
        run.show()
    );
    assert!(
        run.messages_of("run-started").is_empty(),
        "nothing ran\n{}",
        run.show()
    );
}

#[test]
fn an_unreachable_upload_exits_2_and_keeps_the_archive() {
    let sb = Sandbox::new();
    let run = sb.record_test(hashmap_hunt(
        &sb,
        &[
            "--per-test",
            "--upload",
            "http://127.0.0.1:1/x/",
            "--message-format",
            "json",
        ],
    ));
    run.expect_status(2);
    let stderr = run.stderr_str();
    let kept = stderr
        .lines()
        .find_map(|l| l.strip_prefix("the archive is kept at "))
        .unwrap_or_else(|| panic!("the kept archive's path is printed\n{}", run.show()));
    assert!(Path::new(kept).is_file(), "{kept} exists");
    assert!(
        Path::new(kept).starts_with(sb.target().join("chaos/archives")),
        "{kept}"
    );
    assert!(
        run.stderr_str().contains("uploading the archive failed"),
        "{}",
        run.show()
    );
    let c = run.captured();
    assert_eq!(c["archive"], kept, "{c}");
    assert_eq!(c["url"], serde_json::Value::Null, "{c}");
    let end = &run.messages_of("finished")[0];
    assert_eq!(end["exit_code"], 2, "{end}");

    // What was kept replays.
    let replay = sb.replay([kept, "--quiet"]);
    replay.expect_status(101);
}

/// An upload to a directory given by `--upload` (file:// URL).
#[test]
fn upload_to_a_directory() {
    let sb = Sandbox::new();
    let dest = sb.path("uploads");
    let url = format!("file://{}/", dest.display());
    let run = sb.record_test(hashmap_hunt(
        &sb,
        &["--per-test", "--upload", &url, "--message-format", "json"],
    ));
    run.expect_status(1);
    let c = run.captured();
    let location = c["url"].as_str().unwrap_or_else(|| panic!("uploaded: {c}"));
    let name = Path::new(c["archive"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_owned();
    assert!(
        dest.join(&name).is_file(),
        "{} holds the archive ({location})",
        dest.display()
    );
    assert!(
        c["replay_command"].as_str().unwrap().contains(location),
        "{c}"
    );
    std::fs::remove_dir_all(sb.target()).unwrap();
    sb.replay([location, "--quiet"]).expect_status(101);
}

#[test]
fn github_actions_step_summary_and_output() {
    let sb = Sandbox::new();
    let summary = sb.path("step_summary.md");
    let output = sb.path("github_output");
    // Both files exist already on a runner, with what earlier steps wrote.
    std::fs::write(&summary, "earlier summary\n").unwrap();
    std::fs::write(&output, "earlier=1\n").unwrap();
    let mut cmd = sb.record_test_cmd(hashmap_hunt(
        &sb,
        &["--per-test", "--message-format", "json"],
    ));
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &output);
    let run = super::common::Run::of(cmd);
    run.expect_status(1);
    let archive = run.captured()["archive"].as_str().unwrap().to_string();

    let out = std::fs::read_to_string(&output).unwrap();
    assert!(
        out.starts_with("earlier=1\n"),
        "appended, not overwritten: {out}"
    );
    assert!(
        out.lines().any(|l| l == format!("archive={archive}")),
        "GITHUB_OUTPUT:\n{out}"
    );

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("earlier summary\n"),
        "appended, not overwritten: {md}"
    );
    let name = Path::new(&archive)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        md.contains("cargo replay-artifact "),
        "the replay command is in the summary:\n{md}"
    );
    assert!(
        md.contains(&name),
        "the archive is named in the summary:\n{md}"
    );
    assert!(md.contains("```"), "the command is a code block:\n{md}");
}

/// Outside GitHub Actions the files are left alone even if the variables are set.
#[test]
fn no_github_files_outside_github_actions() {
    let sb = Sandbox::new();
    let summary = sb.path("step_summary.md");
    let output = sb.path("github_output");
    let mut cmd = sb.record_test_cmd(hashmap_hunt(
        &sb,
        &["--per-test", "--message-format", "json"],
    ));
    cmd.env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &output);
    let run = super::common::Run::of(cmd);
    run.expect_status(1);
    assert!(
        !summary.exists() && !output.exists(),
        "written without GITHUB_ACTIONS"
    );
}

#[test]
fn replay_of_a_missing_archive_exits_125() {
    let sb = Sandbox::new();
    let missing = sb.path("nope.chaos.tar.zst");
    let run = sb.replay([&missing]);
    run.expect_status(125);
    assert!(
        run.stderr_str().contains("does not exist"),
        "{}",
        run.show()
    );
}

#[test]
fn bad_arguments_exit_2() {
    let sb = Sandbox::new();
    let run = sb.record_test(["--no-such-flag"]);
    run.expect_status(2);
    let run = sb.record_test(hunt_args(&sb, &["--fail-on", "(unclosed"]));
    run.expect_status(2);
    assert!(run.stderr_str().contains("--fail-on"), "{}", run.show());
}

/// Issue 18: with frequent failures (temp_file_race fails every run, two tests at once)
/// the plain progress lines do not come between the capture blocks, and a closing
/// summary lists each capture with its replay command.
#[test]
fn human_output_ends_with_a_summary_of_the_captures() {
    let sb = Sandbox::new();
    let mut cmd = sb.record_test_cmd(hunt_args(
        &sb,
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
    ));
    cmd.env("CI", "true");
    let run = super::common::Run::of(cmd);
    run.expect_status(1);
    let stderr = run.stderr_str();
    let lines: Vec<&str> = stderr.lines().collect();
    let progress: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with("Recording "))
        .collect();
    assert_eq!(progress.len(), 1, "one line, at the end\n{}", run.show());
    assert!(
        lines[progress[0]].contains("6/6 runs"),
        "{}",
        lines[progress[0]]
    );
    let finished = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("Finished 6 runs, 2 distinct failure(s) captured:")
        })
        .unwrap_or_else(|| panic!("a closing summary\n{}", run.show()));
    assert!(finished > progress[0], "{}", run.show());
    let summary = lines[finished..].join("\n");
    for t in ["tests::temp_file_race_a", "tests::temp_file_race_b"] {
        assert!(
            summary.contains(&format!("  {t} (panicked at src/lib.rs:")),
            "{summary}"
        );
    }
    assert_eq!(
        summary.matches("cargo replay-artifact ").count(),
        2,
        "{summary}"
    );
}
