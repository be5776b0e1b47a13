//! The Huffman coding of string literals (RFC 7541 section 5.2, code in Appendix B).
//!
//! Encoding gathers codes in a 64-bit accumulator and writes them out 32 bits at a time.
//! Decoding walks the code tree four bits at a time: [`STEPS`], computed at compile time from
//! the code, gives for each inner node of the tree and each nibble the node reached, the
//! symbol completed on the way (codes are at least 5 bits long, so there is at most one), and
//! whether the bits read since the last symbol may stand as padding.

use bytes::{BufMut, BytesMut};

use super::table::{EOS, HUFFMAN_CODES};
use super::DecodeError;

/// The length in bytes of `src` once encoded.
pub(super) fn encoded_len(src: &[u8]) -> usize {
    let bits: u64 = src.iter().map(|&b| u64::from(HUFFMAN_CODES[usize::from(b)].1)).sum();
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

/// Appends the encoding of `src`, padded with the high bits of EOS (ones) to a whole byte.
pub(super) fn encode(src: &[u8], out: &mut BytesMut) {
    // `bits` holds the last `pending` bits not yet written (and older ones above them, which
    // are ignored). `pending` stays below 32 between symbols, and a code has at most 30 bits,
    // so nothing pending is shifted out.
    let mut bits: u64 = 0;
    let mut pending: u32 = 0;
    for &byte in src {
        let (code, len) = HUFFMAN_CODES[usize::from(byte)];
        bits = (bits << len) | u64::from(code);
        pending += u32::from(len);
        if pending >= 32 {
            pending -= 32;
            out.put_u32((bits >> pending) as u32);
        }
    }
    let pad = (8 - pending % 8) % 8;
    bits = (bits << pad) | ((1 << pad) - 1);
    pending += pad;
    while pending > 0 {
        pending -= 8;
        out.put_u8((bits >> pending) as u8);
    }
}

/// Appends the decoding of `src` to `out`. Refuses the EOS symbol, padding of more than 7
/// bits, and padding other than ones (section 5.2).
pub(super) fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    // Every symbol takes at least 5 bits.
    out.reserve(src.len().saturating_mul(8) / 5);
    let mut state = 0;
    let mut padding = true;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0xf] {
            let step = STEPS[state][usize::from(nibble)];
            if step.flags & FAIL != 0 {
                return Err(DecodeError::Huffman);
            }
            if step.flags & EMIT != 0 {
                out.push(step.symbol);
            }
            state = usize::from(step.next);
            padding = step.flags & PADDING != 0;
        }
    }
    if padding { Ok(()) } else { Err(DecodeError::Huffman) }
}

/// One move of the decoder: from an inner node of the code tree, on four bits of input.
#[derive(Clone, Copy)]
struct Step {
    /// The inner node reached (0 is the root).
    next: u8,
    /// The symbol completed, when `flags` has [`EMIT`].
    symbol: u8,
    flags: u8,
}

/// A symbol was completed.
const EMIT: u8 = 1;
/// The bits read since the last symbol are at most 7 ones: valid padding if the input ends.
const PADDING: u8 = 2;
/// The bits spelled EOS.
const FAIL: u8 = 4;

/// The code has 257 symbols, so its tree has 256 inner nodes.
const NODES: usize = 256;

/// A child in [`tree`] that is a leaf: `LEAF | symbol`.
const LEAF: u16 = 0x8000;

static STEPS: [[Step; 16]; NODES] = steps();

/// The code tree: for each inner node, its children for a 0 and a 1 bit, each the index of an
/// inner node or `LEAF | symbol`; and for each inner node whether the path to it is at most 7
/// ones, that is whether it can be where valid padding ends.
const fn tree() -> ([[u16; 2]; NODES], [bool; NODES]) {
    let mut children = [[0u16; 2]; NODES];
    let mut padding = [false; NODES];
    padding[0] = true;
    let mut nodes = 1;
    let mut symbol = 0;
    while symbol < HUFFMAN_CODES.len() {
        let (code, len) = HUFFMAN_CODES[symbol];
        let mut node = 0;
        // Inner nodes for every bit but the last, most significant first; 0 marks "no child
        // yet", as the root is no one's child. A code that is the prefix of another would
        // make `node` a leaf and fail the build on an index out of bounds.
        let mut rest = len - 1;
        while rest > 0 {
            let bit = ((code >> rest) & 1) as usize;
            if children[node][bit] == 0 {
                children[node][bit] = nodes as u16;
                padding[nodes] = padding[node] && bit == 1 && len - rest <= 7;
                nodes += 1;
            }
            node = children[node][bit] as usize;
            rest -= 1;
        }
        children[node][(code & 1) as usize] = LEAF | symbol as u16;
        symbol += 1;
    }
    (children, padding)
}

/// The decoder's transitions, from the code tree.
const fn steps() -> [[Step; 16]; NODES] {
    let (children, padding) = tree();
    let mut steps = [[Step { next: 0, symbol: 0, flags: 0 }; 16]; NODES];
    let mut state = 0;
    while state < NODES {
        let mut nibble = 0;
        while nibble < 16 {
            let mut step = Step { next: 0, symbol: 0, flags: 0 };
            let mut node = state;
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = children[node][(nibble >> bit) & 1];
                if child & LEAF == 0 {
                    node = child as usize;
                } else if (child & !LEAF) as usize == EOS {
                    step.flags = FAIL;
                    break;
                } else {
                    step.symbol = child as u8;
                    step.flags = EMIT;
                    node = 0;
                }
            }
            if step.flags != FAIL {
                step.next = node as u8;
                if padding[node] {
                    step.flags |= PADDING;
                }
            }
            steps[state][nibble] = step;
            nibble += 1;
        }
        state += 1;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(src: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(src, &mut out);
        out.to_vec()
    }

    fn decoded(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    #[test]
    fn rfc_strings() {
        // RFC 7541 C.4.1 and C.6.1.
        let www = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        assert_eq!(encoded(b"www.example.com"), www);
        assert_eq!(decoded(&www).unwrap(), b"www.example.com");
        assert_eq!(encoded(b"302"), [0x64, 0x02]);
        assert_eq!(encoded(b""), []);
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn refuses_bad_padding_and_eos() {
        // 'a' is 00011: padded with ones it is 0x1f, with zeros 0x18.
        assert_eq!(decoded(&[0x1f]).unwrap(), b"a");
        assert_eq!(decoded(&[0x18]), Err(DecodeError::Huffman));
        // Eight bits of padding.
        assert_eq!(decoded(&[0xff]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0x1f, 0xff]), Err(DecodeError::Huffman));
        // EOS itself: 30 ones.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xfc]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Huffman));
        // A code cut short is not padding unless it is ones: '0' is 00000.
        assert_eq!(decoded(&[0x00]), Err(DecodeError::Huffman));
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = BytesMut::new();
        encode(&all, &mut out);
        assert_eq!(out.len(), encoded_len(&all));
        assert_eq!(decoded(&out).unwrap(), all);
    }

    proptest! {
        #[test]
        fn round_trip(src in proptest::collection::vec(any::<u8>(), 0..300)) {
            let out = encoded(&src);
            prop_assert_eq!(out.len(), encoded_len(&src));
            prop_assert_eq!(decoded(&out).unwrap(), src);
        }

        #[test]
        fn arbitrary_bytes_never_panic(src in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decoded(&src);
        }
    }
}
