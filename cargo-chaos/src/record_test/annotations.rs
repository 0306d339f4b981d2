//! GitHub Actions annotations: with `GITHUB_ACTIONS` set, each capture prints an
//! `::error file=F,line=L,title=T::MESSAGE` workflow command, which GitHub shows at the
//! panic's line in the pull request's diff and on the run's page.

use std::path::Path;

use super::Delivered;

/// The workflow command for a capture, or `None` when its panic location is unknown.
/// `workspace_root` is where rustc's relative paths start (the cargo workspace);
/// `repo_root` is `GITHUB_WORKSPACE`, the checkout, which GitHub's paths are relative to.
pub fn error_command(d: &Delivered, workspace_root: &Path, repo_root: &Path) -> Option<String> {
    let (file, line) = d.failure.file_line()?;
    let full = workspace_root.join(file);
    let shown = full
        .strip_prefix(repo_root)
        .map(Path::to_path_buf)
        .unwrap_or(full);
    let test = d.failure.test.as_deref().unwrap_or(&d.unit);
    let message = format!(
        "{test} failed: {}\nreplay it: {}",
        d.failure.message.as_deref().unwrap_or("(no panic message)"),
        d.replay_command
    );
    Some(format!(
        "::error file={},line={line},title={}::{}",
        escape_property(&shown.display().to_string()),
        escape_property(&format!("flaky test {test} captured")),
        escape_data(&message)
    ))
}

/// Prints the command for each capture when running in GitHub Actions: on stdout, or
/// on stderr when stdout carries JSON (the runner reads commands from both).
pub fn report(delivered: &[Delivered], workspace_root: &Path, json: bool) {
    if std::env::var_os("GITHUB_ACTIONS").is_none() {
        return;
    }
    let repo_root = std::env::var_os("GITHUB_WORKSPACE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root.to_path_buf());
    for d in delivered {
        if let Some(c) = error_command(d, workspace_root, &repo_root) {
            if json {
                eprintln!("{c}");
            } else {
                println!("{c}");
            }
        }
    }
}

/// Escapes a command's message as the runner reads it.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command's property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_test::failures::TestFailure;

    #[test]
    fn command_points_at_the_panic_relative_to_the_checkout() {
        let d = Delivered {
            unit: "p/t".into(),
            binary: "p/t".into(),
            failure: TestFailure {
                test: Some("tests::a".into()),
                location: Some("src/lib.rs:24:9".into()),
                message: Some("left: 1,\nright: 100%".into()),
            },
            archive: "/w/target/chaos/archives/a.chaos.tar.zst".into(),
            url: None,
            replay_command: "cargo replay-artifact /w/a.chaos.tar.zst".into(),
            output: String::new(),
            undelivered: false,
        };
        let c = error_command(&d, Path::new("/repo/crates/x"), Path::new("/repo")).unwrap();
        assert_eq!(
            c,
            "::error file=crates/x/src/lib.rs,line=24,title=flaky test tests%3A%3Aa captured::\
             tests::a failed: left: 1,%0Aright: 100%25%0Areplay it: cargo replay-artifact /w/a.chaos.tar.zst"
        );
    }
}
