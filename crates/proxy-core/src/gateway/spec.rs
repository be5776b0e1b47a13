//! What a gateway is told: backends, groups, balancing policies, health checks, routes.
//! Plain data with defaults and parsers, checked once by [`GatewaySpec::validate`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ids::{Scheme, ServerAddr};

/// A backend: where requests go and whether over TLS (`http://10.0.0.5:8080`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Plain HTTP or TLS (verified like any upstream server).
    pub scheme: Scheme,
    /// Its host (a name is resolved by the driver at each connect) and port.
    pub addr: ServerAddr,
}

impl Backend {
    /// The backend at `addr`, reached over `scheme`.
    pub fn new(scheme: Scheme, addr: ServerAddr) -> Self {
        Self { scheme, addr }
    }

    /// `http://host[:port]` or `https://host[:port]`, the port defaulting to the scheme's; a
    /// path other than `/` is refused (routes rewrite paths, backends do not).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            Some((other, _)) => return Err(format!("backend {url:?}: scheme {other:?} is not http or https")),
            None => return Err(format!("backend {url:?}: not a URL (http://host:port)")),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !(path.is_empty() || path == "/") {
            return Err(format!("backend {url:?}: a backend has no path (a route rewrites paths)"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| format!("backend {url:?}: unclosed '['"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(format!("backend {url:?}: no host"));
        }
        let port = match port {
            Some(port) => port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("backend {url:?}: bad port {port:?}"))?,
            None => scheme.default_port(),
        };
        Ok(Self::new(scheme, ServerAddr::new(host, port)))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.addr)
    }
}

/// How a group picks the backend of each request, among those not down.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight (ties in turn).
    LeastConn,
    /// Any, uniformly.
    Random,
    /// Power of two choices: two at random, the one with the lower cost, cost being the
    /// decaying peak of its response latency times one more than its requests in flight (as
    /// Finagle's and Linkerd's "peak EWMA"): a slow or busy backend gets less, a new one is
    /// tried.
    PowerOfTwo,
    /// The same key goes to the same backend while it is up (rendezvous hashing: a backend
    /// removed or down moves only its own share). A request without the key is balanced
    /// round robin.
    Hash(HashOn),
}

/// What a [`Balance::Hash`] group hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The client's IP address (without the port): each client sticks to one backend.
    ClientIp,
    /// The value of this request header (lower-case name); `hash:header:NAME`.
    Header(String),
    /// The value of this cookie (case-sensitive name); `hash:cookie:NAME`.
    Cookie(String),
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lb = match s {
            "round-robin" => Self::RoundRobin,
            "least-conn" => Self::LeastConn,
            "random" => Self::Random,
            "p2c" => Self::PowerOfTwo,
            "hash:client-ip" => Self::Hash(HashOn::ClientIp),
            _ => match (s.strip_prefix("hash:header:"), s.strip_prefix("hash:cookie:")) {
                (Some(name), _) if !name.is_empty() => Self::Hash(HashOn::Header(name.to_ascii_lowercase())),
                (_, Some(name)) if !name.is_empty() => Self::Hash(HashOn::Cookie(name.to_owned())),
                _ => {
                    return Err(format!(
                        "unknown balancing {s:?} (round-robin, least-conn, random, p2c, hash:client-ip, hash:header:NAME, hash:cookie:NAME)"
                    ))
                }
            },
        };
        Ok(lb)
    }
}

/// When a backend is taken out of its group, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// Active checks: `GET path` on every backend of the group every `interval`; one that
    /// answers other than 2xx, or not within `timeout`, is down until it answers 2xx again.
    /// `None` (the default): no active checks.
    pub path: Option<String>,
    /// How often each backend is checked. Default: 5 s.
    pub interval: Duration,
    /// How long a check may take, connect included. Default: 2 s.
    pub timeout: Duration,
    /// Passive checks: after this many failures in a row (connection refused or failed, a
    /// 5xx, a timeout, a broken response) a backend is ejected. 0 turns them off. As with
    /// nginx's `max_fails`, a group of one backend never ejects it. Default: 3.
    pub max_fails: u32,
    /// The first ejection lasts this long, each next one without a success in between twice
    /// as long, up to `max_ejection`. When it ends the backend gets requests again; one
    /// failure ejects it anew. Default: 10 s.
    pub ejection: Duration,
    /// The longest an ejection grows to. Default: 300 s.
    pub max_ejection: Duration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_fails: 3,
            ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// How many requests each backend of a group takes at once, and what becomes of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// At most this many requests in flight to each backend (over HTTP/1.1, as many busy
    /// connections: an idle one is handed back to the shared pool at once, so the backend
    /// sees at most this many plus the pool's idle ones). `None` (the default): no limit.
    pub max_conns: Option<u32>,
    /// Requests beyond the limit wait, first come first served, in a queue of at most this
    /// many per group; one more is answered 503 at once (0: no queue). Default: 1000.
    pub queue_limit: usize,
    /// A request waits in the queue at most this long, then is answered 503. Default: 10 s.
    pub queue_timeout: Duration,
}

impl Default for LimitSpec {
    fn default() -> Self {
        Self { max_conns: None, queue_limit: 1000, queue_timeout: Duration::from_secs(10) }
    }
}

