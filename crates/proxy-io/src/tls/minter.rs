//! Leaf certificates for intercepted connections, signed by the proxy's CA and cached.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use proxy_core::tls::{CertIssuer, CertRequest};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SigningKey};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{random_serial, CertAuthority, TlsSetupError};

/// How many leaf certificates a [`Minter`] keeps by default.
pub const DEFAULT_CACHE_SIZE: usize = 1000;

/// Leaves are valid from this many days ago, for clients whose clocks lag.
const BACKDATE_DAYS: i64 = 2;
/// Leaves are valid for a year: Apple's clients refuse server certificates valid for more than
/// 397 days.
const LEAF_VALID_DAYS: i64 = 365;
/// The longest common name X.509 allows (RFC 5280's `ub-common-name`).
const MAX_CN_LEN: usize = 64;

/// Mints the certificates the proxy shows to clients: one ECDSA P-256 key for every leaf,
/// made at startup, and a certificate per set of names, signed by the CA and kept in a bounded
/// LRU cache, so a returning host costs no signature.
pub struct Minter {
    ca: CertAuthority,
    leaf_key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    /// `None` when the cache size is 0.
    cache: Option<Mutex<LruCache<LeafNames, Arc<CertifiedKey>>>>,
}

impl Minter {
    /// A minter signing with `ca`, caching up to `cache_size` certificates (0: none).
    pub fn new(ca: CertAuthority, cache_size: usize) -> Result<Self, TlsSetupError> {
        let generating = |e: String| TlsSetupError::Generate(e);
        let leaf_key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| generating(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key =
            provider().key_provider.load_private_key(der).map_err(|e| generating(e.to_string()))?;
        let cache = NonZeroUsize::new(cache_size).map(|n| Mutex::new(LruCache::new(n)));
        Ok(Self { ca, leaf_key, signing_key, cache })
    }

    /// The CA it signs with.
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// Signs a new leaf for `names`, bypassing the cache.
    fn mint(&self, names: &LeafNames) -> Result<Arc<CertifiedKey>, String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = &names.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .sans
            .iter()
            .map(|san| match san {
                San::Dns(name) => {
                    let name = name.clone().try_into().map_err(|e| format!("bad name {name:?}: {e}"))?;
                    Ok(SanType::DnsName(name))
                }
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect::<Result<_, String>>()?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(BACKDATE_DAYS);
        params.not_after = now + time::Duration::days(LEAF_VALID_DAYS);
        params.serial_number = Some(random_serial()?);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, self.ca.issuer())
            .map_err(|e| format!("cannot sign a certificate for {names}: {e}"))?;
        // A root CA stays out of the chain: a client that trusts it holds it already, and every
        // handshake would carry it for nothing. A CA below some root must go along, or clients
        // could not link the leaf to the root they trust.
        let mut chain = vec![cert.der().clone()];
        if !self.ca.is_root() {
            chain.push(self.ca.cert_der().clone());
        }
        Ok(Arc::new(CertifiedKey::new(chain, self.signing_key.clone())))
    }
}

impl CertIssuer for Minter {
    fn issue(&self, request: &CertRequest) -> Result<Arc<CertifiedKey>, String> {
        let names = LeafNames::for_request(request)?;
        let Some(cache) = &self.cache else {
            return self.mint(&names);
        };
        if let Some(hit) = lock(cache).get(&names) {
            return Ok(hit.clone());
        }
        // Signing happens outside the lock; when two connections race for one new host, the
        // first certificate stored is the one both get.
        let minted = self.mint(&names)?;
        Ok(lock(cache).get_or_insert(names, || minted).clone())
    }
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cache.as_ref().map(|c| {
            let c = lock(c);
            (c.len(), c.cap())
        });
        f.debug_struct("Minter").field("ca", &self.ca).field("cached", &cached).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave an LruCache half-updated in a way that
    // matters here: the worst is a missing entry.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The driver's cryptography, both sides of every connection: aws-lc-rs (its AES-GCM is what
/// a proxied byte costs most; see the crate's manifest).
pub(super) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// What a leaf is issued for, and the cache key: the common name and every alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LeafNames {
    pub(super) common_name: Option<String>,
    /// Sorted, without duplicates.
    pub(super) sans: Vec<San>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl LeafNames {
    /// The SNI, the target host, and the common and alternative names of the upstream's
    /// certificate; the common name is the SNI, or else the first of those that fits.
    pub(super) fn for_request(request: &CertRequest) -> Result<Self, String> {
        let mut names = Vec::new();
        if let Some(sni) = &request.server_name {
            names.extend(San::parse(sni));
        }
        match request.target_ip() {
            Some(ip) => names.push(San::Ip(ip)),
            None => names.extend(San::parse(&request.target_host)),
        }
        if let Some(der) = &request.upstream_cert {
            upstream_names(der, &mut names);
        }
        let common_name = names.iter().find_map(|san| match san {
            San::Dns(name) if name.len() <= MAX_CN_LEN => Some(name.clone()),
            San::Ip(ip) => Some(ip.to_string()),
            San::Dns(_) => None,
        });
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(format!(
                "no name to issue a certificate for (SNI {:?}, target {:?})",
                request.server_name, request.target_host
            ));
        }
        Ok(Self { common_name, sans: names })
    }
}

impl fmt::Display for LeafNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, san) in self.sans.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match san {
                San::Dns(name) => write!(f, "{sep}{name}")?,
                San::Ip(ip) => write!(f, "{sep}{ip}")?,
            }
        }
        Ok(())
    }
}

impl San {
    /// A host name or IP literal as a certificate name; `None` for what cannot be one (empty,
    /// non-ASCII, spaces: a common name like "Acme Server").
    fn parse(host: &str) -> Option<Self> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse() {
            return Some(San::Ip(ip));
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        let ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
        ok.then(|| San::Dns(host.to_ascii_lowercase()))
    }
}

/// Appends the common name and the DNS and IP alternative names of `der`; a certificate that
/// does not parse adds nothing (the client then checks the names the proxy knows).
fn upstream_names(der: &CertificateDer<'_>, names: &mut Vec<San>) {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return;
    };
    if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        names.extend(San::parse(cn));
    }
    let Ok(Some(alt)) = cert.subject_alternative_name() else {
        return;
    };
    for name in &alt.value.general_names {
        match name {
            GeneralName::DNSName(dns) => names.extend(San::parse(dns)),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                names.extend(ip.map(San::Ip));
            }
            _ => {}
        }
    }
}
