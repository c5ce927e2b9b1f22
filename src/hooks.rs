//! Lifecycle hooks: short commands run at fixed points (before any process
//! starts, after all are up, before and after stopping; per process before
//! each start and before its stop). A list runs in file order on a runner
//! thread, so the supervisor never blocks on one; each hook is a child like
//! any other (own group, reaped by the one reaper, output through the log
//! pipeline as `hook:<name>`, killed as a group at its timeout).
//!
//! Invariants:
//! - Bounded: each attempt by its `timeout` and by the caller's deadline
//!   (shutdown hooks live inside the global shutdown deadline); retries
//!   wait `retry_delay`, also bounded by the deadline and cut short by a
//!   cancel.
//! - A cancel (e.g. SIGTERM during pre-start hooks) stops the running hook
//!   gracefully and runs no further hook of the list.
//! - Every execution is reported (name, type, result, duration) for
//!   metrics, whatever the list's outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::child::{var, Command};
use crate::config::{format_duration, Hook, Process};
use crate::instance::Shared;
use crate::spawn::Identity;
use crate::task::{self, Capture, TaskEnd};

/// Where in the lifecycle a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    PreStart,
    PostStart,
    PreStop,
    PostStop,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PreStart => "pre_start",
            Kind::PostStart => "post_start",
            Kind::PreStop => "pre_stop",
            Kind::PostStop => "post_stop",
        }
    }
}

/// One hook execution (all attempts), for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub name: String,
    pub kind: Kind,
    /// The process it belongs to, for per-process hooks.
    pub process: Option<String>,
    pub ok: bool,
    pub duration: Duration,
}

/// What a hook runner was started for: the supervisor's lists, or an
/// instance's or run's own (`Own`, which its runner waits for alone).
/// One type for both, so that their result channels are one type of
/// channel (crossbeam's code is compiled per message type).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookJob {
    GlobalPreStart,
    GlobalPostStart,
    GlobalPreStop,
    GlobalPostStop,
    ProcPreStop(String),
    ProcPostStop(String),
    Own,
}

/// Where a hook runner reports its list's result, with the caller's token.
pub type Done = Receiver<(HookJob, Result<(), ListError>)>;

/// A process's post-start hooks, running beside it on their own thread:
/// nothing waits for them to go on, but whoever started them calls
/// `finish` before the process counts as ended, so no hook outlives it.
pub struct PostStart {
    cancel: Cancel,
    done: Done,
}

/// How long `PostStart::finish` lets the hooks end on their own before it
/// cancels them.
const POST_START_FINISH: Duration = Duration::from_secs(2);
/// How long to wait for a cancelled list to end (the runner's own stop of
/// the running hook is bounded below this).
const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl PostStart {
    /// Start `def`'s post-start hooks for its instance or run `id`, if it
    /// has any. A failure to start the thread is logged, never fatal.
    pub fn start(def: &Arc<Process>, shared: &Arc<Shared>, id: &Identity) -> Option<PostStart> {
        let hooks = &def.extra.hooks.post_start;
        if hooks.is_empty() {
            return None;
        }
        match spawn_for(def, shared, id, hooks, Kind::PostStart) {
            Ok((cancel, done)) => Some(PostStart { cancel, done }),
            Err(e) => {
                log::error!("{}: unable to start its post_start hooks: {e}", id.instance);
                None
            }
        }
    }

    /// Whether the list is still going (a list that has ended, or whose
    /// thread is gone, is not).
    pub fn running(&self) -> bool {
        matches!(self.done.try_recv(), Err(TryRecvError::Empty))
    }

    /// Cancel the list as `asked` (see `pass_on`); the rest of its hooks
    /// do not run. `finish` still waits for it.
    pub fn cancel(&self, asked: Ask) {
        pass_on(&self.cancel, asked);
    }

    /// Let the hooks end (briefly), then cancel what is left, while
    /// `requests` may still ask to `Ask::Kill` them (the shutdown deadline,
    /// a second SIGTERM). Bounded.
    pub fn finish<M>(self, requests: &Receiver<M>, ask: impl Fn(&M) -> Ask) {
        if !wait_killable(&self.done, &self.cancel, requests, &ask, POST_START_FINISH) {
            pass_on(&self.cancel, Ask::Stop);
            wait_killable(&self.done, &self.cancel, requests, &ask, CANCEL_WAIT);
        }
    }
}

/// What a message to someone waiting on hooks asks of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing for the hooks (a signal for a process not started yet).
    Nothing,
    /// Stop: the running hook gets SIGTERM, then SIGKILL after its grace.
    Stop,
    /// SIGKILL now: a forced shutdown or its deadline.
    Kill,
}

