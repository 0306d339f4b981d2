//! The traced task tree as record and replay both handle it: what a stopped thread
//! reports, decoded once into a [`ThreadStop`] (the engines then decide what to do with
//! it), and ending and collecting tasks in the order the kernel requires.
//!
//! Starting the tree is [`crate::spawn::spawn_traced`]; waiting for one task is
//! [`crate::ptrace::Task::wait`] (never `waitpid(-1)`, which would take other
//! recordings' events).

use crate::errors::Result;
use crate::ptrace::{reap, Stop, SyscallStop, Task};

/// What a thread's ptrace stop means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStop {
    /// At a syscall's entry (a `PTRACE_SYSCALL`/`PTRACE_SYSEMU` stop).
    SyscallEntry {
        /// Syscall number.
        nr: u64,
        /// Argument registers.
        args: [u64; 6],
    },
    /// At a syscall's exit.
    SyscallExit {
        /// Its result (negative errno on failure).
        ret: i64,
        /// Where the thread resumes (after the `syscall` instruction).
        rip: u64,
    },
    /// A syscall stop the kernel gave no details of.
    SyscallUnknown,
    /// The seccomp filter stopped the thread at a call's entry
    /// (`PTRACE_EVENT_SECCOMP`); the call is read when needed
    /// ([`Task::syscall_stop`]).
    Seccomp,
    /// Another ptrace event (`PTRACE_EVENT_*`: clone, fork, vfork, exec, exit).
    Event(i32),
    /// A signal is about to be delivered.
    Signal(i32),
    /// The thread exited with this code.
    Exited(i32),
    /// The thread was killed by this signal.
    Killed(i32),
    /// Any other wait status.
    Other(i32),
}

impl ThreadStop {
    /// Decodes `stop`, which `task` just reported (a syscall stop costs one ptrace
    /// request: `PTRACE_GET_SYSCALL_INFO`).
    pub fn decode(task: &Task, stop: Stop) -> Result<Self> {
        Ok(match stop {
            Stop::Syscall => match task.syscall_stop()? {
                SyscallStop::Entry { nr, args } => ThreadStop::SyscallEntry { nr, args },
                SyscallStop::Exit { ret, rip } => ThreadStop::SyscallExit { ret, rip },
                SyscallStop::None => ThreadStop::SyscallUnknown,
            },
            Stop::Event(libc::PTRACE_EVENT_SECCOMP) => ThreadStop::Seccomp,
            Stop::Event(e) => ThreadStop::Event(e),
            Stop::Signal(s) => ThreadStop::Signal(s),
            Stop::Exited(c) => ThreadStop::Exited(c),
            Stop::Killed(s) => ThreadStop::Killed(s),
            Stop::Other(s) => ThreadStop::Other(s),
        })
    }
}

/// A task to end or collect: its (real) tid and whether it leads its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Leaders sort last.
    pub leader: bool,
    /// Its tid.
    pub tid: i32,
}

/// Collects tasks that are ending, the leaders last: a leader's end is reported only
/// once the other threads of its process are collected, so waiting for it first would
/// wait forever. The first process of a pid namespace of the program's comes after
/// every other (its exit waits until every other process of its namespace is
/// collected), the innermost namespace's first.
pub fn reap_in_order(mut tasks: Vec<Member>) {
    let inits: std::collections::HashMap<i32, usize> = tasks
        .iter()
        .filter(|m| m.leader)
        .filter_map(|m| namespace_init_depth(m.tid).map(|d| (m.tid, d)))
        .collect();
    tasks.sort_by_key(|m| (m.leader, inits.get(&m.tid).map(|&d| std::cmp::Reverse(d))));
    for m in tasks {
        reap(m.tid);
    }
}

/// How deep the pid namespace is whose first process `tid` is (`NSpid` of
/// `/proc/TID/status` ends with 1 after the engine's own pid), if it is one.
fn namespace_init_depth(tid: i32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let nspid: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .collect();
    (nspid.len() > 1 && nspid.last() == Some(&"1")).then(|| nspid.len() - 1)
}

/// Collects tasks that are ending whose ends wait for one another in ways the engine
/// cannot order (the threads of a pid namespace's first process and the namespace's
/// other processes: the last of its threads to exit waits until the others are
/// collected, whichever it is): each is polled, let go from any stop on its way out,
/// until all have ended. Returns each one's end.
pub fn reap_together(tids: &[i32]) -> std::collections::HashMap<i32, Stop> {
    let mut left: Vec<i32> = tids.to_vec();
    let mut ends = std::collections::HashMap::new();
    while !left.is_empty() {
        let mut progress = false;
        left.retain(|&tid| match crate::ptrace::try_wait_for(tid) {
            Ok(None) => true,
            Ok(Some(s @ (Stop::Exited(_) | Stop::Killed(_)))) => {
                ends.insert(tid, s);
                progress = true;
                false
            }
            Ok(Some(_)) => {
                // SAFETY: plain ptrace request on our own tracee.
                unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, 0) };
                progress = true;
                true
            }
            Err(_) => {
                ends.insert(tid, Stop::Exited(0));
                progress = true;
                false
            }
        });
        if !progress {
            std::thread::yield_now();
        }
    }
    ends
}

/// Kills every task in `tasks` (SIGKILL to its process), then collects them, the
/// leaders last (see [`reap_in_order`]).
pub fn kill_and_reap(tasks: Vec<Member>) {
    for m in &tasks {
        Task::new(m.tid).kill();
    }
    reap_in_order(tasks);
}

/// Waits until a process leader that called `exit` while its other threads live on has
/// become a zombie (it is never reported until they are gone). Its exit clears its
/// `CLONE_CHILD_CLEARTID` word and wakes that futex (`pthread_join` on the main thread
/// waits there) before it is one: the others must not run before that, or whether they
/// see the word cleared depends on how far the kernel got. Bounded: after a second
/// (a leader stuck in its exit, a vfork parent) it gives up.
pub fn wait_until_zombie(tid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{tid}/stat")) else {
            return;
        };
        // The state follows the command name, which ends with the last ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        if matches!(state, Some('Z' | 'X') | None) {
            return;
        }
        std::thread::yield_now();
    }
}
