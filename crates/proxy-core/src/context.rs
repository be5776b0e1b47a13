//! The state every layer shares: configuration, the connection table, the
//! command queue and the write-side accounting that drives backpressure.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::command::{Command, LogLevel};
use crate::config::Config;
use crate::flow::ClientInfo;
use crate::hook::Hook;
use crate::ids::{ConnId, FlowId, ServerAddr};
use crate::tls::session::TlsSession;
use crate::tls::TlsSetupError;
use crate::upstreams::PoolKey;

/// Why a connection is not being read. Reading resumes when no reason is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The connection that this one feeds has too much output queued.
    Congestion = 1,
    /// The layer cannot take more input now (a hook is pending, a server is not yet open).
    Layer = 2,
}

#[derive(Debug)]
struct ConnState {
    id: ConnId,
    /// Bytes sent since the driver last reported the queue drained.
    queued: usize,
    /// `Pause` bits currently applied.
    paused: u8,
    closed: bool,
    /// Record protection, when the connection speaks TLS: the session layers read and write
    /// through.
    tls: Option<Box<TlsSession>>,
    /// TLS inside TLS (a client speaking TLS to the proxy itself, then TLS inside a
    /// `CONNECT`): the session on the wire, under `tls`. Its records carry `tls`'s.
    outer: Option<Box<TlsSession>>,
    /// Its protocol limits what the peer may send (HTTP/2 flow control): never paused for
    /// congestion, since it must stay readable for the window updates that end it.
    self_limiting: bool,
    /// The TLS client session to start once it is open (see [`Context::open_tls`]).
    pending_tls: Option<Box<PendingTls>>,
}

/// What a TLS client session will be made of: made only once its connection is open, since
/// making one makes its key share, which a connection the driver hands over instead (parked,
/// or a stream on a carrier) would never use.
#[derive(Debug)]
struct PendingTls {
    server: ServerAddr,
    name: rustls::pki_types::ServerName<'static>,
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
}

impl ConnState {
    fn new(id: ConnId) -> Self {
        Self { id, queued: 0, paused: 0, closed: false, tls: None, outer: None, self_limiting: false, pending_tls: None }
    }
}

/// Shared state of one client connection's layer stack.
pub(crate) struct Context {
    pub(crate) config: Arc<Config>,
    pub(crate) client: ClientInfo,
    out: VecDeque<Command>,
    conns: Vec<ConnState>,
    next_conn: u64,
    next_flow: u64,
    /// The client connection is a stream of another connection's client (a `CONNECT` over
    /// HTTP/2), not a socket: see [`nested`](Self::nested).
    client_carried: bool,
    /// How state shared with other connections (a gateway's queue) gets this connection an
    /// [`Event::Wakeup`](crate::Event::Wakeup): see [`Connection::set_waker`](crate::Connection::set_waker).
    pub(crate) waker: Option<std::task::Waker>,
    /// [`Event::Shutdown`](crate::Event::Shutdown) came: layers keep nothing alive.
    pub(crate) shutting_down: bool,
    /// A TLS session keeps plaintext sent this turn, to seal into one record with what
    /// follows it (see [`send`](Self::send)); sealed once the turn's commands are taken.
    unsealed: bool,
}

/// A connection's state on its way from one context to another (see
/// [`Context::take_conn`]): its TLS sessions, pauses and queued bytes go with it.
pub(crate) struct MovedConn(ConnState);

impl Context {
    pub(crate) fn new(config: Arc<Config>, client: ClientInfo) -> Self {
        Self {
            config,
            client,
            out: VecDeque::new(),
            conns: vec![ConnState::new(ConnId::CLIENT)],
            next_conn: 1,
            next_flow: 1,
            client_carried: false,
            waker: None,
            shutting_down: false,
            unsealed: false,
        }
    }

    /// The context of a connection carried inside one of this connection's client streams
    /// (a `CONNECT` over HTTP/2): the same configuration and client, its own connection
    /// table, whose [`ConnId::CLIENT`] is the stream. Ids are issued from this context's
    /// counters (see [`lend_ids`](Self::lend_ids)), so that connections and flows keep one
    /// name each towards the driver and hooks.
    pub(crate) fn nested(&self) -> Context {
        let mut cx = Context::new(self.config.clone(), self.client.clone());
        cx.client_carried = true;
        cx.waker = self.waker.clone();
        cx.shutting_down = self.shutting_down;
        self.lend_ids(&mut cx);
        cx
    }

