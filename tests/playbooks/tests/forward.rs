//! Forwarding: a streamed `Content-Length` body that nothing in the core needs to see is
//! handed to the driver (`Command::Forward`), which moves it by itself and reports progress
//! with `Event::Forwarded`; the exchange goes on when the last byte has moved.

use std::time::Duration;

use playbooks::*;

fn forwarding(min: u64) -> Config {
    Config { forward_min: Some(min), ..no_hooks() }
}

/// A 300-byte upload whose body is handed to the driver once the server is connected.
fn upload_forwarded(config: Config) -> Playbook {
    Playbook::new(config)
        .recv(CLIENT, "POST http://a.test/u HTTP/1.1\r\nHost: a.test\r\nContent-Length: 300\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST /u HTTP/1.1\r\nHost: a.test\r\nContent-Length: 300\r\n\r\n"))
        .expect(forward(CLIENT, S1, 300))
        .expect(resume(CLIENT))
}

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// A GET whose 1000-byte response body is handed to the driver whole.
fn download_forwarded(config: Config) -> Playbook {
    Playbook::new(config)
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
        .expect(forward(S1, CLIENT, 1000))
}

#[test]
fn download_body_is_forwarded_after_what_was_read_with_the_head() {
    Playbook::new(forwarding(100))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        // The head arrives with the first 10 of 1000 body bytes: those pass through the core.
        .recv(S1, format!("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}", "x".repeat(10)))
        .expect(send(CLIENT, format!("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}", "x".repeat(10))))
        .expect(forward(S1, CLIENT, 990))
        .forwarded(S1, 500)
        .forwarded(S1, 490)
        // The exchange is over: the next request reuses S1.
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .run();
}

#[test]
fn small_bodies_stay_in_the_core() {
    Playbook::new(forwarding(100))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"))
        .recv(S1, "y".repeat(99))
        .expect(send(CLIENT, "y".repeat(99)))
        .run();
}

#[test]
fn chunked_bodies_stay_in_the_core() {
    Playbook::new(forwarding(1))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"))
        .recv(S1, "3\r\nabc\r\n0\r\n\r\n")
        .expect(send(CLIENT, "3\r\nabc\r\n0\r\n\r\n"))
        .run();
}

#[test]
fn upload_body_is_forwarded() {
    upload_forwarded(forwarding(100))
        .forwarded(CLIENT, 300)
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .run();
}

#[test]
fn server_closing_mid_forward_cuts_the_client() {
    download_forwarded(Config { forward_min: Some(100), ..with_hooks([HookKind::Error]) })
        .forwarded(S1, 400)
        .closed(S1)
        .expect(hook(F1, HookKind::Error).inspect(|flow| {
            assert_eq!(flow.response_body_bytes, 400);
            assert!(flow.error.as_ref().unwrap().message.contains("closed"));
        }))
        .expect(close(S1))
        .expect(close(CLIENT))
        .run();
}

#[test]
fn a_buffering_hook_sees_the_whole_body() {
    Playbook::new(Config { forward_min: Some(1), ..with_hooks([HookKind::ResponseHeaders, HookKind::Response]) })
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .update(F1, |flow| flow.buffer_response = true)
        .recv(S1, "hello")
        .expect(hook(F1, HookKind::Response).inspect(|flow| {
            assert_eq!(flow.response.as_ref().unwrap().body.as_deref(), Some(&b"hello"[..]));
        }))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
        .ignore_pauses()
        .run();
}

#[test]
fn slow_forwarded_upload_is_not_a_silent_server() {
    // A forwarded upload that takes longer than the server's idle limit, moving all along:
    // each forwarded piece reached the server, so its silence counts from there.
    upload_forwarded(forwarding(100))
        .advance(Duration::from_secs(50))
        .forwarded(CLIENT, 100)
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(50))
        .wakeup()
        .forwarded(CLIENT, 200)
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .run();
}

#[test]
fn stalled_forwarded_upload_waiting_for_the_client_is_a_408() {
    // The driver holds nothing: the server took every byte and the client sends no more.
    // The client is the one timed out, and the server, which waits for it, is not blamed.
    upload_forwarded(Config { body_timeout: Duration::from_secs(10), ..forwarding(100) })
        .forwarded(CLIENT, 100)
        .expect_timeout(Some(Duration::from_secs(10)))
        .advance(Duration::from_secs(10))
        .wakeup()
        .expect(log_at(LogLevel::Info, "client sent nothing of a request body for 10 s"))
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(408, "Request Timeout", "client sent nothing of the request body for 10 s", true),
        ))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn stalled_forwarded_upload_waiting_for_the_server_is_a_504() {
    // The driver holds bytes the server does not take: the server is the one timed out,
    // however long past the body timeout.
    upload_forwarded(Config { body_timeout: Duration::from_secs(10), ..forwarding(100) })
        .forwarded_held(CLIENT, 100, 50)
        .advance(Duration::from_secs(10))
        .wakeup()
        .advance(Duration::from_secs(50))
        .wakeup()
        .expect(close(S1))
        .expect(send(CLIENT, proxy_error(504, "Gateway Timeout", "a.test:80 sent nothing for 60 s", true)))
        .run();
}

#[test]
fn a_forward_held_then_moving_again_gives_the_client_its_full_body_timeout() {
    // The server stalls with bytes in the driver's hands (a report with no bytes moved says
    // so), then takes them: from then on the forward waits for the client, which has the
    // whole body timeout.
    upload_forwarded(Config { body_timeout: Duration::from_secs(10), ..forwarding(100) })
        .forwarded_held(CLIENT, 0, 100)
        .advance(Duration::from_secs(30))
        .wakeup()
        .forwarded(CLIENT, 100)
        .expect_timeout(Some(Duration::from_secs(10)))
        .advance(Duration::from_secs(9))
        .forwarded(CLIENT, 200)
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .run();
}

#[test]
fn a_client_slow_to_take_a_forwarded_download_does_not_time_the_server_out() {
    // The driver holds response bytes the client has not taken: the server's silence is the
    // client's doing. Once the client takes them, the server's idle limit counts again.
    download_forwarded(forwarding(100))
        .forwarded_held(S1, 400, 300)
        .advance(Duration::from_secs(90))
        .wakeup()
        .forwarded(S1, 300)
        .expect_timeout(Some(Duration::from_secs(60)))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(close(S1))
        .expect(close(CLIENT))
        .run();
}
