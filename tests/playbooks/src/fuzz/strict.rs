//! A strict HTTP/1.1 reader of its own for what the proxy writes, shared with nothing in
//! proxy-core: the fuzz targets' oracle for "every message leaves in one canonical framing".
//!
//! It accepts only what the proxy promises to write: CRLF line ends; a start line with single
//! spaces and version `HTTP/1.1`; field lines `name: value` with a token name and a value
//! without controls (other than HTAB) or surrounding whitespace; at most one framing field,
//! either one decimal `Content-Length` without leading zeros or one `Transfer-Encoding:
//! chunked`; chunk lines of bare lower-case hex without leading zeros; and, for requests,
//! exactly one `Host`. Anything else is a message some other parser might frame differently.

/// A message read whole, or as much of it as has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Start line and field lines up to and including the empty line, exactly as sent.
    pub head: Vec<u8>,
    pub start: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The content, de-chunked.
    pub body: Vec<u8>,
    /// Trailer field lines of a chunked body, each with its CRLF.
    pub trailers: Vec<u8>,
    pub chunked: bool,
}

impl Message {
    /// The first field named `name`, ignoring case.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| &v[..])
    }

    /// Whether a comma-separated field `name` lists `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).any(|(_, v)| {
            v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }

    /// The status code of a response.
    pub fn status(&self) -> u16 {
        self.start.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// The outcome of reading one message from the start of a buffer.
#[derive(Debug)]
pub enum Step {
    /// A complete message, and how many bytes it took.
    Done(Message, usize),
    /// More bytes are needed.
    More,
    /// Not canonical.
    Broken(String),
}

/// How a response body is delimited, decided from the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Read one request from the start of `buf`.
pub fn request(buf: &[u8]) -> Step {
    let (head, start, fields, at) = match head(buf) {
        Ok(Some(parts)) => parts,
        Ok(None) => return Step::More,
        Err(e) => return Step::Broken(e),
    };
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Broken(format!("request line {start:?}"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) || version != "HTTP/1.1" {
        return Step::Broken(format!("request line {start:?}"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Step::Broken(format!("request target {target:?}"));
    }
    let hosts: Vec<&[u8]> =
        fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"host")).map(|(_, v)| &v[..]).collect();
    let connect = method.eq_ignore_ascii_case("CONNECT");
    match hosts.as_slice() {
        [host] if !host.is_empty() => {}
        [] if connect => {}
        _ => return Step::Broken(format!("host fields {hosts:?}")),
    }
    let body = match framing(&fields) {
        Ok(Some(body)) => body,
        Ok(None) => Body::None,
        Err(e) => return Step::Broken(e),
    };
    message(buf, head, start, fields, at, body)
}

/// Read one response to a `method` request from the start of `buf`. A response that ends
/// when the connection does is `More` until `closed`.
pub fn response(buf: &[u8], method: &str, closed: bool) -> Step {
    let (head, start, fields, at) = match head(buf) {
        Ok(Some(parts)) => parts,
        Ok(None) => return Step::More,
        Err(e) => return Step::Broken(e),
    };
    let b = start.as_bytes();
    let shaped = b.len() >= 13
        && b.starts_with(b"HTTP/1.1 ")
        && b[9..12].iter().all(u8::is_ascii_digit)
        && b[12] == b' '
        && !b[13..].iter().any(|&c| (c < b' ' && c != b'\t') || c == 0x7f);
    if !shaped {
        return Step::Broken(format!("status line {start:?}"));
    }
    let status: u16 = start[9..12].parse().unwrap_or(0);
    let framed = match framing(&fields) {
        Ok(framed) => framed,
        Err(e) => return Step::Broken(e),
    };
    let no_body = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status));
    let body = match framed {
        _ if no_body => Body::None,
        Some(body) => body,
        None => {
            // Only the end of the connection can end such a body; it must say so.
            let closing =
                fields.iter().any(|(n, v)| n.eq_ignore_ascii_case(b"connection") && v.eq_ignore_ascii_case(b"close"));
            if !closing {
                return Step::Broken(format!("{start:?} has no framing on a connection kept open"));
            }
            if !closed {
                return Step::More;
            }
            Body::UntilClose
        }
    };
    if (status == 204 || (100..200).contains(&status)) && framed.is_some() {
        return Step::Broken(format!("{start:?} with a framing field"));
    }
    message(buf, head, start, fields, at, body)
}

