//! A small HTTP/2 client for the tests that need more than curl shows: when each body chunk
//! arrived, trailers as received, how a stream failed, many streams on one connection. It is
//! the `h2` crate's client over a `CONNECT` tunnel opened by hand and tokio-rustls (ALPN `h2`
//! only), or over plain TCP with prior knowledge.
//!
//! Everything runs on a current-thread runtime the caller blocks on ([`runtime`]); every
//! step is bounded by [`STEP_TIMEOUT`].

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Method, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Longest wait for any one thing: a connect, a response head, the next body chunk.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP/2 connection; its frames are read and written by a task on the runtime. Requests
/// go through [`Streams`] (a deref), which clones for concurrent requests on the connection.
pub struct H2Conn {
    streams: Streams,
    driver: JoinHandle<Result<(), h2::Error>>,
}

/// Opens streams on an [`H2Conn`]; clone it to run requests concurrently.
#[derive(Clone)]
pub struct Streams {
    send: SendRequest<Bytes>,
    /// `https` or `http`, for request URIs.
    scheme: &'static str,
    authority: String,
}

/// A response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// Body chunks with their arrival times.
    pub chunks: Vec<(Instant, Bytes)>,
    pub trailers: Option<HeaderMap>,
    /// How the stream failed after its head, if it did.
    pub error: Option<Failure>,
}

/// How a request failed.
#[derive(Debug)]
pub enum Failure {
    H2(h2::Error),
    /// This step took over [`STEP_TIMEOUT`].
    TimedOut(&'static str),
}

impl Failure {
    /// The reset or GOAWAY reason, if the failure was one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Failure::H2(e) => e.reason(),
            Failure::TimedOut(_) => None,
        }
    }

    /// Whether the peer (not our own h2) reset the stream.
    pub fn is_remote_reset(&self) -> bool {
        matches!(self, Failure::H2(e) if e.is_reset() && e.is_remote())
    }
}

impl From<h2::Error> for Failure {
    fn from(e: h2::Error) -> Self {
        Failure::H2(e)
    }
}

impl Reply {
    pub fn body(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }
}

/// A runtime to block on for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

fn timeout_error(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} took over {STEP_TIMEOUT:?}"),
    )
}

async fn step<F: std::future::Future>(what: &str, f: F) -> io::Result<F::Output> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| timeout_error(what))
}

/// [`step`] for a request: a timeout is a [`Failure`].
async fn within<F: std::future::Future>(what: &'static str, f: F) -> Result<F::Output, Failure> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| Failure::TimedOut(what))
}

impl H2Conn {
    /// `CONNECT authority` through the proxy on `proxy_port`, then TLS trusting only the CA
    /// certificate at `ca` (ALPN `h2`), then HTTP/2. Fails unless the proxy agreed to `h2`.
    pub async fn via_proxy(proxy_port: u16, authority: &str, ca: &Path) -> io::Result<H2Conn> {
        let mut tcp = step("connect", TcpStream::connect(("127.0.0.1", proxy_port))).await??;
        tcp.set_nodelay(true)?;
        let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        tcp.write_all(connect.as_bytes()).await?;
        // Read the proxy's answer byte by byte, so nothing after its head is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 {
                return Err(io::Error::other("CONNECT answer head over 64 KiB"));
            }
            let byte = step("the CONNECT answer", tcp.read_u8()).await??;
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!("CONNECT refused: {head:?}")));
        }

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
            roots
                .add(cert.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let name = ServerName::try_from(host.to_owned()).map_err(io::Error::other)?;
        let tls = step(
            "the TLS handshake",
            TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await??;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if alpn.as_deref() != Some(b"h2") {
            return Err(io::Error::other(format!(
                "the proxy chose ALPN {alpn:?}, not h2"
            )));
        }
        H2Conn::handshake(tls, "https", authority).await
    }

    /// HTTP/2 with prior knowledge to `127.0.0.1:port`, naming `authority` in requests.
    pub async fn h2c(port: u16, authority: &str) -> io::Result<H2Conn> {
        let tcp = step("connect", TcpStream::connect(("127.0.0.1", port))).await??;
        tcp.set_nodelay(true)?;
        H2Conn::handshake(tcp, "http", authority).await
    }

    async fn handshake<T>(io: T, scheme: &'static str, authority: &str) -> io::Result<H2Conn>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = step("the HTTP/2 handshake", h2::client::handshake(io))
            .await?
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(conn);
        let streams = Streams {
            send,
            scheme,
            authority: authority.to_owned(),
        };
        Ok(H2Conn { streams, driver })
    }

    /// Whether the connection is still up (its driver has not ended).
    pub fn is_open(&self) -> bool {
        !self.driver.is_finished()
    }
}

impl std::ops::Deref for H2Conn {
    type Target = Streams;

    fn deref(&self) -> &Streams {
        &self.streams
    }
}

