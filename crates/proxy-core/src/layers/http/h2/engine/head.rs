//! Header blocks as HTTP messages: the fields HPACK decodes, checked and gathered into an
//! `http` request or response head (or a trailer section), and the fields we encode for one.
//!
//! A field the `http` types cannot hold (an empty name, an uppercase or non-token byte in a
//! name, a colon inside one, an unknown pseudo-header, a control byte in a value, a `:method`
//! that is not a token, a `:status` that is not three digits) fails the whole block: a
//! connection error, as the HPACK state may no longer be trusted to mean what the peer
//! meant. A block whose fields are fine but whose message is malformed (RFC 9113 section
//! 8.1.1: connection-specific fields, pseudo-headers repeated, misplaced or missing, a
//! `content-length` that is not a number or disagrees with itself, a URI the grammar refuses)
//! fails only its stream. The finer rules are the HTTP/2 codecs' (`h2/fields.rs`).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Method, StatusCode};

/// The `:protocol` of an extended CONNECT (RFC 8441), kept in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol(String);

impl Protocol {
    /// The protocol named `protocol` (`"websocket"`).
    pub fn from_static(protocol: &'static str) -> Self {
        Protocol(protocol.to_owned())
    }

    /// The protocol's name, as the `:protocol` pseudo-header carried it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a header block fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeadError {
    /// A field no `http` type can hold: the connection fails.
    Field,
    /// The message is malformed: its stream fails.
    Malformed,
    /// The decoded list is larger than our `SETTINGS_MAX_HEADER_LIST_SIZE`.
    TooLarge,
}

/// What a block is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Request,
    Response,
    Trailers,
}

/// The pseudo-headers of a block.
#[derive(Default)]
struct Pseudo {
    method: Option<Method>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    protocol: Option<Bytes>,
    status: Option<StatusCode>,
}

/// Fields gathered as HPACK hands them out; the first failure wins, a connection-level one
/// over the rest.
pub(super) struct Builder {
    kind: Kind,
    pseudo: Pseudo,
    fields: HeaderMap,
    regular_seen: bool,
    size: usize,
    max_size: usize,
    error: Option<HeadError>,
    content_length: Option<u64>,
}

/// A decoded block, checked.
pub(super) struct Decoded {
    pub(super) content_length: Option<u64>,
    pub(super) message: Message,
}

pub(super) enum Message {
    Request(http::request::Parts),
    Response(http::response::Parts),
    Trailers(HeaderMap),
}

/// Whether `b` may appear in a field name as the `http` types hold them: a lowercase token
/// byte, or `"` (which `h2/fields.rs` refuses with an answer).
fn name_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' | b'"')
}

