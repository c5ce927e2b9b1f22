//! One `processes.<name>` entry → `model::Process`, and the checks that
//! need every process at once (names the API must tell apart, dependencies,
//! ports, and the zero-backoff warning).
//!
//! Resolution rules kept here: `enabled` defaults to true; `restart`
//! defaults to the global policy, except for oneshots and scheduled jobs,
//! which default to `never` and may not say `always`; attempts and backoff
//! come from `global`; `scale` is 1..=max_process_scale, 1 for oneshots
//! and scheduled jobs, and <= `max_scale` when that is set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::super::extra::ProcessExtra;
use super::super::model::{
    Backoff, Condition, Credentials, Dependency, Global, Hook, Hooks, InitialState, Process,
    ProcessType, RestartPolicy, Shutdown,
};
use super::super::raw::RawProcess;
use super::super::report::{index, join, under, KeyPath, Report};
use super::super::suggest;
use super::super::value::{self as val, describe, quote};
use super::extra;
use super::global::RESTART_POLICIES;
use super::hooks::{self, credentials, env_map, positive_duration};
use nix::sys::signal::Signal;

/// Is `name` a valid process name?
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub fn build(name: &str, raw: &RawProcess, global: &Global, r: &mut Report) -> Process {
    let path = join("processes", name);
    let p = under(&path);
    if !valid_name(name) {
        r.error(
            &path,
            format!(
                "invalid process name {}; expected 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit",
                quote(name)
            ),
        );
    }
    let command = r.get_or(&raw.command, p("command"), val::argv, Vec::new());
    if raw.command.is_none() {
        r.error(
            p("command"),
            "missing; every process needs a command (a list like [php-fpm, -F] or a shell string)",
        );
    }
    let enabled = r.get_or(&raw.enabled, p("enabled"), val::boolean, true);
    let kind = r.get_or(
        &raw.kind,
        p("type"),
        |v| {
            val::choice(
                v,
                &[
                    ("longrun", ProcessType::Longrun),
                    ("oneshot", ProcessType::Oneshot),
                ],
            )
        },
        ProcessType::Longrun,
    );
    let initial_state = r.get_or(
        &raw.initial_state,
        p("initial_state"),
        |v| {
            val::choice(
                v,
                &[
                    ("running", InitialState::Running),
                    ("stopped", InitialState::Stopped),
                ],
            )
        },
        InitialState::Running,
    );

    let (scale, max_scale) = scale(raw, &path, global.extra.max_process_scale, r);

    let schedule = extra::schedule(raw, &path, r);
    let runs_once = kind == ProcessType::Oneshot || schedule.is_some();
    // Neither can be scaled (the API refuses): a max_scale would only
    // reserve ports for instances that never run, and refuse another
    // process's ports, or scale, for them.
    let max_scale = max_scale.filter(|_| {
        if runs_once {
            r.warn(
                p("max_scale"),
                "has no effect: a oneshot or scheduled job cannot be scaled",
            );
        }
        !runs_once
    });
    let restart_explicit = restart(raw, &path, kind, scale, runs_once, r);
    let restart = restart_explicit.unwrap_or(if runs_once {
        RestartPolicy::Never
    } else {
        global.restart_policy
    });

    let depends_on = dependencies(&raw.depends_on, &p("depends_on").path(), r);
    let working_dir = r
        .get(&raw.working_dir, p("working_dir"), val::text)
        .map(PathBuf::from);
    let env = env_map(raw.env.as_ref(), &p("env").path(), r);
    let credentials = credentials(&raw.user, &raw.group, &path, r);
    let shutdown = shutdown(raw, &path, r);
    let critical = r.get_or(&raw.critical, p("critical"), val::boolean, false);
    if schedule.is_some() {
        warn_ignored_on_jobs(raw, &path, restart_explicit, critical, initial_state, r);
    }

    let (backoff_initial, backoff_max) = backoff(raw, &path, global, r);
    let health_check = raw
        .health_check
        .as_ref()
        .and_then(|h| extra::health_check(h, &p("health_check").path(), r));
    let ports = ports(&raw.ports, &p("ports").spell(), r);
    if let Some(hc) = &health_check {
        if uses_port_template(&hc.probe) && ports.is_empty() {
            r.error(
                p("health_check"),
                "uses {port}, but the process declares no ports; add ports: [PORT] (instance N gets PORT + N - 1)",
            );
        }
    }
    let port_wait = r.get_or(
        &raw.port_wait,
        p("port_wait"),
        positive_duration,
        Duration::from_secs(10),
    );
    let logging = extra::logging(raw, &path, r);
    let heartbeat = raw.heartbeat.as_ref().and_then(|h| {
        let longrun = kind == ProcessType::Longrun && schedule.is_none();
        extra::heartbeat(h, &p("heartbeat").path(), longrun, r)
    });
    let hooks = hooks::hooks(raw.hooks.as_ref(), &p("hooks").path(), r);

    Process {
        name: name.to_string(),
        enabled,
        kind,
        initial_state,
        command,
        scale: scale.max(1),
        max_scale,
        depends_on,
        restart,
        max_restart_attempts: super::global::restart_attempts(
            &raw.max_restart_attempts,
            p("max_restart_attempts"),
            global.max_restart_attempts,
            r,
        ),
        backoff: Backoff {
            initial: backoff_initial,
            max: backoff_max,
            reset_after: r.get_or(
                &raw.restart_reset_after,
                p("restart_reset_after"),
                positive_duration,
                global.restart_reset_after,
            ),
        },
        working_dir,
        env,
        credentials,
        shutdown,
        critical,
        extra: ProcessExtra {
            health_check,
            ports,
            port_wait,
            logging,
            schedule,
            heartbeat,
            hooks,
        },
    }
}

