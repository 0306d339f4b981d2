//! The memory digest of preemption points (`preempt::memory`): computed the usual way
//! (incremental where the kernel tracks soft-dirty pages, with page map shortcuts
//! everywhere), it equals the digest computed from scratch after every kind of change
//! to a real process's memory: writes, writes by the tracer, new and fixed mappings,
//! munmap, mremap, MADV_DONTNEED, fork and exec (`tests/fixtures/c/memory_digest.c`,
//! which stops itself after each change).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use recorder::preempt::memory::{
    digest, digest_from_scratch, soft_dirty_tracked, Definition, Preempted,
};
use recorder::ptrace::Task;

/// A thread pointer no stack holds (format 5's digest does not look at it).
const NO_THREAD: Preempted = Preempted { rsp: 0, fs_base: 0 };

/// The digest the usual way, twice (the second from the first's cache where there is
/// one), against the one from scratch.
fn check(pid: i32, label: &str) -> u64 {
    let mut task = Task::new(pid);
    let usual = digest(&mut task, None, Definition::PageHashes, NO_THREAD, &[]).expect("digest");
    let again = digest(&mut task, None, Definition::PageHashes, NO_THREAD, &[]).expect("digest");
    let scratch = digest_from_scratch(&mut task, None, Definition::PageHashes, NO_THREAD, &[])
        .expect("digest from scratch");
    assert_eq!(usual, scratch, "after `{label}`: process {pid}");
    assert_eq!(
        again, scratch,
        "after `{label}`, computed again: process {pid}"
    );
    usual
}

#[test]
fn the_incremental_digest_equals_the_one_from_scratch() {
    eprintln!(
        "soft-dirty pages tracked by this kernel: {}",
        soft_dirty_tracked()
    );
    let exe = test_support::fixture!("memory_digest");
    let mut child = Command::new(exe)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start memory_digest");
    let pid = child.id() as i32;
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut digests = std::collections::HashMap::new();
    for line in lines {
        let line = line.expect("read a line");
        if line == "done" {
            break;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f.len(), f[0]), (5, "stop"), "unexpected line {line:?}");
        let (label, other, buf) = (
            f[1],
            f[3].parse::<i32>().unwrap(),
            f[4].parse::<u64>().unwrap(),
        );
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WUNTRACED)).expect("waitpid") {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
            other => panic!("after `{label}`: {other:?}"),
        }
        let d = check(pid, label);
        if other != 0 {
            check(other, &format!("{label} (child)"));
        }
        digests.insert(label.to_string(), d);
        if label == "writes" {
            // What replay does with a syscall's results: the tracer writes.
            let mut task = Task::new(pid);
            task.write_mem(buf + 2 * 4096, &[0xa5; 64]).expect("write");
            let after = check(pid, "the tracer's write");
            assert_ne!(after, d, "the tracer's write must change the digest");
        }
        seen.push(label.to_string());
        if other != 0 {
            kill(Pid::from_raw(other), Signal::SIGCONT).expect("continue the child");
        }
        kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue");
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "memory_digest: {status}");
    assert_eq!(
        seen,
        [
            "start",
            "writes",
            "rewrites",
            "mmap",
            "same-bytes",
            "munmap",
            "mmap-fixed",
            "mremap",
            "dontneed",
            "fork",
            "child-exited",
            "exec",
            "exec-writes"
        ]
    );
    // Real changes show (the stack's line buffer differs between any two stops, so
    // equal digests cannot be asked of two stops).
    assert_ne!(digests["start"], digests["writes"]);
    assert_ne!(digests["same-bytes"], digests["munmap"]);
    assert_ne!(digests["exec"], digests["exec-writes"]);
}

#[test]
fn old_traces_keep_the_old_definition() {
    assert_eq!(Definition::of_format(4), Definition::Stream);
    assert_eq!(Definition::of_format(1), Definition::Stream);
    assert_eq!(Definition::of_format(5), Definition::PageHashes);
    assert_eq!(Definition::of_format(6), Definition::LiveStack);
    assert_eq!(Definition::of_format(9), Definition::LiveStack);
    assert_eq!(Definition::of_format(10), Definition::AllStacks);
    assert_eq!(
        Definition::of_format(recorder::trace::FORMAT_VERSION),
        Definition::RECORDED
    );
}

