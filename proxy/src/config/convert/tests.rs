//! Conversion cases: Envoy's defaults, and the refusals that name their field.

use std::time::Duration;

use crate::config::listener::NetworkFilter;
use crate::config::load;
use crate::config::route::RouteAction;
use crate::config::{Bootstrap, ConfigError};

fn convert(yaml: &str) -> Result<Bootstrap, ConfigError> {
    load::from_value(load::parse(yaml, "t")?, "t")
}

fn err(yaml: &str) -> String {
    convert(yaml).unwrap_err().to_string()
}

const CLUSTER: &str = "  clusters:\n  - name: c\n    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}\n";

fn http(route: &str, filters: &str) -> String {
    format!(
        "static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: s\n          route_config: {{virtual_hosts: [{{name: v, domains: [\"*\"], routes: [{route}]}}]}}\n          http_filters: {filters}\n{CLUSTER}"
    )
}

const ROUTER: &str =
    "[{name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";

fn first_route(b: &Bootstrap) -> crate::config::route::Route {
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let crate::config::listener::RouteSource::Inline(rc) = &h.routes else { panic!("not inline") };
    rc.virtual_hosts[0].routes[0].clone()
}

#[test]
fn route_defaults_follow_envoy() {
    let b = convert(&http("{match: {prefix: /}, route: {cluster: c, retry_policy: {retry_on: 5xx}}}", ROUTER)).unwrap();
    let RouteAction::Forward(f) = first_route(&b).action else { panic!("not forward") };
    assert_eq!(f.timeout, Some(Duration::from_secs(15)));
    let r = f.retry_policy.unwrap();
    assert_eq!(
        (r.num_retries, r.base_interval, r.max_interval),
        (1, Duration::from_millis(25), Duration::from_millis(250))
    );
    assert!(r.on.server_error && !r.on.gateway_error);
    let b = convert(&http("{match: {prefix: /}, route: {cluster: c, timeout: 0s}}", ROUTER)).unwrap();
    let RouteAction::Forward(f) = first_route(&b).action else { panic!("not forward") };
    assert_eq!(f.timeout, None, "0s disables the route timeout");
}

#[test]
fn cluster_defaults_follow_envoy() {
    let b = convert(&format!("static_resources:\n{CLUSTER}")).unwrap();
    let c = &b.clusters[0];
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.policy.overprovisioning_factor, 140);
    assert_eq!(c.healthy_panic_threshold, 50.0);
    assert_eq!((c.circuit_breakers.max_connections, c.circuit_breakers.max_retries), (1024, 3));
}

#[test]
fn http_filter_rules() {
    let lua_then_router = "[{name: envoy.filters.http.lua}, {name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";
    assert!(err(&http("{match: {prefix: /}, route: {cluster: c}}", lua_then_router)).contains("envoy.filters.http.lua"));
    let optional =
        lua_then_router.replace("{name: envoy.filters.http.lua}", "{name: envoy.filters.http.lua, is_optional: true}");
    convert(&http("{match: {prefix: /}, route: {cluster: c}}", &optional)).unwrap();
    let e = err(&http("{match: {prefix: /}, route: {cluster: c}}", "[]"));
    assert!(e.contains("http_filters: envoy.filters.http.router is required"), "{e}");
}

#[test]
fn cluster_refusals_name_the_field() {
    let dup = format!("static_resources:\n{CLUSTER}{}", CLUSTER.trim_start_matches("  clusters:\n"));
    assert!(err(&dup).contains("clusters[1] \"c\".name: duplicate cluster name"));
    let name_in_static = CLUSTER.replace("address: 127.0.0.1", "address: db.internal");
    let e = err(&format!("static_resources:\n{name_in_static}"));
    assert!(e.contains("\"db.internal\" is not an IP address; use STRICT_DNS or LOGICAL_DNS"), "{e}");
    let ring = CLUSTER.replace("  - name: c\n", "  - name: c\n    lb_policy: RING_HASH\n    ring_hash_lb_config: {minimum_ring_size: 9, maximum_ring_size: 8}\n");
    assert!(err(&format!("static_resources:\n{ring}")).contains("ring_hash_lb_config: ring sizes 9..8 are invalid"));
    let tls = CLUSTER.replace("  - name: c\n", "  - name: c\n    transport_socket: {name: tls}\n");
    assert!(err(&format!("static_resources:\n{tls}"))
        .contains("clusters[0] \"c\".transport_socket.typed_config: is required"));
}

