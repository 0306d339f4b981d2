//! The C fixtures (`tests/fixtures/c/*.c`), compiled at test time with the system C
//! compiler: one way for every test and benchmark (`cc -O1 -g -pthread -o OUT SRC`, or
//! `$CC`), once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The compiler's flags for every fixture. `-g`: the debugger's tests put breakpoints on
/// lines and print locals; `-pthread`: the thread fixtures.
pub const CFLAGS: [&str; 3] = ["-O1", "-g", "-pthread"];

/// The workspace's root directory (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The directory holding the C fixtures' sources.
pub fn fixture_source_dir() -> PathBuf {
    workspace_root().join("tests").join("fixtures").join("c")
}

/// The fixtures that exist (file stems of `tests/fixtures/c/*.c`), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_source_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    if p.extension()? != "c" {
                        return None;
                    }
                    Some(p.file_stem()?.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct FixtureCache {
    /// `(base, name)` → the built executable.
    built: HashMap<(PathBuf, String), PathBuf>,
}

fn cache() -> &'static Mutex<FixtureCache> {
    static CACHE: OnceLock<Mutex<FixtureCache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(FixtureCache {
            built: HashMap::new(),
        })
    })
}

/// Builds fixture `name` (`tests/fixtures/c/NAME.c`) under `base` and returns the
/// executable's path. Each process builds into its own directory
/// `BASE/chaos-fixtures/PID/` and builds each fixture once; directories left behind by
/// processes that are gone are removed. Integration tests pass
/// `env!("CARGO_TARGET_TMPDIR")` as `base`.
///
/// The executable is shared by every test of the process: a test that deletes or moves
/// the program must work on its own copy.
///
/// # Panics
/// When the source does not exist or the compiler fails (with its output).
pub fn fixture(base: &Path, name: &str) -> PathBuf {
    match try_fixture(base, name) {
        Ok(p) => p,
        Err(e) => panic!("cannot build fixture `{name}`: {e}"),
    }
}

/// [`fixture`], returning the error text instead of panicking.
pub fn try_fixture(base: &Path, name: &str) -> Result<PathBuf, String> {
    let key = (base.to_path_buf(), name.to_string());
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.built.get(&key) {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    let src = fixture_source_dir().join(format!("{name}.c"));
    if !src.is_file() {
        return Err(format!("{} does not exist", src.display()));
    }
    let dir = process_dir(base)?;
    let out = dir.join(name);
    let tmp = dir.join(format!(".{name}.building"));
    let cc = std::env::var_os("CC")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cc".into());
    let result = Command::new(&cc)
        .args(CFLAGS)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| {
            format!(
                "cannot run the C compiler `{}`: {e} (install gcc, or set CC)",
                cc.to_string_lossy()
            )
        })?;
    if !result.status.success() {
        return Err(format!(
            "`{} {} -o {} {}` failed ({}):\n{}{}",
            cc.to_string_lossy(),
            CFLAGS.join(" "),
            tmp.display(),
            src.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    cache.built.insert(key, out.clone());
    Ok(out)
}

/// `BASE/chaos-fixtures/PID`, created fresh the first time this process asks.
fn process_dir(base: &Path) -> Result<PathBuf, String> {
    static MADE: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let made = MADE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut made = made.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = made.get(base) {
        return Ok(d.clone());
    }
    let root = base.join("chaos-fixtures");
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    // Remove what processes that are gone left behind.
    if let Ok(rd) = std::fs::read_dir(&root) {
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(std::process::id().to_string());
    // A directory with our pid is from an earlier process that had the same pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    made.insert(base.to_path_buf(), dir.clone());
    Ok(dir)
}
