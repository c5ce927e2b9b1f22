//! Bearer-token authentication for the management API.
//!
//! Invariants:
//! - The token comes from `api_auth` or is read once, at start-up, from
//!   `api_auth_file` (trailing whitespace and newline trimmed; an empty or
//!   unreadable file aborts start-up rather than leaving the API open). It
//!   must be a regular file, opened without blocking: a FIFO or a device
//!   is refused, never waited on.
//! - A token no request could match (not UTF-8, leading whitespace, a
//!   control character: `config::check_token`) aborts start-up too, and
//!   no message ever shows the token.
//! - The comparison takes time that depends only on the length of what the
//!   client sent, never on how much of it matches the secret, nor on the
//!   secret's length.
//! - Every route except health and readiness requires the token when one
//!   is configured (`routes` decides which; this module only checks).

use std::path::Path;

use crate::config::Api;

/// The configured secret.
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

impl Token {
    /// The token `api` configures, if any.
    pub fn load(api: &Api) -> Result<Option<Token>, String> {
        if let Some(t) = &api.auth {
            return Ok(Some(Token(t.as_bytes().to_vec())));
        }
        match &api.auth_file {
            Some(path) => {
                read_file(path, "global.api_auth_file").map(|t| Some(Token(t.into_bytes())))
            }
            None => Ok(None),
        }
    }

    /// Check an `Authorization` header value. The error says what was wrong
    /// without echoing anything.
    pub fn check(&self, header: Option<&str>) -> Result<(), &'static str> {
        let Some(value) = header else {
            return Err("missing bearer token (send Authorization: Bearer <token>)");
        };
        let Some(given) = strip_bearer(value) else {
            return Err("the Authorization header is not a bearer token");
        };
        if constant_time_eq(given.as_bytes(), &self.0) {
            Ok(())
        } else {
            Err("invalid bearer token")
        }
    }
}

/// The token in file `path` (`key` names where it was given in errors):
/// `api_auth_file`, and `ctl --token-file`.
pub fn read_file(path: &Path, key: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("{key}: unable to read {}", path.display());
    // O_NONBLOCK: a FIFO with no writer (or a device) would otherwise hang
    // start-up where SIGTERM cannot end it; only a regular file is read.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .and_then(|f| match f.metadata()?.is_file() {
            true => Ok(f),
            false => Err(std::io::Error::other(
                "not a regular file; expected a file holding the token",
            )),
        })
        .map_err(|e| format!("{}: {e}", what()))?;
    let mut raw = Vec::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{}: {e}", what()))?;
    if raw.len() as u64 > MAX_TOKEN_FILE {
        return Err(format!(
            "{}: larger than {} KiB; expected a token",
            what(),
            MAX_TOKEN_FILE / 1024
        ));
    }
    while raw.last().is_some_and(u8::is_ascii_whitespace) {
        raw.pop();
    }
    if raw.is_empty() {
        return Err(format!(
            "{key}: {} is empty; expected a token",
            path.display()
        ));
    }
    // A request head is UTF-8 text: other bytes could never match.
    let text = String::from_utf8(raw).map_err(|_| {
        format!(
            "{key}: {}: the token is not UTF-8 text, which no request can send",
            path.display()
        )
    })?;
    crate::config::check_token(&text).map_err(|e| format!("{key}: {}: {e}", path.display()))?;
    Ok(text)
}

/// `Bearer <token>` (scheme case-insensitive, RFC 9110).
fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches(' '))
}

/// Compare without an early exit. The loop runs over `given` (the client's
/// bytes) only, cycling over `secret`, so its duration reveals neither the
/// secret nor its length; the length difference is folded into the result.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut diff = u8::from(given.len() != secret.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ secret[i % secret.len()];
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(auth: Option<&str>, file: Option<&Path>) -> Api {
        Api {
            enabled: true,
            port: 0,
            listen: "127.0.0.1".into(),
            socket: None,
            auth: auth.map(str::to_string),
            auth_file: file.map(Path::to_path_buf),
            insecure: false,
            max_request_body: 1024,
            rate_limit: 0,
            rate_burst: 1,
        }
    }

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secretsecret", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"", b""));
    }

    #[test]
    fn checks_the_header() {
        let t = Token::load(&api(Some("s3cr3t"), None)).unwrap().unwrap();
        assert!(t.check(Some("Bearer s3cr3t")).is_ok());
        assert!(t.check(Some("bearer s3cr3t")).is_ok());
        assert!(t.check(None).unwrap_err().contains("missing"));
        assert!(t
            .check(Some("Basic s3cr3t"))
            .unwrap_err()
            .contains("not a bearer"));
        assert!(t
            .check(Some("Bearer nope"))
            .unwrap_err()
            .contains("invalid"));
        assert!(t.check(Some("s3cr3t")).is_err());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(Token::load(&api(None, None)).unwrap().is_none());
    }

    #[test]
    fn reads_the_token_file() {
        let dir = std::env::temp_dir().join(format!("sheepdog-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "from-file\n").unwrap();
        let t = Token::load(&api(None, Some(&f))).unwrap().unwrap();
        assert!(t.check(Some("Bearer from-file")).is_ok());
        std::fs::write(&f, " \n").unwrap();
        assert!(Token::load(&api(None, Some(&f)))
            .unwrap_err()
            .contains("is empty"));
        // Trailing whitespace is trimmed; what no request could send is an
        // error that does not show the token.
        std::fs::write(&f, "from-file \r\n\t\n").unwrap();
        let t = Token::load(&api(None, Some(&f))).unwrap().unwrap();
        assert!(t.check(Some("Bearer from-file")).is_ok());
        for (bad, needle) in [
            (&b" secret-x\n"[..], "leading or trailing whitespace"),
            (b"\tsecret-x", "leading or trailing whitespace"),
            (b"secret-x\x07y", "control character"),
            (b"secret-x\nsecond-line\n", "control character"),
            (b"secret-x\xff", "not UTF-8"),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = Token::load(&api(None, Some(&f))).unwrap_err();
            assert!(e.starts_with("global.api_auth_file: "), "{e}");
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(!e.contains("secret-x"), "{e}");
        }
        let missing = dir.join("missing");
        let e = Token::load(&api(None, Some(&missing))).unwrap_err();
        assert!(e.starts_with("global.api_auth_file: unable to read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
