//! Re-execution is proven: edit one recorded value in a trace and the replayed program
//! computes with the edited value (so it either prints it, or the replay stops with a
//! divergence where the edited value first reaches a checked system call, i.e. the write
//! that prints it); edit the recorded hash of a write's data, its arguments or the exit
//! status and the replay reports a divergence at exactly that event.

use recorder::trace::{Event, ExitKind};

use super::common::*;

#[test]
fn edited_getrandom_bytes() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("random"), &[]);
    let original_line = line_with(&rec.program.stdout, "getrandom=");
    let original = unhex(original_line.trim_start_matches("getrandom="));
    assert_eq!(original.len(), 16);
    let mut events = read_events(&rec.trace);
    let (index, _) = syscalls(&events)
        .find(|(_, s)| {
            s.nr == sys::GETRANDOM
                && s.writes
                    .iter()
                    .flat_map(|w| w.data.iter().copied())
                    .collect::<Vec<u8>>()
                    == original
        })
        .unwrap_or_else(|| {
            panic!(
                "no getrandom event wrote the printed bytes {}",
                hex(&original)
            )
        });
    let edited: Vec<u8> = original.iter().map(|b| !b).collect();
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    assert_eq!(s.writes.len(), 1, "getrandom writes one buffer");
    s.writes[0].data = edited.clone();
    write_events(&rec.trace, &events).unwrap();

    let write = next_stdout_write(&events, index);
    let replayed = replay(&rec.trace);
    assert_edit_seen(
        &replayed,
        &rec.program,
        index,
        write,
        &original_line,
        &format!("getrandom={}", hex(&edited)),
    );
}

#[test]
fn edited_clock_gettime_result() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("time"), &[]);
    let original_line = line_with(&rec.program.stdout, "clock_realtime=");
    let (sec, nsec) = original_line
        .trim_start_matches("clock_realtime=")
        .split_once('.')
        .unwrap();
    let (sec, nsec): (i64, i64) = (sec.parse().unwrap(), nsec.parse().unwrap());
    let mut events = read_events(&rec.trace);
    let (index, _) = syscalls(&events)
        .find(|(_, s)| {
            s.nr == sys::CLOCK_GETTIME
                && s.args[0] == 0
                && s.writes.iter().any(|w| {
                    w.data.len() == 16
                        && i64::from_le_bytes(w.data[..8].try_into().unwrap()) == sec
                        && i64::from_le_bytes(w.data[8..].try_into().unwrap()) == nsec
                })
        })
        .unwrap_or_else(|| panic!("no clock_gettime(CLOCK_REALTIME) event wrote {sec}.{nsec:09}"));
    let (new_sec, new_nsec) = (1_234_567_890i64, 123_456_789i64);
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    let w = s.writes.iter_mut().find(|w| w.data.len() == 16).unwrap();
    w.data[..8].copy_from_slice(&new_sec.to_le_bytes());
    w.data[8..].copy_from_slice(&new_nsec.to_le_bytes());
    write_events(&rec.trace, &events).unwrap();

    let write = next_stdout_write(&events, index);
    let replayed = replay(&rec.trace);
    assert_edit_seen(
        &replayed,
        &rec.program,
        index,
        write,
        &original_line,
        &format!("clock_realtime={new_sec}.{new_nsec:09}"),
    );
}

/// A recording of `steps 5` and the event numbers of its five writes to stdout.
fn steps(dir: &std::path::Path) -> (Recording, Vec<Event>, Vec<u64>) {
    let rec = record(dir, &fixture("steps"), &["5"]);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let events = read_events(&rec.trace);
    let writes: Vec<u64> = syscalls(&events)
        .filter(|(_, s)| s.nr == sys::WRITE && s.args[0] == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(writes.len(), 5, "steps 5 writes five times");
    (rec, events, writes)
}

/// The replay diverged at exactly `event`, after showing the output of the two writes
/// before it and none after it.
#[track_caller]
fn assert_diverged_at_third_write(replayed: &Run, recorded: &Run, event: u64) {
    assert_diverged_at(replayed, event);
    assert_eq!(recorded.stdout_str().lines().count(), 5);
    let out = replayed.stdout_str();
    assert!(
        recorded.stdout_str().starts_with(&out)
            && out.lines().count() >= 2
            && out.lines().count() <= 3,
        "the replay should have shown the steps before the divergence and none after\n{}",
        replayed.show()
    );
}

#[test]
fn edited_write_input_hash() {
    let dir = temp();
    let (rec, mut events, writes) = steps(dir.path());
    let index = writes[2];
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    assert_ne!(s.input_hash, 0, "a write records the hash of its data");
    s.input_hash ^= 1;
    write_events(&rec.trace, &events).unwrap();
    let replayed = replay(&rec.trace);
    assert_diverged_at_third_write(&replayed, &rec.program, index);
}

#[test]
fn edited_write_arguments() {
    let dir = temp();
    let (rec, mut events, writes) = steps(dir.path());
    let index = writes[2];
    let Event::Syscall(s) = &mut events[index as usize] else {
        unreachable!()
    };
    s.args[2] += 1; // the length
    write_events(&rec.trace, &events).unwrap();
    let replayed = replay(&rec.trace);
    assert_diverged_at_third_write(&replayed, &rec.program, index);
}

#[test]
fn edited_exit_status() {
    let dir = temp();
    let (rec, mut events, _) = steps(dir.path());
    let last = events.len() - 1;
    let Event::Exit { how, .. } = &mut events[last] else {
        panic!("the last event is not the exit: {:?}", events[last]);
    };
    assert_eq!(*how, ExitKind::Exited(0));
    *how = ExitKind::Exited(7);
    write_events(&rec.trace, &events).unwrap();
    let replayed = replay(&rec.trace);
    assert_diverged_at(&replayed, last as u64);
    assert_eq!(
        replayed.stdout, rec.program.stdout,
        "the program's output comes before the exit"
    );
}
