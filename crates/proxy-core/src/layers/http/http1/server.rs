//! The client's connection: we read requests and write responses.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::wire::{self, BodyEvent, BodyReader, Framing, HeadReader, Limits, RequestHead};
use super::{allowed_trailers, canonical_length, forwardable, let_go, limits, strip_hop_by_hop, take_in, Encoder, Forwarding};
use crate::command::LogLevel;
use crate::config::Config;
use crate::context::Context;
use crate::flow::{reason_phrase, Request, Response, Version};
use crate::headers::UnderscoreHeaders;
use crate::ids::{ConnId, FlowId, Scheme};
use crate::layers::http::authority::{authority_parts, split_authority};
use crate::layers::http::destination::Destination;
use crate::layers::http::error::ClientError;
use crate::layers::http::event::{CodecOutput, HttpEvent};

#[derive(Debug)]
enum Recv {
    /// Waiting for a request head.
    Head,
    Body(BodyReader),
    /// The current request has been read completely.
    Done,
    /// The connection is no longer HTTP (CONNECT, Upgrade) or no longer usable.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    /// No response for the current request yet.
    Idle,
    Body(Encoder),
    Done,
}

#[derive(Debug)]
struct Exchange {
    flow: FlowId,
    version: Version,
    head: bool,
    connect: bool,
    keep_alive: bool,
}

pub(crate) struct Http1Server {
    conn: ConnId,
    buf: BytesMut,
    heads: HeadReader,
    limits: Limits,
    add_via: bool,
    recv: Recv,
    send: Send,
    current: Option<Exchange>,
    /// The client closed its sending side.
    eof: bool,
    /// The connection should be closed once its output is flushed.
    finished: bool,
    /// The connection is now a tunnel.
    tunnel: bool,
    /// The driver is moving the rest of a `Content-Length` request body by itself.
    forwarding: Forwarding,
    /// Where requests may go: named by each (a regular proxy, which takes absolute-form
    /// only), the server a tunnel leads to, or reverse mode's upstream whatever they name.
    destination: Destination,
    /// `https://` targets can be served: the core can speak TLS upstream.
    tls_upstream: bool,
    underscores: UnderscoreHeaders,
    head_timeout: Duration,
    /// When the request head being received must be complete: armed by its first byte,
    /// cleared once it is parsed.
    head_deadline: Option<Instant>,
    /// The proxy is shutting down: no exchange from now on keeps the connection alive.
    draining: bool,
}

impl Http1Server {
    pub(crate) fn new(conn: ConnId, config: &Config) -> Self {
        Self {
            conn,
            buf: BytesMut::new(),
            heads: HeadReader::new(),
            limits: limits(config),
            add_via: config.add_via,
            recv: Recv::Head,
            send: Send::Idle,
            current: None,
            eof: false,
            finished: false,
            tunnel: false,
            forwarding: Forwarding::No,
            destination: Destination::Named,
            tls_upstream: config.tls.is_some(),
            underscores: config.underscore_headers,
            head_timeout: config.head_timeout,
            head_deadline: None,
            draining: false,
        }
    }

    /// Send requests where `destination` says, rather than where each names.
    pub(crate) fn with_destination(mut self, destination: Destination) -> Self {
        self.destination = destination;
        self
    }

    pub(crate) fn receive(&mut self, cx: &mut Context, now: Instant, data: Bytes, out: &mut Vec<CodecOutput<ClientError>>) {
        if self.finished || matches!(self.recv, Recv::Stopped) && !self.tunnel {
            return;
        }
        take_in(&mut self.buf, data);
        if !self.tunnel {
            self.parse(cx, out);
            self.arm_head_deadline(now);
        }
        let_go(&mut self.buf);
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.head_deadline.filter(|_| !self.finished)
    }

    /// The clock reached `now`: a request head still incomplete past its deadline is answered
    /// 408, and the connection closes.
    pub(crate) fn handle_timeout(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<CodecOutput<ClientError>>) {
        if self.finished || self.head_deadline.is_none_or(|d| d > now) {
            return;
        }
        self.head_deadline = None;
        self.reject(cx, ClientError::HeadTimeout { secs: self.head_timeout.as_secs_f64() }, out);
    }

