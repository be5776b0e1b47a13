//! Streams of several client connections on one upstream HTTP/2 connection at once: a
//! *carrier*.
//!
//! A client connection's upstream connections are its own while it lives, and an idle one
//! moves to the next client connection when it ends (`upstreams`). That serves HTTP/1.1,
//! one exchange at a time, but an HTTP/2 connection can carry a hundred exchanges at once,
//! whoever they come from. So an HTTP/2 connection a client connection parks is not parked:
//! the driver runs it on its own, as a [`Connection`](crate::Connection) made with
//! [`Connection::carrier`](crate::Connection::carrier), and it carries streams for whichever
//! client connections join it, up to the server's stream limit.
//!
//! Only the streams are shared. A client connection that needs a server asks the driver as
//! before ([`Command::Reuse`]); where the request may go over HTTP/2 and a carrier to that
//! destination has room, the answer is [`Event::Joined`]: the connection id it asked for now
//! names one stream on that carrier. Its layer drives the exchange as over any server
//! connection, through a stand-in codec ([`Joined`](joined::Joined)) that puts each step of
//! the request in a [`Carried`] message ([`Command::Carry`]) and takes the response's steps
//! from the carrier the same way ([`Event::Carried`]). The carrier sees each stream under the
//! tag the driver gave it ([`StreamTag`], [`Event::Streams`], [`Command::StreamOut`]), and
//! its layer ([`CarrierLayer`]) is the HTTP/2 codec alone: no hooks, no flows of its own,
//! since every decision about an exchange stays with the client connection it belongs to.
//!
//! A stream carries one exchange at a time, one after another: once an exchange is over the
//! stream waits a moment ([`Config::joined_stream_idle`](crate::Config::joined_stream_idle))
//! for the client connection's next request to the same server, which takes it without
//! joining anew. Every message says which of its stream's exchanges it is about, and one
//! about an exchange that is over is dropped.
//!
//! What each side may hold stays bounded as on one connection, though the two run apart
//! (on two tasks, maybe two threads) and what is between them is in the driver's channels: a
//! request body goes on only while what the client side sent and the carrier has not yet
//! passed into the connection ([`Message::Consumed`]) is under the high-water mark, and a
//! response body is handed out only while the client side says it has room
//! ([`Message::Reading`]) and what it has not yet said arrived ([`Message::Taken`]) is under
//! the high-water mark. Bytes not handed out stay in the stream's window, which the server
//! then cannot refill: the server is held back as it would be by one client.

pub(crate) mod joined;
pub(crate) mod message;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::error::ServerError;
use super::event::{CodecOutput, HttpEvent, StreamReset};
use super::pool::{ServerCodec, ServerConn};
use crate::command::Command;
use crate::context::Context;
use crate::event::Event;
use crate::ids::{ConnId, FlowId};
use crate::layer::Layer;
use crate::layers::http::h2::H2Client;
use message::{Carried, Message, StreamTag};

/// A stream the carrier carries: the flow its codec knows it by, how much of its request
/// body went in, and how much of its response body the client side may take.
struct Carrying {
    flow: FlowId,
    /// The client side's number for the exchange, put on everything sent about it.
    exchange: u32,
    /// Request body bytes the client side sent.
    given: u64,
    /// How many of those the client side was told went on.
    reported: u64,
    /// The client side has room for the response body.
    reading: bool,
    /// Response body bytes handed to the client side, and how many it said arrived: what is
    /// between the two is on its way (in the driver's channel), and stays under the
    /// high-water mark (plus what one poll of the codec hands out, at most a window).
    handed: u64,
    taken: u64,
    /// Whether the codec was last told the stream may read (`None`: not yet, the codec
    /// having no stream for it).
    told_room: Option<bool>,
}

/// A map keyed by one of the proxy's own counters (a stream tag, a flow id): a key is hashed
/// by one multiplication, which spreads consecutive numbers over the table (nobody outside
/// picks them, so nobody can make them collide). A carrier's streams come and go with every
/// exchange: a `BTreeMap` allocated and freed nodes as they did.
type Counted<K, V> = HashMap<K, V, BuildHasherDefault<Spread>>;

