//! Reading message bodies: fixed length, chunked, or until the connection closes.

use bytes::{Buf, Bytes, BytesMut};

use super::head::parse_fields;
use super::{is_tchar, Framing, Http1Error, Limits};
use crate::headers::Headers;

/// Longest chunk-size line we accept, extensions and CRLF included.
const MAX_CHUNK_LINE: usize = 4096;
/// Most hex digits in a chunk size: sixteen always fit in a u64.
const MAX_CHUNK_DIGITS: usize = 16;

/// One step of reading a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// The next bytes of the body, framing removed.
    Data(Bytes),
    /// The body is complete; chunked bodies may end with trailer fields.
    End {
        /// The trailer section of a chunked body, if it had fields.
        trailers: Option<Headers>,
    },
}

/// Reads a body out of a receive buffer, incrementally.
///
/// Data is handed out as soon as it arrives, split off the buffer without copying; a large
/// chunk arriving in pieces yields one [`BodyEvent::Data`] per piece. Chunk framing (sizes,
/// extensions, CRLFs) is consumed and dropped. Bytes after the end of the body stay in the
/// buffer for the next message.
#[derive(Debug)]
pub struct BodyReader {
    state: State,
    limits: Limits,
}

impl BodyReader {
    /// A reader of one body framed as `framing`, its trailer section held to `limits`.
    pub fn new(framing: Framing, limits: Limits) -> Self {
        let state = match framing {
            Framing::Empty => State::Length { remaining: 0 },
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::ChunkSize { scanned: 0 },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state, limits }
    }

    /// Take the next piece of body out of `buf`. `Ok(None)`: more bytes needed.
    ///
    /// Between calls the caller may only append to `buf`. Once the body has ended this returns
    /// `Ok(None)` and leaves `buf` alone.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Http1Error> {
        loop {
            match self.state {
                State::Length { remaining: 0 } => {
                    self.state = State::Done;
                    return Ok(Some(BodyEvent::End { trailers: None }));
                }
                State::Length { remaining } => {
                    let Some(data) = take(buf, remaining) else {
                        return Ok(None);
                    };
                    self.state = State::Length { remaining: remaining - data.len() as u64 };
                    return Ok(Some(BodyEvent::Data(data)));
                }
                State::UntilClose => return Ok(take(buf, u64::MAX).map(BodyEvent::Data)),
                State::ChunkSize { scanned } => {
                    let end = buf.len().min(MAX_CHUNK_LINE);
                    let from = scanned.min(end);
                    let Some(lf) = buf[from..end].iter().position(|&b| b == b'\n') else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(Http1Error::BadChunk);
                        }
                        self.state = State::ChunkSize { scanned: end };
                        return Ok(None);
                    };
                    let lf = from + lf;
                    let size = chunk_size(&buf[..lf])?;
                    buf.advance(lf + 1);
                    self.state = match size {
                        0 => State::Trailers { line: 0, scanned: 0 },
                        n => State::ChunkData { remaining: n },
                    };
                }
                State::ChunkData { remaining } => {
                    let Some(data) = take(buf, remaining) else {
                        return Ok(None);
                    };
                    let remaining = remaining - data.len() as u64;
                    self.state = match remaining {
                        0 => State::ChunkEnd,
                        n => State::ChunkData { remaining: n },
                    };
                    return Ok(Some(BodyEvent::Data(data)));
                }
                State::ChunkEnd => match &buf[..] {
                    [b'\r', b'\n', ..] => {
                        buf.advance(2);
                        self.state = State::ChunkSize { scanned: 0 };
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(Http1Error::BadChunk),
                },
                State::Trailers { line, scanned } => return self.read_trailers(buf, line, scanned),
                State::Done => return Ok(None),
            }
        }
    }

    /// The connection closed: end an `UntilClose` body, or fail an incomplete one.
    pub fn read_eof(&mut self) -> Result<BodyEvent, Http1Error> {
        match self.state {
            State::UntilClose | State::Length { remaining: 0 } | State::Done => {
                self.state = State::Done;
                Ok(BodyEvent::End { trailers: None })
            }
            _ => Err(Http1Error::Incomplete),
        }
    }

    /// Bytes still to come of a body framed by `Content-Length`; `None` for other framings.
    pub fn remaining_length(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// `n` bytes of a `Content-Length` body went by without passing through the reader (the
    /// driver forwarded them). The next `read` ends the body once none remain.
    pub fn skip(&mut self, n: u64) {
        if let State::Length { remaining } = &mut self.state {
            *remaining = remaining.saturating_sub(n);
        }
    }

    /// Whether the end of the body has been returned.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The trailer section: CRLF-terminated field lines up to an empty line.
    fn read_trailers(
        &mut self,
        buf: &mut BytesMut,
        mut line: usize,
        scanned: usize,
    ) -> Result<Option<BodyEvent>, Http1Error> {
        let limit = self.limits.max_head_bytes;
        let end = buf.len().min(limit);
        line = line.min(end);
        let mut at = scanned.clamp(line, end);
        while let Some(i) = buf[at..end].iter().position(|&b| b == b'\n') {
            let lf = at + i;
            // `lf > line` makes `lf - 1` a byte of this line.
            if lf == line || buf[lf - 1] != b'\r' {
                return Err(Http1Error::BadChunk);
            }
            if lf == line + 1 {
                let section = buf.split_to(lf + 1).freeze();
                let trailers = match section.len() {
                    2 => None,
                    _ => Some(parse_fields(&section, 0, &self.limits)?),
                };
                self.state = State::Done;
                return Ok(Some(BodyEvent::End { trailers }));
            }
            line = lf + 1;
            at = lf + 1;
        }
        if buf.len() > limit {
            return Err(Http1Error::HeadTooLarge { limit });
        }
        self.state = State::Trailers { line, scanned: end };
        Ok(None)
    }
}

