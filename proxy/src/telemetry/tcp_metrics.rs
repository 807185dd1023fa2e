//! Istio's TCP metrics through cached handles: the standard label set of a connection (some
//! 25 labels) is built and registered once per (direction, peer principal, cluster) on each
//! worker thread, not once per connection, as `request_metrics` does for HTTP.

use std::cell::RefCell;
use std::collections::HashMap;

use metrics::{counter, Counter};

use super::istio_labels::{labels, Peer};

/// The four TCP counters of one label set.
#[derive(Clone)]
pub struct TcpHandles {
    /// `istio_tcp_connections_opened_total`.
    pub opened: Counter,
    /// `istio_tcp_connections_closed_total`.
    pub closed: Counter,
    /// `istio_tcp_received_bytes_total`.
    pub received: Counter,
    /// `istio_tcp_sent_bytes_total`.
    pub sent: Counter,
}

/// Label sets per thread before the cache starts over (bounds memory if clusters churn).
const MAX_ENTRIES: usize = 4096;

type Key = (bool, Option<String>, String);

thread_local! {
    static CACHE: RefCell<HashMap<Key, TcpHandles>> = RefCell::new(HashMap::new());
}

/// The handles for a connection of `peer`.
pub fn handles(peer: &Peer<'_>) -> TcpHandles {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let key: Key = (peer.inbound, peer.principal.map(str::to_string), peer.cluster.to_string());
        if let Some(h) = cache.get(&key) {
            return h.clone();
        }
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        let l = labels(peer);
        let h = TcpHandles {
            opened: counter!("istio_tcp_connections_opened_total", &l),
            closed: counter!("istio_tcp_connections_closed_total", &l),
            received: counter!("istio_tcp_received_bytes_total", &l),
            sent: counter!("istio_tcp_sent_bytes_total", &l),
        };
        cache.insert(key, h.clone());
        h
    })
}
