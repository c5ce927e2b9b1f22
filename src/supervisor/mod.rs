//! The supervisor: the central state machine that owns the global picture.
//! It starts processes in dependency order, applies control requests
//! (start, stop, rolling restart, scale, signal), notices when everything
//! has ended, and runs the ordered shutdown under one global deadline.
//! `run` also holds the main thread's signal loop, which is the only reaper.
//!
//! Invariants:
//! - This thread is the only writer of global process state; instance
//!   threads report to it over one channel, the main thread forwards
//!   signals over another, readers send `status::Request`s over a third. It
//!   blocks in one `select!` with at most one deadline (the global shutdown
//!   deadline), so an idle sheepdog sleeps. After every change it publishes
//!   a fresh `Snapshot`.
//! - A process starts only when every dependency is satisfied (started; a
//!   oneshot completed successfully); `initial_state: stopped` processes
//!   never block their dependents.
//! - On shutdown, nothing starts again (every instance is told to hold),
//!   and a process gets its stop signal only after every process
//!   that depends on it has fully stopped (its groups empty), and every
//!   run of a job that depends on it has ended. At
//!   `shutdown_timeout` everything left is killed, whatever the order; a
//!   second SIGTERM/SIGINT does the same at once.
//! - Stops requested through control never make sheepdog exit; only
//!   processes ending on their own can leave it with nothing to supervise.
//! - Exit code: 0 for a requested shutdown, or when everything ended
//!   successfully; 1 when start-up failed, a critical process failed, or
//!   everything ended and something failed.

mod beats;
mod control;
mod jobs;
mod lifecycle;
mod oneshots;
mod reload;
mod view;

pub(crate) use reload::LOADER_STACK;
#[cfg(feature = "api")]
pub(crate) use reload::MAX_QUEUED as MAX_QUEUED_RELOADS;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};
use signal_hook::consts::signal::*;

use crate::cli::exit;
use crate::config::{format_duration, Condition, Config, InitialState, Process, ProcessType};
use crate::health::Health;
use crate::hooks::{Execution, Kind as HookKind, ListError};
use crate::instance::{self, Cmd, Event, Outcome, Report, Shared};
use crate::output::buffer::LogStore;
use crate::output::Output;
use crate::plan::Plan;
use crate::reaper::{self, ExitStatus, Reaper};
use crate::scheduler::{self, run::RunReport};
use crate::signals;
use crate::sorted_map::SortedMap;
use crate::status::{ControlReply, HookStatus, Published, Request};
use crate::stragglers::Sweep;

use jobs::Job;
use lifecycle::{HookJob, Stage};

/// How long to wait for children's last output lines at exit.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Run the supervisor until it decides to exit; returns the exit code.
/// Must be called on the main thread: it becomes the signal loop and reaper.
/// `sigs` is `signals::install(signals::SUPERVISOR)`, installed by the
/// caller before the configuration was loaded.
pub fn run(config: Config, plan: Plan, sigs: &'static mut signal_hook::iterator::Signals) -> i32 {
    reaper::adopt_orphans();
    let store = Arc::new(LogStore::new(config.global.extra.log_buffer_lines));
    crate::logging::set_store(store.clone());
    let (output, _output_thread) = match Output::start(store.clone()) {
        Ok(o) => o,
        Err(e) => {
            log::error!("unable to start the output thread: {e}");
            return exit::FAILURE;
        }
    };
    let reaper = Arc::new(Reaper::new());
    let (hook_exec_tx, hook_exec_rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        reaper: reaper.clone(),
        output,
        hook_executions: hook_exec_tx.clone(),
        shutdown_deadline: std::sync::OnceLock::new(),
        start_timeout: config.global.extra.process_start_timeout,
    });
    let published = Published::new(reaper.clone());
    let (req_tx, req_rx) = crossbeam_channel::unbounded();
    let (sig_tx, sig_rx) = crossbeam_channel::unbounded();
    let closer = sigs.handle();
    let mut supervisor = Supervisor::new(
        config,
        plan,
        shared,
        sig_rx,
        req_rx,
        published.clone(),
        (hook_exec_tx, hook_exec_rx),
    );
    supervisor.set_name_width();
    // Readers never see an empty picture: every process is there (pending)
    // before the API can answer.
    supervisor.publish();
    #[cfg(feature = "api")]
    if let Err(e) = crate::api::start(&supervisor.cfg, published, req_tx, store) {
        log::error!("{e}");
        return exit::FAILURE;
    }
    // Without the API nobody sends requests: the supervisor sees the
    // channel closed and stops listening to it.
    #[cfg(not(feature = "api"))]
    drop((published, req_tx, store));
    let thread = std::thread::Builder::new()
        .name("supervisor".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let code = supervisor.run();
            // Ends the main thread's signal loop below.
            closer.close();
            code
        });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            log::error!("unable to start the supervisor thread: {e}");
            return exit::FAILURE;
        }
    };
    for sig in sigs.forever() {
        if sig == SIGCHLD {
            // A child stopped or resumed changes no state the supervisor
            // keeps, only its snapshot's `paused`: the same SIGCHLD on,
            // to publish it (a no-op in `on_signal`).
            if reaper.reap(true) {
                let _ = sig_tx.send(sig);
            }
        } else {
            let _ = sig_tx.send(sig);
        }
    }
    reaper.reap(true);
    let code = thread.join().unwrap_or(exit::FAILURE);
    // Let API answers in progress (the shutdown request's own 202) out.
    #[cfg(feature = "api")]
    crate::api::drain(Duration::from_secs(1));
    code
}

/// Why the supervisor is shutting down.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    Signal(String),
    Requested,
    StartupFailed(String),
    CriticalFailed(String),
    AllEnded,
}

#[derive(Debug)]
enum Phase {
    Running,
    ShuttingDown {
        started: Instant,
        deadline: Instant,
        forced: bool,
        /// A TERM/INT/QUIT/PWR asked for it (or came since): the next
        /// TERM/INT forces it. A shutdown sheepdog began itself (a
        /// critical failure, all ended, the API) is not "asked twice" by
        /// the orchestrator's one SIGTERM.
        signalled: bool,
    },
}

/// Where a process is in the global lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcPhase {
    /// Waiting for its dependencies.
    Pending,
    /// `initial_state: stopped`: created, not started.
    Held,
    /// Instances launched.
    Active,
    /// Stop sent to every instance.
    Stopping,
    /// Stopped on request (control): can be started again.
    Stopped,
    /// Every instance has ended on its own, or it never started before
    /// shutdown, or shutdown stopped it.
    Finished,
}

