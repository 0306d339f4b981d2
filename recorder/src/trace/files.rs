//! Capture of mapped and executed files into `files/<BLAKE3>`.
//!
//! Files are captured from the open file the program mapped (`/proc/PID/fd/N`,
//! `/proc/PID/exe`), not by path later, so a rebuilt binary cannot sneak in. A file is
//! hard-linked when that is safe (we cannot write to it, so its content cannot change
//! under the trace) and copied otherwise.
//!
//! Copying and hashing a debug test binary (10–20 MB) costs more than recording a short
//! test, and the same binaries are recorded again and again (a flake hunt, a benchmark, a
//! user re-running a test). A [`CaptureCache`] keeps our own read-only copies, indexed by
//! the file's identity on this machine, so a later capture of an unchanged file is a hard
//! link.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sparse;
use crate::errors::{Error, Result};

/// The most data of one file a recording captures: 4 GiB, what an archive holds in all
/// by default (`packer::UnpackLimits`). Every executed or mapped file is captured whole
/// (a file that is mostly holes, its data: see [`sparse`]), so a mapping of a bigger one
/// stops the recording.
pub const MAX_CAPTURED_FILE: u64 = 4 << 30;

/// Identity of a file on this machine; writing to a file changes its ctime, so a changed
/// file gets a new identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The name of its entry in a cache index.
    fn key(&self) -> String {
        format!(
            "{:x}-{:x}-{}-{}.{}-{}.{}",
            self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }
}

/// Captured files kept across recordings: `objects/<BLAKE3>` (our own copies, never
/// written after creation) and `index/<identity>` holding the hash of the file that had
/// that identity. Safe to share between concurrent recordings and processes: every entry
/// is created under a temporary name and renamed or linked into place.
#[derive(Debug, Clone)]
pub struct CaptureCache {
    root: PathBuf,
    /// Least-recently-used objects are removed once the objects exceed this many bytes.
    limit: u64,
    /// Lookups that succeeded, shared by the clones of this cache: a hunt records the
    /// same files at every run, and reading the index and touching the object cost a
    /// dozen system calls per file each time.
    seen: std::sync::Arc<std::sync::Mutex<HashMap<FileId, String>>>,
}

/// Default size bound of the user's capture cache.
const DEFAULT_LIMIT: u64 = 4 << 30;

