//! The WebSocket layer: what a connection upgraded with `101` to `websocket` becomes, on both
//! sides (RFC 6455).
//!
//! Each peer's bytes go through a [`Reader`] (framing, roles, fragmentation), then message by
//! message:
//!
//! - **streaming** when no hook asks for messages: each piece of a frame goes on as a frame of
//!   its own the moment it arrives (an intermediary may change fragmentation, RFC 6455
//!   section 5.4), so a message of any size passes with memory bounded by the high-water mark.
//!   A piece from the client keeps its masked bytes: the key is rotated to where the piece
//!   starts, and nothing is copied;
//! - **held** for the `WebSocketMessage` hook, up to [`WebSocketLimits::max_message`]; over
//!   it, the connection closes with 1009 or the hook sees the message in pieces, as
//!   [`WebSocketLimits::oversize`] says. One hook is pending at a time; a peer whose message
//!   waits for one is not read meanwhile.
//!
//! Control frames pass between fragments as they come. Text is checked as UTF-8 piece by
//! piece. A peer that breaks the protocol gets the close code it earned (1002, 1007, 1009)
//! and its connection closed; the other peer gets a clean close (1001) naming the cause.
//! Nothing of a message is kept once it has been passed on.
//!
//! [`WebSocketLimits::max_message`]: crate::websocket::WebSocketLimits::max_message
//! [`WebSocketLimits::oversize`]: crate::websocket::WebSocketLimits::oversize

mod close;
mod deflate;
pub(crate) mod frame;
pub(crate) mod handshake;
mod message;
pub(crate) mod reader;
mod utf8;
mod write;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::flow::HttpFlow;
use crate::hook::{Hook, HookKind, HookReply};
use crate::ids::{ConnId, FlowId};
use crate::layer::{Handover, Layer};
use crate::websocket::{MessageKind, Peer, WebSocketMessage};
use deflate::{Deflater, Inflater};
use reader::{Item, Reader};
use utf8::Utf8Check;

pub(crate) use deflate::filter_offer;

/// What the HTTP layer hands a WebSocket it carries on an HTTP/2 stream.
pub(crate) enum WsInput {
    Data(Peer, Bytes),
    /// The peer's side ended: its stream ended or was reset, or its connection closed.
    Gone(Peer),
    /// Output for the peer drained.
    Drained(Peer),
    Reply(HookReply),
    Inject { to: Peer, kind: MessageKind, payload: Bytes },
    Wakeup,
}

/// Close codes the proxy sends (RFC 6455 section 7.4.1).
pub(crate) struct CloseCode;

impl CloseCode {
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    pub(crate) const INVALID_DATA: u16 = 1007;
    pub(crate) const TOO_BIG: u16 = 1009;

    /// Codes a peer may put in a close frame: the defined ones that are not reserved for
    /// reporting (1005, 1006, 1015), IANA's 1012-1014, and the ranges for libraries (3000-3999)
    /// and applications (4000-4999).
    pub(crate) fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A peer broke the protocol: the close code it gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    /// The close code the peer is sent (1002 protocol error, 1007 invalid data, 1009 too big).
    pub code: u16,
    /// What the peer did wrong, for the close frame's reason and the log.
    pub message: String,
}

impl WsError {
    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self { code: CloseCode::PROTOCOL_ERROR, message: message.into() }
    }

    pub(crate) fn invalid_data(message: impl Into<String>) -> Self {
        Self { code: CloseCode::INVALID_DATA, message: message.into() }
    }

    fn too_big(message: impl Into<String>) -> Self {
        Self { code: CloseCode::TOO_BIG, message: message.into() }
    }
}

/// A message one peer is sending.
struct Incoming {
    kind: MessageKind,
    utf8: Utf8Check,
    /// What is held for the hook: `None` while streaming.
    held: Option<BytesMut>,
    /// Payload bytes of the message before `held`.
    offset: u64,
    /// Compressed (RSV1): its payload goes through the sender's inflater.
    compressed: bool,
    /// Compressed payload received and not yet inflated: inflation stops while the
    /// destination is congested, so a small message cannot flood it.
    input: VecDeque<Bytes>,
    /// The whole message is in `input` (its tail appended).
    input_complete: bool,
    /// Payload bytes after inflation, against the message size limit.
    inflated: u64,
}

/// A message (or a piece of one) waiting for the hook.
struct Held {
    message: WebSocketMessage,
    /// Its sender is gone: the answer, when it comes, is dropped.
    cancelled: bool,
}

/// How one end of the WebSocket is reached.
pub(crate) enum Wire {
    /// A connection of its own (HTTP/1.1's upgrade): the layer writes to it and closes it.
    Conn(ConnId),
    /// A stream of an HTTP/2 connection (RFC 8441) that the HTTP layer carries: what is
    /// written waits here for it, as does the end of the stream.
    Stream(StreamWire),
}