/// A process's running hook list's cancels, and its thread: a spawn of
/// that thread stuck short of exec (its working_dir or program on a hung
/// mount) holds it in clone, where no cancel reaches it until the hook's
/// timeout kills that child (`child::Command::exec_deadline`). Nothing of
/// the hook has run in it: a cancel kills it at once, which frees the
/// thread to read the cancel.
struct Cancel {
    tx: Sender<()>,
    thread: std::thread::ThreadId,
    shared: Arc<Shared>,
}

impl Cancel {
    /// One cancel (the first stops the running hook, a second kills it).
    fn send(&self) {
        // Never blocks: a full channel has its cancels already.
        let _ = self.tx.try_send(());
        self.shared.reaper.kill_spawning(Some(self.thread));
    }
}

/// Tell a running hook list what was asked: a stop is its first cancel
/// (SIGTERM, SIGKILL after its grace), a kill the second one too (SIGKILL
/// now). A list reads two cancels at most; more are ignored.
fn pass_on(cancel: &Cancel, asked: Ask) {
    let times = match asked {
        Ask::Nothing => 0,
        Ask::Stop => 1,
        Ask::Kill => 2,
    };
    for _ in 1..times {
        let _ = cancel.tx.try_send(());
    }
    if times > 0 {
        cancel.send();
    }
}

/// Wait up to `wait` for a hook list to end, passing on a kill asked for
/// meanwhile (a closed `requests` counts as one) as the list's second,
/// forced cancel. Whether it ended.
fn wait_killable<M>(
    done: &Done,
    cancel: &Cancel,
    requests: &Receiver<M>,
    ask: &impl Fn(&M) -> Ask,
    wait: Duration,
) -> bool {
    let timer = crossbeam_channel::after(wait);
    let never = crossbeam_channel::never();
    let mut requests = requests;
    loop {
        crossbeam_channel::select! {
            recv(done) -> _ => return true,
            recv(requests) -> m => {
                // Cancelled already: only a kill has more to say.
                if m.as_ref().map_or(Ask::Kill, ask) == Ask::Kill {
                    pass_on(cancel, Ask::Kill);
                }
                if m.is_err() {
                    requests = &never;
                }
            },
            recv(timer) -> _ => return false,
        }
    }
}

/// How a process's pre-start hooks ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreStart {
    /// All done (or none): go ahead and start.
    Done,
    /// A hook failed for good: this start fails.
    Failed(String),
    /// sheepdog could not start a hook (`sys::short_of_resources`): its
    /// own shortage, not a failed start.
    Short(String),
    /// A stop arrived meanwhile and cancelled them: no start.
    Stopped,
}

/// Run `def`'s pre-start hooks before a start (of its instance or
/// scheduled run `id`) and wait for them on their own thread, while still
/// listening to `requests`: what `ask` makes of a message (the channel
/// closing is a kill) cancels them, and a kill also ends their grace.
/// Bounded by the hooks' own timeouts and the runner's cancel grace.
pub fn run_pre_start<M>(
    def: &Arc<Process>,
    shared: &Arc<Shared>,
    id: &Identity,
    requests: &Receiver<M>,
    ask: impl Fn(&M) -> Ask,
) -> PreStart {
    let hooks = &def.extra.hooks.pre_start;
    if hooks.is_empty() {
        return PreStart::Done;
    }
    let (cancel, done) = match spawn_for(def, shared, id, hooks, Kind::PreStart) {
        Ok(started) => started,
        Err(e) => return PreStart::Short(format!("unable to start its pre_start hooks: {e}")),
    };
    loop {
        crossbeam_channel::select! {
            recv(done) -> m => return match m {
                Ok((_, Ok(()))) => PreStart::Done,
                Ok((_, Err(ListError::Failed(why)))) => PreStart::Failed(why),
                Ok((_, Err(ListError::Short(why)))) => PreStart::Short(why),
                Ok((_, Err(ListError::Cancelled))) | Err(_) => PreStart::Stopped,
            },
            recv(requests) -> m => {
                let asked = m.as_ref().map_or(Ask::Kill, &ask);
                if asked == Ask::Nothing {
                    continue;
                }
                pass_on(&cancel, asked);
                wait_killable(&done, &cancel, requests, &ask, CANCEL_WAIT);
                return PreStart::Stopped;
            },
        }
    }
}

