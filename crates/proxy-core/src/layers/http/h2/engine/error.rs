//! HTTP/2 error codes (RFC 9113 section 7) and why a connection ended.

use std::fmt;

/// An HTTP/2 error code, as RST_STREAM and GOAWAY carry it. Codes we do not know are kept
/// as they came.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    /// Not an error: a graceful GOAWAY, or a stream no longer needed after its response.
    pub const NO_ERROR: Reason = Reason(0x0);
    /// The peer broke the protocol, with no more specific code.
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    /// The sender failed by itself.
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    /// The peer sent more than a flow-control window allowed.
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    /// A SETTINGS frame went unacknowledged too long.
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    /// A frame arrived on a stream already half-closed for it.
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    /// A frame of a size its type does not allow.
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    /// The stream was refused before anything was done with it: safe to send again.
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    /// The stream is no longer wanted (a client that went away).
    pub const CANCEL: Reason = Reason(0x8);
    /// The HPACK state could not be kept in step: the connection is lost.
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    /// The connection a `CONNECT` stream tunnels to was reset or closed abnormally.
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    /// The peer is generating excessive load (too many resets, for one).
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    /// The TLS under the connection is too weak for HTTP/2.
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    /// The request must be sent over HTTP/1.1.
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    const NAMES: [(&'static str, &'static str); 14] = [
        ("NO_ERROR", "not a result of an error"),
        ("PROTOCOL_ERROR", "unspecific protocol error detected"),
        ("INTERNAL_ERROR", "unexpected internal error encountered"),
        ("FLOW_CONTROL_ERROR", "flow-control protocol violated"),
        ("SETTINGS_TIMEOUT", "settings ACK not received in timely manner"),
        ("STREAM_CLOSED", "received frame when stream half-closed"),
        ("FRAME_SIZE_ERROR", "frame with invalid size"),
        ("REFUSED_STREAM", "refused stream before processing any application logic"),
        ("CANCEL", "stream no longer needed"),
        ("COMPRESSION_ERROR", "unable to maintain the header compression context"),
        ("CONNECT_ERROR", "connection established in response to a CONNECT request was reset or abnormally closed"),
        ("ENHANCE_YOUR_CALM", "detected excessive load generating behavior"),
        ("INADEQUATE_SECURITY", "security properties do not meet minimum requirements"),
        ("HTTP_1_1_REQUIRED", "endpoint requires HTTP/1.1"),
    ];

    /// What the code means, in RFC 9113's words.
    pub fn description(&self) -> &'static str {
        usize::try_from(self.0).ok().and_then(|i| Self::NAMES.get(i)).map_or("unknown reason", |(_, d)| d)
    }
}

impl From<u32> for Reason {
    fn from(code: u32) -> Self {
        Reason(code)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match usize::try_from(self.0).ok().and_then(|i| Self::NAMES.get(i)) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "Reason({:#x})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Why an HTTP/2 connection ended other than cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The peer sent a GOAWAY with this error code.
    #[error("the peer sent GOAWAY ({0:?})")]
    PeerGoAway(Reason),
    /// The peer broke the protocol: we sent a GOAWAY with this reason.
    #[error("protocol error, GOAWAY sent ({0:?}: {0})")]
    GoAwaySent(Reason),
    /// The connection failed with this error code, no GOAWAY involved.
    #[error("{0:?}: {0}")]
    Failed(Reason),
    /// The transport under it ended.
    #[error("the connection ended")]
    Ended,
    /// Anything else, in its own words.
    #[error("{0}")]
    Other(String),
}

impl From<Reason> for u32 {
    fn from(reason: Reason) -> u32 {
        reason.0
    }
}
