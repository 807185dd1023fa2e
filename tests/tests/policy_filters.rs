//! The HTTP and network policy filters istiod configures, each run side by side with a real
//! Envoy 1.40 on the same bootstrap and the same requests: fault injection (VirtualService
//! `fault`), CORS (VirtualService `corsPolicy`), local rate limits (Istio's EnvoyFilter
//! example), RBAC (AuthorizationPolicy ALLOW/DENY with mTLS identities and `source.ip`) and
//! the network RBAC and connection rate limit in front of tcp_proxy. Status, body, the
//! headers each filter owns, and the access log's response flag and details must agree.
//!
//! Config shapes, and where they come from:
//! - fault: istiod's `translateFault` (pilot/pkg/networking/core/route/route.go) puts an
//!   `HTTPFault` with a MILLION-denominator percentage on the route's
//!   `typed_per_filter_config["envoy.filters.http.fault"]`, with an empty HTTPFault and Cors
//!   filter in every HCM (Istio's golden `http_filters`).
//! - CORS: `translateCORSPolicy` (same file): a `CorsPolicy` with `allow_origin_string_match`,
//!   comma-joined methods/headers, `max_age` in seconds, `filter_enabled` 100/HUNDRED.
//! - local rate limit: istio.io "Enabling Rate Limits using Envoy" (local rate limit), a
//!   TypedStruct `LocalRateLimit` in the HCM and another per route.
//! - RBAC: istio.io "Authorization policy" debugging page's dumped config:
//!   `ns[<ns>]-policy[<name>]-rule[<i>]` policies of `and_rules`/`or_rules` permissions
//!   (`url_path`, `:method` header) and `and_ids`/`or_ids` principals (`authenticated`
//!   principal names, namespace regex, `direct_remote_ip` for `source.ip`), DENY filter
//!   before ALLOW, `shadow_rules_stat_prefix: istio_dry_run_allow_`, network RBAC with
//!   `stat_prefix: tcp.`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use tests::envoy::Envoy;
use tests::pki::{path_str, spiffe, MeshPki};
use tests::proxy::Proxy;
use tests::upstream::{tcp_echo, Behaviour, Upstream};
use tests::yaml::cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const ROUTER: &str = r#"{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#;
/// istiod's HCM filters before the router: empty fault and CORS.
const ISTIO_FILTERS: &str = r#"{name: envoy.filters.http.fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}, {name: envoy.filters.http.cors, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}}"#;

/// One response, reduced to what the filters decide.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

/// The headers a filter owns, as compared between the two proxies.
const WATCHED: &[&str] = &[
    "content-type",
    "grpc-status",
    "grpc-message",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
    "x-local-rate-limit",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-upstream",
];

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Seen {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
    let headers = WATCHED
        .iter()
        .filter_map(|n| parts.headers.get(*n).map(|v| (n.to_string(), v.to_str().unwrap().to_string())))
        .collect();
    Seen { status: parts.status.as_u16(), body, headers }
}

fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A file access log with flags and details, as both proxies write it.
fn access_log(path: &Path) -> String {
    format!(
        r#"[{{name: envoy.access_loggers.file, typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: "{}", log_format: {{text_format_source: {{inline_string: "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}}}}}}}]"#,
        path.display()
    )
}

/// An HTTP listener `name` with `filters` before the router and one virtual host.
fn http_listener(name: &str, filters: &str, routes: &str, log: &Path, tls: &str) -> String {
    let filters = if filters.is_empty() { ROUTER.to_string() } else { format!("{filters}, {ROUTER}") };
    format!(
        r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: inbound_0.0.0.0_8080
          # istiod's defaults: what RBAC and routes see is the normalized path.
          normalize_path: true
          merge_slashes: true
          access_log: {log}
          http_filters: [{filters}]
          route_config:
            name: local
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
{routes}
{tls}"#,
        log = access_log(log)
    )
}

fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    tests::yaml::bootstrap(listeners, clusters)
}

/// The (flags, details) of each line of a text access log (both proxies write the same
/// `log_format` to their own file).
fn envoy_log(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (f, d) = l.split_once(' ').unwrap_or((l, "-"));
            (f.to_string(), d.to_string())
        })
        .collect()
}

/// The (flags, details) lines of `path` once `n` are there, details as Isthmus writes them.
async fn text_log(path: &Path, n: usize) -> Vec<(String, String)> {
    details_as_isthmus(
        tests::eventually(Duration::from_secs(10), || {
            let l = envoy_log(path);
            (l.len() >= n).then_some(l)
        })
        .await,
    )
}

/// Envoy's details for a response it proxied are `via_upstream`; Isthmus logs none then.
fn details_as_isthmus(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    for (_, d) in &mut v {
        if d == "via_upstream" {
            "-".clone_into(d);
        }
    }
    v
}

fn fault_route(prefix: &str, fault: &str) -> String {
    format!(
        "              - match: {{prefix: {prefix}}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  envoy.filters.http.fault: {{\"@type\": {FAULT}, {fault}}}\n"
    )
}

