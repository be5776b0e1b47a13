//! The protocol layers.

pub(crate) mod h2;
pub(crate) mod http;
pub(crate) mod http1;
pub(crate) mod mode;
