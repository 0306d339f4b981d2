//! The on-disk trace directory (see `docs/trace-format.md`).
//!
//! This module is the one definition of the format: the recorder writes it, replay reads
//! it, and the packer (`packer`, which depends on this crate) reads `version`,
//! `header.json`, `result.json` and the names in `files/` through the same types and
//! rules.
//!
//! Version policy: the first line of `version` names the format; a reader refuses any
//! other version with a message naming both, rather than guessing.
//!
//! Older traces: every field of [`Header`] and every field of [`RunResult`] but its
//! `outcome` has a default, so a `header.json` or `result.json` written before a field
//! existed still reads (the field takes its default); unknown fields are ignored.

mod event;
mod fault;
pub mod files;
pub mod sparse;
mod stream;
pub mod validate;

pub use event::{signal_name, Event, ExecState, ExitKind, Mapping, MemWrite, SyscallEvent};
pub use fault::TraceFault;
pub use files::{CaptureCache, FileStore};
pub use stream::{EventReader, EventWriter};
pub use validate::is_file_name;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};

/// The first line of every trace's `version` file.
pub const VERSION_LINE: &str = "chaos-trace 16";
/// The format version number.
pub const FORMAT_VERSION: u32 = 16;
/// Versions this replayer reads: 2 only added event kinds (shared file mappings) to 1;
/// 3 added [`Event::Preempted`] (how each preemption point was found); 4 made syscall
/// buffering the default ([`Header::syscallbuf`]: replay must map the library's entry
/// page, which a replayer of format 3 that predates the field does not know to do, so
/// it refuses the trace by its version rather than diverging); 5 changed the definition
/// of the memory digest of preemption points (`preempt::memory::Definition`: per-page
/// hashes, so that it can be computed incrementally; replay keeps the old one for older
/// traces, and an older replayer refuses these rather than miss every point); 6 leaves
/// the preempted thread's dead stack (below `rsp - 128`) out of the stack and memory
/// hashes (`Definition::LiveStack`; same policy as 5); 7 added [`Event::Filtered`] (the
/// program's own seccomp filters' verdicts), which an older replayer could not read; 8
/// added the quiet entry to the entry page (the desched event's ioctls,
/// [`Header::desched`]), which a replayer of 7 would not map, so it refuses these.
/// 9 added [`Event::SignalAtPoint`] (a held signal given at a preemption point: a
/// replayer of 8 would not know the event, and refuses the trace by its version).
/// 10 leaves every thread's dead stack out of the memory digest, not only the preempted
/// one's (`Definition::AllStacks`; a replayer of 9 would miss points whose other threads'
/// dead stacks are not zero, so it refuses these; replay keeps 6's definition for 6 to 9).
/// 11 lets a preemption point carry the words its registers point at among its memory
/// words (`PointInfo::memory`, up to 24 rather than 8, which a replayer of 10 refuses
/// as invalid: it refuses the trace by its version instead).
/// 12 added [`Event::KernelWrite`] (a priority-inheritance futex's waiters bit, set by
/// the kernel as a thread went to sleep in `FUTEX_LOCK_PI`), unknown to a replayer of 11.
/// 13 opens a thread's desched event at its first read that may block (the library's
/// traced read carrying `syscallbuf::abi::ASK_MARK`, answered through a memory write)
/// and has it on by default: a replayer of 12's library would take the registration's
/// `DESCHED_LAZY` for an event fd and buffer that read, so it refuses the trace.
/// 14 added [`Event::PidNamespace`] (the pids of a task in the program's own pid
/// namespaces), which a replayer of 13 could not read.
/// 15 lets a preemption point carry the words its stack words point at too, and those
/// 64 and 128 bytes on from each pointed address (up to 56 memory words rather than 24,
/// which a replayer of 14 refuses as invalid: it refuses the trace by its version
/// instead).
/// 16 stores a huge file that is mostly holes as a sparse image (see [`sparse`]),
/// which a replayer of 15 would map as the file itself.
pub const READABLE_VERSION_LINES: &[&str] = &[
    "chaos-trace 1",
    "chaos-trace 2",
    "chaos-trace 3",
    "chaos-trace 4",
    "chaos-trace 5",
    "chaos-trace 6",
    "chaos-trace 7",
    "chaos-trace 8",
    "chaos-trace 9",
    "chaos-trace 10",
    "chaos-trace 11",
    "chaos-trace 12",
    "chaos-trace 13",
    "chaos-trace 14",
    "chaos-trace 15",
    VERSION_LINE,
];

