//! One stream's state on our side: what has come from the peer and is not handed out yet,
//! what of ours waits for the peer's window, and the windows both ways.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use crate::headers::Headers;

use super::Reason;

/// Where the peer's message on a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    /// Its head is still to come (we opened the stream, or it has sent only 1xx heads).
    Head,
    /// Its head is in; body bytes (and trailers) may follow.
    Body,
    /// It ended (END_STREAM received), perhaps still held back for a caller not reading.
    Ended,
}

pub(super) struct Stream {
    /// The stream id on the wire; 0 for a stream of ours not opened yet.
    pub(super) id: u32,
    pub(super) recv: Recv,
    /// How much more the peer may send on the stream.
    pub(super) recv_window: i64,
    /// Bytes handed out (or dropped as padding) whose window is still to be given back.
    pub(super) recv_released: i64,
    /// The caller takes body bytes now.
    pub(super) reading: bool,
    /// Body bytes received while the caller was not reading.
    pub(super) held: VecDeque<Bytes>,
    /// The end of the message, received behind `held`.
    pub(super) held_end: Option<Option<Headers>>,
    /// The `content-length` of the peer's message, and the body bytes received so far.
    pub(super) content_length: Option<u64>,
    pub(super) received: u64,
    /// A response to HEAD: its `content-length` describes a body that is not there.
    pub(super) head_request: bool,
    /// The end of the peer's message was handed out.
    pub(super) recv_end: bool,

    /// Our head has gone out.
    pub(super) head_sent: bool,
    /// How much more we may send on the stream.
    pub(super) send_window: i64,
    /// Body bytes the peer's window has no room for yet.
    pub(super) pending: VecDeque<Bytes>,
    pub(super) pending_len: usize,
    /// Our message ends after `pending`, with these trailers.
    pub(super) finish: Option<Option<Headers>>,
    /// Our side of the stream is over (END_STREAM sent).
    pub(super) sent_end: bool,
    /// Reset the stream with this reason once our message has gone out whole.
    pub(super) reset_when_sent: Option<Reason>,
}

impl Stream {
    pub(super) fn new(id: u32, recv: Recv, recv_window: i64, send_window: i64) -> Self {
        Self {
            id,
            recv,
            recv_window,
            recv_released: 0,
            reading: true,
            held: VecDeque::new(),
            held_end: None,
            content_length: None,
            received: 0,
            head_request: false,
            recv_end: false,
            head_sent: false,
            send_window,
            pending: VecDeque::new(),
            pending_len: 0,
            finish: None,
            sent_end: false,
            reset_when_sent: None,
        }
    }

    /// Our message is on its way: its head out on a stream of the wire, its end not yet.
    pub(super) fn sending(&self) -> bool {
        self.head_sent && !self.sent_end && self.id != 0
    }

    pub(super) fn is_done(&self) -> bool {
        self.sent_end && self.recv_end
    }

    /// Queue body bytes of ours, unless our message is over or its end is queued already.
    pub(super) fn queue(&mut self, data: Bytes) {
        if self.sent_end || self.finish.is_some() || data.is_empty() {
            return;
        }
        self.pending_len += data.len();
        self.pending.push_back(data);
    }

    /// Moves the first `len` bytes of the queued body (at most `pending_len`) to `out`,
    /// across as many queued chunks as they take.
    pub(super) fn move_pending(&mut self, len: usize, out: &mut BytesMut) {
        debug_assert!(len <= self.pending_len);
        self.pending_len -= len;
        let mut left = len;
        while left > 0 {
            let Some(front) = self.pending.front_mut() else { break };
            if front.len() <= left {
                left -= front.len();
                out.extend_from_slice(front);
                self.pending.pop_front();
            } else {
                out.extend_from_slice(&front[..left]);
                front.advance(left);
                left = 0;
            }
        }
    }
}
