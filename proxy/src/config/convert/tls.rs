//! `DownstreamTlsContext` / `UpstreamTlsContext` / `Secret` → TLS contexts and secret slots.
//!
//! File and inline material is read and checked here, so a bad file fails start-up (or NACKs
//! the listener/cluster) with the path of the field. SDS references become slots that fill
//! when the secret arrives.

use std::path::PathBuf;
use std::sync::Arc;

use xds_client::protos::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier as S, data_source::Specifier, grpc_service::TargetSpecifier as T,
    ConfigSource, DataSource, TransportSocket,
};
use xds_client::protos::envoy::extensions::transport_sockets::tls::v3 as proto;
use xds_client::protos::google::protobuf::Any;

use super::common::string_matcher;
use super::fields::{check, FieldPolicy};
use crate::config::error::{ConfigError, Path};
use crate::tls::context::{Common, ServerTls, UpstreamTls, Versions};
use crate::tls::material::{CertMaterial, Roots};
use crate::tls::san::{SanKind, SanMatcher};
use crate::tls::secrets::{registry, Secret, Slot, Source};
use crate::tls::validation::{Checks, Validation};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const RAW_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
const UPSTREAM_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const RAW_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

pub(super) const UPSTREAM: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    honoured: &["common_tls_context", "sni"],
    ignored: &["allow_renegotiation", "max_session_keys", "enforce_rsa_key_usage"],
};

pub(super) const DOWNSTREAM: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    honoured: &["common_tls_context", "require_client_certificate"],
    ignored: &[
        "session_ticket_keys",
        "session_ticket_keys_sds_secret_config",
        "disable_stateless_session_resumption",
        "disable_stateful_session_resumption",
        "session_timeout",
        "full_scan_certs_on_sni_mismatch",
        "prefer_client_ciphers",
    ],
};

pub(super) const COMMON: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
    honoured: &[
        "tls_params",
        "tls_certificates",
        "tls_certificate_sds_secret_configs",
        "validation_context",
        "validation_context_sds_secret_config",
        "combined_validation_context",
        "alpn_protocols",
    ],
    ignored: &["key_log"],
};

pub(super) const PARAMS: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.TlsParameters",
    honoured: &["tls_minimum_protocol_version", "tls_maximum_protocol_version"],
    ignored: &["cipher_suites", "ecdh_curves", "signature_algorithms"],
};

pub(super) const CERTIFICATE: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
    honoured: &["certificate_chain", "private_key", "watched_directory"],
    ignored: &[],
};

pub(super) const VALIDATION: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
    honoured: &["trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names", "watched_directory"],
    ignored: &["max_verify_depth"],
};

pub(super) const SAN_MATCHER: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher",
    honoured: &["san_type", "matcher"],
    ignored: &[],
};

pub(super) const SDS_CONFIG: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig",
    honoured: &["name", "sds_config"],
    ignored: &[],
};

pub(super) const SECRET: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.tls.v3.Secret",
    honoured: &["name", "tls_certificate", "validation_context"],
    ignored: &[],
};

/// Reads a `DataSource` (file, inline string or bytes, environment variable); errors name the
/// field and the file.
pub fn data(d: Option<&DataSource>, path: &Path) -> Result<(Vec<u8>, Option<PathBuf>), ConfigError> {
    match d.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::Filename(f)) => std::fs::read(f)
            .map(|b| (b, Some(PathBuf::from(f))))
            .map_err(|e| path.err_at("filename", format!("cannot read \"{f}\": {e}"))),
        Some(Specifier::InlineString(s)) => Ok((s.clone().into_bytes(), None)),
        Some(Specifier::InlineBytes(b)) => Ok((b.clone(), None)),
        Some(Specifier::EnvironmentVariable(v)) => std::env::var(v)
            .map(|s| (s.into_bytes(), None))
            .map_err(|_| path.err_at("environment_variable", format!("${v} is not set"))),
        None => Err(path.err("is required")),
    }
}

/// `"path": ` for errors about file contents (empty for inline data).
fn in_file(f: &Option<PathBuf>) -> String {
    f.as_ref().map(|f| format!("\"{}\": ", f.display())).unwrap_or_default()
}

