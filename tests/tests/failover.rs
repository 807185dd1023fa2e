//! Locality failover with the real binary: three localities × three upstreams, priorities
//! P0 (own zone) → P1 (same region, other zone) → P2 (other region), outlier detection on
//! consecutive 5xx. Shares are checked against Envoy's priority-load formula over 2,000
//! requests; retries keep clients from seeing the failures while hosts are being ejected.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tests::proxy::Proxy;
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, http_listener};

fn cluster(groups: &[(&str, &str, u32, Vec<SocketAddr>)]) -> String {
    let mut eps = String::new();
    for (region, zone, prio, hosts) in groups {
        eps.push_str(&format!(
            "      - locality: {{region: {region}, zone: {zone}}}\n        priority: {prio}\n        lb_endpoints:\n"
        ));
        for h in hosts {
            eps.push_str(&format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
                h.port()
            ));
        }
    }
    format!(
        "  - name: pay\n    connect_timeout: 1s\n    type: STATIC\n    lb_policy: ROUND_ROBIN\n    outlier_detection: {{consecutive_5xx: 5, interval: 0.5s, base_ejection_time: 4s, max_ejection_percent: 100}}\n    circuit_breakers: {{thresholds: [{{max_retries: 1000}}]}}\n    load_assignment:\n      cluster_name: pay\n      endpoints:\n{eps}"
    )
}

/// Sends `n` requests from 16 tasks; returns status counts and hits by upstream name.
async fn burst(addr: SocketAddr, n: usize) -> (usize, HashMap<String, usize>) {
    let per = n / 16;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut failed = 0;
                let mut by: HashMap<String, usize> = HashMap::new();
                for _ in 0..per {
                    let (s, h, _) = get(addr, "/pay", &[]).await.unwrap();
                    if s != 200 {
                        failed += 1;
                    }
                    *by.entry(h.get("x-upstream").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default())
                        .or_default() += 1;
                }
                (failed, by)
            })
        })
        .collect();
    let mut failed = 0;
    let mut by: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let (f, b) = t.await.unwrap();
        failed += f;
        for (k, v) in b {
            *by.entry(k).or_default() += v;
        }
    }
    (failed, by)
}

