//! Record and replay as an ordinary user: the binary runs under
//! `setpriv --reuid=65534 --regid=65534 --clear-groups`, with the fixtures and the traces
//! in a world-writable temporary directory.

use std::os::unix::fs::PermissionsExt;

use super::common::*;

const SETPRIV: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

#[test]
fn record_and_replay_as_nobody() {
    if !is_root() {
        eprintln!("skipped: not running as root, so every other test already records and replays unprivileged");
        return;
    }
    let dir = temp();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for (name, status) in [
        ("random", 0),
        ("fileio", 0),
        ("time", 0),
        ("tcp", 0),
        ("cpuid", 0),
        ("segv", 139),
    ] {
        let program = fixture_copy(name, dir.path());
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().to_path_buf();
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{name}")))
            .wrapper(SETPRIV)
            .configure(move |c| {
                c.current_dir(&home).env("HOME", &home);
            })
            .record();
        assert_eq!(
            rec.program.status,
            status,
            "{name} recorded as nobody\n{}",
            rec.program.show()
        );
        let uid = std::fs::metadata(rec.trace.join("version"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(
            uid.ok(),
            Some(65534),
            "{name}: the trace should belong to the unprivileged user"
        );
        let wrapper: Vec<&std::ffi::OsStr> =
            SETPRIV.iter().map(|s| std::ffi::OsStr::new(*s)).collect();
        let replayed = replay_with(&rec.trace, &wrapper, |c| {
            c.current_dir(dir.path()).env("HOME", dir.path());
        });
        assert_same(&format!("{name} as nobody"), &rec.program, &replayed);
    }
}
