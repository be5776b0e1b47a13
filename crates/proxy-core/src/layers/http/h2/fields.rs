//! The rules of RFC 9113 sections 8.2 and 8.3 that the engine does not enforce itself, checked on
//! every HTTP/2 message head and trailer section, in both directions. A message that breaks
//! one is malformed (section 8.1.1): it is answered (`400` to a client, `502` for a server)
//! and its stream reset, never forwarded.
//!
//! # What the engine already refuses, and how
//!
//! The engine (`engine/head.rs`) decodes HPACK into `http` types and refuses what they cannot
//! hold, and the malformed messages section 8.1.1 names. They are listed here so that nobody
//! checks them twice, and so the answers are known:
//!
//! - A connection error (GOAWAY `PROTOCOL_ERROR`), as the HPACK decoder cannot build the
//!   field: an empty name, an uppercase or non-token byte in a name other than `"`, a colon
//!   inside a name, an unknown pseudo-header, a value with NUL, CR, LF or another control
//!   byte, a `:method` that is not a token, a `:status` that is not three digits (`100` to
//!   `999`).
//! - A stream error (RST_STREAM `PROTOCOL_ERROR`): a connection-specific field
//!   (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, `te`
//!   other than `trailers`), a repeated pseudo-header, a pseudo-header after a regular field;
//!   in a request a missing `:method` or `:scheme`, an empty `:path`, a missing `:path` when
//!   there is an `:authority`, `:status`, `:protocol` (no extended CONNECT), `:scheme` or
//!   `:path` in a CONNECT, an `:authority` or `:path` the URI grammar refuses (spaces,
//!   controls, a relative path); in a response a missing `:status`; and a `content-length`
//!   that is not decimal, repeated with another value, nonzero on a HEADERS frame that ends
//!   the stream, or that disagrees with the DATA received.
//! - Dropped without a word, so never forwarded but not answered as malformed either:
//!   pseudo-headers at the start of a trailer section, request pseudo-headers in a response,
//!   a fragment in `:path`, a `:scheme` without an `:authority`.
//!
//! What is left is checked here: whitespace around a value, `"` in a name, an empty
//! `content-length`, a missing `:path` where there is no `:authority`, `*` for a method
//! other than OPTIONS, neither `:authority` nor `host`, a CONNECT without `:authority`, user
//! info in the authority, and a `host` that names another origin than `:authority`. The
//! field checks (names, values, connection-specific fields) are repeated, in the same single
//! pass, so that what we forward does not rest on the engine's choices.

use super::engine::{is_connection_specific, RequestHead, ResponseHead};
use crate::headers::Headers;
use crate::layers::http::authority::split_authority;
use crate::layers::http::http1::wire::is_lowercase_tchar;

/// How an HTTP/2 message breaks RFC 9113; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FieldError {
    /// Section 8.2.1: a name is a non-empty lowercase token.
    #[error("field name {0:?} is not a lowercase token")]
    Name(String),
    /// Section 8.2.1: no NUL, CR or LF in a value.
    #[error("field value of {0} contains NUL, CR or LF")]
    ValueByte(String),
    /// Section 8.2.1: no SP or HTAB at the start or the end of a value.
    #[error("field value of {0} has leading or trailing whitespace")]
    ValueWhitespace(String),
    /// Section 8.2.2.
    #[error("connection-specific field {0}")]
    ConnectionSpecific(String),
    /// Section 8.1.1: the length is a decimal number (the engine reads an empty one as 0).
    #[error("content-length is not a decimal number")]
    ContentLength,
    /// Section 8.3.1: `:path` is there for every method but CONNECT.
    #[error("missing :path")]
    MissingPath,
    /// Section 8.3.1: an http or https `:path` is absolute, or `*` for OPTIONS.
    #[error(":path {0:?} is neither absolute nor * for OPTIONS")]
    Path(String),
    /// Section 8.5: a CONNECT names its target (extended CONNECT, RFC 8441, is not enabled).
    #[error("CONNECT without :authority")]
    ConnectWithoutAuthority,
    /// Section 8.3.1: an http or https request names its origin.
    #[error("missing :authority and host")]
    MissingAuthority,
    /// Section 8.3.1: no deprecated user info in the authority.
    #[error("user info in the authority")]
    UserInfo,
    /// Section 8.3.1: `host` and `:authority` name one origin.
    #[error("host {host:?} differs from :authority {authority:?}")]
    HostMismatch { host: String, authority: String },
}

/// Check a request head from an HTTP/2 client.
pub(crate) fn check_request(head: &RequestHead) -> Result<(), FieldError> {
    check_fields(&head.fields)?;
    let authority = head.authority.as_deref().map(String::from_utf8_lossy);
    let mut hosts = head.fields.get_all("host");
    if authority.as_ref().is_some_and(|a| a.contains('@')) || head.fields.get_all("host").any(|h| h.contains(&b'@')) {
        return Err(FieldError::UserInfo);
    }
    if head.is_connect() {
        // The engine has refused `:scheme`, `:path` and `:protocol` in a CONNECT, but for an extended
        // CONNECT (RFC 8441), which has them all and is checked as other requests are.
        return match authority {
            Some(_) => Ok(()),
            None => Err(FieldError::ConnectWithoutAuthority),
        };
    }
    // The engine refuses an empty `:path`, and a missing one when there is an `:authority`.
    let Some(path) = head.path.as_deref() else { return Err(FieldError::MissingPath) };
    let options_asterisk = path == b"*" && head.method == "OPTIONS";
    if !(path.starts_with(b"/") || options_asterisk) {
        return Err(FieldError::Path(String::from_utf8_lossy(path).into_owned()));
    }
    match authority {
        Some(authority) => {
            let default_port = if head.scheme.as_deref() == Some(b"https") { 443 } else { 80 };
            for host in hosts {
                let host = std::str::from_utf8(host).unwrap_or_default();
                if !same_origin(host, &authority, default_port) {
                    return Err(FieldError::HostMismatch { host: host.to_owned(), authority: authority.into_owned() });
                }
            }
            Ok(())
        }
        None if hosts.next().is_none() => Err(FieldError::MissingAuthority),
        None => Ok(()),
    }
}

