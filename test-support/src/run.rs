//! Running the tools under test: one timeout policy, one way to tell that a tool
//! panicked, one [`Run`] for what a finished command showed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The exit status of `cargo-chaos` for a divergence, a refused trace or a recorder
/// error.
pub const FAILED: i32 = 125;

/// How long one run of a tool may take before `timeout` kills it: a safety net only (no
/// run in the tests takes more than seconds, but a hung recording, replay or hunt must
/// fail its test with a message instead of hanging the suite). `CHAOS_TEST_TIMEOUT`
/// (seconds) overrides the default of 600.
pub fn timeout_secs() -> u64 {
    std::env::var("CHAOS_TEST_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(600)
}

/// `timeout` exits with 124 when it stopped the command, 137 when it had to kill it (the
/// tools exit with those too, for a program stopped by SIGTERM or SIGKILL: the time the
/// run took tells them apart).
const TIMED_OUT: [i32; 2] = [124, 137];

/// `program` under `timeout` ([`timeout_secs`], then SIGKILL ten seconds later), with
/// stdin from /dev/null. `timeout` is named by absolute path, so that a test may clear or
/// change PATH for the run.
pub fn under_timeout(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(tool("timeout"));
    cmd.arg("--kill-after=10")
        .arg(timeout_secs().to_string())
        .arg(program)
        .stdin(Stdio::null());
    cmd
}

/// The absolute path of a tool found in this process's PATH (or `name` itself if it is
/// a path already).
///
/// # Panics
/// When the tool is not installed.
pub fn tool(name: impl AsRef<OsStr>) -> PathBuf {
    let name = Path::new(name.as_ref());
    if name.components().count() > 1 {
        return name.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{}` is not installed (not found in PATH)", name.display()))
}

/// Where the workspace's own code lives, as a panic message names it (`panicked at
/// recorder/src/...`). Programs under test panic on purpose (the flaky Rust tests); their
/// locations are in their own crates.
const OUR_CODE: [&str; 5] = [
    "recorder/",
    "packer/",
    "cargo-chaos/",
    "debugger/",
    "test-support/",
];

/// The line of `stderr` in which the workspace's own code panicked, if any: the tools
/// report problems with messages, never with a Rust panic.
pub fn tool_panic(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| {
        l.split("panicked at ")
            .skip(1)
            .any(|at| OUR_CODE.iter().any(|c| at.starts_with(c)))
    })
}

/// What a finished command showed. Two runs are equal when they showed the same
/// (status, stdout and stderr), whatever the commands were.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command, for messages.
    pub what: String,
    /// Exit status.
    pub status: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl PartialEq for Run {
    fn eq(&self, other: &Run) -> bool {
        (self.status, &self.stdout, &self.stderr) == (other.status, &other.stdout, &other.stderr)
    }
}

impl Eq for Run {}

impl Run {
    /// Runs `cmd` to completion (see [`run`]).
    pub fn of(mut cmd: Command) -> Run {
        run(&mut cmd)
    }

    /// Stdout as text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Status and both outputs, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "{}\nstatus {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }

    /// Panics, showing everything, unless the exit status is `code`.
    #[track_caller]
    pub fn expect_status(&self, code: i32) -> &Self {
        assert_eq!(self.status, code, "exit status\n{}", self.show());
        self
    }
}

/// Runs `cmd` to completion. The test fails when the command cannot start, died of a
/// signal (the tools never do: they exit with 128 + N for a program killed by signal N),
/// was stopped by `timeout` (see [`under_timeout`]), or when the workspace's own code
/// panicked ([`tool_panic`]).
#[track_caller]
pub fn run(cmd: &mut Command) -> Run {
    let what = format!("{cmd:?}");
    let under_timeout = Path::new(cmd.get_program()).ends_with("timeout");
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let took = started.elapsed();
    let Some(status) = out.status.code() else {
        panic!(
            "{what} died of a signal ({:?})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let run = Run {
        what,
        status,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    assert!(
        !(under_timeout
            && TIMED_OUT.contains(&run.status)
            && took >= Duration::from_secs(timeout_secs())),
        "HANG: the command did not finish within {} s and was killed by `timeout`\n{}",
        timeout_secs(),
        run.show()
    );
    assert_no_panic(&run);
    run
}

/// The run's stderr shows no panic in the workspace's own code ([`tool_panic`]).
#[track_caller]
pub fn assert_no_panic(run: &Run) {
    if let Some(line) = tool_panic(&run.stderr_str()) {
        panic!("the tool panicked: {line}\n{}", run.show());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_our_code_is_found_and_one_in_a_program_is_not() {
        let ours = "thread 'main' panicked at recorder/src/replay/session.rs:10:5:\nboom\n";
        assert!(tool_panic(ours).is_some());
        let program = "thread 'lost_update' panicked at tests/races.rs:31:5:\nlost\n";
        assert!(tool_panic(program).is_none());
        assert!(tool_panic("no panic here").is_none());
    }

    #[test]
    fn a_command_that_exits_normally_is_a_run() {
        let r = run(under_timeout("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
        assert_eq!(r.status, 3);
        assert_eq!(r.stdout_str(), "out\n");
        assert_eq!(r.stderr_str(), "err\n");
    }

    #[test]
    #[should_panic(expected = "died of a signal")]
    fn a_command_killed_by_a_signal_fails_the_test() {
        run(Command::new("sh").args(["-c", "kill -KILL $$"]));
    }
}
