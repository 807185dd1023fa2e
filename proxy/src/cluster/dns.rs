//! STRICT_DNS and LOGICAL_DNS: resolve endpoint names into hosts, and refresh them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::host::Host;
use super::ClusterRuntime;
use crate::config::cluster::EndpointAddress;
use crate::config::Discovery;

/// Resolves every endpoint of a DNS cluster. Hosts whose address is unchanged keep their
/// `Host` (and counters). A name that fails to resolve contributes no hosts this round.
pub async fn resolve(c: &ClusterRuntime) -> Vec<Arc<Host>> {
    let previous: HashMap<SocketAddr, Arc<Host>> = c.hosts().all.iter().map(|h| (h.addr, h.clone())).collect();
    let mut out = Vec::new();
    for le in &c.view_endpoints() {
        for e in &le.endpoints {
            let addrs: Vec<SocketAddr> = match &e.address {
                EndpointAddress::Socket(a) => vec![*a],
                EndpointAddress::Pipe(_) => Vec::new(),
                EndpointAddress::Internal { .. } => e.address.host_addr().into_iter().collect(),
                EndpointAddress::Dns { host, port } => match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(it) => it.collect(),
                    Err(err) => {
                        tracing::warn!(cluster = %c.config.name, %host, %err, "DNS resolution failed");
                        Vec::new()
                    }
                },
            };
            let take = if c.config.discovery == Discovery::LogicalDns { 1 } else { usize::MAX };
            let name = match &e.address {
                EndpointAddress::Dns { host, .. } if e.hostname.is_empty() => host.clone(),
                _ => e.hostname.clone(),
            };
            for addr in addrs.into_iter().take(take) {
                let host = match previous.get(&addr) {
                    Some(h) if h.weight == e.weight && h.priority == le.priority => h.clone(),
                    _ => Arc::new(
                        Host::new(addr, e.weight, le.locality.clone(), le.priority, e.health, name.clone())
                            .with_locality_weight(le.weight)
                            .with_transport_match(e.transport_match.clone()),
                    ),
                };
                if !out.iter().any(|h: &Arc<Host>| h.addr == addr) {
                    out.push(host);
                }
            }
        }
    }
    out
}

/// Re-resolves every `dns_refresh_rate` until `stop` fires.
pub async fn refresh_loop(c: Arc<ClusterRuntime>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(c.config.dns_refresh_rate);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = c.stop.cancelled() => return,
            _ = tick.tick() => {
                let hosts = resolve(&c).await;
                let same = {
                    let cur = c.hosts();
                    cur.all.len() == hosts.len() && cur.all.iter().zip(&hosts).all(|(a, b)| Arc::ptr_eq(a, b))
                };
                if !same {
                    tracing::info!(cluster = %c.config.name, hosts = hosts.len(), "DNS hosts changed");
                    c.set_hosts(hosts);
                }
            }
        }
    }
}
