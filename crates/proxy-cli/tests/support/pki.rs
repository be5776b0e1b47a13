//! A throwaway PKI made with rcgen when a test starts: an origin CA, leaves it signed (one
//! valid, one expired, one for the wrong host), a self-signed leaf, a self-signed certificate
//! that says it is a CA (as `openssl req -x509` makes them), and a second CA that a test can
//! hand to the proxy with `--ca-cert`/`--ca-key`. Every certificate and key is also
//! written as PEM into a temp dir under `CARGO_TARGET_TMPDIR`, for curl, python and git.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::process::TempDir;

/// The name every origin leaf but `wrong_host` is issued for.
pub const ORIGIN_HOST: &str = "localhost";
/// The only name `wrong_host` is valid for.
pub const WRONG_HOST: &str = "wrong.example";

/// A certificate and its key, as DER for rustls and as PEM files.
pub struct Cert {
    pub cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// The test PKI; its files are removed on drop.
pub struct Pki {
    /// The origin CA's certificate (PEM): what the proxy gets with `--upstream-ca`, and what a
    /// client trusts to talk to an origin directly.
    pub origin_ca: PathBuf,
    /// Signed by the origin CA for `localhost` and `127.0.0.1`.
    pub valid: Cert,
    /// Like `valid`, but its validity ended in 2021.
    pub expired: Cert,
    /// Signed by the origin CA, valid only for `wrong.example`.
    pub wrong_host: Cert,
    /// For `localhost` and `127.0.0.1`, signed by its own key.
    pub self_signed: Cert,
    /// Like `self_signed`, but with `basicConstraints CA:TRUE`, as `openssl req -x509` makes
    /// them, and no key usages.
    pub self_signed_ca: Cert,
    /// Another CA, unrelated to the origin's: its certificate and its key (PEM).
    pub other_ca: Cert,
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");

        let ca_key = KeyPair::generate().expect("generate CA key");
        let ca = CertifiedIssuer::self_signed(ca_params("sansproxy test origin CA"), ca_key)
            .expect("self-sign the origin CA");
        let origin_ca = dir.join("origin-ca.pem");
        fs::write(&origin_ca, ca.pem()).expect("write origin CA");

        let valid = leaf_params("valid origin", &[ORIGIN_HOST], true);
        let mut expired = leaf_params("expired origin", &[ORIGIN_HOST], true);
        expired.not_before = date_time_ymd(2020, 1, 1);
        expired.not_after = date_time_ymd(2021, 1, 1);
        let wrong = leaf_params(WRONG_HOST, &[WRONG_HOST], false);
        let selfs = leaf_params("self-signed origin", &[ORIGIN_HOST], true);
        let mut selfs_ca = leaf_params("openssl-style origin", &[ORIGIN_HOST], true);
        selfs_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        selfs_ca.key_usages = Vec::new();
        selfs_ca.extended_key_usages = Vec::new();
        selfs_ca.use_authority_key_identifier_extension = false;

        let other_key = KeyPair::generate().expect("generate CA key");
        let other_cert = ca_params("sansproxy test proxy CA")
            .self_signed(&other_key)
            .expect("self-sign the other CA");
        let other_ca = Cert::write(&dir, "other-ca", &other_cert, &other_key);

        Pki {
            origin_ca,
            valid: Cert::signed(&dir, "valid", &valid, &ca),
            expired: Cert::signed(&dir, "expired", &expired, &ca),
            wrong_host: Cert::signed(&dir, "wrong-host", &wrong, &ca),
            self_signed: Cert::self_signed(&dir, "self-signed", &selfs),
            self_signed_ca: Cert::self_signed(&dir, "self-signed-ca", &selfs_ca),
            other_ca,
            dir,
        }
    }

    /// `origin_ca` as a string, for command lines.
    pub fn origin_ca_arg(&self) -> &str {
        self.origin_ca.to_str().expect("temp paths are utf-8")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Cert {
    fn signed(
        dir: &TempDir,
        name: &str,
        params: &CertificateParams,
        ca: &Issuer<'_, KeyPair>,
    ) -> Cert {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, ca).expect("sign leaf");
        Cert::write(dir, name, &cert, &key)
    }

    fn self_signed(dir: &TempDir, name: &str, params: &CertificateParams) -> Cert {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.self_signed(&key).expect("self-sign leaf");
        Cert::write(dir, name, &cert, &key)
    }

    fn write(dir: &TempDir, name: &str, cert: &Certificate, key: &KeyPair) -> Cert {
        let cert_pem = dir.join(format!("{name}-cert.pem"));
        let key_pem = dir.join(format!("{name}-key.pem"));
        fs::write(&cert_pem, cert.pem()).expect("write cert");
        fs::write(&key_pem, key.serialize_pem()).expect("write key");
        Cert {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_pem,
            key_pem,
        }
    }

    /// A rustls server configuration presenting this certificate, offering ALPN `http/1.1`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("a usable test certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    pub fn cert_arg(&self) -> &str {
        self.cert_pem.to_str().expect("temp paths are utf-8")
    }

    pub fn key_arg(&self) -> &str {
        self.key_pem.to_str().expect("temp paths are utf-8")
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2040, 1, 1);
    p
}

/// A server leaf for `dns` names, plus `127.0.0.1` when `with_ip`.
fn leaf_params(cn: &str, dns: &[&str], with_ip: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().expect("valid dns name")))
        .collect();
    if with_ip {
        p.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2039, 1, 1);
    p
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "sansproxy tests");
    dn
}
