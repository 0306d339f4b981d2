//! `cargo record-test`: build a crate's tests, record runs until one fails, pack the
//! failing run and upload it, print the command that replays it.

pub mod annotations;
pub mod args;
pub mod auto;
pub mod build;
pub mod config;
pub mod failures;
pub mod hunt;
pub mod hunt_dir;
pub mod instrument;
pub mod junit;
mod render;
pub mod stop;
pub mod test_list;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::exit_codes;
use crate::messages::{emit, Message};
use args::{Cargo, CargoCommand, MessageFormat, RecordTestArgs};
use hunt::{HuntEnd, HuntEvent, HuntPlan};

/// Entry point of the `cargo-record-test` binary; returns the exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    crate::output::init_logging();
    let cli = match Cargo::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit_codes::USAGE } else { 0 };
        }
    };
    let CargoCommand::RecordTest(a) = cli.command;
    let json = a.message_format == MessageFormat::Json;
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = if e.is::<test_list::NoTestMatches>() {
                exit_codes::NO_TESTS
            } else {
                exit_codes::TOOL_ERROR
            };
            if json {
                // Every outcome ends with `finished`, a build that failed too.
                emit(&Message::Finished {
                    runs: 0,
                    failures: 0,
                    verify_failed: 0,
                    exit_code: code,
                    error: Some(format!("{e:#}")),
                    interrupted_by: None,
                });
            }
            code
        }
    }
}

/// "SIGINT" for 2, and so on.
fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Writes a failing run's whole output (stdout, then stderr) to
/// `<target>/chaos/output/<pid>-run-<N>.log`; returns its path, or `None` when it could
/// not be written (the message still carries the output's end).
fn save_output(
    chaos_dir: &std::path::Path,
    run: u64,
    stdout: &str,
    stderr: &str,
) -> Option<String> {
    let dir = chaos_dir.join("output");
    let path = dir.join(format!("{}-run-{run}.log", std::process::id()));
    let r = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, format!("{stdout}{stderr}")));
    match r {
        Ok(()) => Some(path.display().to_string()),
        Err(e) => {
            tracing::warn!("writing {}: {e}", path.display());
            None
        }
    }
}

