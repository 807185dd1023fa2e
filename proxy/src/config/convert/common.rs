//! Conversions shared by listeners, routes and clusters: durations, addresses, matchers,
//! header edits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use xds_client::protos::envoy::config::core::v3 as core;
use xds_client::protos::envoy::r#type::matcher::v3 as matcher;
use xds_client::protos::google::protobuf;

use super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::listener::CidrRange;
use crate::config::matcher::ValueMatch;
use crate::config::route::{AppendAction, HeaderAdd};

/// A proto duration as a std duration; negative or out-of-range values are refused.
pub fn duration(d: &protobuf::Duration, path: &Path) -> Result<Duration, ConfigError> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(path.err("duration must be non-negative"));
    }
    Ok(Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs()))
}

/// An optional duration where zero means "disabled", as for Envoy's timeouts.
pub fn timeout(
    d: Option<&protobuf::Duration>,
    default: Option<Duration>,
    path: &Path,
) -> Result<Option<Duration>, ConfigError> {
    match d {
        None => Ok(default),
        Some(d) => {
            let d = duration(d, path)?;
            Ok(if d.is_zero() { None } else { Some(d) })
        }
    }
}

pub(super) const SOCKET_ADDRESS: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.SocketAddress",
    honoured: &["address", "port_value", "protocol"],
    ignored: &["ipv4_compat", "resolver_name"],
};

/// A socket address whose host may be a name (DNS clusters) or must be an IP.
pub fn host_port(a: &core::Address, path: &Path) -> Result<(String, u16), ConfigError> {
    let Some(core::address::Address::SocketAddress(sa)) = &a.address else {
        return Err(path.err("only socket_address is supported (no pipe or internal addresses)"));
    };
    let path = path.field("socket_address");
    // Checked by hand, not by the reflective `check` (every endpoint of an EDS response passes
    // here): SOCKET_ADDRESS covers every field but these two, refused — the exhaustiveness test
    // in cluster.rs fails if Envoy's SocketAddress gains a field.
    if !sa.network_namespace_filepath.is_empty() {
        return Err(path.err_at("network_namespace_filepath", "is not supported by Isthmus (in SocketAddress)"));
    }
    if sa.protocol != 0 {
        return Err(path.err_at("protocol", "only TCP is supported"));
    }
    let port = match &sa.port_specifier {
        Some(core::socket_address::PortSpecifier::PortValue(p)) => {
            u16::try_from(*p).map_err(|_| path.err_at("port_value", format!("{p} is not a port")))?
        }
        Some(core::socket_address::PortSpecifier::NamedPort(_)) => {
            return Err(path.err_at("named_port", "named ports are not supported"))
        }
        None => 0,
    };
    if sa.address.is_empty() {
        return Err(path.err_at("address", "must not be empty"));
    }
    Ok((sa.address.clone(), port))
}

