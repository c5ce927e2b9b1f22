//! Where scheduled jobs meet the supervisor. The scheduler thread says
//! when a job is due; here the supervisor decides whether a run starts
//! (paused, concurrency limit, shutdown), starts it on a run thread, and
//! keeps each job's history and stats for the snapshot.
//!
//! Invariants:
//! - A process with `schedule` is never supervised as a longrun: it has no
//!   instances, only runs, and it is not in `procs`. Nothing depends on it
//!   (refused at load), so a shutdown stops its runs first; what a job
//!   depends on gets its stop signal only once the job's runs have ended.
//! - Job state (paused, runs, history, stats) is written only here, on the
//!   supervisor thread; run threads report over one channel.
//! - `schedule_max_concurrent`: a scheduled trigger at the limit is skipped,
//!   logged, recorded in the history and counted; a manual trigger at the
//!   limit (or while paused) is refused with a conflict. 0 = unlimited.
//! - History is bounded by `schedule_history_size`; counters only grow.
//! - No run starts once shutdown has begun; runs going on get their stop
//!   signal when it begins and are killed at the global deadline.
//! - No run starts while a longrun it depends on is not running (every
//!   instance with a live process): a due time is skipped, a trigger
//!   refused.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use crate::config::extra::{Schedule, ScheduleSpec};
use crate::config::{format_duration, Process};
use crate::scheduler::run::{self, RunCmd, RunEnd, RunEvent, RunReport};
use crate::scheduler::{self, Msg, Trigger};
use crate::sorted_map::SortedMap;
use crate::status::{
    unix_seconds, ControlReply, LastExit, ProcessStatus, RunRecord, RunStats, ScheduleStatus,
    RUN_BUCKETS,
};

use super::{Phase, ProcPhase, Supervisor};

/// A run going on.
struct ActiveRun {
    /// The definition it runs (a reload may have changed the job's since).
    def: Arc<Process>,
    cmd: Sender<RunCmd>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: Option<i32>,
    started: SystemTime,
    /// `started` on the monotonic clock: a run's duration is not moved by
    /// a clock step during it (an NTP correction, `date -s`).
    since: Instant,
    /// Replies owed to `trigger?wait=true` callers.
    waiters: Vec<Sender<ControlReply>>,
}

impl ActiveRun {
    /// Send `cmd`. A spawn of the run's thread stuck short of exec (its
    /// working_dir or program on a hung mount) holds it in clone, where no
    /// command reaches it: it is killed, as an instance's is at its stop.
    fn send(&self, cmd: RunCmd, reaper: &crate::reaper::Reaper) {
        let _ = self.cmd.send(cmd);
        if let Some(t) = &self.thread {
            reaper.kill_spawning(Some(t.thread().id()));
        }
    }
}

pub(super) struct Job {
    def: Arc<Process>,
    sched: Schedule,
    paused: bool,
    /// A due time while paused was logged at info: the next go to debug.
    said_paused: bool,
    runs: SortedMap<u64, ActiveRun>,
    history: VecDeque<RunRecord>,
    stats: RunStats,
    next_run: Option<SystemTime>,
    last_run: Option<SystemTime>,
    last_result: Option<String>,
    last_exit: Option<LastExit>,
    last_duration: Option<f64>,
    /// Removed by a reload while runs were going: no new run starts, and
    /// the job goes once the last one ends.
    retired: bool,
    /// Due times skipped in a row for one reason: (reason, count, first,
    /// last). The first is logged at info (or warn); the others at debug,
    /// and the burst in one line when it ends (`end_skips`).
    skips: Option<(String, u64, SystemTime, SystemTime)>,
}

impl Job {
    pub(super) fn new(def: Process, sched: Schedule) -> Job {
        Job {
            def: Arc::new(def),
            sched,
            paused: false,
            said_paused: false,
            runs: SortedMap::default(),
            history: VecDeque::new(),
            stats: RunStats::default(),
            next_run: None,
            last_run: None,
            last_result: None,
            last_exit: None,
            last_duration: None,
            retired: false,
            skips: None,
        }
    }

