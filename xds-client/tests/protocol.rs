//! ADS protocol behaviour over real gRPC streams to an in-process tonic server: node on the
//! first request, wildcard vs named subscriptions, ACK, partial NACK, removal, does-not-exist,
//! reconnect with versions, both SotW and Delta.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;
use xds_client::protos::envoy::config::core::v3::{Locality, Node};
use xds_client::protos::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as DeltaResource,
};
use xds_client::{types, Backoff, ClientConfig, Mode, Target, XdsClient};

fn config(server: &TestServer, mode: Mode) -> ClientConfig {
    ClientConfig {
        target: Target::Tcp(format!("http://{}", server.addr)),
        mode,
        node: Node {
            id: "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local".into(),
            cluster: "p.ns".into(),
            locality: Some(Locality {
                region: "cn-hangzhou".into(),
                zone: "cn-hangzhou-h".into(),
                sub_zone: String::new(),
            }),
            ..Default::default()
        },
        initial_fetch_timeout: Some(Duration::from_millis(300)),
        metadata: vec![("authorization".into(), "Bearer t0k3n".into())],
        backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_millis(400) },
        service: Default::default(),
        transport: Default::default(),
    }
}

fn sotw(
    type_url: &str,
    version: &str,
    nonce: &str,
    resources: Vec<xds_client::protos::google::protobuf::Any>,
) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources,
        type_url: type_url.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sotw_ack_partial_nack_removal_and_named_subscriptions() {
    let mut server = TestServer::start().await;
    let rec = Recorder::new();
    let client = XdsClient::start(config(&server, Mode::Sotw), rec.clone());
    client.watch_all(types::CLUSTER);
    let mut s = server.next_sotw().await;

    // 1. First request: node, wildcard (no names), empty version and nonce; call metadata set.
    assert_eq!(s.authorization.as_deref(), Some("Bearer t0k3n"));
    let first = s.recv().await;
    assert_eq!(first.type_url, types::CLUSTER);
    assert_eq!(first.node.as_ref().unwrap().id, "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local");
    assert_eq!(first.node.as_ref().unwrap().locality.as_ref().unwrap().zone, "cn-hangzhou-h");
    assert!(first.resource_names.is_empty() && first.version_info.is_empty() && first.response_nonce.is_empty());

    // 2. ACK carries the version and nonce, and no node.
    s.send(sotw(types::CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")]));
    let ack = s.recv().await;
    assert_eq!((ack.version_info.as_str(), ack.response_nonce.as_str()), ("v1", "n1"));
    assert!(ack.error_detail.is_none() && ack.node.is_none());

    // 5. Partial NACK: the valid cluster is applied, the bad one named, version stays v1.
    s.send(sotw(types::CLUSTER, "v2", "n2", vec![cluster("a"), cluster("b"), cluster("c"), cluster("bad-1")]));
    let nack = s.recv().await;
    assert_eq!((nack.version_info.as_str(), nack.response_nonce.as_str()), ("v1", "n2"));
    let detail = nack.error_detail.unwrap().message;
    assert!(detail.contains("bad-1: connect_timeout: must be positive"), "{detail}");
    let last = rec.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, ["a", "b", "c", "bad-1"], "valid resources are handed over with the bad one");

    // Duplicate names NACK the whole response without applying it.
    let before = rec.applied.lock().unwrap().len();
    s.send(sotw(types::CLUSTER, "v3", "n3", vec![cluster("a"), cluster("a")]));
    let dup = s.recv().await;
    assert_eq!(dup.version_info, "v1");
    assert!(dup.error_detail.unwrap().message.contains("duplicate resource name \"a\""));
    assert_eq!(rec.applied.lock().unwrap().len(), before);

    // 6. SotW removal for a wildcard type: a missing cluster is removed.
    s.send(sotw(types::CLUSTER, "v4", "n4", vec![cluster("a")]));
    let ack = s.recv().await;
    assert_eq!(ack.version_info, "v4");
    let last = rec.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.2, ["b", "c"]);

    // Named type: EDS asks for exactly the names; a partial response is not a removal.
    client.watch_names(types::ENDPOINT, ["x".to_string(), "y".to_string()]);
    let eds = s.recv().await;
    assert_eq!(eds.type_url, types::ENDPOINT);
    assert_eq!(eds.resource_names, ["x", "y"]);
    s.send(sotw(types::ENDPOINT, "e1", "n5", vec![cla("x")]));
    assert!(s.recv().await.error_detail.is_none());
    let last = rec.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.1.clone(), last.2.clone()), (vec!["x".to_string()], vec![]));

    // 7. Does-not-exist: "y" never came; the handler hears about it after the timer.
    let rec2 = rec.clone();
    within(async move {
        loop {
            if rec2.missing.lock().unwrap().iter().any(|(t, n)| t == types::ENDPOINT && n == "y") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!rec.missing.lock().unwrap().iter().any(|(_, n)| n == "x"));

    // Unsubscribing "x" tells the handler it is gone.
    client.watch_names(types::ENDPOINT, ["y".to_string()]);
    let eds = s.recv().await;
    assert_eq!(
        (eds.resource_names.clone(), eds.version_info.as_str(), eds.response_nonce.as_str()),
        (vec!["y".to_string()], "e1", "n5")
    );
    let last = rec.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.2, ["x"]);

    // A response for a type never requested is NACKed, nothing applied.
    s.send(sotw(types::LISTENER, "l1", "n6", vec![]));
    let r = s.recv().await;
    assert_eq!(r.type_url, types::LISTENER);
    assert!(r.error_detail.unwrap().message.contains("was not requested"));

    // 8. Reconnect: the server drops the stream; the new stream resends accepted versions,
    //    the node again, and current names; nothing accepted was lost.
    drop(s);
    let mut s2 = server.next_sotw().await;
    let mut firsts = [s2.recv().await, s2.recv().await];
    firsts.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    let (cds, eds) = (&firsts[0], &firsts[1]);
    assert_eq!(
        (cds.type_url.as_str(), cds.version_info.as_str(), cds.response_nonce.as_str()),
        (types::CLUSTER, "v4", "")
    );
    assert_eq!((eds.version_info.as_str(), eds.resource_names.clone()), ("e1", vec!["y".to_string()]));
    assert!(cds.node.is_some() || eds.node.is_some());
    let rec2 = rec.clone();
    within(async move {
        while *rec2.connected.lock().unwrap() != [true, false, true] {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    client.shutdown();
}

#[tokio::test]
async fn sotw_two_quick_responses_are_acked_in_order() {
    let mut server = TestServer::start().await;
    let rec = Recorder::new();
    let client = XdsClient::start(config(&server, Mode::Sotw), rec.clone());
    client.watch_all(types::CLUSTER);
    let mut s = server.next_sotw().await;
    s.recv().await;
    // 9. Stale-nonce race: two responses back to back; each is ACKed with its own nonce.
    s.send(sotw(types::CLUSTER, "v1", "n1", vec![cluster("a")]));
    s.send(sotw(types::CLUSTER, "v2", "n2", vec![cluster("a"), cluster("b")]));
    let a1 = s.recv().await;
    let a2 = s.recv().await;
    assert_eq!((a1.version_info.as_str(), a1.response_nonce.as_str()), ("v1", "n1"));
    assert_eq!((a2.version_info.as_str(), a2.response_nonce.as_str()), ("v2", "n2"));
    assert!(a1.error_detail.is_none() && a2.error_detail.is_none());
    client.shutdown();
}

#[tokio::test]
async fn garbage_resources_are_nacked_and_a_failed_stream_reconnects() {
    let mut server = TestServer::start().await;
    let rec = Recorder::new();
    let client = XdsClient::start(config(&server, Mode::Sotw), rec.clone());
    client.watch_all(types::CLUSTER);
    let mut s = server.next_sotw().await;
    s.recv().await;
    let garbage = xds_client::protos::google::protobuf::Any {
        type_url: types::CLUSTER.into(),
        value: b"\xff\xff\xff\xff".to_vec(),
    };
    s.send(sotw(types::CLUSTER, "v1", "n1", vec![cluster("ok"), garbage]));
    let nack = s.recv().await;
    assert!(nack.error_detail.unwrap().message.contains("resources[1]: cannot decode"));
    assert!(rec.applied.lock().unwrap().is_empty(), "an undecodable response is rejected whole");
    // The server fails the stream with an error status: the client reconnects and keeps "ok".
    s.responses.send(Err(tonic::Status::unavailable("going away"))).unwrap();
    let mut s2 = server.next_sotw().await;
    let again = s2.recv().await;
    assert_eq!(again.version_info, "", "v1 was never accepted");
    client.shutdown();
}

#[tokio::test]
async fn delta_subscribe_ack_nack_remove_and_reconnect_with_initial_versions() {
    let mut server = TestServer::start().await;
    let rec = Recorder::new();
    let client = XdsClient::start(config(&server, Mode::Delta), rec.clone());
    client.watch_all(types::CLUSTER);
    client.watch_names(types::ENDPOINT, ["x".to_string()]);
    let mut s = server.next_delta().await;
    let first = s.recv().await;
    assert_eq!(first.type_url, types::CLUSTER);
    assert!(first.node.is_some());
    assert!(first.resource_names_subscribe.is_empty(), "CDS stays wildcard");
    let eds = s.recv().await;
    assert_eq!(eds.resource_names_subscribe, ["x"]);
    assert!(eds.node.is_none());

    let res = |name: &str, v: &str, any| DeltaResource {
        name: name.into(),
        version: v.into(),
        resource: Some(any),
        ..Default::default()
    };
    s.send(DeltaDiscoveryResponse {
        type_url: types::CLUSTER.into(),
        nonce: "d1".into(),
        resources: vec![res("a", "1", cluster("a")), res("bad-z", "1", cluster("bad-z"))],
        ..Default::default()
    });
    let nack = s.recv().await;
    assert_eq!(nack.response_nonce, "d1");
    assert!(nack.error_detail.unwrap().message.contains("bad-z"));
    s.send(DeltaDiscoveryResponse {
        type_url: types::CLUSTER.into(),
        nonce: "d2".into(),
        resources: vec![res("b", "7", cluster("b"))],
        removed_resources: vec!["a".into(), "never-had".into()],
        ..Default::default()
    });
    let ack = s.recv().await;
    assert!(ack.error_detail.is_none() && ack.response_nonce == "d2");
    assert_eq!(rec.applied.lock().unwrap().last().unwrap().2, ["a"], "removing an unknown name is ignored");

    // Subscription change: only the difference, no nonce.
    client.watch_names(types::ENDPOINT, ["y".to_string()]);
    let change = s.recv().await;
    assert_eq!(
        (change.resource_names_subscribe.clone(), change.resource_names_unsubscribe.clone()),
        (vec!["y".to_string()], vec!["x".to_string()])
    );
    assert!(change.response_nonce.is_empty());

    // Reconnect: initial_resource_versions lists what we hold; CDS still subscribes nothing.
    drop(s);
    let mut s2 = server.next_delta().await;
    let cds = s2.recv().await;
    assert_eq!(cds.type_url, types::CLUSTER);
    assert!(cds.resource_names_subscribe.is_empty());
    assert_eq!(cds.initial_resource_versions.get("b").map(String::as_str), Some("7"));
    assert!(!cds.initial_resource_versions.contains_key("bad-z") && !cds.initial_resource_versions.contains_key("a"));
    let eds = s2.recv().await;
    assert_eq!(eds.resource_names_subscribe, ["y"]);
    client.shutdown();
}

#[tokio::test]
async fn back_off_grows_while_the_server_is_down() {
    // Nothing listens: connection attempts fail; the client keeps trying without panicking,
    // and a server that appears later gets the stream.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let rec = Recorder::new();
    let mut cfg = config(
        &TestServer {
            addr,
            sotw: tokio::sync::mpsc::unbounded_channel().1,
            delta: tokio::sync::mpsc::unbounded_channel().1,
        },
        Mode::Sotw,
    );
    cfg.target = Target::Tcp(format!("http://{addr}"));
    let client = XdsClient::start(cfg, rec.clone());
    client.watch_all(types::CLUSTER);
    let l = within(async {
        loop {
            // Take the port back once the client has failed at least once.
            if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let svc_server = support_server_on(l, tx);
    let mut s = within(rx.recv()).await.unwrap();
    let first = s.recv().await;
    assert_eq!(first.type_url, types::CLUSTER);
    drop(svc_server);
    client.shutdown();
}

#[tokio::test]
async fn connects_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("xds-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("XDS");
    let _ = std::fs::remove_file(&path);
    let (mut streams, _server) = serve_unix(&path);
    let rec = Recorder::new();
    let server = TestServer {
        addr: "127.0.0.1:1".parse().unwrap(),
        sotw: tokio::sync::mpsc::unbounded_channel().1,
        delta: tokio::sync::mpsc::unbounded_channel().1,
    };
    let mut cfg = config(&server, Mode::Sotw);
    cfg.target = Target::Unix(path.clone());
    let client = XdsClient::start(cfg, rec.clone());
    client.watch_all(types::LISTENER);
    let mut s = within(streams.recv()).await.unwrap();
    let first = s.recv().await;
    assert_eq!(first.type_url, types::LISTENER);
    s.send(sotw(types::LISTENER, "l1", "n1", vec![]));
    assert_eq!(s.recv().await.version_info, "l1");
    client.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connects_over_mutual_tls() {
    // A CA made for this test issues the control plane's and the client's certificates.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test root");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("istiod.istio-system.svc");
    let (client_cert, client_key) = leaf("sidecar.test");
    let (addr, mut streams) = serve_tls(&server_cert, &server_key, &ca.pem()).await;
    let server = TestServer {
        addr,
        sotw: tokio::sync::mpsc::unbounded_channel().1,
        delta: tokio::sync::mpsc::unbounded_channel().1,
    };
    let mut cfg = config(&server, Mode::Sotw);
    cfg.target = Target::Tls {
        uri: format!("https://{addr}"),
        ca_pem: ca.pem().into_bytes(),
        server_name: "istiod.istio-system.svc".into(),
        identity: Some((client_cert.into_bytes(), client_key.into_bytes())),
    };
    let rec = Recorder::new();
    let client = XdsClient::start(cfg, rec.clone());
    client.watch_all(types::CLUSTER);
    let mut s = within(streams.recv()).await.unwrap();
    assert_eq!(s.recv().await.type_url, types::CLUSTER);
    client.shutdown();
}
