//! Edge cases that real test suites hit (issue: what a mature recorder's own test
//! programs exercise): errors the kernel gives (unknown system calls, prctl options
//! x86_64 lacks, a refused clone), signals a program sends to its own process group,
//! a ppoll interrupted by a signal that has no handler, and the kernel keyring. Each
//! fixture is recorded and replayed ten times; where the kernel's answers are the point,
//! the recording's output is also compared with a native run's.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::common::*;

/// Lines that differ from run to run (the time, a pid) are left out of the comparison
/// with the native run; record and replay are compared whole.
fn stable_lines(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| {
            !["time ", "child ", "pid ", "pty ", "spins ", "random "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `program args` natively in a process group of its own (the fixtures signal
/// their group).
/// Its status is the shell's: the code, or 128 + the signal that killed it.
fn native(program: &Path, args: &[&str]) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(program)
        .args(args)
        .process_group(0)
        .output()
        .expect("run the fixture");
    Run {
        what: format!("{} (natively)", program.display()),
        status: out
            .status
            .code()
            .or_else(|| out.status.signal().map(|s| 128 + s))
            .expect("an exit code or a signal"),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// Records and replays `program args` ten times (the recorder in a process group of its
/// own, as a shell runs it); every replay must show what its recording showed, and the
/// recording what the native run showed.
fn ten_times(name: &str, args: &[&str], status: i32) {
    let program = fixture(name);
    let natively = native(&program, args);
    assert_eq!(
        natively.status,
        status,
        "{name} natively\n{}",
        natively.show()
    );
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}")))
            .args(args)
            .configure(|c| {
                c.process_group(0);
            })
            .record();
        assert_eq!(
            stable_lines(&rec.program.stdout),
            stable_lines(&natively.stdout),
            "recording {i} of {name} differs from the native run\n{}",
            rec.program.show()
        );
        assert_eq!(rec.program.status, status, "{}", rec.program.show());
        let replayed = replay(&rec.trace);
        assert_same(&format!("recording {i} of {name}"), &rec.program, &replayed);
    }
}

/// `syscall(-1)` and numbers past the table get ENOSYS (the recording used to stop);
/// prctl options other architectures implement get EINVAL; `clone(CLONE_SIGHAND)`
/// without CLONE_VM fails with EINVAL and replays (replay took any clone without a
/// new task for a divergence); `kill(0, SIGUSR1)` reaches the program's handler.
#[test]
fn errors_the_kernel_gives_are_recorded_and_replayed() {
    ten_times("edge_calls", &[], 0);
}

/// `kill(0, SIGABRT)`: the program dies of it and the recorder, in another process
/// group, survives to finish the trace (it used to die with the program).
#[test]
fn a_program_that_signals_its_own_group_does_not_kill_the_recorder() {
    ten_times("edge_calls", &["abort"], 128 + libc::SIGABRT);
}

/// Older terminal, serial, console, file-attribute and tape ioctls (TCGETA/TCSETA*,
/// TIOCGLCKTRMIOS, packet mode and line discipline (rr's ioctl_pty), breaks, TIOCGSERIAL,
/// KDGKBMODE, VT_GETSTATE, FS_IOC_FSGETXATTR,
/// MTIOCGET...) on a pty, a file and stdout: they stopped the recording as requests the
/// table did not know; the kernel's answers, errors included, are those of a native run.
#[test]
fn older_terminal_console_and_tape_ioctls() {
    ten_times("old_ioctls", &[], 0);
}

/// A thread with an fd table of its own (unshare(CLONE_FILES), rr's unshare): it closes
/// stdout and the data file in its copy only, reads a pipe a thread of its own writes,
/// and maps the file through a new fd; the main thread's stdout and fds are untouched.
/// The recording refused the unshare; the engine's books (which fds are stdout, the
/// files replay keeps open for mappings) are now kept per fd table, with and without
/// the syscall-buffering library (its fd cache is per thread).
#[test]
fn a_thread_with_an_fd_table_of_its_own() {
    ten_times("fd_table", &[], 0);
    let program = fixture("fd_table");
    let dir = temp();
    // The trace's copy of stdout is what the program wrote there: not the thread's
    // (buffered) writes to its own fd 1, a file.
    let rec = RecordSpec::new(&program, dir.path().join("trace-copy")).record();
    let stored = std::fs::read(rec.trace.join("stdout")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stored),
        rec.program.stdout_str(),
        "the trace's copy of stdout"
    );
    let rec = RecordSpec::new(&program, dir.path().join("trace"))
        .configure(|c| {
            c.env("CARGO_CHAOS_SYSCALLBUF", "0");
        })
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    assert_same("--no-syscallbuf", &rec.program, &replay(&rec.trace));
    // Stdout a regular file: the main thread's writes to it are buffered, and replay
    // must still show them after the other thread closed fd 1 in its own table.
    let recorded_out = dir.path().join("recorded-stdout");
    let file = std::fs::File::create(&recorded_out).unwrap();
    let rec = RecordSpec::new(&program, dir.path().join("trace-to-file"))
        .configure(move |c| {
            c.stdout(file);
        })
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let replayed_out = dir.path().join("replayed-stdout");
    let file = std::fs::File::create(&replayed_out).unwrap();
    let replayed = replay_with(&rec.trace, &[], move |c| {
        c.stdout(file);
    });
    assert_eq!(replayed.status, 0, "{}", replayed.show());
    let (recorded, replayed) = (
        std::fs::read_to_string(&recorded_out).unwrap(),
        std::fs::read_to_string(&replayed_out).unwrap(),
    );
    assert!(recorded.contains("same bytes: yes"), "{recorded}");
    assert_eq!(
        recorded, replayed,
        "stdout to a file, recorded and replayed"
    );
}

/// ioctls that move memory through a pointer inside their argument (rr's ioctl_br):
/// SIOCGIFCONF's interface list, with a null buffer, a short one and a long one, and
/// the old bridge requests (SIOCGIFBR: version, an unknown operation, and in a network
/// namespace of the program's a bridge added, listed and deleted). They stopped the
/// recording; the kernel's answers and the bytes it wrote are those of a native run.
#[test]
fn interface_list_and_old_bridge_ioctls() {
    ten_times("ifconf", &[], 0);
}

/// Calls rr's own test programs make that stopped the recording: fcntl and ioctl
/// requests nobody defines and a quotactl command that does not exist (now run, and the
/// kernel's EINVAL/ENOTTY recorded), klogctl, RNDGETENTCNT, FS_IOC_FIEMAP, sendmmsg and
/// recvmmsg (one blocked in a thread while the other sends), pselect6's time left, mmap
/// of /dev/zero (private, and shared with a forked child), clone with CLONE_PIDFD and
/// with every flag (EINVAL), and execveat: relative to a directory fd, fexecve of a
/// file and of a memfd.
#[test]
fn unknown_requests_batched_datagrams_dev_zero_and_execveat() {
    ten_times("unusual_calls", &[], 0);
}

/// madvise(MADV_DONTNEED) across a page locked with mlock, mlock2 or mlockall fails
/// with EINVAL after dropping the unlocked page: replay locks the pages too (mlock was
/// only recorded, so replay's madvise succeeded and diverged; rr's mlock_madvise).
#[test]
fn madvise_across_locked_pages() {
    ten_times("mlock_madvise", &[], 0);
}

/// Stack overflows, with a limit the program lowered itself and with the one it was
/// started with (2 MiB), reach the same depth at replay, also when the replay runs under
/// other limits (the replayed stack was a fixed 8 MiB mapping and setrlimit was only
/// recorded: the depths differed; rr's stack_overflow tests).
#[test]
fn stack_overflows_reach_the_same_depth_at_replay() {
    let program = fixture("stack_overflow");
    let dir = temp();
    for i in 0..5 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}")))
            .wrapper(["prlimit", "--stack=2097152:"])
            .record();
        let out = rec.program.stdout_str();
        assert!(
            out.contains("limit 512 KiB: killed by signal 11 after")
                && out.contains("inherited limit: killed by signal 11 after"),
            "{}",
            rec.program.show()
        );
        for limit in ["1048576", "8388608"] {
            let arg = format!("--stack={limit}:");
            let replayed = replay_with(
                &rec.trace,
                &[std::ffi::OsStr::new("prlimit"), std::ffi::OsStr::new(&arg)],
                |_| {},
            );
            assert_same(
                &format!("recording {i} replayed with RLIMIT_STACK {limit}"),
                &rec.program,
                &replayed,
            );
        }
    }
}

