//! One recording replayed 20 times: 20 identical outputs, and the trace directory is
//! byte-identical before and after.

use super::common::*;

const REPLAYS: usize = 20;

#[test]
fn twenty_replays_are_identical_and_leave_the_trace_untouched() {
    let dir = temp();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "repeat me\n").unwrap();
    let rec = record(dir.path(), &fixture("fileio"), &[input.to_str().unwrap()]);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let before = snapshot(&rec.trace).expect("snapshot the trace");
    // The replayer's scratch files go under TMPDIR: it must clean up after itself.
    let tmp = temp();
    let mut outputs = Vec::new();
    for i in 0..REPLAYS {
        let replayed = replay_with(&rec.trace, &[], |c| {
            c.env("TMPDIR", tmp.path());
        });
        assert_same(
            &format!("replay {} of {REPLAYS}", i + 1),
            &rec.program,
            &replayed,
        );
        outputs.push(replayed);
    }
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "the replays differ from each other"
    );
    let after = snapshot(&rec.trace).expect("snapshot the trace");
    let diff = snapshot_diff(&before, &after);
    assert!(
        diff.is_empty(),
        "the replays changed the trace directory:\n{diff}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "the replays left files in TMPDIR: {left:?}"
    );
}
