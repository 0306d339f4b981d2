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
#[path = "support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::path::PathBuf;

use support::{bench_cpu, cell, cpu_model, find_in_path, ratio, ratio_cell};
use support::{Bench, Row};

const SECTION: &str = "## Recorder (threads)";
const ROUND_TRIPS: u32 = 20_000;
/// Targets from issue 3.
const RECORD_OVER_STRACE_TARGET: f64 = 1.2;

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let runs = support::runs_per_figure(9);
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
    support::publish(SECTION, &table);
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
    s.push_str(&support::notes_section(notes));
    s
}
