//! Checks the syscall table generated from `recorder/syscalls.toml`: numbers and request
//! values against the `libc` crate (and the host's kernel headers when present), coverage
//! of the syscall numbers and of the calls the design brief lists, the classes the brief
//! prescribes, and the well-formedness of every memory argument.

use std::collections::BTreeMap;

use recorder::syscalls::{
    self, arch_prctl_code, by_name, fcntl_command, ioctl_request, keyctl_operation, lookup,
    name_of, nr, prctl_mm_option, prctl_option, Class, MemArg, RequestDesc, Size, SyscallDesc,
    ARCH_PRCTLS, FCNTLS, IOCTLS, KEYCTLS, PRCTLS, PRCTL_MMS, SYSCALLS,
};

/// The lists `build.rs` generates for this test: every row paired with libc's constant.
mod generated {
    include!(concat!(env!("OUT_DIR"), "/syscall_libc_check.rs"));
}

/// Syscalls the `libc` crate has no `SYS_` constant for, with their x86_64 numbers
/// (arch/x86/entry/syscalls/syscall_64.tbl).
const KERNEL_ONLY_SYSCALLS: &[(&str, u64)] = &[
    ("create_module", 174),
    ("get_kernel_syms", 177),
    ("query_module", 178),
    ("io_pgetevents", 333),
    ("uretprobe", 335),
    // Not the kernel's: our own tick request from instrumented code (src/ticks.rs).
    ("chaos_tick", 1000),
    ("chaos_syscallbuf_init", 1001),
    ("chaos_syscallbuf_flush", 1002),
    ("uprobe", 336),
    ("cachestat", 451),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// Request values the `libc` crate has no constant for (from the kernel's uapi headers).
const KERNEL_ONLY_REQUESTS: &[(&str, u64)] = &[
    // <linux/sockios.h>: the bridge requests.
    ("SIOCBRADDBR", 0x89a0),
    ("SIOCBRDELBR", 0x89a1),
    ("SIOCBRADDIF", 0x89a2),
    ("SIOCBRDELIF", 0x89a3),
    ("KEYCTL_WATCH_KEY", 32),
    ("BLKGETSIZE64", 0x8008_1272),
    ("FIGETBSZ", 2),
    ("KDGKBMODE", 0x4B44),
    ("VT_OPENQRY", 0x5600),
    ("VT_GETSTATE", 0x5603),
    ("FS_IOC_FSGETXATTR", 0x801C_581F),
    ("FS_IOC_FSSETXATTR", 0x401C_5820),
    ("FS_IOC_FIEMAP", 0xC020_660B),
    ("RNDGETENTCNT", 0x8004_5200),
    ("MTIOCGET", 0x8030_6D02),
    ("PERF_EVENT_IOC_ENABLE", 0x2400),
    ("PERF_EVENT_IOC_DISABLE", 0x2401),
    ("PERF_EVENT_IOC_REFRESH", 0x2402),
    ("PERF_EVENT_IOC_RESET", 0x2403),
    ("PERF_EVENT_IOC_PERIOD", 0x4008_2404),
    ("PERF_EVENT_IOC_ID", 0x8008_2407),
    ("PR_SVE_SET_VL", 50),
    ("PR_SVE_GET_VL", 51),
    ("PR_PAC_RESET_KEYS", 54),
    ("PR_SET_TAGGED_ADDR_CTRL", 55),
    ("PR_GET_TAGGED_ADDR_CTRL", 56),
    ("PR_GET_SHADOW_STACK_STATUS", 74),
    ("PR_SET_SHADOW_STACK_STATUS", 75),
    ("PR_LOCK_SHADOW_STACK_STATUS", 76),
    ("F_SETSIG", 10),
    ("F_GETSIG", 11),
    ("F_SETOWN_EX", 15),
    ("F_GETOWN_EX", 16),
    ("F_GETOWNER_UIDS", 17),
    ("F_DUPFD_QUERY", 1027),
    ("F_CREATED_QUERY", 1028),
    ("F_GET_RW_HINT", 1035),
    ("F_SET_RW_HINT", 1036),
    ("F_GET_FILE_RW_HINT", 1037),
    ("F_SET_FILE_RW_HINT", 1038),
    ("PR_SET_IO_FLUSHER", 57),
    ("PR_GET_IO_FLUSHER", 58),
    ("PR_SET_SYSCALL_USER_DISPATCH", 59),
    ("PR_GET_AUXV", 0x4155_5856),
    ("ARCH_SET_GS", 0x1001),
    ("ARCH_SET_FS", 0x1002),
    ("ARCH_GET_FS", 0x1003),
    ("ARCH_GET_GS", 0x1004),
    ("ARCH_GET_CPUID", 0x1011),
    ("ARCH_SET_CPUID", 0x1012),
    ("ARCH_GET_XCOMP_SUPP", 0x1021),
    ("ARCH_GET_XCOMP_PERM", 0x1022),
    ("ARCH_REQ_XCOMP_PERM", 0x1023),
    ("ARCH_MAP_VDSO_X32", 0x2001),
    ("ARCH_MAP_VDSO_32", 0x2002),
    ("ARCH_MAP_VDSO_64", 0x2003),
    ("ARCH_GET_UNTAG_MASK", 0x4001),
    ("ARCH_ENABLE_TAGGED_ADDR", 0x4002),
    ("ARCH_SHSTK_ENABLE", 0x5001),
    ("ARCH_SHSTK_DISABLE", 0x5002),
    ("ARCH_SHSTK_LOCK", 0x5003),
    ("ARCH_SHSTK_UNLOCK", 0x5004),
    ("ARCH_SHSTK_STATUS", 0x5005),
];

/// What a Rust test binary asks of the kernel (design brief, strace -c over nine test
/// binaries), plus the vDSO calls that become real syscalls once the vDSO is out of the way.
const DESIGN_BRIEF_SYSCALLS: &[&str] = &[
    "mprotect",
    "mmap",
    "read",
    "close",
    "rt_sigaction",
    "write",
    "rt_sigprocmask",
    "sigaltstack",
    "munmap",
    "lseek",
    "mremap",
    "sched_getaffinity",
    "openat",
    "futex",
    "gettid",
    "newfstatat",
    "statx",
    "set_robust_list",
    "rseq",
    "madvise",
    "brk",
    "prlimit64",
    "getrandom",
    "clone3",
    "pread64",
    "prctl",
    "execve",
    "fcntl",
    "poll",
    "set_tid_address",
    "arch_prctl",
    "access",
    "ioctl",
    "getcwd",
    "epoll_ctl",
    "clock_nanosleep",
    "epoll_wait",
    "socket",
    "recvfrom",
    "setsockopt",
    "sendto",
    "dup2",
    "pipe2",
    "listen",
    "geteuid",
    "eventfd2",
    "epoll_create1",
    "connect",
    "bind",
    "accept4",
    "wait4",
    "vfork",
    "rt_sigreturn",
    "restart_syscall",
    "getuid",
    "getsockopt",
    "getsockname",
    "getppid",
    "getpid",
    "getgid",
    "getegid",
    "clock_gettime",
    "gettimeofday",
    "time",
    "getcpu",
];

/// Syscalls that write into the caller's memory. A recorded or executed row for one of them
/// must describe its outputs or be `special` (hand-written handler); otherwise replay would
/// silently leave the memory as it was before the call.
const WRITES_MEMORY: &[&str] = &[
    "read",
    "pread64",
    "readv",
    "preadv",
    "preadv2",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "ustat",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "pipe",
    "pipe2",
    "socketpair",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "getsockopt",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendmmsg",
    "getcwd",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "gettimeofday",
    "clock_gettime",
    "clock_getres",
    "time",
    "nanosleep",
    "clock_nanosleep",
    "getrandom",
    "uname",
    "sysinfo",
    "getrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "wait4",
    "waitid",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "rt_sigaction",
    "rt_sigprocmask",
    "sigaltstack",
    "rt_sigpending",
    "rt_sigtimedwait",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timerfd_settime",
    "timerfd_gettime",
    "getcpu",
    "getresuid",
    "getresgid",
    "getgroups",
    "capget",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getattr",
    "sched_rr_get_interval",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "get_robust_list",
    "sendfile",
    "splice",
    "copy_file_range",
    "mq_timedreceive",
    "mq_getsetattr",
    "adjtimex",
    "clock_adjtime",
    "mincore",
    "get_mempolicy",
    "name_to_handle_at",
    "cachestat",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "vmsplice",
    "ioctl",
    "fcntl",
    "prctl",
    "arch_prctl",
    "futex",
    "clone",
    "clone3",
];

fn desc(name: &str) -> &'static SyscallDesc {
    by_name(name).unwrap_or_else(|| panic!("{name} has no row in syscalls.toml"))
}

