//! Bounded, deterministic fuzzing of the archive readers on stable (the libFuzzer targets
//! in `fuzz/` run the same checks, see `fuzz_checks.rs`, for as long as one likes).
//!
//! Inputs: random bytes, and structured mutations of real archives written by
//! [`packer::pack`] / [`packer::pack_many`]: bytes flipped, set, inserted, deleted or cut
//! off, tar size fields rewritten, in the compressed file or in its tar stream
//! (recompressed, so that the tar and manifest parsers see the damage instead of the zstd
//! checksum), and manifests changed field by field with the members kept as they were.
//! Every run uses a fixed seed and a fixed number of cases.

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use serde_json::Value;

use crate::fuzz_checks::{
    archive_with_manifest, check_manifest, check_pack_meta, check_unpack, check_unpack_named,
    fuzz_limits,
};
use crate::util::*;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0c4a_05f0_220d_2026),
        max_shrink_iters: 256,
        ..Config::default()
    }
}

/// Valid archives made by this crate: one recording (a frame per captured file) and two
/// recordings sharing a captured file (one solid frame). Small: a few KiB each.
struct Seeds {
    _tmp: tempfile::TempDir,
    single: Vec<u8>,
    several: Vec<u8>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut captured = Vec::new();
        for (i, len) in [700usize, 3000, 40].into_iter().enumerate() {
            let p = src.join(format!("f{i}"));
            std::fs::write(&p, noise(&format!("captured {i}"), len)).unwrap();
            captured.push(p);
        }
        let trace = |name: &str, files: &[PathBuf]| {
            let mut spec = TraceSpec::new(name);
            spec.captured = files.to_vec();
            spec.events = noise(name, 300);
            make_trace(&tmp.path().join(name), &spec)
        };
        let a = trace("a", &captured);
        let b = trace("b", &captured[1..]);
        let opts = fast_options();
        let out = tmp.path().join("out1");
        let single = packer::pack(&a, &out, &opts, &mut quiet()).unwrap();
        let out = tmp.path().join("out2");
        let inputs = [a, b].map(|trace| packer::PackInput {
            trace,
            test: Default::default(),
        });
        let several = packer::pack_many(&inputs, &out, &opts, &mut quiet()).unwrap();
        let read = |p: &std::path::Path| std::fs::read(p).unwrap();
        Seeds {
            single: read(&single.path),
            several: read(&several.path),
            _tmp: tmp,
        }
    })
}

fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(data).unwrap()
}

fn rezstd(tar: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, tar).unwrap();
    enc.finish().unwrap()
}

