//! Reading: the peer's frames in order, and what each means for the connection and its
//! streams: settings, pings, GOAWAY, windows, resets, bodies and header blocks.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::frame::{self, Head, DEFAULT_MAX_FRAME, HEADER_LEN, MAX_WINDOW, PREFACE};
use super::head::{self, Builder, Decoded, HeadError, Kind, Message};
use super::stream::{Recv, Stream};
use super::{goaway, owned, ConnectionError, Engine, H2Event, Partial, Reason, Repeat, ResponseHead, Role, State, StreamKey, REPEAT_MAX};
use crate::headers::Headers;

impl Engine {
    /// Every whole frame in the input, in order. A connection error stops the reading.
    pub(super) fn read_frames(&mut self) -> Result<(), (Reason, ConnectionError)> {
        while let State::Preface(left) = self.state {
            let at = PREFACE.len() - left;
            let n = left.min(self.input.len());
            if self.input[..n] != PREFACE[at..at + n] {
                return Err((Reason::PROTOCOL_ERROR, ConnectionError::GoAwaySent(Reason::PROTOCOL_ERROR)));
            }
            let _ = self.input.split_to(n);
            self.state = if n == left { State::Open } else { State::Preface(left - n) };
            if n < left && !self.take_later(left - n) {
                return Ok(());
            }
        }
        while self.state == State::Open {
            let Some(head) = Head::parse(&self.input) else {
                if self.take_later(HEADER_LEN - self.input.len()) {
                    continue;
                }
                break;
            };
            if head.len > DEFAULT_MAX_FRAME {
                return Err(goaway(Reason::FRAME_SIZE_ERROR));
            }
            if self.input.len() < HEADER_LEN + head.len {
                if self.take_later(HEADER_LEN + head.len - self.input.len()) {
                    continue;
                }
                break;
            }
            let _ = self.input.split_to(HEADER_LEN);
            let payload = self.input.split_to(head.len);
            self.read_frame(head, payload)?;
        }
        if self.input.is_empty() {
            // Let go of the buffer: what was handed out keeps only its own bytes alive.
            self.input = BytesMut::new();
        }
        if self.later.is_empty() {
            // An idle connection keeps no room for bytes to come.
            self.later = VecDeque::new();
        }
        Ok(())
    }

    /// Take on received bytes behind `input`, which lacks `need` bytes of a frame (or of its
    /// header): all of them when `input` is empty, else as many as the frame needs, copied
    /// to it. False when there are none.
    fn take_later(&mut self, need: usize) -> bool {
        let Some(front) = self.later.front_mut() else { return false };
        if self.input.is_empty() {
            self.input = owned(self.later.pop_front().unwrap_or_default());
            return true;
        }
        let n = need.min(front.len());
        // Room for the rest of the frame, once.
        self.input.reserve(need);
        self.input.extend_from_slice(&front[..n]);
        front.advance(n);
        if front.is_empty() {
            self.later.pop_front();
        }
        true
    }

    fn read_frame(&mut self, head: Head, payload: BytesMut) -> Result<(), (Reason, ConnectionError)> {
        if !self.peer.received && head.kind != frame::SETTINGS {
            // The peer's first frame is its SETTINGS (section 3.4).
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        if let Some(partial) = &self.partial {
            if head.kind != frame::CONTINUATION || head.stream != partial.stream {
                return Err(goaway(Reason::PROTOCOL_ERROR));
            }
        }
        match head.kind {
            frame::DATA => self.read_data(head, payload),
            frame::HEADERS => self.read_headers(head, payload),
            frame::PRIORITY => self.read_priority(head, &payload),
            frame::RST_STREAM => self.read_rst(head, &payload),
            frame::SETTINGS => self.read_settings(head, &payload),
            frame::PUSH_PROMISE => Err(goaway(Reason::PROTOCOL_ERROR)),
            frame::PING => self.read_ping(head, &payload),
            frame::GOAWAY => self.read_goaway(head, &payload),
            frame::WINDOW_UPDATE => self.read_window_update(head, &payload),
            frame::CONTINUATION => self.read_continuation(head, payload),
            // Unknown frame types are ignored (section 4.1).
            _ => Ok(()),
        }
    }

    fn read_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if head.stream != 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        if head.has(frame::ACK) {
            self.acked = true;
            return if payload.is_empty() { Ok(()) } else { Err(goaway(Reason::FRAME_SIZE_ERROR)) };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(goaway(Reason::FRAME_SIZE_ERROR));
        }
        let delta = self.peer.apply(payload).map_err(goaway)?;
        if delta != 0 {
            for s in self.streams.values_mut().filter(|s| s.id != 0) {
                s.send_window += delta;
                if s.send_window > MAX_WINDOW {
                    return Err(goaway(Reason::FLOW_CONTROL_ERROR));
                }
            }
        }
        if let Some(size) = self.peer.header_table_size.take() {
            self.encoder.set_max_table_size(size as usize);
        }
        frame::put_settings_ack(&mut self.output);
        Ok(())
    }

