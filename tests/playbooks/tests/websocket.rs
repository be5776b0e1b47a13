//! The WebSocket layer: what a `101` to `websocket` turns a connection into.

use playbooks::ws::*;
use playbooks::*;
use proxy_core::websocket::Peer;

const WS_HOOKS: [HookKind; 3] = [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketEnd];

/// A playbook past the upgrade: the client speaks WebSocket to S1 through the proxy.
fn upgraded(hooks: HookSet, limits: WebSocketLimits) -> Playbook {
    let start = hooks.contains(HookKind::WebSocketStart);
    let book = Playbook::new(ws_config(hooks, limits))
        .recv(CLIENT, UPGRADE)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, UPGRADE_UPSTREAM))
        .recv(S1, SWITCHING)
        .expect(send(CLIENT, SWITCHING_DOWNSTREAM));
    if start {
        book.expect(hook(F1, HookKind::WebSocketStart).inspect(|f| {
            assert_eq!(f.request.url(), "http://a.test/chat");
            assert_eq!(f.response.as_ref().unwrap().status, 101);
        }))
    } else {
        book
    }
}

fn streaming() -> Playbook {
    upgraded(HookSet::NONE, WebSocketLimits::default())
}

#[test]
fn messages_stream_both_ways_unchanged() {
    streaming()
        // The client's frame keeps its key and its masked bytes.
        .recv(CLIENT, client_text("Hello"))
        .expect(send(S1, client_text("Hello")))
        .recv(S1, server_text("Hi there"))
        .expect(send(CLIENT, server_text("Hi there")))
        .recv(S1, frame(true, BINARY, [0u8, 1, 2, 255], None))
        .expect(send(CLIENT, frame(true, BINARY, [0u8, 1, 2, 255], None)))
        .run();
}

fn held() -> Playbook {
    upgraded(HookSet::NONE.with(HookKind::WebSocketMessage), WebSocketLimits::default())
}

/// The close frame the proxy sends a client (unmasked).
fn close_to_client(code: u16, reason: &str) -> Vec<u8> {
    frame(true, CLOSE, close_payload(code, reason), None)
}

/// The close frame the proxy sends a server, masked with its `n`th key.
fn close_to_server(code: u16, reason: &str, n: u8) -> Vec<u8> {
    frame(true, CLOSE, close_payload(code, reason), Some(proxy_key(n)))
}

#[test]
fn the_extension_offer_is_not_passed_on() {
    let upgrade = UPGRADE.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: x-unknown; a=1\r\n\r\n");
    Playbook::new(ws_config(HookSet::NONE, WebSocketLimits::default()))
        .recv(CLIENT, upgrade)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, UPGRADE_UPSTREAM))
        .run();
}

#[test]
fn a_frame_cut_across_reads_goes_on_piece_by_piece() {
    // Each piece leaves as a frame of its own as soon as it is here: the client's masked bytes
    // unchanged, the key rotated to where the piece starts.
    let whole = client_text("Hello, world");
    let (first, rest) = whole.split_at(6 + 5);
    let mut key = CLIENT_KEY;
    key.rotate_left(1);
    let second_piece: Vec<u8> = "world".bytes().enumerate().map(|(i, b)| b ^ CLIENT_KEY[(i + 7) % 4]).collect();
    let mut expected_rest = vec![0x80, 0x87];
    expected_rest.extend_from_slice(&key);
    expected_rest.extend(", ".bytes().enumerate().map(|(i, b)| b ^ CLIENT_KEY[(i + 5) % 4]));
    expected_rest.extend(second_piece);
    streaming()
        .recv(CLIENT, first)
        .expect(send(S1, frame(false, TEXT, "Hello", Some(CLIENT_KEY))))
        .recv(CLIENT, rest)
        .expect(send(S1, expected_rest))
        .run();
}

#[test]
fn a_fragmented_message_streams_fragment_by_fragment() {
    streaming()
        .recv(S1, frame(false, TEXT, "one ", None))
        .expect(send(CLIENT, frame(false, TEXT, "one ", None)))
        .recv(S1, frame(false, CONT, "two ", None))
        .expect(send(CLIENT, frame(false, CONT, "two ", None)))
        .recv(S1, frame(true, CONT, "three", None))
        .expect(send(CLIENT, frame(true, CONT, "three", None)))
        .run();
}

