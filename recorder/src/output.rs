//! Which of the program's file descriptors are its stdout and stderr, followed through
//! dup, dup2, dup3, fcntl(F_DUPFD), close and `pidfd_getfd` (an fd taken from another
//! process of the program, through a pidfd from `pidfd_open`), so that replay can echo
//! what the replayed program writes there. Not followed: fds passed over a unix socket
//! (`SCM_RIGHTS`) and pidfds from `clone(CLONE_PIDFD)`; writes through those are
//! recorded and replayed, but not echoed.

use std::collections::HashMap;

use crate::syscalls::nr;

/// One of the program's original output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1 at start.
    Stdout,
    /// File descriptor 2 at start.
    Stderr,
}

/// The fd table restricted to the output streams.
#[derive(Debug, Clone)]
pub struct OutputFds {
    fds: HashMap<u64, Stream>,
    /// The pidfds `pidfd_open` gave, and the process each refers to.
    pidfds: HashMap<u64, i32>,
}

impl Default for OutputFds {
    fn default() -> Self {
        OutputFds {
            fds: HashMap::from([(1, Stream::Stdout), (2, Stream::Stderr)]),
            pidfds: HashMap::new(),
        }
    }
}

/// The books of every fd table of the program ([`OutputFds`] each), by table id, with
/// the rules by which tasks get tables, shared by record and replay so that the two
/// name tables alike.
///
/// A process's threads share one table, whose id is the process's tgid. A task gets a
/// table of its own when it is cloned without `CLONE_FILES` (a new process, or a
/// thread: its id is its tid), when it calls `unshare(CLONE_FILES)` while sharing its
/// table, or when it execs while another process shares its table (`CLONE_FILES`
/// without `CLONE_THREAD`): the kernel copies the table, and the copy gets a new id, a
/// negative number (never a tid). Which tasks share a table is the caller's to know.
#[derive(Debug, Clone, Default)]
pub struct FdTables {
    books: HashMap<i32, OutputFds>,
    /// How many tables were given a negative id.
    made: i32,
}

impl FdTables {
    /// The stream fd `fd` of table `files` writes to, if any.
    pub fn stream(&self, files: i32, fd: u64) -> Option<Stream> {
        match self.books.get(&files) {
            Some(b) => b.stream(fd),
            None => OutputFds::default().stream(fd),
        }
    }

    /// Updates table `files` after a successful syscall made with it.
    pub fn after_syscall(&mut self, files: i32, sysno: u64, args: &[u64; 6], ret: i64) {
        if ret >= 0 {
            self.books
                .entry(files)
                .or_default()
                .after_syscall(sysno, args, ret);
        }
    }

    /// The table of task `child`, cloned by a task using table `parent` with clone
    /// `flags` (0 for fork and vfork): the parent's (`CLONE_FILES`) or a copy named by
    /// the child's tid.
    pub fn on_clone(&mut self, parent: i32, child: i32, flags: u64) -> i32 {
        if flags & libc::CLONE_FILES as u64 != 0 {
            return parent;
        }
        let copy = self.books.get(&parent).cloned().unwrap_or_default();
        self.books.insert(child, copy);
        child
    }

    /// A task using table `files` unshared it or exec'd: when `shared` (another task
    /// uses it too) the task now has a copy under a new id, which is returned.
    pub fn leave(&mut self, files: i32, shared: bool) -> i32 {
        if !shared {
            return files;
        }
        self.made += 1;
        let id = -self.made;
        let copy = self.books.get(&files).cloned().unwrap_or_default();
        self.books.insert(id, copy);
        tracing::debug!("fd table {files} copied as {id}");
        id
    }

