//! The only code that issues ptrace requests.
//!
//! A [`Task`] is one traced thread, identified by its tid. Every request names the
//! operation, so that a failure says which call failed for which task; `ESRCH` becomes
//! [`Error::TaskGone`], which callers treat as "this task exited", never as a recorder
//! failure. All requests for a task must come from the OS thread that traces it (the
//! kernel ties a tracee to the tracer *thread*); the engine runs on one thread.

use std::fs::File;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use crate::errors::{Error, Result};

/// The general-purpose registers of an x86_64 task (`struct user_regs_struct`).
pub type Regs = libc::user_regs_struct;

/// A thread's extended register state, as [`Task::fpu_state`] read it.
#[derive(Debug, Clone)]
pub enum FpuState {
    /// The XSAVE area: legacy FXSAVE region (512 bytes), XSAVE header, extended
    /// components (YMM upper halves at byte 576).
    Xsave(Vec<u8>),
    /// The legacy FXSAVE area only (no XSAVE regset).
    Fxsave(Vec<u8>),
}

/// How to resume a stopped task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Run until the next syscall entry or exit (`PTRACE_SYSCALL`).
    Syscall,
    /// Run until the next syscall entry, which will not be executed (`PTRACE_SYSEMU`).
    Sysemu,
    /// Run until a signal or event (`PTRACE_CONT`).
    Cont,
    /// Run one instruction (`PTRACE_SINGLESTEP`); with a signal to deliver, stop at the
    /// first instruction of its handler, the signal frame written.
    Step,
}

/// What `PTRACE_GET_SYSCALL_INFO` says about a syscall stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallStop {
    /// Entry: number and arguments.
    Entry {
        /// Syscall number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// Exit: the return value.
    Exit {
        /// Return value (negative errno on failure).
        ret: i64,
        /// Where the task resumes (just after the `syscall` instruction).
        rip: u64,
    },
    /// Not a syscall stop.
    None,
}

/// Why a task stopped or ended, as reported by `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A syscall entry or exit stop (`SIGTRAP | 0x80`).
    Syscall,
    /// A signal-delivery stop.
    Signal(i32),
    /// A ptrace event stop (`PTRACE_EVENT_*`).
    Event(i32),
    /// A group stop or other stop we do not distinguish.
    Other(i32),
    /// The task exited with this code.
    Exited(i32),
    /// The task was killed by this signal.
    Killed(i32),
}

fn check(pid: i32, op: &'static str, r: libc::c_long) -> Result<libc::c_long> {
    if r == -1 {
        let e = Errno::last();
        if e == Errno::ESRCH {
            return Err(Error::TaskGone { pid });
        }
        return Err(Error::Ptrace { pid, op, source: e });
    }
    Ok(r)
}

/// `struct ptrace_syscall_info` as the kernel lays it out (x86_64).
#[repr(C)]
#[derive(Default)]
struct RawSyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    // entry: nr, args[6]; exit: rval, is_error
    data: [u64; 7],
}

/// The legacy vsyscall page (`[vsyscall]`), whose three entries (gettimeofday, time,
/// getcpu) the kernel emulates at the page fault of a call there: the seccomp filter
/// sees such a call (the instruction pointer is the entry's address), but there is no
/// exit stop after it.
const VSYSCALL_PAGE: std::ops::Range<u64> = 0xffff_ffff_ff60_0000..0xffff_ffff_ff60_1000;

fn in_vsyscall_page(ip: u64) -> bool {
    VSYSCALL_PAGE.contains(&ip)
}

/// One traced thread.
#[derive(Debug)]
pub struct Task {
    /// Thread id.
    pub tid: i32,
    mem: Option<File>,
    last_resume: std::cell::Cell<Resume>,
    /// The last string [`Task::read_cstr`] read (address, bytes, whether its NUL was
    /// seen), kept while the task stays stopped: a path is read for the lookup the
    /// engine may answer and again for the input hash.
    last_cstr: std::cell::RefCell<Option<(u64, Vec<u8>, bool)>>,
    /// What [`Task::syscall_stop`] said at the current stop, until the task resumes or
    /// its registers change (replay asks once to skip untraced calls, then again).
    last_syscall_stop: std::cell::Cell<Option<SyscallStop>>,
}

impl Task {
    /// A handle on an already traced thread.
    pub fn new(tid: i32) -> Self {
        Task {
            tid,
            mem: None,
            last_resume: std::cell::Cell::new(Resume::Cont),
            last_cstr: std::cell::RefCell::new(None),
            last_syscall_stop: std::cell::Cell::new(None),
        }
    }

