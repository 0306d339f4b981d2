//! The memory part of a preemption point's state: one digest of all of a process's
//! writable memory, computed at record and compared at replay.
//!
//! **Definition** (trace format 6 and later, [`Definition::LiveStack`]): BLAKE3 over
//! the sequence of (page address, first 16 bytes of the page's BLAKE3) of every non-zero
//! page of every writable mapping, in address order (the recorder's scratch slots, the
//! replay stub, `[vdso]`/`[vvar]` and, at replay, the trampoline pages and the
//! syscall-buffering feed left out), where
//! the bytes of the preempted thread's *dead stack* count as zero (see [`dead_stack`]:
//! from the start of its stack mapping up to `rsp - 128`, below the red zone; by the
//! SysV ABI a signal handler may overwrite them at any time, so the thread cannot depend
//! on them, and they do differ between record and replay: the XSAVEC area of ld.so's
//! lazy-binding trampoline, the kernel's signal frames). A page wholly inside the dead
//! stack is thus left out like a page of zeros, and the page holding `rsp - 128` is
//! hashed with its bytes below that address zeroed. The digest depends only on what the
//! memory holds and on `rsp`, not on how it was computed, so a recording and its replay
//! agree whatever their pages' write histories were. Format 5 used the same digest
//! without the dead stack rule ([`Definition::PageHashes`]). From format 10
//! ([`Definition::AllStacks`]) the dead stacks of the other threads of the address space
//! count as zeros too ([`dead_stacks`]): they differ between record and replay just the
//! same (ld.so's leftovers below the main thread's `rsp` at replay, issue 16), and the
//! other threads stand at the same places at both. Formats 4 and older used
//! [`Definition::Stream`] (BLAKE3 over address and bytes of each non-zero page); replay
//! keeps each trace's own.
//!
//! **Incremental computation.** Where the kernel tracks soft-dirty pages
//! (`CONFIG_MEM_SOFT_DIRTY`: bit 55 of `/proc/PID/pagemap` says the page was written
//! since the last `echo 4 > /proc/PID/clear_refs`, and a new mapping reports all its
//! pages dirty), each process keeps the page hashes of its last digest, and only the
//! pages written since (or not provably unchanged) are read and hashed again. Without
//! soft-dirty tracking (this is probed once), or when `clear_refs` cannot be written,
//! every page is read each time; in both cases a page that is neither present nor
//! swapped out in a private anonymous mapping is known to be zero without reading it.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

use crate::address_space::{read_maps, MapsEntry};
use crate::errors::{Error, Result};
use crate::ptrace::Task;

const PAGE: u64 = 4096;
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_FILE_OR_SHARED: u64 = 1 << 61;
const PAGEMAP_SOFT_DIRTY: u64 = 1 << 55;
/// Pages read from the program at once.
const READ_PAGES: usize = 256;
/// Page map entries read at once.
const PAGEMAP_PIECE: usize = 1 << 16;

static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

/// Which definition of the memory digest a trace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    /// Formats 1 to 4: BLAKE3 over (address, bytes) of every non-zero page.
    Stream,
    /// Format 5: BLAKE3 over (address, page hash) of every non-zero page.
    PageHashes,
    /// Formats 6 to 9: as [`Definition::PageHashes`], with the preempted thread's dead
    /// stack (below `rsp - 128`, see [`dead_stack`]) counted as zeros.
    LiveStack,
    /// Format 10 on: as [`Definition::LiveStack`], with the dead stack of every thread of
    /// the address space counted as zeros (see [`dead_stacks`]).
    AllStacks,
}

impl Definition {
    /// The definition this version records (trace format 10).
    pub const RECORDED: Definition = Definition::AllStacks;

    /// The definition the recorder uses: [`Definition::RECORDED`], or format 6 to 9's
    /// [`Definition::LiveStack`] when `CARGO_CHAOS_RECORD_DIGEST=live-stack` (for the
    /// tests that turn a new trace into one of an older format, to check that replay
    /// keeps the older definition; the trace still says the current format).
    pub fn recorded() -> Self {
        static CHOSEN: OnceLock<Definition> = OnceLock::new();
        *CHOSEN.get_or_init(
            || match std::env::var("CARGO_CHAOS_RECORD_DIGEST").as_deref() {
                Ok("live-stack") => Definition::LiveStack,
                _ => Definition::RECORDED,
            },
        )
    }

