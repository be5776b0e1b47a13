//! The driver on real sockets, with a fake core: a byte relay that opens one upstream, keeps
//! the core's backpressure accounting, and checks that paused sockets are never read.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{ClientInfo, Command, ConnId, Event, FlowId, Hook, HookKind, HookReply, HookSet, ServerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::driver::{drive, Core, Options};
use crate::{Handler, NoopHandler, Proxy};

const SERVER: ConnId = ConnId(1);

#[derive(Debug, Default)]
struct Stats {
    /// `DataReceived` for a connection the relay had paused: the driver broke its promise.
    read_while_paused: usize,
    drained: usize,
    replies: Vec<(FlowId, String)>,
    /// Most bytes sent to one connection between two `WriteDrained`.
    max_unreported: usize,
    /// Bytes the driver reported forwarded, per source (client, server).
    forwarded: [u64; 2],
    /// `Event::Shutdown`s received.
    shutdowns: usize,
}

struct Relay {
    server: ServerAddr,
    high_water: usize,
    idle: Option<Duration>,
    hook_on_start: bool,
    /// On `Opened`, have the driver forward this many client bytes to the server.
    forward: Option<u64>,
    /// Close at once on `Event::Shutdown`, as an idle keep-alive connection does.
    close_on_shutdown: bool,
    queued: [usize; 2],
    congested: [bool; 2],
    paused: [bool; 2],
    read_closed: [bool; 2],
    deadline: Option<Instant>,
    client: Option<ClientInfo>,
    out: VecDeque<Command>,
    closed: bool,
    stats: Arc<Mutex<Stats>>,
}

impl Relay {
    fn new(server: SocketAddr) -> (Self, Arc<Mutex<Stats>>) {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let relay = Self {
            server: ServerAddr::new(server.ip().to_string(), server.port()),
            high_water: 64 * 1024,
            idle: None,
            hook_on_start: false,
            forward: None,
            close_on_shutdown: false,
            queued: [0; 2],
            congested: [false; 2],
            paused: [false; 2],
            read_closed: [false; 2],
            deadline: None,
            client: None,
            out: VecDeque::new(),
            closed: false,
            stats: Arc::clone(&stats),
        };
        (relay, stats)
    }

    fn id(i: usize) -> ConnId {
        ConnId(i as u64)
    }

    fn pause(&mut self, i: usize, paused: bool) {
        if self.paused[i] != paused && !self.read_closed[i] {
            self.paused[i] = paused;
            let conn = Self::id(i);
            self.out.push_back(if paused { Command::PauseReading { conn } } else { Command::ResumeReading { conn } });
        }
    }

    fn close_all(&mut self) {
        if !self.closed {
            self.closed = true;
            self.out.push_back(Command::CloseConnection { conn: ConnId::CLIENT, half: false });
            self.out.push_back(Command::CloseConnection { conn: SERVER, half: false });
        }
    }
}

