//! Record protection for one connection: plaintext above, ciphertext on the wire.
//!
//! A [`TlsSession`] sits in the connection table under a connection that speaks TLS. The
//! context encrypts what layers send on it, and the TLS transport at the bottom of the layer
//! stack (`layers/tls/transport.rs`, which uses this module, not the other way round) decrypts
//! what arrives before any other layer sees it, so the HTTP layers read and write plaintext
//! whatever the transport. Handshake progress surfaces as the events a layer already understands: an
//! upstream connection counts as [`Opened`](crate::Event::Opened) once its handshake is done,
//! and as [`OpenFailed`](crate::Event::OpenFailed) when the handshake fails.
//!
//! rustls runs through its unbuffered API: it decrypts records where they arrived, in the
//! buffer the driver read them into, and encrypts straight into the buffer that goes out. The
//! session keeps only what rustls has not let go of yet (the start of a record whose end is
//! still on the way, or handshake records waiting for the rest of a message) and the
//! plaintext the layers sent before the handshake allowed encrypting it; an idle session
//! holds no buffer at all.
//!
//! Small pieces the layers send in one turn are sealed into one record: an HTTP/1 response's
//! head and body, a chunk's size line, data and CRLF, would otherwise each cost a record (22
//! bytes more on the wire, a pass through rustls and an AEAD seal here, an open at the peer).
//! [`queue`](TlsSession::queue) keeps such a piece, and [`seal`](TlsSession::seal) (which
//! the context calls once the turn's commands are taken) encrypts what was kept. Whatever
//! else the session sends (a larger piece, a reply to the peer, `close_notify`) seals what
//! waits first, so records leave in the order their plaintext was sent.

use bytes::{Buf, Bytes, BytesMut};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic};
use rustls::InvalidMessage;

use crate::ids::{ConnId, ServerAddr};
use crate::tls::{TlsCause, TlsError, TlsFailure, TlsInfo, TlsPeer};

/// A TLS record's header: type, version, length.
const RECORD_HEADER: usize = 5;

/// Room to make for one record's framing around its plaintext (header, content type, nonce,
/// tag: 29 bytes at most for the suites rustls offers) when encrypting. A guess that is too
/// small costs a second try, not an error.
const RECORD_OVERHEAD: usize = 32;

/// The plaintext rustls puts in one record unless configured to put less.
const RECORD_PLAINTEXT: usize = 16384;

/// Pieces shorter than this wait to share a record with what follows them in the turn
/// ([`TlsSession::queue`]); longer ones are sealed at once, as copying them would cost more
/// than the record it saves.
const COALESCE_BELOW: usize = 4096;

/// States one pass may go through besides those that each consume a record: handshake flights
/// (each message one state to encode and the flight one to transmit), a closing alert.
const PASS_STATES: usize = 64;

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession").field("peer", &self.peer).field("server", &self.server).finish_non_exhaustive()
    }
}

pub(crate) struct TlsSession {
    conn: Conn,
    /// Who is at the other end: a rustls client session talks to a server.
    pub(crate) peer: TlsPeer,
    pub(crate) server: ServerAddr,
    pub(crate) server_name: Option<String>,
    pub(crate) state: TlsState,
    /// Our `close_notify` went out, and the connection's writing side with it: what rustls
    /// would still send (an alert answering a late record, say) has nowhere to go. The
    /// reading side carries on in whatever [`TlsState`] it is.
    write_closed: bool,
    /// Ciphertext rustls has not let go of: the start of a record, or handshake records that
    /// wait for the rest of their message. New input is appended to it.
    held: BytesMut,
    /// Plaintext sent before the handshake allowed encrypting it, or queued to share a
    /// record with what follows it in the turn ([`queue`](Self::queue)).
    pending: BytesMut,
    /// A session with a client answered its ClientHello: the client has the proxy's
    /// certificate (unless it resumed a session, with which it trusted it before).
    answered: bool,
    /// Application data arrived from the peer.
    pub(crate) data_received: bool,
    /// When the handshake completed, as the transport saw it.
    pub(crate) established_at: Option<std::time::Instant>,
}

