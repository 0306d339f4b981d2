//! Shared helpers: a sandbox per test (its own HOME, cache and target directory), running
//! `cargo record-test` and `cargo replay-artifact`, reading their JSON messages, and
//! reading what a captured run printed from its archive.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub use test_support::{tool, Run};

/// Writes a library crate `name` into `dir` (its own workspace) whose `src/lib.rs` is
/// `lib_rs`: for a test that needs one test of its own.
pub fn write_crate(dir: &Path, name: &str, lib_rs: &str) {
    std::fs::create_dir_all(dir.join("src")).expect("create the crate's directory");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
    )
    .expect("write Cargo.toml");
    std::fs::write(dir.join("src/lib.rs"), lib_rs).expect("write src/lib.rs");
}

/// `tests/example-crate`, the crate with flaky tests.
pub fn example_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/example-crate")
        .canonicalize()
        .expect("tests/example-crate exists")
}

/// Its manifest.
pub fn example_manifest() -> PathBuf {
    example_crate().join("Cargo.toml")
}

/// Copies the example crate's sources (not its target directory) to `dest`.
pub fn copy_example(dest: &Path) {
    let src = example_crate();
    std::fs::create_dir_all(dest.join("src")).expect("create the copy");
    for f in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(src.join(f), dest.join(f)).expect("copy the manifest");
    }
    for e in std::fs::read_dir(src.join("src")).expect("read src/") {
        let e = e.expect("read src/");
        std::fs::copy(e.path(), dest.join("src").join(e.file_name())).expect("copy a source file");
    }
}

/// One test's private directories: HOME, the archive cache, the target directory.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("chaos-record-test-")
            .tempdir()
            .expect("create a temporary directory");
        for d in ["home", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("create the sandbox");
        }
        Sandbox { dir }
    }

    /// `<sandbox>/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The target directory the hunts build into.
    pub fn target(&self) -> PathBuf {
        self.path("target")
    }

    /// `cargo-record-test record-test ARGS` (as cargo runs it).
    pub fn record_test_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(env!("CARGO_BIN_EXE_cargo-record-test"));
        cmd.arg("record-test").args(args);
        cmd
    }

    /// `cargo-replay-artifact replay-artifact ARGS`.
    pub fn replay_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd(env!("CARGO_BIN_EXE_cargo-replay-artifact"));
        cmd.arg("replay-artifact").args(args);
        cmd
    }

    /// Runs `cargo record-test ARGS`.
    pub fn record_test<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::of(self.record_test_cmd(args))
    }

    /// Runs `cargo record-test --manifest-path MANIFEST --target-dir <the sandbox's>
    /// --message-format json ARGS`.
    pub fn hunt_json(&self, manifest: &Path, args: &[&str]) -> Run {
        Run::of(self.hunt_json_cmd(manifest, args))
    }

    /// The command [`Self::hunt_json`] runs, to add to before running it.
    pub fn hunt_json_cmd(&self, manifest: &Path, args: &[&str]) -> Command {
        let target = self.target();
        let mut all: Vec<&OsStr> = vec![
            "--manifest-path".as_ref(),
            manifest.as_os_str(),
            "--target-dir".as_ref(),
            target.as_os_str(),
            "--message-format".as_ref(),
            "json".as_ref(),
        ];
        all.extend(args.iter().map(OsStr::new));
        self.record_test_cmd(all)
    }

    /// Runs `cargo replay-artifact ARGS`.
    pub fn replay<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::of(self.replay_cmd(args))
    }

    /// A command for `bin` under `timeout`, with this sandbox's HOME and cache. Cargo and
    /// rustup keep finding their own homes (they default to $HOME/.cargo and
    /// $HOME/.rustup, which the new HOME would hide).
    fn cmd(&self, bin: &str) -> Command {
        let mut cmd = test_support::under_timeout(bin);
        let real_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| real_home.join(".cargo"));
        let rustup_home = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| real_home.join(".rustup"));
        cmd.env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("CARGO_HOME", cargo_home)
            .env("RUSTUP_HOME", rustup_home);
        // With backtraces on, every panic decompresses the binary's debug info: a long
        // loop without syscalls. When the recorder's watchdog preempts a thread there
        // (it does under load: the time slice is wall time), the replay cannot find the
        // point again (a recorder limitation, see the README). Panics here print their
        // message only.
        cmd.env("RUST_BACKTRACE", "0");
        for v in [
            "GITHUB_ACTIONS",
            "GITHUB_OUTPUT",
            "GITHUB_STEP_SUMMARY",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "CHAOS_LOG",
        ] {
            cmd.env_remove(v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// What `cargo record-test` and `cargo replay-artifact` print: JSON messages on stdout.
pub trait Messages {
    /// The JSON messages on stdout (`--message-format json`): every line must be one.
    fn messages(&self) -> Vec<Value>;
    /// Every stdout line as a JSON value (any shape).
    fn messages_raw(&self) -> Vec<Value>;
    /// The `data` of every message of type `ty`.
    fn messages_of(&self, ty: &str) -> Vec<Value>;
    /// The one `captured` message.
    fn captured(&self) -> Value;
}

impl Messages for Run {
    fn messages(&self) -> Vec<Value> {
        self.messages_raw()
            .into_iter()
            .inspect(|m| {
                assert!(
                    m["type"].is_string() && m["data"].is_object(),
                    "a message is {{type, data}}: {m}"
                );
            })
            .collect()
    }

    fn messages_raw(&self) -> Vec<Value> {
        self.stdout_str()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", self.show()))
            })
            .collect()
    }

    fn messages_of(&self, ty: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["type"] == ty)
            .map(|m| m["data"].clone())
            .collect()
    }

    fn captured(&self) -> Value {
        let c = self.messages_of("captured");
        assert_eq!(
            c.len(),
            1,
            "expected one `captured` message\n{}",
            self.show()
        );
        c[0].clone()
    }
}

