//! Why an xDS resource was refused, typed: the NACK carries its text (the control plane reads
//! the field path), `/config_dump` shows it, and `isthmus_xds_rejected_total{type, kind}`
//! counts it by kind.

use crate::config::ConfigError;

/// A refused resource.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not the message the type URL names.
    #[error("{what}: cannot decode: {source}")]
    Decode {
        /// The resource (`cluster "x"`).
        what: String,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// Valid Envoy, but not something Isthmus can honour, or a wrong value (with the path).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Acceptable config that cannot run here (a listener address already taken).
    #[error("{0}")]
    Conflict(String),
    /// A type this proxy does not consume.
    #[error("type {0} is not used by Isthmus")]
    UnusedType(String),
}

impl Rejection {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Decode { .. } => "decode",
            Rejection::Config(_) => "config",
            Rejection::Conflict(_) => "conflict",
            Rejection::UnusedType(_) => "unused_type",
        }
    }

    /// A decode failure of the resource `what`.
    pub fn decode(what: impl Into<String>, source: prost::DecodeError) -> Self {
        Rejection::Decode { what: what.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn each_kind_names_the_resource_and_keeps_the_field_path() {
        let bad = xds_client::protos::envoy::config::listener::v3::Listener::decode(&b"\xff\xff\xff"[..]).unwrap_err();
        let r = Rejection::decode("listener \"l\"", bad);
        assert_eq!(r.kind(), "decode");
        assert!(r.to_string().starts_with("listener \"l\": cannot decode: "), "{r}");
        let r: Rejection = ConfigError::field("cluster \"c\".lb_policy", "MAGLEV is not supported").into();
        assert_eq!((r.kind(), r.to_string().as_str()), ("config", "cluster \"c\".lb_policy: MAGLEV is not supported"));
        assert_eq!(Rejection::UnusedType("t".into()).kind(), "unused_type");
    }
}
