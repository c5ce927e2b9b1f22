use super::*;
use crate::config::extra::Timezone;
use jiff::tz::TimeZone;
use jiff::Timestamp;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn next(expr: &str, tz: &TimeZone, after: &str) -> String {
    let cron = match crate::config::cron::parse(expr).unwrap() {
        ScheduleSpec::Cron(c) => Cron::parse(&c).unwrap(),
        ScheduleSpec::Every(_) => panic!("{expr} is not cron"),
    };
    next_after(&cron, tz, ts(after)).map_or_else(|| "never".into(), |t| t.to_string())
}

#[test]
fn next_time_table_utc() {
    let utc = TimeZone::UTC;
    let table = [
        ("* * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"),
        ("* * * * *", "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"),
        (
            "*/5 * * * *",
            "2024-01-01T00:03:00Z",
            "2024-01-01T00:05:00Z",
        ),
        (
            "10-40/10 * * * *",
            "2024-01-01T00:41:00Z",
            "2024-01-01T01:10:00Z",
        ),
        (
            "5/20 * * * *",
            "2024-01-01T00:46:00Z",
            "2024-01-01T01:05:00Z",
        ),
        (
            "0,30 8-9 * * *",
            "2024-01-01T09:30:00Z",
            "2024-01-02T08:00:00Z",
        ),
        // Month ends and leap years.
        ("0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"),
        ("0 0 29 2 *", "2023-03-01T00:00:00Z", "2024-02-29T00:00:00Z"),
        ("0 0 29 2 *", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"),
        // 2100 is not a leap year.
        ("0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"),
        ("0 0 1 3 *", "2024-02-28T23:59:00Z", "2024-03-01T00:00:00Z"),
        (
            "59 23 31 12 *",
            "2024-12-31T23:59:00Z",
            "2025-12-31T23:59:00Z",
        ),
        ("@yearly", "2024-12-31T23:59:59Z", "2025-01-01T00:00:00Z"),
        ("@monthly", "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z"),
        ("@weekly", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
        ("@daily", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        ("@hourly", "2024-01-01T00:59:59Z", "2024-01-01T01:00:00Z"),
        // Names, Sunday as 0 and 7.
        (
            "30 4 1 jan *",
            "2024-06-01T00:00:00Z",
            "2025-01-01T04:30:00Z",
        ),
        ("0 0 * * 7", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
        (
            "0 0 * * SUN",
            "2024-01-01T00:00:00Z",
            "2024-01-07T00:00:00Z",
        ),
        (
            "0 9-17/4 * * mon-fri",
            "2024-01-05T17:00:00Z",
            "2024-01-08T09:00:00Z",
        ),
        // Both day fields restricted: either matches (1st, or a Monday).
        ("0 12 1 * 1", "2024-01-02T00:00:00Z", "2024-01-08T12:00:00Z"),
        ("0 12 1 * 1", "2024-01-29T12:00:00Z", "2024-02-01T12:00:00Z"),
        // Day-of-month starting with `*`: both must match (odd Mondays).
        (
            "0 12 */2 * 1",
            "2024-01-02T00:00:00Z",
            "2024-01-15T12:00:00Z",
        ),
        // Friday the 13th needs both: dow restricted, dom restricted = OR.
        ("0 0 13 * 5", "2024-09-01T00:00:00Z", "2024-09-06T00:00:00Z"),
    ];
    for (expr, after, want) in table {
        assert_eq!(next(expr, &utc, after), want, "{expr} after {after}");
    }
}

#[test]
fn never_matching_is_refused() {
    let e = crate::config::cron::parse("0 0 30 2 *").unwrap_err();
    assert!(e.contains("never matches"), "{e}");
    assert!(crate::config::cron::parse("0 0 31 4,6 *").is_err());
    assert!(crate::config::cron::parse("0 0 31 4,5 *").is_ok());
}

fn zone(name: &str) -> Option<TimeZone> {
    match TimeZone::get(name) {
        Ok(tz) => Some(tz),
        Err(e) => {
            println!("SKIPPED DST cases for {name}: no zoneinfo ({e})");
            None
        }
    }
}

#[test]
fn dst_europe_berlin() {
    let Some(tz) = zone("Europe/Berlin") else {
        return;
    };
    // Spring forward: 2024-03-31 02:00 CET -> 03:00 CEST (01:00Z).
    // 02:30 does not exist: it runs once, at the transition.
    assert_eq!(
        next("30 2 * * *", &tz, "2024-03-30T12:00:00Z"),
        "2024-03-31T01:00:00Z"
    );
    assert_eq!(
        next("30 2 * * *", &tz, "2024-03-31T01:00:00Z"),
        "2024-04-01T00:30:00Z"
    );
    // Every quarter hour of the gap hour collapses into one run.
    assert_eq!(
        next("*/15 2 * * *", &tz, "2024-03-31T00:50:00Z"),
        "2024-03-31T01:00:00Z"
    );
    assert_eq!(
        next("*/15 2 * * *", &tz, "2024-03-31T01:00:00Z"),
        "2024-04-01T00:00:00Z"
    );
    // Fall back: 2024-10-27 03:00 CEST -> 02:00 CET (01:00Z). 02:30
    // happens twice: it runs once, the first time.
    assert_eq!(
        next("30 2 * * *", &tz, "2024-10-26T12:00:00Z"),
        "2024-10-27T00:30:00Z"
    );
    assert_eq!(
        next("30 2 * * *", &tz, "2024-10-27T00:30:00Z"),
        "2024-10-28T01:30:00Z"
    );
    // Hourly-style jobs follow real time through both changes.
    let mut t = "2024-10-27T00:00:00Z".to_string();
    let mut seen = Vec::new();
    for _ in 0..4 {
        t = next("*/30 * * * *", &tz, &t);
        seen.push(t.clone());
    }
    assert_eq!(
        seen,
        [
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:00:00Z",
            "2024-10-27T01:30:00Z",
            "2024-10-27T02:00:00Z"
        ]
    );
    assert_eq!(
        next("*/30 * * * *", &tz, "2024-03-31T00:30:00Z"),
        "2024-03-31T01:00:00Z"
    );
    // A plain local-time job outside the changes: 08:00 CET is 07:00Z.
    assert_eq!(
        next("0 8 * * *", &tz, "2024-01-10T00:00:00Z"),
        "2024-01-10T07:00:00Z"
    );
}

#[test]
fn dst_america_new_york() {
    let Some(tz) = zone("America/New_York") else {
        return;
    };
    // 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z).
    assert_eq!(
        next("30 2 * * *", &tz, "2024-03-09T12:00:00Z"),
        "2024-03-10T07:00:00Z"
    );
    // 2024-11-03 02:00 EDT -> 01:00 EST (06:00Z): 01:30 twice, once.
    assert_eq!(
        next("30 1 * * *", &tz, "2024-11-03T00:00:00Z"),
        "2024-11-03T05:30:00Z"
    );
    assert_eq!(
        next("30 1 * * *", &tz, "2024-11-03T05:30:00Z"),
        "2024-11-04T06:30:00Z"
    );
}

#[test]
fn unknown_zone_is_an_error() {
    let e = time_zone(&Timezone::Named("Mars/Olympus_Mons".into())).unwrap_err();
    assert!(e.contains("Mars/Olympus_Mons"), "{e}");
    assert!(time_zone(&Timezone::Local).is_ok());
}

// ---- the planner, with an injected clock ----

struct Fake {
    wall: SystemTime,
    mono: Instant,
}

impl Fake {
    fn new(at: &str) -> Fake {
        Fake {
            wall: SystemTime::from(ts(at)),
            mono: Instant::now(),
        }
    }
    /// Both clocks advance.
    fn pass(&mut self, d: Duration) {
        self.wall += d;
        self.mono += d;
    }
    /// The wall clock is stepped.
    fn step_forward(&mut self, d: Duration) {
        self.wall += d;
    }
    fn step_back(&mut self, d: Duration) {
        self.wall -= d;
    }
}

impl Clock for Fake {
    fn wall(&self) -> SystemTime {
        self.wall
    }
    fn mono(&self) -> Instant {
        self.mono
    }
}

fn cron_job(expr: &str, catch_up: bool) -> JobSpec {
    JobSpec {
        name: "job".into(),
        spec: Spec::Cron {
            cron: Cron::parse(expr).unwrap(),
            tz: TimeZone::UTC,
        },
        catch_up,
        jitter: Duration::ZERO,
    }
}

fn planner(c: &Fake, jobs: Vec<JobSpec>) -> Planner {
    Planner::new(jobs, c.wall(), c.mono(), Rng(42))
}

fn wake(p: &mut Planner, c: &Fake) -> Vec<Trigger> {
    p.wake(c.wall(), c.mono())
        .into_iter()
        .map(|f| f.trigger)
        .collect()
}

fn next_run(p: &Planner, c: &Fake) -> String {
    let (_, at) = &p.next_runs(c.wall(), c.mono())[0];
    at.map_or("never".into(), |t| {
        Timestamp::try_from(t).unwrap().to_string()
    })
}

const S: Duration = Duration::from_secs(1);

#[test]
fn every_runs_on_the_monotonic_clock_without_bursts() {
    let mut c = Fake::new("2024-01-01T00:00:00Z");
    let mut p = planner(
        &c,
        vec![JobSpec {
            name: "job".into(),
            spec: Spec::Every(S),
            catch_up: false,
            jitter: Duration::ZERO,
        }],
    );
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(c.mono() + S));
    c.pass(S / 2);
    assert!(wake(&mut p, &c).is_empty());
    c.pass(S / 2);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    // A wall-clock step changes nothing for @every.
    c.step_forward(Duration::from_secs(3600));
    assert!(wake(&mut p, &c).is_empty());
    // Ten periods late (a stalled machine): one run, not ten.
    c.pass(S * 10);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(c.mono() + S));
}

#[test]
fn cron_fires_on_time_and_once_when_late() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    let mut p = planner(&c, vec![cron_job("* * * * *", false)]);
    assert_eq!(next_run(&p, &c), "2024-01-01T00:01:00Z");
    // Sleeps until due (at most RECHECK), not on a tick.
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(c.mono() + S * 30));
    c.pass(S * 29);
    assert!(wake(&mut p, &c).is_empty());
    c.pass(S);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    assert_eq!(next_run(&p, &c), "2024-01-01T00:02:00Z");
    // Woken ten minutes late with no clock step: one run.
    c.pass(S * 600);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    assert_eq!(next_run(&p, &c), "2024-01-01T00:12:00Z");
}

