//! Shared helpers: building the C fixtures, running `cargo-chaos record` and `replay`,
//! comparing a replay with its recording, reading and rewriting traces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use recorder::trace::{Event, EventReader, EventWriter, SyscallEvent, TraceDir};
pub use test_support::text_diff;

pub use super::suite::{suite, workspace_root};

/// x86_64 syscall numbers the tests look for in traces.
pub mod sys {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const PREAD64: u64 = 17;
    pub const WRITEV: u64 = 20;
    pub const ACCEPT: u64 = 43;
    pub const FUTEX: u64 = 202;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const EPOLL_WAIT: u64 = 232;
    pub const EPOLL_PWAIT: u64 = 281;
    pub const ACCEPT4: u64 = 288;
    pub const EPOLL_PWAIT2: u64 = 441;
}

/// `cargo-chaos`'s status for a divergence or a recorder error.
pub const FAILED: i32 = 125;

/// A safety net only: no run here takes more than a few seconds, but a hung recording or
/// replay must fail the test with a message instead of hanging the suite.
/// `CHAOS_TEST_TIMEOUT` (seconds) overrides it.
pub fn timeout_secs() -> u64 {
    std::env::var("CHAOS_TEST_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(600)
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cargo-chaos")
}

/// A fresh temporary directory for one test.
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chaos-threads-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The machine's parallelism as this test process sees it.
pub fn machine_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .expect("available_parallelism in the test process")
}

/// Builds `tests/fixtures/c/NAME.c` with `cc -O1 -pthread` (or `$CC`) into the tests'
/// temporary directory, once per process and source content: the executable's name
/// carries a hash of the source, so processes running at once share it and an edited
/// source gets a new build.
pub fn c_fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = workspace_root()
        .join("tests")
        .join("fixtures")
        .join("c")
        .join(format!("{name}.c"));
    let source =
        std::fs::read(&src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
    let cc = std::env::var_os("CC")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cc".into());
    let flags = ["-O1", "-pthread"];
    let mut key = source.clone();
    key.extend_from_slice(cc.as_encoded_bytes());
    key.extend_from_slice(flags.join(" ").as_bytes());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("threads-fixtures");
    std::fs::create_dir_all(&dir).expect("create the fixture directory");
    let out = dir.join(format!("{name}-{:016x}", fnv1a(&key)));
    if !out.is_file() {
        let tmp = dir.join(format!(".{name}.{}.building", std::process::id()));
        let result = Command::new(&cc)
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e} (install gcc)"));
        assert!(
            result.status.success(),
            "`{} {} -o {} {}` failed ({}):\n{}{}",
            cc.to_string_lossy(),
            flags.join(" "),
            tmp.display(),
            src.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::rename(&tmp, &out).expect("move the built fixture in place");
    }
    built.insert(name.to_string(), out.clone());
    out
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a run showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// For assertion messages.
    pub fn show(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

/// `cargo-chaos ARGS...` under `timeout` (a safety net against hangs).
pub fn chaos() -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=10")
        .arg(timeout_secs().to_string())
        .arg(bin())
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion; fails the test if `timeout` had to stop it or it died of
/// a signal.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let Some(status) = out.status.code() else {
        panic!(
            "{cmd:?} died of a signal ({:?})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let run = Run {
        status,
        stdout: out.stdout,
        stderr: out.stderr,
    };
    assert!(
        run.status != 124 && run.status != 137,
        "HANG: {cmd:?} did not finish within {} s and was killed by `timeout`\n{}",
        timeout_secs(),
        run.show()
    );
    run
}

/// A recording: its trace and what the program showed while it was recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub trace: PathBuf,
    /// Status, stdout and stderr of the program (without the recorder's own line).
    pub program: Run,
}

