//! A raw bidirectional tunnel between the client and one server: what a `CONNECT` that is
//! not intercepted, or a protocol switched to with `101`, becomes.

use std::time::Instant;

use crate::context::Context;
use crate::event::Event;
use crate::ids::ConnId;
use crate::layer::{Handover, Layer};

pub(crate) struct Tunnel {
    server: ConnId,
    /// Which sides have stopped sending: client, server.
    eof: [bool; 2],
}

impl Tunnel {
    pub(crate) fn new(cx: &mut Context, handover: Handover) -> Self {
        let server = handover.server;
        cx.send(server, handover.client_rest);
        cx.send(ConnId::CLIENT, handover.server_rest);
        cx.set_layer_pause(ConnId::CLIENT, false);
        cx.set_layer_pause(server, false);
        let mut tunnel = Self { server, eof: [false; 2] };
        if handover.client_eof {
            tunnel.side_closed(cx, ConnId::CLIENT);
        }
        tunnel
    }

    fn other(&self, conn: ConnId) -> ConnId {
        if conn == ConnId::CLIENT { self.server } else { ConnId::CLIENT }
    }

    /// `conn` will send no more: pass the half-close on, and close both once both are done.
    fn side_closed(&mut self, cx: &mut Context, conn: ConnId) {
        let i = usize::from(conn != ConnId::CLIENT);
        if self.eof[i] {
            // A second close means a write failed as well: give up on both.
            self.eof = [true; 2];
        }
        self.eof[i] = true;
        if self.eof == [true; 2] {
            cx.close(ConnId::CLIENT, false);
            cx.close(self.server, false);
        } else {
            cx.close(self.other(conn), true);
        }
    }
}

impl Layer for Tunnel {
    fn handle(&mut self, cx: &mut Context, _now: Instant, event: Event) {
        match event {
            Event::DataReceived { conn, data } if conn == ConnId::CLIENT || conn == self.server => {
                let other = self.other(conn);
                cx.send(other, data);
            }
            Event::ConnectionClosed { conn } if conn == ConnId::CLIENT || conn == self.server => {
                self.side_closed(cx, conn);
            }
            _ => {}
        }
    }
}
