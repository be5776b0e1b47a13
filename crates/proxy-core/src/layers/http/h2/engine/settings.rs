//! Settings: ours (the limits we advertise and enforce), and the peer's as its SETTINGS
//! frames bring them.

use super::frame::{self, DEFAULT_MAX_FRAME, DEFAULT_WINDOW};
use super::Reason;

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

/// What the peer's SETTINGS say, as far as they have come.
#[derive(Debug)]
pub(super) struct PeerSettings {
    /// Its first SETTINGS frame is in (it always comes first).
    pub(super) received: bool,
    /// Streams we may have open at once; `None`: no limit said.
    pub(super) max_concurrent_streams: Option<u32>,
    pub(super) initial_window: i64,
    pub(super) max_frame_size: usize,
    pub(super) header_table_size: Option<u32>,
    /// RFC 8441's SETTINGS_ENABLE_CONNECT_PROTOCOL.
    pub(super) connect_protocol: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            received: false,
            max_concurrent_streams: None,
            initial_window: DEFAULT_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME,
            header_table_size: None,
            connect_protocol: false,
        }
    }
}

impl PeerSettings {
    /// Apply one SETTINGS frame's payload (its length checked to be a multiple of six).
    /// Returns how much the initial stream window changed, or the connection error a bad
    /// value is (RFC 9113 section 6.5.2).
    pub(super) fn apply(&mut self, payload: &[u8]) -> Result<i64, Reason> {
        let mut window_delta = 0;
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = frame::u32_at(setting, 2);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => self.header_table_size = Some(value),
                frame::SETTINGS_ENABLE_PUSH if value > 1 => return Err(Reason::PROTOCOL_ERROR),
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = Some(value),
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(Reason::FLOW_CONTROL_ERROR);
                    }
                    window_delta += value - self.initial_window;
                    self.initial_window = value;
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(Reason::PROTOCOL_ERROR);
                    }
                    self.max_frame_size = value as usize;
                }
                frame::SETTINGS_ENABLE_CONNECT_PROTOCOL => match value {
                    0 | 1 => self.connect_protocol = value == 1,
                    _ => return Err(Reason::PROTOCOL_ERROR),
                },
                // SETTINGS_MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored.
                _ => {}
            }
        }
        self.received = true;
        Ok(window_delta)
    }
}