#[test]
fn a_chain_with_a_non_terminal_filter_is_refused() {
    let tcp = "{name: t, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}";
    let y = format!("static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains: [{{filters: [{tcp}, {tcp}]}}]\n{CLUSTER}");
    assert!(
        err(&y).contains("filters[0] \"t\": network filter t is not supported (before the terminal filter"),
        "{}",
        err(&y)
    );
}

#[test]
fn config_yaml_merges_objects_and_appends_lists() {
    let file = std::env::temp_dir().join(format!("isthmus-merge-{}.yaml", std::process::id()));
    std::fs::write(&file, format!("node: {{id: a, cluster: x}}\nstatic_resources:\n{CLUSTER}")).unwrap();
    let extra = CLUSTER.replace("name: c", "name: d").replace("cluster_name: c", "cluster_name: d");
    let b = load::load(Some(&file), Some(&format!("node: {{id: b}}\nstatic_resources:\n{extra}"))).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!((b.node.id.as_str(), b.node.cluster.as_str()), ("b", "x"));
    assert_eq!(b.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["c", "d"]);
}

/// The fields the endpoint path refuses by hand (instead of the reflective check) are still
/// refused, each at its path.
#[test]
fn endpoint_fields_refused_by_hand_name_their_path() {
    let ep = |extra_ep: &str, extra_addr: &str, extra_le: &str| {
        format!(
            "static_resources:\n  clusters:\n  - name: c\n    load_assignment: {{cluster_name: c, endpoints: [{{{extra_le}lb_endpoints: [{{endpoint: {{{extra_ep}address: {{socket_address: {{{extra_addr}address: 127.0.0.1, port_value: 1}}}}}}}}]}}]}}\n"
        )
    };
    let e =
        err(&ep("additional_addresses: [{address: {socket_address: {address: 127.0.0.2, port_value: 1}}}], ", "", ""));
    assert!(e.contains("lb_endpoints[0].endpoint.additional_addresses: is not supported"), "{e}");
    let e = err(&ep("", "network_namespace_filepath: /var/run/netns/x, ", ""));
    assert!(e.contains("socket_address.network_namespace_filepath: is not supported"), "{e}");
    let e = err(&ep("", "", "leds_cluster_locality_config: {leds_collection_name: x}, "));
    assert!(
        e.contains("endpoints[0]: load_balancer_endpoints / leds_cluster_locality_config are not supported"),
        "{e}"
    );
    let e = err(&ep("", "named_port: http, ", "")
        .replace("port_value: 1", "address: 127.0.0.1")
        .replace("address: 127.0.0.1, address: 127.0.0.1", "address: 127.0.0.1"));
    assert!(e.contains("named_port"), "{e}");
}

/// Istio's 15006 sends `listener_filters_timeout: 0s`: Envoy reads it as no limit.
#[test]
fn zero_listener_filters_timeout_means_no_limit() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER).replace(
        "    filter_chains:\n",
        "    listener_filters_timeout: 0s\n    continue_on_listener_filters_timeout: true\n    filter_chains:\n",
    );
    assert_eq!(convert(&yaml).unwrap().listeners[0].inspect_timeout, None);
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER);
    assert_eq!(convert(&yaml).unwrap().listeners[0].inspect_timeout, Some(Duration::from_secs(15)));
}

/// A VirtualService fault arrives as per-route filter config (istiod's shape: MILLION
/// denominator); it is converted onto the route. Per-route config of a type no Isthmus filter
/// reads is refused with its key, never served as if applied; so are a malformed percentage
/// and an RBAC rule on metadata, each with the field path.
#[test]
fn per_route_filter_config_converts_or_is_refused_by_path() {
    let fault = "{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {envoy.filters.http.fault: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, abort: {http_status: 503, percentage: {numerator: 500000, denominator: MILLION}}}}}";
    let b = convert(&http(fault, ROUTER)).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let crate::config::listener::RouteSource::Inline(rc) = &h.routes else { panic!("inline routes") };
    let Some(crate::config::filters::RouteFilterConfig::Fault(f)) =
        rc.virtual_hosts[0].routes[0].per_filter.get("envoy.filters.http.fault")
    else {
        panic!("fault override")
    };
    let a = f.abort.clone().unwrap();
    assert_eq!(a.percentage, crate::config::filters::Fraction { numerator: 500_000, denominator: 1_000_000 });
    assert_eq!(a.source, crate::config::filters::fault::AbortSource::Http(http::StatusCode::SERVICE_UNAVAILABLE));

    let bad_denominator = fault.replace("MILLION", "7");
    let e = err(&http(&bad_denominator, ROUTER));
    assert!(
        e.contains("routes[0].typed_per_filter_config[\"envoy.filters.http.fault\"].abort.percentage.denominator"),
        "{e}"
    );

    let other = "{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {envoy.filters.http.ext_authz: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}";
    let e = err(&http(other, ROUTER));
    assert!(
        e.contains("typed_per_filter_config[\"envoy.filters.http.ext_authz\"]")
            && e.contains("never silently unapplied"),
        "{e}"
    );

    let rbac = "{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {envoy.filters.http.rbac: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute, rbac: {rules: {policies: {jwt: {permissions: [{any: true}], principals: [{metadata: {filter: envoy.filters.http.jwt_authn, path: [{key: p}], value: {present_match: true}}}]}}}}}}}";
    let e = err(&http(rbac, ROUTER));
    assert!(e.contains("rbac.rules.policies[\"jwt\"].principals[0].metadata: is not supported"), "{e}");
}

