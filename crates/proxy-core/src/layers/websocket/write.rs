//! What goes out to a peer: data frames (compressed with our own context, masked towards the
//! server) and control frames, whether its output is backed up, and messages injected by
//! user code, which wait for the message in progress.

use bytes::{Bytes, BytesMut};

use super::frame::{apply_mask, rotate, FrameHeader, OpCode, MAX_HEADER};
use super::reader::Item;
use super::{WebSocketLayer, Wire};
use crate::command::LogLevel;
use crate::context::Context;
use crate::websocket::{MessageKind, Peer};

impl WebSocketLayer {
    /// Whether output for `peer` is backed up. A stream's own backlog is flow control's
    /// business, bounded by what the HTTP layer lets it read.
    pub(super) fn is_congested(&self, cx: &Context, peer: Peer) -> bool {
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

    /// A piece of a data message for `to`: its first frame carries the kind, the rest are
    /// continuations. `mask` is the sender's key and offset when `raw` is still masked with it
    /// (a piece passed through); otherwise `raw` is plain.
    pub(super) fn write_data(&mut self, cx: &mut Context, to: Peer, kind: MessageKind, fin: bool, raw: Bytes, mask: Option<([u8; 4], u64)>) {
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
    pub(super) fn write_frame(&mut self, cx: &mut Context, to: Peer, opcode: OpCode, fin: bool, payload: Bytes, mask: Option<([u8; 4], u64)>, rsv1: bool) {
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
    pub(super) fn inject(&mut self, cx: &mut Context, to: Peer, kind: MessageKind, payload: Bytes) {
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