/// `scale` and `max_scale` (0 = none): within `limit`
/// (`global.max_process_scale`), and scale <= max_scale.
fn scale(raw: &RawProcess, path: &str, limit: u32, r: &mut Report) -> (u32, Option<u32>) {
    let p = under(path);
    // Read wide, so that 0 and values past the limit get the messages
    // below; what is no such integer is told the real range.
    let int = |v: &Value, low: &str| {
        val::uint32(v, 0, u32::MAX).map_err(|_| {
            val::invalid(
                v,
                &format!("an integer from {low} to {limit} (global.max_process_scale)"),
            )
        })
    };
    let scale = r.get_or(&raw.scale, p("scale"), |v| int(v, "1"), 1);
    if scale == 0 {
        r.error(
            p("scale"),
            "invalid value 0; expected at least 1 (to not run it, use enabled: false or initial_state: stopped)",
        );
    } else if scale > limit {
        r.error(
            p("scale"),
            format!("invalid value {scale}; expected at most {limit} (global.max_process_scale)"),
        );
    }
    let max_scale = r
        .get(&raw.max_scale, p("max_scale"), |v| int(v, "0 (no limit)"))
        .filter(|m| *m > 0);
    if let Some(m) = max_scale {
        if m > limit {
            r.error(
                p("max_scale"),
                format!("invalid value {m}; expected at most {limit} (global.max_process_scale)"),
            );
        }
        if scale > m {
            r.error(p("scale"), format!("{scale} is more than max_scale ({m})"));
        }
    }
    (scale, max_scale)
}

/// The `restart` the process gives, if any; a oneshot or a scheduled job
/// (`runs_once`) may not say `always`, nor have a scale above 1.
fn restart(
    raw: &RawProcess,
    path: &str,
    kind: ProcessType,
    scale: u32,
    runs_once: bool,
    r: &mut Report,
) -> Option<RestartPolicy> {
    let p = under(path);
    let given = r.get(&raw.restart, p("restart"), |v| {
        val::choice(v, RESTART_POLICIES)
    });
    let (what, instead) = if kind == ProcessType::Oneshot {
        (
            "a oneshot process runs to completion",
            "on-failure or never",
        )
    } else {
        // Either of those would only be warned about as having no effect.
        ("a scheduled job runs once per trigger", "no restart key")
    };
    if runs_once {
        if given == Some(RestartPolicy::Always) {
            r.error(
                p("restart"),
                format!("{what}, so \"always\" is not allowed; expected {instead}"),
            );
        }
        if scale > 1 {
            r.error(
                p("scale"),
                format!("{what}, so scale must be 1, got {scale}"),
            );
        }
    }
    given
}

