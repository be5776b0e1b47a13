//! `permessage-deflate` (RFC 7692): the offer as it goes to the server, what the server
//! accepted, and a decompressor per sender and a compressor per receiver.
//!
//! The proxy ends the compression on each side: it inflates what a peer sends (hooks see
//! plain payloads, text is checked as UTF-8, a decompression bomb meets the message size
//! limit) and deflates what it writes with a context of its own, so that a changed, dropped
//! or injected message never leaves a peer's decompressor out of step with its sender.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::headers::Headers;
use crate::websocket::Peer;

const NAME: &str = "permessage-deflate";
/// What a sender strips from the end of each compressed message (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the server accepted in its `101`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// The sender resets its context after each message: `[client, server]`.
    pub(crate) no_context_takeover: [bool; 2],
    /// The window each sender compresses with: `[client, server]`.
    pub(crate) max_window_bits: [u8; 2],
}

impl Params {
    /// How to read what `from` sends.
    pub(crate) fn inflater(&self, from: Peer) -> Inflater {
        let i = from.index();
        // A window as large as any sender may use reads every smaller one.
        Inflater { stream: Decompress::new_with_window_bits(false, 15), reset: self.no_context_takeover[i] }
    }

    /// How to write to `to`: as its peer would, within the window `to` reads with. zlib has no
    /// 8-bit raw window (it takes 9): to such a reader the proxy sends uncompressed messages,
    /// which RFC 7692 always allows.
    pub(crate) fn deflater(&self, to: Peer) -> Option<Deflater> {
        let i = to.other().index();
        let bits = self.max_window_bits[i];
        (bits >= 9).then(|| Deflater {
            stream: Compress::new_with_window_bits(Compression::fast(), false, bits),
            reset: self.no_context_takeover[i],
        })
    }
}

/// Keep, of the client's `Sec-WebSocket-Extensions` offer, only `permessage-deflate` (and
/// only if `deflate`): the proxy could not read frames of any other extension.
pub(crate) fn filter_offer(headers: &mut Headers, deflate: bool) {
    if !headers.contains("sec-websocket-extensions") {
        return;
    }
    let offers: Vec<String> = headers
        .get_all("sec-websocket-extensions")
        .flat_map(|v| String::from_utf8_lossy(v).split(',').map(|o| o.trim().to_owned()).collect::<Vec<_>>())
        .filter(|o| deflate && extension_name(o).eq_ignore_ascii_case(NAME))
        .collect();
    headers.remove("sec-websocket-extensions");
    if !offers.is_empty() {
        headers.append("sec-websocket-extensions", offers.join(", "));
    }
}

fn extension_name(offer: &str) -> &str {
    offer.split(';').next().unwrap_or("").trim()
}

/// What the server's `101` accepted: `Ok(None)` for no extension, an error for one the proxy
/// cannot read or parameters RFC 7692 does not allow.
pub(crate) fn accepted(headers: &Headers) -> Result<Option<Params>, String> {
    let values: Vec<String> = headers
        .get_all("sec-websocket-extensions")
        .flat_map(|v| String::from_utf8_lossy(v).split(',').map(|o| o.trim().to_owned()).collect::<Vec<_>>())
        .filter(|o| !o.is_empty())
        .collect();
    let [accepted] = values.as_slice() else {
        return match values.len() {
            0 => Ok(None),
            _ => Err(format!("the server accepted several extensions: {}", values.join(", "))),
        };
    };
    let mut parts = accepted.split(';').map(str::trim);
    let name = parts.next().unwrap_or("");
    if !name.eq_ignore_ascii_case(NAME) {
        return Err(format!("the server accepted an extension the proxy cannot read: {name}"));
    }
    let mut params = Params { no_context_takeover: [false; 2], max_window_bits: [15; 2] };
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let bits = || -> Result<u8, String> {
            value
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
                .ok_or_else(|| format!("bad {key} in the accepted permessage-deflate: {value:?}"))
        };
        match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => params.no_context_takeover[1] = true,
            "client_no_context_takeover" => params.no_context_takeover[0] = true,
            "server_max_window_bits" => params.max_window_bits[1] = bits()?,
            "client_max_window_bits" => params.max_window_bits[0] = bits()?,
            _ => return Err(format!("unknown permessage-deflate parameter {key}")),
        }
    }
    Ok(Some(params))
}

/// Decompresses what one peer sends.
pub(crate) struct Inflater {
    stream: Decompress,
    /// The sender starts each message afresh.
    reset: bool,
}

/// The compressed data is not valid deflate.
#[derive(Debug)]
pub(crate) struct BadData(pub(crate) String);

impl Inflater {
    /// Inflate from `input` into `out` until `out` holds `room` more bytes, or nothing more
    /// comes out; returns how much of `input` was used. Called again with the rest of
    /// `input` (or none) it goes on where it stopped: what is still inside the decompressor
    /// comes out even when `input` is used up.
    pub(crate) fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, room: usize) -> Result<usize, BadData> {
        let start = out.len();
        out.resize(start + room, 0);
        let (mut used, mut filled) = (0, 0);
        while filled < room {
            let (in0, out0) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .decompress(&input[used..], &mut out[start + filled..], FlushDecompress::None)
                .map_err(|e| BadData(e.to_string()));
            let status = match status {
                Ok(status) => status,
                Err(e) => {
                    out.truncate(start + filled);
                    return Err(e);
                }
            };
            let took = (self.stream.total_in() - in0) as usize;
            let gave = (self.stream.total_out() - out0) as usize;
            used += took;
            filled += gave;
            if status == Status::StreamEnd {
                out.truncate(start + filled);
                return Err(BadData("a final deflate block inside a message".into()));
            }
            if took == 0 && gave == 0 {
                break;
            }
        }
        out.truncate(start + filled);
        Ok(used)
    }

    /// The message is over: what its sender left off (the tail of its last block) is the
    /// input still to give, and with no context takeover the next message starts afresh.
    pub(crate) fn tail() -> &'static [u8] {
        &TAIL
    }

    pub(crate) fn end_message(&mut self) {
        if self.reset {
            self.stream.reset(false);
        }
    }
}