impl ProcPhase {
    /// Nothing of it runs, nor will without a request.
    fn is_down(self) -> bool {
        matches!(
            self,
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished
        )
    }
}

/// The supervisor's view of one instance.
struct Inst {
    /// `<process>-<index>`, made once and shared with every snapshot.
    id: Arc<str>,
    cmd: Option<Sender<Cmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
    state: &'static str,
    pid: Option<i32>,
    started_at: Option<SystemTime>,
    starts: u32,
    restart_count: u32,
    /// A restart its policy scheduled, by reason: counted (here and in the
    /// process's `restarts`) when it is tried, not if a stop cancels it.
    restarting: Option<&'static str>,
    last_exit: Option<ExitStatus>,
    backoff_until: Option<SystemTime>,
    error: Option<String>,
    outcome: Option<Outcome>,
    /// None: the process has no health check.
    health: Option<Health>,
    health_error: Option<String>,
    probes: ProbeStats,
    /// Being stopped by a scale-down. If a scale-up brings its index back
    /// before it is gone, it runs again as soon as it has stopped.
    leaving: bool,
    /// Its thread could not be created (sheepdog out of tasks or memory:
    /// a pids cgroup filled by a fork bomb): when to try again. Its
    /// `outcome` is a failure meanwhile, so every stop treats it as done.
    relaunch_at: Option<Instant>,
    /// Thread creations failed in a row, for the retry's backoff.
    thread_failures: u32,
}

/// Why nothing starts yet, in `/ready` and in refused start requests.
const PRE_START_RUNNING: &str = "sheepdog is running the global pre_start hooks";

/// Probe counters for metrics (monotonic).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeStats {
    pub ok: u64,
    pub failed: u64,
    pub seconds_sum: f64,
    pub last_seconds: Option<f64>,
    pub buckets: crate::status::Buckets,
}

impl Inst {
    fn new(id: Arc<str>, restart_count: u32) -> Inst {
        Inst {
            id,
            cmd: None,
            thread: None,
            state: "starting",
            pid: None,
            started_at: None,
            starts: 0,
            restart_count,
            restarting: None,
            last_exit: None,
            backoff_until: None,
            error: None,
            outcome: None,
            health: None,
            health_error: None,
            probes: ProbeStats::default(),
            leaving: false,
            relaunch_at: None,
            thread_failures: 0,
        }
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.cmd {
            // A closed channel means the thread already ended; its Done
            // report is on its way.
            let _ = tx.send(cmd);
        }
    }

    /// `Cmd::Stop`. A child its thread is spawning that is still short of
    /// exec (its working_dir or program on a hung mount) holds that thread
    /// in clone, where no command reaches it: it is killed, which frees the
    /// thread to read this one. Nothing of the program has run in it, so
    /// there is nothing to stop gracefully.
    fn stop(&self, reaper: &Reaper) {
        self.send(Cmd::Stop);
        if let Some(t) = &self.thread {
            reaper.kill_spawning(Some(t.thread().id()));
        }
    }
}

/// An operation a control request started, driven by instance reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Rolling restart: `current` is being stopped (then relaunched and
    /// waited for); `queue` comes after it.
    Rolling {
        current: Option<u32>,
        relaunched: bool,
        queue: VecDeque<u32>,
    },
}

struct Proc {
    def: Arc<Process>,
    /// `def.name`, shared with every snapshot.
    name: Arc<str>,
    phase: ProcPhase,
    desired: u32,
    instances: SortedMap<u32, Inst>,
    op: Option<Op>,
    restarts: crate::status::Counts,
    /// When it began waiting for its dependencies (for dependency_timeout).
    pending_since: Option<Instant>,
    /// Scaled above 0 while stopping: start it again once it has stopped.
    /// Started (or scaled up) while its post_stop hooks run: once they end.
    start_when_stopped: bool,
    /// What a reload decided for it, carried out once it is down.
    next: Option<reload::Next>,
    /// Waiting to start because of a reload, not start-up: when its
    /// dependencies never come, it stays stopped; sheepdog goes on.
    by_reload: bool,
    /// It gave up that way, and why: it stays down and not ready until
    /// started again or changed by a reload.
    gave_up: Option<String>,
}

impl Proc {
    fn new(def: Process, phase: ProcPhase) -> Proc {
        Proc {
            name: Arc::from(def.name.as_str()),
            desired: def.scale,
            def: Arc::new(def),
            phase,
            instances: SortedMap::default(),
            op: None,
            restarts: Default::default(),
            pending_since: Some(Instant::now()),
            start_when_stopped: false,
            next: None,
            by_reload: false,
            gave_up: None,
        }
    }

    fn all_done(&self) -> bool {
        self.instances.values().all(|i| i.outcome.is_some())
    }

    /// A stop request: no start once it has stopped (a scale's or a
    /// reload's). True when one was pending.
    fn cancel_start(&mut self) -> bool {
        let reload = match &mut self.next {
            Some(reload::Next::Replace { start, .. }) => std::mem::take(start),
            // Being removed: no start pending, but put back by a later
            // reload, it comes back stopped, as asked now.
            Some(reload::Next::Remove { resume }) => {
                *resume = false;
                false
            }
            None => false,
        };
        std::mem::take(&mut self.start_when_stopped) || reload
    }

    /// Active with an instance whose thread is to be tried again: it has
    /// not ended, though `all_done` (which stops rely on) says so.
    fn relaunching(&self) -> bool {
        self.phase == ProcPhase::Active && self.instances.values().any(|i| i.relaunch_at.is_some())
    }
}

/// Why `i` will never become healthy: it failed or exited and its
/// restart policy ends it there (not one waiting for a new thread).
fn ended_for_good(i: &Inst) -> Option<String> {
    if i.relaunch_at.is_some() {
        return None;
    }
    match &i.outcome {
        Some(Outcome::Failed(why)) => Some(format!("failed ({why})")),
        Some(Outcome::Exited(status)) => Some(format!("ended ({status}; not restarted)")),
        _ => None,
    }
}

/// Whether a dependency lets its dependent start.
enum DepState {
    Satisfied,
    Waiting,
    Impossible(String),
}

