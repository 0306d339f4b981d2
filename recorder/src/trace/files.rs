//! Capture of mapped and executed files into `files/<BLAKE3>`.
//!
//! Files are captured from the open file the program mapped (`/proc/PID/fd/N`,
//! `/proc/PID/exe`), not by path later, so a rebuilt binary cannot sneak in. A file is
//! hard-linked when that is safe (we cannot write to it, so its content cannot change
//! under the trace) and copied otherwise.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// Identity of a file on this machine; a changed file gets a new identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

/// The `files/` directory of a trace being recorded.
pub struct FileStore {
    dir: PathBuf,
    known: HashMap<FileId, String>,
    /// A directory of earlier captures (ours, never modified) to hard-link from, shared
    /// by the recordings of one flake hunt: the same test binary, libc and ld.so are
    /// then copied and hashed once, not once per run.
    shared: Option<PathBuf>,
}

/// Captures made into shared directories by this process: identity -> hash.
type SharedMap = HashMap<(PathBuf, FileId), String>;
static SHARED: std::sync::Mutex<Option<SharedMap>> = std::sync::Mutex::new(None);

impl FileStore {
    /// A store writing into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        FileStore {
            dir,
            known: HashMap::new(),
            shared: None,
        }
    }

    /// A store that reuses (by hard link) captures kept in `shared`.
    pub fn with_shared(dir: PathBuf, shared: Option<PathBuf>) -> Self {
        FileStore {
            dir,
            known: HashMap::new(),
            shared,
        }
    }

    /// Captures the file opened at `path` (typically `/proc/PID/fd/N`); returns its hash.
    pub fn capture(&mut self, path: &Path) -> Result<String> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        };
        if let Some(hash) = self.known.get(&id) {
            return Ok(hash.clone());
        }
        if let Some(shared) = &self.shared {
            let key = (shared.clone(), id.clone());
            let hit = SHARED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|m| m.get(&key).cloned());
            if let Some(hash) = hit {
                let dest = self.dir.join(&hash);
                if dest.exists() || std::fs::hard_link(shared.join(&hash), &dest).is_ok() {
                    self.known.insert(id, hash.clone());
                    return Ok(hash);
                }
            }
        }
        // Copy into a temporary name while hashing, then rename to the hash.
        let tmp = self.dir.join(format!(".capture-{}", std::process::id()));
        let mut out = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&tmp, e))?;
        }
        drop(out);
        let hash = hasher.finalize().to_hex().to_string();
        let dest = self.dir.join(&hash);
        if dest.exists() {
            let _ = std::fs::remove_file(&tmp);
        } else if !writable_by_us(&meta) && std::fs::hard_link(path, &dest).is_ok() {
            // Safe to share the inode: nobody who can run us can change it.
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        }
        if let Some(shared) = &self.shared {
            // Keep a copy of our own for later recordings of the same hunt.
            let kept = shared.join(&hash);
            let ok = kept.exists()
                || (std::fs::create_dir_all(shared).is_ok()
                    && std::fs::hard_link(&dest, &kept).is_ok());
            if ok {
                let mut map = SHARED.lock().unwrap_or_else(|e| e.into_inner());
                map.get_or_insert_with(HashMap::new)
                    .insert((shared.clone(), id.clone()), hash.clone());
            }
        }
        self.known.insert(id, hash.clone());
        Ok(hash)
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
