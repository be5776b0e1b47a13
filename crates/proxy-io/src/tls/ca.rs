//! The proxy's certificate authority: made on first run and kept in a directory, or loaded from
//! PEM files the user supplies.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{random_serial, TlsSetupError};

/// The file users install as a trusted root: the CA certificate alone, PEM.
pub const CA_CERT_FILE: &str = "sansproxy-ca-cert.pem";
/// The CA's private key (PKCS#8 PEM) followed by its certificate (PEM); readable by the owner
/// only.
pub const CA_KEY_FILE: &str = "sansproxy-ca.pem";

/// How long a CA made by [`CertAuthority::load_or_create`] is valid, in days (ten years).
const CA_VALID_DAYS: i64 = 3650;
/// Validity starts this many days in the past, for clients whose clocks lag.
const BACKDATE_DAYS: i64 = 2;

/// The certificate authority that signs the leaf certificates shown to clients.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    /// The CA names itself as its issuer: a root, which clients already hold once they trust it.
    is_root: bool,
    /// Made by this very call of [`load_or_create`](Self::load_or_create).
    created: bool,
}

impl CertAuthority {
    /// Loads the CA kept in `dir`, or makes one there if there is none.
    ///
    /// A new CA has an ECDSA P-256 key and is valid for ten years. `dir` gets
    /// [`CA_KEY_FILE`] (key and certificate, mode 0600 from the moment it exists) and
    /// [`CA_CERT_FILE`] (the certificate alone, for users to trust). Processes starting at the
    /// same time agree on one CA: the key file appears whole or not at all, and only the first
    /// to create it wins.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsSetupError> {
        create_private_dir(dir).map_err(|source| TlsSetupError::Write { path: dir.into(), source })?;
        let key_path = dir.join(CA_KEY_FILE);
        let ca = match fs::read_to_string(&key_path) {
            Ok(pem) => Self::load_combined(&pem, &key_path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut ca = Self::generate()?;
                let pem = format!("{}{}", ca.issuer.key().serialize_pem(), ca.cert_pem);
                match create_exclusive(dir, &key_path, pem.as_bytes()) {
                    Ok(()) => {
                        ca.created = true;
                        ca
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        // Another process made one first: use it, so both sign alike.
                        let pem = fs::read_to_string(&key_path)
                            .map_err(|source| TlsSetupError::Read { path: key_path.clone(), source })?;
                        Self::load_combined(&pem, &key_path)?
                    }
                    Err(source) => return Err(TlsSetupError::Write { path: key_path, source }),
                }
            }
            Err(source) => return Err(TlsSetupError::Read { path: key_path, source }),
        };
        warn_if_exposed(&key_path);
        let cert_path = dir.join(CA_CERT_FILE);
        if fs::read(&cert_path).ok().as_deref() != Some(ca.cert_pem.as_bytes()) {
            replace_file(dir, &cert_path, ca.cert_pem.as_bytes())
                .map_err(|source| TlsSetupError::Write { path: cert_path, source })?;
        }
        Ok(ca)
    }

    /// A CA from a certificate (PEM) and its PKCS#8 private key (PEM): RSA, ECDSA P-256 or
    /// P-384. Both may be the same text holding the key and the certificate; other PEM
    /// sections are ignored.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsSetupError> {
        Self::parse(cert_pem, Path::new("<certificate PEM>"), key_pem, Path::new("<key PEM>"))
    }

    /// [`from_pem`](Self::from_pem) reading two files, which may be one and the same.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, TlsSetupError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| TlsSetupError::Read { path: path.into(), source })
        };
        let cert_pem = read(cert_path)?;
        let key_pem = if key_path == cert_path { cert_pem.clone() } else { read(key_path)? };
        Self::parse(&cert_pem, cert_path, &key_pem, key_path)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate, PEM: what a client is told to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Whether the CA is a root (it issued its own certificate). A CA that is not must be sent
    /// along with every leaf, since clients trust only the root above it.
    pub fn is_root(&self) -> bool {
        self.is_root
    }

    /// Whether [`load_or_create`](Self::load_or_create) made this CA rather than loading it.
    pub fn is_new(&self) -> bool {
        self.created
    }

    pub(super) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    fn generate() -> Result<Self, TlsSetupError> {
        let generating = |e: rcgen::Error| TlsSetupError::Generate(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generating)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "sansproxy CA");
        name.push(DnType::OrganizationName, "sansproxy");
        params.distinguished_name = name;
        // Path length 0: the CA signs leaves, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(BACKDATE_DAYS);
        params.not_after = now + time::Duration::days(CA_VALID_DAYS);
        params.serial_number = Some(random_serial().map_err(TlsSetupError::Generate)?);
        let cert = params.self_signed(&key).map_err(generating)?;
        Ok(Self {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            is_root: true,
            created: false,
        })
    }

    fn load_combined(pem: &str, path: &Path) -> Result<Self, TlsSetupError> {
        Self::parse(pem, path, pem, path)
    }

    fn parse(
        cert_pem: &str,
        cert_path: &Path,
        key_pem: &str,
        key_path: &Path,
    ) -> Result<Self, TlsSetupError> {
        let cert = match CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
            Some(Ok(cert)) => cert,
            Some(Err(e)) => return Err(TlsSetupError::Pem { path: cert_path.into(), reason: e.to_string() }),
            None => return Err(TlsSetupError::NoCertificate { path: cert_path.into() }),
        };
        let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
            Ok(key @ PrivateKeyDer::Pkcs8(_)) => key,
            Ok(other) => {
                let kind = match other {
                    PrivateKeyDer::Pkcs1(_) => "a PKCS#1 RSA key (BEGIN RSA PRIVATE KEY)",
                    PrivateKeyDer::Sec1(_) => "a SEC1 EC key (BEGIN EC PRIVATE KEY)",
                    _ => "not in PKCS#8 form",
                };
                return Err(TlsSetupError::KeyNotPkcs8 { path: key_path.into(), kind });
            }
            Err(pem::Error::NoItemsFound) => {
                return Err(TlsSetupError::NoPrivateKey { path: key_path.into() })
            }
            Err(e) => return Err(TlsSetupError::Pem { path: key_path.into(), reason: e.to_string() }),
        };
        let key =
            KeyPair::try_from(&key).map_err(|_| TlsSetupError::UnsupportedKey { path: key_path.into() })?;

        let bad_cert = |reason: String| TlsSetupError::BadCaCert { path: cert_path.into(), reason };
        let (_, x509) = X509Certificate::from_der(&cert).map_err(|e| bad_cert(e.to_string()))?;
        let is_ca = x509.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(bad_cert("not a CA certificate (its basic constraints lack cA=true)".into()));
        }
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(TlsSetupError::KeyMismatch { cert: cert_path.into(), key: key_path.into() });
        }
        let is_root = x509.subject().as_raw() == x509.issuer().as_raw();
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| bad_cert(e.to_string()))?;
        let cert_pem = pem_encode(&cert);
        Ok(Self { issuer, cert: cert.into_owned(), cert_pem, is_root, created: false })
    }
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("algorithm", self.issuer.key().algorithm())
            .field("is_root", &self.is_root)
            .finish_non_exhaustive()
    }
}

