//! `--config FILE`: the flags, and the gateway's routes and groups of backends, in TOML.
//!
//! Every flag is a top-level key named as the flag without its leading dashes
//! (`max-fails = 5`; `max_fails` too): a string or number is its value, `true` sets a switch,
//! an array repeats a repeatable flag. Flags on the command line win over the file's. Routes
//! and groups have tables of their own; a route names a group or lists backends of its own:
//!
//! ```toml
//! [[upstream]]
//! name = "api"
//! backends = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
//! lb = "least-conn"
//! health-check = "/healthz"
//!
//! [[route]]
//! host = "shop.example"        # any host when left out; "*.example" for subdomains
//! path = "/api"                # a prefix, at a segment boundary ("/" when left out)
//! rewrite = ""                 # what replaces the prefix ("" strips it)
//! set-headers = { "X-Env" = "prod" }
//! remove-headers = ["Cookie"]
//! upstream = "api"
//!
//! [[route]]
//! upstreams = ["http://127.0.0.1:9003"]
//!
//! [[route]]
//! listen = "8443"              # PORT or HOST:PORT: a reverse listener of its own
//! upstreams = ["http://127.0.0.1:9004"]
//! ```
//!
//! Routes without `listen` make the reverse listener on `listen` (the flag); each other
//! `listen` value is one more reverse listener serving only the routes that name it. Other
//! modes go beside them as flags do (`mode = ["regular@8080", "socks5@1080"]`).
//!
//! A group's balancing, health and limit keys (`lb`, `health-check`, `health-interval`,
//! `health-timeout`, `max-fails`, `eject-time`, `upstream-max-conns`, `queue-limit`,
//! `queue-timeout`) default to the flags'.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Duration;

use proxy_core::gateway::{Backend, Balance, GatewaySpec, GroupSpec, HealthSpec, LimitSpec, RouteSpec};
use serde::Deserialize;

use crate::args::ListenAt;

/// A configuration file, read but not yet combined with the command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigFile {
    /// The flags it gives, as command-line arguments.
    pub(crate) args: Vec<OsString>,
    routes: Vec<(usize, RouteToml)>,
    upstreams: Vec<(usize, UpstreamToml)>,
}

