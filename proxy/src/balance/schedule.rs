//! Earliest-deadline-first order for weighted round robin, computed once per host set.

/// Host indices in the order Envoy's EDF scheduler would serve them over one full cycle
/// (each host appears `weight` times). Weights are scaled down when the cycle would exceed
/// 65,536 entries, keeping ratios within rounding.
pub fn edf_schedule(weights: &[u32]) -> Vec<u32> {
    const MAX_CYCLE: u64 = 65_536;
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let scale = if total > MAX_CYCLE { total.div_ceil(MAX_CYCLE) } else { 1 };
    let weights: Vec<u64> = weights.iter().map(|w| (u64::from(*w) / scale).max(1)).collect();
    let cycle: u64 = weights.iter().sum();
    // deadline_i = (k + 1) / w_i; compare a/b < c/d as a*d < c*b to stay exact. Ties go to
    // the entry queued first, as in Envoy's EDF (FIFO order offset).
    let mut next: Vec<u64> = vec![1; weights.len()];
    let mut queued: Vec<u64> = (0..weights.len() as u64).collect();
    let mut out = Vec::with_capacity(usize::try_from(cycle).unwrap_or(0));
    for seq in (weights.len() as u64..).take(usize::try_from(cycle).unwrap_or(usize::MAX)) {
        let mut best = 0usize;
        for i in 1..weights.len() {
            let lhs = next[i] * weights[best];
            let rhs = next[best] * weights[i];
            if lhs < rhs || (lhs == rhs && queued[i] < queued[best]) {
                best = i;
            }
        }
        out.push(u32::try_from(best).unwrap_or(0));
        next[best] += 1;
        queued[best] = seq;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_by_weight() {
        assert_eq!(edf_schedule(&[2, 1]), vec![0, 1, 0]);
        let s = edf_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 5);
    }

    #[test]
    fn scales_huge_weights() {
        let s = edf_schedule(&[1_000_000, 3_000_000]);
        assert!(s.len() <= 65_536);
        let a = s.iter().filter(|i| **i == 0).count() as f64;
        assert!((a / s.len() as f64 - 0.25).abs() < 0.01);
    }
}
