//! Which route a request takes, and what the route changes in it: the path prefix, fields
//! set and removed, `Host`, and the `X-Forwarded-*` / `Forwarded` fields telling the backend
//! who asked.

use core::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::flow::Request;
use super::spec::RouteSpec;

/// The best route for a request to `host` (the client's, without port) and `path`: a named
/// host before a wildcard before any host, then the longest prefix.
pub(super) fn best<'a>(routes: &'a [Arc<RouteSpec>], host: Option<&str>, path: &str) -> Option<&'a Arc<RouteSpec>> {
    // Lowered only when some route names a host.
    let host = host.filter(|_| routes.iter().any(|r| r.host.is_some())).map(str::to_ascii_lowercase);
    routes
        .iter()
        .filter_map(|route| {
            let host_rank = match (&route.host, &host) {
                (None, _) => 0,
                (Some(want), Some(host)) if want.eq_ignore_ascii_case(host) => 2,
                (Some(want), Some(host)) => match want.strip_prefix("*.") {
                    Some(suffix) if host.len() > suffix.len() + 1 && host.ends_with(&suffix.to_ascii_lowercase()) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.' => 1,
                    _ => return None,
                },
                (Some(_), None) => return None,
            };
            prefix_rest(&route.path_prefix, path).map(|_| ((host_rank, route.path_prefix.len()), route))
        })
        // The first of equals wins: `max_by_key` keeps the last, so compare reversed indices.
        .enumerate()
        .max_by_key(|(i, (rank, _))| (*rank, usize::MAX - i))
        .map(|(_, (_, route))| route)
}

/// What follows `prefix` in `path`, when `path` is under it (at a segment boundary).
fn prefix_rest<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    if path == "*" {
        return (prefix == "/").then_some("");
    }
    let rest = path.strip_prefix(prefix)?;
    let boundary = prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?']);
    boundary.then_some(rest)
}

/// Apply `route`'s changes to `request` (its path, its fields).
pub(super) fn rewrite(route: &RouteSpec, request: &mut Request) {
    if let Some(new) = &route.rewrite_prefix {
        if let Some(rest) = prefix_rest(&route.path_prefix, &request.path) {
            let rest = if route.path_prefix.ends_with('/') { format!("/{rest}") } else { rest.to_owned() };
            let mut path = new.trim_end_matches('/').to_owned();
            path.push_str(&rest);
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            request.path = path;
        }
    }
    for name in &route.remove_headers {
        request.headers.remove(name);
    }
    for (name, value) in &route.set_headers {
        request.headers.insert(name.to_ascii_lowercase(), value.clone());
    }
}

