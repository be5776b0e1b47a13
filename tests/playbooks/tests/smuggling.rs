//! Request smuggling and desync: every message that two HTTP/1 implementations could frame
//! differently is either refused before anything reaches a server, or forwarded in one
//! canonical framing, byte for byte as asserted here. The decisions are tabled in the docs of
//! `proxy_core::wire` and in README.md.

use playbooks::*;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
const POST: &str = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\n";
const CHUNKED_UP: &str = "POST / HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: chunked\r\n\r\n";
/// What an attacker hopes a second parser finds inside the first request's body.
const SMUGGLED: &str = "GET http://a.test/smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// The client sends `request`: the proxy answers `status` naming `message`, contacts no server,
/// half-closes, and closes when the client does. Checked with the input split at every byte.
fn refused(request: impl AsRef<[u8]>, status: u16, reason: &str, message: &str) {
    Playbook::new(no_hooks())
        .recv(CLIENT, request)
        .expect(log(message))
        .expect(send(CLIENT, proxy_error(status, reason, message, true)))
        .expect(half_close(CLIENT))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

fn bad_request(request: impl AsRef<[u8]>, message: &str) {
    refused(request, 400, "Bad Request", message);
}

/// A POST with `fields` (CRLF-terminated lines) and then `body`.
fn post(fields: &str, body: &str) -> String {
    format!("{POST}{fields}\r\n{body}")
}

/// The client sends `request` in one read; `a.test:80` receives exactly `upstream`, and the
/// client its `204`.
fn forwarded(request: impl AsRef<[u8]>, upstream: &str) -> Playbook {
    Playbook::new(no_hooks())
        .ignore_pauses()
        .recv(CLIENT, request)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, upstream))
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
}

// ---------------------------------------------------------------------------------------------
// CL.TE and TE.CL: both framings in one request

#[test]
fn cl_te_is_400() {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let request = post(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()), &body);
    bad_request(request, "both content-length and transfer-encoding");
}

#[test]
fn te_cl_is_400() {
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let request = post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &body);
    bad_request(request, "both content-length and transfer-encoding");
}

#[test]
fn cl_with_any_transfer_encoding_is_400() {
    // Whatever the coding, a length beside it is the ambiguity itself.
    for te in ["xchunked", "identity", "chunked, identity", "gzip, chunked", " chunked", ""] {
        let request = post(&format!("Content-Length: 3\r\nTransfer-Encoding: {te}\r\n"), "abc");
        bad_request(request, "both content-length and transfer-encoding");
    }
}

// ---------------------------------------------------------------------------------------------
// TE.TE: Transfer-Encoding disguised so that one parser sees chunked and the other does not

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400() {
    for te in [
        "xchunked",
        "chunkedx",
        "chunked, identity",
        "identity",
        "chunked;q=1",
        "\"chunked\"",
        "chunked, chunked",
        "chunked,",
        ",chunked",
        "gzip",
    ] {
        let request = post(&format!("Transfer-Encoding: {te}\r\n"), &format!("0\r\n\r\n{SMUGGLED}"));
        bad_request(request, "invalid transfer-encoding");
    }
}

#[test]
fn duplicated_transfer_encoding_is_400() {
    for second in ["chunked", "identity", "x"] {
        let request = post(&format!("Transfer-Encoding: chunked\r\nTransfer-Encoding: {second}\r\n"), "0\r\n\r\n");
        bad_request(request, "invalid transfer-encoding");
    }
}

#[test]
fn codings_before_chunked_are_501() {
    let request = post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n");
    refused(request, 501, "Not Implemented", "unsupported transfer-encoding");
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    let request =
        format!("POST http://a.test/ HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}");
    bad_request(request, "invalid transfer-encoding");
}

#[test]
fn space_before_the_colon_is_400() {
    bad_request(post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), "malformed header field");
    bad_request(post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"), "malformed header field");
    bad_request(post("Content-Length : 5\r\n", "hello"), "malformed header field");
}

