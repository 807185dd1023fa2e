//! Consistent-hash host selection that reproduces Envoy's `RING_HASH` and `MAGLEV` load balancers
//! bit for bit, so a request hash picks the same upstream host here as it would in Envoy given the
//! same host keys and weights. That matters when Isthmus and Envoy proxies share a fleet (session
//! affinity, cache locality): they must agree on where a key lives.
//!
//! Everything follows Envoy's sources (envoyproxy/envoy, paths below; function names are cited
//! instead of line numbers because lines drift between releases — the versions read were commits
//! `0d2acde2` (`ring_hash_lb.cc`), `a6b64f4b` (`maglev_lb.cc`), `0336fd61`
//! (`thread_aware_lb_impl.cc`); the test vectors below come from `ring_hash_lb_test.cc` at
//! `13e9fdb2` and `maglev_lb_test.cc` at `08417eb6`, under
//! `test/extensions/load_balancing_policies/`):
//!
//! * `source/common/common/hash.h`, `HashUtil::xxHash64`: classic XXH64, seed 0 by default.
//! * `source/extensions/load_balancing_policies/common/thread_aware_lb_impl.cc`,
//!   `normalizeHostWeights` / `normalizeLocalityWeights`: weights become fractions summing to 1,
//!   in `double`, in a precise order of operations (reproduced here so the floats are identical).
//! * `.../ring_hash/ring_hash_lb.cc`, `RingHashLoadBalancer::Ring::Ring` (build) and
//!   `Ring::chooseHost` (lookup).
//! * `.../maglev/maglev_lb.cc`, `MaglevTable::constructMaglevTableInternal`,
//!   `OriginalMaglevTable::constructImplementationInternals`, `MaglevTable::permutation` and
//!   `OriginalMaglevTable::chooseHost`; `DegenerateMaglevTable` (one host) is a shortcut with the
//!   same results.
//!
//! Not here, on purpose (the caller owns them):
//! * The host key: Envoy hashes the `envoy.lb` metadata `hash_key` if set, else the hostname when
//!   `use_hostname_for_hashing`, else `address()->asString()` (`HashingLoadBalancer::hashKey` in
//!   `thread_aware_lb_impl.h`) — e.g. `10.0.0.1:8080`, `[::1]:8080`. Pass that string as the key.
//! * Priority choice: `ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost` first picks the
//!   priority with `LoadBalancerBase::choosePriority(hash)`, i.e. `hash % 100 + 1` walked against
//!   the cumulative healthy (then degraded) priority load, then looks the *same* hash up in that
//!   priority's ring/table. With no hash policy result Envoy uses a random 64-bit value.
//! * `hash_balance_factor` (bounded load) and the `MURMUR_HASH_2` ring hash function.
//!
//! Retries: `pick_attempt` mirrors `chooseHost(hash, attempt)` for retry host predicates.

use std::fmt::Write as _;

use xxhash_rust::xxh64::xxh64;

/// Envoy's default `minimum_ring_size` (`RingHashLoadBalancer::DefaultMinRingSize`).
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy's default `maximum_ring_size` (`RingHashLoadBalancer::DefaultMaxRingSize`).
pub const DEFAULT_MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Upper bound Envoy's config validation puts on both ring sizes (`ring_hash.proto`,
/// `lte: 8388608`); larger values are clamped here so a bad config cannot exhaust memory.
pub const RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;
/// Envoy's default Maglev `table_size` (`MaglevTable::DefaultTableSize`, the paper's 65537).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
/// Largest Maglev table Envoy accepts (`maglev.proto`, `lte: 5000011`).
pub const MAGLEV_TABLE_SIZE_LIMIT: u64 = 5_000_011;

/// One host as the hashing LBs see it: its address string as Envoy formats it (e.g.
/// "10.0.0.1:8080"), and weight. Zero weights count as 1, as Envoy's `HostImpl::weight` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashHost<'a> {
    /// The string hashed onto the ring/table (address, hostname or metadata `hash_key`).
    pub key: &'a str,
    /// `load_balancing_weight`.
    pub weight: u32,
}

