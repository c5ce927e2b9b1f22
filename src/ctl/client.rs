//! The `ctl` transport: one HTTP request to the API, over TCP (ureq) or
//! the unix socket (a minimal HTTP/1.0 exchange on a `UnixStream`).
//!
//! Invariants:
//! - Every exchange is bounded: connect, write and read within `TIMEOUT`,
//!   a response of at most `MAX_RESPONSE` bytes.
//! - No proxy from the environment and no redirects: ctl talks to the
//!   address it was given, and nowhere else with the token.
//! - Errors name the target and what failed; HTTP error statuses are not
//!   errors here (the caller reports them with the API's message).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::cli::Target;
use crate::http_client::{agent, Proxy};

/// Longer than the API's own 5 s wait for the supervisor.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response read.
const MAX_RESPONSE: u64 = 16 << 20;

/// An API answer: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// How long `trigger --wait` waits: beyond the API's own bound (10 minutes
/// without a schedule_timeout).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(11 * 60);

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
    match target {
        Target::Socket(p) => unix(p, method, path, body, token, timeout),
        Target::Url(base) => tcp(base, method, path, body, token, timeout),
    }
}

fn tcp(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Reply, String> {
    let agent = agent(timeout, 0, Proxy::Never, "ctl");
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let sent = if method == "POST" {
        let mut req = agent.post(&url).content_type("application/json");
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        req.send(body.unwrap_or("{}"))
    } else {
        let mut req = agent.get(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        req.call()
    };
    let mut resp = sent.map_err(|e| format!("unable to reach {base}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_string()
        .map_err(|e| format!("unable to read the answer from {base}: {e}"))?;
    Ok(Reply { status, body })
}

fn unix(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Reply, String> {
    let shown = sock.display();
    let mut s =
        UnixStream::connect(sock).map_err(|e| format!("unable to connect to {shown}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("unable to configure the connection to {shown}: {e}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: sheepdog/{} (ctl)\r\nAccept: application/json\r\nConnection: close\r\n",
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
    s.write_all(req.as_bytes())
        .map_err(|e| format!("unable to send the request to {shown}: {e}"))?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("unable to read the answer from {shown}: {e}"))?;
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!(
            "the answer from {shown} is larger than {} MiB",
            MAX_RESPONSE >> 20
        ));
    }
    parse_response(&raw).ok_or_else(|| format!("{shown} did not answer with HTTP"))
}

/// Status and body of a close-delimited HTTP/1.x response.
fn parse_response(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
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
    Some(Reply {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
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
    use std::io::BufRead;
    match target {
        Target::Url(base) => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(TIMEOUT))
                .timeout_recv_response(Some(TIMEOUT))
                .proxy(None)
                .max_redirects(0)
                .user_agent(format!("sheepdog/{} (ctl)", crate::VERSION))
                .build()
                .into();
            let mut req = agent.get(format!("{base}{path}"));
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            let resp = req
                .call()
                .map_err(|e| format!("unable to reach {base}: {e}"))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if !(200..300).contains(&status) {
                let text = body
                    .with_config()
                    .limit(MAX_RESPONSE)
                    .read_to_string()
                    .unwrap_or_default();
                return Err(error_of(&text, status));
            }
            for l in std::io::BufReader::new(body.into_reader()).lines() {
                line(&l.map_err(|e| format!("the stream from {base} broke: {e}"))?);
            }
            Ok(())
        }
        Target::Socket(sock) => {
            let shown = sock.display();
            let mut s = UnixStream::connect(sock)
                .map_err(|e| format!("unable to connect to {shown}: {e}"))?;
            s.set_read_timeout(Some(STREAM_IDLE))
                .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
                .map_err(|e| format!("unable to configure the connection to {shown}: {e}"))?;
            let mut req =
                format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n");
            if let Some(t) = token {
                req.push_str(&format!("Authorization: Bearer {t}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .map_err(|e| format!("unable to send the request to {shown}: {e}"))?;
            let mut reader = std::io::BufReader::new(s);
            let mut status_line = String::new();
            reader
                .read_line(&mut status_line)
                .map_err(|e| format!("unable to read from {shown}: {e}"))?;
            let status: u16 = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            // Skip the head.
            loop {
                let mut h = String::new();
                let n = reader
                    .read_line(&mut h)
                    .map_err(|e| format!("unable to read from {shown}: {e}"))?;
                if n == 0 || h == "\r\n" || h == "\n" {
                    break;
                }
            }
            if !(200..300).contains(&status) {
                let mut text = String::new();
                let _ = reader.take(MAX_RESPONSE).read_to_string(&mut text);
                return Err(error_of(&text, status));
            }
            for l in reader.lines() {
                line(&l.map_err(|e| format!("the stream from {shown} broke: {e}"))?);
            }
            Ok(())
        }
    }
}

/// How long a followed stream may stay silent (keep-alives come every 5 s).
const STREAM_IDLE: Duration = Duration::from_secs(30);

fn error_of(body: &str, status: u16) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(body)
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
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_none());
    }
}
