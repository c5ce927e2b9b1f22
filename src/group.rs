//! A process group treated as one unit: signal it, ask whether it is
//! empty, stop it.
//!
//! Every managed child leads its own group (`sys::spawn_clean`), so "the
//! process" is the group. `Stop` is the one stop sequence, driven by
//! instances (`instance`) and scheduled runs (`scheduler::run`) with their
//! own events: the stop signal, `kill_signal` at the timeout, SIGKILL
//! `KILL_GRACE` later if `kill_signal` is another signal, then at most
//! `KILL_GRACE` for the group to drain.
//!
//! Invariants:
//! - A group is signalled only while its leader is unreaped or within the
//!   drain that follows its reaping, so the pgid cannot have been reused by
//!   an unrelated group.
//! - Every signal of a stop but SIGKILL is followed by SIGCONT, so a
//!   group paused with SIGSTOP still gets to handle it.
//! - Every stop ends in SIGKILL unless the group empties first: a
//!   `kill_signal` of the operator's choice (SIGQUIT for a core dump, say)
//!   may be caught or ignored, so SIGKILL follows it. A forced stop (the
//!   global deadline, a second SIGTERM) sends SIGKILL at once.
//! - A stop ends only when the group is empty after its leader was reaped,
//!   or after `KILL_GRACE` past SIGKILL (logged as giving up): every stop is
//!   bounded by `timeout + KILL_GRACE`, or `timeout + 2 × KILL_GRACE` with
//!   a `kill_signal` other than SIGKILL.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::config::Shutdown;
use crate::reaper::ExitStatus;

/// How long to wait for a group to vanish after the kill signal (and after
/// SIGKILL, when the kill signal was another).
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

/// Send a stop signal to group `pgid`, then SIGCONT: a group paused with
/// SIGSTOP (through `ctl signal`, a debugger, a `docker pause` gone wrong)
/// would otherwise hold the signal pending until its kill, and never run
/// its handler. s6, runit and systemd do the same.
fn signal_stop(owner: &str, pgid: i32, sig: Signal) {
    signal(owner, pgid, sig);
    if !matches!(sig, Signal::SIGKILL | Signal::SIGCONT) {
        signal(owner, pgid, Signal::SIGCONT);
    }
}

/// Who a signal reaches: one sent on request (API, `ctl signal`), or one
/// forwarded in single-command mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// Every process in the instance's group (the default).
    Group,
    /// Only the process sheepdog started, the group's leader: what a
    /// master/worker daemon expects for a reload (php-fpm's workers die of
    /// a USR1 or USR2 of their own; the master passes it on as it should).
    Main,
}

/// Send `sig` to the leader `pid` only, while it is unreaped (so the pid
/// is still ours); one that has just exited is not an error.
pub fn signal_main(owner: &str, pid: i32, sig: Signal) {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("{owner}: unable to send {sig} to pid {pid}: {e}"),
    }
}

/// True while any process is left in group `pgid` (EPERM: it exists but
/// runs as another user, so it is alive too).
pub fn alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Stopping one process group. Plain data plus the signals it sends; the
/// owner feeds it the leader's exit, kill requests and timer wake-ups
/// (`wake_at`) and calls `advance` after each.
#[derive(Debug)]
pub struct Stop {
    pub pgid: i32,
    /// The leader's status once it has been reaped.
    pub leader: Option<ExitStatus>,
    timeout: Duration,
    kill_signal: Signal,
    deadline: Instant,
    /// The last signal of the sequence sent so far.
    sent: Sent,
    /// Draining after the leader was reaped: no event says when the last
    /// member goes, so check with a doubling interval.
    poll: Duration,
    next_poll: Instant,
}

/// How far a stop's signals have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The stop signal.
    Stop,
    /// A `kill_signal` that is not SIGKILL.
    KillSignal,
    /// SIGKILL: nothing is left to send.
    Sigkill,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Leader reaped and the group empty.
    Empty,
    /// Still not empty `KILL_GRACE` after the kill signal.
    GaveUp,
}

/// What `Stop::step` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Wait,
    /// Send the kill signal: `kill_signal`, or SIGKILL after it.
    Kill,
    Done(Ending),
}

