//! HTTP/2 scenarios: the core between real HTTP/2 peers (or raw frames, for the abusive ones),
//! every version pairing, hooks per stream, trailers, resets, flow control, abuse limits.

use playbooks::h2::*;
use playbooks::pump::{Origins, Peer, Pump};
use proxy_core::{Config, ConnId, Hook, HookKind, HookReply, Http2Limits, Version};

const S1: ConnId = ConnId(1);

fn h2_origin() -> Origins {
    Box::new(|_| Some(Peer::H2(Box::new(H2Peer::server()))))
}

fn h1_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

/// Plain upstreams speak HTTP/2 with prior knowledge.
fn h2c_upstream() -> Config {
    Config { upstream_h2c: true, ..Config::default() }
}

fn h2_client(config: Config, origins: Origins) -> Pump {
    let mut pump = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), origins);
    pump.run();
    pump
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The response hook's view of the versions on each side.
fn versions(pump: &Pump) -> Vec<(Version, Version)> {
    let seen = pump.hooks.iter().filter_map(|h| match h {
        Hook::Response(flow) => Some((flow.request.version, flow.response.as_ref()?.version)),
        _ => None,
    });
    seen.collect()
}

#[test]
fn a_get_over_h2_on_both_sides() {
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().get(1, "http://a.test/x?y=1");
    pump.client_sends(b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 1, "logs: {:?}", pump.logs);
    let (stream, head) = &requests[0];
    assert_eq!(head.method, "GET");
    assert_eq!(head.uri.to_string(), "http://a.test/x?y=1");
    assert!(head.headers.get("host").is_none(), ":authority, not Host: {:?}", head.headers);
    pump.server_h2(S1).respond(*stream, 200, b"hello", None);
    pump.server_sends(S1, b"");
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(200));
    assert_eq!(client.body(1), b"hello");
    assert_eq!(client.ended(1), Some(None));
    assert_eq!(versions(&pump), vec![(Version::Http2, Version::Http2)]);
}

#[test]
fn an_h2_client_to_an_http1_server() {
    let mut pump = h2_client(Config::default(), h1_origin());
    pump.client_h2().get(1, "http://a.test/x");
    pump.client_sends(b"");
    assert_eq!(text(pump.server(S1).received()), "GET /x HTTP/1.1\r\nhost: a.test\r\n\r\n");
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello");
    let client = pump.client_h2();
    let response = client.response(1).expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-length"], "5");
    assert!(response.headers.get("connection").is_none(), "connection-specific fields stay behind");
    assert_eq!(client.body(1), b"hello");
    assert_eq!(client.ended(1), Some(None));
    assert_eq!(versions(&pump), vec![(Version::Http2, Version::Http11)]);
}

#[test]
fn an_http1_client_to_an_h2_server_with_trailers() {
    let mut pump = Pump::new(h2c_upstream(), Peer::Plain { received: Vec::new() }, h2_origin());
    pump.run();
    pump.client_sends(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nConnection: keep-alive, TE\r\n\r\n");
    let requests = pump.server_h2(S1).requests();
    let (stream, head) = &requests[0];
    assert_eq!(head.uri.to_string(), "http://a.test/x");
    assert_eq!(head.headers.get("te").map(|v| v.to_str().unwrap()), Some("trailers"));
    assert!(head.headers.get("connection").is_none() && head.headers.get("host").is_none());
    pump.server_h2(S1).respond(*stream, 200, b"hello", Some(trailers(&[("grpc-status", "0")])));
    pump.server_sends(S1, b"");
    assert_eq!(
        text(pump.client.received()),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"
    );
    assert_eq!(versions(&pump), vec![(Version::Http11, Version::Http2)]);
}

#[test]
fn a_hook_pending_on_one_stream_does_not_stall_another() {
    let hold_slow = |hook: &Hook| matches!(hook, Hook::RequestHeaders(flow) if flow.request.path == "/slow");
    let mut pump = h2_client(h2c_upstream(), h2_origin()).holding(hold_slow);
    pump.client_h2().get(1, "http://a.test/slow");
    pump.client_h2().get(3, "http://a.test/fast");
    pump.client_sends(b"");
    assert_eq!(pump.held.len(), 1);
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.iter().map(|(_, h)| h.uri.path()).collect::<Vec<_>>(), ["/fast"]);
    pump.server_h2(S1).respond(requests[0].0, 200, b"fast", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(3), b"fast");
    assert!(pump.client_h2().response(1).is_none(), "the slow one still waits");

    let (flow, kind) = pump.held[0];
    assert_eq!(kind, HookKind::RequestHeaders);
    pump.answer(flow, HookReply::Continue);
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 2, "the same connection carries the second stream");
    pump.server_h2(S1).respond(requests[1].0, 200, b"slow", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(1), b"slow");
    assert_eq!(pump.addrs.len(), 1, "one upstream connection");
}

