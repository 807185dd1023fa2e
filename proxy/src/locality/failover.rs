//! istiod's per-proxy priorities (spec lb-failover §7.4–7.6), computed by the proxy: raw
//! region/zone/subzone priorities with the `failover` rule, `failoverPriority` labels, their
//! composition `prev × 5 + raw`, compaction, and `distribute` weights.

use std::collections::{BTreeSet, HashMap};

use super::setting::LocalityLbSetting;
use super::topology_labels;
use crate::config::bootstrap::Locality;
use crate::config::LocalityEndpoints;

/// Priority of an endpoint locality relative to the proxy (Istio `LbPriority`).
pub fn raw_priority(proxy: &Locality, ep: &Locality, failover: &[(String, String)]) -> u32 {
    if proxy.region == ep.region {
        return if proxy.zone != ep.zone {
            2
        } else if proxy.sub_zone != ep.sub_zone {
            1
        } else {
            0
        };
    }
    match failover.iter().find(|(from, _)| *from == proxy.region) {
        Some((_, to)) if *to != ep.region => 4,
        _ => 3,
    }
}

/// `failoverPriority`: the first mismatching label at index j gives `N − j`; all match → 0.
pub fn label_priority(
    labels: &[(String, Option<String>)],
    proxy: &HashMap<String, String>,
    ep: &HashMap<String, String>,
) -> u32 {
    let n = labels.len() as u32;
    for (j, (key, value)) in labels.iter().enumerate() {
        let want = value.as_ref().or_else(|| proxy.get(key));
        if want.is_none() || ep.get(key) != want {
            return n - j as u32;
        }
    }
    0
}

/// Whether `pattern` (`region/zone/subzone`, terminal `*` wildcards) matches `l`.
pub fn locality_matches(pattern: &str, l: &Locality) -> bool {
    let parts = [l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()];
    for (i, p) in pattern.split('/').enumerate() {
        if p == "*" {
            return true;
        }
        if parts.get(i) != Some(&p) {
            return false;
        }
    }
    true
}

fn group_weight(g: &LocalityEndpoints) -> u64 {
    g.weight.map(u64::from).unwrap_or_else(|| g.endpoints.iter().map(|e| u64::from(e.weight)).sum())
}

