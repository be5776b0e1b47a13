//! The HTTP layer's side of its pool: a connection for each request (one of its own, one
//! another client connection parked, a stream on a carrier, or a new one, opened directly or
//! through an upstream proxy), the streams told when theirs is ready or has failed, and each
//! connection released, parked or closed when its flows end.

use std::time::Instant;

use super::{Reused, ServerCodec, ServerConn};
use crate::command::{Command, LogLevel};
use crate::context::Context;
use crate::gateway::Lease;
use crate::hook::{Hook, HookKind};
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layers::http::carried::joined::Joined;
use crate::layers::http::error::ProxyError;
use crate::layers::http::h2::H2Client;
use crate::layers::http::http1::Http1Client;
use crate::layers::http::stream::{Input, Versions};
use crate::layers::http::upstream_proxy::{upstream_proxy, upstream_tls, Answer, ProxyConnect};
use crate::layers::http::HttpLayer;
use crate::open_error::OpenError;
use crate::tls::TlsSetupError;
use crate::upstreams::{Parked, PoolKey};

impl HttpLayer {
    /// Take the open connection `conn` to `addr`, the server connection of the intercepted
    /// `CONNECT` this layer serves the inside of, for the requests to it; an HTTP/2 one is
    /// shared if `shared` says it may be ([`adopt_tunnel_server`](Self::adopt_tunnel_server)).
    pub(crate) fn adopt_server(&mut self, cx: &mut Context, now: Instant, conn: ConnId, addr: ServerAddr, shared: bool) {
        let tls = !cx.is_plain(conn);
        let codec = Http1Client::new(conn, &cx.config);
        // The client's SNI, if it named another server than its `CONNECT`.
        let name = session_name(cx, conn, &addr);
        // In upstream mode the tunnel goes through the upstream proxy: parked, it is found
        // under that proxy's name.
        let mut server = ServerConn { open: true, proxy: upstream_proxy(cx), name, ..ServerConn::new(conn, addr, codec, tls) };
        if speaks_h2(cx, conn, tls) {
            server.codec = ServerCodec::H2(Box::new(H2Client::new(conn, &cx.config)));
            cx.set_self_limiting(conn);
        }
        self.adopt_tunnel_server(cx, now, server, shared);
    }

    /// `server`, the server connection of the intercepted `CONNECT` this layer serves the
    /// inside of, its TLS handshake done (the client's certificate was minted from it): one
    /// just opened ([`adopt_server`](Self::adopt_server)), or one another client connection
    /// parked, in the state it was parked in (an HTTP/2 connection's streams and tables
    /// included). An HTTP/1.1 one serves this client connection's requests. So does an
    /// HTTP/2 one unless `shared`: the intercept layer says no for an HTTP/2 client, whose
    /// requests share one connection already and would gain nothing from a carrier but a hop
    /// between tasks each.
    ///
    /// Shared, it is parked ([`carry`](Self::carry)) once the settings are exchanged, and the
    /// requests join a carrier to its server as any client connection's do: it becomes one if
    /// none to its server has room, or else waits whole in the pool for the next `CONNECT` to
    /// its server to mint a certificate from. So intercepted HTTP/1.1 clients of one server
    /// share its HTTP/2 connections, as a reverse proxy's do, and a new `CONNECT` still skips
    /// the handshake upstream. (Parked before the settings are exchanged, it would receive the
    /// server's SETTINGS and acknowledgement where nothing reads them, and be thrown away.)
    pub(crate) fn adopt_tunnel_server(&mut self, cx: &mut Context, now: Instant, mut server: ServerConn, shared: bool) {
        let conn = server.conn;
        self.tls_name = server.name.clone().map(|name| (server.addr.clone(), name));
        let config = &cx.config;
        let shared = shared && config.share_upstreams && config.share_streams && config.reuse_server_connections;
        server.joinable = shared && server.is_h2() && server.proxy.is_none();
        server.settling = server.joinable;
        if server.settling {
            // The server owes its SETTINGS.
            server.deadline = Some(now + config.server_idle_timeout);
        }
        self.pool.insert(server);
        self.settle_shared(cx, now, conn);
    }

