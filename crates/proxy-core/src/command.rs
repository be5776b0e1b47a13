//! What the core asks its driver to do: the output half of the core's API.

use bytes::Bytes;

use crate::hook::Hook;
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layers::http::carried::message::{Carried, StreamTag};
use crate::upstreams::{Parked, PoolKey};

/// An action for the driver, taken from [`Connection::poll_command`](crate::Connection::poll_command).
///
/// The driver carries commands out in the order they come.
#[derive(Debug)]
pub enum Command {
    /// Write `data` to `conn`.
    SendData {
        /// The connection to write to.
        conn: ConnId,
        /// The bytes, already encrypted if the connection speaks TLS.
        data: Bytes,
    },
    /// Connect to `server`; answer with [`Event::Opened`](crate::Event::Opened) or
    /// [`Event::OpenFailed`](crate::Event::OpenFailed) for the same `conn`.
    OpenConnection {
        /// The name the core gives the new connection from now on; the driver's answer and
        /// every later command for it use this id.
        conn: ConnId,
        /// Where to connect: a host name (the driver resolves it) or an address, and a port.
        server: ServerAddr,
    },
    /// [`OpenConnection`](Self::OpenConnection), unless an idle connection to `key` that
    /// another client connection parked ([`Command::Park`]) is at hand: the driver takes the
    /// one the [`UpstreamPool`](crate::upstreams::UpstreamPool) picks, makes its socket
    /// `conn`, and answers [`Event::Adopted`](crate::Event::Adopted) with its state instead of
    /// `Opened`. With `join`, a stream on a carrier to `key` will do as well (the request may
    /// go over HTTP/2): the driver answers [`Event::Joined`](crate::Event::Joined) if one has
    /// room, and that before looking for an idle connection.
    Reuse {
        /// The name of the connection from now on, whichever way the driver finds one.
        conn: ConnId,
        /// Where to connect if no idle connection is at hand.
        server: ServerAddr,
        /// What an idle connection must match: server, TLS, upstream proxy, verified name.
        key: PoolKey,
        /// Whether a stream on a carrier to `key` will do too.
        join: bool,
    },
    /// `conn` is idle and may serve other client connections: keep its socket with `parked`
    /// in the pool for the next [`Command::Reuse`] of its key, and forget it here. (A socket
    /// that still has output queued, or whose peer has closed, is closed instead.) An HTTP/2
    /// connection ([`Parked::carries_streams`]) may instead be run as a carrier
    /// ([`Connection::carrier`](crate::Connection::carrier)), for streams of any client
    /// connection at once.
    Park {
        /// The idle upstream connection; the core forgets this id.
        conn: ConnId,
        /// Its state (codec, TLS session, destination), to hand back with
        /// [`Event::Adopted`](crate::Event::Adopted).
        parked: Box<Parked>,
    },
    /// To the carrier of the stream `conn` (see [`Event::Joined`](crate::Event::Joined)):
    /// deliver `message` in an [`Event::Streams`](crate::Event::Streams), under the stream's
    /// tag.
    Carry {
        /// The stream, as named when the driver answered [`Event::Joined`](crate::Event::Joined).
        conn: ConnId,
        /// What to deliver, unchanged.
        message: Carried,
    },
    /// From a carrier: deliver `message` to the client connection whose stream the driver
    /// tagged `stream`, in an [`Event::Carried`](crate::Event::Carried) for the stream's `conn`.
    StreamOut {
        /// The stream, as the driver tagged it when the client connection joined.
        stream: StreamTag,
        /// What to deliver, unchanged.
        message: Carried,
    },
    /// From a carrier: it takes this many streams at once from now on (its server's limit);
    /// none once it is closing. Joins beyond it wait for a stream to leave.
    Capacity {
        /// How many streams the carrier takes at once; zero once it is closing.
        streams: usize,
    },
    /// Close `conn`. With `half`, only shut down the writing side (after the queued output),
    /// and keep reading until the peer closes too.
    CloseConnection {
        /// The connection to close.
        conn: ConnId,
        /// Shut down only the writing side and keep reading.
        half: bool,
    },
    /// Move the next `len` bytes that arrive on `from` to `to` unchanged, without handing them
    /// to the core (a body nobody needs to see; on Linux the driver splices it). Report
    /// progress with [`Event::Forwarded`](crate::Event::Forwarded). Output queued for `to`
    /// before this command goes first. Only issued when [`Config::forward_min`] allows.
    ///
    /// [`Config::forward_min`]: crate::Config::forward_min
    Forward {
        /// Where the bytes arrive.
        from: ConnId,
        /// Where they go.
        to: ConnId,
        /// How many bytes to move, exactly; what arrives on `from` after them goes to the
        /// core again.
        len: u64,
    },
    /// Stop reading from `conn` until [`Command::ResumeReading`].
    PauseReading {
        /// The connection not to read from.
        conn: ConnId,
    },
    /// Read from `conn` again.
    ResumeReading {
        /// The connection to read from again.
        conn: ConnId,
    },
    /// Ask the user. Blocking hooks ([`Hook::is_blocking`]) must be answered with exactly one
    /// [`Event::HookReply`](crate::Event::HookReply) for `flow`; the others must not be.
    Hook {
        /// The flow (or, for connection-level hooks, the id issued for the question) that the
        /// answer names.
        flow: FlowId,
        /// The question, with a copy of what it is about.
        hook: Hook,
    },
    /// Something worth a log line: a peer broke the protocol, a connection failed.
    Log {
        /// How much it matters.
        level: LogLevel,
        /// The line, naming the peer and the cause.
        message: String,
    },
}

/// How much a [`Command::Log`] line matters, least first (so levels compare: `Warn > Debug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Detail for whoever debugs the proxy: an idle connection closed, a stream reset, a
    /// request sent again.
    Debug,
    /// Something about one connection a user may want to know: a peer broke the protocol,
    /// could not be reached, or went quiet.
    Info,
    /// Something the operator should look at: failed proxy authentication, a request the
    /// proxy refused to forward, a configuration that cannot work.
    Warn,
}
