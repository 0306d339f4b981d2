//! Files the recorded tree maps `MAP_SHARED`.
//!
//! Such a mapping shows the file as it is now: bytes another process of the tree writes
//! into its own mapping, and bytes written to the file with `write`/`pwrite`/`writev`.
//! The first kind replays by itself (replay maps one shared copy of the file for all of
//! them, and the writing code runs again). The second does not, since replay emulates
//! those calls: so each write-family call that changes a shared-mapped file is recorded
//! with its offset and bytes ([`Event::SharedFileWrite`]), and replay writes them into its
//! copy at the same point of the schedule.
//!
//! A file mapped `MAP_PRIVATE` from an fd opened for writing is followed the same way:
//! the pages of a private mapping that the program has not written yet show the file
//! as it is when they are first touched, so the program's later writes to the file (or
//! its growth) must be in replay's copy too.
//!
//! `ftruncate` growing such a file is recorded as a write of one zero byte at the new
//! end (the bytes in between read as zeros, as after the truncate); shrinking one is
//! refused. `fallocate` is recorded the same way: growing the file as a zero byte at
//! its new end, punching a hole or zeroing a range (up to [`MAX_ZEROED`] bytes) as a
//! write of zeros. The other calls that change its size or contents in place are
//! refused.
//!
//! Changes from outside the recorded tree cannot be seen and are not replayable; the
//! README says so.
//!
//! [`Event::SharedFileWrite`]: crate::trace::Event::SharedFileWrite

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use crate::errors::{Error, Result};
use crate::output::OutputFds;
use crate::ptrace::Task;
use crate::syscalls::nr;

/// The shared-mapped files of a recording: (device, inode) -> path at record time.
#[derive(Debug, Default)]
pub struct SharedFiles {
    by_id: HashMap<(u64, u64), String>,
    /// The capture of each followed file, made at its first mapping (replay makes its
    /// copy from it and maps that copy from then on).
    first_capture: HashMap<(u64, u64), String>,
    /// The change a thread's `ftruncate` or `fallocate` of a followed file makes if it
    /// succeeds, by thread: zeros at an offset (see [`zeroed_by`]).
    changing: HashMap<i32, (u64, u64)>,
}

/// The most bytes one `fallocate` may zero in a followed file (a hole punched, a range
/// zeroed): each is recorded as a write of that many zeros.
pub const MAX_ZEROED: u64 = 16 << 20;

const FALLOC_FL_KEEP_SIZE: u64 = 0x01;
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;

/// What `ftruncate` or `fallocate` (`sysno`, `args`) does to a file of `size` bytes
/// when it succeeds, as zeros written: `Some((offset, length))` (length 0: nothing),
/// `None` when that is not a write of zeros (ftruncate shrinking the file, an
/// unknown fallocate mode, a range too big).
fn zeroed_by(sysno: u64, args: &[u64; 6], size: u64) -> Option<(u64, u64)> {
    // A file growing to `end`: the new bytes read as zeros, so one zero byte at its end.
    let grow = |end: u64| if end > size { (end - 1, 1) } else { (0, 0) };
    if sysno == nr::FTRUNCATE {
        return (args[1] >= size).then(|| grow(args[1]));
    }
    let (mode, offset, len) = (args[1], args[2], args[3]);
    let end = offset.checked_add(len).filter(|_| len > 0)?;
    match mode {
        0 => Some(grow(end)),
        FALLOC_FL_KEEP_SIZE => Some((0, 0)),
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            || m == FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE =>
        {
            let end = end.min(size);
            Some((offset, end.saturating_sub(offset))).filter(|z| z.1 <= MAX_ZEROED)
        }
        FALLOC_FL_ZERO_RANGE if end <= offset.saturating_add(MAX_ZEROED) => Some((offset, len)),
        _ => None,
    }
}

/// Whether `fd` of task `tid` is open for writing (`/proc/TID/fdinfo/FD`, "flags:").
pub fn fd_writable(tid: i32, fd: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| i32::from_str_radix(v.trim(), 8).ok())
        })
        .is_some_and(|flags| flags & libc::O_ACCMODE != libc::O_RDONLY)
}

/// The file behind `fd` of task `tid`: its (device, inode) and path.
fn identity(tid: i32, fd: u64) -> Option<((u64, u64), String)> {
    let link = format!("/proc/{tid}/fd/{fd}");
    let meta = std::fs::metadata(&link).ok()?;
    if !meta.is_file() {
        return None;
    }
    let name = std::fs::read_link(&link)
        .map(|p| p.display().to_string())
        .unwrap_or(link);
    Some(((meta.dev(), meta.ino()), name))
}

