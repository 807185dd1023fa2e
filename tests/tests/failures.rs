//! Failure handling: retries, per-try timeouts, upstream resets, malformed requests, circuit
//! breakers — each answers the one request and the proxy keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn retries_on_503_reach_the_second_host() {
    let bad = Upstream::start("bad", Behaviour { status: Some(503), ..Default::default() }).await;
    let good = Upstream::start("good", Behaviour::default()).await;
    let retry = ", retry_policy: {retry_on: \"5xx\", num_retries: 2, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], host_selection_retry_max_attempts: 3}";
    let yaml = bootstrap(
        &[http_listener("ingress", &route_to("web", retry), "")],
        &[cluster("web", &[bad.addr, good.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    for _ in 0..20 {
        let (s, h, _) = get(proxy.listener("ingress"), "/", &[]).await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(h["x-upstream"], "good");
    }
    // Round robin sent about half of the first tries to the bad host; each was retried.
    assert!(bad.hits() >= 5, "bad host saw {} tries", bad.hits());
    assert_eq!(good.hits(), 20);
    assert_eq!(proxy.metric("envoy_cluster_upstream_rq_retry", "envoy_cluster_name=\"web\""), bad.hits() as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_retry_policy_the_503_is_passed_through_and_retries_give_up_with_urx() {
    let bad = Upstream::start("bad", Behaviour { status: Some(503), ..Default::default() }).await;
    let retry = ", retry_policy: {retry_on: \"5xx\", num_retries: 2}";
    let routes =
        format!("{}\n{}", route_to("web", retry).replace("prefix: \"/\"", "prefix: \"/retry\""), route_to("web", ""));
    let yaml = bootstrap(&[http_listener("ingress", &routes, "")], &[cluster("web", &[bad.addr], "")]);
    let proxy = Proxy::start(&yaml);
    let (s, _, _) = get(proxy.listener("ingress"), "/plain", &[]).await.unwrap();
    assert_eq!(s, 503);
    assert_eq!(bad.hits(), 1);
    let (s, _, _) = get(proxy.listener("ingress"), "/retry", &[]).await.unwrap();
    assert_eq!(s, 503);
    assert_eq!(bad.hits(), 4, "1 + (1 try + 2 retries)");
    let logs = tests::eventually(Duration::from_secs(5), || {
        let l = proxy.stdout.lock().unwrap().clone();
        (l.len() >= 2).then_some(l)
    })
    .await;
    let last: serde_json::Value = serde_json::from_str(&logs[1]).unwrap();
    assert_eq!(last["response_flags"], "URX");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_try_timeout_moves_on_to_a_fast_host() {
    let slow = Upstream::start("slow", Behaviour { delay: Some(Duration::from_secs(5)), ..Default::default() }).await;
    let fast = Upstream::start("fast", Behaviour::default()).await;
    let retry = ", timeout: 10s, retry_policy: {retry_on: \"5xx\", num_retries: 1, per_try_timeout: 0.2s, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], host_selection_retry_max_attempts: 5}";
    let yaml = bootstrap(
        &[http_listener("ingress", &route_to("web", retry), "")],
        &[cluster("web", &[slow.addr, fast.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    for _ in 0..4 {
        let t = Instant::now();
        let (s, h, _) = get(proxy.listener("ingress"), "/", &[]).await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(h["x-upstream"], "fast");
        assert!(t.elapsed() < Duration::from_secs(4), "took {:?}: the slow host was waited for", t.elapsed());
    }
    assert!(slow.hits() >= 1);
    assert!(proxy.metric("envoy_cluster_upstream_rq_per_try_timeout", "") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_timeout_answers_504_ut() {
    let slow = Upstream::start("slow", Behaviour { delay: Some(Duration::from_secs(5)), ..Default::default() }).await;
    let yaml = bootstrap(
        &[http_listener("ingress", &route_to("web", ", timeout: 0.3s"), "")],
        &[cluster("web", &[slow.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    let (s, _, body) = get(proxy.listener("ingress"), "/", &[]).await.unwrap();
    assert_eq!(s, 504);
    assert_eq!(body, "upstream request timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_reset_and_refused_connect_answer_503_and_the_proxy_keeps_serving() {
    let reset = Upstream::start("reset", Behaviour { reset: true, ..Default::default() }).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let good = Upstream::start("good", Behaviour::default()).await;
    let routes = format!(
        "{}\n{}\n{}",
        route_to("reset", "").replace("prefix: \"/\"", "prefix: \"/reset\""),
        route_to("dead", "").replace("prefix: \"/\"", "prefix: \"/dead\""),
        route_to("good", "")
    );
    let yaml = bootstrap(
        &[http_listener("ingress", &routes, "")],
        &[cluster("reset", &[reset.addr], ""), cluster("dead", &[dead], ""), cluster("good", &[good.addr], "")],
    );
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("ingress");
    let (s, _, body) = get(addr, "/reset", &[]).await.unwrap();
    assert_eq!(s, 503);
    assert!(String::from_utf8_lossy(&body).contains("connection termination"), "{body:?}");
    let (s, _, body) = get(addr, "/dead", &[]).await.unwrap();
    assert_eq!(s, 503);
    assert!(String::from_utf8_lossy(&body).contains("connection failure"), "{body:?}");
    let (s, _, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(s, 200);
    let flags: Vec<String> = tests::eventually(Duration::from_secs(5), || {
        let l = proxy.stdout.lock().unwrap().clone();
        (l.len() >= 3).then_some(l)
    })
    .await
    .iter()
    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["response_flags"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(flags, ["UC", "UF", "-"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_gets_400_and_only_closes_its_connection() {
    let good = Upstream::start("good", Behaviour::default()).await;
    let proxy = Proxy::start(&bootstrap(
        &[http_listener("ingress", &route_to("web", ""), "")],
        &[cluster("web", &[good.addr], "")],
    ));
    let addr = proxy.listener("ingress");
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n"[..],
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
    }
    let (s, _, _) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(good.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_requests_overflow_answers_503_uo_and_is_counted() {
    let slow =
        Upstream::start("slow", Behaviour { delay: Some(Duration::from_millis(800)), ..Default::default() }).await;
    let cb = "    circuit_breakers: {thresholds: [{max_requests: 2, max_pending_requests: 0}]}\n";
    let proxy = Proxy::start(&bootstrap(
        &[http_listener("ingress", &route_to("web", ""), "")],
        &[cluster("web", &[slow.addr], cb)],
    ));
    let addr = proxy.listener("ingress");
    let tasks: Vec<_> = (0..5).map(|_| tokio::spawn(async move { get(addr, "/", &[]).await.unwrap().0 })).collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [200, 200, 503, 503, 503]);
    assert_eq!(proxy.metric("envoy_cluster_upstream_rq_pending_overflow", ""), 3.0);
}
