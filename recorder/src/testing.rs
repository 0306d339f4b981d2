//! Helpers for the workspace's tests and benchmarks (not for production use).
//!
//! - [`fixture`] builds a C fixture from `tests/fixtures/c` with the system C compiler
//!   (`cc -O1 -o OUT SRC`, or `$CC`), once per process;
//! - [`read_events`] / [`write_events`] read and rewrite a trace's event stream, for
//!   tests that edit a recording;
//! - [`snapshot`] and [`copy_tree`] compare and copy directories byte for byte;
//! - [`text_diff`] renders two outputs as a readable line diff for assertion messages.
//!
//! Everything here uses only the crate's public API.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::trace::{Event, EventReader, EventWriter, TraceDir};

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
    // `-g`: the debugger's tests put breakpoints on lines and print locals.
    let result = Command::new(&cc)
        .arg("-O1")
        .arg("-g")
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
            "`{} -O1 -g -o {} {}` failed ({}):\n{}{}",
            cc.to_string_lossy(),
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

/// All events of the trace at `trace`, and the reader's note when the stream ended in
/// a damaged chunk.
pub fn read_events_checked(trace: &Path) -> crate::Result<(Vec<Event>, Option<String>)> {
    let dir = TraceDir::open(trace)?;
    let mut reader: EventReader = dir.events()?;
    let mut events = Vec::new();
    while let Some(ev) = reader.next_event()? {
        events.push(ev);
    }
    Ok((events, reader.truncated.clone()))
}

/// All events of the trace at `trace`.
///
/// # Panics
/// When the trace cannot be read completely (tests want a plain failure there).
pub fn read_events(trace: &Path) -> Vec<Event> {
    match read_events_checked(trace) {
        Ok((events, None)) => events,
        Ok((_, Some(t))) => panic!("the events of {} are damaged: {t}", trace.display()),
        Err(e) => panic!("cannot read the events of {}: {e}", trace.display()),
    }
}

/// Replaces the trace's `events` stream with `events`, as the recorder writes it.
pub fn write_events(trace: &Path, events: &[Event]) -> crate::Result<()> {
    write_events_chunked(trace, events, 0)
}

/// Replaces the trace's `events` stream with `events`, closing a chunk (an independent
/// zstd frame) after every `per_chunk` events (`0`: the writer's own chunking). Tests use
/// one event per chunk to cut a stream after an exact event.
pub fn write_events_chunked(trace: &Path, events: &[Event], per_chunk: usize) -> crate::Result<()> {
    let path = trace.join("events");
    let mut w = EventWriter::create(&path)?;
    for (i, ev) in events.iter().enumerate() {
        w.push(ev)?;
        if per_chunk > 0 && (i + 1) % per_chunk == 0 {
            w.flush()?;
        }
    }
    w.flush()
}

/// Byte offsets in `events` at which each chunk ends, read from the chunk length
/// prefixes (see `docs/trace-format.md`): cutting the file at `ends[k]` keeps exactly the
/// first `k + 1` chunks.
pub fn chunk_ends(events_file: &Path) -> std::io::Result<Vec<u64>> {
    let data = std::fs::read(events_file)?;
    let mut ends = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= data.len() {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        pos += 4 + len;
        if pos > data.len() {
            break;
        }
        ends.push(pos as u64);
    }
    Ok(ends)
}

/// One entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory and its permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file, its permission bits and its content.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        data: Vec<u8>,
    },
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// Anything else (socket, fifo, device).
    Other,
}

/// Every entry under `dir` (relative path → type, permission bits and content), for
/// byte-for-byte comparisons of directory trees.
pub fn snapshot(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let path = root.join(&rel_path);
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(rel_path.clone(), Entry::Dir { mode });
            walk(root, &rel_path, out)?;
        } else if ft.is_file() {
            out.insert(
                rel_path,
                Entry::File {
                    mode,
                    data: std::fs::read(&path)?,
                },
            );
        } else if ft.is_symlink() {
            out.insert(rel_path, Entry::Symlink(std::fs::read_link(&path)?));
        } else {
            out.insert(rel_path, Entry::Other);
        }
    }
    Ok(())
}

/// Describes how two snapshots differ (empty when they are equal).
pub fn snapshot_diff(
    before: &BTreeMap<PathBuf, Entry>,
    after: &BTreeMap<PathBuf, Entry>,
) -> String {
    let mut s = String::new();
    for (path, entry) in before {
        match after.get(path) {
            None => {
                let _ = writeln!(s, "removed: {}", path.display());
            }
            Some(other) if other != entry => {
                let what = match (entry, other) {
                    (Entry::File { mode: a, data: x }, Entry::File { mode: b, data: y })
                        if a == b =>
                    {
                        format!("content changed ({} -> {} bytes)", x.len(), y.len())
                    }
                    (Entry::File { mode: a, .. }, Entry::File { mode: b, .. }) => {
                        format!("mode changed ({a:o} -> {b:o})")
                    }
                    _ => "type or mode changed".to_string(),
                };
                let _ = writeln!(s, "changed: {}: {what}", path.display());
            }
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            let _ = writeln!(s, "added: {}", path.display());
        }
    }
    s
}

/// Copies the tree at `from` to `to` (created), as plain copies (never hard links, so a
/// test may damage its copy freely).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    let mode = std::fs::metadata(from)?.permissions().mode();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
}

/// A line diff of two outputs for assertion messages: `-` lines only in `expected`, `+`
/// lines only in `actual`, a few unchanged lines of context. Empty when they are equal.
pub fn text_diff(expected: &[u8], actual: &[u8]) -> String {
    if expected == actual {
        return String::new();
    }
    let a: Vec<&[u8]> = split_lines(expected);
    let b: Vec<&[u8]> = split_lines(actual);
    const MAX: usize = 4000;
    if a.len() > MAX || b.len() > MAX {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return format!(
            "outputs differ first at line {} ({} vs {} lines); expected: {:?} actual: {:?}",
            first + 1,
            a.len(),
            b.len(),
            a.get(first).map(|l| String::from_utf8_lossy(l)),
            b.get(first).map(|l| String::from_utf8_lossy(l))
        );
    }
    // Longest common subsequence table, from the end.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &[u8])> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut s = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near(k) {
            if !skipped {
                s.push_str("  ...\n");
                skipped = true;
            }
            continue;
        }
        skipped = false;
        let text = String::from_utf8_lossy(line);
        let text = text
            .strip_suffix('\n')
            .map(|t| t.to_string())
            .unwrap_or_else(|| format!("{text}⏎(no newline)"));
        let _ = writeln!(s, "{op} {text}");
    }
    s
}

fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines.push(&data[start..=i]);
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines() {
        let d = text_diff(b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(d.contains("- b\n"), "{d}");
        assert!(d.contains("+ B\n"), "{d}");
        assert!(text_diff(b"same", b"same").is_empty());
        assert!(text_diff(b"x\n", b"x").contains("no newline"));
    }

    #[test]
    fn every_fixture_has_a_source() {
        let names = fixture_names();
        for n in [
            "fileio", "mmap", "pipe", "tcp", "time", "rdtsc", "cpuid", "random", "segv", "exit3",
        ] {
            assert!(
                names.iter().any(|x| x == n),
                "missing fixture {n}: {names:?}"
            );
        }
    }
}
