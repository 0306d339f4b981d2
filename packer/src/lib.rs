//! Portable archives of recordings, and moving them to and from where CI keeps artifacts.
//!
//! A recording (see `docs/trace-format.md`) is a directory: a header, an event stream,
//! and a copy of every file the program mapped or executed, named by its BLAKE3 hash.
//! It is meant to be replayed on another machine, so it has to travel: this crate turns
//! recordings into **one archive file** and back, checks that the archive is intact and
//! harmless before anything of it lands on disk, tells whether this machine can replay
//! it, and uploads and downloads it.
//!
//! # Getting started
//!
//! ```no_run
//! use std::path::Path;
//! use packer::{pack, unpack, PackOptions, UnpackLimits};
//! use packer::manifest::TestIdentity;
//!
//! // In CI, after a failing run was recorded:
//! let opts = PackOptions::for_test(TestIdentity {
//!     package: Some("my-crate".into()),
//!     binary: Some("integration".into()),
//!     test_name: Some("net::reconnects".into()),
//! });
//! let archive = pack(Path::new("target/chaos/run-17"), Path::new("target/chaos"), &opts, &mut |_| {})?;
//! // archive.path is target/chaos/net_reconnects-<32 hex>.chaos.tar.zst
//!
//! // On a laptop, later:
//! let unpacked = unpack(&archive.path, Path::new("/tmp/replay-me"), &UnpackLimits::default(), &mut |_| {})?;
//! for problem in packer::compat::check(&unpacked.manifest) {
//!     eprintln!("warning: {problem}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why it is built this way
//!
//! - **tar + zstd.** Every system can list and extract it (`tar -I zstd -xf`), zstd
//!   compresses machine code well and fast, and concatenated zstd frames read as one
//!   stream. One recording is written as a frame per captured file (see [`frames`]), so
//!   the frames of libc, ld.so and the test binary can be cached and copied into the next
//!   archive instead of compressed again ([`warm`] fills the cache ahead of time); several
//!   recordings are one solid frame with long-distance matching, where different binaries
//!   share code.
//! - **Content addressing.** Captured files are members `files/<blake3>`: libc, ld.so and
//!   the test binary are stored once however many recordings of an archive use them, and
//!   the name is also the checksum. The archive's own file name carries the archive's
//!   hash (`NAME-<hash>.chaos.tar.zst`), so any copy, download or cache entry can be
//!   verified, and the cache can be keyed by it.
//! - **A manifest first.** `chaos-manifest.json` is the first member: the format version,
//!   what was run and how it ended (with its output), where it was recorded, which CPU
//!   features the program could see, and every member's size and hash. Readers learn what
//!   an archive is (and refuse it) before extracting anything.
//! - **Hostile input.** See [`unpack`](mod@unpack): links, devices, escaping paths,
//!   oversize members, unlisted or altered members are refused, and a refused archive
//!   leaves nothing behind.
//! - **Secrets.** See [`secrets`]: the recorder drops credential-looking variables before
//!   the program starts, and packing refuses to write an archive holding one.
//! - **The library never prints.** Long operations take a progress callback
//!   ([`progress::ProgressEvent`]); the `cargo-chaos` binary renders it.
//!
//! The archive format is specified in `docs/archive-format.md`.

#![deny(missing_docs)]

pub mod cache;
pub mod compat;
pub mod cpu;
pub mod errors;
pub mod frames;
pub mod hash;
pub mod manifest;
mod pack;
pub mod partial;
pub mod progress;
pub mod secrets;
pub mod sysinfo;
mod trace;
pub mod transport;
pub mod unpack;
mod zstd_window;

pub use errors::{CacheError, PackError, TransportError, UnpackError};
pub use frames::FrameStats;
pub use manifest::{Manifest, TestIdentity, TokenFinding};
pub use pack::{
    pack, pack_many, warm, Framing, PackInput, PackOptions, PackedArchive, WarmReport,
    DEFAULT_LEVEL, DEFAULT_OUTPUT_CAP, SINGLE_RUN_LEVEL,
};
pub use progress::{Phase, ProgressEvent};
/// The first line of the `version` file of the traces this crate packs (the recorder's;
/// older ones it still reads: `recorder::trace::READABLE_VERSION_LINES`).
pub use recorder::trace::VERSION_LINE as TRACE_VERSION_LINE;
pub use unpack::{read_manifest, unpack, verify, TraceDir, UnpackLimits, UnpackedArchive};
pub use zstd_window::{LDM_THRESHOLD, MAX_WINDOW_LOG};
