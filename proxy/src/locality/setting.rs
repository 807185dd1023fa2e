//! Istio's `LocalityLoadBalancerSetting`, read from cluster metadata and validated as istiod
//! validates it.

use std::collections::HashMap;

/// `failover`, `failoverPriority` and `distribute`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalityLbSetting {
    /// `failover: [{from: region, to: region}]`.
    pub failover: Vec<(String, String)>,
    /// `failoverPriority: [label | label=value]`.
    pub failover_priority: Vec<(String, Option<String>)>,
    /// `distribute: [{from, to: {locality: weight}}]`.
    pub distribute: Vec<(String, Vec<(String, u32)>)>,
}

/// Parses and validates the metadata struct; errors name the field.
pub fn parse(v: &serde_json::Value) -> Result<LocalityLbSetting, (String, String)> {
    let err = |f: &str, m: String| Err((f.to_string(), m));
    let mut s = LocalityLbSetting::default();
    let obj = match v.as_object() {
        Some(o) => o,
        None => return err("", "must be a struct".into()),
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "failover" | "failover_priority" | "failoverPriority" | "distribute" | "enabled") {
            return err(k, "unknown field (expected failover, failover_priority, distribute)".into());
        }
    }
    for (i, f) in obj.get("failover").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let from = f.get("from").and_then(|x| x.as_str()).unwrap_or_default();
        let to = f.get("to").and_then(|x| x.as_str()).unwrap_or_default();
        let p = format!("failover[{i}]");
        if from.is_empty() || to.is_empty() {
            return err(&p, "from and to are required".into());
        }
        if from.contains(['/', '*']) || to.contains(['/', '*']) {
            return err(&p, "from and to are regions: no '/' or '*'".into());
        }
        if from == to {
            return err(&p, format!("from and to are both \"{from}\""));
        }
        s.failover.push((from.to_string(), to.to_string()));
    }
    let fp = obj.get("failover_priority").or_else(|| obj.get("failoverPriority"));
    for (i, l) in fp.and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let p = format!("failover_priority[{i}]");
        let Some(l) = l.as_str() else { return err(&p, "must be a label name".into()) };
        let (key, value) = match l.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (l, None),
        };
        if !valid_label_key(key) {
            return err(&p, format!("\"{key}\" is not a valid label name"));
        }
        s.failover_priority.push((key.to_string(), value));
    }
    for (i, d) in obj.get("distribute").and_then(|x| x.as_array()).into_iter().flatten().enumerate() {
        let p = format!("distribute[{i}]");
        let from = d.get("from").and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let to = d
            .get("to")
            .and_then(|x| x.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as u32)).collect::<Vec<_>>());
        let Some(to) = to else { return err(&p, "to is required".into()) };
        if to.iter().any(|(_, w)| !(1..=100).contains(w)) || to.iter().map(|(_, w)| w).sum::<u32>() != 100 {
            return err(&p, "to weights must each be 1..100 and sum to 100".into());
        }
        s.distribute.push((from, to));
    }
    if !s.distribute.is_empty() && !s.failover.is_empty() {
        return err("distribute", "cannot be combined with failover".into());
    }
    if !s.failover.is_empty() && s.failover_priority.iter().any(|(k, _)| is_topology(k)) {
        return err(
            "failover_priority",
            "with failover, priority labels must not be region/zone/subzone labels".into(),
        );
    }
    Ok(s)
}

fn is_topology(k: &str) -> bool {
    matches!(k, super::REGION | super::ZONE | super::SUBZONE | super::OLD_REGION | super::OLD_ZONE)
}

/// A Kubernetes label name: optional DNS prefix, then 1–63 of `[A-Za-z0-9._-]`.
fn valid_label_key(k: &str) -> bool {
    let name = k.rsplit('/').next().unwrap_or_default();
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && k.matches('/').count() <= 1
}

/// Labels as a map (for callers building one from metadata).
pub type Labels = HashMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_names_the_field() {
        assert_eq!(parse(&json!({"failover": [{"from": "a", "to": "a"}]})).unwrap_err().0, "failover[0]");
        assert_eq!(parse(&json!({"failover": [{"from": "a/b", "to": "c"}]})).unwrap_err().0, "failover[0]");
        assert_eq!(parse(&json!({"failover_priority": ["bad key!"]})).unwrap_err().0, "failover_priority[0]");
        assert_eq!(
            parse(&json!({"distribute": [{"from": "*", "to": {"a/*": 60, "b/*": 30}}]})).unwrap_err().0,
            "distribute[0]"
        );
        assert_eq!(parse(&json!({"failovr": []})).unwrap_err().0, "failovr");
        let ok = parse(&json!({"failover": [{"from": "us-east", "to": "eu-west"}], "failover_priority": ["topology.istio.io/network", "app=x"]})).unwrap();
        assert_eq!(ok.failover_priority[1], ("app".to_string(), Some("x".to_string())));
    }
}
