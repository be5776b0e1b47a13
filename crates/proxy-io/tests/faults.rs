//! Faults, through the real core and the real driver: clients and servers that go away in the
//! middle of a body, reset, stay silent or cannot be reached. For each, the other side gets a
//! clear result (a response naming the cause, or a cut connection once a response had
//! started), the flow's `error` hook is raised exactly once, and no socket or task is left
//! behind.
//!
//! Leftovers are counted in this process (`/proc/self/fd`, the runtime's live tasks), so the
//! tests take turns ([`SERIAL`]) and live in a test binary of their own.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy_core::{Config, FlowError, FlowId, Hook, HookKind, HookReply, HookSet};
use proxy_io::{Handler, Proxy, ShutdownHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every test counts this process's descriptors and tasks: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long anything in these tests may take; a test that waits longer has failed.
const LIMIT: Duration = Duration::from_secs(10);
/// How long leftovers may take to go once the fault is over.
const SETTLE: Duration = Duration::from_secs(5);
/// The silent server's timeout.
const SERVER_IDLE: Duration = Duration::from_millis(500);

/// Runs `test` on a runtime of its own, once no other test runs.
fn serial<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(test());
}

/// What one flow's hooks were, in order, and the error its `error` hook carried.
#[derive(Debug, Default, Clone)]
struct FlowHooks {
    kinds: Vec<HookKind>,
    errors: Vec<FlowError>,
}

/// Answers every hook with `Continue` and records the HTTP ones per flow.
#[derive(Default)]
struct Recorder {
    /// Flow ids count per client connection, so a flow is its client and its id.
    flows: Mutex<HashMap<(SocketAddr, FlowId), FlowHooks>>,
}

impl Handler for Recorder {
    fn hooks(&self) -> HookSet {
        HookSet::ALL
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        if let Some(flow) = hook.flow() {
            let mut flows = self.flows.lock().unwrap();
            let entry = flows.entry((flow.client.peer, flow.id)).or_default();
            entry.kinds.push(hook.kind());
            if let Hook::Error(f) = &hook {
                entry.errors.push(f.error.clone().expect("an error hook carries its error"));
            }
        }
        HookReply::Continue
    }
}

/// A proxy on `127.0.0.1:0` with a [`Recorder`], and this process's descriptors and tasks as
/// they were once it was up.
struct Bench {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    shutdown: ShutdownHandle,
    run: JoinHandle<()>,
    fds: usize,
    tasks: usize,
}

