//! `/config_dump` in Envoy's own shape (`envoy.admin.v3.ConfigDump`): one entry per config
//! kind, each with `@type`, static and dynamic resources with versions and times, so
//! `istioctl proxy-config` and scripts written against Envoy read it unchanged.
//! `?include_eds` adds endpoints, `?resource=<field>` lists one repeated field's items (each
//! with its own `@type`), `?mask=a.b,c` keeps only those paths of each entry, as Envoy does.

use serde_json::{json, Map, Value};

use super::AdminState;
use crate::dynamic::dump::Entry;
use crate::telemetry::access_log::rfc3339;

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

/// Query options of `/config_dump`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `include_eds`.
    pub include_eds: bool,
    /// `resource=`.
    pub resource: Option<String>,
    /// `mask=`, split on commas.
    pub mask: Vec<String>,
}

impl Query {
    /// Parses the query string (`include_eds` with or without a value).
    pub fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "include_eds" => q.include_eds = true,
                "resource" if !v.is_empty() => q.resource = Some(v.to_string()),
                "mask" if !v.is_empty() => q.mask = v.split(',').map(str::to_string).collect(),
                _ => {}
            }
        }
        q
    }
}

/// Renders the dump, or `Err((status, message))` for a `resource` that names no field.
pub fn render(st: &AdminState, q: &Query) -> Result<Value, (u16, String)> {
    let configs = configs(st, q.include_eds);
    let mut out = match &q.resource {
        None => configs,
        Some(field) => {
            let mut items = Vec::new();
            let mut found = false;
            for c in &configs {
                let Some(list) = c.get(field.as_str()).and_then(Value::as_array) else { continue };
                found = true;
                let item_type = item_type(c, field);
                for it in list {
                    let mut it = it.clone();
                    if let (Value::Object(m), Some(t)) = (&mut it, &item_type) {
                        m.insert("@type".into(), Value::String(t.clone()));
                    }
                    items.push(it);
                }
            }
            if !found {
                return Err((404, format!("{field} not found in config dump")));
            }
            items
        }
    };
    if !q.mask.is_empty() {
        for c in &mut out {
            *c = masked(c, &q.mask);
        }
    }
    let mut dump = json!({ "configs": out });
    super::redact::private_keys(&mut dump);
    Ok(dump)
}

/// The message type of the items of `field` in the dump entry `c` (Envoy names them so).
fn item_type(c: &Value, field: &str) -> Option<String> {
    let parent = c.get("@type")?.as_str()?.strip_prefix(ADMIN)?;
    let item = match (parent, field) {
        ("ListenersConfigDump", "static_listeners") => "ListenersConfigDump.StaticListener",
        ("ListenersConfigDump", "dynamic_listeners") => "ListenersConfigDump.DynamicListener",
        ("ClustersConfigDump", "static_clusters") => "ClustersConfigDump.StaticCluster",
        ("ClustersConfigDump", "dynamic_active_clusters" | "dynamic_warming_clusters") => {
            "ClustersConfigDump.DynamicCluster"
        }
        ("RoutesConfigDump", "static_route_configs") => "RoutesConfigDump.StaticRouteConfig",
        ("RoutesConfigDump", "dynamic_route_configs") => "RoutesConfigDump.DynamicRouteConfig",
        ("SecretsConfigDump", "static_secrets") => "SecretsConfigDump.StaticSecret",
        ("SecretsConfigDump", "dynamic_active_secrets" | "dynamic_warming_secrets") => {
            "SecretsConfigDump.DynamicSecret"
        }
        ("EndpointsConfigDump", "static_endpoint_configs") => "EndpointsConfigDump.StaticEndpointConfig",
        ("EndpointsConfigDump", "dynamic_endpoint_configs") => "EndpointsConfigDump.DynamicEndpointConfig",
        _ => return None,
    };
    Some(format!("{ADMIN}{item}"))
}

/// Keeps only the dotted `paths` of `v` (a FieldMask); `@type` always stays.
fn masked(v: &Value, paths: &[String]) -> Value {
    let mut out = Map::new();
    if let Some(t) = v.get("@type") {
        out.insert("@type".into(), t.clone());
    }
    for p in paths {
        copy_path(v, &mut out, &p.split('.').collect::<Vec<_>>());
    }
    Value::Object(out)
}

fn copy_path(src: &Value, dst: &mut Map<String, Value>, path: &[&str]) {
    let Some((head, rest)) = path.split_first() else { return };
    let Some(child) = src.get(*head) else { return };
    if rest.is_empty() {
        dst.insert((*head).to_string(), child.clone());
        return;
    }
    match child {
        Value::Object(_) => {
            // An `Any` keeps its `@type` through the mask, as Envoy prints it.
            let slot = dst.entry((*head).to_string()).or_insert_with(|| Value::Object(typed_shell(child)));
            if let Value::Object(m) = slot {
                copy_path(child, m, rest);
            }
        }
        // A mask through a repeated field applies to each item (Envoy's FieldMaskUtil).
        Value::Array(items) => {
            let trimmed: Vec<Value> = items
                .iter()
                .map(|it| {
                    let mut m = typed_shell(it);
                    copy_path(it, &mut m, rest);
                    Value::Object(m)
                })
                .collect();
            dst.insert((*head).to_string(), Value::Array(trimmed));
        }
        _ => {}
    }
}

fn typed_shell(v: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(t) = v.get("@type") {
        m.insert("@type".into(), t.clone());
    }
    m
}

