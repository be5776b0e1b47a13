//! The sans-I/O protocol core of sansproxy.
//!
//! A [`Connection`] is the whole proxy for one accepted client connection: the client's side,
//! every upstream connection opened for it, and the flows between them. It performs no I/O,
//! reads no clock and draws no randomness. The driver feeds it [`Event`]s with the time they
//! happened, and carries out the [`Command`]s it returns:
//!
//! ```no_run
//! # use std::{sync::Arc, time::Instant};
//! # use proxy_core::{Config, Connection, ClientInfo, Event, ConnId};
//! # let client = ClientInfo::new("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
//! let mut conn = Connection::new(Arc::new(Config::default()), client);
//! conn.handle(Instant::now(), Event::Start);
//! conn.handle(Instant::now(), Event::DataReceived { conn: ConnId::CLIENT, data: "GET ...".into() });
//! while let Some(cmd) = conn.poll_command() { /* the driver acts on cmd */ }
//! let wake_at = conn.poll_timeout();
//! ```
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
//! Two exceptions to purity, both inside libraries we chose for their track record: rustls
//! draws random numbers for its handshakes from its crypto provider (certificate minting,
//! which needs them too, stays outside, behind [`tls::CertIssuer`]); and the `h2` crate reads
//! the clock to forget streams some time after resetting them (see the `layers::h2` module
//! docs), which never changes what the core sends.
//!
//! Memory per connection is bounded: when output queued for one side passes
//! [`Config::high_water`], the core emits [`Command::PauseReading`] for the others and resumes
//! them on [`Event::WriteDrained`]. HTTP/2 connections are never paused (they must stay
//! readable for window updates); their streams' flow-control windows reopen only as fast as
//! the destination takes the bytes ([`Http2Limits`]).

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
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod upstreams;
pub mod websocket;

pub use command::{Command, LogLevel};
pub use config::{constant_time_eq, Config, Http2Limits, MinRate, Mode, ProxyAuth};
pub use connection::Connection;
pub use event::{Event, OpenError};
pub use flow::{ClientInfo, FlowError, HttpFlow, Request, Response, Version};
pub use headers::{Headers, UnderscoreHeaders};
pub use hook::{Hook, HookKind, HookReply, HookSet};
pub use ids::{ConnId, FlowId, Scheme, ServerAddr};
pub use layers::http::carried::{Carried, StreamTag};
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