    /// Same definition (its schedule included).
    pub(super) fn same(&self, def: &Process) -> bool {
        *self.def == *def
    }

    /// A reload changed it: later runs use `def`; history, stats and
    /// pause stay.
    pub(super) fn redefine(&mut self, def: Process) {
        if let Some(sched) = def.extra.schedule.clone() {
            self.sched = sched;
        }
        self.def = Arc::new(def);
        self.retired = false;
    }

    pub(super) fn retired(&self) -> bool {
        self.retired
    }

    pub(super) fn retire(&mut self) {
        self.retired = true;
        self.next_run = None;
    }

    /// Its due times differ from `def`'s: the expression or its time
    /// zone changed (not a timeout, jitter, concurrency or catch-up,
    /// which leave the next due time where it is).
    pub(super) fn reschedules(&self, def: &Process) -> bool {
        def.extra
            .schedule
            .as_ref()
            .is_none_or(|s| s.spec != self.sched.spec || s.timezone != self.sched.timezone)
    }

    /// A run is going and the job depends on `process`.
    pub(super) fn holds(&self, process: &str) -> bool {
        self.runs
            .values()
            .any(|r| r.def.depends_on.iter().any(|d| d.name == process))
    }

    pub(super) fn idle(&self) -> bool {
        self.runs.is_empty()
    }

    /// A scheduled due time skipped for `why` (`line` logs it): the first
    /// of a burst is logged at `level`, the others at debug.
    fn skip(
        &mut self,
        history_size: usize,
        trigger: Trigger,
        why: &str,
        level: log::Level,
        line: &str,
    ) {
        let now = SystemTime::now();
        match &mut self.skips {
            Some((w, n, _, last)) if w == why => {
                *n += 1;
                *last = now;
                log::debug!("{line}; skipping this one too");
            }
            _ => {
                self.end_skips();
                self.skips = Some((why.to_string(), 1, now, now));
                log::log!(
                    level,
                    "{line}; skipping this run (the next ones: at debug, then summed up)"
                );
            }
        }
        record_skip(self, history_size, trigger, why);
    }

    /// A burst of skips ended (a run starts, the reason changed, shutdown):
    /// one line for all of it.
    fn end_skips(&mut self) {
        if let Some((why, n, first, last)) = self.skips.take().filter(|s| s.1 > 1) {
            log::info!(
                "{}: {n} due times skipped from {} to {} ({why})",
                self.def.name,
                crate::logging::rfc3339_millis(first),
                crate::logging::rfc3339_millis(last)
            );
        }
    }

    fn at_limit(&self) -> bool {
        let max = self.sched.max_concurrent;
        max != 0 && self.runs.len() >= max as usize
    }
}

impl Supervisor {
    /// Whether a dependency that was satisfied once is up now. For a
    /// longrun "started" holds for good once it has started (what start-up
    /// ordering needs, and a held one does not block it), but a run needs
    /// it running: every instance it keeps with a live process. So it is
    /// down when crashed, in backoff or being restarted, stopping, stopped
    /// or scaled to 0 on request, finished or failed for good, or held by
    /// `initial_state: stopped`. A oneshot's condition, once met, holds.
    fn dep_up_now(&self, dep: &str) -> bool {
        self.procs.get(dep).is_none_or(|p| {
            p.def.kind != crate::config::ProcessType::Longrun
                || (p.phase == ProcPhase::Active
                    && p.instances.values().all(|i| i.pid.is_some() || i.leaving))
        })
    }

