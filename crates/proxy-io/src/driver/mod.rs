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
//!
//! This file is the loop, which runs carriers too (see [`crate::carrier`]); `socket.rs` is one
//! socket (queue, reads, ends), `timer.rs` the one timer for every deadline, and `forward.rs`
//! the bodies moved by `splice(2)`: everything Linux-only is there (`forward_portable.rs`
//! stands in elsewhere).

#[cfg_attr(not(target_os = "linux"), path = "forward_portable.rs")]
mod forward;
mod socket;
mod timer;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use proxy_core::upstreams::Parked;
use proxy_core::{Command, Config, ConnId, Connection, Event, FlowId, Hook, HookReply, LogLevel};
use tokio::net::TcpStream;

use crate::carrier::{Carrying, Joined};
use crate::handler::Handler;
use crate::inject::{Inbox, Injector};
use crate::open::open;
use crate::pool::SharedPool;
use forward::Forward;
use socket::{Io, Sock};
use timer::Timer;

/// The read buffer's size when a socket whose last read was big tops it up.
pub(crate) const READ_BUF: usize = 256 * 1024;
/// The read buffer's size when a socket whose last read was small tops it up.
const SMALL_READ_BUF: usize = 64 * 1024;
/// Below this much spare capacity the read buffer is topped up before a read.
const MIN_READ: usize = 4 * 1024;
/// Reads at least this big hand their buffer over to the core instead of splitting it.
const BIG_READ: usize = 16 * 1024;

/// Events fed to the core before what they produced is sent: enough to gather what arrives
/// together, few enough that the first of them is not kept waiting.
const BATCH: usize = 16;

/// Bytes read or sent after which a batch ends whatever is still ready: a TLS record's worth.
const BATCH_BYTES: usize = 16 * 1024;

/// What the driver needs from the core. [`Connection`] is the only real implementation; tests
/// drive the loop with small fakes.
pub(crate) trait Core: Send {
    fn handle(&mut self, now: Instant, event: Event);
    fn poll_command(&mut self) -> Option<Command>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn is_closed(&self) -> bool;
    /// See [`Connection::set_waker`].
    fn set_waker(&mut self, _waker: Waker) {}
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

    fn set_waker(&mut self, waker: Waker) {
        Connection::set_waker(self, waker)
    }
}

/// How other tasks wake this one for its core: a gateway granting a backend to a queued
/// request (a flag the loop turns into [`Event::Wakeup`]), or the proxy beginning a graceful
/// shutdown ([`Event::Shutdown`]); and the task to wake.
#[derive(Default)]
pub(crate) struct Nudge {
    woken: AtomicBool,
    draining: AtomicBool,
    task: AtomicWaker,
}

impl Nudge {
    /// Tell the connection the proxy is shutting down: its core gets [`Event::Shutdown`].
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
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
    /// Idle upstream connections shared with the other tasks (`Config::share_upstreams`),
    /// and the carriers.
    pub(crate) pool: Option<Arc<SharedPool>>,
    /// The proxy's configuration, for the carriers this task starts.
    pub(crate) config: Arc<Config>,
}

/// Run one client connection to its end; `nudge` is how the proxy reaches it (see
/// [`Nudge::drain`]).
pub(crate) async fn drive<C: Core, H: Handler>(
    core: C,
    client: TcpStream,
    peer: SocketAddr,
    handler: &H,
    opts: &Options,
    injector: &Injector,
    nudge: Arc<Nudge>,
) {
    let make_hook = |flow: FlowId, hook: Hook| {
        let blocking = hook.is_blocking();
        let reply = handler.hook(flow, hook);
        async move { (flow, blocking, reply.await) }
    };
    let inbox = Inbox::new(injector.clone(), peer);
    Box::new(Driver::new(core, (ConnId::CLIENT, client), peer, opts, make_hook, inbox, nudge)).run().await
}

