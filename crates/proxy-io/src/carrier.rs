//! Carriers: an upstream HTTP/2 connection run as a task of its own, carrying the streams of
//! client connections on any thread (the protocol is `proxy_core`'s: see
//! [`Connection::carrier`]).
//!
//! A connection task whose core parks an HTTP/2 connection starts a carrier with it instead
//! of pooling it ([`start`]), and the carrier is listed in the shared pool under its
//! destination. A task whose core asks for a connection that a stream would do for
//! ([`Command::Reuse`] with `join`) takes a place on one ([`SharedPool::join`]), tags its
//! stream and tells the carrier where to send what comes back ([`ToCarrier::Attach`]); from then
//! on the two tasks exchange [`Carried`] messages over channels, whichever threads they run
//! on. What may be in a channel at once is bounded by the core on both sides (a request body
//! waits for the carrier to say it went on; a response body's window opens only while the
//! client side has room), so the channels need no bound of their own.
//!
//! [`Command::Reuse`]: proxy_core::Command::Reuse

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use proxy_core::upstreams::{CarrierId, Parked, PoolKey};
use proxy_core::{Carried, ConnId, Connection, Event, StreamTag};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::driver::{self, Options};
use crate::inject::Injector;
use crate::pool::SharedPool;

thread_local! {
    /// The driver thread this is, where each thread has a runtime of its own and its own
    /// share of the carriers; `None` where tasks move between threads.
    static HOME: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// This thread is driver thread `i` of a runtime per core: the carriers it starts are its
/// own, and its connections join only those.
pub(crate) fn set_home(i: usize) {
    HOME.with(|home| home.set(Some(i as u64)));
}

/// See [`set_home`].
pub(crate) fn home() -> Option<u64> {
    HOME.with(std::cell::Cell::get)
}

/// What a client connection's task tells a carrier.
pub(crate) enum ToCarrier {
    /// A stream joined: what the carrier has for it goes to `reply`, as events for `conn`.
    Attach { stream: StreamTag, conn: ConnId, reply: mpsc::UnboundedSender<Batch> },
    /// What one turn of the task had for the carrier's streams, in order: a step of a
    /// stream's exchange, or `None` when the client connection is done with the stream.
    Turn(Turn),
}

/// What one turn of a client connection's task has for one carrier (see [`ToCarrier::Turn`]).
type Turn = Vec<(StreamTag, Option<Carried>)>;

/// Events for one client connection's task, from one turn of a carrier's.
pub(crate) type Batch = Vec<Event>;

/// How tasks reach a carrier.
pub(crate) struct CarrierHandle {
    tx: mpsc::UnboundedSender<ToCarrier>,
    next_tag: AtomicU64,
}

impl std::fmt::Debug for CarrierHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CarrierHandle")
    }
}

impl CarrierHandle {
    /// A name for a new stream, unique on this carrier.
    pub(crate) fn tag(&self) -> StreamTag {
        StreamTag(self.next_tag.fetch_add(1, Ordering::Relaxed))
    }

    /// Tell the carrier; `false` if it is gone.
    pub(crate) fn send(&self, message: ToCarrier) -> bool {
        self.tx.send(message).is_ok()
    }
}

/// Run `parked`, an idle HTTP/2 connection, as a carrier on this runtime. Gives it back if it
/// cannot carry streams (it speaks HTTP/1.1).
pub(crate) fn start(
    pool: &Arc<SharedPool>,
    opts: &Options,
    injector: Injector,
    parked: Box<Parked>,
    tcp: TcpStream,
) -> Result<(), (Box<Parked>, TcpStream)> {
    let key = parked.key();
    let parked_streams = parked.max_streams();
    let (core, conn) = match Connection::carrier(opts.config.clone(), parked, pool.idle_timeout()) {
        Ok(made) => made,
        Err(parked) => return Err((parked, tcp)),
    };
    let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (tx, rx) = mpsc::unbounded_channel();
    let streams = parked_streams;
    let id = pool.add_carrier(key.clone(), Arc::new(CarrierHandle { tx, next_tag: AtomicU64::new(0) }), streams);
    tracing::debug!(server = %key, "an idle HTTP/2 connection carries streams of every client from now on");
    let opts = opts.clone();
    let pool = Arc::clone(pool);
    tokio::spawn(async move {
        driver::drive_carrier(core, (conn, tcp), peer, Carrying::new(Inbox { rx, id, pool }), &opts, &injector).await;
    });
    Ok(())
}