/// What the captured run wrote to stdout, as recorded at capture time (read from the
/// archive, unpacked into `scratch`).
pub fn recorded_stdout(archive: &Path, scratch: &Path) -> String {
    let unpacked = packer::unpack(
        archive,
        scratch,
        &packer::UnpackLimits::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("unpacking {}: {e}", archive.display()));
    assert_eq!(unpacked.traces.len(), 1, "one recording per archive");
    let stdout = std::fs::read(unpacked.traces[0].path.join("stdout"))
        .expect("the archive has the run's stdout");
    String::from_utf8_lossy(&stdout).into_owned()
}

/// The first capture group of `re` in `text`, or a panic showing the text.
pub fn capture1(re: &str, text: &str) -> String {
    let re = regex::Regex::new(re).expect("valid regex");
    re.captures(text)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("`{re}` not found in:\n{text}"))
}

/// A hunt of the example crate's two `temp_file_race` tests, which fail together (see
/// flaky.rs), two test threads, until six runs or `--keep-going` is done.
pub const BOTH_TEMP_FILE_RACES: [&str; 8] = [
    "--until-fail",
    "--keep-going",
    "--max-runs",
    "6",
    "temp_file_race",
    "--",
    "--test-threads",
    "2",
];

/// Moves `archive` out of the sandbox's target directory, removes that directory, and
/// replays the archive: the failing run (status 101) must print `expect` again.
pub fn replay_elsewhere(sb: &Sandbox, archive: &Path, expect: &str) -> Run {
    let moved = move_to(archive, &sb.path("elsewhere"));
    std::fs::remove_dir_all(sb.target()).unwrap();
    let replay = sb.replay([&moved]);
    replay.expect_status(101);
    assert!(
        replay.stdout_str().contains(expect),
        "the replay should print `{expect}`\n{}",
        replay.show()
    );
    replay
}

/// Moves `archive` into `dir` (created) and returns the new path.
pub fn move_to(archive: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the destination");
    let dest = dir.join(archive.file_name().expect("archive has a file name"));
    std::fs::rename(archive, &dest).expect("move the archive");
    dest
}
