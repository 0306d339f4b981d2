//! A secret in the environment never reaches an archive.

use std::fs;

use packer::secrets::tokens::TokenKind;
use packer::secrets::{filter_env, RemovalReason};
use packer::{pack, read_manifest, PackError, TokenFinding};

use crate::util::*;

const TOKEN: &str = "ghp_Zq8Xw2Lr5Tn0Vb7Mk3Jh6Gf1Dc4Sa9Pe2Ry5";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

fn ci_environment() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("GITHUB_ACTIONS".into(), "true".into()),
        (
            "GITHUB_SHA".into(),
            "0123456789abcdef0123456789abcdef01234567".into(),
        ),
        ("GITHUB_REPOSITORY".into(), "o/r".into()),
        ("GITHUB_TOKEN".into(), TOKEN.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), AWS_SECRET.into()),
        (
            "ACTIONS_RUNTIME_TOKEN".into(),
            "eyJhbGciOiJSUzI1NiJ9.runtime.token".into(),
        ),
        ("RUST_BACKTRACE".into(), "1".into()),
    ]
}

#[test]
fn planted_secret_occurs_nowhere_in_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let env = ci_environment();
    // What the recorder's caller does before the program starts.
    let (kept, removed) = filter_env(env.clone(), &[]);
    assert_eq!(
        removed,
        vec![
            "ACTIONS_RUNTIME_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN"
        ]
    );
    assert!(kept.iter().any(|(k, _)| k == "GITHUB_SHA"));
    let mut spec = TraceSpec::new("secrets");
    spec.env = kept;
    spec.removed_env = removed;
    let trace = make_trace(&tmp.path().join("t"), &spec);

    // Packed in the same CI job, whose environment still holds the token.
    let mut opts = fast_options();
    opts.environment = Some(env);
    opts.git_revision = None;
    let packed = pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap();

    let compressed = fs::read(&packed.path).unwrap();
    let decompressed = tar_bytes(&packed.path);
    for secret in [TOKEN, AWS_SECRET, "eyJhbGciOiJSUzI1NiJ9"] {
        assert!(
            !contains(&compressed, secret.as_bytes()),
            "{secret} in compressed archive"
        );
        assert!(
            !contains(&decompressed, secret.as_bytes()),
            "{secret} in decompressed archive"
        );
    }
    // The names are listed, never the values.
    let r = &packed.manifest.recordings[0];
    assert!(r.removed_env.contains(&"GITHUB_TOKEN".to_string()));
    assert!(!r.env.iter().any(|(k, _)| k == "GITHUB_TOKEN"));
    assert!(contains(&decompressed, b"\"GITHUB_TOKEN\""));
    // CI metadata came along, without secrets.
    let ci = packed.manifest.ci.as_ref().unwrap();
    assert_eq!(ci.provider, "github-actions");
    assert_eq!(
        packed.manifest.git_revision.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert!(ci.variables.keys().all(|k| !k.contains("TOKEN")));
}

#[test]
fn recording_that_kept_a_secret_variable_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("kept-secret");
    spec.env.push(("GITHUB_TOKEN".into(), TOKEN.into()));
    let trace = make_trace(&tmp.path().join("t"), &spec);
    let err = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, PackError::SecretInEnvironment { ref name, .. } if name == "GITHUB_TOKEN")
    );
    let msg = err.to_string();
    assert!(!msg.contains(TOKEN), "the message must not quote the value");
    assert!(msg.contains("--keep-env GITHUB_TOKEN"), "{msg}");
    assert_eq!(dir_names(tmp.path()), vec!["t"], "no archive written");

    // An allowed name passes (when it is not a secret, e.g. a count).
    let mut spec = TraceSpec::new("allowed");
    spec.env.push(("MAX_TOKEN_COUNT".into(), "12".into()));
    let trace = make_trace(&tmp.path().join("allowed"), &spec);
    assert!(pack(&trace, tmp.path(), &fast_options(), &mut quiet()).is_err());
    let mut opts = fast_options();
    opts.allow_env = vec!["MAX_TOKEN_COUNT".into()];
    pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap();
}

