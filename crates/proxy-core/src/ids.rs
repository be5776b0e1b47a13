//! The names every module uses: connections, flows, servers, schemes. A leaf: it imports
//! nothing of the crate, so any module may import it without a dependency circle.

/// A connection of one [`Connection`](crate::Connection): the client's, or one of the
/// upstream connections opened on its behalf. Issued in order, so tests can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The accepted client connection.
    pub const CLIENT: Self = Self(0);
}

/// One HTTP request/response exchange (or one connection-level hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// The address of an upstream server, as named by the client (not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    /// A DNS name or an IP literal; an IPv6 literal without brackets (`::1`).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl ServerAddr {
    /// `host` at `port`. `Display` writes it `host:port`, bracketing an IPv6 literal.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The scheme of a request's URL: how the proxy reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (port 80 by default).
    Http,
    /// HTTP over TLS (port 443 by default).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`, as in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The port a URL of this scheme means when it names none: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}
