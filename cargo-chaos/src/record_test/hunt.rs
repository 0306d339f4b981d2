//! The flake hunt: record runs of the test binaries, in parallel, until one fails.
//!
//! Workers (one per `--jobs`, each pinned to its own core) take run numbers from a
//! shared counter and record one unit (a test binary, or one test of it with
//! `--per-test`) per run. Runs that pass are deleted; a failing run is handed to the
//! caller through [`HuntEvent::Failed`] with its trace directory intact. Nothing here
//! prints: the binary renders the events.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use recorder::record::{Interrupter, RecordOptions, Stdio};
use recorder::trace::CaptureCache;
use recorder::trace::Outcome;

use super::build::TestBinary;
use super::failures::TestFailure;

/// What one run executes.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The test binary.
    pub binary: Arc<TestBinary>,
    /// With `--per-test`: the one test (run with `--exact`).
    pub test: Option<String>,
    /// Without `--per-test` but with `--partition`: the binary's tests in this shard
    /// (run together, with `--exact`); empty: all of them.
    pub exact: Vec<String>,
}

impl Unit {
    /// "package/target" or "package/target::test".
    pub fn label(&self) -> String {
        let base = format!("{}/{}", self.binary.package, self.binary.target);
        match &self.test {
            Some(t) => format!("{base}::{t}"),
            None => base,
        }
    }
}

/// How to hunt.
#[derive(Debug, Clone)]
pub struct HuntPlan {
    /// What each run executes, in rotation.
    pub units: Vec<Unit>,
    /// libtest arguments for every run (filter and user arguments).
    pub test_args: Vec<String>,
    /// Total runs at most.
    pub max_runs: u64,
    /// Whether the units are run again and again until a failure (`--until-fail`), not
    /// each once.
    pub repeats: bool,
    /// Stop starting runs after this long.
    pub max_duration: Option<Duration>,
    /// Cores to pin the workers to (one worker per entry).
    pub cores: Vec<usize>,
    /// A run longer than this is stopped and counts as a failure.
    pub test_timeout: Option<Duration>,
    /// Only failures whose output matches count.
    pub fail_on: Option<regex::Regex>,
    /// Keep going after a failure, collecting distinct ones.
    pub keep_going: bool,
    /// Replay each failing run before it is reported (see [`Verification`]).
    pub verify: bool,
    /// Seed of run 0; run n uses base + n.
    pub base_seed: u64,
    /// The scheduling policy of every run.
    pub chaos: recorder::sched::Chaos,
    /// Record with the syscall-buffering library (`--syscallbuf`).
    pub syscallbuf: bool,
    /// The number of the first run (a hunt in phases goes on counting; see
    /// [`super::auto`]).
    pub first_run: u64,
    /// Where runs are recorded: the hunt makes its own directory there (see
    /// [`super::hunt_dir`]) next to the capture cache that hunts share.
    pub runs_dir: PathBuf,
    /// The environment every run starts from (secrets removed), and the names removed.
    pub env: Vec<(String, String)>,
    /// Names removed from the environment.
    pub removed_env: Vec<String>,
    /// Stops the hunt from outside (Ctrl-C; see [`super::stop`]) and gives each run
    /// its interrupter.
    pub control: Arc<super::stop::HuntControl>,
}

/// A run that failed and was kept.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Run number.
    pub run: u64,
    /// What ran.
    pub unit: Unit,
    /// Scheduler seed.
    pub seed: u64,
    /// The run directory (trace in `trace/`, output in `stdout`/`stderr`).
    pub dir: PathBuf,
    /// The trace directory.
    pub trace: PathBuf,
    /// Exit status (code, or 128 + signal).
    pub status: i32,
    /// How the run ended.
    pub outcome: Outcome,
    /// The failing tests, each with its panic (see [`super::failures`]). In
    /// [`HuntEvent::Failed`], only those not seen earlier in the hunt: each is captured
    /// as an archive of its own.
    pub failures: Vec<TestFailure>,
    /// What the program wrote.
    pub stdout: String,
    /// What the program wrote to stderr.
    pub stderr: String,
    /// Whether the run replays: checked on the job that recorded it, before it is
    /// reported, unless the hunt was told not to.
    pub verification: Verification,
}

