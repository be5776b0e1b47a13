//! An ordered, case-preserving header list.

use std::sync::Arc;

use bytes::Bytes;

/// HTTP header fields in the order they arrived, with the case the peer used.
///
/// Lookups ignore ASCII case. Values are raw bytes (`obs-text` is legal in HTTP/1); the
/// `*_str` accessors give up on values that are not UTF-8.
///
/// A copy shares the fields until one of the two changes them (a flow keeps the head it
/// passes on, and hooks get copies of flows): cloning costs one reference count, not one per
/// name and value.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// `None` while empty, so that an empty list (and `mem::take`) allocates nothing.
    fields: Option<Arc<Vec<(Bytes, Bytes)>>>,
    /// Every field may go on over HTTP/2 as it is: see [`is_h2_ready`](Self::is_h2_ready).
    h2_ready: bool,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.fields() == other.fields()
    }
}

impl Eq for Headers {}

impl Headers {
    /// No fields; allocates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// No fields yet, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: (n > 0).then(|| Arc::new(Vec::with_capacity(n))),
            h2_ready: false,
        }
    }

    /// Headers of these fields, in this order.
    pub(crate) fn from_fields(fields: Vec<(Bytes, Bytes)>) -> Self {
        Self {
            fields: (!fields.is_empty()).then(|| Arc::new(fields)),
            h2_ready: false,
        }
    }

    /// Whether every field may go on over HTTP/2 as it is, without a look at each: the
    /// HTTP/2 decoder said so of the fields it checked ([`mark_h2_ready`](Self::mark_h2_ready)),
    /// and nothing was added or changed since. Fields removed leave the rest as they were.
    pub(crate) fn is_h2_ready(&self) -> bool {
        self.h2_ready
    }

    /// Say that every field is one HTTP/2 carries as it is: a lowercase token for a name, no
    /// control byte but HTAB in the value, nothing about one connection alone (RFC 9113
    /// section 8.2.2), and no `host` (`:authority` stands for it).
    pub(crate) fn mark_h2_ready(&mut self) {
        self.h2_ready = true;
    }

    /// Whether `self` and `other` share their fields (one is a clone of the other, and
    /// neither changed since): then they are equal without a look at them. Empty lists share
    /// nothing.
    pub(crate) fn shares(&self, other: &Self) -> bool {
        matches!((&self.fields, &other.fields), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    fn fields(&self) -> &[(Bytes, Bytes)] {
        self.fields.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The fields to change, no longer known to be HTTP/2-ready: copied first if a clone
    /// shares them.
    fn fields_mut(&mut self) -> &mut Vec<(Bytes, Bytes)> {
        self.h2_ready = false;
        Arc::make_mut(self.fields.get_or_insert_with(Default::default))
    }

    /// How many fields, counting each repeated name once per field.
    pub fn len(&self) -> usize {
        self.fields().len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }

    /// All fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields().iter().map(|(n, v)| (&n[..], &v[..]))
    }

    /// All fields as they are kept: a copy of a name or a value costs no allocation.
    pub(crate) fn iter_shared(&self) -> impl Iterator<Item = &(Bytes, Bytes)> {
        self.fields().iter()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_shared(name).map(|v| &v[..])
    }

    /// The first value of `name` as it is kept: a copy costs no allocation.
    pub(crate) fn get_shared(&self, name: &str) -> Option<&Bytes> {
        self.fields()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` as it is kept, in order.
    pub(crate) fn get_all_shared<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.fields()
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all_shared(name).map(|v| &v[..])
    }

    /// Whether some field is named `name` (in any case).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether a comma-separated list header (`Connection`, `Transfer-Encoding`) holds `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Add a field at the end, keeping any others of the same name.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.fields_mut().push((name.into(), value.into()));
    }

    /// Replace every field named `name` by one field (in the place of the first), or append it.
    pub fn insert(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = value.into();
        let fields = self.fields_mut();
        match fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                // Keep the spelling the peer used for the name.
                fields[i].1 = value;
                let mut j = i + 1;
                while j < fields.len() {
                    if fields[j].0.eq_ignore_ascii_case(&name) {
                        fields.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => fields.push((name, value)),
        }
    }

    /// Remove every field named `name`; true if there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        if !self.contains(name) {
            return false;
        }
        self.fields_mut()
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
        true
    }

    /// Keep the fields for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let Some(fields) = &mut self.fields else {
            return;
        };
        if let Some(fields) = Arc::get_mut(fields) {
            fields.retain(|(n, v)| keep(n, v));
            return;
        }
        // Shared: copied only if a field goes, and `keep` still asked once per field.
        let Some(first) = fields.iter().position(|(n, v)| !keep(n, v)) else {
            return;
        };
        let mut kept = fields[..first].to_vec();
        kept.extend(
            fields[first + 1..]
                .iter()
                .filter(|(n, v)| keep(n, v))
                .cloned(),
        );
        self.fields = Some(Arc::new(kept));
    }
}