#[test]
fn a_ping_between_fragments_goes_through_at_once() {
    streaming()
        .recv(CLIENT, frame(false, BINARY, "ab", Some(CLIENT_KEY)))
        .expect(send(S1, frame(false, BINARY, "ab", Some(CLIENT_KEY))))
        .recv(CLIENT, frame(true, PING, "still there?", Some(CLIENT_KEY)))
        .expect(send(S1, frame(true, PING, "still there?", Some(proxy_key(0)))))
        .recv(S1, frame(true, PONG, "still there?", None))
        .expect(send(CLIENT, frame(true, PONG, "still there?", None)))
        .recv(CLIENT, frame(true, CONT, "cd", Some(CLIENT_KEY)))
        .expect(send(S1, frame(true, CONT, "cd", Some(CLIENT_KEY))))
        .run();
}

#[test]
fn a_held_fragmented_message_reaches_the_hook_whole_with_a_ping_passing_meanwhile() {
    held()
        .recv(CLIENT, frame(false, TEXT, "Hel", Some(CLIENT_KEY)))
        .recv(CLIENT, frame(true, PING, "", Some(CLIENT_KEY)))
        .expect(send(S1, frame(true, PING, "", Some(proxy_key(0)))))
        .recv(CLIENT, frame(true, CONT, "lo", Some(CLIENT_KEY)))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| {
            assert_eq!((m.from, m.kind, &m.payload[..], m.last), (Peer::Client, MessageKind::Text, &b"Hello"[..], true));
        }))
        .reply(F1, HookReply::Continue)
        .expect(send(S1, frame(true, TEXT, "Hello", Some(proxy_key(1)))))
        .expect(resume(CLIENT))
        .run_split();
}

#[test]
fn the_hook_changes_and_drops_messages() {
    held()
        .recv(S1, server_text("secret"))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage))
        .reply(F1, replace(F1, MessageKind::Text, "redacted"))
        .expect(send(CLIENT, server_text("redacted")))
        .expect(resume(S1))
        .recv(S1, frame(true, BINARY, [1u8, 2, 3], None))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| assert_eq!(m.kind, MessageKind::Binary)))
        .reply(F1, HookReply::Drop)
        .expect(resume(S1))
        .recv(CLIENT, client_text("to the server"))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage))
        .reply(F1, replace(F1, MessageKind::Binary, "bytes now"))
        .expect(send(S1, frame(true, BINARY, "bytes now", Some(proxy_key(0)))))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn a_hook_making_invalid_text_drops_the_message() {
    held()
        .recv(S1, server_text("fine"))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage))
        .reply(F1, replace(F1, MessageKind::Text, &b"\xff\xfe"[..]))
        .expect(log("not UTF-8: dropped"))
        .expect(resume(S1))
        .run();
}

#[test]
fn one_hook_at_a_time_each_sender_waits_for_its_own() {
    held()
        .recv(CLIENT, client_text("c1"))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| assert_eq!(&m.payload[..], b"c1")))
        // The server's message waits its turn; the server is not read meanwhile.
        .recv(S1, server_text("s1"))
        .expect(pause(S1))
        .reply(F1, HookReply::Continue)
        .expect(send(S1, frame(true, TEXT, "c1", Some(proxy_key(0)))))
        .expect(resume(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| assert_eq!(&m.payload[..], b"s1")))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, server_text("s1")))
        .expect(resume(S1))
        .run();
}

#[test]
fn kill_ends_both_connections() {
    upgraded(WS_HOOKS.into_iter().collect(), WebSocketLimits::default())
        .recv(CLIENT, client_text("bye"))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage))
        .reply(F1, HookReply::Kill)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(|e| assert_eq!(e.error.as_deref(), Some("killed by hook"))))
        .expect_finished()
        .run();
}