/// Starts `tests/fixtures/c/dead_stack.c` and waits until it stops itself: the child,
/// its pid and the five addresses it printed (MAIN, THREAD, THREAD_FS, NOGUARD and
/// GUARDED: see the fixture's header).
fn stopped_dead_stack() -> (std::process::Child, i32, Vec<u64>) {
    let exe = test_support::fixture!("dead_stack");
    let mut child = Command::new(exe)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dead_stack");
    let pid = child.id() as i32;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the line");
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert_eq!(f.len(), 5, "unexpected line {line:?}");
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WUNTRACED)).expect("waitpid") {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        other => panic!("dead_stack: {other:?}"),
    }
    (child, pid, f)
}

/// Format 6's digest and stack hash leave out a thread's dead stack (below `rsp - 128`),
/// which differs between record and replay (ld.so's lazy-binding trampoline saves the
/// extended state there with XSAVEC, whose bytes depend on which components the CPU
/// reports in use), and keep everything else: the red zone, and memory below a stack
/// pointer that is not known to be the thread's own stack
/// (`tests/fixtures/c/dead_stack.c`, stopped, written into by the test as a tracer
/// writes). Format 5's digest sees every write (the failure this fixes).
#[test]
fn the_dead_stack_below_the_red_zone_is_left_out() {
    use recorder::preempt::stack_hash;
    let (mut child, pid, f) = stopped_dead_stack();
    let (main, thread, thread_fs, noguard, guarded) = (f[0], f[1], f[2], f[3], f[4]);
    let mut task = Task::new(pid);
    let main_fs = 0; // the main thread's descriptor is not on its stack; unused there
    let mut fill = 0x40u8;
    let mut write = |task: &mut Task, at: u64, len: usize| {
        fill += 1;
        task.write_mem(at, &vec![fill; len]).expect("write");
    };
    let digests = |task: &mut Task, t: Preempted| {
        let live = digest(task, None, Definition::LiveStack, t, &[]).expect("digest");
        let scratch =
            digest_from_scratch(task, None, Definition::LiveStack, t, &[]).expect("from scratch");
        assert_eq!(live, scratch, "the usual digest and the one from scratch");
        // Alone in its address space, the digest of format 10 is format 6's.
        let all = digest(task, None, Definition::AllStacks, t, &[]).expect("digest");
        assert_eq!(all, live, "format 10's digest of a thread alone");
        let old = digest(task, None, Definition::PageHashes, t, &[]).expect("digest");
        let stack = stack_hash(task, t.rsp, Definition::LiveStack).expect("stack hash");
        (live, old, stack)
    };
    for (name, rsp, fs_base) in [("main", main, main_fs), ("thread", thread, thread_fs)] {
        let t = Preempted { rsp, fs_base };
        let (live, old, stack) = digests(&mut task, t);
        // Just below the red zone, in the same page (the stack hash's too).
        write(&mut task, rsp - 128 - 64, 64);
        // Four to six pages down: wholly dead pages.
        write(&mut task, rsp - 4 * 4096, 4096);
        write(&mut task, (rsp & !4095) - 6 * 4096, 8192);
        let (live2, old2, stack2) = digests(&mut task, t);
        assert_eq!(
            live2, live,
            "{name}: a write into the dead stack changed the digest"
        );
        assert_eq!(stack2, stack, "{name}: it changed the stack hash");
        assert_ne!(
            old2, old,
            "{name}: format 5's digest must see the dead stack"
        );
        // The red zone is live.
        write(&mut task, rsp - 128, 8);
        let (live3, _, stack3) = digests(&mut task, t);
        assert_ne!(live3, live, "{name}: the red zone is live");
        assert_ne!(stack3, stack, "{name}: the red zone is in the stack hash");
        // So is anything above the stack pointer.
        write(&mut task, rsp + 4096, 8);
        assert_ne!(digests(&mut task, t).0, live3, "{name}: above rsp");
    }
    // Not the thread's own stack: everything counts.
    for (name, rsp, fs_base) in [
        ("no guard below", noguard, noguard),
        ("not the thread's stack", guarded, thread_fs),
        (
            "the thread's stack with another thread's pointer",
            thread,
            1,
        ),
    ] {
        let t = Preempted { rsp, fs_base };
        let (live, _, _) = digests(&mut task, t);
        write(&mut task, rsp - 4 * 4096, 64);
        assert_ne!(digests(&mut task, t).0, live, "{name}: below rsp counts");
    }
    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue");
    let status = child.wait().expect("wait");
    assert!(status.success(), "dead_stack: {status}");
}

