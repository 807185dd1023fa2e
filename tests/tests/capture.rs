//! Sidecar capture end to end, as root in network namespaces we create (spec
//! capture-injection §5): the real `iptables-init` installs Istio's rules in a pod namespace,
//! the real `isthmus` runs as uid 1337, and an app (uid 1000) and a peer namespace talk
//! through it: outbound capture with original destination, the proxy's own traffic
//! bypassing, inbound capture with passthrough from 127.0.0.6, excluded ports, idempotent
//! re-runs, dry run and cleanup.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use tests::netns::Netns;
use tests::proxy::Proxy;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server` in `ns` as `uid`, serving a file `who` containing `body`.
fn http_server(ns: &Netns, uid: u32, port: u16, body: &str) -> Server {
    let dir = tests::scratch(body);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("who"), body).unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .args(["/usr/bin/python3", "-u", "-m", "http.server", &port.to_string(), "--bind", "0.0.0.0", "--directory"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("Serving HTTP"), "{line}");
    Server(child)
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
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: PassthroughCluster, cluster: PassthroughCluster}}]
  - name: virtualInbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
    use_original_dst: true
    filter_chains:
    - name: virtualInbound-blackhole
      filter_chain_match: {destination_port: 15006}
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster}}]
    default_filter_chain:
      filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: InboundPassthroughCluster, cluster: InboundPassthroughCluster}}]
  clusters:
  - {name: PassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 2s}
  - {name: InboundPassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 2s, upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}}
  - {name: BlackHoleCluster, type: STATIC, connect_timeout: 2s}
"#;

/// Istio's injector flags (`-m` given separately).
const FLAGS: [&str; 12] = ["-p", "15001", "-z", "15006", "-u", "1337", "-i", "*", "-b", "*", "-d", "15090,15021,15020"];

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
    assert!(dry.contains("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"), "{dry}");
    assert!(!String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).contains("ISTIO"));

    let applied = iptables_init(&pod, &[]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let again = iptables_init(&pod, &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already in place"), "idempotent re-run");
    let save = String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).into_owned();
    assert_eq!(save.matches("-A OUTPUT -j ISTIO_OUTPUT").count(), 1, "{save}");

    let _upstream = http_server(&peer, 0, 8080, "peer-upstream");
    let _app = http_server(&pod, 1000, 9080, "pod-app");
    let mut prefix = pod.prefix();
    prefix.extend(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"].map(String::from));
    let path = tests::scratch("capture-bootstrap.yaml");
    std::fs::write(&path, BOOTSTRAP).unwrap();
    let _proxy = Proxy::start_prefixed_args(BOOTSTRAP, &prefix, &["--readiness-address", "0.0.0.0:15021"]);

    // T1: the app's outbound call is captured, passes through the proxy, reaches the peer.
    assert_eq!(get(&pod, 1000, "http://10.200.0.1:8080/who"), "peer-upstream");
    let pass = || metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"PassthroughCluster\"");
    assert_eq!(pass(), 1.0);
    // T4: the proxy's uid is never captured.
    assert_eq!(get(&pod, 1337, "http://10.200.0.1:8080/who"), "peer-upstream");
    assert_eq!(pass(), 1.0);
    // T8: the app to localhost stays direct.
    assert_eq!(get(&pod, 1000, "http://127.0.0.1:9080/who"), "pod-app");
    assert_eq!(pass(), 1.0);
    // T12: inbound from the peer is captured on 15006 and passed to the app from 127.0.0.6.
    let inbound =
        || metric(&pod, "istio_tcp_connections_opened_total", "destination_service_name=\"InboundPassthroughCluster\"");
    assert_eq!(
        String::from_utf8_lossy(&peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:9080/who"]).stdout),
        "pod-app"
    );
    assert_eq!(inbound(), 1.0);
    // T13: the readiness port is excluded from inbound capture.
    assert_eq!(
        String::from_utf8_lossy(&peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:15021/healthz/ready"]).stdout),
        "LIVE\n"
    );
    assert_eq!(inbound(), 1.0);

    // Loop guard: the capture port dialled directly is refused and counted.
    assert_eq!(get(&pod, 1000, "http://127.0.0.1:15001/"), "");
    assert_eq!(metric(&pod, "isthmus_downstream_cx_loop_refused", "virtualOutbound"), 1.0);

    // Cleanup removes every trace; traffic is direct again.
    let clean = iptables_init(&pod, &["--cleanup"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(!String::from_utf8_lossy(&pod.run(&["iptables-save"]).stdout).contains("ISTIO"));
    assert_eq!(get(&pod, 1000, "http://10.200.0.1:8080/who"), "peer-upstream");
    assert_eq!(pass(), 1.0, "no longer captured");
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
