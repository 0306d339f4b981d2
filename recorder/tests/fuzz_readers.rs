//! Bounded, deterministic fuzzing of the trace readers on stable: the event decoder
//! (`EventReader`) and the metadata readers (`version`, `header.json`, `result.json`).
//! The libFuzzer targets in `fuzz/` run the same checks (`fuzz_checks/`) for as long as
//! one likes.
//!
//! Inputs: random bytes; random events written by [`EventWriter`] (which must read back
//! exactly); and that stream damaged: bytes flipped, set, inserted, deleted, cut off,
//! length fields inserted, in the file or inside a chunk's decompressed records
//! (recompressed, so that the record framing and postcard decoding see the damage rather
//! than zstd). Every run uses a fixed seed and a fixed number of cases, and each input's
//! allocations are counted: memory stays bounded.
//!
//! The inputs stay small (a few KiB): a chunk of them expands to a few MiB at most.

mod fuzz_checks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use recorder::preempt::point::{Method, PointInfo};
use recorder::preempt::PreemptState;
use recorder::trace::{Event, EventWriter, ExecState, ExitKind, Mapping, MemWrite, SyscallEvent};

use fuzz_checks::{check_events, check_trace_meta, read_events_file};

/// Counts the bytes each thread has allocated and not freed, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting only
// touches const-initialised thread-locals (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

/// The most one small input may make the reader allocate: its chunks decompress to at
/// most a few MiB.
const MEMORY_BOUND: usize = 64 << 20;

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

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/.\\[\\]]{0,24}",
        Just("€€€€€€€€".to_string()),
        Just("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()),
        Just("../../etc/passwd".to_string()),
    ]
}

/// Mostly what the recorder writes, sometimes anything: the reader must return what it
/// accepts unchanged and refuse the rest (see `recorder::trace::validate`).
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..(1 << 47), 1 => any::<u64>()]
}

/// A preemption state with `regs` and the first three of `h` as its fpu, stack and
/// memory hashes.
fn preempt_state(regs: Vec<u64>, h: &[u64]) -> Box<PreemptState> {
    Box::new(PreemptState {
        regs,
        fpu_hash: h[0],
        stack_hash: h[1],
        memory_hash: h[2],
    })
}

fn regs() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u64>(), 27),
        1 => prop::collection::vec(any::<u64>(), 0..30),
    ]
}

fn file_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<u64>().prop_map(|x| blake3::hash(&x.to_le_bytes()).to_hex().to_string()),
        1 => text(),
    ]
}

fn mem_write() -> impl Strategy<Value = MemWrite> {
    (addr(), bytes(64)).prop_map(|(addr, data)| MemWrite { addr, data })
}

fn mapping() -> impl Strategy<Value = Mapping> {
    let range = prop_oneof![
        3 => (0u64..1 << 30, 1u64..64, 0u64..1 << 20)
            .prop_map(|(page, pages, off)| (page << 12, (page + pages) << 12, off << 12)),
        1 => any::<(u64, u64, u64)>(),
    ];
    (
        range,
        any::<i32>(),
        any::<bool>(),
        prop::option::of(file_ref()),
        text(),
    )
        .prop_map(|((start, end, offset), prot, shared, file, name)| Mapping {
            start,
            end,
            prot,
            shared,
            offset,
            file,
            name,
        })
}

fn exit_kind() -> impl Strategy<Value = ExitKind> {
    prop_oneof![
        any::<i32>().prop_map(ExitKind::Exited),
        any::<i32>().prop_map(ExitKind::Signaled),
    ]
}

