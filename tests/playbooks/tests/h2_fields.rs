//! RFC 9113 sections 8.1.1, 8.2 and 8.3 on both HTTP/2 sides: a malformed request from a
//! client (raw frames) never goes upstream; a malformed response from a server (raw frames)
//! never reaches the client. One test per rule. Where h2 itself refuses a message, the test
//! pins down how: a stream reset, or a GOAWAY for what its HPACK decoder cannot represent.

use playbooks::h2::*;
use playbooks::pump::{Origins, Peer, Pump};
use proxy_core::{Config, ConnId};

const S1: ConnId = ConnId(1);

fn h1_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// Requests: a raw client, an HTTP/1 origin.

/// The control data of `GET http://a.test/`.
const GET: [(&str, &str); 4] = [(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", "/")];

/// A GET of `http://a.test/` with `extra` fields after its pseudo-headers.
fn get_with(extra: &[(&str, &str)]) -> Vec<u8> {
    block(&[&GET[..], extra].concat())
}

/// A raw client connection that has sent `headers` (a whole request) on stream 1.
fn client_sends_request(headers: &[u8]) -> Pump {
    let mut pump = Pump::new(Config::default(), Peer::Plain { received: Vec::new() }, h1_origin());
    pump.run();
    pump.client_sends(&preface());
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, headers));
    pump
}

/// The text of the DATA frames the proxy sent the client on `stream`.
fn answer(pump: &Pump, stream: u32) -> String {
    let data = frames(pump.client.received()).into_iter().filter(|f| f.kind == DATA && f.stream == stream);
    text(&data.flat_map(|f| f.payload).collect::<Vec<u8>>())
}

fn reset_of(pump: &Pump, stream: u32) -> Option<Reason> {
    frames(pump.client.received()).iter().find(|f| f.kind == RST_STREAM && f.stream == stream).and_then(Frame::error_code)
}

fn goaway(pump: &Pump) -> Option<Reason> {
    frames(pump.client.received()).iter().find(|f| f.kind == GOAWAY).and_then(Frame::error_code)
}

/// The connection still serves: a good request on `stream` goes upstream, the only one.
fn still_serves(pump: &mut Pump, stream: u32) {
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block(&GET)));
    assert_eq!(pump.addrs.len(), 1, "the good request goes upstream; logs: {:?}", pump.logs);
    assert_eq!(text(pump.server(S1).received()), "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n");
}

/// `headers` on stream 1 is answered `400` naming `rule`, logged, sent nowhere, and the
/// connection goes on.
fn assert_400(headers: &[u8], rule: &str) {
    let mut pump = client_sends_request(headers);
    assert_eq!(answer(&pump, 1), format!("bad request: {rule}\n"), "logs: {:?}", pump.logs);
    assert!(pump.addrs.is_empty(), "no upstream connection for a malformed request");
    assert!(pump.logs.iter().any(|l| l.contains(rule) && l.contains("(400)")), "{:?}", pump.logs);
    still_serves(&mut pump, 3);
}