#[test]
fn trailers_both_ways() {
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().post(1, "http://a.test/up", b"payload", Some(trailers(&[("x-checksum", "abc")])));
    pump.client_sends(b"");
    let server = pump.server_h2(S1);
    let (stream, _) = server.requests()[0];
    assert_eq!(server.body(stream), b"payload");
    assert_eq!(server.ended(stream).flatten().map(|t| t["x-checksum"].clone()), Some("abc".parse().unwrap()));
    server.respond(stream, 200, b"\0\0\0\0\x02hi", Some(trailers(&[("grpc-status", "0"), ("grpc-message", "ok")])));
    pump.server_sends(S1, b"");
    let client = pump.client_h2();
    assert_eq!(client.body(1), b"\0\0\0\0\x02hi");
    let trailers = client.ended(1).flatten().expect("trailers");
    assert_eq!((trailers["grpc-status"].to_str().unwrap(), trailers["grpc-message"].to_str().unwrap()), ("0", "ok"));
}

#[test]
fn a_client_reset_cancels_the_upstream_stream_only() {
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().get(1, "http://a.test/a");
    pump.client_sends(b"");
    let (stream, _) = pump.server_h2(S1).requests()[0];
    pump.client_h2().engine.reset(1, Reason::CANCEL);
    pump.client_sends(b"");
    assert_eq!(pump.server_h2(S1).reset_reason(stream), Some(Reason::CANCEL));
    assert!(pump.hook_kinds().contains(&HookKind::Error));
    // The connections live on.
    pump.client_h2().get(3, "http://a.test/b");
    pump.client_sends(b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 2);
    pump.server_h2(S1).respond(requests[1].0, 200, b"b", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(3), b"b");
    assert!(pump.closed.is_empty(), "{:?}", pump.closed);
}

#[test]
fn a_server_reset_before_the_response_is_a_502() {
    // Not sent again: unlike REFUSED_STREAM, this reset may come after the server acted on
    // the request.
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().get(1, "http://a.test/a");
    pump.client_sends(b"");
    let (stream, _) = pump.server_h2(S1).requests()[0];
    pump.server_h2(S1).engine.reset(stream, Reason::INTERNAL_ERROR);
    pump.server_sends(S1, b"");
    assert_eq!(pump.server_h2(S1).requests().len(), 1);
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(502));
    let body = text(&client.body(1));
    assert!(body.contains("the server reset the stream (INTERNAL_ERROR)"), "{body}");
}

#[test]
fn a_server_reset_mid_body_resets_the_client_stream() {
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().get(1, "http://a.test/a");
    pump.client_sends(b"");
    let (stream, _) = pump.server_h2(S1).requests()[0];
    let server = pump.server_h2(S1);
    server.engine.respond(stream, proxy_core::h2_engine::ResponseHead { status: 200, fields: Default::default() }, false);
    server.engine.send_data(stream, bytes::Bytes::from_static(b"part"));
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(1), b"part");
    pump.server_h2(S1).engine.reset(stream, Reason::INTERNAL_ERROR);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().reset_reason(1), Some(Reason::INTERNAL_ERROR));
    assert!(pump.client_h2().closed().is_none(), "only the stream fails");
}