impl Core for Relay {
    fn handle(&mut self, now: Instant, event: Event) {
        if self.closed {
            return;
        }
        if let Some(idle) = self.idle.filter(|_| !matches!(event, Event::Wakeup)) {
            self.deadline = Some(now + idle);
        }
        match event {
            Event::Start => {
                if self.hook_on_start {
                    let info = ClientInfo::new(([127, 0, 0, 1], 1).into(), ([127, 0, 0, 1], 2).into());
                    self.out.push_back(Command::Hook { flow: FlowId(1), hook: Hook::ClientConnected(info.clone()) });
                    self.client = Some(info);
                }
                self.pause(0, true);
                self.out.push_back(Command::OpenConnection { conn: SERVER, server: self.server.clone() });
            }
            Event::Opened { .. } | Event::Adopted { .. } => {
                if let Some(len) = self.forward {
                    self.out.push_back(Command::Forward { from: ConnId::CLIENT, to: SERVER, len });
                }
                self.pause(0, false);
            }
            Event::Forwarded { from, len, .. } => self.stats.lock().unwrap().forwarded[from.0 as usize] += len,
            Event::OpenFailed { error, .. } => {
                self.out.push_back(Command::SendData { conn: ConnId::CLIENT, data: format!("failed: {error}").into() });
                self.close_all();
            }
            Event::DataReceived { conn, data } => {
                let (from, to) = if conn == ConnId::CLIENT { (0, 1) } else { (1, 0) };
                if self.paused[from] {
                    self.stats.lock().unwrap().read_while_paused += 1;
                }
                self.queued[to] += data.len();
                let mut stats = self.stats.lock().unwrap();
                stats.max_unreported = stats.max_unreported.max(self.queued[to]);
                drop(stats);
                self.out.push_back(Command::SendData { conn: Self::id(to), data });
                if self.queued[to] > self.high_water && !self.congested[to] {
                    self.congested[to] = true;
                    self.pause(from, true);
                }
            }
            Event::WriteDrained { conn } => {
                let i = conn.0 as usize;
                self.stats.lock().unwrap().drained += 1;
                self.queued[i] = 0;
                if std::mem::take(&mut self.congested[i]) {
                    self.pause(1 - i, false);
                }
            }
            Event::ConnectionClosed { conn } => {
                let i = conn.0 as usize;
                self.read_closed[i] = true;
                if self.read_closed == [true, true] {
                    self.close_all();
                } else {
                    self.out.push_back(Command::CloseConnection { conn: Self::id(1 - i), half: true });
                }
            }
            Event::Wakeup => {
                if self.deadline.is_some_and(|d| d <= now) {
                    self.close_all();
                }
            }
            Event::HookReply { flow, reply } => {
                self.stats.lock().unwrap().replies.push((flow, format!("{reply:?}")));
                if let Some(info) = self.client.take() {
                    self.out.push_back(Command::Hook { flow: FlowId(2), hook: Hook::ClientDisconnected(info) });
                }
                if matches!(reply, HookReply::Kill) {
                    self.close_all();
                }
            }
            Event::Shutdown => {
                self.stats.lock().unwrap().shutdowns += 1;
                if self.close_on_shutdown {
                    self.close_all();
                }
            }
            Event::Inject { .. } | Event::Joined { .. } | Event::Carried { .. } | Event::Streams { .. } => {}
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.closed)
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }
}

/// An upstream that echoes everything and closes after the client's EOF.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

fn opts() -> Options {
    Options { connect_timeout: Duration::from_secs(5), linger: Duration::from_secs(2), pool: None, config: Default::default() }
}

/// Accept one client and drive `core` for it; returns the address to connect to.
async fn serve_one<C: Core + 'static, H: Handler>(core: C, handler: H) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        drive(core, stream, peer, &handler, &opts(), &crate::Injector::default(), Arc::default()).await;
    });
    addr
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got)).await.unwrap().unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_both_ways_with_backpressure_and_half_close() {
    let (relay, stats) = Relay::new(echo_server().await);
    let proxy = serve_one(relay, NoopHandler).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();

    let data: Bytes = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let (mut r, mut w) = client.split();
    let send = async {
        for chunk in data.chunks(100_000) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = async { tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got)).await.unwrap().unwrap() };
    tokio::join!(send, recv);
    assert!(got == data, "echoed {} of {} bytes, or different ones", got.len(), data.len());

    let stats = stats.lock().unwrap();
    assert_eq!(stats.read_while_paused, 0);
    assert!(stats.drained > 0);
    // Pausing works only if drains are reported: one read over the mark at most.
    let bound = 64 * 1024 + crate::driver::READ_BUF;
    assert!(stats.max_unreported <= bound, "{} > {bound}", stats.max_unreported);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_by_splicing_then_relays_the_rest() {
    let (mut relay, stats) = Relay::new(echo_server().await);
    let spliced = 3 * 1024 * 1024 + 17;
    relay.forward = Some(spliced);
    let proxy = serve_one(relay, NoopHandler).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();

    let data: Bytes = (0..5 * 1024 * 1024u32).map(|i| (i % 249) as u8).collect::<Vec<_>>().into();
    let (mut r, mut w) = client.split();
    let send = async {
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = async { tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got)).await.unwrap().unwrap() };
    tokio::join!(send, recv);
    assert!(got == data, "echoed {} of {} bytes, or different ones", got.len(), data.len());
    // Exactly the forwarded part bypassed the core; the rest came through it.
    assert_eq!(stats.lock().unwrap().forwarded, [spliced, 0]);
}

