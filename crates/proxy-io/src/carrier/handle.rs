//! What the shared pool keeps of a carrier: the handle client connections' tasks reach it by,
//! with the messages they send it ([`ToCarrier`]), and the driver thread it belongs to where
//! each thread has a runtime of its own ([`home`]).
//!
//! The pool lists carriers, and both sides of a carrier use the pool (`mod.rs`: the carrier's
//! task lists itself there, client connections' tasks take places on it and give them back);
//! so what the pool holds of a carrier lives here, a leaf that `pool.rs` and `mod.rs` use and
//! that uses neither.

use std::sync::atomic::{AtomicU64, Ordering};

use proxy_core::{Carried, ConnId, Event, StreamTag};
use tokio::sync::mpsc;

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
    /// A stream joined: what the carrier has for it goes to `reply`, as messages for `conn`.
    Attach { stream: StreamTag, conn: ConnId, reply: mpsc::UnboundedSender<Event> },
    /// What one turn of the task had for the carrier's streams, in order: a step of a
    /// stream's exchange, or `None` when the client connection is done with the stream.
    Turn(Turn),
}

/// What one turn of a client connection's task has for one carrier (see [`ToCarrier::Turn`]).
pub(super) type Turn = Vec<(StreamTag, Option<Carried>)>;

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
    /// A new carrier's channel: the handle tasks reach it by, and the carrier's end.
    pub(super) fn channel() -> (Self, mpsc::UnboundedReceiver<ToCarrier>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx, next_tag: AtomicU64::new(0) }, rx)
    }

    /// A name for a new stream, unique on this carrier.
    pub(crate) fn tag(&self) -> StreamTag {
        StreamTag(self.next_tag.fetch_add(1, Ordering::Relaxed))
    }

    /// Tell the carrier; `false` if it is gone.
    pub(crate) fn send(&self, message: ToCarrier) -> bool {
        self.tx.send(message).is_ok()
    }
}
