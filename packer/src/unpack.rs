//! Unpacking an archive, safely.
//!
//! Archives come from CI artifact stores and URLs pasted into chat: the unpacker treats
//! them as hostile. It
//!
//! - reads the manifest first and refuses the archive before writing a single member if
//!   the manifest is malformed, from a newer format, or announces more data than the
//!   [`UnpackLimits`] allow;
//! - accepts only regular files (and ignores directory entries), each listed in the
//!   manifest with its size and hash; links, devices, fifos and unknown members are refused;
//! - checks every path: relative, no `..`, `.` or empty components, no backslashes, no NUL,
//!   and only the two layouts the format defines (`files/<hash>`, `recordings/NAME/...`);
//! - writes into a fresh temporary directory beside the destination, which it created and
//!   which therefore holds no symlinks, with `O_EXCL | O_NOFOLLOW`;
//! - verifies each member's BLAKE3 against the manifest (and captured files against their
//!   names), the archive's BLAKE3 against its file name, and every zstd frame's checksum;
//! - renames the temporary directory into place only when all of that passed, and removes
//!   it otherwise: a refused archive leaves nothing behind.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::errors::UnpackError;
use crate::hash::{hash_from_file_name, is_blake3_hex};
use crate::manifest::{Manifest, FILES_DIR, FORMAT_VERSION, MANIFEST_NAME, RECORDINGS_DIR};
use crate::progress::{Meter, Phase, ProgressEvent};
use crate::zstd_window::MAX_WINDOW_LOG;

/// Default cap on one member's size: 1 GiB.
///
/// Sized from what captures hold: the biggest member of a real capture is the test
/// binary. The debug test binaries of this workspace (tokio, reqwest, rustls and the
/// recorder linked in, full debug info) measure 90 to 140 MiB, the example crate's 8 MiB
/// (its whole capture: 15 MiB unpacked, a 6.7 MiB archive); libc is 1.9 MiB, ld.so
/// 0.2 MiB, libgcc_s 0.1 MiB; an events file some KiB to a few MiB. 1 GiB is seven times
/// the largest of those, and still refuses a bomb before it fills a disk.
/// `--max-unpacked-size` (the CLI) or [`UnpackLimits::with_max_unpacked_size`] raises it.
pub const DEFAULT_MAX_MEMBER_BYTES: u64 = 1 << 30;

/// Default cap on all members together: 4 GiB, room for an archive of many recordings of
/// several such binaries (each binary and library is stored once per archive; see
/// [`DEFAULT_MAX_MEMBER_BYTES`]).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 4 << 30;

/// Size limits against decompression bombs and absurd archives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnpackLimits {
    /// Most bytes all members may add up to.
    pub max_total_bytes: u64,
    /// Most bytes one member may have.
    pub max_member_bytes: u64,
    /// Most members.
    pub max_members: u64,
    /// Most bytes the manifest may have.
    pub max_manifest_bytes: u64,
}

impl Default for UnpackLimits {
    /// 4 GiB in all, 1 GiB per member ([`DEFAULT_MAX_TOTAL_BYTES`],
    /// [`DEFAULT_MAX_MEMBER_BYTES`]), 1,000,000 members, a 64 MiB manifest: far above any
    /// real capture, far below what fills a disk by surprise.
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_member_bytes: DEFAULT_MAX_MEMBER_BYTES,
            max_members: 1_000_000,
            max_manifest_bytes: 64 << 20,
        }
    }
}

impl UnpackLimits {
    /// Limits with the given total and per-member byte caps (the others default).
    pub fn with_sizes(max_total_bytes: u64, max_member_bytes: u64) -> Self {
        UnpackLimits {
            max_total_bytes,
            max_member_bytes,
            ..UnpackLimits::default()
        }
    }

    /// The limits `--max-unpacked-size SIZE` sets: the archive may unpack to `size` bytes
    /// in all, and one member may be as large as that.
    pub fn with_max_unpacked_size(size: u64) -> Self {
        UnpackLimits::with_sizes(size, size)
    }
}

/// One unpacked recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceDir {
    /// Its name in the manifest.
    pub name: String,
    /// The recording directory, ready for replay.
    pub path: PathBuf,
}

