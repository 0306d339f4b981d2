//! Time slices measured in the running thread's own CPU time.
//!
//! A wall-clock slice (the [`super::Watchdog`]) ends after so much time has passed,
//! whether the thread ran meanwhile or not: on a loaded machine a 20 µs slice is often
//! over before the thread ran at all, or the thread has run a whole loop of the race
//! window before the watchdog thread itself gets a core to send its SIGSTOP. Short chaos
//! slices then miss the window they were drawn to hit.
//!
//! A software perf event counts the thread's CPU time instead (`PERF_COUNT_SW_TASK_CLOCK`,
//! which needs no hardware PMU): its sample period is the slice, and on overflow the
//! kernel signals the thread itself, from the timer interrupt that caught it running
//! (`O_ASYNC`, `F_SETOWN_EX` to the thread, `F_SETSIG` SIGSTOP). That SIGSTOP reaches
//! the engine as the watchdog's does (a signal-delivery stop it suppresses), told apart
//! from the program's by its `si_code` (`POLL_IN`/`POLL_HUP`) and `si_fd` (the event's
//! fd, in the recorder).
//!
//! Perf events may be refused (`kernel.perf_event_paranoid` 3 or more, a seccomp profile
//! of a container, no perf support): [`CpuClock::open`] says so once, and the recording
//! goes on with wall-clock slices.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use perf_event_open_sys as sys;

/// Which clock measures time slices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SliceClock {
    /// The running thread's CPU time where perf events are allowed, wall-clock time
    /// where they are not.
    #[default]
    Cpu,
    /// Wall-clock time only (the watchdog thread alone).
    Wall,
}

impl SliceClock {
    /// `CARGO_CHAOS_SLICE_CLOCK=wall` in `value` chooses wall-clock slices; anything
    /// else (or nothing) the default.
    pub fn from_env_value(value: Option<&std::ffi::OsStr>) -> Self {
        match value {
            Some(v) if v == "wall" => SliceClock::Wall,
            _ => SliceClock::Cpu,
        }
    }
}

// From the kernel's uapi (asm-generic/fcntl.h, asm-generic/siginfo.h); the libc crate
// has them for some targets only.
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
const POLL_IN: libc::c_int = 1;
const POLL_HUP: libc::c_int = 6;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// Why a thread's CPU clock could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The kernel refuses perf events to this process (`perf_event_paranoid`, seccomp,
    /// no perf support): no thread will get one.
    Refused(std::io::Error),
    /// This thread only (it is gone, the fd table is full...).
    Failed(std::io::Error),
}

/// A thread's CPU-time slice clock: a task-clock perf event that sends the thread
/// SIGSTOP when a slice is used up.
#[derive(Debug)]
pub struct CpuClock {
    fd: OwnedFd,
    /// The length of the armed slice, in nanoseconds (0: not armed).
    armed_ns: u64,
}

