//! The events of a recording.

use serde::{Deserialize, Serialize};

/// Bytes written into the program's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemWrite {
    /// Address in the program.
    pub addr: u64,
    /// The bytes (encoded as one byte string: the same bytes on disk as a sequence of
    /// u8, without a serializer call per byte).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One mapping of the program's address space, as `/proc/PID/maps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: i32,
    /// Whether it was `MAP_SHARED`.
    pub shared: bool,
    /// Offset in the file.
    pub offset: u64,
    /// The captured file (BLAKE3 hex name under `files/`), for file-backed mappings.
    pub file: Option<String>,
    /// The path or pseudo-name (`[stack]`, `[heap]`) at record time, for messages.
    pub name: String,
}

/// The program image right after an `execve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecState {
    /// Thread that exec'ed, under its tid after the exec (the leader's, when another
    /// thread exec'ed: it took the leader's tid).
    pub tid: i32,
    /// The path that was executed.
    pub path: String,
    /// General registers (`user_regs_struct` as 27 words).
    pub regs: Vec<u64>,
    /// The address space.
    pub mappings: Vec<Mapping>,
    /// Contents of every writable mapping (data, bss, the initial stack with argv, envp,
    /// auxv and AT_RANDOM).
    pub memory: Vec<MemWrite>,
    /// The initial program break.
    pub brk: u64,
    /// RLIMIT_STACK soft limit at record time (how far the stack may grow; `u64::MAX`
    /// unlimited; older recorders wrote 8 MiB for unlimited).
    pub stack_limit: u64,
}

/// One system call as the program made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallEvent {
    /// Thread.
    pub tid: i32,
    /// Syscall number.
    pub nr: u64,
    /// Argument registers at entry.
    pub args: [u64; 6],
    /// Result as the program saw it.
    pub ret: i64,
    /// Hash of the memory the program passed in (write data, paths, addresses); 0 if none.
    pub input_hash: u64,
    /// Memory the call wrote, to inject at replay.
    pub writes: Vec<MemWrite>,
    /// For an mmap of a file: the captured file.
    pub file: Option<String>,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitKind {
    /// `exit` with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitKind {
    /// The status a shell would report: the code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            ExitKind::Exited(c) => c,
            ExitKind::Signaled(s) => 128 + s,
        }
    }
}

