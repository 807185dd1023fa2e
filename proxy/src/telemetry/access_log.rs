//! Access log: one JSON line per request or TCP connection on stdout, with Envoy's response
//! flags, written once when the record drops (RAII), whatever path the request took.

use std::io::Write;
use std::time::{Instant, SystemTime};

use serde::Serialize;

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
    /// Why the proxy answered itself, when a filter did (Envoy's `%RESPONSE_CODE_DETAILS%`:
    /// `rbac_access_denied_matched_policy[…]`, `fault_filter_abort`, `local_rate_limited`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_details: Option<String>,
    /// Whether the downstream connection was TLS terminated here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub downstream_tls: bool,
}

/// Writes the entry as one JSON line.
pub fn write(entry: &Entry) {
    if let Ok(mut line) = serde_json::to_vec(entry) {
        line.push(b'\n');
        let _ = std::io::stdout().lock().write_all(&line);
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
