//! The HTTP layer: one client connection's HTTP exchanges and the servers they go to.
//!
//! Codecs turn bytes into version-agnostic [`HttpEvent`]s and back: one for the client
//! connection ([`Http1Server`] or [`H2Server`]) and one per upstream connection
//! ([`Http1Client`](http1::Http1Client) or [`H2Client`](h2::H2Client)). Each request/response pair is an [`HttpStream`] that
//! sees only `HttpEvent`s, so any client version meets any server version. The layer routes
//! events between codecs and streams, picks or opens upstream connections, and decides what
//! may be read: for HTTP/1 by pausing a connection, for HTTP/2 by holding a stream's window
//! shut until its destination has room.
//!
//! This file routes: events to codecs, stream outputs to codecs and connections. The rest of
//! the layer is one concern a file, each an `impl HttpLayer` block:
//!
//! - [`event`]: what codecs produce, whatever the version ([`HttpEvent`]);
//! - `outputs`: what the client and server codecs' outputs mean for the streams;
//! - `drive`: the HTTP/2 engines driven until still, each stream's window opened or held
//!   shut by whether its destination has room;
//! - [`stream`]: one request/response exchange and its hooks ([`HttpStream`]);
//! - [`destination`]: where requests may go, as the mode decides;
//! - `pool`: the upstream connections ([`ServerConn`]): assign, open (directly or through
//!   an upstream proxy), release, drop;
//! - [`upstream_proxy`]: the `CONNECT` that sets up a tunnel through an upstream proxy;
//! - `timeouts`: body, server-idle and client-idle limits;
//! - `forward`: room for bodies on each side, and bodies handed to the driver;
//! - `websocket` and `tunnels`: what an HTTP/2 stream switches to (RFC 8441's WebSocket, a
//!   `CONNECT`'s tunnel), carried by this layer since the connection goes on around it.
//!
//! The codecs sit inside the layer, one folder per version, as mitmproxy's `layers/http/`
//! holds its `_http1` and `_http2`: [`http1`] (its wire format in `http1::wire`) and [`h2`]
//! (frames, HPACK and streams of our own in `h2::engine`).

pub(crate) mod authority;
pub(crate) mod carried;
pub(crate) mod destination;
mod drive;
pub(crate) mod error;
pub(crate) mod event;
mod forward;
pub(crate) mod h2;
pub(crate) mod http1;
mod outputs;
pub(crate) mod pool;
mod proxy_auth;
pub(crate) mod stream;
mod timeouts;
mod tunnels;
pub(crate) mod upstream_proxy;
mod websocket;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::config::Mode;
use crate::context::Context;
use crate::event::Event;
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layer::{Handover, Layer, NextLayer};
use crate::layers::http::h2::{H2Server, PREFACE};
use crate::layers::http::http1::Http1Server;
use destination::Destination;
use error::{ClientError, ProxyError, ServerError};
use event::{CodecOutput, HttpEvent};
use pool::{Pool, ServerCodec, ServerConn};
use stream::{HttpStream, Input, Out};
use upstream_proxy::ProxyConnect;
use tunnels::{Early, Tunnels};
use websocket::WebSockets;
use crate::layers::websocket::WsInput;
use crate::websocket::Peer;

/// The codec of the client connection. HTTP/1 is held in place (most connections, and no
/// allocation each); HTTP/2's codec, five times its size (1,064 bytes against 216), is boxed.
#[allow(clippy::large_enum_variant)]
enum ClientCodec {
    H1(Http1Server),
    H2(Box<H2Server>),
}

impl ClientCodec {
    fn h1(&self) -> Option<&Http1Server> {
        match self {
            Self::H1(codec) => Some(codec),
            Self::H2(_) => None,
        }
    }

    fn h1_mut(&mut self) -> Option<&mut Http1Server> {
        match self {
            Self::H1(codec) => Some(codec),
            Self::H2(_) => None,
        }
    }

    fn send(&mut self, cx: &mut Context, event: HttpEvent) {
        match self {
            Self::H1(codec) => codec.send(cx, event),
            Self::H2(codec) => codec.send(event),
        }
    }

    fn is_eof(&self) -> bool {
        match self {
            Self::H1(codec) => codec.is_eof(),
            Self::H2(codec) => codec.is_eof(),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Self::H1(codec) => codec.is_finished(),
            Self::H2(codec) => codec.is_finished(),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Self::H1(codec) => codec.is_idle(),
            Self::H2(codec) => codec.is_idle(),
        }
    }

