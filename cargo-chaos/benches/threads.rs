//! Recorder speed on multi-threaded programs (issue 3), in one invocation. Programs:
//!
//! - a channel ping-pong between two threads, 20,000 round trips (`pingpong` from the
//!   fixture crate `tests/fixtures/rust-suite`);
//! - the fixture crate's threaded libtest suite (`std_threads`);
//! - its tokio multi-thread runtime suite on loopback TCP (`tokio_net`).
//!
//! Each runs natively pinned to one core (`taskset -c N`), under
//! `strace -f -qq -o /dev/null` pinned to the same core, recorded
//! (`cargo-chaos record`, pinned) and replayed (`cargo-chaos replay --quiet`, pinned).
//! Every figure is the median wall time of `CHAOS_BENCH_RUNS` runs (default 9) after
//! one unmeasured warm-up run; each recording is replayed once (a replay that fails is
//! left out of the median, counted in the table and quoted in a note). The test suites
//! get `--test-threads=P` with P the machine's parallelism in every mode, so that the
//! pinned native run (which sees one CPU) runs as many tests at once as the recording
//! (which is shown the machine's CPUs).
//!
//! Prints a markdown table and writes it into `docs/benchmarks.md` under
//! "## Recorder (threads)" (that section is replaced, the others kept; the file is read
//! again right before it is written, as other benchmarks write their own sections).
//!
//! Run with `cargo bench -p cargo-chaos --bench threads`.

