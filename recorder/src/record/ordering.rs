//! Keeping the order of writes to one file: the calls of the write family that several
//! threads make on the same file are never in the kernel together.
//!
//! A call that may block is left in the kernel while other threads run (see
//! `docs/architecture.md`, "Recording"), and its `Syscall` event is written when its
//! thread is next scheduled. Two writes to one file left in the kernel together reach
//! it in an order the engine cannot know, and their events would be written in the
//! order the scheduler happens to pick their threads: the trace, its copy of stdout and
//! the replay's output would then show the lines in an order the program never wrote.
//!
//! So a thread that reaches a write-family call ([`output_fd`]) on a file (same device
//! and inode, [`file_key`]) that another thread's write-family call is still in flight
//! on is held at its entry stop: it is not runnable until that call's event is written,
//! then its own call starts from its entry as any other. A `Blocked` event marks where
//! it stopped, so that replay runs it up to that entry at the same point of the
//! schedule; replay itself is unchanged.
//!
//! Only writes are ordered. A read's result is recorded whole and injected at replay, so
//! the order of a read and a write (or of two reads) on one file is seen by the program
//! only through the bytes the read got, which the trace holds. Holding reads would also
//! deadlock: a reader blocked on an empty pipe waits for a writer, a writer blocked on a
//! full one for a reader. A write held behind another write cannot deadlock that way:
//! the first waits for room that only a reader makes, and the held one could not make
//! room either.
//!
//! The common path pays nothing: the file behind the fds is looked up (one `stat` of
//! `/proc/TID/fd/N`) only when another thread has a write-family call in flight, and a
//! call in flight is looked up at most once.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::syscalls::nr;

/// A file, as the kernel names it: device and inode. Two fds of one open file, and two
/// opens of one file (a terminal opened twice), have the same key; so do the two ends of
/// a pipe, of which only the write end is ever written.
pub(super) type FileKey = (u64, u64);

/// The fd a write-family call writes to: write, writev, pwrite64, pwritev, pwritev2,
/// sendto, sendmsg, sendmmsg.
///
/// Left out: sendfile, splice and tee, which can block waiting for their *input* (a
/// write held behind one of them could be the one that would feed it); copy_file_range,
/// which works on regular files and never sits in the kernel while others run; and
/// vmsplice, which the recorder refuses.
pub(super) fn output_fd(sysno: u64, args: &[u64; 6]) -> Option<u64> {
    match sysno {
        nr::WRITE
        | nr::WRITEV
        | nr::PWRITE64
        | nr::PWRITEV
        | nr::PWRITEV2
        | nr::SENDTO
        | nr::SENDMSG
        | nr::SENDMMSG => Some(args[0]),
        _ => None,
    }
}

/// The file behind fd `fd` of task `tid`; `None` when it has no such fd (the call will
/// fail with `EBADF` and write nothing) or the task is gone.
pub(super) fn file_key(tid: i32, fd: u64) -> Option<FileKey> {
    let meta = std::fs::metadata(format!("/proc/{tid}/fd/{fd}")).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether fd `fd` of task `tid` is a regular file or a block device. A write there
/// never waits for another thread of the program, so the engine lets it finish before
/// any other thread runs rather than leave it in the kernel: another thread's write to
/// the same file made in-process (buffered, never seen here) could otherwise reach the
/// file first, in an order the trace would not hold.
pub(super) fn never_waits(tid: i32, fd: u64) -> bool {
    std::fs::metadata(format!("/proc/{tid}/fd/{fd}"))
        .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn write_family_only() {
        let args = [7, 0, 0, 0, 0, 0];
        for sysno in [nr::WRITE, nr::WRITEV, nr::PWRITE64, nr::SENDTO, nr::SENDMSG] {
            assert_eq!(output_fd(sysno, &args), Some(7), "syscall {sysno}");
        }
        for sysno in [nr::READ, nr::READV, nr::RECVFROM, nr::SPLICE, nr::SENDFILE] {
            assert_eq!(output_fd(sysno, &args), None, "syscall {sysno}");
        }
    }

    #[test]
    fn same_file_same_key() {
        let me = std::process::id() as i32;
        let open = |p: &str| std::fs::File::open(p).expect("open");
        let (a, b) = (open("/dev/null"), open("/dev/null"));
        let other = open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        let key = |f: &std::fs::File| file_key(me, f.as_raw_fd() as u64).expect("an open fd");
        // Two opens of one file, and a duplicated fd, are the same file.
        assert_eq!(key(&a), key(&b));
        assert_eq!(key(&a.try_clone().expect("dup")), key(&a));
        assert_ne!(key(&a), key(&other));
        assert_eq!(file_key(me, 1 << 30), None);
    }
}
