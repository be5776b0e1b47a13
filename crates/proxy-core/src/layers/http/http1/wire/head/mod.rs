//! Reading message heads: the start line and the field section.

mod fields;
mod start_line;

use bytes::{Buf, Bytes, BytesMut};

use super::{Http1Error, Limits, RequestHead, ResponseHead};
pub(super) use fields::parse_fields;
use start_line::{parse_request_line, parse_status_line, start_line};

/// Reads message heads out of a receive buffer, remembering how far it has already scanned.
///
/// Between calls that return `Ok(None)` the caller may only append to the buffer: the search
/// for the end of the head resumes where the previous one stopped, so a head fed in `n` pieces
/// costs `O(len + n)` rather than `O(len²)`.
#[derive(Debug, Default)]
pub struct HeadReader {
    /// How much of the buffer is known to hold no complete head.
    scanned: usize,
    /// Bytes examined by the search, for the test proving it linear.
    #[cfg(test)]
    work: usize,
}

impl HeadReader {
    /// A reader that has scanned nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// If `buf` holds a complete request head, split it off `buf` and parse it. `Ok(None)` means
    /// more bytes are needed. Errors when the head is malformed or larger than the limit.
    ///
    /// Empty lines before the request line are dropped from `buf`. After an error the head is
    /// gone from `buf` (or, for [`Http1Error::HeadTooLarge`], left in it).
    pub fn read_request(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, Http1Error> {
        let Some(head) = self.split_head(buf, limits)? else {
            return Ok(None);
        };
        let (line, fields_at) = start_line(&head);
        let (method, target, version) = parse_request_line(line)?;
        let headers = parse_fields(&head, fields_at, limits)?;
        Ok(Some(RequestHead { method, target, version, headers }))
    }

    /// As [`read_request`](Self::read_request), for a response head. The reason phrase may hold
    /// any octets but controls; it is decoded as lossy UTF-8.
    pub fn read_response(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<ResponseHead>, Http1Error> {
        let Some(head) = self.split_head(buf, limits)? else {
            return Ok(None);
        };
        let (line, fields_at) = start_line(&head);
        let (version, status, reason) = parse_status_line(line)?;
        let headers = parse_fields(&head, fields_at, limits)?;
        Ok(Some(ResponseHead { version, status, reason, headers }))
    }

    /// Drop leading empty lines, then split off the head if its final empty line has arrived.
    fn split_head(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<Bytes>, Http1Error> {
        let skip = leading_empty_lines(buf);
        if skip > 0 {
            buf.advance(skip);
            self.scanned = self.scanned.saturating_sub(skip);
        }

        // A head ending beyond the limit is too large anyway: never search past it.
        let end = buf.len().min(limits.max_head_bytes);
        // The empty line is at most 3 bytes (`\n\r\n`): it may straddle the previous end.
        let from = self.scanned.saturating_sub(3).min(end);
        #[cfg(test)]
        {
            self.work += end - from;
        }

        match find_empty_line(&buf[..end], from) {
            Some(len) => {
                self.scanned = 0;
                Ok(Some(buf.split_to(len).freeze()))
            }
            None if buf.len() > limits.max_head_bytes => {
                self.scanned = 0;
                Err(Http1Error::HeadTooLarge { limit: limits.max_head_bytes })
            }
            None => {
                self.scanned = end;
                Ok(None)
            }
        }
    }
}

/// Length of the empty lines (CRLF or LF) at the start of `buf`.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match buf.get(at..) {
            Some([b'\n', ..]) => at += 1,
            Some([b'\r', b'\n', ..]) => at += 2,
            _ => return at,
        }
    }
}

/// The length of the head in `buf`, up to and including its first empty line (`LF LF` or
/// `LF CR LF`), searching from `from` on.
fn find_empty_line(buf: &[u8], from: usize) -> Option<usize> {
    for i in memchr::memchr_iter(b'\n', buf.get(from..)?) {
        let lf = from + i;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
