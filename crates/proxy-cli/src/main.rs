//! `sansproxy`: an intercepting HTTP proxy that prints one line per flow, like mitmdump.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use proxy_core::{Config, FlowId, MinRate, Hook, HookKind, HookReply, HookSet, HttpFlow, Http2Limits, Mode, Scheme, ServerAddr, UnderscoreHeaders};
use proxy_core::tls::{Remedies, TlsCause, TlsFailure, TlsPeer};
use proxy_core::websocket::{MessageKind, Oversize, Peer, WebSocketEnd, WebSocketLimits, WebSocketMessage};
use proxy_core::upstreams::PoolLimits;
use proxy_core::gateway::{Backend, Balance, Gateway, GatewaySpec, GroupSpec, HealthSpec, LimitSpec};
use proxy_io::tls::{CaInfo, CaSource, TlsOptions, DEFAULT_CACHE_SIZE};
use proxy_io::{Handler, Proxy};

mod auth;
mod config_file;
mod metrics;

use config_file::{ConfigFile, GroupDefaults};

/// jemalloc: a proxied request makes dozens of short-lived allocations on two threads, which
/// it serves from per-thread caches without glibc's bin juggling (see the README's "HTTPS
/// cost, fourth part" for what it changed, memory included).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An intercepting HTTP proxy. Prints one line per flow to stdout:
/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms (client VERSION, server VERSION)`, with the
/// HTTP version each side spoke; a `CONNECT` that opened a tunnel:
/// `CLIENT CONNECT HOST:PORT -> 200 tunnel DURATIONms (client VERSION)`; a flow that failed:
/// `CLIENT METHOD URL -> error: WHY`.
#[derive(Debug, Parser)]
#[command(name = "sansproxy", version, args_override_self = true)]
struct Args {
    /// Read flags, and the gateway's routes and groups of backends, from this TOML file: each
    /// flag is a key named like it (`max-fails = 5`, `no-http2 = true`, `cert = ["a.pem"]`),
    /// routes are `[[route]]` tables and groups `[[upstream]]` (see the README). Flags given
    /// here win (where to listen as a whole: --listen, --listen-host or -p here replace the
    /// file's `listen`, `listen-host` and `listen-port`). SIGHUP reloads the routes and groups.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Serve Prometheus metrics (OpenMetrics text) at `http://HOST:PORT/metrics`: flows by
    /// listener, backend and status class, their duration, bytes, TLS handshakes, each
    /// backend's state and load, idle upstream connections.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<SocketAddr>,

    /// Reload the --config file's routes and groups whenever it changes, as on SIGHUP.
    #[arg(long, requires = "config")]
    watch_config: bool,

    /// The --config file's routes and groups, once read: one gateway per reverse listener.
    #[arg(skip)]
    file_gateways: Vec<(Option<ListenAt>, GatewaySpec)>,

    /// The flags the --config file gave, to tell on reload whether they changed.
    #[arg(skip)]
    file_flags: Vec<OsString>,

    /// Where to listen: `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT`. A HOST that is a
    /// name (`localhost`) is resolved, and the proxy listens on each of its addresses, as
    /// nginx and mitmproxy do. Default: 127.0.0.1:8080; port 0 picks a free port. Not with
    /// --listen-host or -p, which give the host and the port apart, as mitmdump's do.
    #[arg(
        long,
        value_name = "[HOST:]PORT",
        value_parser = parse_listen_at,
        conflicts_with_all = ["listen_host", "listen_port"]
    )]
    listen: Option<ListenAt>,

    /// The host to listen on, with -p's port (mitmdump's flag): an IP address, or a name whose
    /// every address is listened on. Default: 127.0.0.1.
    #[arg(long, value_name = "HOST", value_parser = parse_listen_host)]
    listen_host: Option<String>,

    /// The port to listen on, with --listen-host's host (mitmdump's flag). Default: 8080.
    #[arg(short = 'p', long, value_name = "PORT")]
    listen_port: Option<u16>,

    /// Print no flows (and raise no hooks at all). What is printed at start (where the proxy
    /// listens, the CA to trust) still is.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,

    /// Also print a line per WebSocket message: direction, type, size, first bytes. Messages
    /// are then held whole up to --max-ws-message (see --ws-oversize).
    #[arg(short, long)]
    verbose: bool,

    /// Largest WebSocket message held whole for a hook (with --verbose), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = WebSocketLimits::default().max_message)]
    max_ws_message: usize,

    /// A WebSocket message over --max-ws-message, when messages are held: `pieces` (shown and
    /// passed on in pieces) or `close` (the connection closes with 1009).
    #[arg(long, value_name = "WHAT", default_value = "pieces", value_parser = parse_oversize)]
    ws_oversize: Oversize,

    /// Largest request or response head (start line and headers), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_head_bytes)]
    max_head_bytes: usize,

    /// Most header fields in one request or response head.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_headers)]
    max_headers: usize,

    /// Largest body a hook may buffer, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_buffered_body)]
    max_buffered_body: usize,

    /// Output queued for one connection, in bytes, beyond which the proxy stops reading the
    /// connections that feed it.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().high_water)]
    high_water: usize,

    /// How long an upstream may stay silent while a response is owed.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "60")]
    server_idle_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "120")]
    client_idle_timeout: Duration,

    /// How long a client may take to send a whole request head, from its first byte; past
    /// it the client gets 408 and is disconnected (slow-header clients hold a connection no
    /// longer than this).
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "30")]
    head_timeout: Duration,

    /// How long a client may stay silent in the middle of a request body; past it the
    /// client gets 408 and the upstream request is aborted (a slow-body client holds the
    /// upstream no longer than this). Silence the proxy causes (backpressure) does not count.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "60")]
    body_timeout: Duration,

    /// After the last response on a client connection, how long to keep reading (and
    /// dropping) what the client still sends before closing, so the response is not reset.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "2")]
    close_linger: Duration,

    /// Keep every body byte inside the proxy, instead of splicing large bodies that no hook
    /// needs to see from socket to socket in the kernel.
    #[arg(long)]
    no_splice: bool,

    /// Never reuse an upstream connection for a later request (of the same client, or of
    /// another one: see --upstream-idle-timeout).
    #[arg(long)]
    no_server_reuse: bool,

    /// An HTTP/2 upstream connection serves one client connection at a time (handed to the
    /// next one when idle), instead of carrying the requests of every client connection at
    /// once.
    #[arg(long)]
    no_shared_streams: bool,

    /// A stream on a shared HTTP/2 upstream connection whose exchange is over waits this long
    /// for its client connection's next request to the same server, which then takes it
    /// instead of joining a connection anew (a waiting stream does not count against the
    /// server's stream limit). 0: a stream leaves as its exchange ends.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "1")]
    joined_stream_idle: Duration,

    /// Idle upstream connections of a client connection that ended are kept this long for the
    /// next client connection to the same server (plain or TLS, HTTP/1.1 or HTTP/2), which then skips
    /// the connect and the TLS handshake. 0 keeps none.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "4")]
    upstream_idle_timeout: Duration,

    /// At most this many idle upstream connections are kept per server.
    #[arg(long, value_name = "N", default_value_t = PoolLimits::default().max_idle_per_key)]
    upstream_max_idle: usize,

    /// How long resolving and connecting to an upstream may take.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "10")]
    connect_timeout: Duration,

    /// On SIGINT or SIGTERM (Ctrl-C), how long connections with a request in flight may go on
    /// before they are dropped; idle keep-alive connections are closed at once, and a second
    /// signal drops everything at once.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "5")]
    shutdown_timeout: Duration,

    /// Serve at most N client connections at once. Clients beyond N are not refused: they
    /// wait, connected but unread, in the listen backlog (1024, or the system's smaller
    /// somaxconn) until one of the N ends.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// Threads serving connections. Defaults to the number of CPUs; on a machine that the
    /// proxy shares with its clients and servers, fewer can be faster.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,

    /// How connections are spread over the threads. per-core: each thread has a runtime and
    /// a listening socket of its own (SO_REUSEPORT), a new client goes to the thread serving
    /// fewest, and a connection stays on its thread (idle upstream connections are shared by
    /// all). work-stealing: one listening socket and tokio's multi-thread runtime, whose
    /// workers take tasks from each other: better when a few connections do uneven work.
    #[arg(long, value_name = "KIND", default_value = "per-core", value_parser = parse_runtime)]
    runtime: RuntimeKind,

    /// Add a `Via: 1.1 sansproxy` header to forwarded messages.
    #[arg(long)]
    via: bool,

    /// What becomes of request header fields with `_` in their name, which CGI, WSGI and PHP
    /// backends cannot tell from the same name with `-`: keep, drop or reject (400). Default:
    /// drop in reverse mode (as nginx), keep otherwise. `Transfer_Encoding` and
    /// `Content_Length` are answered 400 whatever this says.
    #[arg(long, value_name = "POLICY", value_parser = parse_underscores)]
    underscores_in_headers: Option<UnderscoreHeaders>,

    /// Directory of the proxy's certificate authority, made there on first run:
    /// `sansproxy-ca-cert.pem` is the certificate for clients to trust, `sansproxy-ca.pem` its
    /// private key. Default: `$SANSPROXY_CA_DIR`, else `$XDG_CONFIG_HOME/sansproxy`, else
    /// `$HOME/.sansproxy`.
    #[arg(long, value_name = "DIR", conflicts_with = "ca_cert")]
    ca_dir: Option<PathBuf>,

    /// Sign with this CA certificate (PEM) instead of the CA directory's; needs --ca-key.
    #[arg(long, value_name = "PEM", requires = "ca_key")]
    ca_cert: Option<PathBuf>,

    /// The private key of --ca-cert: unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), RSA or
    /// ECDSA P-256/P-384. May name the same file as --ca-cert if that holds both.
    #[arg(long, value_name = "PEM", requires = "ca_cert")]
    ca_key: Option<PathBuf>,

    /// Also trust the certificates in this PEM file when verifying upstream servers, besides
    /// the Mozilla roots built in. Repeatable.
    #[arg(long, value_name = "PEM")]
    upstream_ca: Vec<PathBuf>,

    /// Accept any upstream server certificate: expired, self-signed, for another name. The
    /// server must still prove it holds the certificate's key.
    #[arg(long)]
    insecure_upstream: bool,

    /// Pass TLS to a matching `host:port` through untouched instead of intercepting it. A
    /// regular expression, found anywhere in `host:port` unless anchored, as in mitmproxy:
    /// `--ignore-hosts '^example\.com:443$'`. Repeatable.
    #[arg(long, value_name = "REGEX")]
    ignore_hosts: Vec<String>,

    /// How many minted certificates to keep, so returning hosts cost no signature (0: none).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CACHE_SIZE)]
    cert_cache: usize,

    /// What clients take the proxy for: `regular` (an explicit proxy, the default),
    /// `reverse:URL` (the origin at URL: `http://host:port`, `https://host:port`, or
    /// `h2c://host:port` for plain HTTP/2 with prior knowledge), `upstream:URL` (an explicit
    /// proxy that sends everything on through the proxy at `http://host:port`, or over TLS at
    /// `https://host:port`), `socks5` (a
    /// SOCKS5 proxy), or `transparent` (connections redirected to the proxy by iptables or
    /// nftables go where they were going; Linux). Repeatable, each with its own listener:
    /// `MODE@PORT` or `MODE@HOST:PORT` (`--mode regular@8080 --mode socks5@1080`); a mode
    /// without `@` listens on --listen.
    #[arg(long, value_name = "MODE[@[HOST:]PORT]", value_parser = parse_mode_spec)]
    mode: Vec<ModeSpec>,

    /// Clients must authenticate: HTTP proxy clients with `Proxy-Authorization: Basic`
    /// (else 407), SOCKS5 clients with a username and password. `USER:PASS`, or `@FILE`: an
    /// htpasswd file of bcrypt (`htpasswd -B`) or SHA-1 (`htpasswd -s`) lines.
    #[arg(long, value_name = "USER:PASS|@FILE")]
    proxyauth: Option<String>,

    /// In upstream mode, the credentials the upstream proxy wants: sent as
    /// `Proxy-Authorization: Basic` on every CONNECT and request to it.
    #[arg(long, value_name = "USER:PASS")]
    upstream_auth: Option<String>,

    /// The same as `--mode reverse:URL`. Repeatable: several URLs are one group of backends,
    /// each request sent to one of them as --lb says, with health watched (--max-fails,
    /// --health-check) and a refused connection retried on the next.
    #[arg(long, value_name = "URL", value_parser = parse_origin, conflicts_with = "mode")]
    reverse: Vec<(Scheme, ServerAddr, bool)>,

    /// Reverse mode: how each request's backend is picked: `round-robin`, `least-conn`
    /// (fewest requests in flight), `random`, `p2c` (the faster and less busy of two at
    /// random), `hash:client-ip`, `hash:header:NAME`, `hash:cookie:NAME` (the same key to
    /// the same backend while it is up; consistent, so a backend gone moves only its share).
    #[arg(long, value_name = "POLICY", value_parser = str::parse::<Balance>)]
    lb: Option<Balance>,

    /// Reverse mode: check every backend with `GET PATH` every --health-interval; one that
    /// answers other than 2xx, or not within --health-timeout, gets no requests until it
    /// answers 2xx again. When no backend is left, clients get 503 at once.
    #[arg(long, value_name = "PATH")]
    health_check: Option<String>,

    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs)]
    health_interval: Duration,

    #[arg(long, value_name = "SECS", default_value = "2", value_parser = secs)]
    health_timeout: Duration,

    /// Reverse mode: a backend that fails this many requests in a row (connection refused,
    /// 5xx, timeout, broken response) is ejected for --eject-time, twice as long each time it
    /// fails again as soon as it is back. 0: never. A single backend is never ejected.
    #[arg(long, value_name = "N", default_value_t = HealthSpec::default().max_fails)]
    max_fails: u32,

    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    eject_time: Duration,

    /// Reverse mode: at most N requests in flight to each backend at once (over HTTP/1.1, as
    /// many busy connections; an idle one goes back to the shared pool as soon as its request
    /// is done). Requests beyond it wait for a backend in a queue of --queue-limit, at most
    /// --queue-timeout, then get 503 naming the group. Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    upstream_max_conns: Option<u32>,

    /// Reverse mode with --upstream-max-conns: how many requests may wait for a backend; one
    /// more gets 503 at once. 0: none waits.
    #[arg(long, value_name = "N", default_value_t = LimitSpec::default().queue_limit)]
    queue_limit: usize,

    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    queue_timeout: Duration,

    /// The least rate, in bytes per second on average, at which a client must send a request
    /// body, checked every --body-rate-window; below it the client gets 408 and its upstream
    /// connection is freed (a body trickled a byte at a time would hold it for ever). 500 in
    /// reverse mode, none in the others; 0 turns it off.
    #[arg(long, value_name = "BYTES/S")]
    body_min_rate: Option<u64>,

    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    body_rate_window: Duration,

    /// Reverse mode: do not add `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`
    /// and `Forwarded` to requests.
    #[arg(long)]
    no_forwarded: bool,

    /// Speak only HTTP/1.1: never negotiate HTTP/2 with clients or servers.
    #[arg(long)]
    no_http2: bool,

    /// HTTP/2: streams a peer may have open at once on one connection (more are refused with
    /// REFUSED_STREAM).
    #[arg(long, value_name = "N", default_value_t = Http2Limits::default().max_concurrent_streams)]
    h2_max_streams: u32,

    /// HTTP/2: largest header list accepted, in bytes (larger: 431; a CONTINUATION flood
    /// past it closes the connection).
    #[arg(long, value_name = "BYTES", default_value_t = Http2Limits::default().max_header_list_size)]
    h2_max_header_list: u32,

    /// HTTP/2: receive window per stream, in bytes: the most of one body held while its
    /// destination is slow. The connection's window is four times this.
    #[arg(long, value_name = "BYTES", default_value_t = Http2Limits::default().stream_window)]
    h2_window: u32,

    /// HTTP/2: streams a client may cancel per second before its connection is closed with
    /// ENHANCE_YOUR_CALM (rapid reset).
    #[arg(long, value_name = "N", default_value_t = Http2Limits::default().max_resets)]
    h2_max_resets: u32,

    /// In reverse mode, clients speak TLS to the proxy. It presents a certificate for the name
    /// they ask for, minted by the CA (or one given with --cert). Without it, clients
    /// speak plain HTTP whatever the upstream speaks.
    #[arg(long)]
    listen_tls: bool,

    /// Present this certificate chain and key (one PEM file) to clients that ask for DOMAIN
    /// (a name, `*.suffix` for the names under it, or the address they connected to when
    /// they send no SNI) instead of minting one: a secure web proxy's own name, or a reverse
    /// proxy's. Without `DOMAIN=` it is for every name, and no CA is made or read.
    /// Repeatable; the first match wins.
    #[arg(long, value_name = "[DOMAIN=]PEM")]
    cert: Vec<String>,

    /// Do not intercept TLS: a CONNECT stays a raw tunnel, and no CA is made or read.
    #[arg(long, conflicts_with_all = [
        "ca_dir", "ca_cert", "ca_key", "upstream_ca", "insecure_upstream", "ignore_hosts", "cert_cache",
    ])]
    no_intercept: bool,
}

