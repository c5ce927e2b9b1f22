//! Per-process blocks owned by later issues: `health_check`, `logging`,
//! the `schedule*` keys and `heartbeat`. Parsed, defaulted and validated
//! here so mistakes surface at load time, long before the feature runs.
//!
//! Convention: a block that is present is enabled unless it says
//! `enabled: false` (the seed's "present but off by default" is a trap);
//! a disabled block is still validated, then dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::super::cron;
use super::super::extra::{
    HealthCheck, HealthMode, Heartbeat, JsonLogging, LevelDetection, LogFile, Logging, Multiline,
    Probe, RedactionPattern, Schedule, StreamMode, Timezone,
};
use super::super::model::LogLevel;
use super::super::raw::{
    RawHealthCheck, RawHeartbeat, RawJsonLogging, RawLevelDetection, RawLogFile, RawLogging,
    RawMultiline, RawProcess, RawRedaction,
};
use super::super::report::{index, join, under, Report};
use super::super::value::{self as val, describe, quote};
use super::global::level;
use super::hooks::{env_map, period, positive_duration};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
    Exec,
}

/// Why HTTP probes and heartbeats are refused by a build without them.
const NO_HTTP: &str = "this build of sheepdog leaves out outgoing HTTP (cargo feature `http`), \
    used by http health checks and heartbeats; expected a tcp or exec check and no \
    heartbeat here, or a default build";

pub fn health_check(raw: &RawHealthCheck, path: &str, r: &mut Report) -> Option<HealthCheck> {
    let p = under(path);
    let before = r.problems.len();
    let kind = r.get(&raw.kind, p("type"), |v| {
        val::choice(
            v,
            &[
                ("tcp", Kind::Tcp),
                ("http", Kind::Http),
                ("exec", Kind::Exec),
            ],
        )
    });
    if raw.kind.is_none() {
        r.error(p("type"), "missing; expected one of tcp, http, exec");
    }
    let for_kind = |k: Kind, key: &str, v: &Option<Value>, r: &mut Report| {
        if v.is_some() && kind.is_some_and(|have| have != k) {
            r.warn(
                p(key),
                "ignored: it does not apply to this health check type",
            );
        }
    };
    for_kind(Kind::Tcp, "address", &raw.address, r);
    for_kind(Kind::Http, "url", &raw.url, r);
    for_kind(Kind::Http, "expected_status", &raw.expected_status, r);
    for_kind(Kind::Http, "follow_redirects", &raw.follow_redirects, r);
    for_kind(Kind::Exec, "command", &raw.command, r);
    let required = |v: &Option<Value>, key: &str, what: &str, r: &mut Report| {
        if v.is_none() {
            r.error(p(key), format!("missing; required by type {what}"));
        }
    };
    let probe = match kind {
        Some(Kind::Tcp) => {
            required(&raw.address, "address", "tcp", r);
            r.get(&raw.address, p("address"), address)
                .map(|address| Probe::Tcp { address })
        }
        Some(Kind::Http) => {
            if !cfg!(feature = "http") {
                r.error(p("type"), NO_HTTP);
            }
            required(&raw.url, "url", "http", r);
            let url = r.get(&raw.url, p("url"), http_url);
            if url.as_deref().is_some_and(is_https) {
                r.warn(
                    p("url"),
                    "every probe will fail: https is not supported (sheepdog is built without \
                     TLS); probe the service over http://, e.g. on 127.0.0.1",
                );
            }
            let expected_status = r.get_or(
                &raw.expected_status,
                p("expected_status"),
                statuses,
                vec![(200, 399)],
            );
            let follow_redirects = r.get_or(
                &raw.follow_redirects,
                p("follow_redirects"),
                val::boolean,
                false,
            );
            url.map(|url| Probe::Http {
                url,
                expected_status,
                follow_redirects,
            })
        }
        Some(Kind::Exec) => {
            required(&raw.command, "command", "exec", r);
            r.get(&raw.command, p("command"), val::argv)
                .map(|command| Probe::Exec { command })
        }
        None => None,
    };
    let secs = Duration::from_secs;
    let initial_delay = r.get_or(
        &raw.initial_delay,
        p("initial_delay"),
        val::duration,
        secs(5),
    );
    let period = r.get_or(&raw.period, p("period"), period, secs(10));
    let timeout = r.get_or(&raw.timeout, p("timeout"), positive_duration, secs(3));
    let failure_threshold = r.get_or(
        &raw.failure_threshold,
        p("failure_threshold"),
        |v| val::uint32(v, 1, 1000),
        3,
    );
    let success_threshold = r.get_or(
        &raw.success_threshold,
        p("success_threshold"),
        |v| val::uint32(v, 1, 1000),
        1,
    );
    let mode = r.get_or(
        &raw.mode,
        p("mode"),
        |v| {
            val::choice(
                v,
                &[
                    ("liveness", HealthMode::Liveness),
                    ("readiness", HealthMode::Readiness),
                    ("both", HealthMode::Both),
                ],
            )
        },
        HealthMode::Both,
    );
    let startup_timeout = r.get(
        &raw.startup_timeout,
        p("startup_timeout"),
        positive_duration,
    );
    // Durations as they are written, not Rust's Debug ("120s" for 2m).
    let fmt = crate::config::format_duration;
    if timeout >= period {
        r.warn(
            p("timeout"),
            format!(
                "{} is not shorter than period ({}); probes may overlap their schedule",
                fmt(timeout),
                fmt(period)
            ),
        );
    }
    if let Some(s) = startup_timeout.filter(|s| *s <= initial_delay) {
        r.warn(
            p("startup_timeout"),
            format!(
                "{} is not longer than initial_delay ({}); the first probe that fails fails the start",
                fmt(s),
                fmt(initial_delay)
            ),
        );
    }
    if r.problems.len() != before {
        return None;
    }
    Some(HealthCheck {
        probe: probe?,
        initial_delay,
        period,
        timeout,
        failure_threshold,
        success_threshold,
        mode,
        startup_timeout,
    })
}

