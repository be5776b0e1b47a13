//! Hooks: where the core stops to ask the user about a connection or a flow.

use crate::flow::{ClientInfo, HttpFlow, Response};
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::tls::{ClientHello, TlsFailure, TlsInfo};
use crate::websocket::{WebSocketEnd, WebSocketMessage};

/// A question for the user, carried by [`Command::Hook`](crate::Command::Hook).
///
/// HTTP hooks carry a copy of the flow; the user may change it and hand it back with
/// [`HookReply::Update`]. Only the flow that asked waits for the answer: the connection's other
/// flows (the other streams of an HTTP/2 client) go on meanwhile. A hook left out of
/// [`Config::hooks`](crate::Config::hooks) is not raised, and the flow goes on as if it had
/// been answered [`HookReply::Continue`].
///
/// An HTTP flow raises, in this order and each at most once: `HttpConnect` (a `CONNECT`) or
/// `RequestHeaders` then `Request`; then `ResponseHeaders` then `Response` for the response the
/// client gets, whether the server sent it or a hook gave it ([`HookReply::Respond`]); or, in
/// place of the response hooks, `Error` once the flow failed. This is mitmproxy's order, with
/// two differences: a `Respond` to `RequestHeaders` skips `Request` (the request body is read
/// and dropped, not held for a hook), and the `Error` hook may change the error response the
/// client gets.
#[derive(Debug)]
pub enum Hook {
    /// A client connected. Blocking: [`HookReply::Kill`] drops it.
    ClientConnected(ClientInfo),
    /// The client connection is gone. Notification.
    ClientDisconnected(ClientInfo),
    /// An upstream connection was established. Notification.
    ServerConnected {
        /// The upstream connection.
        conn: ConnId,
        /// Where it leads (the server, or the upstream proxy in upstream mode).
        server: ServerAddr,
    },
    /// An upstream connection is gone. Notification.
    ServerDisconnected {
        /// The upstream connection.
        conn: ConnId,
        /// Where it led.
        server: ServerAddr,
    },
    /// A `CONNECT` request arrived. Blocking: `Continue` opens the tunnel, `Update` tunnels to
    /// where the changed request says, `Respond` refuses it with that response, `Kill` closes
    /// the client connection.
    ///
    /// A `CONNECT` raises no `ResponseHeaders` hook, and no blocking `Response`: a refusal
    /// given with `Respond` goes to the client as it is (as in mitmproxy, where it raises only
    /// `http_connect_error`, which has no counterpart here), and once the tunnel is up,
    /// `Response` is raised as a notification carrying the `200`. A server that cannot be
    /// reached raises `Error` with the `502` (or `504`) the client is about to get.
    HttpConnect(Box<HttpFlow>),
    /// Request line and headers are in; the body has not been read. Blocking: `Continue` goes
    /// on, `Update` goes on with the changed request (set
    /// [`buffer_request`](HttpFlow::buffer_request) to hold the body back for `Request`),
    /// `Kill` drops the flow and closes the client connection.
    ///
    /// `Respond` answers without contacting the server: the response then goes through
    /// `ResponseHeaders` and `Response` as a server's would, so a hook that watches or changes
    /// every response sees it too; `Request` is not raised, and whatever the client still
    /// sends of its body is read and dropped.
    RequestHeaders(Box<HttpFlow>),
    /// The request is complete. Blocking. Its body is present only if `buffer_request` was
    /// set: otherwise it streamed to the server as it came, and went before this hook. Replies
    /// as for `RequestHeaders`; a `Respond` after a streamed body no longer waits for the
    /// server's answer, and goes through `ResponseHeaders` and `Response` likewise, or only
    /// through `Response` if the server answered early and its head went through
    /// `ResponseHeaders` already (a hook is raised once per flow).
    Request(Box<HttpFlow>),
    /// Status line and headers of the response are in; its body has not been read. Blocking:
    /// `Continue` streams the body to the client as it comes, `Update` with
    /// [`buffer_response`](HttpFlow::buffer_response) set holds it back for `Response`, a
    /// changed status or headers are what the client gets. `Respond` replaces the server's
    /// response (its connection is dropped if the body was still to come) and goes on to
    /// `Response`.
    ///
    /// Also raised for a response given by a request hook's `Respond` (or the proxy's `407`
    /// to a client without its credentials), whole with its body; a `101` switching protocols
    /// raises no response hook.
    ResponseHeaders(Box<HttpFlow>),
    /// The response is complete; the flow is over once this is answered.
    ///
    /// Blocking while the response is held back, which it is when buffered
    /// ([`buffer_response`](HttpFlow::buffer_response), or no body) or given by a hook's
    /// `Respond` (or the proxy's `407`): `Update` sends the flow's changed `response`,
    /// `Respond` sends another, `Kill` drops the flow instead. A response that
    /// streamed has reached the client already: the hook then only reports it (a reply changes
    /// nothing), as it does the `200` of a `CONNECT` tunnel.
    Response(Box<HttpFlow>),
    /// The flow failed; [`flow.error`](HttpFlow::error) says why. Raised at most once per
    /// flow. Whether it blocks depends on whether the proxy
    /// still answers the client, which [`FlowError::status`](crate::FlowError::status) tells:
    ///
    /// - `Some(status)`: the proxy answers the request itself, and
    ///   [`flow.response`](HttpFlow::response) holds that answer, not yet sent. That is the case
    ///   when the server could not be reached (`502`, `504` for a connect timeout), broke the
    ///   protocol or closed before its response began (`502`), stayed silent (`504`), when the
    ///   upstream proxy failed (`502` or `504`), a body outgrew the buffering limit (`413` for
    ///   the request, `502` for the response), the client stopped sending its request body
    ///   (`408`), or a gateway had no backend for it (`404`, `503`). Blocking: `Continue`
    ///   sends that answer, `Update` sends the flow's changed `response` (the proxy's own if the
    ///   hook took it away), `Respond` sends the one given, `Kill` drops the flow without an
    ///   answer (see [`HookReply::Kill`]). No response hook follows.
    /// - `None`: no answer is owed any more, and the hook is a notification. The response had
    ///   begun to reach the client (whose connection is cut, or HTTP/2 stream reset), the
    ///   client went away or cancelled the request, the client's codec answered a malformed
    ///   request itself (a `400` or the like, before any hook could decide), a hook answered
    ///   `Kill`, or a SOCKS5 tunnel failed (answered with a SOCKS5 reply code).
    ///
    /// It may be the first hook of its flow: a gateway's refusal comes before any request
    /// hook. mitmproxy's `error` hook carries the same, but cannot change the answer.
    Error(Box<HttpFlow>),
    /// A client began a TLS handshake on a `CONNECT` tunnel. Answer `Continue` to intercept
    /// it, [`HookReply::Passthrough`] to relay its bytes untouched, `Kill` to drop it.
    TlsClientHello {
        /// An id of its own for this question, which the reply names.
        flow: FlowId,
        /// What the client asked for: where it connects, server name, ALPN protocols.
        hello: ClientHello,
    },
    /// A TLS handshake completed, with the client or with a server. Notification.
    TlsEstablished(Box<TlsInfo>),
    /// A TLS handshake failed, or an established TLS connection broke. Notification.
    TlsFailed(Box<TlsFailure>),
    /// The server answered a WebSocket upgrade with `101`: the flow goes on as WebSocket
    /// messages. Notification. Raising it is what lets an embedder inject messages into the
    /// flow (see [`Event::Inject`](crate::Event::Inject)).
    WebSocketStart(Box<HttpFlow>),
    /// A WebSocket message arrived whole (or, over the size limit, a piece of one, as
    /// [`WebSocketLimits::oversize`](crate::websocket::WebSocketLimits::oversize) says). Its
    /// sender is not read until the answer: `Continue` passes it on,
    /// [`HookReply::Message`] passes a changed one, [`HookReply::Drop`] drops it, `Kill` ends
    /// the WebSocket connection. Without this hook, messages stream through unseen.
    WebSocketMessage(Box<WebSocketMessage>),
    /// The WebSocket connection is over: close code, who closed, message counts. Notification.
    WebSocketEnd(Box<WebSocketEnd>),
}

