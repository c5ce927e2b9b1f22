//! sheepdog's outgoing HTTP client: http health checks and heartbeat
//! pings. One HTTP/1.1 request per connection (`Connection: close`) over
//! plain TCP; all either caller needs is the answer's status. (`sheepdog
//! ctl` talks only to sheepdog's own API and has its own exchange,
//! `ctl::client`.)
//!
//! Invariants:
//! - Every request ends by one deadline, `timeout` after it starts: name
//!   resolution (`resolve`), connect, send and the answer's head. The body is then read
//!   and discarded only until the server closes, the length it announced
//!   (or the last chunk) is read, `DRAIN_MAX` bytes, `DRAIN_TIME`, or the
//!   same deadline, whichever is first: closing a socket with unread data
//!   would reset the connection and leave "connection reset" errors in the
//!   application's logs, but the status is known and nobody should wait
//!   long for a body that does not end.
//! - Heads are read as RFC 9112 allows: lines may end in a bare LF.
//! - Non-2xx answers are statuses, not errors; the caller judges them.
//! - No TLS: an `https://` URL (given, or in a redirect) fails at once with
//!   a message that says so.
//! - Health checks never use a proxy: they talk to this machine, and an
//!   `HTTP_PROXY` set for the application must not send a `127.0.0.1` probe
//!   through a corporate proxy. Heartbeats leave the machine, so they honour
//!   `http_proxy`/`HTTP_PROXY`/`all_proxy`/`ALL_PROXY` minus `NO_PROXY`, as
//!   curl does for `http://` URLs. A proxy's `user:password@` is
//!   percent-decoded (user and password apart, as curl does) and never
//!   shown: messages and `{:?}` print `user:***`.
//! - What sheepdog writes on the wire is only what the caller configured:
//!   a header name or value that could break the request's framing (CR,
//!   LF, NUL) is refused, and the framing headers are sheepdog's own.

use std::borrow::Cow;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};

use crate::http_text::{is_token_byte, percent_decode_bytes, status_code};
use crate::resolve::Failure;
use std::time::{Duration, Instant};

/// Largest answer head read.
const HEAD_MAX: usize = 64 << 10;
/// The longest end of a head that `head_end` finds, `\n\r\n`: a search
/// resumed this far before the end of what it searched finds one that was
/// split across two reads.
const END_MAX: usize = 3;
/// Most body bytes read (and discarded) before closing anyway.
const DRAIN_MAX: usize = 1 << 20;
/// Longest wait for the rest of a body once the head is in.
const DRAIN_TIME: Duration = Duration::from_millis(250);
/// Redirect statuses that carry a `Location` to follow.
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];
/// The port of a proxy given without one, as curl assumes.
const PROXY_PORT: u16 = 1080;

/// Whether requests may go through a proxy from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// Always connect directly.
    Never,
    /// `http_proxy`, `HTTP_PROXY`, `all_proxy`, `ALL_PROXY` (the first set),
    /// unless the host matches `NO_PROXY`/`no_proxy`.
    FromEnv,
}

/// One request to make.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Extra headers, as configured.
    pub headers: &'a [(&'a str, &'a str)],
    /// A body (sent with `Content-Length`; `text/plain` unless a
    /// `Content-Type` header is given).
    pub body: Option<&'a str>,
    /// For the whole request, redirects included.
    pub timeout: Duration,
    /// How many redirects to follow (0: the 3xx is the answer).
    pub redirects: u32,
    pub proxy: Proxy,
    /// Who is asking, for `User-Agent: sheepdog/<version> (<what>)`.
    pub what: &'a str,
}

/// Why there is no status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The deadline passed.
    TimedOut,
    /// sheepdog could not make the socket (`sys::short_of_resources`: its
    /// fd limit, memory): its own shortage, not the peer's fault.
    Unable(String),
    /// Anything else, said in words; `permanent` when retrying cannot help
    /// (an https URL, a bad header).
    Failed { reason: String, permanent: bool },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TimedOut => f.write_str("timed out"),
            Error::Unable(reason) | Error::Failed { reason, .. } => f.write_str(reason),
        }
    }
}

