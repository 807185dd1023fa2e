//! Peak-EWMA latency estimate per host (linkerd2-proxy's / tower's `PeakEwma`): a sample
//! above the estimate replaces it at once (peak), otherwise it decays towards the sample with
//! time constant τ; reading the cost also decays the estimate towards zero, so an idle host
//! is eventually tried again. Cost = estimate × (in-flight + 1).

use crate::clock::now;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Defaults from linkerd2-proxy: 30 ms for an unmeasured host, τ = 10 s.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// Decay time constant.
pub const DECAY: Duration = Duration::from_secs(10);

/// The estimate and when it was last touched (pure; the caller passes `now`).
#[derive(Debug, Clone, Copy)]
pub struct EwmaState {
    /// Estimate in nanoseconds.
    pub est_ns: f64,
    /// Last update or read.
    pub stamp: Instant,
}

impl EwmaState {
    /// A host with no samples yet.
    pub fn new(now: Instant, default_rtt: Duration) -> Self {
        EwmaState { est_ns: default_rtt.as_nanos() as f64, stamp: now }
    }

    fn decay_weight(&self, now: Instant, tau: Duration) -> f64 {
        let dt = now.saturating_duration_since(self.stamp).as_secs_f64();
        (-dt / tau.as_secs_f64()).exp()
    }

    /// Records a response time.
    pub fn observe(&mut self, now: Instant, rtt: Duration, tau: Duration) {
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.est_ns {
            self.est_ns = rtt;
        } else {
            let w = self.decay_weight(now, tau);
            self.est_ns = self.est_ns * w + rtt * (1.0 - w);
        }
        self.stamp = now;
    }

    /// The load-balancing cost in nanoseconds; decays (and touches) the estimate.
    pub fn cost(&mut self, now: Instant, pending: u64, tau: Duration) -> f64 {
        self.est_ns *= self.decay_weight(now, tau);
        self.stamp = now;
        self.est_ns * (pending as f64 + 1.0)
    }
}

/// A host's estimate behind a small lock (one uncontended lock per pick and per response).
#[derive(Debug)]
pub struct Ewma(Mutex<EwmaState>);

impl Default for Ewma {
    fn default() -> Self {
        Ewma(Mutex::new(EwmaState::new(now(), DEFAULT_RTT)))
    }
}

impl Ewma {
    /// Records a response time.
    pub fn observe(&self, rtt: Duration) {
        if let Ok(mut s) = self.0.lock() {
            s.observe(now(), rtt, DECAY);
        }
    }

    /// The cost for a pick with `pending` requests in flight.
    pub fn cost(&self, pending: u64) -> f64 {
        self.0.lock().map(|mut s| s.cost(now(), pending, DECAY)).unwrap_or(f64::MAX)
    }

    /// The current estimate in milliseconds (admin, latency outliers), without touching it.
    pub fn estimate_ms(&self) -> f64 {
        self.0.lock().map(|s| s.est_ns * s.decay_weight(now(), DECAY) / 1e6).unwrap_or(0.0)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // pure decisions take the time as input: any instant will do
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn scenario_24c_peak_ewma() {
        let t0 = Instant::now();
        let mut fresh = EwmaState::new(t0, DEFAULT_RTT);
        assert!((fresh.cost(t0, 0, DECAY) - 30.0 * MS).abs() < 1.0);
        let mut known = EwmaState { est_ns: 20.0 * MS, stamp: t0 };
        assert!((known.cost(t0, 1, DECAY) - 40.0 * MS).abs() < 1.0, "20 ms with one in flight costs 40 ms");
        let mut idle = EwmaState::new(t0, DEFAULT_RTT);
        let c = idle.cost(t0 + Duration::from_secs(10), 0, DECAY);
        assert!((c / MS - 11.04).abs() < 0.01, "{}", c / MS);
        let mut s = EwmaState { est_ns: 20.0 * MS, stamp: t0 };
        s.observe(t0, Duration::from_millis(100), DECAY);
        assert!((s.est_ns / MS - 100.0).abs() < 1e-6, "peak");
        s.observe(t0 + Duration::from_secs(1), Duration::from_millis(20), DECAY);
        assert!((s.est_ns / MS - 92.39).abs() < 0.01, "{}", s.est_ns / MS);
    }
}
