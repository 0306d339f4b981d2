//! Syscall buffering (issue 17): programs recorded with the preload library replay
//! exactly; the calls it buffered are checked and re-executed like traced ones (edit a
//! buffered read's bytes and the replayed program computes with them; edit a buffered
//! write's input hash and the replay names that event); fds moved under the library, raw syscalls, fork and
//! exec, and a read blocked on a pipe between threads (buffered, interrupted by the
//! desched event and made again traced) still record and replay.

use recorder::trace::{Event, Header};

use super::common::*;

const READ: u64 = 0;
const SYSCALLBUF_INIT: u64 = 1001;

/// Records `name args` with the library on (`on`) or off, through the environment
/// switch, which is what a whole suite run both ways uses.
fn record_buffered(dir: &std::path::Path, name: &str, args: &[&str], on: bool) -> Recording {
    let program = fixture(name);
    RecordSpec::new(&program, dir.join("trace"))
        .args(args)
        .configure(move |c| {
            c.env("CARGO_CHAOS_SYSCALLBUF", if on { "1" } else { "0" });
        })
        .record()
}

fn header(trace: &std::path::Path) -> Header {
    let text = std::fs::read_to_string(trace.join("header.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Event numbers of the calls number `nr` the library buffered (their sixth argument
/// register holds the library's mark).
fn buffered(events: &[Event], nr: u64) -> Vec<u64> {
    syscalls(events)
        .filter(|(_, s)| s.nr == nr && s.args[5] == recorder::syscallbuf::abi::MARK)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn buffered_calls_record_and_replay_exactly() {
    for on in [true, false] {
        let dir = temp();
        let rec = record_buffered(dir.path(), "buffered_io", &[], on);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        assert!(
            rec.program
                .stdout_str()
                .contains("file: 131 bytes, 8 lines"),
            "{}",
            rec.program.show()
        );
        assert_eq!(header(&rec.trace).syscallbuf, on);
        let events = read_events(&rec.trace);
        let inits = syscalls(&events)
            .filter(|(_, s)| s.nr == SYSCALLBUF_INIT)
            .count();
        let buffered_writes = buffered(&events, sys::WRITE).len();
        if on {
            // The first process and the exec'd child each register a buffer (the forked
            // child writes through its copy of its parent's).
            assert!(inits >= 2, "{inits} registrations");
            assert!(buffered_writes >= 5, "{buffered_writes} buffered writes");
            // fd 3 was a regular file (its kind cached by the library), then closed and
            // reused by a pipe: the cache was invalidated, the pipe read is traced.
            let pipe_read = syscalls(&events)
                .find(|(_, s)| {
                    s.nr == READ && s.writes.iter().any(|w| w.data == b"through the pipe\n")
                })
                .map(|(i, _)| i)
                .expect("the pipe read");
            if header(&rec.trace).desched {
                // Pipes are buffered too (armed): the library asked what fd 3 is again
                // (a buffered fstat after the pipe was made), it did not take the pipe
                // for the regular file it cached.
                let fd = fd_of(&events, pipe_read);
                let made = syscalls(&events)
                    .filter(|(i, s)| *i < pipe_read && (s.nr == sys::PIPE || s.nr == sys::PIPE2))
                    .map(|(i, _)| i)
                    .last()
                    .expect("the pipe");
                assert!(
                    buffered(&events, sys::FSTAT)
                        .iter()
                        .any(|&i| i > made && i < pipe_read && fd_of(&events, i) == fd),
                    "no fstat of fd {fd} between the pipe (event {made}) and its read (event {pipe_read})"
                );
            } else {
                assert!(
                    !buffered(&events, READ).contains(&pipe_read),
                    "the read of a pipe at a reused fd must not be buffered (event {pipe_read})"
                );
            }
        } else {
            assert_eq!((inits, buffered_writes), (0, 0));
        }
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("buffered_io (syscallbuf {on})"),
            &rec.program,
            &replayed,
        );
    }
}

#[test]
fn small_io_replays_with_buffering() {
    let dir = temp();
    let rec = record_buffered(dir.path(), "small_io", &["3000"], true);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let events = read_events(&rec.trace);
    // Far more calls than a buffer's budget: many flushes, all in order.
    assert!(buffered(&events, READ).len() >= 1000);
    let replayed = replay(&rec.trace);
    assert_same("small_io", &rec.program, &replayed);
}

/// `replay --stats`'s counters: (threads resumed to a stop, buffered calls replayed
/// without one).
fn resumes_and_fed(rep: &Run) -> (u64, u64) {
    let stderr = rep.stderr_str();
    let line = stderr
        .lines()
        .find(|l| l.contains("buffered calls replayed without one"))
        .unwrap_or_else(|| panic!("no replay stats:\n{}", rep.show()));
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Replay runs a thread's buffered calls from the engine's feed: thousands of buffered
/// reads and writes replay with a few dozen stops, not one each, and the program prints
/// the same; with the feed turned off (`CARGO_CHAOS_REPLAY_FEED=0`) every call stops.
#[test]
fn buffered_calls_replay_without_a_stop_each() {
    let dir = temp();
    let rec = record_buffered(dir.path(), "small_io", &["3000"], true);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let events = read_events(&rec.trace);
    let calls = syscalls(&events)
        .filter(|(_, s)| s.args[5] == recorder::syscallbuf::abi::MARK)
        .count() as u64;
    assert!(calls >= 6000, "{calls} buffered calls");
    for feed in [true, false] {
        let replayed = replay_with(&rec.trace, &[], |c| {
            c.arg("--stats");
            c.env("CARGO_CHAOS_REPLAY_FEED", if feed { "1" } else { "0" });
        });
        assert_eq!(
            (replayed.status, replayed.stdout_str()),
            (rec.program.status, rec.program.stdout_str()),
            "feed {feed}: {}",
            replayed.show()
        );
        let (resumes, fed) = resumes_and_fed(&replayed);
        if feed {
            assert!(
                fed >= calls * 9 / 10 && resumes < calls / 10,
                "{calls} buffered calls: {fed} fed, {resumes} stops"
            );
        } else {
            assert!(
                fed == 0 && resumes >= calls,
                "{calls} buffered calls: {fed} fed, {resumes} stops"
            );
        }
    }
}

fn fd_of(events: &[Event], i: u64) -> u64 {
    match &events[i as usize] {
        Event::Syscall(s) => s.args[0],
        _ => unreachable!("a syscall event"),
    }
}

/// Buffered calls number `nr` that blocked (interrupted by the desched event: the
/// engine's result), each with its thread's next event.
fn blocked_buffered(events: &[Event], nr: u64) -> Vec<(u64, Option<&Event>)> {
    syscalls(events)
        .filter(|(_, s)| {
            s.nr == nr
                && s.args[5] == recorder::syscallbuf::abi::MARK
                && s.ret == recorder::syscallbuf::abi::DESCHED_RET
        })
        .map(|(i, s)| {
            let next = events[i as usize + 1..].iter().find(|e| match e {
                Event::Syscall(o) => o.tid == s.tid,
                Event::Blocked { tid, .. } => *tid == s.tid,
                _ => false,
            });
            (i, next)
        })
        .collect()
}

/// Records with the library on, and the desched event on (the default) or off
/// (`CARGO_CHAOS_DESCHED=0`).
fn record_desched(dir: &std::path::Path, name: &str, args: &[&str], desched: bool) -> Recording {
    let program = fixture(name);
    RecordSpec::new(&program, dir.join("trace"))
        .args(args)
        .configure(move |c| {
            c.env("CARGO_CHAOS_SYSCALLBUF", "1");
            if desched {
                c.env_remove("CARGO_CHAOS_DESCHED");
            } else {
                c.env("CARGO_CHAOS_DESCHED", "0");
            }
        })
        .record()
}

fn result_json(trace: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(trace.join("result.json")).unwrap()).unwrap()
}

/// Whether this process may open the desched event's kind of perf event (a software
/// count of its own context switches), as the recorder asks before it records.
fn context_switch_events_allowed() -> bool {
    // perf_event_attr (its first 128 bytes): type PERF_TYPE_SOFTWARE (1) and the size,
    // config PERF_COUNT_SW_CONTEXT_SWITCHES (3), flags: disabled.
    let mut attr = [0u64; 16];
    attr[0] = 1 | (128 << 32);
    attr[1] = 3;
    attr[5] = 1;
    // SAFETY: a valid attribute of the size it states; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the fd just opened.
    unsafe { libc::close(fd as i32) };
    true
}

/// Reads that asked for their thread's desched event (traced, with the library's ask
/// mark in r9; see `syscallbuf::abi::ASK_MARK`).
fn asking_reads(events: &[Event]) -> Vec<(u64, &recorder::trace::SyscallEvent)> {
    syscalls(events)
        .filter(|(_, s)| s.nr == READ && s.args[5] == recorder::syscallbuf::abi::ASK_MARK)
        .collect()
}

/// A read on an empty pipe that another thread writes later: with the desched event the
/// read is buffered, blocks, is interrupted and made again traced (the `Blocked` path);
/// nothing deadlocks and the replay prints the same. The thread's first such read is
/// traced (it asks for the event). Without the event (refused, or
/// `CARGO_CHAOS_DESCHED=0`) the read is traced from the start.
#[test]
fn blocked_pipe_read_between_threads() {
    for desched in [true, false] {
        let dir = temp();
        let rec = record_desched(dir.path(), "threads_pipe", &[], desched);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let h = header(&rec.trace);
        assert!(h.syscallbuf);
        assert!(desched || !h.desched, "CARGO_CHAOS_DESCHED=0 turns it off");
        let events = read_events(&rec.trace);
        let blocked = blocked_buffered(&events, READ);
        if h.desched {
            // The reader's four reads (three messages, then the end of file) each
            // found the pipe empty: the first asked for the event (traced), each of
            // the others blocked and was made again, traced.
            assert!(
                blocked.len() >= 3,
                "{} blocked buffered reads",
                blocked.len()
            );
            for (i, next) in &blocked {
                assert!(
                    matches!(next, Some(Event::Blocked { nr: READ, .. })),
                    "event {i}: a blocked buffered read is followed by {next:?}"
                );
            }
        } else {
            assert!(blocked.is_empty());
            assert!(buffered(&events, READ)
                .iter()
                .all(|&i| fd_of(&events, i) != 3 && fd_of(&events, i) != 4));
        }
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("threads_pipe (desched {desched})"),
            &rec.program,
            &replayed,
        );
    }
}

/// Two threads play ping-pong over two pipes (reads that find their pipe empty wait for
/// the other thread), with the desched event on and off and without buffering, and each
/// recording replays.
#[test]
fn pipe_ping_pong_between_threads() {
    for (buffering, desched) in [(true, true), (true, false), (false, false)] {
        let dir = temp();
        let rec = if buffering {
            record_desched(dir.path(), "threads_pingpong", &["300"], desched)
        } else {
            record_buffered(dir.path(), "threads_pingpong", &["300"], false)
        };
        let what = format!("threads_pingpong (syscallbuf {buffering}, desched {desched})");
        assert_eq!(rec.program.status, 0, "{what}: {}", rec.program.show());
        assert!(rec.program.stdout_str().contains("300 rounds"), "{what}");
        let h = header(&rec.trace);
        let events = read_events(&rec.trace);
        if h.desched {
            assert!(desched);
            // How many reads find their pipe empty depends on the schedule (a traced
            // write's exit is a switch point): each that did is made again, traced.
            for (i, next) in blocked_buffered(&events, READ) {
                assert!(
                    matches!(next, Some(Event::Blocked { nr: READ, .. })),
                    "{what}: event {i}: a blocked buffered read is followed by {next:?}"
                );
            }
            // Writes on pipes stay traced (the engine orders writes to one file).
            assert!(
                buffered(&events, sys::WRITE)
                    .iter()
                    .all(|&i| !(3..=6).contains(&fd_of(&events, i))),
                "{what}"
            );
        } else {
            assert!(blocked_buffered(&events, READ).is_empty(), "{what}");
        }
        let replayed = replay(&rec.trace);
        assert_same(&what, &rec.program, &replayed);
    }
}

/// A buffered read that blocks costs one stop for the desched event's signal, not two:
/// the event disables itself at its overflow, so the thread's ptrace stop for the
/// signal (its own switch out) raises no second one, which would stop the thread again
/// before it ran an instruction (the engine logs that case). `result.json` counts the
/// signal stops (`desched_signals`): one per blocked read, and one per false alarm (the
/// thread switched out while armed, as another thread's stop wakes the engine).
#[test]
fn a_blocked_buffered_read_costs_one_desched_stop() {
    const ROUNDS: usize = 20;
    let dir = temp();
    // `wait`: the other thread answers only once the main thread sits in its read, so
    // each of the main thread's reads blocks whatever the schedule (without it, how
    // many do depended on timing, and once in CI none did).
    let (raw, trace) = RecordSpec::new(&fixture("threads_pingpong"), dir.path().join("trace"))
        .args([ROUNDS.to_string().as_str(), "wait"])
        .configure(|c| {
            c.env("CARGO_CHAOS_SYSCALLBUF", "1")
                .env_remove("CARGO_CHAOS_DESCHED")
                .env("CHAOS_LOG", "recorder::record::desched=debug");
        })
        .record_raw();
    assert_eq!(raw.status, 0, "{}", raw.show());
    if !header(&trace).desched {
        eprintln!("skipped: perf events refused here (no desched event)");
        return;
    }
    let events = read_events(&trace);
    let blocked = blocked_buffered(&events, READ).len();
    // The main thread's first read that may block is traced (it opens the thread's
    // desched event); each later one is buffered and blocks. The other thread's reads
    // may block too, depending on the schedule.
    assert!(blocked >= ROUNDS - 1, "{blocked} blocked buffered reads");
    let log = raw.stderr_str();
    let retried = log.matches("made again, traced").count();
    assert_eq!(retried, blocked, "{log}");
    let second = log.matches("a second desched signal").count();
    assert_eq!(
        second, 0,
        "{second} second signals for {blocked} blocked reads"
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trace.join("result.json")).unwrap()).unwrap();
    let signals = result["desched_signals"].as_u64().expect("desched_signals");
    assert!(signals >= blocked as u64, "{signals} desched stops");
    // The recording's stderr has the log: its stdout and status must replay.
    let program = split_record_output(&raw, &trace);
    let replayed = replay(&trace);
    assert_eq!(replayed.status, program.status, "{}", replayed.show());
    assert_eq!(replayed.stdout_str(), program.stdout_str());
}

#[test]
fn edited_buffered_read_reaches_the_program() {
    let dir = temp();
    let rec = record_buffered(dir.path(), "buffered_io", &[], true);
    assert!(rec.program.stdout_str().contains("read: value=12345"));
    let mut events = read_events(&rec.trace);
    let index = *buffered(&events, READ)
        .iter()
        .find(|&&i| {
            matches!(&events[i as usize], Event::Syscall(s)
                if s.writes.iter().any(|w| w.data == b"value=12345\n"))
        })
        .expect("a buffered read of the value");
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    s.writes[0].data = b"value=54321\n".to_vec();
    write_events(&rec.trace, &events).unwrap();
    // The program computes with the edited bytes: it prints them, and the write that
    // prints them no longer matches the recorded one (the same outcome as an edited
    // traced read, see mutation.rs).
    let write = next_stdout_write(&events, index);
    let replayed = replay(&rec.trace);
    // It computes with the edited bytes and diverges at the write of them.
    test_support::divergence::assert_diverged_at(&replayed, write);
    assert!(
        replayed.stderr_str().contains("different data to write"),
        "{}",
        replayed.show()
    );
    assert!(
        !replayed.stdout_str().contains("value=12345"),
        "{}",
        replayed.show()
    );
}

#[test]
fn edited_buffered_write_hash_is_a_divergence_at_that_event() {
    let dir = temp();
    let rec = record_buffered(dir.path(), "buffered_io", &[], true);
    let mut events = read_events(&rec.trace);
    let index = buffered(&events, sys::WRITE)[0];
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    assert_ne!(
        s.input_hash, 0,
        "a buffered write records the hash of its data"
    );
    s.input_hash ^= 2;
    write_events(&rec.trace, &events).unwrap();
    let replayed = replay(&rec.trace);
    test_support::divergence::assert_diverged_at(&replayed, index);
}

/// getrandom is buffered (issue 17's list): its bytes come from the buffer's record into
/// the trace and replay gives the program the same bytes; without the library the call is
/// traced. (mutation.rs edits those bytes in a default, buffered, recording.)
#[test]
fn getrandom_is_buffered_and_replays() {
    for on in [true, false] {
        let dir = temp();
        let rec = record_buffered(dir.path(), "random", &[], on);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let printed = line_with(&rec.program.stdout, "getrandom=");
        let bytes = unhex(printed.trim_start_matches("getrandom="));
        let events = read_events(&rec.trace);
        let calls: Vec<u64> = syscalls(&events)
            .filter(|(_, s)| s.nr == sys::GETRANDOM && s.writes.iter().any(|w| w.data == bytes))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(calls.len(), 1, "one getrandom wrote {printed}");
        assert_eq!(
            buffered(&events, sys::GETRANDOM).contains(&calls[0]),
            on,
            "getrandom buffered with syscallbuf {on}"
        );
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("random (syscallbuf {on})"),
            &rec.program,
            &replayed,
        );
    }
}

