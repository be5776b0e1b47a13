//! [`Builder`]: the proxy's settings and their defaults, the listening sockets bound (ahead of
//! the build if asked), and the build: TLS interception set up, the core's configuration
//! completed, the other serving threads started.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use proxy_core::upstreams::PoolLimits;
use proxy_core::Config;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::spread::Spread;
use super::{Proxy, Shared, ShutdownHandle};
use crate::driver::Options;
use crate::handler::{Handler, NoopHandler};
use crate::inject::Injector;
use crate::pool::SharedPool;
use crate::tls::{CaSource, TlsOptions, TlsSetupError};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Connections the kernel completes and queues before the proxy accepts them (capped by the
/// system's `somaxconn`). This is where clients beyond [`Builder::max_connections`] wait;
/// the usual 128 would leave a burst beyond it retrying its SYNs for seconds.
const LISTEN_BACKLOG: i32 = 1024;

/// Configures and binds a [`Proxy`]. Made by [`Proxy::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder<H = NoopHandler> {
    listen: SocketAddr,
    config: Config,
    handler: H,
    connect_timeout: Duration,
    shutdown_timeout: Duration,
    max_connections: Option<usize>,
    injector: Injector,
    upstream_pool: Option<PoolLimits>,
    threads: usize,
    /// How TLS is intercepted unless `config` says; `None`: not at all.
    tls: Option<TlsOptions>,
    /// Set by [`shutdown_handle`](Self::shutdown_handle); a handle of its own otherwise.
    shutdown: Option<ShutdownHandle>,
    /// The listening sockets, once [`bind`](Self::bind) made them.
    bound: Option<Bound>,
}

/// Listening sockets bound ahead of [`Builder::build`]: the first thread's, and the others'.
#[derive(Debug)]
struct Bound {
    first: std::net::TcpListener,
    others: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
}

/// Why a [`Proxy`] could not be built. Converts into [`io::Error`], so `?` works in a function
/// returning `io::Result`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The listening socket could not be made or bound (the port is in use, say).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// TLS interception could not be set up: the CA could not be read or made, a root to
    /// trust upstream is unusable, a pattern does not compile.
    #[error("cannot set up TLS interception: {0}")]
    Tls(#[from] TlsSetupError),
    /// A thread serving a share of the clients ([`Builder::threads`]) could not start.
    #[error("cannot start a serving thread: {0}")]
    Thread(io::Error),
}