impl SharedFiles {
    /// The capture made when the file behind `fd` was first mapped, if it is followed
    /// already: a later mapping of it needs no capture of its own (replay maps its one
    /// copy of the file, which the program's writes kept up to date; capturing a 2 GiB
    /// memfd again took as long as the first time, rr's memfd_create_shared_huge).
    pub fn captured(&self, tid: i32, fd: u64) -> Option<String> {
        let (id, _) = identity(tid, fd)?;
        self.by_id.get(&id)?;
        self.first_capture.get(&id).cloned()
    }

    /// Remembers the capture of a followed file's first mapping (see [`Self::captured`]).
    pub fn note_capture(&mut self, tid: i32, fd: u64, hash: &str) {
        if let Some((id, _)) = identity(tid, fd) {
            if self.by_id.contains_key(&id) {
                self.first_capture
                    .entry(id)
                    .or_insert_with(|| hash.to_string());
            }
        }
    }

    /// An `mmap(..., MAP_SHARED, fd, ...)` succeeded: remember the file; returns its path
    /// (the key replay uses for its copy). Refused when a process outside the recorded
    /// tree (`tree`: its process ids) maps the same file shared and writable: what that
    /// process writes could not be replayed.
    pub fn mapped(&mut self, tid: i32, fd: u64, tree: &[i32]) -> Result<Option<String>> {
        let Some((id, name)) = identity(tid, fd) else {
            return Ok(None);
        };
        if let Some((pid, comm)) = outside_mapper(id, tree) {
            return Err(Error::Unsupported {
                what: format!(
                    "a MAP_SHARED mapping of {name}, which process {pid} ({comm}) outside the \
                     recording maps writable too"
                ),
                hint: "memory shared with processes outside the recording cannot be replayed; \
                       record them together, or map the file privately"
                    .into(),
            });
        }
        Ok(Some(self.by_id.entry(id).or_insert(name).clone()))
    }

    /// After a syscall of `task` that returned `ret`: if it wrote `ret` bytes to a
    /// shared-mapped file, the file's path, the offset and the bytes.
    pub fn written(
        &mut self,
        task: &mut Task,
        sysno: u64,
        args: &[u64; 6],
        ret: i64,
    ) -> Result<Option<(String, u64, Vec<u8>)>> {
        if matches!(sysno, nr::FTRUNCATE | nr::FALLOCATE) {
            let Some((offset, len)) = self.changing.remove(&task.tid) else {
                return Ok(None);
            };
            let name = identity(task.tid, args[0]).and_then(|(id, _)| self.by_id.get(&id));
            return Ok(match name {
                Some(name) if ret == 0 && len > 0 => {
                    Some((name.clone(), offset, vec![0; len as usize]))
                }
                _ => None,
            });
        }
        if self.by_id.is_empty() || ret <= 0 {
            return Ok(None);
        }
        let Some(kind) = OutputFds::write_kind(sysno) else {
            return Ok(None);
        };
        let Some((id, _)) = identity(task.tid, args[0]) else {
            return Ok(None);
        };
        let Some(name) = self.by_id.get(&id) else {
            return Ok(None);
        };
        let offset = write_offset(task.tid, sysno, args, ret)?;
        let data = crate::output::written_bytes(task, kind, args, ret)?;
        Ok(Some((name.clone(), offset, data)))
    }

    /// Whether any file is mapped `MAP_SHARED` in the tree (the syscall-buffering
    /// library is then told to make writes traced, see `buffers`).
    pub fn any(&self) -> bool {
        !self.by_id.is_empty()
    }

    /// Whether `fd` of thread `tid` is a file mapped `MAP_SHARED` in the tree.
    pub fn is_mapped(&self, tid: i32, fd: u64) -> bool {
        !self.by_id.is_empty()
            && identity(tid, fd).is_some_and(|(id, _)| self.by_id.contains_key(&id))
    }

