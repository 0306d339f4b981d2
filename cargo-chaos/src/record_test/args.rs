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
    /// Build with this profile.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Target directory.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
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
    /// At most this many runs (with --until-fail).
    #[arg(long, default_value_t = 1000)]
    pub max_runs: u64,
    /// Stop hunting after this long (e.g. 10m).
    #[arg(long, value_parser = crate::duration::parse)]
    pub max_duration: Option<Duration>,
    /// Recordings at once, each pinned to its own core [default: the number of cores].
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// A run that takes longer than this is a failure (a hang) and is captured.
    #[arg(long, value_parser = crate::duration::parse)]
    pub test_timeout: Option<Duration>,
    /// Count only failures whose output matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub fail_on: Option<String>,
    /// Where to upload the archive: a directory, file://, http(s):// (presigned PUT),
    /// s3://bucket/prefix/ [default: <target-dir>/chaos/archives].
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Keep hunting after a failure, collecting distinct failures (by test and panic
    /// location).
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
    /// Scheduler seed of the first run (later runs use seed + run number).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Chaos scheduling, to make races happen (`off`: the scheduler of earlier versions).
    #[arg(long, value_enum, default_value_t = ChaosArg::On, value_name = "on|off")]
    pub chaos: ChaosArg,
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