impl From<BuildError> for io::Error {
    fn from(e: BuildError) -> Self {
        let kind = match &e {
            BuildError::Listen { source, .. } | BuildError::Thread(source) => source.kind(),
            BuildError::Tls(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

impl Builder<NoopHandler> {
    pub(super) fn new() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            config: Config::default(),
            handler: NoopHandler,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_connections: None,
            injector: Injector::default(),
            upstream_pool: Some(PoolLimits::default()),
            threads: 1,
            tls: Some(TlsOptions::default()),
            shutdown: None,
            bound: None,
        }
    }
}

impl<H: Handler> Builder<H> {
    /// The address to listen on; `127.0.0.1:8080` by default. Port 0 picks a free port (see
    /// [`Proxy::local_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The core's configuration. Its `hooks` field is overwritten by
    /// [`Handler::hooks`] when the proxy is built. If its `tls` is set, that is how TLS is
    /// intercepted, and the TLS methods of this builder ([`tls`](Self::tls),
    /// [`ca_dir`](Self::ca_dir), ...) are not used.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Who answers hooks; [`NoopHandler`] (no hooks at all) by default.
    pub fn handler<H2: Handler>(self, handler: H2) -> Builder<H2> {
        Builder {
            listen: self.listen,
            config: self.config,
            handler,
            connect_timeout: self.connect_timeout,
            shutdown_timeout: self.shutdown_timeout,
            max_connections: self.max_connections,
            injector: self.injector,
            upstream_pool: self.upstream_pool,
            threads: self.threads,
            tls: self.tls,
            shutdown: self.shutdown,
            bound: self.bound,
        }
    }

    /// Intercept TLS as `options` say. Interception is on by default, with
    /// [`TlsOptions::default`]: the CA kept in [`default_ca_dir`](crate::tls::default_ca_dir)
    /// (the directory the command line tool uses, made on first use), upstream servers
    /// verified against the Mozilla roots, every host intercepted. [`Proxy::ca`] says where
    /// the certificate clients must trust is.
    pub fn tls(mut self, options: TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// Keep the CA in `dir` (made there on first use) instead of the default directory;
    /// turns interception on if [`no_intercept`](Self::no_intercept) turned it off.
    pub fn ca_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.with_tls(|tls| tls.ca = CaSource::Dir(dir.into()))
    }

    /// Sign with a CA of the user's own: its certificate and PKCS#8 key, PEM (both may name one
    /// file holding both); turns interception on if it was off.
    pub fn ca_files(self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.with_tls(|tls| tls.ca = CaSource::Files { cert: cert.into(), key: key.into() })
    }

    /// Also trust the certificates in this PEM file when verifying upstream servers (an origin
    /// signed by a private CA, say); repeatable. The command line's `--upstream-ca`.
    pub fn upstream_ca(self, pem: impl Into<PathBuf>) -> Self {
        self.with_tls(|tls| tls.upstream_roots.push(pem.into()))
    }

    /// Accept any upstream certificate: for test servers only, since a man in the middle of
    /// the proxy's own connection goes unnoticed. The command line's `--insecure-upstream`.
    pub fn insecure_upstream(self) -> Self {
        self.with_tls(|tls| tls.insecure_upstream = true)
    }

    /// Pass TLS to hosts whose `host:port` matches this regular expression through untouched
    /// (certificate pinning clients, say); repeatable. The command line's `--ignore-hosts`.
    pub fn ignore_hosts(self, pattern: impl Into<String>) -> Self {
        self.with_tls(|tls| tls.ignore_hosts.push(pattern.into()))
    }

    /// Do not intercept TLS: a `CONNECT` tunnel relays what the client sends as it is, and
    /// hooks see the `CONNECT` but nothing inside it. No CA is read or made.
    pub fn no_intercept(mut self) -> Self {
        self.tls = None;
        self
    }

    fn with_tls(mut self, change: impl FnOnce(&mut TlsOptions)) -> Self {
        change(self.tls.get_or_insert_with(TlsOptions::default));
        self
    }

    /// Share idle upstream connections across client connections, within `limits` (on by
    /// default, with [`PoolLimits::default`]); `None`: each client connection's upstream
    /// connections end with it. See [`proxy_core::upstreams`].
    pub fn upstream_pool(mut self, limits: Option<PoolLimits>) -> Self {
        self.upstream_pool = limits;
        self
    }

    /// Route WebSocket messages from `injector` (and its clones) into this proxy's flows, so a
    /// handler made before the proxy can hold one. Without it the proxy makes its own
    /// ([`Proxy::injector`]).
    pub fn injector(mut self, injector: Injector) -> Self {
        self.injector = injector;
        self
    }

    /// How long resolving and connecting to an upstream may take before the core is told
    /// [`OpenError::Timeout`](proxy_core::OpenError::Timeout); 10 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long in-flight connections may go on after a graceful shutdown starts before they
    /// are dropped; 5 s by default.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Stop this proxy with `handle`, which may stop others too: a program with several
    /// listeners makes one [`ShutdownHandle::new`], gives it to each proxy's builder, and
    /// passes it to [`shutdown_on_signals`] once, so that one Ctrl-C stops them all and the
    /// count of connections waited for is theirs together. Without it, each proxy has a
    /// handle of its own ([`Proxy::shutdown_handle`]).
    ///
    /// [`shutdown_on_signals`]: crate::shutdown_on_signals
    pub fn shutdown_handle(mut self, handle: ShutdownHandle) -> Self {
        self.shutdown = Some(handle);
        self
    }

    /// Serve at most `n` client connections at once (at least 1); beyond that, stop
    /// accepting until one ends, leaving new clients in the listen backlog (1024, or the
    /// system's smaller `somaxconn`), connected but unread. Unlimited by default.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Serve from `n` threads (at least 1, the default), thread per core: [`build`](Self::build)
    /// starts `n - 1` threads, each with a runtime of its own (tokio's current-thread
    /// scheduler) and a listening socket of its own on the same address (`SO_REUSEPORT`: the
    /// kernel spreads new connections over the sockets), and [`Proxy::run`] serves one share
    /// on the runtime it is called on while they serve theirs. A connection stays on the
    /// thread that accepted it; only an idle upstream connection moves, parked by one thread
    /// and taken by another. With [`max_connections`](Self::max_connections)
    /// the threads accept from one socket instead, so that a thread holding a free place finds
    /// whoever waits for one. Suited to a current-thread runtime for the caller's share; with
    /// a multi-thread runtime, that share's connections are spread over its workers as usual.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Bind the listening sockets now (one per thread, see [`threads`](Self::threads)) rather
    /// than in [`build`](Self::build), which then uses them: a program can learn that the
    /// port is taken before it does anything else (the command line tool, before it makes or
    /// reads its CA). The sockets are made as [`listen`](Self::listen),
    /// [`threads`](Self::threads) and [`max_connections`](Self::max_connections) say at this
    /// point: set those first. Needs no runtime.
    pub fn bind(mut self) -> io::Result<Self> {
        if self.bound.is_none() {
            self.bound = Some(self.bind_sockets()?);
        }
        Ok(self)
    }

    /// The address [`bind`](Self::bind) bound, with the real port when 0 was asked for;
    /// `None` before.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.as_ref().map(|b| b.local_addr)
    }

    fn bind_sockets(&self) -> io::Result<Bound> {
        // With a connection limit, the threads accept from one socket: a thread holding a
        // free place must find the clients waiting for one, wherever the kernel would have
        // queued them. Without, each has its own, on the port the first got.
        let (several, limited) = (self.threads > 1, self.max_connections.is_some());
        if several && !limited && self.listen.port() != 0 {
            // SO_REUSEPORT would let the threads' sockets share the port with another
            // process's that set it too (a second proxy started by mistake: each would get a
            // share of the clients). A socket without it cannot be bound where anything
            // listens, which tells.
            probe(self.listen)?;
        }
        let first = bind_std(self.listen, several && !limited)?;
        let local_addr = first.local_addr()?;
        let others = (1..self.threads)
            .map(|_| if limited { first.try_clone() } else { bind_std(local_addr, true) })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Bound { first, others, local_addr })
    }