/// Writes into a file the process maps `MAP_SHARED` right after its mmap (rr's
/// shared_monitor), and from a forked child with its copy of the library's state (rr's
/// mmap_shared_write_fork): the mmap's event marks the process's buffers, so those
/// writes are traced (and replay's copy of the file gets them) instead of buffered. They
/// were buffered, and the recording stopped at the flush (a write replay would miss).
/// The values written come from the clock; replay shows the recording's.
#[test]
fn writes_right_after_a_shared_mapping_are_traced_and_replay() {
    for _ in 0..3 {
        let dir = temp();
        let rec = record_buffered(dir.path(), "shared_file_writes", &[], true);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let out = rec.program.stdout_str();
        assert_eq!(out.matches("(the written one").count(), 3, "{out}");
        assert!(!out.contains("stale"), "{out}");
        let events = read_events(&rec.trace);
        // Only the zero-filling pwrites before the first shared mapping are buffered.
        let mapped = events
            .iter()
            .position(|e| matches!(e, Event::SharedFile { .. }))
            .expect("a shared mapping") as u64;
        let pwrites = buffered(&events, sys::PWRITE64);
        assert!(!pwrites.is_empty(), "the zero-filling pwrites are buffered");
        assert!(
            pwrites.iter().all(|&i| i < mapped),
            "a pwrite after the shared mapping was buffered"
        );
        let replayed = replay(&rec.trace);
        assert_same("shared_file_writes", &rec.program, &replayed);
    }
}

