//! The HTTP layer: one client connection's HTTP exchanges and the servers they go to.
//!
//! Codecs turn bytes into version-agnostic [`HttpEvent`]s and back: one for the client
//! connection ([`Http1Server`] or [`H2Server`]) and one per upstream connection
//! ([`Http1Client`] or [`H2Client`]). Each request/response pair is an [`HttpStream`] that
//! sees only `HttpEvent`s, so any client version meets any server version. The layer routes
//! events between codecs and streams, picks or opens upstream connections, and decides what
//! may be read: for HTTP/1 by pausing a connection, for HTTP/2 by holding a stream's window
//! shut until its destination has room.

pub(crate) mod destination;
pub(crate) mod event;
pub(crate) mod stream;
pub(crate) mod upstream_proxy;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::config::Mode;
use crate::context::Context;
use crate::event::{Event, OpenError};
use crate::hook::{Hook, HookKind};
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layer::{Handover, Layer};
use crate::layers::h2::{H2Client, H2ClientOutput, H2Server, PREFACE};
use crate::layers::http1::{ClientOutput, Http1Client, Http1Server};
use destination::Destination;
use event::{HttpEvent, ServerOutput};
use stream::{HttpStream, Input, Out};
use upstream_proxy::{Answer, ProxyConnect};

/// The codec of the client connection.
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

/// The codec of an upstream connection.
enum ServerCodec {
    H1(Http1Client),
    H2(Box<H2Client>),
}

struct ServerConn {
    conn: ConnId,
    addr: ServerAddr,
    codec: ServerCodec,
    /// Speaks TLS (as a client) under the codec.
    tls: bool,
    open: bool,
    /// The streams using this connection: at most one over HTTP/1.
    flows: Vec<FlowId>,
    /// Not open yet, and may turn out to speak HTTP/2: requests for the same server wait for
    /// it rather than opening connections of their own.
    may_multiplex: bool,
    /// Used for a CONNECT tunnel: never pooled.
    dedicated: bool,
    /// When the server has been silent too long while it owes a response.
    deadline: Option<Instant>,
    /// In upstream mode, the upstream proxy this connection was opened to.
    proxy: Option<ServerAddr>,
    /// Requests go in absolute-form to the upstream proxy, whose address `addr` is, whatever
    /// their origin. Otherwise the connection leads to `addr` itself, directly or through a
    /// tunnel of `proxy`.
    absolute: bool,
    /// The tunnel through `proxy` being set up; `None` once it is up, or if none is needed.
    connect: Option<ProxyConnect>,
    /// What the proxy sent after its `2xx` to our `CONNECT`, for the tunnel that takes over.
    rest: Bytes,
}

impl ServerConn {
    fn new(conn: ConnId, addr: ServerAddr, codec: Http1Client, tls: bool) -> Self {
        Self {
            conn,
            addr,
            codec: ServerCodec::H1(codec),
            tls,
            open: false,
            flows: Vec::new(),
            may_multiplex: false,
            dedicated: false,
            deadline: None,
            proxy: None,
            absolute: false,
            connect: None,
            rest: Bytes::new(),
        }
    }

    /// Whether a request for `addr` (over TLS if `tls`) may go on this connection, `proxy`
    /// being the upstream proxy in upstream mode.
    fn fits(&self, addr: &ServerAddr, tls: bool, proxy: Option<&ServerAddr>) -> bool {
        if self.absolute {
            // The proxy takes plain requests for any origin.
            return !tls && proxy == Some(&self.addr);
        }
        self.tls == tls && self.addr == *addr
    }

    fn h1(&self) -> Option<&Http1Client> {
        match &self.codec {
            ServerCodec::H1(codec) => Some(codec),
            ServerCodec::H2(_) => None,
        }
    }

    fn h1_mut(&mut self) -> Option<&mut Http1Client> {
        match &mut self.codec {
            ServerCodec::H1(codec) => Some(codec),
            ServerCodec::H2(_) => None,
        }
    }

    fn is_h2(&self) -> bool {
        matches!(self.codec, ServerCodec::H2(_))
    }

    /// The one flow of an HTTP/1 connection.
    fn flow(&self) -> Option<FlowId> {
        self.flows.first().copied()
    }

    /// Whether the connection may take another request now (it is idle, or multiplexes).
    fn has_room(&self) -> bool {
        match &self.codec {
            ServerCodec::H1(codec) => self.flows.is_empty() && codec.is_reusable(),
            ServerCodec::H2(codec) => codec.has_room(),
        }
    }

    /// The server sent something: a response it owes may take another idle period.
    fn heard_from(&mut self, now: Instant, timeout: std::time::Duration) {
        if self.deadline.is_some() {
            self.deadline = Some(now + timeout);
        }
    }
}

