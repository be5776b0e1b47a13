//! HTTP/1.1 wire format (RFC 9112): reading heads and bodies, writing heads.
//!
//! Everything here works on a connection's receive buffer, a `BytesMut` that the caller only
//! appends to. Readers split what they consume off the front of it without copying, and
//! remember how far they have searched, so a message arriving in many small pieces is never
//! rescanned from its start.
//!
//! Parsing is strict where a laxer reading could frame a message differently from another
//! implementation on the path (request smuggling), and lenient only where the result is
//! unambiguous once re-serialised:
//!
//! - Heads may end their lines with CRLF or a bare LF. The proxy writes heads again with CRLF,
//!   so the next hop sees the same lines we saw. Empty lines before a request line (and, as
//!   httparse does, before a status line) are skipped.
//! - Obsolete line folding, whitespace before a field's colon, a field name that is not a token
//!   and control characters in values are rejected, each with its own [`Http1Error`].
//! - A request must carry either a single `Transfer-Encoding: chunked` or a valid
//!   `Content-Length`, never both. Responses follow RFC 9112 section 6.3: `Transfer-Encoding`
//!   wins over `Content-Length`, and a final coding other than chunked reads until close.
//! - Chunked bodies need CRLF on every line, including the trailer section, and a chunk size
//!   of at most 16 hex digits; chunk extensions must follow the RFC grammar and are dropped.
//!
//! The HTTP/1 codecs then write what they forward in one canonical framing: a single decimal
//! `Content-Length` (`5, 5` and `005` become `5`), or `Transfer-Encoding: chunked` with
//! fresh chunk lines; trailer fields that frame or route a message are dropped. README.md
//! ("Request smuggling") tables every decision.

use crate::flow::Version;
use crate::headers::Headers;

mod body;
mod framing;
mod head;
mod write;

pub use body::{BodyEvent, BodyReader};
pub use framing::{content_length, request_framing, response_framing};
pub use head::HeadReader;
pub(crate) use write::radix;
pub use write::{request_head_len, response_head_len, write_chunk_header, write_fields, write_request_head, write_response_head, LAST_CHUNK};

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
    /// Not `method SP request-target SP HTTP-version`, or a bad method or target.
    #[error("malformed request line")]
    BadRequestLine,
    /// Not `HTTP-version SP 3DIGIT [SP reason]`, or a status below 100.
    #[error("malformed status line")]
    BadStatusLine,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1.
    #[error("unsupported HTTP version")]
    BadVersion,
    /// A field line without a colon, a name that is not a token, or whitespace before the colon.
    #[error("malformed header field")]
    BadHeader,
    /// NUL, CR, LF, DEL or another control character other than HTAB in a field value.
    #[error("invalid character in header value")]
    BadHeaderValue,
    /// A field line starting with whitespace (RFC 9112 section 5.2).
    #[error("obsolete line folding in header")]
    ObsFold,
    /// A head (or trailer section) past [`Config::max_head_bytes`](crate::Config::max_head_bytes).
    #[error("header section larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// More fields than [`Config::max_headers`](crate::Config::max_headers).
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit, in fields.
        limit: usize,
    },
    /// A request with both `Content-Length` and `Transfer-Encoding`.
    #[error("both content-length and transfer-encoding")]
    LengthAndChunked,
    /// `Content-Length` values that disagree.
    #[error("conflicting content-length values")]
    ConflictingLength,
    /// A `Content-Length` value that is not a list of decimal numbers fitting in 64 bits.
    #[error("invalid content-length")]
    BadLength,
    /// A request whose transfer codings do not end in one `chunked` (`xchunked`,
    /// `chunked, identity`, `chunked, chunked`, an empty element), or an HTTP/1.0 request with
    /// `Transfer-Encoding`: its length cannot be known (RFC 9112 section 6.1).
    #[error("invalid transfer-encoding")]
    BadTransferEncoding,
    /// A request with codings before its final `chunked` (`gzip, chunked`): well framed, but
    /// not forwarded.
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// A chunk size that is not 1 to 16 hex digits.
    #[error("invalid chunk size")]
    BadChunkSize,
    /// A chunk line without CRLF, a malformed chunk extension, or data not followed by CRLF.
    #[error("malformed chunk")]
    BadChunk,
    /// The connection closed before the body was complete.
    #[error("body ended early")]
    Incomplete,
}

impl Http1Error {
    /// The status a proxy answers with when a client's request has this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::BadVersion => 505,
            Self::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

/// A parsed request head. `target` is the request-target exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, a token.
    pub method: String,
    /// The request-target: origin-form, absolute-form, authority-form or `*`.
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The fields, in order, with the sender's case.
    pub headers: Headers,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The status code, three digits, at least 100.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The fields, in order, with the sender's case.
    pub headers: Headers,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, up to the last chunk and its trailer section.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// `tchar` of RFC 9110 section 5.6.2: the bytes of a token (method, field name, coding).
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A `tchar` that is no uppercase letter: the bytes of a field name as HTTP/2 spells it (RFC
/// 9113 section 8.2.1).
pub(crate) fn is_lowercase_tchar(b: u8) -> bool {
    is_tchar(b) && !b.is_ascii_uppercase()
}

/// The bytes of `s` within optional whitespace (SP and HTAB).
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(Http1Error::HeadTooLarge { limit: 1 }.status(), 431);
        assert_eq!(Http1Error::TooManyHeaders { limit: 1 }.status(), 431);
        assert_eq!(Http1Error::BadVersion.status(), 505);
        assert_eq!(Http1Error::UnsupportedTransferEncoding.status(), 501);
        for e in [
            Http1Error::BadRequestLine,
            Http1Error::BadStatusLine,
            Http1Error::BadHeader,
            Http1Error::BadHeaderValue,
            Http1Error::ObsFold,
            Http1Error::LengthAndChunked,
            Http1Error::ConflictingLength,
            Http1Error::BadLength,
            Http1Error::BadTransferEncoding,
            Http1Error::BadChunkSize,
            Http1Error::BadChunk,
            Http1Error::Incomplete,
        ] {
            assert_eq!(e.status(), 400, "{e:?}");
        }
    }

    #[test]
    fn messages_are_lower_case_without_period() {
        for e in [Http1Error::BadVersion, Http1Error::HeadTooLarge { limit: 7 }, Http1Error::Incomplete] {
            let m = e.to_string();
            assert!(!m.ends_with('.'), "{m}");
            assert!(!m.starts_with(|c: char| c.is_ascii_uppercase()), "{m}");
        }
        assert_eq!(Http1Error::HeadTooLarge { limit: 7 }.to_string(), "header section larger than 7 bytes");
    }

    #[test]
    fn ows_trimming() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }

    #[test]
    fn tokens() {
        assert!(b"Content-Length".iter().all(|&b| is_tchar(b)));
        for b in *b" :\t\r\n\"(),/;<=>?@[\\]{}\x7f\x80" {
            assert!(!is_tchar(b), "{b:#x}");
        }
    }

    #[test]
    fn tchar_is_the_rfc_set() {
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b), "{b:#x}");
            let lowercase = b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_lowercase_tchar(b), lowercase, "{b:#x}");
        }
    }
}
