//! The deterministic bytes of `/big` and of the test uploads, and the FNV-1a hash `/sink` reports.

use std::sync::OnceLock;

/// Largest slice [`pattern_piece`] hands out; `/big` is written in pieces of this size.
pub const PIECE: usize = 64 * 1024;

const PERIOD: usize = 251;

/// Byte `i` of the pattern: `(i * 31 + 7) % 251`.
pub fn pattern_byte(i: u64) -> u8 {
    ((i % PERIOD as u64 * 31 + 7) % PERIOD as u64) as u8
}

/// The `len` pattern bytes starting at offset `start`; `len` is at most [`PIECE`].
pub fn pattern_piece(start: u64, len: usize) -> &'static [u8] {
    assert!(len <= PIECE, "pattern pieces are at most {PIECE} bytes");
    let off = (start % PERIOD as u64) as usize;
    &table()[off..off + len]
}

/// The `len` pattern bytes starting at offset `start`, owned.
pub fn pattern(start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = PIECE.min(len - out.len());
        out.extend_from_slice(pattern_piece(start + out.len() as u64, n));
    }
    out
}

/// Checks a stream against the pattern piece by piece, holding nothing but a position.
#[derive(Debug, Default)]
pub struct PatternCheck {
    len: u64,
    mismatch: Option<u64>,
}

impl PatternCheck {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        for piece in data.chunks(PIECE) {
            if self.mismatch.is_none() {
                let want = pattern_piece(self.len, piece.len());
                if let Some(i) = want.iter().zip(piece).position(|(a, b)| a != b) {
                    self.mismatch = Some(self.len + i as u64);
                }
            }
            self.len += piece.len() as u64;
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Offset of the first byte that differed from the pattern.
    pub fn mismatch(&self) -> Option<u64> {
        self.mismatch
    }
}

/// 64-bit FNV-1a, fed incrementally.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.update(data);
    h.finish()
}

/// What `/sink` answers for a body of `len` bytes hashing to `hash`.
pub fn sink_reply(len: u64, hash: u64) -> String {
    format!("{len} {hash:016x}\n")
}

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| (0..(PIECE + PERIOD) as u64).map(pattern_byte).collect())
}
