//! Which tests a hunt runs: the tests of each binary, listed by libtest, and the share
//! of them that `--partition` gives this machine.
//!
//! `--partition count:M/N` and `hash:M/N` follow nextest's semantics: shard M of N (1 ≤
//! M ≤ N), applied after the name filter. Counted partitioning goes round-robin over each
//! binary's tests in the order libtest lists them (binary by binary: one binary's tests
//! do not shift another's); hashed partitioning puts a test in shard `hash % N + 1`,
//! where the hash depends only on the package, the binary and the test name, so a
//! test stays in its shard when others are added or removed. The hash is BLAKE3's, not
//! nextest's xxHash64: a given test may fall in a different shard than under
//! `cargo nextest run --partition hash:M/N`. The N shards of either kind together
//! cover every test exactly once.

use std::fmt;
use std::str::FromStr;

/// A `--partition` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `count:M/N`: round-robin within each binary.
    Count {
        /// This shard, from 1.
        shard: u64,
        /// Shards in all.
        total: u64,
    },
    /// `hash:M/N`: by a hash of the test's identity.
    Hash {
        /// This shard, from 1.
        shard: u64,
        /// Shards in all.
        total: u64,
    },
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(text: &str) -> Result<Partition, String> {
        let usage = || format!("`{text}` is not count:M/N or hash:M/N (1 ≤ M ≤ N)");
        let (kind, rest) = text.split_once(':').ok_or_else(usage)?;
        let (m, n) = rest.split_once('/').ok_or_else(usage)?;
        let shard: u64 = m.trim().parse().map_err(|_| usage())?;
        let total: u64 = n.trim().parse().map_err(|_| usage())?;
        if shard == 0 || total == 0 || shard > total {
            return Err(usage());
        }
        match kind.trim() {
            "count" => Ok(Partition::Count { shard, total }),
            "hash" => Ok(Partition::Hash { shard, total }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Count { shard, total } => write!(f, "count:{shard}/{total}"),
            Partition::Hash { shard, total } => write!(f, "hash:{shard}/{total}"),
        }
    }
}

impl Partition {
    /// The tests of one binary (`package/target`, its tests in libtest's order) that
    /// fall in this shard, in the same order.
    pub fn select(&self, binary: &str, tests: &[String]) -> Vec<String> {
        tests
            .iter()
            .enumerate()
            .filter(|(i, t)| match *self {
                Partition::Count { shard, total } => (*i as u64) % total == shard - 1,
                Partition::Hash { shard, total } => test_hash(binary, t) % total == shard - 1,
            })
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// A stable hash of a test's identity (first 8 bytes of BLAKE3, little endian).
fn test_hash(binary: &str, test: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(binary.as_bytes());
    h.update(&[0]);
    h.update(test.as_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nextests_spelling_and_refuses_the_rest() {
        assert_eq!(
            "count:1/2".parse(),
            Ok(Partition::Count { shard: 1, total: 2 })
        );
        assert_eq!(
            "hash:3/3".parse(),
            Ok(Partition::Hash { shard: 3, total: 3 })
        );
        for bad in [
            "count:0/2",
            "count:3/2",
            "hash:1/0",
            "slice:1/2",
            "count:1",
            "1/2",
            "",
        ] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
        assert_eq!(
            Partition::Hash { shard: 2, total: 5 }.to_string(),
            "hash:2/5"
        );
    }

    #[test]
    fn shards_cover_every_test_once() {
        let tests: Vec<String> = (0..50).map(|i| format!("mod_{}::t{i}", i % 7)).collect();
        for total in 1..=5 {
            for kind in ["count", "hash"] {
                let mut all: Vec<String> = (1..=total)
                    .flat_map(|m| {
                        format!("{kind}:{m}/{total}")
                            .parse::<Partition>()
                            .unwrap()
                            .select("pkg/bin", &tests)
                    })
                    .collect();
                all.sort();
                let mut want = tests.clone();
                want.sort();
                assert_eq!(all, want, "{kind} {total}");
            }
        }
        // Counted: round-robin in list order.
        let p: Partition = "count:2/3".parse().unwrap();
        assert_eq!(
            p.select("b", &tests)[..2],
            [tests[1].clone(), tests[4].clone()]
        );
        // Hashed: a test's shard does not depend on the others.
        let p: Partition = "hash:1/2".parse().unwrap();
        let alone: Vec<bool> = tests
            .iter()
            .map(|t| !p.select("pkg/bin", std::slice::from_ref(t)).is_empty())
            .collect();
        let together = p.select("pkg/bin", &tests);
        for (t, inside) in tests.iter().zip(alone) {
            assert_eq!(together.contains(t), inside, "{t}");
        }
    }
}