/// What becomes of request fields whose names hold an underscore (`X_User`). CGI, WSGI and
/// PHP pass fields to applications as `HTTP_X_USER`, so `X_User` and `X-User` reach them as
/// the same variable: a client can shadow a field the proxy or a front end vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Forward them untouched, as mitmproxy and HAProxy do.
    #[default]
    Keep,
    /// Drop them from the request, as nginx does by default (`underscores_in_headers off`).
    Drop,
    /// Answer the request 400.
    Reject,
}

/// A request field refused by its name's underscores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnderscoreError {
    /// `Transfer_Encoding`, `content_length`: another framing for a backend that reads `_`
    /// as `-`, whatever the policy.
    #[error("header field {name} reads as {framing} where underscores count as dashes")]
    FramingLookalike { name: String, framing: &'static str },
    #[error("header field {name} has an underscore in its name")]
    Underscore { name: String },
}

/// The field names that frame a request body.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

impl Headers {
    /// Apply `policy` to the request fields whose names hold `_`. A name that reads as a
    /// framing field once `_` is read as `-` is refused under every policy: its backend may
    /// frame the body differently from us (gunicorn did, CVE-2024-1135).
    pub(crate) fn screen_underscores(&mut self, policy: UnderscoreHeaders) -> Result<(), UnderscoreError> {
        for (name, _) in self.iter().filter(|(name, _)| name.contains(&b'_')) {
            let framing = FRAMING.iter().find(|f| {
                f.len() == name.len() && f.bytes().zip(name).all(|(f, &n)| f == n.to_ascii_lowercase() || f == b'-' && n == b'_')
            });
            let name = String::from_utf8_lossy(name).into_owned();
            if let Some(framing) = framing {
                return Err(UnderscoreError::FramingLookalike { name, framing });
            }
            if policy == UnderscoreHeaders::Reject {
                return Err(UnderscoreError::Underscore { name });
            }
        }
        if policy == UnderscoreHeaders::Drop {
            self.retain(|name, _| !name.contains(&b'_'));
        }
        Ok(())
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self::from_fields(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_order() {
        let mut h: Headers = [("Host", "a"), ("X-A", "1"), ("x-a", "2")].into_iter().collect();
        assert_eq!(h.get("HOST"), Some(&b"a"[..]));
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![&b"1"[..], &b"2"[..]]);
        // The replaced field keeps the spelling the peer used.
        h.insert("X-a", "3");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(&b"Host"[..], &b"a"[..]), (&b"X-A"[..], &b"3"[..])]);
        assert!(h.remove("host"));
        assert!(!h.contains("Host"));
    }

    #[test]
    fn underscores() {
        let fields = || -> Headers { [("Host", "a"), ("X_User", "u"), ("X-User", "v")].into_iter().collect() };
        let mut kept = fields();
        assert_eq!(kept.screen_underscores(UnderscoreHeaders::Keep), Ok(()));
        assert_eq!(kept, fields());
        let mut dropped = fields();
        assert_eq!(dropped.screen_underscores(UnderscoreHeaders::Drop), Ok(()));
        assert_eq!(dropped.iter().map(|(n, _)| n).collect::<Vec<_>>(), vec![&b"Host"[..], b"X-User"]);
        let error = UnderscoreError::Underscore { name: "X_User".into() };
        assert_eq!(fields().screen_underscores(UnderscoreHeaders::Reject), Err(error));
        for name in ["Transfer_Encoding", "content_length", "CONTENT_length", "Transfer-encoding_"] {
            let mut h: Headers = [(name, "chunked")].into_iter().collect();
            let result = h.screen_underscores(UnderscoreHeaders::Keep);
            assert_eq!(result.is_err(), name != "Transfer-encoding_", "{name}");
        }
        // Names that only look like framing fields to a reader that decodes them some other
        // way are not ours to guess.
        let mut h: Headers = [("Transfer-%45ncoding", "chunked")].into_iter().collect();
        assert_eq!(h.screen_underscores(UnderscoreHeaders::Reject), Ok(()));
    }

    #[test]
    fn token_lists() {
        let h: Headers = [("Connection", "keep-alive, Upgrade")].into_iter().collect();
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
    }
}