#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The layer of a carrier: one upstream HTTP/2 connection, its streams those of client
/// connections (see the module docs).
pub(crate) struct CarrierLayer {
    conn: ConnId,
    server: ServerConn,
    streams: Counted<StreamTag, Carrying>,
    tags: Counted<FlowId, StreamTag>,
    /// How many streams the driver was last told the connection takes.
    capacity: Option<usize>,
    /// When the connection, carrying nothing, closes.
    idle_deadline: Option<Instant>,
    /// The connection ended (or is ending): it takes no stream.
    closed: bool,
    /// How long it stays open carrying nothing.
    idle_timeout: Duration,
}

impl CarrierLayer {
    /// Carry streams on `server`, the HTTP/2 connection `conn` of `cx`.
    pub(crate) fn new(cx: &mut Context, conn: ConnId, mut server: ServerConn, idle_timeout: Duration) -> Self {
        server.rename(conn);
        server.flows.clear();
        cx.set_self_limiting(conn);
        Self {
            conn,
            server,
            streams: Counted::default(),
            tags: Counted::default(),
            capacity: None,
            idle_deadline: None,
            closed: false,
            idle_timeout,
        }
    }

    fn codec(&mut self) -> &mut H2Client {
        match &mut self.server.codec {
            ServerCodec::H2(codec) => codec,
            _ => unreachable!("a carrier is made of an HTTP/2 connection"),
        }
    }

    fn out(cx: &mut Context, stream: StreamTag, exchange: u32, message: Message) {
        cx.push(Command::StreamOut { stream, message: Carried { exchange, message } });
    }

    fn client_says(&mut self, cx: &mut Context, tag: StreamTag, message: Carried) {
        let Carried { exchange, message } = message;
        // What the client side says is about the exchange under way (it says nothing more
        // about one it released or reset, and its next exchange starts with a head).
        fn current(streams: &mut Counted<StreamTag, Carrying>, tag: StreamTag, exchange: u32) -> Option<&mut Carrying> {
            streams.get_mut(&tag).filter(|c| c.exchange == exchange)
        }
        match message {
            Message::Request(event) => {
                let mut event = *event;
                let flow = match (&event, current(&mut self.streams, tag, exchange)) {
                    (_, Some(carrying)) => {
                        if let HttpEvent::RequestData { data, .. } = &event {
                            carrying.given += data.len() as u64;
                        }
                        carrying.flow
                    }
                    (HttpEvent::RequestHeaders { flow, request, .. }, None) => {
                        if self.closed || self.codec().is_closed() {
                            // Never sent: the client side may send it again elsewhere.
                            let reset = StreamReset {
                                reason: crate::layers::http::h2::engine::Reason::REFUSED_STREAM,
                                remote: false,
                                unprocessed: true,
                            };
                            return Self::out(
                                cx,
                                tag,
                                exchange,
                                Message::Output(Box::new(CodecOutput::Reset {
                                    flow: *flow,
                                    reset,
                                })),
                            );
                        }
                        if self.streams.contains_key(&tag) {
                            // An exchange the client side never said was over: it is given up.
                            self.gone(tag);
                        }
                        let given = request.body.as_ref().map_or(0, |b| b.len() as u64);
                        let flow = cx.next_flow_id();
                        self.streams.insert(tag, Carrying { flow, exchange, given, reported: 0, reading: true, handed: 0, taken: 0, told_room: None });
                        self.tags.insert(flow, tag);
                        flow
                    }
                    // The rest of a stream already given up.
                    (_, None) => return,
                };
                event.set_flow(flow);
                self.codec().send(event);
            }
            Message::Reading(reading) => {
                if let Some(carrying) = current(&mut self.streams, tag, exchange) {
                    carrying.reading = reading;
                }
            }
            Message::Taken(n) => {
                if let Some(carrying) = current(&mut self.streams, tag, exchange) {
                    carrying.taken = carrying.taken.max(n);
                }
            }
            Message::Release | Message::Reset if current(&mut self.streams, tag, exchange).is_none() => {}
            Message::Release => {
                if let Some(carrying) = self.forget(tag) {
                    self.codec().release(carrying.flow);
                }
            }
            Message::Reset => self.gone(tag),
            Message::Output(_) | Message::Consumed(_) => {}
        }
    }

    /// The client side of `tag` is gone: its stream, if still open, is reset.
    fn gone(&mut self, tag: StreamTag) {
        if let Some(carrying) = self.forget(tag) {
            self.codec().reset(carrying.flow);
        }
    }

