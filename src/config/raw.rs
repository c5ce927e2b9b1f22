//! The YAML document as serde types: the single list of valid keys.
//!
//! Every leaf is an untyped `Option<Value>` (absent and `null` are both
//! `None`); `validate` types each leaf itself so that it can collect every
//! problem with its key path instead of stopping at serde's first error.
//! Blocks are nested structs with `deny_unknown_fields`. The unknown-key
//! check and environment overrides use `shape::CONFIG`, a constant copy of
//! these field lists; after adding a key here, the test
//! `the_table_is_the_raw_types` fails and prints the new table to paste.
//!
//! Invariant: only `Option<Value>`, `Option<RawX>`, `Option<Vec<RawX>>` and
//! `Option<BTreeMap<String, _>>` fields (checked by `shape` tests).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

/// An untyped leaf.
pub type V = Option<Value>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: V,
    pub global: Option<RawGlobal>,
    pub hooks: Option<RawHooks>,
    /// Boxed: a `RawProcess` is 6.6 KB, and a B-tree shifts its values on
    /// every insert (and allocates 73 KB leaves). With the values boxed,
    /// checking 200 processes went from 10.7 to 6.4 ms (`perf stat sheepdog
    /// check`), 50 from 4.2 to 3.9 ms.
    pub processes: Option<BTreeMap<String, Box<RawProcess>>>,
}

// The tracing_* fields other than tracing_enabled are accepted, never read.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub shutdown_timeout: V,
    pub log_format: V,
    pub log_level: V,
    pub restart_policy: V,
    pub max_restart_attempts: V,
    pub restart_backoff_initial: V,
    pub restart_backoff_max: V,
    pub restart_reset_after: V,
    /// Seed legacy: integer seconds; seeds initial = v and max = 12v.
    pub restart_backoff: V,
    pub dependency_timeout: V,

    pub api_enabled: V,
    pub api_port: V,
    pub api_listen: V,
    pub api_socket: V,
    pub api_auth: V,
    pub api_auth_file: V,
    pub api_insecure: V,
    pub api_max_request_body: V,
    pub api_rate_limit: V,
    pub api_rate_burst: V,

    pub metrics_enabled: V,
    pub metrics_port: V,
    pub metrics_path: V,
    pub metrics_listen: V,

    // Keys owned by later issues (GlobalExtra).
    pub readiness_file: V,
    pub readiness: Option<RawReadiness>,
    pub log_file: V,
    pub log_buffer_lines: V,
    pub max_process_scale: V,
    pub schedule_history_size: V,
    pub oneshot_history_max_entries: V,
    pub oneshot_history_max_age: V,

    // Seed keys accepted with a warning: they do nothing here.
    pub health_check_interval: V,
    pub zombie_reap_interval: V,
    pub log_timestamps: V,
    pub process_start_timeout: V,
    pub process_stop_timeout: V,
    pub resource_metrics_enabled: V,
    pub resource_metrics_interval: V,
    pub resource_metrics_max_samples: V,
    pub audit_enabled: V,
    pub health_check_strict: V,
    pub autotune_memory_threshold: V,

    // Seed features sheepdog does not build: accepted only while disabled.
    pub api_tls: Option<RawTls>,
    pub metrics_tls: Option<RawTls>,
    pub api_acl: Option<RawAcl>,
    pub metrics_acl: Option<RawAcl>,
    pub tracing_enabled: V,
    pub tracing_exporter: V,
    pub tracing_endpoint: V,
    pub tracing_sample_rate: V,
    pub tracing_service_name: V,
    pub tracing_use_tls: V,
}

/// Seed TLS block (not supported; accepted when disabled, only `enabled` read).
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: V,
    pub cert_file: V,
    pub key_file: V,
    pub ca_file: V,
    pub client_auth: V,
    pub min_version: V,
    pub cipher_suites: V,
    pub auto_reload: V,
    pub auto_reload_interval: V,
}

/// Seed ACL block (not supported; accepted when disabled, only `enabled` read).
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    pub enabled: V,
    pub mode: V,
    pub allow_list: V,
    pub deny_list: V,
    pub trust_proxy: V,
}

/// Seed readiness-file block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadiness {
    pub enabled: V,
    pub path: V,
    pub mode: V,
    pub content: V,
    pub processes: V,
}