const ALL: &str = "{numerator: 1000000, denominator: MILLION}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_matches_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let routes = [
        fault_route("/abort", &format!("abort: {{http_status: 503, percentage: {ALL}}}")),
        fault_route("/grpc-abort", &format!("abort: {{grpc_status: 14, percentage: {ALL}}}")),
        fault_route(
            "/delay-abort",
            &format!("delay: {{fixed_delay: 0.2s, percentage: {ALL}}}, abort: {{http_status: 502, percentage: {ALL}}}"),
        ),
        fault_route("/delay", &format!("delay: {{fixed_delay: 0.2s, percentage: {ALL}}}")),
        fault_route(
            "/header",
            "abort: {header_abort: {}, percentage: {numerator: 100}}, delay: {header_delay: {}, percentage: {numerator: 100}}",
        ),
        fault_route("/no-percentage", "abort: {http_status: 418}"),
        fault_route(
            "/only-canary",
            &format!("abort: {{http_status: 500, percentage: {ALL}}}, headers: [{{name: x-canary, string_match: {{exact: \"1\"}}}}]"),
        ),
        "              - match: {prefix: /}\n                route: {cluster: backend}\n".to_string(),
    ]
    .concat();
    let requests: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/abort", vec![]),
        ("/grpc-abort", vec![("content-type", "application/grpc")]),
        ("/grpc-abort", vec![]),
        ("/delay-abort", vec![]),
        ("/delay", vec![]),
        ("/header", vec![("x-envoy-fault-abort-request", "418")]),
        ("/header", vec![("x-envoy-fault-abort-grpc-request", "5"), ("content-type", "application/grpc")]),
        ("/header", vec![("x-envoy-fault-delay-request", "150")]),
        ("/header", vec![("x-envoy-fault-abort-request", "418"), ("x-envoy-fault-abort-request-percentage", "0")]),
        ("/header", vec![]),
        ("/no-percentage", vec![]),
        ("/only-canary", vec![]),
        ("/only-canary", vec![("x-canary", "1")]),
        ("/ok", vec![]),
    ];
    let mut answers = Vec::new();
    let mut flags = Vec::new();
    let mut stats = [0.0; 3];
    for who in ["envoy", "isthmus"] {
        let log = tests::scratch(&format!("fault-{who}.log"));
        let yaml = bootstrap(
            &[http_listener("http", ISTIO_FILTERS, &routes, &log, "")],
            &[cluster("backend", &[up.addr], "")],
        );
        let mut seen = Vec::new();
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("http");
        for (path, h) in &requests {
            let t = Instant::now();
            seen.push((send(addr, "GET", path, h).await, t.elapsed()));
        }
        flags.push(text_log(&log, requests.len()).await);
        if let Some(p) = running.isthmus() {
            // Envoy's fault stats: three delays and seven aborts injected in the run above.
            stats = [
                p.metric("envoy_http_fault_aborts_injected", "inbound_0.0.0.0_8080"),
                p.metric("envoy_http_fault_delays_injected", "inbound_0.0.0.0_8080"),
                p.metric("envoy_http_fault_active_faults", "inbound_0.0.0.0_8080"),
            ];
        }
        answers.push(seen);
    }
    for (i, ((e, te), (s, ts))) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(e, s, "request {i} {:?}: Envoy and Isthmus differ", requests[i]);
        // Delayed requests took their delay on both (behaviour, not speed: a lower bound;
        // Envoy's timer was seen firing a few milliseconds early).
        if matches!(requests[i].0, "/delay" | "/delay-abort") {
            assert!(*te >= Duration::from_millis(180) && *ts >= Duration::from_millis(180), "{te:?} {ts:?}");
        }
    }
    assert_eq!(flags[0], flags[1], "access-log flags and details");
    assert_eq!(stats, [7.0, 3.0, 0.0], "aborts_injected, delays_injected, active_faults");
    // What Envoy answered, spelled out so the comparison cannot pass on two identical bugs.
    let isthmus = &answers[1];
    assert_eq!((isthmus[0].0.status, isthmus[0].0.body.as_str()), (503, "fault filter abort"));
    assert_eq!(header(&isthmus[1].0, "grpc-status"), Some("14"));
    assert_eq!(isthmus[3].0.status, 502);
    assert_eq!(flags[1][3].0, "DI,FI");
    assert_eq!(isthmus[5].0.status, 418);
    assert_eq!(isthmus[13].0.status, 200);
}

