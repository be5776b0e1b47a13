//! Bodies the core hands over with `Command::Forward`, moved from socket to socket with
//! `splice(2)` through a pipe, never through user space (Linux). A fast sender is read in big
//! pieces: the source's read mark (`SO_RCVLOWAT`) rises with the reads seen and drops back
//! once the sender has not reached it for [`PATIENCE`].

use std::future::Future;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use proxy_core::{ConnId, Event, FlowId, Hook, HookReply};

use super::socket::{End, Io, Sock};
use super::{now, Core, Driver};

impl<C, M, F> Driver<'_, C, M, F>
where
    C: Core,
    M: FnMut(FlowId, Hook) -> F,
    F: Future<Output = (FlowId, bool, HookReply)>,
{
    pub(super) fn start_forward(&mut self, from: ConnId, to: ConnId, len: u64) {
        match crate::splice::Pipe::new() {
            Ok(pipe) => {
                if let Some(s) = self.sock(from) {
                    s.forwarding = true;
                }
                self.forwards.push(Forward { from, to, remaining: len, pipe, eof: false, reported_held: false, mark: 1, patience: None });
            }
            // Without a pipe the bytes cannot move; the core will not see them either, so
            // this connection cannot go on.
            Err(e) => {
                tracing::warn!(client = %self.peer, error = %e, "cannot create a pipe to forward a body");
                for s in &mut self.socks {
                    s.kill();
                }
                self.events.push_back(Event::ConnectionClosed { conn: from });
            }
        }
    }

    /// Move forwarded bodies along: from the source socket into the pipe, from the pipe into
    /// the destination once everything queued for it before has left. Reports the bytes
    /// written as one `Forwarded` event per round.
    pub(super) fn poll_forwards(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        /// At most this much moves before other events get their turn.
        const ROUND: u64 = 4 * 1024 * 1024;

        let mut i = 0;
        while i < self.forwards.len() {
            let f = &mut self.forwards[i];
            let from = self.socks.iter().position(|s| s.id == f.from && !s.forgotten && s.is_alive());
            let to = self.socks.iter().position(|s| s.id == f.to && !s.forgotten && s.is_alive());
            let (Some(from), Some(to)) = (from, to) else {
                // One side was closed: the core knows, and the rest of the body has no reader.
                let mut f = self.forwards.swap_remove(i);
                if let Some(from) = from {
                    // Reading `from` is back to the usual path, and what the pipe held counts
                    // as moved: it was taken from `from`, whose framing the core keeps track of.
                    f.set_mark(&self.socks[from], 1);
                    self.socks[from].forwarding = false;
                    if f.pipe.len > 0 {
                        return Some(Event::Forwarded { from: f.from, len: f.pipe.len as u64, pending: 0 });
                    }
                }
                continue;
            };
            let mut moved = 0u64;
            let mut failed = None;
            while moved < ROUND {
                // Into the pipe as far as it has room, even while the destination is slow:
                // both sockets keep moving, and each wakeup moves more.
                let filled = match f.fill(&self.socks[from], cx) {
                    Ok(again) => again,
                    Err(e) => {
                        failed = Some((from, e));
                        break;
                    }
                };
                // Out of the pipe, once everything the core queued for the destination
                // before the forward has left.
                let drained = match f.drain(&self.socks[to], cx) {
                    Ok((n, again)) => {
                        moved += n as u64;
                        again
                    }
                    Err(e) => {
                        failed = Some((to, e));
                        break;
                    }
                };
                if !filled && !drained {
                    break;
                }
            }
            let (from_id, done) = (f.from, f.pipe.len == 0 && (f.remaining == 0 || f.eof));
            let eof = f.eof;
            // Whether the forward now waits on the destination rather than the source: the
            // core times out whichever it waits on, so a change is news even with no bytes.
            let pending = f.pipe.len as u64;
            let changed = (pending > 0) != f.reported_held;
            f.reported_held = pending > 0;
            let removed = failed.is_some() || done;
            if failed.as_ref().is_some_and(|(at, _)| *at == to) {
                // As above: the destination is gone, the bytes were taken from the source.
                moved += f.pipe.len as u64;
            }
            if let Some((at, e)) = failed {
                tracing::debug!(conn = self.socks[at].id.0, error = %e, "forwarding failed");
                self.socks[at].kill();
                self.socks[at].ended(End::Gone);
                if let Some(event) = self.socks[at].closed_event() {
                    self.events.push_back(event);
                }
                f.set_mark(&self.socks[from], 1);
                self.socks[from].forwarding = false;
                self.forwards.swap_remove(i);
            } else if done {
                self.socks[from].forwarding = false;
                if eof {
                    // The peer closed before the body was complete; the core makes it an error.
                    self.socks[from].read_done = true;
                    self.socks[from].ended(End::Eof);
                    if let Some(event) = self.socks[from].closed_event() {
                        self.events.push_back(event);
                    }
                }
                self.forwards.swap_remove(i);
            }
            if moved > 0 || (changed && !removed) {
                if removed || moved >= ROUND {
                    // Let the caller poll again soon, for this forward's next round or others.
                    cx.waker().wake_by_ref();
                }
                let pending = if removed { 0 } else { pending };
                return Some(Event::Forwarded { from: from_id, len: moved, pending });
            }
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if !removed {
                i += 1;
            }
        }
        None
    }

    /// When the first forward that waits on its source with a raised read mark gives up.
    pub(super) fn forward_patience(&self) -> Option<Instant> {
        self.forwards.iter().filter_map(|f| f.patience).min()
    }

    /// Forwards that waited on their source until `at` read whatever it has: the sender slowed
    /// down, and its last bytes must not wait for a mark it may never reach.
    pub(super) fn lose_patience(&mut self, at: Instant) {
        for f in &mut self.forwards {
            if f.patience.is_some_and(|t| t <= at) {
                f.patience = None;
                if let Some(src) = self.socks.iter().find(|s| s.id == f.from && !s.forgotten) {
                    f.set_mark(src, 1);
                }
            }
        }
    }
}

