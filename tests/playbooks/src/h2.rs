//! HTTP/2 peers for scenarios: a real HTTP/2 client or server (the core's own HTTP/2
//! engine, driven over memory as the core drives it) that a [`Pump`](crate::pump::Pump)
//! connects to the core, and raw frames for peers that break the rules on purpose.

use bytes::Bytes;
use proxy_core::h2_engine::{ConnectionError, Engine, H2Event, RequestHead, ResponseHead, Settings, StreamKey};
use proxy_core::Headers;

pub use proxy_core::h2_engine::Reason;
pub use http::{HeaderMap, Request, Response};

/// A well-behaved HTTP/2 endpoint. Everything it was told is kept in `events`.
pub struct H2Peer {
    pub engine: Engine,
    pub events: Vec<H2Event>,
    /// A slow peer: bytes from the core wait, unread, so no window reopens.
    pub holding: bool,
    held: Vec<u8>,
    /// Streams this end answered ([`respond`](Self::respond)) or reset
    /// ([`reset`](Self::reset)), in order.
    pub answered: Vec<StreamKey>,
    /// Whether it acknowledges the other end's SETTINGS; one that does not leaves them
    /// unsettled for good. For a server only: a client's output opens with the preface,
    /// which reads as no frame.
    pub acks_settings: bool,
}

impl H2Peer {
    pub fn client() -> Self {
        Self::with(Engine::client(&Settings::default()))
    }

    pub fn server() -> Self {
        Self::server_with(&Settings::default())
    }

    /// A server advertising `settings`.
    pub fn server_with(settings: &Settings) -> Self {
        Self::with(Engine::server(settings))
    }

    fn with(engine: Engine) -> Self {
        Self { engine, events: Vec::new(), holding: false, held: Vec::new(), answered: Vec::new(), acks_settings: true }
    }

    pub(crate) fn deliver(&mut self, data: &[u8]) {
        if self.holding {
            self.held.extend_from_slice(data);
            return;
        }
        self.engine.receive(Bytes::copy_from_slice(data));
        self.events.extend(self.engine.poll());
    }

    pub(crate) fn outgoing(&mut self) -> Vec<u8> {
        self.events.extend(self.engine.poll());
        let output = self.engine.take_output().to_vec();
        if self.acks_settings {
            return output;
        }
        // Drop each SETTINGS acknowledgement. The engine hands out whole frames and sets no
        // reserved bit, so the others are written back as they were.
        let others = frames(&output).into_iter().filter(|f| !(f.kind == SETTINGS && f.flags & ACK != 0));
        others.flat_map(|f| frame(f.kind, f.flags, f.stream, &f.payload)).collect()
    }

    /// Read what waited (the peer catches up).
    pub fn release(&mut self) {
        self.holding = false;
        let held = std::mem::take(&mut self.held);
        self.deliver(&held);
    }

    /// Bytes from the core that wait unread.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Open stream `key` with `request`, as built with the `http` crate (client).
    pub fn open(&mut self, key: StreamKey, request: Request<()>, end_stream: bool) {
        self.engine.open(key, request_head(request, None), end_stream);
    }

    /// A GET for `url` on stream key `key` (client).
    pub fn get(&mut self, key: StreamKey, url: &str) {
        self.engine.open(key, request_head(Request::get(url).body(()).expect("request"), None), true);
    }

    /// A POST for `url` on `key` whose body begins with `first` and is left open (client).
    pub fn start_post(&mut self, key: StreamKey, url: &str, first: &[u8]) {
        self.engine.open(key, request_head(Request::post(url).body(()).expect("request"), None), false);
        self.engine.send_data(key, Bytes::copy_from_slice(first));
    }

    /// A POST of `body` for `url` on `key`, ended with `trailers` if given (client).
    pub fn post(&mut self, key: StreamKey, url: &str, body: &[u8], trailers: Option<HeaderMap>) {
        self.engine.open(key, request_head(Request::post(url).body(()).expect("request"), None), false);
        self.engine.send_data(key, Bytes::copy_from_slice(body));
        self.engine.finish(key, trailers.as_ref().map(headers_of));
    }

