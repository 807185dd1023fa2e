//! Under pilot-agent: the bootstrap pilot-agent generated (Istio's own golden output,
//! `tests/fixtures/istio/bootstrap_*_golden.json`, see SOURCES.md) and the flags it passes,
//! with only the xds-grpc / sds-grpc sockets pointed at the test's control plane. The agent's
//! readiness decision (`pilot/cmd/pilot-agent/status/util/stats.go`: `server.state` and
//! `listener_manager.workers_started` from `/stats?usedonly&filter=…`, then CDS/LDS
//! `update_success`) is re-implemented here and applied to Envoy 1.40 and Isthmus run on the
//! same input, side by side, before and after the control plane answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::istio::{self, admin, Plane, CDS, LDS};
use tests::netns::Netns;
use tests::xds_server::AdsServer;

const READY_REGEX: &str = r"^(server\.state|listener_manager\.workers_started)";
const UPDATE_REGEX: &str = r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$";

/// The agent's view: Ok when it would report the pod ready, else its reason.
fn agent_ready(ns: &Netns) -> Result<(), String> {
    let (status, body) = admin(ns, &format!("/stats?usedonly&filter={READY_REGEX}"));
    if status != 200 {
        return Err(format!("stats status {status}"));
    }
    for name in ["server.state", "listener_manager.workers_started"] {
        if !body.contains(name) {
            return Err(format!("{name} is not yet updated: {body}"));
        }
    }
    let state = stat(&body, "server.state");
    let workers = stat(&body, "listener_manager.workers_started");
    if state != Some(0) {
        return Err(format!("server is not live: {body}"));
    }
    if workers != Some(1) {
        return Err("workers have not yet started".into());
    }
    let (_, upd) = admin(ns, &format!("/stats?usedonly&filter={UPDATE_REGEX}"));
    let cds = stat(&upd, "cluster_manager.cds.update_success").unwrap_or(0);
    let lds = stat(&upd, "listener_manager.lds.update_success").unwrap_or(0);
    if cds > 0 && lds > 0 {
        Ok(())
    } else {
        Err(format!("config not fully received: {upd:?}"))
    }
}

/// `name: value` as the agent parses it (first line with the prefix).
fn stat(body: &str, name: &str) -> Option<u64> {
    let line = body.lines().find(|l| l.starts_with(name))?;
    let (_, v) = line.split_once(':')?;
    v.trim().parse().ok()
}

/// The golden bootstrap with its xds-grpc and sds-grpc endpoints on `socket` (pilot-agent
/// points them at its own sockets); nothing else changes.
fn agent_bootstrap(golden: &str, socket: &Path) -> String {
    let path = tests::repo_root().join("tests/fixtures/istio").join(golden);
    let mut b: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for c in b["static_resources"]["clusters"].as_array_mut().unwrap() {
        if c["name"] == "xds-grpc" || c["name"] == "sds-grpc" {
            c["load_assignment"]["endpoints"] = json!([{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket.display().to_string()}}}}]}]);
        }
    }
    serde_json::to_string_pretty(&b).unwrap()
}

fn config() -> (Vec<Value>, Vec<Value>) {
    let cluster = json!({"@type": CDS, "name": "outbound|80||web.default.svc.cluster.local", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "web", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}}}}]}]}});
    let listener = json!({"@type": LDS, "name": "0.0.0.0_8080", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
        "traffic_direction": "INBOUND",
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "inbound_8080",
            "route_config": {"name": "local", "ignore_port_in_host_matching": true, "virtual_hosts": [{"name": "web", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "served"}}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]});
    (vec![cluster], vec![listener])
}

struct Observed {
    before: String,
    ready_lines: String,
    update_names: Vec<String>,
    server_info: Value,
    quit_get: u16,
    dump_types: Vec<String>,
    traffic: String,
    resource_clusters: Value,
    resource_listeners: Value,
}