#[test]
fn the_window_shuts_while_the_client_is_slow_and_reopens_when_it_reads() {
    let limits = Http2Limits { stream_window: 65_535, connection_window: 65_535, ..Http2Limits::default() };
    let config = Config { high_water: 16 * 1024, http2_limits: limits, ..h2c_upstream() };
    let mut pump = h2_client(config, h2_origin());
    pump.client_h2().get(1, "http://a.test/big");
    pump.client_sends(b"");
    let (stream, _) = pump.server_h2(S1).requests()[0];
    pump.client_h2().holding = true;
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    pump.server_h2(S1).respond(stream, 200, &body, None);
    pump.server_sends(S1, b"");
    // The client's window (64 KiB) is full. The proxy holds at most its own receive window
    // towards the server, plus what one read of it may add past the high-water mark; the
    // rest stays with the server.
    let held = pump.client_h2().held();
    assert!(held <= 70_000, "the client was sent {held} bytes past its window");
    let in_proxy = 2 * 65_535 + 16 * 1024;
    let backlog = pump.server_h2(S1).engine.backlog(stream);
    assert!(backlog >= 1024 * 1024 - held - in_proxy, "the server still holds only {backlog}");
    pump.client_h2().release();
    pump.client_sends(b"");
    for _ in 0..1000 {
        if pump.client_h2().ended(1).is_some() {
            break;
        }
        pump.server_sends(S1, b"");
        pump.client_sends(b"");
    }
    assert_eq!(pump.client_h2().body(1), body, "every byte, in order");
    assert_eq!(pump.server_h2(S1).engine.backlog(stream), 0);
}

/// Raw frames from a client that breaks the rules, and the frames the proxy answered with.
fn raw_client(config: Config, origins: Origins) -> Pump {
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(&preface());
    pump
}

fn goaway(pump: &Pump) -> Option<Reason> {
    frames(pump.client.received()).iter().find(|f| f.kind == GOAWAY).and_then(Frame::error_code)
}

#[test]
fn streams_over_the_concurrency_limit_are_refused() {
    let limits = Http2Limits { max_concurrent_streams: 2, ..Http2Limits::default() };
    let mut pump = raw_client(Config { http2_limits: limits, ..Config::default() }, h1_origin());
    let mut burst = Vec::new();
    for stream in [1, 3, 5] {
        burst.extend(frame(HEADERS, END_HEADERS, stream, &get_block("a.test", "/")));
    }
    pump.client_sends(&burst);
    let sent = frames(pump.client.received());
    let refused: Vec<(u32, Option<Reason>)> =
        sent.iter().filter(|f| f.kind == RST_STREAM).map(|f| (f.stream, f.error_code())).collect();
    assert_eq!(refused, vec![(5, Some(Reason::REFUSED_STREAM))]);
    assert_eq!(pump.addrs.len(), 2, "two streams went upstream");
    assert!(!pump.closed.contains(&ConnId::CLIENT));
}

#[test]
fn rapid_resets_close_the_connection_with_enhance_your_calm() {
    let limits = Http2Limits { max_resets: 10, ..Http2Limits::default() };
    let mut pump = raw_client(Config { http2_limits: limits, ..Config::default() }, h1_origin());
    // One stream and its reset per read, so each reaches the proxy before it is reset.
    for i in 0..12u32 {
        let stream = 1 + 2 * i;
        pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block("a.test", "/")));
        pump.client_sends(&rst(stream, Reason::CANCEL));
    }
    assert_eq!(goaway(&pump), Some(Reason::ENHANCE_YOUR_CALM), "logs: {:?}", pump.logs);
    assert!(pump.closed.contains(&ConnId::CLIENT));
    assert!(pump.logs.iter().any(|l| l.contains("reset more than 10 streams")), "{:?}", pump.logs);
}

#[test]
fn streams_reset_before_they_are_seen_are_limited_too() {
    let mut pump = raw_client(Config::default(), h1_origin());
    let mut burst = Vec::new();
    for i in 0..100u32 {
        let stream = 1 + 2 * i;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block("a.test", "/")));
        burst.extend(rst(stream, Reason::CANCEL));
    }
    pump.client_sends(&burst);
    assert_eq!(goaway(&pump), Some(Reason::ENHANCE_YOUR_CALM), "logs: {:?}", pump.logs);
    assert!(pump.closed.contains(&ConnId::CLIENT));
}

