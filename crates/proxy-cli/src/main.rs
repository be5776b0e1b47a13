//! `sansproxy`: an intercepting HTTP proxy that prints one line per flow, like mitmdump.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::process::ExitCode;

use proxy_core::{Config, Mode};
use proxy_core::upstreams::PoolLimits;
use proxy_core::gateway::Gateway;
use proxy_io::tls::{CaInfo, TlsOptions};
use proxy_io::Proxy;

mod args;
mod auth;
mod config_file;
mod metrics;
mod output;
mod reload;

use args::{Args, Listener, RuntimeKind};
use output::{ca_notice, init_logging, remedies, FlowLog, Printer};
use reload::reload_on_signal;

/// jemalloc: a proxied request makes dozens of short-lived allocations on two threads, which
/// it serves from per-thread caches without glibc's bin juggling (see the README's "HTTPS
/// cost, fourth part" for what it changed, memory included).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli: Vec<OsString> = std::env::args_os().collect();
    let args = match Args::load(cli.clone()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let threads = args.thread_count();
    // Per core, this thread serves one share, and the proxy starts a thread for each other.
    let mut runtime = match args.runtime {
        RuntimeKind::PerCore => tokio::runtime::Builder::new_current_thread(),
        RuntimeKind::WorkStealing => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads);
            runtime
        }
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sansproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match args.listeners() {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy_auth = match args.proxyauth.as_deref().map(auth::parse).transpose() {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("sansproxy: --proxyauth: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Listening comes first: a port in use must fail before a CA is made or read.
    let bound = match bind(&args, &listeners) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut notice = None;
    let mut tls = None;
    match args.tls_options(|name| std::env::var_os(name)).and_then(|o| o.map(set_up_tls).transpose()) {
        Ok(Some((config, ca))) => {
            tls = Some(config);
            notice = ca.map(|ca| ca_notice(&ca));
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("sansproxy: {e}");
            return ExitCode::FAILURE;
        }
    }
    let listeners = listeners
        .iter()
        .zip(bound)
        .map(|(listener, builders)| {
            let config = Config {
                tls: tls.clone(),
                proxy_auth: proxy_auth.clone(),
                ..args.config_for(listener)
            };
            Bound { addrs: listener.addrs.clone(), builders, config }
        })
        .collect();
    let code = runtime.block_on(serve(args, cli, listeners, notice));
    // Do not wait for name lookups still blocked in the resolver: the proxy is done.
    runtime.shutdown_background();
    code
}

/// A listener with its sockets bound, one proxy builder per address, and its configuration.
struct Bound {
    /// The addresses as configured (port 0 as asked), which a reload compares.
    addrs: Vec<SocketAddr>,
    builders: Vec<proxy_io::Builder>,
    config: Config,
}

/// For each listener, a proxy builder per address with its socket bound. Port 0 picks a
/// free port, the same for every address of one listener. An address of a name that this
/// machine cannot listen on (`::1` of `localhost` with IPv6 off) is left out, with a warning,
/// if another is listened on.
fn bind(args: &Args, listeners: &[Listener]) -> Result<Vec<Vec<proxy_io::Builder>>, String> {
    let mut bound = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let mut builders: Vec<proxy_io::Builder> = Vec::with_capacity(listener.addrs.len());
        let mut unavailable = None;
        for &addr in &listener.addrs {
            let port = builders.first().and_then(proxy_io::Builder::local_addr).map_or(addr.port(), |a| a.port());
            let addr = SocketAddr::new(addr.ip(), port);
            let mut builder = Proxy::builder().listen(addr);
            if let Some(n) = args.max_connections {
                builder = builder.max_connections(n as usize);
            }
            if args.runtime == RuntimeKind::PerCore {
                builder = builder.threads(args.thread_count());
            }
            match builder.bind() {
                Ok(builder) => builders.push(builder),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && listener.addrs.len() > 1 => {
                    unavailable.get_or_insert(listen_error(addr, &e, &listener.port_from));
                }
                Err(e) => return Err(listen_error(addr, &e, &listener.port_from)),
            }
        }
        match (builders.is_empty(), unavailable) {
            (true, Some(e)) => return Err(e),
            (false, Some(e)) => tracing::warn!("{e}; listening on the other addresses"),
            _ => {}
        }
        bound.push(builders);
    }
    Ok(bound)
}

/// Why `addr` cannot be listened on, and what to do about it; `port_from` is the flag that
/// gave the port.
fn listen_error(addr: SocketAddr, e: &std::io::Error, port_from: &str) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::AddrInUse => {
            format!("address already in use (is another proxy running? pick another port with {port_from})")
        }
        ErrorKind::AddrNotAvailable => "address not available (no interface of this machine has it)".to_owned(),
        ErrorKind::PermissionDenied => format!(
            "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE; pick another with {port_from})"
        ),
        _ => e.to_string(),
    };
    format!("cannot listen on {addr}: {why}")
}

