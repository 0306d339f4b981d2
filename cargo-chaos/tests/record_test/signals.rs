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

/// A hunt of a test that always passes (it would go on for 100,000 runs), started and
/// read until its first run finished; the test then signals it.
struct PassingHunt {
    sb: Sandbox,
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    stderr: BufReader<std::process::ChildStderr>,
    seen: Vec<String>,
    /// The hunt's pid (under the `timeout` wrapper the sandbox starts it with).
    hunt: i32,
}

impl PassingHunt {
    fn start() -> PassingHunt {
        let sb = Sandbox::new();
        let manifest = super::common::example_manifest();
        let target = sb.target();
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
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
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
        // Signals go to the hunt itself, not through the `timeout` wrapper, which
        // passes a signal on to its child and then to its whole process group.
        let wrapper = child.id();
        let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .expect("the timeout wrapper's children");
        let hunt: i32 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no hunt under the timeout wrapper: {children:?}"));
        PassingHunt {
            sb,
            child,
            lines,
            stderr,
            seen,
            hunt,
        }
    }

    fn signal(&self, sig: i32) -> i32 {
        // SAFETY: plain syscall on the hunt, a child of our own child (the wrapper
        // waits for it, so its pid is not reused while the wrapper lives).
        unsafe { libc::kill(self.hunt, sig) }
    }

    /// Reads the hunt's stderr up to a line containing `what`.
    fn wait_for_stderr(&mut self, what: &str) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.stderr.read_line(&mut line).expect("the hunt's stderr");
            text.push_str(&line);
            if n == 0 || line.contains(what) {
                return text;
            }
        }
    }

    /// Waits for the end: the hunt must have stopped cleanly for `sig` (128 + its
    /// number, a `finished` message naming it, its scratch directory removed).
    fn expect_clean_stop(mut self, sig: i32, name: &str, stderr_before: &str) {
        self.seen.extend(self.lines.map(|l| l.expect("a line")));
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).expect("stderr");
        let status = self.child.wait().expect("wait for the hunt");
        let all = self.seen.join("\n");
        let stderr = format!("{stderr_before}{rest}");
        assert_eq!(status.code(), Some(128 + sig), "{all}\n{stderr}");
        let finished: serde_json::Value = self
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|m| m["type"] == "finished")
            .unwrap_or_else(|| panic!("no finished message: {all}\n{stderr}"))["data"]
            .clone();
        assert_eq!(finished["interrupted_by"], name, "{finished}");
        assert_eq!(finished["exit_code"], 128 + sig, "{finished}");
        assert_eq!(finished["failures"], 0, "{finished}");
        // The hunt's scratch directory is gone: only the shared capture cache is left.
        let left: Vec<String> = std::fs::read_dir(self.sb.target().join("chaos/runs"))
            .expect("the runs directory")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "captured-files")
            .collect();
        assert!(left.is_empty(), "left in target/chaos/runs: {left:?}");
    }
}

/// One SIGINT, as a terminal's Ctrl-C gives the hunt.
#[test]
fn sigint_from_outside_stops_the_hunt_cleanly() {
    let hunt = PassingHunt::start();
    assert_eq!(hunt.signal(libc::SIGINT), 0);
    hunt.expect_clean_stop(libc::SIGINT, "SIGINT", "");
}

/// A wrapper such as GNU `timeout` passes a signal to its child and then to its whole
/// process group: the same signal twice from one process. The second is not the user
/// insisting, so the hunt still stops cleanly rather than at once. (Before this was
/// handled, a clean CI run once saw exit 130 without the `finished` message.)
#[test]
fn the_same_signal_twice_from_one_process_stops_the_hunt_cleanly() {
    let mut hunt = PassingHunt::start();
    assert_eq!(hunt.signal(libc::SIGINT), 0);
    // The second once the first was taken (two pending SIGINTs would merge into one).
    let before = hunt.wait_for_stderr("stopping the hunt");
    hunt.signal(libc::SIGINT);
    hunt.expect_clean_stop(libc::SIGINT, "SIGINT", &before);
}
