//! The history of oneshot runs (`GET /api/v1/oneshot/history`): one entry
//! per child of a `type: oneshot` process, from start to exit, with what
//! started it.
//!
//! Invariants:
//! - Written only by the supervisor thread, from instance reports.
//! - Bounded: at most `oneshot_history_max_entries` entries (oldest go
//!   first), and entries that ended longer than `oneshot_history_max_age`
//!   ago are dropped (at the next change, and never shown).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::reaper::ExitStatus;
use crate::sorted_map::SortedMap;
use crate::status::{unix_seconds, OneshotRun};

pub(super) struct History {
    max_entries: usize,
    max_age: Duration,
    entries: VecDeque<(u64, OneshotRun)>,
    /// The entry of each instance's running child, by (process, index),
    /// and its start on the monotonic clock: a duration is not moved by a
    /// clock step during the run (an NTP correction, `date -s`).
    open: SortedMap<(String, u32), (u64, Instant)>,
    /// What will have started an instance's next child.
    next_trigger: SortedMap<(String, u32), &'static str>,
    next_key: u64,
}

impl History {
    pub(super) fn new(max_entries: u32, max_age: Duration) -> History {
        History {
            max_entries: max_entries as usize,
            max_age,
            entries: VecDeque::new(),
            open: SortedMap::default(),
            next_trigger: SortedMap::default(),
            next_key: 0,
        }
    }

    /// The next start of `process`'s instances 1..=n is a manual one.
    pub(super) fn mark(&mut self, process: &str, n: u32, trigger: &'static str) {
        for i in 1..=n {
            self.next_trigger.insert(key(process, i), trigger);
        }
    }

    /// The instance's restart policy scheduled another start.
    pub(super) fn mark_restart(&mut self, process: &str, index: u32) {
        self.next_trigger.insert(key(process, index), "restart");
    }

    fn push(&mut self, run: OneshotRun) -> u64 {
        self.next_key += 1;
        self.entries.push_back((self.next_key, run));
        self.prune(SystemTime::now());
        self.next_key
    }

    fn prune(&mut self, now: SystemTime) {
        while self.entries.len() > self.max_entries {
            self.entries.pop_front();
        }
        let oldest = unix_seconds(now) - self.max_age.as_secs_f64();
        self.entries
            .retain(|(_, r)| r.ended_at.is_none_or(|t| t >= oldest));
    }

    fn trigger(&mut self, process: &str, index: u32) -> &'static str {
        self.next_trigger
            .remove(&key(process, index))
            .unwrap_or("startup")
    }

    pub(super) fn started(&mut self, process: &str, index: u32) {
        let trigger = self.trigger(process, index);
        let entry = self.push(OneshotRun {
            process: process.to_string(),
            instance: format!("{process}-{index}"),
            trigger: trigger.into(),
            started_at: unix_seconds(SystemTime::now()),
            result: "running".into(),
            ..OneshotRun::default()
        });
        self.open
            .insert(key(process, index), (entry, Instant::now()));
    }

    pub(super) fn spawn_failed(&mut self, process: &str, index: u32, error: &str) {
        let trigger = self.trigger(process, index);
        let now = unix_seconds(SystemTime::now());
        self.push(OneshotRun {
            process: process.to_string(),
            instance: format!("{process}-{index}"),
            trigger: trigger.into(),
            started_at: now,
            ended_at: Some(now),
            duration_seconds: Some(0.0),
            result: "failed_to_start".into(),
            error: Some(error.to_string()),
            ..OneshotRun::default()
        });
    }

    /// `stopped`: it exited as it was being stopped (a request, the
    /// shutdown): intentional, whatever its status.
    pub(super) fn exited(&mut self, process: &str, index: u32, status: ExitStatus, stopped: bool) {
        let Some((entry, since)) = self.open.remove(&key(process, index)) else {
            return;
        };
        let now = SystemTime::now();
        if let Some((_, r)) = self.entries.iter_mut().rev().find(|(k, _)| *k == entry) {
            r.ended_at = Some(unix_seconds(now));
            r.duration_seconds = Some(since.elapsed().as_secs_f64());
            match status {
                ExitStatus::Code(c) => r.exit_code = Some(c),
                ExitStatus::Signal { signal, .. } => r.signal = Some(signal),
            }
            r.result = match (status.success(), stopped) {
                (true, _) => "success",
                (false, true) => "stopped",
                (false, false) => "failure",
            }
            .into();
        }
        self.prune(now);
    }

    /// Oldest first, without entries past the age limit.
    pub(super) fn snapshot(&self, now: SystemTime) -> Vec<OneshotRun> {
        let oldest = unix_seconds(now) - self.max_age.as_secs_f64();
        self.entries
            .iter()
            .filter(|(_, r)| r.ended_at.is_none_or(|t| t >= oldest))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// The key of instance (`process`, `index`).
fn key(process: &str, index: u32) -> (String, u32) {
    (process.to_string(), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_triggered() {
        let mut h = History::new(2, Duration::from_secs(3600));
        h.started("migrate", 1);
        h.exited("migrate", 1, ExitStatus::Code(1), false);
        h.mark_restart("migrate", 1);
        h.started("migrate", 1);
        h.exited("migrate", 1, ExitStatus::Code(0), false);
        h.mark("migrate", 1, "manual");
        h.started("migrate", 1);
        let s = h.snapshot(SystemTime::now());
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].trigger.as_str(), s[0].result.as_str(), s[0].exit_code),
            ("restart", "success", Some(0))
        );
        assert_eq!(
            (s[1].trigger.as_str(), s[1].result.as_str()),
            ("manual", "running")
        );
        // Age: an entry that ended long ago is not shown.
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(h.snapshot(later).len(), 1);
    }

    #[test]
    fn a_clock_step_during_a_run_does_not_change_its_duration() {
        let mut h = History::new(4, Duration::from_secs(3600));
        h.started("migrate", 1);
        // The wall clock was set forward a day while it ran.
        let day = 86_400.0;
        h.entries[0].1.started_at -= day;
        h.exited("migrate", 1, ExitStatus::Code(0), false);
        let took = h.entries[0].1.duration_seconds.unwrap_or(day);
        assert!(took < 60.0, "{took}");
    }
}
