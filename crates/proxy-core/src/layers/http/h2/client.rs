//! An upstream connection's HTTP/2 codec: we are the server's client.
//!
//! A WebSocket upgrade (HTTP/1.1's `GET` with `Upgrade: websocket`, which is what every
//! client's upgrade is by the time it reaches a server codec) goes out as RFC 8441's extended
//! CONNECT, on a connection whose server enabled it; the server's `2xx` comes back as the
//! `101` the stream layer switches on, with the `Sec-WebSocket-Accept` for the key the
//! upgrade carried. The stream then carries frames both ways until the HTTP layer ends it.

use std::collections::BTreeMap;

use bytes::Bytes;
use crate::layers::http::h2::engine::Reason;

use super::conversion::{from_h2_response, to_h2_headers, to_h2_request, to_h2_websocket};
use super::engine::{Engine, H2Event, ResponseHead, StreamKey};
use super::fields::{self, FieldError};
use super::{settings, SmallMap};
use crate::config::Config;
use crate::context::Context;
use crate::flow::Response;
use crate::ids::{ConnId, FlowId};
use crate::layers::http::error::ServerError;
use crate::layers::http::event::{CodecOutput, HttpEvent, StreamReset};
use crate::layers::websocket::handshake;

/// The HTTP/2 client side of an upstream connection.
pub(crate) struct H2Client {
    conn: ConnId,
    engine: Engine,
    /// The stream of each flow with one open. The codec names its streams itself: a flow is
    /// an exchange of the whole connection stack, a stream key one stream of this connection.
    streams: SmallMap<FlowId, StreamKey>,
    /// The same, by stream.
    flows: SmallMap<StreamKey, FlowId>,
    next_key: StreamKey,
    /// Flows whose request is a WebSocket upgrade, sent as an extended CONNECT.
    websockets: BTreeMap<FlowId, Upgrade>,
    /// The head the engine keeps for a server's repeated response heads, once checked: a head
    /// sharing its fields is the same head, and passes as it did (see `takes_head`).
    checked: Option<ResponseHead>,
}

/// Where a WebSocket upgrade sent as an extended CONNECT stands.
enum Upgrade {
    /// Waiting for the answer; `key` is the upgrade's `Sec-WebSocket-Key`, which HTTP/2 does
    /// not carry, for the `Sec-WebSocket-Accept` of its `101`.
    Asked { key: String },
    /// Answered `2xx`: the stream carries frames, and ends when the HTTP layer says.
    Open,
}

impl H2Client {
    /// The connection is now `conn` (it moved to another client connection).
    pub(crate) fn rename(&mut self, conn: ConnId) {
        self.conn = conn;
    }