fn run(mut a: RecordTestArgs) -> anyhow::Result<i32> {
    let json = a.message_format == MessageFormat::Json;
    // Before any other thread exists (see `stop::watch`).
    let control = stop::HuntControl::new();
    stop::watch(control.clone());
    let (root, metadata) = build::workspace(&a.cargo)?;
    let profile = config::profile(&root, &metadata, a.config_profile.as_deref())?;
    config::apply(&mut a, &profile, &root)?;
    let fail_on = a
        .fail_on
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--fail-on is not a valid regular expression")?;
    let instrument = auto::Instrument::from_options(&a.cargo);
    let built = build::build(&a.cargo)?;
    let chaos_dir = built.target_dir.join("chaos");
    let workspace_root = built.workspace_root.clone();
    let binaries: Vec<Arc<build::TestBinary>> = built.binaries.into_iter().map(Arc::new).collect();
    let choice = test_list::Choice {
        filter: a.testname.as_deref(),
        test_args: &a.test_args,
        partition: a.partition,
        per_test: a.per_test,
        need_list: a.junit.is_some(),
    };
    let test_list::Selection {
        units,
        hunted,
        listed,
        test_args,
    } = test_list::select(&binaries, &choice, |b| {
        build::list_tests(b, a.testname.as_deref(), &a.test_args)
    })?;
    if units.is_empty() {
        // A CI matrix with more shards than tests: this shard has nothing to do.
        let p = a.partition.map(|p| p.to_string()).unwrap_or_default();
        if let Some(path) = &a.junit {
            // An empty report: the CI's test-report step finds one on every shard.
            junit::write(path, &[], &[], 0, std::time::Duration::ZERO)?;
        }
        if json {
            emit(&Message::Finished {
                runs: 0,
                failures: 0,
                verify_failed: 0,
                exit_code: exit_codes::OK,
                error: None,
                interrupted_by: None,
            });
        } else {
            eprintln!(
                "{:>12} 0 runs: partition {p} holds none of the {} tests",
                "Finished",
                listed.unwrap_or(0)
            );
        }
        return Ok(exit_codes::OK);
    }
    let started = std::time::Instant::now();
    let cores = recorder::spawn::cpu_set();
    let jobs = a.jobs.map_or(cores.len(), |j| j as usize);
    let (env, removed_env) = crate::env::program_env(&a.keep_env);
    let env = env
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let max_runs = if a.until_fail {
        a.max_runs.unwrap_or(1000)
    } else {
        units.len() as u64
    };
    let plan = HuntPlan {
        units,
        test_args,
        max_runs,
        repeats: a.until_fail,
        max_duration: a.max_duration,
        cores: (0..jobs).map(|i| cores[i % cores.len()]).collect(),
        test_timeout: a.test_timeout,
        fail_on,
        keep_going: a.keep_going,
        verify: !a.no_verify,
        base_seed: a.seed.unwrap_or_else(seed_from_time),
        chaos: a.chaos.into(),
        syscallbuf: args::syscallbuf_wanted(a.syscallbuf, a.no_syscallbuf),
        first_run: 0,
        runs_dir: chaos_dir.join("runs"),
        env,
        removed_env,
        control: control.clone(),
    };
    let archives_dir = chaos_dir.join("archives");
    let color = args::ColorWhen::resolve(a.cargo.color).stderr_colored();
    let mut renderer = render::Renderer::new(json, a.cargo.quiet, color, max_runs);
    // An archive not uploaded (upload failed) or held back (it holds credentials).
    let mut undelivered = false;
    // Every failing test captured, in order.
    let mut delivered: Vec<Delivered> = Vec::new();
    if !json {
        let chaos: recorder::sched::Chaos = a.chaos.into();
        eprintln!(
            "{:>12} seeds {} + run number, chaos {} ({})",
            "Scheduling",
            plan.base_seed,
            chaos.name(),
            chaos.seed_note()
        );
    }
    let mut build_instrumented = || -> anyhow::Result<Vec<Arc<build::TestBinary>>> {
        let mut cargo = a.cargo.clone();
        cargo.instrument = true;
        Ok(build::build(&cargo)?
            .binaries
            .into_iter()
            .map(Arc::new)
            .collect())
    };
    let mut announce = |runs: u64| {
        let line = format!(
            "no failure in {runs} runs: building the tests with the tick counter; every \
             other run now uses that build (--instrument: always, --no-instrument: never)"
        );
        if json {
            tracing::info!("{line}");
        } else {
            eprintln!("{:>12} {line}", "Instrument");
        }
    };
    control.set_hunting(true);
    let end = auto::hunt(
        &plan,
        instrument,
        &mut build_instrumented,
        &mut announce,
        &mut |ev| {
            match ev {
                HuntEvent::Started { run, unit, seed } => {
                    if json {
                        emit(&Message::RunStarted { run, unit, seed });
                    }
                }
                HuntEvent::Finished {
                    run,
                    unit,
                    status,
                    outcome,
                    duration,
                    failed,
                    output,
                } => {
                    if json {
                        let output = failed.then(|| {
                            let file = save_output(&chaos_dir, run, &output.0, &output.1);
                            crate::messages::RunOutput::new(&output.0, &output.1, file)
                        });
                        emit(&Message::RunFinished {
                            run,
                            unit: unit.clone(),
                            status,
                            outcome: outcome_name(outcome),
                            failed,
                            duration_ms: duration.as_millis() as u64,
                            output,
                        });
                    }
                    renderer.finished(run, &unit, status, failed);
                }
                HuntEvent::Failed(f) => {
                    renderer.suspend(|| {
                        capture(
                            &f,
                            &archives_dir,
                            &CaptureOptions {
                                upload: a.upload.as_deref(),
                                allow_secrets: a.allow_secrets,
                                keep_env: &a.keep_env,
                                json,
                            },
                            &mut undelivered,
                            &mut delivered,
                        )
                    })?;
                }
            }
            Ok(())
        },
    );
    control.set_hunting(false);
    renderer.done();
    let end = end?;
    let (runs, failures, verify_failed) = match end {
        HuntEnd::Passed {
            runs,
            verify_failed,
        } => (runs, 0, verify_failed),
        HuntEnd::Failed {
            runs,
            failures,
            verify_failed,
        } => (runs, failures, verify_failed),
    };
    annotations::report(&delivered, &workspace_root, json);
    if let Some(path) = &a.junit {
        junit::write(path, &hunted, &delivered, runs, started.elapsed())?;
    }
    // A failure that could not be captured in a form that replays is the tool failing
    // at its job.
    let interrupted_by = control.stopped_by();
    let code = if let Some(sig) = interrupted_by {
        exit_codes::stopped_by_signal(sig)
    } else if undelivered || (failures == 0 && verify_failed > 0) {
        exit_codes::TOOL_ERROR
    } else if failures > 0 {
        exit_codes::CAPTURED
    } else {
        exit_codes::OK
    };
    if json {
        emit(&Message::Finished {
            runs,
            failures,
            verify_failed,
            exit_code: code,
            error: None,
            interrupted_by: interrupted_by.map(signal_name),
        });
    } else if let Some(sig) = interrupted_by {
        eprintln!(
            "{:>12} {runs} runs, stopped by {}; {failures} distinct failure(s) captured",
            "Interrupted",
            signal_name(sig)
        );
    } else if failures == 0 && verify_failed > 0 {
        eprintln!(
            "{:>12} {runs} runs, {verify_failed} failing run(s) that did not replay, none captured",
            "Finished"
        );
    } else if failures == 0 {
        eprintln!("{:>12} {runs} runs, no failure", "Finished");
    } else {
        // The closing summary: with frequent failures the captures scroll away.
        eprintln!(
            "{:>12} {runs} runs, {failures} distinct failure(s) captured{}:",
            "Finished",
            if verify_failed > 0 {
                format!(", {verify_failed} failing run(s) that did not replay")
            } else {
                String::new()
            }
        );
        for d in &delivered {
            eprintln!(
                "  {}{}\n      {}",
                d.failure.test.as_deref().unwrap_or(&d.unit),
                d.failure
                    .location
                    .as_deref()
                    .map(|l| format!(" (panicked at {l})"))
                    .unwrap_or_default(),
                d.replay_command
            );
        }
    }
    Ok(code)
}

