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
