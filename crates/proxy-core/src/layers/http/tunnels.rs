//! Tunnels an HTTP/2 client opens as streams (`CONNECT`, RFC 9113 section 8.5): Chrome and
//! curl do so over an HTTPS proxy that speaks HTTP/2.
//!
//! What an HTTP/1.1 client's connection becomes after its `CONNECT` (interception, HTTP inside
//! it, WebSocket, a raw tunnel) a stream becomes here, with the same layers: the mode's
//! [`NextLayer`] builds them over a context of their own ([`Context::nested`]) whose client
//! connection is the stream. Their writes to it become the stream's DATA, their close its
//! END_STREAM; the stream's DATA and end come to them as their client's bytes and EOF. Their
//! other connections (the tunnel's server, and any the HTTP inside opens) are the driver's
//! like any other: commands for them pass through unchanged, and events for them are routed
//! to the tunnel whose table holds them.
//!
//! Flow control is the backpressure, both ways. While the carried layers do not read their
//! client (a hook pending, their server congested) the stream's window stays shut. What they
//! write waits in the stream for the client's window, and they hear that their client
//! connection drained only once little of it waits and the client connection itself has room.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::event::HttpEvent;
use super::{ClientCodec, HttpLayer};
use crate::command::Command;
use crate::context::Context;
use crate::event::Event;
use crate::ids::{ConnId, FlowId};
use crate::layer::{Child, Handover, Layer, NextLayer};
use crate::layers::tls::transport::TlsTransport;

/// The tunnels on the client connection's streams, by the flow of their `CONNECT`.
#[derive(Default)]
pub(crate) struct Tunnels {
    carried: BTreeMap<FlowId, Carried>,
    /// Blocking hooks the carried layers raised, by their flow: the tunnel the answer goes to.
    hooks: BTreeMap<FlowId, FlowId>,
}

/// What an HTTP/2 client sent on a stream before the switch it asked for (a WebSocket's
/// frames, a tunnel's first bytes) was answered: kept for the switch. The stream's window
/// stays shut meanwhile, so it is at most one window's worth.
#[derive(Default)]
pub(crate) struct Early {
    pub(crate) data: BytesMut,
    /// The client ended the stream.
    pub(crate) eof: bool,
}

/// One tunnel: the layers after its `CONNECT`, over a stream.
struct Carried {
    cx: Context,
    /// TLS under the carried connections, then the layers the mode chose.
    root: TlsTransport,
    /// What the carried layers wrote to their client, for the stream.
    out: Vec<Bytes>,
    /// They closed their client connection's sending side: the stream ends.
    ended: bool,
    /// The stream's end went to the client codec.
    end_sent: bool,
    /// They closed it whole: what the client sends on is of no use.
    closed: bool,
    /// They stopped reading their client: the stream's window stays shut.
    paused: bool,
    /// The stream is gone (the client reset it, or its connection ended): nothing more
    /// reaches the client.
    gone: bool,
}

impl Carried {
    /// Give the carried layers `event`; returns the flows of the blocking hooks they raised.
    fn handle(&mut self, parent: &mut Context, now: Instant, event: Event) -> Vec<FlowId> {
        if let Event::WriteDrained { conn } = event {
            self.cx.handle_drained(conn);
        }
        parent.lend_ids(&mut self.cx);
        self.root.handle(&mut self.cx, now, event);
        self.collect(parent)
    }

    /// Take what the carried layers asked for: what concerns their client is the stream's,
    /// the rest goes to the driver as it is. Returns the flows of the blocking hooks among it.
    fn collect(&mut self, parent: &mut Context) -> Vec<FlowId> {
        parent.take_ids(&self.cx);
        let mut hooks = Vec::new();
        while let Some(command) = self.cx.poll_command() {
            match command {
                Command::Hook { flow, hook } if hook.is_blocking() => {
                    hooks.push(flow);
                    parent.push(Command::Hook { flow, hook });
                }
                Command::SendData { conn: ConnId::CLIENT, data } => self.out.push(data),
                Command::CloseConnection { conn: ConnId::CLIENT, half } => {
                    self.ended = true;
                    self.closed |= !half;
                }
                Command::PauseReading { conn: ConnId::CLIENT } => self.paused = true,
                Command::ResumeReading { conn: ConnId::CLIENT } => self.paused = false,
                command => parent.push(command),
            }
        }
        hooks
    }

