//! Uploads and downloads through a real S3-compatible server (s3s-fs).

use std::fs;

use packer::transport::{self, TransportOptions};
use packer::{pack, ProgressEvent, TransportError};

use crate::servers::S3Server;
use crate::util::*;

const BUCKET: &str = "chaos-artifacts";

fn options(server: &S3Server) -> TransportOptions {
    TransportOptions::from_vars(|k| match k {
        "AWS_ACCESS_KEY_ID" => Some(server.access_key.clone()),
        "AWS_SECRET_ACCESS_KEY" => Some(server.secret_key.clone()),
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ENDPOINT_URL" => Some(server.endpoint()),
        _ => None,
    })
    .unwrap()
}

#[test]
fn single_put_roundtrip() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("s3-single"));
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let name = packed
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let opts = options(&server);

    let up = transport::upload(
        &packed.path,
        &format!("s3://{BUCKET}/ci/"),
        &opts,
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(up.location, format!("s3://{BUCKET}/ci/{name}"));
    let got =
        transport::download(&up.location, &tmp.path().join("dl"), &opts, &mut quiet()).unwrap();
    assert!(got.verified_by_name);
    assert!(fs::read(&got.path).unwrap() == fs::read(&packed.path).unwrap());
}

#[test]
fn multipart_upload_roundtrip() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    // 11 MiB in 5 MiB parts: three parts, the last one short.
    let data = noise("multipart", 11 << 20);
    let hash = blake3::hash(&data).to_hex().to_string();
    let name = format!("big-{}.chaos.tar.zst", &hash[..32]);
    let src = tmp.path().join(&name);
    fs::write(&src, &data).unwrap();
    let mut opts = options(&server);
    opts.s3.multipart_threshold = 1 << 20;
    opts.s3.part_size = 5 << 20;

    let mut max_done = 0;
    let up = transport::upload(
        &src,
        &format!("s3://{BUCKET}/multi/"),
        &opts,
        &mut |e: &ProgressEvent| {
            if let ProgressEvent::Bytes { done, total, .. } = e {
                assert_eq!(*total, Some(11 << 20));
                max_done = max_done.max(*done);
            }
        },
    )
    .unwrap();
    assert_eq!(max_done, 11 << 20, "progress reached the end");
    // The store holds exactly the bytes sent.
    let on_disk = server
        .root
        .join("data")
        .join(BUCKET)
        .join("multi")
        .join(&name);
    assert!(fs::read(&on_disk).unwrap() == data, "stored object differs");

    let got =
        transport::download(&up.location, &tmp.path().join("dl"), &opts, &mut quiet()).unwrap();
    assert_eq!(got.hash, hash);
    assert!(fs::read(&got.path).unwrap() == data);
}

#[test]
fn wrong_credentials_fail_clearly() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("x.chaos.tar.zst");
    fs::write(&src, noise("creds", 2 << 20)).unwrap();
    let mut opts = options(&server);
    opts.s3.secret_access_key = Some("not-the-secret".into());
    for threshold in [u64::MAX, 1 << 20] {
        opts.s3.multipart_threshold = threshold;
        let err =
            transport::upload(&src, &format!("s3://{BUCKET}/k"), &opts, &mut quiet()).unwrap_err();
        assert!(
            matches!(err, TransportError::BadCredentials { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("rejected the credentials"), "{msg}");
        assert!(msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
        assert!(!msg.contains("not-the-secret"), "{msg}");
    }
    opts.s3.access_key_id = Some("AKIAUNKNOWN".into());
    let err =
        transport::upload(&src, &format!("s3://{BUCKET}/k"), &opts, &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::BadCredentials { .. }),
        "{err}"
    );

    let mut none = options(&server);
    none.s3.access_key_id = None;
    let err =
        transport::upload(&src, &format!("s3://{BUCKET}/k"), &none, &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::MissingCredentials { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"));
}

#[test]
fn missing_object_and_bad_locations() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(&server);
    let err = transport::download(
        &format!("s3://{BUCKET}/nope.chaos.tar.zst"),
        tmp.path(),
        &opts,
        &mut quiet(),
    )
    .unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
    let err = transport::open("s3://bucket-only", &opts).err().unwrap();
    assert!(err.to_string().contains("end the location with /"), "{err}");
    let err = transport::open("ftp://x/y", &opts).err().unwrap();
    assert!(matches!(err, TransportError::UnsupportedUrl { .. }));
}

/// Issue 18: a download without credentials from a bucket that needs them says the
/// credentials are missing (it went unsigned), instead of only the server's refusal.
#[test]
fn a_download_without_credentials_says_so() {
    let server = S3Server::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("x.chaos.tar.zst");
    fs::write(&src, noise("nocreds", 4096)).unwrap();
    let opts = options(&server);
    transport::upload(
        &src,
        &format!("s3://{BUCKET}/x.chaos.tar.zst"),
        &opts,
        &mut quiet(),
    )
    .unwrap();
    let mut none = options(&server);
    none.s3.access_key_id = None;
    none.s3.secret_access_key = None;
    let dest = tmp.path().join("down");
    fs::create_dir_all(&dest).unwrap();
    let err = transport::download(
        &format!("s3://{BUCKET}/x.chaos.tar.zst"),
        &dest,
        &none,
        &mut quiet(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportError::UnsignedDownloadFailed { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("no AWS credentials are set"), "{msg}");
    assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
    // With them, the same download works.
    transport::download(
        &format!("s3://{BUCKET}/x.chaos.tar.zst"),
        &dest,
        &opts,
        &mut quiet(),
    )
    .unwrap();
}
