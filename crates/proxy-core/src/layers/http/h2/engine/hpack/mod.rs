//! HPACK (RFC 7541): how HTTP/2 compresses header blocks.
//!
//! Each direction of a connection has one compression context: the sender's encoder and the
//! receiver's decoder keep the same dynamic table of recent fields, so that a field can be sent
//! as an index into it or into the static table, or as a literal that both then add to it.
//! The two tables agree only while every block is decoded in order, so a block that fails
//! to decode spoils the context: any error here is a connection error, COMPRESSION_ERROR
//! (RFC 9113 section 4.3).
//!
//! The decoder refuses:
//! - an integer above `u32::MAX` or with more than 5 continuation bytes;
//! - index 0, or an index past the static and dynamic tables;
//! - an integer or string that runs past the end of the block;
//! - a Huffman string containing EOS, or padded with more than 7 bits or with anything but
//!   ones;
//! - a dynamic table size update after a field, or above our SETTINGS_HEADER_TABLE_SIZE;
//! - a header list larger than the caller's limit, counted as SETTINGS_MAX_HEADER_LIST_SIZE
//!   counts it: name, value and 32 bytes per field (RFC 9113 section 6.5.2).
//!
//! `table.rs` holds the standard's data, `dynamic.rs` the dynamic table (section 4) and
//! `huffman.rs` the coding of strings; this file the integer and string primitives (section
//! 5), the decoder and the encoder; `tests.rs` checks them against the RFC's examples and
//! each other.

mod dynamic;
mod huffman;
mod table;

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use dynamic::Table;
use table::{static_names, STATIC_TABLE};
pub(super) use table::static_name;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The block ends inside an integer or a string.
    #[error("header block truncated")]
    Truncated,
    /// An integer above `u32::MAX`, or with more than 5 continuation bytes.
    #[error("integer too large")]
    IntegerOverflow,
    /// Index 0, or one past the static and dynamic tables.
    #[error("index not in the tables")]
    BadIndex,
    /// A Huffman string with EOS in it or with bad padding.
    #[error("invalid huffman string")]
    Huffman,
    /// A dynamic table size update after a field, or above our limit.
    #[error("invalid dynamic table size update")]
    TableSizeUpdate,
    /// The fields add up to more than the caller allows.
    #[error("header list too large")]
    ListTooLarge,
}

/// The protocol's default SETTINGS_HEADER_TABLE_SIZE, and the most the encoder uses.
const DEFAULT_TABLE_SIZE: usize = 4096;

/// What an entry costs beyond its name and value (section 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Scratch capacity the decoder keeps between blocks; above it, the buffer is freed.
const SCRATCH_KEEP: usize = 16 * 1024;

/// Decodes the header blocks the peer sends.
pub(crate) struct Decoder {
    table: Table,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the peer may not make the table larger.
    max_table_size: usize,
    /// Where Huffman strings are decoded to and names from the dynamic table copied to for a
    /// literal field; other strings are handed out as slices of the block or of the tables.
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder whose table holds `max_table_size` bytes until the peer says otherwise.
    pub(crate) fn new(max_table_size: usize) -> Self {
        Self { table: Table::new(max_table_size), max_table_size, scratch: Vec::new() }
    }

