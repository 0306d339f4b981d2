//! How far back zstd looks: the window sizes the archive is written with and read with.
//! One home for these, used by the archive writer ([`crate::pack`]), the per-file frames
//! ([`crate::frames`]) and the reader ([`crate::unpack`]).

/// Inputs above this size get long-distance matching and a window covering them
/// (up to [`MAX_WINDOW_LOG`]). Below it the level's own window already spans the input.
pub const LDM_THRESHOLD: u64 = 8 << 20;

/// Largest zstd window written: 128 MiB, the most `zstd -d` accepts without `--long`,
/// so archives stay readable with the stock command-line tool and decompression memory
/// stays bounded. The reader refuses larger ones.
pub const MAX_WINDOW_LOG: u32 = 27;

/// The window (log2 of its size) for `size` bytes of input when it needs long-distance
/// matching: `None` at or below [`LDM_THRESHOLD`], else the smallest window covering the
/// input, from 1 MiB up to [`MAX_WINDOW_LOG`].
pub fn long_window_log(size: u64) -> Option<u32> {
    (size > LDM_THRESHOLD).then(|| (64 - (size - 1).leading_zeros()).clamp(20, MAX_WINDOW_LOG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_input_up_to_the_cap() {
        assert_eq!(long_window_log(LDM_THRESHOLD), None);
        assert_eq!(long_window_log(LDM_THRESHOLD + 1), Some(24));
        assert_eq!(long_window_log(100 << 20), Some(27));
        assert_eq!(long_window_log(1 << 40), Some(MAX_WINDOW_LOG));
    }
}