#[test]
fn forward_step_skips_missed_runs_without_catch_up() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    let mut p = planner(&c, vec![cron_job("* * * * *", false)]);
    c.pass(S * 10);
    c.step_forward(Duration::from_secs(3600));
    assert!(wake(&mut p, &c).is_empty(), "no burst, no catch-up");
    assert_eq!(next_run(&p, &c), "2024-01-01T01:01:00Z");
    c.pass(S * 20);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
}

/// An NTP correction of less than a minute across a due time used to
/// skip its run (without catch_up): it runs, once, late.
#[test]
fn a_small_forward_step_still_runs_the_due_time_it_passed() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    let mut p = planner(&c, vec![cron_job("* * * * *", false)]);
    c.pass(S * 20); // 00:00:50
    c.step_forward(S * 20); // 00:01:10, past 00:01:00
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    assert_eq!(next_run(&p, &c), "2024-01-01T00:02:00Z");
    c.pass(S * 49);
    assert!(wake(&mut p, &c).is_empty(), "one run, not two");
    // A full minute is still small; past it, the step rules apply.
    c.step_forward(SMALL_STEP); // 00:02:59
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]);
    c.step_forward(SMALL_STEP + S); // 00:04:00
    assert!(wake(&mut p, &c).is_empty(), "{}", next_run(&p, &c));
}