/// Keys a scheduled job takes but that do nothing for it: warned about.
fn warn_ignored_on_jobs(
    raw: &RawProcess,
    path: &str,
    restart_explicit: Option<RestartPolicy>,
    critical: bool,
    initial_state: InitialState,
    r: &mut Report,
) {
    let p = under(path);
    let (hooks_at, shutdown_at) = (join(path, "hooks"), join(path, "shutdown"));
    let hooks = raw.hooks.as_ref();
    let stop_hook = "a run's stop runs no hook; only pre_start and post_start run, around each run";
    let ignored = [
        (
            restart_explicit == Some(RestartPolicy::OnFailure),
            p("restart"),
            "a failed run is not retried; the next run comes at the next due time",
        ),
        (
            critical,
            p("critical"),
            "a failed run never stops sheepdog; alert on sheepdog_scheduled_runs_total or a heartbeat",
        ),
        (
            initial_state == InitialState::Stopped,
            p("initial_state"),
            "a job runs when due; to hold it, pause it (sheepdog ctl pause)",
        ),
        (
            raw.health_check.is_some(),
            p("health_check"),
            "a run is judged by its exit code and `timeout`; nothing probes it",
        ),
        (
            raw.ports.is_some(),
            p("ports"),
            "nothing waits for a job's ports or checks them",
        ),
        (
            hooks.is_some_and(|h| h.pre_stop.is_some() || h.pre_stop_seed.is_some()),
            under(&hooks_at)("pre_stop"),
            stop_hook,
        ),
        (
            hooks.is_some_and(|h| h.post_stop.is_some() || h.post_stop_seed.is_some()),
            under(&hooks_at)("post_stop"),
            stop_hook,
        ),
        (
            raw.shutdown.as_ref().is_some_and(|s| s.pre_stop_hook.is_some()),
            under(&shutdown_at)("pre_stop_hook"),
            stop_hook,
        ),
    ];
    for (_, at, why) in ignored.iter().filter(|(set, _, _)| *set) {
        r.warn(at, format!("has no effect on a scheduled job: {why}"));
    }
}

/// The process's `restart_backoff_initial` and `_max`, inherited from
/// `global`, with initial <= max when the process sets either.
fn backoff(raw: &RawProcess, path: &str, global: &Global, r: &mut Report) -> (Duration, Duration) {
    let p = under(path);
    let backoff_initial = r.get_or(
        &raw.restart_backoff_initial,
        p("restart_backoff_initial"),
        val::duration,
        global.restart_backoff_initial,
    );
    let backoff_max = r.get_or(
        &raw.restart_backoff_max,
        p("restart_backoff_max"),
        val::duration,
        global.restart_backoff_max,
    );
    // Both inherited: the global check has said it already.
    let sets_initial = raw.restart_backoff_initial.is_some();
    if sets_initial || raw.restart_backoff_max.is_some() {
        backoff_order(
            path,
            backoff_initial,
            backoff_max,
            sets_initial,
            ", from global",
            r,
        );
    }
    (backoff_initial, backoff_max)
}

/// initial <= max under `path` (a process or `global`), blamed on the key
/// written: `initial` when `sets_initial`, else `max` (`from`: where the
/// initial came from, when not from `path`).
pub(super) fn backoff_order(
    path: &str,
    initial: Duration,
    max: Duration,
    sets_initial: bool,
    from: &str,
    r: &mut Report,
) {
    if initial <= max {
        return;
    }
    let fmt = crate::config::format_duration;
    let (i, m) = (fmt(initial), fmt(max));
    let (key, msg) = if sets_initial {
        (
            "restart_backoff_initial",
            format!("{i} is longer than restart_backoff_max ({m}); expected initial <= max"),
        )
    } else {
        (
            "restart_backoff_max",
            format!(
                "{m} is shorter than restart_backoff_initial ({i}{from}); expected max >= initial"
            ),
        )
    };
    r.error(under(path)(key), msg);
}

