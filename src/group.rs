//! A process group treated as one unit: signal it, ask whether it is empty.
//!
//! Every managed child leads its own group (`sys::spawn_clean`), so "the
//! process" is the group. Used by instances (`instance`) and scheduled runs
//! (`scheduler::run`), which stop a group the same way: the stop signal,
//! `kill_signal` at the timeout, then at most `KILL_GRACE` for the group to
//! drain.
//!
//! Invariant: a group is signalled only while its leader is unreaped or
//! within the drain that follows its reaping, so the pgid cannot have been
//! reused by an unrelated group.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long to wait for a group to vanish after the kill signal.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Polling the group empty after its leader was reaped: no event says when
/// the last member goes, so check with a doubling interval, first and
/// longest.
pub const DRAIN_POLL_MIN: Duration = Duration::from_millis(1);
pub const DRAIN_POLL_MAX: Duration = Duration::from_millis(50);

/// Send `sig` to group `pgid`; an already empty group is not an error.
/// `owner` names the instance or run in the warning.
pub fn signal(owner: &str, pgid: i32, sig: Signal) {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("{owner}: unable to send {sig} to process group {pgid}: {e}"),
    }
}

/// True while any process is left in group `pgid` (EPERM: it exists but
/// runs as another user, so it is alive too).
pub fn alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}
