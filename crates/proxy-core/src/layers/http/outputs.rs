//! What the codecs' outputs mean for the streams: the client codec's requests (checked for
//! this proxy's credentials, or admitted by the gateway in reverse mode) and their ends go to
//! their streams, or to the WebSockets and tunnels they carry; the server codecs' responses go
//! to their streams, and their failures to the flows they cost.

use std::time::Instant;

use super::destination::Destination;
use super::error::{ClientError, HttpError, ServerError};
use super::event::{CodecOutput, HttpEvent};
use super::pool::{ServerCodec, ServerConn};
use super::proxy_auth;
use super::stream::{HttpStream, Input, Refusal};
use super::HttpLayer;
use crate::command::LogLevel;
use crate::config::Mode;
use crate::context::Context;
use crate::event::Event;
use crate::flow::Request;
use crate::gateway::{self, Admitted};
use crate::ids::{ConnId, FlowId};
use crate::layers::websocket::WsInput;
use crate::websocket::Peer;

impl HttpLayer {
    pub(super) fn handle_client_outputs(
        &mut self,
        cx: &mut Context,
        now: Instant,
        mut outputs: Vec<CodecOutput<ClientError>>,
    ) {
        // A request the codec rejected within the same read has been answered already: its
        // stream only reports the error, and neither raises request hooks nor opens a server.
        let rejected = outputs.iter().find_map(|o| match o {
            CodecOutput::Error { flow: Some(flow), .. } => Some(*flow),
            _ => None,
        });
        for output in outputs.drain(..) {
            let websocket = match &output {
                CodecOutput::Reset { flow, .. } | CodecOutput::Error { flow: Some(flow), .. } | CodecOutput::Closed { flow: Some(flow), .. } => {
                    Some(*flow).filter(|f| self.websockets.contains(*f))
                }
                _ => None,
            };
            if let Some(flow) = websocket {
                self.websocket_input(cx, now, flow, WsInput::Gone(Peer::Client));
                continue;
            }
            let tunnel = match &output {
                CodecOutput::Reset { flow, .. } | CodecOutput::Error { flow: Some(flow), .. } | CodecOutput::Closed { flow: Some(flow), .. } => {
                    Some(*flow).filter(|f| self.tunnels.contains(*f))
                }
                _ => None,
            };
            if let Some(flow) = tunnel {
                self.tunnel_client_gone(cx, now, flow, true);
                continue;
            }
            match output {
                CodecOutput::Http(HttpEvent::RequestHeaders { flow, request, .. })
                    if Some(flow) == rejected =>
                {
                    self.streams
                        .insert(flow, Box::new(HttpStream::new(cx, now, flow, request)));
                }
                CodecOutput::Http(event) => self.route_request_event(cx, now, event),
                CodecOutput::Error { flow: Some(flow), error } => {
                    self.feed(cx, now, flow, Input::ClientError(error));
                }
                // Logged by the codec; there is no flow to tell.
                CodecOutput::Error { flow: None, .. } => {}
                CodecOutput::Closed { flow, .. } => {
                    if let Some(flow) = flow {
                        self.feed(cx, now, flow, Input::ClientClosed);
                    }
                }
                CodecOutput::Reset { flow, .. } => self.feed(cx, now, flow, Input::ClientReset),
            }
        }
        self.spare_client_outputs = spare(outputs);
    }

