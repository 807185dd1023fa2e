//! The overload manager at run time: samples the heap every `refresh_interval`, turns the
//! configured actions on and off at their thresholds, and answers the request path's one
//! question — is this action on? — with an atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::config::overload::{Action, HeapOverload};

static ACTIVE: AtomicU8 = AtomicU8::new(0);
/// Woken whenever the set of active actions changes.
static CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Whether `action` is on now.
pub fn active(action: Action) -> bool {
    ACTIVE.load(Ordering::Relaxed) & action.bit() != 0
}

/// Returns once `action` is off (at once when it is).
pub async fn until_off(action: Action) {
    loop {
        let changed = CHANGED.notified();
        tokio::pin!(changed);
        // Registered before the check, so a change between the two is not missed.
        changed.as_mut().enable();
        if !active(action) {
            return;
        }
        changed.await;
    }
}

/// glibc's allocator statistics, the one place they are read.
#[cfg(target_env = "gnu")]
fn mallinfo() -> libc::mallinfo2 {
    // SAFETY: `mallinfo2` reads allocator statistics; it has no preconditions.
    unsafe { libc::mallinfo2() }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: arena and mmap'd
/// chunks in use), the counterpart of Envoy's tcmalloc heap size less its free pages.
#[cfg(target_env = "gnu")]
pub fn heap_in_use() -> u64 {
    let m = mallinfo();
    (m.uordblks as u64).saturating_add(m.hblkhd as u64)
}

/// Without glibc: the resident set.
#[cfg(not(target_env = "gnu"))]
pub fn heap_in_use() -> u64 {
    resident_bytes().unwrap_or(0)
}

/// The process's resident set in bytes, from `/proc/self/statm` (`None` where it is not there).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages * 4096)
}

/// The set of actions on at `pressure`.
fn actions_at(cfg: &HeapOverload, pressure: f64) -> u8 {
    cfg.actions.iter().filter(|(_, threshold)| pressure >= *threshold).fold(0, |bits, (a, _)| bits | a.bit())
}

/// Runs the heap monitor for the life of the process.
pub async fn run(cfg: HeapOverload) {
    let mut tick = tokio::time::interval(cfg.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pressure_gauge = metrics::gauge!("envoy_overload_pressure", "resource" => "envoy.resource_monitors.fixed_heap");
    let mut last_trim: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        let pressure = heap_in_use() as f64 / cfg.max_bytes as f64;
        pressure_gauge.set(pressure);
        let bits = actions_at(&cfg, pressure);
        let before = ACTIVE.swap(bits, Ordering::Relaxed);
        if before != bits {
            CHANGED.notify_waiters();
        }
        for (a, _) in &cfg.actions {
            let on = bits & a.bit() != 0;
            metrics::gauge!("envoy_overload_action_active", "action" => a.name()).set(if on { 1.0 } else { 0.0 });
            if on != (before & a.bit() != 0) {
                tracing::warn!(action = a.name(), on, pressure, "overload action changed");
            }
        }
        if bits & Action::ShrinkHeap.bit() != 0 {
            // As Envoy's: at most every 10 s while on.
            let now = crate::clock::now();
            if last_trim.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(10)) {
                trim();
                last_trim = Some(now);
            }
        }
    }
}

/// Free heap worth giving back: below this, trimming costs more page faults than it saves.
const RELEASE_AT: u64 = 4 << 20;
/// How often the free heap is looked at.
const RELEASE_EVERY: Duration = Duration::from_secs(5);
/// How long the Envoy descriptor pool stays built after its last use (a push, a config dump):
/// pushes often come in bursts, and rebuilding it costs milliseconds of CPU.
const DESCRIPTORS_IDLE: Duration = Duration::from_secs(30);

/// Gives freed heap back to the system in the background for the life of the process, as
/// tcmalloc (Envoy's allocator) does: glibc keeps what the workers free in their arenas, so a
/// burst (thousands of connections, a large push) would otherwise stay resident for good.
/// The descriptor pool that config conversion uses is dropped first once it has been idle.
pub async fn release_free_heap() {
    let mut tick = tokio::time::interval(RELEASE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        xds_client::json::release_pool(DESCRIPTORS_IDLE);
        if heap_free() >= RELEASE_AT {
            trim();
        }
    }
}

/// Bytes the allocator holds free in its arenas (glibc's `mallinfo2().fordblks`).
#[cfg(target_env = "gnu")]
pub fn heap_free() -> u64 {
    mallinfo().fordblks as u64
}

/// Nothing is known to be free outside glibc.
#[cfg(not(target_env = "gnu"))]
pub fn heap_free() -> u64 {
    0
}

/// Gives the allocator's free pages back to the system: called once the start-up config is
/// converted, whose parse trees (YAML, dynamic messages) leave a few MB of freed heap behind.
#[cfg(target_env = "gnu")]
pub(crate) fn trim() {
    // SAFETY: `malloc_trim` returns free memory at the top of the heap to the system; it has
    // no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// Nothing to trim outside glibc.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_turn_on_at_their_thresholds() {
        let cfg = HeapOverload {
            max_bytes: 100,
            refresh: Duration::from_secs(1),
            actions: vec![(Action::ShrinkHeap, 0.9), (Action::StopAcceptingRequests, 0.95)],
        };
        assert_eq!(actions_at(&cfg, 0.5), 0);
        assert_eq!(actions_at(&cfg, 0.9), Action::ShrinkHeap.bit());
        assert_eq!(actions_at(&cfg, 1.2), Action::ShrinkHeap.bit() | Action::StopAcceptingRequests.bit());
    }

    #[test]
    fn the_heap_in_use_grows_with_an_allocation() {
        let before = heap_in_use();
        let v = vec![1u8; 8 << 20];
        assert!(heap_in_use() >= before + (8 << 20) - 4096, "{before} → {}", heap_in_use());
        drop(v);
    }

    fn rss() -> u64 {
        resident_bytes().expect("/proc/self/statm")
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn freed_heap_below_a_live_chunk_is_seen_and_given_back() {
        // 32 MiB in small chunks (below the mmap threshold, so in the arena), then one kept
        // above them so glibc's own trimming at the top cannot return them on free.
        let chunks: Vec<Box<[u8; 4096]>> = (0..8192).map(|i| Box::new([i as u8; 4096])).collect();
        let pin = Box::new([7u8; 4096]);
        let before_free = heap_free();
        drop(chunks);
        assert!(heap_free() >= before_free + (30 << 20), "free {before_free} → {}", heap_free());
        let resident = rss();
        trim();
        assert!(rss() + (16 << 20) <= resident, "RSS {resident} → {}", rss());
        assert_eq!(pin[0], 7);
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn the_descriptor_pool_is_megabytes_and_released_whole() {
        xds_client::json::release_pool(Duration::ZERO);
        let before = heap_in_use();
        let pool = xds_client::json::pool().unwrap();
        let built = heap_in_use();
        assert!(built >= before + (3 << 20), "the pool is {} bytes", built.saturating_sub(before));
        drop(pool);
        assert!(xds_client::json::release_pool(Duration::ZERO));
        assert!(heap_in_use() <= before + (256 << 10), "{before} → {built} → {}", heap_in_use());
    }
}
