//! What a stream on a carrier and the client connection it carries for say to each other
//! ([`Carried`]), and the tag the driver gives each stream ([`StreamTag`]). Commands and events
//! carry them, so they depend on nothing of the layers that send them.

use std::fmt;

use crate::layers::http::error::ServerError;
use crate::layers::http::event::{CodecOutput, HttpEvent};

/// One step of one stream between a client connection and the carrier that carries it. The
/// driver moves it from one to the other as it is.
pub struct Carried {
    /// Which of the stream's exchanges it belongs to: a stream carries one exchange after
    /// another, and what was on its way for one that is over goes no further.
    pub(crate) exchange: u32,
    pub(crate) message: Message,
}

impl Carried {
    /// Whether its stream carries an exchange once this message from the client side has
    /// gone, `busy` saying whether it did before: a request's head starts one (a stream that
    /// waited between exchanges carries one again), a release or a reset ends the client
    /// side's part in it (the stream waits for the next, or leaves).
    pub fn busy_after(&self, busy: bool) -> bool {
        match &self.message {
            Message::Request(event) if matches!(**event, HttpEvent::RequestHeaders { .. }) => true,
            Message::Release | Message::Reset => false,
            _ => busy,
        }
    }
}

impl fmt::Debug for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exchange = self.exchange;
        match &self.message {
            Message::Request(event) => write!(f, "Carried({exchange}: Request {:?})", event.flow()),
            Message::Reading(reading) => write!(f, "Carried({exchange}: Reading {reading})"),
            Message::Taken(n) => write!(f, "Carried({exchange}: Taken {n})"),
            Message::Release => write!(f, "Carried({exchange}: Release)"),
            Message::Reset => write!(f, "Carried({exchange}: Reset)"),
            Message::Output(output) => write!(f, "Carried({exchange}: Output {output:?})"),
            Message::Consumed(n) => write!(f, "Carried({exchange}: Consumed {n})"),
        }
    }
}

/// What a [`Carried`] says.
pub(crate) enum Message {
    /// To the carrier: a step of the request (its head first). Boxed, as `Output` is: events
    /// and commands carry messages, and stay small.
    Request(Box<HttpEvent>),
    /// To the carrier: whether the client side has room for more of the response body (the
    /// stream's window opens, or stays shut).
    Reading(bool),
    /// To the carrier: this many bytes of the response body have reached the client side, in
    /// all. The carrier hands out at most the high-water mark more than that.
    Taken(u64),
    /// To the carrier: the exchange is over on both sides.
    Release,
    /// To the carrier: give the stream up (the server is told, `CANCEL`).
    Reset,
    /// To the client side: what the connection's codec produced for the stream (its flow is
    /// the carrier's name for it; the client side puts its own).
    Output(Box<CodecOutput<ServerError>>),
    /// To the client side: this many bytes of the request body have gone into the
    /// connection, in all.
    Consumed(u64),
}

/// A stream of a carrier, as the driver names it when a client connection joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamTag(pub u64);