    /// After `pidfd_getfd(pidfd, target_fd, 0)` made with table `files` returned `ret`:
    /// the new fd writes where the target process's fd does (`table_of` names a
    /// process's table, given its pid; a process without books, outside the recorded
    /// tree, has no stdout or stderr of the program's).
    pub fn after_getfd(
        &mut self,
        files: i32,
        table_of: impl Fn(i32) -> i32,
        args: &[u64; 6],
        ret: i64,
    ) {
        if ret < 0 {
            return;
        }
        let stream = self
            .books
            .get(&files)
            .and_then(|ours| ours.pidfds.get(&args[0]).copied())
            .and_then(|pid| self.books.get(&table_of(pid)))
            .and_then(|theirs| theirs.stream(args[1]));
        let ours = self.books.entry(files).or_default();
        ours.pidfds.remove(&(ret as u64));
        match stream {
            Some(s) => ours.fds.insert(ret as u64, s),
            None => ours.fds.remove(&(ret as u64)),
        };
    }
}

impl OutputFds {
    /// The stream an fd writes to, if any.
    pub fn stream(&self, fd: u64) -> Option<Stream> {
        self.fds.get(&fd).copied()
    }

    /// Updates the table after a successful syscall.
    pub fn after_syscall(&mut self, sysno: u64, args: &[u64; 6], ret: i64) {
        if ret < 0 {
            return;
        }
        match sysno {
            nr::CLOSE => {
                self.fds.remove(&args[0]);
                self.pidfds.remove(&args[0]);
            }
            nr::CLOSE_RANGE => {
                self.fds.retain(|fd, _| *fd < args[0] || *fd > args[1]);
                self.pidfds.retain(|fd, _| *fd < args[0] || *fd > args[1]);
            }
            nr::PIDFD_OPEN => {
                self.fds.remove(&(ret as u64));
                self.pidfds.insert(ret as u64, args[0] as i32);
            }
            nr::DUP => self.copy(args[0], ret as u64),
            nr::DUP2 | nr::DUP3 => self.copy(args[0], args[1]),
            nr::FCNTL
                if args[1] == libc::F_DUPFD as u64 || args[1] == libc::F_DUPFD_CLOEXEC as u64 =>
            {
                self.copy(args[0], ret as u64)
            }
            _ => {}
        }
    }

    fn copy(&mut self, from: u64, to: u64) {
        if from == to {
            return;
        }
        match self.fds.get(&from).copied() {
            Some(s) => {
                self.fds.insert(to, s);
            }
            None => {
                self.fds.remove(&to);
            }
        }
        match self.pidfds.get(&from).copied() {
            Some(pid) => {
                self.pidfds.insert(to, pid);
            }
            None => {
                self.pidfds.remove(&to);
            }
        }
    }

    /// Whether a syscall writes its buffer(s) to an fd in arg 0: write, pwrite64 (one
    /// buffer in arg 1) or writev, pwritev, pwritev2 (iovecs in arg 1, count in arg 2).
    pub fn write_kind(sysno: u64) -> Option<WriteKind> {
        match sysno {
            nr::WRITE | nr::PWRITE64 => Some(WriteKind::Buffer),
            nr::WRITEV | nr::PWRITEV | nr::PWRITEV2 => Some(WriteKind::Iovec),
            _ => None,
        }
    }
}

/// How a write-like syscall passes its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// One buffer: arg 1, length arg 2.
    Buffer,
    /// An iovec array: arg 1, count arg 2.
    Iovec,
}

/// Reads the bytes a write-like call actually wrote (`ret` of them) from the tracee.
pub fn written_bytes(
    task: &mut crate::ptrace::Task,
    kind: WriteKind,
    args: &[u64; 6],
    ret: i64,
) -> crate::errors::Result<Vec<u8>> {
    let n = ret.max(0) as u64;
    match kind {
        WriteKind::Buffer => task.read_mem(args[1], n as usize),
        WriteKind::Iovec => {
            let mut out = Vec::with_capacity(n as usize);
            let mut left = n;
            for (base, len) in crate::syscalls::effects::read_iovecs(task, args[1], args[2])? {
                if left == 0 {
                    break;
                }
                let take = len.min(left);
                out.extend(task.read_mem(base, take as usize)?);
                left -= take;
            }
            Ok(out)
        }
    }
}
