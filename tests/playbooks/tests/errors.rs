//! Peers that break the protocol or go away, and servers that cannot be reached: each
//! becomes a response naming the cause (while one can still be sent) and closed connections,
//! never a panic or a hang.

use std::time::Duration;

use playbooks::*;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// The client sends `request`; the proxy answers `status` with `message`, half-closes, and
/// closes when the client does.
fn rejected(config: Config, request: &str, status: u16, reason: &str, message: &str) -> Playbook {
    Playbook::new(config)
        .recv(CLIENT, request)
        .expect(log(message))
        .expect(send(CLIENT, proxy_error(status, reason, message, true)))
        .expect(half_close(CLIENT))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
}

#[test]
fn bad_request_line_is_400() {
    rejected(no_hooks(), "GARBAGE\r\n\r\n", 400, "Bad Request", "malformed request line").run_split();
}

#[test]
fn head_over_the_limit_is_431() {
    let config = Config { max_head_bytes: 64, ..no_hooks() };
    let request = format!("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n", "x".repeat(64));
    rejected(config, &request, 431, "Request Header Fields Too Large", "header section larger than 64 bytes")
        .run_split();
}

#[test]
fn head_over_the_limit_without_end_is_431() {
    // No blank line ever comes: the limit still ends the wait.
    let config = Config { max_head_bytes: 64, ..no_hooks() };
    let request = format!("GET http://a.test/ HTTP/1.1\r\nX-Big: {}", "x".repeat(80));
    rejected(config, &request, 431, "Request Header Fields Too Large", "header section larger than 64 bytes")
        .run_split();
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let request = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\
                   Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    rejected(no_hooks(), request, 400, "Bad Request", "both content-length and transfer-encoding").run_split();
}

#[test]
fn conflicting_content_lengths_are_400() {
    let request = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello";
    rejected(no_hooks(), request, 400, "Bad Request", "conflicting content-length values").run_split();
}

#[test]
fn obs_fold_is_400() {
    let request = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Folded: a\r\n b\r\n\r\n";
    rejected(no_hooks(), request, 400, "Bad Request", "obsolete line folding in header").run_split();
}

#[test]
fn nul_in_header_value_is_400() {
    let request = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Bad: a\0b\r\n\r\n";
    rejected(no_hooks(), request, 400, "Bad Request", "invalid character in header value").run_split();
}

#[test]
fn cr_in_header_value_is_400() {
    let request = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Bad: a\rb\r\n\r\n";
    rejected(no_hooks(), request, 400, "Bad Request", "invalid character in header value").run_split();
}

#[test]
fn origin_form_target_is_400() {
    let request = "GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let message = "a proxy request needs an absolute URL (http://host/path) as its target";
    rejected(no_hooks(), request, 400, "Bad Request", message).run_split();
}

#[test]
fn bad_chunk_size_is_400() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: chunked\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "zz\r\nhello\r\n")
        .expect(log("invalid chunk size"))
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "bad request body: invalid chunk size", true)))
        // The half-sent request is abandoned with its server connection.
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn bad_chunk_size_before_the_server_is_up_is_400() {
    // Rejected within the read that brought its head: no hook sees the request and no
    // server is contacted, only the error is reported.
    Playbook::new(http_proxy())
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .expect(log("invalid chunk size"))
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "bad request body: invalid chunk size", true)))
        .expect(hook(F1, HookKind::Error))
        .expect(half_close(CLIENT))
        // Not run_split: with the head alone in a read, the request is legitimately under way.
        .run();
}

// ---------------------------------------------------------------------------------------------
// Upstream failures

#[test]
fn connection_refused_is_502() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(log("cannot connect to a.test:80: connection refused"))
        // The answer waits for the hook, and so does the client.
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            let e = f.error.as_ref().unwrap();
            assert_eq!(e.status, Some(502));
            assert_eq!(e.message, "cannot connect to a.test:80: connection refused");
        }))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "cannot connect to a.test:80: connection refused", false),
        ))
        .expect(resume(CLIENT))
        // The client connection survives for its next request.
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run();
}

