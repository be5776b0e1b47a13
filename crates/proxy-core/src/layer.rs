//! The layer trait: one protocol's state machine in the per-connection stack.

use std::time::Instant;

use crate::context::Context;
use crate::event::Event;

/// A protocol layer. It takes events for the connections it owns, writes commands to the
/// context, and hands what belongs to its child layers down to them.
pub(crate) trait Layer: Send {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event);

    /// The earliest time at which this layer wants an [`Event::Wakeup`].
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
