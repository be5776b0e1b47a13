//! Upstream connections of one client connection.
//!
//! Each connection's whole state is one [`ServerConn`] value, and the [`Pool`] holds them: it
//! finds a connection that fits a request (an idle one, an HTTP/2 one with room, one on its
//! way that may speak HTTP/2), takes in the ones opened, and gives up the ones that end. The
//! layer's side is `assign.rs`: it opens a new connection when the pool has none (directly
//! or through an upstream proxy), tells streams when theirs is ready or failed, and releases
//! connections when a flow ends.
//!
//! This is the seam where connections will be shared across client connections: the pool
//! talks to no stream, so it can move out of the layer whole.

mod assign;

use std::time::Instant;

use bytes::Bytes;

use super::stream::Versions;
use super::upstream_proxy::ProxyConnect;
use crate::context::MovedConn;
use crate::gateway::Lease;
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::layers::http::carried::joined::Joined;
use crate::layers::http::h2::H2Client;
use crate::layers::http::http1::Http1Client;
use crate::open_error::OpenError;
use crate::upstreams::{Parked, PoolKey, ServerState};

/// The codec of an upstream connection.
pub(crate) enum ServerCodec {
    H1(Http1Client),
    H2(Box<H2Client>),
    /// A stream on a carrier, standing for a connection of its own (`carried`).
    Joined(Joined),
}

pub(crate) struct ServerConn {
    pub(super) conn: ConnId,
    pub(super) addr: ServerAddr,
    pub(super) codec: ServerCodec,
    /// Speaks TLS (as a client) under the codec.
    pub(super) tls: bool,
    pub(super) open: bool,
    /// The streams using this connection: at most one over HTTP/1.
    pub(super) flows: Vec<FlowId>,
    /// Not open yet, and may turn out to speak HTTP/2: requests for the same server wait for
    /// it rather than opening connections of their own.
    pub(super) may_multiplex: bool,
    /// Used for a CONNECT tunnel: never pooled.
    pub(super) dedicated: bool,
    /// When the server has been silent too long while it owes a response.
    pub(super) deadline: Option<Instant>,
    /// In upstream mode, the upstream proxy this connection was opened to.
    pub(super) proxy: Option<ServerAddr>,
    /// Requests go in absolute-form to the upstream proxy, whose address `addr` is, whatever
    /// their origin. Otherwise the connection leads to `addr` itself, directly or through a
    /// tunnel of `proxy`.
    pub(super) absolute: bool,
    /// The tunnel through `proxy` being set up; `None` once it is up, or if none is needed.
    pub(super) connect: Option<ProxyConnect>,
    /// What the proxy sent after its `2xx` to our `CONNECT`, for the tunnel that takes over.
    pub(super) rest: Bytes,
    /// WebSocket upgrades on this HTTP/2 connection waiting for the server's SETTINGS to say
    /// whether it takes them (RFC 8441); they are told the connection is ready only then.
    pub(super) awaiting_settings: Vec<FlowId>,
    /// It served an exchange before this one (here, or for another client connection): its
    /// server may have closed it as idle just as a request went out.
    pub(super) reused: bool,
    /// The name its TLS session was made for, when not `addr`'s host (set when parked: see
    /// [`PoolKey::name`]).
    pub(super) name: Option<String>,
    /// Opened for requests that a stream on a carrier would do for: if it speaks HTTP/2, it
    /// may become one (`HttpLayer::carry`).
    pub(crate) joinable: bool,
    /// An intercepted `CONNECT`'s HTTP/2 connection, to be shared once the settings are
    /// exchanged (`HttpLayer::adopt_tunnel_server`): requests wait for it, then join a carrier.
    pub(super) settling: bool,
}

impl ServerConn {
    pub(super) fn new(conn: ConnId, addr: ServerAddr, codec: Http1Client, tls: bool) -> Self {
        Self {
            conn,
            addr,
            codec: ServerCodec::H1(codec),
            tls,
            open: false,
            flows: Vec::new(),
            may_multiplex: false,
            dedicated: false,
            deadline: None,
            proxy: None,
            absolute: false,
            connect: None,
            rest: Bytes::new(),
            awaiting_settings: Vec::new(),
            reused: false,
            name: None,
            joinable: false,
            settling: false,
        }
    }

    /// Whether a request for `addr` (over TLS if `tls`) may go on this connection, `proxy`
    /// being the upstream proxy in upstream mode.
    pub(super) fn fits(&self, addr: &ServerAddr, tls: bool, proxy: Option<&ServerAddr>) -> bool {
        if self.absolute {
            // The proxy takes plain requests for any origin.
            return !tls && proxy == Some(&self.addr);
        }
        self.tls == tls && self.addr == *addr
    }

    pub(super) fn h1(&self) -> Option<&Http1Client> {
        match &self.codec {
            ServerCodec::H1(codec) => Some(codec),
            _ => None,
        }
    }

