//! RFC 6455 section 5.2: the frame header, parsed from and written to memory, and masking.

use bytes::{BufMut, BytesMut};

/// What a frame carries (RFC 6455 section 5.2's opcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// The next piece of a fragmented data message.
    Continuation,
    /// The first frame of a text message (UTF-8 once whole).
    Text,
    /// The first frame of a binary message.
    Binary,
    /// The closing handshake: an optional code and reason.
    Close,
    /// A keep-alive or probe the other side answers with a pong.
    Ping,
    /// The answer to a ping (or an unsolicited heartbeat).
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Whether it is a control frame (close, ping, pong): never fragmented, at most 125
    /// bytes of payload, allowed between the frames of a data message.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    /// RSV1 (a compressed message with `permessage-deflate`).
    pub(crate) rsv1: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) len: u64,
}

/// Why a frame header is not acceptable; each is a protocol error (close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("reserved opcode {0:#x}")]
    Opcode(u8),
    #[error("reserved bits set ({0:#05b})")]
    Reserved(u8),
    #[error("compressed frame without permessage-deflate")]
    Rsv1,
    #[error("control frame with {0} bytes of payload (at most 125)")]
    ControlTooLong(u64),
    #[error("fragmented control frame")]
    ControlFragmented,
    #[error("payload length with the most significant bit set")]
    LengthBit,
}

/// Longest header: 2 bytes, 8 of extended length, 4 of mask key.
pub(crate) const MAX_HEADER: usize = 14;

impl FrameHeader {
    /// Parse a header from the start of `buf`: the header and its length, `Ok(None)` if `buf`
    /// holds only part of one. `rsv1_ok`: the peers negotiated `permessage-deflate`.
    pub(crate) fn parse(buf: &[u8], rsv1_ok: bool) -> Result<Option<(Self, usize)>, FrameError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(FrameError::Opcode(b0 & 0x0f))?;
        let rsv = (b0 >> 4) & 0b111;
        if rsv & 0b011 != 0 {
            return Err(FrameError::Reserved(rsv));
        }
        let rsv1 = rsv & 0b100 != 0;
        if rsv1 && (!rsv1_ok || opcode.is_control()) {
            return Err(FrameError::Rsv1);
        }
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            return Err(FrameError::LengthBit);
        }
        if opcode.is_control() {
            if len > 125 {
                return Err(FrameError::ControlTooLong(len));
            }
            if !fin {
                return Err(FrameError::ControlFragmented);
            }
        }
        let mask = if masked {
            let Some(key) = buf.get(at..at + 4) else { return Ok(None) };
            at += 4;
            Some(key.try_into().expect("4 bytes"))
        } else {
            None
        };
        Ok(Some((Self { fin, rsv1, opcode, mask, len }, at)))
    }

    /// Append the header to `out`.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        let b0 = (u8::from(self.fin) << 7) | (u8::from(self.rsv1) << 6) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(b0);
        if self.len < 126 {
            out.put_u8(mask_bit | self.len as u8);
        } else if self.len <= u64::from(u16::MAX) {
            out.put_u8(mask_bit | 126);
            out.put_u16(self.len as u16);
        } else {
            out.put_u8(mask_bit | 127);
            out.put_u64(self.len);
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }
}

/// XOR `data` with `key`, `data` starting `offset` bytes into the frame's payload. Masking and
/// unmasking are the same operation.
pub fn apply_mask(key: [u8; 4], offset: u64, data: &mut [u8]) {
    let key = rotate(key, offset);
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// The key that masks a payload starting `offset` bytes into a payload masked with `key`
/// exactly as `key` masked it: a frame cut in two keeps its masked bytes with this key.
pub(crate) fn rotate(key: [u8; 4], offset: u64) -> [u8; 4] {
    let mut key = key;
    key.rotate_left((offset % 4) as usize);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        FrameHeader::parse(bytes, false)
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 section 5.7: a single-frame unmasked text message "Hello".
        let (h, n) = header(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.len, n), (true, OpCode::Text, None, 5, 2));
        // A masked "Hello".
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = header(&frame).unwrap().unwrap();
        let mut payload = frame[n..].to_vec();
        apply_mask(h.mask.unwrap(), 0, &mut payload);
        assert_eq!(payload, b"Hello");
        // 256 bytes binary, 16-bit length; 64 KiB, 64-bit length.
        assert_eq!(header(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap().0.len, 256);
        let big = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(header(&big).unwrap().unwrap().0.len, 65536);
    }

    #[test]
    fn partial_headers_wait() {
        for frame in [&[0x82][..], &[0x82, 0x7e, 0x01], &[0x82, 0x7f, 0, 0], &[0x81, 0x85, 1, 2, 3]] {
            assert_eq!(header(frame), Ok(None), "{frame:?}");
        }
    }

    #[test]
    fn bad_headers() {
        assert_eq!(header(&[0x83, 0x00]), Err(FrameError::Opcode(3)));
        assert_eq!(header(&[0x8b, 0x00]), Err(FrameError::Opcode(0xb)));
        assert_eq!(header(&[0xa1, 0x00]), Err(FrameError::Reserved(0b010)));
        assert_eq!(header(&[0x91, 0x00]), Err(FrameError::Reserved(0b001)));
        assert_eq!(header(&[0xc1, 0x00]), Err(FrameError::Rsv1));
        assert_eq!(FrameHeader::parse(&[0xc9, 0x00], true), Err(FrameError::Rsv1));
        assert!(FrameHeader::parse(&[0xc1, 0x00], true).unwrap().unwrap().0.rsv1);
        assert_eq!(header(&[0x89, 0x7e, 0x00, 0x7e]), Err(FrameError::ControlTooLong(126)));
        assert_eq!(header(&[0x09, 0x00]), Err(FrameError::ControlFragmented));
        assert_eq!(header(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(FrameError::LengthBit));
    }

    #[test]
    fn write_round_trips() {
        for len in [0, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader { fin: len % 2 == 0, rsv1: true, opcode: OpCode::Binary, mask, len };
                let mut out = BytesMut::new();
                h.write(&mut out);
                assert_eq!(FrameHeader::parse(&out, true), Ok(Some((h, out.len()))));
            }
        }
    }

    #[test]
    fn masking_split_anywhere_matches_whole() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(key, 0, &mut whole);
        for cut in 0..data.len() {
            let mut tail = data[cut..].to_vec();
            apply_mask(key, cut as u64, &mut tail);
            assert_eq!(tail, whole[cut..]);
            // A new frame of the tail, masked from its start with the rotated key.
            let mut again = data[cut..].to_vec();
            apply_mask(rotate(key, cut as u64), 0, &mut again);
            assert_eq!(again, whole[cut..]);
        }
    }
}