#[test]
fn secret_value_printed_by_the_program_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("printed");
    spec.stdout = format!("debug: token is {TOKEN}\n").into_bytes();
    let trace = make_trace(&tmp.path().join("t"), &spec);
    let mut opts = fast_options();
    opts.environment = Some(ci_environment());
    let err = pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap_err();
    match &err {
        PackError::SecretValueFound { name, member } => {
            assert_eq!(name, "GITHUB_TOKEN");
            assert_eq!(member, "recordings/t/stdout");
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(!err.to_string().contains(TOKEN));
    assert_eq!(dir_names(tmp.path()), vec!["t"], "no archive written");
}

const DB_PASSWORD: &str = "pw-6d1f0c3a9e";

#[test]
fn password_inside_a_url_is_removed_whatever_the_name() {
    let url = format!("postgres://app:{DB_PASSWORD}@db.internal:5432/app");
    let env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("DATABASE_URL".to_string(), url.clone()),
        (
            "PIP_EXTRA".to_string(),
            format!("--index-url https://u:{DB_PASSWORD}@pypi.internal/simple"),
        ),
        (
            "HOMEPAGE".to_string(),
            "https://example.com:8443/docs".to_string(),
        ),
    ];
    let (kept, removed) = filter_env(env.clone(), &[]);
    assert_eq!(removed, vec!["DATABASE_URL", "PIP_EXTRA"]);
    assert_eq!(
        kept.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["PATH", "HOMEPAGE"]
    );

    // A recording that still holds one (an older recorder, another tool) is refused.
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("url-password");
    spec.env.push(("DATABASE_URL".into(), url.clone()));
    let trace = make_trace(&tmp.path().join("t"), &spec);
    let err = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    match &err {
        PackError::SecretInEnvironment { name, reason, .. } => {
            assert_eq!(name, "DATABASE_URL");
            assert_eq!(*reason, RemovalReason::UrlPassword);
        }
        other => panic!("unexpected: {other}"),
    }
    let msg = err.to_string();
    assert!(!msg.contains(DB_PASSWORD), "{msg}");
    assert!(msg.contains("password inside a URL"), "{msg}");
    assert!(msg.contains("--keep-env DATABASE_URL"), "{msg}");
    assert_eq!(dir_names(tmp.path()), vec!["t"], "no archive written");

    // Kept on purpose: packed; but the same value under a secret-looking name of the
    // packing process is a leak.
    let mut opts = fast_options();
    opts.allow_env = vec!["DATABASE_URL".into()];
    opts.environment = Some(vec![("DB_PASSWORD_URL".into(), url.clone())]);
    let packed = pack(&trace, tmp.path(), &opts, &mut quiet());
    assert!(
        matches!(packed, Err(PackError::SecretValueFound { ref name, .. }) if name == "DB_PASSWORD_URL"),
        "another name with the same value is still a leak: {packed:?}"
    );
    // The values of allowed names are not searched for.
    opts.allow_env.push("DB_PASSWORD_URL".into());
    pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap();
}

/// A GitHub token as `actions/checkout` leaves it in `.git/config` (base64 of
/// `x-access-token:ghs_...`), and a classic personal token in a mapped file.
const EXTRAHEADER: &str =
    "\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX0Zha2VGYWtlRmFrZUZha2VGYWtl\n";
const PAT: &str = "ghp_Fake0Fake1Fake2Fake3Fake4Fake5Fake6Fa";

/// An events file of zstd chunks (`u32` LE length + frame), as the recorder writes it.
fn events_file(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let frame = zstd::encode_all(&c[..], 3).unwrap();
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn credentials_in_captured_files_and_read_data_are_listed_never_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing in real libraries and binaries looks like a credential.
    let clean = make_trace(&tmp.path().join("clean"), &TraceSpec::new("clean"));
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let packed = pack(&clean, &out, &fast_options(), &mut quiet()).unwrap();
    assert_eq!(packed.manifest.tokens, vec![]);

    let mapped = tmp.path().join("settings.txt");
    std::fs::write(&mapped, format!("token = {PAT}\n")).unwrap();
    let mut spec = TraceSpec::new("tokens");
    spec.captured.push(mapped.clone());
    // The config read by a `read` call, inside an event record, in the second chunk.
    let mut read_event = noise("before", 300);
    read_event
        .extend_from_slice(format!("[http \"https://github.com/\"]\n{EXTRAHEADER}").as_bytes());
    read_event.extend_from_slice(&noise("after", 300));
    spec.events = events_file(&[noise("first", 70_000), read_event]);
    let trace = make_trace(&tmp.path().join("t"), &spec);
    let packed = pack(&trace, &out, &fast_options(), &mut quiet()).unwrap();
    let hash = blake3::hash(&std::fs::read(&mapped).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(
        packed.manifest.tokens,
        vec![
            TokenFinding {
                member: format!("files/{hash}"),
                kind: TokenKind::GithubPersonal,
            },
            TokenFinding {
                member: "recordings/t/events".into(),
                kind: TokenKind::HttpAuthorization,
            },
        ]
    );
    // The archive is written (it stays local); its manifest says what, never the value.
    let manifest = read_manifest(&packed.path).unwrap();
    assert_eq!(manifest.tokens, packed.manifest.tokens);
    let json = String::from_utf8(manifest.to_json()).unwrap();
    assert!(json.contains("\"github-personal\""), "{json}");
    assert!(
        !json.contains(PAT) && !json.contains("eC1hY2Nlc3M"),
        "{json}"
    );
}

#[test]
fn damaged_events_file_is_searched_up_to_the_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("damaged");
    let mut events = events_file(&[format!("x {PAT} y").into_bytes()]);
    // A chunk that claims more than the file holds, then garbage.
    events.extend_from_slice(&u32::MAX.to_le_bytes());
    events.extend_from_slice(&noise("garbage", 1000));
    spec.events = events;
    let trace = make_trace(&tmp.path().join("t"), &spec);
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    assert_eq!(
        packed.manifest.tokens,
        vec![TokenFinding {
            member: "recordings/t/events".into(),
            kind: TokenKind::GithubPersonal,
        }]
    );
}