    /// The flow whose request body is being read (HTTP/1 only: one at a time).
    fn current_flow(&self) -> Option<FlowId> {
        self.h1().and_then(Http1Server::current_flow)
    }
}

pub(crate) struct HttpLayer {
    client: ClientCodec,
    /// Where the client's requests may go: the mode decides, never the client.
    destination: Destination,
    /// The client's first bytes, held until they tell whether it speaks HTTP/2 (its preface)
    /// or HTTP/1; `None` once decided.
    sniff: Option<BytesMut>,
    /// Boxed: a stream is large, and comes and goes with every request.
    streams: BTreeMap<FlowId, Box<HttpStream>>,
    /// The lists an HTTP/1 codec's outputs for one read go into, kept from one read to the
    /// next (a keep-alive connection would allocate two per request).
    spare_client_outputs: Vec<CodecOutput<ClientError>>,
    spare_server_outputs: Vec<CodecOutput<ServerError>>,
    pool: Pool,
    /// Set when a stream asks for the client connection to become a tunnel.
    handover: Option<Handover>,
    /// WebSockets on streams of an HTTP/2 client (RFC 8441).
    websockets: WebSockets,
    /// Tunnels on streams of an HTTP/2 client (`CONNECT`).
    tunnels: Tunnels,
    /// What a `CONNECT` stream becomes, when this layer serves them: the mode's choice, as
    /// for a connection's `CONNECT`. `None` where a `CONNECT` is no proxy request (inside an
    /// intercepted connection, in reverse mode).
    tunnel_layer: Option<NextLayer>,
    /// What HTTP/2 clients sent on a stream before the switch it asked for was answered.
    early: BTreeMap<FlowId, Early>,
    client_deadline: Option<Instant>,
    /// Emptied output lists of streams, kept for the next event rather than allocated anew
    /// for each (one per feed in progress: a feed may start another).
    spare_outs: Vec<Vec<Out>>,
    /// Destinations this client connection made a carrier for: one each at most (see
    /// `HttpLayer::carry`).
    carried: Vec<crate::upstreams::PoolKey>,
    /// The name the server of an intercepted `CONNECT` was reached by over TLS (the client's
    /// SNI), where it is not the server's host: every connection to that server made for this
    /// client connection, and every carrier its requests join, was verified for that name.
    tls_name: Option<(ServerAddr, String)>,
    /// We are done with the client connection (closed, or half-closed and lingering).
    client_gone: bool,
    /// Half-closed: reading (and dropping) until the client closes too, so that it gets to
    /// read our last response before its unread input could make the kernel reset.
    lingering: bool,
    /// The proxy is shutting down and this layer has stopped keeping the client alive.
    drained: bool,
}

impl HttpLayer {
    pub(crate) fn new(cx: &Context) -> Self {
        Self {
            client: ClientCodec::H1(Http1Server::new(ConnId::CLIENT, &cx.config)),
            destination: Destination::Named,
            sniff: cx.config.http2.then(BytesMut::new),
            streams: BTreeMap::new(),
            spare_client_outputs: Vec::new(),
            spare_server_outputs: Vec::new(),
            pool: Pool::default(),
            handover: None,
            websockets: WebSockets::default(),
            tunnels: Tunnels::default(),
            tunnel_layer: None,
            early: BTreeMap::new(),
            client_deadline: None,
            spare_outs: Vec::new(),
            carried: Vec::new(),
            tls_name: None,
            client_gone: false,
            lingering: false,
            drained: false,
        }
    }

    /// The HTTP layer of a connection whose requests go where `destination` says: through an
    /// intercepted `CONNECT` to its server, or in reverse mode to the upstream.
    pub(crate) fn for_destination(cx: &Context, destination: Destination) -> Self {
        let mut layer = Self::new(cx);
        let codec = Http1Server::new(ConnId::CLIENT, &cx.config).with_destination(destination.clone());
        layer.client = ClientCodec::H1(codec);
        layer.destination = destination;
        layer
    }

    /// Serve HTTP/2 clients' `CONNECT` streams: each becomes what `next` makes of a
    /// connection's `CONNECT`.
    pub(crate) fn carrying_tunnels(mut self, next: NextLayer) -> Self {
        self.tunnel_layer = Some(next);
        self
    }