fn shutdown(raw: &RawProcess, path: &str, r: &mut Report) -> Shutdown {
    let sp = join(path, "shutdown");
    let p = under(&sp);
    let mut out = Shutdown {
        signal: Signal::SIGTERM,
        timeout: Duration::from_secs(30),
        kill_signal: Signal::SIGKILL,
        pre_stop_hook: None,
    };
    let Some(s) = &raw.shutdown else {
        return out;
    };
    out.signal = r.get_or(&s.signal, p("signal"), val::signal, Signal::SIGTERM);
    out.timeout = r.get_or(
        &s.timeout,
        p("timeout"),
        val::duration,
        Duration::from_secs(30),
    );
    out.kill_signal = r.get_or(
        &s.kill_signal,
        p("kill_signal"),
        val::signal,
        Signal::SIGKILL,
    );
    // SIGSTOP cannot be caught, and the SIGCONT sent after the stop signal
    // undoes it: such a stop only ever ends at the timeout.
    if s.signal.is_some() && out.signal == Signal::SIGSTOP {
        r.warn(
            p("signal"),
            "SIGSTOP only pauses the group, and the SIGCONT sent after it resumes it: \
             every stop will wait the whole shutdown.timeout for kill_signal",
        );
    }
    out.pre_stop_hook = s
        .pre_stop_hook
        .as_ref()
        .and_then(|h| hooks::hook(h, &p("pre_stop_hook").path(), r));
    if let Some(g) = &s.graceful {
        match val::boolean(g) {
            Ok(_) => r.warn(p("graceful"), "accepted for PHPeek PM compatibility and ignored: every stop is graceful (signal, then timeout, then kill_signal)"),
            Err(e) => r.error(p("graceful"), e),
        }
    }
    out
}

const CONDITIONS: &[(&str, Condition)] = &[
    ("started", Condition::Started),
    ("healthy", Condition::Healthy),
    ("completed", Condition::Completed),
    ("completed_successfully", Condition::CompletedSuccessfully),
];

fn condition(v: &Value) -> Result<Condition, String> {
    // docker-compose spells these service_started etc., in any case like
    // every enum. (A bad one is named without its service_.)
    let v = match v {
        Value::String(s) => match s.trim().to_ascii_lowercase().strip_prefix("service_") {
            Some(rest) => Value::String(rest.into()),
            None => v.clone(),
        },
        other => other.clone(),
    };
    val::choice(&v, CONDITIONS)
}

/// One port or a list of them; a bad item is reported at its index, and
/// stands as 0 in the list, which keeps the later items at their indices
/// for `check_ports` (which skips it). The report then holds a problem, so
/// no such list outlives validation.
fn ports(raw: &Option<Value>, path: &str, r: &mut Report) -> Vec<u16> {
    match raw {
        None => Vec::new(),
        Some(Value::Sequence(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(val::port(item).unwrap_or_else(|e| {
                    r.error(index(path, i), e);
                    0
                }));
            }
            out
        }
        Some(_) => r.get_or(raw, path, |v| val::port(v).map(|p| vec![p]), Vec::new()),
    }
}

/// A declared port's range: (first, last, process, index in its list).
type Range<'a> = (u32, u32, &'a str, usize);

/// Declared ports, as the instances use them: instance n of a process
/// listens on each declared port + (n - 1), up to `max_scale` (or `scale`)
/// instances. A range that runs past 65535, or that meets another range
/// (of the same process or another), would fail at run time, with a
/// start waiting for a port its neighbour holds: refused here. So is a
/// range holding sheepdog's own API or metrics port.
pub fn check_ports(processes: &BTreeMap<String, Process>, global: &Global, r: &mut Report) {
    let mut ranges = Vec::new();
    for p in processes.values().filter(|p| p.enabled) {
        port_ranges(p, p.max_scale.unwrap_or(p.scale), global, &mut ranges, r);
    }
}