/// h2 resets stream 1 (PROTOCOL_ERROR) for `headers`: sent nowhere, and the connection goes on.
fn assert_reset(headers: &[u8]) {
    let mut pump = client_sends_request(headers);
    assert_eq!(reset_of(&pump, 1), Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
    assert_eq!(goaway(&pump), None);
    assert!(pump.addrs.is_empty(), "no upstream connection for a malformed request");
    still_serves(&mut pump, 3);
}

/// h2's HPACK decoder cannot represent `headers`: the connection ends (GOAWAY
/// PROTOCOL_ERROR), nothing sent upstream.
fn assert_goaway(headers: &[u8]) {
    let pump = client_sends_request(headers);
    assert_eq!(goaway(&pump), Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
    assert!(pump.closed.contains(&ConnId::CLIENT));
    assert!(pump.addrs.is_empty(), "no upstream connection for a malformed request");
}

#[test]
fn a_request_value_with_leading_or_trailing_whitespace_is_400() {
    assert_400(&get_with(&[("test1", "\ta\t")]), "field value of test1 has leading or trailing whitespace");
    for value in [" a", "a ", "\ta", "a\t", " "] {
        assert_400(&get_with(&[("x", value)]), "field value of x has leading or trailing whitespace");
    }
}

#[test]
fn request_values_with_inner_whitespace_pass_unchanged() {
    let mut pump = client_sends_request(&get_with(&[("x-tab", "a\tb"), ("x-space", "a b"), ("x-empty", "")]));
    assert_eq!(text(pump.server(S1).received()), "GET / HTTP/1.1\r\nhost: a.test\r\nx-tab: a\tb\r\nx-space: a b\r\nx-empty: \r\n\r\n");
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(answer(&pump, 1), "ok");
}

#[test]
fn a_request_value_with_nul_cr_or_lf_ends_the_connection() {
    for value in ["a\0b", "a\rb", "a\nb"] {
        assert_goaway(&get_with(&[("x", value)]));
    }
}

#[test]
fn a_request_field_name_with_a_quote_is_400() {
    // h2 takes `"`, a byte RFC 9113 section 8.2.1 does not list, but no token has it.
    assert_400(&get_with(&[("a\"b", "x")]), "field name \"a\\\"b\" is not a lowercase token");
}

#[test]
fn a_request_field_name_with_uppercase_ends_the_connection() {
    assert_goaway(&get_with(&[("Test", "x")]));
}

#[test]
fn a_request_field_name_with_a_control_byte_space_or_high_byte_ends_the_connection() {
    for name in [&b"a\x01b"[..], b"a b", b"a\x7fb", b"a\xffb"] {
        let mut headers = block(&GET);
        field(&mut headers, name, b"x");
        assert_goaway(&headers);
    }
}

#[test]
fn an_empty_request_field_name_ends_the_connection() {
    assert_goaway(&get_with(&[("", "x")]));
}

#[test]
fn a_colon_inside_a_request_field_name_ends_the_connection() {
    assert_goaway(&get_with(&[("a:b", "x")]));
}

#[test]
fn an_unknown_pseudo_header_in_a_request_ends_the_connection() {
    assert_goaway(&get_with(&[(":foo", "x")]));
}

#[test]
fn a_response_pseudo_header_in_a_request_is_reset() {
    assert_reset(&block(&[&GET[..], &[(":status", "200")]].concat()));
}

#[test]
fn a_repeated_request_pseudo_header_is_reset() {
    assert_reset(&block(&[&GET[..], &[(":path", "/b")]].concat()));
}

#[test]
fn a_request_pseudo_header_after_a_regular_field_is_reset() {
    assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), ("x", "1"), (":path", "/")]));
}

#[test]
fn a_request_without_method_or_scheme_is_reset() {
    assert_reset(&block(&[(":scheme", "http"), (":authority", "a.test"), (":path", "/")]));
    assert_reset(&block(&[(":method", "GET"), (":authority", "a.test"), (":path", "/")]));
}

#[test]
fn a_request_without_path_is_reset_or_400() {
    // With an :authority, h2 cannot build the URI; without, the path is ours to miss.
    assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test")]));
    assert_400(&block(&[(":method", "GET"), (":scheme", "http"), ("host", "a.test")]), "missing :path");
}

#[test]
fn an_empty_request_path_is_reset() {
    assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", "")]));
}

#[test]
fn a_request_path_neither_absolute_nor_an_options_asterisk_is_reset_or_400() {
    // h2 cannot build the URI of a relative path.
    assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", "x")]));
    assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":path", "x"), ("host", "a.test")]));
    let get = block(&[(":method", "GET"), (":scheme", "http"), (":path", "*"), ("host", "a.test")]);
    assert_400(&get, ":path \"*\" is neither absolute nor * for OPTIONS");
    let get = block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", "*")]);
    assert_400(&get, ":path \"*\" is neither absolute nor * for OPTIONS");
    let options = block(&[(":method", "OPTIONS"), (":scheme", "http"), (":authority", "a.test"), (":path", "*")]);
    let pump = client_sends_request(&options);
    assert_eq!(text(pump.server(S1).received()), "OPTIONS * HTTP/1.1\r\nhost: a.test\r\n\r\n");
}

#[test]
fn a_request_path_with_whitespace_is_reset() {
    for path in ["/a b", " /a", "/a\t"] {
        assert_reset(&block(&[(":method", "GET"), (":scheme", "http"), (":authority", "a.test"), (":path", path)]));
    }
}

