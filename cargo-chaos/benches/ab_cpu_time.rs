//! A/B speed of two cargo-chaos binaries (e.g. a branch against its base), in one
//! invocation: record and replay of the C fixtures below, rounds interleaved (the order
//! of A and B alternates every round), CPU time (user + sys of the tool and the program,
//! from `RUSAGE_CHILDREN`; less noisy than wall time on a shared machine) and wall time.
//! Prints a markdown table: medians per binary and the median of the per-round ratios
//! B/A.
//!
//! ```text
//! cargo bench -p cargo-chaos --bench ab_cpu_time -- --a BASE/cargo-chaos \
//!     [--b NEW/cargo-chaos] [--rounds 7]
//! ```
//!
//! `--b` defaults to the cargo-chaos built for this bench. The fixtures are built by
//! test-support (`cc -O1 -g -pthread`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to compare (`--help` lists it).
#[derive(clap::Parser)]
#[command(
    name = "ab_cpu_time",
    about = "A/B CPU time of record and replay (see the source's header)"
)]
struct Config {
    /// The baseline cargo-chaos binary.
    #[arg(long)]
    a: PathBuf,
    /// The new cargo-chaos binary (default: the one built for this bench).
    #[arg(long)]
    b: Option<PathBuf>,
    /// Measured rounds (after one warm-up round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The programs: fixture, its arguments, what it does.
const WORK: [(&str, &[&str], &str); 4] = [
    ("many_syscalls", &["100000"], "100,000 getppid calls"),
    ("mixed", &["20000"], "file IO and time calls, 20,000 rounds"),
    ("threads_pipe", &[], "two threads, a blocked read on a pipe"),
    (
        "breakpoint_target",
        &[],
        "short program (startup, exec capture)",
    ),
];

/// One run's cost: CPU time (user + sys of every waited-for descendant) and wall time.
#[derive(Clone, Copy)]
struct Cost {
    cpu: Duration,
    wall: Duration,
}

/// User + sys time of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `cmd` to completion; it must succeed.
fn cost(cmd: &mut Command) -> Cost {
    let before = children_cpu();
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Cost {
        cpu: children_cpu().saturating_sub(before),
        wall,
    }
}

/// Which of a [`Cost`]'s figures.
type Measure = fn(&Cost) -> Duration;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let cfg = <Config as clap::Parser>::parse();
    let b = cfg
        .b
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cargo-chaos")));
    let bins: [(&str, &Path); 2] = [("A", &cfg.a), ("B", &b)];
    let work = tempfile::Builder::new()
        .prefix("chaos-ab-")
        .tempdir()
        .expect("create a temporary directory");
    let exes: Vec<PathBuf> = WORK
        .iter()
        .map(|(name, _, _)| test_support::fixture!(name))
        .collect();
    // samples[program][phase][binary]: one cost per measured round.
    let mut samples = vec![[[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]]; WORK.len()];
    for round in 0..=cfg.rounds {
        // Round 0 is a warm-up, not counted.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for (p, ((name, args, _), exe)) in WORK.iter().zip(&exes).enumerate() {
            for &which in &order {
                let (label, bin) = bins[which];
                let trace = work.path().join(format!("trace-{label}-{name}-{round}"));
                let rec = cost(
                    Command::new(bin)
                        .arg("record")
                        .arg("--trace-dir")
                        .arg(&trace)
                        .arg("--")
                        .arg(exe)
                        .args(*args),
                );
                let rep = cost(Command::new(bin).args(["replay", "--quiet"]).arg(&trace));
                let _ = std::fs::remove_dir_all(&trace);
                if round > 0 {
                    samples[p][0][which].push(rec);
                    samples[p][1][which].push(rep);
                }
            }
        }
    }
    println!(
        "{} rounds (after one warm-up), A/B order alternating; CPU = user+sys of the tool \
         and the program; ratios are medians of per-round B/A.\n",
        cfg.rounds
    );
    println!(
        "| program | phase | A cpu (ms) | B cpu (ms) | B/A cpu | A wall (ms) | B wall (ms) | B/A wall |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (p, (name, _, what)) in WORK.iter().enumerate() {
        for (phase, label) in ["record", "replay"].iter().enumerate() {
            let [a, b] = &samples[p][phase];
            let ratio = |f: Measure| {
                median(
                    a.iter()
                        .zip(b)
                        .filter(|(x, _)| !f(x).is_zero())
                        .map(|(x, y)| f(y).as_secs_f64() / f(x).as_secs_f64())
                        .collect(),
                )
            };
            let med =
                |s: &[Cost], f: fn(&Cost) -> Duration| median(s.iter().map(|c| ms(f(c))).collect());
            let cpu: Measure = |c| c.cpu;
            let wall: Measure = |c| c.wall;
            println!(
                "| {what} (`{name}`) | {label} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.3} |",
                med(a, cpu),
                med(b, cpu),
                ratio(cpu),
                med(a, wall),
                med(b, wall),
                ratio(wall)
            );
        }
    }
}