/// A 50 % abort over 2,000 requests lands within five standard deviations of 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_requests_are_aborted() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let log = tests::scratch("fault-half.log");
    let routes = fault_route("/", "abort: {http_status: 503, percentage: {numerator: 500000, denominator: MILLION}}");
    let p = Proxy::start(&bootstrap(
        &[http_listener("http", ISTIO_FILTERS, &routes, &log, "")],
        &[cluster("backend", &[up.addr], "")],
    ));
    let addr = p.listener("http");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut aborted = 0;
                for _ in 0..250 {
                    if send(addr, "GET", "/", &[]).await.status == 503 {
                        aborted += 1;
                    }
                }
                aborted
            })
        })
        .collect();
    let mut aborted = 0;
    for t in tasks {
        aborted += t.await.unwrap();
    }
    // Binomial(2000, 0.5): σ ≈ 22.4.
    assert!((888..=1112).contains(&aborted), "{aborted} of 2000 aborted");
    assert_eq!(up.hits(), 2000 - aborted as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_matches_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let policy = r#"{"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [{exact: "https://a.example"}, {prefix: "https://b."}], allow_methods: "GET,POST", allow_headers: "x-custom,authorization", expose_headers: "x-exposed", max_age: "3600", allow_credentials: true, filter_enabled: {runtime_key: cors, default_value: {numerator: 100, denominator: HUNDRED}}}"#;
    let strict =
        policy.replace("allow_credentials: true", "allow_credentials: true, forward_not_matching_preflights: false");
    let star = r#"{"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy, allow_origin_string_match: [{exact: "*"}], allow_methods: "*", allow_headers: "*", max_age: "60", filter_enabled: {runtime_key: cors, default_value: {numerator: 100, denominator: HUNDRED}}}"#;
    let routes = format!(
        "              - match: {{prefix: /star}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  envoy.filters.http.cors: {star}\n              - match: {{prefix: /strict}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  envoy.filters.http.cors: {strict}\n              - match: {{prefix: /cors}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  envoy.filters.http.cors: {policy}\n              - match: {{prefix: /}}\n                route: {{cluster: backend}}\n"
    );
    let preflight = |origin: &'static str| vec![("origin", origin), ("access-control-request-method", "POST")];
    type Req = (&'static str, &'static str, Vec<(&'static str, &'static str)>);
    let requests: Vec<Req> = vec![
        ("OPTIONS", "/cors", preflight("https://a.example")),
        ("OPTIONS", "/cors", preflight("https://b.example")),
        ("OPTIONS", "/cors", preflight("https://evil.example")),
        ("OPTIONS", "/cors", vec![("origin", "https://a.example")]),
        ("GET", "/cors", vec![("origin", "https://a.example")]),
        ("GET", "/cors", vec![("origin", "https://evil.example")]),
        ("GET", "/cors", vec![]),
        ("OPTIONS", "/strict", preflight("https://evil.example")),
        ("GET", "/other", vec![("origin", "https://a.example")]),
        (
            "OPTIONS",
            "/star",
            vec![
                ("origin", "https://any.example"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-foo,x-bar"),
            ],
        ),
        ("GET", "/star", vec![("origin", "https://any.example")]),
    ];
    let mut answers = Vec::new();
    let mut valid = 0.0;
    for who in ["envoy", "isthmus"] {
        let log = tests::scratch(&format!("cors-{who}.log"));
        let yaml = bootstrap(
            &[http_listener("http", ISTIO_FILTERS, &routes, &log, "")],
            &[cluster("backend", &[up.addr], "")],
        );
        let mut seen = Vec::new();
        let running = tests::side::Running::start(who, &yaml).await;
        for (m, path, h) in &requests {
            seen.push(send(running.listener("http"), m, path, h).await);
        }
        if let Some(p) = running.isthmus() {
            valid = p.metric("envoy_http_cors_origin_valid", "inbound_0.0.0.0_8080");
        }
        answers.push(seen);
    }
    for (i, (e, s)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(e, s, "request {i} {:?}: Envoy and Isthmus differ", requests[i]);
    }
    assert_eq!(valid, 6.0, "origin_valid: four /cors and two /star requests from allowed origins");
    let s = &answers[1];
    assert_eq!(header(&s[0], "access-control-allow-origin"), Some("https://a.example"));
    assert_eq!(header(&s[0], "access-control-max-age"), Some("3600"));
    assert_eq!(header(&s[0], "x-upstream"), None, "a preflight is answered by the proxy");
    assert_eq!(header(&s[2], "access-control-allow-origin"), None);
    assert_eq!(header(&s[4], "access-control-expose-headers"), Some("x-exposed"));
    // `*` allows any origin and echoes what the preflight asks for.
    assert_eq!(header(&s[9], "access-control-allow-methods"), Some("PUT"));
    assert_eq!(header(&s[9], "access-control-allow-headers"), Some("x-foo,x-bar"));
}

const RATE_LIMIT_TS: &str = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_matches_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    // Istio's example: the listener filter is a TypedStruct; the per-route one brings its
    // own bucket and headers.
    let filter = format!(
        r#"{{name: envoy.filters.http.local_ratelimit, typed_config: {{"@type": type.googleapis.com/udpa.type.v1.TypedStruct, type_url: {RATE_LIMIT_TS}, value: {{stat_prefix: http_local_rate_limiter, token_bucket: {{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}}, filter_enabled: {{runtime_key: local_rate_limit_enabled, default_value: {{numerator: 100, denominator: HUNDRED}}}}, filter_enforced: {{runtime_key: local_rate_limit_enforced, default_value: {{numerator: 100, denominator: HUNDRED}}}}, response_headers_to_add: [{{append_action: OVERWRITE_IF_EXISTS_OR_ADD, header: {{key: x-local-rate-limit, value: "true"}}}}]}}}}}}"#
    );
    let per_route = format!(
        r#"{{"@type": {RATE_LIMIT_TS}, stat_prefix: per_route, token_bucket: {{max_tokens: 2, tokens_per_fill: 2, fill_interval: 60s}}, filter_enabled: {{runtime_key: e, default_value: {{numerator: 100, denominator: HUNDRED}}}}, filter_enforced: {{runtime_key: f, default_value: {{numerator: 100, denominator: HUNDRED}}}}, enable_x_ratelimit_headers: DRAFT_VERSION_03}}"#
    );
    let routes = format!(
        "              - match: {{prefix: /limited}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  envoy.filters.http.local_ratelimit: {per_route}\n              - match: {{prefix: /}}\n                route: {{cluster: backend}}\n"
    );
    let requests: Vec<(&str, Vec<(&str, &str)>)> = [
        vec![("/limited", vec![]); 3],
        vec![("/limited", vec![("content-type", "application/grpc")])],
        vec![("/", vec![]); 4],
    ]
    .concat();
    let mut answers = Vec::new();
    let mut flags = Vec::new();
    let mut limited = [0.0; 2];
    for who in ["envoy", "isthmus"] {
        let log = tests::scratch(&format!("rl-{who}.log"));
        let yaml =
            bootstrap(&[http_listener("http", &filter, &routes, &log, "")], &[cluster("backend", &[up.addr], "")]);
        let mut seen = Vec::new();
        let running = tests::side::Running::start(who, &yaml).await;
        for (path, h) in &requests {
            seen.push(send(running.listener("http"), "GET", path, h).await);
        }
        flags.push(text_log(&log, requests.len()).await);
        if let Some(p) = running.isthmus() {
            limited = [
                p.metric("envoy_http_local_rate_limit_rate_limited", "http_local_rate_limiter"),
                p.metric("envoy_http_local_rate_limit_rate_limited", "per_route"),
            ];
        }
        answers.push(seen);
    }
    for (i, (e, s)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(e, s, "request {i} {:?}: Envoy and Isthmus differ", requests[i]);
    }
    assert_eq!(flags[0], flags[1], "access-log flags and details");
    assert_eq!(limited, [1.0, 2.0], "rate_limited by stat_prefix: each config counts its own");
    let s = &answers[1];
    assert_eq!(s.iter().map(|x| x.status).collect::<Vec<_>>(), [200, 200, 429, 200, 200, 200, 200, 429]);
    assert_eq!(s[2].body, "local_rate_limited");
    assert_eq!(header(&s[3], "grpc-status"), Some("14"));
    assert_eq!(header(&s[7], "x-local-rate-limit"), Some("true"));
}

