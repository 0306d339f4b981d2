//! Captured files compressed as zstd frames of their own, and a cache of those frames.
//!
//! An archive is a tar stream compressed as a sequence of zstd frames; decoders read
//! concatenated frames as one stream (`zstd -d` and the `zstd` crate do), so the tar bytes
//! are the same however the stream is cut. With per-member framing (see
//! [`Framing`](crate::Framing)) every captured file's content, zero-padded to tar's
//! 512-byte blocks, is one frame. Such a frame depends only on the content and the
//! compression level, so it can be kept and spliced into later archives: libc, ld.so and the
//! test binary are the same in every failing run of a flake hunt, and only the first pack
//! (or [`warm`](crate::warm())) pays for compressing them.
//!
//! The cache lives in `frames/` of the user's cache directory (`~/.cache/cargo-chaos/`):
//! `frames/<blake3 of the content>.l<level>.zst`. An entry is written to a temporary file
//! and renamed into place, and is **verified every time it is used**: it is decompressed
//! and must yield exactly the content with the BLAKE3 it is named by, then its padding,
//! with valid zstd checksums. An entry that fails is removed and the file is compressed
//! afresh, so a damaged or tampered cache can cost time but never produce a bad archive.
//! The directory is kept under [`FRAME_CACHE_MAX_BYTES`] by removing the entries used least
//! recently.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::zstd_window::{long_window_log, MAX_WINDOW_LOG};

/// tar's block size: member content is padded to a multiple of it.
pub(crate) const BLOCK: u64 = 512;

/// The frame cache is pruned to 3/4 of this when a new entry takes it above.
pub const FRAME_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Counts of what happened to captured files while packing or warming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameStats {
    /// Frames taken from the cache (verified).
    pub reused: usize,
    /// Frames compressed now.
    pub compressed: usize,
    /// Cache entries that failed verification (removed; the file was compressed instead).
    pub rejected: usize,
    /// New cache entries written.
    pub stored: usize,
}

pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// A directory of cached frames.
#[derive(Debug, Clone)]
pub(crate) struct FrameCache {
    root: PathBuf,
}

impl FrameCache {
    pub(crate) fn new(root: PathBuf) -> FrameCache {
        FrameCache { root }
    }

    fn entry(&self, hash: &str, level: i32) -> PathBuf {
        self.root.join(format!("{hash}.l{level}.zst"))
    }

    /// Opens a cached frame of `hash` at `level` after checking that it decompresses to
    /// exactly `size` bytes with that BLAKE3, then the zero padding. Returns the open file,
    /// rewound, or `None` (a bad entry is removed and counted in `stats.rejected`).
    pub(crate) fn get(
        &self,
        hash: &str,
        size: u64,
        level: i32,
        stats: &mut FrameStats,
    ) -> Option<File> {
        let path = self.entry(hash, level);
        let mut file = File::open(&path).ok()?;
        if verify_frame(&mut file, hash, size).is_ok() && file.rewind().is_ok() {
            // Touch it: pruning removes the least recently used entries first.
            let _ = file.set_modified(std::time::SystemTime::now());
            return Some(file);
        }
        stats.rejected += 1;
        let _ = fs::remove_file(&path);
        None
    }

    /// A temporary file for a new entry (renamed into place by [`FrameCache::commit`]).
    pub(crate) fn begin(&self) -> Option<tempfile::NamedTempFile> {
        fs::create_dir_all(&self.root).ok()?;
        tempfile::Builder::new()
            .prefix(".frame-")
            .suffix(".partial")
            .tempfile_in(&self.root)
            .ok()
    }

    /// Moves a complete frame into place. Failures only cost a later cache miss.
    pub(crate) fn commit(
        &self,
        tmp: tempfile::NamedTempFile,
        hash: &str,
        level: i32,
        stats: &mut FrameStats,
    ) {
        if tmp.as_file().sync_data().is_err() {
            return;
        }
        if tmp.persist(self.entry(hash, level)).is_ok() {
            stats.stored += 1;
        }
    }

