//! A hunt whose failing run read a credential: the archive is held back (not uploaded,
//! not in the archive directory, exit 2, the output names where and what kind), and
//! `--allow-secrets` uploads it.

use std::path::Path;

use super::common::{write_crate, Messages, Run, Sandbox};

/// A crate whose one test reads the file named by `CHAOS_TEST_CONFIG` and fails.
fn reading_crate(dir: &Path) {
    write_crate(
        dir,
        "reads-config",
        r#"#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_repository_config() {
        let path = std::env::var("CHAOS_TEST_CONFIG").expect("CHAOS_TEST_CONFIG");
        let text = std::fs::read_to_string(path).expect("read the config");
        assert_eq!(text.lines().count(), 0, "the config has {} lines", text.lines().count());
    }
}
"#,
    );
}

/// What `actions/checkout` leaves in `.git/config` without `persist-credentials: false`
/// (a fake token).
const GIT_CONFIG: &str = "[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX0Zha2VGYWtlRmFrZUZha2VGYWtlMDEyMzQ1Njc4OTAx\n";

fn archives(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".chaos.tar.zst"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn capture_that_read_a_token_is_held_back_unless_allowed() {
    let sb = Sandbox::new();
    let krate = sb.path("reads-config");
    reading_crate(&krate);
    let config = sb.path("checkout/.git/config");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, GIT_CONFIG).unwrap();
    let uploads = sb.path("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let hunt = |extra: &[&str]| {
        let mut cmd = sb.record_test_cmd(
            [
                "--manifest-path",
                &krate.join("Cargo.toml").display().to_string(),
                "--target-dir",
                &sb.target().display().to_string(),
                "--upload",
                &format!("{}/", uploads.display()),
            ]
            .iter()
            .chain(extra),
        );
        cmd.env("CHAOS_TEST_CONFIG", &config);
        Run::of(cmd)
    };

    let run = hunt(&[]);
    run.expect_status(2);
    let held = sb.target().join("chaos/held-back");
    assert_eq!(archives(&held).len(), 1, "held back\n{}", run.show());
    std::fs::remove_dir_all(&held).unwrap();
    assert_eq!(
        archives(&sb.target().join("chaos/archives")),
        Vec::<String>::new()
    );
    assert_eq!(archives(&uploads), Vec::<String>::new(), "nothing uploaded");
    for said in [
        "Held back",
        &held.display().to_string(),
        "an HTTP Authorization header with credentials in data the program read: the result of read(fd",
        "--allow-secrets",
    ] {
        assert!(run.stderr_str().contains(said), "`{said}` in\n{}", run.show());
    }
    assert!(!run.stderr_str().contains("eC1hY2Nlc3Mt"), "{}", run.show());

    let run = hunt(&["--message-format", "json"]);
    run.expect_status(2);
    let held_back = run.messages_of("held-back");
    assert_eq!(held_back.len(), 1, "{}", run.show());
    assert!(held_back[0]["archive"]
        .as_str()
        .is_some_and(|a| a.starts_with(&held.display().to_string())));
    assert!(held_back[0]["credentials"][0]
        .as_str()
        .is_some_and(|c| c.starts_with("an HTTP Authorization header")));
    assert!(run.messages_of("captured").is_empty(), "{}", run.show());
    assert!(!run.stdout_str().contains("eC1hY2Nlc3Mt"), "{}", run.show());

    let run = hunt(&["--allow-secrets", "--message-format", "json"]);
    run.expect_status(1);
    let captured = run.captured();
    assert!(captured["url"].is_string(), "{}", run.show());
    assert_eq!(archives(&uploads).len(), 1, "uploaded\n{}", run.show());
    assert!(
        run.stderr_str().contains("holds credentials"),
        "{}",
        run.show()
    );
}
