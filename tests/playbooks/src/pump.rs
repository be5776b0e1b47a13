//! The driver of scenarios whose bytes cannot be scripted: [`Pump`] connects the core to real
//! peers in memory (a rustls client or origin, an HTTP/2 endpoint, an upstream proxy), carries
//! every `SendData` to the right one, feeds what they write back to the core, opens the
//! connections the core asks for, and answers hooks with a policy of the test's. The test then
//! asserts on plaintext, hooks and logs. Ciphertext cannot be written out by hand, so TLS
//! scenarios are written this way rather than as a [`Playbook`](crate::Playbook). It is
//! repeatable, though: on the [`crypto`](crate::crypto) provider a scenario puts the same
//! bytes on the wire every run, and [`Pump::recording`] keeps them for a test to compare.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::upstreams::{Parked, PoolKey};
use proxy_core::{
    Carried, ClientInfo, Command, Config, ConnId, Connection, Event, FlowId, Hook, HookKind, HookReply, ServerAddr, StreamTag,
};

use crate::h2::H2Peer;

/// One end the core talks to.
pub enum Peer {
    Plain { received: Vec<u8> },
    Tls { tls: Box<rustls::Connection>, received: Vec<u8>, error: Option<String> },
    /// An upstream proxy: it reads one request head (`head`), answers `answer` in plaintext,
    /// and from then on carries the tunnel to `origin`, which it stands for.
    Proxy { head: Vec<u8>, answer: Vec<u8>, tunnel: bool, origin: Box<Peer> },
    /// An HTTP/2 endpoint over plain TCP (prior knowledge).
    H2(Box<H2Peer>),
    /// TLS inside TLS: `inner` (itself TLS) speaks through the `outer` session.
    Nested { outer: Box<rustls::Connection>, inner: Box<Peer> },
    /// An HTTP/2 client whose `CONNECT` stream `stream` carries `inner`'s bytes (a tunnel
    /// over HTTP/2); `seen` is how much of the stream's data `inner` has been given.
    H2Tunnel { h2: Box<H2Peer>, stream: u64, seen: usize, inner: Box<Peer> },
}

impl Peer {
    pub fn tls(conn: impl Into<rustls::Connection>) -> Self {
        Self::Tls { tls: Box::new(conn.into()), received: Vec::new(), error: None }
    }

    /// An upstream proxy that answers a `CONNECT` with `answer` and then tunnels to `origin`.
    pub fn proxy(answer: &[u8], origin: Peer) -> Self {
        Self::Proxy { head: Vec::new(), answer: answer.to_vec(), tunnel: false, origin: Box::new(origin) }
    }

    /// Plaintext this end has received (for a proxy: its origin, through the tunnel).
    pub fn received(&self) -> &[u8] {
        match self {
            Self::Plain { received } | Self::Tls { received, .. } => received,
            Self::Proxy { origin, .. } => origin.received(),
            Self::Nested { inner, .. } | Self::H2Tunnel { inner, .. } => inner.received(),
            Self::H2(_) => &[],
        }
    }

    /// The HTTP/2 endpoint this is (or speaks through).
    pub fn h2(&mut self) -> &mut H2Peer {
        match self {
            Self::H2(peer) | Self::H2Tunnel { h2: peer, .. } => peer,
            Self::Nested { inner, .. } => inner.h2(),
            _ => panic!("not an HTTP/2 peer"),
        }
    }

    /// The HTTP/2 endpoint this is (or speaks through), if any.
    pub fn as_h2(&self) -> Option<&H2Peer> {
        match self {
            Self::H2(peer) | Self::H2Tunnel { h2: peer, .. } => Some(peer),
            Self::Nested { inner, .. } => inner.as_h2(),
            Self::Plain { .. } | Self::Tls { .. } | Self::Proxy { .. } => None,
        }
    }

