//! The origin the proxy talks to: a keep-alive HTTP/1.1 server on std threads, in plain text
//! or over TLS ([`Origin::start_tls`], rustls with a certificate from [`super::pki`]), plus
//! [`TcpServer`] for ad-hoc origins that misbehave on purpose.
//!
//! Routes of [`Origin`]:
//!
//! - `GET /hello`, `HEAD /hello`: `hello world\n` with `Content-Length: 12`.
//! - `POST /echo`: the request body back, with `Content-Length`.
//! - `GET /big?n=N`: N bytes of [`pattern`](super::pattern), with `Content-Length`, written
//!   in 64 KiB pieces.
//! - `POST /sink`: `"LEN HASH\n"`, the body's length and FNV-1a 64 hash (16 hex digits).
//! - `GET /chunked-slow`: five chunks `chunk 1\n` .. `chunk 5\n`, 100 ms apart.
//! - `GET /headers`: the request's header fields, `name: value\n` each, names as received.
//!
//! Request bodies may be `Content-Length` or chunked; `Expect: 100-continue` gets
//! `HTTP/1.1 100 Continue` before the body is read. Every request head is logged as
//! `"METHOD TARGET"` ([`Origin::requests`]), and accepted connections are counted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::pattern::{pattern_piece, sink_reply, Fnv64, PIECE};
use super::pki::{Cert, ORIGIN_HOST};
use super::wire::{Framing, Head, Wire};

pub const HELLO: &str = "hello world\n";

/// How long an origin connection may sit idle before its thread gives up.
const ORIGIN_IO_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
const MAX_ECHO: u64 = 64 * 1024 * 1024;

/// A listener on `127.0.0.1:0` that runs `handler` on a thread per accepted connection. On
/// drop it stops accepting and shuts every open connection down.
pub struct TcpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// The test origin; see the module docs for its routes.
pub struct Origin {
    server: TcpServer,
    log: Arc<Mutex<Vec<String>>>,
    /// Whether it speaks TLS; its URLs are then `https://localhost:PORT`.
    tls: bool,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicUsize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl TcpServer {
    pub fn start<F>(handler: F) -> TcpServer
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        // std's backlog is 128: a proxy opening hundreds of connections at once (the
        // slow-client tests) overflowed it, and a connection the kernel dropped from a full
        // queue after the proxy had sent on it came back as a reset ("server closed").
        // Listening again on a listening socket only sets the backlog.
        // SAFETY: a valid listening descriptor, owned by `listener` for the call.
        let relisten = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
        assert_eq!(relisten, 0, "listen: {}", std::io::Error::last_os_error());
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared::default());
        let handler = Arc::new(handler);
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared, handler))
        };
        TcpServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; if that fails, leave the thread behind rather than hang.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.accept.take() {
            if woke {
                let _ = t.join();
            }
        }
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(|p| p.into_inner()));
        for s in open.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Origin {
    pub fn start() -> Origin {
        let log = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let log = log.clone();
            TcpServer::start(move |s| serve_plain(s, &log))
        };
        Origin {
            server,
            log,
            tls: false,
        }
    }

    /// The same origin over TLS, presenting `cert` (ALPN `http/1.1`).
    pub fn start_tls(cert: &Cert) -> Origin {
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = cert.server_config();
        let server = {
            let log = log.clone();
            TcpServer::start(move |s| serve_tls(s, config.clone(), &log))
        };
        Origin {
            server,
            log,
            tls: true,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:PORT`, or `localhost:PORT` for a TLS origin: what the client names.
    pub fn authority(&self) -> String {
        if self.tls {
            format!("{ORIGIN_HOST}:{}", self.port())
        } else {
            self.server.authority()
        }
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://{}{path}", self.authority())
        } else {
            self.server.url(path)
        }
    }

    /// `https://127.0.0.1:PORT` followed by `path`: a TLS origin by address, without SNI.
    pub fn ip_url(&self, path: &str) -> String {
        assert!(
            self.tls,
            "ip_url is for TLS origins; url() already uses the address"
        );
        format!("https://{}{path}", self.server.authority())
    }

    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Every request head received so far, as `"METHOD TARGET"`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Returns a port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A [`TcpServer`] handler: reads a request head, answers `200` with `Content-Length: 1000000`
/// but only 1000 body bytes, and closes.
pub fn close_mid_body(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(ORIGIN_IO_TIMEOUT));
    let mut w = Wire::new(stream);
    if let Ok(Some(_)) = w.read_head(64 * 1024) {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        out.extend_from_slice(pattern_piece(0, 1000));
        let _ = w.write_all(&out);
    }
}

/// A [`TcpServer`] handler: reads a request head, then never answers; it returns when the
/// peer closes, the server is dropped, or 30 s pass.
pub fn never_answer(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(ORIGIN_IO_TIMEOUT));
    let mut w = Wire::new(stream);
    if let Ok(Some(_)) = w.read_head(64 * 1024) {
        let _ = w.read_body(Framing::UntilClose, &mut |_| {});
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    handler: Arc<dyn Fn(TcpStream) + Send + Sync>,
) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(c) = conn.try_clone() {
            shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, c);
        }
        let shared = shared.clone();
        let handler = handler.clone();
        thread::spawn(move || {
            handler(conn);
            // The clone kept for shutdown holds the socket open: close it explicitly, so the
            // peer sees the end of the connection when the handler returns.
            let kept = shared
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(s) = kept {
                let _ = s.shutdown(Shutdown::Both);
            }
        });
    }
}

