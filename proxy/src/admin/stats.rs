//! `/stats` and `/server_info` in Envoy's form, for pilot-agent and `istioctl`.
//!
//! pilot-agent decides readiness from `GET /stats?usedonly&filter=^(server\.state|listener_manager\.workers_started)`
//! and whether config arrived from `…&filter=^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$`,
//! parsing `name: value` lines; `/server_info` gives the state, the command line and uptime.

use http::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;

use super::{text, AdminState};
use crate::telemetry::server_stats::stats;

/// `/stats`: `name: value` lines sorted by name; `usedonly` drops stats never written,
/// `filter=<regex>` keeps matching names (Envoy's RE2 syntax is close enough to `regex`'s for
/// the anchored alternations tools use), `format=json` and `format=prometheus` as Envoy.
pub fn render(st: &AdminState, query: &str) -> Response<Full<Bytes>> {
    let mut usedonly = false;
    let mut filter = None;
    let mut format = "text";
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "usedonly" => usedonly = true,
            "filter" => {
                let decoded = percent_decode(v);
                match regex::Regex::new(&decoded) {
                    Ok(r) => filter = Some(r),
                    Err(e) => return text(400, format!("Invalid regex: {e}\n"), "text/plain"),
                }
            }
            "format" => {
                format = if v == "json" {
                    "json"
                } else if v == "prometheus" {
                    "prometheus"
                } else {
                    "text"
                }
            }
            _ => {}
        }
    }
    if format == "prometheus" {
        return match &st.prometheus {
            Some(h) => text(200, h.render(), "text/plain; version=0.0.4"),
            None => text(503, "metrics recorder not installed\n", "text/plain"),
        };
    }
    let listeners = st.listeners.addresses().len() as u64;
    let clusters = st.clusters.all().len() as u64;
    let rows: Vec<(&str, u64)> = stats()
        .all(listeners, clusters)
        .into_iter()
        .filter(|(_, _, used)| !usedonly || *used)
        .filter(|(name, ..)| filter.as_ref().is_none_or(|r| r.is_match(name)))
        .map(|(n, v, _)| (n, v))
        .collect();
    if format == "json" {
        let v: Vec<_> = rows.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
        return text(200, serde_json::to_string_pretty(&json!({"stats": v})).unwrap_or_default(), "application/json");
    }
    let mut out = String::new();
    for (n, v) in rows {
        out.push_str(&format!("{n}: {v}\n"));
    }
    text(200, out, "text/plain; charset=UTF-8")
}

/// `/server_info` with Envoy's fields (`version`, `state`, uptimes, `command_line_options`,
/// `node`).
pub fn server_info(st: &AdminState) -> String {
    let s = stats();
    let up = format!("{}s", s.uptime_s());
    let v = json!({
        "version": format!("isthmus/{}/Clean/RELEASE/rustls", env!("CARGO_PKG_VERSION")),
        "state": s.state().name(),
        "uptime_current_epoch": up,
        "uptime_all_epochs": up,
        "hot_restart_version": "disabled",
        "command_line_options": st.command_line,
        "node": st.bootstrap.source.get("node").cloned().unwrap_or_else(|| json!({
            "id": st.bootstrap.node.id, "cluster": st.bootstrap.node.cluster
        })),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// `%XX` escapes, for query values such as `filter=%5E(server%5C.state)`.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_agent_filters() {
        assert_eq!(
            percent_decode("%5E(server%5C.state%7Clistener_manager%5C.workers_started)"),
            r"^(server\.state|listener_manager\.workers_started)"
        );
        assert_eq!(percent_decode("^(a|b)$"), "^(a|b)$");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
