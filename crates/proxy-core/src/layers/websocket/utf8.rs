//! UTF-8 checked piece by piece: a text message is judged as it streams through, failing at the
//! first byte that can never be part of valid UTF-8 (RFC 6455 section 8.1), however the
//! message is cut into frames and reads.

#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Check {
    /// The start of a character cut off at the end of the last piece.
    partial: [u8; 4],
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Check {
    /// Check the next piece.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        while self.len > 0 && !data.is_empty() {
            self.partial[self.len] = data[0];
            self.len += 1;
            data = &data[1..];
            match std::str::from_utf8(&self.partial[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) if self.len == 4 => return Err(InvalidUtf8),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.len = rest.len();
                Ok(())
            }
        }
    }

    /// Bytes at the end of what was fed that begin a character not yet complete.
    pub(crate) fn pending(&self) -> usize {
        self.len
    }

    /// The message ended: a character left unfinished is invalid.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.len > 0;
        self.len = 0;
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(data: &[u8]) -> Result<(), InvalidUtf8> {
        let whole = {
            let mut c = Utf8Check::default();
            c.feed(data).and_then(|()| c.finish())
        };
        for cut in 0..=data.len() {
            for cut2 in cut..=data.len() {
                let mut c = Utf8Check::default();
                let split = c
                    .feed(&data[..cut])
                    .and_then(|()| c.feed(&data[cut..cut2]))
                    .and_then(|()| c.feed(&data[cut2..]))
                    .and_then(|()| c.finish());
                assert_eq!(split, whole, "{data:?} cut at {cut}, {cut2}");
            }
        }
        whole
    }

    #[test]
    fn valid_text_in_any_pieces() {
        assert_eq!(check_split("héllo wörld €𝄞 ok".as_bytes()), Ok(()));
        assert_eq!(check_split(b""), Ok(()));
    }

    #[test]
    fn invalid_text_in_any_pieces() {
        for bad in [&b"\xff"[..], b"ab\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"ok\x80", b"\xe2\x82"] {
            assert_eq!(check_split(bad), Err(InvalidUtf8), "{bad:?}");
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // Autobahn 6.4: fail at the first byte that cannot start or continue a character,
        // without waiting for the message to end.
        let mut c = Utf8Check::default();
        assert_eq!(c.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90"), Err(InvalidUtf8));
        let mut c = Utf8Check::default();
        assert_eq!(c.feed(b"\xf4"), Ok(()));
        assert_eq!(c.feed(b"\x90"), Err(InvalidUtf8));
    }
}
