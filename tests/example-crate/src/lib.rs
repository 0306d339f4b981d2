//! A crate whose tests fail now and then, each for a different reason: the material
//! `cargo record-test --until-fail` hunts in the README's first command.
//!
//! Every flaky test prints the nondeterministic value it depends on, so a replay can be
//! checked against the failing run: same value, same panic message. Failure rates under
//! the recorder are measured in `cargo-chaos/tests/record_test/flaky.rs`.
//!
//! Only std: the crate builds offline.

#[cfg(test)]
// `n % 3 != 0` reads as the docs say, and builds with toolchains older than
// `is_multiple_of`.
#[allow(clippy::manual_is_multiple_of)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Never fails: the control for benchmarks and passing hunts.
    #[test]
    fn always_passes() {
        let sum: u64 = (1..=100).sum();
        println!("sum: {sum}");
        assert_eq!(sum, 5050);
    }

    /// Fails when the wall clock's nanoseconds are a multiple of 3 (one run in three).
    #[test]
    fn wall_clock() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        println!("wall clock nanoseconds: {nanos}");
        assert!(nanos % 3 != 0, "the clock read {nanos} ns, a multiple of 3");
    }

    /// Fails when the HashMap's random seed puts "beta" first (one run in two).
    #[test]
    fn hashmap_order() {
        let map: HashMap<&str, u32> = [("alpha", 1), ("beta", 2)].into_iter().collect();
        let keys: Vec<_> = map.keys().copied().collect();
        println!("iteration order: {keys:?}");
        assert_eq!(keys[0], "alpha", "iteration order was {keys:?}");
    }

    /// Fails when the second thread takes the mutex first.
    #[test]
    fn mutex_interleaving() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let order = order.clone();
                std::thread::spawn(move || {
                    // Give the processor away first, as real code does when it logs or
                    // allocates before taking a lock.
                    std::thread::yield_now();
                    order.lock().unwrap().push(id);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let order = order.lock().unwrap();
        println!("lock order: {order:?}");
        assert_eq!(order[0], 0, "thread {} got the lock first", order[0]);
    }

    /// Fails when the second sender's message reaches the channel first.
    #[test]
    fn channel_interleaving() {
        let (tx, rx) = mpsc::channel();
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    // Give the processor away first, as real code does when it logs or
                    // allocates before sending.
                    std::thread::yield_now();
                    tx.send(id).unwrap();
                })
            })
            .collect();
        drop(tx);
        for h in handles {
            h.join().unwrap();
        }
        let received: Vec<u32> = rx.iter().collect();
        println!("received order: {received:?}");
        assert_eq!(
            received[0], 0,
            "sender {} was first, order {received:?}",
            received[0]
        );
    }

    /// One file, shared by `temp_file_race_a` and `temp_file_race_b` (named after the
    /// process, so parallel test processes do not meet each other there). libtest runs
    /// the two tests at once, on two threads: each writes its own tag, gives the
    /// processor away, and expects to read its tag back. Run alone (`--exact`, or
    /// one process per test as nextest does) neither can fail.
    fn shared_file() -> PathBuf {
        std::env::temp_dir().join(format!("flaky-example-{}.txt", std::process::id()))
    }

    fn write_then_read_back(tag: &str) {
        let path = shared_file();
        std::fs::write(&path, tag).unwrap();
        // Between the write and the read another thread may run: the race window.
        std::thread::yield_now();
        // The other test may have removed the file already: that reads as "".
        let read = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        println!("wrote {tag:?} to {}, read back {read:?}", path.display());
        assert_eq!(
            read,
            tag,
            "{} was changed under us: wrote {tag:?}, read back {read:?}",
            path.display()
        );
    }

    /// Races with `temp_file_race_b` on one temp file.
    #[test]
    fn temp_file_race_a() {
        write_then_read_back("written by a");
    }

    /// Races with `temp_file_race_a` on one temp file.
    #[test]
    fn temp_file_race_b() {
        write_then_read_back("written by b");
    }

    /// Fails when the child process reads the clock at a multiple of 3 ns.
    #[test]
    fn child_process() {
        let out = std::process::Command::new("date")
            .arg("+%N")
            .output()
            .expect("running `date`");
        let text = String::from_utf8_lossy(&out.stdout);
        let nanos: u64 = text.trim().parse().expect("`date +%N` prints nanoseconds");
        println!("the child process printed {nanos}");
        assert!(nanos % 3 != 0, "the child read {nanos} ns, a multiple of 3");
    }
}