/// The two kinds of unbuffered connection, which rustls does not unite under one type.
enum Conn {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
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

/// One pass through rustls's state machine: what it is asked to send, and what came out.
#[derive(Default)]
struct Pass<'s> {
    /// Plaintext to encrypt after what is pending, as soon as the keys allow; emptied once it
    /// is encrypted.
    send: &'s [u8],
    /// A `close_notify` is to follow everything sent.
    close: bool,
    /// Decrypted application data.
    plaintext: BytesMut,
    /// Records for the peer.
    outgoing: Vec<u8>,
    /// The peer's `close_notify` was read.
    peer_closed: bool,
}

impl TlsSession {
    /// A session towards a server (we are the client), verifying it as `name` and offering
    /// `alpn`.
    pub(crate) fn client(
        config: std::sync::Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        alpn: Vec<Vec<u8>>,
        server: ServerAddr,
        server_name: Option<String>,
    ) -> Result<Self, rustls::Error> {
        let conn = UnbufferedClientConnection::new_with_alpn(config, name, alpn)?;
        Ok(Self::new(Conn::Client(conn), TlsPeer::Server, server, server_name))
    }

    /// A session towards a client (we are the server). Its handshake starts with the
    /// `ClientHello` handed to [`receive`](Self::receive).
    pub(crate) fn server(
        config: std::sync::Arc<rustls::ServerConfig>,
        server: ServerAddr,
        server_name: Option<String>,
    ) -> Result<Self, rustls::Error> {
        let conn = UnbufferedServerConnection::new(config)?;
        Ok(Self::new(Conn::Server(conn), TlsPeer::Client, server, server_name))
    }

