//! HTTP/1.1 wire format (RFC 9112): reading heads and bodies, writing heads.
//!
//! STUB: signatures and contracts only; the bodies are being written.

use bytes::{Bytes, BytesMut};

use crate::flow::Version;
use crate::headers::Headers;

/// Limits applied while reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head (start line + fields + blank line), and largest trailer section.
    pub max_head_bytes: usize,
    /// Most fields in one head or trailer section.
    pub max_headers: usize,
}

/// A malformed or unacceptable HTTP/1 message. Which side sent it is up to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Http1Error {
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed status line")]
    BadStatusLine,
    #[error("unsupported HTTP version")]
    BadVersion,
    #[error("malformed header field")]
    BadHeader,
    #[error("invalid character in header value")]
    BadHeaderValue,
    #[error("obsolete line folding in header")]
    ObsFold,
    #[error("header section larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("both content-length and transfer-encoding")]
    LengthAndChunked,
    #[error("conflicting content-length values")]
    ConflictingLength,
    #[error("invalid content-length")]
    BadLength,
    #[error("unsupported transfer-encoding")]
    BadTransferEncoding,
    #[error("invalid chunk size")]
    BadChunkSize,
    #[error("malformed chunk")]
    BadChunk,
    #[error("body ended early")]
    Incomplete,
}

impl Http1Error {
    /// The status a proxy answers with when a client's request has this error.
    pub fn status(&self) -> u16 {
        unimplemented!()
    }
}

/// A parsed request head. `target` is the request-target exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Reads message heads out of a receive buffer, remembering how far it has already scanned.
#[derive(Debug, Default)]
pub struct HeadReader {
    scanned: usize,
}

impl HeadReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// If `buf` holds a complete request head, split it off `buf` and parse it. `Ok(None)` means
    /// more bytes are needed. Errors when the head is malformed or larger than the limit.
    pub fn read_request(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, Http1Error> {
        let _ = (buf, limits, self.scanned);
        unimplemented!()
    }

    pub fn read_response(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<ResponseHead>, Http1Error> {
        let _ = (buf, limits);
        unimplemented!()
    }
}

/// Body framing of a request (RFC 9112 section 6.3, strict).
pub fn request_framing(head: &RequestHead) -> Result<Framing, Http1Error> {
    let _ = head;
    unimplemented!()
}

/// Body framing of a response to a request with `method`.
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, Http1Error> {
    let _ = (method, head);
    unimplemented!()
}

/// One step of reading a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    Data(Bytes),
    /// The body is complete; chunked bodies may end with trailer fields.
    End { trailers: Option<Headers> },
}

/// Reads a body out of a receive buffer, incrementally.
#[derive(Debug)]
pub struct BodyReader {
    _framing: Framing,
}

impl BodyReader {
    pub fn new(framing: Framing, limits: Limits) -> Self {
        let _ = limits;
        Self { _framing: framing }
    }

    /// Take the next piece of body out of `buf`. `Ok(None)`: more bytes needed.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Http1Error> {
        let _ = buf;
        unimplemented!()
    }

    /// The connection closed: end an `UntilClose` body, or fail an incomplete one.
    pub fn read_eof(&mut self) -> Result<BodyEvent, Http1Error> {
        unimplemented!()
    }

    pub fn is_done(&self) -> bool {
        unimplemented!()
    }
}

pub fn write_request_head(dst: &mut BytesMut, method: &str, target: &str, version: Version, headers: &Headers) {
    let _ = (dst, method, target, version, headers);
    unimplemented!()
}

pub fn write_response_head(dst: &mut BytesMut, version: Version, status: u16, reason: &str, headers: &Headers) {
    let _ = (dst, version, status, reason, headers);
    unimplemented!()
}

/// Write trailer fields and the final blank line (after the last-chunk `0\r\n`).
pub fn write_fields(dst: &mut BytesMut, headers: &Headers) {
    let _ = (dst, headers);
    unimplemented!()
}

pub const LAST_CHUNK: &[u8] = b"0\r\n";
pub fn write_chunk_header(dst: &mut BytesMut, len: usize) { let _ = (dst, len); unimplemented!() }
