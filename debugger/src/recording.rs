//! What the server learns from the trace before replaying: the first exec (program
//! path, mappings, initial stack), the auxiliary vector, and how many events there are.

use recorder::syscalls::nr;
use recorder::trace::{Event, ExecState, TraceDir};

use crate::errors::{Error, Result};

/// Facts about a recording that the server needs.
pub struct Recording {
    /// The trace.
    pub trace: TraceDir,
    /// The first exec: the program gdb debugs.
    pub exec: ExecState,
    /// The program's auxiliary vector, as its initial stack held it (`qXfer:auxv:read`:
    /// gdb finds the PIE load address and the interpreter through it).
    pub auxv: Vec<u8>,
    /// Number of events.
    pub events: u64,
    /// Where forward runs end: the boundary before the first process's `exit_group`
    /// (or `exit` of its last thread), so that its threads and memory are still there
    /// to look at; the last event when there is none (a program killed by a signal).
    pub end: u64,
}

impl Recording {
    /// Reads the trace at `path` (every event, to count them).
    pub fn open(path: &std::path::Path) -> Result<Recording> {
        let trace = TraceDir::open(path)?;
        let mut reader = trace.events()?;
        let exec = match reader.next_event()? {
            Some(Event::Exec(e)) => *e,
            Some(other) => {
                return Err(Error::BadRecording(format!(
                    "the trace starts with `{}`, not with the program's exec",
                    other.describe()
                )))
            }
            None => return Err(Error::BadRecording("the trace has no events".into())),
        };
        let root = exec.tid;
        let mut events = 1u64;
        let mut exit_call = None;
        while let Some(ev) = reader.next_event()? {
            if let Event::Syscall(s) = &ev {
                // exit_group, or exit (a last thread ending the process).
                if (s.nr == nr::EXIT_GROUP || s.nr == nr::EXIT) && s.tid == root {
                    exit_call = Some(events);
                }
            }
            events += 1;
        }
        let end = exit_call.unwrap_or(events.saturating_sub(1));
        let auxv = auxv_of(&exec).unwrap_or_default();
        Ok(Recording {
            trace,
            exec,
            auxv,
            events,
            end,
        })
    }
}

/// Index of `rsp` in `user_regs_struct` as 27 words.
const RSP: usize = 19;

/// The auxiliary vector from the initial stack recorded at exec: at `rsp`, argc, argv
/// (argc pointers and a null), envp (pointers up to a null), then (type, value) pairs
/// up to `AT_NULL`, included. `None` when the recorded memory does not hold it all.
pub fn auxv_of(exec: &ExecState) -> Option<Vec<u8>> {
    let rsp = *exec.regs.get(RSP)?;
    let word = |addr: u64| -> Option<u64> {
        exec.memory.iter().find_map(|w| {
            let off = addr.checked_sub(w.addr)? as usize;
            let bytes = w.data.get(off..off.checked_add(8)?)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        })
    };
    let argc = word(rsp)?;
    if argc > 1 << 20 {
        return None;
    }
    let mut at = rsp + 8 * (argc + 2);
    // envp, bounded like everything read from a trace.
    for _ in 0..1 << 20 {
        let p = word(at)?;
        at += 8;
        if p == 0 {
            break;
        }
    }
    let mut auxv = Vec::new();
    for _ in 0..512 {
        let (kind, value) = (word(at)?, word(at + 8)?);
        auxv.extend_from_slice(&kind.to_le_bytes());
        auxv.extend_from_slice(&value.to_le_bytes());
        at += 16;
        if kind == 0 {
            return Some(auxv);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::trace::MemWrite;

    #[test]
    fn the_auxv_is_found_past_argv_and_envp() {
        let base = 0x7ffd_0000u64;
        let words: Vec<u64> = vec![
            2, 0x111, 0x222, 0, // argc, argv
            0x333, 0, // envp
            3, 0x40_0040, // AT_PHDR
            9, 0x40_1000, // AT_ENTRY
            0, 0,      // AT_NULL
            0xdead, // beyond
        ];
        let data: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut regs = vec![0u64; 27];
        regs[RSP] = base;
        let exec = ExecState {
            tid: 1,
            path: "/bin/x".into(),
            regs,
            mappings: vec![],
            memory: vec![MemWrite { addr: base, data }],
            brk: 0,
            stack_limit: 0,
        };
        let auxv = auxv_of(&exec).unwrap();
        let got: Vec<u64> = auxv
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, [3, 0x40_0040, 9, 0x40_1000, 0, 0]);
        let mut cut = exec.clone();
        cut.memory[0].data.truncate(8 * 9);
        assert_eq!(auxv_of(&cut), None, "an auxv cut short is not made up");
    }
}