type Head = (Vec<u8>, String, Vec<(Vec<u8>, Vec<u8>)>, usize);

/// The head at the start of `buf`: its bytes, start line, fields, and where it ends.
fn head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut lines = Vec::new();
    let mut at = 0;
    loop {
        let Some(lf) = buf[at..].iter().position(|&b| b == b'\n').map(|i| at + i) else {
            return match buf[at..].iter().position(|&b| b == b'\r') {
                Some(i) if at + i + 1 < buf.len() => Err("bare CR in a head".into()),
                _ => Ok(None),
            };
        };
        if lf == at || buf[lf - 1] != b'\r' {
            return Err(format!("bare LF after {:?}", String::from_utf8_lossy(&buf[at..lf])));
        }
        let line = &buf[at..lf - 1];
        at = lf + 1;
        if line.contains(&b'\r') {
            return Err("bare CR in a head".into());
        }
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let Some((start, rest)) = lines.split_first() else {
        return Err("empty line before the start line".into());
    };
    let start = String::from_utf8(start.to_vec()).map_err(|_| "start line is not UTF-8".to_string())?;
    let fields = rest.iter().map(|l| field(l)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some((buf[..at].to_vec(), start, fields, at)))
}

/// `name: value`, exactly as the proxy writes a field line.
fn field(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let bad = || format!("field line {:?}", String::from_utf8_lossy(line));
    let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let (name, rest) = line.split_at(colon);
    let value = rest.strip_prefix(b": ").ok_or_else(bad)?;
    let control = |b: &u8| (*b < b' ' && *b != b'\t') || *b == 0x7f;
    let padded = value.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        || value.last().is_some_and(|b| matches!(b, b' ' | b'\t'));
    if name.is_empty() || !name.iter().copied().all(is_tchar) || value.iter().any(control) || padded {
        return Err(bad());
    }
    Ok((name.to_vec(), value.to_vec()))
}

/// The framing the fields give, if any; an error unless it is one canonical field.
fn framing(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<Body>, String> {
    let named = |name: &str| -> Vec<&[u8]> {
        fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| &v[..]).collect()
    };
    match (named("content-length").as_slice(), named("transfer-encoding").as_slice()) {
        ([], []) => Ok(None),
        ([len], []) => canonical_number(len, 10).map(|n| Some(Body::Length(n))),
        ([], [b"chunked"]) => Ok(Some(Body::Chunked)),
        (cl, te) => Err(format!(
            "framing fields content-length {:?}, transfer-encoding {:?}",
            cl.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>(),
            te.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>()
        )),
    }
}

/// Digits in `radix` (lower-case hex), without leading zeros, fitting in 64 bits.
fn canonical_number(s: &[u8], radix: u32) -> Result<u64, String> {
    let digits = s.iter().all(|&b| b.is_ascii_digit() || (radix == 16 && (b'a'..=b'f').contains(&b)));
    let canonical = !s.is_empty() && digits && (s == b"0" || s[0] != b'0');
    let text = String::from_utf8_lossy(s);
    if !canonical {
        return Err(format!("number {text:?} in base {radix}"));
    }
    u64::from_str_radix(&text, radix).map_err(|_| format!("number {text:?} too large"))
}

