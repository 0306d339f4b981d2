//! Marking a cache entry as in use, so that a prune in another process leaves it alone.
//!
//! A process that uses an unpacked archive holds a shared `flock(2)` on the entry's
//! directory for as long as it keeps the [`InUse`] guard (the cache hands one out with
//! every [`UnpackedArchive`](crate::UnpackedArchive) it returns). A pruner takes an
//! exclusive lock without waiting before it removes an entry, and skips the entry when
//! that fails. The lock goes with the open file: a process that dies releases it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A shared lock on a cache entry's directory; the entry is not pruned while it lives.
#[derive(Debug)]
pub struct InUse {
    _dir: File,
}

/// An exclusive lock on an entry, taken by a pruner before it removes the entry.
#[derive(Debug)]
pub(crate) struct Exclusive {
    _dir: File,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a file descriptor this function borrows; no memory involved.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `file` is still the entry at `path` (a pruner may have renamed it away while
/// this process waited for its lock).
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl InUse {
    /// Locks the entry at `dir` as in use (waiting while a pruner removes it). `None`
    /// when there is no entry there (any more).
    pub(crate) fn lock(dir: &Path) -> Option<InUse> {
        let file = File::open(dir).ok()?;
        flock(&file, libc::LOCK_SH).ok()?;
        still_at(&file, dir).then_some(InUse { _dir: file })
    }

    /// Records "used now" as the entry's modification time, which orders the prune.
    pub(crate) fn touch(&self) {
        let _ = self._dir.set_modified(std::time::SystemTime::now());
    }
}

impl Exclusive {
    /// Locks the entry at `dir` for removal, without waiting: `None` when someone uses it.
    pub(crate) fn try_lock(dir: &Path) -> Option<Exclusive> {
        let file = File::open(dir).ok()?;
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).ok()?;
        still_at(&file, dir).then_some(Exclusive { _dir: file })
    }
}
