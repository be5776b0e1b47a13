//! The start line: a request's `method SP request-target SP HTTP-version` or a response's
//! `HTTP-version SP status-code [SP reason-phrase]`, and the versions we speak.

use super::super::{is_tchar, Http1Error};
use crate::flow::Version;

/// The start line of `head` without its line end, and where the field lines begin.
pub(super) fn start_line(head: &[u8]) -> (&[u8], usize) {
    match head.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line = &head[..lf];
            (line.strip_suffix(b"\r").unwrap_or(line), lf + 1)
        }
        None => (head, head.len()),
    }
}

/// `method SP request-target SP HTTP-version`, with single spaces.
pub(super) fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), Http1Error> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Http1Error::BadRequestLine);
    };
    let version = match parse_version(version) {
        VersionMatch::Supported(v) => v,
        VersionMatch::Unsupported => return Err(Http1Error::BadVersion),
        VersionMatch::Malformed => return Err(Http1Error::BadRequestLine),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Http1Error::BadRequestLine);
    }
    // No whitespace or controls; other octets are allowed if they are UTF-8 (the target is
    // kept as sent, so it cannot be decoded lossily).
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Http1Error::BadRequestLine);
    }
    let method = String::from_utf8(method.to_vec()).map_err(|_| Http1Error::BadRequestLine)?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| Http1Error::BadRequestLine)?;
    Ok((method, target, version))
}

/// `HTTP-version SP 3DIGIT [SP reason-phrase]`. A missing reason after the code is accepted
/// with or without its space, as servers send both.
pub(super) fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), Http1Error> {
    let sp = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let version = match parse_version(&line[..sp]) {
        VersionMatch::Supported(v) => v,
        VersionMatch::Unsupported => return Err(Http1Error::BadVersion),
        VersionMatch::Malformed => return Err(Http1Error::BadStatusLine),
    };
    let rest = line.get(sp + 1..).ok_or(Http1Error::BadStatusLine)?;
    let status = match rest {
        [a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(Http1Error::BadStatusLine),
    };
    if status < 100 {
        return Err(Http1Error::BadStatusLine);
    }
    let reason = match &rest[3..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(Http1Error::BadStatusLine),
    };
    if reason.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(Http1Error::BadStatusLine);
    }
    Ok((version, status, String::from_utf8_lossy(reason).into_owned()))
}

enum VersionMatch {
    Supported(Version),
    /// Shaped like `HTTP/2`, `HTTP/2.0` or `HTTP/1.2`.
    Unsupported,
    Malformed,
}

fn parse_version(v: &[u8]) -> VersionMatch {
    match v {
        b"HTTP/1.1" => VersionMatch::Supported(Version::Http11),
        b"HTTP/1.0" => VersionMatch::Supported(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', rest @ ..] => {
            let mut parts = rest.split(|&b| b == b'.');
            let number = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(major), minor, None) if number(major) && minor.into_iter().all(number) => {
                    VersionMatch::Unsupported
                }
                _ => VersionMatch::Malformed,
            }
        }
        _ => VersionMatch::Malformed,
    }
}
