//! The per-cluster health-check task: probes every host each interval (over the host's
//! transport socket: TLS for an mTLS cluster), counts attempts, flips the host's
//! active-HC flag on threshold crossings, unejects outlier-ejected hosts that pass, and
//! rebuilds the host set when anything changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Weak;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ClusterRuntime;
use crate::health::{check, HealthCheckConfig, Streak};

/// Runs until the cluster is dropped or `stop` fires. The first round starts at once.
pub async fn run(cluster: Weak<ClusterRuntime>, cfg: HealthCheckConfig, stop: CancellationToken) {
    let mut streaks: HashMap<SocketAddr, Streak> = HashMap::new();
    // Envoy's `health_check.{attempt,success,failure}`, registered on the first round.
    let mut counters: Option<[metrics::Counter; 3]> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(c) = cluster.upgrade() else { return };
        let hosts = c.hosts().all.clone();
        streaks.retain(|a, _| hosts.iter().any(|h| h.addr == *a));
        let results = futures_util::future::join_all(
            hosts.iter().map(|h| check::probe(h.addr, &cfg.probe, cfg.timeout, c.upstream_tls(h))),
        )
        .await;
        let stats = counters.get_or_insert_with(|| {
            let name = c.config.name.clone();
            ["attempt", "success", "failure"].map(
                |k| metrics::counter!(format!("envoy_cluster_health_check_{k}"), "envoy_cluster_name" => name.clone()),
            )
        });
        let passed = results.iter().filter(|ok| **ok).count() as u64;
        stats[0].increment(results.len() as u64);
        stats[1].increment(passed);
        stats[2].increment(results.len() as u64 - passed);
        let mut changed = false;
        for (h, ok) in hosts.iter().zip(results) {
            let s = streaks.entry(h.addr).or_default();
            if let Some(healthy) = s.record(ok, h.hc_failed(), &cfg) {
                h.set_hc_failed(!healthy);
                changed = true;
                if healthy {
                    info!(cluster = %c.config.name, host = %h.addr, "health check passing");
                } else {
                    warn!(cluster = %c.config.name, host = %h.addr, "health check failing");
                }
            }
            let uneject = c.config.outlier.as_ref().is_none_or(|o| o.uneject_on_active_hc);
            if ok && uneject && h.is_ejected() {
                // successful_active_health_check_uneject_host (Envoy default true).
                h.set_ejected(false);
                h.counters.reset_consecutive();
                c.uneject_notice(h.addr);
                changed = true;
                info!(cluster = %c.config.name, host = %h.addr, "health check returned an ejected host");
            }
        }
        if changed {
            c.rebuild();
        }
    }
}
