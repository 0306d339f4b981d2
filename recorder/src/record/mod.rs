//! Recording: run the program under ptrace, one syscall stop at a time, and write every
//! source of nondeterminism into the trace.
//!
//! Flow (see `docs/architecture.md`): spawn pinned and stopped → at the initial execve's
//! exit stop, arm CPUID faulting and TSC trapping, hide the vDSO, capture the address
//! space → loop: syscall entry (classify with the table, refuse or stop on unsupported
//! calls) → syscall exit (result + written memory) → SIGSEGV from rdtsc/cpuid is
//! emulated → the end.

mod buffers;
mod desched;
mod exec;
mod fd_tables;
mod header;
mod interrupt;
mod job_control;
mod ordering;
mod probe;
mod program_filters;
pub mod redirect;
pub mod seccomp;
mod self_memory;
mod session;
mod shared_files;
pub(crate) mod signal;
mod sink;
mod slices;
mod syscall;

pub(crate) use syscall::{untraced_clone, CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::arch::{self, Trapped};
use crate::errors::{Error, Result};
use crate::output::{FdTables, OutputFds, Stream};
use crate::ptrace::{reap, Resume, Stop, SyscallStop, Task};
use crate::sched::{Chaos, Point, Scheduler};
use crate::spawn::{self, SpawnSpec};
use crate::syscalls::{self, effects, nr, resolve_request, special, Class, MemArg};
use crate::trace::{
    signal_name, Event, EventWriter, ExitKind, FileStore, Header, Outcome, RunResult, SyscallEvent,
    TraceDir, TraceFault,
};
use sink::EventSink;

pub use interrupt::Interrupter;
use interrupt::Watchdog;
use session::record_here;

/// Where the recorded program's stdin, stdout and stderr go.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// The recorder's own.
    #[default]
    Inherit,
    /// stdin from /dev/null, stdout and stderr into these files (created or truncated).
    Files {
        /// File for fd 1.
        stdout: PathBuf,
        /// File for fd 2.
        stderr: PathBuf,
    },
}

/// What to record.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    /// The program (a path, or a name looked up in PATH).
    pub program: PathBuf,
    /// Its arguments (without argv[0]).
    pub args: Vec<OsString>,
    /// The environment it gets (the caller has already removed secrets).
    pub env: Vec<(OsString, OsString)>,
    /// Names of the variables the caller removed, for the header.
    pub removed_env: Vec<String>,
    /// Working directory (default: the recorder's).
    pub cwd: Option<PathBuf>,
    /// Where the trace goes; must not exist or be empty, unless `reuse_trace_dir`.
    pub trace_dir: PathBuf,
    /// `trace_dir` is a scratch directory that may hold an earlier recording, which this
    /// one overwrites (see [`TraceDir::reuse`]).
    pub reuse_trace_dir: bool,
    /// Scheduler seed (default: random).
    pub seed: Option<u64>,
    /// The scheduling policy (default: off, the default policy; see [`crate::sched`]).
    pub chaos: Chaos,
    /// Never preempt a thread that runs without syscalls: only decisions the seed fixes
    /// remain (for tests of the seeded schedule). A thread that spins waiting for
    /// another then spins for ever.
    pub no_watchdog: bool,
    /// What measures time slices: the running thread's CPU time where perf events are
    /// allowed (the default), or wall-clock time (see [`crate::preempt::cpu_clock`]).
    pub slice_clock: crate::preempt::cpu_clock::SliceClock,
    /// The core to pin the recording to (default: the one this thread is on).
    pub cpu: Option<usize>,
    /// Where the program's standard streams go.
    pub stdio: Stdio,
    /// Stop the recording after this long (the trace is marked `timed_out`).
    pub timeout: Option<std::time::Duration>,
    /// Lets another thread stop the recording.
    pub interrupter: Option<std::sync::Arc<Interrupter>>,
    /// Where captured files are kept for later recordings (a flake hunt records the same
    /// binaries again and again): they are then hard-linked, not copied and hashed each
    /// time. It only saves work on the trace's file system.
    pub capture_cache: Option<crate::trace::files::CaptureCache>,
    /// Put the syscall-buffering preload library into the program (`crate::syscallbuf`).
    /// False in `Default` (the library API's tests record every call traced); the
    /// `cargo chaos` commands turn it on unless `--no-syscallbuf`.
    pub syscallbuf: bool,
}