#[test]
fn a_connect_without_authority_is_400_and_with_scheme_or_path_is_reset() {
    assert_400(&block(&[(":method", "CONNECT")]), "CONNECT without :authority");
    assert_reset(&block(&[(":method", "CONNECT"), (":authority", "a.test:443"), (":scheme", "https")]));
    assert_reset(&block(&[(":method", "CONNECT"), (":authority", "a.test:443"), (":path", "/")]));
    // An extended CONNECT (RFC 8441) for a WebSocket is an upgrade, sent on as HTTP/1.1's.
    let websocket = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":authority", "a.test"), (":path", "/")];
    let pump = client_sends_request(&block(&websocket));
    let upstream = text(pump.server(S1).received());
    assert!(upstream.starts_with("GET / HTTP/1.1\r\nhost: a.test\r\nupgrade: websocket\r\n"), "{upstream}");
    assert_400(&block(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]), "missing :authority and host");
    // A well-formed one opens a tunnel (RFC 9113 section 8.5).
    let pump = client_sends_request(&block(&[(":method", "CONNECT"), (":authority", "a.test:443")]));
    let opened: Vec<String> = pump.addrs.values().map(ToString::to_string).collect();
    assert_eq!(opened, ["a.test:443"], "logs {:?}", pump.logs);
}

#[test]
fn user_info_in_the_request_authority_is_400() {
    let get = block(&[(":method", "GET"), (":scheme", "http"), (":authority", "u:p@a.test"), (":path", "/")]);
    assert_400(&get, "user info in the authority");
}

#[test]
fn a_host_naming_another_origin_than_the_authority_is_400() {
    // RFC 9113 section 8.3.1 says SHOULD: the proxy routes by :authority, and a server behind
    // it that reads Host would see another origin than the one the proxy checked.
    assert_400(&get_with(&[("host", "b.test")]), "host \"b.test\" differs from :authority \"a.test\"");
    assert_400(&get_with(&[("host", "a.test:8080")]), "host \"a.test:8080\" differs from :authority \"a.test\"");
    // The same origin, written otherwise, is fine.
    let pump = client_sends_request(&get_with(&[("host", "A.test:80")]));
    assert_eq!(text(pump.server(S1).received()), "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n");
}

#[test]
fn connection_specific_request_fields_are_reset() {
    for (name, value) in [("connection", "close"), ("keep-alive", "5"), ("proxy-connection", "x"), ("transfer-encoding", "chunked"), ("upgrade", "h2c"), ("te", "gzip")] {
        assert_reset(&get_with(&[(name, value)]));
    }
    // `te: trailers` is the one allowed.
    let pump = client_sends_request(&get_with(&[("te", "trailers")]));
    assert!(text(pump.server(S1).received()).starts_with("GET / HTTP/1.1\r\n"), "{:?}", pump.logs);
}

#[test]
fn an_empty_request_content_length_is_400() {
    // h2 reads an empty content-length as 0.
    assert_400(&get_with(&[("content-length", "")]), "content-length is not a decimal number");
}

#[test]
fn a_request_content_length_that_does_not_parse_or_differs_is_reset() {
    for values in [&[("content-length", "abc")][..], &[("content-length", " 1")], &[("content-length", "1"), ("content-length", "2")]] {
        assert_reset(&get_with(values));
    }
    // Nonzero on a HEADERS frame that ends the stream.
    assert_reset(&get_with(&[("content-length", "5")]));
}

/// A raw client connection that has started a POST of `http://a.test/` on stream 1 with
/// `content-length: 5`, its head gone upstream.
fn post_of_five() -> Pump {
    let mut pump = Pump::new(Config::default(), Peer::Plain { received: Vec::new() }, h1_origin());
    pump.run();
    pump.client_sends(&preface());
    let head = block(&[(":method", "POST"), (":scheme", "http"), (":authority", "a.test"), (":path", "/"), ("content-length", "5")]);
    pump.client_sends(&frame(HEADERS, END_HEADERS, 1, &head));
    assert_eq!(text(pump.server(S1).received()), "POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\n");
    pump
}

