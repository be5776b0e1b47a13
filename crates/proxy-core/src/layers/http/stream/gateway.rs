//! Reverse mode with a gateway: the flow's lease on its backend, its wait in the queue, and
//! what a failed connection or exchange means for the backend.

use std::time::Instant;

use crate::command::LogLevel;
use crate::context::Context;
use crate::open_error::OpenError;
use crate::gateway::{Admitted, Backend, Ticket};
use crate::ids::ServerAddr;
use crate::layers::http::error::HttpError;
use crate::layers::http::event::HttpEvent;
use super::{HttpStream, Input, Out, Refusal, Server};

impl HttpStream {
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
    pub(super) fn poll_queue(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<Out>) {
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

    /// The connection to `addr` for this flow failed with `error`: with a gateway, the backend
    /// hears of it, and the request (which never left) goes to another of its group if one
    /// is left, its waiting head rewritten for it. Not when a hook sent the request
    /// elsewhere than the gateway had.
    pub(super) fn next_backend(&mut self, cx: &mut Context, now: Instant, addr: &ServerAddr, error: &OpenError) -> Option<Backend> {
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
    pub(super) fn backend_failed(&mut self, cx: &mut Context, now: Instant, why: &str) {
        if let Some(line) = self.lease.as_mut().and_then(|l| l.failed(now, why)) {
            cx.log(LogLevel::Warn, line);
        }
    }
}
