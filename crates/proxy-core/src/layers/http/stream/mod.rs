//! One request/response exchange, independent of HTTP version: hooks, buffering, errors.
//!
//! The stream sees [`Input`]s from the layer (the request as the client codec parsed it, the
//! response as the server codec parsed it, replies to its hooks, connection news) and answers
//! with [`Out`]s that the layer routes to codecs and connections. While one of its hooks is
//! pending, the stream queues its inputs and replays them after the reply; the layer stops
//! reading the connections that feed it meanwhile, so the queue stays short.
//!
//! This file holds the exchange's states, the stream and its queries, and [`HttpStream::handle`];
//! `input.rs` the inputs as they come (and those replayed after a hook), `hooks.rs` raising
//! hooks and what follows their replies, `ending.rs` answers made here, failures and the
//! exchange's end, `pace.rs` the client's pace through its request body (its silence and its
//! rate), `gateway.rs` the backend's lease and queue in reverse mode with a gateway.

mod ending;
mod gateway;
mod hooks;
mod input;
mod pace;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::context::Context;
use crate::open_error::OpenError;
use crate::flow::{HttpFlow, Request, Response, Version};
use crate::gateway::{Lease, Ticket};
use crate::headers::Headers;
use crate::hook::{HookKind, HookReply, HookSet};
use crate::ids::{FlowId, Scheme, ServerAddr};
use super::error::{ClientError, HttpError, ServerError};
use super::error::ProxyError;
use crate::layers::http::event::HttpEvent;
use crate::layers::websocket;

/// Why the layer answers a request itself, before any request hook sees it.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The client's proxy credentials are missing or wrong: this `407`, which goes through
    /// the response hooks as a hook's `Respond` would.
    Auth(Response),
    /// The request cannot go anywhere (a gateway has no backend for it): the flow fails, and
    /// the error's answer goes through the `Error` hook as any failure's.
    Fail(HttpError),
}

/// The HTTP versions a request may go upstream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    /// HTTP/1 only: a CONNECT, an upgrade other than WebSocket's.
    Http1,
    /// HTTP/1 or HTTP/2, as the connection speaks.
    Any,
    /// A WebSocket upgrade: HTTP/1.1's, or HTTP/2's extended CONNECT (RFC 8441) on a
    /// connection whose server enabled it. A new connection for one is HTTP/1.1, which every
    /// WebSocket server speaks, unless the server is reached by HTTP/2 prior knowledge: what
    /// HTTP/2 brings a WebSocket is a connection already open.
    WebSocket,
}

/// What happens to a stream.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// `refusal`: the layer answers the request itself, before any request hook.
    RequestHeaders { end_stream: bool, refusal: Option<Refusal> },
    RequestData(Bytes),
    RequestEnd(Option<Headers>),
    /// The driver moved this many more request body bytes by itself.
    RequestForwarded(u64),
    /// The driver moved this many more response body bytes by itself.
    ResponseForwarded(u64),
    /// The stream's server connection is open (or an idle one was assigned).
    ServerReady,
    ServerFailed { addr: ServerAddr, error: OpenError },
    /// The upstream proxy could not be reached, or would not carry us to the server.
    ProxyFailed(ProxyError),
    Interim(Response),
    ResponseHeaders { response: Response, end_stream: bool },
    ResponseData(Bytes),
    ResponseEnd(Option<Headers>),
    /// The server broke the protocol or went away mid-response, or did not act on the
    /// request (an HTTP/2 stream it refused, or one above its GOAWAY's last stream), which
    /// may then be sent again.
    ServerError(ServerError),
    /// The server stayed silent for `secs` while a response was owed.
    ServerTimeout { secs: f64 },
    /// The client sent nothing of its request body for a while, or too little
    /// ([`HttpError::ClientTimeout`], [`HttpError::ClientTooSlow`]).
    ClientTimeout(HttpError),
    /// The client's request was malformed; the client codec has answered it.
    ClientError(ClientError),
    /// The client went away.
    ClientClosed,
    /// The client cancelled this exchange (an HTTP/2 stream reset or lost connection): the
    /// server side is abandoned whatever state the exchange is in.
    ClientReset,
    HookReply(HookReply),
    /// Time passed or the connection was woken: a flow waiting in its group's queue claims
    /// the backend granted to it, or gives up once its wait is over.
    Queue,
}

/// What a stream asks of its layer.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send to the client (responses).
    Client(HttpEvent),
    /// Send to this stream's server (requests).
    Server(HttpEvent),
    /// A connection to `addr` for this flow: `tls` for an `https` request, `dedicated` (and
    /// never pooled) for a `CONNECT`; `versions`: whether it may go over HTTP/2 (a protocol
    /// switch goes over HTTP/1, but WebSocket's also over an HTTP/2 server's extended CONNECT).
    OpenServer { addr: ServerAddr, tls: bool, dedicated: bool, versions: Versions },
    /// The exchange switched protocols: the client's side and the server's become a raw tunnel
    /// or carry a WebSocket.
    Tunnel,
    /// Close the client connection (after what is queued for it).
    AbortClient,
    /// The client stopped sending its request body and the rest will not be read: after the
    /// answer it was sent (if any), end its connection (HTTP/1, lingering so that the answer
    /// is read) or tell it to stop sending the request's stream (HTTP/2).
    StopRequest,
    /// Close this stream's server connection.
    AbortServer,
}

