//! WebSocket load for the benchmarks, in RFC 6455 frames written by hand (no library between
//! the measurement and the wire).
//!
//! ```text
//! wsload serve PORT                       origin: /echo echoes; /stream/N sends N MiB as 64 KiB binary messages
//! wsload echo URL PROXY CONNS SECS SIZE   CONNS connections, each sending SIZE-byte text messages and awaiting the echo
//! wsload stream URL PROXY MIB SIZE        one connection reading MIB MiB of SIZE-byte messages from /stream
//! wsload hold URL PROXY N SECS            N idle connections (one echo each first), held SECS seconds
//! ```
//!
//! PROXY is `-` for a direct connection, else `HOST:PORT` of an explicit proxy, which gets the
//! upgrade in absolute form. Results are one JSON line on stdout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64(&sha.digest().bytes())
}

/// Append a frame: FIN, `opcode`, masked with `key` when given.
fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mask = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask | n as u8),
        n if n <= 0xffff => {
            out.push(mask | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match key {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i & 3]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// Read one message (joining fragments, skipping pings and pongs): opcode and payload length;
/// the payload goes into `buf`. `None` on close or EOF.
async fn read_message<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<(u8, usize)> {
    buf.clear();
    let mut opcode = 0;
    loop {
        let mut head = [0u8; 2];
        r.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                r.read_exact(&mut b).await.ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        } as usize;
        let key = if head[1] & 0x80 != 0 {
            let mut k = [0u8; 4];
            r.read_exact(&mut k).await.ok()?;
            Some(k)
        } else {
            None
        };
        let start = buf.len();
        buf.resize(start + len, 0);
        r.read_exact(&mut buf[start..]).await.ok()?;
        if let Some(k) = key {
            buf[start..].iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i & 3]);
        }
        let op = head[0] & 0x0f;
        if op == 0x8 {
            return None;
        }
        if op >= 0x8 {
            buf.truncate(start);
            continue;
        }
        if op != 0 {
            opcode = op;
        }
        if head[0] & 0x80 != 0 {
            return Some((opcode, buf.len()));
        }
    }
}

async fn read_head<R: AsyncReadExt + Unpin>(r: &mut R) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await.ok()?;
        head.push(b[0]);
        if head.len() > 16384 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

async fn serve(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    eprintln!("wsload serving on 127.0.0.1:{port}");
    loop {
        let (s, _) = listener.accept().await.expect("accept");
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let (r, mut w) = s.into_split();
            let mut r = BufReader::with_capacity(256 * 1024, r);
            let Some(head) = read_head(&mut r).await else { return };
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let key = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")).map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(&key)
            );
            if w.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if let Some(mib) = path.strip_prefix("/stream/").and_then(|n| n.parse::<usize>().ok()) {
                let size = 64 * 1024;
                let payload = vec![0x5au8; size];
                let mut frame = Vec::new();
                put_frame(&mut frame, 0x2, &payload, None);
                for _ in 0..(mib << 20) / size {
                    if w.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                let mut end = Vec::new();
                put_frame(&mut end, 0x1, b"done", None);
                let _ = w.write_all(&end).await;
                let mut buf = Vec::new();
                while read_message(&mut r, &mut buf).await.is_some() {}
                return;
            }
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while let Some((op, _)) = read_message(&mut r, &mut buf).await {
                out.clear();
                put_frame(&mut out, op, &buf, None);
                if w.write_all(&out).await.is_err() {
                    return;
                }
            }
            let mut close = Vec::new();
            put_frame(&mut close, 0x8, &1000u16.to_be_bytes(), None);
            let _ = w.write_all(&close).await;
        });
    }
}

/// Connect and upgrade: directly, or through the explicit proxy with the target in
/// absolute form.
async fn connect(url: &str, path: &str, proxy: &str) -> (BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf) {
    let authority = url.trim_start_matches("ws://").trim_end_matches('/');
    let addr: SocketAddr = if proxy == "-" { authority.parse().expect("ws://IP:PORT") } else { proxy.parse().expect("proxy HOST:PORT") };
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let target = if proxy == "-" { path.to_owned() } else { format!("http://{authority}{path}") };
    // WSLOAD_UPGRADE names another protocol, which a proxy relays as a raw tunnel: the cost of
    // the WebSocket layer over the cost of carrying the bytes at all.
    let protocol = std::env::var("WSLOAD_UPGRADE").unwrap_or_else(|_| "websocket".into());
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (r, mut w) = s.into_split();
    w.write_all(head.as_bytes()).await.expect("send the upgrade");
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let answer = read_head(&mut r).await.expect("an answer to the upgrade");
    assert!(answer.starts_with("HTTP/1.1 101"), "upgrade refused: {answer}");
    assert!(answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "bad Sec-WebSocket-Accept: {answer}");
    (r, w)
}

