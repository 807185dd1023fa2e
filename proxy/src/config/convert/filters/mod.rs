//! The policy filters: the HCM's HTTP filters, a route's `typed_per_filter_config`, and the
//! network filters before a chain's terminal filter. Each filter type is recognised by its
//! type URL (sent directly or in a TypedStruct) and converted by its own module.

pub mod connection_limit;
pub mod cors;
pub mod fault;
pub mod rate_limit;
pub mod rbac;

use std::sync::Arc;

use xds_client::protos::google::protobuf::Any;

use super::common::{effective_type, unpack_typed};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::{HttpFilterKind, NetworkPolicy, PerFilter, RouteFilterConfig};

const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
const CORS_POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const HTTP_RBAC_PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
const HTTP_LOCAL_RATE_LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const NETWORK_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const NETWORK_LOCAL_RATE_LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";
const CONNECTION_LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit";
const FILTER_CONFIG: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

/// An HCM HTTP filter Isthmus runs, or `None` when `any` is not one of them.
pub fn http_filter(any: &Any, path: &Path) -> Result<Option<HttpFilterKind>, ConfigError> {
    use xds_client::protos::envoy::extensions::filters::http as f;
    Ok(Some(match effective_type(any).as_str() {
        FAULT => {
            HttpFilterKind::Fault(Arc::new(fault::fault(&unpack_typed::<f::fault::v3::HttpFault>(any, path)?, path)?))
        }
        CORS => {
            // `Cors` has no fields: policies live on routes and virtual hosts.
            unpack_typed::<f::cors::v3::Cors>(any, path)?;
            HttpFilterKind::Cors
        }
        HTTP_RBAC => HttpFilterKind::Rbac(Arc::new(rbac::http_rbac(&unpack_typed(any, path)?, path)?)),
        HTTP_LOCAL_RATE_LIMIT => HttpFilterKind::LocalRateLimit(Arc::new(rate_limit::http_local_rate_limit(
            &unpack_typed(any, path)?,
            path,
        )?)),
        _ => return Ok(None),
    }))
}

/// A non-terminal network filter Isthmus enforces, or `None` when `any` is not one of them.
pub fn network_filter(any: &Any, path: &Path) -> Result<Option<NetworkPolicy>, ConfigError> {
    Ok(Some(match effective_type(any).as_str() {
        NETWORK_RBAC => NetworkPolicy::Rbac(Arc::new(rbac::network_rbac(&unpack_typed(any, path)?, path)?)),
        NETWORK_LOCAL_RATE_LIMIT => NetworkPolicy::LocalRateLimit(Arc::new(rate_limit::network_local_rate_limit(
            &unpack_typed(any, path)?,
            path,
        )?)),
        CONNECTION_LIMIT => NetworkPolicy::ConnectionLimit(Arc::new(connection_limit::connection_limit(
            &unpack_typed(any, path)?,
            path,
        )?)),
        _ => return Ok(None),
    }))
}

/// `typed_per_filter_config` of a virtual host or route. Every entry must be a type one of
/// Isthmus' filters reads: an override for a filter Isthmus does not run would be a policy
/// silently unapplied, so it is refused with its key.
pub fn per_filter(map: &std::collections::HashMap<String, Any>, path: &Path) -> Result<PerFilter, ConfigError> {
    use xds_client::protos::envoy::extensions::filters::http as f;
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(outer) = map.get(key) else { continue };
        let kp = path.field("typed_per_filter_config").key(key);
        let mut any = outer.clone();
        if outer.type_url == FILTER_CONFIG {
            let fc: xds_client::protos::envoy::config::route::v3::FilterConfig = unpack_typed(outer, &kp)?;
            if fc.disabled {
                out.push((key.clone(), RouteFilterConfig::Disabled));
                continue;
            }
            match fc.config {
                Some(inner) => any = inner,
                None if fc.is_optional => continue,
                None => return Err(kp.err_at("config", "is required unless disabled")),
            }
        }
        let cfg = match effective_type(&any).as_str() {
            FAULT => RouteFilterConfig::Fault(Arc::new(fault::fault(&unpack_typed(&any, &kp)?, &kp)?)),
            CORS_POLICY => RouteFilterConfig::Cors(Arc::new(cors::cors_policy(&unpack_typed(&any, &kp)?, &kp)?)),
            HTTP_RBAC_PER_ROUTE => {
                let r: f::rbac::v3::RbacPerRoute = unpack_typed(&any, &kp)?;
                RouteFilterConfig::Rbac(
                    r.rbac.as_ref().map(|x| rbac::http_rbac(x, &kp.field("rbac"))).transpose()?.map(Arc::new),
                )
            }
            HTTP_LOCAL_RATE_LIMIT => RouteFilterConfig::LocalRateLimit(Arc::new(rate_limit::http_local_rate_limit(
                &unpack_typed(&any, &kp)?,
                &kp,
            )?)),
            other => {
                return Err(kp.err(format!(
                    "{other} is not a per-route config Isthmus reads (fault, CORS policy, RBAC per route and \
                     local rate limit are); refused so the policy is never silently unapplied"
                )))
            }
        };
        out.push((key.clone(), cfg));
    }
    Ok(PerFilter(out))
}