/// Any event, with every field free.
fn event() -> impl Strategy<Value = Event> {
    let exec = (
        any::<i32>(),
        text(),
        regs(),
        prop::collection::vec(mapping(), 0..4),
        prop::collection::vec(mem_write(), 0..3),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(tid, path, regs, mappings, memory, brk, stack_limit)| {
            Event::Exec(Box::new(ExecState {
                tid,
                path,
                regs,
                mappings,
                memory,
                brk,
                stack_limit,
            }))
        });
    let syscall = (
        any::<i32>(),
        prop_oneof![3 => 0u64..335, 1 => any::<u64>()],
        any::<[u64; 6]>(),
        prop_oneof![3 => -4095i64..1 << 20, 1 => any::<i64>()],
        any::<u64>(),
        prop::collection::vec(mem_write(), 0..3),
        prop::option::of(file_ref()),
    )
        .prop_map(|(tid, nr, args, ret, input_hash, writes, file)| {
            Event::Syscall(SyscallEvent {
                tid,
                nr,
                args,
                ret,
                input_hash,
                writes,
                file,
            })
        });
    prop_oneof![
        exec,
        syscall,
        (any::<i32>(), any::<u64>(), any::<[u64; 6]>())
            .prop_map(|(tid, nr, args)| Event::Blocked { tid, nr, args }),
        (
            any::<i32>(),
            any::<u64>(),
            any::<[u64; 6]>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(tid, nr, args, rip, verdict)| Event::Filtered {
                tid,
                nr,
                args,
                rip,
                verdict
            }),
        (
            any::<i32>(),
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(tid, rip, rdtscp, tsc, aux)| Event::Rdtsc {
                tid,
                rip,
                rdtscp,
                tsc,
                aux
            }),
        (
            any::<i32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u32; 4]>()
        )
            .prop_map(|(tid, rip, leaf, subleaf, out)| Event::Cpuid {
                tid,
                rip,
                leaf,
                subleaf,
                out
            }),
        (
            any::<i32>(),
            any::<i32>(),
            any::<u64>(),
            any::<bool>(),
            bytes(160)
        )
            .prop_map(|(tid, signo, rip, injected, info)| Event::Signal {
                tid,
                signo,
                rip,
                injected,
                info
            }),
        (any::<i32>(), any::<i32>(), any::<u64>(), bytes(160)).prop_map(
            |(tid, signo, rip, info)| Event::SignalAtPoint {
                tid,
                signo,
                rip,
                info
            }
        ),
        (any::<i32>(), regs(), any::<[u64; 3]>()).prop_map(|(tid, regs, h)| Event::Preempt {
            tid,
            state: preempt_state(regs, &h),
        }),
        (
            any::<i32>(),
            regs(),
            any::<[u64; 4]>(),
            -16i32..=0,
            proptest::collection::vec(any::<u64>(), 0..=48)
        )
            .prop_map(|(tid, regs, h, from, stack)| Event::Preempted {
                tid,
                state: preempt_state(regs, &h),
                point: Box::new(PointInfo {
                    method: match h[3] % 3 {
                        0 => Method::StateMatch,
                        1 => Method::RepString,
                        _ => Method::BranchCount { count: h[3] },
                    },
                    steps: (h[3] % 65) as u32,
                    stack_from: from * 8,
                    stack,
                    memory: h.iter().map(|v| (*v, !*v)).collect(),
                }),
            }),
        (any::<i32>(), any::<i32>(), any::<bool>(), any::<bool>()).prop_map(
            |(tid, child, process, vfork)| Event::NewTask {
                tid,
                child,
                process,
                vfork
            }
        ),
        (any::<i32>(), exit_kind()).prop_map(|(tid, how)| Event::Exit { tid, how }),
        (any::<i32>(), text()).prop_map(|(tid, name)| Event::SharedFile { tid, name }),
        (any::<i32>(), text(), addr(), bytes(64)).prop_map(|(tid, name, offset, data)| {
            Event::SharedFileWrite {
                tid,
                name,
                offset,
                data,
            }
        }),
        (any::<i32>(), addr(), bytes(12)).prop_map(|(tid, addr, data)| Event::KernelWrite {
            tid,
            addr,
            data
        }),
    ]
}

/// Writes `events` with [`EventWriter`], flushing after the ones whose index is in
/// `flush_after` (so the stream has several chunks), and returns the file's bytes.
fn write_stream(events: &[Event], flush_after: &[Index]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let mut w = EventWriter::create(&path).unwrap();
    let cuts: Vec<usize> = flush_after
        .iter()
        .map(|i| i.index(events.len().max(1)))
        .collect();
    for (k, ev) in events.iter().enumerate() {
        w.push(ev).unwrap();
        if cuts.contains(&k) {
            w.flush().unwrap();
        }
    }
    drop(w);
    std::fs::read(&path).unwrap()
}

