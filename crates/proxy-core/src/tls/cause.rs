//! Why a TLS handshake failed, and what fixes it.
//!
//! The core sorts every failure into a [`TlsCause`]: the handful of reasons a user meets in
//! practice (an origin signed by a private CA, a self-signed one, an expired or misnamed
//! certificate, a client that does not trust the proxy's CA, a peer with no TLS version in
//! common, a port that does not speak TLS), each of which displays as a cause in words. What
//! fixes it depends on who runs the proxy: a user of the command line passes
//! `--upstream-ca FILE`, an embedder adds a root to its configuration. So the core phrases the
//! remedy ([`TlsCause::remedy`]) around the names [`Remedies`] gives to those settings, and
//! the layer that knows them (the command line, the driver's `TlsOptions`) puts its own names
//! into [`TlsConfig::remedies`](super::TlsConfig::remedies). The core then writes cause and
//! remedy into the `502` a client gets for a server that failed, into
//! [`TlsFailure`](super::TlsFailure), and into its log lines.

use std::borrow::Cow;
use std::fmt;

use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};

use super::TlsPeer;

/// Why a TLS handshake failed (or, for [`ClosedAfterHandshake`](Self::ClosedAfterHandshake),
/// why a client that completed one went away), sorted by what fixes it. Displays as the cause
/// in words; [`remedy`](Self::remedy) says what to do about it.
///
/// The proxy verifies the certificates of servers only (it asks clients for none), so the
/// certificate causes are always about the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsCause {
    /// The server's certificate chains to no CA the proxy trusts: a private or corporate CA,
    /// or a server that leaves out its intermediate certificates.
    UnknownIssuer,
    /// The server's certificate is its own issuer, whether or not it also calls itself a CA
    /// (`openssl req -x509` makes it one, which rustls alone reports as `CaUsedAsEndEntity`).
    SelfSigned,
    /// The server's certificate is past its end date.
    Expired,
    /// The server's certificate is not valid yet (or this machine's clock is behind).
    NotValidYet,
    /// The server's certificate is not for the name the proxy connected by.
    NameMismatch {
        /// The names the certificate is for, when the verifier said (DNS names and addresses).
        presented: Vec<String>,
    },
    /// The server's certificate was revoked by its issuer.
    Revoked,
    /// The server's certificate is signed with an algorithm the proxy cannot check.
    UnsupportedSignatureAlgorithm,
    /// A signature in the server's certificate chain does not verify.
    BadSignature,
    /// The server's certificate is not meant for TLS servers (its extended key usage).
    NotForServers,
    /// Anything else wrong with the server's certificate, in words.
    BadCertificate(String),
    /// The two sides have no TLS protocol version in common (the proxy's configurations
    /// offer TLS 1.2 and 1.3).
    NoSharedVersion,
    /// The two sides have no cipher suite, key exchange group or signature scheme in common.
    NoSharedCipher,
    /// The server asked for a client certificate, and the proxy has none to give.
    ClientCertificateRequired,
    /// The client refused the certificate the proxy presented, with this alert (`unknown_ca`,
    /// `bad_certificate`, `certificate_unknown`, ...): it does not trust the proxy's CA.
    CertificateRefused(AlertDescription),
    /// The client closed the connection without a word after receiving the proxy's answer to
    /// its ClientHello, which carries the certificate: what some clients do when they do not
    /// trust it.
    ClosedAfterCertificate,
    /// The client completed the handshake, then at once closed the connection without
    /// sending a request. GnuTLS clients (git and curl on Debian and Ubuntu among them) check
    /// the certificate only once the handshake is over, and leave this way when they do not
    /// trust it; at the TLS level the handshake succeeded, so
    /// [`Hook::TlsEstablished`](crate::Hook::TlsEstablished) came first.
    ClosedAfterHandshake,
    /// The connection closed during the handshake, before the proxy had sent a certificate
    /// (or, with a server, before the handshake was done).
    ClosedInHandshake,
    /// The other side ended the handshake with this alert.
    Alert(AlertDescription),
    /// The other side does not speak TLS: what it sent is no TLS record (`http`: it is plain
    /// HTTP, as a server on an `http://` port answers a ClientHello).
    NotTls {
        /// What came starts like an HTTP response.
        http: bool,
    },
    /// Any other failure, in words.
    Other(String),
}

