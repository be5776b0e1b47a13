//! An upstream connection's HTTP/2 codec: we are the server's client.

use std::collections::BTreeMap;

use bytes::Bytes;
use h2::Reason;

use super::conversion::{from_h2_headers, from_h2_response, to_h2_headers, to_h2_request};
use super::engine::{Engine, H2Event};
use super::fields::{self, FieldError};
use super::settings;
use crate::config::Config;
use crate::context::Context;
use crate::flow::Response;
use crate::ids::{ConnId, FlowId};
use crate::layers::http::error::ServerError;
use crate::layers::http::event::{CodecOutput, HttpEvent, StreamReset};

/// The HTTP/2 client side of an upstream connection.
pub(crate) struct H2Client {
    conn: ConnId,
    engine: Engine,
    /// Flows with a stream open, and whether their response head has arrived.
    flows: BTreeMap<FlowId, bool>,
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

    pub(crate) fn poll(&mut self, cx: &mut Context, out: &mut Vec<CodecOutput<ServerError>>) {
        Engine::poll_until_still(self, |c| &mut c.engine, |c, event| c.handle(event, out));
        cx.send(self.conn, self.engine.take_output());
    }

    fn handle(&mut self, event: H2Event, out: &mut Vec<CodecOutput<ServerError>>) {
        match event {
            H2Event::Interim { stream, head } => {
                let flow = FlowId(stream);
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                let response = Response { body: None, ..from_h2_response(head) };
                out.push(CodecOutput::Http(HttpEvent::InterimResponse { flow, response }));
            }
            H2Event::Response { stream, head, end_stream } => {
                let flow = FlowId(stream);
                if !self.takes_head(flow, &head, out) {
                    return;
                }
                self.flows.insert(flow, true);
                let response = from_h2_response(head);
                out.push(CodecOutput::Http(HttpEvent::ResponseHeaders { flow, response, end_stream }));
            }
            // The rest of a stream given up on within this poll goes nowhere.
            H2Event::Data { stream, .. } | H2Event::End { stream, .. } if !self.flows.contains_key(&FlowId(stream)) => {}
            H2Event::Data { stream, data } => {
                out.push(CodecOutput::Http(HttpEvent::ResponseData { flow: FlowId(stream), data }));
            }
            H2Event::End { stream, trailers } => {
                let flow = FlowId(stream);
                if let Some(Err(error)) = trailers.as_ref().map(fields::check_fields) {
                    self.malformed(flow, error, out);
                    return;
                }
                let trailers = trailers.map(|t| from_h2_headers(&t));
                out.push(CodecOutput::Http(HttpEvent::ResponseEnd { flow, trailers }));
            }
            H2Event::Reset { stream, reason, remote, unprocessed } => {
                let flow = FlowId(stream);
                if self.flows.remove(&flow).is_some() {
                    out.push(CodecOutput::Reset { flow, reset: StreamReset { reason, remote, unprocessed } });
                }
            }
            H2Event::Closed { error } => out.push(CodecOutput::Closed { flow: None, error }),
            H2Event::Request { .. } => {}
        }
    }

    /// Whether a response head on `flow` goes on: the flow is ours and the head well formed
    /// (a malformed one resets the stream).
    fn takes_head(&mut self, flow: FlowId, head: &http::response::Parts, out: &mut Vec<CodecOutput<ServerError>>) -> bool {
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

    /// The server's response on `flow` broke `error`'s rule: reset its stream and tell.
    fn malformed(&mut self, flow: FlowId, error: FieldError, out: &mut Vec<CodecOutput<ServerError>>) {
        self.flows.remove(&flow);
        self.engine.reset(flow.0, Reason::PROTOCOL_ERROR);
        // The flow's stream is reset with `PROTOCOL_ERROR`; the connection goes on.
        out.push(CodecOutput::Error { flow: Some(flow), error: ServerError::Fields(error) });
    }
}