/// Format 10's digest leaves out the dead stack of every thread of the address space,
/// not only the preempted one's: another thread's dead stack differs between record
/// and replay too (ld.so's leftovers below the main thread's `rsp` at replay, zeros at
/// record: issue 16's `sigusr_spinners`). In a mapping that holds several stack
/// pointers, only the bytes below the lowest one's red zone are dead (a vfork child
/// runs on its parent's stack, below the parent's `rsp`).
#[test]
fn every_threads_dead_stack_is_left_out_from_format_10() {
    let (mut child, pid, f) = stopped_dead_stack();
    let (main, thread, thread_fs) = (f[0], f[1], f[2]);
    let mut task = Task::new(pid);
    let main_t = Preempted {
        rsp: main,
        fs_base: 0,
    };
    let thread_t = Preempted {
        rsp: thread,
        fs_base: thread_fs,
    };
    let mut fill = 0x60u8;
    let mut write = |task: &mut Task, at: u64, len: usize| {
        fill += 1;
        task.write_mem(at, &vec![fill; len]).expect("write");
    };
    let digests = |task: &mut Task, t: Preempted, others: &[Preempted]| {
        let all = digest(task, None, Definition::AllStacks, t, others).expect("digest");
        let scratch = digest_from_scratch(task, None, Definition::AllStacks, t, others)
            .expect("from scratch");
        assert_eq!(all, scratch, "the usual digest and the one from scratch");
        let six = digest(task, None, Definition::LiveStack, t, others).expect("digest");
        (all, six)
    };
    // Each thread preempted in turn, the other one's dead stack written into.
    for (name, t, other) in [
        ("main preempted", main_t, thread_t),
        ("thread preempted", thread_t, main_t),
    ] {
        let (all, six) = digests(&mut task, t, &[other]);
        write(&mut task, other.rsp - 128 - 64, 64);
        write(&mut task, other.rsp - 4 * 4096, 4096);
        let (all2, six2) = digests(&mut task, t, &[other]);
        assert_eq!(
            all2, all,
            "{name}: the other thread's dead stack changed it"
        );
        assert_ne!(
            six2, six,
            "{name}: format 6's digest must see the other's dead stack"
        );
        // The other thread's red zone and live stack count.
        write(&mut task, other.rsp - 128, 8);
        let (all3, _) = digests(&mut task, t, &[other]);
        assert_ne!(all3, all, "{name}: the other thread's red zone is live");
        write(&mut task, other.rsp + 4096, 8);
        assert_ne!(
            digests(&mut task, t, &[other]).0,
            all3,
            "{name}: above its rsp"
        );
    }
    // A second stack pointer lower in the main thread's [stack] (a vfork child on its
    // parent's stack): the bytes between the two are live, those below both dead.
    let lower = Preempted {
        rsp: main - 3 * 4096,
        fs_base: 0,
    };
    for (name, t, others) in [
        ("the lower one preempted", lower, [main_t]),
        ("the higher one preempted", main_t, [lower]),
    ] {
        let (all, _) = digests(&mut task, t, &others);
        write(&mut task, main - 2 * 4096, 64);
        let (all2, _) = digests(&mut task, t, &others);
        assert_ne!(all2, all, "{name}: live for the lower stack pointer");
        write(&mut task, lower.rsp - 128 - 4096, 64);
        assert_eq!(
            digests(&mut task, t, &others).0,
            all2,
            "{name}: dead for both"
        );
    }
    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue");
    let status = child.wait().expect("wait");
    assert!(status.success(), "dead_stack: {status}");
}
