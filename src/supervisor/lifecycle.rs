//! Where hooks meet the supervisor: global pre-start before any process,
//! post-start once everything is up, the shutdown stages (global pre-stop,
//! ordered stop, global post-stop), and per-process pre-stop/post-stop.
//!
//! Invariants:
//! - Hook lists run on runner threads; the supervisor only starts them,
//!   cancels them and reacts to their `Done` message, so it stays
//!   responsive (signals, API) while a long migration runs.
//! - A global pre-start failure (without `continue_on_error`) ends start-up
//!   with exit 1 before any process has started.
//! - A per-process pre-stop list runs once per process (not per instance)
//!   and strictly before its stop signal; its failure is logged and the stop
//!   goes on.
//! - A process's post_stop hooks end before it starts again (a start, a
//!   scale-up, a reload's replacement): a cleanup never acts on the new
//!   instances.
//! - Shutdown hooks live inside the global shutdown deadline; at the
//!   deadline (or a second SIGTERM) every runner is cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Hook, Process};
use crate::hooks::{self, Execution, Kind, ListError};
use crate::instance::Cmd;
use crate::reaper::Exit;
use crate::status::HookStatus;
use crate::stragglers::Sweep;

use super::{Phase, ProcPhase, Reason, Supervisor};

pub(super) use crate::hooks::HookJob;

/// Where an orderly shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Global pre-stop hooks are running.
    PreStopHooks,
    /// Processes are being stopped in reverse dependency order.
    Stopping,
    /// Descendants that left their process group are being ended
    /// (`stragglers`).
    Stragglers,
    /// Global post-stop hooks are running, then what they left outside
    /// their groups is ended (a second sweep). Also where a start-up that
    /// ended before any process started waits for its pre_start hooks,
    /// then ends what they left (its only sweep).
    PostStopHooks,
    Done,
}

/// Whether `processes` (the configuration's) has an enabled `process`
/// with a hook `name` of `kind`: a hook's counters live only as long as
/// it does.
fn configured(
    processes: &BTreeMap<String, Process>,
    process: &str,
    kind: Kind,
    name: &str,
) -> bool {
    processes
        .get(process)
        .filter(|d| d.enabled)
        .is_some_and(|def| hooks_of(def, kind).any(|hook| hook.name == name))
}

/// A process's hooks of `kind`, in the order they run: for pre_stop the
/// seed's `shutdown.pre_stop_hook`, then `hooks.pre_stop`.
fn hooks_of(def: &Process, kind: Kind) -> impl Iterator<Item = &Hook> {
    let h = &def.extra.hooks;
    let (seed, list) = match kind {
        Kind::PreStart => (None, &h.pre_start),
        Kind::PostStart => (None, &h.post_start),
        Kind::PreStop => (def.shutdown.pre_stop_hook.as_ref(), &h.pre_stop),
        Kind::PostStop => (None, &h.post_stop),
    };
    seed.into_iter().chain(list)
}

impl Supervisor {
    fn spawn_hooks(&mut self, job: HookJob, hooks: Vec<Hook>, kind: Kind, process: Option<String>) {
        let deadline = match self.phase {
            Phase::ShuttingDown {
                forced: true,
                deadline,
                ..
            } => {
                // A forced shutdown (its deadline, a second SIGTERM) ends
                // now: no hook starts, and the flow goes on as if it was
                // cancelled. (Past the deadline, it would have ended them
                // whatever forced it first.)
                let cause = if std::time::Instant::now() >= deadline {
                    "shutdown_timeout reached"
                } else {
                    "forced by a second signal"
                };
                let (who, sep) = process.as_deref().map_or(("", ""), |p| (p, ": "));
                // `counted`'s rule, with the kind between count and noun.
                let n = hooks.len();
                let s = if n == 1 { "" } else { "s" };
                log::warn!("{who}{sep}{n} {} hook{s} skipped: {cause}", kind.as_str());
                let _ = self.hook_done_tx.send((job, Err(ListError::Cancelled)));
                return;
            }
            Phase::ShuttingDown { deadline, .. } => Some(deadline),
            Phase::Running => None,
        };
        let def = process
            .as_ref()
            .and_then(|n| self.procs.get(n))
            .map(|p| Arc::clone(&p.def));
        let spawned = hooks::spawn_list(
            hooks,
            kind,
            def,
            None,
            self.shared.clone(),
            deadline,
            self.hook_exec_tx.clone(),
            self.hook_done_tx.clone(),
            job.clone(),
        );
        match spawned {
            Ok((cancel, _)) => {
                self.running_hooks.insert(job, cancel);
            }
            Err(e) => {
                log::error!("unable to start a hook thread: {e}");
                let _ = self
                    .hook_done_tx
                    .send((job, Err(ListError::Failed(format!("no thread: {e}")))));
            }
        }
    }

