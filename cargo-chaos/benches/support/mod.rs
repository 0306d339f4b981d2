//! What the recorder benchmarks share: pinned, timed runs of a program natively, under
//! strace, recorded and replayed; medians; markdown cells; and writing a section of
//! `docs/benchmarks.md`. Included by the bench targets with `#[path]`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many measured runs a figure is the median of: `CHAOS_BENCH_RUNS`, or `default`.
pub fn runs_per_figure(default: usize) -> usize {
    std::env::var("CHAOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// A whole number from the environment variable `name` (above 0), or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The median of some durations (the upper one of an even count).
pub fn median_of(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `cargo record-test --manifest-path MANIFEST --target-dir TARGET --until-fail --jobs 1
/// --message-format json`, stdin from /dev/null and no `LD_LIBRARY_PATH` (the caller adds
/// the rest).
pub fn hunt_command(manifest: &Path, target: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-record-test"));
    cmd.arg("record-test")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .args(["--until-fail", "--jobs", "1", "--message-format", "json"])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null());
    cmd
}

/// A median wall time, or why there is none.
pub type Figure = Result<Duration, String>;

pub struct Row {
    pub what: String,
    pub native: Figure,
    pub strace: Figure,
    pub record: Figure,
    pub replay: Figure,
    /// Replays that failed (not in the median).
    pub replay_failures: usize,
}

/// What `cargo chaos replay --stats` says about the preemption-point search.
#[derive(Default)]
pub struct SearchStats {
    /// Preemption points found.
    pub points: u64,
    /// Breakpoint or trampoline traps taken to find them.
    pub traps: u64,
    /// Time spent searching.
    pub search_ms: f64,
    /// Tick requests of the recording (`result.json`): preemption points of instrumented
    /// code.
    pub tick_requests: u64,
}

pub struct Bench {
    pub cpu: usize,
    pub runs: usize,
    pub work: PathBuf,
    pub strace: Option<PathBuf>,
    /// Why runs failed, in full, for the notes under the table.
    pub notes: RefCell<Vec<String>>,
}

impl Bench {
    /// `taskset -c CPU`, output discarded, libtest's settings from our environment
    /// removed.
    pub fn pinned(&self) -> Command {
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

    /// `cargo chaos record --trace-dir TRACE -- EXE ARGS`, pinned.
    pub fn record(&self, trace: &Path, exe: &Path, args: &[String]) -> Command {
        let mut c = self.pinned();
        c.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
            .arg("record")
            .arg("--trace-dir")
            .arg(trace)
            .arg("--")
            .arg(exe)
            .args(args);
        c
    }

    /// Records the program once more and replays it with `--stats`: the replay's search
    /// figures and the recording's tick requests (all zero when either run could not be
    /// started).
    pub fn search_stats(&self, index: usize, exe: &Path, args: &[String]) -> SearchStats {
        let trace = self.work.join(format!("stats-{index}"));
        let mut rec = self.record(&trace, exe, args);
        let mut rep = self.pinned();
        rep.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
            .args(["replay", "--stats"])
            .arg(&trace);
        let (Ok(_), Ok(out)) = (rec.output(), rep.output()) else {
            let _ = std::fs::remove_dir_all(&trace);
            return SearchStats::default();
        };
        let result: serde_json::Value = std::fs::read(trace.join("result.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&trace);
        // "chaos: N events, P preemption points found with T breakpoint hits in X ms"
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("preemption points"))
            .unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        SearchStats {
            points: num(3) as u64,
            traps: num(8) as u64,
            search_ms: num(12),
            tick_requests: result["tick_requests"].as_u64().unwrap_or(0),
        }
    }

    /// [`Bench::measure`] and [`Bench::search_stats`] of each program (what, executable,
    /// arguments), in order.
    pub fn measure_with_stats<'a>(
        &self,
        programs: impl IntoIterator<Item = (&'a str, &'a Path, &'a [String])>,
    ) -> Vec<(Row, SearchStats)> {
        programs
            .into_iter()
            .enumerate()
            .map(|(i, (what, exe, args))| {
                (
                    self.measure(i, what, exe, args),
                    self.search_stats(i, exe, args),
                )
            })
            .collect()
    }

    /// The notes under a table (failed runs), numbered; empty when there are none.
    pub fn notes_section(&self) -> String {
        notes_section(&self.notes.borrow())
    }

    pub fn measure(&self, index: usize, what: &str, exe: &Path, args: &[String]) -> Row {
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
            self.record(&trace, exe, args)
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
    pub fn replay_each(&self, traces: &[PathBuf]) -> (Figure, usize) {
        self.replay_each_with(traces, &[])
    }

    /// [`Bench::replay_each`] with `env` set for the replays.
    pub fn replay_each_with(&self, traces: &[PathBuf], env: &[(&str, &str)]) -> (Figure, usize) {
        let mut times = Vec::new();
        let mut failures = 0;
        let mut last_note = 0;
        for (i, trace) in traces.iter().enumerate() {
            let mut cmd = self.pinned();
            cmd.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
                .arg("replay")
                .arg("--quiet")
                .arg(trace)
                .envs(env.iter().copied());
            let (took, out) = match timed(&mut cmd) {
                Ok(r) => r,
                Err(e) => return (Err(format!("cannot run {cmd:?}: {e}")), failures),
            };
            if !out.status.success() {
                failures += 1;
                last_note = self.note_failure(&format!("replay of recording {i}"), &out);
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

    /// Reports a failed run on stderr in full and adds its last line to the notes under
    /// the table; returns the note's number.
    fn note_failure(&self, what: &str, out: &Output) -> usize {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        eprintln!("bench:   {what} failed ({}): {err}", out.status);
        let mut notes = self.notes.borrow_mut();
        notes.push(format!("{what} failed ({}): {}", out.status, last.trim()));
        notes.len()
    }

    /// One unmeasured warm-up run, then the median of `runs` runs. Every run must exit 0.
    pub fn median(&self, mode: &str, mut command: impl FnMut() -> Command) -> Figure {
        let mut times = Vec::with_capacity(self.runs);
        for i in 0..=self.runs {
            let mut cmd = command();
            let (took, out) = timed(&mut cmd).map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            if !out.status.success() {
                let note = self.note_failure(&format!("{mode} run {i} ({cmd:?})"), &out);
                return Err(format!("{mode} failed, see note {note}"));
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
pub fn timed(cmd: &mut Command) -> std::io::Result<(Duration, Output)> {
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

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn cell(f: &Figure) -> String {
    match f {
        Ok(d) => format!("{:.1}", ms(*d)),
        Err(e) => format!("n/a ({e})"),
    }
}

pub fn ratio(a: &Figure, b: &Figure) -> Option<f64> {
    match (a, b) {
        (Ok(a), Ok(b)) if !b.is_zero() => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

pub fn ratio_cell(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×"))
        .unwrap_or_else(|| "n/a".into())
}

/// Numbered notes under a table; empty when there are none.
pub fn notes_section(notes: &[String]) -> String {
    let mut s = String::new();
    if !notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for (i, n) in notes.iter().enumerate() {
            s.push_str(&format!("{}. {}\n", i + 1, n.replace('|', "/")));
        }
    }
    s
}

/// Prints `section` and puts it in place of its heading's section of
/// `docs/benchmarks.md` (reporting on stderr where it went).
pub fn publish(heading: &str, section: &str) {
    println!("{section}");
    let doc = test_support::workspace_root()
        .join("docs")
        .join("benchmarks.md");
    match replace_section(&doc, heading, section) {
        Ok(()) => eprintln!("bench: written to {}", doc.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", doc.display()),
    }
}

/// Replaces the section `heading` in `doc` (from its heading to the next `#`/`##` heading), or
/// appends it; keeps everything else. Reads the file right before writing it.
pub fn replace_section(doc: &Path, heading: &str, section: &str) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_string(),
        Err(e) => return Err(e),
    };
    let is_heading = |l: &str| l.starts_with("# ") || l.starts_with("## ");
    let lines: Vec<&str> = old.lines().collect();
    let section = section.trim_end();
    let mut out: Vec<String> = Vec::new();
    match lines.iter().position(|l| l.trim_end() == heading) {
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
pub fn bench_cpu() -> usize {
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

pub fn cpu_model() -> String {
    // Read where the recorder reads it for header.json (`recorder::host`).
    Some(recorder::host::cpu_model())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Builds the tests of the crate whose manifest is `manifest` into `target`
/// (`cargo test --no-run`) and returns the test executables cargo reports.
pub fn build_test_executables(manifest: &Path, target: &Path) -> Vec<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "test",
            "--no-run",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {} failed",
        manifest.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .collect()
}
