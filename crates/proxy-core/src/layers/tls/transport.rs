//! The TLS transport: the bottom of every client connection's layer stack.
//!
//! A connection that speaks TLS carries a [`TlsSession`] in the context's connection table
//! (the layers that start one put it there: [`Intercept`](super::intercept::Intercept) for the
//! client, the HTTP layer's pool for servers). Outgoing bytes are encrypted where they are
//! queued ([`Context::send`]); incoming ones pass through this layer, which turns what the
//! driver reports about the TCP connection into what the layers above understand about the
//! plaintext one, by the session's [`TlsState`]:
//!
//! | driver reports          | session state              | layers above hear                        |
//! |-------------------------|----------------------------|------------------------------------------|
//! | `Opened`                | `Connecting`               | nothing yet: the first flight goes out   |
//! | `DataReceived`          | `Handshaking`              | `Opened` (a server) once it completes     |
//! | `DataReceived`          | `Established`              | `DataReceived` with the plaintext        |
//! | `DataReceived` (notify) | becomes `PeerClosed`       | `ConnectionClosed`                       |
//! | `ConnectionClosed`      | `PeerClosed`               | nothing: they heard it from the notify   |
//! | `ConnectionClosed`      | `Connecting`/`Handshaking` | `OpenFailed` (a server) or `ConnectionClosed` |
//! | anything failing        | becomes `Failed`           | as above, after a log line and `TlsFailed` |
//!
//! Connections without a session, and every other event, pass through untouched. Where TLS
//! runs inside TLS (a secure web proxy's client intercepted inside its `CONNECT`), the outer
//! session decrypts first and the inner one reads its plaintext; the outer one's end or
//! failure ends the connection.

use std::time::Instant;

use bytes::Bytes;

use crate::tls::session::{TlsSession, TlsState};
use crate::tls::{TlsError, TlsPeer};
use crate::command::LogLevel;
use crate::context::Context;
use crate::event::{Event, OpenError};
use crate::hook::{Hook, HookKind};
use crate::ids::ConnId;
use crate::layer::Layer;

/// Record protection under `inner`, for every connection that has a session.
pub(crate) struct TlsTransport {
    inner: Box<dyn Layer>,
}

impl TlsTransport {
    pub(crate) fn new(inner: Box<dyn Layer>) -> Self {
        Self { inner }
    }

    /// Ciphertext arrived on `conn`: decrypt it (twice, under TLS inside TLS) and tell the
    /// layers what it meant.
    fn receive(&mut self, cx: &mut Context, now: Instant, conn: ConnId, data: Bytes) {
        let Some(outer) = cx.outer_tls_mut(conn) else { return self.receive_inner(cx, now, conn, data) };
        let received = outer.receive(data);
        cx.send_wire(conn, received.outgoing);
        if let Some(error) = received.error {
            let message = error.to_string();
            cx.log(LogLevel::Info, format!("TLS connection with client {} (the outer session) failed: {message}", cx.client.peer));
            if let Some(outer) = cx.outer_tls_mut(conn) {
                outer.state = TlsState::Failed;
            }
            cx.close(conn, false);
            return self.inner.handle(cx, now, Event::ConnectionClosed { conn });
        }
        if !received.plaintext.is_empty() {
            self.receive_inner(cx, now, conn, received.plaintext);
        }
        if received.closed && cx.tls(conn).is_some_and(|t| !matches!(t.state, TlsState::PeerClosed | TlsState::Closed | TlsState::Failed)) {
            // The outer session ended under the inner one, which never said goodbye.
            if let Some(tls) = cx.tls_mut(conn) {
                tls.state = TlsState::PeerClosed;
            }
            self.inner.handle(cx, now, Event::ConnectionClosed { conn });
        }
    }

