//! The resolved configuration: plain, typed, validated data that the rest of
//! sheepdog reads. Nothing here parses or does I/O.
//!
//! Invariants (established by `config::load`, relied upon everywhere else):
//! - every process has a non-empty `command` (argv; a YAML string became
//!   `["/bin/sh", "-c", s]`);
//! - per-process values that fall back to `global` (restart policy, attempts,
//!   backoff) are already resolved here, so readers never consult `global`
//!   for them;
//! - `depends_on` names only defined processes other than the process
//!   itself, at most once each; for an *enabled* process, only enabled,
//!   unscheduled ones (a disabled process may depend on a disabled one);
//!   cycles are found by `plan`;
//! - `scale >= 1` for longruns, `scale == 1` for oneshots, `scale <= max_scale`
//!   when `max_scale` is set;
//! - `user`/`group` were resolved to numeric ids at load time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The whole configuration after loading, substitution, overrides and validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Informational `version` key (default "1.0").
    pub version: String,
    pub global: Global,
    /// Global lifecycle hooks. Parsed and validated; run by the hooks issue.
    pub hooks: Hooks,
    /// Every process defined, enabled or not, by name (sorted for determinism).
    pub processes: BTreeMap<String, Process>,
    /// The file the configuration came from, if any.
    pub source: Option<PathBuf>,
    /// Non-fatal findings (deprecated or ignored seed keys, risky values),
    /// each naming its key path. `check` prints them; `run` logs them.
    pub warnings: Vec<String>,
}

impl Config {
    /// Enabled processes in name order.
    pub fn enabled(&self) -> impl Iterator<Item = &Process> {
        self.processes.values().filter(|p| p.enabled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessType {
    Longrun,
    Oneshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    Running,
    Stopped,
}

/// `global:` after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Hard deadline for the whole shutdown (default 30s).
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// Default for processes without `restart` (default always).
    pub restart_policy: RestartPolicy,
    /// 0 = unlimited (default 0).
    pub max_restart_attempts: u32,
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// A run longer than this resets the attempt counter and backoff (default 60s).
    pub restart_reset_after: Duration,
    /// How long a dependent waits for a dependency (default 5m). Used from the health issue on.
    pub dependency_timeout: Duration,
    /// HTTP API settings.
    pub api: Api,
    /// Prometheus settings.
    pub metrics: Metrics,
    /// Everything else `global:` may hold that later issues own, kept typed.
    pub extra: GlobalExtra,
}

/// Management API settings (seed keys + new ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub enabled: bool,
    pub port: u16,
    pub listen: String,
    pub socket: Option<PathBuf>,
    pub auth: Option<String>,
    pub auth_file: Option<PathBuf>,
    pub insecure: bool,
    pub max_request_body: u64,
    /// Requests per second each peer may make on average (token bucket
    /// refill); 0 turns rate limiting off. Applies to the metrics port too.
    pub rate_limit: u32,
    /// Requests a peer may make in a burst (bucket size).
    pub rate_burst: u32,
}

/// Metrics settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub enabled: bool,
    pub port: u16,
    pub path: String,
    pub listen: String,
}

/// A process definition after defaults and validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub name: String,
    pub enabled: bool,
    pub kind: ProcessType,
    pub initial_state: InitialState,
    /// argv; never empty.
    pub command: Vec<String>,
    pub scale: u32,
    /// None = no limit.
    pub max_scale: Option<u32>,
    pub depends_on: Vec<Dependency>,
    pub restart: RestartPolicy,
    /// 0 = unlimited.
    pub max_restart_attempts: u32,
    pub backoff: Backoff,
    pub working_dir: Option<PathBuf>,
    /// Extra environment for the child (on top of sheepdog's own).
    pub env: BTreeMap<String, String>,
    /// Resolved credentials; None = run as sheepdog's own user.
    pub credentials: Option<Credentials>,
    pub shutdown: Shutdown,
    /// A permanent failure of this process stops sheepdog with exit 1.
    pub critical: bool,
    /// Keys owned by later issues, parsed and validated now.
    pub extra: ProcessExtra,
}

