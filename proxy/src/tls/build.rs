//! TLS specs (`config::tls`) → rustls contexts and secret slots. The one place that reads
//! certificate files and environment variables and writes the process-wide secret registry,
//! so a bad certificate fails start-up, or NACKs the listener or cluster, with the path of the
//! field that named it.

use std::path::PathBuf;
use std::sync::Arc;

use super::context::{Common, ServerTls, UpstreamTls};
use super::material::{CertMaterial, MaterialError, Roots};
use super::secrets::{registry, Kind, Secret, Slot, Source};
use super::validation::{Checks, Validation};
use crate::config::error::ConfigError;
use crate::config::tls::{
    CertFiles, CertSpec, ChecksSpec, CommonSpec, Data, DataSource, DownstreamSpec, SanMatcher, SdsRef, SdsSource,
    SecretContent, SecretSpec, UpstreamSpec, ValidationSpec, XdsTlsSpec,
};

/// Reads a data source; errors name the field and the file.
pub fn read(d: &Data) -> Result<(Vec<u8>, Option<PathBuf>), ConfigError> {
    match &d.source {
        DataSource::File(f) => std::fs::read(f)
            .map(|b| (b, Some(f.clone())))
            .map_err(|e| d.path.err_at("filename", format!("cannot read \"{}\": {e}", f.display()))),
        DataSource::InlineString(b) | DataSource::InlineBytes(b) => Ok((b.clone(), None)),
        DataSource::Env(v) => std::env::var(v)
            .map(|s| (s.into_bytes(), None))
            .map_err(|_| d.path.err_at("environment_variable", format!("${v} is not set"))),
    }
}

/// `"path": ` for errors about file contents (empty for inline data).
fn in_file(f: &Option<PathBuf>) -> String {
    f.as_ref().map(|f| format!("\"{}\": ", f.display())).unwrap_or_default()
}

/// Material read from config, with the bytes and files it came from (file slots compare
/// bytes to notice rotations).
struct Loaded<T> {
    value: T,
    bytes: Vec<Vec<u8>>,
    files: Vec<PathBuf>,
}

/// Key + chain → material, errors on the field at fault.
fn certificate(c: &CertFiles) -> Result<Loaded<CertMaterial>, ConfigError> {
    let (chain, chain_file) = read(&c.chain)?;
    let (key, key_file) = read(&c.key)?;
    let m = CertMaterial::from_pem(&chain, &key).map_err(|e| match e {
        MaterialError::NoKey | MaterialError::BadKey(_) | MaterialError::KeyMismatch => {
            c.key.path.err_at(c.key.leaf(), format!("{}{e}", in_file(&key_file)))
        }
        _ => c.chain.path.err_at(c.chain.leaf(), format!("{}{e}", in_file(&chain_file))),
    })?;
    Ok(Loaded { value: m, bytes: vec![chain, key], files: chain_file.into_iter().chain(key_file).collect() })
}

/// A validation context's roots, if it names any.
fn roots(v: &ValidationSpec) -> Result<Option<Loaded<Arc<Roots>>>, ConfigError> {
    let Some(ca) = &v.trusted_ca else { return Ok(None) };
    let (pem, file) = read(ca)?;
    let roots = Roots::from_pem(&pem).map_err(|e| ca.path.err_at(ca.leaf(), format!("{}{e}", in_file(&file))))?;
    Ok(Some(Loaded { value: Arc::new(roots), bytes: vec![pem], files: file.into_iter().collect() }))
}

/// An SDS reference → its slot (static secrets must exist; SDS slots are created empty and
/// fill when the secret arrives).
fn sds_slot(r: &SdsRef, kind: Kind) -> Result<Arc<Slot>, ConfigError> {
    let slot = match &r.source {
        SdsSource::Static => registry()
            .find(&Source::Static, &r.name)
            .ok_or_else(|| r.path.err_at("name", format!("unknown static secret \"{}\"", r.name)))?,
        SdsSource::Ads => registry().named(Source::Ads, &r.name),
        SdsSource::Cluster(c) => registry().named(Source::Cluster(c.clone()), &r.name),
    };
    slot.expect(kind);
    Ok(slot)
}

/// File material shares one slot per set of files (rotation re-reads it once); inline
/// material gets its own fixed slot.
fn file_or_inline(name: String, files: Vec<PathBuf>, watched: bool, bytes: Vec<Vec<u8>>, secret: Secret) -> Arc<Slot> {
    if files.is_empty() {
        Slot::with(name, Source::Inline, secret)
    } else {
        registry().files(&name, files, watched, bytes, secret)
    }
}