impl Stop {
    /// Start stopping group `pgid` as `shutdown` says: its stop signal now
    /// (or, with `kill_now`, SIGKILL). `leader` is the status when
    /// the leader has already been reaped (cleaning up after a crash).
    pub fn begin(
        owner: &str,
        pgid: i32,
        shutdown: &Shutdown,
        leader: Option<ExitStatus>,
        kill_now: bool,
        now: Instant,
    ) -> Stop {
        let mut stop = Stop {
            pgid,
            leader,
            timeout: shutdown.timeout,
            kill_signal: shutdown.kill_signal,
            deadline: now + shutdown.timeout,
            sent: Sent::Stop,
            poll: DRAIN_POLL_MIN,
            next_poll: now + DRAIN_POLL_MIN,
        };
        if kill_now {
            stop.kill(owner, now);
        } else {
            signal_stop(owner, pgid, shutdown.signal);
        }
        stop
    }

    /// The leader was reaped: start checking for an empty group at once.
    pub fn leader_exited(&mut self, status: ExitStatus, now: Instant) {
        self.leader = Some(status);
        self.poll = DRAIN_POLL_MIN;
        self.next_poll = now;
    }

    /// SIGKILL now (a forced stop), unless it was already sent.
    pub fn kill(&mut self, owner: &str, now: Instant) {
        if self.sent != Sent::Sigkill {
            self.send(owner, Signal::SIGKILL, now);
        }
    }

    /// Whether SIGKILL has been sent: nothing more can be done but wait.
    pub fn killed(&self) -> bool {
        self.sent == Sent::Sigkill
    }

    /// The next signal of the sequence, and how long the one before it
    /// was given: `kill_signal` after the timeout, then SIGKILL after
    /// `KILL_GRACE` if `kill_signal` was another signal.
    fn next_signal(&self) -> (Signal, Duration) {
        match self.sent {
            Sent::Stop => (self.kill_signal, self.timeout),
            Sent::KillSignal | Sent::Sigkill => (Signal::SIGKILL, KILL_GRACE),
        }
    }

    fn send(&mut self, owner: &str, sig: Signal, now: Instant) {
        signal_stop(owner, self.pgid, sig);
        self.sent = if sig == Signal::SIGKILL {
            Sent::Sigkill
        } else {
            Sent::KillSignal
        };
        self.deadline = now + KILL_GRACE;
    }

    /// When `advance` must run next, if nothing else happens first.
    pub fn wake_at(&self) -> Instant {
        if self.leader.is_some() {
            self.deadline.min(self.next_poll)
        } else {
            self.deadline
        }
    }

    /// Check on the group: escalate at the timeout, finish when it is empty
    /// or when the grace after the kill signal is over.
    pub fn advance(&mut self, owner: &str, now: Instant) -> Option<Ending> {
        let empty = self.leader.is_some() && !alive(self.pgid);
        match self.step(now, empty) {
            Step::Wait => None,
            Step::Kill => {
                let (sig, after) = self.next_signal();
                // "after 10s" is the stop timeout; after a kill signal that
                // did not end it, say which.
                let ignored = match self.sent {
                    Sent::Stop => String::new(),
                    Sent::KillSignal | Sent::Sigkill => format!(" of {}", self.kill_signal),
                };
                log::warn!(
                    event = "killing", instance = owner, pid = self.pgid, signal = sig.as_str();
                    "{owner}: process group {} still running after {}{ignored}; sending {sig}",
                    self.pgid,
                    crate::config::format_duration(after),
                );
                self.send(owner, sig, now);
                None
            }
            Step::Done(Ending::GaveUp) => {
                log::error!(
                    "{owner}: process group {} not empty {}s after SIGKILL; giving up on it \
                     (a process in uninterruptible sleep?)",
                    self.pgid,
                    KILL_GRACE.as_secs(),
                );
                Some(Ending::GaveUp)
            }
            Step::Done(ending) => Some(ending),
        }
    }