/// Whether `line`, the first line of a trace's `version` file, names a format this
/// crate reads (see [`READABLE_VERSION_LINES`]).
pub fn is_readable_version(line: &str) -> bool {
    READABLE_VERSION_LINES.contains(&line)
}

/// The file naming the format (`chaos-trace 14`).
pub const VERSION_FILE: &str = "version";
/// What was recorded ([`Header`]).
pub const HEADER_FILE: &str = "header.json";
/// How the recording ended ([`RunResult`]); absent when the recorder was killed.
pub const RESULT_FILE: &str = "result.json";
/// The event stream.
pub const EVENTS_FILE: &str = "events";
/// The captured files, each named by the BLAKE3 of its content ([`is_file_name`]).
pub const FILES_DIR: &str = "files";

/// `header.json`: what was recorded, written when the recording starts.
///
/// A field missing from the file (an older recorder's) reads as its default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// Trace format version.
    pub format_version: u32,
    /// Version of the recorder.
    pub tool_version: String,
    /// Command line.
    pub argv: Vec<String>,
    /// Working directory of the program.
    pub cwd: String,
    /// Environment the program got.
    pub env: Vec<(String, String)>,
    /// Names of variables removed before the program started (never their values).
    pub removed_env: Vec<String>,
    /// Absolute path of the executable.
    pub exe: String,
    /// Host name.
    pub hostname: String,
    /// `uname -srvm`.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Scheduler seed.
    pub seed: u64,
    /// The scheduling policy (`off` in traces of recorders without chaos mode).
    pub chaos: crate::sched::Chaos,
    /// Whether address-space randomisation was turned off for the recording.
    pub aslr_disabled: bool,
    /// Whether CPUID faulting was armed (cpuid results recorded).
    pub cpuid_faulting: bool,
    /// The CPU set the program was shown (sched_getaffinity).
    pub cpu_set: Vec<usize>,
    /// The core the recording was pinned to.
    pub pinned_cpu: usize,
    /// System calls that were let through without a stop and are not in the trace:
    /// replay runs them when the program makes them (see `record::seccomp`). Empty for
    /// traces of recorders that traced every call.
    pub untraced: Vec<u64>,
    /// The program ran with the syscall-buffering preload library (`crate::syscallbuf`):
    /// replay maps its entry page at every exec. False for `--no-syscallbuf`, for
    /// recordings where seccomp was unavailable, and for older traces.
    pub syscallbuf: bool,
    /// With `syscallbuf`: threads got a desched event (`record::desched`), so reads on
    /// pipes, sockets and terminals were buffered too (a call that blocked is
    /// in the trace with the result `syscallbuf::abi::DESCHED_RET`, then made again,
    /// traced). False where perf events were refused (`kernel.perf_event_paranoid`),
    /// with `CARGO_CHAOS_DESCHED=0`, and in older traces. (Format 13 opens a thread's
    /// event at its first read that may block; 8 to 12, opt-in then, at every
    /// registration.)
    pub desched: bool,
    /// Wall-clock start, milliseconds since the epoch.
    pub started_unix_ms: u64,
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The program exited.
    Exited,
    /// The program was killed by a signal.
    Signaled,
    /// The recording was interrupted (Ctrl-C).
    Interrupted,
    /// The program ran past the time limit.
    TimedOut,
    /// The recorder stopped because of an error (e.g. an unsupported syscall).
    RecorderError,
}