/// A clone sharing its parent's memory and thread-local area (`CLONE_VM` without
/// `CLONE_SETTLS`, untraced_clone.c) leaves both tasks on one copy of the library's
/// per-thread state: from the clone on neither buffers. With a buffer already (the
/// parent's getrandom first) the clone's event retires it (its calls-left word set to 0,
/// a memory write replay repeats), and the library's next flush call is refused;
/// without one, the registration is refused. The replay is exact, and a trace without
/// the retiring write diverges at the first call after the clone that replay then
/// makes through the buffer instead.
#[test]
fn a_clone_sharing_the_thread_local_area_stops_buffering() {
    const FLUSH: u64 = 1002;
    let enosys = -(libc::ENOSYS as i64);
    for first in [true, false] {
        let dir = temp();
        let args: &[&str] = if first { &["buffered-first"] } else { &[] };
        let rec = record_buffered(dir.path(), "untraced_clone", args, true);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let mut events = read_events(&rec.trace);
        let (clone_at, _) = syscalls(&events)
            .find(|(_, s)| s.nr == sys::CLONE && s.args[0] & libc::CLONE_VM as u64 != 0)
            .expect("the CLONE_VM clone");
        let marked_after = syscalls(&events)
            .filter(|(i, s)| *i > clone_at && s.args[5] == recorder::syscallbuf::abi::MARK)
            .count();
        assert_eq!(
            marked_after, 0,
            "no call buffered after the clone (first {first})"
        );
        let inits: Vec<(u64, i64, u64)> = syscalls(&events)
            .filter(|(_, s)| s.nr == SYSCALLBUF_INIT)
            .map(|(i, s)| (i, s.ret, s.args[0]))
            .collect();
        let retire_write = if first {
            let &(_, ret, buffer) = inits.first().expect("the parent's registration");
            assert!(ret > 0 && inits[0].0 < clone_at, "{inits:?}");
            let Event::Syscall(clone) = &events[clone_at as usize] else {
                unreachable!()
            };
            let w = clone
                .writes
                .iter()
                .position(|w| w.addr == buffer + 8 && w.data == [0; 8])
                .expect("the clone's event retires the parent's buffer");
            let refused = syscalls(&events)
                .find(|(i, s)| *i > clone_at && s.nr == FLUSH)
                .expect("a flush call after the clone");
            assert_eq!(refused.1.ret, enosys);
            Some((w, refused.0))
        } else {
            assert!(
                inits
                    .iter()
                    .all(|&(i, ret, _)| i > clone_at && ret == enosys),
                "{inits:?}"
            );
            None
        };
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("untraced_clone (buffered first: {first})"),
            &rec.program,
            &replayed,
        );
        if let Some((w, flush_at)) = retire_write {
            let Event::Syscall(clone) = &mut events[clone_at as usize] else {
                unreachable!()
            };
            clone.writes.remove(w);
            write_events(&rec.trace, &events).unwrap();
            let replayed = replay(&rec.trace);
            test_support::divergence::assert_diverged_at(&replayed, flush_at);
        }
    }
}

