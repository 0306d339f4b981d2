//! Path lookups that fail, answered by the engine at the call's entry.
//!
//! A test binary's dynamic loader looks for each library in every directory of
//! `LD_LIBRARY_PATH` (cargo puts four there) and each of their `glibc-hwcaps`
//! subdirectories: some eighty `openat`/`stat` calls per run that fail with `ENOENT`.
//! Traced normally, each costs two stops. Here the engine resolves the same absolute
//! path itself at the call's seccomp stop; when the path does not exist, the call is
//! skipped and the program gets the same error, for one stop. The event is the one the
//! call would have produced (a failed call writes no memory), so replay is unchanged.
//!
//! The engine's lookup is the program's only when both resolve paths alike: the same
//! root and credentials (the program inherited both; the recorder stops answering for
//! good once any process of the tree makes a call that could change either, see
//! [`changes_lookup`]; the access family, which checks with the real ids, is never
//! answered), no mount crossed (`RESOLVE_NO_XDEV`: `/proc/self` or
//! `/dev/fd`, reached directly or through a symlink, would name the engine's own
//! process) and no magic link followed (`RESOLVE_NO_MAGICLINKS`). Only `ENOENT` and
//! `ENOTDIR` are answered; anything else (the path exists, another error) lets the
//! call run as usual.

use crate::errors::Result;
use crate::ptrace::Task;
use crate::syscalls::nr;

/// The path argument and whether the last component is followed, for a call this module
/// may answer; `None` for the others, and for calls whose other arguments the kernel
/// would refuse (`EINVAL`) before it looks the path up.
fn path_arg(sysno: u64, args: &[u64; 6]) -> Option<(u64, bool)> {
    const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
    const STAT_FLAGS: u64 =
        (libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_EMPTY_PATH) as u64;
    const STATX_SYNC: u64 = libc::AT_STATX_SYNC_TYPE as u64;
    const STATX_RESERVED: u64 = 0x8000_0000;
    // O_TMPFILE is __O_TMPFILE | O_DIRECTORY; only its own bit marks a creation.
    let creates =
        |flags: u64| flags & (libc::O_CREAT | libc::O_TMPFILE & !libc::O_DIRECTORY) as u64 != 0;
    let nofollow_flag = |flags: u64| flags & libc::O_NOFOLLOW as u64 != 0;
    let follows = |flags: u64| flags & AT_SYMLINK_NOFOLLOW == 0;
    match sysno {
        nr::OPEN if !creates(args[1]) => Some((args[0], !nofollow_flag(args[1]))),
        nr::OPENAT if !creates(args[2]) => Some((args[1], !nofollow_flag(args[2]))),
        nr::STAT => Some((args[0], true)),
        nr::LSTAT => Some((args[0], false)),
        nr::NEWFSTATAT if args[3] & !STAT_FLAGS == 0 => Some((args[1], follows(args[3]))),
        nr::STATX
            if args[2] & !(STAT_FLAGS | STATX_SYNC) == 0
                && args[2] & STATX_SYNC != STATX_SYNC
                && args[3] & STATX_RESERVED == 0 =>
        {
            Some((args[1], follows(args[2])))
        }
        nr::READLINK if args[2] as i32 > 0 => Some((args[0], false)),
        nr::READLINKAT if args[3] as i32 > 0 => Some((args[1], false)),
        // Not the access family: it checks with the real ids and may drop capabilities,
        // so its lookups can differ from the engine's.
        _ => None,
    }
}

/// Whether a call could make the engine's path lookups differ from the program's from
/// then on: a change of root, mount namespace or credentials.
pub fn changes_lookup(sysno: u64) -> bool {
    // A clone into new namespaces does too: see `new_namespaces`.
    matches!(
        sysno,
        nr::CHROOT
            | nr::PIVOT_ROOT
            | nr::UNSHARE
            | nr::SETNS
            | nr::MOUNT
            | nr::UMOUNT2
            | nr::MOVE_MOUNT
            | nr::SETUID
            | nr::SETGID
            | nr::SETREUID
            | nr::SETREGID
            | nr::SETRESUID
            | nr::SETRESGID
            | nr::SETFSUID
            | nr::SETFSGID
            | nr::SETGROUPS
            | nr::CAPSET
    )
}

/// Whether clone or clone3 flags give the child a mount or user namespace of its own (in
/// a new user namespace it loses the capabilities the engine may have).
pub fn new_namespaces(clone_flags: u64) -> bool {
    clone_flags & (libc::CLONE_NEWNS | libc::CLONE_NEWUSER) as u64 != 0
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// If the call at this entry stop names an absolute path that does not exist (for the
/// program as for the engine, see the module docs), the errno the call would fail with.
pub fn missing(task: &mut Task, sysno: u64, args: &[u64; 6]) -> Result<Option<i32>> {
    let Some((ptr, follow)) = path_arg(sysno, args) else {
        return Ok(None);
    };
    if ptr == 0 {
        return Ok(None);
    }
    let Ok(path) = task.read_cstr(ptr, libc::PATH_MAX as usize) else {
        return Ok(None); // a bad pointer: the call itself says EFAULT
    };
    if path.first() != Some(&b'/') || path.len() >= libc::PATH_MAX as usize {
        return Ok(None);
    }
    let Ok(cpath) = std::ffi::CString::new(path) else {
        return Ok(None);
    };
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW }) as u64,
        mode: 0,
        resolve: RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid C string and a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: our own descriptor, just opened.
        unsafe { libc::close(fd as i32) };
        return Ok(None);
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Ok(matches!(errno, libc::ENOENT | libc::ENOTDIR).then_some(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_which_argument_is_the_path() {
        let args = |a: [u64; 6]| a;
        assert_eq!(
            path_arg(nr::OPENAT, &args([0, 7, 0, 0, 0, 0])),
            Some((7, true))
        );
        let creat = libc::O_CREAT as u64;
        assert_eq!(path_arg(nr::OPENAT, &args([0, 7, creat, 0, 0, 0])), None);
        let nofollow = libc::AT_SYMLINK_NOFOLLOW as u64;
        assert_eq!(
            path_arg(nr::NEWFSTATAT, &args([0, 7, 8, nofollow, 0, 0])),
            Some((7, false))
        );
        assert_eq!(
            path_arg(nr::STATX, &args([0, 7, nofollow, 0, 0, 0])),
            Some((7, false))
        );
        assert_eq!(
            path_arg(nr::LSTAT, &args([7, 0, 0, 0, 0, 0])),
            Some((7, false))
        );
        assert_eq!(path_arg(nr::READ, &args([7, 0, 0, 0, 0, 0])), None);
    }
}
