//! Synthetic recordings made of real files, and helpers to look inside archives.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use packer::{PackOptions, ProgressEvent};

/// Real shared libraries every recording of a Rust test maps.
pub const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
pub const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

/// Stands in for a test binary: a real executable of a few hundred KiB.
pub fn fake_test_binary() -> PathBuf {
    for p in ["/usr/bin/tar", "/bin/tar", "/usr/bin/ls", "/bin/ls"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no /usr/bin/tar or /bin/ls to use as a test binary");
}

/// Deterministic pseudo-random bytes (BLAKE3 in XOF mode).
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// What a synthetic recording holds.
pub struct TraceSpec {
    pub captured: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    pub removed_env: Vec<String>,
    pub events: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub with_result: bool,
}

impl TraceSpec {
    pub fn new(seed: &str) -> TraceSpec {
        TraceSpec {
            captured: vec![
                PathBuf::from(LIBC),
                PathBuf::from(LD_SO),
                fake_test_binary(),
            ],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("RUST_BACKTRACE".into(), "1".into()),
            ],
            removed_env: vec![],
            events: noise(seed, 64 << 10),
            stdout: b"\nrunning 1 test\ntest net::reconnects ... FAILED\n".to_vec(),
            stderr: b"thread 'net::reconnects' panicked at src/lib.rs:10:5:\nassertion failed\n"
                .to_vec(),
            with_result: true,
        }
    }
}

/// Writes a recording directory laid out as docs/trace-format.md describes.
pub fn make_trace(dir: &Path, spec: &TraceSpec) -> PathBuf {
    fs::create_dir_all(dir.join("files")).unwrap();
    fs::write(dir.join("version"), "chaos-trace 1\n").unwrap();
    let env: Vec<[&str; 2]> = spec
        .env
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    let header = serde_json::json!({
        "format_version": 1,
        "tool_version": "0.1.0",
        "argv": ["/work/target/debug/deps/integration-abc", "net::reconnects", "--exact"],
        "cwd": dir.display().to_string(),
        "env": env,
        "removed_env": spec.removed_env,
        "exe": "/work/target/debug/deps/integration-abc",
        "hostname": "ci-runner-7",
        "kernel": "6.1.0-28-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1",
        "cpu_model": "Example CPU @ 2.00GHz",
        "seed": 123,
        "aslr_disabled": true,
        "cpu_set": [0, 1],
        "started_unix_ms": 1_764_000_000_000u64,
        "some_future_field": {"nested": true},
    });
    fs::write(
        dir.join("header.json"),
        serde_json::to_vec_pretty(&header).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("events"), &spec.events).unwrap();
    fs::write(dir.join("stdout"), &spec.stdout).unwrap();
    fs::write(dir.join("stderr"), &spec.stderr).unwrap();
    if spec.with_result {
        let leaves: Vec<Vec<u32>> = packer::cpu::host_leaves()
            .iter()
            .map(|l| l.to_vec())
            .collect();
        let result = serde_json::json!({
            "outcome": "exited", "exit_code": 101, "signal": null, "status": 101,
            "events": 1234, "cpuid_leaves": leaves, "message": null,
        });
        fs::write(
            dir.join("result.json"),
            serde_json::to_vec(&result).unwrap(),
        )
        .unwrap();
    }
    for src in &spec.captured {
        let bytes = fs::read(src).unwrap();
        let hash = blake3::hash(&bytes).to_hex().to_string();
        fs::write(dir.join("files").join(hash), bytes).unwrap();
    }
    dir.to_path_buf()
}

/// Fast options for tests that are not about compression.
pub fn fast_options() -> PackOptions {
    let mut o = PackOptions::default();
    o.level = Some(3);
    o.environment = Some(vec![]);
    o.git_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
    // Tests do not touch the user's cache; tests/it/frames.rs uses its own.
    o.frame_cache = None;
    o
}

/// Ignores progress.
pub fn quiet() -> impl FnMut(&ProgressEvent) {
    |_| {}
}

/// Decompresses an archive into its tar bytes.
pub fn tar_bytes(archive: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(fs::File::open(archive).unwrap())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// (path, size) of every member of an archive, in order.
pub fn list_members(archive: &Path) -> Vec<(String, u64)> {
    let bytes = tar_bytes(archive);
    let mut ar = tar::Archive::new(&bytes[..]);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.size())
        })
        .collect()
}

/// Every regular file under `dir`, relative path -> content.
pub fn read_tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            assert!(!ft.is_symlink(), "unexpected symlink {}", p.display());
            if ft.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = Default::default();
    walk(dir, dir, &mut out);
    out
}

/// Names in `dir` (to check that nothing was left behind).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