/// ppoll interrupted by SIGCHLD, which has no handler: the time left that the kernel
/// wrote back is recorded (the restarted call read it), and the caller's mask is
/// restored after the signal is discarded, so a later SIGUSR1 reaches its handler.
#[test]
fn ppoll_interrupted_by_a_signal_without_a_handler() {
    ten_times("ppoll_nohandler", &[], 0);
}

/// waitid calls that fail (no such child, no children, a bad pidfd, a bad id type) fill
/// the siginfo's first fields with zeros all the same: recorded, and written again at
/// replay. Replay left the program's bytes as they were (rr's pidfd test checksums the
/// siginfo after each call and diverged), and with a second thread the recording itself
/// did not pass the kernel's zeros on from scratch memory (unlike a native run).
#[test]
fn a_failed_waitid_still_fills_the_siginfo() {
    ten_times("failed_waitid", &[], 0);
}

/// Processes that send SIGKILL to themselves (kill(getpid()), tgkill, tkill; a clone
/// sharing its parent's memory, and a thread of a forked child): the kernel's
/// CLONE_CHILD_CLEARTID write and futex wake at the death reach the parent at the same
/// point at replay (the call never returns, so it had no event: replay never ended the
/// process and the parent's futex wait found the word still set; rr's
/// clone_cleartid_coredump).
#[test]
fn a_process_that_kills_itself_ends_at_the_same_point() {
    ten_times("self_sigkill", &[], 0);
}

