//! Errors of the debugger.

use recorder::trace::ExitKind;

/// What can go wrong while serving a replay to gdb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The replay failed (a divergence, a damaged trace, a ptrace error).
    #[error("{0}")]
    Session(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Going to a position did not meet the stops that defined it: a bug of the
    /// debugger or a replay that is not deterministic.
    #[error("the replay did not reach the same point again: {0} (hint: this is a bug; please report it with the archive)")]
    Bookkeeping(String),
    /// The recording cannot be debugged (it does not start with an exec, it is empty).
    #[error("{0}")]
    BadRecording(String),
    /// No such place in the recording.
    #[error("{0}")]
    NoSuchPosition(String),
    /// More watchpoints than free debug registers.
    #[error("{wanted} hardware watchpoints wanted; the replay has 3 (DR1-DR3; DR0 finds preemption points)")]
    TooManyWatchpoints {
        /// How many were asked for.
        wanted: usize,
    },
    /// The program ended where the timeline expected it to stop before its end.
    #[error("the program ended ({0:?}) before the end of the recording was reached")]
    Exited(ExitKind),
    /// I/O (the sysroot, the listening socket, launching gdb).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The recording cannot be served (no exec, unreadable trace).
    #[error("{0}")]
    Trace(#[from] recorder::Error),
}

impl Error {
    /// Wraps a session's error.
    pub fn session(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Session(Box::new(e))
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
