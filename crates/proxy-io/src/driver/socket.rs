//! One socket of a client connection's task: its output queue, reading state, and how far
//! its peer has gone.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proxy_core::{ConnId, Event};
use tokio::net::TcpStream;

use super::{now, BIG_READ, MIN_READ, READ_BUF, SMALL_READ_BUF};
use crate::open::Connecting;
use crate::queue::WriteQueue;

thread_local! {
    /// The buffer every socket served by this thread reads into. What a read brings is split
    /// off and handed to the core, and the rest of the buffer serves the next read, whichever
    /// connection it is for: an idle connection holds no buffer, and a busy thread allocates
    /// one only when the last is used up (or handed over whole by a big read). A piece the
    /// core keeps (the fields of a request in flight) keeps its buffer alive until dropped,
    /// as it would a buffer of its own connection.
    static READ_BUF_OF_THREAD: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

pub(super) enum Io {
    Connecting(Connecting),
    Open(TcpStream),
    /// Closed, failed, or never opened; removed at the next turn.
    Dead,
}

/// One socket of the connection, with its output queue and reading state.
pub(super) struct Sock {
    pub(super) id: ConnId,
    pub(super) io: Io,
    pub(super) queue: WriteQueue,
    /// The core asked not to read from it.
    pub(super) paused: bool,
    /// Its input is being forwarded: the forward reads it, not the usual path.
    pub(super) forwarding: bool,
    /// Its last read was big: read in bigger pieces.
    pub(super) bulk: bool,
    /// EOF or a read error was seen.
    pub(super) read_done: bool,
    /// How far the peer has gone, and how much of that the core has been told.
    pub(super) end: End,
    pub(super) reported: End,
    /// Bytes were queued or written since the last `WriteDrained`.
    pub(super) unreported: bool,
    /// Shut down the writing side once the queue is empty.
    pub(super) shut_after_flush: bool,
    /// The writing side is shut down; later output is dropped.
    pub(super) write_shut: bool,
    /// The core closed it and forgot it: no more events; reads are discarded until the peer
    /// closes or `linger_until` passes.
    pub(super) forgotten: bool,
    pub(super) linger_until: Option<Instant>,
    pub(super) linger: Duration,
    /// The proxy is shutting down: once closed and flushed, the socket goes at once unless
    /// its peer has sent something it must not be reset over.
    hurry: bool,
}

impl Sock {
    pub(super) fn new(id: ConnId, io: Io) -> Self {
        if let Io::Open(stream) = &io {
            nodelay(stream);
        }
        Self {
            id,
            io,
            queue: WriteQueue::default(),
            paused: false,
            forwarding: false,
            bulk: false,
            read_done: false,
            end: End::Open,
            reported: End::Open,
            unreported: false,
            shut_after_flush: false,
            write_shut: false,
            forgotten: false,
            linger_until: None,
            linger: Duration::ZERO,
            hurry: false,
        }
    }

    /// The proxy is shutting down: a closed socket does not wait for its peer to close too
    /// (an idle keep-alive client may never). Draining the peer's input protects the last
    /// response from a reset, which only input left unread causes: a socket with none goes
    /// as soon as its output is flushed.
    pub(super) fn hurry(&mut self) {
        self.hurry = true;
        if self.forgotten && self.write_shut && self.nothing_to_read() {
            self.kill();
        }
    }

    /// Whether the peer has sent nothing that waits to be read (an EOF or an error counts as
    /// nothing). Asks the socket itself, not tokio's record of its readiness, which may not
    /// have seen the latest input yet.
    fn nothing_to_read(&self) -> bool {
        let Io::Open(stream) = &self.io else { return true };
        let mut byte = [std::mem::MaybeUninit::uninit()];
        !matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(1))
    }

    pub(super) fn is_alive(&self) -> bool {
        !matches!(self.io, Io::Dead)
    }

    pub(super) fn kill(&mut self) {
        self.io = Io::Dead;
        self.queue.clear();
        self.linger_until = None;
    }

    /// Queue `data`; the driver writes it once the current batch of commands is done.
    pub(super) fn send(&mut self, data: bytes::Bytes) -> Option<Event> {
        if matches!(self.io, Io::Dead) || self.write_shut {
            return None;
        }
        self.queue.push(data);
        self.unreported = true;
        None
    }

    /// Write queued output without waiting for the socket.
    pub(super) fn write(&mut self) -> Option<Event> {
        let Io::Open(stream) = &self.io else { return None };
        let result = self.queue.flush(|bufs| stream.try_write_vectored(bufs));
        self.wrote(result)
    }

    pub(super) fn wrote(&mut self, result: io::Result<usize>) -> Option<Event> {
        match result {
            Ok(n) => {
                if n > 0 && self.forgotten {
                    // Progress: the peer is reading, give it more time.
                    self.linger_until = Some(now() + self.linger);
                }
                if self.queue.is_empty() {
                    self.flushed();
                }
                None
            }
            Err(e) => {
                tracing::debug!(conn = self.id.0, error = %e, "write failed");
                self.kill();
                self.ended(End::Gone);
                self.closed_event()
            }
        }
    }

    /// The queue just emptied.
    pub(super) fn flushed(&mut self) {
        if !self.shut_after_flush {
            return;
        }
        self.shut_after_flush = false;
        self.write_shut = true;
        if let Io::Open(stream) = &self.io {
            // Our FIN. Failing here means the peer is gone, which reading will tell.
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
        }
        if self.forgotten && (!self.drains_after_close() || self.hurry && self.nothing_to_read()) {
            self.kill();
        }
    }

    /// Whether, once closed by the core and flushed, this socket is kept to read the peer's
    /// input until it closes. Only the client's: its last response must not be destroyed by
    /// a reset; an upstream's unread input is of no use to anyone.
    pub(super) fn drains_after_close(&self) -> bool {
        self.id == ConnId::CLIENT && !self.read_done
    }

    /// Carry out `CloseConnection`.
    pub(super) fn close(&mut self, half: bool, linger: Duration) {
        if self.forgotten {
            return;
        }
        if !half {
            self.forgotten = true;
            match self.io {
                Io::Connecting(_) | Io::Dead => return self.kill(),
                // Our FIN went out with a half-close before: the core has had the peer's
                // input drained since, for as long as it wanted (its `close_linger`).
                Io::Open(_) if self.write_shut => return self.kill(),
                // Instead of dropping the socket at once, which resets it when unread input
                // is waiting and can destroy the last response before the peer reads it:
                // flush, send FIN, and (the client) drain its input until it closes too.
                Io::Open(_) => {
                    self.linger = linger;
                    self.linger_until = Some(now() + linger);
                }
            }
        }
        if matches!(self.io, Io::Dead) {
            return;
        }
        if !self.write_shut {
            self.shut_after_flush = true;
            if self.queue.is_empty() && matches!(self.io, Io::Open(_)) {
                self.flushed();
            }
        } else if self.forgotten && !self.drains_after_close() {
            self.kill();
        }
    }

    /// The peer's end, as far as it is known now.
    pub(super) fn ended(&mut self, end: End) {
        self.end = self.end.max(end);
    }

    /// The next `ConnectionClosed` the core is owed for this socket, if any: one for an EOF,
    /// two for a peer that is gone. Nothing once the core has closed the socket itself.
    pub(super) fn closed_event(&mut self) -> Option<Event> {
        if self.forgotten || self.reported >= self.end {
            return None;
        }
        self.reported = if self.reported == End::Open { End::Eof } else { End::Gone };
        Some(Event::ConnectionClosed { conn: self.id })
    }

    /// `WriteDrained`, if output was sent since the last one and all of it is written.
    pub(super) fn drained(&mut self) -> Option<Event> {
        if self.unreported && self.queue.is_empty() && !self.forgotten && matches!(self.io, Io::Open(_)) {
            self.unreported = false;
            return Some(Event::WriteDrained { conn: self.id });
        }
        None
    }

    pub(super) fn wants_read(&self) -> bool {
        !self.read_done && !self.forwarding && (self.forgotten || !self.paused)
    }

    /// Make progress on connecting, writing and reading; the first event wins.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        if let Io::Connecting(connecting) = &mut self.io {
            let result = match connecting.as_mut().poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(result) => result,
            };
            return match result {
                Ok(stream) => {
                    nodelay(&stream);
                    self.io = Io::Open(stream);
                    if self.queue.is_empty() && self.shut_after_flush {
                        self.flushed();
                    }
                    Some(Event::Opened { conn: self.id })
                }
                Err(error) => {
                    tracing::debug!(conn = self.id.0, %error, "open failed");
                    self.kill();
                    Some(Event::OpenFailed { conn: self.id, error })
                }
            };
        }
        if !self.queue.is_empty() {
            if let Some(event) = self.poll_write(cx).or_else(|| self.drained()) {
                return Some(event);
            }
        }
        if self.wants_read() {
            return READ_BUF_OF_THREAD.with_borrow_mut(|buf| self.poll_read(cx, buf));
        }
        None
    }

    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        while !self.queue.is_empty() {
            let Io::Open(stream) = &self.io else { return None };
            let result = match stream.poll_write_ready(cx) {
                Poll::Pending => return None,
                Poll::Ready(Err(e)) => Err(e),
                Poll::Ready(Ok(())) => self.queue.flush(|bufs| stream.try_write_vectored(bufs)),
            };
            if let Some(event) = self.wrote(result) {
                return Some(event);
            }
        }
        None
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Option<Event> {
        loop {
            let Io::Open(stream) = &mut self.io else { return None };
            if buf.capacity() < MIN_READ {
                buf.reserve(if self.bulk { READ_BUF } else { SMALL_READ_BUF });
            }
            // Through `AsyncRead`: after a read that did not fill the buffer, tokio forgets
            // the socket's readiness, which saves the `EAGAIN` read `try_read_buf` would need.
            let result = match tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf) {
                Poll::Pending => return None,
                Poll::Ready(result) => result,
            };
            match result {
                Ok(0) => return self.read_ended(None),
                Ok(_) if self.forgotten => buf.clear(),
                Ok(n) => {
                    self.bulk = n >= BIG_READ;
                    // A big read takes the whole buffer along, so the core holds the only
                    // reference and can reuse it without copying; small reads share one
                    // buffer to save allocations.
                    let data = if n >= BIG_READ { std::mem::take(buf) } else { buf.split() };
                    return Some(Event::DataReceived { conn: self.id, data: data.freeze() });
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return self.read_ended(Some(e)),
            }
        }
    }

    pub(super) fn read_ended(&mut self, error: Option<io::Error>) -> Option<Event> {
        match error {
            Some(e) => {
                tracing::debug!(conn = self.id.0, error = %e, "read failed");
                self.ended(End::Gone);
            }
            None => self.ended(End::Eof),
        }
        self.read_done = true;
        if self.forgotten && !self.shut_after_flush {
            // Flushed and shut down, and now the peer is done too.
            self.kill();
        }
        self.closed_event()
    }
}

/// How far a socket's peer has gone, in the order it can get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum End {
    Open,
    /// It will send nothing more.
    Eof,
    /// It cannot be written to either.
    Gone,
}

pub(super) fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}