fn observe(plane: Plane, golden: &str) -> Observed {
    let tag = format!("ag{}{}", if plane == Plane::Envoy { "e" } else { "i" }, &golden[10..13]);
    let socket = tests::scratch(&format!("{tag}.sock"));
    let mut cp = AdsServer::start_args(&["--unix".into(), socket.display().to_string()]);
    let ns = Netns::new(&tag);
    let cfg = tests::scratch(&format!("{tag}.json"));
    std::fs::write(&cfg, agent_bootstrap(golden, &socket)).unwrap();
    let log = tests::scratch(&format!("{tag}.log"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let flags: Vec<&str> = if text.contains("application_log_config") {
        let i = istio::AGENT_FLAGS.iter().position(|f| *f == "--log-format").unwrap();
        istio::AGENT_FLAGS.iter().enumerate().filter(|(j, _)| *j != i && *j != i + 1).map(|(_, f)| *f).collect()
    } else {
        istio::AGENT_FLAGS.to_vec()
    };
    let _proxy = istio::spawn_with(plane, &ns, &cfg, &log, &flags);
    // Connected and waiting for its first config: the agent must not call it ready.
    cp.wait_for(Duration::from_secs(30), |e| e["event"] == "request" && e["type"] == CDS);
    let end = Instant::now() + Duration::from_secs(20);
    while admin(&ns, "/server_info").0 != 200 {
        assert!(
            Instant::now() < end,
            "{plane:?}: admin never answered; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = agent_ready(&ns).expect_err("ready before any config arrived");
    let (clusters, listeners) = config();
    cp.set(CDS, "v1", clusters);
    cp.push(CDS, "cds-1");
    cp.set(LDS, "v1", listeners);
    // The LDS request comes once CDS is in (Envoy asks for listeners after clusters).
    cp.wait_for(Duration::from_secs(20), |e| e["event"] == "request" && e["type"] == LDS);
    cp.push(LDS, "lds-1");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match agent_ready(&ns) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < end,
                "{plane:?} never became ready for the agent: {e}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_lines = admin(&ns, &format!("/stats?usedonly&filter={READY_REGEX}")).1;
    let upd = admin(&ns, &format!("/stats?usedonly&filter={UPDATE_REGEX}")).1;
    let update_names = upd.lines().filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string())).collect();
    let server_info: Value = serde_json::from_str(&admin(&ns, "/server_info").1).unwrap();
    let quit = ns.run(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:15000/quitquitquit"]);
    let quit_get = String::from_utf8_lossy(&quit.stdout).trim().parse().unwrap_or(0);
    let dump: Value = serde_json::from_str(&admin(&ns, "/config_dump").1).unwrap();
    let dump_types = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap_or_default().to_string())
        .collect();
    // istioctl's reads: one field's items with their own @type, trimmed by a field mask.
    let json = |path: &str| -> Value {
        let (status, body) = admin(&ns, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{plane:?} {path}: {status} {e}: {body}"))
    };
    let resource_clusters = json("/config_dump?resource=dynamic_active_clusters&mask=cluster.name");
    let resource_listeners = json("/config_dump?resource=dynamic_listeners&mask=name");
    let traffic = String::from_utf8_lossy(
        &ns.run(&["curl", "-s", "-m", "5", "-H", "Host: web:8080", "http://127.0.0.1:8080/"]).stdout,
    )
    .into_owned();
    Observed {
        before,
        ready_lines,
        update_names,
        server_info,
        quit_get,
        dump_types,
        traffic,
        resource_clusters,
        resource_listeners,
    }
}

fn side_by_side(golden: &str) {
    let envoy = observe(Plane::Envoy, golden);
    let isthmus = observe(Plane::Isthmus, golden);
    // Before config both are not ready (`observe` asserts it), for the same reason: the
    // readiness stats are not written before the first config (Envoy prints nothing).
    assert_eq!(isthmus.before, envoy.before);
    // After: the agent's readiness lines are identical.
    assert_eq!(isthmus.ready_lines, envoy.ready_lines);
    assert_eq!(isthmus.ready_lines, "listener_manager.workers_started: 1\nserver.state: 0\n");
    assert_eq!(isthmus.update_names, envoy.update_names, "the agent's update stats");
    assert_eq!(isthmus.server_info["state"], "LIVE");
    assert_eq!(isthmus.server_info["state"], envoy.server_info["state"]);
    for key in [
        "concurrency",
        "drain_time",
        "drain_strategy",
        "disable_hot_restart",
        "allow_unknown_static_fields",
        "local_address_ip_version",
        "component_log_level",
        "restart_epoch",
    ] {
        assert_eq!(
            isthmus.server_info["command_line_options"][key], envoy.server_info["command_line_options"][key],
            "command_line_options.{key}"
        );
    }
    assert_eq!(isthmus.server_info["node"]["id"], envoy.server_info["node"]["id"]);
    assert_eq!((isthmus.quit_get, envoy.quit_get), (405, 405), "GET /quitquitquit is refused");
    // Every config kind Isthmus dumps is one Envoy dumps, in Envoy's order.
    let envoy_order: Vec<&String> = envoy.dump_types.iter().filter(|t| isthmus.dump_types.contains(t)).collect();
    assert_eq!(envoy_order, isthmus.dump_types.iter().collect::<Vec<_>>(), "envoy: {:?}", envoy.dump_types);
    assert_eq!((isthmus.traffic.as_str(), envoy.traffic.as_str()), ("served", "served"));
    assert_eq!(
        isthmus.resource_clusters, envoy.resource_clusters,
        "?resource=dynamic_active_clusters&mask=cluster.name"
    );
    assert_eq!(isthmus.resource_listeners, envoy.resource_listeners, "?resource=dynamic_listeners&mask=…");
    assert_eq!(
        isthmus.resource_clusters["configs"][0]["@type"],
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster"
    );
}

#[test]
fn agent_readiness_with_the_default_generated_bootstrap() {
    side_by_side("bootstrap_default_golden.json");
}

#[test]
fn agent_readiness_with_the_zipkin_tracing_bootstrap() {
    side_by_side("bootstrap_tracing_zipkin_golden.json");
}