fn failed(reason: impl Into<String>) -> Error {
    Error::Failed {
        reason: reason.into(),
        permanent: false,
    }
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Failed {
        reason: reason.into(),
        permanent: true,
    }
}

/// Make `req`, following redirects as allowed: the final answer's status.
pub fn send(req: &Request) -> Result<u16, Error> {
    send_to(req).map(|(status, _)| status)
}

/// `send`, also giving the URL that answered when it is not `req.url`
/// (a redirect was followed): a message names the one whose status it
/// judges.
pub fn send_to(req: &Request) -> Result<(u16, Option<String>), Error> {
    let env = |name: &str| std::env::var(name).ok();
    send_with(req, &env)
}

/// `send_to`, with the environment (for the proxy) given.
fn send_with(
    req: &Request,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(u16, Option<String>), Error> {
    check_headers(req.headers)?;
    let deadline = Instant::now() + req.timeout;
    let mut url = req.url.to_string();
    let mut method = req.method;
    let mut body = req.body;
    let mut left = req.redirects;
    loop {
        let target = Url::parse(&url)?;
        let route = match req.proxy {
            Proxy::Never => None,
            Proxy::FromEnv => proxy_for(target.host, env)?,
        };
        let hop = Hop {
            method,
            body,
            url: &target,
            route: route.as_ref(),
        };
        let answer = exchange(req, &hop, deadline)?;
        let location = match answer.location {
            Some(loc) if req.redirects > 0 && REDIRECTS.contains(&answer.status) => loc,
            _ => return Ok((answer.status, (left < req.redirects).then_some(url))),
        };
        // Following redirects, a 3xx is never the answer: one more after
        // the last allowed is a loop, or a chain too long to trust (as for
        // curl -L and Go's client).
        if left == 0 {
            return Err(Error::Failed {
                reason: format!(
                    "stopped after {} redirects (a redirect loop?); last one to {location:?}",
                    req.redirects
                ),
                permanent: false,
            });
        }
        url = target.join(&location);
        left -= 1;
        if !matches!(answer.status, 307 | 308) && method != "HEAD" {
            // As browsers do: after 301/302/303 the next request is a GET.
            method = "GET";
            body = None;
        }
    }
}

/// One request of a `send`: the first, or one after a redirect.
struct Hop<'a> {
    method: &'a str,
    body: Option<&'a str>,
    url: &'a Url<'a>,
    /// The proxy it goes through, if any.
    route: Option<&'a Route>,
}

/// Why `url` cannot be requested, if it cannot (an https URL can be: it
/// fails with its own message when sent).
pub fn url_problem(url: &str) -> Option<String> {
    let checked = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => Url::parse_http(url, rest),
        _ => Url::parse(url),
    };
    checked.err().map(|e| e.to_string())
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url<'a> {
    /// As written, `[…]` kept for IPv6: what goes into `Host:`.
    authority: &'a str,
    /// Without brackets: what is resolved.
    host: &'a str,
    port: u16,
    /// Path and query, starting with `/` (`http://h?q` asks for `/?q`);
    /// no fragment.
    target: Cow<'a, str>,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Url<'a>, Error> {
        let bad_scheme = || {
            refused(format!(
                "invalid URL {url:?}: expected http://HOST[:PORT]/PATH"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad_scheme)?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(refused(
                "https is not supported (sheepdog is built without TLS); use an http:// URL, \
                 e.g. a local relay",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad_scheme());
        }
        Url::parse_http(url, rest)
    }

    /// The part of `url` after the scheme, `rest`.
    fn parse_http(url: &'a str, rest: &'a str) -> Result<Url<'a>, Error> {
        let bad = |why: &str| refused(format!("invalid URL {url:?}: {why}"));
        let rest = rest.split('#').next().unwrap_or(rest);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            // Quoted without the password: this message reaches the log.
            return Err(refused(format!(
                "invalid URL {:?}: credentials in the URL are not supported; send them in a header",
                without_password(url)
            )));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| bad("expected HOST or HOST:PORT after http://"))?;
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces and control characters must be percent-encoded"));
        }
        Ok(Url {
            authority,
            host,
            port: port.unwrap_or(80),
            target: if target.starts_with('/') {
                Cow::Borrowed(target)
            } else {
                Cow::Owned(format!("/{target}"))
            },
        })
    }

    /// `location` (from a redirect) resolved against this URL.
    fn join(&self, location: &str) -> String {
        let location = location.trim();
        // Absolute only with a scheme in front: `/login?next=http://x` is
        // a path.
        let absolute = location.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let path = self.target.split('?').next().unwrap_or("/");
        if absolute {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("http://{rest}")
        } else if location.starts_with('/') {
            format!("http://{}{location}", self.authority)
        } else if location.starts_with('?') {
            format!("http://{}{path}{location}", self.authority)
        } else {
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("http://{}{dir}{location}", self.authority)
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → host (no brackets), port.
/// Not `resolve::split`: a URL's authority (RFC 3986) may leave out the
/// port, so a v6 host needs its brackets, and its host is checked here.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !crate::resolve::is_host(host) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
    };
    Some((host, port))
}

