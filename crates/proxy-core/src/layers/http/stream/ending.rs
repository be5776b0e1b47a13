//! Answers made here, failures and the end of the exchange.

use std::time::Instant;

use crate::context::Context;
use crate::flow::{FlowError, Response};
use crate::hook::{Hook, HookKind};
use crate::layers::http::error::HttpError;
use crate::layers::http::event::HttpEvent;
use super::{HttpStream, Out, Req, Resp, Server, whole};

impl HttpStream {
    /// The hook `from` answered the flow itself with `response` (`None`: the layer did, before
    /// any hook). The answer then goes through the response hooks that come after `from`, as
    /// a server's would: mitmproxy, too, raises `responseheaders` and `response` for a response
    /// an addon set in a request hook. Not for a `CONNECT`, whose refusal raises no response
    /// hook there either, nor for an answer to `Response` or `Error`, which is sent as it is.
    pub(super) fn respond_locally(&mut self, cx: &mut Context, now: Instant, from: Option<HookKind>, response: Response, out: &mut Vec<Out>) {
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
    pub(super) fn finish_request_early(&mut self, out: &mut Vec<Out>) {
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
    pub(super) fn fail(&mut self, cx: &mut Context, now: Instant, error: HttpError, out: &mut Vec<Out>) {
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
    pub(super) fn send_error_response(&mut self, out: &mut Vec<Out>) {
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

    pub(super) fn end_with_error(&mut self, cx: &mut Context, now: Instant) {
        self.flow.ended = Some(now);
        if cx.config.hooks.contains(HookKind::Error) && !std::mem::replace(&mut self.failed, true) {
            cx.hook(self.flow.id, Hook::Error(Box::new(self.flow.clone())));
        }
        self.waiting = None;
        self.deferred.clear();
        self.finished = true;
    }

    pub(super) fn check_finished(&mut self, now: Instant) {
        let req_done = matches!(self.req, Req::Done);
        let resp_done = self.resp.is_complete();
        if req_done && resp_done && self.waiting.is_none() {
            self.flow.ended.get_or_insert(now);
            self.finished = true;
        }
    }
}