/// The names of the settings that fix TLS failures, in the vocabulary of whoever runs the
/// proxy: what [`TlsCause::remedy`] points to. The command line gives its flags
/// (`--upstream-ca FILE`), the driver's `TlsOptions` its fields; the default names the parts of
/// [`TlsConfig`](super::TlsConfig) that do the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remedies {
    /// How to trust one more certificate (a CA, or a self-signed server certificate) when
    /// verifying servers: `--upstream-ca FILE`.
    pub upstream_ca: Cow<'static, str>,
    /// How to accept any server certificate: `--insecure-upstream`.
    pub insecure_upstream: Cow<'static, str>,
    /// How to pass a host's TLS through untouched, uninspected: `--ignore-hosts REGEX`.
    pub ignore_hosts: Cow<'static, str>,
    /// What a client must trust to accept the proxy's certificates, and how: the CA
    /// certificate's file, with the commands that trust it.
    pub trust_ca: Cow<'static, str>,
}

impl Remedies {
    /// The names of [`TlsConfig`](super::TlsConfig)'s own settings, for an embedder of the
    /// core alone.
    pub const fn core() -> Self {
        Self {
            upstream_ca: Cow::Borrowed("a root in the store of TlsConfig::client"),
            insecure_upstream: Cow::Borrowed("a verifier in TlsConfig::client that accepts any certificate"),
            ignore_hosts: Cow::Borrowed("TlsConfig::ignore_hosts"),
            trust_ca: Cow::Borrowed("the CA certificate that TlsConfig::issuer signs with"),
        }
    }
}

impl Default for Remedies {
    fn default() -> Self {
        Self::core()
    }
}

impl TlsCause {
    /// The cause of a failure rustls reported in a session with `peer`.
    pub fn from_rustls(error: &Error, peer: TlsPeer) -> Self {
        use CertificateError as C;
        use PeerIncompatible as P;
        match error {
            Error::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => Self::UnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotValidYet,
                C::NotValidForName => Self::NameMismatch { presented: Vec::new() },
                C::NotValidForNameContext { presented, .. } => {
                    let presented = presented.iter().filter_map(|name| presented_name(name)).collect();
                    Self::NameMismatch { presented }
                }
                C::Revoked => Self::Revoked,
                C::BadSignature => Self::BadSignature,
                #[allow(deprecated)]
                C::UnsupportedSignatureAlgorithm
                | C::UnsupportedSignatureAlgorithmContext { .. }
                | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    Self::UnsupportedSignatureAlgorithm
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::NotForServers,
                C::BadEncoding => Self::BadCertificate("malformed certificate".into()),
                C::UnhandledCriticalExtension => {
                    Self::BadCertificate("a critical extension the proxy does not understand".into())
                }
                C::Other(other) => other_certificate_error(other),
                other => Self::BadCertificate(format!("{other:?}")),
            },
            Error::AlertReceived(alert) => match alert {
                AlertDescription::ProtocolVersion => Self::NoSharedVersion,
                AlertDescription::InsufficientSecurity => Self::NoSharedCipher,
                AlertDescription::CertificateRequired => Self::ClientCertificateRequired,
                AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                    if peer == TlsPeer::Client =>
                {
                    Self::CertificateRefused(*alert)
                }
                alert => Self::Alert(*alert),
            },
            Error::PeerIncompatible(incompatible) => match incompatible {
                // A ClientHello without signature algorithms is of TLS 1.1 or older.
                P::SignatureAlgorithmsExtensionRequired
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::SupportedVersionsExtensionRequired
                | P::ServerDoesNotSupportTls12Or13
                | P::ServerTlsVersionIsDisabledByOurConfig => Self::NoSharedVersion,
                P::NoCipherSuitesInCommon
                | P::NoKxGroupsInCommon
                | P::NoSignatureSchemesInCommon
                | P::NoEcPointFormatsInCommon
                | P::NoCertificateRequestSignatureSchemesInCommon => Self::NoSharedCipher,
                other => Self::Other(format!("incompatible TLS peer: {other:?}")),
            },
            Error::NoApplicationProtocol => Self::Other("no application protocol (ALPN) in common".into()),
            other => Self::Other(other.to_string()),
        }
    }

    /// What fixes this failure in a session with `peer`, pointing to the settings by the names
    /// `remedies` gives them; `None` when nothing the proxy's user does would.
    pub fn remedy(&self, peer: TlsPeer, remedies: &Remedies) -> Option<String> {
        use TlsPeer::{Client, Server};
        let Remedies { upstream_ca, insecure_upstream, ignore_hosts, trust_ca } = remedies;
        let skip = format!("skip verification ({insecure_upstream})");
        let uninspected = format!("leave this host uninspected ({ignore_hosts})");
        let trust = format!("make the client trust {trust_ca}, or {uninspected}");
        let remedy = match (peer, self) {
            (Server, Self::UnknownIssuer) => {
                format!("trust the CA certificate that signed it ({upstream_ca}) or {skip}")
            }
            (Server, Self::SelfSigned) => format!("trust the certificate itself ({upstream_ca}) or {skip}"),
            (Server, Self::Expired) => {
                format!("the server must renew it (or this machine's clock is wrong); or {skip}")
            }
            (Server, Self::NotValidYet) => format!("check this machine's clock; or {skip}"),
            (Server, Self::NameMismatch { .. }) => format!("use a name the certificate is for, or {skip}"),
            (
                Server,
                Self::Revoked
                | Self::UnsupportedSignatureAlgorithm
                | Self::BadSignature
                | Self::NotForServers
                | Self::BadCertificate(_),
            ) => format!("{skip} if you trust this server anyway"),
            (Server, Self::NoSharedVersion | Self::NoSharedCipher | Self::ClientCertificateRequired | Self::Alert(_)) => {
                format!("{uninspected}, so that the client negotiates with the server itself")
            }
            (Server, Self::ClosedInHandshake) => {
                format!("check that the server speaks TLS on this port, or {uninspected}")
            }
            (Server, Self::NotTls { http: true }) => "it speaks plain HTTP on this port: use http:// for it".into(),
            (Server, Self::NotTls { http: false }) => {
                "check the port: the server speaks another protocol there".into()
            }
            (Client, Self::CertificateRefused(AlertDescription::CertificateExpired)) => {
                "check the client's clock, and that the proxy's CA certificate has not expired".into()
            }
            (Client, Self::CertificateRefused(_)) => format!("the client does not trust the proxy's CA: {trust}"),
            (Client, Self::ClosedAfterCertificate) => format!("it probably does not trust the proxy's CA: {trust}"),
            (Client, Self::ClosedAfterHandshake) => format!(
                "it probably does not trust the proxy's CA (GnuTLS clients, git among them, check the \
                 certificate only after the handshake): {trust}"
            ),
            (Client, Self::NoSharedVersion | Self::NoSharedCipher) => {
                format!("the client speaks only TLS the proxy does not: {uninspected}")
            }
            _ => return None,
        };
        Some(remedy)
    }
}