    /// The HTTP/2 connection `conn` of an intercepted `CONNECT`, settling to be shared
    /// (`adopt_tunnel_server`), has its settings exchanged: it is parked, and the requests
    /// that waited for it join a carrier. If it cannot be parked after all, or its server
    /// let its deadline pass without finishing the exchange, they go on it instead. Returns
    /// whether it stopped settling.
    pub(in crate::layers::http) fn settle_shared(&mut self, cx: &mut Context, now: Instant, conn: ConnId) -> bool {
        let Some(server) = self.pool.get_mut(conn).filter(|s| s.settling) else { return false };
        let ServerCodec::H2(codec) = &server.codec else { return false };
        let settled = codec.is_settled();
        if !settled && server.deadline.is_none_or(|d| d > now) {
            return false;
        }
        server.settling = false;
        server.deadline = None;
        if settled && self.carry(cx, now, conn) {
            return true;
        }
        let flows = self.pool.get(conn).map(|s| s.flows.clone()).unwrap_or_default();
        for flow in flows {
            self.feed(cx, now, flow, Input::ServerReady);
        }
        true
    }

    /// Requests to `addr` over TLS fail with `error`: it was tried already.
    pub(crate) fn set_failed_upstream(&mut self, addr: ServerAddr, error: OpenError) {
        self.pool.set_failed_upstream(addr, error);
    }