/// Whether `value` has no control byte but HTAB.
fn value_ok(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

impl Builder {
    pub(super) fn new(kind: Kind, max_size: usize) -> Self {
        Self {
            kind,
            pseudo: Pseudo::default(),
            fields: HeaderMap::new(),
            regular_seen: false,
            size: 0,
            max_size,
            error: None,
            content_length: None,
        }
    }

    fn fail(&mut self, error: HeadError) {
        match (self.error, error) {
            (None, _) | (Some(HeadError::Malformed | HeadError::TooLarge), HeadError::Field) => self.error = Some(error),
            _ => {}
        }
    }

    /// One field, as HPACK decoded it; `never_indexed` fields stay so when passed on.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8], never_indexed: bool) {
        if self.error == Some(HeadError::Field) {
            return;
        }
        self.size += name.len() + value.len() + 32;
        if self.size > self.max_size {
            self.fail(HeadError::TooLarge);
        }
        if !value_ok(value) {
            return self.fail(HeadError::Field);
        }
        match name.first() {
            None => self.fail(HeadError::Field),
            Some(b':') => self.pseudo_field(name, value),
            Some(_) => self.regular_field(name, value, never_indexed),
        }
    }

    fn pseudo_field(&mut self, name: &[u8], value: &[u8]) {
        let p = &mut self.pseudo;
        let slot_filled = match name {
            b":method" => match Method::from_bytes(value) {
                Ok(method) => p.method.replace(method).is_some(),
                Err(_) => return self.fail(HeadError::Field),
            },
            b":status" => match StatusCode::from_bytes(value) {
                Ok(status) => p.status.replace(status).is_some(),
                Err(_) => return self.fail(HeadError::Field),
            },
            b":scheme" => p.scheme.replace(Bytes::copy_from_slice(value)).is_some(),
            b":authority" => p.authority.replace(Bytes::copy_from_slice(value)).is_some(),
            b":path" => p.path.replace(Bytes::copy_from_slice(value)).is_some(),
            b":protocol" => p.protocol.replace(Bytes::copy_from_slice(value)).is_some(),
            _ => return self.fail(HeadError::Field),
        };
        if self.kind == Kind::Trailers {
            // Pseudo-headers opening a trailer section are dropped; after a field, malformed.
            if self.regular_seen {
                self.fail(HeadError::Malformed);
            }
            self.pseudo = Pseudo::default();
            return;
        }
        if slot_filled || self.regular_seen {
            self.fail(HeadError::Malformed);
        }
    }

    fn regular_field(&mut self, name: &[u8], value: &[u8], never_indexed: bool) {
        self.regular_seen = true;
        if !name.iter().all(|&b| name_byte(b)) {
            return self.fail(HeadError::Field);
        }
        let (Ok(name), Ok(mut value)) = (HeaderName::from_lowercase(name), HeaderValue::from_bytes(value)) else {
            return self.fail(HeadError::Field);
        };
        value.set_sensitive(never_indexed);
        let connection_specific = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];
        if connection_specific.contains(&name.as_str()) || (name == "te" && value != "trailers") {
            self.fail(HeadError::Malformed);
        }
        if name == CONTENT_LENGTH && self.kind != Kind::Trailers {
            match parse_length(value.as_bytes()) {
                Some(n) if self.content_length.is_none_or(|seen| seen == n) => self.content_length = Some(n),
                _ => self.fail(HeadError::Malformed),
            }
        }
        if self.error.is_none() {
            self.fields.append(name, value);
        }
    }

    /// The message the block makes, or how it fails. `connect_protocol`: extended CONNECT is
    /// enabled (server role).
    pub(super) fn finish(self, connect_protocol: bool) -> Result<Decoded, HeadError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let status = self.pseudo.status;
        let content_length = self.content_length;
        let message = match self.kind {
            Kind::Request => Message::Request(request(self.pseudo, self.fields, connect_protocol)?),
            Kind::Response => {
                let mut head = http::Response::new(()).into_parts().0;
                head.status = status.ok_or(HeadError::Malformed)?;
                head.version = http::Version::HTTP_2;
                head.headers = self.fields;
                Message::Response(head)
            }
            Kind::Trailers => Message::Trailers(self.fields),
        };
        Ok(Decoded { content_length, message })
    }
}

/// A content length: decimal digits (none reads as 0, which `h2/fields.rs` refuses).
fn parse_length(value: &[u8]) -> Option<u64> {
    value.iter().try_fold(0u64, |n, &b| if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}

/// A request head from its pseudo-headers, as section 8.3.1 lays them out.
fn request(pseudo: Pseudo, fields: HeaderMap, connect_protocol: bool) -> Result<http::request::Parts, HeadError> {
    if pseudo.status.is_some() {
        return Err(HeadError::Malformed);
    }
    let method = pseudo.method.ok_or(HeadError::Malformed)?;
    let is_connect = method == Method::CONNECT;
    let protocol = match pseudo.protocol {
        Some(_) if !connect_protocol || !is_connect => return Err(HeadError::Malformed),
        Some(p) => Some(Protocol(String::from_utf8(p.to_vec()).map_err(|_| HeadError::Malformed)?)),
        None => None,
    };
    let extended = protocol.is_some();
    let mut parts = http::uri::Parts::default();
    if let Some(authority) = pseudo.authority {
        parts.authority = Some(http::uri::Authority::from_maybe_shared(authority).map_err(|_| HeadError::Malformed)?);
    }
    match pseudo.scheme {
        Some(_) if is_connect && !extended => return Err(HeadError::Malformed),
        Some(scheme) => {
            let scheme = http::uri::Scheme::try_from(&scheme[..]).map_err(|_| HeadError::Malformed)?;
            // A URI cannot have a scheme without an authority: the scheme is dropped then.
            if parts.authority.is_some() {
                parts.scheme = Some(scheme);
            }
        }
        None if !is_connect || extended => return Err(HeadError::Malformed),
        None => {}
    }
    match pseudo.path {
        Some(_) if is_connect && !extended => return Err(HeadError::Malformed),
        Some(path) if path.is_empty() => return Err(HeadError::Malformed),
        Some(path) => parts.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(path).map_err(|_| HeadError::Malformed)?),
        None if extended => return Err(HeadError::Malformed),
        None => {}
    }
    let uri = http::Uri::from_parts(parts).map_err(|_| HeadError::Malformed)?;
    let mut head = http::Request::new(()).into_parts().0;
    head.method = method;
    head.uri = uri;
    head.version = http::Version::HTTP_2;
    head.headers = fields;
    if let Some(protocol) = protocol {
        head.extensions.insert(protocol);
    }
    Ok(head)
}

