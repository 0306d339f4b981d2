//! Shared helpers: running the binary, recording and replaying fixtures, comparing
//! outputs with readable diffs.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use recorder::trace::{Event, SyscallEvent};
pub use test_support::{copy_tree, read_events, snapshot, snapshot_diff, text_diff, write_events};

/// x86_64 syscall numbers the tests look for in traces.
pub mod sys {
    pub const WRITE: u64 = 1;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const GETRANDOM: u64 = 318;
}

/// The exit status of the binary for a divergence, a refused trace or a recorder error.
pub const FAILED: i32 = 125;

/// No run of the binary in these tests takes more than a few seconds; a hung replay or
/// recording is killed after this long instead of hanging the test suite.
const TIMEOUT_SECS: &str = "300";

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cargo-chaos")
}

/// A fixture built from `tests/fixtures/c/NAME.c` (shared by the tests of this process:
/// copy it before deleting or moving it).
pub fn fixture(name: &str) -> PathBuf {
    test_support::fixture::fixture(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
}

/// A fresh temporary directory for one test.
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chaos-e2e-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Copies fixture `name` to `dir/name` (for tests that delete or move the program).
pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the fixture directory");
    let dest = dir.join(name);
    std::fs::copy(fixture(name), &dest).expect("copy the fixture");
    dest
}

/// `cargo-chaos` (under `timeout`, and after `wrapper`, e.g. `setpriv ...` or `prlimit ...`).
/// Tools are named by absolute path, so that tests may clear or change PATH for the run.
pub fn chaos_cmd(wrapper: &[&OsStr]) -> Command {
    let mut cmd = Command::new(tool("timeout"));
    cmd.arg("--kill-after=10").arg(TIMEOUT_SECS);
    if let Some((first, rest)) = wrapper.split_first() {
        cmd.arg(tool(first)).args(rest);
    }
    cmd.arg(bin());
    cmd.stdin(Stdio::null());
    cmd
}

/// The absolute path of a tool found in this process's PATH (or `name` itself if it is
/// a path already).
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

/// What a run showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Exit status.
    pub status: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// A description for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

/// Runs `cmd` to completion. The binary must exit normally (never die of a signal), and
/// must not have hung until `timeout` killed it.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let run = Run {
        status: out.status.code().unwrap_or_else(|| {
            panic!(
                "{cmd:?} died of a signal ({:?})\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        stdout: out.stdout,
        stderr: out.stderr,
    };
    assert!(
        run.status != 124 && run.status != 137,
        "{cmd:?} did not finish within {TIMEOUT_SECS} s and was killed\n{}",
        run.show()
    );
    assert_no_panic(&run);
    run
}

/// The binary reports problems with messages, never with a Rust panic.
pub fn assert_no_panic(run: &Run) {
    let err = run.stderr_str();
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "the binary panicked:\n{}",
        run.show()
    );
}

/// A recording: the trace and what the program showed while it was recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The trace directory.
    pub trace: PathBuf,
    /// The program's status, stdout, and stderr (without the recorder's own final line).
    pub program: Run,
}

/// A change to a command before it runs.
pub type Configure<'a> = Box<dyn FnOnce(&mut Command) + 'a>;

/// How to record: `cargo-chaos record --trace-dir TRACE -- PROGRAM ARGS...`.
pub struct RecordSpec<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub trace: PathBuf,
    /// Runs before the binary (e.g. `prlimit --stack=...`).
    pub wrapper: Vec<OsString>,
    /// Further changes to the command (cwd, env, stdin).
    pub configure: Option<Configure<'a>>,
    /// Use the `cargo-chaos chaos record` form, as cargo runs the binary.
    pub cargo_form: bool,
}

