//! Files shared by recordings are stored once.

use std::fs;

use packer::manifest::TestIdentity;
use packer::{pack, pack_many, PackInput};

use crate::util::*;

#[test]
fn shared_files_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Two recordings of the same binary: same libc, ld.so and test binary, own events.
    let a = make_trace(&tmp.path().join("first"), &TraceSpec::new("first"));
    let b = make_trace(&tmp.path().join("second"), &TraceSpec::new("second"));
    let shared: u64 = [LIBC, LD_SO]
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum::<u64>()
        + fs::metadata(fake_test_binary()).unwrap().len();
    let own = |dir: &std::path::Path| -> u64 {
        [
            "version",
            "header.json",
            "result.json",
            "events",
            "stdout",
            "stderr",
        ]
        .iter()
        .map(|f| fs::metadata(dir.join(f)).unwrap().len())
        .sum()
    };

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let opts = fast_options();
    let only_a = pack(&a, &out, &opts, &mut quiet()).unwrap();
    let only_b = pack(&b, &out, &opts, &mut quiet()).unwrap();
    let inputs: Vec<PackInput> = [&a, &b]
        .iter()
        .map(|t| PackInput {
            trace: t.to_path_buf(),
            test: TestIdentity::default(),
        })
        .collect();
    let both = pack_many(&inputs, &out, &opts, &mut quiet()).unwrap();

    // Uncompressed content: the shared files count once.
    assert_eq!(only_a.content_size, shared + own(&a));
    assert_eq!(both.content_size, shared + own(&a) + own(&b));

    // Each captured file is one member, used by both recordings.
    let members = list_members(&both.path);
    let libc_hash = blake3::hash(&fs::read(LIBC).unwrap()).to_hex().to_string();
    let libc_member = format!("files/{libc_hash}");
    assert_eq!(members.iter().filter(|(p, _)| *p == libc_member).count(), 1);
    assert_eq!(
        members
            .iter()
            .filter(|(p, _)| p.starts_with("files/"))
            .count(),
        3
    );
    for r in &both.manifest.recordings {
        assert!(
            r.files.contains(&libc_hash),
            "{} does not list libc",
            r.name
        );
    }

    // Compressed: the second recording costs about its own events, not another libc.
    let own_b = own(&b);
    assert!(
        both.size < only_a.size + own_b + own_b / 10,
        "both: {} bytes, first alone: {}, second's own files: {own_b}",
        both.size,
        only_a.size
    );
    assert!(both.size < only_a.size + only_b.size - only_a.size / 2);
}
