//! Fuzz harnesses: one function per target, shared by `fuzz/` (cargo-fuzz, nightly) and the
//! corpus replay tests that run on stable in CI, so a crash the fuzzer found stays a test.
//! Each takes arbitrary bytes, must not panic, and checks the invariants its code promises.

use prost::Message;
use xds_client::protos::envoy::config::{cluster::v3::Cluster, listener::v3::Listener, route::v3::RouteConfiguration};

use crate::config::convert;
use crate::config::error::Path;
use crate::detect::{detect, Detected, Detector, MAX_PEEK};

/// The first-bytes detector: fed in chunks whose sizes the input picks, it must give what the
/// whole-buffer function gives, and a decision must stand as more bytes arrive.
pub fn detect_incremental(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step.max(1));
    let mut d = Detector::default();
    let mut n = 0;
    let mut decided = None;
    while n < input.len() {
        n = (n + step).min(input.len());
        let prefix = input.get(..n).unwrap_or_default();
        let got = d.feed(prefix);
        if got != Detected::NeedMore {
            assert_eq!(got, detect(prefix), "incremental and whole disagree at {n} bytes");
            decided = Some(got);
            break;
        }
    }
    if let Some(got) = decided {
        if input.len() <= MAX_PEEK {
            assert_eq!(detect(input), got, "a decision changed when more bytes arrived");
        }
    }
}

/// The bootstrap loader: any text, YAML or JSON, converts or fails with an error.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(doc) = crate::config::load::parse(text, "fuzz") {
        let _ = crate::config::load::from_value(doc, "fuzz");
    }
}

/// Conversion of xDS resources: any bytes decoded as a Listener, Cluster or
/// RouteConfiguration (the first byte picks) convert or fail with an error.
pub fn config_proto(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else { return };
    let res = convert::Resources::lenient();
    match kind % 3 {
        0 => {
            if let Ok(l) = Listener::decode(bytes) {
                let _ = convert::listener(&l, &Path::root("listener"), &res);
            }
        }
        1 => {
            if let Ok(c) = Cluster::decode(bytes) {
                let _ = convert::cluster(&c, &Path::root("cluster"));
            }
        }
        _ => {
            if let Ok(rc) = RouteConfiguration::decode(bytes) {
                let _ = convert::route_config(&rc, &Path::root("route"), &res);
            }
        }
    }
}

/// A route table with every matcher kind and hash policies of every source, from the YAML an
/// operator would write (built once).
fn fuzz_routes() -> Option<&'static crate::config::route::RouteConfig> {
    static RC: std::sync::OnceLock<Option<std::sync::Arc<crate::config::route::RouteConfig>>> =
        std::sync::OnceLock::new();
    const YAML: &str = r#"
static_resources:
  clusters: [{name: c, type: STATIC, connect_timeout: 1s, lb_policy: RING_HASH, load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}}]
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts:
            - name: exact
              domains: ["api.example.com", "*.example.org", "shop.*"]
              routes:
              - match: {safe_regex: {regex: "/v[0-9]+/items/[^/]+"}}
                route: {cluster: c, hash_policy: [{header: {header_name: x-user}}, {cookie: {name: session}}, {query_parameter: {name: u}}, {connection_properties: {source_ip: true}}]}
              - match: {path_separated_prefix: /admin, case_sensitive: false}
                route: {cluster: c}
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /h, headers: [{name: x-a, string_match: {exact: "1"}}, {name: x-b, present_match: true}, {name: x-c, string_match: {safe_regex: {regex: "^[a-z]+$"}}}, {name: x-d, invert_match: true, string_match: {prefix: "no"}}]}
                route: {cluster: c}
              - match: {prefix: /q, query_parameters: [{name: a, string_match: {exact: b}}, {name: p, present_match: true}]}
                route: {cluster: c}
              - match: {grpc: {}, prefix: /}
                route: {cluster: c, max_stream_duration: {grpc_timeout_header_max: 0s}}
              - match: {path: /exact}
                route: {cluster: c}
              - match: {prefix: /}
                route: {cluster: c, hash_policy: [{header: {header_name: x-user}, terminal: true}]}
"#;
    RC.get_or_init(|| {
        let doc = crate::config::load::parse(YAML, "fuzz").ok()?;
        let b = crate::config::load::from_value(doc, "fuzz").ok()?;
        let chain = b.listeners.first()?.filter_chains.first()?.clone();
        match &chain.filter {
            crate::config::listener::NetworkFilter::Http(h) => match &h.routes {
                crate::config::listener::RouteSource::Inline(rc) => Some(rc.clone()),
                crate::config::listener::RouteSource::Rds(_) => None,
            },
            crate::config::listener::NetworkFilter::TcpProxy(_) => None,
        }
    })
    .as_deref()
}

/// The request path's handling of untrusted request heads: the first line is the
/// `path?query`, the rest `name: value` headers. Path normalization keeps the path absolute,
/// free of dot segments and empty segments as asked; routing (every matcher kind), hashing,
/// `grpc-timeout`, `x-forwarded-for`, request ids and hop-by-hop stripping give an answer,
/// never a panic.
pub fn http_request(data: &[u8]) {
    use http::header::{HeaderName, HeaderValue};
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Some(pq) = lines.next() else { return };
    let mut headers = http::HeaderMap::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim())) {
            headers.append(k, v);
        }
    }
    for (dots, merge) in [(true, true), (true, false), (false, true)] {
        let Some(n) = crate::l7::path::normalize(pq, dots, merge) else { continue };
        let path = n.split_once('?').map_or(n.as_str(), |(p, _)| p);
        assert!(path.starts_with('/'), "{pq:?} normalized to {n:?}");
        if dots {
            assert!(!path.split('/').any(|s| s == "." || s == ".."), "{pq:?} kept a dot segment: {n:?}");
        }
        if merge {
            assert!(!path.contains("//"), "{pq:?} kept an empty segment: {n:?}");
        }
        if let (Some((_, q0)), Some((_, q1))) = (pq.split_once('?'), n.split_once('?')) {
            assert_eq!(q0, q1, "the query changed");
        }
    }
    let _ = crate::l7::stream_limits::grpc_timeout(&headers);
    if let Some(rc) = fuzz_routes() {
        let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if let Some(vh) = crate::l7::router::virtual_host(rc, host) {
            if let Some(route) = crate::l7::router::route(vh, pq, &headers) {
                if let crate::config::route::RouteAction::Forward(f) = &route.action {
                    if let Ok(uri) = pq.parse::<http::Uri>() {
                        let mut req = http::Request::new(());
                        *req.uri_mut() = uri;
                        *req.headers_mut() = headers.clone();
                        let (parts, ()) = req.into_parts();
                        let peer = std::net::IpAddr::from([10, 0, 0, 1]);
                        let _ = crate::l7::hash::request_hash(&f.hash_policy, &parts, peer);
                    }
                }
            }
        }
    }
    let mut h = headers;
    crate::l7::headers::append_forwarded_for(&mut h, std::net::IpAddr::from([127, 0, 0, 1]));
    let _ = crate::l7::headers::ensure_request_id(&mut h, true);
    crate::l7::headers::strip_hop_by_hop(&mut h);
    assert!(!h.contains_key(http::header::CONNECTION), "a hop-by-hop header survived");
}

#[cfg(test)]
mod route_table_tests {
    /// The harness's route table loads (else the routing half of `http_request` fuzzes nothing).
    #[test]
    fn the_fuzz_route_table_loads() {
        let rc = super::fuzz_routes();
        assert!(rc.is_some_and(|rc| rc.virtual_hosts.len() == 2));
    }
}