/// Run one of `def`'s own hook lists for its instance or run `id` on its
/// thread, with no deadline but the hooks' own: the cancel sender and
/// where the result arrives.
fn spawn_for(
    def: &Arc<Process>,
    shared: &Arc<Shared>,
    id: &Identity,
    hooks: &[Hook],
    kind: Kind,
) -> std::io::Result<(Cancel, Done)> {
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let (tx, thread) = spawn_list(
        hooks.to_vec(),
        kind,
        Some(def.clone()),
        Some(id.clone()),
        shared.clone(),
        None,
        shared.hook_executions.clone(),
        done_tx,
        HookJob::Own,
    )?;
    let shared = shared.clone();
    Ok((Cancel { tx, thread, shared }, done))
}

/// Why a list stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// A hook failed for good and does not `continue_on_error`.
    Failed(String),
    /// A pre_start hook of an instance or run could not be started
    /// (`sys::short_of_resources`): `PreStart::Short`.
    Short(String),
    Cancelled,
}

/// Run `hooks` in order; `process` scopes them (its env, its name), and
/// `instance`, when they run for one instance or run of it, names that
/// one. `deadline` bounds everything; `cancel` stops early.
#[allow(clippy::too_many_arguments)]
fn run_list(
    hooks: &[Hook],
    kind: Kind,
    process: Option<&Process>,
    instance: Option<&Identity>,
    shared: &Shared,
    deadline: Option<Instant>,
    cancel: &Receiver<()>,
    executions: &Sender<Execution>,
) -> Result<(), ListError> {
    let scope = scope(process, instance);
    for hook in hooks {
        // A cancel that came after the last hook ended (while its last
        // lines were waited for): the next one does not start at all.
        if cancel.recv_deadline(Instant::now()).is_ok() {
            return Err(ListError::Cancelled);
        }
        let started = Instant::now();
        let result = run_one(hook, kind, process, instance, shared, deadline, cancel);
        let _ = executions.send(Execution {
            name: hook.name.clone(),
            kind,
            process: process.map(|p| p.name.clone()),
            ok: result.is_ok(),
            duration: started.elapsed(),
        });
        match result {
            Ok(()) => log::info!("{scope}{} hook {:?} succeeded", kind.as_str(), hook.name),
            Err(ListError::Cancelled) => {
                // (Only shutdown hooks have a deadline.)
                let cut = match deadline {
                    Some(d) if Instant::now() >= d => ": cut off at the shutdown deadline",
                    _ => "",
                };
                log::warn!(
                    "{scope}{} hook {:?} cancelled{cut}",
                    kind.as_str(),
                    hook.name
                );
                return Err(ListError::Cancelled);
            }
            Err(e @ ListError::Short(_)) => return Err(e),
            Err(ListError::Failed(why)) if hook.continue_on_error => {
                log::warn!(
                    "{scope}{} hook {:?} failed: {why}; continuing (continue_on_error)",
                    kind.as_str(),
                    hook.name
                );
            }
            Err(ListError::Failed(why)) => {
                // A process's pre_start failure is reported by the start it
                // failed: once is enough.
                if !(kind == Kind::PreStart && process.is_some()) {
                    log::error!(
                        "{scope}{} hook {:?} failed: {why}",
                        kind.as_str(),
                        hook.name
                    );
                }
                return Err(ListError::Failed(format!(
                    "{} hook {:?} failed: {why}",
                    kind.as_str(),
                    hook.name
                )));
            }
        }
    }
    Ok(())
}

/// Start `run_list` on its own thread; `done` receives its result. Its
/// cancels go to the sender returned, with that thread's id.
#[allow(clippy::too_many_arguments)]
pub fn spawn_list(
    hooks: Vec<Hook>,
    kind: Kind,
    process: Option<Arc<Process>>,
    instance: Option<Identity>,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
    executions: Sender<Execution>,
    done: Sender<(HookJob, Result<(), ListError>)>,
    token: HookJob,
) -> std::io::Result<(Sender<()>, std::thread::ThreadId)> {
    // Two: a cancel (SIGTERM during the hooks), then a forced one (the
    // shutdown deadline, a second SIGTERM) that cuts the grace short.
    let (tx, cancel_rx) = crossbeam_channel::bounded(2);
    let thread = std::thread::Builder::new()
        .name(format!("hooks-{}", kind.as_str()))
        .stack_size(128 * 1024)
        .spawn(move || {
            let result = run_list(
                &hooks,
                kind,
                process.as_deref(),
                instance.as_ref(),
                &shared,
                deadline,
                &cancel_rx,
                &executions,
            );
            let _ = done.send((token, result));
        })?;
    Ok((tx, thread.thread().id()))
}