/// Reads `data` as an event stream: the events up to the end or the first error,
/// whether it ended in an error, whether it was truncated.
fn read_all(data: &[u8]) -> (Vec<Event>, bool, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    std::fs::write(&path, data).unwrap();
    let mut r = recorder::trace::EventReader::open(&path).unwrap();
    let mut out = Vec::new();
    let error = loop {
        match r.next_event() {
            Ok(Some(ev)) => out.push(ev),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    (out, error, r.truncated.is_some())
}

/// The chunks of an event stream: (length field, frame).
fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// A little-endian length field inserted, or written over the bytes there.
    Length(Index, u32, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let len = prop_oneof![
        0u32..300,
        Just(u32::MAX),
        Just(1 << 24),
        Just(0x8000_0000),
        any::<u32>()
    ];
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, 1 << b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => (any::<Index>(), bytes(16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), len, any::<bool>()).prop_map(|(i, v, o)| Mutation::Length(i, v, o)),
    ]
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
            Mutation::Insert(i, b) => {
                let i = i.index(d.len() + 1);
                d.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i.index(d.len());
                let end = (i + n).min(d.len());
                d.drain(i..end);
            }
            Mutation::Truncate(i) => d.truncate(i.index(d.len())),
            Mutation::Length(i, v, overwrite) => {
                let i = i.index(d.len() + 1);
                let end = if *overwrite { (i + 4).min(d.len()) } else { i };
                d.splice(i..end, v.to_le_bytes());
            }
        }
    }
    d
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// The largest content size a chunk of `data` declares in its zstd frame header, among
/// those the reader accepts (it reserves that much before decompressing).
fn largest_declared_chunk(data: &[u8]) -> usize {
    let mut rest = data;
    let mut largest = 0u64;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let Some(frame) = rest.get(4..4 + len) else {
            break;
        };
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(frame) {
            if size <= MAX_CHUNK_BYTES {
                largest = largest.max(size);
            }
        }
        rest = &rest[4 + len..];
    }
    largest as usize
}

/// `MAX_CHUNK_BYTES` of the reader (not exported): the most it reserves for one chunk.
const MAX_CHUNK_BYTES: u64 = 1 << 30;

fn checked(data: &[u8]) {
    let (_, peak) = peak_of(|| check_events(data));
    // A chunk's declared size is reserved up front (address space, not touched beyond
    // what the frame really holds); beyond that, little.
    let bound = MEMORY_BOUND + largest_declared_chunk(data);
    assert!(
        peak <= bound,
        "{peak} bytes allocated for a {}-byte input",
        data.len()
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn events_round_trip(events in prop::collection::vec(event(), 0..12), flush_after in prop::collection::vec(any::<Index>(), 0..3)) {
        // What the writer wrote reads back unchanged up to the first event the recorder
        // cannot have written, which is refused.
        let data = write_stream(&events, &flush_after);
        let (read, error, truncated) = read_all(&data);
        prop_assert!(!truncated);
        let valid = events
            .iter()
            .enumerate()
            .take_while(|(i, ev)| recorder::trace::validate::event(*i as u64, ev).is_ok())
            .count();
        prop_assert_eq!(error, valid < events.len());
        prop_assert_eq!(&read[..], &events[..valid]);
        checked(&data);
    }

    #[test]
    fn random_event_files(data in bytes(1024)) {
        checked(&data);
    }

    #[test]
    fn random_chunks(records in prop::collection::vec(bytes(64), 0..4), raw in bytes(256)) {
        // Valid zstd chunks of random records, then random bytes.
        let mut data = Vec::new();
        for r in records {
            let frame = zstd::bulk::compress(&r, 1).unwrap();
            data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            data.extend_from_slice(&frame);
        }
        data.extend_from_slice(&raw);
        checked(&data);
    }

    #[test]
    fn damaged_event_files(events in prop::collection::vec(event(), 1..12), flush_after in prop::collection::vec(any::<Index>(), 0..3), muts in mutations()) {
        let data = write_stream(&events, &flush_after);
        checked(&apply(&data, &muts));
    }

    #[test]
    fn damaged_records(events in prop::collection::vec(event(), 1..12), flush_after in prop::collection::vec(any::<Index>(), 0..3), which in any::<Index>(), muts in mutations()) {
        // The damage inside a chunk's records, recompressed: the record framing and the
        // postcard decoder see it.
        let data = write_stream(&events, &flush_after);
        let mut frames = chunks(&data);
        let k = which.index(frames.len());
        let records = zstd::stream::decode_all(&frames[k][..]).unwrap();
        frames[k] = zstd::bulk::compress(&apply(&records, &muts), 1).unwrap();
        let mut damaged = Vec::new();
        for f in frames {
            damaged.extend_from_slice(&(f.len() as u32).to_le_bytes());
            damaged.extend_from_slice(&f);
        }
        checked(&damaged);
    }
}

/// A header as the recorder writes it.
fn valid_header() -> serde_json::Value {
    serde_json::json!({
        "format_version": 2, "tool_version": "0.1.0", "argv": ["./prog", "arg"],
        "cwd": "/tmp", "env": [["PATH", "/usr/bin"]], "removed_env": ["GITHUB_TOKEN"],
        "exe": "/tmp/prog", "hostname": "h", "kernel": "6.1.0", "cpu_model": "cpu",
        "seed": 123, "aslr_disabled": true, "cpuid_faulting": false, "cpu_set": [0, 1],
        "pinned_cpu": 0, "untraced": [10, 13], "started_unix_ms": 1764000000000u64
    })
}

fn valid_result() -> serde_json::Value {
    serde_json::json!({
        "outcome": "exited", "exit_code": 101, "signal": null, "status": 101,
        "events": 1234, "cpuid_leaves": [[0, 0, 13, 1, 2, 3]], "tick_requests": 0,
        "lookups_answered": 0, "message": null
    })
}

/// A JSON value to put where a field was.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(1.5)),
        Just(Value::from("x")),
        Just(Value::Array(vec![])),
        Just(serde_json::json!([u64::MAX, -1, "x"])),
        Just(serde_json::json!({"a": 1})),
        Just(Value::from("interrupted")),
        // creat and pwrite64, the case: calls with effects, never untraced.
        Just(serde_json::json!([85, 18])),
        Just(serde_json::json!([13, 14, 0, 1, 59, 2])),
        prop::collection::vec(0u64..460, 0..6).prop_map(|v| serde_json::json!(v)),
    ]
}

