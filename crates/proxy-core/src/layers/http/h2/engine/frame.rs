//! HTTP/2 frames (RFC 9113 section 4 and 6): the nine-byte header every frame starts with,
//! the checks of each type's layout, and writing the frames we send straight into the
//! connection's output buffer.

use bytes::{BufMut, BytesMut};

use super::Reason;

/// Every frame's header: a 24-bit payload length, a type, flags and a stream id.
pub(super) const HEADER_LEN: usize = 9;
/// What a client sends before its first frame.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The smallest maximum frame size a peer may announce, and the one in force until it does.
pub(super) const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest flow-control window (2^31 - 1).
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window every stream and the connection start with (section 6.9.2).
pub(super) const DEFAULT_WINDOW: i64 = 65_535;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

pub(super) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(super) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub(super) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub(super) const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// A frame header as read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl Head {
    /// The header at the start of `bytes`, if all nine bytes are there.
    pub(super) fn parse(bytes: &[u8]) -> Option<Head> {
        let b: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (section 4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The part of a DATA or HEADERS payload that is neither padding nor (for HEADERS) priority:
/// its range in `payload`, or the connection error a bad pad length is (section 6.1).
pub(super) fn unpadded(head: &Head, payload: &[u8]) -> Result<(usize, usize), Reason> {
    let mut start = 0;
    let mut end = payload.len();
    if head.has(PADDED) {
        let pad = usize::from(*payload.first().ok_or(Reason::FRAME_SIZE_ERROR)?);
        start = 1;
        if pad >= end {
            return Err(Reason::PROTOCOL_ERROR);
        }
        end -= pad;
    }
    if head.kind == HEADERS && head.has(PRIORITY_FLAG) {
        start += 5;
    }
    if start > end {
        return Err(if head.has(PADDED) { Reason::PROTOCOL_ERROR } else { Reason::FRAME_SIZE_ERROR });
    }
    Ok((start, end))
}

/// The stream a HEADERS frame's priority block says it depends on, if it has one.
pub(super) fn dependency(head: &Head, payload: &[u8]) -> Option<u32> {
    if head.kind != HEADERS || !head.has(PRIORITY_FLAG) {
        return None;
    }
    let at = usize::from(head.has(PADDED));
    let b = payload.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
}

/// A four-byte big-endian number at the start of `bytes` (callers check the length).
pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Append a frame header.
pub(super) fn put_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_slice(&head_bytes(len, kind, flags, stream));
}

fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(0).to_be_bytes();
    let id = (stream & 0x7fff_ffff).to_be_bytes();
    [len[1], len[2], len[3], kind, flags, id[0], id[1], id[2], id[3]]
}

pub(super) fn put_settings(out: &mut BytesMut, settings: &[(u16, u32)]) {
    put_head(out, settings.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in settings {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub(super) fn put_settings_ack(out: &mut BytesMut) {
    put_head(out, 0, SETTINGS, ACK, 0);
}

pub(super) fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment & 0x7fff_ffff);
}

pub(super) fn put_rst(out: &mut BytesMut, stream: u32, reason: Reason) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(reason.0);
}

pub(super) fn put_ping(out: &mut BytesMut, ack: bool, payload: &[u8; 8]) {
    put_head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.put_slice(payload);
}

pub(super) fn put_goaway(out: &mut BytesMut, last_stream: u32, reason: Reason) {
    put_head(out, 8, GOAWAY, 0, 0);
    out.put_u32(last_stream & 0x7fff_ffff);
    out.put_u32(reason.0);
}

/// A DATA frame's header; the payload follows.
pub(super) fn put_data_head(out: &mut BytesMut, stream: u32, len: usize, end_stream: bool) {
    put_head(out, len, DATA, if end_stream { END_STREAM } else { 0 }, stream);
}

/// A header block that `encode` writes straight into `out`, after room for its HEADERS
/// frame's header: one frame, or, if it comes out larger than `max_frame`, moved into
/// HEADERS and CONTINUATION frames (section 4.3).
pub(super) fn put_header_block_with(out: &mut BytesMut, stream: u32, end_stream: bool, max_frame: usize, encode: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    // Room for a usual head at once, rather than growing as fields are added.
    out.reserve(HEADER_LEN + 256);
    out.put_bytes(0, HEADER_LEN);
    encode(out);
    let len = out.len() - start - HEADER_LEN;
    if len <= max_frame {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        out[start..start + HEADER_LEN].copy_from_slice(&head_bytes(len, HEADERS, flags, stream));
    } else {
        let block = out.split_off(start + HEADER_LEN);
        out.truncate(start);
        put_header_block(out, stream, &block, end_stream, max_frame);
    }
}

/// A header block as HEADERS and CONTINUATION frames of at most `max_frame` bytes each.
pub(super) fn put_header_block(out: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    put_head(out, first.len(), HEADERS, flags, stream);
    out.put_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { END_HEADERS } else { 0 };
        put_head(out, chunk.len(), CONTINUATION, flags, stream);
        out.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_block_is_split_into_continuations_at_the_frame_size() {
        let mut out = BytesMut::new();
        put_header_block(&mut out, 3, &[7; 40], true, 16);
        let mut at = &out[..];
        let mut seen = Vec::new();
        while let Some(head) = Head::parse(at) {
            seen.push((head.kind, head.flags, head.len, head.stream));
            at = &at[HEADER_LEN + head.len..];
        }
        assert_eq!(seen, [(HEADERS, END_STREAM, 16, 3), (CONTINUATION, 0, 16, 3), (CONTINUATION, END_HEADERS, 8, 3)]);
    }

    #[test]
    fn padding_and_priority_are_cut_off_and_bad_pad_lengths_refused() {
        let head = Head { len: 0, kind: HEADERS, flags: PADDED | PRIORITY_FLAG, stream: 1 };
        // Pad length 2, priority (5 bytes), block "ab", 2 bytes of padding.
        let payload = [2, 0, 0, 0, 3, 16, b'a', b'b', 0, 0];
        assert_eq!(unpadded(&head, &payload), Ok((6, 8)));
        assert_eq!(dependency(&head, &payload), Some(3));
        assert_eq!(unpadded(&head, &[9, 0, 0]), Err(Reason::PROTOCOL_ERROR));
        let data = Head { len: 0, kind: DATA, flags: PADDED, stream: 1 };
        assert_eq!(unpadded(&data, &[]), Err(Reason::FRAME_SIZE_ERROR));
        assert_eq!(unpadded(&data, &[0]), Ok((1, 1)));
    }
}
