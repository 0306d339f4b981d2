//! `cargo chaos`: the low-level CLI (record, replay, dump).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::exit_codes;

/// Record and replay programs exactly, without a hardware PMU.
#[derive(Debug, Parser)]
#[command(name = "cargo-chaos", bin_name = "cargo chaos", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record one run of a program.
    Record(RecordArgs),
    /// Replay a trace (directory or archive) by re-executing the program.
    Replay(ReplayArgs),
    /// Print a trace's events, one per line.
    Dump(DumpArgs),
    /// Pack recordings into one portable archive (every mapped file included).
    Pack(crate::archive_cmds::PackArgs),
    /// Unpack and verify an archive.
    Unpack(crate::archive_cmds::UnpackArgs),
    /// Upload an archive (directory, file://, http(s)://, s3://).
    Upload(crate::archive_cmds::UploadArgs),
    /// Download and verify an archive.
    Download(crate::archive_cmds::DownloadArgs),
    /// Show an archive's manifest and whether this machine can replay it.
    Inspect(crate::archive_cmds::InspectArgs),
    /// List the captures in target/chaos/archives/ (test, when, status, verified, size).
    Ls(crate::captures::LsArgs),
}

/// `cargo chaos record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where to write the trace (default: a new directory under the user's data dir).
    #[arg(long)]
    pub trace_dir: Option<PathBuf>,
    /// Scheduler seed (default: random; recorded, and printed with `--chaos`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chaos scheduling (default: off, the default scheduler; `cargo record-test` hunts
    /// with it on).
    #[arg(long, value_enum, value_name = "on|off")]
    pub chaos: Option<crate::record_test::args::ChaosArg>,
    /// Record with the syscall-buffering preload library (the default, unless
    /// `CARGO_CHAOS_SYSCALLBUF=0` is in the environment): common calls (read, write,
    /// pread, pwrite, lseek, fstat on regular files; clock_gettime, getrandom) run
    /// without a ptrace stop. Dynamically linked programs only; static ones take the
    /// traced path.
    #[arg(long, overrides_with = "no_syscallbuf")]
    pub syscallbuf: bool,
    /// Record every call through ptrace stops, without the preload library; the
    /// trace's header says which was used.
    #[arg(long, overrides_with = "syscallbuf")]
    pub no_syscallbuf: bool,
    /// Stop a hung program after this long (e.g. `30s`, `2m`); the trace is kept and
    /// marked as timed out.
    #[arg(long, value_parser = crate::duration::parse)]
    pub timeout: Option<std::time::Duration>,
    /// Let these environment variables through even though they look secret (by name, or
    /// a password inside a URL in the value).
    #[arg(long = "keep-env", value_name = "NAME")]
    pub keep_env: Vec<String>,
    /// Keep only a failing run, packed as an archive (replayed once first, kept if it
    /// matches); a passing run leaves nothing. For nextest's wrapper scripts (see
    /// docs/nextest.md): the archive is named after `NEXTEST_TEST_NAME`.
    #[arg(long)]
    pub pack_on_failure: bool,
    /// Where `--pack-on-failure` writes archives [default: `chaos/archives` in the cargo
    /// target directory above the program].
    #[arg(long, value_name = "DIR", requires = "pack_on_failure")]
    pub archive_dir: Option<PathBuf>,
    /// With `--pack-on-failure`: keep an archive that holds credentials with the others
    /// (otherwise it goes to `chaos/held-back`).
    #[arg(long, requires = "pack_on_failure")]
    pub allow_secrets: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// `cargo chaos replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Do not show the program's output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print counters about the replay at the end (events, preemptions, breakpoint hits).
    #[arg(long)]
    pub stats: bool,
    /// For an archive: accept one that unpacks to up to SIZE in all, and members up to
    /// SIZE each (e.g. `8GiB`) [default: 4 GiB in all, 1 GiB a member].
    #[arg(long, value_name = "SIZE", value_parser = crate::sizes::parse)]
    pub max_unpacked_size: Option<u64>,
    /// Prefix every line the program writes with the number of the event that wrote it
    /// (`[event N] `, as `cargo chaos dump` and gdb's `monitor when` number them).
    #[arg(long)]
    pub events: bool,
    /// Debugging with gdb.
    #[command(flatten)]
    pub gdb: crate::gdb::GdbArgs,
    /// The trace directory, an archive, or an archive's URL.
    pub trace: PathBuf,
}

