//! Network policy filters before `tcp_proxy` or the HCM: the connection rate limit, checked
//! as the connection arrives (before any TLS handshake, as Envoy's `onNewConnection`, so a
//! flood does not cost a handshake each), and RBAC, checked once the peer's identity is known
//! (after the handshake); a refused connection is closed before any upstream is dialled.
//!
//! Envoy's network RBAC (`ONE_TIME_ON_FIRST_BYTE`) decides on the client's first bytes and
//! its `tcp_proxy` may already have dialled the upstream; for client-first protocols the
//! client sees the same thing, a closed connection. Isthmus decides before dialling.

use crate::config::filters::connection_limit::Slot;
use crate::config::filters::NetworkPolicy;
use crate::policy::rbac::{evaluate, Attrs};

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const SHADOW_ALLOWED: usize = 2;
const SHADOW_DENIED: usize = 3;

/// What the filters decided for a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Let in; the connection-limit slots are held for the connection's life.
    Admitted(Vec<Slot>),
    /// Refused: close it after `delay` (a connection limit's), or at once.
    Refused {
        /// How long to hold the connection before closing it.
        delay: Option<std::time::Duration>,
    },
}

/// Runs the admission filters in chain order: each connection rate limit takes a token and
/// each connection limit a slot; the first that refuses decides (slots taken before it are
/// given back).
pub fn admit(policies: &[NetworkPolicy]) -> Admission {
    let mut slots = Vec::new();
    for p in policies {
        match p {
            NetworkPolicy::Rbac(_) => {}
            NetworkPolicy::LocalRateLimit(l) => {
                let stats = l.stats.counters.get_or_init(|| {
                    vec![metrics::counter!(
                        "envoy_network_local_rate_limit_rate_limited",
                        "envoy_local_rate_limit_prefix" => l.stat_prefix.clone()
                    )]
                });
                if l.enabled && !l.tokens.take(crate::clock::now()).allowed {
                    stats.iter().for_each(|c| c.increment(1));
                    tracing::debug!("connection refused by the local rate limit");
                    return Admission::Refused { delay: None };
                }
            }
            NetworkPolicy::ConnectionLimit(c) if c.enabled => {
                let limited = c.stats.counters.get_or_init(|| {
                    vec![metrics::counter!(
                        "envoy_connection_limit_limited_connections",
                        "envoy_connection_limit_prefix" => c.stat_prefix.clone()
                    )]
                });
                let active = c.stats.gauge.get_or_init(|| {
                    metrics::gauge!("envoy_connection_limit_active_connections", "envoy_connection_limit_prefix" => c.stat_prefix.clone())
                });
                match c.try_acquire() {
                    Some(slot) => {
                        active.increment(1.0);
                        slots.push(slot);
                    }
                    None => {
                        limited.iter().for_each(|x| x.increment(1));
                        tracing::debug!(limit = c.max, "connection refused by the connection limit");
                        return Admission::Refused { delay: c.delay };
                    }
                }
            }
            NetworkPolicy::ConnectionLimit(_) => {}
        }
    }
    Admission::Admitted(slots)
}

/// Whether every RBAC filter allows the connection; counts each decision.
pub fn authorize(policies: &[NetworkPolicy], attrs: &Attrs<'_>) -> bool {
    policies.iter().all(|p| match p {
        NetworkPolicy::LocalRateLimit(_) | NetworkPolicy::ConnectionLimit(_) => true,
        NetworkPolicy::Rbac(r) => {
            let stats = r.stats.counters.get_or_init(|| {
                ["allowed", "denied", "shadow_allowed", "shadow_denied"]
                    .iter()
                    .map(|n| metrics::counter!(format!("envoy_network_rbac_{n}"), "envoy_rbac_prefix" => r.stat_prefix.clone()))
                    .collect()
            });
            let count = |i: usize| {
                if let Some(c) = stats.get(i) {
                    c.increment(1);
                }
            };
            if let Some(shadow) = &r.shadow {
                count(if evaluate(shadow, attrs).allowed { SHADOW_ALLOWED } else { SHADOW_DENIED });
            }
            let Some(rules) = &r.rules else { return true };
            let v = evaluate(rules, attrs);
            count(if v.allowed { ALLOWED } else { DENIED });
            if !v.allowed {
                tracing::debug!(policy = v.matched.unwrap_or("none"), "connection denied by RBAC");
            }
            v.allowed
        }
    })
}
