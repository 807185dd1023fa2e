//! Envoy's zone-aware routing inside priority 0 (spec lb-failover §4): with a local cluster
//! (the proxy's own service), keep traffic in the own locality as far as the upstream's
//! capacity there allows, and send the residual to the localities with spare capacity, so
//! every upstream host gets about the same load. Percentages are integers × 10000, as in
//! Envoy.

/// The routing decision for one host set.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneRouting {
    /// All picks stay in the own locality (`lb_zone_routing_all_directly`).
    Direct,
    /// Stay local with probability `local` (0..=1); otherwise go to locality `i ≥ 1` in
    /// proportion to `residual[i]` (index 0 unused; all zero → uniform).
    Residual {
        /// Probability of staying local.
        local: f64,
        /// Spare capacity per locality, index-aligned with the upstream list.
        residual: Vec<u64>,
    },
}

/// Why zone routing does not apply (Envoy stats `lb_local_cluster_not_ok`,
/// `lb_zone_cluster_too_small`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApplied {
    /// Fewer than two upstream or local localities, or no local host in the own locality.
    LocalClusterNotOk,
    /// Fewer healthy upstream hosts than `min_cluster_size`.
    ClusterTooSmall,
}

/// Decides from healthy host counts per locality, index 0 being the proxy's own locality in
/// both lists (and the lists aligned by locality).
/// `up_total` is the upstream's healthy P0 host count over all its localities (some may not
/// exist in the local cluster), `up_localities` how many localities it has.
pub fn decide(
    local: &[u64],
    upstream: &[u64],
    up_total: u64,
    up_localities: usize,
    min_cluster_size: u64,
) -> Result<ZoneRouting, NotApplied> {
    if up_localities < 2 || local.iter().filter(|v| **v > 0).count() < 2 || local.first().copied().unwrap_or(0) == 0 {
        return Err(NotApplied::LocalClusterNotOk);
    }
    if up_total < min_cluster_size {
        return Err(NotApplied::ClusterTooSmall);
    }
    let local_total: u64 = local.iter().sum();
    let pct = |v: u64, total: u64| (10_000 * v).checked_div(total).unwrap_or(0);
    let local_pct: Vec<u64> = local.iter().map(|v| pct(*v, local_total)).collect();
    let up_pct: Vec<u64> = upstream.iter().map(|v| pct(*v, up_total)).collect();
    let (up0, local0) = (up_pct.first().copied().unwrap_or(0), local_pct.first().copied().unwrap_or(0));
    if up0 > 0 && up0 >= local0 {
        return Ok(ZoneRouting::Direct);
    }
    let local = (up0 * 10_000).checked_div(local0).unwrap_or(0) as f64 / 10_000.0;
    let residual = up_pct
        .iter()
        .enumerate()
        .map(|(i, u)| if i == 0 { 0 } else { u.saturating_sub(local_pct.get(i).copied().unwrap_or(0)) })
        .collect();
    Ok(ZoneRouting::Residual { local, residual })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_9_zone_aware_routing() {
        // Local A/B/C = 4/4/2, upstream healthy A/B/C = 2/4/2.
        match decide(&[4, 4, 2], &[2, 4, 2], 8, 3, 6).unwrap() {
            ZoneRouting::Residual { local, residual } => {
                assert!((local - 0.625).abs() < 1e-9);
                assert_eq!(residual, [0, 1000, 500]);
                let cross = 1.0 - local;
                let b = cross * 1000.0 / 1500.0;
                let c = cross * 500.0 / 1500.0;
                assert!((b - 0.25).abs() < 1e-9 && (c - 0.125).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        // Clients in B and C route directly.
        assert_eq!(decide(&[4, 4, 2], &[4, 2, 2], 8, 3, 6), Ok(ZoneRouting::Direct));
        assert_eq!(decide(&[2, 4, 4], &[2, 2, 4], 8, 3, 6), Ok(ZoneRouting::Direct));
        // 5 healthy upstream hosts < 6: plain balancing.
        assert_eq!(decide(&[4, 4, 2], &[2, 2, 1], 5, 3, 6), Err(NotApplied::ClusterTooSmall));
        assert_eq!(decide(&[0, 4], &[2, 4], 6, 2, 6), Err(NotApplied::LocalClusterNotOk));
        assert_eq!(decide(&[4], &[6], 6, 1, 6), Err(NotApplied::LocalClusterNotOk));
    }
}
