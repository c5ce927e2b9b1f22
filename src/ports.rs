//! Declared TCP ports: is a port held before a start, who holds it, and
//! does an instance's own process group listen on its ports. Reads
//! `/proc/net/tcp{,6}`, `/proc/<pid>/stat` and `/proc/<pid>/fd`; never
//! panics on what it finds there.
//!
//! "Held" and "listening" both mean a socket in LISTEN state in
//! `/proc/net/tcp` or `/proc/net/tcp6`. That one source sees both address
//! families, whatever address the holder bound (`127.0.0.1`, `[::1]`,
//! `[::]` v6-only), and its inode says whose socket it is. Test binds
//! would need a bind per family (a v6-only listener on `[::1]` does not
//! stop a bind of `0.0.0.0`), would have to tell "no IPv6 on this host"
//! from "taken", cannot bind a low port without privilege, and still name
//! no holder. What /proc misses: a socket bound but not listening, which
//! blocks a server's bind only when one of the two lacks SO_REUSEADDR
//! (servers set it, and a test bind sets it too), and everything when
//! /proc is not mounted (nothing is held, nothing listens).
//!
//! Invariants:
//! - Read-only.
//! - An instance listens on a port only through a socket among its process
//!   group's descriptors (DESIGN.md: a process is its whole group); another
//!   process's listener does not count, and is named. When some member's
//!   descriptors cannot be read (another uid and no CAP_SYS_PTRACE, as in a
//!   default Docker container; a `/proc` of another pid namespace), any
//!   listener counts: a working service must not look down.
//! - Cheap on the common path (ports-only probes run every period): the
//!   leader's descriptors are read first, as it holds the socket in nearly
//!   every server; the rest of `/proc` only when it does not.

use std::io::ErrorKind;

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

/// Whether a socket listens on `port` now (IPv4 or IPv6, any address).
pub fn held(port: u16) -> bool {
    listeners().iter().any(|s| s.0 == port)
}

/// "pid 1234 (php-fpm)" for the process holding a listening socket on
/// `port`, when /proc lets us find it.
pub fn holder(port: u16) -> Option<String> {
    let inodes: Vec<u64> = listeners()
        .into_iter()
        .filter(|s| s.0 == port)
        .map(|s| s.1)
        .collect();
    holder_of(&inodes)
}

/// Why a process group does not listen on one of its ports.
#[derive(Debug, PartialEq, Eq)]
pub enum NotListening {
    /// No socket listens on it.
    Nobody,
    /// Only other processes' sockets do: "pid 1234 (nginx)", or None when
    /// /proc does not show whose they are.
    Other(Option<String>),
}

/// Those of `ports` that process group `pgid` does not listen on.
pub fn not_listening(ports: &[u16], pgid: i32) -> Vec<(u16, NotListening)> {
    let all = listeners();
    let mut left: Vec<(u16, u64)> = all
        .iter()
        .copied()
        .filter(|s| ports.contains(&s.0))
        .collect();
    let seen_all = left.is_empty() || claim_for_group(&mut left, pgid);
    ports
        .iter()
        .filter_map(|&port| {
            if !all.iter().any(|s| s.0 == port) {
                return Some((port, NotListening::Nobody));
            }
            let theirs: Vec<u64> = left.iter().filter(|s| s.0 == port).map(|s| s.1).collect();
            (seen_all && !theirs.is_empty())
                .then(|| (port, NotListening::Other(holder_of(&theirs))))
        })
        .collect()
}

/// Drop from `left` (port, inode) every port that a member of group
/// `pgid` listens on. False when some member's descriptors could not be
/// read, so that what is left may be the group's too.
fn claim_for_group(left: &mut Vec<(u16, u64)>, pgid: i32) -> bool {
    if !crate::stragglers::proc_is_ours() {
        return false;
    }
    let mut seen_all = claim(left, pgid);
    if left.is_empty() {
        return true;
    }
    for pid in pids() {
        if pid != pgid && crate::stragglers::group_of(pid) == Some(pgid) {
            seen_all &= claim(left, pid);
            if left.is_empty() {
                return true;
            }
        }
    }
    seen_all
}

/// Drop from `left` every port with a socket among `pid`'s descriptors;
/// false when some could not be read.
fn claim(left: &mut Vec<(u16, u64)>, pid: i32) -> bool {
    let (inodes, seen_all) = sockets_of(pid);
    for inode in inodes {
        if let Some(&(port, _)) = left.iter().find(|s| s.1 == inode) {
            left.retain(|s| s.0 != port);
        }
    }
    seen_all
}

/// "pid 1234 (php-fpm)" for a process holding one of `inodes`.
fn holder_of(inodes: &[u64]) -> Option<String> {
    if inodes.is_empty() {
        return None;
    }
    let pid = pids().find(|&pid| sockets_of(pid).0.iter().any(|i| inodes.contains(i)))?;
    Some(format!("pid {pid} ({})", crate::stragglers::name_of(pid)))
}

/// The pids in /proc.
fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The socket inodes among `pid`'s descriptors, and whether every
/// descriptor could be read (one closed meanwhile hides nothing, nor does
/// a process that is gone).
fn sockets_of(pid: i32) -> (Vec<u64>, bool) {
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) => return (Vec::new(), e.kind() == ErrorKind::NotFound),
    };
    let (mut inodes, mut seen_all) = (Vec::new(), true);
    for fd in dir.flatten() {
        match std::fs::read_link(fd.path()) {
            Ok(link) => inodes.extend(link.to_str().and_then(|l| {
                l.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })),
            Err(e) => seen_all &= e.kind() == ErrorKind::NotFound,
        }
    }
    (inodes, seen_all)
}

/// (port, inode) of every socket in LISTEN state, IPv4 and IPv6.
fn listeners() -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(text.lines().skip(1).filter_map(parse_line));
        }
    }
    out
}

/// One line, if it is a listening socket: `sl local_address rem_address st
/// tx:rx tr:when retrnsmt uid timeout inode …`
fn parse_line(line: &str) -> Option<(u16, u64)> {
    let mut f = line.split_whitespace();
    let local = f.nth(1)?;
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    if f.nth(1)? != LISTEN {
        return None;
    }
    let inode = f.nth(5)?.parse().ok()?;
    (inode != 0).then_some((port, inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let l = "   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_line(l), Some((9000, 12345)));
        let established = l.replace(" 0A ", " 01 ");
        assert_eq!(parse_line(&established), None);
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("0: nothex:ZZZZ x 0A").is_none());
    }

    #[test]
    fn a_listening_port_is_seen_held_by_us_and_listened_on_by_our_group() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(held(port));
        let who = holder(port).expect("our own socket is found");
        assert!(
            who.starts_with(&format!("pid {} (", std::process::id())),
            "{who}"
        );
        let group = nix::unistd::getpgrp().as_raw();
        assert_eq!(not_listening(&[port], group), []);
        drop(l);
        assert!(!held(port));
        assert_eq!(
            not_listening(&[port], group),
            [(port, NotListening::Nobody)]
        );
    }

    #[test]
    fn an_ipv6_only_listener_is_seen() {
        // No IPv6 on this host: nothing to see.
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            return;
        };
        let port = l.local_addr().unwrap().port();
        assert!(held(port));
        assert!(holder(port).is_some());
    }
}