/// Client identities for the RBAC test: `sleep` in `foo`, `other` in `bar`.
struct Clients {
    sleep: tests::pki::Leaf,
    other: tests::pki::Leaf,
    root: String,
}

fn rbac_filters() -> String {
    let sleep = spiffe("foo", "sleep");
    // DENY first, then ALLOW, as istiod orders them.
    format!(
        r#"{{name: envoy.filters.http.rbac, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {{action: DENY, policies: {{"ns[foo]-policy[deny-admin]-rule[0]": {{permissions: [{{and_rules: {{rules: [{{or_rules: {{rules: [{{url_path: {{path: {{prefix: /admin}}}}}}]}}}}]}}}}], principals: [{{and_ids: {{ids: [{{any: true}}]}}}}]}}}}}}, shadow_rules_stat_prefix: istio_dry_run_deny_}}}},
        {{name: envoy.filters.http.rbac, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {{policies: {{"ns[foo]-policy[httpbin]-rule[0]": {{permissions: [{{and_rules: {{rules: [{{or_rules: {{rules: [{{header: {{name: ":method", string_match: {{exact: GET}}}}}}]}}}}]}}}}], principals: [{{and_ids: {{ids: [{{or_ids: {{ids: [{{authenticated: {{principal_name: {{exact: "{sleep}"}}}}}}]}}}}]}}}}]}}, "ns[foo]-policy[httpbin]-rule[1]": {{permissions: [{{and_rules: {{rules: [{{or_rules: {{rules: [{{url_path: {{path: {{exact: /public}}}}}}]}}}}]}}}}], principals: [{{and_ids: {{ids: [{{or_ids: {{ids: [{{authenticated: {{principal_name: {{safe_regex: {{regex: ".*/ns/bar/.*"}}}}}}}}]}}}}]}}}}, {{and_ids: {{ids: [{{or_ids: {{ids: [{{direct_remote_ip: {{address_prefix: 127.0.0.2, prefix_len: 32}}}}]}}}}]}}}}]}}}}}}, shadow_rules: {{policies: {{"ns[foo]-policy[dry]-rule[0]": {{permissions: [{{any: true}}], principals: [{{not_id: {{any: true}}}}]}}}}}}, shadow_rules_stat_prefix: istio_dry_run_allow_}}}}"#
    )
}

fn server_tls(chain: &Path, key: &Path, root: &str) -> String {
    format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{certificate_chain: {{filename: "{}"}}, private_key: {{filename: "{}"}}}}]
            validation_context: {{trusted_ca: {{filename: "{root}"}}}}