/// What a finished recording produced.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    /// The trace directory.
    pub trace: PathBuf,
    /// How it ended.
    pub result: RunResult,
}

/// What the engine remembers between a syscall's entry and exit.
struct Pending {
    nr: u64,
    args: [u64; 6],
    input_hash: u64,
    outputs: &'static [MemArg],
    /// The special handler computes the outputs.
    special: bool,
    entry: effects::EntryState,
    /// Skip the call and return this instead (refused calls, emulated ones).
    fake_ret: Option<i64>,
    /// Output buffers pointed at scratch memory while blocked.
    redirect: Option<redirect::Redirected>,
    /// clone with CLONE_THREAD.
    creates_thread: bool,
    /// The execve succeeded (its ptrace exec event was seen).
    exec_happened: bool,
    /// The fd a write-family call writes to (see [`ordering`]), and the file behind it
    /// once looked up (`Some(None)`: it could not be).
    out_fd: Option<u64>,
    out_key: Option<Option<ordering::FileKey>>,
    /// The thread made the call under this tid and is now its process's leader: it
    /// exec'ed from a thread other than the main one (see [`Recorder::exec_takeover`]).
    exec_from: Option<i32>,
    /// A multiplexing call whose request is not in the table (`fcntl(fd, 9999)`): it
    /// runs without outputs, and only its failure can be recorded (the kernel's EINVAL
    /// or ENOTTY); a success stops the recording with this request named.
    unknown_request: Option<String>,
}

/// A write-family call held at its entry stop while another thread's write to the same
/// file is in flight (see [`ordering`]); it starts over from its entry when released.
#[derive(Debug, Clone, Copy)]
struct Held {
    nr: u64,
    args: [u64; 6],
    /// Stopped by the seccomp filter (see [`Recorder::on_entry`]).
    at_seccomp: bool,
    /// The file it writes to.
    key: ordering::FileKey,
}

/// Where a thread of the recorded program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// Stopped; resume it with this signal when it is scheduled.
    Ready(i32),
    /// Resumed into a blocking syscall: it sits in the kernel while others run.
    Blocked,
    /// Its blocking syscall returned this; stopped at the exit stop, not yet recorded.
    Unblocked(i64),
    /// Stopped at the entry of a write-family call ([`Thread::held`]) until another
    /// thread's write to the same file is recorded.
    Held,
    /// The running thread.
    Running,
    /// In a group-stop (SIGSTOP and the like): not scheduled until its process is
    /// continued (see [`job_control`]).
    Stopped,
}