    /// Bind the listening socket (one per thread, see [`threads`](Self::threads)), unless
    /// [`bind`](Self::bind) did, then set up TLS interception (loading or making the CA, so
    /// that a port in use leaves no new CA behind), and make the proxy.
    pub async fn build(mut self) -> Result<Proxy<H>, BuildError> {
        let addr = self.listen;
        let listen_error = |source| BuildError::Listen { addr, source };
        let Bound { first, others, local_addr } = match self.bound.take() {
            Some(bound) => bound,
            None => self.bind_sockets().map_err(listen_error)?,
        };
        let listener = TcpListener::from_std(first).map_err(listen_error)?;
        let mut config = self.config;
        let mut ca = None;
        if config.tls.is_none() {
            if let Some(options) = self.tls {
                let (mut tls, info) = options.build()?;
                // Failure messages name the fix in this builder's words.
                tls.remedies = proxy_core::tls::Remedies {
                    upstream_ca: "Builder::upstream_ca(PEM)".into(),
                    insecure_upstream: "Builder::insecure_upstream()".into(),
                    ignore_hosts: "Builder::ignore_hosts(REGEX)".into(),
                    ..tls.remedies
                };
                config.tls = Some(tls);
                ca = info;
            }
        }
        config.hooks = self.handler.hooks();
        if !cfg!(target_os = "linux") {
            // Forwarding needs splice(2).
            config.forward_min = None;
        }
        // The core parks and reuses upstream connections only if this driver keeps a pool.
        config.share_upstreams = self.upstream_pool.is_some();
        let shutdown = self.shutdown.unwrap_or_default();
        let timeout_ms = u64::try_from(self.shutdown_timeout.as_millis()).unwrap_or(u64::MAX);
        shutdown.inner.timeout_ms.fetch_max(timeout_ms, Ordering::Relaxed);
        let state = shutdown.inner.tx.subscribe();
        let config = Arc::new(config);
        let pool = self.upstream_pool.clone().map(SharedPool::new);
        let shared = Arc::new(Shared {
            config: config.clone(),
            handler: self.handler,
            opts: Options { connect_timeout: self.connect_timeout, linger: DEFAULT_LINGER, pool, config },
            injector: self.injector,
        });
        let (spread, mut inboxes) = Spread::new(self.threads);
        let mut proxy = Proxy {
            listener,
            local_addr,
            spread: spread.map(|s| (0, s, inboxes.remove(0))),
            workers: Vec::new(),
            shared,
            shutdown_timeout: self.shutdown_timeout,
            limit: self.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            shutdown,
            state,
            ca,
        };
        for ((i, listener), inbox) in others.into_iter().enumerate().zip(inboxes) {
            let worker = proxy.start_worker(i + 1, listener, inbox).map_err(BuildError::Thread)?;
            proxy.workers.push(worker);
        }
        Ok(proxy)
    }
}

/// A listening socket on `addr` with [`LISTEN_BACKLOG`], one of several on the same address
/// if `shared` (`SO_REUSEPORT`); not yet registered with a runtime.
fn bind_std(addr: SocketAddr, shared: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std and tokio do: a restarted proxy can bind while old connections linger.
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Fail as binding `addr` would if another socket listens there, whatever its options.
fn probe(addr: SocketAddr) -> io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As bind_std: connections of an earlier run that linger do not count.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}