    /// The request head a proxy received (`None` for other ends).
    pub fn proxy_request(&self) -> Option<&[u8]> {
        match self {
            Self::Proxy { head, .. } => Some(head),
            Self::Plain { .. } | Self::Tls { .. } | Self::H2(_) | Self::Nested { .. } | Self::H2Tunnel { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Tls { error, .. } => error.as_deref(),
            Self::Proxy { origin, .. } => origin.error(),
            Self::Nested { inner, .. } | Self::H2Tunnel { inner, .. } => inner.error(),
            Self::Plain { .. } | Self::H2(_) => None,
        }
    }

    pub fn rustls(&self) -> Option<&rustls::Connection> {
        match self {
            Self::Tls { tls, .. } => Some(tls),
            Self::Proxy { origin, .. } => origin.rustls(),
            Self::Nested { inner, .. } | Self::H2Tunnel { inner, .. } => inner.rustls(),
            Self::Plain { .. } | Self::H2(_) => None,
        }
    }

    /// Take in bytes from the core.
    pub fn deliver(&mut self, data: &[u8]) {
        match self {
            Self::Plain { received } => received.extend_from_slice(data),
            Self::H2(peer) => peer.deliver(data),
            Self::H2Tunnel { h2, stream, seen, inner } => {
                h2.deliver(data);
                let body = h2.body(*stream);
                let new = body[*seen..].to_vec();
                *seen = body.len();
                if !new.is_empty() {
                    inner.deliver(&new);
                }
            }
            Self::Proxy { origin, tunnel: true, .. } => origin.deliver(data),
            Self::Proxy { head, tunnel, origin, .. } => {
                head.extend_from_slice(data);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let rest = head.split_off(end + 4);
                    *tunnel = true;
                    origin.deliver(&rest);
                }
            }
            Self::Nested { outer, inner } => {
                let mut plaintext = Vec::new();
                let mut input = data;
                while !input.is_empty() {
                    if outer.read_tls(&mut input).is_err() || outer.process_new_packets().is_err() {
                        break;
                    }
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = outer.reader().read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        plaintext.extend_from_slice(&buf[..n]);
                    }
                }
                inner.deliver(&plaintext);
            }
            Self::Tls { tls, received, error } => {
                let mut input = data;
                while !input.is_empty() && error.is_none() {
                    if tls.read_tls(&mut input).is_err() {
                        break;
                    }
                    if let Err(e) = tls.process_new_packets() {
                        *error = Some(e.to_string());
                    }
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = tls.reader().read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        received.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }

    /// Bytes this end wants to send to the core: `plaintext` (encrypted if TLS) and handshake
    /// records.
    fn outgoing(&mut self, plaintext: &[u8]) -> Vec<u8> {
        match self {
            Self::Plain { .. } => plaintext.to_vec(),
            Self::H2(peer) => peer.outgoing(),
            Self::H2Tunnel { h2, stream, inner, .. } => {
                let bytes = inner.outgoing(plaintext);
                if !bytes.is_empty() {
                    h2.send(*stream, &bytes);
                }
                h2.outgoing()
            }
            Self::Proxy { tunnel: false, .. } => Vec::new(),
            Self::Proxy { answer, origin, .. } => {
                let mut out = std::mem::take(answer);
                out.extend(origin.outgoing(plaintext));
                out
            }
            Self::Nested { outer, inner } => {
                let records = inner.outgoing(plaintext);
                if !records.is_empty() {
                    outer.writer().write_all(&records).expect("buffered");
                }
                let mut out = Vec::new();
                while outer.wants_write() {
                    if outer.write_tls(&mut out).unwrap_or(0) == 0 {
                        break;
                    }
                }
                out
            }
            Self::Tls { tls, .. } => {
                if !plaintext.is_empty() {
                    tls.writer().write_all(plaintext).expect("buffered");
                }
                let mut out = Vec::new();
                while tls.wants_write() {
                    if tls.write_tls(&mut out).unwrap_or(0) == 0 {
                        break;
                    }
                }
                out
            }
        }
    }
}

/// A waker that raises a flag.
#[derive(Default)]
struct Woken(std::sync::atomic::AtomicBool);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How upstream connections get answered: `None` refuses the connection.
pub type Origins = Box<dyn FnMut(&ServerAddr) -> Option<Peer>>;

/// The driver of a TLS scenario.
pub struct Pump {
    pub core: Connection,
    pub client: Peer,
    pub servers: BTreeMap<ConnId, Peer>,
    pub addrs: BTreeMap<ConnId, ServerAddr>,
    pub closed: Vec<ConnId>,
    pub hooks: Vec<Hook>,
    pub logs: Vec<String>,
    origins: Origins,
    reply: Box<dyn FnMut(&Hook) -> HookReply>,
    hold: Box<dyn FnMut(&Hook) -> bool>,
    /// Blocking hooks held for the test to answer with [`Pump::answer`].
    pub held: Vec<(FlowId, HookKind)>,
    /// Connections the core parked, with their peers: what a later `Reuse` of their key gets
    /// (move them to another pump to play a second client connection).
    pub pool: Vec<(Box<proxy_core::upstreams::Parked>, Peer)>,
    /// Connections the core parked, in order.
    pub parked: Vec<ConnId>,
    queue: VecDeque<Event>,
    now: Instant,
    /// Set when the core's waker is woken (a gateway granted a queued request a backend):
    /// the next [`run`](Self::run) feeds `Wakeup`, as the driver does.
    woken: Arc<Woken>,
    /// What crossed the core's boundary, if [`recording`](Self::recording).
    transcript: Option<Vec<String>>,
    /// A carrier this client connection may join ([`with_carrier`](Self::with_carrier)),
    /// the streams it has on it, and where the carrier's messages arrive.
    carrier: Option<SharedCarrier>,
    joined: BTreeMap<ConnId, (StreamTag, bool)>,
    inbox: Inbox,
    /// Connections the core has asked not to read (a test sends only while its client is
    /// not in here, to see backpressure).
    pub paused: std::collections::BTreeSet<ConnId>,
    /// The client takes what it is sent but its socket never reports drained (a client that
    /// reads nothing, seen from the core).
    pub client_stalled: bool,
}

/// Events another party queues for a pump (a carrier's messages for its streams).
pub type Inbox = Rc<RefCell<VecDeque<Event>>>;

/// A carrier several pumps share.
pub type SharedCarrier = Rc<RefCell<CarrierPump>>;

/// The driver of a carrier ([`Connection::carrier`]): its core, the server it speaks to, and
/// the pumps whose streams it carries. A pump that joins it hands its messages over at once;
/// what the carrier sends a stream waits in that pump's inbox for its next run.
pub struct CarrierPump {
    pub core: Connection,
    pub conn: ConnId,
    pub server: Peer,
    pub key: PoolKey,
    /// How many streams the registry says it takes, and whether it is closed, as the
    /// carrier last said: a test may change them to play a registry that has not heard yet
    /// (they are brought up to date after the next message).
    pub capacity: usize,
    pub closed: bool,
    /// What the carrier said.
    reported: (usize, bool),
    /// Streams joined and not yet gone that carry an exchange (as the driver counts them: not
    /// while they wait between exchanges).
    pub carrying: usize,
    pub logs: Vec<String>,
    /// Hooks the carrier raised (its own connection's: a failed TLS session, say); blocking
    /// ones are answered `Continue`.
    pub hooks: Vec<Hook>,
    routes: BTreeMap<StreamTag, (ConnId, Inbox)>,
    next: u64,
    queue: VecDeque<Event>,
    now: Instant,
}

impl CarrierPump {
    /// Run `parked` (with its server `peer`) as a carrier that closes after `idle` without
    /// streams.
    pub fn new(config: Config, parked: Box<Parked>, peer: Peer, idle: Duration, now: Instant) -> SharedCarrier {
        let key = parked.key();
        let capacity = parked.max_streams();
        let (core, conn) = Connection::carrier(Arc::new(config), parked, idle).unwrap_or_else(|_| panic!("not HTTP/2"));
        let mut carrier = Self {
            core,
            conn,
            server: peer,
            key,
            capacity,
            carrying: 0,
            closed: false,
            reported: (capacity, false),
            logs: Vec::new(),
            hooks: Vec::new(),
            routes: BTreeMap::new(),
            next: 0,
            queue: VecDeque::from([Event::Start]),
            now,
        };
        carrier.run();
        Rc::new(RefCell::new(carrier))
    }

    pub fn server_h2(&mut self) -> &mut H2Peer {
        self.server.h2()
    }

    /// The server sends `data` (for an HTTP/2 peer, whatever it has to say as well).
    pub fn server_sends(&mut self, data: &[u8]) {
        let bytes = self.server.outgoing(data);
        self.queue.push_back(Event::DataReceived { conn: self.conn, data: bytes.into() });
        self.run();
    }

    /// Bytes reach the carrier as they are, past the server's TLS (a broken server, or one
    /// in between).
    pub fn server_sends_raw(&mut self, data: &[u8]) {
        self.queue.push_back(Event::DataReceived { conn: self.conn, data: Bytes::copy_from_slice(data) });
        self.run();
    }

    /// The server closes the connection.
    pub fn server_closes(&mut self) {
        self.queue.push_back(Event::ConnectionClosed { conn: self.conn });
        self.run();
    }

    /// Let `by` pass, waking the carrier if its deadline came.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.core.poll_timeout().is_some_and(|at| at <= self.now) {
            self.queue.push_back(Event::Wakeup);
        }
        self.run();
    }