    /// At start: run global pre-start hooks first, if any.
    pub(super) fn start_pre_start_hooks(&mut self) {
        let hooks = self.cfg.hooks.pre_start.clone();
        if hooks.is_empty() {
            return;
        }
        log::info!(
            "running {} pre_start hook(s) before any process starts",
            hooks.len()
        );
        self.pre_start_pending = true;
        self.spawn_hooks(HookJob::GlobalPreStart, hooks, Kind::PreStart, None);
    }

    /// Once every process is up (and ready where it has a check): post-start.
    pub(super) fn check_post_start(&mut self) {
        if self.post_start_fired || self.pre_start_pending || !matches!(self.phase, Phase::Running)
        {
            return;
        }
        if self.procs.values().any(|p| p.phase == ProcPhase::Pending)
            || !self.not_ready(&[], true).is_empty()
        {
            return;
        }
        self.post_start_fired = true;
        let hooks = self.cfg.hooks.post_start.clone();
        if !hooks.is_empty() {
            self.spawn_hooks(HookJob::GlobalPostStart, hooks, Kind::PostStart, None);
        }
    }

    /// Shutdown begins: cancel start-time hooks and enter the first stage.
    pub(super) fn begin_stop_stages(&mut self) {
        for job in [HookJob::GlobalPreStart, HookJob::GlobalPostStart] {
            if let Some(cancel) = self.running_hooks.get(&job) {
                // Never blocks: a full channel has its cancels already.
                let _ = cancel.try_send(());
            }
        }
        if self.pre_start_pending {
            // Nothing has started: nothing to stop, no stop hooks; only
            // what the pre_start hooks left outside their groups (`setsid`)
            // is ended, once they have (`end_unstarted`).
            self.stage = Stage::PostStopHooks;
            self.end_unstarted();
            return;
        }
        let hooks = self.cfg.hooks.pre_stop.clone();
        if hooks.is_empty() {
            self.stage = Stage::Stopping;
            self.try_stop_ready();
        } else {
            self.stage = Stage::PreStopHooks;
            self.spawn_hooks(HookJob::GlobalPreStop, hooks, Kind::PreStop, None);
        }
    }

    /// A start-up that ended before any process started, once its
    /// pre_start hooks have ended: the sweep, then done.
    fn end_unstarted(&mut self) {
        if self.stage == Stage::PostStopHooks
            && self.running_hooks.is_empty()
            && !self.start_sweep()
        {
            self.stage = Stage::Done;
        }
    }

    /// Every process is down: end the stragglers, if any are left. Not
    /// while a hook runs (a process's `post_stop`, a cancelled
    /// `post_start`): its child would look like one until registered, and
    /// a global `post_stop` comes after every process's own.
    /// `on_hook_done` calls again.
    pub(super) fn after_all_stopped(&mut self) {
        if self.stage != Stage::Stopping
            || !self.running_hooks.is_empty()
            || matches!(self.phase, Phase::Running)
        {
            return;
        }
        if self.start_sweep() {
            self.stage = Stage::Stragglers;
        } else {
            self.post_stop_hooks();
        }
    }

    /// Look for left-over processes and start ending them; false when
    /// there are none.
    fn start_sweep(&mut self) -> bool {
        let Phase::ShuttingDown {
            forced, deadline, ..
        } = self.phase
        else {
            return false;
        };
        let Some(sweep) = Sweep::start(&self.shared.reaper, forced, deadline) else {
            return false;
        };
        self.sweep_rx = sweep.exits.clone();
        self.sweep = Some(sweep);
        true
    }

    pub(super) fn on_straggler_exit(&mut self, exit: Exit) {
        let Some(sweep) = &mut self.sweep else {
            return;
        };
        if sweep.on_exit(exit, &self.shared.reaper) {
            self.end_sweep();
        }
    }

    pub(super) fn end_sweep(&mut self) {
        self.sweep = None;
        self.sweep_rx = crossbeam_channel::never();
        // The one after the global post_stop hooks is the last step.
        if self.stage == Stage::PostStopHooks {
            self.stage = Stage::Done;
        } else {
            self.post_stop_hooks();
        }
    }

