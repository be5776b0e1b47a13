//! The TLS entry point: a TLS-intercepting proxy that a client has sent `CONNECT` to, then fed
//! what the input says: raw bytes (garbage ClientHellos and records) from either side, the
//! real handshakes and requests of an in-memory rustls client and origin, or their records
//! with a byte changed. Besides the checks of [`Run`], whatever plaintext the real origin
//! decrypts must read as canonical requests, and what the real client decrypts as canonical
//! responses, unless the connection was passed through untouched.
//!
//! Keys and certificates are made once per process; rustls configurations once per run, so
//! no session cache carries one run into the next. All of it is on the deterministic
//! [`crypto`] provider, so an input replays to the same bytes, ciphertext included, and a
//! failing case found by the fuzzer reproduces exactly.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use proxy_core::tls::{CertIssuer, CertRequest, TlsConfig};
use proxy_core::{Config, ConnId, Event};
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::run::Run;
use super::strict::{self, Step};
use super::variant;
use crate::crypto;
use crate::tls::{Leaf, TestCa};

/// Requests the real client sends, smuggling attempts among them.
const REQUESTS: [&[u8]; 6] = [
    b"GET /r HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n",
    b"GET http://a.test/abs HTTP/1.1\r\nHost: b.test\r\n\r\n",
    b"POST /s HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello\r\n\r\n",
];

/// Responses the real origin sends.
const RESPONSES: [&[u8]; 5] = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"garbage\r\n\r\n",
];

/// The `tls` fuzz target. Input: a configuration byte (bits 0-3 as [`variant`]; bit 4: the
/// target is an ignored host, passed through; bit 5: `Passthrough` answers the ClientHello
/// hook; bit 6: upstream connections are refused; bit 7: there is no real client), then pairs
/// of an operation and its argument, raw operations followed by their bytes.
pub fn tls(data: &[u8]) {
    let Some((&flags, mut ops)) = data.split_first() else { return };
    let host = if flags & 0x10 != 0 { "pass.test" } else { "a.test" };
    let mut run = Run::new(config(flags));
    run.check_upstream = false;
    run.handle(Event::Start);
    settle_hooks(&mut run, flags);
    run.serve();
    run.client(Bytes::from(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n")));
    settle_hooks(&mut run, flags);
    run.serve();
    let mut peers = Peers {
        client: (flags & 0x80 == 0).then(|| Peer::client(host, &run)),
        origin: None,
        refuse: flags & 0x40 != 0,
    };
    while let [op, arg, rest @ ..] = ops {
        ops = rest;
        let raw = |ops: &mut &[u8]| {
            let n = (usize::from(*arg) % 64 + 1).min(ops.len());
            let (piece, rest) = ops.split_at(n);
            *ops = rest;
            Bytes::copy_from_slice(piece)
        };
        match op % 8 {
            0 => run.client(raw(&mut ops)),
            1 => run.server_data(raw(&mut ops)),
            2 => {}
            3 => {
                if let Some(client) = &mut peers.client {
                    client.write(REQUESTS[usize::from(*arg) % REQUESTS.len()]);
                }
            }
            4 => {
                peers.attach_origin(&run);
                if let Some(origin) = &mut peers.origin {
                    origin.write(RESPONSES[usize::from(*arg) % RESPONSES.len()]);
                }
            }
            5 => {
                if let Some(client) = &mut peers.client {
                    let flight = client.mutated_flight(&run, *arg, ops.first().copied());
                    run.client(flight);
                }
            }
            6 => {
                peers.attach_origin(&run);
                if let Some(origin) = &mut peers.origin {
                    if run.readable(origin.conn) {
                        let flight = origin.mutated_flight(&run, *arg, ops.first().copied());
                        run.server(origin.conn, flight);
                    }
                }
            }
            _ => match arg % 4 {
                0 => run.close_conn(arg / 4),
                1 => run.advance(std::time::Duration::from_secs(u64::from(arg / 4 % 4) * 30)),
                2 => run.drain(arg / 4),
                _ => run.answer_hook(arg / 4),
            },
        }
        peers.settle(&mut run, flags);
    }
    run.client_eof();
    peers.settle(&mut run, flags);
    run.finish();
    peers.check();
}

/// A real ClientHello for `a.test`, for seeds that send one raw.
pub fn client_hello() -> Vec<u8> {
    let run = Run::new(Config::default());
    let mut client = Peer::client("a.test", &run);
    client.exchange(&run).to_vec()
}

/// The proxy under test: [`variant`] with TLS interception, certificates from a fixed
/// issuer, upstreams trusted if the origins' CA signed them, and `pass.test` ignored.
pub(super) fn config(flags: u8) -> Config {
    let keys = keys();
    let server = crypto::server_config()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    let client = crypto::client_config()
        .with_root_certificates(keys.origin_roots.clone())
        .with_no_client_auth();
    let tls = TlsConfig {
        issuer: Arc::new(FixedIssuer(keys.proxy_leaf.clone())),
        server: Arc::new(server),
        client: Arc::new(client),
        ignore_hosts: vec![regex::Regex::new(r"^pass\.test:").expect("pattern")],

        remedies: Default::default(),
    };
    Config { tls: Some(tls), ..variant(flags & 0x0f, false) }
}

/// Answer pending hooks as the configuration byte says: `Passthrough` to a ClientHello if bit
/// 5 is set, `Continue` otherwise.
fn settle_hooks(run: &mut Run, flags: u8) {
    let reply = if flags & 0x20 != 0 { 5 * 8 } else { 0 };
    for _ in 0..16 {
        if run.pending_hooks.is_empty() {
            return;
        }
        run.answer_hook(reply);
    }
}

pub(super) struct Keys {
    /// What the proxy shows clients, for `a.test` and `pass.test`, from the proxy's CA.
    proxy_leaf: Arc<CertifiedKey>,
    /// The origin's certificate for the same names, from the origins' CA.
    pub(super) origin_leaf: Leaf,
    origin_roots: RootCertStore,
    /// Both CAs: the real client trusts the proxy's, and the origin's when passed through.
    pub(super) client_roots: RootCertStore,
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let proxy_ca = TestCa::new("fuzz proxy CA");
        let origin_ca = TestCa::new("fuzz origin CA");
        let Leaf(cert, key) = proxy_ca.leaf(&["a.test", "pass.test"]);
        let proxy_leaf = Arc::new(CertifiedKey::from_der(vec![cert], key, &crypto::provider()).expect("proxy leaf"));
        let mut client_roots = proxy_ca.roots();
        client_roots.add(origin_ca.cert.clone()).expect("origin root");
        Keys {
            proxy_leaf,
            origin_leaf: origin_ca.leaf(&["a.test", "pass.test"]),
            origin_roots: origin_ca.roots(),
            client_roots,
        }
    })
}