#[path = "../tests/threads/suite.rs"]
mod suite;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECTION: &str = "## Recorder (threads)";
const ROUND_TRIPS: u32 = 20_000;
/// Targets from issue 3.
const RECORD_OVER_STRACE_TARGET: f64 = 1.2;

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let runs: usize = std::env::var("CHAOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(9);
    let cpu = bench_cpu();
    let parallelism = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let strace = find_in_path("strace");
    if strace.is_none() {
        eprintln!(
            "bench: strace is not installed (apt-get install -y strace); its column stays empty"
        );
    }
    eprintln!("bench: building the fixture crate");
    let suite = suite::suite();
    let work = tempfile::Builder::new()
        .prefix("chaos-bench-threads-")
        .tempdir()
        .expect("create a temporary directory");
    let bench = Bench {
        cpu,
        runs,
        work: work.path().to_path_buf(),
        strace,
        notes: RefCell::new(Vec::new()),
    };
    eprintln!("bench: pinned to cpu {cpu}, median of {runs} runs");

    let threads_arg = format!("--test-threads={parallelism}");
    let programs: Vec<(String, PathBuf, Vec<String>)> = vec![
        (
            format!("channel ping-pong, {ROUND_TRIPS} round trips (`pingpong`)"),
            suite.bin("pingpong").to_path_buf(),
            vec![ROUND_TRIPS.to_string()],
        ),
        (
            "threaded libtest suite (`std_threads`, 7 tests)".to_string(),
            suite.test("std_threads").to_path_buf(),
            vec![threads_arg.clone()],
        ),
        (
            "tokio multi-thread suite on loopback TCP (`tokio_net`, 4 tests)".to_string(),
            suite.test("tokio_net").to_path_buf(),
            vec![threads_arg],
        ),
    ];
    let rows: Vec<Row> = programs
        .iter()
        .enumerate()
        .map(|(i, (what, exe, args))| bench.measure(i, what, exe, args))
        .collect();

    let table = render(&rows, runs, cpu, parallelism, &bench.notes.borrow());
    println!("{table}");
    let doc = suite::workspace_root().join("docs").join("benchmarks.md");
    match replace_section(&doc, &table) {
        Ok(()) => eprintln!("bench: written to {}", doc.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", doc.display()),
    }
}

/// A median wall time, or why there is none.
type Figure = Result<Duration, String>;

struct Row {
    what: String,
    native: Figure,
    strace: Figure,
    record: Figure,
    replay: Figure,
    /// Replays that failed (not in the median).
    replay_failures: usize,
}

struct Bench {
    cpu: usize,
    runs: usize,
    work: PathBuf,
    strace: Option<PathBuf>,
    /// Why runs failed, in full, for the notes under the table.
    notes: RefCell<Vec<String>>,
}

impl Bench {
    /// `taskset -c CPU`, output discarded, libtest's settings from our environment
    /// removed.
    fn pinned(&self) -> Command {
        let mut c = Command::new("taskset");
        c.arg("-c")
            .arg(self.cpu.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_TEST_THREADS")
            .env_remove("RUST_TEST_NOCAPTURE")
            .env_remove("RUST_BACKTRACE");
        c
    }

    fn measure(&self, index: usize, what: &str, exe: &Path, args: &[String]) -> Row {
        eprintln!("bench: {what}");
        let native = self.median("native", || {
            let mut c = self.pinned();
            c.arg(exe).args(args);
            c
        });
        let strace = match &self.strace {
            Some(strace) => self.median("strace", || {
                let mut c = self.pinned();
                c.arg(strace)
                    .args(["-f", "-qq", "-o", "/dev/null"])
                    .arg(exe)
                    .args(args);
                c
            }),
            None => Err("strace is not installed".to_string()),
        };
        let traces = self.work.join(format!("program-{index}"));
        let mut recorded = Vec::new();
        let record = self.median("record", || {
            let trace = traces.join(format!("trace-{}", recorded.len()));
            recorded.push(trace.clone());
            let mut c = self.pinned();
            c.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
                .arg("record")
                .arg("--trace-dir")
                .arg(&trace)
                .arg("--")
                .arg(exe)
                .args(args);
            c
        });
        let (replay, replay_failures) = match &record {
            Ok(_) => self.replay_each(&recorded),
            Err(_) => (Err("no recording".to_string()), 0),
        };
        let _ = std::fs::remove_dir_all(&traces);
        Row {
            what: what.to_string(),
            native,
            strace,
            record,
            replay,
            replay_failures,
        }
    }

    /// Replays each recording once (the first unmeasured, as a warm-up): the median of
    /// the replays that succeeded, and how many did not (each gets a note).
    fn replay_each(&self, traces: &[PathBuf]) -> (Figure, usize) {
        let mut times = Vec::new();
        let mut failures = 0;
        let mut last_note = 0;
        for (i, trace) in traces.iter().enumerate() {
            let mut cmd = self.pinned();
            cmd.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
                .arg("replay")
                .arg("--quiet")
                .arg(trace);
            let (took, out) = match timed(&mut cmd) {
                Ok(r) => r,
                Err(e) => return (Err(format!("cannot run {cmd:?}: {e}")), failures),
            };
            if !out.status.success() {
                failures += 1;
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                eprintln!(
                    "bench:   replay of recording {i} failed ({}): {err}",
                    out.status
                );
                let mut notes = self.notes.borrow_mut();
                notes.push(format!(
                    "replay of recording {i} failed ({}): {}",
                    out.status,
                    last.trim()
                ));
                last_note = notes.len();
                continue;
            }
            if i > 0 {
                times.push(took);
            }
        }
        if times.is_empty() {
            return (
                Err(format!("every replay failed, see note {last_note}")),
                failures,
            );
        }
        times.sort();
        let median = times[times.len() / 2];
        eprintln!("bench:   replay: {:.1} ms ({failures} failed)", ms(median));
        (Ok(median), failures)
    }

    /// One unmeasured warm-up run, then the median of `runs` runs. Every run must exit 0.
    fn median(&self, mode: &str, mut command: impl FnMut() -> Command) -> Figure {
        let mut times = Vec::with_capacity(self.runs);
        for i in 0..=self.runs {
            let mut cmd = command();
            let (took, out) = timed(&mut cmd).map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                eprintln!("bench:   {mode}: {cmd:?} failed ({}): {err}", out.status);
                let mut notes = self.notes.borrow_mut();
                notes.push(format!(
                    "{mode} run {i} failed ({}): {}",
                    out.status,
                    last.trim()
                ));
                return Err(format!("{mode} failed, see note {}", notes.len()));
            }
            if i > 0 {
                times.push(took);
            }
        }
        times.sort();
        let median = times[times.len() / 2];
        eprintln!("bench:   {mode}: {:.1} ms", ms(median));
        Ok(median)
    }
}

/// A safety net against a hung run (never a statement about speed): it is killed after
/// this long and counts as failed.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `cmd` to completion and measures its wall time. A watchdog thread kills it if it
/// runs past [`RUN_LIMIT`]; it costs the measured run nothing.
fn timed(cmd: &mut Command) -> std::io::Result<(Duration, Output)> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(RUN_LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("bench:   pid {pid} ran past {RUN_LIMIT:?}: killing it");
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    });
    let out = child.wait_with_output();
    let took = start.elapsed();
    let _ = done.send(());
    let _ = watchdog.join();
    Ok((took, out?))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cell(f: &Figure) -> String {
    match f {
        Ok(d) => format!("{:.1}", ms(*d)),
        Err(e) => format!("n/a ({e})"),
    }
}