    /// Decodes one complete header block, calling `field(name, value, never_indexed)` for
    /// each field in order; fails once the fields add up to more than `max_list_size`. A
    /// field that came never indexed (section 6.2.3) must be passed on the same way by an
    /// intermediary (section 7.1.3).
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut field: impl FnMut(&[u8], &[u8], bool),
    ) -> Result<(), DecodeError> {
        self.decode_recording(block, max_list_size, &mut field, &mut None)
    }

    /// As [`decode`](Self::decode), and says what the block entered in the table if the block
    /// stands on its own: if it refers to no entry of the dynamic table and does not resize
    /// it, the same bytes decode to the same fields and enter the same entries whatever the
    /// table holds, so a caller that kept what the fields came to may take a repeat of the
    /// block with [`enter`](Self::enter) alone. `None` for a block that does not.
    pub(crate) fn decode_standalone(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut field: impl FnMut(&[u8], &[u8], bool),
    ) -> Result<Option<Entries>, DecodeError> {
        let mut entries = Some(Entries::default());
        self.decode_recording(block, max_list_size, &mut field, &mut entries)?;
        Ok(entries)
    }

    /// Enters `entries` in the table, in order, as decoding the block they came from does.
    pub(crate) fn enter(&mut self, entries: &Entries) {
        let mut at = 0;
        for &(name, value) in &entries.lens {
            let (name_end, end) = (at + name as usize, at + name as usize + value as usize);
            self.table.insert(&entries.bytes[at..name_end], &entries.bytes[name_end..end]);
            at = end;
        }
    }

    /// Decodes the block, recording in `entries` (if `Some`) what it enters in the table, and
    /// setting it to `None` once the block refers to the dynamic table or resizes it.
    fn decode_recording(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        field: &mut impl FnMut(&[u8], &[u8], bool),
        entries: &mut Option<Entries>,
    ) -> Result<(), DecodeError> {
        let result = self.decode_block(block, max_list_size, field, entries);
        self.scratch.clear();
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result
    }

    fn decode_block(
        &mut self,
        mut src: &[u8],
        max_list_size: usize,
        field: &mut impl FnMut(&[u8], &[u8], bool),
        entries: &mut Option<Entries>,
    ) -> Result<(), DecodeError> {
        // Size updates come before the first field (section 4.2).
        while src.first().is_some_and(|&b| b & 0xe0 == 0x20) {
            *entries = None;
            self.size_update(&mut src)?;
        }
        let mut list = ListSize { used: 0, max: max_list_size };
        while let Some(&first) = src.first() {
            match first {
                // Indexed Header Field (section 6.1).
                0x80..=0xff => {
                    let index = read_int(&mut src, 7)?;
                    if index > STATIC_TABLE.len() {
                        *entries = None;
                    }
                    let (name, value) = lookup(&self.table, index)?;
                    list.add(name, value)?;
                    field(name, value, false);
                }
                // Literal Header Field with Incremental Indexing (section 6.2.1).
                0x40..=0x7f => self.literal(&mut src, 6, true, &mut list, field, entries)?,
                0x20..=0x3f => return Err(DecodeError::TableSizeUpdate),
                // Literal Header Field without Indexing or Never Indexed (6.2.2, 6.2.3).
                0x00..=0x1f => self.literal(&mut src, 4, false, &mut list, field, entries)?,
            }
        }
        Ok(())
    }

    /// Reads a Dynamic Table Size Update (section 6.3).
    fn size_update(&mut self, src: &mut &[u8]) -> Result<(), DecodeError> {
        let size = read_int(src, 5)?;
        if size > self.max_table_size {
            return Err(DecodeError::TableSizeUpdate);
        }
        self.table.set_max_size(size);
        Ok(())
    }

    /// Reads a literal field whose index has a `prefix`-bit prefix, and adds it to the table
    /// when `indexing` (recording it in `entries`, as `decode_block` does).
    fn literal(
        &mut self,
        src: &mut &[u8],
        prefix: u8,
        indexing: bool,
        list: &mut ListSize,
        field: &mut impl FnMut(&[u8], &[u8], bool),
        entries: &mut Option<Entries>,
    ) -> Result<(), DecodeError> {
        let never_indexed = !indexing && src.first().is_some_and(|&b| b & 0xf0 == 0x10);
        self.scratch.clear();
        let name = match read_int(src, prefix)? {
            0 => read_string(src, &mut self.scratch)?,
            index => {
                if index > STATIC_TABLE.len() {
                    *entries = None;
                }
                self.indexed_name(index)?
            }
        };
        let value = read_string(src, &mut self.scratch)?;
        let (name, value) = (name.resolve(&self.scratch), value.resolve(&self.scratch));
        list.add(name, value)?;
        if indexing {
            self.table.insert(name, value);
            if let Some(entries) = entries {
                entries.push(name, value);
            }
        }
        field(name, value, never_indexed);
        Ok(())
    }

    /// The name of the field at `index`. The copy comes first for a name in the dynamic
    /// table: making room for the new field may evict the entry it names (section 4.4).
    fn indexed_name(&mut self, index: usize) -> Result<Str<'static>, DecodeError> {
        if let Some(&(name, _)) = index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
            return Ok(Str::Slice(name));
        }
        let (name, _) = lookup(&self.table, index)?;
        let start = self.scratch.len();
        self.scratch.extend_from_slice(name);
        Ok(Str::Scratch(start..self.scratch.len()))
    }
}

/// The fields a block entered in the dynamic table, in order (see
/// [`Decoder::decode_standalone`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Entries {
    /// Each entry's name and value, one after another.
    bytes: Vec<u8>,
    /// Each entry's name and value lengths.
    lens: Vec<(u32, u32)>,
}

impl Entries {
    /// Lets go of the room the recording grew beyond what it holds.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.lens.shrink_to_fit();
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        // A decoded string is at most 8/5 of its block, which the engine bounds far below
        // 4 GiB.
        self.lens.push((name.len() as u32, value.len() as u32));
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
    }
}

/// The running size of the decoded header list.
struct ListSize {
    used: usize,
    max: usize,
}

impl ListSize {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        self.used = self.used.saturating_add(entry_size(name, value));
        if self.used > self.max { Err(DecodeError::ListTooLarge) } else { Ok(()) }
    }
}

/// A decoded string: a slice of the block or a table, or a range of the decoder's scratch.
enum Str<'a> {
    Slice(&'a [u8]),
    Scratch(Range<usize>),
}

