//! The cron scheduler: when each scheduled job is due. It decides *when*;
//! the supervisor decides *whether* (paused, concurrency limit, shutdown)
//! and starts the run (`run.rs`).
//!
//! Invariants:
//! - No tick. The scheduler thread blocks on its inbox with one deadline:
//!   the earliest due time (or jittered start) of any job. A clock step
//!   wakes it at once (`steps`: a timerfd with TFD_TIMER_CANCEL_ON_SET); only
//!   where that is unavailable is the deadline at most `RECHECK` away, so a clock
//!   step is noticed within a minute (cron's own resolution); `@every`
//!   jobs run on the monotonic clock and need no re-check, so a
//!   configuration with only `@every` jobs wakes exactly when one is due.
//! - Cron due times come from the wall clock (`SystemTime`) in the job's
//!   time zone; the planner compares the wall clock with the monotonic
//!   clock at every wake-up to detect steps. A step forward never fires a
//!   burst of the runs it skipped: at most one `catch_up` run when
//!   `schedule_catch_up` is set, none otherwise; but a step of at most
//!   `SMALL_STEP` (an NTP correction) runs a due time it passed, once. A step backward never
//!   repeats a run of a job with fixed hours: the next due time is kept (a
//!   step back of more than `BIG_STEP_BACK` is a clock reset, and due
//!   times are recomputed); a job whose hour field is `*` keeps its pace
//!   in real time instead (next run when it would have been, on the new
//!   clock), as through a fall-back change.
//! - A late wake-up (a busy machine) fires a due job once, never once per
//!   missed slot.
//! - `Planner` is pure: it is given the time (`Clock`), so every rule
//!   above is unit-tested without waiting.
//! - Daylight saving (`next_after`): a time that falls in a spring-forward
//!   gap runs once, at the transition (the first valid instant after it);
//!   a time that occurs twice in a fall-back repeat runs once, at its first
//!   occurrence. Jobs whose hour field is `*` or `*/n` follow real time
//!   instead (every 15 minutes stays every 15 minutes through both
//!   changes), like cronie.

pub mod run;
mod steps;
mod zone;

#[cfg(all(test, feature = "cron"))]
use zone::next_after;
pub use zone::{describe as describe_zone, name as zone_name, time_zone, Zone};

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::cron::Cron;
use crate::config::extra::{Schedule, ScheduleSpec};

/// With wall-clock jobs, re-read the clocks at least this often.
pub const RECHECK: Duration = Duration::from_secs(60);
/// A wall/monotonic disagreement larger than this is a clock step.
pub const STEP: Duration = Duration::from_secs(5);
/// A step forward of at most this (an NTP correction) still runs a due
/// time it passed, once and late, as a late wake-up does: cron's own
/// resolution. Only a longer step skips (or catches up) what it passed.
pub const SMALL_STEP: Duration = Duration::from_secs(60);
/// A step back larger than this resets due times.
pub const BIG_STEP_BACK: Duration = Duration::from_secs(3 * 3600);

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    Schedule,
    Manual,
    CatchUp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }
}

/// What the planner knows about one job.
#[derive(Debug, Clone)]
pub enum Spec {
    Cron { cron: Cron, tz: Zone },
    Every(Duration),
}

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub spec: Spec,
    pub catch_up: bool,
    pub jitter: Duration,
}