struct Supervisor {
    cfg: Config,
    plan: Plan,
    shared: Arc<Shared>,
    signals: Receiver<libc::c_int>,
    requests: Receiver<Request>,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    published: Arc<Published>,
    /// The previous snapshot's process list, when no reader still held it:
    /// its buffers are refilled by the next publish (`view.rs`).
    spare: Vec<crate::status::ProcessStatus>,
    /// Replies held until the state they describe is published, so a
    /// client that reads status after an answer never sees older state.
    outbox: Vec<(Sender<ControlReply>, ControlReply)>,
    started_at: SystemTime,
    procs: SortedMap<String, Proc>,
    phase: Phase,
    reason: Option<Reason>,
    /// Whether the readiness file is present (None: not written yet).
    ready_file: Option<bool>,
    /// The last error updating it, said once.
    ready_file_error: Option<String>,
    /// After a failed update (a full disk): when to try again, and how
    /// many failed in a row. Nothing else may change for days.
    ready_file_retry: Option<(Instant, u32)>,
    /// Global pre-start hooks have not finished: nothing may start.
    pre_start_pending: bool,
    post_start_fired: bool,
    /// Shutdown progress (meaningful while shutting down).
    stage: Stage,
    hook_exec_tx: Sender<Execution>,
    hook_exec_rx: Receiver<Execution>,
    hook_done_tx: Sender<(HookJob, Result<(), ListError>)>,
    hook_done_rx: Receiver<(HookJob, Result<(), ListError>)>,
    /// Hook lists running now, with their cancel channels.
    running_hooks: SortedMap<HookJob, Sender<()>>,
    hook_stats: SortedMap<(Option<String>, String, HookKind), HookStatus>,
    /// Scheduled jobs (not in `procs`).
    jobs: SortedMap<String, Job>,
    scheduler: Option<scheduler::Handle>,
    sched_tx: Sender<scheduler::Msg>,
    sched_rx: Receiver<scheduler::Msg>,
    runs_tx: Sender<RunReport>,
    runs_rx: Receiver<RunReport>,
    /// The last scheduled run id handed out (monotonic).
    next_run_id: u64,
    oneshots: oneshots::History,
    beats: beats::Beats,
    /// The straggler sweep, in `Stage::Stragglers`.
    sweep: Option<Sweep>,
    /// Its exits; `never()` outside the sweep.
    sweep_rx: Receiver<reaper::Exit>,
    reloads: reload::Reloads,
}

impl Supervisor {
    fn new(
        cfg: Config,
        plan: Plan,
        shared: Arc<Shared>,
        signals: Receiver<libc::c_int>,
        requests: Receiver<Request>,
        published: Arc<Published>,
        (hook_exec_tx, hook_exec_rx): (Sender<Execution>, Receiver<Execution>),
    ) -> Supervisor {
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        let (hook_done_tx, hook_done_rx) = crossbeam_channel::unbounded();
        let jobs: SortedMap<String, Job> = SortedMap::from_iter(cfg.enabled().filter_map(|p| {
            let sched = p.extra.schedule.clone()?;
            Some((p.name.clone(), Job::new(p.clone(), sched)))
        }));
        let (sched_tx, sched_rx) = crossbeam_channel::unbounded();
        let (runs_tx, runs_rx) = crossbeam_channel::unbounded();
        let oneshots = oneshots::History::new(
            cfg.global.extra.oneshot_history_max_entries,
            cfg.global.extra.oneshot_history_max_age,
        );
        let beats = beats::Beats::new(&cfg);
        // Inserted, not collected: see `btree`.
        let mut procs = SortedMap::default();
        for p in cfg.enabled().filter(|p| p.extra.schedule.is_none()) {
            let phase = match p.initial_state {
                InitialState::Running => ProcPhase::Pending,
                InitialState::Stopped => ProcPhase::Held,
            };
            procs.insert(p.name.clone(), Proc::new(p.clone(), phase));
        }
        Supervisor {
            cfg,
            plan,
            shared,
            signals,
            requests,
            reports_tx,
            reports,
            published,
            spare: Vec::new(),
            outbox: Vec::new(),
            started_at: SystemTime::now(),
            procs,
            phase: Phase::Running,
            reason: None,
            ready_file: None,
            ready_file_error: None,
            ready_file_retry: None,
            pre_start_pending: false,
            post_start_fired: false,
            stage: Stage::Stopping,
            hook_exec_tx,
            hook_exec_rx,
            hook_done_tx,
            hook_done_rx,
            running_hooks: SortedMap::default(),
            hook_stats: SortedMap::default(),
            jobs,
            scheduler: None,
            sched_tx,
            sched_rx,
            runs_tx,
            runs_rx,
            next_run_id: 0,
            oneshots,
            beats,
            sweep: None,
            sweep_rx: crossbeam_channel::never(),
            reloads: reload::Reloads::new(),
        }
    }

    /// Align the name column on the longest instance name, before
    /// anything (the API's first lines) is logged.
    fn set_name_width(&self) {
        let width = self
            .procs
            .values()
            .map(|p| {
                p.def.name.len() + 1 + p.def.max_scale.unwrap_or(p.def.scale).to_string().len()
            })
            .max()
            .unwrap_or(0);
        crate::logging::set_name_width(width);
    }

