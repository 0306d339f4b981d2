//! Hardware watchpoints for a debugger: DR1 to DR3 (DR0 is the preemption search's,
//! see [`crate::preempt::set_breakpoint`]).
//!
//! Debug registers belong to each thread and a new thread starts without them, so the
//! replayer applies the current set to a thread before running it whenever the set
//! changed since that thread last got it (a generation number).

use crate::errors::Result;
use crate::preempt::DEBUGREG_OFFSET;
use crate::ptrace::Task;

/// Watchpoints the debugger can have at once.
pub const SLOTS: usize = 3;

/// What one watchpoint watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchpoint {
    /// First byte; aligned to `len`.
    pub addr: u64,
    /// 1, 2, 4 or 8.
    pub len: u8,
    /// Writes only; otherwise reads and writes (x86 cannot watch reads alone).
    pub write_only: bool,
}

/// The debugger's watchpoints and the generation of that set.
#[derive(Debug, Default, Clone)]
pub(crate) struct Watches {
    pub(crate) slots: [Option<Watchpoint>; SLOTS],
    pub(crate) generation: u64,
}

impl Watches {
    pub(crate) fn any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Gives `task` the current set (DR1..DR3 and their DR7 bits; DR0's kept).
    pub(crate) fn apply(&self, task: &Task) -> Result<()> {
        let dr7_at = DEBUGREG_OFFSET + 7 * 8;
        let mut dr7 = task.peek_user(dr7_at)?;
        // Disable ours first: the kernel checks each address against DR7 as it is.
        for i in 1..=SLOTS {
            dr7 &= !(0b11 << (2 * i) | 0xf << (16 + 4 * i));
        }
        task.poke_user(dr7_at, dr7)?;
        for (n, w) in self.slots.iter().enumerate() {
            let Some(w) = w else { continue };
            let i = n + 1;
            task.poke_user(DEBUGREG_OFFSET + 8 * i, w.addr)?;
            let rw: u64 = if w.write_only { 0b01 } else { 0b11 };
            let len: u64 = match w.len {
                1 => 0b00,
                2 => 0b01,
                8 => 0b10,
                _ => 0b11,
            };
            dr7 |= 1 << (2 * i) | (rw | len << 2) << (16 + 4 * i);
        }
        task.poke_user(dr7_at, dr7)
    }

    /// The armed watchpoint `task` triggered since its status was last read, if any;
    /// clears that status.
    pub(crate) fn triggered(&self, task: &Task) -> Result<Option<usize>> {
        let dr6_at = DEBUGREG_OFFSET + 6 * 8;
        let dr6 = task.peek_user(dr6_at)?;
        let hit = (0..SLOTS).find(|n| self.slots[*n].is_some() && dr6 & (1 << (n + 1)) != 0);
        if dr6 & 0b1110 != 0 {
            task.poke_user(dr6_at, dr6 & !0b1110)?;
        }
        Ok(hit)
    }
}