/// Where to connect instead of the URL's host, and how to authenticate.
#[derive(Clone, PartialEq, Eq)]
struct Route {
    host: String,
    port: u16,
    /// `Proxy-Authorization` value, from `user:password@` in the proxy URL.
    auth: Option<String>,
    /// The variable it came from, for messages.
    var: &'static str,
}

/// Without the credentials: base64 hides nothing, and a `{:?}` must never
/// put a password in a log or a test's failure.
impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .field("var", &self.var)
            .finish()
    }
}

/// The proxy for `host` from the environment, if any.
fn proxy_for(host: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Route>, Error> {
    const VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
    // A variable set to nothing counts as unset, as curl has it.
    let set = |v: &str| env(v).filter(|s| !s.trim().is_empty());
    let Some((var, value)) = VARS.iter().find_map(|v| set(v).map(|s| (*v, s))) else {
        return Ok(None);
    };
    let no_proxy = set("NO_PROXY").or_else(|| set("no_proxy"));
    if no_proxy.is_some_and(|list| bypasses(&list, host)) {
        return Ok(None);
    }
    let value = value.trim();
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, value),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    if rest[authority.len()..].contains('@') {
        // A `/` in the password: where the password ends is anyone's
        // guess, so the value is not shown at all.
        return Err(refused(format!(
            "${var}: a `/` in the proxy's user name or password must be written %2F"
        )));
    }
    let bad = |why: &str| refused(format!("${var} is {:?}: {why}", without_password(value)));
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case("http")) {
        return Err(bad("only http:// proxies are supported"));
    }
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => (Some(basic_auth(userinfo)), hp),
        None => (None, authority),
    };
    let (phost, port) =
        split_host_port(hostport).ok_or_else(|| bad("expected http://HOST[:PORT]"))?;
    Ok(Some(Route {
        host: phost.to_string(),
        port: port.unwrap_or(PROXY_PORT),
        auth,
        var,
    }))
}

/// `Proxy-Authorization` for a proxy URL's `user:password`. Each part is
/// percent-decoded on its own, after the split at the first `:`, as curl
/// does: `%40` and `%3A` are how a password holds `@` and `:`. A user
/// without a password sends an empty one (RFC 7617 needs the `:`).
fn basic_auth(userinfo: &str) -> String {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut pair = percent_decode_bytes(user);
    pair.push(b':');
    pair.extend(percent_decode_bytes(password));
    format!("Basic {}", base64(&pair))
}

/// A URL fit for a message: `user:password@` becomes `user:***@`.
fn without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => {
            let userinfo = &url[start..start + at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..start], &url[start + at..])
        }
        None => url.to_string(),
    }
}

/// Whether `NO_PROXY` (`list`) says `host` is reached directly: `*`, an
/// exact name or address, a domain (`example.com` or `.example.com`,
/// matching it and its subdomains), or an address range (`10.0.0.0/8`).
fn bypasses(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        if entry.is_empty() {
            return false;
        }
        if entry == "*" {
            return true;
        }
        if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
            return in_range(ip, net, bits);
        }
        let entry = entry.trim_start_matches('*').trim_start_matches('.');
        let entry = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        host == entry
            || host
                .strip_suffix(entry)
                .is_some_and(|head| head.ends_with('.'))
    })
}

