//! [`Proxy`]: the listener, the accept loop and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use proxy_core::upstreams::PoolLimits;
use proxy_core::{ClientInfo, Config, Connection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::driver::{self, Core, Nudge, Options};
use crate::handler::{Handler, NoopHandler};
use crate::inject::Injector;
use crate::pool::SharedPool;
use crate::tls::{CaInfo, CaSource, TlsOptions, TlsSetupError};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
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
    fn new() -> Self {
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

/// A thread serving a share of the clients ([`Builder::threads`]), ready before the proxy is
/// built, serving once [`Proxy::run`] says go.
struct Worker {
    go: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::sync::oneshot::Receiver<()>,
}

/// A bound proxy, ready to [`run`](Self::run).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let proxy = proxy_io::Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).build().await?;
/// println!("listening on {}", proxy.local_addr());
/// proxy_io::shutdown_on_signals(proxy.shutdown_handle())?;
/// proxy.run().await;
/// # Ok(())
/// # }
/// ```
pub struct Proxy<H = NoopHandler> {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The other threads serving clients, if any.
    workers: Vec<Worker>,
    /// With other threads: this one's place among them, how loaded each is, and where
    /// connections handed to this one arrive.
    spread: Option<(usize, Arc<Spread>, mpsc::UnboundedReceiver<Handed>)>,
    shared: Arc<Shared<H>>,
    shutdown_timeout: Duration,
    limit: Option<Arc<Semaphore>>,
    shutdown: ShutdownHandle,
    state: watch::Receiver<State>,
    /// Where the CA certificate clients must trust is, when this proxy mints certificates.
    ca: Option<CaInfo>,
}

/// What every connection task shares.
struct Shared<H> {
    config: Arc<Config>,
    handler: H,
    opts: Options,
    injector: Injector,
}

impl Proxy<NoopHandler> {
    /// A [`Builder`] with the defaults: listen on `127.0.0.1:8080`, intercept TLS with the CA
    /// in the default directory, no hooks; each setting's default is told by its method.
    pub fn builder() -> Builder<NoopHandler> {
        Builder::new()
    }
}

impl<H: Handler> Proxy<H> {
    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CA certificate clients must trust for intercepted HTTPS (its PEM file, and whether
    /// it was made just now), or `None` when TLS is not intercepted or certificates are not
    /// minted (a fixed certificate, or a `tls` of the caller's own in the
    /// [`Config`](Builder::config)).
    pub fn ca(&self) -> Option<&CaInfo> {
        self.ca.as_ref()
    }

    /// A handle that sends WebSocket messages into this proxy's live flows.
    pub fn injector(&self) -> Injector {
        self.shared.injector.clone()
    }

    /// A look at the upstream connections this proxy keeps for any client, if it keeps them.
    pub fn pool_monitor(&self) -> Option<crate::PoolMonitor> {
        self.shared.opts.pool.clone().map(crate::PoolMonitor)
    }

    /// A handle that stops [`run`](Self::run) from anywhere, also before it starts (the one
    /// given to [`Builder::shutdown_handle`], if any).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Accept and serve clients until shut down, then wait for in-flight connections for at
    /// most the shutdown timeout and drop the rest. With [`Builder::threads`], the other
    /// threads do the same, and this returns when all have.
    pub async fn run(mut self) {
        let mut workers = std::mem::take(&mut self.workers);
        if !workers.is_empty() {
            // This thread serves share 0 (on a current-thread runtime, as the CLI runs it).
            crate::carrier::set_home(0);
        }
        for worker in &mut workers {
            if let Some(go) = worker.go.take() {
                let _ = go.send(());
            }
        }
        let shared = Arc::clone(&self.shared);
        self.run_with(move |client| Connection::new(Arc::clone(&shared.config), client)).await;
        for worker in workers {
            let _ = worker.done.await;
        }
    }

    /// A thread with a current-thread runtime, `listener` registered with it, that serves
    /// `listener`'s clients once told to go.
    fn start_worker(&self, i: usize, listener: std::net::TcpListener, inbox: mpsc::UnboundedReceiver<Handed>) -> io::Result<Worker> {
        let (go, start) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel();
        let (ready, is_ready) = std::sync::mpsc::channel::<io::Result<()>>();
        let (timeout, limit, shutdown, state, local_addr) = (self.shutdown_timeout, self.limit.clone(), self.shutdown.clone(), self.state.clone(), self.local_addr);
        let share = Arc::clone(&self.shared);
        let spread = self.spread.as_ref().map(|(_, spread, _)| (i, Arc::clone(spread), inbox));
        std::thread::Builder::new().name(format!("sansproxy-{i}")).spawn(move || {
            crate::carrier::set_home(i);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(ready.send(Err(e))),
            };
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let _ = ready.send(Ok(()));
                // Dropped unrun, the proxy drops the sender: nothing to serve.
                if start.await.is_err() {
                    return;
                }
                let proxy = Proxy { listener, local_addr, workers: Vec::new(), spread, shared: share, shutdown_timeout: timeout, limit, shutdown, state, ca: None };
                let shared = Arc::clone(&proxy.shared);
                proxy.serve(false, move |client| Connection::new(Arc::clone(&shared.config), client)).await;
            });
            // Name lookups still blocked in the resolver are not waited for.
            runtime.shutdown_background();
            let _ = finished.send(());
        })?;
        is_ready.recv().unwrap_or_else(|_| Err(io::Error::other("a serving thread ended before it was ready")))?;
        Ok(Worker { go: Some(go), done })
    }

    /// Whether clients' original destinations are read (transparent mode).
    fn transparent(&self) -> bool {
        self.shared.config.mode == proxy_core::Mode::Transparent
    }

    /// [`run`](Self::run) with the core made by `make_core`; tests put fakes here.
    pub(crate) async fn run_with<C, K>(self, make_core: K)
    where
        C: Core + 'static,
        K: Fn(ClientInfo) -> C,
    {
        self.serve(true, make_core).await
    }

    /// Accept and serve this listener's clients; the gateway's health checks beside it if
    /// `checks` (one thread runs them for all).
    async fn serve<C, K>(self, checks: bool, make_core: K)
    where
        C: Core + 'static,
        K: Fn(ClientInfo) -> C,
    {
        let transparent = self.transparent();
        let Self { listener, shared, shutdown_timeout, limit, mut state, mut spread, shutdown, .. } = self;
        // A gateway's active health checks run beside the listener, and stop with it.
        let checks = shared.config.gateway.clone().filter(|_| checks).map(|gateway| {
            let tls = shared.config.tls.as_ref().map(|t| Arc::clone(&t.client));
            AbortOnDrop(tokio::spawn(crate::health::run(gateway, tls)))
        });
        let mut tasks = JoinSet::new();
        // How to reach each connection when the shutdown begins (those ended are let go of
        // from time to time).
        let mut nudges: Vec<Weak<Nudge>> = Vec::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        loop {
            // Under a connection limit, a client is accepted only with a place for it; one
            // handed over by another thread brings its own.
            let wants_place = limit.is_some() && permit.is_none();
            let place = async {
                match &limit {
                    Some(limit) => Arc::clone(limit).acquire_owned().await.ok(),
                    None => std::future::pending().await,
                }
            };
            let handed = async {
                match &mut spread {
                    Some((_, _, inbox)) => inbox.recv().await,
                    None => std::future::pending().await,
                }
            };
            let (stream, peer, permit, load) = tokio::select! {
                biased;
                _ = stopping(&mut state) => break,
                Some(done) = tasks.join_next() => { report(done); continue }
                // The semaphore is never closed.
                p = place, if wants_place => { permit = p; continue }
                Some(Handed { stream, peer, permit, load }) = handed => match TcpStream::from_std(stream) {
                    Ok(stream) => (stream, peer, permit, Some(load)),
                    Err(e) => {
                        tracing::debug!(client = %peer, error = %e, "a connection handed over could not be taken");
                        continue;
                    }
                },
                accepted = listener.accept(), if !wants_place => match accepted {
                    Ok((stream, peer)) => {
                        // Another thread with fewer connections takes it, if there is one.
                        let permit = permit.take();
                        match &spread {
                            None => (stream, peer, permit, None),
                            Some((me, spread, _)) => match spread.hand_over(*me, stream, peer, permit) {
                                Some((stream, permit)) => (stream, peer, permit, None),
                                None => continue,
                            },
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            if let Some(core) = accept(&stream, peer, transparent, &make_core) {
                let shared = Arc::clone(&shared);
                let load = load.or_else(|| spread.as_ref().map(|(me, spread, _)| Load::count(spread, *me)));
                let live = Live::count(&shutdown);
                let nudge = Arc::new(Nudge::default());
                if nudges.len() > 2 * tasks.len() + 16 {
                    nudges.retain(|n| n.strong_count() > 0);
                }
                nudges.push(Arc::downgrade(&nudge));
                tasks.spawn(async move {
                    driver::drive(core, stream, peer, &shared.handler, &shared.opts, &shared.injector, nudge).await;
                    drop((permit, load, live));
                });
            }
        }
        drop(listener);
        if *state.borrow() == State::Graceful && !tasks.is_empty() {
            tracing::debug!(connections = tasks.len(), "shutting down; waiting for connections");
            // Idle keep-alive connections close now; the others after what is in progress.
            for nudge in nudges.iter().filter_map(Weak::upgrade) {
                nudge.drain();
            }
            let drained = async {
                while let Some(done) = tasks.join_next().await {
                    report(done);
                }
            };
            tokio::select! {
                _ = drained => {}
                _ = tokio::time::sleep(shutdown_timeout) => {}
                _ = state.wait_for(|s| *s == State::Now) => {}
            }
        }
        if !tasks.is_empty() {
            tracing::debug!(connections = tasks.len(), "dropping connections");
        }
        tasks.shutdown().await;
        drop(checks);
    }
}

/// How many connections each thread serves, and the way to hand one a connection: a thread
/// that accepts a client while another serves fewer gives it to that one, as HAProxy's
/// threads do, so that the kernel's spreading of clients over the threads' sockets (a hash,
/// not a count) does not leave one thread with the heavy share.
struct Spread {
    load: Vec<std::sync::atomic::AtomicUsize>,
    inbox: Vec<mpsc::UnboundedSender<Handed>>,
}

/// A client connection on its way to another thread (out of any reactor meanwhile).
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    /// Counted for the thread it goes to from the moment it was handed over.
    load: Load,
}

impl Spread {
    /// For `n` threads, with each one's inbox; nothing when there is only one.
    fn new(n: usize) -> (Option<Arc<Self>>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        if n < 2 {
            return (None, Vec::new());
        }
        let (inbox, receivers) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let load = (0..n).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect();
        (Some(Arc::new(Self { load, inbox })), receivers)
    }

    /// Give `stream`, accepted by thread `me`, to the thread serving fewest connections if
    /// that one serves at least two fewer than `me`; otherwise (or if it cannot be moved)
    /// it is `me`'s to serve, and comes back.
    fn hand_over(self: &Arc<Self>, me: usize, stream: TcpStream, peer: SocketAddr, permit: Option<OwnedSemaphorePermit>) -> Option<(TcpStream, Option<OwnedSemaphorePermit>)> {
        use std::sync::atomic::Ordering::Relaxed;
        let mine = self.load[me].load(Relaxed);
        let (least, fewest) = self.load.iter().map(|l| l.load(Relaxed)).enumerate().min_by_key(|&(_, l)| l)?;
        if least == me || fewest + 2 > mine {
            return Some((stream, permit));
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "an accepted connection could not be handed over");
                return None;
            }
        };
        // Counted for its thread at once, so that the next accepts here see it.
        let handed = Handed { stream, peer, permit, load: Load::count(self, least) };
        // A thread that has stopped drops what it was handed, as it would its own.
        drop(self.inbox[least].send(handed));
        None
    }
}

/// One connection counted as thread `me`'s while it lives.
struct Load(Arc<Spread>, usize);

impl Load {
    fn count(spread: &Arc<Spread>, me: usize) -> Self {
        spread.load[me].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(Arc::clone(spread), me)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.load[self.1].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

fn accept<C>(stream: &TcpStream, peer: SocketAddr, transparent: bool, make_core: impl Fn(ClientInfo) -> C) -> Option<C> {
    match stream.local_addr() {
        Ok(local) => {
            let mut client = ClientInfo::new(peer, local);
            if transparent {
                client.original_dst = crate::original_dst::original_dst(stream, local);
            }
            Some(make_core(client))
        }
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "accepted socket is already gone");
            None
        }
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "connection task panicked");
        }
    }
}