    /// Start the head deadline at the first byte of a request head; stop it once there is no
    /// head to wait for.
    fn arm_head_deadline(&mut self, now: Instant) {
        let waiting = matches!(self.recv, Recv::Head) && self.current.is_none() && !self.buf.is_empty();
        if !waiting || self.finished {
            self.head_deadline = None;
        } else if self.head_deadline.is_none() {
            self.head_deadline = Some(now + self.head_timeout);
        }
    }

    pub(crate) fn receive_eof(&mut self, cx: &mut Context, out: &mut Vec<CodecOutput<ClientError>>) {
        let flow = self.current.as_ref().map(|c| c.flow);
        if self.eof {
            // Closed a second time: a write failed too, so the client is gone for good.
            self.finished = true;
            out.push(CodecOutput::Closed { flow, error: None });
            return;
        }
        self.eof = true;
        match &mut self.recv {
            Recv::Head => {
                if !self.buf.is_empty() {
                    cx.log(LogLevel::Debug, format!("client {} closed mid-request-head", cx.client.peer));
                }
                self.finished = true;
            }
            Recv::Body(_) => self.body_eof(out),
            // The request is in: answer it, then close.
            Recv::Done => {}
            Recv::Stopped => self.finished = true,
        }
    }

    /// The client closed with the current request body still to come: unless its framing
    /// ends there, the request is cut short.
    fn body_eof(&mut self, out: &mut Vec<CodecOutput<ClientError>>) {
        let Recv::Body(reader) = &mut self.recv else { return };
        if reader.read_eof().is_err() {
            self.recv = Recv::Stopped;
            self.finished = true;
            out.push(CodecOutput::Closed { flow: self.current.as_ref().map(|c| c.flow), error: None });
        }
    }

