//! `--gdb` and `--gdb-server` of `cargo chaos replay` and `cargo replay-artifact`.

use std::path::Path;

use crate::exit_codes;

/// The group of `--gdb` and `--gdb-server`: the other options here only mean something
/// with one of them, and are refused without (clap's usage error) rather than ignored.
const GDB_SESSION: &str = "gdb_session";

/// Debugging the replay with gdb.
#[derive(Debug, Clone, clap::Args)]
pub struct GdbArgs {
    /// Debug the replay with gdb (`rust-gdb` when installed): start a gdb server on the
    /// replay and gdb connected to it, with the archive's binaries and libraries.
    /// Reverse execution works (reverse-continue, reverse-stepi, watchpoints).
    #[arg(long, group = GDB_SESSION)]
    pub gdb: bool,
    /// Only serve the replay to gdb on ADDR (`127.0.0.1:9999`; port 0 picks one), and
    /// print the gdb command line and a VS Code launch.json configuration that connect.
    #[arg(long, value_name = "ADDR", conflicts_with = "gdb", group = GDB_SESSION)]
    pub gdb_server: Option<String>,
    /// Start the gdb session at the boundary before event N (as `cargo chaos dump`
    /// numbers events) instead of the program's first instruction.
    #[arg(long, value_name = "N", conflicts_with = "gdb_at_end", requires = GDB_SESSION)]
    pub gdb_at_event: Option<u64>,
    /// Start the gdb session just before the program's exit (then reverse from there).
    #[arg(long, requires = GDB_SESSION)]
    pub gdb_at_end: bool,
    /// An argument for the launched gdb, after the connecting ones (repeat it:
    /// `--gdb-arg=-batch --gdb-arg=-x --gdb-arg=script.gdb`).
    #[arg(
        long = "gdb-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = GDB_SESSION
    )]
    pub gdb_args: Vec<String>,
    /// A local checkout of the recorded program's sources: gdb finds the files the
    /// debug info names under the recorded working directory (CI's checkout) there.
    #[arg(long, value_name = "DIR", requires = GDB_SESSION)]
    pub source_dir: Option<std::path::PathBuf>,
    /// Debug the recorded process PID (as the program saw it: its `getpid()`, and
    /// `cargo chaos dump`'s pids) instead of the first one, from its creation (or its
    /// exec) to its exit. A session follows one process: forks inside it are not
    /// followed.
    #[arg(long, value_name = "PID", requires = GDB_SESSION)]
    pub gdb_pid: Option<i32>,
}

impl GdbArgs {
    /// Whether a gdb session was asked for.
    pub fn wanted(&self) -> bool {
        self.gdb || self.gdb_server.is_some()
    }

    /// Serves the replay of `trace` to gdb; returns the exit code.
    pub fn run(&self, trace: &Path, quiet: bool) -> i32 {
        use debugger::run::{debug, DebugOptions, Mode, StartAt};
        let start = match (self.gdb_at_event, self.gdb_at_end) {
            (Some(n), _) => StartAt::Event(n),
            (None, true) => StartAt::End,
            (None, false) => StartAt::Start,
        };
        let mode = match &self.gdb_server {
            Some(addr) => Mode::Serve { addr: addr.clone() },
            None => Mode::Launch {
                gdb_args: self.gdb_args.clone(),
            },
        };
        let source_dir = self
            .source_dir
            .as_ref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
        let options = DebugOptions {
            start,
            mode,
            quiet,
            source_dir,
            pid: self.gdb_pid,
        };
        match debug(trace, &options) {
            Ok(status) => status,
            Err(e) => {
                eprintln!("error: debugging the replay failed: {e}");
                exit_codes::REPLAY_FAILED
            }
        }
    }
}
