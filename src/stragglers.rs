//! The last step of a shutdown: end what is left of our descendants.
//!
//! A stop ends a process's whole group, but a descendant that made its
//! own session (`setsid`, a daemon's double fork, `start-stop-daemon
//! --background`) is in no group of ours. When its parent dies it is
//! re-parented to sheepdog (PID 1 or subreaper), and without this step it
//! would outlive the shutdown: holding the port its process listened on,
//! and the output pipe sheepdog then waits on. As a subreaper, it would
//! even outlive sheepdog.
//!
//! So once every process is down, a `Sweep` looks for children of ours that
//! nobody owns (stragglers, from `/proc/*/stat`), sends each one's group
//! SIGTERM (its own pid only if it does not lead a group), waits for them
//! up to `TERM_GRACE` (never past the shutdown deadline), then SIGKILL, then
//! gives up after `KILL_WAIT`. Killing one may orphan its own children in
//! other sessions: each time none is left, the scan is made again.
//!
//! Invariants:
//! - Only children of ours are signalled: a candidate from the scan is
//!   checked again and registered with the reaper under its lock
//!   (`Reaper::adopt`), so it is unreaped, and its pid not reused, when it
//!   is signalled; later signals go only to stragglers still registered.
//! - Every exit still goes through the one reaper: the sweep learns of them
//!   on its channel. No polling: it waits on that channel and one deadline.
//! - Bounded: at most `TERM_GRACE` + `KILL_WAIT`, and a second SIGTERM or the
//!   shutdown deadline moves straight to SIGKILL.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;

use crate::group;
use crate::reaper::{Exit, Reaper};

/// How long stragglers get between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for killed stragglers before giving up on them (one in
/// uninterruptible sleep, say).
pub const KILL_WAIT: Duration = Duration::from_secs(1);

/// A child of ours nobody owns, and the group it leads, if it leads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Straggler {
    pub pid: i32,
    pub pgid: i32,
}

impl Straggler {
    /// Whether `pid` is still a child of ours, from its `/proc` entry.
    pub fn still_ours(&self) -> bool {
        parent_and_group(self.pid).is_some_and(|(ppid, _)| ppid == our_pid())
    }

    /// Its whole group if it leads one; else itself alone, since the group
    /// it is in is not one we may assume to be ours.
    pub fn signal(&self, sig: Signal) {
        if self.pgid == self.pid {
            group::signal("straggler", self.pid, sig);
        } else {
            group::signal_main("straggler", self.pid, sig);
        }
    }
}

fn our_pid() -> i32 {
    // Pids fit in i32 (pid_max is at most 2^22).
    std::process::id() as i32
}

/// `(ppid, pgid)` from `/proc/<pid>/stat`, or None if the process is gone
/// or a zombie. The command name is in parentheses and may hold spaces and
/// parentheses itself, so the fields are read after the last `)`.
fn parent_and_group(pid: i32) -> Option<(i32, i32)> {
    use std::io::Read;
    // One read: the fields needed come well within the first 1 KiB (the
    // name is at most 64 bytes), and the scan reads every process's file.
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read(&mut buf))
        .ok()?;
    parse_stat(&buf[..n])
}

/// Bytes, not text: a process may give itself a name that is not UTF-8.
fn parse_stat(stat: &[u8]) -> Option<(i32, i32)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // A zombie has already ended: the reaper collects it as an orphan.
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((ppid, pgid))
}

/// Children of ours, from a scan of `/proc`. A child reaped meanwhile may
/// still be listed: `Reaper::adopt` checks each again.
pub fn scan() -> Vec<Straggler> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = our_pid();
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| match parent_and_group(pid) {
            Some((ppid, pgid)) if ppid == me => Some(Straggler { pid, pgid }),
            _ => None,
        })
        .collect()
}

fn left_over(n: usize) -> String {
    crate::logging::counted(n as u64, "left-over process", "left-over processes")
}

/// One sweep, driven by the supervisor's loop: `exits` and `deadline`
/// are its events.
pub struct Sweep {
    /// Adopted, signalled, not reaped yet. Few: a plain list.
    left: Vec<Straggler>,
    killing: bool,
    until: Instant,
    /// The time SIGTERM was given: `TERM_GRACE`, or less to keep within
    /// the shutdown deadline.
    grace: Duration,
    tx: Sender<Exit>,
    pub exits: Receiver<Exit>,
}

