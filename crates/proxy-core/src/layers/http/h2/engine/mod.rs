//! The HTTP/2 engine: one connection, either side, as a synchronous state machine of our own.
//!
//! Bytes from the peer go in with [`Engine::receive`]; [`Engine::poll`] reads every whole
//! frame they hold and returns what they meant as [`H2Event`]s; what we send goes in with
//! `open`/`respond`/`send_data`/`finish`/`reset`, and the frames for the peer come out of
//! [`Engine::take_output`]. No clock, no waker, no lock: the engine does exactly what its
//! caller's calls and the peer's bytes ask, and nothing between them.
//!
//! Flow control is the backpressure. Received body bytes are handed out only for streams the
//! caller marked [`reading`](Engine::set_reading), and window is given back to the peer only
//! for bytes handed out; so a stream whose destination is slow stops the peer after one
//! window. Outgoing body bytes wait in a per-stream queue and go out only as far as the
//! peer's window allows; [`Engine::backlog`] tells the caller how much waits.
//!
//! An idle connection keeps no buffer: input is taken as it comes and let go once read,
//! output is handed over whole, and a stream's state goes with its end. What stays is the
//! HPACK tables (at most 4 KiB each way, the protocol's default) and the settings.
//!
//! `frame.rs` is the wire format, `hpack/` the header compression, `head.rs` header blocks as
//! `http` heads, `settings.rs` both sides' settings, `stream.rs` one stream; this file is
//! the connection: its frames read in order, its streams, and what goes out.

mod error;
mod frame;
mod head;
mod hpack;
mod settings;
mod stream;

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::small_map::SmallMap;
use crate::headers::Headers;

pub use error::{ConnectionError, Reason};
pub use head::{RequestHead, ResponseHead};
pub(crate) use head::{is_connection_specific, lowercase_name, usual_method, value_ok};
pub use settings::Settings;

use frame::{Head, DEFAULT_MAX_FRAME, HEADER_LEN, MAX_WINDOW, PREFACE};
use head::{Builder, Decoded, HeadError, Kind, Message};
use settings::PeerSettings;
use stream::{Recv, Stream};

/// A stream, as the caller names it: the stream id for streams the peer opened, the caller's
/// own key for those it opened.
pub type StreamKey = u64;

/// What the peer did, in HTTP terms.
#[derive(Debug)]
pub enum H2Event {
    /// A request head (the engine is a server).
    Request {
        /// The stream the peer opened.
        stream: StreamKey,
        /// Pseudo-headers and fields.
        head: RequestHead,
        /// No body follows.
        end_stream: bool,
    },
    /// An informational (1xx) response head (the engine is a client).
    Interim {
        /// The caller's stream.
        stream: StreamKey,
        /// Status and fields.
        head: ResponseHead,
    },
    /// A final response head (the engine is a client).
    Response {
        /// The caller's stream.
        stream: StreamKey,
        /// Status and fields.
        head: ResponseHead,
        /// No body follows.
        end_stream: bool,
    },
    /// The next bytes of a message's body.
    Data {
        /// The stream they arrived on.
        stream: StreamKey,
        /// The bytes. Handing them out is what reopens the peer's window for them: a stream
        /// not reading ([`Engine::set_reading`]) keeps them, and its window, back.
        data: Bytes,
    },
    /// The message on `stream` is complete.
    End {
        /// The stream.
        stream: StreamKey,
        /// Its trailer fields, if it ended with a header block.
        trailers: Option<Headers>,
    },
    /// The stream ended abnormally: reset by the peer (`remote`) or by us for a protocol
    /// error, or lost with the connection. Nothing more comes for it. `unprocessed`: the
    /// peer cannot have acted on it (it refused it with REFUSED_STREAM, it was above the
    /// last stream of the peer's GOAWAY, or it never left), so a request may be sent again
    /// (RFC 9113 section 8.7).
    Reset {
        /// The stream.
        stream: StreamKey,
        /// The error code it was reset with.
        reason: Reason,
        /// The peer reset it (rather than us, or the connection's end).
        remote: bool,
        /// The peer cannot have acted on it: safe to send again.
        unprocessed: bool,
    },
    /// The connection is over (the peer's GOAWAY, our protocol error, or its end); `error`
    /// says why when it was not a clean close.
    Closed {
        /// Why, unless it was a clean close.
        error: Option<ConnectionError>,
    },
}