    fn raw(
        &self,
        req: libc::c_uint,
        op: &'static str,
        addr: usize,
        data: usize,
    ) -> Result<libc::c_long> {
        // SAFETY: ptrace with integer/pointer arguments chosen by the caller; the kernel
        // validates them and any pointer we pass points to a live local of the right size.
        let r = unsafe {
            libc::ptrace(
                req,
                self.tid,
                addr as *mut libc::c_void,
                data as *mut libc::c_void,
            )
        };
        check(self.tid, op, r)
    }

    /// Sets the ptrace options.
    pub fn set_options(&self, options: libc::c_int) -> Result<()> {
        self.raw(
            libc::PTRACE_SETOPTIONS,
            "PTRACE_SETOPTIONS",
            0,
            options as usize,
        )?;
        Ok(())
    }

    /// Reads the general registers.
    pub fn regs(&self) -> Result<Regs> {
        // SAFETY: user_regs_struct is plain data; all-zero is valid.
        let mut regs: Regs = unsafe { std::mem::zeroed() };
        self.raw(
            libc::PTRACE_GETREGS,
            "PTRACE_GETREGS",
            0,
            &mut regs as *mut Regs as usize,
        )?;
        Ok(regs)
    }

    /// Writes the general registers.
    pub fn set_regs(&self, regs: &Regs) -> Result<()> {
        self.last_syscall_stop.set(None);
        self.raw(
            libc::PTRACE_SETREGS,
            "PTRACE_SETREGS",
            0,
            regs as *const Regs as usize,
        )?;
        Ok(())
    }

    /// The extended register state: the XSAVE area (`NT_X86_XSTATE`) when the kernel
    /// offers it, else the legacy FXSAVE area (`PTRACE_GETFPREGS`).
    pub fn fpu_state(&self) -> Result<FpuState> {
        const NT_X86_XSTATE: usize = 0x202;
        let mut buf = vec![0u8; 4096];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        if self
            .raw(
                libc::PTRACE_GETREGSET,
                "PTRACE_GETREGSET",
                NT_X86_XSTATE,
                &mut iov as *mut libc::iovec as usize,
            )
            .is_ok()
        {
            buf.truncate(iov.iov_len.min(4096));
            return Ok(FpuState::Xsave(buf));
        }
        // SAFETY: user_fpregs_struct is plain data; all-zero is valid.
        let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
        self.raw(
            libc::PTRACE_GETFPREGS,
            "PTRACE_GETFPREGS",
            0,
            &mut fp as *mut _ as usize,
        )?;
        // SAFETY: plain data, read as the bytes it is made of.
        let bytes = unsafe {
            std::slice::from_raw_parts(&fp as *const _ as *const u8, std::mem::size_of_val(&fp))
        };
        Ok(FpuState::Fxsave(bytes.to_vec()))
    }

