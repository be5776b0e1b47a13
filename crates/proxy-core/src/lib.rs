//! The sans-I/O protocol core of sansproxy, an intercepting HTTP/HTTPS proxy.
//!
//! A [`Connection`] is the whole proxy for one accepted client connection: the client's side,
//! every upstream connection opened for it, and the flows between them. It performs no I/O,
//! reads no clock and draws no randomness. A driver (the `proxy-io` crate is the tokio one)
//! owns the sockets and timers, feeds the connection [`Event`]s with the time they happened,
//! and carries out the [`Command`]s it returns, in order:
//!
//! 1. [`Connection::handle`] one event ([`Event::Start`] first, then bytes that arrived,
//!    connections that opened or closed, hook answers, timer expiry);
//! 2. drain [`Connection::poll_command`] and act on each command (send bytes, open or close a
//!    connection, pause reading, ask the user a [`Hook`]);
//! 3. arm a timer for [`Connection::poll_timeout`] and feed [`Event::Wakeup`] when it fires;
//! 4. drop the connection once [`Connection::is_closed`].
//!
//! What a proxy does is set by [`Config`]: the [`Mode`] (a regular proxy, a reverse proxy,
//! SOCKS5...), the limits, TLS interception ([`Config::tls`]) and which hooks to raise
//! ([`Config::hooks`]). A hook stops one flow until the user answers with a [`HookReply`]:
//! go on, go on with a changed request or response, answer locally, or kill the flow.
//!
//! Here is one request through a regular proxy, with the test itself playing the driver, the
//! client and the server. The user adds a header when the request head is in:
//!
//! ```
//! use std::{sync::Arc, time::Instant};
//!
//! use proxy_core::{ClientInfo, Command, Config, ConnId, Connection, Event, Hook, HookKind, HookReply, HookSet};
//!
//! /// Feeds one event, and takes every command it causes, as a driver's loop does.
//! fn step(conn: &mut Connection, event: Event) -> Vec<Command> {
//!     conn.handle(Instant::now(), event);
//!     std::iter::from_fn(|| conn.poll_command()).collect()
//! }
//!
//! // A regular proxy that asks the user about request heads and nothing else.
//! let config = Config { hooks: HookSet::NONE.with(HookKind::RequestHeaders), ..Config::default() };
//! let client = ClientInfo::new("127.0.0.1:50000".parse()?, "127.0.0.1:8080".parse()?);
//! let mut conn = Connection::new(Arc::new(config), client);
//! step(&mut conn, Event::Start);
//!
//! // The client sends a request. Its head raises the hook, and the client is not read while
//! // the flow waits for the answer.
//! let request = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
//! let commands = step(&mut conn, Event::DataReceived { conn: ConnId::CLIENT, data: request.into() });
//! let mut commands = commands.into_iter();
//! let Some(Command::Hook { flow, hook: Hook::RequestHeaders(mut f) }) = commands.next() else { panic!() };
//! assert!(matches!(commands.next(), Some(Command::PauseReading { conn: ConnId::CLIENT })));
//! f.request.headers.insert("x-seen", "1");
//!
//! // Answered, the flow goes on: the core asks for a connection to the server, and reads the
//! // client again.
//! let commands = step(&mut conn, Event::HookReply { flow, reply: HookReply::Update(f) });
//! let [Command::OpenConnection { conn: server, .. }, Command::ResumeReading { .. }] = commands[..] else {
//!     panic!("{commands:?}")
//! };
//! assert_eq!(server, ConnId(1));
//!
//! // ...and once the driver has opened it, sends the request there, in origin form.
//! let commands = step(&mut conn, Event::Opened { conn: server });
//! let [Command::SendData { conn: to, ref data }] = commands[..] else { panic!("{commands:?}") };
//! assert_eq!((to, &data[..]), (server, &b"GET / HTTP/1.1\r\nHost: a.test\r\nx-seen: 1\r\n\r\n"[..]));
//!
//! // The server's response goes back to the client, head and body.
//! let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
//! let commands = step(&mut conn, Event::DataReceived { conn: server, data: response.into() });
//! let sent: Vec<u8> = commands
//!     .iter()
//!     .flat_map(|c| match c {
//!         Command::SendData { conn: ConnId::CLIENT, data } => data.to_vec(),
//!         other => panic!("{other:?}"),
//!     })
//!     .collect();
//! assert_eq!(sent, response.as_bytes());
//!
//! // Nothing is due now but the keep-alive client's idle timeout.
//! assert!(conn.poll_timeout().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The repository's playbook tests (`tests/playbooks`) write the same exchange as a script of
//! events in and commands out, with a harness that prints a transcript on a mismatch.
//!
//! Inside, layers stack as in mitmproxy: at the bottom a TLS transport that decrypts what
//! arrives on each connection speaking TLS (each session has a state of its own: connecting,
//! handshaking, established, closed, failed), then the proxy mode ([`Mode`]), then HTTP/1 or
//! HTTP/2 towards the client, a version-agnostic HTTP stream per request/response pair, and HTTP/1
//! or HTTP/2 towards each server, whichever each peer speaks: any client version meets any
//! server version. A `CONNECT` is intercepted when [`Config::tls`] is set ([`tls`] tells
//! how) and otherwise turns the client connection into a raw tunnel. The repository's
//! `ARCHITECTURE.md` follows one request through each file on its way.
//!
//! After a `101` to `websocket` a flow goes on as WebSocket messages ([`websocket`]), parsed
//! and written by the core, compressed or not. The masking keys of frames it writes to servers
//! come from [`websocket::MaskKeys`], a source of randomness the embedder supplies.
//!
//! One exception to purity, inside a library chosen for its track record: rustls draws random
//! numbers for its handshakes from its crypto provider. Certificate minting, which needs them
//! too, stays outside, behind [`tls::CertIssuer`]. HTTP/2 is an engine of our own, which
//! reads no clock either.
//!
//! Memory per connection is bounded: when output queued for one side passes
//! [`Config::high_water`], the core emits [`Command::PauseReading`] for the others and resumes
//! them on [`Event::WriteDrained`]. HTTP/2 connections are never paused (they must stay
//! readable for window updates); their streams' flow-control windows reopen only as fast as
//! the destination takes the bytes ([`Http2Limits`]).

