//! The fuzz targets' harness: what each target does with its input. The properties
//! themselves are the ones the stable test suites check with proptest, included from
//! there so that both check the same thing:
//!
//! - `packer/tests/it/fuzz_checks.rs`: unpacking (no panic, nothing written outside the
//!   destination, nothing left behind on refusal, captured files match their names) and
//!   manifests (round trip, helpers, unpack's validation);
//! - `recorder/tests/fuzz_checks/mod.rs`: the event decoder and `version`,
//!   `header.json`, `result.json`.

#[path = "../../packer/tests/it/fuzz_checks.rs"]
pub mod archive_checks;
#[path = "../../recorder/tests/fuzz_checks/mod.rs"]
pub mod trace_checks;

use std::io::Read;

/// `archive` target: a flags byte, then the archive. Flags: bit 0 names the file with
/// its own hash (so that the final name check passes and the destination is renamed into
/// place); bit 1 says the rest is the uncompressed tar stream, which the harness
/// compresses (so that mutations reach the tar and manifest parsers instead of failing
/// zstd's checksums); otherwise the rest is the `.chaos.tar.zst` itself.
pub fn archive(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 2 != 0 {
        let compressed = zstd::bulk::compress(rest, 1).expect("zstd compresses anything");
        archive_checks::check_unpack(&compressed, flags & 1 != 0);
    } else {
        archive_checks::check_unpack(rest, flags & 1 != 0);
    }
}

/// `manifest` target: the input is `chaos-manifest.json`.
pub fn manifest(data: &[u8]) {
    archive_checks::check_manifest(data);
}

/// The files of a recording's metadata, as a `trace_header` input gives them.
pub struct TraceMeta {
    /// `version`.
    pub version: Vec<u8>,
    /// `header.json`.
    pub header: Vec<u8>,
    /// `result.json`, when present.
    pub result: Option<Vec<u8>>,
}

/// Splits a `trace_header` input: a flags byte, then `version`, `header.json` and
/// `result.json` separated by 0xFF (a byte no JSON text holds). Flags: bit 0 replaces
/// the version part by a valid version line, bit 1 leaves `result.json` out.
pub fn split_trace_meta(data: &[u8]) -> Option<TraceMeta> {
    let (&flags, rest) = data.split_first()?;
    let mut parts = rest.splitn(3, |&b| b == 0xff);
    let version = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default().to_vec();
    let result = parts.next().unwrap_or_default().to_vec();
    let version = if flags & 1 != 0 {
        b"chaos-trace 2\n".to_vec()
    } else {
        version.to_vec()
    };
    let result = (flags & 2 == 0).then_some(result);
    Some(TraceMeta {
        version,
        header,
        result,
    })
}

/// `trace_header` target: the trace's metadata as replay reads it, then as the packer
/// reads it (a trace packed must unpack).
pub fn trace_header(data: &[u8]) {
    let Some(m) = split_trace_meta(data) else {
        return;
    };
    trace_checks::check_trace_meta(&m.version, Some(&m.header), m.result.as_deref());
    archive_checks::check_pack_meta(&m.version, &m.header, m.result.as_deref());
}

/// When set, most bytes one chunk, and the whole input, may decompress to before the
/// `events` target skips the input. It was set while `EventReader` did not bound
/// decompression (every input expanding past it was that one known crash); the decoder
/// now refuses chunks that do not declare their size or declare more than 1 GiB, so the
/// target checks that bound itself. Set it again to hunt for other bugs faster (an input
/// expanding to 1 GiB takes a while).
pub const KNOWN_BOMB_FILTER: Option<(u64, u64)> = None;

/// Whether `data`, read as an event stream, has a chunk that decompresses past the
/// filter's bounds.
pub fn expands_too_much(data: &[u8], per_chunk: u64, total: u64) -> bool {
    let mut rest = data;
    let mut sum = 0u64;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(4..4 + len) else {
            return false;
        };
        rest = &rest[4 + len..];
        let Ok(dec) = zstd::stream::read::Decoder::with_buffer(frame) else {
            return false;
        };
        // Count what comes out before an error too: the reader keeps it all.
        let mut out = Count(0);
        let _ = std::io::copy(&mut dec.take(per_chunk + 1), &mut out);
        let n = out.0;
        sum += n;
        if n > per_chunk || sum > total {
            return true;
        }
    }
    false
}

struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `events` target: the input is a trace's `events` file.
pub fn events(data: &[u8]) {
    if let Some((per_chunk, total)) = KNOWN_BOMB_FILTER {
        if expands_too_much(data, per_chunk, total) {
            return;
        }
    }
    trace_checks::check_events(data);
}
