//! `RouteConfiguration` → model: virtual hosts, matches, actions, retries, header edits.

use std::time::Duration;

use http::StatusCode;
use xds_client::protos::envoy::config::route::v3 as proto;

use super::common::{duration, header_adds, header_name, header_removes, regex, string_matcher, timeout};
use super::fields::{check, FieldPolicy};
use super::Resources;
use crate::config::cluster::{ClusterTarget, WeightedCluster};
use crate::config::error::{ConfigError, Path};
use crate::config::matcher::ValueMatch;
use crate::config::route::*;

pub(super) const ROUTE_CONFIG: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RouteConfiguration",
    honoured: &[
        "name",
        "virtual_hosts",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
        "ignore_port_in_host_matching",
        "validate_clusters",
    ],
    ignored: &["most_specific_header_mutations_wins", "max_direct_response_body_size_bytes"],
};

pub(super) const VIRTUAL_HOST: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.VirtualHost",
    honoured: &[
        "name",
        "domains",
        "routes",
        "retry_policy",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
        "typed_per_filter_config",
    ],
    ignored: &["include_request_attempt_count", "include_attempt_count_in_response"],
};

pub(super) const ROUTE: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.Route",
    honoured: &[
        "name",
        "match",
        "route",
        "redirect",
        "direct_response",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
        "typed_per_filter_config",
        "decorator",
    ],
    ignored: &["metadata", "stat_prefix"],
};

pub(super) const DECORATOR: FieldPolicy =
    FieldPolicy { message: "envoy.config.route.v3.Decorator", honoured: &["operation", "propagate"], ignored: &[] };

pub(super) const ROUTE_MATCH: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RouteMatch",
    honoured: &[
        "prefix",
        "path",
        "safe_regex",
        "path_separated_prefix",
        "case_sensitive",
        "headers",
        "query_parameters",
        "grpc",
    ],
    ignored: &[],
};

pub(super) const ROUTE_ACTION: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RouteAction",
    honoured: &[
        "cluster",
        "weighted_clusters",
        "prefix_rewrite",
        "host_rewrite_literal",
        "timeout",
        "retry_policy",
        "hash_policy",
        "idle_timeout",
        "max_stream_duration",
        "max_grpc_timeout",
    ],
    ignored: &["upgrade_configs", "cluster_not_found_response_code", "priority"],
};

pub(super) const RETRY_POLICY: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RetryPolicy",
    honoured: &[
        "retry_on",
        "num_retries",
        "per_try_timeout",
        "retriable_status_codes",
        "retry_back_off",
        "retry_host_predicate",
        "host_selection_retry_max_attempts",
    ],
    ignored: &[],
};

pub(super) const CLUSTER_WEIGHT: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.WeightedCluster.ClusterWeight",
    honoured: &["name", "weight"],
    ignored: &[],
};

pub(super) const REDIRECT: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RedirectAction",
    honoured: &[
        "https_redirect",
        "scheme_redirect",
        "host_redirect",
        "port_redirect",
        "path_redirect",
        "prefix_rewrite",
        "response_code",
        "strip_query",
    ],
    ignored: &[],
};

/// Converts a route table.
pub fn route_config(rc: &proto::RouteConfiguration, path: &Path, res: &Resources) -> Result<RouteConfig, ConfigError> {
    check(rc, &ROUTE_CONFIG, path)?;
    // `validate_clusters: false`: routes may name clusters that arrive later over CDS (a
    // missing one answers 503 NC at request time), as in Envoy.
    let unchecked = Resources::lenient();
    let res = if rc.validate_clusters.is_some_and(|v| !v.value) { &unchecked } else { res };
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        virtual_hosts.push(virtual_host(vh, &path.field("virtual_hosts").item(i, &vh.name), res)?);
    }
    Ok(RouteConfig {
        name: rc.name.clone(),
        virtual_hosts,
        edits: edits(
            (&rc.request_headers_to_add, &rc.request_headers_to_remove),
            (&rc.response_headers_to_add, &rc.response_headers_to_remove),
            path,
        )?,
        ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
    })
}

type Adds<'a> = (&'a [xds_client::protos::envoy::config::core::v3::HeaderValueOption], &'a [String]);

