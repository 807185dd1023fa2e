//! Side by side with a real Envoy 1.40 on the same bootstrap and the same upstreams: routing,
//! rewrites, redirects, direct responses, header edits, local replies and retries must give
//! the same observable results. Envoy is the reference: when these differ, Isthmus is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;

use tests::envoy::Envoy;
use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener};

const ROUTES: &str = r#"              - match: {path: "/healthz"}
                direct_response: {status: 200, body: {inline_string: "ok"}}
              - match: {prefix: "/old"}
                redirect: {prefix_rewrite: "/new", response_code: FOUND}
              - match: {prefix: "/secure"}
                redirect: {https_redirect: true}
              - match: {prefix: "/api/", headers: [{name: x-canary, string_match: {exact: "1"}}]}
                route: {cluster: web, prefix_rewrite: "/canary/"}
              - match: {safe_regex: {regex: "/api/v[0-9]+/.*"}, query_parameters: [{name: debug, present_match: true}]}
                route: {cluster: web, host_rewrite_literal: debug.internal}
              - match: {prefix: "/api/"}
                route: {cluster: api, prefix_rewrite: "/"}
                request_headers_to_add: [{header: {key: x-route, value: api}}]
                response_headers_to_add: [{header: {key: x-served-by, value: proxy}}]
                response_headers_to_remove: [x-upstream-remove-me]
              - match: {prefix: "/case", case_sensitive: false}
                route: {cluster: web}
              - match: {prefix: "/dead"}
                route: {cluster: dead}
              - match: {prefix: "/slow"}
                route: {cluster: slow, timeout: 0.3s}
              - match: {prefix: "/flaky"}
                route: {cluster: flaky, retry_policy: {retry_on: "5xx", num_retries: 2}}
              - match: {prefix: "/gw"}
                route: {cluster: flaky, retry_policy: {retry_on: "gateway-error", num_retries: 1, retriable_status_codes: [418]}}"#;

/// What a client can observe of one exchange, minus what legitimately differs (timing, ids).
async fn observe(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let (status, h, body) = get(addr, path, headers).await.unwrap();
    let hv = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_else(|| "-".into());
    let seen = if path.contains("headers") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        format!("path={} host={} x-route={}", v[":path"], v["host"], v["x-route"])
    } else {
        String::from_utf8_lossy(&body).chars().take(40).collect()
    };
    format!(
        "{path} -> {status} upstream={} location={} served-by={} remove-me={} body/seen={seen}",
        hv("x-upstream"),
        hv("location"),
        hv("x-served-by"),
        hv("x-upstream-remove-me")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_and_local_replies_match_envoy() {
    let api = Upstream::start("api", Behaviour::default()).await;
    let web = Upstream::start("web", Behaviour::default()).await;
    let slow =
        Upstream::start("slow", Behaviour { delay: Some(std::time::Duration::from_secs(3)), ..Default::default() })
            .await;
    let flaky = Upstream::start("flaky", Behaviour { status: Some(503), ..Default::default() }).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = bootstrap(
        &[http_listener("ingress", ROUTES, "")],
        &[
            cluster("api", &[api.addr], ""),
            cluster("web", &[web.addr], ""),
            cluster("slow", &[slow.addr], ""),
            cluster("flaky", &[flaky.addr], ""),
            cluster("dead", &[dead], ""),
        ],
    );
    let requests: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/healthz", vec![]),
        ("/old/page?x=1", vec![("host", "example.com")]),
        ("/secure/a", vec![("host", "example.com:8080")]),
        ("/api/headers", vec![("host", "svc.test")]),
        ("/api/headers", vec![("x-canary", "1"), ("host", "svc.test")]),
        ("/api/v2/headers?debug=1", vec![("host", "svc.test")]),
        ("/api/v2/headers", vec![("host", "svc.test")]),
        ("/old", vec![("host", "example.com:8080")]),
        ("/secure", vec![("host", "example.com")]),
        ("/CASE/x", vec![]),
        ("/nothing", vec![]),
        ("/dead", vec![]),
        ("/slow", vec![]),
        ("/flaky", vec![]),
        ("/gw", vec![]),
        ("/gw", vec![("x-test-status", "418")]),
    ];
    let mut results = Vec::new();
    for which in ["envoy", "isthmus"] {
        let (addr, _guard): (SocketAddr, Box<dyn std::any::Any>) = if which == "envoy" {
            let e = Envoy::start(&yaml).await;
            (e.listener("ingress"), Box::new(e))
        } else {
            let p = Proxy::start(&yaml);
            (p.listener("ingress"), Box::new(p))
        };
        let before = flaky.hits();
        let mut seen = Vec::new();
        for (path, headers) in &requests {
            seen.push(observe(addr, path, headers).await);
        }
        seen.push(format!("flaky upstream tries: {}", flaky.hits() - before));
        results.push(seen);
    }
    let (envoy, isthmus) = (&results[0], &results[1]);
    let diffs: Vec<String> =
        envoy.iter().zip(isthmus).filter(|(e, i)| e != i).map(|(e, i)| format!("envoy:   {e}\nisthmus: {i}")).collect();
    assert!(diffs.is_empty(), "differences from Envoy:\n{}", diffs.join("\n\n"));
}

