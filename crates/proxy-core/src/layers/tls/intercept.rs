//! What a `CONNECT` tunnel turns into when TLS interception is on.
//!
//! The tunnel's server connection is already open (the client got its `200`). The first bytes
//! the client sends decide the rest, as in mitmproxy's next-layer logic:
//!
//! - a TLS `ClientHello`: read it with rustls's [`Acceptor`], raise
//!   [`Hook::TlsClientHello`], and unless the hook or `ignore_hosts` ask for passthrough,
//!   intercept: handshake with the server first (with the client's SNI and the ALPN protocols
//!   we can speak), so that the certificate minted for the client can copy the server's
//!   names, then finish the client's handshake and run HTTP over both;
//! - an HTTP request line: plain HTTP through the tunnel, parsed like any other;
//! - anything else, or the server speaking first: a raw tunnel.
//!
//! When the server's handshake fails, the client's still completes, so that it can read a
//! `502` naming the cause instead of a bare connection reset.
//!
//! The tunnel's server connection may be one another client connection parked, TLS and all
//! (see `upstreams`): then a client whose ClientHello names the server it connected to (or
//! nothing) has its handshake completed at once, from what that session knows of the server
//! (its certificate, its protocol), and no handshake with the server happens at all. A client
//! that names another server or does not speak TLS cannot use it: it is closed, a new
//! connection opened, and what the client sent is read again as if it had just come.
//!
//! The same layer terminates TLS that clients speak to the proxy itself, with no tunnel and no
//! server yet: in reverse mode ([`Intercept::reverse`]), and on a regular listener, where a
//! client that starts with a ClientHello uses the proxy as a secure web proxy
//! ([`Intercept::secure_proxy`]) and the HTTP inside is an explicit proxy's; a `CONNECT` in
//! there that is intercepted in turn is TLS inside TLS, both sessions in the core's buffers.
//! Plain clients of the same listener are served as if the layer were not there.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rustls::server::{Accepted, AcceptedAlert, Acceptor, ClientHello as RustlsHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::open_error::OpenError;
use crate::hook::{Hook, HookKind, HookReply};
use crate::ids::{ConnId, FlowId, Scheme, ServerAddr};
use crate::layer::{Child, Handover, Layer, NextLayer};
use crate::layers::http::destination::Destination;
use crate::layers::http::pool::ServerConn;
use crate::layers::http::HttpLayer;
use crate::tls::session::TlsSession;
use crate::tls::{CertRequest, ClientHello, TlsCause, TlsConfig, TlsFailure, TlsPeer};
use crate::upstreams::ServerState;
use super::transport;
use crate::layers::tunnel::Tunnel;

/// ALPN protocols the HTTP layers can speak, in our order of preference.
const SUPPORTED_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The protocol the client gets, of those it offered that we speak (`offered`, best first).
///
/// What the server chose, if the client offered it: the client then sees the protocol it
/// would have had without us, as with mitmproxy, and nothing is translated. Otherwise (no
/// server yet, or one that chose what the client did not offer) the client's best, and the
/// HTTP layer translates between versions.
fn client_alpn(offered: Vec<Vec<u8>>, server: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match server {
        Some(chosen) if offered.contains(&chosen) => Some(chosen),
        _ => offered.into_iter().next(),
    }
}

/// The protocols we can speak, of those in `offered`, in our order of preference.
fn speakable(cx: &Context, offered: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let ours = SUPPORTED_ALPN.iter().filter(|p| cx.config.http2 || **p != b"h2");
    ours.filter(|p| offered.iter().any(|o| o.as_slice() == **p)).map(|p| p.to_vec()).collect()
}
/// How many bytes of a first line we look at to tell HTTP from other protocols.
const METHOD_SNIFF: usize = 24;

pub(crate) struct Intercept {
    /// The tunnel's server connection; `None` in reverse mode, where nothing is open yet.
    server: Option<ConnId>,
    /// Where the client's requests go.
    target: ServerAddr,
    /// How they get there.
    scheme: Scheme,
    /// The name a minted certificate must carry when the client sends no SNI.
    cert_host: String,
    state: State,
    /// What the HTTP layer inside becomes when it hands over (a `101` inside the connection).
    next: NextLayer,
    /// Until the client's handshake is done (or we know it speaks something else): a client
    /// that sends nothing, or too slowly, is cut off here.
    deadline: Option<Instant>,
    /// The client is speaking to the proxy itself as an explicit proxy (a secure web proxy):
    /// its requests name their servers.
    proxy: bool,
    /// The tunnel's server connection came from the shared pool: it speaks TLS already, in
    /// this HTTP state.
    pooled: Option<ServerState>,
}