#[test]
fn a_continuation_flood_ends_the_connection() {
    let limits = Http2Limits { max_header_list_size: 16 * 1024, ..Http2Limits::default() };
    let mut pump = raw_client(Config { http2_limits: limits, ..Config::default() }, h1_origin());
    pump.client_sends(&frame(HEADERS, 0, 1, &get_block("a.test", "/")));
    // Field after field, never ending the header block.
    let mut field = vec![0x00, 0x05];
    field.extend_from_slice(b"x-pad");
    field.push(0x7f);
    field.push(0x81);
    field.push(0x07);
    field.extend(std::iter::repeat_n(b'a', 0x7f + 0x81 - 0x80 + 7 * 128));
    for _ in 0..200 {
        pump.client_sends(&frame(CONTINUATION, 0, 1, &field));
        if pump.closed.contains(&ConnId::CLIENT) {
            break;
        }
    }
    assert_eq!(goaway(&pump), Some(Reason::ENHANCE_YOUR_CALM), "logs: {:?}", pump.logs);
    assert!(pump.closed.contains(&ConnId::CLIENT));
    assert!(pump.addrs.is_empty(), "nothing went upstream");
}

#[test]
fn an_oversized_header_list_is_refused() {
    let limits = Http2Limits { max_header_list_size: 4 * 1024, ..Http2Limits::default() };
    let mut pump = raw_client(Config { http2_limits: limits, ..Config::default() }, h1_origin());
    let mut block = get_block("a.test", "/");
    for i in 0..10 {
        block.push(0x00);
        block.push(0x05);
        block.extend_from_slice(format!("x-p{i:02}").as_bytes());
        block.push(0x7f);
        block.push(0x81);
        block.push(0x07);
        block.extend(std::iter::repeat_n(b'a', 1024));
    }
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    let sent = frames(pump.client.received());
    // Answered 431 (Request Header Fields Too Large), the stream ended.
    let answer = sent.iter().find(|f| f.stream == 1 && f.kind == HEADERS).expect("an answer");
    // `:status: 431`: 0x48 (a literal indexed from here on, named by the static table's
    // `:status`), then the three digits as they are (Huffman would be no shorter).
    assert_eq!(answer.payload, [0x48, 0x03, b'4', b'3', b'1'], "{answer:?}");
    assert!(answer.flags & END_STREAM != 0);
    assert_eq!(goaway(&pump), None, "the connection lives on");
    assert!(pump.addrs.is_empty(), "nothing went upstream");
}

#[test]
fn a_local_answer_before_the_upload_ends_still_lets_the_upload_finish() {
    let config = h2c_upstream();
    let mut pump = h2_client(config, h2_origin()).replies(|hook| match hook {
        Hook::RequestHeaders(_) => HookReply::Respond(proxy_core::Response::text(403, "no uploads\n")),
        _ => HookReply::Continue,
    });
    let body = vec![7u8; 300_000];
    pump.client_h2().post(1, "http://a.test/up", &body, None);
    for _ in 0..100 {
        pump.client_sends(b"");
        if pump.client_h2().engine.backlog(1) == 0 {
            break;
        }
    }
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(403));
    assert_eq!(client.body(1), b"no uploads\n");
    assert_eq!(client.engine.backlog(1), 0, "the proxy kept reading the body it does not need");
    assert!(client.reset_reason(1).is_none());
    assert!(pump.addrs.is_empty(), "no upstream");
}

#[test]
fn a_stalled_upload_stream_is_408_and_reset_while_the_connection_goes_on() {
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().start_post(1, "http://a.test/up", b"part");
    pump.client_sends(b"");
    let (up, _) = pump.server_h2(S1).requests()[0];
    assert_eq!(pump.server_h2(S1).body(up), b"part");
    // Another stream comes and goes meanwhile; it does not count as stream 1's progress.
    pump.advance(std::time::Duration::from_secs(30));
    pump.client_h2().get(3, "http://a.test/b");
    pump.client_sends(b"");
    let (get, _) = pump.server_h2(S1).requests()[1];
    pump.server_h2(S1).respond(get, 200, b"b", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(3), b"b");
    assert!(pump.client_h2().response(1).is_none());
    pump.advance(std::time::Duration::from_secs(30));
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(408), "logs: {:?}", pump.logs);
    assert_eq!(text(&client.body(1)), "request timeout: client sent nothing of the request body for 60 s\n");
    // The client is asked to stop sending (RFC 9113 section 8.1), the upstream stream is cancelled.
    assert_eq!(client.reset_reason(1), Some(Reason::NO_ERROR));
    assert_eq!(pump.server_h2(S1).reset_reason(up), Some(Reason::CANCEL));
    assert_eq!(pump.hook_kinds().iter().filter(|k| **k == HookKind::Error).count(), 1);
    // The connection lives on.
    pump.client_h2().get(5, "http://a.test/c");
    pump.client_sends(b"");
    assert_eq!(pump.server_h2(S1).requests().len(), 3);
    assert!(pump.closed.is_empty(), "{:?}", pump.closed);
}

