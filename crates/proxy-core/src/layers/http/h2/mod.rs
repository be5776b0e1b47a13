//! HTTP/2 codecs: [`H2Server`] faces a client (we are its server), [`H2Client`] faces an
//! upstream server. Like the HTTP/1 codecs they turn bytes into version-agnostic
//! [`HttpEvent`](super::event::HttpEvent)s and back, so the HTTP layer and its streams need not know which version a
//! side speaks; unlike them, one connection carries many flows at once.
//!
//! # An engine of our own
//!
//! [`engine`] is HTTP/2 itself: frames, HPACK, stream states and flow control, as a
//! synchronous state machine (bytes in, events out) with no clock, no waker and no lock. It
//! replaced the `h2` crate, which the core used to poll over in-memory buffers: h2 is sound,
//! but driven that way it cost a proxied request about twice what HTTP/1.1 did (polling every
//! stream after every change, a mutex per call, its buffers allocated eagerly: 28 KiB per
//! idle connection). The `h2` crate stays what the tests' real HTTP/2 clients and origins
//! are built on, so the engine is checked against an implementation that is not its own.
//!
//! # Translation
//!
//! Towards HTTP/2, connection-specific fields (`connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`, and `te` other than `trailers`) are
//! dropped and `host` becomes `:authority`; from HTTP/2, `:authority` becomes `host`.
//!
//! The engine's heads ([`engine::RequestHead`], [`engine::ResponseHead`]) keep their fields
//! as our [`Headers`](crate::headers::Headers), so a field crosses the codec without a copy:
//! a head from an HTTP/2 peer is passed on as it was decoded (one buffer per block, static
//! names), and one for an HTTP/2 peer is shared as it is when nothing in it has to change.
//!
//! # Malformed messages
//!
//! What RFC 9113 (sections 8.1.1, 8.2 and 8.3) makes a malformed message is never forwarded.
//! The engine refuses much of it itself, with a reset or a GOAWAY; [`fields`] lists what, and
//! checks the rest on every head and trailer section, both ways. A malformed request is
//! answered `400` naming the rule (its trailers: the stream is reset, the upstream request
//! abandoned); a malformed response resets the server's stream with `PROTOCOL_ERROR` and
//! becomes the client's `502`.

mod client;
mod conversion;
pub(crate) mod engine;
pub(crate) mod fields;
mod server;
mod small_map;

pub(crate) use client::H2Client;
pub(crate) use server::H2Server;

use crate::config::Http2Limits;
use engine::Settings;
use small_map::SmallMap;

/// What an HTTP/2 client connection begins with.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The engine settings our limits ask for, either side.
fn settings(limits: &Http2Limits, connect_protocol: bool) -> Settings {
    Settings {
        connect_protocol,
        max_concurrent_streams: limits.max_concurrent_streams,
        max_header_list_size: limits.max_header_list_size,
        stream_window: limits.stream_window,
        connection_window: limits.connection_window,
        max_pending_accept_reset_streams: limits.max_pending_accept_reset_streams,
        max_local_error_reset_streams: limits.max_local_error_reset_streams,
    }
}