fn parse_oversize(s: &str) -> Result<Oversize, String> {
    match s {
        "pieces" => Ok(Oversize::Pieces),
        "close" => Ok(Oversize::Close),
        _ => Err(format!("`{s}` is neither `pieces` nor `close`")),
    }
}

fn parse_underscores(s: &str) -> Result<UnderscoreHeaders, String> {
    match s {
        "keep" => Ok(UnderscoreHeaders::Keep),
        "drop" => Ok(UnderscoreHeaders::Drop),
        "reject" => Ok(UnderscoreHeaders::Reject),
        _ => Err(format!("unknown policy {s:?}: use keep, drop or reject")),
    }
}

/// A mode, and whether its upstream speaks HTTP/2 with prior knowledge (`h2c://`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModeArg(Mode, bool);

/// Where a listener listens, as given: a host (an IP address or a name, resolved when the
/// proxy starts; none: --listen's) and a port.
type ListenAt = (Option<String>, u16);

/// The host when none is given: loopback, so that a proxy started without thinking serves no
/// one else.
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;

/// A `--mode`: the mode, and where it listens if not on --listen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModeSpec {
    mode: ModeArg,
    at: Option<ListenAt>,
}

/// A listener as the flags and the --config file make it: where (every address its host
/// resolved to), in which mode, in reverse mode what its gateway serves, and which flag
/// gave its port (for the remedy when the port is taken).
#[derive(Debug, Clone)]
struct Listener {
    addrs: Vec<SocketAddr>,
    mode: ModeArg,
    gateway: Option<GatewaySpec>,
    port_from: String,
}

/// `MODE`, `MODE@PORT` or `MODE@HOST:PORT` (HOST as for --listen).
fn parse_mode_spec(s: &str) -> Result<ModeSpec, String> {
    let Some((mode, at)) = s.rsplit_once('@') else {
        return Ok(ModeSpec { mode: parse_mode(s)?, at: None });
    };
    let at = parse_listen_at(at).map_err(|e| format!("after `@`: {e}"))?;
    Ok(ModeSpec {
        mode: parse_mode(mode)?,
        at: Some(at),
    })
}

/// `PORT`, `HOST:PORT` or `[IPv6]:PORT`; HOST an IP address or a name (resolved later, by
/// [`resolve`]).
fn parse_listen_at(at: &str) -> Result<ListenAt, String> {
    let bad = || format!("{at:?} is neither PORT nor HOST:PORT");
    let (host, port) = match at.rsplit_once(':') {
        Some((host, port)) => (Some(host), port),
        None => (None, at),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.map(|h| parse_listen_host(h).map_err(|_| bad())).transpose()?;
    Ok((host, port))
}

/// An IP address (IPv6 with or without brackets) or a host name.
fn parse_listen_host(host: &str) -> Result<String, String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    let label = |l: &str| {
        !l.is_empty() && !l.starts_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    match bare.strip_suffix('.').unwrap_or(bare).split('.').all(label) && bare == host {
        true => Ok(host.to_ascii_lowercase()),
        false => Err(format!("{host:?} is neither an IP address nor a host name")),
    }
}

/// The addresses to listen on for `host` and `port`: an IP address as it is, a name resolved
/// to every address it has (in the resolver's order, each once).
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map_err(|e| {
        let text = e.to_string();
        // std words every getaddrinfo failure "failed to lookup address information: WHY".
        let why = text.strip_prefix("failed to lookup address information: ").unwrap_or(&text).to_owned();
        format!("cannot listen on {host}: name resolution failed: {why}")
    })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.is_empty() {
        true => Err(format!("cannot listen on {host}: it has no address")),
        false => Ok(addrs),
    }
}