/// Signals held while a thread runs on buffered calls are delivered at the exit of the
/// library's flush call. That stop used to read the flushed records again (the engine's
/// count was already reset, the buffer's cursor not yet): the recording stopped with
/// "the syscall buffer says N bytes of records", 6 times in 6 here.
#[test]
fn signals_delivered_at_a_flush_call_record_and_replay() {
    for round in 0..5 {
        let dir = temp();
        let rec = record_buffered(dir.path(), "signal_at_flush", &[], true);
        assert_eq!(
            rec.program.status,
            0,
            "round {round}: {}",
            rec.program.show()
        );
        let events = read_events(&rec.trace);
        assert!(
            buffered(&events, sys::WRITE).len() >= 1000,
            "round {round}: the writes were buffered"
        );
        let replayed = replay(&rec.trace);
        assert_same("signal_at_flush", &rec.program, &replayed);
    }
}

/// Private futex wakes made through syscall(2), as Rust's std makes them, are buffered
/// (the library's `syscall`); the waits, a shared wake and the other calls made through
/// syscall(2) (six arguments, a failing one) stay traced and behave as libc's wrapper
/// does; the replay is exact. Without the library every futex call is traced.
#[test]
fn private_futex_wakes_are_buffered_and_replay() {
    const WAKE_PRIVATE: u64 = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u64;
    for on in [true, false] {
        let dir = temp();
        let rec = record_buffered(dir.path(), "futex_wakes", &[], on);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let out = rec.program.stdout_str();
        for line in [
            "mmap: ok",
            "close(-1): -1, errno 9",
            "shared wake: 0",
            "getpid matches: 1",
        ] {
            assert!(out.contains(line), "{line}: {}", rec.program.show());
        }
        let events = read_events(&rec.trace);
        let futex: Vec<_> = syscalls(&events)
            .filter(|(_, s)| s.nr == sys::FUTEX)
            .map(|(_, s)| s)
            .collect();
        let wakes = futex.iter().filter(|s| s.args[1] == WAKE_PRIVATE).count();
        assert_eq!(wakes, 600, "one private wake per pass");
        let marked = buffered(&events, sys::FUTEX);
        if on {
            assert_eq!(marked.len(), wakes, "every private wake buffered");
            assert!(
                futex
                    .iter()
                    .filter(|s| s.args[5] == recorder::syscallbuf::abi::MARK)
                    .all(|s| s.args[1] == WAKE_PRIVATE),
                "only wakes are buffered"
            );
        } else {
            assert!(marked.is_empty());
        }
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("futex_wakes (syscallbuf {on})"),
            &rec.program,
            &replayed,
        );
    }
}

