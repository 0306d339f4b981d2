//! Checkpoints: a copy of the replayed process, stopped at an event boundary, that a
//! session can be restarted from instead of replaying from the start.
//!
//! The copy is made by the program itself: the engine injects a `clone` with no flags
//! (a fork whose exit signal is 0, so the program never sees a SIGCHLD for it) into one
//! of its threads. The kernel reports the child to the engine (`PTRACE_O_TRACECLONE`),
//! which keeps it stopped. A fork copies only the calling thread, so the others are
//! made again in the copy by injected `clone(CLONE_THREAD...)` calls, and every thread
//! of the copy gets its original's registers (with `fs_base`), extended state, signal
//! mask, robust list, `clear_child_tid` address, alternate signal stack and name.
//! Restoring a checkpoint forks the checkpoint the same way, so a checkpoint can be
//! used any number of times.
//!
//! Only a tree of one process is copied, with no memory shared outside it (no
//! `MAP_SHARED` mapping: the replay's copies of shared files would have to be copied
//! too), no thread inside a call it is held in, no signal waiting to be delivered: a
//! session elsewhere answers that it cannot be checkpointed there
//! ([`ReplaySession::checkpoint`] returns `None` with the reason logged).

use std::collections::HashMap;
use std::rc::Rc;

use super::session::{ReplaySession, Shared};
use super::tree::RThread;
use super::{ReplayOptions, Replayer};
use crate::address_space::{STUB_SCRATCH, STUB_SYSCALL};
use crate::errors::{Error, Result};
use crate::inject::inject_syscall;
use crate::ptrace::{FpuState, Regs, Resume, Stop, SyscallStop, Task};
use crate::syscalls::nr;

/// A stopped copy of the replayed program at an event boundary, with the engine's
/// state for it. Dropping it ends the copy.
pub struct Checkpoint {
    r: Replayer<'static>,
    shared: Rc<Shared>,
}

impl Checkpoint {
    /// The number of the next event to replay from it.
    pub fn event_index(&self) -> u64 {
        self.r.index
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        self.r.kill_all();
    }
}

impl<'a> ReplaySession<'a> {
    /// Takes a checkpoint here (an event boundary). `Ok(None)`: the program cannot be
    /// copied at this point (see the module documentation); the reason is logged.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>> {
        if let Some(why) = self.r.not_copyable() {
            tracing::debug!("no checkpoint at event {}: {why}", self.r.index);
            return Ok(None);
        }
        let threads = self.r.fork_tree()?;
        let r = self
            .r
            .duplicate(threads, Box::new(|_, _| {}), Box::new(|_, _| {}))?;
        Ok(Some(Checkpoint {
            r,
            shared: self.shared(),
        }))
    }

    /// A new session standing where `checkpoint` was taken; the checkpoint stays usable.
    pub fn restore(checkpoint: &mut Checkpoint, options: ReplayOptions<'a>) -> Result<Self> {
        let threads = checkpoint.r.fork_tree()?;
        let mut r = checkpoint
            .r
            .duplicate(threads, options.sink, options.observer)?;
        // New threads have no debug registers: give them the set before they run.
        r.watches.generation += 1;
        Ok(ReplaySession::from_parts(r, checkpoint.shared.clone()))
    }
}

/// What a thread's copy must get besides memory.
struct ThreadState {
    regs: Regs,
    fpu: FpuState,
    sigmask: u64,
    robust: (u64, u64),
    clear_tid: u64,
    altstack: [u8; 24],
    name: Vec<u8>,
    /// Held at the entry of a blocked call (a `PTRACE_SYSEMU` entry stop).
    held: bool,
}

