//! Raising hooks, their replies, and what goes on after each.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::context::Context;
use crate::flow::{FlowError, Response};
use crate::headers::Headers;
use crate::hook::{Hook, HookKind, HookReply};
use crate::layers::http::event::HttpEvent;
use super::Versions;
use super::{HttpStream, Out, Req, Resend, Resp, Server};

impl HttpStream {
    /// The hook `kind` was answered.
    pub(super) fn handle_reply(&mut self, cx: &mut Context, now: Instant, kind: HookKind, reply: HookReply, out: &mut Vec<Out>) {
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

    pub(super) fn after_request_headers(&mut self, cx: &mut Context, out: &mut Vec<Out>) {
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
    pub(super) fn send_request(&mut self, out: &mut Vec<Out>) {
        if self.resend == Resend::No {
            self.resend = Resend::Possible;
        }
        let request = self.flow.request.clone();
        let end_stream = true;
        self.send_to_server(HttpEvent::RequestHeaders { flow: self.flow.id, request, end_stream }, out);
        out.push(self.open_server());
    }

    pub(super) fn after_response_headers(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
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
    pub(super) fn response_complete(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
        self.flow.ended = Some(now);
        self.finish_request_early(out);
        if cx.config.hooks.contains(HookKind::Response) {
            // The response has left already: the hook can only watch, so nothing waits for it.
            cx.hook(self.flow.id, Hook::Response(Box::new(self.flow.clone())));
        }
        self.check_finished(now);
    }

    pub(super) fn send_buffered_response(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(response) = self.flow.response.clone() else { return };
        let end_stream = response.body.is_none();
        self.resp = Resp::Sent;
        out.push(Out::Client(HttpEvent::ResponseHeaders { flow: self.flow.id, response, end_stream }));
        self.flow.ended.get_or_insert(now);
        self.finish_request_early(out);
        self.check_finished(now);
    }

    /// Raise hook `kind` if the user subscribed to it; true if the stream now waits for it.
    pub(super) fn raise(&mut self, cx: &mut Context, kind: HookKind) -> bool {
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
}