    /// What the innermost session under `conn` makes of `data`.
    fn receive_inner(&mut self, cx: &mut Context, now: Instant, conn: ConnId, data: Bytes) {
        let want_hook = cx.config.hooks.contains(HookKind::TlsEstablished);
        let Some(tls) = cx.tls_mut(conn) else { return };
        let was_handshaking = is_handshaking(tls);
        let received = tls.receive(data);
        let peer = tls.peer;
        // Copying out the peer's certificates is only worth it for a hook that will see them.
        let info = (received.established && want_hook).then(|| tls.info(conn));
        cx.send_raw(conn, received.outgoing);
        if let Some(error) = received.error {
            return self.fail(cx, now, conn, was_handshaking, error);
        }
        if let Some(info) = info {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::TlsEstablished(Box::new(info)));
        }
        if received.established && peer == TlsPeer::Server {
            self.inner.handle(cx, now, Event::Opened { conn });
        }
        if !received.plaintext.is_empty() {
            self.inner.handle(cx, now, Event::DataReceived { conn, data: received.plaintext });
        }
        if received.closed {
            self.inner.handle(cx, now, Event::ConnectionClosed { conn });
        }
    }

    /// The session under `conn` failed (`error` says how): say so, close the connection, and
    /// tell the layers in their terms: an upstream whose handshake failed never opened.
    fn fail(&mut self, cx: &mut Context, now: Instant, conn: ConnId, was_handshaking: bool, error: TlsError) {
        let Some(tls) = cx.tls_mut(conn) else { return };
        tls.state = TlsState::Failed;
        let peer = tls.peer;
        let message = error.to_string();
        let failure = tls.failure(conn, message.clone());
        let when = if was_handshaking { "handshake" } else { "connection" };
        let who = match peer {
            TlsPeer::Client => format!("client {}", cx.client.peer),
            TlsPeer::Server => format!("server {}", failure.server),
        };
        cx.log(LogLevel::Info, format!("TLS {when} with {who} failed: {message}"));
        if cx.config.hooks.contains(HookKind::TlsFailed) {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::TlsFailed(Box::new(failure)));
        }
        cx.close(conn, false);
        let event = if peer == TlsPeer::Server && was_handshaking {
            Event::OpenFailed { conn, error: OpenError::Tls(message) }
        } else {
            Event::ConnectionClosed { conn }
        };
        self.inner.handle(cx, now, event);
    }
}

impl Layer for TlsTransport {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        if let Event::Opened { conn } = event {
            // A session asked for with the connection is made now that it is open.
            if let Some(Err(error)) = cx.start_pending_tls(conn) {
                cx.log(LogLevel::Info, format!("TLS to a server could not start: {error}"));
                cx.close(conn, false);
                let error = OpenError::Tls(error.to_string());
                return self.inner.handle(cx, now, Event::OpenFailed { conn, error });
            }
        }
        let state = match &event {
            Event::DataReceived { conn, .. } | Event::Opened { conn } | Event::ConnectionClosed { conn } => {
                cx.tls(*conn).map(|tls| (*conn, tls.state))
            }
            _ => None,
        };
        let Some((conn, state)) = state else { return self.inner.handle(cx, now, event) };
        match (event, state) {
            (Event::DataReceived { data, .. }, _) => self.receive(cx, now, conn, data),
            (Event::Opened { .. }, TlsState::Connecting) => {
                // TCP is up: the handshake begins, and the layers hear of it when it ends.
                let first_flight = cx.tls_mut(conn).map(TlsSession::opened).unwrap_or_default();
                cx.send_raw(conn, first_flight);
            }
            (Event::ConnectionClosed { .. }, TlsState::PeerClosed) => {
                // Reported when the peer's close_notify arrived.
                if let Some(tls) = cx.tls_mut(conn) {
                    tls.state = TlsState::Closed;
                }
            }
            (Event::ConnectionClosed { .. }, TlsState::Connecting | TlsState::Handshaking) => {
                // A peer that hangs up mid-handshake (a client refusing our certificate often
                // does so without an alert) failed the handshake as surely as one that says so.
                self.fail(cx, now, conn, true, TlsError::ClosedInHandshake);
            }
            (event, _) => self.inner.handle(cx, now, event),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn wants_drained(&self) -> bool {
        self.inner.wants_drained()
    }
}

fn is_handshaking(tls: &TlsSession) -> bool {
    matches!(tls.state, TlsState::Connecting | TlsState::Handshaking)
}