/// The desched event is on by default and opened at a thread's first read that may
/// block, not at its buffer's registration: the threads of `threads_mutex`, which
/// read no pipe, register buffers and get no event; in `threads_pipe` the reader gets
/// one (its first read asks for it: traced, then the event's fd written into its
/// buffer's header word as a memory write of that read, so replay writes it too) and
/// its later reads that found the pipe empty took the desched path (buffered,
/// `DESCHED_RET`, made again traced), while the writer, which reads no pipe, gets none.
#[test]
fn desched_event_by_default_at_a_threads_first_blocking_read() {
    use recorder::syscallbuf::abi;
    let dir = temp();
    let rec = record_desched(dir.path(), "threads_mutex", &[], true);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    if !context_switch_events_allowed() {
        eprintln!("skipped: perf events refused here (no desched event)");
        return;
    }
    assert!(
        header(&rec.trace).desched,
        "on by default where perf events are allowed"
    );
    let events = read_events(&rec.trace);
    let registered: std::collections::BTreeSet<i32> = syscalls(&events)
        .filter(|(_, s)| s.nr == SYSCALLBUF_INIT && s.ret > 0)
        .inspect(|(i, s)| {
            assert_eq!(s.ret >> 32, abi::DESCHED_LAZY as i64, "event {i}: lazy");
        })
        .map(|(_, s)| s.tid)
        .collect();
    assert!(registered.len() >= 2, "{registered:?} registered buffers");
    assert!(asking_reads(&events).is_empty());
    assert_eq!(result_json(&rec.trace)["desched_events"].as_u64(), Some(0));
    assert_same("threads_mutex", &rec.program, &replay(&rec.trace));

    let dir = temp();
    let rec = record_desched(dir.path(), "threads_pipe", &[], true);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let events = read_events(&rec.trace);
    assert_eq!(result_json(&rec.trace)["desched_events"].as_u64(), Some(1));
    let asked = asking_reads(&events);
    assert_eq!(asked.len(), 1, "one read asked for the event");
    let (i, ask) = asked[0];
    let buffer = syscalls(&events)
        .filter(|(_, s)| s.nr == SYSCALLBUF_INIT && s.tid == ask.tid && s.ret > 0)
        .map(|(_, s)| s.args[0])
        .last()
        .expect("the reader's buffer");
    let word = ask
        .writes
        .iter()
        .find(|w| w.addr == buffer + abi::H_DESCHED * 8)
        .unwrap_or_else(|| panic!("event {i}: no write of the event's fd: {ask:?}"));
    let fd = i64::from_le_bytes(word.data[..].try_into().unwrap());
    assert!(fd >= abi::DESCHED_FD_FLOOR as i64, "event {i}: fd {fd}");
    let blocked = blocked_buffered(&events, READ);
    assert!(
        blocked.len() >= 3,
        "{} blocked buffered reads",
        blocked.len()
    );
    for (j, _) in &blocked {
        assert!(*j > i, "event {j}: buffered before the event was asked for");
        match &events[*j as usize] {
            Event::Syscall(s) => assert_eq!(s.tid, ask.tid, "event {j}: the reader's"),
            _ => unreachable!(),
        }
    }
    assert_same("threads_pipe", &rec.program, &replay(&rec.trace));
}