/// What became of the server side before the client's handshake completes.
enum Upstream {
    /// Handshake done on the tunnel's server connection.
    Ready,
    /// The server's handshake failed: requests get this error.
    Failed(OpenError),
    /// Reverse mode: servers are contacted per request.
    Later,
}

enum State {
    /// Waiting for the client's first bytes.
    Peek { buf: BytesMut, acceptor: Box<Acceptor> },
    /// The `TlsClientHello` hook is pending.
    Hello { flow: FlowId, hello: ClientHello, raw: Bytes },
    /// Handshaking with the server, the client's handshake on hold.
    Upstream { raw: Bytes, hello: ClientHello },
    /// The pooled server connection did not suit the client: a new one is being opened, and
    /// what the client sent waits to be read again.
    Reopening { buf: BytesMut, eof: bool },
    /// HTTP, or a raw tunnel: what the client speaks inside.
    Running(Child),
    Closed,
}

impl Intercept {
    pub(crate) fn new(cx: &mut Context, now: Instant, handover: Handover, next: NextLayer) -> Self {
        let mut layer = Self {
            server: Some(handover.server),
            cert_host: handover.target.host.clone(),
            target: handover.target,
            scheme: Scheme::Https,
            state: State::Peek { buf: BytesMut::new(), acceptor: Box::default() },
            next,
            deadline: Some(now + cx.config.client_idle_timeout),
            proxy: false,
            pooled: handover.pooled,
        };
        cx.set_layer_pause(ConnId::CLIENT, false);
        cx.set_layer_pause(handover.server, false);
        if !handover.server_rest.is_empty() {
            // The server spoke first: not a protocol we look into.
            layer.tunnel(cx, handover.client_rest, handover.server_rest, handover.client_eof);
            return layer;
        }
        if !handover.client_rest.is_empty() {
            layer.client_data(cx, now, handover.client_rest);
        }
        if handover.client_eof {
            layer.handle(cx, now, Event::ConnectionClosed { conn: ConnId::CLIENT });
        }
        layer
    }

    /// Reverse mode with TLS towards clients: terminate it, then send requests to `target`.
    pub(crate) fn reverse(cx: &Context, scheme: Scheme, target: ServerAddr, next: NextLayer) -> Self {
        let cert_host = cx.client.local.ip().to_string();
        let state = State::Peek { buf: BytesMut::new(), acceptor: Box::default() };
        Self { server: None, target, scheme, cert_host, state, next, deadline: None, proxy: false, pooled: None }
    }

    /// A regular listener with interception on: a client that starts with a ClientHello gets
    /// a certificate for its SNI (else the listening address) and speaks HTTP proxy requests
    /// inside; any other client is a plain HTTP proxy client. What the HTTP inside hands over
    /// (a `CONNECT`) becomes `next`'s.
    pub(crate) fn secure_proxy(cx: &Context, next: NextLayer) -> Self {
        let cert_host = cx.client.local.ip().to_string();
        let state = State::Peek { buf: BytesMut::new(), acceptor: Box::default() };
        let target = ServerAddr::new(cert_host.clone(), cx.client.local.port());
        Self { server: None, target, scheme: Scheme::Http, cert_host, state, next, deadline: None, proxy: true, pooled: None }
    }

    fn tls(cx: &Context) -> &TlsConfig {
        // Both ways in (`new` after a CONNECT, `reverse`) are taken only when `Config::tls` is
        // set: see `layers::mode`.
        cx.config.tls.as_ref().expect("interception runs only with a TLS configuration")
    }