#[test]
fn forward_step_with_catch_up_runs_once() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    let mut p = planner(&c, vec![cron_job("*/5 * * * *", true)]);
    c.pass(S * 10);
    c.step_forward(Duration::from_secs(2 * 3600));
    assert_eq!(wake(&mut p, &c), [Trigger::CatchUp]);
    assert_eq!(next_run(&p, &c), "2024-01-01T02:05:00Z");
    c.pass(S);
    assert!(wake(&mut p, &c).is_empty());
}

#[test]
fn backward_step_does_not_repeat_runs() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    // Fixed hours (23 and 0): each wall-clock minute runs once.
    let mut p = planner(&c, vec![cron_job("* 0,23 * * *", false)]);
    c.pass(S * 30);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]); // 00:01
    c.pass(S);
    c.step_back(Duration::from_secs(30 * 60)); // now 00:31:01 the day before... 23:31:01
    assert!(wake(&mut p, &c).is_empty());
    assert_eq!(next_run(&p, &c), "2024-01-01T00:02:00Z");
    // Time passes again up to the old due time: the minutes already run
    // (23:32 … 00:01) do not run again; 00:02 does, once.
    let mut runs = 0;
    for _ in 0..31 {
        c.pass(S * 60);
        runs += wake(&mut p, &c).len();
    }
    assert_eq!(runs, 1);
    assert_eq!(next_run(&p, &c), "2024-01-01T00:03:00Z");
}

