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

mod health;
mod route;
mod spec;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::flow::{ClientInfo, Request};
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

/// Why a request was not routed: the answer the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoRoute { host: String, path: String },
    AllDown { group: String },
    /// Every backend up is at its limit and the queue is full.
    QueueFull { group: String, max_conns: u32, queued: usize },
    /// The request waited in the queue for as long as it may.
    QueueTimeout { group: String, max_conns: u32, waited: Duration },
}

impl Refusal {
    /// The status the client is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::NoRoute { .. } => 404,
            Self::AllDown { .. } | Self::QueueFull { .. } | Self::QueueTimeout { .. } => 503,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute { host, path } => write!(f, "no route for {host}{path}"),
            Self::AllDown { group } => write!(f, "every backend of group {group:?} is down"),
            Self::QueueFull { group, max_conns, queued } => write!(
                f,
                "every backend of group {group:?} has {max_conns} requests in flight, its limit, and {queued} more wait in its queue, which is full"
            ),
            Self::QueueTimeout { group, max_conns, waited } => write!(
                f,
                "waited {:.1} s in the queue of group {group:?} for a backend below its limit of {max_conns} requests in flight",
                waited.as_secs_f64()
            ),
        }
    }
}

/// How a routed request goes on: to a backend now, or into its group's queue.
#[derive(Debug)]
pub(crate) enum Admitted {
    Now(Lease),
    Queued(Ticket),
}

/// A request's place in its group's queue, until it is granted a backend and claims its
/// [`Lease`], or gives up (dropped: its place, or the backend granted, goes to the next).
pub(crate) struct Ticket {
    gateway: Gateway,
    id: u64,
    route: Arc<RouteSpec>,
    hash: Option<u64>,
    client_host: Option<Bytes>,
    /// Who asked, and over what: what the forwarded fields will say once it is sent.
    peer: IpAddr,
    client_tls: bool,
    since: Instant,
    deadline: Instant,
    max_conns: u32,
}

/// Where a routed request goes, as decided under the lock.
struct Sending<'a> {
    key: u64,
    group: Arc<str>,
    route: &'a RouteSpec,
    hash: Option<u64>,
    client_host: Option<&'a Bytes>,
    peer: IpAddr,
    client_tls: bool,
    target: Arc<Target>,
    forwarded: bool,
}

/// A ticket as the gateway keeps it.
struct Waiter {
    group: Arc<str>,
    hash: Option<u64>,
    waker: Option<Waker>,
    /// The backend granted, counted in flight for the ticket until it claims it.
    granted: Option<u64>,
}

/// A flow's hold on the backend it was sent to: in flight until dropped.
pub(crate) struct Lease {
    gateway: Gateway,
    key: u64,
    group: Arc<str>,
    hash: Option<u64>,
    /// Backends this request was sent to before `key` (it goes to each at most once).
    tried: Vec<u64>,
    sent: Instant,
    /// What became of it has been reported (one report per backend tried).
    reported: bool,
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

impl BackendState {
    fn new(group: &str, backend: Backend) -> Self {
        let host_field = Bytes::from(Request::authority_of(backend.scheme, &backend.addr.host, backend.addr.port));
        Self {
            group: group.into(),
            target: Arc::new(Target { backend: backend.clone(), host_field }),
            name_hash: name_hash(&backend.to_string()),
            backend,
            in_flight: 0,
            requests: 0,
            fails: 0,
            ejections: 0,
            ejected_until: None,
            down: false,
            check_at: None,
            checking: false,
            latency: None,
            retired: false,
        }
    }

    fn is_up(&self, now: Instant) -> bool {
        !self.down && self.ejected_until.is_none_or(|until| until <= now)
    }

    fn health(&self, now: Instant) -> Health {
        match (self.down, self.ejected_until) {
            (true, _) => Health::Down,
            (false, Some(until)) if until > now => Health::Ejected { until },
            _ => Health::Up,
        }
    }

