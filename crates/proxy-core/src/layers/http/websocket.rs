//! WebSockets the HTTP layer carries itself: those with an end on an HTTP/2 stream (RFC 8441).
//! An HTTP/2 client's end is a stream of the client connection; an HTTP/2 server's, a stream
//! of a pooled connection that goes on carrying other requests. The other end is the stream
//! of the other HTTP/2 side, or the HTTP/1.1 connection itself: the client connection, or the
//! server connection the upgrade went on, taken out of the pool. (When both sides are
//! HTTP/1.1 the connections are handed over to a `WebSocketLayer` of their own instead: see
//! `switch` below.)

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::event::HttpEvent;
use super::pool::ServerConn;
use super::pool::ServerCodec;
use super::{ClientCodec, HttpLayer};
use crate::context::Context;
use crate::ids::{ConnId, FlowId};
use crate::layer::{Handover, Layer};
use crate::layers::websocket::{StreamWire, WebSocketLayer, Wire, WsInput};
use crate::websocket::Peer;

/// The WebSockets this layer carries, by flow.
#[derive(Default)]
pub(crate) struct WebSockets {
    sessions: BTreeMap<FlowId, Carried>,
}

struct Carried {
    session: WebSocketLayer,
    /// The client's end is the client connection itself (an HTTP/1.1 client whose server
    /// speaks HTTP/2), not one of its streams.
    client_conn: bool,
    /// The server connection.
    server: ConnId,
    /// The server's end is a stream of `server` (HTTP/2), not the connection itself.
    server_stream: bool,
}

impl Carried {
    /// The peer whose end is the connection `conn` itself, if one is.
    fn peer_on(&self, conn: ConnId) -> Option<Peer> {
        if conn == ConnId::CLIENT && self.client_conn {
            Some(Peer::Client)
        } else if conn == self.server && !self.server_stream {
            Some(Peer::Server)
        } else {
            None
        }
    }
}

impl WebSockets {
    /// The WebSocket with an end on the connection `conn` itself, and which peer's end it is.
    pub(crate) fn on_conn(&self, conn: ConnId) -> Option<(FlowId, Peer)> {
        self.sessions.iter().find_map(|(flow, c)| Some((*flow, c.peer_on(conn)?)))
    }

    /// Whether `flow` is a WebSocket whose server end is a stream of `conn`.
    pub(crate) fn on_server_stream(&self, conn: ConnId, flow: FlowId) -> bool {
        self.sessions.get(&flow).is_some_and(|c| c.server_stream && c.server == conn)
    }

    /// The WebSockets whose server end is a stream of `conn`.
    pub(crate) fn streams_on(&self, conn: ConnId) -> impl Iterator<Item = FlowId> + '_ {
        self.sessions.iter().filter(move |(_, c)| c.server_stream && c.server == conn).map(|(flow, _)| *flow)
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

    /// The earliest close-handshake deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.values().filter_map(|c| Layer::poll_timeout(&c.session)).min()
    }
}

