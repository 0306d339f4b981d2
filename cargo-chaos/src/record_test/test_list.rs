//! Which tests a hunt runs: the tests of each binary, listed by libtest once, the
//! binaries that hold a test matching the name filter, and the share of them that
//! `--partition` gives this machine.
//!
//! A name filter sends runs only to the binaries where it matches a test (a binary
//! where it matches nothing would run zero tests and pass, taking a share of the runs);
//! a filter that matches no test in any binary is an error, [`NoTestMatches`], exit code
//! 4 (nextest's `NO_TESTS_RUN`), with or without `--per-test`.
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
use std::sync::Arc;

use super::build::TestBinary;
use super::hunt::Unit;
use super::junit::Hunted;

/// What a hunt runs, decided from one listing of each binary.
#[derive(Debug)]
pub struct Selection {
    /// What each run executes, in rotation; empty when this shard holds no test.
    pub units: Vec<Unit>,
    /// Every test the units run, for the JUnit report; empty when nothing was listed
    /// (no filter, partition, `--per-test` or report asked for one).
    pub hunted: Vec<Hunted>,
    /// Tests listed (matching the filter) before partitioning; `None` if not listed.
    pub listed: Option<usize>,
    /// libtest arguments for every run: the filter and the user's arguments, or only
    /// the user's where the units name their tests exactly.
    pub test_args: Vec<String>,
}

/// How to choose the tests of a hunt.
#[derive(Debug, Clone, Default)]
pub struct Choice<'a> {
    /// The name filter (libtest's substring match), if any.
    pub filter: Option<&'a str>,
    /// libtest arguments after `--`.
    pub test_args: &'a [String],
    /// This machine's shard.
    pub partition: Option<Partition>,
    /// One unit per test.
    pub per_test: bool,
    /// The JUnit report needs the list of tests.
    pub need_list: bool,
}

/// A name filter matched no test in any binary (or the crate has no tests).
#[derive(Debug)]
pub struct NoTestMatches {
    /// The filter, if there was one.
    pub filter: Option<String>,
    /// Test binaries listed.
    pub binaries: usize,
}

impl fmt::Display for NoTestMatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Some(t) => write!(
                f,
                "no test matches `{t}` in the {} test binaries (a substring of the test's \
                 path, as for `cargo test`; list them with `cargo test -- --list`)",
                self.binaries
            ),
            None => write!(f, "the {} test binaries hold no test", self.binaries),
        }
    }
}

impl std::error::Error for NoTestMatches {}