    /// Sets the extended register state read by [`Task::fpu_state`] (a checkpoint's
    /// thread gets its original's).
    pub fn set_fpu_state(&self, state: &FpuState) -> Result<()> {
        const NT_X86_XSTATE: usize = 0x202;
        match state {
            FpuState::Xsave(bytes) => {
                let mut buf = bytes.clone();
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                self.raw(
                    libc::PTRACE_SETREGSET,
                    "PTRACE_SETREGSET",
                    NT_X86_XSTATE,
                    &mut iov as *mut libc::iovec as usize,
                )?;
            }
            FpuState::Fxsave(bytes) => {
                // SAFETY: user_fpregs_struct is plain data; all-zero is valid.
                let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
                let n = bytes.len().min(std::mem::size_of_val(&fp));
                // SAFETY: copies at most the struct's size into it, as plain bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut fp as *mut _ as *mut u8, n)
                };
                self.raw(
                    libc::PTRACE_SETFPREGS,
                    "PTRACE_SETFPREGS",
                    0,
                    &fp as *const _ as usize,
                )?;
            }
        }
        Ok(())
    }

    /// Reads one word of the user area (a debug register, by its byte offset). The
    /// debug registers never hold -1, so PEEKUSER's -1 error return is unambiguous.
    pub fn peek_user(&self, offset: usize) -> Result<u64> {
        Errno::clear();
        Ok(self.raw(libc::PTRACE_PEEKUSER, "PTRACE_PEEKUSER", offset, 0)? as u64)
    }

    /// Writes one word of the user area (a register, by its byte offset).
    pub fn poke_user(&self, offset: usize, value: u64) -> Result<()> {
        self.last_syscall_stop.set(None);
        self.raw(
            libc::PTRACE_POKEUSER,
            "PTRACE_POKEUSER",
            offset,
            value as usize,
        )?;
        Ok(())
    }

    /// Sets `rax`, the syscall return value.
    pub fn set_rax(&self, value: u64) -> Result<()> {
        self.poke_user(10 * 8, value)
    }

    /// Sets `orig_rax`, the syscall number seen at an entry stop (-1 skips the call).
    pub fn set_orig_rax(&self, value: u64) -> Result<()> {
        self.poke_user(15 * 8, value)
    }

    /// Reads the siginfo of a signal-delivery stop.
    pub fn siginfo(&self) -> Result<libc::siginfo_t> {
        // SAFETY: siginfo_t is plain data.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        self.raw(
            libc::PTRACE_GETSIGINFO,
            "PTRACE_GETSIGINFO",
            0,
            &mut si as *mut _ as usize,
        )?;
        Ok(si)
    }

    /// The thread's blocked-signal mask (`PTRACE_GETSIGMASK`), bit `n - 1` for signal n.
    pub fn sigmask(&self) -> Result<u64> {
        let mut mask: u64 = 0;
        self.raw(
            libc::PTRACE_GETSIGMASK,
            "PTRACE_GETSIGMASK",
            8,
            &mut mask as *mut u64 as usize,
        )?;
        Ok(mask)
    }

    /// Sets the thread's blocked-signal mask (`PTRACE_SETSIGMASK`).
    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        self.raw(
            libc::PTRACE_SETSIGMASK,
            "PTRACE_SETSIGMASK",
            8,
            &mask as *const u64 as usize,
        )?;
        Ok(())
    }

    /// Replaces the siginfo of a signal-delivery stop.
    pub fn set_siginfo(&self, si: &libc::siginfo_t) -> Result<()> {
        self.raw(
            libc::PTRACE_SETSIGINFO,
            "PTRACE_SETSIGINFO",
            0,
            si as *const _ as usize,
        )?;
        Ok(())
    }

    /// The event message of a ptrace event stop (new tid, exit status...).
    pub fn event_msg(&self) -> Result<u64> {
        let mut msg: libc::c_ulong = 0;
        self.raw(
            libc::PTRACE_GETEVENTMSG,
            "PTRACE_GETEVENTMSG",
            0,
            &mut msg as *mut _ as usize,
        )?;
        Ok(msg)
    }

    /// What kind of syscall stop the task is in.
    pub fn syscall_stop(&self) -> Result<SyscallStop> {
        if let Some(known) = self.last_syscall_stop.get() {
            return Ok(known);
        }
        let stop = self.syscall_stop_uncached()?;
        self.last_syscall_stop.set(Some(stop));
        Ok(stop)
    }

    fn syscall_stop_uncached(&self) -> Result<SyscallStop> {
        let mut info = RawSyscallInfo::default();
        self.raw(
            libc::PTRACE_GET_SYSCALL_INFO,
            "PTRACE_GET_SYSCALL_INFO",
            std::mem::size_of::<RawSyscallInfo>(),
            &mut info as *mut _ as usize,
        )?;
        if matches!(info.op, 1 | 3) && info.arch != crate::kernel::AUDIT_ARCH_X86_64 {
            return Err(Error::Unsupported {
                what: format!(
                    "task {} made a 32-bit system call (int 0x80 or sysenter, number {})",
                    self.tid, info.data[0]
                ),
                hint: "only x86_64 system calls can be recorded".into(),
            });
        }
        if info.op == 3 && in_vsyscall_page(info.instruction_pointer) {
            return Err(Error::Unsupported {
                what: format!(
                    "task {} called {} through the legacy vsyscall page (at {:#x})",
                    self.tid,
                    crate::syscalls::name_of(info.data[0]),
                    info.instruction_pointer
                ),
                hint: "the kernel emulates such calls without a syscall stop after them, \
                       so their results cannot be recorded yet; a libc that uses the vDSO \
                       (any glibc since 2.14) does not make them"
                    .into(),
            });
        }
        Ok(match info.op {
            // PTRACE_SYSCALL_INFO_ENTRY, or _SECCOMP (a filter's stop before the call runs,
            // with the same nr and arguments).
            1 | 3 => SyscallStop::Entry {
                nr: info.data[0],
                args: [
                    info.data[1],
                    info.data[2],
                    info.data[3],
                    info.data[4],
                    info.data[5],
                    info.data[6],
                ],
            },
            2 => SyscallStop::Exit {
                ret: info.data[0] as i64,
                rip: info.instruction_pointer,
            },
            _ => SyscallStop::None,
        })
    }

    /// Resumes the task, delivering `signal` (0 for none).
    pub fn resume(&self, how: Resume, signal: i32) -> Result<()> {
        self.last_cstr.replace(None);
        self.last_syscall_stop.set(None);
        let (req, op) = match how {
            Resume::Syscall => (libc::PTRACE_SYSCALL, "PTRACE_SYSCALL"),
            Resume::Sysemu => (libc::PTRACE_SYSEMU, "PTRACE_SYSEMU"),
            Resume::Cont => (libc::PTRACE_CONT, "PTRACE_CONT"),
            Resume::Step => (libc::PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP"),
        };
        self.raw(req, op, 0, signal as usize)?;
        self.last_resume.set(how);
        Ok(())
    }

    /// Like [`Task::wait`], but steps over SIGCHLD signal-delivery stops, resuming the
    /// task the way it was last resumed and returning how many were skipped. Replay
    /// uses it: its real child processes exit for real and the kernel signals their
    /// parents, while the recorded SIGCHLDs are injected from the trace.
    pub fn wait_skipping_sigchld(&self) -> Result<(Stop, u32)> {
        let mut skipped = 0;
        loop {
            match self.wait()? {
                Stop::Signal(libc::SIGCHLD) => {
                    skipped += 1;
                    self.resume(self.last_resume.get(), 0)?;
                }
                other => return Ok((other, skipped)),
            }
        }
    }

    /// Kills the task's whole process.
    pub fn kill(&self) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(self.tid, libc::SIGKILL) };
    }

    /// Waits for this task (only this one: never `waitpid(-1)`, which would steal the
    /// events of other recordings in the same process).
    pub fn wait(&self) -> Result<Stop> {
        wait_for(self.tid)
    }

    fn mem(&mut self) -> Result<&File> {
        if self.mem.is_none() {
            let path = format!("/proc/{}/mem", self.tid);
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ESRCH) => Error::TaskGone { pid: self.tid },
                    _ => Error::io(path, e),
                })?;
            self.mem = Some(f);
        }
        Ok(self.mem.as_ref().expect("just opened"))
    }

    /// Forgets the memory file; needed after execve, which gives the task a new mm.
    pub fn reopen_mem(&mut self) {
        self.mem = None;
    }

    /// Reads `len` bytes of the task's memory.
    pub fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let tid = self.tid;
        let f = self.mem()?;
        let mut done = 0;
        while done < len {
            match f.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    return Err(Error::Memory {
                        pid: tid,
                        op: "read",
                        addr,
                        len,
                        source: e,
                    });
                }
            }
        }
        if done < len {
            return Err(Error::Memory {
                pid: tid,
                op: "read",
                addr,
                len,
                source: std::io::Error::from_raw_os_error(libc::EFAULT),
            });
        }
        Ok(buf)
    }

    /// Reads up to `len` bytes, stopping early at unmapped memory.
    pub fn read_mem_partial(&mut self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let f = self.mem()?;
        let mut done = 0;
        while done < len {
            match f.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Reads a NUL-terminated string (without the NUL), at most `max` bytes.
    pub fn read_cstr(&mut self, addr: u64, max: usize) -> Result<Vec<u8>> {
        if let Some((at, bytes, whole)) = self.last_cstr.borrow().as_ref() {
            if *at == addr && (*whole || bytes.len() >= max) {
                return Ok(bytes[..bytes.len().min(max)].to_vec());
            }
        }
        let out = self.read_cstr_uncached(addr, max)?;
        self.last_cstr
            .replace(Some((addr, out.clone(), out.len() < max)));
        Ok(out)
    }

    fn read_cstr_uncached(&mut self, addr: u64, max: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            // Read up to the end of the page so we never cross into an unmapped one.
            let chunk = (4096 - (at % 4096)) as usize;
            let bytes = self.read_mem(at, chunk)?;
            if let Some(pos) = bytes.iter().position(|&b| b == 0) {
                out.extend_from_slice(&bytes[..pos]);
                return Ok(out);
            }
            out.extend_from_slice(&bytes);
            at += chunk as u64;
        }
        out.truncate(max);
        Ok(out)
    }

    /// Writes bytes into the task's memory, read-only pages included (the kernel breaks
    /// copy-on-write for a tracer, so mapped files are never modified).
    pub fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        self.last_cstr.replace(None);
        let tid = self.tid;
        let f = self.mem()?;
        f.write_all_at(data, addr).map_err(|e| Error::Memory {
            pid: tid,
            op: "write",
            addr,
            len: data.len(),
            source: e,
        })
    }
}

