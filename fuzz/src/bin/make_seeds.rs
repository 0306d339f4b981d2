//! Writes the seed inputs of the fuzz targets into `fuzz/seeds/TARGET/`: valid inputs
//! made by the project's own writers (a recording with an event stream from
//! `EventWriter`, packed by `packer::pack` and `pack_many`), from which the fuzzer
//! mutates. `cargo +nightly run --bin make-seeds` in fuzz/ (any toolchain builds it).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use recorder::trace::{Event, EventWriter, ExecState, ExitKind, Mapping, MemWrite, SyscallEvent};

fn events() -> Vec<Event> {
    vec![
        Event::Exec(Box::new(ExecState {
            tid: 100,
            path: "/bin/prog".into(),
            regs: (0..27).collect(),
            mappings: vec![
                Mapping {
                    start: 0x40_0000,
                    end: 0x40_1000,
                    prot: 5,
                    shared: false,
                    offset: 0,
                    file: Some(blake3::hash(b"a captured file").to_hex().to_string()),
                    name: "/bin/prog".into(),
                },
                Mapping {
                    start: 0x7ffd_0000_0000,
                    end: 0x7ffd_0002_1000,
                    prot: 3,
                    shared: false,
                    offset: 0,
                    file: None,
                    name: "[stack]".into(),
                },
            ],
            memory: vec![MemWrite {
                addr: 0x7ffd_0002_0000,
                data: b"argv and envp".to_vec(),
            }],
            brk: 0x60_0000,
            stack_limit: 8 << 20,
        })),
        Event::Syscall(SyscallEvent {
            tid: 100,
            nr: 0,
            args: [3, 0x7ffd_0002_0000, 64, 0, 0, 0],
            ret: 5,
            input_hash: 0,
            writes: vec![MemWrite {
                addr: 0x7ffd_0002_0000,
                data: b"hello".to_vec(),
            }],
            file: None,
        }),
        Event::Blocked {
            tid: 100,
            nr: 7,
            args: [0; 6],
        },
        Event::Rdtsc {
            tid: 100,
            rip: 0x40_0010,
            rdtscp: true,
            tsc: 123_456,
            aux: 1,
        },
        Event::Cpuid {
            tid: 100,
            rip: 0x40_0020,
            leaf: 1,
            subleaf: 0,
            out: [1, 2, 3, 4],
        },
        Event::NewTask {
            tid: 100,
            child: 101,
            process: false,
            vfork: false,
        },
        Event::Signal {
            tid: 101,
            signo: 10,
            rip: 0x40_0030,
            injected: true,
            info: vec![0; 128],
        },
        Event::SignalAtPoint {
            tid: 101,
            signo: 27,
            rip: 0x40_0040,
            info: vec![0; 128],
        },
        Event::SharedFile {
            tid: 101,
            name: "/dev/shm/x".into(),
        },
        Event::SharedFileWrite {
            tid: 101,
            name: "/dev/shm/x".into(),
            offset: 8,
            data: b"shared".to_vec(),
        },
        Event::Exit {
            tid: 100,
            how: ExitKind::Exited(101),
        },
    ]
}

fn write_events(path: &Path, split: bool) {
    let mut w = EventWriter::create(path).expect("events");
    for (i, ev) in events().iter().enumerate() {
        w.push(ev).expect("push");
        if split && i % 3 == 2 {
            w.flush().expect("flush");
        }
    }
}

fn header() -> serde_json::Value {
    serde_json::json!({
        "format_version": 2, "tool_version": "0.1.0", "argv": ["/bin/prog", "arg"],
        "cwd": "/tmp", "env": [["PATH", "/usr/bin"]], "removed_env": ["GITHUB_TOKEN"],
        "exe": "/bin/prog", "hostname": "h", "kernel": "6.1.0", "cpu_model": "cpu",
        "seed": 123, "aslr_disabled": true, "cpuid_faulting": false, "cpu_set": [0, 1],
        "pinned_cpu": 0, "untraced": [10, 13], "started_unix_ms": 1764000000000u64
    })
}

fn result() -> serde_json::Value {
    serde_json::json!({
        "outcome": "exited", "exit_code": 101, "signal": null, "status": 101,
        "events": 10, "cpuid_leaves": [[1, 0, 1, 2, 3, 4]], "tick_requests": 0,
        "lookups_answered": 0, "message": null
    })
}

fn make_trace(dir: &Path, captured: &[&[u8]]) {
    fs::create_dir_all(dir.join("files")).unwrap();
    fs::write(dir.join("version"), "chaos-trace 2\n").unwrap();
    fs::write(
        dir.join("header.json"),
        serde_json::to_vec_pretty(&header()).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("result.json"),
        serde_json::to_vec_pretty(&result()).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("stdout"), "running 1 test\n").unwrap();
    fs::write(dir.join("stderr"), "thread 't' panicked\n").unwrap();
    write_events(&dir.join("events"), true);
    for c in captured {
        fs::write(dir.join("files").join(blake3::hash(c).to_hex().as_str()), c).unwrap();
    }
}

fn first_member(archive: &Path) -> Vec<u8> {
    let dec = zstd::stream::read::Decoder::new(fs::File::open(archive).unwrap()).unwrap();
    let mut tar = tar::Archive::new(dec);
    let mut first = tar.entries().unwrap().next().unwrap().unwrap();
    let mut out = Vec::new();
    first.read_to_end(&mut out).unwrap();
    out
}

fn main() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let dir = |t: &str| {
        let d = seeds.join(t);
        fs::create_dir_all(&d).unwrap();
        d
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_trace(&a, &[b"a captured file", &[7u8; 600]]);
    make_trace(&b, &[b"a captured file"]);

    let mut opts = packer::PackOptions::default();
    opts.level = Some(3);
    opts.environment = Some(vec![]);
    opts.git_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
    opts.frame_cache = None;
    opts.name = Some("seed".into());
    let single = packer::pack(&a, &tmp.path().join("o1"), &opts, &mut |_| {}).unwrap();
    let inputs = [a.clone(), b].map(|trace| packer::PackInput {
        trace,
        test: Default::default(),
    });
    let several = packer::pack_many(&inputs, &tmp.path().join("o2"), &opts, &mut |_| {}).unwrap();

    for (name, p) in [("single", &single.path), ("several", &several.path)] {
        let bytes = fs::read(p).unwrap();
        // Flag byte 1: named with its own hash (see chaos_fuzz::archive).
        fs::write(dir("archive").join(name), [&[1u8][..], &bytes].concat()).unwrap();
        // Flag byte 3: named with its hash, the rest is the tar stream to compress.
        let tar = zstd::stream::decode_all(&bytes[..]).unwrap();
        let tar_seed = [&[3u8][..], &tar].concat();
        fs::write(dir("archive").join(format!("{name}.tar")), tar_seed).unwrap();
        fs::write(dir("manifest").join(name), first_member(p)).unwrap();
    }

    let h = serde_json::to_vec_pretty(&header()).unwrap();
    let r = serde_json::to_vec_pretty(&result()).unwrap();
    let meta = |flags: u8, version: &[u8], result: &[u8]| {
        [&[flags][..], version, &[0xff], &h, &[0xff], result].concat()
    };
    let th = dir("trace_header");
    fs::write(th.join("full"), meta(0, b"chaos-trace 2\n", &r)).unwrap();
    fs::write(th.join("no-result"), meta(2, b"chaos-trace 1\n", b"")).unwrap();

    let ev = dir("events");
    write_events(&ev.join("one-chunk"), false);
    write_events(&ev.join("chunks"), true);
    eprintln!("seeds written to {}", seeds.display());
}