impl<'a> Str<'a> {
    fn resolve(self, scratch: &'a [u8]) -> &'a [u8] {
        match self {
            Str::Slice(s) => s,
            // The range is what `read_string` appended, and `scratch` is only cleared before
            // a field's strings are read.
            Str::Scratch(range) => &scratch[range],
        }
    }
}

/// The field at `index` of the static table followed by the dynamic one (section 2.3.3).
fn lookup(table: &Table, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    match index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
        Some(&(name, value)) => Ok((name, value)),
        None => table.get(index.saturating_sub(STATIC_TABLE.len())).ok_or(DecodeError::BadIndex),
    }
}

/// Reads an integer with a `prefix`-bit prefix (section 5.1), ignoring the first byte's other
/// bits.
fn read_int(src: &mut &[u8], prefix: u8) -> Result<usize, DecodeError> {
    /// More would only be needed for values past `u32::MAX` or zeros padding a small one.
    const MAX_CONTINUATIONS: u32 = 5;
    let (&first, rest) = src.split_first().ok_or(DecodeError::Truncated)?;
    *src = rest;
    let max = (1u8 << prefix) - 1;
    if first & max < max {
        return Ok(usize::from(first & max));
    }
    let mut value = u64::from(max);
    for shift in (0..MAX_CONTINUATIONS).map(|i| 7 * i) {
        let (&byte, rest) = src.split_first().ok_or(DecodeError::Truncated)?;
        *src = rest;
        value += u64::from(byte & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(DecodeError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow);
        }
    }
    Err(DecodeError::IntegerOverflow)
}

/// Reads a string literal (section 5.2): a slice of the block, or if it is Huffman-coded, a
/// range of `scratch` where it was decoded to.
fn read_string<'a>(src: &mut &'a [u8], scratch: &mut Vec<u8>) -> Result<Str<'a>, DecodeError> {
    let huffman = src.first().is_some_and(|&b| b & 0x80 != 0);
    let len = read_int(src, 7)?;
    if len > src.len() {
        return Err(DecodeError::Truncated);
    }
    let (s, rest) = src.split_at(len);
    *src = rest;
    if !huffman {
        return Ok(Str::Slice(s));
    }
    let start = scratch.len();
    huffman::decode(s, scratch)?;
    Ok(Str::Scratch(start..scratch.len()))
}

