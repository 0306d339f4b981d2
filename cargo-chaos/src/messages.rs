//! JSON Lines messages of `cargo record-test --message-format json` and
//! `cargo replay-artifact --message-format json`: one object per line,
//! `{"type": ..., "data": {...}}`. Version 1; fields are only ever added.

use serde::Serialize;

/// Version of the message format.
pub const MESSAGE_VERSION: u32 = 1;

/// One message.
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum Message {
    /// A recorded run started.
    RunStarted {
        /// Run number (from 0).
        run: u64,
        /// What runs: `package/target` or `package/target::test`.
        unit: String,
        /// Scheduler seed.
        seed: u64,
    },
    /// A recorded run ended.
    RunFinished {
        /// Run number.
        run: u64,
        /// What ran.
        unit: String,
        /// Exit status (code, or 128 + signal).
        status: i32,
        /// exited, signaled, timed_out, interrupted.
        outcome: String,
        /// Whether it counts as a failure.
        failed: bool,
        /// Wall time in milliseconds.
        duration_ms: u64,
        /// A failing run's output: what it wrote (the last [`OUTPUT_BOUND`] bytes of
        /// each stream, the full text in `output_file`).
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<RunOutput>,
    },
    /// A failing run was captured.
    Captured {
        /// The archive on disk.
        archive: String,
        /// Where it was uploaded, if it was.
        url: Option<String>,
        /// The package.
        package: String,
        /// The test binary (target name).
        binary: String,
        /// The failing test(s).
        test: Option<String>,
        /// Run number.
        run: u64,
        /// Scheduler seed.
        seed: u64,
        /// The command that replays it.
        replay_command: String,
        /// Whether the run was replayed once and matched before it was captured
        /// (false with `--no-verify`).
        verified: bool,
        /// Credentials found in it, uploaded as `--allow-secrets` allowed: where and what
        /// kind (never their values).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        credentials: Vec<String>,
        /// `FILE:LINE:COL` of the test's panic, when it panicked.
        panic_location: Option<String>,
        /// The panic message (up to 20 lines), when it panicked.
        panic_message: Option<String>,
    },
    /// A failing run was captured, but its archive holds credentials: it was kept local
    /// (not uploaded, not in the archive directory) and the exit code is 2.
    HeldBack {
        /// The archive on disk.
        archive: String,
        /// Where the credentials are and what kind (never their values).
        credentials: Vec<String>,
        /// Run number.
        run: u64,
    },
    /// A failing run whose replay did not match its recording: not captured (its
    /// output was shown), and the hunt went on.
    VerifyFailed {
        /// Run number.
        run: u64,
        /// What ran.
        unit: String,
        /// Why the replay failed.
        reason: String,
    },
    /// The hunt ended.
    Finished {
        /// Runs done.
        runs: u64,
        /// Failures captured.
        failures: usize,
        /// Failing runs not captured because their replay did not match.
        verify_failed: usize,
        /// The exit code.
        exit_code: i32,
        /// Why the tool stopped, when it could not do its job (a build that failed...).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The signal that stopped the hunt (Ctrl-C: "SIGINT"), when one did.
        #[serde(skip_serializing_if = "Option::is_none")]
        interrupted_by: Option<String>,
    },
    /// A replay ended.
    Replayed {
        /// The test, when known.
        test: Option<String>,
        /// Events replayed.
        events: u64,
        /// Whether the replay matched the recording.
        matched: bool,
        /// Status of the replayed program.
        status: i32,
        /// Why it did not match.
        error: Option<String>,
    },
    /// `cargo replay-artifact --message-format json`: something the replayed program
    /// wrote, in order.
    Output {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// What it wrote (invalid UTF-8 replaced).
        text: String,
    },
}

/// Bytes of each stream kept in a `run-finished` message.
pub const OUTPUT_BOUND: usize = 16 * 1024;

/// What a failing run wrote, as a `run-finished` message carries it.
#[derive(Debug, Serialize)]
pub struct RunOutput {
    /// Its stdout (the end of it, when longer than [`OUTPUT_BOUND`]).
    pub stdout: String,
    /// Its stderr (likewise).
    pub stderr: String,
    /// Whether either was cut to its end.
    pub truncated: bool,
    /// A file with both in full (stdout, then stderr), when it could be written.
    pub output_file: Option<String>,
}

impl RunOutput {
    /// Bounds `stdout` and `stderr`; `output_file` holds them in full.
    pub fn new(stdout: &str, stderr: &str, output_file: Option<String>) -> RunOutput {
        let (o, to) = tail(stdout);
        let (e, te) = tail(stderr);
        RunOutput {
            stdout: o.to_string(),
            stderr: e.to_string(),
            truncated: to || te,
            output_file,
        }
    }
}

/// The last [`OUTPUT_BOUND`] bytes of `s` (at a character boundary), and whether it was cut.
fn tail(s: &str) -> (&str, bool) {
    if s.len() <= OUTPUT_BOUND {
        return (s, false);
    }
    let mut at = s.len() - OUTPUT_BOUND;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    (&s[at..], true)
}

/// Prints one message as a line on stdout.
pub fn emit(m: &Message) {
    use std::io::Write;
    if let Ok(line) = serde_json::to_string(m) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
