//! `--instrument auto` (the default): a hunt starts with the normal build, and when it
//! has gone [`AFTER_RUNS`] runs or [`AFTER`] without a failure, it builds the tests with
//! the tick counter (see [`super::instrument`]) and gives every other run to that build.
//! Races whose window holds no syscall (a load, then a store) need its preemption
//! points; the normal build keeps the hunt's early runs fast and its other runs as they
//! were. `--instrument` and `--no-instrument` force either build for the whole hunt.
//! Without `--until-fail` (each test once) the default is the normal build alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::CargoOptions;
use super::build::TestBinary;
use super::hunt::{HuntEnd, HuntEvent, HuntPlan, Unit};

/// Runs without a failure before the instrumented build joins in. Few: races whose
/// window holds no syscall are captured at the first instrumented runs, and a hunt that
/// waited 20 runs for them was slower than plain reruns of a test failing one run in
/// ten (docs/benchmarks.md, "Capture rate"); a test that fails that often on the normal
/// build still gets its first runs there, and every other run after.
pub const AFTER_RUNS: u64 = 6;
/// Time without a failure before the instrumented build joins in.
pub const AFTER: Duration = Duration::from_secs(30);

/// Which builds a hunt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// `--no-instrument`: the normal build only.
    Never,
    /// `--instrument`: the instrumented build only.
    Always,
    /// Neither flag: the normal build, then both (see the module doc).
    Auto,
}

impl Instrument {
    /// From the command line.
    pub fn from_options(o: &CargoOptions) -> Self {
        if o.instrument {
            Instrument::Always
        } else if o.no_instrument {
            Instrument::Never
        } else {
            Instrument::Auto
        }
    }
}

/// Runs `plan` with the normal build's units; under [`Instrument::Auto`], after the
/// first phase passed, calls `announce` with the runs done so far and `instrumented`
/// for the instrumented build's binaries, then hunts on with the two builds taking
/// turns (with the normal build alone if that build failed). One hunt's counts and run numbers go on across the phases.
pub fn hunt(
    plan: &HuntPlan,
    mode: Instrument,
    instrumented: &mut dyn FnMut() -> anyhow::Result<Vec<Arc<TestBinary>>>,
    announce: &mut dyn FnMut(u64),
    on_event: &mut dyn FnMut(HuntEvent) -> anyhow::Result<()>,
) -> anyhow::Result<HuntEnd> {
    // A hunt that runs each unit once keeps the normal build: a second build joining in
    // would take turns with it and run some units twice, others not at all.
    if mode != Instrument::Auto || !plan.repeats || plan.max_runs <= AFTER_RUNS {
        return super::hunt::hunt(plan, on_event);
    }
    let started = Instant::now();
    let mut first = plan.clone();
    first.max_runs = AFTER_RUNS;
    first.max_duration = Some(plan.max_duration.map_or(AFTER, |d| d.min(AFTER)));
    let end = super::hunt::hunt(&first, on_event)?;
    if plan.control.stopped_by().is_some() {
        return Ok(end);
    }
    let (runs, verify_failed) = match end {
        HuntEnd::Passed {
            runs,
            verify_failed,
        } => (runs, verify_failed),
        failed @ HuntEnd::Failed { .. } if !plan.keep_going => return Ok(failed),
        HuntEnd::Failed { .. } => return super::hunt::hunt(&rest(plan, &end, started), on_event),
    };
    if plan.max_duration.is_some_and(|d| started.elapsed() >= d) {
        return Ok(HuntEnd::Passed {
            runs,
            verify_failed,
        });
    }
    announce(runs);
    let mut second = rest(plan, &end, started);
    match instrumented() {
        Ok(binaries) => second.units = take_turns(&plan.units, &binaries),
        // The hunt goes on with the normal build: it was not asked for.
        Err(e) => {
            eprintln!("warning: the instrumented build failed, the hunt goes on without it: {e:#}")
        }
    }
    // Run numbers go on: the instrumented build gets the odd ones.
    let end2 = super::hunt::hunt(&second, on_event)?;
    Ok(add(runs, verify_failed, end2))
}

/// The plan of the phase after `end`.
fn rest(plan: &HuntPlan, end: &HuntEnd, started: Instant) -> HuntPlan {
    let runs = match end {
        HuntEnd::Passed { runs, .. } | HuntEnd::Failed { runs, .. } => *runs,
    };
    let mut p = plan.clone();
    p.first_run = plan.first_run + runs;
    p.max_duration = plan
        .max_duration
        .map(|d| d.saturating_sub(started.elapsed()));
    p
}

/// The counts of both phases.
fn add(runs: u64, verify_failed: usize, end: HuntEnd) -> HuntEnd {
    match end {
        HuntEnd::Passed {
            runs: r,
            verify_failed: v,
        } => HuntEnd::Passed {
            runs: runs + r,
            verify_failed: verify_failed + v,
        },
        HuntEnd::Failed {
            runs: r,
            failures,
            verify_failed: v,
        } => HuntEnd::Failed {
            runs: runs + r,
            failures,
            verify_failed: verify_failed + v,
        },
    }
}

/// Each unit of the normal build followed by the same unit of the instrumented build
/// (same package and target; units without one stay as they are), so that runs of
/// even number use the normal build and runs of odd number the instrumented one.
pub fn take_turns(units: &[Unit], instrumented: &[Arc<TestBinary>]) -> Vec<Unit> {
    let mut out = Vec::new();
    for u in units {
        let twin = instrumented.iter().find(|b| {
            b.package == u.binary.package && b.target == u.binary.target && b.kind == u.binary.kind
        });
        out.push(u.clone());
        out.push(Unit {
            binary: twin.cloned().unwrap_or_else(|| u.binary.clone()),
            ..u.clone()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(target: &str, path: &str) -> Arc<TestBinary> {
        Arc::new(TestBinary {
            package: "p".into(),
            target: target.into(),
            kind: "test".into(),
            path: path.into(),
            cwd: "/".into(),
            env: Vec::new(),
        })
    }

    #[test]
    fn the_instrumented_build_takes_the_odd_runs() {
        let plain = [binary("a", "/plain/a"), binary("b", "/plain/b")];
        let instrumented = [binary("b", "/instr/b"), binary("a", "/instr/a")];
        let units: Vec<Unit> = plain
            .iter()
            .map(|b| Unit {
                binary: b.clone(),
                test: None,
                exact: Vec::new(),
            })
            .collect();
        let turns = take_turns(&units, &instrumented);
        let paths: Vec<String> = turns
            .iter()
            .map(|u| u.binary.path.display().to_string())
            .collect();
        assert_eq!(paths, ["/plain/a", "/instr/a", "/plain/b", "/instr/b"]);
        // Runs rotate through the units by number: odd runs get the instrumented build.
        for run in 0..8usize {
            let u = &turns[run % turns.len()];
            assert_eq!(u.binary.path.starts_with("/instr"), run % 2 == 1);
        }
    }
}
