//! Test support, hidden from the docs: one layer driven alone, as mitmproxy's playbooks test a
//! layer in isolation.
//!
//! [`Connection::alone`](crate::Connection::alone) builds a connection whose stack is the TLS
//! transport and the chosen layer, nothing else: no mode admits the client (no
//! `ClientConnected` hook) or chooses what follows a hand-over. A layer that hands over is
//! done: the hand-over is reported as a debug log line naming what it carried, so that a
//! playbook can assert on the seam between layers, and later events go nowhere.

use std::time::Instant;

use bytes::BytesMut;

use crate::command::LogLevel;
use crate::context::Context;
use crate::event::Event;
use crate::ids::{ConnId, ServerAddr};
use crate::layer::{Handover, Layer};
use crate::layers::http::HttpLayer;
use crate::layers::tunnel::Tunnel;

/// The layer to drive alone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Alone {
    /// The HTTP layer of a client connection, its requests going where the configured mode
    /// sends them (reverse mode's upstream, or the server each request names).
    Http,
    /// A raw tunnel between the client and `server`, whose connection the layer opens first.
    Tunnel { server: ServerAddr },
}

/// The chosen layer, reporting hand-overs instead of making them.
pub(crate) struct AloneLayer {
    state: State,
}

enum State {
    /// A tunnel's server is being opened, the client paused (a tunnel starts on an open
    /// connection, as it does behind a `CONNECT`). Should a read already under way still
    /// arrive, or the client close, it waits here for the tunnel.
    Opening { server: ConnId, target: ServerAddr, client_rest: BytesMut, client_eof: bool },
    Running(Box<dyn Layer>),
    /// The layer handed over, or its tunnel never opened.
    Done,
}

impl AloneLayer {
    pub(crate) fn new(cx: &mut Context, alone: Alone) -> Self {
        let state = match alone {
            Alone::Http => State::Running(Box::new(HttpLayer::for_mode(cx))),
            Alone::Tunnel { server: target } => {
                let server = cx.open(target.clone());
                cx.set_layer_pause(ConnId::CLIENT, true);
                State::Opening { server, target, client_rest: BytesMut::new(), client_eof: false }
            }
        };
        Self { state }
    }
}

impl Layer for AloneLayer {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        match (&mut self.state, event) {
            (State::Running(inner), event) => {
                inner.handle(cx, now, event);
                if let Some(handover) = inner.take_handover() {
                    cx.log(LogLevel::Debug, describe(&handover));
                    self.state = State::Done;
                }
            }
            (State::Opening { client_rest, .. }, Event::DataReceived { conn: ConnId::CLIENT, data }) => {
                client_rest.extend_from_slice(&data);
            }
            (State::Opening { client_eof, .. }, Event::ConnectionClosed { conn: ConnId::CLIENT }) => {
                *client_eof = true;
            }
            (State::Opening { server, .. }, Event::Opened { conn }) if conn == *server => {
                let State::Opening { server, target, client_rest, client_eof } =
                    std::mem::replace(&mut self.state, State::Done)
                else {
                    unreachable!()
                };
                let handover = Handover {
                    server,
                    target,
                    connect: true,
                    client_rest: client_rest.freeze(),
                    server_rest: Default::default(),
                    client_eof,
                    websocket: None,
                    pooled: None,
                };
                self.state = State::Running(Box::new(Tunnel::new(cx, handover)));
            }
            (State::Opening { server, target, .. }, Event::OpenFailed { conn, error }) if conn == *server => {
                cx.forget(conn);
                cx.log(LogLevel::Info, format!("cannot connect to {target}: {error}"));
                cx.close(ConnId::CLIENT, false);
                self.state = State::Done;
            }
            _ => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Running(inner) => inner.poll_timeout(),
            State::Opening { .. } | State::Done => None,
        }
    }

    // As in the whole stack: a layer driven alone hears of drains only when they pace it.
    fn wants_drained(&self) -> bool {
        match &self.state {
            State::Running(inner) => inner.wants_drained(),
            State::Opening { .. } | State::Done => false,
        }
    }
}

/// A hand-over as the debug log line says it.
fn describe(handover: &Handover) -> String {
    let Handover { server, target, connect, client_rest, server_rest, client_eof, .. } = handover;
    let ConnId(server) = server;
    let why = if *connect { "CONNECT" } else { "101" };
    format!(
        "hand-over ({why}): server connection {server} to {target}, {} bytes from the client, {} from the server{}",
        client_rest.len(),
        server_rest.len(),
        if *client_eof { ", client done sending" } else { "" },
    )
}
