//! HTTP/1.x messages: parsing a request head from bytes and serialising a
//! response. Pure: no I/O, no clock, so every malformed input is a unit test.
//!
//! Invariants:
//! - Parsing never panics and never allocates beyond the bytes it is given;
//!   a head larger than `MAX_HEAD` or with more than `MAX_HEADERS` fields is
//!   rejected (431) before it is complete, so a client cannot grow our memory
//!   by never finishing its head.
//! - Request smuggling shapes are refused: `Transfer-Encoding` (chunked
//!   bodies are not supported: 411), conflicting `Content-Length`s, header
//!   lines without a colon, obsolete line folding, control characters.
//! - Every response is `Connection: close` with an exact `Content-Length`:
//!   one request per connection keeps the server's state machine small.

use std::net::IpAddr;

use crate::config::quote;
/// Path segments and query parameters are decoded with the shared decoder.
pub use crate::http_text::percent_decode;
use crate::http_text::{find_blank_line, is_token_byte};

/// Longest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields accepted.
pub const MAX_HEADERS: usize = 64;

/// Who sent a request: the TCP peer address (never a forwarded header), or
/// the local unix socket with the client's uid and pid (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Ip(IpAddr),
    Unix(u32, i32),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Ip(ip) => write!(f, "{ip}"),
            Peer::Unix(uid, pid) => write!(f, "unix socket (uid {uid}, pid {pid})"),
        }
    }
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, percent-encoded as received, without the query.
    pub path: String,
    /// Everything after `?` (empty if none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: Peer,
    /// HTTP/1.1 (chunked responses allowed); false for HTTP/1.0.
    pub http11: bool,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub content_length: u64,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    pub http11: bool,
}

impl Head {
    pub fn into_request(self, body: Vec<u8>, peer: Peer) -> Request {
        Request {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body,
            peer,
            http11: self.http11,
        }
    }
}

/// What the bytes so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is not complete yet.
    Partial,
    Head(Head),
    /// The request is unacceptable: answer this and close.
    Reject(Response),
}

/// Parse the head at the start of `buf`, whose first `known` bytes an
/// earlier call found `Partial`: they hold no blank line and no bare LF,
/// so only what came since is scanned. (A client sending its head a byte
/// at a time would otherwise cost the I/O thread time quadratic in it.)
pub fn parse_head(buf: &[u8], known: usize) -> Parse {
    // The blank line may have begun in the last 3 known bytes.
    let from = known.saturating_sub(3);
    let Some(end) = find_blank_line(&buf[from..]).map(|e| from + e) else {
        if buf.len() > MAX_HEAD {
            return Parse::Reject(Response::error(
                431,
                &format!("request head is larger than {} KiB", MAX_HEAD / 1024),
            ));
        }
        // A line ended by a bare LF (`printf 'GET / HTTP/1.0\n\n' | nc`)
        // never makes the CRLF blank line: say so now, not 408 in 10 s.
        if buf
            .iter()
            .enumerate()
            .skip(known)
            .any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
        {
            return Parse::Reject(bad(
                "a line of the request head ends in a bare LF; expected CRLF (\\r\\n) line endings",
            ));
        }
        return Parse::Partial;
    };
    let len = end + 4;
    if len > MAX_HEAD {
        return Parse::Reject(Response::error(
            431,
            &format!("request head is larger than {} KiB", MAX_HEAD / 1024),
        ));
    }
    match head_fields(&buf[..end]) {
        Ok(mut head) => {
            head.len = len;
            Parse::Head(head)
        }
        Err(resp) => Parse::Reject(resp),
    }
}

fn bad(msg: &str) -> Response {
    Response::error(400, msg)
}

fn head_fields(raw: &[u8]) -> Result<Head, Response> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("request head is not valid UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    // Each error quotes what it could not read (shortened), and says what
    // was expected.
    let malformed = |what: &str, got: &str, expected: &str| {
        bad(&format!(
            "malformed {what} {}; expected {expected}",
            quote(got)
        ))
    };
    let request_line = || {
        malformed(
            "request line",
            line,
            "METHOD PATH HTTP/1.1, one space apart, PATH starting with /",
        )
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(request_line());
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(request_line());
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(Response::error(
            505,
            &format!("unsupported protocol {version:?}; expected HTTP/1.1 or HTTP/1.0"),
        ));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(request_line());
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(Response::error(
                431,
                &format!("more than {MAX_HEADERS} header fields"),
            ));
        }
        // No colon, a bad name, a control character in the value, a line
        // folded onto the one before (obsolete, and a smuggling shape).
        let header_line = || {
            malformed(
                "header line",
                line,
                "Name: value, the name a token, the value without control characters",
            )
        };
        let Some((name, value)) = line.split_once(':') else {
            return Err(header_line());
        };
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name.bytes().all(is_token_byte)
            || value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f)
        {
            return Err(header_line());
        }
        headers.push((name.to_string(), value.to_string()));
    }
    if header(&headers, "transfer-encoding").is_some() {
        return Err(Response::error(
            411,
            "Transfer-Encoding request bodies are not supported; send Content-Length",
        ));
    }
    let mut content_length: Option<u64> = None;
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        // Plain digits that fit, the same in every Content-Length given.
        let n = v
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .filter(|n| content_length.is_none_or(|c| c == *n))
            .ok_or_else(|| {
                malformed(
                    "header Content-Length:",
                    v,
                    "one number of bytes (in every Content-Length)",
                )
            })?;
        content_length = Some(n);
    }
    let expect_continue = match header(&headers, "expect") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(v) => {
            return Err(Response::error(
                417,
                &format!("header Expect: unsupported value {v:?}"),
            ))
        }
    };
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        len: 0,
        content_length: content_length.unwrap_or(0),
        expect_continue,
        http11: version == "HTTP/1.1",
    })
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The body is written afterwards by `Handler::stream` (chunked for
    /// HTTP/1.1, until close for HTTP/1.0); `body` is then empty.
    pub streaming: bool,
}

pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body,
            streaming: false,
        }
    }

    /// `{"error": msg}`.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": msg }))
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            streaming: false,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// A response whose body the handler streams (`Handler::stream`).
    pub fn stream(content_type: &'static str) -> Response {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: Vec::new(),
            streaming: true,
        }
    }

    /// The bytes on the wire; without the body for HEAD. A streaming
    /// response gets only its head here: chunked when `chunked`, else
    /// delimited by the connection closing.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        self.bytes(head_only, true)
    }

    pub fn bytes(&self, head_only: bool, chunked: bool) -> Vec<u8> {
        // HTTP/1.0 streams have no length header: the body ends at close.
        let length = match (self.streaming, chunked) {
            (false, _) => format!("Content-Length: {}\r\n", self.body.len()),
            (true, true) => "Transfer-Encoding: chunked\r\n".to_string(),
            (true, false) => String::new(),
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{length}Connection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
        );
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            // Header values are ours; keep them on one line regardless.
            out.extend(v.chars().filter(|c| !c.is_control()));
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Chunked transfer encoding over a writer: each `write` is one chunk.
pub struct Chunked<'a, W: std::io::Write>(pub &'a mut W);

impl<W: std::io::Write> Chunked<'_, W> {
    /// The terminating zero-length chunk.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.0.write_all(b"0\r\n\r\n")?;
        self.0.flush()
    }
}

impl<W: std::io::Write> std::io::Write for Chunked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0
            .write_all(format!("{:x}\r\n", buf.len()).as_bytes())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        self.0.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A query's `name=value` pairs, percent-decoded (clients encode query
/// values; `%31` is `1`). A bare `name` has no value: `None`.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), Some(percent_decode(v))),
            None => (percent_decode(p), None),
        })
}