    /// Whether the carried layers are done with every connection.
    fn is_done(&self) -> bool {
        self.cx.all_closed() && !self.cx.has_commands()
    }
}

impl Tunnels {
    pub(crate) fn is_empty(&self) -> bool {
        self.carried.is_empty()
    }

    pub(crate) fn contains(&self, flow: FlowId) -> bool {
        self.carried.contains_key(&flow)
    }

    /// The tunnel whose layers own the connection `conn`.
    fn owner(&self, conn: ConnId) -> Option<FlowId> {
        self.carried.iter().find(|(_, t)| t.cx.has_conn(conn)).map(|(flow, _)| *flow)
    }

    /// Whether the stream of the tunnel `flow` may be read: its layers read their client.
    pub(crate) fn reading(&self, flow: FlowId) -> bool {
        self.carried.get(&flow).is_some_and(|t| !t.paused)
    }

    /// The earliest deadline of any carried layer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.carried.values().filter_map(|t| t.root.poll_timeout()).min()
    }
}

impl HttpLayer {
    /// The `CONNECT` of `flow` on an HTTP/2 client's stream was answered `2xx`: its server
    /// connection `conn` leaves the pool, and the layers the mode puts after a `CONNECT` take
    /// the stream and it over.
    pub(super) fn carry_tunnel(&mut self, cx: &mut Context, now: Instant, flow: FlowId, conn: ConnId, next: NextLayer) {
        self.streams.remove(&flow);
        let Some(mut server) = self.pool.remove(conn) else { return };
        let early = self.early.remove(&flow).unwrap_or_default();
        let handover = Handover {
            server: conn,
            target: server.addr.clone(),
            connect: true,
            client_rest: early.data.freeze(),
            server_rest: server.take_rest(),
            client_eof: early.eof,
            websocket: None,
            pooled: None,
        };
        let mut inner = cx.nested();
        if let Some(moved) = cx.take_conn(conn) {
            inner.adopt(moved);
        }
        let layer = next(&mut inner, now, handover);
        let root = TlsTransport::new(Box::new(Child::new(layer, next)));
        let mut carried =
            Carried { cx: inner, root, out: Vec::new(), ended: false, end_sent: false, closed: false, paused: false, gone: false };
        let hooks = carried.collect(cx);
        self.tunnels.hooks.extend(hooks.into_iter().map(|hook| (hook, flow)));
        self.tunnels.carried.insert(flow, carried);
        self.flush_tunnel(flow);
    }

    /// What concerns a carried tunnel goes to it: events of its connections, answers to its
    /// hooks, time passing, injected messages (which only the layers that own the flow take).
    /// The rest is returned.
    pub(super) fn route_tunnel(&mut self, cx: &mut Context, now: Instant, event: Event) -> Option<Event> {
        let conn = match &event {
            Event::DataReceived { conn, .. }
            | Event::ConnectionClosed { conn }
            | Event::Opened { conn }
            | Event::Adopted { conn, .. }
            | Event::Joined { conn }
            | Event::OpenFailed { conn, .. }
            | Event::WriteDrained { conn }
            | Event::Forwarded { from: conn, .. } => Some(*conn),
            _ => None,
        };
        if let Some(conn) = conn.filter(|c| *c != ConnId::CLIENT) {
            return match self.tunnels.owner(conn) {
                Some(flow) => {
                    self.tunnel_input(cx, now, flow, event);
                    None
                }
                None => Some(event),
            };
        }
        match event {
            Event::Carried { messages } if !self.tunnels.carried.is_empty() => {
                // Each tunnel takes the messages for its own connections' streams, in one event.
                let mut rest = Vec::new();
                let mut theirs: Vec<(FlowId, Vec<(ConnId, super::carried::message::Carried)>)> = Vec::new();
                for (conn, message) in messages {
                    match self.tunnels.owner(conn) {
                        Some(flow) => match theirs.iter_mut().find(|(f, _)| *f == flow) {
                            Some((_, list)) => list.push((conn, message)),
                            None => theirs.push((flow, vec![(conn, message)])),
                        },
                        None => rest.push((conn, message)),
                    }
                }
                for (flow, messages) in theirs {
                    self.tunnel_input(cx, now, flow, Event::Carried { messages });
                }
                (!rest.is_empty()).then_some(Event::Carried { messages: rest })
            }
            Event::Wakeup => {
                for flow in self.tunnel_flows() {
                    self.tunnel_input(cx, now, flow, Event::Wakeup);
                }
                Some(Event::Wakeup)
            }
            Event::HookReply { flow, reply } => match self.tunnels.hooks.remove(&flow) {
                Some(tunnel) => {
                    self.tunnel_input(cx, now, tunnel, Event::HookReply { flow, reply });
                    None
                }
                None => Some(Event::HookReply { flow, reply }),
            },
            Event::Inject { flow, to, kind, payload } if !self.websockets.contains(flow) => {
                for tunnel in self.tunnel_flows() {
                    let payload = payload.clone();
                    self.tunnel_input(cx, now, tunnel, Event::Inject { flow, to, kind, payload });
                }
                None
            }
            event => Some(event),
        }
    }

