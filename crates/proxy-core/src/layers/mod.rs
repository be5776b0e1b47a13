//! The protocol layers.

pub(crate) mod destination;
pub(crate) mod h2;
pub(crate) mod http;
pub(crate) mod http1;
pub(crate) mod http_stream;
pub(crate) mod mode;
pub(crate) mod upstream;