impl Hook {
    /// Whether the core waits for a [`HookReply`] to this hook. An `Error` hook blocks when
    /// the proxy still answers the client (its [`FlowError::status`](crate::FlowError::status)
    /// is set), and is a notification otherwise.
    pub fn is_blocking(&self) -> bool {
        if let Self::Error(flow) = self {
            return flow.error.as_ref().is_some_and(|e| e.status.is_some());
        }
        !matches!(
            self,
            Self::ClientDisconnected(_)
                | Self::ServerConnected { .. }
                | Self::ServerDisconnected { .. }
                | Self::TlsEstablished(_)
                | Self::TlsFailed(_)
                | Self::WebSocketStart(_)
                | Self::WebSocketEnd(_)
        )
    }

    /// The hook's name, as [`HookSet`] knows it.
    pub fn kind(&self) -> HookKind {
        match self {
            Self::ClientConnected(_) => HookKind::ClientConnected,
            Self::ClientDisconnected(_) => HookKind::ClientDisconnected,
            Self::ServerConnected { .. } => HookKind::ServerConnected,
            Self::ServerDisconnected { .. } => HookKind::ServerDisconnected,
            Self::HttpConnect(_) => HookKind::HttpConnect,
            Self::RequestHeaders(_) => HookKind::RequestHeaders,
            Self::Request(_) => HookKind::Request,
            Self::ResponseHeaders(_) => HookKind::ResponseHeaders,
            Self::Response(_) => HookKind::Response,
            Self::Error(_) => HookKind::Error,
            Self::TlsClientHello { .. } => HookKind::TlsClientHello,
            Self::TlsEstablished(_) => HookKind::TlsEstablished,
            Self::TlsFailed(_) => HookKind::TlsFailed,
            Self::WebSocketStart(_) => HookKind::WebSocketStart,
            Self::WebSocketMessage(_) => HookKind::WebSocketMessage,
            Self::WebSocketEnd(_) => HookKind::WebSocketEnd,
        }
    }

