//! HTTP/1 through a regular (explicit) proxy: absolute-form requests, keep-alive, framing,
//! hop-by-hop fields, pipelining, and what each hook reply does.

use std::time::Duration;

use playbooks::*;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
/// `GET_A` as the server sees it: origin-form, `Host` set from the absolute URL.
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
/// An HTTP/1.0 `GET http://a.test/` without `Host`, as the server sees it: the proxy adds one.
const GET_A_UP_ADDED_HOST: &str = "GET / HTTP/1.1\r\nhost: a.test\r\n\r\n";
const OK_HI: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn get_with_every_hook_pausing() {
    Playbook::new(http_proxy())
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders).inspect(|f| {
            assert_eq!(f.request.method, "GET");
            assert_eq!(f.request.url(), "http://a.test/");
            assert_eq!(f.request.headers.get_str("host"), Some("a.test"));
            assert_eq!(f.request.body, None);
        }))
        // While a hook is pending, the client is not read.
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Request))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .expect_timeout(Some(Duration::from_secs(60)))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders).inspect(|f| {
            let r = f.response.as_ref().unwrap();
            assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
            assert_eq!(r.body, None);
        }))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Continue)
        // A streamed response is complete: this hook only watches, nothing waits for it.
        .expect(hook(F1, HookKind::Response).inspect(|f| {
            assert_eq!(f.response_body_bytes, 2);
            assert!(f.ended.is_some());
        }))
        .expect(send(CLIENT, OK_HI))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        // Back to waiting for the next request on an idle connection.
        .expect_timeout(Some(Duration::from_secs(120)))
        .run();
}

#[test]
fn get_without_hooks() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

#[test]
fn keep_alive_reuses_the_server_connection() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .recv(CLIENT, "GET http://a.test/two HTTP/1.1\r\nHost: a.test\r\n\r\n")
        // No second OpenConnection: S1 is idle and reusable.
        .expect(send(S1, "GET /two HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"))
        // Another host needs another connection.
        .recv(CLIENT, "GET http://b.test:8080/ HTTP/1.1\r\nHost: b.test:8080\r\n\r\n")
        .expect(open(S2, "b.test:8080"))
        .opened(S2)
        .expect(send(S2, "GET / HTTP/1.1\r\nHost: b.test:8080\r\n\r\n"))
        .run_split();
}

#[test]
fn server_connection_close_is_not_reused() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, OK_HI))
        .expect(close(S1))
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run();
}

#[test]
fn chunked_request_is_rechunked() {
    Playbook::new(no_hooks())
        .recv(
            CLIENT,
            "POST http://a.test/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .expect(open(S1, "a.test:80"))
        // The body has nowhere to go until the server is up.
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST /up HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: chunked\r\n\r\n"))
        .expect(send(S1, "5\r\nhello\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        .expect(send(S1, "6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"))
        .recv(S1, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
        .run();
}

#[test]
fn chunked_response_is_rechunked() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n"))
        .recv(S1, "a\r\n0123456789\r\n0\r\n\r\n")
        .expect(send(CLIENT, "a\r\n0123456789\r\n0\r\n\r\n"))
        // The exchange is over; the next request reuses S1.
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .run();
}

#[test]
fn http10_client_gets_a_close_delimited_body() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.0\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP_ADDED_HOST))
        .recv(S1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        // An HTTP/1.0 client knows no chunks: the end of the connection ends the body.
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhi"))
        // The client connection is ending, and the server connections with it.
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn chunked_bodies_parse_incrementally() {
    // Buffered on both sides, so the output does not depend on how the input was sliced.
    Playbook::new(with_hooks([HookKind::RequestHeaders, HookKind::ResponseHeaders]))
        .recv(
            CLIENT,
            "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| f.buffer_request = true)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\ncontent-length: 11\r\n\r\nhello world"))
        .recv(S1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;e\r\nd\r\n0\r\nT: 1\r\n\r\n")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| f.buffer_response = true)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd"))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .run_split();
}

