//! What the codecs produce and take: steps of HTTP messages, whatever version carried them.
//! A leaf of the HTTP layer, so that codecs and streams can share it without importing the
//! layer that drives them.

use bytes::Bytes;

use crate::flow::{Request, Response};
use crate::headers::Headers;
use crate::ids::FlowId;

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

/// What a codec of the client connection (`Http1Server` or `H2Server`: the server side of
/// HTTP, facing the client) produced.
#[derive(Debug)]
pub(crate) enum ServerOutput {
    Http(HttpEvent),
    /// The client broke the protocol. The codec has already answered it (if it still could)
    /// and will close the connection.
    Error { flow: Option<FlowId>, message: String },
    /// The client went away while `flow` was in progress.
    Closed { flow: Option<FlowId> },
    /// The client cancelled `flow` (HTTP/2 only: a stream reset, or the connection lost).
    Reset { flow: FlowId },
}
