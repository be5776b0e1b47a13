//! `--metrics HOST:PORT`: Prometheus (OpenMetrics text) at `/metrics`, encoded by the
//! `prometheus-client` crate. Flows are counted from the hooks the flow log already watches;
//! backends' health and load, and the shared upstream connections, are read when scraped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use proxy_core::gateway::{Gateway, Health};
use proxy_core::tls::TlsPeer;
use proxy_core::HttpFlow;
use proxy_io::PoolMonitor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric, and what is read at scrape time.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: HistogramFamily,
    request_bytes: Family<Labels, Counter>,
    response_bytes: Family<Labels, Counter>,
    handshakes: Family<Labels, Counter>,
    backend_up: Family<Labels, Gauge>,
    backend_in_flight: Family<Labels, Gauge>,
    backend_requests: Family<Labels, Gauge>,
    queue_length: Family<Labels, Gauge>,
    pool_idle: Family<Labels, Gauge>,
    pool_reused: Family<Labels, Gauge>,
    pool_opened: Family<Labels, Gauge>,
    carriers: Family<Labels, Gauge>,
    carried_streams: Family<Labels, Gauge>,
    streams_joined: Family<Labels, Gauge>,
    /// Each listener's gateway and shared upstream connections, by listener name.
    sources: std::sync::Mutex<Vec<Source>>,
}

/// A listener's name, its gateway and its shared upstream connections.
type Source = (String, Option<Gateway>, Option<PoolMonitor>);