    fn forget(&mut self, tag: StreamTag) -> Option<Carrying> {
        let carrying = self.streams.remove(&tag)?;
        self.tags.remove(&carrying.flow);
        Some(carrying)
    }

    /// Send what the codec produced to the streams it is for; the connection's end goes to
    /// every stream.
    fn route(&mut self, cx: &mut Context, output: CodecOutput<ServerError>) {
        let flow = match &output {
            CodecOutput::Http(event) => Some(event.flow()),
            CodecOutput::Error { flow, .. } => *flow,
            CodecOutput::Reset { flow, .. } => Some(*flow),
            CodecOutput::Closed { .. } => None,
        };
        let Some(flow) = flow else {
            self.end(cx, &output);
            return;
        };
        let Some(&tag) = self.tags.get(&flow) else { return };
        let Some(carrying) = self.streams.get_mut(&tag) else { return };
        if let CodecOutput::Http(HttpEvent::ResponseData { data, .. }) = &output {
            carrying.handed += data.len() as u64;
        }
        let exchange = carrying.exchange;
        if matches!(output, CodecOutput::Error { .. } | CodecOutput::Reset { .. }) {
            // The codec forgot the stream already.
            self.forget(tag);
        }
        Self::out(cx, tag, exchange, Message::Output(Box::new(output)));
    }

    /// The connection ended (`output` says how, or failed): every stream is told, and the
    /// connection is closed.
    fn end(&mut self, cx: &mut Context, output: &CodecOutput<ServerError>) {
        self.closed = true;
        for (tag, carrying) in std::mem::take(&mut self.streams) {
            let copy = match output {
                CodecOutput::Error { error, .. } => CodecOutput::Error { flow: None, error: error.clone() },
                CodecOutput::Closed { error, .. } => CodecOutput::Closed { flow: None, error: error.clone() },
                _ => CodecOutput::Closed { flow: None, error: None },
            };
            Self::out(cx, tag, carrying.exchange, Message::Output(Box::new(copy)));
        }
        self.tags.clear();
        if cx.has_conn(self.conn) {
            cx.close(self.conn, false);
        }
    }

    /// After every event: what the connection has for the streams, what went on of their
    /// request bodies, how many streams it takes, and whether it has been idle too long.
    fn settle(&mut self, cx: &mut Context, now: Instant) {
        if !self.closed && !cx.has_conn(self.conn) {
            // Its TLS failed under it: the transport closed it.
            self.end(cx, &CodecOutput::Closed { flow: None, error: None });
        }
        if !self.closed {
            let credit = cx.config.high_water as u64;
            let mut outputs = Vec::new();
            if let ServerCodec::H2(codec) = &mut self.server.codec {
                // Only what changed costs the codec a look-up.
                for carrying in self.streams.values_mut() {
                    let room = carrying.reading && carrying.handed - carrying.taken < credit;
                    if carrying.told_room != Some(room) && codec.set_reading(carrying.flow, room) {
                        carrying.told_room = Some(room);
                    }
                }
                codec.poll(cx, &mut outputs);
            }
            for output in outputs {
                self.route(cx, output);
            }
        }
        if !self.closed && !cx.is_congested(self.conn) {
            let mut consumed = Vec::new();
            for (tag, carrying) in &mut self.streams {
                if carrying.given <= carrying.reported {
                    // No body sent since the last report: nothing more can have gone on.
                    continue;
                }
                let backlog = match &self.server.codec {
                    ServerCodec::H2(codec) => codec.backlog(carrying.flow) as u64,
                    ServerCodec::H1(_) | ServerCodec::Joined(_) => 0,
                };
                let went = carrying.given.saturating_sub(backlog);
                if went > carrying.reported {
                    carrying.reported = went;
                    consumed.push((*tag, carrying.exchange, went));
                }
            }
            for (tag, exchange, went) in consumed {
                Self::out(cx, tag, exchange, Message::Consumed(went));
            }
        }
        let capacity = if self.closed { 0 } else { self.codec().max_streams() };
        if self.capacity != Some(capacity) {
            self.capacity = Some(capacity);
            cx.push(Command::Capacity { streams: capacity });
        }
        if self.closed || !self.streams.is_empty() {
            self.idle_deadline = None;
        } else if self.idle_deadline.is_none() {
            self.idle_deadline = Some(now + self.idle_timeout);
        }
    }
}

