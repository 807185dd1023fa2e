//! `DownstreamTlsContext` / `UpstreamTlsContext` / `Secret` → TLS specs (`config::tls`).
//!
//! Pure: nothing is read here. Files, environment variables and SDS names become references
//! that `tls::build` resolves, so a bad file still fails start-up (or NACKs the listener or
//! cluster) with the path of the field, but conversion itself can run anywhere (fuzzing,
//! `--mode validate` on another machine's config).

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
use crate::config::tls::{
    CertFiles, CertSpec, ChecksSpec, CommonSpec, Data, DataSource as DataSrc, DownstreamSpec, SanKind, SanMatcher,
    SdsRef, SdsSource, SecretContent, SecretSpec, UpstreamSpec, ValidationSpec, Versions,
};

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

/// A `DataSource` → where to read it (the builder reads); errors name the field.
pub fn data(d: Option<&DataSource>, path: &Path) -> Result<Data, ConfigError> {
    let source = match d.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::Filename(f)) => DataSrc::File(PathBuf::from(f)),
        Some(Specifier::InlineString(s)) => DataSrc::InlineString(s.clone().into_bytes()),
        Some(Specifier::InlineBytes(b)) => DataSrc::InlineBytes(b.clone()),
        Some(Specifier::EnvironmentVariable(v)) => DataSrc::Env(v.clone()),
        None => return Err(path.err("is required")),
    };
    Ok(Data { source, path: path.clone() })
}