    pub(super) fn h1_mut(&mut self) -> Option<&mut Http1Client> {
        match &mut self.codec {
            ServerCodec::H1(codec) => Some(codec),
            _ => None,
        }
    }

    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.codec, ServerCodec::H2(_))
    }

    /// How many streams it may have open at once: its server's limit over HTTP/2, one
    /// otherwise.
    pub(crate) fn max_streams(&self) -> usize {
        match &self.codec {
            ServerCodec::H2(codec) => codec.max_streams(),
            ServerCodec::H1(_) | ServerCodec::Joined(_) => 1,
        }
    }

    /// A stream on a carrier rather than a connection of its own.
    pub(super) fn joined_mut(&mut self) -> Option<&mut Joined> {
        match &mut self.codec {
            ServerCodec::Joined(joined) => Some(joined),
            _ => None,
        }
    }

    /// Whether its flows are streams, each told of failures on its own (HTTP/2, or a stream
    /// on a carrier), rather than one exchange at a time.
    pub(super) fn is_multiplexed(&self) -> bool {
        !matches!(self.codec, ServerCodec::H1(_))
    }

    /// The connection is now `conn` (adopted by another client connection, or by a carrier).
    pub(super) fn rename(&mut self, conn: ConnId) {
        self.conn = conn;
        match &mut self.codec {
            ServerCodec::H1(codec) => codec.rename(conn),
            ServerCodec::H2(codec) => codec.rename(conn),
            ServerCodec::Joined(_) => {}
        }
    }

    /// Whether another client connection could take this one over now: open, idle, nothing
    /// of a tunnel or an upgrade about it, and its codec between messages (HTTP/1.1) or
    /// without a stream open (HTTP/2).
    fn is_parkable(&self) -> bool {
        let idle = self.open && self.flows.is_empty() && !self.dedicated && self.connect.is_none();
        let clean = self.rest.is_empty() && self.awaiting_settings.is_empty();
        let between = match &self.codec {
            ServerCodec::H1(codec) => codec.is_reusable(),
            ServerCodec::H2(codec) => codec.is_idle(),
            ServerCodec::Joined(_) => false,
        };
        idle && clean && between
    }

    /// What a request must match to reuse this connection.
    pub(crate) fn pool_key(&self) -> PoolKey {
        PoolKey { server: self.addr.clone(), tls: self.tls, proxy: self.proxy.clone(), name: self.name.clone() }
    }

    /// It, parked for another client connection, with `state`, the context's state of its
    /// connection, and `hold`, what its last flow held on its backend.
    pub(crate) fn park(self, state: MovedConn, hold: Option<Lease>) -> Parked {
        let (key, h2, joinable, max_streams) = (self.pool_key(), self.is_h2(), self.joinable, self.max_streams());
        Parked::new(key, h2, joinable, max_streams, hold, ServerState::new((self, state)))
    }

    /// A parked connection taken up again: its codec, and the context's state of its
    /// connection.
    pub(crate) fn unpark(parked: Parked) -> (ServerConn, MovedConn) {
        parked.into_state().open()
    }

    /// It, handed on whole with the tunnel of the `CONNECT` that took it from the pool: see
    /// [`Handover::pooled`](crate::layer::Handover).
    pub(crate) fn hand_on(self) -> ServerState {
        ServerState::new(self)
    }

    /// One handed on with a tunnel ([`hand_on`](Self::hand_on)), taken up again.
    pub(crate) fn taken_on(state: ServerState) -> ServerConn {
        state.open()
    }

    /// What the server (or the upstream proxy, after its `2xx` to our `CONNECT`) sent past
    /// the exchange that switched protocols, for the layer that takes the connection over.
    pub(super) fn take_rest(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.rest);
        match self.h1_mut() {
            Some(codec) if rest.is_empty() => codec.take_rest(),
            _ => rest,
        }
    }

    /// The one flow of an HTTP/1 connection.
    pub(super) fn flow(&self) -> Option<FlowId> {
        self.flows.first().copied()
    }

    /// Whether the connection may carry a request that may go with `versions`, as far as the
    /// version it speaks goes.
    pub(super) fn speaks(&self, versions: Versions) -> bool {
        match (&self.codec, versions) {
            (ServerCodec::H1(_), _) | (ServerCodec::H2(_), Versions::Any) => true,
            (ServerCodec::H2(_), Versions::Http1) => false,
            (ServerCodec::H2(codec), Versions::WebSocket) => codec.extended_connect() == Some(true),
            (ServerCodec::Joined(_), versions) => versions == Versions::Any,
        }
    }

    /// Whether the connection may take another request now (it is idle, or multiplexes).
    pub(super) fn has_room(&self) -> bool {
        match &self.codec {
            ServerCodec::H1(codec) => self.flows.is_empty() && codec.is_reusable(),
            ServerCodec::H2(codec) => codec.has_room(),
            // One exchange at a time, the next once the last is over.
            ServerCodec::Joined(joined) => self.flows.is_empty() && joined.is_idle(),
        }
    }

    /// The server sent something: a response it owes may take another idle period.
    pub(super) fn heard_from(&mut self, now: Instant, timeout: std::time::Duration) {
        if self.deadline.is_some() {
            self.deadline = Some(now + timeout);
        }
    }
}