#[test]
fn close_from_the_client_passes_code_and_reason_both_ways() {
    upgraded(WS_HOOKS.into_iter().collect(), WebSocketLimits::default())
        .recv(CLIENT, client_text("x"))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage))
        .reply(F1, HookReply::Continue)
        .expect(send(S1, frame(true, TEXT, "x", Some(proxy_key(0)))))
        .expect(resume(CLIENT))
        .recv(CLIENT, frame(true, CLOSE, close_payload(4001, "done here"), Some(CLIENT_KEY)))
        .expect(send(S1, close_to_server(4001, "done here", 1)))
        .expect_timeout(Some(std::time::Duration::from_secs(5)))
        .recv(S1, frame(true, CLOSE, close_payload(4001, "done here"), None))
        .expect(send(CLIENT, close_to_client(4001, "done here")))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(|e| {
            assert_eq!((e.code, e.reason.as_str(), e.closed_by, e.error.as_deref()), (Some(4001), "done here", Some(Peer::Client), None));
            assert_eq!(e.messages, [1, 0]);
        }))
        .expect_finished()
        .run();
}

#[test]
fn close_from_the_server() {
    upgraded(HookSet::NONE.with(HookKind::WebSocketEnd), WebSocketLimits::default())
        .recv(S1, frame(true, CLOSE, close_payload(1001, ""), None))
        .expect(send(CLIENT, close_to_client(1001, "")))
        .recv(CLIENT, frame(true, CLOSE, close_payload(1001, ""), Some(CLIENT_KEY)))
        .expect(send(S1, close_to_server(1001, "", 0)))
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(|e| {
            assert_eq!((e.code, e.closed_by), (Some(1001), Some(Peer::Server)));
        }))
        .expect_finished()
        .run();
}

#[test]
fn an_empty_close_frame_is_passed_on_as_empty() {
    upgraded(HookSet::NONE.with(HookKind::WebSocketEnd), WebSocketLimits::default())
        .recv(S1, frame(true, CLOSE, "", None))
        .expect(send(CLIENT, frame(true, CLOSE, "", None)))
        .recv(CLIENT, frame(true, CLOSE, "", Some(CLIENT_KEY)))
        .expect(send(S1, frame(true, CLOSE, "", Some(proxy_key(0)))))
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(|e| assert_eq!(e.code, None)))
        .run();
}

#[test]
fn a_peer_that_never_answers_the_close_is_closed_after_the_timeout() {
    streaming()
        .recv(CLIENT, frame(true, CLOSE, close_payload(1000, ""), Some(CLIENT_KEY)))
        .expect(send(S1, close_to_server(1000, "", 0)))
        .advance(std::time::Duration::from_secs(5))
        .wakeup()
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run();
}

#[test]
fn a_connection_lost_without_a_close_frame_closes_the_other() {
    upgraded(HookSet::NONE.with(HookKind::WebSocketEnd), WebSocketLimits::default())
        .recv(S1, frame(false, TEXT, "partial", None))
        .expect(send(CLIENT, frame(false, TEXT, "partial", None)))
        .closed(S1)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(|e| {
            assert_eq!((e.code, e.closed_by, e.messages), (None, Some(Peer::Server), [0, 0]));
        }))
        .expect_finished()
        .run();
}

/// A peer breaks the protocol: it gets `code` with `reason` and its connection closed; the
/// other gets 1001 naming the cause, and its answer ends the connection.
fn broken(from: Peer, bytes: Vec<u8>, code: u16, reason: &str) {
    let book = upgraded(HookSet::NONE.with(HookKind::WebSocketEnd), WebSocketLimits::default());
    let (conn, other) = match from {
        Peer::Client => (CLIENT, S1),
        Peer::Server => (S1, CLIENT),
    };
    let to_other = format!("{}: {reason}", from.as_str());
    let (to_breaker, to_other_frame, answer) = match from {
        Peer::Client => (
            close_to_client(code, reason),
            close_to_server(1001, &to_other, 0),
            frame(true, CLOSE, close_payload(1001, ""), None),
        ),
        Peer::Server => (
            close_to_server(code, reason, 0),
            close_to_client(1001, &to_other),
            frame(true, CLOSE, close_payload(1001, ""), Some(CLIENT_KEY)),
        ),
    };
    let expected_code = code;
    let expected_error = format!("{}: {reason}", from.as_str());
    book.recv(conn, bytes)
        .expect(send(conn, to_breaker))
        .expect(close(conn))
        .expect(send(other, to_other_frame))
        .expect(log(&format!("{} broke the protocol: {reason} (closing with {code})", from.as_str())))
        .recv(other, answer)
        .expect(close(other))
        .expect(hook(F1, HookKind::WebSocketEnd).inspect_end(move |e| {
            assert_eq!(e.code, Some(expected_code));
            assert_eq!(e.closed_by, Some(from));
            assert_eq!(e.error.as_deref(), Some(expected_error.as_str()));
        }))
        .expect_finished()
        .run();
}