/// Where a body reader is; each variant keeps how far its search has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A fixed-length body with `remaining` bytes to go; at zero, `End` is next.
    Length { remaining: u64 },
    UntilClose,
    /// A chunk-size line, of which `scanned` bytes hold no LF.
    ChunkSize { scanned: usize },
    ChunkData { remaining: u64 },
    /// The CRLF after chunk data.
    ChunkEnd,
    /// The trailer section after the last chunk: the current line starts at `line`, and up to
    /// `scanned` there is no LF.
    Trailers { line: usize, scanned: usize },
    Done,
}

/// Split off up to `max` bytes, or `None` if `buf` is empty.
fn take(buf: &mut BytesMut, max: u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    // At most `buf.len()`, so the cast back to usize is exact.
    let n = max.min(buf.len() as u64) as usize;
    Some(buf.split_to(n).freeze())
}

/// Parse a chunk-size line (without its LF): `1*16HEXDIG [chunk-ext] CR`.
fn chunk_size(line: &[u8]) -> Result<u64, Http1Error> {
    let line = line.strip_suffix(b"\r").ok_or(Http1Error::BadChunk)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size, ext) = line.split_at(digits);
    // The size must end where whitespace, an extension or the line end begins: `0x5`, `5g`,
    // `+5` and ` 5` are no sizes at all.
    if size.is_empty() || size.len() > MAX_CHUNK_DIGITS || !matches!(ext.first(), None | Some(b' ' | b'\t' | b';')) {
        return Err(Http1Error::BadChunkSize);
    }
    if !chunk_ext_ok(ext) {
        return Err(Http1Error::BadChunk);
    }
    // At most 16 hex digits, so no shift overflows.
    Ok(size.iter().fold(0u64, |n, &b| n << 4 | hex_value(b)))
}

fn hex_value(b: u8) -> u64 {
    u64::from(match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    })
}