/// The one definition of a verified capture: its trace replays to the end without a
/// divergence and with the recorded status (or, for a run stopped from outside, up to
/// where it was stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Not checked (`--no-verify`).
    Skipped,
    /// The replay matched the recording.
    Replays,
    /// The replay failed: why.
    Fails(String),
}

impl Verification {
    /// Replays `trace` (output discarded) and compares its end with `status`.
    pub fn check(trace: &std::path::Path, status: i32) -> Verification {
        match recorder::replay::replay(trace, &mut |_, _| {}) {
            Ok(s) if s.cut_short || s.exit.status() == status => Verification::Replays,
            Ok(s) => Verification::Fails(format!(
                "the replay ended with status {} instead of {status}",
                s.exit.status()
            )),
            Err(e) => Verification::Fails(e.to_string()),
        }
    }
}

/// Progress of the hunt.
#[derive(Debug, Clone)]
pub enum HuntEvent {
    /// A run started.
    Started {
        /// Run number.
        run: u64,
        /// What runs.
        unit: String,
        /// Seed.
        seed: u64,
    },
    /// A run ended.
    Finished {
        /// Run number.
        run: u64,
        /// What ran.
        unit: String,
        /// Exit status.
        status: i32,
        /// How it ended.
        outcome: Outcome,
        /// How long it took.
        duration: Duration,
        /// Whether it counts as a failure (non-zero, matching `--fail-on`).
        failed: bool,
        /// What a failing run wrote (stdout, stderr); empty for one that passed.
        output: Arc<(String, String)>,
    },
    /// A failing run to capture (distinct from earlier ones).
    Failed(Box<Failure>),
}

/// Why the hunt stopped.
#[derive(Debug)]
pub enum HuntEnd {
    /// All runs done (or the time was up) with no failure kept.
    Passed {
        /// Runs done.
        runs: u64,
        /// Failing runs that did not replay (not captured).
        verify_failed: usize,
    },
    /// At least one failure was kept.
    Failed {
        /// Runs done.
        runs: u64,
        /// How many.
        failures: usize,
        /// Failing runs that did not replay (not captured).
        verify_failed: usize,
    },
}

