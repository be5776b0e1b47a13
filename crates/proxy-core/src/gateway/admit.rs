//! A request's way to a backend: routed and sent at once under a [`Lease`] that counts it in
//! flight and reports what became of it, queued with a [`Ticket`] while every backend of its
//! group is at its limit, or refused with the status the client is answered with.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::route;
use super::{decay, name_hash, Backend, Balance, Gateway, HashOn, RouteSpec, Target, Waiter};
use crate::flow::{ClientInfo, Request};

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

impl Gateway {
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
