//! The engine's side of syscall buffering (see `crate::syscallbuf`): threads' buffers
//! registered, read at every stop of their thread, written into the trace as ordinary
//! `Syscall` events in the order the calls were made; the library's registration and
//! flush calls answered with budgets from the seeded scheduler.
//!
//! Every stop of a thread (a traced call, a signal, a preemption, an event) comes after
//! the buffered calls it made since its previous stop and before anything that stop
//! records, so flushing first keeps the trace in program order. A preemption that lands
//! between a buffered call and the end of its record is first stepped on to the record's
//! end ([`Recorder::leave_buffered_call`]), so a call that ran is never written after the
//! preemption point.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::syscallbuf::{self, abi};

/// A registered buffer: where it is and how many record bytes the engine has written
/// into the trace.
#[derive(Debug, Clone)]
pub(super) struct Buffer {
    addr: u64,
    consumed: u64,
    /// Its `H_NO_WRITES` word is set (see [`Recorder::mark_writes_traced`]).
    no_writes: bool,
}

/// A buffer as threads hold it: a vfork child runs on its parent's memory and so shares
/// its parent's buffer; a fork child gets a copy.
pub(super) type SharedBuffer = Rc<RefCell<Buffer>>;

impl Buffer {
    /// Where it is in the program's memory.
    pub(super) fn addr(&self) -> u64 {
        self.addr
    }
}

const HEADER: u64 = abi::HEADER_WORDS * 8;
const CAPACITY: u64 = abi::BUFFER_SIZE - HEADER;
/// `PERF_EVENT_IOC_ENABLE` (`_IO('$', 0)`), the library's arming of the desched event.
const PERF_IOC_ENABLE: u64 = 0x2400;
/// Single steps allowed to finish a buffered call's record before a preemption.
const MAX_LEAVE_STEPS: u32 = 100_000;

