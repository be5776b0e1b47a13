//! TLS interception: what the core needs from its embedder, and what it tells the user.
//!
//! TLS runs inside the core through rustls's buffer API: ciphertext goes in with `read_tls`
//! from the bytes of a [`DataReceived`](crate::Event::DataReceived), records come out with
//! `write_tls` into the bytes of a [`SendData`](crate::Command::SendData). No socket is
//! involved. Two things the core cannot do by itself are supplied here:
//!
//! - minting leaf certificates, which needs randomness for serial numbers and signatures:
//!   [`CertIssuer`], implemented by the driver (`proxy_io::tls::Minter`) and by tests;
//! - the trust policy towards upstream servers and the session caches: the base
//!   [`rustls::ServerConfig`] and [`rustls::ClientConfig`] in [`TlsConfig`].
//!
//! What rustls itself needs from the world comes through those configurations: random numbers
//! for handshakes from their `CryptoProvider`, the time for certificate validity from their
//! `TimeProvider`. That is the one impurity the core accepts. Nothing else about a connection
//! depends on it, so playbooks stay deterministic at the level of plaintext and commands.
//!
//! When a handshake fails, the core tells why and what fixes it: see [`TlsCause`] and
//! [`Remedies`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

mod cause;
pub(crate) mod session;

pub use cause::{alert_name, Remedies, SelfSigned, TlsCause};

pub use rustls;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use crate::ids::{ConnId, ServerAddr};

/// Everything the core needs to intercept TLS. Without it ([`Config::tls`] is `None`) a
/// `CONNECT` becomes a raw tunnel.
///
/// [`Config::tls`]: crate::Config::tls
#[derive(Clone)]
pub struct TlsConfig {
    /// Mints the certificates the proxy shows to clients.
    pub issuer: Arc<dyn CertIssuer>,
    /// The proxy's side of client handshakes: protocol versions, ticketer and session cache
    /// (shared by every connection, so returning clients resume). The certificate resolver and
    /// ALPN protocols are replaced per connection.
    pub server: Arc<rustls::ServerConfig>,
    /// The proxy's side of upstream handshakes: how server certificates are verified, and the
    /// resumption store. ALPN protocols are replaced per connection.
    pub client: Arc<rustls::ClientConfig>,
    /// `host:port` patterns whose TLS is passed through untouched instead of intercepted.
    pub ignore_hosts: Vec<regex::Regex>,
    /// How the remedies in failure messages (a `502`'s text, [`TlsFailure::remedy`], log
    /// lines) name the settings that fix them: the command line's flags, or an embedder's
    /// own names. [`Remedies::default`] names the parts of this configuration.
    pub remedies: Remedies,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("issuer", &self.issuer)
            .field("ignore_hosts", &self.ignore_hosts.iter().map(|r| r.as_str()).collect::<Vec<_>>())
            .field("remedies", &self.remedies)
            .finish_non_exhaustive()
    }
}

/// What a minted certificate must be valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The name the client asked for in its SNI extension.
    pub server_name: Option<String>,
    /// The host of the connection's target (a `CONNECT` authority, a reverse-mode upstream,
    /// or the listen name). When the client sent no SNI this is what it checks, and when it
    /// is an IP literal the certificate needs it as an IP SAN.
    pub target_host: String,
    /// The upstream server's own certificate, when the upstream was contacted before the
    /// client's handshake: its subject common name and alternative names should be copied, so
    /// that a client that connected by a name the proxy never saw still validates.
    pub upstream_cert: Option<CertificateDer<'static>>,
}

impl CertRequest {
    /// The target as an IP address, if it is one.
    pub fn target_ip(&self) -> Option<IpAddr> {
        self.target_host.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }
}

/// Mints (or looks up) the certificate the proxy presents for an intercepted connection.
///
/// Called by the core in the middle of a client handshake, so it should be quick: cache what
/// it signs. An error aborts that client's handshake with a log line naming it.
pub trait CertIssuer: Send + Sync + fmt::Debug {
    /// The certificate chain and key to present for `request`, or why there is none (the
    /// text goes into the log line).
    fn issue(&self, request: &CertRequest) -> Result<Arc<CertifiedKey>, String>;
}

/// Who is at the other end of one of the proxy's TLS sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPeer {
    /// The client: the proxy acts as the TLS server (a rustls server session).
    Client,
    /// An upstream server: the proxy acts as the TLS client (a rustls client session).
    Server,
}

