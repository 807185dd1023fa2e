//! Istio's TCP metrics through cached handles: the standard label set of a connection (some
//! 25 labels) is built and registered once per (direction, peer principal, cluster) on each
//! worker thread, not once per connection, as `request_metrics` does for HTTP.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, Counter};

use super::istio_labels::{labels, Peer};
use super::series;
use crate::clock::now;

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
    key: Arc<Key>,
    fetched: Instant,
}

impl TcpHandles {
    /// The handles to count a connection's close with. A connection open for longer than half
    /// the series expiry may hold handles the exporter has forgotten since (no other
    /// connection of its label set updated them): fetch them again.
    pub fn at_close(&self) -> TcpHandles {
        if series::fresh(self.fetched, now()) {
            self.clone()
        } else {
            lookup(&self.key)
        }
    }
}

/// Label sets per thread before the cache starts over (bounds memory if clusters churn).
const MAX_ENTRIES: usize = 4096;

type Key = (bool, Option<String>, String);

thread_local! {
    static CACHE: RefCell<HashMap<Arc<Key>, TcpHandles>> = RefCell::new(HashMap::new());
}

/// The handles for a connection of `peer`.
pub fn handles(peer: &Peer<'_>) -> TcpHandles {
    lookup(&(peer.inbound, peer.principal.map(str::to_string), peer.cluster.to_string()))
}

fn lookup(key: &Key) -> TcpHandles {
    let now = now();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(h) = cache.get_mut(key) {
            // Unused for half the expiry: the exporter may have forgotten these handles.
            if series::fresh(h.fetched, now) {
                h.fetched = now;
                return h.clone();
            }
        }
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        let (inbound, principal, cluster) = key;
        let l = labels(&Peer { inbound: *inbound, principal: principal.as_deref(), cluster });
        let key = Arc::new(key.clone());
        let h = TcpHandles {
            opened: counter!("istio_tcp_connections_opened_total", &l),
            closed: counter!("istio_tcp_connections_closed_total", &l),
            received: counter!("istio_tcp_received_bytes_total", &l),
            sent: counter!("istio_tcp_sent_bytes_total", &l),
            key: key.clone(),
            fetched: now,
        };
        cache.insert(key, h.clone());
        h
    })
}
