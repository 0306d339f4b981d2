//! Archives from elsewhere: bounded unpacking (`--max-unpacked-size`), and `inspect`,
//! which verifies an archive before it says this machine can replay it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::common::*;

/// `steps 3` recorded and packed into `dir/archives/`; `extra` bytes of zeros are added to
/// the recording first (a sparse file `padding`, packed as a member of the recording).
fn steps_archive(dir: &Path, extra: u64) -> PathBuf {
    steps_archive_of(dir, "3", extra)
}

/// `steps N` recorded and packed into `dir/archives/` (which must hold no other archive).
fn steps_archive_of(dir: &Path, steps: &str, extra: u64) -> PathBuf {
    let rec = record(dir, &fixture("steps"), &[steps]);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    if extra > 0 {
        let pad = std::fs::File::create(rec.trace.join("padding")).unwrap();
        pad.set_len(extra).unwrap();
    }
    let out = dir.join("archives");
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("pack")
        .arg("--level")
        .arg("1")
        .arg("-o")
        .arg(&out)
        .arg(&rec.trace);
    let packed = run(&mut cmd);
    assert_eq!(packed.status, 0, "{}", packed.show());
    std::fs::remove_dir_all(&rec.trace).unwrap();
    let archives: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    archives.into_iter().next().unwrap()
}

/// `cargo-replay-artifact replay-artifact ARGS` with its cache in `cache`, under
/// `prlimit --as=LIMIT` (address space) when given.
fn replay_artifact(cache: &Path, address_space: Option<u64>, args: &[&OsStr]) -> Run {
    replay_artifact_with(cache, address_space, args, None)
}

/// [`replay_artifact`] with `CHAOS_CACHE_MAX_SIZE` set to `cache_max` when given.
fn replay_artifact_with(
    cache: &Path,
    address_space: Option<u64>,
    args: &[&OsStr],
    cache_max: Option<&str>,
) -> Run {
    let mut cmd = Command::new(tool("timeout"));
    cmd.arg("--kill-after=10").arg("300");
    if let Some(bytes) = address_space {
        cmd.arg(tool("prlimit")).arg(format!("--as={bytes}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_cargo-replay-artifact"))
        .arg("replay-artifact")
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("CHAOS_CACHE_MAX_SIZE")
        .stdin(Stdio::null());
    if let Some(max) = cache_max {
        cmd.env("CHAOS_CACHE_MAX_SIZE", max);
    }
    run(&mut cmd)
}

/// Every name under `dir`, recursively (hidden ones included).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(tree(&p));
        }
    }
    out
}

#[test]
fn an_archive_past_the_size_limit_is_refused_naming_the_flag_and_accepted_with_it() {
    // A real capture plus a member of 1.06 GiB of zeros: the archive stays small, the
    // hashes are right, and the member is past the default limit of 1 GiB a member.
    let dir = temp();
    let bomb = (1u64 << 30) + (64 << 20);
    let archive = steps_archive(dir.path(), bomb);
    let small = std::fs::metadata(&archive).unwrap().len();
    assert!(small < 16 << 20, "the archive is {small} bytes");
    let cache = dir.path().join("cache");
    // 512 MiB of address space: less than the member, so it can only be streamed.
    let memory = Some(512u64 << 20);

    let refused = replay_artifact(&cache, memory, &[archive.as_os_str()]);
    assert_eq!(refused.status, FAILED, "{}", refused.show());
    let err = refused.stderr_str();
    assert!(
        err.contains("--max-unpacked-size") && err.contains("1.1 GiB") && err.contains("padding"),
        "the message should name the member, its size and the flag\n{}",
        refused.show()
    );
    // The cache holds its (empty) directories and nothing else.
    let left: Vec<String> = tree(&cache)
        .into_iter()
        .filter(|p| !Path::new(p).is_dir() || !p.ends_with("/traces") && p.contains("/traces/"))
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");

    // `cargo chaos unpack` refuses it the same way.
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("unpack")
        .arg(&archive)
        .arg("-o")
        .arg(dir.path().join("unpacked"));
    let unpack = run(&mut cmd);
    assert_eq!(unpack.status, FAILED, "{}", unpack.show());
    assert!(
        unpack.stderr_str().contains("--max-unpacked-size"),
        "{}",
        unpack.show()
    );
    assert!(!dir.path().join("unpacked").exists());

    // Raised, the archive unpacks (streamed within the same memory) and replays.
    let accepted = replay_artifact(
        &cache,
        memory,
        &[
            OsStr::new("--max-unpacked-size"),
            OsStr::new("2GiB"),
            archive.as_os_str(),
        ],
    );
    assert_eq!(accepted.status, 0, "{}", accepted.show());
    assert!(
        accepted.stderr_str().contains("the replay matched"),
        "{}",
        accepted.show()
    );
    // The member of zeros is a hole in the cache, not 1.06 GiB of disk.
    let padding: Vec<String> = tree(&cache)
        .into_iter()
        .filter(|p| p.ends_with("/padding"))
        .collect();
    assert_eq!(padding.len(), 1, "{padding:?}");
    let meta = std::fs::metadata(&padding[0]).unwrap();
    assert_eq!(meta.len(), bomb);
    let on_disk = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(
        on_disk < 16 << 20,
        "the padding takes {on_disk} bytes of disk"
    );
}

