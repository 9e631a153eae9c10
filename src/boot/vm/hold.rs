//! Keeping several running VMs up together: each boot that has answered waits at the [`Hold`]
//! until the caller (which measures them side by side) releases them all.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A meeting point for `n` boots running on their own threads.
#[derive(Debug)]
pub struct Hold {
    n: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The QEMU pids of the boots waiting here.
    waiting: Vec<u32>,
    /// Boots that ended (whether they waited here first or not).
    done: usize,
    released: bool,
}

impl Hold {
    pub fn new(n: usize) -> Hold {
        Hold {
            n,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// A boot whose QEMU is `pid` answered: waits until [`Hold::release`] or `deadline`.
    pub fn arrive(&self, pid: u32, deadline: Instant) {
        let mut s = self.lock();
        s.waiting.push(pid);
        self.changed.notify_all();
        while !s.released {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || super::stop::stop_requested() {
                break;
            }
            s = self
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.waiting.retain(|&p| p != pid);
    }

    /// A boot ended: every boot calls this once, whether it reached the hold or not.
    pub fn ended(&self) {
        self.lock().done += 1;
        self.changed.notify_all();
    }

    /// Waits until every boot is waiting here or has ended (at most until `deadline`); returns
    /// the pids of those waiting.
    pub fn wait_all(&self, deadline: Instant) -> Vec<u32> {
        let mut s = self.lock();
        while s.waiting.len() + s.done < self.n && !super::stop::stop_requested() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.waiting.clone()
    }

    /// Lets every waiting boot go on (to stop).
    pub fn release(&self) {
        self.lock().released = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn everyone_waits_until_released() {
        let h = Arc::new(Hold::new(3));
        let far = Instant::now() + Duration::from_secs(30);
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    h.arrive(100 + i, far);
                    h.ended();
                })
            })
            .collect();
        let h2 = h.clone();
        let failed = std::thread::spawn(move || h2.ended());
        let mut pids = h.wait_all(far);
        pids.sort();
        assert_eq!(pids, [100, 101]);
        assert!(threads.iter().all(|t| !t.is_finished()));
        h.release();
        for t in threads {
            t.join().unwrap();
        }
        failed.join().unwrap();
    }

    #[test]
    fn waiting_ends_at_the_deadline() {
        let h = Hold::new(2);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(h.wait_all(soon).is_empty());
        h.arrive(1, soon);
        assert!(h.lock().waiting.is_empty());
    }
}
