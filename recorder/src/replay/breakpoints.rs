//! Software breakpoints (`int3`) in the replayed program: the one place that knows
//! where the engine wrote them and what they replaced.
//!
//! A breakpoint is wanted at an address by one or more owners (a debugger, or the
//! engine itself); it is written into every process of the tree that has that address
//! mapped. Each process (by recorded tgid) keeps the byte each `int3` replaced, so that
//! memory reads can show the program's own bytes, a thread stopped at a breakpoint can
//! step over it, and the breakpoint can be taken out again. New code mapped over a
//! breakpoint's address (an mmap, an exec) gets it written again.

use std::collections::{BTreeMap, HashMap};

use super::tree::RThread;
use super::{single_step, Error, Replayer};
use crate::errors::Result;
use crate::ptrace::{Resume, Stop, Task};

/// The `int3` instruction.
pub const INT3: u8 = 0xcc;

/// Who wants a breakpoint at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The debugger driving the session: a hit stops the session.
    User,
    /// The engine itself (e.g. a preemption-point search; none uses one yet).
    #[allow(dead_code)]
    Engine,
}

#[derive(Debug, Default, Clone, Copy)]
struct Owners {
    user: bool,
    engine: u32,
}

impl Owners {
    fn is_empty(&self) -> bool {
        !self.user && self.engine == 0
    }
}

/// The breakpoints of one replay.
#[derive(Debug, Default, Clone)]
pub struct Breakpoints {
    wanted: BTreeMap<u64, Owners>,
    /// By recorded tgid: the original byte at each address where an `int3` is written.
    inserted: HashMap<i32, HashMap<u64, u8>>,
}

impl Breakpoints {
    /// Whether no breakpoint is wanted (the fast path of replay: the last removal put
    /// every original byte back).
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Whether a breakpoint is wanted anywhere in `[start, end)`.
    pub fn any_in(&self, start: u64, end: u64) -> bool {
        self.wanted.range(start..end).next().is_some()
    }

    /// Whether the debugger wants a breakpoint at `addr`.
    pub fn is_user(&self, addr: u64) -> bool {
        self.wanted.get(&addr).is_some_and(|o| o.user)
    }

    /// Wants a breakpoint at `addr` for `owner`, writing it into each process of
    /// `procs` (recorded tgid and one of its threads) that has the address mapped.
    pub fn add<'t>(
        &mut self,
        addr: u64,
        owner: Owner,
        procs: impl IntoIterator<Item = (i32, &'t mut Task)>,
    ) -> Result<()> {
        let o = self.wanted.entry(addr).or_default();
        match owner {
            Owner::User => o.user = true,
            Owner::Engine => o.engine += 1,
        }
        for (tgid, task) in procs {
            self.write_one(tgid, addr, task)?;
        }
        Ok(())
    }

    /// Drops `owner`'s wish for a breakpoint at `addr`; the last owner's removal puts
    /// the original byte back in each process of `procs`. Returns whether `owner` had
    /// one there.
    pub fn remove<'t>(
        &mut self,
        addr: u64,
        owner: Owner,
        procs: impl IntoIterator<Item = (i32, &'t mut Task)>,
    ) -> Result<bool> {
        let Some(o) = self.wanted.get_mut(&addr) else {
            return Ok(false);
        };
        let had = match owner {
            Owner::User => std::mem::replace(&mut o.user, false),
            Owner::Engine if o.engine > 0 => {
                o.engine -= 1;
                true
            }
            Owner::Engine => false,
        };
        if o.is_empty() {
            self.wanted.remove(&addr);
            for (tgid, task) in procs {
                if let Some(orig) = self.inserted.get_mut(&tgid).and_then(|m| m.remove(&addr)) {
                    restore(task, addr, orig)?;
                }
            }
        }
        Ok(had)
    }

    /// Whether an `int3` of ours is written at `addr` in process `tgid`.
    pub fn inserted_at(&self, tgid: i32, addr: u64) -> bool {
        self.inserted
            .get(&tgid)
            .is_some_and(|m| m.contains_key(&addr))
    }

    /// Replaces our `int3`s in `buf` (read from process `tgid` at `addr`) with the bytes
    /// they replaced.
    pub fn hide(&self, tgid: i32, addr: u64, buf: &mut [u8]) {
        let Some(m) = self.inserted.get(&tgid) else {
            return;
        };
        let end = addr.saturating_add(buf.len() as u64);
        for (&at, &orig) in m {
            if at >= addr && at < end {
                buf[(at - addr) as usize] = orig;
            }
        }
    }

    /// Puts the original byte back at `addr` in process `tgid` for a moment (to step
    /// over the breakpoint); [`Breakpoints::rearm`] writes the `int3` again.
    pub fn lift(&self, tgid: i32, addr: u64, task: &mut Task) -> Result<()> {
        match self.inserted.get(&tgid).and_then(|m| m.get(&addr)) {
            Some(&orig) => restore(task, addr, orig),
            None => Ok(()),
        }
    }

    /// Writes the `int3` at `addr` again after [`Breakpoints::lift`].
    pub fn rearm(&self, tgid: i32, addr: u64, task: &mut Task) -> Result<()> {
        if self.inserted_at(tgid, addr) {
            ignore_gone(task.write_mem(addr, &[INT3]))?;
        }
        Ok(())
    }

