//! SOCKS5's messages (RFC 1928, and RFC 1929's username/password), parsed from the front of
//! a buffer and written out. Pure functions: nothing here knows connections or state. Each
//! parser says how many bytes its message took, or that more are needed (`Ok(None)`), or what
//! is wrong with it.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ids::ServerAddr;

pub(crate) const VERSION: u8 = 5;
/// RFC 1929's sub-negotiation version.
pub(crate) const AUTH_VERSION: u8 = 1;

/// Authentication methods (RFC 1928 section 3).
pub(crate) const NO_AUTH: u8 = 0x00;
pub(crate) const USER_PASS: u8 = 0x02;
pub(crate) const NO_ACCEPTABLE: u8 = 0xff;

/// The reply codes of RFC 1928 section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// What a client's greeting or request breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("SOCKS4 is not supported: this is a SOCKS5 proxy")]
    Socks4,
    #[error("this is a SOCKS5 proxy, and the client speaks HTTP")]
    Http,
    #[error("not SOCKS5: the first byte is {0:#04x}")]
    Version(u8),
    #[error("the greeting offers no authentication method")]
    NoMethods,
    #[error("username/password sub-negotiation version {0:#04x}, not 1")]
    AuthVersion(u8),
    #[error("request version {0:#04x}, not 5")]
    RequestVersion(u8),
    #[error("reserved byte {0:#04x}, not 0")]
    Reserved(u8),
    #[error("command {0} ({1}) is not supported: only CONNECT is")]
    Command(u8, &'static str),
    #[error("address type {0:#04x} is not supported")]
    AddressType(u8),
    #[error("the domain name is empty or not a host name")]
    Domain,
}

impl WireError {
    /// The reply a request that breaks this earns.
    pub(crate) fn reply(&self) -> Reply {
        match self {
            Self::Command(..) => Reply::CommandNotSupported,
            Self::AddressType(_) => Reply::AddressTypeNotSupported,
            _ => Reply::GeneralFailure,
        }
    }
}

type Parsed<T> = Result<Option<(T, usize)>, WireError>;

/// The greeting: the methods the client offers.
pub(crate) fn greeting(buf: &[u8]) -> Parsed<Vec<u8>> {
    let Some(&version) = buf.first() else { return Ok(None) };
    match version {
        VERSION => {}
        4 => return Err(WireError::Socks4),
        b'A'..=b'Z' => return Err(WireError::Http),
        other => return Err(WireError::Version(other)),
    }
    let Some(&n) = buf.get(1) else { return Ok(None) };
    if n == 0 {
        return Err(WireError::NoMethods);
    }
    let Some(methods) = buf.get(2..2 + n as usize) else { return Ok(None) };
    Ok(Some((methods.to_vec(), 2 + n as usize)))
}

/// RFC 1929's username and password.
pub(crate) fn credentials(buf: &[u8]) -> Parsed<(Vec<u8>, Vec<u8>)> {
    let Some(&version) = buf.first() else { return Ok(None) };
    if version != AUTH_VERSION {
        return Err(WireError::AuthVersion(version));
    }
    let Some(&ulen) = buf.get(1) else { return Ok(None) };
    let at = 2 + ulen as usize;
    let (Some(user), Some(&plen)) = (buf.get(2..at), buf.get(at)) else { return Ok(None) };
    let Some(pass) = buf.get(at + 1..at + 1 + plen as usize) else { return Ok(None) };
    Ok(Some(((user.to_vec(), pass.to_vec()), at + 1 + plen as usize)))
}

