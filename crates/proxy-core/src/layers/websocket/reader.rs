//! Frames from one peer, in the order the peer sent them: data as it arrives (a frame's payload
//! may come in many pieces, handed on without waiting for the rest), control frames whole.
//! What breaks RFC 6455's framing rules is an error carrying the close code it earns.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{apply_mask, FrameHeader, OpCode, MAX_HEADER};
use super::{CloseCode, WsError};
use crate::websocket::{MessageKind, Peer};

/// One step of what a peer sent.
#[derive(Debug)]
pub enum Item {
    /// Payload of a data message, as it was on the wire (still masked, if it was).
    Data {
        /// Set on the first piece of a message: its kind, and whether it is compressed.
        start: Option<(MessageKind, bool)>,
        /// The last piece of the message.
        fin: bool,
        /// The payload bytes, as they arrived.
        raw: Bytes,
        /// The frame's key and where `raw` starts in the frame's payload.
        mask: Option<([u8; 4], u64)>,
    },
    /// A whole control frame, unmasked.
    Control {
        /// Close, ping or pong.
        opcode: OpCode,
        /// Its payload, at most 125 bytes.
        payload: Bytes,
    },
}

impl Item {
    /// The payload as the sender meant it: unmasked.
    pub fn unmasked(raw: &Bytes, mask: Option<([u8; 4], u64)>) -> Bytes {
        match mask {
            None => raw.clone(),
            Some((key, offset)) => {
                let mut plain = BytesMut::from(&raw[..]);
                apply_mask(key, offset, &mut plain);
                plain.freeze()
            }
        }
    }
}

/// The frame being read.
#[derive(Debug)]
struct Current {
    header: FrameHeader,
    /// Payload bytes read so far.
    read: u64,
    /// A control frame's payload, collected until whole.
    control: Option<BytesMut>,
    /// The first piece of this frame is yet to go out (so that an empty frame still yields one).
    fresh: bool,
}

/// Reads the frames one peer sends, checking RFC 6455's framing rules as they come.
#[derive(Debug)]
pub struct Reader {
    from: Peer,
    /// Negotiated `permessage-deflate`: RSV1 marks a compressed message.
    deflate: bool,
    input: VecDeque<Bytes>,
    /// Bytes in `input`.
    len: usize,
    current: Option<Current>,
    /// A data message has begun and not ended.
    in_message: bool,
}

impl Reader {
    /// A reader of what `from` sends (clients must mask their frames, servers must not).
    pub fn new(from: Peer) -> Self {
        Self { from, deflate: false, input: VecDeque::new(), len: 0, current: None, in_message: false }
    }

    /// Whether `permessage-deflate` was negotiated, so that RSV1 may mark a compressed
    /// message.
    pub fn set_deflate(&mut self, on: bool) {
        self.deflate = on;
    }

    /// Takes in bytes the peer sent, to be read by [`next_item`](Self::next_item).
    pub fn receive(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.input.push_back(data);
        }
    }

    /// The next thing the peer sent, once enough of it is here.
    pub fn next_item(&mut self) -> Result<Option<Item>, WsError> {
        loop {
            let Some(current) = &mut self.current else {
                if !self.start_frame()? {
                    return Ok(None);
                }
                continue;
            };
            let remaining = current.header.len - current.read;
            if let Some(collected) = &mut current.control {
                let want = remaining as usize;
                if self.len < want {
                    return Ok(None);
                }
                let mut chunk = take(&mut self.input, &mut self.len, want);
                if let Some(key) = current.header.mask {
                    let mut plain = BytesMut::from(&chunk[..]);
                    apply_mask(key, 0, &mut plain);
                    chunk = plain.freeze();
                }
                collected.extend_from_slice(&chunk);
                let payload = std::mem::take(collected).freeze();
                let opcode = current.header.opcode;
                self.current = None;
                return Ok(Some(Item::Control { opcode, payload }));
            }
            if remaining > 0 && self.len == 0 {
                return Ok(None);
            }
            let front = self.input.front().map_or(0, Bytes::len);
            let n = remaining.min(front as u64) as usize;
            let raw = take(&mut self.input, &mut self.len, n);
            let offset = current.read;
            current.read += n as u64;
            let frame_done = current.read == current.header.len;
            let header = current.header;
            let start = if current.fresh && header.opcode != OpCode::Continuation {
                let kind = if header.opcode == OpCode::Text { MessageKind::Text } else { MessageKind::Binary };
                Some((kind, header.rsv1))
            } else {
                None
            };
            current.fresh = false;
            let fin = frame_done && header.fin;
            if frame_done {
                self.current = None;
                if fin {
                    self.in_message = false;
                }
            }
            let mask = header.mask.map(|key| (key, offset));
            return Ok(Some(Item::Data { start, fin, raw, mask }));
        }
    }

    /// Parse the next frame header if it is all here; check it against the peer's role and the
    /// message in progress.
    fn start_frame(&mut self) -> Result<bool, WsError> {
        let mut head = [0u8; MAX_HEADER];
        let n = peek(&self.input, &mut head);
        let Some((header, used)) = FrameHeader::parse(&head[..n], self.deflate).map_err(|e| WsError::protocol(e.to_string()))? else {
            return Ok(false);
        };
        match (self.from, header.mask.is_some()) {
            (Peer::Client, false) => return Err(WsError::protocol("unmasked frame from the client")),
            (Peer::Server, true) => return Err(WsError::protocol("masked frame from the server")),
            _ => {}
        }
        match header.opcode {
            OpCode::Continuation if !self.in_message => {
                return Err(WsError::protocol("continuation frame outside a fragmented message"));
            }
            OpCode::Text | OpCode::Binary if self.in_message => {
                return Err(WsError::protocol("new data frame inside a fragmented message"));
            }
            OpCode::Continuation if header.rsv1 => {
                return Err(WsError::protocol("RSV1 set on a continuation frame"));
            }
            OpCode::Text | OpCode::Binary => self.in_message = !header.fin,
            _ => {}
        }
        take(&mut self.input, &mut self.len, used);
        let control = header.opcode.is_control().then(BytesMut::new);
        self.current = Some(Current { header, read: 0, control, fresh: true });
        Ok(true)
    }
}