/// clone with CLONE_UNTRACED, of a thread-like task sharing memory and of a process:
/// the recorder takes the flag out (it only keeps a tracer off), so the new task is
/// recorded like any other; replay does the same. The recording waited for ever for a
/// task it never saw (rr's clone_untraced).
#[test]
fn a_clone_with_clone_untraced_is_recorded() {
    ten_times("untraced_clone", &[], 0);
}

/// The program's own perf events (rr's perf_event and perf_event_ioctl): a software
/// counter opened, reset, enabled, disabled, read, its id asked for, closed and opened
/// again under the same number; a bad attribute size is E2BIG. perf_event_open was
/// refused with ENOENT; now it runs at record, and its fd's reads and ioctls are
/// recorded, so the counts replay.
#[test]
fn the_programs_own_perf_counters_are_recorded() {
    ten_times("perf_counter", &[], 0);
}

/// The program's own PR_SET_TSC (rr's prctl_tsc): the recorder keeps its rdtsc trap and
/// the program's setting; with PR_TSC_SIGSEGV the program's rdtsc faults reach its
/// handler (also in a forked child, which inherits it), PR_TSC_ENABLE gives recorded
/// counter values again, PR_GET_TSC answers the program's mode, an unknown mode is
/// EINVAL. PR_SET_TSC was refused with EPERM.
#[test]
fn the_programs_own_tsc_setting_is_kept() {
    ten_times("tsc_mode", &[], 0);
}

/// setsid() succeeds as it does natively, where the program is no process group leader
/// (its shell or its parent made the group): the recorder used to make the program lead
/// a group of its own, and the call failed with EPERM (rr's setsid). The program now
/// joins a group a holder process leads; a signal to its new group reaches only it, and
/// its child is in the new session. Natively it runs in the test's own group (not a
/// leader); recorded, with the recorder in a group of its own as a shell runs it, and
/// in the test's group.
#[test]
fn setsid_succeeds_as_it_does_natively() {
    let program = fixture("new_session");
    let out = Command::new(&program).output().expect("run the fixture");
    assert!(out.status.success(), "natively: {out:?}");
    let natively = stable_lines(&out.stdout);
    assert!(natively.contains("setsid: ok"), "{natively}");
    let dir = temp();
    for i in 0..6 {
        let own_group = i % 2 == 0;
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}")))
            .configure(move |c| {
                if own_group {
                    c.process_group(0);
                }
            })
            .record();
        assert_eq!(
            stable_lines(&rec.program.stdout),
            natively,
            "recording {i} differs from the native run\n{}",
            rec.program.show()
        );
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let replayed = replay(&rec.trace);
        assert_same(&format!("recording {i}"), &rec.program, &replayed);
    }
}

/// prctl(PR_SET_MM, ...) as rr's prctl test calls it: PR_SET_MM_MAP_SIZE (writes an
/// unsigned int), PR_SET_MM_ARG_START/ARG_END and an unknown sub-option (the kernel's
/// answers, EPERM without CAP_SYS_RESOURCE, recorded); PR_SET_MM as a whole stopped the
/// recording.
#[test]
fn prctl_set_mm_sub_options() {
    ten_times("prctl_mm", &[], 0);
}

/// A PR_SET_MM sub-option that moves the process's memory map (here the heap's start)
/// stops the recording, named.
#[test]
fn prctl_set_mm_that_moves_the_heap_stops_the_recording_named() {
    assert_recording_stops(
        &fixture("prctl_mm"),
        &[std::ffi::OsStr::new("brk")],
        "PR_SET_MM_START_BRK",
    );
}

/// A memfd mapped MAP_SHARED three times, changed through a mapping and with pwrite in
/// between: the later mappings see the changes at replay, and the trace holds one
/// capture of the file (its first mapping's; it was captured again at each mapping,
/// which made rr's memfd_create_shared_huge, 2 GiB mapped twice, a 4 GiB trace).
#[test]
fn a_file_mapped_shared_again_is_captured_once() {
    let size = (1 << 20) + 3 * 4096;
    ten_times("shared_remap", &[], 0);
    let dir = temp();
    let rec = RecordSpec::new(&fixture("shared_remap"), dir.path().join("trace")).record();
    let captures = std::fs::read_dir(rec.trace.join("files"))
        .expect("the trace's files")
        .filter(|e| {
            e.as_ref()
                .ok()
                .and_then(|e| e.metadata().ok())
                .is_some_and(|m| m.len() == size)
        })
        .count();
    assert_eq!(captures, 1, "{}", rec.program.show());
}