impl Replayer<'_> {
    /// Why the program cannot be copied now, if it cannot.
    fn not_copyable(&self) -> Option<String> {
        if self.over || self.pending.is_none() {
            return Some("the replay is over".into());
        }
        let mut tgids = self.threads.values().map(|t| t.tgid);
        let Some(tgid) = tgids.next() else {
            return Some("no thread is left".into());
        };
        if tgids.any(|g| g != tgid) || !self.zombies.is_empty() || !self.sigkilled.is_empty() {
            return Some("the program has more than one process".into());
        }
        if !self.shared_copies.is_empty() {
            return Some("the program maps files MAP_SHARED".into());
        }
        if self.threads.values().any(|t| t.files != tgid) {
            // The copy's threads would share the forking thread's table.
            return Some("a thread has an fd table of its own (unshare(CLONE_FILES))".into());
        }
        if let Some((tid, _)) = self
            .threads
            .iter()
            .find(|(_, t)| t.signal != 0 || t.in_fork.is_some() || t.temporary_mask.is_some())
        {
            return Some(format!(
                "thread {tid} is inside a fork or has a signal pending"
            ));
        }
        let leader = self.threads.values().next().map(|t| t.task.tid)?;
        match std::fs::read_to_string(format!("/proc/{leader}/maps")) {
            Ok(maps) => {
                let shared = maps.lines().find(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|perms| perms.ends_with('s'))
                });
                shared.map(|l| format!("memory is shared with another process: {l}"))
            }
            Err(e) => Some(format!("its memory map cannot be read: {e}")),
        }
    }

    /// Copies the (one-process) program: forks it from one thread, makes the other
    /// threads again in the copy, and returns the copy's threads by recorded tid.
    fn fork_tree(&mut self) -> Result<HashMap<i32, RThread>> {
        let mut tids: Vec<i32> = self.threads.keys().copied().collect();
        tids.sort();
        // The leader forks when it is there (the copy's first thread is its leader).
        let first = self
            .threads
            .iter()
            .find(|(tid, t)| **tid == t.tgid)
            .map(|(tid, _)| *tid)
            .unwrap_or(tids[0]);
        let mut states = HashMap::new();
        for tid in &tids {
            let th = self.threads.get_mut(tid).expect("listed");
            let held = th.held.is_some();
            states.insert(*tid, thread_state(&mut th.task, held)?);
        }
        let mut out: HashMap<i32, RThread> = HashMap::new();
        let forker = &mut self.threads.get_mut(&first).expect("listed").task;
        let child = inject_clone(forker, 0);
        // The injections left the originals at exit stops: those held at a call's entry
        // go back there.
        for tid in &tids {
            if states[tid].held {
                let th = self.threads.get_mut(tid).expect("listed");
                reenter_syscall(&mut th.task, &states[tid].regs)?;
            }
        }
        let mut main = Task::new(child?);
        let made = (|| -> Result<()> {
            for tid in tids.iter().filter(|t| **t != first) {
                let flags = libc::CLONE_VM
                    | libc::CLONE_FS
                    | libc::CLONE_FILES
                    | libc::CLONE_SIGHAND
                    | libc::CLONE_THREAD
                    | libc::CLONE_SYSVSEM;
                let real = inject_clone(&mut main, flags as u64)?;
                let mut task = Task::new(real);
                set_thread_state(&mut task, &states[tid])?;
                out.insert(*tid, self.copy_of(*tid, task));
            }
            set_thread_state(&mut main, &states[&first])?;
            Ok(())
        })();
        out.insert(first, self.copy_of(first, main));
        if let Err(e) = made {
            let members = out
                .iter()
                .map(|(tid, t)| crate::tree::Member {
                    leader: *tid == first,
                    tid: t.task.tid,
                })
                .collect();
            crate::tree::kill_and_reap(members);
            return Err(e);
        }
        Ok(out)
    }

    /// The engine's record of thread `tid` for its copy `task`.
    fn copy_of(&self, tid: i32, task: Task) -> RThread {
        let th = &self.threads[&tid];
        let mut copy = RThread::new(task, th.tgid);
        copy.held = th.held;
        copy.next_shared = th.next_shared.clone();
        // Standing at a preemption point, where a signal may be given next (the copy
        // stands there too).
        copy.at_point = th.at_point;
        copy
    }

    /// The engine's state for `threads`, a copy of this replay's program.
    fn duplicate<'b>(
        &self,
        threads: HashMap<i32, RThread>,
        sink: Box<super::OutputSink<'b>>,
        observer: Box<super::Observer<'b>>,
    ) -> Result<Replayer<'b>> {
        let leader_task = threads
            .get(&self.leader)
            .or_else(|| threads.values().next())
            .map_or(0, |t| t.task.tid);
        let events = match self.events.duplicate() {
            Ok(e) => e,
            Err(e) => {
                kill_threads(threads);
                return Err(e);
            }
        };
        Ok(Replayer {
            trace: self.trace.clone(),
            task: Task::new(leader_task),
            threads,
            leader: self.leader,
            zombies: HashMap::new(),
            stub_path: self.stub_path.clone(),
            ended: None,
            events,
            ahead: self.ahead.clone(),
            index: self.index,
            brk: self.brk.clone(),
            fd_tables: self.fd_tables.clone(),
            pidns: self.pidns.clone(),
            sink,
            observer,
            pending: self.pending.clone(),
            over: false,
            summary: None,
            bps: self.bps.clone(),
            watches: self.watches.clone(),
            stats: self.stats,
            shared_copies: HashMap::new(),
            // System V segments are refused above when attached (shared memory); the
            // sizes of those created travel with the copy, as the fds kept open for
            // private file mappings do (a fork copies them).
            shm_segments: self.shm_segments.clone(),
            mapped_fds: self.mapped_fds.clone(),
            untraced: self.untraced.clone(),
            syscallbuf: self.syscallbuf,
            memory_digest: self.memory_digest,
            clean_frames: self.clean_frames,
            sigkilled: Default::default(),
            filtered_call: None,
            batch_limit: 0,
        })
    }
}

