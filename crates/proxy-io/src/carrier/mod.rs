//! Carriers: an upstream HTTP/2 connection run as a task of its own, carrying the streams of
//! client connections on any thread (the protocol is `proxy_core`'s: see
//! [`Connection::carrier`]).
//!
//! A connection task whose core parks an HTTP/2 connection starts a carrier with it instead
//! of pooling it (the driver's `start_carrier`), and the carrier is listed in the shared pool
//! under its destination ([`Carrying::listed`]). A task whose core asks for a connection that
//! a stream would do for ([`Command::Reuse`] with `join`) takes a place on one
//! ([`SharedPool::join`]), tags its stream and tells the carrier where to send what comes back
//! ([`ToCarrier::Attach`]); from then on the two tasks exchange [`Carried`] messages over
//! channels, whichever threads they run on: what one turn of a task has for the other goes as
//! one message, and what has arrived when the other looks is handed to its core as one event
//! ([`Event::Streams`], [`Event::Carried`]), which the core settles once. What may be in a
//! channel at once is bounded by the core on both sides (a request body waits for the carrier
//! to say it went on; a response body's window opens only while the client side has room), so
//! the channels need no bound of their own.
//!
//! This file is the two sides of those channels; `handle.rs` is what the pool keeps of a
//! carrier (the handle tasks reach it by, the messages they send it, its thread).
//!
//! [`Connection::carrier`]: proxy_core::Connection::carrier
//! [`Command::Reuse`]: proxy_core::Command::Reuse

pub(crate) mod handle;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use proxy_core::upstreams::{CarrierId, PoolKey};
use proxy_core::{Carried, ConnId, Event, StreamTag};
use tokio::sync::mpsc;

use crate::pool::SharedPool;
use handle::{CarrierHandle, ToCarrier, Turn};

pub(crate) use handle::set_home;

/// What one turn of a carrier's task has for one client connection's task: a message for
/// each of its streams' steps, in order.
type Answers = Vec<(ConnId, Carried)>;

/// Most messages of either channel handed to a core as one event: enough to gather one
/// turn's worth from every task on the other side, few enough that an event stays a batch.
const GATHER: usize = 64;

/// A carrier task's end of its channel, and its place in the pool.
struct Inbox {
    rx: mpsc::UnboundedReceiver<ToCarrier>,
    id: CarrierId,
    pool: Arc<SharedPool>,
}

/// A stream a client connection's task has on a carrier.
struct JoinedStream {
    conn: ConnId,
    stream: StreamTag,
    carrier: CarrierId,
    handle: Arc<CarrierHandle>,
    /// It carries an exchange, and counts against the carrier's limit (not while it waits
    /// between exchanges).
    busy: bool,
}

/// A client connection task's streams on carriers, what this turn has for their carriers
/// (sent once the turn is over: one wake-up of a carrier per turn, not per message), and the
/// channel carriers answer on.
#[derive(Default)]
pub(crate) struct Joined {
    streams: Vec<JoinedStream>,
    outbox: Vec<(CarrierId, Arc<CarrierHandle>, Turn)>,
    channel: Option<(mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>)>,
    /// An event taken from the channel behind a batch of carried messages, for next time.
    held: Option<Event>,
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
        self.streams.push(JoinedStream { conn, stream, carrier, handle, busy: true });
        true
    }

    /// Hand `message` to the carrier of `conn` (at the end of the turn). The carrier's count
    /// of streams follows the exchanges: a stream that waits between two gives its place up.
    pub(crate) fn carry(&mut self, conn: ConnId, message: Carried) {
        let Some(at) = self.streams.iter().position(|s| s.conn == conn) else { return };
        let joined = &mut self.streams[at];
        let busy = message.busy_after(joined.busy);
        if busy != joined.busy {
            joined.busy = busy;
            if let Some(pool) = &self.pool {
                match busy {
                    true => pool.rejoin(joined.carrier),
                    false => pool.leave(joined.carrier),
                }
            }
        }
        self.post(at, Some(message));
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
        Self::leave(self.pool.as_ref(), &joined);
        true
    }

    /// `joined` leaves its carrier: its place there is given back, if it held one.
    fn leave(pool: Option<&Arc<SharedPool>>, joined: &JoinedStream) {
        if let (Some(pool), true) = (pool, joined.busy) {
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
                Self::leave(self.pool.as_ref(), joined);
            }
            self.streams.retain(|s| s.carrier != carrier);
        }
        gone
    }

    /// What carriers sent the streams: the messages that have arrived, as one event.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Some(event) = self.held.take() {
            return Poll::Ready(event);
        }
        let Some((_, rx)) = self.channel.as_mut().filter(|_| !self.streams.is_empty()) else { return Poll::Pending };
        let Poll::Ready(Some(event)) = rx.poll_recv(cx) else { return Poll::Pending };
        let Event::Carried { mut messages } = event else { return Poll::Ready(event) };
        for _ in 1..GATHER {
            match rx.try_recv() {
                Ok(Event::Carried { messages: more }) => messages.extend(more),
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        Poll::Ready(Event::Carried { messages })
    }
}

