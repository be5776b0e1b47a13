//! Data messages, piece by piece: checked as UTF-8, inflated when compressed, then passed on
//! at once or held for the `WebSocketMessage` hook, and what the hook's answer makes of them.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::deflate::Inflater;
use super::frame::apply_mask;
use super::reader::Item;
use super::utf8::Utf8Check;
use super::{Ending, Held, Incoming, WebSocketLayer, WsError};
use crate::command::LogLevel;
use crate::context::Context;
use crate::hook::{Hook, HookKind, HookReply};
use crate::websocket::{MessageKind, Oversize, Peer, WebSocketMessage};

impl WebSocketLayer {
    /// A piece of a data message from `from`, as the reader found it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn data(
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
    pub(super) fn inflate(&mut self, cx: &mut Context, now: Instant, from: Peer) -> Result<bool, WsError> {
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
    pub(super) fn forget_held(&mut self, peer: Peer) {
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
    pub(super) fn hook_reply(&mut self, cx: &mut Context, now: Instant, reply: HookReply) {
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
}