/// `regular`, `reverse:URL`, `upstream:URL`, `socks5` or `transparent`.
fn parse_mode(s: &str) -> Result<ModeArg, String> {
    match s {
        "regular" => return Ok(ModeArg(Mode::Regular, false)),
        "socks5" => return Ok(ModeArg(Mode::Socks5, false)),
        "transparent" if cfg!(target_os = "linux") => return Ok(ModeArg(Mode::Transparent, false)),
        "transparent" => return Err("transparent mode needs Linux (SO_ORIGINAL_DST)".into()),
        _ => {}
    }
    if let Some(url) = s.strip_prefix("reverse:") {
        let (scheme, target, h2c) = parse_origin(url)?;
        return Ok(ModeArg(Mode::Reverse { scheme, target, client_tls: false }, h2c));
    }
    if let Some(url) = s.strip_prefix("upstream:") {
        let (scheme, proxy) = parse_url(url)?;
        return Ok(ModeArg(Mode::Upstream { proxy, tls: scheme == Scheme::Https, auth: None }, false));
    }
    Err(format!("unknown mode {s:?}: use regular, reverse:URL, upstream:URL, socks5 or transparent"))
}

/// A reverse-mode origin: [`parse_url`]'s URLs, or `h2c://host[:port]` for plain HTTP/2
/// with prior knowledge (the flag).
fn parse_origin(s: &str) -> Result<(Scheme, ServerAddr, bool), String> {
    match s.strip_prefix("h2c://") {
        Some(rest) => parse_url(&format!("http://{rest}")).map(|(scheme, addr)| (scheme, addr, true)),
        None => parse_url(s).map(|(scheme, addr)| (scheme, addr, false)),
    }
}

/// `http://host[:port]` or `https://host[:port]`, nothing after the authority but a `/`.
fn parse_url(s: &str) -> Result<(Scheme, ServerAddr), String> {
    let (scheme, rest) = if let Some(rest) = s.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = s.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("{s:?} is not an http:// or https:// URL"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{s:?}: give only scheme, host and port"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| format!("{s:?}: bad port {port:?}"))?)
        }
        _ => (authority, scheme.default_port()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?}: no host"));
    }
    Ok((scheme, ServerAddr::new(host.to_ascii_lowercase(), port)))
}

/// Reverse mode's least request body rate (Apache's `MinRate` default).
const DEFAULT_REVERSE_BODY_MIN_RATE: u64 = 500;

/// Seconds, fractions allowed (`0.5`).
fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{e}"))
}

impl Args {
    /// Where --listen, or --listen-host and -p, say to listen: a host and a port.
    fn listen_at(&self) -> (String, u16) {
        match &self.listen {
            Some((host, port)) => (host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned()), *port),
            None => (
                self.listen_host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned()),
                self.listen_port.unwrap_or(DEFAULT_PORT),
            ),
        }
    }

    /// The flag a listener without a port of its own takes it from, as the user gave it.
    fn listen_flag(&self) -> &'static str {
        match self.listen_port {
            Some(_) => "-p PORT",
            None => "--listen PORT",
        }
    }

    /// The listeners: where each listens (names resolved), its mode (with --listen-tls
    /// applied to reverse modes), whether its upstream speaks h2c, and a reverse listener's
    /// gateway. One on --listen without --mode or --config routes.
    fn listeners(&self) -> Result<Vec<Listener>, String> {
        let specs: Vec<(ModeSpec, Option<&GatewaySpec>)> = match self.reverse.first() {
            _ if !self.file_gateways.is_empty() => {
                if !self.reverse.is_empty()
                    || self
                        .mode
                        .iter()
                        .any(|m| matches!(m.mode.0, Mode::Reverse { .. }))
                {
                    return Err("the --config file's routes make the reverse listeners: give no --reverse or --mode reverse:URL (a route's `listen` gives it a listener of its own)".into());
                }
                let reverse = self.file_gateways.iter().map(|(at, spec)| {
                    let backend = ConfigFile::first_backend_of(spec)
                        .expect("a validated gateway has a route to a backend");
                    let mode = ModeArg(
                        Mode::Reverse {
                            scheme: backend.scheme,
                            target: backend.addr,
                            client_tls: false,
                        },
                        false,
                    );
                    (ModeSpec { mode, at: at.clone() }, Some(spec))
                });
                reverse
                    .chain(self.mode.iter().map(|m| (m.clone(), None)))
                    .collect()
            }
            Some((scheme, target, h2c)) => {
                if self.reverse.iter().any(|(_, _, other)| other != h2c) {
                    return Err("--reverse: either every backend is h2c:// or none".into());
                }
                vec![(
                    ModeSpec {
                        mode: ModeArg(
                            Mode::Reverse {
                                scheme: *scheme,
                                target: target.clone(),
                                client_tls: false,
                            },
                            *h2c,
                        ),
                        at: None,
                    },
                    None,
                )]
            }
            None if self.mode.is_empty() => vec![(
                ModeSpec {
                    mode: ModeArg(Mode::Regular, false),
                    at: None,
                },
                None,
            )],
            None => self.mode.iter().map(|m| (m.clone(), None)).collect(),
        };
        let reverse = specs
            .iter()
            .any(|(s, _)| matches!(s.mode.0, Mode::Reverse { .. }));
        if !reverse && (self.lb.is_some() || self.health_check.is_some()) {
            return Err("--lb and --health-check are for reverse mode".into());
        }
        if !reverse && self.upstream_max_conns.is_some() {
            return Err("--upstream-max-conns is for reverse mode (the backends' limit)".into());
        }
        if self.health_check.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err("--health-check takes a path starting with '/'".into());
        }
        if self.health_interval.is_zero() || self.health_timeout.is_zero() {
            return Err("--health-interval and --health-timeout must be above zero".into());
        }
        if specs.iter().filter(|(s, _)| s.at.is_none()).count() > 1 {
            return Err(
                "several --mode without `@PORT` would share --listen: give each its own port"
                    .into(),
            );
        }
        if self.listen_tls && !reverse {
            return Err("--listen-tls is for reverse mode".into());
        }
        if self.upstream_auth.is_some()
            && !specs
                .iter()
                .any(|(s, _)| matches!(s.mode.0, Mode::Upstream { .. }))
        {
            return Err("--upstream-auth is for upstream mode (--mode upstream:URL)".into());
        }
        if self.upstream_auth.as_deref().is_some_and(|a| !a.contains(':')) {
            return Err("--upstream-auth takes USER:PASS".into());
        }
        let (main_host, main_port) = self.listen_at();
        let mut listeners: Vec<Listener> = Vec::with_capacity(specs.len());
        for (spec, file_gateway) in specs {
            let (host, port, port_from) = match spec.at {
                None => (main_host.clone(), main_port, self.listen_flag().to_owned()),
                Some((host, port)) => {
                    let port_from = match file_gateway {
                        Some(_) => "the route's `listen`".to_owned(),
                        None => format!("--mode {}@PORT", spec.mode.0.name()),
                    };
                    (host.unwrap_or_else(|| main_host.clone()), port, port_from)
                }
            };
            let addrs = resolve(&host, port)?;
            let taken = addrs.iter().find(|a| listeners.iter().any(|l| l.addrs.contains(a)));
            if let Some(addr) = taken.filter(|_| port != 0) {
                return Err(format!("two modes listen on {addr}"));
            }
            let ModeArg(mode, h2c) = spec.mode;
            let mode = match mode {
                Mode::Reverse { scheme, target, .. } => {
                    if (self.listen_tls || scheme == Scheme::Https) && self.no_intercept {
                        return Err("reverse mode with TLS on either side needs TLS: drop --no-intercept".into());
                    }
                    Mode::Reverse { scheme, target, client_tls: self.listen_tls }
                }
                Mode::Upstream { proxy, tls, .. } => {
                    if tls && self.no_intercept {
                        return Err("an https:// upstream proxy needs TLS: drop --no-intercept".into());
                    }
                    Mode::Upstream { proxy, tls, auth: self.upstream_auth.clone() }
                }
                mode => mode,
            };
            let gateway = match file_gateway {
                Some(spec) => Some(spec.clone()),
                None => self.gateway_spec(&mode),
            };
            listeners.push(Listener {
                addrs,
                mode: ModeArg(mode, h2c),
                gateway,
                port_from,
            });
        }
        Ok(listeners)
    }

    /// The configuration of `listener`.
    fn config_for(&self, listener: &Listener) -> Config {
        let ModeArg(mode, h2c) = &listener.mode;
        let min_rate = self.body_min_rate.unwrap_or(match mode {
            Mode::Reverse { .. } => DEFAULT_REVERSE_BODY_MIN_RATE,
            _ => 0,
        });
        Config {
            gateway: listener.gateway.clone().and_then(gateway_of),
            body_min_rate: (min_rate > 0 && !self.body_rate_window.is_zero()).then_some(MinRate {
                bytes_per_sec: min_rate,
                window: self.body_rate_window,
            }),
            underscore_headers: self.underscores_in_headers.unwrap_or(match mode {
                Mode::Reverse { .. } => UnderscoreHeaders::Drop,
                _ => UnderscoreHeaders::Keep,
            }),
            upstream_h2c: *h2c,
            mode: mode.clone(),
            ..self.config()
        }
    }

    /// What a group of the --config file leaves to the flags.
    fn group_defaults(&self) -> GroupDefaults {
        GroupDefaults {
            balance: self.lb.clone().unwrap_or_default(),
            health: HealthSpec {
                path: self.health_check.clone(),
                interval: self.health_interval,
                timeout: self.health_timeout,
                max_fails: self.max_fails,
                ejection: self.eject_time,
                ..HealthSpec::default()
            },
            limits: LimitSpec { max_conns: self.upstream_max_conns, queue_limit: self.queue_limit, queue_timeout: self.queue_timeout },
            forwarded_headers: !self.no_forwarded,
        }
    }

    /// What a reverse listener of the flags serves: its backends one group with every
    /// request routed to it.
    fn gateway_spec(&self, mode: &Mode) -> Option<GatewaySpec> {
        let Mode::Reverse { scheme, target, .. } = mode else {
            return None;
        };
        let backends = match self.reverse.is_empty() {
            true => vec![Backend::new(*scheme, target.clone())],
            false => self.reverse.iter().map(|(scheme, addr, _)| Backend::new(*scheme, addr.clone())).collect(),
        };
        let defaults = self.group_defaults();
        let mut group = GroupSpec::new("default", backends);
        group.balance = defaults.balance;
        group.health = defaults.health;
        group.limits = defaults.limits;
        Some(GatewaySpec { forwarded_headers: defaults.forwarded_headers, ..GatewaySpec::single(group) })
    }

    fn config(&self) -> Config {
        Config {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_buffered_body: self.max_buffered_body,
            close_linger: self.close_linger,
            reuse_server_connections: !self.no_server_reuse,
            share_streams: !self.no_shared_streams,
            joined_stream_idle: self.joined_stream_idle,
            forward_min: (!self.no_splice).then_some(FORWARD_MIN),
            high_water: self.high_water,
            server_idle_timeout: self.server_idle_timeout,
            client_idle_timeout: self.client_idle_timeout,
            head_timeout: self.head_timeout,
            body_timeout: self.body_timeout,
            add_via: self.via,
            underscore_headers: self.underscores_in_headers.unwrap_or(UnderscoreHeaders::Keep),
            http2: !self.no_http2,
            http2_limits: Http2Limits {
                max_concurrent_streams: self.h2_max_streams,
                max_header_list_size: self.h2_max_header_list,
                stream_window: self.h2_window.max(65_535),
                connection_window: self.h2_window.max(65_535).saturating_mul(4),
                max_resets: self.h2_max_resets,
                ..Http2Limits::default()
            },
            websocket: WebSocketLimits {
                max_message: self.max_ws_message,
                oversize: self.ws_oversize,
                ..WebSocketLimits::default()
            },
            ..Config::default()
        }
    }

    /// How TLS is to be intercepted; `None` with --no-intercept. `var` reads the environment.
    fn tls_options(&self, var: impl Fn(&str) -> Option<OsString>) -> Result<Option<TlsOptions>, String> {
        if self.no_intercept {
            return Ok(None);
        }
        let certs: Vec<(String, PathBuf)> = self
            .cert
            .iter()
            .map(|c| match c.split_once('=') {
                Some((domain, path)) => (domain.to_owned(), PathBuf::from(path)),
                None => ("*".to_owned(), PathBuf::from(c)),
            })
            .collect();
        let (every, named): (Vec<_>, Vec<_>) = certs.into_iter().partition(|(domain, _)| domain == "*");
        if every.len() > 1 {
            return Err("--cert without DOMAIN= is for every name: give it once".into());
        }
        let every = every.into_iter().next().map(|(_, path)| path);
        let ca = match (every, &self.ca_cert, &self.ca_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err("--cert PEM (for every name) leaves nothing for --ca-cert to sign: \
                            give the certificate a DOMAIN= to keep the CA for the other names"
                    .into())
            }
            (Some(cert), _, _) => CaSource::Fixed(cert),
            (None, Some(cert), Some(key)) => CaSource::Files { cert: cert.clone(), key: key.clone() },
            _ => match self.ca_dir.clone().or_else(|| proxy_io::tls::default_ca_dir_from(var)) {
                Some(dir) => CaSource::Dir(dir),
                None => {
                    return Err("no directory for the CA: HOME is not set; pass --ca-dir, or --no-intercept".into())
                }
            },
        };
        Ok(Some(TlsOptions {
            ca,
            upstream_roots: self.upstream_ca.clone(),
            insecure_upstream: self.insecure_upstream,
            ignore_hosts: self.ignore_hosts.clone(),
            cache_size: self.cert_cache,
            certs: named,
        }))
    }
}