/// Why `target` may not run `n` instances, by the load check of its ports
/// (`check_ports`): against sheepdog's own ports and those of `others`,
/// each with the instances it may run now. Its first problem, if any.
pub fn scale_ports<'a>(
    target: &Process,
    n: u32,
    others: impl Iterator<Item = (&'a Process, u32)>,
    global: &Global,
) -> Option<String> {
    let mut ranges = Vec::new();
    // Their own problems passed the load check, or are none of this scale's.
    let mut theirs = Report::default();
    for (p, n) in others.filter(|(p, _)| p.enabled && p.name != target.name) {
        port_ranges(p, n, global, &mut ranges, &mut theirs);
    }
    let mut r = Report::default();
    port_ranges(target, n, global, &mut ranges, &mut r);
    r.problems.into_iter().next()
}

/// Check `p`'s port ranges with `n` instances against sheepdog's own
/// ports and `ranges` (those checked before), and add them to `ranges`.
fn port_ranges<'a>(
    p: &'a Process,
    n: u32,
    global: &Global,
    ranges: &mut Vec<Range<'a>>,
    r: &mut Report,
) {
    let (api, metrics) = (&global.api, &global.metrics);
    let own = [
        (api.enabled && api.port != 0, api.port, "global.api_port"),
        (metrics.enabled, metrics.port, "global.metrics_port"),
    ];
    let n = n.max(1);
    for (i, &port) in p.extra.ports.iter().enumerate() {
        if port == 0 {
            continue; // an invalid item, reported already (`ports`)
        }
        let path = index(&join(&join("processes", &p.name), "ports"), i);
        let Some(last) = crate::ports::of_instance(port, n) else {
            r.error(
                path,
                format!(
                    "port {port} with up to {n} instances runs past 65535 (instance n listens \
                     on {port} + n - 1); expected at most {}",
                    65536 - n.min(65535)
                ),
            );
            continue;
        };
        if let Some((_, own, key)) = own
            .iter()
            .find(|(on, own, _)| *on && (port..=last).contains(own))
        {
            r.error(
                path,
                format!(
                    "instance {} would listen on {own}, sheepdog's own {key}; expected \
                     another port",
                    own - port + 1
                ),
            );
            continue;
        }
        let (first, last) = (u32::from(port), u32::from(last));
        if let Some((_, _, other, j)) = ranges.iter().find(|(a, b, _, _)| first <= *b && *a <= last)
        {
            let whose = if *other == p.name {
                format!("ports[{j}] of the same process")
            } else {
                index(&join(&join("processes", other), "ports"), *j)
            };
            let mine = if n == 1 {
                format!("port {port}")
            } else {
                format!("ports {port} to {last} (one per instance, up to {n})")
            };
            r.error(
                path,
                format!(
                    "{mine} {} the ports of {whose}; expected ports no two instances share",
                    if n == 1 { "meets" } else { "meet" }
                ),
            );
            continue;
        }
        ranges.push((first, last, &p.name, i));
    }
}

/// Names the API could not tell apart (`{name}` in its paths is a
/// process, an instance or `sheepdog`): `sheepdog` names sheepdog's own
/// log records, and `web-2` is instance 2 of a process `web`.
pub fn check_names(processes: &BTreeMap<String, Process>, r: &mut Report) {
    for name in processes.keys() {
        let path = join("processes", name);
        if name == "sheepdog" {
            r.error(
                &path,
                "the name sheepdog is taken: the API and the logs use it for sheepdog's own \
                 records; expected another name",
            );
        }
        let Some((base, n)) = name.rsplit_once('-') else {
            continue;
        };
        if processes.contains_key(base)
            && !n.starts_with('0')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            r.error(
                &path,
                format!(
                    "{} is also the name of instance {n} of process {}, and the API could not \
                     tell them apart; expected another name",
                    quote(name),
                    quote(base)
                ),
            );
        }
    }
}