fn common(c: &CommonSpec) -> Result<Common, ConfigError> {
    let cert = match &c.cert {
        None => None,
        Some(CertSpec::Given(files)) => {
            let Loaded { value, bytes, files: read } = certificate(files)?;
            let name = read.first().map(|f| f.display().to_string()).unwrap_or_else(|| "inline".into());
            Some(file_or_inline(name, read, files.watched, bytes, Secret::Cert(Arc::new(value))))
        }
        Some(CertSpec::Sds(r)) => Some(sds_slot(r, Kind::Certificate)?),
    };
    let checks = match &c.checks {
        None => None,
        Some(ChecksSpec::Given(v)) => match roots(v)? {
            Some(Loaded { value, bytes, files }) => {
                let name = files.first().map(|f| f.display().to_string()).unwrap_or_else(|| "inline-ca".into());
                let secret = Secret::Validation(Arc::new(Validation { roots: Some(value), sans: Vec::new() }));
                let slot = file_or_inline(name, files, v.watched, bytes, secret);
                slot.expect(Kind::Validation);
                Some(Checks { slot, sans: v.sans.clone(), default_roots: None })
            }
            // Conversion refuses SAN matchers without roots; no roots and no SANs is no check.
            None => None,
        },
        Some(ChecksSpec::Sds { secret, default }) => {
            let slot = sds_slot(secret, Kind::Validation)?;
            let (sans, default_roots): (Vec<SanMatcher>, _) = match default {
                Some(d) => (d.sans.clone(), roots(d)?.map(|l| l.value)),
                None => (Vec::new(), None),
            };
            Some(Checks { slot, sans, default_roots })
        }
    };
    Ok(Common { cert, checks, alpn: c.alpn.clone(), versions: c.versions })
}

/// A filter chain's TLS termination.
pub fn server(spec: &DownstreamSpec) -> Result<Arc<ServerTls>, ConfigError> {
    let common = common(&spec.common)?;
    ServerTls::new(common, spec.require_client_certificate).map(Arc::new).map_err(|e| spec.path.err(e.to_string()))
}

/// A cluster's TLS origination.
pub fn upstream(spec: &UpstreamSpec) -> Result<Arc<UpstreamTls>, ConfigError> {
    let common = common(&spec.common)?;
    UpstreamTls::new(common, spec.sni.clone()).map(Arc::new).map_err(|e| spec.path.err_at("sni", e.to_string()))
}

/// A `Secret` resource's content, read and checked.
pub fn secret(spec: &SecretSpec) -> Result<Secret, ConfigError> {
    Ok(match &spec.content {
        SecretContent::Cert(c) => Secret::Cert(Arc::new(certificate(c)?.value)),
        // Without `trusted_ca` the referencing context's default roots apply (Envoy's merge).
        SecretContent::Validation(v) => {
            Secret::Validation(Arc::new(Validation { roots: roots(v)?.map(|l| l.value), sans: v.sans.clone() }))
        }
    })
}

/// Installs `static_resources.secrets`; the slots live as long as the returned handles.
pub fn static_secrets(specs: &[SecretSpec]) -> Result<Vec<Arc<Slot>>, ConfigError> {
    // Read everything first: a bad secret must not leave half of them installed.
    let contents = specs.iter().map(secret).collect::<Result<Vec<_>, _>>()?;
    Ok(specs
        .iter()
        .zip(contents)
        .map(|(spec, content)| {
            let slot = registry().named(Source::Static, &spec.name);
            slot.set(content);
            slot
        })
        .collect())
}

/// What the ADS client needs to reach a control plane over TLS (istiod's 15012 port).
#[derive(Clone, PartialEq)]
pub struct XdsTls {
    /// Trusted roots, PEM (`validation_context.trusted_ca`).
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server certificate must carry (`sni`, else the endpoint host).
    pub server_name: String,
}

impl std::fmt::Debug for XdsTls {
    // The private key never reaches a log or `/config_dump`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsTls")
            .field("server_name", &self.server_name)
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

fn has_pem(bytes: &[u8], label: &str) -> bool {
    String::from_utf8_lossy(bytes).contains(&format!("-----BEGIN {label}"))
}

/// The control-plane connection's TLS inputs, read and sanity-checked (tonic parses them).
pub fn xds_tls(spec: &XdsTlsSpec) -> Result<XdsTls, ConfigError> {
    let (ca_pem, _) = read(&spec.ca)?;
    if !has_pem(&ca_pem, "CERTIFICATE") {
        return Err(spec.ca.path.err("holds no PEM certificate"));
    }
    let identity = match &spec.identity {
        None => None,
        Some((chain, key)) => {
            let (c, _) = read(chain)?;
            let (k, _) = read(key)?;
            if !has_pem(&c, "CERTIFICATE") {
                return Err(chain.path.err("holds no PEM certificate"));
            }
            if !String::from_utf8_lossy(&k).contains("PRIVATE KEY") {
                return Err(key.path.err("holds no PEM private key"));
            }
            Some((c, k))
        }
    };
    Ok(XdsTls { ca_pem, identity, server_name: spec.server_name.clone() })
}