"#,
        chain.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_with_mtls_identities_and_source_ip_matches_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let pki = MeshPki::new("rbac");
    let server = pki.leaf("cluster2", &spiffe("foo", "httpbin"), &["httpbin.test"]);
    let clients = Clients {
        sleep: pki.leaf("cluster1", &spiffe("foo", "sleep"), &[]),
        other: pki.leaf("cluster1", &spiffe("bar", "other"), &[]),
        root: path_str(&pki.root),
    };
    let route = "              - match: {prefix: /}\n                route: {cluster: backend}\n";
    // (listener, identity, method, path, source) → expected status.
    type Case = (&'static str, Option<&'static str>, &'static str, &'static str, &'static str, u16);
    let cases: Vec<Case> = vec![
        ("mtls", Some("sleep"), "GET", "/x", "127.0.0.1", 200),
        ("mtls", Some("sleep"), "POST", "/x", "127.0.0.1", 403),
        ("mtls", Some("other"), "GET", "/x", "127.0.0.1", 403),
        ("mtls", Some("other"), "GET", "/public", "127.0.0.1", 200),
        ("mtls", Some("sleep"), "GET", "/admin", "127.0.0.1", 403),
        ("plain", None, "GET", "/x", "127.0.0.1", 403),
        ("plain", None, "GET", "/x", "127.0.0.2", 403),
        ("plain", None, "GET", "/public", "127.0.0.2", 200),
        ("plain", None, "GET", "/admin", "127.0.0.2", 403),
        // A DENY on /admin is not walked around by dot segments, escapes or doubled slashes.
        ("plain", None, "GET", "/public/../admin", "127.0.0.2", 403),
        ("plain", None, "GET", "/%61dmin", "127.0.0.2", 403),
        ("plain", None, "GET", "//admin", "127.0.0.2", 403),
        ("plain", None, "GET", "/./public", "127.0.0.2", 200),
    ];
    let mut results = Vec::new();
    let mut flags = Vec::new();
    let mut rbac_stats = [0.0; 2];
    for who in ["envoy", "isthmus"] {
        let log = tests::scratch(&format!("rbac-{who}.log"));
        let tls = server_tls(&server.chain, &server.key, &clients.root);
        let yaml = bootstrap(
            &[
                http_listener("mtls", &rbac_filters(), route, &log, &tls),
                http_listener("plain", &rbac_filters(), route, &log, ""),
            ],
            &[cluster("backend", &[up.addr], "")],
        );
        let run = |addr: &dyn Fn(&str) -> SocketAddr| -> Vec<(u16, String)> {
            cases
                .iter()
                .map(|(l, id, m, path, src, _)| {
                    let leaf = id.map(|i| if i == "sleep" { &clients.sleep } else { &clients.other });
                    let port = addr(l).port();
                    let url = if leaf.is_some() {
                        format!("https://httpbin.test:{port}{path}")
                    } else {
                        format!("http://127.0.0.1:{port}{path}")
                    };
                    curl_url(&url, port, m, leaf, &clients.root, src)
                })
                .collect()
        };
        let running = tests::side::Running::start(who, &yaml).await;
        results.push(run(&|l| running.listener(l)));
        flags.push(text_log(&log, cases.len()).await);
        if let Some(p) = running.isthmus() {
            rbac_stats = [
                p.metric("envoy_http_rbac_denied", "inbound_0.0.0.0_8080"),
                p.metric("envoy_http_rbac_shadow_denied", "inbound_0.0.0.0_8080"),
            ];
        }
    }
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(results[0][i], results[1][i], "case {i} {case:?}: Envoy and Isthmus differ");
        assert_eq!(results[1][i].0, case.5, "case {i} {case:?}");
        if case.5 == 403 {
            assert_eq!(results[1][i].1, "RBAC: access denied");
        }
    }
    // Two filters per listener: the DENY one denied five requests, the ALLOW one four; the
    // dry-run policy (deny everyone) saw each request that reached the ALLOW filter.
    assert_eq!(rbac_stats, [9.0, 8.0], "denied, shadow_denied");
    let mut e = flags[0].clone();
    let mut s = flags[1].clone();
    // Two listeners log into one file each side in completion order: compare as sets.
    e.sort();
    s.sort();
    assert_eq!(e, s, "access-log flags and details");
    assert!(
        s.iter().any(|(_, d)| d == "rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]"),
        "{s:?}"
    );
    assert!(s.iter().any(|(_, d)| d == "rbac_access_denied_matched_policy[none]"), "{s:?}");
}