#[test]
fn malformed_frames_earn_their_close_codes() {
    broken(Peer::Client, frame(true, 0x3, "", Some(CLIENT_KEY)), 1002, "reserved opcode 0x3");
    broken(Peer::Server, frame(true, 0xb, "", None), 1002, "reserved opcode 0xb");
    broken(Peer::Client, frame_rsv(true, 0b010, TEXT, "x", Some(CLIENT_KEY)), 1002, "reserved bits set (0b010)");
    broken(Peer::Server, frame_rsv(true, 0b100, TEXT, "x", None), 1002, "compressed frame without permessage-deflate");
    broken(Peer::Client, frame(true, TEXT, "plain", None), 1002, "unmasked frame from the client");
    broken(Peer::Server, frame(true, TEXT, "masked", Some([1, 1, 1, 1])), 1002, "masked frame from the server");
    broken(Peer::Server, frame(true, PING, [0u8; 126], None), 1002, "control frame with 126 bytes of payload (at most 125)");
    broken(Peer::Server, frame(false, PING, "", None), 1002, "fragmented control frame");
    broken(Peer::Server, frame(true, CONT, "x", None), 1002, "continuation frame outside a fragmented message");
    broken(Peer::Client, frame(true, CLOSE, close_payload(1005, ""), Some(CLIENT_KEY)), 1002, "invalid close code 1005");
    broken(Peer::Server, frame(true, CLOSE, close_payload(999, ""), None), 1002, "invalid close code 999");
    broken(Peer::Server, frame(true, CLOSE, [3u8], None), 1002, "close frame with a one-byte payload");
    broken(Peer::Server, frame(true, CLOSE, b"\x03\xe8\xc3", None), 1007, "close reason is not valid UTF-8");
    broken(Peer::Client, frame(true, TEXT, b"ok \xed\xa0\x80", Some(CLIENT_KEY)), 1007, "text message is not valid UTF-8");
}

#[test]
fn invalid_utf8_in_a_later_fragment_closes_with_1007() {
    let book = streaming()
        .recv(S1, frame(false, TEXT, b"fine so far \xce", None))
        .expect(send(CLIENT, frame(false, TEXT, b"fine so far \xce", None)));
    book.recv(S1, frame(true, CONT, b"\x41", None))
        .expect(send(S1, close_to_server(1007, "text message is not valid UTF-8", 0)))
        .expect(close(S1))
        .expect(send(CLIENT, close_to_client(1001, "server: text message is not valid UTF-8")))
        .run();
}

#[test]
fn a_held_message_over_the_limit_closes_with_1009() {
    let limits = WebSocketLimits { max_message: 8, oversize: Oversize::Close, ..WebSocketLimits::default() };
    upgraded(HookSet::NONE.with(HookKind::WebSocketMessage), limits)
        .recv(CLIENT, frame(false, BINARY, "12345", Some(CLIENT_KEY)))
        .recv(CLIENT, frame(true, CONT, "6789", Some(CLIENT_KEY)))
        .expect(send(CLIENT, close_to_client(1009, "message over 8 bytes")))
        .expect(close(CLIENT))
        .expect(send(S1, close_to_server(1001, "client: message over 8 bytes", 0)))
        .run();
}

#[test]
fn without_the_hook_a_message_over_the_limit_streams() {
    let limits = WebSocketLimits { max_message: 8, ..WebSocketLimits::default() };
    let big = "x".repeat(1000);
    upgraded(HookSet::NONE, limits)
        .recv(S1, server_text(&big))
        .expect(send(CLIENT, server_text(&big)))
        .run();
}

