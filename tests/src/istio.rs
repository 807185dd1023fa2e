//! Real istiod output as test input: config dumps of Istio proxies (`tests/fixtures/istio/`,
//! sources in its SOURCES.md) served over ADS exactly as istiod sent them, to Envoy 1.40 and
//! to Isthmus, each in its own network namespace so the fixed Istio ports never collide.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::netns::Netns;
use crate::xds_server::AdsServer;

/// xDS type URLs.
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Clusters.
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Route tables.
pub const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Endpoint assignments.
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The four, in the order a proxy asks for them.
pub const TYPES: [&str; 4] = [CDS, EDS, LDS, RDS];

/// The flags pilot-agent (Istio 1.2x, `pkg/envoy/proxy.go`) passes to the proxy it starts,
/// minus `-c` and `-l` (the tests set those).
pub const AGENT_FLAGS: &[&str] = &[
    "--drain-time-s",
    "45",
    "--drain-strategy",
    "immediate",
    "--local-address-ip-version",
    "v4",
    "--file-flush-interval-msec",
    "1000",
    "--disable-hot-restart",
    "--allow-unknown-static-fields",
    "--log-format",
    "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
    "--component-log-level",
    "misc:error",
    "--concurrency",
    "2",
];

/// One config dump, prepared by `tests/peers/istio_corpus.py`.
pub struct Corpus {
    /// The fixture's file name.
    pub name: String,
    /// The proxy's bootstrap as pilot-agent wrote it (from the dump).
    pub bootstrap: Value,
    /// Resources by type URL.
    pub resources: BTreeMap<String, Vec<Value>>,
}

/// Every `*.json` config dump under `tests/fixtures/istio/` (bootstrap goldens excluded).
pub fn dumps() -> Vec<PathBuf> {
    let dir = crate::repo_root().join("tests/fixtures/istio");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/istio")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n.ends_with(".json") && !n.starts_with("bootstrap")
        })
        .collect();
    v.sort();
    v
}

/// Prepares one dump.
pub fn corpus(path: &Path) -> Corpus {
    let script = crate::repo_root().join("tests/peers/istio_corpus.py");
    let out = Command::new(crate::python()).arg(script).arg(path).output().expect("run istio_corpus.py");
    assert!(out.status.success(), "istio_corpus.py {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("corpus json");
    let resources = v["resources"]
        .as_object()
        .expect("resources")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().cloned().unwrap_or_default()))
        .collect();
    Corpus {
        name: path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(),
        bootstrap: v["bootstrap"].clone(),
        resources,
    }
}

fn pipe_cluster(name: &str, socket: &Path) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"pipe": {"path": socket.display().to_string()}}}}]}]}
    })
}

/// The dump's own bootstrap (pilot-agent's), with only its `xds-grpc` and `sds-grpc`
/// clusters pointed at the test's control plane socket (pilot-agent points them at its own
/// sockets), and ADS in SotW or Delta.
pub fn bootstrap(c: &Corpus, socket: &Path, delta: bool) -> String {
    let mut b = c.bootstrap.clone();
    if !b.is_object() || b.get("node").is_none() {
        b = json!({"node": {"id": "sidecar~10.200.0.2~app-1.default~default.svc.cluster.local", "cluster": "app.default"}});
    }
    // A partial dump may lack them; both proxies need an id and a cluster for ADS.
    if b["node"]["id"].as_str().is_none_or(str::is_empty) {
        b["node"]["id"] = json!("sidecar~10.200.0.2~app-1.default~default.svc.cluster.local");
    }
    if b["node"]["cluster"].as_str().is_none_or(str::is_empty) {
        b["node"]["cluster"] = json!("app.default");
    }
    b["admin"] = json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}});
    let mut clusters: Vec<Value> = b
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["name"] != "xds-grpc" && c["name"] != "sds-grpc")
        .collect();
    clusters.push(pipe_cluster("xds-grpc", socket));
    clusters.push(pipe_cluster("sds-grpc", socket));
    if b.get("static_resources").is_none() {
        b["static_resources"] = json!({});
    }
    b["static_resources"]["clusters"] = Value::Array(clusters);
    let api = if delta { "DELTA_GRPC" } else { "GRPC" };
    b["dynamic_resources"] = json!({
        "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        "ads_config": {"api_type": api, "set_node_on_first_message_only": true, "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}
    });
    serde_json::to_string_pretty(&b).expect("bootstrap json")
}

