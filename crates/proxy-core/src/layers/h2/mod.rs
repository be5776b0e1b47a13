//! HTTP/2.
pub(crate) mod engine;