/// One change to a byte string. Positions are [`Index`]es, so they fit any length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// A little-endian length field inserted (the event stream's framing).
    InsertLength(Index, u32),
    /// The size field (octal, at byte 124) of the 512-byte block at this index.
    TarSize(Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let big = prop_oneof![
        0u64..1024,
        Just(u64::from(u32::MAX)),
        Just(0o77777777777u64),
        any::<u64>()
    ];
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, 1 << b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..600).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<u32>()).prop_map(|(i, v)| Mutation::InsertLength(i, v)),
        1 => (any::<Index>(), big).prop_map(|(i, v)| Mutation::TarSize(i, v)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

fn apply(data: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut d = data.to_vec();
    for m in muts {
        if d.is_empty() {
            d.push(0);
        }
        match m {
            Mutation::Flip(i, bit) => {
                let i = i.index(d.len());
                d[i] ^= bit;
            }
            Mutation::Set(i, v) => {
                let i = i.index(d.len());
                d[i] = *v;
            }
            Mutation::Insert(i, bytes) => {
                let i = i.index(d.len() + 1);
                d.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i.index(d.len());
                let end = (i + n).min(d.len());
                d.drain(i..end);
            }
            Mutation::Truncate(i) => d.truncate(i.index(d.len())),
            Mutation::InsertLength(i, v) => {
                let i = i.index(d.len() + 1);
                d.splice(i..i, v.to_le_bytes());
            }
            Mutation::TarSize(i, v) => {
                let blocks = d.len() / 512;
                if blocks > 0 {
                    let at = i.index(blocks) * 512 + 124;
                    let field = format!("{:011o}\0", v & 0o77777777777);
                    d[at..at + 12].copy_from_slice(field.as_bytes());
                }
            }
        }
    }
    d
}

/// A change to a manifest, as JSON.
#[derive(Debug, Clone)]
enum ManifestEdit {
    /// A member's path (in the manifest only, or in the tar stream too).
    MemberPath(Index, &'static str),
    MemberSize(Index, u64),
    MemberHash(Index, String),
    /// A member listed twice.
    DuplicateMember(Index),
    RemoveMember(Index),
    RecordingName(Index, &'static str),
    /// A captured file listed twice in a recording's `files`.
    DuplicateFile(Index),
    /// A recording's `files` naming something else.
    FileRef(Index, &'static str),
    DuplicateRecording(Index),
    RemoveRecordings,
    FormatVersion(u64),
    /// A field replaced by a value of another type.
    Retype(Index, Value),
}

const HOSTILE_PATHS: &[&str] = &[
    "../escape",
    "files/../../escape",
    "/etc/passwd",
    "recordings/a/../../escape",
    "recordings/a/./version",
    "recordings/a//version",
    "recordings/a\\..\\escape",
    "recordings/a/files/x",
    "recordings/a/chaos-manifest.json",
    "recordings/zz/version",
    "recordings/a",
    "recordings/a/",
    "files/0000",
    "files/",
    "chaos-manifest.json",
    "other/x",
    "",
    "recordings/a/sub/version",
    "recordings/a/version/x",
];

const HOSTILE_NAMES: &[&str] = &[
    "..",
    ".",
    "",
    ".store",
    "files",
    "chaos-manifest.json",
    "a/b",
    "../a",
    "b",
    "a",
    "é",
];

fn manifest_edit() -> impl Strategy<Value = ManifestEdit> {
    let json_value = prop_oneof![
        Just(Value::Null),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1.5)),
        Just(Value::from("x")),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({"a": 1})),
    ];
    prop_oneof![
        (any::<Index>(), prop::sample::select(HOSTILE_PATHS))
            .prop_map(|(i, p)| ManifestEdit::MemberPath(i, p)),
        (
            any::<Index>(),
            prop_oneof![0u64..8192, Just(u64::MAX), Just(1u64 << 40)]
        )
            .prop_map(|(i, s)| ManifestEdit::MemberSize(i, s)),
        (
            any::<Index>(),
            prop_oneof![
                Just(String::new()),
                Just("0".repeat(64)),
                Just("A".repeat(64)),
                Just("../".repeat(21) + "x"),
            ]
        )
            .prop_map(|(i, h)| ManifestEdit::MemberHash(i, h)),
        any::<Index>().prop_map(ManifestEdit::DuplicateMember),
        any::<Index>().prop_map(ManifestEdit::RemoveMember),
        (any::<Index>(), prop::sample::select(HOSTILE_NAMES))
            .prop_map(|(i, n)| ManifestEdit::RecordingName(i, n)),
        any::<Index>().prop_map(ManifestEdit::DuplicateFile),
        (
            any::<Index>(),
            prop::sample::select(&["../x", "", "0000", "files/x"][..])
        )
            .prop_map(|(i, h)| ManifestEdit::FileRef(i, h)),
        any::<Index>().prop_map(ManifestEdit::DuplicateRecording),
        Just(ManifestEdit::RemoveRecordings),
        prop_oneof![Just(0u64), Just(2), Just(u64::MAX)].prop_map(ManifestEdit::FormatVersion),
        (any::<Index>(), json_value).prop_map(|(i, v)| ManifestEdit::Retype(i, v)),
    ]
}

fn array<'a>(v: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .expect("manifest array")
}

/// Applies `edit` to the manifest `m`; returns a (old, new) member path renaming to apply
/// to the tar stream too.
fn edit_manifest(m: &mut Value, edit: &ManifestEdit) -> Option<(String, String)> {
    let pick = |a: &Vec<Value>, i: &Index| (!a.is_empty()).then(|| i.index(a.len()));
    match edit {
        ManifestEdit::MemberPath(i, p) => {
            let members = array(m, "members");
            let k = pick(members, i)?;
            let old = members[k]["path"].as_str()?.to_string();
            members[k]["path"] = Value::from(*p);
            return Some((old, p.to_string()));
        }
        ManifestEdit::MemberSize(i, s) => {
            let members = array(m, "members");
            let k = pick(members, i)?;
            members[k]["size"] = Value::from(*s);
        }
        ManifestEdit::MemberHash(i, h) => {
            let members = array(m, "members");
            let k = pick(members, i)?;
            members[k]["blake3"] = Value::from(h.as_str());
        }
        ManifestEdit::DuplicateMember(i) => {
            let members = array(m, "members");
            let k = pick(members, i)?;
            let dup = members[k].clone();
            members.insert(k, dup);
        }
        ManifestEdit::RemoveMember(i) => {
            let members = array(m, "members");
            let k = pick(members, i)?;
            members.remove(k);
        }
        ManifestEdit::RecordingName(i, n) => {
            let recs = array(m, "recordings");
            let k = pick(recs, i)?;
            recs[k]["name"] = Value::from(*n);
        }
        ManifestEdit::DuplicateFile(i) => {
            let recs = array(m, "recordings");
            let k = pick(recs, i)?;
            let files = recs[k]["files"].as_array_mut()?;
            let first = files.first()?.clone();
            files.push(first);
        }
        ManifestEdit::FileRef(i, h) => {
            let recs = array(m, "recordings");
            let k = pick(recs, i)?;
            recs[k]["files"].as_array_mut()?.push(Value::from(*h));
        }
        ManifestEdit::DuplicateRecording(i) => {
            let recs = array(m, "recordings");
            let k = pick(recs, i)?;
            let dup = recs[k].clone();
            recs.push(dup);
        }
        ManifestEdit::RemoveRecordings => array(m, "recordings").clear(),
        ManifestEdit::FormatVersion(v) => m["format_version"] = Value::from(*v),
        ManifestEdit::Retype(i, v) => {
            let obj = m.as_object_mut()?;
            let keys: Vec<String> = obj.keys().cloned().collect();
            let key = &keys[i.index(keys.len())];
            obj.insert(key.clone(), v.clone());
        }
    }
    None
}