impl JobSpec {
    /// From a job's configuration (validated at load: the expression
    /// parses, the zone exists).
    pub fn from_config(name: &str, s: &Schedule) -> Result<JobSpec, String> {
        let spec = match &s.spec {
            ScheduleSpec::Cron(text) => Spec::Cron {
                cron: Cron::parse(text)?,
                tz: time_zone(&s.timezone)?,
            },
            ScheduleSpec::Every(d) => Spec::Every(*d),
        };
        Ok(JobSpec {
            name: name.to_string(),
            spec,
            catch_up: s.catch_up,
            jitter: s.jitter,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Wall(SystemTime),
    Mono(Instant),
    Never,
}

/// A run the planner wants started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub job: String,
    pub trigger: Trigger,
}

/// Both clocks, read together.
pub trait Clock {
    fn wall(&self) -> SystemTime;
    fn mono(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn mono(&self) -> Instant {
        Instant::now()
    }
}

/// A tiny PRNG for jitter (xorshift64*), seeded from the time and pid.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in [0, max).
    pub fn below(&mut self, max: Duration) -> Duration {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.next() % ms)
    }
}

/// Due times for every job, from the clocks it is given.
pub struct Planner {
    jobs: Vec<(JobSpec, Due)>,
    last_wall: SystemTime,
    last_mono: Instant,
    rng: Rng,
    /// Jittered starts waiting: (when, fire).
    pending: Vec<(Instant, Fire)>,
    /// Clock steps are announced (`steps::watch`): no need to re-read the
    /// clocks every `RECHECK` while waiting for a wall-clock due time.
    steps_announced: bool,
}

fn wall_next(cron: &Cron, tz: &Zone, after: SystemTime) -> Due {
    zone::next_wall(cron, tz, after).map_or(Due::Never, Due::Wall)
}

/// Signed `a - b`.
fn diff(a: SystemTime, b: SystemTime) -> (bool, Duration) {
    match a.duration_since(b) {
        Ok(d) => (true, d),
        Err(e) => (false, e.duration()),
    }
}

/// A job's first due time, planned at (`wall`, `mono`).
fn first_due(j: &JobSpec, wall: SystemTime, mono: Instant) -> Due {
    match &j.spec {
        Spec::Cron { cron, tz } => wall_next(cron, tz, wall),
        Spec::Every(d) => Due::Mono(mono + *d),
    }
}

impl Planner {
    pub fn new(specs: Vec<JobSpec>, wall: SystemTime, mono: Instant, rng: Rng) -> Planner {
        let jobs = specs
            .into_iter()
            .map(|j| {
                let due = first_due(&j, wall, mono);
                (j, due)
            })
            .collect();
        Planner {
            steps_announced: false,
            jobs,
            last_wall: wall,
            last_mono: mono,
            rng,
            pending: Vec::new(),
        }
    }

    /// A new job list (a reload): a job it already had and not in `fresh`
    /// keeps its due time and a jittered start it waits for; the others
    /// are planned from now. Removed jobs' waiting starts are dropped.
    pub fn update(
        &mut self,
        specs: Vec<JobSpec>,
        fresh: &[String],
        wall: SystemTime,
        mono: Instant,
    ) {
        let mut old = std::mem::take(&mut self.jobs);
        for j in specs {
            let kept = old
                .iter()
                .position(|(o, _)| o.name == j.name)
                .map(|i| old.swap_remove(i).1)
                .filter(|_| !fresh.contains(&j.name));
            let due = kept.unwrap_or_else(|| first_due(&j, wall, mono));
            self.jobs.push((j, due));
        }
        let jobs = &self.jobs;
        self.pending.retain(|(_, f)| {
            jobs.iter()
                .any(|(j, _)| j.name == f.job && !fresh.contains(&j.name))
        });
    }

