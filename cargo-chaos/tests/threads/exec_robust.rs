//! Issue 16: an exec from a thread other than the main one, and robust mutexes whose
//! owner died. Each fixture is recorded and replayed 10 times; every replay must show
//! its recording's stdout, stderr and status byte for byte.

use recorder::trace::Event;

use super::common::*;

/// How many times each fixture is recorded and replayed.
const ROUNDS: usize = 10;

/// Records and replays fixture `name` (with `args`) [`ROUNDS`] times; each recording
/// must succeed and print every line of `expect`. Returns the traces' events.
fn rounds(name: &str, args: &[&str], expect: &[&str]) -> Vec<Vec<Event>> {
    let program = c_fixture(name);
    (0..ROUNDS)
        .map(|round| {
            let dir = temp();
            let what = format!("{name} (round {round})");
            let rec = record_and_replay(&what, &program, args, &dir.path().join("trace"));
            assert_eq!(
                rec.program.status,
                0,
                "{what} failed while recorded\n{}",
                rec.program.show()
            );
            assert_eq!(
                rec.program.stderr_str(),
                format!("{name}: done\n"),
                "{what}'s stderr"
            );
            let out = rec.program.stdout_str();
            for e in expect {
                assert!(
                    out.lines().any(|l| l == *e),
                    "{what}'s recorded output lacks the line `{e}`\n{}",
                    rec.program.show()
                );
            }
            read_events(&rec.trace)
        })
        .collect()
}

#[test]
fn exec_from_a_thread_other_than_the_main_one() {
    check_exec(&[], "other");
}

#[test]
fn exec_from_the_main_thread_while_others_are_blocked() {
    check_exec(&["from-main"], "main");
}

/// `exec_thread ARGS`: the thread `by` ("main" or "other") execs while the other
/// threads sit in blocking calls (a futex wait and a pipe read).
fn check_exec(args: &[&str], by: &str) {
    let traces = rounds(
        "exec_thread",
        args,
        &[
            "same process: yes",
            "now the leader (tid = pid): yes",
            &format!("exec'ed by thread {by}"),
        ],
    );
    for events in traces {
        // The new image is the leader's, whichever thread exec'ed.
        let execs: Vec<(usize, i32)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::Exec(state) => Some((i, state.tid)),
                _ => None,
            })
            .collect();
        assert_eq!(execs.len(), 2, "two images expected: {execs:?}");
        let (at, leader) = execs[1];
        assert_eq!(leader, execs[0].1, "the new image is not the leader's");
        let Some(Event::Syscall(execve)) = events.get(at - 1) else {
            panic!("the second exec does not follow an execve");
        };
        assert_eq!(
            execve.tid == leader,
            by == "main",
            "the execve was made by thread {}, the leader is {leader}",
            execve.tid
        );
        // The others sat in a futex wait and a read when it exec'ed.
        let blocked: Vec<(i32, u64)> = events[..at]
            .iter()
            .filter_map(|e| match e {
                Event::Blocked { tid, nr, .. } => Some((*tid, *nr)),
                _ => None,
            })
            .collect();
        for nr in [sys::FUTEX, sys::READ] {
            assert!(
                blocked.iter().any(|&(t, n)| n == nr && t != execve.tid),
                "no other thread was blocked in syscall {nr} before the exec: {blocked:?}"
            );
        }
    }
}

#[test]
fn robust_mutexes_whose_owner_died() {
    let traces = rounds(
        "robust_mutex",
        &[],
        &[
            "after join: lock returned EOWNERDEAD",
            "after join: locked again: ok",
            "waiting: lock returned EOWNERDEAD",
            "waiting: locked again: ok",
            "child exited with 0",
            "owner recorded by the child: its tid",
            "shared with a child: lock returned EOWNERDEAD",
            "shared with a child: locked again: ok",
            "exec'ed child exited with 0",
            "shared with an exec'ing child: lock returned EOWNERDEAD",
            "shared with an exec'ing child: locked again: ok",
            "killed child: SIGUSR1",
            "shared with a killed child: lock returned EOWNERDEAD",
            "shared with a killed child: locked again: ok",
            "SIGKILLed child: SIGKILL",
            "shared with a SIGKILLed child: lock returned EOWNERDEAD",
            "shared with a SIGKILLed child: locked again: ok",
            "own list: owned marked, not owned unchanged, pending marked",
        ],
    );
    for events in traces {
        // The main thread waited in the lock while the second owner ended.
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Blocked { nr, .. } if *nr == sys::FUTEX)),
            "no thread was blocked in a futex wait"
        );
    }
}