fn serve_plain(stream: TcpStream, log: &Mutex<Vec<String>>) {
    set_timeouts(&stream);
    serve(&mut Wire::new(stream), log);
}

/// Serves one connection over TLS. The handshake runs on the first read; a client that
/// rejects the certificate ends the connection there. Closes with `close_notify`.
fn serve_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>, log: &Mutex<Vec<String>>) {
    set_timeouts(&stream);
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut w = Wire::new(rustls::StreamOwned::new(conn, stream));
    serve(&mut w, log);
    let tls = w.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn set_timeouts(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(ORIGIN_IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ORIGIN_IO_TIMEOUT));
}

fn serve<S: Read + Write>(w: &mut Wire<S>, log: &Mutex<Vec<String>>) {
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let head = match w.read_head(64 * 1024) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                let _ = reply(
                    w,
                    400,
                    &[],
                    format!("origin: bad request head: {e}\n").as_bytes(),
                    false,
                );
                return;
            }
        };
        match handle(w, &head, log) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Serves one request; `Ok(true)` when the connection stays open for another.
fn handle<S: Read + Write>(
    w: &mut Wire<S>,
    head: &Head,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<bool> {
    let mut parts = head.start.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") => (m, t, v),
        _ => {
            reply(w, 400, &[], b"origin: bad request line\n", false)?;
            return Ok(false);
        }
    };
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{method} {target}"));
    let framing = match head.request_framing() {
        Ok(f) => f,
        Err(e) => {
            reply(w, 400, &[], format!("origin: {e}\n").as_bytes(), false)?;
            return Ok(false);
        }
    };
    let keep = version == "HTTP/1.1" && !head.has_token("connection", "close");
    let expects = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects && framing != Framing::Empty {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let (path, query) = split_target(target);
    match (method, path) {
        ("GET" | "HEAD", "/hello") => {
            discard(w, framing)?;
            let headers = [("Content-Type", "text/plain")];
            reply_full(w, 200, &headers, HELLO.as_bytes(), keep, method == "HEAD")?;
        }
        ("POST", "/echo") => {
            if matches!(framing, Framing::Length(n) if n > MAX_ECHO) {
                reply(w, 413, &[], b"origin: echo body too large\n", false)?;
                return Ok(false);
            }
            let mut body = Vec::new();
            w.read_body(framing, &mut |d| body.extend_from_slice(d))?;
            reply(
                w,
                200,
                &[("Content-Type", "application/octet-stream")],
                &body,
                keep,
            )?;
        }
        ("GET", "/big") => {
            discard(w, framing)?;
            let n = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .and_then(|n| n.parse::<u64>().ok());
            let Some(n) = n else {
                reply(w, 400, &[], b"origin: /big needs n=BYTES\n", false)?;
                return Ok(false);
            };
            let head = response_head(
                200,
                &[("Content-Type", "application/octet-stream")],
                Some(n),
                keep,
            );
            w.write_all(head.as_bytes())?;
            let mut sent = 0;
            while sent < n {
                let len = PIECE.min((n - sent) as usize);
                w.write_all(pattern_piece(sent, len))?;
                sent += len as u64;
            }
        }
        ("POST", "/sink") => {
            let mut hash = Fnv64::new();
            let len = w.read_body(framing, &mut |d| hash.update(d))?;
            reply(
                w,
                200,
                &[("Content-Type", "text/plain")],
                sink_reply(len, hash.finish()).as_bytes(),
                keep,
            )?;
        }
        ("GET", "/chunked-slow") => {
            discard(w, framing)?;
            let mut out = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
            );
            if !keep {
                out.push_str("Connection: close\r\n");
            }
            out.push_str("\r\n");
            w.write_all(out.as_bytes())?;
            for k in 1..=5 {
                if k > 1 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let data = format!("chunk {k}\n");
                w.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
        ("GET", "/headers") => {
            discard(w, framing)?;
            let body: String = head
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}\n"))
                .collect();
            reply(
                w,
                200,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
                keep,
            )?;
        }
        _ => {
            discard(w, framing)?;
            reply(
                w,
                404,
                &[],
                format!("origin: no route for {method} {path}\n").as_bytes(),
                keep,
            )?;
        }
    }
    Ok(keep)
}

/// Splits a request target into path and query; an absolute-form target loses its
/// `http://authority` prefix.
fn split_target(target: &str) -> (&str, &str) {
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    path.split_once('?').unwrap_or((path, ""))
}

fn discard<S: Read + Write>(w: &mut Wire<S>, framing: Framing) -> std::io::Result<()> {
    w.read_body(framing, &mut |_| {}).map(|_| ())
}

fn reply<S: Read + Write>(
    w: &mut Wire<S>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep: bool,
) -> std::io::Result<()> {
    reply_full(w, status, headers, body, keep, false)
}

fn reply_full<S: Read + Write>(
    w: &mut Wire<S>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = response_head(status, headers, Some(body.len() as u64), keep).into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    w.write_all(&out)
}

fn response_head(status: u16, headers: &[(&str, &str)], len: Option<u64>, keep: bool) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        _ => "Whatever",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(len) = len {
        out.push_str(&format!("Content-Length: {len}\r\n"));
    }
    if !keep {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out
}