/// `s` as the probe of a sample instance will have it (`probe::expand`),
/// to check the form every instance's value will have.
fn sampled(s: &str) -> String {
    crate::probe::expand(s, &crate::spawn::Identity::new("x", 1), Some(80))
}

/// `host:port` with a non-empty host and a port 1..=65535, or the
/// per-instance template `{port}`.
fn address(v: &Value) -> Result<String, String> {
    let s = val::text(v)?;
    // As the probe will split it.
    let ok = crate::resolve::split(&sampled(&s)).is_some_and(|(_, port)| port > 0);
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "invalid value {}; expected host:port, e.g. 127.0.0.1:9000 or 127.0.0.1:{{port}}",
            quote(&s)
        ))
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

fn http_url(v: &Value) -> Result<String, String> {
    let s = val::text(v)?;
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !s.contains(char::is_whitespace) => url_form(s),
        _ => Err(format!(
            "invalid value {}; expected an http:// or https:// URL, e.g. http://127.0.0.1/health",
            quote(&s)
        )),
    }
}

/// `http_url` for a heartbeat ping: its path and query hold the monitoring
/// service's key, so an error shows the URL as the logs do, `/…` for them
/// (`heartbeat::origin`); the scheme and host, what is usually wrong, stay.
fn ping_url(v: &Value) -> Result<String, String> {
    http_url(v).map_err(|e| {
        // The message's first quoted text is the URL as quoted: perhaps
        // escaped (a secret file's trailing `\n`), cut after 60 characters
        // (`"http://…"…`), its password as ***. What `origin` hides goes
        // from that, not from the URL as written.
        let Some((head, quoted)) = e.split_once('"') else {
            return e;
        };
        let mut escaped = false;
        let end = quoted
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map_or(quoted.len(), |(i, _)| i);
        let (url, rest) = quoted.split_at(end);
        let shown = crate::heartbeat::origin(url);
        // A cut URL's `…` goes with what was hidden.
        let rest = match rest.strip_prefix("\"…") {
            Some(after) if shown != url => after,
            _ => rest.get(1..).unwrap_or(""),
        };
        format!("{head}\"{shown}\"{rest}")
    })
}

/// What the HTTP client would refuse about `s` (templates given sample
/// values), now rather than at every probe. An https URL passes here: it
/// fails at run time with its own message (docs/health-checks.md).
#[cfg(feature = "http")]
fn url_form(s: String) -> Result<String, String> {
    match crate::http_client::url_problem(&sampled(&s)) {
        Some(why) => Err(why),
        None => Ok(s),
    }
}

/// Without the `http` feature no URL is used (refused at load).
#[cfg(not(feature = "http"))]
fn url_form(s: String) -> Result<String, String> {
    Ok(s)
}

/// `200`, `"200-399"`, or a list of those.
fn statuses(v: &Value) -> Result<Vec<(u16, u16)>, String> {
    const EXPECTED: &str = "an HTTP status (200), a range (\"200-399\") or a list of them";
    let one = |v: &Value| -> Result<(u16, u16), String> {
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        let bad = || format!("invalid value {}; expected {EXPECTED}", describe(v));
        match v {
            Value::Number(n) => {
                let c = n
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| (100..=599).contains(c));
                c.map(|c| (c, c)).ok_or_else(bad)
            }
            Value::String(s) => match s.split_once('-') {
                Some((a, b)) => match (code(a), code(b)) {
                    (Some(a), Some(b)) if a <= b => Ok((a, b)),
                    _ => Err(bad()),
                },
                None => code(s).map(|c| (c, c)).ok_or_else(bad),
            },
            _ => Err(bad()),
        }
    };
    match v {
        Value::Sequence(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Sequence(_) => Err(format!("empty list; expected {EXPECTED}")),
        other => one(other).map(|r| vec![r]),
    }
}

/// `true`/`false` (and their spellings) or `"inherit"`.
fn stream(v: &Value) -> Result<StreamMode, String> {
    if let Value::String(s) = v {
        if s.trim().eq_ignore_ascii_case("inherit") {
            return Ok(StreamMode::Inherit);
        }
    }
    match val::boolean(v) {
        Ok(true) => Ok(StreamMode::Log),
        Ok(false) => Ok(StreamMode::Discard),
        Err(_) => Err(val::invalid(
            v,
            "true (log it), false (discard it) or \"inherit\"",
        )),
    }
}