/// A forward that reads at least this much at once raises its source's read mark.
const BATCH_MIN: usize = 64 * 1024;

/// How long a forward waits for its source to reach a raised read mark before it reads what
/// is there: the most a slowing sender's bytes are held back.
const PATIENCE: Duration = Duration::from_millis(1);

/// A body moving from one socket to another outside the core.
pub(super) struct Forward {
    from: ConnId,
    to: ConnId,
    /// Bytes still to read from `from`.
    remaining: u64,
    pipe: crate::splice::Pipe,
    /// `from` closed before `remaining` reached zero.
    eof: bool,
    /// What the core was last told: the pipe held bytes the destination had not taken.
    reported_held: bool,
    /// The source's read mark (`SO_RCVLOWAT`): 1, the kernel's own, until a big read shows a
    /// sender faster than our wakeups.
    mark: usize,
    /// While the forward waits on its source with a raised mark: when the wait has lasted
    /// [`PATIENCE`], and the mark drops back to 1.
    patience: Option<Instant>,
}

impl Forward {
    /// Splice what `src` has into the pipe, as far as the pipe has room and the body goes.
    /// `Ok(true)`: something changed (bytes, EOF, or readiness back), worth another round.
    fn fill(&mut self, src: &Sock, cx: &mut Context<'_>) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let room = self.pipe.capacity.saturating_sub(self.pipe.len);
        let Io::Open(stream) = &src.io else { return Ok(false) };
        if src.paused || room == 0 || self.remaining == 0 || self.eof {
            return Ok(false);
        }
        match stream.poll_read_ready(cx) {
            Poll::Pending => {
                self.wait_for_source();
                return Ok(false);
            }
            Poll::Ready(ready) => ready?,
        }
        let max = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(room);
        let filled = if self.pipe.len == 0 {
            stream.try_io(tokio::io::Interest::READABLE, || self.pipe.fill(stream.as_raw_fd(), max))
        } else {
            // EAGAIN may be the pipe's here (its slots full of small pieces), not the
            // socket's: keep the socket's readiness. The pipe holds data, so the drain
            // brings us back.
            self.pipe.fill(stream.as_raw_fd(), max)
        };
        match filled {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.remaining -= n as u64;
                self.patience = None;
                self.raise_mark(src, n);
                Ok(true)
            }
            // The readiness was cleared (or kept, see above): poll it again so that a waker
            // is registered, or go round if it is back.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let again = self.pipe.len == 0 && stream.poll_read_ready(cx).is_ready();
                if !again {
                    self.wait_for_source();
                }
                Ok(again)
            }
            Err(e) => Err(e),
        }
    }

    /// After a read of `n` bytes: a read this big means the sender keeps ahead of our
    /// wakeups, so wait for at least as much next time. Never above the pipe (no more fits),
    /// half the socket's receive buffer (see [`set_read_mark`]) nor the rest of the body (its
    /// last bytes would wait for ever); back to 1 at its end, for the usual path.
    ///
    /// [`set_read_mark`]: crate::splice::set_read_mark
    fn raise_mark(&mut self, src: &Sock, n: usize) {
        let mut mark = self.mark;
        let step = if n >= BATCH_MIN { 1 << n.ilog2() } else { 0 };
        if step > mark {
            if let Io::Open(stream) = &src.io {
                let buffer = socket2::SockRef::from(stream).recv_buffer_size().unwrap_or(0);
                mark = step.min(buffer / 2).max(mark);
            }
        }
        let rest = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        self.set_mark(src, mark.min(self.pipe.capacity).min(rest));
    }

    /// Nothing to read: with a raised mark, bytes below it may be waiting, so give the sender
    /// [`PATIENCE`] to reach it. Only while the pipe is empty: until then the destination, not
    /// the mark, holds the body up.
    fn wait_for_source(&mut self) {
        if self.mark > 1 && self.pipe.len == 0 && self.patience.is_none() {
            self.patience = Some(now() + PATIENCE);
        }
    }

    fn set_mark(&mut self, src: &Sock, mark: usize) {
        use std::os::fd::AsRawFd;
        let mark = mark.max(1);
        let Io::Open(stream) = &src.io else { return };
        if mark == self.mark {
            return;
        }
        match crate::splice::set_read_mark(stream.as_raw_fd(), mark) {
            Ok(()) => self.mark = mark,
            // Reads stay as they were: more wakeups, nothing worse.
            Err(e) => tracing::debug!(conn = src.id.0, error = %e, "read mark not set"),
        }
        if mark == 1 {
            self.patience = None;
        }
    }

    /// Splice what the pipe holds into `dst`, once nothing the core queued for it waits
    /// before. Returns the bytes written and whether another round is worth it.
    fn drain(&mut self, dst: &Sock, cx: &mut Context<'_>) -> io::Result<(usize, bool)> {
        use std::os::fd::AsRawFd;
        let Io::Open(stream) = &dst.io else { return Ok((0, false)) };
        if !dst.queue.is_empty() || self.pipe.len == 0 {
            return Ok((0, false));
        }
        match stream.poll_write_ready(cx) {
            Poll::Pending => return Ok((0, false)),
            Poll::Ready(ready) => ready?,
        }
        match stream.try_io(tokio::io::Interest::WRITABLE, || self.pipe.drain(stream.as_raw_fd())) {
            Ok(n) => Ok((n, n > 0)),
            // As in `fill`, for the waker.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, stream.poll_write_ready(cx).is_ready())),
            Err(e) => Err(e),
        }
    }
}