    /// The definition a trace of format `version` uses.
    pub fn of_format(version: u32) -> Self {
        match version {
            0..=4 => Definition::Stream,
            5 => Definition::PageHashes,
            6..=9 => Definition::LiveStack,
            _ => Definition::AllStacks,
        }
    }

    /// Whether the preempted thread's dead stack is left out of its stack hash
    /// ([`crate::preempt::stack_hash`]).
    pub fn live_stack_only(self) -> bool {
        matches!(self, Definition::LiveStack | Definition::AllStacks)
    }
}

/// Bytes below the stack pointer the thread may still read (the SysV red zone).
pub const RED_ZONE: u64 = 128;

/// What the digest needs to know of a thread (for [`Definition::LiveStack`] and
/// [`Definition::AllStacks`]): its stack pointer and its thread pointer (`fs_base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preempted {
    /// `rsp`.
    pub rsp: u64,
    /// `fs_base` (glibc and musl put a thread's descriptor at the top of its stack).
    pub fs_base: u64,
}

impl Preempted {
    /// The thread with registers `regs`.
    pub fn of(regs: &crate::ptrace::Regs) -> Self {
        Preempted {
            rsp: regs.rsp,
            fs_base: regs.fs_base,
        }
    }
}

/// The digest of the writable memory of `task`'s process under `definition`, without
/// the mappings inside `skip` (replay's trampoline pages); `thread` is the preempted
/// thread (used by [`Definition::LiveStack`] and [`Definition::AllStacks`]), `others`
/// the other threads of its address space (used by [`Definition::AllStacks`] only).
pub fn digest(
    task: &mut Task,
    skip: Option<(u64, u64)>,
    definition: Definition,
    thread: Preempted,
    others: &[Preempted],
) -> Result<u64> {
    let maps = read_maps(task.tid)?;
    let regions = hashed_regions(&maps, skip);
    match definition {
        Definition::Stream => stream_digest(task, &regions),
        _ => {
            let dead = dead_ranges(&maps, definition, thread, others);
            incremental_digest(task, &regions, &dead)
        }
    }
}

/// The bytes counted as zeros under `definition` (address order, disjoint).
fn dead_ranges(
    maps: &[MapsEntry],
    definition: Definition,
    thread: Preempted,
    others: &[Preempted],
) -> Vec<(u64, u64)> {
    match definition {
        Definition::Stream | Definition::PageHashes => Vec::new(),
        Definition::LiveStack => dead_stack(maps, thread).into_iter().collect(),
        Definition::AllStacks => {
            let mut all = Vec::with_capacity(others.len() + 1);
            all.push(thread);
            all.extend_from_slice(others);
            dead_stacks(maps, &all)
        }
    }
}

/// The dead stack of `thread` in a process with mappings `maps` (address order):
/// `[start, rsp - 128)`, where `start` is the start of the mapping holding `rsp`, when
/// that mapping is known to be the thread's stack and nothing else:
/// - the main thread's `[stack]`;
/// - or a private anonymous writable mapping right above a `PROT_NONE` one (the guard
///   glibc and musl put below a thread's stack) that also holds the thread's `fs_base`
///   (its descriptor and TLS, which both libraries put at the top of its stack).
///
/// `None` otherwise: a stack in a heap block, in a mapping without a guard, or not the
/// thread's own (a coroutine's), where the bytes below `rsp` may be live data of the
/// program; or when `rsp - 128` is not above the mapping's start.
pub fn dead_stack(maps: &[MapsEntry], thread: Preempted) -> Option<(u64, u64)> {
    let rsp = thread.rsp;
    let live_from = rsp.checked_sub(RED_ZONE)?;
    let i = maps.iter().position(|m| m.start <= rsp && rsp < m.end)?;
    let m = &maps[i];
    if m.prot & libc::PROT_WRITE == 0 || m.shared || m.inode != 0 {
        return None;
    }
    let thread_stack = i > 0
        && m.name.is_empty()
        && maps[i - 1].end == m.start
        && maps[i - 1].prot == libc::PROT_NONE
        && (m.start..m.end).contains(&thread.fs_base);
    if !(thread_stack || m.name == "[stack]") || live_from <= m.start {
        return None;
    }
    Some((m.start, live_from))
}

