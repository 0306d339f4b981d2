//! Arguments of `cargo record-test`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Cargo runs `cargo-record-test record-test ...`.
#[derive(Debug, Parser)]
#[command(name = "cargo-record-test", bin_name = "cargo", version)]
pub struct Cargo {
    /// The subcommand.
    #[command(subcommand)]
    pub command: CargoCommand,
}

/// The one subcommand.
#[derive(Debug, Subcommand)]
pub enum CargoCommand {
    /// Build a crate's tests and record runs until one fails, then pack and upload it.
    #[command(version)]
    RecordTest(RecordTestArgs),
}

/// Cargo's own build options, passed through to `cargo test --no-run`.
#[derive(Debug, Args, Clone, Default)]
pub struct CargoOptions {
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Package(s) to test.
    #[arg(short = 'p', long = "package", value_name = "SPEC")]
    pub packages: Vec<String>,
    /// Test all packages in the workspace.
    #[arg(long)]
    pub workspace: bool,
    /// Test only the library.
    #[arg(long)]
    pub lib: bool,
    /// Test all binaries.
    #[arg(long)]
    pub bins: bool,
    /// Test only these integration tests.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the default feature.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build in release mode.
    #[arg(long, short = 'r')]
    pub release: bool,
    /// Build with this cargo profile (cargo's `--profile`; `-P/--profile` names a
    /// profile of the configuration file, as in nextest).
    #[arg(long = "cargo-profile", value_name = "NAME")]
    pub profile: Option<String>,
    /// Target directory.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
    /// Test only this binary (repeatable).
    #[arg(long = "bin", value_name = "NAME")]
    pub bin: Vec<String>,
    /// Test only this example (repeatable).
    #[arg(long = "example", value_name = "NAME")]
    pub example: Vec<String>,
    /// Test all examples.
    #[arg(long)]
    pub examples: bool,
    /// Test all test targets (integration tests and unit tests).
    #[arg(long = "tests")]
    pub all_tests: bool,
    /// Test all targets.
    #[arg(long)]
    pub all_targets: bool,
    /// Exclude these packages from --workspace.
    #[arg(long, value_name = "SPEC")]
    pub exclude: Vec<String>,
    /// Build for this target triple (the recorder runs x86_64 Linux programs).
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Require Cargo.lock to be up to date.
    #[arg(long)]
    pub locked: bool,
    /// Run without accessing the network.
    #[arg(long)]
    pub offline: bool,
    /// Both --locked and --offline.
    #[arg(long)]
    pub frozen: bool,
    /// Parallel jobs of the build (cargo's `--jobs`) [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = positive::<u32>)]
    pub build_jobs: Option<u32>,
    /// Cargo's verbosity (`-v`, `-vv`).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No cargo output but errors, and no progress lines.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Coloring of cargo's and this tool's output [default: $CARGO_TERM_COLOR, or auto].
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorWhen>,
    /// Build the tests with the recorder's tick counter (LLVM sanitizer coverage), into
    /// `<target dir>/chaos-instrumented`: threads of your crates that spin or compute
    /// without syscalls are then preempted at exact points, also between a load and a
    /// store, and replay needs no breakpoints. Not passed to cargo. Without it or
    /// `--no-instrument`, a hunt starts with the normal build and, after a while without
    /// a failure, gives every other run to the instrumented build.
    #[arg(long, conflicts_with = "no_instrument")]
    pub instrument: bool,
    /// Never use the instrumented build (see `--instrument`).
    #[arg(long)]
    pub no_instrument: bool,
}

