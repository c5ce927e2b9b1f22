//! The read-only picture of sheepdog that readers (HTTP API, metrics, ctl)
//! see, and the control requests they may send. Plain data, serialisable.
//!
//! Invariants:
//! - Only the supervisor thread builds and publishes snapshots; readers
//!   clone an `Arc` under a short lock and never block the supervisor.
//! - Counters in a snapshot (restarts, reaped orphans) only grow, so
//!   Prometheus counters can be rendered straight from them.
//! - A control request is answered on its own reply channel; the
//!   supervisor never waits on a reader. Long operations (stop, restart,
//!   scale down) are accepted at once and progress shows in snapshots.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use serde::Serialize;

/// Upper bounds (seconds) of the probe-duration histogram buckets.
pub const PROBE_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Upper bounds (seconds) of the hook-duration histogram buckets.
pub const HOOK_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Upper bounds (seconds) of the scheduled-run duration histogram buckets.
pub const RUN_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// Counts per bucket of one of the histograms above: one per bound, and
/// +Inf last; not cumulative. A fixed array, so a snapshot copies it
/// without allocating.
pub type Buckets = [u64; PROBE_BUCKETS.len() + 1];

/// Count one observation into per-bucket counts (`bounds.len() + 1`
/// entries, the last for +Inf; not cumulative).
pub fn observe(buckets: &mut Buckets, bounds: &[f64; PROBE_BUCKETS.len()], value: f64) {
    let i = bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len());
    buckets[i] += 1;
}

/// Seconds since the Unix epoch, as a float (what the API and metrics show).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The whole picture at one moment.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    /// When sheepdog started (Unix seconds).
    pub started_at: f64,
    /// `running` or `stopping`.
    pub phase: &'static str,
    /// The container readiness bit: every enabled longrun with a readiness
    /// check is ready and no process has failed for good.
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub not_ready: Vec<NotReady>,
    /// Adopted orphans reaped so far.
    pub orphans_reaped: u64,
    /// When the shutdown going on began (Unix seconds), for the metric of
    /// how long it has taken so far.
    #[serde(skip)]
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the metrics only
    pub shutdown_began: Option<f64>,
    pub processes: Vec<ProcessStatus>,
    /// Hook executions so far, per hook (monotonic counters).
    pub hooks: Vec<HookStatus>,
    /// Oneshot runs, oldest first (bounded by `oneshot_history_max_entries`
    /// and `oneshot_history_max_age`).
    pub oneshot_history: Vec<OneshotRun>,
    /// Heartbeat pings per process with a heartbeat (monotonic counters;
    /// metrics only).
    #[serde(skip)]
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub heartbeats: Vec<HeartbeatStats>,
    /// Configuration reloads so far (metrics only).
    #[serde(skip)]
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub reloads: ReloadCounts,
}

/// Configuration reloads: applied, refused, and how the last one went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
pub struct ReloadCounts {
    pub succeeded: u64,
    pub failed: u64,
    /// None: no reload yet.
    pub last_ok: Option<bool>,
}

/// One reason the container is not ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotReady {
    /// What and its state (`web-2: backoff`, `web-1: unhealthy`, `sheepdog
    /// is shutting down`): safe to show a client without the token.
    pub what: String,
    /// The failing check's own words (probe output, a probe URL with its
    /// query): may hold secrets, so only clients with the token see it.
    pub detail: Option<String>,
}

impl NotReady {
    pub fn new(what: String) -> NotReady {
        NotReady { what, detail: None }
    }

    /// `what: detail`, for clients that may see the detail.
    pub fn full(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.what),
            None => self.what.clone(),
        }
    }
}

/// As `full()`: a snapshot is serialised only for clients with the token.
impl Serialize for NotReady {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full())
    }
}

/// Heartbeat pings of one process, counted once each after its retries.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    pub process: String,
    pub success: u64,
    pub failure: u64,
}

