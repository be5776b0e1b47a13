//! Limits and switches, fixed for the life of a [`Connection`](crate::Connection).

use std::sync::Arc;
use std::time::Duration;

use crate::gateway::Gateway;
use crate::headers::UnderscoreHeaders;
use crate::hook::HookSet;
use crate::ids::{Scheme, ServerAddr};
use crate::tls::TlsConfig;
use crate::websocket::WebSocketLimits;

/// What clients take the proxy for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// An explicit proxy: absolute-form requests and `CONNECT`.
    #[default]
    Regular,
    /// The origin itself: every request goes to `target` over `scheme`. With `client_tls`,
    /// clients speak TLS to the proxy, which presents a certificate from
    /// [`TlsConfig::issuer`](crate::tls::TlsConfig::issuer) for the name they asked for.
    /// With [`Config::gateway`], requests go where its routes and balancing send them instead
    /// of to `target`.
    Reverse {
        /// How the proxy reaches `target`: plain HTTP or TLS.
        scheme: Scheme,
        /// The origin the proxy stands in for.
        target: ServerAddr,
        /// Clients speak TLS to the proxy (needs [`Config::tls`]).
        client_tls: bool,
    },
    /// An explicit proxy towards clients that sends everything on through another proxy at
    /// `proxy`: requests in absolute-form, and `CONNECT`s. With `tls`, the connection to the
    /// upstream proxy is TLS, verified like any server's (an `https` origin is then reached
    /// with TLS inside TLS); with `auth` (`user:password`), every request and `CONNECT` to it
    /// carries `Proxy-Authorization: Basic`.
    Upstream {
        /// The next proxy.
        proxy: ServerAddr,
        /// Speak TLS to it.
        tls: bool,
        /// `user:password` for its `Proxy-Authorization: Basic`.
        auth: Option<String>,
    },
    /// A SOCKS5 proxy (RFC 1928): after the client's handshake and CONNECT, the connection
    /// goes on as after an HTTP `CONNECT` (intercepted TLS, HTTP, or a tunnel).
    Socks5,
    /// A transparent proxy: clients' connections were redirected to it by the system, and
    /// go where they were going ([`ClientInfo::original_dst`](crate::ClientInfo::original_dst),
    /// which the driver reads), as after an HTTP `CONNECT`.
    Transparent,
}

impl Mode {
    /// The mode's name in mitmproxy's `--mode` syntax, without its argument.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Reverse { .. } => "reverse",
            Self::Upstream { .. } => "upstream",
            Self::Socks5 => "socks5",
            Self::Transparent => "transparent",
        }
    }
}

/// What decides whether a user and password are accepted.
type CheckFn = dyn Fn(&str, &str) -> bool + Send + Sync;

/// Who may use the proxy: HTTP proxy clients (regular and upstream mode) send
/// `Proxy-Authorization: Basic`, SOCKS5 clients RFC 1929's username and password. The check
/// is the embedder's, so that credentials may live anywhere (an htpasswd file, a database);
/// [`ProxyAuth::single`] is one user compared in constant time.
#[derive(Clone)]
pub struct ProxyAuth {
    check: Arc<CheckFn>,
    /// The realm named in `Proxy-Authenticate`.
    pub realm: String,
}

impl ProxyAuth {
    /// Credentials accepted when `check(user, password)` says so.
    pub fn new(check: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        Self { check: Arc::new(check), realm: "sansproxy".into() }
    }

    /// One user and password, compared in constant time (the time taken says nothing about
    /// how much of a guess was right).
    pub fn single(user: impl Into<String>, password: impl Into<String>) -> Self {
        let (user, password) = (user.into(), password.into());
        Self::new(move |u, p| constant_time_eq(u.as_bytes(), user.as_bytes()) & constant_time_eq(p.as_bytes(), password.as_bytes()))
    }

    /// Whether `user` with `password` may use the proxy.
    pub fn check(&self, user: &str, password: &str) -> bool {
        (self.check)(user, password)
    }
}

impl std::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAuth").field("realm", &self.realm).finish_non_exhaustive()
    }
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        diff |= u64::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    std::hint::black_box(diff) == 0
}

