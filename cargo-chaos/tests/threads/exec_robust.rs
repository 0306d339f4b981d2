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
    let traces = rounds(
        "exec_thread",
        &[],
        &[
            "same process: yes",
            "now the leader (tid = pid): yes",
            "exec'ed from another thread (old tid != pid): yes",
        ],
    );
    for events in traces {
        // The execve is made by a thread other than the leader, while the leader waits
        // in a futex and the reader in read; the new image is the leader's.
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
        assert_ne!(
            execve.tid, leader,
            "the execve was made by the leader, not by another thread"
        );
        let blocked: Vec<(i32, u64)> = events[..at]
            .iter()
            .filter_map(|e| match e {
                Event::Blocked { tid, nr, .. } => Some((*tid, *nr)),
                _ => None,
            })
            .collect();
        assert!(
            blocked.contains(&(leader, sys::FUTEX)),
            "the leader was not blocked in a futex wait before the exec: {blocked:?}"
        );
        assert!(
            blocked
                .iter()
                .any(|&(t, nr)| nr == sys::READ && t != leader && t != execve.tid),
            "the reader was not blocked in read before the exec: {blocked:?}"
        );
    }
}