#[test]
fn expect_100_continue_from_the_server_is_forwarded() {
    Playbook::new(no_hooks())
        .recv(
            CLIENT,
            "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(S1, "HTTP/1.1 100 Continue\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 100 Continue\r\n\r\n"))
        .recv(CLIENT, "hello")
        .expect(send(S1, "hello"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        .run_split();
}

#[test]
fn expect_100_continue_answered_by_the_proxy_when_buffering() {
    // The proxy wants the body before it contacts the server, so it says `100 Continue`
    // itself and drops `Expect` (RFC 9110 section 10.1.1).
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(
            CLIENT,
            "PUT http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| f.buffer_request = true)
        .expect(send(CLIENT, "HTTP/1.1 100 Continue\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "hello")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "PUT / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"))
        .run();
}

#[test]
fn head_response_has_no_body_but_keeps_its_length() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "HEAD http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"))
        // No body was awaited: the connection is ready for the next request.
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .run_split();
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 204 No Content\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: \"x\"\r\n\r\n")
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: \"x\"\r\n\r\n"))
        .recv(S1, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n"))
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .run_split();
}

#[test]
fn hop_by_hop_fields_are_stripped() {
    Playbook::new(no_hooks())
        .recv(
            CLIENT,
            "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: x-foo, keep-alive\r\nx-foo: 1\r\n\
             Proxy-Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
             TE: trailers\r\nx-end: 2\r\n\r\n",
        )
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nx-end: 2\r\n\r\n"))
        .recv(
            S1,
            "HTTP/1.1 200 OK\r\nConnection: x-bar\r\nx-bar: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nContent-Length: 0\r\nx-end: 2\r\n\r\n",
        )
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-end: 2\r\n\r\n"))
        .run_split();
}

#[test]
fn pipelined_requests_are_served_in_order() {
    Playbook::new(no_hooks())
        .recv(
            CLIENT,
            "GET http://a.test/1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET http://a.test/2 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        )
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"))
        // Only now is the second request read, and it goes to the same server connection.
        .expect(send(S1, "GET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"))
        .run_split();
}

#[test]
fn client_connection_close_ends_after_the_response() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        // Half-close, then linger so the client reads the response before we reset.
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .expect_timeout(Some(Duration::from_secs(2)))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

// ---------------------------------------------------------------------------------------------
// Hook replies

#[test]
fn request_headers_update_changes_what_the_server_sees() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| {
            f.request.method = "DELETE".into();
            f.request.host = "b.test".into();
            f.request.port = 8080;
            f.request.path = "/changed?q=1".into();
            f.request.headers.insert("host", "b.test:8080");
            f.request.headers.append("x-added", "1");
        })
        .expect(open(S1, "b.test:8080"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, "DELETE /changed?q=1 HTTP/1.1\r\nHost: b.test:8080\r\nx-added: 1\r\n\r\n"))
        .run();
}

#[test]
fn request_update_changes_the_body() {
    Playbook::new(with_hooks([HookKind::RequestHeaders, HookKind::Request]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| f.buffer_request = true)
        .expect(hook(F1, HookKind::Request).inspect(|f| {
            assert_eq!(f.request.body.as_deref(), Some(&b"hello"[..]));
        }))
        .update(F1, |f| f.request.body = Some("goodbye!".into()))
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        // The length follows the new body.
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 8\r\n\r\ngoodbye!"))
        .run_split();
}

#[test]
fn response_headers_update_changes_what_the_client_sees() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| {
            let r = f.response.as_mut().unwrap();
            r.status = 203;
            r.reason = "Changed".into();
            r.headers.append("x-proxy", "yes");
        })
        .expect(send(CLIENT, "HTTP/1.1 203 Changed\r\nContent-Length: 2\r\nx-proxy: yes\r\n\r\nhi"))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .run();
}

#[test]
fn response_update_changes_the_buffered_body() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders, HookKind::Response]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| f.buffer_response = true)
        .expect(hook(F1, HookKind::Response).inspect(|f| {
            assert_eq!(f.response.as_ref().unwrap().body.as_deref(), Some(&b"hi"[..]));
        }))
        .update(F1, |f| f.response.as_mut().unwrap().body = Some("changed".into()))
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nchanged"))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .run_split();
}