    /// The HTTP layer of a client speaking HTTP in the clear, its requests going where the
    /// configured mode sends them: to the server each names, or in reverse mode to the upstream.
    pub(crate) fn for_mode(cx: &Context) -> Self {
        match &cx.config.mode {
            Mode::Regular | Mode::Upstream { .. } | Mode::Socks5 | Mode::Transparent => Self::new(cx),
            Mode::Reverse { scheme, target, .. } => {
                Self::for_destination(cx, Destination::Fixed { scheme: *scheme, target: target.clone() })
            }
        }
    }
}

impl Layer for HttpLayer {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        if self.lingering {
            let expired = matches!(event, Event::Wakeup) && self.client_deadline.is_some_and(|d| d <= now);
            if expired || matches!(event, Event::ConnectionClosed { conn: ConnId::CLIENT }) {
                self.lingering = false;
                self.client_deadline = None;
                cx.close(ConnId::CLIENT, false);
            }
            return;
        }
        self.hold_bodies(cx, now);
        let event = match self.tunnels.is_empty() {
            true => event,
            false => match self.route_tunnel(cx, now, event) {
                Some(event) => event,
                None => return self.after_event(cx, now),
            },
        };
        if !self.websockets.is_empty() {
            let event = match self.route_websocket(cx, now, event) {
                Some(event) => event,
                None => return self.after_event(cx, now),
            };
            return self.handle_http(cx, now, event);
        }
        self.handle_http(cx, now, event);
    }

    fn wants_drained(&self) -> bool {
        // WebSockets and tunnels inside streams go on when written bytes drain; exchanges,
        // over HTTP/1 or HTTP/2, only when congestion lifts, which the connection sees itself.
        !self.websockets.is_empty() || !self.tunnels.is_empty()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.lingering {
            return self.client_deadline;
        }
        let servers = self.pool.iter().filter_map(|s| s.deadline);
        let head = self.client.h1().and_then(Http1Server::poll_timeout);
        let bodies = self.streams.values().flat_map(|s| s.body_deadline().into_iter().chain(s.rate_deadline()).chain(s.queue_deadline()));
        let websockets = self.websockets.poll_timeout();
        let tunnels = self.tunnels.poll_timeout();
        servers.chain(self.client_deadline).chain(head).chain(bodies).chain(websockets).chain(tunnels).min()
    }

    /// The tunnel the client connection turned into, once a stream asked for one.
    fn take_handover(&mut self) -> Option<Handover> {
        self.handover.take()
    }
}

impl HttpLayer {
    /// What concerns the WebSockets this layer carries goes to them; the rest is returned.
    fn route_websocket(&mut self, cx: &mut Context, now: Instant, event: Event) -> Option<Event> {
        let end = match &event {
            Event::DataReceived { conn, .. } | Event::ConnectionClosed { conn } | Event::WriteDrained { conn } => {
                self.websockets.on_conn(*conn)
            }
            _ => None,
        };
        let (flow, input) = match (event, end) {
            (Event::DataReceived { data, .. }, Some((flow, peer))) => (flow, WsInput::Data(peer, data)),
            (Event::ConnectionClosed { .. }, Some((flow, peer))) => (flow, WsInput::Gone(peer)),
            (Event::WriteDrained { .. }, Some((flow, peer))) => (flow, WsInput::Drained(peer)),
            (Event::HookReply { flow, reply }, _) if self.websockets.contains(flow) => (flow, WsInput::Reply(reply)),
            (Event::Inject { flow, to, kind, payload }, _) if self.websockets.contains(flow) => {
                (flow, WsInput::Inject { to, kind, payload })
            }
            (Event::Wakeup, _) => {
                self.websockets_input(cx, now, || WsInput::Wakeup);
                return Some(Event::Wakeup);
            }
            (event, _) => return Some(event),
        };
        self.websocket_input(cx, now, flow, input);
        None
    }