#[test]
fn a_refused_stream_is_sent_again_once() {
    // RFC 9113 section 8.7: REFUSED_STREAM means the server did not act on the request, so
    // a complete one goes again. A second refusal is the client's 502.
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().get(1, "http://a.test/a");
    pump.client_sends(b"");
    let (first, _) = pump.server_h2(S1).requests()[0];
    pump.server_h2(S1).engine.reset(first, Reason::REFUSED_STREAM);
    pump.server_sends(S1, b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 2, "sent again on the same connection; logs: {:?}", pump.logs);
    assert_eq!(requests[1].1.uri.to_string(), "http://a.test/a");
    pump.server_h2(S1).respond(requests[1].0, 200, b"a", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().response(1).map(|r| r.status.as_u16()), Some(200));
    assert_eq!(pump.client_h2().body(1), b"a");
    assert!(!pump.hook_kinds().contains(&HookKind::Error));

    pump.client_h2().get(3, "http://a.test/b");
    pump.client_sends(b"");
    for round in 0..2 {
        let (stream, _) = *pump.server_h2(S1).requests().last().unwrap();
        assert_eq!(pump.server_h2(S1).requests().len(), 3 + round);
        pump.server_h2(S1).engine.reset(stream, Reason::REFUSED_STREAM);
        pump.server_sends(S1, b"");
    }
    assert_eq!(pump.server_h2(S1).requests().len(), 4, "sent again once only");
    let client = pump.client_h2();
    assert_eq!(client.response(3).map(|r| r.status.as_u16()), Some(502));
    assert!(text(&client.body(3)).contains("the server refused the stream (REFUSED_STREAM)"), "{}", text(&client.body(3)));
}

#[test]
fn a_refused_streamed_upload_is_not_sent_again() {
    // A streamed body is not kept, so there is nothing whole to send again.
    let mut pump = h2_client(h2c_upstream(), h2_origin());
    pump.client_h2().post(1, "http://a.test/up", b"body", None);
    pump.client_sends(b"");
    let (first, _) = pump.server_h2(S1).requests()[0];
    pump.server_h2(S1).engine.reset(first, Reason::REFUSED_STREAM);
    pump.server_sends(S1, b"");
    assert_eq!(pump.server_h2(S1).requests().len(), 1);
    assert_eq!(pump.client_h2().response(1).map(|r| r.status.as_u16()), Some(502));
}

// ---------------------------------------------------------------------------------------------
// WebSocket over HTTP/2 (RFC 8441)