    /// Whether a pump may join: open, with room.
    fn has_room(&self, key: &PoolKey) -> bool {
        !self.closed && *key == self.key && self.carrying < self.capacity
    }

    fn attach(&mut self, conn: ConnId, inbox: Inbox) -> StreamTag {
        let tag = StreamTag(self.next);
        self.next += 1;
        self.carrying += 1;
        self.routes.insert(tag, (conn, inbox));
        tag
    }

    fn deliver(&mut self, stream: StreamTag, message: Carried) {
        self.queue.push_back(Event::Streams { messages: vec![(stream, Some(message))] });
        self.run();
        (self.capacity, self.closed) = self.reported;
    }

    fn gone(&mut self, stream: StreamTag, busy: bool) {
        self.carrying -= usize::from(busy);
        self.queue.push_back(Event::Streams { messages: vec![(stream, None)] });
        self.run();
    }

    /// Feed events and carry out commands until nothing moves. Bounded.
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            if let Some(event) = self.queue.pop_front() {
                self.core.handle(self.now, event);
            }
            let mut moved = false;
            while let Some(command) = self.core.poll_command() {
                moved = true;
                match command {
                    Command::SendData { data, .. } => {
                        self.server.deliver(&data);
                        let reply = self.server.outgoing(b"");
                        if !reply.is_empty() {
                            self.queue.push_back(Event::DataReceived { conn: self.conn, data: Bytes::from(reply) });
                        }
                        self.queue.push_back(Event::WriteDrained { conn: self.conn });
                    }
                    Command::StreamOut { stream, message } => {
                        // What arrives before the client's pump looks is handed over as one
                        // event, as the driver does.
                        let (conn, inbox) = self.routes.get(&stream).expect("a stream the carrier was told of");
                        let mut inbox = inbox.borrow_mut();
                        match inbox.back_mut() {
                            Some(Event::Carried { messages }) => messages.push((*conn, message)),
                            _ => inbox.push_back(Event::Carried { messages: vec![(*conn, message)] }),
                        }
                    }
                    Command::Capacity { streams } => {
                        self.capacity = streams;
                        self.reported.0 = streams;
                    }
                    Command::CloseConnection { .. } => {
                        self.closed = true;
                        self.reported.1 = true;
                    }
                    Command::Log { message, .. } => self.logs.push(message),
                    Command::Hook { flow, hook } => {
                        if hook.is_blocking() {
                            self.queue.push_back(Event::HookReply { flow, reply: HookReply::Continue });
                        }
                        self.hooks.push(hook);
                    }
                    Command::PauseReading { .. } | Command::ResumeReading { .. } => {}
                    other => panic!("a carrier asked for {other:?}"),
                }
            }
            if !moved && self.queue.is_empty() {
                return;
            }
        }
        panic!("the carrier did not settle");
    }
}

