//! The HTTP/2 engine: the `h2` crate, driven over memory instead of a socket.
//!
//! h2 is written for async I/O, but its futures only ever wait on its transport. Give it a
//! transport that reads from a buffer we fill and writes into a buffer we empty, poll it with
//! a waker that does nothing, and it becomes a synchronous state machine: bytes in, events
//! out, and the bytes it wants to send waiting in the output buffer. Nothing is ever woken;
//! instead [`Engine::poll`] polls everything after every change until nothing moves.
//!
//! This is the narrow interface the rest of the core sees: [`Engine::receive`] and
//! [`Engine::poll`] for what the peer sent, [`H2Event`]s for what it meant, and
//! `respond`/`open`/`send_data`/`finish`/`reset` for what we send. Nothing of h2 but its
//! header and status types leaks past it, so another engine could take its place.
//!
//! Flow control is the backpressure. Received body bytes are handed out only for streams the
//! caller marked [`reading`](Engine::set_reading), and window is given back to the peer only
//! for bytes handed out; so a stream whose destination is slow stops the peer after one
//! window. Outgoing body bytes wait in a per-stream queue and go to h2 only as far as the
//! peer's window allows; [`Engine::backlog`] tells the caller how much waits.
//!
//! `transport.rs` is the pipe h2 reads and writes, `settings.rs` our settings and the
//! following of the server's first SETTINGS frame, `stream.rs` one stream's state and the
//! flow control of its bodies; this file is the engine: the connection and its stream table.

mod settings;
mod stream;
mod transport;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::Bytes;
use h2::{client, server, Reason};
use http::HeaderMap;

pub use settings::Settings;
use settings::{configure, PeerSettings};
use stream::{receive_body, Received, Stream};
use transport::{Frames, Io, PREFACE};

/// A stream, as the caller names it: the h2 stream id for streams the peer opened, the
/// caller's own key for those it opened.
pub type StreamKey = u64;

/// What the peer did, in HTTP terms.
#[derive(Debug)]
pub enum H2Event {
    /// A request head (the engine is a server).
    Request { stream: StreamKey, head: http::request::Parts, end_stream: bool },
    /// An informational (1xx) response head (the engine is a client).
    Interim { stream: StreamKey, head: http::response::Parts },
    /// A final response head (the engine is a client).
    Response { stream: StreamKey, head: http::response::Parts, end_stream: bool },
    Data { stream: StreamKey, data: Bytes },
    /// The message on `stream` is complete.
    End { stream: StreamKey, trailers: Option<HeaderMap> },
    /// The stream ended abnormally: reset by the peer (`remote`) or by h2 for a protocol
    /// error, or lost with the connection. Nothing more comes for it. `unprocessed`: the
    /// peer cannot have acted on it (it refused it with REFUSED_STREAM, it was above the
    /// last stream of the peer's GOAWAY, or it never left), so a request may be sent again
    /// (RFC 9113 section 8.7).
    Reset { stream: StreamKey, reason: Reason, remote: bool, unprocessed: bool },
    /// The connection is over (the peer's GOAWAY, our protocol error, or its end); `error`
    /// says why when it was not a clean close.
    Closed { error: Option<ConnectionError> },
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

/// Why an HTTP/2 connection ended other than cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("the peer sent GOAWAY ({0:?})")]
    PeerGoAway(Reason),
    /// The peer broke the protocol: h2 sent a GOAWAY with this reason.
    #[error("protocol error, GOAWAY sent ({0:?}: {0})")]
    GoAwaySent(Reason),
    /// The connection failed with this error code, no GOAWAY involved.
    #[error("{0:?}: {0}")]
    Failed(Reason),
    /// The transport under it ended.
    #[error("the connection ended")]
    Ended,
    /// Anything else h2 reports (a misuse of its API, which would be our bug), in its words.
    #[error("{0}")]
    Other(String),
}

impl From<&h2::Error> for ConnectionError {
    fn from(error: &h2::Error) -> Self {
        match error.reason() {
            Some(reason) if error.is_go_away() && error.is_remote() => Self::PeerGoAway(reason),
            Some(reason) if error.is_go_away() => Self::GoAwaySent(reason),
            Some(reason) => Self::Failed(reason),
            None if error.is_io() => Self::Ended,
            None => Self::Other(error.to_string()),
        }
    }
}