/// Forked children and the lazily opened event: child A, forked before its parent's
/// first pipe read, asks for its own at its first read; child B, forked after, gets its
/// own under its parent's number at its first stop (its copy of the buffer names it)
/// and never asks. Three events in all; both children's reads on their pipes are
/// buffered (or blocked and made again, traced), and the recording replays.
#[test]
fn forked_children_get_their_own_desched_event() {
    let dir = temp();
    let rec = record_desched(dir.path(), "fork_desched", &[], true);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let out = rec.program.stdout_str();
    assert!(
        out.contains("A exited 0") && out.contains("B exited 0"),
        "{out}"
    );
    if !context_switch_events_allowed() {
        eprintln!("skipped: perf events refused here (no desched event)");
        assert_same("fork_desched", &rec.program, &replay(&rec.trace));
        return;
    }
    assert!(header(&rec.trace).desched, "on by default");
    let events = read_events(&rec.trace);
    assert_eq!(result_json(&rec.trace)["desched_events"].as_u64(), Some(3));
    // The parent and A asked, B did not.
    let askers: std::collections::BTreeSet<i32> =
        asking_reads(&events).iter().map(|(_, s)| s.tid).collect();
    assert_eq!(askers.len(), 2, "{askers:?}");
    let readers: std::collections::BTreeSet<i32> = buffered(&events, READ)
        .iter()
        .filter_map(|&i| match &events[i as usize] {
            Event::Syscall(s) if !askers.contains(&s.tid) => Some(s.tid),
            _ => None,
        })
        .collect();
    assert!(!readers.is_empty(), "B's pipe reads were not buffered");
    assert_same("fork_desched", &rec.program, &replay(&rec.trace));
}

