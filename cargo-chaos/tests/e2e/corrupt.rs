//! Damaged traces: a clear error and exit status 125, never a panic; a killed recording
//! replays up to its last complete event and then says so.

use std::path::{Path, PathBuf};

use super::common::*;
use test_support::{chunk_ends, write_events_chunked};

/// A recording of `steps 10` (ten writes to stdout), made once per test.
fn steps_recording(dir: &Path) -> Recording {
    let rec = record(dir, &fixture("steps"), &["10"]);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    rec
}

/// A plain copy of the trace, to damage.
fn copy_of(trace: &Path, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    copy_tree(trace, &dest).expect("copy the trace");
    dest
}

/// Replay refused or stopped with 125 and a message that mentions the trace, without a
/// panic; `dump` does not panic either.
#[track_caller]
fn assert_refused(what: &str, trace: &Path) -> Run {
    let replayed = replay(trace);
    assert_eq!(
        replayed.status,
        FAILED,
        "{what}: replay should fail with {FAILED}\n{}",
        replayed.show()
    );
    let err = replayed.stderr_str().to_lowercase();
    assert!(
        err.contains("trace") || err.contains("events"),
        "{what}: the message should say what is wrong with the trace\n{}",
        replayed.show()
    );
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("dump").arg(trace);
    run(&mut cmd); // no panic, whatever the status
    replayed
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn truncated_events() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let size = std::fs::metadata(rec.trace.join("events")).unwrap().len();
    assert!(size > 16, "events file is only {size} bytes");
    for cut in [0, 1, 3, 4, 9, size / 2, size - 1] {
        let trace = copy_of(&rec.trace, dir.path(), &format!("cut-{cut}"));
        truncate(&trace.join("events"), cut);
        let replayed = assert_refused(&format!("events cut at {cut} of {size} bytes"), &trace);
        let err = replayed.stderr_str().to_lowercase();
        assert!(
            ["end", "cut", "truncat", "damaged", "corrupt"]
                .iter()
                .any(|w| err.contains(w)),
            "events cut at {cut}: the message should say that the trace is cut short\n{}",
            replayed.show()
        );
    }
}

#[test]
fn missing_events_file() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let trace = copy_of(&rec.trace, dir.path(), "no-events");
    std::fs::remove_file(trace.join("events")).unwrap();
    assert_refused("no events file", &trace);
}

#[test]
fn garbage_in_events() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let original = std::fs::read(rec.trace.join("events")).unwrap();
    let len = original.len();
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "garbage in the middle",
            Box::new(move |d: &mut Vec<u8>| d[len / 3..len / 2].fill(0xa5)),
        ),
        (
            "a huge chunk length",
            Box::new(|d: &mut Vec<u8>| d[..4].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        (
            "a zero chunk length",
            Box::new(|d: &mut Vec<u8>| d[..4].copy_from_slice(&0u32.to_le_bytes())),
        ),
        (
            "every byte inverted",
            Box::new(|d: &mut Vec<u8>| d.iter_mut().for_each(|b| *b = !*b)),
        ),
    ];
    for (what, damage) in damages {
        let trace = copy_of(&rec.trace, dir.path(), &what.replace(' ', "-"));
        let mut data = original.clone();
        damage(&mut data);
        std::fs::write(trace.join("events"), &data).unwrap();
        let replayed = replay(&trace);
        assert_eq!(
            replayed.status,
            FAILED,
            "{what}: replay should fail with {FAILED}\n{}",
            replayed.show()
        );
        assert!(!replayed.stderr.is_empty(), "{what}: no message");
    }

    // Garbage after the exit event is never read: replay may finish exactly as recorded,
    // or refuse the trace; it must not do anything else.
    let trace = copy_of(&rec.trace, dir.path(), "trailing-garbage");
    let mut data = original.clone();
    data.extend_from_slice(b"\x07\x00\x00\x00garbage");
    std::fs::write(trace.join("events"), &data).unwrap();
    let replayed = replay(&trace);
    if replayed.status != FAILED {
        assert_same(
            "steps with garbage after the last chunk",
            &rec.program,
            &replayed,
        );
    }
}

