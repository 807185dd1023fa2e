//! Why a config was refused: always with the path of the field, so the operator (or the
//! control plane reading a NACK) knows what to fix.

use std::path::PathBuf;

/// A config that cannot be served, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file named on the command line.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML/JSON at all.
    #[error("{origin}: not valid YAML/JSON: {message}")]
    Syntax {
        /// The file path or `--config-yaml`.
        origin: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The document is YAML but not a valid Envoy `Bootstrap` (unknown field, wrong type, …).
    #[error("{origin}: {source}")]
    Proto {
        /// The file path or `--config-yaml`.
        origin: String,
        /// The decoder's message with the field path.
        #[source]
        source: xds_client::json::JsonError,
    },
    /// A field is valid Envoy but not something this proxy can honour, or its value is wrong.
    #[error("{path}: {message}")]
    Field {
        /// Field path, e.g. `static_resources.clusters[2] "web": lb_policy`.
        path: String,
        /// What is wrong and, where useful, what is supported.
        message: String,
    },
}

impl ConfigError {
    /// A field-level error at `path`.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Field { path: path.into(), message: message.into() }
    }
}

/// Builds field paths as conversion descends, so every error names where it happened.
#[derive(Debug, Clone)]
pub struct Path(String);

impl Path {
    /// The root of a document (or of one xDS resource, named by its kind and name).
    pub fn root(s: impl Into<String>) -> Self {
        Path(s.into())
    }

    /// A child field.
    pub fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// A list item, with the resource's name when it has one (`clusters[2] "web"`).
    pub fn item(&self, index: usize, name: &str) -> Path {
        if name.is_empty() {
            Path(format!("{}[{index}]", self.0))
        } else {
            Path(format!("{}[{index}] \"{name}\"", self.0))
        }
    }

    /// A map entry (`policies["ns[foo]-policy[bar]-rule[0]"]`).
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[\"{key}\"]", self.0))
    }

    /// An error at this path.
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::field(self.0.clone(), message)
    }

    /// An error at a field below this path.
    pub fn err_at(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.field(field).err(message)
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
