//! Settings: ours (the limits we advertise and enforce), and following the server's first
//! SETTINGS frame, which decides how many streams a client may open at once.

use super::transport::Frames;

/// The engine's settings; the limits that keep a peer from costing us unbounded memory.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Streams the peer may have open at once (we advertise it as a server; as a client we
    /// open no more than the server allows).
    pub max_concurrent_streams: u32,
    /// Largest header list we accept, decoded; also bounds a CONTINUATION sequence.
    pub max_header_list_size: u32,
    /// Receive window per stream: how much of one body may sit here unread.
    pub stream_window: u32,
    /// Receive window of the whole connection.
    pub connection_window: u32,
    /// Streams the peer may open and reset before we saw them (the "rapid reset" attack,
    /// CVE-2023-44487) before the connection is closed with ENHANCE_YOUR_CALM.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset for the peer's protocol errors before we close the connection.
    pub max_local_error_reset_streams: usize,
    /// As a server: advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441), so that clients
    /// may open WebSockets as streams with an extended CONNECT.
    pub connect_protocol: bool,
}

impl Default for Settings {
    /// HTTP/2's own defaults (RFC 9113 section 6.5.2), with h2's limits.
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 16 * 1024,
            stream_window: 65_535,
            connection_window: 65_535,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            connect_protocol: false,
        }
    }
}

/// The server's SETTINGS frame, the first it sends. Until h2 has applied it, the server's
/// stream limit is unknown (HTTP/2 starts without one), and a client that opened many
/// streams at once would have those past the limit refused (REFUSED_STREAM). So the engine
/// opens one stream first and the rest once the limit is known; it follows the frame's bytes
/// to know when, as h2 does not say.
#[derive(Debug, PartialEq)]
pub(super) enum PeerSettings {
    /// The first frame, as far as it has come.
    Arriving(Frames),
    /// Received whole; h2 applies it when it next reads.
    Received,
    /// Applied; or not awaited (server role).
    Applied,
}

impl PeerSettings {
    /// Awaiting the server's first frame.
    pub(super) fn awaited() -> Self {
        Self::Arriving(Frames::START)
    }

    /// Follow the server's first frame through `data`, the next bytes from it.
    pub(super) fn follow(&mut self, data: &[u8]) {
        if let Self::Arriving(frame) = self {
            if frame.finish_frame(data).is_some() {
                *self = Self::Received;
            }
        }
    }
}

/// Apply `settings` to an h2 builder: the server's and the client's have the same methods
/// but no common trait.
macro_rules! configure {
    ($builder:expr, $settings:expr) => {
        $builder
            .max_concurrent_streams($settings.max_concurrent_streams)
            .max_header_list_size($settings.max_header_list_size)
            .initial_window_size($settings.stream_window)
            .initial_connection_window_size($settings.connection_window)
            .max_pending_accept_reset_streams($settings.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some($settings.max_local_error_reset_streams))
            .max_send_buffer_size($settings.stream_window as usize)
    };
}

pub(super) use configure;
