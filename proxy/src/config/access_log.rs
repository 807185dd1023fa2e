//! Access loggers as configured (`access_log` on an HCM or tcp_proxy): where each line goes
//! and its format, Envoy's command operators parsed once at conversion.

use std::sync::Arc;

/// The loggers of one HCM or tcp_proxy (empty: no access log).
#[derive(Debug, Clone, Default)]
pub struct AccessLogs(pub Arc<[AccessLog]>);

impl AccessLogs {
    /// Whether any logger is configured.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }
}

/// One logger.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// Where lines go.
    pub sink: Sink,
    /// How a line looks.
    pub format: Format,
}

/// A log destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sink {
    /// `StdoutAccessLog`, or a file logger on `/dev/stdout`.
    Stdout,
    /// `StderrAccessLog`, or a file logger on `/dev/stderr`.
    Stderr,
    /// `FileAccessLog.path`, appended to.
    File(String),
}

/// A line format.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// No `log_format`: Isthmus' JSON line (every field of the request record). Envoy's
    /// default is a text line; the JSON default is kept because existing users parse it.
    Default,
    /// `text_format_source` / `text_format` / `format`: the template.
    Text(Vec<Segment>),
    /// `json_format`: keys to templates (non-string values are literals), one JSON object.
    Json(Vec<(String, JsonValue)>),
}

/// A `json_format` value.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// A string with operators; a string that is exactly one operator keeps the operator's
    /// type (numbers stay numbers), as Envoy's typed JSON does.
    Template(Vec<Segment>),
    /// Any other JSON value, as given.
    Literal(serde_json::Value),
    /// A nested object.
    Object(Vec<(String, JsonValue)>),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Text as written.
    Literal(String),
    /// `%OPERATOR%`, truncated to `max_len` when given (`%REQ(USER-AGENT):10%`).
    Op(Operator, Option<usize>),
}

/// The command operators Isthmus fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `START_TIME`.
    StartTime,
    /// `REQ(:METHOD)`.
    Method,
    /// `REQ(:PATH)` and `REQ(X-ENVOY-ORIGINAL-PATH?:PATH)`.
    Path,
    /// `REQ(:AUTHORITY)` / `REQ(HOST)`.
    Authority,
    /// `REQ(USER-AGENT)`.
    UserAgent,
    /// `REQ(X-FORWARDED-FOR)`.
    ForwardedFor,
    /// `REQ(X-REQUEST-ID)`.
    RequestId,
    /// `RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)`.
    UpstreamServiceTime,
    /// `PROTOCOL`.
    Protocol,
    /// `RESPONSE_CODE`.
    ResponseCode,
    /// `RESPONSE_FLAGS`.
    ResponseFlags,
    /// `RESPONSE_CODE_DETAILS`.
    ResponseCodeDetails,
    /// `BYTES_RECEIVED`.
    BytesReceived,
    /// `BYTES_SENT`.
    BytesSent,
    /// `DURATION`.
    Duration,
    /// `UPSTREAM_HOST`.
    UpstreamHost,
    /// `UPSTREAM_CLUSTER` / `UPSTREAM_CLUSTER_RAW`.
    UpstreamCluster,
    /// `DOWNSTREAM_REMOTE_ADDRESS`.
    DownstreamRemote,
    /// `DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT`.
    DownstreamRemoteIp,
    /// `DOWNSTREAM_LOCAL_ADDRESS`.
    DownstreamLocal,
    /// `DOWNSTREAM_PEER_URI_SAN`.
    DownstreamPeerUriSan,
    /// `ROUTE_NAME`.
    RouteName,
    /// `TRACE_ID`.
    TraceId,
    /// `REQUESTED_SERVER_NAME`.
    ServerName,
    /// Operators whose value Isthmus does not track; always `-`, as Envoy writes an absent
    /// value (`CONNECTION_TERMINATION_DETAILS`, `UPSTREAM_TRANSPORT_FAILURE_REASON`,
    /// `UPSTREAM_LOCAL_ADDRESS`).
    Untracked,
}
