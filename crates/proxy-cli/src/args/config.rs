//! What the flags make of each listener's [`Config`], and of the TLS interception's
//! [`TlsOptions`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use proxy_core::{Config, MinRate, Http2Limits, Mode, UnderscoreHeaders};
use proxy_core::websocket::WebSocketLimits;
use proxy_core::gateway::{Backend, Gateway, GatewaySpec, GroupSpec, HealthSpec, LimitSpec};
use proxy_io::tls::{CaSource, TlsOptions};

use crate::config_file::GroupDefaults;
use super::{Args, Listener};
use super::listeners::ModeArg;

/// Reverse mode's least request body rate (Apache's `MinRate` default).
const DEFAULT_REVERSE_BODY_MIN_RATE: u64 = 500;

/// Bodies with at least this much left to come are spliced rather than read.
const FORWARD_MIN: u64 = 256 * 1024;

impl Args {
    /// The configuration of `listener`.
    pub(crate) fn config_for(&self, listener: &Listener) -> Config {
        let ModeArg(mode, h2c) = &listener.mode;
        let min_rate = self.body_min_rate.unwrap_or(match mode {
            Mode::Reverse { .. } => DEFAULT_REVERSE_BODY_MIN_RATE,
            _ => 0,
        });
        Config {
            gateway: listener.gateway.clone().and_then(gateway_of),
            body_min_rate: (min_rate > 0 && !self.body_rate_window.is_zero()).then_some(MinRate {
                bytes_per_sec: min_rate,
                window: self.body_rate_window,
            }),
            underscore_headers: self.underscores_in_headers.unwrap_or(match mode {
                Mode::Reverse { .. } => UnderscoreHeaders::Drop,
                _ => UnderscoreHeaders::Keep,
            }),
            upstream_h2c: *h2c,
            mode: mode.clone(),
            ..self.config()
        }
    }

    /// What a group of the --config file leaves to the flags.
    pub(super) fn group_defaults(&self) -> GroupDefaults {
        GroupDefaults {
            balance: self.lb.clone().unwrap_or_default(),
            health: HealthSpec {
                path: self.health_check.clone(),
                interval: self.health_interval,
                timeout: self.health_timeout,
                max_fails: self.max_fails,
                ejection: self.eject_time,
                ..HealthSpec::default()
            },
            limits: LimitSpec { max_conns: self.upstream_max_conns, queue_limit: self.queue_limit, queue_timeout: self.queue_timeout },
            forwarded_headers: !self.no_forwarded,
        }
    }

    /// What a reverse listener of the flags serves: its backends one group with every
    /// request routed to it.
    pub(super) fn gateway_spec(&self, mode: &Mode) -> Option<GatewaySpec> {
        let Mode::Reverse { scheme, target, .. } = mode else {
            return None;
        };
        let backends = match self.reverse.is_empty() {
            true => vec![Backend::new(*scheme, target.clone())],
            false => self.reverse.iter().map(|(scheme, addr, _)| Backend::new(*scheme, addr.clone())).collect(),
        };
        let defaults = self.group_defaults();
        let mut group = GroupSpec::new("default", backends);
        group.balance = defaults.balance;
        group.health = defaults.health;
        group.limits = defaults.limits;
        Some(GatewaySpec { forwarded_headers: defaults.forwarded_headers, ..GatewaySpec::single(group) })
    }

    fn config(&self) -> Config {
        Config {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_buffered_body: self.max_buffered_body,
            close_linger: self.close_linger,
            reuse_server_connections: !self.no_server_reuse,
            share_streams: !self.no_shared_streams,
            joined_stream_idle: self.joined_stream_idle,
            forward_min: (!self.no_splice).then_some(FORWARD_MIN),
            high_water: self.high_water,
            server_idle_timeout: self.server_idle_timeout,
            client_idle_timeout: self.client_idle_timeout,
            head_timeout: self.head_timeout,
            body_timeout: self.body_timeout,
            add_via: self.via,
            underscore_headers: self.underscores_in_headers.unwrap_or(UnderscoreHeaders::Keep),
            http2: !self.no_http2,
            http2_limits: Http2Limits {
                max_concurrent_streams: self.h2_max_streams,
                max_header_list_size: self.h2_max_header_list,
                stream_window: self.h2_window.max(65_535),
                connection_window: self.h2_window.max(65_535).saturating_mul(4),
                max_resets: self.h2_max_resets,
                ..Http2Limits::default()
            },
            websocket: WebSocketLimits {
                max_message: self.max_ws_message,
                oversize: self.ws_oversize,
                ..WebSocketLimits::default()
            },
            ..Config::default()
        }
    }

