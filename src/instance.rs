//! The per-instance lifecycle thread: spawn, wait for the exit the reaper
//! delivers, stop (signal → timeout → kill, to the whole process group),
//! and apply the restart policy with backoff.
//!
//! Invariants:
//! - This thread is the only writer of its instance's local state; the
//!   lifecycle is the single `match (state, input)` in `Runner::step`, with
//!   no wildcard arm. Every transition is reported to the supervisor and
//!   logged with its reason.
//! - A stop or a crash is complete only when the process group is empty
//!   (DESIGN.md §2.6): after the leader exits, the rest of its group gets
//!   the stop signal and is drained before a restart, and `kill_signal` goes
//!   to the group at the timeout (then SIGKILL, if it is another signal).
//! - Every wait is bounded: the stop timeout, then `KILL_GRACE` after the
//!   kill signal (and after SIGKILL, when that is another); at an exit, at
//!   most `output::LAST_LINES_WAIT` for the output thread to write the child's last
//!   lines (so they come before the exit record). While running, the
//!   thread blocks with no timer at all.
//! - Draining a group is the one place that polls (`kill(-pgid, 0)`): no
//!   event reports a group becoming empty. It only happens during a stop,
//!   backs off from 1 ms to 50 ms, and ends at the stop deadline.
//! - Intentional stops never restart; a restart waiting in backoff is
//!   cancelled by a stop. Once shutdown has begun (`Cmd::Hold`) nothing
//!   starts again: an exit is final, a restart waiting in backoff is
//!   dropped, a liveness failure is only logged (its turn to stop comes in
//!   the shutdown order), and the child still running waits for its stop.
//! - Health probes run on a short-lived thread of their own (`Probing`),
//!   each bounded by its timeout, while this thread goes on waiting for
//!   exits and commands: a stop, a kill at the shutdown deadline or an exit
//!   never waits behind a probe (a hung endpoint is exactly when operators
//!   stop things). A probe still going when its child leaves `Running` is
//!   abandoned (an exec probe's group is killed, and its thread joined, so
//!   none outlives sheepdog's exit) and its result dropped.
//!   One probe at a time; none while idle. Every start gets a fresh health tracker, so counters
//!   reset and `initial_delay` applies again after any restart. A liveness
//!   failure stops the instance through the graceful path (signal, timeout,
//!   group kill) and then the restart policy decides; readiness failures
//!   never restart anything.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;

use crate::config::extra::{HealthMode, Probe};
use crate::config::{Process, ProcessType, RestartPolicy};
use crate::group::{self, Whom};
use crate::health::{self, Change, Health, Tracker};
use crate::hooks;
use crate::output::Output;
use crate::reaper::{Exit, ExitStatus, Reaper};
use crate::spawn::{self, Identity};
use crate::{ports, probe, stragglers};

/// How often a start deferred behind a stalled stdout is tried again.
const STALL_RETRY: Duration = Duration::from_secs(1);
/// What sheepdog's own shortage prevented (an instance's thread, a
/// child's pipes or task) is tried again after this, doubling up to
/// `SHORTAGE_MAX` (`shortage_backoff`).
const SHORTAGE_FIRST: Duration = Duration::from_secs(1);
const SHORTAGE_MAX: Duration = Duration::from_secs(30);

/// What the supervisor can ask of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Graceful stop: `shutdown.signal`, then `kill_signal` at the timeout.
    Stop,
    /// SIGKILL to the group at once (forced shutdown, global deadline).
    Kill,
    /// Start nothing again, for the reason given ("sheepdog is shutting
    /// down", "it is being stopped"): a shutdown has begun, or the process's
    /// pre_stop hooks run before its stop. A child running now keeps
    /// running until its `Stop` comes.
    Hold(&'static str),
    /// Send a signal to the group, or to its leader only, if one is
    /// running (no state change).
    Signal(Signal, Whom),
}

/// How an instance ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped on request.
    Stopped,
    /// A oneshot that exited 0.
    Completed,
    /// Exited and the restart policy says not to restart.
    Exited(ExitStatus),
    /// Gave up: attempts exhausted, or a oneshot failed.
    Failed(String),
}

impl Outcome {
    /// A permanent failure (for `critical` and the final exit code).
    pub fn is_failure(&self) -> bool {
        match self {
            Outcome::Stopped | Outcome::Completed => false,
            Outcome::Exited(s) => !s.success(),
            Outcome::Failed(_) => true,
        }
    }
}

/// A transition, reported to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        pid: i32,
    },
    SpawnFailed {
        error: String,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
        /// It exited as it was being stopped (a request, the shutdown).
        stopped: bool,
    },
    /// A start put off by sheepdog's own shortage: no attempt counted.
    Deferred {
        error: String,
        delay: Duration,
    },
    /// `reason`: `exit`, `signal`, `health` or `start`.
    RestartScheduled {
        delay: Duration,
        attempt: u32,
        reason: &'static str,
    },
    /// One health probe finished.
    Probe {
        ok: bool,
        duration: Duration,
        health: Health,
        error: Option<String>,
    },
    Stopping,
    Done(Outcome),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub process: Arc<str>,
    pub index: u32,
    pub event: Event,
}

/// What every instance thread shares.
pub struct Shared {
    pub reaper: Arc<Reaper>,
    pub output: Output,
    /// Where hook executions are reported (for metrics).
    pub hook_executions: Sender<crate::hooks::Execution>,
    /// `global.shutdown_timeout` from the start of the shutdown: set once,
    /// by the supervisor, when it begins (a stop's log line names it when
    /// it comes before the process's own timeout).
    pub shutdown_deadline: std::sync::OnceLock<Instant>,
    /// `global.process_start_timeout`: a spawn's child still short of exec
    /// then is killed (`child::Command::exec_deadline`), which bounds the
    /// instance thread's wait in clone on a hung mount.
    pub start_timeout: Duration,
}

/// The supervisor's handle on a running instance thread.
pub struct Handle {
    pub cmd: Sender<Cmd>,
    pub thread: JoinHandle<()>,
}

/// Start the lifecycle thread for instance `index` of `def`.
pub fn launch(
    def: Arc<Process>,
    index: u32,
    shared: Arc<Shared>,
    reports: Sender<Report>,
) -> std::io::Result<Handle> {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
    let id = Identity::new(&def.name, index);
    let health = HealthPlan::for_instance(&def, &id);
    let runner = Runner {
        health,
        ports_seen: false,
        post_start: None,
        superseded: Vec::new(),
        killed: false,
        def,
        id,
        shared,
        reports,
        exit_tx,
        exit_rx,
        cmd_rx,
        attempts: 0,
        pid: None,
        output_done: None,
        left_behind: Vec::new(),
        held: None,
        probe_not_run: false,
        probing: None,
        deferred: false,
        shortages: 0,
        healthy_streak: None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("{}", runner.id.instance))
        .stack_size(128 * 1024)
        .spawn(move || runner.run())?;
    Ok(Handle {
        cmd: cmd_tx,
        thread,
    })
}