    /// The decision alone, given whether the group is known to be empty.
    fn step(&mut self, now: Instant, empty: bool) -> Step {
        if empty {
            return Step::Done(Ending::Empty);
        }
        if now >= self.deadline {
            return if self.killed() {
                Step::Done(Ending::GaveUp)
            } else {
                Step::Kill
            };
        }
        if self.leader.is_some() && now >= self.next_poll {
            self.poll = (self.poll * 2).min(DRAIN_POLL_MAX);
            self.next_poll = now + self.poll;
        }
        Step::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SIGTERM, then `kill_signal` after 10 s.
    fn sequence(kill_signal: Signal) -> Shutdown {
        Shutdown {
            signal: Signal::SIGTERM,
            timeout: Duration::from_secs(10),
            kill_signal,
            pre_stop_hook: None,
        }
    }

    /// A stop of a group that cannot exist, so `begin` and `kill` signal
    /// nothing (ESRCH is not an error).
    fn stop(leader: Option<ExitStatus>, now: Instant) -> Stop {
        Stop::begin(
            "t",
            i32::MAX,
            &sequence(Signal::SIGKILL),
            leader,
            false,
            now,
        )
    }

    #[test]
    fn escalates_at_the_timeout_then_gives_up_after_the_grace() {
        let t0 = Instant::now();
        let mut s = stop(None, t0);
        assert_eq!(s.wake_at(), t0 + Duration::from_secs(10));
        assert_eq!(s.step(t0 + Duration::from_secs(9), false), Step::Wait);
        assert_eq!(s.step(t0 + Duration::from_secs(10), false), Step::Kill);
        let t1 = t0 + Duration::from_secs(10);
        s.kill("t", t1);
        assert!(s.killed());
        assert_eq!(s.wake_at(), t1 + KILL_GRACE);
        assert_eq!(s.step(t1 + KILL_GRACE / 2, false), Step::Wait);
        assert_eq!(s.step(t1 + KILL_GRACE, false), Step::Done(Ending::GaveUp));
    }

    #[test]
    fn a_kill_signal_other_than_sigkill_is_followed_by_sigkill() {
        let t0 = Instant::now();
        let sd = sequence(Signal::SIGINT);
        let mut s = Stop::begin("t", i32::MAX, &sd, None, false, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.step(t1, false), Step::Kill);
        assert_eq!(s.next_signal(), (Signal::SIGINT, sd.timeout));
        s.send("t", Signal::SIGINT, t1);
        assert!(!s.killed(), "SIGINT is not the end of the sequence");
        let t2 = t1 + KILL_GRACE;
        assert_eq!(s.step(t2, false), Step::Kill);
        assert_eq!(s.next_signal(), (Signal::SIGKILL, KILL_GRACE));
        s.send("t", Signal::SIGKILL, t2);
        assert!(s.killed());
        assert_eq!(s.step(t2 + KILL_GRACE, false), Step::Done(Ending::GaveUp));
    }

    #[test]
    fn a_forced_stop_is_sigkill_whatever_the_kill_signal() {
        let t0 = Instant::now();
        let sd = sequence(Signal::SIGQUIT);
        assert!(Stop::begin("t", i32::MAX, &sd, None, true, t0).killed());
        let mut s = Stop::begin("t", i32::MAX, &sd, None, false, t0);
        s.kill("t", t0);
        assert!(s.killed());
        assert_eq!(s.wake_at(), t0 + KILL_GRACE);
    }

    #[test]
    fn an_empty_group_ends_the_stop_whenever_it_is_seen() {
        let t0 = Instant::now();
        let mut s = stop(None, t0);
        s.kill("t", t0);
        assert_eq!(s.step(t0, true), Step::Done(Ending::Empty));
    }

    #[test]
    fn draining_polls_with_a_doubling_interval_capped_at_the_maximum() {
        let t0 = Instant::now();
        let mut s = stop(None, t0);
        s.leader_exited(ExitStatus::Code(0), t0);
        assert_eq!(s.wake_at(), t0, "the first check is immediate");
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            assert_eq!(s.step(now, false), Step::Wait);
            gaps.push(s.wake_at() - now);
            now = s.wake_at();
        }
        let ms: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [2, 4, 8, 16, 32, 50, 50, 50]);
    }

    #[test]
    fn without_a_reaped_leader_only_the_deadline_wakes() {
        let t0 = Instant::now();
        let s = stop(None, t0);
        assert_eq!(s.wake_at(), t0 + Duration::from_secs(10));
        let s = stop(Some(ExitStatus::Code(1)), t0);
        assert_eq!(s.wake_at(), t0 + DRAIN_POLL_MIN);
    }
}