type ClientHandshake = Pin<Box<dyn Future<Output = Result<(client::SendRequest<Bytes>, client::Connection<Io, Bytes>), h2::Error>> + Send>>;

enum Conn {
    ServerHandshake(Pin<Box<server::Handshake<Io, Bytes>>>),
    Server(Box<server::Connection<Io, Bytes>>),
    ClientHandshake(ClientHandshake),
    Client { conn: Box<client::Connection<Io, Bytes>>, requests: client::SendRequest<Bytes> },
    Done,
}

/// Streams a client assumes a server allows until the server's SETTINGS say otherwise:
/// RFC 9113 section 6.5.2 recommends that servers allow no fewer.
const ASSUMED_MAX_STREAMS: usize = 100;

/// An HTTP/2 connection, either side, driven by hand. See the module docs.
pub struct Engine {
    io: Io,
    conn: Conn,
    streams: BTreeMap<StreamKey, Stream>,
    /// Requests waiting for the server to allow another stream (client role).
    opening: VecDeque<(StreamKey, http::Request<()>, bool)>,
    /// Streams opened so far (client role).
    opened: usize,
    /// How far the server's SETTINGS have come (client role).
    peer_settings: PeerSettings,
    /// The server will take no more streams (client role).
    refusing: bool,
    events: Vec<H2Event>,
}

impl Engine {
    /// The server side of a connection whose client has sent, or will send, the preface.
    pub fn server(settings: &Settings) -> Self {
        let io = Io::new(Frames::Preface { left: PREFACE });
        let mut builder = server::Builder::new();
        configure!(builder, settings);
        if settings.connect_protocol {
            builder.enable_connect_protocol();
        }
        let handshake = Box::pin(builder.handshake(io.clone()));
        Self::with(io, Conn::ServerHandshake(handshake))
    }

    /// The client side of a connection: we send the preface first.
    pub fn client(settings: &Settings) -> Self {
        let io = Io::new(Frames::START);
        let mut builder = client::Builder::new();
        configure!(builder.enable_push(false), settings);
        let handshake: ClientHandshake = Box::pin(builder.handshake(io.clone()));
        let mut engine = Self::with(io, Conn::ClientHandshake(handshake));
        engine.peer_settings = PeerSettings::awaited();
        engine.poll();
        engine
    }

    fn with(io: Io, conn: Conn) -> Self {
        Self {
            io,
            conn,
            streams: BTreeMap::new(),
            opening: VecDeque::new(),
            opened: 0,
            peer_settings: PeerSettings::Applied,
            refusing: false,
            events: Vec::new(),
        }
    }

    /// Bytes from the peer.
    pub fn receive(&mut self, data: Bytes) {
        self.peer_settings.follow(&data);
        let mut pipe = self.io.lock();
        if !pipe.input.is_empty() {
            pipe.input.extend_from_slice(&data);
            return;
        }
        // Nothing left over from before, the usual case: the bytes are taken as they are
        // when nobody else holds them (TLS's plaintext does not).
        match data.try_into_mut() {
            Ok(data) => pipe.input = data,
            Err(data) => pipe.input.extend_from_slice(&data),
        }
    }

    /// The peer will send nothing more.
    pub fn receive_eof(&mut self) {
        self.io.lock().eof = true;
    }

