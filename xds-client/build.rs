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
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(ROOTS, ["proto"]).expect("vendored Envoy protos compile");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("envoy_descriptors.bin"), fds.encode_to_vec()).expect("write descriptor set to OUT_DIR");
}
