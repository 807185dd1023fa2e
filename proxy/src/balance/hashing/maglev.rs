//! Envoy's `MAGLEV` table: build and lookup, bit for bit (see the parent module).

use super::*;

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
pub(super) struct BuildEntry {
    offset: u64,
    skip: u64,
    weight: f64,
    target_weight: f64,
    next: u64,
}

/// Marks a slot not yet claimed while filling.
pub(super) const FREE: u32 = u32::MAX;

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
pub(super) fn is_prime(n: u64) -> bool {
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
pub(super) fn build_entry(host: &NormalizedHost<'_>, table_size: u64) -> BuildEntry {
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
pub(super) fn permutation(entry: &BuildEntry, table_size: u64) -> u64 {
    entry.offset.wrapping_add(entry.skip.wrapping_mul(entry.next)) % table_size
}

/// Envoy's `OriginalMaglevTable::constructImplementationInternals` (the paper's listing 1 with
/// weights): on pass `iteration`, a host takes a turn only if `iteration * weight >=
/// target_weight`, and each turn raises its target by `max_weight` — so a max-weight host claims
/// a slot every pass and a host of a third of that weight every third pass.
pub(super) fn fill_table(entries: &mut [BuildEntry], table_size: u64, max_weight: f64) -> Vec<u32> {
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
pub(super) fn claim_slot(table: &mut [u32], entry: &mut BuildEntry, table_size: u64, position: u32) {
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
