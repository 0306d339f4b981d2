//! The C fixtures (`tests/fixtures/c/threads_*.c`): recorded, replayed, and the replay
//! must show the same stdout, stderr and exit status byte for byte. Each fixture also
//! proves that the situation it is about happened: the trace holds a `Blocked` event
//! for the call another thread had to get past.

use recorder::trace::Event;

use super::common::*;

/// Records and replays fixture `name`, checks its own report of success, and that some
/// thread was descheduled while blocked in one of `blocked_in`; returns the trace's
/// events.
fn check(name: &str, expect: &[&str], blocked_in: &[u64]) -> Vec<Event> {
    let dir = temp();
    let program = c_fixture(name);
    let rec = record_and_replay(name, &program, &[], &dir.path().join("trace"));
    assert_eq!(
        rec.program.status,
        0,
        "{name} failed while recorded\n{}",
        rec.program.show()
    );
    let out = rec.program.stdout_str();
    for e in expect {
        assert!(
            out.contains(e),
            "{name}'s recorded output lacks `{e}`\n{}",
            rec.program.show()
        );
    }
    assert_eq!(
        rec.program.stderr_str(),
        format!("{name}: done\n"),
        "{name}'s stderr"
    );
    let events = read_events(&rec.trace);
    let blocked: Vec<(usize, i32, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Blocked { tid, nr, .. } => Some((i, *tid, *nr)),
            _ => None,
        })
        .collect();
    assert!(
        blocked.iter().any(|(_, _, nr)| blocked_in.contains(nr)),
        "the trace of {name} has no thread blocked in syscall {blocked_in:?}; blocked events (event, tid, nr): {blocked:?}"
    );
    let tids: std::collections::BTreeSet<i32> = events.iter().map(Event::tid).collect();
    assert!(
        tids.len() >= 2,
        "the trace of {name} shows a single thread: {tids:?}"
    );
    events
}

#[test]
fn mutex_and_condition_variable_lock_order() {
    check(
        "threads_mutex",
        &["lock order:", "worker 3 tid=", "item 15 taken by worker"],
        &[sys::FUTEX],
    );
}

#[test]
fn thread_blocked_in_pipe_read() {
    check(
        "threads_pipe",
        &["got 48 bytes [msg 2 from", "eof after 3 messages"],
        &[sys::READ, sys::PREAD64],
    );
}

#[test]
fn thread_blocked_in_accept() {
    check(
        "threads_accept",
        &["listening on port", "got [reply 2 from"],
        &[sys::ACCEPT, sys::ACCEPT4],
    );
}

#[test]
fn epoll_with_eventfd_and_timerfd() {
    check(
        "threads_epoll",
        &["eventfd=3", "eventfd sum 6"],
        &[sys::EPOLL_WAIT, sys::EPOLL_PWAIT, sys::EPOLL_PWAIT2],
    );
}

/// A blocked call's outputs are not written while other threads run: readv, preadv2,
/// recvmsg and pselect6 each block in a worker thread while the main thread reads the
/// memory they write, again and again, until the call has returned. Record and replay
/// must print the same counts (the memory changes at the call's recorded return, not
/// when the kernel finished it), and no read may see a partial write.
#[test]
fn blocked_calls_write_their_outputs_when_they_return() {
    use recorder::syscalls::nr;
    let calls = [nr::READV, nr::PREADV2, nr::RECVMSG, nr::PSELECT6];
    let events = check(
        "threads_blocked_outputs",
        &[
            "readv: returned 64;",
            "preadv2: returned 64;",
            "recvmsg: returned 64;",
            "pselect6: returned 1;",
            "0 partial; then as expected",
        ],
        &calls,
    );
    // Each of the four calls was seen blocked.
    let blocked: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Blocked { nr, .. } => Some(*nr),
            _ => None,
        })
        .collect();
    for nr in calls {
        assert!(
            blocked.contains(&nr),
            "no thread was blocked in syscall {nr}: {blocked:?}"
        );
    }
}

#[test]
fn main_thread_killed_by_a_signal_beside_a_blocked_thread() {
    // The leader dies of SIGABRT while another thread sits in a read: replay must end
    // with the same status instead of waiting forever for the leader's end.
    let dir = temp();
    let program = c_fixture("threads_leader_abort");
    let rec = record_and_replay(
        "threads_leader_abort",
        &program,
        &[],
        &dir.path().join("trace"),
    );
    assert_eq!(
        rec.program.status,
        128 + libc::SIGABRT,
        "{}",
        rec.program.show()
    );
    assert!(
        rec.program
            .stdout_str()
            .contains("main: aborting beside a blocked reader"),
        "{}",
        rec.program.show()
    );
    let tids: std::collections::BTreeSet<i32> =
        read_events(&rec.trace).iter().map(Event::tid).collect();
    assert!(tids.len() >= 2, "a single thread in the trace: {tids:?}");
}