impl Pump {
    pub fn new(config: Config, client: Peer, origins: Origins) -> Self {
        let info = ClientInfo::new("127.0.0.1:50000".parse().unwrap(), "127.0.0.1:8080".parse().unwrap());
        let mut pump = Self {
            core: Connection::new(Arc::new(config), info),
            client,
            servers: BTreeMap::new(),
            addrs: BTreeMap::new(),
            closed: Vec::new(),
            hooks: Vec::new(),
            logs: Vec::new(),
            origins,
            reply: Box::new(|_| HookReply::Continue),
            hold: Box::new(|_| false),
            held: Vec::new(),
            pool: Vec::new(),
            parked: Vec::new(),
            queue: VecDeque::new(),
            now: Instant::now(),
            woken: Arc::new(Woken::default()),
            transcript: None,
            carrier: None,
            joined: BTreeMap::new(),
            inbox: Inbox::default(),
            paused: Default::default(),
            client_stalled: false,
        };
        pump.core.set_waker(std::task::Waker::from(pump.woken.clone()));
        pump.queue.push_back(Event::Start);
        pump
    }

    /// Requests that may go over HTTP/2 join `carrier` while it has room, as the driver's
    /// `Reuse` with `join` does.
    pub fn with_carrier(mut self, carrier: SharedCarrier) -> Self {
        self.set_carrier(carrier);
        self
    }