    /// Give the scheduler the live jobs (not those a reload removed, whose
    /// last runs are ending), starting its thread the first time there are
    /// any; it then runs until shutdown. `fresh`: jobs planned anew (new,
    /// or a changed schedule); the others keep their due times. Logs the
    /// schedule of each job, or of those in `announce` only.
    pub(super) fn schedule_jobs(&mut self, announce: Option<&[String]>, fresh: Vec<String>) {
        let live = || self.jobs.iter().filter(|(_, j)| !j.retired);
        if live().next().is_none() && self.scheduler.is_none() {
            return;
        }
        let mut specs = Vec::new();
        for (name, job) in live() {
            match scheduler::JobSpec::from_config(name, &job.sched) {
                Ok(s) => specs.push(s),
                // Validated at load; a zone removed since is reported here.
                Err(e) => log::error!("{name}: not scheduled: {e}"),
            }
        }
        for (name, job) in live().filter(|(n, _)| announce.is_none_or(|a| a.contains(n))) {
            // `@every` counts elapsed time: no zone applies (as `check` says).
            let zone = match job.sched.spec {
                ScheduleSpec::Every(_) => String::new(),
                ScheduleSpec::Cron(_) => {
                    format!(
                        " (time zone {})",
                        scheduler::describe_zone(&job.sched.timezone)
                    )
                }
            };
            log::info!(
                "{name}: scheduled {:?}{zone}{}",
                job.sched.expression,
                if job.sched.catch_up { ", catch_up" } else { "" }
            );
        }
        if let Some(h) = &self.scheduler {
            // Unbounded, and the thread lives until told to stop.
            let _ = h.inbox.send(scheduler::Order::Jobs { specs, fresh });
            return;
        }
        match scheduler::start(
            specs,
            Box::new(scheduler::SystemClock),
            self.sched_tx.clone(),
        ) {
            Ok(h) => self.scheduler = Some(h),
            Err(e) => log::error!("unable to start the scheduler thread: {e}; no job will run"),
        }
    }

    /// Stop the scheduler thread (shutdown): no new due times.
    pub(super) fn stop_scheduler(&mut self) {
        if let Some(h) = &self.scheduler {
            let _ = h.inbox.send(scheduler::Order::Stop);
        }
    }

    /// After the loop: the scheduler thread has been told to stop.
    pub(super) fn join_scheduler(&mut self) {
        if let Some(h) = self.scheduler.take() {
            drop(h.inbox);
            // It returns as soon as it sees the closed inbox.
            let _ = h.thread.join();
        }
    }

    pub(super) fn on_scheduler(&mut self, msg: Msg) {
        match msg {
            Msg::Due(f) => {
                let _ = self.start_run(&f.job, f.trigger);
            }
            Msg::Next { job, at } => {
                // Not a job a reload retired: one sent before it, late.
                if let Some(j) = self.jobs.get_mut(&job).filter(|j| !j.retired) {
                    j.next_run = at;
                }
            }
        }
    }

