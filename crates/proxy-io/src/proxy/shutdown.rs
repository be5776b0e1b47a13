//! Shutting down: the [`ShutdownHandle`] that stops proxies, gracefully or at once, the count
//! of the connections they serve, and the signal handlers that use it.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub(super) async fn stopping(state: &mut watch::Receiver<State>) {
    // The sender lives in the proxy's own handle, so it outlives this receiver.
    let _ = state.wait_for(|s| *s != State::Running).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    Graceful,
    Now,
}

/// One client connection counted in its [`ShutdownHandle`] while it lives.
pub(super) struct Live(Arc<Stopping>);

impl Live {
    pub(super) fn count(handle: &ShutdownHandle) -> Self {
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
///
/// [`Proxy`]: crate::Proxy
/// [`Builder::shutdown_handle`]: crate::Builder::shutdown_handle
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    pub(super) inner: Arc<Stopping>,
}

/// What the clones of a [`ShutdownHandle`] share.
#[derive(Debug)]
pub(super) struct Stopping {
    pub(super) tx: watch::Sender<State>,
    /// Client connections being served by the proxies the handle stops.
    live: AtomicUsize,
    /// The longest shutdown timeout of those proxies, in milliseconds.
    pub(super) timeout_ms: AtomicU64,
}

impl Default for Stopping {
    fn default() -> Self {
        Self { tx: watch::Sender::new(State::Running), live: AtomicUsize::new(0), timeout_ms: AtomicU64::new(0) }
    }
}

impl ShutdownHandle {
    /// A handle for [`Builder::shutdown_handle`], stopping no proxy until one is built with it.
    ///
    /// [`Builder::shutdown_handle`]: crate::Builder::shutdown_handle
    pub fn new() -> Self {
        Self::default()
    }

    /// Client connections the proxies this handle stops are serving now.
    pub fn connections(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// How long a graceful shutdown may wait for connections: the longest
    /// [`Builder::shutdown_timeout`] of the proxies this handle stops.
    ///
    /// [`Builder::shutdown_timeout`]: crate::Builder::shutdown_timeout
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