/// `restart_backoff_initial: 0` stays valid (tests and benchmarks of
/// restart latency use it), but with no attempt limit a crash loop then
/// forks as fast as it can: one warning, naming every such process.
pub fn check_backoff(processes: &BTreeMap<String, Process>, r: &mut Report) {
    let spinning: Vec<&str> = processes
        .values()
        .filter(|p| {
            p.enabled
                && p.backoff.initial.is_zero()
                && p.max_restart_attempts == 0
                && p.restart != RestartPolicy::Never
                && p.extra.schedule.is_none()
        })
        .map(|p| p.name.as_str())
        .collect();
    if !spinning.is_empty() {
        r.warn(
            "processes",
            format!(
                "{} restart with restart_backoff_initial 0 and no max_restart_attempts: a crash \
                 loop restarts as fast as sheepdog can fork; set restart_backoff_initial (e.g. \
                 100ms) or max_restart_attempts",
                spinning.join(", ")
            ),
        );
    }
}

/// `user:` gives no isolation from a TCP API without a token: every child
/// can connect to loopback and stop, signal or reload anything (a reload
/// of a config it can write runs its commands as root). Kept valid, as
/// the default; one warning names every child that runs as another uid.
pub fn check_api_users(
    processes: &BTreeMap<String, Process>,
    hooks: &Hooks,
    global: &Global,
    r: &mut Report,
) {
    let api = &global.api;
    if !api.enabled || api.port == 0 || api.auth.is_some() || api.auth_file.is_some() {
        return;
    }
    let ours = nix::unistd::geteuid().as_raw();
    let other = |c: &Option<Credentials>| c.as_ref().is_some_and(|c| c.uid != ours);
    let mut who: Vec<String> = processes
        .values()
        .filter(|p| p.enabled && other(&p.credentials))
        .map(|p| p.name.clone())
        .collect();
    let mut hooks_of = |owner: &str, h: &Hooks, stop: Option<&Hook>| {
        let lists = [&h.pre_start, &h.post_start, &h.pre_stop, &h.post_stop];
        for h in lists.into_iter().flatten().chain(stop) {
            if other(&h.credentials) {
                who.push(format!("{owner}hook:{}", h.name));
            }
        }
    };
    hooks_of("", hooks, None);
    for p in processes.values().filter(|p| p.enabled) {
        let owner = format!("{}/", p.name);
        hooks_of(&owner, &p.extra.hooks, p.shutdown.pre_stop_hook.as_ref());
    }
    if !who.is_empty() {
        r.warn(
            "global.api_auth",
            format!(
                "not set, so the API on {}:{} takes requests (stop, signal, reload, logs) from \
                 every child, also from those that run as another user than sheepdog: {}; set \
                 api_auth or api_auth_file, or use api_socket with api_port: 0 (mode 0600: \
                 other users cannot connect)",
                api.listen,
                api.port,
                who.join(", ")
            ),
        );
    }
}

/// The list form, a comma-separated string, or the map form
/// `{name: {condition: healthy}}` (`{name: healthy}` and `{name: ~}` too).
fn dependencies(raw: &Option<Value>, path: &str, r: &mut Report) -> Vec<Dependency> {
    let Some(v) = raw else {
        return Vec::new();
    };
    let mut out: Vec<Dependency> = Vec::new();
    match v {
        Value::Sequence(_) | Value::String(_) => match val::string_list(v) {
            Ok(names) => out.extend(
                r.unreported(path, names)
                    .into_iter()
                    .map(|name| Dependency {
                        name: name.trim().to_string(),
                        condition: None,
                    }),
            ),
            Err(e) => r.error(path, e),
        },
        Value::Mapping(m) => {
            for (k, spec) in m {
                let Value::String(name) = k else {
                    r.error(path, format!("key {} is not a process name", describe(k)));
                    continue;
                };
                let at = join(path, name);
                let cond = match spec {
                    Value::Null => None,
                    Value::String(_) => r.get(&Some(spec.clone()), &at, condition),
                    Value::Mapping(inner) => {
                        let mut c = None;
                        for (ik, iv) in inner {
                            match ik.as_str() {
                                Some("condition") => {
                                    c = r.get(&Some(iv.clone()), under(&at)("condition"), condition)
                                }
                                Some(other) => r.error(
                                    under(&at)(other),
                                    format!("unknown key{}", hint_or(other, &["condition"])),
                                ),
                                None => r.error(&at, format!("key {} is not a name", describe(ik))),
                            }
                        }
                        c
                    }
                    other => {
                        r.error(
                            &at,
                            format!("expected {{condition: ...}}, got {}", describe(other)),
                        );
                        None
                    }
                };
                out.push(Dependency {
                    name: name.clone(),
                    condition: cond,
                });
            }
        }
        other => r.error(
            path,
            format!(
                "expected a list of process names or a map {{name: {{condition: ...}}}}, got {}",
                describe(other)
            ),
        ),
    }
    out
}