/// One curl request (the independent peer) with a client certificate, or plaintext from
/// `source` when `leaf` is `None`.
fn curl_url(
    url: &str,
    port: u16,
    method: &str,
    leaf: Option<&tests::pki::Leaf>,
    root: &str,
    source: &str,
) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--path-as-is", "--max-time", "10", "-X", method, "--interface", source, "-w", "\n%{http_code}"]);
    if let Some(l) = leaf {
        cmd.args(["--cacert", root, "--cert", &path_str(&l.chain), "--key", &path_str(&l.key)]);
        cmd.args(["--resolve", &format!("httpbin.test:{port}:127.0.0.1")]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Connects from `source`, writes `ping`, and returns what came back before the close.
async fn tcp_exchange(addr: SocketAddr, source: &str) -> Vec<u8> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let _ = s.write_all(b"ping").await;
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rbac_and_connection_rate_limit_match_envoy() {
    let echo = tcp_echo().await;
    let tcp_proxy = r#"{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: echo, cluster: echo}}"#;
    let rbac = r#"{name: envoy.filters.network.rbac, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: tcp., rules: {policies: {"ns[foo]-policy[tcp]-rule[0]": {permissions: [{and_rules: {rules: [{any: true}]}}], principals: [{and_ids: {ids: [{or_ids: {ids: [{direct_remote_ip: {address_prefix: 127.0.0.2, prefix_len: 32}}]}}]}}]}}}}}"#;
    let limit = r#"{name: envoy.filters.network.local_ratelimit, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit, stat_prefix: conn_limit, token_bucket: {max_tokens: 2, fill_interval: 60s}}}"#;
    let listener = |name: &str, filters: &str| {
        format!(
            "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters: [{filters}, {tcp_proxy}]\n"
        )
    };
    let yaml = bootstrap(&[listener("rbac", rbac), listener("limited", limit)], &[cluster("echo", &[echo], "")]);
    let mut results = Vec::new();
    for who in ["envoy", "isthmus"] {
        let mut seen = Vec::new();
        let keep = tests::side::Running::start(who, &yaml).await;
        let (addr_rbac, addr_limited) = (keep.listener("rbac"), keep.listener("limited"));
        seen.push(tcp_exchange(addr_rbac, "127.0.0.1").await);
        seen.push(tcp_exchange(addr_rbac, "127.0.0.2").await);
        for _ in 0..3 {
            seen.push(tcp_exchange(addr_limited, "127.0.0.1").await);
        }
        if let Some(p) = keep.isthmus() {
            assert_eq!(p.metric("envoy_network_rbac_denied", "tcp."), 1.0);
            assert_eq!(p.metric("envoy_network_local_rate_limit_rate_limited", "conn_limit"), 1.0);
        }
        results.push(seen);
    }
    assert_eq!(results[0], results[1], "Envoy and Isthmus differ");
    // The echo server answers what it got, then `<bye>` after the client's half-close.
    let ping = b"ping<bye>".to_vec();
    assert_eq!(results[1], [vec![], ping.clone(), ping.clone(), ping, vec![]]);
}

/// Rehearsing a region failure with a fault: the region-a gateway delays every request
/// (a VirtualService delay fault), the client sidecar's route timeout turns that into 504s,
/// outlier detection ejects the region-a endpoint, and traffic fails over to region b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_fault_in_one_region_fails_traffic_over_to_the_next() {
    let a = Upstream::start("region-a", Behaviour::default()).await;
    let b = Upstream::start("region-b", Behaviour::default()).await;
    let glog = tests::scratch("fault-gateway.log");
    let gateway = Proxy::start(&bootstrap(
        &[http_listener(
            "gw",
            ISTIO_FILTERS,
            &fault_route("/", &format!("delay: {{fixed_delay: 2s, percentage: {ALL}}}")),
            &glog,
            "",
        )],
        &[cluster("backend", &[a.addr], "")],
    ));
    let gw = gateway.listener("gw");
    let pay = format!(
        "  - name: pay\n    connect_timeout: 1s\n    type: STATIC\n    outlier_detection: {{consecutive_5xx: 2, consecutive_gateway_failure: 2, interval: 0.2s, base_ejection_time: 30s, max_ejection_percent: 100}}\n    load_assignment:\n      cluster_name: pay\n      endpoints:\n      - locality: {{region: region-a}}\n        priority: 0\n        lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]\n      - locality: {{region: region-b}}\n        priority: 1\n        lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]\n",
        gw.port(),
        b.addr.port()
    );
    let flog = tests::scratch("fault-front.log");
    let front = Proxy::start(&bootstrap(
        &[http_listener(
            "front",
            "",
            "              - match: {prefix: /}\n                route: {cluster: pay, timeout: 0.3s}\n",
            &flog,
            "",
        )],
        &[pay],
    ));
    let addr = front.listener("front");
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(send(addr, "GET", "/pay", &[]).await.status);
    }
    assert_eq!(statuses, [504, 504], "the region-a gateway's delay outlasts the route timeout");
    // The ejection is applied by the cluster's detector task: a request or two may still race
    // it to region a; within five, traffic has failed over.
    let mut failed_over = false;
    for _ in 0..5 {
        let s = send(addr, "GET", "/pay", &[]).await;
        if (s.status, header(&s, "x-upstream")) == (200, Some("region-b")) {
            failed_over = true;
            break;
        }
        assert_eq!(s.status, 504);
    }
    assert!(failed_over, "traffic never failed over to region b");
    for _ in 0..20 {
        let s = send(addr, "GET", "/pay", &[]).await;
        assert_eq!((s.status, header(&s, "x-upstream")), (200, Some("region-b")));
    }
    assert!(gateway.metric("envoy_http_fault_delays_injected", "inbound_0.0.0.0_8080") >= 2.0);
    drop(a);
}

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

fn ads_bootstrap(cp_port: u16, backend: SocketAddr) -> String {
    format!(
        r#"node: {{id: "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local", cluster: web.shop}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
dynamic_resources:
  ads_config: {{api_type: GRPC, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]}}
  lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0s}}
static_resources:
  clusters:
{}{}"#,
        tests::yaml::xds_cluster(cp_port, ""),
        cluster("backend", &[backend], "")
    )
}

fn policy_listener(port: u16, rbac_principal: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"@type": LDS, "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": "ingress",
            "rds": {"route_config_name": "r1", "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [
                {"name": "envoy.filters.http.rbac", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {"action": "DENY", "policies": {"ns[shop]-policy[deny]-rule[0]": {
                        "permissions": [{"url_path": {"path": {"exact": "/denied"}}}],
                        "principals": [rbac_principal]}}}}},
                {"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT}},
                {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
}

fn fault_routes(denominator: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"@type": RDS, "name": "r1", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/abort"}, "route": {"cluster": "backend"}, "typed_per_filter_config": {
            "envoy.filters.http.fault": {"@type": FAULT, "abort": {"http_status": 503,
                "percentage": {"numerator": 1_000_000, "denominator": denominator}}}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]})
}

