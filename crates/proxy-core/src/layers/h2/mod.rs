//! HTTP/2 codecs: [`H2Server`] faces a client (we are its server), [`H2Client`] faces an
//! upstream server. Like the HTTP/1 codecs they turn bytes into version-agnostic
//! [`HttpEvent`]s and back, so the HTTP layer and its streams need not know which version a
//! side speaks; unlike them, one connection carries many flows at once.
//!
//! # Why h2, and the one impurity it brings
//!
//! Framing, HPACK, stream states and flow control are where HTTP/2 implementations go wrong,
//! and the `h2` crate is the one the Rust ecosystem (hyper, tonic, reqwest) trusts for them.
//! A frame layer of our own over an HPACK crate would repeat that work and its bugs. h2 is
//! async, but it never waits on anything but its transport, so [`engine`] drives it over
//! in-memory buffers with a waker that does nothing: a synchronous, deterministic state
//! machine behind an interface of our own (bytes in, events out), which another engine
//! could replace.
//!
//! The exception to the core's purity: h2 reads the system clock (`Instant::now`) to expire
//! the streams it remembers after resetting them. That decides only how long late frames for
//! a reset stream are silently dropped rather than treated as errors, never what the proxy
//! sends; playbooks stay deterministic.
//!
//! # Translation
//!
//! Towards HTTP/2, connection-specific fields (`connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`, and `te` other than `trailers`) are
//! dropped and `host` becomes `:authority`; from HTTP/2, `:authority` becomes `host`.
//!
//! # Malformed messages
//!
//! What RFC 9113 (sections 8.1.1, 8.2 and 8.3) makes a malformed message is never forwarded.
//! h2 refuses much of it itself, with a reset or a GOAWAY; [`fields`] lists what, and
//! checks the rest on every head and trailer section, both ways. A malformed request is
//! answered `400` naming the rule (its trailers: the stream is reset, the upstream request
//! abandoned); a malformed response resets the server's stream with `PROTOCOL_ERROR` and
//! becomes the client's `502`.

pub(crate) mod engine;
pub(crate) mod fields;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use h2::Reason;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::command::LogLevel;
use crate::config::{Config, Http2Limits};
use crate::context::Context;
use crate::flow::{reason_phrase, Request, Response, Version};
use crate::headers::{Headers, UnderscoreHeaders};
use crate::ids::{ConnId, FlowId, Scheme};
use crate::layers::http1::split_authority;
use crate::layers::http::destination::Destination;
use crate::layers::http::event::{HttpEvent, ServerOutput};
use engine::{Engine, H2Event, Settings, StreamKey};
use fields::FieldError;

/// What an HTTP/2 client connection begins with.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn settings(limits: &Http2Limits) -> Settings {
    Settings {
        max_concurrent_streams: limits.max_concurrent_streams,
        max_header_list_size: limits.max_header_list_size,
        stream_window: limits.stream_window,
        connection_window: limits.connection_window,
        max_pending_accept_reset_streams: limits.max_pending_accept_reset_streams,
        max_local_error_reset_streams: limits.max_local_error_reset_streams,
    }
}

/// The HTTP/2 server side of the client connection.
pub(crate) struct H2Server {
    conn: ConnId,
    engine: Engine,
    flows: BTreeMap<StreamKey, FlowId>,
    streams: BTreeMap<FlowId, StreamKey>,
    /// Streams whose request is complete, and those whose response is: a stream is forgotten
    /// once in both (a response may end before its request body does).
    request_done: BTreeSet<StreamKey>,
    response_done: BTreeSet<StreamKey>,
    /// Where requests may go: named by their `:authority` (a regular proxy), the server a
    /// tunnel leads to, or reverse mode's upstream whatever they name.
    destination: Destination,
    underscores: UnderscoreHeaders,
    add_via: bool,
    /// Recent resets of unfinished streams by the client, for the rapid-reset limit.
    resets: VecDeque<Instant>,
    limits: Http2Limits,
    eof: bool,
}

