//! Configuration reload (SIGHUP, `POST /api/v1/config/reload`, `ctl
//! reload`): read the file sheepdog started with again and apply what
//! changed, process by process, without touching the rest.
//!
//! Invariants:
//! - The file is read and validated on a short-lived thread of its own,
//!   never on the supervisor thread (a file on a stuck mount must not stop
//!   supervision). One read at a time: requests that arrive during a read
//!   are answered by one more read after it, so every request sees the
//!   file as it was when it was sent.
//! - All or nothing at decision time: an unreadable or invalid file, or a
//!   change a reload cannot make, changes nothing and is answered with the
//!   reasons. Otherwise every decision is taken at once, here: per
//!   process by one pure function of its state and its two definitions
//!   (`decide`), carried out in one place (`apply_decision`). What applies
//!   in place (a scale, a heartbeat, a retry) is done then; a stop, a
//!   removal or a new definition is recorded on the process (`Proc::next`)
//!   and the state machine carries it out.
//! - A process to remove or replace is stopped like a stop request (pre_stop
//!   hooks, signal, timeout, group kill), and only after every process that
//!   depends on it and is also being removed or replaced has stopped. Its
//!   new definition starts through the usual dependency gate, and nothing
//!   waits on a dependency that is about to be replaced (`dep_state`).
//!   Processes whose definition did not change are not touched, even when
//!   a dependency of theirs restarts (as `docker compose up` does).
//! - Global settings that the running threads hold (API and metrics
//!   listeners, the log buffer, history sizes, the readiness file) are not
//!   applied: the answer lists them as needing a restart. Nothing is
//!   half-applied. Heartbeats apply without restarting their process: the
//!   heartbeat workers are replaced (`Beats::reload`).
//! - Shutdown wins: no reload starts once it has begun, and a pending
//!   `next` is never carried out during it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::config::{Config, Global, InitialState, Process, ProcessType};
use crate::plan::Plan;
use crate::status::{ControlReply, ReloadCounts, ReloadSummary, ScaleBy};

use super::jobs::Job;
use super::{Phase, ProcPhase, Supervisor};

/// What a reload does to a process once it is down (`Proc::next`).
#[derive(Debug, Clone)]
pub(super) enum Next {
    /// Gone from the configuration (or disabled): forget it. `resume`:
    /// whether it was to run when its removal began, so that a reload
    /// putting it back meanwhile starts it again as it stood, whatever
    /// its stop has reached by then.
    Remove { resume: bool },
    /// Take this definition; then start it when `start` (it was running,
    /// or it had finished), else leave it down (it was stopped on request).
    Replace { def: Arc<Process>, start: bool },
}

/// A loaded and planned configuration, or the text saying why not.
pub(super) type Loaded = Result<(Config, Plan), String>;

/// Reload bookkeeping on the supervisor.
pub(super) struct Reloads {
    pub(super) done_tx: Sender<Loaded>,
    pub(super) done: crossbeam_channel::Receiver<Loaded>,
    /// Some while a load runs: who waits for its answer (None: SIGHUP).
    waiting: Option<Vec<Option<Sender<ControlReply>>>>,
    /// Asked for during that load: the next load's waiters.
    queued: Vec<Option<Sender<ControlReply>>>,
    pub(super) counts: ReloadCounts,
}

impl Reloads {
    pub(super) fn new() -> Reloads {
        let (done_tx, done) = crossbeam_channel::unbounded();
        Reloads {
            done_tx,
            done,
            waiting: None,
            queued: Vec::new(),
            counts: ReloadCounts::default(),
        }
    }
}

impl Reloads {
    /// `reply` waits for the read after the one running now.
    fn queue(&mut self, reply: Option<Sender<ControlReply>>) {
        // A SIGHUP adds nothing to a read already queued.
        if reply.is_some() || self.queued.is_empty() {
            // While a read hangs (a dead NFS mount), only the newest can
            // still have a caller: each waits on one of the API's few
            // workers, and gives up at its wait.
            if self.queued.len() == MAX_QUEUED {
                self.queued.remove(0);
            }
            self.queued.push(reply);
        }
    }
}

/// Reload callers kept while a read runs: more than the API has workers.
pub(crate) const MAX_QUEUED: usize = 16;

/// The loader thread's stack: the configuration decoder recurses once per
/// nesting level (bounded by the YAML parser's depth limit).
pub(crate) const LOADER_STACK: usize = 1024 * 1024;

/// Read, validate and plan `path`, as `run` does at start (`before`: the
/// processes running now, whose unchanged log files are not checked).
fn load(path: &Path, before: &[Process]) -> Loaded {
    // Not a FIFO or a terminal: reading one could block forever, and what
    // it gave at start is gone anyway.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a regular file; a reload reads the file sheepdog started with again",
                path.display()
            ))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let cfg = crate::config::load(path).map_err(|e| e.to_string())?;
    let plan = Plan::build(&cfg).map_err(|e| e.to_string())?;
    // Not the global log and readiness files: opened at start, and a
    // change to them waits for a restart anyway (`needs_restart`).
    crate::output::check_process_files(&cfg, before)?;
    Ok((cfg, plan))
}

impl Supervisor {
    /// A reload was asked for (`reply`: an API caller; None: SIGHUP).
    pub(super) fn request_reload(&mut self, reply: Option<Sender<ControlReply>>) {
        if self.reloads.waiting.is_some() {
            self.reloads.queue(reply);
        } else {
            self.start_load(vec![reply]);
        }
    }

