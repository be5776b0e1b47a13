//! [`Connection`]: the public face of the core for one client connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::command::Command;
use crate::config::Config;
use crate::context::Context;
use crate::event::Event;
use crate::flow::ClientInfo;
use crate::hook::{Hook, HookKind};
use crate::ids::ConnId;
use crate::layer::Layer;
use crate::layers::http::carried::CarrierLayer;
use crate::layers::http::pool::ServerConn;
use crate::layers::mode::ModeLayer;
use crate::testing::{Alone, AloneLayer};
use crate::layers::tls::transport::TlsTransport;
use crate::upstreams::Parked;

/// One client connection and everything the proxy does for it.
///
/// Call order, as in quinn-proto:
/// 1. [`handle`](Self::handle) an [`Event`] (first [`Event::Start`]) with the current time;
/// 2. drain [`poll_command`](Self::poll_command) and carry out each [`Command`] in order;
/// 3. arm a timer for [`poll_timeout`](Self::poll_timeout) and send [`Event::Wakeup`] when it
///    fires;
/// 4. once [`is_closed`](Self::is_closed) and the commands are drained, drop it.
pub struct Connection {
    cx: Context,
    /// The bottom of the layer stack: TLS under whichever connections speak it, the proxy
    /// mode above it, and the mode's layers above that.
    root: TlsTransport,
    /// The `ClientDisconnected` notification went out.
    disconnected: bool,
}

impl Connection {
    /// The proxy, in the mode `config` says, for the client described by `client`.
    pub fn new(config: Arc<Config>, client: ClientInfo) -> Self {
        let root = TlsTransport::new(Box::new(ModeLayer::new()));
        Self { cx: Context::new(config, client), root, disconnected: false }
    }

    /// A *carrier*: `parked`, an idle HTTP/2 connection a client connection gave up, run on
    /// its own to carry streams of any client connection at once, up to its server's stream
    /// limit. The driver gives it the socket as the returned `ConnId` (its only connection:
    /// there is no client) and carries [`Event::Streams`]/[`Command::StreamOut`] messages
    /// between it and the client connections that join it ([`Event::Joined`]). It reports
    /// how many streams it takes with [`Command::Capacity`], closes once it has carried
    /// nothing for `idle_timeout`, and is closed when its connection is. A connection that
    /// does not speak HTTP/2 is given back.
    ///
    /// [`Command::StreamOut`]: crate::Command::StreamOut
    /// [`Command::Capacity`]: crate::Command::Capacity
    /// [`Event::Streams`]: crate::Event::Streams
    /// [`Event::Joined`]: crate::Event::Joined
    pub fn carrier(config: Arc<Config>, parked: Box<Parked>, idle_timeout: Duration) -> Result<(Self, ConnId), Box<Parked>> {
        if !parked.carries_streams() {
            return Err(parked);
        }
        let unknown = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let mut cx = Context::carrier(config, ClientInfo::new(unknown, unknown));
        let conn = ConnId(1);
        let (server, state) = ServerConn::unpark(*parked);
        cx.adopt_parked(conn, state);
        let layer = CarrierLayer::new(&mut cx, conn, server, idle_timeout);
        // No client to say goodbye for: `disconnected` from the start. Its first event
        // (`Start`) has it say how many streams it takes.
        Ok((Self { cx, root: TlsTransport::new(Box::new(layer)), disconnected: true }, conn))
    }

    /// A connection whose stack is only `layer` (over the TLS transport), for tests that drive
    /// one layer alone: see [`testing`](crate::testing).
    #[doc(hidden)]
    pub fn alone(config: Arc<Config>, client: ClientInfo, layer: Alone) -> Self {
        let mut cx = Context::new(config, client);
        let root = TlsTransport::new(Box::new(AloneLayer::new(&mut cx, layer)));
        Self { cx, root, disconnected: false }
    }

    /// Takes in `event`, which happened at `now`. Its consequences wait in
    /// [`poll_command`](Self::poll_command), and the next deadline in
    /// [`poll_timeout`](Self::poll_timeout).
    ///
    /// `now` is the only clock the core knows: timeouts are measured between the `now`s of
    /// successive events, so it must not go backwards.
    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::WriteDrained { conn } if !self.cx.handle_drained(conn) && !self.root.wants_drained() => return,
            // Remembered for the layers still to come, as well as passed to those there are.
            Event::Shutdown => self.cx.shutting_down = true,
            _ => {}
        }
        self.root.handle(&mut self.cx, now, event);
        if self.cx.all_closed() && !self.disconnected {
            self.disconnected = true;
            if self.cx.config.hooks.contains(HookKind::ClientDisconnected) {
                let flow = self.cx.next_flow_id();
                let client = self.cx.client.clone();
                self.cx.hook(flow, Hook::ClientDisconnected(client));
            }
        }
    }

    /// How this connection is woken by state it shares with others: a gateway's queue wakes
    /// `waker` when a backend is granted to one of its requests, and the driver then feeds
    /// [`Event::Wakeup`] (which, early or late, is always safe: the core checks what is due).
    /// Without a waker, a queued request notices its grant at its next wakeup.
    pub fn set_waker(&mut self, waker: std::task::Waker) {
        self.cx.waker = Some(waker);
    }

    /// The next thing for the driver to do, in order; `None` once there is nothing more until
    /// the next event.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.cx.poll_command()
    }

    /// When to feed [`Event::Wakeup`] next (an idle, head, body or linger timeout, a queued
    /// request's wait): the earliest deadline, or `None` if none is armed. It may change with
    /// every event, so ask again after each one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.root.poll_timeout()
    }

    /// True when every connection is closed and nothing is left to do.
    pub fn is_closed(&self) -> bool {
        self.cx.all_closed() && !self.cx.has_commands()
    }
}
