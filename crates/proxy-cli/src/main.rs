//! `sansproxy`: an intercepting HTTP proxy that prints one line per flow, like mitmdump.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use proxy_core::{Config, FlowId, Hook, HookKind, HookReply, HookSet, HttpFlow};
use proxy_io::{Handler, Proxy};

/// An intercepting HTTP proxy. Prints one line per flow to stdout:
/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms`.
#[derive(Debug, Parser)]
#[command(name = "sansproxy", version)]
struct Args {
    /// Address to listen on. Loopback by default; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Print no flows (and raise no hooks at all).
    #[arg(short, long)]
    quiet: bool,

    /// Largest request or response head (start line and headers), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_head_bytes)]
    max_head_bytes: usize,

    /// Most header fields in one request or response head.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_headers)]
    max_headers: usize,

    /// Largest body a hook may buffer, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_buffered_body)]
    max_buffered_body: usize,

    /// Output queued for one connection, in bytes, beyond which the proxy stops reading the
    /// connections that feed it.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().high_water)]
    high_water: usize,

    /// How long an upstream may stay silent while a response is owed.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "60")]
    server_idle_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "120")]
    client_idle_timeout: Duration,

    /// After the last response on a client connection, how long to keep reading (and
    /// dropping) what the client still sends before closing, so the response is not reset.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "2")]
    close_linger: Duration,

    /// Keep every body byte inside the proxy, instead of splicing large bodies that no hook
    /// needs to see from socket to socket in the kernel.
    #[arg(long)]
    no_splice: bool,

    /// Never reuse an upstream connection for a later request of the same client.
    #[arg(long)]
    no_server_reuse: bool,

    /// How long resolving and connecting to an upstream may take.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "10")]
    connect_timeout: Duration,

    /// On SIGINT or SIGTERM, how long in-flight connections may go on before they are dropped.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value = "5")]
    shutdown_timeout: Duration,

    /// Serve at most N client connections at once; more wait until one ends.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// Worker threads of the runtime. Defaults to the number of CPUs; on a machine that the
    /// proxy shares with its clients and servers, fewer can be faster.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,

    /// Add a `Via: 1.1 sansproxy` header to forwarded messages.
    #[arg(long)]
    via: bool,
}

/// Seconds, fractions allowed (`0.5`).
fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{e}"))
}

impl Args {
    fn config(&self) -> Config {
        Config {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_buffered_body: self.max_buffered_body,
            close_linger: self.close_linger,
            reuse_server_connections: !self.no_server_reuse,
            forward_min: (!self.no_splice).then_some(FORWARD_MIN),
            high_water: self.high_water,
            server_idle_timeout: self.server_idle_timeout,
            client_idle_timeout: self.client_idle_timeout,
            add_via: self.via,
            ..Config::default()
        }
    }
}

/// Bodies with at least this much left to come are spliced rather than read.
const FORWARD_MIN: u64 = 256 * 1024;

/// Prints a line for each finished or failed flow.
struct Printer {
    quiet: bool,
    lines: FlowLog,
}

impl Handler for Printer {
    fn hooks(&self) -> HookSet {
        if self.quiet {
            HookSet::NONE
        } else {
            HookSet::NONE.with(HookKind::Response).with(HookKind::Error)
        }
    }

    async fn hook(&self, _flow: FlowId, hook: Hook) -> HookReply {
        let line = match &hook {
            Hook::Response(flow) | Hook::Error(flow) => flow_line(flow, Instant::now()),
            _ => None,
        };
        if let Some(line) = line {
            self.lines.push(line);
        }
        HookReply::Continue
    }
}

/// The flow log's writer: a thread that takes lines from the connections' tasks and writes
/// whatever has piled up with one system call, so that under load the log costs a write per
/// batch instead of a write (and a lock) per flow, while a lone line still goes out at once.
struct FlowLog {
    tx: std::sync::mpsc::Sender<String>,
}

impl FlowLog {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
            while let Ok(line) = rx.recv() {
                let mut line = Some(line);
                while let Some(l) = line {
                    // A closed stdout (a pipe whose reader left) is not the proxy's problem.
                    let _ = out.write_all(l.as_bytes());
                    line = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        });
        Self { tx }
    }

    fn push(&self, line: String) {
        // The writer only stops when the process does.
        let _ = self.tx.send(line);
    }
}

/// `CLIENT METHOD URL -> STATUS BYTESb DURATIONms`, or `... -> error: MESSAGE`.
fn flow_line(flow: &HttpFlow, now: Instant) -> Option<String> {
    let req = &flow.request;
    let head = format!("{} {} {}", flow.client.peer, req.method, req.url());
    if let Some(error) = &flow.error {
        return Some(format!("{head} -> error: {}\n", error.message));
    }
    let response = flow.response.as_ref()?;
    let took = flow.ended.unwrap_or(now).saturating_duration_since(flow.started);
    Some(format!(
        "{head} -> {} {}b {}ms\n",
        response.status,
        flow.response_body_bytes,
        took.as_millis()
    ))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n as usize);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sansproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(args));
    // Do not wait for name lookups still blocked in the resolver: the proxy is done.
    runtime.shutdown_background();
    code
}

async fn serve(args: Args) -> ExitCode {
    let mut builder = Proxy::builder()
        .listen(args.listen)
        .config(args.config())
        .handler(Printer { quiet: args.quiet, lines: FlowLog::start() })
        .connect_timeout(args.connect_timeout)
        .shutdown_timeout(args.shutdown_timeout);
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n as usize);
    }
    let proxy = match builder.build().await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("sansproxy: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = proxy_io::shutdown_on_signals(proxy.shutdown_handle()) {
        eprintln!("sansproxy: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    // The one line integration tests wait for; with `--listen 127.0.0.1:0` it names the port.
    eprintln!("sansproxy listening on {}", proxy.local_addr());
    proxy.run().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use proxy_core::{ClientInfo, FlowError, Request, Response, Scheme, Version};

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_map_onto_the_config() {
        let args = Args::try_parse_from(["sansproxy"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(!args.quiet && !args.via);
        assert_eq!(args.max_connections, None);
        assert_eq!(args.connect_timeout, Duration::from_secs(10));
        assert_eq!(args.shutdown_timeout, Duration::from_secs(5));
        let config = args.config();
        let default = Config::default();
        assert_eq!(config.max_head_bytes, 65536);
        assert_eq!(config.max_buffered_body, default.max_buffered_body);
        assert_eq!(config.high_water, default.high_water);
        assert_eq!(config.server_idle_timeout, default.server_idle_timeout);
        assert_eq!(config.client_idle_timeout, default.client_idle_timeout);
        assert!(!config.add_via);
    }

    #[test]
    fn flags_map_onto_the_config() {
        let args = Args::try_parse_from([
            "sansproxy", "--listen", "127.0.0.1:0", "-q", "--max-head-bytes", "1000",
            "--max-buffered-body", "2000", "--high-water", "3000", "--server-idle-timeout", "0.5",
            "--client-idle-timeout", "7", "--connect-timeout", "1.25", "--shutdown-timeout", "0",
            "--max-connections", "4", "--via",
        ])
        .unwrap();
        assert_eq!(args.listen.port(), 0);
        assert!(args.quiet);
        assert_eq!(args.connect_timeout, Duration::from_millis(1250));
        assert_eq!(args.shutdown_timeout, Duration::ZERO);
        assert_eq!(args.max_connections, Some(4));
        let config = args.config();
        assert_eq!((config.max_head_bytes, config.max_buffered_body, config.high_water), (1000, 2000, 3000));
        assert_eq!(config.server_idle_timeout, Duration::from_millis(500));
        assert_eq!(config.client_idle_timeout, Duration::from_secs(7));
        assert!(config.add_via);
        assert_eq!(Printer { quiet: true, lines: FlowLog::start() }.hooks(), HookSet::NONE);
        let loud = Printer { quiet: false, lines: FlowLog::start() }.hooks();
        assert!(loud.contains(HookKind::Response) && loud.contains(HookKind::Error));
        assert!(!loud.contains(HookKind::RequestHeaders));
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            &["sansproxy", "--listen", "localhost"][..],
            &["sansproxy", "--connect-timeout", "-1"],
            &["sansproxy", "--max-connections", "0"],
            &["sansproxy", "--high-water", "lots"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    fn flow() -> HttpFlow {
        let started = Instant::now();
        HttpFlow {
            id: FlowId(1),
            client: ClientInfo { peer: "127.0.0.1:51234".parse().unwrap(), local: "127.0.0.1:8080".parse().unwrap() },
            request: Request {
                method: "GET".into(),
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/x".into(),
                version: Version::Http11,
                headers: Default::default(),
                body: None,
                trailers: None,
            },
            response: None,
            error: None,
            buffer_request: false,
            buffer_response: false,
            request_body_bytes: 0,
            response_body_bytes: 1024,
            started,
            ended: Some(started + Duration::from_millis(3)),
        }
    }

    #[test]
    fn lines_look_like_mitmdump() {
        let mut f = flow();
        assert_eq!(flow_line(&f, Instant::now()), None);
        f.response = Some(Response::text(200, "x"));
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> 200 1024b 3ms\n"
        );
        f.error = Some(FlowError { message: "connection refused".into(), status: Some(502) });
        assert_eq!(
            flow_line(&f, Instant::now()).unwrap(),
            "127.0.0.1:51234 GET http://127.0.0.1:9000/x -> error: connection refused\n"
        );
    }
}
