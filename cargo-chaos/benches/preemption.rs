//! Preemption of threads that make no syscalls, and process trees (issue 4), in one
//! invocation. Programs:
//!
//! - the lost-update race of `tests/fixtures/rust-races` (two threads, 2 million
//!   load-then-store increments each), built with the tick counter exactly as
//!   `cargo record-test --instrument` builds it, and built plainly; and the same race in C;
//! - a spin-wait on an atomic flag that another thread sets after a 20 ms sleep: the Rust
//!   one instrumented, the C one (`proc_spin`) not;
//! - a shell script that starts 100 `/bin/true` children.
//!
//! Each runs natively pinned to one core, recorded and replayed (pinned); every figure is
//! the median wall time of `CHAOS_BENCH_RUNS` runs (default 9) after one warm-up run.
//! Then one more recording of each is replayed with `--stats` for the preemption figures:
//! points found by breakpoint search, breakpoint hits, and the time spent finding them;
//! and the tick requests (preemption points of instrumented code, which need no search).
//!
//! Writes the section "## Recorder (preemption and process trees)" of
//! `docs/benchmarks.md`. Run with `cargo bench -p cargo-chaos --bench preemption`.

#[path = "../tests/threads/suite.rs"]
mod suite;
#[path = "support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use support::{bench_cpu, cell, cpu_model, publish, ratio, ratio_cell, Bench, Row, SearchStats};

const SECTION: &str = "## Recorder (preemption and process trees)";
/// Targets from issue 4.
const INSTRUMENTED_RECORD_TARGET: f64 = 1.5;
const SPIN_TRAPS_PER_POINT_TARGET: f64 = 2.0;

struct Program {
    what: String,
    exe: PathBuf,
    args: Vec<String>,
    instrumented: bool,
    spin: bool,
}

fn main() {
    let runs = support::runs_per_figure(9);
    // The race test asserts that no update was lost; here it only reports.
    std::env::set_var("RACE_REPORT_ONLY", "1");
    let cpu = bench_cpu();
    let work = tempfile::Builder::new()
        .prefix("chaos-bench-preemption-")
        .tempdir()
        .expect("create a temporary directory");
    eprintln!("bench: building the fixtures");
    let races_dir = suite::workspace_root().join("tests/fixtures/rust-races");
    let target = suite::workspace_root().join("target/fixture-rust-races");
    let plain = suite::build_crate(&races_dir, &target, &|_| {}).expect("plain build");
    let settings = cargo_chaos::record_test::instrument::prepare(&target)
        .expect("instrumented build settings");
    let instrumented = suite::build_crate(&races_dir, &target, &|cmd| settings.apply(cmd))
        .expect("instrumented build");
    let c = |name: &str| test_support::fixture::fixture(work.path(), name);
    let test = |exe: &Path, name: &str| -> (PathBuf, Vec<String>) {
        (exe.to_path_buf(), vec![name.into(), "--exact".into()])
    };
    let mut programs = Vec::new();
    let mut add = |what: &str, (exe, args): (PathBuf, Vec<String>), instrumented, spin| {
        programs.push(Program {
            what: what.into(),
            exe,
            args,
            instrumented,
            spin,
        })
    };
    add(
        "lost-update race, instrumented (Rust)",
        test(instrumented.test("races"), "lost_update"),
        true,
        false,
    );
    add(
        "lost-update race, uninstrumented (Rust)",
        test(plain.test("races"), "lost_update"),
        false,
        false,
    );
    add(
        "lost-update race, uninstrumented (C)",
        // `preempt_race` with `race.c`'s former size: 2 million increments a thread.
        (c("preempt_race"), vec!["2000000".to_string()]),
        false,
        false,
    );
    add(
        "spin-wait, instrumented (Rust)",
        test(instrumented.test("races"), "spin_wait"),
        true,
        true,
    );
    add(
        "spin-wait, uninstrumented (C)",
        (c("proc_spin"), vec![]),
        false,
        true,
    );
    add(
        "shell script starting 100 `/bin/true` children",
        (
            PathBuf::from("/bin/sh"),
            vec![
                "-c".into(),
                "for i in $(seq 100); do /bin/true; done".into(),
            ],
        ),
        false,
        false,
    );

    let bench = Bench {
        cpu,
        runs,
        work: work.path().to_path_buf(),
        strace: None,
        notes: RefCell::new(Vec::new()),
    };
    eprintln!("bench: pinned to cpu {cpu}, median of {runs} runs");
    let measured = bench.measure_with_stats(
        programs
            .iter()
            .map(|p| (p.what.as_str(), p.exe.as_path(), p.args.as_slice())),
    );
    publish(SECTION, &render(&programs, &measured, &bench));
}

