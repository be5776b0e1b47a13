//! Active health checks of a gateway's backends: the gateway says which checks are due and
//! what their answers mean; this opens the connections, lets a [`ProbeConn`] speak, and
//! hands back what it heard. One task per listener with a gateway, for as long as it runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_core::gateway::{Gateway, Probe, ProbeConn, ProbeStep};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::open;

/// How long the checker sleeps when no check is due (a reload may add some).
const IDLE: Duration = Duration::from_secs(1);

/// Run `gateway`'s checks until the task is dropped. `tls` verifies `https` backends.
pub(crate) async fn run(gateway: Gateway, tls: Option<Arc<rustls::ClientConfig>>) {
    let done = Arc::new(Notify::new());
    loop {
        for probe in gateway.due_checks(Instant::now()) {
            let (gateway, tls, done) = (gateway.clone(), tls.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let result = match tokio::time::timeout(probe.timeout, check(&probe, tls)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {:.1} s", probe.timeout.as_secs_f64())),
                };
                tracing::debug!(backend = %probe.addr, ?result, "health check");
                if let Some(line) = gateway.check_done(&probe, result, Instant::now()) {
                    tracing::warn!("{line}");
                }
                done.notify_one();
            });
        }
        let wait = gateway.poll_timeout().map_or(IDLE, |at| at.saturating_duration_since(Instant::now()).min(IDLE));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = done.notified() => {}
        }
    }
}

/// One check: connect, send, read until the status line is in.
async fn check(probe: &Probe, tls: Option<Arc<rustls::ClientConfig>>) -> Result<u16, String> {
    let mut conn = ProbeConn::new(probe, tls)?;
    let mut stream = open::open(probe.addr.clone(), probe.timeout).await.map_err(|e| e.to_string())?;
    stream.write_all(&conn.connected()).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        let step = match n {
            0 => conn.closed(),
            n => conn.received(&buf[..n]),
        };
        match step {
            ProbeStep::Send(bytes) if !bytes.is_empty() => stream.write_all(&bytes).await.map_err(|e| e.to_string())?,
            ProbeStep::Send(_) => {}
            ProbeStep::Done(result) => return result,
        }
    }
}