impl Layer for CarrierLayer {
    fn handle(&mut self, cx: &mut Context, now: Instant, event: Event) {
        match event {
            Event::DataReceived { conn, data } if conn == self.conn && !self.closed => self.codec().receive(data),
            Event::ConnectionClosed { conn } if conn == self.conn && !self.closed => self.codec().receive_eof(),
            Event::Streams { messages } => {
                for (stream, message) in messages {
                    match message {
                        Some(message) => self.client_says(cx, stream, message),
                        None => self.gone(stream),
                    }
                }
            }
            Event::Wakeup if self.idle_deadline.is_some_and(|at| at <= now) && self.streams.is_empty() => {
                // Idle too long: it goes, with a GOAWAY, and takes no more streams.
                cx.log(crate::command::LogLevel::Debug, format!("{}: idle HTTP/2 connection closed", self.server.pool_key()));
                self.codec().shutdown();
                self.settle(cx, now);
                self.end(cx, &CodecOutput::Closed { flow: None, error: None });
            }
            _ => {}
        }
        self.settle(cx, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.idle_deadline
    }
}

impl<E> CodecOutput<E> {
    /// The same output, for `flow` where it names one.
    pub(crate) fn for_flow(self, flow: FlowId) -> Self {
        match self {
            Self::Http(mut event) => {
                event.set_flow(flow);
                Self::Http(event)
            }
            Self::Error { flow: Some(_), error } => Self::Error { flow: Some(flow), error },
            Self::Reset { reset, .. } => Self::Reset { flow, reset },
            Self::Closed { flow: Some(_), error } => Self::Closed { flow: Some(flow), error },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::joined::Joined;
    use super::*;
    use crate::flow::{ClientInfo, Request, Response, Version};
    use crate::ids::Scheme;
    use crate::headers::Headers;
    use crate::Config;

    fn get(flow: u64) -> HttpEvent {
        let request = Request {
            method: "GET".into(),
            scheme: Scheme::Http,
            host: "a.test".into(),
            port: 80,
            path: "/".into(),
            version: Version::Http2,
            headers: Headers::new(),
            body: None,
            trailers: None,
        };
        HttpEvent::RequestHeaders { flow: FlowId(flow), request, end_stream: true }
    }

    fn head(exchange: u32) -> Carried {
        let response = Response::new(200, Headers::new(), "");
        let output = CodecOutput::Http(HttpEvent::ResponseHeaders { flow: FlowId(99), response, end_stream: false });
        Carried { exchange, message: Message::Output(Box::new(output)) }
    }

    fn sent(cx: &mut Context) -> Vec<String> {
        std::iter::from_fn(|| cx.poll_command()).map(|c| format!("{c:?}")).collect()
    }

    #[test]
    fn a_stream_carries_one_exchange_after_another_and_drops_what_was_late_for_the_last() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut cx = Context::new(Arc::new(Config::default()), ClientInfo::new(addr, addr));
        let mut joined = Joined::new(ConnId(7));
        assert!(joined.is_idle());
        joined.send(&mut cx, get(1));
        assert!(!joined.is_idle());
        let first = sent(&mut cx);
        assert!(first[0].contains("Carried(1: Request"), "{first:?}");
        let output = joined.receive(head(1)).expect("the exchange's response");
        assert!(matches!(output, CodecOutput::Http(HttpEvent::ResponseHeaders { flow: FlowId(1), .. })), "named for its flow");
        joined.release(&mut cx);
        assert!(joined.is_idle());
        assert!(sent(&mut cx)[0].contains("Carried(1: Release)"));
        // The next request takes the stream: a new exchange, counted afresh.
        joined.send(&mut cx, get(2));
        assert!(sent(&mut cx)[0].contains("Carried(2: Request"));
        let late = Carried { exchange: 1, message: Message::Consumed(100) };
        assert!(joined.receive(late).is_none());
        assert_eq!(joined.backlog(), 0, "what went on of the last request says nothing of this one");
        assert!(joined.receive(head(1)).is_none(), "a late answer of the last exchange goes nowhere");
        let output = joined.receive(head(2)).expect("this exchange's response");
        assert!(matches!(output, CodecOutput::Http(HttpEvent::ResponseHeaders { flow: FlowId(2), .. })));
    }
}
