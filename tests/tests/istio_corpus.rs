//! Real istiod output, side by side with Envoy 1.40: every config dump in
//! `tests/fixtures/istio/` (sidecars, gateways, waypoints of Istio 1.18–1.2x; sources in
//! SOURCES.md) is served over ADS as istiod sent it — with the proxy's own bootstrap as
//! pilot-agent wrote it and pilot-agent's flags — to Envoy, and to Isthmus in SotW and in
//! Delta. Two bars, each ≥ 98 % over the corpus (exceptions printed with their NACK messages
//! and listed in the README):
//! - everything upstream Envoy 1.40 accepts, Isthmus accepts too. Upstream Envoy refuses every
//!   resource that carries one of Istio's own extensions (`istio.metadata_exchange`,
//!   `istio.stats`, peer metadata: only istio-proxy builds have them), so this set is small;
//! - everything the proxy that produced the dump held — every resource in it that a proxy
//!   subscribes to — Isthmus accepts. This is the bar that says istiod can drive it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;

use tests::istio::{self, Plane, TYPES};

#[test]
fn isthmus_accepts_what_envoy_accepts_from_real_istiod_output() {
    let dumps = istio::dumps();
    assert!(dumps.len() >= 3, "the corpus is missing: {dumps:?}");
    let (mut envoy_total, mut kept_sotw, mut kept_delta) = (0usize, 0usize, 0usize);
    let (mut istio_total, mut istio_sotw, mut istio_delta) = (0usize, 0usize, 0usize);
    let mut report = String::new();
    for path in &dumps {
        let c = istio::corpus(path);
        let served: usize = c.resources.values().map(Vec::len).sum();
        let envoy = istio::run(&c, Plane::Envoy, false, &|_| {});
        let sotw = istio::run(&c, Plane::Isthmus, false, &|_| {});
        let delta = istio::run(&c, Plane::Isthmus, true, &|_| {});
        for t in TYPES {
            // Only what was served counts (Envoy also lists the endpoints of CDS-delivered
            // STATIC clusters among its EDS configs).
            let names: BTreeSet<String> = c
                .resources
                .get(t)
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    r.get(if t == istio::EDS { "cluster_name" } else { "name" })
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .collect();
            let e = &envoy.accepted[t].intersection(&names).cloned().collect::<BTreeSet<_>>();
            let missing = |o: &istio::Outcome| e.difference(&o.accepted[t]).cloned().collect::<BTreeSet<_>>();
            let (ms, md) = (missing(&sotw), missing(&delta));
            envoy_total += e.len();
            kept_sotw += e.len() - ms.len();
            kept_delta += e.len() - md.len();
            // Ground truth: what istio-proxy held (every served name some run subscribed to).
            let wanted: BTreeSet<String> = [&envoy, &sotw, &delta]
                .iter()
                .flat_map(|o| o.pushed.get(t).into_iter().flatten().cloned())
                .filter(|n| names.contains(n))
                .collect();
            istio_total += wanted.len();
            istio_sotw += wanted.intersection(&sotw.accepted[t]).count();
            istio_delta += wanted.intersection(&delta.accepted[t]).count();
            let short = |o: &istio::Outcome| wanted.difference(&o.accepted[t]).cloned().collect::<BTreeSet<_>>();
            let (ws, wd) = (short(&sotw), short(&delta));
            if !ws.is_empty() || !wd.is_empty() {
                report.push_str(&format!(
                    "{} {}: istio-proxy held, Isthmus refused: sotw {ws:?} delta {wd:?}\n",
                    c.name,
                    istio::short_type(t)
                ));
            }
            if !ms.is_empty() || !md.is_empty() {
                report.push_str(&format!(
                    "{} {}: Envoy accepts, Isthmus does not: sotw {ms:?} delta {md:?}\n",
                    c.name,
                    istio::short_type(t)
                ));
            }
        }
        report.push_str(&format!(
            "{}: served {served}; Envoy accepted {}, Isthmus {} (sotw) / {} (delta)\n",
            c.name,
            envoy.accepted.values().map(BTreeSet::len).sum::<usize>(),
            sotw.accepted.values().map(BTreeSet::len).sum::<usize>(),
            delta.accepted.values().map(BTreeSet::len).sum::<usize>(),
        ));
        for n in sotw.nacks.iter().collect::<BTreeSet<_>>() {
            report.push_str(&format!("  isthmus NACK: {n}\n"));
        }
        for n in envoy.nacks.iter().collect::<BTreeSet<_>>() {
            report.push_str(&format!("  envoy NACK: {}\n", n.chars().take(300).collect::<String>()));
        }
    }
    eprintln!("{report}");
    eprintln!("corpus: Envoy 1.40 accepted {envoy_total}; Isthmus kept {kept_sotw} (sotw), {kept_delta} (delta)");
    eprintln!("corpus: istio-proxy held {istio_total}; Isthmus accepted {istio_sotw} (sotw), {istio_delta} (delta)");
    assert!(istio_total > 100, "too small a corpus to judge: {istio_total}\n{report}");
    for kept in [kept_sotw, kept_delta] {
        assert!(
            kept * 100 >= envoy_total * 98,
            "Isthmus accepts {kept} of the {envoy_total} resources Envoy accepts:\n{report}"
        );
    }
    for kept in [istio_sotw, istio_delta] {
        assert!(
            kept * 100 >= istio_total * 98,
            "Isthmus accepts {kept} of the {istio_total} resources istio-proxy held:\n{report}"
        );
    }
}