/// The dead stacks of `threads` (every thread of one address space, in any order) in a
/// process with mappings `maps` (address order), for [`Definition::AllStacks`]: in each
/// mapping that holds the stack pointer of one of them and is known to be a stack (as in
/// [`dead_stack`]: the `[stack]`, or a private anonymous writable mapping above a
/// `PROT_NONE` guard that holds the `fs_base` of a thread whose `rsp` is in it), the
/// bytes from its start up to `rsp - 128` of the *lowest* stack pointer in it. A byte is
/// dead only when no thread may read it: a vfork child runs on its parent's stack below
/// the parent's `rsp`, and its live frames stay in.
pub fn dead_stacks(maps: &[MapsEntry], threads: &[Preempted]) -> Vec<(u64, u64)> {
    let mut dead = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let inside: Vec<&Preempted> = threads
            .iter()
            .filter(|t| m.start <= t.rsp && t.rsp < m.end)
            .collect();
        let Some(lowest) = inside.iter().map(|t| t.rsp).min() else {
            continue;
        };
        if m.prot & libc::PROT_WRITE == 0 || m.shared || m.inode != 0 {
            continue;
        }
        let thread_stack = i > 0
            && m.name.is_empty()
            && maps[i - 1].end == m.start
            && maps[i - 1].prot == libc::PROT_NONE
            && inside.iter().any(|t| (m.start..m.end).contains(&t.fs_base));
        if !(thread_stack || m.name == "[stack]") {
            continue;
        }
        match lowest.checked_sub(RED_ZONE) {
            Some(live_from) if live_from > m.start => dead.push((m.start, live_from)),
            _ => {}
        }
    }
    dead
}

/// Which of `addrs` start an 8-byte word that the digest of [`Definition::AllStacks`]
/// covers as it is, in `tid`'s process: inside one writable mapping it hashes, and in
/// no thread's dead stack (`thread` preempted, `others` as for [`digest`]). Such a word
/// is part of the state that makes a point the recorded one, and it is the same at
/// record and at replay whenever that state is; the engine's own mappings and the dead
/// stacks are not.
pub fn covered_words(
    tid: i32,
    thread: Preempted,
    others: &[Preempted],
    addrs: &[u64],
) -> Result<Vec<u64>> {
    let maps = read_maps(tid)?;
    let regions = hashed_regions(&maps, None);
    let dead = dead_ranges(&maps, Definition::AllStacks, thread, others);
    Ok(addrs
        .iter()
        .copied()
        .filter(|&a| {
            let Some(end) = a.checked_add(8) else {
                return false;
            };
            regions.iter().any(|m| m.start <= a && end <= m.end)
                && !dead.iter().any(|&(lo, hi)| a < hi && end > lo)
        })
        .collect())
}

/// Whether tasks `a` and `b` (thread ids) share one address space (`kcmp`; `false`
/// when it cannot tell).
pub fn same_address_space(a: i32, b: i32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp only compares kernel objects of the two tasks.
    unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) == 0 }
}

