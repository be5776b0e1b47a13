//! The Huffman coding of string literals (RFC 7541 section 5.2, code in Appendix B).
//!
//! Encoding gathers codes in a 64-bit accumulator and writes them out 32 bits at a time.
//! Decoding reads the input through a 64-bit accumulator too, and decodes up to two symbols
//! per table lookup: [`FAST`], computed at compile time from the code, gives for each string of
//! [`FAST_BITS`] bits the one or two codes it starts with. Where the next lookup starts depends
//! on what this one finds, so the lookups cannot overlap and their latency bounds the speed;
//! taking two symbols at once nearly halves their number. Header values are mostly letters,
//! digits and punctuation such as `-./:,;` (codes of 5 to 8 bits), so most lookups find two.
//! What [`FAST`] cannot decode, a code longer than [`FAST_BITS`] (bytes rare in headers) or the
//! last bits of the input, goes one code at a time through [`BY_ONES`], which finds any code
//! from the run of ones it starts with.

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
/// bits, and padding other than ones (section 5.2); `out` is then left as it was.
pub(super) fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    // Every symbol takes at least 5 bits; the byte more is room for the unused second symbol
    // that `decode_to` writes after a lone one.
    let start = out.len();
    out.resize(start + src.len().saturating_mul(8) / 5 + 1, 0);
    let written = decode_to(src, &mut out[start..]);
    out.truncate(start + written.unwrap_or(0));
    written.map(|_| ())
}

/// Decodes `src` into `dst`, which has room for `src.len() * 8 / 5 + 1` bytes, and returns
/// how many it wrote.
fn decode_to(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    // `acc` holds the input from the next bit to decode on, most significant bit first. Its top
    // `avail` bits are loaded; the bits below them are input too, or zeros where not loaded yet
    // or past the end. A refill leaves `avail` at 56 or more, unless the input ends first.
    let mut acc: u64 = 0;
    let mut avail: u32 = 0;
    let mut rest = src;
    let mut n = 0;
    'refill: loop {
        if let Some(word) = rest.first_chunk::<8>() {
            // As many whole bytes as fit: `avail` becomes 56..=63. The bits of the next byte that
            // come along are loaded again, onto themselves, by the next refill.
            acc |= u64::from_be_bytes(*word) >> avail;
            rest = &rest[((63 - avail) / 8) as usize..];
            avail |= 56;
        } else {
            while avail <= 56 {
                let Some((&byte, tail)) = rest.split_first() else { break };
                acc |= u64::from(byte) << (56 - avail);
                avail += 8;
                rest = tail;
            }
        }
        // Four lookups take at most 48 bits: until the input ends, one refill serves them all.
        for _ in 0..4 {
            let pair = FAST[(acc >> (64 - FAST_BITS)) as usize];
            let bits = u32::from(pair.bits);
            if bits > avail {
                // The input ends within the bits the pair takes, or starts with a code longer
                // than FAST_BITS: one code at a time.
                if rest.is_empty() && avail <= 7 && acc == !(u64::MAX >> avail) {
                    // At most 7 ones: padding. They are no code, for the only code of all ones
                    // is EOS.
                    return Ok(n);
                }
                // The ones are input, for the bits past the end are zeros: 30 of them are EOS.
                let ones = (!acc).leading_zeros();
                if ones >= 30 {
                    return Err(DecodeError::Huffman);
                }
                let code = BY_ONES[ones as usize][((acc << (ones + 1)) >> (64 - TAIL_BITS)) as usize];
                let len = u32::from(code.len);
                if len > avail {
                    if rest.is_empty() {
                        return Err(DecodeError::Huffman); // cut off, and not padding
                    }
                    continue 'refill;
                }
                // `n` symbols of at least 5 bits lie in the input, and this one too.
                dst[n] = code.symbol;
                n += 1;
                acc <<= len;
                avail -= len;
                continue 'refill;
            }
            // Both codes lie in the input, so `n + pair.count` is at most `src.len() * 8 / 5`:
            // there is room for two bytes at `n`.
            dst[n..n + 2].copy_from_slice(&pair.symbols);
            n += usize::from(pair.count);
            acc <<= bits;
            avail -= bits;
        }
    }
}

/// The bits [`FAST`] is indexed by. Most pairs of the common codes (5 to 7 bits) fit in 12;
/// one bit less halves the table but takes a fifth more lookups on header values.
const FAST_BITS: u32 = 12;