#[test]
fn dns_failure_is_502() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Dns("no such host".into()))
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "cannot connect to a.test:80: name resolution failed: no such host", false),
        ))
        .run();
}

#[test]
fn connect_timeout_is_504() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Timeout)
        .expect(send(
            CLIENT,
            proxy_error(504, "Gateway Timeout", "cannot connect to a.test:80: connect timed out", false),
        ))
        .run();
}

#[test]
fn silent_server_is_504() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(59))
        .wakeup()
        .advance(Duration::from_secs(1))
        .wakeup()
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(pause(CLIENT))
        // No timer while the hook decides: the server is gone, the client waits for us.
        .expect_timeout(None)
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, proxy_error(504, "Gateway Timeout", "a.test:80 sent nothing for 60 s", false)))
        .expect(resume(CLIENT))
        .expect_timeout(Some(Duration::from_secs(120)))
        .run();
}

#[test]
fn slow_but_steady_server_is_not_timed_out() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .advance(Duration::from_secs(50))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(50))
        .recv(S1, "h")
        .expect(send(CLIENT, "h"))
        .advance(Duration::from_secs(50))
        .wakeup()
        .recv(S1, "i")
        .expect(send(CLIENT, "i"))
        .run();
}

#[test]
fn server_closing_mid_body_closes_the_client() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        .closed(S1)
        // Too late for an error response: the client sees a short body and a close.
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            let e = f.error.as_ref().unwrap();
            assert_eq!(e.status, None);
            assert!(e.message.contains("closed the connection"), "{}", e.message);
        }))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn server_closing_mid_upload_fails_the_flow_once() {
    // The 502 answers the request; the client leaving before the rest of its body is not a
    // second failure of the same flow.
    let message = "a.test:80: server closed the connection before the response was complete";
    Playbook::new(with_hooks([HookKind::Error]))
        .ignore_pauses()
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234"))
        .closed(S1)
        .expect(hook(F1, HookKind::Error).inspect(move |f| {
            assert_eq!(f.error, Some(FlowError { message: message.into(), status: Some(502) }));
        }))
        .expect(close(S1))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", message, true)))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn server_closing_before_the_response_is_502() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .closed(S1)
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(
                502,
                "Bad Gateway",
                "a.test:80: server closed the connection before the response was complete",
                false,
            ),
        ))
        .run();
}

#[test]
fn malformed_response_is_502() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 2000 OK\r\n\r\n")
        .expect(log("invalid response"))
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "a.test:80: invalid response: malformed status line", false),
        ))
        .run_split();
}

#[test]
fn client_closing_mid_request_body_aborts_the_flow() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "01234")
        .expect(send(S1, "01234"))
        .closed(CLIENT)
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn idle_client_is_closed() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        .expect_timeout(Some(Duration::from_secs(120)))
        .advance(Duration::from_secs(120))
        .wakeup()
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn server_stalling_mid_body_closes_the_client() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error.as_ref().unwrap().message, "a.test:80 sent nothing for 60 s");
        }))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn server_sending_unasked_data_is_dropped() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        .recv(S1, "HTTP/1.1 200 OK\r\n")
        .expect(log("server sent data without a request"))
        .expect(close(S1))
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run();
}

#[test]
fn client_closing_while_waiting_for_the_response_aborts_the_flow() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        // The client is done sending; it may still read the response.
        .closed(CLIENT)
        .expect(pause(CLIENT))
        // A second close: writing failed too, the client is gone.
        .closed(CLIENT)
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn rejected_client_is_closed_after_the_linger_time() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GARBAGE\r\n\r\n")
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "malformed request line", true)))
        .expect(half_close(CLIENT))
        .expect_timeout(Some(Duration::from_secs(2)))
        // What the client still sends is read and dropped.
        .recv(CLIENT, "more garbage")
        .advance(Duration::from_secs(1))
        .wakeup()
        .advance(Duration::from_secs(1))
        .wakeup()
        .expect(close(CLIENT))
        .expect_finished()
        .expect_timeout(None)
        .run();
}