/// An unpacked archive.
#[derive(Debug, Clone)]
pub struct UnpackedArchive {
    /// The destination. With one recording it is the recording directory itself; with
    /// several, each is a subdirectory named after it.
    pub root: PathBuf,
    /// The recordings, in manifest order.
    pub traces: Vec<TraceDir>,
    /// The manifest (also saved as `chaos-manifest.json` in `root`).
    pub manifest: Manifest,
    /// For an entry of the cache: holds it in use, so no prune removes it meanwhile.
    in_use: Option<std::sync::Arc<crate::cache::InUse>>,
}

impl UnpackedArchive {
    /// Keeps `lock` (a cache entry held in use) for as long as this value or a clone lives.
    pub(crate) fn hold(&mut self, lock: crate::cache::InUse) {
        self.in_use = Some(std::sync::Arc::new(lock));
    }

    /// Whether this is a cache entry held in use (see [`crate::cache::InUse`]).
    pub fn in_use(&self) -> bool {
        self.in_use.is_some()
    }

    /// The recording directory when the archive holds exactly one.
    pub fn single_trace(&self) -> Option<&Path> {
        match self.traces.as_slice() {
            [one] => Some(&one.path),
            _ => None,
        }
    }

    /// Reads an already unpacked archive back (as the cache does).
    pub fn load(root: &Path) -> io::Result<UnpackedArchive> {
        let bytes = fs::read(root.join(MANIFEST_NAME))?;
        let manifest = Manifest::from_json(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let traces = trace_dirs(root, &manifest);
        Ok(UnpackedArchive {
            root: root.to_path_buf(),
            traces,
            manifest,
            in_use: None,
        })
    }
}

fn trace_dirs(root: &Path, manifest: &Manifest) -> Vec<TraceDir> {
    let single = manifest.recordings.len() == 1;
    manifest
        .recordings
        .iter()
        .map(|r| TraceDir {
            name: r.name.clone(),
            path: if single {
                root.to_path_buf()
            } else {
                root.join(&r.name)
            },
        })
        .collect()
}

/// Counts compressed bytes read, for progress, and hashes them, for the name check.
struct SourceReader {
    file: File,
    hasher: Rc<Cell<Option<blake3::Hasher>>>,
    count: Rc<Cell<u64>>,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        let mut h = self.hasher.take().expect("hasher present while reading");
        h.update(&buf[..n]);
        self.hasher.set(Some(h));
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// A member path is acceptable: relative, plain components only, no oddities.
fn check_member_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.contains('\0') {
        return Err("NUL in path".into());
    }
    if path.contains('\\') {
        return Err("backslash in path".into());
    }
    for comp in path.trim_end_matches('/').split('/') {
        match comp {
            ".." => return Err("path climbs out of the destination (`..`)".into()),
            "." | "" => return Err("path has an empty or `.` component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Where a member goes inside the staging directory.
fn staging_target(manifest: &Manifest, path: &str) -> Result<String, String> {
    check_member_path(path)?;
    let single = manifest.recordings.len() == 1;
    if let Some(hash) = path.strip_prefix(&format!("{FILES_DIR}/")) {
        if !recorder::trace::is_file_name(hash) {
            return Err("captured file not named by a BLAKE3 hash".into());
        }
        return Ok(if single {
            path.to_string()
        } else {
            format!(".store/{hash}")
        });
    }
    if let Some(rest) = path.strip_prefix(&format!("{RECORDINGS_DIR}/")) {
        let (name, rel) = rest
            .split_once('/')
            .ok_or_else(|| "recording member without a file name".to_string())?;
        if !manifest.recordings.iter().any(|r| r.name == name) {
            return Err(format!(
                "belongs to recording {name:?}, which the manifest does not list"
            ));
        }
        if rel == MANIFEST_NAME || rel == FILES_DIR || rel.starts_with(&format!("{FILES_DIR}/")) {
            return Err("recording member collides with the files/ store or the manifest".into());
        }
        return Ok(if single {
            rel.to_string()
        } else {
            format!("{name}/{rel}")
        });
    }
    Err("outside the archive layout (files/ and recordings/)".into())
}

fn check_recording_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name != FILES_DIR
        && name != MANIFEST_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Unpacks `archive` into `dest`, which must not exist or be an empty directory.
///
/// With one recording, `dest` becomes that recording's directory; with several, each
/// becomes `dest/NAME`. On any error nothing is left in `dest`.
///
/// When the archive's file name carries a hash (`NAME-<hex>.chaos.tar.zst`), the content
/// must match it.
pub fn unpack(
    archive: &Path,
    dest: &Path,
    limits: &UnpackLimits,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<UnpackedArchive, UnpackError> {
    let expected = archive
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(hash_from_file_name)
        .map(str::to_string);
    unpack_inner(archive, dest, limits, expected.as_deref(), progress)
}

/// Reads a whole archive and checks it as [`unpack`] does (every member's size and
/// BLAKE3, every zstd frame's checksum, the archive's hash against its name), writing
/// nothing; returns its manifest. An archive that passes unpacks with the same `limits`.
pub fn verify(
    archive: &Path,
    limits: &UnpackLimits,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<Manifest, UnpackError> {
    let expected = archive
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(hash_from_file_name)
        .map(str::to_string);
    let (manifest, _) = read_members(archive, limits, expected.as_deref(), None, progress)?;
    Ok(manifest)
}

pub(crate) fn unpack_inner(
    archive: &Path,
    dest: &Path,
    limits: &UnpackLimits,
    expected_hash: Option<&str>,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<UnpackedArchive, UnpackError> {
    let io_err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { op, path, source }
    };

    match fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(UnpackError::DestinationNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(UnpackError::DestinationNotEmpty {
                path: dest.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("read", dest)(e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".chaos-unpack-")
        .tempdir_in(&parent)
        .map_err(io_err("create a temporary directory in", &parent))?;
    let stage = staging.path().to_path_buf();
    let (manifest, manifest_bytes) =
        read_members(archive, limits, expected_hash, Some(&stage), progress)?;

    // 5. Lay the recordings out and move them into place.
    if manifest.recordings.len() > 1 {
        let store = stage.join(".store");
        for r in &manifest.recordings {
            let files = stage.join(&r.name).join(FILES_DIR);
            fs::create_dir_all(&files).map_err(io_err("create directory", &files))?;
            for h in &r.files {
                let from = store.join(h);
                let to = files.join(h);
                if fs::hard_link(&from, &to).is_err() {
                    fs::copy(&from, &to).map_err(io_err("copy into", &to))?;
                }
            }
        }
        fs::remove_dir_all(&store).map_err(io_err("remove", &store))?;
    } else {
        // A recording without captured files still gets its (empty) files/ directory.
        let files = stage.join(FILES_DIR);
        fs::create_dir_all(&files).map_err(io_err("create directory", &files))?;
    }
    let manifest_path = stage.join(MANIFEST_NAME);
    fs::write(&manifest_path, &manifest_bytes).map_err(io_err("write", &manifest_path))?;
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o755))
        .map_err(io_err("set permissions of", &stage))?;
    let kept = staging.keep();
    if let Err(e) = fs::rename(&kept, dest) {
        let _ = fs::remove_dir_all(&kept);
        return Err(match e.raw_os_error() {
            Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::ENOTDIR) => {
                UnpackError::DestinationNotEmpty {
                    path: dest.to_path_buf(),
                }
            }
            _ => io_err("rename into", dest)(e),
        });
    }
    let traces = trace_dirs(dest, &manifest);
    Ok(UnpackedArchive {
        root: dest.to_path_buf(),
        traces,
        manifest,
        in_use: None,
    })
}

/// Reads and checks a whole archive (steps 1 to 4 of the unpacking rules), writing each
/// member into `stage` when given; returns the manifest and its bytes.
fn read_members(
    archive: &Path,
    limits: &UnpackLimits,
    expected_hash: Option<&str>,
    stage: Option<&Path>,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<(Manifest, Vec<u8>), UnpackError> {
    let io_err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { op, path, source }
    };
    let corrupt = |reason: String| UnpackError::Corrupt {
        archive: archive.to_path_buf(),
        reason,
    };
    let unsafe_member = |member: &str, reason: String| UnpackError::UnsafeMember {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        reason,
    };
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let archive_size = file.metadata().map_err(io_err("inspect", archive))?.len();
    let hasher = Rc::new(Cell::new(Some(blake3::Hasher::new())));
    let count = Rc::new(Cell::new(0u64));
    let source = SourceReader {
        file,
        hasher: hasher.clone(),
        count: count.clone(),
    };
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, source))
            .map_err(|e| corrupt(format!("not a zstd stream: {e}")))?;
    decoder
        .window_log_max(MAX_WINDOW_LOG)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    let mut tar = tar::Archive::new(decoder);
    let mut entries = tar
        .entries()
        .map_err(|e| corrupt(format!("not a tar stream: {e}")))?;
    let mut meter = Meter::new(Phase::Unpacking, Some(archive_size), progress);

    // 1. The manifest.
    let mut first = match entries.next() {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(corrupt(e.to_string())),
        None => return Err(corrupt("empty archive".into())),
    };
    let first_path = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if first_path != MANIFEST_NAME || first.header().entry_type() != tar::EntryType::Regular {
        return Err(UnpackError::NotAnArchive {
            archive: archive.to_path_buf(),
            first: first_path,
        });
    }
    if first.size() > limits.max_manifest_bytes {
        return Err(UnpackError::LimitExceeded {
            archive: archive.to_path_buf(),
            member: MANIFEST_NAME.to_string(),
            what: "the manifest",
            size: Some(first.size()),
            limit: limits.max_manifest_bytes,
        });
    }
    let mut manifest_bytes = Vec::with_capacity(first.size() as usize);
    first
        .read_to_end(&mut manifest_bytes)
        .map_err(|e| corrupt(format!("reading the manifest: {e}")))?;
    drop(first);
    // Peek at the version before the full parse: a newer format may not parse at all.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&manifest_bytes) {
        if let Some(found) = v.get("format_version").and_then(|x| x.as_u64()) {
            if found > u64::from(FORMAT_VERSION) {
                return Err(UnpackError::NewerFormat {
                    archive: archive.to_path_buf(),
                    found: found.min(u64::from(u32::MAX)) as u32,
                    supported: FORMAT_VERSION,
                });
            }
        }
    }
    let manifest =
        Manifest::from_json(&manifest_bytes).map_err(|source| UnpackError::BadManifest {
            archive: archive.to_path_buf(),
            source,
        })?;

    // 2. Check the manifest as a whole before writing anything.
    if manifest.recordings.is_empty() {
        return Err(corrupt("the manifest lists no recording".into()));
    }
    let mut names = HashSet::new();
    for r in &manifest.recordings {
        if !check_recording_name(&r.name) || !names.insert(r.name.as_str()) {
            return Err(corrupt(format!(
                "the manifest has an invalid or repeated recording name {:?}",
                r.name
            )));
        }
    }
    if manifest.members.len() as u64 > limits.max_members {
        return Err(UnpackError::LimitExceeded {
            archive: archive.to_path_buf(),
            member: String::new(),
            what: "the number of members",
            size: None,
            limit: limits.max_members,
        });
    }
    let mut expected: BTreeMap<&str, (u64, &str, String)> = BTreeMap::new();
    let mut total = 0u64;
    for m in &manifest.members {
        let target = staging_target(&manifest, &m.path).map_err(|r| unsafe_member(&m.path, r))?;
        if !is_blake3_hex(&m.blake3) {
            return Err(corrupt(format!("member {} has a malformed hash", m.path)));
        }
        if let Some(h) = m.path.strip_prefix(&format!("{FILES_DIR}/")) {
            if h != m.blake3 {
                return Err(UnpackError::MemberHashMismatch {
                    archive: archive.to_path_buf(),
                    member: m.path.clone(),
                    expected: h.to_string(),
                    actual: m.blake3.clone(),
                });
            }
        }
        if m.size > limits.max_member_bytes {
            return Err(UnpackError::LimitExceeded {
                archive: archive.to_path_buf(),
                member: m.path.clone(),
                what: "a member's size",
                size: Some(m.size),
                limit: limits.max_member_bytes,
            });
        }
        total = total.saturating_add(m.size);
        if total > limits.max_total_bytes {
            return Err(UnpackError::LimitExceeded {
                archive: archive.to_path_buf(),
                member: m.path.clone(),
                what: "the total size",
                size: Some(total),
                limit: limits.max_total_bytes,
            });
        }
        if expected
            .insert(m.path.as_str(), (m.size, m.blake3.as_str(), target))
            .is_some()
        {
            return Err(corrupt(format!("the manifest lists {} twice", m.path)));
        }
    }
    for r in &manifest.recordings {
        // Listed twice, a file would be linked into the recording and then copied onto
        // its own link, which truncates it (found by fuzzing).
        let mut uses = HashSet::new();
        for h in &r.files {
            if !uses.insert(h.as_str()) {
                return Err(corrupt(format!(
                    "recording {} lists files/{h} twice",
                    r.name
                )));
            }
            if !expected.contains_key(format!("{FILES_DIR}/{h}").as_str()) {
                return Err(corrupt(format!(
                    "recording {} uses files/{h}, which the archive does not hold",
                    r.name
                )));
            }
        }
    }

    // 3. The members.
    let mut seen: HashSet<String> = HashSet::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| unsafe_member("<non-UTF-8 name>", "path is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => {
                check_member_path(&path).map_err(|r| unsafe_member(&path, r))?;
                continue;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let what = if kind == tar::EntryType::Symlink {
                    "symbolic link"
                } else {
                    "hard link"
                };
                return Err(unsafe_member(
                    &path,
                    format!("{what} to {target:?}; only regular files are accepted"),
                ));
            }
            other => {
                let what = match other {
                    tar::EntryType::Char | tar::EntryType::Block => "device",
                    tar::EntryType::Fifo => "fifo",
                    _ => "special entry",
                };
                return Err(unsafe_member(
                    &path,
                    format!("{what}; only regular files are accepted"),
                ));
            }
        }
        check_member_path(&path).map_err(|r| unsafe_member(&path, r))?;
        let Some((size, hash, target)) = expected.get(path.as_str()) else {
            return Err(unsafe_member(&path, "not listed in the manifest".into()));
        };
        if !seen.insert(path.clone()) {
            return Err(unsafe_member(&path, "appears twice".into()));
        }
        let declared = entry.size();
        if declared != *size {
            if declared > limits.max_member_bytes {
                return Err(UnpackError::LimitExceeded {
                    archive: archive.to_path_buf(),
                    member: path,
                    what: "a member's size",
                    size: Some(declared),
                    limit: limits.max_member_bytes,
                });
            }
            return Err(corrupt(format!(
                "member {path} is {declared} bytes, the manifest says {size}"
            )));
        }
        // Verifying only (no stage): the content is hashed and dropped.
        let mut out = None;
        if let Some(stage) = stage {
            let out_path = stage.join(target);
            if let Some(dir) = out_path.parent() {
                fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            }
            let exec = entry
                .header()
                .mode()
                .map(|m| m & 0o111 != 0)
                .unwrap_or(false);
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if exec { 0o755 } else { 0o644 })
                .custom_flags(libc::O_NOFOLLOW)
                .open(&out_path)
                .map_err(io_err("create", &out_path))?;
            out = Some((file, out_path));
        }
        let mut h = blake3::Hasher::new();
        let mut got = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("reading member {path}: {e}")))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            written += n as u64;
            if got > *size || written > limits.max_total_bytes {
                return Err(UnpackError::LimitExceeded {
                    archive: archive.to_path_buf(),
                    member: path,
                    what: "the data read",
                    size: None,
                    limit: limits.max_total_bytes.min(*size),
                });
            }
            h.update(&buf[..n]);
            if let Some((file, out_path)) = &mut out {
                write_or_skip_zeros(file, &buf[..n]).map_err(io_err("write", out_path))?;
            }
            let before = meter.done;
            meter.add(count.get().saturating_sub(before));
        }
        if got != *size {
            return Err(corrupt(format!(
                "member {path} ends after {got} of {size} bytes (truncated)"
            )));
        }
        if let Some((file, out_path)) = &out {
            // A member ending in zeros ends in a hole: its length is set, not written.
            file.set_len(got).map_err(io_err("write", out_path))?;
        }
        let actual = h.finalize().to_hex().to_string();
        if actual != *hash {
            return Err(UnpackError::MemberHashMismatch {
                archive: archive.to_path_buf(),
                member: path,
                expected: hash.to_string(),
                actual,
            });
        }
    }
    for m in &manifest.members {
        if !seen.contains(&m.path) {
            return Err(UnpackError::MissingMember {
                archive: archive.to_path_buf(),
                member: m.path.clone(),
            });
        }
    }

    // 4. The rest of the stream: tar padding, then the end of the zstd frame, whose
    //    checksum the decoder verifies. Bounded, so trailing data cannot be a bomb.
    let mut decoder = tar.into_inner();
    let mut rest = 0u64;
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| corrupt(format!("after the last member: {e}")))?;
        if n == 0 {
            break;
        }
        rest += n as u64;
        if rest > 1 << 20 || buf[..n].iter().any(|&b| b != 0) {
            return Err(corrupt("unexpected data after the last member".into()));
        }
    }
    let mut tail = decoder.finish();
    io::copy(&mut tail, &mut io::sink()).map_err(io_err("read", archive))?;
    drop(tail);
    let actual = hasher
        .take()
        .expect("hasher present after reading")
        .finalize()
        .to_hex()
        .to_string();
    if let Some(exp) = expected_hash {
        if !actual.starts_with(exp) {
            return Err(UnpackError::ArchiveHashMismatch {
                archive: archive.to_path_buf(),
                expected: exp.to_string(),
                actual,
            });
        }
    }
    meter.add(count.get().saturating_sub(meter.done));
    meter.finish();

    Ok((manifest, manifest_bytes))
}