fn edits(req: Adds<'_>, resp: Adds<'_>, path: &Path) -> Result<HeaderEdits, ConfigError> {
    Ok(HeaderEdits {
        request_add: header_adds(req.0, &path.field("request_headers_to_add"))?,
        request_remove: header_removes(req.1, &path.field("request_headers_to_remove"))?,
        response_add: header_adds(resp.0, &path.field("response_headers_to_add"))?,
        response_remove: header_removes(resp.1, &path.field("response_headers_to_remove"))?,
    })
}

fn virtual_host(vh: &proto::VirtualHost, path: &Path, res: &Resources) -> Result<VirtualHost, ConfigError> {
    check(vh, &VIRTUAL_HOST, path)?;
    let per_filter = super::filters::per_filter(&vh.typed_per_filter_config, path)?;
    if vh.domains.is_empty() {
        return Err(path.err_at("domains", "at least one domain is required"));
    }
    let domains = vh
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| domain(d, &path.field("domains").item(i, "")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (i, r) in vh.routes.iter().enumerate() {
        routes.push(route(r, &path.field("routes").item(i, &r.name), res)?);
    }
    Ok(VirtualHost {
        name: vh.name.clone(),
        domains,
        routes,
        edits: edits(
            (&vh.request_headers_to_add, &vh.request_headers_to_remove),
            (&vh.response_headers_to_add, &vh.response_headers_to_remove),
            path,
        )?,
        retry_policy: vh.retry_policy.as_ref().map(|r| retry_policy(r, &path.field("retry_policy"))).transpose()?,
        per_filter,
    })
}

fn domain(d: &str, path: &Path) -> Result<DomainPattern, ConfigError> {
    let d = d.to_ascii_lowercase();
    if d == "*" {
        return Ok(DomainPattern::Any);
    }
    let stars = d.matches('*').count();
    if stars == 0 {
        return Ok(DomainPattern::Exact(d));
    }
    if stars == 1 {
        if let Some(s) = d.strip_prefix('*') {
            return Ok(DomainPattern::Suffix(s.to_string()));
        }
        if let Some(p) = d.strip_suffix('*') {
            return Ok(DomainPattern::Prefix(p.to_string()));
        }
    }
    Err(path.err(format!("\"{d}\": a wildcard may only stand at the start or the end")))
}

fn route(r: &proto::Route, path: &Path, res: &Resources) -> Result<Route, ConfigError> {
    use proto::route::Action;
    check(r, &ROUTE, path)?;
    let per_filter = super::filters::per_filter(&r.typed_per_filter_config, path)?;
    let Some(m) = &r.r#match else { return Err(path.err_at("match", "is required")) };
    let matcher = route_match(m, &path.field("match"))?;
    let action = match &r.action {
        Some(Action::Route(a)) => RouteAction::Forward(Box::new(forward(a, &path.field("route"), res)?)),
        Some(Action::DirectResponse(d)) => direct(d, &path.field("direct_response"))?,
        Some(Action::Redirect(rd)) => RouteAction::Redirect(redirect(rd, &path.field("redirect"))?),
        Some(_) => return Err(path.err("only route, redirect and direct_response actions are supported")),
        None => return Err(path.err("an action (route, redirect, direct_response) is required")),
    };
    let decorator = match &r.decorator {
        None => None,
        Some(d) => {
            let dp = path.field("decorator");
            check(d, &DECORATOR, &dp)?;
            if d.operation.is_empty() {
                return Err(dp.err_at("operation", "is required"));
            }
            Some(crate::config::route::Decorator {
                operation: d.operation.clone(),
                propagate: d.propagate.is_none_or(|b| b.value),
            })
        }
    };
    Ok(Route {
        name: r.name.clone(),
        matcher,
        action,
        decorator,
        per_filter,
        edits: edits(
            (&r.request_headers_to_add, &r.request_headers_to_remove),
            (&r.response_headers_to_add, &r.response_headers_to_remove),
            path,
        )?,
    })
}

fn route_match(m: &proto::RouteMatch, path: &Path) -> Result<RouteMatch, ConfigError> {
    use proto::route_match::PathSpecifier as P;
    check(m, &ROUTE_MATCH, path)?;
    let pm = match &m.path_specifier {
        Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(P::Path(p)) => PathMatch::Exact(p.clone()),
        Some(P::SafeRegex(r)) => PathMatch::Regex(regex(r, &path.field("safe_regex"))?),
        Some(P::PathSeparatedPrefix(p)) => PathMatch::PathSeparatedPrefix(p.clone()),
        Some(_) => return Err(path.err("only prefix, path, safe_regex and path_separated_prefix are supported")),
        None => return Err(path.err("a path specifier (prefix, path, safe_regex) is required")),
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.iter().enumerate() {
        headers.push(header_matcher(h, &path.field("headers").item(i, &h.name))?);
    }
    let mut query_parameters = Vec::with_capacity(m.query_parameters.len());
    for (i, q) in m.query_parameters.iter().enumerate() {
        use proto::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
        let qp = path.field("query_parameters").item(i, &q.name);
        let test = match &q.query_parameter_match_specifier {
            Some(Q::StringMatch(s)) => string_matcher(s, &qp.field("string_match"))?,
            Some(Q::PresentMatch(b)) => ValueMatch::Present(*b),
            None => ValueMatch::Present(true),
        };
        query_parameters.push(QueryMatcher { name: q.name.clone(), test });
    }
    Ok(RouteMatch {
        path: pm,
        case_sensitive: m.case_sensitive.map(|b| b.value).unwrap_or(true),
        headers,
        query_parameters,
        grpc: m.grpc.is_some(),
    })
}

pub(super) fn header_matcher(h: &proto::HeaderMatcher, path: &Path) -> Result<HeaderMatcher, ConfigError> {
    let name = header_name(&h.name, &path.field("name"))?;
    let (test, invert) = header_test(h, path)?;
    Ok(HeaderMatcher { name, test, invert })
}

/// A `HeaderMatcher`'s test and inversion, whatever header it names (RBAC rules name
/// pseudo-headers, which are no `HeaderName`).
pub(super) fn header_test(h: &proto::HeaderMatcher, path: &Path) -> Result<(ValueMatch, bool), ConfigError> {
    #[allow(deprecated)]
    use proto::header_matcher::HeaderMatchSpecifier as H;
    #[allow(deprecated)]
    let test = match &h.header_match_specifier {
        Some(H::ExactMatch(s)) => ValueMatch::Exact(s.clone()),
        Some(H::PrefixMatch(s)) => ValueMatch::Prefix(s.clone()),
        Some(H::SuffixMatch(s)) => ValueMatch::Suffix(s.clone()),
        Some(H::ContainsMatch(s)) => ValueMatch::Contains(s.clone()),
        Some(H::SafeRegexMatch(r)) => ValueMatch::Regex(regex(r, &path.field("safe_regex_match"))?),
        Some(H::PresentMatch(b)) => ValueMatch::Present(*b),
        Some(H::StringMatch(s)) => string_matcher(s, &path.field("string_match"))?,
        Some(H::RangeMatch(_)) => return Err(path.err_at("range_match", "is not supported")),
        None => ValueMatch::Present(true),
    };
    if h.treat_missing_header_as_empty {
        return Err(path.err_at("treat_missing_header_as_empty", "is not supported"));
    }
    Ok((test, h.invert_match))
}

pub(super) const MAX_STREAM_DURATION: FieldPolicy = FieldPolicy {
    message: "envoy.config.route.v3.RouteAction.MaxStreamDuration",
    honoured: &["max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"],
    ignored: &[],
};

fn stream_duration(m: &proto::route_action::MaxStreamDuration, path: &Path) -> Result<StreamDuration, ConfigError> {
    check(m, &MAX_STREAM_DURATION, path)?;
    let d = |v: Option<&xds_client::protos::google::protobuf::Duration>, f: &str| {
        v.map(|v| duration(v, &path.field(f))).transpose()
    };
    Ok(StreamDuration {
        max: d(m.max_stream_duration.as_ref(), "max_stream_duration")?,
        grpc_header_max: d(m.grpc_timeout_header_max.as_ref(), "grpc_timeout_header_max")?,
        grpc_header_offset: d(m.grpc_timeout_header_offset.as_ref(), "grpc_timeout_header_offset")?,
    })
}

fn forward(a: &proto::RouteAction, path: &Path, res: &Resources) -> Result<Forward, ConfigError> {
    use proto::route_action::{ClusterSpecifier as C, HostRewriteSpecifier as H};
    check(a, &ROUTE_ACTION, path)?;
    let target = match &a.cluster_specifier {
        Some(C::Cluster(c)) => {
            res.require_cluster(c, &path.field("cluster"))?;
            ClusterTarget::Single(c.clone())
        }
        Some(C::WeightedClusters(w)) => {
            let wp = path.field("weighted_clusters").field("clusters");
            let mut out = Vec::with_capacity(w.clusters.len());
            for (i, c) in w.clusters.iter().enumerate() {
                let cp = wp.item(i, &c.name);
                check(c, &CLUSTER_WEIGHT, &cp)?;
                res.require_cluster(&c.name, &cp.field("name"))?;
                out.push(WeightedCluster { name: c.name.clone(), weight: c.weight.map(|v| v.value).unwrap_or(0) });
            }
            if out.iter().all(|c| c.weight == 0) {
                return Err(wp.err("at least one cluster needs a weight above zero"));
            }
            ClusterTarget::Weighted(out)
        }
        Some(_) => return Err(path.err("only cluster and weighted_clusters are supported")),
        None => return Err(path.err("cluster or weighted_clusters is required")),
    };
    let host_rewrite = match &a.host_rewrite_specifier {
        Some(H::HostRewriteLiteral(h)) => Some(h.clone()),
        Some(_) => return Err(path.err("only host_rewrite_literal is supported")),
        None => None,
    };
    Ok(Forward {
        target,
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        host_rewrite,
        timeout: timeout(a.timeout.as_ref(), Some(Duration::from_secs(15)), &path.field("timeout"))?,
        idle_timeout: a
            .idle_timeout
            .as_ref()
            .map(|d| timeout(Some(d), None, &path.field("idle_timeout")))
            .transpose()?,
        #[allow(deprecated)]
        max_grpc_timeout: a
            .max_grpc_timeout
            .as_ref()
            .map(|d| duration(d, &path.field("max_grpc_timeout")))
            .transpose()?,
        max_stream_duration: a
            .max_stream_duration
            .as_ref()
            .map(|m| stream_duration(m, &path.field("max_stream_duration")))
            .transpose()?,
        retry_policy: a.retry_policy.as_ref().map(|r| retry_policy(r, &path.field("retry_policy"))).transpose()?,
        hash_policy: hash_policies(&a.hash_policy, &path.field("hash_policy"))?,
    })
}

fn hash_policies(hp: &[proto::route_action::HashPolicy], path: &Path) -> Result<Vec<HashPolicy>, ConfigError> {
    use proto::route_action::hash_policy::PolicySpecifier as S;
    hp.iter()
        .enumerate()
        .map(|(i, h)| {
            let p = path.item(i, "");
            let source = match &h.policy_specifier {
                Some(S::Header(x)) => {
                    HashSource::Header(header_name(&x.header_name, &p.field("header").field("header_name"))?)
                }
                Some(S::Cookie(c)) => {
                    if c.ttl.is_some() {
                        return Err(p.field("cookie").err_at("ttl", "generating cookies is not supported"));
                    }
                    HashSource::Cookie(c.name.clone())
                }
                Some(S::ConnectionProperties(cp)) if cp.source_ip => HashSource::SourceIp,
                Some(S::QueryParameter(q)) => HashSource::QueryParameter(q.name.clone()),
                _ => {
                    return Err(
                        p.err("only header, cookie, connection_properties.source_ip and query_parameter are supported")
                    )
                }
            };
            Ok(HashPolicy { source, terminal: h.terminal })
        })
        .collect()
}

/// `RetryPolicy` → model, with Envoy's defaults (1 retry, 25 ms base, 10 × base cap).
pub fn retry_policy(r: &proto::RetryPolicy, path: &Path) -> Result<RetryPolicy, ConfigError> {
    check(r, &RETRY_POLICY, path)?;
    let mut on = RetryOn::default();
    for cond in r.retry_on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match cond {
            "5xx" => on.server_error = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" | "reset-before-request" => on.reset = true,
            "retriable-status-codes" => on.retriable_status_codes = true,
            "refused-stream" => on.refused_stream = true,
            "cancelled" => on.grpc_statuses[1] = true,
            "deadline-exceeded" => on.grpc_statuses[4] = true,
            "resource-exhausted" => on.grpc_statuses[8] = true,
            "internal" => on.grpc_statuses[13] = true,
            "unavailable" => on.grpc_statuses[14] = true,
            other => return Err(path.err_at("retry_on", format!("\"{other}\" is not supported"))),
        }
    }
    let base = match r.retry_back_off.as_ref().and_then(|b| b.base_interval.as_ref()) {
        Some(d) => duration(d, &path.field("retry_back_off").field("base_interval"))?,
        None => Duration::from_millis(25),
    };
    let max = match r.retry_back_off.as_ref().and_then(|b| b.max_interval.as_ref()) {
        Some(d) => duration(d, &path.field("retry_back_off").field("max_interval"))?,
        None => base * 10,
    };
    let mut avoid_previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        if p.name == "envoy.retry_host_predicates.previous_hosts" {
            avoid_previous_hosts = true;
        } else {
            return Err(path.field("retry_host_predicate").item(i, &p.name).err("only previous_hosts is supported"));
        }
    }
    let retriable_status_codes = r
        .retriable_status_codes
        .iter()
        .map(|c| u16::try_from(*c).map_err(|_| path.err_at("retriable_status_codes", format!("{c} is not a status"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RetryPolicy {
        on,
        retriable_status_codes,
        num_retries: r.num_retries.map(|v| v.value).unwrap_or(1),
        per_try_timeout: timeout(r.per_try_timeout.as_ref(), None, &path.field("per_try_timeout"))?,
        base_interval: base,
        max_interval: max.max(base),
        avoid_previous_hosts,
        host_selection_attempts: u32::try_from(r.host_selection_retry_max_attempts.max(1)).unwrap_or(1),
    })
}

fn direct(d: &proto::DirectResponseAction, path: &Path) -> Result<RouteAction, ConfigError> {
    use xds_client::protos::envoy::config::core::v3::data_source::Specifier as S;
    let status = u16::try_from(d.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| path.err_at("status", format!("{} is not a valid status", d.status)))?;
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        Some(S::InlineString(s)) => Some(bytes::Bytes::from(s.clone())),
        Some(S::InlineBytes(b)) => Some(bytes::Bytes::from(b.clone())),
        Some(_) => return Err(path.err_at("body", "only inline_string and inline_bytes are supported")),
        None => None,
    };
    Ok(RouteAction::Direct { status, body })
}

fn redirect(r: &proto::RedirectAction, path: &Path) -> Result<Redirect, ConfigError> {
    use proto::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
    check(r, &REDIRECT, path)?;
    let status = match r.response_code {
        0 => StatusCode::MOVED_PERMANENTLY,
        1 => StatusCode::FOUND,
        2 => StatusCode::SEE_OTHER,
        3 => StatusCode::TEMPORARY_REDIRECT,
        4 => StatusCode::PERMANENT_REDIRECT,
        n => return Err(path.err_at("response_code", format!("unknown value {n}"))),
    };
    let scheme = match &r.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) => Some(s.clone()),
        _ => None,
    };
    let (path_redirect, prefix_rewrite) = match &r.path_rewrite_specifier {
        Some(P::PathRedirect(p)) => (Some(p.clone()), None),
        Some(P::PrefixRewrite(p)) => (None, Some(p.clone())),
        Some(_) => return Err(path.err("regex_rewrite is not supported")),
        None => (None, None),
    };
    let port = u16::try_from(r.port_redirect).map_err(|_| path.err_at("port_redirect", "is not a port"))?;
    Ok(Redirect {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port: (port != 0).then_some(port),
        path: path_redirect,
        prefix_rewrite,
        status,
        strip_query: r.strip_query,
    })
}