    /// Start a run of `name` if allowed; the run id, or why not.
    fn start_run(&mut self, name: &str, trigger: Trigger) -> Result<u64, ControlReply> {
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        let history_size = self.cfg.global.extra.schedule_history_size as usize;
        // A job waits like any process: for the global pre-start hooks (a
        // migration) and for its own dependencies.
        let blocked = self.jobs.get(name).and_then(|job| {
            if self.pre_start_pending {
                return Some("the global pre_start hooks are still running".to_string());
            }
            job.def
                .depends_on
                .iter()
                .find_map(|d| match self.dep_state(&d.name, d.condition) {
                    super::DepState::Satisfied if !self.dep_up_now(&d.name) => {
                        Some(format!("dependency {} is not running now", d.name))
                    }
                    super::DepState::Satisfied => None,
                    super::DepState::Waiting => {
                        Some(format!("dependency {} is not ready yet", d.name))
                    }
                    super::DepState::Impossible(why) => {
                        Some(format!("dependency {} {why}", d.name))
                    }
                })
        });
        let Some(job) = self.jobs.get_mut(name) else {
            return Err(self.not_found(name));
        };
        if shutting_down {
            return Err(ControlReply::Conflict("sheepdog is shutting down".into()));
        }
        if job.retired {
            return Err(ControlReply::Conflict(format!(
                "{name} was removed from the configuration; its last runs are ending"
            )));
        }
        if job.paused {
            if trigger != Trigger::Manual {
                // Once per pause: `@every 1s` would say it every second.
                let level = if job.said_paused {
                    log::Level::Debug
                } else {
                    log::Level::Info
                };
                job.said_paused = true;
                log::log!(level, "{name}: due, but paused; not running it");
            }
            return Err(ControlReply::Conflict(format!(
                "{name} is paused; resume it first"
            )));
        }
        if let Some(why) = blocked {
            if trigger == Trigger::Manual {
                return Err(ControlReply::Conflict(format!(
                    "{name}: {why}; not starting it"
                )));
            }
            let line = format!("{name}: due, but {why}");
            job.skip(history_size, trigger, &why, log::Level::Info, &line);
            return Err(ControlReply::Conflict(format!("{name}: {why}")));
        }
        if job.at_limit() {
            let why = format!(
                "{name}: {} still going (schedule_max_concurrent: {})",
                crate::logging::counted(job.runs.len() as u64, "run", "runs"),
                job.sched.max_concurrent
            );
            if trigger == Trigger::Manual {
                return Err(ControlReply::Conflict(format!(
                    "{why}; not starting another"
                )));
            }
            let reason = "concurrency limit reached";
            job.skip(history_size, trigger, reason, log::Level::Warn, &why);
            return Err(ControlReply::Conflict(why));
        }
        job.end_skips();
        self.next_run_id += 1;
        let run_id = self.next_run_id;
        let now = SystemTime::now();
        match run::launch(
            job.def.clone(),
            run_id,
            trigger,
            job.sched.timeout,
            self.shared.clone(),
            self.runs_tx.clone(),
        ) {
            Ok(h) => {
                job.runs.insert(
                    run_id,
                    ActiveRun {
                        def: job.def.clone(),
                        cmd: h.cmd,
                        thread: Some(h.thread),
                        pid: None,
                        started: now,
                        since: Instant::now(),
                        waiters: Vec::new(),
                    },
                );
                job.last_run = Some(now);
                push_bounded(
                    &mut job.history,
                    history_size,
                    RunRecord {
                        run_id: Some(run_id),
                        trigger: trigger.as_str().into(),
                        started_at: unix_seconds(now),
                        result: "running".into(),
                        ..RunRecord::default()
                    },
                );
                Ok(run_id)
            }
            Err(e) => {
                log::error!("{name}: unable to start a run thread: {e}");
                Err(ControlReply::Conflict(format!(
                    "{name}: unable to start a run thread: {e}"
                )))
            }
        }
    }

    pub(super) fn on_run_report(&mut self, r: RunReport) {
        let Some(job) = self.jobs.get_mut(&*r.job) else {
            return;
        };
        match r.event {
            RunEvent::Started { pid } => {
                if let Some(run) = job.runs.get_mut(&r.run_id) {
                    run.pid = Some(pid);
                    // The run's definition: a reload may have changed the job's.
                    self.beats
                        .run_started(&r.job, run.def.extra.heartbeat.as_ref());
                }
            }
            RunEvent::Done(end) => {
                let Some(mut active) = job.runs.remove(&r.run_id) else {
                    return;
                };
                if let Some(t) = active.thread.take() {
                    // It reported Done as its last act.
                    let _ = t.join();
                }
                let why = match self.phase {
                    Phase::ShuttingDown { .. } => "stopped: sheepdog is shutting down",
                    Phase::Running => "stopped on request",
                };
                let record = finish_record(
                    job,
                    r.run_id,
                    active.started,
                    active.since.elapsed(),
                    &end,
                    why,
                );
                if !end.stopped {
                    self.beats.run_ended(
                        &r.job,
                        active.def.extra.heartbeat.as_ref(),
                        format!("{}#{}", r.job, r.run_id),
                        end.status,
                        end.timed_out,
                        end.error.as_deref(),
                    );
                }
                if job.retired && job.idle() {
                    log::info!("{}: removed (its last run ended)", r.job);
                    self.jobs.remove(&*r.job);
                    self.forget_hook_stats(&r.job);
                }
                for w in active.waiters.drain(..) {
                    self.answer(w, ControlReply::Run(Box::new(record.clone())));
                }
                // A reload's stop may have waited for this run to end.
                self.reload_step();
                // The last run stopping may let the shutdown go on.
                if matches!(self.phase, super::Phase::ShuttingDown { .. }) {
                    self.try_stop_ready();
                }
            }
        }
    }

