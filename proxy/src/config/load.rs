//! Reading a bootstrap: file and/or `--config-yaml` text → proto → model.

use std::path::Path as FsPath;

use xds_client::protos::envoy::config::bootstrap::v3::Bootstrap as ProtoBootstrap;

use super::{convert, Bootstrap, ConfigError};

/// Loads the bootstrap from a file, an inline YAML string, or both; inline values are merged
/// over the file's (objects merge, lists append), as Envoy merges `--config-yaml`.
pub fn load(file: Option<&FsPath>, inline: Option<&str>) -> Result<Bootstrap, ConfigError> {
    load_with(file, inline, false)
}

/// [`load`], optionally skipping unknown fields (`--allow-unknown-static-fields`).
pub fn load_with(file: Option<&FsPath>, inline: Option<&str>, allow_unknown: bool) -> Result<Bootstrap, ConfigError> {
    let mut doc = serde_json::Value::Object(Default::default());
    let mut origin = String::from("--config-yaml");
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        origin = path.display().to_string();
        doc = parse(&text, &origin)?;
    }
    if let Some(text) = inline {
        let extra = parse(text, "--config-yaml")?;
        merge(&mut doc, extra);
        if file.is_some() {
            origin.push_str(" + --config-yaml");
        }
    }
    from_value_with(doc, &origin, allow_unknown)
}

/// Parses YAML (a superset of JSON) into a JSON value.
pub fn parse(text: &str, origin: &str) -> Result<serde_json::Value, ConfigError> {
    let v: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::Syntax { origin: origin.to_string(), message: e.to_string() })?;
    match v {
        serde_json::Value::Object(_) => Ok(v),
        serde_json::Value::Null => Ok(serde_json::Value::Object(Default::default())),
        _ => Err(ConfigError::Syntax { origin: origin.to_string(), message: "the top level must be a mapping".into() }),
    }
}

/// Converts a parsed document.
pub fn from_value(doc: serde_json::Value, origin: &str) -> Result<Bootstrap, ConfigError> {
    from_value_with(doc, origin, false)
}

fn from_value_with(doc: serde_json::Value, origin: &str, allow_unknown: bool) -> Result<Bootstrap, ConfigError> {
    let proto: ProtoBootstrap = xds_client::json::from_json_with(doc.clone(), !allow_unknown)
        .map_err(|source| ConfigError::Proto { origin: origin.to_string(), source })?;
    convert::bootstrap(&proto, doc).map_err(|e| match e {
        ConfigError::Field { path, message } => ConfigError::Field { path: format!("{origin}: {path}"), message },
        other => other,
    })
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    use serde_json::Value;
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(e)) => b.extend(e),
        (slot, v) => *slot = v,
    }
}
