//! Record protection for one connection: plaintext above, ciphertext on the wire.
//!
//! A [`TlsSession`] sits in the connection table under a connection that speaks TLS. The
//! context encrypts what layers send on it, and the TLS transport at the bottom of the layer
//! stack (`layers/tls/transport.rs`, which uses this module, not the other way round) decrypts
//! what arrives before any other layer sees it, so the HTTP layers read and write plaintext
//! whatever the transport. Handshake progress surfaces as the events a layer already understands: an
//! upstream connection counts as [`Opened`](crate::Event::Opened) once its handshake is done,
//! and as [`OpenFailed`](crate::Event::OpenFailed) when the handshake fails.

use std::io::{BufRead, Write};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::CertificateDer;

use crate::ids::{ConnId, ServerAddr};
use crate::tls::{TlsError, TlsFailure, TlsInfo, TlsPeer};

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession").field("peer", &self.peer).field("server", &self.server).finish_non_exhaustive()
    }
}

pub(crate) struct TlsSession {
    conn: rustls::Connection,
    /// Who is at the other end: a rustls client session talks to a server.
    pub(crate) peer: TlsPeer,
    pub(crate) server: ServerAddr,
    pub(crate) server_name: Option<String>,
    pub(crate) state: TlsState,
    /// Our `close_notify` went out, and the connection's writing side with it: what rustls
    /// would still send (an alert answering a late record, say) has nowhere to go. The
    /// reading side carries on in whatever [`TlsState`] it is.
    write_closed: bool,
}

/// Where a session is, as far as what arrives from the peer is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsState {
    /// An upstream session whose TCP connection is not open yet: its first flight waits.
    Connecting,
    /// Handshake records are being exchanged.
    Handshaking,
    /// The handshake completed (and was reported): application data flows.
    Established,
    /// The peer's `close_notify` arrived and was reported as the connection closing; the
    /// driver's report of the same end is still to come, and is not news.
    PeerClosed,
    /// Both reports of the peer's end are in: a further close (a write failed) is news.
    Closed,
    /// The session failed: nothing more goes in or out.
    Failed,
}

/// What one batch of ciphertext produced.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) plaintext: Bytes,
    /// Handshake records (or alerts) to send back.
    pub(crate) outgoing: Bytes,
    /// The handshake completed with this batch.
    pub(crate) established: bool,
    /// The peer sent `close_notify`.
    pub(crate) closed: bool,
    pub(crate) error: Option<TlsError>,
}

impl TlsSession {
    pub(crate) fn new(conn: rustls::Connection, server: ServerAddr, server_name: Option<String>) -> Self {
        let peer = match conn {
            rustls::Connection::Client(_) => TlsPeer::Server,
            rustls::Connection::Server(_) => TlsPeer::Client,
        };
        let mut session =
            Self {
                conn,
                peer,
                server,
                server_name,
                state: TlsState::Handshaking,
                write_closed: false,
            };
        // The context accounts for queued output itself and pauses readers when it grows; a
        // rustls-side limit would only make writes partial.
        session.conn.set_buffer_limit(None);
        session
    }

    /// A session for a connection the driver has not opened yet: its handshake waits for
    /// [`opened`](Self::opened).
    pub(crate) fn connecting(mut self) -> Self {
        self.state = TlsState::Connecting;
        self
    }

    /// The TCP connection under a [`Connecting`](TlsState::Connecting) session is up: the
    /// handshake's first flight, to send.
    pub(crate) fn opened(&mut self) -> Bytes {
        self.state = TlsState::Handshaking;
        self.take_outgoing()
    }