/// Whether `ip` is in `net`/`bits`.
fn in_range(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Standard base64 with padding (for `Proxy-Authorization: Basic`).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Header names must be HTTP tokens, values free of CR, LF and NUL, and
/// the framing headers are sheepdog's.
fn check_headers(headers: &[(&str, &str)]) -> Result<(), Error> {
    for (name, value) in headers {
        if let Some(why) = header_problem(name, value) {
            return Err(refused(format!("header {name:?}: {why}")));
        }
    }
    Ok(())
}

/// Why `name: value` cannot be sent as configured, if it cannot.
pub fn header_problem(name: &str, value: &str) -> Option<&'static str> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Some("not a header name (letters, digits and !#$%&'*+-.^_`|~ only)");
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Some("the value contains a line break or NUL");
    }
    const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];
    if FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Some("set by sheepdog itself; remove it");
    }
    None
}

/// What an answer told us.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
}

/// One request on one connection.
fn exchange(req: &Request, hop: &Hop, deadline: Instant) -> Result<Answer, Error> {
    let (host, port) = match hop.route {
        Some(r) => (r.host.as_str(), r.port),
        None => (hop.url.host, hop.url.port),
    };
    let mut stream = connect(host, port, deadline).map_err(|e| match (e, hop.route) {
        (Error::Failed { reason, permanent }, Some(r)) => Error::Failed {
            reason: format!("proxy {}:{} (from ${}): {reason}", r.host, r.port, r.var),
            permanent,
        },
        (e, _) => e,
    })?;
    let head = request_head(req, hop);
    with_deadline(&stream, deadline, |s| {
        s.set_write_timeout(Some(left(deadline)))
    })?;
    let mut out = head.into_bytes();
    out.extend_from_slice(hop.body.unwrap_or("").as_bytes());
    stream
        .write_all(&out)
        .map_err(|e| io_error(e, "unable to send the request"))?;
    read_answer(&mut stream, hop.method, deadline)
}

/// Time left until `deadline` (at least 1 ms: a zero timeout means "none"
/// to the socket calls; the callers check for zero first).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Run a socket option setter, unless the deadline has passed.
fn with_deadline(
    s: &TcpStream,
    deadline: Instant,
    set: impl FnOnce(&TcpStream) -> std::io::Result<()>,
) -> Result<(), Error> {
    if Instant::now() >= deadline {
        return Err(Error::TimedOut);
    }
    set(s).map_err(|e| failed(format!("unable to configure the connection: {e}")))
}

fn io_error(e: std::io::Error, what: &str) -> Error {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::TimedOut,
        _ => failed(format!("{what}: {e}")),
    }
}

/// The request line and headers.
fn request_head(req: &Request, hop: &Hop) -> String {
    let Hop {
        method,
        body,
        url,
        route,
    } = *hop;
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut head = match route {
        // A proxy takes the absolute URL (RFC 9112 §3.2.2).
        Some(_) => format!(
            "{method} http://{}{} HTTP/1.1\r\n",
            url.authority, url.target
        ),
        None => format!("{method} {} HTTP/1.1\r\n", url.target),
    };
    if !has("host") {
        head.push_str(&format!("Host: {}\r\n", host_header(url)));
    }
    if !has("user-agent") {
        head.push_str(&format!(
            "User-Agent: sheepdog/{} ({})\r\n",
            crate::VERSION,
            req.what
        ));
    }
    if !has("accept") {
        head.push_str("Accept: */*\r\n");
    }
    if let Some(auth) = route.and_then(|r| r.auth.as_deref()) {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !has("content-type") {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// `Host:` omits the default port. No splitter: the authority passed
/// `split_host_port`, so it ends in `:80` only when that is its port.
fn host_header(url: &Url) -> String {
    match url.authority.rsplit_once(':') {
        Some((h, "80")) => h.to_string(),
        _ => url.authority.to_string(),
    }
}

/// Resolve `host` and connect to the first address that answers.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    crate::resolve::connect(host, port, deadline).map_err(|e| match e {
        Failure::TimedOut => Error::TimedOut,
        Failure::Failed(why) => failed(why),
        Failure::Unable(why) => Error::Unable(why),
    })
}

/// Read the head of the answer (skipping 1xx interim answers), then drain
/// the body as the module header says.
fn read_answer(s: &mut TcpStream, method: &str, deadline: Instant) -> Result<Answer, Error> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (head, body_start) = read_head(s, &mut buf, deadline)?;
        let status = head.status;
        if (100..200).contains(&status) && status != 101 {
            buf.drain(..body_start);
            continue;
        }
        let no_body = method == "HEAD" || status == 204 || status == 304;
        if !no_body {
            let until = deadline.min(Instant::now() + DRAIN_TIME);
            drain(s, &buf[body_start..], &head, until);
        }
        return Ok(Answer {
            status,
            location: head.location,
        });
    }
}

/// Read until `buf` starts with a whole head: the head, and where the
/// bytes after it (the body, or the next answer after a 1xx) start.
fn read_head(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(Head, usize), Error> {
    let mut chunk = [0u8; 4096];
    // Where the search for the head's end resumes: a head trickled in
    // small reads must not cost a search of everything so far per read.
    let mut from = 0;
    loop {
        if let Some((end, body_start)) = head_end(&buf[from..]) {
            let head =
                parse_head(&buf[..from + end]).ok_or_else(|| failed("the answer is not HTTP"))?;
            return Ok((head, from + body_start));
        }
        from = buf.len().saturating_sub(END_MAX);
        if buf.len() > HEAD_MAX {
            return Err(failed(format!(
                "the answer's head is larger than {} KiB",
                HEAD_MAX >> 10
            )));
        }
        match read_some(s, &mut chunk, deadline)? {
            0 if buf.is_empty() => return Err(failed("the server closed without answering")),
            0 => return Err(failed("the answer ends inside its head")),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Read and discard the body: see the module header for when it stops.
/// Nothing here is an error any more: the status is known.
/// The end of a chunked body is recognised by its last bytes, `0` CRLF
/// CRLF; one with chunk extensions or trailers ends at the server's close
/// or `DRAIN_TIME` instead.
fn drain(s: &mut TcpStream, first: &[u8], head: &Head, deadline: Instant) {
    let mut read = first.len();
    let mut tail = first[first.len().saturating_sub(5)..].to_vec();
    let mut chunk = [0u8; 4096];
    loop {
        let done = match head.length {
            Some(n) => read >= n,
            None => head.chunked && tail.ends_with(b"0\r\n\r\n"),
        };
        if done || read >= DRAIN_MAX || Instant::now() >= deadline {
            return;
        }
        match read_some(s, &mut chunk, deadline) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                read += n;
                tail.extend_from_slice(&chunk[..n]);
                let cut = tail.len().saturating_sub(5);
                tail.drain(..cut);
            }
        }
    }
}

/// One read, bounded by the deadline; 0 at the end of the stream.
fn read_some(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize, Error> {
    loop {
        with_deadline(s, deadline, |s| s.set_read_timeout(Some(left(deadline))))?;
        match s.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e, "unable to read the answer")),
        }
    }
}

/// Where the head ends (its length) and the body starts: at the first
/// empty line, whether lines end in CRLF or a bare LF.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        let rest = &buf[i + 1..];
        match (b, rest) {
            (b'\n', [b'\n', ..]) => Some((i, i + 2)),
            (b'\n', [b'\r', b'\n', ..]) => Some((i, i + 3)),
            _ => None,
        }
    })
}

/// What matters in an answer's head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    location: Option<String>,
    /// `Content-Length`, unless the body is chunked (which wins).
    length: Option<usize>,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status = status_code(lines.next()?)?;
    let (mut location, mut length, mut chunked) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Some(Head {
        status,
        location,
        length: if chunked { None } else { length },
        chunked,
    })
}

#[cfg(test)]
mod tests;