/// Replaces or removes the field at `i` of a JSON object.
fn edit_object(v: &mut serde_json::Value, i: &Index, new: Option<serde_json::Value>) {
    let obj = v.as_object_mut().unwrap();
    let key = obj.keys().nth(i.index(obj.len())).unwrap().clone();
    match new {
        Some(x) => {
            obj.insert(key, x);
        }
        None => {
            obj.remove(&key);
        }
    }
}

const VERSIONS: &[&[u8]] = &[
    b"chaos-trace 1\n",
    b"chaos-trace 2",
    b"chaos-trace 2\nx",
    b"chaos-trace 20\n",
    b"\xff",
];

#[test]
fn valid_metadata_reads() {
    let h = serde_json::to_vec(&valid_header()).unwrap();
    let r = serde_json::to_vec(&valid_result()).unwrap();
    let read = check_trace_meta(b"chaos-trace 2\n", Some(&h), Some(&r));
    assert!(
        read.opened && read.header && read.result && read.untraced,
        "{read:?}"
    );
    // The case: creat and pwrite64 added to the calls that run natively.
    let mut widened = valid_header();
    widened["untraced"] = serde_json::json!([13, 85, 18]);
    let widened = serde_json::to_vec(&widened).unwrap();
    let read = check_trace_meta(b"chaos-trace 2\n", Some(&widened), Some(&r));
    assert!(read.header && !read.untraced, "{read:?}");
    assert!(check_trace_meta(b"chaos-trace 3\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 4\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 5\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 6\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 7\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 8\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 9\n", Some(&h), Some(&r)).opened);
    assert!(check_trace_meta(b"chaos-trace 10\n", Some(&h), Some(&r)).opened);
    let next = format!("chaos-trace {}\n", recorder::trace::FORMAT_VERSION + 1);
    assert!(!check_trace_meta(next.as_bytes(), Some(&h), Some(&r)).opened);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_metadata(version in bytes(32), header in prop::option::of(bytes(512)), result in prop::option::of(bytes(256))) {
        let read = check_trace_meta(&version, header.as_deref(), result.as_deref());
        // Random bytes are no header (version lines are only two, and a header needs
        // its fields).
        prop_assert!(!read.header);
    }

    #[test]
    fn edited_metadata(
        version in prop::sample::select(VERSIONS),
        header_edits in prop::collection::vec((any::<Index>(), prop::option::of(json_value())), 0..3),
        result_edits in prop::collection::vec((any::<Index>(), prop::option::of(json_value())), 0..3),
        header_muts in prop::collection::vec(mutation(), 0..2),
        result_muts in prop::collection::vec(mutation(), 0..2),
    ) {
        let mut h = valid_header();
        for (i, v) in &header_edits {
            edit_object(&mut h, i, v.clone());
        }
        let mut r = valid_result();
        for (i, v) in &result_edits {
            edit_object(&mut r, i, v.clone());
        }
        let h = serde_json::to_vec_pretty(&h).unwrap();
        let r = serde_json::to_vec_pretty(&r).unwrap();
        let h = if header_muts.is_empty() { h } else { apply(&h, &header_muts) };
        let r = if result_muts.is_empty() { r } else { apply(&r, &result_muts) };
        check_trace_meta(version, Some(&h), Some(&r));
        check_trace_meta(version, Some(&h), None);
    }
}