fn out(arg: u8, size: Size) -> MemArg {
    MemArg {
        arg,
        size,
        max: None,
        on_error: false,
    }
}

/// An output the kernel writes also when the call fails.
fn always(arg: u8, size: Size) -> MemArg {
    MemArg {
        arg,
        size,
        max: None,
        on_error: true,
    }
}

/// An output sized by the result, with the most the kernel may write.
fn capped(arg: u8, size: Size, max: Size) -> MemArg {
    MemArg {
        arg,
        size,
        max: Some(max),
        on_error: false,
    }
}

/// Fails with every message at once.
fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn numbers_match_libc() {
    let problems = generated::LIBC_SYSCALLS
        .iter()
        .filter(|(_, table, libc)| *table as i64 != *libc)
        .map(|(name, table, libc)| {
            format!("{name}: table says {table}, libc::SYS_{name} is {libc}")
        })
        .collect();
    assert_no_problems("syscall numbers", problems);
}

#[test]
fn rows_without_libc_constant_have_the_kernel_numbers() {
    let known: BTreeMap<&str, u64> = KERNEL_ONLY_SYSCALLS.iter().copied().collect();
    let mut problems = Vec::new();
    for (name, table) in generated::NOT_IN_LIBC_SYSCALLS {
        match known.get(name) {
            None => problems.push(format!(
                "{name} is marked libc = false but this test does not know its number; \
                 add it to KERNEL_ONLY_SYSCALLS (or drop libc = false if libc has SYS_{name})"
            )),
            Some(expected) if expected != table => problems.push(format!(
                "{name}: table says {table}, the kernel's is {expected}"
            )),
            Some(_) => {}
        }
    }
    assert_no_problems("syscalls missing from libc", problems);
}

