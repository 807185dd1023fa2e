//! Envoy's `RING_HASH` (Ketama ring): build and lookup, bit for bit (see the parent module).

use std::fmt::Write as _;

use super::*;

/// A Ketama ring as Envoy's `RingHashLoadBalancer` builds it: each host hashed as `key_0`, `key_1`,
/// ... in proportion to its weight, sorted by hash; a request goes to the first point at or after
/// its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    /// Point hashes, ascending (split from `hosts` so the binary search stays cache-dense).
    hashes: Vec<u64>,
    /// Host index of each point, parallel to `hashes`.
    hosts: Vec<usize>,
}

impl Ring {
    /// Builds the ring for `hosts` (Envoy's non-locality-weighted path). `min_ring_size` and
    /// `max_ring_size` are clamped to `RING_SIZE_LIMIT`; if min > max (which Envoy rejects at
    /// config time) the max wins. `pick` returns positions in `hosts`.
    #[must_use]
    pub fn new(hosts: &[HashHost<'_>], min_ring_size: u64, max_ring_size: u64) -> Ring {
        Ring::from_normalized(&normalize_host_weights(hosts), min_ring_size, max_ring_size)
    }

    /// Builds the ring from already-normalized weights (e.g. from `normalize_locality_weights`),
    /// as `RingHashLoadBalancer::Ring::Ring` does; `pick` returns the hosts' `index` fields.
    #[must_use]
    pub fn from_normalized(hosts: &[NormalizedHost<'_>], min_ring_size: u64, max_ring_size: u64) -> Ring {
        let (min_weight, _) = weight_bounds(hosts);
        let scale = ring_scale(min_weight, clamp_ring_size(min_ring_size), clamp_ring_size(max_ring_size));
        let mut points = ring_points(hosts, scale);
        // Envoy: std::sort by hash only. Ties (same hash) need two hosts with the same key, or an
        // xxHash64 collision; Envoy's order there is whatever its unstable sort leaves, ours is
        // build order (stable sort) — the one place the two can differ.
        points.sort_by_key(|&(hash, _)| hash);
        let (hashes, hosts) = points.into_iter().unzip();
        Ring { hashes, hosts }
    }

    /// Host index for a request hash, None when empty.
    #[must_use]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        self.pick_attempt(hash, 0)
    }

    /// Envoy's `Ring::chooseHost(hash, attempt)`: attempt `n` (a retry after a host predicate
    /// rejected the previous pick) takes the point `n` places further round the ring.
    #[must_use]
    pub fn pick_attempt(&self, hash: u64, attempt: u32) -> Option<usize> {
        let len = self.hashes.len();
        if len == 0 {
            return None;
        }
        // Envoy's ketama binary search finds the first point with hash >= h, wrapping to 0 when
        // there is none; `partition_point` computes exactly that index.
        let first = self.hashes.partition_point(|&point| point < hash);
        let start = if first == len { 0 } else { first };
        // (start + attempt) % len without overflow: start < len, so reduce attempt first.
        let offset = usize::try_from(attempt).map_or(0, |a| a % len);
        let slot = (start + offset) % len;
        self.hosts.get(slot).copied()
    }

    /// Number of points on the ring (Envoy's `ring_hash_lb.size` gauge reports the planned size,
    /// `ceil(scale)`, which can differ from this by one through float rounding).
    #[must_use]
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when the ring has no points (no hosts, or a ring size of 0): `pick` returns None.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The points in ring order as `(hash, host index)`, for admin dumps and checks against
    /// Envoy's `ring hash: host=... hash=...` trace log.
    pub fn entries(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.hashes.iter().copied().zip(self.hosts.iter().copied())
    }
}

/// Ring sizes above Envoy's validated maximum are treated as that maximum.
pub(super) fn clamp_ring_size(size: u64) -> u64 {
    size.min(RING_SIZE_LIMIT)
}

/// Envoy's `scale`: the least-weighted host gets a whole number of points (at least
/// `min_ring_size * weight` of them), unless that exceeds `max_ring_size`:
/// `min(ceil(min_w * min_ring) / min_w, max_ring)`.
pub(super) fn ring_scale(min_weight: f64, min_ring_size: u64, max_ring_size: u64) -> f64 {
    let wanted = (min_weight * min_ring_size as f64).ceil() / min_weight;
    // std::min(a, b) returns a unless b < a; identical to f64::min for the non-NaN values here.
    wanted.min(max_ring_size as f64)
}

/// Envoy's ring fill loop: running sums `target_hashes += scale * weight` and
/// `current_hashes += 1` across all hosts, so fractional shares carry over to the next host.
/// Each point hashes `key + "_" + i` with i counting from 0 per host.
pub(super) fn ring_points(hosts: &[NormalizedHost<'_>], scale: f64) -> Vec<(u64, usize)> {
    // Envoy reserves ceil(scale) (<= max_ring_size <= RING_SIZE_LIMIT, so the cast is exact).
    // Normalized weights sum to 1 within a few ulps, so the loop makes ceil(scale) points, give
    // or take one; the cap only stops callers whose "normalized" weights sum far above 1.
    let planned = scale.ceil().clamp(0.0, RING_SIZE_LIMIT as f64) as usize;
    let cap = planned.saturating_add(hosts.len());
    let mut points = Vec::with_capacity(planned);
    let mut key = String::new();
    let mut current = 0.0_f64;
    let mut target = 0.0_f64;
    for host in usable(hosts) {
        // Unconfirmed corner: a compiler allowed to fuse this into an FMA (e.g. clang on arm64)
        // could round differently; x86-64 builds of Envoy and Rust never fuse.
        target += scale * host.weight;
        key.clear();
        key.push_str(host.key);
        key.push('_');
        let prefix = key.len();
        let mut replica: u64 = 0;
        while current < target && points.len() < cap {
            points.push((replica_hash(&mut key, prefix, replica), host.index));
            replica += 1;
            current += 1.0;
        }
    }
    points
}

/// xxHash64 of `key_prefix + decimal(replica)` (Envoy: `absl::StrCat("", i)` appended to the
/// `key + '_'` buffer).
pub(super) fn replica_hash(key: &mut String, prefix: usize, replica: u64) -> u64 {
    key.truncate(prefix);
    // Writing into a String cannot fail.
    let _ = write!(key, "{replica}");
    xx_hash64(key.as_bytes())
}
