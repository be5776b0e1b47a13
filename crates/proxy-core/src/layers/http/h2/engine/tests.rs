//! The engine's tests: exchanges between a client and a server engine over memory, and
//! frames written by hand where a peer misbehaves.

use super::frame::{Head, DEFAULT_MAX_FRAME, HEADER_LEN};
use super::*;

fn settings() -> Settings {
    Settings {
        max_concurrent_streams: 100,
        max_header_list_size: 64 * 1024,
        stream_window: 65_535,
        connection_window: 65_535,
        max_pending_accept_reset_streams: 20,
        max_local_error_reset_streams: 256,
        connect_protocol: false,
    }
}

/// A request for `path` on `https://a.test`.
fn request(method: &'static str, path: &'static str) -> RequestHead {
    RequestHead {
        method: Bytes::from_static(method.as_bytes()),
        scheme: Some(Bytes::from_static(b"https")),
        authority: Some(Bytes::from_static(b"a.test")),
        path: Some(Bytes::from_static(path.as_bytes())),
        ..RequestHead::default()
    }
}

fn ok() -> ResponseHead {
    ResponseHead { status: 200, fields: Headers::new() }
}

/// Move bytes both ways until neither side has anything more to say.
fn pump(client: &mut Engine, server: &mut Engine) -> (Vec<H2Event>, Vec<H2Event>) {
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        from_client.extend(server.poll());
        from_server.extend(client.poll());
        let to_server = client.take_output();
        let to_client = server.take_output();
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        server.receive(to_server);
        client.receive(to_client);
    }
    (from_client, from_server)
}

/// A client and a server after the client's GET of `path` (stream 1, no body) has
/// reached the server, and the server's key for its stream.
fn one_get(path: &'static str) -> (Engine, Engine, StreamKey) {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    client.open(1, request("GET", path), true);
    let (seen, _) = pump(&mut client, &mut server);
    let H2Event::Request { stream, .. } = seen[0] else { panic!("{seen:?}") };
    (client, server, stream)
}

/// Everything the core's HTTP/2 support rests on: h2, polled with a waker that does
/// nothing, over buffers, completes a whole exchange in both directions.
#[test]
fn an_exchange_with_body_and_trailers_over_memory() {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    let request = request("POST", "/up");
    client.open(7, request, false);
    client.send_data(7, Bytes::from_static(b"hello "));
    client.send_data(7, Bytes::from_static(b"world"));
    let mut trailers = Headers::new();
    trailers.append("grpc-status", "0");
    client.finish(7, Some(trailers));
    let (seen, _) = pump(&mut client, &mut server);
    let H2Event::Request { stream, head, end_stream: false } = &seen[0] else { panic!("{seen:?}") };
    assert_eq!(head.path.as_deref(), Some(&b"/up"[..]));
    let stream = *stream;
    let body: Vec<u8> = seen.iter().filter_map(|e| match e { H2Event::Data { data, .. } => Some(data.to_vec()), _ => None }).flatten().collect();
    assert_eq!(body, b"hello world");
    assert!(matches!(seen.last(), Some(H2Event::End { trailers: Some(t), .. }) if t.get("grpc-status") == Some(&b"0"[..])));

    server.respond(stream, ok(), false);
    server.send_data(stream, Bytes::from(vec![b'x'; 200_000]));
    server.finish(stream, None);
    let (_, seen) = pump(&mut client, &mut server);
    assert!(matches!(&seen[0], H2Event::Response { stream: 7, head, end_stream: false } if head.status == 200));
    let len: usize = seen.iter().map(|e| match e { H2Event::Data { data, .. } => data.len(), _ => 0 }).sum();
    assert_eq!(len, 200_000, "a body bigger than the window arrives whole");
    assert!(matches!(seen.last(), Some(H2Event::End { stream: 7, trailers: None })));
}

