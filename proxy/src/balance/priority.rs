//! Envoy's priority load: how much traffic each priority level (and its degraded hosts) gets,
//! and which levels are in panic. Integer arithmetic and the remainder rule exactly as Envoy's
//! `recalculatePerPriorityState` / `distributeLoad` / panic handling (spec lb-failover §2), so
//! shares match Envoy to the point.

/// Host counts (or weight sums) of one priority level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    /// Hosts that count (all hosts minus excluded ones).
    pub hosts: u64,
    /// Healthy hosts.
    pub healthy: u64,
    /// Degraded hosts.
    pub degraded: u64,
}

/// The result: per-priority healthy and degraded loads (percent, summing to 100 unless every
/// level is empty), and which levels are in panic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriorityLoad {
    /// Percent of traffic to each priority's healthy hosts.
    pub healthy: Vec<u32>,
    /// Percent of traffic to each priority's degraded hosts.
    pub degraded: Vec<u32>,
    /// Level `i` serves its share from all its hosts.
    pub panic: Vec<bool>,
    /// Every level is in panic: loads were recomputed from raw host counts.
    pub total_panic: bool,
}

/// Computes the loads. `counts` decide panic; `weights` (the same levels by
/// `load_balancing_weight` sums when `weighted_priority_health` is on, else equal to
/// `counts`) decide availability. `opf` is the overprovisioning factor in percent (default
/// 140); `panic_threshold` in percent (default 50; 0 disables).
#[allow(clippy::manual_checked_ops)] // the guards read like Envoy's code; both divisors are checked
pub fn compute(counts: &[Level], weights: &[Level], opf: u32, panic_threshold: f64) -> PriorityLoad {
    let n = counts.len();
    let opf = u64::from(opf);
    let avail = |num: u64, den: u64| (opf * num).checked_div(den).unwrap_or(0).min(100);
    let health: Vec<u64> = weights.iter().map(|l| avail(l.healthy, l.hosts)).collect();
    let degraded: Vec<u64> = weights.iter().map(|l| avail(l.degraded, l.hosts)).collect();
    let nta = (health.iter().sum::<u64>() + degraded.iter().sum::<u64>()).min(100);
    let mut out = PriorityLoad { healthy: vec![0; n], degraded: vec![0; n], panic: vec![false; n], total_panic: false };
    if n == 0 {
        return out;
    }
    if nta > 0 {
        let mut remaining = 100u64;
        for (slot, h) in out.healthy.iter_mut().zip(&health) {
            let l = (h * 100 / nta).min(remaining);
            *slot = l as u32;
            remaining -= l;
        }
        for (slot, d) in out.degraded.iter_mut().zip(&degraded) {
            let l = (d * 100 / nta).min(remaining);
            *slot = l as u32;
            remaining -= l;
        }
        if remaining > 0 {
            // `weights` may list more levels than `counts`; the extra ones get nothing.
            if let Some(x) = health.iter().position(|h| *h > 0).and_then(|i| out.healthy.get_mut(i)) {
                *x += remaining as u32;
            } else if let Some(x) = degraded.iter().position(|d| *d > 0).and_then(|i| out.degraded.get_mut(i)) {
                *x += remaining as u32;
            }
        }
    } else {
        // Nothing available: P0 gets everything (and, without panic, has no host to give).
        out.healthy[0] = 100;
    }
    let threshold = panic_threshold.clamp(0.0, 100.0).trunc();
    if nta < 100 && threshold > 0.0 {
        for (i, l) in counts.iter().enumerate() {
            let pct = if l.hosts == 0 {
                0.0
            } else {
                100.0 * l.healthy as f64 / l.hosts as f64 + 100.0 * l.degraded as f64 / l.hosts as f64
            };
            out.panic[i] = pct < threshold;
        }
    }
    if threshold > 0.0 && nta < 100 && out.panic.iter().all(|p| *p) {
        out.total_panic = true;
        let total: u64 = counts.iter().map(|l| l.hosts).sum();
        out.degraded = vec![0; n];
        if total > 0 {
            let mut remaining = 100u64;
            for (i, l) in counts.iter().enumerate() {
                let share = 100 * l.hosts / total;
                out.healthy[i] = share as u32;
                remaining -= share;
            }
            if let Some(i) = counts.iter().position(|l| l.hosts > 0) {
                out.healthy[i] += remaining as u32;
            }
        }
    }
    out
}

