//! Health state of one instance, Kubernetes-style: hysteresis on
//! consecutive results, an optional startup budget, and the probe schedule.
//! Pure: time comes in as arguments, so it is unit-tested without waiting.
//!
//! Invariants:
//! - A fresh `Tracker` (one per start of an instance) begins in `Starting`
//!   with empty counters, and its first probe is `initial_delay` after the
//!   start: a restart can never inherit the failures that caused it.
//! - `Healthy` is reached only by `success_threshold` consecutive real
//!   successes, never by a failure below the failure threshold.
//! - `Unhealthy` only after `failure_threshold` consecutive failures; with a
//!   `startup_timeout`, failures before the first success do not count, and
//!   no success within the budget is a failed start instead.

use std::time::{Duration, Instant};

/// What the API and metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No success yet since this start.
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Timings and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub initial_delay: Duration,
    pub period: Duration,
    /// Probe interval until the first success (the implicit ports check
    /// probes faster while starting; explicit checks use `period`).
    pub startup_period: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub startup_timeout: Option<Duration>,
}

/// A change worth acting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    BecameHealthy,
    BecameUnhealthy(String),
    /// No success within `startup_timeout`: a failed start.
    StartupFailed(String),
}

#[derive(Debug, Clone)]
pub struct Tracker {
    s: Settings,
    state: Health,
    ok_streak: u32,
    fail_streak: u32,
    started: Instant,
    next_at: Instant,
    last_error: Option<String>,
}

impl Tracker {
    pub fn new(s: Settings, started: Instant) -> Tracker {
        Tracker {
            s,
            state: Health::Starting,
            ok_streak: 0,
            fail_streak: 0,
            started,
            next_at: started + s.initial_delay,
            last_error: None,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the next probe is due.
    pub fn due(&self) -> Instant {
        self.next_at
    }

    /// Record a round that could not judge yet (declared ports not yet
    /// listening since this start): not ready, but no failure either —
    /// except that the startup budget still runs out.
    pub fn record_pending(&mut self, why: String, at: Instant, now: Instant) -> Change {
        self.ok_streak = 0;
        self.last_error = Some(why.clone());
        self.next_at = (at + self.s.startup_period).max(now);
        match self.s.startup_timeout {
            Some(budget)
                if self.state == Health::Starting
                    && now.saturating_duration_since(self.started) >= budget =>
            {
                self.state = Health::Unhealthy;
                Change::StartupFailed(format!(
                    "no successful health check within startup_timeout {}: {why}",
                    crate::config::format_duration(budget)
                ))
            }
            Some(_) | None => Change::None,
        }
    }

    /// Record a probe that started at `at` and ended at `now`.
    pub fn record(&mut self, outcome: Result<(), String>, at: Instant, now: Instant) -> Change {
        let change = match (self.state, outcome) {
            (state, Ok(())) => {
                self.fail_streak = 0;
                self.ok_streak = self.ok_streak.saturating_add(1);
                self.last_error = None;
                if state != Health::Healthy && self.ok_streak >= self.s.success_threshold {
                    self.state = Health::Healthy;
                    Change::BecameHealthy
                } else {
                    Change::None
                }
            }
            (Health::Starting, Err(e)) if self.s.startup_timeout.is_some() => {
                self.ok_streak = 0;
                self.last_error = Some(e.clone());
                let budget = self.s.startup_timeout.unwrap_or_default();
                if now.saturating_duration_since(self.started) >= budget {
                    self.state = Health::Unhealthy;
                    Change::StartupFailed(format!(
                        "no successful health check within startup_timeout {}: {e}",
                        crate::config::format_duration(budget)
                    ))
                } else {
                    Change::None
                }
            }
            (state, Err(e)) => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1);
                self.last_error = Some(e.clone());
                if state != Health::Unhealthy && self.fail_streak >= self.s.failure_threshold {
                    self.state = Health::Unhealthy;
                    Change::BecameUnhealthy(format!(
                        "{} consecutive failed health checks: {e}",
                        self.fail_streak
                    ))
                } else {
                    Change::None
                }
            }
        };
        self.schedule_next(at, now);
        change
    }

    /// A round whose probe could not run (sheepdog short of resources):
    /// nothing is counted, the next round comes at its period.
    pub fn skip(&mut self, at: Instant, now: Instant) {
        self.schedule_next(at, now);
    }

