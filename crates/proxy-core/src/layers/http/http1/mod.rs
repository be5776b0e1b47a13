//! HTTP/1.x codecs: [`Http1Server`] faces the client (we are its server), [`Http1Client`]
//! faces an upstream server (we are its client). As in h11, each keeps the two directions of
//! its connection as separate state machines.
//!
//! Parsing strips hop-by-hop fields, so hooks and the other side see only end-to-end ones;
//! sending adds the framing (`Content-Length` or `Transfer-Encoding: chunked`) and connection
//! management fields that the receiving connection needs.

mod client;
mod server;
pub(crate) mod wire;

use bytes::{Bytes, BytesMut};

pub(crate) use client::Http1Client;
pub(crate) use server::Http1Server;
pub use wire::Http1Error;

use crate::config::Config;
use crate::context::Context;
use crate::headers::Headers;
use crate::ids::ConnId;

/// Where a body handed to the driver ([`Command::Forward`](crate::Command::Forward)) stands,
/// as the driver's last report said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarding {
    /// The codec reads the body itself.
    No,
    /// The driver holds nothing: the forward waits for the source to send more.
    WaitsOnSource,
    /// The driver holds bytes the destination has not taken.
    WaitsOnDestination,
}

impl Forwarding {
    /// A forward's state after the driver reported holding `pending` bytes.
    fn reported(pending: u64) -> Self {
        if pending > 0 {
            Forwarding::WaitsOnDestination
        } else {
            Forwarding::WaitsOnSource
        }
    }
}

/// Received pieces at least this big are adopted rather than copied.
const ADOPT_MIN: usize = 16 * 1024;

/// Append received bytes to a connection's buffer. Into an empty buffer, bytes that nobody
/// else references are adopted without a copy: the common case for bodies, which the
/// parser then splits off again.
fn take_in(buf: &mut BytesMut, data: Bytes) {
    // Small reads are copied into the buffer's spare room: adopting them would cost an
    // allocation each, as the driver shares one buffer among them.
    if buf.is_empty() && data.len() >= ADOPT_MIN {
        *buf = BytesMut::from(data);
    } else {
        buf.extend_from_slice(&data);
    }
}

/// Let go of `buf` once everything in it is read: an idle connection keeps no buffer, and
/// one adopted from a large read would keep all of that read's allocation.
fn let_go(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// How much of a body may go to the driver to forward: all that is still to come, if the body
/// is `Content-Length` framed, at least `min` bytes remain, and none of them sits in `buf`.
fn forwardable(reader: &wire::BodyReader, buf: &BytesMut, min: u64) -> Option<u64> {
    let remaining = reader.remaining_length()?;
    (buf.is_empty() && remaining >= min.max(1)).then_some(remaining)
}

pub(crate) fn limits(config: &Config) -> wire::Limits {
    wire::Limits { max_head_bytes: config.max_head_bytes, max_headers: config.max_headers }
}

/// Remove the fields that describe one connection rather than the message (RFC 9110
/// section 7.6.1), including those the `Connection` field names. `keep_upgrade` keeps
/// `Upgrade` for a protocol switch. (`Proxy-Authorization` is the HTTP layer's to check and
/// remove, whatever the client's version: see `proxy_auth`.)
fn strip_hop_by_hop(headers: &mut Headers, keep_upgrade: bool) {
    // The `Connection` values, shared rather than copied: this runs for every message, and
    // nearly always finds one value or none, which takes no list.
    let (first, more): (Option<Bytes>, Vec<Bytes>) = {
        let mut values = headers.get_all_shared("connection").cloned();
        (values.next(), values.collect())
    };
    let listed = || {
        first.iter().chain(&more).flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
    };
    headers.retain(|name, value| {
        let fixed = [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"transfer-encoding",
        ];
        if fixed.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            return false;
        }
        if name.eq_ignore_ascii_case(b"te") {
            return value.trim_ascii().eq_ignore_ascii_case(b"trailers");
        }
        if name.eq_ignore_ascii_case(b"upgrade") {
            return keep_upgrade;
        }
        !listed().any(|l| name.eq_ignore_ascii_case(l) && !l.eq_ignore_ascii_case(b"upgrade"))
    });
}

/// Fields that may not travel in a trailer section (RFC 9110 section 6.5.1): they frame, route,
/// authenticate or describe the message, and a later hop that merges trailers into the header
/// section could act on them after the fact. The list is Go's `httpguts.ValidTrailerHeader`
/// plus `Upgrade`; names starting with `If-` go too.
const NOT_IN_TRAILERS: [&[u8]; 22] = [
    b"authorization",
    b"cache-control",
    b"connection",
    b"content-encoding",
    b"content-length",
    b"content-range",
    b"content-type",
    b"expect",
    b"host",
    b"keep-alive",
    b"max-forwards",
    b"pragma",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"proxy-connection",
    b"range",
    b"realm",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"www-authenticate",
];

/// Received trailers without the fields that may not be trailers; `None` if none are left.
fn allowed_trailers(trailers: Option<Headers>) -> Option<Headers> {
    let mut trailers = trailers?;
    trailers.retain(|name, _| {
        let conditional = name.len() > 3 && name[..3].eq_ignore_ascii_case(b"if-");
        !conditional && !NOT_IN_TRAILERS.iter().any(|n| name.eq_ignore_ascii_case(n))
    });
    (!trailers.is_empty()).then_some(trailers)
}

/// Write a message's `Content-Length` back as the one canonical field the next hop can read
/// only one way: `5, 5`, `005` or the field twice become `5`. Without a body (a response to
/// HEAD, a 304) the length describes the resource: kept likewise, or dropped if it is no
/// length. (A request framed `Empty` has no `Content-Length` to begin with.)
fn canonical_length(headers: &mut Headers, framing: wire::Framing) {
    let length = match framing {
        wire::Framing::Length(n) => Ok(n),
        wire::Framing::Empty => wire::content_length(headers),
        wire::Framing::Chunked | wire::Framing::UntilClose => return,
    };
    match length {
        Ok(n) => {
            // Mostly it is canonical already: one field, the plain number.
            let mut digits = [0u8; 20];
            let canonical = wire::radix(n, 10, &mut digits);
            let as_is = {
                let mut fields = headers.get_all("content-length");
                matches!((fields.next(), fields.next()), (Some(only), None) if only == canonical)
            };
            if !as_is {
                headers.insert("content-length", Bytes::copy_from_slice(canonical));
            }
        }
        Err(_) => {
            headers.remove("content-length");
        }
    }
}


/// How a body leaves on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    /// As is: `Content-Length` framing, or until the connection closes.
    Raw,
    Chunked,
}

impl Encoder {
    fn data(self, cx: &mut Context, conn: ConnId, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match self {
            Self::Raw => cx.send(conn, data),
            Self::Chunked => {
                let mut header = BytesMut::with_capacity(18);
                wire::write_chunk_header(&mut header, data.len());
                cx.send(conn, header.freeze());
                cx.send(conn, data);
                cx.send(conn, Bytes::from_static(b"\r\n"));
            }
        }
    }

    fn end(self, cx: &mut Context, conn: ConnId, trailers: Option<&Headers>) {
        if self == Self::Chunked {
            let mut tail = BytesMut::with_capacity(64);
            tail.extend_from_slice(wire::LAST_CHUNK);
            wire::write_fields(&mut tail, trailers.unwrap_or(&Headers::new()));
            cx.send(conn, tail.freeze());
        }
    }
}