fn leaf_field(d: Option<&DataSource>) -> &'static str {
    match d.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::Filename(_)) => "filename",
        Some(Specifier::InlineBytes(_)) => "inline_bytes",
        Some(Specifier::EnvironmentVariable(_)) => "environment_variable",
        _ => "inline_string",
    }
}

/// Material read from config, with the bytes and files it came from (file slots compare
/// bytes to notice rotations).
pub struct Loaded<T> {
    /// The parsed material.
    pub value: T,
    /// Raw bytes, in file order.
    pub bytes: Vec<Vec<u8>>,
    /// Files read (empty for inline material).
    pub files: Vec<PathBuf>,
}

/// Key + chain → material, errors on the field at fault.
pub fn certificate(c: &proto::TlsCertificate, path: &Path) -> Result<Loaded<CertMaterial>, ConfigError> {
    check(c, &CERTIFICATE, path)?;
    let cp = path.field("certificate_chain");
    let kp = path.field("private_key");
    let (chain, chain_file) = data(c.certificate_chain.as_ref(), &cp)?;
    let (key, key_file) = data(c.private_key.as_ref(), &kp)?;
    let m = CertMaterial::from_pem(&chain, &key).map_err(|e| {
        use crate::tls::material::MaterialError as M;
        match e {
            M::NoKey | M::BadKey(_) | M::KeyMismatch => {
                kp.err_at(leaf_field(c.private_key.as_ref()), format!("{}{e}", in_file(&key_file)))
            }
            _ => cp.err_at(leaf_field(c.certificate_chain.as_ref()), format!("{}{e}", in_file(&chain_file))),
        }
    })?;
    Ok(Loaded { value: m, bytes: vec![chain, key], files: chain_file.into_iter().chain(key_file).collect() })
}

fn san_matchers(v: &proto::CertificateValidationContext, path: &Path) -> Result<Vec<SanMatcher>, ConfigError> {
    use proto::subject_alt_name_matcher::SanType;
    let mut out = Vec::new();
    #[allow(deprecated)]
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        out.push(SanMatcher {
            kind: SanKind::Any,
            test: string_matcher(m, &path.field("match_subject_alt_names").item(i, ""))?,
        });
    }
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let p = path.field("match_typed_subject_alt_names").item(i, "");
        check(m, &SAN_MATCHER, &p)?;
        let kind = match SanType::try_from(m.san_type) {
            Ok(SanType::Uri) => SanKind::Uri,
            Ok(SanType::Dns) => SanKind::Dns,
            Ok(SanType::Email) => SanKind::Email,
            Ok(SanType::IpAddress) => SanKind::Ip,
            _ => return Err(p.err_at("san_type", "must be URI, DNS, EMAIL or IP_ADDRESS")),
        };
        let Some(sm) = &m.matcher else { return Err(p.err_at("matcher", "is required")) };
        out.push(SanMatcher { kind, test: string_matcher(sm, &p.field("matcher"))? });
    }
    Ok(out)
}

/// A validation context's roots (if any) and SAN matchers.
fn validation(
    v: &proto::CertificateValidationContext,
    path: &Path,
) -> Result<(Option<Loaded<Validation>>, Vec<SanMatcher>), ConfigError> {
    check(v, &VALIDATION, path)?;
    let sans = san_matchers(v, path)?;
    if v.trusted_ca.is_none() {
        return Ok((None, sans));
    }
    let cap = path.field("trusted_ca");
    let (pem, file) = data(v.trusted_ca.as_ref(), &cap)?;
    let roots = Roots::from_pem(&pem)
        .map_err(|e| cap.err_at(leaf_field(v.trusted_ca.as_ref()), format!("{}{e}", in_file(&file))))?;
    let value = Validation { roots: Some(Arc::new(roots)), sans: Vec::new() };
    Ok((Some(Loaded { value, bytes: vec![pem], files: file.into_iter().collect() }), sans))
}

