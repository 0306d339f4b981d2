//! Partial archives of writers that are gone are removed by the next writer.

use std::fs;

use packer::pack;

use crate::util::*;

#[test]
fn a_stale_partial_archive_of_a_dead_writer_is_removed_at_the_next_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archives");
    fs::create_dir_all(&out).unwrap();
    // What a pack killed with SIGKILL leaves: its pid (above the kernel's maximum pid,
    // 2^22, so it never runs) in the name, and no lock held.
    let stale = out.join(".chaos-pack-4194305-Ab12Cd.partial");
    fs::write(&stale, noise("half an archive", 100_000)).unwrap();
    // A partial file of a writer that is still running (here: this process) stays.
    let live = out.join(format!(".chaos-pack-{}-Zz99.partial", std::process::id()));
    fs::write(&live, b"in progress").unwrap();
    // Files that merely look alike are not ours to remove.
    let other = out.join("notes.partial");
    fs::write(&other, b"mine").unwrap();

    let trace = make_trace(&tmp.path().join("trace"), &TraceSpec::new("partial"));
    let packed = pack(&trace, &out, &fast_options(), &mut quiet()).unwrap();
    assert!(!stale.exists(), "the stale partial file is still there");
    assert!(live.exists());
    assert!(other.exists());
    let mut names = dir_names(&out);
    names.sort();
    let mut want = vec![
        live.file_name().unwrap().to_string_lossy().into_owned(),
        "notes.partial".to_string(),
        packed
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ];
    want.sort();
    assert_eq!(names, want);
}