/// Applies the setting: new priorities (and weights for `distribute`) for every group.
/// `proxy_labels` are the proxy's labels (topology ones are added from its locality).
pub fn apply(
    s: &LocalityLbSetting,
    proxy: &Locality,
    proxy_labels: &HashMap<String, String>,
    groups: &[LocalityEndpoints],
) -> Vec<LocalityEndpoints> {
    if !s.distribute.is_empty() {
        return distribute(s, proxy, groups);
    }
    let mut plabels = topology_labels(proxy);
    plabels.extend(proxy_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let use_labels = !s.failover_priority.is_empty();
    let use_raw = !use_labels || !s.failover.is_empty();
    let mut out: Vec<LocalityEndpoints> = Vec::new();
    for g in groups {
        let raw = raw_priority(proxy, &g.locality, &s.failover);
        let mut by_prio: Vec<(u32, LocalityEndpoints)> = Vec::new();
        for e in &g.endpoints {
            let prio = if use_labels {
                let mut elabels = topology_labels(&g.locality);
                elabels.extend(e.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let prev = label_priority(&s.failover_priority, &plabels, &elabels);
                if use_raw {
                    prev * 5 + raw
                } else {
                    prev
                }
            } else {
                raw
            };
            match by_prio.iter_mut().find(|(p, _)| *p == prio) {
                Some((_, le)) => le.endpoints.push(e.clone()),
                None => by_prio.push((
                    prio,
                    LocalityEndpoints {
                        locality: g.locality.clone(),
                        priority: prio,
                        weight: None,
                        endpoints: vec![e.clone()],
                    },
                )),
            }
        }
        for (_, mut le) in by_prio {
            le.weight = Some(u32::try_from(group_weight(&le)).unwrap_or(u32::MAX).max(1));
            out.push(le);
        }
    }
    let distinct: BTreeSet<u32> = out.iter().map(|g| g.priority).collect();
    let rank: HashMap<u32, u32> = distinct.into_iter().enumerate().map(|(i, p)| (p, i as u32)).collect();
    for g in &mut out {
        g.priority = rank.get(&g.priority).copied().unwrap_or(0);
    }
    out
}

fn distribute(s: &LocalityLbSetting, proxy: &Locality, groups: &[LocalityEndpoints]) -> Vec<LocalityEndpoints> {
    let Some((_, to)) = s.distribute.iter().find(|(from, _)| locality_matches(from, proxy)) else {
        return groups.to_vec();
    };
    let mut weights: Vec<Option<u64>> = vec![None; groups.len()];
    for (key, w) in to {
        let matched: Vec<usize> = (0..groups.len())
            .filter(|i| weights[*i].is_none() && groups.get(*i).is_some_and(|g| locality_matches(key, &g.locality)))
            .collect();
        let total: u64 = matched.iter().filter_map(|i| groups.get(*i)).map(group_weight).sum();
        for i in matched {
            if let Some(g) = groups.get(i) {
                weights[i] = Some((group_weight(g) * u64::from(*w)).div_ceil(total.max(1)));
            }
        }
    }
    groups
        .iter()
        .zip(weights)
        .filter_map(|(g, w)| {
            let w = w?;
            Some(LocalityEndpoints {
                priority: 0,
                weight: Some(u32::try_from(w).unwrap_or(u32::MAX).max(1)),
                ..g.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::{Endpoint, EndpointAddress, HealthStatus};

    fn loc(s: &str) -> Locality {
        let mut p = s.split('/').map(str::to_string);
        Locality {
            region: p.next().unwrap_or_default(),
            zone: p.next().unwrap_or_default(),
            sub_zone: p.next().unwrap_or_default(),
        }
    }

    fn group(l: &str, n: usize) -> LocalityEndpoints {
        LocalityEndpoints {
            locality: loc(l),
            priority: 0,
            weight: None,
            endpoints: (0..n)
                .map(|i| Endpoint {
                    address: EndpointAddress::Socket(format!("127.0.0.1:{}", 1000 + i).parse().unwrap()),
                    weight: 1,
                    health: HealthStatus::Healthy,
                    hostname: String::new(),
                    labels: Default::default(),
                    transport_match: Default::default(),
                })
                .collect(),
        }
    }

    fn prios(out: &[LocalityEndpoints]) -> Vec<(String, u32)> {
        out.iter()
            .map(|g| (format!("{}/{}/{}", g.locality.region, g.locality.zone, g.locality.sub_zone), g.priority))
            .collect()
    }

    #[test]
    fn scenario_17_istio_priority_assignment() {
        let proxy = loc("us-east/zone-a/sub-1");
        let groups = [
            group("us-east/zone-a/sub-1", 1),
            group("us-east/zone-a/sub-2", 1),
            group("us-east/zone-b/sub-1", 1),
            group("eu-west/x", 1),
            group("ap-south/y", 1),
        ];
        let none = LocalityLbSetting::default();
        let p = prios(&apply(&none, &proxy, &HashMap::new(), &groups));
        assert_eq!(p.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [0, 1, 2, 3, 3]);
        let rule = LocalityLbSetting { failover: vec![("us-east".into(), "eu-west".into())], ..Default::default() };
        let p = prios(&apply(&rule, &proxy, &HashMap::new(), &groups));
        assert_eq!(p.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        // Without a sub-2 endpoint compaction closes the gap.
        let fewer = [groups[0].clone(), groups[2].clone(), groups[3].clone(), groups[4].clone()];
        let p = prios(&apply(&rule, &proxy, &HashMap::new(), &fewer));
        assert_eq!(p.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // A proxy in ap-south has no rule: us-east and eu-west are both raw 3.
        let p = prios(&apply(&rule, &loc("ap-south/y"), &HashMap::new(), &groups));
        assert_eq!(p.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [1, 1, 1, 1, 0]);
    }

    #[test]
    fn failover_priority_labels_compose_with_failover() {
        let proxy = loc("us-east/a");
        let mut g1 = group("us-east/a", 2);
        g1.endpoints[0].labels.insert("version".into(), "v1".into());
        g1.endpoints[1].labels.insert("version".into(), "v2".into());
        let mut proxy_labels = HashMap::new();
        proxy_labels.insert("version".to_string(), "v1".to_string());
        let s = LocalityLbSetting { failover_priority: vec![("version".into(), None)], ..Default::default() };
        let out = apply(&s, &proxy, &proxy_labels, &[g1.clone()]);
        assert_eq!(out.len(), 2, "the group splits by priority");
        assert_eq!(out.iter().map(|g| g.priority).collect::<Vec<_>>(), [0, 1]);
        let s =
            LocalityLbSetting { failover_priority: vec![("version".into(), Some("v2".into()))], ..Default::default() };
        let out = apply(&s, &proxy, &proxy_labels, &[g1]);
        assert_eq!(out.iter().find(|g| g.endpoints[0].labels["version"] == "v2").unwrap().priority, 0);
    }

    #[test]
    fn distribute_reweights_and_drops_unmatched() {
        let proxy = loc("us-west/zone1");
        let groups = [group("us-west/zone1", 2), group("us-west/zone2", 2), group("us-east/zone3", 2)];
        let s = LocalityLbSetting {
            distribute: vec![(
                "us-west/zone1/*".into(),
                vec![("us-west/zone1/*".into(), 80), ("us-west/zone2/*".into(), 20)],
            )],
            ..Default::default()
        };
        let out = apply(&s, &proxy, &HashMap::new(), &groups);
        assert_eq!(out.len(), 2);
        assert_eq!(out.iter().map(|g| g.weight).collect::<Vec<_>>(), [Some(80), Some(20)]);
        assert!(out.iter().all(|g| g.priority == 0));
    }
}
