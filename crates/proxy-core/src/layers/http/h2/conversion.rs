//! Between our messages ([`Request`], [`Response`], [`Headers`]) and the engine's heads: what
//! the module doc's "Translation" describes. The engine's fields are our [`Headers`]: what
//! comes from HTTP/2 is passed on as it is, and what goes to it is shared as it is when
//! nothing in it has to change (a head from an HTTP/2 peer, mostly).

use bytes::Bytes;

use super::engine::{lowercase_name, usual_method, value_ok, RequestHead, ResponseHead};
use crate::flow::{reason_phrase, Request, Response, Version};
use crate::headers::Headers;
use crate::layers::http::http1::wire::is_tchar;

/// Header fields for HTTP/2: connection-specific ones dropped (RFC 9113 section 8.2.2),
/// names lowercased, anything HTTP/2 cannot carry left out. Fields the HTTP/2 decoder
/// checked and nothing changed since go as they are, unread.
pub(super) fn to_h2_headers(headers: &Headers) -> Headers {
    if headers.is_h2_ready() || headers.iter().all(|(name, value)| carried(name, value) && !name.iter().any(u8::is_ascii_uppercase)) {
        return headers.clone();
    }
    let mut fields = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter_shared() {
        if !carried(name, value) {
            continue;
        }
        let name = if name.iter().any(u8::is_ascii_uppercase) { lowercase_name(name) } else { name.clone() };
        fields.push((name, value.clone()));
    }
    Headers::from_fields(fields)
}

/// Whether a field goes on in HTTP/2: a token for a name, no control byte but HTAB in the
/// value, nothing about this connection alone.
fn carried(name: &[u8], value: &[u8]) -> bool {
    let connection_specific = [&b"connection"[..], b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"];
    let token = !name.is_empty() && name.iter().all(|&b| is_tchar(b));
    let te_other_than_trailers = name.eq_ignore_ascii_case(b"te") && !value.trim_ascii().eq_ignore_ascii_case(b"trailers");
    let connection = te_other_than_trailers || connection_specific.iter().any(|c| name.eq_ignore_ascii_case(c));
    token && value_ok(value) && !connection
}

pub(super) fn to_h2_request(request: &Request) -> RequestHead {
    let authority = request.headers.get_shared("host").cloned().filter(valid_authority);
    let authority = authority.unwrap_or_else(|| Bytes::from(request.authority()));
    let path = match request.path.as_str() {
        "" | "/" => Bytes::from_static(b"/"),
        path if http::uri::PathAndQuery::try_from(path).is_ok() => Bytes::copy_from_slice(path.as_bytes()),
        // A path the URI grammar refuses (a hook's): the root, as a URI of nothing would be.
        _ => Bytes::from_static(b"/"),
    };
    let method = request.method.as_bytes();
    // A method that is no token (a hook's) goes as GET, as the `http` crate's default did.
    let method = match usual_method(method) {
        Some(usual) => usual,
        None if !method.is_empty() && method.iter().all(|&b| is_tchar(b)) => Bytes::copy_from_slice(method),
        None => Bytes::from_static(b"GET"),
    };
    RequestHead {
        method,
        scheme: Some(Bytes::from_static(request.scheme.as_str().as_bytes())),
        authority: Some(authority),
        path: Some(path),
        protocol: None,
        fields: to_h2_headers(&request.headers),
    }
}

/// Whether `host` may stand as `:authority`: a Host the URI grammar refuses gives way to the
/// target we connect to.
fn valid_authority(host: &Bytes) -> bool {
    http::uri::Authority::from_maybe_shared(host.clone()).is_ok()
}

/// A WebSocket upgrade as RFC 8441's extended CONNECT: `:protocol websocket`, and no
/// `Sec-WebSocket-Key` (HTTP/2 has none; `Upgrade` and `Connection` go with the other
/// connection-specific fields).
pub(super) fn to_h2_websocket(request: &Request) -> RequestHead {
    let mut head = to_h2_request(request);
    head.method = Bytes::from_static(b"CONNECT");
    head.protocol = Some(Bytes::from_static(b"websocket"));
    head.fields.remove("sec-websocket-key");
    head
}

pub(super) fn to_h2_response(response: &Response) -> ResponseHead {
    let status = if (100..1000).contains(&response.status) { response.status } else { 502 };
    let mut fields = to_h2_headers(&response.headers);
    if let Some(body) = &response.body {
        // A whole body sets the length, whatever a hook that changed it left in the field;
        // an empty one keeps a length it has (the answer to a `HEAD`).
        let keep = body.is_empty() && fields.contains("content-length");
        if !keep && response.status != 204 && response.status != 304 {
            fields.insert(Bytes::from_static(b"content-length"), body.len().to_string());
        }
    }
    ResponseHead { status, fields }
}

pub(super) fn from_h2_response(head: ResponseHead) -> Response {
    Response {
        version: Version::Http2,
        status: head.status,
        reason: reason_phrase(head.status).to_owned(),
        headers: head.fields,
        body: None,
        trailers: None,
    }
}