    /// Read the file on a thread of its own; `waiting` get the answer.
    fn start_load(&mut self, waiting: Vec<Option<Sender<ControlReply>>>) {
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            self.refuse_in_shutdown(waiting);
            return;
        }
        let Some(path) = self.cfg.source.clone() else {
            let why = "sheepdog was started without a configuration file; nothing to reload";
            self.reload_failed(waiting, why.into());
            return;
        };
        log::info!(event = "reload", path = path.display().to_string().as_str();
            "reloading the configuration from {}", path.display());
        let tx = self.reloads.done_tx.clone();
        let before: Vec<Process> = self.cfg.processes.values().cloned().collect();
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .stack_size(LOADER_STACK)
            .spawn(move || {
                // The supervisor keeps the receiver for as long as it runs.
                let _ = tx.send(load(&path, &before));
            });
        match thread {
            // Detached: it ends after its one send.
            Ok(_) => self.reloads.waiting = Some(waiting),
            Err(e) => {
                let why = format!("unable to start the thread that reads the configuration: {e}");
                self.reload_failed(waiting, why);
            }
        }
    }

    fn refuse_in_shutdown(&mut self, waiting: Vec<Option<Sender<ControlReply>>>) {
        for reply in waiting.into_iter().flatten() {
            let why = "sheepdog is shutting down".to_string();
            self.answer(reply, ControlReply::Conflict(why));
        }
    }

    fn reload_answer(&mut self, reply: Option<Sender<ControlReply>>, answer: ControlReply) {
        if let Some(tx) = reply {
            self.answer(tx, answer);
        }
    }

    fn reload_failed(&mut self, waiting: Vec<Option<Sender<ControlReply>>>, why: String) {
        for line in why.lines().map(str::trim).filter(|l| !l.is_empty()) {
            log::error!(event = "reload_failed"; "reload: {line}");
        }
        log::error!("reload: nothing changed; still running the configuration loaded before");
        self.reloads.counts.failed += 1;
        self.reloads.counts.last_ok = Some(false);
        for reply in waiting {
            self.reload_answer(reply, ControlReply::Invalid(why.trim_end().to_string()));
        }
    }

    /// The loader thread's result; then the read asked for meanwhile.
    pub(super) fn on_reload_loaded(&mut self, loaded: Loaded) {
        let waiting = self.reloads.waiting.take().unwrap_or_default();
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            self.refuse_in_shutdown(waiting);
        } else {
            match loaded.and_then(|(cfg, plan)| self.apply_reload(cfg, plan)) {
                Ok(summary) => self.reloaded(summary, waiting),
                Err(why) => self.reload_failed(waiting, why),
            }
        }
        let queued = std::mem::take(&mut self.reloads.queued);
        if !queued.is_empty() {
            self.start_load(queued);
        }
    }

    fn reloaded(&mut self, summary: ReloadSummary, waiting: Vec<Option<Sender<ControlReply>>>) {
        log::info!(event = "reloaded"; "{summary}");
        for key in &summary.needs_restart {
            log::warn!("reload: {key} changed; it applies only when sheepdog restarts");
        }
        for why in &summary.not_applied {
            log::warn!("reload: not applied: {why}");
        }
        self.reloads.counts.succeeded += 1;
        self.reloads.counts.last_ok = Some(true);
        for reply in waiting {
            let answer = ControlReply::Reloaded(Box::new(summary.clone()));
            self.reload_answer(reply, answer);
        }
        // Logged after the summary: what is done about it.
        self.reload_step();
        self.log_held_by_runs();
        self.try_start_ready();
        self.check_settled();
    }

    /// Decide what becomes of every process and job and record it
    /// (`reload_step` carries it out). Err (nothing changed) for a change a
    /// reload cannot make.
    fn apply_reload(&mut self, new: Config, plan: Plan) -> Result<ReloadSummary, String> {
        let wanted = Wanted {
            cfg: &new,
            jobs: false,
        };
        let wanted_jobs = Wanted {
            cfg: &new,
            jobs: true,
        };
        let switched: Vec<String> = wanted
            .iter()
            .filter(|p| self.jobs.contains_key(&p.name))
            .chain(
                wanted_jobs
                    .iter()
                    .filter(|p| self.procs.contains_key(&p.name)),
            )
            .map(|p| format!("processes.{}.schedule", p.name))
            .collect();
        if !switched.is_empty() {
            return Err(format!(
                "{}: a process cannot become a scheduled job or stop being one by a reload; restart sheepdog to apply it",
                switched.join(", ")
            ));
        }
        let mut summary = ReloadSummary {
            source: new
                .source
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string()),
            needs_restart: needs_restart(&self.cfg, &new),
            ..ReloadSummary::default()
        };
        // First: a scale below goes by the new max_process_scale.
        self.cfg.global = applied_global(self.cfg.global.clone(), &new.global);
        let kept = self.reload_processes(wanted, &mut summary);
        let fresh_jobs = self.reload_jobs(wanted_jobs, &mut summary);
        // Processes, then jobs: sorted together, as (name, "") pairs: the
        // type `config::env` sorts, one sort in the binary for both (each
        // is 3-4 KiB of code).
        for list in [
            &mut summary.added,
            &mut summary.removed,
            &mut summary.changed,
            &mut summary.unchanged,
        ] {
            let mut pairs: Vec<(String, String)> = std::mem::take(list)
                .into_iter()
                .map(|n| (n, String::new()))
                .collect();
            pairs.sort_unstable();
            *list = pairs.into_iter().map(|(n, _)| n).collect();
        }

        let mut new = new;
        // (Swapped, not cloned: `self.cfg` is replaced below.)
        std::mem::swap(&mut new.global, &mut self.cfg.global);
        // Run once, at start-up (a post_start may not have yet): kept, and
        // listed again by the next reload (`needs_restart`).
        std::mem::swap(&mut new.hooks.pre_start, &mut self.cfg.hooks.pre_start);
        std::mem::swap(&mut new.hooks.post_start, &mut self.cfg.hooks.post_start);
        // So does the configuration in force: the heartbeat workers take
        // their settings from it, and the next reload compares with it.
        for name in kept {
            if let (Some(p), Some(def)) = (self.procs.get(&name), new.processes.get_mut(&name)) {
                def.clone_from(&p.def);
            }
        }
        self.cfg = new;
        self.plan = plan;
        self.prune_hook_stats();
        // Kept until now, for a look at why it went; one still stopping
        // is still in `procs`.
        let (procs, jobs) = (&self.procs, &self.jobs);
        self.shared.output.store().retain(|p| {
            p == crate::logging::SELF
                || p.starts_with("hook:")
                || procs.contains_key(p)
                || jobs.contains_key(p)
        });
        self.beats.reload(&self.cfg, self.shared.output.store());
        crate::logging::configure(self.cfg.global.log_format, self.cfg.global.log_level);
        for w in &self.cfg.warnings {
            log::warn!("config: {w}");
        }
        self.set_name_width();
        if let Some(fresh) = fresh_jobs {
            let announce: Vec<String> = summary
                .added
                .iter()
                .chain(&summary.changed)
                .cloned()
                .collect();
            self.schedule_jobs(Some(&announce), fresh);
        }
        Ok(summary)
    }

    /// Decide what becomes of each process (`decide`) and carry it out
    /// (`apply_decision`); add the new ones. The processes that keep their
    /// old definition (a refused scale).
    fn reload_processes(&mut self, wanted: Wanted, s: &mut ReloadSummary) -> Vec<String> {
        let mut kept = Vec::new();
        let max = self.cfg.global.extra.max_process_scale;
        let names: Vec<String> = self.procs.keys().cloned().collect();
        // Scales last: their port check leaves out the processes this
        // reload removes (`scale_ports`), which must be marked first. Each
        // decision rests on its own process alone, so all are made first.
        let mut scales = Vec::new();
        for name in names {
            let Some(p) = self.procs.get(&name) else {
                continue;
            };
            let new = wanted.get(&name);
            let decision = decide(&Facts {
                phase: p.phase,
                def: &p.def,
                next: p.next.as_ref(),
                new,
                desired: p.desired,
                max_process_scale: max,
                gave_up: p.gave_up.is_some(),
                start_when_stopped: p.start_when_stopped,
            });
            if matches!(decision, Decision::Scale { .. }) {
                scales.push((name, decision));
            } else {
                kept.extend(self.apply_decision(name, decision, new, s));
            }
        }
        for (name, decision) in scales {
            let new = wanted.get(&name);
            kept.extend(self.apply_decision(name, decision, new, s));
        }
        for def in wanted.iter() {
            let name = def.name.as_str();
            if self.procs.contains_key(name) {
                continue;
            }
            let phase = match def.initial_state {
                InitialState::Running => ProcPhase::Pending,
                InitialState::Stopped => ProcPhase::Held,
            };
            let mut p = super::Proc::new(def.clone(), phase);
            p.by_reload = true;
            self.procs.insert(name.to_string(), p);
            if phase == ProcPhase::Held {
                log::info!("{name}: added; initial_state is stopped, so not starting it");
            }
            if def.kind == ProcessType::Oneshot {
                self.oneshots.mark(name, def.scale, "reload");
            }
            s.added.push(name.to_string());
        }
        kept
    }

    /// Carry out what `decide` gave for `name` (`new`: its definition in the
    /// file) and list it in the summary. `name` back when it keeps its old
    /// definition (a scale refused during a rolling restart).
    fn apply_decision(
        &mut self,
        name: String,
        decision: Decision,
        new: Option<&Process>,
        s: &mut ReloadSummary,
    ) -> Option<String> {
        let p = self.procs.get_mut(&name)?;
        match (decision, new) {
            (Decision::Remove { resume }, _) => {
                p.next = Some(Next::Remove { resume });
                s.removed.push(name);
            }
            (Decision::Unchanged, _) => s.unchanged.push(name),
            (Decision::Retry, _) => {
                retry_given_up(&name, p);
                s.changed.push(name);
            }
            (Decision::Heartbeat, Some(new)) => {
                let new = Arc::new(new.clone());
                match &mut p.next {
                    Some(Next::Replace { def, .. }) => *def = new,
                    _ => p.def = new,
                }
                retry_given_up(&name, p);
                s.updated.push(name);
            }
            (Decision::Scale { to }, Some(new)) => {
                let old = std::mem::replace(&mut p.def, Arc::new(new.clone()));
                if let Some(to) = to {
                    if let ControlReply::Conflict(why) = self.scale(&name, ScaleBy::To(to)) {
                        // Kept as it was, so the next reload tries again.
                        if let Some(p) = self.procs.get_mut(&name) {
                            p.def = old;
                        }
                        s.not_applied.push(format!("{why}; reload again later"));
                        return Some(name);
                    }
                }
                s.scaled.push(name);
            }
            (Decision::Rescale { desired, start }, Some(new)) => {
                p.def = Arc::new(new.clone());
                p.desired = desired;
                retry_given_up(&name, p);
                // Through the dependency gate, as a changed one starts.
                if start {
                    pend(p);
                }
                s.scaled.push(name);
            }
            (Decision::Replace { start, added }, Some(new)) => {
                let def = Arc::new(new.clone());
                p.next = Some(Next::Replace { def, start });
                if added {
                    s.added.push(name);
                } else {
                    s.changed.push(name);
                }
            }
            // (`decide` gives these only to a process the file has.)
            (_, None) => {}
        }
        None
    }

    /// Add, change and remove scheduled jobs. Some when the scheduler must
    /// learn the new set: the jobs to plan anew (added, or a changed
    /// schedule). A removed job with runs going keeps them until they end
    /// (`Job::retired`).
    fn reload_jobs(&mut self, wanted: Wanted, s: &mut ReloadSummary) -> Option<Vec<String>> {
        let mut changed = false;
        let mut fresh = Vec::new();
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            let Some(job) = self.jobs.get_mut(&name) else {
                continue;
            };
            match wanted.get(&name) {
                // Its removal is under way (a run goes on): not twice.
                None if job.retired() => s.unchanged.push(name),
                None => {
                    changed = true;
                    s.removed.push(name.clone());
                    if job.idle() {
                        self.jobs.remove(&name);
                        self.forget_hook_stats(&name);
                    } else {
                        job.retire();
                    }
                }
                // Removed by an earlier reload while a run went on, and back
                // now: on the schedule again (or it would go when that run ends).
                Some(new) if job.retired() => {
                    changed = true;
                    job.redefine(new.clone());
                    fresh.push(name.clone());
                    s.added.push(name);
                }
                Some(new) if job.same(new) => s.unchanged.push(name),
                Some(new) => {
                    changed = true;
                    if job.reschedules(new) {
                        fresh.push(name.clone());
                    }
                    job.redefine(new.clone());
                    s.changed.push(name);
                }
            }
        }
        for def in wanted.iter() {
            let name = def.name.as_str();
            if self.jobs.contains_key(name) {
                continue;
            }
            let Some(sched) = def.extra.schedule.clone() else {
                continue;
            };
            changed = true;
            self.jobs
                .insert(name.to_string(), Job::new(def.clone(), sched));
            fresh.push(name.to_string());
            s.added.push(name.to_string());
        }
        changed.then_some(fresh)
    }

    /// Carry out every recorded `next` that can go now: processes already
    /// down take theirs at once; running ones are stopped once no process
    /// depending on them is still on its way out. Called after each change
    /// that can let another one go.
    pub(super) fn reload_step(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        loop {
            let mut progressed = false;
            let names: Vec<String> = self
                .procs
                .iter()
                .filter(|(_, p)| p.next.is_some())
                .map(|(n, _)| n.clone())
                .collect();
            // (As of this pass: one that stops now still holds until the
            // next pass finds it down.)
            let held: Vec<String> = self
                .held_by_leaving()
                .into_iter()
                .map(String::from)
                .collect();
            for name in names {
                let Some(p) = self.procs.get(&name) else {
                    continue;
                };
                let held = held.contains(&name) || self.jobs.values().any(|j| j.holds(&name));
                match p.phase {
                    // (Once its post_stop hooks have ended: `on_hook_done`.)
                    ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished
                        if self.post_stop_running(&name) => {}
                    ProcPhase::Pending
                    | ProcPhase::Held
                    | ProcPhase::Stopped
                    | ProcPhase::Finished => {
                        self.take_next(&name);
                        progressed = true;
                    }
                    ProcPhase::Active if !held => {
                        self.stop_for_reload(&name);
                        progressed = true;
                    }
                    ProcPhase::Active | ProcPhase::Stopping => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// What the processes on their way out (a reload's `next`, not down
    /// yet) depend on, by their running definitions: none of it stops
    /// before they have. Empty but during a reload; computed once per pass,
    /// not per process (a shutdown of hundreds asks for every one).
    pub(super) fn held_by_leaving(&self) -> Vec<&str> {
        self.procs
            .values()
            .filter(|p| p.next.is_some() && !p.phase.is_down())
            .flat_map(|p| p.def.depends_on.iter().map(|d| d.name.as_str()))
            .collect()
    }

    fn stop_for_reload(&mut self, name: &str) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let why = match p.next {
            Some(Next::Remove { .. }) => "it is no longer in the configuration",
            _ => "its definition changed",
        };
        log::info!("{name}: stopping ({why}; reload)");
        p.start_when_stopped = false;
        if self.stop_active(name) {
            self.take_next(name);
        }
    }

    /// `name`, started by a reload, can never start (its dependencies
    /// `why`): it stays stopped and not ready; the rest runs on. A critical
    /// one ends sheepdog, as its failure would.
    pub(super) fn give_up(&mut self, name: &str, why: String) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        p.phase = ProcPhase::Stopped;
        p.by_reload = false;
        if p.def.critical {
            log::error!(
                event = "critical_failed", instance = name;
                "{name} is critical and cannot start after a reload: {why}; shutting down"
            );
            self.begin_shutdown(super::Reason::CriticalFailed(name.to_string()));
            return;
        }
        log::error!("{name}: not started: {why}; it stays stopped (and not ready) until started");
        p.gave_up = Some(why);
    }

    /// Say which reload stops wait for scheduled runs (a backup keeps its
    /// database until it ends): the status shows such a process running.
    fn log_held_by_runs(&self) {
        for (name, p) in self.procs.iter().filter(|(_, p)| p.next.is_some()) {
            if p.phase != ProcPhase::Active {
                continue;
            }
            let jobs: Vec<&str> = self
                .jobs
                .iter()
                .filter(|(_, j)| j.holds(name))
                .map(|(j, _)| j.as_str())
                .collect();
            if !jobs.is_empty() {
                log::info!(
                    "{name}: its stop waits for the run of {} that depends on it",
                    jobs.join(", ")
                );
            }
        }
    }

    /// `name` is down and its post_stop hooks have ended: take its next
    /// step, and whatever that lets go.
    pub(super) fn carry_out_next(&mut self, name: &str) {
        self.take_next(name);
        self.reload_step();
        self.try_start_ready();
        // A removal may leave nothing to supervise.
        self.check_settled();
    }

    /// `name` is down: forget it, or give it its new definition (and start
    /// it, when it should run).
    pub(super) fn take_next(&mut self, name: &str) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        match p.next.take() {
            None => {}
            Some(Next::Remove { .. }) => {
                self.procs.remove(name);
                self.forget_hook_stats(name);
                log::info!(event = "removed", name = name; "{name}: removed (no longer in the configuration)");
            }
            Some(Next::Replace { def, start }) => {
                let held = p.phase == ProcPhase::Held;
                p.desired = def.scale;
                p.instances.clear();
                p.op = None;
                p.start_when_stopped = false;
                p.pending_since = Some(Instant::now());
                p.by_reload = start;
                p.gave_up = None;
                p.phase = match (start, held) {
                    (true, _) => ProcPhase::Pending,
                    (false, true) => ProcPhase::Held,
                    (false, false) => ProcPhase::Stopped,
                };
                let oneshot = def.kind == ProcessType::Oneshot;
                let scale = def.scale;
                p.def = def;
                if start {
                    log::info!(
                        "{name}: starting with its new definition once its dependencies allow"
                    );
                    if oneshot {
                        self.oneshots.mark(name, scale, "reload");
                    }
                } else {
                    log::info!("{name}: new definition taken; it stays stopped until started");
                }
            }
        }
    }
}

