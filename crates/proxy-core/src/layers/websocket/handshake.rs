//! The opening handshake across versions: HTTP/1.1's `Sec-WebSocket-Key` and `-Accept`
//! (RFC 6455 section 4) against HTTP/2's extended CONNECT (RFC 8441), which has neither. An
//! HTTP/2 client's upgrade gets a fresh key on its way to an HTTP/1.1 server; an HTTP/2
//! server's `200` gets the accept value for the key its upgrade was sent with.

/// A fresh `Sec-WebSocket-Key`: 16 bytes from `fill`, in base64.
pub(crate) fn new_key(fill: impl FnOnce(&mut [u8])) -> String {
    let mut nonce = [0u8; 16];
    fill(&mut nonce);
    base64(&nonce)
}

/// The `Sec-WebSocket-Accept` that answers `key`: base64 of SHA-1 over the key and RFC 6455's
/// GUID.
pub(crate) fn accept(key: &str) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.trim().as_bytes());
    context.update(GUID);
    base64(context.finish().as_ref())
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' };
            out.push(c as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example() {
        assert_eq!(accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(new_key(|b| b.copy_from_slice(b"the sample nonce")), "dGhlIHNhbXBsZSBub25jZQ==");
    }
}