/// A socket address that must be a literal IP.
pub fn socket_addr(a: &core::Address, path: &Path) -> Result<SocketAddr, ConfigError> {
    let (host, port) = host_port(a, path)?;
    let ip: IpAddr = host
        .parse()
        .map_err(|_| path.field("socket_address").err_at("address", format!("\"{host}\" is not an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

/// `CidrRange` → model.
pub fn cidr(c: &core::CidrRange, path: &Path) -> Result<CidrRange, ConfigError> {
    let addr: IpAddr = c
        .address_prefix
        .parse()
        .map_err(|_| path.err_at("address_prefix", format!("\"{}\" is not an IP", c.address_prefix)))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = c.prefix_len.map(|v| v.value).unwrap_or(max);
    if len > max {
        return Err(path.err_at("prefix_len", format!("{len} exceeds {max}")));
    }
    Ok(CidrRange { addr, len: u8::try_from(len).unwrap_or(128) })
}

/// A header name from config; must be a valid lower-case HTTP header name.
pub fn header_name(name: &str, path: &Path) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| path.err(format!("\"{name}\" is not a valid header name")))
}

/// A whole-string regex with RE2-like anchoring (Envoy matches the full value).
pub fn regex(m: &matcher::RegexMatcher, path: &Path) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(&format!("^(?:{})$", m.regex)).map_err(|e| path.err_at("regex", format!("invalid regex: {e}")))
}

pub(super) const STRING_MATCHER: FieldPolicy = FieldPolicy {
    message: "envoy.type.matcher.v3.StringMatcher",
    honoured: &["exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"],
    ignored: &[],
};

/// `StringMatcher` → value test.
pub fn string_matcher(m: &matcher::StringMatcher, path: &Path) -> Result<ValueMatch, ConfigError> {
    use matcher::string_matcher::MatchPattern as P;
    check(m, &STRING_MATCHER, path)?;
    let test = match &m.match_pattern {
        Some(P::Exact(s)) => ValueMatch::Exact(s.clone()),
        Some(P::Prefix(s)) => ValueMatch::Prefix(s.clone()),
        Some(P::Suffix(s)) => ValueMatch::Suffix(s.clone()),
        Some(P::Contains(s)) => ValueMatch::Contains(s.clone()),
        Some(P::SafeRegex(r)) => return Ok(ValueMatch::Regex(regex(r, &path.field("safe_regex"))?)),
        Some(P::Custom(_)) => return Err(path.err_at("custom", "custom matchers are not supported")),
        None => return Err(path.err("a match pattern is required")),
    };
    Ok(if m.ignore_case { ValueMatch::IgnoreCase(Box::new(lower(test))) } else { test })
}

/// Lower-cases the needle of a string test for case-insensitive comparison.
pub fn lower(v: ValueMatch) -> ValueMatch {
    match v {
        ValueMatch::Exact(s) => ValueMatch::Exact(s.to_lowercase()),
        ValueMatch::Prefix(s) => ValueMatch::Prefix(s.to_lowercase()),
        ValueMatch::Suffix(s) => ValueMatch::Suffix(s.to_lowercase()),
        ValueMatch::Contains(s) => ValueMatch::Contains(s.to_lowercase()),
        other => other,
    }
}

pub(super) const HEADER_VALUE_OPTION: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.HeaderValueOption",
    honoured: &["header", "append", "append_action"],
    ignored: &["keep_empty_value"],
};

/// `request_headers_to_add` & co → header additions. Values are literal: Envoy's `%…%`
/// substitutions are refused rather than sent verbatim.
pub fn header_adds(opts: &[core::HeaderValueOption], path: &Path) -> Result<Vec<HeaderAdd>, ConfigError> {
    let mut out = Vec::with_capacity(opts.len());
    for (i, o) in opts.iter().enumerate() {
        let p = path.item(i, "");
        check(o, &HEADER_VALUE_OPTION, &p)?;
        let Some(h) = &o.header else { return Err(p.err_at("header", "is required")) };
        let hp = p.field("header");
        let name = header_name(&h.key, &hp.field("key"))?;
        let raw = if h.raw_value.is_empty() { h.value.as_bytes().to_vec() } else { h.raw_value.clone() };
        if raw.windows(1).any(|w| w == b"%") && raw.iter().filter(|b| **b == b'%').count() >= 2 {
            return Err(hp.err_at("value", "%-substitution formatters are not supported"));
        }
        let value = HeaderValue::from_bytes(&raw).map_err(|_| hp.err_at("value", "not a valid header value"))?;
        #[allow(deprecated)]
        let action = match o.append {
            Some(a) if a.value => AppendAction::Append,
            Some(_) => AppendAction::OverwriteOrAdd,
            None => match o.append_action {
                0 => AppendAction::Append,
                1 => AppendAction::AddIfAbsent,
                2 => AppendAction::OverwriteOrAdd,
                3 => AppendAction::OverwriteIfExists,
                n => return Err(p.err_at("append_action", format!("unknown value {n}"))),
            },
        };
        out.push(HeaderAdd { name, value, action });
    }
    Ok(out)
}

