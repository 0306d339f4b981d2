//! The `gdbstub` target: gdb's requests mapped onto a [`Timeline`].
//!
//! gdb's resume requests (`vCont`, `bc`, `bs`) only record what to do
//! ([`Action`]); the work happens in [`crate::server`]'s event loop, which can check
//! the connection for Ctrl-C between events. The replay is read-only: memory and
//! register writes are refused with an error reply (so `set var` and inferior calls
//! such as `print f()` fail visibly instead of changing nothing silently).

use std::num::NonZeroUsize;

use gdbstub::common::{Pid, Signal, Tid};
use gdbstub::outputln;
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::exec_file::{ExecFile, ExecFileOps};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::arch::{X86_64Linux, X86_64Regs};
use crate::backend::{Opener, Session, Watch, WatchKind, WATCH_SLOTS};
use crate::errors::Error;
use crate::timeline::{Outcome, Timeline};

/// What gdb asked for, done by the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run forward.
    Continue,
    /// One instruction of this thread.
    Step(i32),
    /// Run backward.
    ReverseContinue,
    /// One instruction backward.
    ReverseStep,
}

/// The replay as a `gdbstub` target.
pub struct ReplayTarget<O: Opener> {
    timeline: Timeline<O>,
    /// The action of the last resume request.
    pub(crate) pending: Option<Action>,
    step_tid: Option<i32>,
    exec_path: Vec<u8>,
    auxv: Vec<u8>,
    /// Where a link map holds its TLS module id (from the recorded libc).
    modid_field: Option<crate::tls::ModidField>,
    /// [`crate::tls::FALLBACK_NOTE`] was printed.
    fallback_said: bool,
}

impl<O: Opener> ReplayTarget<O> {
    /// A target on `timeline`. `exec_path` is the program's recorded path, `auxv` its
    /// recorded auxiliary vector (what `qXfer:auxv:read` returns, for PIE relocation).
    pub fn new(timeline: Timeline<O>, exec_path: &str, auxv: Vec<u8>) -> Self {
        ReplayTarget {
            timeline,
            pending: None,
            step_tid: None,
            exec_path: exec_path.as_bytes().to_vec(),
            auxv,
            modid_field: None,
            fallback_said: false,
        }
    }

    /// Locates thread-local variables with `field`, libc's description of
    /// `l_tls_modid` (see [`crate::tls`]); without it, by the link map's order.
    pub fn with_modid_field(mut self, field: Option<crate::tls::ModidField>) -> Self {
        self.modid_field = field;
        self
    }

    /// The timeline.
    pub fn timeline(&mut self) -> &mut Timeline<O> {
        &mut self.timeline
    }

    /// Does the pending action; `interrupt` is asked between events.
    pub fn run_pending(
        &mut self,
        interrupt: &mut crate::timeline::Interrupt<'_>,
    ) -> Result<MultiThreadStopReason<u64>, Error> {
        let outcome = match self.pending.take() {
            Some(Action::Continue) | None => self.timeline.resume_forward(interrupt)?,
            Some(Action::Step(tid)) => self.timeline.step_forward(tid, interrupt)?,
            Some(Action::ReverseContinue) => self.timeline.reverse_continue(interrupt)?,
            Some(Action::ReverseStep) => self.timeline.reverse_step()?,
        };
        tracing::debug!("stopped: {outcome:?} at {}", self.timeline.position());
        Ok(stop_reason(outcome))
    }
}

impl<O: Opener> ReplayTarget<O> {
    /// The reply to a `qGetTLSAddr` request (`None`: one that did not parse): the
    /// variable's address in hex, or an error reply.
    pub fn tls_reply(&mut self, request: Option<crate::tls::TlsRequest>) -> String {
        let Some(r) = request else {
            return "E01".into();
        };
        if self.modid_field.is_none() && !self.fallback_said {
            self.fallback_said = true;
            eprintln!("{}", crate::tls::FALLBACK_NOTE);
        }
        let session = self.timeline.session();
        match crate::tls::tls_address(session, &self.auxv, self.modid_field, r.tid, r.offset, r.lm)
        {
            Some(addr) => format!("{addr:x}"),
            None => "E01".into(),
        }
    }
}

fn tid_of(tid: i32) -> Tid {
    NonZeroUsize::new(tid.max(1) as usize).unwrap_or(NonZeroUsize::MIN)
}

