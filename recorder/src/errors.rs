//! Errors of the recorder library.

use std::path::PathBuf;

/// Everything that can go wrong while recording, replaying or reading a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ptrace or wait request failed for a reason other than the task being gone.
    #[error("ptrace {op} on pid {pid} failed: {source}")]
    Ptrace {
        /// The task.
        pid: i32,
        /// The request, e.g. "PTRACE_GETREGS".
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The task disappeared (exit_group from another thread, SIGKILL). Callers treat this
    /// as "this task is gone", not as a failure of the recorder.
    #[error("task {pid} is gone")]
    TaskGone {
        /// The task.
        pid: i32,
    },
    /// Reading or writing the tracee's memory failed.
    #[error("{op} of {len} bytes at {addr:#x} in pid {pid} failed: {source}")]
    Memory {
        /// The task.
        pid: i32,
        /// "read" or "write".
        op: &'static str,
        /// Address.
        addr: u64,
        /// Length.
        len: usize,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The program made a system call the recorder cannot record yet.
    #[error(
        "the program called `{name}` (syscall {nr}), which cannot be recorded yet (hint: {hint})"
    )]
    UnsupportedSyscall {
        /// Syscall name.
        name: String,
        /// Syscall number.
        nr: u64,
        /// What to do about it.
        hint: String,
    },
    /// Something the program did that the recorder does not support yet.
    #[error("unsupported: {what} (hint: {hint})")]
    Unsupported {
        /// What happened.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// The program could not be started.
    #[error("cannot start {program}: {reason}")]
    Spawn {
        /// Program path.
        program: PathBuf,
        /// Why.
        reason: String,
    },
    /// An I/O error on a trace file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The trace cannot be read.
    #[error("trace {path} cannot be read: {reason}")]
    BadTrace {
        /// The trace directory.
        path: PathBuf,
        /// Why, in plain words.
        reason: String,
    },
    /// The replay did not do what the recording did.
    #[error("replay diverged at event {event}: expected {expected}, but the program {actual}")]
    Divergence {
        /// Event number (0-based, as printed by `dump`).
        event: u64,
        /// What the trace says.
        expected: String,
        /// What happened at replay.
        actual: String,
    },
    /// A thread of a replay session reached a debugger's breakpoint in the middle of an
    /// event. The session turns this into `SessionStop::Breakpoint` and can go on from
    /// there; [`crate::replay::replay`] never returns it.
    #[error("thread {tid} stopped at the breakpoint at {addr:#x}")]
    Breakpoint {
        /// The thread (its real tid).
        tid: i32,
        /// The breakpoint's address.
        addr: u64,
    },
    /// The trace ended before the program did (the recording was killed).
    #[error("the trace ends after event {events} without the program's exit: the recording was cut short{}", .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TraceEnded {
        /// Number of events replayed.
        events: u64,
        /// More detail (e.g. a truncated chunk).
        detail: Option<String>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this error only says that a task is gone.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::TaskGone { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