    /// Before `nested` (a context made by [`nested`](Self::nested)) runs: it issues ids from
    /// where this one stands.
    pub(crate) fn lend_ids(&self, nested: &mut Context) {
        nested.next_conn = self.next_conn;
        nested.next_flow = self.next_flow;
    }

    /// After `nested` ran: the ids it issued are taken.
    pub(crate) fn take_ids(&mut self, nested: &Context) {
        self.next_conn = self.next_conn.max(nested.next_conn);
        self.next_flow = self.next_flow.max(nested.next_flow);
    }

    /// Queue a command made by a nested context, as it is.
    pub(crate) fn push(&mut self, command: Command) {
        self.out.push_back(command);
    }

    /// Take `conn` out of this context's table, for another to [`adopt`](Self::adopt): what
    /// it queued stops counting here.
    pub(crate) fn take_conn(&mut self, conn: ConnId) -> Option<MovedConn> {
        // What it was sent here leaves from here, before the command that moves it.
        self.seal(conn);
        let index = self.conns.iter().position(|c| c.id == conn)?;
        let state = self.conns.remove(index);
        if state.queued > self.config.high_water {
            self.update_congestion();
        }
        Some(MovedConn(state))
    }

    /// Take over a connection another context gave up with [`take_conn`](Self::take_conn).
    pub(crate) fn adopt(&mut self, conn: MovedConn) {
        self.conns.push(conn.0);
        self.update_congestion();
    }

    /// Whether `conn` is one of this context's connections.
    pub(crate) fn has_conn(&self, conn: ConnId) -> bool {
        self.state(conn).is_some()
    }

    /// The next command. Once the others are taken, the turn is over: what TLS sessions
    /// kept to share a record is sealed and sent.
    pub(crate) fn poll_command(&mut self) -> Option<Command> {
        if self.out.is_empty() && self.unsealed {
            self.seal_all();
        }
        self.out.pop_front()
    }

    pub(crate) fn has_commands(&self) -> bool {
        !self.out.is_empty() || self.unsealed
    }

    /// Seal what every TLS session kept this turn, and queue the records.
    fn seal_all(&mut self) {
        self.unsealed = false;
        for index in 0..self.conns.len() {
            self.seal(self.conns[index].id);
        }
    }

    /// Seal what the TLS session of `conn` kept, and queue the records.
    fn seal(&mut self, conn: ConnId) {
        let Some(tls) = self.state_mut(conn).and_then(|state| state.tls.as_mut()) else { return };
        let records = tls.seal();
        self.send_raw(conn, records);
    }

    pub(crate) fn next_flow_id(&mut self) -> FlowId {
        let id = FlowId(self.next_flow);
        self.next_flow += 1;
        id
    }

    /// Issue an id for a new upstream connection and ask the driver to open it.
    pub(crate) fn open(&mut self, server: ServerAddr) -> ConnId {
        self.new_conn(|conn| Command::OpenConnection { conn, server })
    }