fn kill_threads(threads: HashMap<i32, RThread>) {
    let members = threads
        .iter()
        .map(|(tid, t)| crate::tree::Member {
            leader: *tid == t.tgid,
            tid: t.task.tid,
        })
        .collect();
    crate::tree::kill_and_reap(members);
}

/// Reads what a copy of `task` needs (some of it by injected calls into it).
fn thread_state(task: &mut Task, held: bool) -> Result<ThreadState> {
    let regs = task.regs()?;
    let fpu = task.fpu_state()?;
    let sigmask = task.sigmask()?;
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: plain syscall with pointers to locals; the engine traces `task`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            task.tid,
            &mut head as *mut u64,
            &mut len as *mut u64,
        )
    };
    if r != 0 {
        head = 0;
        len = 0;
    }
    inject_syscall(
        task,
        STUB_SYSCALL,
        nr::PRCTL,
        &[libc::PR_GET_TID_ADDRESS as u64, STUB_SCRATCH],
    )?;
    let clear_tid = u64::from_le_bytes(task.read_mem(STUB_SCRATCH, 8)?.try_into().expect("8"));
    inject_syscall(task, STUB_SYSCALL, nr::SIGALTSTACK, &[0, STUB_SCRATCH])?;
    let mut altstack = [0u8; 24];
    altstack.copy_from_slice(&task.read_mem(STUB_SCRATCH, 24)?);
    let name = std::fs::read(format!("/proc/{0}/task/{0}/comm", task.tid))
        .map(|mut n| {
            if n.last() == Some(&b'\n') {
                n.pop();
            }
            n
        })
        .unwrap_or_default();
    Ok(ThreadState {
        regs,
        fpu,
        sigmask,
        robust: (head, len),
        clear_tid,
        altstack,
        name,
        held,
    })
}

/// Gives a thread of a copy its original's state.
fn set_thread_state(task: &mut Task, st: &ThreadState) -> Result<()> {
    if st.robust.0 != 0 {
        inject_syscall(
            task,
            STUB_SYSCALL,
            nr::SET_ROBUST_LIST,
            &[st.robust.0, st.robust.1],
        )?;
    }
    inject_syscall(task, STUB_SYSCALL, nr::SET_TID_ADDRESS, &[st.clear_tid])?;
    let mut alt = st.altstack;
    // The copy does not run on it now (SS_ONSTACK is a report, not a setting).
    let flags = i32::from_le_bytes(alt[8..12].try_into().expect("4")) & libc::SS_DISABLE;
    alt[8..12].copy_from_slice(&flags.to_le_bytes());
    task.write_mem(STUB_SCRATCH, &alt)?;
    inject_syscall(task, STUB_SYSCALL, nr::SIGALTSTACK, &[STUB_SCRATCH, 0])?;
    if !st.name.is_empty() {
        let mut name = st.name.clone();
        name.truncate(15);
        name.push(0);
        task.write_mem(STUB_SCRATCH, &name)?;
        inject_syscall(
            task,
            STUB_SYSCALL,
            nr::PRCTL,
            &[libc::PR_SET_NAME as u64, STUB_SCRATCH],
        )?;
    }
    task.set_sigmask(st.sigmask)?;
    task.set_fpu_state(&st.fpu)?;
    if st.held {
        reenter_syscall(task, &st.regs)
    } else {
        task.set_regs(&st.regs)
    }
}