    /// Advance to (`wall`, `mono`): the runs to start now.
    pub fn wake(&mut self, wall: SystemTime, mono: Instant) -> Vec<Fire> {
        let expected = self.last_wall + mono.saturating_duration_since(self.last_mono);
        let (forward, by) = diff(wall, expected);
        let stepped_forward = forward && by > STEP;
        let reset_back = !forward && by > BIG_STEP_BACK;
        if stepped_forward {
            log::warn!(
                "scheduler: the wall clock stepped forward by {}",
                crate::config::format_elapsed(by)
            );
        } else if !forward && by > STEP {
            log::warn!(
                "scheduler: the wall clock stepped back by {}{}",
                crate::config::format_elapsed(by),
                if reset_back {
                    "; recomputing every schedule"
                } else {
                    "; runs already done are not repeated"
                }
            );
        }
        let mut fires = Vec::new();
        for (job, due) in &mut self.jobs {
            match (*due, &job.spec) {
                (Due::Mono(at), Spec::Every(period)) if mono >= at => {
                    fires.push((job.jitter, fire(job, Trigger::Schedule)));
                    let mut next = at + *period;
                    if next <= mono {
                        // Late by more than a period: no burst.
                        next = mono + *period;
                    }
                    *due = Due::Mono(next);
                }
                (Due::Wall(at), Spec::Cron { cron, tz }) if wall >= at => {
                    if stepped_forward && by > SMALL_STEP && at > expected {
                        if job.catch_up {
                            log::info!(
                                "{}: the clock step skipped its run; catching up once",
                                job.name
                            );
                            fires.push((job.jitter, fire(job, Trigger::CatchUp)));
                        } else {
                            log::info!(
                                "{}: the clock step skipped its due time(s) from {}; not catching up (schedule_catch_up is off)",
                                job.name,
                                crate::logging::rfc3339_millis(at)
                            );
                        }
                    } else {
                        fires.push((job.jitter, fire(job, Trigger::Schedule)));
                    }
                    *due = wall_next(cron, tz, wall);
                }
                (Due::Wall(_) | Due::Never, Spec::Cron { cron, tz }) if reset_back => {
                    *due = wall_next(cron, tz, wall);
                }
                // Stepped back: a job that follows real time (hour `*`)
                // is due when it would have been without the step, at the
                // first matching minute from there on the new clock.
                (Due::Wall(at), Spec::Cron { cron, tz })
                    if !forward && by > STEP && cron.hour_star =>
                {
                    let then = at
                        .checked_sub(by + Duration::from_millis(1))
                        .unwrap_or(wall);
                    *due = wall_next(cron, tz, then);
                }
                (Due::Wall(_) | Due::Mono(_) | Due::Never, Spec::Cron { .. } | Spec::Every(_)) => {}
            }
        }
        for (jitter, f) in fires {
            let delay = self.rng.below(jitter);
            if delay.is_zero() {
                self.pending.push((mono, f));
            } else {
                log::debug!(
                    "{}: starting after a jitter of {}",
                    f.job,
                    crate::config::format_duration(delay)
                );
                self.pending.push((mono + delay, f));
            }
        }
        let (now, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, _)| *at <= mono);
        self.pending = later;
        self.last_wall = wall;
        self.last_mono = mono;
        now.into_iter().map(|(_, f)| f).collect()
    }

    /// When to wake next (None: nothing is ever due).
    /// Clock steps will be announced: wait for wall-clock due times
    /// without re-reading the clocks on the way.
    pub fn steps_announced(&mut self) {
        self.steps_announced = true;
    }

    fn without_step_watch(mut self) -> Planner {
        self.steps_announced = false;
        self
    }

    pub fn next_wake(&self, wall: SystemTime, mono: Instant) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        let mut consider = |t: Instant| best = Some(best.map_or(t, |b| b.min(t)));
        for (_, due) in &self.jobs {
            match due {
                Due::Mono(at) => consider(*at),
                Due::Wall(at) => {
                    let left = at.duration_since(wall).unwrap_or(Duration::ZERO);
                    let left = if self.steps_announced {
                        left
                    } else {
                        left.min(RECHECK)
                    };
                    consider(mono + left);
                }
                Due::Never => {}
            }
        }
        for (at, _) in &self.pending {
            consider(*at);
        }
        best
    }

    /// Each job's next due time on the wall clock.
    pub fn next_runs(&self, wall: SystemTime, mono: Instant) -> Vec<(String, Option<SystemTime>)> {
        self.jobs
            .iter()
            .map(|(job, due)| {
                let at = match due {
                    Due::Wall(t) => Some(*t),
                    Due::Mono(t) => Some(wall + t.saturating_duration_since(mono)),
                    Due::Never => None,
                };
                (job.name.clone(), at)
            })
            .collect()
    }
}

