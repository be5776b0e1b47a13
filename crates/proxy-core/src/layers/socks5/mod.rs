//! SOCKS5 mode (RFC 1928): the client's greeting, its username and password if the proxy asks
//! for them (RFC 1929), and one CONNECT request; then the connection goes on exactly as after
//! an HTTP `CONNECT` (the mode's next layer: interception of a ClientHello, HTTP, or a tunnel).
//!
//! The request is shown to hooks as the `CONNECT` flow an HTTP proxy client would have made:
//! `Hook::HttpConnect` may refuse it (`Kill`, or a `Respond` that is not 2xx: reply 2, not
//! allowed) or send it elsewhere (`Update`), and the `Response` hook sees it established, so
//! one handler serves both kinds of proxy client. Every refusal gets the reply RFC 1928
//! gives it and a log line naming the cause.

pub(crate) mod wire;

use std::net::IpAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::open_error::OpenError;
use crate::flow::{FlowError, HttpFlow, Request, Response, Version};
use crate::headers::Headers;
use crate::hook::{Hook, HookKind, HookReply};
use crate::ids::{ConnId, Scheme, ServerAddr};
use crate::layer::{Handover, Layer};
pub use wire::Reply;
use wire::WireError;

/// The most a client may send before its request is whole: a greeting (257 bytes), RFC
/// 1929's credentials (513) and a request (262) fit; anything more waits unread.
const MAX_HANDSHAKE: usize = 2048;

pub(crate) struct Socks5Layer {
    state: State,
    buf: BytesMut,
    /// The handshake must be done by then.
    deadline: Option<Instant>,
    handover: Option<Handover>,
}

enum State {
    Greeting,
    Credentials,
    Request,
    /// `Hook::HttpConnect` is pending.
    Asking(Box<HttpFlow>),
    Connecting { flow: Box<HttpFlow>, server: ConnId },
    /// Answered: the mode's next layer takes the connections over.
    Established,
    Closed,
}

impl Socks5Layer {
    pub(crate) fn new() -> Self {
        Self { state: State::Greeting, buf: BytesMut::new(), deadline: None, handover: None }
    }

    /// Parse as far as the buffer goes.
    fn advance(&mut self, cx: &mut Context, now: Instant) {
        loop {
            let used = match self.state {
                State::Greeting => match wire::greeting(&self.buf) {
                    Ok(Some((methods, used))) => {
                        self.methods(cx, &methods);
                        used
                    }
                    Ok(None) => return self.check_size(cx),
                    Err(error) => return self.malformed(cx, error),
                },
                State::Credentials => match wire::credentials(&self.buf) {
                    Ok(Some(((user, pass), used))) => {
                        self.authenticate(cx, &user, &pass);
                        used
                    }
                    Ok(None) => return self.check_size(cx),
                    Err(error) => return self.malformed(cx, error),
                },
                State::Request => match wire::request(&self.buf) {
                    Ok(Some((target, used))) => {
                        let _ = self.buf.split_to(used);
                        return self.request(cx, now, target);
                    }
                    Ok(None) => return self.check_size(cx),
                    Err(error) => return self.malformed(cx, error),
                },
                _ => return,
            };
            let _ = self.buf.split_to(used);
            if matches!(self.state, State::Closed) {
                return;
            }
        }
    }

    /// The client offered `methods`: pick username/password if the proxy asks for it, else
    /// no authentication.
    fn methods(&mut self, cx: &mut Context, methods: &[u8]) {
        let wanted = if cx.config.proxy_auth.is_some() { wire::USER_PASS } else { wire::NO_AUTH };
        if !methods.contains(&wanted) {
            let what = if wanted == wire::USER_PASS { "username/password authentication" } else { "no authentication" };
            cx.log(LogLevel::Info, format!("SOCKS5 client {}: it does not offer {what}, which the proxy needs", cx.client.peer));
            cx.send(ConnId::CLIENT, Bytes::from_static(&[wire::VERSION, wire::NO_ACCEPTABLE]));
            return self.close(cx);
        }
        cx.send(ConnId::CLIENT, Bytes::copy_from_slice(&[wire::VERSION, wanted]));
        self.state = if wanted == wire::USER_PASS { State::Credentials } else { State::Request };
    }

    fn authenticate(&mut self, cx: &mut Context, user: &[u8], pass: &[u8]) {
        let user = String::from_utf8_lossy(user);
        let accepted = cx.config.proxy_auth.as_ref().is_some_and(|auth| auth.check(&user, &String::from_utf8_lossy(pass)));
        if accepted {
            cx.send(ConnId::CLIENT, Bytes::from_static(&[wire::AUTH_VERSION, 0]));
            self.state = State::Request;
        } else {
            cx.log(LogLevel::Warn, format!("SOCKS5 client {}: wrong username or password (user {user:?})", cx.client.peer));
            cx.send(ConnId::CLIENT, Bytes::from_static(&[wire::AUTH_VERSION, 1]));
            self.close(cx);
        }
    }

