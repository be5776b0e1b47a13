//! The data a hook sees: HTTP messages and the flow that pairs them.

use core::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::headers::Headers;
use crate::ids::{FlowId, Scheme, ServerAddr};

/// The protocol a message came in (or goes out) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no keep-alive unless asked for, no chunked bodies.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2: one stream of a multiplexed connection.
    Http2,
    /// The request of a SOCKS5 client (its CONNECT), shown as a flow.
    Socks5,
}

impl Version {
    /// The version as a status line writes it: `"HTTP/1.1"`, `"HTTP/2"`, `"SOCKS5"`.
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
    /// The method, as the client spelled it (`GET`, `CONNECT`...).
    pub method: String,
    /// How the proxy reaches the server: from the absolute-form URL, or `https` inside an
    /// intercepted TLS connection.
    pub scheme: Scheme,
    /// The host to connect to (for CONNECT, the tunnel's target). A hook that changes it,
    /// or `port` or `scheme`, sends the request elsewhere.
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// Origin-form target: path and query, `*` for `OPTIONS *`, empty for CONNECT.
    pub path: String,
    /// The version the client spoke; the request goes upstream in whichever the server speaks.
    pub version: Version,
    /// The header fields, in order and with the client's case (for HTTP/2, with `host` for
    /// `:authority`).
    pub headers: Headers,
    /// The whole body, when buffered; `None` when it streams through.
    pub body: Option<Bytes>,
    /// Trailer fields after a chunked or HTTP/2 body, once they arrived.
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

    /// Where the request goes: `host` and `port`.
    pub fn server(&self) -> ServerAddr {
        ServerAddr::new(self.host.clone(), self.port)
    }
}

/// An HTTP response. `body` is `Some` only when buffered, as for [`Request::body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The version the server spoke; the client gets the response in its own.
    pub version: Version,
    /// The status code, three digits.
    pub status: u16,
    /// The reason phrase of an HTTP/1 status line (HTTP/2 has none: the status's registered
    /// phrase stands in). When a hook leaves it empty, HTTP/1 clients get the registered
    /// phrase, if the status has one.
    pub reason: String,
    /// The header fields, in order and with the server's case.
    pub headers: Headers,
    /// The whole body, when buffered; `None` when it streams through.
    pub body: Option<Bytes>,
    /// Trailer fields after a chunked or HTTP/2 body, once they arrived.
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
    /// The client's address.
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
    /// What went wrong, in words: `"a.test:80: connection refused"`.
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
    /// The flow's id, unique within its client connection; hook replies name it.
    pub id: FlowId,
    /// Who sent the request.
    pub client: ClientInfo,
    /// The request, as it will be (or was) sent upstream once hooks are done with it.
    pub request: Request,
    /// The response, once its head is in (or a hook answered locally).
    pub response: Option<Response>,
    /// Why the flow failed, in the [`Error`](crate::Hook::Error) hook.
    pub error: Option<FlowError>,
    /// Set in the `RequestHeaders` hook to hold the request body back until it is complete, so
    /// the `Request` hook sees it whole (up to `Config::max_buffered_body`).
    pub buffer_request: bool,
    /// Set in the `ResponseHeaders` hook to buffer the response body the same way.
    pub buffer_response: bool,
    /// Request body bytes (after de-chunking) passed on so far.
    pub request_body_bytes: u64,
    /// Response body bytes (after de-chunking) passed on so far.
    pub response_body_bytes: u64,
    /// When the request head arrived (the `now` of that event).
    pub started: Instant,
    /// When the exchange ended, completed or failed; `None` while it goes on.
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

/// The reason phrase the proxy writes after `status` in an HTTP/1 status line: IANA's name of
/// the status (from [`http::StatusCode::canonical_reason`]), or nothing for a status without one,
/// which RFC 9112 section 4 allows (`HTTP/1.1 599 \r\n`).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        // RFC 9110 renamed these two; http still has RFC 7231's "Payload Too Large" and
        // "Unprocessable Entity".
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        _ => http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::layers::http::http1::wire::{write_response_head, HeadReader, Limits};

    #[test]
    fn every_registered_status_has_its_phrase_and_others_a_valid_status_line() {
        for (status, want) in [
            (200, "OK"),
            (401, "Unauthorized"),
            (307, "Temporary Redirect"),
            (308, "Permanent Redirect"),
            (413, "Content Too Large"),
            (429, "Too Many Requests"),
            (502, "Bad Gateway"),
            (599, ""),
        ] {
            assert_eq!(reason_phrase(status), want, "{status}");
            // What the proxy writes reads back as the same status and phrase.
            let mut head = BytesMut::new();
            write_response_head(&mut head, Version::Http11, status, reason_phrase(status), &Headers::new());
            let limits = Limits { max_head_bytes: 1024, max_headers: 8 };
            let read = HeadReader::new().read_response(&mut head, &limits).unwrap().unwrap();
            assert_eq!((read.status, read.reason.as_str()), (status, want));
        }
        assert_eq!(Response::new(429, Headers::new(), "").reason, "Too Many Requests");
    }
}
