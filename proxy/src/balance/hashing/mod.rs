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

use xxhash_rust::xxh64::xxh64;

mod maglev;
mod ring;
#[cfg(test)]
mod tests;

pub use self::maglev::{is_valid_maglev_table_size, Maglev};
pub use self::ring::Ring;

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
pub(super) fn push_normalized<'a>(
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
pub(super) fn effective_weight(weight: u32) -> u32 {
    weight.max(1)
}

/// Only positive, finite weights can be placed (Envoy never produces others).
pub(super) fn usable<'a, 'h>(hosts: &'h [NormalizedHost<'a>]) -> impl Iterator<Item = &'h NormalizedHost<'a>> {
    hosts.iter().filter(|h| h.weight.is_finite() && h.weight > 0.0)
}

/// `(min, max)` normalized weight, seeded with 1.0 and 0.0 as in `ThreadAwareLoadBalancerBase::refresh`.
pub(super) fn weight_bounds(hosts: &[NormalizedHost<'_>]) -> (f64, f64) {
    usable(hosts).fold((1.0_f64, 0.0_f64), |(lo, hi), h| (lo.min(h.weight), hi.max(h.weight)))
}
