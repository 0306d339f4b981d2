//! Builds the Rust fixture crate `tests/fixtures/rust-suite` once per process with
//! `cargo test --no-run --message-format=json` and finds its executables in cargo's JSON
//! messages. Shared by `tests/threads.rs` and `benches/threads.rs` (included with
//! `#[path]`), so it uses only std and serde_json.
//!
//! The build goes to `<workspace>/target/fixture-rust-suite` (`CARGO_TARGET_DIR`), so it
//! is incremental across runs and processes running at once share it (cargo locks it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The executables of the fixture crate.
#[derive(Debug)]
pub struct Suite {
    /// Integration test targets (`tests/*.rs`) by target name: `std_threads`,
    /// `tokio_net`, `panic`, `parallelism`.
    pub tests: BTreeMap<String, PathBuf>,
    /// Binary targets (`src/bin/*.rs`) by name: `pingpong`.
    pub bins: BTreeMap<String, PathBuf>,
}

impl Suite {
    /// The test executable of target `name`.
    ///
    /// # Panics
    /// When the build did not produce it.
    #[allow(dead_code)]
    pub fn test(&self, name: &str) -> &Path {
        self.tests.get(name).unwrap_or_else(|| {
            panic!(
                "the fixture crate has no test target `{name}` (it has {:?})",
                self.tests.keys().collect::<Vec<_>>()
            )
        })
    }

    /// The binary of target `name`.
    ///
    /// # Panics
    /// When the build did not produce it.
    #[allow(dead_code)]
    pub fn bin(&self, name: &str) -> &Path {
        self.bins.get(name).unwrap_or_else(|| {
            panic!(
                "the fixture crate has no binary `{name}` (it has {:?})",
                self.bins.keys().collect::<Vec<_>>()
            )
        })
    }
}

pub use test_support::workspace_root;

/// The fixture crate's directory.
#[allow(dead_code)]
pub fn suite_dir() -> PathBuf {
    workspace_root()
        .join("tests")
        .join("fixtures")
        .join("rust-suite")
}

/// The fixture crate, built on first use (once per process).
///
/// # Panics
/// When the build fails (with cargo's output).
#[allow(dead_code)]
pub fn suite() -> &'static Suite {
    static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();
    match SUITE.get_or_init(build) {
        Ok(s) => s,
        Err(e) => panic!("cannot build the Rust fixture crate: {e}"),
    }
}

#[allow(dead_code)]
fn build() -> Result<Suite, String> {
    build_crate(
        &suite_dir(),
        &workspace_root().join("target").join("fixture-rust-suite"),
        &|_| {},
    )
}

/// Builds the fixture crate in `crate_dir` into `target_dir` (`cargo test --no-run`,
/// after `configure` had its say) and collects its executables.
pub fn build_crate(
    crate_dir: &Path,
    target_dir: &Path,
    configure: &dyn Fn(&mut Command),
) -> Result<Suite, String> {
    let manifest = crate_dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("test")
        .arg("--no-run")
        .arg("--locked")
        .arg("--message-format=json")
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        // Settings meant for the outer build must not leak into this one.
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(Stdio::null());
    configure(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({})\n--- stderr ---\n{}\n--- messages ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            compiler_messages(&stdout)
        ));
    }
    let mut suite = Suite {
        tests: BTreeMap::new(),
        bins: BTreeMap::new(),
    };
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let name = msg["target"]["name"]
            .as_str()
            .ok_or_else(|| format!("an artifact without a target name: {line}"))?
            .to_string();
        let kinds: Vec<&str> = msg["target"]["kind"]
            .as_array()
            .map(|k| k.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        if kinds.contains(&"test") {
            suite.tests.insert(name, PathBuf::from(exe));
        } else if kinds.contains(&"bin") && msg["profile"]["test"] == false {
            suite.bins.insert(name, PathBuf::from(exe));
        }
    }
    if suite.tests.is_empty() {
        return Err(format!(
            "{cmd:?} reported no test executables\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(suite)
}

/// The rendered compiler messages in cargo's JSON output, for error reports.
fn compiler_messages(stdout: &str) -> String {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-message")
        .filter_map(|m| m["message"]["rendered"].as_str().map(str::to_owned))
        .collect()
}
