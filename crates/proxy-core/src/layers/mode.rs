//! Proxy modes: what the client connection speaks first, and what it turns into.

use std::time::Instant;

use crate::command::LogLevel;
use crate::config::Mode;
use crate::context::{ConnId, Context, FlowId};
use crate::hook::{Hook, HookKind, HookReply};
use crate::event::Event;
use crate::layer::Layer;
use crate::layers::destination::Destination;
use crate::layers::http::HttpLayer;
use crate::tls::intercept::Intercept;
use crate::tunnel::Tunnel;

/// The root of a client connection's layers, by [`Mode`]. A regular (explicit) proxy: the
/// client speaks HTTP to the proxy, with absolute-form targets, until a `CONNECT` or an
/// `Upgrade` turns its connection into a tunnel (or, with TLS interception, an intercepted
/// connection). In reverse mode the client speaks to us as to its origin, in TLS or not.
/// Upstream mode looks like regular mode from here: the HTTP layer sends everything on
/// through the upstream proxy (see [`upstream`](crate::layers::upstream)).
pub(crate) struct RegularMode {
    state: State,
}

enum State {
    /// Before `Event::Start`.
    New,
    /// Waiting for the `ClientConnected` hook to let the client in.
    Admitting(FlowId),
    Http(Box<HttpLayer>),
    /// The client connection carries another protocol now. The tunnel is where a TLS layer
    /// will be pushed when interception arrives.
    Tunnel(Box<dyn Layer>),
    /// Refused by the `ClientConnected` hook.
    Closed,
}

impl RegularMode {
    pub(crate) fn new() -> Self {
        Self { state: State::New }
    }
}

/// What the client connection speaks first, by mode. A configuration that cannot serve the
/// mode (client TLS without [`Config::tls`](crate::Config::tls)) closes the connection with a
/// log line saying so.
fn first_layer(cx: &mut Context) -> State {
    if matches!(cx.config.mode, Mode::Reverse { client_tls: true, .. }) && cx.config.tls.is_none() {
        cx.log(LogLevel::Warn, "reverse mode with client TLS needs Config::tls: closing the client");
        cx.close(ConnId::CLIENT, false);
        return State::Closed;
    }
    match &cx.config.mode {
        Mode::Regular | Mode::Upstream { .. } => State::Http(Box::new(HttpLayer::new(cx))),
        Mode::Reverse { scheme, target, client_tls: false } => {
            let destination = Destination::Fixed { scheme: *scheme, target: target.clone() };
            State::Http(Box::new(HttpLayer::for_destination(cx, destination)))
        }
        Mode::Reverse { scheme, target, client_tls: true } => {
            State::Tunnel(Box::new(Intercept::reverse(cx, *scheme, target.clone())))
        }
    }
}

impl Layer for RegularMode {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        match (&self.state, &event) {
            (State::New, Event::Start) if cx.config.hooks.contains(HookKind::ClientConnected) => {
                let flow = cx.next_flow_id();
                cx.set_layer_pause(ConnId::CLIENT, true);
                cx.hook(flow, Hook::ClientConnected(cx.client.clone()));
                self.state = State::Admitting(flow);
                return;
            }
            (State::New, _) => self.state = first_layer(cx),
            (State::Admitting(waiting), Event::HookReply { flow, reply }) if flow == waiting => {
                if let HookReply::Kill = reply {
                    cx.log(LogLevel::Info, format!("client {} refused by hook", cx.client.peer));
                    cx.close(ConnId::CLIENT, false);
                    self.state = State::Closed;
                } else {
                    self.state = first_layer(cx);
                    self.handle(cx, now, Event::Start);
                }
                return;
            }
            (State::Admitting(_), Event::ConnectionClosed { .. }) => {
                cx.close(ConnId::CLIENT, false);
                self.state = State::Closed;
                return;
            }
            _ => {}
        }
        match &mut self.state {
            State::New | State::Admitting(_) | State::Closed => {}
            State::Http(http) => {
                http.handle(cx, now, event);
                if let Some(handover) = http.take_handover() {
                    self.state = if handover.connect && cx.config.tls.is_some() {
                        State::Tunnel(Box::new(Intercept::new(cx, now, handover)))
                    } else {
                        State::Tunnel(Box::new(Tunnel::new(cx, handover)))
                    };
                }
            }
            State::Tunnel(layer) => layer.handle(cx, now, event),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::New | State::Admitting(_) | State::Closed => None,
            State::Http(http) => http.poll_timeout(),
            State::Tunnel(layer) => layer.poll_timeout(),
        }
    }
}
