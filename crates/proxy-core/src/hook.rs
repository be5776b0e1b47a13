//! Hooks: where the core stops to ask the user about a connection or a flow.

use crate::flow::{ClientInfo, HttpFlow, Response};
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::tls::{ClientHello, TlsFailure, TlsInfo};
use crate::websocket::{WebSocketEnd, WebSocketMessage};

/// A question for the user, carried by [`Command::Hook`](crate::Command::Hook).
///
/// HTTP hooks carry a copy of the flow; the user may change it and hand it back with
/// [`HookReply::Update`]. Only the flow that asked waits for the answer.
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
    /// A `CONNECT` request arrived. Answer with `Continue` to open the tunnel, `Respond` or `Kill`
    /// to refuse it, or `Update` to tunnel somewhere else.
    HttpConnect(Box<HttpFlow>),
    /// Request line and headers are in; the body has not been read.
    RequestHeaders(Box<HttpFlow>),
    /// The request is complete. Its body is present only if `buffer_request` was set.
    Request(Box<HttpFlow>),
    /// Status line and headers of the response are in.
    ResponseHeaders(Box<HttpFlow>),
    /// The response is complete; the flow is over once this is answered.
    Response(Box<HttpFlow>),
    /// The flow failed (`flow.error` says why). Notification.
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
    /// Whether the core waits for a [`HookReply`] to this hook.
    pub fn is_blocking(&self) -> bool {
        !matches!(
            self,
            Self::ClientDisconnected(_)
                | Self::ServerConnected { .. }
                | Self::ServerDisconnected { .. }
                | Self::Error(_)
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
    /// Go on with the flow as it is.
    Continue,
    /// Go on with this flow instead: a changed request (method, URL, headers, body), response,
    /// or buffering choice.
    Update(Box<HttpFlow>),
    /// Answer the client with this response and do not contact (or no longer wait for) the
    /// server.
    Respond(Response),
    /// Drop the flow and close the client connection.
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