impl Drop for Joined {
    /// The task ends: its streams leave their carriers (which reset those still open).
    fn drop(&mut self) {
        for at in 0..self.streams.len() {
            self.post(at, None);
        }
        for joined in std::mem::take(&mut self.streams) {
            Self::leave(self.pool.as_ref(), &joined);
        }
        for (_, handle, turn) in self.outbox.drain(..) {
            handle.send(ToCarrier::Turn(turn));
        }
    }
}

/// A carrier task's side: its inbox, where each stream's messages go, and what this turn
/// has for each client connection's task (sent once the turn is over).
pub(crate) struct Carrying {
    inbox: Inbox,
    routes: HashMap<StreamTag, (ConnId, mpsc::UnboundedSender<Event>)>,
    /// Per client connection's task (its channel), the messages of this turn for its streams.
    outbox: Vec<(mpsc::UnboundedSender<Event>, Answers)>,
}

impl Carrying {
    /// A new carrier to `key`, taking `streams` at once, listed in `pool` for client
    /// connections to join: its task's side.
    pub(crate) fn listed(pool: &Arc<SharedPool>, key: PoolKey, streams: usize) -> Self {
        let (handle, rx) = CarrierHandle::channel();
        let id = pool.add_carrier(key, Arc::new(handle), streams);
        Self::new(Inbox { rx, id, pool: Arc::clone(pool) })
    }

    fn new(inbox: Inbox) -> Self {
        Self { inbox, routes: HashMap::new(), outbox: Vec::new() }
    }

