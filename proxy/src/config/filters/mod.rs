//! The policy filters istiod configures (fault injection, CORS, local rate limits, RBAC) as
//! data: what an HCM's `http_filters`, a chain's network filters and a route's
//! `typed_per_filter_config` say, after validation. The request path reads these through
//! `l7::filters` and `l4::policy`; run-time state (token buckets, the active-fault gauge)
//! starts empty here and fills on first use, so conversion stays free of clocks and I/O.

pub mod connection_limit;
pub mod cors;
pub mod fault;
pub mod rate_limit;
pub mod rbac;

use std::sync::{Arc, OnceLock};

/// Envoy's `FractionalPercent`: `numerator` out of `denominator` (100, 10 000 or 1 000 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// How many out of `denominator`.
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

impl Fraction {
    /// Every time.
    pub const ALL: Fraction = Fraction { numerator: 100, denominator: 100 };
    /// Never.
    pub const NONE: Fraction = Fraction { numerator: 0, denominator: 100 };

    /// Whether a uniformly random `draw` falls inside the fraction, as Envoy's
    /// `featureEnabled` decides it (`draw % denominator < numerator`).
    pub fn admits(&self, draw: u64) -> bool {
        self.denominator > 0 && draw % u64::from(self.denominator) < u64::from(self.numerator)
    }

    /// A fresh random decision.
    pub fn roll(&self) -> bool {
        if self.numerator == 0 {
            return false;
        }
        if self.numerator >= self.denominator {
            return true;
        }
        self.admits(rand::random::<u64>())
    }
}

/// One configured HTTP filter of an HCM, in chain order. The router and the filters that are
/// no-ops here (Istio's stats and metadata exchange) are not in the list, so an HCM with no
/// policy has an empty chain and the request path skips it entirely.
#[derive(Debug, Clone)]
pub struct HttpFilter {
    /// The filter's `name`: the key its per-route overrides use.
    pub name: Arc<str>,
    /// What it does.
    pub kind: HttpFilterKind,
    /// Its counters, shared by the per-route configs that replace it (Envoy scopes a
    /// filter's stats to the filter, not the route).
    pub stats: Arc<Stats>,
}

/// Metric handles of one filter instance, registered on first use (conversion registers
/// nothing), so the request path increments without building label sets.
#[derive(Debug, Default)]
pub struct Stats {
    /// Counters, in the order the filter defines.
    pub counters: OnceLock<Vec<metrics::Counter>>,
    /// A gauge (the fault filter's `active_faults`).
    pub gauge: OnceLock<metrics::Gauge>,
}

/// The HTTP filters Isthmus runs.
#[derive(Debug, Clone)]
pub enum HttpFilterKind {
    /// `envoy.filters.http.fault`: the listener-level fault (often empty: only routes fault).
    Fault(Arc<fault::Fault>),
    /// `envoy.filters.http.cors`: policies come from routes and virtual hosts.
    Cors,
    /// `envoy.filters.http.local_ratelimit`.
    LocalRateLimit(Arc<rate_limit::HttpLocalRateLimit>),
    /// `envoy.filters.http.rbac`.
    Rbac(Arc<rbac::HttpRbac>),
}

/// A `typed_per_filter_config` entry: replaces the listener-level config of the filter with
/// the same name for requests on that route (or virtual host), as Envoy's most specific
/// per-filter config does.
#[derive(Debug, Clone)]
pub enum RouteFilterConfig {
    /// An `HTTPFault` for this route.
    Fault(Arc<fault::Fault>),
    /// A `CorsPolicy`.
    Cors(Arc<cors::CorsPolicy>),
    /// A `LocalRateLimit` with its own bucket.
    LocalRateLimit(Arc<rate_limit::HttpLocalRateLimit>),
    /// `RBACPerRoute`: its rules, or `None` (no `rbac`) to switch RBAC off on the route.
    Rbac(Option<Arc<rbac::HttpRbac>>),
    /// `envoy.config.route.v3.FilterConfig { disabled: true }`: the filter is skipped.
    Disabled,
}

/// A route's or virtual host's per-filter configs, by filter name (few: a short list is
/// faster than a map to search).
#[derive(Debug, Clone, Default)]
pub struct PerFilter(pub Vec<(String, RouteFilterConfig)>);

impl PerFilter {
    /// The entry for the filter named `name`.
    pub fn get(&self, name: &str) -> Option<&RouteFilterConfig> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A non-terminal network filter before `tcp_proxy` or the HCM.
#[derive(Debug, Clone)]
pub enum NetworkPolicy {
    /// `envoy.filters.network.rbac`.
    Rbac(Arc<rbac::NetworkRbac>),
    /// `envoy.filters.network.local_ratelimit`.
    LocalRateLimit(Arc<rate_limit::NetworkLocalRateLimit>),
    /// `envoy.filters.network.connection_limit`.
    ConnectionLimit(Arc<connection_limit::ConnectionLimit>),
}
