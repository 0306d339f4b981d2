//! Exit codes of the binaries, in one place so scripts and other tools can rely on them.

/// Every run passed (record-test), or the replay matched and the program exited 0.
pub const OK: i32 = 0;
/// `cargo record-test`: a failing run was captured.
pub const CAPTURED: i32 = 1;
/// `cargo record-test`: the tool could not do its job (build failed, recorder error,
/// upload failed, or a capture was held back because it holds credentials); also
/// `cargo chaos pack --upload` and `cargo chaos upload` when they did not upload.
pub const TOOL_ERROR: i32 = 2;
/// `cargo record-test`: the name filter matched no test in any test binary (nextest's
/// `NO_TESTS_RUN`), with or without `--per-test`. Not 2: a CI job can tell a mistyped
/// filter from a tool that failed, and not 0: a filter that runs nothing hunts nothing.
pub const NO_TESTS: i32 = 4;
/// Replay diverged, the trace or archive was refused, or this machine cannot replay it;
/// also `cargo chaos record` when the recorder itself failed.
pub const REPLAY_FAILED: i32 = 125;

/// Every binary: the command line is not valid (clap's usage error).
pub const USAGE: i32 = 2;

/// `cargo record-test` stopped by SIGINT, SIGTERM or SIGHUP from outside (see
/// `record_test::stop`): 128 + the signal's number, as a shell reports a program the
/// signal ended.
pub fn stopped_by_signal(sig: i32) -> i32 {
    128 + sig
}
