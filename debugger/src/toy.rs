//! A tiny deterministic machine implementing [`Session`], for testing the timeline's
//! bookkeeping without ptrace: each interval between two events is a list of
//! instructions of one thread, some of which write a memory word.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use recorder::ptrace::{FpuState, Regs};
use recorder::trace::ExitKind;

use crate::backend::{Opener, Session, Stop, Watch, WATCH_SLOTS};

/// One instruction: its address, and the word it writes.
#[derive(Debug, Clone, Copy)]
pub struct Insn {
    pub rip: u64,
    pub write: Option<(u64, u64)>,
}

/// `intervals[b]`: the thread that runs between boundaries b and b+1, and its
/// instructions (the last one makes event b).
pub struct Program {
    pub intervals: Vec<(i32, Vec<Insn>)>,
}

#[derive(Debug)]
pub struct ToyError(pub String);
impl std::fmt::Display for ToyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ToyError {}

#[derive(Clone)]
pub struct Toy {
    prog: Rc<Program>,
    b: usize,
    i: usize,
    pub mem: BTreeMap<u64, u64>,
    bps: BTreeSet<u64>,
    watches: [Option<Watch>; WATCH_SLOTS],
}

impl Toy {
    pub fn rip(&self) -> u64 {
        self.prog
            .intervals
            .get(self.b)
            .map_or(0, |(_, insns)| insns[self.i].rip)
    }

    /// Executes the current instruction; the watch slot it triggered, if any.
    fn exec(&mut self) -> Option<usize> {
        let insn = self.prog.intervals[self.b].1[self.i];
        let mut hit = None;
        if let Some((addr, value)) = insn.write {
            self.mem.insert(addr, value);
            hit = self
                .watches
                .iter()
                .position(|w| w.is_some_and(|w| w.addr == addr));
        }
        self.i += 1;
        if self.i == self.prog.intervals[self.b].1.len() {
            self.b += 1;
            self.i = 0;
        }
        hit
    }

    fn tid(&self) -> i32 {
        self.prog.intervals.get(self.b).map_or(1, |(t, _)| *t)
    }
}

impl Session for Toy {
    type Error = ToyError;
    type Checkpoint = Toy;

    fn checkpoint(&mut self) -> Result<Option<Toy>, ToyError> {
        if self.i != 0 || !self.bps.is_empty() || self.watches.iter().any(Option::is_some) {
            return Err(ToyError(
                "a checkpoint between events or with breakpoints".into(),
            ));
        }
        Ok(Some(self.clone()))
    }

    fn event_index(&self) -> u64 {
        self.b as u64
    }

    fn resume(&mut self) -> Result<Stop, ToyError> {
        if self.b >= self.prog.intervals.len() {
            return Ok(Stop::Exited(ExitKind::Exited(0)));
        }
        let tid = self.tid();
        loop {
            let b = self.b;
            let hit = self.exec();
            if let Some(slot) = hit {
                return Ok(Stop::Watchpoint { tid, slot });
            }
            if self.b != b {
                return Ok(Stop::Event);
            }
            if self.bps.contains(&self.rip()) {
                return Ok(Stop::Breakpoint {
                    tid,
                    addr: self.rip(),
                });
            }
        }
    }

    fn single_step(&mut self) -> Result<Stop, ToyError> {
        if self.b >= self.prog.intervals.len() {
            return Err(ToyError("no more instructions".into()));
        }
        let tid = self.tid();
        Ok(match self.exec() {
            Some(slot) => Stop::Watchpoint { tid, slot },
            None => Stop::Stepped { tid },
        })
    }

    fn ready_to_step(&mut self) -> Result<bool, ToyError> {
        Ok(self.b < self.prog.intervals.len())
    }

    fn running_thread(&self) -> Option<i32> {
        (self.b < self.prog.intervals.len()).then(|| self.tid())
    }

    fn threads(&self) -> Vec<i32> {
        let set: BTreeSet<i32> = self.prog.intervals.iter().map(|(t, _)| *t).collect();
        set.into_iter().collect()
    }

    fn regs(&mut self, tid: i32) -> Result<Regs, ToyError> {
        // SAFETY: plain integers; all-zero is valid.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        if Some(tid) == self.running_thread() {
            r.rip = self.rip();
        }
        Ok(r)
    }

    fn fpu_state(&mut self, _tid: i32) -> Result<FpuState, ToyError> {
        Ok(FpuState::Fxsave(vec![0; 512]))
    }

    fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, ToyError> {
        let v = self.mem.get(&addr).copied().unwrap_or(0).to_le_bytes();
        let n = buf.len().min(8);
        buf[..n].copy_from_slice(&v[..n]);
        Ok(n)
    }

    fn insert_breakpoint(&mut self, addr: u64) -> Result<(), ToyError> {
        self.bps.insert(addr);
        Ok(())
    }

    fn remove_breakpoint(&mut self, addr: u64) -> Result<(), ToyError> {
        self.bps.remove(&addr);
        Ok(())
    }

    fn set_watchpoint(&mut self, slot: usize, watch: Option<Watch>) -> Result<(), ToyError> {
        self.watches[slot] = watch;
        Ok(())
    }

    fn write_memory(&mut self, _tid: i32, _addr: u64, _data: &[u8]) -> Result<(), ToyError> {
        Err(ToyError("the toy has no writable memory".into()))
    }

    fn set_regs(&mut self, _tid: i32, _regs: &Regs) -> Result<(), ToyError> {
        Err(ToyError("the toy has no writable registers".into()))
    }
}

pub struct ToyOpener(pub Rc<Program>);

impl Opener for ToyOpener {
    type Session = Toy;

    fn open(&self) -> Result<Toy, ToyError> {
        Ok(Toy {
            prog: self.0.clone(),
            b: 0,
            i: 0,
            mem: BTreeMap::new(),
            bps: BTreeSet::new(),
            watches: [None; WATCH_SLOTS],
        })
    }

    fn restore(&self, checkpoint: &mut Toy) -> Result<Toy, ToyError> {
        Ok(checkpoint.clone())
    }

    fn end(&self) -> u64 {
        // The intervals' events, then the exit.
        self.0.intervals.len() as u64
    }
}
