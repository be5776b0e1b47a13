//! Heads whole, in pieces and byte by byte; every malformed start line and field line
//! rejected with its own error.

use proptest::prelude::*;

use super::*;
use crate::flow::Version;
use crate::headers::Headers;

const LIMITS: Limits = Limits { max_head_bytes: 8 * 1024, max_headers: 64 };

type Read = Result<Option<RequestHead>, Http1Error>;

fn request(raw: &[u8]) -> Result<Option<RequestHead>, Http1Error> {
    HeadReader::new().read_request(&mut BytesMut::from(raw), &LIMITS)
}

fn response(raw: &[u8]) -> Result<Option<ResponseHead>, Http1Error> {
    HeadReader::new().read_response(&mut BytesMut::from(raw), &LIMITS)
}

fn req_err(raw: &[u8]) -> Http1Error {
    request(raw).expect_err(&String::from_utf8_lossy(raw))
}

fn resp_err(raw: &[u8]) -> Http1Error {
    response(raw).expect_err(&String::from_utf8_lossy(raw))
}

fn fields(h: &Headers) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

#[test]
fn simple_request() {
    let head = request(b"GET /a?b=c HTTP/1.1\r\nHost: a.test\r\nX-Empty:\r\nAccept: */*\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(head.target, "/a?b=c");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(fields(&head.headers), pairs(&[("Host", "a.test"), ("X-Empty", ""), ("Accept", "*/*")]));
}

#[test]
fn other_request_line_forms() {
    let head = request(b"CONNECT a.test:443 HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!((head.method.as_str(), head.target.as_str()), ("CONNECT", "a.test:443"));
    assert_eq!(head.version, Version::Http10);
    assert!(head.headers.is_empty());
    let head = request(b"OPTIONS * HTTP/1.1\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.target, "*");
    let head = request(b"GET http://a.test/\xc3\xa4 HTTP/1.1\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.target, "http://a.test/\u{e4}");
}

#[test]
fn headers_share_the_buffer_and_usual_names_are_static() {
    let mut buf =
        BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Rare: b\r\nHOST: c\r\n\r\n"[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let head = HeadReader::new()
        .read_request(&mut buf, &LIMITS)
        .unwrap()
        .unwrap();
    let fields: Vec<_> = head.headers.iter().collect();
    assert!(fields
        .iter()
        .all(|(_, value)| range.contains(&(value.as_ptr() as usize))));
    // `Host` as spelled usually needs no count of the buffer; rarer names and spellings do.
    assert!(!range.contains(&(fields[0].0.as_ptr() as usize)));
    assert!(range.contains(&(fields[1].0.as_ptr() as usize)));
    assert!(range.contains(&(fields[2].0.as_ptr() as usize)));
    assert_eq!(
        fields.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [&b"Host"[..], b"X-Rare", b"HOST"]
    );
}

#[test]
fn values_lose_surrounding_whitespace() {
    let head = request(b"GET / HTTP/1.1\r\nA:  x y \t\r\nB:\tchunked\r\nC: \t \r\n\r\n").unwrap().unwrap();
    assert_eq!(fields(&head.headers), pairs(&[("A", "x y"), ("B", "chunked"), ("C", "")]));
}

#[test]
fn bare_lf_and_mixed_line_ends() {
    let want = pairs(&[("Host", "a"), ("X", "1")]);
    for raw in [
        &b"GET / HTTP/1.1\nHost: a\nX: 1\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\n",
        b"GET / HTTP/1.1\nHost: a\r\nX: 1\n\r\n",
    ] {
        let mut buf = BytesMut::from(raw);
        buf.extend_from_slice(b"NEXT");
        let head = HeadReader::new().read_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(fields(&head.headers), want);
        assert_eq!(&buf[..], b"NEXT");
    }
}

#[test]
fn leading_empty_lines_are_skipped() {
    let head = request(b"\r\n\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.method, "GET");
    let head = response(b"\r\nHTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.status, 200);

    // Only empty lines: they are dropped and nothing else happens.
    let mut r = HeadReader::new();
    let mut buf = BytesMut::from(&b"\r\n\r\n\n\r"[..]);
    assert_eq!(r.read_request(&mut buf, &LIMITS), Ok(None));
    assert_eq!(&buf[..], b"\r");
    buf.extend_from_slice(b"\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.read_request(&mut buf, &LIMITS).unwrap().unwrap().target, "/");
    assert!(buf.is_empty());

    // A CR not followed by LF is not an empty line.
    assert_eq!(req_err(b"\rGET / HTTP/1.1\r\n\r\n"), Http1Error::BadRequestLine);
}

#[test]
fn pipelined_heads_leave_the_rest() {
    let mut buf = BytesMut::from(&b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nA: b\r\n\r\nGET /3 HT"[..]);
    let mut r = HeadReader::new();
    assert_eq!(r.read_request(&mut buf, &LIMITS).unwrap().unwrap().target, "/1");
    assert_eq!(r.read_request(&mut buf, &LIMITS).unwrap().unwrap().target, "/2");
    assert_eq!(r.read_request(&mut buf, &LIMITS), Ok(None));
    assert_eq!(&buf[..], b"GET /3 HT");
}

#[test]
fn incomplete_heads_wait() {
    for raw in [&b""[..], b"GET", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nA: b\r\n\r", b"GET / HTTP/1.1\n"] {
        assert_eq!(request(raw), Ok(None), "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn head_too_large() {
    let limits = Limits { max_head_bytes: 32, max_headers: 8 };
    let fits = b"GET / HTTP/1.1\r\nHost: 012345\r\n\r\n";
    assert_eq!(fits.len(), 32);
    let mut r = HeadReader::new();
    assert!(r.read_request(&mut BytesMut::from(&fits[..]), &limits).unwrap().is_some());

    // Incomplete: fine up to the limit, too large beyond it.
    let big = b"GET / HTTP/1.1\r\nHost: 0123456\r\n\r\n";
    let mut buf = BytesMut::from(&big[..32]);
    assert_eq!(r.read_request(&mut buf, &limits), Ok(None));
    buf.extend_from_slice(&big[32..]);
    assert_eq!(r.read_request(&mut buf, &limits), Err(Http1Error::HeadTooLarge { limit: 32 }));

    // Complete but over the limit.
    assert_eq!(
        HeadReader::new().read_request(&mut BytesMut::from(&big[..]), &limits),
        Err(Http1Error::HeadTooLarge { limit: 32 })
    );
    let big = b"HTTP/1.1 200 OK\r\nServer: abcdefghijkl\r\n\r\n";
    assert_eq!(
        HeadReader::new().read_response(&mut BytesMut::from(&big[..]), &limits),
        Err(Http1Error::HeadTooLarge { limit: 32 })
    );

    // A complete head within the limit followed by a large body is fine.
    let mut buf = BytesMut::from(&fits[..]);
    buf.extend_from_slice(&[b'x'; 100]);
    assert!(HeadReader::new().read_request(&mut buf, &limits).unwrap().is_some());
    assert_eq!(buf.len(), 100);
}

#[test]
fn too_many_headers() {
    let limits = Limits { max_head_bytes: 1024, max_headers: 2 };
    let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(HeadReader::new().read_request(&mut BytesMut::from(&ok[..]), &limits).unwrap().is_some());
    let bad = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(
        HeadReader::new().read_request(&mut BytesMut::from(&bad[..]), &limits),
        Err(Http1Error::TooManyHeaders { limit: 2 })
    );
    let bad = b"HTTP/1.1 200 OK\nA: 1\nB: 2\nC: 3\n\n";
    assert_eq!(
        HeadReader::new().read_response(&mut BytesMut::from(&bad[..]), &limits),
        Err(Http1Error::TooManyHeaders { limit: 2 })
    );
}

#[test]
fn versions() {
    for v in ["HTTP/2.0", "HTTP/2", "HTTP/1.2", "HTTP/0.9", "HTTP/3", "HTTP/10.0"] {
        assert_eq!(req_err(format!("GET / {v}\r\n\r\n").as_bytes()), Http1Error::BadVersion, "{v}");
        assert_eq!(resp_err(format!("{v} 200 OK\r\n\r\n").as_bytes()), Http1Error::BadVersion, "{v}");
    }
    assert_eq!(req_err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Http1Error::BadVersion);
    for v in ["http/1.1", "HTTP/1.1x", "HTTP/", "HTTP/1.", "HTTP/.1", "HTTP/1.1.1", "HTTP/1,1", "HTTPS/1.1"] {
        assert_eq!(req_err(format!("GET / {v}\r\n\r\n").as_bytes()), Http1Error::BadRequestLine, "{v}");
        assert_eq!(resp_err(format!("{v} 200 OK\r\n\r\n").as_bytes()), Http1Error::BadStatusLine, "{v}");
    }
}

#[test]
fn bad_request_lines() {
    for raw in [
        &b"GET /\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"G\xc3\xa4T / HTTP/1.1\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
        b"GET /\t HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\r\n\r\n",
        b"GET /\rx HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(req_err(raw), Http1Error::BadRequestLine, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn status_lines() {
    let head = response(b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n").unwrap().unwrap();
    assert_eq!((head.version, head.status, head.reason.as_str()), (Version::Http10, 404, "Not Found"));
    assert_eq!(fields(&head.headers), pairs(&[("Server", "x")]));
    for (raw, reason) in [
        (&b"HTTP/1.1 200 \r\n\r\n"[..], ""),
        (b"HTTP/1.1 200\r\n\r\n", ""),
        (b"HTTP/1.1 200  two  spaces \r\n\r\n", " two  spaces "),
        (b"HTTP/1.1 200 \tOK\r\n\r\n", "\tOK"),
        (b"HTTP/1.1 200 Gr\xfc\xdfe\r\n\r\n", "Gr\u{fffd}\u{fffd}e"),
        (b"HTTP/1.1 200 Gr\xc3\xbc\xc3\x9fe\r\n\r\n", "Gr\u{fc}\u{df}e"),
    ] {
        assert_eq!(response(raw).unwrap().unwrap().reason, reason);
    }
    assert_eq!(response(b"HTTP/1.1 999 X\r\n\r\n").unwrap().unwrap().status, 999);
    assert_eq!(response(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().unwrap().status, 100);
}

#[test]
fn bad_status_lines() {
    for raw in [
        &b"HTTP/1.1 99 X\r\n\r\n"[..],
        b"HTTP/1.1 099 X\r\n\r\n",
        b"HTTP/1.1 000\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 -200 OK\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 \r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.1 200\tOK\r\n\r\n",
        b"HTTP/1.1 200 O\x00K\r\n\r\n",
        b"HTTP/1.1 200 O\rK\r\n\r\n",
        b"HTTP/1.1 200 OK\x7f\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert_eq!(resp_err(raw), Http1Error::BadStatusLine, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn obs_fold_is_rejected() {
    for raw in [
        &b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",
        b"GET / HTTP/1.1\nX: a\n b\n\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n",
    ] {
        assert_eq!(req_err(raw), Http1Error::ObsFold, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), Http1Error::ObsFold);
}

#[test]
fn bad_field_names() {
    for raw in [
        &b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nNocolon\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nA(b: c\r\n\r\n",
        b"GET / HTTP/1.1\r\nA\x00: c\r\n\r\n",
        b"GET / HTTP/1.1\r\n\xc3\xa4: c\r\n\r\n",
        b"GET / HTTP/1.1\r\n\rX: c\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n\r\r\n\r\n",
    ] {
        assert_eq!(req_err(raw), Http1Error::BadHeader, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), Http1Error::BadHeader);
}

#[test]
fn bad_field_values() {
    for raw in [
        &b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \x7f\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\x00\r\n\r\n",
    ] {
        assert_eq!(req_err(raw), Http1Error::BadHeaderValue, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!(resp_err(b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n"), Http1Error::BadHeaderValue);
    // obs-text is fine.
    let head = request(b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.headers.get("x"), Some(&b"\xff\xfe"[..]));
}

#[test]
fn the_first_bad_line_decides() {
    assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: \x00\r\n b\r\n\r\n"), Http1Error::BadHeaderValue);
    assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: a\r\n b\r\nY: \x00\r\n\r\n"), Http1Error::ObsFold);
    // A bad start line wins over bad fields.
    assert_eq!(req_err(b"GET /\r\n b\r\n\r\n"), Http1Error::BadRequestLine);
}

const SPLIT_ME: &[u8] = b"\r\nPOST /upload?x=1 HTTP/1.1\r\nHost: a.test\nContent-Length: 5\r\nX-Empty:\r\n\
    X-Long: a b c d e f g\r\n\r\nhello";

#[test]
fn split_at_every_byte() {
    let whole = request(SPLIT_ME).unwrap().unwrap();
    for at in 0..SPLIT_ME.len() {
        let mut r = HeadReader::new();
        let mut buf = BytesMut::from(&SPLIT_ME[..at]);
        let head = match r.read_request(&mut buf, &LIMITS).unwrap() {
            Some(head) => head,
            None => {
                buf.extend_from_slice(&SPLIT_ME[at..]);
                r.read_request(&mut buf, &LIMITS).unwrap().unwrap()
            }
        };
        assert_eq!(head, whole, "split at {at}");
    }
}

#[test]
fn byte_by_byte() {
    let whole = request(SPLIT_ME).unwrap().unwrap();
    let mut r = HeadReader::new();
    let mut buf = BytesMut::new();
    let mut got = None;
    for &b in SPLIT_ME {
        buf.extend_from_slice(&[b]);
        if got.is_none() {
            got = r.read_request(&mut buf, &LIMITS).unwrap();
        }
    }
    assert_eq!(got, Some(whole));
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn scanning_is_linear() {
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        raw.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let limits = Limits { max_head_bytes: 1 << 20, max_headers: 4096 };
    let mut r = HeadReader::new();
    let mut buf = BytesMut::new();
    for (i, &b) in raw.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let got = r.read_request(&mut buf, &limits).unwrap();
        assert_eq!(got.is_some(), i == raw.len() - 1);
    }
    assert!(r.work <= 4 * raw.len(), "{} bytes examined for {}", r.work, raw.len());
}

/// A head as raw bytes with the fields and request line it should parse to.
fn arb_request() -> impl Strategy<Value = (Vec<u8>, String, String, Vec<(String, String)>)> {
    let name = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
    let value = "([!-~\u{80}-\u{ff}]([ -~\t]{0,20}[!-~])?)?";
    let field = (name, value, "[ \t]{0,2}", any::<bool>());
    (
        "[A-Z]{1,8}",
        "/[!-~]{0,30}",
        proptest::collection::vec(field, 0..12),
        any::<bool>(),
        "(\r?\n){0,3}",
    )
        .prop_map(|(method, target, fields, crlf, leading)| {
            let eol = |crlf: bool| if crlf { "\r\n" } else { "\n" };
            let mut raw = format!("{leading}{method} {target} HTTP/1.1{}", eol(crlf)).into_bytes();
            let mut want = Vec::new();
            for (name, value, ows, crlf) in fields {
                // Non-ASCII values arrive as single octets (obs-text), not as UTF-8.
                let bytes: Vec<u8> = value.chars().map(|c| c as u32 as u8).collect();
                raw.extend_from_slice(format!("{name}:{ows}").as_bytes());
                raw.extend_from_slice(&bytes);
                raw.extend_from_slice(format!("{ows}{}", eol(crlf)).as_bytes());
                want.push((name, String::from_utf8_lossy(&bytes).into_owned()));
            }
            raw.extend_from_slice(eol(crlf).as_bytes());
            (raw, method, target, want)
        })
}

/// Feed `raw` cut at `cuts` (any numbers) until a head or an error comes out; also returns
/// the calls made and the bytes the search examined.
fn read_in_pieces(raw: &[u8], cuts: &[usize], limits: &Limits) -> (Read, usize, usize) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
    cuts.push(raw.len());
    cuts.sort_unstable();
    let mut r = HeadReader::new();
    let mut buf = BytesMut::new();
    let (mut at, mut calls) = (0, 0);
    for cut in cuts {
        buf.extend_from_slice(&raw[at..cut]);
        at = cut;
        calls += 1;
        match r.read_request(&mut buf, limits) {
            Ok(None) => {}
            done => return (done, calls, r.work),
        }
    }
    (Ok(None), calls, r.work)
}

proptest! {
    #[test]
    fn pieces_parse_like_the_whole(
        (raw, method, target, want) in arb_request(),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let whole = request(&raw).unwrap().unwrap();
        prop_assert_eq!(&whole.method, &method);
        prop_assert_eq!(&whole.target, &target);
        prop_assert_eq!(fields(&whole.headers), want);
        let (got, calls, work) = read_in_pieces(&raw, &cuts, &LIMITS);
        prop_assert_eq!(got, Ok(Some(whole)));
        prop_assert!(work <= raw.len() + 3 * calls, "work {} for {} bytes in {} calls", work, raw.len(), calls);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        small in any::<bool>(),
    ) {
        let limits = if small { Limits { max_head_bytes: 64, max_headers: 2 } } else { LIMITS };
        let _ = read_in_pieces(&data, &cuts, &limits);
        let mut buf = BytesMut::from(&data[..]);
        let mut r = HeadReader::new();
        while let Ok(Some(_)) = r.read_response(&mut buf, &limits) {}
    }

    #[test]
    fn near_miss_heads_never_panic(
        start in prop::sample::select(vec!["GET / HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", "", "HTTP/1.1 "]),
        tail in proptest::collection::vec(
            prop::sample::select(b"\r\n\r\n :\t\x00\x7f\xffaZ09/.;,\"".to_vec()), 0..64),
    ) {
        let mut raw = start.as_bytes().to_vec();
        raw.extend_from_slice(&tail);
        raw.extend_from_slice(b"\r\n\r\n");
        let req = request(&raw);
        let resp = response(&raw);
        // Whatever the outcome, it is the same as for the head split at its middle.
        let (split, _, _) = read_in_pieces(&raw, &[raw.len() / 2], &LIMITS);
        prop_assert_eq!(&req, &split);
        if let Ok(Some(head)) = req {
            prop_assert!(head.headers.iter().all(|(n, v)| !n.is_empty()
                && !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)));
        }
        let _ = resp;
    }
}
