//! The layer trait, and how one layer hands its connections on to the next.
//!
//! Layers stack as in mitmproxy: the mode at the root, then TLS, HTTP, or a raw tunnel. A
//! layer whose protocol ends on its connections (HTTP turning into a tunnel after `CONNECT` or
//! `101`) says so with a [`Handover`]; the [`Child`] slot its parent keeps it in puts the next
//! layer in its place, chosen by a [`NextLayer`] function the mode supplies. That is the one
//! mechanism by which a connection changes protocol.

use std::time::Instant;

use bytes::Bytes;

use crate::context::Context;
use crate::event::Event;
use crate::flow::HttpFlow;
use crate::ids::{ConnId, ServerAddr};
use crate::upstreams::ServerState;

/// A protocol layer. It takes events for the connections it owns, writes commands to the
/// context, and hands what belongs to its child layers down to them.
pub(crate) trait Layer: Send {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event);

    /// The earliest time at which this layer wants an [`Event::Wakeup`].
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Whether an [`Event::WriteDrained`] that lifts no congestion means anything to this
    /// layer: something it runs is paced by its peer taking what was written (a WebSocket, a
    /// tunnel inside a stream). When none does, the connection keeps such an event to itself:
    /// an HTTP/1 exchange would otherwise walk the stack twice more per request for nothing.
    fn wants_drained(&self) -> bool {
        true
    }

    /// The connections this layer spoke for, once its protocol is over on them: the layer in
    /// the [`Child`] slot is replaced by what they carry next.
    fn take_handover(&mut self) -> Option<Handover> {
        None
    }
}

/// What a layer hands on when the client connection stops speaking its protocol: the client
/// connection and one server connection, with what each side sent past the switch.
pub(crate) struct Handover {
    pub(crate) server: ConnId,
    /// The server connection's destination.
    pub(crate) target: ServerAddr,
    /// The switch came from a `CONNECT` (not a `101`): what the client sends next may be TLS.
    pub(crate) connect: bool,
    /// Bytes the client sent after the request that asked for the switch.
    pub(crate) client_rest: Bytes,
    /// Bytes the server sent after its `101` (empty for `CONNECT`).
    pub(crate) server_rest: Bytes,
    /// Whether the client has already closed its sending side.
    pub(crate) client_eof: bool,
    /// The upgrade request answered `101` to `Upgrade: websocket`: the connections go on as
    /// WebSocket, this flow's.
    pub(crate) websocket: Option<Box<HttpFlow>>,
    /// A `CONNECT` that took a connection another client connection parked: `server` speaks
    /// TLS already, and this is its HTTP state, for the interception to carry on with.
    pub(crate) pooled: Option<ServerState>,
}

/// The layer a [`Handover`] becomes. The mode decides (see `layers::mode`), so that a layer
/// deep in the stack need not know the layers that may follow it.
pub(crate) type NextLayer = fn(&mut Context, Instant, Handover) -> Box<dyn Layer>;

/// A child layer, replaced by its successor whenever it hands over.
pub(crate) struct Child {
    layer: Box<dyn Layer>,
    next: NextLayer,
}

impl Child {
    pub(crate) fn new(layer: Box<dyn Layer>, next: NextLayer) -> Self {
        Self { layer, next }
    }
}

impl Layer for Child {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        self.layer.handle(cx, now, event);
        while let Some(handover) = self.layer.take_handover() {
            self.layer = (self.next)(cx, now, handover);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.layer.poll_timeout()
    }

    fn wants_drained(&self) -> bool {
        self.layer.wants_drained()
    }
}