/// Where the CA certificate is and how to make clients trust it: for each kind of client
/// when the CA was just made, in one line naming the settings on every later start. git's
/// `GIT_SSL_CAINFO` is named rather than `-c http.sslCAInfo`, which it overrides when set.
fn ca_notice(ca: &CaInfo) -> String {
    let path = ca.cert_path.display();
    if !ca.created {
        return format!(
            "sansproxy: intercepting TLS; clients must trust the CA certificate {path}\n\
             \x20 (curl --cacert; GIT_SSL_CAINFO for git; REQUESTS_CA_BUNDLE or SSL_CERT_FILE for Python; \
             NODE_EXTRA_CA_CERTS for Node; or the system store: update-ca-certificates)\n"
        );
    }
    format!(
        "sansproxy: intercepting TLS with a new CA; clients must trust its certificate {path}\n\
         \x20 curl:    curl --cacert {path} ...\n\
         \x20 git:     GIT_SSL_CAINFO={path} git ...\n\
         \x20 Python:  REQUESTS_CA_BUNDLE={path} (requests), SSL_CERT_FILE={path} (urllib, httpx)\n\
         \x20 Node:    NODE_EXTRA_CA_CERTS={path} node ...\n\
         \x20 system (Debian, Ubuntu): sudo cp {path} /usr/local/share/ca-certificates/sansproxy.crt \
         && sudo update-ca-certificates\n"
    )
}

/// Bodies with at least this much left to come are spliced rather than read.
const FORWARD_MIN: u64 = 256 * 1024;

/// Prints a line for each finished or failed flow, for each WebSocket's start and end, and
/// with `verbose` for each WebSocket message.
struct Printer {
    quiet: bool,
    verbose: bool,
    lines: FlowLog,
    /// Put before each line: the listener's mode and port, when there are several (set once
    /// the listener is bound, so that port 0 shows as the port it got).
    label: Arc<OnceLock<String>>,
    /// With --metrics: where flows and handshakes are counted, and under which listener name.
    metrics: Option<(Arc<metrics::Metrics>, Arc<OnceLock<String>>)>,
    reverse: bool,
}

impl Handler for Printer {
    fn hooks(&self) -> HookSet {
        let counted: HookSet = match &self.metrics {
            Some(_) => [HookKind::Response, HookKind::Error, HookKind::TlsEstablished, HookKind::TlsFailed].into_iter().collect(),
            None => HookSet::NONE,
        };
        if self.quiet {
            return counted;
        }
        let hooks = [HookKind::Response, HookKind::Error, HookKind::TlsFailed, HookKind::WebSocketStart, HookKind::WebSocketEnd];
        let hooks: HookSet = hooks.into_iter().chain(counted.contains(HookKind::TlsEstablished).then_some(HookKind::TlsEstablished)).collect();
        if self.verbose { hooks.with(HookKind::WebSocketMessage) } else { hooks }
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        if let Some((metrics, listener)) = &self.metrics {
            let listener = listener.get().map_or("", String::as_str);
            match &hook {
                Hook::Response(flow) | Hook::Error(flow) => metrics.flow_ended(listener, self.reverse, flow),
                Hook::TlsEstablished(info) => metrics.handshake(listener, info.peer, true),
                // That client's handshake succeeded, and was counted so.
                Hook::TlsFailed(failure) if failure.cause == TlsCause::ClosedAfterHandshake => {}
                Hook::TlsFailed(failure) => metrics.handshake(listener, failure.peer, false),
                _ => {}
            }
            if self.quiet {
                return HookReply::Continue;
            }
        }
        let line = match &hook {
            Hook::Response(flow) | Hook::Error(flow) => flow_line(flow, Instant::now()),
            Hook::WebSocketStart(flow) => Some(websocket_start_line(flow)),
            Hook::TlsFailed(failure) => tls_failure_line(failure),
            Hook::WebSocketMessage(message) => Some(message_line(message)),
            Hook::WebSocketEnd(end) => Some(websocket_end_line(end)),
            _ => None,
        };
        if let Some(line) = line {
            let label = self.label.get().map_or("", String::as_str);
            self.lines.push(format!("{label}{line}"));
        }
        HookReply::Continue
    }
}

/// The flow log's writer: a thread that takes lines from the connections' tasks and writes
/// whatever has piled up with one system call, so that under load the log costs a write per
/// batch instead of a write (and a lock) per flow, while a lone line still goes out at once.
#[derive(Clone)]
struct FlowLog {
    tx: std::sync::mpsc::Sender<String>,
}

impl FlowLog {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            while let Ok(line) = rx.recv() {
                let mut line = Some(line);
                while let Some(l) = line {
                    // A closed stdout (a pipe whose reader left) is not the proxy's problem.
                    let _ = out.write_all(l.as_bytes());
                    line = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        });
        Self { tx }
    }

    fn push(&self, line: String) {
        // The writer only stops when the process does.
        let _ = self.tx.send(line);
    }
}

/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms (client VERSION, server VERSION)`, or
/// `... -> error: MESSAGE`. A `CONNECT` names only its client's version: what answered it is
/// the proxy (or an upstream proxy), not the server of the exchanges inside, and a tunnel is
/// `-> 200 tunnel DURATIONms (client VERSION)`.
fn flow_line(flow: &HttpFlow, now: Instant) -> Option<String> {
    let req = &flow.request;
    let head = format!("{} {} {}", flow.client.peer, req.method, req.url());
    if let Some(error) = &flow.error {
        return Some(format!("{head} -> error: {}\n", error.message));
    }
    let response = flow.response.as_ref()?;
    let took = flow.ended.unwrap_or(now).saturating_duration_since(flow.started);
    if req.method.eq_ignore_ascii_case("CONNECT") {
        let (status, ms, client) = (response.status, took.as_millis(), req.version.as_str());
        return Some(match (200..300).contains(&status) {
            // A tunnel: no exchange to describe, only how long it took to set up.
            true => format!("{head} -> {status} tunnel {ms}ms (client {client})\n"),
            false => format!("{head} -> {status} {}b {ms}ms (client {client})\n", flow.response_body_bytes),
        });
    }
    Some(format!(
        "{head} -> {} {}b {}ms (client {}, server {})\n",
        response.status,
        flow.response_body_bytes,
        took.as_millis(),
        req.version.as_str(),
        response.version.as_str(),
    ))
}

/// `CLIENT GET URL -> 101 websocket #ID (client HTTP/1.1, server HTTP/1.1)`: the upgrade, and
/// the id the flow's message lines carry.
fn websocket_start_line(flow: &HttpFlow) -> String {
    let server = flow.response.as_ref().map_or("?", |r| r.version.as_str());
    format!(
        "{} {} {} -> 101 websocket #{} (client {}, server {server})\n",
        flow.client.peer,
        flow.request.method,
        flow.request.url(),
        flow.id.0,
        flow.request.version.as_str(),
    )
}

/// `  #ID client -> server text 5b "Hello"`: one message (or piece) and its first bytes.
fn message_line(message: &WebSocketMessage) -> String {
    const SHOWN: usize = 40;
    let arrow = match message.from {
        Peer::Client => "client -> server",
        Peer::Server => "server -> client",
    };
    let kind = match message.kind {
        MessageKind::Text => "text",
        MessageKind::Binary => "binary",
    };
    let piece = if message.offset == 0 && message.last { String::new() } else { format!(" (piece at {})", message.offset) };
    let shown = &message.payload[..message.payload.len().min(SHOWN)];
    let mut preview = String::new();
    match message.kind {
        // Text as characters (a character cut at the end is left out), controls escaped.
        MessageKind::Text => {
            let text = match std::str::from_utf8(shown) {
                Ok(text) => text,
                Err(e) => std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or_default(),
            };
            text.chars().for_each(|c| push_shown(&mut preview, c));
        }
        // Binary as printable ASCII, the rest as `\xNN`.
        MessageKind::Binary => {
            for &b in shown {
                match b {
                    0x20..=0x7e => push_shown(&mut preview, b as char),
                    _ => preview.push_str(&format!("\\x{b:02x}")),
                }
            }
        }
    }
    let more = if message.payload.len() > SHOWN { "..." } else { "" };
    format!("  #{} {arrow} {kind} {}b{piece} \"{preview}\"{more}\n", message.flow.0, message.payload.len())
}