/// istiod's HCM extras: tracing is kept (not acted on), the UUID request-id extension is
/// read, an unknown tracer is refused by name.
#[test]
fn hcm_tracing_and_request_id_as_istiod_sends_them() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER).replace(
        "          stat_prefix: s\n",
        "          stat_prefix: s\n          tracing: {client_sampling: {value: 100}, random_sampling: {value: 1}, overall_sampling: {value: 100}}\n          request_id_extension: {typed_config: {\"@type\": type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig, use_request_id_for_trace_sampling: true}}\n",
    );
    let b = convert(&yaml).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let t = h.tracing.clone().unwrap();
    assert_eq!((t.random_sampling, t.client_sampling, t.provider), (1.0, 100.0, None));
    assert!(h.request_id.pack_trace_reason && h.request_id.use_request_id_for_trace_sampling);
    let bad = yaml.replace(
        "overall_sampling: {value: 100}}",
        "overall_sampling: {value: 100}, provider: {name: envoy.tracers.datadog}}",
    );
    let e = err(&bad);
    assert!(e.contains("tracing.provider") && e.contains("envoy.tracers.datadog"), "{e}");
    // OpenTelemetry: OTLP over gRPC to an Envoy cluster; other exporters are refused by path.
    let otel = |cfg: &str| {
        yaml.replace(
            "overall_sampling: {value: 100}}",
            &format!("overall_sampling: {{value: 100}}, provider: {{name: envoy.tracers.opentelemetry, typed_config: {{\"@type\": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig{cfg}}}}}}}"),
        )
    };
    let e = err(&otel(""));
    assert!(e.contains("tracing.provider.typed_config.grpc_service") && e.contains("is required"), "{e}");
    let e = err(&otel(", http_service: {}"));
    assert!(e.contains("http_service"), "{e}");
    let b = convert(&otel(", grpc_service: {envoy_grpc: {cluster_name: otel}}")).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let Some(crate::config::listener::Tracer::OpenTelemetry(o)) =
        h.tracing.as_ref().and_then(|t| t.provider.as_deref())
    else {
        panic!("opentelemetry")
    };
    assert_eq!(
        (o.cluster.as_str(), o.service_name.as_str(), o.max_cache_size),
        ("otel", "unknown_service:envoy", 1024)
    );
    let zipkin = |extra: &str| {
        yaml.replace(
            "overall_sampling: {value: 100}}",
            &format!("overall_sampling: {{value: 100}}, provider: {{name: envoy.tracers.zipkin, typed_config: {{\"@type\": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: z, collector_endpoint: /api/v2/spans{extra}}}}}}}"),
        )
    };
    let e = err(&zipkin(""));
    assert!(e.contains("collector_endpoint_version") && e.contains("HTTP_JSON"), "{e}");
    let b = convert(&zipkin(", collector_endpoint_version: HTTP_JSON")).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let Some(crate::config::listener::Tracer::Zipkin(z)) = h.tracing.as_ref().and_then(|t| t.provider.as_deref())
    else {
        panic!("zipkin")
    };
    assert_eq!((z.collector_hostname.as_str(), z.shared_span_context, z.trace_id_128bit), ("z", true, false));
}

