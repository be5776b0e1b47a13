//! Why an exchange failed, on which side, and what the client is told: one table from failure
//! to status, so that a new failure cannot pick a status of its own somewhere else.

use thiserror::Error;

use crate::event::OpenError;
use crate::ids::ServerAddr;
use super::upstream_proxy::ProxyError;

/// A failed exchange. The client gets [`status`](Self::status) with this as the text of the
/// error response, or, once its response has begun, a cut connection.
#[derive(Debug, Clone, PartialEq, Error)]
pub(crate) enum HttpError {
    // The client's side.
    /// A hook asked to buffer a request body larger than `max_buffered_body`.
    #[error("request body larger than the {limit}-byte buffering limit")]
    RequestTooLarge { limit: usize },
    /// The client went silent in the middle of its request body.
    #[error("client sent nothing of the request body for {secs} s")]
    ClientTimeout { secs: f64 },

    // The server's side.
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: ServerAddr, error: OpenError },
    /// The upstream proxy could not be reached, refused the tunnel, or did not answer in time.
    #[error(transparent)]
    UpstreamProxy(ProxyError),
    /// The server broke the protocol or went away before its response was complete.
    #[error("{addr}: {message}")]
    Server { addr: ServerAddr, message: String },
    /// The server stayed silent while it owed a response.
    #[error("{addr} sent nothing for {secs} s")]
    ServerTimeout { addr: ServerAddr, secs: f64 },
    /// A hook asked to buffer a response body larger than `max_buffered_body`.
    #[error("response body larger than the {limit}-byte buffering limit")]
    ResponseTooLarge { limit: usize },
}

impl HttpError {
    /// The status the client is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::RequestTooLarge { .. } => 413,
            Self::ClientTimeout { .. } => 408,
            Self::Connect { error: OpenError::Timeout, .. } => 504,
            Self::UpstreamProxy(error) if error.timed_out() => 504,
            Self::ServerTimeout { .. } => 504,
            Self::Connect { .. } | Self::UpstreamProxy(_) | Self::Server { .. } | Self::ResponseTooLarge { .. } => 502,
        }
    }
}