/// A protobuf `Struct` as JSON (metadata values).
pub fn struct_to_json(s: &protobuf::Struct) -> serde_json::Value {
    serde_json::Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

fn value_to_json(v: &protobuf::Value) -> serde_json::Value {
    use protobuf::value::Kind;
    match &v.kind {
        Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

/// Header names to remove.
pub fn header_removes(names: &[String], path: &Path) -> Result<Vec<HeaderName>, ConfigError> {
    names.iter().enumerate().map(|(i, n)| header_name(n, &path.item(i, ""))).collect()
}

/// `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` (the same wire schema; not generated
/// by envoy-types): the inner type URL and its value as a `Struct`.
#[derive(Clone, PartialEq, prost::Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(message, optional, tag = "2")]
    value: Option<protobuf::Struct>,
}

/// Decodes a `typed_config` of type `T`, sent directly or inside a TypedStruct (how Istio's
/// EnvoyFilter examples send rate limits): the TypedStruct's `value` is read as `T`'s
/// canonical JSON, so an unknown field in it is refused like one in YAML.
pub fn unpack_typed<T>(any: &xds_client::protos::google::protobuf::Any, path: &Path) -> Result<T, ConfigError>
where
    T: prost::Message + Default + prost::Name,
{
    const WRAPPERS: [&str; 2] =
        ["type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"];
    if WRAPPERS.contains(&any.type_url.as_str()) {
        let ts = <TypedStruct as prost::Message>::decode(any.value.as_slice())
            .map_err(|e| path.err(format!("cannot decode TypedStruct: {e}")))?;
        let json = ts.value.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json);
        return xds_client::json::from_json::<T>(json).map_err(|e| path.err(format!("{}: {e}", T::full_name())));
    }
    xds_client::json::unpack::<T>(any).map_err(|e| path.err(format!("cannot decode {}: {e}", T::full_name())))
}

/// `FractionalPercent` → fraction (denominator HUNDRED, TEN_THOUSAND or MILLION).
pub fn fraction(
    p: Option<&xds_client::protos::envoy::r#type::v3::FractionalPercent>,
    default: crate::config::filters::Fraction,
    path: &Path,
) -> Result<crate::config::filters::Fraction, ConfigError> {
    use xds_client::protos::envoy::r#type::v3::fractional_percent::DenominatorType as D;
    let Some(p) = p else { return Ok(default) };
    let denominator = match D::try_from(p.denominator) {
        Ok(D::Hundred) => 100,
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        Err(_) => {
            return Err(path.err_at("denominator", format!("{} is not HUNDRED, TEN_THOUSAND or MILLION", p.denominator)))
        }
    };
    Ok(crate::config::filters::Fraction { numerator: p.numerator.min(denominator), denominator })
}

/// `RuntimeFractionalPercent` → its `default_value` (Isthmus has no runtime layer, so the
/// `runtime_key` is only a name).
pub fn runtime_fraction(
    p: Option<&xds_client::protos::envoy::config::core::v3::RuntimeFractionalPercent>,
    default: crate::config::filters::Fraction,
    path: &Path,
) -> Result<crate::config::filters::Fraction, ConfigError> {
    match p {
        None => Ok(default),
        Some(r) => match &r.default_value {
            Some(v) => fraction(Some(v), default, &path.field("default_value")),
            None => Err(path.err_at("default_value", "is required")),
        },
    }
}

/// The type a `typed_config` really configures: its own URL, or the inner URL of a
/// TypedStruct (how istiod sends Istio's own filters).
pub fn effective_type(any: &xds_client::protos::google::protobuf::Any) -> String {
    const WRAPPERS: [&str; 2] =
        ["type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"];
    if WRAPPERS.contains(&any.type_url.as_str()) {
        if let Ok(ts) = <TypedStruct as prost::Message>::decode(any.value.as_slice()) {
            return ts.type_url;
        }
    }
    any.type_url.clone()
}
