//! Recording: run the program under ptrace, one syscall stop at a time, and write every
//! source of nondeterminism into the trace.
//!
//! Flow (see `docs/architecture.md`): spawn pinned and stopped → at the initial execve's
//! exit stop, arm CPUID faulting and TSC trapping, hide the vDSO, capture the address
//! space → loop: syscall entry (classify with the table, refuse or stop on unsupported
//! calls) → syscall exit (result + written memory) → SIGSEGV from rdtsc/cpuid is
//! emulated → the end.

mod exec;
mod ordering;
mod probe;
pub mod redirect;
pub mod seccomp;
mod shared_files;
mod sink;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::arch::{self, Trapped};
use crate::errors::{Error, Result};
use crate::output::{OutputFds, Stream};
use crate::ptrace::{reap, Resume, Stop, SyscallStop, Task};
use crate::sched::{Point, Scheduler};
use crate::spawn::{self, SpawnSpec};
use crate::syscalls::{self, effects, nr, resolve_request, special, Class, MemArg};
use crate::trace::{
    signal_name, Event, EventWriter, ExitKind, FileStore, Header, Outcome, RunResult, SyscallEvent,
    TraceDir, TraceFault,
};
use sink::EventSink;

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

/// How long an interrupted recording waits for its blocked threads to report whether
/// their calls finished.
const STOP_COLLECT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long an interrupted recording may take to write down its last calls before the
/// tree is killed regardless.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Stops a running recording from another thread (Ctrl-C, a time limit). The trace is
/// kept, marked with the reason, and replays up to the point where it was stopped.
#[derive(Debug, Default)]
pub struct Interrupter {
    state: std::sync::Mutex<(Option<i32>, Option<Outcome>)>,
    /// Set with the outcome: the engine checks it at every stop, without the lock.
    asked: std::sync::atomic::AtomicBool,
}

impl Interrupter {
    /// A new, unarmed interrupter.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Stops the recording (if one is running) and marks it with `why`
    /// ([`Outcome::Interrupted`] or [`Outcome::TimedOut`]).
    ///
    /// The first request stops the program (SIGSTOP), so that the engine can still write
    /// down the calls that finished in the kernel (a write whose bytes already reached
    /// the terminal must be in the trace, or the replay would not print them), then
    /// kills the tree. A second request kills it at once.
    ///
    /// Should the engine not get to it (the SIGSTOP reached no task it is waiting for),
    /// the tree is killed after [`STOP_GRACE`] all the same.
    pub fn interrupt(self: &std::sync::Arc<Self>, why: Outcome) {
        self.mark(why, |pid, first| {
            let sig = if first { libc::SIGSTOP } else { libc::SIGKILL };
            // SAFETY: plain syscall; the pid is the live leader of the recording (it is
            // unregistered, under the lock `mark` holds, before it is reaped).
            unsafe { libc::kill(pid, sig) };
            if first {
                let me = std::sync::Arc::clone(self);
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_GRACE);
                    me.abort(why);
                });
            }
        });
    }

    /// Kills the recorded program at once and marks the recording with `why`: for a
    /// recording nobody will replay (a flake hunt stopping its other runs).
    pub fn abort(&self, why: Outcome) {
        // SAFETY: as in `interrupt`.
        self.mark(why, |pid, _| unsafe {
            libc::kill(pid, libc::SIGKILL);
        });
    }

    /// Marks the recording as stopped with `why` without signalling anything: for the
    /// engine, which stops it itself (a second `interrupt` would kill at once).
    fn note(&self, why: Outcome) {
        self.mark(why, |_, _| {});
    }

    /// Records `why` unless a reason is recorded already, then, if a recording is
    /// running, calls `signal` with its leader and whether this was the first request,
    /// still holding the lock.
    fn mark(&self, why: Outcome, signal: impl FnOnce(i32, bool)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = st.1.is_none();
        if first {
            st.1 = Some(why);
            self.asked.store(true, std::sync::atomic::Ordering::Release);
        }
        if let Some(pid) = st.0 {
            signal(pid, first);
        }
    }

    /// Whether a stop was asked for.
    fn requested(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::Acquire)
    }

    fn arm(&self, pid: i32) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = Some(pid);
        st.1.is_some()
    }

    fn disarm(&self) -> Option<Outcome> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = None;
        st.1
    }
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
}

struct Thread {
    task: Task,
    /// The process it belongs to.
    tgid: i32,
    slot: u64,
    state: Where,
    pending: Option<Pending>,
    /// Where it resumes after the syscall-exit stop it was last resumed from; a signal
    /// stop there is a point replay can name ("right after that syscall").
    exit_rip: Option<u64>,
    /// Asynchronous signals that arrived at a point replay cannot name; each is queued
    /// again at the thread's next syscall exit.
    deferred: std::collections::VecDeque<libc::siginfo_t>,
    /// The deferred signal being queued again, whose delivery stop comes next.
    requeued: Option<libc::siginfo_t>,
    /// The call it is held at ([`Where::Held`]).
    held: Option<Held>,
}