/// What to do with a captured run's archive.
struct CaptureOptions<'a> {
    /// `--upload`.
    upload: Option<&'a str>,
    /// `--allow-secrets`: upload an archive that holds credentials.
    allow_secrets: bool,
    /// `--keep-env`: variables let through on purpose.
    keep_env: &'a [String],
    /// `--message-format json`.
    json: bool,
}

/// One failing test captured: what the JUnit report, the summary and the annotations
/// say about it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// What ran (`package/target[::test]`).
    pub unit: String,
    /// Its test binary, `package/target`.
    pub binary: String,
    /// The failing test and its panic.
    pub failure: failures::TestFailure,
    /// The archive on disk.
    pub archive: std::path::PathBuf,
    /// Where it was uploaded.
    pub url: Option<String>,
    /// The command that replays it.
    pub replay_command: String,
    /// What the run printed (stdout then stderr).
    pub output: String,
    /// Kept local: it holds credentials, or its upload failed.
    pub undelivered: bool,
}

/// Packs a failing run, uploads it, and tells the user how to replay it: one archive
/// for each of its failing tests not seen before in the hunt (they share the
/// recording). An archive that holds credentials is moved to
/// [`crate::credentials::held_dir`] and not uploaded (unless allowed); `undelivered` is
/// then set, as when the upload fails.
fn capture(
    f: &hunt::Failure,
    archives_dir: &std::path::Path,
    o: &CaptureOptions,
    undelivered: &mut bool,
    delivered: &mut Vec<Delivered>,
) -> anyhow::Result<()> {
    let json = o.json;
    if !json {
        eprintln!(
            "{:>12} run {} of {} (seed {}) failed with status {}",
            "Failed",
            f.run,
            f.unit.label(),
            f.seed,
            f.status
        );
        eprintln!("---- output of the failing run ----");
        eprint!("{}", f.stdout);
        eprint!("{}", f.stderr);
        eprintln!("---- end of output ----");
    }
    if let hunt::Verification::Fails(reason) = &f.verification {
        if json {
            emit(&Message::VerifyFailed {
                run: f.run,
                unit: f.unit.label(),
                reason: reason.clone(),
            });
        } else {
            eprintln!(
                "warning: run {} does not replay, so it is not captured (the hunt goes on): {reason}",
                f.run
            );
        }
        let _ = std::fs::remove_dir_all(&f.dir);
        return Ok(());
    }
    std::fs::create_dir_all(archives_dir)?;
    let mut result = Ok(());
    for tf in &f.failures {
        result = capture_one(f, tf, archives_dir, o, undelivered, delivered);
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&f.dir);
    result
}