/// Writes `value` with a `prefix`-bit prefix (section 5.1) into a first byte that starts as
/// `first`.
fn write_int(value: usize, prefix: u8, first: u8, out: &mut BytesMut) {
    let max = (1u8 << prefix) - 1;
    if value < usize::from(max) {
        out.put_u8(first | value as u8);
        return;
    }
    out.put_u8(first | max);
    let mut rest = value - usize::from(max);
    while rest >= 0x80 {
        out.put_u8(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// Writes a string literal (section 5.2), Huffman-coded when that is shorter.
fn write_string(s: &[u8], out: &mut BytesMut) {
    let coded = huffman::encoded_len(s);
    if coded < s.len() {
        write_int(coded, 7, 0x80, out);
        huffman::encode(s, out);
    } else {
        write_int(s.len(), 7, 0, out);
        out.extend_from_slice(s);
    }
}

/// What a field costs in the dynamic table and in the header list.
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len().saturating_add(value.len()).saturating_add(ENTRY_OVERHEAD)
}

/// Fields whose values change from one message to the next: indexing them would only push
/// useful entries out of the table. Each is known by its static index.
const UNINDEXED: [usize; 12] = [
    4,  // :path
    5,  // :path
    21, // age
    28, // content-length
    30, // content-range
    32, // cookie
    33, // date
    34, // etag
    36, // expires
    44, // last-modified
    46, // location
    55, // set-cookie
];

/// The largest entry the encoder adds to the dynamic table; larger fields would evict much
/// for a value that is rarely repeated.
const MAX_INDEXED_ENTRY: usize = 512;

/// Encodes the header blocks we send.
///
/// A field found whole in the static or dynamic table is sent as its index. Anything else is
/// a literal, its name given by index when a table has it (the static table first), and added
/// to the dynamic table unless it is sensitive, as asked or as a [`secret`] (then it is
/// marked "never indexed", 6.2.3), larger than [`MAX_INDEXED_ENTRY`], or among the
/// [`UNINDEXED`] names. Strings are Huffman-coded when that makes them shorter.
///
/// The dynamic table is searched by a scan from the newest entry. Measured against two hash
/// maps (field and name to insertion number): 0.37 against 0.56 us a block at 11 entries,
/// 37.9 against 9.5 at 105 with constant churn; a table holds 128 entries at most (4096
/// bytes), the usual one a dozen, and the maps cost every connection two allocations.
pub(crate) struct Encoder {
    table: Table,
    /// The size the peer's decoder uses: the last one we announced.
    announced: usize,
    /// The smallest size in use since the last block.
    smallest: usize,
    /// Counts the changes to what the next block is encoded against: see
    /// [`generation`](Self::generation).
    generation: u64,
}

impl Encoder {
    /// An encoder with the protocol's default table of 4096 bytes.
    pub(crate) fn new() -> Self {
        Self { table: Table::new(DEFAULT_TABLE_SIZE), announced: DEFAULT_TABLE_SIZE, smallest: DEFAULT_TABLE_SIZE, generation: 0 }
    }

    /// Changes whenever the table or the size owed to the peer changes, and only then: while
    /// it stays the same, the same fields encode to the same bytes.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Follows the peer's SETTINGS_HEADER_TABLE_SIZE, using at most 4096 bytes; the change is
    /// announced at the start of the next block.
    pub(crate) fn set_max_table_size(&mut self, size: usize) {
        let size = size.min(DEFAULT_TABLE_SIZE);
        self.table.set_max_size(size);
        self.smallest = self.smallest.min(size);
        self.generation += 1;
    }

    /// Appends the encoding of one header block: `(name, value, sensitive)` in order.
    pub(crate) fn encode<'a>(&mut self, fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], bool)>, out: &mut BytesMut) {
        self.announce_size(out);
        for (name, value, sensitive) in fields {
            self.field(name, value, sensitive, out);
        }
    }

    /// Writes the size updates owed since the last block (section 4.2): the smallest size
    /// used if the table shrank below both the announced and the current size, then the
    /// current size if it differs from what the peer knows.
    fn announce_size(&mut self, out: &mut BytesMut) {
        let current = self.table.max_size();
        let shrank = self.smallest < self.announced && self.smallest < current;
        if shrank {
            write_int(self.smallest, 5, 0x20, out);
        }
        if shrank || current != self.announced {
            write_int(current, 5, 0x20, out);
            self.generation += 1;
        }
        self.announced = current;
        self.smallest = current;
    }

    fn field(&mut self, name: &[u8], value: &[u8], sensitive: bool, out: &mut BytesMut) {
        let sensitive = sensitive || secret(name, value);
        let statics = static_names(name);
        if !sensitive {
            if let Some(index) = statics.and_then(|(first, last)| static_field(first, last, value)) {
                write_int(index, 7, 0x80, out);
                return;
            }
        }
        let indexing = !sensitive
            && entry_size(name, value) <= MAX_INDEXED_ENTRY.min(self.table.max_size())
            && !statics.is_some_and(|(first, _)| UNINDEXED.contains(&first));
        // Only fields that pass the test above are ever added, so only they can be found
        // whole; a name is worth looking for when the static table lacks it.
        if indexing {
            if let Some(index) = self.find(|n, v| n == name && v == value) {
                write_int(index, 7, 0x80, out);
                return;
            }
        }
        let name_index = statics.map(|(first, _)| first).or_else(|| self.find(|n, _| n == name));
        let (pattern, prefix) = match (sensitive, indexing) {
            (true, _) => (0x10, 4),
            (false, true) => (0x40, 6),
            (false, false) => (0x00, 4),
        };
        match name_index {
            Some(index) => write_int(index, prefix, pattern, out),
            None => {
                out.put_u8(pattern);
                write_string(name, out);
            }
        }
        write_string(value, out);
        if indexing {
            self.table.insert(name, value);
            self.generation += 1;
        }
    }

    /// The index of the newest entry whose name and value `matches` accepts.
    fn find(&self, matches: impl Fn(&[u8], &[u8]) -> bool) -> Option<usize> {
        let position = self.table.iter().position(|(name, value)| matches(name, value))?;
        Some(STATIC_TABLE.len() + 1 + position)
    }
}

/// Whether a field is a secret that may be guessed (RFC 7541 section 7.1.3): credentials, and
/// cookies short enough to try every value of. We never index them; sent as never indexed,
/// no intermediary after us may either, so that nobody sharing its table can learn them by
/// watching whether a guess compresses. Whether the peer that sent such a field to us marked
/// it so is not kept; this is the rule nghttp2 applies too.
fn secret(name: &[u8], value: &[u8]) -> bool {
    /// Below this length a cookie's value is taken to be guessable.
    const SHORT_COOKIE: usize = 20;
    matches!(name, b"authorization" | b"proxy-authorization") || (name == b"cookie" && value.len() < SHORT_COOKIE)
}

/// The static index of `value` among the entries `first..=last`, which share its name.
fn static_field(first: usize, last: usize, value: &[u8]) -> Option<usize> {
    (first..=last).find(|&i| STATIC_TABLE.get(i - 1).is_some_and(|&(_, v)| v == value))
}


#[cfg(test)]
mod tests;
