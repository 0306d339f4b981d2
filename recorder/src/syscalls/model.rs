//! The types that the generated syscall table (`syscalls.toml`, turned into Rust by
//! `build.rs`) is made of. The build script compiles this file too (its checks produce
//! these types, its emitter prints them), so keep it free of crate paths.
//!
//! The table describes, declaratively, what the recorder must know about each system
//! call: which arguments point to memory the kernel writes (outputs) or reads (inputs),
//! how large that memory is, whether the call may block, and what replay does with it
//! (its [`Class`]). Calls whose memory effects cannot be described by [`Size`] are marked
//! `special` and get a hand-written handler in the engine.

/// What record and replay do with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Executed at record; at replay its result and the memory it wrote are injected
    /// without running it (`PTRACE_SYSEMU`).
    Recorded,
    /// Really executed at replay too: it shapes the address space, the signal state or
    /// the task (mmap, munmap, rt_sigaction, exit_group...). Its result is still checked.
    Executed,
    /// Never executed: the program gets `-errno`, which it is known to cope with
    /// (rseq -> ENOSYS makes glibc fall back).
    Refused {
        /// The errno returned to the program (positive, e.g. `libc::ENOSYS`).
        errno: i32,
    },
    /// Not supported yet: recording stops with the name and this hint.
    Unsupported {
        /// What the user can do about it.
        hint: &'static str,
    },
}

/// How many bytes a memory argument covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The syscall's return value, when non-negative (read, recvfrom...).
    Ret,
    /// The value of argument `n` (0-based).
    Arg(u8),
    /// A fixed number of bytes (`struct stat` is 144).
    Fixed(usize),
    /// The value of argument `n` times `k` bytes (poll: nfds * 8).
    ArgTimes(u8, usize),
    /// The return value times `k` bytes (epoll_wait: ret * 12).
    RetTimes(usize),
    /// A NUL-terminated string (paths); inputs only.
    CStr,
    /// The `u32` that argument `n` points to (a `socklen_t *`), read at syscall exit and
    /// capped by its value at entry.
    SockLen(u8),
    /// An `iovec` array at this argument with the count in argument `n`; for outputs the
    /// buffers are filled up to the return value, for inputs all of them are read.
    Iovec(u8),
}

/// One memory argument of a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemArg {
    /// Which argument (0-based) holds the pointer.
    pub arg: u8,
    /// How large the memory is.
    pub size: Size,
    /// For an output sized by the result ([`Size::Ret`], [`Size::RetTimes`]): the most
    /// the kernel may write, known at entry (`read`: its count, argument 2). Every such
    /// output of a `may_block` row has one: while the call blocks, the buffer is moved to
    /// scratch memory of that size (`record::redirect`). The engine records at most
    /// that many bytes of it (keyctl's `KEYCTL_READ` returns the payload's full size,
    /// however short the buffer).
    pub max: Option<Size>,
    /// The kernel writes this output also when the call fails (waitid fills the first
    /// fields of its `siginfo_t` with zeros on ECHILD, EBADF, EINVAL...): the recorder
    /// collects it after a failure too, and replay writes it again.
    pub on_error: bool,
}

/// Everything the recorder knows about one system call.
#[derive(Debug, Clone, Copy)]
pub struct SyscallDesc {
    /// The name, as in `man 2`.
    pub name: &'static str,
    /// The number on x86_64.
    pub nr: u64,
    /// What record and replay do with it.
    pub class: Class,
    /// Whether it may block for an unbounded time (futex wait, read of a pipe...).
    pub may_block: bool,
    /// Never stops the program at record and is not in the trace: it only changes the
    /// program's own state, which replay re-creates by running it too (see
    /// `record::seccomp`).
    pub untraced: bool,
    /// The preload library may make it without a stop and record it in the thread's
    /// buffer (see `crate::syscallbuf`); the seccomp filter lets exactly these numbers
    /// through at the library's untraced entry.
    pub buffered: bool,
    /// It may create, close or replace file descriptors: the syscall-buffering library's
    /// cache of which fds are regular files is invalidated after it (see
    /// `record::buffers`).
    pub changes_fds: bool,
    /// Memory the kernel writes.
    pub outputs: &'static [MemArg],
    /// Memory the kernel reads; hashed at record and checked at replay.
    pub inputs: &'static [MemArg],
    /// The memory effects need a hand-written handler (ioctl, fcntl, recvmsg, ...).
    pub special: bool,
    /// Never run, at record or replay: the program gets this result
    /// (`sched_setaffinity`: 0, the recording stays pinned to one core).
    pub answer: Option<i64>,
    /// For an executed call: replay checks that it returns what it returned at record
    /// (false where the result is an id that differs, or there is none).
    pub same_result: bool,
    /// Free text for `dump` and error messages.
    pub note: &'static str,
}

/// A request of a multiplexing syscall (ioctl request, fcntl command, prctl option).
#[derive(Debug, Clone, Copy)]
pub struct RequestDesc {
    /// The symbolic name (`TCGETS`, `F_GETFL`, `PR_SET_NAME`).
    pub name: &'static str,
    /// Its value.
    pub value: u64,
    /// What record and replay do with it.
    pub class: Class,
    /// Memory the kernel writes.
    pub outputs: &'static [MemArg],
    /// Memory the kernel reads.
    pub inputs: &'static [MemArg],
}