/// Runs the hunt; `on_event` is called on this thread, in order. A failure handler that
/// returns `false` stops the hunt.
pub fn hunt(
    plan: &HuntPlan,
    on_event: &mut dyn FnMut(HuntEvent) -> anyhow::Result<()>,
) -> anyhow::Result<HuntEnd> {
    // This hunt's own directory: other hunts in the same target directory have theirs.
    let hunt_dir = super::hunt_dir::HuntDir::create(&plan.runs_dir).with_context(|| {
        format!(
            "creating this hunt's scratch directory in {}",
            plan.runs_dir.display()
        )
    })?;
    let next_run = AtomicU64::new(plan.first_run);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // Each job's current recording, to stop them all at once.
    let interrupters: Mutex<Vec<Option<Arc<Interrupter>>>> =
        Mutex::new(vec![None; plan.cores.len()]);
    let (tx, rx) = mpsc::channel::<anyhow::Result<HuntEvent>>();
    let mut runs_done = 0u64;
    let mut failures = 0usize;
    let mut verify_failed = 0usize;
    let mut seen: HashSet<(Option<String>, Option<String>)> = HashSet::new();
    // One for all jobs: its clones share what they looked up already.
    let capture_cache = CaptureCache::new(plan.runs_dir.join("captured-files"));
    let result = std::thread::scope(|scope| -> anyhow::Result<()> {
        for (index, &core) in plan.cores.iter().enumerate() {
            let tx = tx.clone();
            let (next_run, stop, interrupters) = (&next_run, &stop, &interrupters);
            let job = Job {
                core,
                scratch: hunt_dir.path().join(format!("job-{index}")),
                kept_dir: hunt_dir.path().to_owned(),
                capture_cache: capture_cache.clone(),
            };
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) && plan.control.stopped_by().is_none() {
                    let run = next_run.fetch_add(1, Ordering::SeqCst);
                    if run >= plan.max_runs
                        || plan.max_duration.is_some_and(|d| started.elapsed() >= d)
                    {
                        break;
                    }
                    let interrupter = plan.control.recording();
                    interrupters.lock().unwrap_or_else(|e| e.into_inner())[index] =
                        Some(interrupter.clone());
                    if stop.load(Ordering::SeqCst) {
                        // `stop_all` ran between the check above and now.
                        interrupter.abort(Outcome::Interrupted);
                    }
                    let r = one_run(plan, run, &job, interrupter.clone(), &tx, stop);
                    plan.control.finished(&interrupter);
                    if r.is_err()
                        && (stop.load(Ordering::SeqCst) || plan.control.stopped_by().is_some())
                    {
                        // Stopped mid-run on purpose: whatever went wrong does not count.
                        break;
                    }
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let stop_all = || {
            stop.store(true, Ordering::SeqCst);
            for i in interrupters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .flatten()
            {
                i.abort(Outcome::Interrupted);
            }
        };
        // After the first run, the files it captured (test binary, libc, ld.so) are
        // compressed into the packer's frame cache on one core, off the critical path:
        // packing a failing run then copies their frames instead of compressing them.
        let mut warming: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
        let mut warm_started = false;
        for msg in rx {
            let ev = match msg {
                Ok(ev) => ev,
                Err(e) => {
                    stop_all();
                    return Err(e);
                }
            };
            match ev {
                HuntEvent::Finished { .. } => {
                    runs_done += 1;
                    if !warm_started {
                        warm_started = true;
                        let captured = plan.runs_dir.join("captured-files");
                        warming = Some(scope.spawn(move || {
                            // Idle priority: only time the recordings leave unused.
                            let param = libc::sched_param { sched_priority: 0 };
                            // SAFETY: changes this thread's own scheduling policy.
                            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                            let mut opts = packer::PackOptions::default();
                            opts.threads = Some(1);
                            if let Err(e) = packer::warm(&captured, &opts) {
                                tracing::debug!("warming the frame cache: {e}");
                            }
                        }));
                    }
                    on_event(ev)?;
                }
                HuntEvent::Failed(f) => {
                    if (stop.load(Ordering::SeqCst) && !plan.keep_going)
                        || plan.control.stopped_by().is_some()
                    {
                        let _ = std::fs::remove_dir_all(&f.dir);
                        continue;
                    }
                    if let Verification::Fails(_) = f.verification {
                        // Reported, not captured: a later run may fail the same way
                        // and replay, so it is neither counted nor remembered as seen.
                        verify_failed += 1;
                        on_event(HuntEvent::Failed(f))?;
                        continue;
                    }
                    // Distinct by test and that test's own panic location: the run
                    // keeps the failures not seen before, each captured on its own.
                    let mut f = f;
                    f.failures.retain(|t| seen.insert(t.key()));
                    if f.failures.is_empty() {
                        let _ = std::fs::remove_dir_all(&f.dir);
                        continue;
                    }
                    failures += f.failures.len();
                    if !plan.keep_going {
                        stop_all();
                    }
                    if let Some(w) = warming.take() {
                        // What it has not compressed yet, packing would compress again.
                        let _ = w.join();
                    }
                    if let Err(e) = on_event(HuntEvent::Failed(f)) {
                        stop_all();
                        return Err(e);
                    }
                }
                other => on_event(other)?,
            }
        }
        Ok(())
    });
    drop(hunt_dir);
    result?;
    Ok(if failures > 0 {
        HuntEnd::Failed {
            runs: runs_done,
            failures,
            verify_failed,
        }
    } else {
        HuntEnd::Passed {
            runs: runs_done,
            verify_failed,
        }
    })
}

/// What a hunt's worker keeps from run to run.
struct Job {
    /// The core its recordings are pinned to.
    core: usize,
    /// Where it records its runs, `job-N` in the hunt's directory (see
    /// [`super::hunt_dir`]): one directory, overwritten run after run (creating and
    /// deleting a run's directory cost ~0.3 ms); a failing run's is renamed to `run-N`
    /// next to it.
    scratch: PathBuf,
    /// The hunt's directory, where failing runs are kept.
    kept_dir: PathBuf,
    /// The hunt's capture cache.
    capture_cache: CaptureCache,
}

/// One recording, on the calling thread (a worker of its own, see [`hunt`]).
fn one_run(
    plan: &HuntPlan,
    run: u64,
    job: &Job,
    interrupter: Arc<Interrupter>,
    tx: &mpsc::Sender<anyhow::Result<HuntEvent>>,
    stop: &AtomicBool,
) -> anyhow::Result<HuntEvent> {
    let unit = plan.units[(run % plan.units.len() as u64) as usize].clone();
    let seed = plan.base_seed.wrapping_add(run);
    let dir = job.scratch.clone();
    std::fs::create_dir_all(&dir)?;
    // Removed rather than truncated when the run writes them again (see `TraceDir::reuse`).
    for name in ["stdout", "stderr"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(t) = &unit.test {
        args.push(t.into());
        args.push("--exact".into());
    } else if !unit.exact.is_empty() {
        args.extend(unit.exact.iter().map(Into::into));
        args.push("--exact".into());
    }
    args.extend(plan.test_args.iter().map(Into::into));
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        plan.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    for (k, v) in &unit.binary.env {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
    let _ = tx.send(Ok(HuntEvent::Started {
        run,
        unit: unit.label(),
        seed,
    }));
    let opts = RecordOptions {
        program: unit.binary.path.clone(),
        args,
        env,
        removed_env: plan.removed_env.clone(),
        cwd: Some(unit.binary.cwd.clone()),
        trace_dir: dir.join("trace"),
        reuse_trace_dir: true,
        seed: Some(seed),
        chaos: plan.chaos,
        no_watchdog: false,
        slice_clock: crate::record_test::args::slice_clock(),
        cpu: Some(job.core),
        stdio: Stdio::Files {
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
        },
        timeout: plan.test_timeout,
        interrupter: Some(interrupter),
        capture_cache: Some(job.capture_cache.clone()),
        syscallbuf: plan.syscallbuf,
    };
    let t0 = Instant::now();
    let summary = recorder::record::record_on_this_thread(&opts)
        .map_err(|e| anyhow::anyhow!("recording {} failed: {e}", unit.label()))?;
    let duration = t0.elapsed();
    let result = summary.result;
    if let Some(e) = &result.trace_error {
        // Neither a pass nor a failure can be trusted from a trace that lacks its end.
        anyhow::bail!(
            "recording {} (run {run}) could not write its trace, which is incomplete: {e}",
            unit.label()
        );
    }
    let interrupted = result.outcome == Outcome::Interrupted;
    let mut failed = result.status != 0 && !interrupted;
    // The output matters only to a failing run: a passing one does not read it back.
    let (stdout, stderr) = if failed {
        (
            read_lossy(&dir.join("stdout")),
            read_lossy(&dir.join("stderr")),
        )
    } else {
        Default::default()
    };
    if failed {
        if let Some(re) = &plan.fail_on {
            failed = re.is_match(&stdout) || re.is_match(&stderr);
        }
    }
    if (stop.load(Ordering::SeqCst) && !plan.keep_going) || plan.control.stopped_by().is_some() {
        // Stopped on purpose: a run cut short (or killed by the terminal's Ctrl-C too)
        // is not a failure of the test.
        failed = false;
    }
    let finished = HuntEvent::Finished {
        run,
        unit: unit.label(),
        status: result.status,
        outcome: result.outcome,
        duration,
        failed,
        output: if failed {
            Arc::new((stdout.clone(), stderr.clone()))
        } else {
            Arc::default()
        },
    };
    if !failed {
        // The next run of this job overwrites it.
        return Ok(finished);
    }
    // Kept: the job's next run starts a new scratch directory.
    let kept = job.kept_dir.join(format!("run-{run}"));
    std::fs::rename(&dir, &kept)?;
    let dir = kept;
    let _ = tx.send(Ok(finished));
    let failures = super::failures::parse(&stdout, &stderr, unit.test.as_deref());
    let verification = if plan.verify {
        Verification::check(&dir.join("trace"), result.status)
    } else {
        Verification::Skipped
    };
    Ok(HuntEvent::Failed(Box::new(Failure {
        run,
        unit,
        seed,
        trace: dir.join("trace"),
        dir,
        status: result.status,
        outcome: result.outcome,
        failures,
        stdout,
        stderr,
        verification,
    })))
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