#[test]
fn every_row_is_compared_with_a_reference_number() {
    assert_eq!(
        generated::LIBC_SYSCALLS.len() + generated::NOT_IN_LIBC_SYSCALLS.len(),
        SYSCALLS.len()
    );
}

/// Compares with `asm/unistd_64.h` when the machine has the kernel headers installed.
#[test]
fn host_kernel_headers_agree() {
    let candidates = [
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
    ];
    let Some(text) = candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    else {
        eprintln!("no asm/unistd_64.h on this machine; skipped");
        return;
    };
    let mut problems = Vec::new();
    let mut seen = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some("#define"), Some(macro_name), Some(value)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Some(name) = macro_name.strip_prefix("__NR_") else {
            continue;
        };
        let Ok(number) = value.parse::<u64>() else {
            continue;
        };
        seen += 1;
        match by_name(name) {
            None => problems.push(format!(
                "{name} ({number}) is in the kernel headers but has no row"
            )),
            Some(d) if d.nr != number => problems.push(format!(
                "{name}: table says {}, the headers say {number}",
                d.nr
            )),
            Some(_) => {}
        }
    }
    assert!(
        seen > 300,
        "parsed only {seen} syscall numbers from the headers"
    );
    assert_no_problems("kernel headers", problems);
}

#[test]
fn required_number_ranges_are_covered() {
    let missing: Vec<String> = (0..=334u64)
        .chain(424..=462)
        .filter(|&n| lookup(n).is_none())
        .map(|n| n.to_string())
        .collect();
    assert_no_problems("syscall numbers without a row", missing);
}

#[test]
fn lookups_agree_with_the_table() {
    assert!(
        SYSCALLS.windows(2).all(|w| w[0].nr < w[1].nr),
        "SYSCALLS must be sorted by number"
    );
    for d in SYSCALLS {
        assert!(std::ptr::eq(lookup(d.nr).unwrap(), d), "lookup({})", d.nr);
        assert!(
            std::ptr::eq(by_name(d.name).unwrap(), d),
            "by_name({})",
            d.name
        );
        assert_eq!(name_of(d.nr), d.name);
    }
    assert_eq!(syscalls::MAX_NR, SYSCALLS.last().unwrap().nr);
    assert!(lookup(400).is_none());
    assert!(lookup(syscalls::MAX_NR + 1).is_none());
    assert!(lookup(u64::MAX).is_none());
    assert!(by_name("no_such_call").is_none());
    assert!(by_name("").is_none());
    assert_eq!(name_of(999), "syscall_999");
    // syscall(-1) is named as the program wrote it.
    assert_eq!(name_of(u64::MAX), "syscall_-1");

    assert_eq!(nr::READ, 0);
    assert_eq!(nr::WRITE, 1);
    assert_eq!(nr::MMAP, 9);
    assert_eq!(nr::_SYSCTL, 156);
    assert_eq!(nr::FUTEX, 202);
    assert_eq!(nr::NEWFSTATAT, 262);
    assert_eq!(nr::RSEQ, 334);
    assert_eq!(nr::CLONE3, 435);
    assert_eq!(nr::MSEAL, 462);
    assert_eq!(nr::NEWFSTATAT as i64, libc::SYS_newfstatat);
}

