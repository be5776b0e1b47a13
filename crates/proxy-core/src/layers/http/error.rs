//! Why an exchange failed, on which side, and what the client is told: one table from failure
//! to status, so that a new failure cannot pick a status of its own somewhere else.

use thiserror::Error;

use crate::open_error::OpenError;
use crate::gateway::Refusal;
use crate::headers::UnderscoreError;
use crate::ids::ServerAddr;
use crate::layers::http::h2::fields::FieldError;
use crate::layers::http::http1::wire::Http1Error;
use super::event::StreamReset;

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
    /// The client sent its request body slower than `body_min_rate`.
    #[error("client sent {bytes} bytes of the request body in {secs} s, below the minimum of {rate} bytes/s")]
    ClientTooSlow { bytes: u64, secs: f64, rate: u64 },

    // The server's side.
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: ServerAddr, error: OpenError },
    /// The upstream proxy could not be reached, refused the tunnel, or did not answer in time.
    #[error(transparent)]
    UpstreamProxy(ProxyError),
    /// The server broke the protocol or went away before its response was complete.
    #[error("{addr}: {error}")]
    Server { addr: ServerAddr, error: ServerError },
    /// The server stayed silent while it owed a response.
    #[error("{addr} sent nothing for {secs} s")]
    ServerTimeout { addr: ServerAddr, secs: f64 },
    /// A hook asked to buffer a response body larger than `max_buffered_body`.
    #[error("response body larger than the {limit}-byte buffering limit")]
    ResponseTooLarge { limit: usize },
    /// Reverse mode with a gateway: no backend for the request (no route, every backend down,
    /// the queue full or waited out).
    #[error("{0}")]
    Refused(Refusal),
}

impl HttpError {
    /// The status the client is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::RequestTooLarge { .. } => 413,
            Self::ClientTimeout { .. } | Self::ClientTooSlow { .. } => 408,
            Self::Connect { error: OpenError::Timeout, .. } => 504,
            Self::UpstreamProxy(error) if error.timed_out() => 504,
            Self::ServerTimeout { .. } => 504,
            Self::Connect { .. } | Self::UpstreamProxy(_) | Self::Server { .. } | Self::ResponseTooLarge { .. } => 502,
            Self::Refused(refusal) => refusal.status(),
        }
    }
}

/// How a server broke an exchange, as the codec facing it saw it.
#[derive(Debug, Clone, PartialEq, Error)]
pub(crate) enum ServerError {
    /// An HTTP/1 server sent bytes while no request was outstanding.
    #[error("server sent data without a request")]
    Unsolicited,
    #[error("invalid response: {0}")]
    Head(Http1Error),
    #[error("invalid response body: {0}")]
    Body(Http1Error),
    /// An HTTP/2 response that RFC 9113 makes malformed.
    #[error("malformed response: {0}")]
    Fields(FieldError),
    /// The response's HTTP/2 stream ended abnormally.
    #[error("{}", describe_reset(.0))]
    Reset(StreamReset),
    #[error("server closed the connection before the response was complete")]
    Closed,
    /// A connection kept open from an earlier exchange (or taken over from another client
    /// connection) closed before a byte of the answer came: its server most likely closed it
    /// as idle just as the request went out.
    #[error("server closed a kept-alive connection before answering")]
    Stale,
    #[error("the server closed the HTTP/2 connection")]
    ClosedH2,
}

impl ServerError {
    /// Whether the server cannot have acted on the request, which may be sent again (RFC 9113
    /// section 8.7).
    pub(crate) fn is_unprocessed(&self) -> bool {
        matches!(self, Self::Reset(reset) if reset.unprocessed)
    }

    /// Whether the request may have been lost with a reused connection the server had just
    /// closed: an idempotent one may go again (RFC 9112 section 9.3.1).
    pub(crate) fn is_stale(&self) -> bool {
        matches!(self, Self::Stale)
    }
}

fn describe_reset(reset: &StreamReset) -> String {
    let StreamReset { reason, remote, unprocessed } = reset;
    match (remote, unprocessed) {
        (true, true) => format!("the server refused the stream ({reason:?})"),
        (true, false) => format!("the server reset the stream ({reason:?})"),
        (false, _) => format!("HTTP/2 stream failed ({reason:?})"),
    }
}

