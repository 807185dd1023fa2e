//! RBAC (HTTP and network filters, and the rules they share) → model.

use xds_client::protos::envoy::config::rbac::v3 as proto;
use xds_client::protos::envoy::extensions::filters::http::rbac::v3 as http_proto;
use xds_client::protos::envoy::extensions::filters::network::rbac::v3 as net_proto;
use xds_client::protos::envoy::r#type::matcher::v3::PathMatcher;

use super::super::common::{cidr, string_matcher};
use super::super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::config::filters::rbac::{
    Action, HeaderKey, HeaderRule, HttpRbac, NetworkRbac, Permission, Policy, Principal, Rbac,
};
use crate::config::matcher::ValueMatch;

pub(in crate::config::convert) const HTTP_RBAC: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.http.rbac.v3.RBAC",
    honoured: &["rules", "shadow_rules"],
    // Per-policy counters are not kept, and the counters carry the HCM's prefix label: the
    // rule prefixes only rename Envoy's counters.
    ignored: &["track_per_rule_stats", "rules_stat_prefix", "shadow_rules_stat_prefix"],
};

pub(in crate::config::convert) const NETWORK_RBAC: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.filters.network.rbac.v3.RBAC",
    honoured: &["rules", "stat_prefix", "shadow_rules", "enforcement_type"],
    // The shadow counters carry the filter's `stat_prefix` label; the shadow prefix only
    // renames Envoy's counters.
    ignored: &["shadow_rules_stat_prefix"],
};

pub(in crate::config::convert) const RBAC: FieldPolicy = FieldPolicy {
    message: "envoy.config.rbac.v3.RBAC",
    honoured: &["action", "policies"],
    // Audit loggers are extension points for external sinks; Istio's AUDIT is `action: LOG`.
    ignored: &["audit_logging_options"],
};

pub(in crate::config::convert) const POLICY: FieldPolicy =
    FieldPolicy { message: "envoy.config.rbac.v3.Policy", honoured: &["permissions", "principals"], ignored: &[] };

pub(in crate::config::convert) const AUTHENTICATED: FieldPolicy = FieldPolicy {
    message: "envoy.config.rbac.v3.Principal.Authenticated",
    honoured: &["principal_name"],
    ignored: &[],
};

/// Converts the HTTP filter's config.
pub fn http_rbac(r: &http_proto::Rbac, path: &Path) -> Result<HttpRbac, ConfigError> {
    check(r, &HTTP_RBAC, path)?;
    let rules = r.rules.as_ref().map(|x| rbac(x, &path.field("rules"))).transpose()?;
    let shadow = r.shadow_rules.as_ref().map(|x| rbac(x, &path.field("shadow_rules"))).transpose()?;
    let reads_remote_ip = rules.iter().chain(shadow.iter()).any(Rbac::reads_remote_ip);
    Ok(HttpRbac { rules, shadow, reads_remote_ip })
}

/// Converts the network filter's config.
pub fn network_rbac(r: &net_proto::Rbac, path: &Path) -> Result<NetworkRbac, ConfigError> {
    check(r, &NETWORK_RBAC, path)?;
    if r.stat_prefix.is_empty() {
        return Err(path.err_at("stat_prefix", "is required"));
    }
    if r.enforcement_type != 0 {
        // CONTINUOUS re-checks on every read for dynamic metadata set by later filters;
        // Isthmus has no filter that sets any, so ONE_TIME_ON_FIRST_BYTE is the only mode.
        return Err(path.err_at("enforcement_type", "only ONE_TIME_ON_FIRST_BYTE is supported"));
    }
    Ok(NetworkRbac {
        stat_prefix: r.stat_prefix.clone(),
        rules: r.rules.as_ref().map(|x| rbac(x, &path.field("rules"))).transpose()?,
        shadow: r.shadow_rules.as_ref().map(|x| rbac(x, &path.field("shadow_rules"))).transpose()?,
        stats: Default::default(),
    })
}

fn rbac(r: &proto::Rbac, path: &Path) -> Result<Rbac, ConfigError> {
    check(r, &RBAC, path)?;
    let action = match proto::rbac::Action::try_from(r.action) {
        Ok(proto::rbac::Action::Allow) => Action::Allow,
        Ok(proto::rbac::Action::Deny) => Action::Deny,
        Ok(proto::rbac::Action::Log) => Action::Log,
        Err(_) => return Err(path.err_at("action", format!("unknown action {}", r.action))),
    };
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let Some(p) = r.policies.get(name) else { continue };
        let pp = path.field("policies").key(name);
        check(p, &POLICY, &pp)?;
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, x)| permission(x, &pp.field("permissions").item(i, "")))
            .collect::<Result<_, _>>()?;
        let principals = p
            .principals
            .iter()
            .enumerate()
            .map(|(i, x)| principal(x, &pp.field("principals").item(i, "")))
            .collect::<Result<_, _>>()?;
        policies.push((name.clone(), Policy { permissions, principals }));
    }
    Ok(Rbac { action, policies })
}

/// A header rule: the route's header matcher, with pseudo-headers (`:method` is how istiod
/// sends `to.operation.methods`) read from the request line.
fn header_rule(
    h: &xds_client::protos::envoy::config::route::v3::HeaderMatcher,
    path: &Path,
) -> Result<HeaderRule, ConfigError> {
    let key = match h.name.as_str() {
        ":method" => HeaderKey::Method,
        ":path" => HeaderKey::Path,
        ":authority" | "host" => HeaderKey::Authority,
        ":scheme" => HeaderKey::Scheme,
        n if n.starts_with(':') => return Err(path.err_at("name", format!("pseudo-header {n} is not supported"))),
        n => HeaderKey::Named(super::super::common::header_name(n, &path.field("name"))?),
    };
    let (test, invert) = super::super::route::header_test(h, path)?;
    Ok(HeaderRule { key, test, invert })
}

