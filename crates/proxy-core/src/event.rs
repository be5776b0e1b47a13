//! What happens to a [`Connection`](crate::Connection): the input half of the core's API.

use bytes::Bytes;

use crate::hook::HookReply;
use crate::ids::{ConnId, FlowId};
use crate::open_error::OpenError;
use crate::layers::http::carried::message::{Carried, StreamTag};
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
    DataReceived {
        /// The connection they arrived on.
        conn: ConnId,
        /// The bytes as read from the socket (still encrypted if the connection speaks TLS).
        data: Bytes,
    },
    /// The peer of `conn` will send nothing more (EOF, reset or a read error).
    ConnectionClosed {
        /// The connection whose peer is done.
        conn: ConnId,
    },
    /// The connection asked for by [`Command::OpenConnection`](crate::Command::OpenConnection)
    /// is established.
    Opened {
        /// The id the command gave the connection.
        conn: ConnId,
    },
    /// The answer to [`Command::Reuse`](crate::Command::Reuse) when the driver had an idle
    /// connection for it: `conn` is that connection, open, in the state `parked` says.
    Adopted {
        /// The id the command gave the connection.
        conn: ConnId,
        /// The state the connection was parked with ([`Command::Park`](crate::Command::Park)).
        parked: Box<Parked>,
    },
    /// The answer to [`Command::Reuse`](crate::Command::Reuse) with `join`, when the driver had
    /// a carrier to its destination with room: `conn` names one stream on that carrier from
    /// now on. What goes on it is [`Command::Carry`](crate::Command::Carry), what comes back
    /// [`Event::Carried`]; closing `conn` leaves the carrier.
    Joined {
        /// The id the command gave the connection, now a stream's.
        conn: ConnId,
    },
    /// Messages from the carriers that carry streams of this connection (see
    /// [`Event::Joined`]), in the order they were sent, each for the stream its `conn` names
    /// and as the carrier's [`Command::StreamOut`](crate::Command::StreamOut) gave it.
    ///
    /// A driver hands over at once whatever has arrived (one carrier turn's messages, or
    /// several turns'): the connection takes them all before it looks at what is left to do,
    /// once, instead of once per message.
    Carried {
        /// The messages, each with the stream it is for.
        messages: Vec<(ConnId, Carried)>,
    },
    /// To a carrier ([`Connection::carrier`](crate::Connection::carrier)): what client
    /// connections said to the streams it carries, in the order they said it, each under the
    /// tag the driver gave its stream when it joined: a message, as the client connection's
    /// [`Command::Carry`](crate::Command::Carry) gave it, or `None` once the client connection
    /// is done with the stream (it closed the stream, or it is gone; a stream still open is
    /// reset).
    ///
    /// As with [`Event::Carried`], a driver hands over at once whatever has arrived, and the
    /// carrier settles once for all of it.
    Streams {
        /// The messages, each with the stream it is for.
        messages: Vec<(StreamTag, Option<Carried>)>,
    },
    /// The connection asked for by `OpenConnection` could not be established.
    OpenFailed {
        /// The id the command gave the connection.
        conn: ConnId,
        /// Why; it reaches the client in the error response's body.
        error: OpenError,
    },
    /// Everything sent on `conn` so far has been handed to the operating system.
    WriteDrained {
        /// The connection whose output queue is empty.
        conn: ConnId,
    },
    /// `len` more bytes of a [`Command::Forward`](crate::Command::Forward) from `from` have
    /// been written to its destination. `pending` is what the driver has taken from `from`
    /// and the destination has not taken yet: zero, the forward waits for `from` to send
    /// more; otherwise, for the destination to take it. The driver reports a change between
    /// the two even when no byte moved, so that the core knows which peer to time out.
    Forwarded {
        /// The source the forward reads from, as in the command.
        from: ConnId,
        /// Bytes written to the destination since the last report.
        len: u64,
        /// Bytes read from `from` and not yet written to the destination.
        pending: u64,
    },
    /// The deadline last returned by [`Connection::poll_timeout`](crate::Connection::poll_timeout)
    /// has passed, or the waker given to [`Connection::set_waker`](crate::Connection::set_waker)
    /// was woken.
    Wakeup,
    /// The answer to [`Command::Hook`](crate::Command::Hook) for `flow`.
    HookReply {
        /// The `flow` of the command this answers.
        flow: FlowId,
        /// The user's answer.
        reply: HookReply,
    },
    /// User code sends a message on the WebSocket flow `flow`, to `to` (mitmproxy's
    /// `inject.websocket`). It goes out at once, or after the message in progress to `to`;
    /// it is dropped with a log line once the connection is closing.
    Inject {
        /// The WebSocket flow, as its [`Hook::WebSocketStart`](crate::Hook::WebSocketStart)
        /// named it.
        flow: FlowId,
        /// Which side gets the message.
        to: Peer,
        /// Text or binary.
        kind: MessageKind,
        /// The message; a text payload must be UTF-8.
        payload: Bytes,
    },
    /// The proxy began a graceful shutdown: finish what is in progress and keep nothing
    /// alive. An HTTP/1 client connection between requests is closed at once; one with an
    /// exchange in progress closes once that exchange is over (its response says
    /// `Connection: close` if its head has not gone yet); an HTTP/2 client connection is sent
    /// a GOAWAY and closes once its streams are done. Tunnels, WebSockets and handshakes in
    /// progress go on: the driver's shutdown timeout bounds them. A layer made after this
    /// event (the HTTP layer inside a TLS handshake that ends later) drains as well.
    Shutdown,
}