/// Bad policy config from the control plane (a malformed percentage, an RBAC principal on
/// JWT metadata) is NACKed with the field path, and the last good config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_config_over_xds_is_nacked_and_the_last_good_keeps_serving() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let mut cp = tests::xds_server::AdsServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let any = serde_json::json!({"any": true});
    cp.set(LDS, "l1", vec![policy_listener(port, any.clone())]);
    cp.set(RDS, "r1", vec![fault_routes(serde_json::json!("MILLION"))]);
    let proxy = Proxy::start_unready(&ads_bootstrap(cp.port, up.addr));
    cp.request(RDS, |e| e["nonce"] != "" && e["nack"] == false);
    tests::eventually(Duration::from_secs(10), || (proxy.admin_get("/ready").0 == 200).then_some(())).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let serving = |s: [u16; 3]| async move {
        let got = [
            send(addr, "GET", "/abort", &[]).await.status,
            send(addr, "GET", "/denied", &[]).await.status,
            send(addr, "GET", "/", &[]).await.status,
        ];
        assert_eq!(got, s, "/abort, /denied, /");
    };
    serving([503, 403, 200]).await;

    cp.set(RDS, "r2", vec![fault_routes(serde_json::json!(7))]);
    cp.push(RDS, "rds-bad");
    let nack = cp.request(RDS, |e| e["nonce"] == "rds-bad");
    assert_eq!(nack["nack"], true, "{nack}");
    let msg = nack["error"].as_str().unwrap();
    assert!(
        msg.contains("typed_per_filter_config[\"envoy.filters.http.fault\"].abort.percentage.denominator"),
        "{msg}"
    );
    serving([503, 403, 200]).await;

    let jwt = serde_json::json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "sub"}], "value": {"string_match": {"exact": "alice"}}}});
    cp.set(LDS, "l2", vec![policy_listener(port, jwt)]);
    cp.push(LDS, "lds-bad");
    let nack = cp.request(LDS, |e| e["nonce"] == "lds-bad");
    assert_eq!(nack["nack"], true, "{nack}");
    let msg = nack["error"].as_str().unwrap();
    assert!(
        msg.contains("rules.policies[\"ns[shop]-policy[deny]-rule[0]\"].principals[0].metadata: is not supported"),
        "{msg}"
    );
    serving([503, 403, 200]).await;
}

/// `max_active_faults: 1`: while one delayed request is in flight a second gets no fault and
/// `faults_overflow` counts it, as in Envoy (whose `/stats` shows the same two counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_faults_bounds_the_faults_in_flight_as_envoy() {
    let up = Upstream::start("backend", Behaviour::default()).await;
    let routes = fault_route("/", &format!("delay: {{fixed_delay: 1s, percentage: {ALL}}}, max_active_faults: 1"));
    let mut counts = Vec::new();
    for who in ["envoy", "isthmus"] {
        let log = tests::scratch(&format!("maxfaults-{who}.log"));
        let yaml = bootstrap(
            &[http_listener("http", ISTIO_FILTERS, &routes, &log, "")],
            &[cluster("backend", &[up.addr], "")],
        );
        let keep = tests::side::Running::start(who, &yaml).await;
        let addr = keep.listener("http");
        let held = tokio::spawn(async move { send(addr, "GET", "/held", &[]).await.status });
        // The first request is held once its fault is active (the gauge says so), not after
        // a guess at how long that takes.
        let active = |n: f64| -> Option<()> {
            let v = if let Some(p) = keep.isthmus() {
                p.metric("envoy_http_fault_active_faults", "inbound_0.0.0.0_8080")
            } else {
                let e = keep.envoy().unwrap();
                envoy_stat(e, "http.inbound_0.0.0.0_8080.fault.active_faults")
            };
            (v == n).then_some(())
        };
        tests::eventually(Duration::from_secs(5), || active(1.0)).await;
        let free = send(addr, "GET", "/free", &[]).await.status;
        assert_eq!((held.await.unwrap(), free), (200, 200));
        tests::eventually(Duration::from_secs(5), || active(0.0)).await;
        counts.push(if let Some(p) = keep.isthmus() {
            [
                p.metric("envoy_http_fault_delays_injected", "inbound_0.0.0.0_8080"),
                p.metric("envoy_http_fault_faults_overflow", "inbound_0.0.0.0_8080"),
            ]
        } else {
            let e = keep.envoy().unwrap();
            [
                envoy_stat(e, "http.inbound_0.0.0.0_8080.fault.delays_injected"),
                envoy_stat(e, "http.inbound_0.0.0.0_8080.fault.faults_overflow"),
            ]
        });
    }
    assert_eq!(counts[0], counts[1], "Envoy and Isthmus differ");
    assert_eq!(counts[1], [1.0, 1.0]);
}