fn check_request_table(
    table: &str,
    rows: &[RequestDesc],
    find: fn(u64) -> Option<&'static RequestDesc>,
    libc_rows: &[(&str, u64, u64)],
    not_in_libc: &[(&str, u64)],
    problems: &mut Vec<String>,
) {
    if !rows.windows(2).all(|w| w[0].value < w[1].value) {
        problems.push(format!("{table} is not sorted by value"));
    }
    if libc_rows.len() + not_in_libc.len() != rows.len() {
        problems.push(format!(
            "{table}: not every row is compared with a reference value"
        ));
    }
    for r in rows {
        match find(r.value) {
            Some(found) if std::ptr::eq(found, r) => {}
            _ => problems.push(format!(
                "{table}: lookup of {} ({:#x}) fails",
                r.name, r.value
            )),
        }
    }
    for (name, value, libc_value) in libc_rows {
        if value != libc_value {
            problems.push(format!(
                "{table} {name}: table says {value:#x}, libc says {libc_value:#x}"
            ));
        }
    }
    let known: BTreeMap<&str, u64> = KERNEL_ONLY_REQUESTS.iter().copied().collect();
    for (name, value) in not_in_libc {
        match known.get(name) {
            None => problems.push(format!(
                "{table} {name} is marked libc = false but this test does not know its value"
            )),
            Some(expected) if expected != value => problems.push(format!(
                "{table} {name}: table says {value:#x}, expected {expected:#x}"
            )),
            Some(_) => {}
        }
    }
}

#[test]
fn request_values_match_libc() {
    let mut problems = Vec::new();
    check_request_table(
        "IOCTLS",
        IOCTLS,
        ioctl_request,
        generated::LIBC_IOCTLS,
        generated::NOT_IN_LIBC_IOCTLS,
        &mut problems,
    );
    check_request_table(
        "FCNTLS",
        FCNTLS,
        fcntl_command,
        generated::LIBC_FCNTLS,
        generated::NOT_IN_LIBC_FCNTLS,
        &mut problems,
    );
    check_request_table(
        "PRCTLS",
        PRCTLS,
        prctl_option,
        generated::LIBC_PRCTLS,
        generated::NOT_IN_LIBC_PRCTLS,
        &mut problems,
    );
    check_request_table(
        "PRCTL_MMS",
        PRCTL_MMS,
        prctl_mm_option,
        generated::LIBC_PRCTL_MMS,
        generated::NOT_IN_LIBC_PRCTL_MMS,
        &mut problems,
    );
    check_request_table(
        "KEYCTLS",
        KEYCTLS,
        keyctl_operation,
        generated::LIBC_KEYCTLS,
        generated::NOT_IN_LIBC_KEYCTLS,
        &mut problems,
    );
    check_request_table(
        "ARCH_PRCTLS",
        ARCH_PRCTLS,
        arch_prctl_code,
        generated::LIBC_ARCH_PRCTLS,
        generated::NOT_IN_LIBC_ARCH_PRCTLS,
        &mut problems,
    );
    assert_no_problems("request values", problems);
    assert!(ioctl_request(0xdead_beef).is_none());
    assert!(fcntl_command(9999).is_none());
    assert!(prctl_option(9999).is_none());
    assert!(arch_prctl_code(0).is_none());
    assert!(keyctl_operation(9999).is_none());
}

fn request<'a>(rows: &'a [RequestDesc], name: &str) -> &'a RequestDesc {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} has no row in syscalls.toml"))
}