/// [`digest`] computed from scratch: every page read and hashed, no cache, no page map
/// (what [`digest`] must always equal; for tests).
pub fn digest_from_scratch(
    task: &mut Task,
    skip: Option<(u64, u64)>,
    definition: Definition,
    thread: Preempted,
    others: &[Preempted],
) -> Result<u64> {
    let maps = read_maps(task.tid)?;
    let regions = hashed_regions(&maps, skip);
    if definition == Definition::Stream {
        return stream_digest(task, &regions);
    }
    let dead = dead_ranges(&maps, definition, thread, others);
    let mut pages = Vec::new();
    for m in &regions {
        let mut at = m.start;
        while at < m.end {
            let n = ((m.end - at) / PAGE).min(READ_PAGES as u64) as usize;
            for (i, hash) in read_page_hashes(task, at, n, &dead)?
                .into_iter()
                .enumerate()
            {
                pages.push((at + i as u64 * PAGE, hash));
            }
            at += n as u64 * PAGE;
        }
    }
    Ok(combine(&pages))
}

/// Whether the incremental hash is used: only when `CARGO_CHAOS_SOFT_DIRTY=1` asks for
/// it and this kernel tracks soft-dirty pages (probed once, on a page of our own). Off by
/// default: the machines this was built on have no soft-dirty tracking
/// (`CONFIG_MEM_SOFT_DIRTY` unset), so the incremental path has not run in a test yet,
/// and a thread blocked in the kernel can write a page between the pagemap read and
/// `clear_refs` (see docs/architecture.md).
pub fn soft_dirty_tracked() -> bool {
    static TRACKED: OnceLock<bool> = OnceLock::new();
    *TRACKED.get_or_init(|| {
        if std::env::var_os("CARGO_CHAOS_SOFT_DIRTY").as_deref() != Some(std::ffi::OsStr::new("1"))
        {
            return false;
        }
        // SAFETY: a fresh private anonymous page of our own, unmapped below.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return false;
            }
            std::ptr::write_volatile(p as *mut u8, 1);
            // A new mapping is reported dirty where the kernel tracks soft-dirty.
            let tracked = std::fs::File::open("/proc/self/pagemap")
                .and_then(|f| {
                    let mut e = [0u8; 8];
                    f.read_exact_at(&mut e, p as u64 / PAGE * 8)?;
                    Ok(u64::from_le_bytes(e))
                })
                .is_ok_and(|e| e & PAGEMAP_PRESENT != 0 && e & PAGEMAP_SOFT_DIRTY != 0);
            libc::munmap(p, PAGE as usize);
            tracked
        }
    })
}

/// The mappings the digest covers.
fn hashed_regions(maps: &[MapsEntry], skip: Option<(u64, u64)>) -> Vec<MapsEntry> {
    use crate::record::redirect::{SCRATCH_BASE, SLOTS, SLOT_SIZE};
    maps.iter()
        .filter(|m| {
            let skipped = skip.is_some_and(|(start, end)| m.start >= start && m.end <= end);
            let ours = m.start >= SCRATCH_BASE && m.end <= SCRATCH_BASE + SLOTS * SLOT_SIZE;
            let stub = crate::address_space::overlaps_stub(m.start, m.end);
            let feed = crate::replay::feed::is_feed(m.start, m.end);
            !skipped
                && !ours
                && !stub
                && !feed
                && m.prot & libc::PROT_WRITE != 0
                && !m.name.starts_with("[v")
        })
        .cloned()
        .collect()
}

/// Formats 1 to 4: page by page, skipping pages of zeros (the replayed address space
/// lays out the stack and the heap with other boundaries, and untouched zero pages, but
/// the same addresses hold the same bytes).
fn stream_digest(task: &mut Task, regions: &[MapsEntry]) -> Result<u64> {
    let mut h = blake3::Hasher::new();
    for m in regions {
        let mut at = m.start;
        while at < m.end {
            let n = ((m.end - at) as usize).min(1 << 20);
            let chunk = task.read_mem_partial(at, n)?;
            for (i, page) in chunk.chunks(PAGE as usize).enumerate() {
                if page.iter().any(|&b| b != 0) {
                    h.update(&(at + (i as u64 * PAGE)).to_le_bytes());
                    h.update(page);
                }
            }
            at += n as u64;
        }
    }
    Ok(super::h64(h))
}

/// A page's hash; `None` for a page of zeros (left out of the digest).
type PageHash = Option<[u8; 16]>;