    fn handle_http(&mut self, cx: &mut Context, now: Instant, event: Event) {
        match event {
            Event::Start => {
                self.client_deadline = Some(now + cx.config.client_idle_timeout);
            }
            Event::DataReceived { conn, data } if conn == ConnId::CLIENT => {
                let Some(data) = self.sniff(cx, data) else { return };
                match &mut self.client {
                    ClientCodec::H1(codec) => {
                        let mut outputs = std::mem::take(&mut self.spare_client_outputs);
                        codec.receive(cx, now, data, &mut outputs);
                        self.handle_client_outputs(cx, now, outputs);
                    }
                    ClientCodec::H2(codec) => codec.receive(data),
                }
            }
            Event::DataReceived { conn, data } => {
                let Some(server) = self.pool.get_mut(conn) else { return };
                server.heard_from(now, cx.config.server_idle_timeout);
                if server.connect.as_ref().is_some_and(ProxyConnect::is_asked) {
                    self.proxy_answer(cx, now, conn, &data);
                } else {
                    match &mut server.codec {
                        ServerCodec::H1(codec) => {
                            let mut outputs = std::mem::take(&mut self.spare_server_outputs);
                            codec.receive(data, &mut outputs);
                            self.handle_server_outputs(cx, now, conn, outputs);
                        }
                        ServerCodec::H2(codec) => codec.receive(data),
                        // A stream's bytes come as messages.
                        ServerCodec::Joined(_) => {}
                    }
                }
            }
            Event::ConnectionClosed { conn } if conn == ConnId::CLIENT => {
                if let Some(data) = self.sniff.take().filter(|d| !d.is_empty()) {
                    // Less than a preface, then nothing: HTTP/1's parser says what is wrong.
                    let mut outputs = Vec::new();
                    if let ClientCodec::H1(codec) = &mut self.client {
                        codec.receive(cx, now, data.freeze(), &mut outputs);
                    }
                    self.handle_client_outputs(cx, now, outputs);
                }
                match &mut self.client {
                    ClientCodec::H1(codec) => {
                        let mut outputs = Vec::new();
                        codec.receive_eof(cx, &mut outputs);
                        self.handle_client_outputs(cx, now, outputs);
                    }
                    ClientCodec::H2(codec) => codec.receive_eof(),
                }
            }
            Event::ConnectionClosed { conn } if self.proxy_connect(conn).is_some() => {
                if let Some(error) = self.proxy_connect(conn).map(ProxyConnect::closed) {
                    self.proxy_failed(cx, now, conn, Input::ProxyFailed(error));
                }
            }
            Event::ConnectionClosed { conn } => {
                let Some(server) = self.pool.get_mut(conn) else { return };
                match &mut server.codec {
                    ServerCodec::H1(codec) => {
                        let mut outputs = Vec::new();
                        codec.receive_eof(cx, &mut outputs);
                        self.handle_server_outputs(cx, now, conn, outputs);
                        // A server that closed is never reused.
                        if self.pool.get(conn).is_some_and(|s| s.flows.is_empty()) {
                            self.drop_server(cx, conn);
                        }
                    }
                    // The engine reports the end, and what it cost, when next polled.
                    ServerCodec::H2(codec) => codec.receive_eof(),
                    ServerCodec::Joined(joined) => {
                        // Its carrier is gone.
                        let output = joined.carrier_gone();
                        self.handle_server_outputs(cx, now, conn, vec![output]);
                    }
                }
            }
            Event::Opened { conn } => {
                let Some(server) = self.pool.get_mut(conn) else { return };
                match &mut server.connect {
                    // The connection to the upstream proxy is up: ask it for the tunnel.
                    Some(connect) if connect.is_opening() => {
                        connect.ask(cx, conn);
                        server.deadline = Some(now + cx.config.server_idle_timeout);
                    }
                    // The TLS handshake through the tunnel is done.
                    Some(_) => {
                        server.connect = None;
                        self.server_opened(cx, now, conn);
                    }
                    None => self.server_opened(cx, now, conn),
                }
            }
            Event::Adopted { conn, parked } => self.server_adopted(cx, now, conn, *parked),
            Event::Joined { conn } => self.server_joined(cx, now, conn),
            Event::Carried { messages } => {
                for (conn, message) in messages {
                    let output = self.pool.get_mut(conn).and_then(ServerConn::joined_mut).and_then(|joined| joined.receive(message));
                    // (What went on of a request body only lets the client be read again, below.)
                    if let Some(output) = output {
                        if let Some(server) = self.pool.get_mut(conn) {
                            server.heard_from(now, cx.config.server_idle_timeout);
                        }
                        let mut outputs = std::mem::take(&mut self.spare_server_outputs);
                        outputs.push(output);
                        self.handle_server_outputs(cx, now, conn, outputs);
                    }
                }
            }
            Event::OpenFailed { conn, error } => {
                let Some(server) = self.pool.remove(conn) else { return };
                cx.forget(conn);
                let to_proxy = server.connect.as_ref().is_none_or(ProxyConnect::is_opening);
                let input = match server.proxy {
                    Some(proxy) if to_proxy => {
                        let error = ProxyError::Unreachable { proxy, error };
                        cx.log(LogLevel::Info, error.to_string());
                        Input::ProxyFailed(error)
                    }
                    _ => {
                        cx.log(LogLevel::Info, format!("cannot connect to {}: {}", server.addr, error));
                        Input::ServerFailed { addr: server.addr, error }
                    }
                };
                for flow in server.flows {
                    self.feed(cx, now, flow, input.clone());
                }
            }
            Event::WriteDrained { .. } => {}
            Event::Forwarded { from, len, pending } if from == ConnId::CLIENT => {
                // A report of no bytes only says which side the forward waits on.
                if let Some(flow) = self.client.current_flow().filter(|_| len > 0) {
                    // Bytes reached the server: as for a write of ours, its silence counts anew.
                    if let Some(server) = self.pool.carrying_mut(flow) {
                        if !server.dedicated && server.deadline.is_some() {
                            server.deadline = Some(now + cx.config.server_idle_timeout);
                        }
                    }
                    self.feed(cx, now, flow, Input::RequestForwarded(len));
                }
                let mut outputs = Vec::new();
                if let Some(codec) = self.client.h1_mut() {
                    codec.handle_forwarded(len, pending, &mut outputs);
                }
                self.handle_client_outputs(cx, now, outputs);
            }
            Event::Forwarded { from, len, pending } => {
                let Some(server) = self.pool.get_mut(from) else { return };
                let mut outputs = Vec::new();
                if let Some(codec) = server.h1_mut() {
                    codec.handle_forwarded(len, pending, &mut outputs);
                }
                // As above: no bytes, no news from the server.
                if len > 0 {
                    server.heard_from(now, cx.config.server_idle_timeout);
                    if let Some(flow) = server.flow() {
                        self.feed(cx, now, flow, Input::ResponseForwarded(len));
                    }
                }
                self.handle_server_outputs(cx, now, from, outputs);
            }
            Event::Wakeup => self.handle_wakeup(cx, now),
            Event::HookReply { flow, reply } => {
                if self.streams.contains_key(&flow) {
                    self.feed(cx, now, flow, Input::HookReply(reply));
                }
            }
            // A carrier's events: never a client connection's.
            Event::Inject { .. } | Event::Streams { .. } => {}
            // The context remembers it; `after_event` drains.
            Event::Shutdown => {}
        }
        self.after_event(cx, now);
    }