    /// [`with_carrier`](Self::with_carrier) for a pump already running, with no stream on the
    /// carrier it had (its streams stay on the one they joined).
    pub fn set_carrier(&mut self, carrier: SharedCarrier) {
        assert!(self.joined.is_empty() || self.carrier.is_none(), "streams joined to another carrier");
        self.carrier = Some(carrier);
    }

    /// How many streams this client connection has on its carrier.
    pub fn joined(&self) -> usize {
        self.joined.len()
    }

    /// Whether events wait for the next [`run`](Self::run): a carrier's messages for this
    /// pump's streams, queued while another pump ran it.
    pub fn pending(&self) -> bool {
        !self.queue.is_empty() || !self.inbox.borrow().is_empty()
    }

    /// Start the clock at `now` rather than at `Instant::now()`, so that two runs hand the core
    /// the same times (flows carry them).
    pub fn at(mut self, now: Instant) -> Self {
        self.now = now;
        self
    }

    /// Keep a [`transcript`](Self::transcript).
    pub fn recording(mut self) -> Self {
        self.transcript = Some(Vec::new());
        self
    }

    /// Every event the core handled (`>>`) and every command it emitted (`<<`), in order, as
    /// `Debug` shows them: bytes in full, so the peers' records and the core's ciphertext are
    /// all here. Empty unless [`recording`](Self::recording).
    pub fn transcript(&self) -> &[String] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// Answer blocking hooks with `reply` (default: `Continue`).
    pub fn replies(mut self, reply: impl FnMut(&Hook) -> HookReply + 'static) -> Self {
        self.reply = Box::new(reply);
        self
    }

    /// Hold the blocking hooks `hold` picks, for [`answer`](Self::answer), instead of replying.
    pub fn holding(mut self, hold: impl FnMut(&Hook) -> bool + 'static) -> Self {
        self.hold = Box::new(hold);
        self
    }

    /// Answer the held hook of `flow`.
    pub fn answer(&mut self, flow: FlowId, reply: HookReply) -> &mut Self {
        let at = self.held.iter().position(|(f, _)| *f == flow).expect("a held hook");
        self.held.remove(at);
        self.queue.push_back(Event::HookReply { flow, reply });
        self.run()
    }

    /// The HTTP/2 client.
    pub fn client_h2(&mut self) -> &mut H2Peer {
        self.client.h2()
    }

    /// The HTTP/2 server of `conn`.
    pub fn server_h2(&mut self, conn: ConnId) -> &mut H2Peer {
        self.servers.get_mut(&conn).expect("known server").h2()
    }

    /// The client sends `data`: raw before any TLS, encrypted once its handshake began.
    pub fn client_sends(&mut self, data: &[u8]) -> &mut Self {
        let bytes = self.client.outgoing(data);
        self.queue.push_back(Event::DataReceived { conn: ConnId::CLIENT, data: bytes.into() });
        self.run()
    }

