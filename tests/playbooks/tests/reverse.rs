//! Reverse mode decides where connections go, never the client: whatever a request's target,
//! `Host`, `:authority` or method says, the only server ever opened is the configured upstream,
//! and `CONNECT` is refused. Plus the policy on header names with underscores, which matters
//! most in front of CGI, WSGI and PHP backends.

use playbooks::h2::{H2Peer, Request};
use playbooks::pump::{Origins, Peer, Pump};
use playbooks::*;
use proxy_core::UnderscoreHeaders;

const UPSTREAM: &str = "origin.test:8080";

fn reverse() -> Config {
    let target = ServerAddr::new("origin.test", 8080);
    Config { mode: Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, ..no_hooks() }
}

/// `request` reaches the upstream, and only it, as `upstream`.
fn served_by_the_upstream(request: &str, upstream: &str) {
    Playbook::new(reverse())
        .ignore_pauses()
        .recv(CLIENT, request)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, upstream))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        .run_split();
}

#[test]
fn an_absolute_form_target_is_served_by_the_upstream() {
    // RFC 9112 section 3.2.2: an origin server accepts the absolute-form; its authority is read
    // as a Host would be, and in reverse mode Host names us, not a destination.
    served_by_the_upstream(
        "GET http://127.0.0.1:9999/abs?q=1 HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n",
        "GET /abs?q=1 HTTP/1.1\r\nHost: origin.test:8080\r\n\r\n",
    );
    served_by_the_upstream(
        "GET https://internal.test/ HTTP/1.1\r\nHost: internal.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: origin.test:8080\r\n\r\n",
    );
    served_by_the_upstream(
        "GET http://internal.test HTTP/1.1\r\nHost: other.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: origin.test:8080\r\n\r\n",
    );
    // Without Host, HTTP/1.0: the target's authority would have been the Host.
    Playbook::new(reverse())
        .recv(CLIENT, "GET http://internal.test/x HTTP/1.0\r\n\r\n")
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, "GET /x HTTP/1.1\r\nhost: origin.test:8080\r\n\r\n"))
        .run_split();
}

#[test]
fn a_host_header_never_picks_the_upstream() {
    served_by_the_upstream(
        "GET /h HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n",
        "GET /h HTTP/1.1\r\nHost: origin.test:8080\r\n\r\n",
    );
}

#[test]
fn a_malformed_absolute_form_target_is_still_400() {
    Playbook::new(reverse())
        .recv(CLIENT, "GET http://a.test@internal.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "user information in the request target is not allowed", true)))
        .expect(half_close(CLIENT))
        .run_split();
}

#[test]
fn connect_is_405_and_opens_nothing() {
    for request in [
        "CONNECT 127.0.0.1:9999 HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n",
        "CONNECT internal.test:22 HTTP/1.1\r\n\r\n",
        // Not even a well-formed target gets as far as being looked at.
        "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        Playbook::new(reverse())
            .recv(CLIENT, request)
            .expect(log("CONNECT is not served by a reverse proxy (405)"))
            .expect(send(CLIENT, proxy_error(405, "Method Not Allowed", "CONNECT is not served by a reverse proxy", true)))
            .expect(half_close(CLIENT))
            .closed(CLIENT)
            .expect(close(CLIENT))
            .expect_finished()
            .run_split();
    }
}

#[test]
fn a_regular_proxy_still_goes_where_the_request_says() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://127.0.0.1:9999/abs HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n")
        .expect(open(S1, "127.0.0.1:9999"))
        .opened(S1)
        .expect(send(S1, "GET /abs HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n"))
        .run();
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 with prior knowledge (h2c) on a reverse listener

fn h1_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

fn h2_client(config: Config) -> Pump {
    let mut pump = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), h1_origin());
    pump.run();
    pump
}

#[test]
fn an_h2_authority_never_picks_the_upstream() {
    let mut pump = h2_client(reverse());
    pump.client_h2().get(1, "http://127.0.0.1:9999/x?y");
    pump.client_h2().get(3, "https://internal.test/z");
    pump.client_sends(b"");
    let addrs: Vec<String> = pump.addrs.values().map(ToString::to_string).collect();
    assert_eq!(addrs, [UPSTREAM, UPSTREAM], "one HTTP/1 connection each; logs: {:?}", pump.logs);
    let request = String::from_utf8_lossy(pump.server(S1).received()).into_owned();
    assert!(request.starts_with("GET /x?y HTTP/1.1\r\nhost: origin.test:8080\r\n"), "{request}");
}