impl Process {
    /// Whether health decides this process's readiness: a check in mode
    /// readiness or both, or declared ports alone (checked for listening).
    pub fn has_readiness_check(&self) -> bool {
        match &self.extra.health_check {
            Some(hc) => hc.mode != super::extra::HealthMode::Liveness,
            None => !self.extra.ports.is_empty(),
        }
    }
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// None = the list form: the default condition for the dependency's kind.
    pub condition: Option<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Started,
    Healthy,
    Completed,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// Numeric credentials resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// What the user wrote, for messages.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's groups from /etc/group, or empty).
    pub groups: Vec<u32>,
    /// The user's passwd entry (name, home), when `user` names one: the
    /// child gets `USER`, `LOGNAME` and `HOME` from it, as `su -`, `runuser`
    /// and Docker's `USER` give them, unless its `env` sets them.
    pub login: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shutdown {
    /// Sent to the process group first (default SIGTERM).
    pub signal: Signal,
    /// Grace period before `kill_signal` (default 30s).
    pub timeout: Duration,
    /// Sent to the process group at the timeout (default SIGKILL).
    pub kill_signal: Signal,
    /// Seed `shutdown.pre_stop_hook` (run by the hooks issue).
    pub pre_stop_hook: Option<Hook>,
}

/// A hook object (global `hooks` lists, `shutdown.pre_stop_hook`, per-process `hooks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub name: String,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub retry: u32,
    pub retry_delay: Duration,
    pub continue_on_error: bool,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    pub credentials: Option<Credentials>,
}

/// Global or per-process hook lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hooks {
    pub pre_start: Vec<Hook>,
    pub post_start: Vec<Hook>,
    pub pre_stop: Vec<Hook>,
    pub post_stop: Vec<Hook>,
}

pub use super::extra::{GlobalExtra, ProcessExtra};

/// `30s`, `1m30s`, `500ms`, `1h`, `2s250ms`, `1.5ms`; `0s` for zero.
/// Round-trips through the config duration syntax exactly, so a plan or
/// message shows the value the config gave (a `1.5ms` is not a `1ms`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let total_ms = d.as_millis();
    let h = total_ms / 3_600_000;
    let m = total_ms / 60_000 % 60;
    let s = total_ms / 1000 % 60;
    let ms = total_ms % 1000;
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    let sub_ms = d.subsec_nanos() % 1_000_000;
    if sub_ms > 0 {
        let frac = format!("{sub_ms:06}");
        out.push_str(&format!("{ms}.{}ms", frac.trim_end_matches('0')));
    } else if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// A measured time (how long a run took, an uptime) to the millisecond:
/// `2s345ms`, not the nanoseconds [`format_duration`] would keep.
pub fn format_elapsed(d: Duration) -> String {
    format_duration(Duration::from_millis(d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(format_duration(Duration::from_millis(5_400_000)), "1h30m");
        assert_eq!(
            format_duration(Duration::from_millis(3_661_001)),
            "1h1m1s1ms"
        );
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "0.000001ms");
        assert_eq!(
            format_duration(Duration::from_micros(61_000_250)),
            "1m1s0.25ms"
        );
        assert_eq!(format_elapsed(Duration::from_micros(2_345_678)), "2s345ms");
    }

    #[test]
    fn formatted_durations_parse_back_to_the_same_value() {
        for nanos in [
            1,
            999,
            1_500_000,
            250_000_001,
            61_000_250_000,
            3_600_000_000_001,
        ] {
            let d = Duration::from_nanos(nanos);
            let shown = format_duration(d);
            assert_eq!(
                super::super::value::parse_duration(&shown),
                Ok(d),
                "{shown}"
            );
        }
    }
}
