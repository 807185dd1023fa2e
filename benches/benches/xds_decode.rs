//! Decode and hand over one EDS response with 10,000 endpoints: the cost the xDS client pays
//! per large snapshot (protobuf decode of the response, name extraction, handler call with
//! the resource moved, ACK built).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use xds_client::protos::envoy::config::core::v3::{address, socket_address, Address, SocketAddress};
use xds_client::protos::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use xds_client::protos::envoy::service::discovery::v3::DiscoveryResponse;
use xds_client::protos::google::protobuf::Any;
use xds_client::{types, Engine, Handler, Mode, Rejected, Resource};

/// Decodes the assignment fully, as the proxy's conversion would.
struct DecodeAll;

impl Handler for DecodeAll {
    fn apply(&self, _: &str, updated: Vec<Resource>, _: Vec<String>) -> Vec<Rejected> {
        for r in updated {
            let cla = ClusterLoadAssignment::decode(r.resource.value.as_slice()).unwrap();
            assert_eq!(cla.endpoints[0].lb_endpoints.len(), 10_000);
        }
        Vec::new()
    }
}

fn response() -> Vec<u8> {
    response_n(10_000)
}

fn response_n(n: u32) -> Vec<u8> {
    let eps = (0..n)
        .map(|i| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(8080)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    let cla = ClusterLoadAssignment {
        cluster_name: "outbound|8080||big.default.svc.cluster.local".into(),
        endpoints: vec![LocalityLbEndpoints { lb_endpoints: eps, ..Default::default() }],
        ..Default::default()
    };
    let any = Any { type_url: types::ENDPOINT.into(), value: cla.encode_to_vec() };
    DiscoveryResponse {
        version_info: "v1".into(),
        resources: vec![any],
        type_url: types::ENDPOINT.into(),
        nonce: "n".into(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let bytes = response();
    let mut g = c.benchmark_group("xds");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("eds_10k_endpoints_decode_and_hand_over", |b| {
        let mut engine = Engine::new(Mode::Sotw, Default::default(), Arc::new(DecodeAll), None);
        engine.subscribe(types::ENDPOINT, ["outbound|8080||big.default.svc.cluster.local".to_string()].into(), false);
        b.iter(|| {
            let resp = DiscoveryResponse::decode(bytes.as_slice()).unwrap();
            engine.on_sotw(resp)
        })
    });
    g.finish();
}

/// Applying a 100,000-endpoint assignment to an Istio-shaped EDS cluster (LEAST_REQUEST,
/// outlier detection): conversion, then the host set the pickers use.
fn apply(c: &mut Criterion) {
    use xds_client::protos::envoy::config::cluster::v3::Cluster;
    let cla = ClusterLoadAssignment::decode(
        &Any::decode(&*DiscoveryResponse::decode(response_n(100_000).as_slice()).unwrap().resources[0].encode_to_vec())
            .unwrap()
            .value[..],
    )
    .unwrap();
    let cluster: Cluster = xds_client::json::from_json(serde_json::json!({
        "name": "big", "type": "EDS", "connectTimeout": "1s", "lbPolicy": "LEAST_REQUEST",
        "edsClusterConfig": {"edsConfig": {"ads": {}}, "serviceName": "big"},
        "outlierDetection": {"consecutive5xx": 5}
    }))
    .unwrap();
    let path = proxy::config::error::Path::root("eds");
    let model = Arc::new(proxy::config::convert::cluster(&cluster, &path).unwrap());
    let cm = proxy::cluster::ClusterManager::new(&[proxy::build::cluster(&model).unwrap()], Default::default());
    let mut g = c.benchmark_group("eds_apply");
    g.sample_size(10);
    g.bench_function("convert_100k_endpoints", |b| {
        b.iter(|| proxy::config::convert::load_assignment(&cla, &path).unwrap())
    });
    let assignment = proxy::config::convert::load_assignment(&cla, &path).unwrap();
    g.bench_function("set_assignment_100k_endpoints", |b| b.iter(|| cm.set_assignment("big", assignment.clone())));
    g.finish();
}

criterion_group!(benches, bench, apply);
criterion_main!(benches);