/// Run `parked`, an idle HTTP/2 connection, as a carrier (see [`crate::carrier`]) on this
/// runtime, listed in `pool`. Gives it back if it cannot carry streams (it speaks HTTP/1.1).
fn start_carrier(
    pool: &Arc<SharedPool>,
    opts: &Options,
    injector: Injector,
    parked: Box<Parked>,
    tcp: TcpStream,
) -> Result<(), (Box<Parked>, TcpStream)> {
    let key = parked.key();
    let streams = parked.max_streams();
    let (core, conn) = match Connection::carrier(opts.config.clone(), parked, pool.idle_timeout()) {
        Ok(made) => made,
        Err(parked) => return Err((parked, tcp)),
    };
    let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let carrying = Carrying::listed(pool, key.clone(), streams);
    tracing::debug!(server = %key, "an idle HTTP/2 connection carries streams of every client from now on");
    let opts = opts.clone();
    tokio::spawn(async move {
        drive_carrier(core, (conn, tcp), peer, carrying, &opts, &injector).await;
    });
    Ok(())
}

/// Run a carrier to its end: its one socket is `server`, and the client connections'
/// messages come from `carrying`.
async fn drive_carrier(
    core: Connection,
    server: (ConnId, TcpStream),
    peer: SocketAddr,
    carrying: Carrying,
    opts: &Options,
    injector: &Injector,
) {
    // A carrier raises no hooks.
    let make_hook = |flow: FlowId, _hook: Hook| std::future::ready((flow, false, HookReply::Continue));
    let inbox = Inbox::new(injector.clone(), peer);
    let mut driver = Box::new(Driver::new(core, server, peer, opts, make_hook, inbox, Arc::default()));
    driver.carrying = Some(carrying);
    driver.run().await
}

struct Driver<'o, C, M, F> {
    core: C,
    peer: SocketAddr,
    opts: &'o Options,
    socks: Vec<Sock>,
    /// Events the driver produced while carrying out commands (a failed write), fed before
    /// anything new is observed.
    events: VecDeque<Event>,
    hooks: FuturesUnordered<F>,
    make_hook: M,
    timer: Timer,
    /// The core's deadline, once asked since its last turn: it changes only with a turn.
    deadline: Option<Option<Instant>>,
    /// Bodies the core handed over with `Command::Forward`.
    forwards: Vec<Forward>,
    /// Where the next round over the sockets starts, so that one busy socket cannot starve
    /// the others.
    next: usize,
    /// WebSocket messages user code injects into this connection's flows.
    inbox: Inbox,
    nudge: Arc<Nudge>,
    /// Streams on carriers that stand for some of this connection's upstream connections.
    joined: Joined,
    /// When the task runs a carrier: the streams it carries.
    carrying: Option<Carrying>,
    /// Bytes read and sent in the batch being fed (see [`poll_batch`](Self::poll_batch)).
    unsettled: usize,
}

