//! Authorities, `host[:port]`, as request targets, `Host` fields and `:authority`
//! pseudo-fields give them: both HTTP versions' codecs read them the same way.

/// `host[:port]` or `[v6]:port`. Without a default port, the port is required.
pub(crate) fn split_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    authority_parts(authority, default_port).map(|(host, port)| (host.to_ascii_lowercase(), port))
}

/// [`split_authority`] without lowering the host, which stays borrowed.
pub(crate) fn authority_parts(authority: &str, default_port: Option<u16>) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<core::net::Ipv6Addr>().ok()?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // A bracketed host was checked as an IPv6 address; any other is a name or IPv4 address,
    // without the colon that would make `a.test:80:80` a host `a.test:80`.
    let valid_host = authority.starts_with('[')
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u16>().ok().filter(|&p| p != 0)?,
        Some(_) => return None,
        None => default_port?,
    };
    Some((host, port))
}