impl CargoOptions {
    /// The flags as cargo takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = &self.manifest_path {
            a.extend(["--manifest-path".into(), p.display().to_string()]);
        }
        for p in &self.packages {
            a.extend(["--package".into(), p.clone()]);
        }
        if self.workspace {
            a.push("--workspace".into());
        }
        if self.lib {
            a.push("--lib".into());
        }
        if self.bins {
            a.push("--bins".into());
        }
        for t in &self.tests {
            a.extend(["--test".into(), t.clone()]);
        }
        for f in &self.features {
            a.extend(["--features".into(), f.clone()]);
        }
        if self.all_features {
            a.push("--all-features".into());
        }
        if self.no_default_features {
            a.push("--no-default-features".into());
        }
        if self.release {
            a.push("--release".into());
        }
        if let Some(p) = &self.profile {
            a.extend(["--profile".into(), p.clone()]);
        }
        for b in &self.bin {
            a.extend(["--bin".into(), b.clone()]);
        }
        for e in &self.example {
            a.extend(["--example".into(), e.clone()]);
        }
        for (on, flag) in [
            (self.examples, "--examples"),
            (self.all_tests, "--tests"),
            (self.all_targets, "--all-targets"),
            (self.locked, "--locked"),
            (self.offline, "--offline"),
            (self.frozen, "--frozen"),
            (self.quiet, "--quiet"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        for e in &self.exclude {
            a.extend(["--exclude".into(), e.clone()]);
        }
        if let Some(t) = &self.target {
            a.extend(["--target".into(), t.clone()]);
        }
        if let Some(j) = self.build_jobs {
            a.extend(["--jobs".into(), j.to_string()]);
        }
        if self.verbose > 0 {
            a.push(format!("-{}", "v".repeat(self.verbose.into())));
        }
        if let Some(c) = self.color {
            a.extend(["--color".into(), c.as_str().into()]);
        }
        if let (Some(d), false) = (&self.target_dir, self.instrument) {
            // The instrumented build picks its own directory under it.
            a.extend(["--target-dir".into(), d.display().to_string()]);
        }
        a
    }
}

/// `--chaos on|off`: the scheduling policy of the recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChaosArg {
    /// Chaos scheduling: seeded random priorities with change points, heavy-tailed time
    /// slices and tick budgets, starvation of a ready thread.
    On,
    /// The default scheduler: a switch after one syscall in 16, 50 ms slices.
    Off,
}

impl From<ChaosArg> for recorder::sched::Chaos {
    fn from(c: ChaosArg) -> Self {
        match c {
            ChaosArg::On => recorder::sched::Chaos::On,
            ChaosArg::Off => recorder::sched::Chaos::Off,
        }
    }
}

/// A count that must be at least 1 (0 would run or build nothing).
fn positive<T: std::str::FromStr + PartialEq + From<u8>>(text: &str) -> Result<T, String> {
    let n: T = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n == T::from(0) {
        return Err("0 would do nothing: give at least 1".into());
    }
    Ok(n)
}