impl HttpLayer {
    /// The stream `flow` switched protocols (`Out::Tunnel`). Between HTTP/1.1 connections the
    /// connection becomes a tunnel or a WebSocket of its own (a handover). With HTTP/2 on
    /// either side this layer carries what follows: an HTTP/2 client's `CONNECT` stream
    /// becomes a tunnel (see `tunnels`), and otherwise only a WebSocket can follow.
    pub(super) fn switch(&mut self, cx: &mut Context, now: Instant, flow: FlowId) {
        // A `CONNECT`'s connection is the tunnel's whole, whatever it spoke when parked.
        let server = self.pool.carrying(flow).map(|s| (s.conn, s.is_h2() && !s.dedicated));
        let h2_client = matches!(self.client, ClientCodec::H2(_));
        let Some((conn, server_stream)) = server else { return };
        if !h2_client && !server_stream {
            return self.hand_over(cx, flow, conn);
        }
        if let Some(next) = self
            .tunnel_layer
            .filter(|_| self.streams.get(&flow).is_some_and(|s| s.is_connect()))
        {
            // An HTTP/2 client's CONNECT: the stream carries the tunnel.
            return self.carry_tunnel(cx, now, flow, conn, next);
        }
        let stream = self.streams.remove(&flow).filter(|s| s.is_websocket());
        let Some(stream) = stream else {
            // HTTP/2 switches to nothing but WebSocket.
            match &mut self.client {
                ClientCodec::H2(codec) => codec.reset(flow, crate::layers::http::h2::engine::Reason::PROTOCOL_ERROR),
                ClientCodec::H1(_) => self.close_all(cx, now, false),
            }
            return;
        };
        let server_rest = if server_stream {
            // The stream leaves the connection's requests, and the connection stays pooled.
            if let Some(server) = self.pool.get_mut(conn) {
                server.flows.retain(|f| *f != flow);
                if server.flows.is_empty() {
                    server.deadline = None;
                }
            }
            Bytes::new()
        } else {
            let Some(mut server) = self.pool.remove(conn) else { return };
            server.take_rest()
        };
        let (client_rest, client_eof) = match self.client.h1_mut() {
            Some(codec) => (codec.take_rest(), codec.is_eof()),
            None => {
                let early = self.early.remove(&flow).unwrap_or_default();
                (early.data.freeze(), early.eof)
            }
        };
        if !h2_client {
            // Nothing else will come from this client: the other server connections go.
            for other in self.pool.conns().into_iter().filter(|c| *c != conn) {
                self.drop_server(cx, other);
            }
        }
        let wire = |stream: bool, conn: ConnId| if stream { Wire::Stream(StreamWire::default()) } else { Wire::Conn(conn) };
        let wires = [wire(h2_client, ConnId::CLIENT), wire(server_stream, conn)];
        let session = WebSocketLayer::with_wires(cx, now, Box::new(stream.into_flow()), wires, client_rest, server_rest, client_eof);
        let carried = Carried { session, client_conn: !h2_client, server: conn, server_stream };
        self.websockets.sessions.insert(flow, carried);
        self.flush_websocket(cx, now, flow);
    }

    /// Between HTTP/1.1 connections: the client connection and the server connection `conn`
    /// leave this layer for a tunnel or a WebSocket layer of their own.
    fn hand_over(&mut self, cx: &mut Context, flow: FlowId, conn: ConnId) {
        let Some(client) = self.client.h1_mut() else { return };
        let client_rest = client.take_rest();
        let Some(mut server) = self.pool.remove(conn) else { return };
        let server_rest = server.take_rest();
        let stream = self.streams.remove(&flow);
        let websocket = stream
            .filter(|s| s.is_websocket())
            .map(|s| Box::new(s.into_flow()));
        let (target, connect) = (server.addr.clone(), server.dedicated);
        // A `CONNECT` that took a parked TLS connection: the tunnel gets it as it was parked.
        let pooled = (connect && server.tls)
            .then(|| ServerConn { dedicated: false, flows: Vec::new(), deadline: None, ..server }.hand_on());
        self.handover = Some(Handover {
            server: conn,
            target,
            connect,
            client_rest,
            server_rest,
            client_eof: self.client.is_eof(),
            websocket,
            pooled,
        });
        for conn in self.pool.conns() {
            self.drop_server(cx, conn);
        }
    }

    /// Give `input` to the WebSocket of `flow`.
    pub(super) fn websocket_input(&mut self, cx: &mut Context, now: Instant, flow: FlowId, input: WsInput) {
        let Some(carried) = self.websockets.sessions.get_mut(&flow) else { return };
        carried.session.handle_input(cx, now, input);
        self.flush_websocket(cx, now, flow);
    }

    /// Every WebSocket on this connection gets `input` (time passing, the client leaving).
    pub(super) fn websockets_input(&mut self, cx: &mut Context, now: Instant, input: impl Fn() -> WsInput) {
        for flow in self.websockets.flows() {
            self.websocket_input(cx, now, flow, input());
        }
    }

