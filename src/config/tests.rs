//! End-to-end tests of `load_from_str` / `discover` with an injected
//! environment: every rule of the configuration contract, and hostile input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::extra::{Probe, StreamMode};
use super::*;

fn no_env(_: &str) -> Result<Option<String>, String> {
    Ok(None)
}

fn load_env(
    text: &str,
    vars: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| Ok(vars.get(k).cloned());
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_from_str(text, Some(Path::new("test.yaml")), &lookup, &overrides)
}

fn ok(text: &str) -> Config {
    match load_from_str(text, None, &no_env, &[]) {
        Ok(c) => c,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match load_from_str(text, None, &no_env, &[]) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.problems,
    }
}

/// Exactly one problem, starting with `prefix`.
/// The key path each problem line starts with.
fn paths(problems: &[String]) -> Vec<&str> {
    problems
        .iter()
        .map(|p| p.split(':').next().unwrap_or(""))
        .collect()
}

fn one(text: &str, prefix: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    assert!(
        p[0].starts_with(prefix),
        "expected {prefix:?}, got {:?}",
        p[0]
    );
    p[0].clone()
}

const MIN: &str = "processes:\n  web:\n    command: [nginx]\n";

#[test]
fn minimal_config_gets_all_defaults() {
    let c = ok(MIN);
    assert_eq!(c.version, "1.0");
    assert_eq!(c.hooks, Hooks::default());
    assert!(c.warnings.is_empty());
    let w = &c.processes["web"];
    assert_eq!(w.name, "web");
    assert!(w.enabled);
    assert_eq!(w.kind, ProcessType::Longrun);
    assert_eq!(w.initial_state, InitialState::Running);
    assert_eq!(w.command, vec!["nginx"]);
    assert_eq!((w.scale, w.max_scale), (1, None));
    assert!(w.depends_on.is_empty());
    assert_eq!(w.restart, RestartPolicy::Always);
    assert_eq!(w.max_restart_attempts, 0);
    assert_eq!(
        w.backoff,
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60)
        }
    );
    assert_eq!(
        (
            w.working_dir.clone(),
            w.env.is_empty(),
            w.credentials.clone()
        ),
        (None, true, None)
    );
    assert_eq!(
        w.shutdown,
        Shutdown {
            signal: Signal::SIGTERM,
            timeout: Duration::from_secs(30),
            kill_signal: Signal::SIGKILL,
            pre_stop_hook: None
        }
    );
    assert!(!w.critical);
    assert_eq!(w.extra, ProcessExtra::default());
    assert_eq!(c.enabled().count(), 1);
}