fn share(by: &HashMap<String, usize>, prefix: &str) -> f64 {
    let total: usize = by.values().sum();
    100.0 * by.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum::<usize>() as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failures_fail_over_in_priority_order_and_traffic_returns() {
    let flags: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let names = ["local-1", "local-2", "local-3"];
    let mut local = Vec::new();
    for (i, n) in names.iter().enumerate() {
        local.push(Upstream::start(n, Behaviour { failing: Some(flags[i].clone()), ..Default::default() }).await);
    }
    let near = [
        Upstream::start("near-1", Behaviour::default()).await,
        Upstream::start("near-2", Behaviour::default()).await,
        Upstream::start("near-3", Behaviour::default()).await,
    ];
    let far = [
        Upstream::start("far-1", Behaviour::default()).await,
        Upstream::start("far-2", Behaviour::default()).await,
        Upstream::start("far-3", Behaviour::default()).await,
    ];
    let c = cluster(&[
        ("cn-beijing", "cn-beijing-a", 0, local.iter().map(|u| u.addr).collect()),
        ("cn-beijing", "cn-beijing-b", 1, near.iter().map(|u| u.addr).collect()),
        ("cn-hangzhou", "cn-hangzhou-a", 2, far.iter().map(|u| u.addr).collect()),
    ]);
    let retry = ", timeout: 10s, retry_policy: {retry_on: \"5xx\", num_retries: 20, retry_back_off: {base_interval: 0.002s, max_interval: 0.01s}, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], host_selection_retry_max_attempts: 5}";
    let routes = format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: pay{retry}}}");
    let yaml = bootstrap(&[http_listener("ingress", &routes, "")], &[c]);
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("ingress");

    // Healthy: everything stays in the own zone.
    let (failed, by) = burst(addr, 2000).await;
    assert_eq!(failed, 0);
    assert_eq!(share(&by, "local"), 100.0, "{by:?}");

    // One of three local hosts fails: it is ejected after 5 failures (retried, unseen);
    // then P0 availability is 140·2/3 → 93, so P0 93 % and P1 7 % (Envoy's formula).
    flags[0].store(true, Ordering::Relaxed);
    let (failed, _) = burst(addr, 160).await;
    assert_eq!(failed, 0, "retries hide the failures while the host is ejected");
    tests::eventually(Duration::from_secs(5), || {
        (proxy.metric("envoy_cluster_outlier_detection_ejections_active", "pay") == 1.0).then_some(())
    })
    .await;
    let (failed, by) = burst(addr, 2000).await;
    assert_eq!(failed, 0);
    let (p0, p1, p2) = (share(&by, "local"), share(&by, "near"), share(&by, "far"));
    assert!((90.0..=96.0).contains(&p0) && (4.0..=10.0).contains(&p1) && p2 == 0.0, "P0 {p0} P1 {p1} P2 {p2}: {by:?}");
    assert_eq!(by.get("local-1"), None, "the ejected host gets nothing");

    // The whole zone fails: traffic moves to the same-region zone (P1), not the far region.
    // (Retries are many and concurrent here: `max_retries` is raised so the retry circuit
    // breaker, as in Envoy, does not turn a retriable failure into a client-visible one.)
    for f in &flags {
        f.store(true, Ordering::Relaxed);
    }
    let (failed, _) = burst(addr, 320).await;
    assert_eq!(failed, 0, "no failed requests during the failover");
    tests::eventually(Duration::from_secs(5), || {
        (proxy.metric("envoy_cluster_outlier_detection_ejections_active", "pay") == 3.0).then_some(())
    })
    .await;
    let (failed, by) = burst(addr, 2000).await;
    assert_eq!(failed, 0);
    assert_eq!((share(&by, "near"), share(&by, "far")), (100.0, 0.0), "{by:?}");

    // Recovery: after the ejection time the hosts return and traffic goes home.
    for f in &flags {
        f.store(false, Ordering::Relaxed);
    }
    tests::eventually(Duration::from_secs(15), || {
        (proxy.metric("envoy_cluster_outlier_detection_ejections_active", "pay") == 0.0).then_some(())
    })
    .await;
    let (failed, by) = burst(addr, 2000).await;
    assert_eq!(failed, 0);
    assert_eq!(share(&by, "local"), 100.0, "{by:?}");
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains("::priority::2"), "{clusters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_side_failover_list_from_cluster_metadata_picks_the_preferred_region() {
    // A plain control plane: every endpoint at priority 0; the cluster carries Istio's
    // localityLbSetting. The proxy (cn-beijing/cn-beijing-a) computes: own zone P0,
    // cn-hangzhou (the failover target) P1, cn-shanghai P2.
    let fail = Arc::new(AtomicBool::new(false));
    let local = [
        Upstream::start("local-1", Behaviour { failing: Some(fail.clone()), ..Default::default() }).await,
        Upstream::start("local-2", Behaviour { failing: Some(fail.clone()), ..Default::default() }).await,
    ];
    let hz = [Upstream::start("hz-1", Behaviour::default()).await, Upstream::start("hz-2", Behaviour::default()).await];
    let sh = [Upstream::start("sh-1", Behaviour::default()).await, Upstream::start("sh-2", Behaviour::default()).await];
    let c = cluster(&[
        ("cn-shanghai", "cn-shanghai-a", 0, sh.iter().map(|u| u.addr).collect()),
        ("cn-beijing", "cn-beijing-a", 0, local.iter().map(|u| u.addr).collect()),
        ("cn-hangzhou", "cn-hangzhou-a", 0, hz.iter().map(|u| u.addr).collect()),
    ])
    .replace(
        "    load_assignment:",
        "    metadata: {filter_metadata: {isthmus.io/locality_lb: {failover: [{from: cn-beijing, to: cn-hangzhou}]}}}\n    load_assignment:",
    );
    let retry = ", timeout: 10s, retry_policy: {retry_on: \"5xx\", num_retries: 20, retry_back_off: {base_interval: 0.002s, max_interval: 0.01s}, retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], host_selection_retry_max_attempts: 5}";
    let routes = format!("              - match: {{prefix: \"/\"}}\n                route: {{cluster: pay{retry}}}");
    let yaml = bootstrap(&[http_listener("ingress", &routes, "")], &[c]).replace(
        "node: {id: test, cluster: test-client}",
        "node: {id: test, cluster: test-client, locality: {region: cn-beijing, zone: cn-beijing-a}}",
    );
    let proxy = Proxy::start(&yaml);
    let addr = proxy.listener("ingress");
    let (_, by) = burst(addr, 2000).await;
    assert_eq!(share(&by, "local"), 100.0, "{by:?}");
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains(&format!("pay::{}::priority::1", hz[0].addr)), "{clusters}");
    assert!(clusters.contains(&format!("pay::{}::priority::2", sh[0].addr)), "{clusters}");
    fail.store(true, Ordering::Relaxed);
    let (failed, _) = burst(addr, 320).await;
    assert_eq!(failed, 0);
    tests::eventually(Duration::from_secs(5), || {
        (proxy.metric("envoy_cluster_outlier_detection_ejections_active", "pay") == 2.0).then_some(())
    })
    .await;
    let (failed, by) = burst(addr, 2000).await;
    assert_eq!(failed, 0);
    assert_eq!((share(&by, "hz"), share(&by, "sh")), (100.0, 0.0), "{by:?}");
}

