//! One request/response exchange, independent of HTTP version: hooks, buffering, errors.
//!
//! The stream sees [`Input`]s from the layer (the request as the client codec parsed it, the
//! response as the server codec parsed it, replies to its hooks, connection news) and answers
//! with [`Out`]s that the layer routes to codecs and connections. While one of its hooks is
//! pending, the stream queues its inputs and replays them after the reply; the layer stops
//! reading the connections that feed it meanwhile, so the queue stays short.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::config::MinRate;
use crate::context::Context;
use crate::event::OpenError;
use crate::flow::{FlowError, HttpFlow, Request, Response, Version};
use crate::gateway::{Admitted, Backend, Lease, Ticket};
use crate::headers::Headers;
use crate::hook::{Hook, HookKind, HookReply, HookSet};
use crate::ids::{FlowId, Scheme, ServerAddr};
use super::error::{ClientError, HttpError, ServerError};
use super::pool::Versions;
use super::upstream_proxy::ProxyError;
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

    /// The flow holds a lease on its backend or waits for one (reverse mode with a gateway).
    pub(crate) fn admit(&mut self, admitted: Option<Admitted>) {
        match admitted {
            Some(Admitted::Now(lease)) => self.lease = Some(lease),
            Some(Admitted::Queued(ticket)) => self.ticket = Some(ticket),
            None => {}
        }
    }

    /// When the flow's wait in its group's queue is over, if it waits.
    pub(crate) fn queue_deadline(&self) -> Option<Instant> {
        self.ticket.as_ref().map(Ticket::deadline)
    }

    /// The flow waits in its group's queue: take the backend if one was granted, or answer
    /// 503 once the wait is over; either way the stream then goes on with what it kept.
    fn poll_queue(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        let Some(ticket) = &self.ticket else { return };
        if let Some(lease) = ticket.claim(now, &mut self.flow.request) {
            self.lease = Some(lease);
        } else if ticket.deadline() <= now {
            let timed_out = ticket.timed_out(now);
            let request = &self.flow.request;
            cx.log(LogLevel::Warn, format!("client {}: {} {}: {timed_out}", cx.client.peer, request.method, request.path));
            for input in &mut self.deferred {
                if let Input::RequestHeaders { refusal, .. } = input {
                    *refusal = Some(Refusal::Fail(HttpError::Refused(timed_out.clone())));
                }
            }
        } else {
            return;
        }
        // Claimed, or given up: its place in the queue goes.
        self.ticket = None;
        self.replay(cx, now, out);
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

    /// When the client's silence in the middle of its request body times out, if it owes one.
    pub(crate) fn body_deadline(&self) -> Option<Instant> {
        self.body_deadline
    }

    /// The client's silence was the proxy's doing (it was not reading): count afresh.
    pub(crate) fn rearm_body_deadline(&mut self, at: Instant) {
        if self.body_deadline.is_some() {
            self.body_deadline = Some(at);
        }
    }

    /// Whether the client is still sending this request's body.
    pub(crate) fn awaits_request_body(&self) -> bool {
        self.body_deadline.is_some()
    }

    /// Track the client's progress through the request body, whether or not the input is
    /// handled now or waits for a hook.
    fn note_progress(&mut self, cx: &Context, now: Instant, input: &Input) {
        let again = Some(now + cx.config.body_timeout);
        match input {
            Input::RequestHeaders { end_stream: false, .. } | Input::RequestData(_) | Input::RequestForwarded(_) => {
                self.body_deadline = again;
            }
            Input::RequestHeaders { end_stream: true, .. }
            | Input::RequestEnd(_)
            | Input::ClientClosed
            | Input::ClientReset
            | Input::ClientError(_)
            | Input::ClientTimeout(_) => {
                self.body_deadline = None;
                self.rate_window = None;
            }
            _ => {}
        }
        match (input, cx.config.body_min_rate) {
            (Input::RequestHeaders { end_stream: false, .. }, Some(rate)) => self.restart_rate(now, rate.window),
            (Input::RequestData(data), _) => self.count_body(data.len() as u64),
            (Input::RequestForwarded(len), _) => self.count_body(*len),
            _ => {}
        }
    }

    fn count_body(&mut self, len: u64) {
        if let Some(rate) = &mut self.rate_window {
            rate.bytes += len;
        }
    }

    /// Measure the request body's rate afresh from `now` (its start, or the end of a time
    /// the proxy held it back), the first check a `window` away.
    pub(crate) fn restart_rate(&mut self, now: Instant, window: Duration) {
        self.rate_window = Some(RateWindow { since: now, check: now + window, bytes: 0 });
    }

    /// When the request body's rate is checked next, if it is measured.
    pub(crate) fn rate_deadline(&self) -> Option<Instant> {
        self.rate_window.map(|r| r.check)
    }

    /// The check at `now`: the bytes and seconds measured if the body came slower than
    /// `rate`; otherwise the next check is a window away.
    pub(crate) fn check_rate(&mut self, now: Instant, rate: MinRate) -> Option<(u64, f64)> {
        let r = self.rate_window.as_mut()?;
        let secs = now.saturating_duration_since(r.since).as_secs_f64();
        if (r.bytes as f64) < rate.bytes_per_sec as f64 * secs {
            return Some((r.bytes, secs));
        }
        r.check = now + rate.window;
        None
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

    /// Go on with the inputs kept while a hook or the queue held the stream.
    fn replay(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        while self.waiting.is_none() && self.ticket.is_none() && !self.finished {
            let Some(input) = self.deferred.pop_front() else { break };
            self.handle_input(cx, now, input, out);
        }
    }

    fn handle_input(&mut self, cx: &mut Context, now: Instant, input: Input, out: &mut Vec<Out>) {
        match input {
            // Handled before anything is kept (see `handle`).
            Input::Queue => {}
            Input::RequestHeaders { end_stream, refusal } => {
                if end_stream {
                    self.req = Req::Done;
                }
                match refusal {
                    Some(Refusal::Auth(response)) => return self.respond_locally(cx, now, None, response, out),
                    Some(Refusal::Fail(error)) => return self.fail(cx, now, error, out),
                    None => {}
                }
                let kind = if self.is_connect() { HookKind::HttpConnect } else { HookKind::RequestHeaders };
                if !self.raise(cx, kind) {
                    self.after_request_headers(cx, out);
                }
            }
            Input::RequestData(data) => {
                self.flow.request_body_bytes += data.len() as u64;
                match &mut self.req {
                    Req::Streaming => self.send_to_server(HttpEvent::RequestData { flow: self.flow.id, data }, out),
                    Req::Buffering(body) => {
                        if body.len() + data.len() > cx.config.max_buffered_body {
                            let limit = cx.config.max_buffered_body;
                            self.req = Req::Discarding;
                            self.fail(cx, now, HttpError::RequestTooLarge { limit }, out);
                        } else {
                            body.extend_from_slice(&data);
                        }
                    }
                    Req::Headers | Req::Discarding | Req::Stalled | Req::Done => {}
                }
            }
            Input::RequestEnd(trailers) => match std::mem::replace(&mut self.req, Req::Done) {
                Req::Streaming => {
                    self.flow.request.trailers = trailers.clone();
                    self.send_to_server(HttpEvent::RequestEnd { flow: self.flow.id, trailers }, out);
                    if !self.raise(cx, HookKind::Request) {
                        self.check_finished(now);
                    }
                }
                Req::Buffering(body) => {
                    self.flow.request.body = Some(body.freeze());
                    self.flow.request.trailers = trailers;
                    if !self.raise(cx, HookKind::Request) {
                        self.send_request(out);
                    }
                }
                Req::Headers | Req::Discarding | Req::Stalled | Req::Done => self.check_finished(now),
            },
            Input::ServerReady => {
                let queued = match std::mem::replace(&mut self.server, Server::Ready) {
                    Server::Connecting(queued) => queued,
                    Server::None | Server::Ready => VecDeque::new(),
                };
                if self.is_connect() {
                    // The tunnel is up: tell the client, then stop being HTTP.
                    let response = Response {
                        body: None,
                        ..Response::new(200, Headers::new(), Bytes::new())
                    };
                    let mut response = response;
                    response.reason = "Connection established".into();
                    response.headers = Headers::new();
                    self.flow.response = Some(response.clone());
                    out.push(Out::Client(HttpEvent::ResponseHeaders {
                        flow: self.flow.id,
                        response,
                        end_stream: true,
                    }));
                    out.push(Out::Tunnel);
                    self.flow.ended = Some(now);
                    self.finished = true;
                    if cx.config.hooks.contains(HookKind::Response) {
                        // The tunnel is the response: a hook can watch it but not change it.
                        cx.hook(self.flow.id, Hook::Response(Box::new(self.flow.clone())));
                    }
                    return;
                }
                out.extend(queued.into_iter().map(Out::Server));
            }
            Input::ServerFailed { addr, error } => match self.next_backend(cx, now, &addr, &error) {
                Some(next) => {
                    cx.log(LogLevel::Info, format!("{addr}: {error}; trying {next}"));
                    out.push(self.open_server());
                }
                None => self.fail(cx, now, HttpError::Connect { addr, error }, out),
            },
            Input::ProxyFailed(error) => self.fail(cx, now, HttpError::UpstreamProxy(error), out),
            Input::Interim(response) => {
                if !(response.status == 100 && self.local_continue) {
                    out.push(Out::Client(HttpEvent::InterimResponse { flow: self.flow.id, response }));
                }
            }
            Input::ResponseHeaders { response, end_stream } => {
                if let Some(line) = self.lease.as_mut().and_then(|l| l.responded(response.status, now)) {
                    cx.log(LogLevel::Warn, line);
                }
                let upgrade = response.status == 101;
                self.flow.response = Some(response);
                if end_stream && !upgrade {
                    self.resp = Resp::Held;
                }
                if upgrade {
                    self.resp = Resp::Sent;
                    let response = self.response_head();
                    out.push(Out::Client(HttpEvent::ResponseHeaders { flow: self.flow.id, response, end_stream: true }));
                    out.push(Out::Tunnel);
                    self.flow.ended = Some(now);
                    self.finished = true;
                    return;
                }
                if !self.raise(cx, HookKind::ResponseHeaders) {
                    self.after_response_headers(cx, now, out);
                }
            }
            Input::RequestForwarded(len) => self.flow.request_body_bytes += len,
            Input::ResponseForwarded(len) => self.flow.response_body_bytes += len,
            Input::ResponseData(data) => {
                self.flow.response_body_bytes += data.len() as u64;
                match &mut self.resp {
                    Resp::Streaming => out.push(Out::Client(HttpEvent::ResponseData { flow: self.flow.id, data })),
                    Resp::Buffering(body) => {
                        if body.len() + data.len() > cx.config.max_buffered_body {
                            let limit = cx.config.max_buffered_body;
                            self.fail(cx, now, HttpError::ResponseTooLarge { limit }, out);
                        } else {
                            body.extend_from_slice(&data);
                        }
                    }
                    Resp::Waiting | Resp::Held | Resp::Sent => {}
                }
            }
            Input::ResponseEnd(trailers) => match std::mem::replace(&mut self.resp, Resp::Waiting) {
                Resp::Streaming => {
                    self.resp = Resp::Sent;
                    if let Some(response) = &mut self.flow.response {
                        response.trailers = trailers.clone();
                    }
                    out.push(Out::Client(HttpEvent::ResponseEnd { flow: self.flow.id, trailers }));
                    self.response_complete(cx, now, out);
                }
                Resp::Buffering(body) => {
                    self.resp = Resp::Held;
                    if let Some(response) = &mut self.flow.response {
                        response.body = Some(body.freeze());
                        response.trailers = trailers;
                    }
                    self.flow.ended = Some(now);
                    if !self.raise(cx, HookKind::Response) {
                        self.send_buffered_response(now, out);
                    }
                }
                other => self.resp = other,
            },
            Input::ServerError(error) if (error.is_unprocessed() || error.is_stale() && self.is_idempotent()) && self.may_retry() => {
                // RFC 9113 section 8.7: safe to send again, once, on whatever connection
                // the layer picks (a server that said GOAWAY takes no more). RFC 9112
                // section 9.3.1 lets an idempotent request go again after a reused
                // connection closed under it.
                let addr = self.flow.request.server();
                cx.log(LogLevel::Debug, format!("{addr}: {error}; sending the request again"));
                self.resend = Resend::Spent;
                self.server = Server::None;
                self.send_request(out);
            }
            Input::ServerError(error) => {
                let addr = self.flow.request.server();
                self.backend_failed(cx, now, &error.to_string());
                self.fail(cx, now, HttpError::Server { addr, error }, out);
            }
            Input::ServerTimeout { secs } => {
                let addr = self.flow.request.server();
                self.backend_failed(cx, now, &format!("silent for {secs:.0} s"));
                self.fail(cx, now, HttpError::ServerTimeout { addr, secs }, out);
            }
            Input::ClientTimeout(error) => {
                if self.is_answered() {
                    // The client has its whole answer; the rest of a body nobody reads is
                    // not owed, so the flow did not fail.
                    self.finished = true;
                    out.push(Out::StopRequest);
                } else if self.resp.is_started() {
                    // Answered already (or the answer is under way): the exchange is lost,
                    // and an answer still coming cannot be finished.
                    self.flow.error.get_or_insert(FlowError { message: error.to_string(), status: None });
                    out.push(Out::AbortServer);
                    out.push(if self.resp.is_complete() { Out::StopRequest } else { Out::AbortClient });
                    self.end_with_error(cx, now);
                } else {
                    // The request ends once the answer (after the `Error` hook) is sent.
                    self.req = Req::Stalled;
                    self.fail(cx, now, error, out);
                }
            }
            Input::ClientError(error) => {
                self.flow.error = Some(FlowError { message: error.to_string(), status: None });
                out.push(Out::AbortServer);
                self.end_with_error(cx, now);
            }
            Input::ClientClosed => {
                let complete = matches!(self.req, Req::Done | Req::Discarding);
                if self.is_answered() {
                    // As for a timeout: leaving after the whole answer is no failure.
                    self.finished = true;
                } else if !complete || self.resp.is_started() {
                    self.flow.error = Some(FlowError { message: "client disconnected".into(), status: None });
                    out.push(Out::AbortServer);
                    self.end_with_error(cx, now);
                }
            }
            Input::ClientReset => {
                self.flow.error = Some(FlowError { message: "client cancelled the request".into(), status: None });
                out.push(Out::AbortServer);
                self.end_with_error(cx, now);
            }
            Input::HookReply(_) => {}
        }
    }

    /// The hook `kind` was answered.
    fn handle_reply(&mut self, cx: &mut Context, now: Instant, kind: HookKind, reply: HookReply, out: &mut Vec<Out>) {
        match reply {
            HookReply::Continue | HookReply::Passthrough | HookReply::Message(_) | HookReply::Drop => {}
            HookReply::Update(flow) => {
                let id = self.flow.id;
                let answer = std::mem::replace(&mut self.flow, *flow).response;
                self.flow.id = id;
                if kind == HookKind::Error && self.flow.response.is_none() {
                    // The client is owed an answer whatever the hook did with it.
                    self.flow.response = answer;
                }
            }
            // The answer to a failed flow, sent below as it is.
            HookReply::Respond(response) if kind == HookKind::Error => self.flow.response = Some(response),
            HookReply::Respond(response) => {
                self.respond_locally(cx, now, Some(kind), response, out);
                return;
            }
            HookReply::Kill => {
                self.flow.error = Some(FlowError { message: "killed by hook".into(), status: None });
                out.push(Out::AbortServer);
                out.push(Out::AbortClient);
                self.end_with_error(cx, now);
                return;
            }
        }
        match kind {
            HookKind::HttpConnect | HookKind::RequestHeaders => self.after_request_headers(cx, out),
            HookKind::Request => {
                if matches!(self.server, Server::None) {
                    self.send_request(out);
                } else {
                    self.check_finished(now);
                }
            }
            HookKind::ResponseHeaders => self.after_response_headers(cx, now, out),
            HookKind::Response => {
                if self.resp.is_started() {
                    self.check_finished(now);
                } else {
                    self.send_buffered_response(now, out);
                }
            }
            HookKind::Error => self.send_error_response(out),
            _ => {}
        }
    }

    fn after_request_headers(&mut self, cx: &mut Context, out: &mut Vec<Out>) {
        if self.is_connect() {
            let addr = self.flow.request.server();
            self.server = Server::Connecting(VecDeque::new());
            out.push(Out::OpenServer { addr, tls: false, dedicated: true, versions: Versions::Http1 });
            return;
        }
        if matches!(self.req, Req::Done) {
            // No body: the request is complete now, and the `Request` hook may still change it.
            if !self.raise(cx, HookKind::Request) {
                self.send_request(out);
            }
            return;
        }
        if self.flow.buffer_request {
            if self.flow.request.headers.has_token("expect", "100-continue") {
                self.flow.request.headers.remove("expect");
                self.local_continue = true;
                let response = Response { body: None, ..Response::new(100, Headers::new(), Bytes::new()) };
                let mut response = response;
                response.headers = Headers::new();
                out.push(Out::Client(HttpEvent::InterimResponse { flow: self.flow.id, response }));
            }
            self.req = Req::Buffering(BytesMut::new());
        } else {
            self.req = Req::Streaming;
            let request = self.request_head();
            self.send_to_server(HttpEvent::RequestHeaders { flow: self.flow.id, request, end_stream: false }, out);
            out.push(self.open_server());
        }
    }

    /// Send the complete (buffered or bodiless) request.
    fn send_request(&mut self, out: &mut Vec<Out>) {
        if self.resend == Resend::No {
            self.resend = Resend::Possible;
        }
        let request = self.flow.request.clone();
        let end_stream = true;
        self.send_to_server(HttpEvent::RequestHeaders { flow: self.flow.id, request, end_stream }, out);
        out.push(self.open_server());
    }

    fn after_response_headers(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        if matches!(self.resp, Resp::Held) {
            // No body: complete now.
            self.flow.ended = Some(now);
            if !self.raise(cx, HookKind::Response) {
                self.send_buffered_response(now, out);
            }
            return;
        }
        if self.flow.buffer_response {
            self.resp = Resp::Buffering(BytesMut::new());
        } else {
            self.resp = Resp::Streaming;
            let response = self.response_head();
            out.push(Out::Client(HttpEvent::ResponseHeaders { flow: self.flow.id, response, end_stream: false }));
        }
    }

    /// A streamed response has been passed on whole.
    fn response_complete(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        self.flow.ended = Some(now);
        self.finish_request_early(out);
        if cx.config.hooks.contains(HookKind::Response) {
            // The response has left already: the hook can only watch, so nothing waits for it.
            cx.hook(self.flow.id, Hook::Response(Box::new(self.flow.clone())));
        }
        self.check_finished(now);
    }

    fn send_buffered_response(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(response) = self.flow.response.clone() else { return };
        let end_stream = response.body.is_none();
        self.resp = Resp::Sent;
        out.push(Out::Client(HttpEvent::ResponseHeaders { flow: self.flow.id, response, end_stream }));
        self.flow.ended.get_or_insert(now);
        self.finish_request_early(out);
        self.check_finished(now);
    }

    /// The hook `from` answered the flow itself with `response` (`None`: the layer did, before
    /// any hook). The answer then goes through the response hooks that come after `from`, as
    /// a server's would: mitmproxy, too, raises `responseheaders` and `response` for a response
    /// an addon set in a request hook. Not for a `CONNECT`, whose refusal raises no response
    /// hook there either, nor for an answer to `Response` or `Error`, which is sent as it is.
    fn respond_locally(&mut self, cx: &mut Context, now: Instant, from: Option<HookKind>, response: Response, out: &mut Vec<Out>) {
        if self.resp.is_started() {
            // Too late to replace what the client is already receiving.
            return;
        }
        let response = whole(response);
        self.flow.response_body_bytes = response.body.as_ref().map_or(0, |b| b.len() as u64);
        self.flow.response = Some(response);
        if !matches!(self.server, Server::None) && !self.resp.is_complete() {
            out.push(Out::AbortServer);
        }
        self.server = Server::None;
        self.resp = Resp::Held;
        self.flow.ended = Some(now);
        if matches!(self.req, Req::Headers | Req::Buffering(_) | Req::Streaming) {
            self.req = Req::Discarding;
        }
        let after: &[HookKind] = match from {
            _ if self.is_connect() => &[],
            None | Some(HookKind::RequestHeaders | HookKind::Request) => &[HookKind::ResponseHeaders, HookKind::Response],
            Some(HookKind::ResponseHeaders) => &[HookKind::Response],
            Some(_) => &[],
        };
        // The first of them in the hook set, and not raised for this flow yet: a hook is raised
        // once per flow, and a server's early response, held for `Response` and unseen by the
        // client, may have been through `ResponseHeaders` when `Request` answers the flow.
        let waits = after.iter().any(|&kind| !self.raised.contains(kind) && self.raise(cx, kind));
        if !waits {
            self.send_buffered_response(now, out);
        }
    }

    /// The response is complete but the request body is not: the server will not read the
    /// rest, so stop sending it and let the client's rest be read and dropped.
    fn finish_request_early(&mut self, out: &mut Vec<Out>) {
        if matches!(self.req, Req::Streaming | Req::Buffering(_) | Req::Headers) {
            self.req = Req::Discarding;
            if let Server::Connecting(queued) = &mut self.server {
                queued.clear();
            }
            out.push(Out::AbortServer);
        }
    }

    /// The flow failed: answer the client with the error's status if it has not seen a
    /// response yet, otherwise cut its connection so it notices. The answer waits for the
    /// `Error` hook, which may change it; a cut connection is only reported to it.
    fn fail(&mut self, cx: &mut Context, now: Instant, error: HttpError, out: &mut Vec<Out>) {
        let (status, message) = (error.status(), error.to_string());
        out.push(Out::AbortServer);
        self.server = Server::None;
        if self.resp.is_started() {
            self.flow.error = Some(FlowError { message, status: None });
            out.push(Out::AbortClient);
            self.end_with_error(cx, now);
            return;
        }
        self.flow.response = Some(Response::error(status, &message));
        self.flow.error = Some(FlowError { message, status: Some(status) });
        self.flow.ended = Some(now);
        self.resp = Resp::Held;
        if matches!(self.req, Req::Headers | Req::Buffering(_) | Req::Streaming) {
            self.req = Req::Discarding;
        }
        // A flow fails once: whatever goes wrong after this raises no second `Error`.
        let first = !std::mem::replace(&mut self.failed, true);
        if !(first && self.raise(cx, HookKind::Error)) {
            self.send_error_response(out);
        }
    }

    /// Send the answer to a failed flow, as the `Error` hook left it. The stream lives on only
    /// to swallow the rest of the request body, if the client is still sending it.
    fn send_error_response(&mut self, out: &mut Vec<Out>) {
        if let Some(response) = self.flow.response.take() {
            let response = whole(response);
            self.flow.response = Some(response.clone());
            out.push(Out::Client(HttpEvent::ResponseHeaders { flow: self.flow.id, response, end_stream: false }));
        }
        self.resp = Resp::Sent;
        match self.req {
            Req::Done => self.finished = true,
            Req::Stalled => {
                out.push(Out::StopRequest);
                self.finished = true;
            }
            Req::Headers | Req::Buffering(_) | Req::Streaming | Req::Discarding => {}
        }
    }

    fn end_with_error(&mut self, cx: &mut Context, now: Instant) {
        self.flow.ended = Some(now);
        if cx.config.hooks.contains(HookKind::Error) && !std::mem::replace(&mut self.failed, true) {
            cx.hook(self.flow.id, Hook::Error(Box::new(self.flow.clone())));
        }
        self.waiting = None;
        self.deferred.clear();
        self.finished = true;
    }

    fn check_finished(&mut self, now: Instant) {
        let req_done = matches!(self.req, Req::Done);
        let resp_done = self.resp.is_complete();
        if req_done && resp_done && self.waiting.is_none() {
            self.flow.ended.get_or_insert(now);
            self.finished = true;
        }
    }

    /// Raise hook `kind` if the user subscribed to it; true if the stream now waits for it.
    fn raise(&mut self, cx: &mut Context, kind: HookKind) -> bool {
        if !cx.config.hooks.contains(kind) {
            return false;
        }
        let flow = Box::new(self.flow.clone());
        let hook = match kind {
            HookKind::HttpConnect => Hook::HttpConnect(flow),
            HookKind::RequestHeaders => Hook::RequestHeaders(flow),
            HookKind::Request => Hook::Request(flow),
            HookKind::ResponseHeaders => Hook::ResponseHeaders(flow),
            HookKind::Response => Hook::Response(flow),
            // Raised only while the flow's error answer waits for it (`fail`): blocking.
            HookKind::Error => Hook::Error(flow),
            _ => return false,
        };
        cx.hook(self.flow.id, hook);
        self.waiting = Some(kind);
        self.raised = self.raised.with(kind);
        true
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

    /// The connection to `addr` for this flow failed with `error`: with a gateway, the backend
    /// hears of it, and the request (which never left) goes to another of its group if one
    /// is left, its waiting head rewritten for it. Not when a hook sent the request
    /// elsewhere than the gateway had.
    fn next_backend(&mut self, cx: &mut Context, now: Instant, addr: &ServerAddr, error: &OpenError) -> Option<Backend> {
        let lease = self.lease.as_mut().filter(|l| l.backend().addr == *addr)?;
        if self.flow.request.server() != *addr {
            return None;
        }
        let (next, line) = lease.connect_failed(now, &error.to_string(), &mut self.flow.request);
        if let Some(line) = line {
            cx.log(LogLevel::Warn, line);
        }
        let next = next?;
        if let Server::Connecting(queued) = &mut self.server {
            for event in queued {
                if let HttpEvent::RequestHeaders { request, .. } = event {
                    request.scheme = self.flow.request.scheme;
                    request.host.clone_from(&self.flow.request.host);
                    request.port = self.flow.request.port;
                    request.headers.clone_from(&self.flow.request.headers);
                }
            }
        }
        Some(next)
    }

    /// The backend broke the exchange (`why`): with a gateway, it counts against its health.
    fn backend_failed(&mut self, cx: &mut Context, now: Instant, why: &str) {
        if let Some(line) = self.lease.as_mut().and_then(|l| l.failed(now, why)) {
            cx.log(LogLevel::Warn, line);
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
