//! Preemption points in uninstrumented code (issue 13): how much slower replay is than
//! its recording when threads are preempted inside loops that make no syscall, in one
//! invocation. Workloads (each with two threads that never block, so the watchdog
//! preempts them every 50 ms slice):
//!
//! - counting loop: the C lost-update race (`preempt_race`, 300M iterations a thread);
//! - spin-wait: a thread spinning on a flag while a release-build xorshift loop runs
//!   (`spin_worker`; every instruction of that loop is shorter than a 5-byte jump);
//! - `rep movsb`: 16 copies of 64 MiB while another thread counts (`rep_movsb`);
//! - libtest cpu loop: `cpu_bound cpu_loop` of `tests/fixtures/rust-races` (debug);
//! - allocations: `cpu_bound allocations` (debug).
//!
//! Each runs natively, recorded and replayed, pinned to one core; figures are medians
//! of `CHAOS_BENCH_RUNS` runs (default 3) after a warm-up run, and the ratios are taken
//! between figures of this same invocation. One more recording is replayed with
//! `--stats` for the points and traps. Writes the section "## Preemption points in
//! uninstrumented code" of `docs/benchmarks.md`. Run with
//! `cargo bench -p cargo-chaos --bench preemption_points`.

#[path = "../tests/threads/suite.rs"]
mod suite;
#[path = "support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::path::PathBuf;

use support::{bench_cpu, cell, cpu_model, publish, ratio, ratio_cell, Bench, Row};

const SECTION: &str = "## Preemption points in uninstrumented code";

struct Workload {
    what: &'static str,
    exe: PathBuf,
    args: Vec<String>,
    /// The target for replay/record.
    target: f64,
}

use support::SearchStats as Stats;

fn main() {
    let runs = support::runs_per_figure(3);
    let cpu = bench_cpu();
    let work = tempfile::Builder::new()
        .prefix("chaos-bench-preemption-points-")
        .tempdir()
        .expect("create a temporary directory");
    eprintln!("bench: building the fixtures");
    let c = |name: &str| test_support::fixture::fixture(work.path(), name);
    let races = suite::build_crate(
        &suite::workspace_root().join("tests/fixtures/rust-races"),
        &suite::workspace_root().join("target/fixture-rust-races"),
        &|_| {},
    )
    .expect("fixture crate build");
    let cpu_bound = races.test("cpu_bound").to_path_buf();
    let test = |name: &str| vec![name.to_string(), "--exact".to_string()];
    std::env::set_var("CPU_LOOP_ITERATIONS", "100000000");
    std::env::set_var("ALLOCATIONS", "300000");
    let workloads = vec![
        Workload {
            what: "counting loop: C lost-update race, 2 × 300M iterations (-O1)",
            exe: c("preempt_race"),
            args: vec!["300000000".into()],
            target: 2.0,
        },
        Workload {
            what: "spin-wait beside a release-build xorshift loop (C, -O1)",
            exe: c("spin_worker"),
            args: vec!["300000000".into()],
            target: 2.0,
        },
        Workload {
            what: "`rep movsb` of 64 MiB × 16 beside a counting thread (C)",
            exe: c("rep_movsb"),
            args: vec!["16".into()],
            target: 2.0,
        },
        Workload {
            what: "libtest cpu loop, 2 × 100M xorshift steps (Rust, debug)",
            exe: cpu_bound.clone(),
            args: test("cpu_loop"),
            target: 1.1,
        },
        Workload {
            what: "libtest allocations, 2 × 300k BTreeMap inserts (Rust, debug)",
            exe: cpu_bound,
            args: test("allocations"),
            target: 1.1,
        },
    ];
    let bench = Bench {
        cpu,
        runs,
        work: work.path().to_path_buf(),
        strace: None,
        notes: RefCell::new(Vec::new()),
    };
    eprintln!("bench: pinned to cpu {cpu}, median of {runs} runs");
    let measured = bench.measure_with_stats(
        workloads
            .iter()
            .map(|w| (w.what, w.exe.as_path(), w.args.as_slice())),
    );
    publish(SECTION, &render(&workloads, &measured, &bench));
}

fn render(workloads: &[Workload], measured: &[(Row, Stats)], bench: &Bench) -> String {
    let mut s = format!(
        "{SECTION}\n\n`cargo bench -p cargo-chaos --bench preemption_points`: median wall time of {} runs \
         (after one warm-up run; each recording replayed once), everything pinned to cpu {} with \
         `taskset`; {}. Uninstrumented programs whose threads never block, so the watchdog preempts \
         them every 50 ms inside their loops; replay finds each point with a patched conditional trap \
         (see docs/architecture.md, \"Finding preemption points again\"). The points and traps come \
         from one more recording replayed with `--stats` (traps: trampoline matches and breakpoint \
         hits; the search time includes running the program up to each point). Targets (issue 13): \
         replay/record ≤ 2 for the C loops, ≤ 1.1 for the libtest tests.\n\n",
        bench.runs,
        bench.cpu,
        cpu_model()
    );
    s.push_str("| workload | native (ms) | record (ms) | replay (ms) | record/native | replay/record | target | points | traps | traps/point | search ms |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (w, (row, st)) in workloads.iter().zip(measured) {
        let per_point = if st.points == 0 {
            "–".to_string()
        } else {
            format!("{:.2}", st.traps as f64 / st.points as f64)
        };
        let rep = ratio(&row.replay, &row.record);
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | ≤ {} ({}) | {} | {} | {} | {:.0} |\n",
            row.what,
            cell(&row.native),
            cell(&row.record),
            cell(&row.replay),
            ratio_cell(ratio(&row.record, &row.native)),
            ratio_cell(rep),
            w.target,
            if rep.is_some_and(|r| r <= w.target) {
                "met"
            } else {
                "missed"
            },
            st.points,
            st.traps,
            per_point,
            st.search_ms,
        ));
    }
    s.push_str(&bench.notes_section());
    s
}
