//! The dynamic table (RFC 7541 sections 2.3.2 and 4): the fields added most recently, the
//! newest at index 1, the oldest evicted once the entries' sizes add up to more than the
//! table's size.
//!
//! The names and values sit in one ring of bytes, and where each entry starts in a ring of
//! records, so that adding a field allocates nothing once the rings have grown. Both start
//! without an allocation, grow by doubling up to what the size allows (an entry costs its
//! name, its value and 32 bytes, so the bytes never exceed the size less 32, nor the records
//! the size over 32), shrink when the size drops and are let go of when the table empties,
//! so that an empty table holds no memory, as when each entry was an allocation of its own.
//!
//! An entry is never split at the ring's end, so that its name and value are plain slices.
//! One that does not fit before the end starts over at the front; the bytes it skipped, a
//! gap shorter than itself, stay unused until the older entries before them are evicted.
//! When no run of free bytes is long enough, the ring grows, or once it is as large as the
//! size allows, its entries are moved together at its front.

use std::collections::VecDeque;

use super::{entry_size, ENTRY_OVERHEAD};

/// The ring's first length: about what one header block adds.
const FIRST_RING: usize = 256;

/// The largest size a table takes: SETTINGS_HEADER_TABLE_SIZE is 32 bits, as are the size
/// updates the decoder accepts, so offsets into the ring fit a `u32` and a record takes 12
/// bytes instead of 24.
const MAX_SIZE: usize = u32::MAX as usize;

/// The records' first capacity.
const FIRST_RECORDS: usize = 4;

/// The dynamic table.
pub(super) struct Table {
    /// The entries' names and values, each entry's in one run; its length is the ring's.
    bytes: Vec<u8>,
    /// Where each entry is in `bytes`, the newest first.
    records: VecDeque<Record>,
    /// How many of the newest entries start over at the ring's front, behind the gap that
    /// follows the older ones; 0 while the entries are one run.
    wrapped: usize,
    /// The sum of the entries' sizes.
    size: usize,
    /// The size in use, which `size` never exceeds; at most [`MAX_SIZE`].
    max_size: usize,
}

/// Where one entry's name and value are: `start..start + name_len` and what follows.
struct Record {
    start: u32,
    name_len: u32,
    value_len: u32,
}

impl Record {
    /// The record of an entry in the ring, whose offsets fit a `u32`: the ring is smaller
    /// than [`MAX_SIZE`].
    fn new(start: usize, name_len: usize, value_len: usize) -> Self {
        Self { start: start as u32, name_len: name_len as u32, value_len: value_len as u32 }
    }

    fn start(&self) -> usize {
        self.start as usize
    }

    fn name_len(&self) -> usize {
        self.name_len as usize
    }

    fn value_len(&self) -> usize {
        self.value_len as usize
    }

    fn len(&self) -> usize {
        self.name_len() + self.value_len()
    }

    fn end(&self) -> usize {
        self.start() + self.len()
    }
}

impl Table {
    /// An empty table of `max_size` bytes, holding no allocation.
    pub(super) fn new(max_size: usize) -> Self {
        Self { bytes: Vec::new(), records: VecDeque::new(), wrapped: 0, size: 0, max_size: max_size.min(MAX_SIZE) }
    }

    /// How many entries the table holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The sum of the entries' sizes.
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The size in use.
    pub(super) fn max_size(&self) -> usize {
        self.max_size
    }

