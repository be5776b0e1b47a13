//! HTTP/2 error codes (RFC 9113 section 7) and why a connection ended.

use std::fmt;

/// An HTTP/2 error code, as RST_STREAM and GOAWAY carry it. Codes we do not know are kept
/// as they came.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
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