    /// Issue an id for a new upstream connection and ask the driver for it with `command`.
    fn new_conn(&mut self, command: impl FnOnce(ConnId) -> Command) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        // Room for one more only: most client connections have one server connection.
        self.conns.reserve_exact(1);
        self.conns.push(ConnState::new(conn));
        self.out.push_back(command(conn));
        // It could feed a congested connection as well as those already paused.
        self.update_congestion();
        conn
    }

    /// [`open`](Self::open), but the driver may hand over an idle connection to `key` instead
    /// ([`Command::Reuse`]), which [`adopt_parked`](Self::adopt_parked) then puts in place;
    /// with `join`, or a stream on a carrier ([`joined`](Self::joined)).
    pub(crate) fn open_reusing(&mut self, server: ServerAddr, key: PoolKey, join: bool) -> ConnId {
        self.new_conn(|conn| Command::Reuse { conn, server, key, join })
    }

    /// `conn`, asked for with [`open_reusing`](Self::open_reusing), is a stream on a carrier:
    /// no bytes of ours go on it (no TLS session, nothing queued), and it is never paused for
    /// congestion (its carrier's windows hold its body back).
    pub(crate) fn joined(&mut self, conn: ConnId) {
        let Some(state) = self.state_mut(conn) else { return };
        *state = ConnState::new(conn);
        state.self_limiting = true;
        self.update_congestion();
    }

    /// Give up `conn`, idle, for another client connection to reuse: its state leaves the
    /// table as it is, with nothing queued and no pause (it is the driver's until adopted).
    pub(crate) fn park_conn(&mut self, conn: ConnId) -> Option<MovedConn> {
        let mut moved = self.take_conn(conn)?;
        moved.0.queued = 0;
        moved.0.paused = 0;
        Some(moved)
    }

    /// `conn`, asked for with [`open_reusing`](Self::open_reusing), is a parked connection:
    /// its state replaces the one made for a new connection.
    pub(crate) fn adopt_parked(&mut self, conn: ConnId, mut moved: MovedConn) {
        self.conns.retain(|c| c.id != conn);
        moved.0.id = conn;
        self.conns.push(moved.0);
        self.update_congestion();
    }

    /// Whether we have stopped reading `conn`, for any reason.
    pub(crate) fn is_paused(&self, conn: ConnId) -> bool {
        self.state(conn).is_some_and(|c| c.paused != 0)
    }

    /// Queue `data` for `conn`. When this puts the connection's unsent output over the
    /// high-water mark, stop reading every other connection (they are what feeds it) until the
    /// driver reports it drained: see [`update_congestion`](Self::update_congestion).
    ///
    /// On a TLS connection a small piece may wait, to share a record with what the turn sends
    /// after it ([`TlsSession::queue`]): it is sealed when the turn's commands are taken, or
    /// before anything else goes out on the connection (a larger piece, a `close_notify`, the
    /// session's reply to the peer) or the connection moves to another context.
    pub(crate) fn send(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let Some(state) = self.state_mut(conn) else { return };
        if state.closed {
            return;
        }
        let data = match &mut state.tls {
            Some(tls) => {
                let records = tls.queue(&data);
                self.unsealed |= tls.has_unsealed();
                records
            }
            None => data,
        };
        self.send_raw(conn, data);
    }

    /// Queue bytes for `conn` past its (innermost) record protection: ciphertext, or a TLS
    /// alert. Under TLS inside TLS they are the outer session's plaintext.
    pub(crate) fn send_raw(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let Some(state) = self.state_mut(conn) else { return };
        let data = match &mut state.outer {
            Some(outer) => outer.send(&data),
            None => data,
        };
        self.send_wire(conn, data);
    }

    /// Queue bytes for `conn` exactly as they go on the wire.
    pub(crate) fn send_wire(&mut self, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let high_water = self.config.high_water;
        let Some(state) = self.state_mut(conn) else { return };
        if state.closed {
            return;
        }
        let was_over = state.queued > high_water;
        state.queued += data.len();
        let now_over = state.queued > high_water;
        self.out.push_back(Command::SendData { conn, data });
        if now_over && !was_over {
            self.update_congestion();
        }
    }

    /// Everything sent on `conn` is written. True if that lifts its congestion.
    pub(crate) fn handle_drained(&mut self, conn: ConnId) -> bool {
        let high_water = self.config.high_water;
        let Some(state) = self.state_mut(conn) else {
            return false;
        };
        let was_over = state.queued > high_water;
        state.queued = 0;
        if was_over {
            self.update_congestion();
        }
        was_over
    }

    /// A connection is paused for congestion while any *other* connection has more than
    /// `high_water` bytes queued, since what we read from it could only add to that queue.
    /// Each direction of a tunnel thus pauses its own sender.
    fn update_congestion(&mut self) {
        let high_water = self.config.high_water;
        let over: Vec<ConnId> =
            self.conns.iter().filter(|c| !c.closed && c.queued > high_water).map(|c| c.id).collect();
        let ids: Vec<ConnId> = self.conns.iter().filter(|c| !c.self_limiting).map(|c| c.id).collect();
        for id in ids {
            if over.iter().any(|&c| c != id) {
                self.pause(id, Pause::Congestion);
            } else {
                self.unpause(id, Pause::Congestion);
            }
        }
    }

    pub(crate) fn pause(&mut self, conn: ConnId, why: Pause) {
        let Some(state) = self.state_mut(conn) else { return };
        if state.closed {
            return;
        }
        let before = state.paused;
        state.paused |= why as u8;
        if before == 0 {
            self.out.push_back(Command::PauseReading { conn });
        }
    }

    pub(crate) fn unpause(&mut self, conn: ConnId, why: Pause) {
        let Some(state) = self.state_mut(conn) else { return };
        if state.closed || state.paused & why as u8 == 0 {
            return;
        }
        state.paused &= !(why as u8);
        if state.paused == 0 {
            self.out.push_back(Command::ResumeReading { conn });
        }
    }

    /// `conn` limits its peer by protocol (HTTP/2 windows) rather than by being paused.
    pub(crate) fn set_self_limiting(&mut self, conn: ConnId) {
        if let Some(state) = self.state_mut(conn) {
            state.self_limiting = true;
        }
        self.unpause(conn, Pause::Congestion);
    }

    /// Whether output queued for `conn` is over the high-water mark.
    pub(crate) fn is_congested(&self, conn: ConnId) -> bool {
        self.state(conn).is_some_and(|c| c.queued > self.config.high_water)
    }

    /// Apply or lift the layer's own pause on `conn`.
    pub(crate) fn set_layer_pause(&mut self, conn: ConnId, paused: bool) {
        if paused {
            self.pause(conn, Pause::Layer);
        } else {
            self.unpause(conn, Pause::Layer);
        }
    }

    /// Close `conn` (after its queued output). `half` shuts down only our writing side.
    pub(crate) fn close(&mut self, conn: ConnId, half: bool) {
        let Some(state) = self.state_mut(conn) else { return };
        if state.closed {
            return;
        }
        if let Some(tls) = &mut state.tls {
            let mut notify = tls.close();
            if let Some(outer) = &mut state.outer {
                // The inner session's close_notify, then the outer one's.
                let mut both = BytesMut::from(&outer.send(&notify)[..]);
                both.extend_from_slice(&outer.close());
                notify = both.freeze();
            }
            if !notify.is_empty() {
                self.out.push_back(Command::SendData { conn, data: notify });
            }
        }
        let Some(state) = self.state_mut(conn) else { return };
        if !half {
            state.closed = true;
            let was_over = state.queued > self.config.high_water;
            if was_over {
                self.handle_drained(conn);
            }
            // A closed connection has left the table's accounting; the driver drops it.
            self.conns.retain(|c| c.id != conn);
        }
        self.out.push_back(Command::CloseConnection { conn, half });
    }

    /// The peer of `conn` went away: forget it without sending anything more to it.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        if let Some(state) = self.state(conn) {
            if state.queued > self.config.high_water {
                self.handle_drained(conn);
            }
        }
        self.conns.retain(|c| c.id != conn);
    }

    /// Ask the driver to move `len` bytes from `from` to `to` by itself.
    pub(crate) fn forward(&mut self, from: ConnId, to: ConnId, len: u64) {
        self.out.push_back(Command::Forward { from, to, len });
    }

    pub(crate) fn hook(&mut self, flow: FlowId, hook: Hook) {
        self.out.push_back(Command::Hook { flow, hook });
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.out.push_back(Command::Log { level, message: message.into() });
    }

    /// Ask the driver for a connection to `server` that will speak TLS, as a client, with
    /// `server_name` (a DNS name or an IP address) and the ALPN protocols `alpn`. It is
    /// reported [`Opened`](crate::Event::Opened) only once the handshake has completed. With
    /// `reuse`, the driver may hand over an idle connection to that key instead (or a stream
    /// on a carrier, if joining is allowed), as for [`open_reusing`](Self::open_reusing); the
    /// session made here then goes unused.
    pub(crate) fn open_tls(
        &mut self,
        server: ServerAddr,
        server_name: &str,
        alpn: Vec<Vec<u8>>,
        reuse: Option<(PoolKey, bool)>,
    ) -> Result<ConnId, TlsSetupError> {
        let (name, sni) = self.client_name(server_name)?;
        let pending = Box::new(PendingTls { server: server.clone(), name, sni, alpn });
        let conn = match reuse {
            Some((key, join)) => self.open_reusing(server, key, join),
            None => self.open(server),
        };
        let state = self.state_mut(conn).expect("just opened");
        state.pending_tls = Some(pending);
        Ok(conn)
    }

    /// `conn`, asked for with [`open_tls`](Self::open_tls), is open: its TLS session is made
    /// now, ready to send its first flight. `None` if it was not asked for so.
    pub(crate) fn start_pending_tls(&mut self, conn: ConnId) -> Option<Result<(), TlsSetupError>> {
        let pending = self.state_mut(conn)?.pending_tls.take()?;
        let PendingTls { server, name, sni, alpn } = *pending;
        let session = match self.client_session_for(server, name, sni, alpn) {
            Ok(session) => session,
            Err(error) => return Some(Err(error)),
        };
        if let Some(state) = self.state_mut(conn) {
            state.tls = Some(Box::new(session.connecting()));
        }
        Some(Ok(()))
    }

    /// Start a TLS client handshake on the open connection `conn`.
    pub(crate) fn start_tls_client(
        &mut self,
        conn: ConnId,
        server: ServerAddr,
        server_name: &str,
        alpn: Vec<Vec<u8>>,
    ) -> Result<(), TlsSetupError> {
        let session = self.client_session(&server, server_name, alpn)?;
        self.attach_tls(conn, session);
        Ok(())
    }

    fn client_session(
        &self,
        server: &ServerAddr,
        server_name: &str,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsSession, TlsSetupError> {
        let (name, sni) = self.client_name(server_name)?;
        self.client_session_for(server.clone(), name, sni, alpn)
    }

    /// The name a TLS client session verifies `server_name` (a DNS name or an IP address)
    /// as, and the SNI it sends, if TLS is set up at all.
    fn client_name(&self, server_name: &str) -> Result<(rustls::pki_types::ServerName<'static>, Option<String>), TlsSetupError> {
        if self.config.tls.is_none() {
            return Err(TlsSetupError::NotConfigured);
        }
        let name = rustls::pki_types::ServerName::try_from(server_name.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| TlsSetupError::InvalidName(server_name.to_owned()))?
            .to_owned();
        // rustls sends SNI for a DNS name only, never for an address.
        let sni = match &name {
            rustls::pki_types::ServerName::DnsName(dns) => Some(dns.as_ref().to_owned()),
            _ => None,
        };
        Ok((name, sni))
    }

    fn client_session_for(
        &self,
        server: ServerAddr,
        name: rustls::pki_types::ServerName<'static>,
        sni: Option<String>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsSession, TlsSetupError> {
        let Some(tls) = &self.config.tls else { return Err(TlsSetupError::NotConfigured) };
        TlsSession::client(tls.client.clone(), name, alpn, server, sni).map_err(TlsSetupError::Rustls)
    }

    /// Put `session` under the open connection `conn` and send what it has ready. On a
    /// connection that speaks TLS already, the new session runs inside the one there (TLS
    /// inside TLS); a third is not nested: it replaces the innermost.
    pub(crate) fn attach_tls(&mut self, conn: ConnId, session: TlsSession) {
        let Some(state) = self.state_mut(conn) else { return };
        let mut session = Box::new(session);
        let first = session.take_outgoing();
        if state.outer.is_none() {
            state.outer = state.tls.take();
        }
        state.tls = Some(session);
        self.send_raw(conn, first);
    }

    /// The session on the wire under `conn`'s, when TLS runs inside TLS there.
    pub(crate) fn outer_tls_mut(&mut self, conn: ConnId) -> Option<&mut TlsSession> {
        self.state_mut(conn).and_then(|s| s.outer.as_deref_mut())
    }

    pub(crate) fn tls(&self, conn: ConnId) -> Option<&TlsSession> {
        self.state(conn).and_then(|s| s.tls.as_deref())
    }

    pub(crate) fn tls_mut(&mut self, conn: ConnId) -> Option<&mut TlsSession> {
        self.state_mut(conn).and_then(|s| s.tls.as_deref_mut())
    }

    /// Whether bytes on `conn` are exactly what layers send and receive (no TLS under it, and
    /// a socket rather than a stream carried by another connection), so that the driver may
    /// move them by itself.
    pub(crate) fn is_plain(&self, conn: ConnId) -> bool {
        let pending = self.state(conn).is_some_and(|c| c.pending_tls.is_some());
        self.tls(conn).is_none() && !pending && !(conn == ConnId::CLIENT && self.client_carried)
    }

    /// Close every connection (after its queued output): the layers using them are dropped.
    pub(crate) fn close_every(&mut self) {
        let conns: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for conn in conns {
            self.close(conn, false);
        }
    }

    /// The table of a carrier ([`Connection::carrier`](crate::Connection::carrier)): no client
    /// connection, only the one upstream connection it adopts.
    pub(crate) fn carrier(config: Arc<Config>, client: ClientInfo) -> Context {
        let mut cx = Context::new(config, client);
        cx.conns.clear();
        cx
    }

    /// Whether the client connection and every upstream one are closed.
    pub(crate) fn all_closed(&self) -> bool {
        self.conns.is_empty()
    }

    fn state(&self, conn: ConnId) -> Option<&ConnState> {
        self.conns.iter().find(|c| c.id == conn)
    }

    fn state_mut(&mut self, conn: ConnId) -> Option<&mut ConnState> {
        self.conns.iter_mut().find(|c| c.id == conn)
    }
}
