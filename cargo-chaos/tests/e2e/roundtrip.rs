//! Every fixture, recorded and replayed: stdout, stderr and exit status must be equal
//! byte for byte.

use std::path::Path;
use std::process::Command;

use recorder::trace::Event;

use super::common::*;

/// Records fixture `name` with `args` in a fresh directory, checks the recording looks like
/// a run of the fixture (status, a line it must print), replays it and compares.
fn roundtrip(name: &str, args: &[&str], status: i32, marker: &str) -> Recording {
    let dir = temp();
    roundtrip_in(dir.path(), name, args, status, marker)
}

fn roundtrip_in(dir: &Path, name: &str, args: &[&str], status: i32, marker: &str) -> Recording {
    let rec = record(dir, &fixture(name), args);
    assert_eq!(
        rec.program.status,
        status,
        "recording {name}: unexpected status\n{}",
        rec.program.show()
    );
    assert!(
        rec.program.stdout_str().contains(marker),
        "recording {name}: stdout lacks `{marker}`\n{}",
        rec.program.show()
    );
    let replayed = replay(&rec.trace);
    assert_same(name, &rec.program, &replayed);
    rec
}

fn input_file(dir: &Path) -> String {
    let p = dir.join("input.txt");
    std::fs::write(&p, "input for the fixture\nsecond line\n").expect("write the input file");
    p.to_string_lossy().into_owned()
}

#[test]
fn file_io() {
    let dir = temp();
    let input = input_file(dir.path());
    let rec = roundtrip_in(dir.path(), "fileio", &[&input], 0, "dirent: name=b.txt");
    assert!(rec
        .program
        .stdout_str()
        .contains("input text: input for the fixture"));
    assert_eq!(rec.program.stderr, b"fileio: done\n");
}

#[test]
fn mmap_of_files_and_anonymous_memory() {
    let dir = temp();
    let input = input_file(dir.path());
    roundtrip_in(dir.path(), "mmap", &[&input], 0, "input: addr=");
}

#[test]
fn writable_shared_file_mapping_is_replayed_or_refused_at_record() {
    // Refusing is allowed (memory shared with the file system), but only at record time,
    // with exit status 125 and a message that names the problem and gives a hint.
    let dir = temp();
    let (raw, trace) =
        RecordSpec::new(&fixture("mmap_shared"), dir.path().join("trace")).record_raw();
    if raw.status == FAILED {
        let err = raw.stderr_str();
        assert!(
            err.contains("MAP_SHARED") && err.to_lowercase().contains("hint"),
            "the refusal should name the shared mapping and give a hint\n{}",
            raw.show()
        );
        return;
    }
    let rec = split_record_output(&raw, &trace);
    assert_eq!(rec.status, 0, "{}", rec.show());
    assert!(
        rec.stdout_str()
            .contains("readback=[written through a shared mapping"),
        "{}",
        rec.show()
    );
    assert_same("mmap_shared", &rec, &replay(&trace));
}

#[test]
fn pipe_to_itself() {
    roundtrip("pipe", &[], 0, "bytes via fd");
}

#[test]
fn tcp_over_loopback() {
    roundtrip("tcp", &[], 0, "client got 4 bytes: [pong]");
}

#[test]
fn time_calls_through_libc() {
    roundtrip("time", &[], 0, "gettimeofday=");
}

#[test]
fn rdtsc() {
    roundtrip("rdtsc", &[], 0, "intrinsic=");
}

#[test]
fn cpuid() {
    roundtrip("cpuid", &[], 0, "vendor=");
}

#[test]
fn getrandom_and_dev_urandom() {
    let a = roundtrip("random", &[], 0, "urandom=");
    // The fixture really is nondeterministic: a second recording gets other bytes.
    let b = roundtrip("random", &[], 0, "urandom=");
    assert_ne!(
        line_with(&a.program.stdout, "getrandom="),
        line_with(&b.program.stdout, "getrandom="),
        "two recordings got the same random bytes"
    );
}

#[test]
fn killed_by_sigsegv() {
    let rec = roundtrip("segv", &[], 128 + 11, "about to crash");
    assert!(
        rec.program.stderr_str().contains("null pointer"),
        "{}",
        rec.program.show()
    );
}

#[test]
fn exit_code_3() {
    roundtrip("exit3", &[], 3, "exiting with 3");
}

#[test]
fn many_syscalls() {
    roundtrip("many_syscalls", &["2000"], 0, "calls=2000");
}

