//! Keeping the cache under its size cap: least recently used entries go first.
//!
//! Entries are the unpacked archives (`traces/<hash>/`) and the downloaded archives
//! (`archives/*.chaos.tar.zst`). "Last used" is an entry's modification time, which
//! every open sets (see [`InUse::touch`](super::in_use::InUse::touch)). When the entries
//! add up to more than the cap, the oldest are removed until they fit, except the ones
//! the caller is about to use and the ones another process holds in use. An unpacked
//! archive is first renamed to a hidden name, then removed, so no process ever sees half
//! of one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::in_use::Exclusive;
use crate::hash::{ARCHIVE_SUFFIX, NAME_HASH_HEX};

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Bytes the entries held before.
    pub before: u64,
    /// Bytes they hold now.
    pub after: u64,
    /// The entries removed.
    pub removed: Vec<PathBuf>,
    /// Entries that would have gone but were in use by another process.
    pub skipped_in_use: usize,
}

/// One cache entry.
struct Entry {
    path: PathBuf,
    size: u64,
    used: SystemTime,
    is_dir: bool,
}

/// Bytes held by the files under `path` (hard links counted each time: an overestimate).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(rd) = fs::read_dir(path) else {
        return 0;
    };
    rd.flatten().map(|e| size_of(&e.path())).sum()
}

/// The entries of `dir` that `accept` admits by name (hidden names never are).
fn entries(dir: &Path, accept: impl Fn(&str) -> bool) -> Vec<Entry> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && accept(&name)
        })
        .filter_map(|e| {
            let meta = fs::symlink_metadata(e.path()).ok()?;
            Some(Entry {
                size: size_of(&e.path()),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                is_dir: meta.is_dir(),
                path: e.path(),
            })
        })
        .collect()
}

/// Removes least recently used entries of `traces` and `archives` until they hold at
/// most `max` bytes, never one of `keep`.
pub(crate) fn prune(traces: &Path, archives: &Path, max: u64, keep: &[&Path]) -> PruneReport {
    let mut all = entries(traces, |n| {
        n.len() == NAME_HASH_HEX && n.bytes().all(|b| b.is_ascii_hexdigit())
    });
    all.extend(
        entries(archives, |n| n.ends_with(ARCHIVE_SUFFIX))
            .into_iter()
            .filter(|e| !e.is_dir),
    );
    let before: u64 = all.iter().map(|e| e.size).sum();
    let mut report = PruneReport {
        before,
        after: before,
        ..PruneReport::default()
    };
    if before <= max {
        return report;
    }
    all.sort_by_key(|e| e.used);
    for e in all {
        if report.after <= max {
            break;
        }
        if keep.iter().any(|k| *k == e.path) {
            continue;
        }
        let removed = if e.is_dir {
            remove_unpacked(traces, &e.path)
        } else {
            fs::remove_file(&e.path).is_ok()
        };
        match removed {
            true => {
                report.after -= e.size;
                report.removed.push(e.path);
            }
            false => report.skipped_in_use += 1,
        }
    }
    report
}

/// Removes an unpacked archive unless another process uses it: locked, renamed away
/// (so lookups stop finding it at once), then deleted.
fn remove_unpacked(traces: &Path, dir: &Path) -> bool {
    let Some(_lock) = Exclusive::try_lock(dir) else {
        return false;
    };
    let Ok(doomed) = tempfile::Builder::new()
        .prefix(".chaos-prune-")
        .tempdir_in(traces)
    else {
        return false;
    };
    let target = doomed.path().join("entry");
    if fs::rename(dir, &target).is_err() {
        return false;
    }
    // Dropping `doomed` removes it and the entry inside it.
    drop(doomed);
    true
}
