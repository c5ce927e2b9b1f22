//! `global:` → `model::Global` (with `GlobalExtra`), applying defaults,
//! the legacy `restart_backoff`, and the policy for seed keys: ignored ones
//! are accepted with a warning; unsupported features (TLS, ACLs, tracing)
//! are accepted only while disabled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::super::extra::{GlobalExtra, Readiness, ReadinessMode};
use super::super::model::{Api, Global, LogFormat, LogLevel, Metrics, RestartPolicy};
use super::super::raw::{RawAcl, RawGlobal, RawTls, V};
use super::super::report::{under, KeyPath, Report};
use super::super::value::{self as val, describe, quote};
use super::hooks::positive_duration;

pub const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("debug", LogLevel::Debug),
    ("info", LogLevel::Info),
    ("warn", LogLevel::Warn),
    ("warning", LogLevel::Warn),
    ("error", LogLevel::Error),
];

pub const RESTART_POLICIES: &[(&str, RestartPolicy)] = &[
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
];

const MIB: u64 = 1 << 20;

pub fn build(raw: &RawGlobal, r: &mut Report) -> Global {
    let p = under("global");
    let secs = Duration::from_secs;

    let shutdown_timeout = r.get_or(
        &raw.shutdown_timeout,
        p("shutdown_timeout"),
        val::duration,
        secs(30),
    );
    if shutdown_timeout.is_zero() {
        r.warn(
            p("shutdown_timeout"),
            "0 leaves no time for a graceful stop: every process gets SIGKILL as soon as a \
             shutdown begins",
        );
    }
    let log_format = r.get_or(
        &raw.log_format,
        p("log_format"),
        |v| val::choice(v, &[("text", LogFormat::Text), ("json", LogFormat::Json)]),
        LogFormat::Text,
    );
    let log_level = r.get_or(&raw.log_level, p("log_level"), level, LogLevel::Info);
    let restart_policy = r.get_or(
        &raw.restart_policy,
        p("restart_policy"),
        |v| val::choice(v, RESTART_POLICIES),
        RestartPolicy::Always,
    );
    let max_restart_attempts =
        restart_attempts(&raw.max_restart_attempts, p("max_restart_attempts"), 0, r);

    // Legacy `restart_backoff: N` seeds initial = N and max = 12N.
    let legacy = r.get(&raw.restart_backoff, p("restart_backoff"), val::duration);
    if legacy.is_some() {
        r.warn(
            p("restart_backoff"),
            "deprecated; use restart_backoff_initial and restart_backoff_max",
        );
    }
    let restart_backoff_initial = r.get_or(
        &raw.restart_backoff_initial,
        p("restart_backoff_initial"),
        val::duration,
        legacy.unwrap_or(secs(1)),
    );
    let restart_backoff_max = r.get_or(
        &raw.restart_backoff_max,
        p("restart_backoff_max"),
        val::duration,
        legacy.map_or(secs(60), |l| l.saturating_mul(12)),
    );
    // Blamed on the key written (`restart_backoff_max: 0` alone is not
    // initial's fault, nor is `restart_backoff_max: 1s` under the legacy
    // `restart_backoff: 5s`, which wrote no restart_backoff_initial).
    super::process::backoff_order(
        "global",
        restart_backoff_initial,
        restart_backoff_max,
        raw.restart_backoff_initial.is_some(),
        if legacy.is_some() {
            ", from restart_backoff"
        } else {
            ""
        },
        r,
    );
    let restart_reset_after = r.get_or(
        &raw.restart_reset_after,
        p("restart_reset_after"),
        positive_duration,
        secs(60),
    );
    let dependency_timeout = r.get_or(
        &raw.dependency_timeout,
        p("dependency_timeout"),
        positive_duration,
        secs(300),
    );

    let api = api(raw, r);
    let metrics = metrics(raw, r);
    if api.enabled
        && metrics.enabled
        && api.port != 0
        && api.port == metrics.port
        && overlaps(&api.listen, &metrics.listen)
    {
        r.error(
            p("metrics_port"),
            format!(
                "{} is also api_port; expected two different ports",
                metrics.port
            ),
        );
    }

    let extra = extra(raw, r);
    ignored(raw, r);
    unsupported(raw, r);

    Global {
        shutdown_timeout,
        log_format,
        log_level,
        restart_policy,
        max_restart_attempts,
        restart_backoff_initial,
        restart_backoff_max,
        restart_reset_after,
        dependency_timeout,
        api,
        metrics,
        extra,
    }
}

