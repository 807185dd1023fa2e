//! `envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit` → model.

use xds_client::protos::envoy::extensions::filters::network::connection_limit::v3 as proto;

use crate::config::convert::common::duration;
use crate::config::convert::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::connection_limit::ConnectionLimit;

pub(in crate::config::convert) const CONNECTION_LIMIT: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
    honoured: &["stat_prefix", "max_connections", "delay", "runtime_enabled"],
    ignored: &[],
};

/// Converts one filter's config; `max_connections` (at least 1) and `stat_prefix` are required,
/// as Envoy's validation requires them.
pub fn connection_limit(c: &proto::ConnectionLimit, path: &Path) -> Result<ConnectionLimit, ConfigError> {
    check(c, &CONNECTION_LIMIT, path)?;
    if c.stat_prefix.is_empty() {
        return Err(path.err_at("stat_prefix", "is required"));
    }
    let max = match c.max_connections {
        Some(m) if m.value >= 1 => m.value,
        Some(_) => return Err(path.err_at("max_connections", "must be at least 1")),
        None => return Err(path.err_at("max_connections", "is required")),
    };
    let delay = c.delay.as_ref().map(|d| duration(d, &path.field("delay"))).transpose()?.filter(|d| !d.is_zero());
    Ok(ConnectionLimit {
        stat_prefix: c.stat_prefix.clone(),
        max,
        delay,
        enabled: c.runtime_enabled.as_ref().is_none_or(|r| r.default_value.is_none_or(|b| b.value)),
        active: Default::default(),
        stats: Default::default(),
    })
}