    /// The client asked for a tunnel to `target`.
    fn request(&mut self, cx: &mut Context, now: Instant, target: ServerAddr) {
        self.deadline = None;
        let flow = Box::new(connect_flow(cx, now, target));
        if cx.config.hooks.contains(HookKind::HttpConnect) {
            cx.set_layer_pause(ConnId::CLIENT, true);
            cx.hook(flow.id, Hook::HttpConnect(flow.clone()));
            self.state = State::Asking(flow);
            return;
        }
        self.connect(cx, flow);
    }

    /// Open the tunnel's server connection, unless it leads back to this listener.
    fn connect(&mut self, cx: &mut Context, mut flow: Box<HttpFlow>) {
        let target = flow.request.server();
        let to_self = target.host.parse::<IpAddr>().is_ok_and(|ip| ip == cx.client.local.ip() && target.port == cx.client.local.port());
        if to_self {
            cx.log(LogLevel::Warn, format!("SOCKS5 client {}: refusing a tunnel to the proxy's own listener {target}", cx.client.peer));
            flow.error = Some(FlowError { message: "a tunnel to the proxy itself".into(), status: None });
            return self.refuse(cx, flow, Reply::NotAllowed);
        }
        cx.set_layer_pause(ConnId::CLIENT, true);
        let server = cx.open(target);
        self.state = State::Connecting { flow, server };
    }

    /// The tunnel is up: tell the client, and go on as after a `CONNECT`.
    fn established(&mut self, cx: &mut Context, now: Instant, mut flow: Box<HttpFlow>, server: ConnId) {
        cx.send(ConnId::CLIENT, Bytes::copy_from_slice(&wire::reply(Reply::Succeeded)));
        let mut response = Response { body: None, ..Response::new(200, Headers::new(), Bytes::new()) };
        response.reason = "Connection established".into();
        flow.response = Some(response);
        flow.ended = Some(now);
        let target = flow.request.server();
        self.handover = Some(Handover {
            server,
            target,
            connect: true,
            client_rest: self.buf.split().freeze(),
            server_rest: Bytes::new(),
            client_eof: false,
            websocket: None,
            pooled: None,
        });
        if cx.config.hooks.contains(HookKind::Response) {
            cx.hook(flow.id, Hook::Response(flow));
        }
        self.state = State::Established;
    }

    /// The server could not be reached: the reply that says why.
    fn failed(&mut self, cx: &mut Context, mut flow: Box<HttpFlow>, error: OpenError) {
        let target = flow.request.server();
        cx.log(LogLevel::Info, format!("SOCKS5 client {}: cannot connect to {target}: {error}", cx.client.peer));
        let code = match &error {
            OpenError::Refused => Reply::ConnectionRefused,
            OpenError::Dns(_) => Reply::HostUnreachable,
            OpenError::Timeout => Reply::TtlExpired,
            OpenError::Tls { .. } | OpenError::Other(_) => Reply::NetworkUnreachable,
        };
        flow.error = Some(FlowError { message: format!("cannot connect to {target}: {error}"), status: None });
        self.refuse(cx, flow, code);
    }

    /// Answer `code` to the request of `flow`, raise its error hook, and close.
    fn refuse(&mut self, cx: &mut Context, flow: Box<HttpFlow>, code: Reply) {
        cx.send(ConnId::CLIENT, Bytes::copy_from_slice(&wire::reply(code)));
        if cx.config.hooks.contains(HookKind::Error) {
            cx.hook(flow.id, Hook::Error(flow));
        }
        self.close(cx);
    }

    /// A message broke the protocol: the reply it earns, if the client can read one, a log
    /// line, and the end.
    fn malformed(&mut self, cx: &mut Context, error: WireError) {
        cx.log(LogLevel::Info, format!("SOCKS5 client {}: {error}", cx.client.peer));
        let answer: Option<Bytes> = match (&self.state, &error) {
            // SOCKS4's "request rejected or failed".
            (_, WireError::Socks4) => Some(Bytes::from_static(&[0, 0x5b, 0, 0, 0, 0, 0, 0])),
            (_, WireError::Http) => Some(Bytes::from_static(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 45\r\nconnection: close\r\n\r\n\
                  This is a SOCKS5 proxy, not an HTTP proxy.\r\n\r\n",
            )),
            (_, WireError::NoMethods) => Some(Bytes::from_static(&[wire::VERSION, wire::NO_ACCEPTABLE])),
            (State::Credentials, _) => Some(Bytes::from_static(&[wire::AUTH_VERSION, 1])),
            (State::Request, _) => Some(Bytes::copy_from_slice(&wire::reply(error.reply()))),
            _ => None,
        };
        if let Some(answer) = answer {
            cx.send(ConnId::CLIENT, answer);
        }
        self.close(cx);
    }

