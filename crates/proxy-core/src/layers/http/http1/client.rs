//! An upstream connection: we write requests and read responses.

use bytes::{Bytes, BytesMut};

use super::wire::{self, BodyEvent, BodyReader, Framing, HeadReader, Limits, ResponseHead};
use super::{allowed_trailers, canonical_length, forwardable, let_go, limits, strip_hop_by_hop, take_in, Encoder, Forwarding};
use crate::config::Config;
use crate::context::Context;
use crate::flow::{Request, Response, Version};
use crate::ids::{ConnId, FlowId};
use crate::layers::http::error::ServerError;
use crate::layers::http::event::{CodecOutput, HttpEvent};

/// Where the response stands; `flow` is the exchange it answers.
#[derive(Debug)]
enum Recv {
    /// No request outstanding.
    Idle,
    Head(FlowId),
    Body(FlowId, BodyReader),
    Done,
    /// Switched protocols, or broken.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    Idle,
    Body(Encoder),
    Done,
}

pub(crate) struct Http1Client {
    conn: ConnId,
    buf: BytesMut,
    heads: HeadReader,
    limits: Limits,
    add_via: bool,
    recv: Recv,
    send: Send,
    /// The method of the request in flight: `HEAD` and `CONNECT` responses have no body.
    method: String,
    keep_alive: bool,
    eof: bool,
    /// The driver is moving the rest of a `Content-Length` response body by itself.
    forwarding: Forwarding,
    /// Request targets go out in absolute-form (`GET http://host/path`): the connection leads
    /// to another proxy.
    absolute_form: bool,
}

impl Http1Client {
    /// The connection is now `conn` (it moved to another client connection).
    pub(crate) fn rename(&mut self, conn: ConnId) {
        self.conn = conn;
    }

    pub(crate) fn new(conn: ConnId, config: &Config) -> Self {
        Self {
            conn,
            buf: BytesMut::new(),
            heads: HeadReader::new(),
            limits: limits(config),
            add_via: config.add_via,
            recv: Recv::Idle,
            send: Send::Idle,
            method: String::new(),
            keep_alive: true,
            eof: false,
            forwarding: Forwarding::No,
            absolute_form: false,
        }
    }

    /// Send request targets in absolute-form, as to a proxy.
    pub(crate) fn with_absolute_form(mut self) -> Self {
        self.absolute_form = true;
        self
    }

    /// Whether another request may be sent on this connection.
    pub(crate) fn is_reusable(&self) -> bool {
        self.keep_alive
            && !self.eof
            && self.buf.is_empty()
            && matches!(self.recv, Recv::Idle | Recv::Done)
            && matches!(self.send, Send::Idle | Send::Done)
    }

    /// Whether the request body leaves as is (`Content-Length` framing), so that the driver
    /// may forward bytes into it.
    pub(crate) fn sends_raw_body(&self) -> bool {
        self.send == Send::Body(Encoder::Raw)
    }

    /// If the rest of the response body is `Content-Length` framed, at least `min` bytes, and
    /// none of it is buffered here, hand it to the driver: returns how many bytes to forward.
    pub(crate) fn start_forward(&mut self, min: u64) -> Option<u64> {
        let Recv::Body(_, reader) = &self.recv else { return None };
        if self.forwarding != Forwarding::No {
            return None;
        }
        let len = forwardable(reader, &self.buf, min)?;
        self.forwarding = Forwarding::WaitsOnSource;
        Some(len)
    }

    /// Whether the response body is being forwarded and waits for the client to take it,
    /// rather than for the server to send more.
    pub(crate) fn forward_waits_on_client(&self) -> bool {
        self.forwarding == Forwarding::WaitsOnDestination
    }

    /// The driver forwarded `len` bytes of the response body, and holds `pending` more.
    pub(crate) fn handle_forwarded(&mut self, len: u64, pending: u64, out: &mut Vec<CodecOutput<ServerError>>) {
        let Recv::Body(flow, reader) = &mut self.recv else { return };
        let flow = *flow;
        self.forwarding = Forwarding::reported(pending);
        reader.skip(len);
        if reader.remaining_length() == Some(0) {
            self.forwarding = Forwarding::No;
            self.recv = Recv::Done;
            out.push(CodecOutput::Http(HttpEvent::ResponseEnd { flow, trailers: None }));
        }
    }