/// A job whose hour field is `*` follows real time through a step back,
/// as through a fall-back change: it goes on at its pace (the next run
/// comes when it would have without the step) rather than waiting, up to
/// 3 hours, for the wall clock to reach its old due time again.
#[test]
fn backward_step_keeps_an_hourly_style_job_at_its_pace() {
    let mut c = Fake::new("2024-01-01T00:00:30Z");
    let mut p = planner(&c, vec![cron_job("* * * * *", false)]);
    c.pass(S * 30);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]); // 00:01
    c.pass(S);
    c.step_back(Duration::from_secs(30 * 60)); // 23:31:01
    assert!(wake(&mut p, &c).is_empty());
    assert_eq!(next_run(&p, &c), "2023-12-31T23:32:00Z");
    let mut runs = 0;
    for _ in 0..31 {
        c.pass(S * 60);
        runs += wake(&mut p, &c).len();
    }
    assert_eq!(runs, 31, "one run a minute, as before the step");
    // A small step back right after a run does not repeat it: the next
    // comes a minute on.
    let mut c = Fake::new("2024-01-01T00:00:59Z");
    let mut p = planner(&c, vec![cron_job("* * * * *", false)]);
    c.pass(S);
    assert_eq!(wake(&mut p, &c), [Trigger::Schedule]); // 00:01
    c.pass(S);
    c.step_back(S * 6); // 00:00:56
    assert!(wake(&mut p, &c).is_empty());
    assert_eq!(next_run(&p, &c), "2024-01-01T00:02:00Z");
    // Hourly: the next run no sooner than it would have been.
    let mut c = Fake::new("2024-06-01T12:00:30Z");
    let mut p = planner(&c, vec![cron_job("0 * * * *", false)]);
    c.pass(S * 600); // 12:10:30
    assert!(wake(&mut p, &c).is_empty());
    c.step_back(Duration::from_secs(20 * 60)); // 11:50:30
    assert!(wake(&mut p, &c).is_empty());
    assert_eq!(next_run(&p, &c), "2024-06-01T13:00:00Z");
}

#[test]
fn big_backward_step_resets() {
    let mut c = Fake::new("2024-06-01T12:00:30Z");
    let mut p = planner(&c, vec![cron_job("0 * * * *", false)]);
    assert_eq!(next_run(&p, &c), "2024-06-01T13:00:00Z");
    // The clock was a day ahead and got corrected.
    c.step_back(Duration::from_secs(24 * 3600));
    assert!(wake(&mut p, &c).is_empty());
    assert_eq!(next_run(&p, &c), "2024-05-31T13:00:00Z");
}