    /// The latency peak at `now`: it decays while no answer comes, so a backend that was
    /// slow once is tried again in time rather than starved (Finagle's peak EWMA reads it so).
    fn latency_at(&self, now: Instant) -> f64 {
        self.latency.map_or(0.0, |(peak, at)| peak * decay(now.saturating_duration_since(at)))
    }

    /// What p2c weighs: the latency peak (none yet: nothing, so a new backend gets tried)
    /// times one more than what is in flight.
    fn cost(&self, now: Instant) -> f64 {
        self.latency_at(now) * f64::from(self.in_flight + 1)
    }
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

    /// Route `request` (as the client sent it, its `Host` the client's) and send it to a
    /// backend: the route's changes applied, `scheme`, `host` and `port` the backend's,
    /// `Host` the backend's unless the route keeps the client's, forwarded fields added.
    /// When every backend up is at its limit, the request is queued instead (unchanged until
    /// it claims its lease), and `waker` is woken when a backend is granted to it.
    pub(crate) fn admit(
        &self,
        now: Instant,
        request: &mut Request,
        client: &ClientInfo,
        client_tls: bool,
        waker: Option<&Waker>,
    ) -> Result<Admitted, Refusal> {
        let mut state = self.lock();
        state.tick(now);
        let client_host = request.headers.get_shared("host").filter(|h| std::str::from_utf8(h).is_ok()).cloned();
        let bare_host = client_host.as_deref().map(|h| strip_port(std::str::from_utf8(h).expect("checked")));
        let Some(route) = route::best(&state.routes, bare_host, &request.path).map(Arc::clone) else {
            let host = client_host.map(|h| String::from_utf8_lossy(&h).into_owned()).unwrap_or_default();
            return Err(Refusal::NoRoute { host, path: request.path.clone() });
        };
        let group = state.groups.iter().position(|g| g.name == route.group).expect("validated: the route's group exists");
        let hash = match &state.groups[group].balance {
            Balance::Hash(on) => hash_key(on, request, client),
            _ => None,
        };
        let Some(key) = state.pick(group, now, hash, &[]) else {
            let g = &state.groups[group];
            if !g.members.iter().any(|k| state.backends[k].is_up(now)) {
                return Err(Refusal::AllDown { group: route.group.clone() });
            }
            // Every backend up is at its limit: wait for one, if the queue has room.
            let (limits, queued) = (g.limits.clone(), g.queue.len());
            let max_conns = limits.max_conns.unwrap_or(u32::MAX);
            if queued >= limits.queue_limit {
                return Err(Refusal::QueueFull { group: route.group.clone(), max_conns, queued });
            }
            let id = state.next_ticket;
            state.next_ticket += 1;
            let group_name = state.groups[group].name.as_str().into();
            state.tickets.insert(id, Waiter { group: group_name, hash, waker: waker.cloned(), granted: None });
            state.groups[group].queue.push_back(id);
            drop(state);
            let deadline = now + limits.queue_timeout;
            let peer = client.peer.ip();
            let ticket = Ticket { gateway: self.clone(), id, route, hash, client_host, peer, client_tls, since: now, deadline, max_conns };
            return Ok(Admitted::Queued(ticket));
        };
        let b = &state.backends[&key];
        let (group, target, forwarded) = (Arc::clone(&b.group), Arc::clone(&b.target), state.forwarded_headers);
        drop(state);
        let (peer, client_host) = (client.peer.ip(), client_host.as_ref());
        let to = Sending { key, group, route: &route, hash, client_host, peer, client_tls, target, forwarded };
        Ok(Admitted::Now(self.send_to(to, now, request)))
    }