#[test]
fn full_process() {
    let c = ok("
version: 2
global: {restart_policy: on-failure, max_restart_attempts: 4, restart_backoff_initial: 2s}
processes:
  db: {command: 'exec postgres', type: oneshot}
  web:
    enabled: yes
    command: [php-fpm, -F, 9]
    initial_state: stopped
    scale: 3
    max_scale: '5'
    depends_on: {db: {condition: completed_successfully}}
    working_dir: /srv
    env: {APP_ENV: prod, WORKERS: 4, DEBUG: false}
    user: root
    shutdown: {signal: QUIT, timeout: 1m, kill_signal: 9, pre_stop_hook: {name: drain, command: [drain]}}
    critical: true
");
    assert_eq!(c.version, "2");
    let db = &c.processes["db"];
    assert_eq!(db.command, vec!["/bin/sh", "-c", "exec postgres"]);
    assert_eq!(db.restart, RestartPolicy::Never);
    let w = &c.processes["web"];
    assert_eq!(w.command, vec!["php-fpm", "-F", "9"]);
    assert_eq!(w.initial_state, InitialState::Stopped);
    assert_eq!((w.scale, w.max_scale), (3, Some(5)));
    assert_eq!(
        w.depends_on,
        vec![Dependency {
            name: "db".into(),
            condition: Some(Condition::CompletedSuccessfully)
        }]
    );
    assert_eq!(w.restart, RestartPolicy::OnFailure);
    assert_eq!(w.max_restart_attempts, 4);
    assert_eq!(w.backoff.initial, Duration::from_secs(2));
    assert_eq!(w.working_dir, Some(PathBuf::from("/srv")));
    assert_eq!(w.env["WORKERS"], "4");
    assert_eq!(w.env["DEBUG"], "false");
    assert_eq!(w.credentials.as_ref().map(|c| (c.uid, c.gid)), Some((0, 0)));
    assert_eq!(w.shutdown.signal, Signal::SIGQUIT);
    assert_eq!(w.shutdown.timeout, Duration::from_secs(60));
    assert_eq!(w.shutdown.kill_signal, Signal::SIGKILL);
    assert_eq!(
        w.shutdown.pre_stop_hook.as_ref().map(|h| h.name.as_str()),
        Some("drain")
    );
    assert!(w.critical);
}

#[test]
fn error_lines_name_path_value_and_expectation() {
    one(
        "processes: {web: {command: x, restart: sometimes}}",
        "processes.web.restart: unknown value \"sometimes\"; expected one of always, on-failure, never",
    );
    one(
        "processes: {web: {command: x, scale: many}}",
        "processes.web.scale: invalid value \"many\"; expected an integer",
    );
    one(
        "processes: {web: {command: x, type: daemon}}",
        "processes.web.type: unknown value \"daemon\"; expected one of longrun, oneshot",
    );
    one(
        "processes: {web: {command: x, initial_state: up}}",
        "processes.web.initial_state: unknown value \"up\"",
    );
    one(
        "processes: {web: {command: x, shutdown: {signal: SIGFOO}}}",
        "processes.web.shutdown.signal: unknown signal \"SIGFOO\"",
    );
    one(
        "processes: {web: {command: x, shutdown: {timeout: soon}}}",
        "processes.web.shutdown.timeout: invalid duration \"soon\"",
    );
    one(
        "processes: {web: {command: x, shutdown: {timeout: -1}}}",
        "processes.web.shutdown.timeout: invalid duration -1",
    );
    one(
        "processes: {web: {command: x, enabled: maybe}}",
        "processes.web.enabled: invalid value \"maybe\"; expected a boolean",
    );
    one(
        "processes: {web: {command: x, env: [A=1]}}",
        "processes.web.env: expected a map, got a list",
    );
}

#[test]
fn all_problems_are_collected() {
    let p = problems(
        "
global: {log_level: loud, shutdown_timout: 5}
processes:
  web: {command: [], restart: sometimes, scale: 0}
  worker: {comand: x}
",
    );
    let joined = p.join("\n");
    for needle in [
        "global.log_level: unknown value \"loud\"",
        "global.shutdown_timout: unknown key; did you mean \"shutdown_timeout\"?",
        "processes.web.command: command is empty",
        "processes.web.restart: unknown value \"sometimes\"",
        "processes.web.scale: invalid value 0",
        "processes.worker.comand: unknown key; did you mean \"command\"?",
        "processes.worker.command: missing",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
    }
    assert_eq!(p.len(), 7, "{joined}");
}

#[test]
fn commands() {
    one(
        "processes: {web: {enabled: true}}",
        "processes.web.command: missing",
    );
    one(
        "processes: {web: {command: ''}}",
        "processes.web.command: command is empty",
    );
    one(
        "processes: {web: {command: '   '}}",
        "processes.web.command: command is empty",
    );
    one(
        "processes: {web: {command: {a: b}}}",
        "processes.web.command: expected a list of arguments or a shell command string, got a map",
    );
}

#[test]
fn process_names() {
    ok("processes: {a.b_c-1: {command: x}, 9lives: {command: x}}");
    one(
        "processes: {'-web': {command: x}}",
        "processes.-web: invalid process name \"-web\"",
    );
    one(
        "processes: {'my web': {command: x}}",
        "processes.\"my web\": invalid process name",
    );
    let long = "a".repeat(65);
    one(
        &format!("processes: {{{long}: {{command: x}}}}"),
        &format!("processes.{long}: invalid process name"),
    );
    one(
        "processes: {'wéb': {command: x}}",
        "processes.wéb: invalid process name",
    );
}

#[test]
fn a_key_that_is_not_a_name_is_not_also_missing_processes() {
    let p = problems("processes: {~: {command: x}}");
    assert_eq!(p, ["processes: key null is not a name; expected a string"]);
    one("processes: {}", "processes: missing; at least one process");
}

#[test]
fn a_dotted_name_is_one_path_segment() {
    // A bad `env` in `web` must not hide the problems of process
    // `web.env`, and each is named so that it reads as one name.
    let p = problems(
        "processes: {web: {command: x, env: 5}, web.env: {command: x, scale: -1, shutdown: {signal: NOPE}}}",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("processes.web.env: expected a map"),
        "{p:#?}"
    );
    assert!(p[1].starts_with("processes.\"web.env\".scale: "), "{p:#?}");
    assert!(
        p[2].starts_with("processes.\"web.env\".shutdown.signal: "),
        "{p:#?}"
    );
}

#[test]
fn process_count_and_enabled() {
    one(
        "version: '1.0'",
        "processes: missing; at least one process is required",
    );
    one("processes: {}", "processes: missing");
    one(
        "processes: {web: {command: x, enabled: false}}",
        "processes: every process is disabled",
    );
    let c = ok("processes: {web: {command: x}, off: {command: y, enabled: false}}");
    assert_eq!(
        c.enabled().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["web"]
    );
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn dependencies() {
    let c = ok("processes: {a: {command: x}, b: {command: x, depends_on: [a]}, c: {command: x, depends_on: 'a, b'}}");
    assert_eq!(c.processes["c"].depends_on.len(), 2);
    assert_eq!(c.processes["b"].depends_on[0].condition, None);
    one(
        "processes: {a: {command: x, depends_on: [b]}}",
        "processes.a.depends_on: unknown process \"b\"",
    );
    one(
        "processes: {php-fpm: {command: x}, nginx: {command: x, depends_on: [php-fmp]}}",
        "processes.nginx.depends_on: unknown process \"php-fmp\"; did you mean \"php-fpm\"?",
    );
    one(
        "processes: {a: {command: x, depends_on: [a]}}",
        "processes.a.depends_on: \"a\" depends on itself",
    );
    one(
        "processes: {a: {command: x}, b: {command: x, enabled: false}, c: {command: x, depends_on: [b]}}",
        "processes.c.depends_on: \"b\" is disabled",
    );
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: [a, a]}}",
        "processes.b.depends_on: \"a\" is listed twice",
    );
    // A disabled process may depend on another disabled one.
    ok("processes: {a: {command: x}, b: {command: x, enabled: false}, c: {command: x, enabled: false, depends_on: [b]}}");
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: {a: {condition: sometime}}}}",
        "processes.b.depends_on.a.condition: unknown value \"sometime\"; expected one of started, healthy, completed, completed_successfully",
    );
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: {a: {condition: completed}}}}",
        "processes.b.depends_on.a: condition completed needs a oneshot process",
    );
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: {a: {condition: healthy}}}}",
        "processes.b.depends_on.a: condition healthy needs a readiness check",
    );
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: {a: {conditon: healthy}}}}",
        "processes.b.depends_on.a.conditon: unknown key; did you mean \"condition\"?",
    );
    // Compose's spelling, in any case like every enum.
    one(
        "processes: {a: {command: x}, b: {command: x, depends_on: {a: {condition: HEALTY}}}}",
        "processes.b.depends_on.a.condition: unknown value \"HEALTY\"; expected one of started,",
    );
    let c = ok("processes:
  a: {command: x, health_check: {type: tcp, address: 'localhost:1'}}
  b: {command: x, depends_on: {a: {condition: service_healthy}}}
  c: {command: x, depends_on: {a: started, b: ~}}
  d: {command: x, depends_on: {a: {condition: SERVICE_STARTED}}}");
    assert_eq!(
        c.processes["b"].depends_on[0].condition,
        Some(Condition::Healthy)
    );
    assert_eq!(
        c.processes["d"].depends_on[0].condition,
        Some(Condition::Started)
    );
    assert_eq!(c.processes["c"].depends_on[1].condition, None);
    one(
        "processes: {a: {command: x, schedule: '@daily'}, b: {command: x, depends_on: [a]}}",
        "processes.b.depends_on: \"a\" is a scheduled job",
    );
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn oneshot_and_scheduled_rules() {
    one(
        "processes: {m: {command: x, type: oneshot, restart: always}}",
        "processes.m.restart: a oneshot process runs to completion, so \"always\" is not allowed; expected on-failure or never",
    );
    one(
        "processes: {m: {command: x, type: oneshot, scale: 2}}",
        "processes.m.scale: a oneshot process runs to completion, so scale must be 1",
    );
    let c = ok("processes: {m: {command: x, type: oneshot, restart: on-failure}}");
    assert_eq!(c.processes["m"].restart, RestartPolicy::OnFailure);
    one(
        "processes: {c: {command: x, schedule: '* * * * *', restart: always}}",
        "processes.c.restart: a scheduled job runs once per trigger, so \"always\" is not allowed; expected no restart key",
    );
    let c = ok("processes: {c: {command: x, schedule: '* * * * *'}}");
    assert_eq!(c.processes["c"].restart, RestartPolicy::Never);
    assert!(c.processes["c"].extra.schedule.is_some());
}

#[test]
fn scale_limits() {
    one(
        "processes: {w: {command: x, scale: 0}}",
        "processes.w.scale: invalid value 0; expected at least 1",
    );
    one(
        "processes: {w: {command: x, scale: 101}}",
        "processes.w.scale: invalid value 101; expected at most 100",
    );
    ok("global: {max_process_scale: 200}\nprocesses: {w: {command: x, scale: 150}}");
    one(
        "processes: {w: {command: x, scale: 3, max_scale: 2}}",
        "processes.w.scale: 3 is more than max_scale (2)",
    );
    assert_eq!(
        ok("processes: {w: {command: x, max_scale: 0}}").processes["w"].max_scale,
        None
    );
    // A oneshot or a job cannot be scaled: its max_scale reserves no ports
    // for instances that never run (8080-8082 would meet w's 8081).
    let c = ok("processes:
  o: {command: x, type: oneshot, max_scale: 3, ports: [8080]}
  j: {command: x, schedule: '@every 1h', max_scale: 3, ports: [9080]}
  w: {command: x, ports: [8081, 9081]}");
    for name in ["o", "j"] {
        assert_eq!(c.processes[name].max_scale, None);
        let w = format!("processes.{name}.max_scale: has no effect: a oneshot or scheduled job");
        assert!(
            c.warnings.iter().any(|x| x.starts_with(&w)),
            "{w}: {:?}",
            c.warnings
        );
    }
}

#[test]
fn backoff_bounds_are_blamed_on_the_key_written() {
    // Inherited by every process: said once, at global.
    one(
        "global: {restart_backoff_initial: 5s, restart_backoff_max: 1s}\nprocesses: {a: {command: x}, b: {command: y}}",
        "global.restart_backoff_initial: 5s is longer than restart_backoff_max (1s)",
    );
    // Written like every other duration, not as Rust's Debug of it
    // ("3153600000s", "0ns"), and blamed on max when only max was written.
    one(
        "global: {restart_backoff_initial: 876000h}\nprocesses: {a: {command: x}}",
        "global.restart_backoff_initial: 876000h is longer than restart_backoff_max (1m)",
    );
    one(
        "global: {restart_backoff_max: 0}\nprocesses: {a: {command: x}}",
        "global.restart_backoff_max: 0s is shorter than restart_backoff_initial (1s); expected max >= initial",
    );
    one(
        "global: {restart_backoff_initial: 5s}\nprocesses: {a: {command: x, restart_backoff_max: 1s}}",
        "processes.a.restart_backoff_max: 1s is shorter than restart_backoff_initial (5s, from global)",
    );
    // The legacy key wrote the initial delay: max is the key written.
    one(
        "global: {restart_backoff: 5s, restart_backoff_max: 1s}\nprocesses: {a: {command: x}}",
        "global.restart_backoff_max: 1s is shorter than restart_backoff_initial (5s, from restart_backoff)",
    );
    one(
        "processes: {a: {command: x, restart_backoff_initial: 2m}}",
        "processes.a.restart_backoff_initial: 2m is longer than restart_backoff_max (1m)",
    );
}

#[test]
fn keys_a_scheduled_job_ignores_are_warned_about() {
    let c = ok("processes: {j: {command: x, schedule: '@every 1m', restart: on-failure, critical: true, initial_state: stopped, health_check: {type: exec, command: 'false'}, ports: [8080], hooks: {pre_stop: [{name: a, command: x}], post-stop: [{name: b, command: x}], post_start: [{name: c, command: x}]}, shutdown: {pre_stop_hook: {name: d, command: x}}}}");
    let keys = paths(&c.warnings);
    assert_eq!(
        keys,
        [
            "processes.j.restart",
            "processes.j.critical",
            "processes.j.initial_state",
            "processes.j.health_check",
            "processes.j.ports",
            "processes.j.hooks.pre_stop",
            "processes.j.hooks.post_stop",
            "processes.j.shutdown.pre_stop_hook"
        ],
        "{:#?}",
        c.warnings
    );
    assert!(c
        .warnings
        .iter()
        .all(|w| w.contains("has no effect on a scheduled job")));
    assert!(
        ok("processes: {j: {command: x, schedule: '@every 1m', restart: never}}")
            .warnings
            .is_empty()
    );
}

#[test]
#[cfg_attr(not(feature = "cron"), ignore = "needs the cron feature")]
fn a_time_zone_on_an_every_schedule_is_warned_about() {
    let c = ok("processes: {j: {command: x, schedule: '@every 1m', schedule_timezone: UTC}}");
    assert_eq!(paths(&c.warnings), ["processes.j.schedule_timezone"]);
    let c = ok("processes: {j: {command: x, schedule: '0 3 * * *', schedule_timezone: UTC}}");
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn credentials() {
    one(
        "processes: {w: {command: x, user: no-such-user-sheepdog}}",
        "processes.w.user: unknown user \"no-such-user-sheepdog\"",
    );
    one(
        "processes: {w: {command: x, user: root, group: no-such-group-sheepdog}}",
        "processes.w.group: unknown group",
    );
    let c = ok("processes: {w: {command: x, user: 4242424}}");
    let cr = c.processes["w"].credentials.clone().unwrap();
    assert_eq!((cr.uid, cr.gid), (4242424, 4242424));
    // Not looked up as "1000.0" or "-5".
    one(
        "processes: {w: {command: x, user: 1e3}}",
        "processes.w.user: invalid value 1000.0; expected a name or a numeric id",
    );
    one(
        "processes: {w: {command: x, user: root, group: -5}}",
        "processes.w.group: invalid value -5; expected a name or a numeric id",
    );
}

#[test]
fn a_negative_max_restart_attempts_reads_as_unlimited_globally_and_per_process() {
    let c = ok(
        "global: {max_restart_attempts: 3}\nprocesses: {w: {command: x, max_restart_attempts: -1}}",
    );
    assert_eq!(c.processes["w"].max_restart_attempts, 0);
    assert_eq!(paths(&c.warnings), ["processes.w.max_restart_attempts"]);
    let c = ok("global: {max_restart_attempts: 3}\nprocesses: {w: {command: x}}");
    assert_eq!(c.processes["w"].max_restart_attempts, 3);
    one(
        "processes: {w: {command: x, max_restart_attempts: 5000000000}}",
        "processes.w.max_restart_attempts: invalid value 5000000000; expected an integer from 0 to 4294967295",
    );
}

#[test]
fn env_numbers_yaml_may_have_rewritten_are_warned_about() {
    let c = ok("processes: {w: {command: x, env: {V: 1.10, N: 4, S: '1.10'}}}");
    assert_eq!(c.processes["w"].env["V"], "1.1");
    assert_eq!(c.processes["w"].env["S"], "1.10");
    assert_eq!(paths(&c.warnings), ["processes.w.env.V"]);
    assert!(c.warnings[0].contains("\"1.1\""), "{:?}", c.warnings);
}

#[test]
fn hooks_global_and_per_process() {
    let c = ok("
hooks:
  pre-start: [{name: migrate, command: [php, artisan, migrate, --force], timeout: 300}]
  post_stop: [{name: bye, command: 'echo bye'}]
processes:
  w:
    command: x
    hooks: {post_start: [{name: warm, command: [curl, localhost]}]}
");
    assert_eq!(c.hooks.pre_start[0].timeout, Duration::from_secs(300));
    assert_eq!(c.hooks.post_stop[0].name, "bye");
    assert_eq!(c.processes["w"].extra.hooks.post_start[0].name, "warm");
    one(
        "hooks: {pre_start: [], pre-start: []}\nprocesses: {w: {command: x}}",
        "hooks.pre-start: pre_start is also set",
    );
    one(
        "hooks: {pre_start: [{command: x}]}\nprocesses: {w: {command: x}}",
        "hooks.pre_start[0].name: missing",
    );
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn seed_compat_keys_warn() {
    let c = ok("
global: {health_check_interval: 10, log_timestamps: true, tracing_enabled: false, api_tls: {enabled: false}}
processes:
  w: {command: x, shutdown: {graceful: true}, heartbeat: {url: 'http://x', grace: 5, interval: 1m}}
");
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
    assert!(c.warnings.iter().all(|w| w.contains("ignored")));
    assert!(c.warnings[0].starts_with("global.health_check_interval:"));
    one(
        "global: {api_tls: {enabled: true}}\nprocesses: {w: {command: x}}",
        "global.api_tls.enabled: TLS is not supported; terminate TLS in a reverse proxy",
    );
}

#[test]
fn process_start_timeout_is_read_not_ignored() {
    // The seed accepted it and did nothing; here it bounds a spawn's way
    // to exec (30s unless set), so it warns of nothing.
    let c = ok("global: {process_start_timeout: 45s}\nprocesses: {w: {command: x}}");
    assert_eq!(
        c.global.extra.process_start_timeout,
        Duration::from_secs(45)
    );
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    let c = ok("processes: {w: {command: x}}");
    assert_eq!(
        c.global.extra.process_start_timeout,
        Duration::from_secs(30)
    );
    one(
        "global: {process_start_timeout: 0}\nprocesses: {w: {command: x}}",
        "global.process_start_timeout: invalid value 0; expected a duration of at least 1ms",
    );
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn a_bad_ping_url_is_named_without_its_key() {
    // A ping URL's path holds the monitor's key (hc-ping.com/<uuid>): an
    // error shows the URL as the logs do, scheme and host with `/…`.
    for (url, shown) in [
        (
            "ftp://hc.example/SECRET-uuid?k=v",
            "invalid value \"ftp://hc.example/…\"",
        ),
        (
            "http://hc.example:99999/SECRET-uuid",
            "invalid URL \"http://hc.example:99999/…\"",
        ),
        (
            "http://u:pw@hc.example/SECRET-uuid",
            "invalid URL \"http://u:***@hc.example/…\"",
        ),
        // Regression: the key was shown when the message quoted the URL
        // otherwise than as written: escaped (a secret file's newline, in
        // YAML's escapes here) or cut after 60 characters.
        (
            "http://hc.example/SECRET-uuid\\n",
            "invalid value \"http://hc.example/…\"; expected",
        ),
        (
            "http://hc.example/SECRET-uuid\\x7f",
            "invalid URL \"http://hc.example/…\": spaces",
        ),
        (
            "htp://healthchecks.internal:8000/ping/SECRET-uuid-5bd0e7d6-0c6c-4d6a",
            "invalid value \"htp://healthchecks.internal:8000/…\"; expected",
        ),
    ] {
        let e = one(
            &format!("processes: {{w: {{command: x, heartbeat: {{failure_url: \"{url}\"}}}}}}"),
            "processes.w.heartbeat.failure_url: ",
        );
        assert!(e.contains(shown) && !e.contains("SECRET"), "{url}: {e}");
    }
}

#[test]
fn a_stop_signal_that_cannot_stop_is_warned_about() {
    // STOP pauses, the SIGCONT after it resumes: every stop runs to the
    // timeout. A catchable signal is the process's business, even an odd
    // one (httpd stops gracefully on WINCH).
    let c = ok("processes: {w: {command: x, shutdown: {signal: STOP}}}");
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("processes.w.shutdown.signal: SIGSTOP only pauses the group"),
        "{:#?}",
        c.warnings
    );
    for sig in ["WINCH", "USR1", "QUIT"] {
        let c = ok(&format!(
            "processes: {{w: {{command: x, shutdown: {{signal: {sig}}}}}}}"
        ));
        assert!(c.warnings.is_empty(), "{sig}: {:#?}", c.warnings);
    }
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn later_issue_keys_are_typed() {
    let c = ok("
global: {readiness_file: /run/ready, log_buffer_lines: 50}
processes:
  w:
    command: x
    ports: [80, '443']
    port_wait: 3s
    stdout: false
    health_check: {type: http, url: 'http://127.0.0.1/health', expected_status: '200-299'}
    logging: {labels: {team: a}}
    heartbeat: {url: 'http://hc/x', interval: 1m}
");
    assert_eq!(c.global.extra.log_buffer_lines, 50);
    let x = &c.processes["w"].extra;
    assert_eq!(x.ports, vec![80, 443]);
    assert_eq!(x.port_wait, Duration::from_secs(3));
    assert_eq!(x.logging.stdout, StreamMode::Discard);
    assert_eq!(x.logging.labels["team"], "a");
    assert!(
        matches!(&x.health_check.as_ref().unwrap().probe, Probe::Http { expected_status, .. } if expected_status == &vec![(200, 299)])
    );
    assert_eq!(
        x.heartbeat.as_ref().unwrap().interval,
        Some(Duration::from_secs(60))
    );
    one(
        "processes: {w: {command: x, ports: [80, 0]}}",
        "processes.w.ports[1]: invalid value 0; expected an integer from 1 to 65535",
    );
    one(
        "processes: {w: {command: x, ports: 70000}}",
        "processes.w.ports: invalid value 70000; expected an integer from 1 to 65535",
    );
    one(
        "global: {readiness: {processes: [nope]}}\nprocesses: {w: {command: x}}",
        "global.readiness.processes: unknown process \"nope\"",
    );
}

#[test]
fn readiness_of_processes_that_never_count_is_warned_about() {
    // Only enabled longruns (and failed oneshots) count: a file tracking
    // only these would be written at once.
    let c = ok("global: {readiness: {processes: [off, job, w]}}
processes:
  w: {command: x}
  off: {command: x, enabled: false}
  job: {command: x, schedule: '@every 1m'}
");
    assert_eq!(
        c.warnings,
        [
            "global.readiness.processes: \"off\" is disabled: it never counts toward readiness",
            "global.readiness.processes: \"job\" is a scheduled job: it never counts toward readiness",
        ]
    );
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn https_urls_are_warned_about_since_every_request_would_fail() {
    let c = ok(
        "processes: {w: {command: x, health_check: {type: http, url: 'HTTPS://x/up'}, \
                heartbeat: {url: 'https://hc/x', failure_url: 'http://hc/x/fail', interval: 1m}}}",
    );
    assert_eq!(
        paths(&c.warnings),
        ["processes.w.health_check.url", "processes.w.heartbeat.url"],
        "{:#?}",
        c.warnings
    );
}

#[test]
#[cfg_attr(
    not(all(feature = "cron", feature = "http")),
    ignore = "needs the cron and http features"
)]
fn a_longrun_heartbeat_without_interval_is_warned_about() {
    let hb = "heartbeat: {url: 'http://hc/x', ping_start: true";
    let c = ok(&format!(
        "processes:\n  a: {{command: x, {hb}}}}}\n  \
         b: {{command: x, {hb}, interval: 1m}}}}\n  \
         c: {{command: x, schedule: '@hourly', {hb}}}}}\n  \
         d: {{command: x, type: oneshot, {hb}}}}}\n  \
         e: {{command: x, {hb}, enabled: false}}}}\n"
    ));
    assert_eq!(
        paths(&c.warnings),
        ["processes.a.heartbeat"],
        "{:#?}",
        c.warnings
    );
    assert!(c.warnings[0].contains("has no effect on a longrun without interval"));
}

#[test]
fn declared_ports_no_two_instances_share() {
    // Instance n listens on port + n - 1, up to max_scale (else scale).
    one(
        "processes: {a: {command: x, scale: 2, ports: [65535]}}",
        "processes.a.ports[0]: port 65535 with up to 2 instances runs past 65535",
    );
    one(
        "processes: {a: {command: x, ports: [8080, 8080]}}",
        "processes.a.ports[1]: port 8080 meets the ports of ports[0] of the same process",
    );
    one(
        "processes: {a: {command: x, max_scale: 10, ports: [9000]}, b: {command: y, ports: [9005]}}",
        "processes.b.ports[0]: port 9005 meets the ports of processes.a.ports[0]",
    );
    one(
        "processes: {a: {command: x, ports: [9005]}, b: {command: y, scale: 10, ports: [9000]}}",
        "processes.b.ports[0]: ports 9000 to 9009 (one per instance, up to 10) meet the ports of processes.a.ports[0]",
    );
    // An invalid item leaves the others at their own indices.
    assert_eq!(
        problems("processes: {d: {command: x, ports: [x, 9000, 9001, 9000]}}")[1],
        "processes.d.ports[3]: port 9000 meets the ports of ports[1] of the same process; \
         expected ports no two instances share"
    );
    // Adjacent ranges, and a disabled process, are fine.
    ok("processes: {a: {command: x, scale: 2, ports: [9000]}, b: {command: y, ports: [9002]}}");
    ok("processes: {a: {command: x, ports: [9000]}, b: {command: y, enabled: false, ports: [9000]}}");
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn substitution() {
    let text = "
global:
  api_auth: ${TOKEN}
  api_port: ${API_PORT:-9999}
  metrics_enabled: ${METRICS:-yes}
processes:
  web:
    command: [php, '${SCRIPT:-artisan}', 'price: $$5 $${KEEP}']
    scale: ${SCALE}
    env: {HOST: '${HOST:-localhost}'}
";
    let c = load_env(
        text,
        &[("TOKEN", "s3cret"), ("SCALE", "2"), ("HOST", "")],
        &[],
    )
    .unwrap();
    assert_eq!(c.global.api.auth.as_deref(), Some("s3cret"));
    assert_eq!(c.global.api.port, 9999);
    assert!(c.global.metrics.enabled);
    let w = &c.processes["web"];
    assert_eq!(w.command, vec!["php", "artisan", "price: $$5 ${KEEP}"]);
    assert_eq!(w.scale, 2);
    assert_eq!(w.env["HOST"], "localhost");

    // Substituted text stays text, however numeric it looks.
    let c = load_env(text, &[("TOKEN", "0x1F"), ("SCALE", "2")], &[]).unwrap();
    assert_eq!(c.global.api.auth.as_deref(), Some("0x1F"));
    let e = load_env(text, &[("TOKEN", " s3cret"), ("SCALE", "2")], &[]).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
    assert!(
        e.problems[0].starts_with("global.api_auth: the token has leading or trailing whitespace"),
        "{:?}",
        e.problems
    );
    assert!(!e.problems[0].contains("s3cret"), "{:?}", e.problems);

    let e = load_env(text, &[("SCALE", "2")], &[]).unwrap_err();
    assert_eq!(e.problems, vec!["global.api_auth: environment variable TOKEN is not set; set it or give a default: ${TOKEN:-default}"]);
    assert_eq!(e.source, Some(PathBuf::from("test.yaml")));

    // Each problem names its own key, however deep: in a list, in a map,
    // and after a sibling that had one. The list is not blamed again for
    // the text kept in place of an argument.
    let e = load_env(
        "processes:\n  web: {command: [echo, ok, '${A}', '${B}'], env: {X: '${C}', Y: '${D}'}}\n  \
         zz: {command: ['${E}']}",
        &[],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        paths(&e.problems),
        [
            "processes.web.command[2]",
            "processes.web.command[3]",
            "processes.web.env.X",
            "processes.web.env.Y",
            "processes.zz.command[0]"
        ],
        "{:?}",
        e.problems
    );

    // Nor are the lists that other checks read as a whole: the text kept
    // in place of `${P}` is not also an unknown process or a bad port.
    let e = load_env(
        "global: {readiness: {enabled: true, processes: [db, '${R}']}}\n\
         processes:\n  web: {command: x, ports: [80, '${P}'], depends_on: [db, '${D}']}\n  \
         db: {command: x}",
        &[],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        paths(&e.problems),
        [
            "global.readiness.processes[1]",
            "processes.web.ports[1]",
            "processes.web.depends_on[1]"
        ],
        "{:?}",
        e.problems
    );

    // A value never injects structure, and keys are not substituted.
    let c = load_env(
        "processes: {web: {command: [echo, '${EVIL}']}, '${NAME}': {command: x}}",
        &[("EVIL", "x]\n  y: {z"), ("NAME", "n")],
        &[],
    )
    .unwrap_err();
    assert!(
        c.problems[0].starts_with("processes.${NAME}: invalid process name"),
        "{:?}",
        c.problems
    );
    let c = load_env(
        "processes: {web: {command: [echo, '${EVIL}']}}",
        &[("EVIL", "x]\n  y: {z")],
        &[],
    )
    .unwrap();
    assert_eq!(c.processes["web"].command[1], "x]\n  y: {z");
    // Comments are not substituted.
    ok("# ${UNSET_IN_COMMENT}\nprocesses: {web: {command: x}}");
    // A substituted bad value is reported at its key.
    let e = load_env(
        "processes: {web: {command: x, scale: '${S}'}}",
        &[("S", "lots")],
        &[],
    )
    .unwrap_err();
    assert!(e.problems[0].starts_with("processes.web.scale: invalid value \"lots\""));
}

#[test]
fn unknown_key_with_unset_variable_reports_the_key() {
    let e = load_env(
        "processes: {web: {command: x, comand: '${UNSET}'}}",
        &[],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.problems,
        vec!["processes.web.comand: unknown key; did you mean \"command\"?"]
    );
}

#[test]
fn overrides() {
    let c = load_env(
        MIN,
        &[],
        &[
            ("SHEEPDOG_GLOBAL_SHUTDOWN_TIMEOUT", "1"),
            ("SHEEPDOG_GLOBAL_API_ENABLED", "no"),
            ("SHEEPDOG_GLOBAL_MAX_RESTART_ATTEMPTS", "0"),
            ("SHEEPDOG_PROCESS_WEB_SCALE", "1"),
            ("SHEEPDOG_PROCESS_WEB_ENABLED", "1"),
            ("SHEEPDOG_PROCESS_WEB_SHUTDOWN_TIMEOUT", "5s"),
            ("SHEEPDOG_PROCESS_WEB_ENV_APP_ENV", "prod"),
            ("SHEEPDOG_PROCESS_WORKER_COMMAND", "php,artisan,queue:work"),
            ("SHEEPDOG_PROCESS_WORKER_DEPENDS_ON", "web"),
        ],
    )
    .unwrap();
    assert_eq!(c.global.shutdown_timeout, Duration::from_secs(1));
    assert!(!c.global.api.enabled);
    let w = &c.processes["web"];
    assert_eq!(w.scale, 1);
    assert!(w.enabled);
    assert_eq!(w.shutdown.timeout, Duration::from_secs(5));
    assert_eq!(w.env["APP_ENV"], "prod");
    let q = &c.processes["worker"];
    assert_eq!(q.command, vec!["php", "artisan", "queue:work"]);
    assert_eq!(q.depends_on[0].name, "web");

    let e = load_env(MIN, &[], &[("SHEEPDOG_PROCESS_WEB_SCALE", "x")]).unwrap_err();
    assert_eq!(
        e.problems,
        vec!["processes.web.scale: invalid value \"x\"; expected an integer from 1 to 100 (global.max_process_scale) (set by SHEEPDOG_PROCESS_WEB_SCALE)"]
    );
    let e = load_env(MIN, &[], &[("SHEEPDOG_GLOBAL_NOPE", "x")]).unwrap_err();
    assert_eq!(e.problems, vec!["SHEEPDOG_GLOBAL_NOPE: no such global key"]);
    let e = load_env(
        MIN,
        &[],
        &[("SHEEPDOG_PROCESS_WEB_HEALTH_CHECK", "{tpye: tcp}")],
    )
    .unwrap_err();
    assert!(e.problems[0].starts_with("processes.web.health_check.tpye: unknown key; did you mean \"type\"? (set by SHEEPDOG_PROCESS_WEB_HEALTH_CHECK)"), "{:?}", e.problems);
    // Overrides are not substituted.
    let c = load_env(
        MIN,
        &[("X", "y")],
        &[("SHEEPDOG_PROCESS_WEB_ENV_A", "${X}")],
    )
    .unwrap();
    assert_eq!(c.processes["web"].env["A"], "${X}");
}

/// `SHEEPDOG_GLOBAL_API_AUTH` is always the text it holds (never a YAML
/// number or flow collection), and must be a token a request can send.
#[test]
fn api_auth_override_is_text_a_request_can_send() {
    for token in [
        "0x1F",
        "1.5e3",
        "1234567890123456789012345678901234567890",
        "{a: b}",
        "[x]",
    ] {
        let c = load_env(MIN, &[], &[("SHEEPDOG_GLOBAL_API_AUTH", token)]).unwrap();
        assert_eq!(c.global.api.auth.as_deref(), Some(token));
    }
    for (token, needle) in [
        ("s3cret\n", "leading or trailing whitespace"),
        (" s3cret", "leading or trailing whitespace"),
        (
            "  \n",
            "only whitespace; expected a token, or nothing for none",
        ),
        ("s3cret\r\nX: y", "control character"),
        ("s3c\u{1b}ret", "control character"),
    ] {
        let e = load_env(MIN, &[], &[("SHEEPDOG_GLOBAL_API_AUTH", token)]).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
        let p = &e.problems[0];
        assert!(p.starts_with("global.api_auth: the token"), "{p}");
        assert!(p.contains(needle), "{token:?}: {p}");
        assert!(p.ends_with("(set by SHEEPDOG_GLOBAL_API_AUTH)"), "{p}");
        assert!(!p.contains("s3c"), "the token is shown: {p}");
    }
}

#[test]
fn hostile_documents_are_errors_not_panics() {
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "the configuration is empty"),
        ("# nothing\n".into(), "the configuration is empty"),
        ("~".into(), "the configuration is empty"),
        ("- a\n- b\n".into(), "the configuration must be a map"),
        ("just a string".into(), "the configuration must be a map"),
        ("42".into(), "the configuration must be a map"),
        (
            "processes:\n  web:\n    command: [a, b\n".into(),
            "invalid YAML",
        ),
        (
            "processes: {web: {command: 'unterminated}}".into(),
            "invalid YAML",
        ),
        ("\u{1}\u{2}\u{3}\u{7f}binary".into(), "invalid YAML"),
        ("processes: !!binary aGVsbG8=".into(), ""),
        ("a: &a [*a]".into(), "invalid YAML"),
        ("processes: *nope".into(), "invalid YAML"),
        (
            "processes: {web: {command: x}}\nprocesses: {}".into(),
            "invalid YAML: duplicate key",
        ),
        (
            format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            "invalid YAML",
        ),
        (format!("{}x", "a:\n ".repeat(5000)), "invalid YAML"),
        (format!("processes: {}", "{a: ".repeat(300)), "invalid YAML"),
    ];
    for (text, prefix) in cases {
        let p = problems(&text);
        assert!(!p.is_empty());
        assert!(p[0].starts_with(prefix), "{:.60?} -> {:?}", text, p);
    }
    // A document that is not a map says only that, not also what it lacks.
    assert_eq!(problems("42").len(), 1, "{:?}", problems("42"));
    // What is suppressed is not counted among the problems left out.
    let many: String = (0..150)
        .map(|i| format!("  p{i}: {{command: ['${{NOPE}}']}}\n"))
        .collect();
    let p = problems(&format!("processes:\n{many}"));
    assert_eq!(p.last().map(String::as_str), Some("… and 50 more problems"));
    // Alias bomb.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    assert!(problems(&bomb)[0].starts_with("invalid YAML"));
}

#[test]
fn garbage_in_every_leaf_is_an_error() {
    // Every process leaf key, given a nested list, must produce an error
    // (never a panic, never silent acceptance).
    let Some(shape::Shape::Map(process)) = shape::CONFIG.field("processes") else {
        panic!("processes is a map of processes");
    };
    for key in process.field_names() {
        if key == "command" {
            continue;
        }
        let text = format!("processes: {{web: {{command: x, {key}: [[[1]]]}}}}");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|l| l.starts_with(&format!("processes.web.{key}"))),
            "{key}: {p:?}"
        );
    }
}

#[test]
fn discovery_order() {
    let dir = std::env::temp_dir().join(format!("sheepdog-discover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.yaml");
    let b = dir.join("b.yaml");
    std::fs::write(&a, MIN).unwrap();
    std::fs::write(&b, MIN).unwrap();
    let missing = dir.join("missing.yaml");
    let defaults = [missing.as_path(), b.as_path()];

    assert_eq!(
        discover_in(Some(&a), Some(b.clone().into()), &defaults).unwrap(),
        a
    );
    let e = discover_in(Some(&missing), None, &defaults).unwrap_err();
    assert!(
        e.problems[0].contains("missing.yaml (given with -c) does not exist"),
        "{e}"
    );
    assert_eq!(
        discover_in(None, Some(a.clone().into()), &defaults).unwrap(),
        a
    );
    let e = discover_in(None, Some(missing.clone().into()), &defaults).unwrap_err();
    assert!(e.problems[0].contains("from $SHEEPDOG_CONFIG"));
    assert_eq!(discover_in(None, Some("".into()), &defaults).unwrap(), b);
    assert_eq!(discover_in(None, None, &defaults).unwrap(), b);
    let e = discover_in(
        None,
        None,
        &[missing.as_path(), Path::new("/nonexistent/sheepdog.yaml")],
    )
    .unwrap_err();
    assert!(
        e.problems[0]
            .starts_with("no configuration file found; looked for -c FILE, $SHEEPDOG_CONFIG"),
        "{e}"
    );
    assert!(e.problems[0].contains("/nonexistent/sheepdog.yaml"));
    // A dangling link is found (and its read fails naming it), not skipped.
    let dangling = dir.join("dangling.yaml");
    std::os::unix::fs::symlink(dir.join("gone.yaml"), &dangling).unwrap();
    assert_eq!(
        discover_in(None, None, &[dangling.as_path(), b.as_path()]).unwrap(),
        dangling
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_reads_files_and_reports_the_source() {
    let dir = std::env::temp_dir().join(format!("sheepdog-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, MIN).unwrap();
    let c = load(&good).unwrap();
    assert_eq!(c.source.as_deref(), Some(good.as_path()));
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "processes: {web: {command: x, scale: -1}}").unwrap();
    let e = load(&bad).unwrap_err();
    assert_eq!(e.source.as_deref(), Some(bad.as_path()));
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "invalid configuration in {}:\n  - processes.web.scale",
            bad.display()
        )),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "needs the default features"
)]
fn example_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/laravel.yaml")).unwrap();
    let c = load_from_str(&text, None, &no_env, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.processes.len() >= 5);
    assert_eq!(c.processes["queue-default"].scale, 2);
    assert!(c.processes["scheduler"].extra.schedule.is_some());
}

// A build without a feature refuses that feature's keys by name, and says
// what would work instead (`cargo test --no-default-features`, run by CI).

#[test]
#[cfg(not(feature = "http"))]
fn without_http_http_checks_and_heartbeats_are_refused() {
    let e = one(
        "processes:\n  w:\n    command: x\n    health_check: {type: http, url: 'http://127.0.0.1/'}\n",
        "processes.w.health_check.type:",
    );
    assert!(e.contains("cargo feature `http`"), "{e}");
    let e = one(
        "processes:\n  w:\n    command: x\n    heartbeat: {url: 'http://hc/x'}\n",
        "processes.w.heartbeat:",
    );
    assert!(e.contains("cargo feature `http`"), "{e}");
    ok("processes:\n  w:\n    command: x\n    health_check: {type: tcp, address: '127.0.0.1:1'}\n");
}

#[test]
#[cfg(not(feature = "api"))]
fn without_api_the_api_is_off_and_cannot_be_enabled() {
    let c = ok(MIN);
    assert!(!c.global.api.enabled);
    assert!(!c.global.metrics.enabled);
    for key in ["api_enabled", "metrics_enabled"] {
        let e = one(
            &format!("global: {{{key}: true}}\n{MIN}"),
            &format!("global.{key}:"),
        );
        assert!(e.contains("cargo feature `api`"), "{e}");
    }
}

#[test]
#[cfg(not(feature = "cron"))]
fn without_cron_only_every_schedules_load() {
    let job = |s: &str| format!("processes:\n  j:\n    command: x\n    schedule: '{s}'\n");
    ok(&job("@every 5m"));
    for s in ["*/5 * * * *", "@daily"] {
        let e = one(&job(s), "processes.j.schedule:");
        assert!(e.contains("`cron` feature"), "{e}");
    }
}

/// Every example, with hostile values put in its leaves and its bytes
/// mangled, through the whole pipeline and the plan: each one is a config
/// or an error with problems, never a panic. (`fuzz/` runs the same
/// pipeline under libFuzzer for longer; this keeps CI honest.)
#[test]
fn mutated_examples_are_configs_or_errors_never_panics() {
    #[rustfmt::skip]
    const VALUES: &[&str] = &[
        "", "-1", "0", "99999999999999999999", "1e400", "-0.0", ".nan", ".inf", "[]", "{}",
        "[[1]]", "{a: {b: c}}", "null", "~", "true", "\"\\0\"", "'${X'", "${UNSET:-}",
        "${UNSET:?}", "$${PORT}", "SIGFOO", "999999999h", "1ns", "0s", "-5s", "10 MiB", "1.5",
        "0x10", "@every 0s", "@every 1s", "* * * * * * *", "60 * * * *", "*/0 * * * *",
        "\"🐑\"", "/", "..", "root", "65536", "-", "!!binary aGVsbG8=", "&a x", "*a",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut docs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    docs.sort();
    assert!(docs.len() >= 10, "examples not found in {}", root.display());
    let env = |name: &str| Ok((name == "PORT").then(|| "8080".to_string()));
    let mut rng = crate::seeded::Rng(0x05ee_dd09);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3000 {
        let doc = &docs[rng.below(docs.len())];
        let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(lines.len());
            let value = VALUES[rng.below(VALUES.len())];
            if let Some((key, _)) = lines[at].split_once(": ") {
                lines[at] = format!("{key}: {value}");
            } else if let Some(item) = lines[at].strip_suffix(|_: char| true) {
                // Not a `key: value` line: cut it short instead.
                lines[at] = item.to_string();
            }
        }
        let mut text = lines.join("\n").into_bytes();
        if round % 3 == 0 && !text.is_empty() {
            let at = rng.below(text.len());
            text[at] = [b'{', b'[', b':', b'-', b'\t', b'"', b'\'', b'&', b'*', 0][rng.below(10)];
        }
        let text = String::from_utf8_lossy(&text);
        let result = std::panic::catch_unwind(|| {
            load_from_str(&text, None, &env, &[]).map(|c| {
                let plan = crate::plan::Plan::build(&c);
                (c, plan.map(|p| p.stop_levels()))
            })
        });
        match result {
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(e)) => {
                assert!(
                    !e.problems.is_empty() && e.problems.iter().all(|p| !p.trim().is_empty()),
                    "round {round}: an error without a problem: {e:?}\n{text}"
                );
                refused += 1;
            }
            Err(_) => panic!("round {round}: panicked on:\n{text}"),
        }
    }
    // Both outcomes must be common, or the mutations are not exercising
    // validation (everything refused by the YAML parser) or not mutating.
    assert!(
        accepted > 100 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

/// A top-level `x-…` block holds anchors for the rest of the file, as in
/// Compose: read, then dropped. Anywhere else an `x-` key is unknown.
#[test]
fn top_level_x_blocks_hold_anchors_and_are_dropped() {
    let c = ok("x-php: &php {working_dir: /app, env: {APP_ENV: prod}}\n\
                processes:\n  web: {<<: *php, command: x}\n  queue: {<<: *php, command: y}\n");
    for name in ["web", "queue"] {
        let p = &c.processes[name];
        assert_eq!(p.working_dir.as_deref(), Some(std::path::Path::new("/app")));
        assert_eq!(p.env["APP_ENV"], "prod");
    }
    one(
        "processes: {web: {command: x, x-note: y}}",
        "processes.web.x-note: unknown key",
    );
}

#[test]
fn an_override_replaces_a_value_whose_substitution_failed() {
    // `scale: ${WEB_SCALE}` with WEB_SCALE unset, but the operator sets the
    // key itself: the override wins and the failed text is gone.
    let text = "processes:\n  web: {command: x, max_scale: 4, scale: '${WEB_SCALE}', env: {A: '${A}', B: '${B}'}}";
    let c = load_env(
        text,
        &[],
        &[
            ("SHEEPDOG_PROCESS_WEB_SCALE", "2"),
            ("SHEEPDOG_PROCESS_WEB_ENV", "{A: x, B: y}"),
        ],
    )
    .unwrap_or_else(|e| panic!("{:?}", e.problems));
    let web = &c.processes["web"];
    assert_eq!(web.scale, 2);
    assert_eq!(
        web.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["A=x", "B=y"]
    );
    // An override of a sibling key leaves the failure reported.
    let e = load_env(
        text,
        &[],
        &[
            ("SHEEPDOG_PROCESS_WEB_SCALE", "2"),
            ("SHEEPDOG_PROCESS_WEB_ENV_A", "x"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.problems,
        ["processes.web.env.B: environment variable B is not set; set it or give a default: ${B:-default}"]
    );
}

#[test]
fn keys_other_supervisors_use_suggest_ours() {
    // Compose's, supervisord's and Kubernetes' names are too far from
    // sheepdog's for a typo's suggestion; they get one all the same.
    assert_eq!(
        problems("processes:\n  web: {command: x, environment: {A: b}, stop_signal: SIGQUIT, numprocs: 2}"),
        [
            "processes.web.environment: unknown key; did you mean \"env\"?",
            "processes.web.stop_signal: unknown key; did you mean \"shutdown.signal\"?",
            "processes.web.numprocs: unknown key; did you mean \"scale\"?",
        ]
    );
    // Only where that key exists: a hook has no `shutdown`.
    let p = problems(
        "processes:\n  web: {command: x, hooks: {pre_start: [{command: y, stop_signal: SIGINT}]}}",
    );
    assert!(!p.iter().any(|l| l.contains("shutdown.signal")), "{p:?}");
}

#[test]
fn periods_of_repeated_work_have_a_floor_and_timeouts_one_of_1ms() {
    // `period: 0.0001` probed every 100µs and `@every 1ms` spawned a job
    // every millisecond: both passed the old `> 0` checks.
    one(
        "processes: {w: {command: x, health_check: {type: exec, command: x, period: 0.0001, timeout: 50ms}}}",
        "processes.w.health_check.period: invalid value 0.0001; expected a duration of at least 10ms",
    );
    one(
        "processes: {w: {command: x, schedule: '@every 1ms'}}",
        "processes.w.schedule: @every \"1ms\": expected a duration of at least 10ms",
    );
    if cfg!(feature = "http") {
        one(
            "processes: {w: {command: x, heartbeat: {url: 'http://127.0.0.1:1/x', interval: 9ms}}}",
            "processes.w.heartbeat.interval: invalid value \"9ms\"; expected a duration of at least 10ms",
        );
    }
    one(
        "processes: {w: {command: x, health_check: {type: exec, command: x, timeout: 0.0005}}}",
        "processes.w.health_check.timeout: invalid value 0.0005; expected a duration of at least 1ms",
    );
    // The fast values tests use stay valid.
    let c = ok("processes: {w: {command: x, health_check: {type: exec, command: x, period: 10ms, timeout: 1ms}}, j: {command: x, schedule: '@every 10ms'}}");
    assert_eq!(c.processes.len(), 2);
}

#[test]
fn a_number_or_boolean_as_a_name_gets_a_hint_to_quote_it() {
    let p = problems("processes: {123: {command: x}, w: {command: x, env: {true: a}}}");
    assert_eq!(
        p,
        [
            "processes: key 123 is not a name; expected a string (quote it: \"123\")",
            "processes.w.env: key true is not a name; expected a string (quote it: \"true\")",
        ]
    );
    ok("processes: {'123': {command: x}}");
}

#[test]
#[cfg_attr(not(feature = "cron"), ignore = "needs the cron feature")]
fn a_jitter_not_shorter_than_a_cron_schedule_s_period_is_an_error() {
    // Refused for @every only: an every-minute job with 5m of jitter
    // piled its delayed starts up five deep.
    one(
        "processes: {j: {command: x, schedule: '* * * * *', schedule_jitter: 5m}}",
        "processes.j.schedule_jitter: 5m is not shorter than the schedule's period (1m); expected less",
    );
    // The shortest gap counts: 0 and 10 past, then 50 minutes to the next.
    one(
        "processes: {j: {command: x, schedule: '0,10 * * * *', schedule_jitter: 10m}}",
        "processes.j.schedule_jitter: 10m is not shorter than the schedule's period (10m)",
    );
    one(
        "processes: {j: {command: x, schedule: '@hourly', schedule_jitter: 1h}}",
        "processes.j.schedule_jitter: 1h is not shorter than the schedule's period (1h)",
    );
    ok("processes: {j: {command: x, schedule: '*/5 * * * *', schedule_jitter: 4m59s}}");
    ok("processes: {j: {command: x, schedule: '0 3 * * 1', schedule_jitter: 144h}}");
    ok("processes: {j: {command: x, schedule: '0 0 29 2 *', schedule_jitter: 8760h}}");
}