/// A named set of backends balanced as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// What routes call it; also named in its 503s and in metrics.
    pub name: String,
    /// Its backends, at least one.
    pub backends: Vec<Backend>,
    /// How each request's backend is picked. Default: round robin.
    pub balance: Balance,
    /// When a backend is taken out, and for how long.
    pub health: HealthSpec,
    /// How many requests each backend takes at once.
    pub limits: LimitSpec,
}

impl GroupSpec {
    /// A group `name` of `backends`, balanced round robin, with the default health and
    /// limits.
    pub fn new(name: impl Into<String>, backends: Vec<Backend>) -> Self {
        Self { name: name.into(), backends, balance: Balance::default(), health: HealthSpec::default(), limits: LimitSpec::default() }
    }
}

/// Which requests go to a group, and what is changed in them on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The host the route serves, as the client named it (`Host` or `:authority`, without the
    /// port), or `*.example.com` for its subdomains; `None` for any.
    pub host: Option<String>,
    /// The path prefix served, matched at a segment boundary: `/api` matches `/api`,
    /// `/api/users` and `/api?q`, not `/apis`.
    pub path_prefix: String,
    /// The matched prefix is replaced by this before the request goes on (`""` strips it).
    pub rewrite_prefix: Option<String>,
    /// Fields set on the request (replacing any of the same name).
    pub set_headers: Vec<(String, String)>,
    /// Fields removed from the request.
    pub remove_headers: Vec<String>,
    /// Keep the client's `Host` rather than naming the backend.
    pub preserve_host: bool,
    /// The group's name.
    pub group: String,
}

impl RouteSpec {
    /// Everything, to `group`, unchanged.
    pub fn to_group(group: impl Into<String>) -> Self {
        Self {
            host: None,
            path_prefix: "/".into(),
            rewrite_prefix: None,
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            preserve_host: false,
            group: group.into(),
        }
    }
}

/// A whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The groups of backends, each named once.
    pub groups: Vec<GroupSpec>,
    /// Tried best match first (a named host before a wildcard before any host, then the longest
    /// prefix); a request no route matches is answered 404.
    pub routes: Vec<RouteSpec>,
    /// Add `X-Forwarded-For` (appended to), `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// RFC 7239 `Forwarded` (appended to) to every request.
    pub forwarded_headers: bool,
}

impl GatewaySpec {
    /// One group serving every request.
    pub fn single(group: GroupSpec) -> Self {
        let route = RouteSpec::to_group(group.name.clone());
        Self { groups: vec![group], routes: vec![route], forwarded_headers: true }
    }

    /// Whether some group limits how many requests its backends take at once.
    pub fn limits_connections(&self) -> bool {
        self.groups.iter().any(|g| g.limits.max_conns.is_some())
    }

    /// Every route names a group that exists, every group has a backend, names are unique,
    /// prefixes and health paths start with `/`.
    pub fn validate(&self) -> Result<(), String> {
        for (i, group) in self.groups.iter().enumerate() {
            if self.groups[..i].iter().any(|g| g.name == group.name) {
                return Err(format!("group {:?} is defined twice", group.name));
            }
            if group.backends.is_empty() {
                return Err(format!("group {:?} has no backend", group.name));
            }
            if let Some(path) = &group.health.path {
                if !path.starts_with('/') {
                    return Err(format!("group {:?}: health-check path {path:?} does not start with '/'", group.name));
                }
            }
            if group.health.interval.is_zero() || group.health.timeout.is_zero() {
                return Err(format!("group {:?}: health-check interval and timeout must be above zero", group.name));
            }
            if group.limits.max_conns == Some(0) {
                return Err(format!("group {:?}: a connection limit of 0 would refuse every request", group.name));
            }
        }
        if self.routes.is_empty() {
            return Err("no route".into());
        }
        for route in &self.routes {
            if !self.groups.iter().any(|g| g.name == route.group) {
                return Err(format!("a route names group {:?}, which is not defined", route.group));
            }
            if !route.path_prefix.starts_with('/') {
                return Err(format!("route prefix {:?} does not start with '/'", route.path_prefix));
            }
            if let Some(rewrite) = &route.rewrite_prefix {
                if !(rewrite.is_empty() || rewrite.starts_with('/')) {
                    return Err(format!("route rewrite {rewrite:?} is neither empty nor starts with '/'"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_policies_parse() {
        let b = Backend::parse("http://127.0.0.1:9001").unwrap();
        assert_eq!((b.scheme, b.addr.host.as_str(), b.addr.port), (Scheme::Http, "127.0.0.1", 9001));
        let b = Backend::parse("https://[::1]/").unwrap();
        assert_eq!((b.scheme, b.addr.host.as_str(), b.addr.port), (Scheme::Https, "::1", 443));
        assert_eq!(b.to_string(), "https://[::1]:443");
        assert!(Backend::parse("http://a/x").unwrap_err().contains("no path"));
        assert!(Backend::parse("ftp://a").unwrap_err().contains("ftp"));
        assert!(Backend::parse("http://a:0").is_err());
        assert_eq!("hash:header:X-User".parse::<Balance>(), Ok(Balance::Hash(HashOn::Header("x-user".into()))));
        assert_eq!("p2c".parse::<Balance>(), Ok(Balance::PowerOfTwo));
        assert!("fastest".parse::<Balance>().unwrap_err().contains("round-robin"));
    }
}
