//! Writes into the program's own memory through `/proc/self/mem` (JITs, hot patchers,
//! rr's jit_proc_mem test): `pwrite(open("/proc/self/mem"), code, n, addr)` puts code into
//! a read-only executable page. Replay does not run the write (its result comes from the
//! trace), so the bytes that landed are recorded as the call's memory effects, as a
//! read's buffer is, and replay writes them at the same addresses.
//!
//! A write into another process of the recording (its `/proc/PID/mem`, rr's proc_mem
//! test) lands in that process: the engine reads the bytes there after the call and
//! records them as a [`crate::trace::Event::KernelWrite`] of one of its threads, which
//! replay writes into it at that point. A process outside the recording stops it.
//!
//! Writes are only looked at once the program has opened a path whose last component
//! is `mem` ([`opens_a_mem_file`]): one `readlink` per write would cost every program.

use crate::errors::{Error, Result};
use crate::output::OutputFds;
use crate::ptrace::Task;
use crate::syscalls::nr;
use crate::trace::MemWrite;

use super::shared_files::write_offset;
use crate::kernel::thread_group;

/// Whether a successful open-family call opened a path whose last component is `mem`
/// (`/proc/self/mem`, `/proc/PID/task/TID/mem`, or `PID/mem` relative to an fd of `/proc`).
pub fn opens_a_mem_file(task: &mut Task, sysno: u64, args: &[u64; 6]) -> bool {
    let path = match sysno {
        nr::OPEN => args[0],
        nr::OPENAT | nr::OPENAT2 => args[1],
        _ => return false,
    };
    task.read_cstr(path, 4096)
        .is_ok_and(|p| p == b"mem" || p.ends_with(b"/mem"))
}

/// Where a write through a process memory file landed.
pub enum MemFileWrite {
    /// In the caller's own process: a memory effect of the call.
    Own(MemWrite),
    /// In another process: `len` bytes at `addr` of process `pid`.
    Other {
        /// The process written.
        pid: i32,
        /// Where.
        addr: u64,
        /// How many bytes.
        len: usize,
    },
}

/// After a write-family call of `task` that returned `ret`: if it wrote to a
/// `/proc/PID/mem` file, the memory it changed.
pub fn written(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    ret: i64,
) -> Result<Option<MemFileWrite>> {
    if ret <= 0 || OutputFds::write_kind(sysno).is_none() {
        return Ok(None);
    }
    let Some(pid) = mem_file_of(task.tid, args[0]) else {
        return Ok(None);
    };
    let addr = write_offset(task.tid, sysno, args, ret)?;
    if Some(pid) != thread_group(task.tid) {
        return Ok(Some(MemFileWrite::Other {
            pid,
            addr,
            len: ret as usize,
        }));
    }
    Ok(Some(MemFileWrite::Own(MemWrite {
        addr,
        data: task.read_mem(addr, ret as usize)?,
    })))
}

/// The error for a write into process `pid`, which is not part of the recording.
pub fn outside_the_recording(pid: i32) -> Error {
    Error::Unsupported {
        what: format!(
            "a write into the memory of process {pid} (through /proc/{pid}/mem or \
             process_vm_writev), which the recording does not include"
        ),
        hint: "replay cannot change a process it does not run; writing the memory of the \
               program's own processes is supported"
            .into(),
    }
}

/// Whether `fd` of thread `tid` is a process memory file.
pub fn is_mem_file(tid: i32, fd: u64) -> bool {
    mem_file_of(tid, fd).is_some()
}

/// The process whose memory file `fd` of thread `tid` is, if it is one.
fn mem_file_of(tid: i32, fd: u64) -> Option<i32> {
    let target = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
    mem_pid(target.to_str()?)
}

/// The process whose memory file `path` names: `/proc/PID/mem` or
/// `/proc/PID/task/TID/mem` (both are the process's memory).
fn mem_pid(path: &str) -> Option<i32> {
    let inner = path.strip_prefix("/proc/")?.strip_suffix("/mem")?;
    let pid = match inner.split_once("/task/") {
        Some((pid, tid)) => tid.parse::<i32>().ok().map(|_| pid)?,
        None => inner,
    };
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::mem_pid;

    #[test]
    fn memory_files_name_their_process() {
        assert_eq!(mem_pid("/proc/123/mem"), Some(123));
        assert_eq!(mem_pid("/proc/123/task/124/mem"), Some(123));
        assert_eq!(mem_pid("/proc/123/task/x/mem"), None);
        assert_eq!(mem_pid("/proc/123/maps"), None);
        assert_eq!(mem_pid("/tmp/proc/1/mem"), None);
        assert_eq!(mem_pid("/proc/self/mem"), None);
    }
}