/// What to probe for one instance, with templates and ports resolved.
#[derive(Debug, Clone)]
struct HealthPlan {
    /// None: only the declared ports are checked.
    probe: Option<Probe>,
    /// This instance's ports: each declared port + (index − 1).
    ports: Vec<u16>,
    settings: health::Settings,
    timeout: Duration,
    mode: HealthMode,
}

impl HealthPlan {
    fn for_instance(def: &Process, id: &Identity) -> Option<HealthPlan> {
        let ports: Vec<u16> = def
            .extra
            .ports
            .iter()
            .filter_map(|&p| ports::of_instance(p, id.index))
            .collect();
        match &def.extra.health_check {
            Some(hc) => Some(HealthPlan {
                probe: Some(probe::for_instance(&hc.probe, id, ports.first().copied())),
                ports,
                settings: health::Settings {
                    initial_delay: hc.initial_delay,
                    period: hc.period,
                    startup_period: hc.period,
                    failure_threshold: hc.failure_threshold,
                    success_threshold: hc.success_threshold,
                    startup_timeout: hc.startup_timeout,
                },
                timeout: hc.timeout,
                mode: hc.mode,
            }),
            // Declared ports alone: "listening" is the check, probed fast
            // until first seen so dependents are released promptly.
            None if !ports.is_empty() => Some(HealthPlan {
                probe: None,
                ports,
                settings: health::Settings {
                    initial_delay: Duration::from_millis(100),
                    period: Duration::from_secs(10),
                    startup_period: Duration::from_millis(250),
                    failure_threshold: 3,
                    success_threshold: 1,
                    startup_timeout: None,
                },
                timeout: Duration::from_secs(1),
                mode: HealthMode::Both,
            }),
            None => None,
        }
    }
}

/// The decision after an exit, from the restart policy alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Restart { delay: Duration, attempt: u32 },
    Finish(Outcome),
}

/// How a run ended, for logs and for the reason it failed: "exited 3",
/// "killed by SIGSEGV", "unhealthy", "failed to start" (no status).
fn ending(status: Option<ExitStatus>, unhealthy: bool, start_error: Option<&str>) -> String {
    match (unhealthy, status, start_error) {
        (true, _, _) => "unhealthy".to_string(),
        (false, Some(s), _) => s.to_string(),
        // Kept in the outcome, so status and the API say why, not only
        // the log line of the moment.
        (false, None, Some(e)) => format!("failed to start ({e})"),
        (false, None, None) => "failed to start".to_string(),
    }
}

/// Apply the restart policy. `status` is None for a failed start (its
/// reason in `start_error`);
/// `unhealthy` marks a stop forced by a liveness failure (a failure, however
/// the process exited). `attempts` counts restarts since the last reset,
/// which a run that went well for `restart_reset_after` (`went_well_for`)
/// brings back to 0; returns the decision and the new count. Pure, so it
/// is unit-tested.
pub fn decide(
    def: &Process,
    attempts: u32,
    status: Option<ExitStatus>,
    unhealthy: bool,
    went_well_for: Duration,
    start_error: Option<&str>,
) -> (Decision, u32) {
    let attempts = if went_well_for >= def.backoff.reset_after {
        0
    } else {
        attempts
    };
    let success = !unhealthy && status.is_some_and(ExitStatus::success);
    let wants_restart = match (def.kind, def.restart) {
        (ProcessType::Oneshot, _) if success => {
            return (Decision::Finish(Outcome::Completed), attempts)
        }
        (_, RestartPolicy::Always) => true,
        (_, RestartPolicy::OnFailure) => !success,
        (_, RestartPolicy::Never) => false,
    };
    let what = ending(status, unhealthy, start_error);
    if !wants_restart {
        let outcome = match (def.kind, status, unhealthy) {
            (ProcessType::Longrun, Some(s), false) => Outcome::Exited(s),
            (ProcessType::Oneshot, _, _) | (_, None, _) | (_, _, true) => Outcome::Failed(what),
        };
        return (Decision::Finish(outcome), attempts);
    }
    let limit = def.max_restart_attempts;
    if limit > 0 && attempts >= limit {
        let tries = crate::logging::counted(limit, "restart attempt", "restart attempts");
        let why = format!("{what}; gave up after {tries}");
        return (Decision::Finish(Outcome::Failed(why)), attempts);
    }
    let delay = backoff(def.backoff.initial, def.backoff.max, attempts);
    (
        Decision::Restart {
            delay,
            attempt: attempts + 1,
        },
        attempts + 1,
    )
}

/// The wait before the `n`+1-th try of what sheepdog's own shortage
/// prevented: not the process's failure, so not its restart policy's.
pub fn shortage_backoff(n: u32) -> Duration {
    backoff(SHORTAGE_FIRST, SHORTAGE_MAX, n)
}

/// `initial × 2^n`, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    initial.checked_mul(factor).unwrap_or(max).min(max)
}

/// A stop in progress (requested, or cleaning up after the leader died).
#[derive(Debug)]
struct Stopping {
    stop: group::Stop,
    cause: Cause,
}

#[derive(Debug, Clone, Copy)]
enum Cause {
    Requested,
    LeaderExited {
        status: ExitStatus,
        ran_for: Duration,
    },
    /// Liveness failure (or no success within the startup budget).
    Unhealthy {
        ran_for: Duration,
    },
}

/// Why a start did not happen (pre-start hooks, busy ports).
enum NotStarted {
    /// A stop arrived meanwhile.
    Stopped,
    /// A failed start: the restart policy decides.
    Failed(String),
    /// sheepdog was short of resources (a pre_start hook it could not
    /// start): tried again, as its own spawn would be.
    Short(String),
}

#[derive(Debug)]
enum State {
    /// Spawn at `until` (immediately on launch, later in backoff).
    Waiting {
        until: Instant,
    },
    Running {
        pid: i32,
        since: Instant,
        tracker: Option<Tracker>,
    },
    Stopping(Stopping),
    Done(Outcome),
}

enum Input {
    /// The leader's exit, and when it was seen: its last output is waited
    /// for after that, which is not part of its run time.
    Exit(ExitStatus, Instant),
    Cmd(Cmd),
    Timer,
    /// The probe in progress ended.
    Probed(Probed),
}

/// A probe's result, from its thread.
struct Probed {
    at: Instant,
    checked: probe::Checked,
    /// The declared ports, checked after the probe.
    ports: probe::Outcome,
}

/// The probe going on now, on its own thread. Dropped when its result
/// comes or nobody wants it any more.
struct Probing {
    result: Receiver<Probed>,
    /// The write end of a pipe the probe watches: closing it (dropping
    /// this) ends an exec probe at once, its group killed; a tcp or http
    /// probe ends by its timeout.
    abandon: std::os::fd::OwnedFd,
    /// An exec probe's thread, which kills its group when abandoned.
    exec: Option<JoinHandle<()>>,
    /// Its timeout and the group kill's grace after it: a probe spawn
    /// still in flight then is stuck short of exec (its command or
    /// working_dir on a hung mount) and its exec deadline was not armed
    /// (`sys::arm_exec_deadline` is best effort), and its child is killed,
    /// which fails the probe (`unstick`); else it would never end, and
    /// neither would a stop that waits for it.
    stuck_at: Instant,
}