    /// Give `input` to the stream `flow` and carry out what it asks for.
    fn feed(&mut self, cx: &mut Context, now: Instant, flow: FlowId, input: Input) {
        let Some(stream) = self.streams.get_mut(&flow) else { return };
        // A feed within a feed (an output that moves another stream) takes a spare list.
        let mut outs = self.spare_outs.pop().unwrap_or_default();
        stream.handle(cx, now, input, &mut outs);
        for out in outs.drain(..) {
            self.apply(cx, now, flow, out);
        }
        self.spare_outs.push(outs);
        if self.streams.get(&flow).is_some_and(|s| s.is_finished()) {
            // Ended without a switch: what its stream sent early goes nowhere.
            self.early.remove(&flow);
            // Its lease on a backend goes with the connection, if that is parked.
            let lease = self.streams.remove(&flow).and_then(|mut s| s.lease.take());
            self.release_server(cx, now, flow, lease);
        }
    }

    fn apply(&mut self, cx: &mut Context, now: Instant, flow: FlowId, out: Out) {
        match out {
            Out::Client(event) => {
                if !self.client_gone {
                    self.client.send(cx, event);
                }
            }
            Out::Server(mut event) => {
                if let Some(server) = self.pool.carrying_mut(flow) {
                    if let (true, HttpEvent::RequestHeaders { request, .. }) = (server.absolute, &mut event) {
                        // To the upstream proxy itself: its credentials, if it wants some.
                        if let Some(credentials) = upstream_proxy::upstream_credentials(cx) {
                            request.headers.insert("proxy-authorization", credentials);
                        }
                    }
                    let timeout = cx.config.server_idle_timeout;
                    // The server may stay silent while it is still being sent the request:
                    // count its silence from our last write.
                    if !server.dedicated {
                        server.deadline = Some(now + timeout);
                    }
                    match &mut server.codec {
                        ServerCodec::H1(codec) => codec.send(cx, event),
                        ServerCodec::H2(codec) => codec.send(event),
                        ServerCodec::Joined(joined) => joined.send(cx, event),
                    }
                }
            }
            Out::OpenServer { addr, tls, dedicated, versions } => {
                self.assign_server(cx, now, flow, addr, tls, dedicated, versions);
            }
            Out::Tunnel => self.switch(cx, now, flow),
            Out::AbortClient => match &mut self.client {
                // One stream failed, not the connection.
                ClientCodec::H2(codec) => codec.reset(flow, crate::layers::http::h2::engine::Reason::INTERNAL_ERROR),
                ClientCodec::H1(_) => self.close_all(cx, now, false),
            },
            Out::StopRequest => match &mut self.client {
                ClientCodec::H2(codec) => codec.stop_request(flow),
                // The rest of the body will not come: the connection cannot carry on.
                ClientCodec::H1(_) => self.close_all(cx, now, true),
            },
            Out::AbortServer => {
                let Some(server) = self.pool.carrying_mut(flow) else { return };
                match &mut server.codec {
                    ServerCodec::H2(codec) => {
                        codec.reset(flow);
                        server.flows.retain(|f| *f != flow);
                        if server.flows.is_empty() {
                            server.deadline = None;
                        }
                    }
                    ServerCodec::Joined(joined) => {
                        joined.reset(cx);
                        let conn = server.conn;
                        self.drop_server(cx, conn);
                    }
                    ServerCodec::H1(_) => {
                        let conn = server.conn;
                        self.drop_server(cx, conn);
                    }
                }
            }
        }
    }