/// A frame as a peer writes it.
fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A server that indexes nothing it sends (nginx) sends each response's head as the same
/// bytes: the repeats are taken as the first was decoded ([`Repeat`]), their fields still
/// entered in the table, as a later block that names the oldest entry shows.
#[test]
fn a_response_head_block_sent_again_is_taken_as_before() {
    let mut client = Engine::client(&settings());
    client.receive(Bytes::from(raw(frame::SETTINGS, 0, 0, &[])));
    client.poll();
    for key in 1..=4 {
        client.open(key, request("GET", "/"), true);
    }
    client.poll();
    // :status 200, then server: nginx and content-type: text/plain as new literals with
    // indexing, of the static table's names (54, 31): two entries per block.
    let block = [&[0x88, 0x76, 5][..], b"nginx", &[0x5f, 10], b"text/plain"].concat();
    let flags = frame::END_HEADERS | frame::END_STREAM;
    let mut input = Vec::new();
    for id in [1, 3, 5] {
        input.extend(raw(frame::HEADERS, flags, id, &block));
    }
    // 62 is the newest entry (content-type, of the third block); 67, the sixth, the
    // oldest (server, of the first): there only if each repeat entered its two.
    input.extend(raw(frame::HEADERS, flags, 7, &[0x88, 0xc3, 0xbe]));
    client.receive(Bytes::from(input));
    let events = client.poll();
    let heads: Vec<&ResponseHead> =
        events.iter().filter_map(|e| if let H2Event::Response { head, .. } = e { Some(head) } else { None }).collect();
    assert_eq!(heads.len(), 4, "{events:?}");
    for head in heads {
        assert_eq!(head.status, 200);
        assert_eq!(head.fields.get("server"), Some(&b"nginx"[..]));
        assert_eq!(head.fields.get("content-type"), Some(&b"text/plain"[..]));
    }
    let repeat = client.repeat.as_deref().expect("the block is kept");
    assert_eq!(repeat.block, block);
    // The last block, which names the dynamic table, was not kept; nothing failed.
    assert!(!events.iter().any(|e| matches!(e, H2Event::Closed { .. })));
}

/// A stream that is not being read keeps its window closed: the sender stops after one
/// window, and goes on when reading resumes.
#[test]
fn an_unread_stream_stops_its_sender_after_one_window() {
    let (mut client, mut server, stream) = one_get("/");
    server.respond(stream, ok(), false);
    server.send_data(stream, Bytes::from(vec![0; 300_000]));
    server.finish(stream, None);
    client.poll();
    client.set_reading(1, false);
    let (_, seen) = pump(&mut client, &mut server);
    assert!(seen.iter().all(|e| !matches!(e, H2Event::Data { .. })));
    assert!(server.backlog(stream) >= 300_000 - 65_535, "the server holds what the window refused");
    client.set_reading(1, true);
    let (_, seen) = pump(&mut client, &mut server);
    let len: usize = seen.iter().map(|e| match e { H2Event::Data { data, .. } => data.len(), _ => 0 }).sum();
    assert_eq!(len, 300_000);
    assert_eq!(server.backlog(stream), 0);
}

/// A server's graceful GOAWAY lets the stream in progress finish, and h2 ends the client
/// connection in the same poll that reads the last response: the response must still be
/// handed out, not reset with the connection.
#[test]
fn a_response_completed_by_the_last_frames_before_goaway_is_delivered() {
    let (mut client, mut server, stream) = one_get("/slow");
    server.shutdown(None);
    let (_, seen) = pump(&mut client, &mut server);
    assert!(seen.is_empty(), "the stream in progress survives the GOAWAY: {seen:?}");

    server.respond(stream, ok(), false);
    server.send_data(stream, Bytes::from_static(b"done"));
    server.finish(stream, None);
    let (_, seen) = pump(&mut client, &mut server);
    assert!(matches!(&seen[0], H2Event::Response { stream: 1, head, .. } if head.status == 200), "{seen:?}");
    assert!(matches!(&seen[1], H2Event::Data { stream: 1, data } if data == "done"), "{seen:?}");
    assert!(matches!(&seen[2], H2Event::End { stream: 1, trailers: None }), "{seen:?}");
    assert!(matches!(&seen[3..], [H2Event::Closed { error: None }]), "{seen:?}");
}

/// Requests opened at once on a new connection, before the server's SETTINGS arrive,
/// must not exceed a stream limit the server is about to announce: the excess would be
/// refused (REFUSED_STREAM) rather than wait.
#[test]
fn requests_before_the_servers_settings_wait_for_its_stream_limit() {
    let limited = Settings { max_concurrent_streams: 5, ..settings() };
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&limited));
    for key in 1..=20 {
        client.open(key, request("GET", "/"), true);
    }
    let mut answered = Vec::new();
    for _ in 0..20 {
        let (seen, from_server) = pump(&mut client, &mut server);
        for event in from_server {
            match event {
                H2Event::Response { stream, .. } => answered.push(stream),
                other => panic!("{other:?}"),
            }
        }
        let requests: Vec<StreamKey> =
            seen.iter().filter_map(|e| if let H2Event::Request { stream, .. } = e { Some(*stream) } else { None }).collect();
        assert!(requests.len() <= 5, "{} streams at once", requests.len());
        for stream in requests {
            server.respond(stream, ok(), true);
        }
        if answered.len() == 20 {
            break;
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=20).collect::<Vec<_>>());
}

