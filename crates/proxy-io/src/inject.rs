//! [`Injector`]: WebSocket messages sent into a flow by user code, from any task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proxy_core::websocket::{MessageKind, Peer};
use proxy_core::{Event, FlowId};
use tokio::sync::mpsc;

/// Messages waiting for one connection's task to take them; more are refused with
/// [`InjectError::Busy`].
const QUEUE: usize = 256;

/// Sends WebSocket messages into live flows, as mitmproxy's `inject.websocket` does. Cheap to
/// clone. Make one with `Injector::default()` and hand it to
/// [`Builder::injector`](crate::Builder::injector) (so that a handler can hold a clone), or
/// take the proxy's own from [`Proxy::injector`](crate::Proxy::injector).
///
/// A flow can be injected into from the moment its
/// [`Hook::WebSocketStart`](proxy_core::Hook::WebSocketStart) is raised (the handler must ask
/// for that hook) until the WebSocket connection ends. A flow is named by its client's address
/// and its id, both in the flow the hook carries.
///
/// ```no_run
/// # use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet};
/// # use proxy_core::websocket::{MessageKind, Peer};
/// struct Greeter(proxy_io::Injector);
///
/// impl proxy_io::Handler for Greeter {
///     fn hooks(&self) -> HookSet {
///         HookSet::NONE.with(HookKind::WebSocketStart)
///     }
///
///     async fn hook(&self, flow: FlowId, hook: Hook) -> HookReply {
///         if let Hook::WebSocketStart(f) = hook {
///             let _ = self.0.inject(f.client.peer, flow, Peer::Client, MessageKind::Text, "welcome");
///         }
///         HookReply::Continue
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct Injector {
    flows: Arc<Mutex<Queues>>,
}

/// Each live flow's queue, by its client connection and flow.
type Queues = HashMap<(SocketAddr, FlowId), mpsc::Sender<Event>>;

/// Why a message could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// The client has no WebSocket flow of that id (it never upgraded, or it has ended).
    #[error("no live WebSocket flow {flow} of client {client}")]
    NoFlow {
        /// The client address given.
        client: SocketAddr,
        /// The flow id given.
        flow: u64,
    },
    /// The connection has not yet taken the messages injected before; try again later.
    #[error("{QUEUE} injected messages already wait for the connection")]
    Busy,
}

impl Injector {
    /// Send a `kind` message with `payload` to `to` on the flow `flow` of the client at
    /// `client`. It goes out in order with the connection's own events; the core drops it with a
    /// log line once the connection is closing, or (a text payload) when it is not UTF-8.
    pub fn inject(
        &self,
        client: SocketAddr,
        flow: FlowId,
        to: Peer,
        kind: MessageKind,
        payload: impl Into<Bytes>,
    ) -> Result<(), InjectError> {
        let sender = self.flows.lock().expect("injector lock").get(&(client, flow)).cloned();
        let Some(sender) = sender else { return Err(InjectError::NoFlow { client, flow: flow.0 }) };
        let event = Event::Inject { flow, to, kind, payload: payload.into() };
        sender.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InjectError::Busy,
            mpsc::error::TrySendError::Closed(_) => InjectError::NoFlow { client, flow: flow.0 },
        })
    }

    pub(crate) fn register(&self, client: SocketAddr, flow: FlowId, sender: mpsc::Sender<Event>) {
        self.flows.lock().expect("injector lock").insert((client, flow), sender);
    }

    pub(crate) fn unregister(&self, client: SocketAddr, flow: FlowId) {
        self.flows.lock().expect("injector lock").remove(&(client, flow));
    }
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.flows.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Injector").field("flows", &n).finish()
    }
}

/// One connection's end of the injector: the flows it registered, and the queue its task reads.
pub(crate) struct Inbox {
    injector: Injector,
    client: SocketAddr,
    channel: Option<(mpsc::Sender<Event>, mpsc::Receiver<Event>)>,
    flows: Vec<FlowId>,
}

impl Inbox {
    pub(crate) fn new(injector: Injector, client: SocketAddr) -> Self {
        Self { injector, client, channel: None, flows: Vec::new() }
    }

    /// `flow` became a WebSocket: messages may be injected into it from now on.
    pub(crate) fn open(&mut self, flow: FlowId) {
        let (sender, _) = self.channel.get_or_insert_with(|| mpsc::channel(QUEUE));
        self.injector.register(self.client, flow, sender.clone());
        self.flows.push(flow);
    }

    /// `flow` ended: nothing more can be injected into it.
    pub(crate) fn close(&mut self, flow: FlowId) {
        self.injector.unregister(self.client, flow);
        self.flows.retain(|f| *f != flow);
    }

    /// The injector this inbox registers with.
    pub(crate) fn injector(&self) -> Injector {
        self.injector.clone()
    }

    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Event>> {
        match &mut self.channel {
            Some((_, receiver)) if !self.flows.is_empty() => receiver.poll_recv(cx),
            _ => std::task::Poll::Pending,
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        for flow in std::mem::take(&mut self.flows) {
            self.injector.unregister(self.client, flow);
        }
    }
}
