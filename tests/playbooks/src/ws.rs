//! WebSocket frames for playbooks, written independently of the core's encoder so that a
//! script states the bytes on the wire, and the upgrade exchange the scripts start from.

use std::time::Instant;

use bytes::Bytes;

use proxy_core::websocket::Peer;

use crate::{Config, FlowId, HookReply, HookSet, MaskKeys, MessageKind, WebSocketLimits, WebSocketMessage};

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

/// The key a client uses in these scripts.
pub const CLIENT_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The keys the proxy draws in these scripts ([`keys`]): 1,2,3,4, then 5,6,7,8, ...
pub fn proxy_key(n: u8) -> [u8; 4] {
    let base = 4 * n;
    [base + 1, base + 2, base + 3, base + 4]
}

/// A frame: `fin`, `opcode`, optionally masked with `key`.
pub fn frame(fin: bool, opcode: u8, payload: impl AsRef<[u8]>, key: Option<[u8; 4]>) -> Vec<u8> {
    frame_rsv(fin, 0, opcode, payload, key)
}

/// A frame with reserved bits `rsv` (0-7, RSV1 the highest).
pub fn frame_rsv(fin: bool, rsv: u8, opcode: u8, payload: impl AsRef<[u8]>, key: Option<[u8; 4]>) -> Vec<u8> {
    let payload = payload.as_ref();
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match key {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A whole text message from the client (masked with [`CLIENT_KEY`]).
pub fn client_text(text: &str) -> Vec<u8> {
    frame(true, TEXT, text, Some(CLIENT_KEY))
}

/// A whole text message from the server (unmasked).
pub fn server_text(text: &str) -> Vec<u8> {
    frame(true, TEXT, text, None)
}

/// A close frame's payload.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The client's upgrade request through a regular proxy, to `ws://a.test/chat`.
pub const UPGRADE: &str = "GET http://a.test/chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// The request as the server gets it.
pub const UPGRADE_UPSTREAM: &str = "GET /chat HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nconnection: Upgrade\r\n\r\n";
/// The server's `101`.
pub const SWITCHING: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// The `101` as the client gets it.
pub const SWITCHING_DOWNSTREAM: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nconnection: Upgrade\r\n\r\n";

/// Mask keys 1,2,3,4, 5,6,7,8, ... counting up from the start of each connection's supply
/// (the proxy draws 64 bytes at a time, so the sequence restarts every 16 keys).
pub fn keys() -> MaskKeys {
    MaskKeys::new(move |buf| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_add(1);
        }
    })
}

/// A regular proxy raising exactly `hooks`, with the scripts' mask keys and `limits`.
pub fn ws_config(hooks: HookSet, limits: WebSocketLimits) -> Config {
    Config { hooks, websocket: WebSocketLimits { mask_keys: keys(), ..limits }, ..Config::default() }
}

/// The answer that replaces a message with `payload` of `kind`.
pub fn replace(flow: FlowId, kind: MessageKind, payload: impl Into<Bytes>) -> HookReply {
    HookReply::Message(Box::new(WebSocketMessage {
        flow,
        from: Peer::Client,
        kind,
        payload: payload.into(),
        offset: 0,
        last: true,
        injected: false,
        time: Instant::now(),
    }))
}

/// `payload` compressed as one permessage-deflate message (raw deflate, sync-flushed, its
/// tail removed), in a fresh context: what a sender without context takeover sends.
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 1024);
    c.compress_vec(payload, &mut out, FlushCompress::Sync).expect("deflate");
    assert!(out.len() < out.capacity(), "test payloads fit one call");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The plain payload of one permessage-deflate message, inflated in a fresh context.
pub fn inflate(compressed: &[u8]) -> Vec<u8> {
    use flate2::{Decompress, FlushDecompress};
    let mut d = Decompress::new(false);
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024 * 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).expect("inflate");
    out
}

/// An upgrade request offering `extensions`, and the server's `101` accepting `accepted`.
pub fn upgrade_with(extensions: &str) -> String {
    UPGRADE.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"))
}

pub fn switching_with(accepted: &str) -> String {
    SWITCHING.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Extensions: {accepted}\r\n\r\n"))
}
