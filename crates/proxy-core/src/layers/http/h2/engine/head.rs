//! Header blocks as HTTP message heads: the fields HPACK decodes, checked and gathered into a
//! [`RequestHead`], a [`ResponseHead`] or a trailer section, and the fields we encode for one.
//!
//! A field no head can hold (an empty name, an uppercase or non-token byte in a name, a colon
//! inside one, an unknown pseudo-header, a control byte in a value, a `:method` that is not a
//! token, a `:status` that is not three digits) fails the whole block: a connection error, as
//! the HPACK state may no longer be trusted to mean what the peer meant. A block whose fields
//! are fine but whose message is malformed (RFC 9113 section 8.1.1: connection-specific
//! fields, pseudo-headers repeated, misplaced or missing, a `content-length` that is not a
//! number or disagrees with itself, a URI the grammar refuses) fails only its stream. The
//! finer rules are the HTTP/2 codecs' (`h2/fields.rs`).
//!
//! A decoded block's strings are copied once, into one buffer of the block's own: every name
//! and value is a slice of it, or a static name (`date`, `content-type`, any name of HPACK's
//! static table). A head costs a few allocations, not two per field.

use bytes::{Bytes, BytesMut};

use super::hpack::static_name;
use crate::headers::Headers;
use crate::layers::http::http1::wire::{is_lowercase_tchar, is_tchar};

/// A request head as HTTP/2 carries it: the pseudo-header fields, then the others.
///
/// What the engine hands out follows RFC 9113 section 8.3.1 (see the module doc for what it
/// refuses); what it is given to send is sent as it is, names as they are (lowercase, as
/// HTTP/2 wants them: the caller's duty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`, a token.
    pub method: Bytes,
    /// `:scheme`; absent in a CONNECT, and dropped when there is no `:authority`.
    pub scheme: Option<Bytes>,
    /// `:authority`.
    pub authority: Option<Bytes>,
    /// `:path`, without a fragment; absent in a CONNECT.
    pub path: Option<Bytes>,
    /// `:protocol`, the protocol of an extended CONNECT (RFC 8441): `websocket`.
    pub protocol: Option<Bytes>,
    /// The other fields, in order.
    pub fields: Headers,
}

impl RequestHead {
    /// Whether this is a CONNECT for a tunnel (section 8.5), not an extended one.
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT" && self.protocol.is_none()
    }
}

/// A response head as HTTP/2 carries it: `:status`, then the other fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// `:status`, three digits.
    pub status: u16,
    /// The other fields, in order.
    pub fields: Headers,
}

impl ResponseHead {
    /// Whether `other` is a clone of this head, neither changed since: the same status, and
    /// fields shared rather than equal ([`Headers::shares`]).
    pub(crate) fn is_clone_of(&self, other: &Self) -> bool {
        self.status == other.status && self.fields.shares(&other.fields)
    }
}

/// How a header block fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeadError {
    /// A field no head can hold: the connection fails.
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
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    protocol: Option<Bytes>,
    status: Option<u16>,
}

/// The least room a block's strings are given. A client's requests after its first are
/// mostly indexes into the dynamic table: a few bytes of block for an authority, a path, a
/// user agent and the like, which would otherwise grow the buffer string by string.
const STRINGS_ROOM: usize = 256;

/// Fields gathered as HPACK hands them out; the first failure wins, a connection-level one
/// over the rest.
pub(super) struct Builder {
    kind: Kind,
    pseudo: Pseudo,
    fields: Vec<(Bytes, Bytes)>,
    /// Where the block's strings are copied to, each split off as it is added: the buffer
    /// is allocated once for the block, and shared by every name and value taken from it.
    strings: BytesMut,
    regular_seen: bool,
    /// No field but ones HTTP/2 carries as they are ([`Headers::mark_h2_ready`]): what the
    /// checks below let through, but a `host` or a name with `"`.
    h2_ready: bool,
    size: usize,
    max_size: usize,
    error: Option<HeadError>,
    content_length: Option<u64>,
}