    /// Answer `stream` with `status`, `body` and `trailers` (server).
    pub fn respond(&mut self, stream: StreamKey, status: u16, body: &[u8], trailers: Option<HeaderMap>) {
        let response = Response::builder().status(status).body(()).expect("response");
        let end = body.is_empty() && trailers.is_none();
        self.answered.push(stream);
        self.engine.respond(stream, response_head(response), end);
        if !end {
            self.engine.send_data(stream, Bytes::copy_from_slice(body));
            self.engine.finish(stream, trailers.as_ref().map(headers_of));
        }
    }

    /// Reset `stream` with `reason`.
    pub fn reset(&mut self, stream: StreamKey, reason: Reason) {
        self.answered.push(stream);
        self.engine.reset(stream, reason);
    }

    /// The requests received (server) that this end has neither answered nor reset, and the
    /// other end has not reset, in order.
    pub fn unanswered(&self) -> Vec<(StreamKey, http::request::Parts)> {
        let mut requests = self.requests();
        requests.retain(|(stream, _)| !self.answered.contains(stream) && self.reset_reason(*stream).is_none());
        requests
    }

    /// The request heads received (server), in order: stream and head.
    pub fn requests(&self) -> Vec<(StreamKey, http::request::Parts)> {
        let heads = self.events.iter().filter_map(|e| match e {
            H2Event::Request { stream, head, .. } => Some((*stream, request_parts(head))),
            _ => None,
        });
        heads.collect()
    }

    /// The final response head on `stream` (client).
    pub fn response(&self, stream: StreamKey) -> Option<http::response::Parts> {
        self.events.iter().find_map(|e| match e {
            H2Event::Response { stream: s, head, .. } if *s == stream => Some(response_parts(head)),
            _ => None,
        })
    }

    /// The body received on `stream`, so far.
    pub fn body(&self, stream: StreamKey) -> Vec<u8> {
        let data = self.events.iter().filter_map(|e| match e {
            H2Event::Data { stream: s, data } if *s == stream => Some(data.to_vec()),
            _ => None,
        });
        data.flatten().collect()
    }

    /// Whether the message on `stream` ended, and with what trailers.
    pub fn ended(&self, stream: StreamKey) -> Option<Option<HeaderMap>> {
        self.events.iter().find_map(|e| match e {
            H2Event::End { stream: s, trailers } if *s == stream => Some(trailers.as_ref().map(header_map)),
            H2Event::Response { stream: s, end_stream: true, .. } if *s == stream => Some(None),
            H2Event::Request { stream: s, end_stream: true, .. } if *s == stream => Some(None),
            _ => None,
        })
    }

    /// How `stream` was reset, if it was.
    pub fn reset_reason(&self, stream: StreamKey) -> Option<Reason> {
        self.events.iter().find_map(|e| match e {
            H2Event::Reset { stream: s, reason, .. } if *s == stream => Some(*reason),
            _ => None,
        })
    }

    /// Whether the connection ended, and why.
    pub fn closed(&self) -> Option<Option<ConnectionError>> {
        self.events.iter().find_map(|e| match e {
            H2Event::Closed { error } => Some(error.clone()),
            _ => None,
        })
    }
}

/// The engine's head for `request`, with `protocol` for an extended CONNECT.
fn request_head(request: Request<()>, protocol: Option<&'static str>) -> RequestHead {
    let (parts, ()) = request.into_parts();
    let copy = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let connect = parts.method == http::Method::CONNECT && protocol.is_none();
    RequestHead {
        method: copy(parts.method.as_str()),
        scheme: parts.uri.scheme_str().map(copy),
        authority: parts.uri.authority().map(|a| copy(a.as_str())),
        path: (!connect).then(|| copy(parts.uri.path_and_query().map_or("/", |p| p.as_str()))),
        protocol: protocol.map(copy),
        fields: headers_of(&parts.headers),
    }
}

fn response_head(response: Response<()>) -> ResponseHead {
    ResponseHead { status: response.status().as_u16(), fields: headers_of(response.headers()) }
}

/// A request head as the `http` crate holds it, for scenarios to look at.
fn request_parts(head: &RequestHead) -> http::request::Parts {
    let mut uri = http::Uri::builder();
    if let Some(scheme) = &head.scheme {
        uri = uri.scheme(&scheme[..]);
    }
    if let Some(authority) = &head.authority {
        uri = uri.authority(&authority[..]);
    }
    if let Some(path) = &head.path {
        uri = uri.path_and_query(&path[..]);
    }
    let mut request = Request::new(());
    *request.method_mut() = http::Method::from_bytes(&head.method).expect("method");
    *request.uri_mut() = uri.build().expect("uri");
    *request.headers_mut() = header_map(&head.fields);
    request.into_parts().0
}

