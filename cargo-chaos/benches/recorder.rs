//! Recorder speed against native runs, in one invocation, everything pinned to one core:
//!
//! - (a) a CPU-bound loop of at least one second with no syscalls: native, record, replay;
//! - (b) 100,000 getppid calls: native, `strace -f -qq -o /dev/null`, record, replay;
//! - (c) a program mixing file IO and time calls: native, record, replay.
//!
//! Each figure is the median wall time of several runs (`CHAOS_BENCH_RUNS`, default 5).
//! Prints a markdown table and writes it into `docs/benchmarks.md` under
//! "## Recorder (single-threaded)" (that section is replaced; the others are kept).
//!
//! Run with `cargo bench -p cargo-chaos --bench recorder`. strace comes from
//! `apt-get install -y strace`; without it column (b)/strace says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "## Recorder (single-threaded)";
const SYSCALLS: u64 = 100_000;
const MIXED_ROUNDS: u64 = 20_000;
/// The CPU loop is sized to run at least this long natively.
const CPU_LOOP_TARGET: Duration = Duration::from_millis(1300);

#[path = "support/mod.rs"]
mod support;

use support::Figure;

fn main() {
    let runs: usize = std::env::var("CHAOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cpu = support::bench_cpu();
    let bench = Bench {
        cpu,
        runs,
        work: tempfile::Builder::new()
            .prefix("chaos-bench-")
            .tempdir()
            .expect("create a temporary directory"),
        strace: support::find_in_path("strace"),
    };
    eprintln!("bench: pinned to cpu {cpu}, median of {runs} runs");

    let cpu_loop = test_support::fixture::fixture(base, "cpu_loop");
    let many = test_support::fixture::fixture(base, "many_syscalls");
    let mixed = test_support::fixture::fixture(base, "mixed");

    // (a) Size the loop so that the native run takes at least CPU_LOOP_TARGET.
    let probe = 200_000_000u64;
    let probe_time = bench
        .time_once(bench.native(&cpu_loop, &[probe.to_string()]))
        .expect("the CPU loop runs natively");
    let iterations = ((probe as f64) * CPU_LOOP_TARGET.as_secs_f64()
        / probe_time.as_secs_f64().max(1e-3))
    .ceil() as u64;
    let iterations = iterations.max(probe);

    let mut rows = Vec::new();
    rows.push(bench.scenario(
        "a",
        format!("CPU loop, {iterations} iterations, no syscalls"),
        &cpu_loop,
        &[iterations.to_string()],
        false,
    ));
    rows.push(bench.scenario(
        "b",
        format!("{SYSCALLS} getppid syscalls"),
        &many,
        &[SYSCALLS.to_string()],
        true,
    ));
    rows.push(bench.scenario(
        "c",
        format!("file IO + time calls, {MIXED_ROUNDS} rounds"),
        &mixed,
        &[MIXED_ROUNDS.to_string()],
        false,
    ));

    let table = render(&rows, runs, cpu, bench.strace.is_some());
    support::publish(SECTION, &table);
}

struct Bench {
    cpu: usize,
    runs: usize,
    work: tempfile::TempDir,
    strace: Option<PathBuf>,
}

struct Row {
    id: &'static str,
    what: String,
    native: Figure,
    strace: Option<Figure>,
    record: Figure,
    replay: Figure,
}

impl Bench {
    fn taskset(&self) -> Command {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(self.cpu.to_string());
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn native(&self, program: &Path, args: &[String]) -> Command {
        let mut c = self.taskset();
        c.arg(program).args(args);
        c
    }

    fn scenario(
        &self,
        id: &'static str,
        what: String,
        program: &Path,
        args: &[String],
        with_strace: bool,
    ) -> Row {
        eprintln!("bench: ({id}) {what}");
        let native = self.median(|| self.native(program, args));
        let strace = with_strace.then(|| match &self.strace {
            Some(strace) => self.median(|| {
                let mut c = self.taskset();
                c.arg(strace)
                    .args(["-f", "-qq", "-o", "/dev/null"])
                    .arg(program)
                    .args(args);
                c
            }),
            None => Err("strace not installed (apt-get install -y strace)".into()),
        });
        let trace = self.work.path().join(format!("trace-{id}"));
        let record = self.median(|| {
            let _ = std::fs::remove_dir_all(&trace);
            let mut c = self.taskset();
            c.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
                .arg("record")
                .arg("--trace-dir")
                .arg(&trace)
                .arg("--")
                .arg(program)
                .args(args);
            c
        });
        let replay = match &record {
            Ok(_) => self.median(|| {
                let mut c = self.taskset();
                c.arg(env!("CARGO_BIN_EXE_cargo-chaos"))
                    .arg("replay")
                    .arg("--quiet")
                    .arg(&trace);
                c
            }),
            Err(_) => Err("no recording".into()),
        };
        let _ = std::fs::remove_dir_all(&trace);
        Row {
            id,
            what,
            native,
            strace,
            record,
            replay,
        }
    }

    /// The median wall time of `self.runs` runs of the command `make` builds.
    fn median(&self, mut make: impl FnMut() -> Command) -> Figure {
        let mut times = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            times.push(self.time_once(make())?);
        }
        times.sort();
        Ok(times[times.len() / 2])
    }

    fn time_once(&self, mut c: Command) -> Figure {
        let start = Instant::now();
        let out = c.output().map_err(|e| format!("cannot run: {e}"))?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").to_string();
            eprintln!("bench: {:?} failed ({}): {err}", c, out.status);
            return Err(format!("failed ({}): {last}", out.status));
        }
        Ok(elapsed)
    }
}

