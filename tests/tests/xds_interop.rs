//! The xDS client against an independent control plane (Python grpcio + `xds-protos`), over
//! SotW and Delta: the spec's push sequence steps 1, 2, 5, 6, 7, 8 and 9. Resources are
//! hand-written proto-JSON; the consumer converts them with the proxy's real conversion, so a
//! NACK carries the same message an operator would see.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prost::Message;
use proxy::config::convert::{cluster, load_assignment, route_config, Resources};
use proxy::config::error::Path;
use proxy::config::Discovery;
use serde_json::{json, Value};
use tests::xds_server::AdsServer;
use xds_client::protos::envoy::config::cluster::v3::Cluster;
use xds_client::protos::envoy::config::core::v3::{Locality, Node};
use xds_client::protos::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_client::protos::envoy::config::route::v3::RouteConfiguration;
use xds_client::protos::google::protobuf::{value::Kind, Struct, Value as PbValue};
use xds_client::{types, Backoff, ClientConfig, Handler, Mode, Rejected, Resource, Target, XdsClient};

const ECHO: &str = "outbound|8080||echo.default.svc.cluster.local";
const OTHER: &str = "outbound|9090||other.default.svc.cluster.local";

/// A consumer shaped like the proxy: converts, keeps what it accepted, follows EDS names.
#[derive(Default)]
struct Consumer {
    client: OnceLock<XdsClient>,
    clusters: Mutex<BTreeMap<String, Option<String>>>,
    endpoints: Mutex<BTreeMap<String, usize>>,
    routes: Mutex<BTreeSet<String>>,
    missing: Mutex<Vec<String>>,
}

impl Handler for Consumer {
    fn apply(&self, type_url: &str, updated: Vec<Resource>, removed: Vec<String>) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        let reject = |name: &str, e: String| Rejected { name: name.to_string(), reason: e };
        match type_url {
            types::CLUSTER => {
                let mut m = self.clusters.lock().unwrap();
                for r in updated {
                    let c = Cluster::decode(r.resource.value.as_slice()).unwrap();
                    match cluster(&c, &Path::root(format!("cluster \"{}\"", r.name))) {
                        Ok(model) => {
                            let eds = match model.discovery {
                                Discovery::Eds { service_name } => Some(service_name),
                                _ => None,
                            };
                            m.insert(r.name, eds);
                        }
                        Err(e) => rejected.push(reject(&r.name, e.to_string())),
                    }
                }
                for n in removed {
                    m.remove(&n);
                }
                let eds: Vec<String> = m.values().flatten().cloned().collect();
                if let Some(c) = self.client.get() {
                    c.watch_names(types::ENDPOINT, eds);
                }
            }
            types::ENDPOINT => {
                let mut m = self.endpoints.lock().unwrap();
                for r in updated {
                    let cla = ClusterLoadAssignment::decode(r.resource.value.as_slice()).unwrap();
                    match load_assignment(&cla, &Path::root(format!("endpoints \"{}\"", r.name))) {
                        Ok(a) => {
                            m.insert(r.name, a.endpoints.iter().map(|l| l.endpoints.len()).sum());
                        }
                        Err(e) => rejected.push(reject(&r.name, e.to_string())),
                    }
                }
                for n in removed {
                    m.remove(&n);
                }
            }
            types::ROUTE => {
                let mut m = self.routes.lock().unwrap();
                for r in updated {
                    let rc = RouteConfiguration::decode(r.resource.value.as_slice()).unwrap();
                    match route_config(&rc, &Path::root(format!("route \"{}\"", r.name)), &Resources::lenient()) {
                        Ok(_) => {
                            m.insert(r.name);
                        }
                        Err(e) => rejected.push(reject(&r.name, e.to_string())),
                    }
                }
                for n in removed {
                    m.remove(&n);
                }
            }
            _ => {}
        }
        rejected
    }

    fn does_not_exist(&self, _type_url: &str, name: &str) {
        self.missing.lock().unwrap().push(name.to_string());
    }
}

fn eds_cluster(name: &str) -> Value {
    json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS",
           "connect_timeout": "1s", "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": name}})
}

fn bad_cluster(name: &str) -> Value {
    json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name, "connect_timeout": "1s", "lb_policy": "LOAD_BALANCING_POLICY_CONFIG"})
}

fn assignment(name: &str) -> Value {
    let ep =
        |port: u16| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}});
    json!({"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": name,
           "endpoints": [
             {"locality": {"region": "cn-hangzhou", "zone": "cn-hangzhou-h"}, "priority": 0, "lb_endpoints": [ep(8081), ep(8082)]},
             {"locality": {"region": "cn-beijing", "zone": "cn-beijing-a"}, "priority": 1, "lb_endpoints": [ep(8083)]}]})
}

