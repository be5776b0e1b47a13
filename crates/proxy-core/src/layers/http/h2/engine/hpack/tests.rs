//! HPACK's tests: RFC 7541 Appendix C, each error, and round trips.

use super::*;
use proptest::prelude::*;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits.chunks(2).map(|d| u8::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap()).collect()
}

fn owned(fields: &[(&str, &str)]) -> Fields {
    fields.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, DecodeError> {
    let mut got = Vec::new();
    d.decode(block, usize::MAX, |n, v, _| got.push((n.to_vec(), v.to_vec())))?;
    Ok(got)
}

fn entries(t: &Table) -> Fields {
    t.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

/// Decodes `block` and checks the fields, then the dynamic table (newest first) and its
/// size.
fn check(d: &mut Decoder, block: &str, fields: &[(&str, &str)], table: &[(&str, &str)], size: usize) {
    assert_eq!(decode(d, &hex(block)).unwrap(), owned(fields));
    assert_eq!(entries(&d.table), owned(table));
    assert_eq!(d.table.size(), size);
}

fn err(block: &str) -> DecodeError {
    decode(&mut Decoder::new(4096), &hex(block)).unwrap_err()
}

#[test]
fn c2_field_representations() {
    let custom = [("custom-key", "custom-header")];
    check(&mut Decoder::new(4096), "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572", &custom, &custom, 55);
    check(&mut Decoder::new(4096), "040c 2f73 616d 706c 652f 7061 7468", &[(":path", "/sample/path")], &[], 0);
    check(&mut Decoder::new(4096), "1008 7061 7373 776f 7264 0673 6563 7265 74", &[("password", "secret")], &[], 0);
    check(&mut Decoder::new(4096), "82", &[(":method", "GET")], &[], 0);
}

/// The three requests of C.3 and C.4, encoded as `blocks`.
fn requests(blocks: [&str; 3]) {
    let d = &mut Decoder::new(4096);
    let authority = (":authority", "www.example.com");
    let no_cache = ("cache-control", "no-cache");
    let custom = ("custom-key", "custom-value");
    let first = [(":method", "GET"), (":scheme", "http"), (":path", "/"), authority];
    check(d, blocks[0], &first, &[authority], 57);
    let second = [(":method", "GET"), (":scheme", "http"), (":path", "/"), authority, no_cache];
    check(d, blocks[1], &second, &[no_cache, authority], 110);
    let third = [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), authority, custom];
    check(d, blocks[2], &third, &[custom, no_cache, authority], 164);
}

const C3: [&str; 3] = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];

const C4: [&str; 3] = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

#[test]
fn c3_requests() {
    requests(C3);
}

#[test]
fn c4_requests_with_huffman() {
    requests(C4);
}

/// The three responses of C.5 and C.6, encoded as `blocks`, with a 256-byte table.
fn responses(blocks: [&str; 3]) {
    let d = &mut Decoder::new(256);
    let private = ("cache-control", "private");
    let date21 = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
    let date22 = ("date", "Mon, 21 Oct 2013 20:13:22 GMT");
    let location = ("location", "https://www.example.com");
    let gzip = ("content-encoding", "gzip");
    let cookie = ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
    let first = [(":status", "302"), private, date21, location];
    check(d, blocks[0], &first, &[location, date21, private, (":status", "302")], 222);
    let second = [(":status", "307"), private, date21, location];
    check(d, blocks[1], &second, &[(":status", "307"), location, date21, private], 222);
    let third = [(":status", "200"), private, date22, location, gzip, cookie];
    check(d, blocks[2], &third, &[cookie, gzip, date22], 215);
}

#[test]
fn c5_responses_with_evictions() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