#[test]
fn request_data_longer_or_shorter_than_its_content_length_is_reset_and_abandoned_upstream() {
    for body in [&b"0123456789"[..], b"012"] {
        let mut pump = post_of_five();
        pump.client_sends(&frame(DATA, END_STREAM, 1, body));
        assert_eq!(reset_of(&pump, 1), Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
        assert!(pump.closed.contains(&S1), "the upstream request is abandoned: {:?}", pump.closed);
        let upstream = text(pump.server(S1).received());
        assert!(!upstream.contains("01234"), "no body that breaks the length went upstream: {upstream:?}");
    }
}

/// A raw client that has sent a POST's head and the body `body` on stream 1, to an HTTP/1
/// origin, and not ended it.
fn posting_body() -> Pump {
    let mut pump = Pump::new(Config::default(), Peer::Plain { received: Vec::new() }, h1_origin());
    pump.run();
    pump.client_sends(&preface());
    pump.client_sends(&frame(HEADERS, END_HEADERS, 1, &post_head()));
    pump.client_sends(&frame(DATA, 0, 1, b"body"));
    pump
}

fn post_head() -> Vec<u8> {
    block(&[(":method", "POST"), (":scheme", "http"), (":authority", "a.test"), (":path", "/")])
}

#[test]
fn request_trailers_with_a_malformed_field_reset_the_stream_and_abandon_the_upstream_request() {
    let mut pump = posting_body();
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[("x-sum", "abc ")])));
    assert_eq!(reset_of(&pump, 1), Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
    assert!(pump.logs.iter().any(|l| l.contains("malformed trailers: field value of x-sum has leading or trailing whitespace")), "{:?}", pump.logs);
    // The upstream never sees the request end: no last chunk, no trailer.
    assert!(pump.closed.contains(&S1), "{:?}", pump.closed);
    let upstream = text(pump.server(S1).received());
    assert!(upstream.ends_with("4\r\nbody\r\n"), "{upstream:?}");
    assert_eq!(goaway(&pump), None, "only the stream fails");
}

#[test]
fn pseudo_headers_in_request_trailers_are_dropped_by_h2() {
    // h2 keeps the pseudo-headers of a trailer section to itself: they are not forwarded,
    // though not answered as malformed either. After a regular field they are a reset.
    let mut pump = posting_body();
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[(":path", "/admin"), ("x-sum", "abc")])));
    let upstream = text(pump.server(S1).received());
    assert!(upstream.ends_with("4\r\nbody\r\n0\r\nx-sum: abc\r\n\r\n"), "{upstream:?}");

    pump.client_sends(&frame(HEADERS, END_HEADERS, 3, &post_head()));
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &block(&[("x-sum", "abc"), (":path", "/admin")])));
    assert_eq!(reset_of(&pump, 3), Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
}

// Responses: a real HTTP/2 client, a raw HTTP/2 server.

/// An HTTP/2 client through the proxy to a raw HTTP/2 origin, which has been asked for
/// `GET http://a.test/` on its stream 1 and has sent its SETTINGS.
fn server_to_answer() -> Pump {
    let config = Config { upstream_h2c: true, ..Config::default() };
    let mut pump = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), h1_origin());
    pump.run();
    pump.client_h2().get(1, "http://a.test/");
    pump.client_sends(b"");
    pump.server_sends(S1, &[frame(SETTINGS, 0, 0, &[]), frame(SETTINGS, ACK, 0, &[])].concat());
    let sent = server_frames(&pump);
    assert!(sent.iter().any(|f| f.kind == HEADERS && f.stream == 1), "the request went upstream: {sent:?}");
    pump
}

/// What the proxy sent the raw origin, past its preface.
fn server_frames(pump: &Pump) -> Vec<Frame> {
    frames(&pump.server(S1).received()[24..])
}

fn server_reset(pump: &Pump, stream: u32) -> Option<Reason> {
    server_frames(pump).iter().find(|f| f.kind == RST_STREAM && f.stream == stream).and_then(Frame::error_code)
}

/// The client's answer on its stream 1: status and body.
fn client_answer(pump: &mut Pump) -> (Option<u16>, String) {
    let client = pump.client_h2();
    (client.response(1).map(|r| r.status.as_u16()), text(&client.body(1)))
}

/// The origin answers stream 1 with `headers` (not ending it): the client gets a 502 naming
/// `rule`, the origin's stream is reset, and the connection goes on.
fn assert_502(headers: &[u8], rule: &str) {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS, 1, headers));
    assert_eq!(client_answer(&mut pump), (Some(502), format!("bad gateway: a.test:80: malformed response: {rule}\n")), "logs: {:?}", pump.logs);
    assert_eq!(server_reset(&pump, 1), Some(Reason::PROTOCOL_ERROR));
    assert!(pump.logs.iter().any(|l| l.contains("server a.test:80: malformed response") && l.contains(rule)), "{:?}", pump.logs);
    response_still_flows(&mut pump);
}