/// An SDS reference → its slot.
fn sds_slot(s: &proto::SdsSecretConfig, path: &Path) -> Result<Arc<Slot>, ConfigError> {
    check(s, &SDS_CONFIG, path)?;
    if s.name.is_empty() {
        return Err(path.err_at("name", "is required"));
    }
    let source = match &s.sds_config {
        None => {
            return registry()
                .find(&Source::Static, &s.name)
                .ok_or_else(|| path.err_at("name", format!("unknown static secret \"{}\"", s.name)));
        }
        Some(cs) => sds_source(cs, &path.field("sds_config"))?,
    };
    Ok(registry().named(source, &s.name))
}

fn sds_source(cs: &ConfigSource, path: &Path) -> Result<Source, ConfigError> {
    match &cs.config_source_specifier {
        Some(S::Ads(_)) => Ok(Source::Ads),
        Some(S::ApiConfigSource(a))
            if !matches!(
                xds_client::protos::envoy::config::core::v3::api_config_source::ApiType::try_from(a.api_type),
                Ok(xds_client::protos::envoy::config::core::v3::api_config_source::ApiType::Grpc)
            ) =>
        {
            Err(path.err_at(
                "api_config_source.api_type",
                "only GRPC is supported for SDS (istio-agent's socket speaks it)",
            ))
        }
        Some(S::ApiConfigSource(a)) => match a.grpc_services.first().and_then(|g| g.target_specifier.as_ref()) {
            Some(T::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => Ok(Source::Cluster(e.cluster_name.clone())),
            _ => Err(path.err_at("api_config_source.grpc_services", "an envoy_grpc cluster_name is required")),
        },
        _ => Err(path.err("only {ads: {}} or an api_config_source with an envoy_grpc cluster is supported")),
    }
}

fn file_or_inline(name: String, files: Vec<PathBuf>, watched: bool, bytes: Vec<Vec<u8>>, secret: Secret) -> Arc<Slot> {
    if files.is_empty() {
        Slot::with(name, Source::Inline, secret)
    } else {
        registry().files(&name, files, watched, bytes, secret)
    }
}

fn common(c: &proto::CommonTlsContext, path: &Path) -> Result<Common, ConfigError> {
    use proto::common_tls_context::ValidationContextType as V;
    check(c, &COMMON, path)?;
    let mut out = Common { alpn: c.alpn_protocols.clone(), ..Common::default() };
    if let Some(p) = &c.tls_params {
        let pp = path.field("tls_params");
        check(p, &PARAMS, &pp)?;
        out.versions = versions(p, &pp)?;
    }
    match (c.tls_certificates.as_slice(), c.tls_certificate_sds_secret_configs.as_slice()) {
        ([], []) => {}
        ([_, _, ..], _) | (_, [_, _, ..]) => {
            // Envoy picks among several by SNI and key type; serving only the first silently
            // would present the wrong certificate to some clients.
            let f =
                if c.tls_certificates.len() > 1 { "tls_certificates" } else { "tls_certificate_sds_secret_configs" };
            return Err(path.err_at(f, "one certificate per context is supported"));
        }
        ([first], []) => {
            let p = path.field("tls_certificates").item(0, "");
            let Loaded { value: m, bytes, files } = certificate(first, &p)?;
            let name = files.first().map(|f| f.display().to_string()).unwrap_or_else(|| "inline".into());
            out.cert =
                Some(file_or_inline(name, files, first.watched_directory.is_some(), bytes, Secret::Cert(Arc::new(m))));
        }
        ([], [first]) => {
            let slot = sds_slot(first, &path.field("tls_certificate_sds_secret_configs").item(0, &first.name))?;
            slot.expect(crate::tls::secrets::Kind::Certificate);
            out.cert = Some(slot);
        }
        _ => {
            return Err(
                path.err_at("tls_certificate_sds_secret_configs", "use either tls_certificates or SDS, not both")
            )
        }
    }
    let mut default_roots = None;
    let (slot, sans) = match &c.validation_context_type {
        None => (None, Vec::new()),
        Some(V::ValidationContext(v)) => {
            let vp = path.field("validation_context");
            let (fixed, sans) = validation(v, &vp)?;
            match fixed {
                Some(Loaded { value: val, bytes, files }) => {
                    let name = files.first().map(|f| f.display().to_string()).unwrap_or_else(|| "inline-ca".into());
                    let watched = v.watched_directory.is_some();
                    (Some(file_or_inline(name, files, watched, bytes, Secret::Validation(Arc::new(val)))), sans)
                }
                None if sans.is_empty() => (None, sans),
                None => return Err(vp.err_at("trusted_ca", "is required to match subject alt names")),
            }
        }
        Some(V::ValidationContextSdsSecretConfig(s)) => {
            (Some(sds_slot(s, &path.field("validation_context_sds_secret_config"))?), Vec::new())
        }
        Some(V::CombinedValidationContext(cv)) => {
            let cp = path.field("combined_validation_context");
            let sans = match &cv.default_validation_context {
                Some(d) => {
                    let (fixed, sans) = validation(d, &cp.field("default_validation_context"))?;
                    default_roots = fixed.and_then(|l| l.value.roots);
                    sans
                }
                None => Vec::new(),
            };
            let Some(s) = &cv.validation_context_sds_secret_config else {
                return Err(cp.err_at("validation_context_sds_secret_config", "is required"));
            };
            (Some(sds_slot(s, &cp.field("validation_context_sds_secret_config"))?), sans)
        }
        #[allow(deprecated)]
        Some(_) => return Err(path.err("certificate-provider validation contexts are not supported")),
    };
    if let Some(s) = &slot {
        s.expect(crate::tls::secrets::Kind::Validation);
    }
    out.checks = slot.map(|slot| Checks { slot, sans, default_roots });
    Ok(out)
}

fn versions(p: &proto::TlsParameters, path: &Path) -> Result<Versions, ConfigError> {
    use proto::tls_parameters::TlsProtocol as P;
    let min = P::try_from(p.tls_minimum_protocol_version).unwrap_or(P::TlsAuto);
    let max = P::try_from(p.tls_maximum_protocol_version).unwrap_or(P::TlsAuto);
    let v = Versions {
        tls12: !matches!(min, P::TlSv13) && !matches!(max, P::TlSv10 | P::TlSv11),
        tls13: !matches!(max, P::TlSv12 | P::TlSv10 | P::TlSv11),
    };
    if !v.tls12 && !v.tls13 {
        return Err(path.err("no TLS version left: Isthmus speaks TLS 1.2 and 1.3"));
    }
    Ok(v)
}

fn typed(ts: &TransportSocket, path: &Path) -> Result<Option<Any>, ConfigError> {
    use xds_client::protos::envoy::config::core::v3::transport_socket::ConfigType;
    let any = match &ts.config_type {
        Some(ConfigType::TypedConfig(a)) => a.clone(),
        None if ts.name == RAW_SOCKET => return Ok(None),
        None => return Err(path.err_at("typed_config", "is required")),
    };
    if any.type_url == RAW_URL {
        return Ok(None);
    }
    if ts.name != TLS_SOCKET && !ts.name.is_empty() && ts.name != "tls" {
        return Err(path.err_at("name", format!("transport socket {} is not supported", ts.name)));
    }
    Ok(Some(any))
}

/// A filter chain's `transport_socket` → TLS termination (`None` for raw_buffer).
pub fn downstream(ts: &TransportSocket, path: &Path) -> Result<Option<Arc<ServerTls>>, ConfigError> {
    let Some(any) = typed(ts, path)? else { return Ok(None) };
    let tp = path.field("typed_config");
    if any.type_url != DOWNSTREAM_URL {
        return Err(tp.err(format!("{} is not supported here (expected DownstreamTlsContext)", any.type_url)));
    }
    let ctx: proto::DownstreamTlsContext =
        xds_client::json::unpack(&any).map_err(|e| tp.err(format!("cannot decode DownstreamTlsContext: {e}")))?;
    check(&ctx, &DOWNSTREAM, &tp)?;
    let Some(c) = &ctx.common_tls_context else { return Err(tp.err_at("common_tls_context", "is required")) };
    let common = common(c, &tp.field("common_tls_context"))?;
    let require = ctx.require_client_certificate.map(|b| b.value).unwrap_or(false);
    if require && common.checks.is_none() {
        return Err(tp.err_at("require_client_certificate", "needs a validation context to verify client certificates"));
    }
    ServerTls::new(common, require).map(|s| Some(Arc::new(s))).map_err(|e| tp.err(e.to_string()))
}

const INTERNAL_UPSTREAM_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport";

const INTERNAL_UPSTREAM: FieldPolicy = FieldPolicy {
    message: "envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
    honoured: &["passthrough_metadata", "transport_socket"],
    ignored: &[],
};

/// The metadata an internal listener can use: the endpoint's original destination.
const ORIGINAL_DST_METADATA: &str = "envoy.filters.listener.original_dst";

/// A cluster's `transport_socket` → TLS origination (`None` for raw_buffer).
pub fn upstream(ts: &TransportSocket, path: &Path) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
    use xds_client::protos::envoy::config::core::v3::transport_socket::ConfigType;
    if let Some(ConfigType::TypedConfig(a)) = &ts.config_type {
        if a.type_url == INTERNAL_UPSTREAM_URL {
            return internal_upstream(a, &path.field("typed_config"));
        }
    }
    let Some(any) = typed(ts, path)? else { return Ok(None) };
    let tp = path.field("typed_config");
    if any.type_url != UPSTREAM_URL {
        return Err(tp.err(format!("{} is not supported here (expected UpstreamTlsContext)", any.type_url)));
    }
    let ctx: proto::UpstreamTlsContext =
        xds_client::json::unpack(&any).map_err(|e| tp.err(format!("cannot decode UpstreamTlsContext: {e}")))?;
    check(&ctx, &UPSTREAM, &tp)?;
    let c = ctx.common_tls_context.clone().unwrap_or_default();
    let common = common(&c, &tp.field("common_tls_context"))?;
    let sni = (!ctx.sni.is_empty()).then(|| ctx.sni.clone());
    UpstreamTls::new(common, sni).map(|u| Some(Arc::new(u))).map_err(|e| tp.err_at("sni", e.to_string()))
}

