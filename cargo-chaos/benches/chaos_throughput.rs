//! Throughput of a hunt under chaos scheduling (issue 15): runs per minute of `cargo
//! record-test --until-fail --jobs 1` on never-failing tests, per scheduling mode, in
//! one invocation, against `--chaos off --no-instrument` (the scheduler before chaos
//! mode) as the baseline:
//!
//! - single-threaded: the example crate's `tests::always_passes` (`--per-test`);
//! - threaded: the Rust fixture suite's `std_threads` binary (seven tests on threads,
//!   channels, mutexes, condvars, scoped threads).
//!
//! Modes: `--chaos off --no-instrument`, `--no-instrument` (chaos alone), and the
//! default (chaos with `--instrument auto`: after 20 runs every other run uses the
//! instrumented build). Each figure is the median of `CHAOS_BENCH_RUNS` (default 3)
//! hunts of `CHAOS_THROUGHPUT_RUNS` runs (default 100), interleaved across modes, after
//! one warm-up hunt per mode (which builds the instrumented tests); the time is the
//! whole command's. Targets: chaos ≥ 0.9× the baseline single-threaded, ≥ 0.7×
//! threaded.
//!
//! Run with `cargo bench -p cargo-chaos --bench chaos_throughput` (`-- --write-docs`
//! replaces the "## Chaos scheduling: hunt throughput" section of docs/benchmarks.md).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

const SECTION: &str = "## Chaos scheduling: hunt throughput";

/// A mode: its name and its flags.
const MODES: &[(&str, &[&str])] = &[
    (
        "`--chaos off --no-instrument` (baseline)",
        &["--chaos", "off", "--no-instrument"],
    ),
    ("`--no-instrument` (chaos alone)", &["--no-instrument"]),
    ("default (chaos, `--instrument auto`)", &[]),
];

/// A never-failing test: its name, the manifest (from the workspace root) and the
/// selection flags.
struct Subject {
    what: &'static str,
    manifest: &'static str,
    select: &'static [&'static str],
    target: f64,
}

const SUBJECTS: &[Subject] = &[
    Subject {
        what: "single-threaded (`tests/example-crate`, `tests::always_passes`, `--per-test`)",
        manifest: "tests/example-crate/Cargo.toml",
        select: &["--per-test", "tests::always_passes"],
        target: 0.9,
    },
    Subject {
        what: "threaded (`tests/fixtures/rust-suite`, `--test std_threads`)",
        manifest: "tests/fixtures/rust-suite/Cargo.toml",
        select: &["--test", "std_threads"],
        target: 0.7,
    },
];

fn main() {
    let write_docs = std::env::args().any(|a| a == "--write-docs");
    let reps = support::env_num("CHAOS_BENCH_RUNS", 3);
    let runs = support::env_num("CHAOS_THROUGHPUT_RUNS", 100);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::Builder::new()
        .prefix("chaos-throughput-")
        .tempdir()
        .expect("temporary directory");
    let mut section = format!(
        "{SECTION}\n\n`cargo bench -p cargo-chaos --bench chaos_throughput`: runs per minute of \
         `cargo record-test --until-fail --jobs 1 --max-runs {runs}` on never-failing tests (dev profile), \
         median of {reps} hunts per mode, interleaved, after a warm-up hunt per mode; whole command \
         (cargo's up-to-date checks included); {cpus} CPUs, {model}, shared with other builds. \
         Targets (issue 15): chaos scheduling ≥ 0.9× `--chaos off` single-threaded, ≥ 0.7× threaded.\n\n\
         | test | mode | runs/min | ratio to `--chaos off` |\n|---|---|---:|---:|\n",
        cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        model = support::cpu_model(),
    );
    let mut verdicts = Vec::new();
    for (n, s) in SUBJECTS.iter().enumerate() {
        let manifest = root.join(s.manifest);
        let target = work.path().join(format!("target-{n}"));
        for (_, flags) in MODES {
            hunt(&manifest, &target, s.select, flags, runs);
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
        for _ in 0..reps {
            for (i, (_, flags)) in MODES.iter().enumerate() {
                times[i].push(hunt(&manifest, &target, s.select, flags, runs));
            }
        }
        let per_min: Vec<f64> = times
            .into_iter()
            .map(|t| runs as f64 * 60.0 / support::median_of(t).as_secs_f64())
            .collect();
        for (i, (mode, _)) in MODES.iter().enumerate() {
            let ratio = per_min[i] / per_min[0];
            section.push_str(&format!(
                "| {} | {mode} | {:.0} | {ratio:.2}× |\n",
                s.what, per_min[i]
            ));
            eprintln!(
                "{}: {mode}: {:.0} runs/min ({ratio:.2}×)",
                s.what, per_min[i]
            );
        }
        for (i, (mode, _)) in MODES.iter().enumerate().skip(1) {
            let ratio = per_min[i] / per_min[0];
            verdicts.push(format!(
                "- {}, {mode}: {ratio:.2}× `--chaos off`, {} the {:.1}× target.",
                s.what,
                if ratio >= s.target { "meets" } else { "misses" },
                s.target
            ));
        }
    }
    section.push('\n');
    section.push_str(&verdicts.join("\n"));
    section.push('\n');
    println!("{section}");
    if write_docs {
        let doc = root.join("docs/benchmarks.md");
        match support::replace_section(&doc, SECTION, &section) {
            Ok(()) => eprintln!("bench: wrote \"{SECTION}\" in {}", doc.display()),
            Err(e) => eprintln!("bench: could not write {}: {e}", doc.display()),
        }
    }
}

/// One hunt; its wall time. Every run must pass.
fn hunt(manifest: &Path, target: &Path, select: &[&str], flags: &[&str], runs: u64) -> Duration {
    let start = Instant::now();
    let out = support::hunt_command(manifest, target)
        .arg("--max-runs")
        .arg(runs.to_string())
        .args(flags)
        .args(select)
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo record-test");
    let took = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a hunt on a never-failing test failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}
