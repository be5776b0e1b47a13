//! What the codecs produce and take: steps of HTTP messages, whatever version carried them.
//! A leaf of the HTTP layer, so that codecs and streams can share it without importing the
//! layer that drives them.

use bytes::Bytes;
use crate::layers::http::h2::engine::Reason;

use crate::flow::{Request, Response};
use crate::headers::Headers;
use crate::ids::FlowId;
use crate::layers::http::h2::engine::ConnectionError;

/// One step of an HTTP message, independent of the HTTP version that carried it.
///
/// A message whose `body` is `Some` is complete: no `*Data` or `*End` event follows it.
#[derive(Debug, Clone)]
pub(crate) enum HttpEvent {
    RequestHeaders { flow: FlowId, request: Request, end_stream: bool },
    RequestData { flow: FlowId, data: Bytes },
    RequestEnd { flow: FlowId, trailers: Option<Headers> },
    /// A 1xx response other than 101.
    InterimResponse { flow: FlowId, response: Response },
    ResponseHeaders { flow: FlowId, response: Response, end_stream: bool },
    ResponseData { flow: FlowId, data: Bytes },
    ResponseEnd { flow: FlowId, trailers: Option<Headers> },
}

impl HttpEvent {
    /// The same step, of `flow`.
    pub(crate) fn set_flow(&mut self, to: FlowId) {
        match self {
            Self::RequestHeaders { flow, .. }
            | Self::RequestData { flow, .. }
            | Self::RequestEnd { flow, .. }
            | Self::InterimResponse { flow, .. }
            | Self::ResponseHeaders { flow, .. }
            | Self::ResponseData { flow, .. }
            | Self::ResponseEnd { flow, .. } => *flow = to,
        }
    }

    pub(crate) fn flow(&self) -> FlowId {
        match self {
            Self::RequestHeaders { flow, .. }
            | Self::RequestData { flow, .. }
            | Self::RequestEnd { flow, .. }
            | Self::InterimResponse { flow, .. }
            | Self::ResponseHeaders { flow, .. }
            | Self::ResponseData { flow, .. }
            | Self::ResponseEnd { flow, .. } => *flow,
        }
    }
}

/// What a codec produced, whichever of the four: `Http1Server` or `H2Server` facing the
/// client, `Http1Client` or `H2Client` facing a server. Where the codec knows the flow a
/// failure concerns, the output names it. `E` says how the peer can break the protocol: a
/// `ClientError` for the codecs facing the client, a `ServerError` for those facing servers.
#[derive(Debug)]
pub(crate) enum CodecOutput<E> {
    /// A step of a message.
    Http(HttpEvent),
    /// The peer broke the protocol, in `flow`'s message or, without a flow, between messages.
    /// The codec has done its part (answered the client if it still could, reset the
    /// stream). An HTTP/1 connection is unusable after it; HTTP/2 loses only the stream.
    Error { flow: Option<FlowId>, error: E },
    /// `flow`'s HTTP/2 stream ended abnormally: the peer reset it, the engine did, or it was lost with
    /// its connection.
    Reset { flow: FlowId, reset: StreamReset },
    /// The connection is over. `flow`: the exchange it cut short (HTTP/1); without one, the
    /// flows still on it (HTTP/2, whose streams had their `Reset` first). `error`: why, when
    /// it was not a clean close.
    Closed { flow: Option<FlowId>, error: Option<ConnectionError> },
}

/// How an HTTP/2 stream ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamReset {
    pub(crate) reason: Reason,
    /// The peer reset the stream; otherwise the engine did (a protocol error), or the connection went.
    pub(crate) remote: bool,
    /// The peer cannot have acted on the request, which may be sent again (RFC 9113
    /// section 8.7): it refused the stream, or the stream was above its GOAWAY's last one.
    pub(crate) unprocessed: bool,
}