/// A request the client's codec refuses (HTTP/1 or HTTP/2): which rule it broke. The client
/// is answered [`status`](Self::status) with this as the text, and its connection (HTTP/1) or
/// stream (HTTP/2) ends.
#[derive(Debug, Clone, PartialEq, Error)]
pub(crate) enum ClientError {
    /// The request head broke the wire format.
    #[error(transparent)]
    Head(Http1Error),
    #[error("bad request body: {0}")]
    Body(Http1Error),
    /// The request head was still incomplete after `head_timeout`.
    #[error("request head not complete after {secs} s")]
    HeadTimeout { secs: f64 },
    #[error(transparent)]
    Underscore(#[from] UnderscoreError),
    /// No form of request-target has a fragment (RFC 9112 section 3.2).
    #[error("fragment in the request target")]
    Fragment,
    /// A `CONNECT` where the mode serves none; the text says why.
    #[error("{0}")]
    ConnectRefused(&'static str),
    #[error("invalid CONNECT target {0:?}")]
    ConnectTarget(String),
    /// An origin-form target sent to a proxy that has no destination of its own for it.
    #[error("a proxy request needs an absolute URL (http://host/path) as its target")]
    NotAbsolute,
    #[error("unsupported request target {0:?}")]
    Target(String),
    #[error("user information in the request target is not allowed")]
    UserInfo,
    #[error("invalid host in request target {0:?}")]
    TargetHost(String),
    #[error("https:// URLs in proxy requests need TLS interception, which is off; use CONNECT")]
    HttpsWithoutTls,
    #[error("more than one host header")]
    HostTwice,
    #[error("invalid host header")]
    BadHost,
    #[error("missing host header")]
    NoHost,
    /// An HTTP/2 request that RFC 9113 makes malformed.
    #[error(transparent)]
    Fields(FieldError),
    #[error("malformed trailers: {0}")]
    Trailers(FieldError),
    #[error("CONNECT over HTTP/2 is served to clients of the proxy itself, not inside a connection it intercepts")]
    H2Connect,
    #[error("invalid :authority {0:?}")]
    Authority(String),
    #[error("a proxy request needs an :authority")]
    NoAuthority,
}

impl ClientError {
    /// The status the client is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Head(error) => error.status(),
            Self::HeadTimeout { .. } => 408,
            Self::ConnectRefused(_) => 405,
            Self::HttpsWithoutTls | Self::H2Connect => 501,
            Self::Body(_)
            | Self::Underscore(_)
            | Self::Fragment
            | Self::ConnectTarget(_)
            | Self::NotAbsolute
            | Self::Target(_)
            | Self::UserInfo
            | Self::TargetHost(_)
            | Self::HostTwice
            | Self::BadHost
            | Self::NoHost
            | Self::Fields(_)
            | Self::Trailers(_)
            | Self::Authority(_)
            | Self::NoAuthority => 400,
        }
    }
}

/// Why a connection through the upstream proxy could not be set up. Each names the proxy, and
/// the server when the failure concerns the tunnel to it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("cannot connect to upstream proxy {proxy}: {error}")]
    Unreachable { proxy: ServerAddr, error: OpenError },
    /// The proxy answered `CONNECT` with a status other than `2xx`: `answer` is its status
    /// line, for example `403 Forbidden`.
    #[error("upstream proxy {proxy} refused CONNECT {target}: {answer}")]
    Refused { proxy: ServerAddr, target: ServerAddr, answer: String },
    #[error("upstream proxy {proxy} sent an invalid answer to CONNECT {target}: {error}")]
    InvalidAnswer { proxy: ServerAddr, target: ServerAddr, error: Http1Error },
    /// Bytes came through the tunnel before our TLS handshake with the server began.
    #[error("upstream proxy {proxy} sent data from {target} before the TLS handshake")]
    EarlyData { proxy: ServerAddr, target: ServerAddr },
    #[error("upstream proxy {proxy} closed the connection before answering CONNECT {target}")]
    ClosedBeforeAnswer { proxy: ServerAddr, target: ServerAddr },
    #[error("{target} (through upstream proxy {proxy}) closed the connection during the TLS handshake")]
    ClosedInHandshake { proxy: ServerAddr, target: ServerAddr },
    #[error("upstream proxy {proxy} did not answer CONNECT {target} within {secs} s")]
    NoAnswer { proxy: ServerAddr, target: ServerAddr, secs: f64 },
    #[error("no TLS handshake with {target} through upstream proxy {proxy} within {secs} s")]
    NoHandshake { proxy: ServerAddr, target: ServerAddr, secs: f64 },
}

impl ProxyError {
    /// Whether the proxy (or the server through it) did not answer in time, rather than
    /// answering wrong.
    pub(crate) fn timed_out(&self) -> bool {
        match self {
            Self::Unreachable { error, .. } => *error == OpenError::Timeout,
            Self::NoAnswer { .. } | Self::NoHandshake { .. } => true,
            Self::Refused { .. }
            | Self::InvalidAnswer { .. }
            | Self::EarlyData { .. }
            | Self::ClosedBeforeAnswer { .. }
            | Self::ClosedInHandshake { .. } => false,
        }
    }
}
