//! `--instrument`: test binaries built with the recorder's tick counter
//! (`recorder::ticks`), so spinning and CPU-bound code of the user's crates is preempted
//! at exact, replayable points without breakpoints.
//!
//! The instrumented build goes into its own directory under the target dir
//! (`chaos-instrumented/`), so the user's normal build is never invalidated, and is made
//! with `--target <host>` so that RUSTFLAGS reach the test code only: build scripts and
//! proc-macros run inside cargo and stay uninstrumented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

/// What the instrumented build needs: where it goes, for which target, with which flags.
#[derive(Debug, Clone)]
pub struct Instrumented {
    /// `<target dir>/chaos-instrumented`.
    pub target_dir: PathBuf,
    /// The host triple passed as `--target`.
    pub triple: String,
    /// The encoded rustflags (`CARGO_ENCODED_RUSTFLAGS`: the user's, then ours).
    pub encoded_rustflags: String,
}

/// Compiles the tick callbacks into `<target dir>/chaos-instrumented/` and works out the
/// build's settings.
pub fn prepare(target_dir: &Path) -> anyhow::Result<Instrumented> {
    let dir = target_dir.join("chaos-instrumented");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let object = compile_callbacks(&dir)?;
    let mut flags = user_rustflags();
    flags.extend(recorder::ticks::rustflags(&object));
    Ok(Instrumented {
        target_dir: dir,
        triple: host_triple()?,
        encoded_rustflags: flags.join("\x1f"),
    })
}

/// Writes the callbacks' C source and compiles it with `cc` (the C compiler rustc links
/// with); returns the object. Its name carries a hash of the source: cargo's
/// fingerprints include the flags, not the object, so new callbacks must change the
/// flags to get relinked.
fn compile_callbacks(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = recorder::ticks::CALLBACKS_C;
    let tag = &blake3::hash(text.as_bytes()).to_hex()[..12];
    let source = dir.join(format!("chaos-ticks-{tag}.c"));
    let object = dir.join(format!("chaos-ticks-{tag}.o"));
    if object.is_file() {
        return Ok(object);
    }
    std::fs::write(&source, text).with_context(|| format!("writing {}", source.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-c", "-fPIC", "-ftls-model=initial-exec"])
        .arg(format!("-DCHAOS_TICK_NR={}", recorder::ticks::TICK_SYSCALL))
        .arg("-o")
        .arg(&object)
        .arg(&source)
        .output()
        .with_context(|| format!("running the C compiler `{cc}` (set CC to choose another)"))?;
    if !out.status.success() {
        bail!(
            "compiling the tick callbacks with `{cc}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(object)
}

/// The flags the user's build would get from the environment (cargo's precedence:
/// `CARGO_ENCODED_RUSTFLAGS`, then `RUSTFLAGS`).
fn user_rustflags() -> Vec<String> {
    if let Ok(enc) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        return enc
            .split('\x1f')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
    }
    std::env::var("RUSTFLAGS")
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The host triple, from `rustc -vV` (asked once per process: the build's library
/// path and the instrumented build both want it).
pub fn host_triple() -> anyhow::Result<String> {
    static HOST: OnceLock<Result<String, String>> = OnceLock::new();
    HOST.get_or_init(|| ask_host_triple().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn ask_host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running `{rustc} -vV`"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` printed no host triple")
}

impl Instrumented {
    /// Points `cmd` (a `cargo test --no-run`) at the instrumented build.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.arg("--target")
            .arg(&self.triple)
            .arg("--target-dir")
            .arg(&self.target_dir)
            .env_remove("RUSTFLAGS")
            .env("CARGO_ENCODED_RUSTFLAGS", &self.encoded_rustflags);
    }

    /// Where the build's artifacts for `profile_dir` (`debug`, `release`...) go.
    pub fn artifact_dir(&self) -> PathBuf {
        self.target_dir.join(&self.triple)
    }
}
