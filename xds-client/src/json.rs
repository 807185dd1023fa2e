//! Canonical proto3 JSON (and so Envoy's YAML) for the Envoy v3 protos.
//!
//! Envoy's bootstrap file is a `Bootstrap` message in proto3 JSON: durations as `"0.25s"`,
//! `typed_config` as an `Any` with `"@type"`, enums by name, unknown fields rejected. The
//! generated `envoy-types` structs have no serde support, so a descriptor pool compiled from the
//! same `.proto` files at build time drives `prost-reflect`: JSON → dynamic message → wire bytes
//! → the typed struct. The error names the field path, which is what an operator needs to fix
//! a file.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost_reflect::{DescriptorPool, DynamicMessage};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// Why a JSON value could not become the requested proto.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The value does not fit the message: wrong type, unknown field, bad duration, unknown
    /// `@type`. `path` is dotted with `[i]` for list items, empty at the top level.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Invalid {
        /// Where in the document the problem is, e.g. `static_resources.clusters[2].connect_timeout`.
        path: String,
        /// What the decoder said.
        message: String,
    },
    /// The message type is not in the compiled descriptor set (a bug in this crate's build).
    #[error("proto type {0} is not in the compiled Envoy descriptor set")]
    UnknownType(String),
    /// The dynamic message did not re-decode as the typed struct (descriptor/codegen mismatch).
    #[error("decoding {type_name} from its wire form failed: {source}")]
    Decode {
        /// The full proto name.
        type_name: String,
        /// The prost error.
        #[source]
        source: prost::DecodeError,
    },
    /// The descriptor set compiled at build time is unreadable (a bug in this crate's build).
    #[error("the compiled Envoy descriptor set is invalid: {0}")]
    Descriptors(String),
}

/// The pool while it is in use, and when it was last asked for.
struct Cached {
    pool: DescriptorPool,
    last_use: Instant,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The descriptor pool for every vendored Envoy type: built on first use and kept until
/// [`release_pool`] finds it idle. It is ~4.5 MB of heap that only config conversion and
/// config dumps read, so a sidecar between pushes need not keep it resident.
pub fn pool() -> Result<DescriptorPool, JsonError> {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    if let Some(c) = cache.as_mut() {
        c.last_use = now;
        return Ok(c.pool.clone());
    }
    // Built under the lock: concurrent first users wait for one build instead of racing.
    let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| JsonError::Descriptors(e.to_string()))?;
    *cache = Some(Cached { pool: pool.clone(), last_use: now });
    Ok(pool)
}

/// Drops the cached pool if nobody has asked for it for `idle` (`Duration::ZERO`: at once);
/// the next [`pool`] call builds it again. Returns whether it was dropped. Its memory is freed
/// once the last clone handed out is gone.
pub fn release_pool(idle: Duration) -> bool {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    match cache.as_ref() {
        Some(c) if c.last_use.elapsed() >= idle => {
            *cache = None;
            true
        }
        _ => false,
    }
}

/// Decodes canonical proto3 JSON into the typed Envoy message `T`; unknown fields are errors.
pub fn from_json<T>(value: serde_json::Value) -> Result<T, JsonError>
where
    T: prost::Message + prost::Name + Default,
{
    from_json_with(value, true)
}

/// Like [`from_json`]; with `deny_unknown = false` unknown fields are skipped (Envoy's
/// `--allow-unknown-static-fields`, which pilot-agent passes).
pub fn from_json_with<T>(value: serde_json::Value, deny_unknown: bool) -> Result<T, JsonError>
where
    T: prost::Message + prost::Name + Default,
{
    let type_name = T::full_name();
    let desc = pool()?.get_message_by_name(&type_name).ok_or_else(|| JsonError::UnknownType(type_name.clone()))?;
    let mut track = serde_path_to_error::Track::new();
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(deny_unknown);
    let dynamic = DynamicMessage::deserialize_with_options(
        desc,
        serde_path_to_error::Deserializer::new(value, &mut track),
        &options,
    )
    .map_err(|e| JsonError::Invalid {
        path: track.path().to_string().trim_start_matches('.').to_string(),
        message: explain(e.to_string()),
    })?;
    let bytes = prost::Message::encode_to_vec(&dynamic);
    T::decode(bytes.as_slice()).map_err(|source| JsonError::Decode { type_name, source })
}

