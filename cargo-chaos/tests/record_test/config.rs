//! Issue 18 item 5: defaults per profile from `.config/chaos.toml` (or
//! `[workspace.metadata.chaos]`), picked with `-P/--profile`, overridden by flags; cargo's
//! own `--profile` is `--cargo-profile`.

use std::path::Path;

use super::common::{copy_example, Messages, Run, Sandbox};

/// `--fail-on` matching nothing: no run counts as failing, so nothing is captured and
/// every hunt here is about which runs happen.
const NO_FAILURE: [&str; 2] = ["--fail-on", "no output says this"];

/// Runs `cargo record-test` in `repo` with JSON output and `args`.
fn hunt(sb: &Sandbox, repo: &Path, args: &[&str]) -> Run {
    let target = sb.target();
    let mut all = vec![
        "--target-dir",
        target.to_str().unwrap(),
        "--message-format",
        "json",
    ];
    all.extend(args);
    let mut cmd = sb.record_test_cmd(&all);
    cmd.current_dir(repo).env_remove("CHAOS_PROFILE");
    Run::of(cmd)
}

fn units(run: &Run) -> Vec<String> {
    run.messages_of("run-started")
        .iter()
        .map(|m| m["unit"].as_str().unwrap().to_string())
        .collect()
}

const CONFIG: &str = r#"
[profile.default]
until-fail = true
per-test = true
max-runs = 3

[profile.ci]
partition = "count:1/8"
max-runs = 4
junit = "target-junit/report.xml"
"#;

#[test]
fn profiles_from_the_config_file() {
    let sb = Sandbox::new();
    let repo = sb.path("repo");
    copy_example(&repo);
    std::fs::create_dir_all(repo.join(".config")).unwrap();
    std::fs::write(repo.join(".config/chaos.toml"), CONFIG).unwrap();

    // The default profile: per test, until-fail, 3 runs.
    let mut args = NO_FAILURE.to_vec();
    args.push("always_passes");
    let run = hunt(&sb, &repo, &args);
    run.expect_status(0);
    let u = units(&run);
    assert_eq!(u.len(), 3, "{}", run.show());
    assert!(
        u.iter().all(|u| u.ends_with("::tests::always_passes")),
        "{u:?}"
    );

    // A flag overrides it.
    let mut args = NO_FAILURE.to_vec();
    args.extend(["--max-runs", "2", "always_passes"]);
    let run = hunt(&sb, &repo, &args);
    run.expect_status(0);
    assert_eq!(units(&run).len(), 2, "{}", run.show());

    // `-P ci`: its own keys over default's: shard 1 of 8 is always_passes alone (libtest
    // lists alphabetically), 4 runs, per test from default, a JUnit report.
    let mut args = NO_FAILURE.to_vec();
    args.extend(["-P", "ci"]);
    let run = hunt(&sb, &repo, &args);
    run.expect_status(0);
    let u = units(&run);
    assert_eq!(u.len(), 4, "{}", run.show());
    assert!(
        u.iter().all(|u| u.ends_with("::tests::always_passes")),
        "{u:?}"
    );
    assert!(
        repo.join("target-junit/report.xml").is_file(),
        "{}",
        run.show()
    );

    // CHAOS_PROFILE picks it too.
    let target = sb.target();
    let mut cmd = sb.record_test_cmd([
        "--target-dir",
        target.to_str().unwrap(),
        "--message-format",
        "json",
        NO_FAILURE[0],
        NO_FAILURE[1],
    ]);
    cmd.current_dir(&repo).env("CHAOS_PROFILE", "ci");
    let run = Run::of(cmd);
    run.expect_status(0);
    assert_eq!(units(&run).len(), 4, "{}", run.show());

    // An unknown profile or key: a clear error, nothing run.
    let run = hunt(&sb, &repo, &["-P", "nightly"]);
    run.expect_status(2);
    assert!(
        run.stderr_str().contains("no profile `nightly`")
            && run.stderr_str().contains("ci, default"),
        "{}",
        run.show()
    );
    std::fs::write(
        repo.join(".config/chaos.toml"),
        "[profile.default]\nmax-run = 3\n",
    )
    .unwrap();
    let run = hunt(&sb, &repo, &[]);
    run.expect_status(2);
    assert!(run.stderr_str().contains("max-run"), "{}", run.show());
    assert!(
        run.stderr_str().contains(".config/chaos.toml"),
        "{}",
        run.show()
    );
}

#[test]
fn profiles_from_workspace_metadata_and_cargo_profile() {
    let sb = Sandbox::new();
    let repo = sb.path("repo");
    copy_example(&repo);
    let manifest = repo.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replace(
        "[workspace]\n",
        "[workspace]\n\n[workspace.metadata.chaos.profile.default]\nuntil-fail = true\nper-test = true\nmax-runs = 2\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let mut args = NO_FAILURE.to_vec();
    // Cargo's `--profile` is spelled `--cargo-profile` (`test` is what cargo test uses).
    args.extend(["--cargo-profile", "test", "always_passes"]);
    let run = hunt(&sb, &repo, &args);
    run.expect_status(0);
    assert_eq!(units(&run).len(), 2, "{}", run.show());

    // Both places at once: refused, one would be ignored.
    std::fs::create_dir_all(repo.join(".config")).unwrap();
    std::fs::write(repo.join(".config/chaos.toml"), CONFIG).unwrap();
    let run = hunt(&sb, &repo, &[]);
    run.expect_status(2);
    assert!(run.stderr_str().contains("keep one"), "{}", run.show());
}