fn ms(f: &Figure) -> String {
    match f {
        Ok(d) => format!("{:.1}", d.as_secs_f64() * 1e3),
        Err(e) => format!("n/a ({e})"),
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

fn render(rows: &[Row], runs: usize, cpu: usize, have_strace: bool) -> String {
    let mut s = String::new();
    s.push_str(&format!("{SECTION}\n\n"));
    s.push_str(&format!(
        "Measured by `cargo bench -p cargo-chaos --bench recorder` on {}: {} ({} CPUs), Linux {}. \
         Wall time in ms, median of {runs} runs; every command pinned to CPU {cpu} with `taskset`. \
         Record and replay are `cargo chaos record` / `cargo chaos replay --quiet`, whole process \
         (start-up and trace writing included).\n\n",
        today(),
        support::cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
    ));
    s.push_str("| scenario | native | strace | record | replay | record/native | record/strace | replay/record |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| ({}) {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.id,
            r.what,
            ms(&r.native),
            r.strace.as_ref().map(ms).unwrap_or_else(|| "–".into()),
            ms(&r.record),
            ms(&r.replay),
            show_ratio(support::ratio(&r.record, &r.native)),
            show_ratio(
                r.strace
                    .as_ref()
                    .and_then(|st| support::ratio(&r.record, st))
            ),
            show_ratio(support::ratio(&r.replay, &r.record)),
        ));
    }
    s.push('\n');
    if let Some(b) = rows.iter().find(|r| r.id == "b") {
        let per_call = |f: &Figure| match (f, &b.native) {
            (Ok(x), Ok(n)) => format!(
                "{:.2} µs",
                (x.as_secs_f64() - n.as_secs_f64()) * 1e6 / SYSCALLS as f64
            ),
            _ => "n/a".into(),
        };
        s.push_str(&format!(
            "Per syscall in (b), over native: record {}, replay {}{}.\n\n",
            per_call(&b.record),
            per_call(&b.replay),
            match &b.strace {
                Some(st) if have_strace => format!(", strace {}", per_call(st)),
                _ => String::new(),
            }
        ));
    }
    let a = rows.iter().find(|r| r.id == "a");
    let b = rows.iter().find(|r| r.id == "b");
    let c = rows.iter().find(|r| r.id == "c");
    s.push_str("Targets (issue 2):\n\n");
    s.push_str(&format!(
        "- (a) record ≤ 1.05× native: {}\n",
        verdict(
            a.and_then(|a| support::ratio(&a.record, &a.native))
                .map(|r| r <= 1.05)
        )
    ));
    s.push_str(&format!(
        "- (b) record ≤ 1.2× strace: {}\n",
        verdict(
            b.and_then(|b| b
                .strace
                .as_ref()
                .and_then(|st| support::ratio(&b.record, st)))
                .map(|r| r <= 1.2)
        )
    ));
    s.push_str(&format!(
        "- (b) replay faster than record: {}\n",
        verdict(
            b.and_then(|b| support::ratio(&b.replay, &b.record))
                .map(|r| r < 1.0)
        )
    ));
    s.push_str(&format!(
        "- (c) replay faster than record: {}\n",
        verdict(
            c.and_then(|c| support::ratio(&c.replay, &c.record))
                .map(|r| r < 1.0)
        )
    ));
    s
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