/// The stop reply for an outcome.
pub fn stop_reason(outcome: Outcome) -> MultiThreadStopReason<u64> {
    use MultiThreadStopReason as R;
    match outcome {
        Outcome::Breakpoint { tid } => R::SwBreak(tid_of(tid)),
        Outcome::Watch { tid, watch } => R::Watch {
            tid: tid_of(tid),
            kind: match watch.kind {
                WatchKind::Write => GdbWatchKind::Write,
                WatchKind::Access => GdbWatchKind::ReadWrite,
            },
            addr: watch.addr,
        },
        Outcome::Stepped { tid } | Outcome::Arrived { tid } => R::SignalWithThread {
            tid: tid_of(tid),
            signal: Signal::SIGTRAP,
        },
        Outcome::Signal { tid, signo } => R::SignalWithThread {
            tid: tid_of(tid),
            signal: gdb_signal(signo),
        },
        Outcome::Interrupted { tid } => R::SignalWithThread {
            tid: tid_of(tid),
            signal: Signal::SIGINT,
        },
        Outcome::End { tid } => R::ReplayLog {
            tid: Some(tid_of(tid)),
            pos: ReplayLogPosition::End,
        },
        Outcome::Begin { tid } => R::ReplayLog {
            tid: Some(tid_of(tid)),
            pos: ReplayLogPosition::Begin,
        },
    }
}

/// A Linux signal number in the remote protocol's numbering (gdb's own, which
/// differs from Linux's from SIGBUS on).
pub fn gdb_signal(signo: i32) -> Signal {
    let n = match signo {
        libc::SIGHUP => 1,
        libc::SIGINT => 2,
        libc::SIGQUIT => 3,
        libc::SIGILL => 4,
        libc::SIGTRAP => 5,
        libc::SIGABRT => 6,
        libc::SIGBUS => 10,
        libc::SIGFPE => 8,
        libc::SIGKILL => 9,
        libc::SIGUSR1 => 30,
        libc::SIGSEGV => 11,
        libc::SIGUSR2 => 31,
        libc::SIGPIPE => 13,
        libc::SIGALRM => 14,
        libc::SIGTERM => 15,
        libc::SIGCHLD => 20,
        libc::SIGCONT => 19,
        libc::SIGSTOP => 17,
        libc::SIGTSTP => 18,
        libc::SIGTTIN => 21,
        libc::SIGTTOU => 22,
        libc::SIGURG => 16,
        libc::SIGXCPU => 24,
        libc::SIGXFSZ => 25,
        libc::SIGVTALRM => 26,
        libc::SIGPROF => 27,
        libc::SIGWINCH => 28,
        libc::SIGIO => 23,
        libc::SIGPWR => 32,
        libc::SIGSYS => 12,
        32 => 77,
        33..=63 => 45 + (signo - 33) as u8,
        64 => 78,
        _ => return Signal::UNKNOWN,
    };
    Signal(n)
}

impl<O: Opener> Target for ReplayTarget<O> {
    type Arch = X86_64Linux;
    type Error = Error;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_exec_file(&mut self) -> Option<ExecFileOps<'_, Self>> {
        Some(self)
    }

    fn support_auxv(&mut self) -> Option<AuxvOps<'_, Self>> {
        Some(self)
    }
}

impl<O: Opener> MultiThreadBase for ReplayTarget<O> {
    fn read_registers(&mut self, regs: &mut X86_64Regs, tid: Tid) -> TargetResult<(), Self> {
        let tid = tid.get() as i32;
        let session = self.timeline.session();
        let general = session.regs(tid).map_err(|_| TargetError::NonFatal)?;
        let fpu = session.fpu_state(tid).ok();
        *regs = X86_64Regs::from_ptrace(&general, fpu.as_ref());
        Ok(())
    }

    fn write_registers(&mut self, _regs: &X86_64Regs, _tid: Tid) -> TargetResult<(), Self> {
        // EPERM: a replay's registers are the recording's.
        Err(TargetError::Errno(1))
    }

    fn read_addrs(
        &mut self,
        start_addr: u64,
        data: &mut [u8],
        _tid: Tid,
    ) -> TargetResult<usize, Self> {
        match self.timeline.session().read_memory(start_addr, data) {
            Ok(0) | Err(_) => Err(TargetError::Errno(14)),
            Ok(n) => Ok(n),
        }
    }

