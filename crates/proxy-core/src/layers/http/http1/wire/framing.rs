//! How long a body is: RFC 9112 section 6.3, strictly for requests.

use super::{is_tchar, trim_ows, Framing, Http1Error, RequestHead, ResponseHead};
use crate::flow::Version;
use crate::headers::Headers;

/// Body framing of a request (RFC 9112 section 6.3, strict).
///
/// A request is framed by exactly `Transfer-Encoding: chunked` (HTTP/1.1 only) or by
/// `Content-Length`, never by both: everything else that an intermediary could read two ways is
/// an error. Equal repeated lengths (`5, 5`) are accepted as one.
///
/// Transfer codings whose last element is not a single `chunked` make the length unknowable:
/// [`Http1Error::BadTransferEncoding`] (400, RFC 9112 section 6.1). Other codings before a
/// final `chunked` (`gzip, chunked`) are well-framed but not something the proxy forwards:
/// [`Http1Error::UnsupportedTransferEncoding`] (501, as nginx answers).
pub fn request_framing(head: &RequestHead) -> Result<Framing, Http1Error> {
    let h = &head.headers;
    let te = h.contains("transfer-encoding");
    let cl = h.contains("content-length");
    if te && cl {
        return Err(Http1Error::LengthAndChunked);
    }
    if te {
        // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        if head.version == Version::Http10 {
            return Err(Http1Error::BadTransferEncoding);
        }
        return request_codings(h);
    }
    if cl {
        return content_length(h).map(Framing::Length);
    }
    Ok(Framing::Empty)
}

/// The framing a request's `Transfer-Encoding` fields give: chunked only if `chunked` is the
/// one and final coding.
fn request_codings(h: &Headers) -> Result<Framing, Http1Error> {
    let mut last: Option<&[u8]> = None;
    // Whether every coding before the last is a token other than `chunked`.
    let mut others_valid = true;
    let mut others = false;
    for coding in codings(h) {
        if let Some(prev) = last {
            others = true;
            let token = !prev.is_empty() && prev.iter().all(|&b| is_tchar(b));
            others_valid &= token && !prev.eq_ignore_ascii_case(b"chunked");
        }
        last = Some(coding);
    }
    match last {
        Some(c) if c.eq_ignore_ascii_case(b"chunked") => match (others, others_valid) {
            (false, _) => Ok(Framing::Chunked),
            (true, true) => Err(Http1Error::UnsupportedTransferEncoding),
            (true, false) => Err(Http1Error::BadTransferEncoding),
        },
        _ => Err(Http1Error::BadTransferEncoding),
    }
}