    /// The lease of a request routed to a backend (counted in flight already), and the request
    /// changed for it. No lock: the rest is the request's own business.
    fn send_to(&self, to: Sending<'_>, now: Instant, request: &mut Request) -> Lease {
        let Sending { key, group, route, hash, client_host, peer, client_tls, target, forwarded } = to;
        let lease = Lease { gateway: self.clone(), key, group, hash, tried: Vec::new(), sent: now, reported: false };
        route::rewrite(route, request);
        if forwarded {
            route::add_forwarded(request, peer, client_tls, client_host);
        }
        target.point(request, !route.preserve_host);
        lease
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

impl Ticket {
    /// When the request has waited long enough.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The lease, if a backend was granted to this ticket, with `request` changed for it as
    /// [`Gateway::admit`] would have; `None` while it still waits. Once claimed, the ticket
    /// is spent: dropping it gives nothing back.
    pub(crate) fn claim(&self, now: Instant, request: &mut Request) -> Option<Lease> {
        let mut state = self.gateway.lock();
        state.tick(now);
        let key = state.tickets.get(&self.id).and_then(|w| w.granted)?;
        state.tickets.remove(&self.id);
        let b = &state.backends[&key];
        let (group, target, forwarded) = (Arc::clone(&b.group), Arc::clone(&b.target), state.forwarded_headers);
        drop(state);
        let (route, client_host) = (&self.route, self.client_host.as_ref());
        let to = Sending { key, group, route, hash: self.hash, client_host, peer: self.peer, client_tls: self.client_tls, target, forwarded };
        Some(self.gateway.send_to(to, now, request))
    }

    /// The answer for a request that waited until its deadline.
    pub(crate) fn timed_out(&self, now: Instant) -> Refusal {
        let waited = now.saturating_duration_since(self.since);
        Refusal::QueueTimeout { group: self.route.group.clone(), max_conns: self.max_conns, waited }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gateway.lock();
        let Some(waiter) = state.tickets.remove(&self.id) else { return };
        if let Some(group) = state.groups.iter_mut().find(|g| *g.name == *waiter.group) {
            group.queue.retain(|id| *id != self.id);
        }
        if let Some(key) = waiter.granted {
            // Granted but never claimed: the next in the queue has it.
            state.release(key);
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).field("group", &self.route.group).finish()
    }
}

impl Lease {
    /// The backend this flow went to.
    pub(crate) fn backend(&self) -> Backend {
        self.gateway.lock().backends[&self.key].backend.clone()
    }

    /// The backend answered with `status` (its head): a 5xx counts as a failure, anything
    /// else as a success. Returns a line to log when the backend was ejected.
    pub(crate) fn responded(&mut self, status: u16, now: Instant) -> Option<String> {
        let latency = now.saturating_duration_since(self.sent);
        let mut state = self.gateway.lock();
        state.tick(now);
        if let Some(b) = state.backends.get_mut(&self.key) {
            let sample = latency.as_secs_f64();
            b.latency = Some(match b.latency {
                Some((peak, at)) if sample < peak => {
                    let w = decay(now.saturating_duration_since(at));
                    (peak * w + sample * (1.0 - w), now)
                }
                _ => (sample, now),
            });
        }
        if std::mem::replace(&mut self.reported, true) {
            return None;
        }
        match status {
            500..=599 => state.failed(self.key, now, &format!("answered {status}")),
            _ => {
                state.succeeded(self.key);
                None
            }
        }
    }

    /// The exchange with the backend failed (`why`): a broken response, a timeout.
    pub(crate) fn failed(&mut self, now: Instant, why: &str) -> Option<String> {
        if std::mem::replace(&mut self.reported, true) {
            return None;
        }
        let mut state = self.gateway.lock();
        state.tick(now);
        state.failed(self.key, now, why)
    }

    /// No connection to the backend could be made (`why`): count it against the backend, and
    /// take another of the group not tried yet, the request rewritten for it. `None` when
    /// none is left; the log line, when the failure ejected the backend.
    pub(crate) fn connect_failed(&mut self, now: Instant, why: &str, request: &mut Request) -> (Option<Backend>, Option<String>) {
        let line = match std::mem::replace(&mut self.reported, true) {
            false => self.gateway.lock().failed(self.key, now, why),
            true => None,
        };
        let mut state = self.gateway.lock();
        state.tick(now);
        let Some(group) = state.groups.iter().position(|g| *g.name == *self.group) else { return (None, line) };
        self.tried.push(self.key);
        let Some(key) = state.pick(group, now, self.hash, &self.tried) else {
            self.tried.pop();
            return (None, line);
        };
        let old = self.key;
        state.release(old);
        let keeps_host = request.headers.get_str("host").is_some_and(|h| h != request.authority());
        self.key = key;
        self.sent = now;
        self.reported = false;
        let target = Arc::clone(&state.backends[&key].target);
        drop(state);
        target.point(request, !keeps_host);
        (Some(target.backend.clone()), line)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.gateway.lock().release(self.key);
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("backend", &self.key).field("group", &self.group).finish()
    }
}

impl State {
    /// Take `spec`'s groups and routes, keeping the state of backends that stay.
    fn apply(&mut self, spec: GatewaySpec) {
        let mut old = std::mem::take(&mut self.groups);
        for b in self.backends.values_mut() {
            b.retired = true;
        }
        for g in spec.groups {
            let previous = old.iter_mut().position(|o| o.name == g.name).map(|i| old.swap_remove(i));
            let mut members = Vec::new();
            for backend in g.backends {
                let kept = self.backends.iter_mut().find(|(_, b)| *b.group == *g.name && b.backend == backend && b.retired);
                let key = match kept {
                    Some((key, b)) => {
                        b.retired = false;
                        *key
                    }
                    None => {
                        let key = self.next_key;
                        self.next_key += 1;
                        self.backends.insert(key, BackendState::new(&g.name, backend));
                        key
                    }
                };
                members.push(key);
            }
            let (cursor, queue) = previous.map_or((0, VecDeque::new()), |p| (p.cursor % members.len(), p.queue));
            self.groups.push(Group { name: g.name, members, balance: g.balance, health: g.health, limits: g.limits, cursor, queue });
        }
        // Requests queued for a group that is gone get their answer when they time out.
        for group in old {
            for id in group.queue {
                if let Some(waiter) = self.tickets.get_mut(&id) {
                    waiter.group = "".into();
                }
            }
        }
        self.routes = spec.routes.into_iter().map(Arc::new).collect();
        self.backends.retain(|_, b| !b.retired || b.in_flight > 0);
    }

    /// A backend of group `group` not down and not in `tried`, by the group's policy; counted
    /// in flight.
    fn pick(&mut self, group: usize, now: Instant, hash: Option<u64>, tried: &[u64]) -> Option<u64> {
        let r = match self.groups[group].balance {
            Balance::Random | Balance::PowerOfTwo => self.next_random(),
            _ => 0,
        };
        let g = &self.groups[group];
        let below_limit = |b: &BackendState| g.limits.max_conns.is_none_or(|max| b.in_flight < max);
        let is_candidate = |i: usize| {
            let b = &self.backends[&g.members[i]];
            !tried.contains(&g.members[i]) && b.is_up(now) && below_limit(b)
        };
        // Chosen among without collecting them: this runs for every request.
        let n = g.members.len();
        let candidates = || (0..n).filter(|&i| is_candidate(i));
        let count = candidates().count();
        if count == 0 {
            return None;
        }
        let nth = |k: usize| candidates().nth(k).expect("fewer than counted");
        // Members in turn from the cursor: round robin's order, and the tie-break of others.
        let in_turn = |cursor: usize| (0..n).map(move |i| (cursor + i) % n);
        let cursor = g.cursor;
        let chosen = match (&g.balance, hash) {
            (Balance::Hash(_), Some(hash)) => {
                // Rendezvous hashing: the highest score of key and backend wins.
                candidates().max_by_key(|&i| mix(hash ^ self.backends[&g.members[i]].name_hash)).expect("not empty")
            }
            (Balance::RoundRobin | Balance::Hash(_), _) => in_turn(cursor).find(|&i| is_candidate(i)).expect("not empty"),
            (Balance::LeastConn, _) => {
                let load = |i: usize| self.backends[&g.members[i]].in_flight;
                let least = candidates().map(load).min().expect("not empty");
                in_turn(cursor).find(|&i| is_candidate(i) && load(i) == least).expect("the least is a candidate")
            }
            (Balance::Random, _) => nth((r % count as u64) as usize),
            (Balance::PowerOfTwo, _) => {
                let (a, b) = match count {
                    1 => (nth(0), nth(0)),
                    len => {
                        let first = (r % len as u64) as usize;
                        let second = (first + 1 + ((r >> 32) % (len as u64 - 1)) as usize) % len;
                        (nth(first), nth(second))
                    }
                };
                let cost = |i: usize| self.backends[&g.members[i]].cost(now);
                if cost(b) < cost(a) { b } else { a }
            }
        };
        let g = &mut self.groups[group];
        g.cursor = (chosen + 1) % n;
        let key = g.members[chosen];
        let b = self.backends.get_mut(&key).expect("a member is a backend");
        b.in_flight += 1;
        b.requests += 1;
        Some(key)
    }

    /// A request to `key` is over (or never claimed the backend): its slot goes to the first
    /// request waiting in the group's queue, if any.
    fn release(&mut self, key: u64) {
        let Some(b) = self.backends.get_mut(&key) else { return };
        b.in_flight = b.in_flight.saturating_sub(1);
        let group = Arc::clone(&b.group);
        if b.retired && b.in_flight == 0 {
            self.backends.remove(&key);
        }
        self.dispatch(&group);
    }

    /// Grant backends to the requests waiting in `group`'s queue, in order, while one is below
    /// its limit; each is woken to claim it.
    fn dispatch(&mut self, group: &str) {
        let Some(now) = self.now else { return };
        let Some(g) = self.groups.iter().position(|g| g.name == group) else { return };
        while let Some(&id) = self.groups[g].queue.front() {
            let Some(hash) = self.tickets.get(&id).map(|w| w.hash) else {
                self.groups[g].queue.pop_front();
                continue;
            };
            let Some(key) = self.pick(g, now, hash, &[]) else { break };
            self.groups[g].queue.pop_front();
            let waiter = self.tickets.get_mut(&id).expect("checked above");
            waiter.granted = Some(key);
            if let Some(waker) = &waiter.waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Time moves on (calls may come from many threads, not quite in order).
    fn tick(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
    }

    fn succeeded(&mut self, key: u64) {
        if let Some(b) = self.backends.get_mut(&key) {
            b.fails = 0;
            b.ejections = 0;
        }
    }

    /// A failure of backend `key`; returns the line to log when it ejects the backend.
    fn failed(&mut self, key: u64, now: Instant, why: &str) -> Option<String> {
        let group = self.groups.iter().find(|g| g.members.contains(&key))?;
        let (health, alone) = (group.health.clone(), group.members.len() == 1);
        let b = self.backends.get_mut(&key)?;
        b.fails += 1;
        if alone || health.max_fails == 0 || b.fails < health.max_fails {
            return None;
        }
        // Ejected: the first time for `ejection`, then twice as long each time it fails again
        // as soon as it is back.
        let factor = 1u32.checked_shl(b.ejections.min(16)).unwrap_or(u32::MAX);
        let length = health.ejection.saturating_mul(factor).min(health.max_ejection);
        b.ejected_until = Some(now + length);
        b.ejections += 1;
        b.fails = health.max_fails - 1;
        Some(format!(
            "backend {} of group {:?} ejected for {:.0} s: {} failures in a row, the last: {why}",
            b.backend,
            b.group,
            length.as_secs_f64(),
            health.max_fails
        ))
    }

    /// splitmix64: the state steps by a constant, the output is mixed.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.rng)
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

/// `host[:port]` without the port (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// The key a hash group hashes, if the request has it.
fn hash_key(on: &HashOn, request: &Request, client: &ClientInfo) -> Option<u64> {
    match on {
        HashOn::ClientIp => Some(name_hash(&client.peer.ip().to_string())),
        HashOn::Header(name) => request.headers.get_str(name).map(name_hash),
        HashOn::Cookie(name) => request.headers.get_all("cookie").find_map(|line| {
            String::from_utf8_lossy(line).split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| name_hash(v))
            })
        }),
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
