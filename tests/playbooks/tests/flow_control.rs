//! Bounded memory: output queued past `Config::high_water` pauses the connections that feed
//! it until the driver reports it drained, and a pending hook pauses what its flow would read.

use playbooks::*;

fn high_water(n: usize) -> Config {
    Config { high_water: n, ..no_hooks() }
}

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";

#[test]
fn slow_client_pauses_the_server() {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n";
    assert_eq!(head.len(), 40);
    Playbook::new(high_water(100))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, head)
        .expect(send(CLIENT, head))
        .recv(S1, "a".repeat(50))
        .expect(send(CLIENT, "a".repeat(50)))
        // 100 bytes queued for the client: at the mark, not past it.
        .recv(S1, "b".repeat(10))
        .expect(send(CLIENT, "b".repeat(10)))
        // 101: past it.
        .recv(S1, "c")
        .expect(send(CLIENT, "c"))
        .expect(pause(S1))
        .drained(CLIENT)
        .expect(resume(S1))
        // Queued output counts from the last drain.
        .recv(S1, "d".repeat(100))
        .expect(send(CLIENT, "d".repeat(100)))
        .recv(S1, "e".repeat(139))
        .expect(send(CLIENT, "e".repeat(139)))
        .expect(pause(S1))
        // The exchange is complete, but the client has not taken its end: its next request
        // waits.
        .expect(pause(CLIENT))
        .drained(CLIENT)
        .expect(resume(S1))
        .expect(resume(CLIENT))
        // S1 idles in the pool.
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .run();
}

#[test]
fn slow_server_pauses_the_client() {
    let head = "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 300\r\n\r\n";
    assert_eq!(head.len(), 54);
    Playbook::new(high_water(100))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 300\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, head))
        .expect(resume(CLIENT))
        // 100 bytes queued for the server: at the mark, not past it.
        .recv(CLIENT, "a".repeat(46))
        .expect(send(S1, "a".repeat(46)))
        .recv(CLIENT, "b")
        .expect(send(S1, "b"))
        .expect(pause(CLIENT))
        .drained(S1)
        .expect(resume(CLIENT))
        .recv(CLIENT, "c".repeat(253))
        .expect(send(S1, "c".repeat(253)))
        .expect(pause(CLIENT))
        // A response may arrive while the server still has our bytes to read.
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        .drained(S1)
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn reading_resumes_only_when_every_reason_is_gone() {
    // The client is paused first because its body has nowhere to go, then because the server
    // connection is congested: the server coming up lifts only the first reason.
    let head = "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 60\r\n\r\n";
    Playbook::new(high_water(50))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 60\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(S1, head))
        .drained(S1)
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn pending_hook_pauses_the_client_until_answered() {
    Playbook::new(with_hooks([HookKind::RequestHeaders, HookKind::Request]))
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\n")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "body")
        .expect(send(S1, "body"))
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Continue)
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .run();
}

#[test]
fn pending_response_hook_pauses_the_server_until_answered() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .recv(S1, "cd")
        .expect(send(CLIENT, "cd"))
        .run_split();
}

#[test]
fn new_server_connection_is_paused_while_the_client_is_congested() {
    Playbook::new(high_water(50))
        .allow_reads_while_paused()
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, format!("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}", "a".repeat(20)))
        .expect(send(CLIENT, format!("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}", "a".repeat(20))))
        .expect(pause(S1))
        // Its next request is not read until it has taken the response...
        .expect(pause(CLIENT))
        // ...but one read before the pause took effect may still come. The client has not
        // drained, and asks another server for more.
        .recv(CLIENT, "GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
        .expect(open(S2, "b.test:80"))
        .expect(pause(S2))
        // A request is in progress again: what the client sends next is bounded by the
        // pipelining limit, so it is read.
        .expect(resume(CLIENT))
        .opened(S2)
        .expect(send(S2, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n"))
        .drained(CLIENT)
        .expect(resume(S1))
        .expect(resume(S2))
        .run();
}

#[test]
fn pipelined_requests_wait_while_the_client_is_not_reading() {
    // Found by fuzzing: each pipelined request that got a 502 of the proxy's own started the
    // next at once, so answers piled up for a client that read none of them.
    let refused = proxy_error(502, "Bad Gateway", "cannot connect to a.test:80: connection refused", false);
    assert!(refused.len() > 100);
    Playbook::new(high_water(100))
        .recv(CLIENT, GET_A.repeat(3))
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(send(CLIENT, &refused))
        // Past the mark: the second request waits for the client to take the first answer,
        // and nothing more is read from it meanwhile.
        .expect(pause(CLIENT))
        .drained(CLIENT)
        .expect(open(S2, "a.test:80"))
        .expect(resume(CLIENT))
        .open_failed(S2, OpenError::Refused)
        .expect(send(CLIENT, &refused))
        .expect(pause(CLIENT))
        .drained(CLIENT)
        .expect(open(S3, "a.test:80"))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn requests_one_at_a_time_wait_while_the_client_is_not_reading() {
    // Found by fuzzing: the same with each request sent only once the client was read
    // again. The proxy stops reading a client that has more than the mark unsent, so its
    // answers cannot pile up.
    let refused = proxy_error(502, "Bad Gateway", "cannot connect to a.test:80: connection refused", false);
    Playbook::new(high_water(100))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(send(CLIENT, &refused))
        .expect(pause(CLIENT))
        .drained(CLIENT)
        .expect(resume(CLIENT))
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .open_failed(S2, OpenError::Refused)
        .expect(send(CLIENT, &refused))
        .expect(pause(CLIENT))
        .run();
}
