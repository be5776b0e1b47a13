//! Reverse mode as a gateway: requests routed by host and path to groups of backends, one
//! backend picked per request by the group's policy among those not down, health learnt
//! from the requests themselves (passive) and from checks (active), a request whose
//! connection could not be made sent to another backend.
//!
//! A [`Gateway`] is shared by every client connection of a listener (the balancing state,
//! requests in flight, health, is the listener's, not a connection's), so it is a handle to
//! state behind a lock, held only for a decision: the core asks it synchronously when a
//! request arrives, which a round trip through the driver would only delay. It stays
//! sans-I/O: time comes with each call, randomness from the seed it was made with, and its
//! health checks are [`Probe`]s the driver carries out ([`ProbeConn`] speaks them).
//!
//! Which requests reach it: [`Config::gateway`](crate::Config::gateway) in reverse mode. A
//! flow holds a lease on its backend from the moment it is routed until it ends; the lease
//! counts it in flight and reports what became of it.
//!
//! With a limit on the requests each backend takes at once ([`LimitSpec`]), a request that
//! finds every backend of its group at its limit waits in the group's queue holding a
//! `Ticket`: when a lease ends, the first ticket of the queue is granted the backend it
//! freed, and the connection that holds it is woken through the [`Waker`] it queued with
//! (the driver feeds it [`Event::Wakeup`](crate::Event::Wakeup)); it then claims its lease.
//! A grant is a hand-off, not a race: the slot is counted for the ticket from the moment it
//! is granted, and given to the next one if the ticket is dropped unclaimed.

mod admit;
mod health;
mod route;
mod spec;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::flow::Request;
pub(crate) use admit::{Admitted, Lease, Refusal, Ticket};
pub use health::{Probe, ProbeConn, ProbeStep};
pub use spec::{Backend, Balance, GatewaySpec, GroupSpec, HashOn, HealthSpec, LimitSpec, RouteSpec};

/// Routes, groups and their backends' state, shared by the client connections of a listener.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<Mutex<State>>,
    /// Some group limits its backends' connections: an upstream connection goes back to the
    /// shared pool as soon as its request is done (read without the lock, once per request).
    limited: Arc<AtomicBool>,
}

/// Where a backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Taking requests.
    Up,
    /// Out after failures in a row, until `until`.
    Ejected {
        /// When it gets requests again.
        until: Instant,
    },
    /// Its last active check failed.
    Down,
}

/// One backend as [`Gateway::status`] shows it (for metrics and logs).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    /// The group it belongs to.
    pub group: String,
    /// The backend.
    pub backend: Backend,
    /// Whether it takes requests now.
    pub health: Health,
    /// Requests sent to it and not yet answered.
    pub in_flight: u32,
    /// Requests sent to it so far.
    pub requests: u64,
    /// The decaying peak of its response latency, once it has answered.
    pub latency: Option<Duration>,
}

/// A ticket as the gateway keeps it.
struct Waiter {
    group: Arc<str>,
    hash: Option<u64>,
    waker: Option<Waker>,
    /// The backend granted, counted in flight for the ticket until it claims it.
    granted: Option<u64>,
}

struct State {
    groups: Vec<Group>,
    routes: Vec<Arc<RouteSpec>>,
    forwarded_headers: bool,
    backends: BTreeMap<u64, BackendState>,
    next_key: u64,
    rng: u64,
    tickets: BTreeMap<u64, Waiter>,
    next_ticket: u64,
    /// The latest time the gateway was told: what a lease ending (which has no time of its
    /// own) measures health against when it hands its backend to a waiting request.
    now: Option<Instant>,
}

struct Group {
    name: String,
    members: Vec<u64>,
    balance: Balance,
    health: HealthSpec,
    limits: LimitSpec,
    /// Where round robin goes on from.
    cursor: usize,
    /// Tickets waiting for a backend below its limit, first come first served.
    queue: VecDeque<u64>,
}

struct BackendState {
    group: Arc<str>,
    backend: Backend,
    /// What a request sent to it is pointed at, made once.
    target: Arc<Target>,
    /// Its name's hash, for rendezvous hashing.
    name_hash: u64,
    in_flight: u32,
    requests: u64,
    /// Failures in a row (passive).
    fails: u32,
    /// Ejections in a row, each twice as long as the one before.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// Its last active check failed.
    down: bool,
    /// When the next active check is due (`None`: at once); `checking` while one runs.
    check_at: Option<Instant>,
    checking: bool,
    /// Decaying peak latency, in seconds, and when it was last updated.
    latency: Option<(f64, Instant)>,
    /// No longer in any group (after a reload): forgotten once nothing is in flight.
    retired: bool,
}

/// How fast the latency average forgets: a sample this old weighs 1/e.
const LATENCY_DECAY: Duration = Duration::from_secs(10);

impl Gateway {
    /// A gateway for `spec`, drawing its random choices from `seed`.
    pub fn new(spec: GatewaySpec, seed: u64) -> Result<Self, String> {
        spec.validate()?;
        let limited = Arc::new(AtomicBool::new(spec.limits_connections()));
        let mut state = State {
            groups: Vec::new(),
            routes: Vec::new(),
            forwarded_headers: spec.forwarded_headers,
            backends: BTreeMap::new(),
            next_key: 1,
            rng: seed | 1,
            tickets: BTreeMap::new(),
            next_ticket: 1,
            now: None,
        };
        state.apply(spec);
        Ok(Self { state: Arc::new(Mutex::new(state)), limited })
    }

