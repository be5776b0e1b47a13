//! What TLS interception needs from outside the core: the proxy's certificate authority, the
//! [`Minter`] that signs a leaf certificate per host, and the rustls configurations of both
//! ends (which upstream certificates to trust, how clients resume sessions).
//!
//! [`TlsOptions::build`] puts them together into the core's
//! [`proxy_core::tls::TlsConfig`]:
//!
//! ```no_run
//! use proxy_io::tls::{CaSource, TlsOptions};
//!
//! # fn demo() -> Result<(), proxy_io::tls::TlsSetupError> {
//! let options = TlsOptions::new(CaSource::Dir("/home/me/.sansproxy".into()));
//! let (tls, ca) = options.build()?;
//! if let Some(ca) = ca {
//!     println!("trust {}", ca.cert_path.display());
//! }
//! let config = proxy_core::Config { tls: Some(tls), ..Default::default() };
//! # let _ = config; Ok(()) }
//! ```
//!
//! Everything uses rustls's `ring` provider.

mod ca;
mod config;
mod minter;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use proxy_core::tls::{CertIssuer, Remedies, TlsConfig};
use rcgen::SerialNumber;

pub use ca::{CertAuthority, CA_CERT_FILE, CA_KEY_FILE};
pub use config::{load_certs_pem, server_base_config, upstream_client_config, CertsByName, FixedCert, OwnCerts, SelfSigned};
pub use minter::{Minter, DEFAULT_CACHE_SIZE};

/// Where the proxy's CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Kept in this directory, made there on first use
    /// ([`CertAuthority::load_or_create`]).
    Dir(PathBuf),
    /// A certificate and its PKCS#8 key, PEM; both may name one file holding both
    /// ([`CertAuthority::from_files`]).
    Files { cert: PathBuf, key: PathBuf },
    /// No CA: this certificate chain and key (one PEM file, [`FixedCert`]) go to every client,
    /// as for a reverse proxy with a certificate of its own. Nothing is minted, so a `CONNECT`
    /// to another name fails the client's verification.
    Fixed(PathBuf),
}

/// Everything that decides how TLS is intercepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca: CaSource,
    /// PEM files of certificates to trust upstream besides the Mozilla roots.
    pub upstream_roots: Vec<PathBuf>,
    /// Accept any upstream certificate.
    pub insecure_upstream: bool,
    /// Regular expressions over `host:port`; a match is passed through, not intercepted.
    pub ignore_hosts: Vec<String>,
    /// How many minted certificates to keep (0: none).
    pub cache_size: usize,
    /// Certificates of the user's own, each for the names its pattern gives (a name,
    /// `*.suffix`, or `*`), presented instead of minted ones: see [`CertsByName`].
    pub certs: Vec<(String, PathBuf)>,
}

/// Where the CA certificate to trust is, for telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaInfo {
    /// The PEM file holding the CA certificate.
    pub cert_path: PathBuf,
    /// The CA was made just now.
    pub created: bool,
}

/// Why TLS interception could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate in it (expected a BEGIN CERTIFICATE section)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{}: no private key in it (expected an unencrypted BEGIN PRIVATE KEY section)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    #[error(
        "{}: the key is {kind}; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`",
        path.display()
    )]
    KeyNotPkcs8 { path: PathBuf, kind: &'static str },
    #[error("{}: unsupported key (RSA, ECDSA P-256 or ECDSA P-384 are)", path.display())]
    UnsupportedKey { path: PathBuf },
    #[error("{}: unusable CA certificate: {reason}", path.display())]
    BadCaCert { path: PathBuf, reason: String },
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{origin}: cannot trust this certificate: {reason}")]
    BadRoot { origin: String, reason: String },
    #[error("cannot make a key or certificate: {0}")]
    Generate(String),
    #[error("bad --ignore-hosts pattern {pattern:?}: {source}")]
    IgnoreHosts { pattern: String, source: regex::Error },
    #[error("rustls configuration: {0}")]
    Rustls(String),
}

impl TlsOptions {
    /// Defaults: verify upstreams against the Mozilla roots, intercept every host, cache
    /// [`DEFAULT_CACHE_SIZE`] certificates.
    pub fn new(ca: CaSource) -> Self {
        Self {
            ca,
            upstream_roots: Vec::new(),
            insecure_upstream: false,
            ignore_hosts: Vec::new(),
            cache_size: DEFAULT_CACHE_SIZE,
            certs: Vec::new(),
        }
    }

    /// Loads or makes the CA, reads the extra roots and compiles the patterns.
    /// The CA's whereabouts come back for telling the user, unless there is none
    /// ([`CaSource::Fixed`]).
    pub fn build(self) -> Result<(TlsConfig, Option<CaInfo>), TlsSetupError> {
        // Cheap checks first: a typo in a pattern should not leave a new CA behind.
        let ignore_hosts = self
            .ignore_hosts
            .iter()
            .map(|p| {
                regex::Regex::new(p)
                    .map_err(|source| TlsSetupError::IgnoreHosts { pattern: p.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let own_certs = (!self.certs.is_empty()).then(|| OwnCerts::load(&self.certs)).transpose()?;
        let mut roots = config::default_roots();
        let mut pinned = Vec::new();
        for path in &self.upstream_roots {
            for cert in load_certs_pem(path)? {
                roots.add(cert.clone()).map_err(|e| TlsSetupError::BadRoot {
                    origin: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                pinned.push(cert);
            }
        }
        let client = config::client_config_with_roots(roots, pinned, self.insecure_upstream)?;
        let server = server_base_config()?;
        let cache_size = self.cache_size;
        // A CA mints a certificate per name, and the user is told where it is.
        let minting = |ca: CertAuthority, cert_path: PathBuf| -> Result<(Arc<dyn CertIssuer>, _), TlsSetupError> {
            let info = CaInfo { cert_path, created: ca.is_new() };
            Ok((Arc::new(Minter::new(ca, cache_size)?), Some(info)))
        };
        let (issuer, info): (Arc<dyn CertIssuer>, _) = match self.ca {
            CaSource::Dir(dir) => minting(CertAuthority::load_or_create(&dir)?, dir.join(CA_CERT_FILE))?,
            CaSource::Files { cert, key } => minting(CertAuthority::from_files(&cert, &key)?, cert)?,
            CaSource::Fixed(path) => (Arc::new(FixedCert::from_pem_file(&path)?), None),
        };
        let issuer: Arc<dyn CertIssuer> = match own_certs {
            None => issuer,
            Some(own) => Arc::new(CertsByName::new(own, issuer)),
        };
        let remedies = Self::remedies(info.as_ref());
        let tls = TlsConfig { issuer, server: Arc::new(server), client: Arc::new(client), ignore_hosts, remedies };
        Ok((tls, info))
    }

    /// How failure messages name the settings that fix them: by these options' fields, and
    /// the CA certificate by its file when there is one.
    pub fn remedies(ca: Option<&CaInfo>) -> Remedies {
        let trust_ca = match ca {
            Some(ca) => format!("the CA certificate {}", ca.cert_path.display()).into(),
            None => "the certificate the proxy presents".into(),
        };
        Remedies {
            upstream_ca: "TlsOptions::upstream_roots".into(),
            insecure_upstream: "TlsOptions::insecure_upstream".into(),
            ignore_hosts: "TlsOptions::ignore_hosts".into(),
            trust_ca,
        }
    }
}

/// A random positive serial number of 126 random bits (RFC 5280 asks for at most 20 octets, and
/// unpredictable ones since the MD5 collisions).
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    minter::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "no randomness for a serial number".to_string())?;
    // Positive, and 16 octets long whatever the leading bits.
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests;