/// Job control: a process stopped by SIGSTOP or SIGTSTP (by itself, by its parent,
/// with a second thread blocked in read()) stays stopped until its parent continues it,
/// and its parent sees it stopped, continued and exited as natively. The recorder
/// resumed a thread from its group-stop (it ran on while its parent saw it stopped) and
/// took a kill(SIGSTOP) between processes for a new task's initial stop; a SIGTSTP
/// that arrived before the child's first call waited for the end of its read(), which
/// waited for its parent, which waited to see it stopped.
#[test]
fn stopped_processes_stay_stopped_until_continued() {
    ten_times("job_control", &[], 0);
}

/// A stopped process whose process group is orphaned gets SIGHUP (then SIGCONT) from
/// the kernel, in a session of the program's own: its handler runs as natively. The
/// recorder took that SIGHUP (`SI_KERNEL`) for its terminal hanging up and ended the
/// recording; then it held it until the next call, and the process exited without
/// running the handler (rr's tty_tostop).
#[test]
fn an_orphaned_stopped_process_group_gets_its_sighup() {
    ten_times("orphaned_group", &[], 0);
}

/// SIGSEGV blocked across an exec, then rdtsc (the dynamic loader's, the program's, a
/// thread's): the recorder's and replay's rdtsc trap is a forced SIGSEGV, which the
/// kernel unblocks to deliver; the program found SIGSEGV unblocked (rr's
/// sigprocmask_exec). The mask is set back after each trap.
#[test]
fn a_blocked_sigsegv_stays_blocked_through_rdtsc_traps() {
    ten_times("segv_blocked", &[], 0);
}

/// The main thread calls pthread_exit and another thread joins it: whether the joining
/// thread waits in futex() or finds the main thread's id cleared already depended on
/// how far the kernel had got with the main thread's exit (record and replay differed;
/// rr's main_thread_exit). Both now wait until it is a zombie.
#[test]
fn joining_the_main_thread_after_it_exited() {
    ten_times("main_thread_exit", &[], 0);
}

/// Records `program args` and checks that the recorder refused it: status 125 and a
/// message holding `says`.
#[track_caller]
fn assert_recording_stops(program: &Path, args: &[&std::ffi::OsStr], says: &str) {
    let dir = temp();
    let (raw, _) = RecordSpec::new(program, dir.path().join("trace"))
        .args(args)
        .record_raw();
    assert_eq!(raw.status, FAILED, "{}", raw.show());
    assert!(
        raw.stderr_str().contains(says),
        "the message should say `{says}`\n{}",
        raw.show()
    );
}

/// process_vm_writev into the program's own memory works as natively (it was refused
/// with EPERM) and replays: what landed in the remote iovecs is written again at replay;
/// into a read-only page it fails with the kernel's EFAULT.
#[test]
fn process_vm_writev_into_its_own_memory() {
    let program = fixture("vm_writev");
    let natively = native(&program, &[]);
    assert!(
        natively.stdout_str().contains("copies match: 1"),
        "{}",
        natively.show()
    );
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}"))).record();
        let out = rec.program.stdout_str();
        assert!(
            out.contains("process_vm_writev = 24\n")
                && out.contains("copies match: 1")
                && out.contains("into a read-only page = -1 (Bad address)"),
            "{}",
            rec.program.show()
        );
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
    }
}

/// process_vm_writev into another process of the recording (a child writing its
/// parent): the recording stopped there; now the bytes that landed in the parent are
/// recorded as a write into it, which replay makes (the parent prints them).
#[test]
fn process_vm_writev_into_the_parent_records_and_replays() {
    let program = fixture("vm_writev");
    let natively = native(&program, &["parent"]);
    assert_eq!(natively.status, 0, "{}", natively.show());
    // Without CAP_SYS_PTRACE, Yama may refuse a child its parent's memory (EPERM):
    // then the recording sees that refusal too.
    let allowed = natively.stdout_str().contains("into the parent = 24\n");
    let dir = temp();
    for i in 0..5 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}")))
            .args(["parent"])
            .record();
        let out = rec.program.stdout_str();
        assert_eq!(
            out.contains("into the parent = 24\n") && out.contains("copies match: 1"),
            allowed,
            "{}",
            rec.program.show()
        );
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
    }
}

/// Code written through /proc/self/mem (pwrite, and lseek + write) into a read-only
/// executable page, then run: replay puts the same bytes there (it crashed with SIGSEGV
/// at the page, which replay had left empty: the write itself is not run again).
#[test]
fn code_written_through_proc_self_mem_runs_at_replay() {
    let program = fixture("proc_mem_jit");
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}"))).record();
        let out = rec.program.stdout_str();
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("returns")).collect();
        assert_eq!(lines.len(), 2, "{}", rec.program.show());
        for l in lines {
            let got = l.split("returns ").nth(1).and_then(|r| r.split(' ').next());
            let wanted = l.split("(wanted ").nth(1).map(|w| w.trim_end_matches(')'));
            assert!(
                got.is_some() && got == wanted,
                "{l}\n{}",
                rec.program.show()
            );
        }
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
    }
}