impl CpuClock {
    /// Opens the clock of thread `tid` (a tracee of the calling thread), disarmed.
    pub fn open(tid: i32) -> Result<CpuClock, OpenError> {
        let mut attr = sys::bindings::perf_event_attr {
            type_: sys::bindings::PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
            config: sys::bindings::PERF_COUNT_SW_TASK_CLOCK as u64,
            ..Default::default()
        };
        attr.__bindgen_anon_1.sample_period = 1_000_000;
        attr.__bindgen_anon_2.wakeup_events = 1;
        attr.set_disabled(1);
        attr.set_exclude_hv(1);
        let fd = match open_event(&mut attr, tid) {
            // Kernel time counted too where allowed: with it excluded, a timer tick
            // that catches the thread in the kernel (a page fault) is skipped and the
            // slice runs a whole period more. Unprivileged under paranoid 2, only
            // user time is allowed.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                attr.set_exclude_kernel(1);
                open_event(&mut attr, tid)
            }
            other => other,
        };
        let fd = fd.map_err(|e| match e.raw_os_error() {
            Some(
                libc::EACCES
                | libc::EPERM
                | libc::ENOENT
                | libc::ENODEV
                | libc::ENOSYS
                | libc::EOPNOTSUPP
                | libc::EINVAL,
            ) => OpenError::Refused(e),
            _ => OpenError::Failed(e),
        })?;
        let raw = fd.as_raw_fd();
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: tid,
        };
        // SAFETY: fcntl on an fd we own; `owner` outlives the call.
        let ok = unsafe {
            libc::fcntl(raw, F_SETOWN_EX, &owner as *const FOwnerEx) == 0
                && libc::fcntl(raw, F_SETSIG, libc::SIGSTOP) == 0
                && libc::fcntl(raw, libc::F_SETFL, libc::O_ASYNC) == 0
        };
        if !ok {
            return Err(OpenError::Failed(std::io::Error::last_os_error()));
        }
        Ok(CpuClock { fd, armed_ns: 0 })
    }

    /// Starts a slice of `slice` of the thread's CPU time.
    pub fn arm(&mut self, slice: Duration) -> std::io::Result<()> {
        // The kernel's timer-based software events take 10 µs at the least.
        let ns = (slice.as_nanos() as u64).max(10_000);
        let fd = self.fd.as_raw_fd();
        // A new period also drops what was left of the last one.
        // SAFETY: perf ioctls on an fd we own; PERIOD reads the u64 its argument
        // points to (the crate types that argument as the integer it carries).
        let ok = unsafe {
            sys::ioctls::PERIOD(fd, &ns as *const u64 as u64) == 0
                && sys::ioctls::ENABLE(fd, 0) == 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
        self.armed_ns = ns;
        Ok(())
    }

    /// Cuts the armed slice to end at most `to` of CPU time from now.
    pub fn shorten(&mut self, to: Duration) -> std::io::Result<()> {
        let ns = (to.as_nanos() as u64).max(10_000);
        if self.armed_ns == 0 || self.armed_ns <= ns {
            return Ok(());
        }
        // SAFETY: perf ioctl on an fd we own, reading the u64 it points to; on an
        // enabled event it restarts the period from now.
        if unsafe { sys::ioctls::PERIOD(self.fd.as_raw_fd(), &ns as *const u64 as u64) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.armed_ns = ns;
        Ok(())
    }

    /// Ends the slice (the thread stopped).
    pub fn disarm(&mut self) {
        if self.armed_ns != 0 {
            // SAFETY: perf ioctl on an fd we own. It fails only for a thread that is
            // gone, whose event counts nothing more anyway.
            unsafe { sys::ioctls::DISABLE(self.fd.as_raw_fd(), 0) };
            self.armed_ns = 0;
        }
    }

    /// Whether a signal's siginfo is this clock's overflow signal.
    pub fn sent(&self, si: &libc::siginfo_t) -> bool {
        if !from_a_clock(si) {
            return false;
        }
        // SAFETY: a siginfo_t is 128 bytes; for a SIGPOLL-style si_code the kernel put
        // `si_band` (long) at offset 16 and `si_fd` (int) at offset 24 (the libc crate
        // has no accessor for them).
        let fd = unsafe {
            std::ptr::read_unaligned(
                (si as *const libc::siginfo_t as *const u8).add(24) as *const i32
            )
        };
        fd == self.fd.as_raw_fd()
    }
}

/// Whether a SIGSTOP's siginfo has the code of a perf event's overflow signal (some
/// thread's CPU-time clock), for code that does not hold the clocks (syscall injection):
/// a program that makes SIGSTOP the signal of its own `O_ASYNC` fds would look the same.
pub fn from_a_clock(si: &libc::siginfo_t) -> bool {
    si.si_code == POLL_IN || si.si_code == POLL_HUP
}

fn open_event(attr: &mut sys::bindings::perf_event_attr, tid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, initialised perf_event_attr with its size set.
    let fd = unsafe {
        sys::perf_event_open(attr, tid, -1, -1, sys::bindings::PERF_FLAG_FD_CLOEXEC as _)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock armed on a spinning child stops it with SIGSTOP once the child has used
    /// its slice of CPU time (the test waits for the stop, however long the machine
    /// takes to give the child that time).
    #[test]
    fn an_armed_clock_stops_a_spinning_thread() {
        // SAFETY: the child only spins (no allocation, no locks) until it is killed.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            loop {
                std::hint::spin_loop();
            }
        }
        let result = (|| {
            let mut clock = match CpuClock::open(child) {
                Ok(c) => c,
                // Perf events refused here: the wall-clock fallback is all there is.
                Err(OpenError::Refused(e)) => return Ok(Some(e)),
                Err(OpenError::Failed(e)) => return Err(format!("open: {e}")),
            };
            clock
                .arm(Duration::from_millis(2))
                .map_err(|e| format!("arm: {e}"))?;
            let mut status = 0;
            // SAFETY: waiting for our own child into a local.
            let r = unsafe { libc::waitpid(child, &mut status, libc::WUNTRACED) };
            if r != child || !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGSTOP {
                return Err(format!("waitpid {r}, status {status:#x}"));
            }
            clock.disarm();
            Ok(None)
        })();
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        match result {
            Ok(None) => {}
            Ok(Some(refused)) => eprintln!("perf events refused ({refused}): nothing to test"),
            Err(e) => panic!("{e}"),
        }
    }

    /// `CARGO_CHAOS_SLICE_CLOCK=wall` chooses wall-clock slices, anything else CPU time.
    #[test]
    fn the_environment_chooses_the_clock() {
        use std::ffi::OsStr;
        assert_eq!(
            SliceClock::from_env_value(Some(OsStr::new("wall"))),
            SliceClock::Wall
        );
        assert_eq!(
            SliceClock::from_env_value(Some(OsStr::new("cpu"))),
            SliceClock::Cpu
        );
        assert_eq!(SliceClock::from_env_value(None), SliceClock::Cpu);
    }
}
