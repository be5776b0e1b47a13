//! Which hooks a flow raises when it does not end with the server's response: a response a
//! hook gave (`Respond`) goes through the response hooks after it, as in mitmproxy; an error
//! the proxy answers itself (502, 504, 404 and 503 of a gateway, ...) waits for the `Error`
//! hook, which sees the answer in `flow.response` and may change it.

use std::time::Duration;

use playbooks::pump::{Origins, Peer, Pump};
use playbooks::*;
use proxy_core::gateway::{Backend, Gateway, GatewaySpec, GroupSpec, RouteSpec};
use proxy_core::ProxyAuth;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
const REFUSED: &str = "cannot connect to a.test:80: connection refused";

/// A local answer as a hook gives it.
fn mocked() -> Response {
    Response::text(200, "mocked\n")
}

/// The bytes of a `text/plain` response with `body`, as an HTTP/1.1 client gets it.
fn plain(status: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The error page an `Error` hook puts in place of the proxy's.
fn custom_page(flow: &mut HttpFlow) {
    let mut headers = Headers::new();
    headers.append("content-type", "text/html");
    let status = flow.response.as_ref().map_or(0, |r| r.status);
    flow.response = Some(Response::new(status, headers, format!("<h1>sorry: {status}</h1>")));
}

fn custom_page_bytes(status: u16, reason: &str) -> String {
    let body = format!("<h1>sorry: {status}</h1>");
    format!("HTTP/1.1 {status} {reason}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}", body.len())
}

// ---------------------------------------------------------------------------------------------
// A response a hook gave goes through the response hooks

#[test]
fn a_response_given_to_request_headers_goes_through_the_response_hooks() {
    Playbook::new(http_proxy())
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(mocked()))
        // No server is contacted, and `Request` is not raised: the response hooks see the
        // mocked response as they would a server's.
        .expect(hook(F1, HookKind::ResponseHeaders).inspect(|f| {
            let r = f.response.as_ref().unwrap();
            assert_eq!((r.status, r.body.as_deref()), (200, Some(&b"mocked\n"[..])));
            assert_eq!(f.error, None);
        }))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Response).inspect(|f| {
            assert_eq!(f.response.as_ref().unwrap().body.as_deref(), Some(&b"mocked\n"[..]));
        }))
        // What the response hook changes is what the client gets.
        .update(F1, |f| {
            let r = f.response.as_mut().unwrap();
            r.body = Some("changed by the response hook\n".into());
            r.headers.append("x-seen", "1");
        })
        .expect(send(
            CLIENT,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 29\r\nx-seen: 1\r\n\r\n\
             changed by the response hook\n",
        ))
        .expect(resume(CLIENT))
        .run_split();
}

#[test]
fn a_response_given_to_the_request_hook_goes_through_the_response_hook() {
    // Only the hooks in the set are raised: here `Response`, not `ResponseHeaders`.
    Playbook::new(with_hooks([HookKind::Request, HookKind::Response]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::text(403, "no posting\n")))
        .expect(hook(F1, HookKind::Response).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 403)))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, plain(403, "Forbidden", "no posting\n")))
        .expect(resume(CLIENT))
        .run_split();
}

#[test]
fn a_response_given_to_response_headers_replaces_the_servers_and_goes_through_the_response_hook() {
    Playbook::new(with_hooks([HookKind::ResponseHeaders, HookKind::Response]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Respond(mocked()))
        .expect(hook(F1, HookKind::Response).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 200)))
        // The server's body is not wanted any more: its connection goes.
        .expect(close(S1))
        .reply(F1, HookReply::Respond(Response::text(403, "gone\n")))
        // A response given to `Response` is sent as it is: no hook follows.
        .expect(send(CLIENT, plain(403, "Forbidden", "gone\n")))
        .expect(resume(CLIENT))
        .run();
}

