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
    /// Kept in the directory the command line tool uses too, found when the options are built
    /// ([`default_ca_dir`]: `$SANSPROXY_CA_DIR`, else `$XDG_CONFIG_HOME/sansproxy`, else
    /// `$HOME/.sansproxy`), and made there on first use. So a program embedding the proxy and
    /// `sansproxy` itself sign with the same CA, which clients need to trust only once.
    DefaultDir,
    /// Kept in this directory, made there on first use
    /// ([`CertAuthority::load_or_create`]).
    Dir(PathBuf),
    /// A certificate and its PKCS#8 key, PEM; both may name one file holding both
    /// ([`CertAuthority::from_files`]).
    Files {
        /// The CA certificate, PEM.
        cert: PathBuf,
        /// Its private key, PKCS#8 PEM (RSA, ECDSA P-256 or P-384).
        key: PathBuf,
    },
    /// No CA: this certificate chain and key (one PEM file, [`FixedCert`]) go to every client,
    /// as for a reverse proxy with a certificate of its own. Nothing is minted, so a `CONNECT`
    /// to another name fails the client's verification.
    Fixed(PathBuf),
}

/// Everything that decides how TLS is intercepted. [`Default`] is what the command line tool
/// does unless told otherwise: the CA in [`default_ca_dir`], upstreams verified against the
/// Mozilla roots, every host intercepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Where the CA that signs the certificates shown to clients comes from.
    pub ca: CaSource,
    /// PEM files of certificates to trust upstream besides the Mozilla roots.
    pub upstream_roots: Vec<PathBuf>,
    /// Accept any upstream certificate (the handshake's signatures are still checked).
    /// Default: off.
    pub insecure_upstream: bool,
    /// Regular expressions over `host:port`; a match is passed through, not intercepted.
    pub ignore_hosts: Vec<String>,
    /// How many minted certificates to keep, least recently used dropped first (0: none).
    /// Default: [`DEFAULT_CACHE_SIZE`].
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
    /// No CA directory was named and none of the variables that give the default is set.
    #[error(
        "no directory for the CA: none of SANSPROXY_CA_DIR, XDG_CONFIG_HOME and HOME is set; \
         name one (a CA directory, or CA files) or turn interception off"
    )]
    NoCaDir,
    /// A file (or the CA directory) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The CA directory or one of its files could not be created or written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A PEM section that does not decode.
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file meant to hold a certificate holds none.
    #[error("{}: no certificate in it (expected a BEGIN CERTIFICATE section)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file meant to hold a private key holds none (or only an encrypted one).
    #[error(
        "{}: no private key in it (expected an unencrypted BEGIN PRIVATE KEY section)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA key in PKCS#1 or SEC1 form; the message says how to convert it.
    #[error(
        "{}: the key is {kind}; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`",
        path.display()
    )]
    KeyNotPkcs8 {
        /// The file.
        path: PathBuf,
        /// The form it is in, in words.
        kind: &'static str,
    },
    /// A key of an algorithm the proxy cannot sign with.
    #[error("{}: unsupported key (RSA, ECDSA P-256 or ECDSA P-384 are)", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate that cannot sign leaves: not a CA, or not parsable.
    #[error("{}: unusable CA certificate: {reason}", path.display())]
    BadCaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA key is not the certificate's.
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// An upstream root (`upstream_roots`) that rustls cannot use as a trust anchor.
    #[error("{origin}: cannot trust this certificate: {reason}")]
    BadRoot {
        /// Where it came from: its file, or its place among extra roots.
        origin: String,
        /// What rustls said.
        reason: String,
    },
    /// Making the CA's key or certificate failed.
    #[error("cannot make a key or certificate: {0}")]
    Generate(String),
    /// An `ignore_hosts` entry that is not a regular expression.
    #[error("bad --ignore-hosts pattern {pattern:?}: {source}")]
    IgnoreHosts {
        /// The pattern as given.
        pattern: String,
        /// What the regex parser said.
        source: regex::Error,
    },
    /// rustls refused a configuration or a certificate and key of the user's own.
    #[error("rustls configuration: {0}")]
    Rustls(String),
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self::new(CaSource::DefaultDir)
    }
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
        let kept_in = |dir: PathBuf| minting(CertAuthority::load_or_create(&dir)?, dir.join(CA_CERT_FILE));
        let (issuer, info): (Arc<dyn CertIssuer>, _) = match self.ca {
            CaSource::DefaultDir => kept_in(default_ca_dir().ok_or(TlsSetupError::NoCaDir)?)?,
            CaSource::Dir(dir) => kept_in(dir)?,
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

/// The directory the CA is kept in unless one is named: `$SANSPROXY_CA_DIR`, else
/// `$XDG_CONFIG_HOME/sansproxy`, else `$HOME/.sansproxy`. Empty variables count as unset, and a
/// relative `XDG_CONFIG_HOME` is ignored, as the XDG spec says. `None` when none is set.
pub fn default_ca_dir() -> Option<PathBuf> {
    default_ca_dir_from(|name| std::env::var_os(name))
}

/// [`default_ca_dir`], reading variables through `var`.
pub fn default_ca_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("SANSPROXY_CA_DIR")
        .or_else(|| set("XDG_CONFIG_HOME").filter(|d| d.is_absolute()).map(|d| d.join("sansproxy")))
        .or_else(|| set("HOME").map(|d| d.join(".sansproxy")))
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