/// Proxy configuration. Every limit the core enforces lives here, with a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// What clients take the proxy for. Default: [`Mode::Regular`].
    pub mode: Mode,
    /// Which hooks to raise. Default: [`HookSet::ALL`]. (proxy-io sets it from its handler's
    /// `hooks`.)
    pub hooks: HookSet,
    /// Largest request or response head (start line and headers), in bytes. A request over it
    /// is answered 431; a response over it, 502. Default: 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one head (or trailer section); over it, as for
    /// `max_head_bytes`. Default: 256.
    pub max_headers: usize,
    /// Largest body a hook may ask to buffer, in bytes. Over it: 413 for requests, 502 for
    /// responses. Default: 32 MiB.
    pub max_buffered_body: usize,
    /// Output queued for one connection, in bytes, beyond which the core stops reading the
    /// connections that feed it, until the driver reports
    /// [`Event::WriteDrained`](crate::Event::WriteDrained). Default: 256 KiB.
    pub high_water: usize,
    /// Most requests a client may pipeline ahead of the one being served. Beyond it the core
    /// stops reading from the client until the queue shrinks. Default: 16.
    pub max_pipelined: usize,
    /// How long an upstream may stay silent while a response is owed. When it passes, the
    /// client gets 504 (before the response head) or the flow is aborted (during the body).
    /// This is an idle limit, not a deadline: a slow but steady download never hits it.
    /// Default: 60 s.
    pub server_idle_timeout: Duration,
    /// How long an idle keep-alive client connection is kept open between requests.
    /// Default: 120 s.
    pub client_idle_timeout: Duration,
    /// How long a client may take to send a whole request head, counted from its first byte.
    /// When it passes, the client gets 408 and the connection is closed: a client trickling
    /// its headers (slowloris) holds a connection this long at most. A client that sends
    /// nothing at all falls to `client_idle_timeout` instead. Default: 30 s.
    pub head_timeout: Duration,
    /// How long a client may stay silent in the middle of a request body (an idle limit
    /// between two reads, as nginx's `client_body_timeout`). When it passes, the client gets
    /// 408 (or, if the response has begun, loses the exchange), the upstream request is
    /// aborted, and the client connection is closed (HTTP/1) or the stream reset (HTTP/2).
    /// Silence the proxy causes (backpressure, a pending hook) does not count. Meanwhile the
    /// upstream waiting for that body is not timed out for its own silence. Default: 60 s.
    pub body_timeout: Duration,
    /// The least rate at which a client must send a request body, on average since it began
    /// and checked every `window` (Apache's `MinRate`; nginx and HAProxy bound a body's total
    /// time instead): a client trickling a few bytes now and then, inside `body_timeout`,
    /// would otherwise hold an upstream connection for ever (slowloris on the body,
    /// slowhttptest's `-B`). Below it the client gets 408, as for `body_timeout`. A time in
    /// which the proxy held the body back (a hook, a slow server, backpressure) starts the
    /// measure afresh. `None` (the default): no minimum.
    pub body_min_rate: Option<MinRate>,
    /// After the proxy has sent its last response on a client connection, how long it keeps
    /// reading (and dropping) what the client still sends before closing for good, so that
    /// the client reads the response rather than a reset. Default: 2 s.
    pub close_linger: Duration,
    /// How long a stream on a carrier (an upstream HTTP/2 connection shared by client
    /// connections, [`share_streams`](Self::share_streams)) waits, once its exchange is over,
    /// for its client connection's next request to the same server, which then takes it
    /// rather than joining a carrier anew. A waiting stream does not count against the
    /// carrier's stream limit. Zero: a stream leaves its carrier as its exchange ends.
    /// Default: 1 s.
    pub joined_stream_idle: Duration,
    /// A streamed `Content-Length` body with at least this many bytes still to come, that no
    /// hook asked to see, is handed to the driver to move by itself
    /// ([`Command::Forward`](crate::Command::Forward)). `None` (the default) keeps every byte
    /// in the core; drivers that cannot forward must leave it so.
    pub forward_min: Option<u64>,
    /// What becomes of request fields with an underscore in their name. Whatever it says, a
    /// name that reads as `Content-Length` or `Transfer-Encoding` with `_` for `-` is answered
    /// 400. The CLI drops them in reverse mode, where the backends may be CGI, WSGI or PHP.
    /// Default: [`UnderscoreHeaders::Keep`].
    pub underscore_headers: UnderscoreHeaders,
    /// Add `Via: 1.1 sansproxy` to forwarded messages. Default: off.
    pub add_via: bool,
    /// Keep idle upstream connections for reuse by later requests of the same client.
    /// Default: on.
    pub reuse_server_connections: bool,
    /// Share idle upstream connections across client connections (see [`upstreams`]): when a
    /// client connection ends, its idle upstream connections (HTTP/1.1 between messages, HTTP/2
    /// without a stream) are parked
    /// ([`Command::Park`]) rather than closed, and a connection is asked for with
    /// [`Command::Reuse`] rather than `OpenConnection`. Needs a driver that keeps a pool
    /// (proxy-io's does, and sets this by whether its pool is on); off by default for drivers
    /// that do not.
    ///
    /// [`upstreams`]: crate::upstreams
    /// [`Command::Park`]: crate::Command::Park
    /// [`Command::Reuse`]: crate::Command::Reuse
    pub share_upstreams: bool,
    /// With `share_upstreams`, an HTTP/2 upstream connection carries the streams of several
    /// client connections at once: it is run on its own as a carrier
    /// ([`Connection::carrier`](crate::Connection::carrier)) from the moment it opens, and
    /// requests of any client connection join it ([`Command::Reuse`]'s `join`). So do the
    /// requests an HTTP/1.1 client sends through an intercepted `CONNECT` to an HTTP/2
    /// server: the tunnel's own connection is parked once its settings are exchanged (and
    /// becomes a carrier if none to its server has room). Off, a client connection's requests
    /// go on upstream connections of its own, and an idle HTTP/2 one moves to the next client
    /// connection whole, as an HTTP/1.1 one does. Default: on (it matters only with
    /// `share_upstreams`).
    ///
    /// [`Command::Reuse`]: crate::Command::Reuse
    pub share_streams: bool,
    /// Reverse mode as a gateway: requests routed to groups of backends, balanced, their
    /// health watched, `X-Forwarded-*` added ([`gateway`](crate::gateway)). Shared by every
    /// connection given a clone of it. `None` (the default): every request goes to the
    /// mode's one target.
    pub gateway: Option<Gateway>,
    /// TLS interception. `None` (the default): a `CONNECT` is tunnelled without looking
    /// inside.
    pub tls: Option<TlsConfig>,
    /// Speak HTTP/2 where a peer offers it: with clients that negotiate `h2` or send the
    /// HTTP/2 preface on a plain connection, and with servers that accept `h2` in ALPN.
    /// Default: on.
    pub http2: bool,
    /// Plain (`http`) upstream connections speak HTTP/2 with prior knowledge (h2c), as for
    /// `--mode reverse:h2c://...`. Default: off.
    pub upstream_h2c: bool,
    /// What one HTTP/2 connection may cost: streams, header list size, windows, resets.
    pub http2_limits: Http2Limits,
    /// Limits of WebSocket connections, and where their mask keys come from.
    pub websocket: WebSocketLimits,
    /// Credentials clients must give (HTTP proxy and SOCKS5 clients); none by default.
    pub proxy_auth: Option<ProxyAuth>,
}

