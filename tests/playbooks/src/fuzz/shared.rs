//! The `shared` target: HTTP/1.1 clients intercepted on their way to one HTTP/2 origin share
//! its connections (`share_upstreams`). The connection each `CONNECT` made is parked once its
//! settings are exchanged. The first parked one becomes a carrier (and, once it closes, the
//! next one parked), the others wait whole in the pool for the next `CONNECT`, and every
//! client's requests join the carrier while it has room, as proxy-io's driver does it. Or, as
//! the configuration byte says, the clients send plain HTTP/1.1 to the proxy, which speaks
//! HTTP/2 to the origin with prior knowledge: the first connection the clients' requests made
//! becomes the carrier (a reverse proxy's clients share connections the same way). The input
//! plays up to three clients and the origin: requests of each framing, answers in any order,
//! resets, GOAWAY, a closed or broken carrier, clients leaving and coming, time passing.
//!
//! Besides the pumps' own checks (every command is one a driver can carry out, every step
//! settles), and unless a client sent bytes of the input's own:
//!
//! - what each client decrypts reads strictly as HTTP/1.1 responses, at most one per request
//!   it sent, in order. An answer of the origin's reaches only the client that asked: its body
//!   names the request's path, which names the client;
//! - the origin receives only requests clients sent, and whole request bodies as sent;
//! - once every client has gone, no carrier carries a stream: the count of its streams that
//!   a driver keeps, to know its room, comes back to zero.

use std::time::{Duration, Instant};

use proxy_core::h2_engine::{Reason, Settings, StreamKey};
use proxy_core::{Config, ConnId};

use super::strict::{self, Step};
use super::tls::keys;
use crate::h2::H2Peer;
use crate::pump::{CarrierPump, Origins, Peer, Pump, SharedCarrier};
use crate::tls::{tls_client, tls_origin};

/// Clients at once, at most.
const CLIENTS: usize = 3;
/// Clients over a run, at most. One that left stays, as a driver's task stays until what it
/// carries is done: its streams are on the carrier until it closes them.
const ARRIVALS: usize = 6;
const CONNECT: &[u8] = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
/// How long the carrier lasts without streams.
const CARRIER_IDLE: Duration = Duration::from_secs(60);
/// Statuses the origin answers with: none the proxy makes up itself.
const ORIGIN_STATUSES: [u16; 3] = [200, 203, 204];

/// The `shared` fuzz target. Input: a configuration byte (bits 0, 1 and 3 as [`variant`];
/// bit 2: the origin never acknowledges the proxy's SETTINGS, unless the run is plain;
/// bits 4-5 the origin's stream limit: 100, 1, 2 or 100; bit 6: the origin's receive
/// windows are a few bytes; bit 7: plain HTTP, no `CONNECT` and no TLS), then pairs of an
/// operation and its argument, the raw ones followed by their bytes.
///
/// [`variant`]: super::variant
pub fn shared(data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else { return };
    let mut world = World::new(flags);
    if world.plain {
        world.warm_up();
    }
    world.arrive();
    world.settle();
    while let [op, arg, rest @ ..] = ops {
        ops = rest;
        let arg = *arg;
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("op {} arg {arg}", op % 8);
        }
        match op % 8 {
            0 => world.request(usize::from(arg) % ARRIVALS, arg / ARRIVALS as u8),
            1 => world.answer(arg),
            2 => world.reset(arg),
            3 => world.upset_carrier(arg),
            4 => world.leave(usize::from(arg) % ARRIVALS),
            5 => world.advance(Duration::from_secs(u64::from(arg % 4) * 10)),
            6 => world.arrive(),
            _ => {
                let n = (usize::from(arg / ARRIVALS as u8) % 48 + 1).min(ops.len());
                let (raw, rest) = ops.split_at(n);
                ops = rest;
                world.raw(usize::from(arg) % ARRIVALS, raw);
            }
        }
        world.settle();
    }
    world.finish();
}

