//! HTTP/1.x text that sheepdog reads the same way wherever it reads it:
//! the token alphabet (the API server, the outgoing client), `%XX` escapes
//! (API paths, proxy credentials), the status line's code (`ctl`, the
//! outgoing client) and the CRLF blank line that ends a head (the API
//! server, `ctl`). Compiled with either `api` or `http`; what only `api`'s
//! side uses, with `api` alone. Pure: no I/O.
//!
//! Only what is really read alike lives here. The outgoing client
//! finds the end of a head with its own `head_end`, because it accepts
//! bare-LF line ends from servers (busybox httpd, `nc` scripts) that the
//! API server's stricter parser refuses.
//!
//! Invariants:
//! - Nothing here panics or fails on any input: bad escapes stay as they
//!   are, and a missing blank line is `None`.

/// RFC 9110 `tchar`: what a method or a header name is made of.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decode `%XX` escapes in one path segment. Invalid escapes stay as they
/// are; invalid UTF-8 is replaced.
#[cfg(feature = "api")]
pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

/// Decode `%XX` escapes into bytes, which need not be UTF-8 (a proxy
/// password is sent as the bytes it escapes). Invalid escapes stay as they
/// are.
pub fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make at most 255.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The code of an HTTP/1.x status line (`HTTP/1.0 404 Not Found`; the
/// reason may be missing). Three digits, 100 to 999: RFC 9110 §15 has a
/// client take 600-999 as a server error, which both callers do with any
/// status that is not 2xx, while `99` or `+200` is not HTTP. An `HTTP/2`
/// line never answers an HTTP/1.x request.
pub fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_ascii_whitespace();
    parts.next()?.strip_prefix("HTTP/1.")?;
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|&c| c >= 100)
}

/// Where the first CRLF CRLF starts: the end of a head whose lines all end
/// in CRLF.
#[cfg(feature = "api")]
pub fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_rfc_9110_tchars() {
        assert!(b"GET X-Api_Key.1!#$%&'*+^`|~"
            .iter()
            .filter(|&&b| b != b' ')
            .all(|&b| is_token_byte(b)));
        for b in *b" \t\r\n:;,()<>@[]{}\"/\\=?\x00\x7f\xff" {
            assert!(!is_token_byte(b), "{b:#x}");
        }
    }

    #[test]
    fn escapes_decode_to_bytes_and_bad_ones_stay() {
        assert_eq!(percent_decode_bytes("p%40ss%3A%25"), b"p@ss:%");
        assert_eq!(percent_decode_bytes("%e9t%C3%A9"), b"\xe9t\xc3\xa9");
        assert_eq!(percent_decode_bytes("a%zzb%4%"), b"a%zzb%4%");
        assert_eq!(percent_decode_bytes(""), b"");
    }

    /// The edges of both callers: the outgoing client (a line trimmed of
    /// its CR) and ctl (a line read with its CRLF).
    #[test]
    fn status_lines_are_http_1_with_three_digits() {
        for (line, code) in [
            ("HTTP/1.1 200 OK", 200),
            ("HTTP/1.0 404 Not Found\r\n", 404),
            ("HTTP/1.1 200", 200),
            ("HTTP/1.1 204\r\n", 204),
            ("HTTP/1.1 100 Continue", 100),
            ("HTTP/1.1 999 Mine", 999),
        ] {
            assert_eq!(status_code(line), Some(code), "{line:?}");
        }
        for line in [
            "HTTP/2 200",
            "HTTP/2.0 200 OK",
            "HTTP/1.1 abc OK",
            "HTTP/1.1 +200 OK",
            "HTTP/1.1 0200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.0 99 x",
            "HTTP/1.1 1000 x",
            "HTTP/1.1",
            "ICY 200 OK",
            "SSH-2.0-OpenSSH",
            "",
        ] {
            assert_eq!(status_code(line), None, "{line:?}");
        }
    }

    #[cfg(feature = "api")]
    #[test]
    fn the_blank_line_is_crlf_crlf_only() {
        assert_eq!(
            find_blank_line(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"),
            Some(20)
        );
        assert_eq!(find_blank_line(b"HTTP/1.0 200 OK\n\nbody"), None);
        assert_eq!(find_blank_line(b"\r\n\r"), None);
    }
}
