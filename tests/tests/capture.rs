//! Sidecar capture end to end, as root in network namespaces we create (spec
//! capture-injection §5): the real `iptables-init` installs Istio's rules in a pod namespace,
//! the real `isthmus` runs as uid 1337, and an app (uid 1000) and a peer namespace talk
//! through it: outbound capture with original destination, the proxy's own traffic
//! bypassing, inbound capture with passthrough from 127.0.0.6, excluded ports, idempotent
//! re-runs, dry run and cleanup.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Output;

use tests::netns::{Netns, Server};
use tests::proxy::Proxy;

/// `python3 -m http.server` in `ns` as `uid`, serving a file `who` containing `body`.
fn http_server(ns: &Netns, uid: u32, port: u16, body: &str) -> Server {
    http_server_on(ns, uid, "0.0.0.0", port, body)
}

/// Same, bound to `bind`.
fn http_server_on(ns: &Netns, uid: u32, bind: &str, port: u16, body: &str) -> Server {
    ns.http_server(Some(uid), bind, port, body)
}

fn as_uid(ns: &Netns, uid: u32, args: &[&str]) -> Output {
    let u = format!("--reuid={uid}");
    let g = format!("--regid={uid}");
    let mut all = vec!["setpriv", u.as_str(), g.as_str(), "--clear-groups"];
    all.extend_from_slice(args);
    ns.run(&all)
}

fn get(ns: &Netns, uid: u32, url: &str) -> String {
    let out = as_uid(ns, uid, &["curl", "-s", "-m", "5", url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sum of a counter in the proxy's Prometheus output, read from inside the pod namespace.
fn metric(pod: &Netns, name: &str, label: &str) -> f64 {
    let out = pod.run(&["curl", "-s", "http://127.0.0.1:15000/stats/prometheus"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const BOOTSTRAP: &str = r#"
node: {id: "sidecar~10.200.0.2~app-1.default~default.svc.cluster.local", cluster: app.default}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
static_resources:
  listeners:
  - name: virtualOutbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    use_original_dst: true
    filter_chains:
    - name: virtualOutbound-blackhole
      filter_chain_match: {destination_port: 15001}
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster}}]
    default_filter_chain:
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, access_log: [{name: envoy.access_loggers.stdout, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}], stat_prefix: PassthroughCluster, cluster: PassthroughCluster}}]
  - name: virtualInbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
    use_original_dst: true
    filter_chains:
    - name: virtualInbound-blackhole
      filter_chain_match: {destination_port: 15006}
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster}}]
    default_filter_chain:
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, access_log: [{name: envoy.access_loggers.stdout, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}], stat_prefix: InboundPassthroughCluster, cluster: InboundPassthroughCluster}}]
  clusters:
  - {name: PassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 2s}
  - {name: InboundPassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 2s, upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}}
  - {name: BlackHoleCluster, type: STATIC, connect_timeout: 2s}
"#;

/// Istio's injector flags (`-m` given separately).
const FLAGS: [&str; 12] = ["-p", "15001", "-z", "15006", "-u", "1337", "-i", "*", "-b", "*", "-d", "15090,15021,15020"];

/// The access-log line (JSON) for the first connection whose `field` contains `needle`,
/// awaited: the proxy writes it when the connection closes, a moment after curl returns.
async fn access_log(proxy: &Proxy, field: &str, needle: &str) -> serde_json::Value {
    tests::eventually(std::time::Duration::from_secs(10), || {
        proxy.stdout.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v[field].as_str()?.contains(needle).then_some(v)
        })
    })
    .await
}

fn iptables_init(pod: &Netns, extra: &[&str]) -> Output {
    iptables_init_mode(pod, "REDIRECT", extra)
}

