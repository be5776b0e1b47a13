//! Why an upstream connection could not be opened: what the driver reports with
//! [`Event::OpenFailed`](crate::Event::OpenFailed), and the HTTP layer's errors name.

/// Why an upstream connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The server's name did not resolve; says what the resolver said.
    #[error("name resolution failed: {0}")]
    Dns(String),
    /// The server actively refused the connection (nothing listens on that port).
    #[error("connection refused")]
    Refused,
    /// No answer within the driver's connect timeout.
    #[error("connect timed out")]
    Timeout,
    /// The TCP connection opened but the TLS handshake over it failed (or could not start).
    #[error("TLS handshake failed: {}", crate::tls::told(.cause, .remedy.as_deref()))]
    Tls {
        /// Why, for example [`TlsCause::Expired`](crate::tls::TlsCause::Expired).
        cause: crate::tls::TlsCause,
        /// What fixes it, in the words of
        /// [`TlsConfig::remedies`](crate::tls::TlsConfig::remedies).
        remedy: Option<String>,
    },
    /// Any other failure (unreachable network, reset during connect...), in the words of the
    /// operating system.
    #[error("{0}")]
    Other(String),
}