impl fmt::Display for TlsCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = match self {
            Self::UnknownIssuer => "certificate signed by an unknown issuer (a CA the proxy does not trust)",
            Self::SelfSigned => "self-signed certificate",
            Self::Expired => "certificate expired",
            Self::NotValidYet => "certificate not valid yet",
            Self::NameMismatch { presented } if presented.is_empty() => {
                "certificate not valid for this host name (name mismatch)"
            }
            Self::NameMismatch { presented } => {
                let names = presented.join(", ");
                return write!(f, "certificate not valid for this host name (name mismatch: it is for {names})");
            }
            Self::Revoked => "certificate revoked",
            Self::UnsupportedSignatureAlgorithm => "certificate signed with an algorithm the proxy does not support",
            Self::BadSignature => "bad certificate signature",
            Self::NotForServers => "certificate not valid for server authentication",
            Self::BadCertificate(what) => return write!(f, "invalid certificate: {what}"),
            Self::NoSharedVersion => "no TLS protocol version in common",
            Self::NoSharedCipher => "no cipher suite, key exchange group or signature scheme in common",
            Self::ClientCertificateRequired => "the server requires a client certificate",
            Self::CertificateRefused(alert) => {
                return write!(f, "the client refused the proxy's certificate (alert {})", alert_name(*alert));
            }
            Self::ClosedAfterCertificate => {
                "the client closed the connection after receiving the proxy's certificate, without an alert"
            }
            Self::ClosedAfterHandshake => {
                "the client closed the connection right after the handshake, before sending a request"
            }
            Self::ClosedInHandshake => "the connection closed during the handshake",
            Self::Alert(alert) => {
                write!(f, "alert {} received", alert_name(*alert))?;
                return match alert_meaning(*alert) {
                    Some(meaning) => write!(f, " ({meaning})"),
                    None => Ok(()),
                };
            }
            Self::NotTls { http: true } => "not TLS: the other side sent plain HTTP",
            Self::NotTls { http: false } => "not TLS: the other side speaks another protocol",
            Self::Other(what) => what,
        };
        f.write_str(words)
    }
}