    /// More than a handshake's worth without a whole message: stop reading until it is
    /// parsed (it never will be: the client is broken).
    fn check_size(&mut self, cx: &mut Context) {
        if self.buf.len() > MAX_HANDSHAKE {
            cx.log(LogLevel::Info, format!("SOCKS5 client {}: handshake over {MAX_HANDSHAKE} bytes", cx.client.peer));
            self.close(cx);
        }
    }

    fn close(&mut self, cx: &mut Context) {
        if let State::Connecting { server, .. } = self.state {
            cx.close(server, false);
        }
        cx.close(ConnId::CLIENT, false);
        self.state = State::Closed;
        self.deadline = None;
    }
}

/// The `CONNECT` flow a SOCKS5 request stands for.
fn connect_flow(cx: &mut Context, now: Instant, target: ServerAddr) -> HttpFlow {
    let request = Request {
        method: "CONNECT".into(),
        scheme: Scheme::Http,
        host: target.host,
        port: target.port,
        path: String::new(),
        version: Version::Socks5,
        headers: Headers::new(),
        body: None,
        trailers: None,
    };
    HttpFlow::new(cx.next_flow_id(), cx.client.clone(), request, now)
}

impl Layer for Socks5Layer {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        match event {
            Event::Start => self.deadline = Some(now + cx.config.head_timeout),
            Event::DataReceived { conn: ConnId::CLIENT, data } => {
                if matches!(self.state, State::Closed) {
                    return;
                }
                self.buf.extend_from_slice(&data);
                self.advance(cx, now);
            }
            Event::ConnectionClosed { conn: ConnId::CLIENT } if !matches!(self.state, State::Closed) => {
                cx.log(LogLevel::Debug, format!("SOCKS5 client {} left during the handshake", cx.client.peer));
                self.close(cx);
            }
            Event::Opened { conn } => {
                if let State::Connecting { server, .. } = self.state {
                    if server == conn {
                        let State::Connecting { flow, .. } = std::mem::replace(&mut self.state, State::Closed) else { return };
                        self.established(cx, now, flow, server);
                    }
                }
            }
            Event::OpenFailed { conn, error } => {
                if let State::Connecting { server, .. } = self.state {
                    if server == conn {
                        cx.forget(conn);
                        let State::Connecting { flow, .. } = std::mem::replace(&mut self.state, State::Closed) else { return };
                        self.failed(cx, flow, error);
                    }
                }
            }
            Event::HookReply { flow, reply } => match std::mem::replace(&mut self.state, State::Closed) {
                State::Asking(asked) if asked.id == flow => self.answered(cx, asked, reply),
                other => self.state = other,
            },
            Event::Wakeup if self.deadline.is_some_and(|d| d <= now) => {
                cx.log(LogLevel::Info, format!("SOCKS5 client {}: no request within {:?}", cx.client.peer, cx.config.head_timeout));
                self.close(cx);
            }
            _ => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn take_handover(&mut self) -> Option<Handover> {
        // Handed on once the client has been answered (and the `Response` hook, if asked,
        // has been raised: its answer does not hold the tunnel up).
        self.handover.take()
    }
}

impl Socks5Layer {
    /// `Hook::HttpConnect` answered about the request of `flow`.
    fn answered(&mut self, cx: &mut Context, mut flow: Box<HttpFlow>, reply: HookReply) {
        match reply {
            HookReply::Kill => {
                cx.log(LogLevel::Info, format!("SOCKS5 client {}: tunnel to {} refused by hook", cx.client.peer, flow.request.server()));
                flow.error = Some(FlowError { message: "refused by hook".into(), status: None });
                self.refuse(cx, flow, Reply::NotAllowed);
            }
            HookReply::Respond(response) if !(200..300).contains(&response.status) => {
                cx.log(LogLevel::Info, format!("SOCKS5 client {}: tunnel to {} refused by hook", cx.client.peer, flow.request.server()));
                flow.error = Some(FlowError { message: format!("refused by hook ({})", response.status), status: None });
                flow.response = Some(response);
                self.refuse(cx, flow, Reply::NotAllowed);
            }
            HookReply::Update(updated) => {
                let id = flow.id;
                let mut updated = updated;
                updated.id = id;
                self.connect(cx, updated);
            }
            _ => self.connect(cx, flow),
        }
    }
}
