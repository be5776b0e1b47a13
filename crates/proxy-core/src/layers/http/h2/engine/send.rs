//! Sending: our SETTINGS, header blocks, bodies as far as the peer's windows allow; and what
//! the peer sent, handed out, with the windows given back for it.

use bytes::Bytes;

use super::frame::{self, HEADER_LEN};
use super::head;
use super::stream::{Recv, Stream};
use super::{Engine, H2Event, Reason, RequestHead, ResponseHead, Role, SentRepeat, StreamKey, REPEAT_MAX};

impl Engine {
    /// Our SETTINGS, and the connection window beyond the protocol's default.
    pub(super) fn send_settings(&mut self) {
        let s = &self.settings;
        let mut list = Vec::with_capacity(5);
        match self.role {
            Role::Client => list.push((frame::SETTINGS_ENABLE_PUSH, 0)),
            Role::Server => list.push((frame::SETTINGS_MAX_CONCURRENT_STREAMS, s.max_concurrent_streams)),
        }
        if i64::from(s.stream_window) != frame::DEFAULT_WINDOW {
            list.push((frame::SETTINGS_INITIAL_WINDOW_SIZE, s.stream_window));
        }
        list.push((frame::SETTINGS_MAX_HEADER_LIST_SIZE, s.max_header_list_size));
        if self.role == Role::Server && s.connect_protocol {
            list.push((frame::SETTINGS_ENABLE_CONNECT_PROTOCOL, 1));
        }
        frame::put_settings(&mut self.output, &list);
        let extra = i64::from(s.connection_window) - frame::DEFAULT_WINDOW;
        if extra > 0 {
            frame::put_window_update(&mut self.output, 0, extra as u32);
            self.recv_window += extra;
        }
    }