fn fire(job: &JobSpec, trigger: Trigger) -> Fire {
    Fire {
        job: job.name.clone(),
        trigger,
    }
}

/// What the scheduler thread tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Due(Fire),
    /// A job's next due time changed.
    Next {
        job: String,
        at: Option<SystemTime>,
    },
}

/// What the supervisor tells the scheduler thread.
#[derive(Debug)]
pub enum Order {
    /// The job list changed (a reload): see `Planner::update`.
    Jobs {
        specs: Vec<JobSpec>,
        fresh: Vec<String>,
    },
    /// Shutdown: no more due times.
    Stop,
}

/// The running scheduler thread. `Order::Stop`, or dropping `inbox`, ends
/// it. It runs once per sheepdog: each start also starts a clock-step
/// watcher that ends only when the clock is set.
pub struct Handle {
    pub inbox: Sender<Order>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Start the scheduler thread for `specs`, reporting on `out`.
pub fn start(
    specs: Vec<JobSpec>,
    clock: Box<dyn Clock + Send>,
    out: Sender<Msg>,
) -> std::io::Result<Handle> {
    // Unbounded: the supervisor never waits on it.
    let (tx, inbox) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .stack_size(128 * 1024)
        .spawn(move || run_thread(specs, clock.as_ref(), &inbox, &out))?;
    Ok(Handle { inbox: tx, thread })
}

fn run_thread(specs: Vec<JobSpec>, clock: &dyn Clock, inbox: &Receiver<Order>, out: &Sender<Msg>) {
    let mut planner = Planner::new(specs, clock.wall(), clock.mono(), Rng::seeded());
    let (step_tx, step_rx) = crossbeam_channel::bounded(1);
    let mut steps = if steps::watch(step_tx) {
        planner.steps_announced();
        step_rx
    } else {
        log::info!("scheduler: no clock-step notifications here; re-reading the clocks every {}s while waiting", RECHECK.as_secs());
        crossbeam_channel::never()
    };
    let mut told: Vec<(String, Option<SystemTime>)> = Vec::new();
    loop {
        let (wall, mono) = (clock.wall(), clock.mono());
        for f in planner.wake(wall, mono) {
            if out.send(Msg::Due(f)).is_err() {
                return;
            }
        }
        let mut next = planner.next_runs(wall, mono);
        for (job, at) in &mut next {
            // `@every` times are re-derived from the monotonic clock at
            // each wake-up, so they wobble by microseconds: a change of
            // 10 ms or more since the time last sent is news (and an
            // `@every 500ms` run's half second with it).
            let sent = told.iter().find(|(j, _)| j == job).map(|(_, t)| *t);
            match (sent, *at) {
                (Some(Some(a)), Some(b)) if diff(a, b).1 < Duration::from_millis(10) => {
                    *at = Some(a)
                }
                (Some(None), None) => {}
                _ => {
                    if out
                        .send(Msg::Next {
                            job: job.clone(),
                            at: *at,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        // What the supervisor was told, for the jobs there are now.
        told = next;
        let timer = match planner.next_wake(wall, mono) {
            Some(at) => crossbeam_channel::at(at),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(inbox) -> m => match m {
                Ok(Order::Jobs { specs, fresh }) => {
                    planner.update(specs, &fresh, clock.wall(), clock.mono());
                }
                // Stop, or a dropped sender: the supervisor is shutting down.
                Ok(Order::Stop) | Err(_) => return,
            },
            recv(timer) -> _ => {}
            // The wall clock was set: re-read both clocks (next turn).
            recv(steps) -> m => if m.is_err() {
                // The watcher is gone: fall back to re-checking.
                steps = crossbeam_channel::never();
                planner = planner.without_step_watch();
            },
        }
    }
}

#[cfg(all(test, feature = "cron"))]
mod tests;