/// Check a response head (final or interim) from an HTTP/2 server. Its `:status` is three
/// digits, once, or the engine would have refused it.
pub(crate) fn check_response(head: &ResponseHead) -> Result<(), FieldError> {
    check_fields(&head.fields)
}

/// Check the fields of a head or a trailer section: one pass over each name and value, no
/// allocation unless one is bad.
pub(crate) fn check_fields(fields: &Headers) -> Result<(), FieldError> {
    for (name, value) in fields.iter() {
        let named = || String::from_utf8_lossy(name).into_owned();
        if name.is_empty() || !name.iter().copied().all(is_lowercase_tchar) {
            return Err(FieldError::Name(named()));
        }
        if let (Some(first), Some(last)) = (value.first(), value.last()) {
            if matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t') {
                return Err(FieldError::ValueWhitespace(named()));
            }
        }
        if value.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
            return Err(FieldError::ValueByte(named()));
        }
        if is_connection_specific(name) || name == b"te" && value != b"trailers" {
            return Err(FieldError::ConnectionSpecific(named()));
        }
        if name == b"content-length" && (value.is_empty() || !value.iter().all(u8::is_ascii_digit)) {
            return Err(FieldError::ContentLength);
        }
    }
    Ok(())
}

/// Whether `host` and `authority` name one origin: the same host, in any case, and the same
/// port, written or not.
fn same_origin(host: &str, authority: &str, default_port: u16) -> bool {
    host.eq_ignore_ascii_case(authority)
        || split_authority(host, Some(default_port)).is_some_and(|h| split_authority(authority, Some(default_port)) == Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, fields: &[(&str, &str)]) -> RequestHead {
        let uri: http::Uri = uri.parse().unwrap();
        let copy = |s: &str| bytes::Bytes::copy_from_slice(s.as_bytes());
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.append(copy(name), copy(value));
        }
        RequestHead {
            method: copy(method),
            scheme: uri.scheme_str().map(copy),
            authority: uri.authority().map(|a| copy(a.as_str())),
            path: (method != "CONNECT").then(|| copy(uri.path_and_query().map_or("/", |p| p.as_str()))),
            protocol: None,
            fields: headers,
        }
    }

    fn fields(pairs: &[(&'static str, &'static [u8])]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.append(*name, *value);
        }
        headers
    }

    #[test]
    fn values() {
        assert_eq!(check_fields(&fields(&[("a", b"x y"), ("b", b"x\ty"), ("c", b""), ("d", b"\xff")])), Ok(()));
        for bad in [&b" x"[..], b"x ", b"\tx", b"x\t", b" ", b"\t"] {
            assert_eq!(check_fields(&fields(&[("a", bad)])), Err(FieldError::ValueWhitespace("a".into())), "{bad:?}");
        }
        let error = check_fields(&fields(&[("test1", b"\ta\t")])).unwrap_err();
        assert_eq!(error.to_string(), "field value of test1 has leading or trailing whitespace");
    }

    #[test]
    fn names_and_framing_fields() {
        assert_eq!(check_fields(&fields(&[("a\"b", b"x")])), Err(FieldError::Name("a\"b".into())));
        assert_eq!(check_fields(&fields(&[("x-a_b.c~1", b"x"), ("te", b"trailers")])), Ok(()));
        for name in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] {
            assert!(matches!(check_fields(&fields(&[(name, b"x")])), Err(FieldError::ConnectionSpecific(_))), "{name}");
        }
        assert!(matches!(check_fields(&fields(&[("te", b"gzip")])), Err(FieldError::ConnectionSpecific(_))));
        assert_eq!(check_fields(&fields(&[("content-length", b"")])), Err(FieldError::ContentLength));
        assert_eq!(check_fields(&fields(&[("content-length", b"12")])), Ok(()));
    }

    #[test]
    fn request_control_data() {
        assert_eq!(check_request(&request("GET", "http://a.test/x", &[("host", "A.test:80")])), Ok(()));
        assert_eq!(check_request(&request("GET", "/x", &[("host", "a.test")])), Ok(()));
        assert_eq!(check_request(&request("GET", "/x", &[])), Err(FieldError::MissingAuthority));
        assert_eq!(check_request(&request("CONNECT", "a.test:443", &[])), Ok(()));
        assert_eq!(check_request(&request("GET", "http://u@a.test/", &[])), Err(FieldError::UserInfo));
        assert_eq!(
            check_request(&request("GET", "http://a.test/", &[("host", "b.test")])),
            Err(FieldError::HostMismatch { host: "b.test".into(), authority: "a.test".into() })
        );
        assert_eq!(check_request(&request("GET", "https://a.test/", &[("host", "a.test:443")])), Ok(()));
        assert!(check_request(&request("GET", "https://a.test/", &[("host", "a.test:80")])).is_err());
    }
}