/// Huge sparse files mapped (a 1 TiB memfd written through its mapping and with pwrite,
/// a hole punched in it; a 100 GiB file on disk; rr's mmap_huge and large_hole): they
/// are captured by their data, and replay rebuilds them as sparse files. The recording
/// used to stop (capturing 1 TiB of zeros whole took forever), and a punched hole was
/// refused. A small file that starts as a sparse image does is mapped as itself at
/// replay. Each trace stays small.
#[test]
fn huge_sparse_files_mapped_record_and_replay() {
    let program = fixture("huge_mapping");
    let hex = |out: &str| -> Vec<String> {
        out.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() == 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect()
    };
    let zero = "0".repeat(16);
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}"))).record();
        let out = rec.program.stdout_str();
        let v = hex(&out);
        // memfd: a, b; c written, read back, hole; again a, c; disk file d, zeros;
        // the small file's random part.
        let consistent = v.len() == 10
            && v[2] == v[3]
            && v[4] == zero
            && v[5] == v[0]
            && v[6] == v[2]
            && v[8] == zero
            && out.contains("small file: cargo-chaos:sprs ");
        assert!(
            rec.program.status == 0 && consistent,
            "recording {i}\n{}",
            rec.program.show()
        );
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
        let stored: u64 = std::fs::read_dir(rec.trace.join("files"))
            .expect("the trace's files")
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(stored < 64 << 20, "{stored} bytes of captured files");
    }
}

/// A request the recorder's table lacks runs: the kernel's refusal (EINVAL for prctl
/// option 1000, which does not exist) is recorded and replayed like any result.
#[test]
fn an_unknown_prctl_option_gets_the_kernels_answer() {
    let dir = temp();
    let script = dir.path().join("prctl.py");
    std::fs::write(
        &script,
        "import ctypes\nprint(ctypes.CDLL(None).prctl(1000, 0, 0, 0, 0))\n",
    )
    .unwrap();
    let python = tool("python3");
    let rec = RecordSpec::new(&python, dir.path().join("trace"))
        .args([script.as_os_str()])
        .record();
    assert_eq!(rec.program.stdout_str(), "-1\n", "{}", rec.program.show());
    assert_same("the recording", &rec.program, &replay(&rec.trace));
}

/// A request the table lacks that the kernel accepts stops the recording, named (it may
/// have written memory the recorder does not know of): prctl option 77
/// (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.17) with 0 turns a mode off. On older kernels
/// it does not exist, and its EINVAL is recorded.
#[test]
fn an_unknown_request_the_kernel_accepts_stops_the_recording_named() {
    let dir = temp();
    let script = dir.path().join("prctl.py");
    std::fs::write(
        &script,
        "import ctypes\nprint(ctypes.CDLL(None).prctl(77, 0, 0, 0, 0))\n",
    )
    .unwrap();
    let python = tool("python3");
    let natively = native(&python, &[script.to_str().unwrap()]);
    if natively.stdout_str() == "0\n" {
        assert_recording_stops(&python, &[script.as_os_str()], "prctl option 77");
    } else {
        let rec = RecordSpec::new(&python, dir.path().join("trace"))
            .args([script.as_os_str()])
            .record();
        assert_eq!(rec.program.stdout_str(), natively.stdout_str());
    }
}

/// Files that change under their mappings: grown with ftruncate under a shared or a
/// private mapping before its page is touched (replay got SIGBUS, or the recording
/// stopped), written under an untouched private page, and mremap across two mappings
/// of one open file that the kernel merged (it failed at replay with EFAULT: each
/// mapping was of its own open file there).
#[test]
fn files_grown_and_written_under_their_mappings() {
    ten_times("grow_under_map", &[], 0);
}

/// System V semaphores, message queues and shared memory created IPC_PRIVATE, used by
/// a process and the children it forks (rr's sem, msg, shm and shm_unmap): blocking
/// semop and msgrcv, shared memory attached twice (aliasing) and detached after part of
/// it was unmapped.
#[test]
fn private_system_v_ipc_between_forked_processes() {
    ten_times("sysv_ipc", &[], 0);
}

/// A System V object with a key could be shared with processes outside the recording:
/// the recording stops and says why.
#[test]
fn a_keyed_system_v_object_stops_the_recording_with_a_reason() {
    assert_recording_stops(
        &fixture("sysv_ipc"),
        &[std::ffi::OsStr::new("keyed")],
        "create it with IPC_PRIVATE",
    );
}