    /// Refuses calls that change a shared-mapped file in ways replay does not follow;
    /// notes the change an ftruncate or fallocate of one makes if it succeeds.
    pub fn check_entry(&mut self, tid: i32, sysno: u64, args: &[u64; 6]) -> Result<()> {
        if self.by_id.is_empty() {
            return Ok(());
        }
        if matches!(sysno, nr::FTRUNCATE | nr::FALLOCATE) {
            let link = format!("/proc/{tid}/fd/{}", args[0]);
            let followed = std::fs::metadata(&link)
                .ok()
                .filter(|m| m.is_file() && self.by_id.contains_key(&(m.dev(), m.ino())));
            if let Some(meta) = followed {
                if let Some(change) = zeroed_by(sysno, args, meta.len()) {
                    self.changing.insert(tid, change);
                    return Ok(());
                }
            }
        }
        let fd_call = matches!(
            sysno,
            nr::FTRUNCATE | nr::FALLOCATE | nr::COPY_FILE_RANGE | nr::SENDFILE | nr::SPLICE
        );
        let target_fd = match sysno {
            nr::COPY_FILE_RANGE => args[2],
            nr::SENDFILE => args[0],
            nr::SPLICE => args[2],
            _ => args[0],
        };
        if fd_call && identity(tid, target_fd).is_some_and(|(id, _)| self.by_id.contains_key(&id)) {
            return Err(Error::UnsupportedSyscall {
                name: crate::syscalls::name_of(sysno),
                nr: sysno,
                hint: "it changes a file the program maps MAP_SHARED (or privately, opened for \
                       writing); only write, pwrite, writev, growing it (ftruncate, \
                       fallocate) and zeroing up to 16 MiB of it (fallocate) are recorded"
                    .into(),
            });
        }
        Ok(())
    }
}

/// A process outside `tree` that maps the file `id` (device, inode) shared and writable,
/// from `/proc/*/maps` (processes we may not read are passed over). Read-only sharers
/// (every process maps the locale and gconv caches) cannot change it.
fn outside_mapper(id: (u64, u64), tree: &[i32]) -> Option<(i32, String)> {
    let (dev, ino) = id;
    // /proc/PID/maps names the device as "major:minor" in hex.
    let want_dev = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let me = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || tree.contains(&pid) {
            continue;
        }
        let Ok(maps) = crate::address_space::read_maps(pid) else {
            continue;
        };
        // Only a writable shared mapping lets it change what the recording sees.
        let shares = maps.iter().any(|m| {
            m.shared && m.prot & libc::PROT_WRITE != 0 && m.dev == want_dev && m.inode == ino
        });
        if shares {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_string()));
        }
    }
    None
}

/// Where a write-family call of thread `tid` that wrote `ret` bytes started in its file.
pub(super) fn write_offset(tid: i32, sysno: u64, args: &[u64; 6], ret: i64) -> Result<u64> {
    Ok(match sysno {
        nr::PWRITE64 | nr::PWRITEV => args[3],
        nr::PWRITEV2 if args[3] as i64 != -1 => args[3],
        // The file position has moved past the bytes written.
        _ => file_position(tid, args[0])?.saturating_sub(ret as u64),
    })
}

/// The file position of `fd` in task `tid` (`/proc/TID/fdinfo/FD`, "pos:").
fn file_position(tid: i32, fd: u64) -> Result<u64> {
    let path = format!("/proc/{tid}/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("pos:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Unsupported {
            what: format!("{path} has no file position"),
            hint: "report this as a bug".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallocate(mode: u64, offset: u64, len: u64) -> [u64; 6] {
        [3, mode, offset, len, 0, 0]
    }

    #[test]
    fn calls_that_change_a_followed_file_become_writes_of_zeros() {
        let size = 1 << 20;
        // ftruncate: growing is one zero byte at the new end; shrinking is not a write.
        assert_eq!(
            zeroed_by(nr::FTRUNCATE, &[3, size + 10, 0, 0, 0, 0], size),
            Some((size + 9, 1))
        );
        assert_eq!(
            zeroed_by(nr::FTRUNCATE, &[3, size, 0, 0, 0, 0], size),
            Some((0, 0))
        );
        assert_eq!(zeroed_by(nr::FTRUNCATE, &[3, 10, 0, 0, 0, 0], size), None);
        // fallocate: allocating grows the file; KEEP_SIZE alone changes no byte.
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(0, size, 4096), size),
            Some((size + 4095, 1))
        );
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(0, 0, 4096), size),
            Some((0, 0))
        );
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(1, size, 4096), size),
            Some((0, 0))
        );
        // A hole punched or a range zeroed, clipped to the size when it is kept.
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(3, 4096, 8192), size),
            Some((4096, 8192))
        );
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(0x11, size - 100, 8192), size),
            Some((size - 100, 100))
        );
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(0x10, size - 100, 200), size),
            Some((size - 100, 200))
        );
        // Too big, unknown modes, an empty or overflowing range: refused.
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(3, 0, MAX_ZEROED + 1), 1 << 40),
            None
        );
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(0x08, 0, 4096), size),
            None
        );
        assert_eq!(zeroed_by(nr::FALLOCATE, &fallocate(3, 0, 0), size), None);
        assert_eq!(
            zeroed_by(nr::FALLOCATE, &fallocate(3, u64::MAX, 2), size),
            None
        );
    }
}
