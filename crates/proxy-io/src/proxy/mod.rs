//! [`Proxy`]: the listener, the accept loop and graceful shutdown.

mod builder;
mod serve;
mod shutdown;
mod spread;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy_core::{ClientInfo, Config, Connection};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::driver::{Core, Options};
use crate::handler::{Handler, NoopHandler};
use crate::inject::Injector;
use crate::tls::CaInfo;
pub use builder::{BuildError, Builder};
use shutdown::State;
pub use shutdown::{shutdown_on_signals, ShutdownHandle};
#[cfg(test)]
pub(crate) use shutdown::waiting_line;
use spread::{Handed, Spread};

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
}
