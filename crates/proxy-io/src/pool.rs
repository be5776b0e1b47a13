//! The idle upstream connections every connection task shares: the core's
//! [`UpstreamPool`] (which connection, how many, how long) behind a lock, holding the sockets.
//!
//! A task parks a connection when its core says so ([`Command::Park`]) and takes one when its
//! core asks ([`Command::Reuse`]); the lock is held only for the pool's bookkeeping, and
//! sockets that must go are closed after it is released. A connection whose server closed it
//! while it was parked is noticed when taken (its socket reads EOF, or bytes nobody asked
//! for) and closed; the next one is tried. One task wakes every second to close what expired.
//!
//! [`Command::Park`]: proxy_core::Command::Park
//! [`Command::Reuse`]: proxy_core::Command::Reuse

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proxy_core::upstreams::{Parked, PoolKey, PoolLimits, UpstreamPool};
use tokio::net::TcpStream;

/// How often parked connections are checked for age.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

type Pool = UpstreamPool<Box<Parked>, TcpStream>;

/// The pool, shared by the connection tasks of one proxy.
pub(crate) struct SharedPool {
    pool: Mutex<Pool>,
}

impl std::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPool").field("idle", &self.lock().len()).finish()
    }
}

impl SharedPool {
    pub(crate) fn new(limits: PoolLimits) -> Arc<Self> {
        Arc::new(Self { pool: Mutex::new(UpstreamPool::new(limits)) })
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool's bookkeeping cannot be left half-done by a panic elsewhere.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `tcp` with `parked` for the next request to its destination.
    pub(crate) fn park(&self, parked: Box<Parked>, tcp: TcpStream) {
        let key = parked.key();
        let gone = self.lock().park(key, parked, tcp, Instant::now());
        drop(gone);
    }

    /// An idle connection to `key` whose server is still there, if the pool has one.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<(Box<Parked>, TcpStream)> {
        loop {
            let mut expired = Vec::new();
            let taken = self.lock().take(key, Instant::now(), &mut expired);
            drop(expired);
            let (parked, tcp) = taken?;
            if still_open(&tcp) {
                return Some((parked, tcp));
            }
            tracing::debug!(server = %key, "a parked connection was closed by its server");
        }
    }

    /// Close what has been idle too long, every second, for as long as the pool is in use.
    pub(crate) fn spawn_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(EXPIRY_TICK).await;
                let Some(pool) = weak.upgrade() else { return };
                let gone = pool.lock().expire(Instant::now());
                drop(gone);
            }
        })
    }
}

/// Whether the server of an idle connection has neither closed it nor sent anything (an
/// idle HTTP/1.1 server has nothing to say: bytes now are a late answer or a goodbye).
fn still_open(tcp: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
