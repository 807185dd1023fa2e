//! The balancing view of a cluster's hosts, rebuilt whenever membership or health changes:
//! Envoy's priority load (with panic), optional locality weighting, then the host policy.

use std::sync::Arc;

use rand::Rng;

use super::host::Host;
use crate::balance::locality::{self, LocalityState};
use crate::balance::priority::{self, Level, PriorityLoad};
use crate::balance::Picker;
use crate::balance::{hashing, zone};
use crate::config::{AssignmentPolicy, Cluster, LbPolicy};

/// Hosts of one class in one priority, possibly split by locality.
#[derive(Debug)]
enum Choice {
    Plain(Picker<Host>),
    Localities(Vec<f64>, Vec<Picker<Host>>),
}

impl Choice {
    fn pick(&self, avoid: &dyn Fn(&Host) -> bool, attempts: u32) -> Option<Arc<Host>> {
        match self {
            Choice::Plain(p) => p.pick(&mut rand::rng(), avoid, attempts),
            Choice::Localities(w, pickers) => {
                let i = locality::pick(w, rand::rng().random::<f64>())?;
                pickers.get(i)?.pick(&mut rand::rng(), avoid, attempts)
            }
        }
    }
}

#[derive(Debug)]
struct LevelPickers {
    healthy: Choice,
    degraded: Choice,
    all: Picker<Host>,
    /// RING_HASH / MAGLEV: tables over the healthy hosts and over all hosts (panic).
    hashed: Option<(Hashed, Hashed)>,
}

/// A consistent-hash structure with the hosts its indices refer to.
#[derive(Debug)]
struct Hashed {
    hosts: Vec<Arc<Host>>,
    table: HashTable,
}

#[derive(Debug)]
enum HashTable {
    Ring(hashing::Ring),
    Maglev(hashing::Maglev),
}

impl Hashed {
    /// Builds Envoy's ring or table over `hosts` (keys are `ip:port`, as Envoy's `hashKey`).
    fn new(hosts: Vec<Arc<Host>>, policy: LbPolicy, locality_weighted: bool) -> Self {
        let keys: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
        let hh: Vec<hashing::HashHost<'_>> =
            keys.iter().zip(&hosts).map(|(k, h)| hashing::HashHost { key: k, weight: h.weight }).collect();
        let normalized = if locality_weighted {
            let mut groups: Vec<(&crate::config::bootstrap::Locality, u32, Vec<usize>)> = Vec::new();
            for (i, h) in hosts.iter().enumerate() {
                match groups.iter_mut().find(|g| g.0 == &h.locality) {
                    Some(g) => g.2.push(i),
                    None => groups.push((&h.locality, h.locality_weight.unwrap_or(0), vec![i])),
                }
            }
            let locs: Vec<hashing::LocalityHosts<'_>> =
                groups.iter().map(|g| hashing::LocalityHosts { weight: g.1, hosts: &g.2 }).collect();
            hashing::normalize_locality_weights(&hh, &locs)
        } else {
            hashing::normalize_host_weights(&hh)
        };
        let table = match policy {
            LbPolicy::Maglev { table_size } => {
                HashTable::Maglev(hashing::Maglev::from_normalized(&normalized, table_size))
            }
            LbPolicy::RingHash { min, max } => HashTable::Ring(hashing::Ring::from_normalized(&normalized, min, max)),
            _ => HashTable::Ring(hashing::Ring::from_normalized(&normalized, 1, 1)),
        };
        Hashed { hosts, table }
    }

    fn pick(&self, hash: u64, attempt: u32) -> Option<Arc<Host>> {
        let i = match &self.table {
            HashTable::Ring(r) => r.pick_attempt(hash, attempt),
            HashTable::Maglev(m) => m.pick_attempt(hash, attempt),
        }?;
        self.hosts.get(i).cloned()
    }
}