impl<'a> RecordSpec<'a> {
    pub fn new(program: &'a Path, trace: PathBuf) -> Self {
        RecordSpec {
            program,
            args: Vec::new(),
            trace,
            wrapper: Vec::new(),
            configure: None,
            cargo_form: false,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn wrapper<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, w: I) -> Self {
        self.wrapper = w.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn configure(mut self, f: impl FnOnce(&mut Command) + 'a) -> Self {
        self.configure = Some(Box::new(f));
        self
    }

    pub fn cargo_form(mut self) -> Self {
        self.cargo_form = true;
        self
    }

    /// Records; the recorder must succeed (its own line must be the last on stderr).
    pub fn record(self) -> Recording {
        let (raw, trace) = self.record_raw();
        let program = split_record_output(&raw, &trace);
        Recording { trace, program }
    }

    /// Records and returns the binary's raw output (for tests of recorder errors).
    pub fn record_raw(self) -> (Run, PathBuf) {
        let wrapper: Vec<&OsStr> = self.wrapper.iter().map(|w| w.as_os_str()).collect();
        let mut cmd = chaos_cmd(&wrapper);
        if self.cargo_form {
            cmd.arg("chaos");
        }
        cmd.arg("record")
            .arg("--trace-dir")
            .arg(&self.trace)
            .arg("--")
            .arg(self.program)
            .args(&self.args);
        if let Some(f) = self.configure {
            f(&mut cmd);
        }
        (run(&mut cmd), self.trace)
    }
}

/// Records `program args` into `dir/trace`.
pub fn record(dir: &Path, program: &Path, args: &[&str]) -> Recording {
    RecordSpec::new(program, dir.join("trace"))
        .args(args)
        .record()
}

/// Separates the program's output from the recorder's `chaos: trace written to DIR` line.
pub fn split_record_output(raw: &Run, trace: &Path) -> Run {
    let line = format!("chaos: trace written to {}\n", trace.display());
    let Some(program_stderr) = raw.stderr.strip_suffix(line.as_bytes()) else {
        panic!(
            "the recording did not end with `{}` on stderr (did the recorder fail?)\n{}",
            line.trim_end(),
            raw.show()
        );
    };
    assert!(
        trace.join("version").is_file(),
        "no trace at {}",
        trace.display()
    );
    Run {
        status: raw.status,
        stdout: raw.stdout.clone(),
        stderr: program_stderr.to_vec(),
    }
}

/// `cargo-chaos replay TRACE`, with `configure` applied to the command.
pub fn replay_with(trace: &Path, wrapper: &[&OsStr], configure: impl FnOnce(&mut Command)) -> Run {
    let mut cmd = chaos_cmd(wrapper);
    cmd.arg("replay").arg(trace);
    configure(&mut cmd);
    run(&mut cmd)
}

/// `cargo-chaos replay TRACE`.
pub fn replay(trace: &Path) -> Run {
    replay_with(trace, &[], |_| {})
}

/// The replay showed exactly what the recording showed: status, stdout and stderr.
#[track_caller]
pub fn assert_same(what: &str, recorded: &Run, replayed: &Run) {
    if recorded == replayed {
        return;
    }
    let mut msg = format!("{what}: the replay differs from the recording\n");
    if recorded.status != replayed.status {
        msg.push_str(&format!(
            "status: recorded {}, replayed {}\n",
            recorded.status, replayed.status
        ));
    }
    if recorded.stdout != replayed.stdout {
        msg.push_str(&format!(
            "stdout differs:\n{}",
            text_diff(&recorded.stdout, &replayed.stdout)
        ));
    }
    if recorded.stderr != replayed.stderr {
        msg.push_str(&format!(
            "stderr differs:\n{}",
            text_diff(&recorded.stderr, &replayed.stderr)
        ));
    }
    msg.push_str(&format!(
        "\n=== recorded ===\n{}\n=== replayed ===\n{}",
        recorded.show(),
        replayed.show()
    ));
    panic!("{msg}");
}

/// Whether `text` names event number `n` ("event N" not followed by another digit).
pub fn names_event(text: &str, n: u64) -> bool {
    let needle = format!("event {n}");
    text.match_indices(&needle)
        .any(|(i, _)| !text[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The syscall events of a trace with their event numbers.
pub fn syscalls(events: &[Event]) -> impl Iterator<Item = (u64, &SyscallEvent)> {
    events.iter().enumerate().filter_map(|(i, e)| match e {
        Event::Syscall(s) => Some((i as u64, s)),
        _ => None,
    })
}

/// Event number of the first write to fd 1 after event `after`.
pub fn next_stdout_write(events: &[Event], after: u64) -> u64 {
    syscalls(events)
        .find(|(i, s)| *i > after && s.nr == sys::WRITE && s.args[0] == 1)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no write to stdout after event {after}"))
}

/// The line of `out` that starts with `prefix`, without its newline.
pub fn line_with(out: &[u8], prefix: &str) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no line starting with `{prefix}` in:\n{}",
                String::from_utf8_lossy(out)
            )
        })
        .to_string()
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of hex.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