/// The codes a string of [`FAST_BITS`] bits starts with: one, or two when both fit.
// `repr(C)` keeps `bits` the first byte, so the next lookup waits on the load alone and not
// on a shift to get at it as well.
#[derive(Clone, Copy)]
#[repr(C)]
struct Pair {
    /// The bits the codes take; for a longer code `u8::MAX`, more than the accumulator holds.
    bits: u8,
    /// How many symbols the codes are: 1 or 2 (0 for a longer code).
    count: u8,
    /// The symbols; a lone one is followed by a 0, written and then overwritten.
    symbols: [u8; 2],
}

/// The [`Pair`] of every string of [`FAST_BITS`] bits, by the string read as a number: 16 KiB.
static FAST: [Pair; 1 << FAST_BITS] = fast();

/// The bits after the run of ones a code starts with and the zero that ends the run: at most
/// 5, in this code.
const TAIL_BITS: u32 = 5;

/// A symbol other than EOS and the length of its code.
#[derive(Clone, Copy)]
struct Code {
    symbol: u8,
    len: u8,
}

/// Every code but EOS, by the number of ones it starts with (0 to 29; EOS is 30 ones) and the
/// [`TAIL_BITS`] bits after the zero that ends them, read as a number: 2 KiB. RFC 7541 gives
/// the longer codes the larger values (a canonical code), and in its code no code has more
/// than 5 bits after that zero; `by_ones` checks it.
static BY_ONES: [[Code; 1 << TAIL_BITS]; 30] = by_ones();

const fn fast() -> [Pair; 1 << FAST_BITS] {
    // First each string's first code, then a second where it fits.
    let mut first = [Pair { bits: u8::MAX, count: 0, symbols: [0; 2] }; 1 << FAST_BITS];
    let mut symbol = 0;
    while symbol < EOS {
        let (code, len) = HUFFMAN_CODES[symbol];
        if len as u32 <= FAST_BITS {
            let free = FAST_BITS - len as u32;
            let mut i = (code as usize) << free;
            while i < ((code as usize) + 1) << free {
                first[i] = Pair { bits: len, count: 1, symbols: [symbol as u8, 0] };
                i += 1;
            }
        }
        symbol += 1;
    }
    let mut pairs = first;
    let mut i = 0;
    while i < pairs.len() {
        let one = first[i];
        if one.count == 1 {
            let two = first[(i << one.bits) & ((1 << FAST_BITS) - 1)];
            if two.count == 1 && one.bits as u32 + two.bits as u32 <= FAST_BITS {
                pairs[i] = Pair { bits: one.bits + two.bits, count: 2, symbols: [one.symbols[0], two.symbols[0]] };
            }
        }
        i += 1;
    }
    pairs
}

