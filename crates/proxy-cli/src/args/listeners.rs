//! Where and how the proxy listens: --listen, --listen-host and -p, each --mode, --reverse
//! and the --config file's routes made into [`Listener`]s.

use std::net::SocketAddr;

use proxy_core::{Mode, Scheme, ServerAddr};
use proxy_core::gateway::GatewaySpec;

use crate::config_file::ConfigFile;
use super::Args;

/// A mode, and whether its upstream speaks HTTP/2 with prior knowledge (`h2c://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ModeArg(pub(super) Mode, pub(super) bool);

/// Where a listener listens, as given: a host (an IP address or a name, resolved when the
/// proxy starts; none: --listen's) and a port.
pub(crate) type ListenAt = (Option<String>, u16);

/// The host when none is given: loopback, so that a proxy started without thinking serves no
/// one else.
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;

/// A `--mode`: the mode, and where it listens if not on --listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ModeSpec {
    mode: ModeArg,
    at: Option<ListenAt>,
}

/// A listener as the flags and the --config file make it: where (every address its host
/// resolved to), in which mode, in reverse mode what its gateway serves, and which flag
/// gave its port (for the remedy when the port is taken).
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(super) mode: ModeArg,
    pub(crate) gateway: Option<GatewaySpec>,
    pub(crate) port_from: String,
}

/// `MODE`, `MODE@PORT` or `MODE@HOST:PORT` (HOST as for --listen).
pub(super) fn parse_mode_spec(s: &str) -> Result<ModeSpec, String> {
    let Some((mode, at)) = s.rsplit_once('@') else {
        return Ok(ModeSpec { mode: parse_mode(s)?, at: None });
    };
    let at = parse_listen_at(at).map_err(|e| format!("after `@`: {e}"))?;
    Ok(ModeSpec {
        mode: parse_mode(mode)?,
        at: Some(at),
    })
}

/// `PORT`, `HOST:PORT` or `[IPv6]:PORT`; HOST an IP address or a name (resolved later, by
/// [`resolve`]).
pub(crate) fn parse_listen_at(at: &str) -> Result<ListenAt, String> {
    let bad = || format!("{at:?} is neither PORT nor HOST:PORT");
    let (host, port) = match at.rsplit_once(':') {
        Some((host, port)) => (Some(host), port),
        None => (None, at),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.map(|h| parse_listen_host(h).map_err(|_| bad())).transpose()?;
    Ok((host, port))
}

/// An IP address (IPv6 with or without brackets) or a host name.
pub(super) fn parse_listen_host(host: &str) -> Result<String, String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    let label = |l: &str| {
        !l.is_empty() && !l.starts_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    match bare.strip_suffix('.').unwrap_or(bare).split('.').all(label) && bare == host {
        true => Ok(host.to_ascii_lowercase()),
        false => Err(format!("{host:?} is neither an IP address nor a host name")),
    }
}

/// The addresses to listen on for `host` and `port`: an IP address as it is, a name resolved
/// to every address it has (in the resolver's order, each once).
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map_err(|e| {
        let text = e.to_string();
        // std words every getaddrinfo failure "failed to lookup address information: WHY".
        let why = text.strip_prefix("failed to lookup address information: ").unwrap_or(&text).to_owned();
        format!("cannot listen on {host}: name resolution failed: {why}")
    })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.is_empty() {
        true => Err(format!("cannot listen on {host}: it has no address")),
        false => Ok(addrs),
    }
}

