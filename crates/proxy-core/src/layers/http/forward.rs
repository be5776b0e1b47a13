//! Backpressure and forwarding: whether each side of a flow has room for more of a body, and
//! handing a body nobody needs to see to the driver to move by itself.

use super::pool::ServerCodec;
use super::{ClientCodec, HttpLayer};
use crate::context::Context;
use crate::ids::{ConnId, FlowId};

impl HttpLayer {
    /// Hand the rest of a body to the driver when nothing in the core needs to see it.
    pub(super) fn start_forwards(&mut self, cx: &mut Context) {
        let Some(min) = cx.config.forward_min else { return };
        let Some(client) = self.client.h1_mut() else { return };
        let Some(flow) = client.current_flow() else { return };
        let Some(stream) = self.streams.get(&flow) else { return };
        let Some(server) = self.pool.carrying_mut(flow).filter(|s| s.open) else { return };
        // Bytes on a TLS connection are not what the other side should get (the server's may
        // be TLS to an upstream proxy, not only to the origin).
        if server.tls || !cx.is_plain(server.conn) || !cx.is_plain(ConnId::CLIENT) {
            return;
        }
        let conn = server.conn;
        let Some(codec) = server.h1_mut() else { return };
        if stream.may_forward_response() && client.sends_raw_body(flow) {
            if let Some(len) = codec.start_forward(min) {
                cx.forward(conn, ConnId::CLIENT, len);
            }
        }
        if stream.may_forward_request() && codec.sends_raw_body() {
            if let Some(len) = client.start_forward(min) {
                cx.forward(ConnId::CLIENT, conn, len);
            }
        }
    }

    /// Whether the server side of `flow` can take more of its request body now.
    pub(super) fn server_has_room(&self, cx: &Context, flow: FlowId) -> bool {
        let Some(server) = self.pool.carrying(flow) else { return true };
        let backlog = match &server.codec {
            ServerCodec::H2(codec) => codec.backlog(flow),
            ServerCodec::Joined(joined) => joined.backlog(),
            ServerCodec::H1(_) => 0,
        };
        !cx.is_congested(server.conn) && backlog < cx.config.high_water
    }

    /// Whether the client side of `flow` can take more of its response body now.
    pub(super) fn client_has_room(&self, cx: &Context, flow: FlowId) -> bool {
        Self::has_room(&self.client, cx, flow)
    }

    /// [`client_has_room`](Self::client_has_room) where the rest of the layer is borrowed.
    pub(super) fn has_room(client: &ClientCodec, cx: &Context, flow: FlowId) -> bool {
        let backlog = match client {
            ClientCodec::H2(codec) => codec.backlog(flow),
            ClientCodec::H1(_) => 0,
        };
        !cx.is_congested(ConnId::CLIENT) && backlog < cx.config.high_water
    }
}