/// A priority-inheritance futex taken and given back directly: the kernel writes the
/// caller's tid into the word, then clears it (recorded as each call's output). A
/// condition variable's requeue onto one is refused with a message that names it.
#[test]
fn a_priority_inheritance_futex_records_and_a_requeue_onto_one_is_refused() {
    ten_times("pi_futex", &[], 0);
    let program = fixture("pi_futex");
    let natively = native(&program, &["requeue"]);
    assert_eq!(
        natively.stdout_str(),
        "wait_requeue_pi = -1 (Resource temporarily unavailable)\n"
    );
    assert_recording_stops(
        &program,
        &[std::ffi::OsStr::new("requeue")],
        "FUTEX_WAIT_REQUEUE_PI",
    );
}

/// capget's data is 12 bytes for a version-1 header: placed at the end of a page
/// followed by an unreadable one, it records (the recorder read 24 bytes and failed)
/// and replays, ten times.
#[test]
fn capget_with_a_version_1_header_at_the_end_of_a_page() {
    ten_times("capget_v1", &[], 0);
}

/// seccomp(SECCOMP_GET_ACTION_AVAIL) is recorded and replayed (it stopped the recording
/// while every seccomp call did; filters are tested in `seccomp.rs`).
#[test]
fn seccomp_get_action_avail_is_recorded() {
    ten_times("capget_v1", &["seccomp"], 0);
}

/// clone into a new user and mount namespace, or user and pid namespace, records, and
/// replays without creating them (the child's uid in its namespace comes from the trace).
#[test]
fn clone_into_new_namespaces_replays() {
    ten_times("clone_newns", &[], 0);
    ten_times("clone_newns", &["pid"], 0);
}

/// A process tree in a pid namespace of the program's (clone, or unshare and fork, with
/// CLONE_NEWUSER | CLONE_NEWPID): the pids it sees are the namespace's (getpid 1, fork's
/// and wait's results, si_pid, a thread's tid, an orphan reparented to the namespace's
/// first process, a process that SIGKILLs itself, one killed holding a robust mutex whose
/// owner word holds its pid there), recorded and replayed ten times each; a SIGSTOP sent
/// into the namespace from above stops the recording with a reason. Refused before any
/// of it was supported; replay diverged when the engine took the namespace's pids for
/// its own (the child's CLONE_CHILD_SETTID word, the robust futex owners, the reaped
/// SIGKILLed process).
#[test]
fn a_process_tree_in_a_pid_namespace_of_its_own() {
    let program = fixture("pid_namespace");
    let natively = native(&program, &[]);
    if natively.status != 0 && natively.stdout_str().contains("clone: ") {
        eprintln!(
            "skipped: this kernel refuses a user and pid namespace here\n{}",
            natively.show()
        );
        return;
    }
    ten_times("pid_namespace", &[], 0);
    ten_times("pid_namespace", &["unshare"], 0);
    // Its first process ignores a signal without a handler (replay killed it), and its
    // end kills the rest of the namespace and waits for them (the recorder hung).
    ten_times("pid_namespace", &["teardown"], 0);
    assert_recording_stops(
        &program,
        &["stop".as_ref()],
        "SIGSTOP into a pid namespace below the sender's",
    );
}

/// A program that sandboxes itself: unshare of user, mount, UTS and network namespaces,
/// sethostname, a tmpfs mounted, written, mapped and unmounted, and a child cloned into
/// a UTS namespace of its own, setns(2) back into a UTS namespace and through a pidfd
/// into a child's pid namespace. Recording stopped at unshare, later at setns; replay makes none of
/// these calls (their results come from the trace), and prints what the program saw.
#[test]
fn a_program_in_namespaces_of_its_own_records_and_replays() {
    ten_times("namespaces", &[], 0);
}

/// A child's SIGCHLD (no handler) reaches its parent in a loop without system calls: the
/// recording gives it at a preemption point, and replay used to skip the signal's stop
/// as one of the replay's own SIGCHLDs and diverge (rr's sigchld_interrupt_signal).
#[test]
fn a_sigchld_given_at_a_preemption_point_replays() {
    ten_times("sigchld_spin", &[], 0);
}

/// Children SIGKILLed just as their pipe reads return: the recorder met a task that died
/// while it handled that read's exit stop (its memory or registers already gone) and
/// failed the recording with "task N is gone" or "Bad address" (5 of 6 recordings of
/// rr's desched_sigkill). Such a thread's call now just has no exit in the trace.
#[test]
fn children_killed_as_their_reads_return_record_and_replay() {
    ten_times("killed_readers", &[], 0);
}

