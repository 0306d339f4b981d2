//! What the server learns from the trace before replaying: the first exec (program
//! path, mappings, initial stack), the auxiliary vector, and how many events there are.

use std::collections::HashMap;

use recorder::syscalls::nr;
use recorder::trace::{Event, ExecState, TraceDir};

use crate::errors::{Error, Result};

/// Facts about a recording that the server needs, for the process gdb debugs.
pub struct Recording {
    /// The trace.
    pub trace: TraceDir,
    /// The program the debugged process runs: the first exec for the root process, the
    /// one it inherited or made for another.
    pub exec: ExecState,
    /// The program's auxiliary vector, as its initial stack held it (`qXfer:auxv:read`:
    /// gdb finds the PIE load address and the interpreter through it).
    pub auxv: Vec<u8>,
    /// Number of events.
    pub events: u64,
    /// The debugged process (recorded pid).
    pub pid: i32,
    /// The first boundary where the debugged process exists (and runs its program):
    /// just after the first exec for the root, after its creation (or its exec) for
    /// another.
    pub begin: u64,
    /// Where forward runs end: the boundary before the debugged process's `exit_group`
    /// (or `exit` of its last thread), so that its threads and memory are still there
    /// to look at; the last event when there is none (a program killed by a signal).
    pub end: u64,
    /// The event at `end` is the process's exit call (or its second exec).
    pub end_at_call: bool,
    /// Every process of the recording, in the order they were created.
    pub processes: Vec<Process>,
    /// Where each thread's tick budget and the tick callbacks' refill are, from its
    /// `chaos_tick` calls (code built with `--instrument`; see
    /// `recorder::ticks::TICK_MAGIC`): the last call's, by recorded tid.
    pub ticks: std::collections::HashMap<i32, (u64, u64)>,
}

/// A process of the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Recorded pid.
    pub pid: i32,
    /// The process that created it (`None` for the root).
    pub parent: Option<i32>,
    /// The programs it ran (paths), the inherited one first.
    pub programs: Vec<String>,
}

impl Recording {
    /// Reads the trace at `path` (every event, to count them), for the root process
    /// (`pid` `None`) or the process with recorded pid `pid`.
    pub fn open(path: &std::path::Path, pid: Option<i32>) -> Result<Recording> {
        let trace = TraceDir::open(path)?;
        let mut reader = trace.events()?;
        let first = match reader.next_event()? {
            Some(Event::Exec(e)) => *e,
            Some(other) => {
                return Err(Error::BadRecording(format!(
                    "the trace starts with `{}`, not with the program's exec",
                    other.describe()
                )))
            }
            None => return Err(Error::BadRecording("the trace has no events".into())),
        };
        let root = first.tid;
        let pid = pid.unwrap_or(root);
        // Which process each thread belongs to, and each process's program.
        let mut tgid_of: HashMap<i32, i32> = HashMap::from([(root, root)]);
        let mut processes = vec![Process {
            pid: root,
            parent: None,
            programs: vec![first.path.clone()],
        }];
        // The debugged process's program and first boundary, once known.
        let mut found: Option<(ExecState, u64)> = (pid == root).then(|| (first.clone(), 1));
        let mut execs_of_pid = 0u32;
        let mut cut = false;
        let mut program_of: HashMap<i32, std::rc::Rc<ExecState>> =
            HashMap::from([(root, std::rc::Rc::new(first))]);
        let mut events = 1u64;
        let mut exit_call = None;
        let mut ticks = HashMap::new();
        while let Some(ev) = reader.next_event()? {
            events += 1;
            match &ev {
                Event::NewTask {
                    tid,
                    child,
                    process,
                    ..
                } => {
                    let parent = tgid_of.get(tid).copied().unwrap_or(*tid);
                    if !*process {
                        tgid_of.insert(*child, parent);
                        continue;
                    }
                    tgid_of.insert(*child, *child);
                    let inherited = program_of.get(&parent).cloned();
                    if let Some(p) = &inherited {
                        program_of.insert(*child, p.clone());
                    }
                    processes.push(Process {
                        pid: *child,
                        parent: Some(parent),
                        programs: inherited.iter().map(|p| p.path.clone()).collect(),
                    });
                    // A recorded pid used again later: the first process wins.
                    if *child == pid && found.is_none() {
                        if let Some(p) = inherited {
                            // The boundary after the event that created it.
                            found = Some(((*p).clone(), events));
                        }
                    }
                }
                Event::Exec(state) => {
                    let tgid = tgid_of.get(&state.tid).copied().unwrap_or(state.tid);
                    tgid_of.insert(state.tid, tgid);
                    if let Some(p) = processes.iter_mut().rev().find(|p| p.pid == tgid) {
                        p.programs.push(state.path.clone());
                    }
                    program_of.insert(tgid, std::rc::Rc::new((**state).clone()));
                    if tgid == pid && tgid != root && !cut {
                        execs_of_pid += 1;
                        if execs_of_pid == 1 {
                            // Its own program from here on: debugged from its exec.
                            found = Some(((**state).clone(), events));
                        } else {
                            // A session follows one program of one process: it ends
                            // before a second exec.
                            exit_call = Some(events - 1);
                            cut = true;
                        }
                    }
                }
                // exit_group, or exit (a last thread ending the process), of its
                // main thread.
                Event::Syscall(s)
                    if (s.nr == nr::EXIT_GROUP || s.nr == nr::EXIT)
                        && s.tid == pid
                        && found.is_some()
                        && !cut =>
                {
                    exit_call = Some(events - 1);
                }
                Event::Syscall(s)
                    if s.nr == nr::CHAOS_TICK && s.args[2] == recorder::ticks::TICK_MAGIC =>
                {
                    ticks.insert(s.tid, (s.args[0], s.args[1]));
                }
                _ => {}
            }
        }
        let Some((exec, begin)) = found else {
            let list: Vec<String> = processes.iter().map(|p| p.pid.to_string()).collect();
            return Err(Error::NoSuchPosition(format!(
                "the recording has no process {pid} (its processes: {})",
                list.join(", ")
            )));
        };
        let end_at_call = exit_call.is_some_and(|e| e >= begin);
        let end = exit_call.unwrap_or(events.saturating_sub(1)).max(begin);
        let auxv = auxv_of(&exec).unwrap_or_default();
        Ok(Recording {
            trace,
            exec,
            auxv,
            events,
            pid,
            begin,
            end,
            end_at_call,
            processes,
            ticks,
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