/// A carrier task's end of its channel, and its place in the pool.
pub(crate) struct Inbox {
    pub(crate) rx: mpsc::UnboundedReceiver<ToCarrier>,
    pub(crate) id: CarrierId,
    pub(crate) pool: Arc<SharedPool>,
}

/// A stream a client connection's task has on a carrier.
struct JoinedStream {
    conn: ConnId,
    stream: StreamTag,
    carrier: CarrierId,
    handle: Arc<CarrierHandle>,
}

/// A client connection task's streams on carriers, what this turn has for their carriers
/// (sent once the turn is over: one wake-up of a carrier per turn, not per message), and the
/// channel carriers answer on.
#[derive(Default)]
pub(crate) struct Joined {
    streams: Vec<JoinedStream>,
    outbox: Vec<(CarrierId, Arc<CarrierHandle>, Turn)>,
    channel: Option<(mpsc::UnboundedSender<Batch>, mpsc::UnboundedReceiver<Batch>)>,
    inbox: VecDeque<Event>,
    pool: Option<Arc<SharedPool>>,
}

impl Joined {
    /// Make `conn` a stream on a carrier to `key`, if one has room.
    pub(crate) fn join(&mut self, pool: &Arc<SharedPool>, key: &PoolKey, conn: ConnId) -> bool {
        let Some((carrier, handle)) = pool.join(key) else { return false };
        let stream = handle.tag();
        let (reply, _) = self.channel.get_or_insert_with(mpsc::unbounded_channel);
        if !handle.send(ToCarrier::Attach { stream, conn, reply: reply.clone() }) {
            // It ended meanwhile.
            pool.leave(carrier);
            return false;
        }
        self.pool.get_or_insert_with(|| Arc::clone(pool));
        self.streams.push(JoinedStream { conn, stream, carrier, handle });
        true
    }

    /// Hand `message` to the carrier of `conn` (at the end of the turn).
    pub(crate) fn carry(&mut self, conn: ConnId, message: Carried) {
        if let Some(at) = self.streams.iter().position(|s| s.conn == conn) {
            self.post(at, Some(message));
        }
    }

    fn post(&mut self, at: usize, message: Option<Carried>) {
        let joined = &self.streams[at];
        let entry = match self.outbox.iter().position(|(id, ..)| *id == joined.carrier) {
            Some(i) => &mut self.outbox[i],
            None => {
                self.outbox.push((joined.carrier, Arc::clone(&joined.handle), Vec::new()));
                self.outbox.last_mut().expect("just pushed")
            }
        };
        entry.2.push((joined.stream, message));
    }

    /// The core closed `conn`: if it is a stream on a carrier, it leaves. Returns whether it
    /// was one.
    pub(crate) fn close(&mut self, conn: ConnId) -> bool {
        let Some(at) = self.streams.iter().position(|s| s.conn == conn) else { return false };
        self.post(at, None);
        let joined = self.streams.remove(at);
        self.leave(&joined);
        true
    }

    fn leave(&self, joined: &JoinedStream) {
        if let Some(pool) = &self.pool {
            pool.leave(joined.carrier);
        }
    }

    /// The turn is over: send each carrier what it has. A carrier that is gone takes its
    /// streams with it: the events that say so are returned.
    pub(crate) fn flush(&mut self) -> Vec<Event> {
        let mut gone = Vec::new();
        for (carrier, handle, turn) in self.outbox.drain(..) {
            if handle.send(ToCarrier::Turn(turn)) {
                continue;
            }
            for joined in self.streams.iter().filter(|s| s.carrier == carrier) {
                gone.push(Event::ConnectionClosed { conn: joined.conn });
                if let Some(pool) = &self.pool {
                    pool.leave(carrier);
                }
            }
            self.streams.retain(|s| s.carrier != carrier);
        }
        gone
    }

