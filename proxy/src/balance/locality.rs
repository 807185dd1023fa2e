//! Locality-weighted balancing inside a priority (Envoy `locality_weighted_lb_config`):
//! effective weight `W × min(1, OPF/100 × eligible / hosts)`, in floating point; a locality
//! with no weight or no eligible host gets nothing.

/// One locality of a priority level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalityState {
    /// `load_balancing_weight` (None: the locality gets no load in this mode).
    pub weight: Option<u32>,
    /// Hosts minus excluded.
    pub hosts: u64,
    /// Eligible hosts (healthy, or degraded for the degraded scheduler).
    pub eligible: u64,
}

/// Effective weights, one per locality.
pub fn effective_weights(localities: &[LocalityState], opf: u32) -> Vec<f64> {
    localities
        .iter()
        .map(|l| match l.weight {
            Some(w) if w > 0 && l.hosts > 0 && l.eligible > 0 => {
                let avail = (f64::from(opf) / 100.0 * l.eligible as f64 / l.hosts as f64).min(1.0);
                f64::from(w) * avail
            }
            _ => 0.0,
        })
        .collect()
}

/// Picks a locality index by weight from a uniform draw `u` in [0, 1); None if all are zero.
pub fn pick(weights: &[f64], u: f64) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = u * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
    }
    weights.iter().rposition(|w| *w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_8_locality_weights() {
        let y = LocalityState { weight: Some(2), hosts: 4, eligible: 4 };
        let share = |x_eligible| {
            let w = effective_weights(&[LocalityState { weight: Some(1), hosts: 4, eligible: x_eligible }, y], 140);
            w[0] / (w[0] + w[1])
        };
        assert!((share(2) - 0.259).abs() < 0.001, "{}", share(2));
        assert!((share(3) - 1.0 / 3.0).abs() < 0.001);
        assert_eq!(share(0), 0.0);
    }

    #[test]
    fn unweighted_localities_get_nothing_and_pick_follows_weights() {
        let w = effective_weights(
            &[
                LocalityState { weight: None, hosts: 4, eligible: 4 },
                LocalityState { weight: Some(3), hosts: 1, eligible: 1 },
            ],
            140,
        );
        assert_eq!(w, [0.0, 3.0]);
        assert_eq!(pick(&w, 0.0), Some(1));
        assert_eq!(pick(&[1.0, 3.0], 0.24), Some(0));
        assert_eq!(pick(&[1.0, 3.0], 0.26), Some(1));
        assert_eq!(pick(&[0.0, 0.0], 0.5), None);
    }
}