    /// How TLS is to be intercepted; `None` with --no-intercept. `var` reads the environment.
    pub(crate) fn tls_options(&self, var: impl Fn(&str) -> Option<OsString>) -> Result<Option<TlsOptions>, String> {
        if self.no_intercept {
            return Ok(None);
        }
        let certs: Vec<(String, PathBuf)> = self
            .cert
            .iter()
            .map(|c| match c.split_once('=') {
                Some((domain, path)) => (domain.to_owned(), PathBuf::from(path)),
                None => ("*".to_owned(), PathBuf::from(c)),
            })
            .collect();
        let (every, named): (Vec<_>, Vec<_>) = certs.into_iter().partition(|(domain, _)| domain == "*");
        if every.len() > 1 {
            return Err("--cert without DOMAIN= is for every name: give it once".into());
        }
        let every = every.into_iter().next().map(|(_, path)| path);
        let ca = match (every, &self.ca_cert, &self.ca_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err("--cert PEM (for every name) leaves nothing for --ca-cert to sign: \
                            give the certificate a DOMAIN= to keep the CA for the other names"
                    .into())
            }
            (Some(cert), _, _) => CaSource::Fixed(cert),
            (None, Some(cert), Some(key)) => CaSource::Files { cert: cert.clone(), key: key.clone() },
            _ => match self.ca_dir.clone().or_else(|| proxy_io::tls::default_ca_dir_from(var)) {
                Some(dir) => CaSource::Dir(dir),
                None => {
                    return Err("no directory for the CA: HOME is not set; pass --ca-dir, or --no-intercept".into())
                }
            },
        };
        Ok(Some(TlsOptions {
            ca,
            upstream_roots: self.upstream_ca.clone(),
            insecure_upstream: self.insecure_upstream,
            ignore_hosts: self.ignore_hosts.clone(),
            cache_size: self.cert_cache,
            certs: named,
        }))
    }
}

