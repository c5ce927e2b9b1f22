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
//!   reasons. Otherwise every decision is taken at once, here, and recorded
//!   on the process (`Proc::next`); the state machine then carries it out.
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
use crate::status::{ControlReply, ReloadCounts, ReloadSummary};

use super::jobs::Job;
use super::{Phase, ProcPhase, Supervisor};

/// What a reload does to a process once it is down (`Proc::next`).
#[derive(Debug, Clone)]
pub(super) enum Next {
    /// Gone from the configuration (or disabled): forget it.
    Remove,
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

/// The loader thread's stack: the configuration decoder recurses once per
/// nesting level (bounded by the YAML parser's depth limit).
pub(crate) const LOADER_STACK: usize = 1024 * 1024;

/// Read, validate and plan `path`, as `run` does at start.
fn load(path: &Path) -> Loaded {
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
    crate::output::check_process_files(&cfg)?;
    Ok((cfg, plan))
}

impl Supervisor {
    /// A reload was asked for (`reply`: an API caller; None: SIGHUP).
    pub(super) fn request_reload(&mut self, reply: Option<Sender<ControlReply>>) {
        if self.reloads.waiting.is_some() {
            // A SIGHUP adds nothing to a read already queued.
            if reply.is_some() || self.reloads.queued.is_empty() {
                self.reloads.queued.push(reply);
            }
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
        let thread = std::thread::Builder::new()
            .name("reload".into())
            .stack_size(LOADER_STACK)
            .spawn(move || {
                // The supervisor keeps the receiver for as long as it runs.
                let _ = tx.send(load(&path));
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
        self.reload_processes(wanted, &mut summary);
        let fresh_jobs = self.reload_jobs(wanted_jobs, &mut summary);
        // Processes, then jobs: sorted together.
        for list in [
            &mut summary.added,
            &mut summary.removed,
            &mut summary.changed,
            &mut summary.unchanged,
        ] {
            list.sort_unstable();
        }

        let mut new = new;
        new.global = self.cfg.global.clone();
        self.cfg = new;
        self.plan = plan;
        self.prune_hook_stats();
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

    /// Record what becomes of each process (`Proc::next`), add the new ones.
    fn reload_processes(&mut self, wanted: Wanted, s: &mut ReloadSummary) {
        let max = self.cfg.global.extra.max_process_scale;
        let names: Vec<String> = self.procs.keys().cloned().collect();
        for name in names {
            let Some(p) = self.procs.get_mut(&name) else {
                continue;
            };
            // What it is becoming: an earlier reload may still be under way.
            let target = match &p.next {
                Some(Next::Remove) => None,
                Some(Next::Replace { def, .. }) => Some(def.clone()),
                None => Some(p.def.clone()),
            };
            let Some(new) = wanted.get(&name) else {
                // (A removal under way is on its way already: unchanged.)
                if target.is_some() {
                    p.next = Some(Next::Remove);
                    s.removed.push(name);
                } else {
                    s.unchanged.push(name);
                }
                continue;
            };
            let held = p.phase == ProcPhase::Held;
            let change = target.as_deref().map(|t| (t, change(t, new, held)));
            // A lowered max_scale or max_process_scale brings the count down.
            let cap = new.max_scale.map_or(max, |m| m.min(max));
            let over = p.next.is_none() && p.desired > cap;
            match change {
                Some((_, Change::None)) if !over => {
                    // A retried give-up starts: not "unchanged".
                    if retry_given_up(&name, p) {
                        s.changed.push(name);
                    } else {
                        s.unchanged.push(name);
                    }
                    continue;
                }
                // The heartbeat workers take it (`Beats::reload`); the
                // process runs on.
                Some((_, Change::Heartbeat)) if !over => {
                    let new = Arc::new(new.clone());
                    match &mut p.next {
                        Some(Next::Replace { def, .. }) => *def = new,
                        _ => p.def = new,
                    }
                    retry_given_up(&name, p);
                    s.updated.push(name);
                    continue;
                }
                // (None and Heartbeat only when over the cap.)
                Some((t, c)) if c != Change::Restart && p.next.is_none() => {
                    let old = std::mem::replace(&mut p.def, Arc::new(new.clone()));
                    let want = if t.scale == new.scale {
                        p.desired.min(cap)
                    } else {
                        new.scale
                    };
                    if !matches!(p.phase, ProcPhase::Active | ProcPhase::Pending) {
                        p.desired = want;
                        retry_given_up(&name, p);
                        // As for a changed process: one that finished
                        // starts; one stopped on request or held does not.
                        if p.phase == ProcPhase::Finished && c == Change::Scale && want > 0 {
                            self.start(&name);
                        }
                    } else if t.scale != new.scale || over {
                        if let ControlReply::Conflict(why) = self.scale(&name, want) {
                            // Kept as it was, so the next reload tries again.
                            if let Some(p) = self.procs.get_mut(&name) {
                                p.def = old;
                            }
                            s.not_applied.push(format!("{why}; reload again later"));
                            continue;
                        }
                    }
                    s.scaled.push(name);
                    continue;
                }
                _ => {}
            }
            let start = match &p.next {
                Some(Next::Replace { start, .. }) => *start,
                _ => match p.phase {
                    ProcPhase::Held => new.initial_state == InitialState::Running,
                    // Unless it was to run and gave up, or its start
                    // waits for its post_stop hooks.
                    ProcPhase::Stopped => p.gave_up.is_some() || p.start_when_stopped,
                    ProcPhase::Stopping => p.start_when_stopped || p.next.is_some(),
                    ProcPhase::Pending | ProcPhase::Active | ProcPhase::Finished => true,
                },
            };
            let def = Arc::new((*new).clone());
            p.next = Some(Next::Replace { def, start });
            // Put back while its removal was under way.
            match target {
                None => s.added.push(name),
                Some(_) => s.changed.push(name),
            }
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
            Some(Next::Remove) => "it is no longer in the configuration",
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
            Some(Next::Remove) => {
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
/// may have fixed what it waited for. True when it does.
fn retry_given_up(name: &str, p: &mut super::Proc) -> bool {
    let retry = p.gave_up.take().is_some() && p.phase == ProcPhase::Stopped;
    if retry {
        log::info!("{name}: trying again to start (reload)");
        p.phase = ProcPhase::Pending;
        p.by_reload = true;
        p.pending_since = Some(Instant::now());
    }
    retry
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

    #[test]
    fn a_heartbeat_change_applies_in_place_and_needs_no_restart() {
        let beat = || crate::config::extra::Heartbeat {
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
        };
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
        let err = load(Path::new("/dev/null")).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");
        let err = load(Path::new("/nonexistent/sheepdog.yaml")).unwrap_err();
        assert!(err.contains("/nonexistent/sheepdog.yaml"), "{err}");
    }
}