    /// Whether the connection is between requests: no exchange in progress, nothing of the
    /// next head received. A head on its way is bounded by the head timeout instead.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.recv, Recv::Head) && self.current.is_none() && self.buf.is_empty()
    }

    /// The proxy is shutting down: the exchange in progress, or the one whose request is
    /// arriving, is the connection's last. Its response says `Connection: close` unless its
    /// head has gone already, and the connection finishes with it.
    pub(crate) fn drain(&mut self) {
        self.draining = true;
        if let Some(current) = &mut self.current {
            current.keep_alive = false;
        }
    }

    /// Whether the connection should be closed now.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    pub(crate) fn current_flow(&self) -> Option<FlowId> {
        self.current.as_ref().map(|c| c.flow)
    }

    /// Whether reading more from the client is useful: there is a head or body to read, or
    /// room to hold a pipelined request until its turn.
    pub(crate) fn wants_read(&self) -> bool {
        if self.finished || self.eof {
            return false;
        }
        match self.recv {
            Recv::Head | Recv::Body(_) => true,
            Recv::Done => self.buf.len() < self.limits.max_head_bytes,
            Recv::Stopped => false,
        }
    }

    /// The previous exchange is over and the client has sent more: parse it.
    pub(crate) fn ready_for_next(&self) -> bool {
        matches!(self.recv, Recv::Head) && self.current.is_none() && !self.buf.is_empty() && !self.finished
    }

    pub(crate) fn next_request(&mut self, cx: &mut Context, now: Instant, out: &mut Vec<CodecOutput<ClientError>>) {
        self.parse(cx, out);
        self.arm_head_deadline(now);
    }

    /// Whether the current response body leaves as is (`Content-Length` framing), so that
    /// the driver may forward bytes into it.
    pub(crate) fn sends_raw_body(&self, flow: FlowId) -> bool {
        self.current_flow() == Some(flow) && self.send == Send::Body(Encoder::Raw)
    }

    /// As [`Http1Client::start_forward`](super::Http1Client::start_forward), for the request body.
    pub(crate) fn start_forward(&mut self, min: u64) -> Option<u64> {
        let Recv::Body(reader) = &self.recv else { return None };
        if self.forwarding != Forwarding::No {
            return None;
        }
        let len = forwardable(reader, &self.buf, min)?;
        self.forwarding = Forwarding::WaitsOnSource;
        Some(len)
    }

    /// Whether the request body is being forwarded and waits for the server to take it,
    /// rather than for the client to send more.
    pub(crate) fn forward_waits_on_server(&self) -> bool {
        self.forwarding == Forwarding::WaitsOnDestination
    }

    /// The driver forwarded `len` bytes of the request body, and holds `pending` more.
    pub(crate) fn handle_forwarded(&mut self, len: u64, pending: u64, out: &mut Vec<CodecOutput<ClientError>>) {
        let Recv::Body(reader) = &mut self.recv else { return };
        self.forwarding = Forwarding::reported(pending);
        reader.skip(len);
        if reader.remaining_length() == Some(0) {
            self.forwarding = Forwarding::No;
            let flow = self.flow();
            out.push(CodecOutput::Http(HttpEvent::RequestEnd { flow, trailers: None }));
            self.recv = Recv::Done;
            self.maybe_finish_exchange();
        }
    }

    /// What the client sent beyond the last request, for the tunnel that takes over.
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    fn parse(&mut self, cx: &mut Context, out: &mut Vec<CodecOutput<ClientError>>) {
        loop {
            match &mut self.recv {
                Recv::Head => {
                    if self.current.is_some() || self.buf.is_empty() || self.finished {
                        return;
                    }
                    match self.heads.read_request(&mut self.buf, &self.limits) {
                        Ok(None) => {
                            if self.eof {
                                self.finished = true;
                            }
                            return;
                        }
                        Ok(Some(head)) => self.start_request(cx, head, out),
                        Err(e) => return self.reject(cx, ClientError::Head(e), out),
                    }
                }
                Recv::Body(reader) => match reader.read(&mut self.buf) {
                    // A pipelined request whose body the client closed before sending.
                    Ok(None) if self.eof => return self.body_eof(out),
                    Ok(None) => return,
                    Ok(Some(BodyEvent::Data(data))) => {
                        let flow = self.flow();
                        out.push(CodecOutput::Http(HttpEvent::RequestData { flow, data }));
                    }
                    Ok(Some(BodyEvent::End { trailers })) => {
                        let flow = self.flow();
                        let trailers = allowed_trailers(trailers);
                        out.push(CodecOutput::Http(HttpEvent::RequestEnd { flow, trailers }));
                        self.recv = Recv::Done;
                        self.maybe_finish_exchange();
                    }
                    Err(e) => return self.reject(cx, ClientError::Body(e), out),
                },
                Recv::Done | Recv::Stopped => return,
            }
        }
    }

    fn start_request(&mut self, cx: &mut Context, mut head: RequestHead, out: &mut Vec<CodecOutput<ClientError>>) {
        let connect = head.method.eq_ignore_ascii_case("CONNECT");
        let framing = if connect {
            Ok(Framing::Empty)
        } else {
            wire::request_framing(&head)
        };
        let framing = match framing {
            Ok(framing) => framing,
            Err(e) => return self.reject(cx, ClientError::Head(e), out),
        };
        if let Err(e) = head.headers.screen_underscores(self.underscores) {
            return self.reject(cx, e.into(), out);
        }
        if head.target.contains('#') {
            // No form of request-target has a fragment (RFC 9112 section 3.2); a next hop could
            // cut the target there or keep it.
            return self.reject(cx, ClientError::Fragment, out);
        }
        if let (true, Some(message)) = (connect, self.destination.refuses_connect()) {
            return self.reject(cx, ClientError::ConnectRefused(message), out);
        }
        let origin_form = head.target.starts_with('/') || head.target == "*" && !connect;
        let mut absolute_authority = None;
        let parsed = match self.destination.target() {
            Some((scheme, target)) if origin_form => Ok((scheme, target.host.clone(), target.port, std::mem::take(&mut head.target))),
            // Reverse mode: an absolute-form target must be well formed, but only its path
            // picks anything; its authority, like a `Host`, names us and never the upstream.
            Some((scheme, target)) if self.destination.is_fixed() => parse_target(&head.method, &head.target).map(|(s, host, port, path)| {
                absolute_authority = Some(Request::authority_of(s, &host, port));
                (scheme, target.host.clone(), target.port, path)
            }),
            _ => parse_target(&head.method, &head.target),
        };
        let (scheme, host, port, path) = match parsed {
            Ok(parts) => parts,
            Err(error) => return self.reject(cx, error, out),
        };
        if scheme == Scheme::Https && !connect && !self.tls_upstream {
            return self.reject(cx, ClientError::HttpsWithoutTls, out);
        }
        // RFC 9112 section 3.2: one valid Host, and one at all in an HTTP/1.1 origin-form
        // request, which names no host of its own. An absolute-form target replaces Host below.
        let host_error = {
            let mut hosts = head.headers.get_all("host");
            match (hosts.next(), hosts.next()) {
                (Some(_), Some(_)) => Some(ClientError::HostTwice),
                (Some(host), None) if !is_valid_host(host) => Some(ClientError::BadHost),
                (None, _) if origin_form && !connect && head.version == Version::Http11 => Some(ClientError::NoHost),
                _ => None,
            }
        };
        if let Some(error) = host_error {
            return self.reject(cx, error, out);
        }
        let keep_alive = match head.version {
            // A parsed head is never SOCKS5's.
            Version::Http11 | Version::Http2 | Version::Socks5 => !head.headers.has_token("connection", "close"),
            Version::Http10 => {
                head.headers.has_token("connection", "keep-alive")
                    || head.headers.has_token("proxy-connection", "keep-alive")
            }
        };
        let upgrade = head.headers.has_token("connection", "upgrade") && head.headers.contains("upgrade");
        let mut headers = head.headers;
        canonical_length(&mut headers, framing);
        strip_hop_by_hop(&mut headers, upgrade);
        if upgrade {
            headers.append("connection", "Upgrade");
        }
        let mut request = Request {
            method: head.method,
            scheme,
            host,
            port,
            path,
            version: head.version,
            headers,
            body: None,
            trailers: None,
        };
        if let Some(authority) = absolute_authority {
            // Reverse mode: the client named us with it, as with a Host (RFC 9112 section
            // 3.2.2: the absolute-form target wins over any Host field). The HTTP layer routes
            // by it, then names the backend.
            request.headers.insert("host", authority);
        } else if !connect && (!origin_form || !request.headers.contains("host")) && !self.destination.is_fixed() {
            // RFC 9112 section 3.2.2: the absolute-form target wins over any Host field. An
            // origin-form request keeps the Host its client chose.
            let authority = request.authority();
            request.headers.insert("host", authority);
        }
        if self.add_via {
            let via = format!("{} sansproxy", if head.version == Version::Http10 { "1.0" } else { "1.1" });
            request.headers.append("via", via);
        }
        let flow = cx.next_flow_id();
        let end_stream = matches!(framing, Framing::Empty | Framing::Length(0));
        let keep_alive = keep_alive && !self.draining;
        self.current = Some(Exchange { flow, version: head.version, head: request.method == "HEAD", connect, keep_alive });
        self.send = Send::Idle;
        self.recv = if end_stream { Recv::Done } else { Recv::Body(BodyReader::new(framing, self.limits)) };
        out.push(CodecOutput::Http(HttpEvent::RequestHeaders { flow, request, end_stream }));
    }

    /// Answer a request the client got wrong with the status its error calls for, and close
    /// the connection.
    fn reject(&mut self, cx: &mut Context, error: ClientError, out: &mut Vec<CodecOutput<ClientError>>) {
        let (status, message) = (error.status(), error.to_string());
        cx.log(LogLevel::Info, format!("client {}: {} ({})", cx.client.peer, message, status));
        if self.send == Send::Idle {
            let reason = reason_phrase(status);
            let mut response = Response::error(status, &message);
            response.headers.insert("connection", "close");
            let mut dst = BytesMut::new();
            wire::write_response_head(&mut dst, Version::Http11, status, reason, &response.headers);
            if let Some(body) = &response.body {
                dst.extend_from_slice(body);
            }
            cx.send(self.conn, dst.freeze());
            self.send = Send::Done;
        }
        self.recv = Recv::Stopped;
        self.finished = true;
        out.push(CodecOutput::Error { flow: self.current.as_ref().map(|c| c.flow), error });
    }

    /// Write a response event for the current exchange.
    pub(crate) fn send(&mut self, cx: &mut Context, event: HttpEvent) {
        let Some(current) = &self.current else { return };
        if event.flow() != current.flow {
            // A response for an exchange that is over (the client was answered already).
            return;
        }
        match event {
            HttpEvent::InterimResponse { response, .. } if current.version == Version::Http11 && self.send == Send::Idle => {
                let mut dst = BytesMut::new();
                wire::write_response_head(&mut dst, Version::Http11, response.status, &response.reason, &response.headers);
                cx.send(self.conn, dst.freeze());
            }
            HttpEvent::ResponseHeaders { response, end_stream, .. } => self.send_head(cx, response, end_stream),
            HttpEvent::ResponseData { data, .. } => {
                if let Send::Body(encoder) = self.send {
                    encoder.data(cx, self.conn, data);
                }
            }
            HttpEvent::ResponseEnd { trailers, .. } => {
                if let Send::Body(encoder) = self.send {
                    encoder.end(cx, self.conn, trailers.as_ref());
                    self.response_done();
                }
            }
            _ => {}
        }
    }

    fn send_head(&mut self, cx: &mut Context, mut response: Response, end_stream: bool) {
        if self.send != Send::Idle {
            return;
        }
        let closing = self.eof || self.recv_incomplete();
        let Some(current) = &mut self.current else { return };
        let mut headers = std::mem::take(&mut response.headers);
        let status = response.status;
        let no_body = current.head || status == 204 || status == 304 || (100..200).contains(&status);
        let tunnel = status == 101 || (current.connect && (200..300).contains(&status));
        let mut encoder = None;
        if status == 204 || (100..200).contains(&status) || tunnel {
            // RFC 9110 sections 8.6 and 9.3.6: no Content-Length in these, whoever built them.
            headers.remove("content-length");
        }
        if tunnel {
            if status == 101 {
                headers.insert("connection", "Upgrade");
            }
        } else if let Some(body) = &response.body {
            if !no_body || current.head {
                headers.insert("content-length", body.len().to_string());
            }
        } else if end_stream && !no_body {
            // Nothing follows the head: say so whatever fields came with it, or an HTTP/1.1
            // client reads on until the connection closes and takes the next response for
            // this body (the Content-Length may be gone because `Connection` named it).
            headers.insert("content-length", "0");
        } else if !end_stream && !no_body {
            encoder = Some(if headers.contains("content-length") {
                Encoder::Raw
            } else if current.version == Version::Http11 {
                headers.append("transfer-encoding", "chunked");
                Encoder::Chunked
            } else {
                // Only the end of the connection can delimit this body for an HTTP/1.0 client.
                current.keep_alive = false;
                Encoder::Raw
            });
        }
        if !tunnel {
            if closing {
                current.keep_alive = false;
            }
            if !current.keep_alive {
                headers.insert("connection", "close");
            } else if current.version == Version::Http10 {
                headers.insert("connection", "keep-alive");
            }
        }
        let reason = if response.reason.is_empty() { reason_phrase(status) } else { &response.reason };
        // Sized exactly, head and a small body, so that it freezes without another allocation.
        let body_len = match (&response.body, no_body) {
            (Some(body), false) if body.len() <= 16 * 1024 => body.len(),
            _ => 0,
        };
        let mut dst = BytesMut::with_capacity(wire::response_head_len(status, reason, &headers) + body_len);
        wire::write_response_head(&mut dst, Version::Http11, status, reason, &headers);
        match (&response.body, no_body) {
            (Some(body), false) if body.len() <= 16 * 1024 => {
                dst.extend_from_slice(body);
                cx.send(self.conn, dst.freeze());
            }
            (Some(body), false) => {
                cx.send(self.conn, dst.freeze());
                cx.send(self.conn, body.clone());
            }
            _ => cx.send(self.conn, dst.freeze()),
        }
        if tunnel {
            self.tunnel = true;
            self.recv = Recv::Stopped;
            self.send = Send::Done;
            return;
        }
        match encoder {
            Some(encoder) => self.send = Send::Body(encoder),
            None => self.response_done(),
        }
    }

    /// Whether the current request has not been read to its end.
    fn recv_incomplete(&self) -> bool {
        matches!(self.recv, Recv::Body(_) | Recv::Stopped)
    }

    fn response_done(&mut self) {
        self.send = Send::Done;
        self.maybe_finish_exchange();
    }

    /// Both the request and its response are complete: get ready for the next request, or
    /// finish the connection.
    fn maybe_finish_exchange(&mut self) {
        if self.send != Send::Done || !matches!(self.recv, Recv::Done) {
            return;
        }
        let keep_alive = self.current.as_ref().is_some_and(|c| c.keep_alive);
        self.current = None;
        if !keep_alive {
            self.recv = Recv::Stopped;
            self.finished = true;
            return;
        }
        self.recv = Recv::Head;
        self.send = Send::Idle;
        if self.eof && self.buf.is_empty() {
            self.finished = true;
        }
    }

    fn flow(&self) -> FlowId {
        self.current.as_ref().map_or(FlowId(0), |c| c.flow)
    }
}

