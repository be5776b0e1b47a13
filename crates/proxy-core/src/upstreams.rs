//! Upstream connections shared across client connections: the idle ones, parked between
//! the client connections that use them.
//!
//! A client connection's HTTP layer keeps its upstream connections while it lives (a
//! keep-alive client's next request finds its connection at once, without a lock). When the
//! client connection ends, each upstream connection that is idle and reusable is *parked*
//! rather than closed: the core gives its whole state ([`Parked`]: codec, TLS session,
//! destination) to the driver with [`Command::Park`](crate::Command::Park), and the driver puts it,
//! with the socket, in an [`UpstreamPool`]. A client connection that needs a connection to a
//! destination asks with [`Command::Reuse`](crate::Command::Reuse); the driver takes one from
//! the pool (the pool decides which) and hands it over with
//! [`Event::Adopted`](crate::Event::Adopted), or opens a new one as for
//! [`Command::OpenConnection`](crate::Command::OpenConnection). So 1,000 short clients of one
//! backend take as many upstream connections as run at once, not 1,000, and in forward mode a
//! new client connection to a host the proxy spoke to recently skips the TLS handshake.
//!
//! Which connection a request gets, how many idle ones a destination keeps and for how long
//! are decisions, so they are made here, from the times the driver passes in; the pool holds
//! the driver's socket (`T`) without knowing what it is.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::gateway::Lease;
use crate::ids::ServerAddr;

/// What a request must match to reuse a connection: where it leads and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The server (or, for requests in absolute-form, the upstream proxy itself).
    pub server: ServerAddr,
    /// TLS to `server`, verified for its name.
    pub tls: bool,
    /// In upstream mode, the upstream proxy the connection goes through.
    pub proxy: Option<ServerAddr>,
    /// The name the TLS session was verified for (and sent as SNI), when it is not the
    /// server's host: a client that reached an address by one name must not get a session
    /// made for another.
    pub name: Option<String>,
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.server)?;
        if let Some(name) = &self.name {
            write!(f, " as {name}")?;
        }
        if let Some(proxy) = &self.proxy {
            write!(f, " via {proxy}")?;
        }
        Ok(())
    }
}

/// An idle upstream connection's whole state, as the core parked it ([`Command::Park`]):
/// its codec, its TLS session, where it leads. The driver keeps it with the socket and hands
/// it to the client connection that asks for its [`key`](Self::key) ([`Event::Adopted`]).
///
/// [`Command::Park`]: crate::Command::Park
/// [`Event::Adopted`]: crate::Event::Adopted
pub struct Parked {
    key: PoolKey,
    h2: bool,
    /// Whether it may carry streams as a carrier: see [`carries_streams`](Self::carries_streams).
    joinable: bool,
    max_streams: usize,
    /// What its last flow held on the backend (a gateway's lease), let go only once the
    /// connection is in the pool: the request its slot goes to must find it there.
    hold: Option<Lease>,
    /// The HTTP layer's state of it, which only the HTTP layer reads.
    state: ServerState,
}

/// What a parked connection's last flow held on its backend: see [`Parked::take_hold`].
#[must_use = "dropping it releases the backend's slot"]
pub struct Hold(#[allow(dead_code)] Lease);

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hold")
    }
}

impl Parked {
    /// What the HTTP layer parks: `state` is its own, and the rest what the pool and the
    /// driver go by. `joinable`: HTTP/2, and opened for requests a stream would do for;
    /// `max_streams`: its server's limit.
    pub(crate) fn new(key: PoolKey, h2: bool, joinable: bool, max_streams: usize, hold: Option<Lease>, state: ServerState) -> Self {
        Self { key, h2, joinable, max_streams, hold, state }
    }

    /// Take what the connection's last flow still holds on its backend, to drop once the
    /// connection is in the pool: dropping it may hand the backend's slot to a request
    /// waiting in a gateway's queue, which should then find this connection idle rather
    /// than open another.
    pub fn take_hold(&mut self) -> Option<Hold> {
        self.hold.take().map(Hold)
    }

