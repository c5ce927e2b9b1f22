//! Declared TCP ports: is a port free before a start, who holds it, and
//! which ports are listening now. Reads `/proc/net/tcp{,6}` and
//! `/proc/*/fd`; never panics on what it finds there.
//!
//! Invariant: read-only except for the test bind in `is_free`, which is
//! closed at once.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};

use crate::btree;

/// TCP socket state LISTEN in /proc/net/tcp.
const LISTEN: &str = "0A";

/// The port instance `index` (from 1) of a process uses for `declared`:
/// `declared + index - 1`; None past 65535 (refused at load and by a scale
/// request, so only a bug gets here).
pub fn of_instance(declared: u16, index: u32) -> Option<u16> {
    let offset = u16::try_from(index.checked_sub(1)?).ok()?;
    declared.checked_add(offset)
}

#[cfg(test)]
mod instance_tests {
    use super::of_instance;

    #[test]
    fn instance_n_uses_the_declared_port_plus_n_minus_1() {
        assert_eq!(of_instance(8080, 1), Some(8080));
        assert_eq!(of_instance(8080, 3), Some(8082));
        assert_eq!(of_instance(65535, 1), Some(65535));
        assert_eq!(of_instance(65535, 2), None);
        assert_eq!(of_instance(80, 0), None);
    }
}

/// Whether `port` can be bound on all IPv4 addresses right now. Only a
/// clear "address in use" counts as taken; any other error (e.g. no
/// permission for a low port) cannot tell, so the port is assumed free.
pub fn is_free(port: u16) -> bool {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::AddrInUse,
    }
}

/// Ports with a socket in LISTEN state (IPv4 and IPv6).
pub fn listening() -> BTreeSet<u16> {
    btree::collect(
        sockets()
            .into_iter()
            .filter(|s| s.state == LISTEN)
            .map(|s| s.port),
    )
}

/// "pid 1234 (php-fpm)" for the process holding a listening socket on
/// `port`, when /proc lets us find it.
pub fn holder(port: u16) -> Option<String> {
    let inodes: BTreeSet<u64> = btree::collect(
        sockets()
            .into_iter()
            .filter(|s| s.port == port && s.state == LISTEN)
            .map(|s| s.inode)
            .filter(|i| *i != 0),
    );
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'));
            if inode
                .and_then(|i| i.parse().ok())
                .is_some_and(|i| inodes.contains(&i))
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", comm.trim()));
            }
        }
    }
    None
}

struct Socket {
    port: u16,
    state: String,
    inode: u64,
}

fn sockets() -> Vec<Socket> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_line)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One line: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`
fn parse_line(line: &str) -> Option<Socket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = f.get(1)?;
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    Some(Socket {
        port,
        state: f.get(3)?.to_string(),
        inode: f.get(9)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let l = "   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(l).unwrap();
        assert_eq!((s.port, s.state.as_str(), s.inode), (9000, "0A", 12345));
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("0: nothex:ZZZZ x 0A").is_none());
    }

    #[test]
    fn a_listening_port_is_seen_taken_and_held_by_us() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening().contains(&port));
        assert!(!is_free(port));
        let who = holder(port).expect("our own socket is found");
        assert!(
            who.starts_with(&format!("pid {} (", std::process::id())),
            "{who}"
        );
        drop(l);
        assert!(!listening().contains(&port));
    }
}