struct Thread {
    task: Task,
    /// The process it belongs to.
    tgid: i32,
    /// Its fd table: the key of the books kept per table ([`Recorder::out_fds`]). Its
    /// process's tgid, unless the table is not the process's (see [`fd_tables`]).
    files: i32,
    slot: u64,
    state: Where,
    pending: Option<Pending>,
    /// Where it resumes after the syscall-exit stop it was last resumed from; a signal
    /// stop there is a point replay can name ("right after that syscall").
    exit_rip: Option<u64>,
    /// The call it was last resumed from was `rt_sigreturn`, and a signal that the
    /// call's restored mask unblocks was pending at its exit: the kernel delivers it
    /// there before the thread runs an instruction (see [`signal`]).
    exit_unblocks: bool,
    /// That call was `rt_sigreturn`: [`Thread::exit_unblocks`] is asked again as the
    /// thread is resumed, for signals that arrived while it stood at the exit stop
    /// (another thread ran).
    sigreturn_exit: bool,
    /// A buffered `FUTEX_WAKE` of its woke a waiter since its last flush call (a
    /// scheduling point at that call's exit, see [`Point::Wake`]).
    buffered_wake: bool,
    /// It stands where its last [`Event::Preempted`] recorded it (this `rip`), and has
    /// not run since.
    at_point: Option<u64>,
    /// It was resumed from there with a signal pending that it does not block and that
    /// no other thread can take first: its next stop is that signal's, before it runs
    /// an instruction, still at the point (see [`Recorder::on_signal`]).
    resumed_at_point: Option<u64>,
    /// Asynchronous signals that arrived at a point replay cannot name; each is queued
    /// again at the thread's next syscall exit.
    deferred: std::collections::VecDeque<libc::siginfo_t>,
    /// The deferred signal being queued again, whose delivery stop comes next.
    requeued: Option<libc::siginfo_t>,
    /// The call it is held at ([`Where::Held`]).
    held: Option<Held>,
    /// Its syscall buffer, once registered (shared with a vfork child, which runs on
    /// its parent's memory; see [`buffers`]).
    sb: Option<buffers::SharedBuffer>,
    /// It blocks SIGSEGV (as its last rt_sigprocmask or rt_sigreturn left it, or its
    /// parent when it was created): see [`signal::reblock_segv`].
    segv_blocked: bool,
    /// The program asked for `PR_SET_TSC(PR_TSC_SIGSEGV)` in it (or in the thread it was
    /// cloned from): its rdtsc/rdtscp faults are the program's SIGSEGV, not answered by
    /// the recorder (whose own trap is always armed, see `spawn::SpawnSpec`). Kept
    /// across exec, as the kernel keeps the setting.
    tsc_sigsegv: bool,
    /// Its CPU-time slice clock, opened at its first slice (see [`slices`]).
    clock: Option<crate::preempt::cpu_clock::CpuClock>,
    /// Since when it holds a signal in `deferred` without having made a traced call
    /// (see [`slices::HELD_SIGNAL_SLICE`]). Times here are
    /// `arch::self_traps::monotonic_now` readings: the vDSO clock traps on this thread.
    held_since: Option<std::time::Duration>,
    /// Its running slice is the one that ends in a held signal's delivery (shorter
    /// than its ordinary slice, if it has one).
    delivery_slice: bool,
    /// When that slice is over at the earliest (its length in wall-clock time).
    slice_ends: Option<std::time::Duration>,
    /// The program's own seccomp filters in effect for it (see [`program_filters`]).
    filters: crate::program_filter::Chain,
    /// The filter its pending seccomp call installs (rewritten in the call).
    installing: Option<program_filters::Installing>,
    /// Its desched event, opened at its buffer's registration (see [`desched`]).
    desched: Option<desched::Desched>,
    /// The scratch redirection of its last call, which a signal interrupted with
    /// `-ERESTART_RESTARTBLOCK`: the kernel's restart (`restart_syscall`) writes where
    /// the kernel saw the outputs, the scratch copies (see [`redirect::restarted`]).
    restart_redirect: Option<redirect::Redirected>,
    /// Its stack (`rsp`, `fs_base`) when it was last resumed into a blocking call
    /// ([`Where::Blocked`]), where its registers cannot be read: the digest of another
    /// thread's preemption point leaves its dead stack out (see
    /// [`Recorder::other_stacks`]).
    kernel_stack: Option<crate::preempt::memory::Preempted>,
}

impl Thread {
    fn new(task: Task, tgid: i32, slot: u64) -> Self {
        Thread {
            task,
            tgid,
            files: tgid,
            slot,
            state: Where::Ready(0),
            pending: None,
            restart_redirect: None,
            kernel_stack: None,
            exit_rip: None,
            exit_unblocks: false,
            sigreturn_exit: false,
            buffered_wake: false,
            at_point: None,
            resumed_at_point: None,
            deferred: Default::default(),
            requeued: None,
            held: None,
            sb: None,
            segv_blocked: false,
            tsc_sigsegv: false,
            clock: None,
            held_since: None,
            delivery_slice: false,
            slice_ends: None,
            filters: Default::default(),
            installing: None,
            desched: None,
        }
    }
}

/// What the main loop does after a stop of the running thread.
enum Next {
    /// Keep running it.
    Continue,
    /// Give the CPU to another thread.
    Switch,
    /// The program has ended.
    Finished(ExitKind),
}