async fn stopping(state: &mut watch::Receiver<State>) {
    // The sender lives in the proxy's own handle, so it outlives this receiver.
    let _ = state.wait_for(|s| *s != State::Running).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Graceful,
    Now,
}

/// One client connection counted in its [`ShutdownHandle`] while it lives.
struct Live(Arc<Stopping>);

impl Live {
    fn count(handle: &ShutdownHandle) -> Self {
        handle.inner.live.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(&handle.inner))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stops a running [`Proxy`], or several (see [`Builder::shutdown_handle`]). Cheap to clone.
///
/// A graceful [`shutdown`](Self::shutdown) stops accepting and tells every connection to keep
/// nothing alive: an idle keep-alive client connection is closed at once, one with a request
/// in flight after its response (HTTP/1 says `Connection: close` on it, HTTP/2 sends a
/// GOAWAY), and what is still running when the shutdown timeout ends is dropped.
/// [`shutdown_now`](Self::shutdown_now) drops everything at once, also in the middle of a
/// graceful shutdown.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    inner: Arc<Stopping>,
}

/// What the clones of a [`ShutdownHandle`] share.
#[derive(Debug)]
struct Stopping {
    tx: watch::Sender<State>,
    /// Client connections being served by the proxies the handle stops.
    live: AtomicUsize,
    /// The longest shutdown timeout of those proxies, in milliseconds.
    timeout_ms: AtomicU64,
}