/// A process that gave up after an earlier reload tries again: this one
/// may have fixed what it waited for.
fn retry_given_up(name: &str, p: &mut super::Proc) {
    if p.gave_up.take().is_some() && p.phase == ProcPhase::Stopped {
        log::info!("{name}: trying again to start (reload)");
        pend(p);
    }
}

/// `p` waits for its dependencies to start, as a reload's start.
fn pend(p: &mut super::Proc) {
    p.phase = ProcPhase::Pending;
    p.by_reload = true;
    p.pending_since = Some(Instant::now());
}

/// What a reload's decision for one existing process rests on.
struct Facts<'a> {
    phase: ProcPhase,
    /// Its running definition.
    def: &'a Process,
    /// What an earlier reload still has under way for it.
    next: Option<&'a Next>,
    /// Its definition in the new file; None when the file leaves it out
    /// (or disables it).
    new: Option<&'a Process>,
    /// Its instance count now (`ctl scale` may have moved it off `scale`).
    desired: u32,
    /// The new file's `global.max_process_scale`.
    max_process_scale: u32,
    /// It gave up after an earlier reload (`Proc::gave_up`).
    gave_up: bool,
    /// A start waits for its stop or its post_stop hooks to end.
    start_when_stopped: bool,
}

/// What a reload does to an existing process (`decide`); `apply_decision`
/// carries it out. Each says in which list of the summary it goes.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Decision {
    /// Gone from the file (or disabled): stopped like a stop request, then
    /// forgotten (`Next::Remove`), remembering whether it was to run
    /// (`resume`: as it would come back, `comes_back`, or as the
    /// replacement under way would have started). Removed.
    Remove { resume: bool },
    /// Its definition, or the one it is on its way to, is the file's; or
    /// the file leaves out one whose removal is under way (it is on its way
    /// already, and not listed as removed twice). Unchanged: not touched.
    Unchanged,
    /// Unchanged, but it gave up after an earlier reload: this one may have
    /// fixed what it waited for, so it tries again. Changed, not
    /// "unchanged": it starts.
    Retry,
    /// Only its heartbeat changed: the heartbeat workers take it
    /// (`Beats::reload`); the process runs on, and a replacement under way
    /// takes it too. A given-up one tries again as an unchanged one does.
    /// Updated.
    Heartbeat,
    /// Running or waiting to, with only `scale`/`max_scale` changed, or
    /// above a lowered cap (`max_scale`, `max_process_scale`) whatever
    /// else: the new definition in place, and a scale to `to` (the new
    /// `scale`, or the count brought down to the cap) when the count
    /// changes; existing instances keep running. Scaled; in not_applied
    /// when the scale is refused (a rolling restart): it keeps its old
    /// definition, so the next reload tries again.
    Scale { to: Option<u32> },
    /// As `Scale`, for one stopping or down: it takes the new definition
    /// and count for its next start, now when `start`: as a changed one
    /// does, one that finished starts (on a scale change above 0); one
    /// stopped on request or held does not. A given-up one tries again.
    /// Scaled.
    Rescale { desired: u32, start: bool },
    /// Anything else changed (or a scale, for one already on its way to a
    /// new definition: it comes up once, with the newest): stopped, then
    /// given the new definition, and started when `start`, as it stood
    /// (`Next::Replace`). Changed; `added` when it is put back while its
    /// removal was under way (its stop goes on, then it starts again).
    Replace { start: bool, added: bool },
}