/// Puts `task` at a `PTRACE_SYSEMU` entry stop of the call `regs` (an entry stop's
/// registers) describe: back on its `syscall` instruction, into the call again.
fn reenter_syscall(task: &mut Task, regs: &Regs) -> Result<()> {
    let at = regs.rip.wrapping_sub(2);
    if task.read_mem(at, 2)? != crate::arch::SYSCALL_INSN {
        return Err(Error::Unsupported {
            what: format!(
                "checkpoint: thread {} is not after a syscall instruction",
                task.tid
            ),
            hint: "report this as a bug".into(),
        });
    }
    let mut r = *regs;
    r.rip = at;
    r.rax = regs.orig_rax;
    task.set_regs(&r)?;
    task.resume(Resume::Sysemu, 0)?;
    match task.wait_skipping_sigchld()?.0 {
        Stop::Syscall => {}
        other => {
            return Err(Error::Unsupported {
                what: format!(
                    "checkpoint: thread {} stopped with {other:?} entering its call again",
                    task.tid
                ),
                hint: "report this as a bug".into(),
            })
        }
    }
    task.set_regs(regs)
}

/// Runs `clone(flags, 0, 0, 0, 0)` in `task` (exit signal 0: nobody is sent a
/// SIGCHLD) and takes in the new task, stopped; returns its tid. `task` keeps its
/// registers.
fn inject_clone(task: &mut Task, flags: u64) -> Result<i32> {
    let saved = task.regs()?;
    let mut r = saved;
    r.rip = STUB_SYSCALL;
    r.rax = nr::CLONE;
    r.orig_rax = u64::MAX;
    crate::arch::set_syscall_args(&mut r, &[flags, 0, 0, 0, 0, 0]);
    task.set_regs(&r)?;
    let fail = |what: String| Error::Unsupported {
        what: format!("checkpoint: {what}"),
        hint: "report this as a bug".into(),
    };
    // To the call's entry (a task leaving a SYSEMU entry stop may first report the
    // skipped call's exit).
    let mut entered = false;
    for _ in 0..3 {
        task.resume(Resume::Syscall, 0)?;
        match task.wait_skipping_sigchld()?.0 {
            Stop::Syscall => {}
            other => return Err(fail(format!("task {} stopped with {other:?}", task.tid))),
        }
        if let SyscallStop::Entry { nr: nr::CLONE, .. } = task.syscall_stop()? {
            entered = true;
            break;
        }
    }
    if !entered {
        return Err(fail(format!(
            "could not inject clone into task {}",
            task.tid
        )));
    }
    task.resume(Resume::Syscall, 0)?;
    let child = match task.wait_skipping_sigchld()?.0 {
        Stop::Event(libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK) => task.event_msg()? as i32,
        other => {
            return Err(fail(format!(
                "task {} stopped with {other:?} in an injected clone",
                task.tid
            )))
        }
    };
    task.resume(Resume::Syscall, 0)?;
    match task.wait_skipping_sigchld()?.0 {
        Stop::Syscall => {}
        other => {
            return Err(fail(format!(
                "task {} stopped with {other:?} leaving an injected clone",
                task.tid
            )))
        }
    }
    task.set_regs(&saved)?;
    match crate::ptrace::wait_for(child)? {
        Stop::Signal(libc::SIGSTOP) => Ok(child),
        other => Err(fail(format!("the copy first stopped with {other:?}"))),
    }
}
