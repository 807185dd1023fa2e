//! Distributed tracing with a Zipkin tracer, against a real Envoy 1.40 on the same bootstrap
//! and a Zipkin v2 receiver (`tests/peers/zipkin_receiver.py`, which checks every span against
//! Zipkin's v2 span schema): the same requests give the same sampling decisions, the same
//! request ids (with the decision packed in) and the same B3 context upstream; the reported
//! spans have the same names, kinds and tag keys; two Isthmus hops share one trace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::envoy::Envoy;
use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};

/// A span receiver (Zipkin or OTLP), killed on drop.
struct Receiver {
    child: Child,
    /// Where the proxy sends spans.
    addr: SocketAddr,
    /// Where the test reads them (`GET /spans`).
    spans_at: SocketAddr,
}

impl Receiver {
    /// The Zipkin v2 receiver.
    fn start() -> Receiver {
        Receiver::spawn("tests/peers/zipkin_receiver.py")
    }

    /// The OTLP/gRPC receiver.
    fn otlp() -> Receiver {
        Receiver::spawn("tests/peers/otlp_receiver.py")
    }

    fn spawn(script: &str) -> Receiver {
        let mut child = Command::new(tests::python())
            .arg(tests::repo_root().join(script))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("receiver port");
        let ports: Vec<u16> = line.split_whitespace().map(|p| p.parse().expect("a port")).collect();
        let addr = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let spans_at = SocketAddr::from(([127, 0, 0, 1], *ports.last().expect("a port")));
        Receiver { child, addr, spans_at }
    }

    fn spans(&self) -> Vec<Value> {
        let (_, body) = tests::proxy::http_get_blocking(self.spans_at, "/spans").expect("receiver answers");
        serde_json::from_str(&body).expect("spans JSON")
    }

