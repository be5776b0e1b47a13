//! The TLS layers: the transport that decrypts what arrives on every TLS connection, and the
//! interception that starts them after a `CONNECT`. The sessions themselves and the types the
//! embedder sees live in [`crate::tls`].

pub(crate) mod intercept;
pub(crate) mod transport;
