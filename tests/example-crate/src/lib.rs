//! A crate whose tests fail now and then, each for a different reason: the material
//! `cargo record-test --until-fail` hunts in the README's first command.

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Fails when the wall clock's nanoseconds are a multiple of 3.
    #[test]
    fn wall_clock() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        println!("wall clock nanoseconds: {nanos}");
        assert!(nanos % 3 != 0, "the clock read {nanos} ns, a multiple of 3");
    }

    /// Fails when the HashMap's random seed puts "beta" first.
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
                std::thread::spawn(move || order.lock().unwrap().push(id))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let order = order.lock().unwrap();
        println!("lock order: {order:?}");
        assert_eq!(order[0], 0, "thread {} got the lock first", order[0]);
    }
}