#[test]
fn over_the_limit_in_pieces_the_hook_sees_each_piece() {
    let limits = WebSocketLimits { max_message: 4, oversize: Oversize::Pieces, ..WebSocketLimits::default() };
    upgraded(HookSet::NONE.with(HookKind::WebSocketMessage), limits)
        // "aaé" then "bbb": the first piece stops before the cut character.
        .recv(S1, frame(false, TEXT, b"aa\xc3\xa9b\xc3", None))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| {
            assert_eq!((&m.payload[..], m.offset, m.last), ("aaéb".as_bytes(), 0, false));
        }))
        .reply(F1, replace(F1, MessageKind::Text, "AAÉB"))
        .expect(send(CLIENT, frame(false, TEXT, "AAÉB", None)))
        .expect(resume(S1))
        .recv(S1, frame(true, CONT, b"\xa9", None))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| {
            assert_eq!((&m.payload[..], m.offset, m.last), ("é".as_bytes(), 5, true));
        }))
        .reply(F1, HookReply::Drop)
        // Dropping the last piece still ends the message the first began.
        .expect(send(CLIENT, frame(true, CONT, "", None)))
        .expect(resume(S1))
        .run();
}

#[test]
fn injected_messages_go_both_ways_and_wait_for_a_fragmented_message() {
    streaming()
        .inject(F1, Peer::Client, MessageKind::Text, "from the proxy")
        .expect(send(CLIENT, server_text("from the proxy")))
        .inject(F1, Peer::Server, MessageKind::Binary, [7u8, 7])
        .expect(send(S1, frame(true, BINARY, [7u8, 7], Some(proxy_key(0)))))
        .recv(S1, frame(false, TEXT, "begun", None))
        .expect(send(CLIENT, frame(false, TEXT, "begun", None)))
        // Not inside the server's message: after it.
        .inject(F1, Peer::Client, MessageKind::Text, "waits")
        .recv(S1, frame(true, CONT, " and done", None))
        .expect(send(CLIENT, frame(true, CONT, " and done", None)))
        .expect(send(CLIENT, server_text("waits")))
        .inject(F1, Peer::Client, MessageKind::Text, &b"\xff"[..])
        .expect(log("not UTF-8"))
        .run();
}

#[test]
fn injection_after_the_close_is_dropped() {
    streaming()
        .recv(S1, frame(true, CLOSE, close_payload(1000, ""), None))
        .expect(send(CLIENT, close_to_client(1000, "")))
        .inject(F1, Peer::Client, MessageKind::Text, "too late")
        .expect(log("dropped: closing"))
        .run();
}

#[test]
fn bytes_behind_the_101_are_websocket_frames() {
    let mut switching_and_frame = SWITCHING.as_bytes().to_vec();
    switching_and_frame.extend(server_text("early"));
    Playbook::new(ws_config(HookSet::NONE, WebSocketLimits::default()))
        .recv(CLIENT, UPGRADE)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, UPGRADE_UPSTREAM))
        .recv(S1, switching_and_frame)
        .expect(send(CLIENT, SWITCHING_DOWNSTREAM))
        .expect(send(CLIENT, server_text("early")))
        .run();
}

#[test]
fn an_upgrade_to_another_protocol_stays_a_tunnel() {
    let upgrade = UPGRADE.replace("Upgrade: websocket", "Upgrade: x-raw");
    let upstream = UPGRADE_UPSTREAM.replace("Upgrade: websocket", "Upgrade: x-raw");
    let switching = SWITCHING.replace("Upgrade: websocket", "Upgrade: x-raw");
    let downstream = SWITCHING_DOWNSTREAM.replace("Upgrade: websocket", "Upgrade: x-raw");
    let hooks = HTTP_HOOKS.into_iter().chain(WS_HOOKS).collect();
    Playbook::new(ws_config(hooks, WebSocketLimits::default()))
        .ignore_pauses()
        .recv(CLIENT, upgrade)
        .expect(hook(F1, HookKind::RequestHeaders))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Request))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, upstream))
        .recv(S1, switching)
        .expect(send(CLIENT, downstream))
        // Not WebSocket: no frames are parsed, the bytes pass as they are.
        .recv(S1, b"\x83 not a frame")
        .expect(send(CLIENT, b"\x83 not a frame"))
        .run();
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate

/// Past an upgrade that negotiated `accepted`; returns the playbook and the `101` as the client
/// gets it.
fn deflated(hooks: HookSet, limits: WebSocketLimits, accepted: &str) -> Playbook {
    let upgrade = upgrade_with("permessage-deflate; client_max_window_bits, x-unknown");
    let upstream = UPGRADE_UPSTREAM.replace(
        "connection: Upgrade\r\n",
        "connection: Upgrade\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    let switching = switching_with(accepted);
    let downstream = SWITCHING_DOWNSTREAM.replace(
        "\r\nconnection: Upgrade",
        &format!("\r\nSec-WebSocket-Extensions: {accepted}\r\nconnection: Upgrade"),
    );
    Playbook::new(ws_config(hooks, limits))
        .recv(CLIENT, upgrade)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, upstream))
        .recv(S1, switching)
        .expect(send(CLIENT, downstream))
}

#[test]
fn compressed_messages_are_inflated_for_the_hook_and_compressed_again() {
    // RFC 7692 section 7.2.3.1: "Hello" compressed.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(deflate(b"Hello"), hello);
    deflated(HookSet::NONE.with(HookKind::WebSocketMessage), WebSocketLimits::default(), "permessage-deflate")
        .recv(CLIENT, frame_rsv(true, 0b100, TEXT, hello, Some(CLIENT_KEY)))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| assert_eq!(m.text(), Some("Hello"))))
        .reply(F1, replace(F1, MessageKind::Text, "Hello"))
        .expect(send(S1, frame_rsv(true, 0b100, TEXT, hello, Some(proxy_key(0)))))
        .expect(resume(CLIENT))
        // A message sent uncompressed (RSV1 clear) is read as it is, and compressed onwards.
        .recv(S1, server_text("Hello"))
        .expect(pause(S1))
        .expect(hook(F1, HookKind::WebSocketMessage).inspect_message(|m| assert_eq!(m.text(), Some("Hello"))))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, frame_rsv(true, 0b100, TEXT, hello, None)))
        .expect(resume(S1))
        .run();
}

#[test]
fn compressed_streaming_keeps_the_contexts_in_step() {
    // With context takeover the second "Hello" compresses to a back-reference into the first;
    // both sides' contexts must follow every message the proxy passes.
    let book = deflated(HookSet::NONE, WebSocketLimits::default(), "permessage-deflate");
    let hello = deflate(b"Hello");
    book.recv(S1, frame_rsv(true, 0b100, BINARY, &hello, None))
        .expect(send(CLIENT, frame_rsv(true, 0b100, BINARY, &hello, None)))
        // RFC 7692 section 7.2.3.2: "Hello" again, as a back-reference.
        .recv(S1, frame_rsv(true, 0b100, BINARY, [0xf2, 0x00, 0x11, 0x00, 0x00], None))
        // The proxy's own context encodes it another way; a reader that followed both
        // messages gets "Hello".
        .expect(send(CLIENT, frame_rsv(true, 0b100, BINARY, [0x02, 0x13, 0x00, 0x00], None)))
        .run();
    let mut reader = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(64);
    for message in [&hello[..], &[0x02, 0x13, 0x00, 0x00]] {
        let input = [message, &[0, 0, 0xff, 0xff]].concat();
        reader.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
    }
    assert_eq!(out, b"HelloHello");
}

#[test]
fn an_accepted_extension_the_proxy_cannot_read_ends_the_connection() {
    Playbook::new(ws_config(HookSet::NONE, WebSocketLimits::default()))
        .recv(CLIENT, UPGRADE)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, UPGRADE_UPSTREAM))
        .recv(S1, switching_with("x-webkit-deflate-frame"))
        .expect(send(CLIENT, SWITCHING_DOWNSTREAM.replace("\r\nconnection: Upgrade", "\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\nconnection: Upgrade")))
        .expect(log("cannot read: x-webkit-deflate-frame"))
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run();
}

