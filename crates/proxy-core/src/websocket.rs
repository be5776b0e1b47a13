//! WebSocket flows as hooks see them: messages, the end of a connection, and the limits and
//! mask keys the WebSocket layer works with.
//!
//! After a `101 Switching Protocols` to `Upgrade: websocket`, the flow goes on as a WebSocket
//! layer over both connections: frames are parsed and checked (RFC 6455), and each message
//! may be shown to the [`Hook::WebSocketMessage`](crate::Hook::WebSocketMessage) hook, which
//! passes, changes or drops it. Messages can be injected in either direction with
//! [`Event::Inject`](crate::Event::Inject).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::flow::HttpFlow;
use crate::ids::FlowId;

/// Which end of a WebSocket connection: who sent a message, or whom it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The client that sent the upgrade request.
    Client,
    /// The server that answered it `101`.
    Server,
}

impl Peer {
    /// The other end: whom a message from `self` goes to.
    pub fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }

    /// `"client"` or `"server"`, for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }

    /// Where this peer's entry is in a `[client, server]` pair, as in
    /// [`WebSocketEnd::messages`].
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// Text (UTF-8, checked) or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A text message: its payload is UTF-8.
    Text,
    /// A binary message: any bytes.
    Binary,
}

/// One WebSocket message, or one piece of a message too large to hold whole (see
/// [`WebSocketLimits::oversize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketMessage {
    /// The WebSocket flow (the id of its upgrade request).
    pub flow: FlowId,
    /// Who sent it; it goes to the other peer.
    pub from: Peer,
    /// Text or binary; a hook may change it with the payload.
    pub kind: MessageKind,
    /// The payload, decompressed if the peers compress. A hook that changes a text message
    /// must leave it valid UTF-8, or the message is dropped with a log line.
    pub payload: Bytes,
    /// Where this piece starts in its message, and whether it is the last piece. A message
    /// held whole is one piece: offset 0, last.
    pub offset: u64,
    /// Whether this piece ends its message.
    pub last: bool,
    /// Sent by user code ([`Event::Inject`](crate::Event::Inject)), not by a peer. Injected
    /// messages are not shown to the hook.
    pub injected: bool,
    /// When it (or this piece) had arrived whole.
    pub time: Instant,
}

impl WebSocketMessage {
    /// The payload as text, for a text message.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Text => std::str::from_utf8(&self.payload).ok(),
            MessageKind::Binary => None,
        }
    }
}

/// How a WebSocket connection ended, for [`Hook::WebSocketEnd`](crate::Hook::WebSocketEnd).
#[derive(Debug, Clone)]
pub struct WebSocketEnd {
    /// The WebSocket flow (the id of its upgrade request).
    pub flow: FlowId,
    /// The upgrade request and its `101`.
    pub upgrade: HttpFlow,
    /// The close code of the first close frame, `None` when the connection ended without one
    /// (1006 in RFC 6455 terms) or with an empty close frame (1005).
    pub code: Option<u16>,
    /// The reason text of that close frame; empty without one.
    pub reason: String,
    /// Who closed first: sent the first close frame, broke the protocol, or went away.
    pub closed_by: Option<Peer>,
    /// Why the proxy ended it, when a peer broke the protocol or a limit was hit.
    pub error: Option<String>,
    /// Messages each way: `[from client, from server]`.
    pub messages: [u64; 2],
    /// Payload bytes each way as they arrived (compressed, if the peers compress):
    /// `[from client, from server]`.
    pub bytes: [u64; 2],
    /// When the connection ended.
    pub ended: Instant,
}

/// What happens to a message larger than [`WebSocketLimits::max_message`] when the message
/// hook wants whole messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Oversize {
    /// Close the connection: 1009 (message too big) to its sender, 1001 to the other peer.
    Close,
    /// Show the hook the message in pieces of at most `max_message` bytes, each passed,
    /// changed or dropped on its own (see [`WebSocketMessage::offset`] and `last`). The
    /// default: a handler that asks for every hook never breaks a large message by asking.
    #[default]
    Pieces,
}

/// Limits of the WebSocket layer.
#[derive(Debug, Clone)]
pub struct WebSocketLimits {
    /// Largest message held whole for the message hook (decompressed). Without the hook,
    /// messages of any size stream through, frame by frame. Default: 16 MiB.
    pub max_message: usize,
    /// What becomes of a larger message. Default: [`Oversize::Pieces`].
    pub oversize: Oversize,
    /// Negotiate `permessage-deflate` as the peers offer it. Off: the offer is removed from the
    /// upgrade request, and messages pass uncompressed. Default: on.
    pub deflate: bool,
    /// Injected messages waiting for a peer's message in progress to end; more are refused
    /// with a log line. Default: 64.
    pub max_injected: usize,
    /// How long a peer sent a close frame has to answer it before its connection is closed.
    /// Default: 5 s.
    pub close_timeout: Duration,
    /// WebSockets over HTTP/2 (RFC 8441): advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` to
    /// HTTP/2 clients and take their extended CONNECTs as WebSocket upgrades; send upgrades
    /// as extended CONNECTs on HTTP/2 server connections whose server enabled them (an open
    /// one, or an h2c prior-knowledge upstream). Off: every server gets HTTP/1.1's upgrade.
    /// Default: on.
    pub http2: bool,
    /// Where the masking keys of frames to servers come from. Default: the operating
    /// system's generator ([`MaskKeys::system`]).
    pub mask_keys: MaskKeys,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        Self {
            max_message: 16 * 1024 * 1024,
            oversize: Oversize::Pieces,
            deflate: true,
            max_injected: 64,
            close_timeout: Duration::from_secs(5),
            http2: true,
            mask_keys: MaskKeys::system(),
        }
    }
}

/// Where the masking keys of frames the proxy writes to a server come from (RFC 6455
/// section 5.3: unpredictable to scripts). The core draws no randomness itself: the embedder
/// supplies it, and tests supply a fixed sequence.
#[derive(Clone)]
pub struct MaskKeys(Arc<FillFn>);

/// What fills a buffer with unpredictable bytes.
type FillFn = dyn Fn(&mut [u8]) + Send + Sync;

impl MaskKeys {
    /// Keys from `fill`, which fills a buffer with unpredictable bytes.
    pub fn new(fill: impl Fn(&mut [u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(fill))
    }

    /// Keys from the operating system's generator, through rustls's crypto provider.
    pub fn system() -> Self {
        Self::new(|buf| {
            let provider = rustls::crypto::ring::default_provider();
            if provider.secure_random.fill(buf).is_err() {
                // No generator at all: a key is still needed, and a fixed one only weakens
                // the cache-poisoning defence masking exists for, never correctness.
                buf.fill(0x5a);
            }
        })
    }

    pub(crate) fn fill(&self, buf: &mut [u8]) {
        (self.0)(buf)
    }
}

impl Default for MaskKeys {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKeys")
    }
}
