use std::sync::Arc;
use std::time::Instant;
use proxy_core::*;
fn dump(c: &mut Connection) { while let Some(cmd) = c.poll_command() { match cmd { Command::SendData{conn,data} => println!("<< send {:?} {:?}", conn, String::from_utf8_lossy(&data)), other => println!("<< {:?}", other) } } }
fn main() {
    let client = ClientInfo { peer: "127.0.0.1:1".parse().unwrap(), local: "127.0.0.1:2".parse().unwrap() };
    let mut cfg = Config::default(); cfg.hooks = HookSet::NONE;
    let mut c = Connection::new(Arc::new(cfg), client);
    let now = Instant::now();
    c.handle(now, Event::Start); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId::CLIENT, data: "GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, x-foo\r\nx-foo: 1\r\n\r\n".into()}); dump(&mut c);
    c.handle(now, Event::Opened{conn: ConnId(1)}); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId(1), data: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".into()}); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId(1), data: "0\r\n\r\n".into()}); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId::CLIENT, data: "POST http://a.test/y HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc".into()}); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId(1), data: "HTTP/1.1 204 No Content\r\n\r\n".into()}); dump(&mut c);
    c.handle(now, Event::DataReceived{conn: ConnId::CLIENT, data: "GET /bad HTTP/1.1\r\n\r\n".into()}); dump(&mut c);
    c.handle(now, Event::ConnectionClosed{conn: ConnId::CLIENT}); dump(&mut c);
    println!("closed: {}", c.is_closed());
}