fn url_path(m: &PathMatcher, path: &Path) -> Result<ValueMatch, ConfigError> {
    use xds_client::protos::envoy::r#type::matcher::v3::path_matcher::Rule;
    match &m.rule {
        Some(Rule::Path(s)) => string_matcher(s, &path.field("path")),
        None => Err(path.err_at("path", "is required")),
    }
}

#[allow(deprecated)]
fn permission(p: &proto::Permission, path: &Path) -> Result<Permission, ConfigError> {
    use proto::permission::Rule as R;
    let set = |rules: &[proto::Permission], f: &str| -> Result<Vec<Permission>, ConfigError> {
        rules.iter().enumerate().map(|(i, x)| permission(x, &path.field(f).field("rules").item(i, ""))).collect()
    };
    Ok(match &p.rule {
        Some(R::Any(true)) => Permission::Any,
        Some(R::AndRules(s)) => Permission::And(set(&s.rules, "and_rules")?),
        Some(R::OrRules(s)) => Permission::Or(set(&s.rules, "or_rules")?),
        Some(R::NotRule(x)) => Permission::Not(Box::new(permission(x, &path.field("not_rule"))?)),
        Some(R::Header(h)) => Permission::Header(header_rule(h, &path.field("header"))?),
        Some(R::UrlPath(m)) => Permission::UrlPath(url_path(m, &path.field("url_path"))?),
        Some(R::DestinationIp(c)) => Permission::DestinationIp(cidr(c, &path.field("destination_ip"))?),
        Some(R::DestinationPort(p)) => Permission::DestinationPort(
            u16::try_from(*p).map_err(|_| path.err_at("destination_port", format!("{p} is not a port")))?,
        ),
        Some(R::DestinationPortRange(r)) => {
            let ok = 0 <= r.start && r.start < r.end && r.end <= 65_536;
            let (Ok(lo), Ok(hi)) = (u32::try_from(r.start), u32::try_from(r.end)) else {
                return Err(
                    path.err_at("destination_port_range", format!("[{}, {}) is not a port range", r.start, r.end))
                );
            };
            if !ok {
                return Err(
                    path.err_at("destination_port_range", format!("[{}, {}) is not a port range", r.start, r.end))
                );
            }
            Permission::DestinationPortRange(lo, hi)
        }
        Some(R::RequestedServerName(m)) => {
            Permission::ServerName(string_matcher(m, &path.field("requested_server_name"))?)
        }
        Some(R::Any(false)) | None => return Err(path.err("a rule is required (any: false matches nothing)")),
        Some(R::Metadata(_)) => return Err(unsupported(path, "metadata")),
        Some(R::Matcher(_)) => return Err(unsupported(path, "matcher")),
        Some(R::UriTemplate(_)) => return Err(unsupported(path, "uri_template")),
        Some(R::SourcedMetadata(_)) => return Err(unsupported(path, "sourced_metadata")),
    })
}

fn principal(p: &proto::Principal, path: &Path) -> Result<Principal, ConfigError> {
    use proto::principal::Identifier as I;
    let set = |ids: &[proto::Principal], f: &str| -> Result<Vec<Principal>, ConfigError> {
        ids.iter().enumerate().map(|(i, x)| principal(x, &path.field(f).field("ids").item(i, ""))).collect()
    };
    #[allow(deprecated)]
    Ok(match &p.identifier {
        Some(I::Any(true)) => Principal::Any,
        Some(I::AndIds(s)) => Principal::And(set(&s.ids, "and_ids")?),
        Some(I::OrIds(s)) => Principal::Or(set(&s.ids, "or_ids")?),
        Some(I::NotId(x)) => Principal::Not(Box::new(principal(x, &path.field("not_id"))?)),
        Some(I::Authenticated(a)) => {
            let ap = path.field("authenticated");
            check(a, &AUTHENTICATED, &ap)?;
            Principal::Authenticated(
                a.principal_name.as_ref().map(|m| string_matcher(m, &ap.field("principal_name"))).transpose()?,
            )
        }
        Some(I::SourceIp(c)) => Principal::DirectRemoteIp(cidr(c, &path.field("source_ip"))?),
        Some(I::DirectRemoteIp(c)) => Principal::DirectRemoteIp(cidr(c, &path.field("direct_remote_ip"))?),
        Some(I::RemoteIp(c)) => Principal::RemoteIp(cidr(c, &path.field("remote_ip"))?),
        Some(I::Header(h)) => Principal::Header(header_rule(h, &path.field("header"))?),
        Some(I::UrlPath(m)) => Principal::UrlPath(url_path(m, &path.field("url_path"))?),
        Some(I::Any(false)) | None => return Err(path.err("an identifier is required (any: false matches nothing)")),
        Some(I::Metadata(_)) => return Err(unsupported(path, "metadata")),
        Some(I::FilterState(_)) => return Err(unsupported(path, "filter_state")),
        Some(I::SourcedMetadata(_)) => return Err(unsupported(path, "sourced_metadata")),
        Some(I::Custom(_)) => return Err(unsupported(path, "custom")),
    })
}

/// Rules that read what only other Envoy filters produce (JWT claims in dynamic metadata,
/// filter state, CEL): refused, since a rule that can never see its input would silently
/// allow or deny everything.
fn unsupported(path: &Path, field: &str) -> ConfigError {
    path.err_at(
        field,
        "is not supported (it reads metadata or filter state that no Isthmus filter produces; JWT-based \
         AuthorizationPolicy conditions need request authentication, which Isthmus does not have)",
    )
}
