//! TLS as the config says it: where certificates and trust bundles come from (files, inline
//! bytes, environment variables, SDS names), the SAN checks and the protocol limits. Plain
//! data, produced by `convert::tls` without touching the filesystem or the secret registry;
//! `tls::build` turns it into rustls contexts and secret slots (and refuses bad material with
//! the field path kept here).

use std::path::PathBuf;

use super::error::Path;
use super::matcher::ValueMatch;

/// Minimum/maximum protocol versions (`tls_params`); rustls speaks 1.2 and 1.3 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Allow TLS 1.2.
    pub tls12: bool,
    /// Allow TLS 1.3.
    pub tls13: bool,
}

impl Default for Versions {
    fn default() -> Self {
        Versions { tls12: true, tls13: true }
    }
}

/// Which SAN kind a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    /// Untyped `match_subject_alt_names`: any DNS, URI, email or IP SAN (Envoy's behaviour).
    Any,
    /// `san_type: URI`.
    Uri,
    /// `san_type: DNS`.
    Dns,
    /// `san_type: EMAIL`.
    Email,
    /// `san_type: IP_ADDRESS`.
    Ip,
}

/// One entry of a SAN allow-list.
#[derive(Debug, Clone)]
pub struct SanMatcher {
    /// The SAN kind compared.
    pub kind: SanKind,
    /// The string test (exact, prefix, suffix, contains, regex; case folding).
    pub test: ValueMatch,
}

/// Where a `DataSource` points; read by the builder, never by conversion.
#[derive(Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `filename`.
    File(PathBuf),
    /// `inline_string`.
    InlineString(Vec<u8>),
    /// `inline_bytes`.
    InlineBytes(Vec<u8>),
    /// `environment_variable`.
    Env(String),
}

impl std::fmt::Debug for DataSource {
    // Inline bytes may be a private key: never in a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::File(p) => write!(f, "File({})", p.display()),
            DataSource::InlineString(b) | DataSource::InlineBytes(b) => write!(f, "Inline({} bytes)", b.len()),
            DataSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// A `DataSource` and the config path of the message holding it, for errors.
#[derive(Debug, Clone)]
pub struct Data {
    /// What to read.
    pub source: DataSource,
    /// The field (`...tls_certificates[0].certificate_chain`).
    pub path: Path,
}

impl Data {
    /// The leaf field name of the specifier (`filename`, `inline_string`, ...), for errors.
    pub fn leaf(&self) -> &'static str {
        match self.source {
            DataSource::File(_) => "filename",
            DataSource::InlineString(_) => "inline_string",
            DataSource::InlineBytes(_) => "inline_bytes",
            DataSource::Env(_) => "environment_variable",
        }
    }
}

/// Who delivers an SDS secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SdsSource {
    /// `static_resources.secrets` (no `sds_config`).
    Static,
    /// The ADS stream (`sds_config: {ads: {}}`).
    Ads,
    /// Its own gRPC cluster (istio-agent's `sds-grpc` Unix socket).
    Cluster(String),
}

/// A secret referenced by name.
#[derive(Debug, Clone)]
pub struct SdsRef {
    /// The secret's name.
    pub name: String,
    /// Who delivers it.
    pub source: SdsSource,
    /// The `SdsSecretConfig`'s path, for errors.
    pub path: Path,
}

/// A key and chain given in the config.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// `certificate_chain`.
    pub chain: Data,
    /// `private_key`.
    pub key: Data,
    /// `watched_directory` set: files are re-read when they change.
    pub watched: bool,
    /// The `TlsCertificate`'s path.
    pub path: Path,
}

/// The certificate a context presents.
#[derive(Debug, Clone)]
pub enum CertSpec {
    /// Inline or files.
    Given(CertFiles),
    /// SDS (or a static secret).
    Sds(SdsRef),
}

/// A `CertificateValidationContext` given in the config.
#[derive(Debug, Clone)]
pub struct ValidationSpec {
    /// `trusted_ca` (`None` in a combined context's default: the secret's roots apply).
    pub trusted_ca: Option<Data>,
    /// `match_subject_alt_names` + `match_typed_subject_alt_names`.
    pub sans: Vec<SanMatcher>,
    /// `watched_directory` set.
    pub watched: bool,
}

/// How a peer certificate is checked.
#[derive(Debug, Clone)]
pub enum ChecksSpec {
    /// `validation_context` with `trusted_ca`.
    Given(ValidationSpec),
    /// `validation_context_sds_secret_config`, or a `combined_validation_context` whose
    /// default context adds SAN matchers and fallback roots.
    Sds {
        /// The secret holding the roots.
        secret: SdsRef,
        /// The default context (`combined_validation_context`), if any.
        default: Option<ValidationSpec>,
    },
}

/// What `common_tls_context` says.
#[derive(Debug, Clone, Default)]
pub struct CommonSpec {
    /// The certificate to present.
    pub cert: Option<CertSpec>,
    /// Peer checks; `None` = no validation context.
    pub checks: Option<ChecksSpec>,
    /// `alpn_protocols`.
    pub alpn: Vec<String>,
    /// `tls_params`.
    pub versions: Versions,
}

/// A filter chain's TLS termination (`DownstreamTlsContext`).
#[derive(Debug, Clone)]
pub struct DownstreamSpec {
    /// `common_tls_context`.
    pub common: CommonSpec,
    /// `require_client_certificate`.
    pub require_client_certificate: bool,
    /// The `typed_config` path, for errors found while building.
    pub path: Path,
}

/// A cluster's TLS origination (`UpstreamTlsContext`).
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// `common_tls_context`.
    pub common: CommonSpec,
    /// `sni`; `None` = no SNI sent.
    pub sni: Option<String>,
    /// The `typed_config` path, for errors found while building.
    pub path: Path,
}

/// A `Secret` resource (SDS, or `static_resources.secrets[i]`).
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// Its name.
    pub name: String,
    /// Its content.
    pub content: SecretContent,
}

/// What a secret holds.
#[derive(Debug, Clone)]
pub enum SecretContent {
    /// `tls_certificate`.
    Cert(CertFiles),
    /// `validation_context`.
    Validation(ValidationSpec),
}

/// TLS to the control plane (the ADS cluster's `UpstreamTlsContext`): the gRPC client does its
/// own TLS, so this is its inputs rather than a data-plane context.
#[derive(Debug, Clone)]
pub struct XdsTlsSpec {
    /// `validation_context.trusted_ca`.
    pub ca: Data,
    /// Client chain and key for mutual TLS.
    pub identity: Option<(Data, Data)>,
    /// The name the server certificate must carry (`sni`, else the endpoint host).
    pub server_name: String,
}