    /// Global post-stop hooks, then done.
    fn post_stop_hooks(&mut self) {
        let hooks = self.cfg.hooks.post_stop.clone();
        if hooks.is_empty() {
            self.stage = Stage::Done;
        } else {
            self.stage = Stage::PostStopHooks;
            self.spawn_hooks(HookJob::GlobalPostStop, hooks, Kind::PostStop, None);
        }
    }

    /// Stop `name`'s live instances, after its pre-stop hooks if it has any.
    /// The caller has set the process phase to Stopping.
    pub(super) fn stop_instances(&mut self, name: &str) {
        let Some(p) = self.procs.get(name) else {
            return;
        };
        let hooks: Vec<Hook> = hooks_of(&p.def, Kind::PreStop).cloned().collect();
        let job = HookJob::ProcPreStop(name.to_string());
        if !hooks.is_empty() && !self.running_hooks.contains_key(&job) {
            log::info!(
                "{name}: running {} pre_stop hook(s) before its stop signal",
                hooks.len()
            );
            // Nothing starts again meanwhile: a child that exits while they
            // run (horizon:terminate makes it) has stopped, not crashed, and
            // a start in progress (pre_start hooks, backoff) is cancelled.
            // (Whether a child runs right now the supervisor cannot tell: its
            // instance may have spawned one it has not reported yet. So the
            // hooks always run.)
            for i in p.instances.values().filter(|i| i.outcome.is_none()) {
                i.send(Cmd::Hold("it is being stopped"));
            }
            self.spawn_hooks(job, hooks, Kind::PreStop, Some(name.to_string()));
            return;
        }
        for i in p.instances.values().filter(|i| i.outcome.is_none()) {
            i.stop(&self.shared.reaper);
        }
    }

    /// Stop an active process (a request or a reload): its rolling restart
    /// ends, and it is Stopped at once when nothing of it runs (true), else
    /// Stopping until its instances report.
    pub(super) fn stop_active(&mut self, name: &str) -> bool {
        let Some(p) = self.procs.get_mut(name) else {
            return true;
        };
        p.op = None;
        if p.all_done() {
            p.phase = ProcPhase::Stopped;
            return true;
        }
        p.phase = ProcPhase::Stopping;
        self.stop_instances(name);
        false
    }

    /// A process has just stopped: its post-stop hooks.
    pub(super) fn process_stopped(&mut self, name: &str) {
        let Some(p) = self.procs.get(name) else {
            return;
        };
        let hooks = p.def.extra.hooks.post_stop.clone();
        if !hooks.is_empty() {
            self.spawn_hooks(
                HookJob::ProcPostStop(name.to_string()),
                hooks,
                Kind::PostStop,
                Some(name.to_string()),
            );
        }
    }

    /// Cancel every running hook list (deadline, forced shutdown); one
    /// already cancelled gets SIGKILL instead of the rest of its grace.
    pub(super) fn cancel_hooks(&mut self) {
        for cancel in self.running_hooks.values() {
            let _ = cancel.try_send(());
        }
    }

    pub(super) fn on_hook_done(&mut self, job: HookJob, result: Result<(), ListError>) {
        self.running_hooks.remove(&job);
        match job {
            HookJob::GlobalPreStart => {
                self.pre_start_pending = false;
                match (result, &self.phase) {
                    (Ok(()), Phase::Running) => {
                        // dependency_timeout counts from now.
                        for p in self.procs.values_mut() {
                            p.pending_since = Some(std::time::Instant::now());
                        }
                        self.try_start_ready();
                        self.check_settled();
                    }
                    (Err(ListError::Failed(why)), Phase::Running) => {
                        self.pre_start_pending = true; // nothing has started
                        self.begin_shutdown(Reason::StartupFailed(why));
                    }
                    (_, _) => self.end_unstarted(),
                }
            }
            HookJob::GlobalPostStart => {}
            HookJob::GlobalPreStop => {
                if self.stage == Stage::PreStopHooks {
                    self.stage = Stage::Stopping;
                    self.try_stop_ready();
                }
            }
            // What they left outside their groups (`setsid`) would outlive
            // sheepdog: one more sweep, when /proc allows one (its
            // warning was given by the first).
            HookJob::GlobalPostStop => {
                if !(crate::stragglers::proc_is_ours() && self.start_sweep()) {
                    self.stage = Stage::Done;
                }
            }
            HookJob::ProcPreStop(name) => self.pre_stop_done(&name),
            // Not the supervisor's (`hooks::spawn_for`).
            HookJob::Own => {}
            HookJob::ProcPostStop(name) => {
                // A reload's next step, or a start, waited for them.
                let running = matches!(self.phase, Phase::Running);
                let down = self.procs.get_mut(&name).filter(|p| p.phase.is_down());
                if let Some(p) = down.filter(|_| running) {
                    if p.next.is_some() {
                        self.carry_out_next(&name);
                    } else if std::mem::take(&mut p.start_when_stopped) {
                        self.launch_all(&name);
                    }
                }
            }
        }
        if self.stage == Stage::Stopping {
            // Perhaps the last hook the end of the shutdown waited for.
            self.try_stop_ready();
        }
    }

