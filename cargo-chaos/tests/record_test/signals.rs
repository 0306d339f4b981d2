//! SIGINT, SIGTERM and SIGHUP during a hunt: a test that sends them to its parent (the
//! recorder) does not end the hunt; the same signal from outside (Ctrl-C, a cancelled
//! CI job) stops it cleanly with 128 + the signal's number.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use super::common::{write_crate, Messages, Sandbox};

/// A crate whose one test makes a child shell send SIGINT, SIGTERM and SIGHUP to the
/// test's parent, then fails (so that the run is captured and its replay verified).
fn signalling_crate(dir: &Path) {
    write_crate(
        dir,
        "signals-parent",
        r#"#[cfg(test)]
mod tests {
    #[test]
    fn signals_its_parent() {
        let parent = std::os::unix::process::parent_id();
        for sig in ["INT", "TERM", "HUP"] {
            let st = std::process::Command::new("sh")
                .args(["-c", "kill -s \"$1\" \"$2\"", "sh", sig, &parent.to_string()])
                .status()
                .expect("sh");
            assert!(st.success(), "kill -s {sig} {parent}: {st}");
        }
        let pid = std::process::id();
        println!("signalled parent {parent} from test process {pid}");
        panic!("done signalling (test pid {pid})");
    }
}
"#,
    );
}

#[test]
fn signals_a_test_sends_its_parent_do_not_end_the_hunt() {
    let sb = Sandbox::new();
    let krate = sb.path("signals-parent");
    signalling_crate(&krate);
    let run = sb.hunt_json(
        &krate.join("Cargo.toml"),
        &["--until-fail", "--max-runs", "3"],
    );
    // Captured and verified: the run went to its end (the panic) under the recorder.
    run.expect_status(1);
    let captured = run.captured();
    assert_eq!(captured["test"], "tests::signals_its_parent", "{captured}");
    assert_eq!(captured["verified"], true, "{captured}");
    let finished = run.messages_of("finished");
    assert_eq!(finished.len(), 1, "{}", run.show());
    assert!(
        finished[0].get("interrupted_by").is_none(),
        "{}",
        finished[0]
    );
}

#[test]
fn sigint_from_outside_stops_the_hunt_cleanly() {
    let sb = Sandbox::new();
    let manifest = super::common::example_manifest();
    let target = sb.target();
    // A test that passes: the hunt would go on for 100,000 runs.
    let mut cmd = sb.record_test_cmd([
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--until-fail",
        "--max-runs",
        "100000",
        "--per-test",
        "--message-format",
        "json",
        "tests::always_passes",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the hunt");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    // Once a run has finished, the hunt is in its loop of recordings.
    for line in lines.by_ref() {
        let line = line.expect("a line of the hunt's output");
        let done = line.contains("\"run-finished\"");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("\"run-finished\"")),
        "the hunt ended before a run finished: {seen:?}"
    );
    // To the hunt itself, as a terminal's Ctrl-C gives it one SIGINT: not through the
    // `timeout` wrapper, which passes a signal on to its child and then to its whole
    // process group, so the hunt got two and took the second one's exit-at-once path
    // now and then (exit 130 without its `finished` message: once in a clean CI run).
    let wrapper = child.id();
    let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
        .expect("the timeout wrapper's children");
    let hunt: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no hunt under the timeout wrapper: {children:?}"));
    // SAFETY: plain syscall on the hunt, a child of our own child (it is alive: the
    // wrapper waits for it, so its pid cannot have been reused).
    assert_eq!(unsafe { libc::kill(hunt, libc::SIGINT) }, 0);
    seen.extend(lines.map(|l| l.expect("a line")));
    let out = child.wait_with_output().expect("wait for the hunt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = seen.join("\n");
    assert_eq!(out.status.code(), Some(130), "{all}\n{stderr}");
    let finished: serde_json::Value = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["type"] == "finished")
        .unwrap_or_else(|| panic!("no finished message: {all}"))["data"]
        .clone();
    assert_eq!(finished["interrupted_by"], "SIGINT", "{finished}");
    assert_eq!(finished["exit_code"], 130, "{finished}");
    assert_eq!(finished["failures"], 0, "{finished}");
    // The hunt's scratch directory is gone: only the shared capture cache is left.
    let left: Vec<String> = std::fs::read_dir(target.join("chaos/runs"))
        .expect("the runs directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "captured-files")
        .collect();
    assert!(left.is_empty(), "left in target/chaos/runs: {left:?}");
}
