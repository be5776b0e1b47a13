//! The task of one client connection: it owns the core's [`Connection`], the client socket and
//! every upstream socket, and turns their readiness, connect results, the core's timer and hook
//! answers into events, one at a time, in the order they are observed.
//!
//! One loop turn: wait for the next event ([`Driver::poll_event`]), hand it to the core, carry
//! out every command the core returns, in order. Writes are tried at once and queue only what
//! the socket does not take; a queue that empties is reported as [`Event::WriteDrained`], which
//! is what lifts the core's backpressure. A paused socket is not polled for reading at all, so
//! the kernel's receive window, not this task, absorbs the sender.
//!
//! A socket's end reaches the core as `ConnectionClosed`: once when the peer will send no
//! more (EOF), twice when the peer is gone (a write or a read failed), which the core takes as
//! "and writes fail too". Without the second, a client that left mid-download would have its
//! response read from the server to the end, and dropped here.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use proxy_core::{Command, ConnId, Connection, Event, FlowId, Hook, HookReply, LogLevel};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::handler::Handler;
use crate::open::{open, Connecting};
use crate::queue::WriteQueue;

/// Capacity of the read buffer shared by the sockets of one connection.
pub(crate) const READ_BUF: usize = 256 * 1024;
/// The read buffer's size for a socket whose last read was small: 50 idle-ish connections
/// with a quarter megabyte each would crowd the caches for nothing.
const SMALL_READ_BUF: usize = 64 * 1024;
/// Below this much spare capacity the read buffer is topped up before a read.
const MIN_READ: usize = 4 * 1024;
/// Reads at least this big hand their buffer over to the core instead of splitting it.
const BIG_READ: usize = 16 * 1024;

/// What the driver needs from the core. [`Connection`] is the only real implementation; tests
/// drive the loop with small fakes.
pub(crate) trait Core: Send {
    fn handle(&mut self, now: Instant, event: Event);
    fn poll_command(&mut self) -> Option<Command>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn is_closed(&self) -> bool;
}

impl Core for Connection {
    fn handle(&mut self, now: Instant, event: Event) {
        Connection::handle(self, now, event)
    }

    fn poll_command(&mut self) -> Option<Command> {
        Connection::poll_command(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Connection::poll_timeout(self)
    }

    fn is_closed(&self) -> bool {
        Connection::is_closed(self)
    }
}

/// The driver's own limits, shared by every connection task.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) connect_timeout: Duration,
    /// How long a socket the core has closed may take to flush its output and see the peer's
    /// end (refreshed by write progress); also bounds the hooks still running once the core is
    /// done.
    pub(crate) linger: Duration,
}

/// Run one client connection to its end.
pub(crate) async fn drive<C: Core, H: Handler>(
    core: C,
    client: TcpStream,
    peer: SocketAddr,
    handler: &H,
    opts: &Options,
) {
    let make_hook = |flow: FlowId, hook: Hook| {
        let blocking = hook.is_blocking();
        let reply = handler.hook(flow, hook);
        async move { (flow, blocking, reply.await) }
    };
    Driver::new(core, client, peer, opts, make_hook).run().await
}

struct Driver<'o, C, M, F> {
    core: C,
    peer: SocketAddr,
    opts: &'o Options,
    socks: Vec<Sock>,
    read_buf: BytesMut,
    /// Events the driver produced while carrying out commands (a failed write), fed before
    /// anything new is observed.
    events: VecDeque<Event>,
    hooks: FuturesUnordered<F>,
    make_hook: M,
    timer: Timer,
    /// Bodies the core handed over with `Command::Forward`.
    forwards: Vec<Forward>,
    /// Where the next round over the sockets starts, so that one busy socket cannot starve
    /// the others.
    next: usize,
}