    fn new(conn: Conn, peer: TlsPeer, server: ServerAddr, server_name: Option<String>) -> Self {
        Self {
            conn,
            peer,
            server,
            server_name,
            state: TlsState::Handshaking,
            write_closed: false,
            held: BytesMut::new(),
            pending: BytesMut::new(),
            answered: false,
            data_received: false,
            established_at: None,
        }
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

    fn common(&self) -> &rustls::CommonState {
        match &self.conn {
            Conn::Client(conn) => conn,
            Conn::Server(conn) => conn,
        }
    }

    /// Take in ciphertext from the peer.
    pub(crate) fn receive(&mut self, data: Bytes) -> Received {
        let mut result = Received::default();
        if matches!(self.state, TlsState::Failed | TlsState::PeerClosed | TlsState::Closed) {
            // Nothing the peer sends after its close_notify is read, nor after a failure.
            return result;
        }
        let was_handshaking = self.common().is_handshaking();
        // Where a failure on the first bytes would be: whether they are an HTTP response.
        let start = if self.held.is_empty() { &data[..] } else { &self.held[..] };
        let http = was_handshaking && start.starts_with(b"HTTP/");
        // Plaintext is never longer than the ciphertext that carried it. A single record's
        // is given exactly the room it takes when it comes (a buffer as long as its contents
        // becomes `Bytes` without a second allocation); several are given the room of the
        // complete records at once, rather than growing record by record.
        let (records, complete) = complete_records(&self.held, &data);
        let room = if records > 1 && !was_handshaking { complete } else { 0 };
        let mut pass = Pass { plaintext: BytesMut::with_capacity(room), ..Pass::default() };
        if let Err(error) = self.take_in(data, &mut pass) {
            let error = match error {
                // The first bytes are no TLS record: rustls fails on the record header.
                TlsError::Rustls(rustls::Error::InvalidMessage(
                    InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
                )) if was_handshaking => TlsError::NotTls { http },
                error => error,
            };
            return self.failed(error, pass);
        }
        result.plaintext = pass.plaintext.freeze();
        result.outgoing = self.outgoing(pass.outgoing);
        self.data_received |= !result.plaintext.is_empty();
        self.answered |= self.peer == TlsPeer::Client && was_handshaking && !result.outgoing.is_empty();
        result.closed = pass.peer_closed;
        if was_handshaking && !self.common().is_handshaking() {
            result.established = true;
            if self.state == TlsState::Handshaking {
                self.state = TlsState::Established;
            }
        }
        if result.closed {
            self.state = TlsState::PeerClosed;
            self.held = BytesMut::new();
        }
        result
    }

    /// Run `data` through rustls, copying only what must wait for more: the front of `data`
    /// that completes a record already held, and the incomplete record it ends with. The rest
    /// is decrypted where it lies.
    fn take_in(&mut self, mut data: Bytes, pass: &mut Pass<'_>) -> Result<(), TlsError> {
        if !self.held.is_empty() {
            while !data.is_empty() {
                let missing = incomplete(&self.held);
                if missing == 0 {
                    break;
                }
                let take = missing.min(data.len());
                self.held.extend_from_slice(&data[..take]);
                data.advance(take);
            }
            self.run_held(pass)?;
            if !self.held.is_empty() {
                // rustls keeps complete records (a handshake message spanning them): what
                // follows must come right after them.
                self.held.extend_from_slice(&data);
                return self.run_held(pass);
            }
        }
        if data.is_empty() || pass.peer_closed {
            return Ok(());
        }
        match data.try_into_mut() {
            Ok(mut input) => {
                let used = self.run(&mut input, pass)?;
                let rest = &input[used..];
                if !rest.is_empty() && !pass.peer_closed {
                    let mut held = BytesMut::with_capacity(rest.len() + incomplete(rest));
                    held.extend_from_slice(rest);
                    self.held = held;
                }
                Ok(())
            }
            // Shared with other reads (small ones share one buffer): decrypted in a copy.
            Err(data) => {
                self.held.extend_from_slice(&data);
                self.run_held(pass)
            }
        }
    }

    /// Run what is held through rustls and let go of what it is done with.
    fn run_held(&mut self, pass: &mut Pass<'_>) -> Result<(), TlsError> {
        let mut held = std::mem::take(&mut self.held);
        let result = self.run(&mut held, pass);
        if let Ok(used) = result {
            held.advance(used);
        }
        // Emptied, its allocation goes too: an idle session holds nothing.
        if !held.is_empty() {
            self.held = held;
        }
        result.map(drop)
    }

    /// One pass of rustls's state machine over `incoming`: how much of it rustls is done with.
    fn run(&mut self, incoming: &mut [u8], pass: &mut Pass<'_>) -> Result<usize, TlsError> {
        let result = match &mut self.conn {
            Conn::Client(conn) => drive(conn, incoming, &mut self.pending, pass),
            Conn::Server(conn) => drive(conn, incoming, &mut self.pending, pass),
        };
        // What could not be encrypted yet waits for the keys.
        if !pass.send.is_empty() {
            self.pending.extend_from_slice(pass.send);
            pass.send = &[];
        }
        result
    }

    /// The session failed with `error`: the alert describing it (in `pass`) is the last
    /// thing to send.
    fn failed(&mut self, error: TlsError, pass: Pass<'_>) -> Received {
        self.state = TlsState::Failed;
        self.held = BytesMut::new();
        self.pending = BytesMut::new();
        Received { outgoing: self.outgoing(pass.outgoing), error: Some(error), ..Received::default() }
    }

    /// Encrypt `data` for the peer. Before the handshake allows it, the plaintext waits and
    /// goes out (encrypted) once the keys are there.
    pub(crate) fn send(&mut self, data: &[u8]) -> Bytes {
        if self.state == TlsState::Failed || self.write_closed {
            return Bytes::new();
        }
        let mut pass = Pass { send: data, ..Pass::default() };
        self.step(&mut pass)
    }

    /// Encrypt `data` for the peer, or keep it to share a record with what follows in the
    /// turn: a small piece on an established session waits (and nothing is returned) until
    /// [`seal`](Self::seal), or until something else the session sends seals it first. At
    /// most one record's worth waits.
    pub(crate) fn queue(&mut self, data: &[u8]) -> Bytes {
        let small = data.len() < COALESCE_BELOW && self.pending.len() + data.len() <= RECORD_PLAINTEXT;
        if self.state == TlsState::Established && !self.write_closed && small {
            if self.pending.is_empty() {
                // Room for what usually follows (a response's body after its head) at once.
                self.pending.reserve(COALESCE_BELOW);
            }
            self.pending.extend_from_slice(data);
            return Bytes::new();
        }
        self.send(data)
    }

    /// Whether [`queue`](Self::queue)d plaintext waits to be sealed.
    pub(crate) fn has_unsealed(&self) -> bool {
        // During the handshake it waits for the keys, whatever is asked.
        !self.pending.is_empty() && !matches!(self.state, TlsState::Connecting | TlsState::Handshaking | TlsState::Failed)
    }

    /// The records of what [`queue`](Self::queue) kept: the end of a turn.
    pub(crate) fn seal(&mut self) -> Bytes {
        if !self.has_unsealed() || self.write_closed {
            return Bytes::new();
        }
        self.step(&mut Pass::default())
    }

    /// A `close_notify` for the peer, the last bytes this session sends.
    pub(crate) fn close(&mut self) -> Bytes {
        if self.state == TlsState::Connecting {
            // Never opened: its first flight must not go out now.
            self.write_closed = true;
            return Bytes::new();
        }
        if self.state == TlsState::Failed || self.write_closed {
            return Bytes::new();
        }
        let mut pass = Pass { close: true, ..Pass::default() };
        let notify = self.step(&mut pass);
        self.write_closed = true;
        notify
    }

    /// Records rustls has ready to go out (the first flight of a client handshake, say);
    /// nothing once [`close`](Self::close) has sent the last.
    pub(crate) fn take_outgoing(&mut self) -> Bytes {
        if self.state == TlsState::Failed {
            return Bytes::new();
        }
        self.step(&mut Pass::default())
    }

    /// A pass with no new input: what it sends.
    fn step(&mut self, pass: &mut Pass<'_>) -> Bytes {
        // What is held was run when it came; running it again finds it incomplete, and lets
        // go of whatever rustls is done with all the same.
        match self.run_held(pass) {
            Ok(()) => self.outgoing(std::mem::take(&mut pass.outgoing)),
            // Reported when the next input arrives, which fails the same way.
            Err(_) => Bytes::new(),
        }
    }

    fn outgoing(&self, records: Vec<u8>) -> Bytes {
        if self.write_closed { Bytes::new() } else { Bytes::from(records) }
    }

    pub(crate) fn info(&self, conn: ConnId) -> TlsInfo {
        let c = self.common();
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
        self.common().peer_certificates().map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default()
    }

    pub(crate) fn alpn(&self) -> Option<Vec<u8>> {
        self.common().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// What `error` means, with what the session knows besides: whether a client that hung
    /// up had the proxy's certificate.
    pub(crate) fn cause(&self, error: &TlsError) -> TlsCause {
        match error {
            TlsError::Rustls(error) => TlsCause::from_rustls(error, self.peer),
            TlsError::NotTls { http } => TlsCause::NotTls { http: *http },
            TlsError::ClosedInHandshake if self.answered => TlsCause::ClosedAfterCertificate,
            TlsError::ClosedInHandshake => TlsCause::ClosedInHandshake,
            TlsError::ClosedAfterHandshake => TlsCause::ClosedAfterHandshake,
            TlsError::Stuck => TlsCause::Other(error.to_string()),
        }
    }

    /// The session on `conn` failed with `error`: the failure to report, its remedy still to
    /// be phrased (by `layers::tls::transport::report`).
    pub(crate) fn failure(&self, conn: ConnId, error: &TlsError) -> TlsFailure {
        TlsFailure {
            conn,
            peer: self.peer,
            server: self.server.clone(),
            server_name: self.server_name.clone(),
            cause: self.cause(error),
            remedy: None,
        }
    }
}

/// The entry to rustls's state machine, which it spells once per kind of connection.
trait Records {
    type Data;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn records<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// Take `conn` through its states over `incoming` until it needs more input or is done:
/// records are decrypted into `pass.plaintext`, handshake messages and encrypted application
/// data appended to `pass.outgoing`, `pending` and `pass.send` encrypted once the keys allow.
/// Returns how much of `incoming` rustls is done with.
fn drive<C: Records>(conn: &mut C, incoming: &mut [u8], pending: &mut BytesMut, pass: &mut Pass<'_>) -> Result<usize, TlsError> {
    let mut used = 0;
    // Each state below consumes a record, emits a message or ends the pass; the bound keeps a
    // state machine that stopped making progress from spinning.
    for _ in 0..PASS_STATES + incoming.len() / RECORD_HEADER {
        let status = conn.records(&mut incoming[used..]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(error) => {
                alert(conn, &mut incoming[used + discard..], &mut pass.outgoing);
                return Err(TlsError::Rustls(error));
            }
        };
        let more = match state {
            ConnectionState::ReadTraffic(mut read) => {
                while let Some(record) = read.next_record() {
                    let record = record.map_err(TlsError::Rustls)?;
                    discard += record.discard;
                    pass.plaintext.extend_from_slice(record.payload);
                }
                true
            }
            ConnectionState::EncodeTlsData(mut message) => {
                encode(&mut message, &mut pass.outgoing)?;
                true
            }
            ConnectionState::TransmitTlsData(mut transmit) => {
                // Application data may follow the handshake's last flight in the same write.
                if let Some(mut write) = transmit.may_encrypt_app_data() {
                    flush(&mut write, pending, pass)?;
                }
                transmit.done();
                true
            }
            ConnectionState::PeerClosed => {
                pass.peer_closed = true;
                true
            }
            ConnectionState::WriteTraffic(mut write) => {
                flush(&mut write, pending, pass)?;
                false
            }
            // Waiting for the peer, or closed both ways. (Early data, the other state, is never
            // accepted: our server configurations leave `max_early_data_size` at zero.)
            _ => false,
        };
        used += discard;
        if !more {
            return Ok(used);
        }
    }
    Err(TlsError::Stuck)
}

/// After a failure: the alert rustls queued about it, if any. One state only: asked again,
/// rustls would read on in `incoming` (what it has not let go of, which it may still point
/// into) past the failure, and fail, and alert, once more.
fn alert<C: Records>(conn: &mut C, incoming: &mut [u8], outgoing: &mut Vec<u8>) {
    if let Ok(ConnectionState::EncodeTlsData(mut message)) = conn.records(incoming).state {
        // A failure here leaves the connection to close without its alert.
        let _ = encode(&mut message, outgoing);
    }
}

/// Encrypt what waits, then what is being sent, then the `close_notify` if one is asked for.
fn flush<D>(write: &mut WriteTraffic<'_, D>, pending: &mut BytesMut, pass: &mut Pass<'_>) -> Result<(), TlsError> {
    if !pending.is_empty() {
        encrypt(write, pending, &mut pass.outgoing)?;
        *pending = BytesMut::new();
    }
    if !pass.send.is_empty() {
        encrypt(write, pass.send, &mut pass.outgoing)?;
        pass.send = &[];
    }
    if std::mem::take(&mut pass.close) {
        fill(&mut pass.outgoing, RECORD_HEADER + RECORD_OVERHEAD, |out| write.queue_close_notify(out).map_err(short))?;
    }
    Ok(())
}

/// A handshake message (or alert) into `outgoing`: rustls says how much room it needs when
/// given none.
fn encode<D>(message: &mut EncodeTlsData<'_, D>, outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
    fill(outgoing, 0, |out| {
        message.encode(out).map_err(|error| match error {
            EncodeError::InsufficientSize(short) => Short::Needs(short.required_size),
            other => Short::Failed(other.to_string()),
        })
    })
}

/// Encrypt `plaintext` into `outgoing`. Records for an empty `outgoing` get the room rustls
/// says they take, no more: records as long as their buffer become `Bytes` without a second
/// allocation. After other records, room for the usual framing saves asking.
fn encrypt<D>(write: &mut WriteTraffic<'_, D>, plaintext: &[u8], outgoing: &mut Vec<u8>) -> Result<(), TlsError> {
    let records = plaintext.len().div_ceil(RECORD_PLAINTEXT);
    let room = if outgoing.is_empty() { 0 } else { plaintext.len() + records * RECORD_OVERHEAD };
    fill(outgoing, room, |out| write.encrypt(plaintext, out).map_err(short))
}

/// Why rustls wrote nothing into the room it was given.
enum Short {
    Needs(usize),
    Failed(String),
}

fn short(error: EncryptError) -> Short {
    match error {
        EncryptError::InsufficientSize(short) => Short::Needs(short.required_size),
        other => Short::Failed(other.to_string()),
    }
}

/// Append what `write` writes to `out`, giving it `room` bytes first and, if rustls says
/// that is too few, as many as it asks for.
fn fill(out: &mut Vec<u8>, mut room: usize, mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>) -> Result<(), TlsError> {
    let start = out.len();
    // The first try with too little room tells how much is needed; the second has it.
    for _ in 0..2 {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(Short::Needs(needed)) if needed > room => room = needed,
            Err(Short::Needs(_)) => break,
            Err(Short::Failed(error)) => {
                out.truncate(start);
                return Err(TlsError::Rustls(rustls::Error::General(error)));
            }
        }
    }
    out.truncate(start);
    Err(TlsError::Stuck)
}

/// How many complete records `held` then `data` (starting at a record boundary) begin with,
/// and how many bytes they take.
fn complete_records(held: &[u8], data: &[u8]) -> (usize, usize) {
    let byte = |i: usize| if i < held.len() { held[i] } else { data[i - held.len()] };
    let total = held.len() + data.len();
    let (mut records, mut at) = (0, 0);
    while at + RECORD_HEADER <= total {
        let end = at + RECORD_HEADER + usize::from(u16::from_be_bytes([byte(at + 3), byte(at + 4)]));
        if end > total {
            break;
        }
        (records, at) = (records + 1, end);
    }
    (records, at)
}

/// How many more bytes `records` (starting at a record boundary) needs to end on one: the
/// rest of the last record, or of its header when that is not complete.
fn incomplete(records: &[u8]) -> usize {
    let mut at = 0;
    while at < records.len() {
        let Some(header) = records.get(at..at + RECORD_HEADER) else {
            return at + RECORD_HEADER - records.len();
        };
        at += RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    at - records.len()
}

#[cfg(test)]
mod tests {
    use super::{complete_records, incomplete};

    #[test]
    fn counts_complete_records_across_what_is_held_and_what_came() {
        let two = [0x17, 3, 3, 0, 2, 1, 2, 0x17, 3, 3, 0, 1, 9];
        assert_eq!(complete_records(&[], &[]), (0, 0));
        assert_eq!(complete_records(&two, &[]), (2, 13));
        assert_eq!(complete_records(&two[..4], &two[4..]), (2, 13));
        assert_eq!(complete_records(&two[..9], &two[9..12]), (1, 7));
        assert_eq!(complete_records(&[], &two[..6]), (0, 0));
    }

    #[test]
    fn counts_what_completes_the_last_record() {
        assert_eq!(incomplete(&[]), 0);
        assert_eq!(incomplete(&[0x17, 3]), 3);
        assert_eq!(incomplete(&[0x17, 3, 3, 0, 4]), 4);
        assert_eq!(incomplete(&[0x17, 3, 3, 0, 4, 1, 2, 3, 4]), 0);
        assert_eq!(incomplete(&[0x17, 3, 3, 0, 2, 1, 2, 0x17, 3, 3, 1, 0, 9]), 255);
    }
}
