//! `cargo record-test`: build a crate's tests, record runs until one fails, pack the
//! failing run and upload it, print the command that replays it.

pub mod args;
pub mod auto;
pub mod build;
pub mod hunt;
pub mod hunt_dir;
pub mod instrument;
mod render;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::exit_codes;
use crate::messages::{emit, Message};
use args::{Cargo, CargoCommand, MessageFormat, RecordTestArgs};
use hunt::{HuntEnd, HuntEvent, HuntPlan, Unit};

/// Entry point of the `cargo-record-test` binary; returns the exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    crate::output::init_logging();
    let cli = match Cargo::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_codes::TOOL_ERROR
            } else {
                0
            };
        }
    };
    let CargoCommand::RecordTest(a) = cli.command;
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_codes::TOOL_ERROR
        }
    }
}

fn run(a: RecordTestArgs) -> anyhow::Result<i32> {
    let json = a.message_format == MessageFormat::Json;
    let fail_on = a
        .fail_on
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--fail-on is not a valid regular expression")?;
    let instrument = auto::Instrument::from_options(&a.cargo);
    let built = build::build(&a.cargo)?;
    let chaos_dir = built.target_dir.join("chaos");
    let mut test_args: Vec<String> = a.testname.iter().cloned().collect();
    test_args.extend(a.test_args.iter().cloned());
    let binaries: Vec<Arc<build::TestBinary>> = built.binaries.into_iter().map(Arc::new).collect();
    let mut units = Vec::new();
    if a.per_test {
        for b in &binaries {
            for t in build::list_tests(b, a.testname.as_deref(), &a.test_args)? {
                units.push(Unit {
                    binary: b.clone(),
                    test: Some(t),
                });
            }
        }
        test_args = a.test_args.clone();
        if units.is_empty() {
            anyhow::bail!(
                "no test matches{}",
                a.testname
                    .as_deref()
                    .map(|t| format!(" `{t}`"))
                    .unwrap_or_default()
            );
        }
    } else {
        units = binaries
            .iter()
            .map(|b| Unit {
                binary: b.clone(),
                test: None,
            })
            .collect();
    }
    let cores = recorder::spawn::cpu_set();
    let jobs = a.jobs.unwrap_or(cores.len()).max(1);
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
        a.max_runs
    } else {
        units.len() as u64
    };
    let plan = HuntPlan {
        units,
        test_args,
        max_runs,
        max_duration: a.max_duration,
        cores: (0..jobs).map(|i| cores[i % cores.len()]).collect(),
        test_timeout: a.test_timeout,
        fail_on,
        keep_going: a.keep_going,
        verify: !a.no_verify,
        base_seed: a.seed.unwrap_or_else(seed_from_time),
        chaos: a.chaos.into(),
        first_run: 0,
        runs_dir: chaos_dir.join("runs"),
        env,
        removed_env,
    };
    let archives_dir = chaos_dir.join("archives");
    let mut renderer = render::Renderer::new(json, max_runs);
    // An archive not uploaded (upload failed) or held back (it holds credentials).
    let mut undelivered = false;
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
                } => {
                    if json {
                        emit(&Message::RunFinished {
                            run,
                            unit: unit.clone(),
                            status,
                            outcome: outcome_name(outcome),
                            failed,
                            duration_ms: duration.as_millis() as u64,
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
                        )
                    })?;
                }
            }
            Ok(())
        },
    );
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
    // A failure that could not be captured in a form that replays is the tool failing
    // at its job.
    let code = if undelivered || (failures == 0 && verify_failed > 0) {
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
        });
    } else if failures == 0 && verify_failed > 0 {
        eprintln!(
            "{:>12} {runs} runs, {verify_failed} failing run(s) that did not replay, none captured",
            "Finished"
        );
    } else if failures == 0 {
        eprintln!("{:>12} {runs} runs, no failure", "Finished");
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

/// Packs a failing run, uploads it, and tells the user how to replay it. An archive
/// that holds credentials is moved to [`crate::credentials::held_dir`] and not uploaded
/// (unless allowed); `undelivered` is then set, as when the upload fails.
fn capture(
    f: &hunt::Failure,
    archives_dir: &std::path::Path,
    o: &CaptureOptions,
    undelivered: &mut bool,
) -> anyhow::Result<()> {
    let json = o.json;
    let test_name = (!f.failed_tests.is_empty()).then(|| f.failed_tests.join(","));
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
    let verified = f.verification == hunt::Verification::Replays;
    std::fs::create_dir_all(archives_dir)?;
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
    let _ = std::fs::remove_dir_all(&f.dir);
    if held {
        let dir = crate::credentials::held_dir(archives_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let to = dir.join(packed.path.file_name().unwrap_or_default());
        std::fs::rename(&packed.path, &to)
            .with_context(|| format!("moving {} to {}", packed.path.display(), to.display()))?;
        packed.path = to;
        *undelivered = true;
        crate::credentials::report_held_to_github(&packed.path, &credentials);
        if !json {
            crate::credentials::print_held(&packed.path, &credentials);
            eprintln!(
                "replay it on this machine with:\n    cargo replay-artifact {}",
                shell_quote(&packed.path.display().to_string())
            );
        } else {
            emit(&Message::HeldBack {
                archive: packed.path.display().to_string(),
                credentials,
                run: f.run,
            });
        }
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
                eprintln!("error: uploading the archive failed: {e:#}");
                eprintln!("the archive is kept at {}", packed.path.display());
            }
        }
    }
    let where_ = url
        .clone()
        .unwrap_or_else(|| packed.path.display().to_string());
    let replay_command = format!("cargo replay-artifact {}", shell_quote(&where_));
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
