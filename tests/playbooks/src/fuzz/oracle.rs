//! What a well-formed client input must become upstream, worked out without proxy-core: the
//! `client_bytes` target's reference for "the bytes delivered to the server equal the
//! request's bytes after the documented rewrites".
//!
//! Only inputs inside a plain subset get a reference: HTTP/1.1 requests with absolute-form
//! `http://` targets (lower-case host, optional port, a path of URL characters), field lines
//! `Name: value` with token names and visible-ASCII values, no connection-management fields
//! (`Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Upgrade`, `Expect`), at most one valid
//! `Host`, and either nothing, one `Content-Length` or one `Transfer-Encoding: chunked` as
//! framing (chunks may carry extensions and leading zeros; trailers may be anything token-
//! named). The rewrites, as README.md documents them:
//!
//! - the target becomes origin-form;
//! - `Host` takes the target's authority (in place), or is appended after the other fields;
//! - `Content-Length` is written as one decimal, in the place of the first;
//! - `Transfer-Encoding` is removed and `transfer-encoding: chunked` appended last, the body
//!   re-chunked, extensions dropped, and trailer fields that frame or route dropped;
//! - `via: 1.1 sansproxy` is appended after `Host` when the configuration asks for it.

use proxy_core::Config;

use super::strict::is_tchar;

/// One request as the origin must receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    pub trailers: Vec<u8>,
    pub chunked: bool,
}

/// Fields the subset leaves out: they change how the proxy treats the connection.
const CONNECTION_FIELDS: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "upgrade",
    "expect",
];

/// Trailer fields the proxy drops; kept apart from proxy-core's own list on purpose.
const DROPPED_TRAILERS: [&str; 22] = [
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "realm",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "www-authenticate",
];

/// The requests `input` must become upstream, in order; `None` if `input` is not a sequence of
/// requests inside the subset (or one the limits of `config` would refuse).
pub fn expected_upstream(input: &[u8], config: &Config) -> Option<Vec<Expected>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let (expected, len) = one(&input[at..], config)?;
        out.push(expected);
        at += len;
    }
    (!out.is_empty()).then_some(out)
}

/// One request at the start of `input`, and its length.
fn one(input: &[u8], config: &Config) -> Option<(Expected, usize)> {
    let mut at = 0;
    let request_line = line(input, &mut at)?;
    let (method, path, authority) = request_line_parts(request_line)?;

    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        let l = line(input, &mut at)?;
        if l.is_empty() {
            break;
        }
        fields.push(field(l)?);
    }
    // The limits of the fuzz configuration, which would refuse the request.
    if at > config.max_head_bytes || fields.len() > config.max_headers {
        return None;
    }
    let named = |n: &str| fields.iter().filter(|(f, _)| f.eq_ignore_ascii_case(n)).count();
    if CONNECTION_FIELDS.iter().any(|&n| named(n) > 0) || named("host") > 1 {
        return None;
    }
    let (lengths, codings) = (named("content-length"), named("transfer-encoding"));

    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let mut has_host = false;
    let mut length = None;
    for (name, value) in &fields {
        if name.eq_ignore_ascii_case("host") {
            if !valid_host(value) {
                return None;
            }
            has_host = true;
            head.push_str(&format!("{name}: {authority}\r\n"));
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 6 {
                return None;
            }
            let n: usize = value.parse().ok()?;
            length = Some(n);
            head.push_str(&format!("{name}: {n}\r\n"));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return None;
            }
        } else {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if !has_host {
        head.push_str(&format!("host: {authority}\r\n"));
    }
    if config.add_via {
        head.push_str("via: 1.1 sansproxy\r\n");
    }
    let mut expected = Expected { head: Vec::new(), body: Vec::new(), trailers: Vec::new(), chunked: false };
    match (lengths, codings, length) {
        (0, 0, _) => {}
        (1, 0, Some(n)) => {
            expected.body = input.get(at..at + n)?.to_vec();
            at += n;
        }
        (0, 1, _) => {
            head.push_str("transfer-encoding: chunked\r\n");
            expected.chunked = true;
            chunks(input, &mut at, &mut expected, config)?;
        }
        _ => return None,
    }
    head.push_str("\r\n");
    expected.head = head.into_bytes();
    Some((expected, at))
}

/// The line at `at`, which must end in CRLF, without it; moves `at` past it.
fn line<'a>(input: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = input.get(*at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let l = &rest[..end];
    if l.contains(&b'\r') || l.contains(&b'\n') {
        return None;
    }
    *at += end + 2;
    Some(l)
}