impl Sweep {
    /// Look for stragglers and signal them; None when there are none.
    /// `forced` (a second SIGTERM, the deadline passed) starts at SIGKILL.
    pub fn start(reaper: &Reaper, forced: bool, hard: Instant) -> Option<Sweep> {
        let (tx, exits) = crossbeam_channel::unbounded();
        let now = Instant::now();
        let grace = TERM_GRACE.min(hard.saturating_duration_since(now));
        let killing = forced || grace.is_zero();
        let mut sweep = Sweep {
            left: Vec::new(),
            killing,
            until: now + if killing { KILL_WAIT } else { grace },
            grace,
            tx,
            exits,
        };
        sweep.adopt_more(reaper).then_some(sweep)
    }

    /// When the current step runs out.
    pub fn deadline(&self) -> Instant {
        self.until
    }

    fn sig(&self) -> Signal {
        if self.killing {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        }
    }

    /// Scan again, adopt and signal what is found; false if none was.
    fn adopt_more(&mut self, reaper: &Reaper) -> bool {
        let found = reaper.adopt(scan(), &self.tx, self.sig());
        if found.is_empty() {
            return false;
        }
        let pids: Vec<String> = found.iter().map(|s| s.pid.to_string()).collect();
        log::warn!(
            event = "stragglers", count = found.len() as u64, signal = self.sig().as_str();
            "{} still running outside the stopped process groups (pid {}): sending {}",
            left_over(found.len()),
            pids.join(", "),
            self.sig()
        );
        self.left.extend(found);
        true
    }

    /// A straggler was reaped. True when the sweep is over.
    pub fn on_exit(&mut self, exit: Exit, reaper: &Reaper) -> bool {
        if let Some(i) = self.left.iter().position(|s| s.pid == exit.pid) {
            self.left.swap_remove(i);
            log::info!("left-over pid {} ended ({})", exit.pid, exit.status);
        }
        self.left.is_empty() && !self.adopt_more(reaper)
    }

    /// The current step ran out. True when the sweep is over.
    pub fn on_deadline(&mut self, reaper: &Reaper) -> bool {
        if self.killing {
            let pids: Vec<String> = self.left.iter().map(|s| s.pid.to_string()).collect();
            log::warn!(
                "gave up on {} still alive {} after SIGKILL (pid {})",
                left_over(self.left.len()),
                crate::config::format_duration(KILL_WAIT),
                pids.join(", ")
            );
            return true;
        }
        log::warn!(
            "{} still alive after {}: sending SIGKILL",
            left_over(self.left.len()),
            crate::config::format_duration(self.grace)
        );
        self.force(reaper);
        false
    }

    /// Straight to SIGKILL (a second SIGTERM, the shutdown deadline).
    pub fn force(&mut self, reaper: &Reaper) {
        if self.killing {
            return;
        }
        self.killing = true;
        self.until = Instant::now() + KILL_WAIT;
        reaper.signal_adopted(&self.left, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis_and_zombies_skipped() {
        assert_eq!(parse_stat(b"42 (sleep) S 1 42 42 0 -1"), Some((1, 42)));
        assert_eq!(parse_stat(b"7 (a) b) (c) R 3 9 9 0"), Some((3, 9)));
        assert_eq!(parse_stat(b"7 (\xff\xfe) S 3 9 9 0"), Some((3, 9)));
        assert_eq!(parse_stat(b"7 (x) Z 3 9 9 0"), None);
        assert_eq!(parse_stat(b"7 (x"), None);
        assert_eq!(parse_stat(b"7 (x) S"), None);
    }

    #[test]
    fn the_scan_finds_a_child_and_its_group() {
        // `sleep` leads no group of its own here: it is in ours.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let found = scan();
        let _ = child.kill();
        let _ = child.wait();
        let me = nix::unistd::getpgrp().as_raw();
        assert!(
            found.contains(&Straggler { pid, pgid: me }),
            "{found:?} lacks {pid}"
        );
    }
}