/// h2 resets the origin's stream 1 for `headers` (unless `flags` ended it): the client gets a
/// 502, the connection goes on.
fn assert_502_reset(headers: &[u8], flags: u8) {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | flags, 1, headers));
    let (status, body) = client_answer(&mut pump);
    assert_eq!(status, Some(502), "logs: {:?}", pump.logs);
    assert!(body.contains("HTTP/2 stream failed (PROTOCOL_ERROR)"), "{body}");
    let open = flags & END_STREAM == 0;
    assert_eq!(server_reset(&pump, 1), open.then_some(Reason::PROTOCOL_ERROR));
    response_still_flows(&mut pump);
}

/// h2's HPACK decoder cannot represent `headers`: the proxy ends the origin's connection
/// (GOAWAY PROTOCOL_ERROR), the client gets a 502.
fn assert_502_goaway(headers: &[u8]) {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS, 1, headers));
    let goaway = server_frames(&pump).iter().find(|f| f.kind == GOAWAY).and_then(Frame::error_code);
    assert_eq!(goaway, Some(Reason::PROTOCOL_ERROR), "logs: {:?}", pump.logs);
    let (status, body) = client_answer(&mut pump);
    assert_eq!(status, Some(502), "logs: {:?}", pump.logs);
    assert!(body.starts_with("bad gateway: a.test:80: "), "{body}");
    assert!(pump.closed.contains(&S1));
}

/// Another request goes to the same origin connection (its stream 3) and its answer through.
fn response_still_flows(pump: &mut Pump) {
    pump.client_h2().get(3, "http://a.test/b");
    pump.client_sends(b"");
    assert!(server_frames(pump).iter().any(|f| f.kind == HEADERS && f.stream == 3), "the connection carries on");
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &block(&[(":status", "204")])));
    assert_eq!(pump.client_h2().response(3).map(|r| r.status.as_u16()), Some(204));
    assert_eq!(pump.addrs.len(), 1);
}

const OK: (&str, &str) = (":status", "200");

#[test]
fn a_response_value_with_leading_or_trailing_whitespace_is_502() {
    for value in ["\ta\t", " a", "a "] {
        assert_502(&block(&[OK, ("x", value)]), "field value of x has leading or trailing whitespace");
    }
}

#[test]
fn response_values_with_inner_whitespace_pass_unchanged() {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[OK, ("x-tab", "a\tb"), ("x-space", "a b")])));
    let response = pump.client_h2().response(1).expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-tab"], "a\tb");
    assert_eq!(response.headers["x-space"], "a b");
}

/// A server that sends a response head block again byte for byte (nginx does, response after
/// response) has it taken as the first time, without a second look (the engine's repeats): a
/// head that passed passes again, and a malformed one is refused again, each time.
#[test]
fn a_response_head_sent_again_byte_for_byte_is_judged_as_the_first_time() {
    let good = block(&[OK, ("x-a", "1")]);
    let bad = block(&[OK, ("x", " a")]);
    let mut pump = server_to_answer();
    let answer = |pump: &mut Pump, stream: u32, head: &[u8], flags: u8| {
        if stream > 1 {
            pump.client_h2().get(u64::from(stream), "http://a.test/");
            pump.client_sends(b"");
        }
        pump.server_sends(S1, &frame(HEADERS, END_HEADERS | flags, stream, head));
        pump.client_h2().response(u64::from(stream)).map(|r| r.status.as_u16())
    };
    for stream in [1, 3, 5] {
        assert_eq!(answer(&mut pump, stream, &good, END_STREAM), Some(200), "stream {stream}, logs: {:?}", pump.logs);
    }
    for stream in [7, 9] {
        assert_eq!(answer(&mut pump, stream, &bad, 0), Some(502), "stream {stream}");
        assert_eq!(server_reset(&pump, stream), Some(Reason::PROTOCOL_ERROR));
    }
    assert_eq!(answer(&mut pump, 11, &good, END_STREAM), Some(200));
    assert_eq!(pump.addrs.len(), 1, "one connection to the origin throughout");
}

#[test]
fn a_response_value_with_nul_cr_or_lf_ends_the_server_connection() {
    for value in ["a\0b", "a\rb", "a\nb"] {
        assert_502_goaway(&block(&[OK, ("x", value)]));
    }
}

#[test]
fn a_response_field_name_with_a_quote_is_502() {
    assert_502(&block(&[OK, ("a\"b", "x")]), "field name \"a\\\"b\" is not a lowercase token");
}