/// A host with its weight already normalized the way Envoy does it (all weights of a priority sum
/// to ~1.0), plus the caller's index returned by `pick`. Needed for locality-weighted balancing,
/// where the normalized weight also depends on the locality's weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizedHost<'a> {
    /// The string hashed onto the ring/table.
    pub key: &'a str,
    /// Normalized weight; entries that are not finite and positive are ignored.
    pub weight: f64,
    /// What `pick` returns for this host (normally its index in the caller's host list).
    pub index: usize,
}

/// One locality of a priority for `normalize_locality_weights`: its `load_balancing_weight` and
/// the indices (into the shared host slice) of its hosts, like Envoy's `hostsPerLocality()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalityHosts<'i> {
    /// Locality weight; 0 leaves the locality's hosts out, as in Envoy.
    pub weight: u32,
    /// Indices into the host slice.
    pub hosts: &'i [usize],
}

/// Envoy's xxHash64 (seed 0) of a byte string — used for request hash keys too
/// (`HashUtil::xxHash64`, which calls `XXH64(data, len, 0)`).
#[must_use]
pub fn xx_hash64(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

/// Envoy's `normalizeHostWeights` with locality weight 1.0: `weight / sum` in `double`; `pick`
/// will return positions in `hosts`. A weight sum above `u32::MAX` yields nothing (Envoy hits
/// `IS_ENVOY_BUG` and returns before adding any host).
#[must_use]
pub fn normalize_host_weights<'a>(hosts: &[HashHost<'a>]) -> Vec<NormalizedHost<'a>> {
    let mut out = Vec::with_capacity(hosts.len());
    let all: Vec<usize> = (0..hosts.len()).collect();
    push_normalized(hosts, &all, 1.0, &mut out);
    out
}

/// Envoy's `normalizeLocalityWeights`: each host gets `weight * (locality_weight / locality_sum) /
/// host_sum_in_locality`, localities of weight 0 are skipped and all-zero weights give nothing.
/// Host indices out of range are ignored. `pick` returns indices into `hosts`.
#[must_use]
pub fn normalize_locality_weights<'a>(
    hosts: &[HashHost<'a>],
    localities: &[LocalityHosts<'_>],
) -> Vec<NormalizedHost<'a>> {
    let mut out = Vec::new();
    // Envoy only logs (IS_ENVOY_BUG) when this sum passes u32::MAX and carries on; u64 can't overflow.
    let sum: u64 = localities.iter().map(|l| u64::from(l.weight)).sum();
    if sum == 0 {
        return out;
    }
    for locality in localities.iter().filter(|l| l.weight != 0) {
        let locality_weight = f64::from(locality.weight) / sum as f64;
        push_normalized(hosts, locality.hosts, locality_weight, &mut out);
    }
    out
}

/// Envoy's `normalizeHostWeights(hosts, normalized_locality_weight, ...)` for the hosts at
/// `indices`. The expression `weight * locality_weight / sum` is evaluated in the same order.
fn push_normalized<'a>(
    hosts: &[HashHost<'a>],
    indices: &[usize],
    locality_weight: f64,
    out: &mut Vec<NormalizedHost<'a>>,
) {
    let members: Vec<(usize, &HashHost<'a>)> = indices.iter().filter_map(|&i| hosts.get(i).map(|h| (i, h))).collect();
    let sum: u64 = members.iter().map(|(_, h)| u64::from(effective_weight(h.weight))).sum();
    if sum > u64::from(u32::MAX) {
        return;
    }
    for (index, host) in members {
        let weight = f64::from(effective_weight(host.weight)) * locality_weight / sum as f64;
        out.push(NormalizedHost { key: host.key, weight, index });
    }
}

/// Envoy's `HostImpl::weight` setter stores `max(1, weight)`.
fn effective_weight(weight: u32) -> u32 {
    weight.max(1)
}

/// Only positive, finite weights can be placed (Envoy never produces others).
fn usable<'a, 'h>(hosts: &'h [NormalizedHost<'a>]) -> impl Iterator<Item = &'h NormalizedHost<'a>> {
    hosts.iter().filter(|h| h.weight.is_finite() && h.weight > 0.0)
}

