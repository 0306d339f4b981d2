//! Uploads and downloads through a real nginx (WebDAV PUT/GET).

use std::fs;

use packer::cache::Cache;
use packer::transport::{self, Transport, TransportOptions};
use packer::{pack, Phase, ProgressEvent, TransportError};

use crate::servers::Nginx;
use crate::util::*;

fn options() -> TransportOptions {
    let mut o = TransportOptions::default();
    o.backoff = std::time::Duration::from_millis(20);
    o
}

#[test]
fn webdav_upload_then_download_and_replay_from_cache() {
    let server = Nginx::start();
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("webdav"));
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let name = packed
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // A location ending in / gets the archive's name.
    let mut events = Vec::new();
    let up = transport::upload(
        &packed.path,
        &server.url("dav/ci/run-1/"),
        &options(),
        &mut |e: &ProgressEvent| events.push(e.clone()),
    )
    .unwrap();
    assert_eq!(up.location, server.url(&format!("dav/ci/run-1/{name}")));
    assert_eq!(up.size, packed.size);
    let stored = fs::read(server.file(&format!("dav/ci/run-1/{name}"))).unwrap();
    assert!(
        stored == fs::read(&packed.path).unwrap(),
        "server holds other bytes"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        ProgressEvent::Finished { phase: Phase::Uploading, bytes } if *bytes == packed.size
    )));

    // Downloaded bytes equal uploaded ones, verified against the name.
    let dl_dir = tmp.path().join("dl");
    let got = transport::download(&up.location, &dl_dir, &options(), &mut quiet()).unwrap();
    assert!(got.verified_by_name);
    assert_eq!(got.hash, packed.hash);
    assert_eq!(got.path, dl_dir.join(&name));
    assert!(fs::read(&got.path).unwrap() == fs::read(&packed.path).unwrap());
    assert_eq!(
        dir_names(&dl_dir),
        vec![name.clone()],
        "no partial download left"
    );

    // Through the cache: download, verify, unpack; the trace equals the original.
    let cache = Cache::new(tmp.path().join("cache"));
    let u = cache
        .open_url(&up.location, &options(), &mut quiet())
        .unwrap();
    let mut restored = read_tree(u.single_trace().unwrap());
    restored.remove("chaos-manifest.json");
    assert!(read_tree(&trace) == restored);
    // Next time the URL's hash is found in the cache: no request at all.
    drop(server);
    let again = cache
        .open_url(&up.location, &options(), &mut quiet())
        .unwrap();
    assert_eq!(again.root, u.root);
}

#[test]
fn download_with_wrong_hash_in_name_is_refused() {
    let server = Nginx::start();
    let tmp = tempfile::tempdir().unwrap();
    let fake = format!("x-{}.chaos.tar.zst", "ab".repeat(16));
    let src = tmp.path().join(&fake);
    fs::write(&src, noise("wrong-hash", 4096)).unwrap();
    let up = transport::upload(&src, &server.url("dav/"), &options(), &mut quiet()).unwrap();
    let dl = tmp.path().join("dl");
    let err = transport::download(&up.location, &dl, &options(), &mut quiet()).unwrap_err();
    assert!(matches!(err, TransportError::HashMismatch { .. }), "{err}");
    assert!(
        dir_names(&dl).is_empty(),
        "unverified download kept: {:?}",
        dir_names(&dl)
    );
}

#[test]
fn extra_header_from_the_environment_is_sent() {
    let server = Nginx::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = noise("header", 1000);
    let hash = blake3::hash(&body).to_hex().to_string();
    let name = format!("h-{}.chaos.tar.zst", &hash[..32]);
    let path = server.file(&format!("repos/plain/{name}"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &body).unwrap();
    let url = server.url(&format!("repos/plain/{name}"));

    let err = transport::download(&url, tmp.path(), &options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::Forbidden { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("CHAOS_UPLOAD_HEADER"), "{err}");

    let opts = TransportOptions::from_vars(|k| {
        (k == "CHAOS_UPLOAD_HEADER").then(|| "Authorization: Bearer test-token".to_string())
    })
    .unwrap();
    let got = transport::download(&url, tmp.path(), &opts, &mut quiet()).unwrap();
    assert!(got.verified_by_name);
}

#[test]
fn http_errors_are_named() {
    let server = Nginx::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a.chaos.tar.zst");
    fs::write(&src, noise("errors", 8 << 10)).unwrap();

    let err = transport::download(
        &server.url("dav/missing.chaos.tar.zst"),
        tmp.path(),
        &options(),
        &mut quiet(),
    )
    .unwrap_err();
    assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("not found"));

    let err = transport::upload(&src, &server.url("small/"), &options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::TooLarge { size: 8192, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("client_max_body_size"));

    let err =
        transport::upload(&src, &server.url("forbidden/x"), &options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::Forbidden { status: 403, .. }),
        "{err}"
    );
}

#[test]
fn presigned_url_refuses_more_than_5_gib_before_sending() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.chaos.tar.zst");
    // Sparse: takes no disk space.
    fs::File::create(&big)
        .unwrap()
        .set_len((5 << 30) + 1)
        .unwrap();
    let url = "http://127.0.0.1:9/up/big.chaos.tar.zst?X-Amz-Signature=abc&X-Amz-Credential=k";
    let err = transport::upload(&big, url, &options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::PresignedTooLarge { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("5 GiB") && msg.contains("s3://"), "{msg}");
    assert!(
        !msg.contains("X-Amz-Signature=abc"),
        "the signature must not be printed"
    );
}

#[test]
fn github_artifact_zip_is_downloaded_with_the_token() {
    let server = Nginx::start();
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("artifact"));
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let name = packed
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // What actions/upload-artifact makes of a directory holding the archive.
    let zip_path = server.file("repos/o/r/actions/artifacts/7/zip");
    fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(fs::File::create(&zip_path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("notes.txt", stored).unwrap();
    std::io::Write::write_all(&mut zip, b"replay with cargo chaos replay").unwrap();
    zip.start_file(format!("chaos/{name}"), stored).unwrap();
    std::io::Write::write_all(&mut zip, &fs::read(&packed.path).unwrap()).unwrap();
    zip.finish().unwrap();

    let url = server.url("repos/o/r/actions/artifacts/7/zip");
    let mut opts = options();
    let t = transport::open(&url, &opts).unwrap();
    assert!(t.location().ends_with("/actions/artifacts/7/zip"));

    let err = transport::download(&url, &tmp.path().join("dl"), &opts, &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::MissingCredentials { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("GITHUB_TOKEN"));

    opts.github_token = Some("wrong".into());
    let err = transport::download(&url, &tmp.path().join("dl"), &opts, &mut quiet()).unwrap_err();
    assert!(
        matches!(err, TransportError::Forbidden { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("actions:read"), "{err}");

    opts.github_token = Some("test-token".into());
    let got = transport::download(&url, &tmp.path().join("dl"), &opts, &mut quiet()).unwrap();
    assert!(got.verified_by_name);
    assert_eq!(got.hash, packed.hash);
    assert_eq!(got.path.file_name().unwrap().to_str().unwrap(), name);
    assert_eq!(dir_names(&tmp.path().join("dl")), vec![name], "zip removed");

    // Uploading to an artifact is not possible from a run: step, and the error says what to do.
    let err = transport::upload(&packed.path, &url, &opts, &mut quiet()).unwrap_err();
    assert!(err.to_string().contains("actions/upload-artifact"), "{err}");
}