/// A regular expression (regex-lite syntax), compiled here so a bad one is
/// a configuration error naming its key.
fn regex(v: &Value) -> Result<String, String> {
    let s = val::text(v)?;
    check_regex(&s)?;
    Ok(s)
}

fn check_regex(s: &str) -> Result<(), String> {
    regex_lite::Regex::new(s).map(|_| ()).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or("").trim().to_string();
        format!("invalid regular expression {}: {first}", quote(s))
    })
}

/// A list of regexes; each bad one is reported at its index.
fn regex_list(v: &Option<Value>, path: &str, r: &mut Report) -> Vec<String> {
    let list = r.get_or(v, path, val::string_list, Vec::new());
    let mut ok = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        match check_regex(&s) {
            Ok(()) => ok.push(s),
            Err(e) => r.error(index(path, i), e),
        }
    }
    ok
}

/// A log file path: `{process}` and `{instance}` are the only templates.
fn log_path(v: &Value) -> Result<String, String> {
    let s = val::text(v)?;
    let mut rest = s.as_str();
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}').ok_or_else(|| {
            format!(
                "invalid value {}; an unclosed {{ (templates: {{process}}, {{instance}})",
                quote(&s)
            )
        })?;
        let name = &after[..=close];
        if name != "{process}" && name != "{instance}" {
            return Err(format!(
                "invalid value {}; unknown template {name} (expected {{process}} or {{instance}})",
                quote(&s)
            ));
        }
        rest = &after[close + 1..];
    }
    if s.trim().is_empty() || s.ends_with('/') {
        return Err(format!("invalid value {}; expected a file path", quote(&s)));
    }
    Ok(s)
}

fn enabled(v: &Option<Value>, path: &str, r: &mut Report) -> bool {
    r.get_or(v, under(path)("enabled"), val::boolean, true)
}

pub fn logging(raw: &RawProcess, path: &str, r: &mut Report) -> Logging {
    let mut out = Logging::default();
    let lp = join(path, "logging");
    let p = under(&lp);
    if let Some(l) = &raw.logging {
        logging_block(l, &lp, r, &mut out);
    }
    // Legacy top-level shorthands win, as in the seed.
    for (key, legacy, slot) in [
        ("stdout", &raw.stdout, &mut out.stdout),
        ("stderr", &raw.stderr, &mut out.stderr),
    ] {
        let block_set = raw.logging.as_ref().is_some_and(|l| {
            if key == "stdout" {
                l.stdout.is_some()
            } else {
                l.stderr.is_some()
            }
        });
        if let Some(mode) = r.get(legacy, under(path)(key), stream) {
            if block_set && mode != *slot {
                r.warn(under(path)(key), format!("overrides {}", p(key).path()));
            }
            *slot = mode;
        }
    }
    if out.file.is_some() && out.stdout != StreamMode::Log && out.stderr != StreamMode::Log {
        r.warn(
            p("file"),
            "ignored: neither stdout nor stderr is logged (both are false or \"inherit\")",
        );
    }
    out
}

fn logging_block(l: &RawLogging, lp: &str, r: &mut Report, out: &mut Logging) {
    let p = under(lp);
    out.stdout = r.get_or(&l.stdout, p("stdout"), stream, StreamMode::Log);
    out.stderr = r.get_or(&l.stderr, p("stderr"), stream, StreamMode::Log);
    out.labels = env_map(l.labels.as_ref(), &p("labels").path(), r);
    out.min_level = r.get(&l.min_level, p("min_level"), level);
    if let Some(m) = &l.multiline {
        out.multiline = multiline(m, &p("multiline").path(), r);
    }
    if let Some(red) = &l.redaction {
        out.redaction = redaction(red, &p("redaction").path(), r);
    }
    if let Some(j) = &l.json {
        out.json = json(j, &p("json").path(), r);
    }
    if let Some(ld) = &l.level_detection {
        out.level_detection = level_detection(ld, &p("level_detection").path(), r);
    }
    if let Some(f) = &l.filters {
        let fp = p("filters").path();
        out.include = regex_list(&f.include, &join(&fp, "include"), r);
        out.exclude = regex_list(&f.exclude, &join(&fp, "exclude"), r);
    }
    if let Some(f) = &l.file {
        out.file = log_file(f, &p("file").path(), r);
    }
    out.max_line_bytes = r.get_or(
        &l.max_line_bytes,
        p("max_line_bytes"),
        |v| {
            let n = val::size(v)?;
            if (1024..=16 << 20).contains(&n) {
                Ok(n as usize)
            } else {
                Err(format!(
                    "invalid value {}; expected a size from 1KiB to 16MiB",
                    describe(v)
                ))
            }
        },
        64 * 1024,
    );
}

/// `logging.multiline`; `None` when it is off or has no valid pattern.
fn multiline(m: &RawMultiline, mp: &str, r: &mut Report) -> Option<Multiline> {
    let q = under(mp);
    let on = enabled(&m.enabled, mp, r);
    let pattern = r.get(&m.pattern, q("pattern"), regex);
    if on && m.pattern.is_none() {
        r.error(
            q("pattern"),
            "missing; expected a regex matching the first line of an entry",
        );
    }
    let max_lines = r.get_or(
        &m.max_lines,
        q("max_lines"),
        |v| val::uint32(v, 1, 10_000),
        100,
    );
    let timeout = r.get_or(
        &m.timeout,
        q("timeout"),
        positive_duration,
        Duration::from_secs(1),
    );
    pattern.filter(|_| on).map(|pattern| Multiline {
        pattern,
        max_lines,
        timeout,
    })
}