    fn not_a_job(&self, name: &str) -> ControlReply {
        if self.procs.contains_key(name) {
            ControlReply::Conflict(format!("{name} is not a scheduled job"))
        } else {
            self.not_found(name)
        }
    }

    /// `trigger`: start a run now. Without `wait` the answer is immediate;
    /// with it, `reply` is answered when the run ends (None returned).
    pub(super) fn trigger(
        &mut self,
        name: &str,
        wait: Option<&Sender<ControlReply>>,
    ) -> Option<ControlReply> {
        if !self.jobs.contains_key(name) {
            return Some(self.not_a_job(name));
        }
        let started = self.start_run(name, Trigger::Manual);
        match &started {
            Ok(run_id) => log::info!("{name}: run {run_id} triggered on request"),
            Err(ControlReply::Conflict(why) | ControlReply::NotFound(why)) => {
                log::info!("{name}: trigger on request refused: {why}");
            }
            Err(_) => {}
        }
        match (started, wait) {
            (Ok(run_id), Some(tx)) => {
                if let Some(run) = self
                    .jobs
                    .get_mut(name)
                    .and_then(|j| j.runs.get_mut(&run_id))
                {
                    run.waiters.push(tx.clone());
                }
                None
            }
            (Ok(run_id), None) => Some(ControlReply::Accepted(format!(
                "{name}: run {run_id} started"
            ))),
            (Err(answer), _) => Some(answer),
        }
    }

    pub(super) fn pause(&mut self, name: &str, paused: bool) -> ControlReply {
        if !self.jobs.contains_key(name) {
            return self.not_a_job(name);
        }
        let Some(job) = self.jobs.get_mut(name) else {
            return self.not_a_job(name);
        };
        let word = if paused { "paused" } else { "resumed" };
        if job.paused == paused {
            return ControlReply::Done(format!("{name} is already {word}"));
        }
        job.paused = paused;
        job.said_paused = false;
        log::info!("{name}: schedule {word} on request");
        ControlReply::Done(format!("{name} {word}"))
    }

    /// Shutdown begins: no more due times; runs going on get their stop
    /// (`Kill`: the shutdown is forced, by its deadline or a second signal).
    pub(super) fn stop_runs(&mut self, cmd: RunCmd) {
        self.stop_scheduler();
        for job in self.jobs.values_mut() {
            job.end_skips();
        }
        for (name, job) in &self.jobs {
            for (id, run) in job.runs.iter() {
                let (what, why) = match cmd {
                    RunCmd::Stop => ("stopping", "shutdown"),
                    RunCmd::Kill => ("killing", "SIGKILL, forced shutdown"),
                };
                log::info!("{name}: {what} run {id} ({why})");
                run.send(cmd, &self.shared.reaper);
            }
        }
    }