fn ratio(a: &Figure, b: &Figure) -> Option<f64> {
    match (a, b) {
        (Ok(a), Ok(b)) if !b.is_zero() => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×"))
        .unwrap_or_else(|| "n/a".into())
}

fn render(rows: &[Row], runs: usize, cpu: usize, parallelism: usize, notes: &[String]) -> String {
    let mut s = String::new();
    s.push_str(SECTION);
    s.push_str("\n\n");
    s.push_str(&format!(
        "`cargo bench -p cargo-chaos --bench threads`: median wall time of {runs} runs (after one \
         warm-up run; each recording replayed once), everything pinned to cpu {cpu} with `taskset`; {parallelism} CPUs, {}. \
         Programs from `tests/fixtures/rust-suite` (dev profile, as `cargo test` builds them); \
         the test suites run with `--test-threads={parallelism}` in every mode. strace is \
         `strace -f -qq -o /dev/null`. Targets (issue 3): record ≤ {RECORD_OVER_STRACE_TARGET}× \
         strace, replay faster than record.\n\n",
        cpu_model()
    ));
    s.push_str(
        "| program | native (ms) | strace (ms) | record (ms) | replay (ms) | record/native | record/strace | replay/record |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.what,
            cell(&r.native),
            cell(&r.strace),
            cell(&r.record),
            match (r.replay_failures, &r.replay) {
                (0, _) | (_, Err(_)) => cell(&r.replay),
                (k, Ok(_)) => format!("{} ({k} failed)", cell(&r.replay)),
            },
            ratio_cell(ratio(&r.record, &r.native)),
            ratio_cell(ratio(&r.record, &r.strace)),
            ratio_cell(ratio(&r.replay, &r.record)),
        ));
    }
    s.push('\n');
    let mut verdicts = Vec::new();
    for r in rows {
        let short = r.what.split(" (").next().unwrap_or(&r.what);
        let strace = match ratio(&r.record, &r.strace) {
            Some(x) if x <= RECORD_OVER_STRACE_TARGET => format!("record/strace {x:.2}× meets"),
            Some(x) => format!("record/strace {x:.2}× misses"),
            None => "record/strace not measured".to_string(),
        };
        let replay = match ratio(&r.replay, &r.record) {
            Some(x) if x < 1.0 => "replay is faster than record".to_string(),
            Some(_) => "replay is NOT faster than record".to_string(),
            None => "replay not measured".to_string(),
        };
        verdicts.push(format!(
            "- {short}: {strace} the ≤ {RECORD_OVER_STRACE_TARGET}× target; {replay}.\n"
        ));
    }
    for v in verdicts {
        s.push_str(&v);
    }
    if !notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for (i, n) in notes.iter().enumerate() {
            s.push_str(&format!("{}. {}\n", i + 1, n.replace('|', "/")));
        }
    }
    s
}

/// Replaces the section in `doc` (from its heading to the next `#`/`##` heading), or
/// appends it; keeps everything else. Reads the file right before writing it.
fn replace_section(doc: &Path, section: &str) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_string(),
        Err(e) => return Err(e),
    };
    let is_heading = |l: &str| l.starts_with("# ") || l.starts_with("## ");
    let lines: Vec<&str> = old.lines().collect();
    let section = section.trim_end();
    let mut out: Vec<String> = Vec::new();
    match lines.iter().position(|l| l.trim_end() == SECTION) {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| is_heading(l))
                .map(|p| start + 1 + p)
                .unwrap_or(lines.len());
            out.extend(lines[..start].iter().map(|l| l.to_string()));
            out.push(section.to_string());
            if end < lines.len() {
                out.push(String::new());
                out.extend(lines[end..].iter().map(|l| l.to_string()));
            }
        }
        None => {
            out.extend(lines.iter().map(|l| l.to_string()));
            while out.last().is_some_and(|l| l.trim().is_empty()) {
                out.pop();
            }
            out.push(String::new());
            out.push(section.to_string());
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    if let Some(dir) = doc.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write beside and rename, so a reader never sees half a file.
    let tmp = doc.with_extension(format!("md.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, doc)
}

/// The core to pin to: the last one this process may run on.
fn bench_cpu() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| l.trim().to_string())
        })
        .and_then(|list| {
            list.split(',')
                .filter_map(|part| part.rsplit('-').next()?.trim().parse::<usize>().ok())
                .max()
        })
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