impl Thread {
    fn new(task: Task, tgid: i32, slot: u64) -> Self {
        Thread {
            task,
            tgid,
            slot,
            state: Where::Ready(0),
            pending: None,
            exit_rip: None,
            deferred: Default::default(),
            requeued: None,
            held: None,
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
    /// Each process's view of which fds are the original stdout and stderr.
    out_fds: HashMap<i32, OutputFds>,
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
    /// Lookups answered that way.
    lookups_answered: u64,
    /// `chaos_tick` calls answered.
    ticks: u64,
    /// Files mapped `MAP_SHARED`, whose write-family changes are recorded.
    shared: shared_files::SharedFiles,
    interrupter: std::sync::Arc<Interrupter>,
    watchdog: std::sync::Arc<crate::preempt::Watchdog>,
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
/// the recording's core and CPUID faulting stays armed on it afterwards (see
/// [`crate::arch::self_cpuid`]).
pub fn record_on_this_thread(opts: &RecordOptions) -> Result<RecordSummary> {
    record_here(opts)
}

fn record_here(opts: &RecordOptions) -> Result<RecordSummary> {
    let trace = if opts.reuse_trace_dir {
        TraceDir::reuse(&opts.trace_dir)?
    } else {
        TraceDir::create(&opts.trace_dir)?
    };
    let env_path = opts
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let exe = spawn::resolve_program(&opts.program, env_path)?;
    let cwd = match &opts.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir().map_err(|e| Error::io(".", e))?,
    };

    // Pin this thread and the program to one core: ptrace stops cost ~11x more across
    // cores. The program is still shown the real CPU set (sched_getaffinity is rewritten).
    let cpu_set = spawn::cpu_set();
    let pinned = opts
        .cpu
        .or_else(current_cpu)
        .filter(|c| cpu_set.contains(c))
        .unwrap_or(cpu_set[0]);
    spawn::pin_self(&[pinned]);
    // Runs on a thread of its own (see `record`), which ends with the recording.
    crate::arch::self_cpuid::arm_for_this_thread();
    let mut argv = vec![opts.program.clone().into_os_string()];
    argv.extend(opts.args.iter().cloned());
    let seed = opts.seed.unwrap_or_else(random_seed);
    let header = Header {
        format_version: crate::trace::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        argv: argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: cwd.to_string_lossy().into_owned(),
        env: opts
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect(),
        removed_env: opts.removed_env.clone(),
        exe: exe.to_string_lossy().into_owned(),
        hostname: crate::host::hostname(),
        kernel: crate::host::kernel_version(),
        cpu_model: crate::host::cpu_model(),
        seed,
        aslr_disabled: false,
        cpuid_faulting: false,
        cpu_set: cpu_set.clone(),
        pinned_cpu: pinned,
        untraced: Vec::new(),
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let stdio_files = match &opts.stdio {
        Stdio::Inherit => None,
        Stdio::Files { stdout, stderr } => {
            let create = |p: &PathBuf| std::fs::File::create(p).map_err(|e| Error::io(p, e));
            let stdin = std::fs::File::open("/dev/null").map_err(|e| Error::io("/dev/null", e))?;
            Some([stdin, create(stdout)?, create(stderr)?])
        }
    };
    // The program runs in a process group of its own (what it sends to its group must
    // not reach the recorder), in the terminal's foreground if the recorder was; the
    // guard gives the foreground back when the recording ends.
    let foreground = match opts.stdio {
        Stdio::Inherit => spawn::ForegroundGuard::for_stdin(),
        Stdio::Files { .. } => None,
    };
    let spec = SpawnSpec {
        path: &exe,
        argv,
        env: opts.env.clone(),
        cwd: Some(&cwd),
        cpu: Some(pinned),
        no_aslr: true,
        null_stdio: false,
        stdio_fds: stdio_files
            .as_ref()
            .map(|f| [f[0].as_raw_fd(), f[1].as_raw_fd(), f[2].as_raw_fd()]),
        no_core: false,
        trap_tsc_no_new_privs: true,
        landlock: None,
        own_process_group: true,
        foreground_tty: foreground.as_ref().map(spawn::ForegroundGuard::tty),
    };
    // The trace's files exist before the program starts: failing to create them stops
    // the recording before anything ran.
    let fault = TraceFault::new();
    let open = |name: &str| {
        std::fs::File::create(trace.path.join(name))
            .map_err(|e| Error::io(trace.path.join(name), e))
    };
    let events = EventSink::new(
        EventWriter::create(&trace.path.join("events"))?,
        fault.clone(),
    );
    let (stdout, stderr) = (open("stdout")?, open("stderr")?);
    let pid = spawn::spawn_traced(&spec)?;
    drop(stdio_files);
    let interrupter = opts.interrupter.clone().unwrap_or_default();
    if interrupter.arm(pid) {
        interrupter.interrupt(Outcome::Interrupted);
    }
    let watchdog = opts
        .timeout
        .map(|limit| Watchdog::start(limit, interrupter.clone()));
    let mut rec = Recorder {
        events,
        files: FileStore::with_cache(trace.path.join("files"), opts.capture_cache.clone())
            .reporting_to(fault.clone()),
        fault: fault.clone(),
        threads: BTreeMap::from([(pid, Thread::new(Task::new(pid), pid, 0))]),
        leader: pid,
        zombies: HashSet::new(),
        current: Some(pid),
        previous: None,
        sched: Scheduler::new(seed),
        next_slot: 1,
        early: HashMap::new(),
        out_fds: HashMap::new(),
        stdout,
        stderr,
        cpu_set,
        cpuid_seen: BTreeSet::new(),
        seccomp: false,
        same_lookups: true,
        lookups_answered: 0,
        ticks: 0,
        shared: shared_files::SharedFiles::default(),
        interrupter: interrupter.clone(),
        watchdog: crate::preempt::Watchdog::start(),
        trace: trace.clone(),
    };
    let r = rec.run(header);
    rec.watchdog.shutdown();
    if r.is_err() {
        rec.kill_all();
    }
    drop(watchdog);
    let stopped = interrupter.disarm();
    rec.events.flush();
    if opts.reuse_trace_dir {
        if let Err(e) = rec.files.remove_unused() {
            fault.note(e);
        }
    }
    let events = rec.events.count();
    let cpuid_leaves = rec.cpuid_seen.iter().copied().collect();
    let (ticks, lookups_answered) = (rec.ticks, rec.lookups_answered);
    // Closes the trace's files (a removed file's space is freed when it is closed).
    drop(rec);
    let mut result = match r {
        Ok(how) => RunResult {
            outcome: match (how, stopped) {
                (ExitKind::Signaled(libc::SIGKILL), Some(why)) => why,
                (ExitKind::Exited(_), _) => Outcome::Exited,
                (ExitKind::Signaled(_), _) => Outcome::Signaled,
            },
            exit_code: match how {
                ExitKind::Exited(c) => Some(c),
                _ => None,
            },
            signal: match how {
                ExitKind::Signaled(s) => Some(s),
                _ => None,
            },
            status: how.status(),
            events,
            cpuid_leaves,
            tick_requests: ticks,
            lookups_answered,
            message: None,
            trace_error: fault.message(),
        },
        Err(e) => {
            let result = RunResult {
                outcome: Outcome::RecorderError,
                exit_code: None,
                signal: None,
                status: 125,
                events,
                cpuid_leaves,
                tick_requests: ticks,
                lookups_answered,
                message: Some(e.to_string()),
                trace_error: fault.message(),
            };
            // The recorder's error is the news, whether or not this can be written.
            if let Err(w) = trace.write_result(&result) {
                tracing::warn!("{w}");
            }
            return Err(e);
        }
    };
    if let Err(e) = trace.write_result(&result) {
        // The program's status stands; the trace lacks its end.
        fault.note(e);
        result.trace_error = fault.message();
        // An incomplete trace cannot be replayed: its events and captured files make
        // room for the `result.json` that says so (on a full disk, nothing else would).
        let _ = std::fs::remove_file(trace.path.join("events"));
        if let Ok(files) = std::fs::read_dir(trace.path.join("files")) {
            for f in files.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        if let Err(e) = trace.write_result(&result) {
            tracing::warn!("{e}");
        }
    }
    Ok(RecordSummary {
        trace: trace.path.clone(),
        result,
    })
}

impl Recorder {
    fn run(&mut self, mut header: Header) -> Result<ExitKind> {
        let leader = self.leader;
        let task = &mut self.threads.get_mut(&leader).expect("leader").task;
        // `spawn_traced` left it stopped just after its execve.
        task.set_options(crate::ptrace::OPTIONS)?;
        task.reopen_mem();
        let entry = task.regs()?.rip;
        // The spawn asked for SIGKILL at the engine's death until PTRACE_O_EXITKILL (set
        // just above) took over; the program must see the kernel's default, none.
        let reset = crate::inject::with_syscall_at(task, entry, |t| {
            crate::inject::inject_syscall(
                t,
                entry,
                libc::SYS_prctl as u64,
                &[libc::PR_SET_PDEATHSIG as u64, 0],
            )
        })?;
        if !matches!(reset, Ok(0)) {
            tracing::debug!("could not reset the parent-death signal: {reset:?}");
        }
        let setup = exec::arm_and_capture(task, &mut self.files, &header.exe)?;
        header.aslr_disabled = setup.aslr_disabled;
        header.cpuid_faulting = setup.cpuid_faulting;
        let untraced = seccomp::untraced();
        if seccomp::install(task, entry, &untraced)? {
            self.seccomp = true;
            header.untraced = untraced;
        }
        if let Err(e) = self.trace.write_header(&header) {
            self.fault.note(e);
        }
        self.events.push(&Event::Exec(Box::new(setup.state)))?;
        self.events.flush();

        loop {
            let mut cur = match self.current {
                Some(c) => c,
                None => match self.pick()? {
                    Some(c) => c,
                    None => {
                        // Every thread sits in a blocking call: wait for one to return.
                        let (tid, stop) = self.wait_any()?;
                        if self.interrupter.requested() {
                            return self.end_interrupted(tid, stop);
                        }
                        if let Some(how) = self.on_background_stop(tid, stop)? {
                            return Ok(how);
                        }
                        continue;
                    }
                },
            };
            let t = self.threads.get_mut(&cur).expect("current thread exists");
            let Where::Ready(sig) = t.state else {
                unreachable!("the current thread is always ready when resumed")
            };
            t.state = Where::Running;
            let tgid = t.tgid;
            // To the next call (the filter stops it), or to the exit of the one it is in.
            let mode = if self.seccomp && t.pending.is_none() {
                Resume::Cont
            } else {
                Resume::Syscall
            };
            match t.task.resume(mode, sig) {
                Ok(()) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
            let ready = self.someone_ready();
            let blocked = self
                .threads
                .values()
                .any(|t| matches!(t.state, Where::Blocked | Where::Held));
            if ready || blocked {
                // Others wait: this thread gets a time slice (see `preempt`).
                let slice = if ready {
                    crate::preempt::SLICE
                } else {
                    crate::preempt::UNTIL_ANOTHER_CAN_RUN
                };
                self.watchdog.arm(tgid, cur, slice);
            }
            let stop = loop {
                let (tid, stop) = self.wait_any()?;
                if self.interrupter.requested() {
                    self.watchdog.disarm();
                    return self.end_interrupted(tid, stop);
                }
                if tid == cur {
                    break stop;
                }
                if let Some(leader) = self.exec_takeover(cur, tid, stop)? {
                    // It exec'ed from a thread other than the main one: it goes on under
                    // the leader's tid.
                    cur = leader;
                    break stop;
                }
                if let Some(how) = self.on_background_stop(tid, stop)? {
                    self.watchdog.disarm();
                    return Ok(how);
                }
                if !self.threads.contains_key(&cur) {
                    // Its process ended while it ran (another of its threads reported
                    // first) and it was reaped with the others: nothing more will come.
                    break Stop::Killed(libc::SIGKILL);
                }
                if self
                    .threads
                    .get(&tid)
                    .is_some_and(|t| matches!(t.state, Where::Unblocked(_)))
                {
                    // Someone can run now: the running thread gets an ordinary slice.
                    self.watchdog.shorten();
                }
            };
            self.watchdog.disarm();
            match self.on_stop(cur, stop)? {
                Next::Continue => {}
                Next::Switch => {
                    self.previous = Some(cur);
                    self.current = None;
                }
                Next::Finished(how) => return Ok(how),
            }
        }
    }

    /// Waits for any of this recording's tasks; stops of unknown tasks (new threads
    /// that report before their parent's clone event) are kept for later.
    fn wait_any(&mut self) -> Result<(i32, Stop)> {
        loop {
            let (tid, stop) = crate::ptrace::wait_own()?;
            // A zombie leader reports only a thread that takes its tid by exec'ing.
            if self.threads.contains_key(&tid)
                || (self.zombies.contains(&tid) && stop == Stop::Event(libc::PTRACE_EVENT_EXEC))
            {
                return Ok((tid, stop));
            }
            self.early.insert(tid, stop);
        }
    }

    /// Chooses the thread to run next; `None` when every thread is blocked (or held
    /// behind a blocked one).
    fn pick(&mut self) -> Result<Option<i32>> {
        loop {
            let runnable = self.runnable();
            if runnable.is_empty() {
                return Ok(None);
            }
            let tid = self.sched.pick(&runnable, self.previous);
            let t = self.threads.get_mut(&tid).expect("picked");
            match t.state {
                Where::Unblocked(ret) => {
                    t.state = Where::Ready(0);
                    self.on_exit(tid, ret)?;
                }
                Where::Held => {
                    // Its file is free: the call starts from its entry, as if just made.
                    t.state = Where::Ready(0);
                    let h = t.held.take().expect("a held thread has its call");
                    match self.on_entry(tid, h.nr, h.args, h.at_seccomp, true)? {
                        Next::Continue => {}
                        // Left blocked in the kernel: choose again.
                        Next::Switch => continue,
                        Next::Finished(_) => {
                            return Err(Error::Unsupported {
                                what: format!("thread {tid}'s held write ended the program"),
                                hint: "report this as a bug".into(),
                            })
                        }
                    }
                }
                _ => {}
            }
            self.current = Some(tid);
            return Ok(Some(tid));
        }
    }

    /// The threads that can run: ready ones, those whose blocking call returned, and
    /// held ones whose file is free.
    fn runnable(&mut self) -> Vec<i32> {
        let mut runnable = Vec::new();
        let mut held = Vec::new();
        for (tid, t) in &self.threads {
            match (t.state, t.held) {
                (Where::Ready(_) | Where::Unblocked(_), _) => runnable.push(*tid),
                (Where::Held, Some(h)) => held.push((*tid, h.key)),
                _ => {}
            }
        }
        for (tid, key) in held {
            if !self.write_in_flight(tid, key) {
                runnable.push(tid);
            }
        }
        runnable.sort_unstable();
        runnable
    }

    /// Whether a thread other than the running one can run (see [`Self::runnable`]).
    fn someone_ready(&mut self) -> bool {
        let mut held = Vec::new();
        for (tid, t) in &self.threads {
            match (t.state, t.held) {
                (Where::Ready(_) | Where::Unblocked(_), _) => return true,
                (Where::Held, Some(h)) => held.push((*tid, h.key)),
                _ => {}
            }
        }
        held.into_iter()
            .any(|(tid, key)| !self.write_in_flight(tid, key))
    }

    /// Whether any thread has a write-family call in flight (no lookup: the common case
    /// is no).
    fn any_write_in_flight(&self) -> bool {
        self.threads.values().any(|t| {
            matches!(t.state, Where::Blocked | Where::Unblocked(_))
                && t.pending.as_ref().is_some_and(|p| p.out_fd.is_some())
        })
    }

    /// Whether a thread other than `tid` has a write-family call in flight (in the
    /// kernel, or returned but not yet recorded) on the file `key`. The file behind a
    /// call in flight is looked up once; if that fails (another thread closed the fd
    /// meanwhile) it is taken as another file.
    fn write_in_flight(&mut self, tid: i32, key: ordering::FileKey) -> bool {
        self.threads.iter_mut().any(|(other, t)| {
            if *other == tid || !matches!(t.state, Where::Blocked | Where::Unblocked(_)) {
                return false;
            }
            let Some(p) = t.pending.as_mut() else {
                return false;
            };
            let Some(fd) = p.out_fd else {
                return false;
            };
            let theirs = *p
                .out_key
                .get_or_insert_with(|| ordering::file_key(*other, fd));
            theirs == Some(key)
        })
    }

    /// A stop of a thread that is not the running one: a blocked thread's call returned,
    /// or it died.
    fn on_background_stop(&mut self, tid: i32, stop: Stop) -> Result<Option<ExitKind>> {
        match stop {
            Stop::Syscall => {
                let t = self.threads.get_mut(&tid).expect("known thread");
                match t.task.syscall_stop()? {
                    SyscallStop::Exit { ret, rip } if t.state == Where::Blocked => {
                        t.state = Where::Unblocked(ret);
                        t.exit_rip = Some(rip);
                    }
                    other => {
                        return Err(Error::Unsupported {
                            what: format!(
                                "thread {tid} stopped at {other:?} while it was not running"
                            ),
                            hint: "report this as a bug".into(),
                        })
                    }
                }
                Ok(None)
            }
            Stop::Exited(_) | Stop::Killed(_) => {
                let tgid = self.threads.get(&tid).map(|t| t.tgid).unwrap_or(tid);
                self.threads.remove(&tid);
                if self.execing(tgid) {
                    // Another thread of its process is in execve: the kernel ends the
                    // others (collected by this wait; the exec waits for that).
                    tracing::debug!("thread {tid} ended by an exec in process {tgid}");
                    return Ok(None);
                }
                // Its process is going away (killed, or exit_group by another thread).
                if tgid == self.leader {
                    return self.process_ended(tid, stop).map(Some);
                }
                self.forget_process(tgid);
                Ok(None)
            }
            Stop::Signal(libc::SIGINT) if self.signal_is_from_terminal(tid) => {
                self.interrupter.note(Outcome::Interrupted);
                self.end_interrupted(tid, stop).map(Some)
            }
            Stop::Signal(sig) => {
                // A signal arrived for a blocked thread; the syscall will report its
                // exit (EINTR/ERESTART*) first, then this signal again when resumed.
                Err(Error::Unsupported {
                    what: format!(
                        "signal {} arrived for blocked thread {tid}",
                        signal_name(sig)
                    ),
                    hint: "asynchronous signals are not supported by this version of the recorder"
                        .into(),
                })
            }
            other => Err(Error::Unsupported {
                what: format!("thread {tid} stopped with {other:?} while blocked"),
                hint: "report this as a bug".into(),
            }),
        }
    }

    /// Whether a thread of process `tgid` is in an execve.
    fn execing(&self, tgid: i32) -> bool {
        self.threads
            .values()
            .any(|t| t.tgid == tgid && t.pending.as_ref().is_some_and(|p| p.nr == nr::EXECVE))
    }

    /// A thread other than its process's leader exec'ed: the kernel ended the process's
    /// other threads, and the exec'ing thread took the leader's tid, under which it
    /// reports the exec (`tid`, `stop`; `PTRACE_GETEVENTMSG` names the former tid).
    /// Follows it: the running thread `cur` is from now on known as the leader. Returns
    /// the leader's tid when that is what happened.
    fn exec_takeover(&mut self, cur: i32, tid: i32, stop: Stop) -> Result<Option<i32>> {
        if stop != Stop::Event(libc::PTRACE_EVENT_EXEC) {
            return Ok(None);
        }
        let Some(t) = self.threads.get(&cur) else {
            return Ok(None);
        };
        if t.tgid != tid || !t.pending.as_ref().is_some_and(|p| p.nr == nr::EXECVE) {
            return Ok(None);
        }
        let former = Task::new(tid).event_msg()? as i32;
        if former != cur {
            return Err(Error::Unsupported {
                what: format!(
                    "process {tid} reported an exec by thread {former} while thread {cur} was in execve"
                ),
                hint: "report this as a bug".into(),
            });
        }
        // The others are gone: non-leaders report their ends (collected already, unless
        // one is still on its way), the leader is released by the kernel unreported.
        for other in self.members(tid) {
            if other != cur && other != tid {
                reap(other);
            }
            if other != cur {
                self.threads.remove(&other);
            }
        }
        self.zombies.remove(&tid);
        let mut t = self.threads.remove(&cur).expect("checked above");
        t.task = Task::new(tid);
        if let Some(p) = t.pending.as_mut() {
            p.exec_from = Some(cur);
        }
        self.threads.insert(tid, t);
        self.current = Some(tid);
        if self.previous == Some(cur) {
            self.previous = Some(tid);
        }
        tracing::debug!("thread {cur} exec'ed and is now {tid}, its process's leader");
        Ok(Some(tid))
    }

    /// The main process ended (`tid`, already out of the running, reported `stop`):
    /// reap its threads, end every other process of the tree (processes that outlive
    /// the main one are killed: the recording is of the main process's life), and write
    /// the exit event.
    fn process_ended(&mut self, tid: i32, stop: Stop) -> Result<ExitKind> {
        let leader = self.leader;
        let mut leader_stop = (tid == leader).then_some(stop);
        self.threads.remove(&tid);
        for t in self.members(leader) {
            if t != leader {
                reap(t);
                self.threads.remove(&t);
            }
        }
        if leader_stop.is_none() {
            leader_stop = Some(reap(leader));
        }
        self.threads.remove(&leader);
        self.zombies.remove(&leader);
        self.kill_all();
        let how = match leader_stop {
            Some(Stop::Killed(s)) => ExitKind::Signaled(s),
            Some(Stop::Exited(c)) => ExitKind::Exited(c),
            _ => ExitKind::Exited(0),
        };
        self.events.push(&Event::Exit { tid: leader, how })?;
        self.events.flush();
        Ok(how)
    }

    /// Whether the signal `tid` stopped with came from the terminal (Ctrl-C: the tty
    /// driver sends it with `SI_KERNEL`; a program's own `kill` says `SI_USER`).
    fn signal_is_from_terminal(&self, tid: i32) -> bool {
        self.threads
            .get(&tid)
            .and_then(|t| t.task.siginfo().ok())
            .is_some_and(|si| si.si_code == libc::SI_KERNEL)
    }

    /// Ends a recording that was asked to stop (Ctrl-C, time limit); `tid` just reported
    /// `stop`. Blocking calls that finished in the kernel did happen (their bytes may be
    /// on the terminal already): they are written down before the tree is killed.
    fn end_interrupted(&mut self, tid: i32, stop: Stop) -> Result<ExitKind> {
        if let (Stop::Syscall, Some(t)) = (&stop, self.threads.get_mut(&tid)) {
            if t.state == Where::Blocked {
                if let Ok(SyscallStop::Exit { ret, rip }) = t.task.syscall_stop() {
                    t.state = Where::Unblocked(ret);
                    t.exit_rip = Some(rip);
                }
            }
        }
        // A blocked call may have finished in the kernel without its exit stop being seen
        // yet (its bytes can already be on the terminal). Stop every such thread: each
        // reports its call's exit first, finished or cut short.
        let blocked: Vec<(i32, i32)> = self
            .threads
            .iter()
            .filter(|(_, t)| t.state == Where::Blocked)
            .map(|(tid, t)| (*tid, t.tgid))
            .collect();
        for &(tid, tgid) in &blocked {
            // SAFETY: plain syscall to our own tracee.
            unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, libc::SIGSTOP) };
        }
        // Collect what they report, for a bounded time: a task in an uninterruptible
        // wait (a vfork parent) does not stop for SIGSTOP, and a dying process reports
        // its leader only after its other threads.
        let mut waiting: HashSet<i32> = blocked.iter().map(|b| b.0).collect();
        let deadline = std::time::Instant::now() + STOP_COLLECT;
        while !waiting.is_empty() && std::time::Instant::now() < deadline {
            match crate::ptrace::try_wait_own() {
                Ok(Some((tid, Stop::Syscall))) => {
                    if waiting.remove(&tid) {
                        if let Some(t) = self.threads.get_mut(&tid) {
                            if let Ok(SyscallStop::Exit { ret, rip }) = t.task.syscall_stop() {
                                t.state = Where::Unblocked(ret);
                                t.exit_rip = Some(rip);
                            }
                        }
                    }
                }
                Ok(Some((tid, Stop::Exited(_) | Stop::Killed(_)))) => {
                    // Collected by this wait: kill_all must not wait for it again.
                    waiting.remove(&tid);
                    self.threads.remove(&tid);
                    self.zombies.remove(&tid);
                }
                Ok(Some(_)) => {}
                Ok(None) => std::thread::sleep(std::time::Duration::from_micros(200)),
                Err(_) => break,
            }
        }
        let finished: Vec<(i32, i64)> = self
            .threads
            .iter()
            .filter_map(|(tid, t)| match t.state {
                // ERESTART*: the call was cut short by our stop, it did not finish.
                Where::Unblocked(ret) if !crate::kernel::restart::is_restart(ret) => {
                    Some((*tid, ret))
                }
                _ => None,
            })
            .collect();
        for (tid, ret) in finished {
            if let Some(t) = self.threads.get_mut(&tid) {
                t.state = Where::Ready(0);
            }
            // Best effort: a task may be gone already.
            if let Err(e) = self.on_exit(tid, ret) {
                tracing::debug!("cannot write down thread {tid}'s last call: {e}");
            }
        }
        self.kill_all();
        let how = ExitKind::Signaled(libc::SIGKILL);
        self.events.push(&Event::Exit {
            tid: self.leader,
            how,
        })?;
        self.events.flush();
        Ok(how)
    }

    fn kill_all(&mut self) {
        for t in self.threads.values() {
            t.task.kill();
        }
        // Leaders last: a leader's end is only reported once its other threads are
        // collected.
        let mut tids: Vec<(bool, i32)> = self
            .threads
            .iter()
            .map(|(tid, t)| (*tid == t.tgid, *tid))
            .collect();
        tids.extend(self.zombies.iter().map(|z| (true, *z)));
        tids.sort();
        for (_, t) in tids {
            reap(t);
        }
        self.threads.clear();
        self.zombies.clear();
    }

    fn on_stop(&mut self, cur: i32, stop: Stop) -> Result<Next> {
        match stop {
            Stop::Exited(_) | Stop::Killed(_) => {
                let tgid = self.threads.get(&cur).map(|t| t.tgid).unwrap_or(cur);
                if tgid != self.leader {
                    self.threads.remove(&cur);
                    self.forget_process(tgid);
                    return Ok(Next::Switch);
                }
                return self.process_ended(cur, stop).map(Next::Finished);
            }
            Stop::Syscall => {
                let step = self
                    .threads
                    .get_mut(&cur)
                    .expect("current")
                    .task
                    .syscall_stop()?;
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(0);
                match step {
                    SyscallStop::Entry { nr, args } => {
                        self.threads.get_mut(&cur).expect("current").exit_rip = None;
                        return self.on_entry(cur, nr, args, false, false);
                    }
                    SyscallStop::Exit { ret, rip } => {
                        let sysno = self.threads[&cur].pending.as_ref().map(|p| p.nr);
                        self.on_exit(cur, ret)?;
                        let t = self.threads.get_mut(&cur).expect("current");
                        t.exit_rip = Some(rip);
                        if t.requeued.is_none() {
                            if let Some(si) = t.deferred.pop_front() {
                                // Queue a held signal again, now that replay can name
                                // the point: right after this syscall.
                                t.state = Where::Ready(si.si_signo);
                                t.requeued = Some(si);
                            }
                        }
                        let point = match sysno {
                            Some(nr::SCHED_YIELD) => Point::Yield,
                            Some(nr::CHAOS_TICK) => Point::Tick,
                            _ => Point::SyscallExit,
                        };
                        if self.threads.len() > 1 && self.sched.should_switch(point) {
                            return Ok(Next::Switch);
                        }
                    }
                    SyscallStop::None => {}
                }
            }
            Stop::Signal(libc::SIGSTOP) if self.is_preemption(cur)? => {
                let t = self.threads.get_mut(&cur).expect("current");
                let regs = t.task.regs()?;
                // On to a point replay finds cheaply (see `preempt::steer`).
                let steered = crate::preempt::steer::steer(&mut t.task, regs)?;
                let state = crate::preempt::capture(&mut t.task, &steered.regs)?;
                t.state = Where::Ready(0);
                t.exit_rip = None;
                self.events.push(&Event::Preempted {
                    tid: cur,
                    state: Box::new(state),
                    point: Box::new(steered.point),
                })?;
                if let Some(sig) = steered.signal {
                    let deliver = self.on_signal(cur, sig)?;
                    self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver);
                }
                return Ok(Next::Switch);
            }
            Stop::Signal(libc::SIGINT) if self.signal_is_from_terminal(cur) => {
                // Ctrl-C reached the program before (or instead of) the recorder: end
                // the recording the same way, without delivering it.
                self.interrupter.note(Outcome::Interrupted);
                return self.end_interrupted(cur, stop).map(Next::Finished);
            }
            Stop::Signal(sig) => {
                let deliver = self.on_signal(cur, sig)?;
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver);
            }
            Stop::Event(libc::PTRACE_EVENT_SECCOMP) => {
                let t = self.threads.get_mut(&cur).expect("current");
                t.state = Where::Ready(0);
                if t.pending.is_some() {
                    // Resumed with PTRACE_SYSCALL, it reported the entry already.
                    return Ok(Next::Continue);
                }
                if let SyscallStop::Entry { nr, args } = t.task.syscall_stop()? {
                    t.exit_rip = None;
                    return self.on_entry(cur, nr, args, true, false);
                }
            }
            Stop::Event(ev) => {
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(0);
                return self.on_event(cur, ev);
            }
            Stop::Other(_) => self.threads.get_mut(&cur).expect("current").state = Where::Ready(0),
        }
        Ok(Next::Continue)
    }

    fn on_event(&mut self, cur: i32, ev: i32) -> Result<Next> {
        match ev {
            libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                let child = self.threads[&cur].task.event_msg()? as i32;
                let first = match self.early.remove(&child) {
                    Some(s) => s,
                    None => crate::ptrace::wait_for(child)?,
                };
                if !matches!(first, Stop::Signal(libc::SIGSTOP)) {
                    return Err(Error::Unsupported {
                        what: format!("new task {child} first stopped with {first:?}"),
                        hint: "report this as a bug".into(),
                    });
                }
                // A new process is a task of its own tgid, unless clone made a thread.
                let process = ev != libc::PTRACE_EVENT_CLONE
                    || !self.threads[&cur]
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.creates_thread);
                let tgid = if process {
                    child
                } else {
                    self.threads[&cur].tgid
                };
                let slot = self.next_slot;
                self.next_slot += 1;
                self.threads
                    .insert(child, Thread::new(Task::new(child), tgid, slot));
                if process {
                    // A new process starts with a copy of its parent's fd table.
                    let parent_tgid = self.threads[&cur].tgid;
                    let fds = self.out_fds.entry(parent_tgid).or_default().clone();
                    self.out_fds.insert(child, fds);
                }
                let vfork = ev == libc::PTRACE_EVENT_VFORK;
                self.events.push(&Event::NewTask {
                    tid: cur,
                    child,
                    process,
                    vfork,
                })?;
                if vfork {
                    // The parent now waits in the kernel until the child execs or exits.
                    let t = self.threads.get_mut(&cur).expect("current");
                    t.task.resume(Resume::Syscall, 0).or_else(|e| {
                        if e.is_gone() {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                    t.state = Where::Blocked;
                    return Ok(Next::Switch);
                }
                Ok(Next::Continue)
            }
            libc::PTRACE_EVENT_EXEC => {
                // The execve exit stop comes next; the image is captured there.
                if let Some(p) = self
                    .threads
                    .get_mut(&cur)
                    .expect("current")
                    .pending
                    .as_mut()
                {
                    p.exec_happened = true;
                }
                Ok(Next::Continue)
            }
            _ => Ok(Next::Continue),
        }
    }

    /// A syscall's entry: `at_seccomp` when the filter stopped it (the call can then be
    /// skipped without an exit stop); `released` when it was held there (see
    /// [`ordering`]) and may now proceed, its `Blocked` event written already.
    fn on_entry(
        &mut self,
        cur: i32,
        sysno: u64,
        args: [u64; 6],
        at_seccomp: bool,
        released: bool,
    ) -> Result<Next> {
        let Some(desc) = syscalls::lookup(sysno) else {
            return self.on_unknown_entry(cur, sysno, args);
        };
        if desc.untraced && self.seccomp {
            // Seen only because the thread was resumed with PTRACE_SYSCALL: as the
            // filter would, let it run unrecorded (no pending call: resumed with CONT).
            return Ok(Next::Continue);
        }
        let out_fd = ordering::output_fd(sysno, &args);
        let mut out_key = None;
        if let (Some(fd), false) = (out_fd, released) {
            if self.any_write_in_flight() {
                // Another write is in flight (rare): which file is this one for?
                let key = ordering::file_key(cur, fd);
                out_key = Some(key);
                if let Some(key) = key.filter(|k| self.write_in_flight(cur, *k)) {
                    // Hold it until that write is recorded; mark where it stopped.
                    tracing::debug!(
                        "thread {cur} waits at {}(fd {fd}): another thread's write to the same file is in flight",
                        desc.name
                    );
                    self.events.push(&Event::Blocked {
                        tid: cur,
                        nr: sysno,
                        args,
                    })?;
                    let t = self.threads.get_mut(&cur).expect("current");
                    t.held = Some(Held {
                        nr: sysno,
                        args,
                        at_seccomp,
                        key,
                    });
                    t.state = Where::Held;
                    return Ok(Next::Switch);
                }
            }
        }
        let (class, outputs, _) = resolve_request(desc, &args);
        let mut fake_ret = None;
        match class {
            Class::Unsupported { hint } => {
                let hint = match syscalls::unknown_request(sysno, &args) {
                    Some(request) => format!(
                        "{request} is not in the recorder's table yet (recorder/syscalls.toml); please report it"
                    ),
                    None => hint.to_string(),
                };
                return Err(Error::UnsupportedSyscall {
                    name: desc.name.to_string(),
                    nr: sysno,
                    hint,
                });
            }
            Class::Refused { errno } => fake_ret = Some(-(errno as i64)),
            Class::Recorded | Class::Executed => {}
        }
        let special_here = desc.special
            && match special::handling(sysno, &args) {
                special::Handling::Here => true,
                special::Handling::Engine => false,
                special::Handling::Missing => {
                    return Err(Error::UnsupportedSyscall {
                        name: desc.name.to_string(),
                        nr: sysno,
                        hint: "its row is special but has no handler (a recorder bug)".into(),
                    })
                }
                special::Handling::Unsupported(hint) => {
                    return Err(Error::UnsupportedSyscall {
                        name: desc.name.to_string(),
                        nr: sysno,
                        hint: hint.to_string(),
                    })
                }
            };
        // clone3's arguments are in memory: read once (flags first).
        let clone3 = match sysno {
            nr::CLONE3 => Some(read_clone3(
                &mut self.threads.get_mut(&cur).expect("current").task,
                args[0],
            )?),
            _ => None,
        };
        let clone_flags = match sysno {
            nr::CLONE => Some(args[0]),
            _ => clone3.map(|c| c[0]),
        };
        if let Some(flags) = clone_flags {
            check_clone(flags)?;
        }
        self.shared.check_entry(cur, sysno, &args)?;
        if probe::changes_lookup(sysno) || clone_flags.is_some_and(probe::new_namespaces) {
            self.same_lookups = false;
        }
        if at_seccomp && self.same_lookups && !special_here && matches!(class, Class::Recorded) {
            // A lookup of a path that does not exist: answered here, in one stop.
            let task = &mut self.threads.get_mut(&cur).expect("current").task;
            if let Some(errno) = probe::missing(task, sysno, &args)? {
                let input_hash = syscalls::input_hash(task, desc, &args)?;
                task.set_orig_rax(u64::MAX)?;
                task.set_rax(-(errno as i64) as u64)?;
                self.lookups_answered += 1;
                self.events.push(&Event::Syscall(SyscallEvent {
                    tid: cur,
                    nr: sysno,
                    args,
                    ret: -(errno as i64),
                    input_hash,
                    writes: Vec::new(),
                    file: None,
                }))?;
                return Ok(Next::Continue);
            }
        }
        if let Some(answer) = desc.answer {
            // Never run (sched_setaffinity: the recording stays pinned; it "worked").
            fake_ret = Some(answer);
        }
        if sysno == nr::CHAOS_TICK {
            // Instrumented code asks for its next tick budget (see `crate::ticks`).
            fake_ret = Some(self.sched.tick_budget() as i64);
            self.ticks += 1;
        }
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        if fake_ret.is_some() {
            task.set_orig_rax(u64::MAX)?;
        }
        let input_hash = syscalls::input_hash(task, desc, &args)?;
        let mut entry = effects::EntryState::capture(task, outputs, &args)?;
        if special_here {
            special::capture_entry(task, sysno, &args, &mut entry)?;
        }
        if let Some(c) = clone3 {
            entry.extra = c.to_vec();
        }
        if sysno == nr::EXIT || sysno == nr::EXIT_GROUP {
            // These never come back: write the event now.
            self.events.push(&Event::Syscall(SyscallEvent {
                tid: cur,
                nr: sysno,
                args,
                ret: 0,
                input_hash,
                writes: Vec::new(),
                file: None,
            }))?;
            return self.on_exit_call(cur, sysno);
        }
        // Fork-family calls report their child through ptrace events and are handled
        // as such (vfork's wait included), never as blocking calls.
        let forks = matches!(sysno, nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK);
        let blocking = desc.may_block && !forks && fake_ret.is_none() && self.threads.len() > 1;
        let creates_thread = match sysno {
            nr::CLONE => args[0] & libc::CLONE_THREAD as u64 != 0,
            nr::CLONE3 => entry
                .extra
                .first()
                .is_some_and(|f| f & libc::CLONE_THREAD as u64 != 0),
            _ => false,
        };
        let mut pending = Pending {
            nr: sysno,
            args,
            input_hash,
            outputs,
            special: special_here,
            entry,
            fake_ret,
            redirect: None,
            creates_thread,
            exec_happened: false,
            out_fd,
            out_key,
            exec_from: None,
        };
        if blocking {
            // Let it sit in the kernel while others run; its results land in scratch.
            let t = self.threads.get_mut(&cur).expect("current");
            pending.redirect = redirect::redirect(&mut t.task, sysno, &args, t.slot)?;
            t.pending = Some(pending);
            if !released {
                self.events.push(&Event::Blocked {
                    tid: cur,
                    nr: sysno,
                    args,
                })?;
            }
            match t.task.resume(Resume::Syscall, 0) {
                Ok(()) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
            t.state = Where::Blocked;
            return Ok(Next::Switch);
        }
        self.threads.get_mut(&cur).expect("current").pending = Some(pending);
        Ok(Next::Continue)
    }

    /// A call whose number the kernel does not have (`syscall(-1)`, numbers past the
    /// table's end): the kernel would answer `ENOSYS`, and so does the recording, with
    /// an ordinary event. x32 calls (numbers with bit 30 set), which a kernel built with
    /// the x32 ABI would run, stop the recording instead.
    fn on_unknown_entry(&mut self, cur: i32, sysno: u64, args: [u64; 6]) -> Result<Next> {
        if syscalls::is_x32(sysno) {
            return Err(Error::UnsupportedSyscall {
                name: syscalls::name_of(sysno),
                nr: sysno,
                hint: "x32 ABI system calls are not supported; record an x86_64 build".into(),
            });
        }
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        task.set_orig_rax(u64::MAX)?;
        let entry = effects::EntryState::capture(task, &[], &args)?;
        self.threads.get_mut(&cur).expect("current").pending = Some(Pending {
            nr: sysno,
            args,
            input_hash: 0,
            outputs: &[],
            special: false,
            entry,
            fake_ret: Some(-(libc::ENOSYS as i64)),
            redirect: None,
            creates_thread: false,
            exec_happened: false,
            out_fd: None,
            out_key: None,
            exec_from: None,
        });
        Ok(Next::Continue)
    }

    /// The threads of process `tgid` that are still known.
    fn members(&self, tgid: i32) -> Vec<i32> {
        self.threads
            .iter()
            .filter(|(_, t)| t.tgid == tgid)
            .map(|(tid, _)| *tid)
            .collect()
    }

    /// exit / exit_group: the event is written; let the call run and collect the ends.
    fn on_exit_call(&mut self, cur: i32, sysno: u64) -> Result<Next> {
        let t = self.threads.get_mut(&cur).expect("current");
        let tgid = t.tgid;
        t.task
            .resume(Resume::Syscall, 0)
            .or_else(|e| if e.is_gone() { Ok(()) } else { Err(e) })?;
        if sysno == nr::EXIT_GROUP || self.members(tgid).len() == 1 {
            // The whole process ends. A leader's end is reported only after its other
            // threads are collected: those first, then the leader.
            self.threads.remove(&cur);
            for t in self.members(tgid) {
                if t != tgid {
                    reap(t);
                    self.threads.remove(&t);
                }
            }
            if cur != tgid {
                reap(cur);
            }
            let stop = if cur == tgid
                || self.threads.contains_key(&tgid)
                || self.zombies.contains(&tgid)
            {
                self.threads.remove(&tgid);
                self.zombies.remove(&tgid);
                reap(tgid)
            } else {
                Stop::Exited(0)
            };
            if tgid == self.leader {
                return self.process_ended(tgid, stop).map(Next::Finished);
            }
            return Ok(Next::Switch);
        }
        // One thread ends. A process's leader stays a zombie until the others are gone,
        // so only non-leaders are waited for (their CLEARTID write and futex wake happen
        // before their exit is reported: nothing may run before that).
        self.threads.remove(&cur);
        if cur == tgid {
            self.zombies.insert(tgid);
        } else {
            reap(cur);
        }
        Ok(Next::Switch)
    }

    /// Reaps whatever is left of a (non-main) process that has ended.
    fn forget_process(&mut self, tgid: i32) {
        // The leader last: its end is reported only once its other threads are
        // collected, so waiting for it first would wait forever.
        let mut members = self.members(tgid);
        members.sort_by_key(|&t| t == tgid);
        for t in members {
            reap(t);
            self.threads.remove(&t);
        }
        if self.zombies.remove(&tgid) {
            reap(tgid);
        }
    }

    fn on_exit(&mut self, cur: i32, mut ret: i64) -> Result<()> {
        // The recorded tree's processes, for a MAP_SHARED file mapping (see `shared_files`).
        let tree: Vec<i32> = match self.threads.get(&cur).and_then(|t| t.pending.as_ref()) {
            Some(p) if p.nr == nr::MMAP && p.args[3] as i32 & libc::MAP_SHARED != 0 => self
                .threads
                .values()
                .map(|t| t.tgid)
                .chain(self.zombies.iter().copied())
                .collect(),
            _ => Vec::new(),
        };
        let t = self.threads.get_mut(&cur).expect("thread");
        let tgid = t.tgid;
        let Some(p) = t.pending.take() else {
            return Ok(());
        };
        let task = &mut t.task;
        if let Some(r) = &p.redirect {
            redirect::complete(task, r, ret)?;
        }
        if let Some(fake) = p.fake_ret {
            ret = fake;
            task.set_rax(ret as u64)?;
        }
        let mut writes = Vec::new();
        let mut file = None;
        let mut shared_map = None;
        let mut shared_write = None;
        if p.fake_ret.is_none() && crate::kernel::restart::interrupted(ret) {
            // A signal cut it short; it may still have written (the time left).
            writes = effects::collect_interrupted_outputs(task, p.outputs, &p.args, &p.entry);
        }
        if ret >= 0 && p.fake_ret.is_none() {
            writes = if p.special {
                special::outputs(task, p.nr, &p.args, ret, &p.entry)?
            } else {
                effects::collect_outputs(task, p.outputs, &p.args, ret, &p.entry)?
            };
            match p.nr {
                // The recorder's own traps must not show: rdtsc faults (PR_SET_TSC) and
                // cpuid faults (ARCH_SET_CPUID) only for the recorder, which the program
                // cannot change (the table refuses both setters); natively both are off.
                nr::PRCTL if p.args[0] == libc::PR_GET_TSC as u64 && p.args[1] != 0 => {
                    let enabled = (libc::PR_TSC_ENABLE as u32).to_le_bytes().to_vec();
                    task.write_mem(p.args[1], &enabled)?;
                    writes = vec![crate::trace::MemWrite {
                        addr: p.args[1],
                        data: enabled,
                    }];
                }
                nr::ARCH_PRCTL if p.args[0] == crate::kernel::ARCH_GET_CPUID => {
                    ret = 1;
                    task.set_rax(1)?;
                }
                nr::SCHED_GETAFFINITY => {
                    // Show the real CPU set, not the one-core pin.
                    let mask = cpu_mask_bytes(&self.cpu_set, ret as usize);
                    task.write_mem(p.args[2], &mask)?;
                    writes = vec![crate::trace::MemWrite {
                        addr: p.args[2],
                        data: mask,
                    }];
                }
                nr::MMAP => {
                    file = capture_mmap(task, &mut self.files, &p.args)?;
                    if file.is_some() && p.args[3] as i32 & libc::MAP_SHARED != 0 {
                        shared_map = self.shared.mapped(cur, p.args[4], &tree)?;
                    }
                }
                nr::CLONE | nr::CLONE3 => writes = clone_writes(task, p.nr, &p.args, &p.entry)?,
                _ => {}
            }
            if let Some(kind) = OutputFds::write_kind(p.nr) {
                if let Some(stream) = self.out_fds.entry(tgid).or_default().stream(p.args[0]) {
                    let data = crate::output::written_bytes(task, kind, &p.args, ret)?;
                    let (f, name) = match stream {
                        Stream::Stdout => (&mut self.stdout, "stdout"),
                        Stream::Stderr => (&mut self.stderr, "stderr"),
                    };
                    if !self.fault.is_set() {
                        if let Err(e) = f.write_all(&data) {
                            self.fault.note(Error::io(self.trace.path.join(name), e));
                        }
                    }
                }
            }
            self.out_fds
                .entry(tgid)
                .or_default()
                .after_syscall(p.nr, &p.args, ret);
            shared_write = self.shared.written(task, p.nr, &p.args, ret)?;
        }
        if let Some(name) = shared_map {
            self.events.push(&Event::SharedFile { tid: cur, name })?;
        }
        self.events.push(&Event::Syscall(SyscallEvent {
            // An exec from another thread than the leader is replayed by that thread.
            tid: p.exec_from.unwrap_or(cur),
            nr: p.nr,
            args: p.args,
            ret,
            input_hash: p.input_hash,
            writes,
            file,
        }))?;
        if let Some((name, offset, data)) = shared_write {
            self.events.push(&Event::SharedFileWrite {
                tid: cur,
                name,
                offset,
                data,
            })?;
        }
        if p.exec_happened && ret == 0 {
            // A new image: arm the traps again (exec clears CPUID faulting) and capture it.
            let task = &mut self.threads.get_mut(&cur).expect("thread").task;
            task.reopen_mem();
            let exe = std::fs::read_link(format!("/proc/{cur}/exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let setup = exec::arm_and_capture(task, &mut self.files, &exe)?;
            self.events.push(&Event::Exec(Box::new(setup.state)))?;
        }
        Ok(())
    }

    fn on_signal(&mut self, cur: i32, sig: i32) -> Result<i32> {
        let multi = self.threads.len() > 1;
        let t = self.threads.get_mut(&cur).expect("current");
        let regs = t.task.regs()?;
        let exit_rip = t.exit_rip.take();
        if sig == libc::SIGSEGV {
            let bytes = t.task.read_mem_partial(regs.rip, 3)?;
            if let Some(insn) = Trapped::decode(&bytes) {
                let event = emulate(&mut t.task, insn, regs, &mut self.cpuid_seen)?;
                self.events.push(&event)?;
                return Ok(0);
            }
        }
        let si = match t.task.siginfo() {
            Ok(si) => si,
            // No siginfo: a group-stop (SIGSTOP/SIGTSTP job control), not a delivery.
            Err(Error::Ptrace { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        if let Some(req) = t.requeued.take() {
            if req.si_signo == sig {
                // A deferred signal, queued again right after a syscall: deliver it
                // with its original siginfo.
                t.task.set_siginfo(&req)?;
                self.events.push(&Event::Signal {
                    tid: cur,
                    signo: sig,
                    rip: regs.rip,
                    injected: true,
                    info: siginfo_bytes(&req),
                })?;
                return Ok(sig);
            }
            t.requeued = Some(req);
        }
        if sig == libc::SIGSTOP && multi && si.si_code == libc::SI_USER {
            // A leftover initial stop of a new task; nothing to deliver.
            return Ok(0);
        }
        if is_fault(sig, si.si_code) {
            self.events.push(&Event::Signal {
                tid: cur,
                signo: sig,
                rip: regs.rip,
                injected: false,
                info: Vec::new(),
            })?;
            return Ok(sig);
        }
        if matches!(
            sig,
            libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
        ) && !self.sent_by_tree(&si)
        {
            // Ctrl-C at the terminal, or a kill from outside: end the recording, the way
            // `Interrupter::interrupt` does (the engine stops the program itself; the
            // recorder's own Ctrl-C handler may have asked already, and a second
            // `interrupt` would kill before the finished calls are written down).
            self.interrupter.note(Outcome::Interrupted);
            // SAFETY: plain syscall to our own tracee.
            unsafe { libc::kill(self.leader, libc::SIGSTOP) };
            return Ok(0);
        }
        let t = self.threads.get_mut(&cur).expect("current");
        // The last call the thread made, if it made one since it was last interrupted:
        // an untraced call (see `seccomp`) returning to the same address as the traced
        // call before it is not a point replay can name.
        let after_untraced = syscalls::lookup(regs.orig_rax).is_some_and(|d| d.untraced);
        if exit_rip == Some(regs.rip) && !(self.seccomp && after_untraced) {
            // Right after a syscall: a point replay can name and queue the signal at.
            self.events.push(&Event::Signal {
                tid: cur,
                signo: sig,
                rip: regs.rip,
                injected: true,
                info: siginfo_bytes(&si),
            })?;
            return Ok(sig);
        }
        // Somewhere in user code, a point replay cannot find again: hold the signal
        // and queue it again at this thread's next syscall exit.
        t.deferred.push_back(si);
        Ok(0)
    }

    /// Whether a SIGSTOP stop of `tid` is the watchdog's (sent by us with tgkill).
    fn is_preemption(&self, tid: i32) -> Result<bool> {
        let si = match self.threads[&tid].task.siginfo() {
            Ok(si) => si,
            Err(Error::Ptrace { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        // SAFETY: si_pid is valid for SI_TKILL.
        Ok(si.si_code == libc::SI_TKILL && unsafe { si.si_pid() } == std::process::id() as i32)
    }

    /// Whether a signal was sent by one of the recorded processes (kill, tgkill...).
    fn sent_by_tree(&self, si: &libc::siginfo_t) -> bool {
        if si.si_code != libc::SI_USER
            && si.si_code != libc::SI_TKILL
            && si.si_code != libc::SI_QUEUE
        {
            return si.si_code != libc::SI_KERNEL;
        }
        // SAFETY: si_pid is valid for SI_USER/SI_TKILL/SI_QUEUE.
        let pid = unsafe { si.si_pid() };
        self.threads.values().any(|t| t.tgid == pid)
    }
}

/// The raw bytes of a siginfo, for the trace.
fn siginfo_bytes(si: &libc::siginfo_t) -> Vec<u8> {
    // SAFETY: siginfo_t is 128 bytes of plain data.
    unsafe {
        std::slice::from_raw_parts(
            si as *const _ as *const u8,
            std::mem::size_of::<libc::siginfo_t>(),
        )
    }
    .to_vec()
}

/// A fault raised by the thread's own instruction: it recurs by itself at replay.
fn is_fault(sig: i32, code: i32) -> bool {
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && code > 0
}

/// Interrupts a recording when its time is up, unless dropped first.
struct Watchdog {
    cancel: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(limit: std::time::Duration, interrupter: std::sync::Arc<Interrupter>) -> Self {
        let cancel = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let c = cancel.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*c;
            let deadline = std::time::Instant::now() + limit;
            let mut cancelled = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*cancelled {
                let now = std::time::Instant::now();
                if now >= deadline {
                    interrupter.interrupt(Outcome::TimedOut);
                    return;
                }
                cancelled = cv
                    .wait_timeout(cancelled, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        });
        Watchdog {
            cancel,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.cancel;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `struct clone_args`: flags, pidfd, child_tid, parent_tid.
/// Refuses the clone flags the recorder cannot follow.
fn check_clone(flags: u64) -> Result<()> {
    if flags & libc::CLONE_PIDFD as u64 != 0 {
        return Err(Error::Unsupported {
            what: "clone with CLONE_PIDFD".into(),
            hint: "not supported yet".into(),
        });
    }
    // As with unshare: replay would create the namespaces for real and cannot model
    // what the program sees in them.
    let namespaces = libc::CLONE_NEWNS
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET;
    if flags & namespaces as u64 != 0 {
        return Err(Error::Unsupported {
            what: format!("clone into new namespaces (flags {flags:#x})"),
            hint: "new namespaces are not modelled by replay; set up sandboxes outside the recorded program".into(),
        });
    }
    Ok(())
}

fn read_clone3(task: &mut Task, addr: u64) -> Result<[u64; 4]> {
    let b = task.read_mem(addr, 32)?;
    let q = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
    Ok([q(0), q(1), q(2), q(3)])
}

/// The thread ids clone wrote into the program's memory (CLONE_PARENT_SETTID,
/// CLONE_CHILD_SETTID); the child has already reported its first stop, so both writes
/// have happened.
fn clone_writes(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    st: &effects::EntryState,
) -> Result<Vec<crate::trace::MemWrite>> {
    let (flags, ptid, ctid) = if sysno == nr::CLONE3 {
        (st.extra[0], st.extra[3], st.extra[2])
    } else {
        (args[0], args[2], args[3])
    };
    let mut w = Vec::new();
    if flags & libc::CLONE_PARENT_SETTID as u64 != 0 && ptid != 0 {
        w.push(crate::trace::MemWrite {
            addr: ptid,
            data: task.read_mem(ptid, 4)?,
        });
    }
    if flags & libc::CLONE_CHILD_SETTID as u64 != 0 && ctid != 0 {
        w.push(crate::trace::MemWrite {
            addr: ctid,
            data: task.read_mem(ctid, 4)?,
        });
    }
    Ok(w)
}

fn capture_mmap(task: &mut Task, files: &mut FileStore, args: &[u64; 6]) -> Result<Option<String>> {
    let flags = args[3] as i32;
    if flags & libc::MAP_ANONYMOUS != 0 {
        return Ok(None);
    }
    let fd = args[4] as i32;
    let path = PathBuf::from(format!("/proc/{}/fd/{fd}", task.tid));
    let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
    if !meta.is_file() {
        let target = std::fs::read_link(&path)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return Err(Error::Unsupported {
            what: format!("mmap of {target}, which is not a regular file"),
            hint: "device and special-file mappings cannot be replayed".into(),
        });
    }
    // A MAP_SHARED file is captured as it is now; later writes to it are recorded (see
    // `shared_files`).
    Ok(Some(files.capture(&path)?))
}

fn emulate(
    task: &mut Task,
    insn: Trapped,
    mut regs: crate::ptrace::Regs,
    cpuid_seen: &mut BTreeSet<[u32; 6]>,
) -> Result<Event> {
    let tid = task.tid;
    let rip = regs.rip;
    let event = match insn {
        Trapped::Rdtsc | Trapped::Rdtscp => {
            let (tsc, aux) = arch::read_tsc();
            arch::apply_tsc(&mut regs, tsc, aux, insn == Trapped::Rdtscp);
            Event::Rdtsc {
                tid,
                rip,
                rdtscp: insn == Trapped::Rdtscp,
                tsc,
                aux,
            }
        }
        Trapped::Cpuid => {
            let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
            let out = arch::masked_cpuid(leaf, subleaf);
            arch::apply_cpuid(&mut regs, out);
            cpuid_seen.insert([leaf, subleaf, out[0], out[1], out[2], out[3]]);
            Event::Cpuid {
                tid,
                rip,
                leaf,
                subleaf,
                out,
            }
        }
    };
    task.set_regs(&regs)?;
    Ok(event)
}

fn cpu_mask_bytes(cpus: &[usize], len: usize) -> Vec<u8> {
    let mut mask = vec![0u8; len];
    for &c in cpus {
        if c / 8 < len {
            mask[c / 8] |= 1 << (c % 8);
        }
    }
    mask
}

fn current_cpu() -> Option<usize> {
    // SAFETY: plain libc call.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as usize)
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into a local buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    u64::from_le_bytes(b)
}