    fn run(mut self) -> i32 {
        let count = |n: usize, one, many| crate::logging::counted(n as u64, one, many);
        log::info!(
            "sheepdog {} starting: pid {}, {}, {}, config {}",
            crate::VERSION,
            std::process::id(),
            count(self.procs.len(), "process", "processes"),
            count(self.jobs.len(), "scheduled job", "scheduled jobs"),
            self.cfg
                .source
                .as_ref()
                .map_or_else(|| "(none)".into(), |p| p.display().to_string())
        );
        for w in &self.cfg.warnings {
            log::warn!("config: {w}");
        }
        // After the banner, aligned like every other instance line.
        for p in self.procs.values().filter(|p| p.phase == ProcPhase::Held) {
            log::info!("{}: initial_state is stopped; not starting it", p.name);
        }
        self.beats.start(self.shared.output.store().clone(), None);
        self.start_pre_start_hooks();
        self.schedule_jobs(None, Vec::new());
        self.try_start_ready();
        self.check_settled();
        self.check_post_start();
        self.publish();
        while !self.finished() {
            let timer = match self.next_deadline() {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            // A channel whose senders are all gone (no API configured, say)
            // would be "ready" forever: swap it for one that never is, or
            // this loop would spin.
            select! {
                recv(self.signals) -> m => match m {
                    Ok(sig) => self.on_signal(sig),
                    Err(_) => self.signals = crossbeam_channel::never(),
                },
                recv(self.reports) -> m => if let Ok(r) = m { self.on_report(r) },
                recv(self.requests) -> m => match m {
                    Ok(r) => self.on_request(r),
                    Err(_) => self.requests = crossbeam_channel::never(),
                },
                recv(self.hook_exec_rx) -> m => if let Ok(e) = m { self.on_hook_execution(e) },
                recv(self.hook_done_rx) -> m => if let Ok((job, result)) = m { self.on_hook_done(job, result) },
                recv(self.sched_rx) -> m => if let Ok(msg) = m { self.on_scheduler(msg) },
                recv(self.runs_rx) -> m => if let Ok(r) = m { self.on_run_report(r) },
                recv(self.beats.results) -> m => if let Ok(o) = m { self.beats.on_outcome(o) },
                recv(self.sweep_rx) -> m => if let Ok(e) = m { self.on_straggler_exit(e) },
                recv(self.reloads.done) -> m => if let Ok(l) = m { self.on_reload_loaded(l) },
                recv(timer) -> _ => self.on_deadline(),
            }
            // Reports come in bursts (50 instances starting at once): take
            // the ones already queued before publishing, so a burst costs
            // one snapshot, not one per report. Bounded by what is queued.
            for _ in 0..self.reports.len() {
                match self.reports.try_recv() {
                    Ok(r) => self.on_report(r),
                    Err(_) => break,
                }
            }
            self.check_post_start();
            self.publish();
        }
        self.finish()
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::ShuttingDown { .. })
            && self.stage == Stage::Done
            && self.running_hooks.is_empty()
            && self.procs.values().all(|p| p.phase.is_down())
            && self.runs_idle()
    }

    fn finish(mut self) -> i32 {
        self.join_scheduler();
        for p in self.procs.values_mut() {
            for i in p.instances.values_mut() {
                if let Some(t) = i.thread.take() {
                    // Every instance thread has reported Done and returned.
                    let _ = t.join();
                }
            }
        }
        // The worker flushes while the output thread drains.
        let start = Instant::now();
        self.beats.stop();
        self.shared.output.finish(OUTPUT_GRACE);
        let kept_up = crate::stdout::flush(start + OUTPUT_GRACE);
        self.beats.wait(start + crate::heartbeat::FLUSH_GRACE);
        // One budget for a stdout that never drains, spent once. One that
        // kept up gets it again for the last lines: a stuck ping's wait
        // above is not stdout's, and had used it up (CI lost the lines).
        crate::stdout::last_flush_by(if kept_up { Instant::now() } else { start } + OUTPUT_GRACE);
        let code = match &self.reason {
            Some(Reason::Signal(_) | Reason::Requested) => exit::OK,
            Some(Reason::StartupFailed(_) | Reason::CriticalFailed(_)) => exit::FAILURE,
            Some(Reason::AllEnded) | None => {
                let failed = self
                    .procs
                    .values()
                    .flat_map(|p| p.instances.values())
                    .any(|i| i.outcome.as_ref().is_some_and(Outcome::is_failure));
                if failed {
                    exit::FAILURE
                } else {
                    exit::OK
                }
            }
        };
        if let Phase::ShuttingDown { started, .. } = self.phase {
            let orphans = self.shared.reaper.orphans_reaped();
            log::info!(
                event = "shutdown_complete", exit_code = code, duration_ms = started.elapsed().as_millis() as u64,
                orphans_reaped = orphans;
                "shutdown complete in {}; exiting with code {code} ({} reaped)",
                crate::config::format_elapsed(started.elapsed()),
                crate::logging::counted(orphans, "orphan", "orphans")
            );
        }
        self.publish();
        code
    }

    fn on_signal(&mut self, sig: libc::c_int) {
        let name = signals::name(sig);
        match (sig, &mut self.phase) {
            (SIGTERM | SIGINT | SIGQUIT | libc::SIGPWR, Phase::Running) => {
                self.begin_shutdown(Reason::Signal(name));
            }
            (
                SIGTERM | SIGINT,
                Phase::ShuttingDown {
                    forced: false,
                    signalled: true,
                    ..
                },
            ) => {
                log::warn!(
                    "received {name} while shutting down: killing every remaining process group now{}",
                    self.remaining()
                );
                self.force_kill();
            }
            (
                SIGTERM | SIGINT | SIGQUIT | libc::SIGPWR,
                Phase::ShuttingDown {
                    forced: false,
                    signalled,
                    ..
                },
            ) => {
                *signalled = true;
                log::info!(
                    "received {name}; already shutting down (a second SIGTERM or SIGINT kills every remaining process group at once)"
                );
            }
            (SIGTERM | SIGINT | SIGQUIT | libc::SIGPWR, Phase::ShuttingDown { .. }) => {
                log::info!("received {name}; already shutting down");
            }
            (SIGHUP, Phase::Running) => self.request_reload(None),
            (SIGHUP, Phase::ShuttingDown { .. }) => {
                log::info!("received SIGHUP while shutting down; not reloading")
            }
            (SIGUSR1, _) => {
                log::info!(event = "reopen_logs", signal = "SIGUSR1"; "received SIGUSR1: reopening log files");
                self.shared.output.reopen();
            }
            // Most likely raised by our own write past RLIMIT_FSIZE (our
            // stdout a file at its limit): logged, it would be raised again
            // by that line's write, without end.
            (libc::SIGXFSZ, _) => {}
            // From the main thread: a child was stopped or resumed; the
            // snapshot published after every event shows it.
            (SIGCHLD, _) => {}
            (_, _) => log::info!("received {name}; ignoring it"),
        }
    }

    /// `: web-1 (pid 7), worker-2`: the instances a forced shutdown is
    /// about to kill, so the log says what held the shutdown up. The first
    /// `NAMED_REMAINING`, then a count: one line, however many are left.
    fn remaining(&self) -> String {
        const NAMED_REMAINING: usize = 10;
        let left: Vec<&Inst> = self
            .procs
            .values()
            .filter(|p| matches!(p.phase, ProcPhase::Active | ProcPhase::Stopping))
            .flat_map(|p| p.instances.values())
            .filter(|i| i.outcome.is_none())
            .collect();
        if left.is_empty() {
            return String::new();
        }
        let named = left.iter().map(|i| match i.pid {
            Some(pid) => format!("{} (pid {pid})", i.id),
            None => i.id.to_string(),
        });
        format!(
            ": {}",
            crate::logging::first_of(named, left.len(), NAMED_REMAINING)
        )
    }