#[test]
fn required_requests_are_described() {
    for name in ["TCGETS", "TIOCGWINSZ", "FIONREAD", "TIOCGPGRP"] {
        let r = request(IOCTLS, name);
        assert_eq!(r.class, Class::Recorded, "{name}");
        assert_eq!(r.outputs.len(), 1, "{name} writes one struct");
    }
    for name in ["TCSETS", "TCSETSW", "TCSETSF", "TIOCSWINSZ", "FIONBIO"] {
        let r = request(IOCTLS, name);
        assert_eq!(r.class, Class::Recorded, "{name}");
        assert!(
            r.outputs.is_empty() && r.inputs.len() == 1,
            "{name} only reads"
        );
    }
    for name in ["FIOCLEX", "FIONCLEX"] {
        let r = request(IOCTLS, name);
        assert!(r.outputs.is_empty() && r.inputs.is_empty(), "{name}");
    }
    assert_eq!(
        request(IOCTLS, "TCGETS").outputs,
        &[out(2, Size::Fixed(36))]
    );
    assert_eq!(
        request(IOCTLS, "TIOCGWINSZ").outputs,
        &[out(2, Size::Fixed(8))]
    );

    for name in [
        "F_DUPFD",
        "F_DUPFD_CLOEXEC",
        "F_GETFD",
        "F_SETFD",
        "F_GETFL",
        "F_SETFL",
        "F_GETPIPE_SZ",
        "F_SETPIPE_SZ",
        "F_ADD_SEALS",
        "F_GET_SEALS",
    ] {
        let r = request(FCNTLS, name);
        assert_eq!(r.class, Class::Recorded, "{name}");
        assert!(
            r.outputs.is_empty() && r.inputs.is_empty(),
            "{name} passes values only"
        );
    }
    for name in ["F_GETLK", "F_OFD_GETLK"] {
        let r = request(FCNTLS, name);
        assert_eq!(r.outputs, &[out(2, Size::Fixed(32))], "{name}");
        assert_eq!(r.inputs, &[out(2, Size::Fixed(32))], "{name}");
    }
    for name in ["F_SETLK", "F_SETLKW", "F_OFD_SETLK", "F_OFD_SETLKW"] {
        let r = request(FCNTLS, name);
        assert!(r.outputs.is_empty(), "{name}");
        assert_eq!(r.inputs, &[out(2, Size::Fixed(32))], "{name}");
    }

    assert_eq!(request(PRCTLS, "PR_SET_NAME").inputs.len(), 1);
    assert_eq!(request(PRCTLS, "PR_SET_VMA").inputs, &[out(4, Size::CStr)]);
    assert_eq!(
        request(PRCTLS, "PR_GET_NAME").outputs,
        &[out(1, Size::Fixed(16))]
    );
    assert_eq!(
        request(PRCTLS, "PR_GET_CHILD_SUBREAPER").outputs,
        &[out(1, Size::Fixed(4))]
    );
    for name in [
        "PR_SET_PDEATHSIG",
        "PR_GET_DUMPABLE",
        "PR_SET_DUMPABLE",
        "PR_SET_VMA",
        "PR_SET_NO_NEW_PRIVS",
        "PR_GET_TSC",
        "PR_SET_TSC",
        "PR_CAPBSET_READ",
        "PR_SET_CHILD_SUBREAPER",
    ] {
        assert_eq!(request(PRCTLS, name).class, Class::Recorded, "{name}");
    }
    // The program's own seccomp filters run rewritten (`record/program_filters.rs`);
    // the install calls are recorded like any.
    assert_eq!(request(PRCTLS, "PR_SET_SECCOMP").class, Class::Recorded);
    assert_eq!(desc("seccomp").class, Class::Recorded);
    // PR_SET_MM: per sub-option. Its size query writes an unsigned int; what moves the
    // memory map is refused.
    assert_eq!(
        request(PRCTL_MMS, "PR_SET_MM_MAP_SIZE").outputs,
        &[out(2, Size::Fixed(4))]
    );
    for name in [
        "PR_SET_MM_START_BRK",
        "PR_SET_MM_BRK",
        "PR_SET_MM_MAP",
        "PR_SET_MM_EXE_FILE",
    ] {
        assert!(
            matches!(request(PRCTL_MMS, name).class, Class::Unsupported { .. }),
            "{name}"
        );
    }
}

