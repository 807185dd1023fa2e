//! The command line and config loading: `--mode validate` over every example, bad files
//! rejected with the field path, a busy port, `--config-yaml` merging.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tests::proxy::{run, Proxy};
use tests::upstream::{get, Behaviour, Upstream};
use tests::yaml::{bootstrap, cluster, http_listener, route_to};

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(tests::repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn validate_accepts_every_example() {
    let files = yaml_files("examples");
    assert!(files.len() >= 4);
    for f in files {
        let out = run(&["--mode", "validate", "-c", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

#[test]
fn validate_rejects_every_bad_example_with_the_expected_message() {
    let files = yaml_files("examples/bad");
    assert!(files.len() >= 8);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line names the expected error");
        let out = run(&["--mode", "validate", "-c", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", f.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{}:\n expected {expect:?}\n got {err}", f.display());
        assert!(err.contains(f.to_str().unwrap()), "the message names the file: {err}");
    }
}

#[test]
fn a_missing_file_and_no_config_fail_clearly() {
    let out = run(&["-c", "/nonexistent/isthmus.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/isthmus.yaml"));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-c <file>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_port_fails_start_up_naming_listener_and_address() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let up = Upstream::start("a", Behaviour::default()).await;
    let yaml = bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[cluster("web", &[up.addr], "")])
        .replacen("port_value: 0}}\n    filter_chains", &format!("port_value: {port}}}}}\n    filter_chains"), 1);
    assert!(yaml.contains(&format!("port_value: {port}")));
    let path = tests::scratch("busy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run(&["-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("listener \"ingress\": cannot bind 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("in use"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_yaml_merges_over_the_file() {
    let up = Upstream::start("merged", Behaviour::default()).await;
    // The file has the listener; the cluster comes from --config-yaml (lists append).
    let file = bootstrap(&[http_listener("ingress", &route_to("web", ""), "")], &[]).replace("  clusters:\n\n", "");
    let extra = format!(
        "static_resources: {{clusters: [{{name: web, connect_timeout: 1s, load_assignment: {{cluster_name: web, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}}}]}}",
        up.addr.port()
    );
    let proxy = Proxy::start_with(&file, &["--config-yaml", &extra, "--service-node", "n1"]);
    let (s, h, _) = get(proxy.listener("ingress"), "/", &[]).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(h["x-upstream"], "merged");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_pages() {
    let up = Upstream::start("a", Behaviour::default()).await;
    let proxy = Proxy::start(&bootstrap(
        &[http_listener("ingress", &route_to("web", ""), "")],
        &[cluster("web", &[up.addr], "")],
    ));
    assert_eq!(proxy.admin_get("/ready"), (200, "LIVE\n".to_string()));
    let (s, dump) = proxy.admin_get("/config_dump");
    assert_eq!(s, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    // Envoy's order and shape (envoy.admin.v3.ConfigDump): bootstrap, clusters, listeners, …
    assert_eq!(dump["configs"][1]["@type"], "type.googleapis.com/envoy.admin.v3.ClustersConfigDump");
    assert_eq!(dump["configs"][1]["static_clusters"][0]["cluster"]["name"], "web");
    assert_eq!(dump["configs"][2]["static_listeners"][0]["listener"]["name"], "ingress");
    assert_eq!(
        dump["configs"][2]["static_listeners"][0]["listener"]["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains(&format!("web::{}::health_flags::healthy", up.addr)), "{clusters}");
    get(proxy.listener("ingress"), "/", &[]).await.unwrap();
    let (_, clusters) = proxy.admin_get("/clusters");
    assert!(clusters.contains(&format!("web::{}::rq_total::1", up.addr)), "{clusters}");
    assert_eq!(proxy.admin_get("/logging?level=debug").0, 200);
    assert_eq!(proxy.admin_get("/logging?level=loud").0, 400);
    let (_, prom) = proxy.admin_get("/stats/prometheus");
    assert!(prom.contains("# TYPE istio_requests_total counter"), "{prom}");
    assert!(prom.contains("istio_request_duration_milliseconds_bucket"), "{prom}");
    assert!(prom.contains("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"web\"} 1"), "{prom}");
    // Upstream connections are pooled per worker thread, as Envoy's: ten more sequential
    // requests mostly reuse them. (A request task that moves to the other worker mid-way gives
    // its connection back to that worker's pool, so under load a few more may be opened than
    // there are workers; never one per request.)
    for _ in 0..10 {
        assert_eq!(get(proxy.listener("ingress"), "/", &[]).await.unwrap().0, 200);
    }
    let cx = proxy.metric("envoy_cluster_upstream_cx_total", "web");
    assert!(cx <= 6.0, "{cx} upstream connections for 11 sequential requests");
    assert_eq!(proxy.metric("envoy_cluster_upstream_rq_total", "web"), 11.0);
}

#[test]
fn pilot_agent_flags_are_accepted_and_unknown_static_fields_tolerated_on_request() {
    let path = tests::scratch("unknown.yaml");
    std::fs::write(
        &path,
        "static_resources:\n  clusters:\n  - name: a\n    connect_timeout: 1s\n    some_future_field: 1\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = run(&["-c", p, "--mode", "validate"]);
    assert_eq!(out.status.code(), Some(1), "unknown fields are refused by default");
    // pilot-agent's flags (the same list the Istio tests start both proxies with).
    let mut args = vec!["-c", p, "--mode", "validate"];
    args.extend_from_slice(tests::istio::AGENT_FLAGS);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
