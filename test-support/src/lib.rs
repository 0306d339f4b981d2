//! What the workspace's tests and benchmarks share (not for production use):
//!
//! - [`fixture`]: the C fixtures, compiled with the system C compiler once per process
//!   (the [`fixture!`] macro names the calling test binary's temporary directory);
//! - [`run`]: running a tool under a timeout, failing the test on a hang, a signal or a
//!   panic in the workspace's code, and [`Run`], what the run showed;
//! - [`trace`]: reading and rewriting a trace's event stream;
//! - [`files`]: byte-for-byte snapshots and copies of directory trees;
//! - [`diff`]: line diffs of two outputs for assertion messages;
//! - [`divergence`]: what the replay of an edited trace must show.
//!
//! Syscall numbers come from [`recorder::syscalls::nr`], never typed by hand.

pub mod diff;
pub mod divergence;
pub mod files;
pub mod fixture;
pub mod run;
pub mod trace;

pub use diff::text_diff;
pub use divergence::{assert_diverged_at, assert_edit_seen, divergence_event};
pub use files::{copy_tree, snapshot, snapshot_diff, Entry};
pub use fixture::{fixture_names, try_fixture, workspace_root};
pub use recorder::syscalls::nr;
pub use run::{assert_no_panic, run, timeout_secs, tool, tool_panic, under_timeout, Run, FAILED};
pub use trace::{
    chunk_ends, read_events, read_events_checked, record_options_in, syscalls, write_events,
    write_events_chunked,
};

/// The C fixture `NAME` (`tests/fixtures/c/NAME.c`), built into the calling test or
/// bench binary's `CARGO_TARGET_TMPDIR` (see [`fixture::fixture`]).
#[macro_export]
macro_rules! fixture {
    ($name:expr) => {
        $crate::fixture::fixture(::std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), $name)
    };
}

/// The `cargo-chaos` binary under test (for the integration tests and benches of the
/// `cargo-chaos` package).
#[macro_export]
macro_rules! cargo_chaos {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_cargo-chaos"))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines() {
        let d = text_diff(b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(d.contains("- b\n"), "{d}");
        assert!(d.contains("+ B\n"), "{d}");
        assert!(text_diff(b"same", b"same").is_empty());
        assert!(text_diff(b"x\n", b"x").contains("no newline"));
    }

    #[test]
    fn every_fixture_has_a_source() {
        let names = fixture_names();
        for n in [
            "fileio", "mmap", "pipe", "tcp", "time", "rdtsc", "cpuid", "random", "segv", "exit3",
        ] {
            assert!(
                names.iter().any(|x| x == n),
                "missing fixture {n}: {names:?}"
            );
        }
    }
}
