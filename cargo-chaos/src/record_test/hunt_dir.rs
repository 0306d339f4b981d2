//! Each hunt's own scratch directory, so hunts sharing a target directory never meet.
//!
//! Two CI jobs (or a developer's two terminals) may hunt in one target directory at the
//! same time. Each hunt records into `target/chaos/runs/hunt-<pid>-<n>/` (its jobs'
//! `job-N/` and its kept `run-N/` directories), and holds an exclusive `flock` on the
//! `lock` file inside for as long as it lives. A hunt that starts removes the directories
//! whose lock nobody holds: those of hunts that were killed. Hunts therefore run side by
//! side instead of waiting for each other, as one expects of two CI jobs; what they do
//! share is safe to share: the capture cache (`runs/captured-files`, entries created
//! under temporary names and renamed or linked into place) and the archives directory
//! (archives are written to temporary files and renamed to a name carrying their content
//! hash).
//!
//! A new directory is prepared under a name the cleanup ignores (`.hunt-new-*`), locked,
//! and only then renamed to `hunt-*`: a `hunt-*` directory whose lock is free is always a
//! dead hunt's, never one being created.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file inside a hunt's directory.
const LOCK: &str = "lock";
/// Prefix of live (or dead) hunts' directories.
const PREFIX: &str = "hunt-";

/// Hunts started by this process so far (tests run several).
static STARTED: AtomicU64 = AtomicU64::new(0);

/// A hunt's scratch directory, locked while the value lives; removed on drop.
#[derive(Debug)]
pub struct HuntDir {
    path: PathBuf,
    /// Held until the directory is removed.
    lock: Option<Flock<File>>,
}

impl HuntDir {
    /// Removes the directories of dead hunts under `runs_dir`, then creates and locks a
    /// new one there.
    pub fn create(runs_dir: &Path) -> io::Result<HuntDir> {
        std::fs::create_dir_all(runs_dir)?;
        remove_dead(runs_dir);
        let fresh = tempfile::Builder::new()
            .prefix(".hunt-new-")
            .tempdir_in(runs_dir)?;
        let lock_file = File::create(fresh.path().join(LOCK))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io::Error::from(e))?;
        loop {
            let n = STARTED.fetch_add(1, Ordering::Relaxed);
            let path = runs_dir.join(format!("{PREFIX}{}-{n}", std::process::id()));
            // Fails if a directory of that name holds anything: take the next number.
            match std::fs::rename(fresh.path(), &path) {
                Ok(()) => {
                    // Ours now, under its new name: the temporary's drop must not touch it.
                    let _ = fresh.keep();
                    tracing::debug!("hunting in {}", path.display());
                    return Ok(HuntDir {
                        path,
                        lock: Some(lock),
                    });
                }
                Err(e)
                    if matches!(
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        Errno::ENOTEMPTY | Errno::EEXIST
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HuntDir {
    fn drop(&mut self) {
        // Removed while still locked, so no other hunt's cleanup races with ours.
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
        self.lock.take();
    }
}

/// Removes every `hunt-*` directory under `runs_dir` whose lock is free (its hunt is
/// dead: the kernel releases a `flock` when its last holder exits, however it ended).
fn remove_dead(runs_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = entry.path();
        let lock = match File::open(dir.join(LOCK)) {
            // Locked: a live hunt's. Unlocked: a dead one's, ours to remove while we hold it.
            Ok(f) => match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(held) => Some(held),
                Err(_) => continue,
            },
            // A live hunt's directory always has its lock (it is renamed into place
            // locked): this is what a removal cut short left.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => continue,
        };
        tracing::debug!("removing {}, left by a hunt that ended", dir.display());
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("removing {}: {e}", dir.display());
            }
        }
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunts_get_their_own_directories_and_dead_ones_are_removed() {
        let runs = tempfile::tempdir().unwrap();
        let a = HuntDir::create(runs.path()).unwrap();
        let b = HuntDir::create(runs.path()).unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("job-0"), "a's").unwrap();

        // A dead hunt's directory: its lock file is there but nobody holds it.
        let dead = runs.path().join("hunt-999999999-0");
        std::fs::create_dir_all(dead.join("job-0")).unwrap();
        std::fs::write(dead.join(LOCK), "").unwrap();
        // A removal cut short: no lock file at all.
        let half = runs.path().join("hunt-999999999-1");
        std::fs::create_dir_all(&half).unwrap();
        // Not a hunt's: left alone.
        std::fs::create_dir_all(runs.path().join("captured-files")).unwrap();

        let c = HuntDir::create(runs.path()).unwrap();
        assert!(!dead.exists(), "a dead hunt's directory is removed");
        assert!(!half.exists(), "a half-removed directory is removed");
        assert!(a.path().join("job-0").exists(), "a live hunt's stays");
        assert!(b.path().exists() && c.path().exists());
        assert!(runs.path().join("captured-files").exists());

        let a_path = a.path().to_owned();
        drop(a);
        assert!(
            !a_path.exists(),
            "a hunt removes its directory when it ends"
        );
    }
}