fn set_up_tls(options: TlsOptions) -> Result<(proxy_core::tls::TlsConfig, Option<CaInfo>), String> {
    let (mut tls, ca) = options.build().map_err(|e| format!("cannot set up TLS interception: {e}"))?;
    tls.remedies = remedies(ca.as_ref());
    Ok((tls, ca))
}

async fn serve(args: Args, cli: Vec<OsString>, listeners: Vec<Bound>, ca_notice: Option<String>) -> ExitCode {
    let lines = FlowLog::start();
    let gateways: Vec<(Vec<SocketAddr>, Gateway)> = listeners
        .iter()
        .filter_map(|l| Some((l.addrs.clone(), l.config.gateway.clone()?)))
        .collect();
    let metrics = match args.metrics {
        None => None,
        Some(addr) => match metrics::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().map_or(addr, |a| a);
                let metrics = metrics::Metrics::new();
                tokio::spawn(metrics::serve(Arc::clone(&metrics), listener));
                eprintln!("sansproxy metrics on http://{local}/metrics");
                Some(metrics)
            }
            Err(e) => {
                eprintln!("sansproxy: cannot serve metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(path) = &args.config {
        tokio::spawn(reload_on_signal(cli.clone(), path.clone(), args.watch_config, gateways, args.file_flags.clone()));
    }
    let several = listeners.len() > 1;
    // One Ctrl-C stops every listener, and says how many connections they have together.
    let shutdown = proxy_io::ShutdownHandle::new();
    let mut proxies = Vec::with_capacity(listeners.len());
    for Bound { builders, config, .. } in listeners {
        let mode = config.mode.name();
        let label = Arc::new(OnceLock::new());
        let name = Arc::new(OnceLock::new());
        let reverse = matches!(config.mode, Mode::Reverse { .. });
        let gateway = config.gateway.clone();
        let shared = !args.no_server_reuse && !args.upstream_idle_timeout.is_zero() && args.upstream_max_idle > 0;
        let limits = PoolLimits {
            max_idle_per_key: args.upstream_max_idle,
            idle_timeout: args.upstream_idle_timeout,
            ..PoolLimits::default()
        };
        // One proxy per address of the listener, sharing its label, gateway and metrics name.
        for (i, builder) in builders.into_iter().enumerate() {
            let printer = Printer {
                quiet: args.quiet,
                verbose: args.verbose,
                lines: lines.clone(),
                label: label.clone(),
                metrics: metrics.clone().map(|m| (m, Arc::clone(&name))),
                reverse,
            };
            let builder = builder
                .config(config.clone())
                .handler(printer)
                .connect_timeout(args.connect_timeout)
                .shutdown_timeout(args.shutdown_timeout)
                .upstream_pool(shared.then(|| limits.clone()))
                .shutdown_handle(shutdown.clone());
            // --no-intercept; with interception, `config.tls` is what the builder uses.
            let builder = if config.tls.is_none() { builder.no_intercept() } else { builder };
            let bound = builder.local_addr();
            match builder.build().await {
                Ok(proxy) if i == 0 => {
                    let port = proxy.local_addr().port();
                    let _ = name.set(format!("{mode}@{port}"));
                    // The first address's upstream pool stands for the listener's.
                    if let Some(metrics) = &metrics {
                        metrics.watch(format!("{mode}@{port}"), gateway.clone(), proxy.pool_monitor());
                    }
                    // With several listeners, each flow line names the one it came through.
                    if several {
                        let _ = label.set(format!("[{mode}@{port}] "));
                    }
                    proxies.push((proxy, mode));
                }
                Ok(proxy) => proxies.push((proxy, mode)),
                Err(e) => {
                    // Bound already: what is left to fail is the listener's registration with
                    // the runtime, or a serving thread (BuildError says which, and where).
                    let at = bound.map_or_else(|| "its address".to_owned(), |a| a.to_string());
                    eprintln!("sansproxy: {at} ({mode} mode): {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if let Err(e) = proxy_io::shutdown_on_signals(shutdown) {
        eprintln!("sansproxy: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    for (proxy, mode) in &proxies {
        // The line integration tests wait for; with `--listen 127.0.0.1:0` it names the port.
        if several {
            eprintln!("sansproxy listening on {} ({mode} mode)", proxy.local_addr());
        } else {
            eprintln!("sansproxy listening on {}", proxy.local_addr());
        }
    }
    if let Some(notice) = ca_notice {
        eprint!("{notice}");
    }
    let mut running = tokio::task::JoinSet::new();
    for (proxy, _) in proxies {
        running.spawn(proxy.run());
    }
    while running.join_next().await.is_some() {}
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_says_what_to_do() {
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert_eq!(
            listen_error("127.0.0.1:8080".parse().unwrap(), &in_use, "--listen PORT"),
            "cannot listen on 127.0.0.1:8080: address already in use (is another proxy running? pick another port with --listen PORT)"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = listen_error("0.0.0.0:80".parse().unwrap(), &denied, "-p PORT");
        assert!(e.contains("CAP_NET_BIND_SERVICE; pick another with -p PORT"), "{e}");
    }
}
