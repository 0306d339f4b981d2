//! A disk that fills up while a program is recorded: the program is not stopped for it,
//! its output and status are those of a normal run, the recorder says what failed (the
//! first error: "No space left on device") and that the trace is incomplete, and the
//! replay of that trace refuses with a message.
//!
//! The trace goes to a size-limited tmpfs, mounted in a mount namespace of its own
//! (`unshare --mount`), so nothing is left mounted whatever happens. That needs root (as
//! on CI); elsewhere these tests say they were skipped.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use super::common::{chaos_cmd, fixture, record, replay, run, temp, tool, Run};

/// Mounts a tmpfs of `size` bytes on `$1`, runs the rest of the arguments (the recorder)
/// with the trace on it, copies the trace out to `$3` for the test to inspect, and exits
/// with the recorder's status.
const SCRIPT: &str = r#"
mnt="$1"; size="$2"; out="$3"; shift 3
mount -t tmpfs -o size="$size" chaos-disk-full "$mnt" || exit 97
"$@"
status=$?
cp -r "$mnt/trace" "$out/trace" || exit 98
exit $status
"#;

/// Whether this machine lets us mount a tmpfs in a mount namespace of our own.
fn can_mount_tmpfs() -> bool {
    let dir = temp();
    let probe = Command::new(tool("unshare"))
        .args(["--mount", "--propagation", "private", "--"])
        .arg(tool("sh"))
        .args(["-c", "mount -t tmpfs -o size=64k chaos-probe \"$0\""])
        .arg(dir.path())
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a size-limited tmpfs here (needs root and mount namespaces): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run `unshare` to mount a size-limited tmpfs: {e}");
            false
        }
    }
}

/// Records `disk_full WORKDIR MEGABYTES` with the trace on a tmpfs of `size` bytes;
/// returns what the recorder showed, and the trace copied out to `out/trace`.
fn record_on_tmpfs(size: u64, megabytes: u32, out: &Path) -> Run {
    let mnt = out.join("mnt");
    let work = out.join("work");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let wrapper: Vec<OsString> = vec![
        "unshare".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "--".into(),
        tool("sh").into(),
        "-c".into(),
        SCRIPT.into(),
        "sh".into(),
        mnt.clone().into(),
        size.to_string().into(),
        out.into(),
    ];
    let wrapper: Vec<&std::ffi::OsStr> = wrapper.iter().map(|w| w.as_os_str()).collect();
    let mut cmd = chaos_cmd(&wrapper);
    cmd.arg("record")
        .arg("--trace-dir")
        .arg(mnt.join("trace"))
        .arg("--")
        .arg(fixture("disk_full"))
        .arg(&work)
        .arg(megabytes.to_string())
        .env("CARGO_CHAOS_NO_CAPTURE_CACHE", "1");
    let r = run(&mut cmd);
    assert!(
        r.status != 97 && r.status != 98,
        "mounting the tmpfs or copying the trace out failed\n{}",
        r.show()
    );
    r
}

/// Bytes a tmpfs needs for the files under `dir` (whole pages).
fn tmpfs_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        total += if meta.is_dir() {
            tmpfs_bytes(&e.path())
        } else {
            meta.len().div_ceil(4096) * 4096
        };
    }
    total
}

/// The program ran to its end, the recorder kept its status and said why the trace is
/// incomplete, `result.json` says so too, and the replay refuses the trace.
fn check_incomplete(r: &Run, megabytes: u32, out: &Path, failed_file: &str) {
    assert_eq!(r.status, 3, "the program's own status\n{}", r.show());
    let stdout = r.stdout_str();
    for mb in 0..megabytes {
        assert!(
            stdout.contains(&format!("megabyte {mb} written\n")),
            "the program's output is cut short\n{}",
            r.show()
        );
    }
    assert!(
        stdout.ends_with(&format!(
            "read back {} bytes: same\ndone\n",
            u64::from(megabytes) << 20
        )),
        "the program's output is cut short\n{}",
        r.show()
    );
    let stderr = r.stderr_str();
    assert!(
        stderr.contains("No space left on device"),
        "the cause is named\n{}",
        r.show()
    );
    assert!(
        stderr.contains("is incomplete and cannot be replayed"),
        "the trace is said to be incomplete\n{}",
        r.show()
    );
    assert!(
        !stderr.contains("trace written to"),
        "no claim that the trace was written\n{}",
        r.show()
    );

    let trace = out.join("trace");
    let result: serde_json::Value = serde_json::from_slice(
        &std::fs::read(trace.join("result.json"))
            .unwrap_or_else(|e| panic!("result.json was not written ({e})\n{}", r.show())),
    )
    .expect("result.json is JSON");
    assert_eq!(result["outcome"], "exited", "{result}");
    assert_eq!(result["status"], 3, "{result}");
    let error = result["trace_error"].as_str().unwrap_or_default();
    assert!(error.contains("No space left on device"), "{result}");
    assert!(
        error.contains(failed_file),
        "the first error is writing {failed_file}: {result}"
    );

    let replayed = replay(&trace);
    assert_eq!(replayed.status, 125, "{}", replayed.show());
    assert!(
        replayed.stderr_str().contains("it is incomplete"),
        "the replay refuses and says why\n{}",
        replayed.show()
    );
    assert!(
        !replayed.stdout_str().contains("megabyte"),
        "nothing was replayed\n{}",
        replayed.show()
    );
}

/// The disk fills up while events are written: the captured files fit, the program's
/// random bytes do not.
#[test]
fn disk_full_while_writing_events() {
    if !can_mount_tmpfs() {
        return;
    }
    let dir = temp();
    // What the trace needs without the random bytes (captured files, the first exec).
    std::fs::create_dir_all(dir.path().join("work0")).unwrap();
    let small = record(
        &dir.path().join("small"),
        &fixture("disk_full"),
        &[dir.path().join("work0").to_str().unwrap(), "0"],
    );
    assert_eq!(small.program.status, 3, "{}", small.program.show());
    let needed = tmpfs_bytes(&small.trace);
    // Room for that and half a megabyte: eight megabytes of random data do not fit.
    let megabytes = 8;
    let r = record_on_tmpfs(needed + (512 << 10), megabytes, dir.path());
    check_incomplete(&r, megabytes, dir.path(), "/trace/events:");
}

/// The disk is full before the program's libraries are captured at its first exec.
#[test]
fn disk_full_while_capturing_files() {
    if !can_mount_tmpfs() {
        return;
    }
    let dir = temp();
    let megabytes = 1;
    let r = record_on_tmpfs(32 << 10, megabytes, dir.path());
    check_incomplete(&r, megabytes, dir.path(), "/trace/files/");
}
