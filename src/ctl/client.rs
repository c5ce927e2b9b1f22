//! The `ctl` transport: one HTTP/1.0 exchange with the API over TCP or
//! the unix socket, the same code for both.
//!
//! ctl only ever talks to sheepdog's own API, so a minimal client is
//! enough and keeps one behaviour on both transports: an HTTP/1.0 request
//! with `Connection: close`, answered close-delimited.
//!
//! Invariants:
//! - Every exchange is bounded: connect, write and the whole answer within
//!   `TIMEOUT` (or the caller's), a response of at most `MAX_RESPONSE` bytes; a followed stream that
//!   stays silent for `STREAM_IDLE` (keep-alives come every 5 s) is gone.
//! - No proxy and no redirects: ctl talks to the address it was given, and
//!   nowhere else with the token.
//! - Errors name the target and what failed; HTTP error statuses are not
//!   errors here (the caller reports them with the API's message).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::cli::{has_port, split_url, Target};
use crate::http_text::{find_blank_line, status_code};

/// Longer than the API's own 5 s wait for the supervisor.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response read.
const MAX_RESPONSE: u64 = 16 << 20;
/// How long a followed stream may stay silent (keep-alives come every 5 s).
const STREAM_IDLE: Duration = Duration::from_secs(30);

/// An API answer: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One request. `body` makes it a JSON POST. `timeout`: None = the usual.
pub fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Option<Duration>,
) -> Result<Reply, String> {
    let timeout = timeout.unwrap_or(TIMEOUT);
    let ep = Endpoint::of(target)?;
    let deadline = Instant::now() + timeout;
    let mut s = ep.send(method, path, body, token, timeout)?;
    let raw = read_until_close(&mut s, deadline).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no answer from {} within {timeout:?}", ep.shown)
        }
        _ => format!("unable to read the answer from {}: {e}", ep.shown),
    })?;
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!(
            "the answer from {} is larger than {} MiB",
            ep.shown,
            MAX_RESPONSE >> 20
        ));
    }
    parse_response(&raw).ok_or_else(|| format!("{} did not answer with HTTP", ep.shown))
}

/// Everything up to the server's close (at most `MAX_RESPONSE + 1` bytes,
/// so the caller can tell it was too large), by `deadline`: a server that
/// trickles bytes cannot stretch the exchange past it.
fn read_until_close(s: &mut Stream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while (raw.len() as u64) <= MAX_RESPONSE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        s.read_timeout(left)?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(raw)
}

/// Follow a streaming endpoint: call `line` with each line of the body as
/// it arrives, until the server closes the stream. Keep-alive lines arrive
/// every few seconds, so a silent server for `STREAM_IDLE` means it is gone.
pub fn follow(
    target: &Target,
    path: &str,
    token: Option<&str>,
    line: &mut dyn FnMut(&str),
) -> Result<(), String> {
    follow_within(target, path, token, (TIMEOUT, STREAM_IDLE), line)
}

/// `follow`, with the bound on the head (and an error's body) and on
/// silence in the stream.
fn follow_within(
    target: &Target,
    path: &str,
    token: Option<&str>,
    (within, idle): (Duration, Duration),
    line: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let ep = Endpoint::of(target)?;
    let s = ep.send("GET", path, None, token, TIMEOUT)?;
    let configure =
        |e: std::io::Error| format!("unable to configure the connection to {}: {e}", ep.shown);
    let mut reader = BufReader::new(s);
    // The head, and an error's body, within TIMEOUT in all: a server that
    // trickles them cannot hold ctl longer (only the stream itself may
    // last, as long as it is not silent for `idle`).
    let by = Instant::now() + within;
    let late = || {
        format!(
            "{} sent no complete answer within {within:?}; giving up",
            ep.shown
        )
    };
    let mut head = Vec::new();
    loop {
        let line = line_by(&mut reader, by).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => late(),
            _ => format!("unable to read from {}: {e}", ep.shown),
        })?;
        if line.is_empty() || line == b"\r\n" || line == b"\n" {
            break;
        }
        head.extend_from_slice(&line);
        if head.len() as u64 > MAX_HEAD {
            return Err(format!(
                "{} sent a head over {} KiB",
                ep.shown,
                MAX_HEAD >> 10
            ));
        }
    }
    let status = status_code(&String::from_utf8_lossy(&head))
        .ok_or_else(|| format!("{} did not answer with HTTP", ep.shown))?;
    if !(200..300).contains(&status) {
        let mut text = Vec::new();
        while (text.len() as u64) < MAX_RESPONSE {
            match line_by(&mut reader, by) {
                Ok(l) if !l.is_empty() => text.extend_from_slice(&l),
                // The end, the deadline or an error: what came is the message.
                _ => break,
            }
        }
        return Err(error_of(&String::from_utf8_lossy(&text), status));
    }
    reader.get_ref().read_timeout(idle).map_err(configure)?;
    let read_err = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("{} sent nothing for {idle:?}; giving up", ep.shown)
        }
        _ => format!("unable to read from {}: {e}", ep.shown),
    };
    let mut l = String::new();
    while read_line(&mut reader, &mut l).map_err(read_err)? > 0 {
        let text = l.strip_suffix('\n').unwrap_or(&l);
        line(text.strip_suffix('\r').unwrap_or(text));
    }
    Ok(())
}

