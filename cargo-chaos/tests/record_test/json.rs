//! Issue 18 item 4: the JSON stream carries the failure. A failing run's `run-finished`
//! holds its output (bounded, in full in a file), `captured` holds the panic message
//! and location, every outcome ends with `finished` (a failed build too), and
//! `cargo replay-artifact --message-format json` writes nothing but JSON on stdout.

use std::path::Path;

use serde_json::Value;

use super::common::{copy_example, example_manifest, Messages, Sandbox};

fn base(sb: &Sandbox, manifest: &Path) -> Vec<String> {
    [
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        sb.target().to_str().unwrap(),
        "--message-format",
        "json",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_failing_hunt_carries_its_output_and_panic() {
    let sb = Sandbox::new();
    let mut args = base(&sb, &example_manifest());
    // 80 runs of hashmap_order: misses with probability 0.75^80 (see flaky.rs).
    args.extend(
        [
            "--until-fail",
            "--max-runs",
            "80",
            "--per-test",
            "hashmap_order",
        ]
        .map(String::from),
    );
    let hunt = sb.record_test(&args);
    hunt.expect_status(1);

    // Line by line, as a CI script reads it.
    let mut failing_output = None;
    let mut captured = None;
    let mut last_type = String::new();
    for line in hunt.stdout_str().lines() {
        let m: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", hunt.show()));
        last_type = m["type"].as_str().unwrap().to_string();
        match last_type.as_str() {
            "run-finished" if m["data"]["failed"] == true => {
                failing_output = Some(m["data"]["output"].clone())
            }
            "run-finished" => assert!(m["data"].get("output").is_none(), "{m}"),
            "captured" => captured = Some(m["data"].clone()),
            _ => {}
        }
    }
    assert_eq!(last_type, "finished", "the stream ends with `finished`");

    let output = failing_output.expect("a failing run-finished");
    let stdout = output["stdout"].as_str().expect("its stdout");
    assert!(stdout.contains("iteration order: [\"beta\""), "{output}");
    assert!(stdout.contains("panicked at src/lib.rs:"), "{output}");
    assert_eq!(output["truncated"], false, "{output}");
    let file = output["output_file"]
        .as_str()
        .expect("the full output's file");
    let full = std::fs::read_to_string(file).expect("the output file exists");
    assert!(full.starts_with(stdout), "{full}");

    let c = captured.expect("a captured message");
    assert_eq!(c["test"], "tests::hashmap_order", "{c}");
    let message = c["panic_message"].as_str().expect("the panic message");
    assert!(
        message.contains("iteration order was [\"beta\", \"alpha\"]"),
        "{c}"
    );
    let location = c["panic_location"].as_str().expect("the panic location");
    assert!(
        regex::Regex::new(r"^src/lib\.rs:\d+:\d+$")
            .unwrap()
            .is_match(location),
        "{c}"
    );
    assert!(stdout.contains(&format!("panicked at {location}:")), "{c}");

    // The replay, in JSON: only messages on stdout; the program's writes among them.
    let archive = c["archive"].as_str().unwrap();
    let replay = sb.replay([archive, "--message-format", "json"]);
    replay.expect_status(101);
    let messages = replay.messages();
    let replayed_stdout: String = messages
        .iter()
        .filter(|m| m["type"] == "output" && m["data"]["stream"] == "stdout")
        .map(|m| m["data"]["text"].as_str().unwrap())
        .collect();
    assert!(
        replayed_stdout.contains("iteration order: [\"beta\", \"alpha\"]"),
        "{}",
        replay.show()
    );
    let last = messages.last().expect("messages");
    assert_eq!(last["type"], "replayed", "{last}");
    assert_eq!(last["data"]["matched"], true, "{last}");
    assert_eq!(last["data"]["status"], 101, "{last}");
}

#[test]
fn a_failed_build_ends_with_finished() {
    let sb = Sandbox::new();
    let krate = sb.path("broken-crate");
    copy_example(&krate);
    let lib = krate.join("src/lib.rs");
    let mut src = std::fs::read_to_string(&lib).unwrap();
    src.push_str("\nfn broken() -> u32 { \"not a number\" }\n");
    std::fs::write(&lib, src).unwrap();
    let run = sb.record_test(base(&sb, &krate.join("Cargo.toml")));
    run.expect_status(2);
    let messages = run.messages();
    assert_eq!(messages.len(), 1, "{}", run.show());
    let end = &messages[0];
    assert_eq!(end["type"], "finished", "{end}");
    assert_eq!(end["data"]["exit_code"], 2, "{end}");
    assert!(
        end["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the build failed")),
        "{end}"
    );
}

#[test]
fn a_refused_replay_is_json_too() {
    let sb = Sandbox::new();
    let bogus = sb.path("bogus.chaos.tar.zst");
    std::fs::write(&bogus, "not an archive").unwrap();
    let run = sb.replay([bogus.to_str().unwrap(), "--message-format", "json"]);
    run.expect_status(125);
    let m = run.messages();
    assert_eq!(m.len(), 1, "{}", run.show());
    assert_eq!(m[0]["type"], "replayed");
    assert_eq!(m[0]["data"]["matched"], false);
    assert!(m[0]["data"]["error"].as_str().is_some(), "{}", m[0]);
}
