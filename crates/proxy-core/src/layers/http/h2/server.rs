//! The client connection's HTTP/2 codec: we are the client's server.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use crate::layers::http::h2::engine::Reason;

use super::conversion::{to_h2_headers, to_h2_response};
use super::engine::{Engine, H2Event, RequestHead, StreamKey};
use super::{fields, settings, SmallMap};
use crate::command::LogLevel;
use crate::config::{Config, Http2Limits};
use crate::context::Context;
use crate::flow::{Request, Response, Version};
use crate::headers::{Headers, UnderscoreHeaders};
use crate::ids::{ConnId, FlowId, Scheme};
use crate::layers::http::authority::split_authority;
use crate::layers::http::destination::Destination;
use crate::layers::http::error::ClientError;
use crate::layers::http::event::{CodecOutput, HttpEvent, StreamReset};
use crate::layers::websocket;

/// The HTTP/2 server side of the client connection.
pub(crate) struct H2Server {
    conn: ConnId,
    engine: Engine,
    flows: SmallMap<StreamKey, FlowId>,
    streams: SmallMap<FlowId, StreamKey>,
    /// Streams whose request is complete, and those whose response is: a stream is forgotten
    /// once in both (a response may end before its request body does).
    request_done: SmallMap<StreamKey, ()>,
    response_done: SmallMap<StreamKey, ()>,
    /// Where requests may go: named by their `:authority` (a regular proxy), the server a
    /// tunnel leads to, or reverse mode's upstream whatever they name.
    destination: Destination,
    underscores: UnderscoreHeaders,
    add_via: bool,
    /// Recent resets of unfinished streams by the client, for the rapid-reset limit.
    resets: VecDeque<Instant>,
    limits: Http2Limits,
    eof: bool,
    /// Streams opened by an extended CONNECT for `websocket` (RFC 8441): their requests go
    /// on as HTTP/1.1's upgrade, and a `101` answers them as `200`.
    websockets: BTreeSet<StreamKey>,
    /// Whether `CONNECT` streams are served (RFC 9113 section 8.5): the layer above carries
    /// tunnels on streams. Otherwise they are answered 501.
    serve_connect: bool,
    /// Streams opened by a `CONNECT`: a `2xx` answer leaves them open, for the tunnel.
    tunnels: BTreeSet<StreamKey>,
}

impl H2Server {
    pub(crate) fn new(conn: ConnId, config: &Config, destination: Destination) -> Self {
        Self {
            conn,
            engine: Engine::server(&settings(&config.http2_limits, config.websocket.http2)),
            websockets: BTreeSet::new(),
            serve_connect: false,
            tunnels: BTreeSet::new(),
            flows: SmallMap::new(),
            streams: SmallMap::new(),
            request_done: SmallMap::new(),
            response_done: SmallMap::new(),
            destination,
            underscores: config.underscore_headers,
            add_via: config.add_via,
            resets: VecDeque::new(),
            limits: config.http2_limits.clone(),
            eof: false,
        }
    }

    /// Serve `CONNECT` streams, as tunnels the layer above carries.
    pub(crate) fn serving_connect(mut self) -> Self {
        self.serve_connect = true;
        self
    }

    pub(crate) fn receive(&mut self, data: Bytes) {
        self.engine.receive(data);
    }