/// A forward reads a fast sender in big pieces (its read mark goes up), yet the bytes of a
/// sender that then slows down still move at once, and once the forward is over, small reads
/// are back to normal.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_keeps_up_with_a_sender_that_slows_down() {
    let (mut relay, stats) = Relay::new(echo_server().await);
    let spliced = 3 * 1024 * 1024;
    relay.forward = Some(spliced as u64);
    let proxy = serve_one(relay, NoopHandler).await;
    let client = TcpStream::connect(proxy).await.unwrap();
    let (mut r, mut w) = client.into_split();
    let data: Vec<u8> = (0..spliced as u32 + 4).map(|i| (i % 241) as u8).collect();
    let mut got = vec![0; data.len()];
    let prompt = Duration::from_secs(2);

    // Fast: one big write, read back whole.
    let burst = 2 * 1024 * 1024;
    let echo = async { tokio::time::timeout(prompt * 5, r.read_exact(&mut got[..burst])).await };
    let (_, echoed) = tokio::join!(w.write_all(&data[..burst]), echo);
    echoed.expect("the burst came back").unwrap();
    // Slow: a small piece, far below what the burst raised the mark to, and nothing after it.
    let small = burst + 1000;
    w.write_all(&data[burst..small]).await.unwrap();
    tokio::time::timeout(prompt, r.read_exact(&mut got[burst..small]))
        .await
        .expect("a small piece after a burst is not held back")
        .unwrap();
    // The rest of the forward, then four bytes through the usual path, on their own.
    w.write_all(&data[small..spliced]).await.unwrap();
    r.read_exact(&mut got[small..spliced]).await.unwrap();
    w.write_all(&data[spliced..]).await.unwrap();
    tokio::time::timeout(prompt, r.read_exact(&mut got[spliced..]))
        .await
        .expect("after the forward, a small read is not held back")
        .unwrap();
    assert!(got == data, "echoed bytes differ");
    assert_eq!(stats.lock().unwrap().forwarded, [spliced as u64, 0]);
}

#[tokio::test]
async fn a_refused_connect_reaches_the_core() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (relay, _) = Relay::new(([127, 0, 0, 1], port).into());
    let mut client = TcpStream::connect(serve_one(relay, NoopHandler).await).await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"failed: connection refused");
}

#[tokio::test]
async fn the_core_timer_fires() {
    let (mut relay, _) = Relay::new(echo_server().await);
    relay.idle = Some(Duration::from_millis(100));
    let mut client = TcpStream::connect(serve_one(relay, NoopHandler).await).await.unwrap();
    let start = Instant::now();
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"hi");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(5), "{took:?}");
}

/// Answers `ClientConnected` slowly with `Kill`, and counts notifications.
#[derive(Default)]
struct SlowKill {
    notified: Mutex<usize>,
}

impl Handler for SlowKill {
    fn hooks(&self) -> HookSet {
        HookSet::NONE.with(HookKind::ClientConnected)
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        if !hook.is_blocking() {
            *self.notified.lock().unwrap() += 1;
            return HookReply::Continue;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        HookReply::Kill
    }
}

#[tokio::test]
async fn hooks_run_beside_the_connection_io() {
    let (mut relay, stats) = Relay::new(echo_server().await);
    relay.hook_on_start = true;
    let handler = Arc::new(SlowKill::default());
    let mut client = TcpStream::connect(serve_one(relay, Arc::clone(&handler)).await).await.unwrap();

    let start = Instant::now();
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(250), "the pending hook held up the relay");