/// The headers of the frames in `bytes`.
fn heads(mut bytes: &[u8]) -> Vec<Head> {
    let mut list = Vec::new();
    while let Some(head) = Head::parse(bytes) {
        list.push(head);
        bytes = &bytes[HEADER_LEN + head.len..];
    }
    list
}

/// The frames of `bytes`: (type, stream) each.
fn frame_list(bytes: &[u8]) -> Vec<(u8, u32)> {
    heads(bytes).iter().map(|head| (head.kind, head.stream)).collect()
}

/// A request the server has room for goes out as it is opened, no poll needed; one
/// opened while the server's bytes wait unread (they might lower the limit) waits for
/// the poll that reads them. A poll that finds nothing to do changes nothing, so polling
/// again finds nothing; anything asked of the engine after it is acted on.
#[test]
fn a_request_with_room_goes_out_as_it_is_opened_and_a_quiet_poll_is_repeated_for_nothing() {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    client.open(1, request("GET", "/a"), true);
    // Until the server's SETTINGS, one stream: the second waits.
    client.open(3, request("GET", "/b"), true);
    let sent = frame_list(&client.take_output()[PREFACE.len()..]);
    assert_eq!(sent, [(frame::SETTINGS, 0), (frame::HEADERS, 1)], "before any poll");
    assert!(client.poll().is_empty());
    assert!(client.take_output().is_empty(), "a quiet poll");
    assert!(client.poll().is_empty());
    // The server's SETTINGS, received but not read yet: the next request waits for them.
    server.receive(Bytes::from_static(PREFACE));
    assert!(server.poll().is_empty());
    client.receive(server.take_output());
    client.open(5, request("GET", "/c"), true);
    assert!(client.take_output().is_empty(), "nothing goes out before the poll reads the settings");
    assert!(client.poll().is_empty());
    let sent = frame_list(&client.take_output());
    assert_eq!(sent, [(frame::SETTINGS, 0), (frame::HEADERS, 3), (frame::HEADERS, 5)], "the ack, then both waiting requests in order");
    // Quiet again; an answer for stream 1 (`:status 200`, static index 8) is read at
    // the next poll.
    assert!(client.poll().is_empty());
    let mut answer = BytesMut::new();
    frame::put_header_block(&mut answer, 1, &[0x88], true, DEFAULT_MAX_FRAME);
    client.receive(answer.freeze());
    let events = client.poll();
    assert!(matches!(events[..], [H2Event::Response { stream: 1, end_stream: true, .. }]), "{events:?}");
}

/// The bytes a client sends for a POST of three 3000-byte chunks, each sent by a poll of
/// its own (so each is a DATA frame), after the SETTINGS exchange, and where each of its
/// DATA frames begins.
fn upload_wire(client: &mut Engine, server: &mut Engine) -> (Bytes, Vec<usize>) {
    pump(client, server);
    client.open(1, request("POST", "/up"), false);
    for fill in [b'a', b'b', b'c'] {
        client.send_data(1, Bytes::from(vec![fill; 3000]));
        client.poll();
    }
    client.finish(1, None);
    client.poll();
    let wire = client.take_output();
    let (mut at, mut data) = (0, Vec::new());
    while let Some(head) = Head::parse(&wire[at..]) {
        if head.kind == frame::DATA && head.len > 0 {
            data.push(at);
        }
        at += HEADER_LEN + head.len;
    }
    assert_eq!((at, data.len()), (wire.len(), 3));
    (wire, data)
}

/// The body and whether the message on stream 1 ended, from an engine's events.
fn body_seen(events: &[H2Event]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    for event in events {
        if let H2Event::Data { data, .. } = event {
            body.extend_from_slice(data);
        }
    }
    (body, matches!(events.last(), Some(H2Event::End { stream: 1, .. })))
}

