//! Configuration keys beyond the core supervisor (health checks, logging,
//! hooks, scheduling, heartbeats, readiness file, …). All are parsed and
//! validated at load, and acted on by their own modules (heartbeats:
//! `heartbeat.rs`).
//!
//! Invariants (established by `config::load`): every duration here is
//! already defaulted; every enabled optional block is `Some` and a disabled
//! one (`enabled: false`) is `None`; thresholds and counts are >= 1 where a
//! zero would be meaningless; schedules passed `cron::parse`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{Hooks, LogLevel};

/// `global:` keys owned by later issues.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalExtra {
    /// `readiness_file: PATH` or the seed `readiness:` block. None = no file.
    pub readiness: Option<Readiness>,
    /// Also write sheepdog's own log lines to this file (rotated at 10 MiB,
    /// 5 kept).
    pub log_file: Option<PathBuf>,
    /// Records of recent output kept per instance and stream for the logs
    /// API (1000; 0 keeps none).
    pub log_buffer_lines: usize,
    /// Upper bound for any process's `scale` (100).
    pub max_process_scale: u32,
    /// Runs remembered per scheduled job (100).
    pub schedule_history_size: u32,
    /// Oneshot runs remembered (5000).
    pub oneshot_history_max_entries: u32,
    /// Oneshot runs older than this are forgotten (24h).
    pub oneshot_history_max_age: Duration,
    /// How long a spawned child may take to reach exec (30s): one still
    /// short of it then (a working_dir or program on a hung mount) is
    /// killed, and its start has failed.
    pub process_start_timeout: Duration,
}

impl Default for GlobalExtra {
    fn default() -> Self {
        GlobalExtra {
            readiness: None,
            log_file: None,
            log_buffer_lines: 1000,
            max_process_scale: 100,
            schedule_history_size: 100,
            oneshot_history_max_entries: 5000,
            oneshot_history_max_age: Duration::from_secs(24 * 3600),
            process_start_timeout: Duration::from_secs(30),
        }
    }
}

/// A file that exists exactly while the tracked processes are ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub path: PathBuf,
    pub mode: ReadinessMode,
    /// File content; None = `ready\ntimestamp=<unix>\n`.
    pub content: Option<String>,
    /// Tracked processes; empty = every enabled longrun, unscheduled process.
    pub processes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadinessMode {
    AllHealthy,
    AllRunning,
}

/// Per-process keys owned by later issues.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessExtra {
    pub health_check: Option<HealthCheck>,
    /// TCP ports the process listens on (waited for after start).
    pub ports: Vec<u16>,
    /// How long to wait for `ports` to accept connections (10s).
    pub port_wait: Duration,
    pub logging: Logging,
    /// Set when the process is a scheduled job.
    pub schedule: Option<Schedule>,
    pub heartbeat: Option<Heartbeat>,
    /// Per-process lifecycle hooks.
    pub hooks: Hooks,
}

impl Default for ProcessExtra {
    fn default() -> Self {
        ProcessExtra {
            health_check: None,
            ports: Vec::new(),
            port_wait: Duration::from_secs(10),
            logging: Logging::default(),
            schedule: None,
            heartbeat: None,
            hooks: Hooks::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Before the first probe (5s).
    pub initial_delay: Duration,
    /// Between probes (10s; > 0).
    pub period: Duration,
    /// Per probe (3s; > 0).
    pub timeout: Duration,
    /// Consecutive failures before unhealthy (3; >= 1).
    pub failure_threshold: u32,
    /// Consecutive successes before healthy again (1; >= 1).
    pub success_threshold: u32,
    pub mode: HealthMode,
    /// Longest time to first success after a start; None = no limit.
    pub startup_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect to `host:port`.
    Tcp { address: String },
    /// GET `url`; success when the status is in one of the ranges.
    Http {
        url: String,
        expected_status: Vec<(u16, u16)>,
        /// Follow up to 5 redirects (false: a 3xx is judged as it is).
        follow_redirects: bool,
    },
    /// Run argv; success on exit 0.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    Liveness,
    Readiness,
    Both,
}

/// What happens to one output stream of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Read, frame and log every line (true; the default).
    Log,
    /// Send to /dev/null (false).
    Discard,
    /// Let the child write to sheepdog's own stdout/stderr directly ("inherit").
    Inherit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    pub stdout: StreamMode,
    pub stderr: StreamMode,
    pub labels: BTreeMap<String, String>,
    /// Lines below this level are dropped; None = keep all.
    pub min_level: Option<LogLevel>,
    pub multiline: Option<Multiline>,
    /// Enabled redaction patterns, in order.
    pub redaction: Vec<RedactionPattern>,
    pub json: Option<JsonLogging>,
    pub level_detection: Option<LevelDetection>,
    /// Regexes (compiled once at load to check them); empty = no filtering.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub file: Option<LogFile>,
    /// Lines longer than this are cut into pieces marked as continued (64 KiB).
    pub max_line_bytes: usize,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            stdout: StreamMode::Log,
            stderr: StreamMode::Log,
            labels: BTreeMap::new(),
            min_level: None,
            multiline: None,
            redaction: Vec::new(),
            json: None,
            level_detection: None,
            include: Vec::new(),
            exclude: Vec::new(),
            file: None,
            max_line_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Multiline {
    /// Regex matching the first line of an entry (checked at load).
    pub pattern: String,
    /// 100.
    pub max_lines: u32,
    /// Flush a pending entry after this long without a new line (1s).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionPattern {
    pub name: String,
    pub pattern: String,
    /// "***".
    pub replacement: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLogging {
    /// Only treat lines starting with `{` as JSON (false).
    pub detect_auto: bool,
    /// true.
    pub extract_level: bool,
    /// true.
    pub extract_message: bool,
    /// false.
    pub merge_fields: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LevelDetection {
    /// level → regex.
    pub patterns: BTreeMap<LogLevel, String>,
    /// info.
    pub default_level: LogLevel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// Rotate at this many bytes (10 MiB).
    pub max_size: u64,
    /// Rotated files kept (5).
    pub max_files: u32,
    /// Also log to stdout (true).
    pub stdout_too: bool,
}

/// A scheduled job.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    /// The expression as written.
    pub expression: String,
    pub timezone: Timezone,
    /// Kill a run after this long; None = no limit.
    pub timeout: Option<Duration>,
    /// Concurrent runs allowed (1; 0 = unlimited).
    pub max_concurrent: u32,
    /// Random delay up to this before each run (0).
    pub jitter: Duration,
    /// After a forward clock step skipped runs, run once (false).
    pub catch_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleSpec {
    /// Five whitespace-separated cron fields (descriptors already expanded).
    Cron(String),
    /// `@every <duration>` (> 0).
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timezone {
    Utc,
    Local,
    /// An IANA name such as `Europe/Amsterdam` (found in the system
    /// zoneinfo at load).
    Named(String),
}

/// Dead-man's-switch pings around scheduled runs (or on `interval`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub url: Option<String>,
    pub success_url: Option<String>,
    pub failure_url: Option<String>,
    pub start_url: Option<String>,
    /// Ping `start_url` (or `url` + "/start") when a run begins (false; a
    /// `start_url` implies it).
    pub ping_start: bool,
    /// GET, HEAD or POST (POST).
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// Per request (10s).
    pub timeout: Duration,
    /// Extra attempts (3).
    pub retries: u32,
    /// Between attempts (5s).
    pub retry_delay: Duration,
    /// For longruns: ping `url` this often while running; None = only
    /// around scheduled runs.
    pub interval: Option<Duration>,
}
