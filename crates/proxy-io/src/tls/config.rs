//! The rustls configurations of both ends: how upstream certificates are trusted, and the
//! server side's session resumption.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use proxy_core::tls::SelfSigned;

use super::minter::provider;
use super::TlsSetupError;

/// TLS 1.2 sessions remembered for clients that resume by session id.
const SESSION_CACHE_SIZE: usize = 4096;

/// The configuration for handshakes with upstream servers: TLS 1.2 and 1.3, the default
/// resumption store, and a verifier trusting the Mozilla roots of `webpki-roots` plus
/// `extra_roots`. A self-signed server certificate fails as [`SelfSigned`] rather than as an
/// unknown issuer, and is accepted if it is one of `extra_roots` (as OpenSSL does), even when
/// it calls itself a CA, as those `openssl req -x509` makes do. With `insecure`, any
/// certificate is accepted, but the server must still prove it holds the certificate's key.
pub fn upstream_client_config(
    extra_roots: Vec<CertificateDer<'static>>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = default_roots();
    for (i, cert) in extra_roots.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| TlsSetupError::BadRoot {
            origin: format!("extra root #{}", i + 1),
            reason: e.to_string(),
        })?;
    }
    client_config_with_roots(roots, extra_roots, insecure)
}

/// Every certificate in a PEM file (other sections are skipped); at least one.
pub fn load_certs_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = fs::read(path).map_err(|source| TlsSetupError::Read { path: path.into(), source })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem { path: path.into(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The base of the proxy's server side: TLS 1.2 and 1.3, no client certificates, session
/// tickets from aws-lc-rs's rotating `Ticketer` and a stateful session cache, so returning clients
/// resume. Its certificate resolver is a placeholder that finds nothing: the core clones this
/// configuration per connection, setting `cert_resolver` and `alpn_protocols`; the clones share
/// the ticketer and the session cache.
pub fn server_base_config() -> Result<rustls::ServerConfig, TlsSetupError> {
    let setup = |e: Error| TlsSetupError::Rustls(e.to_string());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(setup)?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    Ok(config)
}

pub(super) fn default_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// The upstream configuration trusting `roots`; `pinned` (the certificates the user added to
/// them) are accepted as a server's own certificate whatever webpki thinks of them.
pub(super) fn client_config_with_roots(
    roots: RootCertStore,
    pinned: Vec<CertificateDer<'static>>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(AcceptAnyCertificate { algorithms })
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        Arc::new(UpstreamVerifier { webpki, pinned, algorithms })
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// webpki's verification, telling a self-signed certificate apart from one whose issuer is
/// merely unknown, and accepting one the user trusted by name.
#[derive(Debug)]
struct UpstreamVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Certificates the user trusts, which a server may present as its own.
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let self_signed = || Err(CertificateError::Other(OtherError(Arc::new(SelfSigned))).into());
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            // A certificate the user trusts that webpki refuses as a server's, because it says
            // it is a CA: still the server's, if it is for the name and in date.
            Err(_) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                verify_pinned(end_entity, server_name, now)
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if is_self_signed(end_entity, now, &self.algorithms) =>
            {
                self_signed()
            }
            // webpki refuses a certificate that calls itself a CA before it looks for an
            // issuer (`CaUsedAsEndEntity`): one that names itself as its issuer signed itself.
            Err(Error::InvalidCertificate(CertificateError::Other(_))) if is_self_issued(end_entity) => {
                self_signed()
            }
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether `cert` is its own issuer: it chains to a trust store holding only itself.
fn is_self_signed(cert: &CertificateDer<'_>, now: UnixTime, algorithms: &WebPkiSupportedAlgorithms) -> bool {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else {
        return false;
    };
    let mut itself = RootCertStore::empty();
    if itself.add(cert.clone().into_owned()).is_err() {
        return false;
    }
    rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &itself, &[], now, algorithms.all)
        .is_ok()
}

/// Whether `cert` names itself as its issuer.
fn is_self_issued(cert: &CertificateDer<'_>) -> bool {
    X509Certificate::from_der(cert).is_ok_and(|(_, x509)| x509.issuer().as_raw() == x509.subject().as_raw())
}

/// A certificate the user trusts, presented by a server as its own: it must be for
/// `server_name` and valid `now`. (That the server holds its key, the handshake's signature
/// proves.)
fn verify_pinned(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, Error> {
    let bad = || Error::InvalidCertificate(CertificateError::BadEncoding);
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    let (_, x509) = X509Certificate::from_der(cert).map_err(|_| bad())?;
    let (not_before, not_after) = (x509.validity().not_before.timestamp(), x509.validity().not_after.timestamp());
    let time = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let at = |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs).unwrap_or(0)));
    if time < not_before {
        let not_before = at(not_before);
        return Err(Error::InvalidCertificate(CertificateError::NotValidYetContext { time: now, not_before }));
    }
    if time > not_after {
        let not_after = at(not_after);
        return Err(Error::InvalidCertificate(CertificateError::ExpiredContext { time: now, not_after }));
    }
    Ok(ServerCertVerified::assertion())
}