#[test]
fn design_brief_syscalls_are_present() {
    let mut problems = Vec::new();
    for name in DESIGN_BRIEF_SYSCALLS {
        match by_name(name) {
            None => problems.push(format!("{name} has no row")),
            Some(d) if matches!(d.class, Class::Unsupported { .. }) => problems.push(format!(
                "{name} is unsupported, but every Rust test binary calls it"
            )),
            Some(_) => {}
        }
    }
    assert_no_problems("design brief syscalls", problems);
}

#[test]
fn classes_follow_the_design() {
    let executed = [
        "mmap",
        "munmap",
        "mprotect",
        "mremap",
        "brk",
        "madvise",
        "arch_prctl",
        "rt_sigaction",
        "sigaltstack",
        "rt_sigprocmask",
        "rt_sigreturn",
        "set_tid_address",
        "set_robust_list",
        "exit",
        "exit_group",
        "execve",
        "clone",
        "clone3",
        "fork",
        "vfork",
    ];
    for name in executed {
        assert_eq!(desc(name).class, Class::Executed, "{name}");
    }
    for name in [
        "madvise",
        "arch_prctl",
        "execve",
        "clone",
        "clone3",
        "fork",
        "vfork",
    ] {
        assert!(desc(name).special, "{name} needs a hand-written handler");
    }

    // Into the program's own memory; the special handler refuses another process's.
    let vm_write = desc("process_vm_writev");
    assert_eq!(vm_write.class, Class::Recorded);
    assert!(vm_write.special);

    let futex = desc("futex");
    assert_eq!(futex.class, Class::Recorded);
    assert!(futex.special && futex.may_block);

    // The program's own perf events: opened at record, their reads and ioctls recorded.
    let perf = desc("perf_event_open");
    assert_eq!(perf.class, Class::Recorded);
    assert!(perf.changes_fds);

    let refused = [
        ("rseq", libc::ENOSYS),
        ("io_uring_setup", libc::ENOSYS),
        ("io_uring_enter", libc::ENOSYS),
        ("io_uring_register", libc::ENOSYS),
        ("userfaultfd", libc::EPERM),
        ("bpf", libc::EPERM),
        ("kcmp", libc::ENOSYS),
        ("memfd_secret", libc::ENOSYS),
        ("pkey_alloc", libc::ENOSPC),
        ("lookup_dcookie", libc::ENOSYS),
    ];
    for (name, errno) in refused {
        assert_eq!(desc(name).class, Class::Refused { errno }, "{name}");
    }

    let unsupported = [
        "ptrace",
        "modify_ldt",
        "init_module",
        "finit_module",
        "delete_module",
        "swapon",
        "swapoff",
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "iopl",
        "ioperm",
        "remap_file_pages",
        "migrate_pages",
        "move_pages",
        // Not supported yet (their memory effects have no handler).
        "vmsplice",
        "name_to_handle_at",
    ];
    for name in unsupported {
        assert!(
            matches!(desc(name).class, Class::Unsupported { .. }),
            "{name} must be unsupported"
        );
    }
    assert_eq!(desc("chroot").class, Class::Recorded);
    // The program's own namespaces and mounts: replay gives the recorded results without
    // making the calls (a new time namespace is refused by the engine, see `check_unshare`;
    // a new pid namespace's pids are recorded, see `recorder::pidns`).
    for name in [
        "unshare",
        "mount",
        "umount2",
        "pivot_root",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ] {
        assert_eq!(desc(name).class, Class::Recorded, "{name}");
    }

    // System V IPC (objects created IPC_PRIVATE only, see `special.rs`) and the batched
    // socket calls are recorded; shmat and shmdt shape the address space and are redone
    // at replay, and execveat replays as execve.
    for name in [
        "shmget",
        "shmctl",
        "msgget",
        "msgsnd",
        "msgrcv",
        "msgctl",
        "semget",
        "semop",
        "semctl",
        "semtimedop",
        "syslog",
        "quotactl",
        "recvmmsg",
        "sendmmsg",
    ] {
        assert_eq!(desc(name).class, Class::Recorded, "{name}");
    }
    for name in ["shmat", "shmdt", "execveat"] {
        assert_eq!(desc(name).class, Class::Executed, "{name}");
    }
}

