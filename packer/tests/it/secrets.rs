//! A secret in the environment never reaches an archive.

use std::fs;

use packer::secrets::filter_env;
use packer::{pack, PackError};

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
    assert!(msg.contains("--allow-env GITHUB_TOKEN"), "{msg}");
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