/// `--color`: when to color output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// The value as cargo spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ColorWhen::Auto => "auto",
            ColorWhen::Always => "always",
            ColorWhen::Never => "never",
        }
    }

    /// `--color`, else `CARGO_TERM_COLOR` (as cargo reads it), else auto.
    pub fn resolve(flag: Option<ColorWhen>) -> ColorWhen {
        flag.or_else(|| {
            std::env::var("CARGO_TERM_COLOR")
                .ok()
                .and_then(|v| ColorWhen::from_str(v.trim(), true).ok())
        })
        .unwrap_or(ColorWhen::Auto)
    }

    /// Whether to color what goes to stderr.
    pub fn stderr_colored(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorWhen::Auto => std::io::stderr().is_terminal(),
            ColorWhen::Always => true,
            ColorWhen::Never => false,
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFormat {
    /// Progress bar and plain lines.
    #[default]
    Human,
    /// One JSON object per line on stdout (see `crate::messages`).
    Json,
}

/// `cargo record-test [OPTIONS] [TESTNAME] [-- TEST_ARGS...]`.
#[derive(Debug, Args)]
pub struct RecordTestArgs {
    /// Cargo's build options.
    #[command(flatten)]
    pub cargo: CargoOptions,
    /// Only run tests whose names contain this (passed to libtest).
    pub testname: Option<String>,
    /// Rerun until a run fails.
    #[arg(long)]
    pub until_fail: bool,
    /// At most this many runs (with --until-fail) [default: 1000].
    #[arg(long, value_parser = positive::<u64>)]
    pub max_runs: Option<u64>,
    /// Stop hunting after this long (e.g. 10m).
    #[arg(long, value_parser = crate::duration::parse_nonzero)]
    pub max_duration: Option<Duration>,
    /// Recordings at once, each pinned to its own core [default: the number of cores]
    /// (`--jobs` is the old spelling).
    #[arg(
        long = "test-threads",
        short = 'j',
        visible_alias = "jobs",
        value_name = "N",
        value_parser = positive::<u32>
    )]
    pub jobs: Option<u32>,
    /// A run that takes longer than this is a failure (a hang) and is captured.
    #[arg(long, value_parser = crate::duration::parse_nonzero)]
    pub test_timeout: Option<Duration>,
    /// Count only failures whose output matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub fail_on: Option<String>,
    /// Where to upload the archive: a directory, file://, http(s):// (presigned PUT),
    /// s3://bucket/prefix/ [default: <target-dir>/chaos/archives].
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Keep hunting after a failure, collecting distinct failures (by test and that
    /// test's own panic location). Every failing test of a run, with or without this,
    /// gets an archive of its own.
    #[arg(long)]
    pub keep_going: bool,
    /// Do not replay a failing run before capturing it. By default each failing run is
    /// replayed once (on its job's core) and captured only if the replay matches; one
    /// that does not is reported with the reason and the hunt goes on.
    #[arg(long)]
    pub no_verify: bool,
    /// Run each test in its own process, as nextest does.
    #[arg(long)]
    pub per_test: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
    /// Hunt only shard M of N of the tests, as nextest shards them: `count:M/N`
    /// (round-robin within each binary) or `hash:M/N` (by a hash of the test's name;
    /// not nextest's hash function, so shards differ from nextest's). For a CI matrix of
    /// N machines.
    #[arg(long, value_name = "KIND:M/N")]
    pub partition: Option<super::test_list::Partition>,
    /// The configuration profile: `[profile.NAME]` of `.config/chaos.toml` or
    /// `[workspace.metadata.chaos]` [default: $CHAOS_PROFILE, or `default`]. Flags
    /// override what it sets.
    #[arg(short = 'P', long = "profile", value_name = "NAME")]
    pub config_profile: Option<String>,
    /// Write a JUnit XML report here: one testcase per test hunted, a captured test as a
    /// failure holding its output, archive and replay command (for GitLab's
    /// `artifacts:reports:junit`, GitHub test-report actions).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Scheduler seed of the first run (later runs use seed + run number).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chaos scheduling, to make races happen (`off`: the scheduler of earlier versions).
    #[arg(long, value_enum, default_value_t = ChaosArg::On, value_name = "on|off")]
    pub chaos: ChaosArg,
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
    /// Let these environment variables through even though they look secret (by name, or
    /// a password inside a URL in the value).
    #[arg(long = "keep-env", value_name = "NAME")]
    pub keep_env: Vec<String>,
    /// Upload (and leave in the archive directory) a capture that holds credentials of a
    /// well-known shape (a GitHub or AWS token the test read...); without it such an
    /// archive is kept aside, in <target-dir>/chaos/held-back, and the exit code is 2.
    #[arg(long)]
    pub allow_secrets: bool,
    /// Arguments for the test binaries (after `--`).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// Whether to record with the syscall-buffering library: `--syscallbuf` or
/// `--no-syscallbuf` (the last one given wins), else on unless
/// `CARGO_CHAOS_SYSCALLBUF=0` is in the environment (so a whole test suite can be run
/// both ways).
pub fn syscallbuf_wanted(on: bool, off: bool) -> bool {
    if on || off {
        return on;
    }
    std::env::var_os("CARGO_CHAOS_SYSCALLBUF").as_deref() != Some(std::ffi::OsStr::new("0"))
}

/// What measures time slices: the running thread's CPU time where the kernel allows a
/// task-clock perf event, or wall-clock time with `CARGO_CHAOS_SLICE_CLOCK=wall` in the
/// environment (to compare the two, or where perf events misbehave).
pub fn slice_clock() -> recorder::preempt::cpu_clock::SliceClock {
    recorder::preempt::cpu_clock::SliceClock::from_env_value(
        std::env::var_os("CARGO_CHAOS_SLICE_CLOCK").as_deref(),
    )
}