/// Received bytes may end anywhere in a frame, its header included: split at every
/// point, in two reads or in three, the server reads the same request and body.
#[test]
fn frames_split_anywhere_between_reads_are_read_whole() {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    let (wire, _) = upload_wire(&mut client, &mut server);
    let mut expected = Vec::new();
    for fill in [b'a', b'b', b'c'] {
        expected.extend(std::iter::repeat_n(fill, 3000));
    }
    let splits: Vec<Vec<usize>> = (1..wire.len()).map(|at| vec![at]).chain((1..wire.len() - 9).step_by(7).map(|at| vec![at, at + 9])).collect();
    for points in splits {
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
        let (wire, _) = upload_wire(&mut client, &mut server);
        let mut events = Vec::new();
        let mut from = 0;
        for to in points.iter().copied().chain([wire.len()]) {
            server.receive(wire.slice(from..to));
            events.extend(server.poll());
            from = to;
        }
        assert!(matches!(events.first(), Some(H2Event::Request { stream: 1, end_stream: false, .. })), "split at {points:?}: {events:?}");
        assert_eq!(body_seen(&events), (expected.clone(), true), "split at {points:?}");
    }
}

/// A read that ends inside a frame costs a copy of that frame only: the frames after it
/// in the next read are handed out where they arrived.
#[test]
fn after_a_frame_split_between_reads_the_next_frames_are_read_in_place() {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    let (wire, data) = upload_wire(&mut client, &mut server);
    let split = data[0] + HEADER_LEN + 100;
    server.receive(Bytes::copy_from_slice(&wire[..split]));
    let rest = Bytes::copy_from_slice(&wire[split..]);
    let place = rest.as_ptr_range();
    server.receive(rest);
    let events = server.poll();
    let chunks: Vec<(usize, bool)> = events
        .iter()
        .filter_map(|e| match e {
            H2Event::Data { data, .. } => Some((data.len(), place.contains(&data.as_ptr()))),
            _ => None,
        })
        .collect();
    // (length, handed out where it arrived)
    assert_eq!(chunks, [(3000, false), (3000, true), (3000, true)]);
    assert!(body_seen(&events).1);
}

/// A body queued in small chunks (nginx's DATA frames are 8 KiB) leaves in frames as
/// large as the peer allows, each chunk's bytes in order; a chunk larger than the rest of
/// a frame is split across two.
#[test]
fn queued_chunks_leave_in_full_frames() {
    let (mut client, mut server, stream) = one_get("/");
    server.respond(stream, ok(), false);
    let mut sent = Vec::new();
    for (i, len) in [8192, 8192, 8192, 10_000, 3].into_iter().enumerate() {
        let chunk: Vec<u8> = (0..len).map(|n| (n * 7 + i) as u8).collect();
        sent.extend_from_slice(&chunk);
        server.send_data(stream, Bytes::from(chunk));
    }
    server.finish(stream, None);
    assert!(server.poll().is_empty());
    let wire = server.take_output();
    let data: Vec<Head> = heads(&wire).into_iter().filter(|head| head.kind == frame::DATA).collect();
    let lens: Vec<usize> = data.iter().map(|head| head.len).collect();
    assert_eq!(lens, [16_384, 16_384, 1_811], "three frames for five chunks");
    assert!(data.last().is_some_and(|head| head.has(frame::END_STREAM)), "the last frame ends the stream");
    client.receive(wire);
    let events = client.poll();
    assert_eq!(body_seen(&events).0, sent);
    assert!(matches!(events.last(), Some(H2Event::End { stream: 1, trailers: None })), "{events:?}");
}

