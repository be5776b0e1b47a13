//! The inputs as they come: each moves the request or the response on, and those kept while
//! a hook or the queue held the stream are replayed.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::command::LogLevel;
use crate::context::Context;
use crate::flow::{FlowError, Response};
use crate::headers::Headers;
use crate::hook::{Hook, HookKind};
use crate::layers::http::error::HttpError;
use crate::layers::http::event::HttpEvent;
use super::{HttpStream, Input, Out, Refusal, Req, Resend, Resp, Server};

impl HttpStream {
    /// Go on with the inputs kept while a hook or the queue held the stream.
    pub(super) fn replay(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        while self.waiting.is_none() && self.ticket.is_none() && !self.finished {
            let Some(input) = self.deferred.pop_front() else { break };
            self.handle_input(cx, now, input, out);
        }
    }

    pub(super) fn handle_input(&mut self, cx: &mut Context, now: Instant, input: Input, out: &mut Vec<Out>) {
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
}
