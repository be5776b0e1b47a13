//! An HTTP/2 origin: the `h2` crate's server on a tokio runtime of its own thread, over TLS
//! (tokio-rustls, ALPN `h2` only, a certificate from [`super::pki`]) or plain with prior
//! knowledge (h2c).
//!
//! Routes, mirroring [`super::Origin`]'s:
//!
//! - `GET /hello`, `HEAD /hello`: `hello world\n` with `content-length: 12`.
//! - `POST /echo`: the request body back, with `content-length`.
//! - `GET /big?n=N`: N bytes of [`pattern`](super::pattern), sent as the client's window
//!   allows (`reserve_capacity`/`poll_capacity`), never more than 64 KiB queued.
//! - `POST /sink`: `"LEN HASH\n"`, the body's length and FNV-1a 64 hash; with
//!   `?delay_ms=N`, it starts reading the body only after N milliseconds.
//! - `GET /grpc-stream`: `content-type: application/grpc`, five length-prefixed messages
//!   ([`grpc_message`]) 100 ms apart, then the trailers `grpc-status: 0`, `grpc-message: ok`.
//! - `GET /trailers`: [`TRAILERS_BODY`], then the trailer `x-checksum: 5ca1ab1e`.
//! - `GET /headers`: `:authority`, `:scheme`, `:path`, then every header field, `name: value\n`
//!   each.
//! - `GET /reset?when=before|after`: RST_STREAM with INTERNAL_ERROR instead of a response
//!   (`before`), or after the head and 1000 body bytes (`after`).
//! - `GET /slow?ms=N`: `hello world\n` after N milliseconds.
//!
//! - `CONNECT /echo` with `:protocol websocket` (RFC 8441, which the origin enables): `200`,
//!   then every WebSocket message the client sends comes back (unmasked, fragments joined);
//!   a close frame is answered with the same close and the end of the stream, and logged as
//!   `"websocket close CODE REASON"`.
//!
//! A request with `expect: 100-continue` gets a `100` response first.
//!
//! Every request is logged as `"METHOD PATH"` ([`H2Origin::requests`]), every stream that
//! failed while being served as `"METHOD PATH: ERROR"` ([`H2Origin::failures`]); accepted
//! TCP connections and `/big` bytes sent are counted. [`H2Origin::kick`] drops or shuts down
//! every open connection. Every handler is bounded by [`HANDLER_TIMEOUT`].

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::origin::HELLO;
use super::pattern::{pattern_piece, sink_reply, Fnv64, PIECE};
use super::pki::{Cert, ORIGIN_HOST};

/// How long one request may take the origin, whatever the client does.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(90);
/// The body of `/trailers`.
pub const TRAILERS_BODY: &str = "the trailer follows\n";
/// The trailer `/trailers` ends with.
pub const TRAILER: (&str, &str) = ("x-checksum", "5ca1ab1e");
/// Body bytes `/reset?when=after` sends before its reset.
pub const RESET_AFTER: usize = 1000;
const MAX_ECHO: usize = 64 * 1024 * 1024;

/// The HTTP/2 test origin; stops (and drops every connection) on drop.
pub struct H2Origin {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    kick: watch::Sender<Kick>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How [`H2Origin::kick`] ends the open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Nothing (the value before any kick).
    None,
    /// Close the TCP connection, no GOAWAY.
    Drop,
    /// GOAWAY, letting streams in progress finish.
    GoAway,
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    connections: AtomicUsize,
    big_sent: AtomicU64,
    max_streams: Option<u32>,
}

/// gRPC message `k` of `/grpc-stream`: a zero compression flag, a 4-byte big-endian length,
/// and `message K`.
pub fn grpc_message(k: usize) -> Vec<u8> {
    let payload = format!("message {k}");
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload.as_bytes());
    out
}

