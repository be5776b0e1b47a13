//! The HTTP/2 engines driven until still: each stream's window opened or held shut by whether
//! its destination has room, what the peers sent routed to the streams, and what the streams
//! sent handed out, the client's engine and the servers' in turn.

use std::time::Instant;

use super::pool::{ServerCodec, ServerConn};
use super::{ClientCodec, HttpLayer};
use crate::context::Context;
use crate::ids::{ConnId, FlowId};
use crate::websocket::Peer;

/// What one pass of [`HttpLayer::drive_h2`] gathers before it acts on it (the streams of a
/// connection, the connections): on the stack while there are few, as there mostly are.
type Scratch<T> = smallvec::SmallVec<[T; 16]>;

impl HttpLayer {
    /// Run the HTTP/2 engines until none has anything more to say: what their peers sent is
    /// routed to the streams, and what the streams sent goes out. First each stream's window
    /// is opened or held shut by whether its destination has room.
    pub(super) fn drive_h2(&mut self, cx: &mut Context, now: Instant) {
        self.drive_joined(cx);
        if !matches!(self.client, ClientCodec::H2(_)) && !self.pool.iter().any(ServerConn::is_h2) {
            return;
        }
        // Events of one engine can only feed the others a bounded number of times over.
        for _ in 0..16 {
            let mut moved = false;
            if matches!(self.client, ClientCodec::H2(_)) {
                self.drain_tunnels(cx, now);
                if self.client_gone {
                    return;
                }
                let flows: Scratch<FlowId> = match &self.client {
                    ClientCodec::H2(codec) => codec.flows().collect(),
                    ClientCodec::H1(_) => Scratch::new(),
                };
                for flow in flows {
                    let reading = if self.tunnels.contains(flow) {
                        self.tunnels.reading(flow)
                    } else if self.websockets.contains(flow) {
                        self.websocket_readable(cx, flow, Peer::Client)
                    } else {
                        self.streams.get(&flow).is_none_or(|s| s.wants_request_data()) && self.server_has_room(cx, flow)
                    };
                    if let ClientCodec::H2(codec) = &mut self.client {
                        codec.set_reading(flow, reading);
                    }
                }
                let mut outputs = std::mem::take(&mut self.spare_client_outputs);
                if let ClientCodec::H2(codec) = &mut self.client {
                    codec.poll(cx, now, &mut outputs);
                }
                moved |= !outputs.is_empty();
                self.handle_client_outputs(cx, now, outputs);
                if self.client_gone {
                    return;
                }
            }
            let h2_servers: Scratch<ConnId> = self.pool.iter().filter(|s| s.open && s.is_h2()).map(|s| s.conn).collect();
            for conn in h2_servers {
                let Some(server) = self.pool.get(conn) else { continue };
                let mut reading: Scratch<(FlowId, bool)> = server
                    .flows
                    .iter()
                    .map(|&flow| {
                        let wants = self.streams.get(&flow).is_none_or(|s| s.wants_response_data());
                        (flow, wants && self.client_has_room(cx, flow))
                    })
                    .collect();
                let websockets: Scratch<FlowId> = self.websockets.streams_on(conn).collect();
                for flow in websockets {
                    reading.push((flow, self.websocket_readable(cx, flow, Peer::Server)));
                }
                let Some(ServerCodec::H2(codec)) = self.pool.get_mut(conn).map(|s| &mut s.codec) else { continue };
                for (flow, reading) in reading {
                    codec.set_reading(flow, reading);
                }
                let mut outputs = std::mem::take(&mut self.spare_server_outputs);
                codec.poll(cx, &mut outputs);
                moved |= !outputs.is_empty();
                self.handle_server_outputs(cx, now, conn, outputs);
                // Upgrades that waited for the server's SETTINGS send their requests next; a
                // tunnel's connection waiting for them to be shared is parked.
                moved |= self.settle_websockets(cx, now, conn);
                moved |= self.settle_shared(cx, now, conn);
            }
            if !moved {
                break;
            }
        }
        self.drive_joined(cx);
    }

    /// Open or hold shut the response windows of the streams on carriers, as for HTTP/2
    /// connections of our own: by whether the client side has room.
    fn drive_joined(&mut self, cx: &mut Context) {
        for server in self.pool.iter_mut() {
            let Some(flow) = server.flow() else { continue };
            let Some(joined) = server.joined_mut() else { continue };
            let wants = self.streams.get(&flow).is_none_or(|s| s.wants_response_data());
            let reading = wants && Self::has_room(&self.client, cx, flow);
            joined.set_reading(cx, reading);
        }
    }
}
