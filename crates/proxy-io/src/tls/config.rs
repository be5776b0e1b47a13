//! The rustls configurations of both ends: how upstream certificates are trusted, and the
//! server side's session resumption.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme};

use super::minter::provider;
use super::TlsSetupError;

/// TLS 1.2 sessions remembered for clients that resume by session id.
const SESSION_CACHE_SIZE: usize = 4096;

/// The configuration for handshakes with upstream servers: TLS 1.2 and 1.3, the default
/// resumption store, and a verifier trusting the Mozilla roots of `webpki-roots` plus
/// `extra_roots`. A self-signed server certificate fails as [`SelfSigned`] rather than as an
/// unknown issuer. With `insecure`, any certificate is accepted, but the server must still
/// prove it holds the certificate's key.
pub fn upstream_client_config(
    extra_roots: Vec<CertificateDer<'static>>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = default_roots();
    for (i, cert) in extra_roots.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsSetupError::BadRoot {
            origin: format!("extra root #{}", i + 1),
            reason: e.to_string(),
        })?;
    }
    client_config_with_roots(roots, insecure)
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
/// tickets from a rotating ring `Ticketer` and a stateful session cache, so returning clients
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
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(setup)?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    Ok(config)
}

/// An upstream certificate that signed itself: the reason a verification failed when the
/// certificate was its own issuer.
#[derive(Debug, thiserror::Error)]
#[error("self-signed certificate")]
pub struct SelfSigned;

pub(super) fn default_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

pub(super) fn client_config_with_roots(
    roots: RootCertStore,
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
        Arc::new(UpstreamVerifier { webpki, algorithms })
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// webpki's verification, telling a self-signed certificate apart from one whose issuer is
/// merely unknown.
#[derive(Debug)]
struct UpstreamVerifier {
    webpki: Arc<WebPkiServerVerifier>,
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
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if is_self_signed(end_entity, now, &self.algorithms) =>
            {
                Err(Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(SelfSigned)))))
            }
            other => other,
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