#[test]
fn request_headers_kill_closes_without_contacting_a_server() {
    Playbook::new(with_hooks([HookKind::RequestHeaders, HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Kill)
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error.as_ref().unwrap().message, "killed by hook");
        }))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn request_kill_closes_without_contacting_a_server() {
    Playbook::new(with_hooks([HookKind::Request]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Kill)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn response_headers_kill_closes_both_sides() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Kill)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn request_headers_respond_answers_locally() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::text(403, "blocked")))
        .expect(send(
            CLIENT,
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 7\r\n\r\nblocked",
        ))
        .expect(resume(CLIENT))
        // The connection goes on; still no server was contacted.
        .recv(CLIENT, GET_A)
        .expect(hook(F2, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .run();
}

#[test]
fn request_respond_skips_the_unread_body() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::new(200, Headers::new(), "local")))
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nlocal"))
        .expect(resume(CLIENT))
        // The rest of the request body is read and dropped, then the connection ends.
        .recv(CLIENT, "0123456789")
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn response_headers_respond_replaces_the_response() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Respond(Response::new(404, Headers::new(), "")))
        // The server's response is abandoned with its connection.
        .expect(close(S1))
        .expect(send(CLIENT, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"))
        .expect(resume(CLIENT))
        .run();
}

// ---------------------------------------------------------------------------------------------
// Buffering limits

fn small_buffers(hooks: impl IntoIterator<Item = HookKind>) -> Config {
    Config { max_buffered_body: 8, ..with_hooks(hooks) }
}

#[test]
fn buffered_request_over_the_limit_is_413() {
    Playbook::new(small_buffers([HookKind::RequestHeaders, HookKind::Error]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n\r\nhello world")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| f.buffer_request = true)
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error.as_ref().unwrap().status, Some(413));
        }))
        .reply(F1, HookReply::Continue)
        .expect(send(
            CLIENT,
            proxy_error(413, "Content Too Large", "request body larger than the 8-byte buffering limit", false),
        ))
        .expect(resume(CLIENT))
        .run_split();
}

#[test]
fn buffered_request_over_the_limit_before_the_body_is_in() {
    Playbook::new(small_buffers([HookKind::RequestHeaders]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 20\r\n\r\n")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .update(F1, |f| f.buffer_request = true)
        .expect(resume(CLIENT))
        .recv(CLIENT, "0123456789")
        // The client is still sending: answer, then close once its body is read.
        .expect(send(
            CLIENT,
            proxy_error(413, "Content Too Large", "request body larger than the 8-byte buffering limit", true),
        ))
        .recv(CLIENT, "0123456789")
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn buffered_response_over_the_limit_is_502() {
    Playbook::new(small_buffers([HookKind::ResponseHeaders, HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| f.buffer_response = true)
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error.as_ref().unwrap().status, Some(502));
        }))
        .expect(close(S1))
        .reply(F1, HookReply::Continue)
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "response body larger than the 8-byte buffering limit", false),
        ))
        .expect(resume(CLIENT))
        .run_split();
}

// ---------------------------------------------------------------------------------------------
// Connection lifecycle