/// `METHOD http://host[:port]/path HTTP/1.1`: the method, the path, and the authority the
/// proxy writes as `Host` (without the default port).
fn request_line_parts(l: &[u8]) -> Option<(String, String, String)> {
    let l = std::str::from_utf8(l).ok()?;
    let mut parts = l.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "HTTP/1.1" {
        return None;
    }
    let plain_method = !method.is_empty() && method.len() <= 10 && method.bytes().all(|b| b.is_ascii_uppercase());
    if !plain_method || method == "CONNECT" || method == "HEAD" {
        return None;
    }
    let rest = target.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    let (authority, path) = rest.split_at(slash);
    let path_char = |b: u8| b.is_ascii_alphanumeric() || b"/._~-?=&%+".contains(&b);
    if !path.bytes().all(path_char) || !valid_host(authority) {
        return None;
    }
    let authority = authority.strip_suffix(":80").unwrap_or(authority).to_owned();
    Some((method.to_owned(), path.to_owned(), authority))
}

/// `host[:port]`: a lower-case name and a port without leading zeros.
fn valid_host(v: &str) -> bool {
    let (host, port) = match v.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v, None),
    };
    let name = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let port_ok = match port {
        None => true,
        Some(p) => {
            !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
        }
    };
    name && port_ok
}

/// `Name:value` with optional whitespace around a visible-ASCII value.
fn field(l: &[u8]) -> Option<(String, String)> {
    let colon = l.iter().position(|&b| b == b':')?;
    let (name, value) = (&l[..colon], &l[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return None;
    }
    // Optional whitespace is SP and HTAB only; anything else around the value is a control.
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    let value = &value[start..end];
    if !value.iter().all(|&b| (b' '..=b'~').contains(&b)) {
        return None;
    }
    Some((String::from_utf8(name.to_vec()).ok()?, String::from_utf8(value.to_vec()).ok()?))
}

/// Chunks (sizes of 1 to 16 hex digits, `;name[=value]` extensions) and trailers.
fn chunks(input: &[u8], at: &mut usize, expected: &mut Expected, config: &Config) -> Option<()> {
    loop {
        let l = line(input, at)?;
        let (size, ext) = match l.iter().position(|&b| b == b';') {
            Some(i) => l.split_at(i),
            None => (l, &b""[..]),
        };
        let simple_ext = ext.split(|&b| b == b';').skip(1).all(|e| {
            let (name, value) = match e.iter().position(|&b| b == b'=') {
                Some(i) => (&e[..i], &e[i + 1..]),
                None => (e, &b"x"[..]),
            };
            !name.is_empty() && !value.is_empty() && name.iter().chain(value).copied().all(is_tchar)
        });
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) || !simple_ext {
            return None;
        }
        let n = usize::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()?;
        if n == 0 {
            break;
        }
        let data = input.get(*at..at.checked_add(n)?)?;
        expected.body.extend_from_slice(data);
        *at += n;
        if input.get(*at..*at + 2)? != b"\r\n" {
            return None;
        }
        *at += 2;
    }
    let start = *at;
    let mut count = 0;
    loop {
        let l = line(input, at)?;
        if l.is_empty() {
            break;
        }
        let (name, value) = field(l)?;
        count += 1;
        let dropped = DROPPED_TRAILERS.iter().any(|d| name.eq_ignore_ascii_case(d))
            || name.len() > 3 && name[..3].eq_ignore_ascii_case("if-");
        if !dropped {
            expected.trailers.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    (*at - start <= config.max_head_bytes && count <= config.max_headers).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        super::super::fuzz_config()
    }

    #[test]
    fn rewrites() {
        let input = b"POST http://a.test:8080/p?q HTTP/1.1\r\nX:  y \r\nhost: b.test\r\ncontent-length: 003\r\n\r\nabc\
            GET http://a.test/ HTTP/1.1\r\n\r\n\
            PUT http://a.test:80/c HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n2;e=1\r\nhi\r\n0\r\nHost: x\r\nT: 1\r\n\r\n";
        let got = expected_upstream(input, &config()).unwrap();
        let heads: Vec<String> = got.iter().map(|e| String::from_utf8_lossy(&e.head).into_owned()).collect();
        assert_eq!(
            heads,
            [
                "POST /p?q HTTP/1.1\r\nX: y\r\nhost: a.test:8080\r\ncontent-length: 3\r\n\r\n",
                "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n",
                "PUT /c HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n",
            ]
        );
        assert_eq!(got[0].body, b"abc");
        assert_eq!((got[2].body.as_slice(), got[2].trailers.as_slice()), (&b"hi"[..], &b"T: 1\r\n"[..]));
    }

    #[test]
    fn outside_the_subset() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET http://a.test/ HTTP/1.1\nHost: a\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET http://A.test/ HTTP/1.1\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\n\r\nx",
            b"HEAD http://a.test/ HTTP/1.1\r\n\r\n",
            b"",
        ] {
            assert_eq!(expected_upstream(input, &config()), None, "{}", String::from_utf8_lossy(input));
        }
    }
}