/// The members of an archive after its manifest: (path, content).
fn members_after_manifest(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let tar = unzstd(archive);
    let mut ar = tar::Archive::new(&tar[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap().skip(1) {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((path, data));
    }
    out
}

fn manifest_json(archive: &[u8]) -> Value {
    let tar = unzstd(archive);
    let mut ar = tar::Archive::new(&tar[..]);
    let mut first = ar.entries().unwrap().next().unwrap().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut first, &mut bytes).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn seed(several: bool) -> &'static [u8] {
    if several {
        &seeds().several
    } else {
        &seeds().single
    }
}

#[test]
fn seeds_unpack() {
    // The mutations below start from archives that are accepted as they are.
    assert!(check_unpack(&seeds().single, true));
    assert!(check_unpack(&seeds().several, true));
    assert!(check_unpack(&seeds().several, false));
    let m = manifest_json(&seeds().several);
    assert!(check_manifest(&serde_json::to_vec(&m).unwrap()));
}

/// Found by fuzzing: with several recordings, a captured file listed twice in one
/// recording's `files` was hard-linked into it, then copied onto its own link, which
/// truncated it: the unpacked `NAME/files/<hash>` was empty. Now refused.
#[test]
fn captured_file_listed_twice_is_refused() {
    let archive = seed(true);
    let mut m = manifest_json(archive);
    let files = m["recordings"][0]["files"].as_array_mut().unwrap();
    files.push(files[0].clone());
    let json = serde_json::to_vec_pretty(&m).unwrap();
    let members = members_after_manifest(archive);
    let extra: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), &d[..])).collect();
    let crafted = archive_with_manifest(&json, &extra);
    assert!(!check_unpack(&crafted, false));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.chaos.tar.zst");
    std::fs::write(&path, &crafted).unwrap();
    let err = packer::unpack(&path, &tmp.path().join("d"), &fuzz_limits(), &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("twice"), "{err}");
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_bytes_never_unpack(data in prop::collection::vec(any::<u8>(), 0..2048), hashed in any::<bool>()) {
        prop_assert!(!check_unpack(&data, hashed));
    }

    #[test]
    fn random_tar_streams_never_unpack(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(!check_unpack(&rezstd(&data), false));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn damaged_archive_files(several in any::<bool>(), muts in mutations(), hashed in any::<bool>()) {
        let original = seed(several);
        let data = apply(original, &muts);
        if hashed {
            // Under the original's name (its hash), any change to the file is caught.
            let name = format!("x-{}.chaos.tar.zst", blake3::hash(original).to_hex());
            let accepted = check_unpack_named(&data, &name);
            prop_assert_eq!(accepted, data == original);
        } else {
            check_unpack(&data, false);
        }
    }

    #[test]
    fn damaged_tar_streams(several in any::<bool>(), muts in mutations()) {
        let tar = unzstd(seed(several));
        check_unpack(&rezstd(&apply(&tar, &muts)), false);
    }

}

