//! Recording: run the program under ptrace, one syscall stop at a time, and write every
//! source of nondeterminism into the trace.
//!
//! Flow (see `docs/architecture.md`): spawn pinned and stopped → at the initial execve's
//! exit stop, arm CPUID faulting and TSC trapping, hide the vDSO, capture the address
//! space → loop: syscall entry (classify with the table, refuse or stop on unsupported
//! calls) → syscall exit (result + written memory) → SIGSEGV from rdtsc/cpuid is
//! emulated → the end.

mod exec;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use crate::arch::{self, Trapped};
use crate::errors::{Error, Result};
use crate::output::{OutputFds, Stream};
use crate::ptrace::{Resume, Stop, SyscallStop, Task};
use crate::spawn::{self, SpawnSpec};
use crate::syscalls::{self, effects, nr, Class, MemArg};
use crate::trace::{Event, EventWriter, ExitKind, FileStore, Header, Outcome, RunResult, SyscallEvent, TraceDir};

/// What to record.
#[derive(Debug, Clone)]
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
    /// Where the trace goes; must not exist or be empty.
    pub trace_dir: PathBuf,
    /// Scheduler seed (default: random).
    pub seed: Option<u64>,
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
    entry: effects::EntryState,
    /// Skip the call and return this instead (refused calls, emulated ones).
    fake_ret: Option<i64>,
}

struct Recorder {
    trace: TraceDir,
    events: EventWriter,
    files: FileStore,
    task: Task,
    pending: Option<Pending>,
    out_fds: OutputFds,
    stdout: std::fs::File,
    stderr: std::fs::File,
    cpu_set: Vec<usize>,
    cpuid_seen: BTreeSet<[u32; 6]>,
}

