//! Embedding sansproxy: tag every request with `x-sansproxy: 1` and refuse one host, over
//! plain HTTP and intercepted HTTPS alike.
//!
//! ```text
//! cargo run -p proxy-io --example rewrite_and_block -- [BLOCKED_HOST] [LISTEN_ADDR] [UPSTREAM_CA_PEM]
//! curl -x http://127.0.0.1:8080 http://BLOCKED_HOST/   # 403 blocked by policy: BLOCKED_HOST
//! curl -x http://127.0.0.1:8080 --cacert ~/.sansproxy/sansproxy-ca-cert.pem https://example.org/
//! ```
//!
//! Listens on 127.0.0.1:8080 unless told otherwise; stops on Ctrl-C. HTTPS is intercepted with
//! the CA in the default directory (`~/.sansproxy`, or `$SANSPROXY_CA_DIR`), made on first use;
//! the proxy says where its certificate is. `UPSTREAM_CA_PEM` names a CA to trust besides the
//! Mozilla roots, for origins signed by a private one.

use std::net::SocketAddr;

use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet, Response};
use proxy_io::{Handler, Proxy};

struct Policy {
    blocked: Option<String>,
}

impl Policy {
    fn is_blocked(&self, host: &str) -> bool {
        self.blocked.as_deref().is_some_and(|b| b.eq_ignore_ascii_case(host))
    }
}

impl Handler for Policy {
    fn hooks(&self) -> HookSet {
        // Only these are raised; every other phase costs nothing.
        HookSet::NONE.with(HookKind::HttpConnect).with(HookKind::RequestHeaders)
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        match hook {
            // Blocking at the request head answers before the body is even read.
            Hook::HttpConnect(flow) | Hook::RequestHeaders(flow) if self.is_blocked(&flow.request.host) => {
                HookReply::Respond(Response::text(403, format!("blocked by policy: {}", flow.request.host)))
            }
            Hook::RequestHeaders(mut flow) => {
                flow.request.headers.insert("x-sansproxy", "1");
                HookReply::Update(flow)
            }
            _ => HookReply::Continue,
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let blocked = args.next().filter(|h| !h.is_empty());
    let listen: SocketAddr = match args.next().filter(|a| !a.is_empty()) {
        Some(addr) => addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };

    let mut builder = Proxy::builder().listen(listen).handler(Policy { blocked: blocked.clone() });
    if let Some(pem) = args.next() {
        builder = builder.upstream_ca(pem);
    }
    let proxy = builder.build().await?;
    proxy_io::shutdown_on_signals(proxy.shutdown_handle())?;
    if let Some(ca) = proxy.ca() {
        eprintln!("intercepting HTTPS: clients must trust {}", ca.cert_path.display());
    }
    match &blocked {
        Some(host) => eprintln!("listening on {}, blocking {host}", proxy.local_addr()),
        None => eprintln!("listening on {}", proxy.local_addr()),
    }
    proxy.run().await;
    Ok(())
}
