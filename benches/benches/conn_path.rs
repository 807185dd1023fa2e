//! Per-connection and per-request costs outside routing: the ClientHello parse every TLS
//! connection pays, filter-chain selection on a listener shaped like Istio's 15006 with many
//! ports, the Istio metric update every request pays, and converting a large CDS push.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use proxy::listener::chain_match::{self, ConnInfo};

/// The first flight of a real rustls client with Istio's SNI and ALPN (the proxy's verifier
/// without checks: nothing is verified, only the ClientHello is wanted).
fn client_hello() -> Vec<u8> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(proxy::tls::provider_arc())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(proxy::tls::verify::ServerVerifier(None)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"istio-http/1.1".to_vec(), b"istio".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("outbound_.8080_._.reviews.default.svc.cluster.local").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name.to_owned()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn client_hello_parse(c: &mut Criterion) {
    let hello = client_hello();
    assert!(matches!(proxy::detect::detect(&hello), proxy::detect::Detected::Tls(_)));
    c.bench_function("client_hello_parse_istio", |b| b.iter(|| proxy::detect::detect(std::hint::black_box(&hello))));
}

/// Istio's virtualInbound shape: per port, an mTLS HTTP, an mTLS TCP and a plaintext chain.
fn inbound_yaml(ports: u16) -> String {
    let upstream: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut chains = String::new();
    for p in 0..ports {
        let port = 8000 + p;
        for (m, stat) in [
            ("transport_protocol: tls, application_protocols: [istio-http/1.0, istio-http/1.1, istio-h2]", "h"),
            ("transport_protocol: tls, application_protocols: [istio-peer-exchange, istio]", "t"),
            ("transport_protocol: raw_buffer", "r"),
        ] {
            chains += &format!(
                "    - filter_chain_match: {{destination_port: {port}, {m}}}\n      filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: {stat}{port}, cluster: c}}\n"
            );
        }
    }
    let listener = format!(
        "  - name: virtualInbound\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n{chains}"
    );
    tests::yaml::bootstrap(&[listener], &[tests::yaml::cluster("c", &[upstream], "")])
}

fn filter_chain_match(c: &mut Criterion) {
    let b = proxy::config::load::load(None, Some(&inbound_yaml(100))).unwrap();
    let l = &b.listeners[0];
    let conn = ConnInfo {
        local: Some("10.0.0.7:8099".parse().unwrap()),
        peer: Some("10.0.1.9:40000".parse().unwrap()),
        sni: Some("outbound_.8099_._.svc.default.svc.cluster.local".into()),
        transport: "tls",
        alpn: vec!["istio-peer-exchange".into(), "istio".into()],
    };
    assert!(chain_match::select(l, &conn).is_some_and(|c| c.name == "chain-298"));
    c.bench_function("filter_chain_match_300_chains", |bch| bch.iter(|| chain_match::select(l, &conn)));
}

fn metric_update(c: &mut Criterion) {
    let _ = proxy::telemetry::metrics::install();
    let labels = proxy::telemetry::request_metrics::Labels {
        inbound: false,
        peer_principal: "",
        cluster: "outbound|8080||reviews.default.svc.cluster.local",
        grpc: false,
        code: 200,
        grpc_status: "",
        flags: "-",
        locality: "us-east1/us-east1-b",
    };
    c.bench_function("istio_request_metrics_update", |b| {
        b.iter(|| proxy::telemetry::request_metrics::record(&labels, 1.5, 120, 900))
    });
}

/// 1,000 Istio-shaped EDS clusters with outlier detection and auto-mTLS sockets.
fn cds_convert(c: &mut Criterion) {
    use xds_client::protos::envoy::config::cluster::v3::Cluster;
    let clusters: Vec<Cluster> = (0..1000)
        .map(|i| {
            let name = format!("outbound|8080||svc{i}.default.svc.cluster.local");
            xds_client::json::from_json(serde_json::json!({
                "name": name, "type": "EDS", "connectTimeout": "10s", "lbPolicy": "LEAST_REQUEST",
                "edsClusterConfig": {"edsConfig": {"ads": {}, "resourceApiVersion": "V3"}, "serviceName": name},
                "outlierDetection": {"consecutive5xx": 5, "interval": "10s", "baseEjectionTime": "30s"},
                "commonLbConfig": {"healthyPanicThreshold": {"value": 50}},
                "transportSocketMatches": [
                    {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": format!("outbound_.8080_._.svc{i}.default.svc.cluster.local"),
                        "commonTlsContext": {"alpnProtocols": ["istio-peer-exchange", "istio"],
                            "tlsCertificateSdsSecretConfigs": [{"name": "default", "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"}}],
                            "combinedValidationContext": {"defaultValidationContext": {"matchSubjectAltNames": [{"exact": format!("spiffe://cluster.local/ns/default/sa/svc{i}")}]},
                                "validationContextSdsSecretConfig": {"name": "ROOTCA", "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"}}}}}}},
                    {"name": "tlsMode-disabled", "match": {}, "transportSocket": {"name": "envoy.transport_sockets.raw_buffer", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}
                ]
            }))
            .unwrap()
        })
        .collect();
    let path = proxy::config::error::Path::root("cluster");
    assert!(proxy::config::convert::cluster(&clusters[0], &path).is_ok());
    let mut g = c.benchmark_group("cds_convert");
    g.sample_size(10);
    g.bench_function("1000_istio_clusters_auto_mtls", |b| {
        b.iter(|| clusters.iter().filter(|cl| proxy::config::convert::cluster(cl, &path).is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, client_hello_parse, filter_chain_match, metric_update, cds_convert);
criterion_main!(benches);