fn flat_cluster(hosts: &[SocketAddr], extra: &str) -> String {
    let eps: String = hosts
        .iter()
        .map(|h| {
            format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
                h.port()
            )
        })
        .collect();
    format!("  - name: pay\n    connect_timeout: 1s\n    type: STATIC\n{extra}    load_assignment:\n      cluster_name: pay\n      endpoints:\n      - lb_endpoints:\n{eps}")
}

async fn slow_and_fast() -> (Upstream, [Upstream; 2]) {
    let slow =
        Upstream::start("slow", Behaviour { delay: Some(Duration::from_millis(200)), ..Default::default() }).await;
    (
        slow,
        [Upstream::start("fast-1", Behaviour::default()).await, Upstream::start("fast-2", Behaviour::default()).await],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_starves_a_slow_host() {
    let (slow, fast) = slow_and_fast().await;
    let c = flat_cluster(
        &[slow.addr, fast[0].addr, fast[1].addr],
        "    metadata: {filter_metadata: {isthmus.io/lb: {policy: PEAK_EWMA}}}\n",
    );
    let proxy = Proxy::start(&bootstrap(&[http_listener("ingress", &tests::yaml::route_to("pay", ""), "")], &[c]));
    let (failed, by) = burst(proxy.listener("ingress"), 1600).await;
    assert_eq!(failed, 0);
    assert!(share(&by, "slow") < 5.0, "{by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_detector_ejects_a_crawling_host() {
    let (slow, fast) = slow_and_fast().await;
    let c = flat_cluster(
        &[slow.addr, fast[0].addr, fast[1].addr],
        "    lb_policy: ROUND_ROBIN\n    outlier_detection: {interval: 0.3s, base_ejection_time: 30s, max_ejection_percent: 50}\n    metadata: {filter_metadata: {isthmus.io/outlier: {latency: {factor: 3, intervals: 2}}}}\n",
    );
    let proxy = Proxy::start(&bootstrap(&[http_listener("ingress", &tests::yaml::route_to("pay", ""), "")], &[c]));
    let addr = proxy.listener("ingress");
    for _ in 0..40 {
        burst(addr, 48).await;
        if proxy.metric("envoy_cluster_outlier_detection_ejections_total", "LATENCY") >= 1.0 {
            break;
        }
    }
    assert_eq!(proxy.metric("envoy_cluster_outlier_detection_ejections_total", "LATENCY"), 1.0);
    let (failed, by) = burst(addr, 1600).await;
    assert_eq!(failed, 0);
    assert_eq!(share(&by, "slow"), 0.0, "{by:?}");
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains(&format!("pay::{}::health_flags::/failed_outlier_check", slow.addr)), "{clusters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_http_health_checks_take_a_host_out_and_bring_it_back() {
    let sick = Arc::new(AtomicBool::new(false));
    let a = Upstream::start("a", Behaviour { failing: Some(sick.clone()), ..Default::default() }).await;
    let b = Upstream::start("b", Behaviour::default()).await;
    let c = flat_cluster(
        &[a.addr, b.addr],
        "    lb_policy: ROUND_ROBIN\n    health_checks: [{timeout: 1s, interval: 0.2s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /healthz}}]\n",
    );
    let proxy = Proxy::start(&bootstrap(&[http_listener("ingress", &tests::yaml::route_to("pay", ""), "")], &[c]));
    let addr = proxy.listener("ingress");
    let (_, by) = burst(addr, 400).await;
    assert!(share(&by, "a") > 40.0, "{by:?}");
    sick.store(true, Ordering::Relaxed);
    tests::eventually(Duration::from_secs(5), || {
        proxy
            .admin_get("/clusters")
            .1
            .contains(&format!("pay::{}::health_flags::/failed_active_hc", a.addr))
            .then_some(())
    })
    .await;
    let (failed, by) = burst(addr, 400).await;
    assert_eq!((failed, share(&by, "b")), (0, 100.0), "{by:?}");
    sick.store(false, Ordering::Relaxed);
    tests::eventually(Duration::from_secs(5), || {
        proxy.admin_get("/clusters").1.contains(&format!("pay::{}::health_flags::healthy", a.addr)).then_some(())
    })
    .await;
    let (_, by) = burst(addr, 400).await;
    assert!(share(&by, "a") > 40.0, "{by:?}");
}

/// `successful_active_health_check_uneject_host`: by default a passing active health check
/// returns an outlier-ejected host at once; with `false` the host stays ejected for its whole
/// ejection time (60 s here) however many checks pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_health_checks_uneject_only_when_configured_to() {
    for uneject in [true, false] {
        let a = Upstream::start("a", Behaviour::default()).await;
        let c = flat_cluster(
            &[a.addr],
            &format!(
                "    health_checks: [{{timeout: 1s, interval: 0.1s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {{path: /healthz}}}}]\n    outlier_detection: {{consecutive_5xx: 1, base_ejection_time: 60s, max_ejection_percent: 100, successful_active_health_check_uneject_host: {uneject}}}\n"
            ),
        );
        let proxy = Proxy::start(&bootstrap(&[http_listener("ingress", &tests::yaml::route_to("pay", ""), "")], &[c]));
        let addr = proxy.listener("ingress");
        let (s, _, _) = get(addr, "/pay", &[("x-test-status", "500")]).await.unwrap();
        assert_eq!(s, 500);
        let ejected = format!("pay::{}::health_flags::/failed_outlier_check", a.addr);
        // The ejection is counted: with uneject on, the next passing probe (0.1 s later) may
        // already have returned the host, so its flag is not what is awaited.
        tests::eventually(Duration::from_secs(5), || {
            (proxy.metric("envoy_cluster_outlier_detection_ejections_total", "pay") >= 1.0).then_some(())
        })
        .await;
        // Three more probes answered 200 after the ejection (the upstream counts every request).
        let seen = a.hits();
        tests::eventually(Duration::from_secs(5), || (a.hits() >= seen + 3).then_some(())).await;
        let still = proxy.admin_get("/clusters").1.contains(&ejected);
        assert_eq!(still, !uneject, "uneject_host: {uneject}");
    }
}