/// The per-call exceptions record and replay take from the table.
#[test]
fn answers_and_unchecked_results_follow_the_design() {
    let answered: Vec<_> = SYSCALLS
        .iter()
        .filter_map(|d| d.answer.map(|a| (d.name, a)))
        .collect();
    assert_eq!(answered, [("sched_setaffinity", 0)]);
    let unchecked: Vec<_> = SYSCALLS
        .iter()
        .filter(|d| !d.same_result)
        .map(|d| d.name)
        .collect();
    assert_eq!(
        unchecked,
        ["rt_sigreturn", "clone", "set_tid_address", "clone3"]
    );
    for d in SYSCALLS.iter().filter(|d| !d.same_result) {
        assert_eq!(d.class, Class::Executed, "{}", d.name);
    }
}

fn size_problem(size: Size, arg: u8, output: bool) -> Option<String> {
    let arg_ok = |n: u8| n < 6 && n != arg;
    match size {
        Size::Fixed(0) | Size::ArgTimes(_, 0) | Size::RetTimes(0) => Some("zero size".into()),
        Size::Arg(n) | Size::ArgTimes(n, _) | Size::SockLen(n) | Size::Iovec(n) if !arg_ok(n) => {
            Some(format!("bad size argument {n}"))
        }
        Size::CStr if output => Some("a cstr output".into()),
        Size::Ret | Size::RetTimes(_) | Size::SockLen(_) if !output => {
            Some("an input sized at syscall exit".into())
        }
        _ => None,
    }
}

fn mem_arg_problems(
    what: &str,
    class: Class,
    outputs: &[MemArg],
    inputs: &[MemArg],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (list, output) in [(outputs, true), (inputs, false)] {
        for m in list {
            if m.arg >= 6 {
                problems.push(format!("{what}: pointer argument {}", m.arg));
            }
            if let Some(p) = size_problem(m.size, m.arg, output) {
                problems.push(format!("{what}: arg {}: {p}", m.arg));
            }
        }
    }
    match class {
        Class::Refused { errno } => {
            if errno <= 0 {
                problems.push(format!("{what}: errno {errno}"));
            }
            if !outputs.is_empty() || !inputs.is_empty() {
                problems.push(format!("{what}: refused but describes memory"));
            }
        }
        Class::Unsupported { hint } if hint.trim().is_empty() => {
            problems.push(format!("{what}: unsupported without a hint"))
        }
        _ => {}
    }
    problems
}

#[test]
fn memory_arguments_are_well_formed() {
    let mut problems = Vec::new();
    for d in SYSCALLS {
        problems.extend(mem_arg_problems(d.name, d.class, d.outputs, d.inputs));
        if matches!(d.class, Class::Refused { .. }) && d.may_block {
            problems.push(format!("{}: refused but may_block", d.name));
        }
    }
    for rows in [IOCTLS, FCNTLS, PRCTLS, ARCH_PRCTLS] {
        for r in rows {
            problems.extend(mem_arg_problems(r.name, r.class, r.outputs, r.inputs));
        }
    }
    assert_no_problems("memory arguments", problems);
}

#[test]
fn calls_that_write_memory_describe_their_outputs() {
    let mut problems = Vec::new();
    for name in WRITES_MEMORY {
        let d = desc(name);
        let replayed = matches!(d.class, Class::Recorded | Class::Executed);
        if replayed && d.outputs.is_empty() && !d.special {
            problems.push(format!(
                "{name} writes memory but has no outputs and is not special"
            ));
        }
    }
    assert_no_problems("outputs", problems);
}

