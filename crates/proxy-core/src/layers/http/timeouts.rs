//! Time limits of the HTTP layer: a request body the client stopped sending (`body_timeout`),
//! a server silent while it owes a response (`server_idle_timeout`), an idle keep-alive
//! client, and the codecs' own deadlines. Silence the proxy causes never counts.

use std::time::Instant;

use super::error::HttpError;
use super::stream::Input;
use super::HttpLayer;
use crate::command::LogLevel;
use crate::context::Context;
use crate::ids::{ConnId, FlowId};
use crate::layers::http::http1::{Http1Client, Http1Server};

impl HttpLayer {
    /// Whether the proxy is what keeps `flow`'s client from sending more of its request body:
    /// a hook is pending, the server is not ready or has no room, reading is paused, or the
    /// driver forwards the body and the server has not taken what it has.
    pub(super) fn body_held(&self, cx: &Context, flow: FlowId) -> bool {
        self.streams.get(&flow).is_some_and(|s| !s.wants_request_data())
            || !self.server_has_room(cx, flow)
            || cx.is_paused(ConnId::CLIENT)
            || self.client.h1().is_some_and(Http1Server::forward_waits_on_server)
    }

    /// Bodies the proxy holds back up to this moment get the full timeout from now, so a
    /// client let go again has all of it.
    pub(super) fn hold_bodies(&mut self, cx: &Context, now: Instant) {
        let held: Vec<FlowId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.awaits_request_body())
            .map(|(flow, _)| *flow)
            .filter(|flow| self.body_held(cx, *flow))
            .collect();
        for flow in held {
            if let Some(stream) = self.streams.get_mut(&flow) {
                stream.rearm_body_deadline(now + cx.config.body_timeout);
                // A window the proxy held up measures the proxy: it starts again.
                if let Some(rate) = cx.config.body_min_rate {
                    if stream.rate_deadline().is_some() {
                        stream.restart_rate(now, rate.window);
                    }
                }
            }
        }
    }

    /// Requests whose body rate is due for a check: below `body_min_rate` on average since it
    /// began to be measured, the client gets 408 as for a silent body.
    fn expire_slow_bodies(&mut self, cx: &mut Context, now: Instant) {
        let Some(rate) = cx.config.body_min_rate else { return };
        let ended: Vec<FlowId> =
            self.streams.iter().filter(|(_, s)| s.rate_deadline().is_some_and(|d| d <= now)).map(|(flow, _)| *flow).collect();
        for flow in ended {
            let held = self.body_held(cx, flow);
            let Some(stream) = self.streams.get_mut(&flow) else { continue };
            if held {
                stream.restart_rate(now, rate.window);
                continue;
            }
            let Some((bytes, secs)) = stream.check_rate(now, rate) else { continue };
            let error = HttpError::ClientTooSlow { bytes, secs: (secs * 10.0).round() / 10.0, rate: rate.bytes_per_sec };
            cx.log(LogLevel::Info, format!("client {}: {error}", cx.client.peer));
            // The stream ends the request once the client has its answer (`Out::StopRequest`):
            // an HTTP/1 connection with it.
            self.feed(cx, now, flow, Input::ClientTimeout(error));
            if self.client_gone {
                return;
            }
        }
    }

    /// Requests whose client went silent in the middle of the body: each gets 408 (or loses
    /// its exchange), and the client connection is closed (HTTP/1, lingering so the answer is
    /// read) or the stream reset (HTTP/2). A silence the proxy caused starts counting again.
    pub(super) fn expire_bodies(&mut self, cx: &mut Context, now: Instant) {
        let expired: Vec<FlowId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.body_deadline().is_some_and(|d| d <= now))
            .map(|(flow, _)| *flow)
            .collect();
        let timeout = cx.config.body_timeout;
        for flow in expired {
            if self.body_held(cx, flow) {
                if let Some(stream) = self.streams.get_mut(&flow) {
                    stream.rearm_body_deadline(now + timeout);
                }
                continue;
            }
            let secs = timeout.as_secs_f64();
            cx.log(LogLevel::Info, format!("client sent nothing of a request body for {secs} s"));
            // As for a slow body: the stream ends the request once the client has its answer.
            self.feed(cx, now, flow, Input::ClientTimeout(HttpError::ClientTimeout { secs }));
            if self.client_gone {
                return;
            }
        }
    }

    pub(super) fn handle_wakeup(&mut self, cx: &mut Context, now: Instant) {
        // Flows waiting in a gateway's queue: granted a backend, or waited long enough.
        let queued: Vec<FlowId> = self.streams.iter().filter(|(_, s)| s.queue_deadline().is_some()).map(|(flow, _)| *flow).collect();
        for flow in queued {
            self.feed(cx, now, flow, Input::Queue);
        }
        let mut outputs = Vec::new();
        if let Some(client) = self.client.h1_mut() {
            client.handle_timeout(cx, now, &mut outputs);
        }
        self.handle_client_outputs(cx, now, outputs);
        self.expire_bodies(cx, now);
        if self.client_gone {
            return;
        }
        self.expire_slow_bodies(cx, now);
        if self.client_gone {
            return;
        }
        if self.client_deadline.is_some_and(|d| d <= now) {
            self.client_deadline = None;
            if self.client.is_idle() && self.streams.is_empty() {
                cx.log(LogLevel::Debug, "closing idle client connection");
                self.close_all(cx, now, false);
                return;
            }
        }
        // A tunnel's connection whose server never finished exchanging settings is not shared:
        // the requests that waited for it go on it rather than fail (`settle_shared` tells
        // whether its deadline passed).
        let settling: Vec<ConnId> = self.pool.iter().filter(|s| s.settling).map(|s| s.conn).collect();
        for conn in settling {
            self.settle_shared(cx, now, conn);
        }
        let expired: Vec<(ConnId, Vec<FlowId>)> = self
            .pool
            .iter()
            .filter(|s| s.deadline.is_some_and(|d| d <= now))
            .map(|s| (s.conn, s.flows.clone()))
            .collect();
        for (conn, flows) in expired {
            if let Some(client_slow) = self.pool.get(conn).map(|s| s.h1().is_some_and(Http1Client::forward_waits_on_client)) {
                // Its silence is not its fault when we are not reading it (a hook is pending,
                // the client is slow, or the client has not taken the response body the
                // driver forwards), or when it waits for a request body the client has not
                // finished sending and can take more of it (the body timeout covers the
                // client). Start counting again from now.
                let waits_for_client = !cx.is_congested(conn)
                    && !self
                        .client
                        .h1()
                        .is_some_and(Http1Server::forward_waits_on_server)
                    && flows
                        .iter()
                        .any(|f| self.streams.get(f).is_some_and(|s| s.awaits_request_body()));
                let again = cx.is_paused(conn) || waits_for_client || client_slow;
                if let Some(server) = self.pool.get_mut(conn) {
                    server.deadline = again.then(|| now + cx.config.server_idle_timeout);
                }
                if again {
                    continue;
                }
            }
            let secs = cx.config.server_idle_timeout.as_secs_f64();
            let input = match self.proxy_connect(conn) {
                Some(connect) => Input::ProxyFailed(connect.timed_out(secs)),
                None => Input::ServerTimeout { secs },
            };
            for flow in flows {
                self.feed(cx, now, flow, input.clone());
            }
            self.drop_server(cx, conn);
        }
    }
}