impl H2Server {
    pub(crate) fn new(conn: ConnId, config: &Config, destination: Destination) -> Self {
        Self {
            conn,
            engine: Engine::server(&settings(&config.http2_limits)),
            flows: BTreeMap::new(),
            streams: BTreeMap::new(),
            request_done: BTreeSet::new(),
            response_done: BTreeSet::new(),
            destination,
            underscores: config.underscore_headers,
            add_via: config.add_via,
            resets: VecDeque::new(),
            limits: config.http2_limits.clone(),
            eof: false,
        }
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
    pub(crate) fn poll(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<ServerOutput>) {
        // Until the engine is still: what `handle` did (an answer of its own, a reset) is
        // only written by the next poll.
        loop {
            let events = self.engine.poll();
            if events.is_empty() {
                break;
            }
            for event in events {
                self.handle(cx, now, event, out);
            }
        }
        cx.send(self.conn, self.engine.take_output());
    }

    fn handle(&mut self, cx: &mut Context, now: Instant, event: H2Event, out: &mut Vec<ServerOutput>) {
        match event {
            H2Event::Request { stream, head, end_stream } => match self.request(head) {
                Ok(request) => {
                    let flow = cx.next_flow_id();
                    self.flows.insert(stream, flow);
                    self.streams.insert(flow, stream);
                    if end_stream {
                        self.request_done.insert(stream);
                    }
                    out.push(ServerOutput::Http(HttpEvent::RequestHeaders { flow, request, end_stream }));
                }
                Err((status, message)) => {
                    cx.log(LogLevel::Info, format!("client {}: {} ({})", cx.client.peer, message, status));
                    let response = Response::error(status, &message);
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
                    out.push(ServerOutput::Http(HttpEvent::RequestData { flow, data }));
                }
            }
            H2Event::End { stream, trailers } => {
                if let Some(&flow) = self.flows.get(&stream) {
                    if let Some(Err(error)) = trailers.as_ref().map(fields::check_fields) {
                        // The request went upstream already: it is abandoned there.
                        let message = format!("malformed trailers: {error}");
                        cx.log(LogLevel::Info, format!("client {}: stream {stream}: {message}", cx.client.peer));
                        self.forget(stream);
                        self.engine.reset(stream, Reason::PROTOCOL_ERROR);
                        out.push(ServerOutput::Error { flow: Some(flow), message });
                        return;
                    }
                    let trailers = trailers.map(|t| from_h2_headers(&t));
                    out.push(ServerOutput::Http(HttpEvent::RequestEnd { flow, trailers }));
                    self.request_done.insert(stream);
                    self.forget_if_done(stream);
                }
            }
            H2Event::Reset { stream, reason, remote, .. } => {
                let Some(&flow) = self.flows.get(&stream) else { return };
                self.forget(stream);
                if remote {
                    cx.log(LogLevel::Debug, format!("client {} reset stream {stream} ({reason:?})", cx.client.peer));
                    self.count_reset(cx, now);
                } else {
                    cx.log(LogLevel::Info, format!("client {}: stream {stream} failed ({reason:?})", cx.client.peer));
                }
                out.push(ServerOutput::Reset { flow });
            }
            H2Event::Closed { error } => {
                if let Some(error) = error {
                    cx.log(LogLevel::Info, format!("client {}: HTTP/2 connection failed: {error}", cx.client.peer));
                }
                for (_, flow) in std::mem::take(&mut self.flows) {
                    out.push(ServerOutput::Reset { flow });
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

    /// Our request, from an HTTP/2 request head; or the status and reason to refuse it with.
    fn request(&self, head: http::request::Parts) -> Result<Request, (u16, String)> {
        fields::check_request(&head).map_err(|error| (400, error.to_string()))?;
        if head.method == http::Method::CONNECT {
            return Err(match self.destination.refuses_connect() {
                Some(message) => (405, message.into()),
                None => (501, "CONNECT over HTTP/2 is not supported".into()),
            });
        }
        let mut headers = from_h2_headers(&head.headers);
        headers.screen_underscores(self.underscores).map_err(|e| (400, e.to_string()))?;
        let authority = head.uri.authority().map(|a| a.as_str().to_owned());
        let authority = authority.or_else(|| headers.get_str("host").map(str::to_owned));
        let path = head.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let (scheme, host, port) = match (self.destination.target(), authority) {
            (Some((scheme, target)), _) => (scheme, target.host.clone(), target.port),
            (None, Some(authority)) => {
                let scheme = match head.uri.scheme_str() {
                    Some("https") => Scheme::Https,
                    _ => Scheme::Http,
                };
                let (host, port) = split_authority(&authority, Some(scheme.default_port()))
                    .ok_or_else(|| (400, format!("invalid :authority {authority:?}")))?;
                (scheme, host, port)
            }
            (None, None) => return Err((400, "a proxy request needs an :authority".into())),
        };
        if headers.get_all("host").count() > 1 {
            return Err((400, "more than one host header".into()));
        }
        let mut request = Request {
            method: head.method.as_str().to_owned(),
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
        let keeps_host = matches!(self.destination, Destination::Tunnel { .. });
        let host = match head.uri.authority() {
            Some(authority) if keeps_host => authority.as_str().to_owned(),
            _ => match headers.get_str("host") {
                Some(host) if keeps_host => host.to_owned(),
                _ => request.authority(),
            },
        };
        headers.remove("host");
        request.headers.append("host", host);
        for (name, value) in headers.iter() {
            request.headers.append(Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
        }
        if self.add_via {
            request.headers.append("via", "2 sansproxy");
        }
        Ok(request)
    }

    /// Send a response event to the client.
    pub(crate) fn send(&mut self, event: HttpEvent) {
        let Some(&stream) = self.streams.get(&event.flow()) else { return };
        match event {
            HttpEvent::InterimResponse { response, .. } => self.engine.interim(stream, to_h2_response(&response)),
            HttpEvent::ResponseHeaders { response, end_stream, .. } => {
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
        self.response_done.insert(stream);
        self.forget_if_done(stream);
    }

    fn forget_if_done(&mut self, stream: StreamKey) {
        if self.request_done.contains(&stream) && self.response_done.contains(&stream) {
            self.forget(stream);
        }
    }

    fn forget(&mut self, stream: StreamKey) {
        if let Some(flow) = self.flows.remove(&stream) {
            self.streams.remove(&flow);
        }
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

/// The HTTP/2 client side of an upstream connection.
pub(crate) struct H2Client {
    conn: ConnId,
    engine: Engine,
    /// Flows with a stream open, and whether their response head has arrived.
    flows: BTreeMap<FlowId, bool>,
}

/// What an upstream HTTP/2 connection said, for the HTTP layer.
#[derive(Debug)]
pub(crate) enum H2ClientOutput {
    Http(HttpEvent),
    /// The stream of `flow` failed; `message` says how. `unprocessed`: the server did not act
    /// on the request, which may be sent again.
    StreamError { flow: FlowId, message: String, unprocessed: bool },
    /// The server's response on `flow` (its head, or trailers) was malformed; its stream has
    /// been reset with `PROTOCOL_ERROR`.
    Malformed { flow: FlowId, error: FieldError },
    /// The connection is over; every flow on it has had its `StreamError`.
    Closed { error: Option<String> },
}

impl H2Client {
    pub(crate) fn new(conn: ConnId, config: &Config) -> Self {
        Self { conn, engine: Engine::client(&settings(&config.http2_limits)), flows: BTreeMap::new() }
    }

    pub(crate) fn receive(&mut self, data: Bytes) {
        self.engine.receive(data);
    }

    pub(crate) fn receive_eof(&mut self) {
        self.engine.receive_eof();
    }

    /// Whether another request may go on this connection now.
    pub(crate) fn has_room(&self) -> bool {
        !self.engine.is_closed() && self.engine.has_room()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    pub(crate) fn set_reading(&mut self, flow: FlowId, reading: bool) {
        self.engine.set_reading(flow.0, reading);
    }

    pub(crate) fn backlog(&self, flow: FlowId) -> usize {
        self.engine.backlog(flow.0)
    }

    /// Send a request event of `flow`.
    pub(crate) fn send(&mut self, event: HttpEvent) {
        match event {
            HttpEvent::RequestHeaders { flow, request, end_stream } => {
                let body = request.body.clone();
                let trailers = request.trailers.as_ref().map(to_h2_headers);
                let end = end_stream && body.as_ref().is_none_or(|b| b.is_empty()) && trailers.is_none();
                self.flows.insert(flow, false);
                self.engine.open(flow.0, to_h2_request(&request), end);
                if !end {
                    if let Some(body) = body {
                        self.engine.send_data(flow.0, body);
                    }
                    if end_stream {
                        self.engine.finish(flow.0, trailers);
                    }
                }
            }
            HttpEvent::RequestData { flow, data } => self.engine.send_data(flow.0, data),
            HttpEvent::RequestEnd { flow, trailers } => self.engine.finish(flow.0, trailers.as_ref().map(to_h2_headers)),
            _ => {}
        }
    }

    /// Give up on `flow`'s stream, telling the server.
    pub(crate) fn reset(&mut self, flow: FlowId) {
        if self.flows.remove(&flow).is_some() {
            self.engine.reset(flow.0, Reason::CANCEL);
        }
    }

    /// The stream of `flow` is over on both sides; forget it.
    pub(crate) fn release(&mut self, flow: FlowId) {
        self.flows.remove(&flow);
    }

    pub(crate) fn poll(&mut self, cx: &mut Context, out: &mut Vec<H2ClientOutput>) {
        // Until the engine is still, as the server side does: a reset of ours is written by
        // the next poll.
        loop {
            let events = self.engine.poll();
            if events.is_empty() {
                break;
            }
            for event in events {
                self.handle(event, out);
            }
        }
        cx.send(self.conn, self.engine.take_output());
    }

    fn handle(&mut self, event: H2Event, out: &mut Vec<H2ClientOutput>) {
        match event {
            H2Event::Interim { stream, head } => {
                let flow = FlowId(stream);
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                let response = Response { body: None, ..from_h2_response(head) };
                out.push(H2ClientOutput::Http(HttpEvent::InterimResponse { flow, response }));
            }
            H2Event::Response { stream, head, end_stream } => {
                let flow = FlowId(stream);
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                self.flows.insert(flow, true);
                let response = from_h2_response(head);
                out.push(H2ClientOutput::Http(HttpEvent::ResponseHeaders { flow, response, end_stream }));
            }
            // The rest of a stream given up on within this poll goes nowhere.
            H2Event::Data { stream, .. } | H2Event::End { stream, .. } if !self.flows.contains_key(&FlowId(stream)) => {}
            H2Event::Data { stream, data } => {
                out.push(H2ClientOutput::Http(HttpEvent::ResponseData { flow: FlowId(stream), data }));
            }
            H2Event::End { stream, trailers } => {
                let flow = FlowId(stream);
                if let Some(Err(error)) = trailers.as_ref().map(fields::check_fields) {
                    self.malformed(flow, error, out);
                    return;
                }
                let trailers = trailers.map(|t| from_h2_headers(&t));
                out.push(H2ClientOutput::Http(HttpEvent::ResponseEnd { flow, trailers }));
            }
            H2Event::Reset { stream, reason, remote, unprocessed } => {
                let flow = FlowId(stream);
                if self.flows.remove(&flow).is_some() {
                    let message = match (remote, unprocessed) {
                        (true, true) => format!("the server refused the stream ({reason:?})"),
                        (true, false) => format!("the server reset the stream ({reason:?})"),
                        (false, _) => format!("HTTP/2 stream failed ({reason:?})"),
                    };
                    out.push(H2ClientOutput::StreamError { flow, message, unprocessed });
                }
            }
            H2Event::Closed { error } => out.push(H2ClientOutput::Closed { error }),
            H2Event::Request { .. } => {}
        }
    }

    /// The server's response on `flow` broke `error`'s rule: reset its stream and tell.
    /// Whether a response head on `flow` goes on: the flow is ours and the head well formed
    /// (a malformed one resets the stream).
    fn takes_head(&mut self, flow: FlowId, head: &http::response::Parts, out: &mut Vec<H2ClientOutput>) -> bool {
        if !self.flows.contains_key(&flow) {
            return false;
        }
        match fields::check_response(head) {
            Ok(()) => true,
            Err(error) => {
                self.malformed(flow, error, out);
                false
            }
        }
    }

    fn malformed(&mut self, flow: FlowId, error: FieldError, out: &mut Vec<H2ClientOutput>) {
        self.flows.remove(&flow);
        self.engine.reset(flow.0, Reason::PROTOCOL_ERROR);
        out.push(H2ClientOutput::Malformed { flow, error });
    }
}

fn from_h2_headers(map: &HeaderMap) -> Headers {
    let mut headers = Headers::with_capacity(map.len());
    for (name, value) in map {
        headers.append(Bytes::copy_from_slice(name.as_str().as_bytes()), Bytes::copy_from_slice(value.as_bytes()));
    }
    headers
}

/// Header fields for HTTP/2: connection-specific ones dropped (RFC 9113 section 8.2.2),
/// names lowercased, anything HTTP/2 cannot carry left out.
fn to_h2_headers(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let connection_specific = [&b"connection"[..], b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"];
        if connection_specific.iter().any(|c| name.eq_ignore_ascii_case(c)) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"te") && !value.trim_ascii().eq_ignore_ascii_case(b"trailers") {
            continue;
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else { continue };
        map.append(name, value);
    }
    map
}

fn to_h2_request(request: &Request) -> http::Request<()> {
    let authority = request.headers.get_str("host").map_or_else(|| request.authority(), str::to_owned);
    let path = if request.path.is_empty() { "/" } else { request.path.as_str() };
    let uri = http::Uri::builder().scheme(request.scheme.as_str()).authority(authority.as_str()).path_and_query(path).build();
    let uri = uri.unwrap_or_else(|_| {
        // A Host the URI grammar refuses: fall back to the target we connect to.
        let fallback = http::Uri::builder().scheme(request.scheme.as_str()).authority(request.authority()).path_and_query(path).build();
        fallback.unwrap_or_default()
    });
    let method = http::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
    let mut out = http::Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = http::Version::HTTP_2;
    *out.headers_mut() = to_h2_headers(&request.headers);
    out
}

fn to_h2_response(response: &Response) -> http::Response<()> {
    let mut out = http::Response::new(());
    *out.status_mut() = http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = to_h2_headers(&response.headers);
    if let Some(body) = &response.body {
        if !out.headers().contains_key(http::header::CONTENT_LENGTH) && response.status != 204 && response.status != 304 {
            out.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
    }
    out
}

fn from_h2_response(head: http::response::Parts) -> Response {
    let status = head.status.as_u16();
    Response {
        version: Version::Http2,
        status,
        reason: reason_phrase(status).to_owned(),
        headers: from_h2_headers(&head.headers),
        body: None,
        trailers: None,
    }
}