/// One of Envoy's stats (`/stats?filter=`), 0 when absent.
fn envoy_stat(e: &Envoy, name: &str) -> f64 {
    let (_, body) = tests::proxy::http_get_blocking(e.admin, &format!("/stats?filter=^{name}$")).expect("envoy admin");
    body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// 100 malformed resources pushed one after another (listeners, route tables and clusters
/// broken in 20 ways, five values each): each is NACKed with a message, the proxy never
/// crashes, and the last good config serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_malformed_resources_are_each_nacked() {
    use serde_json::json;
    const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    let up = Upstream::start("backend", Behaviour::default()).await;
    let mut cp = tests::xds_server::AdsServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cp.set(LDS, "l1", vec![policy_listener(port, json!({"any": true}))]);
    cp.set(RDS, "r1", vec![fault_routes(json!("MILLION"))]);
    cp.set(CDS, "c1", vec![]);
    let yaml = ads_bootstrap(cp.port, up.addr).replace(
        "  lds_config:",
        "  cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}\n  lds_config:",
    );
    let proxy = Proxy::start_unready(&yaml);
    cp.request(RDS, |e| e["nonce"] != "" && e["nack"] == false);
    tests::eventually(Duration::from_secs(10), || (proxy.admin_get("/ready").0 == 200).then_some(())).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let good_routes = fault_routes(json!("MILLION"));
    let good_listener = policy_listener(port, json!({"any": true}));
    let cluster_of = |extra: serde_json::Value| {
        let mut c = json!({"@type": CDS, "name": "extra", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "extra", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    };
    // (type, resource) for each malformed push.
    let mut bad: Vec<(&str, serde_json::Value)> = Vec::new();
    for i in 0..5u32 {
        let mut r = good_routes.clone();
        let variants = [
            ("abort.http_status", json!({"http_status": 100 + i, "percentage": {"numerator": 1}})),
            ("abort.grpc_status", json!({"grpc_status": 70_000 + i, "percentage": {"numerator": 1}})),
        ];
        for (_, abort) in &variants {
            let mut r2 = r.clone();
            r2["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"] =
                abort.clone();
            bad.push((RDS, r2));
        }
        r["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]
            ["percentage"]["denominator"] = json!(3 + i);
        bad.push((RDS, r.clone()));
        let mut r3 = good_routes.clone();
        r3["virtual_hosts"][0]["routes"][0]["match"] = json!({"safe_regex": {"regex": format!("(unclosed{i}")}});
        bad.push((RDS, r3));
        let mut r4 = good_routes.clone();
        r4["virtual_hosts"][0]["domains"] = json!([]);
        r4["name"] = json!("r1");
        if i > 0 {
            r4["virtual_hosts"][0]["routes"][0]["route"]["timeout"] = json!(format!("-{i}s"));
            r4["virtual_hosts"][0]["domains"] = json!(["*"]);
        }
        bad.push((RDS, r4));
        let mut r5 = good_routes.clone();
        r5["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"]["envoy.filters.http.cors"] = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"safe_regex": {"regex": format!("[{i}")}}]});
        bad.push((RDS, r5));
        let mut r6 = good_routes.clone();
        r6["virtual_hosts"][0]["routes"][0]["request_headers_to_add"] =
            json!([{"header": {"key": format!("bad header {i}"), "value": "v"}}]);
        bad.push((RDS, r6));
        // Listeners.
        let principal_variants = [
            json!({"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": format!("k{i}")}], "value": {"present_match": true}}}),
            json!({"filter_state": {"key": format!("io.istio.peer_principal{i}"), "string_match": {"exact": "x"}}}),
            json!({"direct_remote_ip": {"address_prefix": format!("300.0.0.{i}"), "prefix_len": 32}}),
            json!({"authenticated": {"principal_name": {"safe_regex": {"regex": format!("(x{i}")}}}}),
            json!({"any": false}),
        ];
        for p in principal_variants {
            bad.push((LDS, policy_listener(port, p)));
        }
        let mut l2 = good_listener.clone();
        l2["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][1] = json!({"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT, "delay": {"fixed_delay": "0s", "percentage": {"numerator": i}}}});
        bad.push((LDS, l2));
        let mut l3 = good_listener.clone();
        l3["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] = json!([{"name": format!("unknown.filter.{i}"), "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}, {"name": "x", "typed_config": {"@type": FAULT}}]);
        bad.push((LDS, l3));
        let mut l4 = good_listener.clone();
        l4["filter_chains"][0]["filters"][0]["typed_config"]["max_request_headers_kb"] = json!(9000 + i);
        bad.push((LDS, l4));
        let mut l5 = good_listener.clone();
        l5["filter_chains"][0]["filters"][0]["typed_config"]["codec_type"] = json!("HTTP3");
        if i > 0 {
            l5["filter_chains"][0]["filters"][0]["typed_config"]["codec_type"] = json!("AUTO");
            l5["filter_chains"][0]["filters"][0]["typed_config"]["common_http_protocol_options"] =
                json!({"max_headers_count": 0});
        }
        bad.push((LDS, l5));
        // Clusters.
        bad.push((CDS, cluster_of(json!({"lb_policy": "LOAD_BALANCING_POLICY_CONFIG"}))));
        bad.push((CDS, cluster_of(json!({"outlier_detection": {"enforcing_consecutive_5xx": 101 + i}}))));
        bad.push((CDS, cluster_of(json!({"upstream_connection_options": {"tcp_keepalive": {}}, "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": {"http2_protocol_options": {"connection_keepalive": {"interval": format!("{}s", i + 1)}}}}}}))));
        bad.push((CDS, cluster_of(json!({"connect_timeout": format!("-{}s", i + 1)}))));
    }
    assert_eq!(bad.len(), 100);
    let serving =
        || async { [send(addr, "GET", "/abort", &[]).await.status, send(addr, "GET", "/", &[]).await.status] };
    for (n, (type_url, resource)) in bad.into_iter().enumerate() {
        let (lds, rds) = (vec![good_listener.clone()], vec![good_routes.clone()]);
        match type_url {
            t if t == LDS => cp.set(LDS, &format!("bad-{n}"), vec![resource]),
            t if t == RDS => cp.set(RDS, &format!("bad-{n}"), vec![resource]),
            _ => cp.set(CDS, &format!("bad-{n}"), vec![resource]),
        }
        let nonce = format!("bad-{n}");
        cp.push(type_url, &nonce);
        let reply = cp.request(type_url, |e| e["nonce"] == nonce.as_str());
        assert_eq!(reply["nack"], true, "push {n} was accepted: {reply}");
        assert!(!reply["error"].as_str().unwrap_or("").is_empty(), "push {n}: NACK without a message");
        // Put the good resources back in the server's state so the next push breaks one thing.
        cp.set(LDS, "good", lds);
        cp.set(RDS, "good", rds);
        cp.set(CDS, "good", vec![]);
        if n % 10 == 9 {
            assert_eq!(serving().await, [503, 200], "after push {n}");
        }
    }
    assert_eq!(serving().await, [503, 200]);
    assert!(proxy.admin_get("/ready").0 == 200);
}