impl Streams {
    /// Sends `method path` with `body` (none: the head ends the stream) and reads the whole
    /// response, recording when each chunk arrived. Fails if no response head came; a
    /// failure after the head is in [`Reply::error`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Reply, Failure> {
        self.request_with(method, path, &[], body).await
    }

    /// [`request`](Self::request) with extra header fields.
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        fields: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Reply, Failure> {
        let uri = format!("{}://{}{path}", self.scheme, self.authority);
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("a valid request");
        let mut send = within("room for a stream", self.send.clone().ready()).await??;
        let (response, mut stream) = send.send_request(request, body.is_none())?;
        if let Some(mut body) = body {
            while !body.is_empty() {
                stream.reserve_capacity(body.len());
                let capacity = std::future::poll_fn(|cx| stream.poll_capacity(cx));
                let room = match within("request body window", capacity).await? {
                    Some(room) => room?,
                    None => return Err(Failure::H2(Reason::CANCEL.into())),
                };
                if room > 0 {
                    let chunk = body.split_to(room.min(body.len()));
                    stream.send_data(chunk, body.is_empty())?;
                }
            }
        }
        let (head, mut recv) = within("the response head", response).await??.into_parts();
        let mut reply = Reply {
            status: head.status.as_u16(),
            headers: head.headers,
            chunks: Vec::new(),
            trailers: None,
            error: None,
        };
        loop {
            match within("the next body chunk", recv.data()).await {
                Ok(Some(Ok(data))) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    reply.chunks.push((Instant::now(), data));
                }
                Ok(Some(Err(e))) => {
                    reply.error = Some(e.into());
                    return Ok(reply);
                }
                Ok(None) => break,
                Err(e) => {
                    reply.error = Some(e);
                    return Ok(reply);
                }
            }
        }
        match within("trailers", recv.trailers()).await {
            Ok(Ok(trailers)) => reply.trailers = trailers,
            Ok(Err(e)) => reply.error = Some(e.into()),
            Err(e) => reply.error = Some(e),
        }
        Ok(reply)
    }

    /// Sends `GET path` and returns the response head and body stream, unread: a body that
    /// is not read keeps its window shut. Dropping the stream resets it (CANCEL).
    pub async fn start_get(&self, path: &str) -> Result<(u16, RecvStream), Failure> {
        let uri = format!("{}://{}{path}", self.scheme, self.authority);
        let request = Request::get(uri).body(()).expect("a valid request");
        let mut send = within("room for a stream", self.send.clone().ready()).await??;
        let (response, _) = send.send_request(request, true)?;
        let (head, recv) = within("the response head", response).await??.into_parts();
        Ok((head.status.as_u16(), recv))
    }

    /// Sends the head of `POST path` and returns the response to come and the body stream,
    /// for a test that sends the body at its own pace.
    pub async fn start_post(
        &self,
        path: &str,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), Failure> {
        let uri = format!("{}://{}{path}", self.scheme, self.authority);
        let request = Request::post(uri).body(()).expect("a valid request");
        let mut send = within("room for a stream", self.send.clone().ready()).await??;
        Ok(send.send_request(request, false)?)
    }

    pub async fn get(&self, path: &str) -> Result<Reply, Failure> {
        self.request(Method::GET, path, None).await
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Streams {
    /// A WebSocket over HTTP/2 (RFC 8441): an extended CONNECT for `path` with `:protocol
    /// websocket`, once the server has said it takes them (SETTINGS_ENABLE_CONNECT_PROTOCOL).
    /// Returns the status and the stream's two halves.
    pub async fn websocket(&self, path: &str) -> Result<(u16, SendStream<Bytes>, RecvStream), Failure> {
        let mut send = self.send.clone();
        let start = Instant::now();
        loop {
            send = within("the connection's readiness", send.ready()).await?.map_err(Failure::H2)?;
            if send.is_extended_connect_protocol_enabled() {
                break;
            }
            if start.elapsed() > STEP_TIMEOUT {
                return Err(Failure::TimedOut("SETTINGS_ENABLE_CONNECT_PROTOCOL"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{}://{}{path}", self.scheme, self.authority))
            .extension(h2::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13")
            .body(())
            .expect("a valid request");
        let (response, stream) = send.send_request(request, false).map_err(Failure::H2)?;
        let response = within("the response head", response).await?.map_err(Failure::H2)?;
        Ok((response.status().as_u16(), stream, response.into_body()))
    }

    /// A tunnel as an HTTP/2 stream (RFC 9113 section 8.5): `CONNECT` with `:authority`
    /// `target` and nothing else. Returns the status and the stream's two halves, which
    /// carry the tunnel's bytes.
    pub async fn connect_tunnel(&self, target: &str) -> Result<(u16, SendStream<Bytes>, RecvStream), Failure> {
        let send = self.send.clone();
        let mut send = within("the connection's readiness", send.ready()).await?.map_err(Failure::H2)?;
        let request = Request::builder().method(Method::CONNECT).uri(target).body(()).expect("a valid request");
        let (response, stream) = send.send_request(request, false).map_err(Failure::H2)?;
        let response = within("the response head", response).await?.map_err(Failure::H2)?;
        Ok((response.status().as_u16(), stream, response.into_body()))
    }
}