/// A forked child's first pipe read, where the recorder opens the thread's desched event
/// by injecting calls into it, completes with a signal from its parent pending: SIGURG
/// (ignored) or SIGSTOP then SIGCONT. The injection met the signal's stop, left the
/// child's registers half set, and the child died of SIGSEGV (10 of 10 recordings of
/// each; rr's pidfd and syscallbuf_sigstop). Blockable signals now stay pending while
/// the engine injects, and a SIGSTOP from the program is queued again after. With two
/// signals pending (SIGUSR1 and SIGUSR2, both caught), queuing one again let the other
/// stop the task on the way, round after round, until one was dropped: the child never
/// saw it (5 of 6 recordings; rr's async_signal_syscalls2 hung 1 time in 15).
#[test]
fn a_signal_pending_as_the_engine_injects_calls_waits_for_the_program() {
    ten_times("signal_at_first_read", &["urg"], 0);
    ten_times("signal_at_first_read", &["stop"], 0);
    ten_times("signal_at_first_read", &["two"], 0);
}

/// A thread spinning on buffered calls gets the signals another thread sends the
/// process (three kinds, 20 rounds, each round acknowledged by the handlers) before it
/// sees the sender's `done`, as natively: a held signal now turns the thread's next
/// buffered call into a traced one, at whose exit it is given (it used to wait for the
/// library's next flush, and the thread saw `done` one handler short in about half the
/// recordings; rr's async_signal_syscalls2). Signals that arrive while a thread stands
/// at an `rt_sigreturn`'s exit are given right after it too (1 recording in 30 before).
#[test]
fn signals_sent_while_a_thread_runs_buffered_calls_reach_it_at_its_next_call() {
    ten_times("signals_while_buffering", &[], 0);
}

/// A thread spinning without syscalls is switched out at a preemption point; another
/// thread sends the process SIGUSR1, then sets the flag the first one waits for. The
/// signal is given at the point as the first thread is resumed, before it runs an
/// instruction, as the kernel does natively on one CPU (it used to be held for a slice:
/// the thread saw the flag first in 1 or 2 of 5 rounds, in 6 of 6 recordings).
#[test]
fn a_signal_that_arrived_while_a_thread_stood_at_its_preemption_point_comes_first() {
    ten_times("signal_at_resume", &[], 0);
}

/// Two threads write lines to stdout, a regular file: one through syscall(2) (traced),
/// one with write(2) (buffered in-process). The traced write used to sit in the kernel
/// while the other thread ran, so a buffered write could reach the file first while
/// the trace held them the other way round: the replay printed two lines swapped and
/// reported success (1 recording in 5; rr's intr_read_no_restart). A write to a
/// regular file now finishes before another thread runs.
#[test]
fn writes_of_two_threads_to_a_regular_file_replay_in_the_files_order() {
    let dir = temp();
    for i in 0..10 {
        let out = dir.path().join(format!("stdout-{i}"));
        let file = std::fs::File::create(&out).unwrap();
        let rec = RecordSpec::new(
            &fixture("file_writes_race"),
            dir.path().join(format!("trace-{i}")),
        )
        .args(["500"])
        .configure(move |c| {
            c.stdout(file);
        })
        .record();
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let written = std::fs::read(&out).unwrap();
        assert_eq!(
            written.iter().filter(|&&b| b == b'\n').count(),
            1000,
            "recording {i}: {}",
            String::from_utf8_lossy(&written)
        );
        let replayed = replay(&rec.trace);
        assert_eq!(replayed.status, 0, "{}", replayed.show());
        let first_difference = written
            .split(|&b| b == b'\n')
            .zip(replayed.stdout.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b);
        assert!(
            first_difference.is_none(),
            "recording {i}: the replay printed the lines in another order than the file holds them, from line {first_difference:?}"
        );
    }
}

/// A TAP device's socket filter attached and read back (TUNATTACHFILTER reads struct
/// sock_fprog, TUNGETFILTER copies it back whole): both stopped the recording as
/// unsupported (rr's tun). Needs /dev/net/tun and CAP_NET_ADMIN (root on CI).
#[test]
fn a_tap_devices_socket_filter_records_and_replays() {
    let natively = native(&fixture("tun_filter"), &[]);
    if natively.stdout_str().starts_with("skipped") {
        eprintln!("skipped: {}", natively.stdout_str().trim());
        return;
    }
    ten_times("tun_filter", &[], 0);
}

/// Priority-inheritance mutexes: a waiter's FUTEX_LOCK_PI sets the waiters bit in the
/// lock's word as it goes to sleep, and the owner's unlock, reading it, goes through the
/// kernel; a timed lock times out there. The recording stopped at the first PI futex
/// call; replay without the waiters bit would unlock in user space and diverge.
#[test]
fn priority_inheritance_mutexes_record_and_replay() {
    ten_times("pi_mutex", &[], 0);
}