fn page_hash(page: &[u8]) -> PageHash {
    if page == &ZERO_PAGE[..page.len()] {
        return None;
    }
    let mut h = [0u8; 16];
    h.copy_from_slice(&blake3::hash(page).as_bytes()[..16]);
    Some(h)
}

/// Zeroes the bytes of `bytes` (read from `at`) that lie in `dead`.
fn zero_dead(bytes: &mut [u8], at: u64, dead: &[(u64, u64)]) {
    let end = at + bytes.len() as u64;
    for &(lo, hi) in dead {
        if lo < end && hi > at {
            let (from, to) = (lo.max(at) - at, hi.min(end) - at);
            bytes[from as usize..to as usize].fill(0);
        }
    }
}

/// The hashes of the `n` pages from `at`, with the bytes in `dead` counted as zeros; an
/// unreadable page (past the end of its file...) is left out, as a page of zeros is, and
/// does not hide the pages after it.
fn read_page_hashes(
    task: &mut Task,
    at: u64,
    n: usize,
    dead: &[(u64, u64)],
) -> Result<Vec<PageHash>> {
    let mut bytes = task.read_mem_partial(at, n * PAGE as usize)?;
    zero_dead(&mut bytes, at, dead);
    let mut hashes: Vec<PageHash> = bytes.chunks_exact(PAGE as usize).map(page_hash).collect();
    while hashes.len() < n {
        let addr = at + hashes.len() as u64 * PAGE;
        let mut page = task.read_mem_partial(addr, PAGE as usize)?;
        zero_dead(&mut page, addr, dead);
        hashes.push(if page.len() == PAGE as usize {
            page_hash(&page)
        } else {
            None
        });
    }
    Ok(hashes)
}

fn combine(pages: &[(u64, PageHash)]) -> u64 {
    let mut h = blake3::Hasher::new();
    for (addr, hash) in pages {
        if let Some(hash) = hash {
            h.update(&addr.to_le_bytes());
            h.update(hash);
        }
    }
    super::h64(h)
}

/// What a process's last digest saw.
#[derive(Debug, Default)]
struct PageCache {
    /// The process's start time (`/proc/PID/stat`): a new process with a reused pid
    /// gets a new cache.
    started: u64,
    /// Page hashes of the last digest, by address, read after the last successful
    /// `clear_refs` (so a page not dirty since still has this hash).
    pages: Vec<(u64, PageHash)>,
}

fn caches() -> std::sync::MutexGuard<'static, HashMap<i32, PageCache>> {
    static CACHES: OnceLock<Mutex<HashMap<i32, PageCache>>> = OnceLock::new();
    CACHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn tgid_and_start(tid: i32) -> Result<(i32, u64)> {
    let path = format!("/proc/{tid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::TaskGone { pid: tid },
        _ => Error::io(&path, e),
    })?;
    let tgid = crate::kernel::thread_group(tid).unwrap_or(tid);
    // Field 22 (starttime); fields 3 on follow the last ')'.
    let started = text
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((tgid, started))
}

/// Whether processes `a` and `b` share one address space (`kcmp`; unknown counts as
/// shared).
fn same_mm(a: i32, b: i32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp only compares kernel objects of the two processes.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) };
    r != 1 && r != 2
}