/// Encoded bytes of proto `type_name` as canonical proto3 JSON (config dumps), with `@type`
/// and Envoy's snake_case field names, as Envoy's `/config_dump` prints them.
///
/// An `Any` whose type is outside the compiled set (Istio's own filter configs, say) cannot be
/// printed as itself; it becomes a `udpa.type.v1.TypedStruct` carrying the original type URL
/// and the payload in base64 under `isthmus_undecoded_base64`, so the dump stays valid proto3
/// JSON that `istioctl` can read and nothing is hidden.
pub fn to_json(type_name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    let pool = pool()?;
    let desc = pool.get_message_by_name(type_name).ok_or_else(|| JsonError::UnknownType(type_name.to_string()))?;
    let mut msg = DynamicMessage::decode(desc, bytes)
        .map_err(|source| JsonError::Decode { type_name: type_name.to_string(), source })?;
    wrap_unknown_any(&mut msg, &pool);
    let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    let mut out = msg
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| JsonError::Invalid { path: String::new(), message: e.to_string() })?;
    if let serde_json::Value::Object(m) = &mut out {
        m.insert("@type".into(), serde_json::Value::String(format!("type.googleapis.com/{type_name}")));
    }
    Ok(out)
}

const ANY: &str = "google.protobuf.Any";

fn wrap_unknown_any(msg: &mut DynamicMessage, pool: &DescriptorPool) {
    use prost_reflect::{ReflectMessage, Value};
    if msg.descriptor().full_name() == ANY {
        let url = msg.get_field_by_name("type_url").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let known = pool.get_message_by_name(url.rsplit('/').next().unwrap_or_default());
        match known {
            Some(inner_desc) => {
                let bytes = msg.get_field_by_name("value").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
                if let Ok(mut inner) = DynamicMessage::decode(inner_desc, bytes.as_ref()) {
                    wrap_unknown_any(&mut inner, pool);
                    msg.set_field_by_name("value", Value::Bytes(prost::Message::encode_to_vec(&inner).into()));
                }
            }
            None => {
                if let Some(wrapped) = typed_struct_for(msg, &url, pool) {
                    *msg = wrapped;
                }
            }
        }
        return;
    }
    let fields: Vec<_> = msg.descriptor().fields().collect();
    for f in fields {
        if !msg.has_field(&f) {
            continue;
        }
        match msg.get_field_mut(&f) {
            Value::Message(m) => wrap_unknown_any(m, pool),
            Value::List(items) => items.iter_mut().for_each(|v| {
                if let Value::Message(m) = v {
                    wrap_unknown_any(m, pool);
                }
            }),
            Value::Map(map) => map.values_mut().for_each(|v| {
                if let Value::Message(m) = v {
                    wrap_unknown_any(m, pool);
                }
            }),
            _ => {}
        }
    }
}

/// An `Any` holding `udpa.type.v1.TypedStruct{type_url: url, value: {isthmus_undecoded_base64}}`.
fn typed_struct_for(any: &DynamicMessage, url: &str, pool: &DescriptorPool) -> Option<DynamicMessage> {
    use base64::Engine;
    let bytes = any.get_field_by_name("value").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes.as_ref());
    let json = serde_json::json!({"type_url": url, "value": {"isthmus_undecoded_base64": b64}});
    let ts_desc = pool.get_message_by_name("udpa.type.v1.TypedStruct")?;
    let ts = DynamicMessage::deserialize(ts_desc, json).ok()?;
    let mut out = DynamicMessage::new(pool.get_message_by_name(ANY)?);
    out.set_field_by_name(
        "type_url",
        prost_reflect::Value::String("type.googleapis.com/udpa.type.v1.TypedStruct".into()),
    );
    out.set_field_by_name("value", prost_reflect::Value::Bytes(prost::Message::encode_to_vec(&ts).into()));
    Some(out)
}

