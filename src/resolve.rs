//! Name lookups bounded by a deadline, for health probes and heartbeats.
//!
//! `getaddrinfo` takes no timeout: a resolver that does not answer holds
//! the caller for its own timeouts (musl: 5 s per attempt, 2 attempts by
//! default), far past a probe's `timeout`. So a name is looked up on a
//! short-lived helper thread and given up on at the deadline; a late answer
//! goes nowhere, and the helper ends when the resolver gives up.
//!
//! Invariants:
//! - Returns by the deadline, whatever the resolver does.
//! - An address (`127.0.0.1`, `::1`) costs no lookup and no thread, and
//!   neither does `localhost` (or a name under `.localhost`): it is the
//!   loopback, 127.0.0.1 then ::1, as RFC 6761 §6.3 says and curl and
//!   browsers do, whatever `/etc/hosts` says. Most probes name it, every few
//!   seconds each; a lookup (a thread, `/etc/hosts`, `/etc/resolv.conf`)
//!   cost more than the probe itself.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Instant;

/// Why there are no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed first.
    TimedOut,
    /// The resolver's answer, in words.
    Failed(String),
}

/// The addresses of `host` (a name or an address without brackets).
pub fn addrs(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    addrs_with(host, port, deadline, system)
}

/// The system resolver.
fn system(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// `addrs`, with the lookup given (tests give a slow one).
fn addrs_with(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
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
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        // musl's resolver keeps its buffers (a few KiB) on the stack.
        .stack_size(64 * 1024)
        .spawn(move || {
            // The caller may have given up; nobody to tell then.
            let _ = tx.send(lookup(&name, port));
        })
        .map_err(|e| Failure::Failed(format!("unable to start a lookup: {e}")))?;
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
pub fn split(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None => host,
    };
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
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
        assert_eq!(addrs_with("x", 80, deadline, slow), Err(Failure::TimedOut));
        // Well before the slow lookup would have answered.
        assert!(Instant::now() < deadline + Duration::from_secs(2));
    }

    #[test]
    fn names_are_looked_up_and_addresses_are_not() {
        let later = Instant::now() + Duration::from_secs(5);
        let found = addrs_with("db", 5432, later, loopback).unwrap();
        assert_eq!(found, [SocketAddr::from(([127, 0, 0, 1], 5432))]);
        // An address never reaches the lookup, not even a refusing one.
        let found = addrs_with("::1", 9, later, refusing).unwrap();
        assert_eq!(found, ["[::1]:9".parse().unwrap()]);
        let e = addrs_with("nowhere", 9, later, refusing).unwrap_err();
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
        for bad in [
            "9000", ":80", "h:", "h:70000", "[::1]80", "[::1:80", "[]:80",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
