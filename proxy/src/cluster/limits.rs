//! Circuit breakers: counters that refuse work above a limit and count the overflow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One limited resource (connections, requests, retries…).
#[derive(Debug)]
pub struct Gauge {
    current: AtomicU64,
    max: u64,
}

impl Gauge {
    /// A gauge that admits up to `max` at once.
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(Gauge { current: AtomicU64::new(0), max })
    }

    /// Takes one unit, or `None` when at the limit (the caller counts the overflow).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut cur = self.current.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self.current.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Permit(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Units in use.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], released on drop.
#[derive(Debug)]
pub struct Permit(Arc<Gauge>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_above_max_and_releases_on_drop() {
        let g = Gauge::new(2);
        let a = g.try_acquire().unwrap();
        let _b = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_none());
        drop(a);
        assert!(g.try_acquire().is_some());
    }
}
