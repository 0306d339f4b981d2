//! Temporary files that become an archive by rename (`.chaos-pack-*.partial`,
//! `.chaos-download-*.partial`, `.chaos-upload-*.partial`), and their removal when the
//! process that wrote one is gone.
//!
//! - Every exit path that returns or unwinds removes the file: it is a
//!   [`tempfile::NamedTempFile`], whose drop deletes it.
//! - A process ended by a signal can have the files it is writing removed first:
//!   [`remove_in_progress`], which the CLI's signal handler calls.
//! - A process killed outright (SIGKILL, power loss) leaves its file behind. Its name holds
//!   the writer's pid, and the writer holds an exclusive `flock(2)` on it while it writes,
//!   so the next writer in the same directory ([`remove_stale`]) removes it when that pid
//!   is not running and nobody holds the lock: a file of a live writer, in this pid
//!   namespace or another, is never touched.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

/// Paths of the partial files this process is writing now.
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A partial file being written: removed on drop unless persisted, locked meanwhile.
#[derive(Debug)]
pub(crate) struct Partial {
    tmp: Option<NamedTempFile>,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor borrowed for the call; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Partial {
    /// Creates `dir/.PREFIX<pid>-<random>.partial` (`prefix` such as `chaos-pack-`),
    /// locked, after removing the stale ones of the same prefix in `dir`.
    pub(crate) fn create(dir: &Path, prefix: &str) -> io::Result<Partial> {
        remove_stale(dir, prefix);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{prefix}{}-", std::process::id()))
            .suffix(".partial")
            .tempfile_in(dir)?;
        flock(tmp.as_file(), libc::LOCK_EX | libc::LOCK_NB)?;
        lock_registry().push(tmp.path().to_path_buf());
        Ok(Partial { tmp: Some(tmp) })
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.as_ref().expect("present until persisted").path()
    }

    /// Another handle on the file, for writing.
    pub(crate) fn reopen(&self) -> io::Result<File> {
        self.tmp.as_ref().expect("present until persisted").reopen()
    }

    /// Renames it to `dest` (replacing what is there).
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        let tmp = self.tmp.take().expect("present until persisted");
        let path = tmp.path().to_path_buf();
        match tmp.persist(dest) {
            Ok(_) => {
                unregister(&path);
                Ok(())
            }
            Err(e) => {
                // Put back, so that drop removes it.
                self.tmp = Some(e.file);
                Err(e.error)
            }
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            drop(tmp);
            unregister(&path);
        }
    }
}

fn lock_registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner())
}

fn unregister(path: &Path) {
    lock_registry().retain(|p| p != path);
}

/// Removes the partial files this process is writing. For a handler of a signal that
/// ends the process (no destructor runs then); the writers fail from then on.
pub fn remove_in_progress() {
    remove_registered(|_| true);
}

/// Removes the files in progress that `which` selects.
fn remove_registered(which: impl Fn(&Path) -> bool) {
    lock_registry().retain(|p| {
        if !which(p) {
            return true;
        }
        let _ = fs::remove_file(p);
        false
    });
}

/// The writer's pid in a name `.PREFIX<pid>-<random>.partial`.
fn writer_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_prefix(prefix)?;
    let rest = rest.strip_suffix(".partial")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Removes the files `dir/.PREFIX*.partial` whose writer is gone: its pid is not a
/// running process and nobody holds the file's lock. Returns how many it removed.
pub fn remove_stale(dir: &Path, prefix: &str) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(&format!(".{prefix}")) || !name.ends_with(".partial") {
            continue;
        }
        if let Some(pid) = writer_pid(&name, prefix) {
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
        }
        let path = e.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_in_the_name() {
        assert_eq!(
            writer_pid(".chaos-pack-123-abc.partial", "chaos-pack-"),
            Some(123)
        );
        assert_eq!(writer_pid(".chaos-pack-abc.partial", "chaos-pack-"), None);
        assert_eq!(writer_pid(".chaos-pack-1-x.tmp", "chaos-pack-"), None);
    }

    #[test]
    fn stale_files_go_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let live = Partial::create(dir.path(), "chaos-pack-").unwrap();
        // A pid above the kernel's maximum (2^22) never runs.
        let dead = dir.path().join(".chaos-pack-4194305-abc.partial");
        fs::write(&dead, b"half an archive").unwrap();
        // A file with a dead pid whose lock is held (a writer in another pid namespace).
        let foreign = dir.path().join(".chaos-pack-4194306-def.partial");
        fs::write(&foreign, b"x").unwrap();
        let held = File::open(&foreign).unwrap();
        flock(&held, libc::LOCK_EX).unwrap();
        assert_eq!(remove_stale(dir.path(), "chaos-pack-"), 1);
        assert!(!dead.exists());
        assert!(live.path().exists());
        assert!(foreign.exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }

    #[test]
    fn files_in_progress_are_removed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let a = Partial::create(dir.path(), "chaos-test-").unwrap();
        let path = a.path().to_path_buf();
        assert!(path.exists());
        // (Other tests of this process write partial files too: only this directory's.)
        remove_registered(|p| p.starts_with(dir.path()));
        assert!(!path.exists());
        drop(a);
        // Persisted files are no longer in progress.
        let b = Partial::create(dir.path(), "chaos-test-").unwrap();
        let dest = dir.path().join("done");
        b.persist(&dest).unwrap();
        assert!(!lock_registry().iter().any(|p| p.starts_with(dir.path())));
        assert!(dest.exists());
    }
}