/// A boolean query parameter, the same for every one: a bare name is true.
pub fn query_bool(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(format!(
            "{name}: invalid value {v:?}; expected true, false, 1, 0, yes or no"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Head {
        match parse_head(s.as_bytes(), 0) {
            Parse::Head(h) => h,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn reject(s: &str) -> (u16, String) {
        match parse_head(s.as_bytes(), 0) {
            Parse::Reject(r) => (r.status, String::from_utf8(r.body).unwrap()),
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_request() {
        let h = head("POST /api/v1/x?limit=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Y:  z \r\n\r\nbody");
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/api/v1/x");
        assert_eq!(h.query, "limit=3");
        assert_eq!(h.content_length, 12);
        assert_eq!(
            h.len,
            "POST /api/v1/x?limit=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Y:  z \r\n\r\n"
                .len()
        );
        let r = h.into_request(Vec::new(), Peer::Unix(0, 1));
        assert_eq!(r.header("x-y"), Some("z"));
        assert_eq!(r.header("missing"), None);
    }

    /// Fed as the I/O thread feeds it, a byte (or a few) at a time, a call
    /// that scans only the new bytes answers as one that rescans them all.
    #[test]
    fn a_head_read_in_pieces_is_scanned_only_once() {
        for text in [
            "GET /a HTTP/1.1\r\nHost: x\r\nX: y\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        ] {
            for step in [1, 2, 3, 5] {
                let mut buf = Vec::new();
                let mut ended = false;
                for piece in text.as_bytes().chunks(step) {
                    let known = buf.len();
                    buf.extend_from_slice(piece);
                    let got = parse_head(&buf, known);
                    assert_eq!(got, parse_head(&buf, 0), "{text:?} in pieces of {step}");
                    if got != Parse::Partial {
                        ended = true;
                        break;
                    }
                }
                assert!(ended, "{text:?} in pieces of {step}");
            }
        }
    }

    #[test]
    fn partial_until_the_blank_line() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 0),
            Parse::Partial
        );
        assert_eq!(parse_head(b"", 0), Parse::Partial);
    }

    #[test]
    fn oversized_heads_are_refused_before_they_end() {
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(reject(&big).0, 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(reject(&format!("GET / HTTP/1.1\r\n{many}\r\n")).0, 431);
    }

    #[test]
    fn malformed_heads_are_400_with_a_reason() {
        for (req, needle) in [
            // What could not be read is quoted, with what was expected.
            (
                "GET /\r\n\r\n",
                "malformed request line \\\"GET /\\\"; expected METHOD PATH HTTP/1.1",
            ),
            (
                "GET  / HTTP/1.1\r\n\r\n",
                "request line \\\"GET  / HTTP/1.1\\\"",
            ),
            (
                "G(T / HTTP/1.1\r\n\r\n",
                "request line \\\"G(T / HTTP/1.1\\\"",
            ),
            ("GET x HTTP/1.1\r\n\r\n", "PATH starting with /"),
            (
                "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                "malformed header line \\\"NoColon\\\"; expected Name: value",
            ),
            (
                "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                "header line \\\" folded\\\"",
            ),
            (
                "GET / HTTP/1.1\r\nA: b\u{1}c\r\n\r\n",
                "header line \\\"A: b\\\\u{1}c\\\"; expected Name: value",
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "Content-Length: \\\"2\\\"; expected one number of bytes (in every Content-Length)",
            ),
            (
                "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "Content-Length: \\\"99999999999999999999999\\\"",
            ),
            (
                "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                "header line \\\"Bad Name: x\\\"",
            ),
            // Bare LFs never make the CRLF blank line: refused at once,
            // not answered 408 after 10 s.
            ("GET / HTTP/1.0\n\n", "bare LF"),
            ("GET / HTTP/1.1\r\nHost: a\n", "bare LF"),
            ("\n", "bare LF"),
        ] {
            let (status, body) = reject(req);
            assert_eq!(status, 400, "{req:?}");
            assert!(body.contains(needle), "{req:?}: {body}");
            assert!(body.starts_with("{\"error\":"), "{body}");
        }
        assert_eq!(reject("GET / HTTP/2.0\r\n\r\n").0, 505);
        assert_eq!(
            reject("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").0,
            411
        );
        assert_eq!(reject("POST / HTTP/1.1\r\nExpect: magic\r\n\r\n").0, 417);
    }

    #[test]
    fn non_utf8_and_control_bytes_are_refused() {
        match parse_head(b"GET /\xff HTTP/1.1\r\n\r\n", 0) {
            Parse::Reject(r) => assert_eq!(r.status, 400),
            other => panic!("{other:?}"),
        }
        assert_eq!(reject("GET / HTTP/1.1\r\nA: b\u{1}c\r\n\r\n").0, 400);
    }

    #[test]
    fn expect_continue_is_noted() {
        assert!(
            head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn query_pairs_are_decoded_and_booleans_read_alike() {
        let pairs: Vec<_> = query_pairs("limit=%31&wa%69t&&x=a%26b").collect();
        assert_eq!(
            pairs,
            [
                ("limit".into(), Some("1".into())),
                ("wait".into(), None),
                ("x".into(), Some("a&b".into()))
            ]
        );
        for (v, b) in [(None, true), (Some("yes"), true), (Some("0"), false)] {
            assert_eq!(query_bool("follow", v), Ok(b));
        }
        let e = query_bool("wait", Some("")).unwrap_err();
        assert!(
            e.starts_with("wait: invalid value \"\"; expected true, false"),
            "{e}"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("web%2D1"), "web-1");
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    /// Every status the API sends (docs/api.md) has its RFC 9110 phrase:
    /// a failed reload's 422 went out as `HTTP/1.1 422 Unknown`.
    #[test]
    fn every_status_sent_has_its_reason_phrase() {
        for status in [
            100, 200, 202, 400, 401, 403, 404, 405, 408, 409, 411, 413, 417, 422, 429, 431, 503,
            505,
        ] {
            assert_ne!(reason(status), "Unknown", "{status}");
        }
        assert_eq!(reason(422), "Unprocessable Content");
    }

    #[test]
    fn responses_serialise_with_length_and_close() {
        let r = Response::error(404, "no process named \"x\"").with_header("Allow", "GET\r\nX: y");
        let s = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
        assert!(s.contains("Content-Type: application/json\r\n"), "{s}");
        assert!(s.contains("Connection: close\r\n"), "{s}");
        assert!(s.contains("Allow: GETX: y\r\n"), "{s}");
        let body = "{\"error\":\"no process named \\\"x\\\"\"}\n";
        assert!(s.ends_with(&format!("\r\n\r\n{body}")), "{s}");
        assert!(
            s.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{s}"
        );
        let head = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
