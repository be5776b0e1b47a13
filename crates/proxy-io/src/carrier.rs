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

use std::collections::HashMap;
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
    Attach { stream: StreamTag, conn: ConnId, reply: mpsc::UnboundedSender<Event> },
    /// A step of the stream's exchange.
    Message { stream: StreamTag, message: Carried },
    /// The client connection is done with the stream.
    Gone { stream: StreamTag },
}

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

/// A client connection task's streams on carriers, and the channel carriers answer on.
#[derive(Default)]
pub(crate) struct Joined {
    streams: Vec<JoinedStream>,
    channel: Option<(mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>)>,
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

    /// Hand `message` to the carrier of `conn`. If it is gone, the stream ends: the event
    /// that says so is returned.
    pub(crate) fn carry(&mut self, conn: ConnId, message: Carried) -> Option<Event> {
        let at = self.streams.iter().position(|s| s.conn == conn)?;
        let joined = &self.streams[at];
        if joined.handle.send(ToCarrier::Message { stream: joined.stream, message }) {
            return None;
        }
        let joined = self.streams.remove(at);
        self.leave(&joined);
        Some(Event::ConnectionClosed { conn })
    }

    /// The core closed `conn`: if it is a stream on a carrier, it leaves. Returns whether it
    /// was one.
    pub(crate) fn close(&mut self, conn: ConnId) -> bool {
        let Some(at) = self.streams.iter().position(|s| s.conn == conn) else { return false };
        let joined = self.streams.remove(at);
        joined.handle.send(ToCarrier::Gone { stream: joined.stream });
        self.leave(&joined);
        true
    }

    fn leave(&self, joined: &JoinedStream) {
        if let Some(pool) = &self.pool {
            pool.leave(joined.carrier);
        }
    }

    /// What a carrier sent one of the streams.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        match &mut self.channel {
            Some((_, rx)) if !self.streams.is_empty() => match rx.poll_recv(cx) {
                Poll::Ready(Some(event)) => Poll::Ready(event),
                _ => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

impl Drop for Joined {
    /// The task ends: its streams leave their carriers (which reset those still open).
    fn drop(&mut self) {
        for joined in std::mem::take(&mut self.streams) {
            joined.handle.send(ToCarrier::Gone { stream: joined.stream });
            self.leave(&joined);
        }
    }
}

/// A carrier task's side: its inbox, and where each stream's messages go.
pub(crate) struct Carrying {
    inbox: Inbox,
    routes: HashMap<StreamTag, (ConnId, mpsc::UnboundedSender<Event>)>,
}

impl Carrying {
    pub(crate) fn new(inbox: Inbox) -> Self {
        Self { inbox, routes: HashMap::new() }
    }

    /// The next message from a client connection, as the carrier's event.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            let Poll::Ready(Some(message)) = self.inbox.rx.poll_recv(cx) else { return Poll::Pending };
            match message {
                ToCarrier::Attach { stream, conn, reply } => {
                    self.routes.insert(stream, (conn, reply));
                }
                ToCarrier::Message { stream, message } => return Poll::Ready(Event::Stream { stream, message }),
                ToCarrier::Gone { stream } => {
                    self.routes.remove(&stream);
                    return Poll::Ready(Event::StreamGone { stream });
                }
            }
        }
    }

    /// Send `message` to the client connection of `stream`. If that is gone, the stream is:
    /// the event that tells the carrier is returned.
    pub(crate) fn out(&mut self, stream: StreamTag, message: Carried) -> Option<Event> {
        let (conn, reply) = self.routes.get(&stream)?;
        if reply.send(Event::Carried { conn: *conn, message }).is_ok() {
            return None;
        }
        self.routes.remove(&stream);
        Some(Event::StreamGone { stream })
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
        self.inbox.pool.remove_carrier(self.inbox.id);
        self.inbox.rx.close();
        while let Ok(message) = self.inbox.rx.try_recv() {
            if let ToCarrier::Attach { stream, conn, reply } = message {
                self.routes.insert(stream, (conn, reply));
            }
        }
        for (_, (conn, reply)) in self.routes.drain() {
            let _ = reply.send(Event::ConnectionClosed { conn });
        }
    }
}