impl<'o, C, M, F> Driver<'o, C, M, F>
where
    C: Core,
    M: FnMut(FlowId, Hook) -> F,
    F: Future<Output = (FlowId, bool, HookReply)>,
{
    /// A socket more. Room for one only: a connection mostly has two sockets, and a Vec's
    /// growth from one makes room for four.
    fn add_sock(&mut self, sock: Sock) {
        self.socks.reserve_exact(1);
        self.socks.push(sock);
    }

    fn new(
        mut core: C,
        (first, socket): (ConnId, TcpStream),
        peer: SocketAddr,
        opts: &'o Options,
        make_hook: M,
        inbox: Inbox,
        nudge: Arc<Nudge>,
    ) -> Self {
        core.set_waker(Waker::from(nudge.clone()));
        Self {
            core,
            peer,
            opts,
            socks: vec![Sock::new(first, Io::Open(socket))],
            events: VecDeque::new(),
            hooks: FuturesUnordered::new(),
            make_hook,
            timer: Timer::default(),
            deadline: None,
            forwards: Vec::new(),
            next: 0,
            inbox,
            nudge,
            joined: Joined::default(),
            carrying: None,
            unsettled: 0,
        }
    }

    /// Boxed: a `Driver` held by value in this future, and that future in `drive`'s, made
    /// each connection's task 2.3 KB; boxed, task and driver come to 1.8 KB.
    async fn run(mut self: Box<Self>) {
        self.turn(now(), Event::Start);
        self.settle();
        while !self.core.is_closed() {
            poll_fn(|cx| self.poll_batch(cx)).await;
        }
        // Boxed: its timer would otherwise take room in every connection's task all along.
        Box::pin(self.finish()).await;
    }

    /// Feed the core every event that is ready now (up to [`BATCH`]), then send what they
    /// produced: pending only when no event was.
    /// A batch also ends once it has read or sent [`BATCH_BYTES`]: bulk data is passed on
    /// read by read, as a pipeline should, and only small pieces wait for each other.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered once for the batch, before any look at the nudges: a nudge after it
        // wakes the task, whether or not this batch still sees it.
        self.nudge.task.register(cx.waker());
        // The events of one batch are taken as happening at once, one clock read for all;
        // but a deadline's wakeup reads it again, or the core could find its deadline not
        // yet reached, and the timer (which fires a deadline once) never wake it for it again.
        let start = now();
        let mut fed = 0;
        while fed < BATCH && self.unsettled < BATCH_BYTES && !self.core.is_closed() {
            match self.poll_event(cx) {
                Poll::Ready(event) => {
                    if let Event::DataReceived { data, .. } = &event {
                        self.unsettled += data.len();
                    }
                    let now = if matches!(event, Event::Wakeup) { now() } else { start };
                    self.turn(now, event);
                }
                Poll::Pending if fed == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
            fed += 1;
        }
        self.settle();
        Poll::Ready(())
    }

    /// One turn of the core: `event` in, its commands carried out. What it sends waits for
    /// [`settle`](Self::settle), so that the turns of one batch (a carried stream's head,
    /// body and end arrive as three messages) leave in one write.
    fn turn(&mut self, now: Instant, event: Event) {
        self.core.handle(now, event);
        while let Some(cmd) = self.core.poll_command() {
            self.execute(cmd);
        }
        self.deadline = None;
    }

    /// Send what the turns since the last call produced.
    fn settle(&mut self) {
        self.unsettled = 0;
        // What the turns had for carriers, or from a carrier for its streams, goes in one
        // message each.
        let gone = self.joined.flush();
        self.events.extend(gone);
        if let Some(carrying) = &mut self.carrying {
            let gone = carrying.flush();
            self.events.extend(gone);
        }
        // One vectored write per socket for everything the batch produced: a response head
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
                self.unsettled += data.len();
                if let Some(event) = self.sock(conn).and_then(|s| s.send(data)) {
                    self.events.push_back(event);
                }
            }
            Command::OpenConnection { conn, server } => {
                tracing::debug!(client = %self.peer, conn = conn.0, %server, "opening");
                let connecting = open(server, self.opts.connect_timeout);
                self.add_sock(Sock::new(conn, Io::Connecting(connecting)));
            }
            Command::Reuse { conn, server, key, join } => {
                if join && self.opts.pool.as_ref().is_some_and(|pool| self.joined.join(pool, &key, conn)) {
                    tracing::debug!(client = %self.peer, conn = conn.0, %key, "joined a carrier");
                    self.events.push_back(Event::Joined { conn });
                    return;
                }
                match self.opts.pool.as_ref().and_then(|pool| pool.take(&key)) {
                    Some((parked, tcp)) => {
                        tracing::debug!(client = %self.peer, conn = conn.0, %key, "reusing a parked connection");
                        self.add_sock(Sock::new(conn, Io::Open(tcp)));
                        self.events.push_back(Event::Adopted { conn, parked });
                    }
                    None => self.execute(Command::OpenConnection { conn, server }),
                }
            }
            Command::Park { conn, parked } => self.park(conn, parked),
            Command::Carry { conn, message } => self.joined.carry(conn, message),
            Command::StreamOut { stream, message } => {
                if let Some(carrying) = &mut self.carrying {
                    carrying.out(stream, message);
                }
            }
            Command::Capacity { streams } => {
                if let Some(carrying) = &self.carrying {
                    carrying.capacity(streams);
                }
            }
            Command::CloseConnection { conn, .. } if self.joined.close(conn) => {}
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
                match &hook {
                    Hook::WebSocketStart(_) => self.inbox.open(flow),
                    Hook::WebSocketEnd(_) => self.inbox.close(flow),
                    _ => {}
                }
                let fut = (self.make_hook)(flow, hook);
                self.hooks.push(fut);
            }
            Command::Log { level, message } => log(level, self.peer, &message),
        }
    }

    /// Hand the idle socket of `conn` to the shared pool with what the core parked; one that
    /// cannot be (output still queued, its peer gone, no pool) is closed.
    fn park(&mut self, conn: ConnId, mut parked: Box<Parked>) {
        // Let go of the backend only once the connection is in the pool, where the request
        // given its slot will look.
        let hold = parked.take_hold();
        let Some(at) = self.socks.iter().position(|s| s.id == conn && !s.forgotten) else { return };
        // What this turn queued for it goes first (a TLS handshake's last flight, when an
        // HTTP/2 connection is parked as soon as it opened, to become a carrier).
        if !self.socks[at].queue.is_empty() {
            if let Some(event) = self.socks[at].write() {
                self.events.push_back(event);
            }
        }
        let sock = &self.socks[at];
        let idle = sock.queue.is_empty() && !sock.forwarding && !sock.read_done && !sock.write_shut;
        match (&self.opts.pool, idle, &sock.io) {
            (Some(pool), true, Io::Open(_)) => {
                let sock = self.socks.remove(at);
                if let Io::Open(tcp) = sock.io {
                    // An HTTP/2 connection carries streams of every client from now on,
                    // unless a carrier to its server has room; any other waits in the pool for
                    // the next one.
                    let carries = parked.carries_streams() && self.opts.config.share_streams;
                    let parked = match carries && pool.wants_carrier(&parked.key()) {
                        true => start_carrier(pool, self.opts, self.inbox.injector(), parked, tcp),
                        false => Err((parked, tcp)),
                    };
                    if let Err((parked, tcp)) = parked {
                        pool.park(parked, tcp);
                    }
                }
                drop(hold);
            }
            _ => {
                let linger = self.opts.linger;
                self.socks[at].close(false, linger);
            }
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
        // (An empty set has nothing to finish: a hook pushed later is polled on the next pass.)
        while let Poll::Ready(Some((flow, blocking, reply))) = match self.hooks.is_empty() {
            true => Poll::Pending,
            false => self.hooks.poll_next_unpin(cx),
        } {
            // A notification's answer has nowhere to go.
            if blocking {
                return Poll::Ready(Event::HookReply { flow, reply });
            }
        }
        if let Poll::Ready(Some(event)) = self.inbox.poll(cx) {
            return Poll::Ready(event);
        }
        if let Poll::Ready(event) = self.joined.poll(cx) {
            return Poll::Ready(event);
        }
        if let Some(Poll::Ready(event)) = self.carrying.as_mut().map(|c| c.poll(cx)) {
            return Poll::Ready(event);
        }
        // (A plain load first: the swap is a locked write, and the nudges are rare.)
        if self.nudge.draining.load(Ordering::Relaxed) && self.nudge.draining.swap(false, Ordering::Acquire) {
            self.socks.iter_mut().for_each(Sock::hurry);
            return Poll::Ready(Event::Shutdown);
        }
        if self.nudge.woken.load(Ordering::Relaxed) && self.nudge.woken.swap(false, Ordering::Acquire) {
            return Poll::Ready(Event::Wakeup);
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
            if let Some(event) = self.socks[at].poll(cx) {
                self.next = at + 1;
                return Poll::Ready(event);
            }
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
            let _ = s.poll(cx);
        }
        self.socks.retain(Sock::is_alive);
        if self.hooks.is_empty() && self.socks.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The time events are stamped with: tokio's clock, so that tests may pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn log(level: LogLevel, peer: SocketAddr, message: &str) {
    match level {
        LogLevel::Debug => tracing::debug!(client = %peer, "{message}"),
        LogLevel::Info => tracing::info!(client = %peer, "{message}"),
        LogLevel::Warn => tracing::warn!(client = %peer, "{message}"),
    }
}