    /// WebSockets whose server end is a stream of a connection that has left the pool (it
    /// failed, or timed out for another request) have lost their server.
    pub(super) fn orphaned_websockets(&mut self, cx: &mut Context, now: Instant) {
        let orphans: Vec<FlowId> = self
            .websockets
            .sessions
            .iter()
            .filter(|(_, c)| c.server_stream && self.pool.get(c.server).is_none())
            .map(|(flow, _)| *flow)
            .collect();
        for flow in orphans {
            self.websocket_input(cx, now, flow, WsInput::Gone(Peer::Server));
        }
    }

    /// Whether the WebSocket of `flow` may read what `peer` sends: nothing of `peer`'s waits
    /// for the hook, and the other end has room.
    pub(super) fn websocket_readable(&mut self, cx: &Context, flow: FlowId, peer: Peer) -> bool {
        let Some(carried) = self.websockets.sessions.get_mut(&flow) else { return true };
        let paused = carried.session.stream_mut(peer).is_some_and(|s| s.paused);
        if paused || carried.session.waits_for_hook(peer) {
            return false;
        }
        let (server, server_stream, client_conn) = (carried.server, carried.server_stream, carried.client_conn);
        match peer.other() {
            Peer::Client if client_conn => !cx.is_congested(ConnId::CLIENT),
            Peer::Client => self.client_has_room(cx, flow),
            Peer::Server => {
                let backlog = match self.pool.get(server).map(|s| &s.codec) {
                    Some(ServerCodec::H2(codec)) if server_stream => codec.backlog(flow),
                    _ => 0,
                };
                !cx.is_congested(server) && backlog < cx.config.high_water
            }
        }
    }

    /// The connections that are a WebSocket's end themselves are read while it may read them.
    pub(super) fn pause_websocket_conns(&mut self, cx: &mut Context) {
        let conns: Vec<(ConnId, FlowId, Peer)> = self
            .websockets
            .sessions
            .iter()
            .flat_map(|(flow, c)| {
                let client = c.client_conn.then_some((ConnId::CLIENT, *flow, Peer::Client));
                let server = (!c.server_stream).then_some((c.server, *flow, Peer::Server));
                client.into_iter().chain(server)
            })
            .collect();
        for (conn, flow, peer) in conns {
            let readable = self.websocket_readable(cx, flow, peer);
            cx.set_layer_pause(conn, !readable);
        }
    }

    /// Send what the WebSocket of `flow` wrote to its stream ends; forget it once over.
    fn flush_websocket(&mut self, cx: &mut Context, now: Instant, flow: FlowId) {
        let Some(carried) = self.websockets.sessions.get_mut(&flow) else { return };
        if let Some(stream) = carried.session.stream_mut(Peer::Client) {
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
        let server = carried.server;
        if let Some(stream) = carried.session.stream_mut(Peer::Server) {
            let out = std::mem::take(&mut stream.out);
            let end = std::mem::take(&mut stream.end);
            if let Some(ServerCodec::H2(codec)) = self.pool.get_mut(server).map(|s| &mut s.codec) {
                for data in out {
                    codec.send(HttpEvent::RequestData { flow, data });
                }
                if end {
                    codec.send(HttpEvent::RequestEnd { flow, trailers: None });
                }
            }
        }
        if !carried.session.is_done() {
            return;
        }
        let Some(carried) = self.websockets.sessions.remove(&flow) else { return };
        if carried.server_stream {
            if let Some(ServerCodec::H2(codec)) = self.pool.get_mut(carried.server).map(|s| &mut s.codec) {
                codec.close_websocket(flow);
            }
        }
        if carried.client_conn {
            // The WebSocket closed the client connection: this layer is done with it, once
            // what ends the server's stream is out.
            if let Some(ServerCodec::H2(codec)) = self.pool.get_mut(carried.server).map(|s| &mut s.codec) {
                codec.poll(cx, &mut Vec::new());
            }
            self.close_all(cx, now, false);
        }
    }
}