/// Decides what a hunt runs. `list` lists one binary's tests matching the filter (with
/// the listing-relevant user arguments); it is called at most once per binary.
pub fn select(
    binaries: &[Arc<TestBinary>],
    choice: &Choice<'_>,
    mut list: impl FnMut(&TestBinary) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Selection> {
    let mut test_args: Vec<String> = choice.filter.iter().map(|f| f.to_string()).collect();
    test_args.extend(choice.test_args.iter().cloned());
    let needs_listing = choice.filter.is_some()
        || choice.partition.is_some()
        || choice.per_test
        || choice.need_list;
    if !needs_listing {
        let units = binaries
            .iter()
            .map(|b| Unit {
                binary: b.clone(),
                test: None,
                exact: Vec::new(),
            })
            .collect();
        return Ok(Selection {
            units,
            hunted: Vec::new(),
            listed: None,
            test_args,
        });
    }
    // Units name their tests exactly when a shard or a single test is theirs; otherwise
    // the filter goes to libtest as the user wrote it.
    let exact = choice.per_test || choice.partition.is_some();
    let mut units = Vec::new();
    let mut hunted = Vec::new();
    let mut listed = 0;
    for b in binaries {
        let mut tests = list(b)?;
        listed += tests.len();
        if let Some(p) = &choice.partition {
            tests = p.select(&format!("{}/{}", b.package, b.target), &tests);
        }
        if tests.is_empty() {
            continue;
        }
        let label = format!("{}/{}", b.package, b.target);
        hunted.extend(tests.iter().map(|test| Hunted {
            binary: label.clone(),
            test: test.clone(),
        }));
        if choice.per_test {
            units.extend(tests.into_iter().map(|t| Unit {
                binary: b.clone(),
                test: Some(t),
                exact: Vec::new(),
            }));
        } else {
            units.push(Unit {
                binary: b.clone(),
                test: None,
                exact: if exact { tests } else { Vec::new() },
            });
        }
    }
    if listed == 0 {
        return Err(NoTestMatches {
            filter: choice.filter.map(str::to_string),
            binaries: binaries.len(),
        }
        .into());
    }
    if exact {
        test_args = choice.test_args.to_vec();
    }
    Ok(Selection {
        units,
        hunted,
        listed: Some(listed),
        test_args,
    })
}

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

    fn binaries(targets: &[&str]) -> Vec<Arc<TestBinary>> {
        targets
            .iter()
            .map(|t| {
                Arc::new(TestBinary {
                    package: "p".into(),
                    target: t.to_string(),
                    kind: "test".into(),
                    path: format!("/bin/{t}").into(),
                    cwd: "/".into(),
                    env: Vec::new(),
                })
            })
            .collect()
    }

    /// A fake libtest listing: binary `a` holds a_one and a_two, `b` holds b_one, `c`
    /// none; the filter is a substring match, as libtest's.
    fn list(filter: Option<&str>) -> impl FnMut(&TestBinary) -> anyhow::Result<Vec<String>> + '_ {
        let mut seen = Vec::new();
        move |b: &TestBinary| {
            assert!(!seen.contains(&b.target), "{} listed twice", b.target);
            seen.push(b.target.clone());
            let all: &[&str] = match b.target.as_str() {
                "a" => &["a_one", "a_two"],
                "b" => &["b_one"],
                _ => &[],
            };
            Ok(all
                .iter()
                .filter(|t| filter.map_or(true, |f| t.contains(f)))
                .map(|t| t.to_string())
                .collect())
        }
    }

    fn targets(s: &Selection) -> Vec<String> {
        s.units.iter().map(|u| u.label()).collect()
    }

    #[test]
    fn a_filter_runs_only_the_binaries_where_it_matches() {
        let bins = binaries(&["a", "b", "c"]);
        let user = vec!["--nocapture".to_string()];
        let choice = Choice {
            filter: Some("two"),
            test_args: &user,
            ..Choice::default()
        };
        let s = select(&bins, &choice, list(choice.filter)).unwrap();
        assert_eq!(targets(&s), ["p/a"]);
        // The filter still goes to libtest: the unit runs what `cargo test two` would.
        assert_eq!(s.test_args, ["two", "--nocapture"]);
        assert!(s.units[0].exact.is_empty());
        assert_eq!(s.listed, Some(1));
        // With --per-test: one unit per matching test, named exactly.
        let choice = Choice {
            per_test: true,
            filter: Some("one"),
            ..choice
        };
        let s = select(&bins, &choice, list(choice.filter)).unwrap();
        assert_eq!(targets(&s), ["p/a::a_one", "p/b::b_one"]);
        assert_eq!(s.test_args, ["--nocapture"]);
        assert_eq!(s.hunted.len(), 2);
    }

    #[test]
    fn a_filter_that_matches_nothing_is_an_error() {
        let bins = binaries(&["a", "b", "c"]);
        for per_test in [false, true] {
            let choice = Choice {
                filter: Some("nothing"),
                per_test,
                ..Choice::default()
            };
            let e = select(&bins, &choice, list(choice.filter)).unwrap_err();
            let e = e.downcast::<NoTestMatches>().expect("NoTestMatches");
            assert_eq!(e.filter.as_deref(), Some("nothing"));
            assert!(e.to_string().contains("no test matches `nothing`"), "{e}");
        }
    }

    #[test]
    fn without_a_filter_nothing_is_listed() {
        let bins = binaries(&["a", "b", "c"]);
        let s = select(
            &bins,
            &Choice::default(),
            |_| -> anyhow::Result<Vec<String>> { panic!("listed") },
        )
        .unwrap();
        assert_eq!(targets(&s), ["p/a", "p/b", "p/c"]);
        assert_eq!(s.listed, None);
        // A partition lists once, names its tests exactly, and leaves out empty binaries.
        let choice = Choice {
            partition: Some(Partition::Count { shard: 1, total: 2 }),
            ..Choice::default()
        };
        let s = select(&bins, &choice, list(None)).unwrap();
        assert_eq!(targets(&s), ["p/a", "p/b"]);
        assert_eq!(s.units[0].exact, ["a_one"]);
        assert_eq!(s.units[1].exact, ["b_one"]);
    }

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