#[derive(Debug)]
enum Req {
    /// Head read; its hook decides what comes next.
    Headers,
    /// Holding the body back for the `Request` hook.
    Buffering(BytesMut),
    /// Passing the body to the server as it comes.
    Streaming,
    /// Reading the rest of a body nobody wants any more (the flow was answered early).
    Discarding,
    /// The client stopped sending its body before its end: nothing more of it is read, and
    /// once the client has its answer the layer ends the request ([`Out::StopRequest`]).
    Stalled,
    Done,
}

#[derive(Debug)]
enum Resp {
    /// Nothing of the response yet.
    Waiting,
    /// Holding the body back for the `Response` hook.
    Buffering(BytesMut),
    /// Complete (in the flow) but not sent yet: a response hook or the `Error` hook has it.
    Held,
    /// The head went to the client; the body follows as it comes.
    Streaming,
    /// Complete, and sent to the client (or cut short: the stream is over either way).
    Sent,
}

impl Resp {
    /// Whether the server has nothing more of it to send.
    fn is_complete(&self) -> bool {
        matches!(self, Self::Held | Self::Sent)
    }

    /// Whether something of it has reached the client codec.
    fn is_started(&self) -> bool {
        matches!(self, Self::Streaming | Self::Sent)
    }
}

/// The stream's server connection, from the stream's point of view.
#[derive(Debug)]
enum Server {
    /// None asked for (yet, or any more).
    None,
    /// Asked for: request events wait here, in order, until it is ready.
    Connecting(VecDeque<HttpEvent>),
    /// Open (or an idle one assigned): request events go straight out.
    Ready,
}

/// A request body's progress since its rate began to be measured, and when it is checked.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    since: Instant,
    check: Instant,
    bytes: u64,
}

/// Whether the request may be sent again should the server not act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Its body streamed: what went cannot be sent again.
    No,
    /// It went whole (no body, or a buffered one), so it can go again as it is.
    Possible,
    /// It was sent again once already.
    Spent,
}

pub(crate) struct HttpStream {
    flow: HttpFlow,
    req: Req,
    resp: Resp,
    server: Server,
    /// The hook whose reply is pending.
    waiting: Option<HookKind>,
    /// Inputs that arrived while waiting.
    deferred: VecDeque<Input>,
    /// We answered `Expect: 100-continue` ourselves, so the server's `100` is dropped.
    local_continue: bool,
    /// The `Error` hook was raised: a flow fails once, whatever else goes wrong after.
    failed: bool,
    /// The hooks raised for this flow so far.
    raised: HookSet,
    finished: bool,
    /// While the client owes request body bytes: when its silence becomes a timeout.
    body_deadline: Option<Instant>,
    /// With `body_min_rate`, while the client owes request body bytes: what it sent since
    /// the rate began to be measured.
    rate_window: Option<RateWindow>,
    resend: Resend,
    /// Reverse mode with a gateway: the backend the flow was sent to, held until it ends.
    pub(super) lease: Option<Lease>,
    /// Reverse mode with a gateway, every backend at its limit: the flow's place in the
    /// queue. Until it is granted a backend, the stream keeps its inputs as while a hook is
    /// pending (its request goes nowhere yet, and the client is not read).
    ticket: Option<Ticket>,
}

impl HttpStream {
    pub(crate) fn new(cx: &Context, now: Instant, id: FlowId, mut request: Request) -> Self {
        if is_websocket_upgrade(&request.headers) {
            // Only extensions the WebSocket layer can read through go to the server, and hooks
            // see the request as the server will.
            websocket::filter_offer(&mut request.headers, cx.config.websocket.deflate);
        }
        let flow = HttpFlow::new(id, cx.client.clone(), request, now);
        Self {
            flow,
            req: Req::Headers,
            resp: Resp::Waiting,
            server: Server::None,
            waiting: None,
            deferred: VecDeque::new(),
            local_continue: false,
            failed: false,
            raised: HookSet::NONE,
            finished: false,
            body_deadline: None,
            rate_window: None,
            resend: Resend::No,
            lease: None,
            ticket: None,
        }
    }

    /// Whether a request the server did not act on may be sent again: it went whole, once,
    /// and nothing of an answer came or is awaited from a hook.
    fn may_retry(&self) -> bool {
        self.resend == Resend::Possible
            && matches!(self.resp, Resp::Waiting)
            && self.waiting.is_none()
    }