pub(crate) struct HttpLayer {
    client: ClientCodec,
    /// Where the client's requests may go: the mode decides, never the client.
    destination: Destination,
    /// The client's first bytes, held until they tell whether it speaks HTTP/2 (its preface)
    /// or HTTP/1; `None` once decided.
    sniff: Option<BytesMut>,
    streams: BTreeMap<FlowId, HttpStream>,
    servers: Vec<ServerConn>,
    /// Set when a stream asks for the client connection to become a tunnel.
    handover: Option<Handover>,
    client_deadline: Option<Instant>,
    out: Vec<Out>,
    /// We are done with the client connection (closed, or half-closed and lingering).
    client_gone: bool,
    /// Half-closed: reading (and dropping) until the client closes too, so that it gets to
    /// read our last response before its unread input could make the kernel reset.
    lingering: bool,
    /// An upstream that already failed for this client connection (its TLS handshake, when
    /// we tried it before the client's): requests for it fail the same way without retrying.
    failed_upstream: Option<(ServerAddr, OpenError)>,
}

impl HttpLayer {
    pub(crate) fn new(cx: &Context) -> Self {
        Self {
            client: ClientCodec::H1(Http1Server::new(ConnId::CLIENT, &cx.config)),
            destination: Destination::Named,
            sniff: cx.config.http2.then(BytesMut::new),
            streams: BTreeMap::new(),
            servers: Vec::new(),
            handover: None,
            client_deadline: None,
            out: Vec::new(),
            client_gone: false,
            lingering: false,
            failed_upstream: None,
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

    /// Take the open connection `conn` to `addr` into the pool, for the next request to it.
    pub(crate) fn adopt_server(&mut self, cx: &mut Context, conn: ConnId, addr: ServerAddr) {
        let tls = !cx.is_plain(conn);
        let codec = Http1Client::new(conn, &cx.config);
        let mut server = ServerConn { open: true, ..ServerConn::new(conn, addr, codec, tls) };
        if speaks_h2(cx, conn, tls) {
            server.codec = ServerCodec::H2(Box::new(H2Client::new(conn, &cx.config)));
            cx.set_self_limiting(conn);
        }
        self.servers.push(server);
    }

    /// Requests to `addr` over TLS fail with `error`: it was tried already.
    pub(crate) fn set_failed_upstream(&mut self, addr: ServerAddr, error: OpenError) {
        self.failed_upstream = Some((addr, error));
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
        match event {
            Event::Start => {
                self.client_deadline = Some(now + cx.config.client_idle_timeout);
            }
            Event::DataReceived { conn, data } if conn == ConnId::CLIENT => {
                let Some(data) = self.sniff(cx, data) else { return };
                match &mut self.client {
                    ClientCodec::H1(codec) => {
                        let mut outputs = Vec::new();
                        codec.receive(cx, now, data, &mut outputs);
                        self.handle_client_outputs(cx, now, outputs);
                    }
                    ClientCodec::H2(codec) => codec.receive(data),
                }
            }
            Event::DataReceived { conn, data } => {
                let Some(i) = self.server_index(conn) else { return };
                self.servers[i].heard_from(now, cx.config.server_idle_timeout);
                if self.servers[i].connect.as_ref().is_some_and(ProxyConnect::is_asked) {
                    self.proxy_answer(cx, now, conn, &data);
                } else {
                    match &mut self.servers[i].codec {
                        ServerCodec::H1(codec) => {
                            let mut outputs = Vec::new();
                            codec.receive(cx, data, &mut outputs);
                            self.handle_server_outputs(cx, now, conn, outputs);
                        }
                        ServerCodec::H2(codec) => codec.receive(data),
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
                let message = self.proxy_connect(conn).map(ProxyConnect::closed_message).unwrap_or_default();
                self.proxy_failed(cx, now, conn, Input::ProxyFailed { status: 502, message });
            }
            Event::ConnectionClosed { conn } => {
                let Some(i) = self.server_index(conn) else { return };
                match &mut self.servers[i].codec {
                    ServerCodec::H1(codec) => {
                        let mut outputs = Vec::new();
                        codec.receive_eof(cx, &mut outputs);
                        self.handle_server_outputs(cx, now, conn, outputs);
                        // A server that closed is never reused.
                        if let Some(i) = self.server_index(conn) {
                            if self.servers[i].flows.is_empty() {
                                self.drop_server(cx, conn, false);
                            }
                        }
                    }
                    // The engine reports the end, and what it cost, when next polled.
                    ServerCodec::H2(codec) => codec.receive_eof(),
                }
            }
            Event::Opened { conn } => {
                let Some(i) = self.server_index(conn) else { return };
                match &mut self.servers[i].connect {
                    // The connection to the upstream proxy is up: ask it for the tunnel.
                    Some(connect) if connect.is_opening() => {
                        connect.ask(cx, conn);
                        self.servers[i].deadline = Some(now + cx.config.server_idle_timeout);
                    }
                    // The TLS handshake through the tunnel is done.
                    Some(_) => {
                        self.servers[i].connect = None;
                        self.server_opened(cx, now, conn);
                    }
                    None => self.server_opened(cx, now, conn),
                }
            }
            Event::OpenFailed { conn, error } => {
                let Some(i) = self.server_index(conn) else { return };
                let server = self.servers.remove(i);
                cx.forget(conn);
                let to_proxy = server.connect.as_ref().is_none_or(ProxyConnect::is_opening);
                let input = match server.proxy {
                    Some(proxy) if to_proxy => {
                        let status = if error == OpenError::Timeout { 504 } else { 502 };
                        let message = format!("cannot connect to upstream proxy {proxy}: {error}");
                        cx.log(LogLevel::Info, message.clone());
                        Input::ProxyFailed { status, message }
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
                    if let Some(i) = self.server_of(flow) {
                        if !self.servers[i].dedicated && self.servers[i].deadline.is_some() {
                            self.servers[i].deadline = Some(now + cx.config.server_idle_timeout);
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
                let Some(i) = self.server_index(from) else { return };
                let mut outputs = Vec::new();
                if let Some(codec) = self.servers[i].h1_mut() {
                    codec.handle_forwarded(len, pending, &mut outputs);
                }
                // As above: no bytes, no news from the server.
                if len > 0 {
                    self.servers[i].heard_from(now, cx.config.server_idle_timeout);
                    if let Some(flow) = self.servers[i].flow() {
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
        }
        self.after_event(cx, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.lingering {
            return self.client_deadline;
        }
        let servers = self.servers.iter().filter_map(|s| s.deadline);
        let head = self.client.h1().and_then(Http1Server::poll_timeout);
        let bodies = self.streams.values().filter_map(HttpStream::body_deadline);
        servers.chain(self.client_deadline).chain(head).chain(bodies).min()
    }

    /// The tunnel the client connection turned into, once a stream asked for one.
    fn take_handover(&mut self) -> Option<Handover> {
        self.handover.take()
    }
}

impl HttpLayer {
    /// Whether the proxy is what keeps `flow`'s client from sending more of its request body:
    /// a hook is pending, the server is not ready or has no room, reading is paused, or the
    /// driver forwards the body and the server has not taken what it has.
    fn body_held(&self, cx: &Context, flow: FlowId) -> bool {
        self.streams.get(&flow).is_some_and(|s| !s.wants_request_data())
            || !self.server_has_room(cx, flow)
            || cx.is_paused(ConnId::CLIENT)
            || self.client.h1().is_some_and(Http1Server::forward_waits_on_server)
    }

    /// Bodies the proxy holds back up to this moment get the full timeout from now, so a
    /// client let go again has all of it.
    fn hold_bodies(&mut self, cx: &Context, now: Instant) {
        let held: Vec<FlowId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.awaits_request_body())
            .map(|(flow, _)| *flow)
            .filter(|flow| self.body_held(cx, *flow))
            .collect();
        for flow in held {
            if let Some(stream) = self.streams.get_mut(&flow) {
                stream.rearm_body_deadline(now + cx.config.body_timeout);
            }
        }
    }

    /// Requests whose client went silent in the middle of the body: each gets 408 (or loses
    /// its exchange), and the client connection is closed (HTTP/1, lingering so the answer is
    /// read) or the stream reset (HTTP/2). A silence the proxy caused starts counting again.
    fn expire_bodies(&mut self, cx: &mut Context, now: Instant) {
        let expired: Vec<FlowId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.body_deadline().is_some_and(|d| d <= now))
            .map(|(flow, _)| *flow)
            .collect();
        let timeout = cx.config.body_timeout;
        for flow in expired {
            if self.body_held(cx, flow) {
                if let Some(stream) = self.streams.get_mut(&flow) {
                    stream.rearm_body_deadline(now + timeout);
                }
                continue;
            }
            let secs = timeout.as_secs_f64();
            cx.log(LogLevel::Info, format!("client sent nothing of a request body for {secs} s"));
            self.feed(cx, now, flow, Input::ClientTimeout { secs });
            match &mut self.client {
                ClientCodec::H1(_) => {
                    // The rest of the body will not come: the connection cannot carry on.
                    self.close_all(cx, now, true);
                    return;
                }
                ClientCodec::H2(codec) => codec.stop_request(flow),
            }
        }
    }

    fn handle_wakeup(&mut self, cx: &mut Context, now: Instant) {
        let mut outputs = Vec::new();
        if let Some(client) = self.client.h1_mut() {
            client.handle_timeout(cx, now, &mut outputs);
        }
        self.handle_client_outputs(cx, now, outputs);
        self.expire_bodies(cx, now);
        if self.client_gone {
            return;
        }
        if self.client_deadline.is_some_and(|d| d <= now) {
            self.client_deadline = None;
            if self.client.is_idle() && self.streams.is_empty() {
                cx.log(LogLevel::Debug, "closing idle client connection");
                self.close_all(cx, now, false);
                return;
            }
        }
        let expired: Vec<(ConnId, Vec<FlowId>)> = self
            .servers
            .iter()
            .filter(|s| s.deadline.is_some_and(|d| d <= now))
            .map(|s| (s.conn, s.flows.clone()))
            .collect();
        for (conn, flows) in expired {
            if let Some(i) = self.server_index(conn) {
                // Its silence is not its fault when we are not reading it (a hook is pending,
                // the client is slow, or the client has not taken the response body the
                // driver forwards), or when it waits for a request body the client has not
                // finished sending and can take more of it (the body timeout covers the
                // client). Start counting again from now.
                let waits_for_client = !cx.is_congested(conn)
                    && !self.client.h1().is_some_and(Http1Server::forward_waits_on_server)
                    && flows.iter().any(|f| self.streams.get(f).is_some_and(HttpStream::awaits_request_body));
                let client_slow = self.servers[i].h1().is_some_and(Http1Client::forward_waits_on_client);
                if cx.is_paused(conn) || waits_for_client || client_slow {
                    self.servers[i].deadline = Some(now + cx.config.server_idle_timeout);
                    continue;
                }
                self.servers[i].deadline = None;
            }
            let secs = cx.config.server_idle_timeout.as_secs_f64();
            let input = match self.proxy_connect(conn) {
                Some(connect) => Input::ProxyFailed { status: 504, message: connect.timeout_message(secs) },
                None => Input::ServerTimeout { secs },
            };
            for flow in flows {
                self.feed(cx, now, flow, input.clone());
            }
            self.drop_server(cx, conn, true);
        }
    }

    fn handle_client_outputs(&mut self, cx: &mut Context, now: Instant, outputs: Vec<ServerOutput>) {
        // A request the codec rejected within the same read has been answered already: its
        // stream only reports the error, and neither raises request hooks nor opens a server.
        let rejected = outputs.iter().find_map(|o| match o {
            ServerOutput::Error { flow: Some(flow), .. } => Some(*flow),
            _ => None,
        });
        for output in outputs {
            match output {
                ServerOutput::Http(HttpEvent::RequestHeaders { flow, request, .. }) if Some(flow) == rejected => {
                    self.streams.insert(flow, HttpStream::new(cx, now, flow, request));
                }
                ServerOutput::Http(event) => self.route_request_event(cx, now, event),
                ServerOutput::Error { flow: Some(flow), message } => {
                    self.feed(cx, now, flow, Input::ClientError { message });
                }
                // Logged by the codec; there is no flow to tell.
                ServerOutput::Error { flow: None, .. } => {}
                ServerOutput::Closed { flow } => {
                    if let Some(flow) = flow {
                        self.feed(cx, now, flow, Input::ClientClosed);
                    }
                }
                ServerOutput::Reset { flow } => self.feed(cx, now, flow, Input::ClientReset),
            }
        }
    }

    fn route_request_event(&mut self, cx: &mut Context, now: Instant, event: HttpEvent) {
        match event {
            HttpEvent::RequestHeaders { flow, request, end_stream } => {
                let stream = HttpStream::new(cx, now, flow, request);
                self.streams.insert(flow, stream);
                self.feed(cx, now, flow, Input::RequestHeaders { end_stream });
            }
            HttpEvent::RequestData { flow, data } => self.feed(cx, now, flow, Input::RequestData(data)),
            HttpEvent::RequestEnd { flow, trailers } => self.feed(cx, now, flow, Input::RequestEnd(trailers)),
            _ => {}
        }
    }

    fn handle_server_outputs(&mut self, cx: &mut Context, now: Instant, conn: ConnId, outputs: Vec<ClientOutput>) {
        for output in outputs {
            let flow = self.server_index(conn).and_then(|i| self.servers[i].flow());
            match output {
                ClientOutput::Http(event) => {
                    let Some(flow) = flow else { continue };
                    let input = match event {
                        HttpEvent::InterimResponse { response, .. } => Input::Interim(response),
                        HttpEvent::ResponseHeaders { response, end_stream, .. } => {
                            Input::ResponseHeaders { response, end_stream }
                        }
                        HttpEvent::ResponseData { data, .. } => Input::ResponseData(data),
                        HttpEvent::ResponseEnd { trailers, .. } => {
                            if let Some(i) = self.server_index(conn) {
                                self.servers[i].deadline = None;
                            }
                            Input::ResponseEnd(trailers)
                        }
                        _ => continue,
                    };
                    self.feed(cx, now, flow, input);
                }
                ClientOutput::Error { message } => {
                    cx.log(LogLevel::Info, format!("server {}: {}", self.server_addr(conn), message));
                    if let Some(flow) = flow {
                        self.feed(cx, now, flow, Input::ServerError { message });
                    }
                    self.drop_server(cx, conn, true);
                }
                ClientOutput::Closed => {
                    if let Some(flow) = flow {
                        let message = "server closed the connection before the response was complete";
                        self.feed(cx, now, flow, Input::ServerError { message: message.into() });
                    }
                    self.drop_server(cx, conn, true);
                }
            }
        }
    }

    /// Give `input` to the stream `flow` and carry out what it asks for.
    fn feed(&mut self, cx: &mut Context, now: Instant, flow: FlowId, input: Input) {
        let Some(stream) = self.streams.get_mut(&flow) else { return };
        stream.handle(cx, now, input, &mut self.out);
        let mut outs = std::mem::take(&mut self.out);
        for out in outs.drain(..) {
            self.apply(cx, now, flow, out);
        }
        self.out = outs;
        if self.streams.get(&flow).is_some_and(|s| s.is_finished()) {
            self.streams.remove(&flow);
            self.release_server(cx, now, flow);
        }
    }

    fn apply(&mut self, cx: &mut Context, now: Instant, flow: FlowId, out: Out) {
        match out {
            Out::Client(event) => {
                if !self.client_gone {
                    self.client.send(cx, event);
                }
            }
            Out::Server(event) => {
                if let Some(i) = self.server_of(flow) {
                    let timeout = cx.config.server_idle_timeout;
                    let server = &mut self.servers[i];
                    // The server may stay silent while it is still being sent the request:
                    // count its silence from our last write.
                    if !server.dedicated {
                        server.deadline = Some(now + timeout);
                    }
                    match &mut server.codec {
                        ServerCodec::H1(codec) => codec.send(cx, event),
                        ServerCodec::H2(codec) => codec.send(event),
                    }
                }
            }
            Out::OpenServer { addr, tls, dedicated, multiplex } => {
                self.assign_server(cx, now, flow, addr, tls, dedicated, multiplex);
            }
            Out::Tunnel => {
                let Some(i) = self.server_of(flow) else { return };
                let (Some(client), Some(_)) = (self.client.h1_mut(), self.servers[i].h1()) else {
                    // HTTP/2 has no protocol switch: the requests that ask for one go over
                    // HTTP/1, and a CONNECT over HTTP/2 is refused.
                    return;
                };
                let client_rest = client.take_rest();
                let mut server = self.servers.remove(i);
                let rest = std::mem::take(&mut server.rest);
                let server_rest = match server.h1_mut() {
                    Some(codec) if rest.is_empty() => codec.take_rest(),
                    _ => rest,
                };
                self.handover = Some(Handover {
                    server: server.conn,
                    target: server.addr.clone(),
                    connect: server.dedicated,
                    client_rest,
                    server_rest,
                    client_eof: self.client.is_eof(),
                });
                self.streams.remove(&flow);
                let others: Vec<ConnId> = self.servers.iter().map(|s| s.conn).collect();
                for conn in others {
                    self.drop_server(cx, conn, false);
                }
            }
            Out::AbortClient => match &mut self.client {
                // One stream failed, not the connection.
                ClientCodec::H2(codec) => codec.reset(flow, h2::Reason::INTERNAL_ERROR),
                ClientCodec::H1(_) => self.close_all(cx, now, false),
            },
            Out::AbortServer => {
                let Some(i) = self.server_of(flow) else { return };
                let server = &mut self.servers[i];
                match &mut server.codec {
                    ServerCodec::H2(codec) => {
                        codec.reset(flow);
                        server.flows.retain(|f| *f != flow);
                        if server.flows.is_empty() {
                            server.deadline = None;
                        }
                    }
                    ServerCodec::H1(_) => {
                        let conn = server.conn;
                        self.drop_server(cx, conn, true);
                    }
                }
            }
        }
    }

    /// Find a connection to `addr` to reuse (idle, or HTTP/2 with room), or open a new one,
    /// for `flow`. `multiplex`: the request may go over HTTP/2.
    #[allow(clippy::too_many_arguments)]
    fn assign_server(
        &mut self,
        cx: &mut Context,
        now: Instant,
        flow: FlowId,
        addr: ServerAddr,
        tls: bool,
        dedicated: bool,
        multiplex: bool,
    ) {
        let proxy = upstream_proxy(cx);
        if !dedicated && cx.config.reuse_server_connections {
            let fits = |s: &ServerConn| s.fits(&addr, tls, proxy.as_ref()) && !s.dedicated;
            let ready = self.servers.iter().position(|s| {
                fits(s) && s.open && s.has_room() && (multiplex || !s.is_h2())
            });
            if let Some(i) = ready {
                self.servers[i].flows.push(flow);
                self.feed(cx, now, flow, Input::ServerReady);
                return;
            }
            // A connection on its way that may speak HTTP/2: wait for it, as a browser would,
            // rather than open one per request.
            let limit = cx.config.http2_limits.max_concurrent_streams as usize;
            let opening = self.servers.iter().position(|s| fits(s) && s.may_multiplex && s.flows.len() < limit);
            if let Some(i) = opening.filter(|_| multiplex) {
                self.servers[i].flows.push(flow);
                return;
            }
        }
        if let Some((failed, error)) = &self.failed_upstream {
            if tls && *failed == addr {
                let error = error.clone();
                return self.feed(cx, now, flow, Input::ServerFailed { addr, error });
            }
        }
        if let Some(proxy) = proxy {
            return self.open_via_proxy(cx, now, flow, (proxy, addr), tls, dedicated);
        }
        let h2 = multiplex && !dedicated && cx.config.http2;
        let conn = if tls {
            // Offer what the codecs speak; the server's choice decides which one it gets.
            match cx.open_tls(addr.clone(), &addr.host, alpn_offer(h2)) {
                Ok(conn) => conn,
                Err(message) => {
                    return self.feed(cx, now, flow, Input::ServerFailed { addr, error: OpenError::Tls(message) });
                }
            }
        } else {
            cx.open(addr.clone())
        };
        let codec = Http1Client::new(conn, &cx.config);
        // The driver bounds the TCP connect; a TLS handshake that stalls after it is ours.
        let deadline = tls.then(|| now + cx.config.server_idle_timeout);
        let may_multiplex = h2 && (tls || cx.config.upstream_h2c);
        let server = ServerConn {
            flows: vec![flow],
            dedicated,
            deadline,
            may_multiplex,
            ..ServerConn::new(conn, addr, codec, tls)
        };
        self.servers.push(server);
    }

    /// Upstream mode: a connection to the upstream `proxy` for `flow`. Plain requests go to
    /// the proxy in absolute-form; a `CONNECT` (`dedicated`) or an `https` request for `addr`
    /// gets a tunnel of the proxy's first, and TLS through it if `tls`.
    fn open_via_proxy(
        &mut self,
        cx: &mut Context,
        now: Instant,
        flow: FlowId,
        (proxy, addr): (ServerAddr, ServerAddr),
        tls: bool,
        dedicated: bool,
    ) {
        if tls && cx.config.tls.is_none() {
            let error = OpenError::Tls("TLS is not configured".into());
            return self.feed(cx, now, flow, Input::ServerFailed { addr, error });
        }
        let conn = cx.open(proxy.clone());
        let codec = Http1Client::new(conn, &cx.config);
        let server = if tls || dedicated {
            let connect = Some(ProxyConnect::new(proxy.clone(), addr.clone()));
            ServerConn { connect, ..ServerConn::new(conn, addr, codec, tls) }
        } else {
            let codec = codec.with_absolute_form();
            ServerConn { absolute: true, ..ServerConn::new(conn, proxy.clone(), codec, false) }
        };
        self.servers.push(ServerConn { flows: vec![flow], dedicated, proxy: Some(proxy), ..server });
    }

    /// The server connection `conn` is ready for requests (or for the tunnel it was made for).
    fn server_opened(&mut self, cx: &mut Context, now: Instant, conn: ConnId) {
        let Some(i) = self.server_index(conn) else { return };
        let server = &mut self.servers[i];
        server.open = true;
        let addr = server.addr.clone();
        let h2 = !server.dedicated && server.connect.is_none() && speaks_h2(cx, conn, server.tls) && server.may_multiplex;
        server.may_multiplex = false;
        let mut waiting = Vec::new();
        if h2 {
            server.codec = ServerCodec::H2(Box::new(H2Client::new(conn, &cx.config)));
            cx.set_self_limiting(conn);
        } else if server.flows.len() > 1 {
            // HTTP/1 after all: one request at a time. The others look elsewhere.
            waiting = server.flows.split_off(1);
        }
        let (tls, flows) = (server.tls, server.flows.clone());
        if cx.config.hooks.contains(HookKind::ServerConnected) {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::ServerConnected { conn, server: addr.clone() });
        }
        for flow in flows {
            self.feed(cx, now, flow, Input::ServerReady);
        }
        for flow in waiting {
            self.assign_server(cx, now, flow, addr.clone(), tls, false, false);
        }
    }

    /// The upstream proxy answered (part of) our `CONNECT` on `conn`.
    fn proxy_answer(&mut self, cx: &mut Context, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(i) = self.server_index(conn) else { return };
        let server = &mut self.servers[i];
        let Some(connect) = &mut server.connect else { return };
        match connect.receive(data) {
            Answer::Pending => {}
            Answer::Refused { message } => {
                self.proxy_failed(cx, now, conn, Input::ProxyFailed { status: 502, message });
            }
            Answer::Established { rest } if server.tls => {
                if !rest.is_empty() {
                    let message = format!(
                        "upstream proxy {} sent data from {} before the TLS handshake",
                        connect.proxy, connect.target
                    );
                    return self.proxy_failed(cx, now, conn, Input::ProxyFailed { status: 502, message });
                }
                let addr = server.addr.clone();
                // Offer what the codecs speak, as for a direct connection.
                let h2 = server.may_multiplex;
                match cx.start_tls_client(conn, addr.clone(), &addr.host, alpn_offer(h2)) {
                    Ok(()) => connect.start_handshake(),
                    Err(message) => {
                        let error = OpenError::Tls(message);
                        self.proxy_failed(cx, now, conn, Input::ServerFailed { addr, error });
                    }
                }
            }
            Answer::Established { rest } => {
                server.rest = rest;
                server.connect = None;
                self.server_opened(cx, now, conn);
            }
        }
    }

    /// Setting up `conn` through the upstream proxy failed: close it, and fail its stream
    /// with `input`.
    fn proxy_failed(&mut self, cx: &mut Context, now: Instant, conn: ConnId, input: Input) {
        let Some(i) = self.server_index(conn) else { return };
        let flows = self.servers[i].flows.clone();
        match &input {
            Input::ProxyFailed { message, .. } => cx.log(LogLevel::Info, message.clone()),
            Input::ServerFailed { addr, error } => cx.log(LogLevel::Info, format!("cannot connect to {addr}: {error}")),
            _ => {}
        }
        self.drop_server(cx, conn, true);
        for flow in flows {
            self.feed(cx, now, flow, input.clone());
        }
    }

    /// The stream `flow` is finished: return its server connection to the pool or close it.
    fn release_server(&mut self, cx: &mut Context, _now: Instant, flow: FlowId) {
        let Some(i) = self.server_of(flow) else { return };
        let server = &mut self.servers[i];
        server.flows.retain(|f| *f != flow);
        if server.flows.is_empty() {
            server.deadline = None;
        }
        let keep = match &mut server.codec {
            ServerCodec::H2(codec) => {
                codec.release(flow);
                !codec.is_closed()
            }
            ServerCodec::H1(codec) => codec.is_reusable(),
        };
        let keep = keep && server.open && !server.dedicated && cx.config.reuse_server_connections;
        if !keep {
            let conn = server.conn;
            self.drop_server(cx, conn, false);
        }
    }

    fn drop_server(&mut self, cx: &mut Context, conn: ConnId, _abort: bool) {
        let Some(i) = self.server_index(conn) else { return };
        let server = self.servers.remove(i);
        cx.close(conn, false);
        if server.open && cx.config.hooks.contains(HookKind::ServerDisconnected) {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::ServerDisconnected { conn, server: server.addr });
        }
    }

    /// Done with the client connection: close it (`linger`: after a half-close and a grace
    /// period), every server connection, and every stream.
    fn close_all(&mut self, cx: &mut Context, now: Instant, linger: bool) {
        let conns: Vec<ConnId> = self.servers.iter().map(|s| s.conn).collect();
        for conn in conns {
            self.drop_server(cx, conn, true);
        }
        if !self.client_gone {
            self.client_gone = true;
            if let ClientCodec::H2(codec) = &mut self.client {
                // Say goodbye in HTTP/2 terms before the connection goes.
                codec.shutdown(Some(h2::Reason::NO_ERROR));
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

    /// Hand the rest of a body to the driver when nothing in the core needs to see it.
    fn start_forwards(&mut self, cx: &mut Context) {
        let Some(min) = cx.config.forward_min else { return };
        let Some(client) = self.client.h1_mut() else { return };
        let Some(flow) = client.current_flow() else { return };
        let Some(stream) = self.streams.get(&flow) else { return };
        let Some(server) = self.servers.iter_mut().find(|s| s.flows.contains(&flow) && s.open) else { return };
        // Bytes on a TLS connection are not what the other side should get.
        if server.tls || !cx.is_plain(ConnId::CLIENT) {
            return;
        }
        let conn = server.conn;
        let Some(codec) = server.h1_mut() else { return };
        if stream.may_forward_response() && client.sends_raw_body(flow) {
            if let Some(len) = codec.start_forward(min) {
                cx.forward(conn, ConnId::CLIENT, len);
            }
        }
        if stream.may_forward_request() && codec.sends_raw_body() {
            if let Some(len) = client.start_forward(min) {
                cx.forward(ConnId::CLIENT, conn, len);
            }
        }
    }

    /// Bookkeeping after every event: reading permissions, keep-alive, closing.
    fn after_event(&mut self, cx: &mut Context, now: Instant) {
        if self.handover.is_some() || self.client_gone {
            return;
        }
        self.drive_h2(cx, now);
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
        if self.client.is_idle() && self.streams.is_empty() {
            if self.client_deadline.is_none() {
                self.client_deadline = Some(now + cx.config.client_idle_timeout);
            }
        } else {
            self.client_deadline = None;
        }
        // Read an HTTP/1 client only when the current stream can take its bytes, and between
        // requests only once it has taken what it was sent: its next request's answer (a 502
        // made here, say) would pile up on the rest. (HTTP/2 connections are always read:
        // their streams' windows hold bodies back.)
        if let Some(client) = self.client.h1() {
            let current = client.current_flow().and_then(|f| self.streams.get(&f));
            let stream_ready = match current {
                Some(stream) => stream.wants_request_data(),
                None => !cx.is_congested(ConnId::CLIENT),
            };
            cx.set_layer_pause(ConnId::CLIENT, !(stream_ready && client.wants_read()));
        }
        // Read an HTTP/1 server only while its stream is not waiting on a hook.
        for server in &self.servers {
            if !server.open || server.is_h2() {
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
        let codec = H2Server::new(ConnId::CLIENT, &cx.config, self.destination.clone());
        self.client = ClientCodec::H2(Box::new(codec));
        cx.set_self_limiting(ConnId::CLIENT);
        Some(held)
    }

    /// Run the HTTP/2 engines until none has anything more to say: what their peers sent is
    /// routed to the streams, and what the streams sent goes out. First each stream's window
    /// is opened or held shut by whether its destination has room.
    fn drive_h2(&mut self, cx: &mut Context, now: Instant) {
        if !matches!(self.client, ClientCodec::H2(_)) && !self.servers.iter().any(ServerConn::is_h2) {
            return;
        }
        // Events of one engine can only feed the others a bounded number of times over.
        for _ in 0..16 {
            let mut moved = false;
            if matches!(self.client, ClientCodec::H2(_)) {
                let flows: Vec<FlowId> = match &self.client {
                    ClientCodec::H2(codec) => codec.flows().collect(),
                    ClientCodec::H1(_) => Vec::new(),
                };
                for flow in flows {
                    let reading = self.streams.get(&flow).is_none_or(|s| s.wants_request_data()) && self.server_has_room(cx, flow);
                    if let ClientCodec::H2(codec) = &mut self.client {
                        codec.set_reading(flow, reading);
                    }
                }
                let mut outputs = Vec::new();
                if let ClientCodec::H2(codec) = &mut self.client {
                    codec.poll(cx, now, &mut outputs);
                }
                moved |= !outputs.is_empty();
                self.handle_client_outputs(cx, now, outputs);
                if self.client_gone {
                    return;
                }
            }
            let h2_servers: Vec<ConnId> = self.servers.iter().filter(|s| s.open && s.is_h2()).map(|s| s.conn).collect();
            for conn in h2_servers {
                let Some(i) = self.server_index(conn) else { continue };
                let flows: Vec<FlowId> = self.servers[i].flows.clone();
                for flow in flows {
                    let reading = self.streams.get(&flow).is_none_or(|s| s.wants_response_data()) && self.client_has_room(cx, flow);
                    if let ServerCodec::H2(codec) = &mut self.servers[i].codec {
                        codec.set_reading(flow, reading);
                    }
                }
                let mut outputs = Vec::new();
                if let ServerCodec::H2(codec) = &mut self.servers[i].codec {
                    codec.poll(cx, &mut outputs);
                }
                moved |= !outputs.is_empty();
                self.handle_h2_server_outputs(cx, now, conn, outputs);
            }
            if !moved {
                break;
            }
        }
    }

    /// Whether the server side of `flow` can take more of its request body now.
    fn server_has_room(&self, cx: &Context, flow: FlowId) -> bool {
        let Some(server) = self.server_of(flow).map(|i| &self.servers[i]) else { return true };
        let backlog = match &server.codec {
            ServerCodec::H2(codec) => codec.backlog(flow),
            ServerCodec::H1(_) => 0,
        };
        !cx.is_congested(server.conn) && backlog < cx.config.high_water
    }

    /// Whether the client side of `flow` can take more of its response body now.
    fn client_has_room(&self, cx: &Context, flow: FlowId) -> bool {
        let backlog = match &self.client {
            ClientCodec::H2(codec) => codec.backlog(flow),
            ClientCodec::H1(_) => 0,
        };
        !cx.is_congested(ConnId::CLIENT) && backlog < cx.config.high_water
    }

    fn handle_h2_server_outputs(&mut self, cx: &mut Context, now: Instant, conn: ConnId, outputs: Vec<H2ClientOutput>) {
        for output in outputs {
            match output {
                H2ClientOutput::Http(event) => {
                    let flow = event.flow();
                    let input = match event {
                        HttpEvent::InterimResponse { response, .. } => Input::Interim(response),
                        HttpEvent::ResponseHeaders { response, end_stream, .. } => Input::ResponseHeaders { response, end_stream },
                        HttpEvent::ResponseData { data, .. } => Input::ResponseData(data),
                        HttpEvent::ResponseEnd { trailers, .. } => Input::ResponseEnd(trailers),
                        _ => continue,
                    };
                    self.feed(cx, now, flow, input);
                }
                H2ClientOutput::StreamError { flow, message, unprocessed } => {
                    if let Some(i) = self.server_index(conn) {
                        self.servers[i].flows.retain(|f| *f != flow);
                    }
                    let input = if unprocessed { Input::ServerRefused { message } } else { Input::ServerError { message } };
                    self.feed(cx, now, flow, input);
                }
                H2ClientOutput::Malformed { flow, error } => {
                    let message = format!("malformed response: {error}");
                    cx.log(LogLevel::Info, format!("server {}: {message}", self.server_addr(conn)));
                    if let Some(i) = self.server_index(conn) {
                        self.servers[i].flows.retain(|f| *f != flow);
                    }
                    self.feed(cx, now, flow, Input::ServerError { message });
                }
                H2ClientOutput::Closed { error } => {
                    if let Some(error) = error {
                        cx.log(LogLevel::Info, format!("server {}: HTTP/2 connection failed: {error}", self.server_addr(conn)));
                    }
                    let flows = self.server_index(conn).map(|i| std::mem::take(&mut self.servers[i].flows)).unwrap_or_default();
                    for flow in flows {
                        let message = "the server closed the HTTP/2 connection".to_string();
                        self.feed(cx, now, flow, Input::ServerError { message });
                    }
                    self.drop_server(cx, conn, false);
                }
            }
        }
    }

    /// The tunnel through the upstream proxy that `conn` is still setting up.
    fn proxy_connect(&self, conn: ConnId) -> Option<&ProxyConnect> {
        self.server_index(conn).and_then(|i| self.servers[i].connect.as_ref())
    }

    fn server_index(&self, conn: ConnId) -> Option<usize> {
        self.servers.iter().position(|s| s.conn == conn)
    }

    /// The server connection carrying `flow`.
    fn server_of(&self, flow: FlowId) -> Option<usize> {
        self.servers.iter().position(|s| s.flows.contains(&flow))
    }

    fn server_addr(&self, conn: ConnId) -> String {
        self.server_index(conn).map_or_else(|| "?".into(), |i| self.servers[i].addr.to_string())
    }
}

/// The ALPN protocols to offer a server: HTTP/2 too if the request may go over it.
fn alpn_offer(h2: bool) -> Vec<Vec<u8>> {
    if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// Whether the open server connection `conn` speaks HTTP/2: its TLS session chose `h2`, or it
/// is plain and configured for prior knowledge.
fn speaks_h2(cx: &Context, conn: ConnId, tls: bool) -> bool {
    if !cx.config.http2 {
        return false;
    }
    match cx.tls(conn) {
        Some(session) => session.alpn().as_deref() == Some(b"h2"),
        None => !tls && cx.config.upstream_h2c,
    }
}

/// The upstream proxy everything goes through, in upstream mode.
fn upstream_proxy(cx: &Context) -> Option<ServerAddr> {
    match &cx.config.mode {
        Mode::Upstream { proxy } => Some(proxy.clone()),
        Mode::Regular | Mode::Reverse { .. } => None,
    }
}