fn iptables_init_mode(pod: &Netns, mode: &str, extra: &[&str]) -> Output {
    let bin = tests::bin("iptables-init");
    let mut args = vec![bin.to_str().unwrap(), "-m", mode];
    args.extend(FLAGS);
    args.extend(extra);
    pod.run(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_init_and_the_proxy_capture_a_pods_traffic() {
    let (pod, peer) = Netns::pair("cap");

    // Dry run prints exactly what will be applied, changing nothing.
    let dry = iptables_init(&pod, &["--dry-run"]);
    assert!(dry.status.success());
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    // The golden file is the planner's for Istio's default injection (its first line names
    // the address family; the binary prints bare iptables-restore input).
    let golden = include_str!("../../iptables-init/testdata/default.golden");
    assert_eq!(dry, golden.strip_prefix("# v4\n").unwrap(), "dry run differs from default.golden");
    assert!(!String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).contains("ISTIO"));

    // T6/T7 exclusions: a CIDR the peer also answers on, and a port.
    let excl = ["-x", "10.250.0.0/16", "-o", "8443"];
    let applied = iptables_init(&pod, &excl);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let again = iptables_init(&pod, &excl);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already in place"), "idempotent re-run");
    let save = String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).into_owned();
    assert_eq!(save.matches("-A OUTPUT -j ISTIO_OUTPUT").count(), 1, "{save}");

    let out = peer.run(&["ip", "addr", "add", "10.250.0.1/16", "dev", "v1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _upstream = http_server(&peer, 0, 8080, "peer-upstream");
    let _upstream_tls_port = http_server(&peer, 0, 8443, "peer-8443");
    let _app = http_server(&pod, 1000, 9080, "pod-app");
    let mut prefix = pod.prefix();
    prefix.extend(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"].map(String::from));
    let path = tests::scratch("capture-bootstrap.yaml");
    std::fs::write(&path, BOOTSTRAP).unwrap();
    let proxy = Proxy::start_prefixed_args(BOOTSTRAP, &prefix, &["--readiness-address", "0.0.0.0:15021"]);

    // T1: the app's outbound call is captured, passes through the proxy, reaches the peer.
    assert_eq!(get(&pod, 1000, "http://10.200.0.1:8080/who"), "peer-upstream");
    let pass = || metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"PassthroughCluster\"");
    assert_eq!(pass(), 1.0);
    // ... with the original destination: the proxy dialled exactly what the app asked for.
    let line = access_log(&proxy, "upstream_host", "10.200.0.1:8080").await;
    assert_eq!(line["upstream_cluster"], "PassthroughCluster", "{line}");
    // T4/T5: the proxy's uid is never captured; root is.
    assert_eq!(get(&pod, 1337, "http://10.200.0.1:8080/who"), "peer-upstream");
    assert_eq!(pass(), 1.0);
    assert_eq!(get(&pod, 0, "http://10.200.0.1:8080/who"), "peer-upstream");
    assert_eq!(pass(), 2.0);
    // T6/T7: the excluded CIDR and port go direct.
    assert_eq!(get(&pod, 1000, "http://10.250.0.1:8080/who"), "peer-upstream");
    assert_eq!(get(&pod, 1000, "http://10.200.0.1:8443/who"), "peer-8443");
    assert_eq!(pass(), 2.0, "excluded traffic bypassed the proxy");
    // T8/T9: the app to localhost or to its own pod IP stays direct.
    assert_eq!(get(&pod, 1000, "http://127.0.0.1:9080/who"), "pod-app");
    assert_eq!(get(&pod, 1000, "http://10.200.0.2:9080/who"), "pod-app");
    assert_eq!(pass(), 2.0);
    // T12: inbound from the peer is captured on 15006 and passed to the app from 127.0.0.6.
    let inbound =
        || metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"InboundPassthroughCluster\"");
    assert_eq!(
        String::from_utf8_lossy(&peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:9080/who"]).stdout),
        "pod-app"
    );
    assert_eq!(inbound(), 1.0);
    // ... and the proxy saw the real client address, not a rewritten one.
    let line = access_log(&proxy, "upstream_cluster", "InboundPassthroughCluster").await;
    let client = line["downstream_remote_address"].as_str().unwrap_or_default();
    assert!(client.starts_with("10.200.0.1:"), "{line}");
    assert_eq!(line["upstream_host"], "10.200.0.2:9080", "{line}");
    // T10: the proxy itself calling its own pod IP hairpins into inbound capture.
    assert_eq!(get(&pod, 1337, "http://10.200.0.2:9080/who"), "pod-app");
    assert_eq!(inbound(), 2.0);
    assert_eq!(pass(), 2.0);
    // T13: the readiness port is excluded from inbound capture.
    assert_eq!(
        String::from_utf8_lossy(&peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:15021/healthz/ready"]).stdout),
        "LIVE\n"
    );
    assert_eq!(inbound(), 2.0);

    // Loop guard: the capture port dialled directly is refused and counted.
    assert_eq!(get(&pod, 1000, "http://127.0.0.1:15001/"), "");
    assert_eq!(metric(&pod, "isthmus_downstream_cx_loop_refused", "virtualOutbound"), 1.0);

    // Cleanup removes every trace; traffic is direct again.
    let clean = iptables_init(&pod, &["--cleanup"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(!String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).contains("ISTIO"));
    assert_eq!(get(&pod, 1000, "http://10.200.0.1:8080/who"), "peer-upstream");
    assert_eq!(pass(), 2.0, "no longer captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tproxy_mode_keeps_the_original_destination_on_a_transparent_listener() {
    let (pod, peer) = Netns::pair("tpx");
    let applied = iptables_init_mode(&pod, "TPROXY", &[]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let rules = String::from_utf8_lossy(&pod.run(&["iptables-save", "-t", "mangle"]).stdout).into_owned();
    assert!(rules.contains("TPROXY --on-port 15006"), "{rules}");
    let _app = http_server(&pod, 1000, 9080, "pod-app");
    // Istio's TPROXY mode runs the proxy as uid 0 / gid 1337 (the gid-owner rules exclude it).
    let mut prefix = pod.prefix();
    prefix.extend(["setpriv", "--regid=1337", "--clear-groups"].map(String::from));
    let yaml = BOOTSTRAP.replace(
        "  - name: virtualInbound\n    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}\n",
        "  - name: virtualInbound\n    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}\n    transparent: true\n",
    );
    assert!(yaml.contains("transparent: true"));
    let _proxy = Proxy::start_prefixed_args(&yaml, &prefix, &["--readiness-address", "0.0.0.0:15021"]);
    assert_eq!(
        String::from_utf8_lossy(&peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:9080/who"]).stdout),
        "pod-app"
    );
    assert_eq!(
        metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"InboundPassthroughCluster\""),
        1.0
    );
    let clean = iptables_init_mode(&pod, "TPROXY", &["--cleanup"]);
    assert!(clean.status.success());
}

/// Spec capture-injection §5 bad input: each is refused with exit 1 and a message naming the
/// flag, before anything is written (the pod's tables stay empty).
#[test]
fn bad_flags_exit_1_naming_the_flag_and_write_nothing() {
    let pod = Netns::new("bad");
    let bin = tests::bin("iptables-init");
    let bin = bin.to_str().unwrap();
    for (flags, named) in [
        (vec!["-u", "0"], "-u"),
        (vec!["-u", "1337", "-i", "10.1.0.0/16", "-x", "10.0.0.0/8"], "-x"),
        (vec!["-u", "1337", "-i", "10.96.0.0/12", "-x", "10.96.0.0/12"], "-x"),
        (vec!["-u", "1337", "-x", "10.0.0.0/33"], "-x"),
        (vec!["-u", "1337", "-i", "10.0.0/8"], "-i"),
        (vec!["-u", "1337", "-o", "70000"], "-o"),
        (vec!["-u", "1337", "-b", "80,http"], "-b"),
        (vec!["-u", "1337", "-m", "NAT"], "-m"),
        (vec!["-u", "1337", "--no-such-flag"], "--no-such-flag"),
    ] {
        let mut args = vec![bin, "-p", "15001", "-z", "15006"];
        args.extend(&flags);
        let out = pod.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(named), "{flags:?} should name {named}: {stderr}");
        for save in ["iptables-save", "ip6tables-save"] {
            let rules = String::from_utf8_lossy(&pod.run(&[save]).stdout).into_owned();
            assert!(!rules.contains("ISTIO"), "{flags:?} wrote rules: {rules}");
        }
    }
    // The same flags made valid succeed, so the checks above are about the flags (an exclude
    // strictly inside an include is istio-iptables' carve-out, not an overlap).
    let ok = pod.run(&[bin, "-p", "15001", "-z", "15006", "-u", "1337", "-i", "10.0.0.0/8", "-x", "10.250.0.0/16"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // The logging flags Istio's injector adds (`--log_output_level=default:info`) are accepted.
    let logged = pod.run(&[
        bin,
        "-p",
        "15001",
        "-z",
        "15006",
        "-u",
        "1337",
        "--dry-run",
        "--log_output_level=default:info",
        "--log_as_json",
    ]);
    assert!(logged.status.success(), "{}", String::from_utf8_lossy(&logged.stderr));
    assert!(String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).contains("ISTIO_OUTPUT"));
}

/// T16: IPv6 outbound capture. The pod has a v6 address, so iptables-init also writes the
/// ip6tables rules, and the proxy's `[::]:15001` listener reads `IP6T_SO_ORIGINAL_DST`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_outbound_is_captured_with_its_original_destination() {
    let (pod, peer) = Netns::pair("v6");
    for (ns, dev, addr) in [(&pod, "v0", "fd00:200::2/64"), (&peer, "v1", "fd00:200::1/64")] {
        let out = ns.run(&["ip", "-6", "addr", "add", addr, "dev", dev, "nodad"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = pod.run(&["ip", "-6", "route", "add", "default", "via", "fd00:200::1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let applied = iptables_init(&pod, &[]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let rules = String::from_utf8_lossy(&pod.run(&["ip6tables-save", "-t", "nat"]).stdout).into_owned();
    assert!(rules.contains("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"), "{rules}");

    let _upstream = http_server_on(&peer, 0, "::", 8080, "peer-v6");
    let v6_listener = "  - name: virtualOutbound6\n    address: {socket_address: {address: \"::\", port_value: 15001}}\n    use_original_dst: true\n    default_filter_chain:\n      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: PassthroughCluster, cluster: PassthroughCluster, access_log: [{name: envoy.access_loggers.stdout, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}]}}]\n";
    let yaml = BOOTSTRAP.replace("  clusters:\n", &format!("{v6_listener}  clusters:\n"));
    assert!(yaml.contains("virtualOutbound6"));
    let mut prefix = pod.prefix();
    prefix.extend(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"].map(String::from));
    let proxy = Proxy::start_prefixed_args(&yaml, &prefix, &["--readiness-address", "0.0.0.0:15021"]);

    assert_eq!(get(&pod, 1000, "http://[fd00:200::1]:8080/who"), "peer-v6");
    let line = access_log(&proxy, "upstream_host", "[fd00:200::1]:8080").await;
    assert_eq!(line["upstream_cluster"], "PassthroughCluster", "{line}");
    assert!(line["downstream_local_address"].as_str().unwrap_or_default().starts_with("[fd00:200::1]:8080"), "{line}");
    // The proxy's own v6 traffic bypasses capture: still exactly one captured connection.
    assert_eq!(get(&pod, 1337, "http://[fd00:200::1]:8080/who"), "peer-v6");
    assert_eq!(
        metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"PassthroughCluster\""),
        1.0
    );
}