/// `(min, max)` normalized weight, seeded with 1.0 and 0.0 as in `ThreadAwareLoadBalancerBase::refresh`.
fn weight_bounds(hosts: &[NormalizedHost<'_>]) -> (f64, f64) {
    usable(hosts).fold((1.0_f64, 0.0_f64), |(lo, hi), h| (lo.min(h.weight), hi.max(h.weight)))
}

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
fn clamp_ring_size(size: u64) -> u64 {
    size.min(RING_SIZE_LIMIT)
}

/// Envoy's `scale`: the least-weighted host gets a whole number of points (at least
/// `min_ring_size * weight` of them), unless that exceeds `max_ring_size`:
/// `min(ceil(min_w * min_ring) / min_w, max_ring)`.
fn ring_scale(min_weight: f64, min_ring_size: u64, max_ring_size: u64) -> f64 {
    let wanted = (min_weight * min_ring_size as f64).ceil() / min_weight;
    // std::min(a, b) returns a unless b < a; identical to f64::min for the non-NaN values here.
    wanted.min(max_ring_size as f64)
}

/// Envoy's ring fill loop: running sums `target_hashes += scale * weight` and
/// `current_hashes += 1` across all hosts, so fractional shares carry over to the next host.
/// Each point hashes `key + "_" + i` with i counting from 0 per host.
fn ring_points(hosts: &[NormalizedHost<'_>], scale: f64) -> Vec<(u64, usize)> {
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
fn replica_hash(key: &mut String, prefix: usize, replica: u64) -> u64 {
    key.truncate(prefix);
    // Writing into a String cannot fail.
    let _ = write!(key, "{replica}");
    xx_hash64(key.as_bytes())
}

/// Envoy's Maglev table: every slot of a prime-sized table owned by one host, hosts taking turns
/// (weighted) to claim their next preferred free slot; a request goes to `table[hash % size]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maglev {
    /// Slot -> position in `hosts`; empty for the one-host (degenerate) and no-host cases.
    table: Vec<u32>,
    /// Caller host indices in build (key-sorted) order.
    hosts: Vec<usize>,
}

/// Per-host build state, Envoy's `MaglevTable::TableBuildEntry`.
struct BuildEntry {
    offset: u64,
    skip: u64,
    weight: f64,
    target_weight: f64,
    next: u64,
}

/// Marks a slot not yet claimed while filling.
const FREE: u32 = u32::MAX;

impl Maglev {
    /// Builds Envoy's table for `hosts` (non-locality-weighted path); `pick` returns positions in
    /// `hosts`. Sizes Envoy would reject (not prime, or above `MAGLEV_TABLE_SIZE_LIMIT`) give an
    /// empty table whose `pick` returns None — a non-prime size could make the fill loop spin.
    #[must_use]
    pub fn new(hosts: &[HashHost<'_>], table_size: u64) -> Maglev {
        Maglev::from_normalized(&normalize_host_weights(hosts), table_size)
    }

    /// Builds the table from already-normalized weights (e.g. locality-weighted), as
    /// `MaglevTable::constructMaglevTableInternal` does; `pick` returns the hosts' `index` fields.
    #[must_use]
    pub fn from_normalized(hosts: &[NormalizedHost<'_>], table_size: u64) -> Maglev {
        if !is_valid_maglev_table_size(table_size) {
            return Maglev::default();
        }
        // Envoy sorts by (key, host pointer, weight) so the table doesn't depend on host order;
        // equal keys fall back to pointer order in Envoy and to input order here.
        let mut sorted: Vec<&NormalizedHost<'_>> = usable(hosts).collect();
        sorted.sort_by(|a, b| a.key.cmp(b.key));
        let indices: Vec<usize> = sorted.iter().map(|h| h.index).collect();
        if indices.len() <= 1 || u32::try_from(indices.len()).map_or(true, |n| n == FREE) {
            // One host: Envoy's DegenerateMaglevTable always returns it. More than u32::MAX - 1
            // hosts can't exist (Envoy caps the weight sum at u32::MAX); refuse rather than wrap.
            let hosts = if indices.len() == 1 { indices } else { Vec::new() };
            return Maglev { table: Vec::new(), hosts };
        }
        let (_, max_weight) = weight_bounds(hosts);
        let mut entries: Vec<BuildEntry> = sorted.iter().map(|h| build_entry(h, table_size)).collect();
        let table = fill_table(&mut entries, table_size, max_weight);
        Maglev { table, hosts: indices }
    }

    /// Host index for a request hash, None when empty.
    #[must_use]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        self.pick_attempt(hash, 0)
    }

    /// Envoy's `chooseHost(hash, attempt)`: retries XOR the hash with `!0 - attempt + 1` (i.e.
    /// `-attempt`) to land on a far-away slot.
    #[must_use]
    pub fn pick_attempt(&self, hash: u64, attempt: u32) -> Option<usize> {
        if self.table.is_empty() {
            // Degenerate table: the single host (if any) whatever the hash.
            return self.hosts.first().copied();
        }
        let hash = if attempt > 0 { hash ^ u64::from(attempt).wrapping_neg() } else { hash };
        let slot = hash % self.table.len() as u64;
        let position = *self.table.get(usize::try_from(slot).ok()?)?;
        self.hosts.get(usize::try_from(position).ok()?).copied()
    }

    /// Table size, 0 when the table is empty or degenerate (one host).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when there is no host at all, so `pick` returns None.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// Whether Envoy accepts this Maglev table size: prime (checked in the `MaglevLoadBalancer`
/// constructor) and at most `MAGLEV_TABLE_SIZE_LIMIT` (proto validation).
#[must_use]
pub fn is_valid_maglev_table_size(table_size: u64) -> bool {
    table_size <= MAGLEV_TABLE_SIZE_LIMIT && is_prime(table_size)
}

/// Trial division; table sizes are at most ~5M so this is at most ~1100 divisions.
fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Envoy: `offset = xxHash64(key) % M`, `skip = xxHash64(key, seed 1) % (M - 1) + 1`.
fn build_entry(host: &NormalizedHost<'_>, table_size: u64) -> BuildEntry {
    let key = host.key.as_bytes();
    BuildEntry {
        offset: xxh64(key, 0) % table_size,
        skip: xxh64(key, 1) % (table_size - 1) + 1,
        weight: host.weight,
        target_weight: 0.0,
        next: 0,
    }
}

/// Envoy's `MaglevTable::permutation`: `(offset + skip * next) % M`, in wrapping u64 arithmetic.
fn permutation(entry: &BuildEntry, table_size: u64) -> u64 {
    entry.offset.wrapping_add(entry.skip.wrapping_mul(entry.next)) % table_size
}

/// Envoy's `OriginalMaglevTable::constructImplementationInternals` (the paper's listing 1 with
/// weights): on pass `iteration`, a host takes a turn only if `iteration * weight >=
/// target_weight`, and each turn raises its target by `max_weight` — so a max-weight host claims
/// a slot every pass and a host of a third of that weight every third pass.
fn fill_table(entries: &mut [BuildEntry], table_size: u64, max_weight: f64) -> Vec<u32> {
    let size = table_size as usize; // <= MAGLEV_TABLE_SIZE_LIMIT, fits any usize we build for.
    let mut table = vec![FREE; size];
    let mut filled = 0usize;
    // The max-weight host claims a slot on every pass, so at most `size` passes are needed; the
    // bound only makes termination evident.
    for iteration in 1..=u32::MAX {
        if filled >= size {
            break;
        }
        for (position, entry) in (0u32..).zip(entries.iter_mut()) {
            if filled >= size {
                break;
            }
            if f64::from(iteration) * entry.weight < entry.target_weight {
                continue;
            }
            entry.target_weight += max_weight;
            claim_slot(&mut table, entry, table_size, position);
            filled += 1;
        }
    }
    table
}

/// Walks `entry`'s permutation to its next free slot and takes it (a prime size guarantees the
/// walk visits every slot, and the caller only asks while some slot is free).
fn claim_slot(table: &mut [u32], entry: &mut BuildEntry, table_size: u64, position: u32) {
    for _ in 0..table_size {
        let slot = permutation(entry, table_size) as usize;
        entry.next += 1;
        if let Some(cell) = table.get_mut(slot) {
            if *cell == FREE {
                *cell = position;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let expected = vec![
            (5454692015285649509, 0),
            (7859399908942313493, 1),
            (13838424394637650569, 0),
            (16064866803292627174, 1),
        ];
        assert_eq!(ring.entries().collect::<Vec<_>>(), expected);
        assert_eq!(ring.pick(0), Some(0));

        let keys = local_keys(&[81, 82]);
        let ring = Ring::new(&unweighted(&keys), 3, DEFAULT_MAX_RING_SIZE);
        let expected = vec![
            (7859399908942313493, 0),
            (8241336090459785962, 1),
            (12882406409176325258, 1),
            (16064866803292627174, 0),
        ];
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
}