/// Writes `chunk` at `file`'s position, or, when it is all zeros, moves the position past
/// it and leaves a hole: a member of zeros (a sparse file packed from a recording) takes no
/// space in the cache. The file is new, so a hole reads as the zeros it stands for; the
/// caller sets the length at the end, in case the member ends in one.
fn write_or_skip_zeros(file: &mut File, chunk: &[u8]) -> io::Result<()> {
    if chunk.iter().all(|&b| b == 0) {
        file.seek(SeekFrom::Current(chunk.len() as i64))?;
        Ok(())
    } else {
        file.write_all(chunk)
    }
}

/// Reads only the manifest of an archive (the first member), without verifying the rest.
pub fn read_manifest(archive: &Path) -> Result<Manifest, UnpackError> {
    let corrupt = |reason: String| UnpackError::Corrupt {
        archive: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|source| UnpackError::Io {
        op: "open",
        path: archive.to_path_buf(),
        source,
    })?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .map_err(|e| corrupt(format!("not a zstd stream: {e}")))?;
    let mut tar = tar::Archive::new(decoder);
    let mut entries = tar
        .entries()
        .map_err(|e| corrupt(format!("not a tar stream: {e}")))?;
    let mut first = match entries.next() {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(corrupt(e.to_string())),
        None => return Err(corrupt("empty archive".into())),
    };
    let first_path = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if first_path != MANIFEST_NAME {
        return Err(UnpackError::NotAnArchive {
            archive: archive.to_path_buf(),
            first: first_path,
        });
    }
    let limit = UnpackLimits::default().max_manifest_bytes;
    if first.size() > limit {
        return Err(UnpackError::LimitExceeded {
            archive: archive.to_path_buf(),
            member: MANIFEST_NAME.to_string(),
            what: "the manifest",
            size: Some(first.size()),
            limit,
        });
    }
    let mut bytes = Vec::new();
    first
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt(format!("reading the manifest: {e}")))?;
    Manifest::from_json(&bytes).map_err(|source| UnpackError::BadManifest {
        archive: archive.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths() {
        assert!(check_member_path("files/abc").is_ok());
        assert!(check_member_path("/etc/passwd").is_err());
        assert!(check_member_path("a/../b").is_err());
        assert!(check_member_path("..").is_err());
        assert!(check_member_path("a//b").is_err());
        assert!(check_member_path("./a").is_err());
        assert!(check_member_path("a\\..\\b").is_err());
    }
}