/// `cargo chaos dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The trace directory.
    pub trace: PathBuf,
}

/// Parses arguments (accepting both `cargo-chaos chaos ...`, as cargo runs it, and
/// `cargo-chaos ...`) and runs the command; returns the exit code.
pub fn main_with_args(mut args: Vec<OsString>) -> i32 {
    if args.get(1).is_some_and(|a| a == "chaos") {
        args.remove(1);
    }
    crate::output::init_logging();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit_codes::USAGE } else { 0 };
        }
    };
    let r = match cli.command {
        Command::Record(a) => record(a),
        Command::Replay(a) => replay(a),
        Command::Dump(a) => dump(a),
        Command::Pack(a) => crate::archive_cmds::run_pack(a),
        Command::Unpack(a) => crate::archive_cmds::run_unpack(a),
        Command::Upload(a) => crate::archive_cmds::run_upload(a),
        Command::Download(a) => crate::archive_cmds::run_download(a),
        Command::Inspect(a) => crate::archive_cmds::run_inspect(a),
        Command::Ls(a) => crate::captures::run_ls(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_codes::REPLAY_FAILED
        }
    }
}

fn default_trace_dir(program: &std::path::Path) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --trace-dir")?)
            .join(".local/share"),
    };
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "program".into());
    let dir = base.join("cargo-chaos").join("traces");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for n in 0.. {
        let cand = dir.join(format!("{name}-{n}"));
        if !cand.exists() {
            return Ok(cand);
        }
    }
    unreachable!()
}

fn record(a: RecordArgs) -> anyhow::Result<i32> {
    let program = PathBuf::from(&a.command[0]);
    // With --pack-on-failure, the trace is scratch: removed when this ends.
    let mut scratch = None;
    let trace_dir = match (a.trace_dir, a.pack_on_failure) {
        (Some(d), _) => d,
        (None, true) => scratch
            .insert(
                tempfile::Builder::new()
                    .prefix("chaos-record-")
                    .tempdir()
                    .context("creating a scratch directory for the trace")?,
            )
            .path()
            .join("trace"),
        (None, false) => default_trace_dir(&program)?,
    };
    let (env, removed_env) = crate::env::program_env(&a.keep_env);
    let interrupter = recorder::record::Interrupter::new();
    crate::signals::interrupt_on_ctrl_c(interrupter.clone());
    let chaos: recorder::sched::Chaos = a.chaos.map(Into::into).unwrap_or_default();
    let seed = a.seed.unwrap_or_else(crate::record_test::seed_from_time);
    if a.chaos.is_some() {
        // Only when asked: without it stderr holds nothing of the recorder's but the
        // last line.
        eprintln!(
            "chaos: seed {seed}, chaos {} ({})",
            chaos.name(),
            chaos.seed_note()
        );
    }
    let opts = recorder::record::RecordOptions {
        program: program.clone(),
        args: a.command[1..].to_vec(),
        env,
        removed_env,
        trace_dir: trace_dir.clone(),
        seed: Some(seed),
        chaos,
        timeout: a.timeout,
        interrupter: Some(interrupter),
        capture_cache: recorder::trace::CaptureCache::for_user(),
        syscallbuf: crate::record_test::args::syscallbuf_wanted(a.syscallbuf, a.no_syscallbuf),
        slice_clock: crate::record_test::args::slice_clock(),
        ..Default::default()
    };
    match recorder::record::record(&opts) {
        Ok(summary) if a.pack_on_failure => {
            let status = summary.result.status;
            let failed = status != 0
                && summary.result.outcome != recorder::trace::Outcome::Interrupted
                && summary.result.trace_error.is_none();
            if failed {
                let archive_dir = a
                    .archive_dir
                    .clone()
                    .unwrap_or_else(|| crate::pack_on_failure::default_archive_dir(&program));
                let o = crate::pack_on_failure::Options {
                    archive_dir: &archive_dir,
                    keep_env: &a.keep_env,
                    allow_secrets: a.allow_secrets,
                };
                let identity = crate::pack_on_failure::identity_from_env(&program);
                if let Err(e) =
                    crate::pack_on_failure::capture(&summary.trace, status, identity, &o)
                {
                    // The test's own failure is what the caller must see: its status stays.
                    eprintln!("error: capturing the failing run failed: {e:#}");
                }
            }
            drop(scratch);
            Ok(status)
        }
        Ok(summary) => {
            use recorder::trace::Outcome;
            match summary.result.outcome {
                Outcome::TimedOut => {
                    eprintln!("chaos: the program ran past the time limit and was stopped")
                }
                Outcome::Interrupted => eprintln!("chaos: recording interrupted"),
                _ => {}
            }
            match &summary.result.trace_error {
                Some(e) => {
                    eprintln!(
                        "warning: the trace in {} is incomplete and cannot be replayed: writing it failed: {e}",
                        summary.trace.display()
                    );
                    eprintln!(
                        "warning: the program was not stopped for it: it ran to its end (status {})",
                        summary.result.status
                    );
                }
                None => eprintln!("chaos: trace written to {}", summary.trace.display()),
            }
            Ok(summary.result.status)
        }
        Err(e) => {
            eprintln!("error: recording failed: {e}");
            if trace_dir.join("result.json").exists() {
                eprintln!("chaos: partial trace kept in {}", trace_dir.display());
            }
            Ok(exit_codes::REPLAY_FAILED)
        }
    }
}