/// Copy up to `out.len()` bytes from the front of `input` without consuming them.
fn peek(input: &VecDeque<Bytes>, out: &mut [u8]) -> usize {
    let mut n = 0;
    for chunk in input {
        let k = chunk.len().min(out.len() - n);
        out[n..n + k].copy_from_slice(&chunk[..k]);
        n += k;
        if n == out.len() {
            break;
        }
    }
    n
}

/// Remove `n` bytes from the front of `input`: a slice of the first chunk when it holds them
/// (no copy), joined otherwise.
fn take(input: &mut VecDeque<Bytes>, len: &mut usize, n: usize) -> Bytes {
    if n == 0 {
        return Bytes::new();
    }
    *len -= n;
    let front = input.front_mut().expect("taking buffered bytes");
    if front.len() >= n {
        let out = front.split_to(n);
        if front.is_empty() {
            input.pop_front();
        }
        return out;
    }
    let mut out = BytesMut::with_capacity(n);
    while out.len() < n {
        let front = input.front_mut().expect("taking buffered bytes");
        let k = front.len().min(n - out.len());
        out.extend_from_slice(&front[..k]);
        front.advance(k);
        if front.is_empty() {
            input.pop_front();
        }
    }
    out.freeze()
}

/// Check a close frame's payload (RFC 6455 section 5.5.1 and 7.4): empty, or a valid code and
/// a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !CloseCode::is_valid_on_wire(code) {
                return Err(WsError::protocol(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::invalid_data("close reason is not valid UTF-8"))?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut out = vec![opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        let mut p = payload.to_vec();
        apply_mask(key, 0, &mut p);
        out.extend(p);
        out
    }

    fn all(reader: &mut Reader) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    #[test]
    fn a_frame_in_pieces_yields_pieces_that_unmask_to_the_payload() {
        let frame = masked(0x81, b"Hello, world", [9, 8, 7, 6]);
        let mut reader = Reader::new(Peer::Client);
        let mut text = Vec::new();
        for byte in frame {
            reader.receive(Bytes::from(vec![byte]));
            for item in all(&mut reader) {
                let Item::Data { raw, mask, .. } = item else { panic!() };
                text.extend_from_slice(&Item::unmasked(&raw, mask));
            }
        }
        assert_eq!(text, b"Hello, world");
        assert!(reader.current.is_none() && !reader.in_message);
    }

    #[test]
    fn ping_between_fragments() {
        let mut bytes = masked(0x01, b"Hel", [1, 2, 3, 4]);
        bytes.extend(masked(0x89, b"are you there", [5, 6, 7, 8]));
        bytes.extend(masked(0x80, b"lo", [1, 1, 1, 1]));
        let mut reader = Reader::new(Peer::Client);
        reader.receive(bytes.into());
        let items = all(&mut reader);
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Item::Data { start: Some((MessageKind::Text, false)), fin: false, .. }));
        assert!(matches!(&items[1], Item::Control { opcode: OpCode::Ping, payload } if &payload[..] == b"are you there"));
        assert!(matches!(&items[2], Item::Data { start: None, fin: true, .. }));
    }

    #[test]
    fn role_and_sequence_errors() {
        let cases: [(Peer, Vec<u8>, &str); 5] = [
            (Peer::Client, vec![0x81, 0x00], "unmasked frame from the client"),
            (Peer::Server, masked(0x81, b"", [0; 4]), "masked frame from the server"),
            (Peer::Server, vec![0x80, 0x00], "continuation frame outside"),
            (Peer::Server, vec![0x01, 0x00, 0x81, 0x00], "new data frame inside"),
            (Peer::Server, vec![0x8a, 0x7e, 0x00, 0x80], "control frame with 128 bytes"),
        ];
        for (from, bytes, expected) in cases {
            let mut reader = Reader::new(from);
            reader.receive(bytes.into());
            let error = loop {
                match reader.next_item() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("no error for {expected}"),
                    Err(e) => break e,
                }
            };
            assert_eq!(error.code, CloseCode::PROTOCOL_ERROR);
            assert!(error.message.contains(expected), "{} vs {expected}", error.message);
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b"").unwrap(), None);
        assert_eq!(parse_close(b"\x03\xe8bye").unwrap(), Some((1000, "bye".into())));
        assert_eq!(parse_close(b"\x0f\xa1").unwrap(), Some((4001, String::new())));
        assert_eq!(parse_close(b"\x03").unwrap_err().code, CloseCode::PROTOCOL_ERROR);
        for bad in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let payload = bad.to_be_bytes();
            assert_eq!(parse_close(&payload).unwrap_err().code, CloseCode::PROTOCOL_ERROR, "{bad}");
        }
        assert_eq!(parse_close(b"\x03\xe8\xff").unwrap_err().code, CloseCode::INVALID_DATA);
    }
}