/// A decoded block, checked.
#[derive(Clone)]
pub(super) struct Decoded {
    pub(super) content_length: Option<u64>,
    pub(super) message: Message,
}

#[derive(Clone)]
pub(super) enum Message {
    Request(RequestHead),
    Response(ResponseHead),
    Trailers(Headers),
}

/// Whether `b` may appear in a field name as a head holds it: a lowercase token byte, or `"`
/// (which `h2/fields.rs` refuses with an answer).
fn name_byte(b: u8) -> bool {
    is_lowercase_tchar(b) || b == b'"'
}

/// Whether `value` has no control byte but HTAB.
pub(crate) fn value_ok(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// Whether `name` is one of the fields only about the connection they come on (RFC 9113
/// section 8.2.2), as HTTP/2 spells names; `te` is one unless its value is `trailers`.
pub(crate) fn is_connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"transfer-encoding" | b"upgrade" | b"keep-alive" | b"proxy-connection")
}

/// A `:status`: three digits, the first not zero.
fn status(value: &[u8]) -> Option<u16> {
    match *value {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')),
        _ => None,
    }
}

/// The usual methods as static strings: a copy of one costs nothing.
pub(crate) fn usual_method(method: &[u8]) -> Option<Bytes> {
    let method: &'static [u8] = match method {
        b"GET" => b"GET",
        b"POST" => b"POST",
        b"HEAD" => b"HEAD",
        b"PUT" => b"PUT",
        b"DELETE" => b"DELETE",
        b"OPTIONS" => b"OPTIONS",
        b"PATCH" => b"PATCH",
        b"CONNECT" => b"CONNECT",
        _ => return None,
    };
    Some(Bytes::from_static(method))
}

impl Builder {
    /// A builder for a block of `block_len` bytes: its strings' buffer has room for the
    /// block Huffman-decoded (a symbol takes 5 bits at least), which is what most of a block
    /// is, and at least [`STRINGS_ROOM`]; strings from the tables beyond that make it grow.
    pub(super) fn new(kind: Kind, max_size: usize, block_len: usize) -> Self {
        Self {
            kind,
            pseudo: Pseudo::default(),
            fields: Vec::new(),
            strings: BytesMut::with_capacity((block_len.saturating_mul(8) / 5).max(STRINGS_ROOM)),
            regular_seen: false,
            h2_ready: true,
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

    /// `s`, copied into the block's buffer.
    fn keep(&mut self, s: &[u8]) -> Bytes {
        self.strings.extend_from_slice(s);
        self.strings.split_to(s.len()).freeze()
    }

    /// One field, as HPACK decoded it. Whether the peer sent it never-indexed is not kept:
    /// what we send on is encoded by our own rules, which never index what may be secret.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
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
            Some(_) => self.regular_field(name, value),
        }
    }

