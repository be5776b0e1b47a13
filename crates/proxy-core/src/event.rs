//! What happens to a [`Connection`](crate::Connection): the input half of the core's API.

use bytes::Bytes;

use crate::hook::HookReply;
use crate::ids::{ConnId, FlowId};
use crate::layers::http::carried::{Carried, StreamTag};
use crate::upstreams::Parked;
use crate::websocket::{MessageKind, Peer};

/// Something that happened, fed to [`Connection::handle`](crate::Connection::handle).
///
/// The driver turns socket activity, timer expiry and hook answers into events. Every event
/// carries the time at which it happened as the `now` argument of `handle`, never inside itself.
#[derive(Debug)]
pub enum Event {
    /// The client connection was accepted; the core may now start talking.
    Start,
    /// Bytes arrived on `conn`.
    DataReceived { conn: ConnId, data: Bytes },
    /// The peer of `conn` will send nothing more (EOF, reset or a read error).
    ConnectionClosed { conn: ConnId },
    /// The connection asked for by [`Command::OpenConnection`](crate::Command::OpenConnection)
    /// is established.
    Opened { conn: ConnId },
    /// The answer to [`Command::Reuse`](crate::Command::Reuse) when the driver had an idle
    /// connection for it: `conn` is that connection, open, in the state `parked` says.
    Adopted { conn: ConnId, parked: Box<Parked> },
    /// The answer to [`Command::Reuse`](crate::Command::Reuse) with `join`, when the driver had
    /// a carrier to its destination with room: `conn` names one stream on that carrier from
    /// now on. What goes on it is [`Command::Carry`](crate::Command::Carry), what comes back
    /// [`Event::Carried`]; closing `conn` leaves the carrier.
    Joined { conn: ConnId },
    /// A message from the carrier that carries the stream `conn` (see [`Event::Joined`]).
    Carried { conn: ConnId, message: Carried },
    /// To a carrier ([`Connection::carrier`](crate::Connection::carrier)): a message from the
    /// client connection whose stream the driver tagged `stream` when it joined.
    Stream { stream: StreamTag, message: Carried },
    /// To a carrier: the client connection of `stream` is done with it (it closed the stream,
    /// or it is gone). A stream still open is reset.
    StreamGone { stream: StreamTag },
    /// The connection asked for by `OpenConnection` could not be established.
    OpenFailed { conn: ConnId, error: OpenError },
    /// Everything sent on `conn` so far has been handed to the operating system.
    WriteDrained { conn: ConnId },
    /// `len` more bytes of a [`Command::Forward`](crate::Command::Forward) from `from` have
    /// been written to its destination. `pending` is what the driver has taken from `from`
    /// and the destination has not taken yet: zero, the forward waits for `from` to send
    /// more; otherwise, for the destination to take it. The driver reports a change between
    /// the two even when no byte moved, so that the core knows which peer to time out.
    Forwarded { from: ConnId, len: u64, pending: u64 },
    /// The deadline last returned by [`Connection::poll_timeout`](crate::Connection::poll_timeout)
    /// has passed, or the waker given to [`Connection::set_waker`](crate::Connection::set_waker)
    /// was woken.
    Wakeup,
    /// The answer to [`Command::Hook`](crate::Command::Hook) for `flow`.
    HookReply { flow: FlowId, reply: HookReply },
    /// User code sends a message on the WebSocket flow `flow`, to `to` (mitmproxy's
    /// `inject.websocket`). It goes out at once, or after the message in progress to `to`;
    /// it is dropped with a log line once the connection is closing.
    Inject { flow: FlowId, to: Peer, kind: MessageKind, payload: Bytes },
    /// The proxy began a graceful shutdown: finish what is in progress and keep nothing
    /// alive. An HTTP/1 client connection between requests is closed at once; one with an
    /// exchange in progress closes once that exchange is over (its response says
    /// `Connection: close` if its head has not gone yet); an HTTP/2 client connection is sent
    /// a GOAWAY and closes once its streams are done. Tunnels, WebSockets and handshakes in
    /// progress go on: the driver's shutdown timeout bounds them. A layer made after this
    /// event (the HTTP layer inside a TLS handshake that ends later) drains as well.
    Shutdown,
}

/// Why an upstream connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("name resolution failed: {0}")]
    Dns(String),
    #[error("connection refused")]
    Refused,
    #[error("connect timed out")]
    Timeout,
    /// The TCP connection opened but the TLS handshake over it failed; says why, for example
    /// "certificate expired".
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}
