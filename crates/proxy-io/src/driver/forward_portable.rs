//! Where `splice(2)` is missing, nothing is forwarded: the builder keeps `forward_min` off,
//! and a core that asks anyway has its connection closed rather than hung.

use std::future::Future;
use std::task::Context;
use std::time::Instant;

use proxy_core::{ConnId, Event, FlowId, Hook, HookReply};

use super::{Core, Driver};

impl<C, M, F> Driver<'_, C, M, F>
where
    C: Core,
    M: FnMut(FlowId, Hook) -> F,
    F: Future<Output = (FlowId, bool, HookReply)>,
{
    pub(super) fn start_forward(&mut self, from: ConnId, _to: ConnId, _len: u64) {
        // The builder keeps `forward_min` off where splice is missing; a core that asks anyway
        // gets its connection closed rather than a hang.
        tracing::warn!(client = %self.peer, "forwarding is not supported on this platform");
        self.events.push_back(Event::ConnectionClosed { conn: from });
    }

    pub(super) fn poll_forwards(&mut self, _cx: &mut Context<'_>) -> Option<Event> {
        None
    }

    pub(super) fn forward_patience(&self) -> Option<Instant> {
        None
    }

    pub(super) fn lose_patience(&mut self, _at: Instant) {}
}

pub(super) struct Forward;
