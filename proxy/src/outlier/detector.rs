//! The decision half, pure and clock-free (the caller passes `now` and random draws): the
//! max-ejection gate, enforcement, ejection length with backoff, uneject on interval ticks,
//! backoff decay, and the success-rate / failure-percentage detectors (spec §6.3–6.5).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::{EjectionType, OutlierConfig};

/// Per-host ejection state.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// Currently ejected.
    pub ejected: bool,
    /// Backoff multiplier.
    pub backoff: u32,
    /// When it was last ejected.
    pub last_ejection: Option<Instant>,
    /// When it was last returned.
    pub last_unejection: Option<Instant>,
    /// How long the current ejection lasts.
    pub length: Duration,
    /// Ejections so far.
    pub ejections: u64,
}

/// What an ejection attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Ejected.
    Ejected,
    /// The max-ejection gate refused it (`ejections_overflow`).
    Overflow,
    /// The enforcing percentage said no this time.
    NotEnforced,
    /// Already ejected (or unknown host).
    Ignored,
}

/// One interval's request statistics of a host: (successes, total).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    /// External (HTTP) successes and total.
    pub ext: (u64, u64),
    /// Local-origin successes and total.
    pub local: (u64, u64),
}

/// The detector of one cluster, keyed by host identity `K`.
#[derive(Debug)]
pub struct Detector<K> {
    cfg: OutlierConfig,
    hosts: HashMap<K, HostState>,
    slow_streak: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> Detector<K> {
    /// A detector with no hosts.
    pub fn new(cfg: OutlierConfig) -> Self {
        Detector { cfg, hosts: HashMap::new(), slow_streak: HashMap::new() }
    }

    /// Makes the host set `keys` (new hosts start clean; removed ones are forgotten).
    pub fn sync(&mut self, keys: impl IntoIterator<Item = K>) {
        let keys: Vec<K> = keys.into_iter().collect();
        self.hosts.retain(|k, _| keys.contains(k));
        self.slow_streak.retain(|k, _| keys.contains(k));
        for k in keys {
            self.hosts.entry(k).or_default();
        }
    }

    /// The state of a host.
    pub fn state(&self, k: &K) -> Option<&HostState> {
        self.hosts.get(k)
    }

    /// Hosts ejected now.
    pub fn active(&self) -> usize {
        self.hosts.values().filter(|h| h.ejected).count()
    }

    /// Tries to eject `k`. `roll` is a uniform draw in 0..100 for enforcement; `jitter` the
    /// random extra length (already within `max_ejection_time_jitter`).
    pub fn try_eject(&mut self, k: &K, kind: EjectionType, now: Instant, roll: u32, jitter: Duration) -> Attempt {
        let total = self.hosts.len();
        let active = self.active();
        let cfg = &self.cfg;
        let Some(h) = self.hosts.get_mut(k) else { return Attempt::Ignored };
        if h.ejected {
            return Attempt::Ignored;
        }
        let pct = 100.0 * (active + 1) as f64 / total.max(1) as f64;
        let allowed = pct <= f64::from(cfg.max_ejection_percent) || (cfg.always_eject_one_host && active == 0);
        if !allowed {
            return Attempt::Overflow;
        }
        if roll >= kind.enforcing(cfg) {
            return Attempt::NotEnforced;
        }
        h.ejected = true;
        h.ejections += 1;
        h.last_ejection = Some(now);
        if cfg.base_ejection_time * h.backoff < cfg.max_ejection_time + cfg.base_ejection_time {
            h.backoff += 1;
        }
        h.length = (cfg.base_ejection_time * h.backoff).min(cfg.max_ejection_time) + jitter;
        Attempt::Ejected
    }

    /// Latency outliers: hosts whose estimate (ms) stayed above `factor ×` the median of the
    /// non-ejected hosts for `intervals` ticks in a row. Call once per interval.
    pub fn latency_candidates(&mut self, estimates: &HashMap<K, f64>) -> Vec<K> {
        let Some(l) = self.cfg.latency else { return Vec::new() };
        let mut live: Vec<(K, f64)> = estimates
            .iter()
            .filter(|(k, _)| self.hosts.get(*k).is_some_and(|h| !h.ejected))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if live.len() < l.min_hosts as usize {
            return Vec::new();
        }
        let mut sorted: Vec<f64> = live.iter().map(|(_, v)| *v).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let mut out = Vec::new();
        for (k, v) in live.drain(..) {
            let streak = self.slow_streak.entry(k.clone()).or_insert(0);
            if median > 0.0 && v > l.factor * median {
                *streak += 1;
                if *streak >= l.intervals {
                    *streak = 0;
                    out.push(k);
                }
            } else {
                *streak = 0;
            }
        }
        out
    }

    /// Returns a host at once (a passing active health check).
    pub fn uneject(&mut self, k: &K, now: Instant) -> bool {
        match self.hosts.get_mut(k) {
            Some(h) if h.ejected => {
                h.ejected = false;
                h.last_unejection = Some(now);
                true
            }
            _ => false,
        }
    }

    /// One interval tick: unejects hosts whose time is up, decays backoff of hosts healthy
    /// for a whole interval, then runs the statistical detectors over `buckets` and returns
    /// the returned hosts and the ejection candidates (to pass to [`Detector::try_eject`]).
    pub fn tick(&mut self, now: Instant, buckets: &HashMap<K, Bucket>) -> (Vec<K>, Vec<(K, EjectionType)>) {
        let mut returned = Vec::new();
        for (k, h) in self.hosts.iter_mut() {
            if h.ejected && h.last_ejection.is_some_and(|t| now.saturating_duration_since(t) >= h.length) {
                h.ejected = false;
                h.last_unejection = Some(now);
                returned.push(k.clone());
            } else if !h.ejected
                && h.backoff > 0
                && h.last_unejection.is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.interval)
            {
                h.backoff -= 1;
            }
        }
        let mut candidates = Vec::new();
        let min_hosts = self.cfg.success_rate_minimum_hosts.min(self.cfg.failure_percentage_minimum_hosts) as usize;
        if self.hosts.len() >= min_hosts {
            for local in [false, true] {
                let rates: Vec<(K, f64, u64)> = self
                    .hosts
                    .iter()
                    .filter(|(_, h)| !h.ejected)
                    .filter_map(|(k, _)| {
                        let b = buckets.get(k)?;
                        let (ok, total) = if local { b.local } else { b.ext };
                        (total > 0).then(|| (k.clone(), 100.0 * ok as f64 / total as f64, total))
                    })
                    .collect();
                let (sr_kind, fp_kind) = if local {
                    (EjectionType::SuccessRateLocalOrigin, EjectionType::FailurePercentageLocalOrigin)
                } else {
                    (EjectionType::SuccessRate, EjectionType::FailurePercentage)
                };
                for k in success_rate_outliers(&self.cfg, &rates) {
                    candidates.push((k, sr_kind));
                }
                for k in failure_percentage_outliers(&self.cfg, &rates) {
                    candidates.push((k, fp_kind));
                }
            }
        }
        (returned, candidates)
    }
}

