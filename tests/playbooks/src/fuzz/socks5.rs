//! The SOCKS5 target: any client bytes, cut anywhere, against a SOCKS5 listener (with or
//! without a password, hooks on or off), the server connection opening or failing as the input
//! says. Checked after every run:
//!
//! - every command names a live connection, nothing follows a close;
//! - what the client is sent before its tunnel is a valid SOCKS5 answer sequence: the method
//!   choice, the password verdict if one was asked, one reply (succeeded only once a server
//!   connection opened, and then with every byte the client sent after its request passed to
//!   that server in order); or one of the answers to a client that does not speak SOCKS5;
//! - at most one server connection is opened, and only after a greeting and a request the
//!   reference parser below takes, to the target it names;
//! - the same bytes cut differently give the same commands.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proxy_core::{Command, Connection, Event, HookKind, HookReply, HookSet, Mode, OpenError, ProxyAuth, ServerAddr};

use crate::{client_info, Config, CLIENT, S1};

/// Cut `data` into pieces at the lengths `cuts` gives (1 to 16 bytes each, cycling).
fn pieces<'a>(data: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts.get(i % cuts.len().max(1)).map_or(rest.len(), |c| usize::from(c % 16) + 1).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// What one run produced, independent of how the input was cut.
#[derive(Debug, PartialEq, Eq, Default)]
struct Outcome {
    to_client: Vec<u8>,
    to_server: Vec<u8>,
    opened: Option<ServerAddr>,
    client_closed: bool,
}

/// Drive one connection: `flags` picks the configuration (bit 0: a password; bit 1: hooks;
/// bit 2: the server fails to open; bit 3: the `HttpConnect` hook refuses).
fn drive(flags: u8, client: &[&[u8]]) -> Outcome {
    let config = Config {
        mode: Mode::Socks5,
        hooks: if flags & 2 != 0 { HookSet::ALL } else { HookSet::NONE },
        proxy_auth: (flags & 1 != 0).then(|| ProxyAuth::single("u", "p")),
        ..Config::default()
    };
    let mut conn = Connection::new(Arc::new(config), client_info());
    let now = Instant::now();
    let mut outcome = Outcome::default();
    let mut queue: Vec<Event> = vec![Event::Start];
    queue.extend(client.iter().map(|piece| Event::DataReceived { conn: CLIENT, data: Bytes::copy_from_slice(piece) }));
    queue.reverse();
    let mut closed_server = false;
    for _ in 0..10_000 {
        let Some(event) = queue.pop() else { break };
        conn.handle(now, event);
        while let Some(command) = conn.poll_command() {
            match command {
                Command::SendData { conn: c, data } if c == CLIENT => {
                    assert!(!outcome.client_closed, "data after the client's close");
                    outcome.to_client.extend_from_slice(&data);
                }
                Command::SendData { conn: c, data } => {
                    assert_eq!(c, S1, "data to an unknown connection");
                    assert!(outcome.opened.is_some() && !closed_server, "data to a server not open");
                    outcome.to_server.extend_from_slice(&data);
                }
                Command::OpenConnection { conn: c, server } => {
                    assert!(outcome.opened.is_none(), "a second server connection");
                    assert_eq!(c, S1);
                    outcome.opened = Some(server);
                    // The answer comes before the client's next bytes.
                    let answer = if flags & 4 != 0 {
                        Event::OpenFailed { conn: S1, error: OpenError::Refused }
                    } else {
                        Event::Opened { conn: S1 }
                    };
                    queue.push(answer);
                }
                Command::CloseConnection { conn: c, half: false } if c == CLIENT => outcome.client_closed = true,
                Command::CloseConnection { conn: c, .. } => {
                    assert_eq!(c, S1);
                    closed_server = true;
                }
                Command::Hook { flow, hook } => {
                    let refuse = flags & 8 != 0 && hook.kind() == HookKind::HttpConnect;
                    let reply = if refuse { HookReply::Kill } else { HookReply::Continue };
                    if hook.is_blocking() {
                        queue.push(Event::HookReply { flow, reply });
                    }
                }
                _ => {}
            }
        }
    }
    outcome
}