#[test]
fn server_opened_after_the_client_left_is_closed() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .closed(CLIENT)
        .expect(pause(CLIENT))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        // Late news about S1 changes nothing.
        .opened(S1)
        .recv(S1, "HTTP/1.1 200 OK\r\n")
        .run();
}

// ---------------------------------------------------------------------------------------------
// Timers measure the peer's silence, not ours

#[test]
fn slow_upload_does_not_time_the_server_out() {
    // The server owes nothing until the request is complete; 60 s of uploading is not its
    // silence.
    upload_opened(no_hooks())
        .advance(Duration::from_secs(50))
        .recv(CLIENT, "01234")
        .expect(send(S1, "01234"))
        .advance(Duration::from_secs(50))
        .wakeup()
        .recv(CLIENT, "56789")
        .expect(send(S1, "56789"))
        .expect_timeout(Some(Duration::from_secs(60)))
        .run();
}

#[test]
fn slow_hook_does_not_time_the_server_out() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        // The user takes 90 s to answer; S1 is not read meanwhile.
        .advance(Duration::from_secs(90))
        .wakeup()
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .recv(S1, "cd")
        .expect(send(CLIENT, "cd"))
        .run();
}

#[test]
fn slow_client_does_not_time_the_server_out() {
    Playbook::new(Config { high_water: 40, ..no_hooks() })
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"))
        .expect(pause(S1))
        // The client takes 90 s to read what is queued for it.
        .advance(Duration::from_secs(90))
        .wakeup()
        .drained(CLIENT)
        .expect(resume(S1))
        .recv(S1, "de")
        .expect(send(CLIENT, "de"))
        .run();
}

#[test]
fn trickled_request_head_is_408_after_the_head_timeout() {
    // A client trickling its head (slowloris) is answered 408 once the head timeout has
    // passed since the head's first byte; its later bytes do not push the deadline back.
    let message = "request head not complete after 30 s";
    Playbook::new(no_hooks())
        .expect_timeout(Some(Duration::from_secs(120)))
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHo")
        .expect_timeout(Some(Duration::from_secs(30)))
        .advance(Duration::from_secs(20))
        .recv(CLIENT, "st")
        .expect_timeout(Some(Duration::from_secs(10)))
        .advance(Duration::from_secs(10))
        .wakeup()
        .expect(log_at(LogLevel::Info, &format!("{message} (408)")))
        .expect(send(CLIENT, proxy_error(408, "Request Timeout", message, true)))
        .expect(half_close(CLIENT))
        .expect_timeout(Some(Duration::from_secs(2)))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .expect_timeout(None)
        .run();
}

#[test]
fn head_timeout_counts_from_the_first_byte_of_each_request() {
    // Between requests the idle timeout runs; the next head's first byte stops it and starts
    // the head timeout, however late in the idle period it comes.
    let config = Config { head_timeout: Duration::from_secs(5), ..no_hooks() };
    Playbook::new(config)
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        .expect_timeout(Some(Duration::from_secs(120)))
        .advance(Duration::from_secs(118))
        .recv(CLIENT, "GET http://a.test/ HT")
        .expect_timeout(Some(Duration::from_secs(5)))
        .advance(Duration::from_secs(4))
        .recv(CLIENT, "TP/1.1\r\nHost: a.test\r\n\r\n")
        // In time: the head is parsed and the request goes out on the pooled connection.
        .expect(send(S1, GET_A_UP))
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(5))
        .wakeup()
        .expect_not_finished()
        .run();
}

#[test]
fn silent_new_connection_falls_to_the_idle_timeout() {
    // No byte, no head timeout: a connection that never speaks is idle.
    Playbook::new(Config { head_timeout: Duration::from_secs(5), ..no_hooks() })
        .expect_timeout(Some(Duration::from_secs(120)))
        .advance(Duration::from_secs(120))
        .wakeup()
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn response_head_over_the_limit_is_502() {
    Playbook::new(Config { max_head_bytes: 64, ..no_hooks() })
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "x".repeat(64)))
        .expect(log("header section larger than 64 bytes"))
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "a.test:80: invalid response: header section larger than 64 bytes", false),
        ))
        .run_split();
}