    // The reply (Kill) closes the connection.
    assert_eq!(read_to_end(&mut client).await, b"");
    assert!(start.elapsed() >= Duration::from_millis(300));
    let replies = stats.lock().unwrap().replies.clone();
    assert_eq!(replies, vec![(FlowId(1), "Kill".to_owned())]);
    // The notification raised after the reply ran, and got no reply back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*handler.notified.lock().unwrap(), 1);
}

/// A ready hook future is answered in the same turn.
struct Instant_;

impl Handler for Instant_ {
    async fn hook(&self, _flow: FlowId, _hook: Hook) -> HookReply {
        HookReply::Continue
    }
}

#[tokio::test]
async fn ready_hooks_are_answered() {
    let (mut relay, stats) = Relay::new(echo_server().await);
    relay.hook_on_start = true;
    let mut client = TcpStream::connect(serve_one(relay, Instant_).await).await.unwrap();
    client.write_all(b"x").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"x");
    assert_eq!(stats.lock().unwrap().replies, vec![(FlowId(1), "Continue".to_owned())]);
}

/// An embedder's error page: the `Error` hook puts it in place of the proxy's own answer,
/// keeping the status and naming the cause.
struct ErrorPage;

impl Handler for ErrorPage {
    fn hooks(&self) -> HookSet {
        HookSet::NONE.with(HookKind::Error)
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        let Hook::Error(mut flow) = hook else { return HookReply::Continue };
        let (Some(error), Some(response)) = (&flow.error, &flow.response) else { return HookReply::Continue };
        let page = format!("<p>our page: {} ({})</p>", error.message, response.status);
        let mut headers = proxy_core::Headers::new();
        headers.append("content-type", "text/html");
        flow.response = Some(proxy_core::Response::new(response.status, headers, page));
        HookReply::Update(flow)
    }
}

#[tokio::test]
async fn an_error_hook_replaces_the_502_for_an_unreachable_upstream() {
    // A port nobody listens on any more.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy = Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).handler(ErrorPage).build().await.unwrap();
    let addr = proxy.local_addr();
    let handle = proxy.shutdown_handle();
    let run = tokio::spawn(proxy.run());

    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET http://{dead}/x HTTP/1.1\r\nHost: {dead}\r\nConnection: close\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_to_end(&mut client).await).unwrap();
    let page = format!("<p>our page: cannot connect to {dead}: connection refused (502)</p>");
    assert!(answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{answer}");
    assert!(answer.contains("\r\ncontent-type: text/html\r\n"), "{answer}");
    assert!(answer.contains(&format!("\r\ncontent-length: {}\r\n", page.len())), "{answer}");
    assert!(answer.ends_with(&format!("\r\n\r\n{page}")), "{answer}");

    handle.shutdown_now();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
}

/// Answers the first bytes from the client with a long "no" and closes.
const NO_LEN: usize = 2 * 1024 * 1024;

#[derive(Default)]
struct Refuser {
    out: VecDeque<Command>,
    closed: bool,
}

impl Core for Refuser {
    fn handle(&mut self, _now: Instant, event: Event) {
        if let (Event::DataReceived { .. }, false) = (&event, self.closed) {
            self.closed = true;
            self.out.push_back(Command::SendData { conn: ConnId::CLIENT, data: vec![b'n'; NO_LEN].into() });
            self.out.push_back(Command::CloseConnection { conn: ConnId::CLIENT, half: false });
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }
}

#[tokio::test]
async fn closing_a_client_that_still_sends_delivers_the_answer() {
    let mut client = TcpStream::connect(serve_one(Refuser::default(), NoopHandler).await).await.unwrap();
    let (mut r, mut w) = client.split();
    let send = async {
        // Far more than the proxy reads before it answers and closes.
        let body = vec![b'x'; 4 * 1024 * 1024];
        let _ = w.write_all(&body).await;
        let _ = w.shutdown().await;
    };
    let mut got = Vec::new();
    let recv = async {
        // Read late, after a reset (if one was sent) has arrived.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut got)).await.unwrap()
    };
    let ((), read) = tokio::join!(send, recv);
    read.unwrap();
    assert!(got.len() == NO_LEN && got.iter().all(|&b| b == b'n'), "got {} bytes", got.len());
}

async fn spawn_proxy(max: Option<usize>, shutdown_timeout: Duration) -> (SocketAddr, crate::ShutdownHandle, tokio::task::JoinHandle<()>) {
    let upstream = echo_server().await;
    let mut builder = Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).no_intercept().shutdown_timeout(shutdown_timeout);
    if let Some(n) = max {
        builder = builder.max_connections(n);
    }
    let proxy = builder.build().await.unwrap();
    let addr = proxy.local_addr();
    assert_ne!(addr.port(), 0);
    let handle = proxy.shutdown_handle();
    let run = tokio::spawn(proxy.run_with(move |_| Relay::new(upstream).0));
    (addr, handle, run)
}

async fn echo_once(client: &mut TcpStream, msg: &[u8]) {
    client.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, msg);
}