#[test]
fn an_h2_clients_websocket_to_an_http1_server() {
    use playbooks::ws::{client_text, close_payload, frame, server_text, CLOSE, CLIENT_KEY};
    // No hooks: the frames stream through, the client's as it masked them.
    let websocket = proxy_core::websocket::WebSocketLimits { mask_keys: playbooks::ws::keys(), ..Default::default() };
    let config = Config { hooks: proxy_core::HookSet::NONE, websocket, ..Config::default() };
    let mut pump = h2_client(config, h1_origin());
    pump.client_h2().websocket(1, "http://a.test/chat", &[("sec-websocket-version", "13")]);
    pump.client_sends(b"");
    // The server gets HTTP/1.1's upgrade, with a key the proxy made (16 bytes 1..=16).
    let key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    assert_eq!(
        text(pump.server(S1).received()),
        format!(
            "GET /chat HTTP/1.1\r\nhost: a.test\r\nsec-websocket-version: 13\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-key: {key}\r\n\r\n"
        )
    );
    pump.server_sends(
        S1,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
    );
    let client = pump.client_h2();
    let response = client.response(1).expect("a response");
    assert_eq!(response.status, 200, "RFC 8441: the switch is a 200");
    assert!(response.headers.get("upgrade").is_none() && response.headers.get("sec-websocket-accept").is_none());
    assert_eq!(client.ended(1), None, "the stream stays open");
    // Frames both ways: the client's masked frame reaches the server as it was sent.
    pump.client_h2().send(1, &client_text("hello over h2"));
    pump.client_sends(b"");
    let received = pump.server(S1).received().to_vec();
    assert!(received.ends_with(&client_text("hello over h2")), "{}", text(&received));
    pump.server_sends(S1, &server_text("hello back"));
    assert_eq!(pump.client_h2().body(1), server_text("hello back"));
    // The close handshake, then the stream ends and the connection to the server closes.
    pump.client_h2().send(1, &frame(true, CLOSE, close_payload(1000, "bye"), Some(CLIENT_KEY)));
    pump.client_sends(b"");
    pump.server_sends(S1, &frame(true, CLOSE, close_payload(1000, "bye"), None));
    let client = pump.client_h2();
    let mut expected = server_text("hello back");
    expected.extend(frame(true, CLOSE, close_payload(1000, "bye"), None));
    assert_eq!(client.body(1), expected);
    assert_eq!(client.ended(1), Some(None), "the stream ends after the close handshake");
}

