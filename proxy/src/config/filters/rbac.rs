//! RBAC policies (`envoy.config.rbac.v3.RBAC`) as istiod generates them from
//! AuthorizationPolicies, and the HTTP and network filters that enforce them.

use crate::config::listener::CidrRange;
use crate::config::matcher::ValueMatch;

/// The header a rule reads: a pseudo-header or a regular one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderKey {
    /// `:method`.
    Method,
    /// `:path` (with the query).
    Path,
    /// `:authority` (`Host`).
    Authority,
    /// `:scheme`.
    Scheme,
    /// Any other header.
    Named(http::HeaderName),
}

/// A `HeaderMatcher` in a rule (unlike a route's, it may name a pseudo-header).
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Which header.
    pub key: HeaderKey,
    /// The test.
    pub test: ValueMatch,
    /// Negate the result.
    pub invert: bool,
}

/// `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allowed only when a policy matches.
    Allow,
    /// Denied when a policy matches.
    Deny,
    /// Always allowed; a match is only recorded (Istio's AUDIT).
    Log,
}

/// One rule set.
#[derive(Debug, Clone)]
pub struct Rbac {
    /// What a match means.
    pub action: Action,
    /// Named policies, sorted by name (Envoy iterates its ordered map, so the first match in
    /// name order is the one reported).
    pub policies: Vec<(String, Policy)>,
}

/// A policy matches when any permission and any principal match.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What is being done.
    pub permissions: Vec<Permission>,
    /// Who is doing it.
    pub principals: Vec<Principal>,
}

/// `Permission`.
#[derive(Debug, Clone)]
pub enum Permission {
    /// `any: true`.
    Any,
    /// `and_rules`.
    And(Vec<Permission>),
    /// `or_rules`.
    Or(Vec<Permission>),
    /// `not_rule`.
    Not(Box<Permission>),
    /// `header` (pseudo-headers `:method`, `:path`, `:authority`, `:scheme` included).
    Header(HeaderRule),
    /// `url_path`: the path without its query.
    UrlPath(ValueMatch),
    /// `destination_ip`.
    DestinationIp(CidrRange),
    /// `destination_port`.
    DestinationPort(u16),
    /// `destination_port_range`: `[start, end)`.
    DestinationPortRange(u32, u32),
    /// `requested_server_name`: the SNI (empty when none).
    ServerName(ValueMatch),
}

/// `Principal`.
#[derive(Debug, Clone)]
pub enum Principal {
    /// `any: true`.
    Any,
    /// `and_ids`.
    And(Vec<Principal>),
    /// `or_ids`.
    Or(Vec<Principal>),
    /// `not_id`.
    Not(Box<Principal>),
    /// `authenticated`: a verified peer certificate whose URI SAN, DNS SAN or subject matches
    /// (`None` = any verified certificate).
    Authenticated(Option<ValueMatch>),
    /// `direct_remote_ip` (and the deprecated `source_ip`): the connection's peer.
    DirectRemoteIp(CidrRange),
    /// `remote_ip`: the client address (the peer: Isthmus trusts no XFF hop here).
    RemoteIp(CidrRange),
    /// `header`.
    Header(HeaderRule),
    /// `url_path`.
    UrlPath(ValueMatch),
}

impl Rbac {
    /// Whether a principal tests `remote_ip` (the address read from `x-forwarded-for`), so
    /// the request path computes that address only for rules that need it.
    pub fn reads_remote_ip(&self) -> bool {
        fn p(x: &Principal) -> bool {
            match x {
                Principal::RemoteIp(_) => true,
                Principal::And(v) | Principal::Or(v) => v.iter().any(p),
                Principal::Not(i) => p(i),
                _ => false,
            }
        }
        self.policies.iter().any(|(_, pol)| pol.principals.iter().any(p))
    }
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC`.
#[derive(Debug, Clone)]
pub struct HttpRbac {
    /// `rules`; `None` = nothing enforced.
    pub rules: Option<Rbac>,
    /// `shadow_rules`: evaluated for stats only.
    pub shadow: Option<Rbac>,
    /// Either rule set tests `remote_ip`.
    pub reads_remote_ip: bool,
}

/// `envoy.extensions.filters.network.rbac.v3.RBAC`.
#[derive(Debug)]
pub struct NetworkRbac {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `rules`.
    pub rules: Option<Rbac>,
    /// `shadow_rules`.
    pub shadow: Option<Rbac>,
    /// Its counters (registered on first use).
    pub stats: super::Stats,
}