fn weighted_cluster(name: &str, policy: &str, hosts: &[(SocketAddr, u32)]) -> String {
    let eps: String = hosts
        .iter()
        .map(|(a, w)| {
            format!("        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n          load_balancing_weight: {w}\n", a.ip(), a.port())
        })
        .collect();
    format!("  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    lb_policy: {policy}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}")
}

#[tokio::test(flavor = "multi_thread")]
async fn ring_hash_and_maglev_send_each_key_to_the_same_host_as_envoy() {
    let names = ["h0", "h1", "h2", "h3", "h4"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(Upstream::start(n, Behaviour::default()).await);
    }
    let hosts: Vec<(SocketAddr, u32)> = ups.iter().zip([1, 1, 2, 1, 3]).map(|(u, w)| (u.addr, w)).collect();
    let routes = "              - match: {prefix: \"/ring\"}\n                route: {cluster: ring, hash_policy: [{header: {header_name: x-user}}]}\n              - match: {prefix: \"/maglev\"}\n                route: {cluster: maglev, hash_policy: [{header: {header_name: x-user}}, {connection_properties: {source_ip: true}}]}";
    let yaml = bootstrap(
        &[http_listener("ingress", routes, "")],
        &[weighted_cluster("ring", "RING_HASH", &hosts), weighted_cluster("maglev", "MAGLEV", &hosts)],
    );
    let mut results = Vec::new();
    for which in ["envoy", "isthmus"] {
        let (addr, _guard): (SocketAddr, Box<dyn std::any::Any>) = if which == "envoy" {
            let e = Envoy::start(&yaml).await;
            (e.listener("ingress"), Box::new(e))
        } else {
            let p = Proxy::start(&yaml);
            (p.listener("ingress"), Box::new(p))
        };
        let mut seen = Vec::new();
        for path in ["/ring", "/maglev"] {
            for u in 0..60 {
                let user = format!("user-{u}");
                let (s, h, _) = get(addr, path, &[("x-user", &user)]).await.unwrap();
                assert_eq!(s, 200);
                seen.push(format!("{path} {user} -> {}", h["x-upstream"].to_str().unwrap()));
            }
        }
        results.push(seen);
    }
    let spread: std::collections::HashSet<&str> = results[1].iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert!(spread.len() >= 4, "keys spread over the hosts: {spread:?}");
    let diffs: Vec<String> = results[0]
        .iter()
        .zip(&results[1])
        .filter(|(e, i)| e != i)
        .map(|(e, i)| format!("envoy {e} | isthmus {i}"))
        .collect();
    assert!(diffs.is_empty(), "{} of 120 keys land elsewhere than with Envoy:\n{}", diffs.len(), diffs.join("\n"));
}

#[test]
fn every_example_config_is_valid_envoy_config_too() {
    // The examples are Envoy bootstraps: the real Envoy must accept what Isthmus accepts.
    let envoy = tests::python().parent().unwrap().join("envoy");
    let dir = tests::repo_root().join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let out = std::process::Command::new(&envoy)
                .args(["--mode", "validate", "--disable-hot-restart", "-l", "error", "-c"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(out.status.success(), "Envoy rejects {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
            n += 1;
        }
    }
    assert!(n >= 4);
}