/// `--insecure-upstream`: any certificate will do, but handshake signatures are still checked
/// against it.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The resolver of [`server_base_config`] until the core sets its own: no certificate, so a
/// handshake that reaches it fails.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// A [`CertIssuer`](proxy_core::tls::CertIssuer) that always presents one certificate: for a
/// reverse proxy with a certificate of its own (`--cert`) rather than minted ones.
#[derive(Debug)]
pub struct FixedCert(Arc<CertifiedKey>);

impl FixedCert {
    /// Read a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1) from one PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, TlsSetupError> {
        let chain = load_certs_pem(path)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(path)
            .map_err(|_| TlsSetupError::NoPrivateKey { path: path.into() })?;
        let key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| TlsSetupError::Rustls(format!("{}: {e}", path.display())))?;
        Ok(Self(Arc::new(key)))
    }
}

impl proxy_core::tls::CertIssuer for FixedCert {
    fn issue(&self, _request: &proxy_core::tls::CertRequest) -> Result<Arc<CertifiedKey>, String> {
        Ok(self.0.clone())
    }
}

/// A [`CertIssuer`](proxy_core::tls::CertIssuer) that presents certificates of the user's own
/// for the names they are given for (`--cert DOMAIN=PEM`, as mitmproxy's `--certs`), and asks
/// `fallback` for any other name: the proxy's own name as a secure web proxy, say, with a
/// certificate clients already trust, and minted ones for the hosts it intercepts.
pub struct CertsByName {
    certs: Vec<(String, Arc<CertifiedKey>)>,
    fallback: Arc<dyn proxy_core::tls::CertIssuer>,
}

/// Certificates loaded for [`CertsByName`], by the pattern of the names they are for.
pub struct OwnCerts(Vec<(String, Arc<CertifiedKey>)>);

impl OwnCerts {
    /// `certs`: a pattern (a name, `*.suffix` for any name under it, or `*`) and a PEM file of
    /// the certificate chain and key, tried in order.
    pub fn load(certs: &[(String, PathBuf)]) -> Result<Self, TlsSetupError> {
        let certs = certs
            .iter()
            .map(|(pattern, path)| Ok((pattern.to_ascii_lowercase(), FixedCert::from_pem_file(path)?.0)))
            .collect::<Result<Vec<_>, TlsSetupError>>()?;
        Ok(Self(certs))
    }
}

impl CertsByName {
    /// Presents `certs` to the names they are for, and what `fallback` mints to the rest.
    pub fn new(certs: OwnCerts, fallback: Arc<dyn proxy_core::tls::CertIssuer>) -> Self {
        Self { certs: certs.0, fallback }
    }
}

/// Whether `name` (lowercase) is what `pattern` names: itself, `*` for anything, or
/// `*.suffix` for any name under `suffix`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*") {
        Some("") => true,
        Some(suffix) if suffix.starts_with('.') => name.ends_with(suffix) && name.len() > suffix.len(),
        _ => pattern == name,
    }
}

impl proxy_core::tls::CertIssuer for CertsByName {
    fn issue(&self, request: &proxy_core::tls::CertRequest) -> Result<Arc<CertifiedKey>, String> {
        // The name the client asked for, else the address it connected to.
        let name = request.server_name.as_deref().unwrap_or(&request.target_host).to_ascii_lowercase();
        let own = self.certs.iter().find(|(pattern, _)| name_matches(pattern, &name));
        match own {
            Some((_, key)) => Ok(key.clone()),
            None => self.fallback.issue(request),
        }
    }
}

impl fmt::Debug for CertsByName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<&str> = self.certs.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("CertsByName").field("certs", &patterns).field("fallback", &self.fallback).finish()
    }
}

#[cfg(test)]
mod names {
    use super::name_matches;

    #[test]
    fn patterns_name_hosts() {
        assert!(name_matches("*", "anything.test"));
        assert!(name_matches("proxy.test", "proxy.test"));
        assert!(!name_matches("proxy.test", "other.test"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "badexample.com"));
        assert!(name_matches("127.0.0.1", "127.0.0.1"));
    }
}