    /// The name and value at dynamic `index`, counting from 1 for the newest.
    pub(super) fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let record = self.records.get(index.checked_sub(1)?)?;
        Some(self.field(record))
    }

    /// The names and values, the newest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records.iter().map(|record| self.field(record))
    }

    /// Uses `max_size` from now on, evicting what no longer fits (sections 4.3, 6.3).
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size.min(MAX_SIZE);
        self.evict_over(self.max_size);
        if self.records.is_empty() {
            self.clear();
        } else {
            self.shrink();
        }
    }

    /// Adds a field after evicting what it needs; one larger than the whole table empties it
    /// and is not added (section 4.4). The caller's slices cannot be the table's own, so a
    /// name taken from an entry that is about to be evicted has been copied already.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let Some(room) = self.max_size.checked_sub(entry_size(name, value)) else {
            self.clear();
            return;
        };
        self.evict_over(room);
        self.reserve_record();
        let start = self.place(name.len() + value.len());
        let middle = start + name.len();
        self.bytes[start..middle].copy_from_slice(name);
        self.bytes[middle..middle + value.len()].copy_from_slice(value);
        let wraps = self.records.front().is_some_and(|newest| start < newest.end());
        if self.wrapped > 0 || wraps {
            self.wrapped += 1;
        }
        self.records.push_front(Record::new(start, name.len(), value.len()));
        self.size += entry_size(name, value);
    }

    fn field(&self, record: &Record) -> (&[u8], &[u8]) {
        // A record names bytes of the ring: `place` found room for them there, and moving
        // or resizing the ring moves the records with the bytes.
        self.bytes[record.start()..record.end()].split_at(record.name_len())
    }

    /// Evicts the oldest entries until the table holds at most `limit` bytes, keeping the
    /// rings for the entry about to be added.
    fn evict_over(&mut self, limit: usize) {
        while self.size > limit {
            let Some(oldest) = self.records.pop_back() else { break };
            self.size -= oldest.len() + ENTRY_OVERHEAD;
            if self.records.len() == self.wrapped {
                // The older run is gone: what started over at the front is the only run.
                self.wrapped = 0;
            }
        }
    }

    /// Empties the table and lets go of its rings.
    fn clear(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The most bytes the entries' names and values may take at the current size.
    fn byte_limit(&self) -> usize {
        self.max_size.saturating_sub(ENTRY_OVERHEAD)
    }

    /// The most entries the table may hold at the current size.
    fn record_limit(&self) -> usize {
        self.max_size / ENTRY_OVERHEAD
    }

    /// The entries' names and values together.
    fn used_bytes(&self) -> usize {
        self.size - ENTRY_OVERHEAD * self.records.len()
    }

    /// Makes room for one more record: doubling, but never past what the size allows, which
    /// has room for this one since every entry, the one about to be added too, counts at
    /// least 32 bytes.
    fn reserve_record(&mut self) {
        let len = self.records.len();
        if len == self.records.capacity() {
            let more = len.max(FIRST_RECORDS).min(self.record_limit().saturating_sub(len));
            self.records.reserve_exact(more);
        }
    }

    /// Shrinks the rings to what a lowered size allows; the entries left fit it.
    fn shrink(&mut self) {
        if self.bytes.len() > self.byte_limit() {
            self.compact();
            self.bytes.truncate(self.byte_limit());
            self.bytes.shrink_to_fit();
        }
        if self.records.capacity() > self.record_limit() {
            self.records.shrink_to(self.record_limit());
        }
    }

    /// Where `len` new bytes go, the ring grown or its entries moved together if need be.
    fn place(&mut self, len: usize) -> usize {
        if let Some(start) = self.free_run(len) {
            return start;
        }
        let used = self.used_bytes();
        // No run was long enough, so the entries and the new one take more than half the
        // ring: a gap is shorter than the entry that skipped it. Doubling is due, and once the
        // ring is at its limit, the limit has room for all after the entries moved together.
        let limit = self.byte_limit();
        self.compact();
        if self.bytes.len() < limit {
            let mut ring = (self.bytes.len() * 2).max(FIRST_RING);
            while ring < used + len {
                ring *= 2;
            }
            let ring = ring.min(limit);
            self.bytes.reserve_exact(ring - self.bytes.len());
            self.bytes.resize(ring, 0);
        }
        used
    }

    /// Where `len` bytes fit without moving an entry: after the newest, or failing that at the
    /// ring's front if the entries are one run.
    fn free_run(&self, len: usize) -> Option<usize> {
        let (Some(newest), Some(oldest)) = (self.records.front(), self.records.back()) else {
            return (len <= self.bytes.len()).then_some(0);
        };
        let (head, tail) = (newest.end(), oldest.start());
        if self.wrapped > 0 {
            (head + len <= tail).then_some(head)
        } else if head + len <= self.bytes.len() {
            Some(head)
        } else {
            (len <= tail).then_some(0)
        }
    }

    /// Moves the entries to the ring's front, the oldest first, so that the free bytes are
    /// one run after them.
    fn compact(&mut self) {
        let Some(oldest) = self.records.back() else { return };
        let tail = oldest.start();
        // The ring up to the older run's end holds the run that started over at the front,
        // free bytes, then the older run; rotating puts the older run first.
        let end = self.records[self.wrapped].end();
        self.bytes[..end].rotate_left(tail);
        let wrapped = self.wrapped;
        for (i, record) in self.records.iter_mut().enumerate() {
            let start = if i < wrapped { record.start() + end - tail } else { record.start() - tail };
            *record = Record::new(start, record.name_len(), record.value_len());
        }
        self.wrapped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The table as RFC 7541 describes it, one allocation per entry.
    struct Model {
        entries: VecDeque<(Vec<u8>, Vec<u8>)>,
        size: usize,
        max_size: usize,
    }

    impl Model {
        fn evict_over(&mut self, limit: usize) {
            while self.size > limit {
                let (name, value) = self.entries.pop_back().unwrap();
                self.size -= entry_size(&name, &value);
            }
        }

        fn insert(&mut self, name: &[u8], value: &[u8]) {
            let size = entry_size(name, value);
            if size > self.max_size {
                self.evict_over(0);
                return;
            }
            self.evict_over(self.max_size - size);
            self.entries.push_front((name.to_vec(), value.to_vec()));
            self.size += size;
        }

        fn set_max_size(&mut self, max_size: usize) {
            self.max_size = max_size;
            self.evict_over(max_size);
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(Vec<u8>, Vec<u8>),
        Resize(usize),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        // Long fields often: an entry finds no room behind a gap only if the gap is longer
        // than 32 bytes for each older entry.
        let bytes = || prop_oneof![vec(any::<u8>(), 0..300), vec(any::<u8>(), 240..300)];
        let size = prop_oneof![Just(4096), 0usize..700, 0usize..5000];
        prop_oneof![
            12 => (bytes(), bytes()).prop_map(|(name, value)| Step::Insert(name, value)),
            1 => size.prop_map(Step::Resize),
        ]
    }

    /// Checks every index, the sizes, and that the rings keep within the size.
    fn agree(t: &Table, m: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!((t.len(), t.size(), t.max_size()), (m.entries.len(), m.size, m.max_size));
        for index in 1..=t.len() + 1 {
            let want = m.entries.get(index - 1).map(|(n, v)| (&n[..], &v[..]));
            prop_assert_eq!(t.get(index), want);
        }
        prop_assert!(t.bytes.len() <= t.byte_limit());
        prop_assert!(t.records.capacity() <= t.record_limit());
        if t.len() == 0 {
            prop_assert_eq!((t.bytes.capacity(), t.records.capacity()), (0, 0));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_ring_agrees_with_the_model(
            max_size in prop_oneof![Just(4096), 0usize..1000],
            steps in vec(arb_step(), 1..200),
        ) {
            let mut t = Table::new(max_size);
            let mut m = Model { entries: VecDeque::new(), size: 0, max_size };
            for step in steps {
                match step {
                    Step::Insert(name, value) => {
                        t.insert(&name, &value);
                        m.insert(&name, &value);
                    }
                    Step::Resize(size) => {
                        t.set_max_size(size);
                        m.set_max_size(size);
                    }
                }
                agree(&t, &m)?;
            }
        }
    }

    fn filled() -> Table {
        let mut t = Table::new(4096);
        for i in 0..200 {
            t.insert(b"x-request-id", format!("{i:0>width$}", width = i % 50).as_bytes());
        }
        assert!(t.len() > 40 && t.bytes.capacity() > 0 && t.records.capacity() > 0);
        t
    }

    #[test]
    fn an_emptied_table_holds_no_allocation() {
        let mut t = filled();
        t.set_max_size(0);
        assert_eq!((t.len(), t.size(), t.bytes.capacity(), t.records.capacity()), (0, 0, 0, 0));
        // Too small for any entry: evicting all lets go, keeping the size.
        let mut t = filled();
        t.set_max_size(31);
        assert_eq!((t.len(), t.bytes.capacity(), t.records.capacity(), t.max_size()), (0, 0, 0, 31));
        // An entry larger than the table evicts all.
        let mut t = filled();
        t.insert(b"x-big", &[b'z'; 4096]);
        assert_eq!((t.len(), t.size(), t.bytes.capacity(), t.records.capacity()), (0, 0, 0, 0));
        assert_eq!(Table::new(4096).bytes.capacity(), 0);
    }

    #[test]
    fn a_lowered_size_shrinks_the_rings() {
        let mut t = filled();
        t.set_max_size(200);
        assert!(t.len() > 0);
        // 200 bytes hold 168 of names and values, in 6 entries at most.
        assert_eq!((t.bytes.capacity(), t.records.capacity()), (168, 6));
        assert_eq!(t.get(1), Some((&b"x-request-id"[..], format!("{:0>49}", 199).as_bytes())));
    }

    #[test]
    fn a_grown_table_adds_without_allocating() {
        let mut t = Table::new(4096);
        let value = |i: usize| format!("{i:0>width$}", width = i * 7 % 120);
        for i in 0..1000 {
            t.insert(b"x-request-id", value(i).as_bytes());
        }
        let (ring, records) = (t.bytes.as_ptr(), t.records.capacity());
        for i in 0..10_000 {
            t.insert(b"x-request-id", value(i).as_bytes());
            assert_eq!((t.bytes.as_ptr(), t.records.capacity()), (ring, records));
        }
    }

    /// A million fields of 34 to 83 bytes added to a 4096-byte table, each followed by a lookup;
    /// `cargo test -p proxy-core --release -- --ignored --nocapture inserts_and_lookups`.
    #[test]
    #[ignore]
    fn million_inserts_and_lookups() {
        let names: [&[u8]; 7] =
            [b"date", b"etag", b"content-length", b"x-request-id", b"last-modified", b"set-cookie", b"server"];
        let values: Vec<Vec<u8>> =
            (0..64).map(|i| format!("Fri, 04 Dec 2026 14:00:{i:02} GMT/{}", "x".repeat(i % 40)).into_bytes()).collect();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut t = Table::new(4096);
            let mut sum = 0usize;
            let start = std::time::Instant::now();
            for i in 0..1_000_000usize {
                t.insert(names[i % names.len()], &values[i % values.len()]);
                let (name, value) = t.get(1 + i % t.len()).unwrap();
                sum += name.len() + value.len();
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(sum);
        }
        println!("1M inserts and lookups: {best:.1} ms, best of 5");
    }
}