fn response_parts(head: &ResponseHead) -> http::response::Parts {
    let mut response = Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(head.status).expect("status");
    *response.headers_mut() = header_map(&head.fields);
    response.into_parts().0
}

fn headers_of(map: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        headers.append(Bytes::copy_from_slice(name.as_str().as_bytes()), Bytes::copy_from_slice(value.as_bytes()));
    }
    headers
}

fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        map.append(http::HeaderName::from_bytes(name).expect("name"), http::HeaderValue::from_bytes(value).expect("value"));
    }
    map
}

/// Trailers from `pairs`.
pub fn trailers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().expect("value"));
    }
    map
}

// Raw frames, for peers that misbehave.

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// The client preface and an empty SETTINGS frame.
pub fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend((stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `GET http://{authority}{path}`, from the static table and literals.
pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
    // :method GET, :scheme http (static indices 2 and 6).
    let mut block = vec![0x82, 0x86];
    // :path and :authority as literals without indexing, names from the static table.
    for (index, value) in [(4u8, path), (1, authority)] {
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// An HPACK block of `fields` exactly as given, pseudo-headers included, in order: each a
/// literal without indexing with a literal name, nothing Huffman-coded. Any name or value
/// goes, for peers that break the field rules.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        field(&mut block, name.as_bytes(), value.as_bytes());
    }
    block
}

/// Append one field to an HPACK block, as [`block`] does: for bytes a `&str` cannot hold.
pub fn field(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0x00);
    for string in [name, value] {
        integer(block, 7, string.len());
        block.extend_from_slice(string);
    }
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1), flags left zero.
fn integer(block: &mut Vec<u8>, n: u32, mut value: usize) {
    let max = (1 << n) - 1;
    if value < max {
        block.push(value as u8);
        return;
    }
    block.push(max as u8);
    value -= max;
    while value >= 128 {
        block.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    block.push(value as u8);
}

/// A RST_STREAM frame.
pub fn rst(stream: u32, reason: Reason) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &u32::from(reason).to_be_bytes())
}

/// A frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<Reason> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let code = self.payload.get(at..at + 4)?;
        Some(Reason::from(u32::from_be_bytes(code.try_into().ok()?)))
    }
}

/// The frames in what a server sent (whole frames only).
pub fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push(Frame { kind: bytes[3], flags: bytes[4], stream, payload: bytes[9..9 + len].to_vec() });
        bytes = &bytes[9 + len..];
    }
    out
}

impl H2Peer {
    /// An extended CONNECT (RFC 8441) for a WebSocket to `url` on `key`, with `headers`
    /// (client). The stream stays open for the frames.
    pub fn websocket(&mut self, key: StreamKey, url: &str, headers: &[(&str, &str)]) {
        let mut request = Request::builder().method("CONNECT").uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.engine.open(key, request_head(request.body(()).expect("request"), Some("websocket")), false);
    }

    /// A server that takes WebSockets as streams (RFC 8441's
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
    pub fn websocket_server() -> Self {
        Self::with(Engine::server(&Settings { connect_protocol: true, ..Settings::default() }))
    }

    /// Accept the WebSocket asked for on `stream`: `200` with `headers`, the stream left open
    /// for frames (server).
    pub fn accept_websocket(&mut self, stream: StreamKey, headers: &[(&str, &str)]) {
        let mut response = Response::builder().status(200);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        self.engine.respond(stream, response_head(response.body(()).expect("response")), false);
    }

    /// The `:protocol` of the request on `stream` (server).
    pub fn protocol(&self, stream: StreamKey) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            H2Event::Request { stream: s, head, .. } if *s == stream => {
                head.protocol.as_ref().map(|p| String::from_utf8_lossy(p).into_owned())
            }
            _ => None,
        })
    }

    /// Send `data` on `key` without ending it.
    /// A `CONNECT` to `authority` on `key`, the stream left open for the tunnel (client).
    pub fn connect(&mut self, key: StreamKey, authority: &str) {
        self.engine.open(key, request_head(Request::connect(authority).body(()).expect("request"), None), false);
    }

    pub fn send(&mut self, key: StreamKey, data: &[u8]) {
        self.engine.send_data(key, Bytes::copy_from_slice(data));
    }
}