/// Rewords the decoder's "message 'X' not found" (an `@type` outside the compiled set) so the
/// operator learns the extension is unsupported rather than misspelt.
fn explain(message: String) -> String {
    match message.strip_prefix("message '").and_then(|m| m.strip_suffix("' not found")) {
        Some(t) => format!("type {t} is not supported by Isthmus"),
        None => message,
    }
}

/// Decodes the payload of an `Any` whose type URL names `T`, for `typed_config` fields.
pub fn unpack<T>(any: &crate::protos::google::protobuf::Any) -> Result<T, prost::DecodeError>
where
    T: prost::Message + Default,
{
    T::decode(any.value.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::envoy::config::bootstrap::v3::Bootstrap;

    #[test]
    fn parses_durations_and_typed_config() {
        let v = serde_json::json!({
            "static_resources": {"clusters": [{"name": "a", "connect_timeout": "0.25s"}]}
        });
        let b: Bootstrap = from_json(v).unwrap();
        let c = &b.static_resources.unwrap().clusters[0];
        assert_eq!(c.connect_timeout.as_ref().unwrap().nanos, 250_000_000);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let v = serde_json::json!({"static_resources": {"clusters": [{"name": "a"}, {"nme": "b"}]}});
        let err = from_json::<Bootstrap>(v).unwrap_err().to_string();
        assert!(err.starts_with("static_resources.clusters[1]"), "{err}");
        assert!(err.contains("nme"), "{err}");
    }

    /// Istio's own filter types are not in the compiled set: the dump keeps them readable
    /// (TypedStruct with the original URL and payload) instead of failing the whole resource.
    #[test]
    fn dump_wraps_unknown_any_and_keeps_known_ones() {
        use crate::protos::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
        use crate::protos::google::protobuf::Any;
        let unknown = Any {
            type_url: "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange".into(),
            value: vec![0x0a, 0x05, b'i', b's', b't', b'i', b'o'],
        };
        let known = Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy".into(),
            value: prost::Message::encode_to_vec(
                &crate::protos::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy {
                    stat_prefix: "s".into(),
                    ..Default::default()
                },
            ),
        };
        let l = Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![
                    Filter {
                        name: "istio.metadata_exchange".into(),
                        config_type: Some(filter::ConfigType::TypedConfig(unknown)),
                    },
                    Filter { name: "tcp".into(), config_type: Some(filter::ConfigType::TypedConfig(known)) },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = to_json("envoy.config.listener.v3.Listener", &prost::Message::encode_to_vec(&l)).unwrap();
        assert_eq!(v["@type"], "type.googleapis.com/envoy.config.listener.v3.Listener");
        let filters = &v["filter_chains"][0]["filters"];
        assert_eq!(filters[0]["typed_config"]["@type"], "type.googleapis.com/udpa.type.v1.TypedStruct");
        assert_eq!(
            filters[0]["typed_config"]["type_url"],
            "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange"
        );
        assert_eq!(filters[0]["typed_config"]["value"]["isthmus_undecoded_base64"], "CgVpc3Rpbw==");
        assert_eq!(filters[1]["typed_config"]["stat_prefix"], "s");
    }

    #[test]
    fn the_pool_is_kept_while_used_and_rebuilt_after_release() {
        let a = pool().unwrap();
        assert!(!release_pool(Duration::from_secs(3600)), "just used: kept");
        assert_eq!(pool().unwrap(), a, "the same pool while cached");
        assert!(release_pool(Duration::ZERO));
        let b = pool().unwrap();
        assert_ne!(b, a, "a fresh pool after release");
        let v = serde_json::json!({"static_resources": {"clusters": [{"name": "a"}]}});
        let _: Bootstrap = from_json(v).unwrap();
    }
}