    /// Bytes from the client while we are still deciding what it speaks.
    fn client_data(&mut self, cx: &mut Context, now: Instant, data: Bytes) {
        let State::Peek { buf, acceptor, .. } = &mut self.state else { return };
        buf.extend_from_slice(&data);
        match buf[0] {
            0x16 => {
                let mut input = &data[..];
                while !input.is_empty() {
                    if acceptor.read_tls(&mut input).is_err() {
                        break;
                    }
                }
                match acceptor.accept() {
                    Ok(None) => {}
                    Ok(Some(accepted)) => {
                        let raw = std::mem::take(buf).freeze();
                        let sni = accepted.client_hello().server_name().map(str::to_owned);
                        if self.pooled.is_some() && sni.is_some_and(|sni| sni != self.target.host) {
                            return self.reopen(cx, raw);
                        }
                        self.client_hello(cx, now, &accepted, raw);
                    }
                    Err((error, alert)) => self.refuse(cx, &error, alert),
                }
            }
            _ if self.pooled.is_some() && sniff_http(buf).is_some() => {
                let data = std::mem::take(buf).freeze();
                self.reopen(cx, data);
            }
            _ => match sniff_http(buf) {
                None => {}
                Some(true) => {
                    let data = std::mem::take(buf).freeze();
                    self.plain_http(cx, now, data);
                }
                // With no tunnel to pass it through (the client speaks to the proxy itself),
                // the HTTP layer says what is wrong with it.
                Some(false) if self.server.is_none() => {
                    let data = std::mem::take(buf).freeze();
                    self.plain_http(cx, now, data);
                }
                Some(false) => {
                    let data = std::mem::take(buf).freeze();
                    self.tunnel(cx, data, Bytes::new(), false);
                }
            },
        }
    }

    /// The pooled server connection cannot serve this client (it named another server, or
    /// speaks something else than TLS): close it and open a new one, keeping what the client
    /// sent (`data`) to read again once it is open.
    fn reopen(&mut self, cx: &mut Context, data: Bytes) {
        self.pooled = None;
        if let Some(server) = self.server {
            cx.close(server, false);
        }
        cx.log(LogLevel::Debug, format!("client {}: a new connection to {} instead of a pooled one", cx.client.peer, self.target));
        self.server = Some(cx.open(self.target.clone()));
        cx.set_layer_pause(ConnId::CLIENT, true);
        self.state = State::Reopening { buf: BytesMut::from(&data[..]), eof: false };
    }

    /// The client's `ClientHello` (all of `raw`, the bytes it sent so far) was read.
    fn client_hello(&mut self, cx: &mut Context, now: Instant, accepted: &Accepted, raw: Bytes) {
        let hello = describe_hello(&self.target, &accepted.client_hello());
        let tls = Self::tls(cx);
        let port = self.target.port;
        let ignored = tls.ignore_hosts.iter().any(|pattern| {
            pattern.is_match(&format!("{}:{port}", self.target.host))
                || hello.server_name.as_ref().is_some_and(|sni| pattern.is_match(&format!("{sni}:{port}")))
        });
        if ignored && self.server.is_some() {
            cx.log(LogLevel::Debug, format!("passing TLS to {} through (ignore_hosts)", self.target));
            return self.tunnel(cx, raw, Bytes::new(), false);
        }
        if cx.config.hooks.contains(HookKind::TlsClientHello) {
            let flow = cx.next_flow_id();
            cx.set_layer_pause(ConnId::CLIENT, true);
            cx.hook(flow, Hook::TlsClientHello { flow, hello: hello.clone() });
            self.state = State::Hello { flow, hello, raw };
            return;
        }
        self.start_upstream(cx, now, raw, hello);
    }

    /// Handshake with the server, offering what the client offered and we can speak.
    fn start_upstream(&mut self, cx: &mut Context, now: Instant, raw: Bytes, hello: ClientHello) {
        let Some(server) = self.server else {
            return self.finish_client(cx, now, raw, hello, Upstream::Later);
        };
        if self.pooled.is_some() {
            // Its handshake was done for an earlier client: nothing to wait for.
            return self.finish_client(cx, now, raw, hello, Upstream::Ready);
        }
        // Whatever HTTP the client speaks, the HTTP layer translates to what the server
        // chooses; a client that offers only other protocols gets none from us.
        let http = hello.alpn.is_empty() || !speakable(cx, &hello.alpn).is_empty();
        let all: Vec<Vec<u8>> = SUPPORTED_ALPN.iter().map(|p| p.to_vec()).collect();
        let alpn = if http { speakable(cx, &all) } else { Vec::new() };
        let name = hello.server_name.clone().unwrap_or_else(|| self.target.host.clone());
        cx.set_layer_pause(ConnId::CLIENT, true);
        match cx.start_tls_client(server, self.target.clone(), &name, alpn) {
            Ok(()) => self.state = State::Upstream { raw, hello },
            Err(error) => {
                cx.close(server, false);
                self.finish_client(cx, now, raw, hello, Upstream::Failed(error.open_error()));
            }
        }
    }