    /// What a carrier sent one of the streams.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Some(event) = self.inbox.pop_front() {
            return Poll::Ready(event);
        }
        match &mut self.channel {
            Some((_, rx)) if !self.streams.is_empty() => match rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    self.inbox.extend(batch);
                    self.inbox.pop_front().map_or(Poll::Pending, Poll::Ready)
                }
                _ => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

impl Drop for Joined {
    /// The task ends: its streams leave their carriers (which reset those still open).
    fn drop(&mut self) {
        for at in 0..self.streams.len() {
            self.post(at, None);
        }
        for joined in std::mem::take(&mut self.streams) {
            self.leave(&joined);
        }
        for (_, handle, turn) in self.outbox.drain(..) {
            handle.send(ToCarrier::Turn(turn));
        }
    }
}

/// A carrier task's side: its inbox, where each stream's messages go, and what this turn
/// has for each stream's client connection (sent once the turn is over).
pub(crate) struct Carrying {
    inbox: Inbox,
    routes: HashMap<StreamTag, (ConnId, mpsc::UnboundedSender<Batch>)>,
    events: VecDeque<Event>,
    outbox: Vec<(StreamTag, Batch)>,
}

impl Carrying {
    pub(crate) fn new(inbox: Inbox) -> Self {
        Self { inbox, routes: HashMap::new(), events: VecDeque::new(), outbox: Vec::new() }
    }

    /// The next message from a client connection, as the carrier's event.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            let Poll::Ready(Some(message)) = self.inbox.rx.poll_recv(cx) else { return Poll::Pending };
            match message {
                ToCarrier::Attach { stream, conn, reply } => {
                    self.routes.insert(stream, (conn, reply));
                }
                ToCarrier::Turn(turn) => {
                    for (stream, message) in turn {
                        let event = match message {
                            Some(message) => Event::Stream { stream, message },
                            None => {
                                self.routes.remove(&stream);
                                Event::StreamGone { stream }
                            }
                        };
                        self.events.push_back(event);
                    }
                }
            }
        }
    }

    /// Send `message` to the client connection of `stream` (at the end of the turn).
    pub(crate) fn out(&mut self, stream: StreamTag, message: Carried) {
        let Some((conn, _)) = self.routes.get(&stream) else { return };
        let event = Event::Carried { conn: *conn, message };
        match self.outbox.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, batch)) => batch.push(event),
            None => self.outbox.push((stream, vec![event])),
        }
    }

    /// The turn is over: send each stream's client connection what it has. A client
    /// connection that is gone takes its stream with it: the events that tell the carrier
    /// are returned.
    pub(crate) fn flush(&mut self) -> Vec<Event> {
        let mut gone = Vec::new();
        for (stream, batch) in self.outbox.drain(..) {
            let Some((_, reply)) = self.routes.get(&stream) else { continue };
            if reply.send(batch).is_err() {
                self.routes.remove(&stream);
                gone.push(Event::StreamGone { stream });
            }
        }
        gone
    }

    /// The carrier takes `streams` at once from now on.
    pub(crate) fn capacity(&self, streams: usize) {
        self.inbox.pool.set_capacity(self.inbox.id, streams);
    }
}

impl Drop for Carrying {
    /// The carrier ended: it is no longer joined, and every stream it still knows of (told
    /// how it ended, or never heard of) hears that it is gone.
    fn drop(&mut self) {
        self.flush();
        self.inbox.pool.remove_carrier(self.inbox.id);
        self.inbox.rx.close();
        while let Ok(message) = self.inbox.rx.try_recv() {
            if let ToCarrier::Attach { stream, conn, reply } = message {
                self.routes.insert(stream, (conn, reply));
            }
        }
        for (_, (conn, reply)) in self.routes.drain() {
            let _ = reply.send(vec![Event::ConnectionClosed { conn }]);
        }
    }
}
