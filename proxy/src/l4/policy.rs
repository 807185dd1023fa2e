//! Network policy filters before `tcp_proxy` or the HCM: RBAC and the connection rate limit.
//! Both decide once, when the connection is accepted (after TLS, so the peer's identity is
//! known); a refused connection is closed before any upstream is dialled.
//!
//! Envoy's network RBAC (`ONE_TIME_ON_FIRST_BYTE`) decides on the client's first bytes and
//! its `tcp_proxy` may already have dialled the upstream; for client-first protocols the
//! client sees the same thing, a closed connection. Isthmus decides before dialling.

use crate::config::filters::NetworkPolicy;
use crate::policy::rbac::{evaluate, Attrs};

/// Whether every policy admits the connection; counts the outcome of each.
pub fn admit(policies: &[NetworkPolicy], attrs: &Attrs<'_>) -> bool {
    for p in policies {
        let ok = match p {
            NetworkPolicy::Rbac(r) => {
                let stats = r.stats.counters.get_or_init(|| {
                    ["allowed", "denied", "shadow_allowed", "shadow_denied"]
                        .iter()
                        .map(|n| {
                            metrics::counter!(format!("envoy_network_rbac_{n}"), "envoy_rbac_prefix" => r.stat_prefix.clone())
                        })
                        .collect()
                });
                if let Some(shadow) = &r.shadow {
                    stats[if evaluate(shadow, attrs).allowed { 2 } else { 3 }].increment(1);
                }
                match &r.rules {
                    None => true,
                    Some(rules) => {
                        let v = evaluate(rules, attrs);
                        stats[usize::from(!v.allowed)].increment(1);
                        if !v.allowed {
                            tracing::debug!(policy = v.matched.unwrap_or("none"), "connection denied by RBAC");
                        }
                        v.allowed
                    }
                }
            }
            NetworkPolicy::LocalRateLimit(l) => {
                let stats = l.stats.counters.get_or_init(|| {
                    vec![metrics::counter!(
                        "envoy_network_local_rate_limit_rate_limited",
                        "envoy_local_rate_limit_prefix" => l.stat_prefix.clone()
                    )]
                });
                let allowed = !l.enabled || l.tokens.take(crate::clock::now()).allowed;
                if !allowed {
                    stats[0].increment(1);
                    tracing::debug!("connection refused by the local rate limit");
                }
                allowed
            }
        };
        if !ok {
            return false;
        }
    }
    true
}