    /// What a request must match to take this connection.
    pub fn key(&self) -> PoolKey {
        self.key.clone()
    }

    /// Whether it may be run as a carrier ([`Connection::carrier`](crate::Connection::carrier))
    /// rather than parked whole: it speaks HTTP/2 and was opened for requests a stream would
    /// do for, or is an intercepted `CONNECT`'s whose client speaks HTTP/1.1. Parked whole,
    /// the next `CONNECT` to its server takes it over, TLS session and all, and completes its
    /// client's handshake from it, which a stream on a carrier could not: so one becomes a
    /// carrier only where none to its server has room ([`Carriers::wanted`]).
    pub fn carries_streams(&self) -> bool {
        self.h2 && self.joinable
    }

    /// How many streams it may carry at once (its server's limit), as a carrier.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// The HTTP layer's state of it, for the HTTP layer that adopts it (or the carrier made
    /// of it).
    pub(crate) fn into_state(self) -> ServerState {
        self.state
    }
}

impl fmt::Debug for Parked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.h2 { "HTTP/2" } else { "HTTP/1.1" };
        write!(f, "Parked({} {version})", self.key)
    }
}

/// The HTTP layer's state of a server connection it hands away whole: parked for another
/// client connection ([`Parked`]), or handed on with a `CONNECT`'s tunnel to the interception
/// that runs HTTP inside it next (a `Handover`). Between the HTTP layer that made it and the
/// one that takes it up, it passes through code that must not depend on the HTTP layer's
/// types (commands and events, the driver, the layers in between), so it goes as an opaque
/// box, which [`open`](Self::open) opens again.
pub(crate) struct ServerState(Box<dyn Any + Send>);

impl ServerState {
    pub(crate) fn new<T: Any + Send>(state: T) -> Self {
        Self(Box::new(state))
    }

    /// The state as it went in. `T` is the type it was made with: the HTTP layer makes every
    /// `ServerState` and is the only code that opens one, always as the type it makes.
    pub(crate) fn open<T: Any>(self) -> T {
        *self.0.downcast::<T>().expect("a server state is opened as the type the HTTP layer made it with")
    }
}

/// How many idle connections are kept, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLimits {
    /// Idle connections kept per destination; parking one more closes the oldest.
    pub max_idle_per_key: usize,
    /// Idle connections kept in all.
    pub max_idle: usize,
    /// An idle connection older than this is closed (`--upstream-idle-timeout`): servers
    /// close theirs after a while (nginx after 75 s, Apache after 5 s), and one that closed
    /// is only noticed when used.
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self { max_idle_per_key: 64, max_idle: 1024, idle_timeout: Duration::from_secs(4) }
    }
}

/// One idle connection: what the core parked, the driver's socket, and since when.
struct Idle<P, T> {
    parked: P,
    io: T,
    since: Instant,
}

/// The idle upstream connections of a proxy (of one driver thread, or shared by all), by
/// destination. `P` is what the core parked ([`Parked`]), `T` the driver's socket.
pub struct UpstreamPool<P, T> {
    limits: PoolLimits,
    idle: HashMap<PoolKey, VecDeque<Idle<P, T>>>,
    len: usize,
    /// Counters, for metrics and tests.
    pub stats: PoolStats,
}

/// What the pool has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections put in the pool.
    pub parked: u64,
    /// Requests that found an idle connection.
    pub reused: u64,
    /// Requests that found none.
    pub missed: u64,
    /// Idle connections closed for age.
    pub expired: u64,
    /// Idle connections closed to make room.
    pub evicted: u64,
}

impl<P, T> UpstreamPool<P, T> {
    /// An empty pool that keeps what `limits` allow.
    pub fn new(limits: PoolLimits) -> Self {
        Self { limits, idle: HashMap::new(), len: 0, stats: PoolStats::default() }
    }

    /// Idle connections held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// What it keeps, and for how long.
    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Whether it holds no idle connection.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Idle connections held for `key`.
    pub fn idle_for(&self, key: &PoolKey) -> usize {
        self.idle.get(key).map_or(0, VecDeque::len)
    }