const fn by_ones() -> [[Code; 1 << TAIL_BITS]; 30] {
    let mut table = [[Code { symbol: 0, len: 0 }; 1 << TAIL_BITS]; 30];
    let mut symbol = 0;
    while symbol < EOS {
        let (code, len) = HUFFMAN_CODES[symbol];
        let len = len as u32;
        let mut ones = 0;
        while (code >> (len - 1 - ones)) & 1 == 1 {
            ones += 1;
        }
        // Only EOS is all ones, so the run ends with a zero inside the code.
        let tail = len - ones - 1;
        assert!(tail <= TAIL_BITS, "a code with too many bits after its ones for BY_ONES");
        let free = TAIL_BITS - tail;
        let after = (code & ((1 << tail) - 1)) as usize;
        let mut i = after << free;
        while i < (after + 1) << free {
            table[ones as usize][i] = Code { symbol: symbol as u8, len: len as u8 };
            i += 1;
        }
        symbol += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::collection::vec;

    fn encoded(src: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(src, &mut out);
        out.to_vec()
    }

    fn decoded(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    /// Section 5.2 read literally: bit by bit, each string of bits looked up among the codes.
    fn reference(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        let (mut code, mut len) = (0u32, 0u8);
        for i in 0..src.len() * 8 {
            code = code << 1 | u32::from(src[i / 8] >> (7 - i % 8) & 1);
            len += 1;
            match HUFFMAN_CODES.iter().position(|&c| c == (code, len)) {
                Some(EOS) => return Err(DecodeError::Huffman),
                Some(symbol) => {
                    out.push(symbol as u8);
                    (code, len) = (0, 0);
                }
                None => {}
            }
        }
        // What is left is padding: at most 7 bits, all ones.
        if len <= 7 && code == (1 << len) - 1 { Ok(out) } else { Err(DecodeError::Huffman) }
    }

    /// Strings to encode: header-like text, any bytes, and all 256 byte values in any order.
    fn plain() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[ -~]{0,80}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..300),
            Just((0..=255).collect::<Vec<u8>>()).prop_shuffle(),
        ]
    }

    /// Input for the decoder: any bytes; bytes mostly ones, where the long codes, EOS and the
    /// padding are; and encoded strings damaged by a flipped bit, a byte cut off or one added.
    fn coded() -> impl Strategy<Value = Vec<u8>> {
        let onesy = prop_oneof![Just(0xff), 0xf0..=0xffu8, any::<u8>()];
        let damage = (any::<prop::sample::Index>(), 0..8u8, 0..4u8, any::<u8>());
        prop_oneof![
            vec(any::<u8>(), 0..48),
            vec(onesy, 0..48),
            (plain(), damage).prop_map(|(s, (at, bit, how, byte))| {
                let mut e = encoded(&s);
                let len = e.len();
                match how {
                    0 if len > 0 => e[at.index(len)] ^= 1 << bit,
                    1 => drop(e.pop()),
                    2 => e.push(byte),
                    _ => {}
                }
                e
            }),
        ]
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
        // One zero among the ones.
        assert_eq!(decoded(&[0x1d]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0x1e]), Err(DecodeError::Huffman));
        // Eight bits of padding.
        assert_eq!(decoded(&[0xff]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0x1f, 0xff]), Err(DecodeError::Huffman));
        // EOS itself: 30 ones, alone or after 'a'.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xfc]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Huffman));
        assert_eq!(decoded(&[0x1f, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Huffman));
        // A code cut short is not padding unless it is ones: '0' is 00000.
        assert_eq!(decoded(&[0x00]), Err(DecodeError::Huffman));
    }

    #[test]
    fn refuses_a_code_cut_off() {
        // 'b' is 100011: "ab" takes 11 bits, and its first byte leaves 100 of 'b'.
        assert_eq!(decoded(&encoded(b"ab")).unwrap(), b"ab");
        assert_eq!(decoded(&encoded(b"ab")[..1]), Err(DecodeError::Huffman));
        // 0x01 is 23 bits; without the last byte, 16 ones are left.
        let long = encoded(b"\x01");
        assert_eq!(decoded(&long).unwrap(), b"\x01");
        assert_eq!(decoded(&long[..long.len() - 1]), Err(DecodeError::Huffman));
    }

    #[test]
    fn appends_and_leaves_out_alone_on_error() {
        let mut out = b"x".to_vec();
        decode(&encoded(b"date"), &mut out).unwrap();
        assert_eq!(out, b"xdate");
        assert_eq!(decode(&[0x1f, 0xff], &mut out), Err(DecodeError::Huffman));
        assert_eq!(out, b"xdate");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = BytesMut::new();
        encode(&all, &mut out);
        assert_eq!(out.len(), encoded_len(&all));
        assert_eq!(decoded(&out).unwrap(), all);
    }

    /// Times `decode` on the strings nginx Huffman-codes in every response, the best of five
    /// runs of a million: `cargo test -p proxy-core --release huffman::tests::speed -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "a timing, not a test"]
    fn speed() {
        let strings: [&[u8]; 6] = [
            b"Sat, 05 Dec 2026 02:39:21 GMT",
            b"nginx/1.22.1",
            b"\"6931c2f1-400\"",
            b"application/octet-stream",
            b"1024",
            b"bytes",
        ];
        let coded: Vec<Vec<u8>> = strings.iter().map(|s| encoded(s)).collect();
        let rounds = 1_000_000 / coded.len();
        let mut out = Vec::with_capacity(64);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                for c in &coded {
                    out.clear();
                    decode(std::hint::black_box(c), &mut out).unwrap();
                    std::hint::black_box(&out);
                }
            }
            best = best.min(start.elapsed().as_nanos() as f64 / (rounds * coded.len()) as f64);
        }
        println!("huffman::decode: {best:.1} ns per string");
    }

    proptest! {
        #[test]
        fn round_trip(src in plain()) {
            let out = encoded(&src);
            prop_assert_eq!(out.len(), encoded_len(&src));
            prop_assert_eq!(decoded(&out).unwrap(), src);
        }

        #[test]
        fn decodes_as_the_reference_does(src in coded()) {
            prop_assert_eq!(decoded(&src), reference(&src));
        }
    }
}