#[test]
fn client_half_close_after_request_still_gets_the_response() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .closed(CLIENT)
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn a_get_lost_with_a_reused_connection_goes_again_on_a_new_one() {
    // The server closes its idle connection just as the second request goes out: nothing of
    // an answer came, so a GET is sent again, once, on a new connection (RFC 9112 9.3.1).
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .recv(CLIENT, "GET http://a.test/two HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(send(S1, "GET /two HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .closed(S1)
        .expect(open(S2, "a.test:80"))
        .expect(close(S1))
        .opened(S2)
        .expect(send(S2, "GET /two HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S2, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .run();
}

#[test]
fn a_post_lost_with_a_reused_connection_is_502() {
    // A POST may have been acted on: it is not sent again.
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .recv(CLIENT, "POST http://a.test/two HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx")
        .expect(send(S1, "POST /two HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n\r\nx"))
        .closed(S1)
        .expect(close(S1))
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", "a.test:80: server closed a kept-alive connection before answering", false)))
        .run();
}

#[test]
fn server_closing_an_idle_connection_is_not_reused() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .closed(S1)
        .expect(close(S1))
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .opened(S2)
        .expect(send(S2, GET_A_UP))
        .run();
}

#[test]
fn response_delimited_by_close_is_rechunked() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nsome\r\n"))
        .recv(S1, "thing")
        .expect(send(CLIENT, "5\r\nthing\r\n"))
        .closed(S1)
        .expect(send(CLIENT, "0\r\n\r\n"))
        .expect(close(S1))
        // The client connection lives on.
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run();
}

#[test]
fn early_response_ends_the_upload() {
    // The server answers before the request body is complete: the rest of the body is read
    // and dropped, the server connection is not reused, and the client connection closes.
    Playbook::new(no_hooks())
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234"))
        .expect(resume(CLIENT))
        .recv(S1, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"))
        .expect(close(S1))
        .recv(CLIENT, "56789")
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn pipelined_request_waits_for_the_hook_of_the_first() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(
            CLIENT,
            "GET http://a.test/1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET http://a.test/2 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        )
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"))
        .expect(hook(F2, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F2, HookReply::Respond(Response::new(204, Headers::new(), "")))
        .expect(send(CLIENT, "HTTP/1.1 204 No Content\r\n\r\n"))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn response_kill_closes_both_sides() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders, HookKind::Response]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| f.buffer_response = true)
        .expect(hook(F1, HookKind::Response))
        .reply(F1, HookReply::Kill)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn request_respond_answers_locally() {
    Playbook::new(with_hooks([HookKind::Request]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi")
        // The body streams: the server is asked for at once, and the hook comes with the
        // end of the body.
        .expect(open(S1, "a.test:80"))
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        // Nothing is sent while the hook is pending.
        .opened(S1)
        .expect(pause(S1))
        .reply(F1, HookReply::Respond(Response::new(200, Headers::new(), "mine")))
        .expect(close(S1))
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn request_respond_before_any_server_is_contacted() {
    Playbook::new(with_hooks([HookKind::Request]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::new(200, Headers::new(), "mine")))
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nmine"))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn connection_hooks_take_flow_ids() {
    Playbook::new(Config::default())
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::ClientConnected))
        .reply(F1, HookReply::Continue)
        .expect(resume(CLIENT))
        .recv(CLIENT, GET_A)
        .expect(hook(F2, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F2, HookReply::Continue)
        .expect(hook(F2, HookKind::Request))
        .reply(F2, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(hook(F3, HookKind::ServerConnected))
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F2, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F2, HookReply::Continue)
        .expect(hook(F2, HookKind::Response))
        .expect(send(CLIENT, OK_HI))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(hook(F4, HookKind::ServerDisconnected))
        .expect(close(CLIENT))
        .expect(hook(F5, HookKind::ClientDisconnected))
        .expect_finished()
        .run();
}

#[test]
fn http10_keep_alive_is_honoured() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP_ADDED_HOST))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: keep-alive\r\n\r\nhi"))
        .recv(CLIENT, "GET http://a.test/ HTTP/1.0\r\n\r\n")
        .expect(send(S1, GET_A_UP_ADDED_HOST))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run_split();
}

#[test]
fn interim_responses_are_forwarded_to_http11_only() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .recv(CLIENT, "GET http://a.test/ HTTP/1.0\r\n\r\n")
        .expect(send(S1, GET_A_UP_ADDED_HOST))
        .recv(S1, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run_split();
}

#[test]
fn head_response_built_by_a_hook_has_no_body() {
    Playbook::new(with_hooks([HookKind::RequestHeaders]))
        .recv(CLIENT, "HEAD http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::new(200, Headers::new(), "12345")))
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, GET_A)
        .expect(hook(F2, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .run();
}

#[test]
fn via_is_added_both_ways() {
    // RFC 9110 section 7.6.3: a proxy adds Via to each message it forwards.
    Playbook::new(Config { add_via: true, ..no_hooks() })
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\nvia: 1.1 sansproxy\r\n\r\n"))
        .recv(S1, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nvia: 1.0 sansproxy\r\n\r\nhi"))
        // An HTTP/1.0 server closes after its response unless it says keep-alive.
        .expect(close(S1))
        .run();
}

#[test]
fn ipv6_literal_hosts() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://[::1]:8080/x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
        .expect(open(S1, "[::1]:8080"))
        .opened(S1)
        .expect(send(S1, "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"))
        .run();
}

#[test]
fn response_with_length_and_chunking_is_not_reused() {
    // Both framings: chunking wins (RFC 9112 section 6.3), and the connection is suspect.
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"))
        .expect(close(S1))
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run();
}
