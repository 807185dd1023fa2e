//! The set of running listeners, changed at run time (static start-up and LDS alike).
//!
//! An update that keeps the address swaps the config without rebinding: new connections get
//! the new version. When only filter chains changed (Envoy's filter-chain-only update), the
//! connections of the chains that changed or went finish their in-flight requests and close
//! (HTTP) or run out the drain time (TCP), and every other connection carries on; any other
//! change drains all of the old version's connections. A new address means a new socket; the old one stops
//! accepting. Identical re-pushes are recognised by the caller and never reach here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{bind, bind_at, serve, BindError, Ready, Shared, Version};

struct Running {
    current: Arc<ArcSwap<Version>>,
    addr: SocketAddr,
    stop: CancellationToken,
}

/// Running listeners by name.
pub struct ListenerManager {
    shared: Shared,
    running: Mutex<HashMap<String, Running>>,
}

impl ListenerManager {
    /// A manager whose listeners share `shared` (clusters, routes, drain, tracker).
    pub fn new(shared: Shared) -> Self {
        ListenerManager { shared, running: Mutex::new(HashMap::new()) }
    }

    /// The names of the listeners running now, bound or virtual (the owners of their series).
    pub fn names(&self) -> std::collections::HashSet<String> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: std::collections::HashSet<String> = running.keys().cloned().collect();
        names.extend(self.shared.virtuals.load().values().map(|v| v.name.clone()));
        names
    }

    /// Starts a listener or replaces its config; returns the bound address. A listener with
    /// `bind_to_port: false` binds nothing: it only receives connections handed off by a
    /// `use_original_dst` listener.
    pub fn upsert(&self, l: Arc<Ready>) -> Result<SocketAddr, BindError> {
        if !l.bind_to_port {
            self.remove(&l.name);
            let addr = l.address;
            self.shared.virtuals.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.retain(|_, v| v.name != l.name);
                for a in std::iter::once(addr).chain(l.additional_addresses.iter().copied()) {
                    m.insert(a, l.clone());
                }
                m
            });
            info!(listener = %l.name, %addr, "virtual listener (bind_to_port: false)");
            return Ok(addr);
        }
        self.remove_virtual(&l.name);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.get(&l.name) {
            let cur = r.current.load();
            if cur.listener.address == l.address && cur.listener.additional_addresses == l.additional_addresses {
                let chains_only = cur.listener.base_fingerprint == l.base_fingerprint;
                let next = Version::replacing(&cur, l.clone(), || self.shared.drain.child_token());
                r.current.store(Arc::new(next));
                info!(listener = %l.name, chains_only, "listener updated in place");
                return Ok(r.addr);
            }
        }
        let socket = bind(&l)?;
        let addr = socket.local_addr().unwrap_or(l.address);
        // Dual stack (`additional_addresses`): one more socket per address, same config.
        let extra = l.additional_addresses.iter().map(|a| bind_at(&l, *a)).collect::<Result<Vec<_>, _>>()?;
        if let Some(old) = running.remove(&l.name) {
            old.stop.cancel();
            old.current.load().drain.cancel();
        }
        let current = Arc::new(ArcSwap::from_pointee(Version::fresh(l.clone(), self.shared.drain.child_token())));
        let stop = CancellationToken::new();
        tokio::spawn(serve(current.clone(), socket, self.shared.clone(), stop.clone()));
        for socket in extra {
            tokio::spawn(serve(current.clone(), socket, self.shared.clone(), stop.clone()));
        }
        info!(listener = %l.name, %addr, internal = l.internal, "listening");
        if l.internal {
            super::internal::register_listener(&l.name, addr);
        }
        running.insert(l.name.clone(), Running { current, addr, stop });
        Ok(addr)
    }

    fn remove_virtual(&self, name: &str) {
        if self.shared.virtuals.load().values().any(|v| v.name == name) {
            self.shared.virtuals.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.retain(|_, v| v.name != name);
                m
            });
        }
    }

    /// Stops a listener: no new connections; its HTTP connections drain.
    pub fn remove(&self, name: &str) {
        self.remove_virtual(name);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.remove(name) {
            r.stop.cancel();
            r.current.load().drain.cancel();
            if r.current.load().listener.internal {
                super::internal::unregister_listener(name);
            }
            info!(listener = %name, "listener removed");
        }
    }

    /// `/drain_listeners`: every listener (or only `traffic_direction: INBOUND` ones) stops
    /// taking connections and its connections drain (HTTP/1 closes after the current response,
    /// HTTP/2 gets GOAWAY, TCP is closed after the drain time). With `graceful`, as Envoy's
    /// graceful drain, the listener keeps accepting for the drain time before it stops, so
    /// clients that have not yet seen the endpoint go away still get an answer. Returns how many
    /// listeners were drained.
    pub fn drain(&self, inbound_only: bool, graceful: bool) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (name, r) in running.iter() {
            let version = r.current.load();
            if inbound_only && !version.listener.inbound {
                continue;
            }
            version.drain.cancel();
            if graceful {
                let stop = r.stop.clone();
                let after = self.shared.drain_time;
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    stop.cancel();
                });
            } else {
                r.stop.cancel();
            }
            info!(listener = %name, graceful, "draining (/drain_listeners)");
            n += 1;
        }
        n
    }

    /// Names and bound addresses.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = running.iter().map(|(n, r)| (n.clone(), r.addr)).collect();
        v.sort();
        v
    }

    /// Whether a listener with this name runs (bound or virtual).
    pub fn contains(&self, name: &str) -> bool {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
            || self.shared.virtuals.load().values().any(|v| v.name == name)
    }
}