/// What a group's keys leave to the flags.
pub(crate) struct GroupDefaults {
    pub(crate) balance: Balance,
    pub(crate) health: HealthSpec,
    pub(crate) limits: LimitSpec,
    pub(crate) forwarded_headers: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RouteToml {
    listen: Option<String>,
    host: Option<String>,
    path: Option<String>,
    rewrite: Option<String>,
    #[serde(default)]
    set_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_headers: Vec<String>,
    #[serde(default)]
    preserve_host: bool,
    upstream: Option<String>,
    upstreams: Option<Vec<String>>,
    #[serde(flatten)]
    group: GroupToml,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UpstreamToml {
    name: String,
    backends: Vec<String>,
    #[serde(flatten)]
    group: GroupToml,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct GroupToml {
    lb: Option<String>,
    health_check: Option<String>,
    health_interval: Option<f64>,
    health_timeout: Option<f64>,
    max_fails: Option<u32>,
    eject_time: Option<f64>,
    upstream_max_conns: Option<u32>,
    queue_limit: Option<usize>,
    queue_timeout: Option<f64>,
}

const GROUP_KEYS: [&str; 9] = [
    "lb",
    "health-check",
    "health-interval",
    "health-timeout",
    "max-fails",
    "eject-time",
    "upstream-max-conns",
    "queue-limit",
    "queue-timeout",
];
const ROUTE_KEYS: [&str; 9] = [
    "listen",
    "host",
    "path",
    "rewrite",
    "set-headers",
    "remove-headers",
    "preserve-host",
    "upstream",
    "upstreams",
];
const UPSTREAM_KEYS: [&str; 2] = ["name", "backends"];

impl ConfigFile {
    /// Read `text`; errors name the line.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| one_line(&e.to_string()))?;
        let mut file = Self { args: Vec::new(), routes: Vec::new(), upstreams: Vec::new() };
        for (key, value) in table {
            let flag = key.replace('_', "-");
            match flag.as_str() {
                "route" => file.routes = tables(text, "route", value, &ROUTE_KEYS)?,
                "upstream" => file.upstreams = tables(text, "upstream", value, &UPSTREAM_KEYS)?,
                "config" | "watch-config" => return Err(format!("line {}: {key:?} is for the command line", line_of_key(text, &key))),
                _ => flag_args(&mut file.args, &flag, value).map_err(|e| format!("line {}: {e}", line_of_key(text, &key)))?,
            }
        }
        Ok(file)
    }

    /// Its routes and groups as gateways, one per reverse listener: routes are gathered by
    /// their `listen` (in the order each first appears; `None` is the --listen address) and
    /// each gateway gets the groups its routes use. Empty without routes.
    pub(crate) fn gateway_specs(
        &self,
        defaults: &GroupDefaults,
    ) -> Result<Vec<(Option<ListenAt>, GatewaySpec)>, String> {
        if self.routes.is_empty() {
            if let Some((line, _)) = self.upstreams.first() {
                return Err(format!("line {line}: an [[upstream]] no [[route]] uses"));
            }
            return Ok(Vec::new());
        }
        let mut named = Vec::new();
        for (line, upstream) in &self.upstreams {
            let group = group(
                &upstream.name,
                &upstream.backends,
                &upstream.group,
                defaults,
            )
            .map_err(|e| format!("line {line}: {e}"))?;
            if named.iter().any(|g: &GroupSpec| g.name == group.name) {
                return Err(format!(
                    "line {line}: upstream {:?} is defined twice",
                    group.name
                ));
            }
            named.push(group);
        }
        let mut used = vec![false; named.len()];
        let mut specs: Vec<(Option<ListenAt>, GatewaySpec)> = Vec::new();
        for (line, route) in &self.routes {
            let at = |e: String| format!("line {line}: {e}");
            let listen = route
                .listen
                .as_deref()
                .map(|l| crate::args::parse_listen_at(l).map_err(|e| at(format!("listen = {l:?}: {e}"))))
                .transpose()?;
            let index = match specs.iter().position(|(l, _)| *l == listen) {
                Some(index) => index,
                None => {
                    let spec = GatewaySpec {
                        groups: Vec::new(),
                        routes: Vec::new(),
                        forwarded_headers: defaults.forwarded_headers,
                    };
                    specs.push((listen, spec));
                    specs.len() - 1
                }
            };
            let spec = &mut specs[index].1;
            let path = route.path.clone().unwrap_or_else(|| "/".into());
            let name = match (&route.upstream, &route.upstreams) {
                (Some(name), None) => {
                    if route.group != GroupToml::default() {
                        return Err(at(format!("balancing and health belong to [[upstream]] {name:?}, not to a route naming it")));
                    }
                    let Some(i) = named.iter().position(|g| g.name == *name) else {
                        return Err(at(format!("upstream {name:?} is not defined")));
                    };
                    used[i] = true;
                    if !spec.groups.iter().any(|g| g.name == *name) {
                        spec.groups.push(named[i].clone());
                    }
                    name.clone()
                }
                (None, Some(backends)) => {
                    // A group of the route's own, named after what it serves.
                    let name = format!("{}{path}", route.host.as_deref().unwrap_or("*"));
                    if spec.groups.iter().any(|g| g.name == name) {
                        return Err(at(format!(
                            "two routes for {name} on one listener: the second is never reached"
                        )));
                    }
                    spec.groups
                        .push(group(&name, backends, &route.group, defaults).map_err(at)?);
                    name
                }
                _ => return Err(at("a route has either `upstream = NAME` or `upstreams = [URL, ...]`".into())),
            };
            spec.routes.push(RouteSpec {
                host: route.host.clone(),
                path_prefix: path,
                rewrite_prefix: route.rewrite.clone(),
                set_headers: route.set_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                remove_headers: route.remove_headers.clone(),
                preserve_host: route.preserve_host,
                group: name,
            });
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(format!(
                "line {}: an [[upstream]] no [[route]] uses",
                self.upstreams[i].0
            ));
        }
        for (_, spec) in &specs {
            spec.validate()?;
        }
        Ok(specs)
    }

    /// The first backend of the first route: the reverse listener's nominal target.
    pub(crate) fn first_backend_of(spec: &GatewaySpec) -> Option<Backend> {
        let group = &spec.routes.first()?.group;
        spec.groups.iter().find(|g| g.name == *group)?.backends.first().cloned()
    }
}

fn group(name: &str, urls: &[String], knobs: &GroupToml, defaults: &GroupDefaults) -> Result<GroupSpec, String> {
    let backends = urls.iter().map(|u| Backend::parse(u)).collect::<Result<Vec<_>, _>>()?;
    let mut group = GroupSpec::new(name, backends);
    group.balance = match &knobs.lb {
        Some(lb) => lb.parse()?,
        None => defaults.balance.clone(),
    };
    let secs = |v: Option<f64>, default: Duration, key: &str| match v {
        None => Ok(default),
        Some(s) => Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero()).ok_or_else(|| format!("{key} = {s}: not a duration above zero")),
    };
    let d = &defaults.health;
    group.health = HealthSpec {
        path: knobs.health_check.clone().or_else(|| d.path.clone()),
        interval: secs(knobs.health_interval, d.interval, "health-interval")?,
        timeout: secs(knobs.health_timeout, d.timeout, "health-timeout")?,
        max_fails: knobs.max_fails.unwrap_or(d.max_fails),
        ejection: secs(knobs.eject_time, d.ejection, "eject-time")?,
        max_ejection: d.max_ejection,
    };
    let d = &defaults.limits;
    group.limits = LimitSpec {
        max_conns: knobs.upstream_max_conns.or(d.max_conns),
        queue_limit: knobs.queue_limit.unwrap_or(d.queue_limit),
        queue_timeout: secs(knobs.queue_timeout, d.queue_timeout, "queue-timeout")?,
    };
    Ok(group)
}

/// An array of tables `[[name]]`, each with its line, keys checked against `known` (and the
/// group keys) so that a typo is an error rather than a setting silently ignored.
fn tables<T: for<'de> Deserialize<'de>>(text: &str, name: &str, value: toml::Value, known: &[&str]) -> Result<Vec<(usize, T)>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!("line {}: `{name}` is written [[{name}]]", line_of_key(text, name)));
    };
    let lines = table_lines(text, name);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let toml::Value::Table(table) = item else {
            return Err(format!("line {line}: `{name}` is written [[{name}]]"));
        };
        // Keys in either spelling; set-headers' own keys are field names and stay as written.
        let table: toml::Table = table.into_iter().map(|(k, v)| (k.replace('_', "-"), v)).collect();
        if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str()) && !GROUP_KEYS.contains(&k.as_str())) {
            let mut all: Vec<&str> = known.to_vec();
            all.extend(GROUP_KEYS);
            return Err(format!("line {line}: unknown key {key:?} in [[{name}]] (known: {})", all.join(", ")));
        }
        let parsed = toml::Value::Table(table).try_into::<T>().map_err(|e| format!("line {line}: [[{name}]]: {}", one_line(&e.to_string())))?;
        out.push((line, parsed));
    }
    Ok(out)
}