/// `w-2: ` (a hook run for one instance or run), `w: ` (a process's), or
/// nothing (a global hook): what its result lines begin with.
fn scope(process: Option<&Process>, instance: Option<&Identity>) -> String {
    match (instance, process) {
        (Some(id), _) => format!("{}: ", id.instance),
        (None, Some(p)) => format!("{}: ", p.name),
        (None, None) => String::new(),
    }
}

/// All attempts of one hook.
fn run_one(
    hook: &Hook,
    kind: Kind,
    process: Option<&Process>,
    instance: Option<&Identity>,
    shared: &Shared,
    deadline: Option<Instant>,
    cancel: &Receiver<()>,
) -> Result<(), ListError> {
    let attempts = hook.retry.saturating_add(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let left = deadline.map_or(hook.timeout, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return Err(ListError::Failed(
                format!("{last}; no time left before the deadline")
                    .trim_start_matches("; ")
                    .to_string(),
            ));
        }
        let timeout = hook.timeout.min(left);
        // A process's hooks carry its name: two processes may each have a
        // hook called `migrate`.
        let tag: std::sync::Arc<str> = match process {
            Some(p) => format!("{}/hook:{}", p.name, hook.name),
            None => format!("hook:{}", hook.name),
        }
        .into();
        let id = Identity {
            process: tag.clone(),
            instance: tag,
            index: 0,
        };
        let cmd = command(hook, kind, process, instance);
        last = match task::run(
            &shared.reaper,
            cmd,
            timeout,
            Capture::Log(
                &shared.output,
                &id,
                process.map_or(&[], |p| &p.extra.logging.redaction),
            ),
            Some(cancel),
        ) {
            TaskEnd::Exited { status, .. } if status.success() => return Ok(()),
            TaskEnd::Exited { status, .. } => status.to_string(),
            // Its time was cut to the shutdown deadline, which has passed:
            // said as the cancel at that deadline (`run_list`), not as its
            // own timeout.
            TaskEnd::TimedOut { .. } if timeout < hook.timeout => return Err(ListError::Cancelled),
            TaskEnd::TimedOut { .. } => format!("timed out after {}", format_duration(timeout)),
            TaskEnd::SpawnFailed(e) => {
                let why = format!(
                    "unable to run {:?}: {e}",
                    hook.command.first().map_or("", String::as_str)
                );
                if e.short_of_resources && instance.is_some() && kind == Kind::PreStart {
                    return Err(ListError::Short(format!(
                        "pre_start hook {:?}: {why}",
                        hook.name
                    )));
                }
                why
            }
            TaskEnd::Cancelled => return Err(ListError::Cancelled),
        };
        if attempt < attempts {
            log::warn!(
                "{}{} hook {:?} attempt {attempt}/{attempts} failed: {last}; retrying in {}",
                scope(process, instance),
                kind.as_str(),
                hook.name,
                format_duration(hook.retry_delay)
            );
            let wake = deadline.map_or(Instant::now() + hook.retry_delay, |d| {
                d.min(Instant::now() + hook.retry_delay)
            });
            match cancel.recv_deadline(wake) {
                Ok(()) => return Err(ListError::Cancelled),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                // Nobody can cancel any more: just wait out the delay.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
    if attempts > 1 {
        last = format!("{last} (after {attempts} attempts)");
    }
    Err(ListError::Failed(last))
}

/// The hook's command: its env on top of the process's, plus identity
/// (the instance's or run's, as its own command gets, for a hook run for
/// one).
fn command(
    hook: &Hook,
    kind: Kind,
    process: Option<&Process>,
    instance: Option<&Identity>,
) -> Command {
    let (program, args) = match hook.command.split_first() {
        Some((p, a)) => (p.as_str(), a),
        // Validation guarantees a non-empty command; an empty one fails to spawn.
        None => ("", &[][..]),
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(p) = process {
        cmd.envs(&p.env).env(var::PROCESS, &p.name);
        if let Some(dir) = &p.working_dir {
            cmd.current_dir(dir);
        }
    }
    if let Some(id) = instance {
        cmd.env(var::INSTANCE, &*id.instance)
            .env(var::INSTANCE_INDEX, id.index.to_string());
    }
    cmd.envs(&hook.env)
        .env(var::HOOK_NAME, &hook.name)
        .env(var::HOOK_TYPE, kind.as_str())
        .credentials(hook.credentials.clone());
    if let Some(dir) = &hook.working_dir {
        cmd.current_dir(dir);
    }
    cmd
}
