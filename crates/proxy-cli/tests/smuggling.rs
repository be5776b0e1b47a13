//! Request smuggling through the binary: raw clients send what two HTTP/1 parsers could read
//! differently, and a recording origin shows what arrived. A refused request reaches no origin
//! (or, for a body error, only its truncated start, never a complete request); a normalised one
//! arrives in the one canonical framing the origin's strict reader accepts, with exactly the
//! head, body and trailers asserted. On the response side, the client gets one framing and an
//! origin that framed ambiguously is not reused. README.md ("Request smuggling") tables the
//! rules.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::wire::{is_reset, IO_TIMEOUT};
use support::*;

/// What the recording origin answers every complete request with.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One request as the origin received it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// Which accepted connection, counting from 0.
    conn: usize,
    /// The head, request line to empty line, exactly as received.
    head: String,
    /// The body, de-chunked if it was chunked.
    body: Vec<u8>,
    /// Trailer lines of a chunked body, each with its CRLF.
    trailers: String,
    chunked: bool,
    /// False when the connection ended (or the framing broke) before the request did.
    complete: bool,
    /// Why the origin's strict reader gave up on the request, if it did.
    error: Option<String>,
}

/// An origin that records every request in full and answers each with [`OK`].
struct Recorder {
    server: TcpServer,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes of the request being received, for tests that wait for them.
    partial: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let partial = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let server = {
            let (seen, partial) = (seen.clone(), partial.clone());
            TcpServer::start(move |s| {
                let conn = next.fetch_add(1, Ordering::SeqCst);
                record(s, conn, &seen, &partial)
            })
        };
        Recorder {
            server,
            seen,
            partial,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (at most [`IO_TIMEOUT`]) until the request being received holds `needle`.
    fn wait_partial(&self, needle: &[u8]) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            let partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
            if partial.windows(needle.len()).any(|w| w == needle) {
                return;
            }
            drop(partial);
            thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "the origin never received {:?}",
            String::from_utf8_lossy(needle)
        );
    }

    /// Waits (at most [`IO_TIMEOUT`]) until `n` requests have been recorded.
    fn wait_seen(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let seen = self.seen();
            if seen.len() >= n || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Reads requests off one connection with a strict reader that accepts only the canonical
/// framing the proxy promises (one decimal `Content-Length`, or one `Transfer-Encoding:
/// chunked` with bare lower-case hex sizes), records each, and answers [`OK`].
fn record(stream: TcpStream, conn: usize, seen: &Mutex<Vec<Seen>>, partial: &Mutex<Vec<u8>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut stream = stream;
    let mut buf = Vec::new();
    let mut piece = [0u8; 16 * 1024];
    for _ in 0..10_000 {
        match parse_request(&buf) {
            Parsed::Complete(mut request, len) => {
                request.conn = conn;
                buf.drain(..len);
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(request);
                if stream.write_all(OK).is_err() {
                    return;
                }
                continue;
            }
            Parsed::Broken(mut request) => {
                request.conn = conn;
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(request);
                return;
            }
            Parsed::Partial(_) => {}
        }
        *partial.lock().unwrap_or_else(|p| p.into_inner()) = buf.clone();
        let n = match stream.read(&mut piece) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            // Cleared before the request is recorded: a test that saw it recorded waits for
            // the next connection's bytes, not these.
            partial.lock().unwrap_or_else(|p| p.into_inner()).clear();
            if let Parsed::Partial(Some(mut request)) = parse_request(&buf) {
                request.conn = conn;
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(request);
            }
            return;
        }
        buf.extend_from_slice(&piece[..n]);
    }
}

enum Parsed {
    /// A whole request, and how many bytes it took.
    Complete(Seen, usize),
    /// More bytes are needed; what has arrived of a request whose head is in.
    Partial(Option<Seen>),
    /// Not canonical: the origin refuses to guess.
    Broken(Seen),
}

fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n", 0) else {
        if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
            if lf == 0 || buf[lf - 1] != b'\r' {
                return Parsed::Broken(broken(buf, "bare LF in the head"));
            }
        }
        return Parsed::Partial(None);
    };
    let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
    let mut request = Seen {
        conn: 0,
        head: head.clone(),
        body: Vec::new(),
        trailers: String::new(),
        chunked: false,
        complete: false,
        error: None,
    };
    let mut lengths = Vec::new();
    let mut codings = Vec::new();
    for line in head[..end].split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(": ") else {
            return Parsed::Broken(fail(request, format!("field line {line:?}")));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) || value.contains(['\r', '\n', '\0']) {
            return Parsed::Broken(fail(request, format!("field line {line:?}")));
        }
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value.to_owned());
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.push(value.to_owned());
        }
    }
    let body = &buf[end + 4..];
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => {
            request.complete = true;
            Parsed::Complete(request, end + 4)
        }
        ([len], []) => {
            let canonical = !len.is_empty()
                && len.bytes().all(|b| b.is_ascii_digit())
                && (len == "0" || !len.starts_with('0'));
            let Some(n) = len.parse::<usize>().ok().filter(|_| canonical) else {
                return Parsed::Broken(fail(request, format!("content-length {len:?}")));
            };
            if body.len() < n {
                request.body = body.to_vec();
                return Parsed::Partial(Some(request));
            }
            request.body = body[..n].to_vec();
            request.complete = true;
            Parsed::Complete(request, end + 4 + n)
        }
        ([], [te]) if te == "chunked" => {
            request.chunked = true;
            match dechunk(body, &mut request) {
                Ok(Some(len)) => {
                    request.complete = true;
                    Parsed::Complete(request, end + 4 + len)
                }
                Ok(None) => Parsed::Partial(Some(request)),
                Err(e) => Parsed::Broken(fail(request, e)),
            }
        }
        _ => Parsed::Broken(fail(
            request,
            format!("framing fields {lengths:?} {codings:?}"),
        )),
    }
}

/// Reads canonical chunks into `request`; the body's length once it is complete.
fn dechunk(body: &[u8], request: &mut Seen) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(eol) = find(body, b"\r\n", at) else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&body[at..eol]).unwrap_or("?");
        let canonical = !size.is_empty()
            && size.len() <= 16
            && size.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && (size == "0" || !size.starts_with('0'));
        if !canonical {
            return Err(format!("chunk size line {size:?}"));
        }
        let n = usize::from_str_radix(size, 16).map_err(|e| e.to_string())?;
        at = eol + 2;
        if n == 0 {
            // Trailer lines up to the empty line.
            loop {
                let Some(eol) = find(body, b"\r\n", at) else {
                    return Ok(None);
                };
                if eol == at {
                    return Ok(Some(at + 2));
                }
                request
                    .trailers
                    .push_str(&String::from_utf8_lossy(&body[at..eol + 2]));
                at = eol + 2;
            }
        }
        if body.len() < at + n + 2 {
            request
                .body
                .extend_from_slice(&body[at..body.len().min(at + n)]);
            return Ok(None);
        }
        if &body[at + n..at + n + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        request.body.extend_from_slice(&body[at..at + n]);
        at += n + 2;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn fail(mut request: Seen, error: String) -> Seen {
    request.error = Some(error);
    request
}

fn broken(buf: &[u8], error: &str) -> Seen {
    Seen {
        conn: 0,
        head: String::from_utf8_lossy(buf).into_owned(),
        body: Vec::new(),
        trailers: String::new(),
        chunked: false,
        complete: false,
        error: Some(error.into()),
    }
}

/// A raw connection to the proxy, for writing and then reading everything until it closes.
fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect to the proxy");
    stream.set_nodelay(true).expect("set_nodelay");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
}

