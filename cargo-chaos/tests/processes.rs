//! Process trees, asynchronous signals, preemption and shutdown (issue 4): each fixture
//! is recorded and replayed, and the replay must print exactly what the recording did.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use test_support::{run, Run};

fn bin() -> &'static Path {
    test_support::cargo_chaos!()
}

fn fixture(name: &str) -> PathBuf {
    test_support::fixture!(name)
}

/// Records `name` and replays it; both must agree byte for byte.
fn roundtrip(name: &str, extra: &[&str]) -> (Run, Run) {
    roundtrip_args(name, extra, &[])
}

/// [`roundtrip`] with arguments for the program.
fn roundtrip_args(name: &str, extra: &[&str], args: &[&str]) -> (Run, Run) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut rec = test_support::under_timeout(bin());
    rec.arg("record")
        .args(extra)
        .arg("--trace-dir")
        .arg(&trace)
        .arg("--")
        .arg(fixture(name))
        .args(args);
    let recorded = run(&mut rec);
    let mut rep = test_support::under_timeout(bin());
    rep.args(["replay", "--stats"]).arg(&trace);
    let replayed = run(&mut rep);
    assert_eq!(
        String::from_utf8_lossy(&recorded.stdout),
        String::from_utf8_lossy(&replayed.stdout),
        "{name}: replayed stdout differs\nrecord stderr:\n{}\nreplay stderr:\n{}",
        recorded.stderr_str(),
        replayed.stderr_str()
    );
    assert_eq!(
        recorded.status,
        replayed.status,
        "{name}: status differs\n{}",
        replayed.stderr_str()
    );
    (recorded, replayed)
}

#[test]
fn fork_pipe_and_shared_memory() {
    let (rec, _) = roundtrip("proc_fork", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0);
    assert!(
        out.contains("shared 6"),
        "the children's MAP_SHARED additions are missing:\n{out}"
    );
    assert_eq!(out.matches("reaped").count(), 3, "{out}");
}

#[test]
fn shared_file_mapping_changed_through_memory_and_write() {
    let (rec, _) = roundtrip("mmap_shared_file", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0, "{out}");
    for expected in [
        "at 100: pwrite at ",
        "at 200: write at ",
        "at 300: parent pwrite at ",
        "wrote this at",
        "second mapping at 1000: child",
    ] {
        assert!(out.contains(expected), "no `{expected}` in:\n{out}");
    }
}

#[test]
fn file_shared_with_a_process_outside_the_recording_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared");
    let mut content = b"mapped from outside\n".to_vec();
    content.resize(4096, 0);
    std::fs::write(&path, &content).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    use std::os::fd::AsRawFd;
    // This test process maps it too, and is not part of the recording.
    // SAFETY: a fresh shared mapping of a file we own, unmapped below.
    let outside = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(outside, libc::MAP_FAILED);
    let rec = run(test_support::under_timeout(bin())
        .arg("record")
        .arg("--trace-dir")
        .arg(dir.path().join("trace"))
        .arg("--")
        .arg(fixture("mmap_shared_arg"))
        .arg(&path));
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(outside, 4096) };
    assert_eq!(rec.status, 125, "{}", rec.stderr_str());
    assert!(
        rec.stderr_str().contains("outside the recording") && rec.stderr_str().contains("hint"),
        "{}",
        rec.stderr_str()
    );
}

#[test]
fn shell_children_through_popen_and_system() {
    let (rec, _) = roundtrip("proc_sh", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert!(out.contains("sh said: "), "{out}");
    assert!(out.contains("system status 768"), "{out}");
}

#[test]
fn asynchronous_signals_timers_and_sigpipe() {
    let (rec, _) = roundtrip("proc_signals", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 128 + libc::SIGPIPE, "{out}");
    assert!(out.contains("usr1 from"), "{out}");
    assert!(out.contains("alarm 4 at"), "{out}");
    assert!(!out.contains("not reached"), "{out}");
}

#[test]
fn synchronous_faults_with_handlers_and_killed_children() {
    let (rec, _) = roundtrip("proc_faults", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0, "{out}");
    for sig in [libc::SIGSEGV, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP] {
        assert!(
            out.contains(&format!("recovered from signal {sig} ")),
            "signal {sig} was not recovered from:\n{out}"
        );
    }
    assert!(out.contains("killed by signal 9"), "{out}");
    assert!(out.contains("killed by signal 6"), "{out}");
}

#[test]
fn interrupted_syscalls_signal_stacks_sessions_and_process_groups() {
    let (rec, _) = roundtrip("proc_restart", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0, "{out}");
    for expected in [
        "SA_RESTART read returned 1 (x)",
        "plain read returned -1 (Interrupted system call)",
        "ran on the alternate stack: yes",
        "new session",
        "grandchild pid",
    ] {
        assert!(out.contains(expected), "no `{expected}` in:\n{out}");
    }
}

#[test]
fn signal_let_in_by_sigsuspend_runs_under_its_temporary_mask() {
    let (rec, _) = roundtrip("proc_sigsuspend", &[]);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0, "{out}");
    // SIGUSR1 is bit 9: blocked in the handler (its own signal), saved in the frame (the
    // mask before sigsuspend) and blocked again afterwards.
    assert!(
        out.contains("in the handler 0x200, saved in its frame 0x200, after 0x200"),
        "{out}"
    );
}

