//! `overload_manager` → model: the global downstream connection limit, the fixed heap monitor
//! and the actions its pressure triggers. Other monitors (CPU, cgroup memory), scaled triggers,
//! other actions and load-shed points are refused: a monitor with no action, or an action with
//! no monitor, would be a protection that silently is not there.

use std::time::Duration;

use xds_client::protos::envoy::config::overload::v3 as proto;

use super::common::duration;
use super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::overload::{Action, HeapOverload, Overload};

pub(super) const OVERLOAD: FieldPolicy = FieldPolicy {
    message: "envoy.config.overload.v3.OverloadManager",
    honoured: &["resource_monitors", "refresh_interval", "actions"],
    ignored: &[],
};

pub(super) const OVERLOAD_ACTION: FieldPolicy =
    FieldPolicy { message: "envoy.config.overload.v3.OverloadAction", honoured: &["name", "triggers"], ignored: &[] };

const DOWNSTREAM_CONNECTIONS: &str =
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig";
const FIXED_HEAP: &str = "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig";
const HEAP_MONITOR: &str = "envoy.resource_monitors.fixed_heap";

/// Converts `overload_manager`.
pub fn overload(o: &proto::OverloadManager, path: &Path) -> Result<Overload, ConfigError> {
    use proto::resource_monitor::ConfigType;
    use xds_client::protos::envoy::extensions::resource_monitors::downstream_connections::v3::DownstreamConnectionsConfig;
    use xds_client::protos::envoy::extensions::resource_monitors::fixed_heap::v3::FixedHeapConfig;
    check(o, &OVERLOAD, path)?;
    let mut out = Overload::default();
    let mut heap_max = None;
    for (i, m) in o.resource_monitors.iter().enumerate() {
        let mp = path.field("resource_monitors").item(i, &m.name);
        match &m.config_type {
            Some(ConfigType::TypedConfig(any)) if any.type_url == DOWNSTREAM_CONNECTIONS => {
                let c: DownstreamConnectionsConfig = xds_client::json::unpack(any)
                    .map_err(|e| mp.err_at("typed_config", format!("cannot decode: {e}")))?;
                if c.max_active_downstream_connections <= 0 {
                    return Err(mp
                        .field("typed_config")
                        .err_at("max_active_downstream_connections", "must be greater than 0"));
                }
                out.max_downstream_connections = Some(c.max_active_downstream_connections.unsigned_abs());
            }
            Some(ConfigType::TypedConfig(any)) if any.type_url == FIXED_HEAP => {
                if m.name != HEAP_MONITOR {
                    return Err(mp.err_at("name", format!("the fixed heap monitor is named {HEAP_MONITOR}")));
                }
                let c: FixedHeapConfig = xds_client::json::unpack(any)
                    .map_err(|e| mp.err_at("typed_config", format!("cannot decode: {e}")))?;
                if c.max_heap_size_bytes == 0 {
                    return Err(mp.field("typed_config").err_at("max_heap_size_bytes", "must be greater than 0"));
                }
                heap_max = Some(c.max_heap_size_bytes);
            }
            _ => {
                return Err(mp.err(
                    "only envoy.resource_monitors.global_downstream_max_connections \
                     (DownstreamConnectionsConfig) and envoy.resource_monitors.fixed_heap \
                     (FixedHeapConfig) are supported",
                ))
            }
        }
    }
    let mut actions = Vec::new();
    for (i, a) in o.actions.iter().enumerate() {
        let ap = path.field("actions").item(i, &a.name);
        check(a, &OVERLOAD_ACTION, &ap)?;
        let Some(action) = Action::from_name(&a.name) else {
            return Err(ap.err_at("name", "is not an overload action Isthmus takes (stop_accepting_requests, disable_http_keepalive, stop_accepting_connections, reject_incoming_connections, shrink_heap)"));
        };
        if a.triggers.is_empty() {
            return Err(ap.err_at("triggers", "at least one is required"));
        }
        for (j, t) in a.triggers.iter().enumerate() {
            let tp = ap.field("triggers").item(j, &t.name);
            if t.name != HEAP_MONITOR || heap_max.is_none() {
                return Err(
                    tp.err_at("name", format!("only the configured {HEAP_MONITOR} monitor can trigger an action"))
                );
            }
            match &t.trigger_oneof {
                Some(proto::trigger::TriggerOneof::Threshold(th)) if (0.0..=1.0).contains(&th.value) => {
                    actions.push((action, th.value));
                }
                Some(proto::trigger::TriggerOneof::Threshold(_)) => {
                    return Err(tp.field("threshold").err_at("value", "must be within 0 and 1"));
                }
                _ => return Err(tp.err("only threshold triggers are supported (not scaled)")),
            }
        }
    }
    if let Some(max_bytes) = heap_max {
        let refresh = match &o.refresh_interval {
            Some(d) => duration(d, &path.field("refresh_interval"))?,
            None => Duration::from_secs(1),
        };
        if refresh.is_zero() {
            return Err(path.err_at("refresh_interval", "must be greater than 0"));
        }
        out.heap = Some(HeapOverload { max_bytes, refresh, actions });
    }
    Ok(out)
}