    fn force_kill(&mut self) {
        if let Phase::ShuttingDown { forced, .. } = &mut self.phase {
            *forced = true;
        }
        if let Some(sweep) = &mut self.sweep {
            sweep.force(&self.shared.reaper);
        }
        // Twice: the second cancel is SIGKILL without the hooks' grace,
        // as every process gets now.
        self.cancel_hooks();
        self.cancel_hooks();
        self.stop_runs(scheduler::run::RunCmd::Kill);
        // A thread stuck in a spawn (its child short of exec) reads no Kill.
        self.shared.reaper.kill_in_flight();
        for p in self.procs.values_mut() {
            if matches!(p.phase, ProcPhase::Active | ProcPhase::Stopping) {
                p.phase = ProcPhase::Stopping;
                for i in p.instances.values().filter(|i| i.outcome.is_none()) {
                    i.send(Cmd::Kill);
                }
            }
        }
    }

    fn on_report(&mut self, r: Report) {
        let Some(p) = self.procs.get_mut(&*r.process) else {
            return;
        };
        if p.def.kind == ProcessType::Oneshot {
            let instance = || format!("{}-{}", r.process, r.index);
            // A oneshot stopped on request or by shutdown did not end on
            // its own: no heartbeat for that end.
            let stopped =
                p.phase == ProcPhase::Stopping || matches!(self.phase, Phase::ShuttingDown { .. });
            match &r.event {
                Event::Started { .. } => {
                    self.oneshots.started(&r.process, r.index);
                    self.beats
                        .run_started(&r.process, p.def.extra.heartbeat.as_ref());
                }
                Event::Exited {
                    status,
                    stopped: by_stop,
                    ..
                } => {
                    self.oneshots.exited(&r.process, r.index, *status, *by_stop);
                    if !stopped {
                        self.beats.run_ended(
                            &r.process,
                            p.def.extra.heartbeat.as_ref(),
                            instance(),
                            Some(*status),
                            false,
                            None,
                        );
                    }
                }
                Event::SpawnFailed { error } => {
                    self.oneshots.spawn_failed(&r.process, r.index, error);
                    self.beats.run_ended(
                        &r.process,
                        p.def.extra.heartbeat.as_ref(),
                        instance(),
                        None,
                        false,
                        Some(error),
                    );
                }
                Event::RestartScheduled { .. } => self.oneshots.mark_restart(&r.process, r.index),
                Event::Probe { .. } | Event::Deferred { .. } | Event::Stopping | Event::Done(_) => {
                }
            }
        }
        let Some(inst) = p.instances.get_mut(&r.index) else {
            return;
        };
        if let (Some(reason), Event::Started { .. } | Event::SpawnFailed { .. }) =
            (inst.restarting, &r.event)
        {
            inst.restarting = None;
            inst.restart_count += 1;
            p.restarts.bump(reason);
        }
        match r.event {
            Event::Started { pid } => {
                inst.pid = Some(pid);
                inst.starts += 1;
                inst.state = "running";
                inst.started_at = Some(SystemTime::now());
                inst.backoff_until = None;
                inst.error = None;
                if p.def.extra.health_check.is_some() || !p.def.extra.ports.is_empty() {
                    inst.health = Some(Health::Starting);
                    inst.health_error = None;
                }
                self.roll_on_started(&r.process, r.index);
                self.try_start_ready();
            }
            Event::Exited { status, .. } => {
                inst.pid = None;
                inst.last_exit = Some(status);
                inst.started_at = None;
            }
            Event::SpawnFailed { error } => inst.error = Some(error),
            Event::Deferred { error, delay } => {
                inst.state = "backoff";
                inst.backoff_until = Some(SystemTime::now() + delay);
                inst.error = Some(error);
            }
            Event::RestartScheduled { delay, reason, .. } => {
                inst.state = "backoff";
                inst.restarting = Some(reason);
                inst.backoff_until = Some(SystemTime::now() + delay);
            }
            Event::Probe {
                ok,
                duration,
                health,
                error,
            } => {
                let was = inst.health;
                inst.health = Some(health);
                inst.health_error = error;
                let secs = duration.as_secs_f64();
                inst.probes.last_seconds = Some(secs);
                inst.probes.seconds_sum += secs;
                crate::status::observe(
                    &mut inst.probes.buckets,
                    &crate::status::PROBE_BUCKETS,
                    secs,
                );
                if ok {
                    inst.probes.ok += 1;
                } else {
                    inst.probes.failed += 1;
                }
                if was != Some(health) {
                    if health == Health::Healthy {
                        self.roll_on_healthy(&r.process, r.index);
                    }
                    self.try_start_ready();
                }
            }
            Event::Stopping => inst.state = "stopping",
            Event::Done(outcome) => self.on_done(&r.process, r.index, outcome),
        }
    }

