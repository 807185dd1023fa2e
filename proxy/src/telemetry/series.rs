//! Bounded metric series. A sidecar lives for weeks while the mesh around it churns: every
//! cluster, listener and secret it ever saw would otherwise leave its series in
//! `/stats/prometheus` (and in memory) for good. Envoy frees a removed cluster's stats; the
//! Prometheus exporter we use cannot remove a series, but it can forget one that nobody has
//! updated for a while (`idle_timeout`). This module decides which series stay:
//!
//! - series whose labels name a cluster (`envoy_cluster_name`), a listener (`listener`) or a
//!   secret (`secret`) are touched while that object is live, and left to expire once it is
//!   gone, so the handles a live cluster caches never go stale however quiet it is;
//! - Istio's traffic series (`istio_*`) expire when no traffic has updated them for the expiry
//!   time (what istio-proxy's `rotation_interval` does, but only for idle series); the
//!   per-thread caches that hold their handles re-register an entry unused for half of it;
//! - every other series has a label set bounded by the code (`type`, `kind`, `reason`, …) or a
//!   stat prefix from config, and is touched for the life of the process.
//!
//! The recorder wraps the exporter's and keeps a clone of each counter and gauge handle it hands
//! out (histograms are `istio_*` only); [`maintain`] touches the live ones.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

/// How long an unowned or orphaned series survives without an update (`--stats-expiry-s`).
static EXPIRY: OnceLock<Duration> = OnceLock::new();

/// The default expiry: long enough that a quiet but live series never flaps, short enough that
/// a day of churn cannot pile up.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

/// The expiry in force (the default until [`set_expiry`]).
pub fn expiry() -> Duration {
    EXPIRY.get().copied().unwrap_or(DEFAULT_EXPIRY)
}

/// Sets the expiry once, before the recorder is built; later calls are ignored.
pub fn set_expiry(d: Duration) {
    let _ = EXPIRY.set(d.max(Duration::from_secs(1)));
}

/// Whether a handle cached at `last_used` can still be trusted to be registered: the exporter
/// forgets a series only after a whole expiry without an update, so half of it is safe.
pub fn fresh(last_used: Instant, now: Instant) -> bool {
    now.saturating_duration_since(last_used) < expiry() / 2
}