    /// Take in ciphertext from the peer.
    pub(crate) fn receive(&mut self, data: &[u8]) -> Received {
        let mut result = Received::default();
        if self.state == TlsState::Failed {
            return result;
        }
        let was_handshaking = self.conn.is_handshaking();
        let mut plaintext = BytesMut::new();
        let mut input = data;
        // Never hand rustls an empty slice: it would take that for the end of the stream.
        while !input.is_empty() && !result.closed {
            let before = input.len();
            // The only error is "plaintext buffer full", which the drain below cures.
            let _ = self.conn.read_tls(&mut input);
            let available = match self.conn.process_new_packets() {
                Ok(state) => {
                    result.closed = state.peer_has_closed();
                    state.plaintext_bytes_to_read()
                }
                Err(error) => {
                    result.error = Some(TlsError::Rustls(error));
                    self.state = TlsState::Failed;
                    // An alert describing the error may be queued: send it.
                    result.outgoing = self.take_outgoing();
                    return result;
                }
            };
            // Room for all the plaintext this input can hold, taken once: what rustls has now
            // and at most as much again as the ciphertext still to come. Growing record by
            // record would copy it all over again.
            if available > 0 && plaintext.capacity() == 0 {
                plaintext.reserve(available + input.len());
            }
            let start = plaintext.len();
            let mut reader = self.conn.reader();
            // Straight from rustls's buffer into ours, one copy and no zeroing first.
            while let Ok(chunk) = reader.fill_buf() {
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                plaintext.extend_from_slice(chunk);
                reader.consume(n);
            }
            let filled = plaintext.len();
            if input.len() == before && filled == start {
                // rustls took nothing and gave nothing: it will not get better.
                result.error = Some(TlsError::Stuck);
                self.state = TlsState::Failed;
                return result;
            }
        }
        result.plaintext = plaintext.freeze();
        result.outgoing = self.take_outgoing();
        if was_handshaking && !self.conn.is_handshaking() {
            result.established = true;
            if self.state == TlsState::Handshaking {
                self.state = TlsState::Established;
            }
        }
        if result.closed {
            self.state = TlsState::PeerClosed;
        }
        result
    }

    /// Encrypt `data` for the peer. Before the handshake completes, rustls holds it back and
    /// sends it once the keys are there.
    pub(crate) fn send(&mut self, data: &[u8]) -> Bytes {
        if self.state == TlsState::Failed || self.write_closed {
            return Bytes::new();
        }
        // Unlimited buffer: a write takes everything.
        let _ = self.conn.writer().write_all(data);
        self.take_outgoing()
    }

    /// A `close_notify` for the peer, the last bytes this session sends.
    pub(crate) fn close(&mut self) -> Bytes {
        if self.state == TlsState::Connecting {
            // Never opened: its first flight, still queued, must not go out now.
            self.write_closed = true;
            return Bytes::new();
        }
        if self.state == TlsState::Failed || self.write_closed {
            return Bytes::new();
        }
        self.conn.send_close_notify();
        let notify = self.take_outgoing();
        self.write_closed = true;
        notify
    }

    /// Records rustls has ready to go out (the first flight of a client handshake, say);
    /// nothing once [`close`](Self::close) has sent the last.
    pub(crate) fn take_outgoing(&mut self) -> Bytes {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if self.write_closed {
            return Bytes::new();
        }
        Bytes::from(out)
    }

    pub(crate) fn info(&self, conn: ConnId) -> TlsInfo {
        let c = &self.conn;
        TlsInfo {
            conn,
            peer: self.peer,
            server: self.server.clone(),
            server_name: self.server_name.clone(),
            version: c.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            cipher: c.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
            alpn: c.alpn_protocol().map(<[u8]>::to_vec),
            peer_certificates: self.peer_certificates(),
        }
    }

    pub(crate) fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        self.conn.peer_certificates().map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default()
    }

    pub(crate) fn alpn(&self) -> Option<Vec<u8>> {
        self.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub(crate) fn failure(&self, conn: ConnId, error: String) -> TlsFailure {
        TlsFailure { conn, peer: self.peer, server: self.server.clone(), server_name: self.server_name.clone(), error }
    }
}