/// `regular`, `reverse:URL`, `upstream:URL`, `socks5` or `transparent`.
fn parse_mode(s: &str) -> Result<ModeArg, String> {
    match s {
        "regular" => return Ok(ModeArg(Mode::Regular, false)),
        "socks5" => return Ok(ModeArg(Mode::Socks5, false)),
        "transparent" if cfg!(target_os = "linux") => return Ok(ModeArg(Mode::Transparent, false)),
        "transparent" => return Err("transparent mode needs Linux (SO_ORIGINAL_DST)".into()),
        _ => {}
    }
    if let Some(url) = s.strip_prefix("reverse:") {
        let (scheme, target, h2c) = parse_origin(url)?;
        return Ok(ModeArg(Mode::Reverse { scheme, target, client_tls: false }, h2c));
    }
    if let Some(url) = s.strip_prefix("upstream:") {
        let (scheme, proxy) = parse_url(url)?;
        return Ok(ModeArg(Mode::Upstream { proxy, tls: scheme == Scheme::Https, auth: None }, false));
    }
    Err(format!("unknown mode {s:?}: use regular, reverse:URL, upstream:URL, socks5 or transparent"))
}

/// A reverse-mode origin: [`parse_url`]'s URLs, or `h2c://host[:port]` for plain HTTP/2
/// with prior knowledge (the flag).
pub(super) fn parse_origin(s: &str) -> Result<(Scheme, ServerAddr, bool), String> {
    match s.strip_prefix("h2c://") {
        Some(rest) => parse_url(&format!("http://{rest}")).map(|(scheme, addr)| (scheme, addr, true)),
        None => parse_url(s).map(|(scheme, addr)| (scheme, addr, false)),
    }
}

/// `http://host[:port]` or `https://host[:port]`, nothing after the authority but a `/`.
fn parse_url(s: &str) -> Result<(Scheme, ServerAddr), String> {
    let (scheme, rest) = if let Some(rest) = s.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = s.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("{s:?} is not an http:// or https:// URL"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{s:?}: give only scheme, host and port"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| format!("{s:?}: bad port {port:?}"))?)
        }
        _ => (authority, scheme.default_port()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?}: no host"));
    }
    Ok((scheme, ServerAddr::new(host.to_ascii_lowercase(), port)))
}

