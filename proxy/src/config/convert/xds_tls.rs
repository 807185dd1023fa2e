//! TLS to the control plane: the `transport_socket` of the static cluster that `ads_config`
//! names (an Envoy `UpstreamTlsContext` with file or inline certificates). The gRPC client
//! (tonic) does its own TLS, so this converts to its inputs rather than to a data-plane
//! context; SDS is not available for the connection that would deliver it. Pure, like all
//! conversion: `tls::build::xds_tls` reads the files.

use xds_client::protos::envoy::config::core::v3::TransportSocket;
use xds_client::protos::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CertificateValidationContext, UpstreamTlsContext,
};

use super::super::error::{ConfigError, Path};
use super::super::tls::XdsTlsSpec;
use super::tls::data;

const UPSTREAM_TLS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// Converts the xDS cluster's `transport_socket` into what the ADS client needs. `host` is the
/// endpoint's host, the verification name when `sni` is empty.
pub fn xds_tls(ts: &TransportSocket, host: &str, path: &Path) -> Result<XdsTlsSpec, ConfigError> {
    let tp = path.field("typed_config");
    let any = match &ts.config_type {
        Some(xds_client::protos::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(a)) => a,
        None => return Err(tp.err("is required")),
    };
    if any.type_url != UPSTREAM_TLS {
        return Err(tp.err(format!("{} is not supported on the xDS cluster (only UpstreamTlsContext)", any.type_url)));
    }
    let ctx: UpstreamTlsContext =
        xds_client::json::unpack(any).map_err(|e| tp.err(format!("cannot decode UpstreamTlsContext: {e}")))?;
    let cp = tp.field("common_tls_context");
    let common = ctx.common_tls_context.unwrap_or_default();
    if !common.tls_certificate_sds_secret_configs.is_empty() {
        return Err(cp.err_at(
            "tls_certificate_sds_secret_configs",
            "SDS is not supported for the xDS connection itself; use tls_certificates",
        ));
    }
    let validation: CertificateValidationContext = match common.validation_context_type {
        Some(ValidationContextType::ValidationContext(v)) => v,
        Some(ValidationContextType::CombinedValidationContext(c)) => c.default_validation_context.unwrap_or_default(),
        Some(_) => {
            return Err(cp.err("only validation_context or combined_validation_context with trusted_ca is supported"))
        }
        None => return Err(cp.err_at("validation_context", "is required (the control plane's CA)")),
    };
    if !validation.match_typed_subject_alt_names.is_empty() {
        return Err(cp.err_at(
            "validation_context.match_typed_subject_alt_names",
            "is not supported on the xDS cluster; the server certificate is checked against sni",
        ));
    }
    let ca_path = cp.field("validation_context").field("trusted_ca");
    let ca = data(validation.trusted_ca.as_ref(), &ca_path)?;
    let identity = match common.tls_certificates.as_slice() {
        [] => None,
        [c] => {
            let p = cp.field("tls_certificates").item(0, "");
            let chain = data(c.certificate_chain.as_ref(), &p.field("certificate_chain"))?;
            let key = data(c.private_key.as_ref(), &p.field("private_key"))?;
            Some((chain, key))
        }
        _ => return Err(cp.err_at("tls_certificates", "one client certificate at most")),
    };
    let server_name = if ctx.sni.is_empty() { host.to_string() } else { ctx.sni.clone() };
    Ok(XdsTlsSpec { ca, identity, server_name })
}
