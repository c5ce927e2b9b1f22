//! The YAML document's blocks: the single list of valid keys.
//!
//! Every leaf is an untyped `Option<Value>` (absent and `null` are both
//! `None`); `validate` types each leaf itself so that it can collect every
//! problem with its key path instead of stopping at the first error.
//!
//! `blocks!` writes each block once and derives from it the struct, its key
//! table (`SHAPE`, what the unknown-key check and environment overrides
//! walk) and `take`, which moves a YAML map's values into the fields. So
//! adding a key here is all it takes for every stage to know it.
//!
//! This replaces serde's derive, which cost about 100 KiB of the static
//! binary for what is, here, moving values into fields by name (every
//! field is a `Value` or a block of them).
//!
//! Invariant: `take` cannot fail. It runs after `keys::check`, which has
//! reported and pruned every unknown key and mis-shaped block; whatever
//! still does not fit (nothing, after that check) is ignored.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use crate::btree;

use super::shape::Shape;

/// Defines blocks. Each field is `name: kind` or `name as "key": kind`,
/// where kind is one of:
///
/// | kind       | field type                             | shape              |
/// |------------|----------------------------------------|--------------------|
/// | `leaf`     | `Option<Value>`                        | a leaf             |
/// | `map`      | `Option<BTreeMap<String, Value>>`      | free keys → leaves |
/// | `block(T)` | `Option<T>`                            | `T`'s keys         |
/// | `list(T)`  | `Option<Vec<T>>`                       | a list of `T`      |
/// | `named(T)` | `Option<BTreeMap<String, Box<T>>>`     | free keys → `T`    |
macro_rules! blocks {
    ($(
        $(#[$attr:meta])*
        $name:ident {
            $( $(#[$fattr:meta])* $field:ident $(as $key:literal)? : $kind:ident $(($inner:ident))? ),* $(,)?
        }
    )*) => {$(
        $(#[$attr])*
        #[derive(Debug, Default)]
        pub struct $name {
            $( $(#[$fattr])* pub $field: kind!(type $kind $($inner)?), )*
        }

        impl $name {
            /// This block's keys, in declaration order.
            pub const SHAPE: Shape = Shape::Struct(&[
                $( (key!($field $($key)?), kind!(shape $kind $($inner)?)), )*
            ]);

            /// The block from its YAML node (see the module's invariant).
            pub fn take(node: Value) -> Self {
                let mut out = Self::default();
                for (key, value) in entries(node) {
                    match key.as_str() {
                        $( key!($field $($key)?) => out.$field = kind!(take $kind $($inner)?, value), )*
                        _ => {}
                    }
                }
                out
            }
        }
    )*};
}

/// A field's key: its name, or the `as "key"` given.
macro_rules! key {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}

/// A field kind's type, shape, and how a node becomes its value.
macro_rules! kind {
    (type leaf) => { Option<Value> };
    (type map) => { Option<BTreeMap<String, Value>> };
    (type block $t:ident) => { Option<$t> };
    (type list $t:ident) => { Option<Vec<$t>> };
    (type named $t:ident) => { Option<BTreeMap<String, Box<$t>>> };
    (shape leaf) => { Shape::Leaf };
    (shape map) => { Shape::Map(&Shape::Leaf) };
    (shape block $t:ident) => { $t::SHAPE };
    (shape list $t:ident) => { Shape::Seq(&$t::SHAPE) };
    (shape named $t:ident) => { Shape::Map(&$t::SHAPE) };
    (take leaf, $v:expr) => { present($v) };
    (take map, $v:expr) => { present($v).map(|v| btree::collect(entries(v))) };
    (take block $t:ident, $v:expr) => { present($v).map($t::take) };
    (take list $t:ident, $v:expr) => { list($v, $t::take) };
    (take named $t:ident, $v:expr) => {
        present($v).map(|v| btree::collect(entries(v).map(|(k, v)| (k, Box::new($t::take(v))))))
    };
}

/// An untyped leaf.
pub type V = Option<Value>;

/// `None` for `null`: a leaf that is `null` counts as absent.
fn present(value: Value) -> Option<Value> {
    (!value.is_null()).then_some(value)
}

/// The string-keyed entries of a map node (nothing for any other node).
fn entries(node: Value) -> impl Iterator<Item = (String, Value)> {
    let map = match node {
        Value::Mapping(map) => map,
        _ => Mapping::new(),
    };
    map.into_iter().filter_map(|(k, v)| match k {
        Value::String(k) => Some((k, v)),
        _ => None,
    })
}

/// A list node's items, each made a `T`.
fn list<T>(node: Value, take: fn(Value) -> T) -> Option<Vec<T>> {
    match node {
        Value::Sequence(items) => Some(items.into_iter().map(take).collect()),
        _ => None,
    }
}

blocks! {
    RawConfig {
        version: leaf,
        global: block(RawGlobal),
        hooks: block(RawHooks),
        /// Boxed: a `RawProcess` is 6.6 KB, and a B-tree shifts its values on
        /// every insert (and allocates 73 KB leaves). With the values boxed,
        /// checking 200 processes went from 10.7 to 6.4 ms (`perf stat sheepdog
        /// check`), 50 from 4.2 to 3.9 ms.
        processes: named(RawProcess),
    }

    // The tracing_* fields other than tracing_enabled are accepted, never read.
    #[allow(dead_code)]
    RawGlobal {
        shutdown_timeout: leaf,
        log_format: leaf,
        log_level: leaf,
        restart_policy: leaf,
        max_restart_attempts: leaf,
        restart_backoff_initial: leaf,
        restart_backoff_max: leaf,
        restart_reset_after: leaf,
        /// Seed legacy: integer seconds; seeds initial = v and max = 12v.
        restart_backoff: leaf,
        dependency_timeout: leaf,

        api_enabled: leaf,
        api_port: leaf,
        api_listen: leaf,
        api_socket: leaf,
        api_auth: leaf,
        api_auth_file: leaf,
        api_insecure: leaf,
        api_max_request_body: leaf,
        api_rate_limit: leaf,
        api_rate_burst: leaf,

        metrics_enabled: leaf,
        metrics_port: leaf,
        metrics_path: leaf,
        metrics_listen: leaf,

        // Keys owned by later issues (GlobalExtra).
        readiness_file: leaf,
        readiness: block(RawReadiness),
        log_file: leaf,
        log_buffer_lines: leaf,
        max_process_scale: leaf,
        schedule_history_size: leaf,
        oneshot_history_max_entries: leaf,
        oneshot_history_max_age: leaf,
        process_start_timeout: leaf,

        // Seed keys accepted with a warning: they do nothing here.
        health_check_interval: leaf,
        zombie_reap_interval: leaf,
        log_timestamps: leaf,
        process_stop_timeout: leaf,
        resource_metrics_enabled: leaf,
        resource_metrics_interval: leaf,
        resource_metrics_max_samples: leaf,
        audit_enabled: leaf,
        health_check_strict: leaf,
        autotune_memory_threshold: leaf,

        // Seed features sheepdog does not build: accepted only while disabled.
        api_tls: block(RawTls),
        metrics_tls: block(RawTls),
        api_acl: block(RawAcl),
        metrics_acl: block(RawAcl),
        tracing_enabled: leaf,
        tracing_exporter: leaf,
        tracing_endpoint: leaf,
        tracing_sample_rate: leaf,
        tracing_service_name: leaf,
        tracing_use_tls: leaf,
    }

    /// Seed TLS block (not supported; accepted when disabled, only `enabled` read).
    #[allow(dead_code)]
    RawTls {
        enabled: leaf,
        cert_file: leaf,
        key_file: leaf,
        ca_file: leaf,
        client_auth: leaf,
        min_version: leaf,
        cipher_suites: leaf,
        auto_reload: leaf,
        auto_reload_interval: leaf,
    }

    /// Seed ACL block (not supported; accepted when disabled, only `enabled` read).
    #[allow(dead_code)]
    RawAcl {
        enabled: leaf,
        mode: leaf,
        allow_list: leaf,
        deny_list: leaf,
        trust_proxy: leaf,
    }

    /// Seed readiness-file block.
    RawReadiness {
        enabled: leaf,
        path: leaf,
        mode: leaf,
        content: leaf,
        processes: leaf,
    }

    /// Hook lists, in our spelling and the seed's hyphenated one.
    RawHooks {
        pre_start: list(RawHook),
        post_start: list(RawHook),
        pre_stop: list(RawHook),
        post_stop: list(RawHook),
        pre_start_seed as "pre-start": list(RawHook),
        post_start_seed as "post-start": list(RawHook),
        pre_stop_seed as "pre-stop": list(RawHook),
        post_stop_seed as "post-stop": list(RawHook),
    }

    RawHook {
        name: leaf,
        command: leaf,
        timeout: leaf,
        retry: leaf,
        retry_delay: leaf,
        continue_on_error: leaf,
        env: map,
        working_dir: leaf,
        user: leaf,
        group: leaf,
    }

    RawProcess {
        command: leaf,
        enabled: leaf,
        kind as "type": leaf,
        initial_state: leaf,
        scale: leaf,
        max_scale: leaf,
        depends_on: leaf,
        restart: leaf,
        /// Per-process overrides of the global restart tuning.
        max_restart_attempts: leaf,
        restart_backoff_initial: leaf,
        restart_backoff_max: leaf,
        restart_reset_after: leaf,
        working_dir: leaf,
        env: map,
        user: leaf,
        group: leaf,
        shutdown: block(RawShutdown),
        critical: leaf,
        /// Seed legacy shorthand for `logging.stdout`.
        stdout: leaf,
        /// Seed legacy shorthand for `logging.stderr`.
        stderr: leaf,

        // Keys owned by later issues (ProcessExtra).
        health_check: block(RawHealthCheck),
        ports: leaf,
        port_wait: leaf,
        logging: block(RawLogging),
        schedule: leaf,
        schedule_timezone: leaf,
        schedule_timeout: leaf,
        schedule_max_concurrent: leaf,
        schedule_jitter: leaf,
        schedule_catch_up: leaf,
        heartbeat: block(RawHeartbeat),
        hooks: block(RawHooks),
    }

    RawShutdown {
        signal: leaf,
        timeout: leaf,
        kill_signal: leaf,
        pre_stop_hook: block(RawHook),
        /// Seed key with no effect; accepted with a warning.
        graceful: leaf,
    }

    RawHealthCheck {
        kind as "type": leaf,
        address: leaf,
        url: leaf,
        command: leaf,
        expected_status: leaf,
        follow_redirects: leaf,
        initial_delay: leaf,
        period: leaf,
        timeout: leaf,
        failure_threshold: leaf,
        success_threshold: leaf,
        mode: leaf,
        startup_timeout: leaf,
    }

    RawLogging {
        stdout: leaf,
        stderr: leaf,
        labels: map,
        min_level: leaf,
        multiline: block(RawMultiline),
        redaction: block(RawRedaction),
        json: block(RawJsonLogging),
        level_detection: block(RawLevelDetection),
        filters: block(RawFilters),
        file: block(RawLogFile),
        max_line_bytes: leaf,
    }

    RawMultiline {
        enabled: leaf,
        pattern: leaf,
        max_lines: leaf,
        timeout: leaf,
    }

    RawRedaction {
        enabled: leaf,
        patterns: list(RawRedactionPattern),
    }

    RawRedactionPattern {
        name: leaf,
        pattern: leaf,
        replacement: leaf,
    }

    RawJsonLogging {
        enabled: leaf,
        detect_auto: leaf,
        extract_level: leaf,
        extract_message: leaf,
        merge_fields: leaf,
    }

    RawLevelDetection {
        enabled: leaf,
        patterns: map,
        default_level: leaf,
    }

    RawFilters {
        include: leaf,
        exclude: leaf,
    }

    RawLogFile {
        path: leaf,
        max_size: leaf,
        max_files: leaf,
        stdout_too: leaf,
    }

    RawHeartbeat {
        enabled: leaf,
        url: leaf,
        success_url: leaf,
        failure_url: leaf,
        start_url: leaf,
        ping_start: leaf,
        method: leaf,
        headers: map,
        timeout: leaf,
        retries: leaf,
        /// Seed v1.0 spelling of `retries`.
        retry_count: leaf,
        retry_delay: leaf,
        interval: leaf,
        /// Seed HEAD key with no effect; accepted with a warning.
        grace: leaf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str) -> RawConfig {
        RawConfig::take(serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn a_full_document_decodes() {
        let raw = take(
            "
version: '1.0'
global: {shutdown_timeout: 5, api_tls: {enabled: false}, log_level: null}
hooks: {pre-start: [{name: a, command: [x]}], post_stop: [{name: c}]}
processes:
  web:
    type: oneshot
    command: [x]
    env: {A: '1', B: null}
    shutdown: {pre_stop_hook: {name: b, command: y}}
    logging: {redaction: {patterns: [{name: n, pattern: p}]}}
  worker: null
",
        );
        assert_eq!(raw.version, Some(Value::from("1.0")));
        let global = raw.global.unwrap();
        assert_eq!(global.shutdown_timeout, Some(Value::from(5)));
        assert_eq!(global.log_level, None, "null is absent");
        assert!(global.api_tls.unwrap().enabled == Some(Value::Bool(false)));
        let hooks = raw.hooks.unwrap();
        assert_eq!(
            hooks.pre_start_seed.unwrap()[0].name,
            Some(Value::from("a"))
        );
        assert_eq!(hooks.post_stop.unwrap().len(), 1);
        assert!(hooks.pre_start.is_none());
        let processes = raw.processes.unwrap();
        let web = &processes["web"];
        assert_eq!(web.kind, Some(Value::from("oneshot")));
        let env = web.env.as_ref().unwrap();
        assert_eq!((env["A"].as_str(), env["B"].is_null()), (Some("1"), true));
        let stop_hook = web
            .shutdown
            .as_ref()
            .unwrap()
            .pre_stop_hook
            .as_ref()
            .unwrap();
        assert_eq!(stop_hook.command, Some(Value::from("y")));
        let redaction = web.logging.as_ref().unwrap().redaction.as_ref().unwrap();
        assert_eq!(
            redaction.patterns.as_ref().unwrap()[0].pattern,
            Some(Value::from("p"))
        );
        assert!(
            processes["worker"].command.is_none(),
            "a null block is all absent"
        );
    }

    #[test]
    fn what_does_not_fit_is_ignored_never_a_panic() {
        // keys::check reports these first; take must still cope.
        let raw = take(
            "global: [1, 2]
hooks: {pre_start: {name: x}, 7: y}
nope: 1
processes: {web: {comand: x}}
",
        );
        assert!(raw.global.unwrap().shutdown_timeout.is_none());
        assert!(raw.hooks.unwrap().pre_start.is_none());
        assert!(raw.processes.unwrap()["web"].command.is_none());
        assert!(take("just a string").processes.is_none());
    }

    #[test]
    fn the_shapes_follow_the_definitions() {
        assert_eq!(
            RawShutdown::SHAPE.field("pre_stop_hook"),
            Some(&RawHook::SHAPE)
        );
        assert_eq!(RawProcess::SHAPE.field("type"), Some(&Shape::Leaf));
        assert_eq!(RawProcess::SHAPE.field("kind"), None);
        assert_eq!(
            RawProcess::SHAPE.field("env"),
            Some(&Shape::Map(&Shape::Leaf))
        );
        assert_eq!(
            RawHooks::SHAPE.field("pre-start"),
            Some(&Shape::Seq(&RawHook::SHAPE))
        );
        assert_eq!(
            RawConfig::SHAPE.field("processes"),
            Some(&Shape::Map(&RawProcess::SHAPE))
        );
    }
}