/// What zone-aware routing needs from outside the cluster.
#[derive(Debug, Clone)]
pub struct ZoneInput {
    /// The proxy's locality.
    pub own: crate::config::bootstrap::Locality,
    /// Healthy hosts per locality of the local cluster.
    pub local: Arc<Vec<(crate::config::bootstrap::Locality, u64)>>,
    /// The cluster's knobs.
    pub cfg: crate::config::cluster::ZoneAware,
}

/// Zone routing over priority 0: the decision and one picker per local-cluster locality
/// (own locality first).
#[derive(Debug)]
struct Zone {
    routing: zone::ZoneRouting,
    pickers: Vec<Picker<Host>>,
    cfg: crate::config::cluster::ZoneAware,
}

/// The current hosts and how to choose among them.
#[derive(Debug)]
pub struct HostSet {
    /// Every host, for admin and health accounting.
    pub all: Vec<Arc<Host>>,
    /// Priority numbers present, ascending (need not be contiguous).
    pub priorities: Vec<u32>,
    /// Loads per entry of `priorities`.
    pub load: PriorityLoad,
    /// The policy the loads were computed with.
    pub policy: AssignmentPolicy,
    levels: Vec<LevelPickers>,
    zone: Option<Zone>,
}

impl HostSet {
    /// Builds the view for `all` under `cluster`'s settings.
    pub fn new(all: Vec<Arc<Host>>, cluster: &Cluster, policy: AssignmentPolicy) -> Self {
        Self::with_zone(all, cluster, policy, None)
    }

    /// [`HostSet::new`] with zone-aware routing over priority 0 when `zone` is given and its
    /// preconditions hold (Envoy: local cluster with ≥ 2 localities and a host in ours,
    /// upstream ≥ 2 localities and ≥ `min_cluster_size` healthy hosts).
    pub fn with_zone(
        all: Vec<Arc<Host>>,
        cluster: &Cluster,
        policy: AssignmentPolicy,
        zone: Option<ZoneInput>,
    ) -> Self {
        let mut priorities: Vec<u32> = all.iter().map(|h| h.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let mut counts = Vec::with_capacity(priorities.len());
        let mut weights = Vec::with_capacity(priorities.len());
        let mut levels = Vec::with_capacity(priorities.len());
        for p in &priorities {
            let hosts: Vec<Arc<Host>> = all.iter().filter(|h| h.priority == *p).cloned().collect();
            let healthy: Vec<Arc<Host>> = hosts.iter().filter(|h| h.is_healthy()).cloned().collect();
            let degraded: Vec<Arc<Host>> = hosts.iter().filter(|h| h.is_degraded()).cloned().collect();
            counts.push(Level {
                hosts: hosts.len() as u64,
                healthy: healthy.len() as u64,
                degraded: degraded.len() as u64,
            });
            let w = |v: &[Arc<Host>]| v.iter().map(|h| u64::from(h.weight)).sum::<u64>();
            weights.push(Level { hosts: w(&hosts), healthy: w(&healthy), degraded: w(&degraded) });
            let choice = |eligible: Vec<Arc<Host>>| {
                if cluster.locality_weighted {
                    localities(&hosts, eligible, cluster, policy.overprovisioning_factor)
                } else {
                    Choice::Plain(Picker::new(eligible, cluster.lb_policy, cluster.choice_count, &mut rand::rng()))
                }
            };
            let hashed = matches!(cluster.lb_policy, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }).then(|| {
                (
                    Hashed::new(healthy.clone(), cluster.lb_policy, cluster.locality_weighted),
                    Hashed::new(hosts.clone(), cluster.lb_policy, cluster.locality_weighted),
                )
            });
            levels.push(LevelPickers {
                healthy: choice(healthy),
                degraded: choice(degraded),
                all: Picker::new(hosts.clone(), cluster.lb_policy, cluster.choice_count, &mut rand::rng()),
                hashed,
            });
        }
        let load = priority::compute(
            &counts,
            if policy.weighted_priority_health { &weights } else { &counts },
            policy.overprovisioning_factor,
            cluster.healthy_panic_threshold,
        );
        let zone = zone.filter(|_| priorities.first() == Some(&0)).and_then(|z| build_zone(&all, cluster, z));
        HostSet { all, priorities, load, policy, levels, zone }
    }