/// The exact memory arguments of the calls a Rust test binary makes most; a wrong size
/// here is a silent wrong replay.
#[test]
fn common_calls_have_the_expected_memory_arguments() {
    use Size::*;
    let expected: &[(&str, &[MemArg], &[MemArg])] = &[
        ("read", &[capped(1, Ret, Arg(2))], &[]),
        ("pread64", &[capped(1, Ret, Arg(2))], &[]),
        ("write", &[], &[out(1, Arg(2))]),
        ("pwrite64", &[], &[out(1, Arg(2))]),
        ("readv", &[out(1, Iovec(2))], &[]),
        ("writev", &[], &[out(1, Iovec(2))]),
        ("openat", &[], &[out(1, CStr)]),
        ("access", &[], &[out(0, CStr)]),
        ("fstat", &[out(1, Fixed(144))], &[]),
        ("newfstatat", &[out(2, Fixed(144))], &[out(1, CStr)]),
        ("statx", &[out(4, Fixed(256))], &[out(1, CStr)]),
        ("fstatfs", &[out(1, Fixed(120))], &[]),
        ("getcwd", &[out(0, Ret)], &[]),
        ("readlink", &[out(1, Ret)], &[out(0, CStr)]),
        ("getdents64", &[out(1, Ret)], &[]),
        ("pipe2", &[out(0, Fixed(8))], &[]),
        ("socketpair", &[out(3, Fixed(8))], &[]),
        ("connect", &[], &[out(1, Arg(2))]),
        ("bind", &[], &[out(1, Arg(2))]),
        (
            "accept4",
            &[out(1, SockLen(2)), out(2, Fixed(4))],
            &[out(2, Fixed(4))],
        ),
        (
            "getsockname",
            &[out(1, SockLen(2)), out(2, Fixed(4))],
            &[out(2, Fixed(4))],
        ),
        ("setsockopt", &[], &[out(3, Arg(4))]),
        (
            "getsockopt",
            &[out(3, SockLen(4)), out(4, Fixed(4))],
            &[out(4, Fixed(4))],
        ),
        ("sendto", &[], &[out(1, Arg(2)), out(4, Arg(5))]),
        (
            "recvfrom",
            &[capped(1, Ret, Arg(2)), out(4, SockLen(5)), out(5, Fixed(4))],
            &[out(5, Fixed(4))],
        ),
        ("poll", &[out(0, ArgTimes(1, 8))], &[out(0, ArgTimes(1, 8))]),
        ("epoll_ctl", &[], &[out(3, Fixed(12))]),
        (
            "epoll_wait",
            &[capped(1, RetTimes(12), ArgTimes(2, 12))],
            &[],
        ),
        ("rt_sigaction", &[out(2, Fixed(32))], &[out(1, Fixed(32))]),
        ("rt_sigprocmask", &[out(2, Arg(3))], &[out(1, Arg(3))]),
        ("sigaltstack", &[out(1, Fixed(24))], &[out(0, Fixed(24))]),
        ("wait4", &[out(1, Fixed(4)), out(3, Fixed(144))], &[]),
        ("waitid", &[always(2, Fixed(128)), out(4, Fixed(144))], &[]),
        ("clock_gettime", &[out(1, Fixed(16))], &[]),
        ("clock_getres", &[out(1, Fixed(16))], &[]),
        ("gettimeofday", &[out(0, Fixed(16)), out(1, Fixed(8))], &[]),
        ("time", &[out(0, Fixed(8))], &[]),
        (
            "clock_nanosleep",
            &[out(3, Fixed(16))],
            &[out(2, Fixed(16))],
        ),
        ("nanosleep", &[out(1, Fixed(16))], &[out(0, Fixed(16))]),
        ("getrandom", &[out(0, Ret)], &[]),
        ("uname", &[out(0, Fixed(390))], &[]),
        ("sysinfo", &[out(0, Fixed(112))], &[]),
        ("getrlimit", &[out(1, Fixed(16))], &[]),
        ("prlimit64", &[out(3, Fixed(16))], &[out(2, Fixed(16))]),
        ("getrusage", &[out(1, Fixed(144))], &[]),
        ("times", &[out(0, Fixed(32))], &[]),
        ("getcpu", &[out(0, Fixed(4)), out(1, Fixed(4))], &[]),
        (
            "timerfd_settime",
            &[out(3, Fixed(32))],
            &[out(2, Fixed(32))],
        ),
        ("timerfd_gettime", &[out(1, Fixed(32))], &[]),
        ("sched_getaffinity", &[out(2, Ret)], &[]),
    ];
    let mut problems = Vec::new();
    for (name, outputs, inputs) in expected {
        let d = desc(name);
        if d.outputs != *outputs {
            problems.push(format!(
                "{name}: outputs {:?}, expected {outputs:?}",
                d.outputs
            ));
        }
        if d.inputs != *inputs {
            problems.push(format!(
                "{name}: inputs {:?}, expected {inputs:?}",
                d.inputs
            ));
        }
    }
    assert_no_problems("memory arguments of common calls", problems);

    let blocking = [
        "read",
        "write",
        "poll",
        "epoll_wait",
        "futex",
        "accept4",
        "connect",
        "recvfrom",
        "wait4",
        "clock_nanosleep",
        "nanosleep",
        "vfork",
    ];
    for name in blocking {
        assert!(desc(name).may_block, "{name} may block");
    }
    for name in ["getpid", "mmap", "close", "clock_gettime"] {
        assert!(!desc(name).may_block, "{name} does not block");
    }
}
