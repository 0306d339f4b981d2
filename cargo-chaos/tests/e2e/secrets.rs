//! Credentials stay out of archives: a password inside a URL in any variable is removed
//! before the program starts, and a capture whose data hold a token is not uploaded
//! unless the user says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;

/// `cargo-chaos ARGS` with its caches in `dir`.
fn chaos(dir: &Path, args: &[&std::ffi::OsStr]) -> Run {
    let mut cmd = chaos_cmd(&[]);
    cmd.args(args)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("GITHUB_ACTIONS");
    run(&mut cmd)
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// The one archive in `dir`.
fn archive_in(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".chaos.tar.zst"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one archive in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The decompressed chunks of an events file (`u32` LE length + one zstd frame each).
fn decompressed_events(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let frame = &bytes[at + 4..at + 4 + len];
        out.extend(zstd::decode_all(frame).expect("a chunk of the recorder's events"));
        at += 4 + len;
    }
    assert_eq!(
        at,
        bytes.len(),
        "{} ends in a partial chunk",
        path.display()
    );
    out
}

/// Packs `trace` (with `extra` arguments), unpacks the archive, and returns, for each
/// unpacked file, whether `needle` is in it (in the decompressed chunks for `events`).
fn occurrences_in_archive(dir: &Path, trace: &Path, extra: &[&str], needle: &str) -> Vec<String> {
    let out = dir.join("archive");
    let mut args = vec![os("pack"), trace.as_os_str(), os("-o"), out.as_os_str()];
    args.extend(extra.iter().map(|a| os(a)));
    std::fs::create_dir_all(&out).unwrap();
    let packed = chaos(dir, &args);
    assert_eq!(packed.status, 0, "{}", packed.show());
    let archive = archive_in(&out);
    let unpacked = dir.join("unpacked");
    let un = chaos(
        dir,
        &[
            os("unpack"),
            archive.as_os_str(),
            os("-o"),
            unpacked.as_os_str(),
        ],
    );
    assert_eq!(un.status, 0, "{}", un.show());
    let mut events_seen = 0;
    let mut hits = Vec::new();
    for f in files_under(&unpacked) {
        let mut bytes = std::fs::read(&f).unwrap();
        if f.file_name().is_some_and(|n| n == "events") {
            bytes = decompressed_events(&f);
            assert!(bytes.len() > 10_000, "the events hold the program's images");
            events_seen += 1;
        }
        if memchr_find(&bytes, needle.as_bytes()) {
            hits.push(f.strip_prefix(&unpacked).unwrap().display().to_string());
        }
    }
    assert_eq!(events_seen, 1, "one recording's events");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&unpacked).unwrap();
    hits
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn password_inside_a_url_reaches_no_part_of_the_archive() {
    const PASSWORD: &str = "pw-4c2e9a71d8";
    let url = format!("postgres://app:{PASSWORD}@db.invalid:5432/app");
    // Two processes, each printing its environment: the shell and the one it starts.
    let script = "env; sh -c 'env; echo second-process'";
    for keep in [false, true] {
        let dir = temp();
        let rec = if keep {
            // `--keep-env` goes before `--`: record by hand.
            let mut cmd = chaos_cmd(&[]);
            cmd.args(["record", "--keep-env", "DATABASE_URL", "--trace-dir"])
                .arg(dir.path().join("trace"))
                .args(["--", "/bin/sh", "-c", script])
                .env("DATABASE_URL", &url);
            let raw = run(&mut cmd);
            Recording {
                program: split_record_output(&raw, &dir.path().join("trace")),
                trace: dir.path().join("trace"),
            }
        } else {
            let u = url.clone();
            RecordSpec::new(Path::new("/bin/sh"), dir.path().join("trace"))
                .args(["-c", script])
                .configure(move |c: &mut Command| {
                    c.env("DATABASE_URL", u);
                })
                .record()
        };
        let out = rec.program.stdout_str();
        assert!(out.contains("second-process"), "{}", rec.program.show());
        let extra: &[&str] = if keep {
            &["--keep-env", "DATABASE_URL"]
        } else {
            &[]
        };
        let hits = occurrences_in_archive(dir.path(), &rec.trace, extra, PASSWORD);
        if keep {
            // The search sees the value where it is when kept: the environment in the
            // header and the manifest, the initial stacks in the events, the output.
            assert_eq!(out.matches(&url).count(), 2, "{out}");
            for member in ["chaos-manifest.json", "header.json", "events", "stdout"] {
                assert!(
                    hits.iter().any(|h| h.ends_with(member)),
                    "{member} holds the kept value: {hits:?}"
                );
            }
        } else {
            assert!(!out.contains("DATABASE_URL"), "{out}");
            assert!(
                rec.program
                    .stderr_str()
                    .contains("DATABASE_URL is not passed to the program: its value holds a password inside a URL (--keep-env DATABASE_URL passes it)"),
                "{}",
                rec.program.show()
            );
            assert!(hits.is_empty(), "the password is in {hits:?}");
            let header = std::fs::read_to_string(rec.trace.join("header.json")).unwrap();
            assert!(
                header.contains("\"DATABASE_URL\""),
                "named in removed_env: {header}"
            );
        }
    }
}

/// What `actions/checkout` leaves in `.git/config` without `persist-credentials: false`
/// (base64 of `x-access-token:ghs_...`, a fake token).
const GIT_CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX0Zha2VGYWtlRmFrZUZha2VGYWtlMDEyMzQ1Njc4OTAx\n";
const BASE64_PART: &str = "eC1hY2Nlc3MtdG9rZW46";

#[test]
fn capture_holding_a_token_it_read_is_not_uploaded_unless_allowed() {
    let dir = temp();
    let repo = dir.path().join("repo/.git");
    std::fs::create_dir_all(&repo).unwrap();
    let config = repo.join("config");
    std::fs::write(&config, GIT_CONFIG).unwrap();
    // Reads the file with read(2) and prints only a checksum.
    let rec = RecordSpec::new(Path::new("/usr/bin/sha256sum"), dir.path().join("trace"))
        .args([&config])
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    assert!(!rec.program.stdout_str().contains(BASE64_PART));

    let out = dir.path().join("out");
    let uploads = dir.path().join("uploads");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&uploads).unwrap();
    let up_target = format!("{}/", uploads.display());
    let packed = chaos(
        dir.path(),
        &[
            os("pack"),
            rec.trace.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--upload"),
            os(&up_target),
        ],
    );
    assert_eq!(packed.status, 2, "{}", packed.show());
    let err = packed.stderr_str();
    let archive = archive_in(&out);
    for said in [
        "Held back",
        &archive.display().to_string(),
        "an HTTP Authorization header with credentials in data the program read: the result of read(fd ",
        "--allow-secrets",
    ] {
        assert!(err.contains(said), "`{said}` in:\n{err}");
    }
    assert!(!err.contains(BASE64_PART), "never the credential:\n{err}");
    assert_eq!(dir_entries(&uploads), 0, "nothing uploaded");

    // `upload` of that archive: refused too, then allowed.
    let up = chaos(
        dir.path(),
        &[os("upload"), archive.as_os_str(), os(&up_target)],
    );
    assert_eq!(up.status, 2, "{}", up.show());
    assert!(
        up.stderr_str().contains("an HTTP Authorization header"),
        "{}",
        up.show()
    );
    assert_eq!(dir_entries(&uploads), 0, "nothing uploaded");
    let up = chaos(
        dir.path(),
        &[
            os("upload"),
            os("--allow-secrets"),
            archive.as_os_str(),
            os(&up_target),
        ],
    );
    assert_eq!(up.status, 0, "{}", up.show());
    assert!(uploads.join(archive.file_name().unwrap()).is_file());

    // `pack --upload --allow-secrets`: uploaded, with a warning naming what it holds.
    std::fs::remove_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&uploads).unwrap();
    let packed = chaos(
        dir.path(),
        &[
            os("pack"),
            rec.trace.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--upload"),
            os(&up_target),
            os("--allow-secrets"),
        ],
    );
    assert_eq!(packed.status, 0, "{}", packed.show());
    assert!(
        packed.stderr_str().contains("holds credentials"),
        "{}",
        packed.show()
    );
    assert_eq!(dir_entries(&uploads), 1, "uploaded");
}

#[test]
fn token_in_a_mapped_file_is_found() {
    let dir = temp();
    let input = dir.path().join("settings.txt");
    std::fs::write(
        &input,
        "token = ghp_Fake0Fake1Fake2Fake3Fake4Fake5Fake6Fa\n",
    )
    .unwrap();
    // The mmap fixture maps its input file and prints checksums of it.
    let rec = RecordSpec::new(&fixture("mmap"), dir.path().join("trace"))
        .args([&input])
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let packed = chaos(
        dir.path(),
        &[os("pack"), rec.trace.as_os_str(), os("-o"), out.as_os_str()],
    );
    // Without an upload, packing succeeds and warns.
    assert_eq!(packed.status, 0, "{}", packed.show());
    let err = packed.stderr_str();
    assert!(
        err.contains(
            "a GitHub personal access token (ghp_) in the file the program mapped with mmap(fd"
        ),
        "{err}"
    );
    assert!(!err.contains("Fake0Fake1"), "{err}");
}

fn dir_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}
