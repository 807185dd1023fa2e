//! `access_log` (HCM and tcp_proxy) → model: file, stdout and stderr loggers with text or
//! JSON formats. Filters, formatters extensions and other logger types are refused with
//! their path: a log that silently drops or reshapes lines would mislead.

use xds_client::protos::envoy::config::accesslog::v3 as proto;
use xds_client::protos::envoy::config::core::v3::{substitution_format_string::Format as F, SubstitutionFormatString};
use xds_client::protos::envoy::extensions::access_loggers::{file::v3 as file, stream::v3 as stream};

use super::common::struct_to_json;
use super::fields::{check, FieldPolicy};
use crate::config::access_log::{AccessLog, AccessLogs, Format, JsonValue, Operator, Segment, Sink};
use crate::config::error::{ConfigError, Path};

pub(super) const ACCESS_LOG: FieldPolicy =
    FieldPolicy { message: "envoy.config.accesslog.v3.AccessLog", honoured: &["name", "typed_config"], ignored: &[] };

pub(super) const FILE: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    honoured: &["path", "format", "json_format", "log_format"],
    ignored: &[],
};

pub(super) const FORMAT: FieldPolicy = FieldPolicy {
    message: "envoy.config.core.v3.SubstitutionFormatString",
    honoured: &["text_format", "json_format", "text_format_source"],
    // Lines are written as they are; a content type only matters for local-reply bodies.
    ignored: &["content_type"],
};

const FILE_URL: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT_URL: &str = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_URL: &str = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

/// Converts a list of loggers.
pub fn access_logs(logs: &[proto::AccessLog], path: &Path) -> Result<AccessLogs, ConfigError> {
    let mut out = Vec::with_capacity(logs.len());
    for (i, l) in logs.iter().enumerate() {
        out.push(access_log(l, &path.item(i, &l.name))?);
    }
    Ok(AccessLogs(out.into()))
}

fn access_log(l: &proto::AccessLog, path: &Path) -> Result<AccessLog, ConfigError> {
    check(l, &ACCESS_LOG, path)?;
    if l.filter.is_some() {
        return Err(path.err_at("filter", "access-log filters are not supported (every request is logged)"));
    }
    let Some(proto::access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
        return Err(path.err_at("typed_config", "is required"));
    };
    let tp = path.field("typed_config");
    let bad = |e: prost::DecodeError| tp.err(format!("cannot decode {}: {e}", any.type_url));
    match any.type_url.as_str() {
        FILE_URL => {
            let f: file::FileAccessLog = xds_client::json::unpack(any).map_err(bad)?;
            check(&f, &FILE, &tp)?;
            let sink = match f.path.as_str() {
                "" => return Err(tp.err_at("path", "is required")),
                "/dev/stdout" => Sink::Stdout,
                "/dev/stderr" => Sink::Stderr,
                p => Sink::File(p.to_string()),
            };
            #[allow(deprecated)]
            let format = match &f.access_log_format {
                None => Format::Default,
                Some(file::file_access_log::AccessLogFormat::LogFormat(s)) => format(s, &tp.field("log_format"))?,
                Some(file::file_access_log::AccessLogFormat::Format(t)) => {
                    Format::Text(template(t, &tp.field("format"))?)
                }
                Some(file::file_access_log::AccessLogFormat::JsonFormat(j)) => {
                    Format::Json(json(&struct_to_json(j), &tp.field("json_format"))?)
                }
                Some(file::file_access_log::AccessLogFormat::TypedJsonFormat(_)) => {
                    return Err(tp.err_at("typed_json_format", "is not supported (use log_format.json_format)"))
                }
            };
            Ok(AccessLog { sink, format })
        }
        STDOUT_URL | STDERR_URL => {
            let sink = if any.type_url == STDOUT_URL { Sink::Stdout } else { Sink::Stderr };
            // Stdout and stderr loggers share one schema: `log_format` only.
            let s: stream::StdoutAccessLog = xds_client::json::unpack(any).map_err(bad)?;
            let format = match &s.access_log_format {
                None => Format::Default,
                Some(stream::stdout_access_log::AccessLogFormat::LogFormat(f)) => format(f, &tp.field("log_format"))?,
            };
            Ok(AccessLog { sink, format })
        }
        other => Err(tp.err(format!("access logger {other} is not supported (file, stdout and stderr loggers are)"))),
    }
}

fn format(s: &SubstitutionFormatString, path: &Path) -> Result<Format, ConfigError> {
    check(s, &FORMAT, path)?;
    if !s.formatters.is_empty() {
        return Err(path.err_at("formatters", "formatter extensions are not supported"));
    }
    if s.omit_empty_values {
        return Err(path.err_at("omit_empty_values", "is not supported"));
    }
    #[allow(deprecated)]
    Ok(match &s.format {
        Some(F::TextFormat(t)) => Format::Text(template(t, &path.field("text_format"))?),
        Some(F::TextFormatSource(d)) => {
            use xds_client::protos::envoy::config::core::v3::data_source::Specifier;
            let tp = path.field("text_format_source");
            match &d.specifier {
                Some(Specifier::InlineString(t)) => Format::Text(template(t, &tp.field("inline_string"))?),
                Some(Specifier::InlineBytes(b)) => {
                    Format::Text(template(&String::from_utf8_lossy(b), &tp.field("inline_bytes"))?)
                }
                _ => return Err(tp.err("only inline_string and inline_bytes are supported (no files)")),
            }
        }
        Some(F::JsonFormat(j)) => Format::Json(json(&struct_to_json(j), &path.field("json_format"))?),
        None => Format::Default,
    })
}