    fn write_addrs(&mut self, _start_addr: u64, _data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        // EPERM: writing would make the replay diverge from the recording.
        Err(TargetError::Errno(1))
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Error> {
        // The current thread first: gdb's first stop (`?`) reports the first one.
        let current = self.timeline.current_thread();
        thread_is_active(tid_of(current));
        for tid in self.timeline.session().threads() {
            if tid != current {
                thread_is_active(tid_of(tid));
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl<O: Opener> MultiThreadResume for ReplayTarget<O> {
    fn resume(&mut self) -> Result<(), Error> {
        self.pending = Some(match self.step_tid.take() {
            Some(tid) => Action::Step(tid),
            None => Action::Continue,
        });
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Error> {
        self.step_tid = None;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        _tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), Error> {
        // Signals gdb passes back are ignored: the replay delivers the recorded ones.
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, Tid, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, Tid, Self>> {
        Some(self)
    }
}

impl<O: Opener> MultiThreadSingleStep for ReplayTarget<O> {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Error> {
        self.step_tid = Some(tid.get() as i32);
        Ok(())
    }
}

impl<O: Opener> MultiThreadSchedulerLocking for ReplayTarget<O> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Error> {
        // A replay runs its threads in the recorded order whatever gdb locks (gdb's
        // default, `scheduler-locking replay`, asks for it): the other threads do not
        // run on their own meanwhile anyway.
        Ok(())
    }
}

impl<O: Opener> ReverseCont<Tid> for ReplayTarget<O> {
    fn reverse_cont(&mut self) -> Result<(), Error> {
        self.pending = Some(Action::ReverseContinue);
        Ok(())
    }
}

impl<O: Opener> ReverseStep<Tid> for ReplayTarget<O> {
    fn reverse_step(&mut self, _tid: Tid) -> Result<(), Error> {
        self.pending = Some(Action::ReverseStep);
        Ok(())
    }
}

impl<O: Opener> Breakpoints for ReplayTarget<O> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl<O: Opener> SwBreakpoint for ReplayTarget<O> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.timeline.breakpoints.insert(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.timeline.breakpoints.remove(&addr))
    }
}

fn watch_of(addr: u64, len: u64, kind: GdbWatchKind) -> Option<Watch> {
    // One debug register watches 1, 2, 4 or 8 bytes aligned to their size.
    if !matches!(len, 1 | 2 | 4 | 8) || addr % len != 0 {
        return None;
    }
    Some(Watch {
        addr,
        len: len as u8,
        kind: match kind {
            GdbWatchKind::Write => WatchKind::Write,
            // x86 cannot trap reads alone; gdb tells reads from writes by the value.
            GdbWatchKind::Read | GdbWatchKind::ReadWrite => WatchKind::Access,
        },
    })
}

impl<O: Opener> HwWatchpoint for ReplayTarget<O> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let Some(w) = watch_of(addr, len, kind) else {
            return Ok(false);
        };
        let watches = &mut self.timeline.watches;
        if watches.contains(&w) {
            return Ok(true);
        }
        if watches.len() >= WATCH_SLOTS {
            return Ok(false);
        }
        watches.push(w);
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let Some(w) = watch_of(addr, len, kind) else {
            return Ok(false);
        };
        let watches = &mut self.timeline.watches;
        let before = watches.len();
        watches.retain(|x| *x != w);
        Ok(watches.len() != before)
    }
}

impl<O: Opener> ExecFile for ReplayTarget<O> {
    fn get_exec_file(
        &self,
        _pid: Option<Pid>,
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        Ok(copy_range(&self.exec_path, offset, length, buf))
    }
}

impl<O: Opener> Auxv for ReplayTarget<O> {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        Ok(copy_range(&self.auxv, offset, length, buf))
    }
}

fn copy_range(data: &[u8], offset: u64, length: usize, buf: &mut [u8]) -> usize {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(length).min(data.len());
    let n = (end - start).min(buf.len());
    buf[..n].copy_from_slice(&data[start..start + n]);
    n
}

const MONITOR_HELP: &str = "\
monitor when          the current event number (as `cargo chaos dump` numbers events)
monitor goto N        go to the boundary before event N (alias: run N)
monitor where         the exact position (event, then stops and instructions since)
monitor stats         replays opened, events re-executed (and how many of them
                      were buffered calls fed without a stop each), instructions
                      stepped, checkpoints held, taken and restored, tick landings";

/// `info threads` shows each thread's name, as the replayed program set it.
impl<O: Opener> ThreadExtraInfo for ReplayTarget<O> {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Error> {
        let name = self
            .timeline
            .session_ref()
            .thread_name(tid.get() as i32)
            .unwrap_or_default();
        let n = name.len().min(buf.len());
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        Ok(n)
    }
}

impl<O: Opener> MonitorCmd for ReplayTarget<O> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["when"] => outputln!(out, "Current event: {}", self.timeline.when()),
            ["where"] => outputln!(out, "{}", self.timeline.position()),
            ["stats"] => {
                let s = self.timeline.stats();
                outputln!(
                    out,
                    "replays opened: {}, events replayed: {}, fed: {}, instructions stepped: {}",
                    s.opened,
                    s.events_replayed,
                    s.fed,
                    s.steps
                );
                outputln!(
                    out,
                    "checkpoints: {} held (every {} events), {} taken, {} restored",
                    s.held,
                    s.interval,
                    s.taken,
                    s.restored
                );
                outputln!(out, "tick landings: {}", s.landed);
            }
            ["goto" | "run", n] => match n.parse::<u64>() {
                Ok(n) => match self.timeline.go_to_event(n) {
                    Ok(_) => outputln!(
                        out,
                        "At event {n}. gdb still shows the old registers and frames: run \
                         `maint flush register-cache` (or `stepi` then `reverse-stepi`)."
                    ),
                    Err(Error::NoSuchPosition(m)) => outputln!(out, "{m}"),
                    // A divergence or a broken trace ends the session with its message.
                    Err(e) => return Err(e),
                },
                Err(_) => outputln!(out, "usage: monitor goto EVENT_NUMBER"),
            },
            _ => outputln!(out, "{MONITOR_HELP}"),
        }
        Ok(())
    }
}