/// The environment of a recorded program: libtest's defaults (no variable that changes
/// the number of test threads or the capture), and RUST_BACKTRACE=1.
fn program_env(cmd: &mut Command) {
    for var in [
        "RUST_TEST_THREADS",
        "RUST_TEST_NOCAPTURE",
        "RUST_TEST_SHUFFLE",
        "RUST_TEST_SHUFFLE_SEED",
        "RUST_TEST_TIME_UNIT",
        "RUST_TEST_TIME_INTEGRATION",
        "RUST_TEST_TIME_DOCTEST",
        "RUST_LIB_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "1");
}

/// `cargo-chaos record --trace-dir TRACE -- PROGRAM ARGS...`; the recorder itself must
/// succeed (its line `chaos: trace written to TRACE` ends stderr and is removed).
pub fn record(program: &Path, args: &[&str], trace: &Path) -> Recording {
    let mut cmd = chaos();
    cmd.arg("record")
        .arg("--trace-dir")
        .arg(trace)
        .arg("--")
        .arg(program)
        .args(args);
    program_env(&mut cmd);
    let raw = run(&mut cmd);
    let line = format!("chaos: trace written to {}\n", trace.display());
    let Some(stderr) = raw.stderr.strip_suffix(line.as_bytes()) else {
        panic!(
            "recording {} did not end with `{}` on stderr: the recorder failed\n{}",
            program.display(),
            line.trim_end(),
            raw.show()
        );
    };
    Recording {
        trace: trace.to_path_buf(),
        program: Run {
            status: raw.status,
            stdout: raw.stdout.clone(),
            stderr: stderr.to_vec(),
        },
    }
}

/// `cargo-chaos replay TRACE`.
pub fn replay(trace: &Path) -> Run {
    run(chaos().arg("replay").arg(trace))
}

/// The replay showed exactly what the recording showed: stdout, stderr, status.
#[track_caller]
pub fn assert_same(what: &str, recorded: &Run, replayed: &Run) {
    let mut problems = String::new();
    if recorded.status != replayed.status {
        problems.push_str(&format!(
            "exit status: recorded {}, replayed {}\n",
            recorded.status, replayed.status
        ));
    }
    let out = text_diff(&recorded.stdout, &replayed.stdout);
    if !out.is_empty() {
        problems.push_str(&format!(
            "stdout differs (- recorded, + replayed):\n{out}\n"
        ));
    }
    let err = text_diff(&recorded.stderr, &replayed.stderr);
    if !err.is_empty() {
        problems.push_str(&format!(
            "stderr differs (- recorded, + replayed):\n{err}\n"
        ));
    }
    assert!(
        problems.is_empty(),
        "the replay of {what} differs from its recording:\n{problems}\n=== recorded ===\n{}\n=== replayed ===\n{}",
        recorded.show(),
        replayed.show()
    );
}

/// Records `program args` into `trace`, replays it and asserts that the replay showed
/// the same; returns the recording.
#[track_caller]
pub fn record_and_replay(what: &str, program: &Path, args: &[&str], trace: &Path) -> Recording {
    let rec = record(program, args, trace);
    assert_ne!(
        rec.program.status,
        FAILED,
        "recording {what} failed\n{}",
        rec.program.show()
    );
    let replayed = replay(trace);
    assert_same(what, &rec.program, &replayed);
    rec
}

/// All events of a trace.
pub fn read_events(trace: &Path) -> Vec<Event> {
    let dir = TraceDir::open(trace)
        .unwrap_or_else(|e| panic!("cannot open trace {}: {e}", trace.display()));
    let mut reader: EventReader = dir
        .events()
        .unwrap_or_else(|e| panic!("cannot read the events of {}: {e}", trace.display()));
    let mut events = Vec::new();
    while let Some(ev) = reader
        .next_event()
        .unwrap_or_else(|e| panic!("cannot read the events of {}: {e}", trace.display()))
    {
        events.push(ev);
    }
    assert!(
        reader.truncated.is_none(),
        "the events of {} are damaged: {:?}",
        trace.display(),
        reader.truncated
    );
    events
}

/// Rewrites the trace's `events` file with `events`.
pub fn write_events(trace: &Path, events: &[Event]) {
    let path = trace.join("events");
    let mut w = EventWriter::create(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    for ev in events {
        w.push(ev)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    w.flush()
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The syscall events with their event numbers.
pub fn syscalls(events: &[Event]) -> impl Iterator<Item = (u64, &SyscallEvent)> {
    events.iter().enumerate().filter_map(|(i, e)| match e {
        Event::Syscall(s) => Some((i as u64, s)),
        _ => None,
    })
}

/// The event number in `replay diverged at event N`, if the text has one.
pub fn divergence_event(text: &str) -> Option<u64> {
    let rest = &text[text.find("diverged at event ")? + "diverged at event ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The line of `out` that contains `needle`.
#[track_caller]
pub fn line_with(out: &[u8], needle: &str) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no line with `{needle}` in:\n{}",
                String::from_utf8_lossy(out)
            )
        })
        .to_string()
}
