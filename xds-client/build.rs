//! Compiles the vendored Envoy `.proto` files (the exact set shipped by `envoy-types` 0.7.7) into
//! a descriptor set, so the proxy can read Envoy's canonical proto3 JSON/YAML (durations as
//! `"0.25s"`, `Any` with `"@type"`) through `prost-reflect` without a `protoc` binary.
#![allow(clippy::expect_used)]

use prost::Message;

/// The roots whose import closure is vendored under `proto/`.
const ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/sni_cluster/v3/sni_cluster.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/secret/v3/sds.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    // What istiod and pilot-agent send beyond the above: read (and dumped) even where Isthmus
    // refuses or ignores them, so the refusal can name the field rather than an unknown type.
    "udpa/type/v1/typed_struct.proto",
    "xds/type/v3/typed_struct.proto",
    "xds/type/matcher/v3/ip.proto",
    "envoy/extensions/request_id/uuid/v3/uuid.proto",
    "envoy/extensions/bootstrap/internal_listener/v3/internal_listener.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/grpc_stats/v3/config.proto",
    "envoy/extensions/filters/http/grpc_web/v3/grpc_web.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/network/connection_limit/v3/connection_limit.proto",
    // Both local_rate_limit.proto copies name `common.ratelimit.v3.*`, which protox (one pool
    // for every file) resolves against `envoy.extensions.filters.common` first; the vendored
    // copies spell the full name `.envoy.extensions.common.ratelimit.v3.*` instead (the only
    // edit to a vendored file).
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/network/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/resource_monitors/downstream_connections/v3/downstream_connections.proto",
    "envoy/extensions/resource_monitors/fixed_heap/v3/fixed_heap.proto",
    "envoy/config/trace/v3/zipkin.proto",
    "envoy/config/trace/v3/opentelemetry.proto",
    "envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto",
    "envoy/extensions/matching/input_matchers/ip/v3/ip.proto",
    "envoy/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto",
    "envoy/extensions/http/original_ip_detection/xff/v3/xff.proto",
    "envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/listener/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "envoy/extensions/filters/network/wasm/v3/wasm.proto",
    "envoy/extensions/access_loggers/open_telemetry/v3/logs_service.proto",
    "envoy/extensions/upstreams/tcp/v3/tcp_protocol_options.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let mut fds = protox::compile(ROOTS, ["proto"]).expect("vendored Envoy protos compile");
    // Comments and source locations are read by nothing at run time, and decoded they were
    // the largest part of the resident descriptor pool (~9 MB of the proxy's idle heap).
    for file in &mut fds.file {
        file.source_code_info = None;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("envoy_descriptors.bin"), fds.encode_to_vec()).expect("write descriptor set to OUT_DIR");
}
