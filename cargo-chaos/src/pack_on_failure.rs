//! `cargo chaos record --pack-on-failure`: record a program (one test, as nextest's
//! wrapper scripts run it) and keep an archive only when it fails. A passing run leaves
//! nothing behind; a failing one is replayed once (kept only if the replay matches, as
//! `cargo record-test` does) and packed into the archives directory, named after the
//! test nextest says it is running (`NEXTEST_BINARY_ID`, `NEXTEST_TEST_NAME`).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The archives directory when none is given: `<target dir>/chaos/archives`, the target
/// directory being the first directory above the program holding cargo's
/// `CACHEDIR.TAG` (a test binary lives in `<target>/<profile>/deps/`); else
/// `$CARGO_TARGET_DIR/chaos/archives`, else `./target/chaos/archives`.
pub fn default_archive_dir(program: &Path) -> PathBuf {
    let program = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    if let Some(target) = program
        .ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return target.join("chaos").join("archives");
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("chaos")
        .join("archives")
}

/// The test's identity, from nextest's variables: `NEXTEST_BINARY_ID` is `package` (its
/// library's unit tests) or `package::target` / `package::bin/target`.
pub fn identity_from_env(program: &Path) -> packer::TestIdentity {
    let id = std::env::var("NEXTEST_BINARY_ID").ok();
    let (package, binary) = match id.as_deref().map(|i| i.split_once("::")) {
        Some(Some((p, b))) => (
            Some(p.to_string()),
            Some(b.rsplit('/').next().unwrap_or(b).to_string()),
        ),
        Some(None) => (id.clone(), id.as_deref().map(|p| p.replace('-', "_"))),
        None => (
            None,
            program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
        ),
    };
    packer::TestIdentity {
        package,
        binary,
        test_name: std::env::var("NEXTEST_TEST_NAME")
            .ok()
            .filter(|n| !n.is_empty()),
    }
}

/// What to do with a failing run.
pub struct Options<'a> {
    /// Where archives go.
    pub archive_dir: &'a Path,
    /// `--keep-env`.
    pub keep_env: &'a [String],
    /// `--allow-secrets`.
    pub allow_secrets: bool,
}

/// Replays the failing run in `trace` (status `status`) once and, if it matches, packs
/// it. Prints what it did on stderr (nextest shows it with the test's output).
pub fn capture(
    trace: &Path,
    status: i32,
    identity: packer::TestIdentity,
    o: &Options,
) -> anyhow::Result<()> {
    use crate::record_test::hunt::Verification;
    if let Verification::Fails(reason) = Verification::check(trace, status) {
        eprintln!("chaos: the failing run does not replay, so it is not kept: {reason}");
        return Ok(());
    }
    std::fs::create_dir_all(o.archive_dir)
        .with_context(|| format!("creating {}", o.archive_dir.display()))?;
    let test = identity.test_name.clone();
    let mut opts = packer::PackOptions::for_test(identity);
    opts.allow_env = o.keep_env.to_vec();
    let mut packed = packer::pack(trace, o.archive_dir, &opts, &mut |_| {})
        .with_context(|| format!("packing {}", trace.display()))?;
    let credentials = crate::credentials::describe(Some(trace), &packed.manifest.tokens);
    if !packed.manifest.tokens.is_empty() && !o.allow_secrets {
        let dir = crate::credentials::held_dir(o.archive_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let to = dir.join(packed.path.file_name().unwrap_or_default());
        std::fs::rename(&packed.path, &to)?;
        packed.path = to;
        crate::credentials::print_held(&packed.path, &credentials);
        return Ok(());
    }
    crate::captures::append_index(
        o.archive_dir,
        &crate::captures::IndexEntry {
            archive: packed
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            verified: true,
            test,
            panic_location: None,
            url: None,
        },
    );
    eprintln!(
        "chaos: captured the failing run: {} ({} bytes, replays)\nreplay it with:\n    cargo replay-artifact {}",
        packed.path.display(),
        packed.size,
        packed.path.display()
    );
    Ok(())
}
