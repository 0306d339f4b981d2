//! Sizes given on the command line or in the environment (`8GiB`, `512MiB`, `1.5G`,
//! `1000000`), and the settings made of them: `--max-unpacked-size` and
//! `CHAOS_CACHE_MAX_SIZE`.

use anyhow::Context;
use packer::cache::Cache;
use packer::UnpackLimits;

/// The variable that sets the archive cache's size cap.
pub const CACHE_MAX_SIZE_VAR: &str = "CHAOS_CACHE_MAX_SIZE";

/// Parses a size in bytes: a number with an optional unit (`B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB`, `TB`/`TiB`; case-insensitive, a space allowed). Zero is refused.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let size = t.parse::<bytesize::ByteSize>().map_err(|_| {
        format!("{text:?} is not a size (expected a number of bytes or e.g. 512MiB, 8GiB)")
    })?;
    if size.as_u64() == 0 {
        return Err(format!("{text:?}: the size must be more than zero"));
    }
    Ok(size.as_u64())
}

/// The unpack limits for `--max-unpacked-size`: the defaults when it is not given.
pub fn unpack_limits(max_unpacked_size: Option<u64>) -> UnpackLimits {
    match max_unpacked_size {
        Some(max) => UnpackLimits::with_max_unpacked_size(max),
        None => UnpackLimits::default(),
    }
}

/// The user's archive cache with these unpack limits and the size cap from
/// `CHAOS_CACHE_MAX_SIZE` (10 GiB when unset).
pub fn user_cache(limits: UnpackLimits) -> anyhow::Result<Cache> {
    let mut cache = Cache::user()?;
    cache.limits = limits;
    if let Some(v) = std::env::var_os(CACHE_MAX_SIZE_VAR).filter(|v| !v.is_empty()) {
        let text = v
            .to_str()
            .with_context(|| format!("${CACHE_MAX_SIZE_VAR} is not UTF-8"))?;
        cache.max_bytes = parse(text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("${CACHE_MAX_SIZE_VAR} is malformed"))?;
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes() {
        assert_eq!(parse("8GiB"), Ok(8 << 30));
        assert_eq!(parse("8 gib"), Ok(8 << 30));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("2GB"), Ok(2_000_000_000));
        assert_eq!(parse("1000"), Ok(1000));
        assert!(parse("0").is_err());
        assert!(parse("lots").unwrap_err().contains("not a size"));
        assert!(parse("8 parsecs").is_err());
        assert!(parse("").is_err());
    }
}