/// Hook lists, in our spelling and the seed's hyphenated one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub pre_start: Option<Vec<RawHook>>,
    pub post_start: Option<Vec<RawHook>>,
    pub pre_stop: Option<Vec<RawHook>>,
    pub post_stop: Option<Vec<RawHook>>,
    #[serde(rename = "pre-start")]
    pub pre_start_seed: Option<Vec<RawHook>>,
    #[serde(rename = "post-start")]
    pub post_start_seed: Option<Vec<RawHook>>,
    #[serde(rename = "pre-stop")]
    pub pre_stop_seed: Option<Vec<RawHook>>,
    #[serde(rename = "post-stop")]
    pub post_stop_seed: Option<Vec<RawHook>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    pub name: V,
    pub command: V,
    pub timeout: V,
    pub retry: V,
    pub retry_delay: V,
    pub continue_on_error: V,
    pub env: Option<BTreeMap<String, Value>>,
    pub working_dir: V,
    pub user: V,
    pub group: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub command: V,
    pub enabled: V,
    #[serde(rename = "type")]
    pub kind: V,
    pub initial_state: V,
    pub scale: V,
    pub max_scale: V,
    pub depends_on: V,
    pub restart: V,
    /// Per-process overrides of the global restart tuning.
    pub max_restart_attempts: V,
    pub restart_backoff_initial: V,
    pub restart_backoff_max: V,
    pub restart_reset_after: V,
    pub working_dir: V,
    pub env: Option<BTreeMap<String, Value>>,
    pub user: V,
    pub group: V,
    pub shutdown: Option<RawShutdown>,
    pub critical: V,
    /// Seed legacy shorthand for `logging.stdout`.
    pub stdout: V,
    /// Seed legacy shorthand for `logging.stderr`.
    pub stderr: V,

    // Keys owned by later issues (ProcessExtra).
    pub health_check: Option<RawHealthCheck>,
    pub ports: V,
    pub port_wait: V,
    pub logging: Option<RawLogging>,
    pub schedule: V,
    pub schedule_timezone: V,
    pub schedule_timeout: V,
    pub schedule_max_concurrent: V,
    pub schedule_jitter: V,
    pub schedule_catch_up: V,
    pub heartbeat: Option<RawHeartbeat>,
    pub hooks: Option<RawHooks>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub signal: V,
    pub timeout: V,
    pub kill_signal: V,
    pub pre_stop_hook: Option<RawHook>,
    /// Seed key with no effect; accepted with a warning.
    pub graceful: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: V,
    pub address: V,
    pub url: V,
    pub command: V,
    pub expected_status: V,
    pub follow_redirects: V,
    pub initial_delay: V,
    pub period: V,
    pub timeout: V,
    pub failure_threshold: V,
    pub success_threshold: V,
    pub mode: V,
    pub startup_timeout: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub stdout: V,
    pub stderr: V,
    pub labels: Option<BTreeMap<String, Value>>,
    pub min_level: V,
    pub multiline: Option<RawMultiline>,
    pub redaction: Option<RawRedaction>,
    pub json: Option<RawJsonLogging>,
    pub level_detection: Option<RawLevelDetection>,
    pub filters: Option<RawFilters>,
    pub file: Option<RawLogFile>,
    pub max_line_bytes: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultiline {
    pub enabled: V,
    pub pattern: V,
    pub max_lines: V,
    pub timeout: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    pub enabled: V,
    pub patterns: Option<Vec<RawRedactionPattern>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedactionPattern {
    pub name: V,
    pub pattern: V,
    pub replacement: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonLogging {
    pub enabled: V,
    pub detect_auto: V,
    pub extract_level: V,
    pub extract_message: V,
    pub merge_fields: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevelDetection {
    pub enabled: V,
    pub patterns: Option<BTreeMap<String, Value>>,
    pub default_level: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilters {
    pub include: V,
    pub exclude: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogFile {
    pub path: V,
    pub max_size: V,
    pub max_files: V,
    pub stdout_too: V,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub enabled: V,
    pub url: V,
    pub success_url: V,
    pub failure_url: V,
    pub start_url: V,
    pub ping_start: V,
    pub method: V,
    pub headers: Option<BTreeMap<String, Value>>,
    pub timeout: V,
    pub retries: V,
    /// Seed v1.0 spelling of `retries`.
    pub retry_count: V,
    pub retry_delay: V,
    pub interval: V,
    /// Seed HEAD key with no effect; accepted with a warning.
    pub grace: V,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_full_document_decodes() {
        let text = "
version: '1.0'
global: {shutdown_timeout: 5, api_tls: {enabled: false}}
hooks: {pre-start: [{name: a, command: [x]}]}
processes:
  web:
    command: [x]
    shutdown: {pre_stop_hook: {name: b, command: y}}
    logging: {redaction: {patterns: [{name: n, pattern: p}]}}
";
        let raw: RawConfig = serde_yaml::from_str(text).unwrap();
        assert!(raw.processes.unwrap()["web"].shutdown.is_some());
        let err = serde_yaml::from_str::<RawConfig>("processes: {web: {comand: x}}");
        assert!(err.is_err());
    }
}