/// PEM text of one certificate: 64 columns and LF line ends, as OpenSSL writes it.
fn pem_encode(cert: &CertificateDer<'_>) -> String {
    let pem = ::pem::Pem::new("CERTIFICATE", cert.as_ref());
    ::pem::encode_config(&pem, ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A temporary file in `dir` holding `data`, synced to disk, created with `mode` (so it is never
/// more exposed than the file it becomes).
fn temp_file(dir: &Path, mode: u32, data: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sansproxy-").suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = builder.tempfile_in(dir)?;
    file.write_all(data)?;
    file.as_file().sync_all()?;
    Ok(file)
}

/// Creates `path` holding `data`, mode 0600, failing with `AlreadyExists` if it is there: the
/// data goes to a private temporary file first, which then takes the name only if no one else
/// has (`renameat2`'s `RENAME_NOREPLACE`, or a hard link), so no one ever sees the file partly
/// written.
fn create_exclusive(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    match temp_file(dir, 0o600, data)?.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() != io::ErrorKind::AlreadyExists => {
            // A file system with neither: create in place (the mode still holds). Dropping the
            // temporary file removes it.
            drop(e.file);
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)?.write_all(data)
        }
        Err(e) => Err(e.error),
    }
}

/// Writes `path` (mode 0644) through a temporary file and a rename.
fn replace_file(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    temp_file(dir, 0o644, data)?.persist(path).map(drop).map_err(|e| e.error)
}

fn warn_if_exposed(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(key_path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!("{} is readable by others; chmod 600 it", key_path.display());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
}