    /// Keep `parked` (with its socket `io`) for the next request to `key`. Returns what had
    /// to go to make room, for the driver to close: the oldest idle connection of `key` when
    /// it has its fill, else the oldest of all when the pool has.
    pub fn park(&mut self, key: PoolKey, parked: P, io: T, now: Instant) -> Vec<(P, T)> {
        let mut gone = Vec::new();
        if self.limits.max_idle_per_key == 0 || self.limits.max_idle == 0 {
            self.stats.evicted += 1;
            gone.push((parked, io));
            return gone;
        }
        let queue = self.idle.entry(key.clone()).or_default();
        if queue.len() >= self.limits.max_idle_per_key {
            if let Some(oldest) = queue.pop_front() {
                self.len -= 1;
                self.stats.evicted += 1;
                gone.push((oldest.parked, oldest.io));
            }
        }
        self.idle.entry(key).or_default().push_back(Idle { parked, io, since: now });
        self.len += 1;
        self.stats.parked += 1;
        while self.len > self.limits.max_idle {
            let Some(oldest) = self.pop_oldest() else { break };
            self.stats.evicted += 1;
            gone.push(oldest);
        }
        gone
    }

    /// An idle connection for `key`, if one is young enough: the most recently parked, whose
    /// server is the least likely to have closed it meanwhile. Older ones that expired are
    /// returned in `expired` for the driver to close.
    pub fn take(&mut self, key: &PoolKey, now: Instant, expired: &mut Vec<(P, T)>) -> Option<(P, T)> {
        let queue = self.idle.get_mut(key);
        let Some(queue) = queue else {
            self.stats.missed += 1;
            return None;
        };
        let timeout = self.limits.idle_timeout;
        let mut found = None;
        while let Some(idle) = queue.pop_back() {
            self.len -= 1;
            if now.saturating_duration_since(idle.since) < timeout {
                found = Some((idle.parked, idle.io));
                break;
            }
            self.stats.expired += 1;
            expired.push((idle.parked, idle.io));
        }
        if queue.is_empty() {
            self.idle.remove(key);
        }
        match found {
            Some(found) => {
                self.stats.reused += 1;
                Some(found)
            }
            None => {
                self.stats.missed += 1;
                None
            }
        }
    }

    /// Close what has been idle too long: returned for the driver to close.
    pub fn expire(&mut self, now: Instant) -> Vec<(P, T)> {
        let timeout = self.limits.idle_timeout;
        let mut gone = Vec::new();
        for queue in self.idle.values_mut() {
            // Oldest first: the expired ones are at the front.
            while queue.front().is_some_and(|i| now.saturating_duration_since(i.since) >= timeout) {
                let idle = queue.pop_front().expect("checked");
                gone.push((idle.parked, idle.io));
            }
        }
        self.idle.retain(|_, q| !q.is_empty());
        self.len -= gone.len();
        self.stats.expired += gone.len() as u64;
        gone
    }

    /// When the next idle connection expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let oldest = self.idle.values().filter_map(|q| q.front()).map(|i| i.since).min()?;
        Some(oldest + self.limits.idle_timeout)
    }

    fn pop_oldest(&mut self) -> Option<(P, T)> {
        let key = self.idle.iter().filter_map(|(k, q)| Some((k, q.front()?.since))).min_by_key(|(_, t)| *t)?.0.clone();
        let queue = self.idle.get_mut(&key)?;
        let idle = queue.pop_front()?;
        if queue.is_empty() {
            self.idle.remove(&key);
        }
        self.len -= 1;
        Some((idle.parked, idle.io))
    }
}

/// A carrier's name in [`Carriers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CarrierId(u64);

/// One carrier: an HTTP/2 connection the driver runs on its own, carrying the streams of
/// whichever client connections join it (`H` is the driver's handle to it).
struct CarrierEntry<H> {
    id: CarrierId,
    key: PoolKey,
    handle: H,
    /// How many streams it takes at once, as it last said ([`Command::Capacity`](crate::Command::Capacity)).
    capacity: usize,
    /// Streams joined and not yet left.
    carrying: usize,
    /// The driver thread it runs on, where threads own their share of the carriers.
    home: Option<u64>,
}

