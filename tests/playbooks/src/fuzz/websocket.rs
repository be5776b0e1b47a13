//! WebSocket targets: the frame reader on any bytes cut anywhere (`websocket_frames`), and whole
//! WebSocket sessions through a [`Connection`] in any order of events (`websocket_session`).
//!
//! The session target checks, after every step, that what the proxy writes to each side is a
//! valid WebSocket stream for that side: frames to the server read as a client's (masked),
//! frames to the client as a server's (unmasked), with no reserved bits beyond a negotiated
//! RSV1, fragments in order, control frames whole and short, nothing after a close frame,
//! text that is UTF-8; that every command names a live connection; that a hook is answered
//! only when pending; and that output queued for a peer that never drains stays bounded.
//!
//! [`Connection`]: proxy_core::Connection

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::websocket::{MessageKind, Oversize, Peer, WebSocketLimits};
use proxy_core::websocket_wire::{Item, OpCode, Reader};
use proxy_core::{Command, ConnId, Connection, Event, FlowId, HookKind, HookReply, HookSet};

use crate::ws::{deflate, frame_rsv, keys, replace, switching_with, UPGRADE, SWITCHING};
use crate::{client_info, Config, CLIENT, S1};

/// What one peer's frames amount to, independent of how the bytes were cut: messages (kind,
/// compressed, payload, ended), control frames, and the error that stopped the reader.
#[derive(Debug, PartialEq, Eq, Default)]
struct Parsed {
    items: Vec<(String, Vec<u8>)>,
    error: Option<(u16, String)>,
}

fn parse(from: Peer, deflate: bool, pieces: &[&[u8]]) -> Parsed {
    let mut reader = Reader::new(from);
    reader.set_deflate(deflate);
    let mut parsed = Parsed::default();
    let mut message: Option<(String, Vec<u8>)> = None;
    for piece in pieces {
        reader.receive(Bytes::copy_from_slice(piece));
        loop {
            match reader.next_item() {
                Ok(None) => break,
                Ok(Some(Item::Data { start, fin, raw, mask })) => {
                    if let Some((kind, compressed)) = start {
                        assert!(message.is_none(), "a message began inside another");
                        message = Some((format!("{kind:?} compressed={compressed}"), Vec::new()));
                    }
                    let current = message.as_mut().expect("data belongs to a message");
                    current.1.extend_from_slice(&Item::unmasked(&raw, mask));
                    if fin {
                        parsed.items.push(message.take().expect("checked"));
                    }
                }
                Ok(Some(Item::Control { opcode, payload })) => {
                    assert!(opcode.is_control() && payload.len() <= 125, "{opcode:?} with {} bytes", payload.len());
                    parsed.items.push((format!("{opcode:?}"), payload.to_vec()));
                }
                Err(e) => {
                    parsed.error = Some((e.code, e.message));
                    return parsed;
                }
            }
        }
    }
    if let Some((kind, payload)) = message {
        parsed.items.push((format!("{kind} unfinished"), payload));
    }
    parsed
}

/// The frame reader on `data`: the first byte picks the sender and RSV1, the second how the
/// rest is cut. Whole or cut into pieces, it must read the same.
pub fn websocket_frames(data: &[u8]) {
    let [flags, cut, rest @ ..] = data else { return };
    let from = if flags & 1 == 0 { Peer::Client } else { Peer::Server };
    let deflate = flags & 2 != 0;
    let whole = parse(from, deflate, &[rest]);
    let size = usize::from(*cut % 16) + 1;
    let pieces: Vec<&[u8]> = rest.chunks(size).collect();
    let split = parse(from, deflate, &pieces);
    // A message cut off mid-way shows as unfinished either way; so does the rest.
    assert_eq!(whole, split, "cut every {size} bytes");
    if let Some((code, _)) = &whole.error {
        assert!(matches!(code, 1002 | 1007), "close code {code}");
    }
}

/// An input stream of bytes, read a field at a time; zeros once used up.
struct Bytes8<'a>(&'a [u8]);