/// Found by the `scenario` fuzz target: the server answered before the request body ended,
/// its head went through `ResponseHeaders` (which asked for both bodies whole), and the
/// `Request` hook at the body's end answered the flow itself. Its response replaces the
/// server's, which the client has not seen, and goes through `Response` only:
/// `ResponseHeaders` was this flow's already.
#[test]
fn a_response_given_to_the_request_hook_after_an_early_response_head_raises_no_second_response_headers() {
    Playbook::new(http_proxy())
        .recv(CLIENT, "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n")
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n"))
        .expect(resume(CLIENT))
        .recv(CLIENT, "0123")
        .expect(send(S1, "0123"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .update(F1, |f| {
            f.buffer_request = true;
            f.buffer_response = true;
        })
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .recv(CLIENT, "456789")
        .expect(send(S1, "456789"))
        .expect(hook(F1, HookKind::Request))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Respond(Response::text(403, "no\n")))
        .expect(hook(F1, HookKind::Response).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 403)))
        // The server's response is not wanted any more: its connection goes.
        .expect(close(S1))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, plain(403, "Forbidden", "no\n")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn a_response_given_by_a_hook_reaches_the_response_hooks_of_an_h2_client() {
    let mut pump = Pump::new(http_proxy(), Peer::H2(Box::new(playbooks::h2::H2Peer::client())), Box::new(|_| None))
        .replies(|hook| match hook {
            Hook::RequestHeaders(_) => HookReply::Respond(mocked()),
            Hook::Response(flow) => {
                let mut flow = flow.clone();
                flow.response.as_mut().unwrap().body = Some("changed\n".into());
                HookReply::Update(flow)
            }
            _ => HookReply::Continue,
        });
    pump.run();
    pump.client_h2().get(1, "http://a.test/x");
    pump.client_sends(b"");
    let kinds = pump.hook_kinds();
    assert_eq!(kinds, [HookKind::RequestHeaders, HookKind::ResponseHeaders, HookKind::Response]);
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(200));
    assert_eq!(client.body(1), b"changed\n");
    assert_eq!(client.ended(1), Some(None));
    assert!(pump.addrs.is_empty(), "no upstream");
}

#[test]
fn a_connect_refused_by_its_hook_raises_no_response_hook() {
    // As in mitmproxy: a refused CONNECT's answer goes to the client as it is.
    Playbook::new(http_proxy())
        .recv(CLIENT, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        .expect(hook(F1, HookKind::HttpConnect))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::text(403, "no tunnels\n")))
        .expect(send(CLIENT, plain(403, "Forbidden", "no tunnels\n")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn the_407_for_missing_credentials_goes_through_the_response_hook() {
    let config = Config { proxy_auth: Some(ProxyAuth::single("alice", "secret")), ..with_hooks(HTTP_HOOKS) };
    let body = "proxy authentication required: the proxy needs a username and password (Proxy-Authorization: Basic)\n";
    Playbook::new(config)
        .recv(CLIENT, GET_A)
        .expect(log("proxy authentication failed: no Proxy-Authorization"))
        // Refused before any request hook: the response hooks see the 407 the client gets.
        .expect(hook(F1, HookKind::ResponseHeaders).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 407)))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Response))
        .reply(F1, HookReply::Continue)
        .expect(send(
            CLIENT,
            format!(
                "HTTP/1.1 407 Proxy Authentication Required\r\ncontent-type: text/plain; charset=utf-8\r\n\
                 content-length: {}\r\nproxy-authenticate: Basic realm=\"sansproxy\"\r\n\r\n{body}",
                body.len()
            ),
        ))
        .expect(resume(CLIENT))
        .run();
}

// ---------------------------------------------------------------------------------------------
// The proxy's own error answers wait for the `Error` hook

#[test]
fn a_refused_connection_raises_error_with_the_502_which_the_hook_replaces() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(log(REFUSED))
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error, Some(FlowError { message: REFUSED.into(), status: Some(502) }));
            let r = f.response.as_ref().unwrap();
            assert_eq!(r.status, 502);
            assert_eq!(r.body.as_deref(), Some(format!("bad gateway: {REFUSED}\n").as_bytes()));
        }))
        // The answer is not sent until the hook says what it is.
        .expect(pause(CLIENT))
        .update(F1, custom_page)
        .expect(send(CLIENT, custom_page_bytes(502, "Bad Gateway")))
        .expect(resume(CLIENT))
        // The client connection goes on.
        .recv(CLIENT, GET_A)
        .expect(open(S2, "a.test:80"))
        .run_split();
}

#[test]
fn an_error_hook_may_answer_with_a_response_of_its_own() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Dns("no such host".into()))
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            let error = f.error.as_ref().unwrap();
            assert_eq!(error.status, Some(502));
            assert!(error.message.contains("no such host"), "{}", error.message);
        }))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::text(503, "try later\n")))
        .expect(send(CLIENT, plain(503, "Service Unavailable", "try later\n")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn an_error_hook_that_takes_the_answer_away_sends_the_proxys_own() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(hook(F1, HookKind::Error))
        .expect(pause(CLIENT))
        .update(F1, |f| f.response = None)
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", REFUSED, false)))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn killing_the_flow_in_the_error_hook_closes_the_client_without_an_answer() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Refused)
        .expect(hook(F1, HookKind::Error))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Kill)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn an_unreachable_connect_target_raises_error_with_the_502() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        .expect(open(S1, "a.test:443"))
        .open_failed(S1, OpenError::Refused)
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.response.as_ref().map(|r| r.status), Some(502));
        }))
        .expect(pause(CLIENT))
        .update(F1, custom_page)
        .expect(send(CLIENT, custom_page_bytes(502, "Bad Gateway")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn a_silent_server_raises_error_with_the_504_which_the_hook_replaces() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            let error = f.error.as_ref().unwrap();
            assert_eq!((error.message.as_str(), error.status), ("a.test:80 sent nothing for 60 s", Some(504)));
            assert_eq!(f.response.as_ref().map(|r| r.status), Some(504));
        }))
        .expect(close(S1))
        .expect(pause(CLIENT))
        .update(F1, custom_page)
        .expect(send(CLIENT, custom_page_bytes(504, "Gateway Timeout")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn a_connect_timeout_raises_error_with_the_504() {
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .open_failed(S1, OpenError::Timeout)
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            assert_eq!(f.error.as_ref().and_then(|e| e.status), Some(504));
            assert_eq!(f.response.as_ref().map(|r| r.status), Some(504));
        }))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Kill)
        .expect(close(CLIENT))
        .run();
}