impl Probing {
    /// Let the probe go. An exec probe's thread kills its group once
    /// `abandon` closes: wait for that (SIGKILL takes milliseconds; a
    /// process stuck in the kernel, `group::KILL_GRACE`), or a probe could
    /// outlive a sheepdog that exits right after this stop.
    fn abandon(self, reaper: &Reaper) {
        drop(self.abandon);
        if let Some(t) = self.exec {
            // Stuck short of exec, its thread would never end. (One not in
            // its clone yet gets stuck later only on a hung mount, and
            // only if this comes in the microseconds before.)
            reaper.kill_spawning(Some(t.thread().id()));
            let _ = t.join();
        }
    }
}

struct Runner {
    health: Option<HealthPlan>,
    /// This start's declared ports have been seen listening.
    ports_seen: bool,
    /// The latest post-start hook run: its cancel and done channels.
    post_start: Option<hooks::PostStart>,
    /// Earlier starts' post-start runs, cancelled by a later start and
    /// maybe still ending: waited for with the latest one.
    superseded: Vec<hooks::PostStart>,
    /// A kill was asked for (forced shutdown, its deadline): hooks still
    /// going when the instance ends are killed at once, not given time.
    killed: bool,
    def: Arc<Process>,
    id: Identity,
    shared: Arc<Shared>,
    reports: Sender<Report>,
    exit_tx: Sender<Exit>,
    exit_rx: Receiver<Exit>,
    cmd_rx: Receiver<Cmd>,
    attempts: u32,
    /// The current leader, while one is alive and unreaped.
    pid: Option<i32>,
    /// Disconnects when the current child's output has all been written.
    output_done: Option<Receiver<()>>,
    /// Processes that left this instance's group, already named in a
    /// warning (`warn_left_behind`).
    left_behind: Vec<i32>,
    /// `Cmd::Hold` came, and why: no restart, whatever the policy says.
    held: Option<&'static str>,
    /// The last probe could not run (`probe::Checked::NotRun`): its
    /// warning was given.
    probe_not_run: bool,
    /// The probe in progress, while the child is `Running`.
    probing: Option<Probing>,
    /// A start is deferred behind a stalled stdout (`spawn`): said once.
    deferred: bool,
    /// Starts in a row that sheepdog's own shortage (EMFILE, EAGAIN…)
    /// prevented, for their retry's backoff.
    shortages: u32,
    /// This start's current healthy streak: its first and its latest
    /// passing check. What counts toward `restart_reset_after` for an
    /// instance with a health check.
    healthy_streak: Option<(Instant, Instant)>,
}

impl Runner {
    fn run(mut self) {
        let mut state = State::Waiting {
            until: Instant::now(),
        };
        loop {
            if let State::Done(outcome) = state {
                self.finish_post_start();
                self.report(Event::Done(outcome));
                return;
            }
            let now = Instant::now();
            let input = match state {
                // Due already (first start, zero backoff): no need to block,
                // but a command that came meanwhile goes first. A start that
                // fails at once with no backoff comes back here every time,
                // and would otherwise never see a stop, even a forced one.
                State::Waiting { until } if until <= now => {
                    self.queued_cmd().unwrap_or(Input::Timer)
                }
                _ => self.next_input(&state),
            };
            state = self.step(state, input, Instant::now());
            if !matches!(state, State::Running { .. }) {
                if let Some(p) = self.probing.take() {
                    p.abandon(&self.shared.reaper);
                }
            }
        }
    }

    /// Let the output thread write the child's last lines first, so they
    /// read before what we log about its exit. Bounded by `output::LAST_LINES_WAIT`: a
    /// grandchild may keep the pipe open for much longer.
    fn wait_for_output(&mut self) {
        if let Some(done) = self.output_done.take() {
            let _ = done.recv_timeout(crate::output::LAST_LINES_WAIT);
        }
    }

    fn report(&self, event: Event) {
        // The supervisor outlives every instance thread; if it is gone we
        // are shutting down anyway.
        let _ = self.reports.send(Report {
            process: self.id.process.clone(),
            index: self.id.index,
            event,
        });
    }

    fn deadline(&self, state: &State) -> Option<Instant> {
        match state {
            State::Waiting { until } => Some(*until),
            // The probe going on ends by its timeout and says so, unless
            // it is stuck.
            State::Running { .. } if self.probing.is_some() => {
                self.probing.as_ref().map(|p| p.stuck_at)
            }
            State::Running { tracker, .. } => tracker.as_ref().map(Tracker::due),
            State::Done(_) => None,
            State::Stopping(s) => Some(s.stop.wake_at()),
        }
    }

    fn next_input(&mut self, state: &State) -> Input {
        let timer = match self.deadline(state) {
            Some(at) => crossbeam_channel::at(at),
            None => crossbeam_channel::never(),
        };
        let never = crossbeam_channel::never();
        let probed = self.probing.as_ref().map_or(&never, |p| &p.result);
        loop {
            select! {
                recv(probed) -> m => {
                    // The thread always sends before it ends; a lost one
                    // (it panicked) reads as a probe that did not run.
                    let done = m.unwrap_or_else(|_| Probed {
                        at: Instant::now(),
                        checked: probe::Checked::NotRun("the probe thread ended without a result".into()),
                        ports: Ok(()),
                    });
                    self.probing = None;
                    return Input::Probed(done);
                }
                recv(self.exit_rx) -> m => {
                    // We hold `exit_tx`, so this channel never disconnects.
                    let Ok(exit) = m else { continue };
                    if Some(exit.pid) == self.pid {
                        let at = Instant::now();
                        self.pid = None;
                        self.wait_for_output();
                        return Input::Exit(exit.status, at);
                    }
                    log::debug!("{}: late exit of former pid {} ({})", self.id.instance, exit.pid, exit.status);
                }
                recv(self.cmd_rx) -> m => return match m {
                    Ok(c) => Input::Cmd(c),
                    Err(_) => self.orphaned(),
                },
                recv(timer) -> _ => return Input::Timer,
            }
        }
    }

    /// A command already sent, without blocking.
    fn queued_cmd(&mut self) -> Option<Input> {
        match self.cmd_rx.try_recv() {
            Ok(c) => Some(Input::Cmd(c)),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(self.orphaned()),
        }
    }

    /// The supervisor dropped us: treat as a forced stop, and never
    /// select on the dead channel again.
    fn orphaned(&mut self) -> Input {
        self.cmd_rx = crossbeam_channel::never();
        Input::Cmd(Cmd::Kill)
    }