/// One event of the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// An execve completed: the new image.
    Exec(Box<ExecState>),
    /// A system call.
    Syscall(SyscallEvent),
    /// A thread entered a syscall that may block and was descheduled there; its
    /// [`Event::Syscall`] comes later, when it is scheduled again.
    Blocked {
        /// Thread.
        tid: i32,
        /// Syscall number.
        nr: u64,
        /// Argument registers at entry.
        args: [u64; 6],
    },
    /// An `rdtsc` (or `rdtscp`) instruction and what it returned.
    Rdtsc {
        /// Thread.
        tid: i32,
        /// Instruction address.
        rip: u64,
        /// Whether it was rdtscp (which also writes ecx).
        rdtscp: bool,
        /// The counter value.
        tsc: u64,
        /// TSC_AUX for rdtscp.
        aux: u32,
    },
    /// A `cpuid` instruction and what it returned (after masking).
    Cpuid {
        /// Thread.
        tid: i32,
        /// Instruction address.
        rip: u64,
        /// eax in.
        leaf: u32,
        /// ecx in.
        subleaf: u32,
        /// eax, ebx, ecx, edx out.
        out: [u32; 4],
    },
    /// A signal delivered to the program.
    Signal {
        /// Thread.
        tid: i32,
        /// Signal number.
        signo: i32,
        /// Where the thread was.
        rip: u64,
        /// Replay must inject it: it did not come from the thread's own instruction (a
        /// fault recurs by itself), but from kill, a timer, a child's exit... It is
        /// delivered right after a syscall of the thread, where replay can queue it
        /// (or at a preemption point: [`Event::SignalAtPoint`]).
        injected: bool,
        /// The siginfo the handler saw (128 bytes), for injected signals.
        #[serde(with = "serde_bytes")]
        info: Vec<u8>,
    },
    /// A thread that ran too long without a syscall was preempted here. Replay runs it
    /// to the first point with exactly this state.
    Preempt {
        /// Thread.
        tid: i32,
        /// Its state.
        state: Box<crate::preempt::PreemptState>,
    },
    /// A thread created a new task (thread or process); `child` is its recorded tid.
    NewTask {
        /// The creating thread.
        tid: i32,
        /// The new task's tid.
        child: i32,
        /// Whether it is a new process (fork, vfork, clone without CLONE_THREAD).
        process: bool,
        /// vfork: the parent waits in the kernel until the child execs or exits.
        vfork: bool,
    },
    /// The process ended.
    Exit {
        /// Thread that reported the end.
        tid: i32,
        /// How.
        how: ExitKind,
    },
    /// The thread's next `mmap` maps this file `MAP_SHARED` (format 2). Replay maps one
    /// writable copy per such file, shared by every mapping of it, so that what one
    /// process writes into the mapping the others see, as at record.
    SharedFile {
        /// Thread.
        tid: i32,
        /// The file's path at record time (the key of its copy).
        name: String,
    },
    /// A write-family call of the thread changed a file that is mapped `MAP_SHARED`
    /// (format 2): the mappings show the new bytes, so replay writes them into its copy.
    SharedFileWrite {
        /// Thread.
        tid: i32,
        /// The file's path at record time.
        name: String,
        /// Where in the file.
        offset: u64,
        /// The bytes written.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A thread that ran too long without a syscall was preempted here (format 3:
    /// [`Event::Preempt`] plus how the point was chosen and how replay finds it).
    Preempted {
        /// Thread.
        tid: i32,
        /// Its state.
        state: Box<crate::preempt::PreemptState>,
        /// How the point was found, and a few stack words.
        point: Box<crate::preempt::point::PointInfo>,
    },
    /// The program's own seccomp filters answered this call of the thread with
    /// something other than ALLOW (format 7): the call did not run. Replay applies the
    /// same verdict at the same call (`crate::program_filter`): an error, or `SIGSYS`
    /// (the [`Event::Signal`] that follows), forced as the kernel forces it.
    Filtered {
        /// Thread.
        tid: i32,
        /// Syscall number.
        nr: u64,
        /// Argument registers at entry.
        args: [u64; 6],
        /// The address after the `syscall` instruction.
        rip: u64,
        /// The filters' combined return value (`SECCOMP_RET_*` action and data).
        verdict: u32,
    },
    /// An asynchronous signal given to the thread at the preemption point its last
    /// [`Event::Preempted`] recorded (format 9). It had arrived outside a syscall and
    /// was held (see [`Event::Signal`]), and the thread then ran a whole short slice
    /// without a traced call (a loop without syscalls, which would never reach one):
    /// replay, standing at that point, gives it there with this siginfo.
    SignalAtPoint {
        /// Thread.
        tid: i32,
        /// Signal number.
        signo: i32,
        /// Where the thread was (the point's `rip`).
        rip: u64,
        /// The siginfo the handler saw (128 bytes).
        #[serde(with = "serde_bytes")]
        info: Vec<u8>,
    },
    /// The kernel wrote into a thread's memory outside the thread's own calls (format
    /// 12): the waiters bit of a priority-inheritance futex, which `FUTEX_LOCK_PI` sets
    /// in the lock's word as its thread goes to sleep (the owner's unlock reads it), or
    /// what another process of the recording wrote through this one's
    /// `/proc/PID/mem`. Replay writes the same bytes at this point, leaving the thread
    /// where it is (held at a blocked call's entry, or stopped).
    KernelWrite {
        /// A thread of the process written.
        tid: i32,
        /// Where.
        addr: u64,
        /// The bytes there after the write.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The task thread `tid` creates next ([`Event::NewTask`], which follows) lives in
    /// pid namespaces of the program's (format 14): their ids, outermost first, and its
    /// pid in each (see [`crate::pidns`]). Replay creates no namespace; it translates the
    /// pids the program names with these.
    PidNamespace {
        /// The creating thread.
        tid: i32,
        /// The new task's tid (the engine's).
        child: i32,
        /// The namespaces below the engine's, outermost first (recorded inode numbers).
        namespaces: Vec<u64>,
        /// Its pid in each.
        pids: Vec<i32>,
    },
}

impl Event {
    /// The thread of the event.
    pub fn tid(&self) -> i32 {
        match self {
            Event::Exec(e) => e.tid,
            Event::Syscall(s) => s.tid,
            Event::Rdtsc { tid, .. }
            | Event::Blocked { tid, .. }
            | Event::NewTask { tid, .. }
            | Event::Preempt { tid, .. }
            | Event::Preempted { tid, .. }
            | Event::Cpuid { tid, .. }
            | Event::Signal { tid, .. }
            | Event::SignalAtPoint { tid, .. }
            | Event::Exit { tid, .. }
            | Event::SharedFile { tid, .. }
            | Event::PidNamespace { tid, .. }
            | Event::SharedFileWrite { tid, .. }
            | Event::KernelWrite { tid, .. }
            | Event::Filtered { tid, .. } => *tid,
        }
    }

    /// Bytes of memory contents the event carries (what holding it costs, roughly).
    pub fn payload_len(&self) -> usize {
        match self {
            Event::Exec(e) => e.memory.iter().map(|w| w.data.len()).sum(),
            Event::Syscall(s) => s.writes.iter().map(|w| w.data.len()).sum(),
            Event::Signal { info, .. } | Event::SignalAtPoint { info, .. } => info.len(),
            Event::SharedFileWrite { data, .. } | Event::KernelWrite { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// A one-line description for `dump` and divergence messages.
    pub fn describe(&self) -> String {
        match self {
            Event::Exec(e) => format!(
                "exec {} ({} mappings, rip={:#x})",
                e.path,
                e.mappings.len(),
                e.regs.get(16).copied().unwrap_or(0)
            ),
            Event::Syscall(s) => {
                let name = crate::syscalls::name_of(s.nr);
                let args: Vec<String> = s.args.iter().map(|a| format!("{a:#x}")).collect();
                let mut line = format!("syscall {}({}) = {}", name, args.join(", "), s.ret);
                if s.ret < 0 && s.ret > -4096 {
                    line.push_str(&format!(
                        " ({})",
                        nix::errno::Errno::from_raw(-s.ret as i32)
                    ));
                }
                if !s.writes.is_empty() {
                    let n: usize = s.writes.iter().map(|w| w.data.len()).sum();
                    line.push_str(&format!(" [wrote {n} bytes]"));
                }
                if let Some(f) = &s.file {
                    // The first 16 characters of the hash: a damaged trace's name may
                    // not be ASCII, and a byte index would cut a character (found by
                    // fuzzing: `dump` and divergence messages panicked).
                    let short = f
                        .char_indices()
                        .nth(16)
                        .map_or(f.as_str(), |(i, _)| &f[..i]);
                    line.push_str(&format!(" [file {short}]"));
                }
                line
            }
            Event::Blocked { nr, args, .. } => {
                let args: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
                format!(
                    "blocked in {}({})",
                    crate::syscalls::name_of(*nr),
                    args.join(", ")
                )
            }
            Event::Rdtsc {
                rdtscp, tsc, rip, ..
            } => {
                format!(
                    "{} at {rip:#x} = {tsc}",
                    if *rdtscp { "rdtscp" } else { "rdtsc" }
                )
            }
            Event::Cpuid {
                leaf,
                subleaf,
                out,
                rip,
                ..
            } => format!(
                "cpuid({leaf:#x}, {subleaf:#x}) at {rip:#x} = {:#x} {:#x} {:#x} {:#x}",
                out[0], out[1], out[2], out[3]
            ),
            Event::Signal {
                signo,
                rip,
                injected,
                ..
            } => format!(
                "signal {} at {rip:#x}{}",
                signal_name(*signo),
                if *injected { " (asynchronous)" } else { "" }
            ),
            Event::SignalAtPoint { signo, rip, .. } => format!(
                "signal {} at {rip:#x} (asynchronous, at the preemption point)",
                signal_name(*signo)
            ),
            Event::Preempt { state, .. } => {
                format!(
                    "preempted at {:#x}",
                    state.regs.get(16).copied().unwrap_or(0)
                )
            }
            Event::Preempted { state, point, .. } => {
                let left = match point.method {
                    crate::preempt::point::Method::RepString => format!(
                        ", {} iterations left",
                        state.regs.get(11).copied().unwrap_or(0)
                    ),
                    _ => String::new(),
                };
                format!(
                    "preempted at {:#x} ({}{left})",
                    state.regs.get(16).copied().unwrap_or(0),
                    point.method.name()
                )
            }
            Event::NewTask {
                child,
                process,
                vfork,
                ..
            } => format!(
                "new {} {child}",
                if *vfork {
                    "vfork child"
                } else if *process {
                    "process"
                } else {
                    "thread"
                }
            ),
            Event::Exit { how, .. } => match how {
                ExitKind::Exited(c) => format!("exit {c}"),
                ExitKind::Signaled(s) => format!("killed by {}", signal_name(*s)),
            },
            Event::SharedFile { name, .. } => format!("next mmap shares {name}"),
            Event::PidNamespace { child, pids, .. } => {
                format!("new task {child} has pids {pids:?} in the program's pid namespaces")
            }
            Event::SharedFileWrite {
                name, offset, data, ..
            } => format!("wrote {} bytes at {offset} of shared {name}", data.len()),
            Event::KernelWrite { addr, data, .. } => format!(
                "the kernel wrote {} bytes at {addr:#x} of the thread's memory",
                data.len()
            ),
            Event::Filtered {
                nr, args, verdict, ..
            } => {
                let args: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
                format!(
                    "syscall {}({}) answered by the program's seccomp filter ({verdict:#x})",
                    crate::syscalls::name_of(*nr),
                    args.join(", ")
                )
            }
        }
    }
}

/// "SIGSEGV" for 11.
pub fn signal_name(signo: i32) -> String {
    nix::sys::signal::Signal::try_from(signo)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signo}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a captured file's name that is not ASCII was cut at byte 16,
    /// inside a character, and `describe` panicked.
    #[test]
    fn describe_cuts_a_non_ascii_file_name_between_characters() {
        let ev = Event::Syscall(SyscallEvent {
            tid: 1,
            nr: 9,
            args: [0; 6],
            ret: 0,
            input_hash: 0,
            writes: vec![],
            file: Some("€".repeat(8)),
        });
        assert!(ev
            .describe()
            .ends_with(&format!(" [file {}]", "€".repeat(8))));
        let ev = Event::Syscall(SyscallEvent {
            file: Some("0123456789abcdef0123".into()),
            ..match ev {
                Event::Syscall(s) => s,
                _ => unreachable!(),
            }
        });
        assert!(ev.describe().ends_with(" [file 0123456789abcdef]"));
    }

    /// `serde_bytes` must not change the bytes on disk: postcard writes a byte string
    /// exactly as a sequence of u8 (a varint length, then the bytes), so traces written
    /// before and after the change read the same.
    #[test]
    fn byte_fields_encode_as_a_plain_sequence() {
        #[derive(Serialize)]
        struct Plain {
            addr: u64,
            data: Vec<u8>,
        }
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let ours = postcard::to_stdvec(&MemWrite {
            addr: 0x7fff_0000,
            data: data.clone(),
        })
        .unwrap();
        let plain = postcard::to_stdvec(&Plain {
            addr: 0x7fff_0000,
            data,
        })
        .unwrap();
        assert_eq!(ours, plain);
    }
}
