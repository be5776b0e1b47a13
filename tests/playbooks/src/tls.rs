//! TLS scenarios: the core between a real rustls client and real rustls origins, all in memory.
//!
//! Ciphertext is random, so these scenarios cannot be scripted byte for byte like a
//! [`Playbook`](crate::Playbook). A [`Pump`] plays the driver instead: it carries every
//! `SendData` to the right endpoint, feeds what the endpoints write back to the core, opens
//! the connections the core asks for, and answers hooks with a policy of the test's. The test
//! then asserts on plaintext, hooks and logs.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use proxy_core::tls::{CertIssuer, CertRequest, TlsConfig};
use proxy_core::{ClientInfo, Command, Config, ConnId, Connection, Event, FlowId, Hook, HookKind, HookReply, ServerAddr};

use crate::h2::H2Peer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// A CA made for one test.
pub struct TestCa {
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed CA").der().clone();
        Self { cert, issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names or IP addresses), with its key.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let cert = params.signed_by(&key, &self.issuer).expect("leaf").der().clone();
        Leaf(cert, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("root");
        roots
    }
}

/// The PKI of a TLS scenario: the proxy's CA, which [`World::issuer`] mints from, and the
/// origins' CA.
pub struct World {
    pub proxy_ca: Arc<TestCa>,
    pub origin_ca: TestCa,
    pub issuer: Arc<TestIssuer>,
}

pub fn world() -> World {
    let proxy_ca = Arc::new(TestCa::new("proxy CA"));
    let issuer = Arc::new(TestIssuer::new(proxy_ca.clone()));
    World { proxy_ca, origin_ca: TestCa::new("origin CA"), issuer }
}

/// A certificate and its key.
pub struct Leaf(pub CertificateDer<'static>, pub PrivateKeyDer<'static>);

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Self(self.0.clone(), self.1.clone_key())
    }
}

/// Mints leaves for the SNI (or the target, as an IP SAN when it is one) and records every
/// request it got.
pub struct TestIssuer {
    ca: Arc<TestCa>,
    pub requests: Mutex<Vec<CertRequest>>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestIssuer")
    }
}

impl TestIssuer {
    pub fn new(ca: Arc<TestCa>) -> Self {
        Self { ca, requests: Mutex::new(Vec::new()) }
    }
}

impl CertIssuer for TestIssuer {
    fn issue(&self, request: &CertRequest) -> Result<Arc<CertifiedKey>, String> {
        self.requests.lock().unwrap().push(request.clone());
        let name = request.server_name.clone().unwrap_or_else(|| request.target_host.clone());
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.subject_alt_names = vec![match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(|e: rcgen::Error| e.to_string())?),
        }];
        let cert = params.signed_by(&key, &self.ca.issuer).map_err(|e| e.to_string())?.der().clone();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = rustls::crypto::ring::default_provider();
        CertifiedKey::from_der(vec![cert], der, &provider).map(Arc::new).map_err(|e| e.to_string())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A core configuration that intercepts TLS: certificates from `issuer`, upstreams trusted if
/// `upstream_roots` vouches for them.
pub fn tls_proxy(issuer: Arc<TestIssuer>, upstream_roots: RootCertStore, ignore_hosts: &[&str]) -> Config {
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(upstream_roots)
        .with_no_client_auth();
    let tls = TlsConfig {
        issuer,
        server: Arc::new(server),
        client: Arc::new(client),
        ignore_hosts: ignore_hosts.iter().map(|p| regex::Regex::new(p).expect("pattern")).collect(),
    };
    Config { tls: Some(tls), ..Config::default() }
}

/// A client trusting `roots`, for `name`, offering `alpn`.
pub fn tls_client(roots: RootCertStore, name: &str, alpn: &[&[u8]]) -> rustls::ClientConnection {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(name.to_string()).expect("name");
    rustls::ClientConnection::new(Arc::new(config), name).expect("client")
}

/// An origin presenting `cert`.
pub fn tls_origin(cert: Leaf, alpn: &[&[u8]]) -> rustls::ServerConnection {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.0], cert.1)
        .expect("origin cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    rustls::ServerConnection::new(Arc::new(config)).expect("origin")
}

/// One end the core talks to.
pub enum Peer {
    Plain { received: Vec<u8> },
    Tls { tls: Box<rustls::Connection>, received: Vec<u8>, error: Option<String> },
    /// An upstream proxy: it reads one request head (`head`), answers `answer` in plaintext,
    /// and from then on carries the tunnel to `origin`, which it stands for.
    Proxy { head: Vec<u8>, answer: Vec<u8>, tunnel: bool, origin: Box<Peer> },
    /// An HTTP/2 endpoint over plain TCP (prior knowledge).
    H2(Box<H2Peer>),
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
            Self::H2(_) => &[],
        }
    }

    /// The HTTP/2 endpoint this is.
    pub fn h2(&mut self) -> &mut H2Peer {
        match self {
            Self::H2(peer) => peer,
            _ => panic!("not an HTTP/2 peer"),
        }
    }

    /// The request head a proxy received (`None` for other ends).
    pub fn proxy_request(&self) -> Option<&[u8]> {
        match self {
            Self::Proxy { head, .. } => Some(head),
            Self::Plain { .. } | Self::Tls { .. } | Self::H2(_) => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Tls { error, .. } => error.as_deref(),
            Self::Proxy { origin, .. } => origin.error(),
            Self::Plain { .. } | Self::H2(_) => None,
        }
    }

    pub fn rustls(&self) -> Option<&rustls::Connection> {
        match self {
            Self::Tls { tls, .. } => Some(tls),
            Self::Proxy { origin, .. } => origin.rustls(),
            Self::Plain { .. } | Self::H2(_) => None,
        }
    }

    /// Take in bytes from the core.
    pub fn deliver(&mut self, data: &[u8]) {
        match self {
            Self::Plain { received } => received.extend_from_slice(data),
            Self::H2(peer) => peer.deliver(data),
            Self::Proxy { origin, tunnel: true, .. } => origin.deliver(data),
            Self::Proxy { head, tunnel, origin, .. } => {
                head.extend_from_slice(data);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let rest = head.split_off(end + 4);
                    *tunnel = true;
                    origin.deliver(&rest);
                }
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
            Self::Proxy { tunnel: false, .. } => Vec::new(),
            Self::Proxy { answer, origin, .. } => {
                let mut out = std::mem::take(answer);
                out.extend(origin.outgoing(plaintext));
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
    queue: VecDeque<Event>,
    now: Instant,
}

impl Pump {
    pub fn new(config: Config, client: Peer, origins: Origins) -> Self {
        let info = ClientInfo { peer: "127.0.0.1:50000".parse().unwrap(), local: "127.0.0.1:8080".parse().unwrap() };
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
            queue: VecDeque::new(),
            now: Instant::now(),
        };
        pump.queue.push_back(Event::Start);
        pump
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
            if let Some(event) = self.queue.pop_front() {
                self.core.handle(self.now, event);
            }
            let mut moved = false;
            while let Some(command) = self.core.poll_command() {
                moved = true;
                self.carry_out(command);
            }
            if !moved && self.queue.is_empty() {
                return self;
            }
        }
        panic!("the scenario did not settle");
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
                self.queue.push_back(Event::WriteDrained { conn });
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
            Command::PauseReading { .. } | Command::ResumeReading { .. } => {}
        }
    }
}