    /// `stop` of a job: its runs going now get their graceful stop
    /// (`shutdown.signal`, `shutdown.timeout`, then the kill); the
    /// schedule goes on (pausing holds it).
    pub(super) fn stop_job_runs(&mut self, name: &str) -> ControlReply {
        let Some(job) = self.jobs.get(name) else {
            return self.not_a_job(name);
        };
        if job.runs.is_empty() {
            return ControlReply::Done(format!(
                "{name}: no run is going; it runs on its schedule (pause it to hold the next)"
            ));
        }
        for (id, run) in job.runs.iter() {
            log::info!("{name}: stopping run {id} (requested)");
            run.send(RunCmd::Stop, &self.shared.reaper);
        }
        let then = if job.retired() {
            "removed by a reload, it goes once they have ended"
        } else {
            "it runs on its schedule (pause it to hold the next)"
        };
        ControlReply::Accepted(format!(
            "{name}: stopping {}; {then}",
            crate::logging::counted(job.runs.len() as u64, "run", "runs")
        ))
    }

    pub(super) fn runs_idle(&self) -> bool {
        self.jobs.values().all(Job::idle)
    }

    pub(super) fn job_statuses(&self) -> Vec<ProcessStatus> {
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        self.jobs
            .values()
            .map(|j| job_status(j, shutting_down))
            .collect()
    }
}

/// Append `r`, then drop the oldest entries past `size`; but a run going
/// on at the front stays there and the entry after it goes, so a long run
/// is not pushed out by the skips it causes (its end, the record that
/// matters, would have nowhere to go).
fn push_bounded(h: &mut VecDeque<RunRecord>, size: usize, r: RunRecord) {
    h.push_back(r);
    // Longer than `size.max(1)`: at least 2 entries, so 0 and 1 exist.
    while h.len() > size.max(1) {
        if h[0].result == "running" {
            h.swap(0, 1);
        }
        h.pop_front();
    }
}

/// Count a finished run and complete its history entry. A stopped run
/// (`why` says how: on request, or by the shutdown) is neither a success nor a
/// failure of the job: it has a result of its own. `took`: how long it
/// ran, on the monotonic clock.
fn finish_record(
    job: &mut Job,
    run_id: u64,
    started: SystemTime,
    took: Duration,
    end: &RunEnd,
    why: &str,
) -> RunRecord {
    let now = SystemTime::now();
    let secs = took.as_secs_f64();
    let result = match (end.timed_out, end.stopped, end.status) {
        (true, _, _) => "timeout",
        (false, true, _) => "stopped",
        (false, false, Some(s)) if s.success() => "success",
        (false, false, _) => "failure",
    };
    let error = match (&end.error, end.stopped, end.timed_out) {
        (Some(e), _, _) => Some(e.clone()),
        (None, _, true) => Some(format!(
            "exceeded schedule_timeout ({})",
            format_duration(job.sched.timeout.unwrap_or_default())
        )),
        (None, true, false) => Some(why.into()),
        (None, false, false) => None,
    };
    let st = &mut job.stats;
    st.total += 1;
    match result {
        "success" => st.success += 1,
        "timeout" => st.timeout += 1,
        "stopped" => st.stopped += 1,
        _ => st.failure += 1,
    }
    st.duration_seconds_sum += secs;
    st.average_duration_seconds = Some(st.duration_seconds_sum / st.total as f64);
    crate::status::observe(&mut st.duration_buckets, &RUN_BUCKETS, secs);
    job.last_result = Some(result.into());
    job.last_exit = end.status.map(LastExit::from);
    job.last_duration = Some(secs);
    let exit = end.status.map(LastExit::from);
    let record = RunRecord {
        run_id: Some(run_id),
        trigger: String::new(),
        started_at: unix_seconds(started),
        ended_at: Some(unix_seconds(now)),
        duration_seconds: Some(secs),
        exit_code: exit.and_then(|e| e.code),
        signal: exit.and_then(|e| e.signal),
        result: result.into(),
        error,
    };
    match job
        .history
        .iter_mut()
        .rev()
        .find(|h| h.run_id == Some(run_id))
    {
        Some(h) => {
            let trigger = std::mem::take(&mut h.trigger);
            *h = RunRecord { trigger, ..record };
            h.clone()
        }
        // Pushed out by more runs going at once than the history holds.
        None => record,
    }
}