fn configs(st: &AdminState, include_eds: bool) -> Vec<Value> {
    let when = rfc3339(st.applied);
    let src = &st.bootstrap.source;
    let statics = |key: &str| -> Vec<Value> {
        src.pointer(&format!("/static_resources/{key}")).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let typed = |mut v: Value, t: &str| {
        if let Value::Object(m) = &mut v {
            m.entry("@type").or_insert_with(|| Value::String(format!("type.googleapis.com/{t}")));
        }
        v
    };
    let d = &st.dynamic;
    let dynamic = |kind: &str| d.of_kind(kind);

    let static_clusters: Vec<_> = statics("clusters")
        .into_iter()
        .map(|c| json!({"cluster": typed(c, "envoy.config.cluster.v3.Cluster"), "last_updated": when}))
        .collect();
    let dynamic_clusters: Vec<_> = dynamic("cds")
        .into_iter()
        .filter(|(_, e)| !e.resource.is_null())
        .map(|(_, e)| {
            with_error(
                json!({"version_info": e.version_info, "cluster": e.resource, "last_updated": e.last_updated}),
                &e,
            )
        })
        .collect();

    let static_listeners: Vec<_> = statics("listeners")
        .into_iter()
        .map(|l| json!({"listener": typed(l, "envoy.config.listener.v3.Listener"), "last_updated": when}))
        .collect();
    let dynamic_listeners: Vec<_> = dynamic("lds")
        .into_iter()
        .map(|(name, e)| {
            let mut l = json!({"name": name});
            if !e.resource.is_null() {
                l["active_state"] =
                    json!({"version_info": e.version_info, "listener": e.resource, "last_updated": e.last_updated});
            }
            if let Some(r) = &e.error_state {
                l["error_state"] = json!({"details": r.details, "last_update_attempt": r.last_update_attempt});
            }
            l
        })
        .collect();

    let dynamic_routes: Vec<_> = dynamic("rds")
        .into_iter()
        .filter(|(_, e)| !e.resource.is_null())
        .map(|(_, e)| {
            with_error(
                json!({"version_info": e.version_info, "route_config": e.resource, "last_updated": e.last_updated}),
                &e,
            )
        })
        .collect();

    let static_secrets: Vec<_> = statics("secrets")
        .into_iter()
        .map(|s| {
            let name = s.get("name").cloned().unwrap_or_default();
            json!({"name": name, "last_updated": when, "secret": typed(s, "envoy.extensions.transport_sockets.tls.v3.Secret")})
        })
        .collect();
    let dynamic_secrets: Vec<_> = dynamic("sds")
        .into_iter()
        .filter(|(_, e)| !e.resource.is_null())
        .map(|(name, e)| json!({"name": name, "version_info": e.version_info, "last_updated": e.last_updated, "secret": e.resource}))
        .collect();

    let mut out = vec![
        json!({"@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": src, "last_updated": when}),
        json!({
            "@type": format!("{ADMIN}ClustersConfigDump"),
            "version_info": d.version("cds"),
            "static_clusters": static_clusters,
            "dynamic_active_clusters": dynamic_clusters,
        }),
        json!({
            "@type": format!("{ADMIN}ListenersConfigDump"),
            "version_info": d.version("lds"),
            "static_listeners": static_listeners,
            "dynamic_listeners": dynamic_listeners,
        }),
        json!({"@type": format!("{ADMIN}ScopedRoutesConfigDump")}),
        json!({"@type": format!("{ADMIN}RoutesConfigDump"), "dynamic_route_configs": dynamic_routes}),
        json!({
            "@type": format!("{ADMIN}SecretsConfigDump"),
            "static_secrets": static_secrets,
            "dynamic_active_secrets": dynamic_secrets,
        }),
    ];
    if include_eds {
        let eps: Vec<_> = dynamic("eds")
            .into_iter()
            .filter(|(_, e)| !e.resource.is_null())
            .map(|(_, e)| json!({"version_info": e.version_info, "endpoint_config": e.resource, "last_updated": e.last_updated}))
            .collect();
        out.push(json!({"@type": format!("{ADMIN}EndpointsConfigDump"), "dynamic_endpoint_configs": eps}));
    }
    // Drop empty lists as Envoy's proto JSON does (an unset repeated field is not printed).
    for c in &mut out {
        if let Value::Object(m) = c {
            m.retain(|_, v| {
                !matches!(v, Value::Array(a) if a.is_empty()) && !matches!(v, Value::String(s) if s.is_empty())
            });
        }
    }
    out
}

fn with_error(mut v: Value, e: &Entry) -> Value {
    if let Some(r) = &e.error_state {
        v["error_state"] = json!({"details": r.details, "last_update_attempt": r.last_update_attempt});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_mask() {
        let q = Query::parse("include_eds&resource=dynamic_active_clusters&mask=cluster.name,version_info");
        assert!(q.include_eds);
        assert_eq!(q.resource.as_deref(), Some("dynamic_active_clusters"));
        let v =
            json!({"@type": "t", "version_info": "1", "cluster": {"name": "a", "type": "EDS"}, "last_updated": "x"});
        assert_eq!(masked(&v, &q.mask), json!({"@type": "t", "version_info": "1", "cluster": {"name": "a"}}));
        let v = json!({"listener": {"filter_chains": [{"name": "a", "filters": []}, {"name": "b"}]}});
        assert_eq!(
            masked(&v, &["listener.filter_chains.name".into()]),
            json!({"listener": {"filter_chains": [{"name": "a"}, {"name": "b"}]}})
        );
    }
}
