//! Which fd table each task uses, for the books the engine keeps per table
//! ([`Recorder::out_fds`]: which fds are the original stdout and stderr).
//!
//! A process's threads share one table, whose id is the process's tgid. A task gets a
//! table of its own when it is cloned without `CLONE_FILES` (a new process, or a
//! thread: its id is its tid), when it calls `unshare(CLONE_FILES)` while sharing its
//! table, or when it execs while another process shares its table (`CLONE_FILES`
//! without `CLONE_THREAD`): the kernel copies the table, and the copy gets a new id, a
//! negative number (never a tid). Replay follows the same rules (`replay::tree`).

use super::Recorder;

impl Recorder {
    /// New task `child` of `parent`, made by a clone with `flags` (`None`: fork or
    /// vfork): it shares its parent's table (`CLONE_FILES`) or starts with a copy.
    pub(super) fn new_task_table(&mut self, parent: i32, child: i32, flags: Option<u64>) {
        let parent_files = self.threads[&parent].files;
        let shares = flags.is_some_and(|f| f & libc::CLONE_FILES as u64 != 0);
        if !shares {
            let books = self.out_fds.entry(parent_files).or_default().clone();
            self.out_fds.insert(child, books);
        }
        if let Some(t) = self.threads.get_mut(&child) {
            t.files = if shares { parent_files } else { child };
        }
    }

    /// Task `tid` unshared its fd table or exec'd: when another task shares the table,
    /// `tid` now has a copy of its own.
    pub(super) fn own_table(&mut self, tid: i32) {
        let Some(files) = self.threads.get(&tid).map(|t| t.files) else {
            return;
        };
        if !self
            .threads
            .iter()
            .any(|(&other, t)| other != tid && t.files == files)
        {
            return;
        }
        self.tables_made += 1;
        let id = -self.tables_made;
        let books = self.out_fds.entry(files).or_default().clone();
        self.out_fds.insert(id, books);
        self.threads.get_mut(&tid).expect("checked above").files = id;
        tracing::debug!("task {tid}: an fd table of its own ({id})");
    }
}