/// `result.json`: how the recording ended.
///
/// Only `outcome` is required; another field missing from the file (an older
/// recorder's) reads as its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Exit code when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal when it was killed.
    #[serde(default)]
    pub signal: Option<i32>,
    /// What `cargo chaos record` exits with: the code, or 128 + signal.
    #[serde(default)]
    pub status: i32,
    /// Number of events.
    #[serde(default)]
    pub events: u64,
    /// Every cpuid answer the program got: leaf, subleaf, eax, ebx, ecx, edx (empty when
    /// CPUID faulting was not armed, see [`Header::cpuid_faulting`]).
    #[serde(default)]
    pub cpuid_leaves: Vec<[u32; 6]>,
    /// How many tick budgets instrumented code asked for (`chaos_tick` calls, see
    /// [`crate::ticks`]); non-zero means the program ran code built with
    /// `cargo record-test --instrument`, and preempting it needs no breakpoints.
    #[serde(default)]
    pub tick_requests: u64,
    /// Failing path lookups the recorder answered itself, in one stop (see
    /// `record::probe`); their events are the ones the calls would have produced.
    #[serde(default)]
    pub lookups_answered: u64,
    /// `sched_yield`, `chaos_tick` and syscall-buffer flush calls the recorder completed
    /// at their seccomp stop, in one stop instead of two (see `record::syscall`).
    #[serde(default)]
    pub completed_at_entry: u64,
    /// Stops for the desched event's signal (see `record::desched`): one per buffered
    /// call that blocked or was interrupted, and one per false alarm (a thread switched
    /// out in the few instructions around a buffered call while it was armed).
    #[serde(default)]
    pub desched_signals: u64,
    /// Desched events the engine opened: one per thread at its first read that may
    /// block (and one per forked child of a thread that had one); 0 without them.
    #[serde(default)]
    pub desched_events: u64,
    /// Error text for `recorder_error`.
    #[serde(default)]
    pub message: Option<String>,
    /// Set when writing the trace failed while the program ran (a full disk): the first
    /// such error. The program was not stopped for it and its status above is real, but
    /// the trace is incomplete and cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_error: Option<String>,
}

/// A trace directory.
#[derive(Debug, Clone)]
pub struct TraceDir {
    /// Its path.
    pub path: PathBuf,
}

