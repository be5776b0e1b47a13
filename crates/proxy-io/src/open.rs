//! Opening upstream connections: name resolution, connect, the connect timeout, and the
//! mapping of failures onto [`OpenError`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use proxy_core::{OpenError, ServerAddr};
use tokio::net::TcpStream;

/// An upstream connection being opened.
pub(crate) type Connecting = Pin<Box<dyn Future<Output = Result<TcpStream, OpenError>> + Send>>;

/// Resolve `server` and connect to its addresses in turn, all within `timeout`.
///
/// The driver does not retry beyond the addresses one resolution returns; whether to try again
/// is the core's decision.
pub(crate) fn open(server: ServerAddr, timeout: Duration) -> Connecting {
    Box::pin(with_timeout(timeout, connect(server)))
}

pub(crate) async fn with_timeout<F>(timeout: Duration, fut: F) -> Result<TcpStream, OpenError>
where
    F: Future<Output = Result<TcpStream, OpenError>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => Err(OpenError::Timeout),
    }
}

async fn connect(server: ServerAddr) -> Result<TcpStream, OpenError> {
    // An IP literal resolves without a lookup (and without a blocking-pool hop).
    let addrs = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .map_err(|e| resolve_error(&e))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => connect_error(&e),
        None => OpenError::Dns("no addresses".into()),
    })
}

/// A failed lookup, in the resolver's words only: whoever reports it names the host already
/// (`cannot connect to a.test:80: name resolution failed: Name or service not known`).
pub(crate) fn resolve_error(e: &io::Error) -> OpenError {
    // std words every getaddrinfo failure "failed to lookup address information: REASON".
    let text = e.to_string();
    let reason = text.strip_prefix("failed to lookup address information: ").unwrap_or(&text);
    OpenError::Dns(reason.to_owned())
}

pub(crate) fn connect_error(e: &io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => OpenError::Refused,
        io::ErrorKind::TimedOut => OpenError::Timeout,
        _ => OpenError::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_io_errors() {
        let e = |k: io::ErrorKind| io::Error::new(k, "boom");
        assert_eq!(connect_error(&e(io::ErrorKind::ConnectionRefused)), OpenError::Refused);
        assert_eq!(connect_error(&e(io::ErrorKind::TimedOut)), OpenError::Timeout);
        assert_eq!(connect_error(&e(io::ErrorKind::HostUnreachable)), OpenError::Other("boom".into()));
        assert_eq!(resolve_error(&e(io::ErrorKind::Other)), OpenError::Dns("boom".into()));
        let lookup = io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(resolve_error(&lookup), OpenError::Dns("Name or service not known".into()));
    }

    #[tokio::test]
    async fn refused_on_a_closed_port() {
        // Bind, learn the port, close: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = open(ServerAddr::new("127.0.0.1", port), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err, OpenError::Refused);
    }

    #[tokio::test]
    async fn connects_to_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = open(ServerAddr::new("127.0.0.1", port), Duration::from_secs(5)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out() {
        let err = with_timeout(Duration::from_secs(10), std::future::pending()).await.unwrap_err();
        assert_eq!(err, OpenError::Timeout);
    }
}
