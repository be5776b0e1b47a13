//! One reusable timer for whichever comes first: the core's deadline, a lingering socket's
//! end, a forward's patience.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Instant;

use proxy_core::{Event, FlowId, Hook, HookReply};
use tokio::time::Sleep;

use super::{Core, Driver};

impl<C, M, F> Driver<'_, C, M, F>
where
    C: Core,
    M: FnMut(FlowId, Hook) -> F,
    F: Future<Output = (FlowId, bool, HookReply)>,
{
    /// Arm the timer for the core's deadline, the lingering sockets' and the forwards' patience,
    /// and report the core's deadline once it has passed.
    pub(super) fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        loop {
            let fired = self.timer.fired;
            let deadline = *self.deadline.get_or_insert_with(|| self.core.poll_timeout());
            let core_at = deadline.filter(|&t| Some(t) != fired);
            let linger_at = self.socks.iter().filter_map(|s| s.linger_until).min();
            let at = [core_at, linger_at, self.forward_patience()]
                .into_iter()
                .flatten()
                .min()?;
            if self.timer.poll(at, cx).is_pending() {
                return None;
            }
            // The timer may have been set for an earlier deadline than `at`: only what was due
            // by then is.
            let reached = self.timer.deadline().unwrap_or(at);
            for s in &mut self.socks {
                if s.linger_until.is_some_and(|t| t <= reached) {
                    s.kill();
                }
            }
            self.lose_patience(reached);
            if let Some(t) = core_at.filter(|&t| t <= reached) {
                // Remember it: if the core hands back the same deadline, it is not due again.
                self.timer.fired = Some(t);
                return Some(Event::Wakeup);
            }
        }
    }
}

/// A single reusable `Sleep` for whichever deadline comes first.
#[derive(Default)]
pub(super) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// The sleep was polled since it was last set, and was pending: it holds the task's
    /// waker, and needs polling again only once it has gone off.
    waiting: bool,
    /// The last core deadline answered with `Wakeup`.
    pub(super) fired: Option<Instant>,
}

impl Timer {
    /// Whether the timer is set to go off by `at`.
    pub(super) fn covers(&self, at: Instant) -> bool {
        let at = tokio::time::Instant::from_std(at);
        self.sleep.as_ref().is_some_and(|s| !s.is_elapsed() && s.deadline() <= at)
    }

    /// Set the timer to go off by `at` (perhaps earlier).
    pub(super) fn arm(&mut self, at: Instant) -> Pin<&mut Sleep> {
        let deadline = tokio::time::Instant::from_std(at);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // An earlier deadline still to come is kept: it only wakes the driver early, once,
        // where moving the timer at every request (each pushes the idle deadline back) would
        // cost a trip through the runtime's timer wheel each time.
        if sleep.deadline() != deadline && (sleep.is_elapsed() || sleep.deadline() > deadline) {
            sleep.as_mut().reset(deadline);
            self.waiting = false;
        }
        sleep.as_mut()
    }

    /// When the timer is set to go off (or went off).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.sleep.as_ref().map(|s| s.deadline().into_std())
    }

    /// Set the timer to go off by `at` (perhaps earlier), and whether it has. A sleep already
    /// waiting is not polled again before it goes off: the driver passes here for every
    /// event, and each poll registers the waker anew.
    pub(super) fn poll(&mut self, at: Instant, cx: &mut Context<'_>) -> std::task::Poll<()> {
        self.arm(at);
        let sleep = self.sleep.as_mut().expect("armed just now");
        if self.waiting && !sleep.is_elapsed() {
            return std::task::Poll::Pending;
        }
        let poll = sleep.as_mut().poll(cx);
        self.waiting = poll.is_pending();
        poll
    }
}