    pub(crate) fn new(conn: ConnId, config: &Config) -> Self {
        Self {
            conn,
            engine: Engine::client(&settings(&config.http2_limits, false)),
            streams: SmallMap::new(),
            flows: SmallMap::new(),
            next_key: 1,
            websockets: BTreeMap::new(),
            checked: None,
        }
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

    /// How many streams the connection may have open at once; none once it takes no more.
    pub(crate) fn max_streams(&self) -> usize {
        self.engine.max_streams()
    }

    /// Say goodbye (GOAWAY, `NO_ERROR`): no new stream from now on.
    pub(crate) fn shutdown(&mut self) {
        self.engine.shutdown(Some(Reason::NO_ERROR));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    /// Open, and no stream in progress: another client connection could take it over.
    pub(crate) fn is_idle(&self) -> bool {
        !self.engine.is_closed() && self.engine.active_streams() == 0
    }

    /// Whether the settings are exchanged (the server's in, ours acknowledged): the server has
    /// nothing more to send unasked.
    pub(crate) fn is_settled(&self) -> bool {
        self.engine.is_settled()
    }

    /// Whether the server takes WebSocket upgrades as streams (RFC 8441); `None` until its
    /// SETTINGS are in.
    pub(crate) fn extended_connect(&self) -> Option<bool> {
        self.engine.extended_connect()
    }

    /// Open (or hold shut) `flow`'s receive window by whether its destination has room;
    /// false if the codec has no stream for it (yet).
    pub(crate) fn set_reading(&mut self, flow: FlowId, reading: bool) -> bool {
        let Some(&stream) = self.streams.get(&flow) else { return false };
        self.engine.set_reading(stream, reading);
        true
    }

    pub(crate) fn backlog(&self, flow: FlowId) -> usize {
        self.streams.get(&flow).map_or(0, |&stream| self.engine.backlog(stream))
    }

    /// Send a request event of `flow`.
    pub(crate) fn send(&mut self, event: HttpEvent) {
        match event {
            HttpEvent::RequestHeaders { flow, request, .. } if request.headers.has_token("upgrade", "websocket") => {
                // The stream stays open for frames whatever the upgrade's request said.
                let stream = self.new_stream(flow);
                let key = request.headers.get_str("sec-websocket-key").unwrap_or_default().to_owned();
                self.websockets.insert(flow, Upgrade::Asked { key });
                self.engine.open(stream, to_h2_websocket(&request), false);
            }
            HttpEvent::RequestHeaders { flow, request, end_stream } => {
                let body = request.body.clone();
                let trailers = request.trailers.as_ref().map(to_h2_headers);
                let end = end_stream && body.as_ref().is_none_or(|b| b.is_empty()) && trailers.is_none();
                let stream = self.new_stream(flow);
                self.engine.open(stream, to_h2_request(&request), end);
                if !end {
                    if let Some(body) = body {
                        self.engine.send_data(stream, body);
                    }
                    if end_stream {
                        self.engine.finish(stream, trailers);
                    }
                }
            }
            HttpEvent::RequestData { flow, data } => {
                if let Some(&stream) = self.streams.get(&flow) {
                    self.engine.send_data(stream, data);
                }
            }
            // An upgrade's request ends only when its WebSocket does.
            HttpEvent::RequestEnd { flow, .. } if matches!(self.websockets.get(&flow), Some(Upgrade::Asked { .. })) => {}
            HttpEvent::RequestEnd { flow, trailers } => {
                if let Some(&stream) = self.streams.get(&flow) {
                    self.engine.finish(stream, trailers.as_ref().map(to_h2_headers));
                }
            }
            _ => {}
        }
    }

    fn new_stream(&mut self, flow: FlowId) -> StreamKey {
        let stream = self.next_key;
        self.next_key += 1;
        self.streams.insert(flow, stream);
        self.flows.insert(stream, flow);
        stream
    }

    /// The WebSocket on `flow`'s stream is over: forget the stream, resetting it (`CANCEL`)
    /// once our END_STREAM is out if the server has not ended its side by then.
    pub(crate) fn close_websocket(&mut self, flow: FlowId) {
        if let Some(stream) = self.forget(flow) {
            self.engine.reset_when_sent(stream, Reason::CANCEL);
        }
    }

    /// Give up on `flow`'s stream, telling the server.
    pub(crate) fn reset(&mut self, flow: FlowId) {
        if let Some(stream) = self.forget(flow) {
            self.engine.reset(stream, Reason::CANCEL);
        }
    }

    /// The stream of `flow` is over on both sides; forget it.
    pub(crate) fn release(&mut self, flow: FlowId) {
        self.forget(flow);
    }

    fn forget(&mut self, flow: FlowId) -> Option<StreamKey> {
        self.websockets.remove(&flow);
        let stream = self.streams.remove(&flow)?;
        self.flows.remove(&stream);
        Some(stream)
    }

    pub(crate) fn poll(&mut self, cx: &mut Context, out: &mut Vec<CodecOutput<ServerError>>) {
        Engine::poll_until_still(self, |c| &mut c.engine, |c, event| c.handle(event, out));
        cx.send(self.conn, self.engine.take_output());
    }

    fn handle(&mut self, event: H2Event, out: &mut Vec<CodecOutput<ServerError>>) {
        let flow = match event.stream() {
            Some(stream) => match self.flows.get(&stream) {
                Some(&flow) => Some(flow),
                // The rest of a stream given up on within this poll goes nowhere.
                None => return,
            },
            None => None,
        };
        match (event, flow) {
            (H2Event::Interim { head, .. }, Some(flow)) => {
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                let response = Response { body: None, ..from_h2_response(head) };
                out.push(CodecOutput::Http(HttpEvent::InterimResponse { flow, response }));
            }
            (H2Event::Response { head, end_stream, .. }, Some(flow)) => {
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                let mut response = from_h2_response(head);
                self.answer_upgrade(flow, &mut response);
                out.push(CodecOutput::Http(HttpEvent::ResponseHeaders { flow, response, end_stream }));
            }
            (H2Event::Data { data, .. }, Some(flow)) => {
                out.push(CodecOutput::Http(HttpEvent::ResponseData { flow, data }));
            }
            (H2Event::End { trailers, .. }, Some(flow)) => {
                if let Some(Err(error)) = trailers.as_ref().map(fields::check_fields) {
                    self.malformed(flow, error, out);
                    return;
                }
                out.push(CodecOutput::Http(HttpEvent::ResponseEnd { flow, trailers }));
            }
            (H2Event::Reset { reason, remote, unprocessed, .. }, Some(flow)) => {
                self.forget(flow);
                out.push(CodecOutput::Reset { flow, reset: StreamReset { reason, remote, unprocessed } });
            }
            (H2Event::Closed { error }, _) => out.push(CodecOutput::Closed { flow: None, error }),
            // A server does not open streams (the engine refuses pushes).
            _ => {}
        }
    }

    /// The answer to `flow`'s extended CONNECT, if it is one: a `2xx` is the switch, which the
    /// stream layer knows as HTTP/1.1's `101`; anything else refuses the upgrade, and our side
    /// of the stream, left open for frames, ends.
    fn answer_upgrade(&mut self, flow: FlowId, response: &mut Response) {
        let Some(Upgrade::Asked { key }) = self.websockets.get(&flow) else { return };
        if !(200..300).contains(&response.status) {
            self.websockets.remove(&flow);
            if let Some(&stream) = self.streams.get(&flow) {
                self.engine.finish(stream, None);
            }
            return;
        }
        response.status = 101;
        response.reason = "Switching Protocols".into();
        response.headers.insert("upgrade", "websocket");
        response.headers.insert("sec-websocket-accept", handshake::accept(key));
        self.websockets.insert(flow, Upgrade::Open);
    }

    /// Whether a response head on `flow` goes on: the head is well formed (a malformed one
    /// resets the stream). A server that repeats its heads byte for byte is handed the same
    /// head each time (the engine's repeats), checked the first time only.
    fn takes_head(&mut self, flow: FlowId, head: &ResponseHead, out: &mut Vec<CodecOutput<ServerError>>) -> bool {
        if self.checked.as_ref().is_some_and(|c| c.is_clone_of(head)) {
            return true;
        }
        match fields::check_response(head) {
            Ok(()) => {
                // Kept only while the engine keeps it too: it costs nothing of its own.
                self.checked = self.engine.keeps(head).then(|| head.clone());
                true
            }
            Err(error) => {
                self.malformed(flow, error, out);
                false
            }
        }
    }

    /// The server's response on `flow` broke `error`'s rule: reset its stream and tell.
    fn malformed(&mut self, flow: FlowId, error: FieldError, out: &mut Vec<CodecOutput<ServerError>>) {
        if let Some(stream) = self.forget(flow) {
            self.engine.reset(stream, Reason::PROTOCOL_ERROR);
        }
        // The flow's stream is reset with `PROTOCOL_ERROR`; the connection goes on.
        out.push(CodecOutput::Error { flow: Some(flow), error: ServerError::Fields(error) });
    }
}