fn json(v: &serde_json::Value, path: &Path) -> Result<Vec<(String, JsonValue)>, ConfigError> {
    let serde_json::Value::Object(m) = v else { return Err(path.err("must be an object")) };
    m.iter()
        .map(|(k, v)| {
            let kp = path.field(k);
            let value = match v {
                serde_json::Value::String(s) => JsonValue::Template(template(s, &kp)?),
                serde_json::Value::Object(_) => JsonValue::Object(json(v, &kp)?),
                // Struct numbers are doubles; Envoy writes integral ones without a fraction.
                serde_json::Value::Number(n) => JsonValue::Literal(match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => serde_json::Value::from(f as i64),
                    _ => serde_json::Value::Number(n.clone()),
                }),
                other => JsonValue::Literal(other.clone()),
            };
            Ok((k.clone(), value))
        })
        .collect()
}

/// Parses `%OP%`, `%OP(ARG)%` and `%OP(ARG):N%` in `t`; `%%` is a literal `%`.
pub fn template(t: &str, path: &Path) -> Result<Vec<Segment>, ConfigError> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('%') {
        lit.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            lit.push('%');
            rest = after;
            continue;
        }
        let Some(end) = rest.find('%') else {
            return Err(path.err(format!("unterminated command operator in \"{t}\"")));
        };
        let spec = &rest[..end];
        rest = &rest[end + 1..];
        let (body, max) =
            match spec.rsplit_once("):").or_else(|| spec.rsplit_once(':').filter(|(b, _)| !b.contains('('))) {
                Some((b, n)) if n.bytes().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    let b = if spec.contains("):") { format!("{b})") } else { b.to_string() };
                    (b, n.parse().ok())
                }
                _ => (spec.to_string(), None),
            };
        if !lit.is_empty() {
            out.push(Segment::Literal(std::mem::take(&mut lit)));
        }
        out.push(Segment::Op(operator(&body, path)?, max));
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Segment::Literal(lit));
    }
    Ok(out)
}

fn operator(op: &str, path: &Path) -> Result<Operator, ConfigError> {
    let header = |h: &str| -> Option<Operator> {
        Some(match h.to_ascii_lowercase().as_str() {
            ":method" => Operator::Method,
            ":path" | "x-envoy-original-path?:path" => Operator::Path,
            ":authority" | "host" => Operator::Authority,
            "user-agent" => Operator::UserAgent,
            "x-forwarded-for" => Operator::ForwardedFor,
            "x-request-id" => Operator::RequestId,
            _ => return None,
        })
    };
    let known = match op {
        "START_TIME" => Some(Operator::StartTime),
        "PROTOCOL" => Some(Operator::Protocol),
        "RESPONSE_CODE" => Some(Operator::ResponseCode),
        "RESPONSE_FLAGS" => Some(Operator::ResponseFlags),
        "RESPONSE_CODE_DETAILS" => Some(Operator::ResponseCodeDetails),
        "BYTES_RECEIVED" => Some(Operator::BytesReceived),
        "BYTES_SENT" => Some(Operator::BytesSent),
        "DURATION" => Some(Operator::Duration),
        "UPSTREAM_HOST" => Some(Operator::UpstreamHost),
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => Some(Operator::UpstreamCluster),
        "DOWNSTREAM_REMOTE_ADDRESS" => Some(Operator::DownstreamRemote),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Some(Operator::DownstreamRemoteIp),
        "DOWNSTREAM_LOCAL_ADDRESS" => Some(Operator::DownstreamLocal),
        "DOWNSTREAM_PEER_URI_SAN" => Some(Operator::DownstreamPeerUriSan),
        "ROUTE_NAME" => Some(Operator::RouteName),
        "TRACE_ID" => Some(Operator::TraceId),
        "REQUESTED_SERVER_NAME" => Some(Operator::ServerName),
        "CONNECTION_TERMINATION_DETAILS" | "UPSTREAM_TRANSPORT_FAILURE_REASON" | "UPSTREAM_LOCAL_ADDRESS" => {
            Some(Operator::Untracked)
        }
        "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)" => Some(Operator::UpstreamServiceTime),
        _ => op.strip_prefix("REQ(").and_then(|r| r.strip_suffix(')')).and_then(header),
    };
    known.ok_or_else(|| {
        path.err(format!("command operator %{op}% is not supported (see the README's access-log operators)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istios_default_text_format_parses() {
        let istio = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
        let t = template(istio, &Path::root("f")).unwrap();
        assert_eq!(t.iter().filter(|s| matches!(s, Segment::Op(..))).count(), 24);
        let t = template("%REQ(USER-AGENT):5% 100%%", &Path::root("f")).unwrap();
        assert_eq!(t, [Segment::Op(Operator::UserAgent, Some(5)), Segment::Literal(" 100%".into())]);
        let e = template("%DYNAMIC_METADATA(x)%", &Path::root("f")).unwrap_err().to_string();
        assert!(e.contains("%DYNAMIC_METADATA(x)% is not supported"), "{e}");
        assert!(template("%START_TIME", &Path::root("f")).is_err());
    }
}