    fn route_request_event(&mut self, cx: &mut Context, now: Instant, event: HttpEvent) {
        match event {
            HttpEvent::RequestHeaders { flow, mut request, end_stream } => {
                let mut refusal = match (&self.destination, cx.config.proxy_auth.clone()) {
                    (Destination::Named, Some(auth)) => proxy_auth::check(&auth, &mut request.headers).err().map(|why| {
                        cx.log(LogLevel::Warn, format!("client {}: proxy authentication failed: {why}", cx.client.peer));
                        Refusal::Auth(proxy_auth::required(&auth))
                    }),
                    _ => None,
                };
                // Credentials for this proxy never go upstream, whatever the mode.
                request.headers.remove("proxy-authorization");
                let mut admitted = None;
                if self.destination.is_fixed() {
                    match self.to_backend(cx, now, &mut request) {
                        Ok(held) => admitted = held,
                        Err(refused) => refusal = Some(Refusal::Fail(HttpError::Refused(refused))),
                    }
                }
                let mut stream = Box::new(HttpStream::new(cx, now, flow, request));
                stream.admit(admitted);
                self.streams.insert(flow, stream);
                self.feed(cx, now, flow, Input::RequestHeaders { end_stream, refusal });
            }
            HttpEvent::RequestData { flow, data } if self.tunnels.contains(flow) => {
                self.tunnel_input(cx, now, flow, Event::DataReceived { conn: ConnId::CLIENT, data });
            }
            // The client ended its stream: as a connection's EOF.
            HttpEvent::RequestEnd { flow, .. } if self.tunnels.contains(flow) => self.tunnel_client_gone(cx, now, flow, false),
            HttpEvent::RequestData { flow, data } if self.websockets.contains(flow) => {
                self.websocket_input(cx, now, flow, WsInput::Data(Peer::Client, data));
            }
            // The client ended its stream: as a connection's EOF.
            HttpEvent::RequestEnd { flow, .. } if self.websockets.contains(flow) => {
                self.websocket_input(cx, now, flow, WsInput::Gone(Peer::Client));
            }
            HttpEvent::RequestData { flow, data }
                if self.streams.get(&flow).is_some_and(|s| s.awaits_switch()) =>
            {
                // Frames or tunnel bytes a client sent before the switch: kept for it (its
                // window stays shut meanwhile, so they are at most one window's worth).
                self.early.entry(flow).or_default().data.extend_from_slice(&data);
            }
            HttpEvent::RequestEnd { flow, .. }
                if self.streams.get(&flow).is_some_and(|s| s.awaits_switch()) =>
            {
                self.early.entry(flow).or_default().eof = true;
            }
            HttpEvent::RequestData { flow, data } => self.feed(cx, now, flow, Input::RequestData(data)),
            HttpEvent::RequestEnd { flow, trailers } => self.feed(cx, now, flow, Input::RequestEnd(trailers)),
            _ => {}
        }
    }

    /// Reverse mode: where `request` goes. With a gateway, its routes and balancing decide
    /// (the flow then holds a lease on the backend, or waits in its group's queue, or is
    /// refused for the reason given); without, the mode's one target, which `Host` now
    /// names.
    fn to_backend(&self, cx: &mut Context, now: Instant, request: &mut Request) -> Result<Option<Admitted>, gateway::Refusal> {
        let client_tls = matches!(cx.config.mode, Mode::Reverse { client_tls: true, .. });
        let admitted = match &cx.config.gateway {
            Some(gateway) => gateway.admit(now, request, &cx.client, client_tls, cx.waker.as_ref()),
            None => {
                request.headers.insert("host", request.authority());
                return Ok(None);
            }
        };
        admitted.map(Some).map_err(|refusal| {
            cx.log(LogLevel::Warn, format!("client {}: {} {}: {refusal}", cx.client.peer, request.method, request.path));
            refusal
        })
    }