impl Bench {
    async fn start(config: Config) -> Bench {
        let recorder = Arc::new(Recorder::default());
        let proxy = Proxy::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .config(config)
            .no_intercept()
            .handler(Arc::clone(&recorder))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap();
        let addr = proxy.local_addr();
        let shutdown = proxy.shutdown_handle();
        let run = tokio::spawn(proxy.run());
        tokio::task::yield_now().await;
        Bench { addr, recorder, shutdown, run, fds: open_fds(), tasks: alive_tasks() }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Waits (bounded) until descriptors and tasks are back to what they were at the start.
    async fn settle(&self) {
        let start = Instant::now();
        loop {
            let (fds, tasks) = (open_fds(), alive_tasks());
            if fds <= self.fds && tasks <= self.tasks {
                return;
            }
            assert!(
                start.elapsed() < SETTLE,
                "left behind after {SETTLE:?}: {fds} descriptors (had {}), {tasks} tasks (had {})\n{}",
                self.fds,
                self.tasks,
                fd_list(),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The one flow there was, which must have failed: its `error` hook fired exactly once,
    /// and was its last hook. Returns the error.
    fn failed_flow(&self) -> FlowError {
        let flows = self.recorder.flows.lock().unwrap().clone();
        assert_eq!(flows.len(), 1, "expected one flow: {flows:?}");
        let flow = flows.into_values().next().unwrap();
        let errors = flow.kinds.iter().filter(|k| **k == HookKind::Error).count();
        assert_eq!(errors, 1, "the error hook fired {errors} times: {flow:?}");
        assert_eq!(flow.kinds.last(), Some(&HookKind::Error), "a hook after the error: {flow:?}");
        flow.errors[0].clone()
    }

    /// The flow's error hook, once the driver has run it (bounded wait).
    async fn wait_failed_flow(&self) -> FlowError {
        let start = Instant::now();
        while !self.recorder.flows.lock().unwrap().values().any(|f| !f.errors.is_empty()) {
            assert!(start.elapsed() < LIMIT, "no error hook: {:?}", self.recorder.flows.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A second error hook would come with the same connection's next events.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.failed_flow()
    }

    async fn stop(self) {
        self.shutdown.shutdown_now();
        tokio::time::timeout(LIMIT, self.run).await.unwrap().unwrap();
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn fd_list() -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_default();
        out.push_str(&format!("  {} -> {target}\n", entry.file_name().to_string_lossy()));
    }
    out
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// A config for these tests: every hook, a short server idle timeout, and bodies moved by
/// the driver (`spliced`) or through the core.
fn config(spliced: bool) -> Config {
    Config {
        server_idle_timeout: SERVER_IDLE,
        forward_min: spliced.then_some(64 * 1024),
        ..Config::default()
    }
}

/// An origin for one connection: `serve` runs on the first one accepted; the task yields
/// what it returns. The listener goes with the task.
async fn origin<T, F, Fut>(serve: F) -> (SocketAddr, JoinHandle<T>)
where
    T: Send + 'static,
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        drop(listener);
        serve(stream).await
    });
    (addr, task)
}

/// The origin's result, within the limit.
async fn finished<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(LIMIT, task).await.expect("the origin is still busy").unwrap()
}

/// Reads up to the end of a head; returns the body bytes that came with it.
async fn read_head(stream: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until EOF or an error; returns how many bytes came.
async fn drain(stream: &mut TcpStream) -> u64 {
    let mut chunk = vec![0; 64 * 1024];
    let mut n = 0;
    while let Ok(k) = stream.read(&mut chunk).await {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

/// Closes `stream` with a reset (`SO_LINGER` 0) instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// A whole response with a `Content-Length` body: status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let read = async {
        let (head, mut body) = read_head(stream).await.unwrap();
        let head = String::from_utf8(head).unwrap();
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .expect("a content-length");
        while body.len() < len {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the body ended early: {}", String::from_utf8_lossy(&body));
            body.extend_from_slice(&chunk[..n]);
        }
        (status, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(LIMIT, read).await.expect("no response")
}

fn get(authority: &str) -> String {
    format!("GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

const BIG: u64 = 1 << 30;

// ---------------------------------------------------------------------------------------------
// The client goes away

async fn client_gone_mid_upload(spliced: bool) {
    let bench = Bench::start(config(spliced)).await;
    // The origin reads the body until the proxy closes its connection.
    let (origin, task) = origin(|mut s| async move {
        let (_, body) = read_head(&mut s).await.unwrap();
        body.len() as u64 + drain(&mut s).await
    })
    .await;
    let mut client = bench.connect().await;
    let head = format!("POST http://{origin}/up HTTP/1.1\r\nHost: {origin}\r\nContent-Length: {BIG}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&vec![b'u'; 1 << 20]).await.unwrap();
    drop(client);

    let got = finished(task).await;
    assert!(got < BIG, "the origin got the whole body");
    let error = bench.wait_failed_flow().await;
    assert_eq!((error.message.as_str(), error.status), ("client disconnected", None));
    bench.settle().await;
    bench.stop().await;
}

#[test]
fn client_gone_mid_upload_through_the_core() {
    serial(|| client_gone_mid_upload(false));
}

#[test]
fn client_gone_mid_upload_spliced() {
    serial(|| client_gone_mid_upload(true));
}

async fn client_gone_mid_download(spliced: bool, half_close_first: bool) {
    let bench = Bench::start(config(spliced)).await;
    // The origin sends a body bigger than anyone reads until its writes fail.
    let (origin, task) = origin(|mut s| async move {
        read_head(&mut s).await.unwrap();
        s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes()).await.unwrap();
        let chunk = vec![b'd'; 64 * 1024];
        let mut sent = 0;
        while sent < BIG && s.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
        }
        sent
    })
    .await;
    let mut client = bench.connect().await;
    client.write_all(get(&origin.to_string()).as_bytes()).await.unwrap();
    if half_close_first {
        // Done sending, still reading: the proxy hears of the end only when writes fail.
        client.shutdown().await.unwrap();
    }
    let mut got = 0;
    let mut chunk = vec![0; 64 * 1024];
    while got < 1 << 20 {
        let n = tokio::time::timeout(LIMIT, client.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        got += n;
    }
    // Unread data waiting: this close resets.
    drop(client);

    let sent = finished(task).await;
    assert!(sent < BIG, "the origin sent the whole body");
    let error = bench.wait_failed_flow().await;
    assert_eq!((error.message.as_str(), error.status), ("client disconnected", None));
    bench.settle().await;
    bench.stop().await;
}

#[test]
fn client_gone_mid_download_through_the_core() {
    serial(|| client_gone_mid_download(false, false));
}

#[test]
fn client_gone_mid_download_spliced() {
    serial(|| client_gone_mid_download(true, false));
}

#[test]
fn half_closed_client_gone_mid_download() {
    serial(|| client_gone_mid_download(false, true));
}

#[test]
fn half_closed_client_gone_mid_download_spliced() {
    serial(|| client_gone_mid_download(true, true));
}

// ---------------------------------------------------------------------------------------------
// The server goes away, or never answers

async fn server_resets_mid_download(spliced: bool) {
    let bench = Bench::start(config(spliced)).await;
    let (origin, task) = origin(|mut s| async move {
        read_head(&mut s).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n").await.unwrap();
        s.write_all(&vec![b'd'; 300_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        reset(s);
    })
    .await;
    let mut client = bench.connect().await;
    client.write_all(get(&origin.to_string()).as_bytes()).await.unwrap();
    let (head, body) = tokio::time::timeout(LIMIT, read_head(&mut client)).await.unwrap().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&head));
    // The rest of what came, then the cut: short of the promised length.
    let rest = tokio::time::timeout(LIMIT, drain(&mut client)).await.expect("the client was not cut off");
    let got = body.len() as u64 + rest;
    assert!(got < 10_000_000, "got {got} bytes");
    drop(client);

    finished(task).await;
    let error = bench.wait_failed_flow().await;
    assert_eq!(error.status, None, "{error:?}");
    assert!(error.message.starts_with(&format!("{origin}: ")), "{error:?}");
    bench.settle().await;
    bench.stop().await;
}

#[test]
fn server_resets_mid_download_through_the_core() {
    serial(|| server_resets_mid_download(false));
}

#[test]
fn server_resets_mid_download_spliced() {
    serial(|| server_resets_mid_download(true));
}

async fn server_resets_mid_upload(spliced: bool) {
    let bench = Bench::start(config(spliced)).await;
    let (origin, task) = origin(|mut s| async move {
        let (_, mut body) = read_head(&mut s).await.unwrap();
        let mut chunk = [0; 4096];
        while body.len() < 100_000 {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body.extend_from_slice(&chunk[..n]);
        }
        reset(s);
    })
    .await;
    let mut client = bench.connect().await;
    // A client that sends its whole body before it reads (python's http.client does): the
    // proxy reads the rest and drops it, answers 502, and closes once the body is over.
    let len = 8 << 20;
    let head = format!("POST http://{origin}/up HTTP/1.1\r\nHost: {origin}\r\nContent-Length: {len}\r\n\r\n");
    let upload = async {
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(&vec![b'u'; len]).await.unwrap();
    };
    tokio::time::timeout(LIMIT, upload).await.expect("the proxy stopped reading the body");
    let (status, body) = read_response(&mut client).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(&origin.to_string()), "the 502 does not name the server: {body}");
    let rest = tokio::time::timeout(LIMIT, drain(&mut client)).await.expect("the proxy did not close");
    assert_eq!(rest, 0);
    drop(client);

    finished(task).await;
    let error = bench.wait_failed_flow().await;
    assert_eq!(error.status, Some(502), "{error:?}");
    bench.settle().await;
    bench.stop().await;
}

#[test]
fn server_resets_mid_upload_through_the_core() {
    serial(|| server_resets_mid_upload(false));
}

#[test]
fn server_resets_mid_upload_spliced() {
    serial(|| server_resets_mid_upload(true));
}

#[test]
fn silent_server_is_504_after_the_idle_timeout() {
    serial(|| async {
        let bench = Bench::start(config(false)).await;
        // Reads the request, answers nothing, and waits for the proxy to hang up.
        let (origin, task) = origin(|mut s| async move {
            read_head(&mut s).await.unwrap();
            drain(&mut s).await
        })
        .await;
        let mut client = bench.connect().await;
        let start = Instant::now();
        client.write_all(get(&origin.to_string()).as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut client).await;
        let took = start.elapsed();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains(&format!("{origin} sent nothing for 0.5 s")), "{body}");
        assert!(took >= SERVER_IDLE && took < SERVER_IDLE * 4, "504 after {took:?}");
        assert_eq!(finished(task).await, 0);
        drop(client);

        let error = bench.wait_failed_flow().await;
        assert_eq!(error.status, Some(504), "{error:?}");
        bench.settle().await;
        bench.stop().await;
    });
}

// ---------------------------------------------------------------------------------------------
// The server cannot be reached

/// A GET for `authority` is answered `status` with a body containing every one of `words`.
async fn unreachable(authority: &str, status: u16, words: &[&str]) {
    let bench = Bench::start(config(false)).await;
    let mut client = bench.connect().await;
    client.write_all(get(authority).as_bytes()).await.unwrap();
    let (got, body) = read_response(&mut client).await;
    assert_eq!(got, status, "{body}");
    for word in words {
        assert!(body.contains(word), "{word:?} is not in {body:?}");
    }
    drop(client);

    let error = bench.wait_failed_flow().await;
    assert_eq!(error.status, Some(status), "{error:?}");
    bench.settle().await;
    bench.stop().await;
}

#[test]
fn unresolvable_name_is_502() {
    // The host is named once, by what could not be reached; the resolver's failure follows.
    serial(|| unreachable("nowhere.invalid", 502, &["cannot connect to nowhere.invalid:80: name resolution failed: "]));
}

#[test]
fn refused_connection_is_502() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let authority = format!("127.0.0.1:{port}");
    serial(|| async move { unreachable(&authority, 502, &[&authority, "refused"]).await });
}