/// The largest head a followed answer may have.
const MAX_HEAD: u64 = 64 * 1024;

/// One line with its `\n` (or what is left at the end: empty at the end of
/// the stream), complete by `deadline` (TimedOut otherwise), at most
/// `MAX_HEAD` bytes: each read waits only for what is left of the time.
fn line_by(reader: &mut BufReader<Stream>, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        reader.get_ref().read_timeout(left)?;
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(line);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done || line.len() as u64 > MAX_HEAD {
            return Ok(line);
        }
    }
}

/// Read one line into `buf` (replacing it), with its `\n`; 0 at the end of
/// the stream. A line longer than `MAX_RESPONSE` is an error, so a server
/// that never sends a newline cannot make ctl's memory grow without end.
fn read_line(reader: &mut impl BufRead, buf: &mut String) -> std::io::Result<usize> {
    buf.clear();
    let n = reader.by_ref().take(MAX_RESPONSE).read_line(buf)?;
    if n as u64 == MAX_RESPONSE && !buf.ends_with('\n') {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("a line longer than {} MiB", MAX_RESPONSE >> 20),
        ));
    }
    Ok(n)
}

/// Where requests go, as parsed from the target.
struct Endpoint {
    /// The target as the user gave it, for messages.
    shown: String,
    /// A unix socket, or a `HOST:PORT` to resolve.
    addr: Addr,
    /// `Host:` header.
    host: String,
    /// A path prefix from `$SHEEPDOG_API_URL` (a proxy path), or "".
    prefix: String,
}

enum Addr {
    Socket(std::path::PathBuf),
    Tcp(String),
}

impl Endpoint {
    fn of(target: &Target) -> Result<Endpoint, String> {
        match target {
            Target::Socket(p) => Ok(Endpoint {
                shown: p.display().to_string(),
                addr: Addr::Socket(p.clone()),
                host: "localhost".into(),
                prefix: String::new(),
            }),
            Target::Url(url) => {
                let (authority, prefix) = split_url(url)?;
                let hostport = if has_port(authority) {
                    authority.to_string()
                } else {
                    format!("{authority}:80")
                };
                Ok(Endpoint {
                    shown: url.clone(),
                    addr: Addr::Tcp(hostport),
                    host: authority.to_string(),
                    prefix: prefix.to_string(),
                })
            }
        }
    }