    fn read_ping(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if head.stream != 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        let Ok(data) = <&[u8; 8]>::try_from(payload) else { return Err(goaway(Reason::FRAME_SIZE_ERROR)) };
        if !head.has(frame::ACK) {
            frame::put_ping(&mut self.output, true, data);
        }
        Ok(())
    }

    fn read_goaway(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if head.stream != 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        if payload.len() < 8 {
            return Err(goaway(Reason::FRAME_SIZE_ERROR));
        }
        let last = frame::u32_at(payload, 0) & 0x7fff_ffff;
        let reason = Reason(frame::u32_at(payload, 4));
        self.goaway_received = Some(reason);
        // Our streams above the last one it names were never acted on: they may go again.
        let refused: Vec<StreamKey> = match self.role {
            Role::Client => self.keys.from(&(last + 1)).map(|(_, key)| *key).collect(),
            Role::Server => Vec::new(),
        };
        for key in refused {
            if let Some(s) = self.streams.remove(&key) {
                self.keys.remove(&s.id);
                self.give_back_held(&s);
                self.events.push(H2Event::Reset { stream: key, reason, remote: true, unprocessed: true });
            }
        }
        Ok(())
    }

    fn read_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if payload.len() != 4 {
            return Err(goaway(Reason::FRAME_SIZE_ERROR));
        }
        let increment = i64::from(frame::u32_at(payload, 0) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return Err(goaway(Reason::PROTOCOL_ERROR));
            }
            self.send_window += increment;
            if self.send_window > MAX_WINDOW {
                return Err(goaway(Reason::FLOW_CONTROL_ERROR));
            }
            return Ok(());
        }
        let Some(key) = self.key_of(head.stream) else {
            return if self.is_idle(head.stream) { Err(goaway(Reason::PROTOCOL_ERROR)) } else { Ok(()) };
        };
        if increment == 0 {
            return self.stream_error(key, Reason::PROTOCOL_ERROR);
        }
        let Some(s) = self.streams.get_mut(&key) else { return Ok(()) };
        s.send_window += increment;
        if s.send_window > MAX_WINDOW {
            return self.stream_error(key, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    fn read_priority(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if head.stream == 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        if payload.len() != 5 {
            return self.stream_error_by_id(head.stream, Reason::FRAME_SIZE_ERROR);
        }
        if frame::u32_at(payload, 0) & 0x7fff_ffff == head.stream {
            return self.stream_error_by_id(head.stream, Reason::PROTOCOL_ERROR);
        }
        Ok(())
    }

    fn read_rst(&mut self, head: Head, payload: &[u8]) -> Result<(), (Reason, ConnectionError)> {
        if head.stream == 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        if payload.len() != 4 {
            return Err(goaway(Reason::FRAME_SIZE_ERROR));
        }
        if self.is_idle(head.stream) {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        let reason = Reason(frame::u32_at(payload, 0));
        let Some(key) = self.key_of(head.stream) else { return Ok(()) };
        let Some(s) = self.streams.remove(&key) else { return Ok(()) };
        self.keys.remove(&s.id);
        self.give_back_held(&s);
        if self.role == Role::Server && s.id > self.batch_start {
            // Opened and reset in one batch: the caller never hears of it. Many of those is
            // the rapid-reset attack (CVE-2023-44487).
            self.events.retain(|e| e.stream() != Some(key));
            self.batch_resets += 1;
            if self.batch_resets > self.settings.max_pending_accept_reset_streams {
                return Err(goaway(Reason::ENHANCE_YOUR_CALM));
            }
            return Ok(());
        }
        self.events.push(H2Event::Reset { stream: key, reason, remote: true, unprocessed: reason == Reason::REFUSED_STREAM });
        Ok(())
    }

    fn read_data(&mut self, head: Head, mut payload: BytesMut) -> Result<(), (Reason, ConnectionError)> {
        if head.stream == 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        let (start, end) = frame::unpadded(&head, &payload).map_err(goaway)?;
        let len = payload.len() as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(goaway(Reason::FLOW_CONTROL_ERROR));
        }
        // Padding is given back at once; the body when it is handed out.
        let padding = len - (end - start) as i64;
        self.recv_released += padding;
        let Some(key) = self.key_of(head.stream) else {
            self.recv_released += len - padding;
            if self.is_idle(head.stream) {
                return Err(goaway(Reason::PROTOCOL_ERROR));
            }
            return self.closed_stream_frame(head.stream);
        };
        let Some(s) = self.streams.get_mut(&key) else { return Ok(()) };
        match s.recv {
            Recv::Body => {}
            Recv::Head => {
                self.recv_released += len - padding;
                return self.stream_error(key, Reason::PROTOCOL_ERROR);
            }
            Recv::Ended => {
                self.recv_released += len - padding;
                return self.stream_error(key, Reason::STREAM_CLOSED);
            }
        }
        s.recv_window -= len;
        if s.recv_window < 0 {
            self.recv_released += len - padding;
            return self.stream_error(key, Reason::FLOW_CONTROL_ERROR);
        }
        s.recv_released += padding;
        let _ = payload.split_to(start);
        payload.truncate(end - start);
        s.received += payload.len() as u64;
        let length_broken = match s.content_length {
            Some(n) if !s.head_request => s.received > n || (head.has(frame::END_STREAM) && s.received != n),
            _ => false,
        };
        if length_broken {
            self.recv_released += payload.len() as i64;
            return self.stream_error(key, Reason::PROTOCOL_ERROR);
        }
        if !payload.is_empty() {
            let data = payload.freeze();
            if s.reading && s.held.is_empty() {
                let n = data.len() as i64;
                s.recv_released += n;
                self.recv_released += n;
                self.events.push(H2Event::Data { stream: key, data });
            } else {
                s.held.push_back(data);
            }
        }
        if head.has(frame::END_STREAM) {
            self.end_of_message(key, None);
        }
        Ok(())
    }

    fn read_headers(&mut self, head: Head, payload: BytesMut) -> Result<(), (Reason, ConnectionError)> {
        if head.stream == 0 {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        let (start, end) = frame::unpadded(&head, &payload).map_err(goaway)?;
        let dependency = frame::dependency(&head, &payload);
        let block = &payload[start..end];
        if head.has(frame::END_HEADERS) {
            return self.read_block(head.stream, head.has(frame::END_STREAM), block, dependency);
        }
        let mut pending = BytesMut::with_capacity(block.len() * 2);
        pending.extend_from_slice(block);
        self.partial = Some(Partial { stream: head.stream, end_stream: head.has(frame::END_STREAM), block: pending });
        Ok(())
    }

    fn read_continuation(&mut self, head: Head, payload: BytesMut) -> Result<(), (Reason, ConnectionError)> {
        let Some(partial) = &mut self.partial else { return Err(goaway(Reason::PROTOCOL_ERROR)) };
        partial.block.extend_from_slice(&payload);
        if partial.block.len() > self.settings.max_header_list_size.max(16 * 1024) as usize {
            // A header block that never ends (the CONTINUATION flood).
            return Err(goaway(Reason::ENHANCE_YOUR_CALM));
        }
        if !head.has(frame::END_HEADERS) {
            return Ok(());
        }
        let Some(partial) = self.partial.take() else { return Ok(()) };
        self.read_block(partial.stream, partial.end_stream, &partial.block, None)
    }

    /// A whole header block on stream `id`.
    fn read_block(&mut self, id: u32, end_stream: bool, block: &[u8], dependency: Option<u32>) -> Result<(), (Reason, ConnectionError)> {
        let key = self.key_of(id);
        let kind = match (self.role, key.and_then(|k| self.streams.get(&k))) {
            (Role::Server, None) => Kind::Request,
            (Role::Client, Some(s)) if s.recv == Recv::Head => Kind::Response,
            (_, Some(_)) => Kind::Trailers,
            (Role::Client, None) => Kind::Trailers,
        };
        let decoded = self.decode(kind, block)?;
        match (self.role, key) {
            (Role::Server, None) if id.is_multiple_of(2) || id > self.last_peer_id => self.new_request(id, end_stream, decoded, dependency),
            (_, Some(key)) if self.streams.contains_key(&key) => self.stream_head(key, end_stream, decoded),
            _ => {
                if self.is_idle(id) {
                    return Err(goaway(Reason::PROTOCOL_ERROR));
                }
                self.closed_stream_frame(id)
            }
        }
    }

    /// Run a block through HPACK (always, so the table follows the peer's) and check it. A
    /// response head that repeats the last one, byte for byte, is taken as it was then
    /// ([`Repeat`]).
    fn decode(&mut self, kind: Kind, block: &[u8]) -> Result<Result<Decoded, HeadError>, (Reason, ConnectionError)> {
        let response = kind == Kind::Response;
        if let Some(repeat) = self.repeat.as_deref().filter(|r| response && r.block == block) {
            self.decoder.enter(&repeat.entries);
            return Ok(Ok(repeat.decoded.clone()));
        }
        let mut builder = Builder::new(kind, self.settings.max_header_list_size as usize, block.len());
        let field = |name: &[u8], value: &[u8], _never_indexed| builder.field(name, value);
        let entries = match response && block.len() <= REPEAT_MAX {
            true => self.decoder.decode_standalone(block, usize::MAX, field),
            false => self.decoder.decode(block, usize::MAX, field).map(|()| None),
        };
        let Ok(entries) = entries else { return Err(goaway(Reason::COMPRESSION_ERROR)) };
        let connect_protocol = self.role == Role::Server && self.settings.connect_protocol;
        match builder.finish(connect_protocol) {
            Err(HeadError::Field) => Err(goaway(Reason::PROTOCOL_ERROR)),
            Ok(decoded) => {
                if let Some(mut entries) = entries {
                    // Kept while the connection idles: no room beyond what it holds.
                    entries.shrink_to_fit();
                    self.repeat = Some(Box::new(Repeat { block: block.to_vec(), entries, decoded: decoded.clone() }));
                }
                Ok(Ok(decoded))
            }
            other => Ok(other),
        }
    }

    /// A request on a new stream (server role).
    fn new_request(&mut self, id: u32, end_stream: bool, decoded: Result<Decoded, HeadError>, dependency: Option<u32>) -> Result<(), (Reason, ConnectionError)> {
        if id.is_multiple_of(2) || id <= self.last_peer_id {
            return Err(goaway(Reason::PROTOCOL_ERROR));
        }
        self.last_peer_id = id;
        if self.goaway_sent.is_some_and(|last| id > last) {
            // After our GOAWAY: not acted on, as the GOAWAY said.
            return Ok(());
        }
        if dependency == Some(id) {
            return self.stream_error_by_id(id, Reason::PROTOCOL_ERROR);
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            frame::put_rst(&mut self.output, id, Reason::REFUSED_STREAM);
            self.remember_reset(id);
            return Ok(());
        }
        let key = StreamKey::from(id);
        let mut s = Stream::new(id, Recv::Body, i64::from(self.settings.stream_window), self.peer.initial_window);
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(HeadError::TooLarge) => {
                // Answered 431 (RFC 6585), the stream ended from our side.
                let answer = ResponseHead { status: 431, fields: Headers::new() };
                self.send_head(id, head::response_fields(&answer, b"431"), true);
                if !end_stream {
                    frame::put_rst(&mut self.output, id, Reason::NO_ERROR);
                }
                self.remember_reset(id);
                return Ok(());
            }
            Err(_) => return self.stream_error_by_id(id, Reason::PROTOCOL_ERROR),
        };
        let Message::Request(head) = decoded.message else { return Ok(()) };
        if end_stream && decoded.content_length.is_some_and(|n| n > 0) {
            return self.stream_error_by_id(id, Reason::PROTOCOL_ERROR);
        }
        s.content_length = decoded.content_length;
        if end_stream {
            s.recv = Recv::Ended;
            s.recv_end = true;
        }
        self.streams.insert(key, Box::new(s));
        self.events.push(H2Event::Request { stream: key, head, end_stream });
        Ok(())
    }

    /// A response head, or trailers, on a stream we know.
    fn stream_head(&mut self, key: StreamKey, end_stream: bool, decoded: Result<Decoded, HeadError>) -> Result<(), (Reason, ConnectionError)> {
        let Some(s) = self.streams.get_mut(&key) else { return Ok(()) };
        if s.recv == Recv::Ended {
            return self.stream_error(key, Reason::STREAM_CLOSED);
        }
        // A block ending a stream whose other half is over closes it: a malformed one is
        // reported, but no RST_STREAM follows the stream's end.
        let closes = end_stream && s.sent_end;
        let Ok(decoded) = decoded else { return self.stream_error_closing(key, Reason::PROTOCOL_ERROR, closes) };
        match decoded.message {
            Message::Response(head) => {
                let status = head.status;
                let informational = (100..200).contains(&status);
                if status == 101 || (informational && end_stream) {
                    return self.stream_error(key, Reason::PROTOCOL_ERROR);
                }
                if informational {
                    self.events.push(H2Event::Interim { stream: key, head });
                    return Ok(());
                }
                let bodiless = status == 204 || status == 304;
                if end_stream && !bodiless && !s.head_request && decoded.content_length.is_some_and(|n| n > 0) {
                    return self.stream_error_closing(key, Reason::PROTOCOL_ERROR, closes);
                }
                s.content_length = decoded.content_length;
                s.recv = Recv::Body;
                self.events.push(H2Event::Response { stream: key, head, end_stream });
                if end_stream {
                    s.recv = Recv::Ended;
                    s.recv_end = true;
                    self.forget_if_done(key);
                }
                Ok(())
            }
            Message::Trailers(trailers) => {
                if !end_stream {
                    return self.stream_error(key, Reason::PROTOCOL_ERROR);
                }
                if s.content_length.is_some_and(|n| !s.head_request && s.received != n) {
                    return self.stream_error(key, Reason::PROTOCOL_ERROR);
                }
                self.end_of_message(key, Some(trailers));
                Ok(())
            }
            Message::Request(_) => Ok(()),
        }
    }

    /// The peer's message on `key` ended: handed out now, or after what is held.
    fn end_of_message(&mut self, key: StreamKey, trailers: Option<Headers>) {
        let Some(s) = self.streams.get_mut(&key) else { return };
        s.recv = Recv::Ended;
        if s.held.is_empty() && s.reading {
            s.recv_end = true;
            self.events.push(H2Event::End { stream: key, trailers });
            self.forget_if_done(key);
        } else {
            s.held_end = Some(trailers);
        }
    }

    /// A DATA or HEADERS frame for a stream that is over: dropped if we reset it lately,
    /// else the stream error section 5.1 asks for.
    fn closed_stream_frame(&mut self, id: u32) -> Result<(), (Reason, ConnectionError)> {
        if self.recently_reset.contains(&id) {
            return Ok(());
        }
        frame::put_rst(&mut self.output, id, Reason::STREAM_CLOSED);
        self.remember_reset(id);
        Ok(())
    }
}
