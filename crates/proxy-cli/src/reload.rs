//! The --config file read again, on SIGHUP or with --watch-config when it changes: its routes
//! and groups go to the reverse listeners' gateways.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use proxy_core::gateway::{Gateway, GatewaySpec};

use crate::args::Args;

/// Reload the --config file's routes and groups into every reverse listener's gateway, on
/// SIGHUP or (with --watch-config) when the file changes. A file that does not parse or
/// validate is refused with its line and reason; the old configuration keeps serving.
pub(crate) async fn reload_on_signal(
    cli: Vec<OsString>,
    path: PathBuf,
    watch: bool,
    gateways: Vec<(Vec<SocketAddr>, Gateway)>,
    mut flags: Vec<OsString>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => return tracing::warn!("no reload on SIGHUP: {e}"),
    };
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)), if watch => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
            }
        }
        let args = match Args::with_file(&cli, &path) {
            Ok(read) => read,
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one keeps serving: {e}");
                continue;
            }
        };
        if args.file_flags != flags {
            tracing::warn!("{}: flags changed; they take effect when sansproxy restarts (routes and upstreams apply now)", path.display());
        }
        // Each reverse listener's new routes and groups, in the order of its gateway.
        let specs: Vec<(Vec<SocketAddr>, GatewaySpec)> = match args.listeners() {
            Ok(listeners) => listeners
                .into_iter()
                .filter_map(|l| Some((l.addrs, l.gateway?)))
                .collect(),
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one keeps serving: {}: {e}", path.display());
                continue;
            }
        };
        if !specs
            .iter()
            .map(|(addr, _)| addr)
            .eq(gateways.iter().map(|(addr, _)| addr))
        {
            let addrs = |all: Vec<&Vec<SocketAddr>>| {
                all.iter()
                    .flat_map(|addrs| addrs.iter())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            tracing::error!(
                "{}: the reverse listeners changed (now {}, serving {}); the old configuration keeps serving until sansproxy restarts",
                path.display(),
                addrs(specs.iter().map(|(a, _)| a).collect()),
                addrs(gateways.iter().map(|(a, _)| a).collect()),
            );
            continue;
        }
        for ((_, gateway), (_, spec)) in gateways.iter().zip(specs) {
            let (routes, groups) = (spec.routes.len(), spec.groups.len());
            match gateway.reload(spec) {
                Ok(()) => tracing::warn!("{}: reloaded, {routes} routes over {groups} groups", path.display()),
                Err(e) => tracing::error!("configuration not reloaded, the old one keeps serving: {e}"),
            }
        }
        flags = args.file_flags.clone();
    }
}
