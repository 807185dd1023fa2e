//! `CorsPolicy` → model.

use http::HeaderValue;
use xds_client::protos::envoy::extensions::filters::http::cors::v3 as proto;

use super::super::common::{runtime_fraction, string_matcher};
use super::super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::cors::CorsPolicy;
use crate::config::filters::Fraction;

pub(in crate::config::convert) const CORS_POLICY: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.http.cors.v3.CorsPolicy",
    honoured: &[
        "allow_origin_string_match",
        "allow_methods",
        "allow_headers",
        "expose_headers",
        "max_age",
        "allow_credentials",
        "filter_enabled",
        "shadow_enabled",
        "allow_private_network_access",
        "forward_not_matching_preflights",
    ],
    ignored: &[],
};

/// Converts one `CorsPolicy`.
pub fn cors_policy(c: &proto::CorsPolicy, path: &Path) -> Result<CorsPolicy, ConfigError> {
    check(c, &CORS_POLICY, path)?;
    let allow_origins = c
        .allow_origin_string_match
        .iter()
        .enumerate()
        .map(|(i, m)| string_matcher(m, &path.field("allow_origin_string_match").item(i, "")))
        .collect::<Result<_, _>>()?;
    let value = |s: &str, field: &str| -> Result<Option<HeaderValue>, ConfigError> {
        if s.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(s).map(Some).map_err(|_| path.err_at(field, format!("\"{s}\" is not a header value")))
    };
    Ok(CorsPolicy {
        allow_origins,
        allow_methods: value(&c.allow_methods, "allow_methods")?,
        allow_headers: value(&c.allow_headers, "allow_headers")?,
        expose_headers: value(&c.expose_headers, "expose_headers")?,
        max_age: value(&c.max_age, "max_age")?,
        allow_credentials: c.allow_credentials.is_some_and(|b| b.value),
        enabled: runtime_fraction(c.filter_enabled.as_ref(), Fraction::ALL, &path.field("filter_enabled"))?,
        shadow: runtime_fraction(c.shadow_enabled.as_ref(), Fraction::NONE, &path.field("shadow_enabled"))?,
        allow_private_network_access: c.allow_private_network_access.is_some_and(|b| b.value),
        forward_not_matching_preflights: c.forward_not_matching_preflights.is_none_or(|b| b.value),
    })
}
