//! What the gateway decides under its lock: a spec applied over the backends it already
//! knows, a backend picked by its group's policy and counted in flight, a slot freed and
//! granted to the first request in the queue, failures counted into ejections; and where a
//! backend's health and latency stand at a given time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{decay, mix, name_hash, Backend, BackendState, Balance, GatewaySpec, Group, Health, State, Target};
use crate::flow::Request;

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

    pub(super) fn is_up(&self, now: Instant) -> bool {
        !self.down && self.ejected_until.is_none_or(|until| until <= now)
    }

    pub(super) fn health(&self, now: Instant) -> Health {
        match (self.down, self.ejected_until) {
            (true, _) => Health::Down,
            (false, Some(until)) if until > now => Health::Ejected { until },
            _ => Health::Up,
        }
    }

    /// The latency peak at `now`: it decays while no answer comes, so a backend that was
    /// slow once is tried again in time rather than starved (Finagle's peak EWMA reads it so).
    pub(super) fn latency_at(&self, now: Instant) -> f64 {
        self.latency.map_or(0.0, |(peak, at)| peak * decay(now.saturating_duration_since(at)))
    }

    /// What p2c weighs: the latency peak (none yet: nothing, so a new backend gets tried)
    /// times one more than what is in flight.
    fn cost(&self, now: Instant) -> f64 {
        self.latency_at(now) * f64::from(self.in_flight + 1)
    }
}

impl State {
    /// Take `spec`'s groups and routes, keeping the state of backends that stay.
    pub(super) fn apply(&mut self, spec: GatewaySpec) {
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
    pub(super) fn pick(&mut self, group: usize, now: Instant, hash: Option<u64>, tried: &[u64]) -> Option<u64> {
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
    pub(super) fn release(&mut self, key: u64) {
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
    pub(super) fn dispatch(&mut self, group: &str) {
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
    pub(super) fn tick(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
    }

    pub(super) fn succeeded(&mut self, key: u64) {
        if let Some(b) = self.backends.get_mut(&key) {
            b.fails = 0;
            b.ejections = 0;
        }
    }

    /// A failure of backend `key`; returns the line to log when it ejects the backend.
    pub(super) fn failed(&mut self, key: u64, now: Instant, why: &str) -> Option<String> {
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