    /// Done with the client connection: close it (`linger`: after a half-close and a grace
    /// period), every server connection, and every stream.
    fn close_all(&mut self, cx: &mut Context, now: Instant, linger: bool) {
        for conn in self.pool.conns() {
            self.park_or_drop(cx, conn, None);
        }
        self.close_tunnels(cx, now);
        // The client connection goes, and every WebSocket on its streams with it.
        self.websockets_input(cx, now, || WsInput::Gone(Peer::Client));
        if !self.client_gone {
            self.client_gone = true;
            if let ClientCodec::H2(codec) = &mut self.client {
                // Say goodbye in HTTP/2 terms before the connection goes.
                codec.shutdown(Some(crate::layers::http::h2::engine::Reason::NO_ERROR));
                codec.poll(cx, now, &mut Vec::new());
            }
            if linger && !self.client.is_eof() {
                cx.close(ConnId::CLIENT, true);
                cx.set_layer_pause(ConnId::CLIENT, false);
                self.lingering = true;
                self.client_deadline = Some(now + cx.config.close_linger);
            } else {
                cx.close(ConnId::CLIENT, false);
            }
        }
        let flows: Vec<FlowId> = self.streams.keys().copied().collect();
        let mut sink = Vec::new();
        for flow in flows {
            if let Some(mut stream) = self.streams.remove(&flow) {
                stream.handle(cx, now, Input::ClientClosed, &mut sink);
            }
        }
    }

    /// The proxy is shutting down ([`Event::Shutdown`]): keep the client connection no longer
    /// than what is in progress needs. An HTTP/1 connection between requests closes now, one
    /// with an exchange in progress after it; an HTTP/2 connection gets a GOAWAY and closes
    /// once its streams are done (`after_event` sees the engine finish).
    fn drain(&mut self, cx: &mut Context, now: Instant) {
        self.drained = true;
        let idle = self.client.is_idle()
            && self.streams.is_empty()
            && self.websockets.is_empty()
            && self.tunnels.is_empty()
            && self.sniff.as_ref().is_none_or(BytesMut::is_empty);
        match &mut self.client {
            ClientCodec::H1(_) if idle => {
                cx.log(LogLevel::Debug, "shutting down: closing idle client connection");
                self.close_all(cx, now, false);
            }
            ClientCodec::H1(codec) => codec.drain(),
            ClientCodec::H2(codec) => codec.shutdown(None),
        }
    }