fn job_status(j: &Job, shutting_down: bool) -> ProcessStatus {
    let running = j.runs.len() as u32;
    let state = match (shutting_down, running > 0, j.paused) {
        (true, true, _) => "stopping",
        (true, false, _) => "stopped",
        (false, true, _) => "running",
        (false, false, true) => "paused",
        (false, false, false) => "scheduled",
    };
    let expression = match &j.sched.spec {
        ScheduleSpec::Cron(_) | ScheduleSpec::Every(_) => j.sched.expression.clone(),
    };
    ProcessStatus {
        name: j.def.name.as_str().into(),
        kind: "scheduled",
        state,
        desired_scale: 0,
        current_scale: running,
        max_scale: None,
        critical: j.def.critical,
        restart: "never",
        // Removed by a reload while a run goes on: it goes when that ends.
        operation: j.retired.then_some("removing"),
        error: None,
        restarts: Default::default(),
        instances: Vec::new(),
        schedule: Some(ScheduleStatus {
            expression,
            timezone: scheduler::zone_name(&j.sched.timezone).into(),
            paused: j.paused,
            running,
            running_pids: j.runs.values().filter_map(|r| r.pid).collect(),
            max_concurrent: j.sched.max_concurrent,
            timeout_seconds: j.sched.timeout.map(|d| d.as_secs_f64()),
            stop_timeout: j.def.shutdown.timeout,
            jitter_seconds: j.sched.jitter.as_secs_f64(),
            catch_up: j.sched.catch_up,
            next_run: if shutting_down || j.paused {
                None
            } else {
                j.next_run.map(unix_seconds)
            },
            last_run: j.last_run.map(unix_seconds),
            last_result: j.last_result.clone(),
            last_exit: j.last_exit,
            last_duration_seconds: j.last_duration,
            stats: j.stats.clone(),
            history: j.history.iter().cloned().collect(),
        }),
    }
}

/// Count a skipped trigger and remember it in the job's history.
fn record_skip(job: &mut Job, history_size: usize, trigger: Trigger, why: &str) {
    job.stats.skipped += 1;
    let now = unix_seconds(SystemTime::now());
    push_bounded(
        &mut job.history,
        history_size,
        RunRecord {
            run_id: None,
            trigger: trigger.as_str().into(),
            started_at: now,
            ended_at: Some(now),
            duration_seconds: Some(0.0),
            result: "skipped".into(),
            error: Some(why.to_string()),
            ..RunRecord::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::job;
    use crate::reaper::ExitStatus;

    /// A clock step during a run moves neither its duration nor the stats.
    #[test]
    fn a_clock_step_during_a_run_does_not_change_its_duration() {
        let def = job("backup");
        let sched = def
            .extra
            .schedule
            .clone()
            .expect("testutil::job is scheduled");
        let mut job = Job::new(def, sched);
        let end = RunEnd {
            status: Some(ExitStatus::Code(0)),
            timed_out: false,
            stopped: false,
            error: None,
        };
        let hour = Duration::from_secs(3600);
        let took = Duration::from_secs(2);
        // Started "an hour from now": the clock was set back an hour
        // during the run; then a day ago: set forward a day.
        for (id, started) in [
            (1, SystemTime::now() + hour),
            (2, SystemTime::now() - 24 * hour),
        ] {
            let r = finish_record(&mut job, id, started, took, &end, "");
            assert_eq!(r.duration_seconds, Some(2.0), "run {id}");
            assert_eq!(job.last_duration, Some(2.0), "run {id}");
        }
        assert_eq!(job.stats.average_duration_seconds, Some(2.0));
    }
}