/// A CONNECT request's target.
pub(crate) fn request(buf: &[u8]) -> Parsed<ServerAddr> {
    let Some(&version) = buf.first() else { return Ok(None) };
    if version != VERSION {
        return Err(WireError::RequestVersion(version));
    }
    let (Some(&command), Some(&reserved), Some(&kind)) = (buf.get(1), buf.get(2), buf.get(3)) else { return Ok(None) };
    match command {
        1 => {}
        2 => return Err(WireError::Command(2, "BIND")),
        3 => return Err(WireError::Command(3, "UDP ASSOCIATE")),
        other => return Err(WireError::Command(other, "unknown")),
    }
    if reserved != 0 {
        return Err(WireError::Reserved(reserved));
    }
    let (host, at) = match kind {
        1 => {
            let Some(ip) = buf.get(4..8) else { return Ok(None) };
            (Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(), 8)
        }
        3 => {
            let Some(&len) = buf.get(4) else { return Ok(None) };
            let Some(name) = buf.get(5..5 + len as usize) else { return Ok(None) };
            (host_name(name).ok_or(WireError::Domain)?, 5 + len as usize)
        }
        4 => {
            let Some(ip) = buf.get(4..20) else { return Ok(None) };
            let octets: [u8; 16] = ip.try_into().map_err(|_| WireError::AddressType(4))?;
            (Ipv6Addr::from(octets).to_string(), 20)
        }
        other => return Err(WireError::AddressType(other)),
    };
    let Some(port) = buf.get(at..at + 2) else { return Ok(None) };
    Ok(Some((ServerAddr::new(host, u16::from_be_bytes([port[0], port[1]])), at + 2)))
}

/// A domain name as a host to connect to: letters, digits, `-`, `.` and `_` (which resolvers
/// take), lowercased; or an IP address written out.
fn host_name(name: &[u8]) -> Option<String> {
    let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
    if name.is_empty() || !name.iter().all(ok) {
        return None;
    }
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// A reply to a request. The bound address is all zeros: the proxy's own address towards the
/// server is the driver's, and clients of CONNECT do not use it.
pub(crate) fn reply(code: Reply) -> [u8; 10] {
    [VERSION, code as u8, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_type() {
        let v4 = [5, 1, 0, 1, 10, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(request(&v4), Ok(Some((ServerAddr::new("10.0.0.1", 8080), 10))));
        let mut name = vec![5, 1, 0, 3, 9];
        name.extend_from_slice(b"Ex.AMPLE1");
        name.extend_from_slice(&[0, 80, 0xaa]);
        assert_eq!(request(&name), Ok(Some((ServerAddr::new("ex.ample1", 80), 16))));
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[1, 187]);
        assert_eq!(request(&v6), Ok(Some((ServerAddr::new("::1", 443), 22))));
    }

    #[test]
    fn every_prefix_asks_for_more() {
        let mut name = vec![5, 1, 0, 3, 4];
        name.extend_from_slice(b"a.io\x00\x50");
        for n in 0..name.len() {
            assert_eq!(request(&name[..n]), Ok(None), "{n} bytes");
        }
        let creds = [1, 2, b'u', b'1', 3, b'p', b'w', b'd'];
        for n in 0..creds.len() {
            assert_eq!(credentials(&creds[..n]), Ok(None), "{n} bytes");
        }
        assert_eq!(credentials(&creds), Ok(Some(((b"u1".to_vec(), b"pwd".to_vec()), 8))));
        assert_eq!(greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(greeting(&[5, 2, 0, 2]), Ok(Some((vec![0, 2], 4))));
    }

    #[test]
    fn what_each_malformed_message_earns() {
        assert_eq!(greeting(&[4, 1, 0, 80]), Err(WireError::Socks4));
        assert_eq!(greeting(b"GET / HTTP/1.1"), Err(WireError::Http));
        assert_eq!(greeting(&[6, 1, 0]), Err(WireError::Version(6)));
        assert_eq!(greeting(&[5, 0]), Err(WireError::NoMethods));
        assert_eq!(credentials(&[5, 1, b'u']), Err(WireError::AuthVersion(5)));
        let cases: [(&[u8], Reply); 6] = [
            (&[4, 1, 0, 1], Reply::GeneralFailure),
            (&[5, 2, 0, 1], Reply::CommandNotSupported),
            (&[5, 3, 0, 1], Reply::CommandNotSupported),
            (&[5, 9, 0, 1], Reply::CommandNotSupported),
            (&[5, 1, 0, 7], Reply::AddressTypeNotSupported),
            (&[5, 1, 0, 3, 0, 0, 80], Reply::GeneralFailure),
        ];
        for (bytes, code) in cases {
            assert_eq!(request(bytes).map_err(|e| e.reply()), Err(code), "{bytes:?}");
        }
        assert_eq!(request(&[5, 1, 1, 1]), Err(WireError::Reserved(1)));
        assert_eq!(request(b"\x05\x01\x00\x03\x03a/b\x00\x50"), Err(WireError::Domain));
    }
}