const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const SIDECAR: &str = "sidecar_hello-openshift_ossm2.6_istio-1.20.8.json";
const HELLO: &str = "outbound|8080||hello-openshift.vanilla-playground.svc.cluster.local";
/// Istio's default injection flags for iptables-init.
const CAPTURE: [&str; 12] =
    ["-p", "15001", "-z", "15006", "-u", "1337", "-i", "*", "-b", "*", "-d", "15090,15021,15020"];

/// The real sidecar config, under real capture: iptables-init in a pod namespace, the proxy as
/// uid 1337 with pilot-agent's bootstrap and flags, certificates over SDS (`default`,
/// `ROOTCA`, made per test). Only the endpoints of the service the app calls are pointed at
/// the peer namespace (the dump's are pod IPs of another cluster).
#[test]
fn sidecar_from_a_real_dump_serves_outbound_by_host_and_port_and_inbound_mtls_and_plaintext() {
    use tests::netns::Netns;
    use tests::pki::{spiffe, MeshPki};
    let mut c = istio::corpus(&tests::repo_root().join("tests/fixtures/istio").join(SIDECAR));
    let eds = c.resources.get_mut(istio::EDS).unwrap();
    eds.retain(|a| a["cluster_name"] != HELLO);
    // As istiod writes it: a locality with a weight (the cluster uses locality-weighted LB,
    // under which an unweighted locality takes no traffic, in Envoy as here).
    eds.push(serde_json::json!({"@type": istio::EDS, "cluster_name": HELLO, "endpoints": [{
        "locality": {"region": "eu-west-1", "zone": "eu-west-1c"}, "load_balancing_weight": 1,
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.200.0.1", "port_value": 18080}}},
            "health_status": "HEALTHY", "load_balancing_weight": 1}]}]}));
    let pki = MeshPki::new("corpus");
    let server = pki.leaf("cluster1", &spiffe("vanilla-playground", "hello-openshift"), &[]);
    let client = pki.leaf("cluster1", &spiffe("vanilla-playground", "curl-test"), &[]);
    let secrets = vec![
        serde_json::json!({"@type": SDS, "name": "default", "tls_certificate": {
            "certificate_chain": {"inline_string": server.chain_pem}, "private_key": {"inline_string": server.key_pem}}}),
        serde_json::json!({"@type": SDS, "name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": pki.root_pem}}}),
    ];
    let (pod, peer) = Netns::pair("crp");
    let bin = tests::bin("iptables-init");
    let mut args = vec![bin.to_str().unwrap()];
    args.extend(CAPTURE);
    let applied = pod.run(&args);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let _app = pod.http_server(Some(1000), "0.0.0.0", 8080, "pod-app");
    let _hello = peer.http_server(Some(0), "10.200.0.1", 18080, "hello-openshift");

    let socket = tests::scratch("crp.sock");
    let mut cp = tests::xds_server::AdsServer::start_args(&[
        "--unix".into(),
        socket.display().to_string(),
        "--all-types".into(),
    ]);
    // The proxy runs as uid 1337 (as injected): let it connect, as the agent's socket allows.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    for t in TYPES {
        cp.set(t, "corpus-1", c.resources.get(t).cloned().unwrap_or_default());
    }
    cp.set(SDS, "corpus-1", secrets);
    let cfg = tests::scratch("crp-bootstrap.json");
    std::fs::write(&cfg, istio::bootstrap(&c, &socket, false)).unwrap();
    let mut prefix = pod.prefix();
    prefix.extend(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"].map(String::from));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut flags: Vec<&str> = vec!["-l", "info"];
    flags.extend(istio::AGENT_FLAGS.iter().copied().filter(|f| *f != "--concurrency" && *f != "2"));
    let _proxy = tests::proxy::Proxy::start_prefixed_args(&text, &prefix, &flags[2..]);
    assert!(!cp.seen.iter().any(|e| e["event"] == "request" && e["nack"] == true), "a NACK: {:?}", cp.seen);

    // Outbound: the app calls a service VIP with `Host: name:port`; the route table lists the
    // bare name and sets ignore_port_in_host_matching, as istiod does.
    let out = pod.run(&[
        "setpriv",
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        "curl",
        "-s",
        "-m",
        "5",
        "-H",
        "Host: hello-openshift.vanilla-playground.svc.cluster.local:80",
        "http://10.96.0.99:80/",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-openshift", "{}", String::from_utf8_lossy(&out.stderr));

    // Inbound plaintext (PERMISSIVE): a peer without a sidecar.
    let out = peer.run(&["curl", "-s", "-m", "5", "http://10.200.0.2:8080/who"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pod-app");

    // Inbound mTLS with Istio's ALPN list, as a client sidecar offers it (`istio-http/1.1`,
    // `istio`, `http/1.1`): its SPIFFE certificate from the shared root, checked against
    // ROOTCA; the 8080 mTLS HTTP chain is chosen by the offer and negotiates `http/1.1`.
    let script = format!(
        "import ssl,socket\nctx=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\nctx.check_hostname=False\nctx.load_verify_locations('{root}')\nctx.load_cert_chain('{chain}','{key}')\nctx.set_alpn_protocols(['istio-http/1.1','istio','http/1.1'])\ns=ctx.wrap_socket(socket.create_connection(('10.200.0.2',8080),timeout=5))\ns.sendall(b'GET /who HTTP/1.1\\r\\nHost: hello\\r\\nConnection: close\\r\\n\\r\\n')\nd=b''\nwhile True:\n  b=s.recv(65536)\n  if not b: break\n  d+=b\nprint(s.selected_alpn_protocol())\nprint(d.decode(errors='replace'))\n",
        root = pki.root.display(), chain = client.chain.display(), key = client.key.display());
    let py = tests::python();
    let out = peer.run(&[py.to_str().unwrap(), "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("http/1.1\nHTTP/1.1 200"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.ends_with("pod-app\n"), "{text}");

    // Istio's standard metrics, labelled as istio-proxy labels them (from the node metadata
    // pilot-agent wrote, the peer's SPIFFE certificate and the cluster name).
    let stats = String::from_utf8_lossy(&pod.run(&["curl", "-s", "http://127.0.0.1:15000/stats/prometheus"]).stdout)
        .into_owned();
    let series = |parts: &[&str]| -> Vec<String> {
        stats
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{") && parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .collect()
    };
    let outbound = series(&[
        "reporter=\"source\"",
        "source_workload=\"hello-openshift\"",
        "source_workload_namespace=\"vanilla-playground\"",
        "source_principal=\"spiffe://cluster.local/ns/vanilla-playground/sa/default\"",
        "source_canonical_service=\"hello-openshift\"",
        "source_canonical_revision=\"latest\"",
        "source_cluster=\"Kubernetes\"",
        "destination_service=\"hello-openshift.vanilla-playground.svc.cluster.local\"",
        "destination_service_name=\"hello-openshift\"",
        "destination_service_namespace=\"vanilla-playground\"",
        "response_code=\"200\"",
    ]);
    assert_eq!(outbound.len(), 1, "{stats}");
    let mtls = series(&[
        "reporter=\"destination\"",
        "source_principal=\"spiffe://cluster.local/ns/vanilla-playground/sa/curl-test\"",
        "source_workload_namespace=\"vanilla-playground\"",
        "destination_workload=\"hello-openshift\"",
        "destination_principal=\"spiffe://cluster.local/ns/vanilla-playground/sa/default\"",
        "connection_security_policy=\"mutual_tls\"",
    ]);
    assert_eq!(mtls.len(), 1, "{stats}");
    let plain =
        series(&["reporter=\"destination\"", "source_principal=\"unknown\"", "connection_security_policy=\"none\""]);
    assert_eq!(plain.len(), 1, "{stats}");
}