impl H2Origin {
    /// Over TLS, presenting `cert`, offering only ALPN `h2`.
    pub fn start_tls(cert: &Cert) -> H2Origin {
        let mut config = (*cert.server_config()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        H2Origin::start(Some(TlsAcceptor::from(Arc::new(config))), None)
    }

    /// Plain HTTP/2 with prior knowledge.
    pub fn start_h2c() -> H2Origin {
        H2Origin::start(None, None)
    }

    /// Plain HTTP/2, allowing each connection at most `max_streams` concurrent streams.
    pub fn start_h2c_with_max_streams(max_streams: u32) -> H2Origin {
        H2Origin::start(None, Some(max_streams))
    }

    fn start(tls: Option<TlsAcceptor>, max_streams: Option<u32>) -> H2Origin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local_addr");
        let (stop, stopped) = oneshot::channel();
        let (kick, kicked) = watch::channel(Kick::None);
        let state = Arc::new(State {
            max_streams,
            ..State::default()
        });
        let is_tls = tls.is_some();
        let thread = {
            let state = state.clone();
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("origin runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, tls, state, kicked) => {}
                        _ = stopped => {}
                    }
                });
                // Connections still open are dropped with their tasks.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
        };
        H2Origin {
            addr,
            tls: is_tls,
            state,
            kick,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `localhost:PORT` over TLS (what the certificate names), `127.0.0.1:PORT` in plain.
    pub fn authority(&self) -> String {
        if self.tls {
            format!("{ORIGIN_HOST}:{}", self.port())
        } else {
            self.addr.to_string()
        }
    }

    /// `https://localhost:PORT` or `http://127.0.0.1:PORT`, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, as `"METHOD PATH"`.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stream that failed while being served, as `"METHOD PATH: ERROR"`.
    pub fn failures(&self) -> Vec<String> {
        self.state
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `/big` body bytes handed to h2 so far (the client's window allowed them).
    pub fn big_sent(&self) -> u64 {
        self.state.big_sent.load(Ordering::SeqCst)
    }

    /// Ends every connection open now, as `how` says; later ones are served as usual.
    pub fn kick(&self, how: Kick) {
        // Each connection's receiver sees the change, whatever the value was before.
        self.kick.send_replace(how);
    }
}

impl Drop for H2Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            // The runtime gives its tasks at most a second; a thread that still does not end
            // is left behind rather than hang the test.
            for _ in 0..300 {
                if t.is_finished() {
                    let _ = t.join();
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    kicked: watch::Receiver<Kick>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let _ = tcp.set_nodelay(true);
        let (tls, state) = (tls.clone(), state.clone());
        let mut kicked = kicked.clone();
        kicked.mark_unchanged();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    if let Ok(Ok(stream)) = handshake.await {
                        serve(stream, state, kicked).await;
                    }
                }
                None => serve(tcp, state, kicked).await,
            }
        });
    }
}

async fn serve<T>(io: T, state: Arc<State>, mut kicked: watch::Receiver<Kick>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder.enable_connect_protocol();
    if let Some(n) = state.max_streams {
        builder.max_concurrent_streams(n);
    }
    let handshake = tokio::time::timeout(Duration::from_secs(10), builder.handshake(io));
    let Ok(Ok(mut conn)) = handshake.await else {
        return;
    };
    // Polling `accept` drives the connection; each stream is served by a task of its own.
    loop {
        let (request, respond) = tokio::select! {
            next = conn.accept() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(_)) | None => return,
            },
            changed = kicked.changed() => {
                match (changed, *kicked.borrow_and_update()) {
                    (Err(_), _) | (Ok(()), Kick::Drop) => return,
                    (Ok(()), Kick::GoAway) => conn.graceful_shutdown(),
                    (Ok(()), Kick::None) => {}
                }
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let what = format!("{} {}", request.method(), request.uri().path());
            let result =
                tokio::time::timeout(HANDLER_TIMEOUT, handle(request, respond, &state)).await;
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("took over {HANDLER_TIMEOUT:?}"),
            };
            let mut failures = state.failures.lock().unwrap_or_else(|p| p.into_inner());
            failures.push(format!("{what}: {error}"));
        });
    }
}