/// `logging.redaction`'s patterns; none when it is off.
fn redaction(red: &RawRedaction, rp: &str, r: &mut Report) -> Vec<RedactionPattern> {
    let on = enabled(&red.enabled, rp, r);
    let pp = join(rp, "patterns");
    let mut patterns = Vec::new();
    for (i, pat) in red.patterns.iter().flatten().enumerate() {
        let at = index(&pp, i);
        let q = under(&at);
        let name = r.get_or(
            &pat.name,
            q("name"),
            val::text,
            format!("pattern-{}", i + 1),
        );
        let pattern = r.get(&pat.pattern, q("pattern"), regex);
        if pat.pattern.is_none() {
            r.error(q("pattern"), "missing; expected a regex to redact");
        }
        let replacement = r.get_or(
            &pat.replacement,
            q("replacement"),
            val::string,
            "***".into(),
        );
        if let Some(pattern) = pattern {
            patterns.push(RedactionPattern {
                name,
                pattern,
                replacement,
            });
        }
    }
    if !on {
        return Vec::new();
    }
    if red.patterns.as_ref().is_none_or(Vec::is_empty) {
        r.error(
            &pp,
            "missing; redaction needs at least one pattern (or enabled: false)",
        );
    }
    patterns
}

/// `logging.json`; `None` when it is off.
fn json(j: &RawJsonLogging, jp: &str, r: &mut Report) -> Option<JsonLogging> {
    let q = under(jp);
    let on = enabled(&j.enabled, jp, r);
    let cfg = JsonLogging {
        detect_auto: r.get_or(&j.detect_auto, q("detect_auto"), val::boolean, false),
        extract_level: r.get_or(&j.extract_level, q("extract_level"), val::boolean, true),
        extract_message: r.get_or(&j.extract_message, q("extract_message"), val::boolean, true),
        merge_fields: r.get_or(&j.merge_fields, q("merge_fields"), val::boolean, false),
    };
    on.then_some(cfg)
}

/// `logging.level_detection`; `None` when it is off.
fn level_detection(ld: &RawLevelDetection, dp: &str, r: &mut Report) -> Option<LevelDetection> {
    let on = enabled(&ld.enabled, dp, r);
    let mut patterns = BTreeMap::new();
    let pp = join(dp, "patterns");
    for (k, v) in ld.patterns.iter().flatten() {
        let at = under(&pp)(k);
        let lvl = level(&Value::String(k.clone()));
        let pat = regex(v);
        match (lvl, pat) {
            (Ok(lvl), Ok(pat)) => {
                patterns.insert(lvl, pat);
            }
            (Err(e), _) => r.error(at, e.replace("unknown value", "unknown level")),
            (_, Err(e)) => r.error(at, e),
        }
    }
    let default_level = r.get_or(
        &ld.default_level,
        join(dp, "default_level"),
        level,
        LogLevel::Info,
    );
    on.then_some(LevelDetection {
        patterns,
        default_level,
    })
}

/// `logging.file`; `None` without a valid `path`.
fn log_file(f: &RawLogFile, fp: &str, r: &mut Report) -> Option<LogFile> {
    let q = under(fp);
    let path = r.get(&f.path, q("path"), log_path).map(PathBuf::from);
    if f.path.is_none() {
        r.error(q("path"), "missing; expected the log file's path");
    }
    let max_size = r.get_or(
        &f.max_size,
        q("max_size"),
        |v| {
            let n = val::size(v)?;
            if n >= 1024 {
                Ok(n)
            } else {
                Err(format!(
                    "invalid value {}; expected at least 1KiB",
                    describe(v)
                ))
            }
        },
        10 << 20,
    );
    let max_files = r.get_or(&f.max_files, q("max_files"), |v| val::uint32(v, 1, 1000), 5);
    let stdout_too = r.get_or(&f.stdout_too, q("stdout_too"), val::boolean, true);
    path.map(|path| LogFile {
        path,
        max_size,
        max_files,
        stdout_too,
    })
}