#[test]
fn jitter_delays_within_bounds() {
    let mut c = Fake::new("2024-01-01T00:00:00Z");
    let mut job = cron_job("* * * * *", false);
    job.jitter = Duration::from_secs(10);
    let mut p = planner(&c, vec![job]);
    c.pass(S * 60);
    let first = wake(&mut p, &c);
    let mut fired = first.len();
    if fired == 0 {
        let at = p.next_wake(c.wall(), c.mono()).unwrap();
        assert!(at <= c.mono() + S * 10, "jitter beyond its bound");
        for _ in 0..10 {
            c.pass(S);
            fired += wake(&mut p, &c).len();
        }
    }
    assert_eq!(fired, 1);
}

#[test]
fn rng_stays_below() {
    let mut r = Rng::seeded();
    for _ in 0..1000 {
        assert!(r.below(Duration::from_millis(7)) < Duration::from_millis(7));
    }
    assert_eq!(r.below(Duration::ZERO), Duration::ZERO);
}

#[test]
fn with_clock_steps_announced_a_far_due_time_is_one_sleep() {
    let c = Fake::new("2024-01-01T00:00:00Z");
    let mut p = planner(&c, vec![cron_job("0 2 * * *", false)]);
    // Without announcements, re-read the clocks at least every RECHECK.
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(c.mono() + RECHECK));
    p.steps_announced();
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(c.mono() + S * 7200));
}

#[test]
fn the_clock_step_watcher_starts_on_linux() {
    let (tx, rx) = crossbeam_channel::bounded(1);
    assert!(
        super::steps::watch(tx),
        "timerfd with TFD_TIMER_CANCEL_ON_SET"
    );
    // Nothing is announced without a clock step.
    assert!(rx
        .recv_timeout(std::time::Duration::from_millis(50))
        .is_err());
}

fn every_job(name: &str, period: Duration, jitter: Duration) -> JobSpec {
    JobSpec {
        name: name.into(),
        spec: Spec::Every(period),
        catch_up: false,
        jitter,
    }
}

#[test]
fn an_update_keeps_unchanged_jobs_due_times_and_plans_fresh_ones_from_now() {
    let mut c = Fake::new("2024-01-01T00:00:00Z");
    let hour = Duration::from_secs(3600);
    let mut p = planner(
        &c,
        vec![
            every_job("a", 10 * S, Duration::ZERO),
            every_job("b", hour, Duration::ZERO),
        ],
    );
    let start = c.mono();
    c.pass(8 * S);
    // b changes (fresh), c is new, a is not touched.
    p.update(
        vec![
            every_job("a", 10 * S, Duration::ZERO),
            every_job("b", hour, Duration::ZERO),
            every_job("c", 5 * S, Duration::ZERO),
        ],
        &["b".into(), "c".into()],
        c.wall(),
        c.mono(),
    );
    let due: Vec<(String, Option<SystemTime>)> = p.next_runs(c.wall(), c.mono());
    let at = |n: &str| {
        due.iter()
            .find(|(j, _)| j == n)
            .and_then(|(_, t)| *t)
            .unwrap()
    };
    // a: still 10 s after the start, 2 s from now; not pushed back.
    assert_eq!(p.next_wake(c.wall(), c.mono()), Some(start + 10 * S));
    assert_eq!(at("a"), c.wall() + 2 * S);
    assert_eq!(at("b"), c.wall() + hour);
    assert_eq!(at("c"), c.wall() + 5 * S);
    c.pass(2 * S);
    let fired: Vec<String> = p
        .wake(c.wall(), c.mono())
        .into_iter()
        .map(|f| f.job)
        .collect();
    assert_eq!(fired, ["a"]);
}

#[test]
fn an_update_drops_the_waiting_start_of_a_removed_job() {
    let mut c = Fake::new("2024-01-01T00:00:00Z");
    let mut p = planner(&c, vec![every_job("a", S, Duration::from_secs(30))]);
    c.pass(S);
    // Due, but waiting out its jitter (with this seed, not zero).
    assert!(p.wake(c.wall(), c.mono()).is_empty());
    assert_eq!(p.pending.len(), 1);
    p.update(Vec::new(), &[], c.wall(), c.mono());
    assert!(p.pending.is_empty());
    assert_eq!(p.next_wake(c.wall(), c.mono()), None);
}
