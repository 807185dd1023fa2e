//! HTTP through the real binary: curl (HTTP/1.1 and h2c), h2load, routing features.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};

async fn one_upstream_proxy() -> (Upstream, Proxy) {
    let up = Upstream::start("alpha", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[cluster("web", &[up.addr], "")]);
    (up, Proxy::start(&yaml))
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new(tests::tool("curl")).args(["-sS", "-D", "-"]).args(args).output().expect("curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_http1_and_h2c_prior_knowledge_reach_the_upstream() {
    let (up, proxy) = one_upstream_proxy().await;
    let url = format!("http://{}/hello", proxy.listener("ingress"));
    let (head, body) = curl(&[&url]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-upstream: alpha"), "{head}");
    assert!(head.contains("x-envoy-upstream-service-time:"), "{head}");
    assert_eq!(body, "alpha");
    let (head, body) = curl(&["--http2-prior-knowledge", &url]);
    assert!(head.starts_with("http/2 200"), "{head}");
    assert_eq!(body, "alpha");
    assert_eq!(up.hits(), 2);
    // The upstream sees the forwarding headers Envoy adds.
    let (_, hdrs) = curl(&[&format!("http://{}/headers", proxy.listener("ingress"))]);
    let v: serde_json::Value = serde_json::from_str(&hdrs).unwrap();
    assert_eq!(v["x-forwarded-proto"], "http");
    assert_eq!(v["x-request-id"].as_str().unwrap().len(), 36);
    // Access log lines are JSON on stdout, one per request, with the upstream named.
    let logs = tests::eventually(std::time::Duration::from_secs(5), || {
        let l = proxy.stdout.lock().unwrap().clone();
        (l.len() >= 3).then_some(l)
    })
    .await;
    let first: serde_json::Value = serde_json::from_str(&logs[0]).unwrap();
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["upstream_cluster"], "web");
    assert_eq!(first["upstream_host"], up.addr.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn h2load_2000_requests_without_errors() {
    let (up, proxy) = one_upstream_proxy().await;
    let url = format!("http://{}/load", proxy.listener("ingress"));
    let out = Command::new(tests::tool("h2load"))
        .args(["-n", "2000", "-c", "10", "-m", "10", &url])
        .output()
        .expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "{text}");
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
    assert_eq!(up.hits(), 2000);
    assert_eq!(proxy.metric("istio_requests_total", "response_code=\"200\""), 2000.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_clusters_split_80_20() {
    let a = Upstream::start("a", Behaviour::default()).await;
    let b = Upstream::start("b", Behaviour::default()).await;
    let routes = "              - match: {prefix: \"/\"}\n                route:\n                  weighted_clusters:\n                    clusters: [{name: a, weight: 80}, {name: b, weight: 20}]";
    let yaml =
        bootstrap(&[http_listener("ingress", routes, "")], &[cluster("a", &[a.addr], ""), cluster("b", &[b.addr], "")]);
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("ingress");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                let (s, _, _) = get(addr, "/", &[]).await.unwrap();
                assert_eq!(s, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let share = a.hits() as f64 / 5000.0 * 100.0;
    assert_eq!(a.hits() + b.hits(), 5000);
    assert!((77.0..=83.0).contains(&share), "a got {share}%");
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_path_header_and_query_with_direct_response_redirect_and_rewrites() {
    let api = Upstream::start("api", Behaviour::default()).await;
    let web = Upstream::start("web", Behaviour::default()).await;
    let routes = r#"              - match: {path: "/healthz"}
                direct_response: {status: 200, body: {inline_string: "ok from isthmus"}}
              - match: {prefix: "/old"}
                redirect: {prefix_rewrite: "/new", response_code: FOUND}
              - match: {prefix: "/api/", headers: [{name: x-canary, string_match: {exact: "1"}}]}
                route: {cluster: web, prefix_rewrite: "/canary/"}
              - match: {safe_regex: {regex: "/api/v[0-9]+/.*"}, query_parameters: [{name: debug, present_match: true}]}
                route: {cluster: web, host_rewrite_literal: debug.internal}
              - match: {prefix: "/api/"}
                route: {cluster: api, prefix_rewrite: "/"}
                request_headers_to_add: [{header: {key: x-route, value: api}}]
                response_headers_to_add: [{header: {key: x-served-by, value: isthmus}}]
                response_headers_to_remove: [x-upstream-remove-me]"#;
    let yaml = bootstrap(
        &[http_listener("ingress", routes, "")],
        &[cluster("api", &[api.addr], ""), cluster("web", &[web.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("ingress");

    let (s, _, body) = get(addr, "/healthz", &[]).await.unwrap();
    assert_eq!((s, &body[..]), (200, &b"ok from isthmus"[..]));

    let (s, h, _) = get(addr, "/old/page?x=1", &[("host", "example.com")]).await.unwrap();
    assert_eq!(s, 302);
    assert_eq!(h["location"], "http://example.com/new/page?x=1");

    let (s, h, body) = get(addr, "/api/headers", &[]).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["x-upstream"], "api");
    assert_eq!(h["x-served-by"], "isthmus");
    assert!(h.get("x-upstream-remove-me").is_none());
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen[":path"], "/headers");
    assert_eq!(seen["x-route"], "api");

    let (_, h, body) = get(addr, "/api/x", &[("x-canary", "1")]).await.unwrap();
    assert_eq!(h["x-upstream"], "web");
    assert_eq!(body, "web");
    let (_, _, body) = get(addr, "/api/v2/headers?debug", &[]).await.unwrap();
    let _ = body;
    let (_, h, _) = get(addr, "/api/v2/headers?debug", &[]).await.unwrap();
    assert_eq!(h["x-upstream"], "web");

    let (s, _, _) = get(addr, "/nothing-matches", &[]).await.unwrap();
    assert_eq!(s, 404);

    // Local answers carry Envoy's flags: none for direct responses and redirects, NR for no route.
    let logs = tests::eventually(std::time::Duration::from_secs(5), || {
        let l = proxy.stdout.lock().unwrap().clone();
        (l.len() >= 7).then_some(l)
    })
    .await;
    let flags_of = |path: &str| {
        logs.iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["path"] == path)
            .map(|v| v["response_flags"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(flags_of("/healthz"), "-");
    assert_eq!(flags_of("/old/page?x=1"), "-");
    assert_eq!(flags_of("/nothing-matches"), "NR");
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_hosts_by_domain() {
    let a = Upstream::start("exact", Behaviour::default()).await;
    let b = Upstream::start("wild", Behaviour::default()).await;
    let listener = http_listener("ingress", &route_to("a", ""), "").replace(
        "            virtual_hosts:\n            - name: vh\n              domains: [\"*\"]",
        "            virtual_hosts:\n            - name: wild\n              domains: [\"*.example.com\"]\n              routes: [{match: {prefix: \"/\"}, route: {cluster: b}}]\n            - name: vh\n              domains: [\"api.example.com\"]",
    );
    let proxy = Proxy::start(&bootstrap(
        std::slice::from_ref(&listener),
        &[cluster("a", &[a.addr], ""), cluster("b", &[b.addr], "")],
    ));
    let addr = proxy.listener("ingress");
    let (_, h, _) = get(addr, "/", &[("host", "api.example.com")]).await.unwrap();
    assert_eq!(h["x-upstream"], "exact");
    let (_, h, _) = get(addr, "/", &[("host", "www.example.com")]).await.unwrap();
    assert_eq!(h["x-upstream"], "wild");
    // As Envoy 1.40 with the same table: the port is part of the host unless the table sets
    // `ignore_port_in_host_matching` (istiod sets it on every route table).
    let (s, _, _) = get(addr, "/", &[("host", "www.example.com:8080")]).await.unwrap();
    assert_eq!(s, 404);
    let (s, _, _) = get(addr, "/", &[("host", "other.org")]).await.unwrap();
    assert_eq!(s, 404);
    drop(proxy);
    let listener = listener.replace(
        "          route_config:\n",
        "          route_config:\n            ignore_port_in_host_matching: true\n",
    );
    assert!(listener.contains("ignore_port_in_host_matching"), "{listener}");
    let proxy = Proxy::start(&bootstrap(&[listener], &[cluster("a", &[a.addr], ""), cluster("b", &[b.addr], "")]));
    let addr = proxy.listener("ingress");
    let (_, h, _) = get(addr, "/", &[("host", "www.example.com:8080")]).await.unwrap();
    assert_eq!(h["x-upstream"], "wild");
    let (_, h, _) = get(addr, "/", &[("host", "api.example.com:9080")]).await.unwrap();
    assert_eq!(h["x-upstream"], "exact");
}
