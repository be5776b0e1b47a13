//! Bodies of the fuzz targets: plain functions over bytes that `fuzz/` runs under libFuzzer
//! and `tests/fuzz.rs` runs as bounded proptests. Each drives a [`Connection`] like a careful
//! driver would and checks the core's promises after every step, not just that it does not
//! panic:
//!
//! - every command names a connection that exists and has not been closed;
//! - nothing is sent on a connection after its writing side was closed;
//! - a blocking hook is raised at most once per flow while it is unanswered;
//! - output queued for a connection that never drains stays within the configured bounds,
//!   provided the driver honours `PauseReading`.
//!
//! `FUZZ_TRACE=1` prints every event and command of a run, for replaying a failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{ClientInfo, Command, Config, ConnId, Connection, Event, FlowId, HookReply, OpenError, Response};

/// Small limits, so that short inputs reach every limit.
pub fn fuzz_config() -> Config {
    Config {
        max_head_bytes: 2048,
        max_headers: 32,
        max_buffered_body: 4096,
        high_water: 1024,
        forward_min: Some(16),
        ..Config::default()
    }
}

/// Largest single `DataReceived` the targets feed.
const MAX_CHUNK: usize = 512;

/// Raw client bytes into a regular-mode proxy, split where `data` says. The first byte seeds
/// the split points; server connections open and answer with a fixed response.
pub fn client_bytes(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else { return };
    let mut run = Run::new(fuzz_config());
    run.handle(Event::Start);
    let mut rest = input;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = 1 + (usize::from(seed).wrapping_mul(31).wrapping_add(i * 7)) % MAX_CHUNK.min(rest.len());
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        i += 1;
        run.client(Bytes::copy_from_slice(chunk));
        run.serve_servers(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
    run.client_eof();
    run.serve_servers(b"");
    run.finish();
}

/// Raw server bytes as the response to a fixed request.
pub fn server_bytes(data: &[u8]) {
    let mut run = Run::new(fuzz_config());
    run.handle(Event::Start);
    run.client(Bytes::from_static(b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n"));
    run.serve_servers(b"");
    for chunk in data.chunks(MAX_CHUNK / 2 + 1) {
        run.server_data(Bytes::copy_from_slice(chunk));
    }
    run.close_servers();
    run.client_eof();
    run.finish();
}

/// A whole scenario decoded from `data`: client and server chunks, closes, hook replies,
/// open results, drains and wakeups, in the order the input gives.
pub fn scenario(data: &[u8]) {
    const PIECES: [&[u8]; 12] = [
        b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n",
        b"POST http://a.test/u HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
        b"POST http://a.test/c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"CONNECT a.test:443 HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"4\r\ndata\r\n",
        b"0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"\r\n",
        b"xyz",
    ];
    let mut run = Run::new(fuzz_config());
    run.handle(Event::Start);
    for pair in data.chunks(2) {
        let op = pair[0];
        let arg = pair.get(1).copied().unwrap_or(0);
        let piece = Bytes::from_static(PIECES[usize::from(arg) % PIECES.len()]);
        match op % 10 {
            0 | 1 => run.client(piece),
            2 | 3 => run.server_data(piece),
            4 => run.answer_hook(arg),
            5 => run.resolve_open(arg),
            6 => run.drain(arg),
            7 => run.advance(Duration::from_secs(u64::from(arg % 8) * 20)),
            8 => run.close_conn(arg),
            _ => run.client(Bytes::copy_from_slice(&pair[1..])),
        }
    }
    run.finish();
}

/// One connection under test, driven the way a well-behaved driver drives it.
struct Run {
    conn: Connection,
    config: Arc<Config>,
    now: Instant,
    /// Connections that exist: the client, and those asked for with `OpenConnection`.
    known: HashSet<ConnId>,
    /// Opened successfully.
    open: HashSet<ConnId>,
    /// Asked to open, no answer yet.
    opening: Vec<ConnId>,
    /// Writing side closed (half or full).
    write_closed: HashSet<ConnId>,
    fully_closed: HashSet<ConnId>,
    paused: HashSet<ConnId>,
    /// The peer closed: a driver reads nothing more from it.
    eof: HashSet<ConnId>,
    /// Bytes sent since the last drain we reported.
    queued: HashMap<ConnId, usize>,
    pending_hooks: Vec<FlowId>,
    /// What the client sent that the core has not read yet (it paused the client); `None`
    /// is its EOF. A driver leaves such bytes in the socket until reading resumes.
    unread: VecDeque<Option<Bytes>>,
    pumping: bool,
    /// Active `Forward`s: source, destination, bytes still to move.
    forwards: Vec<(ConnId, ConnId, u64)>,
}

impl Run {
    fn new(config: Config) -> Self {
        let config = Arc::new(config);
        let client = ClientInfo {
            peer: "127.0.0.1:40000".parse().expect("literal address"),
            local: "127.0.0.1:8080".parse().expect("literal address"),
        };
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
            unread: VecDeque::new(),
            pumping: false,
            forwards: Vec::new(),
        }
    }

    fn handle(&mut self, event: Event) {
        if let Event::ConnectionClosed { conn } = event {
            self.eof.insert(conn);
            self.forwards.retain(|&(from, _, _)| from != conn);
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!(">> {event:?}");
        }
        self.conn.handle(self.now, event);
        self.check_commands();
        self.pump();
    }

    /// Hand the core what the client sent while it was not reading, as far as it reads now.
    fn pump(&mut self) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        while self.readable(ConnId::CLIENT) {
            match self.unread.pop_front() {
                Some(Some(data)) => self.deliver(ConnId::CLIENT, data),
                Some(None) => self.handle(Event::ConnectionClosed { conn: ConnId::CLIENT }),
                None => break,
            }
        }
        self.pumping = false;
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
                    assert!(!self.write_closed.contains(&conn), "SendData on {conn:?} after it was closed");
                    assert!(
                        !self.forwards.iter().any(|&(_, to, _)| to == conn),
                        "SendData on {conn:?} while a forward into it is under way"
                    );
                    let queued = self.queued.entry(conn).or_default();
                    *queued += data.len();
                    assert!(*queued <= bound, "{queued} bytes queued for {conn:?}, bound {bound}");
                }
                Command::OpenConnection { conn, .. } => {
                    assert!(self.known.insert(conn), "{conn:?} opened twice");
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
                    assert!(!self.forwards.iter().any(|&(f, _, _)| f == from), "two forwards from {from:?}");
                    self.forwards.push((from, to, len));
                }
                Command::Hook { flow, hook } => {
                    if hook.is_blocking() {
                        assert!(!self.pending_hooks.contains(&flow), "{flow:?} asked again while pending");
                        self.pending_hooks.push(flow);
                    }
                }
                Command::Log { .. } => {}
            }
        }
    }

    fn check_live(&self, conn: ConnId, what: &str) {
        assert!(self.known.contains(&conn), "{what} for unknown {conn:?}");
        assert!(!self.fully_closed.contains(&conn), "{what} for {conn:?} after it was closed");
    }

    fn readable(&self, conn: ConnId) -> bool {
        self.open.contains(&conn)
            && !self.paused.contains(&conn)
            && !self.eof.contains(&conn)
            && !self.fully_closed.contains(&conn)
    }

    /// Data arriving on `conn`: what an active forward takes moves by itself (reported with
    /// `Forwarded`, as a driver would), the rest goes to the core.
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
            self.handle(Event::Forwarded { from, len: moved.len() as u64 });
            if data.is_empty() || !self.readable(conn) {
                return;
            }
        }
        self.handle(Event::DataReceived { conn, data });
    }

    fn client(&mut self, data: Bytes) {
        if self.open.contains(&ConnId::CLIENT) && !self.eof.contains(&ConnId::CLIENT) {
            self.unread.push_back(Some(data));
            self.pump();
        }
    }

    fn client_eof(&mut self) {
        if !self.unread.contains(&None) && !self.eof.contains(&ConnId::CLIENT) {
            self.unread.push_back(None);
            self.pump();
        }
    }

    fn servers(&self) -> Vec<ConnId> {
        let mut servers: Vec<ConnId> = self.open.iter().copied().filter(|&c| c != ConnId::CLIENT).collect();
        servers.sort();
        servers
    }

    /// Open every pending server connection and feed each readable one `response`.
    fn serve_servers(&mut self, response: &'static [u8]) {
        for conn in std::mem::take(&mut self.opening) {
            self.open.insert(conn);
            self.handle(Event::Opened { conn });
        }
        while let Some(&flow) = self.pending_hooks.first() {
            self.pending_hooks.remove(0);
            self.handle(Event::HookReply { flow, reply: HookReply::Continue });
        }
        if !response.is_empty() {
            for conn in self.servers() {
                if self.readable(conn) {
                    self.deliver(conn, Bytes::from_static(response));
                }
            }
        }
        self.drain_all();
    }

    fn server_data(&mut self, data: Bytes) {
        self.serve_servers(b"");
        if let Some(conn) = self.servers().into_iter().find(|&c| self.readable(c)) {
            self.deliver(conn, data);
        }
    }

    fn close_servers(&mut self) {
        for conn in self.servers() {
            self.handle(Event::ConnectionClosed { conn });
        }
    }

    fn answer_hook(&mut self, arg: u8) {
        if self.pending_hooks.is_empty() {
            return;
        }
        let flow = self.pending_hooks.remove(usize::from(arg) % self.pending_hooks.len());
        let reply = match arg % 5 {
            0 | 1 => HookReply::Continue,
            2 => HookReply::Kill,
            3 => HookReply::Respond(Response::text(403, "no")),
            _ => HookReply::Continue,
        };
        self.handle(Event::HookReply { flow, reply });
    }

    fn resolve_open(&mut self, arg: u8) {
        if self.opening.is_empty() {
            return;
        }
        let conn = self.opening.remove(usize::from(arg) % self.opening.len());
        if arg.is_multiple_of(3) {
            self.handle(Event::OpenFailed { conn, error: OpenError::Refused });
        } else {
            self.open.insert(conn);
            self.handle(Event::Opened { conn });
        }
    }

    fn drain(&mut self, arg: u8) {
        let conns: Vec<ConnId> = self.queued.keys().copied().collect();
        if conns.is_empty() {
            return;
        }
        let conn = conns[usize::from(arg) % conns.len()];
        self.queued.remove(&conn);
        if !self.fully_closed.contains(&conn) {
            self.handle(Event::WriteDrained { conn });
        }
    }

    fn drain_all(&mut self) {
        let conns: Vec<ConnId> = self.queued.keys().copied().collect();
        for conn in conns {
            self.queued.remove(&conn);
            if !self.fully_closed.contains(&conn) {
                self.handle(Event::WriteDrained { conn });
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.conn.poll_timeout().is_some_and(|t| t <= self.now) {
            self.handle(Event::Wakeup);
        }
    }

    fn close_conn(&mut self, arg: u8) {
        let mut conns: Vec<ConnId> = self.open.iter().copied().collect();
        conns.sort();
        if let Some(&conn) = conns.get(usize::from(arg) % conns.len().max(1)) {
            if self.eof.contains(&conn) {
                return;
            }
            self.handle(Event::ConnectionClosed { conn });
        }
    }

    /// Answer everything still pending and let time run out: the connection must end up
    /// closed, with no command left over.
    fn finish(&mut self) {
        for _ in 0..8 {
            while let Some(flow) = self.pending_hooks.pop() {
                self.handle(Event::HookReply { flow, reply: HookReply::Continue });
            }
            for conn in std::mem::take(&mut self.opening) {
                self.handle(Event::OpenFailed { conn, error: OpenError::Refused });
            }
            let open: Vec<ConnId> = self.open.iter().copied().collect();
            for conn in open {
                if !self.fully_closed.contains(&conn) && !self.eof.contains(&conn) {
                    self.handle(Event::ConnectionClosed { conn });
                }
            }
            self.drain_all();
            self.advance(Duration::from_secs(3600));
            if self.conn.is_closed() {
                return;
            }
        }
        panic!("connection still open after every peer closed and every deadline passed");
    }
}

/// The HTTP/1 parsers alone: a request head, then its body, then a response head and body,
/// all from `data`. What parses must serialise and parse back to the same head, and a body
/// must never yield more bytes than its framing allows.
pub fn http1_wire(data: &[u8]) {
    use bytes::BytesMut;
    use proxy_core::wire::{self, BodyEvent, BodyReader, Framing, HeadReader, Limits};

    let limits = Limits { max_head_bytes: 4096, max_headers: 64 };
    let mut buf = BytesMut::from(data);
    let mut heads = HeadReader::new();
    if let Ok(Some(head)) = heads.read_request(&mut buf, &limits) {
        let mut again = BytesMut::new();
        wire::write_request_head(&mut again, &head.method, &head.target, head.version, &head.headers);
        let reparsed = HeadReader::new().read_request(&mut again, &limits);
        assert_eq!(reparsed, Ok(Some(head.clone())), "request head does not survive a round trip");
        if let Ok(framing) = wire::request_framing(&head) {
            read_body(framing, limits, &mut buf);
        }
    }
    let mut heads = HeadReader::new();
    if let Ok(Some(head)) = heads.read_response(&mut buf, &limits) {
        if let Ok(framing) = wire::response_framing("GET", &head) {
            read_body(framing, limits, &mut buf);
        }
    }

    fn read_body(framing: Framing, limits: Limits, buf: &mut BytesMut) {
        let mut reader = BodyReader::new(framing, limits);
        let mut total = 0u64;
        while let Ok(Some(event)) = reader.read(buf) {
            match event {
                BodyEvent::Data(data) => {
                    assert!(!data.is_empty(), "empty data event");
                    total += data.len() as u64;
                    if let Framing::Length(n) = framing {
                        assert!(total <= n, "{total} body bytes for content-length {n}");
                    }
                }
                BodyEvent::End { .. } => {
                    if let Framing::Length(n) = framing {
                        assert_eq!(total, n, "body ended short of its content-length");
                    }
                    assert!(reader.is_done());
                    return;
                }
            }
        }
    }
}