    /// What the server sent after switching protocols, for the tunnel that takes over.
    /// A request is out and not a byte of its answer has come.
    pub(crate) fn heard_nothing(&self) -> bool {
        matches!(self.recv, Recv::Head(_)) && self.buf.is_empty()
    }

    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    pub(crate) fn send(&mut self, cx: &mut Context, event: HttpEvent) {
        match event {
            HttpEvent::RequestHeaders { flow, request, end_stream } => self.send_head(cx, flow, request, end_stream),
            HttpEvent::RequestData { data, .. } => {
                if let Send::Body(encoder) = self.send {
                    encoder.data(cx, self.conn, data);
                }
            }
            HttpEvent::RequestEnd { trailers, .. } => {
                if let Send::Body(encoder) = self.send {
                    encoder.end(cx, self.conn, trailers.as_ref());
                    self.send = Send::Done;
                }
            }
            _ => {}
        }
    }

    fn send_head(&mut self, cx: &mut Context, flow: FlowId, mut request: Request, end_stream: bool) {
        self.recv = Recv::Head(flow);
        self.method.clone_from(&request.method);
        let target = if self.absolute_form { absolute_target(&request) } else { std::mem::take(&mut request.path) };
        let mut headers = std::mem::take(&mut request.headers);
        if !headers.contains("host") {
            headers.insert("host", request_authority(&request.host, request.port));
        }
        let mut encoder = None;
        if let Some(body) = &request.body {
            if !body.is_empty() || headers.contains("content-length") || request.method != "GET" {
                headers.insert("content-length", body.len().to_string());
            }
        } else if !end_stream {
            encoder = Some(if headers.contains("content-length") {
                Encoder::Raw
            } else {
                headers.append("transfer-encoding", "chunked");
                Encoder::Chunked
            });
        } else if headers.contains("content-length") {
            // No body follows: a length other than 0 would have the server wait for one, and
            // read the next request as its rest.
            headers.insert("content-length", "0");
        }
        // Sized exactly, head and a small body, so that it freezes without another allocation.
        let head_len = wire::request_head_len(&request.method, &target, &headers);
        let small_body = request.body.as_ref().map_or(0, Bytes::len).min(16 * 1024 + 1);
        let mut dst = BytesMut::with_capacity(head_len + if small_body <= 16 * 1024 { small_body } else { 0 });
        wire::write_request_head(&mut dst, &request.method, &target, Version::Http11, &headers);
        match &request.body {
            Some(body) if body.len() <= 16 * 1024 => {
                dst.extend_from_slice(body);
                cx.send(self.conn, dst.freeze());
            }
            Some(body) => {
                cx.send(self.conn, dst.freeze());
                cx.send(self.conn, body.clone());
            }
            None => cx.send(self.conn, dst.freeze()),
        }
        self.send = match encoder {
            Some(encoder) => Send::Body(encoder),
            None => Send::Done,
        };
    }

    pub(crate) fn receive(&mut self, data: Bytes, out: &mut Vec<CodecOutput<ServerError>>) {
        take_in(&mut self.buf, data);
        if !matches!(self.recv, Recv::Stopped) {
            self.read(out);
        }
        let_go(&mut self.buf);
    }

    fn read(&mut self, out: &mut Vec<CodecOutput<ServerError>>) {
        loop {
            match &mut self.recv {
                Recv::Idle | Recv::Done => {
                    if !self.buf.is_empty() {
                        self.keep_alive = false;
                        self.recv = Recv::Stopped;
                        out.push(CodecOutput::Error { flow: None, error: ServerError::Unsolicited });
                    }
                    return;
                }
                Recv::Head(flow) => match self.heads.read_response(&mut self.buf, &self.limits) {
                    Ok(None) => return,
                    Ok(Some(head)) => {
                        let flow = *flow;
                        if !self.start_response(flow, head, out) {
                            return;
                        }
                    }
                    Err(e) => return self.fail(ServerError::Head(e), out),
                },
                Recv::Body(flow, reader) => match reader.read(&mut self.buf) {
                    Ok(None) => return,
                    Ok(Some(BodyEvent::Data(data))) => {
                        out.push(CodecOutput::Http(HttpEvent::ResponseData { flow: *flow, data }));
                    }
                    Ok(Some(BodyEvent::End { trailers })) => {
                        let flow = *flow;
                        self.recv = Recv::Done;
                        let trailers = allowed_trailers(trailers);
                        out.push(CodecOutput::Http(HttpEvent::ResponseEnd { flow, trailers }));
                    }
                    Err(e) => return self.fail(ServerError::Body(e), out),
                },
                Recv::Stopped => return,
            }
        }
    }

