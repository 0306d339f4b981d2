//! The trace cache: archives unpacked once, under their hash, and reused.
//!
//! `$XDG_CACHE_HOME/cargo-chaos/` (or `~/.cache/cargo-chaos/`) holds
//!
//! - `traces/<first 32 hex of the archive's BLAKE3>/`: an unpacked archive;
//! - `archives/NAME-<hash>.chaos.tar.zst`: downloaded archives.
//!
//! An entry appears by `rename(2)` of a fully unpacked and verified temporary directory
//! beside it, so an entry that exists is complete; a process killed mid-unpack leaves only
//! a hidden `.chaos-unpack-*` directory, which later calls remove once it is an hour old.
//! Two processes unpacking the same archive at once both succeed: the one that loses the
//! rename uses the winner's entry.
//!
//! The cache is kept under a size cap ([`Cache::max_bytes`], 10 GiB by default): after
//! each successful open the least recently used entries are removed until the rest fit
//! ([`lru`]), never the entry just opened nor one that another process holds in use
//! ([`in_use`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::errors::{CacheError, UnpackError};
use crate::hash::{hash_file, hash_from_file_name, NAME_HASH_HEX};
use crate::progress::ProgressEvent;
use crate::transport::{self, TransportOptions};
use crate::unpack::{unpack_inner, UnpackLimits, UnpackedArchive};

pub mod in_use;
pub mod lru;

pub use in_use::InUse;
pub use lru::PruneReport;

/// Default size cap of the cache: 10 GiB, room for dozens of real captures (one is
/// typically 5 to 100 MiB unpacked, see `unpack::DEFAULT_MAX_MEMBER_BYTES`).
pub const DEFAULT_MAX_CACHE_BYTES: u64 = 10 << 30;

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// Limits applied when unpacking into the cache.
    pub limits: UnpackLimits,
    /// The size cap: after each open, least recently used entries are removed while the
    /// cache holds more ([`DEFAULT_MAX_CACHE_BYTES`] by default).
    pub max_bytes: u64,
}

/// How old an abandoned temporary directory must be before it is removed.
const STALE_AFTER: Duration = Duration::from_secs(3600);

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache {
            root: root.into(),
            limits: UnpackLimits::default(),
            max_bytes: DEFAULT_MAX_CACHE_BYTES,
        }
    }

    /// The user's cache: `$XDG_CACHE_HOME/cargo-chaos`, else `$HOME/.cache/cargo-chaos`.
    pub fn user() -> Result<Cache, CacheError> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty() && Path::new(v).is_absolute())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .ok_or(CacheError::NoCacheDir)?;
        Ok(Cache::new(base.join("cargo-chaos")))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where unpacked archives live.
    pub fn traces_dir(&self) -> PathBuf {
        self.root.join("traces")
    }

    /// Where downloaded archives live.
    pub fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// The unpacked archive whose hash starts with `hash`, if cached (needs 32+ hex
    /// digits). It is marked as used now and held in use (not pruned) while the returned
    /// value, or a clone of it, lives.
    pub fn lookup(&self, hash: &str) -> Option<UnpackedArchive> {
        if hash.len() < NAME_HASH_HEX || !hash.is_char_boundary(NAME_HASH_HEX) {
            return None;
        }
        let dir = self.traces_dir().join(&hash[..NAME_HASH_HEX]);
        let in_use = InUse::lock(&dir)?;
        let mut unpacked = UnpackedArchive::load(&dir).ok()?;
        in_use.touch();
        unpacked.hold(in_use);
        Some(unpacked)
    }

    /// Removes least recently used entries until the cache holds at most
    /// [`max_bytes`](Cache::max_bytes), sparing `keep` and the entries in use.
    pub fn prune(&self, keep: &[&Path]) -> PruneReport {
        lru::prune(
            &self.traces_dir(),
            &self.archives_dir(),
            self.max_bytes,
            keep,
        )
    }

    /// Marks `unpacked` (just opened from `archive`) as used and prunes the rest.
    fn opened(&self, archive: Option<&Path>, unpacked: UnpackedArchive) -> UnpackedArchive {
        if let Some(a) = archive {
            if let Ok(f) = fs::File::open(a) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
        let mut keep = vec![unpacked.root.as_path()];
        keep.extend(archive);
        self.prune(&keep);
        unpacked
    }

    /// Unpacks an archive into the cache, or returns the entry from an earlier call.
    pub fn open_archive(
        &self,
        archive: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<UnpackedArchive, CacheError> {
        let name_hash = archive
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(hash_from_file_name)
            .map(str::to_string);
        let expected = match name_hash {
            Some(h) if h.len() >= NAME_HASH_HEX => h,
            other => {
                let full = hash_file(archive).map_err(|source| CacheError::Io {
                    op: "read",
                    path: archive.to_path_buf(),
                    source,
                })?;
                if let Some(prefix) = other {
                    if !full.starts_with(&prefix) {
                        return Err(UnpackError::ArchiveHashMismatch {
                            archive: archive.to_path_buf(),
                            expected: prefix,
                            actual: full,
                        }
                        .into());
                    }
                }
                full
            }
        };
        if let Some(hit) = self.lookup(&expected) {
            return Ok(self.opened(self.in_archives(archive), hit));
        }
        let traces = self.traces_dir();
        fs::create_dir_all(&traces).map_err(|source| CacheError::Io {
            op: "create directory",
            path: traces.clone(),
            source,
        })?;
        self.remove_stale(&traces);
        let dest = traces.join(&expected[..NAME_HASH_HEX]);
        let unpacked = match unpack_inner(archive, &dest, &self.limits, Some(&expected), progress) {
            Ok(u) => u,
            Err(UnpackError::DestinationNotEmpty { .. }) => {
                // Another process won the race, or a damaged entry sits there.
                match self.lookup(&expected) {
                    Some(u) => u,
                    None => {
                        let _ = fs::remove_dir_all(&dest);
                        unpack_inner(archive, &dest, &self.limits, Some(&expected), progress)?
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        let unpacked = match unpacked.in_use() {
            true => unpacked,
            // A fresh entry: hold it like a looked-up one.
            false => self.lookup(&expected).unwrap_or(unpacked),
        };
        Ok(self.opened(self.in_archives(archive), unpacked))
    }

    /// `archive` when it is one of the cache's downloaded archives.
    fn in_archives<'a>(&self, archive: &'a Path) -> Option<&'a Path> {
        archive
            .parent()
            .is_some_and(|p| p == self.archives_dir())
            .then_some(archive)
    }

    /// Downloads an archive into `archives/` (verified against the hash in its name) and
    /// unpacks it into the cache. A URL whose name carries a cached hash is not fetched.
    pub fn open_url(
        &self,
        url: &str,
        opts: &TransportOptions,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<UnpackedArchive, CacheError> {
        if let Some(hash) = transport::remote_file_name(url)
            .as_deref()
            .and_then(hash_from_file_name)
        {
            if let Some(hit) = self.lookup(hash) {
                return Ok(self.opened(None, hit));
            }
        }
        let dir = self.archives_dir();
        let downloaded = transport::download(url, &dir, opts, progress)?;
        self.open_archive(&downloaded.path, progress)
    }

    fn remove_stale(&self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with(".chaos-unpack-") && !name.starts_with(".chaos-prune-") {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Unpacks an archive into the user's cache (see [`Cache::open_archive`]) and returns it.
pub fn open_archive(archive: &Path) -> Result<UnpackedArchive, CacheError> {
    Cache::user()?.open_archive(archive, &mut |_| {})
}
