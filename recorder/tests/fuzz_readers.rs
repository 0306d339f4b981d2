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
//! The inputs stay small (a few KiB): until the decoder bounds its decompression (issue
//! 11), a crafted chunk can still expand without limit, so such chunks are not generated
//! here.

mod fuzz_checks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
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

fn mem_write() -> impl Strategy<Value = MemWrite> {
    (any::<u64>(), bytes(64)).prop_map(|(addr, data)| MemWrite { addr, data })
}

fn mapping() -> impl Strategy<Value = Mapping> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        any::<bool>(),
        any::<u64>(),
        prop::option::of(text()),
        text(),
    )
        .prop_map(|(start, end, prot, shared, offset, file, name)| Mapping {
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
        prop::collection::vec(any::<u64>(), 0..30),
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
        any::<u64>(),
        any::<[u64; 6]>(),
        any::<i64>(),
        any::<u64>(),
        prop::collection::vec(mem_write(), 0..3),
        prop::option::of(text()),
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
        (
            any::<i32>(),
            prop::collection::vec(any::<u64>(), 0..30),
            any::<[u64; 3]>()
        )
            .prop_map(|(tid, regs, h)| Event::Preempt {
                tid,
                state: Box::new(PreemptState {
                    regs,
                    fpu_hash: h[0],
                    stack_hash: h[1],
                    memory_hash: h[2],
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
        (any::<i32>(), text(), any::<u64>(), bytes(64)).prop_map(|(tid, name, offset, data)| {
            Event::SharedFileWrite {
                tid,
                name,
                offset,
                data,
            }
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

fn read_all(data: &[u8]) -> (Vec<Event>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    std::fs::write(&path, data).unwrap();
    let mut r = recorder::trace::EventReader::open(&path).unwrap();
    let mut out = Vec::new();
    while let Some(ev) = r.next_event().unwrap() {
        out.push(ev);
    }
    (out, r.truncated.is_some())
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

fn checked(data: &[u8]) {
    let (_, peak) = peak_of(|| check_events(data));
    assert!(
        peak <= MEMORY_BOUND,
        "{peak} bytes allocated for a {}-byte input",
        data.len()
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn events_round_trip(events in prop::collection::vec(event(), 0..12), flush_after in prop::collection::vec(any::<Index>(), 0..3)) {
        let data = write_stream(&events, &flush_after);
        let (read, truncated) = read_all(&data);
        prop_assert!(!truncated);
        prop_assert_eq!(read, events);
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
        "pinned_cpu": 0, "untraced": [13, 14], "started_unix_ms": 1764000000000u64
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
    assert!(read.opened && read.header && read.result, "{read:?}");
    assert!(!check_trace_meta(b"chaos-trace 3\n", Some(&h), Some(&r)).opened);
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