    /// The instance state machine: one transition per input.
    fn step(&mut self, state: State, input: Input, now: Instant) -> State {
        self.killed |= matches!(input, Input::Cmd(Cmd::Kill));
        match (state, input) {
            (State::Waiting { until }, Input::Timer) if now >= until => self.spawn(now),
            (s @ State::Waiting { .. }, Input::Timer) => s,
            (State::Waiting { .. }, Input::Cmd(Cmd::Stop | Cmd::Kill)) => {
                log::info!(
                    event = "stopped", instance = &*self.id.instance, reason = "stop requested before start";
                    "{}: stop requested while waiting to start; not starting",
                    self.id.instance
                );
                State::Done(Outcome::Stopped)
            }
            (State::Waiting { .. }, Input::Cmd(Cmd::Hold(why))) => {
                self.held = Some(why);
                log::info!(
                    event = "stopped", instance = &*self.id.instance, reason = why;
                    "{}: not starting it again: {why}",
                    self.id.instance
                );
                State::Done(Outcome::Stopped)
            }
            (s @ State::Waiting { .. }, Input::Cmd(Cmd::Signal(..)) | Input::Exit(..)) => s,
            (State::Running { pid, since, .. }, Input::Exit(status, at)) => {
                self.leader_exited(pid, status, at.saturating_duration_since(since), now)
            }
            (State::Running { pid, .. }, Input::Cmd(Cmd::Stop)) => {
                State::Stopping(self.begin_stop(pid, now, false))
            }
            (State::Running { pid, .. }, Input::Cmd(Cmd::Kill)) => {
                State::Stopping(self.begin_stop(pid, now, true))
            }
            (s @ State::Running { .. }, Input::Cmd(Cmd::Hold(why))) => {
                self.held = Some(why);
                s
            }
            (s @ State::Running { pid, .. }, Input::Cmd(Cmd::Signal(sig, whom))) => {
                self.signal(pid, sig, whom);
                s
            }
            (
                State::Running {
                    pid,
                    since,
                    tracker: Some(t),
                },
                Input::Timer,
            ) if now >= t.due() && self.probing.is_none() => self.start_probe(pid, since, t),
            (s @ State::Running { .. }, Input::Timer) => {
                self.unstick(now);
                s
            }
            (
                State::Running {
                    pid,
                    since,
                    tracker: Some(t),
                },
                Input::Probed(done),
            ) => self.probed(pid, since, t, done),
            // A result for a child that is gone (or a tracker that is).
            (s, Input::Probed(_)) => s,
            (State::Stopping(mut s), Input::Exit(status, _)) => {
                // Report it like any exit, so status and metrics show the
                // leader gone and why (the group may still be draining).
                self.report(Event::Exited {
                    pid: s.stop.pgid,
                    status,
                    stopped: true,
                });
                s.stop.leader_exited(status, now);
                self.stop_progress(s, now)
            }
            (State::Stopping(s), Input::Timer) => self.stop_progress(s, now),
            (State::Stopping(mut s), Input::Cmd(Cmd::Stop)) => {
                // A crash clean-up turns into a requested stop: no restart.
                s.cause = Cause::Requested;
                State::Stopping(s)
            }
            (State::Stopping(mut s), Input::Cmd(Cmd::Kill)) => {
                s.cause = Cause::Requested;
                s.stop.kill(&self.id.instance, now);
                State::Stopping(s)
            }
            (State::Stopping(s), Input::Cmd(Cmd::Hold(why))) => {
                self.held = Some(why);
                State::Stopping(s)
            }
            (State::Stopping(s), Input::Cmd(Cmd::Signal(sig, whom))) => {
                // Once the leader is reaped only its group is left to reach.
                if whom == Whom::Group || s.stop.leader.is_none() {
                    self.signal(s.stop.pgid, sig, whom);
                }
                State::Stopping(s)
            }
            (s @ State::Done(_), Input::Exit(..) | Input::Cmd(_) | Input::Timer) => s,
        }
    }

    fn spawn(&mut self, now: Instant) -> State {
        // sheepdog's stdout does not drain and the pipes of earlier starts
        // pile up before the output thread: another start would add two
        // more descriptors, until none are left for any process (a crash
        // loop behind a stalled log shipper). Backpressure on starts too.
        if let Some(waiting) = self.shared.output.stalled() {
            if !std::mem::replace(&mut self.deferred, true) {
                log::warn!(
                    event = "start_deferred", instance = &*self.id.instance;
                    "{}: start deferred: sheepdog's stdout is not draining ({waiting} pipes \
                     wait for the output thread); trying again every {}s",
                    self.id.instance,
                    STALL_RETRY.as_secs()
                );
            }
            return State::Waiting {
                until: now + STALL_RETRY,
            };
        }
        self.deferred = false;
        if let Err(why) = self.run_pre_start().and_then(|()| self.wait_for_ports()) {
            return match why {
                NotStarted::Stopped => State::Done(Outcome::Stopped),
                NotStarted::Short(why) => self.short_of_resources(why, Instant::now()),
                NotStarted::Failed(error) => {
                    log::error!("{}: {error}", self.id.instance);
                    self.report(Event::SpawnFailed {
                        error: error.clone(),
                    });
                    self.after_exit(None, Some(&error), false, Duration::ZERO, Instant::now())
                }
            };
        }
        let shared = &self.shared;
        match spawn::start(
            &self.def,
            &self.id,
            &[],
            Some(Instant::now() + shared.start_timeout),
            &shared.reaper,
            &self.exit_tx,
            &shared.output,
        ) {
            Ok((pid, output_done)) => {
                // The run, its initial_delay and its startup budget begin
                // now, not before the pre_start hooks and the port wait.
                let now = Instant::now();
                self.pid = Some(pid);
                self.output_done = Some(output_done);
                self.ports_seen = false;
                self.shortages = 0;
                self.healthy_streak = None;
                log::info!(
                    event = "started", instance = &*self.id.instance, pid = pid;
                    "{}: started (pid {pid})", self.id.instance
                );
                self.report(Event::Started { pid });
                self.run_post_start();
                let tracker = self.health.as_ref().map(|h| Tracker::new(h.settings, now));
                State::Running {
                    pid,
                    since: now,
                    tracker,
                }
            }
            Err(e) => {
                let mut error = format!("unable to start {:?}: {e}", self.def.command[0]);
                if crate::child::is_exec_deadline(&e) {
                    error.push_str(&format!(
                        "; process_start_timeout is {}",
                        crate::config::format_duration(shared.start_timeout)
                    ));
                }
                if crate::sys::short_of_resources(&e) {
                    return self.short_of_resources(error, now);
                }
                if let (Some(c), Some(libc::EPERM)) =
                    (&self.def.credentials, crate::sys::errno_of(&e))
                {
                    let euid = nix::unistd::Uid::effective();
                    // `group:` alone keeps sheepdog's own user.
                    let to = match c.uid == euid.as_raw() {
                        true => format!("gid {}", c.gid),
                        false => format!("user {:?}", c.user),
                    };
                    error.push_str(&format!(
                        " (switching to {to} needs root; sheepdog runs as uid {euid})"
                    ));
                }
                log::error!(
                    event = "spawn_failed", instance = &*self.id.instance, reason = error.as_str();
                    "{}: {error}", self.id.instance
                );
                self.report(Event::SpawnFailed {
                    error: error.clone(),
                });
                self.after_exit(None, Some(&error), false, Duration::ZERO, now)
            }
        }
    }