    /// Switch the client to TLS (after the proxy's `200` to its `CONNECT`) and start its
    /// handshake.
    pub fn client_starts_tls(&mut self, tls: rustls::ClientConnection) -> &mut Self {
        self.client = Peer::tls(tls);
        self.client_sends(b"")
    }

    /// Start TLS inside the client's TLS (a secure web proxy's client, after the `200` to its
    /// `CONNECT`): its records travel in the session it has.
    pub fn client_nests_tls(&mut self, tls: rustls::ClientConnection) -> &mut Self {
        let Peer::Tls { tls: outer, .. } = std::mem::replace(&mut self.client, Peer::Plain { received: Vec::new() }) else {
            panic!("the client speaks no TLS to nest in");
        };
        self.client = Peer::Nested { outer, inner: Box::new(Peer::tls(tls)) };
        self.client_sends(b"")
    }

    /// Speak HTTP/2 inside the client's TLS session (a secure web proxy's client that
    /// negotiated `h2`), and send its preface.
    pub fn client_speaks_h2(&mut self) -> &mut Self {
        let Peer::Tls { tls: outer, .. } = std::mem::replace(&mut self.client, Peer::Plain { received: Vec::new() }) else {
            panic!("the client speaks no TLS to speak HTTP/2 in");
        };
        self.client = Peer::Nested { outer, inner: Box::new(Peer::H2(Box::new(H2Peer::client()))) };
        self.client_sends(b"")
    }

    /// From now on `inner` speaks through the HTTP/2 client's `CONNECT` stream `stream`
    /// (answered `200` already); its first flight goes out.
    pub fn client_tunnels(&mut self, stream: u64, inner: Peer) -> &mut Self {
        fn wrap(peer: Peer, stream: u64, inner: Peer) -> Peer {
            match peer {
                Peer::H2(h2) => {
                    let seen = h2.body(stream).len();
                    Peer::H2Tunnel { h2, stream, seen, inner: Box::new(inner) }
                }
                Peer::Nested { outer, inner: h2 } => Peer::Nested { outer, inner: Box::new(wrap(*h2, stream, inner)) },
                _ => panic!("the client speaks no HTTP/2 to open a tunnel in"),
            }
        }
        let client = std::mem::replace(&mut self.client, Peer::Plain { received: Vec::new() });
        self.client = wrap(client, stream, inner);
        self.client_sends(b"")
    }

    pub fn server_sends(&mut self, conn: ConnId, data: &[u8]) -> &mut Self {
        let peer = self.servers.get_mut(&conn).expect("known server");
        let bytes = peer.outgoing(data);
        self.queue.push_back(Event::DataReceived { conn, data: bytes.into() });
        self.run()
    }

    /// The server's end of `conn` closes.
    /// `conn` (the client, or a server) hangs up.
    pub fn closes(&mut self, conn: ConnId) -> &mut Self {
        self.queue.push_back(Event::ConnectionClosed { conn });
        self.run()
    }

    /// The proxy begins a graceful shutdown.
    pub fn shuts_down(&mut self) -> &mut Self {
        self.queue.push_back(Event::Shutdown);
        self.run()
    }

    /// Let `by` pass, waking the core if its deadline came meanwhile.
    pub fn advance(&mut self, by: std::time::Duration) -> &mut Self {
        self.now += by;
        if self.core.poll_timeout().is_some_and(|at| at <= self.now) {
            self.queue.push_back(Event::Wakeup);
        }
        self.run()
    }

    pub fn server(&self, conn: ConnId) -> &Peer {
        &self.servers[&conn]
    }

    pub fn hook_kinds(&self) -> Vec<HookKind> {
        self.hooks.iter().map(Hook::kind).collect()
    }

