//! Where the requests of a client connection may go. The proxy mode decides, never the client.
//!
//! A regular (or upstream-mode) proxy serves whatever server each request names: that is what
//! a client asks of an explicit proxy. A connection the client opened to one server through us
//! (an intercepted `CONNECT`) sends its origin-form requests there. A reverse proxy stands in
//! for its configured upstream: every request goes there whatever its target, `:authority` or
//! `Host` say, and `CONNECT` is refused, so that a client at the edge of a network cannot use
//! the proxy to reach (or make it look up the name of) anything behind it. nginx and HAProxy
//! in reverse mode behave the same way.

use crate::ids::{Scheme, ServerAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// An explicit proxy: each request names its server (absolute-form, `CONNECT`,
    /// `:authority`).
    Named,
    /// The client's connection leads to `target` (an intercepted `CONNECT`): origin-form
    /// requests go there over `scheme` and keep the `Host` the client chose.
    Tunnel { scheme: Scheme, target: ServerAddr },
    /// Reverse mode: every request goes to `target` over `scheme`. The authority of an
    /// absolute-form target (RFC 9112 section 3.2.2 has an origin server accept that form) is
    /// read as a `Host` would be, and `Host` becomes the upstream's own name, as the client
    /// named us and not it. `CONNECT` is answered 405.
    Fixed { scheme: Scheme, target: ServerAddr },
}

impl Destination {
    /// Where origin-form requests go, if they may come at all.
    pub(crate) fn target(&self) -> Option<(Scheme, &ServerAddr)> {
        match self {
            Self::Named => None,
            Self::Tunnel { scheme, target } | Self::Fixed { scheme, target } => Some((*scheme, target)),
        }
    }

    /// Whether every request goes to the one configured upstream (reverse mode).
    pub(crate) fn is_fixed(&self) -> bool {
        matches!(self, Self::Fixed { .. })
    }

    /// Why a `CONNECT` is refused here with 405, if it is.
    pub(crate) fn refuses_connect(&self) -> Option<&'static str> {
        self.is_fixed().then_some("CONNECT is not served by a reverse proxy")
    }
}