#[test]
fn an_h2_clients_websocket_meets_the_message_hook_and_a_reset_closes_the_server() {
    use playbooks::ws::{client_text, server_text, CLIENT_KEY};
    use proxy_core::websocket::{Peer as WsPeer, WebSocketLimits};
    let websocket = WebSocketLimits { mask_keys: playbooks::ws::keys(), ..Default::default() };
    let hooks = [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketEnd].into_iter().collect();
    let config = Config { hooks, websocket, ..Config::default() };
    let mut pump = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), h1_origin()).replies(|hook| match hook {
        Hook::WebSocketMessage(m) if m.from == WsPeer::Server => {
            let mut changed = m.clone();
            changed.payload = m.text().unwrap().to_uppercase().into();
            HookReply::Message(changed)
        }
        _ => HookReply::Continue,
    });
    pump.run();
    pump.client_h2().websocket(1, "http://a.test/chat", &[("sec-websocket-version", "13")]);
    pump.client_sends(b"");
    pump.server_sends(S1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(pump.client_h2().response(1).map(|r| r.status.as_u16()), Some(200));
    // The client's message, held for the hook and passed on: a frame of the proxy's own.
    pump.client_h2().send(1, &client_text("ping"));
    pump.client_sends(b"");
    let received = pump.server(S1).received().to_vec();
    let frame = &received[received.len() - 10..];
    assert_eq!(&frame[..2], [0x81, 0x84], "one masked text frame of 4 bytes");
    let key = [frame[2], frame[3], frame[4], frame[5]];
    let payload: Vec<u8> = frame[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    assert_eq!(payload, b"ping");
    assert_ne!(key, CLIENT_KEY);
    // The server's message, changed by the hook.
    pump.server_sends(S1, &server_text("pong"));
    assert_eq!(pump.client_h2().body(1), server_text("PONG"));
    let seen: Vec<HookKind> = pump.hook_kinds().into_iter().filter(|k| matches!(k, HookKind::WebSocketStart | HookKind::WebSocketMessage)).collect();
    assert_eq!(seen, [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketMessage]);
    // The client gives the stream up: the server's connection goes with it.
    pump.client_h2().engine.reset(1, Reason::CANCEL);
    pump.client_sends(b"");
    let end = pump.hooks.iter().find_map(|h| match h {
        Hook::WebSocketEnd(end) => Some((end.code, end.closed_by, end.messages)),
        _ => None,
    });
    assert_eq!(end, Some((None, Some(WsPeer::Client), [1, 1])), "logs {:?}", pump.logs);
}

#[test]
fn frames_an_h2_client_sends_before_the_answer_are_kept_for_the_switch() {
    use playbooks::ws::{client_text, keys};
    use proxy_core::websocket::WebSocketLimits;
    let config = Config { hooks: proxy_core::HookSet::NONE, websocket: WebSocketLimits { mask_keys: keys(), ..Default::default() }, ..Config::default() };
    let mut pump = h2_client(config, h1_origin());
    // RFC 8441 asks the client to wait for the 200; one that does not loses nothing.
    pump.client_h2().websocket(1, "http://a.test/chat", &[("sec-websocket-version", "13")]);
    pump.client_h2().send(1, &client_text("too early"));
    pump.client_sends(b"");
    let before = text(pump.server(S1).received());
    assert!(before.ends_with("\r\n\r\n"), "only the upgrade goes before the 101: {before:?}");
    pump.server_sends(S1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    let received = pump.server(S1).received().to_vec();
    assert!(received.ends_with(&client_text("too early")), "{}", text(&received));
}

/// Plain upstreams speak HTTP/2 with prior knowledge, and take WebSockets as streams.
fn websocket_h2c() -> (Config, Origins) {
    use proxy_core::websocket::WebSocketLimits;
    let websocket = WebSocketLimits { mask_keys: playbooks::ws::keys(), ..Default::default() };
    let config = Config { hooks: proxy_core::HookSet::NONE, websocket, ..h2c_upstream() };
    (config, Box::new(|_| Some(Peer::H2(Box::new(H2Peer::websocket_server())))))
}

#[test]
fn an_http1_clients_websocket_to_an_h2_server() {
    use playbooks::ws::{client_text, close_payload, frame, server_text, CLIENT_KEY, CLOSE, UPGRADE};
    let (config, origins) = websocket_h2c();
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(UPGRADE.as_bytes());
    // The server gets RFC 8441's extended CONNECT: no key, no Upgrade, the stream left open.
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 1, "logs: {:?}", pump.logs);
    let (stream, head) = &requests[0];
    assert_eq!(head.method, "CONNECT");
    assert_eq!(head.uri.to_string(), "http://a.test/chat");
    assert_eq!(pump.server_h2(S1).protocol(*stream).as_deref(), Some("websocket"));
    assert_eq!(head.headers["sec-websocket-version"], "13");
    for absent in ["sec-websocket-key", "upgrade", "connection", "host"] {
        assert!(head.headers.get(absent).is_none(), "{absent} in {:?}", head.headers);
    }
    assert_eq!(pump.server_h2(S1).ended(*stream), None);
    // Its 200 is the client's 101, with the accept value for the client's own key.
    pump.server_h2(S1).accept_websocket(*stream, &[("sec-websocket-protocol", "chat")]);
    pump.server_sends(S1, b"");
    let answer = text(pump.client.received());
    assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{answer}");
    let answer = answer.to_ascii_lowercase();
    for field in ["upgrade: websocket\r\n", "connection: upgrade\r\n", "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n", "sec-websocket-protocol: chat\r\n"] {
        assert!(answer.contains(field), "{field:?} in {answer}");
    }
    // Frames both ways, byte-exact: the client's masked frame is the stream's data.
    let head_len = pump.client.received().len();
    pump.client_sends(&client_text("hello over h2"));
    assert_eq!(pump.server_h2(S1).body(*stream), client_text("hello over h2"));
    pump.server_h2(S1).send(*stream, &server_text("hello back"));
    pump.server_sends(S1, b"");
    assert_eq!(&pump.client.received()[head_len..], server_text("hello back"));
    // The close handshake: the server's stream ends, and the client's connection closes.
    pump.client_sends(&frame(true, CLOSE, close_payload(1000, "bye"), Some(CLIENT_KEY)));
    pump.server_h2(S1).send(*stream, &frame(true, CLOSE, close_payload(1000, "bye"), None));
    pump.server_h2(S1).engine.finish(*stream, None);
    pump.server_sends(S1, b"");
    let mut expected = server_text("hello back");
    expected.extend(frame(true, CLOSE, close_payload(1000, "bye"), None));
    assert_eq!(&pump.client.received()[head_len..], expected);
    assert_eq!(pump.server_h2(S1).ended(*stream), Some(None), "our side of the stream ends too");
    assert!(pump.closed.contains(&ConnId::CLIENT), "the client's connection closes after the handshake");
}

#[test]
fn an_h2_clients_websocket_shares_the_h2_servers_connection() {
    use playbooks::ws::{client_text, server_text};
    let (config, origins) = websocket_h2c();
    let mut pump = h2_client(config, origins);
    pump.client_h2().get(1, "http://a.test/page");
    pump.client_sends(b"");
    let (page, _) = pump.server_h2(S1).requests()[0].clone();
    pump.server_h2(S1).respond(page, 200, b"page", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(1), b"page");
    // The WebSocket goes on the connection the page came over, as a stream of its own.
    pump.client_h2().websocket(3, "http://a.test/chat", &[("sec-websocket-version", "13")]);
    pump.client_sends(b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 2, "one connection for both: logs {:?}", pump.logs);
    let (ws, head) = requests[1].clone();
    assert_eq!(head.method, "CONNECT");
    assert_eq!(pump.server_h2(S1).protocol(ws).as_deref(), Some("websocket"));
    assert!(head.headers.get("sec-websocket-key").is_none(), "the proxy's own key stays on its side");
    pump.server_h2(S1).accept_websocket(ws, &[]);
    pump.server_sends(S1, b"");
    let response = pump.client_h2().response(3).expect("an answer");
    assert_eq!(response.status, 200);
    assert!(response.headers.get("sec-websocket-accept").is_none());
    pump.client_h2().send(3, &client_text("ping"));
    pump.client_sends(b"");
    assert_eq!(pump.server_h2(S1).body(ws), client_text("ping"));
    pump.server_h2(S1).send(ws, &server_text("pong"));
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(3), server_text("pong"));
    // Another request meanwhile shares the connection too.
    pump.client_h2().get(5, "http://a.test/more");
    pump.client_sends(b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 3);
    pump.server_h2(S1).respond(requests[2].0, 200, b"more", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(5), b"more");
    // The server resets the WebSocket's stream: the client's stream goes the same way.
    pump.server_h2(S1).engine.reset(ws, Reason::CANCEL);
    pump.server_sends(S1, b"");
    let client = pump.client_h2();
    assert!(client.ended(3).is_some() || client.reset_reason(3).is_some(), "the client's stream is over");
    assert!(!pump.closed.contains(&S1), "the connection serves on");
}