/// A scheduled job's state, stats and history.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScheduleStatus {
    /// As written (`*/5 * * * *`, `@daily`, `@every 30s`).
    pub expression: String,
    pub timezone: String,
    pub paused: bool,
    /// Runs going on now.
    pub running: u32,
    pub running_pids: Vec<i32>,
    /// 0 = unlimited.
    pub max_concurrent: u32,
    pub timeout_seconds: Option<f64>,
    /// `shutdown.timeout`: how long a run's stop may take after its
    /// timeout (what `trigger?wait=true` waits for beyond it).
    #[serde(skip)]
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub stop_timeout: std::time::Duration,
    pub jitter_seconds: f64,
    pub catch_up: bool,
    /// When the next run is due (Unix seconds; None while never).
    pub next_run: Option<f64>,
    /// When the last run started (Unix seconds).
    pub last_run: Option<f64>,
    pub last_result: Option<String>,
    pub last_exit: Option<LastExit>,
    pub last_duration_seconds: Option<f64>,
    pub stats: RunStats,
    /// Runs and skips, oldest first (bounded by `schedule_history_size`).
    #[serde(skip)]
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub history: Vec<RunRecord>,
}

/// Monotonic counters of a scheduled job.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunStats {
    /// Finished runs (success + failure + timeout + stopped).
    pub total: u64,
    pub success: u64,
    pub failure: u64,
    pub timeout: u64,
    /// Stopped on request or by the shutdown.
    pub stopped: u64,
    /// Triggers skipped at the concurrency limit.
    pub skipped: u64,
    pub duration_seconds_sum: f64,
    pub average_duration_seconds: Option<f64>,
    /// Durations per `RUN_BUCKETS` bucket (+Inf last; not cumulative).
    pub duration_buckets: Buckets,
}

/// One run of a scheduled job (or a skipped trigger).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct RunRecord {
    /// None for a skipped trigger.
    pub run_id: Option<u64>,
    /// `schedule`, `manual` or `catch_up`.
    pub trigger: String,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `running`, `success`, `failure`, `timeout` or `skipped`.
    pub result: String,
    pub error: Option<String>,
}

/// One run of a oneshot process (one child, start to exit).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct OneshotRun {
    pub process: String,
    /// `<process>-<index>`
    pub instance: String,
    /// `startup`, `restart` (the restart policy) or `manual` (API/ctl).
    pub trigger: String,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `running`, `success`, `failure`, `stopped` (on request or by the
    /// shutdown) or `failed_to_start`.
    pub result: String,
    pub error: Option<String>,
}