    /// Handle a response head; false when the rest of the buffer is not HTTP any more.
    fn start_response(&mut self, flow: FlowId, head: ResponseHead, out: &mut Vec<CodecOutput<ServerError>>) -> bool {
        let status = head.status;
        if (100..200).contains(&status) && status != 101 {
            let mut headers = head.headers;
            strip_hop_by_hop(&mut headers, false);
            // RFC 9110 section 8.6: an interim response has no content, and says nothing of
            // one; a client that believed the field would read the next response as a body.
            headers.remove("content-length");
            let response = self.response_from(head.version, status, head.reason, headers);
            out.push(CodecOutput::Http(HttpEvent::InterimResponse { flow, response }));
            return true;
        }
        if status == 101 {
            let mut headers = head.headers;
            strip_hop_by_hop(&mut headers, true);
            let response = self.response_from(head.version, status, head.reason, headers);
            self.recv = Recv::Stopped;
            self.keep_alive = false;
            out.push(CodecOutput::Http(HttpEvent::ResponseHeaders { flow, response, end_stream: true }));
            return false;
        }
        let framing = match wire::response_framing(&self.method, &head) {
            Ok(framing) => framing,
            Err(e) => {
                self.fail(ServerError::Head(e), out);
                return false;
            }
        };
        self.keep_alive = match head.version {
            // A parsed head is never SOCKS5's.
            Version::Http11 | Version::Http2 | Version::Socks5 => !head.headers.has_token("connection", "close"),
            Version::Http10 => head.headers.has_token("connection", "keep-alive"),
        };
        let chunked_or_close = head.headers.contains("transfer-encoding");
        let mut headers = head.headers;
        if chunked_or_close && headers.remove("content-length") {
            // Both framings: a smuggling attempt or a broken server. Never reuse it.
            self.keep_alive = false;
        }
        canonical_length(&mut headers, framing);
        strip_hop_by_hop(&mut headers, false);
        if framing == Framing::UntilClose {
            self.keep_alive = false;
        }
        let response = self.response_from(head.version, status, head.reason, headers);
        let end_stream = matches!(framing, Framing::Empty | Framing::Length(0));
        self.recv = if end_stream { Recv::Done } else { Recv::Body(flow, BodyReader::new(framing, self.limits)) };
        out.push(CodecOutput::Http(HttpEvent::ResponseHeaders { flow, response, end_stream }));
        true
    }

    pub(crate) fn receive_eof(&mut self, cx: &mut Context, out: &mut Vec<CodecOutput<ServerError>>) {
        let _ = cx;
        self.eof = true;
        self.keep_alive = false;
        match &mut self.recv {
            Recv::Head(flow) => out.push(CodecOutput::Closed { flow: Some(*flow), error: None }),
            Recv::Body(flow, reader) => match reader.read_eof() {
                Ok(_) => {
                    let flow = *flow;
                    self.recv = Recv::Done;
                    out.push(CodecOutput::Http(HttpEvent::ResponseEnd { flow, trailers: None }));
                }
                Err(_) => {
                    let flow = *flow;
                    self.recv = Recv::Stopped;
                    out.push(CodecOutput::Closed { flow: Some(flow), error: None });
                }
            },
            Recv::Idle | Recv::Done | Recv::Stopped => {}
        }
    }

    /// The server broke the protocol in the response being read: the connection is unusable.
    fn fail(&mut self, error: ServerError, out: &mut Vec<CodecOutput<ServerError>>) {
        let flow = match self.recv {
            Recv::Head(flow) | Recv::Body(flow, _) => Some(flow),
            Recv::Idle | Recv::Done | Recv::Stopped => None,
        };
        self.recv = Recv::Stopped;
        self.keep_alive = false;
        out.push(CodecOutput::Error { flow, error });
    }
}

impl Http1Client {
    /// The response as the other side sees it, with our `Via` (RFC 9110 section 7.6.3) if asked.
    fn response_from(&self, version: Version, status: u16, reason: String, mut headers: crate::headers::Headers) -> Response {
        if self.add_via {
            headers.append("via", format!("{} sansproxy", if version == Version::Http10 { "1.0" } else { "1.1" }));
        }
        Response { version, status, reason, headers, body: None, trailers: None }
    }
}

/// `scheme://authority/path`; for `OPTIONS *`, without a path (RFC 9112 section 3.2.4).
fn absolute_target(request: &Request) -> String {
    if request.path == "*" {
        format!("{}://{}", request.scheme.as_str(), request.authority())
    } else {
        request.url()
    }
}

fn request_authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else if port == 80 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}
