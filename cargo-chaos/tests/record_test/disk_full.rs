//! A hunt whose runs directory fills up: the hunt stops with exit code 2 and names the
//! cause, instead of capturing a run whose trace is incomplete.
//!
//! `target/chaos/runs` is a size-limited tmpfs mounted in a mount namespace of its own
//! (`unshare --mount`), so nothing stays mounted; that needs root (as on CI), elsewhere
//! the test says it was skipped.

use std::process::Command;

use super::common::{example_manifest, tool, Run, Sandbox};

/// Mounts a tmpfs of `$2` bytes on `$1`, then runs the rest of the arguments.
const SCRIPT: &str = r#"
mount -t tmpfs -o size="$2" chaos-disk-full "$1" || exit 97
shift 2
exec "$@"
"#;

#[test]
fn a_hunt_on_a_full_disk_stops_and_names_the_cause() {
    let sb = Sandbox::new();
    let runs = sb.target().join("chaos/runs");
    std::fs::create_dir_all(&runs).unwrap();
    let probe = Command::new(tool("unshare"))
        .args(["--mount", "--propagation", "private", "--"])
        .arg(tool("sh"))
        .args(["-c", "mount -t tmpfs -o size=64k chaos-probe \"$0\""])
        .arg(&runs)
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipped: cannot mount a size-limited tmpfs here (needs root and mount namespaces): {other:?}");
            return;
        }
    }
    let manifest = example_manifest();
    let target = sb.target();
    let inner = sb.record_test_cmd([
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--until-fail",
        "--max-runs",
        "20",
        "--per-test",
        "always_passes",
    ]);
    let mut cmd = Command::new(tool("unshare"));
    cmd.args(["--mount", "--propagation", "private", "--"])
        .arg(tool("sh"))
        .args(["-c", SCRIPT, "sh"])
        .arg(&runs)
        .arg((256 << 10).to_string())
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let hunt = Run::of(cmd);
    assert_ne!(
        hunt.status,
        97,
        "mounting the tmpfs failed\n{}",
        hunt.show()
    );
    hunt.expect_status(2);
    assert!(
        hunt.stderr_str().contains("No space left on device"),
        "the cause is named\n{}",
        hunt.show()
    );
    assert!(
        hunt.stderr_str().contains("incomplete"),
        "the trace is said to be incomplete\n{}",
        hunt.show()
    );
    assert!(!hunt.stderr_str().contains("Captured"), "{}", hunt.show());
    assert!(!hunt.stderr_str().contains("panicked"), "{}", hunt.show());
}
