//! Facts of the Linux x86_64 kernel ABI that the engine relies on, each stated once.
//! (System call numbers come from the table, `crate::syscalls::nr`.)

/// `arch_prctl` code: whether `cpuid` faults in this thread.
pub const ARCH_GET_CPUID: u64 = 0x1011;
/// `arch_prctl` code: make `cpuid` fault (argument 0) or not (1) in this thread.
pub const ARCH_SET_CPUID: u64 = 0x1012;

/// `AUDIT_ARCH_X86_64`: the architecture of a 64-bit system call, as seccomp and
/// `PTRACE_GET_SYSCALL_INFO` report it.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The process (thread group) of task `tid`, from `/proc/TID/status`, or `None` when
/// the task is gone.
pub fn thread_group(tid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// The scheduler state letter of task `tid` in `/proc/TID/stat` (`R` running, `S`
/// sleeping, `D` uninterruptible, `t` a ptrace stop, `Z` zombie...), or `None` when the
/// task is gone.
pub fn task_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    // The state follows the command name, which may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().next()?.chars().next()
}

/// Restart codes a system call returns when a signal interrupted it. The program never
/// sees them: on the way back to user mode the kernel restarts the call, or turns them
/// into `EINTR` when a handler runs. A tracer sees them at the exit stop.
pub mod restart {
    /// Restart unless a handler without `SA_RESTART` runs.
    pub const ERESTARTSYS: i64 = -512;
    /// Always restart.
    pub const ERESTARTNOINTR: i64 = -513;
    /// Restart unless a handler runs.
    pub const ERESTARTNOHAND: i64 = -514;
    /// Restart through `restart_syscall` unless a handler runs.
    pub const ERESTART_RESTARTBLOCK: i64 = -516;

    /// Whether `ret` is one of the restart codes.
    pub fn is_restart(ret: i64) -> bool {
        matches!(
            ret,
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        )
    }

    /// Whether `ret` says a signal interrupted the call: a restart code or `EINTR`.
    pub fn interrupted(ret: i64) -> bool {
        is_restart(ret) || ret == -(libc::EINTR as i64)
    }
}
