//! Transparent mode: the client does not know the proxy is there. The system redirected its
//! connection (iptables/nftables `REDIRECT`), and the driver read where it was going
//! (`ClientInfo::original_dst`); the proxy connects there and goes on as after an HTTP
//! `CONNECT`: a ClientHello is intercepted (its SNI, else the destination's address, names the
//! certificate), HTTP is parsed, anything else is tunnelled.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::ids::{ConnId, ServerAddr};
use crate::layer::{Handover, Layer};

pub(crate) struct TransparentLayer {
    state: State,
    /// What the client sent while the server connection was opening.
    early: BytesMut,
    client_eof: bool,
    handover: Option<Handover>,
}

enum State {
    New,
    Connecting { server: ConnId, target: ServerAddr },
    Done,
}

impl TransparentLayer {
    pub(crate) fn new() -> Self {
        Self { state: State::New, early: BytesMut::new(), client_eof: false, handover: None }
    }

    fn start(&mut self, cx: &mut Context) {
        let Some(dst) = cx.client.original_dst else {
            cx.log(
                LogLevel::Warn,
                format!("transparent client {}: no original destination (was the connection redirected to the proxy?): closing", cx.client.peer),
            );
            return self.close(cx);
        };
        if dst == cx.client.local {
            // Not redirected, or redirected to ourselves: connecting would loop.
            cx.log(
                LogLevel::Warn,
                format!("transparent client {}: its destination {dst} is the proxy's own listener: closing (a redirect loop?)", cx.client.peer),
            );
            return self.close(cx);
        }
        let target = ServerAddr::new(dst.ip().to_string(), dst.port());
        let server = cx.open(target.clone());
        self.state = State::Connecting { server, target };
    }

    fn close(&mut self, cx: &mut Context) {
        if let State::Connecting { server, .. } = self.state {
            cx.close(server, false);
        }
        cx.close(ConnId::CLIENT, false);
        self.state = State::Done;
    }
}

impl Layer for TransparentLayer {
    fn handle(&mut self, cx: &mut Context, _now: Instant, event: Event) {
        match (&self.state, event) {
            (State::New, Event::Start) => self.start(cx),
            (State::Connecting { .. }, Event::DataReceived { conn: ConnId::CLIENT, data }) => {
                // Kept for the next layer, which reads the client from the start; the
                // client is not read past its first bytes meanwhile.
                self.early.extend_from_slice(&data);
                cx.set_layer_pause(ConnId::CLIENT, true);
            }
            (State::Connecting { .. }, Event::ConnectionClosed { conn: ConnId::CLIENT }) => self.client_eof = true,
            (State::Connecting { server, target }, Event::Opened { conn }) if *server == conn => {
                self.handover = Some(Handover {
                    server: conn,
                    target: target.clone(),
                    connect: true,
                    client_rest: self.early.split().freeze(),
                    server_rest: Bytes::new(),
                    client_eof: self.client_eof,
                    websocket: None,
                    pooled: None,
                });
                self.state = State::Done;
            }
            (State::Connecting { server, target }, Event::OpenFailed { conn, error }) if *server == conn => {
                cx.log(LogLevel::Info, format!("transparent client {}: cannot connect to {target}: {error}", cx.client.peer));
                cx.forget(conn);
                self.state = State::Done;
                cx.close(ConnId::CLIENT, false);
            }
            _ => {}
        }
    }

    fn take_handover(&mut self) -> Option<Handover> {
        self.handover.take()
    }
}