impl CaptureCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: PathBuf) -> Self {
        CaptureCache {
            root,
            limit: DEFAULT_LIMIT,
            seen: Default::default(),
        }
    }

    /// The user's cache: `$XDG_CACHE_HOME/cargo-chaos/captured-files` (or under
    /// `~/.cache`); `None` when neither variable is set or `CARGO_CHAOS_NO_CAPTURE_CACHE`
    /// is.
    pub fn for_user() -> Option<Self> {
        if std::env::var_os("CARGO_CHAOS_NO_CAPTURE_CACHE").is_some() {
            return None;
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self::new(base.join("cargo-chaos").join("captured-files")))
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.root.join("objects").join(hash)
    }

    fn index(&self, id: &FileId) -> PathBuf {
        self.root.join("index").join(id.key())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<FileId, String>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hash of the file with identity `id`, if we kept a copy of it.
    fn lookup(&self, id: &FileId) -> Option<String> {
        if let Some(hash) = self.seen().get(id) {
            return Some(hash.clone());
        }
        let hash = std::fs::read_to_string(self.index(id)).ok()?;
        let hash = hash.trim();
        let valid = super::validate::is_file_name(hash);
        let object = self.object(hash);
        let meta = std::fs::metadata(&object).ok().filter(|_| valid)?;
        if meta.len() != id.size {
            return None;
        }
        // Recently used: pruning removes the least recently used first.
        if let Ok(f) = File::options().append(true).open(&object) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        self.seen().insert(id.clone(), hash.to_owned());
        Some(hash.to_owned())
    }

    /// Puts `dest` (a finished capture named by its hash) into the cache.
    fn insert(&self, id: &FileId, hash: &str, dest: &Path) {
        let objects = self.root.join("objects");
        let index = self.root.join("index");
        if std::fs::create_dir_all(&objects).is_err() || std::fs::create_dir_all(&index).is_err() {
            return;
        }
        let object = self.object(hash);
        if !object.exists() {
            if std::fs::hard_link(dest, &object).is_err() {
                return; // another file system: the cache would cost a copy, not save one
            }
            // Read-only, so a user editing a trace's copy cannot change the cache's.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o444));
        }
        let tmp = index.join(format!(
            ".new-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        if std::fs::write(&tmp, hash).is_ok() {
            let _ = std::fs::rename(&tmp, self.index(id));
        }
        self.prune();
    }

    /// Removes the least recently used objects (and index entries to them) while the
    /// objects exceed the size limit. Traces hard-linked to an object keep their copy.
    fn prune(&self) {
        let Ok(dir) = std::fs::read_dir(self.root.join("objects")) else {
            return;
        };
        let mut objects: Vec<(std::time::SystemTime, u64, PathBuf)> = dir
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = objects.iter().map(|o| o.1).sum();
        if total <= self.limit {
            return;
        }
        objects.sort();
        for (_, len, path) in objects {
            if total <= self.limit / 2 {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        // Index entries whose object is gone are ignored by `lookup`; drop them too.
        if let Ok(dir) = std::fs::read_dir(self.root.join("index")) {
            for e in dir.flatten() {
                let gone = std::fs::read_to_string(e.path())
                    .map(|h| !self.object(h.trim()).exists())
                    .unwrap_or(false);
                if gone {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The `files/` directory of a trace being recorded.
pub struct FileStore {
    dir: PathBuf,
    known: HashMap<FileId, String>,
    cache: Option<CaptureCache>,
    /// Where a failure to write into `dir` goes; once set, files are only hashed.
    fault: super::TraceFault,
}

impl FileStore {
    /// A store writing into `dir`, without a cache.
    pub fn new(dir: PathBuf) -> Self {
        Self::with_cache(dir, None)
    }

    /// A store that reuses (by hard link) the copies kept in `cache`, and adds its own.
    pub fn with_cache(dir: PathBuf, cache: Option<CaptureCache>) -> Self {
        FileStore {
            dir,
            known: HashMap::new(),
            cache,
            fault: Default::default(),
        }
    }

    /// Reports failures to write into the store to `fault` (shared with the trace's other
    /// writers) instead of keeping them to itself.
    pub fn reporting_to(mut self, fault: super::TraceFault) -> Self {
        self.fault = fault;
        self
    }

    /// The first failure to write into the store (or into the trace, when shared).
    pub fn fault(&self) -> &super::TraceFault {
        &self.fault
    }

    /// Removes the captured files this recording did not capture (left by an earlier
    /// recording into the same directory, see [`super::TraceDir::reuse`]).
    pub fn remove_unused(&self) -> Result<()> {
        let used: std::collections::HashSet<&str> =
            self.known.values().map(String::as_str).collect();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| used.contains(n)) {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// Captures the file opened at `path` (typically `/proc/PID/fd/N`); returns its hash.
    ///
    /// Only a failure to read `path` is an error. A failure to write the copy (a full
    /// disk) goes to the store's [`fault`](Self::fault) and the file is still hashed, so
    /// that the recording goes on; once the fault is set, files are only hashed.
    pub fn capture(&mut self, path: &Path) -> Result<String> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let id = FileId::of(&meta);
        if let Some(hash) = self.known.get(&id) {
            return Ok(hash.clone());
        }
        // A file captured before (and unchanged since: same identity) is in the cache;
        // only files stored as themselves go there.
        if !self.fault.is_set() {
            if let Some(cache) = &self.cache {
                if let Some(hash) = cache.lookup(&id) {
                    let dest = self.dir.join(&hash);
                    if dest.exists() || std::fs::hard_link(cache.object(&hash), &dest).is_ok() {
                        self.known.insert(id, hash.clone());
                        return Ok(hash);
                    }
                }
            }
        }
        // Mostly holes, or starting as an image does (see `sparse`): stored as an image.
        let sparse = sparse::worth_it(meta.len(), meta.blocks());
        let mut head = [0u8; 16];
        let image = if sparse {
            Some(sparse::Image::of(&file, meta.len()).map_err(|e| Error::io(path, e))?)
        } else if file.read_exact_at(&mut head, 0).is_ok() && &head == sparse::MAGIC {
            Some(sparse::Image::dense(meta.len()))
        } else {
            None
        };
        let data = image.as_ref().map_or(meta.len(), sparse::Image::data_len);
        if data > MAX_CAPTURED_FILE {
            let name = std::fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
            return Err(Error::Unsupported {
                what: format!(
                    "a mapping of {} ({} GiB of data): the recording captures the data of \
                     every file it maps, up to {} GiB",
                    name.display(),
                    data >> 30,
                    MAX_CAPTURED_FILE >> 30
                ),
                hint: "map a smaller file".into(),
            });
        }
        // Copy into a temporary name while hashing, then rename to the hash.
        let tmp = self.dir.join(format!(".capture-{}", std::process::id()));
        let out = if self.fault.is_set() {
            None
        } else {
            match File::create(&tmp) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.fault.note(Error::io(&tmp, e));
                    None
                }
            }
        };
        let mut tee = Tee {
            hasher: blake3::Hasher::new(),
            out,
            failed: None,
        };
        match &image {
            Some(image) => image.write(&file, &mut tee),
            None => copy_all(&file, &mut tee),
        }
        .map_err(|e| Error::io(path, e))?;
        if let Some(e) = tee.failed.take() {
            self.fault.note(Error::io(&tmp, e));
            let _ = std::fs::remove_file(&tmp);
        }
        let hash = tee.hasher.finalize().to_hex().to_string();
        if tee.out.is_none() {
            // Not kept: the trace is incomplete already.
            self.known.insert(id, hash.clone());
            return Ok(hash);
        }
        drop(tee.out);
        let dest = self.dir.join(&hash);
        let mut ours = true;
        if dest.exists() {
            let _ = std::fs::remove_file(&tmp);
        } else if image.is_none()
            && !writable_by_us(&meta)
            && std::fs::hard_link(path, &dest).is_ok()
        {
            // Safe to share the inode: nobody who can run us can change it.
            let _ = std::fs::remove_file(&tmp);
            ours = false;
        } else if let Err(e) = std::fs::rename(&tmp, &dest) {
            self.fault.note(Error::io(&dest, e));
            let _ = std::fs::remove_file(&tmp);
            ours = false;
        }
        // Only our own copies go into the cache: the cache's objects must never change.
        // (Not images: the cache knows an object by its file's size.)
        if let (true, None, Some(cache)) = (ours, &image, &self.cache) {
            cache.insert(&id, &hash, &dest);
        }
        self.known.insert(id, hash.clone());
        Ok(hash)
    }
}

/// Copies the whole of `file` into `to`, a megabyte at a time.
fn copy_all(mut file: &File, to: &mut impl Write) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(()),
            n => to.write_all(&buf[..n])?,
        }
    }
}

/// Hashes what is written to it, and copies it into `out` until that fails.
struct Tee {
    hasher: blake3::Hasher,
    out: Option<File>,
    failed: Option<std::io::Error>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        if let Some(o) = &mut self.out {
            if let Err(e) = o.write_all(buf) {
                self.failed = Some(e);
                self.out = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn writable_by_us(meta: &std::fs::Metadata) -> bool {
    // SAFETY: plain syscalls.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    uid == 0
        || (meta.uid() == uid && meta.mode() & 0o200 != 0)
        || (meta.gid() == gid && meta.mode() & 0o020 != 0)
        || meta.mode() & 0o002 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture_twice(cache: &CaptureCache, src: &Path, work: &Path) -> (String, String) {
        let a = work.join("a");
        let b = work.join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let h1 = FileStore::with_cache(a, Some(cache.clone()))
            .capture(src)
            .unwrap();
        let h2 = FileStore::with_cache(b, Some(cache.clone()))
            .capture(src)
            .unwrap();
        (h1, h2)
    }

    #[test]
    fn a_second_capture_links_the_cached_copy() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("bin");
        std::fs::write(&src, b"the test binary").unwrap();
        let cache = CaptureCache::new(work.path().join("cache"));
        let (h1, h2) = capture_twice(&cache, &src, work.path());
        assert_eq!(h1, h2);
        let a = std::fs::metadata(work.path().join("a").join(&h1)).unwrap();
        let b = std::fs::metadata(work.path().join("b").join(&h2)).unwrap();
        assert_eq!(a.ino(), b.ino(), "the second capture should be a hard link");
        assert_ne!(a.ino(), std::fs::metadata(&src).unwrap().ino());
    }

    #[test]
    fn a_changed_file_is_captured_again() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("bin");
        std::fs::write(&src, b"version one").unwrap();
        let cache = CaptureCache::new(work.path().join("cache"));
        let h1 = FileStore::with_cache(work.path().to_owned(), Some(cache.clone()))
            .capture(&src)
            .unwrap();
        // Same size, content changed in place (ctime moves even if mtime is reset).
        let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
        let f = File::options().write(true).open(&src).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"VERSION", 0).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let dir = work.path().join("second");
        std::fs::create_dir_all(&dir).unwrap();
        let h2 = FileStore::with_cache(dir.clone(), Some(cache))
            .capture(&src)
            .unwrap();
        assert_ne!(h1, h2);
        assert_eq!(
            std::fs::read(dir.join(&h2)).unwrap(),
            b"VERSION one".to_vec()
        );
    }

    /// Hunts in one target directory share its capture cache: writers in separate
    /// processes (here separate cache values, which share no memory) capturing the same
    /// files at once leave only whole entries, each an object whose content has the hash
    /// it is named by.
    #[test]
    fn concurrent_writers_leave_no_torn_entry() {
        let work = tempfile::tempdir().unwrap();
        let sources: Vec<PathBuf> = (0..12u8)
            .map(|i| {
                let src = work.path().join(format!("src{i}"));
                std::fs::write(&src, vec![i; 200_000 + usize::from(i) * 4096]).unwrap();
                src
            })
            .collect();
        let root = work.path().join("cache");
        std::thread::scope(|s| {
            for writer in 0..4 {
                let (root, sources, work) = (&root, &sources, work.path());
                s.spawn(move || {
                    let cache = CaptureCache::new(root.clone());
                    for round in 0..3 {
                        let dir = work.join(format!("trace-{writer}-{round}"));
                        std::fs::create_dir_all(&dir).unwrap();
                        let mut store = FileStore::with_cache(dir.clone(), Some(cache.clone()));
                        for src in sources {
                            let hash = store.capture(src).unwrap();
                            assert_eq!(
                                std::fs::read(dir.join(&hash)).unwrap(),
                                std::fs::read(src).unwrap()
                            );
                        }
                    }
                });
            }
        });
        let blake3_of = |p: &Path| {
            blake3::hash(&std::fs::read(p).unwrap())
                .to_hex()
                .to_string()
        };
        let mut objects = 0;
        for e in std::fs::read_dir(root.join("objects")).unwrap() {
            let e = e.unwrap();
            assert_eq!(blake3_of(&e.path()), e.file_name().to_string_lossy());
            objects += 1;
        }
        assert_eq!(objects, sources.len());
        for e in std::fs::read_dir(root.join("index")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "a temporary index entry is left: {name}"
            );
            let hash = std::fs::read_to_string(e.path()).unwrap();
            assert!(
                root.join("objects").join(hash.trim()).is_file(),
                "{name} -> {hash}"
            );
        }
    }

    #[test]
    fn pruning_keeps_the_cache_under_its_limit() {
        let work = tempfile::tempdir().unwrap();
        let mut cache = CaptureCache::new(work.path().join("cache"));
        cache.limit = 100;
        for i in 0..5 {
            let src = work.path().join(format!("f{i}"));
            std::fs::write(&src, vec![i as u8; 40]).unwrap();
            let dir = work.path().join(format!("t{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            FileStore::with_cache(dir, Some(cache.clone()))
                .capture(&src)
                .unwrap();
        }
        let total: u64 = std::fs::read_dir(work.path().join("cache/objects"))
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(total <= 100, "{total} bytes kept");
    }
}