    /// Complete the client's handshake with a minted certificate, then serve HTTP over it.
    fn finish_client(
        &mut self,
        cx: &mut Context,
        now: Instant,
        raw: Bytes,
        hello: ClientHello,
        upstream: Upstream,
    ) {
        let server_tls = match (&upstream, self.server) {
            (Upstream::Ready, Some(server)) => cx.tls(server),
            _ => None,
        };
        let upstream_cert = server_tls.and_then(|t| t.peer_certificates().into_iter().next());
        // A server that chose no protocol speaks HTTP/1.1.
        let server_alpn = server_tls.map(|t| t.alpn().unwrap_or_else(|| b"http/1.1".to_vec()));
        let request =
            CertRequest { server_name: hello.server_name.clone(), target_host: self.cert_host.clone(), upstream_cert };
        let tls = Self::tls(cx);
        let key = match tls.issuer.issue(&request) {
            Ok(key) => key,
            Err(message) => {
                cx.log(LogLevel::Warn, format!("cannot mint a certificate for {}: {message}", self.target));
                return self.close(cx);
            }
        };
        let mut config = (*tls.server).clone();
        config.cert_resolver = Arc::new(OneCert(key));
        let offered = speakable(cx, &hello.alpn);
        let alpn = client_alpn(offered, server_alpn);
        // An HTTP/2 client has its requests on one connection already: the server connection
        // made for it stays its own, and shares nothing (see `HttpLayer::adopt_tunnel_server`).
        let multiplexed = alpn.as_deref() == Some(b"h2");
        config.alpn_protocols = alpn.into_iter().collect();
        let mut session = match TlsSession::server(Arc::new(config), self.target.clone(), hello.server_name) {
            Ok(session) => session,
            Err(error) => {
                cx.log(LogLevel::Warn, format!("cannot start TLS with client {}: {error}", cx.client.peer));
                return self.close(cx);
            }
        };
        // The session reads the ClientHello again (the acceptor only looked at it) and
        // answers it; so does it what the client sent after it, if anything.
        let answer = session.receive(raw);
        if let Some(error) = answer.error {
            // Not attached: the alert goes out under whatever protects the connection now (a
            // secure web proxy's own session) or none.
            cx.send(ConnId::CLIENT, answer.outgoing);
            transport::report(cx, "handshake", session.failure(ConnId::CLIENT, &error));
            return self.close(cx);
        }
        cx.attach_tls(ConnId::CLIENT, session);
        cx.send_raw(ConnId::CLIENT, answer.outgoing);
        let mut http = Box::new(self.http_layer(cx, self.scheme));
        match (upstream, self.server) {
            (Upstream::Ready, Some(_)) if self.pooled.is_some() => {
                let pooled = ServerConn::taken_on(self.pooled.take().expect("checked"));
                http.adopt_tunnel_server(cx, now, pooled, !multiplexed);
            }
            (Upstream::Ready, Some(server)) => http.adopt_server(cx, now, server, self.target.clone(), !multiplexed),
            (Upstream::Failed(error), _) => http.set_failed_upstream(self.target.clone(), error),
            _ => {}
        }
        let mut child = Child::new(http, self.next);
        child.handle(cx, now, Event::Start);
        self.state = State::Running(child);
    }

    fn plain_http(&mut self, cx: &mut Context, now: Instant, data: Bytes) {
        let mut http = Box::new(self.http_layer(cx, self.scheme_for_plain()));
        if let Some(server) = self.server {
            http.adopt_server(cx, now, server, self.target.clone(), true);
        }
        let mut child = Child::new(http, self.next);
        child.handle(cx, now, Event::Start);
        child.handle(cx, now, Event::DataReceived { conn: ConnId::CLIENT, data });
        self.state = State::Running(child);
    }

    /// The HTTP layer for what the client speaks inside, its requests going over `scheme`. A
    /// client of the proxy itself may open tunnels as HTTP/2 streams, which become what a
    /// `CONNECT` becomes.
    fn http_layer(&self, cx: &Context, scheme: Scheme) -> HttpLayer {
        let http = HttpLayer::for_destination(cx, self.destination(scheme));
        if self.proxy { http.carrying_tunnels(self.next) } else { http }
    }