/// Like [`wait_for`], but returns `None` at once when the task has nothing to report.
pub fn try_wait_for(tid: i32) -> Result<Option<Stop>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a pointer to a local.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        match r {
            0 => return Ok(None),
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 if Errno::last() == Errno::ECHILD => return Err(Error::TaskGone { pid: tid }),
            -1 => {
                return Err(Error::Ptrace {
                    pid: tid,
                    op: "waitpid",
                    source: Errno::last(),
                })
            }
            _ => return Ok(Some(decode_status(status))),
        }
    }
}

/// Like [`wait_own`], but returns `None` at once when no task has anything to report.
pub fn try_wait_own() -> Result<Option<(i32, Stop)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a pointer to a local.
        let r = unsafe {
            libc::waitpid(
                -1,
                &mut status,
                libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG,
            )
        };
        match r {
            0 => return Ok(None),
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => {
                return Err(Error::Ptrace {
                    pid: -1,
                    op: "waitpid",
                    source: Errno::last(),
                })
            }
            pid => return Ok(Some((pid, decode_status(status)))),
        }
    }
}

/// Waits for any task traced by (or child of) the calling thread, with
/// `__WALL | __WNOTHREAD`. Never use it from a thread that has other children: the
/// engine runs each recording on a thread of its own, so this sees only that
/// recording's tasks and never steals another recording's events.
pub fn wait_own() -> Result<(i32, Stop)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a pointer to a local.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
        if r == -1 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(Error::Ptrace {
                pid: -1,
                op: "waitpid",
                source: e,
            });
        }
        return Ok((r, decode_status(status)));
    }
}

