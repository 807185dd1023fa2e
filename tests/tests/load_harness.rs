//! `isthmus-load` (benches/) against the real proxy: the open-loop schedule sends the
//! requested number of requests at the requested rate over HTTP/1.1, HTTP/2 and TCP, and the
//! JSON carries ordered latency percentiles. Checks the harness itself; speed is measured by
//! `benches/compare`, not here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;
use tests::proxy::Proxy;
use tests::upstream::{tcp_echo, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to, tcp_listener, H2_UPSTREAM};

fn load(args: &[&str]) -> Value {
    let mut cmd = Command::new(tests::bin("isthmus-load"));
    cmd.args(args);
    // Bounded even if the generator misbehaves.
    let out = tests::openssl::run_bounded(cmd, b"", std::time::Duration::from_secs(60));
    assert!(out.status.success(), "isthmus-load failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(v: &Value, expected: u64) {
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["ok"], expected, "an open-loop run sends exactly rate × duration requests: {v}");
    let l = &v["latency_us"];
    let p: Vec<u64> = ["p50", "p90", "p99", "p99_9", "max"].iter().map(|k| l[k].as_u64().unwrap()).collect();
    assert!(p[0] > 0 && p.windows(2).all(|w| w[0] <= w[1]), "percentiles must be ordered: {l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_runs_send_the_scheduled_requests_over_h1_h2_and_tcp() {
    let up = Upstream::start("load", Behaviour::default()).await;
    let echo = tcp_echo().await;
    let proxy = Proxy::start(&bootstrap(
        &[
            http_listener("h1", &route_to("app", ""), ""),
            http_listener("h2", &route_to("app2", ""), ""),
            tcp_listener("tcp", "echo"),
        ],
        &[cluster("app", &[up.addr], ""), cluster("app2", &[up.addr], H2_UPSTREAM), cluster("echo", &[echo], "")],
    ));
    let target = |n: &str| proxy.listener(n).to_string();
    let h1 = load(&[&target("h1"), "--proto", "h1", "--rate", "400", "--duration", "1", "--connections", "8"]);
    check(&h1, 400);
    let h2 = load(&[&target("h2"), "--proto", "h2", "--rate", "400", "--duration", "1", "--connections", "2"]);
    check(&h2, 400);
    let tcp = load(&[&target("tcp"), "--proto", "tcp", "--rate", "400", "--duration", "1", "--connections", "4"]);
    check(&tcp, 400);
    assert!(up.hits() >= 800, "the upstream served the HTTP runs: {}", up.hits());
    // Closed loop: as fast as it goes, bounded by --max-requests.
    let max = load(&[&target("h1"), "--rate", "0", "--duration", "5", "--max-requests", "300", "--connections", "4"]);
    assert_eq!(max["errors"], 0, "{max}");
    let n = max["ok"].as_u64().unwrap();
    assert!((300..=303).contains(&n), "closed loop stops at --max-requests (plus in-flight): {max}");
}

/// Coordinated-omission correction: a target that takes 50 ms per request on one connection
/// serves 20 req/s; offered 50 req/s for 1 s, the requests queue, and the open-loop latency
/// must show the queueing (a closed-loop measure would report ~50 ms for every request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_the_queue_behind_a_slow_target() {
    let slow = Upstream::start(
        "slow",
        Behaviour { delay: Some(std::time::Duration::from_millis(50)), ..Behaviour::default() },
    )
    .await;
    let v = load(&[&slow.addr.to_string(), "--rate", "50", "--duration", "1", "--connections", "1"]);
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["ok"], 50, "{v}");
    let l = &v["latency_us"];
    let (p50, p99) = (l["p50"].as_u64().unwrap(), l["p99"].as_u64().unwrap());
    // 50 requests at 50 ms each take 2.5 s; the last one was due at ~1 s, so it waited ~1.5 s.
    assert!(p99 >= 1_000_000, "p99 {p99} µs does not include the queueing: {l}");
    assert!(p50 >= 400_000, "p50 {p50} µs does not include the queueing: {l}");
}