    /// The flow an HTTP hook carries.
    pub fn flow(&self) -> Option<&HttpFlow> {
        match self {
            Self::HttpConnect(f)
            | Self::RequestHeaders(f)
            | Self::Request(f)
            | Self::ResponseHeaders(f)
            | Self::Response(f)
            | Self::Error(f)
            | Self::WebSocketStart(f) => Some(f),
            Self::WebSocketEnd(end) => Some(&end.upgrade),
            _ => None,
        }
    }
}

/// The user's answer to a blocking [`Hook`].
#[derive(Debug, Clone)]
pub enum HookReply {
    /// Go on with the flow as it is. To an `Error` hook: send the proxy's error response.
    Continue,
    /// Go on with this flow instead: a changed request (method, URL, headers, body), response,
    /// or buffering choice. To `Response` or `Error`, the flow's `response` is what the client
    /// gets.
    Update(Box<HttpFlow>),
    /// Answer the client with this response and do not contact (or no longer wait for) the
    /// server. In answer to `RequestHeaders` or `Request` the response then goes through
    /// `ResponseHeaders` and `Response`, and in answer to `ResponseHeaders` through `Response`,
    /// as a server's response would (each if it is in the hook set and not raised for the
    /// flow yet); to `HttpConnect`, `Response` or `Error` it is sent as it is. A response with
    /// no body is sent with an empty one. Too late once the response has begun to reach the
    /// client: it is then ignored.
    Respond(Response),
    /// Drop what the hook is about. For an HTTP flow: close its server connection and the
    /// client connection (an HTTP/2 client's stream is reset instead; its other streams go
    /// on), and raise `Error` as a notification unless the flow has raised it already. For
    /// the connection, TLS and WebSocket hooks, what each hook's doc says.
    Kill,
    /// Answer to [`Hook::TlsClientHello`]: do not intercept, relay the TLS bytes as they are.
    /// Elsewhere it means `Continue`.
    Passthrough,
    /// Answer to [`Hook::WebSocketMessage`]: send this message instead (its `kind` and
    /// `payload` count; a text payload must be UTF-8). Elsewhere it means `Continue`.
    Message(Box<WebSocketMessage>),
    /// Answer to [`Hook::WebSocketMessage`]: do not pass the message on. Elsewhere it means
    /// `Continue`.
    Drop,
}

/// Names of the hooks, for [`HookSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum HookKind {
    /// [`Hook::ClientConnected`].
    ClientConnected = 1 << 0,
    /// [`Hook::ClientDisconnected`].
    ClientDisconnected = 1 << 1,
    /// [`Hook::ServerConnected`].
    ServerConnected = 1 << 2,
    /// [`Hook::ServerDisconnected`].
    ServerDisconnected = 1 << 3,
    /// [`Hook::HttpConnect`].
    HttpConnect = 1 << 4,
    /// [`Hook::RequestHeaders`].
    RequestHeaders = 1 << 5,
    /// [`Hook::Request`].
    Request = 1 << 6,
    /// [`Hook::ResponseHeaders`].
    ResponseHeaders = 1 << 7,
    /// [`Hook::Response`].
    Response = 1 << 8,
    /// [`Hook::Error`].
    Error = 1 << 9,
    /// [`Hook::TlsClientHello`].
    TlsClientHello = 1 << 10,
    /// [`Hook::TlsEstablished`].
    TlsEstablished = 1 << 11,
    /// [`Hook::TlsFailed`].
    TlsFailed = 1 << 12,
    /// [`Hook::WebSocketStart`].
    WebSocketStart = 1 << 13,
    /// [`Hook::WebSocketMessage`].
    WebSocketMessage = 1 << 14,
    /// [`Hook::WebSocketEnd`].
    WebSocketEnd = 1 << 15,
}

/// Which hooks the core raises; the others are skipped as if answered with `Continue`.
/// An embedder that watches only responses pays nothing for the other phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookSet(u16);

impl HookSet {
    /// No hook: the proxy forwards and never asks.
    pub const NONE: Self = Self(0);
    /// Every hook (the default), including [`HookKind::WebSocketMessage`], which holds each
    /// WebSocket message until it is answered.
    pub const ALL: Self = Self(0xffff);

    /// Whether `kind` is raised.
    pub fn contains(self, kind: HookKind) -> bool {
        self.0 & kind as u16 != 0
    }

    /// This set and `kind`: `HookSet::NONE.with(HookKind::Request).with(HookKind::Response)`.
    pub fn with(self, kind: HookKind) -> Self {
        Self(self.0 | kind as u16)
    }

    /// This set without `kind`: `HookSet::ALL.without(HookKind::WebSocketMessage)`.
    pub fn without(self, kind: HookKind) -> Self {
        Self(self.0 & !(kind as u16))
    }
}

impl Default for HookSet {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromIterator<HookKind> for HookSet {
    fn from_iter<I: IntoIterator<Item = HookKind>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}
