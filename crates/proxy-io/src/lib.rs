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
//! A proxy that intercepts HTTPS and marks every response it passes on takes a [`Handler`]
//! and a [`Proxy::builder`]. TLS inside `CONNECT` tunnels is intercepted by default, with the
//! CA the command line tool uses (kept in [`tls::default_ca_dir`], `~/.sansproxy`, and made
//! there on first use); clients must trust its certificate, which [`Proxy::ca`] names:
//!
//! ```
//! use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet};
//! use proxy_io::{Handler, Proxy};
//!
//! /// Marks every response, plain or HTTPS, with `x-seen-by: sansproxy`.
//! struct Mark;
//!
//! impl Handler for Mark {
//!     fn hooks(&self) -> HookSet {
//!         // Only this hook is raised; every other phase costs nothing.
//!         HookSet::NONE.with(HookKind::ResponseHeaders)
//!     }
//!
//!     async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
//!         match hook {
//!             Hook::ResponseHeaders(mut flow) => {
//!                 if let Some(response) = flow.response.as_mut() {
//!                     response.headers.insert("x-seen-by", "sansproxy");
//!                 }
//!                 HookReply::Update(flow)
//!             }
//!             _ => HookReply::Continue,
//!         }
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #   // A test origin signed by a CA of its own, and a directory for the proxy's CA.
//! #   let (origin, origin_ca, dir) = demo::origin()?;
//! #   std::env::set_var("SANSPROXY_CA_DIR", dir.path().join("proxy-ca"));
//!     let proxy = Proxy::builder()
//!         .listen("127.0.0.1:8080".parse()?)
//! #       .listen("127.0.0.1:0".parse()?)
//! #       .upstream_ca(&origin_ca)
//!         .handler(Mark)
//!         .build()
//!         .await?;
//!     if let Some(ca) = proxy.ca() {
//!         // e.g. curl -x http://127.0.0.1:8080 --cacert ~/.sansproxy/sansproxy-ca-cert.pem https://...
//!         eprintln!("clients must trust {}", ca.cert_path.display());
//!     }
//!     proxy_io::shutdown_on_signals(proxy.shutdown_handle())?;
//! #   let fetched = demo::fetch_then_stop(&proxy, origin);
//!     proxy.run().await;
//! #   let page = fetched.join().expect("the fetching thread panicked")?;
//! #   assert!(page.contains("x-seen-by: sansproxy\r\n"), "{page}");
//! #   assert!(page.ends_with("\r\n\r\nhello from the origin"), "{page}");
//!     Ok(())
//! }
//! # mod demo {
//! #     use std::io::{Read, Write};
//! #     use std::net::{SocketAddr, TcpListener, TcpStream};
//! #     use std::path::PathBuf;
//! #     use std::sync::Arc;
//! #     use std::time::Duration;
//! #
//! #     type Error = Box<dyn std::error::Error>;
//! #
//! #     /// An HTTPS origin on 127.0.0.1 answering up to 8 connections, the PEM file of the CA
//! #     /// that signed its certificate, and a directory that lives as long as the test.
//! #     pub fn origin() -> Result<(SocketAddr, PathBuf, tempfile::TempDir), Error> {
//! #         let dir = tempfile::tempdir()?;
//! #         let ca_key = rcgen::KeyPair::generate()?;
//! #         let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! #         params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! #         let ca_cert = params.self_signed(&ca_key)?;
//! #         let issuer = rcgen::Issuer::new(params, ca_key);
//! #         let key = rcgen::KeyPair::generate()?;
//! #         let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &issuer)?;
//! #         let ca_path = dir.path().join("origin-ca.pem");
//! #         std::fs::write(&ca_path, ca_cert.pem())?;
//! #         let provider = Arc::new(rustls::crypto::ring::default_provider());
//! #         let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
//! #         let config = rustls::ServerConfig::builder_with_provider(provider)
//! #             .with_safe_default_protocol_versions()?
//! #             .with_no_client_auth()
//! #             .with_single_cert(vec![cert.der().clone()], key)?;
//! #         let (config, listener) = (Arc::new(config), TcpListener::bind("127.0.0.1:0")?);
//! #         let addr = listener.local_addr()?;
//! #         std::thread::spawn(move || {
//! #             for stream in listener.incoming().take(8).flatten() {
//! #                 let config = Arc::clone(&config);
//! #                 std::thread::spawn(move || drop(serve(config, stream)));
//! #             }
//! #         });
//! #         Ok((addr, ca_path, dir))
//! #     }
//! #
//! #     /// Answers each request head on `stream` with a short body.
//! #     fn serve(config: Arc<rustls::ServerConfig>, stream: TcpStream) -> Result<(), Error> {
//! #         stream.set_read_timeout(Some(Duration::from_secs(10)))?;
//! #         let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config)?, stream);
//! #         let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
//! #         while head.len() < 65536 {
//! #             let n = tls.read(&mut buf)?;
//! #             if n == 0 {
//! #                 return Ok(());
//! #             }
//! #             head.extend_from_slice(&buf[..n]);
//! #             if head.ends_with(b"\r\n\r\n") {
//! #                 head.clear();
//! #                 let body = "hello from the origin";
//! #                 write!(tls, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len())?;
//! #                 tls.flush()?;
//! #             }
//! #         }
//! #         Ok(())
//! #     }
//! #
//! #     /// Fetches from `origin` through `proxy` with curl, trusting the proxy's CA, then stops
//! #     /// the proxy; the response head and body as curl printed them.
//! #     pub fn fetch_then_stop<H: proxy_io::Handler>(
//! #         proxy: &proxy_io::Proxy<H>,
//! #         origin: SocketAddr,
//! #     ) -> std::thread::JoinHandle<Result<String, String>> {
//! #         let (addr, stop) = (proxy.local_addr(), proxy.shutdown_handle());
//! #         let ca = proxy.ca().map(|ca| ca.cert_path.clone());
//! #         std::thread::spawn(move || {
//! #             let ca = ca.ok_or("no CA: TLS is not intercepted")?;
//! #             let out = std::process::Command::new("curl")
//! #                 .args(["-sS", "--max-time", "20", "-D", "-", "--cacert"])
//! #                 .arg(&ca)
//! #                 .args(["-x", &format!("http://{addr}"), &format!("https://{origin}/")])
//! #                 .output();
//! #             stop.shutdown();
//! #             let out = out.map_err(|e| format!("cannot run curl: {e}"))?;
//! #             match out.status.success() {
//! #                 true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
//! #                 false => Err(format!("curl failed: {}", String::from_utf8_lossy(&out.stderr))),
//! #             }
//! #         })
//! #     }
//! # }
//! ```
//!
//! [`Builder::no_intercept`] leaves TLS alone (tunnels are relayed, hooks see only the
//! `CONNECT`); [`Builder::ca_dir`], [`Builder::upstream_ca`] and the other TLS methods change
//! where the CA is kept and which servers are trusted, as the command line's flags do.

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
pub use proxy::{shutdown_on_signals, BuildError, Builder, Proxy, ShutdownHandle};

#[cfg(test)]
mod tests;

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
