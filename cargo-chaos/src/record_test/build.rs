//! Building the test binaries with cargo and describing how to run each, the way
//! `cargo test` would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context};
use cargo_metadata::{Message, Metadata, MetadataCommand, Package};

use super::args::CargoOptions;

/// One test binary and how cargo would run it.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// Package name.
    pub package: String,
    /// Target name (`integration`, or the package's lib name).
    pub target: String,
    /// Target kind (`lib`, `test`, `bin`...).
    pub kind: String,
    /// The executable.
    pub path: PathBuf,
    /// Working directory: the package's directory.
    pub cwd: PathBuf,
    /// Environment cargo sets for it.
    pub env: Vec<(String, String)>,
}

/// The result of the build.
#[derive(Debug)]
pub struct Built {
    /// The test binaries.
    pub binaries: Vec<TestBinary>,
    /// The target directory.
    pub target_dir: PathBuf,
    /// The cargo workspace's root, where rustc's relative source paths start.
    pub workspace_root: PathBuf,
}

/// The workspace's root and its `[workspace.metadata]` (`cargo metadata --no-deps`).
pub fn workspace(opts: &CargoOptions) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut meta = MetadataCommand::new();
    meta.cargo_path(&cargo).no_deps();
    if let Some(m) = &opts.manifest_path {
        meta.manifest_path(m);
    }
    let metadata = meta.exec().context("running `cargo metadata`")?;
    Ok((
        metadata.workspace_root.into_std_path_buf(),
        metadata.workspace_metadata,
    ))
}

/// Runs `cargo test --no-run --message-format=json-render-diagnostics`, showing cargo's
/// diagnostics as cargo shows them, and collects the test executables.
pub fn build(opts: &CargoOptions) -> anyhow::Result<Built> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = full_metadata(&cargo, opts.manifest_path.as_deref())?;
    let target_dir: PathBuf = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| metadata.target_directory.clone().into_std_path_buf());
    let packages: HashMap<_, &Package> = metadata
        .packages
        .iter()
        .map(|p| (p.id.clone(), p))
        .collect();

    let instrumented = if opts.instrument {
        Some(super::instrument::prepare(&target_dir)?)
    } else {
        None
    };
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .args(opts.to_args());
    if let Some(i) = &instrumented {
        i.apply(&mut cmd);
    }
    // The build's target dir (the instrumented build has its own).
    let build_dir = match &instrumented {
        Some(i) => i.target_dir.clone(),
        None => target_dir.clone(),
    };
    let toolchain_libs = toolchain_lib_dirs();
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting `cargo test --no-run`")?;
    let stdout = child.stdout.take().expect("piped");
    let mut binaries = Vec::new();
    for msg in Message::parse_stream(std::io::BufReader::new(stdout)) {
        let msg = msg.context("reading cargo's JSON output")?;
        if let Message::CompilerArtifact(a) = msg {
            let (Some(exe), true) = (a.executable, a.profile.test) else {
                continue;
            };
            let Some(pkg) = packages.get(&a.package_id) else {
                continue;
            };
            let cwd = pkg
                .manifest_path
                .parent()
                .map(|p| p.as_std_path().to_path_buf())
                .unwrap_or_default();
            binaries.push(TestBinary {
                package: pkg.name.to_string(),
                target: a.target.name.clone(),
                kind: a
                    .target
                    .kind
                    .first()
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                env: cargo_env(
                    pkg,
                    &a.target.name,
                    &cargo,
                    &build_dir,
                    exe.as_std_path(),
                    &toolchain_libs,
                ),
                path: exe.into_std_path_buf(),
                cwd,
            });
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("the build failed (cargo exited with {status})");
    }
    if binaries.is_empty() {
        bail!("cargo built no test binaries (hint: check -p/--test/--lib selections)");
    }
    Ok(Built {
        binaries,
        target_dir,
        workspace_root: metadata.workspace_root.clone().into_std_path_buf(),
    })
}

