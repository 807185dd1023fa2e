//! The per-cluster detector task: takes consecutive-error detections from the request path,
//! ticks on `interval`, flips host ejection flags and rebuilds the cluster's host set so
//! priority loads follow health at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{counter, gauge};
use rand::Rng;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ClusterRuntime;
use crate::clock::now;
use crate::outlier::detector::{Attempt, Bucket, Detector};
use crate::outlier::{EjectionType, OutlierConfig};

/// Runs until the cluster is dropped or `stop` fires.
pub async fn run(
    cluster: Weak<ClusterRuntime>,
    cfg: OutlierConfig,
    mut rx: UnboundedReceiver<(SocketAddr, Option<EjectionType>)>,
    stop: CancellationToken,
) {
    let mut det: Detector<SocketAddr> = Detector::new(cfg.clone());
    let mut tick = tokio::time::interval(cfg.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            msg = rx.recv() => {
                let (Some((addr, kind)), Some(c)) = (msg, cluster.upgrade()) else { return };
                sync(&mut det, &c);
                match kind {
                    Some(kind) => {
                        if eject(&mut det, &c, &cfg, addr, kind) {
                            c.rebuild();
                        }
                    }
                    None => {
                        det.uneject(&addr, now());
                    }
                }
            }
            _ = tick.tick() => {
                let Some(c) = cluster.upgrade() else { return };
                sync(&mut det, &c);
                let buckets: HashMap<SocketAddr, Bucket> = c
                    .hosts()
                    .all
                    .iter()
                    .map(|h| {
                        let (ext, local) = h.counters.take_interval();
                        (h.addr, Bucket { ext, local })
                    })
                    .collect();
                let (back, mut candidates) = det.tick(now(), &buckets);
                let estimates: HashMap<SocketAddr, f64> =
                    c.hosts().all.iter().map(|h| (h.addr, h.ewma.estimate_ms())).collect();
                candidates.extend(det.latency_candidates(&estimates).into_iter().map(|a| (a, EjectionType::Latency)));
                let mut changed = !back.is_empty();
                for addr in back {
                    if let Some(h) = c.hosts().all.iter().find(|h| h.addr == addr) {
                        h.set_ejected(false);
                        h.counters.reset_consecutive();
                    }
                    info!(cluster = %c.config.name, host = %addr, "outlier host returned");
                }
                for (addr, kind) in candidates {
                    changed |= eject(&mut det, &c, &cfg, addr, kind);
                }
                gauge!("envoy_cluster_outlier_detection_ejections_active", "envoy_cluster_name" => c.config.name.clone())
                    .set(det.active() as f64);
                if changed {
                    c.rebuild();
                }
            }
        }
    }
}

fn sync(det: &mut Detector<SocketAddr>, c: &ClusterRuntime) {
    det.sync(c.hosts().all.iter().map(|h| h.addr));
}

fn eject(
    det: &mut Detector<SocketAddr>,
    c: &Arc<ClusterRuntime>,
    cfg: &OutlierConfig,
    addr: SocketAddr,
    kind: EjectionType,
) -> bool {
    let mut rng = rand::rng();
    let jitter_ms = u64::try_from(cfg.max_ejection_time_jitter.as_millis()).unwrap_or(0);
    let jitter = Duration::from_millis(if jitter_ms == 0 { 0 } else { rng.random_range(0..=jitter_ms) });
    let name = c.config.name.clone();
    match det.try_eject(&addr, kind, now(), rng.random_range(0..100), jitter) {
        Attempt::Ejected => {
            if let Some(h) = c.hosts().all.iter().find(|h| h.addr == addr) {
                h.set_ejected(true);
            }
            let len = det.state(&addr).map(|s| s.length).unwrap_or_default();
            warn!(cluster = %name, host = %addr, r#type = kind.as_str(), ejection_ms = len.as_millis() as u64, "outlier host ejected");
            counter!("envoy_cluster_outlier_detection_ejections_total", "envoy_cluster_name" => name.clone(), "type" => kind.as_str()).increment(1);
            gauge!("envoy_cluster_outlier_detection_ejections_active", "envoy_cluster_name" => name)
                .set(det.active() as f64);
            true
        }
        Attempt::Overflow => {
            counter!("envoy_cluster_outlier_detection_ejections_overflow", "envoy_cluster_name" => name).increment(1);
            false
        }
        Attempt::NotEnforced | Attempt::Ignored => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::outlier::Outcome;

    /// On a paused clock: consecutive 5xx eject the host at once, it stays out for the base
    /// ejection time (the detector's interval ticks in between do not return it), and the first
    /// tick after that time brings it back. No real second passes.
    #[tokio::test(start_paused = true)]
    async fn ejected_for_the_ejection_time_then_back() {
        let yaml = "static_resources:\n  clusters:\n  - name: c\n    outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 100}\n    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}, {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}\n";
        let b = crate::config::load::from_value(crate::config::load::parse(yaml, "t").unwrap(), "t").unwrap();
        let clusters = crate::cluster::ClusterManager::new(
            &crate::build::snapshot(b.clone()).unwrap().clusters,
            crate::locality::NodeView::from_bootstrap(&b),
        );
        let c = clusters.get("c").unwrap();
        let host = c.hosts().all[0].clone();
        for _ in 0..3 {
            c.record(&host, Outcome::Status(503));
        }
        // Wait for the detector task to take the detection: yields only, no time passes.
        for _ in 0..1000 {
            if host.is_ejected() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(host.is_ejected(), "three consecutive 5xx eject");
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(host.is_ejected(), "still out before base_ejection_time");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!host.is_ejected(), "back after base_ejection_time");
    }
}