fn route(name: &str) -> Value {
    json!({"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": name,
           "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": ECHO}}]}]})
}

fn node() -> Node {
    let s = |v: &str| PbValue { kind: Some(Kind::StringValue(v.into())) };
    Node {
        id: "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local".into(),
        cluster: "p.ns".into(),
        locality: Some(Locality {
            region: "cn-hangzhou".into(),
            zone: "cn-hangzhou-h".into(),
            sub_zone: String::new(),
        }),
        metadata: Some(Struct {
            fields: [("ISTIO_VERSION", s("1.28.0")), ("CLUSTER_ID", s("hangzhou")), ("NAMESPACE", s("ns"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }),
        user_agent_name: "isthmus".into(),
        ..Default::default()
    }
}

fn until(what: &str, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn push_sequence(mode: Mode) {
    let delta = mode == Mode::Delta;
    let mut cp = AdsServer::start();
    cp.set(types::CLUSTER, "c1", vec![eds_cluster(ECHO)]);
    cp.set(types::ENDPOINT, "e1", vec![assignment(ECHO)]);
    let consumer = Arc::new(Consumer::default());
    let client = XdsClient::start(
        ClientConfig {
            target: Target::Tcp(format!("http://127.0.0.1:{}", cp.port)),
            mode,
            node: node(),
            initial_fetch_timeout: Some(Duration::from_millis(500)),
            metadata: Vec::new(),
            backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_millis(500) },
            service: Default::default(),
            transport: Default::default(),
        },
        consumer.clone(),
    );
    consumer.client.set(client.clone()).ok().unwrap();
    client.watch_all(types::CLUSTER);
    client.watch_all(types::LISTENER);

    // 1. Node identity on the first request; LDS/CDS wildcard.
    let first = cp.request(types::CLUSTER, |_| true);
    assert_eq!(first["node_id"], "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local");
    assert_eq!(first["locality"]["zone"], "cn-hangzhou-h");
    assert_eq!(first["metadata_keys"], json!(["CLUSTER_ID", "ISTIO_VERSION", "NAMESPACE"]));
    let names_key = if delta { "subscribe" } else { "names" };
    assert_eq!(first[names_key], json!([]));
    let lds = cp.request(types::LISTENER, |_| true);
    assert_eq!(lds[names_key], json!([]));
    assert_eq!(lds["node_id"], "", "node only on the first request of a stream");

    // 2. CDS then EDS: the CDS ACK, then an EDS request naming the service, then its ACK.
    let ack = cp.request(types::CLUSTER, |e| e["nonce"] != "" && e["nack"] == false);
    if !delta {
        assert_eq!(ack["version"], "c1");
    }
    cp.request(types::ENDPOINT, |e| e[names_key] == json!([ECHO]));
    cp.request(types::ENDPOINT, |e| e["nonce"] != "" && e["nack"] == false);
    until("EDS applied", || consumer.endpoints.lock().unwrap().get(ECHO) == Some(&3));

    // 5. Partial NACK: one valid new cluster applied, the bad one named; old ones kept.
    cp.set(types::CLUSTER, "c2", vec![eds_cluster(ECHO), eds_cluster(OTHER), bad_cluster("bad-policy")]);
    cp.push(types::CLUSTER, "nack-1");
    let nack = cp.request(types::CLUSTER, |e| e["nonce"] == "nack-1");
    assert_eq!(nack["nack"], true);
    if !delta {
        assert_eq!(nack["version"], "c1", "a NACK carries the previous version");
    }
    let err = nack["error"].as_str().unwrap();
    assert!(
        err.contains("bad-policy") && err.contains("lb_policy: LOAD_BALANCING_POLICY_CONFIG is not supported"),
        "{err}"
    );
    until("valid cluster applied", || consumer.clusters.lock().unwrap().contains_key(OTHER));
    assert!(consumer.clusters.lock().unwrap().contains_key(ECHO));
    cp.request(types::ENDPOINT, |e| {
        let n = if delta { &e["subscribe"] } else { &e["names"] };
        n.as_array().is_some_and(|a| a.contains(&json!(OTHER)))
    });

    // 6. Removal: ECHO leaves CDS; its EDS name is unsubscribed and its endpoints dropped.
    cp.set(types::CLUSTER, "c3", vec![eds_cluster(OTHER)]);
    if delta {
        cp.cmd(json!({"cmd": "remove", "type": types::CLUSTER, "names": [ECHO]}));
    }
    cp.push(types::CLUSTER, "rm-1");
    let ack = cp.request(types::CLUSTER, |e| e["nonce"] == "rm-1");
    assert_eq!(ack["nack"], false);
    until("cluster removed", || !consumer.clusters.lock().unwrap().contains_key(ECHO));
    if delta {
        cp.request(types::ENDPOINT, |e| e["unsubscribe"] == json!([ECHO]));
    } else {
        cp.request(types::ENDPOINT, |e| e["names"] == json!([OTHER]));
    }
    until("endpoints dropped", || !consumer.endpoints.lock().unwrap().contains_key(ECHO));

    // 7. Does-not-exist: a route the server does not have is reported, then arrives later.
    client.watch_names(types::ROUTE, ["r1".to_string()]);
    cp.request(types::ROUTE, |e| e[names_key] == json!(["r1"]));
    until("r1 reported missing", || consumer.missing.lock().unwrap().contains(&"r1".to_string()));
    cp.set(types::ROUTE, "r-v1", vec![route("r1")]);
    cp.push(types::ROUTE, "route-1");
    cp.request(types::ROUTE, |e| e["nonce"] == "route-1" && e["nack"] == false);
    until("r1 applied", || consumer.routes.lock().unwrap().contains("r1"));

    // 9. Stale-nonce race: two pushes back to back, each ACKed with its own nonce.
    cp.set(types::CLUSTER, "c4", vec![eds_cluster(OTHER), eds_cluster(ECHO)]);
    cp.push(types::CLUSTER, "race-1");
    cp.push(types::CLUSTER, "race-2");
    let a1 = cp.request(types::CLUSTER, |e| e["nonce"] == "race-1");
    let a2 = cp.request(types::CLUSTER, |e| e["nonce"] == "race-2");
    assert_eq!((a1["nack"].clone(), a2["nack"].clone()), (json!(false), json!(false)));

    // 8. Reconnect: the server drops the stream; accepted resources stay; the new stream
    //    carries the accepted version (SotW) or initial_resource_versions (Delta).
    let held = consumer.clusters.lock().unwrap().len();
    cp.cmd(json!({"cmd": "drop_stream"}));
    let again = cp.request(types::CLUSTER, |e| e["stream"] == 2);
    assert_eq!(consumer.clusters.lock().unwrap().len(), held, "nothing accepted is lost while disconnected");
    assert_eq!(again["node_id"], "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local");
    if delta {
        let iv = again["initial_versions"].as_object().unwrap();
        assert_eq!(iv.get(OTHER), Some(&json!("c4")), "{again}");
        assert!(!iv.contains_key("bad-policy"));
        assert_eq!(again["subscribe"], json!([]), "CDS stays wildcard on reconnect");
    } else {
        assert_eq!(again["version"], "c4");
        assert_eq!(again["nonce"], "");
    }
    let rds = cp.request(types::ROUTE, |e| e["stream"] == 2);
    if delta {
        assert_eq!(rds["initial_versions"]["r1"], "r-v1");
    } else {
        assert_eq!(rds["version"], "r-v1");
    }
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sequence_over_sotw() {
    push_sequence(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sequence_over_delta() {
    push_sequence(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_server_is_nacked_and_the_last_good_state_kept() {
    let mut cp = AdsServer::start();
    cp.set(types::CLUSTER, "c1", vec![eds_cluster(ECHO)]);
    let consumer = Arc::new(Consumer::default());
    let client = XdsClient::start(
        ClientConfig {
            target: Target::Tcp(format!("http://127.0.0.1:{}", cp.port)),
            mode: Mode::Sotw,
            node: node(),
            initial_fetch_timeout: None,
            metadata: Vec::new(),
            backoff: Backoff::default(),
            service: Default::default(),
            transport: Default::default(),
        },
        consumer.clone(),
    );
    client.watch_all(types::CLUSTER);
    cp.request(types::CLUSTER, |e| e["nonce"] != "" && e["nack"] == false);
    cp.cmd(json!({"cmd": "garbage", "type": types::CLUSTER, "nonce": "g1"}));
    let nack = cp.request(types::CLUSTER, |e| e["nonce"] == "g1");
    assert_eq!(nack["nack"], true);
    assert_eq!(nack["version"], "c1");
    assert!(nack["error"].as_str().unwrap().contains("cannot decode"), "{nack}");
    assert!(consumer.clusters.lock().unwrap().contains_key(ECHO));
    client.shutdown();
}
