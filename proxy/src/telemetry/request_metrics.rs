//! Istio's per-request metrics through cached handles. Registering a labelled metric with the
//! `metrics` recorder hashes and compares every label on each call (a fifth of a request's
//! instructions in a callgrind profile); the label sets a worker sees repeat, so each worker
//! thread keeps the four handles per label set and pays only a hash of the label values.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use metrics::{counter, histogram, Counter, Histogram};

/// The label values of one request that vary (the local workload's come from
/// [`istio_labels::local`](super::istio_labels::local)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Labels<'a> {
    /// Served by an inbound listener (`reporter="destination"`).
    pub inbound: bool,
    /// The downstream's SPIFFE id (inbound mTLS), else empty.
    pub peer_principal: &'a str,
    /// `destination_service_name`.
    pub cluster: &'a str,
    /// `request_protocol` is `grpc` rather than `http`.
    pub grpc: bool,
    /// `response_code`.
    pub code: u16,
    /// `grpc_response_status`.
    pub grpc_status: &'a str,
    /// `response_flags`.
    pub flags: &'a str,
    /// `destination_locality`.
    pub locality: &'a str,
}

struct Handles {
    key: OwnedLabels,
    /// Last use: an entry unused for half the series expiry is registered again.
    used: std::time::Instant,
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

#[derive(PartialEq, Eq)]
struct OwnedLabels {
    inbound: bool,
    peer_principal: String,
    cluster: String,
    grpc: bool,
    code: u16,
    grpc_status: String,
    flags: String,
    locality: String,
}

impl OwnedLabels {
    fn of(l: &Labels<'_>) -> Self {
        OwnedLabels {
            inbound: l.inbound,
            peer_principal: l.peer_principal.into(),
            cluster: l.cluster.into(),
            grpc: l.grpc,
            code: l.code,
            grpc_status: l.grpc_status.into(),
            flags: l.flags.into(),
            locality: l.locality.into(),
        }
    }

    fn matches(&self, l: &Labels<'_>) -> bool {
        self.code == l.code
            && self.grpc == l.grpc
            && self.cluster == l.cluster
            && self.flags == l.flags
            && self.grpc_status == l.grpc_status
            && self.locality == l.locality
            && self.inbound == l.inbound
            && self.peer_principal == l.peer_principal
    }
}

/// Label sets per thread before the cache starts over (bounds memory if codes or clusters churn).
const MAX_ENTRIES: usize = 4096;

/// The cache's keys are already hashes of the labels: the map uses them as they are instead
/// of hashing them a second time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Cache = HashMap<u64, Vec<Handles>, std::hash::BuildHasherDefault<PreHashed>>;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

fn register(l: &Labels<'_>) -> Handles {
    let peer = super::istio_labels::Peer {
        inbound: l.inbound,
        principal: (!l.peer_principal.is_empty()).then_some(l.peer_principal),
        cluster: l.cluster,
    };
    let mut labels = super::istio_labels::labels(&peer);
    labels.extend([
        ("request_protocol", if l.grpc { "grpc".into() } else { "http".into() }),
        ("response_code", l.code.to_string()),
        ("grpc_response_status", l.grpc_status.to_string()),
        ("response_flags", l.flags.to_string()),
        ("destination_locality", l.locality.to_string()),
    ]);
    Handles {
        key: OwnedLabels::of(l),
        used: crate::clock::now(),
        requests: counter!("istio_requests_total", &labels),
        duration: histogram!("istio_request_duration_milliseconds", &labels),
        request_bytes: histogram!("istio_request_bytes", &labels),
        response_bytes: histogram!("istio_response_bytes", &labels),
    }
}

/// Records one finished request.
pub fn record(l: &Labels<'_>, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
    let mut h = DefaultHasher::new();
    l.hash(&mut h);
    let hash = h.finish();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_ENTRIES && !cache.contains_key(&hash) {
            cache.clear();
        }
        let bucket = cache.entry(hash).or_default();
        let now = crate::clock::now();
        let idx = match bucket.iter().position(|x| x.key.matches(l)) {
            Some(i) if super::series::fresh(bucket[i].used, now) => i,
            Some(i) => {
                // The exporter may have forgotten an idle label set's series: register again.
                bucket[i] = register(l);
                i
            }
            None => {
                bucket.push(register(l));
                bucket.len() - 1
            }
        };
        if let Some(x) = bucket.get_mut(idx) {
            x.used = now;
            x.requests.increment(1);
            x.duration.record(duration_ms);
            x.request_bytes.record(request_bytes as f64);
            x.response_bytes.record(response_bytes as f64);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn labels(code: u16) -> Labels<'static> {
        Labels {
            inbound: false,
            peer_principal: "",
            cluster: "backend",
            grpc: false,
            code,
            grpc_status: "",
            flags: "-",
            locality: "r/z",
        }
    }

    /// Cached handles land on the same series a direct registration would, one per label set.
    #[test]
    fn cached_handles_count_per_label_set() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        metrics::with_local_recorder(&rec, || {
            for _ in 0..3 {
                record(&labels(200), 1.0, 10, 20);
            }
            record(&labels(503), 1.0, 0, 0);
        });
        let mut counts: Vec<(String, u64)> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == "istio_requests_total")
            .filter_map(|(k, _, _, v)| {
                let code = k.key().labels().find(|l| l.key() == "response_code")?.value().to_string();
                match v {
                    DebugValue::Counter(n) => Some((code, n)),
                    _ => None,
                }
            })
            .collect();
        counts.sort();
        assert_eq!(counts, vec![("200".to_string(), 3), ("503".to_string(), 1)]);
    }
}