fn latency_buckets() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("sansproxy");
        let requests = Family::<Labels, Counter>::default();
        registry.register("requests", "Flows ended, by listener, backend (reverse mode) and status class", requests.clone());
        let duration = HistogramFamily::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register("request_duration_seconds", "From the request's first byte to the response's last", duration.clone());
        let request_bytes = Family::<Labels, Counter>::default();
        registry.register("request_body_bytes", "Request body bytes forwarded", request_bytes.clone());
        let response_bytes = Family::<Labels, Counter>::default();
        registry.register("response_body_bytes", "Response body bytes forwarded", response_bytes.clone());
        let handshakes = Family::<Labels, Counter>::default();
        registry.register("tls_handshakes", "TLS handshakes with clients and servers, by result", handshakes.clone());
        let backend_up = Family::<Labels, Gauge>::default();
        registry.register("backend_up", "1 if the backend gets requests, 0 if down or ejected", backend_up.clone());
        let backend_in_flight = Family::<Labels, Gauge>::default();
        registry.register("backend_in_flight", "Requests at the backend now", backend_in_flight.clone());
        let backend_requests = Family::<Labels, Gauge>::default();
        registry.register("backend_requests", "Requests sent to the backend since it joined its group", backend_requests.clone());
        let queue_length = Family::<Labels, Gauge>::default();
        registry.register("queue_length", "Requests waiting for a backend below its connection limit", queue_length.clone());
        let pool_idle = Family::<Labels, Gauge>::default();
        registry.register("upstream_idle_connections", "Idle upstream connections kept for any client", pool_idle.clone());
        let pool_reused = Family::<Labels, Gauge>::default();
        registry.register("upstream_connections_reused", "Requests for a connection that found an idle one", pool_reused.clone());
        let pool_opened = Family::<Labels, Gauge>::default();
        registry.register("upstream_connections_missed", "Requests for a connection that found none idle", pool_opened.clone());
        let carriers = Family::<Labels, Gauge>::default();
        registry.register("upstream_carriers", "HTTP/2 upstream connections carrying the streams of any client connection", carriers.clone());
        let carried_streams = Family::<Labels, Gauge>::default();
        registry.register("upstream_carried_streams", "Streams on those connections now", carried_streams.clone());
        let streams_joined = Family::<Labels, Gauge>::default();
        registry.register("upstream_streams_joined", "Requests that went as a stream on one of those connections", streams_joined.clone());
        Arc::new(Self {
            registry,
            requests,
            duration,
            request_bytes,
            response_bytes,
            handshakes,
            backend_up,
            backend_in_flight,
            backend_requests,
            queue_length,
            pool_idle,
            pool_reused,
            pool_opened,
            carriers,
            carried_streams,
            streams_joined,
            sources: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Read `gateway` and `pool` of the listener `listener` when scraped.
    pub(crate) fn watch(&self, listener: String, gateway: Option<Gateway>, pool: Option<PoolMonitor>) {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).push((listener, gateway, pool));
    }

    /// A flow ended (its `Response` or `Error` hook).
    pub(crate) fn flow_ended(&self, listener: &str, reverse: bool, flow: &HttpFlow) {
        let class = match (&flow.response, &flow.error) {
            (Some(r), _) => format!("{}xx", r.status / 100),
            (None, _) => "error".to_owned(),
        };
        let mut labels = vec![("listener".to_owned(), listener.to_owned())];
        if reverse {
            labels.push(("backend".to_owned(), format!("{}://{}", flow.request.scheme.as_str(), flow.request.server())));
        }
        self.request_bytes.get_or_create(&labels).inc_by(flow.request_body_bytes);
        self.response_bytes.get_or_create(&labels).inc_by(flow.response_body_bytes);
        let seconds = flow.ended.unwrap_or_else(Instant::now).saturating_duration_since(flow.started).as_secs_f64();
        self.duration.get_or_create(&labels).observe(seconds);
        labels.push(("status".to_owned(), class));
        self.requests.get_or_create(&labels).inc();
    }

    /// A TLS handshake ended, with a client or a server.
    pub(crate) fn handshake(&self, listener: &str, peer: TlsPeer, ok: bool) {
        let peer = match peer {
            TlsPeer::Client => "client",
            TlsPeer::Server => "server",
        };
        let labels = vec![
            ("listener".to_owned(), listener.to_owned()),
            ("peer".to_owned(), peer.to_owned()),
            ("result".to_owned(), if ok { "ok" } else { "failed" }.to_owned()),
        ];
        self.handshakes.get_or_create(&labels).inc();
    }

    /// The text a scrape gets.
    pub(crate) fn render(&self) -> String {
        let now = Instant::now();
        for (listener, gateway, pool) in self.sources.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for backend in gateway.iter().flat_map(|g| g.status(now)) {
                let labels = vec![
                    ("listener".to_owned(), listener.clone()),
                    ("group".to_owned(), backend.group.clone()),
                    ("backend".to_owned(), backend.backend.to_string()),
                ];
                self.backend_up.get_or_create(&labels).set(i64::from(backend.health == Health::Up));
                self.backend_in_flight.get_or_create(&labels).set(i64::from(backend.in_flight));
                self.backend_requests.get_or_create(&labels).set(backend.requests as i64);
            }
            for (group, queued) in gateway.iter().flat_map(Gateway::queued) {
                let labels = vec![("listener".to_owned(), listener.clone()), ("group".to_owned(), group)];
                self.queue_length.get_or_create(&labels).set(queued as i64);
            }
            if let Some(pool) = pool {
                let labels = vec![("listener".to_owned(), listener.clone())];
                let (idle, stats) = pool.stats();
                self.pool_idle.get_or_create(&labels).set(idle as i64);
                self.pool_reused.get_or_create(&labels).set(stats.reused as i64);
                self.pool_opened.get_or_create(&labels).set(stats.missed as i64);
                let (carriers, streams, joined) = pool.carriers();
                self.carriers.get_or_create(&labels).set(carriers as i64);
                self.carried_streams.get_or_create(&labels).set(streams as i64);
                self.streams_joined.get_or_create(&labels).set(joined as i64);
            }
        }
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Serve `/metrics` on `listener` until the process ends.
pub(crate) async fn serve(metrics: Arc<Metrics>, listener: TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else { continue };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            // A scrape is one small request; anything slower or larger is dropped.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            });
            if !matches!(read.await, Ok(true)) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let target = line.split(' ').nth(1).unwrap_or("");
            let (status, kind, body) = match target.split('?').next() {
                Some("/metrics") => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render()),
                _ => ("404 Not Found", "text/plain; charset=utf-8", "not found: the metrics are at /metrics\n".to_owned()),
            };
            let answer = format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = tcp.write_all(answer.as_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// Bind `addr` for the metrics.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
