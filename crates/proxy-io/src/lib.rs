//! The tokio driver of sansproxy.
//!
//! [`Proxy`] listens, and runs one task per client connection. That task owns the core's
//! [`Connection`](proxy_core::Connection), the client socket and every upstream socket, and
//! turns socket readiness, connect results, the core's timer and hook answers into
//! [`Event`](proxy_core::Event)s, carrying out the core's commands in order. It resolves names,
//! enforces the connect, linger and shutdown timeouts and runs [`Handler`] hooks concurrently
//! with the connection's I/O; it never parses or rewrites protocol bytes, never reorders one
//! connection's events, and never reads from a socket the core has paused.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//!
//! let proxy = proxy_io::Proxy::builder()
//!     .listen("127.0.0.1:8080".parse().unwrap())
//!     .config(proxy_core::Config::default())
//!     .handler(proxy_io::NoopHandler)
//!     .connect_timeout(Duration::from_secs(10))
//!     .shutdown_timeout(Duration::from_secs(5))
//!     .max_connections(1024)
//!     .build()
//!     .await?;
//! proxy_io::shutdown_on_signals(proxy.shutdown_handle())?;
//! proxy.run().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod carrier;
mod driver;
mod handler;
mod health;
mod inject;
mod open;
mod original_dst;
mod pool;
mod proxy;
mod queue;
#[cfg(target_os = "linux")]
mod splice;
pub mod tls;

pub use handler::{Handler, NoopHandler};
pub use inject::{InjectError, Injector};
pub use pool::PoolMonitor;
pub use proxy::{shutdown_on_signals, Builder, Proxy, ShutdownHandle};

#[cfg(test)]
mod tests;

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