/// A top-level key as command-line arguments.
fn flag_args(args: &mut Vec<OsString>, flag: &str, value: toml::Value) -> Result<(), String> {
    let values = match value {
        toml::Value::Array(items) => items,
        toml::Value::Boolean(false) => return Ok(()),
        toml::Value::Boolean(true) => {
            args.push(format!("--{flag}").into());
            return Ok(());
        }
        one => vec![one],
    };
    for value in values {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(format!(
                    "{flag} = {other}: a flag takes a string, a number, true, or an array of them"
                ))
            }
        };
        args.push(format!("--{flag}").into());
        args.push(text.into());
    }
    Ok(())
}

/// Lines (1-based) of each `[[name]]` header, in order.
fn table_lines(text: &str, name: &str) -> Vec<usize> {
    let header = format!("[[{name}]]");
    text.lines().enumerate().filter(|(_, l)| l.trim_start().starts_with(&header)).map(|(i, _)| i + 1).collect()
}

/// The line (1-based) where top-level `key` is set, 0 if not found.
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map_or(0, |i| i + 1)
}

/// toml's errors quote the offending line under the message: keep where and what.
fn one_line(e: &str) -> String {
    let mut lines = e.lines();
    let first = lines.next().unwrap_or_default();
    let at = first.strip_prefix("TOML parse error at ").unwrap_or(first);
    let what: Vec<&str> = lines.filter(|l| !l.is_empty() && !l.starts_with([' ', '|']) && !l.starts_with(|c: char| c.is_ascii_digit())).collect();
    match what.is_empty() {
        true => at.to_owned(),
        false => format!("{at}: {}", what.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> GroupDefaults {
        GroupDefaults { balance: Balance::RoundRobin, health: HealthSpec::default(), limits: LimitSpec::default(), forwarded_headers: true }
    }

    #[test]
    fn the_readme_example_is_one_group_of_two() {
        let file = ConfigFile::parse(
            "[[route]]\nupstreams = [\"http://127.0.0.1:9001\", \"http://127.0.0.1:9002\"]\nlb = \"round-robin\"\n",
        )
        .unwrap();
        let spec = file.gateway_specs(&defaults()).unwrap().remove(0).1;
        assert_eq!(spec.groups.len(), 1);
        assert_eq!(spec.groups[0].backends.len(), 2);
        assert_eq!((spec.routes[0].group.as_str(), spec.routes[0].path_prefix.as_str()), ("*/", "/"));
        assert_eq!(ConfigFile::first_backend_of(&spec).unwrap().addr.port, 9001);
    }

    #[test]
    fn flags_become_arguments_and_groups_take_their_defaults() {
        let text = r#"
listen = "127.0.0.1:0"
max_fails = 5
no-http2 = true
listen-tls = false
cert = ["a.pem", "b.test=b.pem"]

[[upstream]]
name = "api"
backends = ["http://127.0.0.1:9001"]
health_check = "/healthz"
upstream-max-conns = 8
queue-timeout = 2.5

[[route]]
host = "shop.test"
path = "/api"
rewrite = ""
set-headers = { "X_Env" = "prod" }
upstream = "api"
"#;
        let file = ConfigFile::parse(text).unwrap();
        let args: Vec<String> = file.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--cert", "a.pem", "--cert", "b.test=b.pem", "--listen", "127.0.0.1:0", "--max-fails", "5", "--no-http2"]);
        let mut d = defaults();
        d.balance = Balance::LeastConn;
        let spec = file.gateway_specs(&d).unwrap().remove(0).1;
        assert_eq!(spec.groups[0].balance, Balance::LeastConn);
        assert_eq!(spec.groups[0].health.path.as_deref(), Some("/healthz"));
        assert_eq!(spec.groups[0].limits, LimitSpec { max_conns: Some(8), queue_timeout: Duration::from_millis(2500), ..LimitSpec::default() });
        assert_eq!(spec.routes[0].set_headers, [("X_Env".to_owned(), "prod".to_owned())]);
        assert_eq!(spec.routes[0].rewrite_prefix.as_deref(), Some(""));
    }

    #[test]
    fn mistakes_name_their_line() {
        let err =
            |text: &str| match ConfigFile::parse(text).and_then(|f| f.gateway_specs(&defaults())) {
                Err(e) => e,
                Ok(spec) => panic!("accepted: {spec:?}"),
            };
        assert_eq!(
            err("[[route]]\nupstreams = [\"http://a:1\"]\n\n[[route]]\nupstream = \"nope\"\n"),
            "line 4: upstream \"nope\" is not defined"
        );
        assert!(err("[[route]]\nupstream = \"a\"\nhots = \"x\"\n")
            .starts_with("line 1: unknown key \"hots\" in [[route]] (known: listen, host,"));
        assert_eq!(
            err("[[route]]\nupstreams = [\"ftp://a\"]\n"),
            "line 1: backend \"ftp://a\": scheme \"ftp\" is not http or https"
        );
        assert_eq!(
            err("[[route]]\nhost = \"a\"\n"),
            "line 1: a route has either `upstream = NAME` or `upstreams = [URL, ...]`"
        );
        assert_eq!(
            err("a = {b = 1}\n"),
            "line 1: a = { b = 1 }: a flag takes a string, a number, true, or an array of them"
        );
        assert!(
            err("[[route]\n").contains("line 1"),
            "{}",
            err("[[route]\n")
        );
        assert_eq!(
            err("[[upstream]]\nname = \"x\"\nbackends = [\"http://a:1\"]\n"),
            "line 1: an [[upstream]] no [[route]] uses"
        );
        assert_eq!(
            err("[[route]]\nupstreams = [\"http://a:1\"]\nhealth-interval = 0\n"),
            "line 1: health-interval = 0: not a duration above zero"
        );
        assert_eq!(
            err("[[route]]\nlisten = \"x:y\"\nupstreams = [\"http://a:1\"]\n"),
            "line 1: listen = \"x:y\": \"x:y\" is neither PORT nor HOST:PORT"
        );
        assert_eq!(
            err("[[route]]\nupstreams = [\"http://a:1\"]\n[[route]]\nupstreams = [\"http://a:2\"]\n"),
            "line 3: two routes for */ on one listener: the second is never reached"
        );
    }

    #[test]
    fn routes_with_a_listen_make_listeners_of_their_own() {
        let text = r#"
[[upstream]]
name = "api"
backends = ["http://127.0.0.1:9001"]

[[route]]
path = "/api"
upstream = "api"

[[route]]
listen = "127.0.0.1:8443"
upstreams = ["http://127.0.0.1:9002"]

[[route]]
upstreams = ["http://127.0.0.1:9003"]

[[route]]
listen = "127.0.0.1:8443"
path = "/api"
upstream = "api"
"#;
        let specs = ConfigFile::parse(text)
            .unwrap()
            .gateway_specs(&defaults())
            .unwrap();
        let summary: Vec<(Option<ListenAt>, Vec<&str>, Vec<&str>)> = specs
            .iter()
            .map(|(at, spec)| {
                (
                    at.clone(),
                    spec.routes.iter().map(|r| r.group.as_str()).collect(),
                    spec.groups.iter().map(|g| g.name.as_str()).collect(),
                )
            })
            .collect();
        let at = Some((Some("127.0.0.1".to_owned()), 8443));
        assert_eq!(
            summary,
            [
                (None, vec!["api", "*/"], vec!["api", "*/"]),
                (at, vec!["*/", "api"], vec!["*/", "api"])
            ]
        );
        assert_eq!(
            ConfigFile::first_backend_of(&specs[1].1).unwrap().addr.port,
            9002
        );
    }
}