/// Which level and class a draw `r` in 1..=100 lands in: the first cumulative healthy load
/// reaching `r`, then the degraded ones.
pub fn choose(load: &PriorityLoad, r: u32) -> Option<(usize, bool)> {
    let mut acc = 0;
    for (i, l) in load.healthy.iter().enumerate() {
        acc += l;
        if r <= acc && *l > 0 {
            return Some((i, false));
        }
    }
    for (i, l) in load.degraded.iter().enumerate() {
        acc += l;
        if r <= acc && *l > 0 {
            return Some((i, true));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(hosts: u64, healthy: u64, degraded: u64) -> Level {
        Level { hosts, healthy, degraded }
    }

    fn run(levels: &[Level], panic: f64) -> PriorityLoad {
        compute(levels, levels, 140, panic)
    }

    /// More weight levels than host levels (a caller bug, or a mid-update snapshot) must not
    /// index past the output: the loads stay within the counted levels.
    #[test]
    fn unequal_level_lists_do_not_panic() {
        let l = compute(&[lv(4, 0, 0)], &[lv(4, 0, 0), lv(4, 4, 0)], 140, 0.0);
        assert_eq!(l.healthy.len(), 1);
        assert!(l.healthy[0] <= 100);
    }

    #[test]
    fn scenario_1_basic_spillover() {
        let l = run(&[lv(4, 2, 0), lv(4, 4, 0), lv(4, 4, 0)], 50.0);
        assert_eq!(l.healthy, [70, 30, 0]);
        assert_eq!(l.panic, [false, false, false]);
    }

    #[test]
    fn scenario_2_overprovisioning_boundaries() {
        for (h, n, p0) in [(8, 10, 100), (7, 10, 98), (5, 7, 100), (3, 4, 100), (2, 3, 93), (0, 10, 0)] {
            let l = run(&[lv(n, h, 0), lv(10, 10, 0)], 50.0);
            assert_eq!(l.healthy, [p0, 100 - p0], "{h}/{n}");
        }
    }

    #[test]
    fn scenario_3_panic_modes() {
        let levels = [lv(4, 1, 0), lv(4, 1, 0)];
        let l = run(&levels, 50.0);
        assert!(l.total_panic);
        assert_eq!(l.healthy, [50, 50]);
        let l = run(&levels, 0.0);
        assert!(!l.total_panic && l.panic == [false, false]);
        assert_eq!(l.healthy, [50, 50]);
    }

    #[test]
    fn scenario_6_degraded_hosts() {
        let l = run(&[lv(4, 1, 2), lv(4, 4, 0)], 50.0);
        assert_eq!((l.healthy.clone(), l.degraded.clone()), (vec![35, 65], vec![0, 0]));
        let l = run(&[lv(4, 1, 3)], 50.0);
        assert_eq!((l.healthy.clone(), l.degraded.clone()), (vec![35], vec![65]));
    }

    #[test]
    fn remainder_rule_from_envoy_comment() {
        // health 10/20/10 and degraded 20/10/0 (as availability percents) → 16/28/14 and 28/14/0.
        // Availabilities expressed directly: OPF 100 and 100 hosts per level.
        let levels = [lv(100, 10, 20), lv(100, 20, 10), lv(100, 10, 0)];
        let l = compute(&levels, &levels, 100, 0.0);
        assert_eq!((l.healthy.clone(), l.degraded.clone()), (vec![16, 28, 14], vec![28, 14, 0]));
        assert_eq!(l.healthy.iter().sum::<u32>() + l.degraded.iter().sum::<u32>(), 100);
    }

    #[test]
    fn docs_row_25_25_20_is_37_35_28_in_integer_arithmetic() {
        // health 25/25/20 percent availability: OPF 100, 100 hosts each.
        let levels = [lv(100, 25, 0), lv(100, 25, 0), lv(100, 20, 0)];
        let l = compute(&levels, &levels, 100, 0.0);
        assert_eq!(l.healthy, [37, 35, 28]);
    }

    #[test]
    fn nta_100_means_no_panic_and_zero_threshold_without_hosts_gives_p0() {
        let l = run(&[lv(4, 0, 0), lv(4, 4, 0)], 50.0);
        assert_eq!(l.panic, [false, false]);
        assert_eq!(l.healthy, [0, 100]);
        let l = run(&[lv(4, 0, 0), lv(4, 0, 0)], 0.0);
        assert_eq!(l.healthy, [100, 0]);
        assert!(!l.total_panic);
    }

    #[test]
    fn weighted_priority_health_uses_weights_for_availability_only() {
        let counts = [lv(2, 1, 0), lv(2, 2, 0)];
        let weights = [lv(10, 9, 0), lv(2, 2, 0)];
        let l = compute(&counts, &weights, 140, 50.0);
        assert_eq!(l.healthy, [100, 0]);
    }

    #[test]
    fn choose_walks_healthy_then_degraded() {
        let l = PriorityLoad { healthy: vec![35, 0], degraded: vec![0, 65], panic: vec![false; 2], total_panic: false };
        assert_eq!(choose(&l, 1), Some((0, false)));
        assert_eq!(choose(&l, 35), Some((0, false)));
        assert_eq!(choose(&l, 36), Some((1, true)));
        assert_eq!(choose(&l, 100), Some((1, true)));
    }
}
