//! WebSockets the HTTP layer carries itself: those of an HTTP/2 client (RFC 8441), whose
//! client side is a stream of the client connection rather than a connection of its own. The
//! server side is the HTTP/1.1 connection the upgrade was sent on, taken out of the pool.
//! (When both sides are HTTP/1.1 the connections are handed over to a `WebSocketLayer` of
//! their own instead: see `Out::Tunnel` in `mod.rs`.)

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::event::HttpEvent;
use super::{ClientCodec, HttpLayer};
use crate::context::Context;
use crate::flow::HttpFlow;
use crate::ids::{ConnId, FlowId};
use crate::layer::Layer;
use crate::layers::websocket::{StreamWire, WebSocketLayer, Wire, WsInput};
use crate::websocket::Peer;

/// The WebSockets on this client connection's streams, each with its server connection.
#[derive(Default)]
pub(crate) struct WebSockets {
    sessions: BTreeMap<FlowId, Carried>,
    /// What HTTP/2 clients sent on their upgrade's stream before the answer.
    early: BTreeMap<FlowId, BytesMut>,
}

struct Carried {
    session: WebSocketLayer,
    server: ConnId,
}

impl WebSockets {
    pub(crate) fn keep_early(&mut self, flow: FlowId, data: Bytes) {
        self.early.entry(flow).or_default().extend_from_slice(&data);
    }

    /// The upgrade of `flow` ended without a switch: what it sent early goes nowhere.
    pub(crate) fn forget_early(&mut self, flow: FlowId) {
        self.early.remove(&flow);
    }

    /// The WebSocket whose server side is `conn`.
    pub(crate) fn on_server(&self, conn: ConnId) -> Option<FlowId> {
        self.sessions.iter().find(|(_, c)| c.server == conn).map(|(flow, _)| *flow)
    }

    pub(crate) fn contains(&self, flow: FlowId) -> bool {
        self.sessions.contains_key(&flow)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub(crate) fn flows(&self) -> Vec<FlowId> {
        self.sessions.keys().copied().collect()
    }

    /// Whether the client stream of `flow` may be read: nothing of it waits for the hook, and
    /// its server connection has room.
    pub(crate) fn client_readable(&mut self, cx: &Context, flow: FlowId) -> bool {
        let Some(carried) = self.sessions.get_mut(&flow) else { return true };
        let paused = carried.session.stream_mut(Peer::Client).is_some_and(|s| s.paused);
        !paused && !cx.is_congested(carried.server)
    }

    /// The earliest close-handshake deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.values().filter_map(|c| Layer::poll_timeout(&c.session)).min()
    }

    /// Each server connection, with its flow and whether a message of the server's waits for
    /// the hook (the server is not read meanwhile).
    pub(crate) fn servers(&self) -> Vec<(ConnId, FlowId, bool)> {
        self.sessions.iter().map(|(flow, c)| (c.server, *flow, c.session.waits_for_hook(Peer::Server))).collect()
    }
}

impl HttpLayer {
    /// `flow`, an HTTP/2 client's extended CONNECT, was answered `101` by its server on `conn`:
    /// from now on the stream and the connection carry WebSocket frames.
    pub(super) fn start_websocket(&mut self, cx: &mut Context, now: Instant, flow: HttpFlow, conn: ConnId, server_rest: Bytes) {
        let id = flow.id;
        let wires = [Wire::Stream(StreamWire::default()), Wire::Conn(conn)];
        let early = self.websockets.early.remove(&id).map(BytesMut::freeze).unwrap_or_default();
        let session = WebSocketLayer::with_wires(cx, now, Box::new(flow), wires, early, server_rest, false);
        self.websockets.sessions.insert(id, Carried { session, server: conn });
        self.flush_websocket(id);
    }

    /// Give `input` to the WebSocket of `flow`.
    pub(super) fn websocket_input(&mut self, cx: &mut Context, now: Instant, flow: FlowId, input: WsInput) {
        let Some(carried) = self.websockets.sessions.get_mut(&flow) else { return };
        carried.session.handle_input(cx, now, input);
        self.flush_websocket(flow);
    }

    /// Every WebSocket on this connection gets `input` (time passing, the client leaving).
    pub(super) fn websockets_input(&mut self, cx: &mut Context, now: Instant, input: impl Fn() -> WsInput) {
        for flow in self.websockets.flows() {
            self.websocket_input(cx, now, flow, input());
        }
    }

    /// Send what the WebSocket of `flow` wrote to its client stream; forget it once over.
    fn flush_websocket(&mut self, flow: FlowId) {
        let Some(Carried { session, .. }) = self.websockets.sessions.get_mut(&flow) else { return };
        if let Some(stream) = session.stream_mut(Peer::Client) {
            let out = std::mem::take(&mut stream.out);
            let end = std::mem::take(&mut stream.end);
            if let ClientCodec::H2(codec) = &mut self.client {
                for data in out {
                    codec.send(HttpEvent::ResponseData { flow, data });
                }
                if end {
                    codec.send(HttpEvent::ResponseEnd { flow, trailers: None });
                }
            }
        }
        if session.is_done() {
            self.websockets.sessions.remove(&flow);
        }
    }
}