/// A request waiting at the origin: on which connection, its stream, method and path.
type Waiting = (Origin, StreamKey, &'static str, String);

/// One of the origin's connections.
#[derive(Clone, Copy)]
enum Origin {
    /// The `n`th carrier's.
    Carrier(usize),
    /// Client `i`'s own `conn`.
    Own(usize, ConnId),
}

/// A request a client sent, as the origin should see it.
struct Sent {
    /// Which client sent it (`None`: the warm-up client of a plain run).
    client: Option<usize>,
    method: &'static str,
    path: String,
    body: Vec<u8>,
}

struct Client {
    pump: Pump,
    /// It hung up.
    gone: bool,
    /// It sent bytes of the input's own, which may read as anything.
    raw: bool,
}

struct World {
    flags: u8,
    /// Clients speak plain HTTP/1.1 to the proxy, and the proxy HTTP/2 to the origin with
    /// prior knowledge.
    plain: bool,
    config: Config,
    now: Instant,
    clients: Vec<Client>,
    /// Every carrier made over the run; the last is the one clients join. Once it closes, the
    /// next connection parked whole that can carry streams takes its place, as the driver
    /// makes a carrier where none has room.
    carriers: Vec<SharedCarrier>,
    /// Every request sent over the run, by every client (those that left included).
    sent: Vec<Sent>,
}

impl World {
    fn new(flags: u8) -> Self {
        let plain = flags & 0x80 != 0;
        let mut config = match plain {
            true => Config { upstream_h2c: true, ..super::variant(flags & 0x0b, false) },
            false => super::tls::config(flags & 0x0b),
        };
        config.share_upstreams = true;
        config.share_streams = true;
        let now = Instant::now();
        Self { flags, plain, config, now, clients: Vec::new(), carriers: Vec::new(), sent: Vec::new() }
    }

    /// The origin: an HTTP/2 server, its limits as the configuration byte says, inside TLS
    /// offering only `h2` unless the run is plain. One that never acknowledges the proxy's
    /// SETTINGS leaves each tunnel's connection unsettled, so it is not shared while its
    /// client holds it: its requests wait for the server's deadline and then go on it alone.
    fn origins(&self) -> Origins {
        let (flags, plain) = (self.flags, self.plain);
        let acks_settings = plain || flags & 0x04 == 0;
        Box::new(move |_| {
            let mut settings = Settings {
                max_concurrent_streams: [100, 1, 2, 100][usize::from(flags >> 4) % 4],
                ..Settings::default()
            };
            if flags & 0x40 != 0 {
                settings.stream_window = 7;
                settings.connection_window = 7;
            }
            let mut origin = H2Peer::server_with(&settings);
            origin.acks_settings = acks_settings;
            let server = Box::new(Peer::H2(Box::new(origin)));
            if plain {
                return Some(*server);
            }
            let tls = tls_origin(keys().origin_leaf.clone(), &[b"h2"]);
            Some(Peer::Nested { outer: Box::new(tls.into()), inner: server })
        })
    }

    /// A new client comes (and `CONNECT`s and completes its TLS handshake, unless the run is
    /// plain), if fewer than [`CLIENTS`] are here and fewer than [`ARRIVALS`] came. The pool is
    /// one: the new client's pump is handed what the others parked.
    fn arrive(&mut self) {
        if self.clients.len() == ARRIVALS || self.clients.iter().filter(|c| !c.gone).count() == CLIENTS {
            return;
        }
        let mut pump = self.pump();
        for client in &mut self.clients {
            pump.pool.append(&mut client.pump.pool);
        }
        if let Some(carrier) = self.carriers.last() {
            pump.set_carrier(carrier.clone());
        }
        pump.run();
        if !self.plain {
            pump.client_sends(CONNECT);
            assert_eq!(pump.client.received(), ESTABLISHED, "logs {:?}", pump.logs);
            let roots = keys().client_roots.clone();
            pump.client_starts_tls(tls_client(roots, "a.test", &[b"http/1.1"]));
        }
        self.clients.push(Client { pump, gone: false, raw: false });
    }

    /// A client connection's pump, its client not yet arrived, its origin [`origins`](Self::origins).
    fn pump(&self) -> Pump {
        Pump::new(self.config.clone(), Peer::Plain { received: Vec::new() }, self.origins()).at(self.now)
    }

    /// A plain client fetches `/warm` and leaves, so that the connection its request made is
    /// parked idle and becomes the carrier. (A driver makes one at once, where a connection is
    /// parked; the pumps pool it, and the client's request would take it back whole.)
    fn warm_up(&mut self) {
        let mut pump = self.pump();
        pump.run();
        pump.client_sends(b"GET http://a.test/warm HTTP/1.1\r\nhost: a.test\r\n\r\n");
        let server = *pump.servers.keys().last().expect("a connection for the request");
        let stream = pump.server_h2(server).requests()[0].0;
        pump.server_h2(server).respond(stream, 200, b"warm", None);
        pump.server_sends(server, b"");
        pump.closes(ConnId::CLIENT);
        let (parked, peer) = pump.pool.pop().expect("the connection parked");
        self.carriers.push(CarrierPump::new(self.config.clone(), parked, peer, CARRIER_IDLE, self.now));
        self.sent.push(Sent { client: None, method: "GET", path: "/warm".into(), body: Vec::new() });
    }

    /// Client `i`, if it is here and the proxy has not closed its connection.
    fn client(&mut self, i: usize) -> Option<&mut Client> {
        self.clients.get_mut(i).filter(|c| !c.gone && !c.pump.closed.contains(&ConnId::CLIENT))
    }

    /// Client `i` sends a request of kind `kind`: its path names the client and the request.
    fn request(&mut self, i: usize, kind: u8) {
        let (n, plain) = (self.sent.len(), self.plain);
        let Some(client) = self.client(i) else { return };
        let path = format!("/c{i}/{n}");
        // Plain requests name the origin (absolute form), as a forward proxy's clients do.
        let target = if plain { format!("http://a.test{path}") } else { path.clone() };
        let (method, wire, body): (_, String, &[u8]) = match kind % 7 {
            0 => ("GET", format!("GET {target} HTTP/1.1\r\nhost: a.test\r\n\r\n"), b""),
            1 => ("POST", format!("POST {target} HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\nhello"), b"hello"),
            2 => (
                "POST",
                format!(
                    "POST {target} HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n\
                     3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n"
                ),
                b"abcde",
            ),
            3 => ("HEAD", format!("HEAD {target} HTTP/1.1\r\nhost: a.test\r\n\r\n"), b""),
            4 => ("GET", format!("GET {target} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n"), b""),
            5 => (
                "PUT",
                format!("PUT {target} HTTP/1.1\r\nhost: a.test\r\ncontent-length: 40\r\n\r\n{}", LONG),
                LONG.as_bytes(),
            ),
            _ => ("GET", format!("GET https://a.test{path} HTTP/1.1\r\nhost: a.test\r\n\r\n"), b""),
        };
        client.pump.client_sends(wire.as_bytes());
        self.sent.push(Sent { client: Some(i), method, path, body: body.to_vec() });
    }

    /// Client `i` sends bytes of the input's own.
    fn raw(&mut self, i: usize, raw: &[u8]) {
        let Some(client) = self.client(i) else { return };
        client.raw = true;
        client.pump.client_sends(raw);
    }

    /// Client `i` hangs up.
    fn leave(&mut self, i: usize) {
        let Some(client) = self.client(i) else { return };
        client.gone = true;
        client.pump.closes(ConnId::CLIENT);
    }

    /// The requests the origin has neither answered nor reset, on the carriers' connections
    /// and on those a client holds of its own.
    fn waiting(&mut self) -> Vec<Waiting> {
        let mut found = Vec::new();
        for (n, carrier) in self.carriers.iter().enumerate() {
            let mut carrier = carrier.borrow_mut();
            if !carrier.closed {
                for (stream, head) in carrier.server_h2().unanswered() {
                    found.push((Origin::Carrier(n), stream, method_name(&head.method), head.uri.path().to_owned()));
                }
            }
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            let conns: Vec<ConnId> = client.pump.servers.keys().copied().collect();
            for conn in conns {
                if client.pump.closed.contains(&conn) {
                    continue;
                }
                let h2 = client.pump.servers.get_mut(&conn).expect("listed").h2();
                if h2.engine.is_closed() {
                    continue;
                }
                for (stream, head) in h2.unanswered() {
                    found.push((Origin::Own(i, conn), stream, method_name(&head.method), head.uri.path().to_owned()));
                }
            }
        }
        found
    }

    /// The origin answers one of the requests waiting, as `arg` picks: its body is the
    /// request's path, once or repeated past the proxy's buffers, or none.
    fn answer(&mut self, arg: u8) {
        let waiting = self.waiting();
        if waiting.is_empty() {
            return;
        }
        let (at, stream, method, path) = waiting[usize::from(arg) % waiting.len()].clone();
        let how = usize::from(arg) / waiting.len();
        let status = ORIGIN_STATUSES[how % ORIGIN_STATUSES.len()];
        let body = match (status, method) {
            (204, _) | (_, "HEAD") => Vec::new(),
            _ if how / 3 % 2 == 1 => path.repeat(2500 / path.len() + 1).into_bytes(),
            _ => path.into_bytes(),
        };
        let trailers = (status == 203 && !body.is_empty()).then(|| crate::h2::trailers(&[("x-o", "1")]));
        self.on_origin(at, |h2| h2.respond(stream, status, &body, trailers));
    }

    /// The origin resets one of the requests waiting, with a reason `arg` picks.
    fn reset(&mut self, arg: u8) {
        let waiting = self.waiting();
        if waiting.is_empty() {
            return;
        }
        let (at, stream, ..) = waiting[usize::from(arg) % waiting.len()].clone();
        let reason = Reason(u32::from(arg) / waiting.len() as u32 % 14);
        self.on_origin(at, |h2| h2.reset(stream, reason));
    }

    /// Let the origin's end of a connection act, and send what it has to say.
    fn on_origin(&mut self, at: Origin, act: impl FnOnce(&mut H2Peer)) {
        match at {
            Origin::Carrier(n) => {
                let mut carrier = self.carriers[n].borrow_mut();
                act(carrier.server_h2());
                carrier.server_sends(b"");
            }
            Origin::Own(i, conn) => {
                let pump = &mut self.clients[i].pump;
                act(pump.server_h2(conn));
                pump.server_sends(conn, b"");
            }
        }
    }

    /// The server of the carrier clients join says goodbye (gracefully or with an error),
    /// hangs up, or sends bytes that are no TLS record (no HTTP/2 frame, if plain).
    fn upset_carrier(&mut self, arg: u8) {
        let Some(carrier) = self.carriers.last() else { return };
        let mut carrier = carrier.borrow_mut();
        if carrier.closed {
            return;
        }
        match arg % 4 {
            0 => {
                carrier.server_h2().engine.shutdown(None);
                carrier.server_sends(b"");
            }
            1 => {
                carrier.server_h2().engine.shutdown(Some(Reason(u32::from(arg / 4) % 14)));
                carrier.server_sends(b"");
            }
            2 => carrier.server_closes(),
            _ => carrier.server_sends_raw(b"\x17\x03\x03\x00\x05junk!"),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for client in &mut self.clients {
            client.pump.advance(by);
        }
        for carrier in &self.carriers {
            carrier.borrow_mut().advance(by);
        }
    }

    /// Run every pump until none has anything waiting (what a carrier sends one pump's
    /// streams arrives while another runs it), making a carrier where none is open. A client
    /// takes the newest carrier once it has no stream left on the one before.
    fn settle(&mut self) {
        for _ in 0..64 {
            if self.carriers.last().is_none_or(|c| c.borrow().closed) {
                self.make_carrier();
            }
            if let Some(carrier) = self.carriers.last() {
                for client in self.clients.iter_mut().filter(|c| c.pump.joined() == 0) {
                    client.pump.set_carrier(carrier.clone());
                }
            }
            let Some(client) = self.clients.iter_mut().find(|c| c.pump.pending()) else { return };
            client.pump.run();
        }
        panic!("the clients did not settle");
    }

    /// The first connection parked whole that can carry streams becomes the carrier, as the
    /// driver makes one where none has room.
    fn make_carrier(&mut self) {
        let parked = self.clients.iter_mut().find_map(|client| {
            let at = client.pump.pool.iter().position(|(parked, _)| parked.carries_streams())?;
            Some(client.pump.pool.remove(at))
        });
        if let Some((parked, peer)) = parked {
            self.carriers.push(CarrierPump::new(self.config.clone(), parked, peer, CARRIER_IDLE, self.now));
        }
    }

    /// Everyone leaves, time passes until every deadline is behind, and the checks run.
    fn finish(mut self) {
        for i in 0..self.clients.len() {
            self.leave(i);
        }
        self.settle();
        for _ in 0..3 {
            self.advance(Duration::from_secs(120));
            self.settle();
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            self.trace();
        }
        for carrier in &self.carriers {
            let carrier = carrier.borrow();
            assert_eq!(carrier.carrying, 0, "streams left on a carrier after every client left; logs {:?}", carrier.logs);
        }
        for i in 0..self.clients.len() {
            self.check_client(i);
        }
        let pumps = self.clients.iter().map(|c| &c.pump);
        let own = pumps.flat_map(|pump| pump.servers.values().chain(pump.pool.iter().map(|(_, peer)| peer)));
        for h2 in own.filter_map(Peer::as_h2) {
            self.check_origin(h2);
        }
        for carrier in &self.carriers {
            self.check_origin(carrier.borrow_mut().server_h2());
        }
    }

    /// What client `i` decrypted reads as responses, one per request at most, in order; an
    /// answer of the origin's carries the path of the request it answers. Not for a client
    /// that sent bytes of the input's own: which requests they made, and so how to read the
    /// answers (to a `HEAD`, say), is unknown.
    fn check_client(&self, i: usize) {
        let client = &self.clients[i];
        // A TLS client whose handshake failed read nothing past the `200` to its `CONNECT`.
        if client.raw || (!self.plain && client.pump.client.rustls().is_none()) {
            return;
        }
        let received = client.pump.client.received();
        let mut at = 0;
        for sent in self.sent.iter().filter(|s| s.client == Some(i)) {
            if at == received.len() {
                return;
            }
            match strict::response(&received[at..], sent.method, true) {
                Step::Done(message, len) => {
                    at += len;
                    let status = message.status();
                    if ORIGIN_STATUSES.contains(&status) && sent.method != "HEAD" && status != 204 {
                        let path = sent.path.as_bytes();
                        let whole = !message.body.is_empty() && message.body.chunks(path.len()).all(|c| c == path);
                        assert!(
                            whole,
                            "the answer to {} {} reads {:?}",
                            sent.method,
                            sent.path,
                            String::from_utf8_lossy(&message.body)
                        );
                    }
                }
                Step::More => return,
                Step::Broken(e) => panic!(
                    "the client decrypted a response no strict reader takes ({e}): {:?}",
                    String::from_utf8_lossy(received)
                ),
            }
        }
        assert_eq!(at, received.len(), "more responses than requests: {:?}", String::from_utf8_lossy(received));
    }

    /// The origin received on `h2` only requests clients sent, bodies whole where they ended;
    /// unless a client sent bytes of the input's own, which may read as any request.
    fn check_origin(&self, h2: &H2Peer) {
        if self.clients.iter().any(|c| c.raw) {
            return;
        }
        for (stream, head) in h2.requests() {
            let path = head.uri.path();
            let sent = self.sent.iter().find(|s| s.path == path);
            let Some(sent) = sent else { panic!("the origin received {} {path}, which no client sent", head.method) };
            assert_eq!(head.method.as_str(), sent.method, "the request for {path}");
            if h2.ended(stream).is_some() && h2.reset_reason(stream).is_none() {
                assert_eq!(h2.body(stream), sent.body, "the body of {} {path}", sent.method);
            }
        }
    }

    /// What each end saw, for `FUZZ_TRACE=1`.
    fn trace(&self) {
        for (n, carrier) in self.carriers.iter().enumerate() {
            let mut carrier = carrier.borrow_mut();
            let paths: Vec<String> = carrier.server_h2().requests().iter().map(|(_, h)| h.uri.path().to_owned()).collect();
            eprintln!("carrier {n}: requests {paths:?}; logs {:?}", carrier.logs);
        }
        for (i, client) in self.clients.iter().enumerate() {
            let pump = &client.pump;
            let sent: Vec<&String> = self.sent.iter().filter(|s| s.client == Some(i)).map(|s| &s.path).collect();
            eprintln!("client {i}: sent {sent:?}");
            eprintln!("  received {:?}", String::from_utf8_lossy(pump.client.received()));
            eprintln!("  parked {:?}, own servers {:?}, logs {:?}", pump.parked, pump.servers.keys().collect::<Vec<_>>(), pump.logs);
        }
    }
}

/// Forty bytes: a body longer than the fuzz configuration's `forward_min`.
const LONG: &str = "0123456789012345678901234567890123456789";

fn method_name(method: &http::Method) -> &'static str {
    ["GET", "POST", "HEAD", "PUT"].into_iter().find(|m| method.as_str() == *m).unwrap_or("OTHER")
}