    /// What a server connection's codec produced, either version: steps of responses go to
    /// their streams, failures to the flows they cost. A failure ends an HTTP/1 connection,
    /// whose one flow is told while still on it; HTTP/2 flows leave their connection before
    /// they are told, and the connection goes on unless it closed.
    pub(super) fn handle_server_outputs(
        &mut self,
        cx: &mut Context,
        now: Instant,
        conn: ConnId,
        mut outputs: Vec<CodecOutput<ServerError>>,
    ) {
        let multiplexed = self.pool.get(conn).is_some_and(ServerConn::is_multiplexed);
        for output in outputs.drain(..) {
            let websocket = match &output {
                CodecOutput::Http(event) => Some(event.flow()),
                CodecOutput::Reset { flow, .. } | CodecOutput::Error { flow: Some(flow), .. } => Some(*flow),
                _ => None,
            };
            if let Some(flow) = websocket.filter(|f| multiplexed && self.websockets.on_server_stream(conn, *f)) {
                // An HTTP/2 server's WebSocket stream: its data is frames, its end or reset
                // the server's side ending.
                let input = match output {
                    CodecOutput::Http(HttpEvent::ResponseData { data, .. }) => WsInput::Data(Peer::Server, data),
                    CodecOutput::Http(_) => continue,
                    _ => WsInput::Gone(Peer::Server),
                };
                self.websocket_input(cx, now, flow, input);
                continue;
            }
            match output {
                CodecOutput::Http(event) => {
                    let flow = event.flow();
                    if !multiplexed && !self.is_on_server(conn, flow) {
                        // An earlier output cost this HTTP/1 connection its flow.
                        continue;
                    }
                    let input = match event {
                        HttpEvent::InterimResponse { response, .. } => Input::Interim(response),
                        HttpEvent::ResponseHeaders { response, end_stream, .. } => Input::ResponseHeaders { response, end_stream },
                        HttpEvent::ResponseData { data, .. } => Input::ResponseData(data),
                        HttpEvent::ResponseEnd { trailers, .. } => {
                            // An HTTP/1 server owes nothing more once its one response is in.
                            if let Some(server) = self.pool.get_mut(conn).filter(|_| !multiplexed) {
                                server.deadline = None;
                            }
                            Input::ResponseEnd(trailers)
                        }
                        _ => continue,
                    };
                    self.feed(cx, now, flow, input);
                }
                CodecOutput::Error { flow, error } => {
                    cx.log(LogLevel::Info, format!("server {}: {}", self.pool.describe(conn), error));
                    self.tell_server_flows(cx, now, conn, flow, multiplexed, Input::ServerError(error));
                    if !multiplexed {
                        self.drop_server(cx, conn);
                    }
                }
                CodecOutput::Reset { flow, reset } => {
                    let input = Input::ServerError(ServerError::Reset(reset));
                    self.tell_server_flows(cx, now, conn, Some(flow), multiplexed, input);
                }
                CodecOutput::Closed { flow, error } => {
                    if let Some(error) = error {
                        cx.log(LogLevel::Info, format!("server {}: HTTP/2 connection failed: {error}", self.pool.describe(conn)));
                    }
                    let stale = self.pool.get(conn).is_some_and(|s| s.reused && s.h1().is_some_and(|c| c.heard_nothing()));
                    let error = match (multiplexed, stale) {
                        (true, _) => ServerError::ClosedH2,
                        (false, true) => ServerError::Stale,
                        (false, false) => ServerError::Closed,
                    };
                    self.tell_server_flows(cx, now, conn, flow, multiplexed, Input::ServerError(error));
                    self.drop_server(cx, conn);
                }
            }
        }
        self.spare_server_outputs = spare(outputs);
    }

    /// Give `flow`, or without one every flow on server connection `conn`, the `input` of a
    /// failure. HTTP/1 tells a flow only while it is on the connection; HTTP/2 (`multiplexed`)
    /// tells a named flow in any case, and takes the flows off the connection first.
    fn tell_server_flows(&mut self, cx: &mut Context, now: Instant, conn: ConnId, flow: Option<FlowId>, multiplexed: bool, input: Input) {
        if self.pool.get(conn).is_some_and(|s| matches!(s.codec, ServerCodec::Joined(_))) {
            // A stream on a carrier fails alone, and leaves the carrier before its flow is
            // told (which may send the request again, on another).
            let flows = self.pool.get(conn).map(|s| s.flows.clone()).unwrap_or_default();
            self.drop_server(cx, conn);
            for flow in flows {
                self.feed(cx, now, flow, input.clone());
            }
            return;
        }
        let flows = match flow {
            Some(flow) if multiplexed || self.is_on_server(conn, flow) => vec![flow],
            Some(_) => Vec::new(),
            None => self.pool.get(conn).map(|s| s.flows.clone()).unwrap_or_default(),
        };
        if let Some(server) = self.pool.get_mut(conn).filter(|_| multiplexed) {
            server.flows.retain(|f| !flows.contains(f));
        }
        for flow in flows {
            self.feed(cx, now, flow, input.clone());
        }
    }

    fn is_on_server(&self, conn: ConnId, flow: FlowId) -> bool {
        self.pool.get(conn).is_some_and(|s| s.flows.contains(&flow))
    }
}

/// An emptied list of outputs to keep for the next read, unless it grew large.
fn spare<T>(outputs: Vec<T>) -> Vec<T> {
    debug_assert!(outputs.is_empty());
    if outputs.capacity() <= 16 {
        outputs
    } else {
        Vec::new()
    }
}