#[test]
fn folded_transfer_encoding_is_400() {
    bad_request(post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), "obsolete line folding in header");
    bad_request(post("X: y\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), "obsolete line folding in header");
}

#[test]
fn control_characters_around_chunked_are_400() {
    for te in ["\x0bchunked", "chunked\x0c", "chunked\x00", "\x1bchunked"] {
        bad_request(post(&format!("Transfer-Encoding: {te}\r\n"), "0\r\n\r\n"), "invalid character in header value");
    }
}

#[test]
fn header_names_with_invalid_characters_are_400() {
    for name in ["Transfer-Encoding\x00", "Content-Length\x0b", "X[1]", "X Y", "Tr\u{e4}nsfer-Encoding", "\"X\""] {
        bad_request(post(&format!("{name}: chunked\r\n"), ""), "malformed header field");
    }
}

#[test]
fn whitespace_around_chunked_is_chunked() {
    // Optional whitespace around a field value is not part of it (RFC 9110 section 5.5): the
    // request is chunked, and leaves with one canonical Transfer-Encoding and canonical chunks.
    for te in ["\tchunked", " chunked", "chunked ", "  chunked\t", "Chunked", "CHUNKED"] {
        let request = post(&format!("Transfer-Encoding:{te}\r\n"), "5\r\nhello\r\n0\r\n\r\n");
        forwarded(request, &format!("{CHUNKED_UP}5\r\nhello\r\n0\r\n\r\n")).run();
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Length

#[test]
fn differing_content_lengths_are_400() {
    bad_request(post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), "conflicting content-length values");
    bad_request(post("Content-Length: 5, 6\r\n", "hello!"), "conflicting content-length values");
    bad_request(post("Content-Length: 5\r\nContent-Length: 5, 50\r\n", "hello"), "conflicting content-length values");
}

#[test]
fn malformed_content_lengths_are_400() {
    for cl in [
        "+5",
        "-1",
        "0x5",
        "5.0",
        "5e0",
        "",
        "5 5",
        "5,",
        ",5",
        "5;",
        "\u{663}",
        "18446744073709551616",
        "99999999999999999999999999",
    ] {
        bad_request(post(&format!("Content-Length: {cl}\r\n"), "hello"), "invalid content-length");
    }
}

#[test]
fn repeated_equal_content_lengths_become_one() {
    for fields in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 005\r\n",
        "Content-Length:5,005 ,5\r\n",
        "content-length: 5\r\nCONTENT-LENGTH: 5\r\n",
    ] {
        let name = &fields[..14];
        let upstream = format!("POST / HTTP/1.1\r\nHost: a.test\r\n{name}: 5\r\n\r\nhello");
        forwarded(post(fields, &format!("hello{GET_A}")), &upstream)
            // The bytes after the body are the client's next request, read as one.
            .expect(send(S1, GET_A_UP))
            .run_split();
    }
}

#[test]
fn a_huge_content_length_is_streamed_as_is() {
    Playbook::new(no_hooks())
        .ignore_pauses()
        .recv(CLIENT, post("Content-Length: 18446744073709551615\r\n", "abc"))
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 18446744073709551615\r\n\r\nabc"))
        .run_split();
}

#[test]
fn bytes_after_a_content_length_body_are_the_next_request() {
    // What a parser that ignored Content-Length would take for part of the first request is a
    // request of its own, raised as its own flow once the first is answered.
    Playbook::new(with_hooks([HookKind::Request]))
        .ignore_pauses()
        .recv(CLIENT, post("Content-Length: 5\r\n", &format!("hello{SMUGGLED}")))
        .expect(open(S1, "a.test:80"))
        .expect(hook(F1, HookKind::Request))
        .reply(F1, HookReply::Continue)
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"))
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .expect(hook(F2, HookKind::Request).inspect(|f| assert_eq!(f.request.path, "/smuggled")))
        .reply(F2, HookReply::Continue)
        .expect(send(S1, "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .run();
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

#[test]
fn chunk_extensions_and_leading_zeros_are_dropped() {
    let body = "0005;name=value\r\nhello\r\n1 ; a = \"q\\\"s\"\r\n!\r\n000;last\r\n\r\n";
    forwarded(
        post("Transfer-Encoding: chunked\r\n", body),
        &format!("{CHUNKED_UP}5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"),
    )
    .run();
}

/// A chunked request whose head went upstream before `bad` (after one good chunk) arrived:
/// the client gets a 400 naming `message`, and the server a truncated body and a close,
/// never the last chunk that would make the request look complete.
fn chunk_refused(bad: &str, message: &str) {
    chunk_refused_after(bad, "", message);
}

/// As [`chunk_refused`], when the first bytes of `bad` are good data that leave as `passed`.
fn chunk_refused_after(bad: &str, passed: &str, message: &str) {
    let mut playbook = Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, post("Transfer-Encoding: chunked\r\n", ""))
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, CHUNKED_UP))
        .expect(resume(CLIENT))
        .recv(CLIENT, "5\r\nhello\r\n")
        .expect(send(S1, "5\r\nhello\r\n"))
        .recv(CLIENT, format!("{bad}0\r\n\r\n{SMUGGLED}"))
        .expect(log(message))
        .expect(send(CLIENT, proxy_error(400, "Bad Request", &format!("bad request body: {message}"), true)));
    if !passed.is_empty() {
        playbook = playbook.expect(send(S1, passed));
    }
    playbook
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn malformed_chunk_sizes_are_400() {
    for bad in [
        "+5\r\nhello\r\n",
        "-5\r\nhello\r\n",
        "5\rhello\r\n",
        "0x5\r\nhello\r\n",
        " 5\r\nhello\r\n",
        "\t5\r\nhello\r\n",
        "5g\r\nhello\r\n",
        "\r\nhello\r\n",
        "zz\r\nhello\r\n",
        // Seventeen digits: more than fit in 64 bits, or leading zeros past the limit.
        "10000000000000005\r\nhello\r\n",
        "00000000000000005\r\nhello\r\n",
    ] {
        chunk_refused(bad, "invalid chunk size");
    }
}

#[test]
fn malformed_chunk_lines_are_400() {
    for bad in [
        // Bare LF after the size, trailing whitespace without an extension.
        "5\nhello\r\n",
        "5 \r\nhello\r\n",
        // Extensions outside the grammar.
        "5;\r\nhello\r\n",
        "5;=x\r\nhello\r\n",
        "5;a=\r\nhello\r\n",
        "5;a=\"x\r\nhello\r\n",
        "5;a\x00\r\nhello\r\n",
        "5;a=b \r\nhello\r\n",
    ] {
        chunk_refused(bad, "malformed chunk");
    }
    // Data longer than its size, or followed by a bare LF: the size's worth went on already.
    chunk_refused_after("5\r\nhello!\r\n", "5\r\nhello\r\n", "malformed chunk");
    chunk_refused_after("5\r\nhello\n", "5\r\nhello\r\n", "malformed chunk");
}

#[test]
fn trailer_fields_that_frame_or_route_are_dropped() {
    let body = "1\r\nx\r\n0\r\nContent-Length: 50\r\nX-Checksum: 1\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\
                If-Match: *\r\nTrailer: X\r\n\r\n";
    forwarded(
        post("Transfer-Encoding: chunked\r\n", body),
        &format!("{CHUNKED_UP}1\r\nx\r\n0\r\nX-Checksum: 1\r\n\r\n"),
    )
    .run();
}

#[test]
fn bare_lf_in_trailers_is_400() {
    chunk_refused("0\r\nX: 1\n\r\n", "malformed chunk");
}

// ---------------------------------------------------------------------------------------------
// Line endings

#[test]
fn bare_lf_heads_leave_with_crlf() {
    forwarded(
        "POST http://a.test/ HTTP/1.1\nHost: a.test\nContent-Length: 2\n\nhi",
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi",
    )
    .run_split();
    forwarded(
        "POST http://a.test/ HTTP/1.1\r\nHost: a.test\nContent-Length: 2\r\n\nhi",
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi",
    )
    .run_split();
}

#[test]
fn bare_cr_is_400() {
    bad_request("GET http://a.test/ HTTP/1.1\rHost: a.test\r\n\r\n", "malformed request line");
    bad_request("GET http://a.test/\r HTTP/1.1\r\nHost: a.test\r\n\r\n", "malformed request line");
    bad_request("GET http://a.test/ HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n", "invalid character in header value");
    bad_request("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\rX: y\r\n\r\n", "malformed header field");
}

// ---------------------------------------------------------------------------------------------
// Host and the request target

#[test]
fn absolute_form_wins_over_host() {
    for host in ["evil.test", "a.test:8080", "A.TEST"] {
        let request = format!("GET http://a.test/p?q HTTP/1.1\r\nHost: {host}\r\nX: 1\r\n\r\n");
        forwarded(request, "GET /p?q HTTP/1.1\r\nHost: a.test\r\nX: 1\r\n\r\n").run_split();
    }
    forwarded(
        "GET http://A.Test:80/ HTTP/1.1\r\nX: 1\r\nhost: b.test\r\n\r\n",
        "GET / HTTP/1.1\r\nX: 1\r\nhost: a.test\r\n\r\n",
    )
    .run_split();
}

#[test]
fn absolute_form_without_host_gets_one() {
    forwarded("GET http://a.test/ HTTP/1.1\r\nX: 1\r\n\r\n", "GET / HTTP/1.1\r\nX: 1\r\nhost: a.test\r\n\r\n")
        .run_split();
}

#[test]
fn two_hosts_are_400() {
    bad_request("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", "more than one host header");
    bad_request("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n", "more than one host header");
}

#[test]
fn invalid_hosts_are_400() {
    for host in ["", "a.test, b.test", "a.test:80:80", "u@b.test", "b.test/x", "a b", "a.test:", "a.test:99999"] {
        let request = format!("GET http://a.test/ HTTP/1.1\r\nHost: {host}\r\n\r\n");
        bad_request(request, "invalid host header");
    }
}

#[test]
fn ambiguous_authorities_are_400() {
    for (target, message) in [
        ("http://a.test:80:80/", "invalid host in request target \"http://a.test:80:80/\""),
        ("http://a.test@b.test/", "user information in the request target is not allowed"),
        ("http://a.test\\@b.test/", "user information in the request target is not allowed"),
        ("http://a.test\\b.test/", "invalid host in request target \"http://a.test\\\\b.test/\""),
        ("http://a.test%2fb/", "invalid host in request target \"http://a.test%2fb/\""),
    ] {
        bad_request(format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n"), message);
    }
}

fn reverse() -> Config {
    let target = ServerAddr::new("origin.test", 8080);
    Config { mode: Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, ..no_hooks() }
}

#[test]
fn origin_form_without_host_is_400() {
    // RFC 9112 section 3.2: an HTTP/1.1 request names its host, or is refused.
    Playbook::new(reverse())
        .recv(CLIENT, "GET / HTTP/1.1\r\nX: 1\r\n\r\n")
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "missing host header", true)))
        .expect(half_close(CLIENT))
        .run_split();
    // HTTP/1.0 had no Host: the reverse proxy names its origin.
    Playbook::new(reverse())
        .recv(CLIENT, "GET / HTTP/1.0\r\nX: 1\r\n\r\n")
        .expect(open(S1, "origin.test:8080"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nX: 1\r\nhost: origin.test:8080\r\n\r\n"))
        .run_split();
}

// ---------------------------------------------------------------------------------------------
// Responses: the client gets one framing, and a server that framed ambiguously is not reused

/// `a.test:80` answers GET_A with `response`; the client gets `to_client`.
fn answered(response: &str, to_client: &str) -> Playbook {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, response)
        .expect(send(CLIENT, to_client))
}

#[test]
fn response_with_length_and_chunked_is_rechunked_and_not_reused() {
    answered(
        "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    )
    .expect(close(S1))
    .recv(CLIENT, GET_A)
    .expect(open(S2, "a.test:80"))
    .run();
}

#[test]
fn response_with_other_final_coding_reads_until_close() {
    // `xchunked` is no chunked: the body runs to the close, and the client gets it in chunks.
    answered(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nc\r\n2\r\nhi\r\n0\r\n\r\n\r\n",
    )
    .closed(S1)
    .expect(send(CLIENT, "0\r\n\r\n"))
    .expect(close(S1))
    .run();
}

#[test]
fn http10_response_with_transfer_encoding_reads_until_close() {
    answered(
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nc\r\n2\r\nhi\r\n0\r\n\r\n\r\n",
    )
    .closed(S1)
    .expect(send(CLIENT, "0\r\n\r\n"))
    .expect(close(S1))
    .run();
}

#[test]
fn response_content_lengths_become_one() {
    for fields in ["Content-Length: 2, 2\r\n", "Content-Length: 2\r\nContent-Length: 2\r\n", "Content-Length: 02\r\n"] {
        answered(&format!("HTTP/1.1 200 OK\r\n{fields}\r\nhi"), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            .run_split();
    }
}

#[test]
fn head_response_lengths_are_canonical() {
    let head = "HEAD http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
    for (fields, want) in [
        ("Content-Length: 7, 7\r\n", "Content-Length: 7\r\n"),
        ("Content-Length: 7\r\nContent-Length: 8\r\n", ""),
        ("Content-Length: -1\r\n", ""),
    ] {
        Playbook::new(no_hooks())
            .recv(CLIENT, head)
            .expect(open(S1, "a.test:80"))
            .opened(S1)
            .expect(send(S1, "HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
            .recv(S1, format!("HTTP/1.1 200 OK\r\n{fields}X: 1\r\n\r\n"))
            .expect(send(CLIENT, format!("HTTP/1.1 200 OK\r\n{want}X: 1\r\n\r\n")))
            .run_split();
    }
}

/// `a.test:80` answers GET_A with `response`, which it got wrong: the client gets a 502.
fn bad_gateway(response: &str, message: &str) {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, response)
        .expect(log(message))
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", &format!("a.test:80: invalid response: {message}"), false),
        ))
        .run_split();
}

#[test]
fn ambiguous_response_heads_are_502() {
    let two = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi";
    bad_gateway(two, "conflicting content-length values");
    bad_gateway("HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi", "invalid content-length");
    bad_gateway("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhi", "invalid content-length");
    bad_gateway("HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi", "malformed header field");
    bad_gateway("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", "obsolete line folding in header");
    bad_gateway("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "invalid character in header value");
    bad_gateway("HTTP/1.1 200 OK\rX: 1\r\n\r\n", "malformed status line");
}

#[test]
fn bare_lf_response_heads_leave_with_crlf() {
    answered("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").run_split();
}

#[test]
fn malformed_response_chunks_abort_the_client() {
    for (bad, passed) in [
        ("+5\r\nhello\r\n", ""),
        ("0x5\r\nhello\r\n", ""),
        ("5\nhello\r\n", ""),
        ("10000000000000005\r\n", ""),
        // The chunk's five bytes are data; what follows them is not the CRLF.
        ("5\r\nhello!\r\n", "5\r\nhello\r\n"),
    ] {
        // The head is out: too late for a 502. The client sees the body stop short, and a close
        // without the last chunk.
        let mut playbook = answered(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n",
        )
        .recv(S1, format!("{bad}0\r\n\r\n"));
        if !passed.is_empty() {
            playbook = playbook.expect(send(CLIENT, passed));
        }
        playbook
            .expect(log("invalid response body"))
            .expect(close(S1))
            .expect(close(CLIENT))
            .expect_finished()
            .run();
    }
}

#[test]
fn response_trailer_fields_that_frame_are_dropped() {
    answered(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nContent-Length: 9\r\nX-T: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .run();
}

#[test]
fn a_response_beyond_its_length_is_not_the_next_response() {
    // Bytes past the body are no answer to anything: the connection is dropped, and the next
    // request gets a connection of its own.
    answered(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    )
    .expect(log("server sent data without a request"))
    .expect(close(S1))
    .recv(CLIENT, GET_A)
    .expect(open(S2, "a.test:80"))
    .run();
}

// ---------------------------------------------------------------------------------------------
// Found by fuzzing

#[test]
fn an_empty_response_keeps_its_framing_when_connection_names_content_length() {
    // `Connection: content-length` made the length hop-by-hop; the client got a 200 with no
    // framing on a kept-alive connection and would have read the next response as its body.
    answered(
        "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    )
    .recv(CLIENT, GET_A)
    .expect(send(S1, GET_A_UP))
    .run_split();
}

#[test]
fn a_bodiless_request_leaves_with_a_true_length() {
    // A hook that sets a length on a request without a body must not have the server wait
    // for one, and take the next request for it.
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .ignore_pauses()
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .update(F1, |f| f.request.headers.insert("Content-Length", "5"))
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"))
        .run();
}

#[test]
fn a_fragment_in_the_target_is_400() {
    // `http://a.te#st/` once left an empty origin-form target: `POST  HTTP/1.1` upstream.
    for target in ["http://a.te#st/", "http://a.test/#x", "http://a.test/p?q#f"] {
        bad_request(format!("POST {target} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), "fragment in the request target");
    }
    Playbook::new(reverse())
        .recv(CLIENT, "GET /p#f HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "fragment in the request target", true)))
        .expect(half_close(CLIENT))
        .run_split();
}

#[test]
fn interim_responses_carry_no_length() {
    answered("HTTP/1.1 100 Continue\r\nContent-Length: 1\r\nX: 1\r\n\r\n", "HTTP/1.1 100 Continue\r\nX: 1\r\n\r\n")
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        .run_split();
}

// ---------------------------------------------------------------------------------------------
// Request lines and names a lax parser reads otherwise (PortSwigger's http-request-smuggler
// permutations, http-garden's trophies)

#[test]
fn malformed_request_lines_are_400() {
    for line in [
        "GET  http://a.test/ HTTP/1.1",
        "GET http://a.test/  HTTP/1.1",
        "GET\thttp://a.test/ HTTP/1.1",
        "GET http://a.test/\tHTTP/1.1",
        " GET http://a.test/ HTTP/1.1",
        "GET http://a.test/ HTTP/1.1 ",
        "GET http://a.test/a b HTTP/1.1",
        "GET http://a.test/ http/1.1",
        "GET http://a.test/ HTTP/1.1x",
        "GET http://a.test/ HTTP/1.",
        "G(ET http://a.test/ HTTP/1.1",
        "GET http://a.test/\x00 HTTP/1.1",
        "GET http://a.test/\x7f HTTP/1.1",
    ] {
        bad_request(format!("{line}\r\nHost: a.test\r\n\r\n"), "malformed request line");
    }
}

#[test]
fn other_http_versions_are_refused() {
    // `HTTP/01.1` is outside the grammar (one digit each side); refused all the same.
    for version in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/01.1"] {
        let request = format!("GET http://a.test/ {version}\r\nHost: a.test\r\n\r\n");
        refused(request, 505, "HTTP Version Not Supported", "unsupported HTTP version");
    }
}

#[test]
fn disguised_framing_names_are_400() {
    for (field, message) in [
        ("Transfer-Encoding\x00: chunked", "malformed header field"),
        ("Transfer-Encoding\x0b: chunked", "malformed header field"),
        ("Transfer\x0bEncoding: chunked", "malformed header field"),
        ("Transfer-Encoding\u{e9}: chunked", "malformed header field"),
        ("Content-Length: \x0b5", "invalid character in header value"),
        ("Content-Length: 5\x0c", "invalid character in header value"),
        ("Transfer_Encoding: chunked", "header field Transfer_Encoding reads as transfer-encoding where underscores count as dashes"),
        ("Content_Length: 0", "header field Content_Length reads as content-length where underscores count as dashes"),
    ] {
        bad_request(post(&format!("Content-Length: 5\r\n{field}\r\n"), "hello"), message);
    }
}
