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
use recorder::preempt::memory::{digest, digest_from_scratch, soft_dirty_tracked, Definition};
use recorder::ptrace::Task;

/// The digest the usual way, twice (the second from the first's cache where there is
/// one), against the one from scratch.
fn check(pid: i32, label: &str) -> u64 {
    let mut task = Task::new(pid);
    let usual = digest(&mut task, None, Definition::PageHashes).expect("digest");
    let again = digest(&mut task, None, Definition::PageHashes).expect("digest");
    let scratch = digest_from_scratch(&mut task, None).expect("digest from scratch");
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
    assert_eq!(
        Definition::of_format(recorder::trace::FORMAT_VERSION),
        Definition::PageHashes
    );
}