fn message(
    buf: &[u8],
    head: Vec<u8>,
    start: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    at: usize,
    body: Body,
) -> Step {
    let mut message = Message { head, start, fields, body: Vec::new(), trailers: Vec::new(), chunked: false };
    let rest = &buf[at..];
    let len = match body {
        Body::None => 0,
        Body::Length(n) if (rest.len() as u64) < n => return Step::More,
        Body::Length(n) => {
            // At most `rest.len()`, so the cast is exact.
            let n = n as usize;
            message.body = rest[..n].to_vec();
            n
        }
        Body::UntilClose => {
            message.body = rest.to_vec();
            rest.len()
        }
        Body::Chunked => {
            message.chunked = true;
            match chunks(rest, &mut message) {
                Ok(Some(len)) => len,
                Ok(None) => return Step::More,
                Err(e) => return Step::Broken(e),
            }
        }
    };
    Step::Done(message, at + len)
}

/// Canonical chunks and trailers into `message`; their length once complete.
fn chunks(body: &[u8], message: &mut Message) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(eol) = line_end(body, at)? else { return Ok(None) };
        let n = canonical_number(&body[at..eol], 16)?;
        at = eol + 2;
        let end = usize::try_from(n).ok().and_then(|n| at.checked_add(n)?.checked_add(2));
        let Some(n) = end.filter(|&end| end <= body.len()).map(|end| end - 2 - at) else {
            return Ok(None);
        };
        if n == 0 {
            loop {
                let Some(eol) = line_end(body, at)? else { return Ok(None) };
                if eol == at {
                    return Ok(Some(at + 2));
                }
                field(&body[at..eol])?;
                message.trailers.extend_from_slice(&body[at..eol + 2]);
                at = eol + 2;
            }
        }
        if &body[at + n..at + n + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        message.body.extend_from_slice(&body[at..at + n]);
        at += n + 2;
    }
}

/// Where the CRLF ending the line at `at` starts, if it has arrived; bare CR or LF are errors.
fn line_end(buf: &[u8], at: usize) -> Result<Option<usize>, String> {
    match buf[at..].iter().position(|&b| b == b'\n' || b == b'\r') {
        None => Ok(None),
        Some(i) => match (buf[at + i], buf.get(at + i + 1)) {
            (b'\r', Some(b'\n')) => Ok(Some(at + i)),
            (b'\r', None) => Ok(None),
            _ => Err("bare CR or LF in chunk framing".into()),
        },
    }
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(step: Step) -> (Message, usize) {
        match step {
            Step::Done(m, n) => (m, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn canonical_requests() {
        let raw = b"POST /a HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: 1\r\n\r\nGET";
        let (m, n) = done(request(raw));
        assert_eq!((m.body.as_slice(), m.trailers.as_slice(), n), (&b"hello"[..], &b"X: 1\r\n"[..], raw.len() - 3));
        let (m, _) = done(request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty: \r\n\r\n"));
        assert_eq!(m.field("x-empty"), Some(&b""[..]));
        assert!(matches!(request(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab"), Step::More));
    }

    #[test]
    fn ambiguous_requests() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n05\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        ] {
            assert!(matches!(request(raw), Step::Broken(_)), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn responses() {
        let (m, n) = done(response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP", "GET", false));
        assert_eq!((m.status(), m.body.as_slice(), n), (200, &b"hi"[..], 40));
        let (m, _) = done(response(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n", "HEAD", false));
        assert!(m.body.is_empty());
        let unframed = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nab";
        assert!(matches!(response(unframed, "GET", false), Step::More));
        assert_eq!(done(response(unframed, "GET", true)).0.body, b"ab");
        let kept = b"HTTP/1.1 200 OK\r\n\r\nab";
        assert!(matches!(response(kept, "GET", true), Step::Broken(_)));
        assert!(matches!(response(b"HTTP/1.1 204 No\r\nContent-Length: 0\r\n\r\n", "GET", true), Step::Broken(_)));
        assert!(matches!(response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", true), Step::Broken(_)));
    }
}