/// Tell the backend who asked: `X-Forwarded-For` and `Forwarded` grow by one hop, the
/// client's; `X-Forwarded-Proto` and `X-Forwarded-Host` say what the client used (TLS or not,
/// its `Host`), replacing whatever it sent itself.
///
/// Once per request: the values are written into one buffer and share it.
pub(super) fn add_forwarded(
    request: &mut Request,
    client: IpAddr,
    tls: bool,
    host: Option<&Bytes>,
) {
    let proto: &'static str = if tls { "https" } else { "http" };
    // RFC 7239 section 6: a host with a port is quoted (':' is no token character); one that
    // could not be quoted is left out.
    let quotable = host.filter(|h| h.iter().all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
    let earlier: Vec<&[u8]> = request.headers.get_all("x-forwarded-for").map(<[u8]>::trim_ascii).filter(|e| !e.is_empty()).collect();
    let room = earlier.iter().map(|e| e.len() + 2).sum::<usize>() + 2 * 48 + 32 + quotable.map_or(0, |h| h.len());
    let mut buf = Vec::with_capacity(room);
    for e in &earlier {
        buf.extend_from_slice(e);
        buf.extend_from_slice(b", ");
    }
    drop(earlier);
    let ip_start = buf.len();
    write_ip(&mut buf, client);
    let xff_end = buf.len();
    // RFC 7239 section 6: an IPv6 node is bracketed and quoted.
    buf.extend_from_slice(b"for=");
    match client {
        IpAddr::V4(_) => buf.extend_from_within(ip_start..xff_end),
        IpAddr::V6(_) => {
            buf.extend_from_slice(b"\"[");
            buf.extend_from_within(ip_start..xff_end);
            buf.extend_from_slice(b"]\"");
        }
    }
    buf.extend_from_slice(b";proto=");
    buf.extend_from_slice(proto.as_bytes());
    if let Some(host) = quotable {
        buf.extend_from_slice(b";host=\"");
        buf.extend_from_slice(host);
        buf.push(b'"');
    }
    let buf = Bytes::from(buf);
    request.headers.insert("x-forwarded-for", buf.slice(..xff_end));
    request.headers.insert("x-forwarded-proto", Bytes::from_static(proto.as_bytes()));
    match host {
        Some(host) => request.headers.insert("x-forwarded-host", host.clone()),
        None => {
            request.headers.remove("x-forwarded-host");
        }
    }
    request.headers.append("forwarded", buf.slice(xff_end..));
}

/// `ip` as text, an IPv4 address without the formatting machinery: this runs for every
/// request.
fn write_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                if octet >= 100 {
                    buf.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    buf.push(b'0' + octet / 10 % 10);
                }
                buf.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            write!(buf, "{v6}").expect("writing to a Vec");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Version;
    use crate::headers::Headers;
    use crate::ids::Scheme;

    fn route(host: Option<&str>, prefix: &str, group: &str) -> RouteSpec {
        RouteSpec { host: host.map(str::to_owned), path_prefix: prefix.into(), ..RouteSpec::to_group(group) }
    }

    fn request(path: &str) -> Request {
        Request {
            method: "GET".into(),
            scheme: Scheme::Http,
            host: "b".into(),
            port: 80,
            path: path.into(),
            version: Version::Http11,
            headers: Headers::new(),
            body: None,
            trailers: None,
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let routes = [
            route(None, "/", "any"),
            route(None, "/api", "api"),
            route(Some("*.example.com"), "/", "wild"),
            route(Some("shop.example.com"), "/", "shop"),
            route(Some("shop.example.com"), "/api/", "shop-api"),
        ]
        .map(Arc::new);
        let pick = |host: Option<&str>, path: &str| best(&routes, host, path).map(|r| r.group.as_str());
        assert_eq!(pick(None, "/x"), Some("any"));
        assert_eq!(pick(Some("other.test"), "/api/v1"), Some("api"));
        assert_eq!(pick(Some("other.test"), "/apis"), Some("any"));
        assert_eq!(pick(Some("other.test"), "/api?q=1"), Some("api"));
        assert_eq!(pick(Some("a.example.com"), "/api"), Some("wild"));
        assert_eq!(pick(Some("example.com"), "/"), Some("any"));
        assert_eq!(pick(Some("SHOP.example.com"), "/api/x"), Some("shop-api"));
        assert_eq!(pick(Some("shop.example.com"), "/api"), Some("shop"));
        assert_eq!(pick(None, "*"), Some("any"));
        assert_eq!(best(&routes[1..2], Some("a"), "/"), None);
    }

    #[test]
    fn prefixes_are_rewritten() {
        let cases = [
            ("/api", Some(""), "/api/users?x", "/users?x"),
            ("/api", Some(""), "/api", "/"),
            ("/api", Some(""), "/api?x=1", "/?x=1"),
            ("/api/", Some("/v2/"), "/api/users", "/v2/users"),
            ("/api", Some("/v2"), "/api/users", "/v2/users"),
            ("/", Some("/app"), "/index.html", "/app/index.html"),
            ("/api", None, "/api/users", "/api/users"),
        ];
        for (prefix, new, path, want) in cases {
            let mut spec = route(None, prefix, "g");
            spec.rewrite_prefix = new.map(str::to_owned);
            let mut request = request(path);
            rewrite(&spec, &mut request);
            assert_eq!(request.path, want, "{prefix} -> {new:?} on {path}");
        }
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = Vec::new();
            write_ip(&mut buf, ip);
            assert_eq!(String::from_utf8(buf).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn forwarded_fields_grow_by_one_hop() {
        let mut request = request("/");
        request.headers.append("x-forwarded-for", "10.0.0.1");
        request.headers.append("x-forwarded-proto", "gopher");
        add_forwarded(&mut request, "192.0.2.7".parse().unwrap(), true, Some(&Bytes::from_static(b"shop.test:8443")));
        let h = &request.headers;
        assert_eq!(h.get_str("x-forwarded-for"), Some("10.0.0.1, 192.0.2.7"));
        assert_eq!(h.get_str("x-forwarded-proto"), Some("https"));
        assert_eq!(h.get_str("x-forwarded-host"), Some("shop.test:8443"));
        assert_eq!(h.get_str("forwarded"), Some("for=192.0.2.7;proto=https;host=\"shop.test:8443\""));
        let mut request = super::tests::request("/");
        add_forwarded(&mut request, "::1".parse().unwrap(), false, None);
        assert_eq!(request.headers.get_str("forwarded"), Some("for=\"[::1]\";proto=http"));
    }
}
