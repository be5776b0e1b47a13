//! The client connection's side of a stream on a carrier ([`Joined`]): the codec its HTTP
//! layer drives the exchange through, in place of a connection of its own.

use super::message::{Carried, Message};
use crate::command::Command;
use crate::context::Context;
use crate::ids::{ConnId, FlowId};
use crate::layers::http::error::ServerError;
use crate::layers::http::event::{CodecOutput, HttpEvent, StreamReset};

/// The client connection's side of a stream on a carrier: it stands where a server
/// connection's codec would, for one exchange at a time. Between exchanges it is idle, and
/// the client connection's next request to the same server may take it rather than join a
/// carrier anew (see `HttpLayer::release_server`).
pub(crate) struct Joined {
    conn: ConnId,
    /// The exchange under way or last carried, counted from 1.
    exchange: u32,
    /// The flow it carries, once the request's head has gone, until the exchange is over.
    flow: Option<FlowId>,
    /// Request body bytes sent, and how many of those the carrier has passed on.
    sent: u64,
    consumed: u64,
    /// What the carrier was last told about the response body: whether the client side has
    /// room, and how much of it has arrived (`received`, told as `told`).
    reading: Option<bool>,
    received: u64,
    told: u64,
    /// The carrier said something about the stream.
    heard: bool,
}

impl Joined {
    pub(crate) fn new(conn: ConnId) -> Self {
        // The carrier starts a stream reading.
        Self { conn, exchange: 0, flow: None, sent: 0, consumed: 0, reading: Some(true), received: 0, told: 0, heard: false }
    }

    fn tell(&self, cx: &mut Context, message: Message) {
        cx.push(Command::Carry { conn: self.conn, message: Carried { exchange: self.exchange, message } });
    }

    /// Between exchanges: the next request may take it.
    pub(crate) fn is_idle(&self) -> bool {
        self.flow.is_none()
    }

    /// Send a step of the request. A head starts the stream's next exchange, from nothing.
    pub(crate) fn send(&mut self, cx: &mut Context, event: HttpEvent) {
        match &event {
            HttpEvent::RequestHeaders { flow, request, .. } => {
                *self = Self { exchange: self.exchange.wrapping_add(1), flow: Some(*flow), ..Self::new(self.conn) };
                self.sent = request.body.as_ref().map_or(0, |b| b.len() as u64);
            }
            HttpEvent::RequestData { data, .. } => self.sent += data.len() as u64,
            _ => {}
        }
        self.tell(cx, Message::Request(Box::new(event)));
    }

    /// Open or hold shut the response body's window, if that changes anything, and say how
    /// much of the body arrived once that frees a good part of the carrier's credit.
    pub(crate) fn set_reading(&mut self, cx: &mut Context, reading: bool) {
        if self.flow.is_none() {
            return;
        }
        if self.reading != Some(reading) {
            self.reading = Some(reading);
            self.tell(cx, Message::Reading(reading));
        }
        if reading && self.received - self.told >= cx.config.high_water as u64 / 4 {
            self.told = self.received;
            self.tell(cx, Message::Taken(self.received));
        }
    }

    /// Request body bytes sent that the carrier has not passed on yet.
    pub(crate) fn backlog(&self) -> usize {
        usize::try_from(self.sent.saturating_sub(self.consumed)).unwrap_or(usize::MAX)
    }

    /// The exchange is over on both sides.
    pub(crate) fn release(&mut self, cx: &mut Context) {
        if self.flow.take().is_some() {
            self.tell(cx, Message::Release);
        }
    }

    /// Give the stream up.
    pub(crate) fn reset(&mut self, cx: &mut Context) {
        if self.flow.take().is_some() {
            self.tell(cx, Message::Reset);
        }
    }

    /// A message from the carrier: what the codec made of the server's bytes for this
    /// stream, named for the flow it carries. One about an earlier exchange (sent before the
    /// carrier heard that it was over) is dropped.
    pub(crate) fn receive(&mut self, message: Carried) -> Option<CodecOutput<ServerError>> {
        if message.exchange != self.exchange {
            return None;
        }
        match message.message {
            Message::Consumed(n) => {
                self.consumed = self.consumed.max(n);
                None
            }
            Message::Output(output) => {
                let output = *output;
                self.heard = true;
                if let CodecOutput::Http(HttpEvent::ResponseData { data, .. }) = &output {
                    self.received += data.len() as u64;
                }
                self.flow.map(|flow| output.for_flow(flow))
            }
            _ => None,
        }
    }

    /// The carrier went away (the driver closed the stream). Having said nothing about the
    /// stream, it never took its request (a carrier tells every stream it carries how it
    /// ended before it goes): the request may go again elsewhere.
    pub(crate) fn carrier_gone(&mut self) -> CodecOutput<ServerError> {
        match self.flow.filter(|_| !self.heard) {
            Some(flow) => {
                let reset = StreamReset { reason: crate::layers::http::h2::engine::Reason::REFUSED_STREAM, remote: false, unprocessed: true };
                CodecOutput::Reset { flow, reset }
            }
            None => CodecOutput::Closed { flow: None, error: None },
        }
    }
}