/// The client's `ClientHello`, carried by [`Hook::TlsClientHello`](crate::Hook::TlsClientHello).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Where the client's connection goes (the `CONNECT` target).
    pub server: ServerAddr,
    /// The SNI, if the client sent one.
    pub server_name: Option<String>,
    /// The ALPN protocols the client offered, in its order.
    pub alpn: Vec<Vec<u8>>,
}

/// A completed handshake, carried by [`Hook::TlsEstablished`](crate::Hook::TlsEstablished).
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The connection the session runs on: [`ConnId::CLIENT`] or an upstream connection.
    pub conn: ConnId,
    /// Which side of the proxy the handshake was with.
    pub peer: TlsPeer,
    /// The server this connection is about: the upstream, or the client's target.
    pub server: ServerAddr,
    /// SNI: sent by the client (peer `Client`) or by the proxy (peer `Server`).
    pub server_name: Option<String>,
    /// For example `TLSv1_3`.
    pub version: String,
    /// For example `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The application protocol agreed on (`h2`, `http/1.1`), if the peers used ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The peer's certificate chain, end entity first (empty for clients, which send none).
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// A failed handshake or a broken TLS connection, carried by
/// [`Hook::TlsFailed`](crate::Hook::TlsFailed). Displays as the cause in words, then the
/// remedy if there is one: `certificate expired; the server must renew it ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure {
    /// The connection the session ran on: [`ConnId::CLIENT`] or an upstream connection.
    pub conn: ConnId,
    /// Which side of the proxy the handshake was with.
    pub peer: TlsPeer,
    /// The server the connection is about: the upstream, or the client's target.
    pub server: ServerAddr,
    /// SNI: sent by the client (peer `Client`) or by the proxy (peer `Server`).
    pub server_name: Option<String>,
    /// What went wrong.
    pub cause: TlsCause,
    /// What fixes it, in the words of [`TlsConfig::remedies`]: "trust the CA certificate that
    /// signed it (--upstream-ca FILE) or skip verification (--insecure-upstream)".
    pub remedy: Option<String>,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&told(&self.cause, self.remedy.as_deref()))
    }
}

/// `cause`, then `; remedy` if there is one: how every TLS failure is told.
pub(crate) fn told(cause: &TlsCause, remedy: Option<&str>) -> String {
    match remedy {
        Some(remedy) => format!("{cause}; {remedy}"),
        None => cause.to_string(),
    }
}

/// Why the proxy could not start a TLS session towards a server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum TlsSetupError {
    /// [`Config::tls`](crate::Config::tls) is `None`: the proxy has no client configuration.
    #[error("TLS is not configured")]
    NotConfigured,
    /// The server's name can be neither an SNI nor an IP address.
    #[error("{0:?} is not a valid TLS server name")]
    InvalidName(String),
    /// rustls refused the configuration.
    #[error("{}", TlsCause::from_rustls(.0, TlsPeer::Server))]
    Rustls(rustls::Error),
}

impl TlsSetupError {
    /// The error a connection that could not start its session fails with.
    pub(crate) fn open_error(&self) -> crate::OpenError {
        crate::OpenError::Tls { cause: TlsCause::Other(self.to_string()), remedy: None }
    }
}

/// Why a TLS session failed, as the session saw it; [`TlsSession::cause`] sorts it into a
/// [`TlsCause`] with what the session knows besides.
///
/// [`TlsSession::cause`]: session::TlsSession::cause
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum TlsError {
    /// rustls refused what the peer sent, or the peer's alert said it refused ours.
    #[error("{0}")]
    Rustls(rustls::Error),
    /// What the peer sent during the handshake is no TLS record; `http`: it is an HTTP
    /// response.
    #[error("not TLS")]
    NotTls { http: bool },
    /// The peer hung up before the handshake completed (a client refusing our certificate
    /// often does so without an alert).
    #[error("the peer closed the connection during the handshake")]
    ClosedInHandshake,
    /// A client completed the handshake and at once closed the connection, without a
    /// request (a GnuTLS client refusing our certificate).
    #[error("the client closed the connection right after the handshake")]
    ClosedAfterHandshake,
    /// rustls's state machine did not settle within its bound, or did not write what it
    /// asked room for.
    #[error("TLS input could not be processed")]
    Stuck,
}