/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`, RFC 9112 section 7.1.1.
fn chunk_ext_ok(mut s: &[u8]) -> bool {
    while !s.is_empty() {
        let Some(rest) = skip_bws(s).strip_prefix(b";") else {
            return false;
        };
        s = skip_bws(rest);
        let name = token_len(s);
        if name == 0 {
            return false;
        }
        s = &s[name..];
        if let Some(rest) = skip_bws(s).strip_prefix(b"=") {
            s = skip_bws(rest);
            let value = match s.first() {
                Some(b'"') => quoted_len(s),
                _ => token_len(s),
            };
            if value == 0 {
                return false;
            }
            s = &s[value..];
        }
    }
    true
}

fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// Length of the quoted-string at the start of `s`, or 0 if there is none.
fn quoted_len(s: &[u8]) -> usize {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    loop {
        match s.get(i) {
            Some(b'"') => return i + 1,
            Some(b'\\') => match s.get(i + 1) {
                Some(&b) if text(b) => i += 2,
                _ => return 0,
            },
            Some(&b) if text(b) => i += 1,
            _ => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{write_chunk_header, write_fields, LAST_CHUNK};
    use super::*;

    const LIMITS: Limits = Limits { max_head_bytes: 1024, max_headers: 8 };

    /// Everything a reader yields from `buf` until it needs more: data joined onto `data`, and
    /// the trailers if the body ended.
    fn drain(r: &mut BodyReader, buf: &mut BytesMut, data: &mut Vec<u8>) -> Result<Option<Trailers>, Http1Error> {
        while let Some(event) = r.read(buf)? {
            match event {
                BodyEvent::Data(d) => {
                    assert!(!d.is_empty(), "empty data");
                    data.extend_from_slice(&d);
                }
                BodyEvent::End { trailers } => return Ok(Some(trailers)),
            }
        }
        Ok(None)
    }

    /// A whole body's data, its trailers, and what followed it in the buffer.
    type Read = (Vec<u8>, Option<Headers>, Vec<u8>);
    type Trailers = Option<Headers>;

    /// Read a whole body out of `raw`.
    fn read_all(framing: Framing, raw: &[u8]) -> Result<Read, Http1Error> {
        let mut r = BodyReader::new(framing, LIMITS);
        let mut buf = BytesMut::from(raw);
        let mut data = Vec::new();
        match drain(&mut r, &mut buf, &mut data)? {
            Some(trailers) => Ok((data, trailers, buf.to_vec())),
            None => Err(Http1Error::Incomplete),
        }
    }

    fn chunked(raw: &[u8]) -> Result<Read, Http1Error> {
        read_all(Framing::Chunked, raw)
    }

    fn chunked_err(raw: &[u8]) -> Http1Error {
        chunked(raw).expect_err(&String::from_utf8_lossy(raw))
    }

    #[test]
    fn fixed_length() {
        let mut r = BodyReader::new(Framing::Length(10), LIMITS);
        let mut buf = BytesMut::from(&b"hello"[..]);
        assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::Data(Bytes::from_static(b"hello")))));
        assert_eq!(r.read(&mut buf), Ok(None));
        assert_eq!(r.read_eof(), Err(Http1Error::Incomplete));
        buf.extend_from_slice(b"worldGET / HTTP/1.1\r\n");
        assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::Data(Bytes::from_static(b"world")))));
        assert!(!r.is_done());
        assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::End { trailers: None })));
        assert!(r.is_done());
        assert_eq!(r.read(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        assert_eq!(r.read_eof(), Ok(BodyEvent::End { trailers: None }));
    }

    #[test]
    fn data_shares_the_buffer() {
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        let start = buf.as_ptr();
        let mut r = BodyReader::new(Framing::Length(3), LIMITS);
        let Ok(Some(BodyEvent::Data(d))) = r.read(&mut buf) else { panic!("no data") };
        assert_eq!(d.as_ptr(), start);
    }

    #[test]
    fn empty_bodies_end_at_once() {
        for framing in [Framing::Empty, Framing::Length(0)] {
            let mut r = BodyReader::new(framing, LIMITS);
            let mut buf = BytesMut::from(&b"next"[..]);
            assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::End { trailers: None })));
            assert_eq!(r.read(&mut buf), Ok(None));
            assert_eq!(&buf[..], b"next");
            assert!(BodyReader::new(framing, LIMITS).read_eof().is_ok());
        }
    }

    #[test]
    fn until_close() {
        let mut r = BodyReader::new(Framing::UntilClose, LIMITS);
        let mut buf = BytesMut::new();
        assert_eq!(r.read(&mut buf), Ok(None));
        buf.extend_from_slice(b"abc");
        assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::Data(Bytes::from_static(b"abc")))));
        assert_eq!(r.read(&mut buf), Ok(None));
        assert!(!r.is_done());
        assert_eq!(r.read_eof(), Ok(BodyEvent::End { trailers: None }));
        assert!(r.is_done());
        assert_eq!(r.read_eof(), Ok(BodyEvent::End { trailers: None }));
        buf.extend_from_slice(b"late");
        assert_eq!(r.read(&mut buf), Ok(None));
    }

    #[test]
    fn simple_chunked() {
        let (data, trailers, rest) = chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers, None);
        assert_eq!(rest, b"NEXT");
        let (data, ..) = chunked(b"A\r\n0123456789\r\na\r\n0123456789\r\n000\r\n\r\n").unwrap();
        assert_eq!(data.len(), 20);
    }

    #[test]
    fn chunked_trailers() {
        let (data, trailers, rest) = chunked(b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:  1 2 \r\n\r\nNEXT").unwrap();
        assert_eq!(data, b"abc");
        let trailers = trailers.unwrap();
        let fields: Vec<_> = trailers.iter().collect();
        assert_eq!(fields, vec![(&b"Expires"[..], &b"never"[..]), (&b"X-Sum"[..], &b"1 2"[..])]);
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn bad_trailers() {
        assert_eq!(chunked_err(b"0\r\nX: a\r\n b\r\n\r\n"), Http1Error::ObsFold);
        assert_eq!(chunked_err(b"0\r\nX: a\x00\r\n\r\n"), Http1Error::BadHeaderValue);
        assert_eq!(chunked_err(b"0\r\nX : a\r\n\r\n"), Http1Error::BadHeader);
        assert_eq!(chunked_err(b"0\r\nX: a\r\r\n\r\n"), Http1Error::BadHeaderValue);
        // Bare LF in the trailer section.
        assert_eq!(chunked_err(b"0\r\n\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"0\r\nX: a\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"0\r\nX: a\r\n\n"), Http1Error::BadChunk);
        let many: Vec<u8> = [&b"0\r\n"[..], &b"X: y\r\n".repeat(9), b"\r\n"].concat();
        assert_eq!(chunked_err(&many), Http1Error::TooManyHeaders { limit: 8 });
        let large: Vec<u8> = [&b"0\r\nX: "[..], &[b'y'; 1100], b"\r\n\r\n"].concat();
        assert_eq!(chunked_err(&large), Http1Error::HeadTooLarge { limit: 1024 });

        // Too large without the end in sight.
        let mut r = BodyReader::new(Framing::Chunked, LIMITS);
        let mut buf = BytesMut::from(&b"0\r\nX: "[..]);
        buf.extend_from_slice(&[b'y'; 1020]);
        assert_eq!(r.read(&mut buf), Ok(None));
        buf.extend_from_slice(b"yyyy");
        assert_eq!(r.read(&mut buf), Err(Http1Error::HeadTooLarge { limit: 1024 }));
    }

    #[test]
    fn chunk_sizes() {
        for (size, want) in [
            ("0", 0),
            ("00", 0),
            ("1", 1),
            ("fF", 255),
            ("0000000000000010", 16),
            ("ffffffffffffffff", u64::MAX),
        ] {
            assert_eq!(chunk_size(format!("{size}\r").as_bytes()), Ok(want), "{size}");
        }
        for size in ["", "+5", "-1", "0x5", "0X5", " 5", "5g", "g", "00000000000000001", "10000000000000000", "5\r"] {
            assert_eq!(chunk_size(format!("{size}\r").as_bytes()), Err(Http1Error::BadChunkSize), "{size:?}");
        }
        assert_eq!(chunked_err(b"+5\r\nhello\r\n0\r\n\r\n"), Http1Error::BadChunkSize);
        assert_eq!(chunked_err(b"0x5\r\nhello\r\n0\r\n\r\n"), Http1Error::BadChunkSize);
        assert_eq!(chunked_err(b"-1\r\n"), Http1Error::BadChunkSize);
        assert_eq!(chunked_err(b"11111111111111111\r\n"), Http1Error::BadChunkSize);
    }

    #[test]
    fn chunk_extensions() {
        for ext in [
            ";a",
            ";a=b",
            " ;a",
            "\t; a = b ;c",
            ";a=\"\"",
            ";a=\"x y;z=\\\"w\\\"\"",
            ";name=\"\u{e9}\"",
            ";a;b;c=1",
            ";!#$%&'*+-.^_`|~=0",
        ] {
            let raw = format!("3{ext}\r\nabc\r\n0;last\r\n\r\n");
            assert_eq!(chunked(raw.as_bytes()).map(|r| r.0), Ok(b"abc".to_vec()), "{ext:?}");
        }
        for ext in [
            " ", ";", "; ", ";=b", ";a=", ";a=\"", ";a=\"x", ";a=b c", ";a b", ";a==b", " x", ";a=\"\x01\"",
            ";a=\"\\\x00\"", ";a=b;", ";a\rb", ";a=(b)",
        ] {
            let raw = format!("3{ext}\r\nabc\r\n0\r\n\r\n");
            assert_eq!(chunked(raw.as_bytes()), Err(Http1Error::BadChunk), "{ext:?}");
        }
    }

    #[test]
    fn chunk_line_ends() {
        // Bare LF after the size, after the data, after the last chunk.
        assert_eq!(chunked_err(b"3\nabc\r\n0\r\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"3;a=b\nabc\r\n0\r\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"3\r\nabc\n0\r\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"3\r\nabc\r\n0\n\r\n"), Http1Error::BadChunk);
        // Data longer than its size, or not followed by exactly CRLF.
        assert_eq!(chunked_err(b"3\r\nabcd\r\n0\r\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"3\r\nabc\r\r\n0\r\n\r\n"), Http1Error::BadChunk);
        assert_eq!(chunked_err(b"3\r\nabc0\r\n\r\n"), Http1Error::BadChunk);
        let mut r = BodyReader::new(Framing::Chunked, LIMITS);
        let mut buf = BytesMut::from(&b"3\r\nabcX"[..]);
        assert!(matches!(r.read(&mut buf), Ok(Some(BodyEvent::Data(_)))));
        assert_eq!(r.read(&mut buf), Err(Http1Error::BadChunk));
    }

    #[test]
    fn chunk_line_length() {
        // A line of exactly the limit is fine.
        let ext = format!(";a={}", "b".repeat(MAX_CHUNK_LINE - 6));
        let raw = format!("1{ext}\r\nx\r\n0\r\n\r\n");
        assert_eq!(raw.find('\n'), Some(MAX_CHUNK_LINE - 1));
        assert_eq!(chunked(raw.as_bytes()).map(|r| r.0), Ok(b"x".to_vec()));

        let mut r = BodyReader::new(Framing::Chunked, LIMITS);
        let mut buf = BytesMut::from(format!("1{ext}").as_bytes());
        buf.extend_from_slice(b"b");
        assert_eq!(r.read(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r");
        assert_eq!(buf.len(), MAX_CHUNK_LINE);
        assert_eq!(r.read(&mut buf), Err(Http1Error::BadChunk));
    }

    #[test]
    fn large_chunk_streams() {
        let mut r = BodyReader::new(Framing::Chunked, LIMITS);
        let mut buf = BytesMut::from(&b"100000\r\n"[..]);
        assert_eq!(r.read(&mut buf), Ok(None));
        let piece = vec![7u8; 4096];
        for _ in 0..256 {
            buf.extend_from_slice(&piece);
            assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::Data(Bytes::from(piece.clone())))));
            assert_eq!(r.read(&mut buf), Ok(None));
        }
        buf.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(r.read(&mut buf), Ok(Some(BodyEvent::End { trailers: None })));
    }

    #[test]
    fn eof_in_the_middle() {
        for (framing, raw) in [
            (Framing::Length(5), &b"abc"[..]),
            (Framing::Chunked, b""),
            (Framing::Chunked, b"5\r\nab"),
            (Framing::Chunked, b"5\r\nabcde"),
            (Framing::Chunked, b"5\r\nabcde\r\n0\r\n"),
            (Framing::Chunked, b"5\r\nabcde\r\n0\r\nX: y\r\n"),
        ] {
            let mut r = BodyReader::new(framing, LIMITS);
            let mut data = Vec::new();
            assert_eq!(drain(&mut r, &mut BytesMut::from(raw), &mut data), Ok(None));
            assert_eq!(r.read_eof(), Err(Http1Error::Incomplete));
            assert!(!r.is_done());
        }
    }

    const SPLIT_ME: &[u8] = b"5;ext=\"a b\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\nGET / HTTP/1.1\r\n";

    #[test]
    fn split_at_every_byte() {
        let whole = chunked(SPLIT_ME).unwrap();
        assert_eq!(whole.0, b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(whole.1.as_ref().map(Headers::len), Some(2));
        for at in 0..=SPLIT_ME.len() {
            let mut r = BodyReader::new(Framing::Chunked, LIMITS);
            let mut buf = BytesMut::from(&SPLIT_ME[..at]);
            let mut data = Vec::new();
            let first = drain(&mut r, &mut buf, &mut data).unwrap();
            buf.extend_from_slice(&SPLIT_ME[at..]);
            let trailers = match first {
                Some(t) => t,
                None => drain(&mut r, &mut buf, &mut data).unwrap().expect("complete body"),
            };
            assert_eq!((data, trailers, buf.to_vec()), whole, "split at {at}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let whole = chunked(SPLIT_ME).unwrap();
        let mut r = BodyReader::new(Framing::Chunked, LIMITS);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        for &b in SPLIT_ME {
            buf.extend_from_slice(&[b]);
            if trailers.is_none() {
                trailers = drain(&mut r, &mut buf, &mut data).unwrap();
            }
        }
        assert_eq!((data, trailers.unwrap(), buf.to_vec()), whole);
    }

    /// A chunked encoding of `data` cut into `sizes`, with `trailers`.
    fn encode(data: &[u8], sizes: &[usize], ext: &str, trailers: &Headers) -> Vec<u8> {
        let mut out = BytesMut::new();
        let mut rest = data;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = sizes.next().map_or(rest.len(), |&s| s.clamp(1, rest.len()));
            let mut head = BytesMut::new();
            write_chunk_header(&mut head, n);
            // Put the extension between the size and its CRLF.
            out.extend_from_slice(&head[..head.len() - 2]);
            out.extend_from_slice(ext.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(LAST_CHUNK);
        write_fields(&mut out, trailers);
        out.to_vec()
    }

    fn arb_trailers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[!-~]([ -~]{0,10}[!-~])?"), 0..4)
            .prop_map(|f| f.into_iter().collect())
    }

    proptest! {
        #[test]
        fn chunked_in_pieces(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            ext in prop::sample::select(vec!["", ";a", " ; a=b", ";q=\"x\\\"y\"\t;z"]),
            trailers in arb_trailers(),
            cuts in proptest::collection::vec(any::<usize>(), 0..32),
        ) {
            let mut raw = encode(&data, &sizes, ext, &trailers);
            raw.extend_from_slice(b"NEXT");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
            cuts.push(raw.len());
            cuts.sort_unstable();

            let mut r = BodyReader::new(Framing::Chunked, LIMITS);
            let mut buf = BytesMut::new();
            let (mut got, mut end, mut at) = (Vec::new(), None, 0);
            for cut in cuts {
                buf.extend_from_slice(&raw[at..cut]);
                at = cut;
                if end.is_none() {
                    end = drain(&mut r, &mut buf, &mut got).unwrap();
                }
            }
            let want_trailers = if trailers.is_empty() { None } else { Some(trailers) };
            prop_assert_eq!(got, data);
            prop_assert_eq!(end, Some(want_trailers));
            prop_assert_eq!(&buf[..], b"NEXT");
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            framing in prop::sample::select(vec![Framing::Chunked, Framing::Length(100), Framing::UntilClose]),
            data in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            check_any_body(framing, &data, &cuts);
        }

        #[test]
        fn near_miss_chunks_never_panic(
            data in proptest::collection::vec(
                prop::sample::select(b"0123456789abcdefABxX+- \t;=\"\\\r\n\r\n:\x00".to_vec()), 0..256),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            check_any_body(Framing::Chunked, &data, &cuts);
        }
    }

    /// Feed `data` in pieces: no panic, no empty data, never more data out than in.
    fn check_any_body(framing: Framing, data: &[u8], cuts: &[usize]) {
        let limits = Limits { max_head_bytes: 64, max_headers: 4 };
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut r = BodyReader::new(framing, limits);
        let (mut buf, mut out, mut at) = (BytesMut::new(), Vec::new(), 0);
        for cut in cuts {
            buf.extend_from_slice(&data[at..cut]);
            at = cut;
            match drain(&mut r, &mut buf, &mut out) {
                Ok(None) => {}
                _ => break,
            }
        }
        assert!(out.len() <= data.len());
        let _ = r.read_eof();
    }
}