#[test]
fn cpu_loop() {
    roundtrip("cpu_loop", &["1000000"], 0, "iterations=1000000");
}

#[test]
fn mixed_file_io_and_time() {
    roundtrip("mixed", &["300"], 0, "rounds=300");
}

#[test]
fn many_small_writes() {
    roundtrip("steps", &["50"], 0, "step 49 pid");
}

#[test]
fn stdin_is_the_recorders_and_replay_does_not_read_its_own() {
    let dir = temp();
    let input = dir.path().join("stdin.txt");
    std::fs::write(&input, "what the recording read\nfrom its stdin\n").unwrap();
    let stdin = std::fs::File::open(&input).unwrap();
    let rec = RecordSpec::new(&fixture("echo_stdin"), dir.path().join("trace"))
        .configure(move |c| {
            c.stdin(stdin);
        })
        .record();
    assert!(
        rec.program
            .stdout_str()
            .contains("first=[what the recording read]"),
        "{}",
        rec.program.show()
    );
    // Replay with other bytes on stdin: the program must still see the recorded ones.
    std::fs::write(&input, "something else entirely\n").unwrap();
    let other = std::fs::File::open(&input).unwrap();
    let replayed = replay_with(&rec.trace, &[], move |c| {
        c.stdin(other);
    });
    assert_same("echo_stdin", &rec.program, &replayed);
}

#[test]
fn untraced_calls_are_not_in_the_trace_and_run_again_at_replay() {
    // mprotect, munmap, sigaction and sigaltstack pass the recorder's seccomp filter
    // without a stop; the faults they cause and the mapping a thread removes must still
    // replay exactly.
    let dir = temp();
    let rec = roundtrip_in(dir.path(), "untraced", &[], 0, "faults 5, last at page+4");
    assert!(
        rec.program
            .stdout_str()
            .contains("victim mapped after the thread: no"),
        "{}",
        rec.program.show()
    );
    let header: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rec.trace.join("header.json")).expect("read header.json"),
    )
    .expect("header.json is JSON");
    let untraced: Vec<u64> = header["untraced"]
        .as_array()
        .expect("the header lists the untraced calls")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    for call in [libc::SYS_mprotect, libc::SYS_munmap, libc::SYS_rt_sigaction] {
        assert!(untraced.contains(&(call as u64)), "{call} untraced");
    }
    let events = read_events(&rec.trace);
    // rt_sigprocmask is listed but untraced only when it cannot unblock.
    let recorded: Vec<u64> = syscalls(&events)
        .filter(|(_, s)| {
            untraced.contains(&s.nr) && recorder::syscalls::untraced_call(s.nr, &s.args)
        })
        .map(|(_, s)| s.nr)
        .collect();
    assert!(
        recorded.is_empty(),
        "untraced calls in the trace: {recorded:?}"
    );
    let faults = events
        .iter()
        .filter(|e| matches!(e, Event::Signal { signo, .. } if *signo == libc::SIGSEGV))
        .count();
    assert_eq!(
        faults, 5,
        "each write to the read-only page is a recorded fault"
    );
}

#[test]
fn sigprocmask_that_cannot_unblock_is_untraced() {
    // rt_sigprocmask passes the recorder's filter without a stop as SIG_BLOCK or a query
    // (pthread_create's own mask changes among them), and replay runs it again; the
    // calls that can unblock stay events, and a pending signal is delivered as they
    // return, at record and replay.
    let dir = temp();
    let native = run(&mut Command::new(fixture("sigblock")));
    assert_eq!(native.status, 0, "{}", native.show());
    let rec = roundtrip_in(dir.path(), "sigblock", &[], 0, "alrm: handler ran at 7");
    for line in [
        "usr1 blocked: mask 1, pending 1, handler ran at 0",
        "usr1 unblocked: mask 0, handler ran at 1",
        "usr2 restored: mask 0, handler ran at 4",
        "worker 3: mask 4, old had SIGALRM 0",
    ] {
        assert!(native.stdout_str().contains(line), "natively: {line}");
        assert!(
            rec.program.stdout_str().contains(line),
            "{line}\n{}",
            rec.program.show()
        );
    }
    let events = read_events(&rec.trace);
    let masks: Vec<[u64; 6]> = syscalls(&events)
        .filter(|(_, s)| s.nr == libc::SYS_rt_sigprocmask as u64)
        .map(|(_, s)| s.args)
        .collect();
    let blocking: Vec<&[u64; 6]> = masks
        .iter()
        .filter(|a| a[0] as u32 == libc::SIG_BLOCK as u32 || a[1] == 0)
        .collect();
    assert!(
        blocking.is_empty(),
        "SIG_BLOCK or query in the trace: {blocking:x?}"
    );
    // SIG_UNBLOCK: 2 in main, one per worker (glibc may add its own); SIG_SETMASK: at
    // least the fixture's one.
    let unblocks = masks
        .iter()
        .filter(|a| a[0] as u32 == libc::SIG_UNBLOCK as u32)
        .count();
    assert!(unblocks >= 6, "{masks:x?}");
    assert!(masks
        .iter()
        .any(|a| a[0] as u32 == libc::SIG_SETMASK as u32));
    let header: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rec.trace.join("header.json")).expect("read header.json"),
    )
    .expect("header.json is JSON");
    assert!(header["untraced"]
        .as_array()
        .expect("the header lists the untraced calls")
        .contains(&serde_json::json!(libc::SYS_rt_sigprocmask)));
}

