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
//! A failure is told by its [`TlsCause`](crate::tls::TlsCause), with the remedy phrased in the
//! words of [`TlsConfig::remedies`](crate::tls::TlsConfig::remedies), in the log line, the
//! `TlsFailed` hook and the `OpenFailed` error (whose text a client's `502` carries). One close
//! that is no failure at the TLS level is reported as one too: a client that completed its
//! handshake and closes within [`REFUSAL_WINDOW`] without a request, as GnuTLS clients do
//! when they do not trust the certificate (they check it only after the handshake); the
//! layers above hear of an ordinary close.
//!
//! Connections without a session, and every other event, pass through untouched. Where TLS
//! runs inside TLS (a secure web proxy's client intercepted inside its `CONNECT`), the outer
//! session decrypts first and the inner one reads its plaintext; the outer one's end or
//! failure ends the connection.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::tls::session::{TlsSession, TlsState};
use crate::tls::{Remedies, TlsError, TlsFailure, TlsPeer};
use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::open_error::OpenError;
use crate::hook::{Hook, HookKind};
use crate::ids::ConnId;
use crate::layer::Layer;

/// How soon after its handshake a client that closes without having sent a byte of a request
/// is taken to have refused the certificate. GnuTLS clients leave within milliseconds; one
/// that leaves later (a connection opened ahead of need and never used, say) just left.
const REFUSAL_WINDOW: Duration = Duration::from_secs(2);

/// The names remedies give to settings when the configuration has none to offer.
static CORE_REMEDIES: Remedies = Remedies::core();

/// Tell of a failed TLS session (`when`: its "handshake" or its "connection"): the remedy in
/// the words of [`TlsConfig::remedies`](crate::tls::TlsConfig::remedies), a log line naming it
/// with the cause, and the `TlsFailed` hook. Returns the remedy.
pub(crate) fn report(cx: &mut Context, when: &str, mut failure: TlsFailure) -> Option<String> {
    let remedies = cx.config.tls.as_ref().map_or(&CORE_REMEDIES, |tls| &tls.remedies);
    failure.remedy = failure.cause.remedy(failure.peer, remedies);
    let remedy = failure.remedy.clone();
    let who = match failure.peer {
        TlsPeer::Client => format!("client {}", cx.client.peer),
        TlsPeer::Server => format!("server {}", failure.server),
    };
    cx.log(LogLevel::Info, format!("TLS {when} with {who} failed: {failure}"));
    if cx.config.hooks.contains(HookKind::TlsFailed) {
        let flow = cx.next_flow_id();
        cx.hook(flow, Hook::TlsFailed(Box::new(failure)));
    }
    remedy
}

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
        let failure = received.error.as_ref().map(|error| outer.failure(conn, error));
        cx.send_wire(conn, received.outgoing);
        if let Some(failure) = failure {
            // The client's session with the proxy itself (a secure web proxy's), whose
            // handshake was over before another session ran inside it.
            report(cx, "connection", failure);
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
        if received.established {
            tls.established_at = Some(now);
        }
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
        if received.closed && was_handshaking && !received.established {
            // A close_notify in the middle of the handshake ends it as surely as a hang-up.
            return self.fail(cx, now, conn, true, TlsError::ClosedInHandshake);
        }
        if !received.plaintext.is_empty() {
            self.inner.handle(cx, now, Event::DataReceived { conn, data: received.plaintext });
        }
        if received.closed {
            self.check_refusal(cx, now, conn);
            self.inner.handle(cx, now, Event::ConnectionClosed { conn });
        }
    }

    /// The session under `conn` failed (`error` says how): say so, close the connection, and
    /// tell the layers in their terms: an upstream whose handshake failed never opened.
    fn fail(&mut self, cx: &mut Context, now: Instant, conn: ConnId, was_handshaking: bool, error: TlsError) {
        let Some(tls) = cx.tls_mut(conn) else { return };
        tls.state = TlsState::Failed;
        let failure = tls.failure(conn, &error);
        let (peer, cause) = (failure.peer, failure.cause.clone());
        let remedy = report(cx, if was_handshaking { "handshake" } else { "connection" }, failure);
        cx.close(conn, false);
        let event = if peer == TlsPeer::Server && was_handshaking {
            Event::OpenFailed { conn, error: OpenError::Tls { cause, remedy } }
        } else {
            Event::ConnectionClosed { conn }
        };
        self.inner.handle(cx, now, event);
    }

    /// The peer of `conn` closed it: if it is a client that completed its handshake within
    /// [`REFUSAL_WINDOW`] and sent nothing since, report that it most likely refused the
    /// certificate. The connection closes as any other.
    fn check_refusal(&mut self, cx: &mut Context, now: Instant, conn: ConnId) {
        let Some(tls) = cx.tls(conn) else { return };
        let soon = tls.established_at.is_some_and(|at| now.saturating_duration_since(at) <= REFUSAL_WINDOW);
        if tls.peer == TlsPeer::Client && soon && !tls.data_received {
            let failure = tls.failure(conn, &TlsError::ClosedAfterHandshake);
            report(cx, "handshake", failure);
        }
    }
}

impl Layer for TlsTransport {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        if let Event::Opened { conn } = event {
            // A session asked for with the connection is made now that it is open.
            if let Some(Err(error)) = cx.start_pending_tls(conn) {
                cx.log(LogLevel::Info, format!("TLS to a server could not start: {error}"));
                cx.close(conn, false);
                let error = error.open_error();
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
            (event @ Event::ConnectionClosed { .. }, TlsState::Established) => {
                self.check_refusal(cx, now, conn);
                self.inner.handle(cx, now, event);
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
