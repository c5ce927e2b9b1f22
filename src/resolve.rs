//! Name lookups and TCP connections bounded by a deadline, for health
//! probes and outgoing HTTP (heartbeats, http probes).
//!
//! `getaddrinfo` takes no timeout: a resolver that does not answer holds
//! the caller for its own timeouts (musl: 5 s per attempt, 2 attempts by
//! default), far past a probe's `timeout`. So a name is looked up on a
//! short-lived helper thread and given up on at the deadline; a late answer
//! goes nowhere, and the helper ends when the resolver gives up.
//!
//! Invariants:
//! - Returns by the deadline, whatever the resolver does.
//! - At most `MAX_LOOKUPS` helpers live at once. A resolver that never
//!   answers would otherwise leave one more thread behind per probe period
//!   and instance, each counting against the container's `pids.max`, which
//!   the application's own forks need; beyond the cap a lookup fails at
//!   once and says why.
//! - An address (`127.0.0.1`, `::1`) costs no lookup and no thread, and
//!   neither does `localhost` (or a name under `.localhost`): it is the
//!   loopback, 127.0.0.1 then ::1, as RFC 6761 §6.3 says and curl and
//!   browsers do, whatever `/etc/hosts` says. Most probes name it, every few
//!   seconds each; a lookup (a thread, `/etc/hosts`, `/etc/resolv.conf`)
//!   cost more than the probe itself.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Most lookup helpers alive at once (see the invariants).
const MAX_LOOKUPS: usize = 8;
/// Lookup helpers alive now.
static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// Why there are no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed first.
    TimedOut,
    /// The resolver's answer, in words.
    Failed(String),
    /// sheepdog could not start the lookup (`sys::short_of_resources`):
    /// its own shortage, not the name's.
    Unable(String),
}

/// The addresses of `host` (a name or an address without brackets).
pub fn addrs(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    addrs_with(host, port, deadline, system, &LOOKUPS)
}

/// A TCP connection to `host`'s first address that takes one, all by
/// `deadline` (the lookup included): for tcp probes and the HTTP client.
///
/// A failure names the first address's error, as Go's and Python's
/// dialers do: `localhost` is 127.0.0.1 then ::1, and a container without
/// IPv6 answers ::1 with "Cannot assign requested address", which would
/// hide the refused connection that matters. No socket to spare
/// (`sys::short_of_resources`) is sheepdog's shortage: `Unable`.
pub fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Failure> {
    let addrs = addrs(host, port, deadline).map_err(|e| match e {
        Failure::Failed(why) => Failure::Failed(format!("unable to resolve {host}: {why}")),
        Failure::Unable(why) => Failure::Unable(format!("unable to resolve {host}: {why}")),
        Failure::TimedOut => Failure::TimedOut,
    })?;
    let mut first = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::TimedOut);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Failure::TimedOut),
            Err(e) if crate::sys::short_of_resources(&e) => {
                return Err(Failure::Unable(format!(
                    "unable to make a socket for {addr}: {e}"
                )))
            }
            Err(e) => {
                first.get_or_insert_with(|| format!("connect to {addr}: {e}"));
            }
        }
    }
    Err(Failure::Failed(first.unwrap_or_else(|| {
        format!("{host} resolved to no address")
    })))
}

