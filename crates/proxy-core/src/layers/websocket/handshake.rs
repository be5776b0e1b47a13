//! The upgrade request as it goes to the server: only extensions the proxy can read through.

use crate::flow::Request;

/// Remove from an upgrade request the extensions the proxy could not parse the frames of: a
/// peer using one would set reserved bits the layer must refuse (RFC 6455 section 9.1).
pub(crate) fn offer(request: &mut Request) {
    request.headers.remove("sec-websocket-extensions");
}