/// Everything the proxy sends until it closes the connection (at most [`IO_TIMEOUT`]).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut all = Vec::new();
    let mut piece = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut piece) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => return all,
            Err(e) => panic!(
                "reading from the proxy: {e}; got so far {:?}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
    panic!(
        "the proxy did not close within {IO_TIMEOUT:?}; got {:?}",
        String::from_utf8_lossy(&all)
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status of the first response in `bytes`.
fn status(bytes: &[u8]) -> u16 {
    let s = text(bytes);
    s.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {s:?}"))
}

/// Sends `request` on a connection of its own and returns all the proxy answers before
/// closing (a refused request closes the connection; others name `Connection: close`).
fn exchange(proxy: &Proxy, request: &[u8]) -> Vec<u8> {
    let mut s = connect(proxy);
    s.write_all(request).expect("write the request");
    read_to_close(&mut s)
}

/// `METHOD http://ORIGIN/PATH HTTP/1.1` with `fields` (each line with its CRLF) and `body`.
fn request(origin: &str, head: &str, fields: &str, body: &str) -> Vec<u8> {
    let head = head.replace("ORIGIN", origin);
    let fields = fields.replace("ORIGIN", origin);
    format!("{head}\r\nHost: {origin}\r\n{fields}\r\n{body}").into_bytes()
}

#[test]
fn ambiguous_requests_never_reach_the_origin() {
    let origin = Recorder::start();
    let proxy = Proxy::start(&["-q"]);
    let a = origin.server.authority();
    let smuggled = format!("GET http://{a}/smuggled HTTP/1.1\r\nHost: {a}\r\n\r\n");
    let post = "POST http://ORIGIN/p HTTP/1.1";
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // CL.TE and TE.CL.
        (
            request(
                &a,
                post,
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
        ),
        (
            request(
                &a,
                post,
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
        ),
        // TE.TE.
        (
            request(
                &a,
                post,
                "Transfer-Encoding: xchunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
        ),
        (
            request(
                &a,
                post,
                "Transfer-Encoding: chunked, identity\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            request(
                &a,
                post,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            request(
                &a,
                post,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            request(&a, post, "Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            request(&a, post, "Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            request(&a, post, "Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            request(
                &a,
                post,
                "Transfer-Encoding: gzip, chunked\r\n",
                "0\r\n\r\n",
            ),
            501,
        ),
        (
            request(
                &a,
                "POST http://ORIGIN/p HTTP/1.0",
                "Transfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            ),
            400,
        ),
        // Content-Length.
        (
            request(
                &a,
                post,
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                "hello!",
            ),
            400,
        ),
        (request(&a, post, "Content-Length: 5, 6\r\n", "hello!"), 400),
        (request(&a, post, "Content-Length: +5\r\n", "hello"), 400),
        (request(&a, post, "Content-Length: -1\r\n", "hello"), 400),
        (request(&a, post, "Content-Length: 0x5\r\n", "hello"), 400),
        (
            request(
                &a,
                post,
                "Content-Length: 18446744073709551616\r\n",
                "hello",
            ),
            400,
        ),
        (request(&a, post, "Content-Length : 5\r\n", "hello"), 400),
        // Names, line ends, Host and the target.
        (
            request(&a, post, "X[1]: y\r\nContent-Length: 0\r\n", ""),
            400,
        ),
        (request(&a, post, "X: a\rb\r\n", ""), 400),
        (
            format!("GET http://{a}/ HTTP/1.1\rHost: {a}\r\n\r\n").into_bytes(),
            400,
        ),
        (
            request(&a, "GET http://ORIGIN/ HTTP/1.1", "Host: evil.test\r\n", ""),
            400,
        ),
        (
            format!("GET http://{a}/ HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n").into_bytes(),
            400,
        ),
        (
            format!("GET http://u@{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            400,
        ),
        (
            format!("GET http://{a}:80/ HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            400,
        ),
        (
            format!("GET http://{a}#x/ HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            400,
        ),
    ];
    for (raw, want) in &cases {
        let answer = exchange(&proxy, raw);
        assert_eq!(
            status(&answer),
            *want,
            "for {:?}: {:?}",
            text(raw),
            text(&answer)
        );
        let body = &answer[find(&answer, b"\r\n\r\n", 0).expect("a head") + 4..];
        assert!(
            !body.is_empty() && body.len() < 512 && body.is_ascii(),
            "a short text body naming the cause: {:?}",
            text(body)
        );
        assert!(
            origin.seen().is_empty(),
            "for {:?} the origin saw {:?}",
            text(raw),
            origin.seen()
        );
    }
    assert_eq!(
        origin.server.connections(),
        0,
        "no request needed the origin"
    );

    // The proxy still serves, and the origin sees that one request.
    let answer = exchange(
        &proxy,
        &request(
            &a,
            "GET http://ORIGIN/after HTTP/1.1",
            "Connection: close\r\n",
            "",
        ),
    );
    assert_eq!(status(&answer), 200, "{:?}", text(&answer));
    let seen = origin.wait_seen(1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].head,
        format!("GET /after HTTP/1.1\r\nHost: {a}\r\n\r\n")
    );
}

#[test]
fn untidy_requests_arrive_in_one_canonical_framing() {
    let origin = Recorder::start();
    let proxy = Proxy::start(&["-q"]);
    let a = origin.server.authority();
    let post = "POST http://ORIGIN/p HTTP/1.1";
    let close = "Connection: close\r\n";
    // (request, head the origin must see, body, trailers)
    let cases: Vec<(Vec<u8>, String, &str, &str)> = vec![
        (
            request(&a, post, &format!("{close}Content-Length: 5, 5\r\n"), "hello"),
            format!("POST /p HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n\r\n"),
            "hello",
            "",
        ),
        (
            request(&a, post, &format!("{close}Content-Length: 5\r\ncontent-length: 005\r\n"), "hello"),
            format!("POST /p HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n\r\n"),
            "hello",
            "",
        ),
        (
            request(
                &a,
                post,
                &format!("{close}Transfer-Encoding:\tChunked \r\n"),
                "0005;a=b\r\nhello\r\n1 ;x=\"y\"\r\n!\r\n0;z\r\nX-Sum: 1\r\nContent-Length: 9\r\nHost: evil.test\r\n\r\n",
            ),
            format!("POST /p HTTP/1.1\r\nHost: {a}\r\ntransfer-encoding: chunked\r\n\r\n"),
            "hello!",
            "X-Sum: 1\r\n",
        ),
        (
            format!("POST http://{a}/lf HTTP/1.1\nHost: {a}\nConnection: close\nContent-Length: 2\n\nhi").into_bytes(),
            format!("POST /lf HTTP/1.1\r\nHost: {a}\r\nContent-Length: 2\r\n\r\n"),
            "hi",
            "",
        ),
        (
            format!("GET http://{a}/abs HTTP/1.1\r\nHost: evil.test:80\r\nConnection: close\r\nX: 1\r\n\r\n").into_bytes(),
            format!("GET /abs HTTP/1.1\r\nHost: {a}\r\nX: 1\r\n\r\n"),
            "",
            "",
        ),
        (
            format!("GET http://{a}/nohost HTTP/1.1\r\nConnection: close\r\n\r\n").into_bytes(),
            format!("GET /nohost HTTP/1.1\r\nhost: {a}\r\n\r\n"),
            "",
            "",
        ),
    ];
    for (i, (raw, head, body, trailers)) in cases.iter().enumerate() {
        let answer = exchange(&proxy, raw);
        assert_eq!(
            status(&answer),
            200,
            "for {:?}: {:?}",
            text(raw),
            text(&answer)
        );
        let seen = origin.wait_seen(i + 1);
        let got = seen
            .get(i)
            .unwrap_or_else(|| panic!("the origin saw {seen:?}"));
        assert_eq!(got.error, None, "for {:?}: {got:?}", text(raw));
        assert!(got.complete, "{got:?}");
        assert_eq!(got.head, *head, "for {:?}", text(raw));
        assert_eq!(text(&got.body), *body, "for {:?}", text(raw));
        assert_eq!(got.trailers, *trailers, "for {:?}", text(raw));
    }
    assert_eq!(origin.seen().len(), cases.len());
}

#[test]
fn a_bad_chunk_leaves_the_origin_a_truncated_request() {
    let origin = Recorder::start();
    let proxy = Proxy::start(&["-q"]);
    let a = origin.server.authority();
    for bad in [
        "+5\r\nhello\r\n",
        "0x5\r\nhello\r\n",
        " 5\r\nhello\r\n",
        "5\nhello\r\n",
        "10000000000000005\r\n",
    ] {
        let before = origin.seen().len();
        let mut s = connect(&proxy);
        s.write_all(&request(
            &a,
            "POST http://ORIGIN/c HTTP/1.1",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n",
        ))
        .expect("write");
        // The head and the first chunk are at the origin before the bad chunk line is sent.
        origin.wait_partial(b"hello\r\n");
        let smuggled = format!("0\r\n\r\nGET http://{a}/smuggled HTTP/1.1\r\nHost: {a}\r\n\r\n");
        s.write_all(format!("{bad}{smuggled}").as_bytes())
            .expect("write");
        let answer = read_to_close(&mut s);
        assert_eq!(status(&answer), 400, "for {bad:?}: {:?}", text(&answer));
        let seen = origin.wait_seen(before + 1);
        assert_eq!(seen.len(), before + 1, "for {bad:?}: {seen:?}");
        let got = &seen[before];
        assert_eq!(got.error, None, "{got:?}");
        assert!(
            !got.complete,
            "the origin must not see a complete request: {got:?}"
        );
        assert_eq!(
            got.head,
            format!("POST /c HTTP/1.1\r\nHost: {a}\r\ntransfer-encoding: chunked\r\n\r\n")
        );
        assert_eq!(text(&got.body), "hello");
        let _ = s.shutdown(Shutdown::Both);
    }
    assert!(origin.seen().iter().all(|s| !s.head.contains("smuggled")));
}

/// An origin that answers every request head with `response(n)`, `n` counting the requests
/// of all its connections from 0; it keeps each connection for more until the proxy closes it.
fn scripted(response: impl Fn(usize) -> Vec<Vec<u8>> + Send + Sync + 'static) -> TcpServer {
    let count = Arc::new(AtomicUsize::new(0));
    TcpServer::start(move |stream| {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut w = Wire::new(stream);
        for _ in 0..100 {
            match w.read_head(64 * 1024) {
                Ok(Some(_)) => {}
                _ => return,
            }
            // Pieces of the response, written 100 ms apart.
            for (k, piece) in response(count.fetch_add(1, Ordering::SeqCst))
                .iter()
                .enumerate()
            {
                if k > 0 {
                    thread::sleep(Duration::from_millis(100));
                }
                if w.write_all(piece).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn a_response_with_both_framings_is_rechunked_and_its_connection_dropped() {
    let origin = scripted(|_| {
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n".to_vec()]
    });
    let proxy = Proxy::start(&["-q"]);
    let a = origin.authority();
    let mut s = connect(&proxy);
    s.write_all(format!("GET http://{a}/1 HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
        .expect("write");
    let one = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    let mut got = vec![0u8; one.len()];
    s.read_exact(&mut got).expect("the first response");
    assert_eq!(text(&got), text(one));
    s.write_all(
        format!("GET http://{a}/2 HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let two = read_to_close(&mut s);
    assert_eq!(
        text(&two),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    );
    assert_eq!(
        origin.connections(),
        2,
        "the ambiguous origin connection was reused"
    );
}

#[test]
fn response_framing_is_canonical_or_refused() {
    let proxy = Proxy::start(&["-q"]);
    let cases: Vec<(&[u8], &str)> = vec![
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi",
        ),
        (
            b"HTTP/1.1 200 OK\nContent-Length: 02\nX: 1\n\nhi",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: 1\r\nconnection: close\r\n\r\nhi",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nContent-Length: 9\r\nX-T: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        (
            b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi",
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
    ];
    for (response, want) in cases {
        let origin = scripted(move |_| vec![response.to_vec()]);
        let a = origin.authority();
        let got = exchange(
            &proxy,
            format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(text(&got), want, "for {:?}", text(response));
    }
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi",
    ] {
        let origin = scripted(move |_| vec![response.to_vec()]);
        let a = origin.authority();
        let got = exchange(
            &proxy,
            format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(
            status(&got),
            502,
            "for {:?}: {:?}",
            text(response),
            text(&got)
        );
    }
}

#[test]
fn a_bad_response_chunk_cuts_the_client_off() {
    let origin = scripted(|_| {
        vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n".to_vec(),
            b"+5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ]
    });
    let proxy = Proxy::start(&["-q"]);
    let a = origin.authority();
    let got = exchange(
        &proxy,
        format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes(),
    );
    // The client sees the body stop short, without the last chunk that would end it cleanly.
    assert_eq!(
        text(&got),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n"
    );
}
