//! Bounded metric series (reliability issue, defect 6): a cluster removed over xDS takes its
//! series with it, while a live but idle cluster keeps its own and keeps counting through the
//! handles it cached; Istio's traffic series expire when idle and come back with traffic.
//! Run with `--stats-expiry-s 2` so the expiry is seen within seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use serde_json::{json, Value};
use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::xds_server::AdsServer;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn cluster(name: &str, port: u16) -> Value {
    json!({"@type": CDS, "name": name, "type": "STATIC", "connect_timeout": "1s",
           "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
}

fn has(text: &str, name: &str, cluster: &str) -> bool {
    text.lines().any(|l| l.starts_with(name) && l.contains(&format!("\"{cluster}\"")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_clusters_lose_their_series_and_idle_live_ones_keep_counting() {
    let up = Upstream::start("up", Behaviour::default()).await;
    let mut cp = AdsServer::start();
    cp.set(CDS, "v1", vec![cluster("keep", up.addr.port()), cluster("gone", up.addr.port())]);
    let routes = format!(
        "{}\n{}",
        "              - match: {prefix: /keep}\n                route: {cluster: keep}",
        "              - match: {prefix: /gone}\n                route: {cluster: gone}"
    );
    // The routes name clusters that arrive over CDS.
    let listener = tests::yaml::http_listener("in", &routes, "")
        .replace("          route_config:\n", "          route_config:\n            validate_clusters: false\n");
    let yaml = format!(
        "{}dynamic_resources:\n  ads_config: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]}}\n  cds_config: {{ads: {{}}, resource_api_version: V3}}\n",
        tests::yaml::bootstrap(&[listener], &[tests::yaml::xds_cluster(cp.port, "")])
    );
    let proxy = Proxy::start_with(&yaml, &["--stats-expiry-s", "2"]);
    let addr = proxy.listener("in");
    for path in ["/keep", "/gone", "/keep"] {
        assert_eq!(get(addr, path, &[]).await.unwrap().0, 200, "{path}");
    }
    let before = proxy.metric("envoy_cluster_upstream_rq_total", "\"keep\"");
    assert_eq!(before, 2.0);
    let (_, text) = proxy.admin_get("/stats/prometheus");
    for name in ["envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_cx_active", "istio_requests_total"] {
        assert!(has(&text, name, "gone"), "{name} for the cluster about to go:\n{text}");
    }

    cp.set(CDS, "v2", vec![cluster("keep", up.addr.port())]);
    cp.push(CDS, "n2");
    assert_eq!(cp.request(CDS, |e| e["nonce"] == "n2")["nack"], false);

    // Within a few expiry periods every series naming the removed cluster is gone; no traffic
    // runs meanwhile, so "keep" is as idle as "gone" was.
    let text = tests::eventually(Duration::from_secs(20), || {
        let (_, text) = proxy.admin_get("/stats/prometheus");
        (!text.contains("\"gone\"")).then_some(text)
    })
    .await;
    for name in ["envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_cx_active"]
    {
        assert!(has(&text, name, "keep"), "{name} of the live, idle cluster must stay:\n{text}");
    }
    // Gauges and counters of the process itself stay too.
    assert!(text.contains("xds_acked_version"), "{text}");
    // Istio's traffic series of the idle label set expired…
    assert!(!text.contains("istio_requests_total{"), "idle traffic series should have expired:\n{text}");

    // …and the live cluster's cached handles still count: the total continues from where it was.
    assert_eq!(get(addr, "/keep", &[]).await.unwrap().0, 200);
    assert_eq!(proxy.metric("envoy_cluster_upstream_rq_total", "\"keep\""), before + 1.0);
    // The traffic series comes back (its per-thread cache registered it again, not a dead handle).
    tests::eventually(Duration::from_secs(5), || {
        (proxy.metric("istio_requests_total", "\"keep\"") >= 1.0).then_some(())
    })
    .await;
}