#![warn(missing_docs)]

mod command;
mod config;
mod connection;
mod context;
mod event;
mod flow;
pub mod gateway;
mod headers;
mod hook;
mod ids;
mod layer;
mod layers;
mod open_error;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod upstreams;
pub mod websocket;

pub use command::{Command, LogLevel};
pub use config::{constant_time_eq, Config, Http2Limits, MinRate, Mode, ProxyAuth};
pub use connection::Connection;
pub use event::Event;
pub use open_error::OpenError;
pub use flow::{ClientInfo, FlowError, HttpFlow, Request, Response, Version};
pub use headers::{Headers, UnderscoreHeaders};
pub use hook::{Hook, HookKind, HookReply, HookSet};
pub use ids::{ConnId, FlowId, Scheme, ServerAddr};
pub use layers::http::carried::message::{Carried, StreamTag};
pub use layers::http::http1::Http1Error;

/// The HTTP/2 engine, exposed so that tests and fuzz targets can
/// play real HTTP/2 peers against the core without a runtime.
#[doc(hidden)]
pub mod h2_engine {
    pub use crate::layers::http::h2::engine::*;
}

/// The WebSocket frame reader, exposed for fuzzing and tests: frames from one peer, checked
/// against RFC 6455's framing rules.
#[doc(hidden)]
pub mod websocket_wire {
    pub use crate::layers::websocket::frame::{apply_mask, OpCode};
    pub use crate::layers::websocket::reader::{parse_close, Item, Reader};
    pub use crate::layers::websocket::WsError;
}

/// The HTTP/1 wire format, exposed for fuzzing and tests: head parsing, framing, body reading.
#[doc(hidden)]
pub mod wire {
    pub use crate::layers::http::http1::wire::*;
}

/// The README's example, run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