    /// Removes the least recently used entries while the directory holds more than
    /// `max` bytes, down to 3/4 of it; also removes abandoned temporary files.
    pub(crate) fn prune(&self, max: u64) {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            let modified = m.modified().unwrap_or(now);
            if name.starts_with(".frame-") {
                let stale = now
                    .duration_since(modified)
                    .is_ok_and(|age| age.as_secs() > 3600);
                if stale {
                    let _ = fs::remove_file(e.path());
                }
                continue;
            }
            total += m.len();
            entries.push((modified, m.len(), e.path()));
        }
        if total <= max {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= max / 4 * 3 {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Checks that `frame` decodes to `size` bytes with BLAKE3 `hash`, then the padding.
pub(crate) fn verify_frame(frame: &mut File, hash: &str, size: u64) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut dec = zstd::stream::read::Decoder::new(&mut *frame)?;
    dec.window_log_max(MAX_WINDOW_LOG)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let total = size + padding(size);
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let content = (size.saturating_sub(got)).min(n as u64) as usize;
        hasher.update(&chunk[..content]);
        if chunk[content..].iter().any(|&b| b != 0) {
            return Err(bad("non-zero padding"));
        }
        got += n as u64;
        if got > total {
            return Err(bad("too long"));
        }
    }
    if got != total {
        return Err(bad("too short"));
    }
    if hasher.finalize().to_hex().as_str() != hash {
        return Err(bad("content hash differs"));
    }
    Ok(())
}

/// How one captured file's frame is compressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameParams {
    pub level: i32,
    pub threads: u32,
}

/// Compresses `size` bytes of `input` and the padding after them as one zstd frame (with
/// a checksum and the content size) into `out`. Returns the BLAKE3 of what was read.
///
/// Files above 1 MiB are split into `threads` jobs (zstd's multithreaded mode, each job seeing
/// the previous one's tail); files above [`LDM_THRESHOLD`](crate::LDM_THRESHOLD) get long-distance matching.
pub(crate) fn compress_frame(
    input: &mut dyn Read,
    size: u64,
    params: FrameParams,
    out: &mut dyn Write,
) -> io::Result<String> {
    let pad = padding(size);
    let mut enc = zstd::stream::Encoder::new(out, params.level)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(size + pad))?;
    if params.threads > 1 && size > 1 << 20 {
        enc.multithread(params.threads)?;
        let job = size
            .div_ceil(u64::from(params.threads))
            .clamp(512 << 10, 512 << 20) as u32;
        enc.set_parameter(zstd::stream::raw::CParameter::JobSize(job))?;
    }
    if let Some(window) = long_window_log(size) {
        enc.long_distance_matching(true)?;
        enc.window_log(window)?;
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while packing",
            ));
        }
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n])?;
        left -= n as u64;
    }
    enc.write_all(&[0u8; BLOCK as usize][..pad as usize])?;
    enc.finish()?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Writes to two writers (the archive and a new cache entry); a failing second writer
/// is dropped, not an error: the cache is an optimisation.
pub(crate) struct Tee<'a> {
    pub first: &'a mut dyn Write,
    pub second: Option<&'a mut File>,
    /// The second writer failed (its content is incomplete).
    pub failed: bool,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.first.write(buf)?;
        if let Some(s) = &mut self.second {
            if s.write_all(&buf[..n]).is_err() {
                self.second = None;
                self.failed = true;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.first.flush()
    }
}

/// The user's frame cache directory, `$XDG_CACHE_HOME/cargo-chaos/frames` (else
/// `~/.cache/cargo-chaos/frames`), if a cache directory can be found.
pub fn user_frame_cache() -> Option<PathBuf> {
    crate::cache::Cache::user()
        .ok()
        .map(|c| c.root().join("frames"))
}

/// Whether a file name is a BLAKE3 hex name (a captured file).
pub(crate) fn hash_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    recorder::trace::is_file_name(name).then(|| name.to_string())
}