/// `max_restart_attempts` (global or a process's): 0 = unlimited, and a
/// negative number, the seed's "unlimited", is read as 0 with a warning.
pub fn restart_attempts(raw: &V, path: impl KeyPath + Copy, default: u32, r: &mut Report) -> u32 {
    match r.get(raw, path, val::integer) {
        None => default,
        Some(n) if n < 0 => {
            r.warn(
                path,
                format!("{n} is read as 0 (unlimited); write 0, which means unlimited here"),
            );
            0
        }
        Some(n) => u32::try_from(n).unwrap_or_else(|_| {
            r.error(
                path,
                format!(
                    "invalid value {n}; expected an integer from 0 to {}",
                    u32::MAX
                ),
            );
            0
        }),
    }
}

/// A log level (`warning` is accepted for `warn`).
pub fn level(v: &Value) -> Result<LogLevel, String> {
    val::choice(v, LOG_LEVELS).map_err(|e| e.replace(", warning", ""))
}

/// Why the API and metrics cannot be enabled in a build without them.
const NO_API: &str = "true, but this build of sheepdog leaves out the HTTP API and metrics \
    (cargo feature `api`); expected false (the default here), or a default build";

/// `api_enabled` / `metrics_enabled`: on by default where the build has
/// the `api` feature, and an error when turned on in a build without it.
fn api_switch(raw: &V, path: &str, r: &mut Report) -> bool {
    let built = cfg!(feature = "api");
    let enabled = r.get_or(raw, path, val::boolean, built);
    if enabled && !built {
        r.error(path, NO_API);
    }
    enabled
}

fn api(raw: &RawGlobal, r: &mut Report) -> Api {
    let p = under("global");
    let enabled = api_switch(&raw.api_enabled, &p("api_enabled").path(), r);
    let port = r.get_or(
        &raw.api_port,
        p("api_port"),
        |v| val::uint(v, 0, u64::from(u16::MAX)).map(|n| u16::try_from(n).unwrap_or(0)),
        9180,
    );
    let listen = r.get_or(
        &raw.api_listen,
        p("api_listen"),
        listen_address,
        "127.0.0.1".into(),
    );
    let socket = r
        .get(&raw.api_socket, p("api_socket"), socket_path)
        .map(PathBuf::from);
    let auth = r
        .get(&raw.api_auth, p("api_auth"), api_token)
        .filter(|s| !s.is_empty());
    let auth_file = r
        .get(&raw.api_auth_file, p("api_auth_file"), val::text)
        .map(PathBuf::from);
    let insecure = r.get_or(&raw.api_insecure, p("api_insecure"), val::boolean, false);
    let max_request_body = r.get_or(
        &raw.api_max_request_body,
        p("api_max_request_body"),
        |v| {
            let n = val::size(v)?;
            if (1024..=100 * MIB).contains(&n) {
                Ok(n)
            } else {
                Err(format!(
                    "invalid value {}; expected a size from 1KiB to 100MiB",
                    describe(v)
                ))
            }
        },
        MIB,
    );
    let rate_limit = r.get_or(
        &raw.api_rate_limit,
        p("api_rate_limit"),
        |v| val::uint32(v, 0, 100_000),
        100,
    );
    let rate_burst = r.get_or(
        &raw.api_rate_burst,
        p("api_rate_burst"),
        |v| val::uint32(v, 1, 100_000),
        200,
    );
    if auth.is_some() && auth_file.is_some() {
        r.error(
            p("api_auth_file"),
            "api_auth is also set; expected only one of api_auth and api_auth_file",
        );
    }
    if enabled {
        if port == 0 && socket.is_none() {
            r.error(p("api_port"), "0 disables the TCP listener, and api_socket is not set; expected a port, an api_socket, or api_enabled: false");
        }
        let loopback = is_loopback(&listen);
        if port != 0 && !loopback && auth.is_none() && auth_file.is_none() && !insecure {
            r.error(
                p("api_listen"),
                format!(
                    "{} is reachable from other hosts and the API has no api_auth; set api_auth (or api_auth_file), \
                     listen on 127.0.0.1, or set api_insecure: true to accept the risk",
                    quote(&listen)
                ),
            );
        }
    }
    Api {
        enabled,
        port,
        listen,
        socket,
        auth,
        auth_file,
        insecure,
        max_request_body,
        rate_limit,
        rate_burst,
    }
}