/// A buffered `FUTEX_WAKE` that wakes a waiter is followed by the library's flush call,
/// and under the default policy the woken thread runs next (its wait's exit is the very
/// next event), as the kernel's wakeup preemption gives it the CPU natively; so does a
/// traced one (`--no-syscallbuf`). Left for the next flush, the waker ran on, usually
/// took its lock again first, and the woken thread waited again: a convoy in which
/// crossbeam-channel's `select_macro::loop_try` timed out in 3 recordings of 3 (it
/// passes natively, even pinned to one CPU).
#[test]
fn a_thread_woken_by_a_futex_wake_runs_next() {
    const FUTEX: u64 = 202;
    const FLUSH: u64 = 1002;
    for on in [true, false] {
        let dir = temp();
        let rec = record_buffered(dir.path(), "futex_handoff", &[], on);
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        let events = read_events(&rec.trace);
        let calls: Vec<_> = syscalls(&events).map(|(_, s)| s).collect();
        let wakes: Vec<usize> = calls
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.nr == FUTEX && s.args[1] == recorder::syscallbuf::FUTEX_WAKE_PRIVATE && s.ret == 1
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            wakes.len(),
            10,
            "wakes that woke the worker (buffering {on})"
        );
        for i in wakes {
            let wake = calls[i];
            let mut next = calls[i + 1];
            if on {
                assert_eq!(wake.args[5], recorder::syscallbuf::abi::MARK, "buffered");
                assert_eq!(
                    (next.tid, next.nr),
                    (wake.tid, FLUSH),
                    "the waker's flush call right after its wake"
                );
                next = calls[i + 2];
            }
            assert!(
                next.tid != wake.tid && next.nr == FUTEX && next.args[0] == wake.args[0],
                "the woken worker's wait returns next (buffering {on}), not {next:?}"
            );
        }
        let replayed = replay(&rec.trace);
        assert_same("futex_handoff", &rec.program, &replayed);
    }
}
