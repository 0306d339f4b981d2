//! Two hunts at once in one target directory, as two CI jobs sharing a cache do: each
//! works in its own scratch directory, so every archive either reports holds its own
//! failing run, which replays with the recorded status and prints what that run printed.

use std::path::{Path, PathBuf};

use super::common::{capture1, example_manifest, recorded_stdout, Messages, Run, Sandbox};

/// Rounds of two concurrent hunts.
const ROUNDS: usize = 5;

/// `wall_clock` fails one run in three: 80 runs miss with probability 1e-14 (flaky.rs).
const MAX_RUNS: &str = "80";

#[test]
fn concurrent_hunts_in_one_target_dir_keep_their_captures_apart() {
    let sb = Sandbox::new();
    let manifest = example_manifest();
    let target = sb.target();
    let args = [
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--until-fail",
        "--max-runs",
        MAX_RUNS,
        "--per-test",
        "--jobs",
        "2",
        "--message-format",
        "json",
        "wall_clock",
    ];
    let mut archives: Vec<PathBuf> = Vec::new();
    for round in 0..ROUNDS {
        let hunts: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| Run::of(sb.record_test_cmd(args))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("the hunt's thread"))
                .collect()
        });
        for hunt in &hunts {
            hunt.expect_status(1);
            let captured = hunt.captured();
            assert_eq!(captured["test"], "tests::wall_clock", "{captured}");
            let archive = PathBuf::from(captured["archive"].as_str().expect("archive path"));
            assert!(archive.is_file(), "round {round}: {}", archive.display());
            archives.push(archive);
        }
    }
    // Nothing is left behind in the runs directory but the shared capture cache.
    let left: Vec<String> = std::fs::read_dir(target.join("chaos/runs"))
        .expect("the runs directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "captured-files")
        .collect();
    assert!(left.is_empty(), "left in target/chaos/runs: {left:?}");

    for (i, archive) in archives.iter().enumerate() {
        check_archive(&sb, archive, &sb.path(&format!("unpacked-{i}")));
    }
}

/// The archive holds one failing run of `wall_clock`: its recorded output is that run's,
/// and replaying it prints the same and ends with 101.
fn check_archive(sb: &Sandbox, archive: &Path, scratch: &Path) {
    let recorded = recorded_stdout(archive, scratch);
    let printed = capture1(r"wall clock nanoseconds: (\d+)", &recorded);
    let panicked = capture1(r"the clock read (\d+) ns, a multiple of 3", &recorded);
    assert_eq!(printed, panicked, "{}: {recorded}", archive.display());
    let replay = sb.replay([archive]);
    replay.expect_status(101);
    assert_eq!(
        replay.stdout_str(),
        recorded,
        "{}: the replay printed something else than the failing run\n{}",
        archive.display(),
        replay.show()
    );
    let stderr = replay.stderr_str();
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains("the replay matched the recording (status 101)"),
        "{}: summary line: {summary}\n{}",
        archive.display(),
        replay.show()
    );
}
