//! The data a hook sees: HTTP messages and the flow that pairs them.

use core::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::headers::Headers;
use crate::ids::{FlowId, Scheme, ServerAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
    /// The request of a SOCKS5 client (its CONNECT), shown as a flow.
    Socks5,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
            Self::Socks5 => "SOCKS5",
        }
    }
}

/// An HTTP request, with its target split into parts.
///
/// `body` is `Some` only when the body has been buffered (see [`HttpFlow::buffer_request`]); a
/// streamed body passes through without being kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub scheme: Scheme,
    /// The host to connect to (for CONNECT, the tunnel's target).
    pub host: String,
    pub port: u16,
    /// Origin-form target: path and query, `*` for `OPTIONS *`, empty for CONNECT.
    pub path: String,
    pub version: Version,
    pub headers: Headers,
    pub body: Option<Bytes>,
    pub trailers: Option<Headers>,
}

impl Request {
    /// The absolute URL, as a proxy log shows it.
    pub fn url(&self) -> String {
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return self.authority();
        }
        format!("{}://{}{}", self.scheme.as_str(), self.authority(), self.path)
    }

    /// `host:port`, leaving out a default port and bracketing IPv6 literals.
    pub fn authority(&self) -> String {
        if self.method.eq_ignore_ascii_case("CONNECT") {
            let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
            return format!("{}:{}", host, self.port);
        }
        Self::authority_of(self.scheme, &self.host, self.port)
    }

    /// `host[:port]` of a request to `host` over `scheme`: the port left out when it is the
    /// scheme's, an IPv6 literal bracketed.
    pub(crate) fn authority_of(scheme: Scheme, host: &str, port: u16) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(host.len() + 8);
        match host.contains(':') {
            true => write!(out, "[{host}]"),
            false => write!(out, "{host}"),
        }
        .expect("writing to a String");
        if port != scheme.default_port() {
            write!(out, ":{port}").expect("writing to a String");
        }
        out
    }

    pub fn server(&self) -> ServerAddr {
        ServerAddr::new(self.host.clone(), self.port)
    }
}

/// An HTTP response. `body` is `Some` only when buffered, as for [`Request::body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Option<Bytes>,
    pub trailers: Option<Headers>,
}

impl Response {
    /// A complete response with a `Content-Length` body, as a hook builds a local answer.
    pub fn new(status: u16, headers: Headers, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let mut headers = headers;
        headers.insert("content-length", body.len().to_string());
        Self {
            version: Version::Http11,
            status,
            reason: reason_phrase(status).to_owned(),
            headers,
            body: Some(body),
            trailers: None,
        }
    }

    /// A plain-text response, as the proxy sends for its own errors.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut headers = Headers::new();
        headers.append("content-type", "text/plain; charset=utf-8");
        Self::new(status, headers, Bytes::from(body.into()))
    }

    /// The proxy's own error response: `status`, and a body naming the status and the cause
    /// (`"bad gateway: a.test:80: connection refused\n"`). Every error the proxy answers
    /// itself, in any HTTP version, is written by this.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        let reason = reason_phrase(status).to_ascii_lowercase();
        Self::text(status, format!("{reason}: {message}\n"))
    }
}

/// Who connected to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    /// The proxy's address the client connected to.
    pub local: SocketAddr,
    /// Where the client meant to connect before the system redirected it to the proxy
    /// (transparent mode: `SO_ORIGINAL_DST`); `None` elsewhere.
    pub original_dst: Option<SocketAddr>,
}

impl ClientInfo {
    /// A client at `peer` connected to the proxy's `local` address.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Self { peer, local, original_dst: None }
    }
}

/// Why a flow ended without a complete exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub message: String,
    /// The status of the error response the proxy answers the client with, when it still
    /// can: the response is then in [`HttpFlow::response`], and the blocking
    /// [`Hook::Error`](crate::Hook::Error) may change it before it is sent. `None` when the
    /// client gets no answer from the proxy for this failure (its response had begun, it went
    /// away, or its codec answered a malformed request before any hook).
    pub status: Option<u16>,
}

/// One request and its response, as hooks see them.
#[derive(Debug, Clone)]
pub struct HttpFlow {
    pub id: FlowId,
    pub client: ClientInfo,
    pub request: Request,
    pub response: Option<Response>,
    pub error: Option<FlowError>,
    /// Set in the `RequestHeaders` hook to hold the request body back until it is complete, so
    /// the `Request` hook sees it whole (up to `Config::max_buffered_body`).
    pub buffer_request: bool,
    /// Set in the `ResponseHeaders` hook to buffer the response body the same way.
    pub buffer_response: bool,
    /// Body bytes (after de-chunking) seen so far in each direction.
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub started: Instant,
    pub ended: Option<Instant>,
}

impl HttpFlow {
    /// A flow `id` of `client`'s, its `request` just in at `now`: nothing else known yet.
    pub fn new(id: FlowId, client: ClientInfo, request: Request, now: Instant) -> Self {
        Self {
            id,
            client,
            request,
            response: None,
            error: None,
            buffer_request: false,
            buffer_response: false,
            request_body_bytes: 0,
            response_body_bytes: 0,
            started: now,
            ended: None,
        }
    }
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