/// A reverse listener's gateway, made from a spec listeners() checked.
fn gateway_of(spec: GatewaySpec) -> Option<Gateway> {
    // Random choices (random, p2c) differ from one run to the next.
    let seed = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        Instant::now(),
    );
    Gateway::new(spec, seed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use clap::Parser;
    use proxy_core::{HookKind, HookSet};
    use proxy_io::Handler;
    use crate::output::{FlowLog, Printer};

    #[test]
    fn defaults_map_onto_the_config() {
        let args = Args::try_parse_from(["sansproxy"]).unwrap();
        assert_eq!(args.listen_at(), ("127.0.0.1".to_owned(), 8080));
        assert_eq!(args.listeners().unwrap()[0].addrs, ["127.0.0.1:8080".parse().unwrap()]);
        assert!(!args.quiet && !args.via);
        assert_eq!(args.max_connections, None);
        assert_eq!(args.connect_timeout, Duration::from_secs(10));
        assert_eq!(args.shutdown_timeout, Duration::from_secs(5));
        let config = args.config_for(&args.listeners().unwrap()[0]);
        let default = Config::default();
        assert_eq!(config.mode, Mode::Regular);
        assert_eq!(config.max_head_bytes, 65536);
        assert_eq!(config.max_buffered_body, default.max_buffered_body);
        assert_eq!(config.high_water, default.high_water);
        assert_eq!(config.server_idle_timeout, default.server_idle_timeout);
        assert_eq!(config.client_idle_timeout, default.client_idle_timeout);
        assert_eq!(config.head_timeout, default.head_timeout);
        assert_eq!(config.body_timeout, default.body_timeout);
        assert!(!config.add_via);
    }

    #[test]
    fn flags_map_onto_the_config() {
        let args = Args::try_parse_from([
            "sansproxy", "--listen", "127.0.0.1:0", "-q", "--max-head-bytes", "1000",
            "--max-buffered-body", "2000", "--high-water", "3000", "--server-idle-timeout", "0.5",
            "--client-idle-timeout", "7", "--head-timeout", "2.5", "--body-timeout", "3.5", "--connect-timeout", "1.25",
            "--shutdown-timeout", "0", "--max-connections", "4", "--via",
        ])
        .unwrap();
        assert_eq!(args.listen_at().1, 0);
        assert!(args.quiet);
        assert_eq!(args.connect_timeout, Duration::from_millis(1250));
        assert_eq!(args.shutdown_timeout, Duration::ZERO);
        assert_eq!(args.max_connections, Some(4));
        let config = args.config();
        assert_eq!((config.max_head_bytes, config.max_buffered_body, config.high_water), (1000, 2000, 3000));
        let args = Args::try_parse_from(["sansproxy", "--h2-max-streams", "7", "--h2-window", "131072", "--h2-max-resets", "3"]).unwrap();
        let limits = args.config().http2_limits;
        assert_eq!((limits.max_concurrent_streams, limits.stream_window, limits.connection_window, limits.max_resets), (7, 131072, 524288, 3));
        assert!(!Args::try_parse_from(["sansproxy", "--no-http2"]).unwrap().config().http2);
        let waits = |args: &[&str]| Args::try_parse_from(args).unwrap().config().joined_stream_idle;
        assert_eq!(waits(&["sansproxy"]), Config::default().joined_stream_idle);
        assert_eq!(waits(&["sansproxy", "--joined-stream-idle", "0"]), Duration::ZERO);
        assert_eq!(config.server_idle_timeout, Duration::from_millis(500));
        assert_eq!(config.client_idle_timeout, Duration::from_secs(7));
        assert_eq!(config.head_timeout, Duration::from_millis(2500));
        assert_eq!(config.body_timeout, Duration::from_millis(3500));
        assert!(config.add_via);
        assert_eq!(Printer { quiet: true, verbose: false, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks(), HookSet::NONE);
        let loud = Printer { quiet: false, verbose: false, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks();
        assert!(loud.contains(HookKind::WebSocketEnd) && !loud.contains(HookKind::WebSocketMessage));
        let verbose = Printer { quiet: false, verbose: true, lines: FlowLog::start(), label: Default::default(), metrics: None, reverse: false }.hooks();
        assert!(verbose.contains(HookKind::WebSocketMessage));
        assert!(loud.contains(HookKind::Response) && loud.contains(HookKind::Error));
        assert!(!loud.contains(HookKind::RequestHeaders));
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    fn tls(argv: &[&str], vars: &[(&str, &str)]) -> Result<Option<TlsOptions>, String> {
        let mut all = vec!["sansproxy"];
        all.extend_from_slice(argv);
        Args::try_parse_from(all).unwrap().tls_options(env(vars))
    }

    #[test]
    fn tls_is_intercepted_by_default_with_the_ca_in_the_home_directory() {
        let options = tls(&[], &[("HOME", "/home/me")]).unwrap().unwrap();
        assert_eq!(options, TlsOptions::new(CaSource::Dir("/home/me/.sansproxy".into())));
        assert_eq!(options.cache_size, 1000);
    }

    #[test]
    fn the_ca_directory_comes_from_the_flag_or_the_environment() {
        let dir = |argv: &[&str], vars: &[(&str, &str)]| match tls(argv, vars) {
            Ok(Some(TlsOptions { ca: CaSource::Dir(dir), .. })) => Ok(dir),
            other => Err(format!("{other:?}")),
        };
        let all = [("SANSPROXY_CA_DIR", "/ca"), ("XDG_CONFIG_HOME", "/cfg"), ("HOME", "/home/me")];
        assert_eq!(dir(&["--ca-dir", "/flag"], &all).unwrap(), PathBuf::from("/flag"));
        assert_eq!(dir(&[], &all).unwrap(), PathBuf::from("/ca"));
        assert_eq!(dir(&[], &all[1..]).unwrap(), PathBuf::from("/cfg/sansproxy"));
        let unusable = [("SANSPROXY_CA_DIR", ""), ("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(dir(&[], &unusable).unwrap(), PathBuf::from("/h/.sansproxy"));
        assert!(tls(&[], &[]).unwrap_err().contains("--ca-dir"));
        assert_eq!(dir(&["--ca-dir", "/flag"], &[]).unwrap(), PathBuf::from("/flag"));
    }

    #[test]
    fn tls_flags_map_onto_the_options() {
        let options = tls(
            &[
                "--ca-cert", "ca.pem", "--ca-key", "ca.pem", "--upstream-ca", "a.pem", "--upstream-ca", "b.pem",
                "--insecure-upstream", "--ignore-hosts", "^x:443$", "--ignore-hosts", "y", "--cert-cache", "5",
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            TlsOptions {
                ca: CaSource::Files { cert: "ca.pem".into(), key: "ca.pem".into() },
                upstream_roots: vec!["a.pem".into(), "b.pem".into()],
                insecure_upstream: true,
                ignore_hosts: vec!["^x:443$".into(), "y".into()],
                cache_size: 5,
                certs: Vec::new(),
            }
        );
        assert_eq!(tls(&["--no-intercept"], &[]).unwrap(), None);
        // A certificate of its own replaces the CA, whatever the environment says.
        let fixed = tls(&["--reverse", "https://o.test", "--listen-tls", "--cert", "own.pem"], &[("HOME", "/h")]);
        assert_eq!(fixed.unwrap().unwrap().ca, CaSource::Fixed("own.pem".into()));
        // Certificates for some names keep the CA for the others.
        let named = tls(&["--cert", "proxy.test=p.pem", "--cert", "*.corp.test=c.pem"], &[("HOME", "/h")]).unwrap().unwrap();
        assert_eq!(named.ca, CaSource::Dir("/h/.sansproxy".into()));
        assert_eq!(named.certs, [("proxy.test".to_owned(), "p.pem".into()), ("*.corp.test".to_owned(), "c.pem".into())]);
        let twice = tls(&["--cert", "a.pem", "--cert", "b.pem"], &[("HOME", "/h")]);
        assert!(twice.unwrap_err().contains("give it once"));
        let both = tls(&["--cert", "c.pem", "--ca-cert", "c.pem", "--ca-key", "c.pem"], &[("HOME", "/h")]);
        assert!(both.unwrap_err().contains("DOMAIN="));
    }
}