#[test]
fn a_server_without_websockets_over_h2_gets_the_upgrade_over_http1() {
    use playbooks::ws::UPGRADE;
    let (config, _) = websocket_h2c();
    let mut opened = 0;
    // The first connection speaks HTTP/2 without RFC 8441; the next one, HTTP/1.1.
    let origins: Origins = Box::new(move |_| {
        opened += 1;
        Some(if opened == 1 { Peer::H2(Box::new(H2Peer::server())) } else { Peer::Plain { received: Vec::new() } })
    });
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(UPGRADE.as_bytes());
    // Its SETTINGS say no extended CONNECT: nothing is sent on it, and the upgrade goes on a
    // connection of its own as HTTP/1.1's.
    pump.server_sends(S1, b"");
    assert!(pump.server_h2(S1).requests().is_empty());
    let upgrade = text(pump.server(ConnId(2)).received()).to_ascii_lowercase();
    assert!(upgrade.starts_with("get /chat http/1.1\r\n"), "{upgrade} logs {:?}", pump.logs);
    assert!(upgrade.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n") && upgrade.contains("upgrade: websocket\r\n"));
}

#[test]
fn a_refused_extended_connect_is_the_http1_clients_answer() {
    use playbooks::ws::UPGRADE;
    let (config, origins) = websocket_h2c();
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(UPGRADE.as_bytes());
    let (stream, _) = pump.server_h2(S1).requests()[0].clone();
    pump.server_h2(S1).respond(stream, 403, b"no", None);
    pump.server_sends(S1, b"");
    let answer = text(pump.client.received());
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n") && answer.ends_with("\r\n\r\n2\r\nno\r\n0\r\n\r\n"), "{answer}");
    assert_eq!(pump.server_h2(S1).ended(stream), Some(None), "our side of the refused upgrade ends");
    assert!(!pump.closed.contains(&ConnId::CLIENT), "no switch: the connection carries on");
}