    /// Find a connection to `addr` to reuse (idle, or HTTP/2 with room), or open a new one,
    /// for `flow`, whose request may go with `versions`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::layers::http) fn assign_server(
        &mut self,
        cx: &mut Context,
        now: Instant,
        flow: FlowId,
        addr: ServerAddr,
        tls: bool,
        dedicated: bool,
        versions: Versions,
    ) {
        let proxy = upstream_proxy(cx);
        let versions = match versions {
            Versions::WebSocket if !cx.config.websocket.http2 => Versions::Http1,
            versions => versions,
        };
        if !dedicated && cx.config.reuse_server_connections {
            let limit = cx.config.http2_limits.max_concurrent_streams as usize;
            match self.pool.reuse(flow, (&addr, tls), proxy.as_ref(), versions, limit) {
                Some(Reused::Ready) => return self.feed(cx, now, flow, Input::ServerReady),
                Some(Reused::Waiting) => return,
                None => {}
            }
        }
        if let Some(error) = self.pool.failed_upstream(&addr, tls) {
            return self.feed(cx, now, flow, Input::ServerFailed { addr, error });
        }
        if let Some(proxy) = proxy {
            return self.open_via_proxy(cx, now, flow, (proxy, addr), tls, dedicated);
        }
        let h2 = match versions {
            Versions::Any => true,
            Versions::WebSocket => !tls && cx.config.upstream_h2c && !self.pool.refuses_websockets(&addr),
            Versions::Http1 => false,
        };
        let h2 = h2 && !dedicated && cx.config.http2;
        // Made for the name an intercepted client asked its server by, if it is this one.
        let name = self.tls_name.as_ref().filter(|(server, _)| tls && *server == addr).map(|(_, name)| name.clone());
        // A connection another client connection parked will do, if the driver has one. For
        // a `CONNECT` that will be intercepted, a TLS one: the client is most likely to speak
        // TLS, for the name it connected to, and the tunnel then skips both the TCP and the
        // TLS handshake (see `layers::tls::intercept`).
        let shared = match dedicated {
            false => cx.config.share_upstreams.then(|| PoolKey { server: addr.clone(), tls, proxy: None, name: name.clone() }),
            true => self.connect_may_reuse(cx).then(|| PoolKey { server: addr.clone(), tls: true, proxy: None, name: None }),
        };
        // A stream on a carrier will do for a request that may go over HTTP/2.
        let may_multiplex = h2 && (tls || cx.config.upstream_h2c);
        let join = may_multiplex && versions == Versions::Any && cx.config.share_streams;
        let joinable = join && shared.is_some();
        let conn = if tls {
            // Offer what the codecs speak; the server's choice decides which one it gets.
            let server_name = name.as_deref().unwrap_or(&addr.host);
            match cx.open_tls(addr.clone(), server_name, alpn_offer(h2), shared.map(|key| (key, join))) {
                Ok(conn) => conn,
                Err(error) => {
                    let error = error.open_error();
                    return self.feed(cx, now, flow, Input::ServerFailed { addr, error });
                }
            }
        } else {
            match shared {
                Some(key) => cx.open_reusing(addr.clone(), key, join),
                None => cx.open(addr.clone()),
            }
        };
        let codec = Http1Client::new(conn, &cx.config);
        // The driver bounds the TCP connect; a TLS handshake that stalls after it is ours.
        let deadline = tls.then(|| now + cx.config.server_idle_timeout);
        let server = ServerConn {
            flows: vec![flow],
            dedicated,
            deadline,
            may_multiplex,
            joinable,
            name,
            ..ServerConn::new(conn, addr, codec, tls)
        };
        self.pool.insert(server);
    }

    /// The server connection `conn` is ready for requests (or for the tunnel it was made for).
    pub(in crate::layers::http) fn server_opened(&mut self, cx: &mut Context, now: Instant, conn: ConnId) {
        let Some(server) = self.pool.get_mut(conn) else { return };
        server.open = true;
        let addr = server.addr.clone();
        let h2 = !server.dedicated && server.connect.is_none() && speaks_h2(cx, conn, server.tls) && server.may_multiplex;
        server.may_multiplex = false;
        let mut waiting = Vec::new();
        if h2 {
            server.codec = ServerCodec::H2(Box::new(H2Client::new(conn, &cx.config)));
            cx.set_self_limiting(conn);
        } else if server.flows.len() > 1 {
            // HTTP/1 after all: one request at a time. The others look elsewhere.
            waiting = server.flows.split_off(1);
        }
        let (tls, mut flows) = (server.tls, server.flows.clone());
        if h2 {
            // A WebSocket upgrade goes on only once the server has said it takes them.
            let (upgrades, requests) = flows
                .into_iter()
                .partition(|f| self.streams.get(f).is_some_and(|s| s.asks_websocket()));
            flows = requests;
            if let Some(server) = self.pool.get_mut(conn) {
                server.awaiting_settings = upgrades;
            }
        }
        if cx.config.hooks.contains(HookKind::ServerConnected) {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::ServerConnected { conn, server: addr.clone() });
        }
        if h2 && self.carry(cx, now, conn) {
            return;
        }
        for flow in flows {
            self.feed(cx, now, flow, Input::ServerReady);
        }
        for flow in waiting {
            self.assign_server(cx, now, flow, addr.clone(), tls, false, Versions::Http1);
        }
        // What goes on it now is sent when the engines are driven, after this event.
        self.settle_websockets(cx, now, conn);
    }

    /// The HTTP/2 connection `conn` just opened becomes a carrier, shared at once with every
    /// client connection, if it was opened for requests a stream would do for and this client
    /// connection has not made one for its destination yet: it is parked before any request
    /// goes on it (the driver runs a parked HTTP/2 connection as a carrier), and the requests
    /// that waited for it join it like anyone's. Returns whether it did.
    ///
    /// Once per destination: a carrier that could not be made (no pool, or it ended at once)
    /// leaves the next connection to this client connection alone.
    fn carry(&mut self, cx: &mut Context, now: Instant, conn: ConnId) -> bool {
        let Some(server) = self.pool.get_mut(conn) else { return false };
        let key = server.pool_key();
        let waiting_upgrades = !server.awaiting_settings.is_empty();
        if !server.joinable || server.dedicated || waiting_upgrades || self.carried.contains(&key) {
            return false;
        }
        let (addr, tls) = (server.addr.clone(), server.tls);
        let flows = std::mem::take(&mut server.flows);
        server.deadline = None;
        self.carried.push(key);
        self.park_or_drop(cx, conn, None);
        for flow in flows {
            let versions = self.streams.get(&flow).map_or(Versions::Any, |s| s.versions());
            self.assign_server(cx, now, flow, addr.clone(), tls, false, versions);
        }
        true
    }

    /// Once the server of the HTTP/2 connection `conn` has sent its SETTINGS, the WebSocket
    /// upgrades waiting for them go on it (RFC 8441), or, if it takes none, each to an
    /// HTTP/1.1 connection of its own. Returns whether they went on it: the connection's
    /// engine then has their requests to send.
    pub(in crate::layers::http) fn settle_websockets(&mut self, cx: &mut Context, now: Instant, conn: ConnId) -> bool {
        let Some(server) = self.pool.get_mut(conn).filter(|s| !s.awaiting_settings.is_empty()) else { return false };
        let ServerCodec::H2(codec) = &server.codec else { return false };
        let Some(enabled) = codec.extended_connect() else { return false };
        let upgrades = std::mem::take(&mut server.awaiting_settings);
        if enabled {
            for flow in upgrades {
                self.feed(cx, now, flow, Input::ServerReady);
            }
            return true;
        }
        server.flows.retain(|f| !upgrades.contains(f));
        if server.flows.is_empty() {
            server.deadline = None;
        }
        let (addr, tls) = (server.addr.clone(), server.tls);
        cx.log(LogLevel::Debug, format!("server {addr}: no WebSockets over HTTP/2 (RFC 8441): upgrading over HTTP/1.1"));
        for flow in upgrades {
            self.assign_server(cx, now, flow, addr.clone(), tls, false, Versions::Http1);
        }
        false
    }

    /// The stream `flow` is finished: return its server connection to the pool or close it.
    /// `hold`: what the flow held on its backend, let go once the connection is parked or
    /// dropped.
    pub(in crate::layers::http) fn release_server(&mut self, cx: &mut Context, now: Instant, flow: FlowId, hold: Option<Lease>) {
        let Some(server) = self.pool.carrying_mut(flow) else { return };
        server.flows.retain(|f| *f != flow);
        if server.flows.is_empty() {
            server.deadline = None;
        }
        let carried = matches!(server.codec, ServerCodec::Joined(_));
        let keep = match &mut server.codec {
            ServerCodec::H2(codec) => {
                codec.release(flow);
                !codec.is_closed()
            }
            ServerCodec::H1(codec) => codec.is_reusable(),
            ServerCodec::Joined(joined) => {
                // Its exchange is done: the stream waits a moment for this client connection's
                // next request to the server (an HTTP/2 client's next stream, mostly), which
                // then need not join a carrier anew.
                joined.release(cx);
                !cx.config.joined_stream_idle.is_zero()
            }
        };
        let keep = keep && server.open && !server.dedicated && cx.config.reuse_server_connections;
        server.reused |= keep;
        let conn = server.conn;
        if !keep {
            self.drop_server(cx, conn);
        } else if carried {
            server.deadline = Some(now + cx.config.joined_stream_idle);
        } else if server.flows.is_empty() && cx.config.share_upstreams && cx.config.gateway.as_ref().is_some_and(|g| g.limits_connections()) {
            // Backends take a limited number of connections: an idle one serves whichever
            // client connection needs it next, not only this one.
            self.park_or_drop(cx, conn, hold);
        }
    }

    /// Whether a `CONNECT` may take a parked TLS connection to its server: sharing is on, the
    /// tunnel will be intercepted, its client speaks HTTP/1.1 (an HTTP/2 client's tunnel is a
    /// stream, carried here), and nothing may ask for the client's TLS to pass through untouched
    /// (`ignore_hosts`, the `TlsClientHello` hook), which a connection that speaks TLS already
    /// could not carry.
    pub(in crate::layers::http) fn connect_may_reuse(&self, cx: &Context) -> bool {
        cx.config.share_upstreams
            && cx.config.reuse_server_connections
            && cx.config.tls.as_ref().is_some_and(|tls| tls.ignore_hosts.is_empty())
            && !cx.config.hooks.contains(HookKind::TlsClientHello)
            && self.client.h1().is_some()
    }

    /// The client connection is done with the server connection `conn`: park it for another
    /// client connection if it can serve one, else close it.
    pub(in crate::layers::http) fn park_or_drop(&mut self, cx: &mut Context, conn: ConnId, hold: Option<Lease>) {
        let established = cx.tls(conn).is_none_or(|t| t.state == crate::tls::session::TlsState::Established);
        let parkable = cx.config.share_upstreams && established && self.pool.get(conn).is_some_and(ServerConn::is_parkable);
        if !parkable {
            return self.drop_server(cx, conn);
        }
        let Some(server) = self.pool.remove(conn) else { return };
        let name = session_name(cx, conn, &server.addr);
        let Some(state) = cx.park_conn(conn) else { return };
        let parked = Box::new(ServerConn { deadline: None, name, ..server }.park(state, hold));
        cx.push(Command::Park { conn, parked });
    }

    /// The driver answered our `Reuse` with a connection another client connection parked:
    /// it takes the place of the one that would have been opened, and its flows go on it.
    pub(in crate::layers::http) fn server_adopted(&mut self, cx: &mut Context, now: Instant, conn: ConnId, parked: Parked) {
        let (mut server, state) = ServerConn::unpark(parked);
        cx.adopt_parked(conn, state);
        let Some(waiting) = self.pool.remove(conn) else {
            // Nobody waits for it any more.
            cx.close(conn, false);
            return;
        };
        server.rename(conn);
        let mut flows = waiting.flows;
        // HTTP/1: one request at a time; the others look elsewhere. HTTP/2 takes them all.
        let others = if flows.len() > 1 && !server.is_h2() { flows.split_off(1) } else { Vec::new() };
        if server.is_h2() {
            cx.set_self_limiting(conn);
        }
        let (addr, tls) = (server.addr.clone(), server.tls);
        server.flows = flows.clone();
        server.open = true;
        server.reused = true;
        // A `CONNECT`'s: the tunnel takes it whole when the flow switches.
        server.dedicated = waiting.dedicated;
        self.pool.insert(server);
        for flow in flows {
            self.feed(cx, now, flow, Input::ServerReady);
        }
        for flow in others {
            self.assign_server(cx, now, flow, addr.clone(), tls, false, Versions::Http1);
        }
    }

    /// The driver answered our `Reuse` with a stream on a carrier: the flow waiting for `conn`
    /// goes on it; others that waited for the same connection (it might have spoken HTTP/2)
    /// look again, each for a stream of its own.
    pub(in crate::layers::http) fn server_joined(&mut self, cx: &mut Context, now: Instant, conn: ConnId) {
        cx.joined(conn);
        let Some(server) = self.pool.get_mut(conn) else {
            // Nobody waits for it any more: leave at once.
            cx.close(conn, false);
            return;
        };
        server.codec = ServerCodec::Joined(Joined::new(conn));
        server.open = true;
        server.reused = true;
        server.may_multiplex = false;
        let others = if server.flows.len() > 1 { server.flows.split_off(1) } else { Vec::new() };
        let flows = server.flows.clone();
        let (addr, tls) = (server.addr.clone(), server.tls);
        if flows.is_empty() {
            return self.drop_server(cx, conn);
        }
        for flow in flows {
            self.feed(cx, now, flow, Input::ServerReady);
        }
        for flow in others {
            let versions = self.streams.get(&flow).map_or(Versions::Any, |s| s.versions());
            self.assign_server(cx, now, flow, addr.clone(), tls, false, versions);
        }
    }

    /// Close the server connection `conn` and forget it (its flows have been told, or are done).
    pub(in crate::layers::http) fn drop_server(&mut self, cx: &mut Context, conn: ConnId) {
        let Some(server) = self.pool.remove(conn) else { return };
        cx.close(conn, false);
        let own = !matches!(server.codec, ServerCodec::Joined(_));
        if server.open && own && cx.config.hooks.contains(HookKind::ServerDisconnected) {
            let flow = cx.next_flow_id();
            cx.hook(flow, Hook::ServerDisconnected { conn, server: server.addr });
        }
    }

    /// Upstream mode: a connection to the upstream `proxy` for `flow`. Plain requests go to
    /// the proxy in absolute-form; a `CONNECT` (`dedicated`) or an `https` request for `addr`
    /// gets a tunnel of the proxy's first, and TLS through it if `tls`.
    pub(in crate::layers::http) fn open_via_proxy(
        &mut self,
        cx: &mut Context,
        now: Instant,
        flow: FlowId,
        (proxy, addr): (ServerAddr, ServerAddr),
        tls: bool,
        dedicated: bool,
    ) {
        if tls && cx.config.tls.is_none() {
            let error = TlsSetupError::NotConfigured.open_error();
            return self.feed(cx, now, flow, Input::ServerFailed { addr, error });
        }
        // A connection another client connection parked will do: one in absolute-form to the
        // proxy for plain requests, or a tunnel through it to `addr` for TLS ones (and for a
        // `CONNECT` that will be intercepted, as in `assign_server`).
        let tunnel = PoolKey { server: addr.clone(), tls: true, proxy: Some(proxy.clone()), name: None };
        let shared = match (dedicated, tls) {
            (true, _) => self.connect_may_reuse(cx).then_some(tunnel),
            (false, _) if !cx.config.share_upstreams => None,
            (false, true) => Some(tunnel),
            (false, false) => Some(PoolKey { server: proxy.clone(), tls: false, proxy: Some(proxy.clone()), name: None }),
        };
        let conn = if upstream_tls(cx) {
            // TLS to the proxy itself, verified for its name like any server's.
            match cx.open_tls(proxy.clone(), &proxy.host, alpn_offer(false), shared.map(|key| (key, false))) {
                Ok(conn) => conn,
                Err(error) => {
                    let error = ProxyError::Unreachable { proxy, error: error.open_error() };
                    cx.log(LogLevel::Info, error.to_string());
                    return self.feed(cx, now, flow, Input::ProxyFailed(error));
                }
            }
        } else {
            match shared {
                Some(key) => cx.open_reusing(proxy.clone(), key, false),
                None => cx.open(proxy.clone()),
            }
        };
        let codec = Http1Client::new(conn, &cx.config);
        let server = if tls || dedicated {
            let connect = Some(ProxyConnect::new(proxy.clone(), addr.clone()));
            ServerConn { connect, ..ServerConn::new(conn, addr, codec, tls) }
        } else {
            let codec = codec.with_absolute_form();
            ServerConn { absolute: true, ..ServerConn::new(conn, proxy.clone(), codec, false) }
        };
        self.pool.insert(ServerConn { flows: vec![flow], dedicated, proxy: Some(proxy), ..server });
    }

    /// The upstream proxy answered (part of) our `CONNECT` on `conn`.
    pub(in crate::layers::http) fn proxy_answer(&mut self, cx: &mut Context, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(server) = self.pool.get_mut(conn) else { return };
        let Some(connect) = &mut server.connect else { return };
        match connect.receive(data) {
            Answer::Pending => {}
            Answer::Refused(error) => self.proxy_failed(cx, now, conn, Input::ProxyFailed(error)),
            Answer::Established { rest } if server.tls => {
                if !rest.is_empty() {
                    let error = connect.early_data();
                    return self.proxy_failed(cx, now, conn, Input::ProxyFailed(error));
                }
                let addr = server.addr.clone();
                // Offer what the codecs speak, as for a direct connection.
                let h2 = server.may_multiplex;
                match cx.start_tls_client(conn, addr.clone(), &addr.host, alpn_offer(h2)) {
                    Ok(()) => connect.start_handshake(),
                    Err(error) => {
                        let error = error.open_error();
                        self.proxy_failed(cx, now, conn, Input::ServerFailed { addr, error });
                    }
                }
            }
            Answer::Established { rest } => {
                server.rest = rest;
                server.connect = None;
                self.server_opened(cx, now, conn);
            }
        }
    }

    /// Setting up `conn` through the upstream proxy failed: close it, and fail its stream
    /// with `input`.
    pub(in crate::layers::http) fn proxy_failed(&mut self, cx: &mut Context, now: Instant, conn: ConnId, input: Input) {
        let Some(flows) = self.pool.get(conn).map(|s| s.flows.clone()) else { return };
        match &input {
            Input::ProxyFailed(error) => cx.log(LogLevel::Info, error.to_string()),
            Input::ServerFailed { addr, error } => cx.log(LogLevel::Info, format!("cannot connect to {addr}: {error}")),
            _ => {}
        }
        self.drop_server(cx, conn);
        for flow in flows {
            self.feed(cx, now, flow, input.clone());
        }
    }

    /// The tunnel through the upstream proxy that `conn` is still setting up.
    pub(in crate::layers::http) fn proxy_connect(&self, conn: ConnId) -> Option<&ProxyConnect> {
        self.pool.get(conn).and_then(|s| s.connect.as_ref())
    }
}

/// The ALPN protocols to offer a server: HTTP/2 too if the request may go over it.
pub(in crate::layers::http) fn alpn_offer(h2: bool) -> Vec<Vec<u8>> {
    if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// The name `conn`'s TLS session was made (and verified) for, where it is not `addr`'s host:
/// a connection reached by one name must not serve requests made for another.
fn session_name(cx: &Context, conn: ConnId, addr: &ServerAddr) -> Option<String> {
    cx.tls(conn).and_then(|t| t.server_name.clone()).filter(|name| *name != addr.host)
}

/// Whether the open server connection `conn` speaks HTTP/2: its TLS session chose `h2`, or it
/// is plain and configured for prior knowledge.
pub(in crate::layers::http) fn speaks_h2(cx: &Context, conn: ConnId, tls: bool) -> bool {
    if !cx.config.http2 {
        return false;
    }
    match cx.tls(conn) {
        Some(session) => session.alpn().as_deref() == Some(b"h2"),
        None => !tls && cx.config.upstream_h2c,
    }
}
