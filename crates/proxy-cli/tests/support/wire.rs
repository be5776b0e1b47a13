//! A small, strict HTTP/1.1 reader over a blocking stream (a `TcpStream`, or TLS over one),
//! shared by the origin servers and the raw test clients. It is deliberately independent of proxy-core: the tests must not
//! share the parser they are checking.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Read and write timeout of every raw connection; a test that waits longer has failed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest head the raw clients accept from the proxy.
const MAX_HEAD: usize = 256 * 1024;
const READ_SIZE: usize = 64 * 1024;

/// A request or response head: the start line and the header fields in order, names as sent.
#[derive(Debug, Clone)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A response read whole by a raw client.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

/// One end of a connection plus the bytes received but not consumed yet. The stream is a
/// `TcpStream` unless a TLS origin or client wraps one.
pub struct Wire<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
    /// How far the last delimiter search got into `buf`, so a search never restarts at 0.
    scanned: usize,
}

impl Head {
    /// First field named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every field named `name`, case-insensitively, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a comma-separated field named `name` lists `token`, case-insensitively.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The status code of a response head.
    pub fn status(&self) -> io::Result<u16> {
        let mut parts = self.start.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(invalid(format!("bad status line {:?}", self.start)));
        }
        code.parse()
            .map_err(|_| invalid(format!("bad status line {:?}", self.start)))
    }

    /// Body framing of a request head.
    pub fn request_framing(&self) -> io::Result<Framing> {
        let te = self.all("transfer-encoding");
        let cl = self.all("content-length");
        if !te.is_empty() {
            if !cl.is_empty() {
                return Err(invalid("both content-length and transfer-encoding".into()));
            }
            if !self.is_chunked() {
                return Err(invalid(format!("unsupported transfer-encoding {te:?}")));
            }
            return Ok(Framing::Chunked);
        }
        match self.content_length()? {
            None | Some(0) => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
        }
    }

    /// Body framing of a response head, given the method of the request it answers.
    pub fn response_framing(&self, method: &str) -> io::Result<Framing> {
        let status = self.status()?;
        let no_body = method.eq_ignore_ascii_case("HEAD")
            || (method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status))
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        if no_body {
            Ok(Framing::Empty)
        } else if !self.all("transfer-encoding").is_empty() {
            if self.is_chunked() {
                Ok(Framing::Chunked)
            } else {
                Ok(Framing::UntilClose)
            }
        } else {
            Ok(self
                .content_length()?
                .map_or(Framing::UntilClose, Framing::Length))
        }
    }

    fn is_chunked(&self) -> bool {
        let te = self.all("transfer-encoding");
        let last = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .next_back();
        last.is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        let mut found = None;
        for v in self.all("content-length") {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("bad content-length {v:?}")));
            }
            let n: u64 = v
                .parse()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(invalid("differing content-length fields".into()));
            }
            found = Some(n);
        }
        Ok(found)
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Wire<TcpStream> {
    /// Connects to `127.0.0.1:port` with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        Wire::new(stream)
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Asserts that the peer closes the connection within `within` and sent nothing more.
    pub fn expect_closed(&mut self, within: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes after the response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream
            .set_read_timeout(Some(within))
            .expect("set_read_timeout");
        let mut b = [0u8; 1024];
        match self.stream.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the connection to close, got more bytes: {:?}",
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) if is_reset(&e) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("connection still open {within:?} after the response")
            }
            Err(e) => panic!("unexpected read error while waiting for close: {e}"),
        }
    }

    /// Half-closes our sending side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl<S: Read + Write> Wire<S> {
    pub fn new(stream: S) -> Wire<S> {
        Wire {
            stream,
            buf: Vec::new(),
            scanned: 0,
        }
    }

    /// The underlying stream, for writing (or a TLS close) behind the reader's back.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The underlying stream; bytes received and not consumed yet are dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Writes all of `bytes`, panicking on failure (for test clients).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes all of `bytes` and flushes them (for servers, which handle the error).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Bytes received and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads one head of at most `limit` bytes. `Ok(None)`: the peer closed before sending
    /// anything.
    pub fn read_head(&mut self, limit: usize) -> io::Result<Option<Head>> {
        match self.read_until(b"\r\n\r\n", limit)? {
            None => Ok(None),
            Some(raw) => parse_head(&raw).map(Some),
        }
    }

    /// Reads one body, handing its bytes (de-chunked) to `f` as they arrive; returns its length.
    pub fn read_body(&mut self, framing: Framing, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        match framing {
            Framing::Empty => Ok(0),
            Framing::Length(n) => self.read_len(n, f).map(|()| n),
            Framing::Chunked => self.read_chunked(f),
            Framing::UntilClose => {
                // A reset ends such a body too: a peer that closes with our bytes unread (a
                // proxy rejecting a request early) resets the connection after its answer.
                let mut total = 0;
                loop {
                    match self.take(READ_SIZE, f) {
                        Ok(0) => return Ok(total),
                        Ok(n) => total += n as u64,
                        Err(e) if is_reset(&e) => return Ok(total),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Reads the next response (1xx included) to a request with `method`, passing its body to
    /// `f` as it arrives.
    pub fn read_response_with(
        &mut self,
        method: &str,
        f: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Head> {
        let head = self
            .read_head(MAX_HEAD)?
            .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed before a response"))?;
        let framing = head.response_framing(method)?;
        self.read_body(framing, f)?;
        Ok(head)
    }

    /// Reads the next response (1xx included) whole.
    pub fn read_response(&mut self, method: &str) -> io::Result<Response> {
        let mut body = Vec::new();
        let head = self.read_response_with(method, &mut |d| body.extend_from_slice(d))?;
        Ok(Response {
            status: head.status()?,
            head,
            body,
        })
    }

    /// Reads responses until a final (non-1xx) one and returns it.
    pub fn read_final_response(&mut self, method: &str) -> io::Result<Response> {
        for _ in 0..16 {
            let r = self.read_response(method)?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
        Err(invalid("more than 16 interim responses".into()))
    }

    fn read_len(&mut self, n: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            let want = left.min(READ_SIZE as u64) as usize;
            match self.take(want, f)? {
                0 => {
                    let msg = format!("body ended after {} of {n} bytes", n - left);
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, msg));
                }
                k => left -= k as u64,
            }
        }
        Ok(())
    }

    fn read_chunked(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let line = self.read_line(1024)?;
            let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .unwrap_or("")
                .trim_matches([' ', '\t']);
            if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "bad chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            let size = u64::from_str_radix(size, 16).expect("checked hex digits");
            if size == 0 {
                // Trailer section, ended by an empty line.
                for _ in 0..256 {
                    if self.read_line(64 * 1024)?.is_empty() {
                        return Ok(total);
                    }
                }
                return Err(invalid("more than 256 trailer fields".into()));
            }
            self.read_len(size, f)?;
            total += size;
            if !self.read_line(0)?.is_empty() {
                return Err(invalid("chunk data not followed by CRLF".into()));
            }
        }
    }

    fn read_line(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        self.read_until(b"\r\n", limit)?.ok_or_else(|| {
            io::Error::new(ErrorKind::UnexpectedEof, "closed inside chunked framing")
        })
    }

    /// Consumes bytes up to and including `delim` and returns those before it. `Ok(None)`: the
    /// peer closed with nothing buffered.
    fn read_until(&mut self, delim: &[u8], limit: usize) -> io::Result<Option<Vec<u8>>> {
        loop {
            let from = self.scanned.saturating_sub(delim.len() - 1);
            if let Some(i) = self.buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                let end = from + i;
                let found = self.buf[..end].to_vec();
                self.buf.drain(..end + delim.len());
                self.scanned = 0;
                return Ok(Some(found));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > limit + delim.len() {
                return Err(invalid(format!("no {delim:?} within {limit} bytes")));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed in the middle of a line",
                ));
            }
        }
    }

    /// Hands up to `max` bytes to `f`, reading if nothing is buffered; 0 means end of stream.
    fn take(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        if self.buf.is_empty() && self.fill()? == 0 {
            return Ok(0);
        }
        let n = max.min(self.buf.len());
        f(&self.buf[..n]);
        self.buf.drain(..n);
        self.scanned = 0;
        Ok(n)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let r = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.buf.truncate(len + *r.as_ref().unwrap_or(&0));
        r
    }
}

/// Whether `e` means the peer reset or aborted the connection.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("head is not utf-8".into()))?;
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").to_owned();
    if start.is_empty() || start.contains(['\r', '\n', '\0']) {
        return Err(invalid(format!("bad start line {start:?}")));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(invalid(format!("obs-fold line {line:?}")));
        }
        if line.contains(['\r', '\n', '\0']) {
            return Err(invalid(format!("control character in {line:?}")));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header line without colon {line:?}")))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(invalid(format!("bad header name {name:?}")));
        }
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    Ok(Head { start, headers })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}