/// istiod's HCM filters (fault and CORS, empty) join the policy chain in order; a
/// configured listener-level fault is converted; a bad one is refused with its path.
#[test]
fn listener_fault_and_cors_join_the_chain() {
    let empty = "[{name: envoy.filters.http.fault, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}, {name: envoy.filters.http.cors, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}}, {name: r, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]";
    let b = convert(&http("{match: {prefix: /}, route: {cluster: c}}", empty)).unwrap();
    let NetworkFilter::Http(h) = &b.listeners[0].filter_chains[0].filter else { panic!("not http") };
    let names: Vec<&str> = h.filters.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["envoy.filters.http.fault", "envoy.filters.http.cors"]);
    let abort = empty.replace("HTTPFault}", "HTTPFault, abort: {http_status: 503, percentage: {numerator: 100}}}");
    convert(&http("{match: {prefix: /}, route: {cluster: c}}", &abort)).unwrap();
    let bad = empty.replace("HTTPFault}", "HTTPFault, abort: {http_status: 99, percentage: {numerator: 100}}}");
    let e = err(&http("{match: {prefix: /}, route: {cluster: c}}", &bad));
    assert!(
        e.contains(
            "http_filters[0] \"envoy.filters.http.fault\".typed_config.abort.http_status: 99 is not in [200, 600)"
        ),
        "{e}"
    );
}

/// Older istiods' deprecated spellings keep their meaning.
#[test]
fn deprecated_v1_bind_to_port_and_protocol_selection() {
    let yaml = http("{match: {prefix: /}, route: {cluster: c}}", ROUTER)
        .replace("    filter_chains:\n", "    deprecated_v1: {bind_to_port: false}\n    filter_chains:\n")
        .replace("  - name: c\n", "  - name: c\n    protocol_selection: USE_DOWNSTREAM_PROTOCOL\n");
    let b = convert(&yaml).unwrap();
    assert!(!b.listeners[0].bind_to_port);
    assert_eq!(b.clusters[0].upstream_protocol, crate::config::cluster::UpstreamProtocol::Downstream);
}

/// A listener terminating TLS and a cluster originating it, with material that cannot be read
/// here: a missing file, an unset environment variable, an unknown static secret.
const UNREADABLE_TLS: &str = r#"
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{certificate_chain: {filename: /nonexistent/isthmus/cert.pem}, private_key: {environment_variable: ISTHMUS_TEST_NEVER_SET}}]
  clusters:
  - name: c
    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context_sds_secret_config: {name: no-such-static-secret}
"#;

#[test]
fn conversion_reads_nothing_and_building_names_the_field_and_the_file() {
    // Conversion keeps where the material is; it does not look.
    let b = convert(UNREADABLE_TLS).expect("conversion is pure");
    let spec = b.listeners[0].filter_chains[0].tls.clone().expect("a TLS spec");
    let Some(crate::config::tls::CertSpec::Given(files)) = &spec.common.cert else { panic!("given certificate") };
    assert_eq!(files.chain.source, crate::config::tls::DataSource::File("/nonexistent/isthmus/cert.pem".into()));
    assert_eq!(files.key.source, crate::config::tls::DataSource::Env("ISTHMUS_TEST_NEVER_SET".into()));
    // Building reads, and refuses with the path of the field and the file.
    // Clusters are built first, as Envoy initialises them before listeners.
    let e = crate::build::snapshot(b.clone()).err().expect("no such static secret").to_string();
    assert!(e.contains("clusters[0]") && e.contains("validation_context_sds_secret_config.name"), "{e}");
    assert!(e.contains("no-such-static-secret"), "{e}");
    let e = crate::build::listener(&b.listeners[0]).expect_err("the file is missing").to_string();
    assert!(e.contains("listeners[0]") && e.contains("certificate_chain.filename"), "{e}");
    assert!(e.contains("/nonexistent/isthmus/cert.pem"), "{e}");
}

#[test]
fn every_example_converts_without_reading_files_and_builds() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let b = convert(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        crate::build::snapshot(b).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 4, "examples found: {n}");
}

/// The structural half of purity: no conversion file reaches for the filesystem, the
/// environment, the secret registry or the TLS runtime (`tls::build` does).
#[test]
fn conversion_sources_touch_no_io_and_no_runtime() {
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/convert"));
    let banned = [
        "std::fs",
        "std::env",
        "registry()",
        "crate::tls",
        "tokio::",
        "std::net::TcpStream",
        "clock::now",
        "metrics::",
    ];
    let mut checked = 0;
    let mut dirs = vec![root];
    let mut files = Vec::new();
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        if path.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The README table check (a test module at the end of mod.rs) reads the README.
        let code = text.split("#[cfg(test)]\nmod policy_tests").next().unwrap_or_default();
        for b in banned {
            assert!(!code.contains(b), "{} uses {b}: conversion must stay pure", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 15, "files checked: {checked}");
}