impl Bytes8<'_> {
    fn next(&mut self) -> u8 {
        let Some((b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        *b
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the proxy wrote to one peer, checked as it comes.
struct Out {
    /// The reader the peer would use: a server reads a client's frames.
    reader: Reader,
    /// The peer got a close frame.
    closed_frame: bool,
    /// Text of the message in progress, uncompressed, to check as UTF-8.
    text: Option<Vec<u8>>,
    /// The connection was closed.
    closed: bool,
    /// Sent since the last drain.
    queued: usize,
}

impl Out {
    fn new(role: Peer, deflate: bool) -> Self {
        let mut reader = Reader::new(role);
        reader.set_deflate(deflate);
        Self { reader, closed_frame: false, text: None, closed: false, queued: 0 }
    }

    fn wrote(&mut self, data: &Bytes, what: &str) {
        assert!(!self.closed, "{what}: data after the connection was closed");
        self.queued += data.len();
        self.reader.receive(data.clone());
        loop {
            match self.reader.next_item() {
                Ok(None) => return,
                Ok(Some(item)) => {
                    assert!(!self.closed_frame, "{what}: a frame after the close frame");
                    match item {
                        Item::Data { start, fin, raw, mask } => {
                            if let Some((kind, compressed)) = start {
                                self.text = (kind == MessageKind::Text && !compressed).then(Vec::new);
                            }
                            if let Some(text) = &mut self.text {
                                text.extend_from_slice(&Item::unmasked(&raw, mask));
                                if fin {
                                    assert!(std::str::from_utf8(text).is_ok(), "{what}: a text message that is not UTF-8");
                                    self.text = None;
                                }
                            }
                        }
                        Item::Control { opcode: OpCode::Close, payload } => {
                            proxy_core::websocket_wire::parse_close(&payload).unwrap_or_else(|e| panic!("{what}: bad close frame: {e:?}"));
                            self.closed_frame = true;
                        }
                        Item::Control { .. } => {}
                    }
                }
                Err(e) => panic!("{what}: the proxy wrote an invalid frame: {}", e.message),
            }
        }
    }
}

/// A whole WebSocket session: the first bytes pick hooks, limits and compression, the rest is
/// a script of peer frames, garbage, hook replies, injections, drains, closes and time.
pub fn websocket_session(data: &[u8]) {
    let mut input = Bytes8(data);
    let flags = input.next();
    let deflate_on = flags & 1 != 0;
    let hold = flags & 2 != 0;
    let limits = WebSocketLimits {
        max_message: 16 + usize::from(input.next()) * 16,
        oversize: if flags & 4 != 0 { Oversize::Pieces } else { Oversize::Close },
        mask_keys: keys(),
        ..WebSocketLimits::default()
    };
    let hooks: HookSet = if hold {
        [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketEnd].into_iter().collect()
    } else {
        HookSet::NONE.with(HookKind::WebSocketEnd)
    };
    let config = Config { hooks, high_water: 1024, websocket: limits, ..Config::default() };
    let high_water = config.high_water;
    let mut conn = Connection::new(Arc::new(config), client_info());
    let mut now = Instant::now();
    let trace = std::env::var_os("FUZZ_TRACE").is_some();

    let mut outs = [Out::new(Peer::Server, deflate_on), Out::new(Peer::Client, deflate_on)];
    let mut paused: BTreeSet<ConnId> = BTreeSet::new();
    let mut pending_hooks = 0usize;
    let mut open_conns: BTreeSet<ConnId> = [CLIENT].into_iter().collect();
    let mut held_back: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];

    let step = |conn: &mut Connection, event: Event, now: Instant, outs: &mut [Out; 2], paused: &mut BTreeSet<ConnId>, pending: &mut usize, open: &mut BTreeSet<ConnId>, upgraded: bool| {
        if trace {
            eprintln!(">> {event:?}");
        }
        conn.handle(now, event);
        while let Some(cmd) = conn.poll_command() {
            if trace {
                eprintln!("<< {cmd:?}");
            }
            match cmd {
                Command::SendData { conn: c, data } => {
                    assert!(open.contains(&c), "SendData to {c:?}, which is not open");
                    if upgraded {
                        let i = usize::from(c != CLIENT);
                        let what = if c == CLIENT { "to the client" } else { "to the server" };
                        outs[i].wrote(&data, what);
                    }
                }
                Command::OpenConnection { conn: c, .. } | Command::Reuse { conn: c, .. } => {
                    open.insert(c);
                }
                Command::Park { conn: c, .. } => {
                    open.remove(&c);
                }
                // Nothing here joins a carrier (`Reuse` is answered as an open).
                Command::Carry { .. } | Command::StreamOut { .. } | Command::Capacity { .. } => {}
                Command::CloseConnection { conn: c, half } => {
                    assert!(open.contains(&c) || half, "closing {c:?} twice");
                    if !half {
                        open.remove(&c);
                        if upgraded {
                            outs[usize::from(c != CLIENT)].closed = true;
                        }
                    }
                }
                Command::PauseReading { conn: c } => {
                    paused.insert(c);
                }
                Command::ResumeReading { conn: c } => {
                    paused.remove(&c);
                }
                Command::Hook { hook, .. } => {
                    if hook.is_blocking() {
                        *pending += 1;
                        assert!(*pending <= 1, "a second blocking hook while one is unanswered");
                    }
                }
                Command::Forward { .. } | Command::Log { .. } => {}
            }
        }
    };

    // The upgrade, with or without permessage-deflate.
    let accepted = if deflate_on { switching_with("permessage-deflate") } else { SWITCHING.to_owned() };
    let offer = if deflate_on { crate::ws::upgrade_with("permessage-deflate") } else { UPGRADE.to_owned() };
    step(&mut conn, Event::Start, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, false);
    step(&mut conn, Event::DataReceived { conn: CLIENT, data: offer.into() }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, false);
    step(&mut conn, Event::Opened { conn: S1 }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, false);
    // The 101 itself is HTTP; frames come after it.
    step(&mut conn, Event::DataReceived { conn: S1, data: accepted.into() }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, false);
    for out in &mut outs {
        out.queued = 0;
    }
    let upgraded = true;

    let opcodes = [0x0, 0x1, 0x2, 0x8, 0x9, 0xa, 0x3, 0xb];
    let mut turns = 0;
    while !input.is_empty() && turns < 200 {
        turns += 1;
        let op = input.next();
        let event = match op % 8 {
            // A frame from the client (0) or the server (1).
            0 | 1 => {
                let from_client = op % 8 == 0;
                let head = input.next();
                let len = usize::from(input.next() % 64);
                let mut payload = input.take(len);
                let opcode = opcodes[usize::from(head & 7)];
                let fin = head & 8 != 0;
                let mut rsv = (head >> 4) & 7;
                if head & 0x80 != 0 && deflate_on {
                    payload = deflate(&payload);
                    rsv = 0b100;
                }
                if opcode == 0x8 && head & 0x40 == 0 {
                    // Mostly well-formed close frames.
                    let mut close = 1000u16.to_be_bytes().to_vec();
                    close.extend_from_slice(b"bye");
                    payload = close;
                    rsv = 0;
                }
                let masked = from_client != (rsv == 0b111);
                let key = masked.then_some([head, 1, 2, 3]);
                let rsv = if rsv == 0b111 { 0 } else { rsv & 0b100 };
                let frame = frame_rsv(fin, rsv, opcode, &payload, key);
                let c = if from_client { CLIENT } else { S1 };
                Some((c, Bytes::from(frame)))
            }
            2 => {
                let c = if input.next() & 1 == 0 { CLIENT } else { S1 };
                let n = usize::from(input.next() % 32);
                Some((c, Bytes::from(input.take(n))))
            }
            3 => {
                if pending_hooks > 0 {
                    pending_hooks -= 1;
                    let reply = match input.next() % 5 {
                        0 => HookReply::Drop,
                        1 => replace(FlowId(1), MessageKind::Text, "changed ✓"),
                        2 => replace(FlowId(1), MessageKind::Text, &b"\xff"[..]),
                        3 => HookReply::Kill,
                        _ => HookReply::Continue,
                    };
                    step(&mut conn, Event::HookReply { flow: FlowId(1), reply }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
                }
                None
            }
            4 => {
                let to = if input.next() & 1 == 0 { Peer::Client } else { Peer::Server };
                let n = usize::from(input.next() % 40);
                let payload = Bytes::from(input.take(n));
                let kind = if n % 2 == 0 { MessageKind::Text } else { MessageKind::Binary };
                let payload = if kind == MessageKind::Text { Bytes::from(String::from_utf8_lossy(&payload).into_owned()) } else { payload };
                step(&mut conn, Event::Inject { flow: FlowId(1), to, kind, payload }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
                None
            }
            5 => {
                let c = if input.next() & 1 == 0 { CLIENT } else { S1 };
                outs[usize::from(c != CLIENT)].queued = 0;
                if open_conns.contains(&c) {
                    step(&mut conn, Event::WriteDrained { conn: c }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
                }
                None
            }
            6 => {
                let c = if input.next() & 1 == 0 { CLIENT } else { S1 };
                if open_conns.contains(&c) {
                    step(&mut conn, Event::ConnectionClosed { conn: c }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
                }
                None
            }
            _ => {
                now += Duration::from_secs(u64::from(input.next() % 8));
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    step(&mut conn, Event::Wakeup, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
                }
                None
            }
        };
        // Bytes for a paused connection wait, as a driver that honours PauseReading keeps them.
        if let Some((c, data)) = event {
            let i = usize::from(c != CLIENT);
            held_back[i].push(data);
        }
        for (i, c) in [(0, CLIENT), (1, S1)] {
            while !paused.contains(&c) && open_conns.contains(&c) && !held_back[i].is_empty() {
                let data = held_back[i].remove(0);
                step(&mut conn, Event::DataReceived { conn: c, data }, now, &mut outs, &mut paused, &mut pending_hooks, &mut open_conns, upgraded);
            }
        }
        for (i, out) in outs.iter().enumerate() {
            // One message (a hook's, or an injected one) may exceed the mark on its own.
            let bound = high_water + 4 * (16 + 16 * 256) + 4096;
            assert!(out.queued <= bound, "{} bytes queued for side {i} without a drain", out.queued);
        }
        if conn.is_closed() {
            break;
        }
    }
}