#[tokio::test]
async fn max_connections_holds_back_the_next_client() {
    let (addr, handle, run) = spawn_proxy(Some(1), Duration::from_secs(5)).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut first, b"one").await;

    // Connected in the backlog, but not served while the first one lasts.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(b"two").await.unwrap();
    let mut buf = [0; 3];
    assert!(tokio::time::timeout(Duration::from_millis(200), second.read_exact(&mut buf)).await.is_err());

    first.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut first).await, b"");
    tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"two");

    handle.shutdown_now();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_connections_finish() {
    let (addr, handle, run) = spawn_proxy(None, Duration::from_secs(10)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut client, b"before").await;

    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // No longer accepting...
    assert!(TcpStream::connect(addr).await.is_err());
    // ...but the connection in flight still works, and its end ends `run`.
    echo_once(&mut client, b"after").await;
    assert!(!run.is_finished());
    client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_timeout_drops_lingering_connections() {
    let (addr, handle, run) = spawn_proxy(None, Duration::from_millis(200)).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut client, b"idle").await;

    let start = Instant::now();
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(2), "{took:?}");
    // Dropped: the client sees its end.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn graceful_shutdown_tells_each_connection_and_counts_them() {
    let upstream = echo_server().await;
    let handle = crate::ShutdownHandle::new();
    let builder = Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).shutdown_timeout(Duration::from_secs(30));
    // Bound before it is built, as the command line tool does before it makes its CA.
    let builder = builder.shutdown_handle(handle.clone()).bind().unwrap();
    let addr = builder.local_addr().unwrap();
    let proxy = builder.build().await.unwrap();
    assert_eq!(proxy.local_addr(), addr);
    assert_eq!(handle.timeout(), Duration::from_secs(30));
    let stats = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stats);
    let run = tokio::spawn(proxy.run_with(move |_| {
        let (mut relay, stats) = Relay::new(upstream);
        relay.close_on_shutdown = true;
        seen.lock().unwrap().push(stats);
        relay
    }));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        echo_once(&mut client, b"idle").await;
        clients.push(client);
    }
    assert_eq!(handle.connections(), 2);

    let start = Instant::now();
    handle.shutdown();
    // Told to keep nothing alive, both close at once: far within the 30 s timeout.
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(handle.connections(), 0);
    let told: Vec<usize> = stats.lock().unwrap().iter().map(|s| s.lock().unwrap().shutdowns).collect();
    assert_eq!(told, [1, 1]);
    for mut client in clients {
        assert_eq!(read_to_end(&mut client).await, b"");
    }
}

