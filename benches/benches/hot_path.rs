//! Per-request costs on the hot path, each over the sizes a large mesh produces: route match
//! over 1,000 routes (the last one matching, the worst case for a linear table), endpoint pick
//! for each policy over 10,000 endpoints, and the priority-load computation Envoy redoes on
//! every health change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::HeaderMap;
use proxy::balance::priority::{self, Level};
use proxy::balance::Picker;
use proxy::cluster::host::Host;
use proxy::config::bootstrap::Locality;
use proxy::config::cluster::{HealthStatus, LbPolicy};
use proxy::config::listener::{NetworkFilter, RouteSource};

/// A bootstrap whose one listener has 1,000 prefix routes `/svc<i>/`.
fn routes_yaml() -> String {
    let routes: Vec<String> = (0..1000)
        .map(|i| format!("              - match: {{prefix: \"/svc{i}/\"}}\n                route: {{cluster: c}}"))
        .collect();
    let upstream: SocketAddr = "127.0.0.1:1".parse().unwrap();
    tests::yaml::bootstrap(
        &[tests::yaml::http_listener("l", &routes.join("\n"), "")],
        &[tests::yaml::cluster("c", &[upstream], "")],
    )
}

fn route_match(c: &mut Criterion) {
    let b = proxy::config::load::load(None, Some(&routes_yaml())).unwrap();
    let NetworkFilter::Http(hcm) = &b.listeners[0].filter_chains[0].filter else { panic!("not an HCM") };
    let RouteSource::Inline(rc) = &hcm.routes else { panic!("not inline") };
    let headers = HeaderMap::new();
    c.bench_function("route_match_1000_routes_last", |bch| {
        bch.iter(|| {
            let vh = proxy::l7::router::virtual_host(rc, "shop.example").unwrap();
            proxy::l7::router::route(vh, "/svc999/items?id=1", &headers).unwrap()
        })
    });
}

fn hosts(n: u32, weighted: bool) -> Vec<Arc<Host>> {
    (0..n)
        .map(|i| {
            let addr: SocketAddr = format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255).parse().unwrap();
            let w = if weighted { 1 + i % 7 } else { 1 };
            Arc::new(Host::new(addr, w, Locality::default(), 0, HealthStatus::Healthy, String::new()))
        })
        .collect()
}

fn endpoint_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_10000_endpoints");
    let none = |_: &Host| false;
    for (name, policy, weighted) in [
        ("round_robin", LbPolicy::RoundRobin, false),
        ("round_robin_weighted", LbPolicy::RoundRobin, true),
        ("least_request", LbPolicy::LeastRequest, false),
        ("random_weighted", LbPolicy::Random, true),
        ("peak_ewma", LbPolicy::PeakEwma, false),
    ] {
        let mut rng = rand::rng();
        let picker = Picker::new(hosts(10_000, weighted), policy, 2, &mut rng);
        g.bench_function(BenchmarkId::from_parameter(name), |bch| {
            bch.iter(|| picker.pick(&mut rng, &none, 1).unwrap())
        });
    }
    g.finish();
}

/// Building a picker over 10,000 weighted hosts: what every host-set change (an EDS push, a
/// health flip, an ejection) costs each priority's host list.
fn picker_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("picker_build_10000_weighted");
    g.sample_size(10);
    let weighted = hosts(10_000, true);
    for (name, policy) in [("round_robin", LbPolicy::RoundRobin), ("least_request", LbPolicy::LeastRequest)] {
        let mut rng = rand::rng();
        g.bench_function(BenchmarkId::from_parameter(name), |bch| {
            bch.iter(|| Picker::new(weighted.clone(), policy, 2, &mut rng))
        });
    }
    g.finish();
}

fn priority_load(c: &mut Criterion) {
    let counts: Vec<Level> = (0..5).map(|i| Level { hosts: 100, healthy: 100 - i * 20, degraded: i * 5 }).collect();
    let weights = counts.clone();
    c.bench_function("priority_load_5_levels", |bch| bch.iter(|| priority::compute(&counts, &weights, 140, 50.0)));
}

/// What tracing adds to a request: the decision from `x-request-id`, B3 extraction and
/// injection, and (1 % of requests) the span's tags. Unsampled is the common case.
fn trace_start(c: &mut Criterion) {
    use proxy::config::listener::{RequestId, Tracer, Tracing, Zipkin};
    let zipkin = Zipkin {
        collector_cluster: "z".into(),
        collector_endpoint: "/api/v2/spans".into(),
        collector_hostname: "z".into(),
        trace_id_128bit: false,
        shared_span_context: false,
    };
    let tracing = |percent: f64| Tracing {
        client_sampling: 100.0,
        random_sampling: percent,
        overall_sampling: 100.0,
        provider: Some(Arc::new(Tracer::Zipkin(zipkin.clone()))),
        custom_tags: Vec::new(),
        max_path_tag_length: 256,
    };
    let rid = RequestId::default();
    let mut g = c.benchmark_group("trace_start");
    for (name, percent) in [("unsampled", 0.0), ("sampled", 100.0)] {
        let t = tracing(percent);
        let start = proxy::telemetry::trace::Start {
            tracing: &t,
            request_id: &rid,
            egress: true,
            host: "reviews:9080",
            decorator: None,
            scheme: "http",
            method: "GET",
            path: "/",
            protocol: "HTTP/1.1",
            peer: "127.0.0.1:40000".parse().unwrap(),
            internal: false,
            local: "127.0.0.1:15001".parse().unwrap(),
        };
        let mut base = HeaderMap::new();
        base.insert("host", "reviews:9080".parse().unwrap());
        base.insert("user-agent", "wrk".parse().unwrap());
        base.insert("x-request-id", "5c1d2a3b-0000-4000-8000-000000000000".parse().unwrap());
        g.bench_function(BenchmarkId::from_parameter(name), |bch| {
            bch.iter(|| {
                let mut h = base.clone();
                h.reserve(5);
                proxy::telemetry::trace::start(&start, &mut h)
            })
        });
    }
    // The baseline the two above include: cloning the header map.
    g.bench_function("header_clone_only", |bch| {
        let mut base = HeaderMap::new();
        base.insert("host", "reviews:9080".parse().unwrap());
        base.insert("user-agent", "wrk".parse().unwrap());
        base.insert("x-request-id", "5c1d2a3b-0000-4000-8000-000000000000".parse().unwrap());
        bch.iter(|| {
            let mut h = base.clone();
            h.reserve(5);
            h
        })
    });
    g.finish();
}

criterion_group!(benches, route_match, endpoint_pick, picker_build, priority_load, trace_start);
criterion_main!(benches);
