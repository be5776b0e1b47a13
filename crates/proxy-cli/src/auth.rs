//! `--proxyauth`: one `USER:PASS`, or `@FILE`, an htpasswd file. Lines are `user:hash` with a
//! bcrypt hash (`$2y$`, `$2b$`, `$2a$`: `htpasswd -B`) or `{SHA}` and base64 of SHA-1
//! (`htpasswd -s`); blank lines and `#` comments are skipped. Other hash kinds (MD5 `$apr1$`,
//! crypt) are refused at startup, naming the line, rather than never matching.

use std::collections::HashMap;

use proxy_core::{constant_time_eq, ProxyAuth};

/// A user's stored password.
enum Hash {
    Bcrypt(String),
    /// SHA-1 of the password, base64.
    Sha1(String),
}

pub(crate) fn parse(arg: &str) -> Result<ProxyAuth, String> {
    let Some(path) = arg.strip_prefix('@') else {
        let (user, pass) = arg.split_once(':').ok_or("give USER:PASS or @FILE")?;
        if user.is_empty() {
            return Err("the user name is empty".into());
        }
        return Ok(ProxyAuth::single(user, pass));
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{path} line {}", n + 1);
        let (user, hash) = line.split_once(':').ok_or_else(|| format!("{}: not user:hash", at()))?;
        let hash = if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
            Hash::Bcrypt(hash.to_owned())
        } else if let Some(digest) = hash.strip_prefix("{SHA}") {
            Hash::Sha1(digest.to_owned())
        } else {
            return Err(format!("{}: user {user:?} has a hash sansproxy cannot check (use htpasswd -B or -s)", at()));
        };
        users.insert(user.to_owned(), hash);
    }
    if users.is_empty() {
        return Err(format!("{path} has no users"));
    }
    Ok(ProxyAuth::new(move |user, pass| match users.get(user) {
        Some(Hash::Bcrypt(hash)) => bcrypt::verify(pass, hash).unwrap_or(false),
        Some(Hash::Sha1(digest)) => constant_time_eq(sha1_base64(pass).as_bytes(), digest.as_bytes()),
        None => {
            // As long as a known user's check, so the time says nothing of who exists.
            let _ = bcrypt::verify(pass, DUMMY);
            false
        }
    }))
}

/// A bcrypt hash of nothing anyone types, checked for unknown users.
const DUMMY: &str = "$2b$10$abcdefghijklmnopqrstuu5m4uOQ8EzK/Q5dIUhwrxVjU8k3Kq0Z6";

fn sha1_base64(pass: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, pass.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user() {
        let auth = parse("alice:pa:ss").unwrap();
        assert!(auth.check("alice", "pa:ss"));
        assert!(!auth.check("alice", "pa") && !auth.check("bob", "pa:ss"));
        assert!(parse("nocolon").is_err() && parse(":x").is_err());
    }

    #[test]
    fn htpasswd_bcrypt_and_sha() {
        let dir = std::env::temp_dir().join(format!("sansproxy-htpasswd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        let bcrypt = bcrypt::hash("b-pass", 4).unwrap();
        // htpasswd -s: {SHA} and base64 of SHA-1("s-pass").
        let sha = format!("{{SHA}}{}", sha1_base64("s-pass"));
        std::fs::write(&file, format!("# users\nbob:{bcrypt}\n\ncarol:{sha}\n")).unwrap();
        let auth = parse(&format!("@{}", file.display())).unwrap();
        assert!(auth.check("bob", "b-pass") && auth.check("carol", "s-pass"));
        assert!(!auth.check("bob", "s-pass") && !auth.check("carol", "b-pass") && !auth.check("dave", "x"));
        std::fs::write(&file, "eve:$apr1$xyz$abc\n").unwrap();
        let error = parse(&format!("@{}", file.display())).err().unwrap();
        assert!(error.contains("line 1") && error.contains("htpasswd -B"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sha1_matches_htpasswd() {
        // `htpasswd -nbs user password`
        assert_eq!(sha1_base64("password"), "W6ph5Mm5Pz8GgiULbPgzG37mj9g=");
    }
}