/// One hook's executions (all attempts of a run count as one execution).
#[derive(Debug, Clone, Serialize, Default)]
pub struct HookStatus {
    pub name: String,
    /// `pre_start`, `post_start`, `pre_stop` or `post_stop`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The process a per-process hook belongs to.
    pub process: Option<String>,
    pub success: u64,
    pub failure: u64,
    pub duration_seconds_sum: f64,
    pub last_duration_seconds: Option<f64>,
    pub last_ok: Option<bool>,
    /// When it last ran (Unix seconds).
    pub last_at: Option<f64>,
    /// Durations per `HOOK_BUCKETS` bucket (+Inf last; not cumulative).
    pub duration_buckets: Buckets,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ProcessStatus {
    /// Shared with the supervisor's own record: publishing copies a pointer.
    pub name: Arc<str>,
    /// `longrun` or `oneshot`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `pending`, `held`, `running`, `stopping`, `stopped`, `finished`
    /// (every instance ended well) or `failed` (ended, one of them failing).
    pub state: &'static str,
    pub desired_scale: u32,
    /// Instances with a live child.
    pub current_scale: u32,
    pub max_scale: Option<u32>,
    pub critical: bool,
    pub restart: &'static str,
    /// An operation in progress, if any: `starting` (a start waiting for
    /// the stop under way or the post_stop hooks), `restarting` (a rolling
    /// restart), `replacing` or `removing` (a reload's, which may wait for
    /// dependents or a scheduled run before the stop begins).
    pub operation: Option<&'static str>,
    /// Why it is down though it was meant to run (a dependency that never
    /// came after a reload); `null` otherwise. Instance failures are in
    /// each instance's `error`.
    pub error: Option<String>,
    /// Restarts of every instance so far, by reason (`exit`, `signal`,
    /// `health`, `manual`).
    pub restarts: Counts,
    pub instances: Vec<InstanceStatus>,
    /// Set for scheduled jobs (which have no instances of their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleStatus>,
}

/// Counters by name (restart reasons), in name order; served as a JSON
/// object.
pub type Counts = crate::sorted_map::SortedMap<&'static str, u64>;

impl Counts {
    pub fn bump(&mut self, name: &'static str) {
        *self.get_or_insert_with(name, || 0) += 1;
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InstanceStatus {
    /// `<process>-<index>`, shared with the supervisor's own record.
    pub id: Arc<str>,
    pub index: u32,
    /// `starting`, `running`, `backoff`, `stopping`, `stopped`, `exited`,
    /// `failed` or `completed`.
    pub state: &'static str,
    pub pid: Option<i32>,
    /// Its child is stopped by a signal (SIGSTOP, SIGTSTP: a debugger, a
    /// freeze) and not resumed yet; its state stays `running`.
    pub paused: bool,
    /// When the current child started (Unix seconds).
    pub started_at: Option<f64>,
    pub uptime_seconds: Option<f64>,
    pub restart_count: u32,
    /// `unknown` (no check), `starting`, `healthy` or `unhealthy`.
    pub health: &'static str,
    pub health_error: Option<String>,
    pub last_exit: Option<LastExit>,
    /// When a restart waiting in backoff will happen (Unix seconds).
    pub backoff_until: Option<f64>,
    /// Why it failed, for `failed`.
    pub error: Option<String>,
    /// Health probes of this instance so far (monotonic).
    pub health_checks_ok: u64,
    pub health_checks_failed: u64,
    /// Sum of probe durations (seconds) and the last one.
    pub health_check_seconds_sum: f64,
    pub health_check_last_seconds: Option<f64>,
    /// Probe durations per `PROBE_BUCKETS` bucket (+Inf last; not cumulative).
    pub health_check_buckets: Buckets,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct LastExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<crate::reaper::ExitStatus> for LastExit {
    fn from(s: crate::reaper::ExitStatus) -> LastExit {
        match s {
            crate::reaper::ExitStatus::Code(c) => LastExit {
                code: Some(c),
                signal: None,
            },
            crate::reaper::ExitStatus::Signal { signal, .. } => LastExit {
                code: None,
                signal: Some(signal),
            },
        }
    }
}

/// `no process named "web-1"; did you mean "web"?`: the API's 404, with
/// the process meant when the name is close to one (an instance name, as
/// `ctl status` lists them, or a typo).
#[cfg_attr(not(feature = "api"), allow(dead_code))] // for API requests only
pub fn no_process_named(name: &str, names: &[&str]) -> String {
    // `web-1` is instance 1 of `web`, however short the name.
    let instance_of = names.iter().copied().find(|p| {
        name.strip_prefix(p)
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    match instance_of.or_else(|| crate::config::suggest::closest(name, names.iter().copied())) {
        Some(p) => format!("no process named {name:?}; did you mean {p:?}?"),
        None => format!("no process named {name:?}"),
    }
}

/// Where the supervisor publishes snapshots for readers.
#[derive(Default)]
pub struct Published {
    current: Mutex<Arc<Snapshot>>,
    /// The live count of reaped orphans: a reap does not wake the
    /// supervisor, so a snapshot's copy of it would stay stale while
    /// nothing else happens (an idle container's scrapes).
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    reaper: Option<Arc<crate::reaper::Reaper>>,
}

impl Published {
    pub fn new(reaper: Arc<crate::reaper::Reaper>) -> Arc<Published> {
        Arc::new(Published {
            reaper: Some(reaper),
            ..Published::default()
        })
    }

    /// Replace the snapshot (supervisor only). Returns the one it replaced
    /// when no reader holds it any more, so its buffers can be reused.
    pub fn publish(&self, snapshot: Snapshot) -> Option<Snapshot> {
        let fresh = Arc::new(snapshot);
        let old = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        Arc::try_unwrap(old).ok()
    }

    /// The latest snapshot.
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub fn get(&self) -> Arc<Snapshot> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adopted orphans reaped so far: the reaper's live count, not `snap`'s
    /// copy, which a reap alone does not refresh.
    #[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
    pub fn orphans_reaped(&self, snap: &Snapshot) -> u64 {
        self.reaper
            .as_ref()
            .map_or(snap.orphans_reaped, |r| r.orphans_reaped())
    }
}

/// `scale NAME 3` / `{"desired": 3}` sets, `+1` / `{"delta": -1}` changes
/// (by an i32: no process may run more than 1000 instances, and
/// `Control::ScaleBy` stays small). Shared by ctl, the API and the
/// supervisor, which applies a change to the count it wants then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleBy {
    To(u32),
    Delta(i32),
}

/// The longest a trigger waits for its run (`ctl trigger --wait`, and
/// `trigger?wait=true`'s `timeout`): a run's end reported later is not
/// waited for.
pub const TRIGGER_WAIT_CAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A trigger's wait bound, `v` as given (`ctl trigger --wait=`, the API's
/// `timeout=`); the error quotes it.
pub fn wait_bound(v: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(v)
        .ok()
        .filter(|d| !d.is_zero() && *d <= TRIGGER_WAIT_CAP)
        .ok_or_else(|| format!("got {v:?}; expected a duration (30s, 5m, 1h30m) up to 24h"))
}

/// What a reader may ask of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
pub enum Control {
    /// Answered at once: proves the supervisor loop is alive.
    Ping,
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    /// Rolling: one instance at a time.
    Restart {
        name: String,
    },
    Scale {
        name: String,
        desired: u32,
    },
    /// A change the supervisor adds to the count the process wants when it
    /// applies it, so deltas sent at once all count. (A variant of its own,
    /// not a `Scale` with a `ScaleBy`: that would make every `Control` 40
    /// bytes, and every channel function that moves one larger.)
    ScaleBy {
        name: String,
        delta: i32,
    },
    Signal {
        name: String,
        signal: nix::sys::signal::Signal,
        /// Every process of each instance, or its main process only.
        whom: crate::group::Whom,
    },
    /// Reopen every log file (`ctl logs --reopen`; same as SIGUSR1).
    ReopenLogs,
    /// Scheduled jobs: stop starting runs (runs going on continue).
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Start a run now. With `wait`, the reply comes when it ends
    /// (`ControlReply::Run`).
    Trigger {
        name: String,
        wait: bool,
    },
    /// Read the configuration file again and apply what changed
    /// (`ControlReply::Reloaded`, or `Invalid` and nothing changes).
    Reload,
    Shutdown,
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlReply {
    /// Done (or nothing to do).
    Done(String),
    /// Accepted; progress shows in snapshots.
    Accepted(String),
    NotFound(String),
    /// The request cannot apply in the current state (e.g. scaling a oneshot,
    /// beyond max_scale, or during shutdown).
    Conflict(String),
    /// A finished scheduled run (`Trigger { wait: true }`).
    Run(Box<RunRecord>),
    /// A reload was applied (`Control::Reload`).
    Reloaded(Box<ReloadSummary>),
    /// A reload found the file invalid or unreadable; nothing changed.
    Invalid(String),
    /// The request asks for what cannot be (a scale below 0 instances).
    Bad(String),
}

/// What a configuration reload changed. Names are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    /// The file read.
    pub source: String,
    /// New processes and jobs: started in dependency order (or created
    /// stopped, per `initial_state`).
    pub added: Vec<String>,
    /// Gone from the file or disabled: stopped (dependents first), then
    /// forgotten.
    pub removed: Vec<String>,
    /// Definition changed: stopped and started again with the new one (a
    /// process stopped on request takes it and stays stopped).
    pub changed: Vec<String>,
    /// Only `scale`/`max_scale` changed: scaled in place.
    pub scaled: Vec<String>,
    /// Only `heartbeat` changed: the pings follow the new settings at
    /// once, the process runs on.
    pub updated: Vec<String>,
    /// Left as they are.
    pub unchanged: Vec<String>,
    /// Changed keys that take effect only when sheepdog restarts
    /// (`global.api_port`).
    pub needs_restart: Vec<String>,
    /// Changes refused for now, with why (`web is being restarted, replaced
    /// or removed; scale it afterwards; reload again later`): the next
    /// reload tries again.
    pub not_applied: Vec<String>,
}

impl std::fmt::Display for ReloadSummary {
    /// `reloaded FILE: added a; changed b; 3 unchanged`, for
    /// the log and the API's `message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reloaded {}:", self.source)?;
        let mut sep = " ";
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
            ("scaled", &self.scaled),
            ("updated", &self.updated),
        ] {
            if !names.is_empty() {
                write!(f, "{sep}{what} {}", names.join(", "))?;
                sep = "; ";
            }
        }
        if sep == " " {
            write!(f, " no process changed")?;
        } else if !self.unchanged.is_empty() {
            write!(f, "; {} unchanged", self.unchanged.len())?;
        }
        if !self.not_applied.is_empty() {
            write!(f, "; not applied: {}", self.not_applied.join("; "))?;
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; only a restart of sheepdog applies {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A control request with its reply channel.
#[derive(Debug)]
pub struct Request {
    pub control: Control,
    pub reply: Sender<ControlReply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_serve_as_an_object_in_name_order() {
        let mut c = Counts::default();
        for name in ["start", "exit", "manual", "exit"] {
            c.bump(name);
        }
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"exit":2,"manual":1,"start":1}"#
        );
    }
}
