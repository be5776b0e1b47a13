//! The field section of a head or a trailer: parsed into headers that share the section's
//! memory, within the field count limit, the usual names made static, and the first bad line
//! named by the error it earns.

use bytes::Bytes;

use super::super::{is_tchar, Http1Error, Limits};
use crate::headers::Headers;

/// Field slots [`parse_fields`] keeps on the stack; a section with more takes them from the heap.
const STACK_SLOTS: usize = 32;
/// Fields a parsed section has room for beyond its own, without growing.
const ROOM_TO_ADD: usize = 4;

/// Parse the field lines in `section[at..]`, which ends with the empty line, into headers that
/// share `section`'s memory. Also reads trailer sections.
pub(crate) fn parse_fields(section: &Bytes, at: usize, limits: &Limits) -> Result<Headers, Http1Error> {
    let raw = section.get(at..).unwrap_or_default();
    // Slots on the stack for the usual few fields: this runs for every message. Only a section
    // with more is counted (every line ends with LF and the last one is the empty line), to
    // size its slots on the heap exactly.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_SLOTS];
    let mut on_heap = Vec::new();
    let parsed = match httparse::parse_headers(raw, &mut on_stack) {
        Err(httparse::Error::TooManyHeaders) => {
            let count = memchr::memchr_iter(b'\n', raw).count().saturating_sub(1);
            if count > limits.max_headers {
                return Err(Http1Error::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            on_heap.resize(count, httparse::EMPTY_HEADER);
            httparse::parse_headers(raw, &mut on_heap)
        }
        parsed => parsed,
    };
    match parsed {
        Ok(httparse::Status::Complete((_, fields))) if fields.len() > limits.max_headers => {
            Err(Http1Error::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Ok(httparse::Status::Complete((len, fields))) if len == raw.len() => {
            // Room for the few fields a proxy adds (`Via`, the forwarded fields).
            let mut kept = Vec::with_capacity(fields.len() + ROOM_TO_ADD);
            for f in fields {
                // httparse's names and values borrow from `raw`, which lies within `section`, so
                // `slice_ref` cannot fail its bounds assertion.
                let name =
                    known_name(f.name).unwrap_or_else(|| section.slice_ref(f.name.as_bytes()));
                kept.push((name, section.slice_ref(f.value)));
            }
            Ok(Headers::from_fields(kept))
        }
        // `raw` ends at its first empty line, so httparse cannot stop short of it or want more.
        Ok(_) => Err(field_error(raw).unwrap_or(Http1Error::BadHeader)),
        // httparse names the kind of fault; find the line to tell folding from a bad name.
        Err(e) => Err(field_error(raw).unwrap_or(match e {
            httparse::Error::HeaderValue => Http1Error::BadHeaderValue,
            httparse::Error::TooManyHeaders => Http1Error::TooManyHeaders { limit: limits.max_headers },
            _ => Http1Error::BadHeader,
        })),
    }
}

/// `name` as a static copy if it is one of the usual names in one of their usual spellings:
/// a copy of it then costs nothing to make, share or drop, where one that shares the section
/// counts references. Any other spelling is kept as the peer wrote it.
fn known_name(name: &str) -> Option<Bytes> {
    let known: &'static str = match name {
        "Host" => "Host",
        "host" => "host",
        "User-Agent" => "User-Agent",
        "user-agent" => "user-agent",
        "Accept" => "Accept",
        "accept" => "accept",
        "Accept-Encoding" => "Accept-Encoding",
        "accept-encoding" => "accept-encoding",
        "Accept-Language" => "Accept-Language",
        "accept-language" => "accept-language",
        "Accept-Ranges" => "Accept-Ranges",
        "accept-ranges" => "accept-ranges",
        "Authorization" => "Authorization",
        "authorization" => "authorization",
        "Cache-Control" => "Cache-Control",
        "cache-control" => "cache-control",
        "Connection" => "Connection",
        "connection" => "connection",
        "Content-Length" => "Content-Length",
        "content-length" => "content-length",
        "Content-Type" => "Content-Type",
        "content-type" => "content-type",
        "Content-Encoding" => "Content-Encoding",
        "content-encoding" => "content-encoding",
        "Cookie" => "Cookie",
        "cookie" => "cookie",
        "Date" => "Date",
        "date" => "date",
        "ETag" => "ETag",
        "Etag" => "Etag",
        "etag" => "etag",
        "Expires" => "Expires",
        "expires" => "expires",
        "Keep-Alive" => "Keep-Alive",
        "keep-alive" => "keep-alive",
        "Last-Modified" => "Last-Modified",
        "last-modified" => "last-modified",
        "Location" => "Location",
        "location" => "location",
        "Referer" => "Referer",
        "referer" => "referer",
        "Server" => "Server",
        "server" => "server",
        "Set-Cookie" => "Set-Cookie",
        "set-cookie" => "set-cookie",
        "Transfer-Encoding" => "Transfer-Encoding",
        "transfer-encoding" => "transfer-encoding",
        "Vary" => "Vary",
        "vary" => "vary",
        "Via" => "Via",
        "via" => "via",
        "X-Forwarded-For" => "X-Forwarded-For",
        "x-forwarded-for" => "x-forwarded-for",
        _ => return None,
    };
    Some(Bytes::from_static(known.as_bytes()))
}

/// The specific fault of the first bad line in a field section, by our own reading: httparse
/// reports obs-fold as a bad name and does not say which line failed.
fn field_error(raw: &[u8]) -> Option<Http1Error> {
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(&first) = line.first() else {
            // The empty line that ends the section.
            return None;
        };
        if first == b' ' || first == b'\t' {
            return Some(Http1Error::ObsFold);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(Http1Error::BadHeader);
        };
        // Catches whitespace before the colon too (RFC 9112 section 5.1).
        if colon == 0 || !line[..colon].iter().all(|&b| is_tchar(b)) {
            return Some(Http1Error::BadHeader);
        }
        if line[colon + 1..].iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Some(Http1Error::BadHeaderValue);
        }
    }
    None
}