    /// Picks a host: priority by load, all hosts of a panicking priority, else its healthy
    /// (or degraded) hosts, by locality weight when enabled. `panicked` is set when the pick
    /// came from a priority in panic.
    pub fn pick(&self, avoid: &dyn Fn(&Host) -> bool, attempts: u32, panicked: &mut bool) -> Option<Arc<Host>> {
        self.pick_hashed(None, 0, avoid, attempts, panicked)
    }

    /// [`HostSet::pick`] with a request hash for RING_HASH/MAGLEV clusters: the priority is
    /// `hash % 100 + 1` against the loads (Envoy's thread-aware LB), then the ring or table of
    /// that priority; `attempt` > 0 walks on as Envoy's retry host selection does. Without a
    /// hash, a random one is used.
    pub fn pick_hashed(
        &self,
        hash: Option<u64>,
        attempt: u32,
        avoid: &dyn Fn(&Host) -> bool,
        attempts: u32,
        panicked: &mut bool,
    ) -> Option<Arc<Host>> {
        let hashing = self.levels.first().is_some_and(|l| l.hashed.is_some());
        let hash = if hashing { Some(hash.unwrap_or_else(|| rand::rng().random())) } else { None };
        let r = match hash {
            Some(h) => (h % 100) as u32 + 1,
            None => rand::rng().random_range(1..=100),
        };
        let (i, degraded) = priority::choose(&self.load, r)?;
        let level = self.levels.get(i)?;
        let panic = self.load.panic.get(i).copied().unwrap_or(false);
        if let (Some(h), Some((healthy, all))) = (hash, &level.hashed) {
            *panicked |= panic;
            let table = if panic { all } else { healthy };
            return table.pick(h, attempt);
        }
        if i == 0 && !degraded {
            if let Some(z) = &self.zone {
                if panic && z.cfg.fail_traffic_on_panic {
                    return None;
                }
                if !panic && rand::rng().random::<f64>() * 100.0 < z.cfg.routing_enabled {
                    return z.pick(avoid, attempts);
                }
            }
        }
        if panic {
            *panicked = true;
            return level.all.pick(&mut rand::rng(), avoid, attempts);
        }
        if degraded {
            level.degraded.pick(avoid, attempts)
        } else {
            level.healthy.pick(avoid, attempts)
        }
    }
}

