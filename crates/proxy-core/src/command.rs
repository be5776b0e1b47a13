//! What the core asks its driver to do: the output half of the core's API.

use bytes::Bytes;

use crate::hook::Hook;
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layers::http::carried::{Carried, StreamTag};
use crate::upstreams::{Parked, PoolKey};

/// An action for the driver, taken from [`Connection::poll_command`](crate::Connection::poll_command).
///
/// The driver carries commands out in the order they come.
#[derive(Debug)]
pub enum Command {
    /// Write `data` to `conn`.
    SendData { conn: ConnId, data: Bytes },
    /// Connect to `server`; answer with [`Event::Opened`](crate::Event::Opened) or
    /// [`Event::OpenFailed`](crate::Event::OpenFailed) for the same `conn`.
    OpenConnection { conn: ConnId, server: ServerAddr },
    /// [`OpenConnection`](Self::OpenConnection), unless an idle connection to `key` that
    /// another client connection parked ([`Command::Park`]) is at hand: the driver takes the
    /// one the [`UpstreamPool`](crate::upstreams::UpstreamPool) picks, makes its socket
    /// `conn`, and answers [`Event::Adopted`](crate::Event::Adopted) with its state instead of
    /// `Opened`. With `join`, a stream on a carrier to `key` will do as well (the request may
    /// go over HTTP/2): the driver answers [`Event::Joined`](crate::Event::Joined) if one has
    /// room, and that before looking for an idle connection.
    Reuse { conn: ConnId, server: ServerAddr, key: PoolKey, join: bool },
    /// `conn` is idle and may serve other client connections: keep its socket with `parked`
    /// in the pool for the next [`Command::Reuse`] of its key, and forget it here. (A socket
    /// that still has output queued, or whose peer has closed, is closed instead.) An HTTP/2
    /// connection ([`Parked::carries_streams`]) may instead be run as a carrier
    /// ([`Connection::carrier`](crate::Connection::carrier)), for streams of any client
    /// connection at once.
    Park { conn: ConnId, parked: Box<Parked> },
    /// To the carrier of the stream `conn` (see [`Event::Joined`](crate::Event::Joined)):
    /// deliver `message` as [`Event::Stream`](crate::Event::Stream), under the stream's tag.
    Carry { conn: ConnId, message: Carried },
    /// From a carrier: deliver `message` to the client connection whose stream the driver
    /// tagged `stream`, as [`Event::Carried`](crate::Event::Carried) for the stream's `conn`.
    StreamOut { stream: StreamTag, message: Carried },
    /// From a carrier: it takes this many streams at once from now on (its server's limit);
    /// none once it is closing. Joins beyond it wait for a stream to leave.
    Capacity { streams: usize },
    /// Close `conn`. With `half`, only shut down the writing side (after the queued output),
    /// and keep reading until the peer closes too.
    CloseConnection { conn: ConnId, half: bool },
    /// Move the next `len` bytes that arrive on `from` to `to` unchanged, without handing them
    /// to the core (a body nobody needs to see; on Linux the driver splices it). Report
    /// progress with [`Event::Forwarded`](crate::Event::Forwarded). Output queued for `to`
    /// before this command goes first. Only issued when [`Config::forward_min`] allows.
    ///
    /// [`Config::forward_min`]: crate::Config::forward_min
    Forward { from: ConnId, to: ConnId, len: u64 },
    /// Stop reading from `conn` until [`Command::ResumeReading`].
    PauseReading { conn: ConnId },
    /// Read from `conn` again.
    ResumeReading { conn: ConnId },
    /// Ask the user. Blocking hooks ([`Hook::is_blocking`]) must be answered with exactly one
    /// [`Event::HookReply`](crate::Event::HookReply) for `flow`; the others must not be.
    Hook { flow: FlowId, hook: Hook },
    /// Something worth a log line: a peer broke the protocol, a connection failed.
    Log { level: LogLevel, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
}