    /// Process `tgid` has new contents in `[start, end)` (an mmap, an mremap): the
    /// breakpoints wanted there are written into it, remembering the new bytes.
    pub fn remapped(&mut self, tgid: i32, start: u64, end: u64, task: &mut Task) -> Result<()> {
        let addrs: Vec<u64> = self.wanted.range(start..end).map(|(a, _)| *a).collect();
        for addr in addrs {
            if let Some(m) = self.inserted.get_mut(&tgid) {
                m.remove(&addr);
            }
            self.write_one(tgid, addr, task)?;
        }
        Ok(())
    }

    /// Process `tgid` has a new image (exec): every wanted breakpoint is written into it.
    pub fn exec(&mut self, tgid: i32, task: &mut Task) -> Result<()> {
        self.inserted.remove(&tgid);
        let addrs: Vec<u64> = self.wanted.keys().copied().collect();
        for addr in addrs {
            self.write_one(tgid, addr, task)?;
        }
        Ok(())
    }

    /// Process `child` was forked from `parent`: it has the parent's memory, `int3`s
    /// included.
    pub fn forked(&mut self, parent: i32, child: i32) {
        if let Some(m) = self.inserted.get(&parent).cloned() {
            self.inserted.insert(child, m);
        }
    }

    /// Process `tgid` is gone.
    pub fn forget(&mut self, tgid: i32) {
        self.inserted.remove(&tgid);
    }

    fn write_one(&mut self, tgid: i32, addr: u64, task: &mut Task) -> Result<()> {
        if self.inserted_at(tgid, addr) {
            return Ok(());
        }
        let orig = match task.read_mem_partial(addr, 1) {
            Ok(b) if b.len() == 1 => b[0],
            // Not mapped (yet): written when something is mapped there.
            Ok(_) => return Ok(()),
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        if ignore_gone(task.write_mem(addr, &[INT3]))? {
            self.inserted.entry(tgid).or_default().insert(addr, orig);
        }
        Ok(())
    }
}

fn restore(task: &mut Task, addr: u64, orig: u8) -> Result<()> {
    ignore_gone(task.write_mem(addr, &[orig])).map(|_| ())
}

/// `Ok(true)` when done, `Ok(false)` when the task is gone.
fn ignore_gone(r: Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_gone() => Ok(false),
        Err(e) => Err(e),
    }
}

impl Replayer<'_> {
    /// If `th` stands at one of our breakpoints, runs the instruction it replaced (the
    /// `int3` lifted meanwhile) before the thread is resumed with `mode`: one
    /// single-step, or for a `syscall` instruction the resumption itself up to its
    /// first stop, which is returned. `sig` is delivered on the way (and cleared).
    pub(super) fn step_over_breakpoint(
        &mut self,
        th: &mut RThread,
        mode: Resume,
        sig: &mut i32,
    ) -> Result<Option<Stop>> {
        let rip = th.task.regs()?.rip;
        let entered = th.entered_handler.take();
        if !self.bps.inserted_at(th.tgid, rip) {
            return Ok(None);
        }
        if entered == Some(rip) && self.bps.is_user(rip) {
            // The engine delivered a signal by a step that ended at the handler's first
            // instruction (see `enter_handler_first`): natively the thread would run into the
            // breakpoint there, which is hit now, before the handler runs.
            crate::preempt::set_breakpoint(&th.task, None)?;
            return Err(Error::Breakpoint {
                tid: th.task.tid,
                addr: rip,
            });
        }
        let code = self.read_code(th, rip, 2)?;
        let how = if code == crate::arch::SYSCALL_INSN {
            mode
        } else {
            Resume::Step
        };
        self.bps.lift(th.tgid, rip, &mut th.task)?;
        let sig = std::mem::take(sig);
        let stepped = match how {
            Resume::Step => single_step(&th.task, sig),
            _ => th
                .task
                .resume(how, sig)
                .and_then(|_| th.task.wait_skipping_sigchld())
                .map(|s| s.0),
        };
        self.bps.rearm(th.tgid, rip, &mut th.task)?;
        let stop = stepped?;
        Ok(match (how, stop) {
            (Resume::Step, Stop::Signal(libc::SIGTRAP)) => None,
            (_, stop) => Some(stop),
        })
    }

    /// `th` stopped with SIGTRAP: if an `int3` of ours raised it, the thread is put back
    /// at the breakpoint's address and [`Error::Breakpoint`] returned (the event it was
    /// running is not finished; running it again goes on from there).
    pub(super) fn check_breakpoint_hit(&mut self, th: &mut RThread) -> Result<()> {
        let mut regs = th.task.regs()?;
        let addr = regs.rip.wrapping_sub(1);
        if !self.bps.inserted_at(th.tgid, addr) || th.task.siginfo()?.si_code != libc::SI_KERNEL {
            return Ok(());
        }
        regs.rip = addr;
        th.task.set_regs(&regs)?;
        if self.bps.is_user(addr) {
            // The engine's own preemption search (DR0) must not stay armed while the
            // debugger has the thread: it is armed again when the search goes on.
            crate::preempt::set_breakpoint(&th.task, None)?;
            return Err(Error::Breakpoint {
                tid: th.task.tid,
                addr,
            });
        }
        Ok(())
    }

    /// `len` bytes of `th`'s code at `addr`, as the program has them (our `int3`s hidden).
    pub(super) fn read_code(&self, th: &mut RThread, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut code = th.task.read_mem_partial(addr, len)?;
        self.bps.hide(th.tgid, addr, &mut code);
        Ok(code)
    }
}
