//! Proxy authentication for HTTP proxy clients (`Config::proxy_auth`): every request a
//! regular or upstream-mode listener takes (absolute-form, `CONNECT`, HTTP/2 alike) carries
//! `Proxy-Authorization: Basic` (RFC 9110 section 11.7.1, RFC 7617) with credentials the
//! check accepts, or is answered `407` with `Proxy-Authenticate`. The credentials never go
//! upstream. Requests inside an intercepted `CONNECT` were authorised with the `CONNECT`.

use crate::config::ProxyAuth;
use crate::flow::Response;
use crate::headers::Headers;

/// Check the request's credentials and take them out of `headers`; `Err` says what is wrong,
/// for the log line.
pub(super) fn check(auth: &ProxyAuth, headers: &mut Headers) -> Result<(), String> {
    let value = headers.get_str("proxy-authorization").map(str::to_owned);
    headers.remove("proxy-authorization");
    let value = value.ok_or("no Proxy-Authorization")?;
    let (scheme, token) = value.trim().split_once(' ').ok_or("a malformed Proxy-Authorization")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!("Proxy-Authorization scheme {scheme:?}, not Basic"));
    }
    let decoded = decode_base64(token.trim()).ok_or("Proxy-Authorization that is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Proxy-Authorization that is not UTF-8")?;
    let (user, password) = decoded.split_once(':').ok_or("Proxy-Authorization without a colon")?;
    if auth.check(user, password) {
        Ok(())
    } else {
        Err(format!("wrong username or password (user {user:?})"))
    }
}

/// The `407` that asks for credentials.
pub(super) fn required(auth: &ProxyAuth) -> Response {
    let mut response = Response::error(407, "the proxy needs a username and password (Proxy-Authorization: Basic)");
    let realm = auth.realm.replace(['"', '\\'], "");
    response.headers.append("proxy-authenticate", format!("Basic realm=\"{realm}\""));
    response
}

/// Standard base64 with padding, as Basic credentials are written; `None` if it is not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, chunk) in text.chunks(4).enumerate() {
        let last = i == text.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> Headers {
        let mut headers = Headers::new();
        headers.append("proxy-authorization", value.to_owned());
        headers
    }

    #[test]
    fn basic_credentials() {
        let auth = ProxyAuth::single("alice", "s3:cret");
        // "alice:s3:cret": the password may hold colons.
        let mut ok = headers("Basic YWxpY2U6czM6Y3JldA==");
        assert_eq!(check(&auth, &mut ok), Ok(()));
        assert!(!ok.contains("proxy-authorization"), "the credentials stay here");
        for (value, why) in [
            ("Basic YWxpY2U6d3Jvbmc=", "wrong username or password (user \"alice\")"),
            ("Bearer abc", "Proxy-Authorization scheme \"Bearer\", not Basic"),
            ("Basic !!!!", "Proxy-Authorization that is not base64"),
            ("Basic YWxpY2U=", "Proxy-Authorization without a colon"),
        ] {
            assert_eq!(check(&auth, &mut headers(value)), Err(why.to_owned()), "{value}");
        }
        assert_eq!(check(&auth, &mut Headers::new()), Err("no Proxy-Authorization".to_owned()));
    }

    #[test]
    fn base64_decodes_with_padding() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        assert!(decode_base64("YQ=").is_none() && decode_base64("YQ==YWJj").is_none());
    }

    #[test]
    fn the_407_names_the_realm() {
        let response = required(&ProxyAuth::single("a", "b"));
        assert_eq!(response.status, 407);
        assert_eq!(response.headers.get_str("proxy-authenticate"), Some("Basic realm=\"sansproxy\""));
    }
}
