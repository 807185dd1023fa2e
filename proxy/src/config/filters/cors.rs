//! `envoy.extensions.filters.http.cors.v3.CorsPolicy`, as istiod sets it per route from a
//! VirtualService `corsPolicy`.

use http::HeaderValue;

use super::Fraction;
use crate::config::matcher::ValueMatch;

/// One CORS policy.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// `allow_origin_string_match`: an `Origin` matching any of these is allowed.
    pub allow_origins: Vec<ValueMatch>,
    /// `allow_methods` (preflight answer), as configured.
    pub allow_methods: Option<HeaderValue>,
    /// `allow_headers` (preflight answer).
    pub allow_headers: Option<HeaderValue>,
    /// `expose_headers` (actual responses).
    pub expose_headers: Option<HeaderValue>,
    /// `max_age` (preflight answer).
    pub max_age: Option<HeaderValue>,
    /// `allow_credentials`.
    pub allow_credentials: bool,
    /// `filter_enabled` (default 100 %): share of requests the policy is enforced on.
    pub enabled: Fraction,
    /// `shadow_enabled` (default 0 %): share evaluated for stats only.
    pub shadow: Fraction,
    /// `allow_private_network_access`.
    pub allow_private_network_access: bool,
    /// `forward_not_matching_preflights` (default true): a preflight whose origin is not
    /// allowed goes upstream; false answers it locally with 200 and no CORS headers.
    pub forward_not_matching_preflights: bool,
}