fn build_zone(all: &[Arc<Host>], cluster: &Cluster, z: ZoneInput) -> Option<Zone> {
    let p0: Vec<&Arc<Host>> = all.iter().filter(|h| h.priority == 0).collect();
    let mut order: Vec<&crate::config::bootstrap::Locality> = vec![&z.own];
    for (l, _) in z.local.iter() {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    let local: Vec<u64> = order.iter().map(|l| z.local.iter().filter(|(x, _)| x == *l).map(|(_, n)| n).sum()).collect();
    let healthy = |l: &crate::config::bootstrap::Locality| {
        p0.iter().filter(|h| &h.locality == l && h.is_healthy()).count() as u64
    };
    let upstream: Vec<u64> = order.iter().map(|l| healthy(l)).collect();
    let up_total = p0.iter().filter(|h| h.is_healthy()).count() as u64;
    let mut up_localities: Vec<&crate::config::bootstrap::Locality> = Vec::new();
    for h in &p0 {
        if !up_localities.contains(&&h.locality) {
            up_localities.push(&h.locality);
        }
    }
    let routing = zone::decide(&local, &upstream, up_total, up_localities.len(), z.cfg.min_cluster_size).ok()?;
    let pickers = order
        .iter()
        .map(|l| {
            let hosts: Vec<Arc<Host>> =
                p0.iter().filter(|h| &h.locality == *l && h.is_healthy()).map(|h| (*h).clone()).collect();
            Picker::new(hosts, cluster.lb_policy, cluster.choice_count, &mut rand::rng())
        })
        .collect();
    Some(Zone { routing, pickers, cfg: z.cfg })
}

impl Zone {
    fn pick(&self, avoid: &dyn Fn(&Host) -> bool, attempts: u32) -> Option<Arc<Host>> {
        let mut rng = rand::rng();
        let i = match &self.routing {
            zone::ZoneRouting::Direct => 0,
            zone::ZoneRouting::Residual { local, residual } => {
                if rng.random::<f64>() < *local {
                    0
                } else {
                    let total: u64 = residual.iter().sum();
                    if total == 0 {
                        let candidates: Vec<usize> = (1..self.pickers.len())
                            .filter(|i| self.pickers.get(*i).is_some_and(|p| !p.hosts().is_empty()))
                            .collect();
                        *candidates.get(rng.random_range(0..candidates.len().max(1)))?
                    } else {
                        let mut x = rng.random_range(0..total);
                        let mut pick = 0;
                        for (i, r) in residual.iter().enumerate() {
                            if x < *r {
                                pick = i;
                                break;
                            }
                            x -= r;
                        }
                        pick
                    }
                }
            }
        };
        self.pickers.get(i)?.pick(&mut rand::rng(), avoid, attempts)
    }
}

fn localities(hosts: &[Arc<Host>], eligible: Vec<Arc<Host>>, cluster: &Cluster, opf: u32) -> Choice {
    let mut keys: Vec<&crate::config::bootstrap::Locality> = Vec::new();
    for h in hosts {
        if !keys.contains(&&h.locality) {
            keys.push(&h.locality);
        }
    }
    let mut states = Vec::with_capacity(keys.len());
    let mut pickers = Vec::with_capacity(keys.len());
    for k in keys {
        let members = hosts.iter().filter(|h| &h.locality == k).count() as u64;
        let elig: Vec<Arc<Host>> = eligible.iter().filter(|h| &h.locality == k).cloned().collect();
        let weight = hosts.iter().find(|h| &h.locality == k).and_then(|h| h.locality_weight);
        states.push(LocalityState { weight, hosts: members, eligible: elig.len() as u64 });
        pickers.push(Picker::new(elig, cluster.lb_policy, cluster.choice_count, &mut rand::rng()));
    }
    Choice::Localities(locality::effective_weights(&states, opf), pickers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::bootstrap::Locality;
    use crate::config::cluster::HealthStatus;

    fn cluster(yaml_lb: &str, locality_weighted: bool) -> Cluster {
        let y = format!("static_resources:\n  clusters:\n  - name: c\n    lb_policy: {yaml_lb}\n");
        let b = crate::config::load::from_value(crate::config::load::parse(&y, "t").unwrap(), "t").unwrap();
        let mut c = (*b.clusters[0]).clone();
        c.locality_weighted = locality_weighted;
        c
    }

    fn host(port: u16, zone: &str, prio: u32, lw: Option<u32>, health: HealthStatus) -> Arc<Host> {
        let loc = Locality { region: "r".into(), zone: zone.into(), sub_zone: String::new() };
        Arc::new(
            Host::new(format!("127.0.0.1:{port}").parse().unwrap(), 1, loc, prio, health, String::new())
                .with_locality_weight(lw),
        )
    }

    fn shares(set: &HostSet, n: usize) -> HashMap<String, f64> {
        let mut by: HashMap<String, f64> = HashMap::new();
        for _ in 0..n {
            let h = set.pick(&|_| false, 1, &mut false).unwrap();
            *by.entry(h.locality.zone.clone()).or_default() += 100.0 / n as f64;
        }
        by
    }

    use std::collections::HashMap;

    #[test]
    fn locality_weights_scenario_8_through_the_host_set() {
        let c = cluster("ROUND_ROBIN", true);
        let mut hosts = Vec::new();
        for i in 0..4 {
            let health = if i < 2 { HealthStatus::Healthy } else { HealthStatus::Unhealthy };
            hosts.push(host(1000 + i, "x", 0, Some(1), health));
            hosts.push(host(2000 + i, "y", 0, Some(2), HealthStatus::Healthy));
        }
        let set = HostSet::new(hosts, &c, AssignmentPolicy::default());
        let s = shares(&set, 20_000);
        assert!((s["x"] - 25.9).abs() < 2.0, "{s:?}");
    }

    #[test]
    fn ejected_hosts_spill_over_by_the_priority_formula() {
        let c = cluster("RANDOM", false);
        let hosts: Vec<_> = (0..3)
            .map(|i| host(1000 + i, "a", 0, None, HealthStatus::Healthy))
            .chain((0..3).map(|i| host(2000 + i, "b", 1, None, HealthStatus::Healthy)))
            .collect();
        hosts[0].set_ejected(true);
        let set = HostSet::new(hosts, &c, AssignmentPolicy::default());
        assert_eq!(set.load.healthy, [93, 7]);
        let s = shares(&set, 20_000);
        assert!((s["a"] - 93.0).abs() < 2.0 && (s["b"] - 7.0).abs() < 2.0, "{s:?}");
    }

    #[test]
    fn scenario_9_zone_aware_shares_through_the_host_set() {
        let c = cluster("RANDOM", false);
        let loc = |z: &str| Locality { region: "r".into(), zone: z.into(), sub_zone: String::new() };
        let mut hosts = Vec::new();
        for (z, n) in [("A", 2), ("B", 4), ("C", 2)] {
            for i in 0..n {
                hosts.push(host(1000 + hosts.len() as u16 + i, z, 0, None, HealthStatus::Healthy));
            }
        }
        let zone = |own: &str| ZoneInput {
            own: loc(own),
            local: Arc::new(vec![(loc("A"), 4), (loc("B"), 4), (loc("C"), 2)]),
            cfg: Default::default(),
        };
        let set = HostSet::with_zone(hosts.clone(), &c, AssignmentPolicy::default(), Some(zone("A")));
        let s = shares(&set, 40_000);
        assert!((s["A"] - 62.5).abs() < 2.0 && (s["B"] - 25.0).abs() < 2.0 && (s["C"] - 12.5).abs() < 2.0, "{s:?}");
        let set = HostSet::with_zone(hosts.clone(), &c, AssignmentPolicy::default(), Some(zone("B")));
        assert_eq!(shares(&set, 2000).get("B").copied().map(f64::round), Some(100.0), "direct");
        // Without the zone input: plain random over all 8 hosts.
        let set = HostSet::new(hosts, &c, AssignmentPolicy::default());
        let s = shares(&set, 40_000);
        assert!((s["A"] - 25.0).abs() < 2.0, "{s:?}");
    }

    #[test]
    fn total_panic_serves_every_host() {
        let c = cluster("ROUND_ROBIN", false);
        let hosts: Vec<_> = (0..4)
            .map(|i| host(1000 + i, "a", 0, None, if i == 0 { HealthStatus::Healthy } else { HealthStatus::Unhealthy }))
            .collect();
        let set = HostSet::new(hosts, &c, AssignmentPolicy::default());
        assert!(set.load.total_panic);
        let mut seen = std::collections::HashSet::new();
        let mut panicked = false;
        for _ in 0..40 {
            seen.insert(set.pick(&|_| false, 1, &mut panicked).unwrap().addr);
        }
        assert_eq!(seen.len(), 4);
        assert!(panicked);
    }
}