/// `api_auth`: a YAML string, since YAML rewrites a number before sheepdog
/// sees it (`0x1F` would be the token `31`, `1.5e3` would be `1500.0`).
/// Empty means no token. Errors never show the value: it is a secret.
fn api_token(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if s.is_empty() => Ok(String::new()),
        Value::String(s) => check_token(s).map(|()| s.clone()),
        Value::Number(_) => Err("is a YAML number, not the text written: YAML rewrites \
             hex, exponents and long digit strings before sheepdog sees them; \
             quote it: api_auth: \"...\""
            .into()),
        Value::Bool(_) => {
            Err("is a YAML boolean; expected a string (the bearer token): quote it".into())
        }
        other => Err(format!(
            "expected a string (the bearer token), got {}",
            describe(other)
        )),
    }
}

/// A bearer token no request could match is an error: HTTP header values
/// are trimmed, so leading or trailing whitespace can never be sent, and a
/// control character cannot be sent either. For `api_auth`,
/// `SHEEPDOG_GLOBAL_API_AUTH` and the content of `api_auth_file` (after
/// its trailing whitespace is trimmed). The message never shows the token.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.trim().is_empty() {
        return Err("the token is only whitespace; expected a token, or nothing for none".into());
    }
    if token.starts_with(char::is_whitespace) || token.ends_with(char::is_whitespace) {
        return Err(
            "the token has leading or trailing whitespace, which no request can send \
                    (HTTP trims header values); remove it"
                .into(),
        );
    }
    if token.contains(char::is_control) {
        return Err(
            "the token contains a control character (a newline, tab or other \
                    non-printing character), which no request can send; remove it"
                .into(),
        );
    }
    Ok(())
}

fn metrics(raw: &RawGlobal, r: &mut Report) -> Metrics {
    let p = under("global");
    let enabled = api_switch(&raw.metrics_enabled, &p("metrics_enabled").path(), r);
    let port = r.get_or(&raw.metrics_port, p("metrics_port"), val::port, 9090);
    let path = r.get_or(
        &raw.metrics_path,
        p("metrics_path"),
        |v| {
            let s = val::text(v)?;
            // A query or fragment is never part of the path a request
            // is matched by, and a control character cannot be sent.
            let odd = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#');
            if s.starts_with('/') && !s.contains(odd) {
                Ok(s)
            } else {
                Err(format!(
                    "invalid value {}; expected a URL path starting with /, without spaces, ? or #",
                    quote(&s)
                ))
            }
        },
        "/metrics".into(),
    );
    let listen = r.get_or(
        &raw.metrics_listen,
        p("metrics_listen"),
        listen_address,
        "127.0.0.1".into(),
    );
    Metrics {
        enabled,
        port,
        path,
        listen,
    }
}

/// An IP address to bind (IPv6 with or without brackets) or `localhost`.
/// A unix socket path fits `sun_path` (108 bytes with its NUL): a longer
/// one would only fail when the API starts.
fn socket_path(v: &Value) -> Result<String, String> {
    let path = val::text(v)?;
    if path.len() > 107 {
        return Err(format!(
            "the path is {} bytes; expected at most 107 (a unix socket address holds 108 with its NUL)",
            path.len()
        ));
    }
    Ok(path)
}

