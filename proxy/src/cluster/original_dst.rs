//! Hosts of an ORIGINAL_DST cluster, made on demand from each connection's original
//! destination and kept, as Envoy keeps them, so the same destination is the same `Host`:
//! its request, error and outlier counts accumulate (a fresh host per request would never
//! trip outlier detection nor show up in `/clusters`). The table is bounded: past
//! [`MAX_HOSTS`], hosts nobody holds any more are dropped (Envoy's `cleanup_interval` sweep).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::host::Host;

/// Hosts kept before unused ones are swept.
pub const MAX_HOSTS: usize = 1024;

/// The table (one per ORIGINAL_DST cluster).
#[derive(Debug, Default)]
pub struct OriginalDstHosts {
    hosts: Mutex<HashMap<SocketAddr, Arc<Host>>>,
}

impl OriginalDstHosts {
    /// The host for `addr`, made on first use.
    pub fn get(&self, addr: SocketAddr) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(&addr) {
            return h.clone();
        }
        if hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, h| Arc::strong_count(h) > 1);
        }
        let h = Arc::new(Host::for_original_dst(addr));
        hosts.insert(addr, h.clone());
        h
    }

    /// Every host currently kept (for `/clusters`).
    pub fn all(&self) -> Vec<Arc<Host>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_destination_is_the_same_host_and_the_table_is_bounded() {
        let t = OriginalDstHosts::default();
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let h1 = t.get(a);
        drop(h1.start_request());
        let h2 = t.get(a);
        assert!(Arc::ptr_eq(&h1, &h2));
        assert_eq!(h2.rq_total.load(std::sync::atomic::Ordering::Relaxed), 1, "counts accumulate");
        drop((h1, h2));
        for i in 0..(MAX_HOSTS as u16 + 10) {
            drop(t.get(SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 80))));
        }
        assert!(t.all().len() <= MAX_HOSTS, "{}", t.all().len());
        let held = t.get("10.9.9.9:80".parse().unwrap());
        for i in 0..(MAX_HOSTS as u16) {
            drop(t.get(SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 80))));
        }
        assert!(Arc::ptr_eq(&held, &t.get("10.9.9.9:80".parse().unwrap())), "a host in use survives the sweep");
    }
}