/// The `schedule*` keys; `None` when `schedule` is absent.
pub fn schedule(raw: &RawProcess, path: &str, r: &mut Report) -> Option<Schedule> {
    let p = under(path);
    let expression = r.get(&raw.schedule, p("schedule"), val::text);
    let spec = expression
        .as_ref()
        .and_then(|e| r.get(&raw.schedule, p("schedule"), |_| cron::parse(e)));
    let cron = matches!(spec, Some(crate::config::extra::ScheduleSpec::Cron(_)));
    let timezone = r.get_or(
        &raw.schedule_timezone,
        p("schedule_timezone"),
        |v| timezone(v, cron),
        Timezone::Utc,
    );
    let timeout = r
        .get(&raw.schedule_timeout, p("schedule_timeout"), val::duration)
        .filter(|d| !d.is_zero());
    let max_concurrent = r.get_or(
        &raw.schedule_max_concurrent,
        p("schedule_max_concurrent"),
        |v| val::uint32(v, 0, 100),
        1,
    );
    let jitter = r.get_or(
        &raw.schedule_jitter,
        p("schedule_jitter"),
        val::duration,
        Duration::ZERO,
    );
    let catch_up = r.get_or(
        &raw.schedule_catch_up,
        p("schedule_catch_up"),
        val::boolean,
        false,
    );
    if raw.schedule.is_none() {
        for (key, v) in [
            ("schedule_timezone", &raw.schedule_timezone),
            ("schedule_timeout", &raw.schedule_timeout),
            ("schedule_max_concurrent", &raw.schedule_max_concurrent),
            ("schedule_jitter", &raw.schedule_jitter),
            ("schedule_catch_up", &raw.schedule_catch_up),
        ] {
            if v.is_some() {
                r.warn(p(key), "ignored: the process has no schedule");
            }
        }
        return None;
    }
    // A cron expression's period is its shortest gap between two runs.
    let period = match &spec {
        _ if jitter.is_zero() => None,
        Some(crate::config::extra::ScheduleSpec::Every(period)) => Some(*period),
        Some(crate::config::extra::ScheduleSpec::Cron(text)) => {
            cron::Cron::parse(text).ok().and_then(|c| c.shortest_gap())
        }
        None => None,
    };
    if let Some(period) = period {
        // Each trigger would wait out a delay longer than the period: the
        // delayed starts pile up, jitter / period deep, in run-id disorder.
        if jitter >= period {
            r.error(
                p("schedule_jitter"),
                format!(
                    "{} is not shorter than the schedule's period ({}); expected less",
                    crate::config::format_duration(jitter),
                    crate::config::format_duration(period)
                ),
            );
        }
    }
    if matches!(spec, Some(crate::config::extra::ScheduleSpec::Every(_)))
        && raw.schedule_timezone.is_some()
    {
        r.warn(
            p("schedule_timezone"),
            "has no effect on @every, which counts elapsed time, not wall-clock times",
        );
    }
    Some(Schedule {
        spec: spec?,
        expression: expression?,
        timezone,
        timeout,
        max_concurrent,
        jitter,
        catch_up,
    })
}

/// `UTC`, `Local`, or an IANA-looking zone name (`Europe/Amsterdam`).
/// `Local` must resolve only where it applies: a `cron` expression.
fn timezone(v: &Value, cron: bool) -> Result<Timezone, String> {
    let s = val::text(v)?;
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") {
        return Ok(Timezone::Utc);
    }
    if t.eq_ignore_ascii_case("local") {
        if cron {
            crate::scheduler::time_zone(&Timezone::Local)?;
        }
        return Ok(Timezone::Local);
    }
    let looks_iana = t.len() <= 64
        && t.starts_with(|c: char| c.is_ascii_alphabetic())
        && !t.ends_with('/')
        && !t.contains("//")
        && !t.contains("..")
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if looks_iana {
        let tz = Timezone::Named(t.to_string());
        // Looked up only where it applies, as `Local` is: an `@every` job
        // (warned that the zone has no effect) must still load on an
        // image without zoneinfo (Alpine without tzdata).
        if cron {
            crate::scheduler::time_zone(&tz)?;
        }
        Ok(tz)
    } else {
        Err(format!(
            "invalid value {}; expected UTC, Local or a time zone name like Europe/Amsterdam",
            quote(&s)
        ))
    }
}