    /// Connect and send one request; the answer is left to read.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Stream, String> {
        let mut s = self.connect(timeout)?;
        s.read_timeout(timeout)
            .and_then(|()| s.write_timeout(timeout))
            .map_err(|e| format!("unable to configure the connection to {}: {e}", self.shown))?;
        let req = request(
            &self.host,
            method,
            &format!("{}{path}", self.prefix),
            body,
            token,
        );
        s.write_all(req.as_bytes())
            .map_err(|e| format!("unable to send the request to {}: {e}", self.shown))?;
        Ok(s)
    }

    fn connect(&self, timeout: Duration) -> Result<Stream, String> {
        let fail = |e: std::io::Error| format!("unable to connect to {}: {e}", self.shown);
        match &self.addr {
            Addr::Socket(p) => UnixStream::connect(p).map(Stream::Unix).map_err(fail),
            Addr::Tcp(hostport) => {
                let addrs = hostport
                    .to_socket_addrs()
                    .map_err(|e| format!("unable to resolve {}: {e}", self.shown))?;
                let mut last = None;
                for a in addrs {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => return Ok(Stream::Tcp(s)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(match last {
                    Some(e) => fail(e),
                    None => format!("unable to resolve {}: no address", self.shown),
                })
            }
        }
    }
}

/// An HTTP/1.0 request, answered close-delimited.
fn request(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: sheepdog/{} (ctl)\r\nAccept: application/json\r\nConnection: close\r\n",
        crate::VERSION
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let payload = body.unwrap_or(if method == "POST" { "{}" } else { "" });
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(payload);
    req
}

/// A connection on either transport.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }

    fn write_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Status and body of a close-delimited HTTP/1.x response.
fn parse_response(raw: &[u8]) -> Option<Reply> {
    let end = find_blank_line(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let line = head.lines().next()?;
    let status = status_code(line)?;
    let mut body = &raw[end + 4..];
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(n) = length {
        body = body.get(..n).unwrap_or(body);
    }
    // An answer without a body (a redirect, which ctl does not follow; a
    // proxy's bare 502) says what it is in its status line.
    if body.is_empty() {
        body = line.as_bytes();
    }
    Some(Reply {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// The message of an error answer: the API's `error`, else the body as it
/// is; then the status.
pub fn error_of(body: &str, status: u16) -> String {
    // from_slice: one JSON reader in the binary (see pipeline::parse_object).
    let msg = serde_json::from_slice::<serde_json::Value>(body.as_bytes())
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    format!("{msg} (HTTP {status})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhello, extra")
            .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, "hello");
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        // No body: the status line is the message.
        let r = parse_response(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(error_of(&r.body, r.status), "HTTP/1.1 302 Found (HTTP 302)");
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_none());
    }

    #[test]
    fn a_url_without_a_port_connects_to_80() {
        let ep = Endpoint::of(&Target::Url("http://localhost".into())).unwrap();
        assert!(matches!(ep.addr, Addr::Tcp(ref a) if a == "localhost:80"));
        assert_eq!(ep.host, "localhost");
    }

    /// A listener that accepts, reads the request, then sends `answer`
    /// one byte every `gap` and never closes (until the test ends).
    fn server(answer: &'static [u8], gap: Duration) -> (Target, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            for b in answer {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
            // Hold the connection open without a word until the client
            // gives up and closes it.
            let _ = s.read(&mut buf);
        });
        (Target::Url(url), t)
    }

    #[test]
    fn a_trickling_server_cannot_stretch_a_call_past_its_timeout() {
        // 200 bytes, one every 20 ms: each read is quick, the whole answer
        // would take 4 s.
        static SLOW: [u8; 200] = [b' '; 200];
        let (target, t) = server(&SLOW, Duration::from_millis(20));
        let started = Instant::now();
        let e = call(
            &target,
            "GET",
            "/x",
            None,
            None,
            Some(Duration::from_millis(150)),
        )
        .unwrap_err();
        assert!(e.contains("no answer from") && e.contains("within"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the call took {:?}: the deadline did not hold",
            started.elapsed()
        );
        t.join().unwrap();
    }

    #[test]
    fn a_followed_line_without_end_is_refused_at_the_limit() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Url(format!("http://{}", l.local_addr().unwrap()));
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nfirst\r\n");
            let chunk = [b'x'; 64 * 1024];
            // Stops when ctl gives up and closes the connection.
            while s.write_all(&chunk).is_ok() {}
        });
        let mut lines = Vec::new();
        let e = follow_within(
            &target,
            "/logs",
            None,
            (TIMEOUT, Duration::from_secs(10)),
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap_err();
        assert_eq!(lines, ["first"]);
        assert!(e.contains("a line longer than 16 MiB"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn a_silent_followed_stream_is_given_up() {
        let (target, t) = server(b"HTTP/1.0 200 OK\r\n\r\nfirst\n", Duration::ZERO);
        let mut lines = Vec::new();
        let e = follow_within(
            &target,
            "/logs",
            None,
            (TIMEOUT, Duration::from_millis(200)),
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap_err();
        assert_eq!(lines, ["first"]);
        assert!(e.contains("sent nothing for"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn a_trickled_head_or_error_body_is_given_up_at_the_deadline() {
        for answer in [&b"HTTP/1.0 200 OK\r\n"[..], b"HTTP/1.0 500 Oops\r\n\r\n"] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let target = Target::Url(format!("http://{}", l.local_addr().unwrap()));
            let answer = answer.to_vec();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&answer);
                // A byte every 50 ms, never a blank line: each read is
                // quick, so only an overall deadline ends it early. Stops
                // when ctl closes the connection, or after 10 s.
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end && s.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let started = Instant::now();
            let r = follow_within(
                &target,
                "/logs",
                None,
                (Duration::from_millis(500), Duration::from_secs(30)),
                &mut |_| {},
            );
            let e = r.unwrap_err();
            // Ended by ctl's 500 ms, not by the server's 10 s.
            assert!(started.elapsed() < Duration::from_secs(5), "{e}");
            assert!(
                e.contains("sent no complete answer within") || e.contains("HTTP 500"),
                "{e}"
            );
            t.join().unwrap();
        }
    }
}