impl TraceDir {
    /// Creates a new, empty trace directory (it must not exist, or be empty).
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists()
            && std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .next()
                .is_some()
        {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "trace directory exists and is not empty",
                ),
            ));
        }
        std::fs::create_dir_all(path.join(FILES_DIR)).map_err(|e| Error::io(path, e))?;
        std::fs::write(path.join(VERSION_FILE), format!("{VERSION_LINE}\n"))
            .map_err(|e| Error::io(path, e))?;
        Ok(TraceDir {
            path: path.to_owned(),
        })
    }

    /// Prepares `path` for a recording that overwrites the one it may hold (a hunt's
    /// scratch directory, reused from run to run: creating and deleting a trace
    /// directory cost a run ~0.3 ms). The captured files stay (their names are their
    /// hashes, so a later run that maps the same file finds it there); the recorder
    /// removes the ones the new run did not use when it finishes (see
    /// [`FileStore::remove_unused`]). The other files are removed, not truncated: ext4
    /// writes a file truncated to zero and written again back to disk when it is closed.
    pub fn reuse(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Self::create(path);
        }
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            if entry.file_name() == FILES_DIR {
                continue;
            }
            let p = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|e| Error::io(&p, e))?;
        }
        std::fs::create_dir_all(path.join(FILES_DIR)).map_err(|e| Error::io(path, e))?;
        std::fs::write(path.join(VERSION_FILE), format!("{VERSION_LINE}\n"))
            .map_err(|e| Error::io(path, e))?;
        Ok(TraceDir {
            path: path.to_owned(),
        })
    }

    /// Opens an existing trace, checking its version.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadTrace {
            path: path.to_owned(),
            reason,
        };
        if !path.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let version = std::fs::read_to_string(path.join(VERSION_FILE)).map_err(|e| {
            bad(format!(
                "no readable `version` file ({e}); is this a trace directory?"
            ))
        })?;
        let line = version.lines().next().unwrap_or("");
        if !is_readable_version(line) {
            return Err(bad(format!(
                "it is in format `{line}`, this replayer reads `{VERSION_LINE}` (hint: use the cargo-chaos version that recorded it)"
            )));
        }
        Ok(TraceDir {
            path: path.to_owned(),
        })
    }

    /// Writes `header.json`.
    pub fn write_header(&self, header: &Header) -> Result<()> {
        self.write_json(HEADER_FILE, header)
    }

    /// Reads `header.json`.
    pub fn header(&self) -> Result<Header> {
        self.read_json(HEADER_FILE)
    }

    /// Writes `result.json`.
    pub fn write_result(&self, result: &RunResult) -> Result<()> {
        self.write_json(RESULT_FILE, result)
    }

    /// Reads `result.json`; `None` when the recording never finished.
    pub fn result(&self) -> Result<Option<RunResult>> {
        if !self.path.join(RESULT_FILE).exists() {
            return Ok(None);
        }
        self.read_json(RESULT_FILE).map(Some)
    }

    /// Refuses a trace the recorder could not write completely (see
    /// [`RunResult::trace_error`]).
    pub fn check_complete(&self) -> Result<()> {
        if let Ok(Some(RunResult {
            trace_error: Some(error),
            status,
            ..
        })) = self.result()
        {
            return Err(Error::BadTrace {
                path: self.path.clone(),
                reason: format!(
                    "it is incomplete: writing it failed while recording ({error}); the program ran to its end (status {status}) but its trace cannot be replayed (hint: record again with more disk space)"
                ),
            });
        }
        Ok(())
    }

    /// Opens the event stream.
    pub fn events(&self) -> Result<EventReader> {
        EventReader::open(&self.path.join(EVENTS_FILE))
    }

    /// Path of the captured file named `hash`, checked: the name must be a content hash
    /// (never a path: see [`validate`]) and the file a regular file inside `files/` (not
    /// a symbolic link).
    pub fn file_path(&self, hash: &str) -> Result<PathBuf> {
        let bad = |reason: String| Error::BadTrace {
            path: self.path.clone(),
            reason,
        };
        if !validate::is_file_name(hash) {
            return Err(bad(format!(
                "it names a captured file `{}`, which is not a content hash",
                validate::printable(hash)
            )));
        }
        let path = self.path.join(FILES_DIR).join(hash);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => Ok(path),
            Ok(_) => Err(bad(format!("captured file {hash} is not a regular file"))),
            Err(_) => Err(bad(format!("captured file {hash} is missing"))),
        }
    }

    /// The path of captured file `hash` for the replayed program to open or map: the
    /// stored object, or for a sparse image (see [`sparse`]) the file built from it in
    /// directory `scratch`, once (`image-<hash>`).
    pub fn mappable_path(&self, hash: &str, scratch: &Path) -> Result<PathBuf> {
        let object = self.file_path(hash)?;
        let built = scratch.join(format!("image-{hash}"));
        if built.is_file() {
            return Ok(built);
        }
        // Built under another name and renamed, so that `built` is never half made.
        let part = scratch.join(format!(".image-{hash}"));
        if !self.build_image(hash, &object, &part)? {
            return Ok(object);
        }
        std::fs::rename(&part, &built).map_err(|e| Error::io(&built, e))?;
        Ok(built)
    }

    /// Writes a copy of captured file `hash` to `to` (a sparse image's file is built
    /// there, holes and all).
    pub fn copy_captured(&self, hash: &str, to: &Path) -> Result<()> {
        let object = self.file_path(hash)?;
        if !self.build_image(hash, &object, to)? {
            std::fs::copy(&object, to).map_err(|e| Error::io(&object, e))?;
        }
        Ok(())
    }

    /// Builds the file sparse image `object` (captured file `hash`) describes at `to`;
    /// `false` when `object` is not an image.
    fn build_image(&self, hash: &str, object: &Path, to: &Path) -> Result<bool> {
        sparse::materialize(object, to).map_err(|reason| Error::BadTrace {
            path: self.path.clone(),
            reason: format!("captured file {hash} is a sparse image that {reason}"),
        })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let text = serde_json::to_vec_pretty(value).expect("plain data serializes");
        if let Err(e) = std::fs::write(&tmp, text) {
            // A partial file would hold on to space a full disk needs.
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T> {
        let path = self.path.join(name);
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::BadTrace {
            path: self.path.clone(),
            reason: format!("{name} is damaged: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header.json and a result.json from before `untraced`, `tick_requests`,
    /// `lookups_answered` and `trace_error` existed read, with those fields at their
    /// defaults; unknown fields are ignored.
    #[test]
    fn older_files_read() {
        let header: Header = serde_json::from_str(
            r#"{"format_version": 1, "tool_version": "0.0.9", "argv": ["./p"], "cwd": "/",
                "env": [["A", "1"]], "removed_env": [], "exe": "/p", "hostname": "h",
                "kernel": "k", "cpu_model": "c", "seed": 9, "aslr_disabled": false,
                "cpuid_faulting": true, "cpu_set": [0, 1], "pinned_cpu": 1,
                "started_unix_ms": 5, "from_the_future": {"x": 1}}"#,
        )
        .unwrap();
        assert!(header.untraced.is_empty());
        assert_eq!(header.env, vec![("A".to_string(), "1".to_string())]);
        assert!(header.cpuid_faulting);
        let result: RunResult = serde_json::from_str(
            r#"{"outcome": "exited", "exit_code": 0, "signal": null, "status": 0,
                "events": 3, "cpuid_leaves": [[0, 0, 1, 2, 3, 4]], "message": null}"#,
        )
        .unwrap();
        assert_eq!(result.cpuid_leaves, vec![[0, 0, 1, 2, 3, 4]]);
        assert_eq!((result.tick_requests, result.lookups_answered), (0, 0));
        assert_eq!(result.trace_error, None);
        // Only the outcome is required.
        assert!(serde_json::from_str::<RunResult>(r#"{"status": 0}"#).is_err());
        let bare: RunResult = serde_json::from_str(r#"{"outcome": "signaled"}"#).unwrap();
        assert_eq!(bare.outcome, Outcome::Signaled);
    }

    /// The environment is a list of pairs; the recorder never writes an object.
    #[test]
    fn env_is_a_list_of_pairs() {
        let text = serde_json::to_string(&Header {
            env: vec![("K".into(), "V".into())],
            ..Header::default()
        })
        .unwrap();
        assert!(text.contains(r#""env":[["K","V"]]"#), "{text}");
        assert!(serde_json::from_str::<Header>(r#"{"env": {"K": "V"}}"#).is_err());
    }

    #[test]
    fn version_lines() {
        assert!(is_readable_version(VERSION_LINE));
        assert!(is_readable_version("chaos-trace 1"));
        assert!(is_readable_version("chaos-trace 2"));
        assert!(is_readable_version("chaos-trace 3"));
        assert!(is_readable_version("chaos-trace 4"));
        assert!(is_readable_version("chaos-trace 5"));
        assert!(is_readable_version("chaos-trace 6"));
        assert!(is_readable_version("chaos-trace 7"));
        assert!(is_readable_version("chaos-trace 8"));
        assert!(is_readable_version("chaos-trace 9"));
        assert!(is_readable_version("chaos-trace 10"));
        assert!(!is_readable_version(&format!(
            "chaos-trace {}",
            FORMAT_VERSION + 1
        )));
        assert_eq!(VERSION_LINE, format!("chaos-trace {FORMAT_VERSION}"));
    }
}
