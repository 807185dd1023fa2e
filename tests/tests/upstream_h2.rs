//! HTTP/2 upstream connections side by side with Envoy 1.40 (reliability issue, defect 8): a
//! stream the upstream refuses (`REFUSED_STREAM`) is retried under `retry_on: refused-stream`
//! and answered `503 UR` without it; a connection idle for the cluster's
//! `common_http_protocol_options.idle_timeout` is closed. The upstream is the `h2` crate's
//! server, so the test controls each stream's fate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tests::upstream::get;

/// An h2c upstream that refuses every other stream (the first, the third, …) and answers the
/// rest `200 ok`; it counts streams, connections accepted and connections open.
struct H2Upstream {
    addr: SocketAddr,
    streams: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
}

async fn h2_upstream(refuse_odd: bool) -> H2Upstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (streams, accepted, open) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (s, a, o) = (streams.clone(), accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let (s, o) = (s.clone(), o.clone());
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut conn) = h2::server::handshake(sock).await {
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let n = s.fetch_add(1, Ordering::SeqCst);
                        if refuse_odd && n % 2 == 0 {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            continue;
                        }
                        if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
                            let _ = body.send_data(Bytes::from_static(b"ok"), true);
                        }
                    }
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    H2Upstream { addr, streams, accepted, open }
}

fn listener(log: &std::path::Path) -> String {
    let routes = [
        "              - match: {prefix: /retry}\n                route: {cluster: h2, retry_policy: {retry_on: refused-stream, num_retries: 1}}\n",
        "              - match: {prefix: /}\n                route: {cluster: h2}\n",
    ]
    .concat();
    tests::yaml::http_listener("http", &routes, "").replace(
        "typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}",
        &format!(
            "typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"{}\", log_format: {{text_format_source: {{inline_string: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\"}}}}}}",
            log.display()
        ),
    )
}

fn h2_cluster(addr: SocketAddr, idle: &str) -> String {
    tests::yaml::cluster(
        "h2",
        &[addr],
        &format!(
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        common_http_protocol_options: {{{idle}}}\n        explicit_http_config: {{http2_protocol_options: {{}}}}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_are_retried_as_envoy() {
    let mut seen = Vec::new();
    for who in tests::side::BOTH {
        let up = h2_upstream(true).await;
        let log = tests::scratch(&format!("refused-{who}.log"));
        let yaml = tests::yaml::bootstrap(&[listener(&log)], &[h2_cluster(up.addr, "")]);
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("http");
        // Stream 1 refused, retried as stream 2 (answered); stream 3 refused, not retried.
        let retried = get(addr, "/retry", &[]).await.unwrap();
        let plain = get(addr, "/plain", &[]).await.unwrap();
        let lines = tests::eventually(Duration::from_secs(10), || {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            (t.lines().count() >= 2).then_some(t)
        })
        .await;
        seen.push((
            (retried.0, retried.2),
            (plain.0, plain.2),
            up.streams.load(Ordering::SeqCst),
            lines.lines().map(str::to_string).collect::<Vec<_>>(),
        ));
    }
    assert_eq!(seen[0], seen[1], "Envoy, then Isthmus");
    let (retried, plain, streams, log) = &seen[1];
    assert_eq!(retried.0, 200);
    assert_eq!(plain.0, 503);
    assert_eq!(*streams, 3);
    assert_eq!(log[1], "503 UR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_upstream_connections_close_as_envoy() {
    for who in tests::side::BOTH {
        let up = h2_upstream(false).await;
        let log = tests::scratch(&format!("h2idle-{who}.log"));
        let yaml = tests::yaml::bootstrap(&[listener(&log)], &[h2_cluster(up.addr, "idle_timeout: 0.5s")]);
        let running = tests::side::Running::start(who, &yaml).await;
        let addr = running.listener("http");
        assert_eq!(get(addr, "/a", &[]).await.unwrap().0, 200, "{who}");
        assert_eq!(get(addr, "/b", &[]).await.unwrap().0, 200, "{who}");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "{who}: one multiplexed connection");
        // Idle for 0.5 s: the proxy closes it (within 5 s; without the timeout it stays open).
        tests::eventually(Duration::from_secs(5), || (up.open.load(Ordering::SeqCst) == 0).then_some(())).await;
        assert_eq!(get(addr, "/c", &[]).await.unwrap().0, 200, "{who}");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2, "{who}: a new connection after the idle close");
    }
}
