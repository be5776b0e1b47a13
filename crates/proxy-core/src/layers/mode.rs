//! Proxy modes: what the client connection speaks first, and what it turns into.

use std::time::Instant;

use crate::command::LogLevel;
use crate::config::Mode;
use crate::context::Context;
use crate::event::Event;
use crate::hook::{Hook, HookKind, HookReply};
use crate::ids::{ConnId, FlowId};
use crate::layer::{Child, Handover, Layer};
use crate::layers::http::HttpLayer;
use crate::layers::tls::intercept::Intercept;
use crate::layers::socks5::Socks5Layer;
use crate::layers::transparent::TransparentLayer;
use crate::layers::tunnel::Tunnel;
use crate::layers::websocket::WebSocketLayer;

/// The root of a client connection's layers, by [`Mode`]. A regular (explicit) proxy: the
/// client speaks HTTP to the proxy, with absolute-form targets, until a `CONNECT` or an
/// `Upgrade` turns its connection into a tunnel (or, with TLS interception, an intercepted
/// connection). In reverse mode the client speaks to us as to its origin, in TLS or not.
/// Upstream mode looks like regular mode from here: the HTTP layer sends everything on
/// through the upstream proxy (see [`upstream`](crate::layers::http::upstream_proxy)).
pub(crate) struct ModeLayer {
    state: State,
}

enum State {
    /// Before `Event::Start`.
    New,
    /// Waiting for the `ClientConnected` hook to let the client in.
    Admitting(FlowId),
    /// HTTP, TLS or a tunnel: whatever the client connection speaks now.
    Running(Child),
    /// Refused by the `ClientConnected` hook.
    Closed,
}

impl ModeLayer {
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
    let layer: Box<dyn Layer> = match &cx.config.mode {
        Mode::Reverse { scheme, target, client_tls: true } => {
            Box::new(Intercept::reverse(cx, *scheme, target.clone(), inside_tls))
        }
        // With interception on, a regular listener also serves clients that speak TLS to it.
        Mode::Regular if cx.config.tls.is_some() => Box::new(Intercept::secure_proxy(cx, after_http)),
        // An HTTP/2 client may open tunnels as streams: each becomes what a `CONNECT` does.
        Mode::Regular | Mode::Upstream { .. } => Box::new(HttpLayer::for_mode(cx).carrying_tunnels(after_http)),
        Mode::Reverse { client_tls: false, .. } => Box::new(HttpLayer::for_mode(cx)),
        Mode::Socks5 => Box::new(Socks5Layer::new()),
        Mode::Transparent => Box::new(TransparentLayer::new()),
    };
    State::Running(Child::new(layer, after_http))
}

/// What the client's HTTP connection (or SOCKS5 handshake) becomes: after a `CONNECT`, with interception on, a TLS
/// layer that looks at what the client sends next; after a `101` to WebSocket, the WebSocket
/// layer; otherwise (no interception, another protocol) a raw tunnel.
fn after_http(cx: &mut Context, now: Instant, handover: Handover) -> Box<dyn Layer> {
    if handover.connect && cx.config.tls.is_some() {
        Box::new(Intercept::new(cx, now, handover, inside_tls))
    } else {
        switched(cx, now, handover)
    }
}

/// What HTTP inside an intercepted connection becomes: WebSocket, or a raw tunnel (no TLS
/// inside TLS yet).
fn inside_tls(cx: &mut Context, now: Instant, handover: Handover) -> Box<dyn Layer> {
    switched(cx, now, handover)
}

/// A connection whose HTTP ended with a protocol switch (or an unintercepted `CONNECT`).
fn switched(cx: &mut Context, now: Instant, mut handover: Handover) -> Box<dyn Layer> {
    match handover.websocket.take() {
        Some(flow) => Box::new(WebSocketLayer::new(cx, now, handover, flow)),
        None => Box::new(Tunnel::new(cx, handover)),
    }
}

impl Layer for ModeLayer {
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
        if let State::Running(child) = &mut self.state {
            child.handle(cx, now, event);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::New | State::Admitting(_) | State::Closed => None,
            State::Running(child) => child.poll_timeout(),
        }
    }

    fn wants_drained(&self) -> bool {
        match &self.state {
            State::Running(child) => child.wants_drained(),
            // Nothing is written before the mode's layers run.
            State::New | State::Admitting(_) | State::Closed => false,
        }
    }
}