/// `c` in a quoted preview: quotes and backslashes escaped, controls as Rust escapes them.
fn push_shown(preview: &mut String, c: char) {
    match c {
        '"' | '\\' => {
            preview.push('\\');
            preview.push(c);
        }
        c if c.is_control() => preview.extend(c.escape_default()),
        c => preview.push(c),
    }
}

/// `CLIENT websocket #ID URL closed by client: 1000 "bye", messages 3 -> 2 <-, bytes ...`.
fn websocket_end_line(end: &WebSocketEnd) -> String {
    let flow = &end.upgrade;
    let by = end.closed_by.map_or("nobody", Peer::as_str);
    let code = match end.code {
        Some(code) if end.reason.is_empty() => code.to_string(),
        Some(code) => format!("{code} {:?}", end.reason),
        None => "no close frame".to_owned(),
    };
    let error = end.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
    format!(
        "{} websocket #{} {} closed by {by}: {code}{error}, messages {} -> {} <-, bytes {} -> {} <-\n",
        flow.client.peer,
        end.flow.0,
        flow.request.url(),
        end.messages[0],
        end.messages[1],
        end.bytes[0],
        end.bytes[1],
    )
}

/// A failed client handshake has no flow to print, so it gets a line of its own, with the
/// cause and what fixes it (upstream failures show as the flow's 502, which says as much).
/// Most often the client does not trust the proxy's CA, and the line names the file to trust.
fn tls_failure_line(failure: &TlsFailure) -> Option<String> {
    if failure.peer != TlsPeer::Client {
        return None;
    }
    let name = failure.server_name.clone().unwrap_or_else(|| failure.server.host.clone());
    Some(format!("client TLS handshake for {name} ({}) failed: {failure}\n", failure.server))
}

/// Log lines go to stderr, at `warn` and above unless `RUST_LOG` says otherwise, in colour
/// only on a terminal and without `NO_COLOR` (<https://no-color.org>): a file or a pipe gets
/// no escape codes.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

impl Args {
    /// The command line, with the --config file's flags before it (so that it wins) and its
    /// routes read.
    fn load(cli: Vec<OsString>) -> Result<Args, String> {
        let args = Args::try_parse_from(&cli).unwrap_or_else(|e| e.exit());
        let Some(path) = args.config.clone() else { return Ok(args) };
        Args::with_file(&cli, &path)
    }

    /// `cli` combined with the file at `path`.
    fn with_file(cli: &[OsString], path: &std::path::Path) -> Result<Args, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
        let file = ConfigFile::parse(&text).map_err(|e| format!("{at}: {e}"))?;
        let mut argv = vec![cli[0].clone()];
        // Where to listen is one setting, however given: the command line's replaces the
        // file's whole (--listen and -p, which exclude each other, would otherwise meet).
        match cli[1..].iter().any(is_listen_flag) {
            true => argv.extend(without_listen_flags(&file.args)),
            false => argv.extend(file.args.iter().cloned()),
        }
        argv.extend(cli[1..].iter().cloned());
        let mut args = Args::try_parse_from(argv)
            .map_err(|e| format!("{at}: {}", e.to_string().trim_end()))?;
        args.file_gateways = file
            .gateway_specs(&args.group_defaults())
            .map_err(|e| format!("{at}: {e}"))?;
        args.file_flags = file.args;
        Ok(args)
    }
}

/// Whether `arg` is --listen, --listen-host or -p (--listen-port), with its value or without.
fn is_listen_flag(arg: &OsString) -> bool {
    let Some(arg) = arg.to_str() else { return false };
    let name = arg.split_once('=').map_or(arg, |(name, _)| name);
    matches!(name, "--listen" | "--listen-host" | "--listen-port")
        || arg.strip_prefix("-p").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// The --config file's flags without those saying where to listen (each is a flag and its
/// value there).
fn without_listen_flags(args: &[OsString]) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len());
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        if !is_listen_flag(arg) {
            kept.push(arg.clone());
        } else if args.peek().is_some_and(|v| !v.to_string_lossy().starts_with("--")) {
            args.next();
        }
    }
    kept
}

/// Reload the --config file's routes and groups into every reverse listener's gateway, on
/// SIGHUP or (with --watch-config) when the file changes. A file that does not parse or
/// validate is refused with its line and reason; the old configuration keeps serving.
async fn reload_on_signal(
    cli: Vec<OsString>,
    path: PathBuf,
    watch: bool,
    gateways: Vec<(Vec<SocketAddr>, Gateway)>,
    mut flags: Vec<OsString>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => return tracing::warn!("no reload on SIGHUP: {e}"),
    };
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)), if watch => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
            }
        }
        let args = match Args::with_file(&cli, &path) {
            Ok(read) => read,
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one keeps serving: {e}");
                continue;
            }
        };
        if args.file_flags != flags {
            tracing::warn!("{}: flags changed; they take effect when sansproxy restarts (routes and upstreams apply now)", path.display());
        }
        // Each reverse listener's new routes and groups, in the order of its gateway.
        let specs: Vec<(Vec<SocketAddr>, GatewaySpec)> = match args.listeners() {
            Ok(listeners) => listeners
                .into_iter()
                .filter_map(|l| Some((l.addrs, l.gateway?)))
                .collect(),
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one keeps serving: {}: {e}", path.display());
                continue;
            }
        };
        if !specs
            .iter()
            .map(|(addr, _)| addr)
            .eq(gateways.iter().map(|(addr, _)| addr))
        {
            let addrs = |all: Vec<&Vec<SocketAddr>>| {
                all.iter()
                    .flat_map(|addrs| addrs.iter())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            tracing::error!(
                "{}: the reverse listeners changed (now {}, serving {}); the old configuration keeps serving until sansproxy restarts",
                path.display(),
                addrs(specs.iter().map(|(a, _)| a).collect()),
                addrs(gateways.iter().map(|(a, _)| a).collect()),
            );
            continue;
        }
        for ((_, gateway), (_, spec)) in gateways.iter().zip(specs) {
            let (routes, groups) = (spec.routes.len(), spec.groups.len());
            match gateway.reload(spec) {
                Ok(()) => tracing::warn!("{}: reloaded, {routes} routes over {groups} groups", path.display()),
                Err(e) => tracing::error!("configuration not reloaded, the old one keeps serving: {e}"),
            }
        }
        flags = args.file_flags.clone();
    }
}

impl Args {
    /// `--threads`, or one per CPU.
    fn thread_count(&self) -> usize {
        self.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), |n| n as usize)
    }
}

/// How the threads serving connections are set up: `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeKind {
    PerCore,
    WorkStealing,
}

fn parse_runtime(s: &str) -> Result<RuntimeKind, String> {
    match s {
        "per-core" => Ok(RuntimeKind::PerCore),
        "work-stealing" => Ok(RuntimeKind::WorkStealing),
        _ => Err(format!("{s:?}: per-core or work-stealing")),
    }
}

fn main() -> ExitCode {
    let cli: Vec<OsString> = std::env::args_os().collect();
    let args = match Args::load(cli.clone()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let threads = args.thread_count();
    // Per core, this thread serves one share, and the proxy starts a thread for each other.
    let mut runtime = match args.runtime {
        RuntimeKind::PerCore => tokio::runtime::Builder::new_current_thread(),
        RuntimeKind::WorkStealing => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads);
            runtime
        }
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sansproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match args.listeners() {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy_auth = match args.proxyauth.as_deref().map(auth::parse).transpose() {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("sansproxy: --proxyauth: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Listening comes first: a port in use must fail before a CA is made or read.
    let bound = match bind(&args, &listeners) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut notice = None;
    let mut tls = None;
    match args.tls_options(|name| std::env::var_os(name)).and_then(|o| o.map(set_up_tls).transpose()) {
        Ok(Some((config, ca))) => {
            tls = Some(config);
            notice = ca.map(|ca| ca_notice(&ca));
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    }
    let listeners = listeners
        .iter()
        .zip(bound)
        .map(|(listener, builders)| {
            let config = Config {
                tls: tls.clone(),
                proxy_auth: proxy_auth.clone(),
                ..args.config_for(listener)
            };
            Bound { addrs: listener.addrs.clone(), builders, config }
        })
        .collect();
    let code = runtime.block_on(serve(args, cli, listeners, notice));
    // Do not wait for name lookups still blocked in the resolver: the proxy is done.
    runtime.shutdown_background();
    code
}

/// A listener with its sockets bound, one proxy builder per address, and its configuration.
struct Bound {
    /// The addresses as configured (port 0 as asked), which a reload compares.
    addrs: Vec<SocketAddr>,
    builders: Vec<proxy_io::Builder>,
    config: Config,
}

/// For each listener, a proxy builder per address with its socket bound. Port 0 picks a
/// free port, the same for every address of one listener. An address of a name that this
/// machine cannot listen on (`::1` of `localhost` with IPv6 off) is left out, with a warning,
/// if another is listened on.
fn bind(args: &Args, listeners: &[Listener]) -> Result<Vec<Vec<proxy_io::Builder>>, String> {
    let mut bound = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let mut builders: Vec<proxy_io::Builder> = Vec::with_capacity(listener.addrs.len());
        let mut unavailable = None;
        for &addr in &listener.addrs {
            let port = builders.first().and_then(proxy_io::Builder::local_addr).map_or(addr.port(), |a| a.port());
            let addr = SocketAddr::new(addr.ip(), port);
            let mut builder = Proxy::builder().listen(addr);
            if let Some(n) = args.max_connections {
                builder = builder.max_connections(n as usize);
            }
            if args.runtime == RuntimeKind::PerCore {
                builder = builder.threads(args.thread_count());
            }
            match builder.bind() {
                Ok(builder) => builders.push(builder),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && listener.addrs.len() > 1 => {
                    unavailable.get_or_insert(listen_error(addr, &e, &listener.port_from));
                }
                Err(e) => return Err(listen_error(addr, &e, &listener.port_from)),
            }
        }
        match (builders.is_empty(), unavailable) {
            (true, Some(e)) => return Err(e),
            (false, Some(e)) => tracing::warn!("{e}; listening on the other addresses"),
            _ => {}
        }
        bound.push(builders);
    }
    Ok(bound)
}

/// Why `addr` cannot be listened on, and what to do about it; `port_from` is the flag that
/// gave the port.
fn listen_error(addr: SocketAddr, e: &std::io::Error, port_from: &str) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::AddrInUse => {
            format!("address already in use (is another proxy running? pick another port with {port_from})")
        }
        ErrorKind::AddrNotAvailable => "address not available (no interface of this machine has it)".to_owned(),
        ErrorKind::PermissionDenied => format!(
            "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE; pick another with {port_from})"
        ),
        _ => e.to_string(),
    };
    format!("cannot listen on {addr}: {why}")
}

/// A reverse listener's gateway, made from a spec listeners() checked.
fn gateway_of(spec: GatewaySpec) -> Option<Gateway> {
    // Random choices (random, p2c) differ from one run to the next.
    let seed = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        Instant::now(),
    );
    Gateway::new(spec, seed).ok()
}