/// What a reload does to one existing process, from `f` alone.
fn decide(f: &Facts) -> Decision {
    let Some(new) = f.new else {
        return match f.next {
            Some(Next::Remove { .. }) => Decision::Unchanged,
            Some(Next::Replace { start, .. }) => Decision::Remove { resume: *start },
            None => Decision::Remove {
                resume: comes_back(f, f.def),
            },
        };
    };
    let held = f.phase == ProcPhase::Held;
    // Nothing to apply: unless it is down for having given up.
    let unchanged = || match f.gave_up && f.phase == ProcPhase::Stopped {
        true => Decision::Retry,
        false => Decision::Unchanged,
    };
    // `replacing`: the start of a replacement under way.
    let (def, replacing) = match f.next {
        // Put back while its removal is under way: it comes back as it
        // stood before the removal, whether its stop is still going on or
        // only its post_stop hooks are.
        Some(Next::Remove { resume }) => {
            return Decision::Replace {
                start: *resume,
                added: true,
            };
        }
        // On its way to `def` already: that is what the file is compared
        // with.
        Some(Next::Replace { def, start }) => (&**def, Some(*start)),
        None => (f.def, None),
    };
    let change = change(def, new, held);
    if let Some(start) = replacing {
        // Nothing applies in place but a heartbeat: the replacement takes
        // the new `scale` too, and comes up once, with the newest.
        return match change {
            Change::None => unchanged(),
            Change::Heartbeat => Decision::Heartbeat,
            Change::Scale | Change::Restart => Decision::Replace {
                start,
                added: false,
            },
        };
    }
    // A lowered max_scale or max_process_scale brings the count down.
    let cap = new
        .max_scale
        .map_or(f.max_process_scale, |m| m.min(f.max_process_scale));
    let over = f.desired > cap;
    match change {
        Change::None if !over => unchanged(),
        Change::Heartbeat if !over => Decision::Heartbeat,
        Change::Restart => Decision::Replace {
            start: comes_back(f, new),
            added: false,
        },
        // Scale, or None and Heartbeat over the cap.
        _ => {
            let rescaled = def.scale != new.scale;
            let want = if rescaled {
                new.scale
            } else {
                f.desired.min(cap)
            };
            match f.phase {
                ProcPhase::Active | ProcPhase::Pending => Decision::Scale {
                    to: (rescaled || over).then_some(want),
                },
                _ => Decision::Rescale {
                    desired: want,
                    start: f.phase == ProcPhase::Finished && change == Change::Scale && want > 0,
                },
            }
        }
    }
}