/// Body framing of a response to a request with `method`.
///
/// Responses to `HEAD`, 1xx, 204, 304 and 2xx to `CONNECT` have no body. Otherwise a
/// `Transfer-Encoding` whose final coding is chunked means [`Framing::Chunked`] (earlier codings
/// stay in the body, passed through), any other `Transfer-Encoding` reads until close, and it
/// overrides `Content-Length`, which the caller removes. An HTTP/1.0 response with
/// `Transfer-Encoding` has faulty framing (RFC 9112 section 6.1): it is read until close, so
/// the connection cannot be reused with a misread body left in it.
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, Http1Error> {
    let status = head.status;
    // Method names are matched without case, as the rest of the proxy does for CONNECT.
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    if method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status) {
        return Ok(Framing::Empty);
    }
    let h = &head.headers;
    if h.contains("transfer-encoding") {
        if head.version == Version::Http10 {
            return Ok(Framing::UntilClose);
        }
        // Empty list elements are ignored (RFC 9110 section 5.6.1).
        let last = codings(h).filter(|c| !c.is_empty()).last();
        return Ok(match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    if h.contains("content-length") {
        return content_length(h).map(Framing::Length);
    }
    Ok(Framing::UntilClose)
}

/// Every element of every Transfer-Encoding field, in order, empty ones included.
fn codings(h: &Headers) -> impl Iterator<Item = &[u8]> {
    h.get_all("transfer-encoding").flat_map(|v| v.split(|&b| b == b',')).map(trim_ows)
}

/// The one length all `Content-Length` elements agree on, for writing it back as a single
/// canonical field.
pub fn content_length(h: &Headers) -> Result<u64, Http1Error> {
    let mut len = None;
    let mut conflict = false;
    for value in h.get_all("content-length") {
        for element in value.split(|&b| b == b',') {
            let n = decimal(trim_ows(element)).ok_or(Http1Error::BadLength)?;
            match len {
                None => len = Some(n),
                Some(l) if l != n => conflict = true,
                Some(_) => {}
            }
        }
    }
    if conflict {
        return Err(Http1Error::ConflictingLength);
    }
    len.ok_or(Http1Error::BadLength)
}

/// `1*DIGIT` as a u64, if it fits.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = if b.is_ascii_digit() { u64::from(b - b'0') } else { return None };
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::{HeadReader, Limits};
    use super::*;

    fn req(version: Version, fields: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: "/".into(),
            version,
            headers: fields.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect(),
        }
    }

    fn resp(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            version: Version::Http11,
            status,
            reason: String::new(),
            headers: fields.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect(),
        }
    }

    fn framing(fields: &[(&str, &str)]) -> Result<Framing, Http1Error> {
        request_framing(&req(Version::Http11, fields))
    }

    /// Parse and frame a raw request, as the HTTP/1 layer will.
    fn raw_framing(raw: &[u8]) -> Result<Framing, Http1Error> {
        let limits = Limits { max_head_bytes: 4096, max_headers: 32 };
        let head = HeadReader::new().read_request(&mut BytesMut::from(raw), &limits)?;
        request_framing(&head.expect("complete head"))
    }

    #[test]
    fn no_body() {
        assert_eq!(framing(&[("Host", "a")]), Ok(Framing::Empty));
        assert_eq!(request_framing(&req(Version::Http10, &[])), Ok(Framing::Empty));
    }

    #[test]
    fn content_lengths() {
        for (v, want) in [
            ("0", 0),
            ("5", 5),
            ("005", 5),
            (" 5 ", 5),
            ("5, 5", 5),
            ("5,5,5", 5),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(framing(&[("Content-Length", v)]), Ok(Framing::Length(want)), "{v:?}");
        }
        assert_eq!(framing(&[("Content-Length", "5"), ("content-length", "5")]), Ok(Framing::Length(5)));
        assert_eq!(request_framing(&req(Version::Http10, &[("Content-Length", "7")])), Ok(Framing::Length(7)));
    }

    #[test]
    fn bad_content_lengths() {
        for v in [
            "", " ", "+5", "-5", "0x5", "5 5", "5;", "5,", ",5", "5,,5", "5.0", "1e3", "five", "\u{663}",
            "18446744073709551616", "99999999999999999999999",
        ] {
            assert_eq!(framing(&[("Content-Length", v)]), Err(Http1Error::BadLength), "{v:?}");
        }
        // A bad element anywhere is a bad length, even next to conflicting ones.
        assert_eq!(framing(&[("Content-Length", "5, 6, x")]), Err(Http1Error::BadLength));
    }

    #[test]
    fn conflicting_content_lengths() {
        assert_eq!(framing(&[("Content-Length", "5, 6")]), Err(Http1Error::ConflictingLength));
        assert_eq!(framing(&[("Content-Length", "5"), ("Content-Length", "6")]), Err(Http1Error::ConflictingLength));
        let three = [("Content-Length", "0"), ("Content-Length", "00, 1")];
        assert_eq!(framing(&three), Err(Http1Error::ConflictingLength));
    }

    #[test]
    fn transfer_encodings() {
        for v in ["chunked", "Chunked", "CHUNKED", " chunked\t"] {
            assert_eq!(framing(&[("Transfer-Encoding", v)]), Ok(Framing::Chunked), "{v:?}");
        }
        // `chunked` is not the one final coding: the length is unknowable, 400.
        for v in [
            "", "chunked, chunked", "chunked,", ",chunked", "identity", "xchunked", "chunkedx", "chunked;x",
            "chunked; q=1", "gzip", "chunked, gzip", "chunked, identity", "\"chunked\"", "chun ked", "gzip,,chunked",
            "\"gzip\", chunked", "gzip;q=1, chunked",
        ] {
            assert_eq!(framing(&[("Transfer-Encoding", v)]), Err(Http1Error::BadTransferEncoding), "{v:?}");
        }
        // Well framed, with codings the proxy does not forward: 501.
        for v in ["gzip, chunked", "deflate,chunked", "x-custom , gzip , chunked"] {
            assert_eq!(framing(&[("Transfer-Encoding", v)]), Err(Http1Error::UnsupportedTransferEncoding), "{v:?}");
        }
        let two = [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")];
        assert_eq!(framing(&two), Err(Http1Error::BadTransferEncoding));
        let two = [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")];
        assert_eq!(framing(&two), Err(Http1Error::BadTransferEncoding));
        let two = [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")];
        assert_eq!(framing(&two), Err(Http1Error::UnsupportedTransferEncoding));
        let old = req(Version::Http10, &[("Transfer-Encoding", "chunked")]);
        assert_eq!(request_framing(&old), Err(Http1Error::BadTransferEncoding));
    }

    #[test]
    fn length_and_chunked() {
        let both = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")];
        assert_eq!(framing(&both), Err(Http1Error::LengthAndChunked));
        let both = [("Transfer-Encoding", "chunked"), ("Content-Length", "5")];
        assert_eq!(framing(&both), Err(Http1Error::LengthAndChunked));
        let both = [("Transfer-Encoding", "xchunked"), ("Content-Length", "abc")];
        assert_eq!(framing(&both), Err(Http1Error::LengthAndChunked));
    }

    #[test]
    fn smuggling_attempts_end_to_end() {
        use Http1Error::*;
        let cases: &[(&[u8], Result<Framing, Http1Error>)] = &[
            // CL.TE and TE.CL.
            (b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", Err(LengthAndChunked)),
            (b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", Err(LengthAndChunked)),
            (b"content-length: 5\nTRANSFER-ENCODING: chunked\n", Err(LengthAndChunked)),
            (b"Transfer-Encoding: xchunked\r\n", Err(BadTransferEncoding)),
            (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", Err(BadTransferEncoding)),
            (b"Transfer-Encoding: chunked, identity\r\n", Err(BadTransferEncoding)),
            (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", Err(BadTransferEncoding)),
            (b"Transfer-Encoding:  chunked \r\n", Ok(Framing::Chunked)),
            (b"Transfer-Encoding: gzip, chunked\r\n", Err(UnsupportedTransferEncoding)),
            (b"Transfer-Encoding : chunked\r\nContent-Length: 4\r\n", Err(BadHeader)),
            (b"Transfer-Encoding:\tchunked\r\n", Ok(Framing::Chunked)),
            (b"Transfer-Encoding:\r\n chunked\r\n", Err(ObsFold)),
            (b"Transfer-Encoding: gzip\r\n\tchunked\r\n", Err(ObsFold)),
            (b"X: y\r\n Transfer-Encoding: chunked\r\n", Err(ObsFold)),
            (b"Transfer-Encoding: chunked\x00\r\n", Err(BadHeaderValue)),
            (b"Transfer-Encoding: \x0bchunked\r\n", Err(BadHeaderValue)),
            (b"Content-Length: +5\r\n", Err(BadLength)),
            (b"Content-Length: 0x5\r\n", Err(BadLength)),
            (b"Content-Length: 5, 6\r\n", Err(ConflictingLength)),
            (b"Content-Length: 5\r\nContent-Length: 6\r\n", Err(ConflictingLength)),
            (b"Content-Length: 5\r\nContent-Length: 5\r\n", Ok(Framing::Length(5))),
            (b"Content-Length: 5\r\nContent-Length : 6\r\n", Err(BadHeader)),
            (b"Content-Length: 5\x00\r\n", Err(BadHeaderValue)),
        ];
        for (fields, want) in cases {
            let raw = [&b"POST / HTTP/1.1\r\n"[..], fields, b"\r\n"].concat();
            assert_eq!(&raw_framing(&raw), want, "{}", String::from_utf8_lossy(&raw));
        }
        let old = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(raw_framing(old), Err(BadTransferEncoding));
    }

    #[test]
    fn responses_without_body() {
        let cl = [("Content-Length", "5")];
        assert_eq!(response_framing("HEAD", &resp(200, &cl)), Ok(Framing::Empty));
        for status in [100, 101, 199, 204, 304] {
            assert_eq!(response_framing("GET", &resp(status, &cl)), Ok(Framing::Empty), "{status}");
        }
        assert_eq!(response_framing("CONNECT", &resp(200, &cl)), Ok(Framing::Empty));
        assert_eq!(response_framing("connect", &resp(299, &[])), Ok(Framing::Empty));
        // A refused CONNECT has a body.
        assert_eq!(response_framing("CONNECT", &resp(407, &cl)), Ok(Framing::Length(5)));
        assert_eq!(response_framing("CONNECT", &resp(407, &[])), Ok(Framing::UntilClose));
        // Even invalid framing headers are ignored when there is no body.
        assert_eq!(response_framing("HEAD", &resp(200, &[("Content-Length", "x")])), Ok(Framing::Empty));
    }

    #[test]
    fn response_lengths() {
        assert_eq!(response_framing("GET", &resp(200, &[("Content-Length", "5")])), Ok(Framing::Length(5)));
        assert_eq!(response_framing("GET", &resp(200, &[("Content-Length", "0")])), Ok(Framing::Length(0)));
        assert_eq!(response_framing("GET", &resp(200, &[("Content-Length", "5, 5")])), Ok(Framing::Length(5)));
        assert_eq!(response_framing("GET", &resp(200, &[("Content-Length", "+5")])), Err(Http1Error::BadLength));
        let two = [("Content-Length", "5, 6")];
        assert_eq!(response_framing("GET", &resp(200, &two)), Err(Http1Error::ConflictingLength));
        assert_eq!(response_framing("GET", &resp(200, &[])), Ok(Framing::UntilClose));
        assert_eq!(response_framing("POST", &resp(500, &[("Server", "x")])), Ok(Framing::UntilClose));
    }

    #[test]
    fn response_transfer_encodings() {
        for (v, want) in [
            ("chunked", Framing::Chunked),
            ("gzip, chunked", Framing::Chunked),
            ("gzip,CHUNKED ", Framing::Chunked),
            ("chunked, ", Framing::Chunked),
            ("gzip", Framing::UntilClose),
            ("chunked, gzip", Framing::UntilClose),
            ("xchunked", Framing::UntilClose),
            ("chunked;x", Framing::UntilClose),
            ("", Framing::UntilClose),
        ] {
            assert_eq!(response_framing("GET", &resp(200, &[("Transfer-Encoding", v)])), Ok(want), "{v:?}");
        }
        let two = [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")];
        assert_eq!(response_framing("GET", &resp(200, &two)), Ok(Framing::Chunked));
        // Transfer-Encoding wins over Content-Length, valid or not.
        let both = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")];
        assert_eq!(response_framing("GET", &resp(200, &both)), Ok(Framing::Chunked));
        let both = [("Transfer-Encoding", "gzip"), ("Content-Length", "x")];
        assert_eq!(response_framing("GET", &resp(200, &both)), Ok(Framing::UntilClose));
        // HTTP/1.0 with Transfer-Encoding: faulty framing, read until close.
        let mut old = resp(200, &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")]);
        old.version = Version::Http10;
        assert_eq!(response_framing("GET", &old), Ok(Framing::UntilClose));
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"1 "), None);
    }
}
