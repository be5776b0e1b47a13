//! [`Handler`]: what an embedder plugs into the driver to answer hooks.

use std::future::Future;
use std::sync::Arc;

use proxy_core::{FlowId, Hook, HookReply, HookSet};

/// The embedder's side of the hooks.
///
/// The driver asks the core to raise only the hooks in [`hooks`](Self::hooks) (it writes them
/// into [`Config::hooks`](proxy_core::Config::hooks)), so an embedder that watches only responses
/// pays nothing for the other phases.
///
/// [`hook`](Self::hook) runs inside the task of the client connection that raised it, next to
/// that connection's I/O: while one hook future is pending, the connection keeps moving (other
/// flows, the tunnel, timers). A future that is ready on its first poll is answered in the same
/// turn of the connection's loop, with no task spawned, so a handler that only looks at flows
/// costs little. A handler that must do blocking work should move it to
/// `tokio::task::spawn_blocking` itself.
///
/// ```no_run
/// use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet, Response};
///
/// struct Block(String);
///
/// impl proxy_io::Handler for Block {
///     fn hooks(&self) -> HookSet {
///         HookSet::NONE.with(HookKind::RequestHeaders)
///     }
///
///     async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
///         match hook.flow() {
///             Some(f) if f.request.host == self.0 => HookReply::Respond(Response::text(403, "no")),
///             _ => HookReply::Continue,
///         }
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The hooks to raise. Called once, when the proxy is built. The default, every hook,
    /// includes [`HookKind::WebSocketMessage`](proxy_core::HookKind::WebSocketMessage): each
    /// WebSocket message is then held (whole up to
    /// [`WebSocketLimits::max_message`](proxy_core::websocket::WebSocketLimits::max_message),
    /// in pieces beyond) until answered. Leave it out to let messages stream through.
    fn hooks(&self) -> HookSet {
        HookSet::ALL
    }

    /// Answer `hook`, raised for `flow`.
    ///
    /// For a blocking hook ([`Hook::is_blocking`]) the reply goes back to the core; for a
    /// notification it is dropped, so return [`HookReply::Continue`].
    fn hook(&self, flow: FlowId, hook: Hook) -> impl Future<Output = HookReply> + Send;
}

/// A handler that asks for no hooks: the proxy just forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

impl Handler for NoopHandler {
    fn hooks(&self) -> HookSet {
        HookSet::NONE
    }

    fn hook(&self, _flow: FlowId, _hook: Hook) -> impl Future<Output = HookReply> + Send {
        std::future::ready(HookReply::Continue)
    }
}

impl<H: Handler> Handler for Arc<H> {
    fn hooks(&self) -> HookSet {
        (**self).hooks()
    }

    fn hook(&self, flow: FlowId, hook: Hook) -> impl Future<Output = HookReply> + Send {
        (**self).hook(flow, hook)
    }
}