/// The digest of `regions` with the bytes in `dead` (dead stacks) counted as zeros.
fn incremental_digest(task: &mut Task, regions: &[MapsEntry], dead: &[(u64, u64)]) -> Result<u64> {
    // Whether the page at `addr` holds dead bytes (its hash depends on a stack pointer:
    // never cached), and whether it is all dead (left out, not read).
    let in_dead = |addr: u64| dead.iter().any(|&(lo, hi)| addr < hi && addr + PAGE > lo);
    let all_dead = |addr: u64| dead.iter().any(|&(lo, hi)| addr >= lo && addr + PAGE <= hi);
    let tracked = soft_dirty_tracked();
    let (tgid, started) = tgid_and_start(task.tid)?;
    let mut old = Vec::new();
    if tracked {
        let mut all = caches();
        if all.get(&tgid).is_some_and(|c| c.started == started) {
            // Clearing this address space's soft-dirty bits would hide writes from the
            // cache of another process sharing it (CLONE_VM without CLONE_THREAD):
            // such caches are dropped, and this one too.
            let sharing: Vec<i32> = all
                .keys()
                .copied()
                .filter(|&other| other != tgid && same_mm(tgid, other))
                .collect();
            old = all.remove(&tgid).map(|c| c.pages).unwrap_or_default();
            if !sharing.is_empty() {
                old.clear();
                for other in sharing {
                    all.remove(&other);
                }
            }
        } else {
            all.remove(&tgid);
        }
    }
    let pagemap_path = format!("/proc/{}/pagemap", task.tid);
    let pagemap = std::fs::File::open(&pagemap_path).ok();
    // Which pages to read, and which are known without reading.
    let mut pages: Vec<(u64, PageHash)> = Vec::new();
    let mut to_read: Vec<usize> = Vec::new();
    let mut old_at = 0usize;
    // (start, pages) pieces of the regions, so that a huge mapping's page map is read
    // a bounded piece at a time.
    let pieces = regions.iter().flat_map(|m| {
        let count = (m.end - m.start) / PAGE;
        (0..count)
            .step_by(PAGEMAP_PIECE)
            .map(move |i| (m, m.start + i * PAGE, (count - i).min(PAGEMAP_PIECE as u64)))
    });
    for (m, start, count) in pieces {
        let count = count as usize;
        let entries = pagemap
            .as_ref()
            .and_then(|f| read_pagemap(f, start, count).ok());
        let private_anon = !m.shared && m.inode == 0;
        for i in 0..count {
            let addr = start + i as u64 * PAGE;
            if all_dead(addr) {
                continue;
            }
            let Some(e) = entries.as_ref().map(|es| es[i]) else {
                to_read.push(pages.len());
                pages.push((addr, None));
                continue;
            };
            let resident = e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0;
            if !resident && private_anon {
                // Never touched, or dropped (MADV_DONTNEED): zero-filled on access.
                continue;
            }
            while old_at < old.len() && old[old_at].0 < addr {
                old_at += 1;
            }
            let unchanged = tracked
                && !in_dead(addr)
                && resident
                && !m.shared
                && e & (PAGEMAP_SOFT_DIRTY | PAGEMAP_FILE_OR_SHARED) == 0
                && old.get(old_at).is_some_and(|(a, _)| *a == addr);
            if unchanged {
                pages.push(old[old_at]);
            } else {
                to_read.push(pages.len());
                pages.push((addr, None));
            }
        }
    }
    drop(old);
    // Clear the bits before reading: a write from now on marks its page again.
    let cleared = tracked
        && std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/clear_refs", task.tid))
            .and_then(|f| f.write_at(b"4", 0))
            .is_ok();
    // Read the pages, in runs of consecutive addresses.
    let mut k = 0;
    while k < to_read.len() {
        let first = to_read[k];
        let mut n = 1;
        while k + n < to_read.len()
            && n < READ_PAGES
            && to_read[k + n] == first + n
            && pages[first + n].0 == pages[first].0 + n as u64 * PAGE
        {
            n += 1;
        }
        for (j, hash) in read_page_hashes(task, pages[first].0, n, dead)?
            .into_iter()
            .enumerate()
        {
            pages[first + j].1 = hash;
        }
        k += n;
    }
    let digest = combine(&pages);
    if cleared {
        pages.retain(|(addr, _)| !in_dead(*addr));
        let mut all = caches();
        if all.len() > 64 {
            // Processes that ended (or whose pid was reused) without a `forget`.
            all.retain(|&pid, c| tgid_and_start(pid).is_ok_and(|(_, s)| s == c.started));
        }
        all.insert(tgid, PageCache { started, pages });
    }
    Ok(digest)
}

fn read_pagemap(f: &std::fs::File, start: u64, count: usize) -> std::io::Result<Vec<u64>> {
    let mut raw = vec![0u8; count * 8];
    f.read_exact_at(&mut raw, start / PAGE * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes")))
        .collect())
}