    /// `name`'s pre_stop hooks ended: now its stop signal or, when it ended
    /// while they ran, the end of its stop.
    fn pre_stop_done(&mut self, name: &str) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        if p.phase != ProcPhase::Stopping {
            return;
        }
        if !p.all_done() {
            for i in p.instances.values().filter(|i| i.outcome.is_none()) {
                i.stop(&self.shared.reaper);
            }
            return;
        }
        p.phase = match self.phase {
            Phase::Running => ProcPhase::Stopped,
            Phase::ShuttingDown { .. } => ProcPhase::Finished,
        };
        // (In a shutdown, `on_hook_done` goes on with the stop order.)
        if !self.after_stop(name) {
            self.try_start_ready();
        }
    }

    /// `name` left the configuration (a reload): its hooks' counters go
    /// with it, from the status and the metrics.
    pub(super) fn forget_hook_stats(&mut self, name: &str) {
        self.hook_stats
            .retain(|(process, _, _), _| process.as_deref() != Some(name));
    }

    /// After a reload: the counters of the process hooks it took out of
    /// the configuration (renamed, dropped, their process removed) go,
    /// from the status and the metrics.
    pub(super) fn prune_hook_stats(&mut self) {
        let procs = &self.cfg.processes;
        self.hook_stats.retain(|(process, name, kind), _| {
            process
                .as_deref()
                .is_none_or(|p| configured(procs, p, *kind, name))
        });
    }

    /// Whether `name`'s post_stop hooks are running.
    pub(super) fn post_stop_running(&self, name: &str) -> bool {
        self.running_hooks
            .contains_key(&HookJob::ProcPostStop(name.to_string()))
    }

    /// Launch `name` (down) now, or once its post_stop hooks end
    /// (`on_hook_done`): a cleanup must not act on the new instances (remove
    /// the socket or pid file they have just made).
    pub(super) fn launch_after_post_stop(&mut self, name: &str) {
        if !self.post_stop_running(name) {
            self.launch_all(name);
            return;
        }
        if let Some(p) = self.procs.get_mut(name) {
            p.start_when_stopped = true;
        }
        log::info!("{name}: waiting for its post_stop hooks to end before it starts");
    }

    /// Whether `name`'s pre_stop hooks are running: until they end, it has
    /// not stopped, even with every instance gone.
    pub(super) fn pre_stop_running(&self, name: &str) -> bool {
        self.running_hooks
            .contains_key(&HookJob::ProcPreStop(name.to_string()))
    }

    pub(super) fn on_hook_execution(&mut self, e: Execution) {
        // A hook a reload took out (its process's post_stop can end after
        // it left; the old definition's hooks run until it stops): its
        // series went with it and do not come back.
        if let Some(p) = &e.process {
            if !configured(&self.cfg.processes, p, e.kind, &e.name) {
                return;
            }
        }
        let key = (e.process.clone(), e.name.clone(), e.kind);
        let stat = self.hook_stats.get_or_insert_with(key, || HookStatus {
            name: e.name.clone(),
            kind: e.kind.as_str().into(),
            process: e.process.clone(),
            ..HookStatus::default()
        });
        let secs = e.duration.as_secs_f64();
        if e.ok {
            stat.success += 1;
        } else {
            stat.failure += 1;
        }
        stat.duration_seconds_sum += secs;
        crate::status::observe(
            &mut stat.duration_buckets,
            &crate::status::HOOK_BUCKETS,
            secs,
        );
        stat.last_duration_seconds = Some(secs);
        stat.last_ok = Some(e.ok);
        stat.last_at = Some(crate::status::unix_seconds(std::time::SystemTime::now()));
    }
}