    /// Whether some group limits its backends' connections, so that an upstream connection
    /// should go back to the shared pool as soon as its request is done rather than wait,
    /// idle, for its client's next one.
    pub fn limits_connections(&self) -> bool {
        self.limited.load(Ordering::Relaxed)
    }

    /// How many requests wait in each group's queue.
    pub fn queued(&self) -> Vec<(String, usize)> {
        self.lock().groups.iter().map(|g| (g.name.clone(), g.queue.len())).collect()
    }

    /// Serve `spec` from now on: new requests are routed by it, requests in flight finish
    /// where they are. A backend kept in its group keeps its health and counts; one removed
    /// gets no new request. An invalid spec changes nothing.
    pub fn reload(&self, spec: GatewaySpec) -> Result<(), String> {
        spec.validate()?;
        self.limited.store(spec.limits_connections(), Ordering::Relaxed);
        let mut state = self.lock();
        state.forwarded_headers = spec.forwarded_headers;
        state.apply(spec);
        // New backends or higher limits may take requests that wait.
        let names: Vec<String> = state.groups.iter().map(|g| g.name.clone()).collect();
        for name in names {
            state.dispatch(&name);
        }
        Ok(())
    }

    /// Every backend of every group, in order, with its health and load.
    pub fn status(&self, now: Instant) -> Vec<BackendStatus> {
        let state = self.lock();
        state
            .groups
            .iter()
            .flat_map(|g| g.members.iter())
            .map(|key| {
                let b = &state.backends[key];
                BackendStatus {
                    group: b.group.to_string(),
                    backend: b.backend.clone(),
                    health: b.health(now),
                    in_flight: b.in_flight,
                    requests: b.requests,
                    latency: b.latency.map(|_| Duration::from_secs_f64(b.latency_at(now))),
                }
            })
            .collect()
    }

    /// The active checks due at `now`; each is counted as running until
    /// [`check_done`](Self::check_done) reports it.
    pub fn due_checks(&self, now: Instant) -> Vec<Probe> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut due = Vec::new();
        for group in &state.groups {
            let Some(path) = &group.health.path else { continue };
            for key in &group.members {
                let b = state.backends.get_mut(key).expect("a member is a backend");
                if !b.checking && b.check_at.is_none_or(|at| at <= now) {
                    b.checking = true;
                    let (scheme, addr) = (b.backend.scheme, b.backend.addr.clone());
                    due.push(Probe { key: *key, scheme, addr, path: path.clone(), timeout: group.health.timeout });
                }
            }
        }
        due
    }

    /// When the next active check is due, if any is to come (checks running are not counted:
    /// their results schedule the next).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = self.lock();
        let checked = state.groups.iter().filter(|g| g.health.path.is_some()).flat_map(|g| g.members.iter());
        checked.filter_map(|key| state.backends.get(key)).filter(|b| !b.checking).filter_map(|b| b.check_at).min()
    }

    /// The check `probe` ended with `result` (the status, or why none came). A 2xx brings a
    /// down backend back, anything else takes it out. Returns a line to log when the
    /// backend's state changed.
    pub fn check_done(&self, probe: &Probe, result: Result<u16, String>, now: Instant) -> Option<String> {
        let mut state = self.lock();
        state.tick(now);
        let interval = state.groups.iter().find(|g| g.members.contains(&probe.key)).map(|g| g.health.interval);
        let b = state.backends.get_mut(&probe.key)?;
        b.checking = false;
        b.check_at = interval.map(|i| now + i);
        let up = matches!(result, Ok(200..=299));
        let was_down = std::mem::replace(&mut b.down, !up);
        let name = format!("backend {} of group {:?}", b.backend, b.group);
        match (was_down, up, result) {
            (false, false, Ok(status)) => Some(format!("{name} is down: its health check answered {status}")),
            (false, false, Err(why)) => Some(format!("{name} is down: its health check failed: {why}")),
            (true, true, _) => {
                b.fails = 0;
                let group = Arc::clone(&b.group);
                state.dispatch(&group);
                Some(format!("{name} is up again: its health check answered 2xx"))
            }
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counts that are still counts.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let groups = state.groups.iter().map(|g| (&g.name, g.members.len())).collect::<Vec<_>>();
        f.debug_struct("Gateway").field("groups", &groups).field("routes", &state.routes.len()).finish()
    }
}

/// How much of the latency peak is left after `elapsed` without an answer.
fn decay(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / LATENCY_DECAY.as_secs_f64()).exp()
}

/// A backend as requests are pointed at it.
struct Target {
    backend: Backend,
    /// `Host` for it.
    host_field: Bytes,
}

impl Target {
    /// Point `request` here; `Host` too when `rename`.
    fn point(&self, request: &mut Request, rename: bool) {
        request.scheme = self.backend.scheme;
        // Into the request's own string: its capacity mostly suffices.
        request.host.clear();
        request.host.push_str(&self.backend.addr.host);
        request.port = self.backend.addr.port;
        if rename {
            request.headers.insert("host", self.host_field.clone());
        }
    }
}

/// FNV-1a: a hash that stays the same across builds and runs, as consistent hashing needs.
fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