    /// Bytes for the peer.
    pub fn take_output(&mut self) -> Bytes {
        self.io.lock().output.split().freeze()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.conn, Conn::Done)
    }

    /// Streams in progress, or waiting to open.
    pub fn active_streams(&self) -> usize {
        self.streams.len() + self.opening.len()
    }

    /// How many streams this connection may have open at once (client role): the server's
    /// limit once its SETTINGS are in; none once it takes no more.
    pub fn max_streams(&self) -> usize {
        match &self.conn {
            _ if self.refusing || self.is_closed() => 0,
            Conn::Client { requests, .. } if self.peer_settings == PeerSettings::Applied => requests.current_max_send_streams(),
            Conn::Client { .. } | Conn::ClientHandshake(_) => ASSUMED_MAX_STREAMS,
            _ => 0,
        }
    }

    /// Whether another request may be opened on this connection without waiting.
    pub fn has_room(&self) -> bool {
        match &self.conn {
            _ if self.refusing => false,
            Conn::Client { requests, .. } if self.peer_settings == PeerSettings::Applied => {
                self.active_streams() < requests.current_max_send_streams()
            }
            Conn::Client { .. } | Conn::ClientHandshake(_) => self.active_streams() < ASSUMED_MAX_STREAMS,
            _ => false,
        }
    }

    /// Whether the server lets us open WebSockets as streams (RFC 8441's
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`); `None` until its SETTINGS are in (client role).
    pub fn extended_connect(&self) -> Option<bool> {
        match &self.conn {
            Conn::Client { requests, .. } if self.peer_settings == PeerSettings::Applied => {
                Some(requests.is_extended_connect_protocol_enabled())
            }
            Conn::Client { .. } | Conn::ClientHandshake(_) => None,
            _ => Some(false),
        }
    }

    /// Let `stream`'s body bytes be handed out (or not) by [`poll`](Self::poll).
    pub fn set_reading(&mut self, stream: StreamKey, reading: bool) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.reading = reading;
        }
    }

    /// Bytes of `stream`'s body that wait for the peer's window.
    pub fn backlog(&self, stream: StreamKey) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.pending_len)
    }

    /// Open a stream with `request` (client role). It waits if the server allows no more
    /// streams just now.
    pub fn open(&mut self, stream: StreamKey, request: http::Request<()>, end_stream: bool) {
        self.streams.insert(stream, Stream { reading: true, sent_end: end_stream, ..Stream::default() });
        self.opening.push_back((stream, request, end_stream));
    }

    /// Send an informational response on `stream` (server role).
    pub fn interim(&mut self, stream: StreamKey, response: http::Response<()>) {
        if let Some(respond) = self.streams.get_mut(&stream).and_then(|s| s.respond.as_mut()) {
            let _ = respond.send_informational(response);
        }
    }

    /// Send the response head on `stream` (server role).
    pub fn respond(&mut self, stream: StreamKey, response: http::Response<()>, end_stream: bool) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let Some(mut respond) = s.respond.take() else { return };
        match respond.send_response(response, end_stream) {
            Ok(send) => {
                s.send = Some(send);
                s.sent_end = end_stream;
            }
            Err(_) => {
                // The stream is gone already (reset by the peer); its reset was reported.
                s.sent_end = true;
            }
        }
        self.forget_if_done(stream);
    }

    /// Queue body bytes for `stream`.
    pub fn send_data(&mut self, stream: StreamKey, data: Bytes) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.queue(data);
        }
    }

    /// End our message on `stream` after the queued body, with `trailers`.
    pub fn finish(&mut self, stream: StreamKey, trailers: Option<HeaderMap>) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if !s.sent_end && s.finish.is_none() {
            s.finish = Some(trailers);
        }
    }

    /// Abandon `stream`, telling the peer `reason`.
    pub fn reset(&mut self, stream: StreamKey, reason: Reason) {
        self.opening.retain(|(key, ..)| *key != stream);
        let Some(mut s) = self.streams.remove(&stream) else { return };
        if let Some(send) = &mut s.send {
            send.send_reset(reason);
        } else if let Some(respond) = &mut s.respond {
            respond.send_reset(reason);
        } else if let Some(recv) = s.recv.take() {
            // Dropping our last handle on a stream whose head went out resets it.
            drop(recv);
        }
    }

    /// Reset `stream` with `reason` once our message on it has gone out whole: the way a
    /// server that has answered tells the client to stop sending its request (RFC 9113
    /// section 8.1, with `NO_ERROR`). A reset at once would drop the answer still queued.
    pub fn reset_when_sent(&mut self, stream: StreamKey, reason: Reason) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.reset_when_sent = Some(reason);
        }
    }

    /// Reset the streams whose message is out, as [`reset_when_sent`](Self::reset_when_sent)
    /// asked. True if there were any.
    fn reset_sent(&mut self) -> bool {
        let done: Vec<(StreamKey, Reason)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.sent_end && s.pending.is_empty())
            .filter_map(|(key, s)| Some((*key, s.reset_when_sent?)))
            .collect();
        for (stream, reason) in &done {
            self.reset(*stream, *reason);
        }
        !done.is_empty()
    }

    /// Close the connection: at once with `reason` (our GOAWAY), or gracefully, letting the
    /// streams in progress finish (server role).
    pub fn shutdown(&mut self, reason: Option<Reason>) {
        match &mut self.conn {
            Conn::Server(conn) => match reason {
                Some(reason) => conn.abrupt_shutdown(reason),
                None => conn.graceful_shutdown(),
            },
            Conn::Client { .. } | Conn::ClientHandshake(_) if reason.is_some() => {
                // h2 gives a client no GOAWAY of its own; dropping the connection ends it.
                self.conn = Conn::Done;
                self.streams.clear();
                self.opening.clear();
            }
            _ => {}
        }
    }

    /// Run the engine until it can make no more progress, and return what happened.
    pub fn poll(&mut self) -> Vec<H2Event> {
        let mut task = TaskContext::from_waker(Waker::noop());
        // Every round either moves bytes or changes a stream; a round that does neither ends
        // the loop. The bound is a backstop against a misbehaving engine, never reached.
        for _ in 0..1000 {
            let out_before = self.io.lock().output.len();
            let events_before = self.events.len();
            let mut moved = self.drive(&mut task);
            moved |= self.poll_streams(&mut task);
            moved |= self.flush_bodies();
            let out_after = self.io.lock().output.len();
            if !moved && out_after == out_before && self.events.len() == events_before {
                // Everything that could be written has been: the streams waiting for that
                // may be reset now, and the resets need another round to go out.
                if self.reset_sent() {
                    continue;
                }
                break;
            }
        }
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

    /// Poll the connection: read and write frames, accept or open streams. True if a stream
    /// came or went.
    fn drive(&mut self, task: &mut TaskContext<'_>) -> bool {
        let mut moved = false;
        loop {
            match &mut self.conn {
                Conn::ServerHandshake(handshake) => match handshake.as_mut().poll(task) {
                    Poll::Ready(Ok(conn)) => self.conn = Conn::Server(Box::new(conn)),
                    Poll::Ready(Err(e)) => self.close(Some(ConnectionError::from(&e))),
                    Poll::Pending => return moved,
                },
                Conn::ClientHandshake(handshake) => match handshake.as_mut().poll(task) {
                    Poll::Ready(Ok((requests, conn))) => self.conn = Conn::Client { conn: Box::new(conn), requests },
                    Poll::Ready(Err(e)) => self.close(Some(ConnectionError::from(&e))),
                    Poll::Pending => return moved,
                },
                Conn::Server(conn) => match conn.poll_accept(task) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        moved = true;
                        let stream = StreamKey::from(respond.stream_id().as_u32());
                        let (head, recv) = request.into_parts();
                        let end_stream = recv.is_end_stream();
                        self.events.push(H2Event::Request { stream, head, end_stream });
                        let entry = Stream {
                            respond: Some(respond),
                            recv: (!end_stream).then_some(recv),
                            reading: true,
                            recv_end: end_stream,
                            ..Stream::default()
                        };
                        self.streams.insert(stream, entry);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // A connection error: h2 has sent its GOAWAY.
                        self.close(Some(ConnectionError::from(&e)));
                    }
                    Poll::Ready(None) => self.close(None),
                    Poll::Pending => return moved,
                },
                Conn::Client { conn, requests } => {
                    // Open what waits, as far as the server's stream limit allows; until that
                    // limit is known, one stream (see `PeerSettings`).
                    while let Some((key, ..)) = self.opening.front() {
                        if self.opened > 0 && self.peer_settings != PeerSettings::Applied {
                            break;
                        }
                        let key = *key;
                        match requests.poll_ready(task) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) => {
                                // The server said GOAWAY (or the connection failed): nothing
                                // more opens here; what waits fails now, not at a timeout.
                                self.refusing = true;
                                let reason = e.reason().unwrap_or(Reason::REFUSED_STREAM);
                                for (stream, ..) in std::mem::take(&mut self.opening) {
                                    self.streams.remove(&stream);
                                    self.events.push(H2Event::Reset { stream, reason, remote: true, unprocessed: true });
                                }
                                moved = true;
                                break;
                            }
                            Poll::Pending => break,
                        }
                        let Some((_, request, end_stream)) = self.opening.pop_front() else { break };
                        moved = true;
                        self.opened += 1;
                        match requests.send_request(request, end_stream) {
                            Ok((response, send)) => {
                                if let Some(s) = self.streams.get_mut(&key) {
                                    s.response = Some(response);
                                    // Kept past our END_STREAM too: the one handle that
                                    // resets a stream with a reason of ours.
                                    s.send = Some(send);
                                }
                            }
                            Err(e) => {
                                self.streams.remove(&key);
                                let reason = e.reason().unwrap_or(Reason::REFUSED_STREAM);
                                self.events.push(H2Event::Reset { stream: key, reason, remote: false, unprocessed: true });
                            }
                        }
                    }
                    return match Pin::new(conn.as_mut()).poll(task) {
                        Poll::Ready(result) => {
                            let error = result.err().map(|e| ConnectionError::from(&e));
                            self.drain_streams(task);
                            self.close(error);
                            true
                        }
                        Poll::Pending if self.peer_settings == PeerSettings::Received && self.io.lock().input.is_empty() => {
                            // h2 has read the server's SETTINGS: the streams that waited may
                            // open, within its limit.
                            self.peer_settings = PeerSettings::Applied;
                            true
                        }
                        Poll::Pending => moved,
                    };
                }
                Conn::Done => return moved,
            }
        }
    }

    /// Hand out what the streams hold, read or not, as the connection ends: h2 may end it
    /// in the very poll that read the peer's last frames (a response completed just before
    /// the server's GOAWAY takes effect), and those frames are in the streams, not yet in
    /// events. At most one window per stream, which h2 holds already.
    fn drain_streams(&mut self, task: &mut TaskContext<'_>) {
        for s in self.streams.values_mut() {
            s.reading = true;
        }
        // Each round takes every stream at least one step; an interim response takes one.
        for _ in 0..16 {
            if !self.poll_streams(task) {
                break;
            }
        }
    }

    /// The connection is over: every stream with it.
    fn close(&mut self, error: Option<ConnectionError>) {
        self.conn = Conn::Done;
        let reason = if error.is_some() { Reason::PROTOCOL_ERROR } else { Reason::CANCEL };
        let opening: Vec<StreamKey> = self.opening.drain(..).map(|(stream, ..)| stream).collect();
        for (stream, _) in std::mem::take(&mut self.streams) {
            let unprocessed = opening.contains(&stream);
            self.events.push(H2Event::Reset { stream, reason, remote: false, unprocessed });
        }
        self.events.push(H2Event::Closed { error });
    }

    /// Collect response heads, body bytes, trailers and resets. True if anything came.
    fn poll_streams(&mut self, task: &mut TaskContext<'_>) -> bool {
        let mut moved = false;
        let mut gone = Vec::new();
        for (&key, s) in &mut self.streams {
            if let Some(response) = &mut s.response {
                match response.poll_informational(task) {
                    Poll::Ready(Some(Ok(interim))) => {
                        moved = true;
                        let (head, ()) = interim.into_parts();
                        self.events.push(H2Event::Interim { stream: key, head });
                        continue;
                    }
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) | Poll::Pending => {}
                }
                match Pin::new(response).poll(task) {
                    Poll::Ready(Ok(response)) => {
                        moved = true;
                        s.response = None;
                        let (head, recv) = response.into_parts();
                        let end_stream = recv.is_end_stream();
                        self.events.push(H2Event::Response { stream: key, head, end_stream });
                        if end_stream {
                            s.recv_end = true;
                        } else {
                            s.recv = Some(recv);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        moved = true;
                        self.events.push(reset_event(key, &e));
                        gone.push(key);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if s.reading {
                if let Some(recv) = &mut s.recv {
                    match receive_body(recv, task) {
                        Received::Nothing => {}
                        Received::Data(chunks) => {
                            moved = true;
                            for data in chunks {
                                self.events.push(H2Event::Data { stream: key, data });
                            }
                        }
                        Received::End(chunks, trailers) => {
                            moved = true;
                            for data in chunks {
                                self.events.push(H2Event::Data { stream: key, data });
                            }
                            self.events.push(H2Event::End { stream: key, trailers });
                            s.recv = None;
                            s.recv_end = true;
                        }
                        Received::Failed(chunks, e) => {
                            moved = true;
                            for data in chunks {
                                self.events.push(H2Event::Data { stream: key, data });
                            }
                            self.events.push(reset_event(key, &e));
                            gone.push(key);
                            continue;
                        }
                    }
                }
            }
            // A peer that resets a stream whose body it had finished sending is heard only
            // on the sending half.
            if s.recv.is_none() && s.response.is_none() && !s.sent_end {
                let reset = match (&mut s.send, &mut s.respond) {
                    (Some(send), _) => send.poll_reset(task),
                    (None, Some(respond)) => respond.poll_reset(task),
                    (None, None) => Poll::Pending,
                };
                if let Poll::Ready(result) = reset {
                    moved = true;
                    let reason = match result {
                        Ok(reason) => reason,
                        Err(e) => e.reason().unwrap_or(Reason::CANCEL),
                    };
                    let unprocessed = reason == Reason::REFUSED_STREAM;
                    self.events.push(H2Event::Reset { stream: key, reason, remote: true, unprocessed });
                    gone.push(key);
                }
            }
        }
        for key in gone {
            self.streams.remove(&key);
        }
        let done: Vec<StreamKey> = self.streams.iter().filter(|(_, s)| s.is_done()).map(|(k, _)| *k).collect();
        for key in done {
            self.streams.remove(&key);
        }
        moved
    }

    /// Give h2 as much of each queued body as the peer's window takes. True if any went.
    fn flush_bodies(&mut self) -> bool {
        self.streams.values_mut().fold(false, |moved, s| s.flush() | moved)
    }

    fn forget_if_done(&mut self, stream: StreamKey) {
        if self.streams.get(&stream).is_some_and(Stream::is_done) {
            self.streams.remove(&stream);
        }
    }
}

fn reset_event(stream: StreamKey, error: &h2::Error) -> H2Event {
    let reason = error.reason().unwrap_or(Reason::CANCEL);
    let unprocessed = error.is_remote() && (reason == Reason::REFUSED_STREAM || error.is_go_away());
    H2Event::Reset { stream, reason, remote: error.is_remote(), unprocessed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            stream_window: 65_535,
            connection_window: 65_535,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 256,
            connect_protocol: false,
        }
    }

    /// Move bytes both ways until neither side has anything more to say.
    fn pump(client: &mut Engine, server: &mut Engine) -> (Vec<H2Event>, Vec<H2Event>) {
        let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            from_client.extend(server.poll());
            from_server.extend(client.poll());
            let to_server = client.take_output();
            let to_client = server.take_output();
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
            server.receive(to_server);
            client.receive(to_client);
        }
        (from_client, from_server)
    }

    /// Everything the core's HTTP/2 support rests on: h2, polled with a waker that does
    /// nothing, over buffers, completes a whole exchange in both directions.
    #[test]
    fn an_exchange_with_body_and_trailers_over_memory() {
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
        let request = http::Request::post("https://a.test/up").body(()).unwrap();
        client.open(7, request, false);
        client.send_data(7, Bytes::from_static(b"hello "));
        client.send_data(7, Bytes::from_static(b"world"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        client.finish(7, Some(trailers));
        let (seen, _) = pump(&mut client, &mut server);
        let H2Event::Request { stream, head, end_stream: false } = &seen[0] else { panic!("{seen:?}") };
        assert_eq!(head.uri.path(), "/up");
        let stream = *stream;
        let body: Vec<u8> = seen.iter().filter_map(|e| match e { H2Event::Data { data, .. } => Some(data.to_vec()), _ => None }).flatten().collect();
        assert_eq!(body, b"hello world");
        assert!(matches!(seen.last(), Some(H2Event::End { trailers: Some(t), .. }) if t["grpc-status"] == "0"));

        server.respond(stream, http::Response::builder().status(200).body(()).unwrap(), false);
        server.send_data(stream, Bytes::from(vec![b'x'; 200_000]));
        server.finish(stream, None);
        let (_, seen) = pump(&mut client, &mut server);
        assert!(matches!(&seen[0], H2Event::Response { stream: 7, head, end_stream: false } if head.status == 200));
        let len: usize = seen.iter().map(|e| match e { H2Event::Data { data, .. } => data.len(), _ => 0 }).sum();
        assert_eq!(len, 200_000, "a body bigger than the window arrives whole");
        assert!(matches!(seen.last(), Some(H2Event::End { stream: 7, trailers: None })));
    }

    /// A stream that is not being read keeps its window closed: the sender stops after one
    /// window, and goes on when reading resumes.
    #[test]
    fn an_unread_stream_stops_its_sender_after_one_window() {
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
        client.open(1, http::Request::get("https://a.test/").body(()).unwrap(), true);
        let (seen, _) = pump(&mut client, &mut server);
        let H2Event::Request { stream, .. } = seen[0] else { panic!() };
        server.respond(stream, http::Response::new(()), false);
        server.send_data(stream, Bytes::from(vec![0; 300_000]));
        server.finish(stream, None);
        client.poll();
        client.set_reading(1, false);
        let (_, seen) = pump(&mut client, &mut server);
        assert!(seen.iter().all(|e| !matches!(e, H2Event::Data { .. })));
        assert!(server.backlog(stream) >= 300_000 - 65_535, "the server holds what the window refused");
        client.set_reading(1, true);
        let (_, seen) = pump(&mut client, &mut server);
        let len: usize = seen.iter().map(|e| match e { H2Event::Data { data, .. } => data.len(), _ => 0 }).sum();
        assert_eq!(len, 300_000);
        assert_eq!(server.backlog(stream), 0);
    }

    /// A server's graceful GOAWAY lets the stream in progress finish, and h2 ends the client
    /// connection in the same poll that reads the last response: the response must still be
    /// handed out, not reset with the connection.
    #[test]
    fn a_response_completed_by_the_last_frames_before_goaway_is_delivered() {
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
        client.open(1, http::Request::get("https://a.test/slow").body(()).unwrap(), true);
        let (seen, _) = pump(&mut client, &mut server);
        let H2Event::Request { stream, .. } = seen[0] else { panic!("{seen:?}") };
        server.shutdown(None);
        let (_, seen) = pump(&mut client, &mut server);
        assert!(seen.is_empty(), "the stream in progress survives the GOAWAY: {seen:?}");

        server.respond(stream, http::Response::new(()), false);
        server.send_data(stream, Bytes::from_static(b"done"));
        server.finish(stream, None);
        let (_, seen) = pump(&mut client, &mut server);
        assert!(matches!(&seen[0], H2Event::Response { stream: 1, head, .. } if head.status == 200), "{seen:?}");
        assert!(matches!(&seen[1], H2Event::Data { stream: 1, data } if data == "done"), "{seen:?}");
        assert!(matches!(&seen[2], H2Event::End { stream: 1, trailers: None }), "{seen:?}");
        assert!(matches!(&seen[3..], [H2Event::Closed { error: None }]), "{seen:?}");
    }

    /// Requests opened at once on a new connection, before the server's SETTINGS arrive,
    /// must not exceed a stream limit the server is about to announce: the excess would be
    /// refused (REFUSED_STREAM) rather than wait.
    #[test]
    fn requests_before_the_servers_settings_wait_for_its_stream_limit() {
        let limited = Settings { max_concurrent_streams: 5, ..settings() };
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&limited));
        for key in 1..=20 {
            client.open(key, http::Request::get("https://a.test/").body(()).unwrap(), true);
        }
        let mut answered = Vec::new();
        for _ in 0..20 {
            let (seen, from_server) = pump(&mut client, &mut server);
            for event in from_server {
                match event {
                    H2Event::Response { stream, .. } => answered.push(stream),
                    other => panic!("{other:?}"),
                }
            }
            let requests: Vec<StreamKey> =
                seen.iter().filter_map(|e| if let H2Event::Request { stream, .. } = e { Some(*stream) } else { None }).collect();
            assert!(requests.len() <= 5, "{} streams at once", requests.len());
            for stream in requests {
                server.respond(stream, http::Response::new(()), true);
            }
            if answered.len() == 20 {
                break;
            }
        }
        answered.sort_unstable();
        assert_eq!(answered, (1..=20).collect::<Vec<_>>());
    }
}