    /// sheepdog could not make the child's pipes or its task (EMFILE,
    /// EAGAIN, ENOMEM): its own shortage, not the instance's failure, so
    /// no restart attempt is counted whatever the policy; tried again
    /// after 1 s, doubling up to 30 s, as an instance thread is.
    /// (Its pre_start hooks too.) `what`: what could not be started.
    #[inline(never)]
    fn short_of_resources(&mut self, what: String, now: Instant) -> State {
        let delay = shortage_backoff(self.shortages);
        self.shortages = self.shortages.saturating_add(1);
        let error = format!(
            "{what}; sheepdog is short of resources, which does not count against the instance"
        );
        log::warn!(
            event = "spawn_failed", instance = &*self.id.instance, reason = error.as_str();
            "{}: {error}; trying again in {}",
            self.id.instance,
            crate::config::format_duration(delay)
        );
        self.report(Event::Deferred { error, delay });
        State::Waiting { until: now + delay }
    }

    /// The process's pre-start hooks, before every start (restarts too).
    /// They run on their own thread so a stop request still gets through:
    /// it cancels them and this start does not happen.
    fn run_pre_start(&mut self) -> Result<(), NotStarted> {
        match hooks::run_pre_start(&self.def, &self.shared, &self.id, &self.cmd_rx, hook_ask) {
            hooks::PreStart::Done => Ok(()),
            hooks::PreStart::Failed(why) => Err(NotStarted::Failed(why)),
            hooks::PreStart::Short(why) => Err(NotStarted::Short(why)),
            hooks::PreStart::Stopped => Err(NotStarted::Stopped),
        }
    }

    /// The process's post-start hooks, after each start, on their own thread
    /// (their result is logged and counted; nothing waits for them). A
    /// previous start's hooks still going belong to a run that is over: they
    /// are cancelled, so a crash loop cannot pile them up.
    fn run_post_start(&mut self) {
        self.superseded.retain(hooks::PostStart::running);
        if let Some(old) = self.post_start.take().filter(hooks::PostStart::running) {
            log::info!(
                "{}: cancelling the previous start's post_start hooks, still going",
                self.id.instance
            );
            old.cancel(hooks::Ask::Stop);
            self.superseded.push(old);
        }
        self.post_start = hooks::PostStart::start(&self.def, &self.shared, &self.id);
    }

    /// Before the instance ends: let its post-start runs finish (briefly),
    /// then cancel them, so no hook is cut off by sheepdog's exit. Bounded.
    fn finish_post_start(&mut self) {
        let mut runs = std::mem::take(&mut self.superseded);
        runs.extend(self.post_start.take());
        for p in runs {
            // A kill read earlier (it ended the child) is not asked again.
            if self.killed {
                p.cancel(hooks::Ask::Kill);
            }
            p.finish(&self.cmd_rx, hook_ask);
        }
    }