/// What `replay --stats` says: "N events, P preemption points found with T breakpoint
/// hits ..." -> (P, T).
fn replay_points(rep: &Run) -> (u64, u64) {
    let stderr = rep.stderr_str();
    let stats = stderr
        .lines()
        .find(|l| l.contains("preemption points"))
        .unwrap_or_else(|| panic!("no replay stats:\n{stderr}"));
    let nums: Vec<u64> = stats
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(nums.len() >= 3, "no replay stats: {stats}");
    (nums[1], nums[2])
}

#[test]
fn uninstrumented_lost_update_race_replays_its_count() {
    // 300 million iterations a thread: several time slices each, so a worker is
    // preempted inside its loop (the race then has something to show).
    let (rec, rep) = roundtrip_args("preempt_race", &[], &["300000000"]);
    let out = rec.stdout_str();
    assert!(out.contains("updates lost"), "{out}");
    let (points, _) = replay_points(&rep);
    assert!(points >= 1, "no worker was preempted:\n{}", rep.show());
}

#[test]
fn spinning_thread_is_preempted_and_found_again() {
    let (rec, rep) = roundtrip("proc_spin", &[]);
    assert_eq!(rec.status, 0);
    let (points, traps) = replay_points(&rep);
    assert!(points >= 1, "the spin-wait was never preempted");
    assert!(
        traps <= 2 * points,
        "a spin-wait should take at most 2 breakpoint hits per point: {points} points, {traps} hits"
    );
}

#[test]
fn hung_program_is_stopped_by_timeout_and_replays_to_that_point() {
    let (rec, rep) = roundtrip("proc_hang", &["--timeout", "2s"]);
    assert_eq!(rec.status, 128 + libc::SIGKILL);
    assert!(
        rec.stderr_str().contains("time limit"),
        "{}",
        rec.stderr_str()
    );
    assert!(
        rep.stderr_str().contains("stopped at this point"),
        "{}",
        rep.stderr_str()
    );
}

/// The pids `proc_hang` (recorded by `child`) prints before "ready": its own and its two
/// children's.
fn hang_pids(child: &mut std::process::Child) -> Vec<i32> {
    let mut pids = Vec::new();
    let out = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        if let Some(p) = line
            .split_whitespace()
            .last()
            .and_then(|p| p.parse::<i32>().ok())
        {
            pids.push(p);
        }
    }
    assert_eq!(pids.len(), 3, "the fixture did not report its pids");
    pids
}

/// Waits (without polling) until the process `pid` has ended; false after 60 s.
fn wait_gone(pid: i32) -> bool {
    // SAFETY: plain syscalls on a local.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return true; // already gone
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let r = libc::poll(&mut p, 1, 60_000);
        libc::close(fd);
        r == 1
    }
}

#[test]
fn killing_the_recorder_leaves_no_process_of_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .arg("record")
        .arg("--trace-dir")
        .arg(dir.path().join("trace"))
        .arg("--")
        .arg(fixture("proc_hang"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = hang_pids(&mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for pid in pids {
        assert!(
            wait_gone(pid),
            "process {pid} of the recorded tree outlived the recorder"
        );
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} is still there: {stat}"
        );
    }
}

#[test]
fn ctrl_c_at_the_terminal_ends_the_recording_and_keeps_the_trace() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // Its own process group, as a shell runs a foreground job; Ctrl-C sends SIGINT to
    // the whole group: the recorder and the recorded program alike.
    let mut child = Command::new(bin())
        .arg("record")
        .arg("--trace-dir")
        .arg(&trace)
        .arg("--")
        .arg(fixture("proc_hang"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = hang_pids(&mut child);
    // SAFETY: a signal to the process group we just created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    for pid in pids {
        assert!(wait_gone(pid), "process {pid} outlived the recording");
    }
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["outcome"], "interrupted", "{result}");
    let rep = run(test_support::under_timeout(bin())
        .args(["replay"])
        .arg(&trace));
    assert!(
        rep.stderr_str().contains("stopped at this point"),
        "{}",
        rep.stderr_str()
    );
    assert_eq!(
        String::from_utf8_lossy(&rep.stdout).lines().last(),
        Some("ready")
    );
}

#[test]
fn shebang_scripts_exec_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("outer.sh");
    let inner = dir.path().join("inner.sh");
    std::fs::write(
        &outer,
        format!(
            "#!/bin/sh\necho \"outer $$ at $(date +%N)\"\nexec {} \"$$\"\n",
            inner.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &inner,
        "#!/bin/sh\necho \"inner $$ (outer was $1) at $(date +%N)\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for s in [&outer, &inner] {
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let trace = dir.path().join("trace");
    let rec = run(test_support::under_timeout(bin())
        .arg("record")
        .arg("--trace-dir")
        .arg(&trace)
        .arg("--")
        .arg(&outer));
    let rep = run(test_support::under_timeout(bin()).arg("replay").arg(&trace));
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(rec.status, 0, "{}", rec.stderr_str());
    assert!(out.contains("outer ") && out.contains("inner "), "{out}");
    assert_eq!(rec.stdout, rep.stdout, "{}", rep.stderr_str());
    assert_eq!(rep.status, 0, "{}", rep.stderr_str());
}