async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    state: &State,
) -> Result<(), h2::Error> {
    let (head, mut body) = request.into_parts();
    let path = head.uri.path().to_owned();
    let query = head.uri.query().unwrap_or("").to_owned();
    let method = head.method.as_str().to_owned();
    state
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{method} {path}"));
    // As an HTTP/1.1 server would, say 100 before reading a body the client holds back.
    let expects = head
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        let mut interim = Response::new(());
        *interim.status_mut() = StatusCode::CONTINUE;
        respond.send_informational(interim)?;
    }
    let arg = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };

    let protocol = head.extensions.get::<h2::ext::Protocol>().map(|p| p.as_str().to_owned());
    match (method.as_str(), path.as_str()) {
        ("CONNECT", "/echo") if protocol.as_deref() == Some("websocket") => {
            let mut send = respond.send_response(response(200, "text/plain", None), false)?;
            let closed = websocket_echo(&mut body, &mut send).await?;
            state.log.lock().unwrap_or_else(|p| p.into_inner()).push(closed);
        }
        ("GET" | "HEAD", "/hello") => {
            discard(&mut body).await?;
            let head_only = method == "HEAD";
            let mut send =
                respond.send_response(response(200, "text/plain", Some(HELLO.len())), head_only)?;
            if !head_only {
                send_body(&mut send, Bytes::from_static(HELLO.as_bytes()), true).await?;
            }
        }
        ("POST", "/echo") => {
            let mut data = BytesMut::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if data.len() + chunk.len() > MAX_ECHO {
                    respond.send_reset(Reason::REFUSED_STREAM);
                    return Ok(());
                }
                data.extend_from_slice(&chunk);
            }
            let data = data.freeze();
            let mut send = respond.send_response(
                response(200, "application/octet-stream", Some(data.len())),
                data.is_empty(),
            )?;
            if !data.is_empty() {
                send_body(&mut send, data, true).await?;
            }
        }
        ("GET", "/big") => {
            discard(&mut body).await?;
            let Some(n) = arg("n").and_then(|n| n.parse::<u64>().ok()) else {
                return text(&mut respond, 400, "origin: /big needs n=BYTES\n").await;
            };
            let mut send = respond.send_response(
                response(200, "application/octet-stream", Some(n as usize)),
                n == 0,
            )?;
            let mut sent = 0;
            while sent < n {
                let want = PIECE.min((n - sent) as usize);
                let len = capacity(&mut send, want).await?;
                let end = sent + len as u64 == n;
                send.send_data(Bytes::from_static(pattern_piece(sent, len)), end)?;
                sent += len as u64;
                state.big_sent.fetch_add(len as u64, Ordering::SeqCst);
            }
        }
        ("POST", "/sink") => {
            if let Some(ms) = arg("delay_ms").and_then(|ms| ms.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let (mut hash, mut len) = (Fnv64::new(), 0u64);
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                hash.update(&chunk);
                len += chunk.len() as u64;
            }
            let reply = sink_reply(len, hash.finish());
            text(&mut respond, 200, &reply).await?;
        }
        ("GET", "/grpc-stream") => {
            discard(&mut body).await?;
            let mut send = respond.send_response(response(200, "application/grpc", None), false)?;
            for k in 1..=5 {
                if k > 1 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                send_body(&mut send, Bytes::from(grpc_message(k)), false).await?;
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert("grpc-message", HeaderValue::from_static("ok"));
            send.send_trailers(trailers)?;
        }
        ("GET", "/trailers") => {
            discard(&mut body).await?;
            let mut send = respond.send_response(response(200, "text/plain", None), false)?;
            send_body(
                &mut send,
                Bytes::from_static(TRAILERS_BODY.as_bytes()),
                false,
            )
            .await?;
            let mut trailers = HeaderMap::new();
            trailers.insert(TRAILER.0, HeaderValue::from_static(TRAILER.1));
            send.send_trailers(trailers)?;
        }
        ("GET", "/headers") => {
            discard(&mut body).await?;
            let authority = head.uri.authority().map_or("", |a| a.as_str());
            let scheme = head.uri.scheme_str().unwrap_or("");
            let mut out = format!(":authority: {authority}\n:scheme: {scheme}\n:path: {path}\n");
            for (name, value) in &head.headers {
                out.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            text(&mut respond, 200, &out).await?;
        }
        ("GET", "/reset") => {
            discard(&mut body).await?;
            match arg("when").as_deref() {
                Some("before") => respond.send_reset(Reason::INTERNAL_ERROR),
                Some("after") => {
                    let mut send = respond.send_response(
                        response(200, "application/octet-stream", Some(1_000_000)),
                        false,
                    )?;
                    send_body(
                        &mut send,
                        Bytes::from_static(pattern_piece(0, RESET_AFTER)),
                        false,
                    )
                    .await?;
                    // Let the head and the bytes leave before the reset.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    send.send_reset(Reason::INTERNAL_ERROR);
                }
                _ => {
                    return text(
                        &mut respond,
                        400,
                        "origin: /reset needs when=before|after\n",
                    )
                    .await
                }
            }
        }
        ("GET", "/slow") => {
            discard(&mut body).await?;
            let ms = arg("ms").and_then(|ms| ms.parse().ok()).unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let mut send =
                respond.send_response(response(200, "text/plain", Some(HELLO.len())), false)?;
            send_body(&mut send, Bytes::from_static(HELLO.as_bytes()), true).await?;
        }
        _ => {
            discard(&mut body).await?;
            text(
                &mut respond,
                404,
                &format!("origin: no route for {method} {path}\n"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Echo the client's WebSocket messages on an RFC 8441 stream until its close frame, which
/// is answered in kind; returns `"websocket close CODE REASON"`.
async fn websocket_echo(body: &mut RecvStream, send: &mut SendStream<Bytes>) -> Result<String, h2::Error> {
    let (mut buf, mut message) = (Vec::<u8>::new(), Vec::<u8>::new());
    let mut opcode = 0;
    loop {
        // One whole client frame, masked as RFC 6455 requires of clients.
        while let Some((fin, op, payload, used)) = client_frame(&buf) {
            buf.drain(..used);
            match op {
                0x8 => {
                    let mut close = vec![0x88, payload.len() as u8];
                    close.extend_from_slice(&payload);
                    send.send_data(Bytes::from(close), true)?;
                    let code = payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    return Ok(format!("websocket close {code} {reason}"));
                }
                0x9 | 0xa => {}
                _ => {
                    if op != 0 {
                        opcode = op;
                    }
                    message.extend_from_slice(&payload);
                    if fin {
                        let payload = std::mem::take(&mut message);
                        let mut frame = vec![0x80 | opcode];
                        match payload.len() {
                            n if n < 126 => frame.push(n as u8),
                            n if n <= 0xffff => {
                                frame.push(126);
                                frame.extend_from_slice(&(n as u16).to_be_bytes());
                            }
                            n => {
                                frame.push(127);
                                frame.extend_from_slice(&(n as u64).to_be_bytes());
                            }
                        }
                        frame.extend_from_slice(&payload);
                        send_body(send, Bytes::from(frame), false).await?;
                    }
                }
            }
        }
        let Some(chunk) = body.data().await else {
            return Ok("websocket ended without a close frame".into());
        };
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
}

/// A masked frame at the start of `buf`: FIN, opcode, unmasked payload, bytes used.
fn client_frame(buf: &[u8]) -> Option<(bool, u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert!(buf[1] & 0x80 != 0, "a client's frame is masked");
    let (len, at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let key: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    let payload = buf.get(at + 4..at + 4 + len)?;
    let payload = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    Some((buf[0] & 0x80 != 0, buf[0] & 0x0f, payload, at + 4 + len))
}

fn response(status: u16, content_type: &str, len: Option<usize>) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    let headers = r.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_str(content_type).expect("a valid value"),
    );
    if let Some(len) = len {
        headers.insert("content-length", HeaderValue::from(len));
    }
    r
}

async fn text(respond: &mut SendResponse<Bytes>, status: u16, body: &str) -> Result<(), h2::Error> {
    let mut send =
        respond.send_response(response(status, "text/plain", Some(body.len())), false)?;
    send_body(&mut send, Bytes::copy_from_slice(body.as_bytes()), true).await
}

/// Reads and drops a request body, giving its window back.
async fn discard(body: &mut RecvStream) -> Result<(), h2::Error> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(())
}

/// Waits until the peer's window lets at least one byte of `want` go; returns how many may.
async fn capacity(send: &mut SendStream<Bytes>, want: usize) -> Result<usize, h2::Error> {
    send.reserve_capacity(want);
    loop {
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => return Ok(n.min(want)),
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::CANCEL)),
        }
    }
}

/// Sends `data` as the window allows, ending the stream after it if `end`.
async fn send_body(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        let n = capacity(send, data.len()).await?;
        let chunk = data.split_to(n);
        send.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}