#[test]
fn a_bad_size_is_refused_with_a_message() {
    let dir = temp();
    let run = replay_artifact(
        &dir.path().join("cache"),
        None,
        &[
            OsStr::new("--max-unpacked-size"),
            OsStr::new("lots"),
            OsStr::new("x.chaos.tar.zst"),
        ],
    );
    assert_ne!(run.status, 0, "{}", run.show());
    assert!(run.stderr_str().contains("not a size"), "{}", run.show());
}

fn inspect(archive: &Path) -> Run {
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("inspect").arg(archive);
    run(&mut cmd)
}

#[test]
fn inspect_verifies_the_archive_before_it_says_it_can_be_replayed() {
    let dir = temp();
    let archive = steps_archive(dir.path(), 0);
    let good = inspect(&archive);
    assert_eq!(good.status, 0, "{}", good.show());
    assert!(
        good.stdout_str().contains("This machine can replay it"),
        "{}",
        good.show()
    );

    let bytes = std::fs::read(&archive).unwrap();
    // Cut in the middle (the manifest still reads) and in the last bytes (only the
    // end of the stream and the hash in the name can tell); both with the name kept, and
    // once renamed without a hash.
    let renamed = dir.path().join("steps.chaos.tar.zst");
    for (cut, path) in [
        (bytes.len() / 2, &archive),
        (bytes.len() - 3, &archive),
        (bytes.len() - 3, &renamed),
    ] {
        std::fs::write(path, &bytes[..cut]).unwrap();
        let damaged = inspect(path);
        let what = format!("cut at {cut} of {} bytes, {}", bytes.len(), path.display());
        assert_eq!(damaged.status, FAILED, "{what}\n{}", damaged.show());
        assert!(
            !damaged.stdout_str().contains("can replay it"),
            "{what}\n{}",
            damaged.show()
        );
        assert!(
            damaged
                .stdout_str()
                .contains("damaged: it cannot be replayed"),
            "{what}\n{}",
            damaged.show()
        );
        let err = damaged.stderr_str();
        assert!(
            err.contains("truncated") || err.contains("damaged") || err.contains("hash"),
            "{what}: the error should say what is wrong\n{}",
            damaged.show()
        );
    }

    // Not even a manifest: refused with a reason.
    std::fs::write(&archive, &bytes[..40]).unwrap();
    let hopeless = inspect(&archive);
    assert_eq!(hopeless.status, FAILED, "{}", hopeless.show());
    assert!(
        hopeless.stderr_str().contains("cannot be replayed"),
        "{}",
        hopeless.show()
    );
}

#[test]
fn the_cache_keeps_to_the_size_cap_from_the_environment() {
    let dir = temp();
    let first = steps_archive_of(&dir.path().join("one"), "3", 0);
    let second = steps_archive_of(&dir.path().join("two"), "4", 0);
    let cache = dir.path().join("cache");
    let traces = cache.join("cargo-chaos/traces");
    let entries = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&traces)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let hash_of = |archive: &Path| -> String {
        let name = archive.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".chaos.tar.zst").unwrap();
        stem.rsplit('-').next().unwrap()[..32].to_string()
    };

    // A cap below one entry: each replay keeps only the entry it used.
    for archive in [&first, &second] {
        let r = replay_artifact_with(&cache, None, &[archive.as_os_str()], Some("1KiB"));
        assert_eq!(r.status, 0, "{}", r.show());
        assert_eq!(entries(), vec![hash_of(archive)]);
    }
    // The default cap (10 GiB) keeps both.
    let r = replay_artifact(&cache, None, &[first.as_os_str()]);
    assert_eq!(r.status, 0, "{}", r.show());
    let mut both = vec![hash_of(&first), hash_of(&second)];
    both.sort();
    assert_eq!(entries(), both);

    // A malformed value is refused with a message naming the variable.
    let r = replay_artifact_with(&cache, None, &[first.as_os_str()], Some("plenty"));
    assert_eq!(r.status, FAILED, "{}", r.show());
    assert!(
        r.stderr_str().contains("CHAOS_CACHE_MAX_SIZE"),
        "{}",
        r.show()
    );
}