/// Compresses what the proxy writes to one peer.
pub(crate) struct Deflater {
    stream: Compress,
    reset: bool,
}

impl Deflater {
    /// Compress the next piece of a message; `fin`: its last. Each piece is flushed so that it
    /// can go out at once; the last loses the tail every message's end is sent without.
    pub(crate) fn compress(&mut self, plain: &[u8], fin: bool) -> Bytes {
        // Deflate never grows data by much: stored blocks cost 5 bytes per 64 KiB.
        let mut out = Vec::with_capacity(plain.len() + plain.len() / 1024 + 64);
        let mut used = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024));
            }
            let in0 = self.stream.total_in();
            self.stream.compress_vec(&plain[used..], &mut out, FlushCompress::Sync).expect("deflate of memory cannot fail");
            used += (self.stream.total_in() - in0) as usize;
            // The flush is complete once zlib stops with room to spare.
            if used == plain.len() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            } else if out.is_empty() {
                // zlib flushes nothing when nothing is pending (an empty message, or an empty
                // last piece): the tail the reader appends must still end an empty stored
                // block, whose header is this byte (RFC 7692 section 7.2.3.6).
                out.push(0x00);
            }
            if self.reset {
                self.stream.reset();
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> Headers {
        let mut h = Headers::new();
        h.append("sec-websocket-extensions", value.to_owned());
        h
    }

    #[test]
    fn the_offer_keeps_only_permessage_deflate() {
        let mut h = headers("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, foo");
        filter_offer(&mut h, true);
        assert_eq!(h.get("sec-websocket-extensions"), Some(&b"permessage-deflate; client_max_window_bits"[..]));
        let mut h = headers("permessage-deflate");
        filter_offer(&mut h, false);
        assert!(!h.contains("sec-websocket-extensions"));
        let mut h = headers("foo");
        filter_offer(&mut h, true);
        assert!(!h.contains("sec-websocket-extensions"));
    }

    #[test]
    fn accepted_parameters() {
        assert_eq!(accepted(&Headers::new()), Ok(None));
        let p = accepted(&headers("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")).unwrap().unwrap();
        assert_eq!(p, Params { no_context_takeover: [false, true], max_window_bits: [10, 15] });
        assert!(accepted(&headers("permessage-deflate; server_max_window_bits=7")).is_err());
        assert!(accepted(&headers("permessage-deflate; nonsense")).is_err());
        assert!(accepted(&headers("x-other")).is_err());
        assert!(accepted(&headers("permessage-deflate, permessage-deflate")).is_err());
    }

    fn round_trip(params: Params, messages: &[&[u8]]) {
        let mut deflater = params.deflater(Peer::Server).unwrap();
        let mut inflater = params.inflater(Peer::Client);
        for message in messages {
            // In three pieces, as a message streamed through would be.
            let cut = [message.len() / 3, 2 * message.len() / 3];
            let mut wire = Vec::new();
            wire.extend(deflater.compress(&message[..cut[0]], false));
            wire.extend(deflater.compress(&message[cut[0]..cut[1]], false));
            wire.extend(deflater.compress(&message[cut[1]..], true));
            assert!(!wire.ends_with(&TAIL) || message.is_empty());
            wire.extend_from_slice(Inflater::tail());
            let mut out = Vec::new();
            let mut at = 0;
            loop {
                let before = out.len();
                at += inflater.inflate(&wire[at..], &mut out, 1000).unwrap();
                if at == wire.len() && out.len() - before < 1000 {
                    break;
                }
            }
            inflater.end_message();
            assert_eq!(out, *message);
        }
    }

    #[test]
    fn compress_and_inflate_round_trip_with_and_without_context_takeover() {
        let text = "the quick brown fox jumps over the lazy dog ".repeat(500);
        let noise: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let messages: [&[u8]; 6] = [text.as_bytes(), &noise, b"", b"x", b"", text.as_bytes()];
        for reset in [false, true] {
            for bits in [9, 12, 15] {
                let params = Params { no_context_takeover: [reset; 2], max_window_bits: [bits; 2] };
                round_trip(params, &messages);
            }
        }
    }

    #[test]
    fn a_window_of_8_bits_gets_no_compressor() {
        let params = Params { no_context_takeover: [false; 2], max_window_bits: [8, 15] };
        assert!(params.deflater(Peer::Server).is_none());
        assert!(params.deflater(Peer::Client).is_some());
    }

    #[test]
    fn inflation_stops_at_the_room_given() {
        // 1 MiB of zeros compresses to about a kilobyte: a bomb in miniature.
        let params = Params { no_context_takeover: [false; 2], max_window_bits: [15; 2] };
        let mut deflater = params.deflater(Peer::Server).unwrap();
        let wire = deflater.compress(&vec![0u8; 1 << 20], true);
        assert!(wire.len() < 16 * 1024, "{}", wire.len());
        let mut inflater = params.inflater(Peer::Client);
        let mut out = Vec::new();
        inflater.inflate(&wire, &mut out, 64 * 1024).unwrap();
        assert_eq!(out.len(), 64 * 1024);
    }
}