fn render(programs: &[Program], measured: &[(Row, SearchStats)], bench: &Bench) -> String {
    let mut s = format!(
        "{SECTION}\n\n`cargo bench -p cargo-chaos --bench preemption`: median wall time of {} runs \
         (after one warm-up run; each recording replayed once), everything pinned to cpu {} with \
         `taskset`; {}. The Rust programs are tests of `tests/fixtures/rust-races` (dev profile), \
         run with `NAME --exact`; \"instrumented\" is the build `cargo record-test --instrument` \
         makes, and its native run is that same binary run natively. The preemption columns come \
         from one more recording replayed with `--stats`: tick requests are the preemption points \
         of instrumented code (no search at replay); points and breakpoint hits are those of the \
         watchdog path, found again by breakpoint and state match. Targets (issue 4): \
         instrumented lost-update record ≤ {INSTRUMENTED_RECORD_TARGET}× native and replay faster \
         than record; uninstrumented spin-wait ≤ {SPIN_TRAPS_PER_POINT_TARGET} breakpoint hits per \
         preemption point.\n\n",
        bench.runs,
        bench.cpu,
        cpu_model()
    );
    s.push_str("| program | native (ms) | record (ms) | replay (ms) | record/native | replay/record | tick requests | watchdog points | breakpoint hits | hits/point | search ms/point |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (row, pre) in measured {
        let per_point = |x: f64| {
            if pre.points == 0 {
                "–".to_string()
            } else {
                format!("{:.2}", x / pre.points as f64)
            }
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.what,
            cell(&row.native),
            cell(&row.record),
            cell(&row.replay),
            ratio_cell(ratio(&row.record, &row.native)),
            ratio_cell(ratio(&row.replay, &row.record)),
            pre.tick_requests,
            pre.points,
            pre.traps,
            per_point(pre.traps as f64),
            per_point(pre.search_ms),
        ));
    }
    s.push('\n');
    for (p, (row, pre)) in programs.iter().zip(measured) {
        if p.instrumented && !p.spin {
            let rec = ratio(&row.record, &row.native);
            let rep = ratio(&row.replay, &row.record);
            s.push_str(&format!(
                "- {}: record/native {} ({} the ≤ {INSTRUMENTED_RECORD_TARGET}× target); replay/record {} ({}).\n",
                p.what,
                ratio_cell(rec),
                if rec.is_some_and(|r| r <= INSTRUMENTED_RECORD_TARGET) { "meets" } else { "misses" },
                ratio_cell(rep),
                if rep.is_some_and(|r| r < 1.0) { "replay is faster" } else { "replay is NOT faster" },
            ));
        }
        if p.spin && !p.instrumented {
            let verdict = if pre.points == 0 {
                "no watchdog preemption happened in the measured recording".to_string()
            } else {
                let per = pre.traps as f64 / pre.points as f64;
                format!(
                    "{per:.2} breakpoint hits per preemption point ({} the ≤ {SPIN_TRAPS_PER_POINT_TARGET} target)",
                    if per <= SPIN_TRAPS_PER_POINT_TARGET { "meets" } else { "misses" }
                )
            };
            s.push_str(&format!("- {}: {verdict}.\n", p.what));
        }
    }
    s.push_str(&bench.notes_section());
    s
}