/// A field to encode: name, value, and whether it is sensitive (never indexed).
pub(super) type Field<'a> = (&'a [u8], &'a [u8], bool);

/// The fields of a request head, pseudo-headers first.
pub(super) fn request_fields(request: &http::Request<()>) -> Vec<Field<'_>> {
    let mut fields = Vec::with_capacity(request.headers().len() + 5);
    let uri = request.uri();
    let method = request.method();
    fields.push((&b":method"[..], method.as_str().as_bytes(), false));
    let protocol = request.extensions().get::<Protocol>();
    let authority = uri.authority().map(|a| a.as_str().as_bytes());
    if *method == Method::CONNECT && protocol.is_none() {
        if let Some(authority) = authority {
            fields.push((b":authority", authority, false));
        }
    } else {
        fields.push((b":scheme", uri.scheme_str().unwrap_or("https").as_bytes(), false));
        if let Some(authority) = authority {
            fields.push((b":authority", authority, false));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        fields.push((b":path", if path.is_empty() { b"/" } else { path.as_bytes() }, false));
        if let Some(protocol) = protocol {
            fields.push((b":protocol", protocol.as_str().as_bytes(), false));
        }
    }
    push_fields(&mut fields, request.headers());
    fields
}

/// A status code's three digits.
pub(super) fn status_digits(status: StatusCode) -> [u8; 3] {
    let n = status.as_u16();
    [b'0' + (n / 100 % 10) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// The fields of a response head; `status` is its [`status_digits`].
pub(super) fn response_fields<'a>(response: &'a http::Response<()>, status: &'a [u8; 3]) -> Vec<Field<'a>> {
    let mut fields = Vec::with_capacity(response.headers().len() + 1);
    fields.push((&b":status"[..], &status[..], false));
    push_fields(&mut fields, response.headers());
    fields
}

/// The fields of a trailer section.
pub(super) fn trailer_fields(trailers: &HeaderMap) -> Vec<Field<'_>> {
    let mut fields = Vec::with_capacity(trailers.len());
    push_fields(&mut fields, trailers);
    fields
}

fn push_fields<'a>(fields: &mut Vec<Field<'a>>, map: &'a HeaderMap) {
    fields.extend(map.iter().map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes(), value.is_sensitive())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(kind: Kind, fields: &[(&str, &str)]) -> Result<Decoded, HeadError> {
        let mut builder = Builder::new(kind, 16 * 1024);
        for (name, value) in fields {
            builder.field(name.as_bytes(), value.as_bytes(), false);
        }
        builder.finish(false)
    }

    #[test]
    fn field_errors_fail_the_connection_and_message_errors_the_stream() {
        let get = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")];
        assert!(decode(Kind::Request, &get).is_ok());
        for bad in [("Upper", "x"), ("", "x"), ("a:b", "x"), (":foo", "x"), ("x", "a\nb"), ("a b", "x")] {
            assert_eq!(decode(Kind::Request, &[&get[..], &[bad]].concat()).err(), Some(HeadError::Field), "{bad:?}");
        }
        for bad in [("connection", "close"), ("te", "gzip"), (":path", "/again"), ("content-length", "x")] {
            assert_eq!(decode(Kind::Request, &[&get[..], &[bad]].concat()).err(), Some(HeadError::Malformed), "{bad:?}");
        }
        assert!(decode(Kind::Request, &[&get[..], &[("te", "trailers"), ("a\"b", "x")]].concat()).is_ok());
        assert_eq!(decode(Kind::Response, &[("x", "1")]).err(), Some(HeadError::Malformed));
        assert_eq!(decode(Kind::Response, &[(":status", "20")]).err(), Some(HeadError::Field));
    }

    #[test]
    fn pseudo_headers_opening_trailers_are_dropped() {
        let Ok(Decoded { message: Message::Trailers(t), .. }) = decode(Kind::Trailers, &[(":status", "200"), ("grpc-status", "0")]) else { panic!() };
        assert_eq!(t.len(), 1);
        assert_eq!(decode(Kind::Trailers, &[("grpc-status", "0"), (":status", "200")]).err(), Some(HeadError::Malformed));
    }

    #[test]
    fn the_list_size_counts_32_per_field() {
        let mut builder = Builder::new(Kind::Response, 40);
        builder.field(b":status", b"200", false);
        builder.field(b"x", b"y", false);
        assert_eq!(builder.finish(false).err(), Some(HeadError::TooLarge));
    }
}
