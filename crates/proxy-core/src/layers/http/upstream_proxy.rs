//! Upstream-proxy mode: reaching servers through another HTTP proxy.
//!
//! Plain `http` requests go to the upstream proxy itself, in absolute-form, on connections
//! pooled like any other (they all lead to the same place). Everything else needs a tunnel: a
//! client's `CONNECT`, and an `https` request, which we send over TLS to its origin. For those
//! the connection to the proxy first carries `CONNECT host:port`, and a [`ProxyConnect`] reads
//! the answer; only after the proxy's `2xx` (and, for `https`, the TLS handshake through the
//! tunnel) does the HTTP layer count the connection as open.

use bytes::{Bytes, BytesMut};

use crate::config::Mode;
use crate::context::Context;
use crate::flow::Version;
use crate::headers::Headers;
use crate::ids::{ConnId, ServerAddr};
use crate::layers::http::http1::limits;
use crate::layers::http::http1::wire::{self, HeadReader, Limits};
use crate::layers::http::error::ProxyError;

/// Setting up a tunnel through the upstream proxy on one server connection.
#[derive(Debug)]
pub(crate) struct ProxyConnect {
    pub(crate) proxy: ServerAddr,
    pub(crate) target: ServerAddr,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// The TCP connection to the proxy is not up yet.
    Opening,
    /// `CONNECT` sent; reading the proxy's answer.
    Asked { buf: BytesMut, heads: HeadReader, limits: Limits },
    /// The proxy said yes; the TLS handshake with the server runs through the tunnel.
    Handshake,
}

/// What the proxy's answer (so far) amounts to.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Not a complete head yet.
    Pending,
    /// `2xx`: the tunnel is up. `rest` is what the proxy sent after its head: the server's
    /// first bytes.
    Established { rest: Bytes },
    /// Anything else.
    Refused(ProxyError),
}

impl ProxyConnect {
    pub(crate) fn new(proxy: ServerAddr, target: ServerAddr) -> Self {
        Self { proxy, target, phase: Phase::Opening }
    }

    /// Whether the TCP connection to the proxy is still being opened.
    pub(crate) fn is_opening(&self) -> bool {
        matches!(self.phase, Phase::Opening)
    }

    /// Whether `CONNECT` is out and the proxy's answer is awaited.
    pub(crate) fn is_asked(&self) -> bool {
        matches!(self.phase, Phase::Asked { .. })
    }

    /// The connection to the proxy is open: ask it for a tunnel.
    pub(crate) fn ask(&mut self, cx: &mut Context, conn: ConnId) {
        let authority = self.target.to_string();
        let mut headers = Headers::new();
        headers.insert("Host", authority.clone());
        if let Some(credentials) = upstream_credentials(cx) {
            headers.insert("Proxy-Authorization", credentials);
        }
        let mut head = BytesMut::with_capacity(64 + 2 * authority.len());
        wire::write_request_head(&mut head, "CONNECT", &authority, Version::Http11, &headers);
        cx.send(conn, head.freeze());
        let limits = limits(&cx.config);
        self.phase = Phase::Asked { buf: BytesMut::new(), heads: HeadReader::new(), limits };
    }

    /// Bytes from the proxy while its answer to `CONNECT` is awaited.
    pub(crate) fn receive(&mut self, data: &[u8]) -> Answer {
        let Phase::Asked { buf, heads, limits } = &mut self.phase else { return Answer::Pending };
        buf.extend_from_slice(data);
        loop {
            match heads.read_response(buf, limits) {
                Ok(None) => return Answer::Pending,
                // An interim response: the real answer follows.
                Ok(Some(head)) if (100..200).contains(&head.status) => {}
                Ok(Some(head)) if (200..300).contains(&head.status) => {
                    return Answer::Established { rest: buf.split().freeze() };
                }
                Ok(Some(head)) => {
                    let answer = format!("{} {}", head.status, head.reason).trim_end().to_owned();
                    let (proxy, target) = (self.proxy.clone(), self.target.clone());
                    return Answer::Refused(ProxyError::Refused { proxy, target, answer });
                }
                Err(error) => {
                    let (proxy, target) = (self.proxy.clone(), self.target.clone());
                    return Answer::Refused(ProxyError::InvalidAnswer { proxy, target, error });
                }
            }
        }
    }

    /// The tunnel is up and a TLS handshake with the server has started through it.
    pub(crate) fn start_handshake(&mut self) {
        self.phase = Phase::Handshake;
    }

    /// Why the set-up failed when the proxy closed the connection in the middle of it.
    pub(crate) fn closed(&self) -> ProxyError {
        let (proxy, target) = (self.proxy.clone(), self.target.clone());
        match self.phase {
            Phase::Handshake => ProxyError::ClosedInHandshake { proxy, target },
            Phase::Opening | Phase::Asked { .. } => ProxyError::ClosedBeforeAnswer { proxy, target },
        }
    }

    /// Why the set-up failed when nothing came for `secs` seconds.
    pub(crate) fn timed_out(&self, secs: f64) -> ProxyError {
        let (proxy, target) = (self.proxy.clone(), self.target.clone());
        match self.phase {
            Phase::Handshake => ProxyError::NoHandshake { proxy, target, secs },
            Phase::Opening | Phase::Asked { .. } => ProxyError::NoAnswer { proxy, target, secs },
        }
    }

    /// Why the set-up failed when the tunnel carried bytes before our handshake began.
    pub(crate) fn early_data(&self) -> ProxyError {
        ProxyError::EarlyData { proxy: self.proxy.clone(), target: self.target.clone() }
    }
}

/// `Proxy-Authorization` for the upstream proxy, in upstream mode with credentials.
pub(super) fn upstream_credentials(cx: &Context) -> Option<String> {
    match &cx.config.mode {
        Mode::Upstream { auth: Some(auth), .. } => Some(format!("Basic {}", crate::layers::websocket::handshake::base64(auth.as_bytes()))),
        _ => None,
    }
}

/// Whether the upstream proxy is spoken to over TLS.
pub(super) fn upstream_tls(cx: &Context) -> bool {
    matches!(cx.config.mode, Mode::Upstream { tls: true, .. })
}

/// The upstream proxy everything goes through, in upstream mode.
pub(super) fn upstream_proxy(cx: &Context) -> Option<ServerAddr> {
    match &cx.config.mode {
        Mode::Upstream { proxy, .. } => Some(proxy.clone()),
        Mode::Regular | Mode::Reverse { .. } | Mode::Socks5 | Mode::Transparent => None,
    }
}
