//! Local rate limits (HTTP and network) → model.

use http::StatusCode;
use xds_client::protos::envoy::extensions::filters::http::local_ratelimit::v3 as http_proto;
use xds_client::protos::envoy::extensions::filters::network::local_ratelimit::v3 as net_proto;
use xds_client::protos::envoy::r#type::v3::TokenBucket as ProtoBucket;

use super::super::common::{duration, header_adds, runtime_fraction};
use super::super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::rate_limit::{Bucket, HttpLocalRateLimit, NetworkLocalRateLimit};
use crate::config::filters::Fraction;
use crate::policy::token_bucket::TokenBucket;

pub(in crate::config::convert) const HTTP_LOCAL_RATE_LIMIT: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    honoured: &[
        "stat_prefix",
        "status",
        "token_bucket",
        "filter_enabled",
        "filter_enforced",
        "request_headers_to_add_when_not_enforced",
        "response_headers_to_add",
        "enable_x_ratelimit_headers",
        "rate_limited_as_resource_exhausted",
    ],
    // `stage` orders global rate-limit actions (none here); `vh_rate_limits` and
    // `always_consume_default_token_bucket` only matter with descriptors, which are refused.
    ignored: &["stage", "vh_rate_limits", "always_consume_default_token_bucket"],
};

pub(in crate::config::convert) const NETWORK_LOCAL_RATE_LIMIT: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    honoured: &["stat_prefix", "token_bucket", "runtime_enabled"],
    ignored: &[],
};

pub(in crate::config::convert) const TOKEN_BUCKET: FieldPolicy = FieldPolicy {
    message: "envoy.type.v3.TokenBucket",
    honoured: &["max_tokens", "tokens_per_fill", "fill_interval"],
    ignored: &[],
};

fn bucket(b: &ProtoBucket, path: &Path) -> Result<Bucket, ConfigError> {
    check(b, &TOKEN_BUCKET, path)?;
    if b.max_tokens == 0 {
        return Err(path.err_at("max_tokens", "must be greater than 0"));
    }
    let tokens_per_fill = b.tokens_per_fill.map_or(1, |v| v.value);
    if tokens_per_fill == 0 {
        return Err(path.err_at("tokens_per_fill", "must be greater than 0"));
    }
    let Some(fi) = &b.fill_interval else { return Err(path.err_at("fill_interval", "is required")) };
    let fill_interval = duration(fi, &path.field("fill_interval"))?;
    if fill_interval.is_zero() {
        return Err(path.err_at("fill_interval", "must be greater than 0"));
    }
    Ok(Bucket { max_tokens: b.max_tokens, tokens_per_fill, fill_interval })
}

/// Converts the HTTP filter's config (listener level or one route's).
pub fn http_local_rate_limit(l: &http_proto::LocalRateLimit, path: &Path) -> Result<HttpLocalRateLimit, ConfigError> {
    check(l, &HTTP_LOCAL_RATE_LIMIT, path)?;
    if l.stat_prefix.is_empty() {
        return Err(path.err_at("stat_prefix", "is required"));
    }
    let shape = l.token_bucket.as_ref().map(|b| bucket(b, &path.field("token_bucket"))).transpose()?;
    let status = match l.status.as_ref().map(|s| s.code) {
        None | Some(0) => StatusCode::TOO_MANY_REQUESTS,
        Some(c) => u16::try_from(c)
            .ok()
            .filter(|c| *c >= 400)
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| path.field("status").err_at("code", format!("{c} is not an error status (>= 400)")))?,
    };
    Ok(HttpLocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        bucket: shape,
        tokens: TokenBucket::new(shape),
        enabled: runtime_fraction(l.filter_enabled.as_ref(), Fraction::NONE, &path.field("filter_enabled"))?,
        enforced: runtime_fraction(l.filter_enforced.as_ref(), Fraction::NONE, &path.field("filter_enforced"))?,
        status,
        response_headers: header_adds(&l.response_headers_to_add, &path.field("response_headers_to_add"))?,
        request_headers_when_not_enforced: header_adds(
            &l.request_headers_to_add_when_not_enforced,
            &path.field("request_headers_to_add_when_not_enforced"),
        )?,
        x_ratelimit_headers: match l.enable_x_ratelimit_headers {
            0 => false,
            1 => true,
            n => return Err(path.err_at("enable_x_ratelimit_headers", format!("unknown value {n}"))),
        },
        grpc_resource_exhausted: l.rate_limited_as_resource_exhausted,
        stats: Default::default(),
    })
}

/// Converts the network filter's config.
pub fn network_local_rate_limit(
    l: &net_proto::LocalRateLimit,
    path: &Path,
) -> Result<NetworkLocalRateLimit, ConfigError> {
    check(l, &NETWORK_LOCAL_RATE_LIMIT, path)?;
    if l.stat_prefix.is_empty() {
        return Err(path.err_at("stat_prefix", "is required"));
    }
    let Some(b) = &l.token_bucket else { return Err(path.err_at("token_bucket", "is required")) };
    let shape = bucket(b, &path.field("token_bucket"))?;
    Ok(NetworkLocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        bucket: shape,
        tokens: TokenBucket::new(Some(shape)),
        enabled: l.runtime_enabled.as_ref().is_none_or(|r| r.default_value.is_none_or(|b| b.value)),
        stats: Default::default(),
    })
}
