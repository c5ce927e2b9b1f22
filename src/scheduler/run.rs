//! One scheduled run on its own thread: spawn the job's command through
//! the reaper, wait for it, stop it at `schedule_timeout`, report the end.
//!
//! Invariants:
//! - Never calls `waitpid`: the exit arrives from the reaper.
//! - A run is over only when its process group is empty (DESIGN.md §2.6):
//!   after the leader exits, the rest of the group gets the stop signal;
//!   a timeout or a stop sends `shutdown.signal` to the group, then
//!   `shutdown.kill_signal` at `shutdown.timeout` (SIGKILL after it, if it
//!   is another signal; `group::Stop`), then waits at most `KILL_GRACE`.
//!   Every wait is bounded.
//! - A kill (the shutdown deadline, a second signal) reaches the run's
//!   post_start hooks too: they are killed with it, never given time.
//! - No polling while the run is going: the thread blocks on the exit, the
//!   command channel and the timeout. Draining a group after its leader
//!   exited polls `kill(-pgid, 0)` with backoff (1 ms to 50 ms), as
//!   instances do, because no event reports an empty group.
//! - Reports exactly one `Started` (or none when the spawn fails) and then
//!   exactly one `Done`, as its last act.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::hooks;

use super::Trigger;
use crate::child::var;
use crate::config::{format_duration, Process};
use crate::group;
use crate::instance::Shared;
use crate::reaper::{Exit, ExitStatus};
use crate::spawn::{self, Identity};
use crate::stragglers;

/// How long a run's end waits for its last output lines to be written.
const OUTPUT_WAIT: Duration = Duration::from_millis(500);

/// What the supervisor can ask of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCmd {
    /// Graceful: `shutdown.signal`, `kill_signal` at `shutdown.timeout`.
    Stop,
    /// SIGKILL to the group now (forced shutdown).
    Kill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The leader's status; None when it never started or was not reaped.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// Stopped on request (shutdown).
    pub stopped: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    Started { pid: i32 },
    Done(RunEnd),
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub job: Arc<str>,
    pub run_id: u64,
    pub event: RunEvent,
}

pub struct RunHandle {
    pub cmd: Sender<RunCmd>,
    pub thread: JoinHandle<()>,
}

/// Start run `run_id` of `def` on its own thread.
pub fn launch(
    def: Arc<Process>,
    run_id: u64,
    trigger: Trigger,
    timeout: Option<Duration>,
    shared: Arc<Shared>,
    reports: Sender<RunReport>,
) -> std::io::Result<RunHandle> {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
    let id = Identity {
        process: def.name.as_str().into(),
        instance: format!("{}#{run_id}", def.name).into(),
        index: 1,
    };
    let run = Run {
        def,
        id,
        run_id,
        trigger,
        timeout,
        shared,
        reports,
        exit_tx,
        exit_rx,
        cmd_rx,
        killed: false,
    };
    let thread = std::thread::Builder::new()
        .name(format!("run-{run_id}"))
        .stack_size(128 * 1024)
        .spawn(move || run.run())?;
    Ok(RunHandle {
        cmd: cmd_tx,
        thread,
    })
}

struct Run {
    def: Arc<Process>,
    id: Identity,
    run_id: u64,
    trigger: Trigger,
    timeout: Option<Duration>,
    shared: Arc<Shared>,
    reports: Sender<RunReport>,
    exit_tx: Sender<Exit>,
    exit_rx: Receiver<Exit>,
    cmd_rx: Receiver<RunCmd>,
    /// A kill was read (the shutdown deadline, a second signal): its
    /// post_start hooks are killed at once, not given time, as an
    /// instance's are.
    killed: bool,
}

impl Run {
    /// The process's pre-start hooks, before every run (as before every
    /// start of a longrun). A stop request cancels them: no run then.
    fn pre_start(&mut self) -> Result<(), RunEnd> {
        match hooks::run_pre_start(&self.def, &self.shared, &self.id, &self.cmd_rx, run_ask) {
            hooks::PreStart::Done => Ok(()),
            hooks::PreStart::Failed(why) | hooks::PreStart::Short(why) => {
                Err(not_run(false, Some(why)))
            }
            hooks::PreStart::Stopped => Err(not_run(true, None)),
        }
    }

    /// The run's command, through the reaper: its pid and when its output
    /// is all written. Killed short of exec at `deadline` (a hung mount).
    fn spawn(&self, deadline: Option<Instant>) -> Result<(i32, Receiver<()>), RunEnd> {
        let env = [
            (var::SCHEDULED, "true".to_string()),
            (var::RUN_ID, self.run_id.to_string()),
            (var::TRIGGER, self.trigger.as_str().to_string()),
        ];
        spawn::start(
            &self.def,
            &self.id,
            &env,
            deadline,
            &self.shared.reaper,
            &self.exit_tx,
            &self.shared.output,
        )
        .map_err(|e| {
            // The command is never empty (refused at load); quoted as an
            // instance's is.
            let program = self.def.command.first().map_or("", String::as_str);
            RunEnd {
                // Stuck short of exec until its schedule_timeout (the only
                // exec deadline a run has): a timeout, as a run that
                // started and overran is, not a failed start.
                timed_out: crate::child::is_exec_deadline(&e),
                ..not_run(false, Some(format!("unable to start {program:?}: {e}")))
            }
        })
    }

