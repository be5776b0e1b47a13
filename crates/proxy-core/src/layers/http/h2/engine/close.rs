//! Stream and connection errors, and the connection's end.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::frame;
use super::{goaway, ConnectionError, Engine, H2Event, Reason, Role, State, StreamKey};

impl Engine {
    /// Reset `key` for the peer's error, telling the caller if it knew of the stream.
    pub(super) fn stream_error(&mut self, key: StreamKey, reason: Reason) -> Result<(), (Reason, ConnectionError)> {
        self.stream_error_closing(key, reason, false)
    }

    /// [`stream_error`](Self::stream_error); `closed`: the frame at fault closed the stream,
    /// so no RST_STREAM goes out.
    pub(super) fn stream_error_closing(&mut self, key: StreamKey, reason: Reason, closed: bool) -> Result<(), (Reason, ConnectionError)> {
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
    pub(super) fn stream_error_by_id(&mut self, id: u32, reason: Reason) -> Result<(), (Reason, ConnectionError)> {
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
    pub(super) fn connection_error(&mut self, reason: Reason, error: ConnectionError) {
        frame::put_goaway(&mut self.output, self.last_peer_id, reason);
        self.goaway_sent = Some(self.last_peer_id);
        self.close(Reason::PROTOCOL_ERROR, Some(error));
    }

    /// The connection is over: every stream with it.
    pub(super) fn close(&mut self, reason: Reason, error: Option<ConnectionError>) {
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
    pub(super) fn end_if_over(&mut self) {
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
}
