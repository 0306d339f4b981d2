//! The program's own pid namespaces (`clone` or `unshare` with `CLONE_NEWPID`).
//!
//! The engine names every task by the tid its own pid namespace gives it (ptrace's event
//! messages and `/proc` say those), while a task in a namespace of the program's sees
//! the pids of that namespace: getpid, fork's result, wait4's, kill's argument, si_pid.
//! What the program saw is recorded as any result is; the engine only needs to know which
//! of its tasks a pid the program passed or got names, where it acts on that (a process
//! that SIGKILLs itself, one a wait reaps) and where it writes a tid into the program's
//! memory at replay (`CLONE_CHILD_SETTID`, robust futex owners). Each task created in
//! such a namespace is recorded with its pid in each namespace below the engine's
//! ([`crate::trace::Event::PidNamespace`]), and both record and replay translate with
//! this table. Replay creates no namespace: every pid the program sees comes from the
//! trace.

use std::collections::HashMap;

/// The namespaces of the tasks that live in pid namespaces below the engine's.
#[derive(Debug, Clone, Default)]
pub struct PidNamespaces {
    /// Per task (by the engine's tid): its namespaces below the engine's, outermost
    /// first (their ids, recorded inode numbers), and its pid in each.
    tasks: HashMap<i32, Vec<(u64, i32)>>,
    /// (namespace, pid there) to the engine's tid; a pid used again names its newest
    /// task.
    by_pid: HashMap<(u64, i32), i32>,
}

impl PidNamespaces {
    /// Whether no task was ever in a namespace of the program's.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Task `tid` lives in `namespaces` (outermost first) with `pids` there.
    pub fn add(&mut self, tid: i32, namespaces: &[u64], pids: &[i32]) {
        let levels: Vec<(u64, i32)> = namespaces
            .iter()
            .copied()
            .zip(pids.iter().copied())
            .collect();
        for &level in &levels {
            self.by_pid.insert(level, tid);
        }
        if levels.is_empty() {
            self.tasks.remove(&tid);
        } else {
            self.tasks.insert(tid, levels);
        }
    }

    /// The engine's tid of the task `observer` names `pid` (a positive pid), if the
    /// engine knows it; `pid` itself for an observer in the engine's namespace.
    pub fn global(&self, observer: i32, pid: i32) -> Option<i32> {
        match self.tasks.get(&observer).and_then(|l| l.last()) {
            None => Some(pid),
            Some(&(ns, _)) => self.by_pid.get(&(ns, pid)).copied(),
        }
    }

    /// The tid task `tid` sees as its own (`gettid()`).
    pub fn own(&self, tid: i32) -> i32 {
        self.tasks
            .get(&tid)
            .and_then(|l| l.last())
            .map_or(tid, |&(_, pid)| pid)
    }

    /// The namespace whose first process (pid 1) is `tgid`, if it is one.
    pub fn led_by(&self, tgid: i32) -> Option<u64> {
        match self.tasks.get(&tgid).and_then(|l| l.last()) {
            Some(&(ns, 1)) => Some(ns),
            _ => None,
        }
    }

    /// Whether task `tid` lives in namespace `ns` or one below it.
    pub fn within(&self, tid: i32, ns: u64) -> bool {
        self.tasks
            .get(&tid)
            .is_some_and(|l| l.iter().any(|&(n, _)| n == ns))
    }

    /// How many namespaces below the engine's task `tid` lives in.
    pub fn depth(&self, tid: i32) -> usize {
        self.tasks.get(&tid).map_or(0, Vec::len)
    }
}

/// Task `tid`'s pid namespaces below the engine's, outermost first, and its pid in each
/// (`NSpid` of `/proc/TID/status`; the namespaces' ids are their inode numbers, followed
/// up with `NS_GET_PARENT`). Empty when the task is in the engine's namespace.
pub fn read_levels(tid: i32) -> std::io::Result<(Vec<u64>, Vec<i32>)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
    let nspid: Vec<i32> = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if nspid.len() <= 1 {
        return Ok((Vec::new(), Vec::new()));
    }
    let depth = nspid.len() - 1;
    let mut namespaces = Vec::with_capacity(depth);
    let mut fd: std::os::fd::OwnedFd = std::fs::File::open(format!("/proc/{tid}/ns/pid"))?.into();
    use std::os::fd::{AsRawFd, FromRawFd};
    for i in 0..depth {
        // SAFETY: fstat into a zeroed stat of our own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open; st is writable.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        namespaces.push(st.st_ino);
        if i + 1 < depth {
            // NS_GET_PARENT: _IO(0xb7, 0x2).
            // SAFETY: plain ioctl; the fd it returns is owned below.
            let parent = unsafe { libc::ioctl(fd.as_raw_fd(), 0xb702) };
            if parent < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a new fd owned by nobody else.
            fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(parent) };
        }
    }
    namespaces.reverse();
    Ok((namespaces, nspid[1..].to_vec()))
}

/// Whether a signal came from this process's `tgkill` or `tkill` (the watchdog ending
/// a slice, the interrupter). A task in a pid namespace below ours sees no sender
/// (`si_pid` 0) for it, as for any sender above its namespace: the recorder refuses a
/// program's SIGSTOP sent that way, so that such a SIGSTOP is the engine's.
pub fn tkill_from_this_process(si: &libc::siginfo_t) -> bool {
    // SAFETY: si_pid is valid for SI_TKILL.
    si.si_code == libc::SI_TKILL && {
        let pid = unsafe { si.si_pid() };
        pid == std::process::id() as i32 || pid == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_translate_by_the_observers_namespace() {
        let mut ns = PidNamespaces::default();
        // 100 is the first process of namespace 7, 101 its child; 102 is the first of
        // namespace 9, nested in 7 (pid 3 in 7).
        ns.add(100, &[7], &[1]);
        ns.add(101, &[7], &[2]);
        ns.add(102, &[7, 9], &[3, 1]);
        assert_eq!(ns.global(100, 2), Some(101));
        assert_eq!(ns.global(100, 3), Some(102));
        assert_eq!(ns.global(102, 1), Some(102));
        assert_eq!(ns.global(102, 2), None);
        assert_eq!(ns.global(50, 101), Some(101));
        assert_eq!(ns.own(102), 1);
        assert_eq!(ns.own(50), 50);
        assert_eq!(ns.depth(102), 2);
        // A pid used again names the newest task.
        ns.add(103, &[7], &[2]);
        assert_eq!(ns.global(100, 2), Some(103));
    }
}