/// A name webpki found in a certificate, as it writes them (`DnsName("a.test")`,
/// `IpAddress(192.0.2.1)`), plain; `None` for a kind a server is never reached by (URIs).
fn presented_name(name: &str) -> Option<String> {
    if let Some(dns) = name.strip_prefix("DnsName(").and_then(|n| n.strip_suffix(')')) {
        return Some(dns.trim_matches('"').to_owned());
    }
    name.strip_prefix("IpAddress(").and_then(|n| n.strip_suffix(')')).map(str::to_owned)
}

/// A self-signed server certificate: what a verifier puts in
/// `CertificateError::Other` for one, so that the failure is told as [`TlsCause::SelfSigned`]
/// rather than as an unknown issuer (as `proxy_io`'s verifier does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("self-signed certificate")]
pub struct SelfSigned;

/// What a verifier passed on as `CertificateError::Other`: ours, or one of webpki's that rustls
/// has no variant for.
fn other_certificate_error(other: &rustls::OtherError) -> TlsCause {
    let error: &(dyn std::error::Error + 'static) = &*other.0;
    if error.is::<SelfSigned>() {
        return TlsCause::SelfSigned;
    }
    match error.downcast_ref::<webpki::Error>() {
        Some(webpki::Error::CaUsedAsEndEntity) => {
            let what = "a CA certificate presented as the server's own (self-signed with `openssl req -x509`?)";
            TlsCause::BadCertificate(what.into())
        }
        Some(webpki::Error::EndEntityUsedAsCa) => {
            TlsCause::BadCertificate("the chain has a server's certificate in the place of a CA".into())
        }
        _ => TlsCause::BadCertificate(error.to_string()),
    }
}

/// An alert's name as the TLS specifications spell it (`unknown_ca`).
pub fn alert_name(alert: AlertDescription) -> Cow<'static, str> {
    use AlertDescription as A;
    let name = match alert {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::DecryptionFailed => "decryption_failed",
        A::RecordOverflow => "record_overflow",
        A::DecompressionFailure => "decompression_failure",
        A::HandshakeFailure => "handshake_failure",
        A::NoCertificate => "no_certificate",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ExportRestriction => "export_restriction",
        A::ProtocolVersion => "protocol_version",
        A::InsufficientSecurity => "insufficient_security",
        A::InternalError => "internal_error",
        A::InappropriateFallback => "inappropriate_fallback",
        A::UserCanceled => "user_canceled",
        A::NoRenegotiation => "no_renegotiation",
        A::MissingExtension => "missing_extension",
        A::UnsupportedExtension => "unsupported_extension",
        A::CertificateUnobtainable => "certificate_unobtainable",
        A::UnrecognisedName => "unrecognized_name",
        A::BadCertificateStatusResponse => "bad_certificate_status_response",
        A::BadCertificateHashValue => "bad_certificate_hash_value",
        A::UnknownPSKIdentity => "unknown_psk_identity",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        A::EncryptedClientHelloRequired => "encrypted_client_hello_required",
        other => return Cow::Owned(format!("{}", u8::from(other))),
    };
    Cow::Borrowed(name)
}

