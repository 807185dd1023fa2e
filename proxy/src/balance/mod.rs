//! Host selection inside a cluster: pure functions over an immutable host list.
//!
//! Weighted round robin walks the cumulative weights with a golden-ratio stride driven by an
//! atomic cursor (O(hosts) to build, O(log hosts) per pick, lock-free, exact shares per
//! cycle); least request is power-of-N-choices over live active-request
//! counts; random is weighted by cumulative weight. Priority load and locality weights (Envoy's
//! arithmetic) are their own module, built on these.

pub mod ewma;
pub mod hashing;
pub mod locality;
pub mod priority;
mod schedule;
pub mod zone;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

pub use schedule::Stride;

use crate::config::LbPolicy;

/// What a picker reads of an endpoint. The balancers know nothing else about hosts (the
/// cluster's `Host` implements it), so they are a leaf: pure decisions over weights, live
/// request counts and latency costs, with the randomness passed in.
pub trait Endpoint {
    /// Load-balancing weight (0 counts as 1).
    fn weight(&self) -> u32;
    /// Requests in flight now (least request).
    fn active_requests(&self) -> u64;
    /// Peak-EWMA cost of one more request (Linkerd's P2C); lower is better.
    fn latency_cost(&self) -> f64;
}

/// A ready-to-use selector over one host list (rebuilt when the list changes).
#[derive(Debug)]
pub struct Picker<H> {
    hosts: Vec<Arc<H>>,
    policy: LbPolicy,
    choice_count: u32,
    /// The weighted round-robin walk; `None` when all weights are equal (plain rotation) or
    /// the policy is not round robin.
    stride: Option<Stride>,
    /// Weights differ (least request then picks by dynamic weight).
    weighted: bool,
    /// Prefix sums of weights (random).
    cumulative: Vec<u64>,
    cursor: AtomicUsize,
}