/// A least rate: `bytes_per_sec` on average, checked every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// The least average rate, in bytes per second.
    pub bytes_per_sec: u64,
    /// How often it is checked, and how long a body has before the first check.
    pub window: Duration,
}

/// What one HTTP/2 connection may cost us. A client over a limit is told so with the error
/// code RFC 9113 gives (`REFUSED_STREAM`, `ENHANCE_YOUR_CALM`...); other connections never
/// notice.
#[derive(Debug, Clone)]
pub struct Http2Limits {
    /// Streams a peer may have open at once on one connection; more are refused with
    /// `REFUSED_STREAM`. Default: 100.
    pub max_concurrent_streams: u32,
    /// Largest header list we accept (decoded), in bytes. This also bounds a CONTINUATION
    /// sequence, so a CONTINUATION flood ends the connection instead of growing a buffer.
    /// Default: 64 KiB.
    pub max_header_list_size: u32,
    /// Receive window per stream, in bytes: the most of one body that may wait in the proxy
    /// while its destination is slow. Flow control is the backpressure: the window reopens
    /// only as fast as the destination takes the bytes. Default: 1 MiB.
    pub stream_window: u32,
    /// Receive window of a whole connection, in bytes. Default: 4 MiB.
    pub connection_window: u32,
    /// Streams a client may cancel within `reset_period` before its connection is closed
    /// with `ENHANCE_YOUR_CALM` (the rapid-reset attack, CVE-2023-44487). Default: 200.
    pub max_resets: u32,
    /// The period `max_resets` counts over. Default: 1 s.
    pub reset_period: Duration,
    /// Streams a peer may open and reset before the proxy has even seen them. Default: 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the proxy may reset for a peer's protocol errors before closing its
    /// connection. Default: 100.
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            stream_window: 1024 * 1024,
            connection_window: 4 * 1024 * 1024,
            max_resets: 200,
            reset_period: Duration::from_secs(1),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Regular,
            hooks: HookSet::ALL,
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            max_buffered_body: 32 * 1024 * 1024,
            high_water: 256 * 1024,
            max_pipelined: 16,
            server_idle_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::from_secs(120),
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            body_min_rate: None,
            close_linger: Duration::from_secs(2),
            joined_stream_idle: Duration::from_secs(1),
            forward_min: None,
            underscore_headers: UnderscoreHeaders::Keep,
            add_via: false,
            reuse_server_connections: true,
            share_upstreams: false,
            share_streams: true,
            gateway: None,
            tls: None,
            http2: true,
            upstream_h2c: false,
            http2_limits: Http2Limits::default(),
            websocket: WebSocketLimits::default(),
            proxy_auth: None,
        }
    }
}