/// `internal_upstream` (Istio waypoints): connections to `envoy_internal_address` endpoints,
/// carrying the endpoint's original destination to the internal listener; the inner socket
/// (raw_buffer or TLS) is what runs over it.
fn internal_upstream(any: &Any, path: &Path) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
    use xds_client::protos::envoy::extensions::transport_sockets::internal_upstream::v3::InternalUpstreamTransport;
    use xds_client::protos::envoy::r#type::metadata::v3::metadata_kind::Kind;
    let t: InternalUpstreamTransport =
        xds_client::json::unpack(any).map_err(|e| path.err(format!("cannot decode InternalUpstreamTransport: {e}")))?;
    check(&t, &INTERNAL_UPSTREAM, path)?;
    for (i, m) in t.passthrough_metadata.iter().enumerate() {
        let host = matches!(m.kind.as_ref().and_then(|k| k.kind.as_ref()), Some(Kind::Host(_)));
        if !host || m.name != ORIGINAL_DST_METADATA {
            return Err(path.field("passthrough_metadata").item(i, &m.name).err(format!(
                "only host metadata {ORIGINAL_DST_METADATA} (the original destination) reaches internal listeners"
            )));
        }
    }
    match &t.transport_socket {
        Some(inner) => upstream(inner, &path.field("transport_socket")),
        None => Ok(None),
    }
}

/// An SDS `Secret` (or `static_resources.secrets[i]`) → its name and content.
pub fn secret(s: &proto::Secret, path: &Path) -> Result<(String, Secret), ConfigError> {
    use proto::secret::Type;
    check(s, &SECRET, path)?;
    let content = match &s.r#type {
        Some(Type::TlsCertificate(c)) => Secret::Cert(Arc::new(certificate(c, &path.field("tls_certificate"))?.value)),
        Some(Type::ValidationContext(v)) => {
            let vp = path.field("validation_context");
            // Without `trusted_ca` the referencing context's default roots apply (Envoy's merge).
            let (fixed, sans) = validation(v, &vp)?;
            let roots = fixed.and_then(|l| l.value.roots);
            Secret::Validation(Arc::new(Validation { roots, sans }))
        }
        _ => return Err(path.err("only tls_certificate and validation_context secrets are supported")),
    };
    Ok((s.name.clone(), content))
}