#[test]
fn a_response_field_name_with_uppercase_space_colon_or_nothing_ends_the_server_connection() {
    for name in ["X-Up", "a b", "a:b", ""] {
        assert_502_goaway(&block(&[OK, (name, "x")]));
    }
}

#[test]
fn an_unknown_pseudo_header_in_a_response_ends_the_server_connection() {
    assert_502_goaway(&block(&[OK, (":foo", "x")]));
}

#[test]
fn a_response_status_not_of_three_digits_ends_the_server_connection() {
    for status in ["20", "2000", "abc", "099", ""] {
        assert_502_goaway(&block(&[(":status", status)]));
    }
}

#[test]
fn a_response_without_status_is_reset() {
    assert_502_reset(&block(&[("x", "1")]), 0);
}

#[test]
fn a_repeated_response_status_is_reset() {
    assert_502_reset(&block(&[OK, OK]), 0);
}

#[test]
fn a_response_pseudo_header_after_a_regular_field_is_reset() {
    assert_502_reset(&block(&[("x", "1"), OK]), 0);
}

#[test]
fn request_pseudo_headers_in_a_response_are_dropped_by_h2() {
    // h2 keeps them to itself: not forwarded, though not answered as malformed either.
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[OK, (":path", "/x"), (":method", "GET")])));
    let response = pump.client_h2().response(1).expect("a response");
    assert_eq!((response.status.as_u16(), response.headers.len()), (200, 0), "{:?}", response.headers);
}

#[test]
fn connection_specific_response_fields_are_reset() {
    for (name, value) in [("connection", "close"), ("keep-alive", "5"), ("proxy-connection", "x"), ("transfer-encoding", "chunked"), ("upgrade", "h2c"), ("te", "gzip")] {
        assert_502_reset(&block(&[OK, (name, value)]), 0);
    }
}

#[test]
fn an_empty_response_content_length_is_502() {
    assert_502(&block(&[OK, ("content-length", "")]), "content-length is not a decimal number");
}

#[test]
fn a_response_content_length_that_does_not_parse_differs_or_lies_is_reset() {
    assert_502_reset(&block(&[OK, ("content-length", "x")]), 0);
    assert_502_reset(&block(&[OK, ("content-length", "1"), ("content-length", "2")]), 0);
    assert_502_reset(&block(&[OK, ("content-length", "5")]), END_STREAM);
    // Body bytes past the length, once the head has gone to the client: its stream is reset.
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS, 1, &block(&[OK, ("content-length", "5")])));
    assert_eq!(pump.client_h2().response(1).map(|r| r.status.as_u16()), Some(200));
    pump.server_sends(S1, &frame(DATA, END_STREAM, 1, b"0123456789"));
    assert_eq!(server_reset(&pump, 1), Some(Reason::PROTOCOL_ERROR));
    assert!(pump.client_h2().reset_reason(1).is_some(), "the client's stream is reset, not ended");
    assert!(pump.client_h2().ended(1).is_none());
    assert_eq!(pump.client_h2().body(1), b"", "nothing past the length");
}

#[test]
fn a_malformed_interim_response_is_502() {
    assert_502(&block(&[(":status", "103"), ("link", "</a>; rel=preload ")]), "field value of link has leading or trailing whitespace");
}

#[test]
fn response_trailers_with_a_malformed_field_reset_both_streams() {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS, 1, &block(&[OK])));
    pump.server_sends(S1, &frame(DATA, 0, 1, b"body"));
    assert_eq!(pump.client_h2().body(1), b"body");
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[("grpc-status", "0 ")])));
    assert!(pump.client_h2().reset_reason(1).is_some(), "the client's stream is reset, its response never complete");
    assert!(pump.client_h2().ended(1).is_none());
    assert!(pump.logs.iter().any(|l| l.contains("malformed response: field value of grpc-status has leading or trailing whitespace")), "{:?}", pump.logs);
    response_still_flows(&mut pump);
}

#[test]
fn pseudo_headers_in_response_trailers_are_dropped_by_h2() {
    let mut pump = server_to_answer();
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS, 1, &block(&[OK])));
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[OK, ("grpc-status", "0")])));
    let trailers = pump.client_h2().ended(1).flatten().expect("trailers");
    assert_eq!(trailers.len(), 1, "{trailers:?}");
}