#[derive(Default)]
pub(crate) struct StreamWire {
    pub(crate) out: Vec<Bytes>,
    /// The stream is to end after `out`.
    pub(crate) end: bool,
    /// Hold back what the peer sends (a message of it waits for the hook).
    pub(crate) paused: bool,
}

/// One end of the WebSocket connection: what it sends, and what we write to it.
struct End {
    wire: Wire,
    reader: Reader,
    incoming: Option<Incoming>,
    /// A data message towards this peer has begun and not ended: the next data frame is a
    /// continuation, and injected messages wait.
    writing: bool,
    injected: VecDeque<(MessageKind, Bytes)>,
    close_sent: bool,
    close_received: bool,
    /// Its connection is closed (by us), or it went away.
    gone: bool,
    messages: u64,
    bytes: u64,
    /// With `permessage-deflate`: what inflates what this peer sends, and what compresses
    /// what we write to it (`None` also when its window is too small for zlib).
    inflater: Option<Inflater>,
    deflater: Option<Deflater>,
}

impl End {
    fn new(wire: Wire, from: Peer) -> Self {
        Self {
            wire,
            reader: Reader::new(from),
            incoming: None,
            writing: false,
            injected: VecDeque::new(),
            close_sent: false,
            close_received: false,
            gone: false,
            messages: 0,
            bytes: 0,
            inflater: None,
            deflater: None,
        }
    }
}

/// How the connection ended, as far as it is known.
#[derive(Default)]
struct Ending {
    closed_by: Option<Peer>,
    code: Option<u16>,
    reason: String,
    error: Option<String>,
}

pub(crate) struct WebSocketLayer {
    flow: FlowId,
    /// The upgrade flow, kept for the `WebSocketEnd` hook when it is raised.
    upgrade: Option<Box<HttpFlow>>,
    ends: [End; 2],
    /// Messages waiting for the hook, the first one asked about.
    hooks: VecDeque<Held>,
    ending: Option<Ending>,
    /// When a close handshake in progress is given up on.
    deadline: Option<Instant>,
    done: bool,
    /// The time of the event being handled.
    now: Instant,
    /// Mask keys drawn ahead, used four bytes at a time.
    keys: [u8; 64],
    keys_used: usize,
}

impl WebSocketLayer {
    /// Take over the connections of `handover`, the upgrade `flow` having been answered `101`.
    pub(crate) fn new(cx: &mut Context, now: Instant, handover: Handover, flow: Box<HttpFlow>) -> Self {
        let wires = [Wire::Conn(ConnId::CLIENT), Wire::Conn(handover.server)];
        Self::with_wires(cx, now, flow, wires, handover.client_rest, handover.server_rest, handover.client_eof)
    }

    /// The WebSocket of the upgrade `flow`, its ends reached as `wires` say (client, server),
    /// with what each sent past the switch.
    pub(crate) fn with_wires(
        cx: &mut Context,
        now: Instant,
        flow: Box<HttpFlow>,
        wires: [Wire; 2],
        client_rest: Bytes,
        server_rest: Bytes,
        client_eof: bool,
    ) -> Self {
        let end_hook = cx.config.hooks.contains(HookKind::WebSocketEnd);
        let [client, server] = wires;
        let mut layer = Self {
            flow: flow.id,
            upgrade: end_hook.then(|| flow.clone()),
            ends: [End::new(client, Peer::Client), End::new(server, Peer::Server)],
            hooks: VecDeque::new(),
            ending: None,
            deadline: None,
            done: false,
            now,
            keys: [0; 64],
            keys_used: 64,
        };
        let extensions = flow.response.as_ref().map(|r| deflate::accepted(&r.headers)).unwrap_or(Ok(None));
        if cx.config.hooks.contains(HookKind::WebSocketStart) {
            cx.hook(flow.id, Hook::WebSocketStart(flow));
        }
        match extensions {
            Ok(None) => {}
            Ok(Some(params)) => {
                for peer in [Peer::Client, Peer::Server] {
                    let end = layer.end(peer);
                    end.reader.set_deflate(true);
                    end.inflater = Some(params.inflater(peer));
                    end.deflater = params.deflater(peer);
                }
            }
            Err(error) => {
                // Its frames could not be read: end it before the first.
                cx.log(LogLevel::Warn, format!("websocket {}: {error}: closing", layer.flow.0));
                layer.ending = Some(Ending { closed_by: Some(Peer::Server), error: Some(error), ..Ending::default() });
                layer.close_conn(cx, Peer::Client);
                layer.close_conn(cx, Peer::Server);
                return layer;
            }
        }
        layer.pause(cx, Peer::Client, false);
        layer.pause(cx, Peer::Server, false);
        layer.receive(cx, now, Peer::Client, client_rest);
        layer.receive(cx, now, Peer::Server, server_rest);
        if client_eof {
            layer.peer_gone(cx, Peer::Client);
        }
        layer
    }