    /// Waits until `n` spans arrived (exporters batch), then returns them.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        tests::eventually(Duration::from_secs(20), || {
            let s = self.spans();
            (s.len() >= n).then_some(s)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener (`direction`: OUTBOUND or INBOUND) whose HCM traces to the `zipkin` cluster.
fn config(direction: &str, tracing_extra: &str, zipkin_extra: &str, app: SocketAddr, zipkin: SocketAddr) -> String {
    config_with(direction, "", tracing_extra, zipkin_extra, app, zipkin)
}

/// The provider block of an OpenTelemetry tracer exporting to the `zipkin` cluster (the
/// collector cluster keeps its name; it speaks OTLP/gRPC here).
const OTEL_PROVIDER: &str = r#"            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {envoy_grpc: {cluster_name: zipkin}, timeout: 1s}
                service_name: reviews.default
"#;

/// [`config`] with an OpenTelemetry tracer and an HTTP/2 collector cluster.
fn otel_config(direction: &str, tracing_extra: &str, app: SocketAddr, collector: SocketAddr) -> String {
    let zipkin_provider_start = "            provider:\n              name: envoy.tracers.zipkin";
    let yaml = config(direction, tracing_extra, "", app, collector);
    let start = yaml.find(zipkin_provider_start).expect("provider block");
    let end = yaml[start..].find("          route_config:").expect("route config") + start;
    let yaml = format!("{}{OTEL_PROVIDER}{}", &yaml[..start], &yaml[end..]);
    yaml.replace(
        "  - name: zipkin\n    connect_timeout: 1s\n",
        &format!("  - name: zipkin\n    connect_timeout: 1s\n{}", tests::yaml::H2_UPSTREAM),
    )
}

/// [`config`] with HCM-level YAML (indented 10).
fn config_with(
    direction: &str,
    hcm_extra: &str,
    tracing_extra: &str,
    zipkin_extra: &str,
    app: SocketAddr,
    zipkin: SocketAddr,
) -> String {
    let listener = format!(
        r#"  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    traffic_direction: {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}
{hcm_extra}          tracing:
{tracing_extra}            custom_tags:
            - {{tag: istio.mesh_id, literal: {{value: cluster.local}}}}
            - {{tag: tenant, request_header: {{name: x-tenant, default_value: none}}}}
            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: zipkin
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
{zipkin_extra}          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {{prefix: "/", headers: [{{name: x-decorate, present_match: true}}]}}
                route: {{cluster: app}}
                decorator: {{operation: "reviews.default.svc.cluster.local:9080/*"}}
              - match: {{prefix: "/"}}
                route: {{cluster: app}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
    );
    tests::yaml::bootstrap(
        &[listener],
        &[tests::yaml::cluster("app", &[app], ""), tests::yaml::cluster("zipkin", &[zipkin], "")],
    )
}

/// The trace headers the upstream saw.
fn upstream_view(body: &[u8]) -> BTreeMap<String, String> {
    let v: BTreeMap<String, String> = serde_json::from_slice(body).expect("headers JSON");
    v.into_iter()
        .filter(|(k, _)| {
            k.starts_with("x-b3-")
                || matches!(
                    k.as_str(),
                    "x-envoy-force-trace"
                        | "x-envoy-decorator-operation"
                        | "x-request-id"
                        | "x-client-trace-id"
                        | "b3"
                        | "traceparent"
                        | "tracestate"
                )
        })
        .collect()
}

/// The sampling decision sent upstream, in either B3 form.
fn is_sampled(h: &BTreeMap<String, String>) -> bool {
    h.get("x-b3-sampled").map(String::as_str) == Some("1")
        || h.get("b3").is_some_and(|b| b.split('-').nth(2) == Some("1"))
}

/// Requests whose outcome does not depend on random numbers: fixed request ids (their first
/// 32 bits decide 50 % sampling), forced traces, and callers' B3 contexts.
fn cases() -> Vec<(String, Vec<(&'static str, String)>)> {
    let mut v = Vec::new();
    for i in 0..24u32 {
        // 0..=9,999 spread over the id space: i * 417 % 10000 decides against 5,000.
        let rid = format!("{:08x}-0000-4000-8000-{:012x}", i * 417 + 10_000 * i, i);
        let mut h = vec![("x-request-id", rid)];
        if i % 3 == 0 {
            h.push(("x-decorate", "1".to_string()));
        }
        v.push(("/headers".to_string(), h));
    }
    let rid = |n: u32| format!("ffff{n:04x}-0000-4000-8000-000000000000");
    v.push(("/headers".into(), vec![("x-request-id", rid(1)), ("x-envoy-force-trace", "1".into())]));
    v.push(("/headers".into(), vec![("x-request-id", rid(2)), ("x-client-trace-id", "client-2".into())]));
    // A caller's context, sampled and not: continued with the caller's decision.
    let ctx = |sampled: &str, n: u32| {
        vec![
            ("x-request-id", rid(10 + n)),
            ("x-b3-traceid", format!("463ac35c9f6413ad48485a39{n:08x}")),
            ("x-b3-spanid", format!("a2fb4a1d{n:08x}")),
            ("x-b3-parentspanid", "0020000000000001".to_string()),
            ("x-b3-sampled", sampled.to_string()),
        ]
    };
    v.push(("/headers".into(), ctx("1", 1)));
    v.push(("/headers".into(), ctx("0", 2)));
    v.push((
        "/headers".into(),
        vec![("x-request-id", rid(20)), ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1".into())],
    ));
    v.push(("/headers".into(), vec![("x-request-id", rid(21)), ("x-tenant", "blue".into())]));
    v
}

/// The W3C cases (OpenTelemetry): the fixed ids, then callers' `traceparent`s, sampled and
/// not, with `tracestate`, and a malformed one (Envoy makes no span for it).
fn w3c_cases() -> Vec<(String, Vec<(&'static str, String)>)> {
    let mut v: Vec<_> = cases().into_iter().take(26).collect();
    let rid = |n: u32| format!("eeee{n:04x}-0000-4000-8000-000000000000");
    let tp = |flags: &str, n: u32| format!("00-0af7651916cd43dd8448eb21{n:08x}-b7ad6b71{n:08x}-{flags}");
    v.push(("/headers".into(), vec![("x-request-id", rid(1)), ("traceparent", tp("01", 1))]));
    v.push((
        "/headers".into(),
        vec![("x-request-id", rid(2)), ("traceparent", tp("00", 2)), ("tracestate", "congo=t61rcWkgMzE".into())],
    ));
    v.push((
        "/headers".into(),
        vec![("x-request-id", rid(3)), ("traceparent", tp("01", 3)), ("tracestate", "rojo=00f067aa0ba902b7".into())],
    ));
    v.push(("/headers".into(), vec![("x-request-id", rid(4)), ("traceparent", "00-not-a-trace-01".into())]));
    v
}

/// Runs the cases through `proxy`; returns what the upstream saw, per case.
async fn drive(proxy: SocketAddr) -> Vec<BTreeMap<String, String>> {
    drive_cases(proxy, cases()).await
}

async fn drive_cases(
    proxy: SocketAddr,
    cases: Vec<(String, Vec<(&'static str, String)>)>,
) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for (path, headers) in cases {
        // One authority for both proxies: a Zipkin span without a decorator is named by it.
        let mut h: Vec<(&str, &str)> = vec![("host", "reviews:9080")];
        h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, _, body) = get(proxy, &path, &h).await.expect("request");
        assert_eq!(status, 200);
        out.push(upstream_view(&body));
    }
    out
}

/// What must match between Envoy and Isthmus: everything but the fresh span ids.
fn comparable(seen: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m = seen.clone();
    if let Some(id) = m.get_mut("x-b3-spanid") {
        *id = format!("<{} hex digits>", id.len());
    }
    // The single header's second field is the new span id.
    if let Some(b3) = m.get_mut("b3") {
        let mut parts: Vec<String> = b3.split('-').map(str::to_string).collect();
        if let Some(span) = parts.get_mut(1) {
            *span = format!("<{} hex digits>", span.len());
        }
        *b3 = parts.join("-");
    }
    // traceparent: `00-{trace}-{span}-{flags}`; the span is new, and so is the trace unless
    // the caller sent one (then it must be the caller's: its cases use 0af76519...).
    if let Some(tp) = m.get_mut("traceparent") {
        let mut parts: Vec<String> = tp.split('-').map(str::to_string).collect();
        if parts.len() == 4 {
            parts[2] = "<span>".into();
            if !parts[1].starts_with("0af76519") {
                parts[1] = format!("<{} hex digits>", parts[1].len());
            }
        }
        *tp = parts.join("-");
    }
    // A new trace's id is random too; a continued one must be the caller's.
    if !seen.contains_key("x-b3-parentspanid") {
        if let Some(id) = m.get_mut("x-b3-traceid") {
            *id = format!("<{} hex digits>", id.len());
        }
    }
    m
}

/// The spans' shape by request id: name, kind, sorted tag keys, and the tags whose values do
/// not depend on the proxy (status, method, custom tags).
fn span_shapes(spans: &[Value]) -> BTreeMap<String, (String, String, BTreeSet<String>, Vec<String>)> {
    spans
        .iter()
        .map(|s| {
            let tags = s["tags"].as_object().cloned().unwrap_or_default();
            let keys: BTreeSet<String> = tags.keys().cloned().collect();
            let fixed =
                ["http.status_code", "http.method", "istio.mesh_id", "tenant", "response_flags", "upstream_cluster"]
                    .iter()
                    .map(|k| format!("{k}={}", tags.get(*k).and_then(Value::as_str).unwrap_or("<none>")))
                    .collect();
            let rid = tags.get("guid:x-request-id").and_then(Value::as_str).unwrap_or_default().to_string();
            (rid, (s["name"].as_str().unwrap_or_default().to_string(), s["kind"].to_string(), keys, fixed))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_b3_propagation_and_zipkin_spans_match_envoy() {
    let app = Upstream::start("app", Behaviour::default()).await;
    let (zi, ze) = (Receiver::start(), Receiver::start());
    // Istio's sidecar shape: outbound listener, 50 % random sampling, no shared span context.
    let tracing = "            random_sampling: {value: 50}\n";
    let zipkin = "                shared_span_context: false\n";
    let isthmus = Proxy::start(&config("OUTBOUND", tracing, zipkin, app.addr, zi.addr));
    let envoy = Envoy::start(&config("OUTBOUND", tracing, zipkin, app.addr, ze.addr)).await;
    let ours = drive(isthmus.listener("l")).await;
    let theirs = drive(envoy.listener("l")).await;
    for (i, ((o, t), (path, headers))) in ours.iter().zip(&theirs).zip(cases()).enumerate() {
        assert_eq!(comparable(o), comparable(t), "case {i} ({path} {headers:?}): Isthmus vs Envoy upstream headers");
    }
    let sampled = ours.iter().filter(|h| is_sampled(h)).count();
    assert!(sampled > 8 && sampled < ours.len() - 4, "a real mix of decisions: {sampled} of {}", ours.len());
    // Every sampled request is reported, by both, with the same shape.
    let (mine, envoys) = (zi.wait_for(sampled).await, ze.wait_for(sampled).await);
    let (mine, envoys) = (span_shapes(&mine), span_shapes(&envoys));
    assert_eq!(mine.len(), sampled, "one span per sampled request: {mine:#?}");
    assert_eq!(mine.keys().collect::<Vec<_>>(), envoys.keys().collect::<Vec<_>>(), "the same requests reported");
    for (rid, m) in &mine {
        assert_eq!(m, &envoys[rid], "span of {rid}: (name, kind, tag keys, tag values) Isthmus vs Envoy");
    }
}

/// OTLP spans' shape by request id: name, kind, attribute keys, fixed attribute values, the
/// resource's `service.name` and its attribute keys.
fn otlp_shapes(spans: &[Value]) -> BTreeMap<String, (String, String, BTreeSet<String>, Vec<String>)> {
    spans
        .iter()
        .map(|s| {
            let attrs: BTreeMap<String, String> = s["attributes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|kv| {
                            let v = kv["value"]["string_value"].as_str().unwrap_or_default().to_string();
                            (kv["key"].as_str().unwrap_or_default().to_string(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut keys: BTreeSet<String> = attrs.keys().cloned().collect();
            let resource = s["resource"].as_object().cloned().unwrap_or_default();
            keys.extend(resource.keys().map(|k| format!("resource:{k}")));
            let mut fixed: Vec<String> =
                ["http.status_code", "http.method", "istio.mesh_id", "tenant", "response_flags", "upstream_cluster"]
                    .iter()
                    .map(|k| format!("{k}={}", attrs.get(*k).map_or("<none>", String::as_str)))
                    .collect();
            fixed.push(format!(
                "service.name={}",
                resource.get("service.name").and_then(Value::as_str).unwrap_or("<none>")
            ));
            fixed.push(format!("parent={}", s.get("parent_span_id").is_some()));
            fixed.push(format!("tracestate={}", s["trace_state"].as_str().unwrap_or_default()));
            let rid = attrs.get("guid:x-request-id").cloned().unwrap_or_default();
            (rid, (s["name"].as_str().unwrap_or_default().to_string(), s["kind"].to_string(), keys, fixed))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_propagation_and_otlp_spans_match_envoy() {
    let app = Upstream::start("app", Behaviour::default()).await;
    let (oi, oe) = (Receiver::otlp(), Receiver::otlp());
    let tracing = "            random_sampling: {value: 50}\n";
    let isthmus = Proxy::start(&otel_config("OUTBOUND", tracing, app.addr, oi.addr));
    let envoy = Envoy::start(&otel_config("OUTBOUND", tracing, app.addr, oe.addr)).await;
    let ours = drive_cases(isthmus.listener("l"), w3c_cases()).await;
    let theirs = drive_cases(envoy.listener("l"), w3c_cases()).await;
    for (i, ((o, t), (path, headers))) in ours.iter().zip(&theirs).zip(w3c_cases()).enumerate() {
        assert_eq!(comparable(o), comparable(t), "case {i} ({path} {headers:?}): Isthmus vs Envoy upstream headers");
    }
    // (The malformed traceparent passes through untouched, as Envoy passes it: not a decision.)
    let sampled =
        ours.iter().filter(|h| h.get("traceparent").is_some_and(|t| t.len() == 55 && t.ends_with("-01"))).count();
    assert!(sampled > 8 && sampled < ours.len() - 4, "a real mix of decisions: {sampled} of {}", ours.len());
    let (mine, envoys) = (oi.wait_for(sampled).await, oe.wait_for(sampled).await);
    let (mine, envoys) = (otlp_shapes(&mine), otlp_shapes(&envoys));
    assert_eq!(mine.len(), sampled, "one span per sampled request: {mine:#?}");
    assert_eq!(mine.keys().collect::<Vec<_>>(), envoys.keys().collect::<Vec<_>>(), "the same requests reported");
    for (rid, m) in &mine {
        assert_eq!(m, &envoys[rid], "span of {rid}: (name, kind, attribute keys, values) Isthmus vs Envoy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sampling_shares_hold_over_many_requests() {
    let app = Upstream::start("app", Behaviour::default()).await;
    for (percent, n, low, high) in [(10.0, 2000usize, 140usize, 260usize), (0.0, 200, 0, 0), (100.0, 200, 200, 200)] {
        let zr = Receiver::start();
        let tracing = format!("            random_sampling: {{value: {percent}}}\n");
        // Loopback callers are internal here, so `x-envoy-force-trace` is honoured.
        let internal =
            "          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.0, prefix_len: 8}]}\n";
        let p = Proxy::start(&config_with("OUTBOUND", internal, &tracing, "", app.addr, zr.addr));
        let addr = p.listener("l");
        let mut sampled = 0;
        for _ in 0..n {
            let (_, _, body) = get(addr, "/headers", &[]).await.expect("request");
            if upstream_view(&body).get("x-b3-sampled").map(String::as_str) == Some("1") {
                sampled += 1;
            }
        }
        // 10 % of 2,000: mean 200, σ ≈ 13.4; the bounds are ±4.5σ.
        assert!((low..=high).contains(&sampled), "{percent} %: {sampled} of {n} sampled");
        // A forced trace is sampled whatever the percentage.
        let (_, _, body) = get(addr, "/headers", &[("x-envoy-force-trace", "1")]).await.expect("request");
        assert_eq!(upstream_view(&body).get("x-b3-sampled").map(String::as_str), Some("1"), "{percent} %: forced");
        let reported = zr.wait_for(sampled + 1).await.len();
        assert_eq!(reported, sampled + 1, "{percent} %: every sampled request is reported, once");
        assert_eq!(p.metric("isthmus_tracing_spans_dropped_total", ""), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_share_one_trace_client_then_server() {
    let app = Upstream::start("app", Behaviour::default()).await;
    let zr = Receiver::start();
    let all = "            random_sampling: {value: 100}\n";
    // The callee's inbound sidecar, Envoy's default shared span context.
    let inbound = Proxy::start(&config("INBOUND", all, "", app.addr, zr.addr));
    let outbound = Proxy::start(&config(
        "OUTBOUND",
        all,
        "                trace_id_128bit: true\n",
        inbound.listener("l"),
        zr.addr,
    ));
    let (status, _, body) = get(outbound.listener("l"), "/headers", &[("x-decorate", "1")]).await.expect("request");
    assert_eq!(status, 200);
    let seen = upstream_view(&body);
    let spans = zr.wait_for(2).await;
    let find =
        |kind: &str| spans.iter().find(|s| s["kind"] == kind).unwrap_or_else(|| panic!("no {kind} span: {spans:#?}"));
    let (client, server) = (find("CLIENT"), find("SERVER"));
    assert_eq!(client["traceId"].as_str().map(str::len), Some(32), "trace_id_128bit");
    assert_eq!(client["traceId"], server["traceId"], "one trace");
    // Zipkin's shared span: the server side reuses the client's span id.
    assert_eq!(client["id"], server["id"]);
    assert_eq!(server["shared"], true);
    assert!(client.get("parentId").is_none(), "the client span is the root");
    // The decorated operation names both spans (passed on by x-envoy-decorator-operation,
    // which the inbound hop removes).
    assert_eq!(client["name"], "reviews.default.svc.cluster.local:9080/*");
    assert_eq!(server["name"], "reviews.default.svc.cluster.local:9080/*");
    assert!(!seen.contains_key("x-envoy-decorator-operation"), "{seen:?}");
    assert_eq!(seen.get("x-b3-traceid").map(String::as_str), client["traceId"].as_str());
    // The access log carries the trace id (Envoy's %TRACE_ID%).
    let logged = tests::eventually(Duration::from_secs(5), || {
        outbound.stdout.lock().unwrap().iter().find(|l| l.contains("\"trace_id\"")).cloned()
    })
    .await;
    let entry: Value = serde_json::from_str(&logged).expect("JSON access log");
    assert_eq!(entry["trace_id"], client["traceId"], "{logged}");
}

/// sidecar → gateway → sidecar with Istio's `shared_span_context: false`: three spans, each
/// the child of the one before, in one trace started by a W3C-less B3 client context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_gateway_sidecar_make_a_parent_child_chain() {
    let app = Upstream::start("app", Behaviour::default()).await;
    let zr = Receiver::start();
    let all = "            random_sampling: {value: 100}\n";
    let istio = "                shared_span_context: false\n";
    let inbound = Proxy::start(&config("INBOUND", all, istio, app.addr, zr.addr));
    let gateway = Proxy::start(&config("UNSPECIFIED", all, istio, inbound.listener("l"), zr.addr));
    let outbound = Proxy::start(&config("OUTBOUND", all, istio, gateway.listener("l"), zr.addr));
    // The client's own span: every hop continues its trace.
    let client = [
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ];
    let (status, _, _) = get(outbound.listener("l"), "/headers", &client).await.expect("request");
    assert_eq!(status, 200);
    let spans = zr.wait_for(3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| s["traceId"] == "463ac35c9f6413ad48485a3953bb6124"), "one trace: {spans:#?}");
    let by_parent =
        |p: &str| spans.iter().find(|s| s["parentId"] == p).unwrap_or_else(|| panic!("no child of {p}: {spans:#?}"));
    let sidecar_out = by_parent("a2fb4a1d1a96d312");
    assert_eq!(sidecar_out["kind"], "CLIENT");
    let gw = by_parent(sidecar_out["id"].as_str().unwrap());
    assert_eq!(gw["kind"], "SERVER");
    let sidecar_in = by_parent(gw["id"].as_str().unwrap());
    assert_eq!(sidecar_in["kind"], "SERVER");
    assert!(spans.iter().all(|s| s.get("shared").is_none()), "no shared spans: {spans:#?}");
}