fn listen_address(v: &Value) -> Result<String, String> {
    let s = val::text(v)?;
    let t = s.trim();
    let bare = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    if bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok() {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "invalid value {}; expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1",
            quote(&s)
        ))
    }
}

/// A listen address only this machine can reach: `localhost`, or a
/// loopback address in any spelling (`::ffff:127.0.0.1` included).
pub fn is_loopback(listen: &str) -> bool {
    listen.eq_ignore_ascii_case("localhost")
        || listen
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether two listen addresses (as `listen_address` returns them) can
/// hold the same port. Compared as addresses, not text: `::1` is
/// `0:0:0:0:0:0:0:1`, and `localhost` is both loopback addresses (no
/// lookup: that is what it binds on any sane system).
fn overlaps(a: &str, b: &str) -> bool {
    let ips = |s: &str| -> Vec<IpAddr> {
        if s.eq_ignore_ascii_case("localhost") {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        } else {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .into_iter()
                .collect()
        }
    };
    let (a, b) = (ips(a), ips(b));
    a.iter().chain(&b).any(IpAddr::is_unspecified) || a.iter().any(|ip| b.contains(ip))
}

fn extra(raw: &RawGlobal, r: &mut Report) -> GlobalExtra {
    let p = under("global");
    let d = GlobalExtra::default();
    let readiness_file = r
        .get(&raw.readiness_file, p("readiness_file"), val::text)
        .map(PathBuf::from);
    let block = raw.readiness.as_ref().and_then(|b| {
        let bp = under("global.readiness");
        let enabled = r.get_or(&b.enabled, bp("enabled"), val::boolean, true);
        let path = r.get_or(&b.path, bp("path"), val::text, "/tmp/sheepdog-ready".into());
        let mode = r.get_or(
            &b.mode,
            bp("mode"),
            |v| {
                val::choice(
                    v,
                    &[
                        ("all_healthy", ReadinessMode::AllHealthy),
                        ("all_running", ReadinessMode::AllRunning),
                    ],
                )
            },
            ReadinessMode::AllHealthy,
        );
        let content = r.get(&b.content, bp("content"), val::string);
        let processes = r.get_or(&b.processes, bp("processes"), val::string_list, Vec::new());
        let processes = r.unreported(&bp("processes").spell(), processes);
        enabled.then(|| Readiness {
            path: PathBuf::from(path),
            mode,
            content,
            processes,
        })
    });
    let readiness = match (readiness_file, block) {
        (Some(_), Some(_)) => {
            r.error(p("readiness_file"), "the readiness block is also enabled; expected only one of readiness_file and readiness");
            None
        }
        (Some(path), None) => Some(Readiness {
            path,
            mode: ReadinessMode::AllHealthy,
            content: None,
            processes: Vec::new(),
        }),
        (None, block) => block,
    };
    let log_file = r
        .get(&raw.log_file, p("log_file"), val::text)
        .map(PathBuf::from);
    let log_buffer_lines = r.get_or(
        &raw.log_buffer_lines,
        p("log_buffer_lines"),
        |v| val::uint(v, 0, 1_000_000).map(|n| usize::try_from(n).unwrap_or(1_000_000)),
        d.log_buffer_lines,
    );
    let max_process_scale = r.get_or(
        &raw.max_process_scale,
        p("max_process_scale"),
        |v| val::uint32(v, 1, 1000),
        d.max_process_scale,
    );
    let schedule_history_size = r.get_or(
        &raw.schedule_history_size,
        p("schedule_history_size"),
        |v| val::uint32(v, 0, 10_000),
        d.schedule_history_size,
    );
    let oneshot_history_max_entries = r.get_or(
        &raw.oneshot_history_max_entries,
        p("oneshot_history_max_entries"),
        |v| val::uint32(v, 0, 100_000),
        d.oneshot_history_max_entries,
    );
    let oneshot_history_max_age = r.get_or(
        &raw.oneshot_history_max_age,
        p("oneshot_history_max_age"),
        val::duration,
        d.oneshot_history_max_age,
    );
    let process_start_timeout = r.get_or(
        &raw.process_start_timeout,
        p("process_start_timeout"),
        positive_duration,
        d.process_start_timeout,
    );
    GlobalExtra {
        readiness,
        log_file,
        log_buffer_lines,
        max_process_scale,
        schedule_history_size,
        oneshot_history_max_entries,
        oneshot_history_max_age,
        process_start_timeout,
    }
}

/// Seed keys that do nothing in sheepdog: type-checked, then a warning.
fn ignored(raw: &RawGlobal, r: &mut Report) {
    type Check = fn(&Value) -> Result<(), String>;
    let duration: Check = |v| val::duration(v).map(drop);
    let boolean: Check = |v| val::boolean(v).map(drop);
    let count: Check = |v| val::uint(v, 0, u64::MAX).map(drop);
    let threshold: Check = |v| {
        let f = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match f {
            Some(f) if (0.0..=2.0).contains(&f) => Ok(()),
            _ => Err(format!(
                "invalid value {}; expected a number from 0 to 2",
                describe(v)
            )),
        }
    };
    let reap: Check = |v| {
        let d = val::duration(v)?;
        if (Duration::from_millis(100)..=Duration::from_secs(60)).contains(&d) {
            Ok(())
        } else {
            Err(format!(
                "invalid value {}; expected a duration from 100ms to 60s",
                describe(v)
            ))
        }
    };
    let keys: [(&str, &Option<Value>, Check, &str); 10] = [
        (
            "health_check_interval",
            &raw.health_check_interval,
            duration,
            "each health_check has its own period",
        ),
        (
            "zombie_reap_interval",
            &raw.zombie_reap_interval,
            reap,
            "sheepdog reaps on SIGCHLD, not on an interval",
        ),
        (
            "log_timestamps",
            &raw.log_timestamps,
            boolean,
            "log lines always carry a timestamp",
        ),
        (
            "process_stop_timeout",
            &raw.process_stop_timeout,
            duration,
            "each process uses shutdown.timeout",
        ),
        (
            "resource_metrics_enabled",
            &raw.resource_metrics_enabled,
            boolean,
            "per-process resource sampling is not implemented",
        ),
        (
            "resource_metrics_interval",
            &raw.resource_metrics_interval,
            duration,
            "per-process resource sampling is not implemented",
        ),
        (
            "resource_metrics_max_samples",
            &raw.resource_metrics_max_samples,
            count,
            "per-process resource sampling is not implemented",
        ),
        (
            "audit_enabled",
            &raw.audit_enabled,
            boolean,
            "there is no separate audit log; control actions are logged",
        ),
        (
            "health_check_strict",
            &raw.health_check_strict,
            boolean,
            "health check settings are always validated at load",
        ),
        (
            "autotune_memory_threshold",
            &raw.autotune_memory_threshold,
            threshold,
            "PHP-FPM auto-tuning is not part of sheepdog",
        ),
    ];
    for (key, v, check, why) in keys {
        let path = under("global")(key);
        if let Some(v) = v {
            match check(v) {
                Ok(()) => r.warn(
                    path,
                    format!("accepted for PHPeek PM compatibility and ignored: {why}"),
                ),
                Err(e) => r.error(path, e),
            }
        }
    }
}

/// Seed features sheepdog will not build: fine while disabled or absent.
fn unsupported(raw: &RawGlobal, r: &mut Report) {
    let tls = |block: &Option<RawTls>, key: &str, r: &mut Report| {
        if let Some(b) = block {
            let path = format!("global.{key}.enabled");
            if r.get_or(&b.enabled, &path, val::boolean, false) {
                r.error(&path, "TLS is not supported; terminate TLS in a reverse proxy or sidecar in front of sheepdog, or set enabled: false");
            }
        }
    };
    tls(&raw.api_tls, "api_tls", r);
    tls(&raw.metrics_tls, "metrics_tls", r);
    let acl = |block: &Option<RawAcl>, key: &str, r: &mut Report| {
        if let Some(b) = block {
            let path = format!("global.{key}.enabled");
            if r.get_or(&b.enabled, &path, val::boolean, false) {
                r.error(&path, "IP allow/deny lists are not supported; listen on 127.0.0.1 or a unix socket (api_socket), or filter in a proxy or network policy; or set enabled: false");
            }
        }
    };
    acl(&raw.api_acl, "api_acl", r);
    acl(&raw.metrics_acl, "metrics_acl", r);
    if r.get_or(
        &raw.tracing_enabled,
        "global.tracing_enabled",
        val::boolean,
        false,
    ) {
        r.error(
            "global.tracing_enabled",
            "tracing (OpenTelemetry) is not supported; expected false",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Global, Report) {
        let raw = RawGlobal::take(serde_yaml::from_str(yaml).unwrap());
        let mut r = Report::default();
        let g = build(&raw, &mut r);
        (g, r)
    }

    fn ok(yaml: &str) -> Global {
        let (g, r) = run(yaml);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        g
    }

    fn warnings_of(yaml: &str) -> Vec<String> {
        let (_, r) = run(yaml);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        r.warnings()
    }

    fn err(yaml: &str) -> Vec<String> {
        let (_, r) = run(yaml);
        assert!(!r.problems.is_empty(), "expected an error for {yaml}");
        r.problems
    }

    #[test]
    fn loopback_in_any_spelling() {
        for yes in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "example.com",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn defaults() {
        let g = ok("{}");
        assert_eq!(g.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(g.log_format, LogFormat::Text);
        assert_eq!(g.log_level, LogLevel::Info);
        assert_eq!(g.restart_policy, RestartPolicy::Always);
        assert_eq!(g.max_restart_attempts, 0);
        assert_eq!(g.restart_backoff_initial, Duration::from_secs(1));
        assert_eq!(g.restart_backoff_max, Duration::from_secs(60));
        assert_eq!(g.restart_reset_after, Duration::from_secs(60));
        assert_eq!(g.dependency_timeout, Duration::from_secs(300));
        assert_eq!(
            g.api,
            Api {
                enabled: true,
                port: 9180,
                listen: "127.0.0.1".into(),
                socket: None,
                auth: None,
                auth_file: None,
                insecure: false,
                max_request_body: MIB,
                rate_limit: 100,
                rate_burst: 200,
            }
        );
        assert_eq!(
            g.metrics,
            Metrics {
                enabled: true,
                port: 9090,
                path: "/metrics".into(),
                listen: "127.0.0.1".into()
            }
        );
        assert_eq!(g.extra, GlobalExtra::default());
    }

    #[test]
    fn values_and_strings() {
        let g = ok("{shutdown_timeout: 1m, log_format: json, log_level: warning, restart_policy: on-failure, \
                    max_restart_attempts: '5', api_port: '8000', api_auth: '', metrics_enabled: no, \
                    api_max_request_body: 2MiB, log_buffer_lines: 10, max_process_scale: 7}");
        assert_eq!(g.shutdown_timeout, Duration::from_secs(60));
        assert_eq!(g.log_format, LogFormat::Json);
        assert_eq!(g.log_level, LogLevel::Warn);
        assert_eq!(g.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(g.max_restart_attempts, 5);
        assert_eq!(g.api.port, 8000);
        assert_eq!(g.api.auth, None);
        assert_eq!(g.api.max_request_body, 2 * MIB);
        assert!(!g.metrics.enabled);
        assert_eq!(g.extra.log_buffer_lines, 10);
        assert_eq!(g.extra.max_process_scale, 7);
    }

    #[test]
    fn legacy_backoff_and_negative_attempts() {
        let (g, r) = run("{restart_backoff: 5, max_restart_attempts: -1}");
        assert!(r.problems.is_empty());
        assert_eq!(g.restart_backoff_initial, Duration::from_secs(5));
        assert_eq!(g.restart_backoff_max, Duration::from_secs(60));
        assert_eq!(g.max_restart_attempts, 0);
        assert_eq!(r.warnings.len(), 2);
        let g = ok("{restart_backoff: 2, restart_backoff_max: 5s}");
        assert_eq!(g.restart_backoff_max, Duration::from_secs(5));
        assert_eq!(g.restart_backoff_initial, Duration::from_secs(2));
        assert!(
            err("{restart_backoff_initial: 2m, restart_backoff_max: 1m}")[0]
                .contains("expected initial <= max")
        );
    }

    #[test]
    fn bad_values_name_key_value_and_expectation() {
        assert_eq!(
            err("{log_level: loud}"),
            vec!["global.log_level: unknown value \"loud\"; expected one of debug, info, warn, error"]
        );
        assert_eq!(
            err("{restart_policy: sometimes}"),
            vec!["global.restart_policy: unknown value \"sometimes\"; expected one of always, on-failure, never"]
        );
        assert!(warnings_of("{shutdown_timeout: 0}")[0]
            .starts_with("global.shutdown_timeout: 0 leaves no time for a graceful stop"));
        assert!(err("{shutdown_timeout: -5}")[0]
            .starts_with("global.shutdown_timeout: invalid duration -5"));
        assert!(err("{api_port: 70000}")[0].contains("from 0 to 65535"));
        assert!(err("{metrics_port: 0}")[0].starts_with("global.metrics_port"));
        assert!(err("{metrics_path: metrics}")[0].contains("starting with /"));
        assert!(err("{api_listen: not-an-ip}")[0].contains("IP address"));
        assert!(err("{api_max_request_body: 1GiB}")[0].contains("100MiB"));
        assert!(err("{api_rate_burst: 0}")[0].starts_with("global.api_rate_burst"));
        assert!(err("{api_rate_limit: -1}")[0].starts_with("global.api_rate_limit"));
        let g = ok("{api_rate_limit: 0, api_rate_burst: 5}");
        assert_eq!((g.api.rate_limit, g.api.rate_burst), (0, 5));
        // Every problem is collected, not just the first.
        assert_eq!(
            err("{log_level: x, log_format: y, api_enabled: maybe}").len(),
            3
        );
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn api_exposure_rules() {
        assert!(err("{api_listen: 0.0.0.0}")[0].contains("api_insecure"));
        ok("{api_listen: 0.0.0.0, api_auth: secret}");
        ok("{api_listen: '::', api_insecure: true}");
        ok("{api_listen: '[::1]'}");
        ok("{api_listen: 0.0.0.0, api_enabled: false}");
        assert!(err("{api_port: 0}")[0].contains("api_socket"));
        ok("{api_port: 0, api_socket: /run/sheepdog.sock, api_listen: 0.0.0.0}");
        // Longer than sun_path holds: refused here, not when the API starts.
        let long = format!("/run/{}", "s".repeat(102));
        ok(&format!("{{api_socket: {long}}}"));
        let e = err(&format!("{{api_socket: {long}x}}"));
        assert!(
            e[0].starts_with("global.api_socket: the path is 108 bytes; expected at most 107"),
            "{e:?}"
        );
        assert!(err("{api_auth: a, api_auth_file: /x}")[0].contains("only one"));
        assert!(err("{api_port: 9000, metrics_port: 9000}")[0].contains("also api_port"));
        // The same address, spelled differently.
        for (a, m) in [
            ("localhost", "127.0.0.1"),
            ("'::1'", "localhost"),
            ("'::1'", "'0:0:0:0:0:0:0:1'"),
            ("'::ffff:127.0.0.1'", "127.0.0.1"),
        ] {
            let e = err(&format!(
                "{{api_port: 9000, metrics_port: 9000, api_listen: {a}, metrics_listen: {m}}}"
            ));
            assert!(
                e.iter().any(|e| e.contains("also api_port")),
                "{a} {m}: {e:?}"
            );
        }
        ok("{api_port: 9000, metrics_port: 9000, api_listen: '::1', metrics_listen: 127.0.0.1}");
        ok("{api_port: 9000, metrics_port: 9000, metrics_enabled: false}");
    }

    #[test]
    fn api_auth_is_a_string_a_request_can_send() {
        assert_eq!(ok("{api_auth: s3cr3t}").api.auth.as_deref(), Some("s3cr3t"));
        assert_eq!(ok("{api_auth: '0x1F'}").api.auth.as_deref(), Some("0x1F"));
        assert_eq!(ok("{api_auth: 'a bé'}").api.auth.as_deref(), Some("a bé"));
        // Numbers: YAML has already rewritten them (0x1F is 31, 1.5e3 is
        // 1500.0, 40 digits lose most of theirs), so none is taken.
        for n in [
            "0x1F",
            "1.5e3",
            "1234567890123456789012345678901234567890",
            "31",
        ] {
            let e = err(&format!("{{api_auth: {n}}}"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("global.api_auth: is a YAML number"),
                "{e:?}"
            );
            assert!(e[0].contains("quote it"), "{e:?}");
            assert!(!e[0].contains(n), "the token is shown: {e:?}");
        }
        // What no request can send; the message never shows the token.
        for (yaml, needle) in [
            (r"{api_auth: ' tok3n'}", "leading or trailing whitespace"),
            (r"{api_auth: 'tok3n '}", "leading or trailing whitespace"),
            (r#"{api_auth: "tok3n\n"}"#, "leading or trailing whitespace"),
            (r#"{api_auth: "tok3n\tx"}"#, "control character"),
            (r#"{api_auth: "tok3n\u0000x"}"#, "control character"),
            (r#"{api_auth: "tok3n\u007fx"}"#, "control character"),
        ] {
            let e = err(yaml);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].starts_with("global.api_auth: the token"), "{e:?}");
            assert!(e[0].contains(needle), "{yaml}: {e:?}");
            assert!(!e[0].contains("tok3n"), "the token is shown: {e:?}");
        }
        assert!(err("{api_auth: true}")[0].contains("boolean"));
        assert!(err("{api_auth: [a]}")[0].contains("got a list"));
        // Empty: no token, as before.
        assert_eq!(ok("{api_auth: ''}").api.auth, None);
    }

    #[test]
    fn ignored_keys_warn_and_are_type_checked() {
        let (_, r) = run("{health_check_interval: 10, log_timestamps: true, zombie_reap_interval: 1s, audit_enabled: false}");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.warnings.len(), 4);
        assert!(r.warnings[0].starts_with(
            "global.health_check_interval: accepted for PHPeek PM compatibility and ignored"
        ));
        assert!(err("{zombie_reap_interval: 10ms}")[0].contains("100ms to 60s"));
        assert!(err("{autotune_memory_threshold: 3}")[0].contains("0 to 2"));
        ok("{autotune_memory_threshold: 1.5}");
    }

    #[test]
    fn unsupported_features_only_when_disabled() {
        ok("{api_tls: {enabled: false, cert_file: /x}, metrics_acl: {enabled: false}, tracing_enabled: false, tracing_exporter: otlp-grpc}");
        assert!(err("{api_tls: {enabled: true}}")[0]
            .starts_with("global.api_tls.enabled: TLS is not supported; terminate TLS"));
        assert!(err("{metrics_acl: {enabled: yes}}")[0].contains("allow/deny"));
        assert!(err("{tracing_enabled: true}")[0].contains("tracing"));
    }

    #[test]
    fn readiness() {
        let g = ok("{readiness_file: /run/ready}");
        assert_eq!(g.extra.readiness.unwrap().path, PathBuf::from("/run/ready"));
        let g = ok("{readiness: {enabled: true, mode: all_running, processes: [web]}}");
        let rd = g.extra.readiness.unwrap();
        assert_eq!(rd.mode, ReadinessMode::AllRunning);
        assert_eq!(rd.path, PathBuf::from("/tmp/sheepdog-ready"));
        assert_eq!(rd.processes, vec!["web".to_string()]);
        assert_eq!(ok("{readiness: {enabled: false}}").extra.readiness, None);
        assert!(err("{readiness_file: /a, readiness: {path: /b}}")[0].contains("only one"));
        assert!(err("{readiness: {mode: sometimes}}")[0].contains("all_healthy, all_running"));
    }
}
