//! BLAKE3 helpers: hashing readers and writers, and archive names that carry their hash.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Number of hex digits of the archive hash written into archive file names.
///
/// 32 hex digits are 128 bits: enough that two different archives never share a name,
/// short enough to keep file names readable.
pub const NAME_HASH_HEX: usize = 32;

/// Shortest hash prefix accepted in a name when verifying.
pub const MIN_NAME_HASH_HEX: usize = 16;

/// File name suffix of every archive.
pub const ARCHIVE_SUFFIX: &str = ".chaos.tar.zst";

/// Writes through to an inner writer, hashing and counting every byte.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: blake3::Hasher,
    pub(crate) count: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            count: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// BLAKE3 of a whole file, as 64 lowercase hex digits.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether `s` is 64 lowercase hex digits: a BLAKE3 hash as a manifest writes it, and the
/// trace format's rule for a captured file's name ([`recorder::trace::is_file_name`]).
pub fn is_blake3_hex(s: &str) -> bool {
    recorder::trace::is_file_name(s)
}

/// The archive file name for a stem and the archive's full hash:
/// `STEM-<first 32 hex of hash>.chaos.tar.zst`.
pub fn archive_file_name(stem: &str, hash: &str) -> String {
    format!(
        "{stem}-{}{ARCHIVE_SUFFIX}",
        &hash[..NAME_HASH_HEX.min(hash.len())]
    )
}

/// The hash prefix carried by an archive file name, if it has one.
///
/// Accepts `ANYTHING-<16..64 lowercase hex>.chaos.tar.zst`.
pub fn hash_from_file_name(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(ARCHIVE_SUFFIX)?;
    let (_, hex) = stem.rsplit_once('-')?;
    let ok = (MIN_NAME_HASH_HEX..=64).contains(&hex.len())
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(hex)
}

/// The stem of an archive name: everything before `-<hash>.chaos.tar.zst`, or the name
/// without its extension when it carries no hash.
pub fn stem_of_file_name(name: &str) -> &str {
    if hash_from_file_name(name).is_some() {
        let stem = name.strip_suffix(ARCHIVE_SUFFIX).unwrap_or(name);
        return stem.rsplit_once('-').map(|(s, _)| s).unwrap_or(stem);
    }
    name.strip_suffix(ARCHIVE_SUFFIX)
        .or_else(|| name.strip_suffix(".tar.zst"))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_hashes() {
        let h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let name = archive_file_name("my-test", h);
        assert_eq!(
            name,
            "my-test-0123456789abcdef0123456789abcdef.chaos.tar.zst"
        );
        assert_eq!(hash_from_file_name(&name), Some(&h[..32]));
        assert_eq!(stem_of_file_name(&name), "my-test");
        assert_eq!(hash_from_file_name("x-0123.chaos.tar.zst"), None);
        assert_eq!(hash_from_file_name("x.chaos.tar.zst"), None);
        assert_eq!(
            hash_from_file_name("x-0123456789ABCDEF0.chaos.tar.zst"),
            None
        );
        assert_eq!(stem_of_file_name("plain.chaos.tar.zst"), "plain");
    }
}