#[test]
fn an_h2_connect_is_405_and_opens_nothing() {
    let mut pump = h2_client(reverse());
    let connect = Request::connect("127.0.0.1:9999").body(()).unwrap();
    pump.client_h2().open(1, connect, false);
    pump.client_sends(b"");
    let status = pump.client_h2().response(1).map(|r| r.status.as_u16());
    assert_eq!(status, Some(405), "logs: {:?}", pump.logs);
    assert_eq!(pump.client_h2().body(1), b"method not allowed: CONNECT is not served by a reverse proxy\n");
    assert!(pump.addrs.is_empty(), "opened {:?}", pump.addrs);
    // The connection goes on serving other streams, from the upstream.
    pump.client_h2().get(3, "http://internal.test/after");
    pump.client_sends(b"");
    let addrs: Vec<String> = pump.addrs.values().map(ToString::to_string).collect();
    assert_eq!(addrs, [UPSTREAM]);
}


// ---------------------------------------------------------------------------------------------
// Header names with underscores

fn with_underscores(config: Config, policy: UnderscoreHeaders) -> Config {
    Config { underscore_headers: policy, ..config }
}

#[test]
fn framing_lookalikes_are_400_under_every_policy() {
    for policy in [UnderscoreHeaders::Keep, UnderscoreHeaders::Drop, UnderscoreHeaders::Reject] {
        for (config, name) in [(no_hooks(), "Transfer_Encoding"), (reverse(), "content_length"), (reverse(), "CONTENT_LENGTH")] {
            let request = format!("POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n{name}: 6\r\n\r\nhello");
            // In regular mode an origin-form request is refused for what it is, so use absolute-form there.
            let request = match config.mode {
                Mode::Regular => request.replacen("/x", "http://a.test/x", 1),
                _ => request,
            };
            let message = format!(
                "header field {name} reads as {} where underscores count as dashes",
                if name.starts_with('T') { "transfer-encoding" } else { "content-length" }
            );
            Playbook::new(with_underscores(config, policy))
                .recv(CLIENT, request)
                .expect(send(CLIENT, proxy_error(400, "Bad Request", &message, true)))
                .expect(half_close(CLIENT))
                .run_split();
        }
    }
}

#[test]
fn names_that_only_look_like_framing_fields_pass() {
    // No backend decodes percent-escapes in names or splits a value at a tab: these frame
    // nothing, and the body is read by its one Content-Length.
    served_by_the_upstream(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-%45ncoding: chunked\r\nX: X\tTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
        "POST / HTTP/1.1\r\nHost: origin.test:8080\r\nTransfer-%45ncoding: chunked\r\nX: X\tTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
    );
}

#[test]
fn underscored_names_are_kept_dropped_or_refused_as_configured() {
    let request = "GET / HTTP/1.1\r\nHost: a\r\nX_User: mallory\r\nX-User: alice\r\n\r\n";
    Playbook::new(with_underscores(reverse(), UnderscoreHeaders::Keep))
        .recv(CLIENT, request)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: origin.test:8080\r\nX_User: mallory\r\nX-User: alice\r\n\r\n"))
        .run_split();
    Playbook::new(with_underscores(reverse(), UnderscoreHeaders::Drop))
        .recv(CLIENT, request)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: origin.test:8080\r\nX-User: alice\r\n\r\n"))
        .run_split();
    Playbook::new(with_underscores(reverse(), UnderscoreHeaders::Reject))
        .recv(CLIENT, request)
        .expect(send(CLIENT, proxy_error(400, "Bad Request", "header field X_User has an underscore in its name", true)))
        .expect(half_close(CLIENT))
        .run_split();
}

#[test]
fn the_policy_holds_for_http2_requests_too() {
    let mut pump = h2_client(with_underscores(reverse(), UnderscoreHeaders::Drop));
    let request = Request::get("http://a/d").header("x_user", "mallory").header("x-user", "alice").body(()).unwrap();
    pump.client_h2().open(1, request, true);
    pump.client_sends(b"");
    let sent = String::from_utf8_lossy(pump.server(S1).received()).into_owned();
    assert!(sent.contains("x-user: alice\r\n") && !sent.contains("x_user"), "{sent}");

    let mut pump = h2_client(reverse());
    let request = Request::post("http://a/p").header("transfer_encoding", "chunked").body(()).unwrap();
    pump.client_h2().open(1, request, true);
    pump.client_sends(b"");
    assert_eq!(pump.client_h2().response(1).map(|r| r.status.as_u16()), Some(400));
    assert!(pump.addrs.is_empty(), "opened {:?}", pump.addrs);
}