    /// Where the client's requests go, over `scheme`: to the server of its `CONNECT`, or in
    /// reverse mode (no server yet) to the configured upstream whatever they name.
    fn destination(&self, scheme: Scheme) -> Destination {
        let target = self.target.clone();
        match self.server {
            _ if self.proxy => Destination::Named,
            Some(_) => Destination::Tunnel { scheme, target },
            None => Destination::Fixed { scheme, target },
        }
    }

    /// Plain HTTP through a `CONNECT` goes on plain; in reverse mode, as configured.
    fn scheme_for_plain(&self) -> Scheme {
        if self.server.is_some() { Scheme::Http } else { self.scheme }
    }

    fn tunnel(&mut self, cx: &mut Context, client_rest: Bytes, server_rest: Bytes, client_eof: bool) {
        let Some(server) = self.server else {
            cx.log(LogLevel::Info, format!("client {} speaks neither TLS nor HTTP", cx.client.peer));
            return self.close(cx);
        };
        let handover = Handover {
            server,
            target: self.target.clone(),
            connect: false,
            client_rest,
            server_rest,
            client_eof,
            websocket: None,
            pooled: None,
        };
        self.state = State::Running(Child::new(Box::new(Tunnel::new(cx, handover)), self.next));
    }

    /// The client's ClientHello cannot be read: send it rustls's alert, report why, close.
    fn refuse(&mut self, cx: &mut Context, error: &rustls::Error, mut alert: AcceptedAlert) {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = alert.write_all(&mut bytes);
        cx.send_raw(ConnId::CLIENT, bytes.into());
        let cause = TlsCause::from_rustls(error, TlsPeer::Client);
        let (server, conn, peer) = (self.target.clone(), ConnId::CLIENT, TlsPeer::Client);
        let failure = TlsFailure { conn, peer, server, server_name: None, cause, remedy: None };
        transport::report(cx, "handshake", failure);
        self.close(cx);
    }

    fn close(&mut self, cx: &mut Context) {
        cx.close(ConnId::CLIENT, false);
        if let Some(server) = self.server {
            cx.close(server, false);
        }
        self.state = State::Closed;
    }
}