    /// What client connections have said since the carrier last looked, as one event.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let mut messages = Vec::new();
        for taken in 0.. {
            if taken == GATHER {
                // More is waiting: look again soon, whatever this poll returns.
                cx.waker().wake_by_ref();
                break;
            }
            let Poll::Ready(Some(message)) = self.inbox.rx.poll_recv(cx) else { break };
            match message {
                ToCarrier::Attach { stream, conn, reply } => {
                    self.routes.insert(stream, (conn, reply));
                }
                ToCarrier::Turn(turn) => {
                    for (stream, message) in turn {
                        if message.is_none() {
                            self.routes.remove(&stream);
                        }
                        messages.push((stream, message));
                    }
                }
            }
        }
        match messages.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(Event::Streams { messages }),
        }
    }

    /// Send `message` to the client connection of `stream` (at the end of the turn).
    pub(crate) fn out(&mut self, stream: StreamTag, message: Carried) {
        let Some((conn, reply)) = self.routes.get(&stream) else { return };
        match self.outbox.iter_mut().find(|(to, _)| to.same_channel(reply)) {
            Some((_, messages)) => messages.push((*conn, message)),
            None => self.outbox.push((reply.clone(), vec![(*conn, message)])),
        }
    }

    /// The turn is over: send each client connection's task what it has. A client
    /// connection that is gone takes its streams with it: the event that tells the carrier
    /// is returned.
    pub(crate) fn flush(&mut self) -> Option<Event> {
        let mut gone = Vec::new();
        for (reply, messages) in self.outbox.drain(..) {
            if reply.send(Event::Carried { messages }).is_err() {
                self.routes.retain(|stream, (_, to)| {
                    let lost = to.same_channel(&reply);
                    if lost {
                        gone.push((*stream, None));
                    }
                    !lost
                });
            }
        }
        (!gone.is_empty()).then_some(Event::Streams { messages: gone })
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
            let _ = reply.send(Event::ConnectionClosed { conn });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use proxy_core::upstreams::{PoolKey, PoolLimits};
    use proxy_core::ServerAddr;

    use super::*;

    /// A carrier's end, listed in a pool, and the handle client connections reach it by.
    fn carrier() -> (Carrying, Arc<CarrierHandle>) {
        let pool = SharedPool::new(PoolLimits::default());
        let (handle, rx) = CarrierHandle::channel();
        let handle = Arc::new(handle);
        let key = PoolKey { server: ServerAddr::new("a.test", 443), tls: true, proxy: None, name: None };
        let id = pool.add_carrier(key, Arc::clone(&handle), 100);
        (Carrying::new(Inbox { rx, id, pool }), handle)
    }

    #[test]
    fn a_carrier_takes_everything_that_has_arrived_as_one_event_in_order() {
        let (mut carrying, handle) = carrier();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(carrying.poll(&mut cx).is_pending(), "nothing yet");
        let (reply, mut answers) = mpsc::unbounded_channel();
        let (a, b) = (handle.tag(), handle.tag());
        assert!(handle.send(ToCarrier::Attach { stream: a, conn: ConnId(2), reply: reply.clone() }));
        assert!(handle.send(ToCarrier::Attach { stream: b, conn: ConnId(3), reply }));
        assert!(carrying.poll(&mut cx).is_pending(), "joining says nothing to the core");
        // Two turns of client connections: both streams leave, b first.
        assert!(handle.send(ToCarrier::Turn(vec![(b, None)])));
        assert!(handle.send(ToCarrier::Turn(vec![(a, None)])));
        match carrying.poll(&mut cx) {
            Poll::Ready(Event::Streams { messages }) => {
                let order: Vec<(StreamTag, bool)> = messages.iter().map(|(s, m)| (*s, m.is_some())).collect();
                assert_eq!(order, [(b, false), (a, false)]);
            }
            other => panic!("expected one Streams event, got {other:?}"),
        }
        assert!(carrying.poll(&mut cx).is_pending());
        // Streams that left have no route: nothing is sent for them, and the client side hears
        // of nothing when the carrier ends.
        drop(carrying);
        assert!(answers.try_recv().is_err());
    }

    #[test]
    fn a_client_task_that_is_gone_takes_all_its_streams_with_it() {
        let (mut carrying, handle) = carrier();
        let mut cx = Context::from_waker(Waker::noop());
        let (reply, answers) = mpsc::unbounded_channel();
        let (a, b) = (handle.tag(), handle.tag());
        assert!(handle.send(ToCarrier::Attach { stream: a, conn: ConnId(2), reply: reply.clone() }));
        assert!(handle.send(ToCarrier::Attach { stream: b, conn: ConnId(3), reply: reply.clone() }));
        assert!(carrying.poll(&mut cx).is_pending());
        drop((answers, reply));
        // Nothing to send: nobody is told.
        assert!(carrying.flush().is_none());
        // A message for one stream finds the task gone: both its streams are.
        carrying.outbox.push((carrying.routes[&a].1.clone(), Vec::new()));
        match carrying.flush() {
            Some(Event::Streams { mut messages }) => {
                messages.sort_by_key(|(s, _)| *s);
                let gone: Vec<(StreamTag, bool)> = messages.iter().map(|(s, m)| (*s, m.is_none())).collect();
                assert_eq!(gone, [(a, true), (b, true)]);
            }
            other => panic!("expected the streams gone, got {other:?}"),
        }
        assert!(carrying.routes.is_empty());
    }
}