fn hint_or(word: &str, candidates: &[&str]) -> String {
    let h = suggest::hint(word, candidates.iter().copied());
    if h.is_empty() {
        format!("; expected {}", candidates.join(", "))
    } else {
        h
    }
}

/// Checks across processes: dependencies name defined, enabled, other
/// processes, once each, with a condition the dependency can meet.
pub fn check_dependencies(processes: &BTreeMap<String, Process>, r: &mut Report) {
    let names: Vec<&str> = processes.keys().map(String::as_str).collect();
    for (name, proc_) in processes {
        let path = join(&join("processes", name), "depends_on");
        let mut seen: Vec<&str> = Vec::new();
        for dep in &proc_.depends_on {
            let d = dep.name.as_str();
            if seen.contains(&d) {
                r.error(&path, format!("{} is listed twice", quote(d)));
                continue;
            }
            seen.push(d);
            if d == name {
                r.error(
                    &path,
                    format!(
                        "{} depends on itself; expected other process names",
                        quote(d)
                    ),
                );
                continue;
            }
            let Some(target) = processes.get(d) else {
                if r.is_full() {
                    r.error(&path, "unknown process");
                    continue;
                }
                r.error(
                    &path,
                    format!(
                        "unknown process {}{}",
                        quote(d),
                        match suggest::closest(d, names.iter().copied()) {
                            Some(c) => format!("; did you mean {c:?}?"),
                            None if names.len() <= 10 =>
                                format!("; expected one of {}", names.join(", ")),
                            None => "; expected a process defined under processes".to_string(),
                        }
                    ),
                );
                continue;
            };
            if !proc_.enabled {
                continue;
            }
            if !target.enabled {
                r.error(
                    &path,
                    format!(
                        "{} is disabled (enabled: false); enable it or remove the dependency",
                        quote(d)
                    ),
                );
                continue;
            }
            if target.extra.schedule.is_some() {
                r.error(
                    &path,
                    format!(
                        "{} is a scheduled job; processes cannot wait for it",
                        quote(d)
                    ),
                );
                continue;
            }
            match dep.condition {
                Some(Condition::Completed | Condition::CompletedSuccessfully)
                    if target.kind != ProcessType::Oneshot =>
                {
                    r.error(
                        join(&path, d),
                        format!(
                            "condition completed needs a oneshot process; {} is a longrun",
                            quote(d)
                        ),
                    );
                }
                Some(Condition::Healthy) if !target.has_readiness_check() => {
                    r.error(
                        join(&path, d),
                        format!(
                            "condition healthy needs a readiness check on {} (health_check with mode readiness or both, or declared ports)",
                            quote(d)
                        ),
                    );
                }
                _ => {}
            }
        }
    }
}

/// Whether a probe target uses the `{port}` template.
fn uses_port_template(probe: &crate::config::extra::Probe) -> bool {
    use crate::config::extra::Probe;
    match probe {
        Probe::Tcp { address } => address.contains("{port}"),
        Probe::Http { url, .. } => url.contains("{port}"),
        Probe::Exec { command } => command.iter().any(|a| a.contains("{port}")),
    }
}
