//! The idle upstream connections every connection task shares: the core's
//! [`UpstreamPool`] (which connection, how many, how long) behind a lock, holding the sockets.
//!
//! A task parks a connection when its core says so ([`Command::Park`]) and takes one when its
//! core asks ([`Command::Reuse`]); the lock is held only for the pool's bookkeeping, and
//! sockets that must go are closed after it is released. A connection whose server closed it
//! while it was parked is noticed when taken (its socket reads EOF, or bytes nobody asked
//! for) and closed; the next one is tried. While anything is parked, one task sleeps until
//! the next expiry and closes what expired; it ends when the pool is empty.
//!
//! [`Command::Park`]: proxy_core::Command::Park
//! [`Command::Reuse`]: proxy_core::Command::Reuse

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use proxy_core::upstreams::{CarrierId, Carriers, Parked, PoolKey, PoolLimits, PoolStats, UpstreamPool};

use crate::carrier::handle::{home, CarrierHandle};
use tokio::net::TcpStream;

/// The sweeper sleeps at least this long between two rounds.
const MIN_SWEEP: Duration = Duration::from_millis(100);

/// The pool, and whether a sweeper task runs for it.
struct Inner {
    pool: UpstreamPool<Box<Parked>, std::net::TcpStream>,
    /// HTTP/2 connections that carry streams of every client connection: see
    /// [`crate::carrier`].
    carriers: Carriers<Arc<CarrierHandle>>,
    sweeping: bool,
}

/// The pool, shared by the connection tasks of one proxy.
pub(crate) struct SharedPool {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPool").field("idle", &self.lock().pool.len()).finish()
    }
}

/// A look at a proxy's idle upstream connections, for metrics: [`Proxy::pool_monitor`].
///
/// [`Proxy::pool_monitor`]: crate::Proxy::pool_monitor
#[derive(Debug, Clone)]
pub struct PoolMonitor(pub(crate) Arc<SharedPool>);

impl PoolMonitor {
    /// How many connections are parked now, and the pool's counts so far.
    pub fn stats(&self) -> (usize, PoolStats) {
        let inner = self.0.lock();
        (inner.pool.len(), inner.pool.stats.clone())
    }

    /// The carriers (HTTP/2 connections carrying streams of any client connection): how many
    /// run, how many streams they carry now, and how many streams joined one so far.
    pub fn carriers(&self) -> (usize, usize, u64) {
        let inner = self.0.lock();
        (inner.carriers.len(), inner.carriers.streams(), inner.carriers.joined)
    }
}

impl SharedPool {
    pub(crate) fn new(limits: PoolLimits) -> Arc<Self> {
        let inner = Inner { pool: UpstreamPool::new(limits), carriers: Carriers::default(), sweeping: false };
        Arc::new(Self { inner: Mutex::new(inner) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The pool's bookkeeping cannot be left half-done by a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `tcp` with `parked` for the next request to its destination.
    pub(crate) fn park(self: &Arc<Self>, parked: Box<Parked>, tcp: TcpStream) {
        // Out of this thread's reactor: the thread that takes it may be another
        // (`Builder::threads`).
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => return tracing::debug!(error = %e, "an idle connection could not be parked"),
        };
        let key = parked.key();
        let mut inner = self.lock();
        let gone = inner.pool.park(key, parked, tcp, Instant::now());
        let start = !std::mem::replace(&mut inner.sweeping, true);
        drop(inner);
        drop(gone);
        if start {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// How long an idle connection is kept (and a carrier that carries nothing).
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.lock().pool.limits().idle_timeout
    }

    /// List a new carrier to `key`, taking `streams` at once.
    pub(crate) fn add_carrier(&self, key: PoolKey, handle: Arc<CarrierHandle>, streams: usize) -> CarrierId {
        self.lock().carriers.add(key, handle, streams, home())
    }

    /// Whether a parked connection to `key` that could carry streams is to become a carrier
    /// (none of this thread's to `key` has room), rather than wait whole in the pool.
    pub(crate) fn wants_carrier(&self, key: &PoolKey) -> bool {
        self.lock().carriers.wanted(key, home())
    }

    /// A place on a carrier to `key` (of this thread, where threads have their own), if one
    /// has room.
    pub(crate) fn join(&self, key: &PoolKey) -> Option<(CarrierId, Arc<CarrierHandle>)> {
        self.lock().carriers.join(key, home())
    }

    /// A stream of the carrier `id` that waited between exchanges carries one again.
    pub(crate) fn rejoin(&self, id: CarrierId) {
        self.lock().carriers.rejoin(id);
    }

    /// A stream left the carrier `id`, or waits between exchanges.
    pub(crate) fn leave(&self, id: CarrierId) {
        self.lock().carriers.leave(id);
    }

    /// The carrier `id` takes `streams` at once from now on.
    pub(crate) fn set_capacity(&self, id: CarrierId, streams: usize) {
        self.lock().carriers.set_capacity(id, streams);
    }

    /// The carrier `id` ended.
    pub(crate) fn remove_carrier(&self, id: CarrierId) {
        self.lock().carriers.remove(id);
    }

    /// An idle connection to `key` whose server is still there, if the pool has one.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<(Box<Parked>, TcpStream)> {
        loop {
            let mut expired = Vec::new();
            let taken = self.lock().pool.take(key, Instant::now(), &mut expired);
            drop(expired);
            let (parked, tcp) = taken?;
            if !still_open(&tcp) {
                tracing::debug!(server = %key, "a parked connection was closed by its server");
                continue;
            }
            match TcpStream::from_std(tcp) {
                Ok(tcp) => return Some((parked, tcp)),
                Err(e) => tracing::debug!(server = %key, error = %e, "a parked connection could not be taken"),
            }
        }
    }

}

/// Close parked connections as they expire, until none is left (or the proxy is gone). The
/// flag is cleared under the same lock that parking sets it under, so a connection parked
/// as this ends starts a new sweeper.
async fn sweep(pool: Weak<SharedPool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else { return };
            let mut inner = pool.lock();
            let gone = inner.pool.expire(Instant::now());
            let next = inner.pool.poll_timeout();
            if next.is_none() {
                inner.sweeping = false;
            }
            drop(inner);
            drop(gone);
            match next {
                Some(next) => next,
                None => return,
            }
        };
        let wait = next.saturating_duration_since(Instant::now()).max(MIN_SWEEP);
        tokio::time::sleep(wait).await;
    }
}

/// Whether the server of an idle connection has neither closed it nor sent anything (an
/// idle HTTP/1.1 server has nothing to say: bytes now are a late answer or a goodbye).
fn still_open(tcp: &std::net::TcpStream) -> bool {
    // Parked sockets stay non-blocking (tokio's, handed back).
    let mut byte = [0u8; 1];
    matches!(tcp.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