/// Records one run of a program into a new trace directory.
pub fn record(opts: &RecordOptions) -> Result<RecordSummary> {
    let trace = TraceDir::create(&opts.trace_dir)?;
    let env_path = opts.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let exe = spawn::resolve_program(&opts.program, env_path)?;
    let cwd = match &opts.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir().map_err(|e| Error::io(".", e))?,
    };

    // Pin this thread and the program to one core: ptrace stops cost ~11x more across
    // cores. The program is still shown the real CPU set (sched_getaffinity is rewritten).
    let cpu_set = spawn::cpu_set();
    let pinned = current_cpu().filter(|c| cpu_set.contains(c)).unwrap_or(cpu_set[0]);
    spawn::pin_self(&[pinned]);
    let result = (|| {
        let mut argv = vec![opts.program.clone().into_os_string()];
        argv.extend(opts.args.iter().cloned());
        let seed = opts.seed.unwrap_or_else(random_seed);
        let header = Header {
            format_version: crate::trace::FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            argv: argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            cwd: cwd.to_string_lossy().into_owned(),
            env: opts.env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect(),
            removed_env: opts.removed_env.clone(),
            exe: exe.to_string_lossy().into_owned(),
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            kernel: format!("{} {}", read_trimmed("/proc/sys/kernel/osrelease"), read_trimmed("/proc/sys/kernel/version")),
            cpu_model: cpu_model(),
            seed,
            aslr_disabled: false,
            cpuid_faulting: false,
            cpu_set: cpu_set.clone(),
            pinned_cpu: pinned,
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let spec = SpawnSpec {
            path: &exe,
            argv,
            env: opts.env.clone(),
            cwd: Some(&cwd),
            cpu: Some(pinned),
            no_aslr: true,
            null_stdio: false,
            no_core: false,
        };
        let pid = spawn::spawn_traced(&spec)?;
        let task = Task::new(pid);
        let open = |name: &str| std::fs::File::create(trace.path.join(name)).map_err(|e| Error::io(trace.path.join(name), e));
        let mut rec = Recorder {
            events: EventWriter::create(&trace.path.join("events"))?,
            files: FileStore::new(trace.path.join("files")),
            task,
            pending: None,
            out_fds: OutputFds::default(),
            stdout: open("stdout")?,
            stderr: open("stderr")?,
            cpu_set: cpu_set.clone(),
            cpuid_seen: BTreeSet::new(),
            trace: trace.clone(),
        };
        let r = rec.run(header);
        if r.is_err() {
            rec.task.kill();
            let _ = rec.task.wait();
        }
        let _ = rec.events.flush();
        let events = rec.events.count();
        let cpuid_leaves = rec.cpuid_seen.iter().copied().collect();
        let result = match r {
            Ok(how) => RunResult {
                outcome: match how {
                    ExitKind::Exited(_) => Outcome::Exited,
                    ExitKind::Signaled(_) => Outcome::Signaled,
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
                message: None,
            },
            Err(e) => {
                let result = RunResult {
                    outcome: Outcome::RecorderError,
                    exit_code: None,
                    signal: None,
                    status: 125,
                    events,
                    cpuid_leaves,
                    message: Some(e.to_string()),
                };
                trace.write_result(&result)?;
                return Err(e);
            }
        };
        trace.write_result(&result)?;
        Ok(RecordSummary { trace: trace.path.clone(), result })
    })();
    spawn::pin_self(&cpu_set);
    result
}

impl Recorder {
    fn run(&mut self, mut header: Header) -> Result<ExitKind> {
        self.task.set_options(crate::ptrace::OPTIONS)?;
        // Run to the initial exec.
        self.task.resume(Resume::Cont, 0)?;
        match self.task.wait()? {
            Stop::Event(libc::PTRACE_EVENT_EXEC) => {}
            Stop::Exited(127) => {
                return Err(Error::Spawn { program: header.exe.clone().into(), reason: "execve failed".into() })
            }
            other => {
                return Err(Error::Spawn {
                    program: header.exe.clone().into(),
                    reason: format!("unexpected stop before exec: {other:?}"),
                })
            }
        }
        self.task.resume(Resume::Syscall, 0)?;
        match self.task.wait()? {
            Stop::Syscall => {}
            other => {
                return Err(Error::Spawn {
                    program: header.exe.clone().into(),
                    reason: format!("unexpected stop after exec: {other:?}"),
                })
            }
        }
        self.task.reopen_mem();
        let setup = exec::arm_and_capture(&mut self.task, &mut self.files, &header.exe)?;
        header.aslr_disabled = setup.aslr_disabled;
        header.cpuid_faulting = setup.cpuid_faulting;
        self.trace.write_header(&header)?;
        self.events.push(&Event::Exec(Box::new(setup.state)))?;
        self.events.flush()?;

        let mut signal = 0;
        loop {
            self.task.resume(Resume::Syscall, signal)?;
            signal = 0;
            match self.task.wait()? {
                Stop::Exited(code) => return self.finish(ExitKind::Exited(code)),
                Stop::Killed(sig) => return self.finish(ExitKind::Signaled(sig)),
                Stop::Syscall => match self.task.syscall_stop()? {
                    SyscallStop::Entry { nr, args } => self.on_entry(nr, args)?,
                    SyscallStop::Exit { ret } => self.on_exit(ret)?,
                    SyscallStop::None => {}
                },
                Stop::Signal(sig) => signal = self.on_signal(sig)?,
                Stop::Event(ev) => self.on_event(ev)?,
                Stop::Other(_) => {}
            }
        }
    }

    fn finish(&mut self, how: ExitKind) -> Result<ExitKind> {
        // exit and exit_group never return: their event is written at entry.
        self.pending = None;
        self.events.push(&Event::Exit { tid: self.task.tid, how })?;
        self.events.flush()?;
        Ok(how)
    }

    fn on_event(&mut self, ev: i32) -> Result<()> {
        match ev {
            libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => Err(Error::Unsupported {
                what: "the program started a thread or a child process".into(),
                hint: "multi-threaded programs and process trees are not supported by this version of the recorder".into(),
            }),
            libc::PTRACE_EVENT_EXEC => Err(Error::Unsupported {
                what: "the program called execve".into(),
                hint: "programs that exec another program are not supported by this version of the recorder".into(),
            }),
            _ => Ok(()),
        }
    }

    fn on_entry(&mut self, sysno: u64, args: [u64; 6]) -> Result<()> {
        let Some(desc) = syscalls::lookup(sysno) else {
            return Err(Error::UnsupportedSyscall {
                name: syscalls::name_of(sysno),
                nr: sysno,
                hint: "this syscall is not in the recorder's table".into(),
            });
        };
        let (class, outputs, inputs) = resolve_request(desc, &args);
        let mut fake_ret = None;
        match class {
            Class::Unsupported { hint } => {
                return Err(Error::UnsupportedSyscall { name: desc.name.to_string(), nr: sysno, hint: hint.to_string() })
            }
            Class::Refused { errno } => fake_ret = Some(-(errno as i64)),
            Class::Recorded | Class::Executed => {}
        }
        if sysno == nr::SCHED_SETAFFINITY {
            // The recording stays pinned; the program is told it worked.
            fake_ret = Some(0);
        }
        if fake_ret.is_some() {
            self.task.set_orig_rax(u64::MAX)?;
        }
        let input_hash = effects::input_hash(&mut self.task, inputs, &args, None)?;
        let entry = effects::EntryState::capture(&mut self.task, outputs, &args)?;
        let pending = Pending { nr: sysno, args, input_hash, outputs, entry, fake_ret };
        if sysno == nr::EXIT || sysno == nr::EXIT_GROUP {
            // These never come back: write the event now.
            self.events.push(&Event::Syscall(SyscallEvent {
                tid: self.task.tid,
                nr: sysno,
                args,
                ret: 0,
                input_hash,
                writes: Vec::new(),
                file: None,
            }))?;
            return Ok(());
        }
        self.pending = Some(pending);
        Ok(())
    }

    fn on_exit(&mut self, mut ret: i64) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        if let Some(fake) = p.fake_ret {
            ret = fake;
            self.task.set_rax(ret as u64)?;
        }
        let mut writes = Vec::new();
        let mut file = None;
        if ret >= 0 && p.fake_ret.is_none() {
            writes = effects::collect_outputs(&mut self.task, p.outputs, &p.args, ret, &p.entry)?;
            match p.nr {
                nr::SCHED_GETAFFINITY => {
                    // Show the real CPU set, not the one-core pin.
                    let mask = cpu_mask_bytes(&self.cpu_set, ret as usize);
                    self.task.write_mem(p.args[2], &mask)?;
                    writes = vec![crate::trace::MemWrite { addr: p.args[2], data: mask }];
                }
                nr::MMAP => file = self.capture_mmap(&p.args)?,
                _ => {}
            }
            if let Some(kind) = OutputFds::write_kind(p.nr) {
                if let Some(stream) = self.out_fds.stream(p.args[0]) {
                    let data = crate::output::written_bytes(&mut self.task, kind, &p.args, ret)?;
                    let f = match stream {
                        Stream::Stdout => &mut self.stdout,
                        Stream::Stderr => &mut self.stderr,
                    };
                    let _ = f.write_all(&data);
                }
            }
            self.out_fds.after_syscall(p.nr, &p.args, ret);
        }
        self.events.push(&Event::Syscall(SyscallEvent {
            tid: self.task.tid,
            nr: p.nr,
            args: p.args,
            ret,
            input_hash: p.input_hash,
            writes,
            file,
        }))
    }

    fn capture_mmap(&mut self, args: &[u64; 6]) -> Result<Option<String>> {
        let flags = args[3] as i32;
        if flags & libc::MAP_ANONYMOUS != 0 {
            return Ok(None);
        }
        let fd = args[4] as i32;
        let path = PathBuf::from(format!("/proc/{}/fd/{fd}", self.task.tid));
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            let target = std::fs::read_link(&path).map(|p| p.display().to_string()).unwrap_or_default();
            return Err(Error::Unsupported {
                what: format!("mmap of {target}, which is not a regular file"),
                hint: "device and special-file mappings cannot be replayed".into(),
            });
        }
        if flags & libc::MAP_SHARED != 0 && args[2] as i32 & libc::PROT_WRITE != 0 {
            return Err(Error::Unsupported {
                what: "a writable MAP_SHARED file mapping".into(),
                hint: "memory shared with the file system cannot be replayed exactly yet".into(),
            });
        }
        Ok(Some(self.files.capture(&path)?))
    }

    fn on_signal(&mut self, sig: i32) -> Result<i32> {
        let regs = self.task.regs()?;
        if sig == libc::SIGSEGV {
            let bytes = self.task.read_mem_partial(regs.rip, 3)?;
            if let Some(insn) = Trapped::decode(&bytes) {
                self.emulate(insn, regs)?;
                return Ok(0);
            }
        }
        self.events.push(&Event::Signal { tid: self.task.tid, signo: sig, rip: regs.rip })?;
        Ok(sig)
    }

    fn emulate(&mut self, insn: Trapped, mut regs: crate::ptrace::Regs) -> Result<()> {
        let tid = self.task.tid;
        let rip = regs.rip;
        let event = match insn {
            Trapped::Rdtsc | Trapped::Rdtscp => {
                let (tsc, aux) = arch::read_tsc();
                regs.rax = tsc & 0xffff_ffff;
                regs.rdx = tsc >> 32;
                if insn == Trapped::Rdtscp {
                    regs.rcx = aux as u64;
                }
                Event::Rdtsc { tid, rip, rdtscp: insn == Trapped::Rdtscp, tsc, aux }
            }
            Trapped::Cpuid => {
                let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
                let out = arch::masked_cpuid(leaf, subleaf);
                regs.rax = out[0] as u64;
                regs.rbx = out[1] as u64;
                regs.rcx = out[2] as u64;
                regs.rdx = out[3] as u64;
                self.cpuid_seen.insert([leaf, subleaf, out[0], out[1], out[2], out[3]]);
                Event::Cpuid { tid, rip, leaf, subleaf, out }
            }
        };
        regs.rip += insn.len();
        self.task.set_regs(&regs)?;
        self.events.push(&event)
    }
}

/// Picks the class and memory descriptions, per request for ioctl, fcntl and prctl.
pub(crate) fn resolve_request(desc: &'static syscalls::SyscallDesc, args: &[u64; 6]) -> (Class, &'static [MemArg], &'static [MemArg]) {
    let req = match desc.nr {
        nr::IOCTL => Some((syscalls::ioctl_request(args[1] & 0xffff_ffff), "ioctl request")),
        nr::FCNTL => Some((syscalls::fcntl_command(args[1]), "fcntl command")),
        nr::PRCTL => Some((syscalls::prctl_option(args[0]), "prctl option")),
        _ => None,
    };
    match req {
        Some((Some(r), _)) => (r.class, r.outputs, r.inputs),
        Some((None, what)) => (
            Class::Unsupported {
                hint: match what {
                    "ioctl request" => "this ioctl request is not in the recorder's table",
                    "fcntl command" => "this fcntl command is not in the recorder's table",
                    _ => "this prctl option is not in the recorder's table",
                },
            },
            &[],
            &[],
        ),
        None => (desc.class, desc.outputs, desc.inputs),
    }
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

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default()
}
