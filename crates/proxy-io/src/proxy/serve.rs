//! The accept loop: clients taken from the listener (or handed over by another thread) within
//! the connection limit, one task each, and at shutdown the wait for them, nudged to finish,
//! until the shutdown timeout.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use proxy_core::ClientInfo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::shutdown::{stopping, Live, State};
use super::spread::{Handed, Load};
use super::Proxy;
use crate::driver::{self, Core, Nudge};
use crate::handler::Handler;

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

impl<H: Handler> Proxy<H> {
    /// Accept and serve this listener's clients; the gateway's health checks beside it if
    /// `checks` (one thread runs them for all).
    pub(super) async fn serve<C, K>(self, checks: bool, make_core: K)
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

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
