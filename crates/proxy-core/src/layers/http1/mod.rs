//! HTTP/1.x towards the client and towards servers.
pub(crate) mod wire;
pub use wire::Http1Error;