fn set_up_tls(options: TlsOptions) -> Result<(proxy_core::tls::TlsConfig, Option<CaInfo>), String> {
    let (mut tls, ca) = options.build().map_err(|e| format!("cannot set up TLS interception: {e}"))?;
    tls.remedies = remedies(ca.as_ref());
    Ok((tls, ca))
}

/// How TLS failure messages (a `502`'s text, the log lines) name what fixes them: by this
/// command's flags, and the CA certificate by its file and the commands that trust it.
fn remedies(ca: Option<&CaInfo>) -> Remedies {
    let trust_ca = match ca {
        Some(ca) => {
            let path = ca.cert_path.display();
            let how = format!("curl --cacert {path}, GIT_SSL_CAINFO={path} git, or the system's trust store");
            format!("{path} ({how})").into()
        }
        None => "the certificate given with --cert".into(),
    };
    Remedies {
        upstream_ca: "--upstream-ca FILE".into(),
        insecure_upstream: "--insecure-upstream".into(),
        ignore_hosts: "--ignore-hosts REGEX".into(),
        trust_ca,
    }
}

async fn serve(args: Args, cli: Vec<OsString>, listeners: Vec<Bound>, ca_notice: Option<String>) -> ExitCode {
    let lines = FlowLog::start();
    let gateways: Vec<(Vec<SocketAddr>, Gateway)> = listeners
        .iter()
        .filter_map(|l| Some((l.addrs.clone(), l.config.gateway.clone()?)))
        .collect();
    let metrics = match args.metrics {
        None => None,
        Some(addr) => match metrics::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().map_or(addr, |a| a);
                let metrics = metrics::Metrics::new();
                tokio::spawn(metrics::serve(Arc::clone(&metrics), listener));
                eprintln!("sansproxy metrics on http://{local}/metrics");
                Some(metrics)
            }
            Err(e) => {
                eprintln!("sansproxy: cannot serve metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(path) = &args.config {
        tokio::spawn(reload_on_signal(cli.clone(), path.clone(), args.watch_config, gateways, args.file_flags.clone()));
    }
    let several = listeners.len() > 1;
    // One Ctrl-C stops every listener, and says how many connections they have together.
    let shutdown = proxy_io::ShutdownHandle::new();
    let mut proxies = Vec::with_capacity(listeners.len());
    for Bound { builders, config, .. } in listeners {
        let mode = config.mode.name();
        let label = Arc::new(OnceLock::new());
        let name = Arc::new(OnceLock::new());
        let reverse = matches!(config.mode, Mode::Reverse { .. });
        let gateway = config.gateway.clone();
        let shared = !args.no_server_reuse && !args.upstream_idle_timeout.is_zero() && args.upstream_max_idle > 0;
        let limits = PoolLimits {
            max_idle_per_key: args.upstream_max_idle,
            idle_timeout: args.upstream_idle_timeout,
            ..PoolLimits::default()
        };
        // One proxy per address of the listener, sharing its label, gateway and metrics name.
        for (i, builder) in builders.into_iter().enumerate() {
            let printer = Printer {
                quiet: args.quiet,
                verbose: args.verbose,
                lines: lines.clone(),
                label: label.clone(),
                metrics: metrics.clone().map(|m| (m, Arc::clone(&name))),
                reverse,
            };
            let builder = builder
                .config(config.clone())
                .handler(printer)
                .connect_timeout(args.connect_timeout)
                .shutdown_timeout(args.shutdown_timeout)
                .upstream_pool(shared.then(|| limits.clone()))
                .shutdown_handle(shutdown.clone());
            // --no-intercept; with interception, `config.tls` is what the builder uses.
            let builder = if config.tls.is_none() { builder.no_intercept() } else { builder };
            let bound = builder.local_addr();
            match builder.build().await {
                Ok(proxy) if i == 0 => {
                    let port = proxy.local_addr().port();
                    let _ = name.set(format!("{mode}@{port}"));
                    // The first address's upstream pool stands for the listener's.
                    if let Some(metrics) = &metrics {
                        metrics.watch(format!("{mode}@{port}"), gateway.clone(), proxy.pool_monitor());
                    }
                    // With several listeners, each flow line names the one it came through.
                    if several {
                        let _ = label.set(format!("[{mode}@{port}] "));
                    }
                    proxies.push((proxy, mode));
                }
                Ok(proxy) => proxies.push((proxy, mode)),
                Err(e) => {
                    // Bound already: what is left to fail is the listener's registration with
                    // the runtime, or a serving thread (BuildError says which, and where).
                    let at = bound.map_or_else(|| "its address".to_owned(), |a| a.to_string());
                    eprintln!("sansproxy: {at} ({mode} mode): {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if let Err(e) = proxy_io::shutdown_on_signals(shutdown) {
        eprintln!("sansproxy: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    for (proxy, mode) in &proxies {
        // The line integration tests wait for; with `--listen 127.0.0.1:0` it names the port.
        if several {
            eprintln!("sansproxy listening on {} ({mode} mode)", proxy.local_addr());
        } else {
            eprintln!("sansproxy listening on {}", proxy.local_addr());
        }
    }
    if let Some(notice) = ca_notice {
        eprint!("{notice}");
    }
    let mut running = tokio::task::JoinSet::new();
    for (proxy, _) in proxies {
        running.spawn(proxy.run());
    }
    while running.join_next().await.is_some() {}
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use proxy_core::{ClientInfo, FlowError, Request, Response, Scheme, Version};

    #[test]
    fn client_tls_failures_get_a_line_naming_the_ca_to_trust() {
        let ca = CaInfo { cert_path: "/h/.sansproxy/sansproxy-ca-cert.pem".into(), created: false };
        let flags = remedies(Some(&ca));
        let cause = TlsCause::CertificateRefused(proxy_core::tls::rustls::AlertDescription::UnknownCA);
        let failure = TlsFailure {
            conn: proxy_core::ConnId::CLIENT,
            peer: TlsPeer::Client,
            server: ServerAddr::new("example.test", 443),
            server_name: Some("example.test".into()),
            remedy: cause.remedy(TlsPeer::Client, &flags),
            cause,
        };
        assert_eq!(
            tls_failure_line(&failure).as_deref(),
            Some(
                "client TLS handshake for example.test (example.test:443) failed: the client refused the \
                 proxy's certificate (alert unknown_ca); the client does not trust the proxy's CA: make the \
                 client trust /h/.sansproxy/sansproxy-ca-cert.pem (curl --cacert \
                 /h/.sansproxy/sansproxy-ca-cert.pem, GIT_SSL_CAINFO=/h/.sansproxy/sansproxy-ca-cert.pem git, \
                 or the system's trust store), or leave this host uninspected (--ignore-hosts REGEX)\n"
            )
        );
        assert_eq!(tls_failure_line(&TlsFailure { peer: TlsPeer::Server, ..failure }), None);

        // Upstream failures name the flags (in the 502 the client gets).
        let remedy = TlsCause::UnknownIssuer.remedy(TlsPeer::Server, &flags).unwrap();
        assert_eq!(
            remedy,
            "trust the CA certificate that signed it (--upstream-ca FILE) or skip verification (--insecure-upstream)"
        );
        // With no CA (a certificate of the user's own for every client), that is what to trust.
        assert_eq!(remedies(None).trust_ca, "the certificate given with --cert");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("regular"), Ok(ModeArg(Mode::Regular, false)));
        let reverse = parse_mode("reverse:https://Origin.test:8443/").unwrap();
        let target = ServerAddr::new("origin.test", 8443);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Https, target, client_tls: false }, false));
        let reverse = parse_mode("reverse:http://[::1]").unwrap();
        let target = ServerAddr::new("::1", 80);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, false));
        let reverse = parse_mode("reverse:h2c://127.0.0.1:81").unwrap();
        let target = ServerAddr::new("127.0.0.1", 81);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, true));
        let proxy = ServerAddr::new("127.0.0.1", 3128);
        assert_eq!(parse_mode("upstream:http://127.0.0.1:3128"), Ok(ModeArg(Mode::Upstream { proxy, tls: false, auth: None }, false)));
        assert!(parse_mode("upstream:h2c://p:1").is_err());
        let proxy = ServerAddr::new("p", 1);
        assert_eq!(
            parse_mode("upstream:https://p:1"),
            Ok(ModeArg(
                Mode::Upstream {
                    proxy,
                    tls: true,
                    auth: None
                },
                false
            ))
        );
        let args = Args::try_parse_from([
            "sansproxy",
            "--mode",
            "upstream:https://p:1",
            "--upstream-auth",
            "u:p",
        ])
        .unwrap();
        assert!(
            matches!(&args.listeners().unwrap()[0].mode.0, Mode::Upstream { auth: Some(a), .. } if a == "u:p")
        );
        let args = Args::try_parse_from(["sansproxy", "--upstream-auth", "u:p"]).unwrap();
        assert!(args.listeners().is_err(), "--upstream-auth without an upstream mode");
        assert!(parse_mode("reverse:ftp://x").is_err());
        assert!(parse_mode("reverse:http://x/path").is_err());
        assert!(parse_mode("reverse:http://x:99999").is_err());
        assert_eq!(parse_mode("socks5"), Ok(ModeArg(Mode::Socks5, false)));
        assert_eq!(parse_mode("transparent").is_ok(), cfg!(target_os = "linux"));
        let args = Args::try_parse_from(["sansproxy", "--reverse", "https://o:1", "--listen-tls"])
            .unwrap();
        assert!(matches!(
            args.listeners().unwrap()[0].mode.0,
            Mode::Reverse {
                client_tls: true,
                ..
            }
        ));
        let args = Args::try_parse_from(["sansproxy", "--listen-tls"]).unwrap();
        assert!(args.listeners().is_err());
        let args = Args::try_parse_from(["sansproxy", "--reverse", "https://o:1", "--no-intercept"]).unwrap();
        assert!(args.listeners().is_err());
    }

    #[test]
    fn several_modes_each_with_a_listener() {
        let args = Args::try_parse_from([
            "sansproxy", "--listen", "127.0.0.2:8000", "--mode", "regular", "--mode", "socks5@1080",
            "--mode", "reverse:h2c://o:81@[::1]:8081", "--mode", "transparent@localhost:8082",
        ])
        .unwrap();
        let listeners: Vec<(String, &str)> = args
            .listeners()
            .unwrap()
            .iter()
            .map(|l| (l.addrs[0].to_string(), l.mode.0.name()))
            .collect();
        assert_eq!(
            listeners[..3],
            [
                ("127.0.0.2:8000".to_owned(), "regular"),
                ("127.0.0.2:1080".to_owned(), "socks5"),
                ("[::1]:8081".to_owned(), "reverse"),
            ]
        );
        // A name is listened on at each of its addresses.
        let localhost = &args.listeners().unwrap()[3];
        assert!(localhost.addrs.contains(&"127.0.0.1:8082".parse().unwrap()), "{localhost:?}");
        assert!(localhost.addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8082), "{localhost:?}");
        assert_eq!(localhost.port_from, "--mode transparent@PORT");
        let h2c = &args.listeners().unwrap()[2];
        assert!(args.config_for(h2c).upstream_h2c);
        for bad in [&["--mode", "regular", "--mode", "socks5"][..], &["--mode", "regular@1", "--mode", "socks5@1"], &["--mode", "socks5@x"]] {
            let args = Args::try_parse_from(["sansproxy"].iter().chain(bad)).map_err(|e| e.to_string());
            assert!(args.and_then(|a| a.listeners()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_map_onto_the_config() {
        let args = Args::try_parse_from(["sansproxy"]).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".to_owned(), 8080));
        assert_eq!(args.listeners().unwrap()[0].addrs, ["127.0.0.1:8080".parse().unwrap()]);
        assert!(!args.quiet && !args.via);
        assert_eq!(args.max_connections, None);
        assert_eq!(args.connect_timeout, Duration::from_secs(10));
        assert_eq!(args.shutdown_timeout, Duration::from_secs(5));
        let config = args.config_for(&args.listeners().unwrap()[0]);
        let default = Config::default();
        assert_eq!(config.mode, Mode::Regular);
        assert_eq!(config.max_head_bytes, 65536);
        assert_eq!(config.max_buffered_body, default.max_buffered_body);
        assert_eq!(config.high_water, default.high_water);
        assert_eq!(config.server_idle_timeout, default.server_idle_timeout);
        assert_eq!(config.client_idle_timeout, default.client_idle_timeout);
        assert_eq!(config.head_timeout, default.head_timeout);
        assert_eq!(config.body_timeout, default.body_timeout);
        assert!(!config.add_via);
    }

    #[test]
    fn flags_map_onto_the_config() {
        let args = Args::try_parse_from([
            "sansproxy", "--listen", "127.0.0.1:0", "-q", "--max-head-bytes", "1000",
            "--max-buffered-body", "2000", "--high-water", "3000", "--server-idle-timeout", "0.5",
            "--client-idle-timeout", "7", "--head-timeout", "2.5", "--body-timeout", "3.5", "--connect-timeout", "1.25",
            "--shutdown-timeout", "0", "--max-connections", "4", "--via",
        ])
        .unwrap();
        assert_eq!(args.listen_at().1, 0);
        assert!(args.quiet);
        assert_eq!(args.connect_timeout, Duration::from_millis(1250));
        assert_eq!(args.shutdown_timeout, Duration::ZERO);
        assert_eq!(args.max_connections, Some(4));
        let config = args.config();
        assert_eq!((config.max_head_bytes, config.max_buffered_body, config.high_water), (1000, 2000, 3000));
        let args = Args::try_parse_from(["sansproxy", "--h2-max-streams", "7", "--h2-window", "131072", "--h2-max-resets", "3"]).unwrap();
        let limits = args.config().http2_limits;
        assert_eq!((limits.max_concurrent_streams, limits.stream_window, limits.connection_window, limits.max_resets), (7, 131072, 524288, 3));
        assert!(!Args::try_parse_from(["sansproxy", "--no-http2"]).unwrap().config().http2);
        let waits = |args: &[&str]| Args::try_parse_from(args).unwrap().config().joined_stream_idle;
        assert_eq!(waits(&["sansproxy"]), Config::default().joined_stream_idle);
        assert_eq!(waits(&["sansproxy", "--joined-stream-idle", "0"]), Duration::ZERO);
        assert_eq!(config.server_idle_timeout, Duration::from_millis(500));
        assert_eq!(config.client_idle_timeout, Duration::from_secs(7));
        assert_eq!(config.head_timeout, Duration::from_millis(2500));
        assert_eq!(config.body_timeout, Duration::from_millis(3500));
        assert!(config.add_via);
        assert_eq!(Printer { quiet: true, verbose: false, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks(), HookSet::NONE);
        let loud = Printer { quiet: false, verbose: false, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks();
        assert!(loud.contains(HookKind::WebSocketEnd) && !loud.contains(HookKind::WebSocketMessage));
        let verbose = Printer { quiet: false, verbose: true, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks();
        assert!(verbose.contains(HookKind::WebSocketMessage));
        assert!(loud.contains(HookKind::Response) && loud.contains(HookKind::Error));
        assert!(!loud.contains(HookKind::RequestHeaders));
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            &["sansproxy", "--listen", "localhost"][..],
            &["sansproxy", "--connect-timeout", "-1"],
            &["sansproxy", "--max-connections", "0"],
            &["sansproxy", "--high-water", "lots"],
            &["sansproxy", "--upstream-max-conns", "0"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let forward = Args::try_parse_from(["sansproxy", "--upstream-max-conns", "4"]).unwrap();
        assert_eq!(
            forward.listeners().unwrap_err(),
            "--upstream-max-conns is for reverse mode (the backends' limit)"
        );
        let reverse = Args::try_parse_from([
            "sansproxy",
            "--reverse",
            "http://127.0.0.1:9001",
            "--upstream-max-conns",
            "4",
        ])
        .unwrap();
        assert_eq!(
            reverse.listeners().unwrap()[0]
                .gateway
                .as_ref()
                .unwrap()
                .groups[0]
                .limits
                .max_conns,
            Some(4)
        );
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    fn tls(argv: &[&str], vars: &[(&str, &str)]) -> Result<Option<TlsOptions>, String> {
        let mut all = vec!["sansproxy"];
        all.extend_from_slice(argv);
        Args::try_parse_from(all).unwrap().tls_options(env(vars))
    }

    #[test]
    fn tls_is_intercepted_by_default_with_the_ca_in_the_home_directory() {
        let options = tls(&[], &[("HOME", "/home/me")]).unwrap().unwrap();
        assert_eq!(options, TlsOptions::new(CaSource::Dir("/home/me/.sansproxy".into())));
        assert_eq!(options.cache_size, 1000);
    }

    #[test]
    fn the_ca_directory_comes_from_the_flag_or_the_environment() {
        let dir = |argv: &[&str], vars: &[(&str, &str)]| match tls(argv, vars) {
            Ok(Some(TlsOptions { ca: CaSource::Dir(dir), .. })) => Ok(dir),
            other => Err(format!("{other:?}")),
        };
        let all = [("SANSPROXY_CA_DIR", "/ca"), ("XDG_CONFIG_HOME", "/cfg"), ("HOME", "/home/me")];
        assert_eq!(dir(&["--ca-dir", "/flag"], &all).unwrap(), PathBuf::from("/flag"));
        assert_eq!(dir(&[], &all).unwrap(), PathBuf::from("/ca"));
        assert_eq!(dir(&[], &all[1..]).unwrap(), PathBuf::from("/cfg/sansproxy"));
        let unusable = [("SANSPROXY_CA_DIR", ""), ("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(dir(&[], &unusable).unwrap(), PathBuf::from("/h/.sansproxy"));
        assert!(tls(&[], &[]).unwrap_err().contains("--ca-dir"));
        assert_eq!(dir(&["--ca-dir", "/flag"], &[]).unwrap(), PathBuf::from("/flag"));
    }

    #[test]
    fn tls_flags_map_onto_the_options() {
        let options = tls(
            &[
                "--ca-cert", "ca.pem", "--ca-key", "ca.pem", "--upstream-ca", "a.pem", "--upstream-ca", "b.pem",
                "--insecure-upstream", "--ignore-hosts", "^x:443$", "--ignore-hosts", "y", "--cert-cache", "5",
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            TlsOptions {
                ca: CaSource::Files { cert: "ca.pem".into(), key: "ca.pem".into() },
                upstream_roots: vec!["a.pem".into(), "b.pem".into()],
                insecure_upstream: true,
                ignore_hosts: vec!["^x:443$".into(), "y".into()],
                cache_size: 5,
                certs: Vec::new(),
            }
        );
        assert_eq!(tls(&["--no-intercept"], &[]).unwrap(), None);
        // A certificate of its own replaces the CA, whatever the environment says.
        let fixed = tls(&["--reverse", "https://o.test", "--listen-tls", "--cert", "own.pem"], &[("HOME", "/h")]);
        assert_eq!(fixed.unwrap().unwrap().ca, CaSource::Fixed("own.pem".into()));
        // Certificates for some names keep the CA for the others.
        let named = tls(&["--cert", "proxy.test=p.pem", "--cert", "*.corp.test=c.pem"], &[("HOME", "/h")]).unwrap().unwrap();
        assert_eq!(named.ca, CaSource::Dir("/h/.sansproxy".into()));
        assert_eq!(named.certs, [("proxy.test".to_owned(), "p.pem".into()), ("*.corp.test".to_owned(), "c.pem".into())]);
        let twice = tls(&["--cert", "a.pem", "--cert", "b.pem"], &[("HOME", "/h")]);
        assert!(twice.unwrap_err().contains("give it once"));
        let both = tls(&["--cert", "c.pem", "--ca-cert", "c.pem", "--ca-key", "c.pem"], &[("HOME", "/h")]);
        assert!(both.unwrap_err().contains("DOMAIN="));
    }

    #[test]
    fn contradictory_tls_flags_are_refused() {
        for bad in [
            &["sansproxy", "--ca-cert", "c.pem"][..],
            &["sansproxy", "--ca-key", "k.pem"],
            &["sansproxy", "--ca-dir", "d", "--ca-cert", "c.pem", "--ca-key", "k.pem"],
            &["sansproxy", "--no-intercept", "--ca-dir", "d"],
            &["sansproxy", "--no-intercept", "--insecure-upstream"],
            &["sansproxy", "--no-intercept", "--cert-cache", "3"],
            &["sansproxy", "--cert-cache", "-1"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_ca_notice_says_how_to_trust_the_ca() {
        let path = "/h/.sansproxy/sansproxy-ca-cert.pem";
        let notice = ca_notice(&CaInfo { cert_path: path.into(), created: true });
        assert_eq!(
            notice,
            "sansproxy: intercepting TLS with a new CA; clients must trust its certificate \
             /h/.sansproxy/sansproxy-ca-cert.pem\n\
             \x20 curl:    curl --cacert /h/.sansproxy/sansproxy-ca-cert.pem ...\n\
             \x20 git:     GIT_SSL_CAINFO=/h/.sansproxy/sansproxy-ca-cert.pem git ...\n\
             \x20 Python:  REQUESTS_CA_BUNDLE=/h/.sansproxy/sansproxy-ca-cert.pem (requests), \
             SSL_CERT_FILE=/h/.sansproxy/sansproxy-ca-cert.pem (urllib, httpx)\n\
             \x20 Node:    NODE_EXTRA_CA_CERTS=/h/.sansproxy/sansproxy-ca-cert.pem node ...\n\
             \x20 system (Debian, Ubuntu): sudo cp /h/.sansproxy/sansproxy-ca-cert.pem \
             /usr/local/share/ca-certificates/sansproxy.crt && sudo update-ca-certificates\n"
        );
        // On later starts, one line names every way.
        let again = ca_notice(&CaInfo { cert_path: path.into(), created: false });
        assert_eq!(
            again,
            "sansproxy: intercepting TLS; clients must trust the CA certificate /h/.sansproxy/sansproxy-ca-cert.pem\n\
             \x20 (curl --cacert; GIT_SSL_CAINFO for git; REQUESTS_CA_BUNDLE or SSL_CERT_FILE for Python; \
             NODE_EXTRA_CA_CERTS for Node; or the system store: update-ca-certificates)\n"
        );
    }

    #[test]
    fn listen_takes_a_port_or_a_host_and_a_port() {
        assert_eq!(parse_listen_at("8081"), Ok((None, 8081)));
        assert_eq!(parse_listen_at("localhost:8081"), Ok((Some("localhost".into()), 8081)));
        assert_eq!(parse_listen_at("Proxy.Example:0"), Ok((Some("proxy.example".into()), 0)));
        assert_eq!(parse_listen_at("[::1]:8081"), Ok((Some("::1".into()), 8081)));
        assert_eq!(parse_listen_at("0.0.0.0:80"), Ok((Some("0.0.0.0".into()), 80)));
        for bad in ["localhost", "", ":8080", "a b:1", "[x]:1", "-a:1", "a..b:1", "1:65536", "::1"] {
            assert!(parse_listen_at(bad).is_err(), "{bad:?}");
        }
        let at = |argv: &[&str]| {
            let args = Args::try_parse_from(["sansproxy"].iter().chain(argv)).unwrap();
            (args.listen_at(), args.listen_flag())
        };
        // A port alone is on loopback; mitmdump's -p and --listen-host give the parts apart.
        assert_eq!(at(&["--listen", "8081"]), (("127.0.0.1".into(), 8081), "--listen PORT"));
        assert_eq!(at(&["-p", "8082"]), (("127.0.0.1".into(), 8082), "-p PORT"));
        assert_eq!(at(&["--listen-port", "8082"]).0, ("127.0.0.1".into(), 8082));
        assert_eq!(at(&["--listen-host", "0.0.0.0"]).0, ("0.0.0.0".into(), 8080));
        assert_eq!(at(&["--listen-host", "localhost", "-p", "1"]).0, ("localhost".into(), 1));
        // Said twice, the last wins; --listen and the parts exclude each other.
        assert_eq!(at(&["--listen", "1", "--listen", "2"]).0, ("127.0.0.1".into(), 2));
        for both in [&["--listen", "1", "-p", "2"][..], &["--listen", "1", "--listen-host", "::1"]] {
            let e = Args::try_parse_from(["sansproxy"].iter().chain(both)).unwrap_err().to_string();
            assert!(e.contains("cannot be used with"), "{both:?}: {e}");
        }
        assert!(Args::try_parse_from(["sansproxy", "--listen-host", "a b"]).is_err());
        // A mode without an address of its own takes --listen-host's.
        let args = Args::try_parse_from(["sansproxy", "--listen-host", "127.0.0.3", "-p", "9", "--mode", "socks5@10", "--mode", "regular"]);
        let addrs: Vec<String> = args.unwrap().listeners().unwrap().iter().map(|l| l.addrs[0].to_string()).collect();
        assert_eq!(addrs, ["127.0.0.3:10", "127.0.0.3:9"]);
    }

    #[test]
    fn a_name_is_listened_on_at_every_address() {
        let addrs = resolve("localhost", 8081).unwrap();
        assert!(addrs.contains(&"127.0.0.1:8081".parse().unwrap()), "{addrs:?}");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert_eq!(resolve("::1", 1).unwrap(), ["[::1]:1".parse().unwrap()]);
        let e = resolve("nowhere.invalid", 1).unwrap_err();
        assert!(e.starts_with("cannot listen on nowhere.invalid: name resolution failed: "), "{e}");
    }

    #[test]
    fn a_port_in_use_says_what_to_do() {
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert_eq!(
            listen_error("127.0.0.1:8080".parse().unwrap(), &in_use, "--listen PORT"),
            "cannot listen on 127.0.0.1:8080: address already in use (is another proxy running? pick another port with --listen PORT)"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = listen_error("0.0.0.0:80".parse().unwrap(), &denied, "-p PORT");
        assert!(e.contains("CAP_NET_BIND_SERVICE; pick another with -p PORT"), "{e}");
    }

    #[test]
    fn a_config_file_listens_as_the_flags_do() {
        let path = std::env::temp_dir().join(format!("sansproxy-listen-{}.toml", std::process::id()));
        std::fs::write(&path, "listen = 8081\n[[route]]\nlisten = \"localhost:8443\"\nupstreams = [\"http://127.0.0.1:9\"]\n").unwrap();
        let cli = |argv: &[&str]| ["sansproxy"].iter().chain(argv).map(OsString::from).collect::<Vec<_>>();
        let args = Args::with_file(&cli(&[]), &path).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".into(), 8081));
        let route = &args.listeners().unwrap()[0];
        assert!(route.addrs.contains(&"127.0.0.1:8443".parse().unwrap()), "{route:?}");
        assert_eq!(route.port_from, "the route's `listen`");
        // The command line's -p replaces the file's --listen rather than clashing with it.
        let args = Args::with_file(&cli(&["-p", "9090"]), &path).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".into(), 9090));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_command_lines_listening_address_replaces_the_files() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let file = os(&["--max-fails", "3", "--listen", "127.0.0.1:1", "--listen-host", "::1", "--no-http2"]);
        assert_eq!(without_listen_flags(&file), os(&["--max-fails", "3", "--no-http2"]));
        for flag in ["--listen", "--listen=1", "-p", "-p8080", "--listen-port", "--listen-host=::1"] {
            assert!(is_listen_flag(&OsString::from(flag)), "{flag}");
        }
        for other in ["--listen-tls", "-q", "-pq", "--metrics"] {
            assert!(!is_listen_flag(&OsString::from(other)), "{other}");
        }
    }

    fn flow() -> HttpFlow {
        let started = Instant::now();
        HttpFlow {
            id: FlowId(1),
            client: ClientInfo::new("127.0.0.1:51234".parse().unwrap(), "127.0.0.1:8080".parse().unwrap()),
            request: Request {
                method: "GET".into(),
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/x".into(),
                version: Version::Http11,
                headers: Default::default(),
                body: None,
                trailers: None,
            },
            response: None,
            error: None,
            buffer_request: false,
            buffer_response: false,
            request_body_bytes: 0,
            response_body_bytes: 1024,
            started,
            ended: Some(started + Duration::from_millis(3)),
        }
    }

    #[test]
    fn lines_look_like_mitmdump() {
        let mut f = flow();
        assert_eq!(flow_line(&f, Instant::now()), None);
        f.response = Some(Response::text(200, "x"));
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> 200 1024b 3ms (client HTTP/1.1, server HTTP/1.1)\n"
        );
        f.request.version = Version::Http2;
        assert!(flow_line(&f, Instant::now()).unwrap().ends_with(" 3ms (client HTTP/2, server HTTP/1.1)\n"));
        f.error = Some(FlowError { message: "connection refused".into(), status: Some(502) });
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> error: connection refused\n"
        );
    }

    #[test]
    fn a_connect_line_claims_no_server_exchange() {
        let mut f = flow();
        f.request.method = "CONNECT".into();
        f.request.path = String::new();
        f.response_body_bytes = 0;
        f.response = Some(Response { status: 200, reason: "Connection established".into(), ..Response::text(200, "") });
        assert_eq!(flow_line(&f, Instant::now()).unwrap(), "127.0.0.1:51234 CONNECT 127.0.0.1:9000 -> 200 tunnel 3ms (client HTTP/1.1)\n");
        f.response = Some(Response::text(407, "who are you?"));
        f.response_body_bytes = 12;
        assert_eq!(flow_line(&f, Instant::now()).unwrap(), "127.0.0.1:51234 CONNECT 127.0.0.1:9000 -> 407 12b 3ms (client HTTP/1.1)\n");
        f.request.version = Version::Socks5;
        f.response = Some(Response::text(200, ""));
        assert!(flow_line(&f, Instant::now()).unwrap().ends_with(" -> 200 tunnel 3ms (client SOCKS5)\n"));
    }

    #[test]
    fn websocket_lines() {
        let mut f = flow();
        f.request.path = "/chat".into();
        f.response = Some(Response { status: 101, reason: "Switching Protocols".into(), ..Response::text(101, "") });
        assert_eq!(
            websocket_start_line(&f),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/chat -> 101 websocket #1 (client HTTP/1.1, server HTTP/1.1)\n"
        );
        let message = WebSocketMessage {
            flow: FlowId(1),
            from: Peer::Server,
            kind: MessageKind::Text,
            payload: "say \"hi\"\n".repeat(10).into(),
            offset: 0,
            last: true,
            injected: false,
            time: Instant::now(),
        };
        assert_eq!(
            message_line(&message),
            "  #1 server -> client text 90b \"say \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \\\"hi\\\"\\nsay \"...\n"
        );
        let unicode = WebSocketMessage { payload: "héllo wörld € ✓".into(), from: Peer::Client, ..message.clone() };
        assert_eq!(message_line(&unicode), "  #1 client -> server text 21b \"héllo wörld € ✓\"\n");
        let end = WebSocketEnd {
            flow: FlowId(1),
            upgrade: f,
            code: Some(4001),
            reason: "bye".into(),
            closed_by: Some(Peer::Client),
            error: None,
            messages: [3, 2],
            bytes: [30, 20],
            ended: Instant::now(),
        };
        assert_eq!(
            websocket_end_line(&end),
            "127.0.0.1:51234 websocket #1 http://127.0.0.1:9000/chat closed by client: 4001 \"bye\", messages 3 -> 2 <-, bytes 30 -> 20 <-\n"
        );
    }
}