fn success_rate_outliers<K: Clone>(cfg: &OutlierConfig, rates: &[(K, f64, u64)]) -> Vec<K> {
    let valid: Vec<&(K, f64, u64)> =
        rates.iter().filter(|r| r.2 >= u64::from(cfg.success_rate_request_volume)).collect();
    if valid.len() < cfg.success_rate_minimum_hosts as usize || valid.is_empty() {
        return Vec::new();
    }
    let n = valid.len() as f64;
    let mean = valid.iter().map(|r| r.1).sum::<f64>() / n;
    let stdev = (valid.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let threshold = mean - f64::from(cfg.success_rate_stdev_factor) / 1000.0 * stdev;
    valid.iter().filter(|r| r.1 < threshold).map(|r| r.0.clone()).collect()
}

fn failure_percentage_outliers<K: Clone>(cfg: &OutlierConfig, rates: &[(K, f64, u64)]) -> Vec<K> {
    let valid: Vec<&(K, f64, u64)> =
        rates.iter().filter(|r| r.2 >= u64::from(cfg.failure_percentage_request_volume)).collect();
    if valid.len() < cfg.failure_percentage_minimum_hosts as usize {
        return Vec::new();
    }
    valid.iter().filter(|r| 100.0 - r.1 >= f64::from(cfg.failure_percentage_threshold)).map(|r| r.0.clone()).collect()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // pure decisions take the time as input: any instant will do
mod tests {
    use super::*;

    fn detector(hosts: usize, cfg: OutlierConfig) -> Detector<usize> {
        let mut d = Detector::new(cfg);
        d.sync(0..hosts);
        d
    }

    #[test]
    fn latency_outlier_needs_consecutive_slow_intervals() {
        let cfg = OutlierConfig {
            latency: Some(crate::outlier::LatencyOutlier { factor: 3.0, intervals: 2, min_hosts: 3 }),
            ..OutlierConfig::default()
        };
        let mut d = detector(3, cfg);
        let est: HashMap<usize, f64> = [(0, 200.0), (1, 1.0), (2, 1.2)].into_iter().collect();
        assert!(d.latency_candidates(&est).is_empty(), "one slow interval is not enough");
        assert_eq!(d.latency_candidates(&est), [0]);
        let calm: HashMap<usize, f64> = [(0, 1.5), (1, 1.0), (2, 1.2)].into_iter().collect();
        assert!(d.latency_candidates(&calm).is_empty());
        let few: HashMap<usize, f64> = [(0, 200.0), (1, 1.0)].into_iter().collect();
        assert!(d.latency_candidates(&few).is_empty() && d.latency_candidates(&few).is_empty(), "below min_hosts");
    }

    #[test]
    fn scenario_11_max_ejection_percent_gate() {
        let t = Instant::now();
        let mut d = detector(4, OutlierConfig::default());
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Overflow);
        let mut d = detector(4, OutlierConfig { always_eject_one_host: true, ..OutlierConfig::default() });
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Ejected);
        assert_eq!(d.try_eject(&1, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Overflow);
        let mut d = detector(10, OutlierConfig::default());
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Ejected);
        assert_eq!(d.try_eject(&1, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Overflow);
        let mut d = detector(12, OutlierConfig { max_ejection_percent: 50, ..OutlierConfig::default() });
        for i in 0..6 {
            assert_eq!(d.try_eject(&i, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Ejected, "{i}");
        }
        assert_eq!(d.try_eject(&6, EjectionType::Consecutive5xx, t, 0, Duration::ZERO), Attempt::Overflow);
    }

    #[test]
    fn enforcing_is_a_probability() {
        let t = Instant::now();
        let mut d = detector(10, OutlierConfig::default());
        assert_eq!(
            d.try_eject(&0, EjectionType::ConsecutiveGatewayFailure, t, 0, Duration::ZERO),
            Attempt::NotEnforced,
            "default 0%"
        );
        let mut d = detector(10, OutlierConfig { enforcing_consecutive_5xx: 30, ..OutlierConfig::default() });
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, t, 30, Duration::ZERO), Attempt::NotEnforced);
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, t, 29, Duration::ZERO), Attempt::Ejected);
    }

    /// Ticks every 10 s from `t0 + 10 s` up to `t0 + until`, returning when host 0 came back.
    fn run_ticks(d: &mut Detector<usize>, t0: Instant, from: u64, until: u64) -> Option<u64> {
        let mut s = from;
        while s <= until {
            let (back, _) = d.tick(t0 + Duration::from_secs(s), &HashMap::new());
            if back.contains(&0) {
                return Some(s);
            }
            s += 10;
        }
        None
    }

    #[test]
    fn scenario_12_backoff_timeline() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut d = detector(10, OutlierConfig::default());
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, at(5), 0, Duration::ZERO), Attempt::Ejected);
        assert_eq!(run_ticks(&mut d, t0, 10, 100), Some(40));
        // Re-ejected at 45, before the decay at 50: 60 s → back at 110.
        assert_eq!(d.try_eject(&0, EjectionType::Consecutive5xx, at(45), 0, Duration::ZERO), Attempt::Ejected);
        assert_eq!(d.state(&0).unwrap().length, Duration::from_secs(60));
        assert_eq!(run_ticks(&mut d, t0, 50, 200), Some(110));

        let mut d = detector(10, OutlierConfig::default());
        d.try_eject(&0, EjectionType::Consecutive5xx, at(5), 0, Duration::ZERO);
        assert_eq!(run_ticks(&mut d, t0, 10, 100), Some(40));
        assert_eq!(run_ticks(&mut d, t0, 50, 50), None, "tick at 50 decays the backoff");
        d.try_eject(&0, EjectionType::Consecutive5xx, at(55), 0, Duration::ZERO);
        assert_eq!(d.state(&0).unwrap().length, Duration::from_secs(30));
        assert_eq!(run_ticks(&mut d, t0, 60, 200), Some(90));
    }

    #[test]
    fn back_to_back_relapses_grow_to_the_cap() {
        let t0 = Instant::now();
        let mut d = detector(10, OutlierConfig::default());
        let mut lengths = Vec::new();
        let mut now = t0;
        for _ in 0..12 {
            d.try_eject(&0, EjectionType::Consecutive5xx, now, 0, Duration::ZERO);
            let len = d.state(&0).unwrap().length;
            lengths.push(len.as_secs());
            now += len;
            d.tick(now, &HashMap::new());
        }
        assert_eq!(lengths, [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]);
    }

    #[test]
    fn scenario_15_success_rate() {
        let t = Instant::now();
        let buckets: HashMap<usize, Bucket> = [50u64, 100, 100, 100, 100]
            .iter()
            .enumerate()
            .map(|(i, ok)| (i, Bucket { ext: (*ok, 100), local: (0, 0) }))
            .collect();
        let mut d = detector(5, OutlierConfig::default());
        let (_, c) = d.tick(t, &buckets);
        assert_eq!(c, [(0, EjectionType::SuccessRate)]);
        assert_eq!(d.try_eject(&0, EjectionType::SuccessRate, t, 0, Duration::ZERO), Attempt::Overflow, "20% > 10%");
        let mut d = detector(5, OutlierConfig { max_ejection_percent: 20, ..OutlierConfig::default() });
        assert_eq!(d.try_eject(&0, EjectionType::SuccessRate, t, 0, Duration::ZERO), Attempt::Ejected);
        let mut d = detector(
            5,
            OutlierConfig { max_ejection_percent: 20, enforcing_success_rate: 0, ..OutlierConfig::default() },
        );
        assert_eq!(d.try_eject(&0, EjectionType::SuccessRate, t, 0, Duration::ZERO), Attempt::NotEnforced, "Istio");
    }

    #[test]
    fn failure_percentage_needs_volume_and_hosts() {
        let t = Instant::now();
        let cfg = OutlierConfig { enforcing_failure_percentage: 100, ..OutlierConfig::default() };
        let buckets: HashMap<usize, Bucket> =
            (0..5).map(|i| (i, Bucket { ext: (if i == 0 { 5 } else { 60 }, 60), local: (0, 0) })).collect();
        let mut d = detector(5, cfg);
        let (_, c) = d.tick(t, &buckets);
        assert!(c.contains(&(0, EjectionType::FailurePercentage)), "{c:?}");
        let few: HashMap<usize, Bucket> = buckets
            .into_iter()
            .map(|(k, mut b)| {
                b.ext.1 = 40;
                b.ext.0 = b.ext.0.min(40);
                (k, b)
            })
            .collect();
        let (_, c) = d.tick(t, &few);
        assert!(!c.iter().any(|(_, k)| *k == EjectionType::FailurePercentage), "below request volume");
    }
}