    fn report(&self, event: RunEvent) {
        // The supervisor outlives every run thread.
        let _ = self.reports.send(RunReport {
            job: self.id.process.clone(),
            run_id: self.run_id,
            event,
        });
    }

    fn run(mut self) {
        // schedule_timeout runs from the spawn, so it bounds a spawn stuck
        // short of exec too (which then fails: a run that timed out).
        let mut deadline = None;
        let spawned = self.pre_start().and_then(|()| {
            deadline = self.timeout.map(|t| Instant::now() + t);
            self.spawn(deadline)
        });
        let (pid, flushed) = match spawned {
            Ok(p) => p,
            Err(end) => {
                // A failed pre_start hook too, as an instance's failed
                // start is: else only the API would know.
                if let Some(why) = &end.error {
                    log::error!(
                        "{}: run {} {}: {why}",
                        self.id.instance,
                        self.run_id,
                        if end.timed_out {
                            "timed out before it started"
                        } else {
                            "not started"
                        }
                    );
                }
                self.report(RunEvent::Done(end));
                return;
            }
        };
        let started = Instant::now();
        log::info!(
            "{}: run {} started (pid {pid}, trigger {})",
            self.id.instance,
            self.run_id,
            self.trigger.as_str()
        );
        self.report(RunEvent::Started { pid });
        // Beside the run; finished before the run counts as ended.
        let post_start = hooks::PostStart::start(&self.def, &self.shared, &self.id);
        let mut end = RunEnd {
            status: None,
            timed_out: false,
            stopped: false,
            error: None,
        };
        let timer = match deadline {
            Some(d) => crossbeam_channel::at(d),
            None => crossbeam_channel::never(),
        };
        loop {
            select! {
                recv(self.exit_rx) -> m => {
                    if let Ok(exit) = m {
                        if exit.pid == pid {
                            end.status = Some(exit.status);
                            break;
                        }
                    }
                }
                recv(self.cmd_rx) -> m => {
                    end.stopped = true;
                    self.killed = matches!(m, Ok(RunCmd::Kill) | Err(_));
                    break;
                }
                recv(timer) -> _ => {
                    end.timed_out = true;
                    log::warn!(
                        "{}: run {} exceeded its schedule_timeout ({}); stopping it",
                        self.id.instance,
                        self.run_id,
                        format_duration(self.timeout.unwrap_or_default())
                    );
                    break;
                }
            }
        }
        if end.status.is_none() || group::alive(pid) {
            self.stop_group(pid, &mut end.status);
        }
        // Let the output thread write the run's last lines first, as an
        // instance does: they read before the run's end, and a failure
        // ping carries them. Bounded: a grandchild may hold the pipe.
        let _ = flushed.recv_timeout(OUTPUT_WAIT);
        let took = started.elapsed();
        // After `took`: the run's duration is the command's, not its hooks'.
        if let Some(p) = post_start {
            // The kill was read already: `finish` would not see it again.
            if self.killed {
                p.cancel(hooks::Ask::Kill);
            }
            p.finish(&self.cmd_rx, run_ask);
        }
        let what = match (&end.status, end.timed_out, end.stopped) {
            (_, true, _) => "timed out".to_string(),
            (_, false, true) => "stopped".to_string(),
            (Some(s), false, false) => s.to_string(),
            (None, false, false) => "ended".to_string(),
        };
        log::info!(
            "{}: run {} {what} after {}",
            self.id.instance,
            self.run_id,
            crate::config::format_elapsed(took)
        );
        // A run is an instance of its own (`job#7`): what it left behind
        // is named once, here.
        let _ = stragglers::warn_left_behind(&self.shared.reaper, &self.id.instance, &[]);
        self.report(RunEvent::Done(end));
    }

    /// Stop what is left of group `pgid` (`group::Stop`); `status` gets the
    /// leader's exit if it arrives meanwhile. Bounded by `shutdown.timeout`
    /// + `KILL_GRACE` (twice that with a `kill_signal` other than SIGKILL).
    fn stop_group(&mut self, pgid: i32, status: &mut Option<ExitStatus>) {
        let owner = &self.id.instance;
        let mut stop = group::Stop::begin(
            owner,
            pgid,
            &self.def.shutdown,
            *status,
            self.killed,
            Instant::now(),
        );
        let never = crossbeam_channel::never();
        while stop.advance(owner, Instant::now()).is_none() {
            // Once killed, nothing more can be asked of this run.
            let cmds = if stop.killed() { &never } else { &self.cmd_rx };
            select! {
                recv(self.exit_rx) -> m => {
                    if let Ok(exit) = m {
                        if exit.pid == pgid {
                            *status = Some(exit.status);
                            stop.leader_exited(exit.status, Instant::now());
                        }
                    }
                }
                recv(cmds) -> m => {
                    if matches!(m, Ok(RunCmd::Kill) | Err(_)) {
                        self.killed = true;
                        stop.kill(owner, Instant::now());
                    }
                }
                recv(crossbeam_channel::at(stop.wake_at())) -> _ => {}
            }
        }
    }
}

/// The end of a run whose command never started.
fn not_run(stopped: bool, error: Option<String>) -> RunEnd {
    RunEnd {
        status: None,
        timed_out: false,
        stopped,
        error,
    }
}

/// What a command means to a run's hooks while they run.
fn run_ask(c: &RunCmd) -> hooks::Ask {
    match c {
        RunCmd::Stop => hooks::Ask::Stop,
        RunCmd::Kill => hooks::Ask::Kill,
    }
}