impl Args {
    /// Where --listen, or --listen-host and -p, say to listen: a host and a port.
    pub(super) fn listen_at(&self) -> (String, u16) {
        match &self.listen {
            Some((host, port)) => (host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned()), *port),
            None => (
                self.listen_host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned()),
                self.listen_port.unwrap_or(DEFAULT_PORT),
            ),
        }
    }

    /// The flag a listener without a port of its own takes it from, as the user gave it.
    fn listen_flag(&self) -> &'static str {
        match self.listen_port {
            Some(_) => "-p PORT",
            None => "--listen PORT",
        }
    }

    /// The listeners: where each listens (names resolved), its mode (with --listen-tls
    /// applied to reverse modes), whether its upstream speaks h2c, and a reverse listener's
    /// gateway. One on --listen without --mode or --config routes.
    pub(crate) fn listeners(&self) -> Result<Vec<Listener>, String> {
        let specs: Vec<(ModeSpec, Option<&GatewaySpec>)> = match self.reverse.first() {
            _ if !self.file_gateways.is_empty() => {
                if !self.reverse.is_empty()
                    || self
                        .mode
                        .iter()
                        .any(|m| matches!(m.mode.0, Mode::Reverse { .. }))
                {
                    return Err("the --config file's routes make the reverse listeners: give no --reverse or --mode reverse:URL (a route's `listen` gives it a listener of its own)".into());
                }
                let reverse = self.file_gateways.iter().map(|(at, spec)| {
                    let backend = ConfigFile::first_backend_of(spec)
                        .expect("a validated gateway has a route to a backend");
                    let mode = ModeArg(
                        Mode::Reverse {
                            scheme: backend.scheme,
                            target: backend.addr,
                            client_tls: false,
                        },
                        false,
                    );
                    (ModeSpec { mode, at: at.clone() }, Some(spec))
                });
                reverse
                    .chain(self.mode.iter().map(|m| (m.clone(), None)))
                    .collect()
            }
            Some((scheme, target, h2c)) => {
                if self.reverse.iter().any(|(_, _, other)| other != h2c) {
                    return Err("--reverse: either every backend is h2c:// or none".into());
                }
                vec![(
                    ModeSpec {
                        mode: ModeArg(
                            Mode::Reverse {
                                scheme: *scheme,
                                target: target.clone(),
                                client_tls: false,
                            },
                            *h2c,
                        ),
                        at: None,
                    },
                    None,
                )]
            }
            None if self.mode.is_empty() => vec![(
                ModeSpec {
                    mode: ModeArg(Mode::Regular, false),
                    at: None,
                },
                None,
            )],
            None => self.mode.iter().map(|m| (m.clone(), None)).collect(),
        };
        let reverse = specs
            .iter()
            .any(|(s, _)| matches!(s.mode.0, Mode::Reverse { .. }));
        if !reverse && (self.lb.is_some() || self.health_check.is_some()) {
            return Err("--lb and --health-check are for reverse mode".into());
        }
        if !reverse && self.upstream_max_conns.is_some() {
            return Err("--upstream-max-conns is for reverse mode (the backends' limit)".into());
        }
        if self.health_check.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err("--health-check takes a path starting with '/'".into());
        }
        if self.health_interval.is_zero() || self.health_timeout.is_zero() {
            return Err("--health-interval and --health-timeout must be above zero".into());
        }
        if specs.iter().filter(|(s, _)| s.at.is_none()).count() > 1 {
            return Err(
                "several --mode without `@PORT` would share --listen: give each its own port"
                    .into(),
            );
        }
        if self.listen_tls && !reverse {
            return Err("--listen-tls is for reverse mode".into());
        }
        if self.upstream_auth.is_some()
            && !specs
                .iter()
                .any(|(s, _)| matches!(s.mode.0, Mode::Upstream { .. }))
        {
            return Err("--upstream-auth is for upstream mode (--mode upstream:URL)".into());
        }
        if self.upstream_auth.as_deref().is_some_and(|a| !a.contains(':')) {
            return Err("--upstream-auth takes USER:PASS".into());
        }
        let (main_host, main_port) = self.listen_at();
        let mut listeners: Vec<Listener> = Vec::with_capacity(specs.len());
        for (spec, file_gateway) in specs {
            let (host, port, port_from) = match spec.at {
                None => (main_host.clone(), main_port, self.listen_flag().to_owned()),
                Some((host, port)) => {
                    let port_from = match file_gateway {
                        Some(_) => "the route's `listen`".to_owned(),
                        None => format!("--mode {}@PORT", spec.mode.0.name()),
                    };
                    (host.unwrap_or_else(|| main_host.clone()), port, port_from)
                }
            };
            let addrs = resolve(&host, port)?;
            let taken = addrs.iter().find(|a| listeners.iter().any(|l| l.addrs.contains(a)));
            if let Some(addr) = taken.filter(|_| port != 0) {
                return Err(format!("two modes listen on {addr}"));
            }
            let ModeArg(mode, h2c) = spec.mode;
            let mode = match mode {
                Mode::Reverse { scheme, target, .. } => {
                    if (self.listen_tls || scheme == Scheme::Https) && self.no_intercept {
                        return Err("reverse mode with TLS on either side needs TLS: drop --no-intercept".into());
                    }
                    Mode::Reverse { scheme, target, client_tls: self.listen_tls }
                }
                Mode::Upstream { proxy, tls, .. } => {
                    if tls && self.no_intercept {
                        return Err("an https:// upstream proxy needs TLS: drop --no-intercept".into());
                    }
                    Mode::Upstream { proxy, tls, auth: self.upstream_auth.clone() }
                }
                mode => mode,
            };
            let gateway = match file_gateway {
                Some(spec) => Some(spec.clone()),
                None => self.gateway_spec(&mode),
            };
            listeners.push(Listener {
                addrs,
                mode: ModeArg(mode, h2c),
                gateway,
                port_from,
            });
        }
        Ok(listeners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("regular"), Ok(ModeArg(Mode::Regular, false)));
        let reverse = parse_mode("reverse:https://Origin.test:8443/").unwrap();
        let target = ServerAddr::new("origin.test", 8443);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Https, target, client_tls: false }, false));
        let reverse = parse_mode("reverse:http://[::1]").unwrap();
        let target = ServerAddr::new("::1", 80);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, false));
        let reverse = parse_mode("reverse:h2c://127.0.0.1:81").unwrap();
        let target = ServerAddr::new("127.0.0.1", 81);
        assert_eq!(reverse, ModeArg(Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }, true));
        let proxy = ServerAddr::new("127.0.0.1", 3128);
        assert_eq!(parse_mode("upstream:http://127.0.0.1:3128"), Ok(ModeArg(Mode::Upstream { proxy, tls: false, auth: None }, false)));
        assert!(parse_mode("upstream:h2c://p:1").is_err());
        let proxy = ServerAddr::new("p", 1);
        assert_eq!(
            parse_mode("upstream:https://p:1"),
            Ok(ModeArg(
                Mode::Upstream {
                    proxy,
                    tls: true,
                    auth: None
                },
                false
            ))
        );
        let args = Args::try_parse_from([
            "sansproxy",
            "--mode",
            "upstream:https://p:1",
            "--upstream-auth",
            "u:p",
        ])
        .unwrap();
        assert!(
            matches!(&args.listeners().unwrap()[0].mode.0, Mode::Upstream { auth: Some(a), .. } if a == "u:p")
        );
        let args = Args::try_parse_from(["sansproxy", "--upstream-auth", "u:p"]).unwrap();
        assert!(args.listeners().is_err(), "--upstream-auth without an upstream mode");
        assert!(parse_mode("reverse:ftp://x").is_err());
        assert!(parse_mode("reverse:http://x/path").is_err());
        assert!(parse_mode("reverse:http://x:99999").is_err());
        assert_eq!(parse_mode("socks5"), Ok(ModeArg(Mode::Socks5, false)));
        assert_eq!(parse_mode("transparent").is_ok(), cfg!(target_os = "linux"));
        let args = Args::try_parse_from(["sansproxy", "--reverse", "https://o:1", "--listen-tls"])
            .unwrap();
        assert!(matches!(
            args.listeners().unwrap()[0].mode.0,
            Mode::Reverse {
                client_tls: true,
                ..
            }
        ));
        let args = Args::try_parse_from(["sansproxy", "--listen-tls"]).unwrap();
        assert!(args.listeners().is_err());
        let args = Args::try_parse_from(["sansproxy", "--reverse", "https://o:1", "--no-intercept"]).unwrap();
        assert!(args.listeners().is_err());
    }

    #[test]
    fn several_modes_each_with_a_listener() {
        let args = Args::try_parse_from([
            "sansproxy", "--listen", "127.0.0.2:8000", "--mode", "regular", "--mode", "socks5@1080",
            "--mode", "reverse:h2c://o:81@[::1]:8081", "--mode", "transparent@localhost:8082",
        ])
        .unwrap();
        let listeners: Vec<(String, &str)> = args
            .listeners()
            .unwrap()
            .iter()
            .map(|l| (l.addrs[0].to_string(), l.mode.0.name()))
            .collect();
        assert_eq!(
            listeners[..3],
            [
                ("127.0.0.2:8000".to_owned(), "regular"),
                ("127.0.0.2:1080".to_owned(), "socks5"),
                ("[::1]:8081".to_owned(), "reverse"),
            ]
        );
        // A name is listened on at each of its addresses.
        let localhost = &args.listeners().unwrap()[3];
        assert!(localhost.addrs.contains(&"127.0.0.1:8082".parse().unwrap()), "{localhost:?}");
        assert!(localhost.addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8082), "{localhost:?}");
        assert_eq!(localhost.port_from, "--mode transparent@PORT");
        let h2c = &args.listeners().unwrap()[2];
        assert!(args.config_for(h2c).upstream_h2c);
        for bad in [&["--mode", "regular", "--mode", "socks5"][..], &["--mode", "regular@1", "--mode", "socks5@1"], &["--mode", "socks5@x"]] {
            let args = Args::try_parse_from(["sansproxy"].iter().chain(bad)).map_err(|e| e.to_string());
            assert!(args.and_then(|a| a.listeners()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_takes_a_port_or_a_host_and_a_port() {
        assert_eq!(parse_listen_at("8081"), Ok((None, 8081)));
        assert_eq!(parse_listen_at("localhost:8081"), Ok((Some("localhost".into()), 8081)));
        assert_eq!(parse_listen_at("Proxy.Example:0"), Ok((Some("proxy.example".into()), 0)));
        assert_eq!(parse_listen_at("[::1]:8081"), Ok((Some("::1".into()), 8081)));
        assert_eq!(parse_listen_at("0.0.0.0:80"), Ok((Some("0.0.0.0".into()), 80)));
        for bad in ["localhost", "", ":8080", "a b:1", "[x]:1", "-a:1", "a..b:1", "1:65536", "::1"] {
            assert!(parse_listen_at(bad).is_err(), "{bad:?}");
        }
        let at = |argv: &[&str]| {
            let args = Args::try_parse_from(["sansproxy"].iter().chain(argv)).unwrap();
            (args.listen_at(), args.listen_flag())
        };
        // A port alone is on loopback; mitmdump's -p and --listen-host give the parts apart.
        assert_eq!(at(&["--listen", "8081"]), (("127.0.0.1".into(), 8081), "--listen PORT"));
        assert_eq!(at(&["-p", "8082"]), (("127.0.0.1".into(), 8082), "-p PORT"));
        assert_eq!(at(&["--listen-port", "8082"]).0, ("127.0.0.1".into(), 8082));
        assert_eq!(at(&["--listen-host", "0.0.0.0"]).0, ("0.0.0.0".into(), 8080));
        assert_eq!(at(&["--listen-host", "localhost", "-p", "1"]).0, ("localhost".into(), 1));
        // Said twice, the last wins; --listen and the parts exclude each other.
        assert_eq!(at(&["--listen", "1", "--listen", "2"]).0, ("127.0.0.1".into(), 2));
        for both in [&["--listen", "1", "-p", "2"][..], &["--listen", "1", "--listen-host", "::1"]] {
            let e = Args::try_parse_from(["sansproxy"].iter().chain(both)).unwrap_err().to_string();
            assert!(e.contains("cannot be used with"), "{both:?}: {e}");
        }
        assert!(Args::try_parse_from(["sansproxy", "--listen-host", "a b"]).is_err());
        // A mode without an address of its own takes --listen-host's.
        let args = Args::try_parse_from(["sansproxy", "--listen-host", "127.0.0.3", "-p", "9", "--mode", "socks5@10", "--mode", "regular"]);
        let addrs: Vec<String> = args.unwrap().listeners().unwrap().iter().map(|l| l.addrs[0].to_string()).collect();
        assert_eq!(addrs, ["127.0.0.3:10", "127.0.0.3:9"]);
    }

    #[test]
    fn a_name_is_listened_on_at_every_address() {
        let addrs = resolve("localhost", 8081).unwrap();
        assert!(addrs.contains(&"127.0.0.1:8081".parse().unwrap()), "{addrs:?}");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert_eq!(resolve("::1", 1).unwrap(), ["[::1]:1".parse().unwrap()]);
        let e = resolve("nowhere.invalid", 1).unwrap_err();
        assert!(e.starts_with("cannot listen on nowhere.invalid: name resolution failed: "), "{e}");
    }
}
