//! Envoy's own test vectors for RING_HASH and MAGLEV, and the properties around them.

use super::maglev::*;
use super::ring::*;
use super::*;

/// Hosts `127.0.0.1:{port}` with the given weights, as Envoy's tests' `makeTestHost`.
fn local_keys(ports: &[u32]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

fn hosts<'a>(keys: &'a [String], weights: &[u32]) -> Vec<HashHost<'a>> {
    keys.iter().zip(weights).map(|(k, &weight)| HashHost { key: k, weight }).collect()
}

fn unweighted(keys: &[String]) -> Vec<HashHost<'_>> {
    keys.iter().map(|k| HashHost { key: k, weight: 1 }).collect()
}

/// splitmix64: deterministic test hashes without a rand dependency.
fn hashes(count: usize, seed: u64) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

fn shares(picks: impl Iterator<Item = Option<usize>>, hosts: usize) -> Vec<f64> {
    let mut counts = vec![0u64; hosts];
    let mut total = 0u64;
    for index in picks.flatten() {
        counts[index] += 1;
        total += 1;
    }
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

fn points_per_host(ring: &Ring, hosts: usize) -> Vec<usize> {
    let mut counts = vec![0; hosts];
    for (_, host) in ring.entries() {
        counts[host] += 1;
    }
    counts
}

/// Envoy's `i * (UINT64_MAX / n)` sweep used by several ring tests.
fn sweep_counts(ring: &Ring, samples: u64, hosts: usize) -> Vec<u32> {
    let mut counts = vec![0; hosts];
    for i in 0..samples {
        counts[ring.pick(i * (u64::MAX / samples)).unwrap()] += 1;
    }
    counts
}

// ---- xxHash64 ----

#[test]
fn xx_hash64_known_values() {
    assert_eq!(xx_hash64(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(xx_hash64(b"127.0.0.1:90_0"), xxhash_rust::xxh64::xxh64(b"127.0.0.1:90_0", 0));
    assert_eq!(xx_hash64(b"hello world"), xxhash_rust::xxh64::xxh64(b"hello world", 0));
    // Published XXH64 vector: "abc", seed 0.
    assert_eq!(xx_hash64(b"abc"), 0x44BC_2CF5_AD77_0999);
}

// ---- Envoy ring_hash_lb_test.cc vectors ----

/// `RingHashLoadBalancerTest.Basic` (min ring 12): the logged ring and its lookups.
#[test]
fn envoy_ring_basic() {
    let keys = local_keys(&[90, 91, 92, 93, 94, 95]);
    let ring = Ring::new(&unweighted(&keys), 12, DEFAULT_MAX_RING_SIZE);
    let expected: Vec<(u64, usize)> = vec![
        (833437586790550860, 4),
        (928266305478181108, 2),
        (1033482794131418490, 0),
        (3551244743356806947, 5),
        (3851675632748031481, 3),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (7700377290971790572, 3),
        (13144177310400110813, 5),
        (13444792449719432967, 2),
        (15516499411664133160, 4),
        (16117243373044804889, 0),
    ];
    assert_eq!(ring.entries().collect::<Vec<_>>(), expected);
    assert_eq!(ring.pick(0), Some(4));
    assert_eq!(ring.pick(u64::MAX), Some(4));
    assert_eq!(ring.pick(3551244743356806947), Some(5));
    assert_eq!(ring.pick(3551244743356806948), Some(3));
    assert_eq!(ring.pick(16117243373044804880), Some(0));
}

/// `RingHashLoadBalancerTest.BasicWithRetryHostPredicate`.
#[test]
fn envoy_ring_retry_attempts() {
    let keys = local_keys(&[90, 91, 92, 93, 94, 95]);
    let ring = Ring::new(&unweighted(&keys), 12, DEFAULT_MAX_RING_SIZE);
    assert_eq!(ring.pick_attempt(0, 0), Some(4));
    assert_eq!(ring.pick_attempt(0, 1), Some(2));
    assert_eq!(ring.pick_attempt(0, 2), Some(0));
    assert_eq!(ring.pick_attempt(0, 13), Some(2));
}

/// `RingHashLoadBalancerTest.BasicWithHostname` / `BasicWithMetadataHashKey`: keys "90".."95".
#[test]
fn envoy_ring_hostname_keys() {
    let keys: Vec<String> = (90..=95).map(|p: u32| p.to_string()).collect();
    let ring = Ring::new(&unweighted(&keys), 12, DEFAULT_MAX_RING_SIZE);
    let expected: Vec<(u64, usize)> = vec![
        (1975508444536362413, 5),
        (2376063919839173711, 5),
        (2386806903309390596, 3),
        (6749904478991551885, 4),
        (6803900775736438537, 3),
        (7225015537174310577, 2),
        (8787465352164086522, 0),
        (11282020843382717940, 2),
        (13723418369486627818, 1),
        (13776502110861797421, 0),
        (14338313586354474791, 1),
        (15364271037087512980, 4),
    ];
    assert_eq!(ring.entries().collect::<Vec<_>>(), expected);
    assert_eq!(ring.pick(0), Some(5));
    assert_eq!(ring.pick(u64::MAX), Some(5));
    assert_eq!(ring.pick(7225015537174310577), Some(2));
    assert_eq!(ring.pick(6803900775736438537), Some(3));
}

/// `RingHashLoadBalancerTest.UnevenHosts`: 2 hosts, min ring 3 -> 4 points.
#[test]
fn envoy_ring_uneven_hosts() {
    let keys = local_keys(&[80, 81]);
    let ring = Ring::new(&unweighted(&keys), 3, DEFAULT_MAX_RING_SIZE);
    let expected =
        vec![(5454692015285649509, 0), (7859399908942313493, 1), (13838424394637650569, 0), (16064866803292627174, 1)];
    assert_eq!(ring.entries().collect::<Vec<_>>(), expected);
    assert_eq!(ring.pick(0), Some(0));

    let keys = local_keys(&[81, 82]);
    let ring = Ring::new(&unweighted(&keys), 3, DEFAULT_MAX_RING_SIZE);
    let expected =
        vec![(7859399908942313493, 0), (8241336090459785962, 1), (12882406409176325258, 1), (16064866803292627174, 0)];
    assert_eq!(ring.entries().collect::<Vec<_>>(), expected);
    assert_eq!(ring.pick(0), Some(0));
}

/// `RingHashLoadBalancerTest.HostWeightedTinyRing`: weights 1,2,3 on a ring of exactly 6.
#[test]
fn envoy_ring_host_weighted_tiny() {
    let keys = local_keys(&[90, 91, 92]);
    let ring = Ring::new(&hosts(&keys, &[1, 2, 3]), 6, 6);
    assert_eq!(ring.len(), 6);
    assert_eq!(points_per_host(&ring, 3), vec![1, 2, 3]);
    for (hash, host) in [
        (928266305478181108, 2),
        (4443673547860492590, 2),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (13444792449719432967, 2),
        (16117243373044804889, 0),
    ] {
        assert_eq!(ring.pick(hash), Some(host), "hash {hash}");
    }
}

/// `RingHashLoadBalancerTest.HostWeightedLargeRing`: exact hit counts from Envoy.
#[test]
fn envoy_ring_host_weighted_large() {
    let keys = local_keys(&[90, 91, 92]);
    let ring = Ring::new(&hosts(&keys, &[1, 2, 3]), 6144, DEFAULT_MAX_RING_SIZE);
    assert_eq!(ring.len(), 6144);
    assert_eq!(points_per_host(&ring, 3), vec![1024, 2048, 3072]);
    assert_eq!(sweep_counts(&ring, 6000, 3), vec![987, 1932, 3081]);
}

/// `RingHashLoadBalancerTest.SmallFractionalScale`: 4 hosts on 2 points, two hosts absent.
#[test]
fn envoy_ring_small_fractional_scale() {
    let keys = local_keys(&[90, 91, 92, 93]);
    let ring = Ring::new(&unweighted(&keys), 2, 2);
    assert_eq!(ring.len(), 2);
    let counts = sweep_counts(&ring, 1024, 4);
    assert_eq!(counts.iter().filter(|&&c| c == 0).count(), 2);
    assert_eq!(counts.iter().sum::<u32>(), 1024);
}

/// `RingHashLoadBalancerTest.LargeFractionalScale`: 511/512 points and Envoy's exact counts.
#[test]
fn envoy_ring_large_fractional_scale() {
    let keys = local_keys(&[90, 91]);
    let ring = Ring::new(&unweighted(&keys), 1023, 1023);
    assert_eq!(ring.len(), 1023);
    let mut per_host = points_per_host(&ring, 2);
    per_host.sort_unstable();
    assert_eq!(per_host, vec![511, 512]);
    assert_eq!(sweep_counts(&ring, 1023, 2), vec![526, 497]);
}

/// `RingHashLoadBalancerTest.LocalityWeightedTinyRing` / `LocalityWeightedLargeRing`:
/// locality weights 1,2,3,0, one host each.
#[test]
fn envoy_ring_locality_weighted() {
    let keys = local_keys(&[90, 91, 92, 93]);
    let all = unweighted(&keys);
    let groups: Vec<[usize; 1]> = (0..4).map(|i| [i]).collect();
    let localities: Vec<LocalityHosts<'_>> =
        groups.iter().zip([1, 2, 3, 0]).map(|(g, weight)| LocalityHosts { weight, hosts: g }).collect();
    let normalized = normalize_locality_weights(&all, &localities);

    let ring = Ring::from_normalized(&normalized, 6, 6);
    assert_eq!(points_per_host(&ring, 4), vec![1, 2, 3, 0]);
    for (hash, host) in [
        (928266305478181108, 2),
        (4443673547860492590, 2),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (13444792449719432967, 2),
        (16117243373044804889, 0),
    ] {
        assert_eq!(ring.pick(hash), Some(host), "hash {hash}");
    }

    let ring = Ring::from_normalized(&normalized, 6144, DEFAULT_MAX_RING_SIZE);
    assert_eq!(ring.len(), 6144);
    assert_eq!(sweep_counts(&ring, 6000, 4), vec![987, 1932, 3081, 0]);
}

/// `RingHashLoadBalancerTest.HostAndLocalityWeightedTinyRing` / `...LargeRing`.
#[test]
fn envoy_ring_host_and_locality_weighted() {
    let keys = local_keys(&[90, 91, 92, 93]);
    let all = hosts(&keys, &[1, 2, 1, 2]);
    let localities = [LocalityHosts { weight: 1, hosts: &[0, 1] }, LocalityHosts { weight: 2, hosts: &[2, 3] }];
    let normalized = normalize_locality_weights(&all, &localities);

    let ring = Ring::from_normalized(&normalized, 9, 9);
    assert_eq!(ring.len(), 9);
    assert_eq!(points_per_host(&ring, 4), vec![1, 2, 2, 4]);
    for (hash, host) in [
        (928266305478181108, 2),
        (3851675632748031481, 3),
        (5583722120771150861, 1),
        (6311230543546372928, 1),
        (7700377290971790572, 3),
        (12559126875973811811, 3),
        (13444792449719432967, 2),
        (13784988426630141778, 3),
        (16117243373044804889, 0),
    ] {
        assert_eq!(ring.pick(hash), Some(host), "hash {hash}");
    }

    let ring = Ring::from_normalized(&normalized, 9216, DEFAULT_MAX_RING_SIZE);
    assert_eq!(ring.len(), 9216);
    assert_eq!(points_per_host(&ring, 4), vec![1024, 2048, 2048, 4096]);
    assert_eq!(sweep_counts(&ring, 9000, 4), vec![924, 2009, 2053, 4014]);
}

/// `RingHashLoadBalancerTest.LopsidedWeightSmallScale`: locality weights 127:1 over 1 and
/// 1023 hosts on a 1024-point ring — a sharp test of the floating-point running sums.
#[test]
fn envoy_ring_lopsided_weight_small_scale() {
    let keys: Vec<String> = (0..1024).map(|p| format!("127.0.0.1:{p}")).collect();
    let all = unweighted(&keys);
    let light: Vec<usize> = (1..1024).collect();
    let localities = [LocalityHosts { weight: 127, hosts: &[0] }, LocalityHosts { weight: 1, hosts: &light }];
    let ring = Ring::from_normalized(&normalize_locality_weights(&all, &localities), 1024, 1024);
    assert_eq!(ring.len(), 1024);
    let per_host = points_per_host(&ring, 1024);
    assert_eq!(per_host[0], 1016);
    assert_eq!(per_host.iter().filter(|&&c| c == 0).count(), 1024 - 9);
    for (hash, host) in [
        (11664790346325243808, 1),
        (15894554872961148518, 128),
        (13958138884277627155, 256),
        (15803774069438192949, 384),
        (3829253010855396576, 512),
        (17918147347826565154, 640),
        (6442769608292299103, 768),
        (5881074926069334434, 896),
    ] {
        assert_eq!(ring.pick(hash), Some(host), "hash {hash}");
    }
}

/// `RingHashLoadBalancerTest.ZeroLocalityWeights` and `NoHost`.
#[test]
fn envoy_ring_no_hosts() {
    let keys = local_keys(&[90, 91]);
    let all = unweighted(&keys);
    let localities = [LocalityHosts { weight: 0, hosts: &[0] }, LocalityHosts { weight: 0, hosts: &[1] }];
    let ring = Ring::from_normalized(&normalize_locality_weights(&all, &localities), 1024, DEFAULT_MAX_RING_SIZE);
    assert!(ring.is_empty());
    assert_eq!(ring.pick(0), None);
    let ring = Ring::new(&[], DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE);
    assert_eq!((ring.len(), ring.pick(42), ring.pick_attempt(42, 3)), (0, None, None));
}

// ---- Envoy maglev_lb_test.cc vectors ----

fn maglev_assignments(maglev: &Maglev, count: u64) -> Vec<usize> {
    (0..count).map(|i| maglev.pick(i).unwrap()).collect()
}

/// `MaglevLoadBalancerTest.Basic` (table 7), hashes 0..21 cycle through the table.
#[test]
fn envoy_maglev_basic() {
    let keys = local_keys(&[90, 91, 92, 93, 94, 95]);
    let maglev = Maglev::new(&unweighted(&keys), 7);
    let expected = [2, 4, 0, 1, 5, 0, 3];
    for i in 0..21u64 {
        assert_eq!(maglev.pick(i), Some(expected[(i % 7) as usize]), "hash {i}");
    }
}

/// `MaglevLoadBalancerTest.BasicWithHostName` / `BasicWithMetadataHashKey`.
#[test]
fn envoy_maglev_hostname_keys() {
    let keys: Vec<String> = (90..=95).map(|p: u32| p.to_string()).collect();
    let maglev = Maglev::new(&unweighted(&keys), 7);
    assert_eq!(maglev_assignments(&maglev, 7), vec![2, 5, 0, 3, 4, 1, 0]);
}

/// `MaglevLoadBalancerTest.BasicWithRetryHostPredicate`.
#[test]
fn envoy_maglev_retry_attempts() {
    let keys = local_keys(&[90, 91, 92, 93, 94, 95]);
    let maglev = Maglev::new(&unweighted(&keys), 7);
    assert_eq!(maglev.pick_attempt(10, 0), Some(1));
    assert_eq!(maglev.pick_attempt(10, 1), Some(0));
    assert_eq!(maglev.pick_attempt(10, 2), Some(5));
}

/// `MaglevLoadBalancerTest.BasicStability`: host order does not change the table.
#[test]
fn envoy_maglev_stability_under_reordering() {
    let keys = local_keys(&[93, 90, 95, 91, 94, 92]);
    let maglev = Maglev::new(&unweighted(&keys), 7);
    let ports: Vec<u32> = (0..7).map(|i| [93, 90, 95, 91, 94, 92][maglev.pick(i).unwrap()]).collect();
    assert_eq!(ports, vec![92, 94, 90, 91, 95, 90, 93]);
}

/// `MaglevLoadBalancerTest.Weighted`: weights 1:2, table 17, 6 and 11 slots.
#[test]
fn envoy_maglev_weighted() {
    let keys = local_keys(&[90, 91]);
    let maglev = Maglev::new(&hosts(&keys, &[1, 2]), 17);
    assert_eq!(maglev_assignments(&maglev, 17), vec![1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]);
}

/// `MaglevLoadBalancerTest.SingleHost` / `WeightedSingleHost`.
#[test]
fn envoy_maglev_single_host() {
    let keys = local_keys(&[90]);
    let maglev = Maglev::new(&hosts(&keys, &[7]), 17);
    assert!((0..17).all(|i| maglev.pick(i) == Some(0)));
    assert_eq!(maglev.pick_attempt(3, 2), Some(0));
}

/// `MaglevLoadBalancerTest.LocalityWeightedSameLocalityWeights` (and `...GlobalPanic`, which
/// builds the same table): host weights don't matter across localities of equal weight.
#[test]
fn envoy_maglev_locality_same_weights() {
    let keys = local_keys(&[90, 91]);
    let all = hosts(&keys, &[1, 2]);
    let localities = [LocalityHosts { weight: 1, hosts: &[0] }, LocalityHosts { weight: 1, hosts: &[1] }];
    let maglev = Maglev::from_normalized(&normalize_locality_weights(&all, &localities), 17);
    assert_eq!(maglev_assignments(&maglev, 17), vec![1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1]);
}

/// `MaglevLoadBalancerTest.LocalityWeightedDifferentLocalityWeights`: weights 8:0:2.
#[test]
fn envoy_maglev_locality_different_weights() {
    let keys = local_keys(&[90, 91, 92]);
    let all = hosts(&keys, &[1, 2, 3]);
    let localities = [
        LocalityHosts { weight: 8, hosts: &[0] },
        LocalityHosts { weight: 0, hosts: &[2] },
        LocalityHosts { weight: 2, hosts: &[1] },
    ];
    let maglev = Maglev::from_normalized(&normalize_locality_weights(&all, &localities), 17);
    assert_eq!(maglev_assignments(&maglev, 17), vec![1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]);
}

/// `MaglevLoadBalancerTest.LocalityWeightedLopsided`: 1 heavy + 1023 light hosts, 127:1.
#[test]
fn envoy_maglev_locality_lopsided() {
    let keys: Vec<String> = (0..1024).map(|p| format!("127.0.0.1:{p}")).collect();
    let all = unweighted(&keys);
    let light: Vec<usize> = (1..1024).collect();
    let localities = [LocalityHosts { weight: 127, hosts: &[0] }, LocalityHosts { weight: 1, hosts: &light }];
    let maglev = Maglev::from_normalized(&normalize_locality_weights(&all, &localities), DEFAULT_MAGLEV_TABLE_SIZE);
    let mut counts = vec![0u64; 1024];
    for i in 0..DEFAULT_MAGLEV_TABLE_SIZE {
        counts[maglev.pick(i).unwrap()] += 1;
    }
    assert!(counts[1..].iter().all(|&c| c == 1));
    assert_eq!(counts[0], DEFAULT_MAGLEV_TABLE_SIZE - 1023);
}

/// `MaglevLoadBalancerTest.NoHost`, `LocalityWeightedAllZeroLocalityWeights`, `NoPrimeNumber`.
#[test]
fn envoy_maglev_empty_and_invalid() {
    assert_eq!(Maglev::new(&[], 7).pick(0), None);
    let keys = local_keys(&[90]);
    let all = unweighted(&keys);
    let localities = [LocalityHosts { weight: 0, hosts: &[0] }];
    assert_eq!(Maglev::from_normalized(&normalize_locality_weights(&all, &localities), 17).pick(0), None);
    let keys = local_keys(&[90, 91]);
    for size in [0, 1, 8, 65536, MAGLEV_TABLE_SIZE_LIMIT + 2, u64::MAX] {
        assert!(Maglev::new(&unweighted(&keys), size).is_empty(), "size {size}");
    }
    assert!(is_valid_maglev_table_size(2) && is_valid_maglev_table_size(MAGLEV_TABLE_SIZE_LIMIT));
}

// ---- Properties ----

#[test]
fn ring_is_sorted_and_sized_within_bounds() {
    let keys = local_keys(&[1, 2, 3, 4, 5, 6, 7]);
    let weighted = hosts(&keys, &[1, 5, 2, 9, 1, 3, 7]);
    for (min, max) in [(1024, DEFAULT_MAX_RING_SIZE), (10, 20), (5000, 4000), (1, 1), (3, 100)] {
        let ring = Ring::new(&weighted, min, max);
        let hashes: Vec<u64> = ring.entries().map(|(h, _)| h).collect();
        assert!(hashes.windows(2).all(|w| w[0] <= w[1]), "sorted for ({min}, {max})");
        // Envoy lands on ceil(scale) points, give or take one for float rounding; scale is at
        // least min_ring (unless capped) and at most max_ring.
        let len = ring.len() as u64;
        assert!(len <= max + 1, "len {len} for ({min}, {max})");
        assert!(len + 1 >= min.min(max), "len {len} for ({min}, {max})");
    }
    // Default sizes: the lightest host (1/28) gets ceil(1024 / 28) = 37 points, the others
    // 37 per unit of weight (the running sums may shift one point between neighbours).
    let ring = Ring::new(&weighted, DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE);
    assert_eq!(ring.len(), 37 * 28);
    for (count, weight) in points_per_host(&ring, 7).into_iter().zip([1, 5, 2, 9, 1, 3, 7]) {
        assert!(count.abs_diff(37 * weight) <= 1, "{count} points for weight {weight}");
    }
}

#[test]
fn ring_sizes_are_clamped_and_zero_gives_empty() {
    let keys = local_keys(&[1, 2]);
    assert!(Ring::new(&unweighted(&keys), 0, DEFAULT_MAX_RING_SIZE).is_empty());
    assert!(Ring::new(&unweighted(&keys), 1024, 0).is_empty());
    // Building an 8M-point ring is slow in debug builds; check the scale it would use.
    let limit = RING_SIZE_LIMIT as f64;
    assert_eq!(ring_scale(0.5, clamp_ring_size(u64::MAX), clamp_ring_size(u64::MAX)), limit);
    assert_eq!(ring_scale(1e-300, clamp_ring_size(1024), clamp_ring_size(u64::MAX)), limit);
    assert_eq!(ring_scale(0.25, 1024, 8192), 1024.0);
}

#[test]
fn zero_weight_counts_as_one_and_overflowing_sum_gives_nothing() {
    let keys = local_keys(&[1, 2]);
    assert_eq!(Ring::new(&hosts(&keys, &[0, 1]), 1024, 1024), Ring::new(&hosts(&keys, &[1, 1]), 1024, 1024));
    assert_eq!(Maglev::new(&hosts(&keys, &[0, 1]), 17), Maglev::new(&hosts(&keys, &[1, 1]), 17));
    let overflow = hosts(&keys, &[u32::MAX, 1]);
    assert!(Ring::new(&overflow, 1024, DEFAULT_MAX_RING_SIZE).is_empty());
    assert!(Maglev::new(&overflow, 17).is_empty());
}

#[test]
fn unusable_normalized_weights_are_ignored() {
    let odd = [
        NormalizedHost { key: "a", weight: f64::NAN, index: 0 },
        NormalizedHost { key: "b", weight: -1.0, index: 1 },
        NormalizedHost { key: "c", weight: f64::INFINITY, index: 2 },
        NormalizedHost { key: "d", weight: 0.0, index: 3 },
    ];
    assert!(Ring::from_normalized(&odd, 1024, 4096).is_empty());
    assert!(Maglev::from_normalized(&odd, 17).is_empty());
    let tiny =
        [NormalizedHost { key: "a", weight: 1e-320, index: 7 }, NormalizedHost { key: "b", weight: 1.0, index: 9 }];
    // min_w = 1e-320 makes scale = min(1 / 1e-320 = inf, 4096) = 4096: "a" still gets one
    // point (its target is > 0), "b" the rest.
    let ring = Ring::from_normalized(&tiny, 1024, 4096);
    assert_eq!(ring.len(), 4096);
    let per_host = points_per_host(&ring, 10);
    assert_eq!((per_host[7], per_host[9]), (1, 4095));
    assert!(Maglev::from_normalized(&tiny, 17).pick(1).is_some());
    // Weights that sum far above 1 (misuse) stay bounded by the ring size limit.
    let heavy = [NormalizedHost { key: "a", weight: 1e300, index: 0 }];
    assert_eq!(Ring::from_normalized(&heavy, 1, 1).len(), 2);
}

#[test]
fn distribution_follows_weights() {
    let keys = local_keys(&[8001, 8002, 8003]);
    let weighted = hosts(&keys, &[1, 2, 3]);
    let expected = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
    let sample = hashes(100_000, 7);

    let ring = Ring::new(&weighted, DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE);
    let ring_shares = shares(sample.iter().map(|&h| ring.pick(h)), 3);
    let maglev = Maglev::new(&weighted, DEFAULT_MAGLEV_TABLE_SIZE);
    let maglev_shares = shares(sample.iter().map(|&h| maglev.pick(h)), 3);
    for i in 0..3 {
        assert!((ring_shares[i] - expected[i]).abs() < 0.03, "ring {ring_shares:?}");
        assert!((maglev_shares[i] - expected[i]).abs() < 0.01, "maglev {maglev_shares:?}");
    }
}

/// Picks for `sample` on `without` (host `removed` dropped) vs `with`, mapped back to the
/// original indices: (keys that were on surviving hosts but moved, keys that were on survivors).
fn moved_survivors(before: &[usize], after: &[usize], removed: usize) -> (usize, usize) {
    let remap = |i: usize| if i >= removed { i + 1 } else { i };
    let mut moved = 0;
    let mut survivors = 0;
    for (&b, &a) in before.iter().zip(after) {
        let a = remap(a);
        assert_ne!(a, removed);
        if b != removed {
            survivors += 1;
            moved += usize::from(a != b);
        }
    }
    (moved, survivors)
}

/// The strict consistency property — removing a host remaps only its own keys — holds for
/// Envoy's ring exactly when the survivors keep their replica points. Here weights 1 and 50
/// with min ring 200 give every host `weight` points both before and after the removal.
#[test]
fn ring_removal_moves_only_the_removed_hosts_keys_when_replicas_are_unchanged() {
    let keys = local_keys(&[1, 2, 3, 4, 5, 6]);
    let weights = [1, 50, 50, 50, 50, 50];
    let removed = 3;
    let before_hosts = hosts(&keys, &weights);
    let mut after_hosts = before_hosts.clone();
    after_hosts.remove(removed);
    let before = Ring::new(&before_hosts, 200, DEFAULT_MAX_RING_SIZE);
    let after = Ring::new(&after_hosts, 200, DEFAULT_MAX_RING_SIZE);
    // Precondition: survivors' points are identical.
    let mut kept: Vec<u64> = before.entries().filter(|&(_, h)| h != removed).map(|(p, _)| p).collect();
    kept.sort_unstable();
    assert_eq!(after.entries().map(|(p, _)| p).collect::<Vec<_>>(), kept);

    let sample = hashes(50_000, 11);
    let b: Vec<usize> = sample.iter().map(|&h| before.pick(h).unwrap()).collect();
    let a: Vec<usize> = sample.iter().map(|&h| after.pick(h).unwrap()).collect();
    let (moved, survivors) = moved_survivors(&b, &a, removed);
    assert!(survivors > 0);
    assert_eq!(moved, 0);
}

/// With default sizes Envoy rescales every host's replica count when the host set changes
/// (scale = ceil(min_w * min_ring) / min_w), so a few survivor keys move too: 6 equal hosts
/// have 171 points each, 5 have 205. Same behaviour here, by construction; bounded, not zero.
#[test]
fn ring_removal_with_default_sizes_moves_few_survivor_keys() {
    let keys = local_keys(&[1, 2, 3, 4, 5, 6]);
    let removed = 2;
    let before_hosts = unweighted(&keys);
    let mut after_hosts = before_hosts.clone();
    after_hosts.remove(removed);
    let before = Ring::new(&before_hosts, DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE);
    let after = Ring::new(&after_hosts, DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE);
    assert_eq!(points_per_host(&before, 6), vec![171; 6]);
    assert_eq!(points_per_host(&after, 5), vec![205; 5]);

    let sample = hashes(50_000, 13);
    let b: Vec<usize> = sample.iter().map(|&h| before.pick(h).unwrap()).collect();
    let a: Vec<usize> = sample.iter().map(|&h| after.pick(h).unwrap()).collect();
    let (moved, survivors) = moved_survivors(&b, &a, removed);
    let fraction = moved as f64 / survivors as f64;
    // About 11.5% of the survivors' keys move with this sample.
    assert!(fraction > 0.0 && fraction < 0.2, "moved {fraction}");
}

/// Maglev promises minimal, not zero, disruption: a removed host's keys all move, and only a
/// small fraction of the survivors' keys do (the paper's Figure 10 regime).
#[test]
fn maglev_removal_moves_removed_keys_and_few_others() {
    let keys = local_keys(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let removed = 4;
    let before_hosts = unweighted(&keys);
    let mut after_hosts = before_hosts.clone();
    after_hosts.remove(removed);
    let before = Maglev::new(&before_hosts, DEFAULT_MAGLEV_TABLE_SIZE);
    let after = Maglev::new(&after_hosts, DEFAULT_MAGLEV_TABLE_SIZE);

    let sample: Vec<u64> = (0..DEFAULT_MAGLEV_TABLE_SIZE).collect();
    let b: Vec<usize> = sample.iter().map(|&h| before.pick(h).unwrap()).collect();
    let a: Vec<usize> = sample.iter().map(|&h| after.pick(h).unwrap()).collect();
    let (moved, survivors) = moved_survivors(&b, &a, removed);
    let fraction = moved as f64 / survivors as f64;
    // About 0.25% of the survivors' slots change owner here.
    assert!(fraction < 0.03, "moved {fraction}");
}

#[test]
fn maglev_table_is_full_and_near_even() {
    let keys = local_keys(&[1, 2, 3, 4, 5]);
    let maglev = Maglev::new(&unweighted(&keys), DEFAULT_MAGLEV_TABLE_SIZE);
    assert_eq!(maglev.len() as u64, DEFAULT_MAGLEV_TABLE_SIZE);
    let mut counts = [0u64; 5];
    for i in 0..DEFAULT_MAGLEV_TABLE_SIZE {
        counts[maglev.pick(i).unwrap()] += 1;
    }
    // 65537 / 5 = 13107.4: an equal-weight Maglev table differs by at most one slot per host.
    assert!(counts.iter().all(|&c| c == 13107 || c == 13108), "{counts:?}");
}

#[test]
fn more_hosts_than_slots_fills_the_table() {
    let keys: Vec<String> = (0..40).map(|p| format!("10.0.0.{p}:80")).collect();
    let maglev = Maglev::new(&unweighted(&keys), 7);
    assert!((0..7).all(|i| maglev.pick(i).is_some()));
    assert!((0..1000).all(|i| maglev.pick_attempt(i, u32::MAX).is_some()));
    let ring = Ring::new(&unweighted(&keys), 5, 5);
    assert!((0..1000).all(|i| ring.pick_attempt(i, u32::MAX).is_some()));
}
