//! The protocol layers, in stack order: the mode admits a client and picks what follows
//! (`mode`; a SOCKS5 client's handshake is `socks5`, a redirected client's destination
//! `transparent`); TLS is decrypted at the bottom (`tls::transport`) and intercepted after a
//! `CONNECT` (`tls::intercept`); HTTP is the `http` layer with its version codecs inside
//! (`http::http1`, `http::h2`); a WebSocket upgrade becomes the `websocket` layer, and what
//! is none of these a `tunnel`.

pub(crate) mod http;
pub(crate) mod mode;
pub(crate) mod socks5;
pub(crate) mod tls;
pub(crate) mod transparent;
pub(crate) mod tunnel;
pub(crate) mod websocket;
