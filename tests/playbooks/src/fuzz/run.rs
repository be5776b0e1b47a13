//! The driver every fuzz target plays: it carries out the core's commands the way a careful
//! driver would, keeps every byte the core sends, and checks the core's promises after every
//! event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{
    ClientInfo, Command, Config, ConnId, Connection, Event, FlowId, HookKind, HookReply, HttpFlow, Mode, OpenError,
};

use super::strict::{self, Message, Step};
use super::MAX_CHUNK;

/// What the reference origin answers every complete request with.
pub const ORIGIN_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// One connection under test, driven the way a well-behaved driver drives it.
/// The host a target's tunnels (a `CONNECT` stream) lead to: what its server is sent is
/// opaque, not requests for the strict reader.
pub const TUNNEL_HOST: &str = "tunnel.test";

pub struct Run {
    conn: Connection,
    config: Arc<Config>,
    now: Instant,
    /// Connections that exist: the client, and those asked for with `OpenConnection`.
    known: HashSet<ConnId>,
    /// Opened successfully.
    open: HashSet<ConnId>,
    /// Asked to open, no answer yet.
    pub opening: Vec<ConnId>,
    /// Writing side closed (half or full).
    write_closed: HashSet<ConnId>,
    fully_closed: HashSet<ConnId>,
    paused: HashSet<ConnId>,
    /// The peer closed: a driver reads nothing more from it.
    eof: HashSet<ConnId>,
    /// Bytes sent since the last drain we reported.
    queued: HashMap<ConnId, usize>,
    /// Blocking hooks not answered yet, with the flow they carried.
    pub pending_hooks: Vec<(FlowId, HookKind, Option<HttpFlow>)>,
    /// Every blocking hook ever raised: none may be raised twice.
    asked: Vec<(FlowId, HookKind)>,
    /// What peers sent that the core has not read yet (it paused the connection); `None` is
    /// the peer's EOF. A driver leaves such bytes in the socket until reading resumes.
    unread: HashMap<ConnId, VecDeque<Option<Bytes>>>,
    pumping: bool,
    /// Active `Forward`s: source, destination, bytes still to move.
    forwards: Vec<(ConnId, ConnId, u64)>,
    /// Every byte the core sent to each connection, forwarded bytes included, in order.
    pub sent: HashMap<ConnId, Vec<u8>>,
    /// How much had been sent to each connection when the current event came in.
    before: HashMap<ConnId, usize>,
    /// From where on a server connection carries no HTTP written by the proxy (a tunnel).
    opaque: HashMap<ConnId, usize>,
    /// Whether what the proxy sends upstream is plaintext HTTP for the strict reader.
    pub check_upstream: bool,
    /// Whether a reference origin answers every complete request with [`ORIGIN_OK`].
    pub answer: bool,
    /// How far each server connection's bytes have been read as requests.
    read_upstream: HashMap<ConnId, usize>,
    /// Every request servers received, in the order they completed.
    pub received: Vec<Message>,
}

impl Run {
    pub fn new(config: Config) -> Self {
        let config = Arc::new(config);
        let client = ClientInfo::new(
            "127.0.0.1:40000".parse().expect("literal address"),
            "127.0.0.1:8080".parse().expect("literal address"),
        );
        Self {
            conn: Connection::new(config.clone(), client),
            config,
            now: Instant::now(),
            known: HashSet::from([ConnId::CLIENT]),
            open: HashSet::from([ConnId::CLIENT]),
            opening: Vec::new(),
            write_closed: HashSet::new(),
            fully_closed: HashSet::new(),
            paused: HashSet::new(),
            eof: HashSet::new(),
            queued: HashMap::new(),
            pending_hooks: Vec::new(),
            asked: Vec::new(),
            unread: HashMap::new(),
            pumping: false,
            forwards: Vec::new(),
            sent: HashMap::new(),
            before: HashMap::new(),
            opaque: HashMap::new(),
            check_upstream: true,
            answer: false,
            read_upstream: HashMap::new(),
            received: Vec::new(),
        }
    }

