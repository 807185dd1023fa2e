//! Access log: one JSON line per request or TCP connection on stdout, with Envoy's response
//! flags, written once when the record drops (RAII), whatever path the request took.

use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::config::access_log::{AccessLogs, Format, JsonValue, Operator, Segment};

/// One access log line. Fields follow Envoy's default format names.
#[derive(Debug, Serialize, Default)]
pub struct Entry {
    /// RFC 3339 start time.
    pub start_time: String,
    /// HTTP method, or empty for TCP.
    pub method: String,
    /// Original path (with query).
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`, or `TCP`.
    pub protocol: String,
    /// Status sent downstream (0 when none was).
    pub response_code: u16,
    /// Envoy response flags (`UF`, `UO`, `NR`, `URX`, …), `-` when none.
    pub response_flags: String,
    /// Body bytes received from downstream.
    pub bytes_received: u64,
    /// Body bytes sent downstream.
    pub bytes_sent: u64,
    /// Total milliseconds.
    pub duration: u64,
    /// Upstream service time (ms) until response headers.
    pub upstream_service_time: Option<u64>,
    /// `x-forwarded-for`.
    pub x_forwarded_for: Option<String>,
    /// `user-agent`.
    pub user_agent: Option<String>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// `:authority` / `Host`.
    pub authority: Option<String>,
    /// Upstream host that answered.
    pub upstream_host: Option<String>,
    /// Upstream cluster.
    pub upstream_cluster: Option<String>,
    /// Peer address.
    pub downstream_remote_address: String,
    /// Listener address.
    pub downstream_local_address: String,
    /// Route name.
    pub route_name: Option<String>,
    /// The client certificate's URI SAN (Envoy's `%DOWNSTREAM_PEER_URI_SAN%`), on mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream_peer_uri_san: Option<String>,
    /// The request's trace id when the HCM traces (Envoy's `%TRACE_ID%`), sampled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The SNI the client sent (`%REQUESTED_SERVER_NAME%`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_server_name: Option<String>,
    /// Why the proxy answered itself, when a filter did (Envoy's `%RESPONSE_CODE_DETAILS%`:
    /// `rbac_access_denied_matched_policy[…]`, `fault_filter_abort`, `local_rate_limited`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_details: Option<String>,
    /// Whether the downstream connection was TLS terminated here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub downstream_tls: bool,
}

/// Hands the entry, formatted, to each logger's writer (never blocks: see `log_writer`).
pub fn emit(logs: &AccessLogs, entry: &Entry) {
    for l in logs.0.iter() {
        super::log_writer::send(&l.sink, render(&l.format, entry));
    }
}

/// One line in `format` (ending in a newline for the default and JSON formats; a text
/// template carries its own).
pub fn render(format: &Format, e: &Entry) -> Vec<u8> {
    match format {
        Format::Default => {
            let mut line = serde_json::to_vec(e).unwrap_or_default();
            line.push(b'\n');
            line
        }
        Format::Text(t) => {
            let mut s = String::new();
            for seg in t {
                match seg {
                    Segment::Literal(l) => s.push_str(l),
                    Segment::Op(op, max) => s.push_str(&truncate(value(op, e).unwrap_or_else(|| "-".into()), *max)),
                }
            }
            s.into_bytes()
        }
        Format::Json(fields) => {
            let mut line = serde_json::to_vec(&json_object(fields, e)).unwrap_or_default();
            line.push(b'\n');
            line
        }
    }
}

fn json_object(fields: &[(String, JsonValue)], e: &Entry) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        let value = match v {
            JsonValue::Literal(l) => l.clone(),
            JsonValue::Object(o) => json_object(o, e),
            // A lone operator keeps its type (numbers stay numbers; absent is null).
            JsonValue::Template(t) if t.len() == 1 => match t.first() {
                Some(Segment::Op(op, max)) => typed(op, e, *max),
                Some(Segment::Literal(l)) => serde_json::Value::String(l.clone()),
                None => serde_json::Value::Null,
            },
            JsonValue::Template(t) => {
                let mut s = String::new();
                for seg in t {
                    match seg {
                        Segment::Literal(l) => s.push_str(l),
                        Segment::Op(op, max) => s.push_str(&truncate(value(op, e).unwrap_or_else(|| "-".into()), *max)),
                    }
                }
                serde_json::Value::String(s)
            }
        };
        m.insert(k.clone(), value);
    }
    serde_json::Value::Object(m)
}

fn typed(op: &Operator, e: &Entry, max: Option<usize>) -> serde_json::Value {
    let n = |v: u64| serde_json::Value::from(v);
    match op {
        Operator::ResponseCode => n(u64::from(e.response_code)),
        Operator::BytesReceived => n(e.bytes_received),
        Operator::BytesSent => n(e.bytes_sent),
        Operator::Duration => n(e.duration),
        Operator::UpstreamServiceTime => e.upstream_service_time.map_or(serde_json::Value::Null, n),
        other => value(other, e).map_or(serde_json::Value::Null, |v| serde_json::Value::String(truncate(v, max))),
    }
}

fn truncate(mut v: String, max: Option<usize>) -> String {
    if let Some(m) = max {
        if v.len() > m {
            let mut cut = m;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
        }
    }
    v
}

/// An operator's value; `None` is Envoy's `-`.
fn value(op: &Operator, e: &Entry) -> Option<String> {
    let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match op {
        Operator::StartTime => s(&e.start_time),
        Operator::Method => s(&e.method),
        Operator::Path => s(&e.path),
        Operator::Authority => e.authority.clone(),
        Operator::UserAgent => e.user_agent.clone(),
        Operator::ForwardedFor => e.x_forwarded_for.clone(),
        Operator::RequestId => e.request_id.clone(),
        Operator::UpstreamServiceTime => e.upstream_service_time.map(|v| v.to_string()),
        Operator::Protocol => s(&e.protocol),
        Operator::ResponseCode => Some(e.response_code.to_string()),
        Operator::ResponseFlags => s(&e.response_flags),
        Operator::ResponseCodeDetails => e.response_code_details.clone(),
        Operator::BytesReceived => Some(e.bytes_received.to_string()),
        Operator::BytesSent => Some(e.bytes_sent.to_string()),
        Operator::Duration => Some(e.duration.to_string()),
        Operator::UpstreamHost => e.upstream_host.clone(),
        Operator::UpstreamCluster => e.upstream_cluster.clone(),
        Operator::DownstreamRemote => s(&e.downstream_remote_address),
        Operator::DownstreamRemoteIp => s(&e.downstream_remote_address)
            .map(|a| a.parse::<std::net::SocketAddr>().map_or(a, |sa| sa.ip().to_string())),
        Operator::DownstreamLocal => s(&e.downstream_local_address),
        Operator::DownstreamPeerUriSan => e.downstream_peer_uri_san.clone(),
        Operator::RouteName => e.route_name.clone(),
        Operator::TraceId => e.trace_id.clone(),
        Operator::ServerName => e.requested_server_name.clone(),
        Operator::Untracked => None,
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Howard Hinnant's days → civil date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (era * 400 + yoe + i64::from(m <= 2), m, d)
}

/// Milliseconds since `t`.
pub fn millis_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