#[test]
fn a_port_taken_is_refused_whatever_the_threads() {
    let first = Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).threads(2).bind().unwrap();
    let taken = first.local_addr().unwrap();
    // Its sockets share the port among themselves (SO_REUSEPORT), not with another proxy.
    for threads in [1, 2] {
        let second = Proxy::builder().listen(taken).threads(threads).bind();
        assert_eq!(second.map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::AddrInUse, "{threads} threads");
    }
}

#[test]
fn the_waiting_line_says_what_and_how_long() {
    assert_eq!(
        crate::proxy::waiting_line(2, Duration::from_secs(5)),
        "shutting down: waiting up to 5s for 2 connections to finish; press Ctrl-C again to quit now"
    );
    assert_eq!(
        crate::proxy::waiting_line(1, Duration::from_millis(1500)),
        "shutting down: waiting up to 1.5s for 1 connection to finish; press Ctrl-C again to quit now"
    );
    assert_eq!(crate::proxy::waiting_line(0, Duration::from_secs(5)), "shutting down");
}

#[tokio::test]
async fn shutdown_before_run_returns_at_once() {
    let proxy = Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).no_intercept().build().await.unwrap();
    proxy.shutdown_handle().shutdown();
    tokio::time::timeout(Duration::from_secs(1), proxy.run()).await.unwrap();
}

/// Throughput of the driver alone (fake core): `cargo test -p proxy-io --release -- --ignored
/// --nocapture`. Streams 1 GiB from an upstream to the client, directly and through the relay.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn relay_throughput() {
    const TOTAL: usize = 1 << 30;
    async fn source() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let chunk = vec![7u8; 256 * 1024];
                    let mut sent = 0;
                    while sent < TOTAL {
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len();
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }
    async fn sink(addr: SocketAddr) -> (usize, Duration) {
        let start = Instant::now();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.shutdown().await.unwrap();
        let mut buf = vec![0; 256 * 1024];
        let mut n = 0;
        loop {
            match client.read(&mut buf).await.unwrap() {
                0 => break,
                k => n += k,
            }
        }
        (n, start.elapsed())
    }
    let upstream = source().await;
    let (n, direct) = sink(upstream).await;
    assert_eq!(n, TOTAL);
    let (mut relay, _) = Relay::new(upstream);
    relay.high_water = 256 * 1024;
    let (n, relayed) = sink(serve_one(relay, NoopHandler).await).await;
    assert_eq!(n, TOTAL);
    let gib = |d: Duration| TOTAL as f64 / d.as_secs_f64() / (1 << 30) as f64;
    println!("direct {:.2} GiB/s, relayed {:.2} GiB/s ({:.2}x)", gib(direct), gib(relayed), direct.as_secs_f64() / relayed.as_secs_f64());
}

/// Keeps returning one deadline, which passes; closes when the client does.
struct FixedDeadline {
    at: Instant,
    wakeups: Arc<Mutex<usize>>,
    out: VecDeque<Command>,
    closed: bool,
}

impl Core for FixedDeadline {
    fn handle(&mut self, _now: Instant, event: Event) {
        match event {
            Event::Wakeup => *self.wakeups.lock().unwrap() += 1,
            Event::ConnectionClosed { conn } => {
                self.closed = true;
                self.out.push_back(Command::CloseConnection { conn, half: false });
            }
            _ => {}
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.at)
    }

    fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty()
    }
}

#[tokio::test]
async fn a_deadline_is_woken_once() {
    let wakeups = Arc::new(Mutex::new(0));
    let core = FixedDeadline {
        at: Instant::now() + Duration::from_millis(20),
        wakeups: Arc::clone(&wakeups),
        out: VecDeque::new(),
        closed: false,
    };
    let mut client = TcpStream::connect(serve_one(core, NoopHandler).await).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"");
    assert_eq!(*wakeups.lock().unwrap(), 1);
}