/// Key + chain → where to read them.
pub fn certificate(c: &proto::TlsCertificate, path: &Path) -> Result<CertFiles, ConfigError> {
    check(c, &CERTIFICATE, path)?;
    Ok(CertFiles {
        chain: data(c.certificate_chain.as_ref(), &path.field("certificate_chain"))?,
        key: data(c.private_key.as_ref(), &path.field("private_key"))?,
        watched: c.watched_directory.is_some(),
        path: path.clone(),
    })
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

/// A validation context: its roots (if any) and SAN matchers.
fn validation(v: &proto::CertificateValidationContext, path: &Path) -> Result<ValidationSpec, ConfigError> {
    check(v, &VALIDATION, path)?;
    let sans = san_matchers(v, path)?;
    let trusted_ca = match &v.trusted_ca {
        None => None,
        Some(d) => Some(data(Some(d), &path.field("trusted_ca"))?),
    };
    Ok(ValidationSpec { trusted_ca, sans, watched: v.watched_directory.is_some() })
}

/// An SDS reference.
fn sds_ref(s: &proto::SdsSecretConfig, path: &Path) -> Result<SdsRef, ConfigError> {
    check(s, &SDS_CONFIG, path)?;
    if s.name.is_empty() {
        return Err(path.err_at("name", "is required"));
    }
    let source = match &s.sds_config {
        None => SdsSource::Static,
        Some(cs) => sds_source(cs, &path.field("sds_config"))?,
    };
    Ok(SdsRef { name: s.name.clone(), source, path: path.clone() })
}

fn sds_source(cs: &ConfigSource, path: &Path) -> Result<SdsSource, ConfigError> {
    match &cs.config_source_specifier {
        Some(S::Ads(_)) => Ok(SdsSource::Ads),
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
            Some(T::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => Ok(SdsSource::Cluster(e.cluster_name.clone())),
            _ => Err(path.err_at("api_config_source.grpc_services", "an envoy_grpc cluster_name is required")),
        },
        _ => Err(path.err("only {ads: {}} or an api_config_source with an envoy_grpc cluster is supported")),
    }
}

fn common(c: &proto::CommonTlsContext, path: &Path) -> Result<CommonSpec, ConfigError> {
    use proto::common_tls_context::ValidationContextType as V;
    check(c, &COMMON, path)?;
    let mut out = CommonSpec { alpn: c.alpn_protocols.clone(), ..CommonSpec::default() };
    if let Some(p) = &c.tls_params {
        let pp = path.field("tls_params");
        check(p, &PARAMS, &pp)?;
        out.versions = versions(p, &pp)?;
    }
    out.cert = match (c.tls_certificates.as_slice(), c.tls_certificate_sds_secret_configs.as_slice()) {
        ([], []) => None,
        ([_, _, ..], _) | (_, [_, _, ..]) => {
            // Envoy picks among several by SNI and key type; serving only the first silently
            // would present the wrong certificate to some clients.
            let f =
                if c.tls_certificates.len() > 1 { "tls_certificates" } else { "tls_certificate_sds_secret_configs" };
            return Err(path.err_at(f, "one certificate per context is supported"));
        }
        ([first], []) => Some(CertSpec::Given(certificate(first, &path.field("tls_certificates").item(0, ""))?)),
        ([], [first]) => {
            Some(CertSpec::Sds(sds_ref(first, &path.field("tls_certificate_sds_secret_configs").item(0, &first.name))?))
        }
        _ => {
            return Err(
                path.err_at("tls_certificate_sds_secret_configs", "use either tls_certificates or SDS, not both")
            )
        }
    };
    out.checks = match &c.validation_context_type {
        None => None,
        Some(V::ValidationContext(v)) => {
            let vp = path.field("validation_context");
            let spec = validation(v, &vp)?;
            match spec.trusted_ca {
                Some(_) => Some(ChecksSpec::Given(spec)),
                None if spec.sans.is_empty() => None,
                None => return Err(vp.err_at("trusted_ca", "is required to match subject alt names")),
            }
        }
        Some(V::ValidationContextSdsSecretConfig(s)) => Some(ChecksSpec::Sds {
            secret: sds_ref(s, &path.field("validation_context_sds_secret_config"))?,
            default: None,
        }),
        Some(V::CombinedValidationContext(cv)) => {
            let cp = path.field("combined_validation_context");
            let default = match &cv.default_validation_context {
                Some(d) => Some(validation(d, &cp.field("default_validation_context"))?),
                None => None,
            };
            let Some(s) = &cv.validation_context_sds_secret_config else {
                return Err(cp.err_at("validation_context_sds_secret_config", "is required"));
            };
            Some(ChecksSpec::Sds { secret: sds_ref(s, &cp.field("validation_context_sds_secret_config"))?, default })
        }
        #[allow(deprecated)]
        Some(_) => return Err(path.err("certificate-provider validation contexts are not supported")),
    };
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
pub fn downstream(ts: &TransportSocket, path: &Path) -> Result<Option<Arc<DownstreamSpec>>, ConfigError> {
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
    if common.cert.is_none() {
        return Err(tp.field("common_tls_context").err("a certificate is required to terminate TLS"));
    }
    Ok(Some(Arc::new(DownstreamSpec { common, require_client_certificate: require, path: tp })))
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
pub fn upstream(ts: &TransportSocket, path: &Path) -> Result<Option<Arc<UpstreamSpec>>, ConfigError> {
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
    if let Some(s) = &sni {
        rustls::pki_types::ServerName::try_from(s.as_str())
            .map_err(|e| tp.err_at("sni", format!("\"{s}\" is not a valid server name: {e}")))?;
    }
    Ok(Some(Arc::new(UpstreamSpec { common, sni, path: tp })))
}

/// `internal_upstream` (Istio waypoints): connections to `envoy_internal_address` endpoints,
/// carrying the endpoint's original destination to the internal listener; the inner socket
/// (raw_buffer or TLS) is what runs over it.
fn internal_upstream(any: &Any, path: &Path) -> Result<Option<Arc<UpstreamSpec>>, ConfigError> {
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

/// An SDS `Secret` (or `static_resources.secrets[i]`) → its name and where its content is.
pub fn secret(s: &proto::Secret, path: &Path) -> Result<SecretSpec, ConfigError> {
    use proto::secret::Type;
    check(s, &SECRET, path)?;
    let content = match &s.r#type {
        Some(Type::TlsCertificate(c)) => SecretContent::Cert(certificate(c, &path.field("tls_certificate"))?),
        // Without `trusted_ca` the referencing context's default roots apply (Envoy's merge).
        Some(Type::ValidationContext(v)) => {
            SecretContent::Validation(validation(v, &path.field("validation_context"))?)
        }
        _ => return Err(path.err("only tls_certificate and validation_context secrets are supported")),
    };
    Ok(SecretSpec { name: s.name.clone(), content })
}