#[test]
fn client_closing_before_a_pipelined_body_ends_the_connection() {
    // Found by fuzzing: the client's EOF came while an earlier response was streaming, and the
    // pipelined request read after it waited forever for a body that could not come.
    Playbook::new(no_hooks())
        .ignore_pauses()
        .recv(CLIENT, format!("{GET_A}POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc"))
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh"))
        .closed(CLIENT)
        .recv(S1, "i")
        .expect(send(CLIENT, "i"))
        // The request goes as far as it came, and is abandoned with its connection.
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc"))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

const POST_10: &str = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n";
const POST_10_UP: &str = "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n";
const STALLED: &str = "client sent nothing of the request body for 60 s";

/// A POST of ten bytes, its head through to the server.
fn upload_opened(config: Config) -> Playbook {
    Playbook::new(config)
        .recv(CLIENT, POST_10)
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, POST_10_UP))
        .expect(resume(CLIENT))
}

/// The same with the first four bytes of the body through too.
fn upload_started(config: Config) -> Playbook {
    upload_opened(config).recv(CLIENT, "0123").expect(send(S1, "0123"))
}

/// The upload of `upload_started`, answered whole by the server before its end: the server
/// connection, which cannot be reused, goes.
fn answered_early() -> Playbook {
    upload_started(with_hooks([HookKind::Error, HookKind::Response]))
        .recv(S1, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
        .expect(send(CLIENT, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nconnection: close\r\n\r\nno"))
        .expect(hook(F1, HookKind::Response))
        .expect(close(S1))
}

#[test]
fn stalled_request_body_is_408_after_the_body_timeout() {
    // The client's silence mid-body is its own: 408, the upstream request aborted, the
    // connection closed once the answer has had time to be read.
    upload_started(with_hooks([HookKind::Error]))
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(30))
        .recv(CLIENT, "45")
        .expect(send(S1, "45"))
        .advance(Duration::from_secs(59))
        .wakeup()
        .advance(Duration::from_secs(1))
        .wakeup()
        .expect(log_at(LogLevel::Info, "client sent nothing of a request body for 60 s"))
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, proxy_error(408, "Request Timeout", STALLED, true)))
        .expect(half_close(CLIENT))
        // Read again while lingering, for what the client still sends to be dropped.
        .expect(resume(CLIENT))
        .expect_timeout(Some(Duration::from_secs(2)))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

fn with_min_rate(bytes_per_sec: u64) -> Config {
    Config { body_min_rate: Some(proxy_core::MinRate { bytes_per_sec, window: Duration::from_secs(1) }), ..no_hooks() }
}

#[test]
fn a_request_body_trickled_below_the_least_rate_is_408() {
    // Four bytes in the first second, against at least five a second: the client is too
    // slow, whatever its body timeout; the upstream request is aborted.
    let slow = "client sent 4 bytes of the request body in 1 s, below the minimum of 5 bytes/s";
    upload_started(with_min_rate(5))
        .expect_timeout(Some(Duration::from_secs(1)))
        .advance(Duration::from_secs(1))
        .wakeup()
        .expect(log_at(LogLevel::Info, slow))
        .expect(close(S1))
        .expect(send(CLIENT, proxy_error(408, "Request Timeout", slow, true)))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn a_request_body_at_the_least_rate_goes_through() {
    // Two bytes a second on average, checked each second: four at once, then two more
    // two seconds later, then the rest.
    upload_started(with_min_rate(2))
        .advance(Duration::from_secs(1))
        .wakeup()
        .advance(Duration::from_secs(1))
        .wakeup()
        .recv(CLIENT, "45")
        .expect(send(S1, "45"))
        .advance(Duration::from_secs(1))
        .wakeup()
        .recv(CLIENT, "6789")
        .expect(send(S1, "6789"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        .advance(Duration::from_secs(5))
        .wakeup()
        .run();
}

#[test]
fn a_request_body_the_proxy_holds_back_is_not_measured() {
    // Five seconds without a server to send to: nothing of the body is read meanwhile, and
    // that is the proxy's doing; the measure starts when the body can flow.
    Playbook::new(with_min_rate(5))
        .recv(CLIENT, POST_10)
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .advance(Duration::from_secs(5))
        .wakeup()
        .opened(S1)
        .expect(send(S1, POST_10_UP))
        .expect(resume(CLIENT))
        .recv(CLIENT, "0123456789")
        .expect(send(S1, "0123456789"))
        .advance(Duration::from_secs(2))
        .wakeup()
        .run();
}

#[test]
fn stalled_request_body_is_not_the_server_timing_out() {
    // The server waits for the body: when its idle limit is shorter than the body timeout,
    // it is not blamed with a 504; the client gets its 408 at the body timeout.
    let config = Config { body_timeout: Duration::from_secs(90), ..no_hooks() };
    upload_started(config)
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect_timeout(Some(Duration::from_secs(30)))
        .advance(Duration::from_secs(30))
        .wakeup()
        .expect(log_at(LogLevel::Info, "client sent nothing of a request body for 90 s"))
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(408, "Request Timeout", "client sent nothing of the request body for 90 s", true),
        ))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn request_body_held_back_by_the_proxy_is_not_timed_out() {
    // The server drains slowly: the proxy stops reading the client, whose silence is then
    // the proxy's doing. Once the server drains, the client has the full timeout again.
    let config = Config { high_water: 55, body_timeout: Duration::from_secs(30), ..no_hooks() };
    // The request head is 53 bytes: the first four of the body pass the high-water mark.
    upload_started(config)
        .expect(pause(CLIENT))
        .advance(Duration::from_secs(50))
        .wakeup()
        .drained(S1)
        .expect(resume(CLIENT))
        // At 60 s the server's idle limit passes: it waits for the client, so no 504.
        .expect_timeout(Some(Duration::from_secs(10)))
        .advance(Duration::from_secs(10))
        .wakeup()
        .expect_timeout(Some(Duration::from_secs(20)))
        .advance(Duration::from_secs(19))
        .wakeup()
        .recv(CLIENT, "456789")
        .expect(send(S1, "456789"))
        .expect_timeout(Some(Duration::from_secs(60)))
        .run();
}

#[test]
fn request_body_waiting_for_a_hook_is_not_timed_out() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(CLIENT, POST_10)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .advance(Duration::from_secs(100))
        .wakeup()
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, POST_10_UP))
        .expect(resume(CLIENT))
        .recv(CLIENT, "0123456789")
        .expect(send(S1, "0123456789"))
        .run();
}

#[test]
fn stalled_body_after_an_early_answer_closes_the_connection() {
    // The server answered before the upload ended (and its connection, which cannot be
    // reused, was closed); the client then stops sending. The connection cannot carry
    // another request, so it goes too; the flow, answered whole, did not fail.
    answered_early()
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(log_at(LogLevel::Info, "client sent nothing of a request body for 60 s"))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn stalled_body_while_the_response_streams_aborts_both_sides() {
    // The server's answer is under way when the client stops sending: the answer cannot be
    // finished either, so both connections go at once.
    upload_started(with_hooks([HookKind::Error]))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nconnection: close\r\n\r\nok"))
        .recv(S1, "...")
        .expect(send(CLIENT, "..."))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(log_at(LogLevel::Info, "client sent nothing of a request body for 60 s"))
        .expect(hook(F1, HookKind::Error))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn client_leaving_after_an_early_answer_is_no_failure() {
    // The client has its whole answer and hangs up instead of sending the rest of a body
    // nobody reads: the flow ends with its response, without an error.
    answered_early()
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}
