//! Control frames and the end: pings and pongs passed on, the close handshake and its
//! deadline, a peer that broke the protocol or went away, and the `WebSocketEnd` hook once
//! both connections are closed.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::frame::OpCode;
use super::reader::parse_close;
use super::{CloseCode, Ending, WebSocketLayer, Wire, WsError};
use crate::command::LogLevel;
use crate::context::Context;
use crate::hook::Hook;
use crate::websocket::{Peer, WebSocketEnd};

impl WebSocketLayer {
    /// The deadline passed: a close frame went unanswered.
    pub(super) fn expire(&mut self, cx: &mut Context, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            cx.log(LogLevel::Info, format!("websocket {}: no answer to the close frame: closing", self.flow.0));
            self.close_conn(cx, Peer::Client);
            self.close_conn(cx, Peer::Server);
        }
    }

    /// A control frame from `from`.
    pub(super) fn control(&mut self, cx: &mut Context, now: Instant, from: Peer, opcode: OpCode, payload: Bytes) -> Result<(), WsError> {
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
    pub(super) fn fail(&mut self, cx: &mut Context, now: Instant, from: Peer, error: WsError) {
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
    pub(super) fn peer_gone(&mut self, cx: &mut Context, peer: Peer) {
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

    pub(super) fn close_conn(&mut self, cx: &mut Context, peer: Peer) {
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
}

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