/// Whether task `tid` is on its way out: gone from `/proc`, a zombie, or with a SIGKILL
/// pending (for it or its process). A SIGKILL ends a task even in a ptrace stop, and its
/// memory and registers go away before the tracer hears of it: an error met while
/// handling such a task's last stop says only that it died under us.
pub fn dying(tid: i32) -> bool {
    if matches!(crate::kernel::task_state(tid), Some('Z' | 'X' | 'x') | None) {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        let pending = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        pending
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

/// Waits until a task has ended and returns how; a task still stopped somewhere (an
/// exit stop, a signal stop) is let go on dying. A task already gone counts as exited.
pub fn reap(tid: i32) -> Stop {
    loop {
        match wait_for(tid) {
            Ok(s @ (Stop::Exited(_) | Stop::Killed(_))) => return s,
            Ok(_) => {
                // SAFETY: plain ptrace request on our own tracee.
                unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, 0) };
            }
            Err(_) => return Stop::Exited(0),
        }
    }
}

/// Waits for one task with `__WALL`, restarting on EINTR.
pub fn wait_for(tid: i32) -> Result<Stop> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a pointer to a local.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == -1 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            if e == Errno::ECHILD {
                return Err(Error::TaskGone { pid: tid });
            }
            return Err(Error::Ptrace {
                pid: tid,
                op: "waitpid",
                source: e,
            });
        }
        return Ok(decode_status(status));
    }
}

fn decode_status(status: libc::c_int) -> Stop {
    if libc::WIFEXITED(status) {
        Stop::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Stop::Killed(libc::WTERMSIG(status))
    } else {
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if sig == (libc::SIGTRAP | 0x80) {
            Stop::Syscall
        } else if event != 0 {
            Stop::Event(event)
        } else {
            Stop::Signal(sig)
        }
    }
}

/// The ptrace options every recording and replay sets.
pub const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK;

#[cfg(test)]
mod tests {
    use super::dying;

    #[test]
    fn a_live_task_is_not_dying_and_a_zombie_or_a_missing_one_is() {
        assert!(!dying(std::process::id() as i32));
        // SAFETY: the child only calls _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: async-signal-safe exit of the forked child.
            unsafe { libc::_exit(0) };
        }
        assert!(child > 0);
        // Exited and not reaped (waitid with WNOWAIT waits for that): a zombie.
        // SAFETY: siginfo_t is plain data; all zeros is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT leaves the child a zombie.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0);
        assert!(dying(child));
        let mut status = 0;
        // SAFETY: reaps our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(dying(child));
    }
}
