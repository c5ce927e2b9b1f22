//! A deliberately dumb HTTP client for tests: raw bytes over TCP or a unix
//! socket, so tests can send malformed and oversized requests too. Every
//! read and write is bounded by a timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port: bind :0, read the port, release it.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports (all held until all are known).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (HTTP {})", self.body, self.status))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` field of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.body))
            .to_string()
    }
}

/// Parse a close-delimited response.
pub fn parse(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[end + 4..]).into_owned(),
    })
}

fn exchange(mut s: impl Read + Write, raw: &[u8]) -> Resp {
    // The server may answer (413, 431) before reading everything: a failed
    // write is fine as long as the answer arrives.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out).unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&out)))
}

/// Send raw bytes to `127.0.0.1:port`, read the whole answer.
pub fn raw(port: u16, bytes: &[u8]) -> Resp {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    exchange(s, bytes)
}

/// Build a request.
pub fn request(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        r.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        r.push_str("\r\n");
    }
    r.into_bytes()
}

pub fn get(port: u16, path: &str, token: Option<&str>) -> Resp {
    raw(port, &request("GET", path, token, None))
}

pub fn post(port: u16, path: &str, token: Option<&str>, body: &str) -> Resp {
    raw(port, &request("POST", path, token, Some(body)))
}

/// The same over a unix socket.
pub fn unix(
    sock: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    exchange(s, &request(method, path, token, body))
}

/// True once something accepts connections on the port.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Wait (up to `super::WAIT`) until `GET /api/v1/processes/{name}` shows
/// exactly `n` instances, all running with a live pid. Ok: their pids in
/// index order; Err: the last answer seen, for the failure message.
pub fn wait_running(
    port: u16,
    token: Option<&str>,
    name: &str,
    n: usize,
) -> Result<Vec<i32>, serde_json::Value> {
    let mut last = serde_json::Value::Null;
    let ok = super::wait_until(super::WAIT, || {
        let r = get(port, &format!("/api/v1/processes/{name}"), token);
        if r.status != 200 {
            return false;
        }
        last = r.json();
        let insts = last["instances"].as_array().map_or(&[][..], Vec::as_slice);
        insts.len() == n
            && insts.iter().all(|i| {
                i["state"] == "running" && i["pid"].as_i64().is_some_and(|p| super::alive(p as i32))
            })
    });
    if !ok {
        return Err(last);
    }
    Ok(last["instances"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|i| i["pid"].as_i64())
        .map(|p| p as i32)
        .collect())
}