    /// Wait (up to `port_wait`) for this instance's declared ports to be
    /// free, so a previous owner that is still letting go does not make the
    /// new child fail with EADDRINUSE. No event reports a port becoming
    /// free, so this checks every 100 ms, still answering stop requests.
    fn wait_for_ports(&mut self) -> Result<(), NotStarted> {
        let Some(plan) = &self.health else {
            return Ok(());
        };
        let ports = plan.ports.clone();
        let wait = crate::config::format_duration(self.def.extra.port_wait);
        let deadline = Instant::now() + self.def.extra.port_wait;
        let mut said = false;
        loop {
            let Some(busy) = ports.iter().copied().find(|p| ports::held(*p)) else {
                return Ok(());
            };
            let who = || ports::holder(busy).map_or_else(String::new, |h| format!(" by {h}"));
            if Instant::now() >= deadline {
                return Err(NotStarted::Failed(format!(
                    "port {busy} is held{}; waited {wait} for it to be released",
                    who()
                )));
            }
            if !said {
                // Else the log is silent for up to port_wait.
                said = true;
                log::info!(
                    "{}: port {busy} is held{}; waiting up to {wait} for it to be released",
                    self.id.instance,
                    who()
                );
            }
            match self.cmd_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(c @ (Cmd::Stop | Cmd::Kill | Cmd::Hold(_))) => {
                    self.killed |= matches!(c, Cmd::Kill);
                    return Err(NotStarted::Stopped);
                }
                // The supervisor is gone: a forced stop, as in `next_input`
                // (waiting on would spin: the closed channel answers at once).
                Err(RecvTimeoutError::Disconnected) => {
                    self.killed = true;
                    return Err(NotStarted::Stopped);
                }
                Ok(Cmd::Signal(..)) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Start one probe on a thread of its own (bounded by its timeout);
    /// its result comes back as `Input::Probed`.
    fn start_probe(&mut self, pid: i32, since: Instant, tracker: Tracker) -> State {
        let Some(plan) = self.health.clone() else {
            return State::Running {
                pid,
                since,
                tracker: None,
            };
        };
        let (tx, result) = crossbeam_channel::bounded(1);
        let timeout = plan.timeout;
        let exec = matches!(plan.probe, Some(crate::config::extra::Probe::Exec { .. }));
        let (def, id, shared) = (self.def.clone(), self.id.clone(), self.shared.clone());
        let spawned = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|(watch, abandon)| {
                std::thread::Builder::new()
                    .name(format!("probe:{}", self.id.instance))
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let at = Instant::now();
                        let checked = match &plan.probe {
                            Some(p) => {
                                let (timeout, reaper) = (plan.timeout, &shared.reaper);
                                probe::run(p, timeout, &def, &id, reaper, watch.as_fd())
                            }
                            None => probe::Checked::Ran(Ok(())),
                        };
                        let ports = if plan.ports.is_empty() {
                            Ok(())
                        } else {
                            probe::ports_listening(&plan.ports, pid)
                        };
                        let _ = tx.send(Probed { at, checked, ports });
                    })
                    .map(|t| (abandon, exec.then_some(t)))
            });
        match spawned {
            Ok((abandon, exec)) => {
                self.probing = Some(Probing {
                    result,
                    abandon,
                    exec,
                    stuck_at: Instant::now() + timeout + group::KILL_GRACE,
                })
            }
            // Short of threads or descriptors (its abandon pipe): sheepdog's
            // shortage, not the instance's.
            Err(e) => {
                let now = Instant::now();
                let done = Probed {
                    at: now,
                    checked: probe::Checked::NotRun(format!("unable to start a probe: {e}")),
                    ports: Ok(()),
                };
                return self.probed(pid, since, tracker, done);
            }
        }
        State::Running {
            pid,
            since,
            tracker: Some(tracker),
        }
    }

    /// A probe still going at its `stuck_at` (see there): kill what holds
    /// it, and look again a grace later.
    fn unstick(&mut self, now: Instant) {
        if let Some(p) = self.probing.as_mut().filter(|p| now >= p.stuck_at) {
            if let Some(t) = &p.exec {
                self.shared.reaper.kill_spawning(Some(t.thread().id()));
            }
            p.stuck_at = now + group::KILL_GRACE;
        }
    }

    /// Act on a probe's result.
    fn probed(&mut self, pid: i32, since: Instant, mut tracker: Tracker, done: Probed) -> State {
        // (A tracker exists only for an instance with a health plan.)
        let readiness_only = self
            .health
            .as_ref()
            .is_some_and(|plan| plan.mode == HealthMode::Readiness);
        let Probed { at, checked, ports } = done;
        let checked = match checked {
            probe::Checked::Ran(outcome) => {
                self.probe_not_run = false;
                outcome
            }
            probe::Checked::NotRun(why) => {
                // Said once per episode; the health stays as it was.
                if !std::mem::replace(&mut self.probe_not_run, true) {
                    log::warn!(
                        event = "probe_not_run", instance = &*self.id.instance, reason = why.as_str();
                        "{}: health check not run: {why}; sheepdog is short of resources, \
                         which does not count against the instance",
                        self.id.instance
                    );
                }
                tracker.skip(at, Instant::now());
                return State::Running {
                    pid,
                    since,
                    tracker: Some(tracker),
                };
            }
        };
        // Declared ports count against health only once they have been seen
        // listening since this start; before that they only hold readiness.
        if ports.is_ok() {
            self.ports_seen = true;
        }
        let now = Instant::now();
        let (ok, change) = match (checked, ports) {
            (Err(e), _) => (false, tracker.record(Err(e), at, now)),
            (Ok(()), Err(e)) if !self.ports_seen => {
                (false, tracker.record_pending(format!("{e} yet"), at, now))
            }
            (Ok(()), ports) => (ports.is_ok(), tracker.record(ports, at, now)),
        };
        let streak = self.healthy_streak;
        self.healthy_streak = match (tracker.state(), ok, streak) {
            (Health::Healthy, true, streak) => Some((streak.map_or(at, |(from, _)| from), at)),
            // A failure short of the threshold pauses the streak.
            (Health::Healthy, false, streak) => streak,
            _ => None,
        };
        // Log the transition before reporting it, so the supervisor's
        // reaction (e.g. starting a dependent) always reads after it.
        let restart = match &change {
            Change::None => None,
            Change::BecameHealthy => {
                log::info!(
                    event = "healthy", instance = &*self.id.instance, pid = pid;
                    "{}: healthy", self.id.instance
                );
                None
            }
            // Readiness never restarts, not even for a startup that ran
            // out of time: the instance just stays not ready.
            Change::BecameUnhealthy(why) | Change::StartupFailed(why) if readiness_only => {
                log::warn!(
                    event = "not_ready", instance = &*self.id.instance, pid = pid, reason = why.as_str();
                    "{}: not ready: {why}", self.id.instance
                );
                None
            }
            // One record for both ends (the record's code is not small).
            Change::BecameUnhealthy(why) | Change::StartupFailed(why) => {
                let then = match self.held {
                    Some(h) => format!("left running until its turn to stop ({h})"),
                    None => "restarting it through a graceful stop".into(),
                };
                log::warn!(
                    event = "unhealthy", instance = &*self.id.instance, pid = pid, reason = why.as_str();
                    "{}: unhealthy: {why}; {then}", self.id.instance
                );
                self.held.is_none().then_some(())
            }
        };
        self.report(Event::Probe {
            ok,
            duration: now - at,
            health: tracker.state(),
            error: tracker.last_error().map(str::to_string),
        });
        if restart.is_none() {
            return State::Running {
                pid,
                since,
                tracker: Some(tracker),
            };
        }
        // The streak this failure ends is what the run went well for: two
        // hours healthy, then a liveness restart, resets the count as a
        // crash after two hours does.
        self.healthy_streak = streak;
        let mut s = self.begin_stop(pid, now, false);
        s.cause = Cause::Unhealthy {
            ran_for: now.saturating_duration_since(since),
        };
        State::Stopping(s)
    }

    fn leader_exited(
        &mut self,
        pid: i32,
        status: ExitStatus,
        ran_for: Duration,
        now: Instant,
    ) -> State {
        self.report(Event::Exited {
            pid,
            status,
            stopped: false,
        });
        let (exit_code, signal) = status_fields(Some(status));
        log::debug!(
            event = "exited", instance = &*self.id.instance, pid = pid, exit_code = exit_code,
            signal = signal.as_deref(), uptime_ms = ran_for.as_millis() as u64;
            "{}: pid {pid} {status} after {}", self.id.instance, crate::config::format_elapsed(ran_for)
        );
        if group::alive(pid) {
            log::info!(
                event = "stopping_group", instance = &*self.id.instance, pid = pid;
                "{}: pid {pid} {status}; stopping the rest of its process group with {}",
                self.id.instance,
                self.def.shutdown.signal
            );
            // Not running while its group drains (up to its stop timeout):
            // status and readiness must not show it serving.
            self.report(Event::Stopping);
            let stop = group::Stop::begin(
                &self.id.instance,
                pid,
                &self.def.shutdown,
                Some(status),
                false,
                now,
            );
            let s = Stopping {
                stop,
                cause: Cause::LeaderExited { status, ran_for },
            };
            return State::Stopping(s);
        }
        self.after_exit(Some(status), None, false, ran_for, now)
    }

    fn after_exit(
        &mut self,
        status: Option<ExitStatus>,
        start_error: Option<&str>,
        unhealthy: bool,
        ran_for: Duration,
        now: Instant,
    ) -> State {
        if status.is_some() {
            self.warn_left_behind();
        }
        let went_well = self.went_well_for(ran_for);
        let (decision, attempts) = decide(
            &self.def,
            self.attempts,
            status,
            unhealthy,
            went_well,
            start_error,
        );
        self.attempts = attempts;
        let decision = match (decision, status) {
            (Decision::Restart { .. }, Some(s)) if self.held.is_some() => {
                Decision::Finish(Outcome::Exited(s))
            }
            (Decision::Restart { .. }, None) if self.held.is_some() => {
                Decision::Finish(Outcome::Stopped)
            }
            (d, _) => d,
        };
        // A failed start's reason was logged on the line before.
        let mut what = ending(status, unhealthy, None);
        // "exited 3 after 2ms"; a start that failed never ran at all.
        if status.is_some() || unhealthy {
            what = format!("{what} after {}", crate::config::format_elapsed(ran_for));
        }
        let reason = match (unhealthy, status) {
            (true, _) => "health",
            (false, Some(ExitStatus::Signal { .. })) => "signal",
            (false, Some(ExitStatus::Code(_))) => "exit",
            (false, None) => "start",
        };
        let (exit_code, signal) = status_fields(status);
        let signal = signal.as_deref();
        let instance = &*self.id.instance;
        match decision {
            Decision::Restart { delay, attempt } => {
                log::info!(
                    event = "restarting", instance = instance, reason = reason, exit_code = exit_code,
                    signal = signal, attempt = attempt, backoff_ms = delay.as_millis() as u64;
                    "{}: {what}; restarting (attempt {attempt}, backoff {})",
                    self.id.instance,
                    crate::config::format_duration(delay)
                );
                self.report(Event::RestartScheduled {
                    delay,
                    attempt,
                    reason,
                });
                State::Waiting { until: now + delay }
            }
            Decision::Finish(outcome) => {
                match &outcome {
                    Outcome::Failed(why) => log::error!(
                        event = "failed", instance = instance, reason = why.as_str(),
                        exit_code = exit_code, signal = signal;
                        "{}: failed: {why}", self.id.instance
                    ),
                    Outcome::Completed => log::info!(
                        event = "completed", instance = instance, exit_code = exit_code;
                        "{}: completed", self.id.instance
                    ),
                    Outcome::Exited(_) => {
                        // One record for both reasons (its code is not small).
                        // `what` has its run time, as its neighbours do.
                        let why = match self.held {
                            Some(h) => format!(": {h}"),
                            None => format!(" (restart: {})", policy_name(self.def.restart)),
                        };
                        log::info!(
                            event = "exited", instance = instance, reason = reason,
                            exit_code = exit_code, signal = signal;
                            "{}: {what}; not restarting{why}",
                            self.id.instance
                        )
                    }
                    Outcome::Stopped => {}
                }
                State::Done(outcome)
            }
        }
    }

    /// How long a run that lasted `ran_for` went well, for
    /// `restart_reset_after`: all of it, or with a health check, its last
    /// healthy streak. A run that never passed its checks, or failed them
    /// for minutes before its stop, did not go well however long it took.
    /// The streak is used up: the failed starts that may follow did not
    /// run, and must not reset the count with it again.
    fn went_well_for(&mut self, ran_for: Duration) -> Duration {
        match (&self.health, self.healthy_streak.take()) {
            (None, _) => ran_for,
            (Some(_), Some((from, to))) => to.saturating_duration_since(from),
            (Some(_), None) => Duration::ZERO,
        }
    }

    /// `; the shutdown deadline kills it sooner, in 8s` when a shutdown's
    /// deadline comes visibly before `kill_at` (not a few µs before it, as
    /// when `shutdown.timeout` equals `global.shutdown_timeout`).
    fn deadline_first(&self, kill_at: Instant, now: Instant) -> String {
        // Tenths of a second up to 10s (up: 999ms is "1s"), then whole
        // seconds.
        let shown = |at: Instant| {
            let ms = at.saturating_duration_since(now).as_millis() as u64;
            Duration::from_millis(match ms {
                0..10_000 => ms.div_ceil(100) * 100,
                _ => (ms + 500) / 1000 * 1000,
            })
        };
        match self.shared.shutdown_deadline.get() {
            Some(&d) if shown(d) < shown(kill_at) => format!(
                "; the shutdown deadline kills it sooner, in {}",
                crate::config::format_duration(shown(d))
            ),
            _ => String::new(),
        }
    }

    /// A requested stop: the stop signal to the group, then wait; or,
    /// `forced` (the global deadline, a second SIGTERM), SIGKILL at once.
    fn begin_stop(&mut self, pid: i32, now: Instant, forced: bool) -> Stopping {
        let sd = &self.def.shutdown;
        if forced {
            log::info!(
                event = "stopping", instance = &*self.id.instance, pid = pid, signal = "SIGKILL";
                "{}: killing pid {pid}: SIGKILL to its process group (forced shutdown)",
                self.id.instance
            );
        } else {
            log::info!(
                event = "stopping", instance = &*self.id.instance, pid = pid, signal = sd.signal.as_str(),
                timeout_ms = sd.timeout.as_millis() as u64;
                "{}: stopping pid {pid}: {} to its process group, then {} after {}{}{}",
                self.id.instance,
                sd.signal,
                sd.kill_signal,
                crate::config::format_duration(sd.timeout),
                if sd.kill_signal == Signal::SIGKILL {
                    String::new()
                } else {
                    format!(" and SIGKILL {} later", crate::config::format_duration(group::KILL_GRACE))
                },
                self.deadline_first(now + sd.timeout, now)
            );
        }
        self.report(Event::Stopping);
        Stopping {
            stop: group::Stop::begin(&self.id.instance, pid, sd, None, forced, now),
            cause: Cause::Requested,
        }
    }

    fn stop_progress(&mut self, mut s: Stopping, now: Instant) -> State {
        match s.stop.advance(&self.id.instance, now) {
            None => State::Stopping(s),
            Some(_) => self.stop_finished(s, now),
        }
    }

    fn stop_finished(&mut self, s: Stopping, now: Instant) -> State {
        match s.cause {
            Cause::Requested => {
                let how = s
                    .stop
                    .leader
                    .map_or_else(|| "leader not reaped".to_string(), |st| st.to_string());
                let (exit_code, signal) = status_fields(s.stop.leader);
                log::info!(
                    event = "stopped", instance = &*self.id.instance, pid = s.stop.pgid,
                    exit_code = exit_code, signal = signal.as_deref();
                    "{}: stopped ({how})", self.id.instance
                );
                // A stop on request (API, scale down, rolling restart) leaves
                // behind what left the group, as a crash does; in a shutdown
                // the end-of-shutdown sweep takes them instead.
                if self.held.is_none() {
                    self.warn_left_behind();
                }
                State::Done(Outcome::Stopped)
            }
            Cause::LeaderExited { status, ran_for } => {
                self.after_exit(Some(status), None, false, ran_for, now)
            }
            Cause::Unhealthy { ran_for } => {
                self.after_exit(s.stop.leader, None, true, ran_for, now)
            }
        }
    }

    /// Name, once each, the processes that left this instance's group and
    /// outlived its run: a daemon's fork (`php-fpm -D`, nginx without
    /// `daemon off;`) is no longer supervised, and it holds the port the
    /// next start needs, which then fails with EADDRINUSE again and again.
    /// Only named: an intended background process is the operator's call,
    /// and the end of the shutdown ends them all (`stragglers`).
    fn warn_left_behind(&mut self) {
        // No search now: what was named stays named.
        if let Some(found) =
            stragglers::warn_left_behind(&self.shared.reaper, &self.id.instance, &self.left_behind)
        {
            self.left_behind = found;
        }
    }

    /// `pgid` is the leader's pid too.
    fn signal(&self, pgid: i32, sig: Signal, whom: Whom) {
        match whom {
            Whom::Group => group::signal(&self.id.instance, pgid, sig),
            Whom::Main => group::signal_main(&self.id.instance, pgid, sig),
        }
    }
}

