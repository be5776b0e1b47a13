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

mod deflate;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod reader;
mod utf8;

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
use crate::websocket::{MessageKind, Oversize, Peer, WebSocketEnd, WebSocketMessage};
use frame::{apply_mask, rotate, FrameHeader, OpCode, MAX_HEADER};
use deflate::{Deflater, Inflater};
use reader::{parse_close, Item, Reader};
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

    /// The deadline passed: a close frame went unanswered.
    fn expire(&mut self, cx: &mut Context, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            cx.log(LogLevel::Info, format!("websocket {}: no answer to the close frame: closing", self.flow.0));
            self.close_conn(cx, Peer::Client);
            self.close_conn(cx, Peer::Server);
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

    /// A piece of a data message from `from`, as the reader found it.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        cx: &mut Context,
        now: Instant,
        from: Peer,
        start: Option<(MessageKind, bool)>,
        fin: bool,
        raw: Bytes,
        mask: Option<([u8; 4], u64)>,
    ) -> Result<(), WsError> {
        if let Some((kind, compressed)) = start {
            let hold = cx.config.hooks.contains(HookKind::WebSocketMessage);
            self.end(from).incoming = Some(Incoming {
                kind,
                utf8: Utf8Check::default(),
                held: hold.then(BytesMut::new),
                offset: 0,
                compressed,
                input: VecDeque::new(),
                input_complete: false,
                inflated: 0,
            });
        }
        let end = self.end(from);
        end.bytes += raw.len() as u64;
        let incoming = end.incoming.as_mut().expect("a data piece belongs to a message");
        if !incoming.compressed {
            return self.piece(cx, now, from, fin, raw, mask);
        }
        // Inflated in `pump`, as fast as the destination takes it. The last piece carries the
        // tail its sender left off, so that the message ends with what it inflates to.
        let plain = Item::unmasked(&raw, mask);
        if fin {
            let mut last = BytesMut::with_capacity(plain.len() + Inflater::tail().len());
            last.extend_from_slice(&plain);
            last.extend_from_slice(Inflater::tail());
            incoming.input.push_back(last.freeze());
            incoming.input_complete = true;
        } else if !plain.is_empty() {
            incoming.input.push_back(plain);
        }
        Ok(())
    }

    /// Inflate what `from` sent of its compressed message, a chunk at a time, each handed on
    /// as a piece. Returns true once everything received is inflated (the message done, or
    /// more of it to read), false while the destination is congested or the hook holds a
    /// piece: what it has not taken yet holds the rest back.
    fn inflate(&mut self, cx: &mut Context, now: Instant, from: Peer) -> Result<bool, WsError> {
        const CHUNK: usize = 64 * 1024;
        let max = cx.config.websocket.max_message as u64;
        loop {
            let end = &mut self.ends[from.index()];
            let (Some(incoming), Some(inflater)) = (end.incoming.as_mut(), end.inflater.as_mut()) else { return Ok(true) };
            let input = incoming.input.front().cloned().unwrap_or_default();
            let mut out = Vec::new();
            let used = inflater
                .inflate(&input, &mut out, CHUNK)
                .map_err(|e| WsError::invalid_data(format!("compressed message does not inflate: {}", e.0.trim_start_matches("deflate decompression error: "))))?;
            if used == input.len() {
                incoming.input.pop_front();
            } else if let Some(front) = incoming.input.front_mut() {
                let _ = front.split_to(used);
            }
            if used == 0 && out.is_empty() && !input.is_empty() {
                return Err(WsError::invalid_data("compressed message does not inflate"));
            }
            incoming.inflated += out.len() as u64;
            if incoming.inflated > max {
                return Err(WsError::too_big(format!("message inflates to over {max} bytes")));
            }
            // A full chunk may leave more inside the inflater.
            let drained = incoming.input.is_empty() && out.len() < CHUNK;
            let done = drained && incoming.input_complete;
            if done {
                inflater.end_message();
            }
            if !out.is_empty() || done {
                self.piece(cx, now, from, done, Bytes::from(out), None)?;
            }
            if drained {
                return Ok(true);
            }
            if self.waits_for_hook(from) || self.is_congested(cx, from.other()) {
                return Ok(false);
            }
        }
    }

    /// A piece of a message's payload, plain (or still masked with `mask`), and whether it is
    /// the last: checked, counted, then held for the hook or passed on at once.
    fn piece(&mut self, cx: &mut Context, now: Instant, from: Peer, fin: bool, raw: Bytes, mask: Option<([u8; 4], u64)>) -> Result<(), WsError> {
        let max = cx.config.websocket.max_message;
        let oversize = cx.config.websocket.oversize;
        let end = self.end(from);
        let incoming = end.incoming.as_mut().expect("a data piece belongs to a message");
        let kind = incoming.kind;
        // Held messages are kept unmasked; streamed text is only checked, unmasked a block at
        // a time on the stack.
        let plain = incoming.held.is_some().then(|| Item::unmasked(&raw, mask));
        if kind == MessageKind::Text {
            let invalid = |_| WsError::invalid_data("text message is not valid UTF-8");
            match (&plain, mask) {
                (Some(plain), _) => incoming.utf8.feed(plain).map_err(invalid)?,
                (None, None) => incoming.utf8.feed(&raw).map_err(invalid)?,
                (None, Some((key, offset))) => {
                    let mut block = [0u8; 1024];
                    for (i, chunk) in raw.chunks(block.len()).enumerate() {
                        let block = &mut block[..chunk.len()];
                        block.copy_from_slice(chunk);
                        apply_mask(key, offset + (i * 1024) as u64, block);
                        incoming.utf8.feed(block).map_err(invalid)?;
                    }
                }
            }
            if fin {
                incoming.utf8.finish().map_err(invalid)?;
            }
        }
        if fin {
            end.messages += 1;
        }
        let Some(held) = &mut incoming.held else {
            // Streaming: the piece goes on at once, as a frame of its own.
            if fin {
                end.incoming = None;
            }
            self.write_data(cx, from.other(), kind, fin, raw, mask);
            return Ok(());
        };
        held.extend_from_slice(&plain.expect("held messages are unmasked"));
        if held.len() > max && oversize == Oversize::Close {
            return Err(WsError::too_big(format!("message over {max} bytes")));
        }
        if held.len() > max && !fin {
            // Hand the hook what is here, cut where a character ends.
            let keep = if kind == MessageKind::Text { incoming.utf8.pending() } else { 0 };
            let piece = held.split_to(held.len() - keep).freeze();
            let offset = incoming.offset;
            incoming.offset += piece.len() as u64;
            self.ask(cx, now, from, kind, piece, offset, false);
        } else if fin {
            let incoming = end.incoming.take().expect("checked");
            let payload = incoming.held.expect("checked").freeze();
            self.ask(cx, now, from, kind, payload, incoming.offset, true);
        }
        Ok(())
    }

    /// Show a message (or a piece) to the hook; `from` is not read until it answers.
    #[allow(clippy::too_many_arguments)]
    fn ask(&mut self, cx: &mut Context, now: Instant, from: Peer, kind: MessageKind, payload: Bytes, offset: u64, last: bool) {
        let message = WebSocketMessage { flow: self.flow, from, kind, payload, offset, last, injected: false, time: now };
        self.hooks.push_back(Held { message, cancelled: false });
        self.pause(cx, from, true);
        if self.hooks.len() == 1 {
            self.raise_hook(cx);
        }
    }

    /// `peer` is gone: what it sent that waits for the hook goes nowhere. The one the hook was
    /// asked about stays, marked, until its answer comes.
    fn forget_held(&mut self, peer: Peer) {
        let asked = self.hooks.pop_front();
        self.hooks.retain(|h| h.message.from != peer);
        if let Some(mut asked) = asked {
            asked.cancelled |= asked.message.from == peer;
            self.hooks.push_front(asked);
        }
    }

    fn raise_hook(&mut self, cx: &mut Context) {
        if let Some(held) = self.hooks.front() {
            cx.hook(self.flow, Hook::WebSocketMessage(Box::new(held.message.clone())));
        }
    }

    /// The hook answered about the first message waiting.
    fn hook_reply(&mut self, cx: &mut Context, now: Instant, reply: HookReply) {
        let Some(Held { message, cancelled }) = self.hooks.pop_front() else { return };
        if cancelled {
            self.raise_hook(cx);
            return;
        }
        let from = message.from;
        let to = from.other();
        let outgoing = match reply {
            HookReply::Kill => {
                cx.log(LogLevel::Info, format!("websocket {}: killed by hook", self.flow.0));
                self.ending.get_or_insert_with(|| Ending { error: Some("killed by hook".into()), ..Ending::default() });
                self.close_conn(cx, Peer::Client);
                self.close_conn(cx, Peer::Server);
                return;
            }
            HookReply::Drop => None,
            HookReply::Message(changed) if changed.kind == MessageKind::Text && std::str::from_utf8(&changed.payload).is_err() => {
                cx.log(LogLevel::Warn, format!("websocket {}: hook made a text message that is not UTF-8: dropped", self.flow.0));
                None
            }
            HookReply::Message(changed) => Some((changed.kind, changed.payload)),
            _ => Some((message.kind, message.payload)),
        };
        match outgoing {
            Some((kind, payload)) => self.write_data(cx, to, kind, message.last, payload, None),
            // A dropped last piece still ends what earlier pieces began.
            None if message.last && self.end(to).writing => self.write_data(cx, to, message.kind, true, Bytes::new(), None),
            None => {}
        }
        if !self.end(from).gone {
            self.pause(cx, from, false);
        }
        self.raise_hook(cx);
        self.pump(cx, now, from);
    }

    /// A control frame from `from`.
    fn control(&mut self, cx: &mut Context, now: Instant, from: Peer, opcode: OpCode, payload: Bytes) -> Result<(), WsError> {
        let to = from.other();
        if opcode != OpCode::Close {
            if !self.end(to).close_sent {
                self.write_frame(cx, to, opcode, true, payload, None, false);
            }
            return Ok(());
        }
        let close = parse_close(&payload)?;
        let end = self.end(from);
        end.close_received = true;
        if self.ending.is_none() {
            let (code, reason) = match close {
                Some((code, reason)) => (Some(code), reason),
                None => (None, String::new()),
            };
            self.ending = Some(Ending { closed_by: Some(from), code, reason, error: None });
        }
        self.send_close(cx, now, to, payload, true);
        self.check_closed(cx, from);
        self.check_closed(cx, to);
        Ok(())
    }

    /// Close the connection of `peer` once the close handshake with it is complete.
    fn check_closed(&mut self, cx: &mut Context, peer: Peer) {
        let end = &self.ends[peer.index()];
        // The handshake with it is over, or the other side went away before answering the close
        // it sent.
        let other_gone = self.ends[peer.other().index()].gone;
        if end.close_received && !end.gone && (end.close_sent || other_gone) {
            self.close_conn(cx, peer);
        }
    }

    /// `from` broke the protocol: it gets the close code it earned and its connection closed;
    /// the other peer gets a clean close and a moment to answer it.
    fn fail(&mut self, cx: &mut Context, now: Instant, from: Peer, error: WsError) {
        cx.log(LogLevel::Info, format!("websocket {}: {} broke the protocol: {} (closing with {})", self.flow.0, from.as_str(), error.message, error.code));
        if self.ending.as_ref().is_none_or(|e| e.error.is_none()) {
            let ending = self.ending.get_or_insert_with(Ending::default);
            ending.closed_by.get_or_insert(from);
            if ending.code.is_none() {
                ending.code = Some(error.code);
                ending.reason = error.message.clone();
            }
            ending.error = Some(format!("{}: {}", from.as_str(), error.message));
        }
        self.forget_held(from);
        self.send_close(cx, now, from, close_payload(error.code, &error.message), false);
        self.close_conn(cx, from);
        let to = from.other();
        let reason = format!("{}: {}", from.as_str(), error.message);
        self.send_close(cx, now, to, close_payload(CloseCode::GOING_AWAY, &reason), true);
        self.check_closed(cx, to);
    }

    /// Send `to` a close frame with `payload`, unless it had one or is gone; `answer`: wait for
    /// its close frame, at most `close_timeout`.
    fn send_close(&mut self, cx: &mut Context, now: Instant, to: Peer, payload: Bytes, answer: bool) {
        let end = self.end(to);
        if end.close_sent || end.gone {
            return;
        }
        end.close_sent = true;
        self.write_frame(cx, to, OpCode::Close, true, payload, None, false);
        if answer {
            self.deadline = Some(now + cx.config.websocket.close_timeout);
        }
    }

    /// The connection of `peer` ended (EOF, reset or a failed read).
    fn peer_gone(&mut self, cx: &mut Context, peer: Peer) {
        if self.end(peer).gone {
            return;
        }
        let clean = self.end(peer).close_received;
        if self.ending.is_none() {
            self.ending = Some(Ending { closed_by: Some(peer), ..Ending::default() });
        }
        self.forget_held(peer);
        self.close_conn(cx, peer);
        let other = peer.other();
        if !clean {
            // Gone without a close frame (1006): the other peer loses its connection the same
            // way, as it would have without a proxy between them.
            self.close_conn(cx, other);
        }
        self.check_closed(cx, other);
    }

    fn close_conn(&mut self, cx: &mut Context, peer: Peer) {
        let end = self.end(peer);
        if !end.gone {
            end.gone = true;
            end.injected.clear();
            match &mut end.wire {
                Wire::Conn(conn) => cx.close(*conn, false),
                Wire::Stream(stream) => stream.end = true,
            }
        }
        if self.ends.iter().all(|e| e.gone) {
            self.finish(cx);
        }
    }

    /// Stop or resume reading what `peer` sends.
    fn pause(&mut self, cx: &mut Context, peer: Peer, paused: bool) {
        match &mut self.end(peer).wire {
            Wire::Conn(conn) => cx.set_layer_pause(*conn, paused),
            Wire::Stream(stream) => stream.paused = paused,
        }
    }

    /// Whether output for `peer` is backed up. A stream's own backlog is flow control's
    /// business, bounded by what the HTTP layer lets it read.
    fn is_congested(&self, cx: &Context, peer: Peer) -> bool {
        match &self.ends[peer.index()].wire {
            Wire::Conn(conn) => cx.is_congested(*conn),
            Wire::Stream(_) => false,
        }
    }

    fn send(&mut self, cx: &mut Context, to: Peer, data: Bytes) {
        match &mut self.end(to).wire {
            Wire::Conn(conn) => cx.send(*conn, data),
            Wire::Stream(stream) => stream.out.push(data),
        }
    }

    /// Both connections are closed: say how it ended.
    fn finish(&mut self, cx: &mut Context) {
        if self.done {
            return;
        }
        self.done = true;
        self.deadline = None;
        self.hooks.clear();
        if let Some(upgrade) = self.upgrade.take() {
            let ending = self.ending.take().unwrap_or_default();
            let end = WebSocketEnd {
                flow: self.flow,
                upgrade: *upgrade,
                code: ending.code,
                reason: ending.reason,
                closed_by: ending.closed_by,
                error: ending.error,
                messages: [self.ends[0].messages, self.ends[1].messages],
                bytes: [self.ends[0].bytes, self.ends[1].bytes],
                ended: self.now,
            };
            cx.hook(self.flow, Hook::WebSocketEnd(Box::new(end)));
        }
    }

    /// A piece of a data message for `to`: its first frame carries the kind, the rest are
    /// continuations. `mask` is the sender's key and offset when `raw` is still masked with it
    /// (a piece passed through); otherwise `raw` is plain.
    fn write_data(&mut self, cx: &mut Context, to: Peer, kind: MessageKind, fin: bool, raw: Bytes, mask: Option<([u8; 4], u64)>) {
        let end = self.end(to);
        if end.gone || end.close_sent {
            return;
        }
        let opcode = match (end.writing, kind) {
            (true, _) => OpCode::Continuation,
            (false, MessageKind::Text) => OpCode::Text,
            (false, MessageKind::Binary) => OpCode::Binary,
        };
        let first = !end.writing;
        end.writing = !fin;
        match &mut end.deflater {
            // Compressed with our own context: RSV1 on the message's first frame.
            Some(deflater) => {
                let payload = deflater.compress(&Item::unmasked(&raw, mask), fin);
                self.write_frame(cx, to, opcode, fin, payload, None, first);
            }
            None => self.write_frame(cx, to, opcode, fin, raw, mask, false),
        }
        if fin {
            self.flush_injected(cx, to);
        }
    }

    /// Write one frame to `to`. Frames to the server are masked: with the sender's key, rotated
    /// to where the piece starts, when the piece is still masked with it (no copy); with a
    /// fresh key otherwise.
    #[allow(clippy::too_many_arguments)]
    fn write_frame(&mut self, cx: &mut Context, to: Peer, opcode: OpCode, fin: bool, payload: Bytes, mask: Option<([u8; 4], u64)>, rsv1: bool) {
        let (key, payload) = match (to, mask) {
            (Peer::Server, Some((key, offset))) => (Some(rotate(key, offset)), payload),
            (Peer::Server, None) => {
                let key = self.next_key(cx);
                let mut masked = BytesMut::from(&payload[..]);
                apply_mask(key, 0, &mut masked);
                (Some(key), masked.freeze())
            }
            (Peer::Client, Some((key, offset))) => (None, Item::unmasked(&payload, Some((key, offset)))),
            (Peer::Client, None) => (None, payload),
        };
        let header = FrameHeader { fin, rsv1, opcode, mask: key, len: payload.len() as u64 };
        // On TLS one buffer makes one record; on a stream, one DATA frame.
        let separate = match &self.ends[to.index()].wire {
            Wire::Conn(conn) => cx.is_plain(*conn),
            Wire::Stream(_) => false,
        };
        if payload.len() <= SMALL_FRAME && !separate {
            let mut out = BytesMut::with_capacity(MAX_HEADER + payload.len());
            header.write(&mut out);
            out.extend_from_slice(&payload);
            self.send(cx, to, out.freeze());
        } else {
            // The payload as it is, beside its header: the driver writes both at once.
            let mut out = BytesMut::with_capacity(MAX_HEADER);
            header.write(&mut out);
            self.send(cx, to, out.freeze());
            self.send(cx, to, payload);
        }
    }

    fn next_key(&mut self, cx: &Context) -> [u8; 4] {
        if self.keys_used + 4 > self.keys.len() {
            cx.config.websocket.mask_keys.fill(&mut self.keys);
            self.keys_used = 0;
        }
        let key = self.keys[self.keys_used..self.keys_used + 4].try_into().expect("4 bytes");
        self.keys_used += 4;
        key
    }

    /// User code sends a message to `to`: at once, or after the message in progress to it.
    fn inject(&mut self, cx: &mut Context, to: Peer, kind: MessageKind, payload: Bytes) {
        let max = cx.config.websocket.max_injected;
        let end = self.end(to);
        if end.gone || end.close_sent {
            cx.log(LogLevel::Info, format!("websocket {}: injected message to the {} dropped: closing", self.flow.0, to.as_str()));
            return;
        }
        if kind == MessageKind::Text && std::str::from_utf8(&payload).is_err() {
            cx.log(LogLevel::Warn, format!("websocket {}: injected text message is not UTF-8: dropped", self.flow.0));
            return;
        }
        if end.writing {
            if end.injected.len() >= max {
                cx.log(LogLevel::Warn, format!("websocket {}: {max} injected messages already wait for the {}: dropped", self.flow.0, to.as_str()));
                return;
            }
            end.injected.push_back((kind, payload));
            return;
        }
        self.write_data(cx, to, kind, true, payload, None);
    }

    fn flush_injected(&mut self, cx: &mut Context, to: Peer) {
        while let Some((kind, payload)) = self.end(to).injected.pop_front() {
            self.write_data(cx, to, kind, true, payload, None);
        }
    }
}

/// Largest payload copied next to its header on a TLS connection or an HTTP/2 stream, rather
/// than made a record or DATA frame of its own.
const SMALL_FRAME: usize = 4096;

/// A close frame's payload: the code, and as much of `reason` as fits in 123 bytes without
/// cutting a character.
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = BytesMut::with_capacity(2 + cut);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    out.freeze()
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