impl H2Event {
    /// The stream the event is about (`None`: the whole connection).
    pub fn stream(&self) -> Option<StreamKey> {
        match self {
            Self::Request { stream, .. }
            | Self::Interim { stream, .. }
            | Self::Response { stream, .. }
            | Self::Data { stream, .. }
            | Self::End { stream, .. }
            | Self::Reset { stream, .. } => Some(*stream),
            Self::Closed { .. } => None,
        }
    }
}

/// Streams a client assumes a server allows until the server's SETTINGS say otherwise:
/// RFC 9113 section 6.5.2 recommends that servers allow no fewer.
const ASSUMED_MAX_STREAMS: usize = 100;

/// Stream ids we reset lately, whose late frames are dropped without a word (section 5.4.2).
const REMEMBERED_RESETS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// Where the connection as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Server role: this much of the client's preface is still to come.
    Preface(usize),
    /// Frames flow; the peer's first must be SETTINGS.
    Open,
    /// Over: nothing more is read, and the `Closed` event has been given.
    Done,
}

/// A response head block as the server sent it, what it entered in the HPACK table and what
/// it came to. Servers that index nothing they send send the same bytes response after
/// response: nginx sends each response's fields as new literals, to be Huffman-decoded,
/// entered in the table and checked again, the most of what an HTTP/2 response head cost us.
/// A block that refers to no entry of the dynamic table decodes the same whatever the table
/// holds (`hpack::Decoder::decode_standalone`), so its repeat is taken as it was the last
/// time: its entries go into the table, and what it came to is handed out again.
struct Repeat {
    block: Vec<u8>,
    entries: hpack::Entries,
    decoded: Decoded,
}

/// The largest response head block kept as a [`Repeat`]: a usual head, not a large one held
/// for the connection's life.
const REPEAT_MAX: usize = 1024;

/// A header block under way: a HEADERS frame without END_HEADERS, and the CONTINUATION
/// frames that follow it.
struct Partial {
    stream: u32,
    end_stream: bool,
    block: BytesMut,
}

/// An HTTP/2 connection, either side. See the module docs.
pub struct Engine {
    role: Role,
    settings: Settings,
    state: State,
    /// Received bytes not read yet: frames, perhaps the start of one.
    input: BytesMut,
    /// Received after `input` ended inside a frame: taken on as the frame needs them.
    later: VecDeque<Bytes>,
    output: BytesMut,
    peer: PeerSettings,
    decoder: hpack::Decoder,
    /// The last response head block the server sent, if it stood on its own: see [`Repeat`].
    repeat: Option<Box<Repeat>>,
    encoder: hpack::Encoder,
    /// How much more we may send on the connection.
    send_window: i64,
    /// How much more the peer may send on the connection.
    recv_window: i64,
    /// Bytes taken from the connection window that are still to be given back.
    recv_released: i64,
    /// Boxed: a stream is a few hundred bytes, and the map keeps two inline.
    streams: SmallMap<StreamKey, Box<Stream>>,
    /// Client role: the key of each stream id we opened.
    keys: SmallMap<u32, StreamKey>,
    /// Requests waiting for the server to allow another stream (client role).
    opening: VecDeque<(StreamKey, RequestHead, bool)>,
    /// Streams opened so far (client role).
    opened: usize,
    next_id: u32,
    /// The highest stream id the peer opened.
    last_peer_id: u32,
    partial: Option<Partial>,
    /// Our GOAWAY went out, naming this last stream.
    goaway_sent: Option<u32>,
    /// The peer's GOAWAY came: no new streams either way.
    goaway_received: Option<Reason>,
    /// The transport under the connection ended.
    eof: bool,
    /// The peer acknowledged our SETTINGS.
    acked: bool,
    recently_reset: VecDeque<u32>,
    /// Streams reset for the peer's errors, against `max_local_error_reset_streams`.
    local_error_resets: usize,
    /// Streams the peer opened and reset in one batch of frames, against
    /// `max_pending_accept_reset_streams`.
    batch_resets: usize,
    /// The highest stream id the peer had opened when the batch being read began: streams
    /// above it are the batch's own, and a reset in the same batch takes them back before
    /// the caller saw them.
    batch_start: u32,
    events: Vec<H2Event>,
    /// The last poll found nothing to do, and nothing was asked of the engine since: another
    /// would find nothing either. Every call that gives the engine something to do clears it.
    still: bool,
}