    /// Encode a header block and send it as HEADERS (and CONTINUATION) frames.
    pub(super) fn send_head<'a>(&mut self, id: u32, fields: impl Iterator<Item = head::Field<'a>>, end_stream: bool) {
        let encoder = &mut self.encoder;
        frame::put_header_block_with(&mut self.output, id, end_stream, self.peer.max_frame_size, |out| encoder.encode(fields, out));
    }

    /// Send a final response head: as the block it came to last time, if it is the same
    /// head and the table has not changed since ([`SentRepeat`]), else encoded.
    pub(super) fn send_response_head(&mut self, id: u32, response: &ResponseHead, end_stream: bool) {
        let same = |sent: &SentRepeat| sent.status == response.status && sent.fields.shares(&response.fields);
        let generation = self.encoder.generation();
        if let Some(block) = self.sent.as_deref().filter(|s| same(s)).and_then(|s| s.block.as_ref()) {
            if block.0 == generation {
                let block = block.1.clone();
                frame::put_header_block(&mut self.output, id, &block, end_stream, self.peer.max_frame_size);
                return;
            }
        }
        let start = self.output.len();
        let status = head::status_digits(response.status);
        self.send_head(id, head::response_fields(response, &status), end_stream);
        let block = &self.output[start + HEADER_LEN..];
        // Only a usual head is kept, as for a `Repeat`: a large one would stay with an idle
        // connection. At most `REPEAT_MAX` bytes, its block went in one HEADERS frame (a frame
        // takes 16 KiB at least).
        if block.len() > REPEAT_MAX {
            self.sent = None;
            return;
        }
        match self.sent.as_deref_mut() {
            // Sent again, and its encoding left the table alone: the next time, these bytes.
            Some(sent) if same(sent) => {
                if self.encoder.generation() == generation {
                    sent.block = Some((generation, Bytes::copy_from_slice(block)));
                }
            }
            // Another head: kept in the place of the last.
            Some(sent) => *sent = SentRepeat { status: response.status, fields: response.fields.clone(), block: None },
            None => self.sent = Some(Box::new(SentRepeat { status: response.status, fields: response.fields.clone(), block: None })),
        }
    }

    /// Open the requests that wait, as far as the server's stream limit allows; until its
    /// SETTINGS are in, one (a server about to announce a lower limit would refuse the rest).
    pub(super) fn open_waiting(&mut self) {
        while let Some((key, ..)) = self.opening.front() {
            let key = *key;
            if self.refusing() {
                let reason = self.goaway_received.unwrap_or(Reason::REFUSED_STREAM);
                for (stream, ..) in std::mem::take(&mut self.opening) {
                    self.streams.remove(&stream);
                    self.events.push(H2Event::Reset { stream, reason, remote: true, unprocessed: true });
                }
                return;
            }
            if !self.room_for_another(self.streams.len() - self.opening.len()) {
                return;
            }
            let Some((_, request, end_stream)) = self.opening.pop_front() else { return };
            self.start(key, &request, end_stream);
        }
    }

    /// Whether the server lets us open a stream beside `open` ones: as far as its SETTINGS
    /// allow; until they are in, one (a server about to announce a lower limit would refuse
    /// the rest).
    pub(super) fn room_for_another(&self, open: usize) -> bool {
        match self.peer.received {
            true => open < self.peer.max_concurrent_streams.map_or(usize::MAX, |m| m as usize),
            false => open == 0 && self.opened == 0,
        }
    }

    /// Send `request`'s head on a new stream id for `key`.
    pub(super) fn start(&mut self, key: StreamKey, request: &RequestHead, end_stream: bool) {
        let id = self.next_id;
        self.next_id += 2;
        self.opened += 1;
        self.keys.insert(id, key);
        if let Some(s) = self.streams.get_mut(&key) {
            s.id = id;
            s.head_sent = true;
            s.send_window = self.peer.initial_window;
        }
        self.send_head(id, head::request_fields(request), end_stream);
    }

    /// Send as much of each queued body as the windows allow, a frame per stream in turn,
    /// and the ends of messages whose body is all out.
    pub(super) fn flush_bodies(&mut self) {
        let max_frame = self.peer.max_frame_size;
        // Room for every frame this pass can send, taken once: grown frame by frame, the
        // output was copied again on each doubling.
        let (mut bytes, mut frames) = (0i64, 0i64);
        for (_, s) in self.streams.iter().filter(|(_, s)| s.sending() && s.pending_len > 0) {
            let n = s.send_window.min(s.pending_len as i64).max(0);
            bytes += n;
            frames += (n + max_frame as i64 - 1) / max_frame as i64;
        }
        let bytes = bytes.min(self.send_window.max(0));
        self.output.reserve((bytes + frames * HEADER_LEN as i64) as usize);
        loop {
            let mut moved = false;
            for s in self.streams.values_mut() {
                if !s.sending() {
                    continue;
                }
                if !s.pending.is_empty() {
                    let room = s.send_window.min(self.send_window).min(max_frame as i64);
                    if room <= 0 {
                        continue;
                    }
                    // A frame of as many queued chunks as fit: a body that came in small
                    // frames (nginx's are 8 KiB) leaves in full ones.
                    let len = s.pending_len.min(room as usize);
                    let last = len == s.pending_len && matches!(s.finish, Some(None));
                    s.send_window -= len as i64;
                    self.send_window -= len as i64;
                    self.output.reserve(HEADER_LEN + len);
                    frame::put_data_head(&mut self.output, s.id, len, last);
                    s.move_pending(len, &mut self.output);
                    if last {
                        s.sent_end = true;
                        s.finish = None;
                    }
                    moved = true;
                    continue;
                }
                match s.finish.take() {
                    Some(Some(trailers)) => {
                        let encoder = &mut self.encoder;
                        frame::put_header_block_with(&mut self.output, s.id, true, max_frame, |out| encoder.encode(head::trailer_fields(&trailers), out));
                        s.sent_end = true;
                    }
                    Some(None) => {
                        frame::put_data_head(&mut self.output, s.id, 0, true);
                        s.sent_end = true;
                    }
                    None => {}
                }
            }
            if !moved {
                break;
            }
        }
        let done: Vec<StreamKey> = self.streams.iter().filter(|(_, s)| s.is_done()).map(|(k, _)| *k).collect();
        for key in done {
            self.forget_if_done(key);
        }
    }

    /// Reset the streams whose message is out, as [`reset_when_sent`](Self::reset_when_sent)
    /// asked.
    pub(super) fn reset_sent(&mut self) {
        let done: Vec<(StreamKey, Reason)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.sent_end && s.pending.is_empty())
            .filter_map(|(key, s)| Some((*key, s.reset_when_sent?)))
            .collect();
        for (stream, reason) in done {
            self.reset(stream, reason);
        }
    }

    /// Hand out what streams now reading hold.
    pub(super) fn hand_out_held(&mut self) {
        let keys: Vec<StreamKey> = self.streams.iter().filter(|(_, s)| s.reading && (!s.held.is_empty() || s.held_end.is_some())).map(|(k, _)| *k).collect();
        for key in keys {
            let Some(s) = self.streams.get_mut(&key) else { continue };
            while let Some(data) = s.held.pop_front() {
                let n = data.len() as i64;
                s.recv_released += n;
                self.recv_released += n;
                self.events.push(H2Event::Data { stream: key, data });
            }
            if let Some(trailers) = s.held_end.take() {
                s.recv_end = true;
                self.events.push(H2Event::End { stream: key, trailers });
                self.forget_if_done(key);
            }
        }
    }

    /// WINDOW_UPDATEs for what was handed out, once it is worth a frame: half a window.
    pub(super) fn give_windows_back(&mut self) {
        let stream_window = i64::from(self.settings.stream_window);
        for s in self.streams.values_mut() {
            if s.recv_released > 0 && s.recv != Recv::Ended && s.recv_released >= stream_window / 2 {
                frame::put_window_update(&mut self.output, s.id, s.recv_released as u32);
                s.recv_window += s.recv_released;
                s.recv_released = 0;
            }
        }
        if self.recv_released > 0 && self.recv_released >= i64::from(self.settings.connection_window) / 2 {
            frame::put_window_update(&mut self.output, 0, self.recv_released as u32);
            self.recv_window += self.recv_released;
            self.recv_released = 0;
        }
    }

    /// What a stream going away held, given back to the connection window.
    pub(super) fn give_back_held(&mut self, s: &Stream) {
        let held: usize = s.held.iter().map(Bytes::len).sum();
        self.recv_released += held as i64;
    }
}