/// The upstream connections of one client connection, each one whole [`ServerConn`] value,
/// and what the pool remembers about upstreams (one that failed already). The layer asks it
/// for a connection that fits a request, adds the ones it opens, and takes out the ones that
/// end; nothing here talks to streams.
#[derive(Default)]
pub(crate) struct Pool {
    servers: Vec<ServerConn>,
    /// An upstream that already failed for this client connection (its TLS handshake, when
    /// we tried it before the client's): requests for it fail the same way without retrying.
    failed_upstream: Option<(ServerAddr, OpenError)>,
}

/// How a flow was put on a connection the pool already had.
pub(super) enum Reused {
    /// An open connection with room: the request may go now.
    Ready,
    /// A connection on its way that may speak HTTP/2: the request waits for it.
    Waiting,
}

impl Pool {
    pub(super) fn get(&self, conn: ConnId) -> Option<&ServerConn> {
        self.servers.iter().find(|s| s.conn == conn)
    }

    pub(super) fn get_mut(&mut self, conn: ConnId) -> Option<&mut ServerConn> {
        self.servers.iter_mut().find(|s| s.conn == conn)
    }

    /// The connection carrying `flow`.
    pub(super) fn carrying(&self, flow: FlowId) -> Option<&ServerConn> {
        self.servers.iter().find(|s| s.flows.contains(&flow))
    }

    pub(super) fn carrying_mut(&mut self, flow: FlowId) -> Option<&mut ServerConn> {
        self.servers.iter_mut().find(|s| s.flows.contains(&flow))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &ServerConn> {
        self.servers.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut ServerConn> {
        self.servers.iter_mut()
    }

    pub(super) fn conns(&self) -> Vec<ConnId> {
        self.servers.iter().map(|s| s.conn).collect()
    }

    pub(super) fn insert(&mut self, server: ServerConn) {
        // Room for one more only: a Vec's first growth makes room for four, and a client
        // connection mostly has one server connection (an idle one held 1.9 KB for it).
        self.servers.reserve_exact(1);
        self.servers.push(server);
    }

    pub(super) fn remove(&mut self, conn: ConnId) -> Option<ServerConn> {
        let i = self.servers.iter().position(|s| s.conn == conn)?;
        Some(self.servers.remove(i))
    }

    /// Put `flow` on a connection to `addr` (over TLS if `tls`, through `proxy` in upstream
    /// mode) that can take it: an open one with room that speaks one of `versions`, or, if
    /// the request may go over HTTP/2, one on its way that may speak it and carries fewer than
    /// `limit` flows.
    pub(super) fn reuse(
        &mut self,
        flow: FlowId,
        (addr, tls): (&ServerAddr, bool),
        proxy: Option<&ServerAddr>,
        versions: Versions,
        limit: usize,
    ) -> Option<Reused> {
        let fits = |s: &ServerConn| s.fits(addr, tls, proxy) && !s.dedicated;
        let ready = self.servers.iter_mut().find(|s| fits(s) && s.open && !s.settling && s.has_room() && s.speaks(versions));
        if let Some(server) = ready {
            server.flows.push(flow);
            return Some(Reused::Ready);
        }
        // Wait for it, as a browser would, rather than open one per request.
        let opening = self.servers.iter_mut().find(|s| fits(s) && (s.may_multiplex || s.settling) && s.flows.len() < limit);
        let server = opening.filter(|_| versions != Versions::Http1)?;
        server.flows.push(flow);
        Some(Reused::Waiting)
    }

    /// Whether an open HTTP/2 connection to `addr` has said its server takes no WebSockets as
    /// streams.
    pub(super) fn refuses_websockets(&self, addr: &ServerAddr) -> bool {
        let refuses = |s: &ServerConn| match &s.codec {
            ServerCodec::H2(codec) => codec.extended_connect() == Some(false),
            ServerCodec::H1(_) | ServerCodec::Joined(_) => false,
        };
        self.servers.iter().any(|s| s.addr == *addr && refuses(s))
    }

    /// How requests to `addr` fail without trying, if it failed already.
    pub(super) fn failed_upstream(&self, addr: &ServerAddr, tls: bool) -> Option<OpenError> {
        let (failed, error) = self.failed_upstream.as_ref()?;
        (tls && failed == addr).then(|| error.clone())
    }

    /// Requests to `addr` over TLS fail with `error`: it was tried already.
    pub(super) fn set_failed_upstream(&mut self, addr: ServerAddr, error: OpenError) {
        self.failed_upstream = Some((addr, error));
    }

    /// The address of `conn`'s server, for a log line.
    pub(super) fn describe(&self, conn: ConnId) -> String {
        self.get(conn).map_or_else(|| "?".into(), |s| s.addr.to_string())
    }
}