impl Engine {
    /// The server side of a connection whose client has sent, or will send, the preface.
    pub fn server(settings: &Settings) -> Self {
        let mut engine = Self::with(Role::Server, settings);
        engine.send_settings();
        engine
    }

    /// The client side of a connection: we send the preface first.
    pub fn client(settings: &Settings) -> Self {
        let mut engine = Self::with(Role::Client, settings);
        engine.output.extend_from_slice(PREFACE);
        engine.send_settings();
        engine
    }

    fn with(role: Role, settings: &Settings) -> Self {
        Self {
            role,
            settings: settings.clone(),
            state: if role == Role::Server { State::Preface(PREFACE.len()) } else { State::Open },
            input: BytesMut::new(),
            later: VecDeque::new(),
            output: BytesMut::new(),
            peer: PeerSettings::default(),
            decoder: hpack::Decoder::new(4096),
            repeat: None,
            encoder: hpack::Encoder::new(),
            send_window: frame::DEFAULT_WINDOW,
            recv_window: frame::DEFAULT_WINDOW,
            recv_released: 0,
            streams: SmallMap::new(),
            keys: SmallMap::new(),
            opening: VecDeque::new(),
            opened: 0,
            next_id: 1,
            last_peer_id: 0,
            partial: None,
            goaway_sent: None,
            goaway_received: None,
            eof: false,
            acked: false,
            recently_reset: VecDeque::new(),
            local_error_resets: 0,
            batch_resets: 0,
            batch_start: 0,
            events: Vec::new(),
            still: false,
        }
    }