/// Which data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Envoy 1.40 from the test venv.
    Envoy,
    /// The `isthmus` binary.
    Isthmus,
}

/// A process inside a namespace; killed on drop.
pub struct NsChild(Child);

impl Drop for NsChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `plane` in `ns` on the bootstrap file `cfg` with pilot-agent's flags.
pub fn spawn(plane: Plane, ns: &Netns, cfg: &Path, log: &Path) -> NsChild {
    spawn_with(plane, ns, cfg, log, AGENT_FLAGS)
}

/// [`spawn`] with other flags (pilot-agent leaves `--log-format` out when the bootstrap sets
/// `application_log_config`, which Envoy refuses to combine with it).
pub fn spawn_with(plane: Plane, ns: &Netns, cfg: &Path, log: &Path, flags: &[&str]) -> NsChild {
    let bin = match plane {
        Plane::Envoy => crate::python().parent().expect("venv bin").join("envoy"),
        Plane::Isthmus => crate::isthmus_bin(),
    };
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(bin)
        .arg("-c")
        .arg(cfg)
        .args(["-l", "warning"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn proxy");
    NsChild(child)
}

/// GETs an admin path inside `ns` (the admin is on the namespace's 127.0.0.1:15000).
pub fn admin(ns: &Netns, path: &str) -> (u16, String) {
    let out = ns.run(&["curl", "-s", "-m", "5", "-w", "\n%{http_code}", &format!("http://127.0.0.1:15000{path}")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Resource names a data plane holds, by type URL, from its `/config_dump?include_eds` (the
/// same Envoy shape from both): listeners active or warming, clusters active or warming, route
/// tables, endpoint assignments.
pub fn accepted(dump: &Value) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = TYPES.iter().map(|t| (*t, BTreeSet::new())).collect();
    for c in dump["configs"].as_array().into_iter().flatten() {
        let t = c["@type"].as_str().unwrap_or_default();
        let names = |field: &str, inner: &str, key: &str| -> Vec<String> {
            c[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e[inner][key].as_str().map(str::to_string))
                .collect()
        };
        if t.ends_with("ListenersConfigDump") {
            for l in c["dynamic_listeners"].as_array().into_iter().flatten() {
                if l.get("active_state").is_some() || l.get("warming_state").is_some() {
                    out.entry(LDS).or_default().insert(l["name"].as_str().unwrap_or_default().to_string());
                }
            }
        } else if t.ends_with("ClustersConfigDump") {
            let e = out.entry(CDS).or_default();
            e.extend(names("dynamic_active_clusters", "cluster", "name"));
            e.extend(names("dynamic_warming_clusters", "cluster", "name"));
        } else if t.ends_with("RoutesConfigDump") {
            out.entry(RDS).or_default().extend(names("dynamic_route_configs", "route_config", "name"));
        } else if t.ends_with("EndpointsConfigDump") {
            out.entry(EDS).or_default().extend(names("dynamic_endpoint_configs", "endpoint_config", "cluster_name"));
        }
    }
    out
}

/// What one data plane made of one dump.
pub struct Outcome {
    /// Accepted names by type.
    pub accepted: BTreeMap<&'static str, BTreeSet<String>>,
    /// NACK messages, in order.
    pub nacks: Vec<String>,
    /// Names the control plane sent, by type (what the proxy subscribed to of the corpus).
    pub pushed: BTreeMap<String, BTreeSet<String>>,
    /// Its `/config_dump?include_eds`.
    pub dump: Value,
    /// Kept alive for traffic checks by the caller.
    pub ns: Netns,
    /// The proxy.
    pub proxy: NsChild,
    /// The control plane.
    pub cp: AdsServer,
}

/// Serves `c` to `plane` and waits until every response was answered (ACK or NACK) and the
/// config dump stopped changing.
pub fn run(c: &Corpus, plane: Plane, delta: bool, extra: &dyn Fn(&mut AdsServer)) -> Outcome {
    let tag =
        format!("{}{}{}", if plane == Plane::Envoy { "e" } else { "i" }, if delta { "d" } else { "s" }, short(&c.name));
    let socket = crate::scratch(&format!("xds-{tag}.sock"));
    let mut cp = AdsServer::start_args(&["--unix".into(), socket.display().to_string(), "--all-types".into()]);
    for t in TYPES {
        cp.set(t, "corpus-1", c.resources.get(t).cloned().unwrap_or_default());
    }
    extra(&mut cp);
    let ns = Netns::new(&tag);
    let cfg = crate::scratch(&format!("bootstrap-{tag}.json"));
    std::fs::write(&cfg, bootstrap(c, &socket, delta)).expect("write bootstrap");
    let log = crate::scratch(&format!("proxy-{tag}.log"));
    let proxy = spawn(plane, &ns, &cfg, &log);
    // LDS and CDS are always asked for: wait until both pushes were answered.
    for t in [CDS, LDS] {
        let pushed = cp.wait_for(Duration::from_secs(30), |e| e["event"] == "pushed" && e["type"] == t);
        let nonce = pushed["nonce"].as_str().unwrap_or_default().to_string();
        let _ = cp.wait_for(Duration::from_secs(30), |e| {
            e["event"] == "request" && e["type"] == t && e["nonce"] == nonce.as_str()
        });
    }
    // Then until every push (RDS and EDS follow the accepted listeners and clusters) has its
    // answer and two dumps in a row agree.
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let dump = loop {
        assert!(
            Instant::now() < end,
            "{} ({plane:?}) did not settle; log: {}",
            c.name,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        drain_events(&mut cp);
        let pending = unanswered(&cp.seen);
        let (status, body) = admin(&ns, "/config_dump?include_eds");
        let dump: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let now = (status == 200).then(|| accepted(&dump));
        if pending == 0 && now.is_some() && now == last {
            break dump;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    };
    let nacks = cp
        .seen
        .iter()
        .filter(|e| e["event"] == "request" && e["nack"] == true)
        .map(|e| {
            format!(
                "{}: {}",
                short_type(e["type"].as_str().unwrap_or_default()),
                e["error"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let mut pushed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in cp.seen.iter().filter(|e| e["event"] == "pushed") {
        let names = e["names"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_string));
        pushed.entry(e["type"].as_str().unwrap_or_default().to_string()).or_default().extend(names);
    }
    Outcome { accepted: accepted(&dump), nacks, pushed, dump, ns, proxy, cp }
}

/// Pulls every event that has arrived, without waiting.
fn drain_events(cp: &mut AdsServer) {
    while cp.try_next().is_some() {}
}

/// Pushes without a later request carrying their nonce.
fn unanswered(seen: &[Value]) -> usize {
    let pushed: Vec<&str> =
        seen.iter().filter(|e| e["event"] == "pushed").filter_map(|e| e["nonce"].as_str()).collect();
    pushed.iter().filter(|n| !seen.iter().any(|e| e["event"] == "request" && e["nonce"].as_str() == Some(n))).count()
}

fn short(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).take(4).collect()
}

/// `lds`, `cds`, … for a type URL.
pub fn short_type(t: &str) -> &'static str {
    match t {
        LDS => "lds",
        CDS => "cds",
        RDS => "rds",
        EDS => "eds",
        _ => "other",
    }
}