    fn pseudo_field(&mut self, name: &[u8], value: &[u8]) {
        let slot_filled = match name {
            b":method" => {
                if value.is_empty() || !value.iter().all(|&b| is_tchar(b)) {
                    return self.fail(HeadError::Field);
                }
                let method = usual_method(value).unwrap_or_else(|| self.keep(value));
                self.pseudo.method.replace(method).is_some()
            }
            b":status" => match status(value) {
                Some(status) => self.pseudo.status.replace(status).is_some(),
                None => return self.fail(HeadError::Field),
            },
            b":scheme" => {
                let scheme = match value {
                    b"https" => Bytes::from_static(b"https"),
                    b"http" => Bytes::from_static(b"http"),
                    _ => self.keep(value),
                };
                self.pseudo.scheme.replace(scheme).is_some()
            }
            b":authority" => {
                let authority = self.keep(value);
                self.pseudo.authority.replace(authority).is_some()
            }
            b":path" => {
                let path = self.keep(value);
                self.pseudo.path.replace(path).is_some()
            }
            b":protocol" => {
                let protocol = self.keep(value);
                self.pseudo.protocol.replace(protocol).is_some()
            }
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

    fn regular_field(&mut self, name: &[u8], value: &[u8]) {
        self.regular_seen = true;
        if !name.iter().all(|&b| name_byte(b)) {
            return self.fail(HeadError::Field);
        }
        if name == b"host" || name.contains(&b'"') {
            self.h2_ready = false;
        }
        if is_connection_specific(name) || (name == b"te" && value != b"trailers") {
            self.fail(HeadError::Malformed);
        }
        if name == b"content-length" && self.kind != Kind::Trailers {
            match parse_length(value) {
                Some(n) if self.content_length.is_none_or(|seen| seen == n) => self.content_length = Some(n),
                _ => self.fail(HeadError::Malformed),
            }
        }
        if self.error.is_none() {
            let name = static_name(name).map_or_else(|| self.keep(name), Bytes::from_static);
            let value = self.keep(value);
            // Room for a usual response's fields at the first growth, rather than four.
            if self.fields.is_empty() {
                self.fields.reserve_exact(8);
            }
            self.fields.push((name, value));
        }
    }

    /// The message the block makes, or how it fails. `connect_protocol`: extended CONNECT is
    /// enabled (server role).
    pub(super) fn finish(self, connect_protocol: bool) -> Result<Decoded, HeadError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let content_length = self.content_length;
        let mut fields = Headers::from_fields(self.fields);
        if self.h2_ready {
            fields.mark_h2_ready();
        }
        let message = match self.kind {
            Kind::Request => Message::Request(request(self.pseudo, fields, connect_protocol)?),
            // Request pseudo-headers in a response are dropped.
            Kind::Response => Message::Response(ResponseHead { status: self.pseudo.status.ok_or(HeadError::Malformed)?, fields }),
            Kind::Trailers => Message::Trailers(fields),
        };
        Ok(Decoded { content_length, message })
    }
}

/// A content length: decimal digits (none reads as 0, which `h2/fields.rs` refuses).
fn parse_length(value: &[u8]) -> Option<u64> {
    value.iter().try_fold(0u64, |n, &b| if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}

/// A request head from its pseudo-headers, as section 8.3.1 lays them out. The URI grammar
/// is the `http` crate's, applied to the strings where they are (no copy is made).
fn request(pseudo: Pseudo, fields: Headers, connect_protocol: bool) -> Result<RequestHead, HeadError> {
    if pseudo.status.is_some() {
        return Err(HeadError::Malformed);
    }
    let method = pseudo.method.ok_or(HeadError::Malformed)?;
    let is_connect = method == "CONNECT";
    let protocol = match pseudo.protocol {
        Some(_) if !connect_protocol || !is_connect => return Err(HeadError::Malformed),
        Some(p) if std::str::from_utf8(&p).is_err() => return Err(HeadError::Malformed),
        protocol => protocol,
    };
    let extended = protocol.is_some();
    let authority = match pseudo.authority {
        Some(authority) => {
            http::uri::Authority::from_maybe_shared(authority.clone()).map_err(|_| HeadError::Malformed)?;
            Some(authority)
        }
        None => None,
    };
    let scheme = match pseudo.scheme {
        Some(_) if is_connect && !extended => return Err(HeadError::Malformed),
        Some(scheme) => {
            http::uri::Scheme::try_from(&scheme[..]).map_err(|_| HeadError::Malformed)?;
            // A URI cannot have a scheme without an authority: the scheme is dropped then.
            authority.is_some().then_some(scheme)
        }
        None if !is_connect || extended => return Err(HeadError::Malformed),
        None => None,
    };
    let path = match pseudo.path {
        Some(_) if is_connect && !extended => return Err(HeadError::Malformed),
        Some(path) if path.is_empty() => return Err(HeadError::Malformed),
        Some(mut path) => {
            let parsed = http::uri::PathAndQuery::from_maybe_shared(path.clone()).map_err(|_| HeadError::Malformed)?;
            // The grammar ends the path at a fragment, which is dropped.
            path.truncate(parsed.as_str().len());
            Some(path)
        }
        None if extended => return Err(HeadError::Malformed),
        // An origin (scheme and authority) without a path is no URI.
        None if scheme.is_some() => return Err(HeadError::Malformed),
        None => None,
    };
    Ok(RequestHead { method, scheme, authority, path, protocol, fields })
}

/// `name` in lowercase, as HTTP/2 spells names: a static copy when the static table has it.
pub(crate) fn lowercase_name(name: &[u8]) -> Bytes {
    let mut buf = [0u8; 32];
    if let Some(lower) = buf.get_mut(..name.len()) {
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        if let Some(name) = static_name(lower) {
            return Bytes::from_static(name);
        }
    }
    Bytes::from(name.to_ascii_lowercase())
}

/// A field to encode: name, value, and whether it is sensitive (never indexed).
pub(super) type Field<'a> = (&'a [u8], &'a [u8], bool);

/// The fields of a request head, pseudo-headers first: `:method`, then `:authority` for a
/// CONNECT, else `:scheme`, `:authority`, `:path` and `:protocol` (when there).
pub(super) fn request_fields(request: &RequestHead) -> impl Iterator<Item = Field<'_>> {
    let other = !request.is_connect();
    let pseudo = [
        Some((&b":method"[..], &request.method[..])),
        other.then(|| (&b":scheme"[..], request.scheme.as_deref().unwrap_or(b"https"))),
        request.authority.as_deref().map(|authority| (&b":authority"[..], authority)),
        other.then(|| (&b":path"[..], request.path.as_deref().filter(|p| !p.is_empty()).unwrap_or(b"/"))),
        request.protocol.as_deref().filter(|_| other).map(|protocol| (&b":protocol"[..], protocol)),
    ];
    pseudo.into_iter().flatten().chain(request.fields.iter()).map(|(name, value)| (name, value, false))
}

/// A status code's three digits.
pub(super) fn status_digits(status: u16) -> [u8; 3] {
    [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// The fields of a response head; `status` is its [`status_digits`].
pub(super) fn response_fields<'a>(response: &'a ResponseHead, status: &'a [u8; 3]) -> impl Iterator<Item = Field<'a>> {
    std::iter::once((&b":status"[..], &status[..])).chain(response.fields.iter()).map(|(name, value)| (name, value, false))
}

/// The fields of a trailer section.
pub(super) fn trailer_fields(trailers: &Headers) -> impl Iterator<Item = Field<'_>> {
    trailers.iter().map(|(name, value)| (name, value, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(kind: Kind, fields: &[(&str, &str)]) -> Result<Decoded, HeadError> {
        let mut builder = Builder::new(kind, 16 * 1024, 64);
        for (name, value) in fields {
            builder.field(name.as_bytes(), value.as_bytes());
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
    fn checked_fields_go_on_over_http2_as_they_are_but_host_and_quoted_names() {
        let get = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")];
        let fields = |extra: &[(&str, &str)]| match decode(Kind::Request, &[&get[..], extra].concat()) {
            Ok(Decoded { message: Message::Request(request), .. }) => request.fields,
            _ => panic!("{extra:?}"),
        };
        let mut ready = fields(&[("accept", "*/*"), ("te", "trailers")]);
        assert!(ready.is_h2_ready());
        assert!(!fields(&[("accept", "*/*"), ("host", "a.test")]).is_h2_ready());
        assert!(!fields(&[("a\"b", "x")]).is_h2_ready());
        // A copy shares the answer; a change, even a valid one, drops it; a removal keeps it.
        let copy = ready.clone();
        ready.retain(|name, _| name != b"te");
        assert!(ready.is_h2_ready() && copy.is_h2_ready());
        ready.append("x-a", "1");
        assert!(!ready.is_h2_ready() && copy.is_h2_ready());
        let Ok(Decoded { message: Message::Response(response), .. }) = decode(Kind::Response, &[(":status", "200"), ("server", "x")]) else { panic!() };
        assert!(response.fields.is_h2_ready());
    }

    #[test]
    fn the_list_size_counts_32_per_field() {
        let mut builder = Builder::new(Kind::Response, 40, 8);
        builder.field(b":status", b"200");
        builder.field(b"x", b"y");
        assert_eq!(builder.finish(false).err(), Some(HeadError::TooLarge));
    }
}