/// Who a series belongs to, read off its name and labels.
#[derive(Debug, PartialEq, Eq)]
enum Owner<'a> {
    Cluster(&'a str),
    Listener(&'a str),
    Secret(&'a str),
    /// Updated by traffic; expires when idle.
    Traffic,
    Process,
}

fn owner(key: &Key) -> Owner<'_> {
    if key.name().starts_with("istio_") {
        return Owner::Traffic;
    }
    for l in key.labels() {
        match l.key() {
            "envoy_cluster_name" => return Owner::Cluster(l.value()),
            "listener" => return Owner::Listener(l.value()),
            "secret" => return Owner::Secret(l.value()),
            _ => {}
        }
    }
    Owner::Process
}

/// The objects alive now, as the maintenance pass asks for them.
#[derive(Debug, Default)]
pub struct Live {
    /// Cluster names.
    pub clusters: HashSet<String>,
    /// Listener names.
    pub listeners: HashSet<String>,
    /// Secret names.
    pub secrets: HashSet<String>,
}

impl Live {
    fn owns(&self, o: &Owner<'_>) -> bool {
        match o {
            Owner::Cluster(n) => self.clusters.contains(*n),
            Owner::Listener(n) => self.listeners.contains(*n),
            Owner::Secret(n) => self.secrets.contains(*n),
            Owner::Process => true,
            Owner::Traffic => false,
        }
    }
}

enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

struct Kept {
    handle: Handle,
    /// When a pass first found the owner gone (touching stops then).
    orphaned: Option<Instant>,
}

type KeptMap = Mutex<HashMap<Key, Kept>>;

fn kept() -> &'static KeptMap {
    static KEPT: OnceLock<KeptMap> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

thread_local! {
    /// Process-owned keys this thread has already handed to [`kept`]: their handles never
    /// change (they never expire), so later registrations skip the shared lock.
    static SEEN: std::cell::RefCell<std::collections::HashSet<u64>> = Default::default();
}

fn keep(key: &Key, handle: Handle) {
    let owner = owner(key);
    if owner == Owner::Traffic {
        return;
    }
    // The per-connection registrations (`isthmus_tls_handshakes_total`, …) are process-owned.
    let process = owner == Owner::Process;
    if process && SEEN.with(|s| s.borrow().contains(&key.get_hash())) {
        return;
    }
    let mut m = kept().lock().unwrap_or_else(|p| p.into_inner());
    // Overwrite: after an expiry the registry hands out a new handle for the same key.
    match m.get_mut(key) {
        Some(k) => *k = Kept { handle, orphaned: None },
        None => {
            m.insert(key.clone(), Kept { handle, orphaned: None });
        }
    }
    drop(m);
    if process {
        SEEN.with(|s| s.borrow_mut().insert(key.get_hash()));
    }
}

/// The process recorder: the exporter's, keeping a clone of each counter and gauge it hands out.
pub struct Bounded(pub PrometheusRecorder);

impl Recorder for Bounded {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let c = self.0.register_counter(key, metadata);
        keep(key, Handle::Counter(c.clone()));
        c
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let g = self.0.register_gauge(key, metadata);
        keep(key, Handle::Gauge(g.clone()));
        g
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

/// One pass: touches every kept series whose owner is live (an update of zero resets the
/// exporter's idle clock without changing the value) and stops keeping those whose owner has
/// been gone for a whole expiry; returns how many series are kept.
pub fn maintain(live: &Live, now: Instant) -> usize {
    let mut m = kept().lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|key, k| {
        if live.owns(&owner(key)) {
            k.orphaned = None;
            match &k.handle {
                Handle::Counter(c) => c.increment(0),
                Handle::Gauge(g) => g.increment(0.0),
            }
            return true;
        }
        let since = *k.orphaned.get_or_insert(now);
        now.saturating_duration_since(since) < expiry()
    });
    m.len()
}

/// Runs the maintenance for the life of the process: histogram upkeep every second (the
/// exporter's own thread is not started), touches a quarter expiry apart, and a render each
/// expiry so idle series are freed even when nobody scrapes.
pub async fn run(handle: PrometheusHandle, live: Arc<dyn Fn() -> Live + Send + Sync>) {
    // Upkeep drains the histograms' raw samples (three per request) into their buckets, and
    // until then they are heap, ~8 bytes each in the exporter's atomic blocks: at 55k req/s,
    // 5 s of them is ~7 MB, 1 s ~1.4 MB.
    // The touches walk every kept series under a lock, so they keep their slower pace.
    let touch_every = (expiry() / 4).min(Duration::from_secs(5));
    let period = touch_every.min(Duration::from_secs(1));
    // Whole ticks per touch, counted rather than timed so jitter never skips one.
    let ticks_per_touch = (touch_every.as_millis() / period.as_millis().max(1)).max(1);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u128 = 0;
    let mut last_render = crate::clock::now();
    loop {
        tick.tick().await;
        handle.run_upkeep();
        let now = crate::clock::now();
        if ticks.is_multiple_of(ticks_per_touch) {
            maintain(&live(), now);
        }
        ticks += 1;
        if now.saturating_duration_since(last_render) >= expiry() {
            drop(handle.render());
            last_render = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        Key::from_parts(name, labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect::<Vec<_>>())
    }

    #[test]
    fn owners_are_read_from_names_and_labels() {
        assert_eq!(owner(&key("envoy_cluster_upstream_rq_total", &[("envoy_cluster_name", "a")])), Owner::Cluster("a"));
        assert_eq!(owner(&key("isthmus_downstream_cx_total", &[("listener", "l")])), Owner::Listener("l"));
        assert_eq!(owner(&key("isthmus_tls_cert_expiry_seconds", &[("secret", "s")])), Owner::Secret("s"));
        assert_eq!(owner(&key("istio_requests_total", &[("envoy_cluster_name", "a")])), Owner::Traffic);
        assert_eq!(owner(&key("xds_acked_version", &[("type", "cds")])), Owner::Process);
    }

    #[test]
    fn a_handle_is_fresh_for_half_the_expiry() {
        let t = crate::clock::now();
        assert!(fresh(t, t + expiry() / 2 - Duration::from_millis(1)));
        assert!(!fresh(t, t + expiry() / 2));
    }
}