fn replay(a: ReplayArgs) -> anyhow::Result<i32> {
    let mut sink = crate::output::forward(a.quiet);
    // A directory is a trace (the recorder says why if it is not a good one); anything
    // else is an archive or a URL for the packer.
    let as_text = a.trace.to_string_lossy();
    // Holds an archive's cache entry in use until the replay is over.
    let mut _resolved = None;
    let trace = if a.trace.is_dir() {
        a.trace.clone()
    } else if !as_text.contains("://") && !a.trace.exists() {
        eprintln!(
            "error: there is no trace directory or archive at {}",
            a.trace.display()
        );
        return Ok(exit_codes::REPLAY_FAILED);
    } else {
        let limits = crate::sizes::unpack_limits(a.max_unpacked_size);
        match crate::archive_cmds::resolve_trace(&a.trace.to_string_lossy(), &limits) {
            Ok(r) => _resolved.insert(r).dir.clone(),
            Err(e) => {
                eprintln!(
                    "error: {} is neither a trace directory nor a usable archive: {e:#}",
                    a.trace.display()
                );
                return Ok(exit_codes::REPLAY_FAILED);
            }
        }
    };
    if a.gdb.wanted() {
        return Ok(a.gdb.run(&trace, a.quiet));
    }
    let result = if a.events {
        let current = std::cell::Cell::new(0u64);
        let mut numbered = crate::output::numbered(&current, sink);
        recorder::replay::replay_observed(&trace, &mut numbered, &mut |_, event| current.set(event))
    } else {
        recorder::replay::replay(&trace, &mut sink)
    };
    match result {
        Ok(summary) => {
            if a.stats {
                eprintln!(
                    "chaos: {} events, {} preemption points found with {} breakpoint hits in {:.3} ms",
                    summary.events,
                    summary.stats.preemptions,
                    summary.stats.preemption_traps,
                    summary.stats.preemption_time.as_secs_f64() * 1000.0
                );
                eprintln!(
                    "chaos: {} threads resumed to a stop, {} buffered calls replayed without one",
                    summary.stats.resumes, summary.stats.fed
                );
            }
            if summary.cut_short {
                eprintln!("chaos: the recording was stopped at this point (time limit or Ctrl-C); so was the replay");
            }
            Ok(summary.exit.status())
        }
        Err(e) => {
            eprintln!("error: replay failed: {e}");
            Ok(exit_codes::REPLAY_FAILED)
        }
    }
}

fn dump(a: DumpArgs) -> anyhow::Result<i32> {
    use std::io::Write;
    let trace = recorder::trace::TraceDir::open(&a.trace)?;
    let mut events = trace.events()?;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while let Some(ev) = events.next_event()? {
        if writeln!(out, "{n:>8} tid={} {}", ev.tid(), ev.describe()).is_err() {
            return Ok(0); // broken pipe: the reader has seen enough
        }
        n += 1;
    }
    if let Some(t) = &events.truncated {
        eprintln!("warning: the trace ends in a damaged chunk after event {n}: {t}");
    }
    Ok(0)
}
