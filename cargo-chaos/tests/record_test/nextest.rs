//! Issue 18 item 6: nextest users capture failing tests without leaving nextest. The
//! wrapper script of `ci-examples/nextest.toml`, as written, runs each test under
//! `cargo chaos record --pack-on-failure`: a passing test leaves nothing, a failing one
//! an archive that replays. Needs cargo-nextest (`.ci/run` installs it); without it the
//! test is skipped, except under `CI`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{copy_example, tool, Run, Sandbox};

/// Whether `cargo nextest` runs here.
fn nextest_present() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo nextest run ARGS` in `repo`, with cargo-chaos's binaries first in PATH.
fn nextest(sb: &Sandbox, repo: &Path, args: &[&str]) -> Run {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cargo-chaos"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = vec![bin_dir];
    dirs.extend(std::env::split_paths(&path));
    let mut cmd = Command::new(tool("timeout"));
    cmd.args(["--kill-after=10", "600", "cargo", "nextest", "run"])
        .args(["--target-dir", sb.target().to_str().unwrap()])
        .args(args)
        .current_dir(repo)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("XDG_CACHE_HOME", sb.path("cache"))
        // Panics print their message only (see common.rs).
        .env("RUST_BACKTRACE", "0")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("NEXTEST_PROFILE");
    Run::of(cmd)
}

fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".chaos.tar.zst"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn nextest_wrapper_captures_a_failing_test() {
    if !nextest_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-nextest is missing on CI: .ci/run installs it"
        );
        eprintln!("skipped: cargo-nextest is not installed (cargo install --locked cargo-nextest)");
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.path("repo");
    copy_example(&repo);
    std::fs::create_dir_all(repo.join(".config")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci-examples/nextest.toml"),
        repo.join(".config/nextest.toml"),
    )
    .unwrap();
    let archive_dir = sb.target().join("chaos/archives");

    // A passing test, recorded: nothing kept.
    let run = nextest(&sb, &repo, &["-E", "test(always_passes)"]);
    run.expect_status(0);
    assert!(archives(&archive_dir).is_empty(), "{}", run.show());

    // hashmap_order fails 44% of runs (flaky.rs): 60 runs all pass with probability
    // 0.56^60 ≈ 1e-15. nextest stops at the first failure.
    let run = nextest(
        &sb,
        &repo,
        &["--stress-count", "60", "-E", "test(hashmap_order)"],
    );
    assert_ne!(run.status, 0, "a run failed\n{}", run.show());
    assert!(
        run.stdout_str().contains("chaos: captured the failing run")
            || run.stderr_str().contains("chaos: captured the failing run"),
        "nextest shows the capture with the test's output\n{}",
        run.show()
    );
    let found = archives(&archive_dir);
    assert!(!found.is_empty(), "an archive\n{}", run.show());
    let archive = &found[0];
    assert!(
        archive
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("hashmap_order"),
        "named after the test: {}",
        archive.display()
    );

    // It replays the failing run, anywhere.
    let moved = super::common::move_to(archive, &sb.path("elsewhere"));
    std::fs::remove_dir_all(sb.target()).unwrap();
    let replay = sb.replay([&moved]);
    replay.expect_status(101);
    assert!(
        replay
            .stdout_str()
            .contains("iteration order: [\"beta\", \"alpha\"]"),
        "{}",
        replay.show()
    );
}