    /// The client has the whole response and the rest of its request body, if any, is only
    /// being read to be dropped.
    fn is_answered(&self) -> bool {
        matches!(self.resp, Resp::Sent) && matches!(self.req, Req::Discarding)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the layer may read more of the request body from the client now.
    pub(crate) fn wants_request_data(&self) -> bool {
        if self.waiting.is_some() || self.ticket.is_some() {
            return false;
        }
        match self.req {
            Req::Headers => false,
            Req::Streaming => matches!(self.server, Server::Ready),
            Req::Buffering(_) | Req::Discarding | Req::Done => true,
            Req::Stalled => false,
        }
    }

    /// Whether a request body may bypass the stream: it is streamed, to a server that is
    /// ready, and nothing waits for a hook.
    pub(crate) fn may_forward_request(&self) -> bool {
        self.waiting.is_none() && matches!(self.req, Req::Streaming) && matches!(self.server, Server::Ready)
    }

    /// Whether a response body may bypass the stream.
    pub(crate) fn may_forward_response(&self) -> bool {
        self.waiting.is_none() && matches!(self.resp, Resp::Streaming)
    }

    /// Whether the layer may read more of the response from the server now.
    pub(crate) fn wants_response_data(&self) -> bool {
        self.waiting.is_none()
    }

    pub(crate) fn handle(&mut self, cx: &mut Context, now: Instant, input: Input, out: &mut Vec<Out>) {
        if self.finished {
            return;
        }
        self.note_progress(cx, now, &input);
        if let Input::Queue = input {
            return self.poll_queue(cx, now, out);
        }
        if self.ticket.is_some() {
            if matches!(input, Input::ClientClosed | Input::ClientReset) {
                // Gone before its request went anywhere or any hook saw it: the flow ends
                // here, and its place in the queue goes to the next.
                self.ticket = None;
                self.deferred.clear();
                self.finished = true;
            } else {
                self.deferred.push_back(input);
            }
            return;
        }
        if let Input::HookReply(reply) = input {
            if let Some(kind) = self.waiting.take() {
                self.handle_reply(cx, now, kind, reply, out);
            }
        } else if self.waiting.is_some() {
            self.deferred.push_back(input);
            return;
        } else {
            self.handle_input(cx, now, input, out);
        }
        self.replay(cx, now, out);
    }

    /// Send `event` to the server, or queue it until the connection is ready (asking for one
    /// is the caller's business: it follows at once).
    fn send_to_server(&mut self, event: HttpEvent, out: &mut Vec<Out>) {
        match &mut self.server {
            Server::Ready => out.push(Out::Server(event)),
            Server::Connecting(queued) => queued.push_back(event),
            Server::None => self.server = Server::Connecting(VecDeque::from([event])),
        }
    }

    /// The exchange switched to WebSocket: the request answered `101` to `Upgrade: websocket`.
    pub(crate) fn is_websocket(&self) -> bool {
        let switched = self.flow.response.as_ref().is_some_and(|r| r.status == 101 && is_websocket_upgrade(&r.headers));
        switched && is_websocket_upgrade(&self.flow.request.headers)
    }

    /// The request is a WebSocket upgrade (whatever the client's version).
    pub(crate) fn asks_websocket(&self) -> bool {
        is_websocket_upgrade(&self.flow.request.headers)
    }

    /// An HTTP/2 client's WebSocket upgrade (RFC 8441) or `CONNECT` not yet answered: what
    /// its stream carries is WebSocket frames or tunnel bytes sent early, to keep for the
    /// switch.
    pub(crate) fn awaits_switch(&self) -> bool {
        self.flow.request.version == Version::Http2 && (is_websocket_upgrade(&self.flow.request.headers) || self.is_connect())
    }

    pub(crate) fn into_flow(self) -> HttpFlow {
        self.flow
    }

    fn request_head(&self) -> Request {
        Request { body: None, trailers: None, ..self.flow.request.clone() }
    }

    fn response_head(&self) -> Response {
        let response = self.flow.response.as_ref();
        response.map_or_else(|| Response::text(502, ""), |r| Response { body: None, trailers: None, ..r.clone() })
    }

    fn open_server(&self) -> Out {
        Out::OpenServer { addr: self.flow.request.server(), tls: self.is_https(), dedicated: false, versions: self.versions() }
    }

    /// What the request may go over: a WebSocket wherever one can be carried, another
    /// protocol switch only over HTTP/1.1, anything else either way.
    pub(crate) fn versions(&self) -> Versions {
        if self.asks_websocket() {
            Versions::WebSocket
        } else if self.flow.request.headers.contains("upgrade") {
            Versions::Http1
        } else {
            Versions::Any
        }
    }

    fn is_https(&self) -> bool {
        self.flow.request.scheme == Scheme::Https
    }

    /// RFC 9110 section 9.2.2: sending it twice does what sending it once does.
    fn is_idempotent(&self) -> bool {
        ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"].iter().any(|m| self.flow.request.method.eq_ignore_ascii_case(m))
    }

    pub(crate) fn is_connect(&self) -> bool {
        self.flow.request.method.eq_ignore_ascii_case("CONNECT")
    }
}

/// `response` with a body, empty if it had none: what is sent as a whole response must say
/// where it ends.
fn whole(mut response: Response) -> Response {
    if response.body.is_none() {
        response.body = Some(Bytes::new());
        response.headers.insert("content-length", "0");
    }
    response
}

/// `Upgrade: websocket` (a token of the list, in any case).
fn is_websocket_upgrade(headers: &Headers) -> bool {
    headers.has_token("upgrade", "websocket")
}