    /// Deliver queued events and carry out commands until nothing moves. Bounded.
    pub fn run(&mut self) -> &mut Self {
        for _ in 0..10_000 {
            self.queue.extend(self.inbox.borrow_mut().drain(..));
            if let Some(event) = self.queue.pop_front() {
                self.record(|| format!(">> {event:?}"));
                self.core.handle(self.now, event);
            }
            let mut moved = false;
            while let Some(command) = self.core.poll_command() {
                moved = true;
                self.record(|| format!("<< {command:?}"));
                self.carry_out(command);
            }
            if !moved && self.queue.is_empty() && self.inbox.borrow().is_empty() {
                if !self.woken.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    return self;
                }
                self.queue.push_back(Event::Wakeup);
            }
        }
        panic!("the scenario did not settle");
    }

    fn record(&mut self, line: impl FnOnce() -> String) {
        if let Some(transcript) = &mut self.transcript {
            transcript.push(line());
        }
    }

    fn carry_out(&mut self, command: Command) {
        match command {
            Command::SendData { conn, data } => {
                let peer = if conn == ConnId::CLIENT { &mut self.client } else { self.servers.get_mut(&conn).expect("open") };
                peer.deliver(&data);
                let reply = peer.outgoing(b"");
                if !reply.is_empty() {
                    self.queue.push_back(Event::DataReceived { conn, data: Bytes::from(reply) });
                }
                if !(conn == ConnId::CLIENT && self.client_stalled) {
                    self.queue.push_back(Event::WriteDrained { conn });
                }
            }
            Command::OpenConnection { conn, server } => {
                self.addrs.insert(conn, server.clone());
                match (self.origins)(&server) {
                    Some(peer) => {
                        self.servers.insert(conn, peer);
                        self.queue.push_back(Event::Opened { conn });
                    }
                    None => self.queue.push_back(Event::OpenFailed { conn, error: proxy_core::OpenError::Refused }),
                }
            }
            Command::Reuse { conn, key, join: true, .. } if self.carrier.as_ref().is_some_and(|c| c.borrow().has_room(&key)) => {
                let tag = self.carrier.as_ref().expect("checked").borrow_mut().attach(conn, self.inbox.clone());
                self.joined.insert(conn, (tag, true));
                self.queue.push_back(Event::Joined { conn });
            }
            Command::Carry { conn, message } => {
                let (tag, busy) = self.joined.get_mut(&conn).expect("joined");
                let mut carrier = self.carrier.as_ref().expect("joined").borrow_mut();
                let now_busy = message.busy_after(*busy);
                carrier.carrying = carrier.carrying + usize::from(now_busy) - usize::from(*busy);
                *busy = now_busy;
                carrier.deliver(*tag, message);
            }
            Command::CloseConnection { conn, .. } if self.joined.contains_key(&conn) => {
                let (tag, busy) = self.joined.remove(&conn).expect("checked");
                self.carrier.as_ref().expect("joined").borrow_mut().gone(tag, busy);
                self.closed.push(conn);
            }
            Command::StreamOut { .. } | Command::Capacity { .. } => panic!("a client connection spoke as a carrier"),
            Command::Reuse { conn, server, key, .. } => match self.pool.iter().position(|(p, _)| p.key() == key) {
                Some(at) => {
                    let (parked, peer) = self.pool.remove(at);
                    self.addrs.insert(conn, server);
                    self.servers.insert(conn, peer);
                    self.queue.push_back(Event::Adopted { conn, parked });
                }
                None => self.carry_out(Command::OpenConnection { conn, server }),
            },
            Command::Park { conn, mut parked } => {
                // As the driver does: the backend is let go once the connection is pooled.
                let hold = parked.take_hold();
                let peer = self.servers.remove(&conn).expect("a parked connection is open");
                self.parked.push(conn);
                self.pool.push((parked, peer));
                drop(hold);
            }
            Command::CloseConnection { conn, .. } => self.closed.push(conn),
            Command::Hook { flow, hook } if hook.is_blocking() && (self.hold)(&hook) => {
                self.held.push((flow, hook.kind()));
                self.hooks.push(hook);
            }
            Command::Hook { flow, hook } => {
                if hook.is_blocking() {
                    let reply = (self.reply)(&hook);
                    self.queue.push_back(Event::HookReply { flow, reply });
                }
                self.hooks.push(hook);
            }
            Command::Log { message, .. } => self.logs.push(message),
            Command::Forward { .. } => panic!("nothing may be forwarded past TLS"),
            Command::PauseReading { conn } => {
                self.paused.insert(conn);
            }
            Command::ResumeReading { conn } => {
                self.paused.remove(&conn);
            }
        }
    }
}