impl<'o, C, M, F> Driver<'o, C, M, F>
where
    C: Core,
    M: FnMut(FlowId, Hook) -> F,
    F: Future<Output = (FlowId, bool, HookReply)>,
{
    fn new(core: C, client: TcpStream, peer: SocketAddr, opts: &'o Options, make_hook: M) -> Self {
        Self {
            core,
            peer,
            opts,
            socks: vec![Sock::new(ConnId::CLIENT, Io::Open(client))],
            read_buf: BytesMut::new(),
            events: VecDeque::new(),
            hooks: FuturesUnordered::new(),
            make_hook,
            timer: Timer::default(),
            forwards: Vec::new(),
            next: 0,
        }
    }

    async fn run(mut self) {
        self.feed(Event::Start);
        while !self.core.is_closed() {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            self.feed(event);
        }
        self.finish().await;
    }

    /// Hand `event` to the core and carry out what it asks, in order.
    fn feed(&mut self, event: Event) {
        self.core.handle(now(), event);
        while let Some(cmd) = self.core.poll_command() {
            self.execute(cmd);
        }
        // One vectored write per socket for everything this event produced: a response head
        // and its body leave in one system call.
        for s in &mut self.socks {
            if !s.queue.is_empty() {
                if let Some(event) = s.write() {
                    self.events.push_back(event);
                }
            }
        }
    }

    fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::SendData { conn, data } => {
                if let Some(event) = self.sock(conn).and_then(|s| s.send(data)) {
                    self.events.push_back(event);
                }
            }
            Command::OpenConnection { conn, server } => {
                tracing::debug!(client = %self.peer, conn = conn.0, %server, "opening");
                let connecting = open(server, self.opts.connect_timeout);
                self.socks.push(Sock::new(conn, Io::Connecting(connecting)));
            }
            Command::CloseConnection { conn, half } => {
                let linger = self.opts.linger;
                if let Some(s) = self.sock(conn) {
                    s.close(half, linger);
                }
            }
            Command::Forward { from, to, len } => self.start_forward(from, to, len),
            Command::PauseReading { conn } => {
                if let Some(s) = self.sock(conn) {
                    s.paused = true;
                }
            }
            Command::ResumeReading { conn } => {
                if let Some(s) = self.sock(conn) {
                    s.paused = false;
                }
            }
            Command::Hook { flow, hook } => {
                let fut = (self.make_hook)(flow, hook);
                self.hooks.push(fut);
            }
            Command::Log { level, message } => log(level, self.peer, &message),
        }
    }

    /// The socket for `conn`, unless the core has closed it.
    fn sock(&mut self, conn: ConnId) -> Option<&mut Sock> {
        let found = self.socks.iter_mut().find(|s| s.id == conn && !s.forgotten);
        if found.is_none() {
            tracing::debug!(client = %self.peer, conn = conn.0, "command for an unknown connection");
        }
        found
    }

    /// The next event for the core, in this order: events the driver produced itself, drained
    /// write queues, hook answers, the timer, then connects, writes and reads, sockets taken
    /// in turn.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        // The second close of a peer that is gone, owed since its first was fed.
        if let Some(event) = self.socks.iter_mut().find_map(Sock::closed_event) {
            return Poll::Ready(event);
        }
        self.socks.retain(Sock::is_alive);
        if let Some(event) = self.socks.iter_mut().find_map(Sock::drained) {
            return Poll::Ready(event);
        }
        while let Poll::Ready(Some((flow, blocking, reply))) = self.hooks.poll_next_unpin(cx) {
            // A notification's answer has nowhere to go.
            if blocking {
                return Poll::Ready(Event::HookReply { flow, reply });
            }
        }
        if let Some(event) = self.poll_timer(cx) {
            return Poll::Ready(event);
        }
        if let Some(event) = self.poll_forwards(cx) {
            return Poll::Ready(event);
        }
        let n = self.socks.len();
        for i in 0..n {
            let at = (self.next + i) % n;
            if let Some(event) = self.socks[at].poll(cx, &mut self.read_buf) {
                self.next = at + 1;
                return Poll::Ready(event);
            }
        }
        // Nothing to read anywhere: give the buffer back rather than hold it while idle. A
        // thousand idle keep-alive connections would otherwise pin a buffer each.
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        // A forward may have started waiting on its source above, with a patience the timer
        // must now include.
        if self.forward_patience().is_some_and(|at| !self.timer.covers(at)) {
            if let Some(event) = self.poll_timer(cx) {
                return Poll::Ready(event);
            }
        }
        Poll::Pending
    }

    #[cfg(target_os = "linux")]
    fn start_forward(&mut self, from: ConnId, to: ConnId, len: u64) {
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

    #[cfg(not(target_os = "linux"))]
    fn start_forward(&mut self, from: ConnId, _to: ConnId, _len: u64) {
        // The builder keeps `forward_min` off where splice is missing; a core that asks anyway
        // gets its connection closed rather than a hang.
        tracing::warn!(client = %self.peer, "forwarding is not supported on this platform");
        self.events.push_back(Event::ConnectionClosed { conn: from });
    }

    /// Move forwarded bodies along: from the source socket into the pipe, from the pipe into
    /// the destination once everything queued for it before has left. Reports the bytes
    /// written as one `Forwarded` event per round.
    #[cfg(target_os = "linux")]
    fn poll_forwards(&mut self, cx: &mut Context<'_>) -> Option<Event> {
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

    #[cfg(not(target_os = "linux"))]
    fn poll_forwards(&mut self, _cx: &mut Context<'_>) -> Option<Event> {
        None
    }

    /// When the first forward that waits on its source with a raised read mark gives up.
    #[cfg(target_os = "linux")]
    fn forward_patience(&self) -> Option<Instant> {
        self.forwards.iter().filter_map(|f| f.patience).min()
    }

    #[cfg(not(target_os = "linux"))]
    fn forward_patience(&self) -> Option<Instant> {
        None
    }

    /// Forwards that waited on their source until `at` read whatever it has: the sender slowed
    /// down, and its last bytes must not wait for a mark it may never reach.
    #[cfg(target_os = "linux")]
    fn lose_patience(&mut self, at: Instant) {
        for f in &mut self.forwards {
            if f.patience.is_some_and(|t| t <= at) {
                f.patience = None;
                if let Some(src) = self.socks.iter().find(|s| s.id == f.from && !s.forgotten) {
                    f.set_mark(src, 1);
                }
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn lose_patience(&mut self, _at: Instant) {}

    /// Arm the timer for the core's deadline, the lingering sockets' and the forwards' patience,
    /// and report the core's deadline once it has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        loop {
            let fired = self.timer.fired;
            let core_at = self.core.poll_timeout().filter(|&t| Some(t) != fired);
            let linger_at = self.socks.iter().filter_map(|s| s.linger_until).min();
            let at = [core_at, linger_at, self.forward_patience()].into_iter().flatten().min()?;
            if self.timer.arm(at).poll(cx).is_pending() {
                return None;
            }
            for s in &mut self.socks {
                if s.linger_until.is_some_and(|t| t <= at) {
                    s.kill();
                }
            }
            self.lose_patience(at);
            if let Some(t) = core_at.filter(|&t| t <= at) {
                // Remember it: if the core hands back the same deadline, it is not due again.
                self.timer.fired = Some(t);
                return Some(Event::Wakeup);
            }
        }
    }

    /// The core is done: close whatever it left open, then let closing sockets flush and the
    /// remaining hook futures (notifications) finish, for at most the linger time.
    async fn finish(&mut self) {
        let linger = self.opts.linger;
        for s in &mut self.socks {
            s.close(false, linger);
        }
        let _ = tokio::time::timeout(linger, poll_fn(|cx| self.poll_finish(cx))).await;
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(Some(_)) = self.hooks.poll_next_unpin(cx) {}
        for s in &mut self.socks {
            // Closed sockets report nothing; this only moves their bytes.
            let _ = s.poll(cx, &mut self.read_buf);
        }
        self.socks.retain(Sock::is_alive);
        if self.hooks.is_empty() && self.socks.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A forward that reads at least this much at once raises its source's read mark.
#[cfg(target_os = "linux")]
const BATCH_MIN: usize = 64 * 1024;
/// How long a forward waits for its source to reach a raised read mark before it reads what
/// is there: the most a slowing sender's bytes are held back.
#[cfg(target_os = "linux")]
const PATIENCE: Duration = Duration::from_millis(1);

/// A body moving from one socket to another outside the core.
#[cfg(target_os = "linux")]
struct Forward {
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

#[cfg(target_os = "linux")]
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

#[cfg(not(target_os = "linux"))]
struct Forward;

enum Io {
    Connecting(Connecting),
    Open(TcpStream),
    /// Closed, failed, or never opened; removed at the next turn.
    Dead,
}

/// One socket of the connection, with its output queue and reading state.
struct Sock {
    id: ConnId,
    io: Io,
    queue: WriteQueue,
    /// The core asked not to read from it.
    paused: bool,
    /// Its input is being forwarded: the forward reads it, not the usual path.
    forwarding: bool,
    /// Its last read was big: read in bigger pieces.
    bulk: bool,
    /// EOF or a read error was seen.
    read_done: bool,
    /// How far the peer has gone, and how much of that the core has been told.
    end: End,
    reported: End,
    /// Bytes were queued or written since the last `WriteDrained`.
    unreported: bool,
    /// Shut down the writing side once the queue is empty.
    shut_after_flush: bool,
    /// The writing side is shut down; later output is dropped.
    write_shut: bool,
    /// The core closed it and forgot it: no more events; reads are discarded until the peer
    /// closes or `linger_until` passes.
    forgotten: bool,
    linger_until: Option<Instant>,
    linger: Duration,
}

impl Sock {
    fn new(id: ConnId, io: Io) -> Self {
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
        }
    }

    fn is_alive(&self) -> bool {
        !matches!(self.io, Io::Dead)
    }

    fn kill(&mut self) {
        self.io = Io::Dead;
        self.queue.clear();
        self.linger_until = None;
    }

    /// Queue `data`; the driver writes it once the current batch of commands is done.
    fn send(&mut self, data: bytes::Bytes) -> Option<Event> {
        if matches!(self.io, Io::Dead) || self.write_shut {
            return None;
        }
        self.queue.push(data);
        self.unreported = true;
        None
    }

    /// Write queued output without waiting for the socket.
    fn write(&mut self) -> Option<Event> {
        let Io::Open(stream) = &self.io else { return None };
        let result = self.queue.flush(|bufs| stream.try_write_vectored(bufs));
        self.wrote(result)
    }

    fn wrote(&mut self, result: io::Result<usize>) -> Option<Event> {
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
    fn flushed(&mut self) {
        if !self.shut_after_flush {
            return;
        }
        self.shut_after_flush = false;
        self.write_shut = true;
        if let Io::Open(stream) = &self.io {
            // Our FIN. Failing here means the peer is gone, which reading will tell.
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
        }
        if self.forgotten && !self.drains_after_close() {
            self.kill();
        }
    }

    /// Whether, once closed by the core and flushed, this socket is kept to read the peer's
    /// input until it closes. Only the client's: its last response must not be destroyed by
    /// a reset; an upstream's unread input is of no use to anyone.
    fn drains_after_close(&self) -> bool {
        self.id == ConnId::CLIENT && !self.read_done
    }

    /// Carry out `CloseConnection`.
    fn close(&mut self, half: bool, linger: Duration) {
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
    fn ended(&mut self, end: End) {
        self.end = self.end.max(end);
    }

    /// The next `ConnectionClosed` the core is owed for this socket, if any: one for an EOF,
    /// two for a peer that is gone. Nothing once the core has closed the socket itself.
    fn closed_event(&mut self) -> Option<Event> {
        if self.forgotten || self.reported >= self.end {
            return None;
        }
        self.reported = if self.reported == End::Open { End::Eof } else { End::Gone };
        Some(Event::ConnectionClosed { conn: self.id })
    }

    /// `WriteDrained`, if output was sent since the last one and all of it is written.
    fn drained(&mut self) -> Option<Event> {
        if self.unreported && self.queue.is_empty() && !self.forgotten && matches!(self.io, Io::Open(_)) {
            self.unreported = false;
            return Some(Event::WriteDrained { conn: self.id });
        }
        None
    }

    fn wants_read(&self) -> bool {
        !self.read_done && !self.forwarding && (self.forgotten || !self.paused)
    }

    /// Make progress on connecting, writing and reading; the first event wins.
    fn poll(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Option<Event> {
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
            return self.poll_read(cx, buf);
        }
        None
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Option<Event> {
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

    fn read_ended(&mut self, error: Option<io::Error>) -> Option<Event> {
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
enum End {
    Open,
    /// It will send nothing more.
    Eof,
    /// It cannot be written to either.
    Gone,
}

/// A single reusable `Sleep` for whichever deadline comes first.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The last core deadline answered with `Wakeup`.
    fired: Option<Instant>,
}

impl Timer {
    /// Whether the timer is set to go off by `at`.
    fn covers(&self, at: Instant) -> bool {
        let at = tokio::time::Instant::from_std(at);
        self.sleep.as_ref().is_some_and(|s| !s.is_elapsed() && s.deadline() <= at)
    }

    fn arm(&mut self, at: Instant) -> Pin<&mut Sleep> {
        let deadline = tokio::time::Instant::from_std(at);
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut()
    }
}

/// The time events are stamped with: tokio's clock, so that tests may pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

fn log(level: LogLevel, peer: SocketAddr, message: &str) {
    match level {
        LogLevel::Debug => tracing::debug!(client = %peer, "{message}"),
        LogLevel::Info => tracing::info!(client = %peer, "{message}"),
        LogLevel::Warn => tracing::warn!(client = %peer, "{message}"),
    }
}