fn encode(e: &mut Encoder, fields: &[(&str, &str, bool)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    e.encode(fields.iter().map(|&(n, v, s)| (n.as_bytes(), v.as_bytes(), s)), &mut out);
    out.to_vec()
}

#[test]
fn encodes_c4_requests() {
    let e = &mut Encoder::new();
    let authority = (":authority", "www.example.com", false);
    let first = [(":method", "GET", false), (":scheme", "http", false), (":path", "/", false), authority];
    assert_eq!(encode(e, &first), hex(C4[0]));
    let no_cache = ("cache-control", "no-cache", false);
    let second = [(":method", "GET", false), (":scheme", "http", false), (":path", "/", false), authority, no_cache];
    assert_eq!(encode(e, &second), hex(C4[1]));
    let custom = ("custom-key", "custom-value", false);
    let third = [(":method", "GET", false), (":scheme", "https", false), (":path", "/index.html", false), authority, custom];
    assert_eq!(encode(e, &third), hex(C4[2]));
}

#[test]
fn encoder_representations() {
    let e = &mut Encoder::new();
    // Sensitive: never indexed, the name by index, the value as it is ("ab" gains nothing
    // from Huffman).
    assert_eq!(encode(e, &[("authorization", "ab", true)]), hex("1f08 026162"));
    // A changing field: without indexing.
    assert_eq!(encode(e, &[(":path", "/ab", false)]), hex("0403 2f61 62"));
    // A new name, added; the second time the whole field is an index.
    assert_eq!(encode(e, &[("x-a", "b", false)]), hex("4003 782d 6101 62"));
    assert_eq!(encode(e, &[("x-a", "b", false), ("x-a", "c", false)]), hex("be 7e01 63"));
    // Sensitive again: a name from the dynamic table, yet never indexed.
    assert_eq!(encode(e, &[("x-a", "d", true)]), hex("1f2f 0164"));
    // Too large to be worth a table entry.
    let big = "z".repeat(600);
    let block = encode(e, &[("x-a", &big, false)]);
    assert_eq!(block[0], 0x0f);
    assert_eq!(entries(&e.table).len(), 2);
}

#[test]
fn credentials_and_short_cookies_are_never_indexed_whoever_asks() {
    let e = &mut Encoder::new();
    assert_eq!(encode(e, &[("authorization", "ab", false)]), hex("1f08 026162"));
    assert_eq!(encode(e, &[("proxy-authorization", "ab", false)])[..2], hex("1f22"));
    // A short cookie: never indexed (static name 32), and the table gains nothing.
    assert_eq!(encode(e, &[("cookie", "sid=1", false)])[..2], hex("1f11"));
    assert_eq!(entries(&e.table).len(), 0);
    // A long one is not indexed either (cookies change too often to be worth it), but an
    // intermediary after us may: literal without indexing, static name 32.
    let long = format!("sid={}", "7".repeat(40));
    assert_eq!(encode(e, &[("cookie", &long, false)])[..2], hex("0f11"));
    assert_eq!(entries(&e.table).len(), 0);
}

#[test]
fn encoder_announces_table_size_changes() {
    let e = &mut Encoder::new();
    // Larger than the default: still 4096, nothing to say.
    e.set_max_table_size(65536);
    assert_eq!(encode(e, &[]), []);
    e.set_max_table_size(100);
    assert_eq!(encode(e, &[]), hex("3f45"));
    assert_eq!(encode(e, &[]), []);
    // Up and back between two blocks: the peer's table never changed.
    e.set_max_table_size(300);
    e.set_max_table_size(100);
    assert_eq!(encode(e, &[]), []);
    // Down and back up: the smallest, then the final size.
    e.set_max_table_size(0);
    e.set_max_table_size(4096);
    assert_eq!(encode(e, &[]), hex("20 3fe1 1f"));
    e.set_max_table_size(200);
    e.set_max_table_size(4096);
    assert_eq!(encode(e, &[]), hex("3fa9 01 3fe1 1f"));
}

#[test]
fn encoder_evicts_when_the_table_shrinks() {
    let e = &mut Encoder::new();
    let d = &mut Decoder::new(4096);
    let block = encode(e, &[("x-a", "1", false), ("x-b", "2", false), ("x-c", "3", false)]);
    decode(d, &block).unwrap();
    e.set_max_table_size(80);
    assert_eq!(entries(&e.table), owned(&[("x-c", "3"), ("x-b", "2")]));
    let block = encode(e, &[("x-a", "1", false), ("x-b", "2", false)]);
    assert_eq!(decode(d, &block).unwrap(), owned(&[("x-a", "1"), ("x-b", "2")]));
    assert_eq!(entries(&d.table), entries(&e.table));
}

#[test]
fn truncated() {
    assert_eq!(err("4005 61"), DecodeError::Truncated);
    assert_eq!(err("ff"), DecodeError::Truncated);
    assert_eq!(err("ff 80"), DecodeError::Truncated);
    assert_eq!(err("41"), DecodeError::Truncated);
    assert_eq!(err("00"), DecodeError::Truncated);
}

#[test]
fn integer_overflow() {
    // 2^32 - 1 is an integer (too large a size update), 2^32 is not.
    assert_eq!(err("3fe0 ffff ff0f"), DecodeError::TableSizeUpdate);
    assert_eq!(err("3fe1 ffff ff0f"), DecodeError::IntegerOverflow);
    // A small value padded with a sixth continuation byte.
    assert_eq!(err("ff80 8080 8080 00"), DecodeError::IntegerOverflow);
    assert_eq!(read_int(&mut &hex("1f9a 0a")[..], 5), Ok(1337));
}

#[test]
fn bad_index() {
    assert_eq!(err("80"), DecodeError::BadIndex);
    assert_eq!(err("be"), DecodeError::BadIndex);
    assert_eq!(err("7e 0161"), DecodeError::BadIndex);
    assert_eq!(err("0f2f 0161"), DecodeError::BadIndex);
    // Index 62 exists once an entry is added.
    let d = &mut Decoder::new(4096);
    assert_eq!(decode(d, &hex("4001 6101 62 be")).unwrap(), owned(&[("a", "b"), ("a", "b")]));
    assert_eq!(decode(d, &hex("bf")), Err(DecodeError::BadIndex));
}

#[test]
fn huffman() {
    // The name "a" padded with ones, then with zeros, with 8 bits, with EOS.
    assert_eq!(decode(&mut Decoder::new(4096), &hex("0081 1f00")).unwrap(), owned(&[("a", "")]));
    assert_eq!(err("0081 1800"), DecodeError::Huffman);
    assert_eq!(err("0082 1fff 00"), DecodeError::Huffman);
    assert_eq!(err("0484 ffff ffff"), DecodeError::Huffman);
}

#[test]
fn table_size_update() {
    assert_eq!(err("82 20"), DecodeError::TableSizeUpdate);
    assert_eq!(err("3fe2 1f"), DecodeError::TableSizeUpdate);
    let d = &mut Decoder::new(4096);
    assert_eq!(decode(d, &hex("4001 6101 62")).unwrap(), owned(&[("a", "b")]));
    // Two updates may open a block; the first empties the table.
    assert_eq!(decode(d, &hex("20 3fe1 1f 82")).unwrap(), owned(&[(":method", "GET")]));
    assert_eq!((d.table.len(), d.table.size(), d.table.max_size()), (0, 0, 4096));
    assert_eq!(decode(d, &hex("be")), Err(DecodeError::BadIndex));
}

#[test]
fn a_block_that_stands_on_its_own_is_entered_again_by_its_entries() {
    // RFC 7541 C.4.1: indexed fields and a literal with indexing of a static name.
    let block = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
    let (a, b) = (&mut Decoder::new(4096), &mut Decoder::new(4096));
    let mut fields = Vec::new();
    let kept = a.decode_standalone(&block, usize::MAX, |n, v, _| fields.push((n.to_vec(), v.to_vec()))).unwrap();
    let kept = kept.expect("it stands on its own");
    assert_eq!(fields, decode(b, &block).unwrap());
    // The repeat: decoded by one, only entered by the other; the tables stay the same.
    decode(a, &block).unwrap();
    b.enter(&kept);
    assert_eq!((entries(&a.table), a.table.size()), (entries(&b.table), b.table.size()));
    assert_eq!(entries(&b.table), owned(&[(":authority", "www.example.com"), (":authority", "www.example.com")]));
    // What refers to the dynamic table, or resizes it, does not stand on its own.
    assert_eq!(a.decode_standalone(&hex("be"), usize::MAX, |_, _, _| {}), Ok(None));
    assert_eq!(a.decode_standalone(&hex("7e01 32"), usize::MAX, |_, _, _| {}), Ok(None));
    assert_eq!(a.decode_standalone(&hex("3fe1 1f 82"), usize::MAX, |_, _, _| {}), Ok(None));
    assert_eq!(a.decode_standalone(&hex("82 0001 6101 62"), usize::MAX, |_, _, _| {}), Ok(Some(Entries::default())));
}

#[test]
fn list_too_large() {
    // ":method" and "GET" count 7 + 3 + 32.
    let mut seen = 0;
    assert_eq!(Decoder::new(4096).decode(&hex("82"), 42, |_, _, _| seen += 1), Ok(()));
    assert_eq!(Decoder::new(4096).decode(&hex("82 82"), 83, |_, _, _| seen += 1), Err(DecodeError::ListTooLarge));
    assert_eq!(seen, 2);
}

#[test]
fn an_entry_larger_than_the_table_empties_it() {
    let d = &mut Decoder::new(60);
    assert_eq!(decode(d, &hex("4001 6101 62")).unwrap(), owned(&[("a", "b")]));
    // 1 + 30 + 32 bytes: delivered, not kept.
    let long = format!("4001 611e {}", "63".repeat(30));
    assert_eq!(decode(d, &hex(&long)).unwrap(), owned(&[("a", &"c".repeat(30))]));
    assert_eq!((d.table.len(), d.table.size()), (0, 0));
}

#[test]
fn a_new_entry_may_name_the_entry_it_evicts() {
    // Two entries of 3 + 1 + 32 bytes do not fit 70: adding the second evicts the first,
    // whose name it takes by index 62 (section 4.4).
    let d = &mut Decoder::new(70);
    assert_eq!(decode(d, &hex("4003 782d 6101 31")).unwrap(), owned(&[("x-a", "1")]));
    assert_eq!(decode(d, &hex("7e01 32")).unwrap(), owned(&[("x-a", "2")]));
    assert_eq!(entries(&d.table), owned(&[("x-a", "2")]));
}

#[test]
fn scratch_is_kept_small() {
    let d = &mut Decoder::new(4096);
    let mut block = BytesMut::new();
    Encoder::new().encode([(&b"x"[..], &b"abc".repeat(10_000)[..], false)], &mut block);
    assert_eq!(decode(d, &block).unwrap()[0].1.len(), 30_000);
    assert_eq!(d.scratch.capacity(), 0);
    decode(d, &hex(C4[0])).unwrap();
    assert!(d.scratch.capacity() > 0);
}

fn arb_bytes(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(pool).prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..max),
    ]
}

