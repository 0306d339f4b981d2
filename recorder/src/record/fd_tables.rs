//! Which fd table each task uses ([`Thread::files`](super::Thread)), for the books the
//! engine keeps per table ([`FdTables`](crate::output::FdTables), whose rules replay
//! follows too).

use super::Recorder;

impl Recorder {
    /// New task `child` of `parent`, made by a clone with `flags` (`None`: fork or
    /// vfork): it shares its parent's table (`CLONE_FILES`) or starts with a copy.
    pub(super) fn new_task_table(&mut self, parent: i32, child: i32, flags: Option<u64>) {
        let parent_files = self.threads[&parent].files;
        let files = self
            .fd_tables
            .on_clone(parent_files, child, flags.unwrap_or(0));
        if let Some(t) = self.threads.get_mut(&child) {
            t.files = files;
        }
    }

    /// Task `tid` unshared its fd table or exec'd: when another task shares the table,
    /// `tid` now has a copy of its own.
    pub(super) fn own_table(&mut self, tid: i32) {
        let Some(files) = self.threads.get(&tid).map(|t| t.files) else {
            return;
        };
        let shared = self
            .threads
            .iter()
            .any(|(&other, t)| other != tid && t.files == files);
        let own = self.fd_tables.leave(files, shared);
        self.threads.get_mut(&tid).expect("checked above").files = own;
    }
}