async fn echo(url: String, proxy: String, conns: usize, secs: u64, size: usize) {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..conns {
        let (url, proxy, count, stop) = (url.clone(), proxy.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = connect(&url, "/echo", &proxy).await;
            let payload: Vec<u8> = (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            let key = [i as u8, 0x5a, 0xa5, 0x3c];
            let mut frame = Vec::new();
            put_frame(&mut frame, 0x1, &payload, Some(key));
            let mut buf = Vec::new();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                w.write_all(&frame).await.expect("send");
                let (op, n) = read_message(&mut r, &mut buf).await.expect("an echo");
                assert!(op == 0x1 && n == size && buf == payload, "the echo differs");
                lat.push(t.elapsed());
                count.fetch_add(1, Ordering::Relaxed);
            }
            let mut close = Vec::new();
            put_frame(&mut close, 0x8, &1000u16.to_be_bytes(), Some(key));
            let _ = w.write_all(&close).await;
            lat
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let done = count.load(Ordering::Relaxed) - start_count;
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        latencies.extend(t.await.expect("a connection task"));
    }
    latencies.sort();
    let p = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "{{\"test\":\"ws-echo\",\"conns\":{conns},\"size\":{size},\"msgs_per_s\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        done as f64 / took,
        p(0.5),
        p(0.99)
    );
}

async fn stream(url: String, proxy: String, mib: usize) {
    let (mut r, mut w) = connect(&url, &format!("/stream/{mib}"), &proxy).await;
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut total = 0usize;
    loop {
        let (op, n) = read_message(&mut r, &mut buf).await.expect("the stream ended early");
        if op == 0x1 {
            break;
        }
        total += n;
    }
    let took = start.elapsed().as_secs_f64();
    assert_eq!(total, mib << 20, "bytes received");
    let mut close = Vec::new();
    put_frame(&mut close, 0x8, &1000u16.to_be_bytes(), Some([1, 2, 3, 4]));
    let _ = w.write_all(&close).await;
    println!("{{\"test\":\"ws-stream\",\"mib\":{mib},\"secs\":{took:.3},\"MBps\":{:.1}}}", total as f64 / took / 1e6);
}

async fn hold(url: String, proxy: String, n: usize, secs: u64) {
    let mut conns = Vec::with_capacity(n);
    let mut buf = Vec::new();
    for i in 0..n {
        let (mut r, mut w) = connect(&url, "/echo", &proxy).await;
        let mut frame = Vec::new();
        put_frame(&mut frame, 0x1, b"hello", Some([i as u8, 1, 2, 3]));
        w.write_all(&frame).await.expect("send");
        read_message(&mut r, &mut buf).await.expect("an echo");
        conns.push((r, w));
    }
    println!("{{\"test\":\"ws-hold\",\"conns\":{n}}}");
    eprintln!("holding {n} connections");
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("missing argument {i}; see the module docs"));
    match args.first().map(String::as_str) {
        Some("serve") => rt.block_on(serve(arg(1).parse().expect("PORT"))),
        Some("echo") => rt.block_on(echo(arg(1), arg(2), arg(3).parse().unwrap(), arg(4).parse().unwrap(), arg(5).parse().unwrap())),
        Some("stream") => rt.block_on(stream(arg(1), arg(2), arg(3).parse().unwrap())),
        Some("hold") => rt.block_on(hold(arg(1), arg(2), arg(3).parse().unwrap(), arg(4).parse().unwrap())),
        _ => {
            eprintln!("usage: wsload serve PORT | echo URL PROXY CONNS SECS SIZE | stream URL PROXY MIB | hold URL PROXY N SECS");
            std::process::exit(2);
        }
    }
}