#[test]
fn failing_lookups_answered_by_the_recorder_fail_as_they_do_natively() {
    // The recorder answers lookups of absolute paths that do not exist itself
    // (record/probe.rs). Each call's result must be what the program gets natively,
    // including the look-alikes it must not answer (a dangling symlink opened with
    // O_NOFOLLOW, /dev/fd and /proc/self, which name the program's own descriptors).
    let dir = temp();
    let native_dir = dir.path().join("native");
    let recorded_dir = dir.path().join("recorded");
    std::fs::create_dir(&native_dir).unwrap();
    std::fs::create_dir(&recorded_dir).unwrap();
    let native = run(Command::new(fixture("lookups")).arg(&native_dir));
    assert_eq!(native.status, 0, "{}", native.show());
    let rec = record(
        dir.path(),
        &fixture("lookups"),
        &[recorded_dir.to_str().unwrap()],
    );
    assert_eq!(
        rec.program.stdout_str(),
        native.stdout_str(),
        "recorded results differ from native ones"
    );
    let replayed = replay(&rec.trace);
    assert_same("lookups", &rec.program, &replayed);
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.trace.join("result.json")).unwrap()).unwrap();
    // The fixture's six plain misses (open, stat, open through a file, stat of a
    // dangling symlink, readlink, statx) at least.
    assert!(
        result["lookups_answered"].as_u64().unwrap_or(0) >= 6,
        "the recorder answered the plain misses itself: {result}"
    );
}

#[test]
fn yields_are_recorded_in_one_stop_and_replay() {
    // sched_yield is completed at its seccomp stop (no exit stop): two threads waiting
    // for their turns with it replay exactly, and the result counts the calls so made.
    let dir = temp();
    let rec = roundtrip_in(dir.path(), "yields", &[], 0, "yields: done");
    let line = rec
        .program
        .stdout_str()
        .lines()
        .find(|l| l.starts_with("yields: main"))
        .expect("the counts line")
        .to_string();
    let count = |after: &str| -> u64 {
        let rest = &line[line.find(after).expect("a count") + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let yields = count("main ") + count("other ");
    assert!(yields > 0, "{line}");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.trace.join("result.json")).unwrap()).unwrap();
    let completed = result["completed_at_entry"].as_u64().unwrap_or(0);
    assert!(
        completed >= yields,
        "{yields} yields, {completed} completed at their seccomp stop: {result}"
    );
}

#[test]
fn signals_that_interrupt_calls_with_a_temporary_mask_replay() {
    // ppoll, pselect6, epoll_pwait and rt_sigsuspend wait under a mask of their own; a
    // signal blocked outside them is delivered inside, under that mask. Emulated at
    // replay they set no mask: replay must, or the signal is never delivered.
    let rec = roundtrip("tempmask", &[], 0, "sigsuspend: returned -1 (EINTR)");
    let out = rec.program.stdout_str();
    for call in ["ppoll", "pselect", "epoll_pwait", "sigsuspend"] {
        let want = format!(
            "{call}: returned -1 (EINTR), handled 1, after: SIGUSR1 blocked 1, SIGUSR2 blocked 0"
        );
        assert!(
            out.contains(&want),
            "missing `{want}`\n{}",
            rec.program.show()
        );
    }
    assert_eq!(
        out.matches("handler: SIGUSR2 blocked 1, SIGUSR1 blocked 1")
            .count(),
        4,
        "each handler ran under its call's mask\n{}",
        rec.program.show()
    );
}