    /// Both ends are closed and the end reported.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The stream wire of `peer`, if it is reached by one: what waits to go out on it.
    pub(crate) fn stream_mut(&mut self, peer: Peer) -> Option<&mut StreamWire> {
        match &mut self.end(peer).wire {
            Wire::Stream(stream) => Some(stream),
            Wire::Conn(_) => None,
        }
    }

    /// An input for this WebSocket: what its peers sent or that they went away, a drained
    /// output, a hook's answer, an injected message, time. The HTTP layer hands them over for
    /// WebSockets on its streams; `Layer::handle` makes them of events for the others.
    pub(crate) fn handle_input(&mut self, cx: &mut Context, now: Instant, input: WsInput) {
        if self.done {
            return;
        }
        self.now = now;
        match input {
            WsInput::Data(peer, data) => self.receive(cx, now, peer, data),
            WsInput::Gone(peer) => self.peer_gone(cx, peer),
            WsInput::Drained(peer) => self.pump(cx, now, peer.other()),
            WsInput::Reply(reply) => self.hook_reply(cx, now, reply),
            WsInput::Inject { to, kind, payload } => self.inject(cx, to, kind, payload),
            WsInput::Wakeup => self.expire(cx, now),
        }
    }

    fn end(&mut self, peer: Peer) -> &mut End {
        &mut self.ends[peer.index()]
    }

    fn peer_of(&self, conn: ConnId) -> Option<Peer> {
        [Peer::Client, Peer::Server].into_iter().find(|p| matches!(self.ends[p.index()].wire, Wire::Conn(c) if c == conn))
    }

    fn receive(&mut self, cx: &mut Context, now: Instant, from: Peer, data: Bytes) {
        let end = self.end(from);
        if end.gone || end.close_received {
            // Nothing may follow a close frame; a connection given up on is not read.
            return;
        }
        end.reader.receive(data);
        self.pump(cx, now, from);
    }

    /// Whether `peer` has a message waiting for the hook (and so is not read).
    pub(crate) fn waits_for_hook(&self, peer: Peer) -> bool {
        self.hooks.iter().any(|h| h.message.from == peer && !h.cancelled)
    }

    /// Read what `from` sent, as far as it may be read now.
    fn pump(&mut self, cx: &mut Context, now: Instant, from: Peer) {
        loop {
            if self.waits_for_hook(from) || self.end(from).gone || self.end(from).close_received {
                return;
            }
            if self.end(from).incoming.as_ref().is_some_and(|i| i.compressed && (!i.input.is_empty() || i.input_complete)) {
                match self.inflate(cx, now, from) {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(error) => return self.fail(cx, now, from, error),
                }
            }
            let item = match self.end(from).reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => return,
                Err(error) => return self.fail(cx, now, from, error),
            };
            let result = match item {
                Item::Data { start, fin, raw, mask } => self.data(cx, now, from, start, fin, raw, mask),
                Item::Control { opcode, payload } => self.control(cx, now, from, opcode, payload),
            };
            if let Err(error) = result {
                return self.fail(cx, now, from, error);
            }
        }
    }

    /// Stop or resume reading what `peer` sends.
    fn pause(&mut self, cx: &mut Context, peer: Peer, paused: bool) {
        match &mut self.end(peer).wire {
            Wire::Conn(conn) => cx.set_layer_pause(*conn, paused),
            Wire::Stream(stream) => stream.paused = paused,
        }
    }
}

impl Layer for WebSocketLayer {
    /// The events of a WebSocket with connections of its own, as inputs.
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        let input = match event {
            Event::DataReceived { conn, data } => self.peer_of(conn).map(|peer| WsInput::Data(peer, data)),
            Event::ConnectionClosed { conn } => self.peer_of(conn).map(WsInput::Gone),
            // Room again where a compressed message was going: inflate more of it.
            Event::WriteDrained { conn } => self.peer_of(conn).map(WsInput::Drained),
            Event::HookReply { flow, reply } if flow == self.flow => Some(WsInput::Reply(reply)),
            Event::Inject { flow, to, kind, payload } if flow == self.flow => Some(WsInput::Inject { to, kind, payload }),
            Event::Wakeup => Some(WsInput::Wakeup),
            _ => None,
        };
        if let Some(input) = input {
            self.handle_input(cx, now, input);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}