/// Split a proxy request's target into scheme, host, port and origin-form path.
fn parse_target(method: &str, target: &str) -> Result<(Scheme, String, u16, String), ClientError> {
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(target, None).ok_or_else(|| ClientError::ConnectTarget(target.into()))?;
        return Ok((Scheme::Https, host, port, String::new()));
    }
    let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(target, "http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(target, "https://") {
        (Scheme::Https, rest)
    } else if target.starts_with('/') || target == "*" {
        return Err(ClientError::NotAbsolute);
    } else {
        return Err(ClientError::Target(target.into()));
    };
    // The caller refused targets with a fragment.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(ClientError::UserInfo);
    }
    let (host, port) = split_authority(authority, Some(scheme.default_port()))
        .ok_or_else(|| ClientError::TargetHost(target.into()))?;
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok((scheme, host, port, path))
}

/// A `Host` value of the form `host[:port]` that [`split_authority`] accepts.
fn is_valid_host(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| authority_parts(v, Some(80)).is_some())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}




#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("GET", "http://Example.com:8080/a?b").unwrap(),
            (Scheme::Http, "example.com".into(), 8080, "/a?b".into())
        );
        assert_eq!(parse_target("GET", "http://a.test").unwrap().3, "/");
        assert_eq!(parse_target("GET", "http://a.test?x=1").unwrap().3, "/?x=1");
        assert_eq!(parse_target("CONNECT", "[::1]:443").unwrap().1, "::1");
        assert!(parse_target("CONNECT", "a.test").is_err());
        assert!(parse_target("GET", "/index.html").is_err());
        assert!(parse_target("GET", "http://u:p@a.test/").is_err());
        assert!(parse_target("GET", "http://a.test:99999/").is_err());
        assert!(parse_target("GET", "http://a b/").is_err());
        assert!(parse_target("GET", "http://a.test:80:80/").is_err());
        assert!(parse_target("GET", "http://a.test:/").is_err());
        assert!(parse_target("GET", "http://::1/").is_err());
        assert!(parse_target("GET", "http://[::1]:8080/").is_ok());
        assert!(parse_target("CONNECT", "::1:443").is_err());
    }

    #[test]
    fn host_values() {
        for ok in ["a.test", "A.Test:8080", "127.0.0.1", "[::1]", "[::1]:443", "a_b.test"] {
            assert!(is_valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", " ", "a.test:", "a.test:0", "a.test:x", "a.test:80:80", "a b", "a.test,b.test", "u@a.test", "a.test/",
            "[::1", "::1", "[a.test]", "a.test:99999", "ä.test",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
