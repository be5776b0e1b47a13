//! Active health checks, sans-I/O: the gateway says which backend to check when
//! ([`Gateway::due_checks`](super::Gateway::due_checks)); a [`ProbeConn`] speaks the check's
//! HTTP/1.1 (inside TLS for an `https` backend, through the core's rustls session) over
//! whatever connection the driver opened, and tells the status; the driver hands it back
//! with [`Gateway::check_done`](super::Gateway::check_done).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::ids::{Scheme, ServerAddr};
use crate::tls::session::TlsSession;

/// A check to make: connect to `addr`, send `GET path`, expect 2xx within `timeout`.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The backend's key in the gateway, to hand back with the result.
    pub key: u64,
    /// Whether the check speaks TLS to the backend.
    pub scheme: Scheme,
    /// Where to connect.
    pub addr: ServerAddr,
    /// The path to `GET`.
    pub path: String,
    /// How long the whole check may take, connect included; past it, the check failed.
    pub timeout: Duration,
}

/// What a [`ProbeConn`] wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeStep {
    /// Write these bytes (possibly none), then read.
    Send(Bytes),
    /// The check is over: the backend's status, or why there is none.
    Done(Result<u16, String>),
}

/// One check's conversation. Feed it what the connection delivers; it says what to write
/// and, once the status line is in, the answer.
pub struct ProbeConn {
    /// Until [`connected`](Self::connected) sends it.
    request: Option<Bytes>,
    tls: Option<TlsSession>,
    received: BytesMut,
}

/// The largest status line read before giving up on a backend's answer.
const MAX_STATUS_LINE: usize = 8 * 1024;

impl ProbeConn {
    /// A check of `probe`; `tls` is the client configuration to verify an `https` backend
    /// with (required for one).
    pub fn new(probe: &Probe, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let host = match probe.addr.host.contains(':') {
            true => format!("[{}]", probe.addr.host),
            false => probe.addr.host.clone(),
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: sansproxy-health-check\r\nConnection: close\r\n\r\n",
            probe.path, host, probe.addr.port
        );
        let tls = match (probe.scheme, tls) {
            (Scheme::Http, _) => None,
            (Scheme::Https, None) => return Err("no TLS configuration to check an https backend with".into()),
            (Scheme::Https, Some(config)) => {
                let name = rustls::pki_types::ServerName::try_from(probe.addr.host.clone()).map_err(|e| format!("{}: {e}", probe.addr))?;
                let alpn = config.alpn_protocols.clone();
                let session = TlsSession::client(config, name, alpn, probe.addr.clone(), Some(probe.addr.host.clone()));
                Some(session.map_err(|e| e.to_string())?.connecting())
            }
        };
        Ok(Self { request: Some(Bytes::from(request)), tls, received: BytesMut::new() })
    }

    /// The connection is open: the first bytes to write.
    pub fn connected(&mut self) -> Bytes {
        let request = self.request.take().unwrap_or_default();
        match &mut self.tls {
            Some(tls) => {
                // rustls holds the request back until the handshake is done, then sends it.
                let mut out = BytesMut::from(&tls.opened()[..]);
                out.extend_from_slice(&tls.send(&request));
                out.freeze()
            }
            None => request,
        }
    }

    /// The backend sent `data`.
    pub fn received(&mut self, data: &[u8]) -> ProbeStep {
        let Some(tls) = &mut self.tls else {
            self.received.extend_from_slice(data);
            return self.status();
        };
        let got = tls.receive(Bytes::copy_from_slice(data));
        if let Some(error) = got.error {
            return ProbeStep::Done(Err(format!("TLS: {error}")));
        }
        self.received.extend_from_slice(&got.plaintext);
        match self.status() {
            ProbeStep::Send(_) => ProbeStep::Send(got.outgoing),
            done => done,
        }
    }

    /// The backend closed the connection.
    pub fn closed(&mut self) -> ProbeStep {
        match self.status() {
            ProbeStep::Send(_) => ProbeStep::Done(Err("closed the connection without answering".into())),
            done => done,
        }
    }

    fn status(&self) -> ProbeStep {
        let Some(end) = self.received.windows(2).position(|w| w == b"\r\n") else {
            return match self.received.len() > MAX_STATUS_LINE {
                true => ProbeStep::Done(Err("status line too long".into())),
                false => ProbeStep::Send(Bytes::new()),
            };
        };
        let line = String::from_utf8_lossy(&self.received[..end]);
        let mut parts = line.splitn(3, ' ');
        let status = match (parts.next(), parts.next()) {
            (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok().filter(|c| (100..1000).contains(c)),
            _ => None,
        };
        ProbeStep::Done(status.ok_or_else(|| format!("not an HTTP response: {:?}", line.chars().take(40).collect::<String>())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe { key: 1, scheme: Scheme::Http, addr: ServerAddr::new("127.0.0.1", 9001), path: "/healthz".into(), timeout: Duration::from_secs(1) }
    }

    #[test]
    fn a_plain_check_reads_the_status_line() {
        let mut conn = ProbeConn::new(&probe(), None).unwrap();
        let request = conn.connected();
        assert!(request.starts_with(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
        assert_eq!(conn.received(b"HTTP/1.1 20"), ProbeStep::Send(Bytes::new()));
        assert_eq!(conn.received(b"4 No Content\r\n"), ProbeStep::Done(Ok(204)));
        let mut conn = ProbeConn::new(&probe(), None).unwrap();
        conn.connected();
        assert_eq!(conn.closed(), ProbeStep::Done(Err("closed the connection without answering".into())));
        let mut conn = ProbeConn::new(&probe(), None).unwrap();
        assert!(matches!(conn.received(b"SSH-2.0-OpenSSH\r\n"), ProbeStep::Done(Err(e)) if e.contains("not an HTTP response")));
    }
}