impl Layer for Intercept {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        let client = ConnId::CLIENT;
        if !matches!(self.state, State::Running(_) | State::Closed) {
            match event {
                Event::Start => {
                    self.deadline = Some(now + cx.config.client_idle_timeout);
                    return;
                }
                Event::Wakeup if self.deadline.is_some_and(|d| d <= now) => {
                    cx.log(LogLevel::Info, format!("client {}: TLS handshake timed out", cx.client.peer));
                    return self.close(cx);
                }
                _ => {}
            }
        }
        match (&mut self.state, event) {
            (State::Running(child), event) => child.handle(cx, now, event),
            (State::Closed, _) => {}
            (State::Peek { .. }, Event::DataReceived { conn, data }) if conn == client => self.client_data(cx, now, data),
            // The pooled connection's server spoke (an HTTP/2 PING, a GOAWAY) or hung up before
            // the client said anything: it is not this client's to see; take a new one.
            (State::Peek { buf, .. }, Event::DataReceived { conn, .. } | Event::ConnectionClosed { conn })
                if self.pooled.is_some() && Some(conn) == self.server =>
            {
                let data = std::mem::take(buf).freeze();
                self.reopen(cx, data);
            }
            (State::Reopening { buf, .. }, Event::DataReceived { conn, data }) if conn == client => buf.extend_from_slice(&data),
            (State::Reopening { eof, .. }, Event::ConnectionClosed { conn }) if conn == client => *eof = true,
            (State::Reopening { .. }, Event::Opened { conn }) if Some(conn) == self.server => {
                let State::Reopening { buf, eof } = std::mem::replace(&mut self.state, State::Closed) else { unreachable!() };
                self.state = State::Peek { buf: BytesMut::new(), acceptor: Box::default() };
                cx.set_layer_pause(client, false);
                if !buf.is_empty() {
                    self.client_data(cx, now, buf.freeze());
                }
                if eof {
                    self.handle(cx, now, Event::ConnectionClosed { conn: client });
                }
            }
            (State::Reopening { .. }, Event::OpenFailed { conn, error }) if Some(conn) == self.server => {
                cx.log(LogLevel::Info, format!("client {}: cannot connect to {}: {error}", cx.client.peer, self.target));
                self.close(cx);
            }
            (State::Peek { buf, .. }, Event::DataReceived { conn, data }) if Some(conn) == self.server => {
                let client_rest = std::mem::take(buf).freeze();
                self.tunnel(cx, client_rest, data, false);
            }
            // The client ended before saying what it speaks: what it sent goes to the server as
            // through any tunnel, which a pooled TLS connection cannot carry.
            (State::Peek { buf, .. }, Event::ConnectionClosed { conn }) if self.pooled.is_some() && conn == client => {
                let data = std::mem::take(buf).freeze();
                if data.is_empty() {
                    // Nothing to pass on: the pooled connection goes with the client.
                    return self.close(cx);
                }
                self.reopen(cx, data);
                if let State::Reopening { eof, .. } = &mut self.state {
                    *eof = true;
                }
            }
            (State::Peek { buf, .. }, Event::ConnectionClosed { conn }) => {
                let client_rest = std::mem::take(buf).freeze();
                self.tunnel(cx, client_rest, Bytes::new(), conn == client);
                if conn != client {
                    self.handle(cx, now, Event::ConnectionClosed { conn });
                }
            }
            (State::Hello { flow, .. }, Event::HookReply { flow: replied, reply }) if *flow == replied => {
                let State::Hello { hello, raw, .. } = std::mem::replace(&mut self.state, State::Closed)
                else {
                    unreachable!()
                };
                match reply {
                    HookReply::Kill => self.close(cx),
                    HookReply::Passthrough if self.server.is_some() => {
                        cx.set_layer_pause(client, false);
                        self.tunnel(cx, raw, Bytes::new(), false);
                    }
                    _ => self.start_upstream(cx, now, raw, hello),
                }
            }
            (State::Upstream { .. }, Event::Opened { conn }) if Some(conn) == self.server => {
                let State::Upstream { raw, hello } = std::mem::replace(&mut self.state, State::Closed) else {
                    unreachable!()
                };
                self.finish_client(cx, now, raw, hello, Upstream::Ready);
            }
            // Also a server that hangs up mid-handshake: the record layer reports it as this.
            (State::Upstream { .. }, Event::OpenFailed { conn, error }) if Some(conn) == self.server => {
                let State::Upstream { raw, hello } = std::mem::replace(&mut self.state, State::Closed) else {
                    unreachable!()
                };
                self.finish_client(cx, now, raw, hello, Upstream::Failed(error));
            }
            (State::Hello { .. } | State::Upstream { .. }, Event::ConnectionClosed { conn }) if conn == client => {
                self.close(cx);
            }
            _ => {}
        }
    }

    fn wants_drained(&self) -> bool {
        match &self.state {
            State::Running(child) => child.wants_drained(),
            // Nothing of the handshake waits on the peers' reading.
            _ => false,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Running(child) => child.poll_timeout(),
            State::Closed => None,
            State::Peek { .. } | State::Hello { .. } | State::Upstream { .. } | State::Reopening { .. } => self.deadline,
        }
    }
}

/// Whether `buf` starts like an HTTP/1 request line: `None` while too short to tell.
fn sniff_http(buf: &[u8]) -> Option<bool> {
    for (i, &b) in buf.iter().take(METHOD_SNIFF).enumerate() {
        match b {
            b'A'..=b'Z' | b'-' => {}
            b' ' => return Some(i > 0),
            _ => return Some(false),
        }
    }
    if buf.len() >= METHOD_SNIFF { Some(false) } else { None }
}

fn describe_hello(target: &ServerAddr, hello: &RustlsHello<'_>) -> ClientHello {
    ClientHello {
        server: target.clone(),
        server_name: hello.server_name().map(str::to_owned),
        alpn: hello.alpn().map(|protocols| protocols.map(<[u8]>::to_vec).collect()).unwrap_or_default(),
    }
}

/// The certificate minted for one connection.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: RustlsHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::sniff_http;

    #[test]
    fn tells_http_from_other_protocols() {
        assert_eq!(sniff_http(b"GET / HTTP/1.1\r\n"), Some(true));
        assert_eq!(sniff_http(b"M-SEARCH * HTTP/1.1"), Some(true));
        assert_eq!(sniff_http(b"GE"), None);
        assert_eq!(sniff_http(b" GET"), Some(false));
        assert_eq!(sniff_http(b"SSH-2.0-OpenSSH"), Some(false));
        assert_eq!(sniff_http(b"\x00\x01"), Some(false));
        assert_eq!(sniff_http(&[b'A'; 30]), Some(false));
    }
}