proptest! {
    // Each case unpacks twice (the manifest alone, then with the members).
    #![proptest_config(config(128))]

    #[test]
    fn edited_manifests(several in any::<bool>(), edits in prop::collection::vec(manifest_edit(), 1..3), rename_member in any::<bool>()) {
        let archive = seed(several);
        let mut m = manifest_json(archive);
        let mut members = members_after_manifest(archive);
        for e in &edits {
            if let Some((old, new)) = edit_manifest(&mut m, e) {
                if rename_member {
                    for (p, _) in members.iter_mut() {
                        if *p == old {
                            *p = new.clone();
                        }
                    }
                }
            }
        }
        let json = serde_json::to_vec_pretty(&m).unwrap();
        check_manifest(&json);
        let extra: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), &d[..])).collect();
        check_unpack(&archive_with_manifest(&json, &extra), false);
    }

    #[test]
    fn damaged_manifest_text(several in any::<bool>(), muts in mutations()) {
        let archive = seed(several);
        let json = serde_json::to_vec_pretty(&manifest_json(archive)).unwrap();
        let damaged = apply(&json, &muts);
        check_manifest(&damaged);
        let members = members_after_manifest(archive);
        let extra: Vec<(&str, &[u8])> = members.iter().map(|(p, d)| (p.as_str(), &d[..])).collect();
        check_unpack(&archive_with_manifest(&damaged, &extra), false);
    }

    #[test]
    fn random_manifests(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_manifest(&data);
    }
}

/// header.json and result.json as the recorder writes them.
fn trace_meta() -> (Value, Value) {
    let header = serde_json::json!({
        "format_version": 2, "tool_version": "0.1.0", "argv": ["./prog", "arg"],
        "cwd": "/tmp", "env": [["PATH", "/usr/bin"]], "removed_env": ["GITHUB_TOKEN"],
        "exe": "/tmp/prog", "hostname": "h", "kernel": "6.1.0", "cpu_model": "cpu",
        "seed": 123, "aslr_disabled": true, "cpuid_faulting": true, "cpu_set": [0, 1],
        "pinned_cpu": 0, "untraced": [10, 13], "started_unix_ms": 1764000000000u64
    });
    let result = serde_json::json!({
        "outcome": "exited", "exit_code": 101, "signal": null, "status": 101,
        "events": 1234, "cpuid_leaves": [[1, 0, 1, 2, 3, 4], [13, 0, 7, 0, 0, 0]],
        "tick_requests": 0, "lookups_answered": 0, "message": null
    });
    (header, result)
}

fn meta_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1.5)),
        Just(Value::from("x")),
        Just(serde_json::json!([["GITHUB_TOKEN", "v"], ["A"], [1, 2]])),
        Just(serde_json::json!({"AWS_SECRET_ACCESS_KEY": "v", "B": 1})),
        Just(serde_json::json!([[u32::MAX, -1, 0, 0, 0, 0], [1, 2], "x"])),
        Just(Value::Array(vec![])),
    ]
}

fn edit_field(v: &mut Value, i: &Index, new: &Option<Value>) {
    let obj = v.as_object_mut().unwrap();
    let key = obj.keys().nth(i.index(obj.len())).unwrap().clone();
    match new {
        Some(x) => obj.insert(key, x.clone()),
        None => obj.remove(&key),
    };
}

#[test]
fn valid_trace_metadata_packs() {
    let (h, r) = trace_meta();
    let (h, r) = (
        serde_json::to_vec(&h).unwrap(),
        serde_json::to_vec(&r).unwrap(),
    );
    assert!(check_pack_meta(b"chaos-trace 2\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 1\n", &h, None));
    assert!(check_pack_meta(b"chaos-trace 3\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 4\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 5\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 6\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 7\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 8\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 9\n", &h, Some(&r)));
    assert!(check_pack_meta(b"chaos-trace 10\n", &h, Some(&r)));
    let next = format!("chaos-trace {}\n", recorder::trace::FORMAT_VERSION + 1);
    assert!(!check_pack_meta(next.as_bytes(), &h, Some(&r)));
}

proptest! {
    #![proptest_config(config(128))]

    /// What `pack` reads of a recording (header.json and result.json, leniently) never
    /// makes it panic, and an archive it writes unpacks.
    #[test]
    fn edited_trace_metadata(
        header_edits in prop::collection::vec((any::<Index>(), prop::option::of(meta_value())), 0..3),
        result_edits in prop::collection::vec((any::<Index>(), prop::option::of(meta_value())), 0..3),
        muts in prop::collection::vec(mutation(), 0..2),
        with_result in any::<bool>(),
    ) {
        let (mut h, mut r) = trace_meta();
        for (i, v) in &header_edits {
            edit_field(&mut h, i, v);
        }
        for (i, v) in &result_edits {
            edit_field(&mut r, i, v);
        }
        let h = apply_some(&serde_json::to_vec_pretty(&h).unwrap(), &muts);
        let r = serde_json::to_vec_pretty(&r).unwrap();
        check_pack_meta(b"chaos-trace 2\n", &h, with_result.then_some(&r[..]));
    }
}

/// [`apply`], or nothing when there are no mutations.
fn apply_some(data: &[u8], muts: &[Mutation]) -> Vec<u8> {
    if muts.is_empty() {
        data.to_vec()
    } else {
        apply(data, muts)
    }
}
