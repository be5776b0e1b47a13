//! [`Connection`]: the public face of the core for one client connection.

use std::sync::Arc;
use std::time::Instant;

use crate::command::{Command, LogLevel};
use crate::config::Config;
use crate::context::Context;
use crate::event::{Event, OpenError};
use crate::flow::ClientInfo;
use crate::hook::{Hook, HookKind};
use crate::ids::ConnId;
use crate::layer::Layer;
use crate::layers::mode::ModeLayer;
use crate::tls::TlsSide;

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
    root: Box<dyn Layer>,
    /// The `ClientDisconnected` notification went out.
    disconnected: bool,
}

impl Connection {
    /// A regular (explicit) HTTP proxy for the client described by `client`.
    pub fn new(config: Arc<Config>, client: ClientInfo) -> Self {
        Self { cx: Context::new(config, client), root: Box::new(ModeLayer::new()), disconnected: false }
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::WriteDrained { conn } => {
                self.cx.handle_drained(conn);
                self.root.handle(&mut self.cx, now, event);
            }
            Event::DataReceived { conn, data } if !self.cx.is_plain(conn) => self.receive_tls(now, conn, &data),
            Event::Opened { conn } if self.cx.tls(conn).is_some_and(|t| t.awaiting_open) => {
                // TCP is up: the TLS handshake begins, and the layers hear of it when it ends.
                if let Some(tls) = self.cx.tls_mut(conn) {
                    tls.awaiting_open = false;
                    let hello = tls.take_outgoing();
                    self.cx.send_raw(conn, hello);
                }
            }
            Event::ConnectionClosed { conn } if self.cx.tls(conn).is_some_and(|t| t.peer_closed) => {
                // Reported when the peer's close_notify arrived. A close after this one (a
                // write failed: the peer is gone) is news.
                if let Some(tls) = self.cx.tls_mut(conn) {
                    tls.peer_closed = false;
                }
            }
            Event::ConnectionClosed { conn } if self.cx.tls(conn).is_some_and(|t| t.is_handshaking()) => {
                // A peer that hangs up mid-handshake (a client refusing our certificate often
                // does so without an alert) failed the handshake as surely as one that says so.
                let error = "the peer closed the connection during the handshake".to_string();
                self.tls_failed(now, conn, error);
            }
            event => self.root.handle(&mut self.cx, now, event),
        }
        if self.cx.all_closed() && !self.disconnected {
            self.disconnected = true;
            if self.cx.config.hooks.contains(HookKind::ClientDisconnected) {
                let flow = self.cx.next_flow_id();
                let client = self.cx.client.clone();
                self.cx.hook(flow, Hook::ClientDisconnected(client));
            }
        }
    }

    /// Ciphertext arrived on a TLS connection: decrypt it and tell the layers what it meant.
    fn receive_tls(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let want_hook = self.cx.config.hooks.contains(HookKind::TlsEstablished);
        let Some(tls) = self.cx.tls_mut(conn) else { return };
        let received = tls.receive(data);
        let side = tls.side;
        // Copying out the peer's certificates is only worth it for a hook that will see them.
        let wants_info = received.established && want_hook;
        let info = wants_info.then(|| tls.info(conn));
        self.cx.send_raw(conn, received.outgoing);
        if let Some(error) = received.error {
            return self.tls_failed(now, conn, error);
        }
        if let Some(info) = info {
            let flow = self.cx.next_flow_id();
            self.cx.hook(flow, Hook::TlsEstablished(Box::new(info)));
        }
        if received.established && side == TlsSide::Server {
            self.root.handle(&mut self.cx, now, Event::Opened { conn });
        }
        if !received.plaintext.is_empty() {
            self.root.handle(&mut self.cx, now, Event::DataReceived { conn, data: received.plaintext });
        }
        if received.closed {
            if let Some(tls) = self.cx.tls_mut(conn) {
                tls.peer_closed = true;
            }
            self.root.handle(&mut self.cx, now, Event::ConnectionClosed { conn });
        }
    }

    /// The TLS session under `conn` failed (`error` says how): say so, close the connection,
    /// and tell the layers in their terms: an upstream whose handshake failed never opened.
    fn tls_failed(&mut self, now: Instant, conn: ConnId, error: String) {
        let Some(tls) = self.cx.tls_mut(conn) else { return };
        tls.failed = true;
        let (side, was_handshaking) = (tls.side, !tls.established);
        let failure = tls.failure(conn, error.clone());
        let when = if was_handshaking { "handshake" } else { "connection" };
        let peer = match side {
            TlsSide::Client => format!("client {}", self.cx.client.peer),
            TlsSide::Server => format!("server {}", failure.server),
        };
        self.cx.log(LogLevel::Info, format!("TLS {when} with {peer} failed: {error}"));
        if self.cx.config.hooks.contains(HookKind::TlsFailed) {
            let flow = self.cx.next_flow_id();
            self.cx.hook(flow, Hook::TlsFailed(Box::new(failure)));
        }
        self.cx.close(conn, false);
        let event = if side == TlsSide::Server && was_handshaking {
            Event::OpenFailed { conn, error: OpenError::Tls(error) }
        } else {
            Event::ConnectionClosed { conn }
        };
        self.root.handle(&mut self.cx, now, event);
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.cx.poll_command()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.root.poll_timeout()
    }

    /// True when every connection is closed and nothing is left to do.
    pub fn is_closed(&self) -> bool {
        self.cx.all_closed() && !self.cx.has_commands()
    }
}
