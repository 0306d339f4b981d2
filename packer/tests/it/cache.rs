//! The archive cache stays under its size cap: least recently used entries go first,
//! never the one being opened nor one held in use.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use packer::cache::Cache;
use packer::pack;

use crate::util::*;

/// Packs a synthetic recording (about 2.3 MiB unpacked: libc, ld.so, a binary).
fn archive(dir: &Path, seed: &str) -> (PathBuf, String) {
    let trace = make_trace(&dir.join(format!("trace-{seed}")), &TraceSpec::new(seed));
    let packed = pack(&trace, dir, &fast_options(), &mut quiet()).unwrap();
    (packed.path, packed.hash[..32].to_string())
}

/// Sets an entry's "last used" time to `ago` before now.
fn used_ago(path: &Path, ago: Duration) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

fn size_of(path: &Path) -> u64 {
    let meta = fs::symlink_metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .unwrap()
        .map(|e| size_of(&e.unwrap().path()))
        .sum()
}

#[test]
fn least_recently_used_entries_are_pruned_but_not_ones_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cache = Cache::new(tmp.path().join("cache"));
    let [a, b, c, d] = ["lru-a", "lru-b", "lru-c", "lru-d"].map(|s| archive(tmp.path(), s));
    for (path, _) in [&a, &b, &c] {
        cache.open_archive(path, &mut quiet()).unwrap();
    }
    let traces = cache.traces_dir();
    let entry = |h: &str| traces.join(h);
    let one = size_of(&entry(&a.1));
    assert!(one > 1 << 20, "an entry is {one} bytes");
    // a was used 3 hours ago, b 2 hours ago, c 1 hour ago; another process holds a.
    let held = cache.lookup(&a.1).expect("a is cached");
    assert!(held.in_use());
    used_ago(&entry(&a.1), Duration::from_secs(3 * 3600));
    used_ago(&entry(&b.1), Duration::from_secs(2 * 3600));
    used_ago(&entry(&c.1), Duration::from_secs(3600));

    // Room for two and a half entries: opening d (the fourth) prunes b and c, the oldest
    // not in use; a is held, d is the one being opened.
    cache.max_bytes = one * 5 / 2;
    let opened = cache.open_archive(&d.0, &mut quiet()).unwrap();
    let mut left = dir_names(&traces);
    left.sort();
    let mut want = vec![a.1.clone(), d.1.clone()];
    want.sort();
    assert_eq!(left, want, "b and c should have been pruned");
    assert!(opened.single_trace().unwrap().join("events").is_file());

    // Once a is released it goes first: it is the least recently used.
    drop(held);
    cache.max_bytes = one * 3 / 2;
    let report = cache.prune(&[]);
    assert_eq!(report.removed, vec![entry(&a.1)], "{report:?}");
    assert_eq!(dir_names(&traces), vec![d.1.clone()]);
    assert!(report.after <= cache.max_bytes, "{report:?}");

    // An entry in use is never removed, even alone over the cap.
    cache.max_bytes = 1;
    let report = cache.prune(&[]);
    assert_eq!(report.skipped_in_use, 1, "{report:?}");
    assert_eq!(dir_names(&traces), vec![d.1.clone()]);
    drop(opened);
    let report = cache.prune(&[]);
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert!(dir_names(&traces).is_empty());

    // A pruned archive unpacks again when asked for.
    let again = cache.open_archive(&b.0, &mut quiet()).unwrap();
    assert!(again.single_trace().unwrap().join("events").is_file());
}

#[test]
fn opening_an_entry_marks_it_as_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cache = Cache::new(tmp.path().join("cache"));
    let [a, b] = ["recent-a", "recent-b"].map(|s| archive(tmp.path(), s));
    cache.open_archive(&a.0, &mut quiet()).unwrap();
    cache.open_archive(&b.0, &mut quiet()).unwrap();
    let traces = cache.traces_dir();
    used_ago(&traces.join(&a.1), Duration::from_secs(2 * 3600));
    used_ago(&traces.join(&b.1), Duration::from_secs(3600));
    // Opening a again (a cache hit) makes b the least recently used one.
    drop(cache.open_archive(&a.0, &mut quiet()).unwrap());
    cache.max_bytes = size_of(&traces.join(&a.1)) * 3 / 2;
    let report = cache.prune(&[]);
    assert_eq!(report.removed, vec![traces.join(&b.1)], "{report:?}");
    assert_eq!(dir_names(&traces), vec![a.1.clone()]);
}
