//! The HTTP/2 entry point: a client that speaks HTTP/2 with prior knowledge, its frames
//! decoded from the input (well-formed requests, bodies, resets, window updates, settings,
//! CONTINUATIONs, GOAWAYs, and raw frames of any type), against the reference HTTP/1 origin.
//! The checks of [`Run`] hold throughout: whatever the frames, every byte that reaches a
//! server reads as canonical HTTP/1 requests, but for the tunnels `CONNECT` streams open,
//! whose servers get the streams' bytes.

use bytes::Bytes;
use proxy_core::Event;

use super::run::TUNNEL_HOST;
use super::{pieces, variant, Run};
use crate::h2::{block, frame, get_block, preface, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, RST_STREAM, SETTINGS};

const WINDOW_UPDATE: u8 = 0x8;
const PING: u8 = 0x6;

/// Client frames decoded from `data` (after a configuration byte and a cut seed), fed in
/// pieces, with the origin answering what reaches it.
pub fn h2_frames(data: &[u8]) {
    let [flags, seed, input @ ..] = data else { return };
    let config = variant(*flags, false);
    let mut wire = preface();
    wire.extend(frames(input));
    let mut run = Run::new(config);
    run.answer = true;
    run.handle(Event::Start);
    run.serve();
    for piece in pieces(*seed, &wire) {
        run.client(Bytes::copy_from_slice(piece));
        run.serve();
    }
    run.client_eof();
    run.serve();
    run.finish();
}

/// Frames from `input`: an opcode byte, a stream byte, then what the opcode needs.
fn frames(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [op, stream, rest @ ..] = input {
        input = rest;
        // Streams 1 to 15: client streams are odd; even ones are the client's mistake.
        let stream = u32::from(stream % 16);
        let mut take = |n: usize| -> Vec<u8> {
            let n = n.min(input.len());
            let (head, tail) = input.split_at(n);
            input = tail;
            head.to_vec()
        };
        match op % 11 {
            10 => {
                // A tunnel (CONNECT over HTTP/2): its DATA goes on as opaque bytes.
                let connect = block(&[(":method", "CONNECT"), (":authority", &format!("{TUNNEL_HOST}:443"))]);
                out.extend(frame(HEADERS, END_HEADERS, stream, &connect));
            }
            0 => out.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block("a.test", "/x"))),
            1 => out.extend(frame(HEADERS, END_HEADERS, stream, &get_block("a.test", "/up"))),
            2 => {
                let len = take(1).first().copied().unwrap_or(0);
                let body = vec![b'b'; usize::from(len)];
                let end = if len % 2 == 0 { END_STREAM } else { 0 };
                out.extend(frame(DATA, end, stream, &body));
            }
            3 => out.extend(frame(RST_STREAM, 0, stream, &[0, 0, 0, take(1).first().copied().unwrap_or(8) % 14])),
            4 => {
                let by = take(4);
                out.extend(frame(WINDOW_UPDATE, 0, stream, &by));
            }
            5 => {
                // One setting: an identifier from 1 to 6 and a value.
                let mut setting = vec![0, 1 + take(1).first().copied().unwrap_or(0) % 6];
                setting.extend(take(4));
                out.extend(frame(SETTINGS, 0, 0, &setting));
            }
            6 => {
                let len = usize::from(take(1).first().copied().unwrap_or(0));
                let junk = take(len);
                let flags = if len % 3 == 0 { END_HEADERS } else { 0 };
                out.extend(frame(CONTINUATION, flags, stream, &junk));
            }
            7 => out.extend(frame(PING, 0, 0, &take(8))),
            8 => out.extend(frame(GOAWAY, 0, 0, &take(8))),
            _ => {
                // Any frame at all: type, flags, payload.
                let head = take(3);
                let (kind, flags, len) = match head[..] {
                    [kind, flags, len] => (kind % 12, flags, usize::from(len)),
                    _ => (0, 0, 0),
                };
                let payload = take(len);
                out.extend(frame(kind, flags, stream, &payload));
            }
        }
    }
    out
}