/// `raw` at `path`, a process's `heartbeat`. A `longrun` (neither a
/// schedule nor `type: oneshot`) pings only every `interval`: without
/// one, a warning says it pings nothing.
pub fn heartbeat(
    raw: &RawHeartbeat,
    path: &str,
    longrun: bool,
    r: &mut Report,
) -> Option<Heartbeat> {
    let p = under(path);
    let before = r.problems.len();
    let on = enabled(&raw.enabled, path, r);
    if on && !cfg!(feature = "http") {
        r.error(path, NO_HTTP);
    }
    let url = r.get(&raw.url, p("url"), ping_url);
    let success_url = r.get(&raw.success_url, p("success_url"), ping_url);
    let failure_url = r.get(&raw.failure_url, p("failure_url"), ping_url);
    let start_url = r.get(&raw.start_url, p("start_url"), ping_url);
    for (key, u) in [
        ("url", &url),
        ("success_url", &success_url),
        ("failure_url", &failure_url),
        ("start_url", &start_url),
    ] {
        if u.as_deref().is_some_and(is_https) {
            r.warn(
                p(key),
                "every ping will fail: https is not supported (sheepdog is built without TLS); \
                 use an http:// URL, e.g. a local relay",
            );
        }
    }
    if raw.url.is_none()
        && raw.success_url.is_none()
        && raw.failure_url.is_none()
        && raw.start_url.is_none()
    {
        r.error(
            path,
            "no URL; expected url, or success_url / failure_url / start_url",
        );
    }
    let ping_start = r.get_or(&raw.ping_start, p("ping_start"), val::boolean, false);
    let method = r.get_or(
        &raw.method,
        p("method"),
        |v| val::choice(v, &[("GET", "GET"), ("HEAD", "HEAD"), ("POST", "POST")]).map(String::from),
        "POST".into(),
    );
    let hp = p("headers").path();
    let headers = env_map(raw.headers.as_ref(), &hp, r);
    #[cfg(feature = "http")]
    for (name, value) in &headers {
        if let Some(why) = crate::http_client::header_problem(name, value) {
            r.error(under(&hp)(name), why);
        }
    }
    let timeout = r.get_or(
        &raw.timeout,
        p("timeout"),
        positive_duration,
        Duration::from_secs(10),
    );
    let retries_v = match (&raw.retries, &raw.retry_count) {
        (Some(_), Some(_)) => {
            r.error(
                p("retry_count"),
                "retries is also set; expected one of retries and retry_count (the same setting)",
            );
            None
        }
        (Some(_), None) => Some((&raw.retries, "retries")),
        (None, Some(_)) => Some((&raw.retry_count, "retry_count")),
        (None, None) => None,
    };
    let retries = retries_v
        .and_then(|(v, key)| r.get(v, p(key), |v| val::uint32(v, 0, 100)))
        .unwrap_or(3);
    let retry_delay = r.get_or(
        &raw.retry_delay,
        p("retry_delay"),
        val::duration,
        Duration::from_secs(5),
    );
    let interval = r.get(&raw.interval, p("interval"), period);
    if on && longrun && raw.interval.is_none() {
        r.warn(
            path,
            "has no effect on a longrun without interval: a longrun sends no start, success or \
             failure pings, only one every interval while healthy",
        );
    }
    if raw.grace.is_some() {
        r.warn(
            p("grace"),
            "accepted for PHPeek PM compatibility and ignored",
        );
    }
    if r.problems.len() != before || !on {
        return None;
    }
    Some(Heartbeat {
        url,
        success_url,
        failure_url,
        start_url,
        ping_start,
        method,
        headers,
        timeout,
        retries,
        retry_delay,
        interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::extra::ScheduleSpec;

    fn hc(yaml: &str) -> (Option<HealthCheck>, Report) {
        let raw = RawHealthCheck::take(serde_yaml::from_str(yaml).unwrap());
        let mut r = Report::default();
        (health_check(&raw, "processes.web.health_check", &mut r), r)
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn health_check_defaults_and_kinds() {
        let (h, r) = hc("{type: tcp, address: '127.0.0.1:9000'}");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let h = h.unwrap();
        assert_eq!(
            h.probe,
            Probe::Tcp {
                address: "127.0.0.1:9000".into()
            }
        );
        assert_eq!(
            (h.initial_delay, h.period, h.timeout),
            (
                Duration::from_secs(5),
                Duration::from_secs(10),
                Duration::from_secs(3)
            )
        );
        assert_eq!(
            (h.failure_threshold, h.success_threshold, h.mode),
            (3, 1, HealthMode::Both)
        );
        let (h, _) =
            hc("{type: http, url: 'http://localhost/health', expected_status: [200, '300-302']}");
        assert_eq!(
            h.unwrap().probe,
            Probe::Http {
                url: "http://localhost/health".into(),
                expected_status: vec![(200, 200), (300, 302)],
                follow_redirects: false,
            }
        );
        let (h, _) = hc("{type: http, url: 'http://x/'}");
        assert!(
            matches!(h.unwrap().probe, Probe::Http { expected_status, .. } if expected_status == vec![(200, 399)])
        );
        let (h, _) =
            hc("{type: exec, command: [php, artisan, horizon:status], mode: liveness, period: 30}");
        let h = h.unwrap();
        assert_eq!(h.mode, HealthMode::Liveness);
        assert_eq!(h.period, Duration::from_secs(30));
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn health_check_errors() {
        let (_, r) = hc("{address: 'x:1'}");
        assert_eq!(
            r.problems,
            vec!["processes.web.health_check.type: missing; expected one of tcp, http, exec"]
        );
        let (_, r) = hc("{type: tcp}");
        assert!(r.problems[0].starts_with("processes.web.health_check.address: missing"));
        let (_, r) = hc("{type: tcp, address: '9000'}");
        assert!(r.problems[0].contains("host:port"));
        for bad in ["'h:0'", "'[::1:80'", "':80'", "'*:9000'"] {
            let (_, r) = hc(&format!("{{type: tcp, address: {bad}}}"));
            assert!(
                r.problems[0].contains("host:port"),
                "{bad}: {:?}",
                r.problems
            );
        }
        for good in ["'[::1]:9000'", "'db-{index}:{port}'", "'::1:80'"] {
            let (_, r) = hc(&format!("{{type: tcp, address: {good}}}"));
            assert!(r.problems.is_empty(), "{good}: {:?}", r.problems);
        }
        let (_, r) = hc("{type: http, url: 'ftp://x'}");
        assert!(r.problems[0].contains("http://"));
        #[cfg(feature = "http")]
        for (url, why) in [
            ("http://x:70000/", "expected HOST or HOST:PORT"),
            ("https://[::1/", "expected HOST or HOST:PORT"),
        ] {
            let (_, r) = hc(&format!("{{type: http, url: '{url}'}}"));
            assert!(r.problems[0].contains(why), "{url}: {:?}", r.problems);
        }
        #[cfg(feature = "http")]
        for url in ["https://x/", "http://127.0.0.1:{port}/{instance}?i={index}"] {
            let (_, r) = hc(&format!("{{type: http, url: '{url}'}}"));
            assert!(r.problems.is_empty(), "{url}: {:?}", r.problems);
        }
        let (_, r) = hc("{type: http, url: 'http://x', expected_status: 700}");
        assert!(r.problems[0].contains("expected_status"));
        let (_, r) =
            hc("{type: exec, command: [x], period: 0, failure_threshold: 0, mode: sometimes}");
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        let (_, r) = hc("{type: tcp, address: 'a:1', url: 'http://x', timeout: 20s}");
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        // No room for a second probe before the budget is spent.
        for (keys, warned) in [
            ("startup_timeout: 3s", true),
            ("startup_timeout: 5s", true),
            ("startup_timeout: 2s, initial_delay: 1s", false),
            ("startup_timeout: 6s", false),
        ] {
            let (_, r) = hc(&format!("{{type: tcp, address: 'a:1', {keys}}}"));
            let said = r.warnings.iter().any(|w| {
                w.starts_with("processes.web.health_check.startup_timeout: ")
                    && w.contains("is not longer than initial_delay")
            });
            assert_eq!(said, warned, "{keys}: {:?}", r.warnings);
        }
        let (_, r) = hc("{type: tcp, address: 'a:1', period: 1m, timeout: 2m, \
                         initial_delay: 1h, startup_timeout: 90s}");
        assert_eq!(
            r.warnings,
            [
                "processes.web.health_check.timeout: 2m is not shorter than period (1m); \
                 probes may overlap their schedule",
                "processes.web.health_check.startup_timeout: 1m30s is not longer than \
                 initial_delay (1h); the first probe that fails fails the start"
            ]
        );
    }

    fn proc_(yaml: &str) -> (RawProcess, Report) {
        (
            RawProcess::take(serde_yaml::from_str(yaml).unwrap()),
            Report::default(),
        )
    }

    #[test]
    fn logging_blocks() {
        let (raw, mut r) = proc_(
            "{logging: {stdout: false, stderr: inherit, labels: {app: x}, min_level: warn,
              multiline: {pattern: '^\\S'}, redaction: {patterns: [{pattern: 'secret=\\S+'}]},
              json: {enabled: false}, level_detection: {patterns: {error: 'ERR'}},
              filters: {exclude: [health]}, file: {path: /var/log/x.log, max_size: 1MiB}}}",
        );
        let l = logging(&raw, "processes.web", &mut r);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            (l.stdout, l.stderr),
            (StreamMode::Discard, StreamMode::Inherit)
        );
        assert_eq!(l.labels["app"], "x");
        assert_eq!(l.min_level, Some(LogLevel::Warn));
        assert_eq!(l.multiline.unwrap().max_lines, 100);
        assert_eq!(l.redaction[0].replacement, "***");
        assert_eq!(l.redaction[0].name, "pattern-1");
        assert_eq!(l.json, None);
        assert_eq!(l.level_detection.unwrap().patterns[&LogLevel::Error], "ERR");
        assert_eq!(l.exclude, vec!["health".to_string()]);
        let f = l.file.unwrap();
        assert_eq!((f.max_size, f.max_files, f.stdout_too), (1 << 20, 5, true));
    }

    #[test]
    fn legacy_streams_override_the_block() {
        let (raw, mut r) = proc_("{stdout: false, logging: {stdout: true}}");
        let l = logging(&raw, "processes.web", &mut r);
        assert_eq!(l.stdout, StreamMode::Discard);
        assert_eq!(r.warnings.len(), 1);
        let (raw, mut r) = proc_("{stderr: sometimes}");
        logging(&raw, "processes.web", &mut r);
        assert!(r.problems[0].starts_with("processes.web.stderr: invalid value \"sometimes\""));
    }

    #[test]
    fn logging_errors() {
        let (raw, mut r) = proc_(
            "{logging: {multiline: {}, redaction: {patterns: []}, level_detection: {patterns: {loud: x}}, file: {}}}",
        );
        logging(&raw, "processes.web", &mut r);
        assert_eq!(r.problems.len(), 4, "{:?}", r.problems);
        assert!(r.problems[2]
            .contains("processes.web.logging.level_detection.patterns.loud: unknown level"));
    }

    #[test]
    fn regexes_are_compiled_at_load_and_errors_name_the_key() {
        let (raw, mut r) = proc_(
            "{logging: {multiline: {pattern: '^['}, redaction: {patterns: [{pattern: 'ok'}, {pattern: '(x'}]},
              level_detection: {patterns: {error: '*'}}, filters: {include: [a, '[z-a]'], exclude: ['\\p{Greek}+']}}}",
        );
        let l = logging(&raw, "processes.web", &mut r);
        let keys: Vec<&str> = r
            .problems
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "processes.web.logging.multiline.pattern",
                "processes.web.logging.redaction.patterns[1].pattern",
                "processes.web.logging.level_detection.patterns.error",
                "processes.web.logging.filters.include[1]",
                "processes.web.logging.filters.exclude[0]",
            ],
            "{:?}",
            r.problems
        );
        assert!(r.problems[0].contains("invalid regular expression \"^[\""));
        assert_eq!(l.include, vec!["a".to_string()]);
        // regex-lite has no Unicode classes: \p{Greek} is an error.
        assert!(r.problems[4].contains("\\p{Greek}"), "{}", r.problems[4]);
        assert_eq!(l.exclude, Vec::<String>::new());
    }

    #[test]
    fn log_file_templates_and_line_size() {
        let (raw, mut r) = proc_(
            "{logging: {file: {path: '/var/log/{process}/{instance}.log'}, max_line_bytes: 8KiB}}",
        );
        let l = logging(&raw, "processes.web", &mut r);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(l.max_line_bytes, 8192);
        assert_eq!(Logging::default().max_line_bytes, 65536);
        let (raw, mut r) =
            proc_("{logging: {file: {path: '/var/log/{date}.log'}, max_line_bytes: 10}}");
        logging(&raw, "processes.web", &mut r);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("unknown template {date}"));
        assert!(r.problems[1].starts_with("processes.web.logging.max_line_bytes"));
        let (raw, mut r) =
            proc_("{stdout: false, logging: {stderr: inherit, file: {path: /x.log}}}");
        logging(&raw, "processes.web", &mut r);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].starts_with("processes.web.logging.file: ignored"));
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn schedules() {
        let (raw, mut r) = proc_("{schedule: '*/5 * * * *', schedule_timezone: Europe/Amsterdam, schedule_max_concurrent: 0}");
        let s = schedule(&raw, "processes.cron", &mut r).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(s.spec, ScheduleSpec::Cron("*/5 * * * *".into()));
        assert_eq!(s.timezone, Timezone::Named("Europe/Amsterdam".into()));
        assert_eq!(s.max_concurrent, 0);
        assert_eq!(s.timeout, None);
        let (raw, mut r) = proc_("{schedule: '0 25 * * *', schedule_timezone: '../etc/passwd'}");
        assert!(schedule(&raw, "processes.cron", &mut r).is_none());
        assert!(r.problems[0].starts_with("processes.cron.schedule: invalid hour field \"25\""));
        assert!(r.problems[1].starts_with("processes.cron.schedule_timezone"));
        let (raw, mut r) = proc_("{schedule_jitter: 5s}");
        assert!(schedule(&raw, "processes.x", &mut r).is_none());
        assert_eq!(r.warnings.len(), 1);
        let (raw, mut r) = proc_("{schedule: '@every 100ms', schedule_jitter: 1h}");
        schedule(&raw, "processes.x", &mut r);
        assert_eq!(
            r.problems,
            ["processes.x.schedule_jitter: 1h is not shorter than the schedule's period (100ms); expected less"]
        );
        let (raw, mut r) = proc_("{schedule: '@every 1m', schedule_jitter: 59s}");
        schedule(&raw, "processes.x", &mut r);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        // A zone is looked up only for a cron expression: on @every it has
        // no effect (warned), and no zoneinfo need hold it.
        let (raw, mut r) = proc_("{schedule: '@every 1m', schedule_timezone: Mars/Olympus_Mons}");
        assert!(schedule(&raw, "processes.x", &mut r).is_some());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        let (raw, mut r) = proc_("{schedule: '0 * * * *', schedule_timezone: Mars/Olympus_Mons}");
        schedule(&raw, "processes.x", &mut r);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn heartbeats() {
        let hb = |yaml: &str| {
            let raw = RawHeartbeat::take(serde_yaml::from_str(yaml).unwrap());
            let mut r = Report::default();
            (
                heartbeat(&raw, "processes.cron.heartbeat", false, &mut r),
                r,
            )
        };
        let (h, r) = hb("{failure_url: 'https://hc-ping.com/x/fail', timeout: 30, retry_count: 2}");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let h = h.unwrap();
        assert_eq!(
            (h.timeout, h.retries, h.method.as_str()),
            (Duration::from_secs(30), 2, "POST")
        );
        let (h, r) = hb("{enabled: false, url: 'http://x'}");
        assert!(h.is_none() && r.problems.is_empty());
        let (_, r) = hb("{timeout: 5}");
        assert!(r.problems[0].contains("no URL"));
        let (_, r) = hb("{url: 'http://x', retries: 1, retry_count: 1, method: PATCH}");
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        // What the HTTP client would refuse is refused at load.
        let (_, r) = hb(
            "{url: 'http://me:pw@x/', headers: {'X-Key': \"a\\r\\nHost: evil\", Connection: close}}",
        );
        let has = |text: &str| r.problems.iter().any(|p| p.contains(text));
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        assert!(
            has("heartbeat.headers.Connection: set by sheepdog"),
            "{:?}",
            r.problems
        );
        assert!(
            has("heartbeat.headers.X-Key: the value contains a line break"),
            "{:?}",
            r.problems
        );
        assert!(
            has("url: invalid URL \"http://me:***@x/\": credentials"),
            "{:?}",
            r.problems
        );
        assert!(
            !r.problems.iter().any(|p| p.contains("pw")),
            "{:?}",
            r.problems
        );
        let (_, r) = hb("{url: 'http://127.0.0.1:{port}/ping/{instance}', headers: {X-Key: k}}");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
}
