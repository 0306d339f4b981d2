//! Shared helpers: running the binary, recording and replaying fixtures, comparing
//! outputs with readable diffs.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use recorder::trace::Event;
pub use test_support::{
    copy_tree, read_events, snapshot, snapshot_diff, syscalls, text_diff, write_events,
};

pub use recorder::syscalls::nr as sys;
pub use test_support::{
    assert_diverged_at, assert_edit_seen, assert_no_panic, run, tool, Run, FAILED,
};

/// The binary under test.
pub fn bin() -> &'static Path {
    test_support::cargo_chaos!()
}

/// A fixture built from `tests/fixtures/c/NAME.c` (shared by the tests of this process:
/// copy it before deleting or moving it).
pub fn fixture(name: &str) -> PathBuf {
    test_support::fixture!(name)
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
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut cmd = test_support::under_timeout(tool(first));
            cmd.args(rest).arg(bin());
            cmd
        }
        None => test_support::under_timeout(bin()),
    }
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
        what: raw.what.clone(),
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
