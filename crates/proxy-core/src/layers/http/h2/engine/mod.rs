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
//! HPACK tables (at most 4 KiB each way, the protocol's default), the settings, and the last
//! response head each way if its block is at most 1 KiB ([`Repeat`], [`SentRepeat`]).
//!
//! `frame.rs` is the wire format, `hpack/` the header compression, `head.rs` header blocks as
//! `http` heads, `settings.rs` both sides' settings, `stream.rs` one stream. The connection
//! is this file (its state, its streams and its API) and three more: `read.rs` its
//! frames read in order and what each means, `send.rs` what goes out (heads, bodies within
//! the peer's window, windows given back), `close.rs` stream and connection errors and the
//! connection's end.

mod close;
mod error;
mod frame;
mod head;
mod hpack;
mod read;
mod send;
mod settings;
mod stream;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::small_map::SmallMap;
use crate::headers::Headers;

pub use error::{ConnectionError, Reason};
pub use head::{RequestHead, ResponseHead};
pub(crate) use head::{is_connection_specific, lowercase_name, usual_method, value_ok};
pub use settings::Settings;

use frame::PREFACE;
use head::{Decoded, Message};
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

/// The last response head the server side sent, and once it was sent again, the block it
/// was encoded to. Encoding is a function of the fields and the encoder's table: fields sent
/// again (the same ones, shared: a server's repeated head as a [`Repeat`] hands it out, on its
/// way through the proxy unchanged) while the table is as it was after the last encoding
/// encode to the same bytes, so they go out as those bytes. A head is kept once it comes
/// twice, and only a block whose encoding left the table as it was (the first sending of a
/// head adds its fields to the table; the second finds them there): a connection whose
/// heads never repeat copies no block. A head whose block is larger than [`REPEAT_MAX`] is not
/// kept at all.
struct SentRepeat {
    status: u16,
    fields: Headers,
    /// The block, with the encoder's [`generation`](hpack::Encoder::generation) it is good for.
    block: Option<(u64, Bytes)>,
}

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
    /// The last response head sent as the server: see [`SentRepeat`].
    sent: Option<Box<SentRepeat>>,
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
            sent: None,
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
        self.send_response_head(id, &response, end_stream);
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

    fn forget_if_done(&mut self, key: StreamKey) {
        if self.streams.get(&key).is_some_and(|s| s.is_done()) {
            if let Some(s) = self.streams.remove(&key) {
                self.keys.remove(&s.id);
            }
        }
    }
}

/// `data` to read frames from in place: taken as it is when nobody else holds it.
fn owned(data: Bytes) -> BytesMut {
    data.try_into_mut().unwrap_or_else(|data| BytesMut::from(&data[..]))
}

/// A connection error of ours: the GOAWAY's reason, and how the connection ended.
fn goaway(reason: Reason) -> (Reason, ConnectionError) {
    (reason, ConnectionError::GoAwaySent(reason))
}

#[cfg(test)]
mod tests;