struct Recorder {
    trace: TraceDir,
    events: EventSink,
    files: FileStore,
    /// The first failure to write the trace: the program runs on, unrecorded (see
    /// [`TraceFault`]).
    fault: TraceFault,
    threads: BTreeMap<i32, Thread>,
    leader: i32,
    /// Leads the process group the program started in (see [`spawn::GroupHolder`]);
    /// its pid is that group's id. `None` once a wait loop reaped it.
    group: Option<spawn::GroupHolder>,
    /// The process group the program started in.
    first_group: i32,
    /// Process leaders that called `exit` while their other threads live on: zombies
    /// until those end.
    zombies: HashSet<i32>,
    current: Option<i32>,
    previous: Option<i32>,
    sched: Scheduler,
    next_slot: u64,
    /// Stops of tasks we did not know yet (a new thread can report before its parent's
    /// clone event is handled).
    early: HashMap<i32, Stop>,
    /// The thread the last waking `FUTEX_WAKE` woke, seen returning (see
    /// [`Recorder::collect_woken`]): the next pick's choice under the default policy.
    woken: Option<i32>,
    /// Each fd table's view of which fds are the original stdout and stderr (keyed by
    /// [`Thread::files`]).
    fd_tables: FdTables,
    stdout: std::fs::File,
    stderr: std::fs::File,
    cpu_set: Vec<usize>,
    cpuid_seen: BTreeSet<[u32; 6]>,
    /// The program runs under the recorder's seccomp filter (see [`seccomp`]): threads
    /// are resumed with `PTRACE_CONT` between calls.
    seccomp: bool,
    /// The engine resolves paths as the program does (same root, mounts and
    /// credentials), so it may answer failing lookups itself (see [`probe`]).
    same_lookups: bool,
    /// The program made a pid namespace (`clone` or `unshare` with `CLONE_NEWPID`): each
    /// new task's namespaces are looked up and recorded (see [`crate::pidns`]).
    pid_namespaces: bool,
    /// The tasks in the program's pid namespaces, and their pids there.
    pidns: crate::pidns::PidNamespaces,
    /// Lookups answered that way.
    lookups_answered: u64,
    /// See [`crate::trace::RunResult::completed_at_entry`].
    completed_at_entry: u64,
    /// Stops for a desched event's signal (`RunResult::desched_signals`).
    desched_signals: u64,
    /// Desched events opened (`RunResult::desched_events`).
    desched_events: u64,
    /// `chaos_tick` calls answered.
    ticks: u64,
    /// Files mapped `MAP_SHARED`, whose write-family changes are recorded.
    shared: shared_files::SharedFiles,
    /// A process memory file (`/proc/.../mem`) may be open: only then are writes checked
    /// for being writes into memory (see `self_memory`), so the common path pays nothing.
    mem_file_opened: bool,
    interrupter: std::sync::Arc<Interrupter>,
    watchdog: std::sync::Arc<crate::preempt::Watchdog>,
    /// [`RecordOptions::no_watchdog`].
    no_watchdog: bool,
    /// Slices are measured in CPU time ([`RecordOptions::slice_clock`]), until the
    /// kernel refuses the perf event (see [`slices`]).
    cpu_slices: bool,
    /// Syscall buffering is on: the library is preloaded, the filter lets its calls
    /// through, and threads' buffers are read at their stops (see [`buffers`]).
    syscallbuf: bool,
    /// The signal stop being handled is the first of a thread resumed at its
    /// preemption point (this `rip`) with a signal to come first
    /// ([`Thread::resumed_at_point`]).
    stop_at_point: Option<u64>,
    /// Each process's syscall-buffering fd-cache generation word (see [`buffers`]).
    fd_gens: HashMap<i32, u64>,
    /// The last generation written (one counter for the whole recording, so two
    /// processes on one memory, vfork, never write the same value twice).
    fd_gen_counter: u64,
    /// Threads that share their thread-local area with another task (a `CLONE_VM`
    /// clone without `CLONE_SETTLS`): the library's per-thread state is not theirs
    /// alone, so they never get a buffer (see [`Recorder::retire_shared_tls_buffer`]).
    shared_tls: HashSet<i32>,
    /// Threads that register a buffer get a desched event, and the library buffers
    /// calls that may block (see [`desched`]).
    desched: bool,
}

/// Records one run of a program into a new trace directory.
///
/// The recording runs on a thread of its own: ptrace ties tracees to the tracer thread,
/// and waiting for "any of my tracees" (`__WNOTHREAD`) then sees only this recording's.
pub fn record(opts: &RecordOptions) -> Result<RecordSummary> {
    let opts = opts.clone();
    std::thread::Builder::new()
        .name("chaos-record".into())
        .spawn(move || record_here(&opts))
        .map_err(|e| Error::Spawn {
            program: "recorder thread".into(),
            reason: e.to_string(),
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Unsupported {
                what: "the recorder thread panicked".into(),
                hint: "report this as a bug".into(),
            })
        })
}

/// Records one run on the calling thread, for callers that keep a thread for recordings
/// (a hunt's workers): [`record`] starts a thread per recording.
///
/// The thread must have no children of its own: it becomes the tracer, it is pinned to
/// the recording's core, and it has the tracees' rdtsc and cpuid traps armed while it
/// records (see [`crate::arch::self_traps`]).
pub fn record_on_this_thread(opts: &RecordOptions) -> Result<RecordSummary> {
    record_here(opts)
}

impl Recorder {}