/// Hands out one certificate whatever is asked: minting is not what is under test.
#[derive(Debug)]
struct FixedIssuer(Arc<CertifiedKey>);

impl CertIssuer for FixedIssuer {
    fn issue(&self, _request: &CertRequest) -> Result<Arc<CertifiedKey>, String> {
        Ok(self.0.clone())
    }
}

/// The real ends around the core.
struct Peers {
    client: Option<Peer>,
    origin: Option<Peer>,
    /// Upstream connections are refused.
    refuse: bool,
}

impl Peers {
    /// Give the origin the newest server connection, unless it has a live one.
    fn attach_origin(&mut self, run: &Run) {
        let servers = run.servers();
        if self.origin.as_ref().is_some_and(|o| servers.contains(&o.conn)) {
            return;
        }
        if let Some(&conn) = servers.last() {
            self.origin = Some(Peer::origin(conn));
        }
    }

    /// Carry bytes between the core and the real ends until nothing moves (bounded), opening
    /// connections and answering hooks on the way.
    fn settle(&mut self, run: &mut Run, flags: u8) {
        for _ in 0..32 {
            settle_hooks(run, flags);
            if self.refuse {
                while !run.opening.is_empty() {
                    run.resolve_open(0);
                }
            }
            run.serve();
            self.attach_origin(run);
            let mut moved = false;
            if let Some(client) = &mut self.client {
                let out = client.exchange(run);
                if !out.is_empty() {
                    moved = true;
                    run.client(out);
                }
            }
            if let Some(origin) = &mut self.origin {
                if run.readable(origin.conn) {
                    let out = origin.exchange(run);
                    if !out.is_empty() {
                        moved = true;
                        run.server(origin.conn, out);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// What the ends decrypted reads strictly: requests at the origin, responses at the client.
    /// Only if the proxy intercepted, as the certificate the client got shows: through a
    /// tunnel, the ends talk to each other unchecked.
    fn check(&self) {
        let proxy_cert = &keys().proxy_leaf.cert[0];
        let intercepted = self.client.as_ref().is_some_and(|c| {
            c.tls.peer_certificates().and_then(|certs| certs.first()).is_some_and(|cert| cert == proxy_cert)
        });
        if !intercepted {
            return;
        }
        if let Some(origin) = &self.origin {
            let mut at = 0;
            while at < origin.plain.len() {
                match strict::request(&origin.plain[at..]) {
                    Step::Done(_, len) => at += len,
                    Step::More => break,
                    Step::Broken(e) => panic!(
                        "the origin decrypted a request no strict reader takes ({e}): {:?}",
                        String::from_utf8_lossy(&origin.plain)
                    ),
                }
            }
        }
        if let Some(client) = &self.client {
            let mut at = 0;
            while at < client.plain.len() {
                match strict::response(&client.plain[at..], "GET", true) {
                    Step::Done(m, len) if m.status() != 101 => at += len,
                    Step::Done(..) | Step::More => break,
                    Step::Broken(e) => panic!(
                        "the client decrypted a response no strict reader takes ({e}): {:?}",
                        String::from_utf8_lossy(&client.plain)
                    ),
                }
            }
        }
    }
}

/// A rustls end of one connection, reading what the core sent it from [`Run::sent`].
struct Peer {
    tls: rustls::Connection,
    conn: ConnId,
    /// How much of what the core sent has been read.
    read: usize,
    /// Plaintext received.
    plain: Vec<u8>,
    /// The session failed (a record the input changed, most likely): it only sends its alert.
    failed: bool,
}

impl Peer {
    /// A client for `host`, reading the core's bytes after the `200` to its `CONNECT`.
    fn client(host: &str, run: &Run) -> Self {
        let mut config = crypto::client_config()
            .with_root_certificates(keys().client_roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.to_owned()).expect("name");
        let tls = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let read = run.sent.get(&ConnId::CLIENT).map_or(0, Vec::len);
        Self { tls: tls.into(), conn: ConnId::CLIENT, read, plain: Vec::new(), failed: false }
    }

    fn origin(conn: ConnId) -> Self {
        let Leaf(cert, key) = keys().origin_leaf.clone();
        let mut config = crypto::server_config()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("origin certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = rustls::ServerConnection::new(Arc::new(config)).expect("origin");
        Self { tls: tls.into(), conn, read: 0, plain: Vec::new(), failed: false }
    }

    /// Queue plaintext to send once the handshake allows.
    fn write(&mut self, plaintext: &[u8]) {
        if !self.failed {
            let _ = std::io::Write::write_all(&mut self.tls.writer(), plaintext);
        }
    }

    /// Take in what the core sent since last time; return what this end sends back.
    fn exchange(&mut self, run: &Run) -> Bytes {
        let sent = run.sent.get(&self.conn).map_or(&[][..], |s| &s[..]);
        let mut input = sent.get(self.read..).unwrap_or_default();
        self.read = sent.len();
        while !input.is_empty() && !self.failed {
            match self.tls.read_tls(&mut input) {
                Ok(0) | Err(_) => self.failed = true,
                Ok(_) => {}
            }
            if self.tls.process_new_packets().is_err() {
                self.failed = true;
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut self.tls.reader(), &mut buf) {
                if n == 0 {
                    break;
                }
                self.plain.extend_from_slice(&buf[..n]);
            }
        }
        let mut out = Vec::new();
        for _ in 0..64 {
            if !self.tls.wants_write() || self.tls.write_tls(&mut out).unwrap_or(0) == 0 {
                break;
            }
        }
        Bytes::from(out)
    }

    /// What this end sends next (a request if it has nothing to say), with the byte `at`
    /// changed by `with`.
    fn mutated_flight(&mut self, run: &Run, at: u8, with: Option<u8>) -> Bytes {
        let mut out = self.exchange(run).to_vec();
        if out.is_empty() {
            self.write(REQUESTS[0]);
            out = self.exchange(run).to_vec();
        }
        if let Some(len) = std::num::NonZeroUsize::new(out.len()) {
            let i = usize::from(at) % len.get();
            out[i] ^= with.filter(|&w| w != 0).unwrap_or(0x80);
        }
        Bytes::from(out)
    }
}
