//! Listener-level behaviour: filter-chain selection from the first bytes (TLS SNI with a real
//! openssl client, h2c vs HTTP/1.1), WebSocket upgrades, DNS clusters, readiness port, demo.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::proxy::{run, Proxy};
use tests::upstream::{Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP sink that counts connections (stands in for a TLS backend: only who gets the bytes
/// matters here).
async fn counting_sink() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                }
            });
        }
    });
    (addr, n)
}

/// A real ClientHello from `openssl s_client`; the caller kills it once the hello has landed
/// (the sink never answers).
fn openssl_hello(addr: std::net::SocketAddr, sni: &str) -> std::process::Child {
    Command::new(tests::tool("openssl"))
        .args(["s_client", "-connect", &addr.to_string(), "-servername", sni, "-alpn", "h2,http/1.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_sni_selects_the_filter_chain_exact_before_wildcard_before_default() {
    let (api, api_n) = counting_sink().await;
    let (wild, wild_n) = counting_sink().await;
    let (other, other_n) = counting_sink().await;
    let chain = |m: &str, c: &str| {
        format!(
            "    - {m}filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: {c}\n          cluster: {c}\n"
        )
    };
    let listener = format!(
        "  - name: tls\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}\n    filter_chains:\n{}{}{}",
        chain("filter_chain_match: {server_names: [\"*.example.com\"]}\n      ", "wild"),
        chain("filter_chain_match: {server_names: [\"api.example.com\"]}\n      ", "api"),
        chain("", "other"),
    );
    let yaml = bootstrap(
        &[listener],
        &[cluster("api", &[api], ""), cluster("wild", &[wild], ""), cluster("other", &[other], "")],
    );
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("tls");
    let wait = |n: &Arc<AtomicU64>, v: u64| {
        let n = n.clone();
        tests::eventually(Duration::from_secs(5), move || (n.load(Ordering::Relaxed) == v).then_some(()))
    };
    for (sni, counter) in [("api.example.com", &api_n), ("www.example.com", &wild_n), ("elsewhere.org", &other_n)] {
        let mut client = openssl_hello(addr, sni);
        wait(counter, 1).await;
        let _ = client.kill();
        let _ = client.wait();
    }
    // Plaintext falls to the chain without criteria too.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    wait(&other_n, 2).await;
    assert_eq!((api_n.load(Ordering::Relaxed), wild_n.load(Ordering::Relaxed)), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn sniffed_h2c_and_http1_pick_different_chains() {
    let h2 = Upstream::start("h2-chain", Behaviour::default()).await;
    let h1 = Upstream::start("h1-chain", Behaviour::default()).await;
    let l2 = http_listener("x", &route_to("h2", ""), "");
    let l1 = http_listener("x", &route_to("h1", ""), "");
    let part = |l: &str| l.split_once("    filter_chains:\n").unwrap().1.to_string();
    let listener = format!(
        "  - name: sniff\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    listener_filters:\n    - name: envoy.filters.listener.http_inspector\n      typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}}\n    filter_chains:\n{}\n{}",
        part(&l2).replacen("    - filters:", "    - filter_chain_match: {application_protocols: [h2c]}\n      filters:", 1),
        part(&l1),
    );
    let proxy = Proxy::start(&bootstrap(&[listener], &[cluster("h2", &[h2.addr], ""), cluster("h1", &[h1.addr], "")]));
    let url = format!("http://{}/", proxy.listener("sniff"));
    let curl = |extra: &[&str]| {
        let out = Command::new(tests::tool("curl")).arg("-s").args(extra).arg(&url).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&["--http2-prior-knowledge"]), "h2-chain");
    assert_eq!(curl(&[]), "h1-chain");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_is_proxied_both_ways() {
    let up = Upstream::start("ws", Behaviour::default()).await;
    let listener = http_listener("ingress", &route_to("web", ""), "").replace(
        "          stat_prefix: ingress\n",
        "          stat_prefix: ingress\n          upgrade_configs: [{upgrade_type: websocket}]\n",
    );
    let proxy = Proxy::start(&bootstrap(&[listener], &[cluster("web", &[up.addr], "")]));
    let mut s = tokio::net::TcpStream::connect(proxy.listener("ingress")).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed before the 101: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"\x81\x05hello"[..], b"second frame bytes"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_dns_cluster_resolves_localhost() {
    let up = Upstream::start("dns", Behaviour::default()).await;
    let c = cluster("web", &[up.addr], "")
        .replace("type: STATIC", "type: STRICT_DNS\n    dns_refresh_rate: 1s")
        .replace("address: 127.0.0.1", "address: localhost");
    let proxy = Proxy::start(&bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[c]));
    let (s, h, _) = tests::upstream::get(proxy.listener("ingress"), "/", &[]).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["x-upstream"], "dns");
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains("::hostname::localhost"), "{clusters}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_address_serves_healthz_ready() {
    let up = Upstream::start("a", Behaviour::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let _proxy = Proxy::start_with(
        &bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[cluster("web", &[up.addr], "")]),
        &["--readiness-address", &addr],
    );
    let (s, _, body) = tests::upstream::get(addr.parse().unwrap(), "/healthz/ready", &[]).await.unwrap();
    assert_eq!((s, &body[..]), (200, &b"LIVE\n"[..]));
    // The readiness port is reachable from outside the pod: nothing else is served there.
    for path in ["/config_dump", "/stats/prometheus", "/quitquitquit", "/logging?level=off"] {
        let (s, _, _) = tests::upstream::get(addr.parse().unwrap(), path, &[]).await.unwrap();
        assert_eq!(s, 404, "{path}");
    }
    assert_eq!(_proxy.admin_get("/ready").0, 200, "still running");
}

#[test]
fn demo_shows_failover_to_the_nearest_healthy_zone_without_failed_requests() {
    let out = run(&["demo", "--seconds", "8", "--rate", "50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("400 requests, 0 failed"), "{text}");
    // The whole story: local, failover, and home again (the demo fails without it).
    let home = text.lines().find(|l| l.contains("<- traffic is home again")).unwrap_or_else(|| panic!("{text}"));
    assert!(home.contains("beijing-a 100%") || home.contains("beijing-a  9"), "{home}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("beijing-a") && l.contains('%')).collect();
    assert!(rows.first().is_some_and(|r| r.contains("beijing-a 100%")), "{text}");
    assert!(
        rows.iter().any(|r| r.contains("beijing-b 100%")),
        "traffic moved to the same region's other zone:\n{text}"
    );
    assert!(rows.iter().all(|r| r.contains("hangzhou-a   0%")), "never to the other region:\n{text}");
    // Failed-over requests are listed by trace id, with the span the collector received.
    let traced: Vec<&str> =
        text.lines().filter(|l| l.contains("trace ") && l.contains("served by beijing-b")).collect();
    assert!(!traced.is_empty(), "failed-over requests listed by trace:\n{text}");
    assert!(traced.iter().any(|l| l.contains("proxy span")), "their spans reached the collector:\n{text}");
}
