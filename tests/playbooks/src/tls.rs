//! The PKI and rustls peers of TLS scenarios: a CA per test, a certificate issuer that records
//! what it was asked, and clients and origins for a [`Pump`](crate::pump::Pump) to connect.
//!
//! Everything here runs on the deterministic [`crypto`] provider: keys are
//! Ed25519 derived from names (a CA's from its name, a leaf's from its CA's name and its own
//! names), so certificates are the same every run, and every rustls configuration, the
//! core's included, gets a fresh seeded provider and a stopped clock. A scenario that does
//! the same things therefore puts the same bytes on the wire every run, ciphertext included.
//! That takes nothing from the failures tests provoke: a CA's name still gives it its own
//! key, so a leaf from a stranger's CA is still of an unknown issuer, and a name mismatch is
//! still one.

use std::sync::{Arc, Mutex};

use proxy_core::tls::{CertIssuer, CertRequest, TlsConfig};
use proxy_core::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::crypto::{self, ed25519_key};

/// A CA made for one test.
pub struct TestCa {
    pub cert: CertificateDer<'static>,
    /// The CA's common name, from which its key and its leaves' keys are derived.
    name: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A self-signed CA called `name`, with a key derived from `name`.
    pub fn new(name: &str) -> Self {
        let key = key_pair(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed CA").der().clone();
        Self { cert, name: name.to_owned(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names or IP addresses), with its key.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = self.leaf_key(&names.join(","));
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let cert = params.signed_by(&key, &self.issuer).expect("leaf").der().clone();
        Leaf(cert, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    }

    /// The key of this CA's leaf for `names`: its own for each CA, so that the same names
    /// from another CA do not share a key (nor, since rcgen hashes the key into it, a serial).
    fn leaf_key(&self, names: &str) -> KeyPair {
        key_pair(&format!("{} / {names}", self.name))
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("root");
        roots
    }
}

/// The PKI of a TLS scenario: the proxy's CA, which [`World::issuer`] mints from, and the
/// origins' CA.
pub struct World {
    pub proxy_ca: Arc<TestCa>,
    pub origin_ca: TestCa,
    pub issuer: Arc<TestIssuer>,
}

pub fn world() -> World {
    let proxy_ca = Arc::new(TestCa::new("proxy CA"));
    let issuer = Arc::new(TestIssuer::new(proxy_ca.clone()));
    World { proxy_ca, origin_ca: TestCa::new("origin CA"), issuer }
}

/// A certificate and its key.
pub struct Leaf(pub CertificateDer<'static>, pub PrivateKeyDer<'static>);

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Self(self.0.clone(), self.1.clone_key())
    }
}

/// Mints leaves for the SNI (or the target, as an IP SAN when it is one) and records every
/// request it got. A name gets the same certificate every time: its key is derived from the
/// CA's name and it.
pub struct TestIssuer {
    ca: Arc<TestCa>,
    pub requests: Mutex<Vec<CertRequest>>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestIssuer")
    }
}

impl TestIssuer {
    pub fn new(ca: Arc<TestCa>) -> Self {
        Self { ca, requests: Mutex::new(Vec::new()) }
    }
}

impl CertIssuer for TestIssuer {
    fn issue(&self, request: &CertRequest) -> Result<Arc<CertifiedKey>, String> {
        self.requests.lock().expect("no test panicked holding the requests").push(request.clone());
        let name = request.server_name.clone().unwrap_or_else(|| request.target_host.clone());
        let key = self.ca.leaf_key(&name);
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.subject_alt_names = vec![match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(|e: rcgen::Error| e.to_string())?),
        }];
        let cert = params.signed_by(&key, &self.ca.issuer).map_err(|e| e.to_string())?.der().clone();
        let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        CertifiedKey::from_der(vec![cert], der, &crypto::provider()).map(Arc::new).map_err(|e| e.to_string())
    }
}

/// rcgen's form of [`ed25519_key`]`(name)`.
fn key_pair(name: &str) -> KeyPair {
    let key = ed25519_key(name);
    KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519).expect("ed25519_key makes well-formed PKCS#8")
}

/// A core configuration that intercepts TLS: certificates from `issuer`, upstreams trusted if
/// `upstream_roots` vouches for them.
pub fn tls_proxy(issuer: Arc<TestIssuer>, upstream_roots: RootCertStore, ignore_hosts: &[&str]) -> Config {
    let server = crypto::server_config()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    let client = crypto::client_config()
        .with_root_certificates(upstream_roots)
        .with_no_client_auth();
    let tls = TlsConfig {
        issuer,
        server: Arc::new(server),
        client: Arc::new(client),
        ignore_hosts: ignore_hosts.iter().map(|p| regex::Regex::new(p).expect("pattern")).collect(),

        remedies: Default::default(),
    };
    Config { tls: Some(tls), ..Config::default() }
}

/// A client trusting `roots`, for `name`, offering `alpn`.
pub fn tls_client(roots: RootCertStore, name: &str, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let mut config = crypto::client_config()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(name.to_string()).expect("name");
    rustls::ClientConnection::new(Arc::new(config), name).expect("client")
}

/// An origin presenting `cert`.
pub fn tls_origin(cert: Leaf, alpn: &[&[u8]]) -> rustls::ServerConnection {
    let mut config = crypto::server_config()
        .with_no_client_auth()
        .with_single_cert(vec![cert.0], cert.1)
        .expect("origin cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    rustls::ServerConnection::new(Arc::new(config)).expect("origin")
}