/// One archive of run `f`, named after its failing test `tf`.
fn capture_one(
    f: &hunt::Failure,
    tf: &failures::TestFailure,
    archives_dir: &std::path::Path,
    o: &CaptureOptions,
    undelivered: &mut bool,
    delivered: &mut Vec<Delivered>,
) -> anyhow::Result<()> {
    let json = o.json;
    let verified = f.verification == hunt::Verification::Replays;
    let test_name = tf.test.clone();
    let identity = packer::TestIdentity {
        package: Some(f.unit.binary.package.clone()),
        binary: Some(f.unit.binary.target.clone()),
        test_name: test_name.clone(),
    };
    let mut opts = packer::PackOptions::for_test(identity);
    opts.allow_env = o.keep_env.to_vec();
    let mut packed = packer::pack(&f.trace, archives_dir, &opts, &mut |_| {})
        .with_context(|| format!("packing {}", f.trace.display()))?;
    let held = !packed.manifest.tokens.is_empty() && !o.allow_secrets;
    let credentials = crate::credentials::describe(Some(&f.trace), &packed.manifest.tokens);
    let mut record = Delivered {
        unit: f.unit.label(),
        binary: format!("{}/{}", f.unit.binary.package, f.unit.binary.target),
        failure: tf.clone(),
        archive: packed.path.clone(),
        url: None,
        replay_command: String::new(),
        output: format!("{}{}", f.stdout, f.stderr),
        undelivered: false,
    };
    if held {
        let dir = crate::credentials::held_dir(archives_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let to = dir.join(packed.path.file_name().unwrap_or_default());
        std::fs::rename(&packed.path, &to)
            .with_context(|| format!("moving {} to {}", packed.path.display(), to.display()))?;
        packed.path = to;
        *undelivered = true;
        record.archive = packed.path.clone();
        record.undelivered = true;
        record.replay_command = format!(
            "cargo replay-artifact {}",
            shell_quote(&packed.path.display().to_string())
        );
        crate::credentials::report_held_to_github(&packed.path, &credentials);
        if !json {
            crate::credentials::print_held(&packed.path, &credentials);
            eprintln!(
                "replay it on this machine with:\n    {}",
                record.replay_command
            );
        } else {
            emit(&Message::HeldBack {
                archive: packed.path.display().to_string(),
                credentials,
                run: f.run,
            });
        }
        delivered.push(record);
        return Ok(());
    }
    if !credentials.is_empty() {
        eprintln!(
            "warning: {} holds credentials, shared as {} allows:",
            packed.path.display(),
            crate::credentials::ALLOW_FLAG
        );
        for l in &credentials {
            eprintln!("  - {l}");
        }
    }
    let mut url = None;
    if let Some(target) = o.upload {
        let topts = packer::transport::TransportOptions::from_env()?;
        match packer::transport::upload(&packed.path, target, &topts, &mut |_| {}) {
            Ok(up) => url = Some(up.location),
            Err(e) => {
                *undelivered = true;
                record.undelivered = true;
                eprintln!("error: uploading the archive failed: {e:#}");
                eprintln!("the archive is kept at {}", packed.path.display());
            }
        }
    }
    let where_ = url
        .clone()
        .unwrap_or_else(|| packed.path.display().to_string());
    let replay_command = format!("cargo replay-artifact {}", shell_quote(&where_));
    record.url = url.clone();
    record.replay_command = replay_command.clone();
    crate::archive_cmds::report_to_github(&packed.path, url.as_deref());
    if json {
        emit(&Message::Captured {
            archive: packed.path.display().to_string(),
            url,
            package: f.unit.binary.package.clone(),
            binary: f.unit.binary.target.clone(),
            test: test_name,
            run: f.run,
            seed: f.seed,
            replay_command,
            verified,
            credentials,
            panic_location: tf.location.clone(),
            panic_message: tf.message.clone(),
        });
    } else {
        eprintln!(
            "{:>12} {} ({} bytes{})",
            "Captured",
            packed.path.display(),
            packed.size,
            if verified { ", replays" } else { "" }
        );
        if let Some(u) = &url {
            eprintln!("{:>12} {u}", "Uploaded");
        }
        eprintln!("replay it anywhere with:\n    {replay_command}");
    }
    crate::captures::append_index(
        archives_dir,
        &crate::captures::IndexEntry {
            archive: packed
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            verified,
            test: record.failure.test.clone(),
            panic_location: record.failure.location.clone(),
            url: record.url.clone(),
        },
    );
    delivered.push(record);
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn outcome_name(o: recorder::trace::Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A seed from the clock, when none is given.
pub fn seed_from_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