/// The system resolver.
fn system(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Counts a live helper until it is dropped, on the helper's way out.
struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `addrs`, with the lookup and the count of live helpers given (tests
/// give a slow lookup and their own count).
fn addrs_with(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
    live: &'static AtomicUsize,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if is_localhost(host) {
        return Ok(vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    if live.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS {
        live.fetch_sub(1, Ordering::SeqCst);
        return Err(Failure::Failed(format!(
            "{MAX_LOOKUPS} earlier lookups are still waiting for the resolver"
        )));
    }
    let guard = Live(live);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        // musl's resolver keeps a few KiB on the stack; glibc's, with NSS
        // modules, may want more. Only touched pages cost memory, and an
        // overflow here would end PID 1.
        .stack_size(256 * 1024)
        .spawn(move || {
            let _live = guard;
            // The caller may have given up; nobody to tell then.
            let _ = tx.send(lookup(&name, port));
        })
        .map_err(|e| {
            let why = format!("unable to start a lookup: {e}");
            if crate::sys::short_of_resources(&e) {
                Failure::Unable(why)
            } else {
                Failure::Failed(why)
            }
        })?;
    match rx.recv_deadline(deadline) {
        Ok(Ok(found)) if found.is_empty() => Err(Failure::Failed("no address".into())),
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(Failure::Failed(e.to_string())),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// `localhost`, `localhost.`, `x.localhost`, in any case.
fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// `host:port`, `[v6]:port` → (host without brackets, port). As with
/// std's `ToSocketAddrs`, the port is after the last `:`, so `::1:80` is
/// `::1` port 80.
/// Not `http_client::split_host_port`: a tcp check's `address` is a
/// socket address (a port always, a bare v6 host allowed), not a URL's.
/// A bare host with a `:` must be a whole v6 address, with or without a
/// zone (`fe80::1%eth0`, which the lookup resolves): `::1` alone would
/// be host `:` port 1, which no lookup resolves; so would a host with a
/// character no name or address holds (a space, or `*` copied from a
/// server's `listen *:9000`: a probe connects, it does not listen).
pub fn split(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => {
            let (ip, zone) = host.split_once('%').unwrap_or((host, "x"));
            ip.parse::<std::net::Ipv6Addr>().ok()?;
            (!zone.is_empty()).then_some(host)?
        }
        None => host,
    };
    let port = port.parse().ok()?;
    is_host(host).then_some((host, port))
}

/// Whether `host` can be a name or an address (a v6 one with its zone):
/// the characters those hold, no more. One rule for tcp probes and URLs.
pub fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slow(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(3));
        Ok(Vec::new())
    }

    fn loopback(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    fn refusing(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        Err(io::Error::other("name does not resolve"))
    }

    #[test]
    fn a_resolver_that_does_not_answer_is_given_up_on_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(100);
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        assert_eq!(
            addrs_with("x", 80, deadline, slow, &LIVE),
            Err(Failure::TimedOut)
        );
        // Well before the slow lookup would have answered.
        assert!(Instant::now() < deadline + Duration::from_secs(2));
    }

    #[test]
    fn lookups_left_waiting_on_the_resolver_are_capped() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let soon = || Instant::now() + Duration::from_millis(10);
        for _ in 0..MAX_LOOKUPS {
            assert_eq!(
                addrs_with("x", 80, soon(), slow, &LIVE),
                Err(Failure::TimedOut)
            );
        }
        match addrs_with("x", 80, soon(), slow, &LIVE) {
            Err(Failure::Failed(why)) => assert!(why.contains("still waiting"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(LIVE.load(Ordering::SeqCst), MAX_LOOKUPS);
    }

    #[test]
    fn names_are_looked_up_and_addresses_are_not() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let later = Instant::now() + Duration::from_secs(5);
        let found = addrs_with("db", 5432, later, loopback, &LIVE).unwrap();
        assert_eq!(found, [SocketAddr::from(([127, 0, 0, 1], 5432))]);
        // An address never reaches the lookup, not even a refusing one.
        let found = addrs_with("::1", 9, later, refusing, &LIVE).unwrap();
        assert_eq!(found, ["[::1]:9".parse().unwrap()]);
        let e = addrs_with("nowhere", 9, later, refusing, &LIVE).unwrap_err();
        assert_eq!(e, Failure::Failed("name does not resolve".into()));
        assert_eq!(
            addrs("localhost", 80, later).map(|a| a.is_empty()),
            Ok(false)
        );
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split("127.0.0.1:9000"), Some(("127.0.0.1", 9000)));
        assert_eq!(split("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split("db.internal:5432"), Some(("db.internal", 5432)));
        assert_eq!(split("::1:80"), Some(("::1", 80)));
        // A link-local address with its zone, as getaddrinfo takes it
        // (RFC 4007 text form); accepted before the whole-v6 rule came in.
        assert_eq!(split("fe80::1%eth0:9000"), Some(("fe80::1%eth0", 9000)));
        assert_eq!(split("[fe80::1%eth0]:9000"), Some(("fe80::1%eth0", 9000)));
        for bad in [
            "fe80::1%:9000",
            "fe8g::1%eth0:9000",
            "::1",
            "9000",
            ":80",
            "h:",
            "h:70000",
            "[::1]80",
            "[::1:80",
            "[]:80",
            "*:9000",
            "a b:80",
            "user@h:80",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