    /// Our SETTINGS, and the connection window beyond the protocol's default.
    fn send_settings(&mut self) {
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

    /// Bytes from the peer.
    pub fn receive(&mut self, data: Bytes) {
        if self.state == State::Done || data.is_empty() {
            return;
        }
        self.still = false;
        if self.input.is_empty() && self.later.is_empty() {
            self.input = owned(data);
        } else {
            // Behind the start of a frame: only the rest of that frame is copied to it, when
            // the frames are read (a TLS record seldom ends where a frame does).
            self.later.push_back(data);
        }
    }

    /// The peer will send nothing more.
    pub fn receive_eof(&mut self) {
        self.eof = true;
        self.still = false;
    }

    /// Bytes for the peer.
    pub fn take_output(&mut self) -> Bytes {
        std::mem::take(&mut self.output).freeze()
    }

    /// Whether `head` is the response head the engine keeps for its repeats ([`Repeat`]):
    /// its fields are shared with it, so a later head that shares them too is the same.
    pub fn keeps(&self, head: &ResponseHead) -> bool {
        match self.repeat.as_deref().map(|r| &r.decoded.message) {
            Some(Message::Response(kept)) => kept.is_clone_of(head),
            _ => false,
        }
    }

    /// Whether the connection is over: nothing more will be read or written.
    pub fn is_closed(&self) -> bool {
        self.state == State::Done
    }

    /// Streams in progress, or waiting to open.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// How many streams this connection may have open at once (client role): the server's
    /// limit once its SETTINGS are in; none once it takes no more.
    pub fn max_streams(&self) -> usize {
        if self.role == Role::Server || self.refusing() {
            return 0;
        }
        match (self.peer.received, self.peer.max_concurrent_streams) {
            (true, Some(max)) => max as usize,
            (true, None) => usize::MAX,
            (false, _) => ASSUMED_MAX_STREAMS,
        }
    }

    /// Whether another request may be opened on this connection without waiting.
    pub fn has_room(&self) -> bool {
        self.role == Role::Client && !self.refusing() && self.active_streams() < self.max_streams()
    }

    /// No new streams go on this connection.
    fn refusing(&self) -> bool {
        self.state == State::Done || self.goaway_received.is_some() || self.goaway_sent.is_some() || self.next_id > 0x7fff_ffff
    }

    /// Whether the server lets us open WebSockets as streams (RFC 8441's
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`); `None` until its SETTINGS are in (client role).
    pub fn extended_connect(&self) -> Option<bool> {
        match self.role {
            Role::Client if self.peer.received => Some(self.peer.connect_protocol),
            Role::Client => None,
            Role::Server => Some(false),
        }
    }

    /// Whether the settings are exchanged: the peer's first SETTINGS are in and it has
    /// acknowledged ours. Until then the peer has something more to send of its own accord.
    pub fn is_settled(&self) -> bool {
        self.peer.received && self.acked
    }

    /// Let `stream`'s body bytes be handed out (or not) by [`poll`](Self::poll).
    pub fn set_reading(&mut self, stream: StreamKey, reading: bool) {
        if let Some(s) = self.streams.get_mut(&stream).filter(|s| s.reading != reading) {
            s.reading = reading;
            self.still = false;
        }
    }

    /// Bytes of `stream`'s body that wait for the peer's window.
    pub fn backlog(&self, stream: StreamKey) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.pending_len)
    }

    /// Open a stream with `request` (client role). It waits if the server allows no more
    /// streams just now.
    pub fn open(&mut self, stream: StreamKey, request: RequestHead, end_stream: bool) {
        let recv_window = i64::from(self.settings.stream_window);
        let mut s = Stream::new(0, Recv::Head, recv_window, 0);
        s.sent_end = end_stream;
        s.head_request = request.method == "HEAD";
        let open = self.streams.len() - self.opening.len();
        self.streams.insert(stream, Box::new(s));
        self.still = false;
        // At once if nothing waits before it and nothing read is still to be looked at (a
        // GOAWAY, SETTINGS with a lower limit): as the next poll would.
        if self.opening.is_empty() && self.input.is_empty() && self.later.is_empty() && !self.refusing() && self.room_for_another(open) {
            self.start(stream, &request, end_stream);
        } else {
            self.opening.push_back((stream, request, end_stream));
        }
    }

    /// Send an informational response on `stream` (server role).
    pub fn interim(&mut self, stream: StreamKey, response: ResponseHead) {
        let Some(s) = self.streams.get(&stream) else { return };
        if s.head_sent {
            return;
        }
        let id = s.id;
        let status = head::status_digits(response.status);
        self.send_head(id, head::response_fields(&response, &status), false);
        self.still = false;
    }

    /// Send the response head on `stream` (server role).
    pub fn respond(&mut self, stream: StreamKey, response: ResponseHead, end_stream: bool) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if s.head_sent {
            return;
        }
        s.head_sent = true;
        s.sent_end = end_stream;
        let id = s.id;
        let status = head::status_digits(response.status);
        self.send_head(id, head::response_fields(&response, &status), end_stream);
        self.forget_if_done(stream);
        self.still = false;
    }

    /// Queue body bytes for `stream`.
    pub fn send_data(&mut self, stream: StreamKey, data: Bytes) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.queue(data);
            self.still = false;
        }
    }

    /// End our message on `stream` after the queued body, with `trailers`.
    pub fn finish(&mut self, stream: StreamKey, trailers: Option<Headers>) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if !s.sent_end && s.finish.is_none() {
            s.finish = Some(trailers);
            self.still = false;
        }
    }

    /// Abandon `stream`, telling the peer `reason`.
    pub fn reset(&mut self, stream: StreamKey, reason: Reason) {
        self.still = false;
        self.opening.retain(|(key, ..)| *key != stream);
        let Some(s) = self.streams.remove(&stream) else { return };
        if s.id != 0 {
            frame::put_rst(&mut self.output, s.id, reason);
            self.remember_reset(s.id);
            self.keys.remove(&s.id);
        }
        self.give_back_held(&s);
    }

    /// Reset `stream` with `reason` once our message on it has gone out whole: the way a
    /// server that has answered tells the client to stop sending its request (RFC 9113
    /// section 8.1, with `NO_ERROR`). A reset at once would drop the answer still queued.
    pub fn reset_when_sent(&mut self, stream: StreamKey, reason: Reason) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.reset_when_sent = Some(reason);
            self.still = false;
        }
    }

    /// Close the connection: at once with `reason` (our GOAWAY), or gracefully, letting the
    /// streams in progress finish (server role).
    pub fn shutdown(&mut self, reason: Option<Reason>) {
        if self.state == State::Done {
            return;
        }
        self.still = false;
        match (self.role, reason) {
            (Role::Server, None) => {
                if self.goaway_sent.is_none() {
                    frame::put_goaway(&mut self.output, self.last_peer_id, Reason::NO_ERROR);
                    self.goaway_sent = Some(self.last_peer_id);
                }
            }
            (Role::Server, Some(reason)) => {
                frame::put_goaway(&mut self.output, self.last_peer_id, reason);
                self.goaway_sent = Some(self.last_peer_id);
                let error = (reason != Reason::NO_ERROR).then_some(ConnectionError::GoAwaySent(reason));
                self.close(reason, error);
            }
            (Role::Client, Some(reason)) => {
                // Nothing of ours is in progress that the caller still wants.
                frame::put_goaway(&mut self.output, 0, reason);
                self.state = State::Done;
                self.streams.clear();
                self.opening.clear();
                self.keys.clear();
            }
            (Role::Client, None) => {}
        }
    }

    /// Read what the peer sent, send what the windows allow, and return what happened.
    pub fn poll(&mut self) -> Vec<H2Event> {
        if self.still {
            return Vec::new();
        }
        let before = (self.output.len(), self.streams.len(), self.opening.len());
        if self.state != State::Done {
            self.batch_resets = 0;
            self.batch_start = self.last_peer_id;
            if let Err((reason, error)) = self.read_frames() {
                self.connection_error(reason, error);
            }
        }
        if self.state != State::Done {
            self.hand_out_held();
            self.open_waiting();
            self.flush_bodies();
            self.reset_sent();
            self.give_windows_back();
            self.end_if_over();
        }
        if self.streams.is_empty() {
            // An emptied queue keeps its room (four requests' heads, 1 KB): an idle
            // connection does not.
            self.opening = VecDeque::new();
        }
        // Nothing came of it: no event, no frame, no stream gone or opened (which could have
        // made room for one waiting).
        self.still = self.events.is_empty() && before == (self.output.len(), self.streams.len(), self.opening.len());
        std::mem::take(&mut self.events)
    }

    /// Poll the engine that `codec` holds until it is still, handing each event to `handle`.
    /// What `handle` does about an event (an answer of the codec's own, a reset) only goes
    /// out with the next poll, which may bring events of its own; so a codec polls this way,
    /// not with one call of [`poll`](Self::poll).
    pub fn poll_until_still<C>(codec: &mut C, engine: fn(&mut C) -> &mut Engine, mut handle: impl FnMut(&mut C, H2Event)) {
        loop {
            let events = engine(codec).poll();
            if events.is_empty() {
                break;
            }
            for event in events {
                handle(codec, event);
            }
        }
    }

    // Reading.

    /// Every whole frame in the input, in order. A connection error stops the reading.
    fn read_frames(&mut self) -> Result<(), (Reason, ConnectionError)> {
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

    // Stream and connection errors.

    /// Reset `key` for the peer's error, telling the caller if it knew of the stream.
    fn stream_error(&mut self, key: StreamKey, reason: Reason) -> Result<(), (Reason, ConnectionError)> {
        self.stream_error_closing(key, reason, false)
    }

    /// [`stream_error`](Self::stream_error); `closed`: the frame at fault closed the stream,
    /// so no RST_STREAM goes out.
    fn stream_error_closing(&mut self, key: StreamKey, reason: Reason, closed: bool) -> Result<(), (Reason, ConnectionError)> {
        let Some(s) = self.streams.remove(&key) else { return Ok(()) };
        self.keys.remove(&s.id);
        if !closed {
            frame::put_rst(&mut self.output, s.id, reason);
            self.remember_reset(s.id);
        }
        self.give_back_held(&s);
        self.events.push(H2Event::Reset { stream: key, reason, remote: false, unprocessed: false });
        self.count_local_error()
    }

    /// Reset stream `id`, which the caller never heard of, for the peer's error.
    fn stream_error_by_id(&mut self, id: u32, reason: Reason) -> Result<(), (Reason, ConnectionError)> {
        if let Some(key) = self.key_of(id).filter(|k| self.streams.contains_key(k)) {
            return self.stream_error(key, reason);
        }
        frame::put_rst(&mut self.output, id, reason);
        self.remember_reset(id);
        self.count_local_error()
    }

    fn count_local_error(&mut self) -> Result<(), (Reason, ConnectionError)> {
        self.local_error_resets += 1;
        if self.local_error_resets > self.settings.max_local_error_reset_streams {
            return Err(goaway(Reason::ENHANCE_YOUR_CALM));
        }
        Ok(())
    }

    /// The peer broke the protocol: our GOAWAY, and every stream lost with the connection.
    fn connection_error(&mut self, reason: Reason, error: ConnectionError) {
        frame::put_goaway(&mut self.output, self.last_peer_id, reason);
        self.goaway_sent = Some(self.last_peer_id);
        self.close(Reason::PROTOCOL_ERROR, Some(error));
    }

    /// The connection is over: every stream with it.
    fn close(&mut self, reason: Reason, error: Option<ConnectionError>) {
        self.state = State::Done;
        self.input = BytesMut::new();
        self.later = VecDeque::new();
        self.partial = None;
        let opening: Vec<StreamKey> = self.opening.drain(..).map(|(stream, ..)| stream).collect();
        for (stream, _) in std::mem::take(&mut self.streams) {
            let unprocessed = opening.contains(&stream);
            self.events.push(H2Event::Reset { stream, reason, remote: false, unprocessed });
        }
        self.keys.clear();
        self.events.push(H2Event::Closed { error });
    }

    /// Close once the connection can carry nothing more: the transport ended, or a GOAWAY
    /// (either way) and no stream left.
    fn end_if_over(&mut self) {
        if self.eof {
            let error = if self.streams.is_empty() && (self.peer.received || self.role == Role::Server) {
                None
            } else {
                Some(ConnectionError::Ended)
            };
            return self.close(Reason::CANCEL, error);
        }
        if self.streams.is_empty() && self.opening.is_empty() {
            if let Some(reason) = self.goaway_received {
                let error = (reason != Reason::NO_ERROR).then_some(ConnectionError::PeerGoAway(reason));
                self.close(Reason::CANCEL, error);
            } else if self.goaway_sent.is_some() {
                self.close(Reason::CANCEL, None);
            }
        }
    }

    // Sending.

    /// Encode a header block and send it as HEADERS (and CONTINUATION) frames.
    fn send_head<'a>(&mut self, id: u32, fields: impl Iterator<Item = head::Field<'a>>, end_stream: bool) {
        let encoder = &mut self.encoder;
        frame::put_header_block_with(&mut self.output, id, end_stream, self.peer.max_frame_size, |out| encoder.encode(fields, out));
    }

    /// Open the requests that wait, as far as the server's stream limit allows; until its
    /// SETTINGS are in, one (a server about to announce a lower limit would refuse the rest).
    fn open_waiting(&mut self) {
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
    fn room_for_another(&self, open: usize) -> bool {
        match self.peer.received {
            true => open < self.peer.max_concurrent_streams.map_or(usize::MAX, |m| m as usize),
            false => open == 0 && self.opened == 0,
        }
    }

    /// Send `request`'s head on a new stream id for `key`.
    fn start(&mut self, key: StreamKey, request: &RequestHead, end_stream: bool) {
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
    fn flush_bodies(&mut self) {
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
    fn reset_sent(&mut self) {
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
    fn hand_out_held(&mut self) {
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
    fn give_windows_back(&mut self) {
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

    // Bookkeeping.

    /// The caller's key for stream `id`.
    fn key_of(&self, id: u32) -> Option<StreamKey> {
        match self.role {
            Role::Server => Some(StreamKey::from(id)).filter(|k| self.streams.contains_key(k)),
            Role::Client => self.keys.get(&id).copied(),
        }
    }

    /// Whether stream `id` was never opened (section 5.1's "idle").
    fn is_idle(&self, id: u32) -> bool {
        let ours = (id % 2 == 1) == (self.role == Role::Client);
        if ours {
            id >= self.next_id
        } else {
            id > self.last_peer_id
        }
    }

    fn remember_reset(&mut self, id: u32) {
        if self.recently_reset.len() == REMEMBERED_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// What a stream going away held, given back to the connection window.
    fn give_back_held(&mut self, s: &Stream) {
        let held: usize = s.held.iter().map(Bytes::len).sum();
        self.recv_released += held as i64;
    }

    fn forget_if_done(&mut self, key: StreamKey) {
        if self.streams.get(&key).is_some_and(|s| s.is_done()) {
            if let Some(s) = self.streams.remove(&key) {
                self.keys.remove(&s.id);
            }
        }
    }
}

/// A connection error of ours: the GOAWAY's reason, and how the connection ended.
/// `data` to read frames from in place: taken as it is when nobody else holds it.
fn owned(data: Bytes) -> BytesMut {
    data.try_into_mut().unwrap_or_else(|data| BytesMut::from(&data[..]))
}

fn goaway(reason: Reason) -> (Reason, ConnectionError) {
    (reason, ConnectionError::GoAwaySent(reason))
}

#[cfg(test)]
mod tests;
