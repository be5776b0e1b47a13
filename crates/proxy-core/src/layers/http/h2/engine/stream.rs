//! One stream's state, and the flow control of its bodies: ours waits in a queue until the
//! peer's window has room, the peer's is taken out of h2 giving its window back as it goes.

use std::collections::VecDeque;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use h2::{client, server, Reason, RecvStream, SendStream};
use http::HeaderMap;

/// One stream's state on our side.
#[derive(Default)]
pub(super) struct Stream {
    /// The response on its way (client role), until its head arrives.
    pub(super) response: Option<client::ResponseFuture>,
    /// Where the response head goes (server role), until we send it.
    pub(super) respond: Option<server::SendResponse<Bytes>>,
    /// The peer's body, until its end.
    pub(super) recv: Option<RecvStream>,
    /// The caller can take body bytes now.
    pub(super) reading: bool,
    /// Our body, once our head has gone.
    pub(super) send: Option<SendStream<Bytes>>,
    /// Body bytes the peer's window has no room for yet.
    pub(super) pending: VecDeque<Bytes>,
    pub(super) pending_len: usize,
    /// Our message ends after `pending`, with these trailers.
    pub(super) finish: Option<Option<HeaderMap>>,
    /// Our side of the stream is over (END_STREAM sent, or reset).
    pub(super) sent_end: bool,
    /// The peer's side is over.
    pub(super) recv_end: bool,
    /// Reset the stream with this reason once our message has gone out whole.
    pub(super) reset_when_sent: Option<Reason>,
}

impl Stream {
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

    /// Give h2 as much of the queued body as the peer's window takes, and the end of our
    /// message once all of it has gone. True if anything went.
    pub(super) fn flush(&mut self) -> bool {
        let mut moved = false;
        let Some(send) = &mut self.send else { return false };
        if self.sent_end {
            return false;
        }
        while let Some(front) = self.pending.front_mut() {
            send.reserve_capacity(self.pending_len);
            let room = send.capacity();
            if room == 0 {
                break;
            }
            let chunk = if front.len() <= room { self.pending.pop_front().unwrap_or_default() } else { front.split_to(room) };
            self.pending_len -= chunk.len();
            let last = self.pending.is_empty() && matches!(self.finish, Some(None));
            moved = true;
            if send.send_data(chunk, last).is_err() {
                self.pending.clear();
                self.pending_len = 0;
                self.sent_end = true;
                break;
            }
            if last {
                self.sent_end = true;
                self.finish = None;
            }
        }
        if self.pending.is_empty() && !self.sent_end {
            if let Some(trailers) = self.finish.take() {
                moved = true;
                let _ = match trailers {
                    Some(trailers) => send.send_trailers(trailers),
                    None => send.send_data(Bytes::new(), true),
                };
                self.sent_end = true;
                send.reserve_capacity(0);
            }
        }
        moved
    }
}

/// What [`receive_body`] found.
pub(super) enum Received {
    Nothing,
    Data(Vec<Bytes>),
    End(Vec<Bytes>, Option<HeaderMap>),
    Failed(Vec<Bytes>, h2::Error),
}

/// Take what body bytes (and trailers) `recv` holds, giving their window back to the peer.
pub(super) fn receive_body(recv: &mut RecvStream, task: &mut TaskContext<'_>) -> Received {
    let mut chunks = Vec::new();
    loop {
        match recv.poll_data(task) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = recv.flow_control().release_capacity(data.len());
                if !data.is_empty() {
                    chunks.push(data);
                }
            }
            Poll::Ready(Some(Err(e))) => return Received::Failed(chunks, e),
            Poll::Ready(None) => {
                return match recv.poll_trailers(task) {
                    Poll::Ready(Ok(trailers)) => Received::End(chunks, trailers),
                    Poll::Ready(Err(e)) => Received::Failed(chunks, e),
                    // Trailers may still be coming in a HEADERS frame of their own.
                    Poll::Pending if chunks.is_empty() => Received::Nothing,
                    Poll::Pending => Received::Data(chunks),
                };
            }
            Poll::Pending if chunks.is_empty() => return Received::Nothing,
            Poll::Pending => return Received::Data(chunks),
        }
    }
}