/// Whether a process that takes a new definition starts with it: it comes
/// back as it stood (docs/reload.md). `f.next` is nothing.
fn comes_back(f: &Facts, new: &Process) -> bool {
    match f.phase {
        ProcPhase::Held => new.initial_state == InitialState::Running,
        // Unless it was to run and gave up, or its start waits for its
        // post_stop hooks.
        ProcPhase::Stopped => f.gave_up || f.start_when_stopped,
        // Unless scaled up while stopping: stopped on request.
        ProcPhase::Stopping => f.start_when_stopped,
        ProcPhase::Pending | ProcPhase::Active | ProcPhase::Finished => true,
    }
}

/// The enabled processes of a configuration that are scheduled jobs
/// (`jobs`), or those that are not.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    cfg: &'a Config,
    jobs: bool,
}

impl<'a> Wanted<'a> {
    fn get(self, name: &str) -> Option<&'a Process> {
        let p = self.cfg.processes.get(name)?;
        (p.enabled && p.extra.schedule.is_some() == self.jobs).then_some(p)
    }

    fn iter(self) -> impl Iterator<Item = &'a Process> {
        self.cfg
            .enabled()
            .filter(move |p| p.extra.schedule.is_some() == self.jobs)
    }
}

/// How a process definition changed.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Nothing.
    None,
    /// Only `heartbeat`: the heartbeat workers apply it.
    Heartbeat,
    /// Only `scale`/`max_scale`: a scale applies it in place.
    Scale,
    /// Anything else: stop, then start with the new definition.
    Restart,
}

/// `held`: its `initial_state` counts (it is read at start-up, and by a
/// reload only for a process held by it).
fn change(old: &Process, new: &Process, held: bool) -> Change {
    let mut same = new.clone();
    // A set: the plan orders the starts, not the list.
    let deps = &old.depends_on;
    if same.depends_on.len() == deps.len() && same.depends_on.iter().all(|d| deps.contains(d)) {
        same.depends_on.clone_from(deps);
    }
    if !held {
        same.initial_state = old.initial_state;
    }
    if same == *old {
        return Change::None;
    }
    same.extra.heartbeat = old.extra.heartbeat.clone();
    if same == *old {
        return Change::Heartbeat;
    }
    same.scale = old.scale;
    same.max_scale = old.max_scale;
    if same == *old {
        Change::Scale
    } else {
        Change::Restart
    }
}