#[test]
fn foreign_version() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let trace = copy_of(&rec.trace, dir.path(), "v999");
    std::fs::write(trace.join("version"), "chaos-trace 999\n").unwrap();
    let replayed = assert_refused("a foreign version", &trace);
    assert!(
        replayed.stderr_str().contains("999"),
        "the message should name the trace's version\n{}",
        replayed.show()
    );
    assert!(
        replayed.stdout.is_empty(),
        "nothing may be replayed from a foreign version\n{}",
        replayed.show()
    );

    for (what, content) in [
        ("an empty version file", ""),
        ("another format", "rr-trace 5\n"),
    ] {
        let trace = copy_of(&rec.trace, dir.path(), &what.replace(' ', "-"));
        std::fs::write(trace.join("version"), content).unwrap();
        assert_refused(what, &trace);
    }
    let trace = copy_of(&rec.trace, dir.path(), "no-version");
    std::fs::remove_file(trace.join("version")).unwrap();
    assert_refused("no version file", &trace);
}

#[test]
fn not_a_trace() {
    let dir = temp();
    assert_refused("a missing directory", &dir.path().join("does-not-exist"));
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a trace").unwrap();
    assert_refused("a regular file", &file);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_refused("an empty directory", &empty);
}

#[test]
fn damaged_header_or_missing_captured_files() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let trace = copy_of(&rec.trace, dir.path(), "bad-header");
    std::fs::write(trace.join("header.json"), "{ this is not json").unwrap();
    assert_refused("a damaged header.json", &trace);

    let trace = copy_of(&rec.trace, dir.path(), "no-files");
    for f in std::fs::read_dir(trace.join("files")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let replayed = replay(&trace);
    assert_eq!(
        replayed.status,
        FAILED,
        "missing captured files\n{}",
        replayed.show()
    );
    assert!(replayed.stdout.is_empty(), "{}", replayed.show());
}

#[test]
fn killed_recording_replays_up_to_its_last_complete_event() {
    let dir = temp();
    let rec = steps_recording(dir.path());
    let events = read_events(&rec.trace);
    // The fifth write to stdout prints "step 4".
    let writes: Vec<u64> = syscalls(&events)
        .filter(|(_, s)| s.nr == sys::WRITE && s.args[0] == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(writes.len(), 10, "steps 10 should write 10 times");
    let last_kept = writes[4];

    // What a killed recorder leaves: no result.json, and the events stream ends in the
    // middle of a chunk. One event per chunk, cut inside the chunk after `last_kept`.
    let trace = copy_of(&rec.trace, dir.path(), "killed");
    std::fs::remove_file(trace.join("result.json")).unwrap();
    write_events_chunked(&trace, &events, 1).unwrap();
    let ends = chunk_ends(&trace.join("events")).unwrap();
    assert_eq!(ends.len(), events.len());
    truncate(&trace.join("events"), ends[last_kept as usize] + 6);

    let replayed = replay(&trace);
    let expected: String = rec
        .program
        .stdout_str()
        .lines()
        .take(5)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        replayed.stdout_str(),
        expected,
        "the replay should show the output of the events before the cut\n{}",
        text_diff(expected.as_bytes(), &replayed.stdout)
    );
    assert_eq!(replayed.status, FAILED, "{}", replayed.show());
    let err = replayed.stderr_str().to_lowercase();
    assert!(
        err.contains("trace")
            && (err.contains("end") || err.contains("cut short") || err.contains("truncat")),
        "the replay should say that the trace ends early\n{}",
        replayed.show()
    );

    // The same, cut exactly at a chunk boundary (the recorder was killed between chunks).
    let trace = copy_of(&rec.trace, dir.path(), "killed-at-boundary");
    std::fs::remove_file(trace.join("result.json")).unwrap();
    write_events_chunked(&trace, &events, 1).unwrap();
    truncate(&trace.join("events"), ends[last_kept as usize]);
    let replayed = replay(&trace);
    assert_eq!(replayed.stdout_str(), expected, "{}", replayed.show());
    assert_eq!(replayed.status, FAILED, "{}", replayed.show());
    assert!(
        replayed.stderr_str().to_lowercase().contains("end"),
        "{}",
        replayed.show()
    );

    // And as the recorder writes it (one chunk): cut anywhere, nothing complete is left.
    let trace = copy_of(&rec.trace, dir.path(), "killed-one-chunk");
    std::fs::remove_file(trace.join("result.json")).unwrap();
    let size = std::fs::metadata(trace.join("events")).unwrap().len();
    truncate(&trace.join("events"), size / 2);
    let replayed = assert_refused("a killed recording", &trace);
    assert!(replayed.stdout.is_empty(), "{}", replayed.show());
}