    pub fn handle(&mut self, event: Event) {
        if let Event::ConnectionClosed { conn } = event {
            self.eof.insert(conn);
            self.forwards.retain(|&(from, _, _)| from != conn);
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!(">> {event:?}");
        }
        self.before = self.sent.iter().map(|(&c, s)| (c, s.len())).collect();
        self.conn.handle(self.now, event);
        self.check_commands();
        self.pump();
    }

    /// Hand the core what peers sent while it was not reading, as far as it reads now.
    fn pump(&mut self) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        loop {
            let mut conns: Vec<ConnId> = self.unread.iter().filter(|(_, q)| !q.is_empty()).map(|(&c, _)| c).collect();
            conns.sort();
            let Some(conn) = conns.into_iter().find(|&c| self.readable(c)) else { break };
            match self.unread.get_mut(&conn).and_then(VecDeque::pop_front) {
                Some(Some(data)) => self.deliver(conn, data),
                Some(None) => self.handle(Event::ConnectionClosed { conn }),
                None => {}
            }
        }
        self.pumping = false;
    }

    /// `conn`'s peer sends `data` (`None`: closes); the core reads it when it reads `conn`.
    fn feed(&mut self, conn: ConnId, data: Option<Bytes>) {
        let queue = self.unread.entry(conn).or_default();
        // A driver never reads nothing: an empty read is the end of the stream.
        let empty = data.as_ref().is_some_and(Bytes::is_empty);
        if empty || queue.contains(&None) || self.eof.contains(&conn) || !self.known.contains(&conn) {
            return;
        }
        queue.push_back(data);
        self.pump();
    }

    fn check_commands(&mut self) {
        let bound = self.config.high_water + self.config.max_head_bytes + 4 * MAX_CHUNK + 1024;
        while let Some(cmd) = self.conn.poll_command() {
            if std::env::var_os("FUZZ_TRACE").is_some() {
                eprintln!("<< {cmd:?}");
            }
            match cmd {
                Command::SendData { conn, data } => {
                    self.check_live(conn, "SendData");
                    assert!(self.open.contains(&conn), "SendData on {conn:?} before it opened");
                    assert!(!self.write_closed.contains(&conn), "SendData on {conn:?} after it was closed");
                    assert!(
                        !self.forwards.iter().any(|&(_, to, _)| to == conn),
                        "SendData on {conn:?} while a forward into it is under way"
                    );
                    let queued = self.queued.entry(conn).or_default();
                    *queued += data.len();
                    assert!(*queued <= bound, "{queued} bytes queued for {conn:?}, bound {bound}");
                    if conn == ConnId::CLIENT && switches_protocol(&data) {
                        self.mark_tunnels();
                    }
                    self.sent.entry(conn).or_default().extend_from_slice(&data);
                }
                // Nothing here joins a carrier (`Reuse` is answered as an open).
                Command::Carry { .. } | Command::StreamOut { .. } | Command::Capacity { .. } => {}
                Command::Park { conn, .. } => {
                    // The targets keep no pool: a parked connection is one closed.
                    self.check_live(conn, "Park");
                    self.write_closed.insert(conn);
                    self.fully_closed.insert(conn);
                    self.open.remove(&conn);
                    self.opening.retain(|&c| c != conn);
                }
                Command::OpenConnection { conn, server } | Command::Reuse { conn, server, .. } => {
                    assert!(self.known.insert(conn), "{conn:?} opened twice");
                    // The mode decides where connections go, never the client (no hook here
                    // changes where a request goes).
                    match &self.config.mode {
                        Mode::Reverse { target, .. } => assert_eq!(&server, target, "reverse mode opened {server}"),
                        Mode::Upstream { proxy, .. } => assert_eq!(&server, proxy, "upstream mode opened {server}"),
                        // The client names its server (SOCKS5), or the system did (transparent).
                        Mode::Regular | Mode::Socks5 | Mode::Transparent => {}
                    }
                    if server.host == TUNNEL_HOST {
                        // A tunnel's server: what it is sent is bytes, never requests.
                        self.opaque.insert(conn, 0);
                    }
                    self.opening.push(conn);
                }
                Command::CloseConnection { conn, half } => {
                    self.check_live(conn, "CloseConnection");
                    self.write_closed.insert(conn);
                    if !half {
                        self.forwards.retain(|&(from, to, _)| from != conn && to != conn);
                        self.fully_closed.insert(conn);
                        self.open.remove(&conn);
                        self.opening.retain(|&c| c != conn);
                    }
                }
                Command::PauseReading { conn } => {
                    self.check_live(conn, "PauseReading");
                    self.paused.insert(conn);
                }
                Command::ResumeReading { conn } => {
                    self.check_live(conn, "ResumeReading");
                    self.paused.remove(&conn);
                }
                Command::Forward { from, to, len } => {
                    self.check_live(from, "Forward");
                    self.check_live(to, "Forward");
                    assert!(len > 0, "empty Forward");
                    let forward_min = self.config.forward_min.expect("Forward without forward_min");
                    assert!(len >= forward_min, "Forward of {len} bytes, below forward_min {forward_min}");
                    assert!(!self.forwards.iter().any(|&(f, _, _)| f == from), "two forwards from {from:?}");
                    self.forwards.push((from, to, len));
                }
                Command::Hook { flow, hook } => {
                    if hook.is_blocking() {
                        let kind = hook.kind();
                        assert!(!self.asked.contains(&(flow, kind)), "{kind:?} raised twice for {flow:?}");
                        self.asked.push((flow, kind));
                        assert!(
                            !self.pending_hooks.iter().any(|&(f, _, _)| f == flow),
                            "{flow:?} asked again while pending"
                        );
                        self.pending_hooks.push((flow, kind, hook.flow().cloned()));
                    }
                }
                Command::Log { .. } => {}
            }
        }
    }

    /// The client was told the connection switches protocols (`101`, or `200` to a
    /// `CONNECT`): what servers get from now on is tunnelled, not written by the proxy.
    fn mark_tunnels(&mut self) {
        for &conn in &self.known {
            if conn != ConnId::CLIENT {
                let from = self.before.get(&conn).copied().unwrap_or(0);
                self.opaque.entry(conn).or_insert(from);
            }
        }
    }

    fn check_live(&self, conn: ConnId, what: &str) {
        assert!(self.known.contains(&conn), "{what} for unknown {conn:?}");
        assert!(!self.fully_closed.contains(&conn), "{what} for {conn:?} after it was closed");
    }

    pub fn readable(&self, conn: ConnId) -> bool {
        self.open.contains(&conn)
            && !self.paused.contains(&conn)
            && !self.eof.contains(&conn)
            && !self.fully_closed.contains(&conn)
    }

    /// Data the core reads from `conn`: what an active forward takes moves by itself (reported
    /// with `Forwarded`, as a driver would), the rest goes to the core, or back to the socket
    /// if the forward's end paused `conn`.
    fn deliver(&mut self, conn: ConnId, mut data: Bytes) {
        if let Some(i) = self.forwards.iter().position(|&(from, _, _)| from == conn) {
            let (from, to, remaining) = self.forwards[i];
            let n = remaining.min(data.len() as u64);
            let moved = data.split_to(n as usize);
            if n == remaining {
                self.forwards.swap_remove(i);
            } else {
                self.forwards[i].2 -= n;
            }
            if self.fully_closed.contains(&to) {
                return;
            }
            self.sent.entry(to).or_default().extend_from_slice(&moved);
            self.handle(Event::Forwarded { from, len: moved.len() as u64, pending: 0 });
            if data.is_empty() {
                return;
            }
            if !self.readable(conn) {
                self.unread.entry(conn).or_default().push_front(Some(data));
                return;
            }
        }
        self.handle(Event::DataReceived { conn, data });
    }

    pub fn client(&mut self, data: Bytes) {
        self.feed(ConnId::CLIENT, Some(data));
    }

    pub fn client_eof(&mut self) {
        self.feed(ConnId::CLIENT, None);
    }

    /// The server at `conn` sends `data`.
    pub fn server(&mut self, conn: ConnId, data: Bytes) {
        self.feed(conn, Some(data));
    }

    /// Open server connections, in the order the core asked for them.
    pub fn servers(&self) -> Vec<ConnId> {
        let mut servers: Vec<ConnId> = self.open.iter().copied().filter(|&c| c != ConnId::CLIENT).collect();
        servers.sort();
        servers
    }

    /// Open every pending server connection, answer every hook `Continue`, let the reference
    /// origin answer, and report everything written as drained.
    pub fn serve(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            for conn in std::mem::take(&mut self.opening) {
                moved = true;
                self.open.insert(conn);
                self.handle(Event::Opened { conn });
            }
            if !self.pending_hooks.is_empty() {
                moved = true;
                let (flow, _, _) = self.pending_hooks.remove(0);
                self.handle(Event::HookReply { flow, reply: HookReply::Continue });
            }
            moved |= self.read_upstream_requests();
            moved |= self.drain_all();
            if !moved {
                return;
            }
        }
    }

    /// Read what servers got as requests with the strict reader, which must accept it; the
    /// reference origin answers each complete one. True if an answer went out.
    pub fn read_upstream_requests(&mut self) -> bool {
        if !self.check_upstream {
            return false;
        }
        let mut answered = false;
        let mut conns: Vec<ConnId> = self.sent.keys().copied().filter(|&c| c != ConnId::CLIENT).collect();
        conns.sort();
        for conn in conns {
            loop {
                let at = self.read_upstream.get(&conn).copied().unwrap_or(0);
                let end = self.opaque.get(&conn).copied().unwrap_or(usize::MAX).min(self.sent[&conn].len());
                if at >= end {
                    break;
                }
                let (message, len) = match strict::request(&self.sent[&conn][at..end]) {
                    Step::Done(message, len) => (message, len),
                    Step::More => break,
                    Step::Broken(e) => panic!(
                        "{conn:?} was sent a request no strict reader takes ({e}): {:?}",
                        String::from_utf8_lossy(&self.sent[&conn][at..end])
                    ),
                };
                self.read_upstream.insert(conn, at + len);
                let tunnel = message.method().eq_ignore_ascii_case("CONNECT")
                    || message.has_token("connection", "upgrade");
                let method = message.method().to_owned();
                self.received.push(message);
                if tunnel {
                    // What follows is the tunnel's, or the new protocol's.
                    self.opaque.entry(conn).or_insert(at + len);
                    break;
                }
                if self.answer && self.readable(conn) {
                    answered = true;
                    let head_only = &ORIGIN_OK[..ORIGIN_OK.len() - 2];
                    let response = if method.eq_ignore_ascii_case("HEAD") { head_only } else { ORIGIN_OK };
                    self.feed(conn, Some(Bytes::from_static(response)));
                }
            }
        }
        answered
    }

    /// The responses the client got to one `GET`: read strictly, an interim ones first, one
    /// final one, nothing after it (unless the protocol switched).
    pub fn check_single_response(&self) {
        let Some(sent) = self.sent.get(&ConnId::CLIENT) else { return };
        let mut at = 0;
        while at < sent.len() {
            match strict::response(&sent[at..], "GET", true) {
                Step::Done(message, len) => {
                    at += len;
                    let status = message.status();
                    if status == 101 {
                        return;
                    }
                    if status >= 200 {
                        assert!(
                            at == sent.len(),
                            "the client got more after its one response: {:?}",
                            String::from_utf8_lossy(&sent[at..])
                        );
                    }
                }
                // Cut off mid-response: the flow was aborted.
                Step::More => return,
                Step::Broken(e) => {
                    let sent = String::from_utf8_lossy(sent);
                    panic!("the client got a response no strict reader takes ({e}): {sent:?}")
                }
            }
        }
    }

    /// The first server connection still open sends `data`.
    pub fn server_data(&mut self, data: Bytes) {
        if let Some(conn) = self.servers().into_iter().find(|c| !self.eof.contains(c)) {
            self.feed(conn, Some(data));
        }
    }

    pub fn close_servers(&mut self) {
        for conn in self.servers() {
            self.feed(conn, None);
        }
    }

    /// Answer the pending hook `arg` picks with a reply `arg` picks.
    pub fn answer_hook(&mut self, arg: u8) {
        if self.pending_hooks.is_empty() {
            return;
        }
        let (flow, kind, payload) = self.pending_hooks.remove(usize::from(arg) % self.pending_hooks.len());
        let reply = match (arg / 8) % 8 {
            0..=2 => HookReply::Continue,
            3 => HookReply::Kill,
            4 => HookReply::Respond(proxy_core::Response::text(403, "no")),
            5 => HookReply::Passthrough,
            _ => match payload {
                Some(mut flow) => {
                    // Ask for the bodies to be buffered, and change a field.
                    flow.buffer_request = arg & 1 == 0;
                    flow.buffer_response = arg & 2 == 0;
                    if kind == HookKind::RequestHeaders || kind == HookKind::Request {
                        flow.request.headers.insert("x-fuzz", "1");
                    } else if let Some(response) = &mut flow.response {
                        response.headers.insert("x-fuzz", "1");
                    }
                    HookReply::Update(Box::new(flow))
                }
                None => HookReply::Continue,
            },
        };
        self.handle(Event::HookReply { flow, reply });
    }

    pub fn resolve_open(&mut self, arg: u8) {
        if self.opening.is_empty() {
            return;
        }
        let conn = self.opening.remove(usize::from(arg) % self.opening.len());
        if arg.is_multiple_of(3) {
            let error = match arg % 4 {
                0 => OpenError::Refused,
                1 => OpenError::Timeout,
                2 => OpenError::Dns("no such host".into()),
                _ => OpenError::Tls { cause: proxy_core::tls::TlsCause::ClosedInHandshake, remedy: None },
            };
            self.handle(Event::OpenFailed { conn, error });
        } else {
            self.open.insert(conn);
            self.handle(Event::Opened { conn });
        }
    }

    pub fn drain(&mut self, arg: u8) {
        let mut conns: Vec<ConnId> = self.queued.keys().copied().collect();
        if conns.is_empty() {
            return;
        }
        conns.sort();
        let conn = conns[usize::from(arg) % conns.len()];
        self.queued.remove(&conn);
        if !self.fully_closed.contains(&conn) {
            self.handle(Event::WriteDrained { conn });
        }
    }

    /// Report everything written as drained; true if anything was.
    pub fn drain_all(&mut self) -> bool {
        let mut conns: Vec<ConnId> = self.queued.keys().copied().collect();
        conns.sort();
        for &conn in &conns {
            self.queued.remove(&conn);
            if !self.fully_closed.contains(&conn) {
                self.handle(Event::WriteDrained { conn });
            }
        }
        !conns.is_empty()
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.conn.poll_timeout().is_some_and(|t| t <= self.now) {
            self.handle(Event::Wakeup);
        }
    }

    pub fn close_conn(&mut self, arg: u8) {
        let mut conns: Vec<ConnId> = self.open.iter().copied().collect();
        conns.sort();
        if let Some(&conn) = conns.get(usize::from(arg) % conns.len().max(1)) {
            self.feed(conn, None);
        }
    }

    /// Answer everything still pending and let time run out: the connection must end up
    /// closed, with no command left over, and everything servers got must read strictly.
    pub fn finish(&mut self) {
        for _ in 0..8 {
            while let Some((flow, _, _)) = self.pending_hooks.pop() {
                self.handle(Event::HookReply { flow, reply: HookReply::Continue });
            }
            for conn in std::mem::take(&mut self.opening) {
                self.handle(Event::OpenFailed { conn, error: OpenError::Refused });
            }
            let mut open: Vec<ConnId> = self.open.iter().copied().collect();
            open.sort();
            for conn in open {
                if !self.fully_closed.contains(&conn) && !self.eof.contains(&conn) {
                    self.handle(Event::ConnectionClosed { conn });
                }
            }
            self.drain_all();
            self.advance(Duration::from_secs(3600));
            if self.conn.is_closed() {
                self.read_upstream_requests();
                return;
            }
        }
        panic!("connection still open after every peer closed and every deadline passed");
    }
}

/// Whether `data` starts a response that turns the connection into a tunnel.
fn switches_protocol(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.1 101 ") || data.starts_with(b"HTTP/1.1 200 Connection established\r\n")
}