impl Default for Stopping {
    fn default() -> Self {
        Self { tx: watch::Sender::new(State::Running), live: AtomicUsize::new(0), timeout_ms: AtomicU64::new(0) }
    }
}

impl ShutdownHandle {
    /// A handle for [`Builder::shutdown_handle`], stopping no proxy until one is built with it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Client connections the proxies this handle stops are serving now.
    pub fn connections(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// How long a graceful shutdown may wait for connections: the longest
    /// [`Builder::shutdown_timeout`] of the proxies this handle stops.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.timeout_ms.load(Ordering::Relaxed))
    }

    /// Stop accepting, close idle keep-alive connections, and give the others the shutdown
    /// timeout to finish what they are doing.
    pub fn shutdown(&self) {
        self.inner.tx.send_if_modified(|s| {
            let start = *s == State::Running;
            if start {
                *s = State::Graceful;
            }
            start
        });
    }

    /// Stop accepting and drop every connection now.
    pub fn shutdown_now(&self) {
        self.inner.tx.send_replace(State::Now);
    }
}

/// Shut `handle`'s proxies down gracefully on the first SIGINT or SIGTERM, and at once on
/// the second. Each is logged at the `warn` level, the first with what the proxy waits for:
/// `shutting down: waiting up to 5s for 2 connections to finish; press Ctrl-C again to quit
/// now`. Must be called inside a tokio runtime; the signal handlers are installed before it
/// returns.
pub fn shutdown_on_signals(handle: ShutdownHandle) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("{}", waiting_line(handle.connections(), handle.timeout()));
        handle.shutdown();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("second signal: quitting now, dropping {}", connections(handle.connections()));
        handle.shutdown_now();
    });
    Ok(())
}

/// What a graceful shutdown waits for, as [`shutdown_on_signals`] logs it.
pub(crate) fn waiting_line(live: usize, timeout: Duration) -> String {
    match live {
        0 => "shutting down".to_owned(),
        n => format!(
            "shutting down: waiting up to {timeout:?} for {} to finish; press Ctrl-C again to quit now",
            connections(n)
        ),
    }
}

/// `1 connection`, `2 connections`.
fn connections(n: usize) -> String {
    format!("{n} connection{}", if n == 1 { "" } else { "s" })
}
