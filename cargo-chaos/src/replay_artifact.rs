//! `cargo replay-artifact <URL|PATH>`: download, verify, cache, check compatibility,
//! then replay the captured run by re-executing it.

use clap::{Parser, Subcommand};

use crate::exit_codes;
use crate::messages::{emit, Message};
use crate::record_test::args::MessageFormat;

/// Cargo runs `cargo-replay-artifact replay-artifact ...`.
#[derive(Debug, Parser)]
#[command(name = "cargo-replay-artifact", bin_name = "cargo", version)]
pub struct Cargo {
    /// The subcommand.
    #[command(subcommand)]
    pub command: CargoCommand,
}

/// The one subcommand.
#[derive(Debug, Subcommand)]
pub enum CargoCommand {
    /// Replay a captured failing run from an archive (path or URL) or a trace directory.
    #[command(version)]
    ReplayArtifact(ReplayArtifactArgs),
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArtifactArgs {
    /// Archive path, trace directory, or URL (file://, http(s)://, s3://, GitHub artifact).
    pub artifact: String,
    /// Do not show the program's output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Only the program's output: no summary line.
    #[arg(long)]
    pub raw: bool,
    /// Accept an archive that unpacks to up to SIZE in all, and members up to SIZE each
    /// (e.g. `8GiB`) [default: 4 GiB in all, 1 GiB a member].
    #[arg(long, value_name = "SIZE", value_parser = crate::sizes::parse)]
    pub max_unpacked_size: Option<u64>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
}

/// Entry point of the `cargo-replay-artifact` binary; returns the exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    crate::output::init_logging();
    let cli = match Cargo::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // A usage error exits 2, as in the other binaries (125 is the replay's).
            return if e.use_stderr() { exit_codes::USAGE } else { 0 };
        }
    };
    let CargoCommand::ReplayArtifact(a) = cli.command;
    let json = a.message_format == MessageFormat::Json;
    let limits = crate::sizes::unpack_limits(a.max_unpacked_size);
    // With JSON, stdout carries only messages: a refusal ends with `replayed` too.
    let refused = |error: String| {
        if json {
            emit(&Message::Replayed {
                test: None,
                events: 0,
                matched: false,
                status: exit_codes::REPLAY_FAILED,
                error: Some(error),
            });
        }
        exit_codes::REPLAY_FAILED
    };
    let resolved = match crate::archive_cmds::resolve(&a.artifact, &limits) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: the archive was refused: {e:#}");
            return refused(format!("the archive was refused: {e:#}"));
        }
    };
    if !resolved.problems.is_empty() {
        for p in &resolved.problems {
            eprintln!("error: this machine cannot replay it: {p}");
        }
        let all: Vec<String> = resolved.problems.iter().map(|p| p.to_string()).collect();
        return refused(format!("this machine cannot replay it: {}", all.join("; ")));
    }
    let test = resolved.manifest.as_ref().and_then(|m| {
        m.recordings
            .first()
            .and_then(|r| r.test.test_name.clone().or_else(|| r.test.binary.clone()))
    });
    let mut forward = crate::output::forward(a.quiet);
    // With JSON, the program's writes become `output` messages: stdout stays parseable.
    let mut sink = |stream: recorder::output::Stream, data: &[u8]| {
        if !json {
            forward(stream, data);
        } else if !a.quiet {
            emit(&Message::Output {
                stream: match stream {
                    recorder::output::Stream::Stdout => "stdout",
                    recorder::output::Stream::Stderr => "stderr",
                },
                text: String::from_utf8_lossy(data).into_owned(),
            });
        }
    };
    let result = recorder::replay::replay(&resolved.dir, &mut sink);
    let label = test
        .clone()
        .unwrap_or_else(|| "the recorded program".into());
    match result {
        Ok(s) => {
            let status = s.exit.status();
            if json {
                emit(&Message::Replayed {
                    test,
                    events: s.events,
                    matched: true,
                    status,
                    error: None,
                });
            } else if !a.raw {
                let end = if s.cut_short {
                    " up to where the recording was stopped"
                } else {
                    ""
                };
                eprintln!("replay-artifact: {label}: {} events, the replay matched the recording{end} (status {status})", s.events);
            }
            status
        }
        Err(e) => {
            if json {
                emit(&Message::Replayed {
                    test,
                    events: 0,
                    matched: false,
                    status: exit_codes::REPLAY_FAILED,
                    error: Some(e.to_string()),
                });
            }
            eprintln!("replay-artifact: {label}: the replay did not match the recording: {e}");
            exit_codes::REPLAY_FAILED
        }
    }
}
