//! Writing heads and chunk framing. Names, values, methods and targets are written exactly as
//! given, always with CRLF line ends.

use bytes::BytesMut;

use crate::flow::Version;
use crate::headers::Headers;

/// The last-chunk line of a chunked body; trailer fields ([`write_fields`]) follow it.
pub const LAST_CHUNK: &[u8] = b"0\r\n";

/// `METHOD SP target SP HTTP/1.x CRLF`, the fields, and the empty line.
pub fn write_request_head(dst: &mut BytesMut, method: &str, target: &str, version: Version, headers: &Headers) {
    dst.reserve(request_head_len(method, target, headers));
    dst.extend_from_slice(method.as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(version.as_str().as_bytes());
    dst.extend_from_slice(b"\r\n");
    write_fields(dst, headers);
}

/// `HTTP/1.x SP status SP reason CRLF`, the fields, and the empty line. An empty reason keeps
/// its space (`HTTP/1.1 200 `), as RFC 9112 section 4 asks.
pub fn write_response_head(dst: &mut BytesMut, version: Version, status: u16, reason: &str, headers: &Headers) {
    dst.reserve(response_head_len(status, reason, headers));
    dst.extend_from_slice(version.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    let mut digits = [0; 5];
    dst.extend_from_slice(radix(u64::from(status), 10, &mut digits));
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(reason.as_bytes());
    dst.extend_from_slice(b"\r\n");
    write_fields(dst, headers);
}

/// The length of the head [`write_request_head`] writes: a buffer of this capacity (plus any
/// body that follows) freezes without a reallocation or a second allocation.
pub fn request_head_len(method: &str, target: &str, headers: &Headers) -> usize {
    // Two spaces, `HTTP/1.x`, CRLF.
    method.len() + target.len() + 12 + fields_len(headers)
}

/// The length of the head [`write_response_head`] writes.
pub fn response_head_len(status: u16, reason: &str, headers: &Headers) -> usize {
    let digits = status.checked_ilog10().map_or(1, |d| d as usize + 1);
    // `HTTP/1.x`, two spaces, CRLF.
    8 + digits + reason.len() + 4 + fields_len(headers)
}

/// Write trailer fields and the final blank line (after the last-chunk `0\r\n`).
pub fn write_fields(dst: &mut BytesMut, headers: &Headers) {
    dst.reserve(fields_len(headers));
    for (name, value) in headers.iter() {
        dst.extend_from_slice(name);
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// The line starting a chunk of `len` bytes: hex size and CRLF. The caller writes the data and
/// then `\r\n`. A `len` of 0 would end the body: use [`LAST_CHUNK`] for that instead.
pub fn write_chunk_header(dst: &mut BytesMut, len: usize) {
    let mut digits = [0; 16];
    dst.reserve(18);
    dst.extend_from_slice(radix(len as u64, 16, &mut digits));
    dst.extend_from_slice(b"\r\n");
}

/// Bytes [`write_fields`] produces for `headers`.
fn fields_len(headers: &Headers) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>() + 2
}

/// `n` in base `radix` (10 or 16, lower case), written at the end of `out`, which must be large
/// enough: 5 digits for a u16 in base 10, 16 for a u64 in base 16.
pub(crate) fn radix(mut n: u64, radix: u64, out: &mut [u8]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 || at == 0 {
            return &out[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::{HeadReader, Limits};
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|&(n, v)| (Bytes::from_static(n.as_bytes()), Bytes::from_static(v.as_bytes()))).collect()
    }

    #[test]
    fn request_heads() {
        let mut dst = BytesMut::new();
        let h = headers(&[("Host", "a.test"), ("x-lower", "V a l"), ("X-Empty", "")]);
        write_request_head(&mut dst, "GET", "/p?q", Version::Http11, &h);
        assert_eq!(&dst[..], b"GET /p?q HTTP/1.1\r\nHost: a.test\r\nx-lower: V a l\r\nX-Empty: \r\n\r\n");
        let mut dst = BytesMut::new();
        write_request_head(&mut dst, "CONNECT", "a.test:443", Version::Http10, &Headers::new());
        assert_eq!(&dst[..], b"CONNECT a.test:443 HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn response_heads() {
        for (version, status, reason, want) in [
            (Version::Http11, 200, "OK", &b"HTTP/1.1 200 OK\r\n\r\n"[..]),
            (Version::Http11, 200, "", b"HTTP/1.1 200 \r\n\r\n"),
            (Version::Http10, 404, "Not Found", b"HTTP/1.0 404 Not Found\r\n\r\n"),
            (Version::Http11, 100, "Continue", b"HTTP/1.1 100 Continue\r\n\r\n"),
            (Version::Http11, 999, "x", b"HTTP/1.1 999 x\r\n\r\n"),
        ] {
            let mut dst = BytesMut::new();
            write_response_head(&mut dst, version, status, reason, &Headers::new());
            assert_eq!(&dst[..], want);
        }
        let mut dst = BytesMut::from(&b"previous"[..]);
        write_response_head(&mut dst, Version::Http11, 204, "No Content", &headers(&[("Server", "s")]));
        assert_eq!(&dst[..], b"previousHTTP/1.1 204 No Content\r\nServer: s\r\n\r\n");
    }

    #[test]
    fn trailers_and_chunks() {
        let mut dst = BytesMut::new();
        write_chunk_header(&mut dst, 5);
        dst.extend_from_slice(b"hello\r\n");
        write_chunk_header(&mut dst, 0x1a2b);
        dst.extend_from_slice(LAST_CHUNK);
        write_fields(&mut dst, &headers(&[("Expires", "never")]));
        dst.extend_from_slice(LAST_CHUNK);
        write_fields(&mut dst, &Headers::new());
        assert_eq!(&dst[..], b"5\r\nhello\r\n1a2b\r\n0\r\nExpires: never\r\n\r\n0\r\n\r\n");
        let mut dst = BytesMut::new();
        write_chunk_header(&mut dst, usize::MAX);
        assert_eq!(dst.len(), usize::BITS as usize / 4 + 2);
    }

    #[test]
    fn radixes() {
        let mut out = [0; 16];
        assert_eq!(radix(0, 16, &mut out), b"0");
        assert_eq!(radix(u64::MAX, 16, &mut out), b"ffffffffffffffff");
        let mut out = [0; 5];
        assert_eq!(radix(u64::from(u16::MAX), 10, &mut out), b"65535");
        assert_eq!(radix(7, 10, &mut out), b"7");
    }

    proptest! {
        #[test]
        fn heads_read_back(
            method in "[A-Z]{1,8}",
            target in "/[!-~]{0,30}",
            status in 100u16..1000,
            reason in "([!-~]([ -~]{0,20}[!-~])?)?",
            fields in proptest::collection::vec(("[A-Za-z0-9-]{1,12}", "([!-~]([ -~\t]{0,20}[!-~])?)?"), 0..10),
        ) {
            let h: Headers = fields.into_iter().collect();
            let limits = Limits { max_head_bytes: 4096, max_headers: 16 };

            let mut buf = BytesMut::new();
            write_request_head(&mut buf, &method, &target, Version::Http11, &h);
            let len = buf.len();
            let head = HeadReader::new().read_request(&mut buf, &limits).unwrap().unwrap();
            prop_assert_eq!(len, fields_len(&h) + method.len() + target.len() + 12);
            prop_assert_eq!((head.method, head.target, head.version), (method, target, Version::Http11));
            prop_assert_eq!(&head.headers, &h);

            let mut buf = BytesMut::new();
            write_response_head(&mut buf, Version::Http10, status, &reason, &h);
            let head = HeadReader::new().read_response(&mut buf, &limits).unwrap().unwrap();
            prop_assert_eq!((head.version, head.status, head.reason), (Version::Http10, status, reason));
            prop_assert_eq!(head.headers, h);
        }

        #[test]
        fn chunk_headers_are_hex(len in any::<usize>()) {
            let mut dst = BytesMut::new();
            write_chunk_header(&mut dst, len);
            let want = format!("{len:x}\r\n");
            prop_assert_eq!(&dst[..], want.as_bytes());
        }
    }
}