/// The reference reading of a client's handshake: the methods, the credentials if asked, and
/// the request's target; `None` where the client stops or breaks the protocol.
fn reference(auth: bool, mut data: &[u8]) -> (Option<ServerAddr>, usize) {
    let take = |data: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, rest) = (data.get(..n)?.to_vec(), data.get(n..)?);
        *data = rest;
        Some(head)
    };
    let start = data.len();
    let parse = |data: &mut &[u8]| -> Option<ServerAddr> {
        let head = take(data, 2)?;
        if head[0] != 5 || head[1] == 0 {
            return None;
        }
        let methods = take(data, usize::from(head[1]))?;
        if !methods.contains(&if auth { 2 } else { 0 }) {
            return None;
        }
        if auth {
            let v = take(data, 2)?;
            let user = take(data, usize::from(v[1]))?;
            let plen = take(data, 1)?[0];
            let pass = take(data, usize::from(plen))?;
            if v[0] != 1 || user != b"u" || pass != b"p" {
                return None;
            }
        }
        let req = take(data, 4)?;
        if req[..3] != [5, 1, 0] {
            return None;
        }
        let host = match req[3] {
            1 => take(data, 4)?.iter().map(u8::to_string).collect::<Vec<_>>().join("."),
            3 => {
                let n = take(data, 1)?[0];
                let name = take(data, usize::from(n))?;
                let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
                if name.is_empty() || !name.iter().all(ok) {
                    return None;
                }
                String::from_utf8(name).ok()?.to_ascii_lowercase()
            }
            4 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(take(data, 16)?).ok()?).to_string(),
            _ => return None,
        };
        let port = take(data, 2)?;
        Some(ServerAddr::new(host, u16::from_be_bytes([port[0], port[1]])))
    };
    let target = parse(&mut data);
    (target, start - data.len())
}

/// A proxy that is its own target is refused (reply 2) before anything opens.
fn is_own_listener(target: &ServerAddr) -> bool {
    let local = client_info().local;
    target.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == local.ip()) && target.port == local.port()
}

pub fn socks5_handshake(input: &[u8]) {
    let Some((&flags, rest)) = input.split_first() else { return };
    let Some((&cut, data)) = rest.split_first() else { return };
    let auth = flags & 1 != 0;
    let whole = drive(flags, &[data]);
    let cuts = [cut, cut.rotate_left(3), cut ^ 0x5a];
    let split = drive(flags, &pieces(data, &cuts));
    assert_eq!(whole, split, "cutting the input changed the outcome");
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(whole, drive(flags, &bytewise), "feeding byte by byte changed the outcome");

    let (target, used) = reference(auth, data);
    let refused_by_hook = flags & 2 != 0 && flags & 8 != 0;
    let expected_open = target.clone().filter(|t| !is_own_listener(t) && !refused_by_hook);
    assert_eq!(whole.opened, expected_open, "the opened target is not the request's");
    let c = &whole.to_client;
    let non_socks = [&[0u8, 0x5b, 0, 0, 0, 0, 0, 0][..], b"HTTP/1.1 400 Bad Request\r\n"];
    if c.is_empty() || non_socks.iter().any(|a| c.starts_with(a)) {
        assert!(target.is_none(), "a client with a valid request got {c:?}");
        return;
    }
    // The method choice, the password verdict, then exactly one reply.
    assert_eq!(c[0], 5, "{c:?}");
    let method = c.get(1).copied();
    assert!(matches!(method, Some(0 | 2 | 0xff)), "{c:?}");
    let mut at = 2;
    if method == Some(2) {
        if let Some(status) = c.get(at..at + 2) {
            assert!(status == [1, 0] || status == [1, 1], "{c:?}");
            at += 2;
        }
    }
    if let Some(reply) = c.get(at..) {
        if !reply.is_empty() {
            assert!(reply.len() >= 10 && reply[0] == 5 && reply[2..4] == [0, 1], "{c:?}");
            let succeeded = reply[1] == 0;
            let opened = whole.opened.is_some() && flags & 4 == 0;
            assert_eq!(succeeded, opened, "reply {} with the server {:?}", reply[1], whole.opened);
            if succeeded {
                // What the client sent after its request reaches the server, in order.
                assert_eq!(whole.to_server, data[used..], "the tunnel lost or changed bytes");
            } else {
                assert!(whole.client_closed, "a refused client stays open");
            }
        }
    }
}