    /// Bookkeeping after every event: reading permissions, keep-alive, closing.
    fn after_event(&mut self, cx: &mut Context, now: Instant) {
        if self.handover.is_some() || self.client_gone {
            return;
        }
        if cx.shutting_down && !self.drained {
            self.drain(cx, now);
            if self.client_gone {
                return;
            }
        }
        self.drive_h2(cx, now);
        self.orphaned_websockets(cx, now);
        if self.handover.is_some() || self.client_gone {
            return;
        }
        self.start_forwards(cx);
        // The client codec finished a response: parse what the client pipelined meanwhile,
        // once the client has taken what it was sent (answers made here, such as a 502 for
        // each refused connection, would otherwise pile up past the high-water mark).
        let congested = cx.is_congested(ConnId::CLIENT);
        if let Some(client) = self.client.h1_mut().filter(|c| c.ready_for_next() && !congested) {
            let mut outputs = Vec::new();
            client.next_request(cx, now, &mut outputs);
            self.handle_client_outputs(cx, now, outputs);
            if self.handover.is_some() || self.client_gone {
                return;
            }
        }
        if self.client.is_finished() {
            self.close_all(cx, now, true);
            return;
        }
        if self.client.is_idle() && self.streams.is_empty() && self.websockets.is_empty() && self.tunnels.is_empty() {
            if self.client_deadline.is_none() {
                self.client_deadline = Some(now + cx.config.client_idle_timeout);
                // Idle now: the spare lists go, and come back with the next request; so do
                // the root nodes emptied maps keep.
                self.spare_client_outputs = Vec::new();
                self.spare_server_outputs = Vec::new();
                self.spare_outs = Vec::new();
                self.streams = BTreeMap::new();
                if self.early.is_empty() {
                    self.early = BTreeMap::new();
                }
            }
        } else {
            self.client_deadline = None;
        }
        // Read an HTTP/1 client only when the current stream can take its bytes, and between
        // requests only once it has taken what it was sent: its next request's answer (a 502
        // made here, say) would pile up on the rest. (HTTP/2 connections are always read:
        // their streams' windows hold bodies back.)
        if let Some(client) = self.client.h1() {
            let current = client.current_flow().and_then(|f| Some((f, self.streams.get(&f)?)));
            let stream_ready = match current {
                Some((flow, stream)) => stream.wants_request_data() && self.server_has_room(cx, flow),
                None => !cx.is_congested(ConnId::CLIENT),
            };
            cx.set_layer_pause(ConnId::CLIENT, !(stream_ready && client.wants_read()));
        }
        // Read a connection that is a WebSocket's end while the other end has room and no
        // message of its peer waits for the hook.
        self.pause_websocket_conns(cx);
        // Read an HTTP/1 server only while its stream is not waiting on a hook.
        for server in self.pool.iter() {
            if !server.open || server.h1().is_none() {
                continue;
            }
            let ready = match server.flow() {
                Some(flow) => self.streams.get(&flow).is_none_or(|s| s.wants_response_data()),
                None => true,
            };
            cx.set_layer_pause(server.conn, !ready);
        }
    }

    /// The client's first bytes: HTTP/2's preface (prior knowledge, or after ALPN `h2`)
    /// switches the client codec to HTTP/2. Returns the bytes to parse, once it is decided.
    fn sniff(&mut self, cx: &mut Context, data: Bytes) -> Option<Bytes> {
        let Some(held) = &mut self.sniff else { return Some(data) };
        held.extend_from_slice(&data);
        let n = held.len().min(PREFACE.len());
        if held[..n] != PREFACE[..n] {
            return self.sniff.take().map(BytesMut::freeze);
        }
        if n < PREFACE.len() {
            return None;
        }
        let held = self.sniff.take().map(BytesMut::freeze).unwrap_or_default();
        let mut codec = H2Server::new(ConnId::CLIENT, &cx.config, self.destination.clone());
        if self.tunnel_layer.is_some() {
            codec = codec.serving_connect();
        }
        self.client = ClientCodec::H2(Box::new(codec));
        cx.set_self_limiting(ConnId::CLIENT);
        Some(held)
    }
}