    fn schedule_next(&mut self, at: Instant, now: Instant) {
        let period = match self.state {
            Health::Starting => self.s.startup_period,
            Health::Healthy | Health::Unhealthy => self.s.period,
        };
        // Periods are measured from probe start; a slow probe never makes
        // the next one due in the past (no bursts).
        self.next_at = (at + period).max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(fail: u32, ok: u32, startup: Option<u64>) -> Settings {
        Settings {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(10),
            startup_period: Duration::from_secs(10),
            failure_threshold: fail,
            success_threshold: ok,
            startup_timeout: startup.map(Duration::from_secs),
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn fail() -> Result<(), String> {
        Err("refused".into())
    }

    #[test]
    fn first_probe_after_initial_delay_then_every_period() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(3, 1, None), t0);
        assert_eq!(t.due(), secs(t0, 5));
        t.record(Ok(()), secs(t0, 5), secs(t0, 6));
        assert_eq!(t.due(), secs(t0, 15), "measured from the probe's start");
        // A probe slower than the period: the next is due now, not earlier.
        t.record(Ok(()), secs(t0, 15), secs(t0, 40));
        assert_eq!(t.due(), secs(t0, 40));
    }

    #[test]
    fn failures_below_the_threshold_never_make_it_ready() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(3, 1, None), t0);
        assert_eq!(t.record(fail(), t0, t0), Change::None);
        assert_eq!(
            t.state(),
            Health::Starting,
            "a failure below threshold is not readiness"
        );
        assert_eq!(t.record(fail(), t0, t0), Change::None);
        assert!(
            matches!(t.record(fail(), t0, t0), Change::BecameUnhealthy(e) if e.contains("3 consecutive") && e.contains("refused"))
        );
        assert_eq!(t.state(), Health::Unhealthy);
        assert_eq!(t.last_error(), Some("refused"));
    }

    #[test]
    fn hysteresis_both_ways() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(2, 3, None), t0);
        for _ in 0..2 {
            assert_eq!(t.record(Ok(()), t0, t0), Change::None);
        }
        assert_eq!(t.record(Ok(()), t0, t0), Change::BecameHealthy);
        // One failure, then a success: the streak resets, still healthy.
        assert_eq!(t.record(fail(), t0, t0), Change::None);
        assert_eq!(t.record(Ok(()), t0, t0), Change::None);
        assert_eq!(t.record(fail(), t0, t0), Change::None);
        assert!(matches!(
            t.record(fail(), t0, t0),
            Change::BecameUnhealthy(_)
        ));
        // Recovering needs 3 successes in a row.
        t.record(Ok(()), t0, t0);
        t.record(Ok(()), t0, t0);
        t.record(fail(), t0, t0);
        t.record(Ok(()), t0, t0);
        t.record(Ok(()), t0, t0);
        assert_eq!(t.state(), Health::Unhealthy);
        assert_eq!(t.record(Ok(()), t0, t0), Change::BecameHealthy);
    }

    #[test]
    fn startup_budget_ignores_early_failures_then_fails_the_start() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(1, 1, Some(30)), t0);
        assert_eq!(t.record(fail(), secs(t0, 5), secs(t0, 5)), Change::None);
        assert_eq!(t.record(fail(), secs(t0, 15), secs(t0, 15)), Change::None);
        assert!(
            matches!(t.record(fail(), secs(t0, 35), secs(t0, 35)), Change::StartupFailed(e) if e.contains("startup_timeout 30s"))
        );
    }

    #[test]
    fn pending_rounds_are_neither_success_nor_failure() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(1, 1, None), t0);
        for _ in 0..5 {
            assert_eq!(
                t.record_pending("port 9000 not listening yet".into(), t0, t0),
                Change::None
            );
        }
        assert_eq!(t.state(), Health::Starting);
        assert_eq!(t.last_error(), Some("port 9000 not listening yet"));
        let mut budgeted = Tracker::new(settings(1, 1, Some(30)), t0);
        assert!(matches!(
            budgeted.record_pending("x".into(), t0, secs(t0, 31)),
            Change::StartupFailed(_)
        ));
    }

    #[test]
    fn after_the_first_success_liveness_counts_failures() {
        let t0 = Instant::now();
        let mut t = Tracker::new(settings(2, 1, Some(30)), t0);
        assert_eq!(t.record(Ok(()), t0, t0), Change::BecameHealthy);
        assert_eq!(t.record(fail(), t0, t0), Change::None);
        assert!(matches!(
            t.record(fail(), t0, t0),
            Change::BecameUnhealthy(_)
        ));
    }
}