    pub(crate) fn receive_eof(&mut self) {
        self.eof = true;
        self.engine.receive_eof();
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    /// The connection is over and everything for it has been sent.
    pub(crate) fn is_finished(&self) -> bool {
        self.engine.is_closed()
    }

    /// No request in progress.
    pub(crate) fn is_idle(&self) -> bool {
        self.flows.is_empty()
    }

    pub(crate) fn flows(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.streams.keys().copied()
    }

    /// Let the request body of `flow` be read, or hold it back (its window stays shut).
    pub(crate) fn set_reading(&mut self, flow: FlowId, reading: bool) {
        if let Some(&stream) = self.streams.get(&flow) {
            self.engine.set_reading(stream, reading);
        }
    }

    /// Response bytes of `flow` waiting for the client's window.
    pub(crate) fn backlog(&self, flow: FlowId) -> usize {
        self.streams.get(&flow).map_or(0, |&s| self.engine.backlog(s))
    }

    /// Run the engine: what the client sent becomes `out`, what we have for it is sent.
    pub(crate) fn poll(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<CodecOutput<ClientError>>) {
        Engine::poll_until_still(self, |s| &mut s.engine, |s, event| s.handle(cx, now, event, out));
        cx.send(self.conn, self.engine.take_output());
    }

    fn handle(&mut self, cx: &mut Context, now: Instant, event: H2Event, out: &mut Vec<CodecOutput<ClientError>>) {
        match event {
            H2Event::Request { stream, head, end_stream } => match self.request(cx, head) {
                Ok(request) => {
                    let flow = cx.next_flow_id();
                    self.flows.insert(stream, flow);
                    self.streams.insert(flow, stream);
                    if end_stream {
                        self.request_done.insert(stream, ());
                    }
                    // A WebSocket's upgrade is a request without a body, as HTTP/1.1's GET; what
                    // the stream carries next is WebSocket frames, for the layer to route.
                    let websocket = request.version == Version::Http2 && request.headers.has_token("upgrade", "websocket");
                    if websocket {
                        self.websockets.insert(stream);
                    }
                    // So is a CONNECT's: what its stream carries next is the tunnel's bytes.
                    let connect = request.method == "CONNECT";
                    if connect {
                        self.tunnels.insert(stream);
                    }
                    let end_stream = end_stream || websocket || connect;
                    out.push(CodecOutput::Http(HttpEvent::RequestHeaders { flow, request, end_stream }));
                }
                Err(error) => {
                    let status = error.status();
                    cx.log(LogLevel::Info, format!("client {}: {} ({})", cx.client.peer, error, status));
                    let response = Response::error(status, &error.to_string());
                    self.engine.respond(stream, to_h2_response(&response), false);
                    self.engine.send_data(stream, response.body.unwrap_or_default());
                    self.engine.finish(stream, None);
                    if !end_stream {
                        // The rest of its body is of no use.
                        self.engine.set_reading(stream, true);
                    }
                }
            },
            H2Event::Data { stream, data } => {
                if let Some(&flow) = self.flows.get(&stream) {
                    out.push(CodecOutput::Http(HttpEvent::RequestData { flow, data }));
                }
            }
            H2Event::End { stream, trailers } => {
                if let Some(&flow) = self.flows.get(&stream) {
                    if let Some(Err(error)) = trailers.as_ref().map(fields::check_fields) {
                        // The request went upstream already: it is abandoned there.
                        let error = ClientError::Trailers(error);
                        cx.log(LogLevel::Info, format!("client {}: stream {stream}: {error}", cx.client.peer));
                        self.forget(stream);
                        self.engine.reset(stream, Reason::PROTOCOL_ERROR);
                        out.push(CodecOutput::Error { flow: Some(flow), error });
                        return;
                    }
                    out.push(CodecOutput::Http(HttpEvent::RequestEnd { flow, trailers }));
                    self.request_done.insert(stream, ());
                    self.forget_if_done(stream);
                }
            }
            H2Event::Reset { stream, reason, remote, unprocessed } => {
                let Some(&flow) = self.flows.get(&stream) else { return };
                self.forget(stream);
                if remote {
                    cx.log(LogLevel::Debug, format!("client {} reset stream {stream} ({reason:?})", cx.client.peer));
                    self.count_reset(cx, now);
                } else {
                    cx.log(LogLevel::Info, format!("client {}: stream {stream} failed ({reason:?})", cx.client.peer));
                }
                out.push(CodecOutput::Reset { flow, reset: StreamReset { reason, remote, unprocessed } });
            }
            H2Event::Closed { error } => {
                if let Some(error) = error {
                    cx.log(LogLevel::Info, format!("client {}: HTTP/2 connection failed: {error}", cx.client.peer));
                }
                // Lost with the connection, as the engine reports its own streams.
                let reset = StreamReset { reason: Reason::CANCEL, remote: false, unprocessed: false };
                for (_, flow) in std::mem::take(&mut self.flows) {
                    out.push(CodecOutput::Reset { flow, reset });
                }
                self.streams.clear();
                self.request_done.clear();
                self.response_done.clear();
            }
            H2Event::Interim { .. } | H2Event::Response { .. } => {}
        }
    }

    /// A client that cancels streams faster than `max_resets` per `reset_period` is the
    /// rapid-reset attack (CVE-2023-44487): each cancelled stream may have cost an upstream
    /// request. Its connection is closed with ENHANCE_YOUR_CALM.
    fn count_reset(&mut self, cx: &mut Context, now: Instant) {
        self.resets.push_back(now);
        while self.resets.front().is_some_and(|&t| now.duration_since(t) > self.limits.reset_period) {
            self.resets.pop_front();
        }
        if self.resets.len() > self.limits.max_resets as usize {
            cx.log(
                LogLevel::Warn,
                format!(
                    "client {} reset more than {} streams within {:?}: closing the connection (ENHANCE_YOUR_CALM)",
                    cx.client.peer, self.limits.max_resets, self.limits.reset_period
                ),
            );
            self.engine.shutdown(Some(Reason::ENHANCE_YOUR_CALM));
            self.resets.clear();
        }
    }

    /// Our request, from an HTTP/2 request head; or why it is refused.
    fn request(&self, cx: &Context, mut head: RequestHead) -> Result<Request, ClientError> {
        fields::check_request(&head).map_err(ClientError::Fields)?;
        let websocket = head.method == "CONNECT" && head.protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"));
        let connect = head.method == "CONNECT" && !websocket;
        if connect {
            if let Some(message) = self.destination.refuses_connect() {
                return Err(ClientError::ConnectRefused(message));
            }
            if !self.serve_connect {
                return Err(ClientError::H2Connect);
            }
        }
        let mut headers = std::mem::take(&mut head.fields);
        headers.screen_underscores(self.underscores)?;
        if connect {
            return self.connect_request(head, headers);
        }
        let authority = head.authority.as_deref().map(text);
        let authority = authority.or_else(|| headers.get_str("host").map(str::to_owned));
        let path = head.path.as_deref().map_or_else(|| "/".to_owned(), text);
        let (scheme, host, port) = match (self.destination.target(), authority) {
            (Some((scheme, target)), _) => (scheme, target.host.clone(), target.port),
            (None, Some(authority)) => {
                let scheme = match head.scheme.as_deref() {
                    Some(b"https") => Scheme::Https,
                    _ => Scheme::Http,
                };
                let (host, port) = split_authority(&authority, Some(scheme.default_port()))
                    .ok_or_else(|| ClientError::Authority(authority.clone()))?;
                (scheme, host, port)
            }
            (None, None) => return Err(ClientError::NoAuthority),
        };
        if headers.get_all("host").count() > 1 {
            return Err(ClientError::HostTwice);
        }
        let mut request = Request {
            // An extended CONNECT for `websocket` is the HTTP/1.1 upgrade's GET.
            method: if websocket { "GET".to_owned() } else { text(&head.method) },
            scheme,
            host,
            port,
            path,
            version: Version::Http2,
            headers: Headers::new(),
            body: None,
            trailers: None,
        };
        // `:authority` names the origin as the client sees it; an HTTP/1 server wants it as
        // `Host`, first, as an HTTP/1 client would have sent it.
        // Reverse mode keeps the client's too: the HTTP layer routes by it, then names the
        // backend.
        let keeps_host = matches!(self.destination, Destination::Tunnel { .. } | Destination::Fixed { .. });
        let host = match head.authority.as_deref() {
            Some(authority) if keeps_host => text(authority),
            _ => match headers.get_str("host") {
                Some(host) if keeps_host => host.to_owned(),
                _ => request.authority(),
            },
        };
        headers.remove("host");
        request.headers.append("host", host);
        for (name, value) in headers.iter_shared() {
            request.headers.append(name.clone(), value.clone());
        }
        if websocket {
            request.headers.insert("upgrade", "websocket");
            request.headers.insert("connection", "Upgrade");
            let key = websocket::handshake::new_key(|b| cx.config.websocket.mask_keys.fill(b));
            request.headers.insert("sec-websocket-key", key);
        }
        if self.add_via {
            request.headers.append("via", "2 sansproxy");
        }
        Ok(request)
    }

    /// A `CONNECT` (RFC 9113 section 8.5): its `:authority` is the tunnel's host and port,
    /// which the field checks made sure it has.
    fn connect_request(&self, head: RequestHead, mut headers: Headers) -> Result<Request, ClientError> {
        let authority = head.authority.as_deref().map(text).ok_or(ClientError::NoAuthority)?;
        let (host, port) = split_authority(&authority, None).ok_or_else(|| ClientError::ConnectTarget(authority.clone()))?;
        headers.remove("host");
        let mut request = Request {
            method: "CONNECT".to_owned(),
            scheme: Scheme::Https,
            host,
            port,
            path: String::new(),
            version: Version::Http2,
            headers: Headers::new(),
            body: None,
            trailers: None,
        };
        request.headers.append("host", authority);
        for (name, value) in headers.iter_shared() {
            request.headers.append(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// Send a response event to the client.
    pub(crate) fn send(&mut self, event: HttpEvent) {
        let Some(&stream) = self.streams.get(&event.flow()) else { return };
        match event {
            HttpEvent::InterimResponse { response, .. } => self.engine.interim(stream, to_h2_response(&response)),
            HttpEvent::ResponseHeaders { mut response, mut end_stream, .. } => {
                if response.status == 101 && self.websockets.contains(&stream) {
                    // The switch to WebSocket, in RFC 8441's words: 200, and the stream stays open.
                    response.status = 200;
                    response.reason = "OK".into();
                    for name in ["upgrade", "connection", "sec-websocket-accept"] {
                        response.headers.remove(name);
                    }
                    end_stream = false;
                }
                if (200..300).contains(&response.status) && self.tunnels.contains(&stream) {
                    // The tunnel is up: the stream stays open and carries it (no content).
                    response.headers.remove("content-length");
                    response.body = None;
                    end_stream = false;
                }
                let body = response.body.clone();
                let end = end_stream || body.as_ref().is_some_and(|b| b.is_empty()) && response.trailers.is_none();
                self.engine.respond(stream, to_h2_response(&response), end);
                if !end {
                    if let Some(body) = body {
                        self.engine.send_data(stream, body);
                        self.engine.finish(stream, response.trailers.as_ref().map(to_h2_headers));
                    }
                }
                if end || response.body.is_some() {
                    self.done(stream);
                }
            }
            HttpEvent::ResponseData { data, .. } => self.engine.send_data(stream, data),
            HttpEvent::ResponseEnd { trailers, .. } => {
                self.engine.finish(stream, trailers.as_ref().map(to_h2_headers));
                self.done(stream);
            }
            HttpEvent::RequestHeaders { .. } | HttpEvent::RequestData { .. } | HttpEvent::RequestEnd { .. } => {}
        }
    }

    /// Our response on `stream` is complete. The rest of its request body, if any, is still
    /// read (and its window kept open) until it ends.
    fn done(&mut self, stream: StreamKey) {
        self.response_done.insert(stream, ());
        self.forget_if_done(stream);
    }

    fn forget_if_done(&mut self, stream: StreamKey) {
        if self.request_done.contains_key(&stream) && self.response_done.contains_key(&stream) {
            self.forget(stream);
        }
    }

    fn forget(&mut self, stream: StreamKey) {
        if let Some(flow) = self.flows.remove(&stream) {
            self.streams.remove(&flow);
        }
        self.websockets.remove(&stream);
        self.tunnels.remove(&stream);
        self.request_done.remove(&stream);
        self.response_done.remove(&stream);
    }

    /// Abandon `flow`'s stream (its response failed after it had started, or a hook killed it).
    pub(crate) fn reset(&mut self, flow: FlowId, reason: Reason) {
        if let Some(&stream) = self.streams.get(&flow) {
            self.forget(stream);
            self.engine.reset(stream, reason);
        }
    }

    /// `flow` was answered and will not be read further: once the answer has gone out, tell
    /// the client to stop sending the request (`NO_ERROR`, RFC 9113 section 8.1).
    pub(crate) fn stop_request(&mut self, flow: FlowId) {
        if let Some(&stream) = self.streams.get(&flow) {
            self.forget(stream);
            self.engine.reset_when_sent(stream, Reason::NO_ERROR);
        }
    }

    /// Close the connection: at once with `reason`, or after the streams in progress.
    pub(crate) fn shutdown(&mut self, reason: Option<Reason>) {
        self.engine.shutdown(reason);
    }
}

/// A pseudo-header's value as text. The engine let through only what the URI grammar and
/// the token rules allow, which is ASCII: checked as UTF-8 a word at a time, where a lossy
/// conversion walks it in chunks.
fn text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}