/// The same response head, sent again while the table is as the last sending left it, goes
/// out as the same bytes without being encoded ([`SentRepeat`]); a client decodes every one
/// alike, and a head that changes the table in between has the next one encoded afresh.
#[test]
fn a_response_head_sent_again_goes_out_as_the_same_block() {
    let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
    let mut fields = Headers::new();
    fields.append("server", "nginx");
    fields.append("date", "Sun, 06 Dec 2026 12:00:00 GMT");
    let head = ResponseHead { status: 200, fields };
    let mut blocks = Vec::new();
    for key in 1..=5u64 {
        if key == 4 {
            // Another head in between adds an entry: the table changed.
            client.open(100, request("GET", "/other"), true);
            let (seen, _) = pump(&mut client, &mut server);
            let H2Event::Request { stream, .. } = seen[0] else { panic!("{seen:?}") };
            let mut other = Headers::new();
            other.append("x-new", "1");
            server.respond(stream, ResponseHead { status: 200, fields: other }, true);
            pump(&mut client, &mut server);
        }
        client.open(key, request("GET", "/"), true);
        let (seen, _) = pump(&mut client, &mut server);
        let H2Event::Request { stream, .. } = seen[0] else { panic!("{seen:?}") };
        server.respond(stream, head.clone(), true);
        let out = server.take_output();
        let frames = heads(&out);
        assert_eq!(frames.len(), 1, "one HEADERS frame");
        blocks.push((out[HEADER_LEN..].to_vec(), server.sent.as_deref().and_then(|s| s.block.clone())));
        client.receive(out);
        let events = client.poll();
        let Some(H2Event::Response { head: got, .. }) = events.iter().find(|e| matches!(e, H2Event::Response { .. })) else { panic!("{events:?}") };
        assert_eq!((got.status, got.fields.get("server"), got.fields.get("date")), (200, Some(&b"nginx"[..]), Some(&b"Sun, 06 Dec 2026 12:00:00 GMT"[..])));
    }
    // First: server entered in the table; second: found there, so kept; third: the kept bytes.
    assert!(blocks[0].1.is_none(), "kept only once it repeats");
    assert_ne!(blocks[0].0, blocks[1].0);
    assert_eq!(blocks[1].1.as_ref().map(|(_, b)| b.to_vec()), Some(blocks[1].0.clone()));
    assert_eq!(blocks[2].0, blocks[1].0, "sent again as the same block");
    // After x-new entered the table, the index of server moved: encoded afresh, then kept.
    assert_ne!(blocks[3].0, blocks[2].0);
    assert_eq!(blocks[4].0, blocks[3].0);
    // A head larger than a usual one is not kept: it would stay with an idle connection.
    client.open(7, request("GET", "/big"), true);
    let (seen, _) = pump(&mut client, &mut server);
    let H2Event::Request { stream, .. } = seen[0] else { panic!("{seen:?}") };
    let mut big = Headers::new();
    big.append("x-big", "x".repeat(2 * REPEAT_MAX));
    server.respond(stream, ResponseHead { status: 200, fields: big }, true);
    assert!(server.sent.is_none());
}

proptest::proptest! {
    /// Whatever heads come in whatever order, shared or copied, with the table's size changed
    /// between them or an informational head adding an entry, every head the client decodes
    /// is the head the server sent: a block sent again is sent only while it still encodes the
    /// same ([`SentRepeat`]).
    #[test]
    fn response_heads_sent_again_decode_as_sent(
        steps in proptest::collection::vec((0usize..5, proptest::option::of(0usize..4), proptest::bool::ANY), 1..40),
    ) {
        fn build(set: &[(&'static str, &'static str)]) -> Headers {
            let mut fields = Headers::new();
            for (name, value) in set {
                fields.append(*name, *value);
            }
            fields
        }
        let field_sets: [&[(&'static str, &'static str)]; 3] = [
            &[("server", "nginx"), ("date", "Sun, 06 Dec 2026 12:00:00 GMT"), ("content-type", "text/plain")],
            &[("server", "nginx"), ("etag", "\"5f-1\""), ("x-long", "abcdefghijklmnopqrstuvwxyz0123456789")],
            &[("cache-control", "no-cache")],
        ];
        let shared: Vec<Headers> = field_sets.iter().map(|set| build(set)).collect();
        let (mut client, mut server) = (Engine::client(&settings()), Engine::server(&settings()));
        for (key, (pick, size, interim)) in steps.into_iter().enumerate() {
            if let Some(size) = size {
                server.encoder.set_max_table_size([0, 100, 256, 4096][size]);
            }
            // 0..3: the shared heads; 3, 4: copies of the first two, equal but not shared.
            let (status, fields) = match pick {
                0..=2 => (200 + pick as u16, shared[pick].clone()),
                _ => (200 + (pick - 3) as u16, build(field_sets[pick - 3])),
            };
            let key = key as u64 + 1;
            client.open(key, request("GET", "/"), true);
            let (seen, _) = pump(&mut client, &mut server);
            let Some(H2Event::Request { stream, .. }) = seen.into_iter().find(|e| matches!(e, H2Event::Request { .. })) else {
                panic!("no request")
            };
            if interim {
                // A 103 whose field is new to the table: the entries after it move.
                let mut hints = Headers::new();
                hints.append("link", format!("</{key}.css>; rel=preload"));
                server.interim(stream, ResponseHead { status: 103, fields: hints });
            }
            server.respond(stream, ResponseHead { status, fields: fields.clone() }, true);
            let (_, got) = pump(&mut client, &mut server);
            let head = got.iter().find_map(|e| match e {
                H2Event::Response { stream, head, .. } if *stream == key && head.status != 103 => Some(head),
                _ => None,
            });
            let head = head.expect("the response reaches the client");
            proptest::prop_assert_eq!(head.status, status);
            proptest::prop_assert_eq!(&head.fields, &fields);
        }
    }
}