#[test]
fn a_server_closing_before_its_response_raises_error_with_the_502() {
    let message = "a.test:80: server closed the connection before the response was complete";
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .closed(S1)
        .expect(hook(F1, HookKind::Error).inspect(move |f| {
            assert_eq!(f.error, Some(FlowError { message: message.into(), status: Some(502) }));
        }))
        .expect(close(S1))
        .expect(pause(CLIENT))
        .update(F1, custom_page)
        .expect(send(CLIENT, custom_page_bytes(502, "Bad Gateway")))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn a_response_cut_short_is_only_reported_to_the_error_hook() {
    // The client has the head already: nothing to answer, nothing to wait for.
    Playbook::new(with_hooks([HookKind::Error]))
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        .closed(S1)
        .expect(hook(F1, HookKind::Error).inspect_hook(|h| {
            assert!(!h.is_blocking());
            assert_eq!(h.flow().and_then(|f| f.error.as_ref()).and_then(|e| e.status), None);
        }))
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn without_the_error_hook_the_502_goes_at_once() {
    // Nothing waits for a hook that is not in the set, and error flows raise no `Response`.
    Playbook::new(with_hooks([HookKind::RequestHeaders, HookKind::Response]))
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .open_failed(S1, OpenError::Refused)
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", REFUSED, false)))
        .run();
}

#[test]
fn an_error_hook_pending_on_one_h2_stream_does_not_stall_another() {
    // a.test refuses connections; b.test answers.
    let origins: Origins = Box::new(|addr| (addr.host == "b.test").then(|| Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(with_hooks([HookKind::Error]), Peer::H2(Box::new(playbooks::h2::H2Peer::client())), origins)
        .holding(|hook| matches!(hook, Hook::Error(_)));
    pump.run();
    pump.client_h2().get(1, "http://a.test/");
    pump.client_h2().get(3, "http://b.test/");
    pump.client_sends(b"");
    assert_eq!(pump.held.len(), 1, "a.test's 502 waits for its hook");
    let (flow, kind) = pump.held[0];
    assert_eq!(kind, HookKind::Error);
    assert!(pump.client_h2().response(1).is_none());
    let b = *pump.addrs.iter().find(|(_, a)| a.host == "b.test").expect("b.test opened").0;
    pump.server_sends(b, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(pump.client_h2().body(3), b"ok", "the other stream went on");

    let mut changed = pump.hooks.iter().find_map(|h| match h {
        Hook::Error(f) => Some(f.clone()),
        _ => None,
    });
    let changed = changed.as_mut().expect("the error hook's flow");
    custom_page(changed);
    pump.answer(flow, HookReply::Update(changed.clone()));
    let client = pump.client_h2();
    assert_eq!(client.response(1).map(|r| r.status.as_u16()), Some(502));
    assert_eq!(client.body(1), b"<h1>sorry: 502</h1>");
    assert_eq!(client.ended(1), Some(None));
}

#[test]
fn a_gateway_without_a_route_raises_error_with_the_404_which_the_hook_replaces() {
    let backend = Backend::parse("http://127.0.0.1:9001").unwrap();
    let spec = GatewaySpec {
        groups: vec![GroupSpec::new("site", vec![backend])],
        routes: vec![RouteSpec { host: Some("shop.test".into()), ..RouteSpec::to_group("site") }],
        forwarded_headers: false,
    };
    let config = Config {
        mode: Mode::Reverse { scheme: Scheme::Http, target: ServerAddr::new("127.0.0.1", 9001), client_tls: false },
        gateway: Some(Gateway::new(spec, 1).unwrap()),
        ..with_hooks([HookKind::Error])
    };
    Playbook::new(config)
        .recv(CLIENT, "GET /about HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .expect(log("no route for other.test/about"))
        // Refused before any request hook: `Error` is the flow's first.
        .expect(hook(F1, HookKind::Error).inspect(|f| {
            let error = f.error.as_ref().unwrap();
            assert_eq!((error.message.as_str(), error.status), ("no route for other.test/about", Some(404)));
        }))
        .expect(pause(CLIENT))
        .update(F1, custom_page)
        .expect(send(CLIENT, custom_page_bytes(404, "Not Found")))
        .expect(resume(CLIENT))
        .run();
}
