//! Weighted round robin without a precomputed cycle: the k-th pick is position
//! `k · stride mod total` on the line of cumulative weights, with `stride` coprime to the
//! total weight near `total / φ`. Over every `total` consecutive picks each position is visited
//! once, so host i is picked exactly `weight_i` times per cycle (the long-run share of Envoy's
//! EDF scheduler), and the golden-ratio stride spreads a host's picks across the cycle instead
//! of bunching them. Building costs O(hosts) (the prefix sums the picker keeps anyway) where
//! the earlier EDF cycle cost O(cycle × hosts), rebuilt on every host-set change.

/// The stride walk over `total` weight units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stride {
    total: u64,
    stride: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Stride {
    /// A walk over `total` units (`total` ≥ 1).
    pub fn new(total: u64) -> Stride {
        let total = total.max(1);
        // total / φ, then the next value coprime with total (a few steps at most).
        let mut stride = ((total as f64) * 0.618_033_988_749_894_9).round() as u64 % total;
        stride = stride.max(1);
        while gcd(stride, total) != 1 {
            stride = stride % total + 1;
        }
        Stride { total, stride }
    }

    /// The weight-line position of pick number `k` (in `0..total`).
    pub fn position(&self, k: u64) -> u64 {
        ((u128::from(k % self.total) * u128::from(self.stride)) % u128::from(self.total)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host index of each pick, from prefix sums as the picker does.
    fn picks(weights: &[u64], n: u64) -> Vec<usize> {
        let mut acc = 0;
        let cumulative: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        let s = Stride::new(acc);
        (0..n).map(|k| cumulative.partition_point(|c| *c <= s.position(k))).collect()
    }

    #[test]
    fn every_cycle_gives_each_host_its_weight() {
        let weights = [5, 1, 1, 3, 7, 2];
        let total: u64 = weights.iter().sum();
        for cycle in 0..3 {
            let p = picks(&weights, total * 3);
            let this = &p[(cycle * total) as usize..((cycle + 1) * total) as usize];
            for (i, w) in weights.iter().enumerate() {
                assert_eq!(this.iter().filter(|x| **x == i).count() as u64, *w, "host {i}");
            }
        }
    }

    #[test]
    fn interleaves_by_weight() {
        assert_eq!(picks(&[2, 1], 3), vec![0, 1, 0]);
        // A heavy host's picks are spread: no host is picked twice in a row when no weight
        // exceeds the rest combined.
        let p = picks(&[3, 3, 2, 2], 10);
        assert!(p.windows(2).all(|w| w[0] != w[1]), "{p:?}");
    }

    #[test]
    fn strides_are_coprime_and_in_range() {
        for total in 1..2_000u64 {
            let s = Stride::new(total);
            assert_eq!(gcd(s.stride, total), 1, "total {total}");
            let mut seen = vec![false; total as usize];
            for k in 0..total {
                seen[s.position(k) as usize] = true;
            }
            assert!(seen.iter().all(|x| *x), "total {total} is not a permutation");
        }
    }
}