fn arb_field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool)> {
    let names = &[":method", ":path", ":authority", ":status", "content-type", "cookie", "x-a", "x-b", "accept-encoding"];
    let values = &["GET", "/", "", "200", "gzip, deflate", "text/html", "a", "bb"];
    let value = prop_oneof![9 => arb_bytes(values, 40), 1 => proptest::collection::vec(any::<u8>(), 0..700)];
    (arb_bytes(names, 24), value, prop::bool::weighted(0.1))
}

/// A header block's fields, after the table sizes the peer's settings ask for before it.
type Block = (Vec<usize>, Vec<(Vec<u8>, Vec<u8>, bool)>);

fn arb_blocks() -> impl Strategy<Value = Vec<Block>> {
    let sizes = proptest::collection::vec(prop_oneof![Just(4096), 0usize..5000], 0..3);
    proptest::collection::vec((sizes, proptest::collection::vec(arb_field(), 0..12)), 1..8)
}

proptest! {
    #[test]
    fn decode_undoes_encode(blocks in arb_blocks()) {
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096);
        for (sizes, fields) in blocks {
            for size in sizes {
                e.set_max_table_size(size);
            }
            let mut out = BytesMut::new();
            e.encode(fields.iter().map(|(n, v, s)| (&n[..], &v[..], *s)), &mut out);
            prop_assert!(e.table.size() <= e.table.max_size());
            let want: Fields = fields.into_iter().map(|(n, v, _)| (n, v)).collect();
            prop_assert_eq!(decode(&mut d, &out).unwrap(), want);
            prop_assert_eq!(entries(&d.table), entries(&e.table));
            prop_assert_eq!((d.table.size(), d.table.max_size()), (e.table.size(), e.table.max_size()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 1..4),
        max_table_size in prop_oneof![Just(4096), 0usize..300],
        small_list in any::<bool>(),
    ) {
        let mut d = Decoder::new(max_table_size);
        for block in blocks {
            let _ = d.decode(&block, if small_list { 200 } else { usize::MAX }, |_, _, _| {});
            prop_assert!(d.table.size() <= d.table.max_size());
        }
    }

    #[test]
    fn damaged_blocks_never_panic(blocks in arb_blocks(), at in any::<usize>(), byte in any::<u8>()) {
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096);
        for (sizes, fields) in blocks {
            for size in sizes {
                e.set_max_table_size(size);
            }
            let mut out = BytesMut::new();
            e.encode(fields.iter().map(|(n, v, s)| (&n[..], &v[..], *s)), &mut out);
            let at = at % (out.len() + 1);
            if let Some(b) = out.get_mut(at) {
                *b ^= byte;
            }
            let _ = d.decode(&out, usize::MAX, |_, _, _| {});
        }
    }
}

#[test]
fn never_indexed_fields_are_said_to_be_so() {
    let mut e = Encoder::new();
    let mut block = BytesMut::new();
    e.encode([(&b"authorization"[..], &b"secret"[..], true), (b"x-a", b"1", false)], &mut block);
    let mut flags = Vec::new();
    Decoder::new(4096).decode(&block, usize::MAX, |n, _, never| flags.push((n.to_vec(), never))).unwrap();
    assert_eq!(flags, [(b"authorization".to_vec(), true), (b"x-a".to_vec(), false)]);
}
