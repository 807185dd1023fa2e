//! The admin pages themselves.

use std::sync::atomic::Ordering;

use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;

use super::{text, AdminState};

/// Dispatches an admin request by path.
pub fn route<B>(st: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        "/ready" | "/healthz/ready" => {
            if st.ready.load(Ordering::Acquire) {
                text(200, "LIVE\n", "text/plain")
            } else {
                text(503, "PRE_INITIALIZING\n", "text/plain")
            }
        }
        "/stats/prometheus" | "/metrics" => match &st.prometheus {
            Some(h) => text(200, h.render(), "text/plain; version=0.0.4"),
            None => text(503, "metrics recorder not installed\n", "text/plain"),
        },
        "/config_dump" => match super::config_dump::render(st, &super::config_dump::Query::parse(query)) {
            Ok(v) => text(200, serde_json::to_string_pretty(&v).unwrap_or_default(), "application/json"),
            Err((status, msg)) => text(status, msg, "text/plain"),
        },
        "/stats" => super::stats::render(st, query),
        "/server_info" => text(200, super::stats::server_info(st), "application/json"),
        "/drain_listeners" if req.method() == http::Method::POST => {
            let flag = |f: &str| query.split('&').any(|kv| kv == f || kv.starts_with(&format!("{f}=")));
            // As Envoy: only a graceful drain starts the drain sequence (`server.state`
            // DRAINING); stopping listeners alone leaves the server LIVE.
            if flag("graceful") {
                crate::telemetry::server_stats::stats().set_draining();
            }
            let n = st.listeners.drain(flag("inboundonly"), flag("graceful"));
            text(200, format!("OK ({n} listeners draining)\n"), "text/plain")
        }
        // Envoy refuses state-changing admin calls over GET (a browser or a probe must not
        // stop the proxy by visiting a URL).
        "/drain_listeners" | "/quitquitquit" if req.method() != http::Method::POST => {
            text(405, "This endpoint requires POST\n", "text/plain")
        }
        "/listeners" => {
            let v: Vec<_> = st.listeners.addresses().into_iter().map(|(n, a)| json!({"name": n, "local_address": a.to_string()})).collect();
            text(200, serde_json::to_string_pretty(&json!({"listener_statuses": v})).unwrap_or_default(), "application/json")
        }
        "/clusters" => {
            if query.contains("format=json") {
                text(200, clusters_json(st), "application/json")
            } else {
                text(200, clusters_text(st), "text/plain")
            }
        }
        "/logging" => logging(query),
        "/quitquitquit" => {
            crate::telemetry::server_stats::stats().set_draining();
            st.shutdown.cancel();
            text(200, "OK\n", "text/plain")
        }
        _ => text(404, "admin paths: /ready /healthz/ready /stats /stats/prometheus /server_info /config_dump /clusters /listeners /logging?level= (POST) /drain_listeners (POST) /quitquitquit (POST)\n", "text/plain"),
    }
}

fn logging(query: &str) -> Response<Full<Bytes>> {
    let level = query.split('&').find_map(|kv| kv.strip_prefix("level="));
    match level {
        Some(l) if crate::telemetry::logging::set_level(l) => text(200, format!("active level: {l}\n"), "text/plain"),
        Some(l) => text(
            400,
            format!("unknown level \"{l}\"; use trace, debug, info, warning, error, critical, off\n"),
            "text/plain",
        ),
        None => text(400, "usage: /logging?level=<trace|debug|info|warning|error|critical|off>\n", "text/plain"),
    }
}

fn clusters_text(st: &AdminState) -> String {
    let mut out = String::new();
    for c in st.clusters.all() {
        let name = &c.config.name;
        for h in c.listed_hosts().iter() {
            let p = format!("{name}::{}", h.addr);
            let eds = h.health == crate::config::cluster::HealthStatus::Unhealthy;
            let flags = if !eds && !h.is_ejected() && !h.hc_failed() {
                "healthy".to_string()
            } else {
                format!(
                    "{}{}{}",
                    if h.hc_failed() { "/failed_active_hc" } else { "" },
                    if h.is_ejected() { "/failed_outlier_check" } else { "" },
                    if eds { "/failed_eds_health" } else { "" }
                )
            };
            out.push_str(&format!("{p}::health_flags::{flags}\n"));
            out.push_str(&format!("{p}::weight::{}\n", h.weight));
            out.push_str(&format!(
                "{p}::region::{}\n{p}::zone::{}\n{p}::sub_zone::{}\n",
                h.locality.region, h.locality.zone, h.locality.sub_zone
            ));
            out.push_str(&format!("{p}::priority::{}\n", h.priority));
            out.push_str(&format!("{p}::ewma_ms::{:.3}\n", h.ewma.estimate_ms()));
            out.push_str(&format!("{p}::rq_active::{}\n", h.active_requests()));
            out.push_str(&format!("{p}::rq_total::{}\n", h.rq_total.load(Ordering::Relaxed)));
            out.push_str(&format!("{p}::rq_error::{}\n", h.rq_error.load(Ordering::Relaxed)));
            out.push_str(&format!("{p}::hostname::{}\n", h.hostname));
        }
    }
    out
}

fn clusters_json(st: &AdminState) -> String {
    let clusters: Vec<_> = st
        .clusters
        .all()
        .iter()
        .map(|c| {
            let hosts: Vec<_> = c
                .listed_hosts()
                .iter()
                .map(|h| {
                    json!({
                        "address": h.addr.to_string(), "hostname": h.hostname, "health": h.health,
                        "locality": h.locality, "priority": h.priority, "weight": h.weight,
                        "rq_active": h.active_requests(), "rq_total": h.rq_total.load(Ordering::Relaxed),
                        "rq_error": h.rq_error.load(Ordering::Relaxed),
                        "ejected": h.is_ejected(),
                        "ewma_ms": h.ewma.estimate_ms(),
                    })
                })
                .collect();
            let set = c.hosts();
            let loads: Vec<_> = set
                .priorities
                .iter()
                .enumerate()
                .map(|(i, p)| json!({"priority": p, "healthy": set.load.healthy.get(i), "degraded": set.load.degraded.get(i), "panic": set.load.panic.get(i)}))
                .collect();
            json!({"name": c.config.name, "priority_loads": loads, "host_statuses": hosts})
        })
        .collect();
    serde_json::to_string_pretty(&json!({"cluster_statuses": clusters})).unwrap_or_default()
}