/// What a command means to this instance's hooks while they run.
fn hook_ask(c: &Cmd) -> hooks::Ask {
    match c {
        // Nothing to reach yet (pre_start), or nothing to stop any more.
        Cmd::Signal(..) => hooks::Ask::Nothing,
        Cmd::Stop | Cmd::Hold(_) => hooks::Ask::Stop,
        Cmd::Kill => hooks::Ask::Kill,
    }
}

/// The `exit_code` and `signal` fields of a structured decision record.
fn status_fields(s: Option<ExitStatus>) -> (Option<i32>, Option<String>) {
    match s {
        Some(ExitStatus::Code(c)) => (Some(c), None),
        Some(ExitStatus::Signal { signal, .. }) => (None, Some(crate::reaper::signal_name(signal))),
        None => (None, None),
    }
}

pub fn policy_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backoff, InitialState, Shutdown};

    fn process(kind: ProcessType, restart: RestartPolicy, max: u32) -> Process {
        Process {
            name: "p".into(),
            enabled: true,
            kind,
            initial_state: InitialState::Running,
            command: vec!["true".into()],
            scale: 1,
            max_scale: None,
            depends_on: vec![],
            restart,
            max_restart_attempts: max,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                reset_after: Duration::from_secs(60),
            },
            working_dir: None,
            env: Default::default(),
            credentials: None,
            shutdown: Shutdown {
                signal: Signal::SIGTERM,
                timeout: Duration::from_secs(10),
                kill_signal: Signal::SIGKILL,
                pre_stop_hook: None,
            },
            critical: false,
            extra: Default::default(),
        }
    }

    const OK: Option<ExitStatus> = Some(ExitStatus::Code(0));
    const FAIL: Option<ExitStatus> = Some(ExitStatus::Code(1));
    const KILLED: Option<ExitStatus> = Some(ExitStatus::Signal {
        signal: 9,
        core_dumped: false,
    });
    const SHORT: Duration = Duration::from_secs(1);

    fn restart(delay_secs: u64, attempt: u32) -> Decision {
        Decision::Restart {
            delay: Duration::from_secs(delay_secs),
            attempt,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let seq: Vec<u64> = (0..9).map(|n| backoff(i, m, n).as_secs()).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(
            backoff(i, m, 1000),
            m,
            "huge attempt counts saturate, never overflow"
        );
        assert_eq!(backoff(Duration::ZERO, m, 5), Duration::ZERO);
    }

    #[test]
    fn always_restarts_on_any_exit_with_growing_backoff() {
        let p = process(ProcessType::Longrun, RestartPolicy::Always, 0);
        assert_eq!(decide(&p, 0, OK, false, SHORT, None), (restart(1, 1), 1));
        assert_eq!(decide(&p, 1, FAIL, false, SHORT, None), (restart(2, 2), 2));
        assert_eq!(
            decide(&p, 2, KILLED, false, SHORT, None),
            (restart(4, 3), 3)
        );
        assert_eq!(
            decide(&p, 5, FAIL, false, SHORT, None),
            (restart(8, 6), 6),
            "capped at backoff.max"
        );
    }

    #[test]
    fn a_long_run_resets_attempts_and_backoff() {
        let p = process(ProcessType::Longrun, RestartPolicy::Always, 3);
        assert_eq!(
            decide(&p, 3, FAIL, false, Duration::from_secs(60), None),
            (restart(1, 1), 1)
        );
        assert_eq!(
            decide(&p, 2, FAIL, false, Duration::from_secs(59), None),
            (restart(4, 3), 3)
        );
    }

    #[test]
    fn on_failure_restarts_only_failures() {
        let p = process(ProcessType::Longrun, RestartPolicy::OnFailure, 0);
        assert_eq!(
            decide(&p, 0, OK, false, SHORT, None),
            (Decision::Finish(Outcome::Exited(ExitStatus::Code(0))), 0)
        );
        assert_eq!(decide(&p, 0, FAIL, false, SHORT, None), (restart(1, 1), 1));
        assert_eq!(
            decide(&p, 0, KILLED, false, SHORT, None),
            (restart(1, 1), 1),
            "death by signal is a failure"
        );
    }

    #[test]
    fn never_never_restarts() {
        let p = process(ProcessType::Longrun, RestartPolicy::Never, 0);
        let (d, _) = decide(&p, 0, FAIL, false, SHORT, None);
        assert_eq!(d, Decision::Finish(Outcome::Exited(ExitStatus::Code(1))));
        assert!(matches!(
            decide(&p, 0, None, false, SHORT, None).0,
            Decision::Finish(Outcome::Failed(_))
        ));
    }

    #[test]
    fn attempts_exhausted_means_failed() {
        let p = process(ProcessType::Longrun, RestartPolicy::Always, 2);
        assert_eq!(decide(&p, 1, FAIL, false, SHORT, None).0, restart(2, 2));
        let (d, _) = decide(&p, 2, FAIL, false, SHORT, None);
        let Decision::Finish(Outcome::Failed(why)) = d else {
            panic!("expected failure, got {d:?}")
        };
        assert!(
            why.contains("exited 1") && why.contains("2 restart attempts"),
            "{why}"
        );
    }

    #[test]
    fn spawn_failures_follow_the_policy() {
        let p = process(ProcessType::Longrun, RestartPolicy::Always, 0);
        assert_eq!(
            decide(&p, 0, None, false, Duration::ZERO, None).0,
            restart(1, 1)
        );
    }

    #[test]
    fn oneshots_complete_or_retry_on_failure() {
        let p = process(ProcessType::Oneshot, RestartPolicy::OnFailure, 2);
        assert_eq!(
            decide(&p, 0, OK, false, SHORT, None).0,
            Decision::Finish(Outcome::Completed)
        );
        assert_eq!(decide(&p, 0, FAIL, false, SHORT, None).0, restart(1, 1));
        assert!(matches!(
            decide(&p, 2, FAIL, false, SHORT, None).0,
            Decision::Finish(Outcome::Failed(_))
        ));
        let never = process(ProcessType::Oneshot, RestartPolicy::Never, 0);
        assert!(matches!(
            decide(&never, 0, FAIL, false, SHORT, None).0,
            Decision::Finish(Outcome::Failed(_))
        ));
    }

    #[test]
    fn outcomes_that_count_as_failures() {
        assert!(!Outcome::Stopped.is_failure());
        assert!(!Outcome::Completed.is_failure());
        assert!(!Outcome::Exited(ExitStatus::Code(0)).is_failure());
        assert!(Outcome::Exited(ExitStatus::Code(3)).is_failure());
        assert!(Outcome::Failed("x".into()).is_failure());
    }

    #[test]
    fn a_liveness_failure_is_a_failure_whatever_the_exit() {
        let p = process(ProcessType::Longrun, RestartPolicy::OnFailure, 0);
        assert_eq!(
            decide(&p, 0, OK, true, SHORT, None).0,
            restart(1, 1),
            "exit 0 after SIGTERM still restarts"
        );
        let never = process(ProcessType::Longrun, RestartPolicy::Never, 0);
        let (d, _) = decide(&never, 0, OK, true, SHORT, None);
        assert_eq!(d, Decision::Finish(Outcome::Failed("unhealthy".into())));
    }
}
