//! An Istio-shaped mesh PKI made per test with rcgen: one root, one intermediate CA per
//! cluster (`cluster1`, `cluster2`, like Istio's plug-in `cacerts`), and workload leaves with
//! an empty subject and a SPIFFE URI as their only identity (so the SAN extension is critical),
//! EKU serverAuth+clientAuth (spec §5.1, §5.2 "Test certs").
//!
//! Files land in a scratch directory per `MeshPki`: `root-cert.pem`, `<cluster>/ca-cert.pem`,
//! and one directory per leaf with `cert.pem` (leaf only), `key.pem` and `chain.pem`
//! (leaf + intermediate). A "foreign" mesh is simply another `MeshPki` (its own root).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// The default trust domain's SPIFFE id of a service account:
/// `spiffe://cluster.local/ns/{ns}/sa/{sa}`.
pub fn spiffe(ns: &str, sa: &str) -> String {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
}

/// The Istio SNI of a service port (`outbound_.PORT_._.HOST`, empty subset).
pub fn istio_sni(port: u16, host: &str) -> String {
    format!("outbound_.{port}_._.{host}")
}

/// One cluster's intermediate CA.
struct Intermediate {
    name: String,
    cert: PathBuf,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A root and two per-cluster intermediates, all written to files.
pub struct MeshPki {
    /// The tag given to [`MeshPki::new`] (in every subject, so roots of two meshes differ).
    pub tag: String,
    /// The scratch directory holding every file of this PKI.
    pub dir: PathBuf,
    /// `root-cert.pem`: what peers trust.
    pub root: PathBuf,
    /// The root certificate, PEM.
    pub root_pem: String,
    root_issuer: Issuer<'static, KeyPair>,
    intermediates: Vec<Intermediate>,
}

/// A workload certificate and its files.
pub struct Leaf {
    /// `cert.pem`: the leaf alone.
    pub cert: PathBuf,
    /// `key.pem`: its PKCS#8 private key.
    pub key: PathBuf,
    /// `chain.pem`: leaf then intermediate (what a workload presents).
    pub chain: PathBuf,
    /// The intermediate that signed it (`<cluster>/ca-cert.pem`), for `openssl -cert_chain`.
    pub intermediate: PathBuf,
    /// The serial number as `openssl x509 -serial` prints it (upper-case hex, no colons).
    pub serial: String,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Leaf + intermediate, PEM.
    pub chain_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The URI SAN.
    pub spiffe: String,
}

impl Leaf {
    /// `openssl s_client`/`s_server` arguments presenting this leaf with its intermediate:
    /// `-cert cert.pem -key key.pem -cert_chain ca-cert.pem`.
    pub fn openssl_args(&self) -> Vec<String> {
        vec![
            "-cert".into(),
            path_str(&self.cert),
            "-key".into(),
            path_str(&self.key),
            "-cert_chain".into(),
            path_str(&self.intermediate),
        ]
    }
}

/// A path as a `String` (test paths are UTF-8).
pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A fresh positive serial (first byte 0x10..=0x7f, so DER stores exactly these 8 bytes and
/// `openssl x509 -serial` prints exactly their hex).
fn fresh_serial() -> (SerialNumber, String) {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let mut bytes = h.finish().to_be_bytes();
    bytes[0] = (bytes[0] & 0x6f) | 0x10;
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

fn ca_params(cn: String) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cluster.local");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.serial_number = Some(fresh_serial().0);
    p
}

impl MeshPki {
    /// A new root (`CN=<tag> root`) with intermediates `cluster1` and `cluster2`.
    pub fn new(tag: &str) -> MeshPki {
        let dir = crate::scratch(&format!("pki-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params(format!("{tag} root"));
        let root_pem = root_params.self_signed(&root_key).unwrap().pem();
        let root = dir.join("root-cert.pem");
        std::fs::write(&root, &root_pem).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediates = ["cluster1", "cluster2"]
            .iter()
            .map(|name| {
                let key = KeyPair::generate().unwrap();
                let mut params = ca_params(format!("{tag} {name} intermediate"));
                params.use_authority_key_identifier_extension = true;
                let pem = params.signed_by(&key, &root_issuer).unwrap().pem();
                let cdir = dir.join(name);
                std::fs::create_dir_all(&cdir).unwrap();
                let cert = cdir.join("ca-cert.pem");
                std::fs::write(&cert, &pem).unwrap();
                Intermediate { name: name.to_string(), cert, pem, issuer: Issuer::new(params, key) }
            })
            .collect();
        MeshPki { tag: tag.to_string(), dir, root, root_pem, root_issuer, intermediates }
    }

    fn intermediate(&self, cluster: &str) -> &Intermediate {
        self.intermediates
            .iter()
            .find(|i| i.name == cluster)
            .unwrap_or_else(|| panic!("no intermediate {cluster:?} (cluster1 or cluster2)"))
    }

    /// The intermediate CA certificate of `cluster` (`<cluster>/ca-cert.pem`).
    pub fn intermediate_pem(&self, cluster: &str) -> PathBuf {
        self.intermediate(cluster).cert.clone()
    }

    /// `cert-chain.pem` of Istio's `cacerts`: the intermediate of `cluster` then the root.
    pub fn ca_chain_pem(&self, cluster: &str) -> String {
        format!("{}{}", self.intermediate(cluster).pem, self.root_pem)
    }

    /// A workload leaf under `cluster`'s intermediate: empty subject, URI SAN `spiffe` (plus
    /// `dns` names), EKU serverAuth+clientAuth, valid 1975–4096.
    pub fn leaf(&self, cluster: &str, spiffe: &str, dns: &[&str]) -> Leaf {
        self.make_leaf(cluster, spiffe, dns, false)
    }

    /// The same shape, expired since 2000-01-01.
    pub fn expired_leaf(&self, cluster: &str, spiffe: &str) -> Leaf {
        self.make_leaf(cluster, spiffe, &[], true)
    }

    /// A leaf signed directly by the root (no intermediate; `chain.pem` is the leaf alone).
    pub fn leaf_from_root(&self, spiffe: &str) -> Leaf {
        let (params, serial) = leaf_params(spiffe, &[], false);
        let key = KeyPair::generate().unwrap();
        let cert_pem = params.signed_by(&key, &self.root_issuer).unwrap().pem();
        self.write_leaf(cert_pem.clone(), cert_pem, key.serialize_pem(), serial, spiffe, self.root.clone())
    }

    fn make_leaf(&self, cluster: &str, spiffe: &str, dns: &[&str], expired: bool) -> Leaf {
        let ca = self.intermediate(cluster);
        let (params, serial) = leaf_params(spiffe, dns, expired);
        let key = KeyPair::generate().unwrap();
        let cert_pem = params.signed_by(&key, &ca.issuer).unwrap().pem();
        let chain_pem = format!("{cert_pem}{}", ca.pem);
        self.write_leaf(cert_pem, chain_pem, key.serialize_pem(), serial, spiffe, ca.cert.clone())
    }

    fn write_leaf(
        &self,
        cert_pem: String,
        chain_pem: String,
        key_pem: String,
        serial: String,
        spiffe: &str,
        intermediate: PathBuf,
    ) -> Leaf {
        let dir = self.dir.join(format!("leaf-{serial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, chain) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("chain.pem"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        std::fs::write(&chain, &chain_pem).unwrap();
        Leaf { cert, key, chain, intermediate, serial, cert_pem, chain_pem, key_pem, spiffe: spiffe.to_string() }
    }
}

fn leaf_params(spiffe: &str, dns: &[&str], expired: bool) -> (CertificateParams, String) {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new(); // empty subject ⇒ rcgen marks the SAN critical
    p.subject_alt_names = std::iter::once(SanType::URI(Ia5String::try_from(spiffe).unwrap()))
        .chain(dns.iter().map(|d| SanType::DnsName(Ia5String::try_from(*d).unwrap())))
        .collect();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    if expired {
        p.not_before = rcgen::date_time_ymd(1999, 1, 1);
        p.not_after = rcgen::date_time_ymd(2000, 1, 1);
    }
    let (serial, hex) = fresh_serial();
    p.serial_number = Some(serial);
    (p, hex)
}