    fn tunnel_flows(&self) -> Vec<FlowId> {
        self.tunnels.carried.keys().copied().collect()
    }

    /// Give `event` to the tunnel of `flow`, and send on what it wrote to its client.
    pub(super) fn tunnel_input(&mut self, cx: &mut Context, now: Instant, flow: FlowId, event: Event) {
        let Some(carried) = self.tunnels.carried.get_mut(&flow) else { return };
        let hooks = carried.handle(cx, now, event);
        self.tunnels.hooks.extend(hooks.into_iter().map(|hook| (hook, flow)));
        self.flush_tunnel(flow);
    }

    /// The client's side of the tunnel `flow` ended: its stream ended (`reset`: was reset, or
    /// lost with the connection, and takes nothing more either).
    pub(super) fn tunnel_client_gone(&mut self, cx: &mut Context, now: Instant, flow: FlowId, reset: bool) {
        if let Some(carried) = self.tunnels.carried.get_mut(&flow) {
            carried.gone |= reset;
        }
        self.tunnel_input(cx, now, flow, Event::ConnectionClosed { conn: ConnId::CLIENT });
    }

    /// Tunnels whose layers have let most of what they wrote reach the client hear that their
    /// client connection drained, as a socket's writer would.
    pub(super) fn drain_tunnels(&mut self, cx: &mut Context, now: Instant) {
        let ClientCodec::H2(codec) = &self.client else { return };
        if cx.is_congested(ConnId::CLIENT) {
            return;
        }
        let drained: Vec<FlowId> = self
            .tunnels
            .carried
            .iter()
            .filter(|(flow, t)| t.cx.is_congested(ConnId::CLIENT) && codec.backlog(**flow) < cx.config.high_water)
            .map(|(flow, _)| *flow)
            .collect();
        for flow in drained {
            self.tunnel_input(cx, now, flow, Event::WriteDrained { conn: ConnId::CLIENT });
        }
    }

    /// Send what the tunnel of `flow` wrote to its stream; forget the tunnel once its layers
    /// are done.
    fn flush_tunnel(&mut self, flow: FlowId) {
        let Some(carried) = self.tunnels.carried.get_mut(&flow) else { return };
        let out = std::mem::take(&mut carried.out);
        if let (ClientCodec::H2(codec), false) = (&mut self.client, carried.gone) {
            for data in out {
                codec.send(HttpEvent::ResponseData { flow, data });
            }
            if carried.ended && !carried.end_sent {
                carried.end_sent = true;
                codec.send(HttpEvent::ResponseEnd { flow, trailers: None });
            }
            if carried.closed {
                // Nothing more of the client's is read: once our end is out, it may stop.
                codec.stop_request(flow);
                carried.gone = true;
            }
        }
        if carried.is_done() {
            self.tunnels.carried.remove(&flow);
            self.tunnels.hooks.retain(|_, tunnel| *tunnel != flow);
        }
    }

    /// The client connection is gone: every tunnel loses its client, and its connections
    /// are closed.
    pub(super) fn close_tunnels(&mut self, cx: &mut Context, now: Instant) {
        for flow in self.tunnel_flows() {
            self.tunnel_client_gone(cx, now, flow, true);
            if let Some(mut carried) = self.tunnels.carried.remove(&flow) {
                carried.cx.close_every();
                carried.collect(cx);
            }
        }
        self.tunnels.hooks.clear();
    }
}