impl Recorder {
    /// Writes the records `cur` completed since its last stop into the trace.
    pub(super) fn flush_buffer(&mut self, cur: i32) -> Result<()> {
        let Some(t) = self.threads.get_mut(&cur) else {
            return Ok(());
        };
        let Some(sb) = t.sb.clone() else {
            return Ok(());
        };
        let files = t.files;
        let (addr, consumed) = {
            let b = sb.borrow();
            (b.addr, b.consumed)
        };
        let cursor = match t.task.read_mem(addr + abi::H_CURSOR * 8, 8) {
            Ok(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => return Err(e),
        };
        if cursor == consumed {
            return Ok(());
        }
        if cursor < consumed || cursor > CAPACITY {
            return Err(Error::Unsupported {
                what: format!(
                    "thread {cur}'s syscall buffer says {cursor} bytes of records (the recorder has read {consumed})"
                ),
                hint: "the program overwrote the preload library's buffer; record with --no-syscallbuf".into(),
            });
        }
        let bytes = t
            .task
            .read_mem(addr + HEADER + consumed, (cursor - consumed) as usize)?;
        let records = syscallbuf::parse_records(&bytes)?;
        sb.borrow_mut().consumed = cursor;
        for r in records {
            if r.ret > 0 && syscalls::futex_wake(r.nr, &r.args) {
                // The library makes its flush call right after (see `Point::Wake`).
                if let Some(t) = self.threads.get_mut(&cur) {
                    t.buffered_wake = true;
                }
            }
            if r.ret > 0 {
                if let Some(kind) = OutputFds::write_kind(r.nr) {
                    self.buffered_write(cur, files, kind, &r)?;
                }
            }
            self.events.push(&Event::Syscall(r.event(cur)))?;
        }
        Ok(())
    }

    /// What the engine does at a traced write's exit, for a buffered one: the copy of
    /// stdout/stderr. Writes the engine must see as they happen (into a file mapped
    /// `MAP_SHARED`, into process memory) are never buffered once such a file exists
    /// ([`Recorder::mark_writes_traced`]); one made before the library was told (another
    /// process's, in the window until its next traced call) stops the recording.
    fn buffered_write(
        &mut self,
        cur: i32,
        files: i32,
        _kind: crate::output::WriteKind,
        r: &syscallbuf::Record,
    ) -> Result<()> {
        let fd = r.args[0];
        if (self.mem_file_opened && super::self_memory::is_mem_file(cur, fd))
            || self.shared.is_mapped(cur, fd)
        {
            return Err(Error::Unsupported {
                what: format!(
                    "thread {cur} made a buffered write while a file is mapped MAP_SHARED or a /proc/PID/mem file was opened"
                ),
                hint: "record with --no-syscallbuf".into(),
            });
        }
        if let Some(stream) = self.fd_tables.stream(files, r.args[0]) {
            let n = (r.ret as usize).min(r.input.len());
            let (f, name) = match stream {
                Stream::Stdout => (&mut self.stdout, "stdout"),
                Stream::Stderr => (&mut self.stderr, "stderr"),
            };
            if !self.fault.is_set() {
                if let Err(e) = f.write_all(&r.input[..n]) {
                    self.fault.note(Error::io(self.trace.path.join(name), e));
                }
            }
        }
        Ok(())
    }

    /// The engine's answer to the library's registration and flush calls, or `None` for
    /// other calls. Registration without buffering on gets `-ENOSYS` (the library then
    /// makes every call traced).
    pub(super) fn answer_buffer_call(
        &mut self,
        cur: i32,
        sysno: u64,
        args: &[u64; 6],
    ) -> Option<i64> {
        match sysno {
            nr::CHAOS_SYSCALLBUF_INIT => {
                // A thread under seccomp filters of the program's makes every call
                // traced (see `stop_buffering`).
                let ok = self.syscallbuf
                    && self.threads[&cur].filters.is_empty()
                    && !self.shared_tls.contains(&cur)
                    && args[0] % 4096 == 0
                    && args[0] != 0
                    && args[1] == abi::BUFFER_SIZE;
                if !ok {
                    return Some(-(libc::ENOSYS as i64));
                }
                let t = self.threads.get_mut(&cur).expect("current");
                if args[2] != 0 {
                    self.fd_gens.insert(t.tgid, args[2]);
                }
                t.sb = Some(Rc::new(RefCell::new(Buffer {
                    addr: args[0],
                    consumed: 0,
                    no_writes: false,
                })));
                Some(self.sched.syscallbuf_budget() as i64)
            }
            nr::CHAOS_SYSCALLBUF_FLUSH => {
                let t = self.threads.get_mut(&cur).expect("current");
                match &t.sb {
                    // Read at this stop already; the library starts again at the front
                    // (the engine empties the buffer at the call's exit,
                    // `empty_flushed_buffer`).
                    Some(sb) if sb.borrow().addr == args[0] => {
                        if !t.filters.is_empty() {
                            // No more buffering in this thread (see `stop_buffering`).
                            return Some(-(libc::ENOSYS as i64));
                        }
                        Some(self.sched.syscallbuf_budget() as i64)
                    }
                    _ => Some(-(libc::ENOSYS as i64)),
                }
            }
            _ => None,
        }
    }

    /// At the exit of `cur`'s flush call (`addr`: its buffer): the records were written
    /// into the trace at its entry, so the buffer is emptied now, in the same stop. The
    /// library empties it too once the call returned, but a held signal is delivered
    /// right at this exit, and its stop would read the old records again as new ones
    /// (with the engine's count at 0). The write is returned for the call's event, so
    /// replay makes it too.
    pub(super) fn empty_flushed_buffer(
        &mut self,
        cur: i32,
        addr: u64,
    ) -> Result<Vec<crate::trace::MemWrite>> {
        let Some(t) = self.threads.get_mut(&cur) else {
            return Ok(Vec::new());
        };
        let Some(sb) = t.sb.clone().filter(|sb| sb.borrow().addr == addr) else {
            return Ok(Vec::new());
        };
        let cursor = addr + abi::H_CURSOR * 8;
        let zero = 0u64.to_le_bytes().to_vec();
        t.task.write_mem(cursor, &zero)?;
        sb.borrow_mut().consumed = 0;
        Ok(vec![crate::trace::MemWrite {
            addr: cursor,
            data: zero,
        }])
    }

    /// Threads `tids` now run under seccomp filters of the program's: their buffers'
    /// budget (`H_CALLS_LEFT`) is set to 0, so that the library's next buffered call in
    /// each flushes first, gets no new budget and makes every call traced from then on,
    /// where the filters' verdicts apply at an ordinary stop (and the library's own
    /// calls, such as its fstat of an fd, which do not exist natively, stop too). The
    /// writes are made through `cur` and returned for its event, so replay makes them
    /// too. A thread stopped inside the library (TSYNC reached it there) is left to
    /// its next flush: its budget may be counting down.
    pub(super) fn stop_buffering(
        &mut self,
        cur: i32,
        tids: &[i32],
    ) -> Result<Vec<crate::trace::MemWrite>> {
        let mut writes = Vec::new();
        for tid in tids {
            let Some(t) = self.threads.get(tid) else {
                continue;
            };
            let Some(sb) = t.sb.clone() else {
                continue;
            };
            if *tid != cur {
                // A thread blocked in a call is in a traced one, which leaves the budget
                // alone; a stopped one may be between the library's reservation and
                // its count.
                let inside = match t.task.regs() {
                    Ok(r) => r.rip == abi::ENTRY_IP || in_library(*tid, r.rip),
                    Err(_) => t.state != Where::Blocked,
                };
                if inside {
                    continue;
                }
            }
            let w = crate::trace::MemWrite {
                addr: sb.borrow().addr + abi::H_CALLS_LEFT * 8,
                data: 0u64.to_le_bytes().to_vec(),
            };
            if writes.contains(&w) {
                continue; // a buffer shared with a vfork child
            }
            let task = &mut self.threads.get_mut(&cur).expect("current").task;
            task.write_mem(w.addr, &w.data)?;
            writes.push(w);
        }
        Ok(writes)
    }

    /// Writes must be seen as they happen once a file is mapped `MAP_SHARED` or a
    /// process memory file was opened: the `H_NO_WRITES` word of every buffer of `cur`'s
    /// process is set (the library then makes writes traced). Returns those memory
    /// writes, for the event of the call at whose exit this happens, so replay makes them
    /// too. Called at the exit of every traced call replay emulates (its event's memory
    /// writes are injected at replay) and of the mmap that maps a file shared (replay
    /// makes an executed call's writes at its exit too); other processes' buffers are
    /// marked at their own next such call (a buffered write into such a file in between stops the
    /// recording, see [`Recorder::buffered_write`]).
    pub(super) fn mark_writes_traced(&mut self, cur: i32) -> Result<Vec<crate::trace::MemWrite>> {
        if !self.syscallbuf || !(self.mem_file_opened || self.shared.any()) {
            return Ok(Vec::new());
        }
        let tgid = self.threads[&cur].tgid;
        let unmarked: Vec<SharedBuffer> = self
            .threads
            .values()
            .filter(|t| t.tgid == tgid)
            .filter_map(|t| t.sb.clone())
            .filter(|sb| !sb.borrow().no_writes)
            .collect();
        let mut writes = Vec::new();
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        for sb in unmarked {
            let mut b = sb.borrow_mut();
            if b.no_writes {
                continue; // shared by two threads of the list
            }
            let w = crate::trace::MemWrite {
                addr: b.addr + abi::H_NO_WRITES * 8,
                data: 1u64.to_le_bytes().to_vec(),
            };
            task.write_mem(w.addr, &w.data)?;
            writes.push(w);
            b.no_writes = true;
        }
        Ok(writes)
    }

    /// After a call that may change the fd table (`changes_fds`): a new generation in
    /// the process's fd-cache word, returned as a memory write for the call's event.
    pub(super) fn bump_fd_gen(
        &mut self,
        cur: i32,
        sysno: u64,
    ) -> Result<Option<crate::trace::MemWrite>> {
        if !self.syscallbuf || !syscalls::lookup(sysno).is_some_and(|d| d.changes_fds) {
            return Ok(None);
        }
        let Some(&addr) = self
            .threads
            .get(&cur)
            .and_then(|t| self.fd_gens.get(&t.tgid))
        else {
            return Ok(None);
        };
        self.fd_gen_counter += 1;
        let w = crate::trace::MemWrite {
            addr,
            data: self.fd_gen_counter.to_le_bytes().to_vec(),
        };
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        task.write_mem(w.addr, &w.data)?;
        Ok(Some(w))
    }

    /// A new task: a vfork child shares its parent's buffer (same memory, the parent
    /// waits), a forked process gets a copy (a copy of the memory), a new thread
    /// registers its own. A process sharing its parent's memory without vfork
    /// (`CLONE_VM`) gets none: with its own thread-local area it registers its own,
    /// without one it shares its parent's and both are retired at the clone's exit
    /// ([`Recorder::retire_shared_tls_buffer`]).
    pub(super) fn inherit_buffer(&mut self, parent: i32, child: i32, process: bool, vfork: bool) {
        let shares_memory = self
            .threads
            .get(&parent)
            .and_then(|t| t.pending.as_ref())
            .and_then(pending_clone_flags)
            .is_some_and(|f| f & libc::CLONE_VM as u64 != 0);
        let sb = match (
            process,
            vfork,
            shares_memory,
            self.threads.get(&parent).and_then(|t| t.sb.clone()),
        ) {
            (true, true, _, Some(sb)) => Some(sb),
            (true, false, false, Some(sb)) => Some(Rc::new(RefCell::new(sb.borrow().clone()))),
            _ => None,
        };
        if let Some(t) = self.threads.get_mut(&child) {
            t.sb = sb;
        }
        if process {
            let parent_tgid = self.threads.get(&parent).map(|t| t.tgid);
            if let Some(&addr) = parent_tgid.and_then(|p| self.fd_gens.get(&p)) {
                self.fd_gens.insert(child, addr);
            }
        }
    }

    /// At the exit of a clone that made `child` run on `cur`'s memory with `cur`'s
    /// thread-local area (`CLONE_VM` without `CLONE_SETTLS` or `CLONE_VFORK`, as rr's
    /// `clone_untraced` does): both tasks now share the library's per-thread state
    /// (which buffer, whether buffering is on), so neither may buffer. `cur`'s buffer,
    /// read at the clone's entry, is retired: its calls-left word becomes 0, so the
    /// library's next buffered call in either task makes the flush call, which the
    /// engine answers `-ENOSYS` (no buffer of the caller's), and the library then
    /// traces everything (shared state, so in both). A registration by either is
    /// answered `-ENOSYS` too. Returns the memory write for the clone's event, so
    /// replay makes it at the same point; replay then checks every later call, the
    /// library's flush call included, against the trace.
    pub(super) fn retire_shared_tls_buffer(
        &mut self,
        cur: i32,
        flags: u64,
        child: i32,
    ) -> Result<Vec<crate::trace::MemWrite>> {
        let shares_tls = flags & libc::CLONE_VM as u64 != 0
            && flags & (libc::CLONE_SETTLS | libc::CLONE_VFORK) as u64 == 0;
        if !self.syscallbuf || !shares_tls {
            return Ok(Vec::new());
        }
        self.shared_tls.insert(cur);
        self.shared_tls.insert(child);
        if let Some(t) = self.threads.get_mut(&child) {
            t.sb = None;
        }
        let t = self.threads.get_mut(&cur).expect("current");
        let Some(sb) = t.sb.take() else {
            return Ok(Vec::new());
        };
        let w = crate::trace::MemWrite {
            addr: sb.borrow().addr + abi::H_CALLS_LEFT * 8,
            data: 0u64.to_le_bytes().to_vec(),
        };
        t.task.write_mem(w.addr, &w.data)?;
        Ok(vec![w])
    }

    /// An exec replaced the image of process `tgid`: its buffers are gone.
    /// Its threads that shared a thread-local area have a new one each.
    pub(super) fn forget_buffers(&mut self, tgid: i32) {
        self.fd_gens.remove(&tgid);
        for (tid, t) in self.threads.iter_mut().filter(|(_, t)| t.tgid == tgid) {
            t.sb = None;
            // Its fd in the program was close-on-exec.
            t.desched = None;
            self.shared_tls.remove(tid);
        }
    }

    /// Before a preemption point is taken: a thread stopped after a buffered call ran but
    /// before its record was complete is single-stepped to the record's end (or, before
    /// the call, to the entry), so the call is written before the point. Returns a signal
    /// that stopped the stepping, which the caller handles instead of the preemption.
    pub(super) fn leave_buffered_call(&mut self, cur: i32) -> Result<Option<i32>> {
        let t = self.threads.get_mut(&cur).expect("current");
        let Some(sb) = t.sb.clone() else {
            return Ok(None);
        };
        let in_call_at = sb.borrow().addr + abi::H_IN_CALL * 8;
        let mut arm_at_entry = false;
        for _ in 0..MAX_LEAVE_STEPS {
            let in_call =
                u64::from_le_bytes(t.task.read_mem(in_call_at, 8)?.try_into().expect("8 bytes"));
            let mut regs = t.task.regs()?;
            if in_call == 0 || regs.rip == abi::ENTRY {
                if in_call != 0 {
                    // The call is still to come: armed as the library would have (it
                    // armed it itself, unless a step's signal disarmed it since).
                    if let Some(d) = t.desched.as_mut() {
                        if arm_at_entry || d.disarmed_by_a_step() {
                            d.set_armed(true);
                        }
                    }
                }
                return Ok(None);
            }
            if regs.rip == abi::QUIET_ENTRY {
                // The desched event's arming or disarming: done here rather than stepped
                // (stepped, the `syscall` would leave the trap flag in r11, which the
                // replay's code there does not; replay must find the same registers at
                // the preemption point). The registers as that code leaves them.
                let enable = regs.rsi == PERF_IOC_ENABLE;
                arm_at_entry = enable;
                if !enable {
                    if let Some(d) = t.desched.as_mut() {
                        d.set_armed(false);
                    }
                }
                regs.rip = abi::QUIET_IP;
                regs.rax = 0;
                regs.rcx = abi::QUIET_IP;
                regs.r11 = regs.eflags;
                t.task.set_regs(&regs)?;
                continue;
            }
            t.task.resume(Resume::Step, 0)?;
            match t.task.wait()? {
                Stop::Signal(libc::SIGTRAP) => {}
                Stop::Signal(libc::SIGSTOP)
                    if t.desched.is_some() && t.task.siginfo().is_ok_and(|si| {
                        t.desched.as_mut().is_some_and(|d| d.swallow(&si))
                    }) => {}
                Stop::Signal(sig) => return Ok(Some(sig)),
                Stop::Exited(_) | Stop::Killed(_) => return Err(Error::TaskGone { pid: cur }),
                other => {
                    return Err(Error::Unsupported {
                        what: format!(
                            "task {cur} stopped with {other:?} while the recorder stepped it out of a buffered call"
                        ),
                        hint: "record with --no-syscallbuf; report this as a bug".into(),
                    })
                }
            }
        }
        Err(Error::Unsupported {
            what: format!(
                "thread {cur} did not finish a buffered call's record in {MAX_LEAVE_STEPS} steps"
            ),
            hint: "record with --no-syscallbuf; report this as a bug".into(),
        })
    }
}

/// The flags of a pending clone or clone3 (clone3's were read at its entry).
pub(super) fn pending_clone_flags(p: &Pending) -> Option<u64> {
    match p.nr {
        nr::CLONE => Some(p.args[0]),
        nr::CLONE3 => p.entry.extra.first().copied(),
        _ => None,
    }
}

/// Whether `rip` of thread `tid` is in the preload library's code.
pub(super) fn in_library(tid: i32, rip: u64) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{tid}/maps")) else {
        return false;
    };
    maps.lines().any(|l| {
        let Some((range, rest)) = l.split_once(' ') else {
            return false;
        };
        let Some((a, b)) = range.split_once('-') else {
            return false;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            return false;
        };
        (a..b).contains(&rip) && rest.contains("libchaos_syscallbuf")
    })
}
