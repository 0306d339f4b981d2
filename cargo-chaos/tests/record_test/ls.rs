//! Issue 18 item 7: `cargo chaos ls` lists the captures of a target directory: test,
//! when, status, verified, size; a damaged file is listed as unreadable, not a panic.

use super::common::{example_manifest, Messages, Run, Sandbox};

fn chaos(args: &[&str]) -> Run {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-chaos"));
    c.arg("chaos").args(args).env_remove("CARGO_TARGET_DIR");
    Run::of(c)
}

#[test]
fn ls_lists_the_captures() {
    let sb = Sandbox::new();
    let manifest = example_manifest();
    let target = sb.target();
    let hunt = sb.hunt_json(
        &manifest,
        &[
            "--per-test",
            "--until-fail",
            "--max-runs",
            "80",
            "hashmap_order",
        ],
    );
    hunt.expect_status(1);
    let captured = hunt.captured();
    let archives = target.join("chaos/archives");
    std::fs::write(archives.join("damaged.chaos.tar.zst"), "not an archive").unwrap();

    let run = chaos(&["ls", archives.to_str().unwrap(), "--json"]);
    run.expect_status(0);
    let listed = run.messages_raw();
    assert_eq!(listed.len(), 2, "{}", run.show());
    let good = listed
        .iter()
        .find(|l| l["archive"] == captured["archive"])
        .expect("the capture is listed");
    assert_eq!(good["test"], "tests::hashmap_order", "{good}");
    assert_eq!(good["status"], "exit 101", "{good}");
    assert_eq!(good["verified"], "yes", "{good}");
    let size = std::fs::metadata(captured["archive"].as_str().unwrap())
        .unwrap()
        .len();
    assert_eq!(good["size"], size, "{good}");
    assert_eq!(good["panic_location"], captured["panic_location"], "{good}");
    assert!(good["created"].as_str().unwrap().ends_with('Z'), "{good}");
    let bad = listed
        .iter()
        .find(|l| {
            l["archive"]
                .as_str()
                .unwrap()
                .ends_with("damaged.chaos.tar.zst")
        })
        .expect("the damaged file is listed");
    assert!(bad["error"].is_string(), "{bad}");

    // The table, with the target directory found from the manifest.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-chaos"));
    c.args(["chaos", "ls", "--manifest-path", manifest.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &target);
    let run = Run::of(c);
    run.expect_status(0);
    let stdout = run.stdout_str();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TEST "), "{}", run.show());
    assert!(
        lines.iter().any(|l| l.starts_with("tests::hashmap_order ")
            && l.contains(" exit 101 ")
            && l.contains(" yes ")),
        "{}",
        run.show()
    );
    assert!(
        lines.iter().any(|l| l.contains("unreadable")),
        "{}",
        run.show()
    );

    // An empty directory: nothing listed, no error.
    let empty = sb.path("none");
    let run = chaos(&["ls", empty.to_str().unwrap()]);
    run.expect_status(0);
    assert!(run.stderr_str().contains("no captures"), "{}", run.show());
}