/// The variables `cargo test` sets for a test binary.
fn cargo_env(
    pkg: &Package,
    target: &str,
    cargo: &str,
    target_dir: &Path,
    exe: &Path,
    toolchain_libs: &[String],
) -> Vec<(String, String)> {
    let v = &pkg.version;
    let dir = pkg
        .manifest_path
        .parent()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut env = vec![
        ("CARGO".to_string(), which(cargo)),
        ("CARGO_MANIFEST_DIR".into(), dir),
        ("CARGO_MANIFEST_PATH".into(), pkg.manifest_path.to_string()),
        ("CARGO_PKG_NAME".into(), pkg.name.to_string()),
        ("CARGO_PKG_VERSION".into(), v.to_string()),
        ("CARGO_PKG_VERSION_MAJOR".into(), v.major.to_string()),
        ("CARGO_PKG_VERSION_MINOR".into(), v.minor.to_string()),
        ("CARGO_PKG_VERSION_PATCH".into(), v.patch.to_string()),
        ("CARGO_PKG_VERSION_PRE".into(), v.pre.to_string()),
        ("CARGO_PKG_AUTHORS".into(), pkg.authors.join(":")),
        (
            "CARGO_PKG_DESCRIPTION".into(),
            pkg.description.clone().unwrap_or_default(),
        ),
        (
            "CARGO_PKG_HOMEPAGE".into(),
            pkg.homepage.clone().unwrap_or_default(),
        ),
        (
            "CARGO_PKG_REPOSITORY".into(),
            pkg.repository.clone().unwrap_or_default(),
        ),
        (
            "CARGO_PKG_LICENSE".into(),
            pkg.license.clone().unwrap_or_default(),
        ),
        ("CARGO_CRATE_NAME".into(), target.replace('-', "_")),
        (
            "CARGO_TARGET_TMPDIR".into(),
            target_dir.join("tmp").display().to_string(),
        ),
    ];
    // As cargo sets it: the profile's directory and its deps (where the executable
    // is), then the toolchain's libraries.
    let deps = exe.parent().unwrap_or(exe);
    let mut libs = vec![
        deps.parent().unwrap_or(deps).display().to_string(),
        deps.display().to_string(),
    ];
    libs.extend(toolchain_libs.iter().cloned());
    if let Ok(old) = std::env::var("LD_LIBRARY_PATH") {
        libs.push(old);
    }
    env.push(("LD_LIBRARY_PATH".into(), libs.join(":")));
    env
}

fn which(cargo: &str) -> String {
    if cargo.contains('/') {
        return cargo.to_string();
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(cargo))
                .find(|c| c.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| cargo.to_string())
}

/// `<sysroot>/lib/rustlib/<host>/lib` and `<sysroot>/lib`, which cargo puts in a test's
/// library path.
fn toolchain_lib_dirs() -> Vec<String> {
    let Some(sysroot) = rustc_sysroot() else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    if let Ok(host) = super::instrument::host_triple() {
        dirs.push(format!("{sysroot}/lib/rustlib/{host}/lib"));
    }
    dirs.push(format!("{sysroot}/lib"));
    dirs
}

/// `rustc --print sysroot`, asked once per process (the instrumented build of a hunt
/// asks again; each rustc behind a rustup proxy costs tens of milliseconds).
fn rustc_sysroot() -> Option<String> {
    static SYSROOT: OnceLock<Option<String>> = OnceLock::new();
    SYSROOT
        .get_or_init(|| {
            let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
                .args(["--print", "sysroot"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .clone()
}

/// `cargo metadata` (with dependencies) of `manifest`, run once per process and
/// manifest: a hunt's instrumented build, which `--instrument auto` starts after a
/// while, describes the same packages (the metadata does not depend on the target or
/// the flags).
fn full_metadata(cargo: &str, manifest: Option<&Path>) -> anyhow::Result<Arc<Metadata>> {
    type Cache = Mutex<HashMap<(String, Option<PathBuf>), Arc<Metadata>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (cargo.to_string(), manifest.map(Path::to_path_buf));
    let cache = CACHE.get_or_init(Default::default);
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(m.clone());
    }
    let mut meta = MetadataCommand::new();
    meta.cargo_path(cargo);
    if let Some(m) = manifest {
        meta.manifest_path(m);
    }
    let metadata = Arc::new(meta.exec().context("running `cargo metadata`")?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, metadata.clone());
    Ok(metadata)
}

/// The user's libtest arguments that change which tests a listing shows: `--ignored`,
/// `--include-ignored`, `--exact` and `--skip FILTER` (`--skip=FILTER`).
fn listing_args(test_args: &[String]) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut args = test_args.iter().map(String::as_str);
    while let Some(a) = args.next() {
        match a {
            "--ignored" | "--include-ignored" | "--exact" => kept.push(a),
            "--skip" => {
                kept.push(a);
                kept.extend(args.next());
            }
            _ if a.starts_with("--skip=") => kept.push(a),
            _ => {}
        }
    }
    kept
}

/// Lists a binary's tests (`--list --format terse`), run natively.
pub fn list_tests(
    bin: &TestBinary,
    filter: Option<&str>,
    test_args: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::new(&bin.path);
    cmd.current_dir(&bin.cwd)
        .envs(bin.env.iter().map(|(k, v)| (k, v)));
    cmd.args(["--list", "--format", "terse"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    cmd.args(listing_args(test_args));
    let out = cmd
        .output()
        .with_context(|| format!("listing the tests of {}", bin.path.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list failed: {}",
            bin.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::listing_args;

    #[test]
    fn a_listing_keeps_the_arguments_that_select_tests() {
        let args: Vec<String> = [
            "--test-threads",
            "1",
            "--exact",
            "--skip",
            "slow",
            "--nocapture",
            "--skip=net",
            "--include-ignored",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            listing_args(&args),
            [
                "--exact",
                "--skip",
                "slow",
                "--skip=net",
                "--include-ignored"
            ]
        );
    }
}
