//! The command line: the flags (clap's [`Args`]) and the parsers of their values. What they
//! make is in the modules below: the listeners ([`listeners`]), the proxy's configuration
//! ([`config`]), and the flags read with the --config file's under them ([`load`]).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use proxy_core::{Config, Http2Limits, Scheme, ServerAddr, UnderscoreHeaders};
use proxy_core::websocket::{Oversize, WebSocketLimits};
use proxy_core::upstreams::PoolLimits;
use proxy_core::gateway::{Balance, GatewaySpec, HealthSpec, LimitSpec};
use proxy_io::tls::DEFAULT_CACHE_SIZE;

mod config;
mod listeners;
mod load;

pub(crate) use listeners::{parse_listen_at, ListenAt, Listener};
use listeners::{parse_listen_host, parse_mode_spec, parse_origin, ModeSpec};

/// An intercepting HTTP proxy. Prints one line per flow to stdout:
/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms (client VERSION, server VERSION)`, with the
/// HTTP version each side spoke; a `CONNECT` that opened a tunnel:
/// `CLIENT CONNECT HOST:PORT -> 200 tunnel DURATIONms (client VERSION)`; a flow that failed:
/// `CLIENT METHOD URL -> error: WHY`.
#[derive(Debug, Parser)]
#[command(name = "sansproxy", version, args_override_self = true)]
pub(crate) struct Args {
    /// Read flags, and the gateway's routes and groups of backends, from this TOML file: each
    /// flag is a key named like it (`max-fails = 5`, `no-http2 = true`, `cert = ["a.pem"]`),
    /// routes are `[[route]]` tables and groups `[[upstream]]` (see the README). Flags given
    /// here win (where to listen as a whole: --listen, --listen-host or -p here replace the
    /// file's `listen`, `listen-host` and `listen-port`). SIGHUP reloads the routes and groups.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Serve Prometheus metrics (OpenMetrics text) at `http://HOST:PORT/metrics`: flows by
    /// listener, backend and status class, their duration, bytes, TLS handshakes, each
    /// backend's state and load, idle upstream connections.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics: Option<SocketAddr>,

    /// Reload the --config file's routes and groups whenever it changes, as on SIGHUP.
    #[arg(long, requires = "config")]
    pub(crate) watch_config: bool,

    /// The --config file's routes and groups, once read: one gateway per reverse listener.
    #[arg(skip)]
    file_gateways: Vec<(Option<ListenAt>, GatewaySpec)>,

    /// The flags the --config file gave, to tell on reload whether they changed.
    #[arg(skip)]
    pub(crate) file_flags: Vec<OsString>,

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
    pub(crate) quiet: bool,

    /// Also print a line per WebSocket message: direction, type, size, first bytes. Messages
    /// are then held whole up to --max-ws-message (see --ws-oversize).
    #[arg(short, long)]
    pub(crate) verbose: bool,

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
    pub(crate) no_server_reuse: bool,

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
    pub(crate) upstream_idle_timeout: Duration,

    /// At most this many idle upstream connections are kept per server.
    #[arg(long, value_name = "N", default_value_t = PoolLimits::default().max_idle_per_key)]
    pub(crate) upstream_max_idle: usize,

    /// How long resolving and connecting to an upstream may take.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "10")]
    pub(crate) connect_timeout: Duration,

    /// On SIGINT or SIGTERM (Ctrl-C), how long connections with a request in flight may go on
    /// before they are dropped; idle keep-alive connections are closed at once, and a second
    /// signal drops everything at once.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "5")]
    pub(crate) shutdown_timeout: Duration,

    /// Serve at most N client connections at once. Clients beyond N are not refused: they
    /// wait, connected but unread, in the listen backlog (1024, or the system's smaller
    /// somaxconn) until one of the N ends.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: Option<u32>,

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
    pub(crate) runtime: RuntimeKind,

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
    pub(crate) proxyauth: Option<String>,

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

/// Seconds, fractions allowed (`0.5`).
fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{e}"))
}

impl Args {
    /// `--threads`, or one per CPU.
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), |n| n as usize)
    }
}

/// How the threads serving connections are set up: `--runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeKind {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
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
}