/// What the sender of `alert` meant by it, for the alerts whose names say little.
fn alert_meaning(alert: AlertDescription) -> Option<&'static str> {
    use AlertDescription as A;
    Some(match alert {
        A::HandshakeFailure => {
            "it found nothing acceptable in the handshake: no cipher suite or version in common, or it \
             wants a client certificate"
        }
        A::DecryptError => "a signature or key of the handshake did not verify",
        A::IllegalParameter | A::DecodeError => "it could not read a handshake message",
        A::UnrecognisedName => "it does not serve this name",
        A::NoApplicationProtocol => "no application protocol (ALPN) in common",
        A::AccessDenied => "it refuses this client",
        A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::UnsupportedCertificate => {
            "it refused a certificate: the server may want a client certificate"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{AlertDescription, CertificateError, Error, InvalidMessage, OtherError, PeerIncompatible};

    use super::*;

    fn cli() -> Remedies {
        Remedies {
            upstream_ca: "--upstream-ca FILE".into(),
            insecure_upstream: "--insecure-upstream".into(),
            ignore_hosts: "--ignore-hosts REGEX".into(),
            trust_ca: "/ca.pem (curl --cacert /ca.pem)".into(),
        }
    }

    fn server(error: Error) -> TlsCause {
        TlsCause::from_rustls(&error, TlsPeer::Server)
    }

    fn client(error: Error) -> TlsCause {
        TlsCause::from_rustls(&error, TlsPeer::Client)
    }

    fn certificate(error: CertificateError) -> TlsCause {
        server(Error::InvalidCertificate(error))
    }

    #[test]
    fn certificate_errors_are_sorted_by_cause() {
        let other = |e: Arc<dyn std::error::Error + Send + Sync>| CertificateError::Other(OtherError(e));
        assert_eq!(certificate(CertificateError::UnknownIssuer), TlsCause::UnknownIssuer);
        assert_eq!(certificate(other(Arc::new(SelfSigned))), TlsCause::SelfSigned);
        assert_eq!(certificate(CertificateError::Expired), TlsCause::Expired);
        assert_eq!(certificate(CertificateError::NotValidYet), TlsCause::NotValidYet);
        assert_eq!(certificate(CertificateError::Revoked), TlsCause::Revoked);
        assert_eq!(certificate(CertificateError::BadSignature), TlsCause::BadSignature);
        assert_eq!(certificate(CertificateError::InvalidPurpose), TlsCause::NotForServers);
        #[allow(deprecated)]
        let unsupported = CertificateError::UnsupportedSignatureAlgorithm;
        assert_eq!(certificate(unsupported), TlsCause::UnsupportedSignatureAlgorithm);
        // webpki writes the names it found as its own types print.
        let mismatch = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("a.test").unwrap(),
            presented: vec![
                r#"DnsName("b.test")"#.into(),
                "IpAddress(192.0.2.1)".into(),
                r#"UniformResourceIdentifier("x")"#.into(),
            ],
        };
        let cause = certificate(mismatch);
        assert_eq!(cause, TlsCause::NameMismatch { presented: vec!["b.test".into(), "192.0.2.1".into()] });
        let words = "certificate not valid for this host name (name mismatch: it is for b.test, 192.0.2.1)";
        assert_eq!(cause.to_string(), words);

        // What rustls passes on from webpki without a variant of its own is told in words.
        let cause = certificate(other(Arc::new(webpki::Error::CaUsedAsEndEntity)));
        assert!(matches!(&cause, TlsCause::BadCertificate(_)), "{cause:?}");
        let words = cause.to_string();
        assert!(words.contains("a CA certificate presented as the server's own"), "{words}");
        assert!(!words.contains("CaUsedAsEndEntity"), "{words}");
    }

    #[test]
    fn certificate_alerts_from_a_client_mean_it_refused_ours() {
        use AlertDescription::{BadCertificate, CertificateUnknown, UnknownCA};
        for alert in [UnknownCA, BadCertificate, CertificateUnknown] {
            assert_eq!(client(Error::AlertReceived(alert)), TlsCause::CertificateRefused(alert));
            // From a server, the same alert is about a client certificate the proxy never sent.
            assert_eq!(server(Error::AlertReceived(alert)), TlsCause::Alert(alert));
        }
        let cause = client(Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(cause.to_string(), "the client refused the proxy's certificate (alert unknown_ca)");
        assert_eq!(
            cause.remedy(TlsPeer::Client, &cli()).unwrap(),
            "the client does not trust the proxy's CA: make the client trust /ca.pem (curl --cacert \
             /ca.pem), or leave this host uninspected (--ignore-hosts REGEX)"
        );
        let cause = server(Error::AlertReceived(AlertDescription::CertificateRequired));
        assert_eq!(cause, TlsCause::ClientCertificateRequired);
        assert!(cause.remedy(TlsPeer::Server, &cli()).unwrap().contains("--ignore-hosts REGEX"));
        let cause = client(Error::AlertReceived(AlertDescription::DecryptError));
        let words = "alert decrypt_error received (a signature or key of the handshake did not verify)";
        assert_eq!(cause.to_string(), words);
        assert_eq!(cause.remedy(TlsPeer::Client, &cli()), None);
    }

    #[test]
    fn versions_and_ciphers_in_common() {
        assert_eq!(client(Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered)), TlsCause::NoSharedVersion);
        let tls11 = PeerIncompatible::SignatureAlgorithmsExtensionRequired;
        assert_eq!(client(Error::PeerIncompatible(tls11)), TlsCause::NoSharedVersion);
        assert_eq!(server(Error::AlertReceived(AlertDescription::ProtocolVersion)), TlsCause::NoSharedVersion);
        let ciphers = PeerIncompatible::NoCipherSuitesInCommon;
        assert_eq!(client(Error::PeerIncompatible(ciphers)), TlsCause::NoSharedCipher);
        assert_eq!(
            TlsCause::NoSharedVersion.remedy(TlsPeer::Server, &cli()).unwrap(),
            "leave this host uninspected (--ignore-hosts REGEX), so that the client negotiates with the server itself"
        );
        assert_eq!(
            TlsCause::NoSharedCipher.remedy(TlsPeer::Client, &cli()).unwrap(),
            "the client speaks only TLS the proxy does not: leave this host uninspected (--ignore-hosts REGEX)"
        );
        let cause = server(Error::AlertReceived(AlertDescription::HandshakeFailure));
        let words = cause.to_string();
        assert!(words.starts_with("alert handshake_failure received (it found nothing acceptable"), "{words}");
    }

    #[test]
    fn upstream_remedies_name_the_settings() {
        let cli = cli();
        let remedy = |cause: TlsCause| cause.remedy(TlsPeer::Server, &cli).unwrap();
        assert_eq!(
            remedy(TlsCause::UnknownIssuer),
            "trust the CA certificate that signed it (--upstream-ca FILE) or skip verification (--insecure-upstream)"
        );
        assert_eq!(
            remedy(TlsCause::SelfSigned),
            "trust the certificate itself (--upstream-ca FILE) or skip verification (--insecure-upstream)"
        );
        assert!(remedy(TlsCause::Expired).ends_with("or skip verification (--insecure-upstream)"));
        let mismatch = remedy(TlsCause::NameMismatch { presented: Vec::new() });
        assert!(mismatch.starts_with("use a name the certificate is for"), "{mismatch}");
        assert!(remedy(TlsCause::Revoked).starts_with("skip verification (--insecure-upstream) if you trust"));
        assert_eq!(remedy(TlsCause::NotTls { http: true }), "it speaks plain HTTP on this port: use http:// for it");
        assert!(remedy(TlsCause::ClosedInHandshake).contains("speaks TLS on this port"));
        assert_eq!(TlsCause::Other("odd".into()).remedy(TlsPeer::Server, &cli), None);

        // An embedder of the core alone is pointed to the configuration's own parts.
        let core = TlsCause::UnknownIssuer.remedy(TlsPeer::Server, &Remedies::default()).unwrap();
        assert_eq!(
            core,
            "trust the CA certificate that signed it (a root in the store of TlsConfig::client) or skip \
             verification (a verifier in TlsConfig::client that accepts any certificate)"
        );
    }

    #[test]
    fn clients_that_leave_are_told_to_trust_the_ca() {
        let cli = cli();
        for cause in [TlsCause::ClosedAfterCertificate, TlsCause::ClosedAfterHandshake] {
            let remedy = cause.remedy(TlsPeer::Client, &cli).unwrap();
            assert!(remedy.starts_with("it probably does not trust the proxy's CA"), "{remedy}");
            assert!(remedy.contains("make the client trust /ca.pem (curl --cacert /ca.pem)"), "{remedy}");
        }
        assert_eq!(
            TlsCause::ClosedAfterHandshake.to_string(),
            "the client closed the connection right after the handshake, before sending a request"
        );
        assert_eq!(TlsCause::ClosedInHandshake.remedy(TlsPeer::Client, &cli), None);
    }

    #[test]
    fn anything_else_keeps_rustls_words() {
        let cause = server(Error::InvalidMessage(InvalidMessage::InvalidCcs));
        assert!(matches!(cause, TlsCause::Other(_)), "{cause:?}");
        assert_eq!(cause.to_string(), Error::InvalidMessage(InvalidMessage::InvalidCcs).to_string());
        assert_eq!(alert_name(AlertDescription::Unknown(200)), "200");
    }
}
