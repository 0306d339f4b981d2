//! The program's own seccomp filters at record (see [`crate::program_filter`]): the
//! install call runs with a rewritten copy of the filter, and every call the program's
//! filters answer with something other than ALLOW stops the thread; the engine applies
//! the verdict there and writes it as an [`Event::Filtered`].

use std::sync::Arc;

use super::redirect::{SCRATCH_BASE, SLOTS, SLOT_SIZE};
use super::*;
use crate::program_filter::{
    self as pf, Verdict, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_MODE_FILTER, SECCOMP_SET_MODE_FILTER, SECCOMP_SET_MODE_STRICT,
};

/// A filter being installed by the thread's pending call.
pub(super) struct Installing {
    filter: pf::Filter,
    tsync: bool,
    /// The call's own `struct sock_fprog` pointer (rdx), put back at its exit.
    fprog: u64,
}

/// What a seccomp-setting call asks for: `(flags, fprog)` for a filter, or `None` for
/// any other call.
fn filter_request(sysno: u64, args: &[u64; 6]) -> Result<Option<(u64, u64)>> {
    let strict = || Error::Unsupported {
        what: "the program asks for seccomp strict mode (only read, write, exit and sigreturn)"
            .into(),
        hint: "strict mode cannot be recorded: the recorder's own seccomp filter is in place \
               already (the kernel would refuse it with EINVAL), and the recorder needs more \
               calls than those four"
            .into(),
    };
    match sysno {
        nr::SECCOMP => match args[0] {
            SECCOMP_SET_MODE_STRICT => Err(strict()),
            SECCOMP_SET_MODE_FILTER => Ok(Some((args[1], args[2]))),
            _ => Ok(None),
        },
        nr::PRCTL if args[0] == libc::PR_SET_SECCOMP as u64 => match args[1] {
            1 => Err(strict()),
            SECCOMP_MODE_FILTER => Ok(Some((0, args[2]))),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

impl Recorder {
    /// At the entry of a call that installs a filter of the program's: the call runs with
    /// a rewritten copy in the thread's scratch slot (see [`crate::program_filter`]). A
    /// filter that cannot be read is left to the kernel to refuse (EFAULT, EINVAL).
    pub(super) fn program_filter_entry(
        &mut self,
        cur: i32,
        sysno: u64,
        args: &[u64; 6],
    ) -> Result<()> {
        let Some((flags, fprog)) = filter_request(sysno, args)? else {
            return Ok(());
        };
        if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
            return Err(Error::Unsupported {
                what: "the program installs a seccomp filter with a user-notification listener"
                    .into(),
                hint: "seccomp user notification (a user-space supervisor of the program's \
                       calls) cannot be recorded"
                    .into(),
            });
        }
        if !self.seccomp {
            return Err(Error::Unsupported {
                what: "the program installs a seccomp filter of its own".into(),
                hint: "the recorder's own filter could not be installed on this system, and \
                       without it the program's filter cannot be followed"
                    .into(),
            });
        }
        let t = self.threads.get_mut(&cur).expect("current");
        let Ok(head) = t.task.read_mem(fprog, 16) else {
            return Ok(());
        };
        let len = u16::from_le_bytes([head[0], head[1]]) as usize;
        let ptr = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let Ok(bytes) = t.task.read_mem(ptr, len * 8) else {
            return Ok(());
        };
        let prog = pf::parse(&bytes);
        let rewritten = match pf::rewrite(&prog) {
            Ok(r) => r,
            Err(pf::Refusal::Invalid) => return Ok(()),
            Err(pf::Refusal::Unsupported(why)) => {
                return Err(Error::Unsupported {
                    what: format!(
                        "the program installs a seccomp filter that cannot be recorded: {why}"
                    ),
                    hint: "record the program without its seccomp sandbox".into(),
                })
            }
        };
        let base = SCRATCH_BASE + (t.slot % SLOTS) * SLOT_SIZE;
        let mut data = pf::to_bytes(&rewritten);
        let new_fprog = base + data.len() as u64;
        data.extend_from_slice(&(rewritten.len() as u16).to_le_bytes());
        data.extend_from_slice(&[0u8; 6]);
        data.extend_from_slice(&base.to_le_bytes());
        t.task.write_mem(base, &data)?;
        let mut regs = t.task.regs()?;
        regs.rdx = new_fprog;
        t.task.set_regs(&regs)?;
        t.installing = Some(Installing {
            filter: Arc::new(prog),
            tsync: flags & SECCOMP_FILTER_FLAG_TSYNC != 0,
            fprog,
        });
        Ok(())
    }

    /// At the exit of a call that installed a filter: the call's register put back and,
    /// if the kernel took it, the filter added to the thread's chain (with `TSYNC`, to
    /// every thread of its process: the kernel has made them all share the caller's),
    /// and their syscall buffering stopped (the memory writes, for the call's event).
    pub(super) fn program_filter_exit(
        &mut self,
        cur: i32,
        ret: i64,
    ) -> Result<Vec<crate::trace::MemWrite>> {
        let t = self.threads.get_mut(&cur).expect("current");
        let Some(inst) = t.installing.take() else {
            return Ok(Vec::new());
        };
        let mut regs = t.task.regs()?;
        regs.rdx = inst.fprog;
        t.task.set_regs(&regs)?;
        if ret != 0 {
            return Ok(Vec::new());
        }
        t.filters.0.push(inst.filter);
        tracing::debug!(
            "thread {cur}: the program installed a seccomp filter ({} in effect)",
            t.filters.0.len()
        );
        let mut synced = vec![cur];
        if inst.tsync {
            let (tgid, chain) = (t.tgid, t.filters.clone());
            for (tid, x) in self.threads.iter_mut().filter(|(_, x)| x.tgid == tgid) {
                x.filters = chain.clone();
                if *tid != cur {
                    synced.push(*tid);
                }
            }
        }
        self.stop_buffering(cur, &synced)
    }

    /// At a call's entry, for a thread under filters of the program's: `None` when they
    /// let the call run; else what the thread does next, the verdict applied. At a
    /// `PTRACE_SYSCALL` entry stop (not the filter's) nothing is applied: the kernel
    /// runs the filters after it, and their stop follows.
    pub(super) fn program_verdict(
        &mut self,
        cur: i32,
        sysno: u64,
        args: [u64; 6],
        at_seccomp: bool,
    ) -> Result<Option<Next>> {
        let tgid = self.threads[&cur].tgid;
        let live = self.members(tgid).len();
        let t = self.threads.get_mut(&cur).expect("current");
        let regs = t.task.regs()?;
        let Some(ret) = t.filters.verdict(sysno, regs.rip, &args) else {
            return Err(Error::Unsupported {
                what: "the program's seccomp filter could not be evaluated by the recorder".into(),
                hint: "report this as a bug".into(),
            });
        };
        let verdict = Verdict::from_ret(ret, live);
        if verdict == Verdict::Allow || self.library_buffer_call(cur, sysno, &args, regs.rip) {
            return Ok(None);
        }
        let t = self.threads.get_mut(&cur).expect("current");
        if !at_seccomp {
            return Ok(Some(Next::Continue));
        }
        let name = syscalls::name_of(sysno);
        let buffered = regs.rip == crate::syscallbuf::abi::ENTRY_IP;
        tracing::debug!("thread {cur}: {name} answered {ret:#x} by the program's seccomp filter");
        match verdict {
            Verdict::Allow => unreachable!(),
            Verdict::Notify => {
                return Err(Error::Unsupported {
                    what: format!("the program's seccomp filter sends {name} to a user-space supervisor (SECCOMP_RET_USER_NOTIF)"),
                    hint: "seccomp user notification cannot be recorded".into(),
                })
            }
            Verdict::KillThread(_) => {
                return Err(Error::Unsupported {
                    what: format!("the program's seccomp filter kills one thread of several at {name} (SECCOMP_RET_KILL_THREAD)"),
                    hint: "a thread killed alone by seccomp cannot be recorded yet; SECCOMP_RET_KILL_PROCESS can".into(),
                })
            }
            Verdict::Fail(r) if buffered => {
                // The library records the result in the thread's buffer, like any.
                t.task.set_orig_rax(u64::MAX)?;
                t.task.set_rax(r as u64)?;
                return Ok(Some(Next::Continue));
            }
            _ if buffered => {
                return Err(Error::Unsupported {
                    what: format!("the program's seccomp filter raises SIGSYS at a buffered {name}"),
                    hint: "record with --no-syscallbuf".into(),
                })
            }
            _ => {}
        }
        if t.requeued.is_some() {
            return Err(Error::Unsupported {
                what: format!("the program's seccomp filter raises SIGSYS at {name} while another signal is being delivered"),
                hint: "report this as a bug".into(),
            });
        }
        self.events.push(&Event::Filtered {
            tid: cur,
            nr: sysno,
            args,
            rip: regs.rip,
            verdict: ret,
        })?;
        let t = self.threads.get_mut(&cur).expect("current");
        t.task.set_orig_rax(u64::MAX)?;
        let (kill, errno) = match verdict {
            Verdict::Fail(r) => {
                t.task.set_rax(r as u64)?;
                return Ok(Some(Next::Continue));
            }
            Verdict::Trap(e) => (false, e),
            Verdict::KillProcess(e) => (true, e),
            _ => unreachable!(),
        };
        // The call is rolled back (rax holds its number again) and SIGSYS forced.
        t.task.set_rax(sysno)?;
        pf::force_default_sigsys(&mut t.task, kill)?;
        let si = pf::sigsys_info(sysno, regs.rip, errno);
        let mut queued = si;
        queued.si_code = libc::SI_QUEUE;
        // SAFETY: plain syscall to our own tracee with a siginfo we own.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                t.tgid,
                cur,
                libc::SIGSYS,
                &queued as *const libc::siginfo_t,
            )
        };
        if r != 0 {
            return Err(Error::TaskGone { pid: cur });
        }
        // Delivered with the kernel's siginfo at its stop (see `on_signal`).
        t.requeued = Some(si);
        Ok(Some(Next::Continue))
    }

    /// Whether the call is the preload library mapping or unmapping a thread's syscall
    /// buffer: like the engine's own calls, it does not exist natively, so the
    /// program's filters (an allow-list that refuses mmap) must not act on it.
    fn library_buffer_call(&self, cur: i32, sysno: u64, args: &[u64; 6], rip: u64) -> bool {
        if !self.syscallbuf
            || !matches!(sysno, nr::MMAP | nr::MUNMAP)
            || args[1] != crate::syscallbuf::abi::BUFFER_SIZE
        {
            return false;
        }
        buffers::in_library(cur, rip)
    }

    /// `prctl(PR_GET_SECCOMP)`'s answer when the thread has filters of its own.
    pub(super) fn own_seccomp_mode(&self, cur: i32) -> Option<i64> {
        let t = self.threads.get(&cur)?;
        (!t.filters.is_empty()).then_some(SECCOMP_MODE_FILTER as i64)
    }
}