#[test]
fn a_decompression_bomb_meets_the_message_limit() {
    let bomb = deflate(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 2048);
    for hooks in [HookSet::NONE, HookSet::NONE.with(HookKind::WebSocketMessage)] {
        // Under one chunk of inflation (64 KiB): the limit stops it before anything is passed on.
        let limits = WebSocketLimits { max_message: 50_000, ..WebSocketLimits::default() };
        deflated(hooks, limits, "permessage-deflate")
            .ignore_pauses()
            .recv(CLIENT, frame_rsv(true, 0b100, BINARY, &bomb, Some(CLIENT_KEY)))
            .expect(send(CLIENT, close_to_client(1009, "message inflates to over 50000 bytes")))
            .expect(close(CLIENT))
            .expect(send(S1, close_to_server(1001, "client: message inflates to over 50000 bytes", 0)))
            .run();
    }
}

#[test]
fn corrupt_compressed_data_closes_with_1007() {
    deflated(HookSet::NONE, WebSocketLimits::default(), "permessage-deflate")
        .recv(S1, frame_rsv(true, 0b100, TEXT, [0xff, 0xff, 0xff], None))
        .expect(send(S1, close_to_server(1007, "compressed message does not inflate: invalid block type", 0)))
        .expect(close(S1))
        .expect(send(CLIENT, close_to_client(1001, "server: compressed message does not inflate: invalid block type")))
        .run();
}

#[test]
fn inflation_waits_for_a_congested_destination() {
    // The client reads with an 8-bit window, which zlib cannot write: it gets the server's
    // compressed message uncompressed, 8 MiB from a few kilobytes. The proxy inflates only as
    // fast as the client takes it.
    use std::time::Instant;
    let config = ws_config(HookSet::NONE, WebSocketLimits::default());
    let high_water = config.high_water;
    let mut conn = Connection::new(std::sync::Arc::new(config), client_info());
    let now = Instant::now();
    let feed = |conn: &mut Connection, event: Event| -> Vec<Command> {
        conn.handle(now, event);
        std::iter::from_fn(|| conn.poll_command()).collect()
    };
    feed(&mut conn, Event::Start);
    feed(&mut conn, Event::DataReceived { conn: CLIENT, data: upgrade_with("permessage-deflate").into() });
    feed(&mut conn, Event::Opened { conn: S1 });
    let accepted = switching_with("permessage-deflate; server_max_window_bits=8");
    feed(&mut conn, Event::DataReceived { conn: S1, data: accepted.into() });
    let size = 8 << 20;
    let bomb = deflate(&vec![0u8; size]);
    assert!(bomb.len() < 64 * 1024);
    let mut to_client = Vec::new();
    let mut turns = 0;
    let mut out = feed(&mut conn, Event::DataReceived { conn: S1, data: frame_rsv(true, 0b100, BINARY, &bomb, None).into() });
    loop {
        let sent: usize = out
            .iter()
            .map(|c| match c {
                Command::SendData { conn, data } if *conn == CLIENT => {
                    to_client.extend_from_slice(data);
                    data.len()
                }
                _ => 0,
            })
            .sum();
        assert!(sent <= high_water + 2 * 64 * 1024, "turn {turns}: {sent} bytes queued for the client at once");
        if sent == 0 {
            break;
        }
        turns += 1;
        assert!(turns < 1000);
        out = feed(&mut conn, Event::WriteDrained { conn: CLIENT });
    }
    assert!(turns > 8, "the message went out in {turns} turns");
    // Uncompressed frames (RSV1 clear) carrying exactly the message.
    let mut payload = Vec::new();
    let mut at = 0;
    while at < to_client.len() {
        let (b0, b1) = (to_client[at], to_client[at + 1]);
        assert_eq!(b0 & 0x70, 0, "no RSV bits towards the client");
        let (len, head) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([to_client[at + 2], to_client[at + 3]]) as usize, 4),
            127 => (u64::from_be_bytes(to_client[at + 2..at + 10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        payload.extend_from_slice(&to_client[at + head..at + head + len]);
        at += head + len;
        if b0 & 0x80 != 0 {
            assert_eq!(at, to_client.len(), "the last frame is the message's end");
        }
    }
    assert_eq!(payload.len(), size);
    assert!(payload.iter().all(|&b| b == 0));
}
