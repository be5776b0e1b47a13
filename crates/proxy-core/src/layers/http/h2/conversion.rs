//! Between our messages ([`Request`], [`Response`], [`Headers`]) and the `http` crate's,
//! which the engine takes and gives: what the module doc's "Translation" describes.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::flow::{reason_phrase, Request, Response, Version};
use crate::headers::Headers;

pub(super) fn from_h2_headers(map: &HeaderMap) -> Headers {
    let mut headers = Headers::with_capacity(map.len());
    for (name, value) in map {
        headers.append(Bytes::copy_from_slice(name.as_str().as_bytes()), Bytes::copy_from_slice(value.as_bytes()));
    }
    headers
}

/// Header fields for HTTP/2: connection-specific ones dropped (RFC 9113 section 8.2.2),
/// names lowercased, anything HTTP/2 cannot carry left out.
pub(super) fn to_h2_headers(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let connection_specific = [&b"connection"[..], b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"];
        if connection_specific.iter().any(|c| name.eq_ignore_ascii_case(c)) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"te") && !value.trim_ascii().eq_ignore_ascii_case(b"trailers") {
            continue;
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else { continue };
        map.append(name, value);
    }
    map
}

pub(super) fn to_h2_request(request: &Request) -> http::Request<()> {
    let authority = request.headers.get_str("host").map_or_else(|| request.authority(), str::to_owned);
    let path = if request.path.is_empty() { "/" } else { request.path.as_str() };
    let uri = http::Uri::builder().scheme(request.scheme.as_str()).authority(authority.as_str()).path_and_query(path).build();
    let uri = uri.unwrap_or_else(|_| {
        // A Host the URI grammar refuses: fall back to the target we connect to.
        let fallback = http::Uri::builder().scheme(request.scheme.as_str()).authority(request.authority()).path_and_query(path).build();
        fallback.unwrap_or_default()
    });
    let method = http::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
    let mut out = http::Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = http::Version::HTTP_2;
    *out.headers_mut() = to_h2_headers(&request.headers);
    out
}

/// A WebSocket upgrade as RFC 8441's extended CONNECT: `:protocol websocket`, and no
/// `Sec-WebSocket-Key` (HTTP/2 has none; `Upgrade` and `Connection` go with the other
/// connection-specific fields).
pub(super) fn to_h2_websocket(request: &Request) -> http::Request<()> {
    let mut out = to_h2_request(request);
    *out.method_mut() = http::Method::CONNECT;
    out.extensions_mut().insert(super::engine::Protocol::from_static("websocket"));
    out.headers_mut().remove("sec-websocket-key");
    out
}

pub(super) fn to_h2_response(response: &Response) -> http::Response<()> {
    let mut out = http::Response::new(());
    *out.status_mut() = http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = to_h2_headers(&response.headers);
    if let Some(body) = &response.body {
        // A whole body sets the length, whatever a hook that changed it left in the field;
        // an empty one keeps a length it has (the answer to a `HEAD`).
        let keep = body.is_empty() && out.headers().contains_key(http::header::CONTENT_LENGTH);
        if !keep && response.status != 204 && response.status != 304 {
            out.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
    }
    out
}

pub(super) fn from_h2_response(head: http::response::Parts) -> Response {
    let status = head.status.as_u16();
    Response {
        version: Version::Http2,
        status,
        reason: reason_phrase(status).to_owned(),
        headers: from_h2_headers(&head.headers),
        body: None,
        trailers: None,
    }
}