    fn on_done(&mut self, name: &str, index: u32, outcome: Outcome) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let Some(inst) = p.instances.get_mut(&index) else {
            return;
        };
        let ended_on_its_own = outcome != Outcome::Stopped;
        let failed = outcome.is_failure();
        inst.pid = None;
        inst.backoff_until = None;
        inst.state = match &outcome {
            Outcome::Stopped => "stopped",
            Outcome::Completed => "completed",
            Outcome::Exited(_) => "exited",
            Outcome::Failed(why) => {
                inst.error = Some(why.clone());
                "failed"
            }
        };
        inst.outcome = Some(outcome);
        if let Some(t) = inst.thread.take() {
            // It reported Done as its last act.
            let _ = t.join();
        }
        // Scale-down: instances above the desired count go away; one that
        // a scale-up brought back in the meantime runs again.
        let back = inst.leaving && index <= p.desired;
        if index > p.desired && !ended_on_its_own {
            p.instances.remove(&index);
        }
        // (During a rolling restart its turn in the queue relaunches it.)
        if back
            && p.op.is_none()
            && p.phase == ProcPhase::Active
            && matches!(self.phase, Phase::Running)
        {
            log::info!("{name}-{index}: starting again (scaled back up while it stopped)");
            self.launch(name, index);
            return;
        }
        if self.roll_on_done(name, index) {
            return;
        }
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let was_stopping = p.phase == ProcPhase::Stopping;
        // A process that exits while its own pre_stop hooks run (Horizon
        // ends on `horizon:terminate`, which then waits) is stopped only
        // when they end: its dependencies and its post_stop wait for them.
        let hooks_first = was_stopping && self.pre_stop_running(name);
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        // An instance whose thread is to be tried again has not ended.
        let relaunching = p.relaunching() && matches!(self.phase, Phase::Running);
        if p.all_done() && !hooks_first && !relaunching {
            p.phase = match (p.phase, &self.phase) {
                (ProcPhase::Stopping, Phase::Running) => ProcPhase::Stopped,
                (ProcPhase::Held, _) => ProcPhase::Held,
                (_, _) if p.instances.is_empty() && matches!(self.phase, Phase::Running) => {
                    ProcPhase::Stopped
                }
                (_, _) => ProcPhase::Finished,
            };
        }
        let stopped_now = was_stopping && p.phase != ProcPhase::Stopping;
        let critical = p.def.critical;
        if stopped_now && self.after_stop(name) {
            return;
        }
        // One being stopped on request (or by a reload) is meant to go down:
        // how its child ended then (killed by its own pre_stop hook's
        // signal, say) is no failure of the container.
        if failed && critical && !was_stopping && matches!(self.phase, Phase::Running) {
            let instance = format!("{name}-{index}");
            log::error!(
                event = "critical_failed", instance = instance.as_str();
                "{instance} is critical and failed: shutting down"
            );
            self.begin_shutdown(Reason::CriticalFailed(instance));
            return;
        }
        match self.phase {
            Phase::Running => {
                self.try_start_ready();
                if ended_on_its_own {
                    self.check_settled();
                }
            }
            Phase::ShuttingDown { .. } => self.try_stop_ready(),
        }
    }

    /// `name` has just stopped: its post_stop hooks, and a start asked for
    /// while it stopped (a scale). True when it started again.
    fn after_stop(&mut self, name: &str) -> bool {
        self.process_stopped(name);
        let Some(p) = self.procs.get_mut(name) else {
            return false;
        };
        if p.next.is_some() && matches!(self.phase, Phase::Running) {
            // Its post_stop hooks end first (`on_hook_done`): a cleanup
            // must not act on the new definition's process.
            if !self.post_stop_running(name) {
                self.carry_out_next(name);
            }
            return true;
        }
        if std::mem::take(&mut p.start_when_stopped) && matches!(self.phase, Phase::Running) {
            log::info!("{name}: stopped; starting it again as scaled");
            self.launch_after_post_stop(name);
            return true;
        }
        false
    }

    /// Start every pending process whose dependencies are satisfied; fail
    /// start-up when one can never be.
    fn try_start_ready(&mut self) {
        if !matches!(self.phase, Phase::Running) || self.pre_start_pending {
            return;
        }
        let mut ready = Vec::new();
        let mut gave_up = Vec::new();
        for level in &self.plan.levels {
            for name in level {
                let Some(p) = self.procs.get(name) else {
                    continue;
                };
                if p.phase != ProcPhase::Pending {
                    continue;
                }
                let mut all = true;
                for dep in &p.def.depends_on {
                    match self.dep_state(&dep.name, dep.condition) {
                        DepState::Satisfied => {}
                        DepState::Waiting => all = false,
                        DepState::Impossible(why) => {
                            let why = format!("dependency {} {why}", dep.name);
                            // After a reload: that process gives up, not sheepdog.
                            if p.by_reload {
                                gave_up.push((name.clone(), why));
                                all = false;
                                break;
                            }
                            let msg = format!("cannot start {name}: {why}");
                            log::error!("{msg}");
                            self.begin_shutdown(Reason::StartupFailed(msg));
                            return;
                        }
                    }
                }
                if all {
                    ready.push(name.clone());
                }
            }
        }
        for (name, why) in gave_up {
            self.give_up(&name, why);
        }
        for name in ready {
            self.launch_all(&name);
        }
    }

    fn dep_state(&self, dep: &str, condition: Option<Condition>) -> DepState {
        let Some(p) = self.procs.get(dep) else {
            return DepState::Impossible("is not an enabled process".into());
        };
        // About to be replaced by a reload: what it met belongs to the
        // definition on its way out.
        if p.next.is_some() {
            return DepState::Waiting;
        }
        let checked = p.def.has_readiness_check();
        let condition = condition.unwrap_or(match p.def.kind {
            ProcessType::Oneshot => Condition::CompletedSuccessfully,
            ProcessType::Longrun if checked => Condition::Healthy,
            ProcessType::Longrun => Condition::Started,
        });
        let insts = || p.instances.values();
        let all_healthy = || insts().all(|i| i.health == Some(Health::Healthy));
        let all_started = || insts().all(|i| i.starts > 0);
        match p.phase {
            // `initial_state: stopped` does not hold its dependents back.
            ProcPhase::Held => return DepState::Satisfied,
            ProcPhase::Pending => return DepState::Waiting,
            // Stopped on request: what it met before still holds (scaled
            // to 0, nothing is asked of it); what it had not met (a stuck
            // migration, a database still starting), its dependents wait
            // for until it is started again and meets it.
            ProcPhase::Stopped => {
                let met = match condition {
                    Condition::Healthy if checked => all_healthy(),
                    Condition::Started | Condition::Healthy => all_started(),
                    // Stopped before it ended is not completed.
                    Condition::Completed | Condition::CompletedSuccessfully => {
                        insts().all(|i| i.outcome == Some(Outcome::Completed))
                    }
                };
                return if met {
                    DepState::Satisfied
                } else {
                    DepState::Waiting
                };
            }
            ProcPhase::Active | ProcPhase::Stopping | ProcPhase::Finished => {}
        }
        // An instance whose thread is to be tried again has not ended yet.
        if p.relaunching() {
            return DepState::Waiting;
        }
        // (One whose thread is to be tried again has not given up.)
        let never_started =
            || insts().any(|i| i.starts == 0 && i.outcome.is_some() && i.relaunch_at.is_none());
        match condition {
            // A child that is gone (in backoff, or ended for good) kept
            // its last health: only a running one's counts.
            Condition::Healthy if checked => {
                if insts().all(|i| i.pid.is_some() && i.health == Some(Health::Healthy)) {
                    DepState::Satisfied
                } else if never_started() {
                    DepState::Impossible("never started".into())
                } else if let Some(why) = insts().find_map(ended_for_good) {
                    // Nothing will start it again: waiting out
                    // dependency_timeout would only hide why.
                    DepState::Impossible(why)
                } else {
                    DepState::Waiting
                }
            }
            Condition::Started | Condition::Healthy => {
                if all_started() {
                    DepState::Satisfied
                } else if never_started() {
                    DepState::Impossible("never started".into())
                } else {
                    DepState::Waiting
                }
            }
            Condition::Completed => {
                if p.all_done() {
                    DepState::Satisfied
                } else {
                    DepState::Waiting
                }
            }
            Condition::CompletedSuccessfully => {
                if let Some(bad) =
                    insts().find_map(|i| i.outcome.as_ref().filter(|o| **o != Outcome::Completed))
                {
                    DepState::Impossible(match bad {
                        Outcome::Failed(why) => format!("failed ({why})"),
                        other => format!("did not complete successfully ({other:?})"),
                    })
                } else if p.all_done() {
                    DepState::Satisfied
                } else {
                    DepState::Waiting
                }
            }
        }
    }

    /// The one deadline the supervisor waits for: the left-over process
    /// sweep's current step, the shutdown deadline, or the earliest
    /// dependency timeout of a process still waiting to start.
    fn next_deadline(&self) -> Option<Instant> {
        if let Some(sweep) = &self.sweep {
            // Its SIGTERM step ends by the shutdown deadline, and nothing
            // else is left to stop: only SIGKILL's short wait may end past
            // it, after which post_stop hooks find it passed.
            return Some(sweep.deadline());
        }
        match self.phase {
            Phase::ShuttingDown {
                deadline,
                forced: false,
                ..
            } => Some(deadline),
            Phase::ShuttingDown { forced: true, .. } => None,
            // Nothing waits for its dependencies while the global
            // pre_start hooks run (a long migration).
            Phase::Running => self
                .procs
                .values()
                .filter(|p| p.phase == ProcPhase::Pending && !self.pre_start_pending)
                .filter_map(|p| p.pending_since)
                .map(|since| since + self.cfg.global.dependency_timeout)
                .chain(self.next_relaunch())
                .chain(self.ready_file_retry.map(|(at, _)| at))
                .chain(self.beats.retry_at())
                .min(),
        }
    }

    fn on_deadline(&mut self) {
        if let Some(sweep) = &mut self.sweep {
            if Instant::now() >= sweep.deadline() && sweep.on_deadline(&self.shared.reaper) {
                self.end_sweep();
            }
            return;
        }
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            log::warn!(
                "shutdown_timeout ({}) reached: killing every remaining process group{}",
                format_duration(self.cfg.global.shutdown_timeout),
                self.remaining()
            );
            self.force_kill();
            return;
        }
        let now = Instant::now();
        self.relaunch_due(now);
        if self.beats.retry_due(now, self.shared.output.store()) {
            self.update_alive();
        }
        if self.pre_start_pending {
            return;
        }
        let limit = self.cfg.global.dependency_timeout;
        let is_late = |p: &Proc| {
            p.phase == ProcPhase::Pending && p.pending_since.is_some_and(|t| now >= t + limit)
        };
        // After a reload: that process gives up, not sheepdog.
        let gave_up: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| p.by_reload && is_late(p))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gave_up {
            let why = format!(
                "dependency_timeout ({}) passed waiting for {}",
                format_duration(limit),
                self.waiting_for(&name)
            );
            self.give_up(&name, why);
        }
        let late = self.procs.iter().find(|(_, p)| is_late(p));
        let Some((name, _)) = late else { return };
        let msg = format!(
            "cannot start {name}: dependency_timeout ({}) passed waiting for {}",
            format_duration(limit),
            self.waiting_for(name)
        );
        log::error!("{msg}");
        self.begin_shutdown(Reason::StartupFailed(msg));
    }

    /// `db (last error: …), cache`: the dependencies `name` still waits
    /// for, with the last error each reported.
    fn waiting_for(&self, name: &str) -> String {
        let Some(p) = self.procs.get(name) else {
            return String::new();
        };
        let waiting: Vec<String> = p
            .def
            .depends_on
            .iter()
            .filter(|d| matches!(self.dep_state(&d.name, d.condition), DepState::Waiting))
            .map(|d| {
                let last = self.procs.get(&d.name).and_then(|dp| {
                    dp.instances.values().find_map(|i| {
                        i.health_error
                            .clone()
                            .or_else(|| i.error.clone())
                            .or_else(|| {
                                // Down, waiting to restart: how its child ended.
                                let down = i.last_exit.filter(|_| i.pid.is_none());
                                down.map(|s| s.to_string())
                            })
                    })
                });
                match last {
                    Some(e) => format!("{} (last error: {e})", d.name),
                    None => d.name.clone(),
                }
            })
            .collect();
        waiting.join(", ")
    }

    /// Launch instances 1..=desired of `name` (fresh start).
    fn launch_all(&mut self, name: &str) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        p.phase = ProcPhase::Active;
        p.by_reload = false;
        p.gave_up = None;
        let desired = p.desired;
        // Those it starts again keep their counters (`launch`): a stop and
        // a start never take a counter of the same series back.
        p.instances
            .retain(|&index, i| index <= desired || i.outcome.is_none());
        log::info!(
            event = "starting", name = name, instances = desired;
            "starting {name} ({})",
            crate::logging::counted(desired, "instance", "instances")
        );
        for index in 1..=desired {
            self.launch(name, index);
        }
    }

    /// Launch one instance thread (keeping the restart count and last exit
    /// of the instance it replaces, so status and metrics still show why
    /// the previous child ended after a manual or rolling restart, and its
    /// probe counters, which metrics export as counters: they never go
    /// back while the series exists).
    fn launch(&mut self, name: &str, index: u32) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let (id, restart_count, last_exit, thread_failures, probes) = match p.instances.get(&index)
        {
            Some(i) => (
                i.id.clone(),
                i.restart_count,
                i.last_exit,
                i.thread_failures,
                i.probes.clone(),
            ),
            None => (
                Arc::from(format!("{}-{index}", p.def.name)),
                0,
                None,
                0,
                ProbeStats::default(),
            ),
        };
        let mut inst = Inst::new(id, restart_count);
        inst.last_exit = last_exit;
        inst.probes = probes;
        match instance::launch(
            p.def.clone(),
            index,
            self.shared.clone(),
            self.reports_tx.clone(),
        ) {
            Ok(h) => {
                inst.cmd = Some(h.cmd);
                inst.thread = Some(h.thread);
            }
            Err(e) => {
                // sheepdog's shortage, not the process's failure: retried
                // for as long as it lasts, whatever the restart policy.
                let delay = instance::shortage_backoff(thread_failures);
                log::error!(
                    "{name}-{index}: unable to start its thread: {e}; trying again in {}",
                    format_duration(delay)
                );
                let why = format!("unable to start its thread: {e}");
                inst.state = "backoff";
                inst.error = Some(why.clone());
                inst.outcome = Some(Outcome::Failed(why));
                inst.relaunch_at = Some(Instant::now() + delay);
                inst.backoff_until = Some(SystemTime::now() + delay);
                inst.thread_failures = thread_failures.saturating_add(1);
            }
        }
        p.instances.insert(index, inst);
    }

    /// Instances whose thread could not be created, with when to try
    /// again (only of active processes: a stop or the shutdown drops them).
    fn relaunches(&self) -> impl Iterator<Item = (&String, u32, Instant)> {
        self.procs
            .iter()
            .filter(|(_, p)| p.phase == ProcPhase::Active)
            .flat_map(|(name, p)| {
                p.instances
                    .iter()
                    .filter_map(move |(&index, i)| Some((name, index, i.relaunch_at?)))
            })
    }

    /// Launch the instances of `relaunches` due by `now`.
    fn relaunch_due(&mut self, now: Instant) {
        let due: Vec<(String, u32)> = self
            .relaunches()
            .filter(|&(_, _, at)| now >= at)
            .map(|(name, index, _)| (name.clone(), index))
            .collect();
        for (name, index) in due {
            self.launch(&name, index);
        }
    }

    /// The next relaunch due (see `relaunches`).
    fn next_relaunch(&self) -> Option<Instant> {
        self.relaunches().map(|(_, _, at)| at).min()
    }

    /// In the running phase: when nothing is left running or waiting to
    /// start, sheepdog is done.
    fn check_settled(&mut self) {
        if !matches!(self.phase, Phase::Running) || self.pre_start_pending {
            return;
        }
        // Scheduled jobs keep sheepdog running (a crond container).
        if !self.jobs.is_empty() {
            return;
        }
        // Held and stopped processes wait for a start request: the
        // container stays up for it ("a stop never makes sheepdog exit"),
        // whatever else ends meanwhile.
        let settled = self.procs.values().all(|p| match p.phase {
            ProcPhase::Finished => true,
            ProcPhase::Active => p.all_done() && !p.relaunching(),
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Stopping | ProcPhase::Pending => {
                false
            }
        });
        if settled {
            log::info!("every process has ended; nothing left to supervise");
            self.begin_shutdown(Reason::AllEnded);
        }
    }

    fn begin_shutdown(&mut self, reason: Reason) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let now = Instant::now();
        let timeout = self.cfg.global.shutdown_timeout;
        let why = match &reason {
            Reason::Signal(s) => format!("received {s}"),
            Reason::Requested => "requested through the API".into(),
            Reason::StartupFailed(m) => format!("start-up failed: {m}"),
            Reason::CriticalFailed(i) => format!("critical process {i} failed"),
            Reason::AllEnded => "all processes ended".into(),
        };
        log::info!(
            event = "shutdown", reason = why.as_str(), deadline_ms = timeout.as_millis() as u64;
            "shutting down ({why}): stopping in reverse dependency order, deadline {}",
            format_duration(timeout)
        );
        self.phase = Phase::ShuttingDown {
            started: now,
            deadline: now + timeout,
            forced: false,
            signalled: matches!(reason, Reason::Signal(_)),
        };
        self.reason = Some(reason);
        // Before any instance is told to stop.
        let _ = self.shared.shutdown_deadline.set(now + timeout);
        let pre_start = self.pre_start_pending;
        for (name, p) in self.procs.iter_mut() {
            p.op = None;
            // A start waiting for a stop or post_stop hooks never comes now.
            p.start_when_stopped = false;
            if p.phase == ProcPhase::Pending {
                // (Waiting for the global pre_start hooks instead, every
                // process is: their end says so.)
                if !pre_start {
                    log::info!(
                        "{name}: shutting down before its dependencies were ready; not starting it"
                    );
                }
                p.phase = ProcPhase::Finished;
            }
            // Nothing starts again: a process that exits while it waits
            // for its dependents to stop stays down, and one in backoff
            // ends now.
            for i in p.instances.values() {
                i.send(Cmd::Hold("sheepdog is shutting down"));
            }
        }
        // Nothing depends on a scheduled job: its runs stop first.
        self.stop_runs(scheduler::run::RunCmd::Stop);
        self.begin_stop_stages();
    }

    /// Send Stop to every process whose dependents have all stopped. A
    /// process with nothing left running finishes at once, which may release
    /// its own dependencies in turn: hence the loop.
    fn try_stop_ready(&mut self) {
        if !matches!(self.phase, Phase::ShuttingDown { .. }) || self.stage != Stage::Stopping {
            return;
        }
        loop {
            let held = self.held_by_leaving();
            let ready: Vec<String> = self
                .procs
                .iter()
                .filter(|(name, p)| {
                    matches!(p.phase, ProcPhase::Active | ProcPhase::Stopping)
                        && !held.contains(&name.as_str())
                        && self.dependents_stopped(name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            drop(held);
            let mut finished_any = false;
            for name in ready {
                // Stopped only when its pre_stop hooks end.
                let hooks_running = self.pre_stop_running(&name);
                let Some(p) = self.procs.get_mut(&name) else {
                    continue;
                };
                if p.all_done() {
                    if p.phase == ProcPhase::Stopping && hooks_running {
                        continue;
                    }
                    p.phase = ProcPhase::Finished;
                    finished_any = true;
                    continue;
                }
                if p.phase == ProcPhase::Active {
                    p.phase = ProcPhase::Stopping;
                    self.stop_instances(&name);
                }
            }
            if !finished_any {
                break;
            }
        }
        // Scheduled runs are stopped too before post-stop hooks run.
        if self.procs.values().all(|p| p.phase.is_down()) && self.runs_idle() {
            self.after_all_stopped();
        }
    }

    /// Every process that depends on `name` is down, and no run of a job
    /// that depends on it is still going (runs are stopped first, but a
    /// run's stop takes its own time: a backup must not lose its database
    /// mid-stop). (A process a reload is replacing may depend on it by its
    /// old definition, outside the plan: `held_by_leaving`.)
    fn dependents_stopped(&self, name: &str) -> bool {
        let procs_down = self.plan.dependents.get(name).is_none_or(|ds| {
            ds.iter()
                .all(|d| self.procs.get(d).is_none_or(|dp| dp.phase.is_down()))
        });
        procs_down && !self.jobs.values().any(|j| j.holds(name))
    }
}
