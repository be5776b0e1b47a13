//! What the core asks its driver to do: the output half of the core's API.

use bytes::Bytes;

use crate::hook::Hook;
use crate::ids::{ConnId, FlowId, ServerAddr};

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