/// A parent writes into its child's memory through /proc/CHILD/mem (a variable, a
/// constant on a read-only page, random bytes): the recording stopped at the first
/// write; now the bytes are recorded as a write into the child, which replay makes.
#[test]
fn writes_into_a_child_through_its_memory_file_record_and_replay() {
    ten_times("proc_mem_child", &[], 0);
}

/// pidfd_getfd takes a pipe's read end and the stdout out of a child: recorded like a
/// dup (it stopped the recording), and the line written through the taken stdout is
/// echoed by replay as the program's own output.
#[test]
fn file_descriptors_taken_from_a_child_with_pidfd_getfd() {
    ten_times("pidfd_take", &[], 0);
}

/// setsockopt(IPT_SO_SET_REPLACE) writes the replaced rules' counters through a pointer
/// in its argument: recorded as the call's output (replay printed the 0xff bytes the
/// program had filled the buffer with). In a network namespace of the program's own.
#[test]
fn iptables_replace_reports_the_old_counters_at_replay() {
    ten_times("iptables_counters", &[], 0);
}

/// process_vm_readv of the program's own memory works as natively (it was refused with
/// EPERM) and replays: what it read is recorded like a read.
#[test]
fn process_vm_readv_of_its_own_memory() {
    let program = fixture("vm_readv");
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}"))).record();
        assert!(
            rec.program.stdout_str().contains("process_vm_readv = 24:")
                && rec.program.stdout_str().contains("copies match: 1"),
            "{}",
            rec.program.show()
        );
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
    }
}

/// A thread wakes the main thread with FUTEX_WAKE_OP, whose operation sets the word the
/// main thread waits on, and the main thread ends the process at once: the waker's call
/// used to be taken for one that may block, its exit (with the word's new value) was
/// never seen before the process ended, and the replayed main thread read the old value
/// (rr's futex_priorities). Waking futex operations now run to their exit first.
#[test]
fn a_futex_wake_op_is_recorded_before_the_thread_it_wakes() {
    ten_times("futex_wake_op", &[], 0);
}

/// The program signals its parent (the recorder) with SIGINT, SIGTERM and SIGHUP: the
/// recorder ignores what its own recording sends it, where it used to take SIGINT for a
/// Ctrl-C and end the recording (rr's restart_abnormal_exit); replay emulates the calls.
#[test]
fn signals_the_program_sends_its_parent_do_not_end_the_recording() {
    let program = fixture("signals_parent");
    let dir = temp();
    for i in 0..10 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}"))).record();
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let out = rec.program.stdout_str();
        assert!(
            out.contains("SIGINT to the parent: 0\n")
                && out.contains("SIGHUP to the parent: 0\n")
                && out.contains("still running: 2\n"),
            "{}",
            rec.program.show()
        );
        assert_same(&format!("recording {i}"), &rec.program, &replay(&rec.trace));
    }
}

/// keyctl's operations, described per operation in the table: KEYCTL_READ and
/// KEYCTL_DESCRIBE return the full size whatever the buffer's length, and the recording
/// keeps at most the buffer's length of it; update, search, capabilities, revoke. The
/// recording used to stop at the first keyctl. Skipped where the kernel refuses the
/// keyring (a container's seccomp profile).
#[test]
fn keyring_operations_are_recorded_and_replayed() {
    let natively = native(&fixture("keyctl"), &[]);
    if natively.stdout_str().starts_with("keyring unavailable") {
        eprintln!(
            "skipped: the kernel refuses the keyring here ({})",
            natively.stdout_str().trim()
        );
        return;
    }
    ten_times("keyctl", &[], 0);
}

/// poll interrupted by a SIGCHLD without a handler (`-ERESTART_RESTARTBLOCK`) and
/// restarted by the kernel (rr's poll_sig_race): the restart writes where the kernel saw
/// the interrupted call's outputs, the engine's scratch copy of the `pollfd` array,
/// which the engine copies back at `restart_syscall`'s exit. The program used to see
/// poll return 1 with no event in its own array (the assertion of rr's test failed).
#[test]
fn poll_restarted_after_a_signal_reports_its_events() {
    ten_times("poll_restart", &[], 0);
}

/// A call through the legacy vsyscall page stops the recording with a message naming
/// it: the kernel emulates it without a syscall exit stop, and the recorder used to
/// lose it (the replay printed another time; rr's vsyscall diverged 2 of 3). Skipped
/// where the kernel maps no vsyscall page.
#[test]
fn a_call_through_the_vsyscall_page_stops_the_recording() {
    let program = fixture("vsyscall_page");
    let native = Command::new(&program).output().expect("run vsyscall_page");
    assert!(native.status.success(), "{native:?}");
    if String::from_utf8_lossy(&native.stdout).contains("no vsyscall page") {
        eprintln!("skipped: this kernel maps no vsyscall page");
        return;
    }
    assert_recording_stops(
        &program,
        &[],
        "gettimeofday through the legacy vsyscall page",
    );
}