/// The carriers of a proxy, by destination: which one a request joins is decided here.
///
/// A request joins the oldest carrier to its destination with room, not the least busy: the
/// streams gather on as few connections as the server's stream limit allows, and a carrier
/// left without streams goes idle and closes. Where each driver thread has its own runtime
/// (per core), a request joins only a carrier of its own thread, as Envoy's workers each keep
/// their own connections: the two tasks then never wake each other across threads, and one
/// connection's work (its TLS, its HTTP/2 framing) does not pile up on one thread while the
/// others wait for it.
pub struct Carriers<H> {
    list: Vec<CarrierEntry<H>>,
    next: u64,
    /// Streams that joined a carrier, in all.
    pub joined: u64,
}

impl<H> Default for Carriers<H> {
    fn default() -> Self {
        Self { list: Vec::new(), next: 0, joined: 0 }
    }
}

impl<H: Clone> Carriers<H> {
    /// A new carrier to `key` on the driver thread `home` (`None` where threads share
    /// everything), taking `streams` at once until it says otherwise.
    pub fn add(&mut self, key: PoolKey, handle: H, streams: usize, home: Option<u64>) -> CarrierId {
        let id = CarrierId(self.next);
        self.next += 1;
        self.list.push(CarrierEntry { id, key, handle, capacity: streams, carrying: 0, home });
        id
    }

    /// A carrier to `key` with room for one more stream, on the driver thread `home` if
    /// given; the stream is counted as joined.
    pub fn join(&mut self, key: &PoolKey, home: Option<u64>) -> Option<(CarrierId, H)> {
        let fits = |c: &&mut CarrierEntry<H>| c.key == *key && c.carrying < c.capacity && (home.is_none() || c.home == home);
        let entry = self.list.iter_mut().find(fits)?;
        entry.carrying += 1;
        self.joined += 1;
        Some((entry.id, entry.handle.clone()))
    }

    /// Whether a parked connection to `key` that could carry streams
    /// ([`Parked::carries_streams`]) is to become a carrier on the driver thread `home`: only
    /// where no carrier to `key` there has room for another stream. Otherwise it is parked
    /// whole, for a `CONNECT` to its server to take over (an intercepted client's certificate
    /// is minted from its session), or a request that finds every carrier full.
    pub fn wanted(&self, key: &PoolKey, home: Option<u64>) -> bool {
        let room = |c: &CarrierEntry<H>| c.key == *key && c.carrying < c.capacity && (home.is_none() || c.home == home);
        !self.list.iter().any(room)
    }

    /// A stream of `id` that waited between exchanges carries one again. It is counted even
    /// past the carrier's limit (the carrier then holds the request until the server has
    /// room): it took its place when it joined, and gave it up only while it waited.
    pub fn rejoin(&mut self, id: CarrierId) {
        if let Some(entry) = self.list.iter_mut().find(|c| c.id == id) {
            entry.carrying += 1;
        }
    }

    /// A stream of `id` is over, or waits between exchanges.
    pub fn leave(&mut self, id: CarrierId) {
        if let Some(entry) = self.list.iter_mut().find(|c| c.id == id) {
            entry.carrying = entry.carrying.saturating_sub(1);
        }
    }

    /// `id` takes `streams` at once from now on (none: it is closing).
    pub fn set_capacity(&mut self, id: CarrierId, streams: usize) {
        if let Some(entry) = self.list.iter_mut().find(|c| c.id == id) {
            entry.capacity = streams;
        }
    }

    /// `id` is gone.
    pub fn remove(&mut self, id: CarrierId) {
        self.list.retain(|c| c.id != id);
    }

    /// Carriers running.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no carrier runs.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Streams carried now, in all.
    pub fn streams(&self) -> usize {
        self.list.iter().map(|c| c.carrying).sum()
    }
}
