//! The rule that every proto field is honoured, ignored on purpose, or refused by name.
//!
//! Each converter lists the fields it honours and those it ignores on purpose; any other field
//! that is set is refused with its path. The check reads the message through its descriptor,
//! so a field added to Envoy's protos later is refused until someone decides about it — the
//! same guarantee exhaustive destructuring gives, without 60-field patterns per message.

use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::config::error::{ConfigError, Path};

/// What a converter does with each field of one message type.
pub struct FieldPolicy {
    /// Proto full name, e.g. `envoy.config.cluster.v3.Cluster`.
    pub message: &'static str,
    /// Fields the converter reads and acts on.
    pub honoured: &'static [&'static str],
    /// Fields accepted and deliberately without effect (listed in the README).
    pub ignored: &'static [&'static str],
}

/// Refuses `msg` if a field outside the policy is set.
pub fn check<M: prost::Message>(msg: &M, policy: &FieldPolicy, path: &Path) -> Result<(), ConfigError> {
    let pool = xds_client::json::pool().map_err(|e| path.err(e.to_string()))?;
    let Some(desc) = pool.get_message_by_name(policy.message) else {
        return Err(path.err(format!("{} is not in the descriptor set", policy.message)));
    };
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| path.err(format!("re-decoding {}: {e}", policy.message)))?;
    for (field, _) in dynamic.fields() {
        let name = field.name();
        if policy.honoured.contains(&name) || policy.ignored.contains(&name) {
            continue;
        }
        return Err(path.err_at(name, format!("is not supported by Isthmus (in {})", dynamic.descriptor().name())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_client::protos::envoy::config::cluster::v3::Cluster;

    const POLICY: FieldPolicy =
        FieldPolicy { message: "envoy.config.cluster.v3.Cluster", honoured: &["name"], ignored: &["alt_stat_name"] };

    #[test]
    fn refuses_unlisted_fields_by_name() {
        let c = Cluster { name: "a".into(), alt_stat_name: "b".into(), ..Default::default() };
        check(&c, &POLICY, &Path::root("c")).unwrap();
        let c = Cluster { name: "a".into(), upstream_bind_config: Some(Default::default()), ..Default::default() };
        let err = check(&c, &POLICY, &Path::root("c")).unwrap_err().to_string();
        assert!(err.starts_with("c.upstream_bind_config: is not supported"), "{err}");
    }
}