impl<H: Endpoint> Picker<H> {
    /// Builds a picker; the round-robin cursor starts at a random offset (drawn from `rng`) so
    /// that many proxies do not all hit the first host together (as Envoy does).
    pub fn new<R: Rng + ?Sized>(hosts: Vec<Arc<H>>, policy: LbPolicy, choice_count: u32, rng: &mut R) -> Self {
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight().max(1)).collect();
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let mut acc = 0u64;
        let cumulative: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += u64::from(*w);
                acc
            })
            .collect();
        let round_robin = matches!(policy, LbPolicy::RoundRobin | LbPolicy::ClusterProvided);
        let stride = (round_robin && !equal).then(|| Stride::new(acc));
        let start = if hosts.is_empty() { 0 } else { rng.random_range(0..hosts.len().max(1)) };
        Picker {
            hosts,
            policy,
            choice_count: choice_count.max(2),
            stride,
            weighted: !equal,
            cumulative,
            cursor: AtomicUsize::new(start),
        }
    }

    /// The hosts this picker chooses from.
    pub fn hosts(&self) -> &[Arc<H>] {
        &self.hosts
    }

    /// Picks a host, avoiding those for which `avoid` returns true when possible (retry
    /// `previous_hosts`): up to `attempts` picks are tried, then the last pick is used.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R, avoid: &dyn Fn(&H) -> bool, attempts: u32) -> Option<Arc<H>> {
        let mut last = None;
        for _ in 0..attempts.max(1) {
            let h = self.pick_once(rng)?;
            if !avoid(&h) {
                return Some(h);
            }
            last = Some(h);
        }
        last
    }

    fn pick_once<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Arc<H>> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        let idx = match self.policy {
            LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
                let c = self.cursor.fetch_add(1, Ordering::Relaxed);
                match &self.stride {
                    None => c % n,
                    Some(s) => {
                        let pos = s.position(c as u64);
                        self.cumulative.partition_point(|x| *x <= pos)
                    }
                }
            }
            // Hash policies pick through `HostSet`; without a hash they behave like random.
            LbPolicy::Random | LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => self.weighted_random(rng),
            LbPolicy::LeastRequest => self.least_request(rng),
            LbPolicy::PeakEwma => self.peak_ewma(rng),
        };
        self.hosts.get(idx).cloned()
    }

    fn weighted_random<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let r = rng.random_range(0..total);
        self.cumulative.partition_point(|c| *c <= r)
    }

    /// Envoy's least request: with equal weights, N random choices (with replacement) and the
    /// fewest active requests wins (first sampled on ties); with unequal weights, a pick in
    /// proportion to the dynamic weight `weight / (active + 1)` (active-request bias 1.0) —
    /// the long-run share of Envoy's EDF over those weights.
    fn least_request<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let n = self.hosts.len();
        if self.weighted {
            let scores: Vec<f64> = (0..n).map(|i| self.score(i)).collect();
            let total: f64 = scores.iter().sum();
            let mut x = rng.random::<f64>() * total;
            for (i, s) in scores.iter().enumerate() {
                if x < *s {
                    return i;
                }
                x -= s;
            }
            return n - 1;
        }
        let mut best = rng.random_range(0..n);
        for _ in 1..self.choice_count {
            let cand = rng.random_range(0..n);
            if self.score(cand) > self.score(best) {
                best = cand;
            }
        }
        best
    }

    /// Linkerd's P2C over Peak-EWMA cost: two distinct random hosts, the cheaper wins (ties
    /// go to the first).
    fn peak_ewma<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let n = self.hosts.len();
        if n < 2 {
            return 0;
        }
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let cost = |i: usize| self.hosts.get(i).map_or(f64::MAX, |h| h.latency_cost());
        if cost(b) < cost(a) {
            b
        } else {
            a
        }
    }

    fn score(&self, i: usize) -> f64 {
        self.hosts.get(i).map_or(0.0, |h| f64::from(h.weight().max(1)) / (h.active_requests() as f64 + 1.0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    /// A test endpoint: a weight, a settable in-flight count, a latency cost.
    #[derive(Debug)]
    struct Ep {
        weight: u32,
        active: AtomicU64,
        cost: f64,
    }

    impl Endpoint for Ep {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn active_requests(&self) -> u64 {
            self.active.load(Ordering::Relaxed)
        }
        fn latency_cost(&self) -> f64 {
            self.cost
        }
    }

    fn eps(weights: &[u32]) -> Vec<Arc<Ep>> {
        weights.iter().map(|w| Arc::new(Ep { weight: *w, active: AtomicU64::new(0), cost: 1.0 })).collect()
    }

    /// The randomness is an input: the same seed gives the same choices.
    fn rng() -> StdRng {
        StdRng::seed_from_u64(20261204)
    }

    fn counts(p: &Picker<Ep>, n: usize, rng: &mut StdRng) -> Vec<usize> {
        let mut c = vec![0; p.hosts().len()];
        for _ in 0..n {
            let h = p.pick(rng, &|_| false, 1).unwrap();
            c[p.hosts().iter().position(|x| Arc::ptr_eq(x, &h)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_exact_over_a_cycle() {
        let mut r = rng();
        let p = Picker::new(eps(&[1, 1, 1]), LbPolicy::RoundRobin, 2, &mut r);
        assert_eq!(counts(&p, 300, &mut r), vec![100, 100, 100]);
        let p = Picker::new(eps(&[3, 1]), LbPolicy::RoundRobin, 2, &mut r);
        assert_eq!(counts(&p, 400, &mut r), vec![300, 100]);
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let hosts = eps(&[5, 3, 2]);
        let picks = |seed: u64| {
            let mut r = StdRng::seed_from_u64(seed);
            let p = Picker::new(hosts.clone(), LbPolicy::Random, 2, &mut r);
            counts(&p, 50, &mut r)
        };
        assert_eq!(picks(1), picks(1));
        assert_ne!(picks(1), picks(2), "different seeds, different draws");
    }

    #[test]
    fn random_follows_weights() {
        let mut r = rng();
        let p = Picker::new(eps(&[9, 1]), LbPolicy::Random, 2, &mut r);
        let c = counts(&p, 20_000, &mut r);
        assert!((17_000..19_000).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_prefers_idle_hosts() {
        let mut r = rng();
        let hs = eps(&[1, 1]);
        hs[0].active.store(10, Ordering::Relaxed);
        let p = Picker::new(hs, LbPolicy::LeastRequest, 2, &mut r);
        let c = counts(&p, 1000, &mut r);
        // With two hosts, P2C picks the busy one only when both choices land on it (~25%).
        assert!(c[1] > 650, "{c:?}");
    }

    #[test]
    fn scenario_24b_least_request() {
        let mut r = rng();
        // Unequal weights: A (w2, 4 active) has 2/5 = 0.4, B (w1, idle) 1.0 → B ≈ 71 %.
        let hs = eps(&[2, 1]);
        hs[0].active.store(4, Ordering::Relaxed);
        let p = Picker::new(hs, LbPolicy::LeastRequest, 2, &mut r);
        let c = counts(&p, 20_000, &mut r);
        let b = c[1] as f64 / 200.0;
        assert!((b - 71.4).abs() < 2.0, "{b}");
        // Equal weights, P2C: a pair (A: 3 active, B: 1 active) always yields B.
        let hs = eps(&[1, 1]);
        hs[0].active.store(3, Ordering::Relaxed);
        hs[1].active.store(1, Ordering::Relaxed);
        let p = Picker::new(hs, LbPolicy::LeastRequest, 2, &mut r);
        let c = counts(&p, 4000, &mut r);
        assert!((c[1] as f64 / 40.0 - 75.0).abs() < 3.0, "B wins unless both draws are A: {c:?}");
    }

    /// Peak-EWMA P2C: two distinct hosts, so the cheaper of two always wins outright.
    #[test]
    fn peak_ewma_takes_the_cheaper_of_two() {
        let mut r = rng();
        let hs: Vec<Arc<Ep>> =
            [5.0, 1.0].iter().map(|c| Arc::new(Ep { weight: 1, active: AtomicU64::new(0), cost: *c })).collect();
        let p = Picker::new(hs, LbPolicy::PeakEwma, 2, &mut r);
        assert_eq!(counts(&p, 100, &mut r), vec![0, 100]);
    }

    #[test]
    fn avoids_previous_hosts_when_it_can() {
        let mut r = rng();
        let hs = eps(&[1, 1]);
        let first = hs[0].clone();
        let p = Picker::new(hs, LbPolicy::RoundRobin, 2, &mut r);
        for _ in 0..10 {
            let h = p.pick(&mut r, &|h| std::ptr::eq(h, &*first), 3).unwrap();
            assert!(!Arc::ptr_eq(&h, &first));
        }
    }
}
