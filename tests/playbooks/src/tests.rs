//! Tests of the harness itself, on scenarios that need no HTTP parsing: admission, the idle
//! timer, and deliberate mistakes in scripts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::*;

fn admitting() -> Playbook {
    Playbook::new(with_hooks([HookKind::ClientConnected]))
        .expect(pause(CLIENT))
        .expect(hook(F1, HookKind::ClientConnected))
}

/// The panic message of `f`, which must panic.
fn failure(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the playbook should have failed");
    panic_text(&err)
}

#[test]
fn admission_continue_resumes_reading() {
    admitting()
        .reply(F1, HookReply::Continue)
        .expect(resume(CLIENT))
        .expect_timeout(Some(Duration::from_secs(120)))
        .expect_not_finished()
        .run();
}

#[test]
fn admission_kill_closes() {
    admitting()
        .reply(F1, HookReply::Kill)
        .expect(log("refused by hook"))
        .expect(close(CLIENT))
        .expect_finished()
        .strict_logs()
        .run();
}

#[test]
fn idle_client_closed_on_virtual_clock() {
    Playbook::new(no_hooks())
        .expect_timeout(Some(Duration::from_secs(120)))
        .advance(Duration::from_secs(119))
        .expect_timeout(Some(Duration::from_secs(1)))
        .wakeup()
        .advance(Duration::from_secs(1))
        .wakeup()
        .expect(log_at(LogLevel::Debug, "idle"))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
#[should_panic(expected = "playbook mismatch")]
fn wrong_command_panics() {
    admitting().reply(F1, HookReply::Continue).expect(pause(CLIENT)).run();
}

#[test]
fn mismatch_shows_marked_transcript() {
    let msg = failure(|| admitting().reply(F1, HookReply::Kill).expect(half_close(CLIENT)).wakeup().run());
    assert!(msg.contains("transcript (>> events in, << commands out):"), "{msg}");
    assert!(msg.contains("   >> Start\n"), "{msg}");
    assert!(msg.contains("   << Hook(F1, ClientConnected 127.0.0.1:50000)\n"), "{msg}");
    assert!(msg.contains("   >> HookReply(F1, Kill)\n"), "{msg}");
    assert!(msg.contains("!! << CloseConnection(client)\n   ^^ expected << CloseConnection(client, half)"), "{msg}");
    // Logs show in the transcript even though they are not compared.
    assert!(msg.contains("<< Log(Info, \"client 127.0.0.1:50000 refused by hook\")"), "{msg}");
    assert!(msg.contains("rest of the script (not run):\n   >> Wakeup"), "{msg}");
}

#[test]
fn missing_command_panics() {
    let msg = failure(|| admitting().reply(F1, HookReply::Continue).expect(resume(CLIENT)).expect(close(CLIENT)).run());
    assert!(msg.contains("the core emitted nothing more"), "{msg}");
    assert!(msg.contains("expected: << CloseConnection(client)"), "{msg}");
}

#[test]
fn leftover_command_panics_at_end() {
    let msg = failure(|| admitting().reply(F1, HookReply::Continue).run());
    assert!(msg.contains("unexpected command ResumeReading(client)"), "{msg}");
    assert!(msg.contains("!! << ResumeReading(client)"), "{msg}");
}

#[test]
fn leftover_command_panics_at_next_event() {
    let msg = failure(|| admitting().reply(F1, HookReply::Continue).wakeup().run());
    assert!(msg.contains("unexpected command ResumeReading(client)"), "{msg}");
    assert!(msg.contains("rest of the script (not run):\n   >> Wakeup"), "{msg}");
}

#[test]
fn unclaimed_log_fails_when_strict() {
    let msg = failure(|| admitting().reply(F1, HookReply::Kill).expect(close(CLIENT)).strict_logs().run());
    assert!(msg.contains("unexpected log line"), "{msg}");
}

#[test]
fn missing_log_fails() {
    let msg = failure(|| admitting().reply(F1, HookReply::Kill).expect(log("no such line")).run());
    assert!(msg.contains("no log line of the latest event matches"), "{msg}");
}

#[test]
fn ignore_pauses() {
    Playbook::new(with_hooks([HookKind::ClientConnected]))
        .ignore_pauses()
        .expect(hook(F1, HookKind::ClientConnected))
        .reply(F1, HookReply::Continue)
        .run();
}

#[test]
fn wrong_timeout_fails() {
    let msg = failure(|| Playbook::new(no_hooks()).expect_timeout(Some(Duration::from_secs(5))).run());
    assert!(msg.contains("poll_timeout() is in 120s, expected in 5s"), "{msg}");
}

#[test]
fn reply_without_hook_fails() {
    let msg = failure(|| Playbook::new(no_hooks()).reply(F1, HookReply::Continue).run());
    assert!(msg.contains("no blocking hook of it is waiting"), "{msg}");
    let msg = failure(|| admitting().reply(F1, HookReply::Continue).expect(resume(CLIENT)).reply(F1, HookReply::Continue).run());
    assert!(msg.contains("no blocking hook of it is waiting"), "{msg}");
}

#[test]
fn recv_while_paused_fails() {
    let msg = failure(|| admitting().recv(CLIENT, "GET").run());
    assert!(msg.contains("while the core has paused reading it"), "{msg}");
}

#[test]
fn consecutive_send_expectations_join() {
    let pb = Playbook::new(no_hooks()).expect(send(CLIENT, "ab")).expect(send(CLIENT, "cd")).expect(send(S1, "x"));
    assert_eq!(pb.steps.len(), 3);
    match &pb.steps[1] {
        Step::Expect(Exp::Send { data, .. }) => assert_eq!(data, b"abcd"),
        _ => panic!("not joined"),
    }
}

#[test]
fn bytes_are_escaped_and_diffed() {
    assert_eq!(fmt_bytes(b"GET /\r\n\x00\"x\""), r#""GET /\r\n\x00\"x\"""#);
    let d = bytes_diff(b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 204 OK\r\n");
    assert!(d.contains("differ at byte 11"), "{d}");
    let long = vec![b'a'; 1000];
    assert!(fmt_bytes(&long).ends_with("(1000 bytes)"));
}

#[test]
fn split_replay_reports_slicing_dependent_output() {
    // A streamed chunked body is re-chunked as it arrives, so slicing the input changes the
    // output: run_split must notice, and say which replay diverged.
    let pb = || {
        Playbook::new(no_hooks())
            .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .expect(open(S1, "a.test:80"))
            .opened(S1)
            .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
            .recv(S1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
            .expect(send(CLIENT, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"))
    };
    pb().run();
    let msg = failure(|| pb().run_split());
    assert!(msg.contains("(replay: every DataReceived one byte at a time)"), "{msg}");
    assert!(msg.contains("as 45 pieces: 1+1+1+1+1+1+…+1"), "{msg}");
    assert!(msg.contains("sent bytes differ"), "{msg}");
}

#[test]
fn split_replay_passes_when_parsing_is_incremental() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"))
        .run_split();
}