#[test]
fn reading_a_directory_as_events_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let read = read_events_file(dir.path());
    assert!(read.error || read.truncated, "{read:?}");
}

#[test]
fn the_allocation_counter_sees_allocations() {
    let (v, peak) = peak_of(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20, "{peak}");
    drop(v);
}

/// A zstd frame of `blocks` RLE blocks of 128 KiB of `byte`, declaring `declared` as its
/// content size (or no size): a few bytes that expand to `blocks` × 128 KiB.
fn rle_frame(declared: Option<u64>, blocks: usize, byte: u8) -> Vec<u8> {
    let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec();
    match declared {
        // Frame_Content_Size on 8 bytes, a window descriptor (2^17).
        Some(n) => {
            f.extend_from_slice(&[0xC0, 0x38]);
            f.extend_from_slice(&n.to_le_bytes());
        }
        None => f.extend_from_slice(&[0x00, 0x38]),
    }
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | ((128 << 10) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(byte);
    }
    f
}

fn chunk(frame: &[u8]) -> Vec<u8> {
    [&(frame.len() as u32).to_le_bytes()[..], frame].concat()
}

/// The decompression bombs (a chunk that expands without bound; one that asks
/// for 8 GiB at once) are refused with little memory.
#[test]
fn decompression_bombs_are_refused() {
    for (declared, blocks) in [
        (None, 64),
        (Some(8u64 << 30), 64),
        (Some(u64::MAX - 1), 1),
        (Some(128 << 10), 64),
        (Some(1 << 20), 1),
    ] {
        let data = chunk(&rle_frame(declared, blocks, 0));
        let (read, peak) = peak_of(|| check_events(&data));
        assert!(read.error || read.truncated, "{declared:?}: {read:?}");
        assert_eq!(read.events, 0);
        assert!(peak <= 4 << 20, "{declared:?}: {peak} bytes");
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Chunks that expand far beyond their size, declaring the truth, less, more or
    /// nothing: memory stays within what the reader may reserve.
    #[test]
    fn expanding_chunks(
        blocks in 1usize..48,
        declared in prop_oneof![
            Just(None),
            (0u64..16 << 20).prop_map(Some),
            Just(Some(u64::MAX)),
            Just(Some(2u64 << 30)),
        ],
        honest in any::<bool>(),
        byte in any::<u8>(),
        count in 1usize..4,
    ) {
        let size = (blocks as u64) << 17;
        let declared = if honest { Some(size) } else { declared };
        let data: Vec<u8> = (0..count).flat_map(|_| chunk(&rle_frame(declared, blocks, byte))).collect();
        let read = {
            let (read, peak) = peak_of(|| check_events(&data));
            prop_assert!(peak <= MEMORY_BOUND + largest_declared_chunk(&data), "{peak}");
            read
        };
        // A byte repeated is no event (a zero length, or a record longer than the chunk).
        prop_assert!(read.error || read.truncated);
    }
}

#[test]
fn rle_frames_are_valid_zstd() {
    let out = zstd::stream::decode_all(&rle_frame(Some(256 << 10), 2, 7)[..]).unwrap();
    assert_eq!(out, vec![7u8; 256 << 10]);
    let out = zstd::stream::decode_all(&rle_frame(None, 3, 1)[..]).unwrap();
    assert_eq!(out.len(), 384 << 10);
}