/// The global settings in force after a reload: `new`'s for what applies
/// at once, the old ones for what the running threads hold.
fn applied_global(old: Global, new: &Global) -> Global {
    let mut g = old;
    g.shutdown_timeout = new.shutdown_timeout;
    g.log_format = new.log_format;
    g.log_level = new.log_level;
    g.restart_policy = new.restart_policy;
    g.max_restart_attempts = new.max_restart_attempts;
    g.restart_backoff_initial = new.restart_backoff_initial;
    g.restart_backoff_max = new.restart_backoff_max;
    g.restart_reset_after = new.restart_reset_after;
    g.dependency_timeout = new.dependency_timeout;
    g.extra.max_process_scale = new.extra.max_process_scale;
    g.extra.schedule_history_size = new.extra.schedule_history_size;
    g
}

/// Keys that changed but apply only when sheepdog restarts.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (&old.global, &new.global);
    let (x, y) = (&a.extra, &b.extra);
    let checks = [
        ("api_enabled", a.api.enabled != b.api.enabled),
        ("api_port", a.api.port != b.api.port),
        ("api_listen", a.api.listen != b.api.listen),
        ("api_socket", a.api.socket != b.api.socket),
        ("api_auth", a.api.auth != b.api.auth),
        ("api_auth_file", a.api.auth_file != b.api.auth_file),
        ("api_insecure", a.api.insecure != b.api.insecure),
        (
            "api_max_request_body",
            a.api.max_request_body != b.api.max_request_body,
        ),
        ("api_rate_limit", a.api.rate_limit != b.api.rate_limit),
        ("api_rate_burst", a.api.rate_burst != b.api.rate_burst),
        ("metrics_enabled", a.metrics.enabled != b.metrics.enabled),
        ("metrics_port", a.metrics.port != b.metrics.port),
        ("metrics_path", a.metrics.path != b.metrics.path),
        ("metrics_listen", a.metrics.listen != b.metrics.listen),
        ("readiness_file", x.readiness != y.readiness),
        ("log_file", x.log_file != y.log_file),
        ("log_buffer_lines", x.log_buffer_lines != y.log_buffer_lines),
        (
            "oneshot_history_max_entries",
            x.oneshot_history_max_entries != y.oneshot_history_max_entries,
        ),
        (
            "oneshot_history_max_age",
            x.oneshot_history_max_age != y.oneshot_history_max_age,
        ),
        (
            "process_start_timeout",
            x.process_start_timeout != y.process_start_timeout,
        ),
    ];
    let mut keys: Vec<String> = checks
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| format!("global.{k}"))
        .collect();
    // Run once, at start-up.
    if old.hooks.pre_start != new.hooks.pre_start {
        keys.push("hooks.pre_start".into());
    }
    if old.hooks.post_start != new.hooks.post_start {
        keys.push("hooks.post_start".into());
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::testutil::{config, process};

    #[test]
    fn callers_queued_behind_a_hung_read_are_kept_newest_first_and_bounded() {
        let mut r = Reloads::new();
        r.queue(None);
        r.queue(None);
        assert_eq!(r.queued.len(), 1, "a second SIGHUP adds nothing");
        let callers: Vec<_> = (0..MAX_QUEUED + 4)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                r.queue(Some(tx));
                rx
            })
            .collect();
        assert_eq!(r.queued.len(), MAX_QUEUED);
        // The SIGHUP and the 4 oldest callers were let go; the rest wait.
        let gone = |rx: &crossbeam_channel::Receiver<ControlReply>| {
            rx.try_recv() == Err(crossbeam_channel::TryRecvError::Disconnected)
        };
        assert!(callers[..4].iter().all(gone));
        assert!(!callers[4..].iter().any(gone));
        assert!(r.queued.iter().all(Option::is_some));
    }

    #[test]
    fn a_scale_or_max_scale_change_is_applied_in_place_anything_else_restarts() {
        let old = process("web");
        assert_eq!(change(&old, &old.clone(), false), Change::None);
        let mut new = old.clone();
        new.scale = 3;
        new.max_scale = Some(5);
        assert_eq!(change(&old, &new, false), Change::Scale);
        new.env.insert("A".into(), "1".into());
        assert_eq!(change(&old, &new, false), Change::Restart);
        let mut cmd = old.clone();
        cmd.command.push("x".into());
        assert_eq!(change(&old, &cmd, false), Change::Restart);
    }

    #[test]
    fn depends_on_is_a_set_and_initial_state_counts_only_for_a_held_process() {
        let dep = |name: &str| crate::config::Dependency {
            name: name.into(),
            condition: None,
        };
        let mut old = process("web");
        old.depends_on = vec![dep("a"), dep("b")];
        let mut new = old.clone();
        new.depends_on.reverse();
        assert_eq!(change(&old, &new, false), Change::None);
        new.depends_on[0] = dep("c");
        assert_eq!(change(&old, &new, false), Change::Restart);
        let mut held = old.clone();
        held.initial_state = InitialState::Stopped;
        assert_eq!(change(&old, &held, false), Change::None);
        assert_eq!(change(&old, &held, true), Change::Restart);
    }

    /// `phase`, running `def`, `new` in the file; nothing else of note.
    fn facts<'a>(phase: ProcPhase, def: &'a Process, new: Option<&'a Process>) -> Facts<'a> {
        Facts {
            phase,
            def,
            next: None,
            new,
            desired: def.scale,
            max_process_scale: 100,
            gave_up: false,
            start_when_stopped: false,
        }
    }

    /// The table of docs/reload.md ("What a valid file changes", "A changed
    /// process comes back the way it stood", "reloads close together"), one
    /// row per case.
    #[test]
    fn each_process_gets_what_the_reload_documentation_says() {
        use Decision::*;
        use ProcPhase::*;
        let web = process("web");
        let with = |f: &dyn Fn(&mut Process)| {
            let mut p = web.clone();
            f(&mut p);
            p
        };
        let scaled = with(&|p| p.scale = 3);
        let capped = with(&|p| p.max_scale = Some(2));
        let roomy = with(&|p| p.max_scale = Some(4));
        let edited = with(&|p| {
            p.env.insert("A".into(), "1".into());
        });
        let edited_scaled = with(&|p| {
            p.env.insert("A".into(), "1".into());
            p.scale = 3;
        });
        let beating = with(&|p| p.extra.heartbeat = Some(beat()));
        let edited_beating = with(&|p| {
            p.env.insert("A".into(), "1".into());
            p.extra.heartbeat = Some(beat());
        });
        let held = with(&|p| p.initial_state = InitialState::Stopped);
        let held_scaled = with(&|p| {
            p.initial_state = InitialState::Stopped;
            p.scale = 3;
        });
        let held_edited = with(&|p| {
            p.initial_state = InitialState::Stopped;
            p.env.insert("A".into(), "1".into());
        });
        // Changed: a new definition, and a start when `start`.
        let changed = |start| Replace {
            start,
            added: false,
        };
        let removing = Next::Remove { resume: true };
        let removing_down = Next::Remove { resume: false };
        let replacing = Next::Replace {
            def: Arc::new(edited.clone()),
            start: true,
        };
        let replacing_down = Next::Replace {
            def: Arc::new(edited.clone()),
            start: false,
        };
        let cases = [
            // Removed.
            (
                "gone from the file",
                facts(Active, &web, None),
                Remove { resume: true },
            ),
            (
                "gone from the file while stopping on request",
                facts(Stopping, &web, None),
                Remove { resume: false },
            ),
            (
                "gone from the file while stopped on request",
                facts(Stopped, &web, None),
                Remove { resume: false },
            ),
            (
                "left out again while its removal is under way: not twice",
                Facts {
                    next: Some(&removing),
                    ..facts(Stopping, &web, None)
                },
                Unchanged,
            ),
            (
                "left out while a replacement is under way",
                Facts {
                    next: Some(&replacing),
                    ..facts(Stopping, &web, None)
                },
                Remove { resume: true },
            ),
            (
                "left out while a replacement that stays down is under way",
                Facts {
                    next: Some(&replacing_down),
                    ..facts(Stopping, &web, None)
                },
                Remove { resume: false },
            ),
            // Put back while its removal is under way: added, starts again.
            (
                "put back while it stops for its removal",
                Facts {
                    next: Some(&removing),
                    ..facts(Stopping, &web, Some(&web))
                },
                Replace {
                    start: true,
                    added: true,
                },
            ),
            (
                "put back once its removal's stop is done, while its post_stop hooks run",
                Facts {
                    next: Some(&removing),
                    ..facts(Stopped, &web, Some(&web))
                },
                Replace {
                    start: true,
                    added: true,
                },
            ),
            (
                "put back while a removal stops one stopped on request",
                Facts {
                    next: Some(&removing_down),
                    ..facts(Stopping, &web, Some(&web))
                },
                Replace {
                    start: false,
                    added: true,
                },
            ),
            (
                "put back changed while it stops for its removal",
                Facts {
                    next: Some(&removing),
                    ..facts(Stopping, &web, Some(&edited))
                },
                Replace {
                    start: true,
                    added: true,
                },
            ),
            (
                "put back while a held one's removal waits for its hooks",
                Facts {
                    next: Some(&removing_down),
                    ..facts(Held, &held, Some(&held))
                },
                Replace {
                    start: false,
                    added: true,
                },
            ),
            // Unchanged.
            (
                "nothing changed",
                facts(Active, &web, Some(&web)),
                Unchanged,
            ),
            (
                "stopped on request, nothing changed",
                facts(Stopped, &web, Some(&web)),
                Unchanged,
            ),
            (
                "initial_state of a process not held by it",
                facts(Active, &web, Some(&held)),
                Unchanged,
            ),
            (
                "on its way to the file's definition already",
                Facts {
                    next: Some(&replacing),
                    ..facts(Stopping, &web, Some(&edited))
                },
                Unchanged,
            ),
            (
                "gave up after a reload, nothing changed: tries again",
                Facts {
                    gave_up: true,
                    ..facts(Stopped, &web, Some(&web))
                },
                Retry,
            ),
            // Updated.
            (
                "only its heartbeat",
                facts(Active, &web, Some(&beating)),
                Heartbeat,
            ),
            (
                "only its heartbeat, stopped on request",
                facts(Stopped, &web, Some(&beating)),
                Heartbeat,
            ),
            (
                "the heartbeat of the definition it is on its way to",
                Facts {
                    next: Some(&replacing),
                    ..facts(Stopping, &web, Some(&edited_beating))
                },
                Heartbeat,
            ),
            // Scaled, running.
            (
                "scale, running",
                facts(Active, &web, Some(&scaled)),
                Scale { to: Some(3) },
            ),
            (
                "scale, waiting for its dependencies",
                facts(Pending, &web, Some(&scaled)),
                Scale { to: Some(3) },
            ),
            (
                "scale, over a count ctl scale set: the file's",
                Facts {
                    desired: 5,
                    ..facts(Active, &web, Some(&scaled))
                },
                Scale { to: Some(3) },
            ),
            (
                "max_scale only, the count within it",
                facts(Active, &web, Some(&capped)),
                Scale { to: None },
            ),
            (
                "max_scale lowered below a count ctl scale set",
                Facts {
                    desired: 5,
                    ..facts(Active, &web, Some(&capped))
                },
                Scale { to: Some(2) },
            ),
            (
                "max_process_scale lowered below its max_scale and its count",
                Facts {
                    desired: 3,
                    max_process_scale: 2,
                    ..facts(Active, &web, Some(&roomy))
                },
                Scale { to: Some(2) },
            ),
            (
                "max_process_scale lowered below its count, nothing else",
                Facts {
                    desired: 5,
                    max_process_scale: 2,
                    ..facts(Active, &web, Some(&web))
                },
                Scale { to: Some(2) },
            ),
            (
                "max_process_scale lowered below its count, and its heartbeat",
                Facts {
                    desired: 5,
                    max_process_scale: 2,
                    ..facts(Active, &web, Some(&beating))
                },
                Scale { to: Some(2) },
            ),
            (
                "over the cap and changed otherwise: the new scale on its start",
                Facts {
                    desired: 5,
                    max_process_scale: 2,
                    ..facts(Active, &web, Some(&edited))
                },
                changed(true),
            ),
            // Scaled, down: the count for its next start.
            (
                "finished, scaled: starts again",
                facts(Finished, &web, Some(&scaled)),
                Rescale {
                    desired: 3,
                    start: true,
                },
            ),
            (
                "finished, over a lowered max_process_scale only: stays down",
                Facts {
                    desired: 5,
                    max_process_scale: 2,
                    ..facts(Finished, &web, Some(&web))
                },
                Rescale {
                    desired: 2,
                    start: false,
                },
            ),
            (
                "stopped on request, scaled: stays down",
                facts(Stopped, &web, Some(&scaled)),
                Rescale {
                    desired: 3,
                    start: false,
                },
            ),
            (
                "gave up, scaled: tries again (apply_decision)",
                Facts {
                    gave_up: true,
                    ..facts(Stopped, &web, Some(&scaled))
                },
                Rescale {
                    desired: 3,
                    start: false,
                },
            ),
            (
                "held, scaled: stays held",
                facts(Held, &held, Some(&held_scaled)),
                Rescale {
                    desired: 3,
                    start: false,
                },
            ),
            (
                "stopping, scaled",
                facts(Stopping, &web, Some(&scaled)),
                Rescale {
                    desired: 3,
                    start: false,
                },
            ),
            // Changed: comes back as it stood.
            (
                "changed, running",
                facts(Active, &web, Some(&edited)),
                changed(true),
            ),
            (
                "changed, waiting for its dependencies",
                facts(Pending, &web, Some(&edited)),
                changed(true),
            ),
            (
                "changed, finished",
                facts(Finished, &web, Some(&edited)),
                changed(true),
            ),
            (
                "changed, stopped on request",
                facts(Stopped, &web, Some(&edited)),
                changed(false),
            ),
            (
                "changed, gave up after a reload",
                Facts {
                    gave_up: true,
                    ..facts(Stopped, &web, Some(&edited))
                },
                changed(true),
            ),
            (
                "changed, stopped, its start waiting for its post_stop hooks",
                Facts {
                    start_when_stopped: true,
                    ..facts(Stopped, &web, Some(&edited))
                },
                changed(true),
            ),
            (
                "changed, stopping on request",
                facts(Stopping, &web, Some(&edited)),
                changed(false),
            ),
            (
                "changed, stopping, scaled up meanwhile",
                Facts {
                    start_when_stopped: true,
                    ..facts(Stopping, &web, Some(&edited))
                },
                changed(true),
            ),
            (
                "held, its initial_state now running",
                facts(Held, &held, Some(&web)),
                changed(true),
            ),
            (
                "held, changed, still initial_state stopped",
                facts(Held, &held, Some(&held_edited)),
                changed(false),
            ),
            // On its way to a new definition: comes up once, the newest.
            (
                "scaled while a replacement is under way",
                Facts {
                    next: Some(&replacing),
                    ..facts(Stopping, &web, Some(&edited_scaled))
                },
                changed(true),
            ),
            (
                "changed again while a replacement to stay down is under way",
                Facts {
                    next: Some(&replacing_down),
                    ..facts(Stopping, &web, Some(&web))
                },
                changed(false),
            ),
        ];
        for (why, f, want) in &cases {
            assert_eq!(decide(f), *want, "{why}");
        }
    }

    #[test]
    fn settings_held_by_running_threads_are_listed_the_rest_apply() {
        let old = config(vec![process("web")]);
        let mut new = old.clone();
        new.global.api.port = 9999;
        new.global.metrics.path = "/m".into();
        new.global.extra.log_buffer_lines = 5;
        new.global.shutdown_timeout = Duration::from_secs(5);
        new.global.extra.max_process_scale = 7;
        new.hooks.pre_start = old.hooks.pre_stop.clone();
        assert_eq!(
            needs_restart(&old, &new),
            [
                "global.api_port",
                "global.metrics_path",
                "global.log_buffer_lines"
            ]
        );
        let g = applied_global(old.global.clone(), &new.global);
        assert_eq!(g.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(g.extra.max_process_scale, 7);
        assert_eq!(g.api.port, old.global.api.port);
        assert_eq!(g.metrics.path, old.global.metrics.path);
        assert_eq!(g.extra.log_buffer_lines, old.global.extra.log_buffer_lines);
    }

    fn beat() -> crate::config::extra::Heartbeat {
        crate::config::extra::Heartbeat {
            url: Some("http://127.0.0.1:1/ping".into()),
            success_url: None,
            failure_url: None,
            start_url: None,
            ping_start: false,
            method: "POST".into(),
            headers: Default::default(),
            timeout: Duration::from_secs(10),
            retries: 3,
            retry_delay: Duration::from_secs(5),
            interval: None,
        }
    }

    #[test]
    fn a_heartbeat_change_applies_in_place_and_needs_no_restart() {
        let mut web = process("web");
        web.extra.heartbeat = Some(beat());
        let mut quiet = web.clone();
        quiet.extra.heartbeat = None;
        assert_eq!(change(&web, &quiet, false), Change::Heartbeat);
        assert_eq!(change(&quiet, &web, false), Change::Heartbeat);
        assert_eq!(change(&web, &web.clone(), false), Change::None);
        // With anything else, the rest decides.
        let mut scaled = quiet.clone();
        scaled.scale = 3;
        assert_eq!(change(&web, &scaled, false), Change::Scale);
        let old = config(vec![web.clone()]);
        assert!(needs_restart(&old, &config(vec![quiet])).is_empty());
    }

    #[test]
    fn the_summary_line_names_each_list_and_counts_the_unchanged() {
        let s = ReloadSummary {
            source: "/etc/sheepdog.yaml".into(),
            added: vec!["a".into()],
            changed: vec!["b".into(), "c".into()],
            unchanged: vec!["d".into(), "e".into()],
            needs_restart: vec!["global.api_port".into()],
            ..ReloadSummary::default()
        };
        assert_eq!(
            s.to_string(),
            "reloaded /etc/sheepdog.yaml: added a; changed b, c; 2 unchanged; \
             only a restart of sheepdog applies global.api_port"
        );
        let none = ReloadSummary {
            source: "f".into(),
            unchanged: vec!["d".into()],
            ..ReloadSummary::default()
        };
        assert_eq!(none.to_string(), "reloaded f: no process changed");
    }

    #[test]
    fn only_a_regular_file_is_read_again() {
        let err = load(Path::new("/dev/null"), &[]).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");
        let err = load(Path::new("/nonexistent/sheepdog.yaml"), &[]).unwrap_err();
        assert!(err.contains("/nonexistent/sheepdog.yaml"), "{err}");
    }
}
