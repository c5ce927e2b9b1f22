//! The report printed by `sheepdog check` and `sheepdog run --dry-run`:
//! processes and instances, scheduled jobs, start order by level, stop
//! order and the shutdown budget, as text for people or JSON for tools.
//! Pure formatting; what it says about stopping is `plan`'s model of the
//! supervisor (signal a process once its dependents have stopped; stop
//! scheduled runs when the shutdown begins).
//!
//! Invariants: rendering never fails or panics for any validated `Config`
//! and the `Plan` built from it; the text and the JSON carry the same facts;
//! JSON keys are stable snake_case, durations in JSON are integer
//! milliseconds, enum values are spelled as in the configuration file,
//! except a process's `type`, which is `scheduled` for a process with
//! `schedule` (as in the status API): such a job is never a longrun or a
//! oneshot at run time, so it has no instances and no place in the levels.
//! Commands and environment are deliberately not printed: after `${VAR}`
//! substitution they may hold secrets, and this report ends up in logs.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::btree;
use crate::config::extra::{HealthCheck, HealthMode, Probe, Schedule, ScheduleSpec};
use crate::config::{
    format_duration, Condition, Config, InitialState, Process, ProcessType, RestartPolicy,
};
use crate::plan::{Budget, Plan};

/// In text, a process with more instances shows only the first and last.
const MAX_LISTED_INSTANCES: u32 = 4;

/// The human-readable report.
pub fn render_text(config: &Config, plan: &Plan) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write_text(&mut out, config, plan);
    out
}

fn write_text(out: &mut String, config: &Config, plan: &Plan) -> std::fmt::Result {
    let source = config
        .source
        .as_ref()
        .map_or_else(|| "(no file)".to_string(), |p| p.display().to_string());
    // Both come from outside (a file name, a YAML string): control
    // characters are escaped, not sent to the terminal.
    let escaped = crate::logging::escaped;
    writeln!(out, "Configuration: {}", escaped(&source))?;
    writeln!(out, "Version: {}", escaped(&config.version))?;
    write_processes(out, config)?;
    write_jobs(out, config)?;
    write_start(out, config, plan)?;
    let budget = plan.budget(config);
    write_stop(out, plan, &budget)?;
    write_budget(out, plan, &budget)?;
    if !config.warnings.is_empty() {
        writeln!(out, "\nWarnings:")?;
        for w in &config.warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    Ok(())
}

/// The supervised processes (enabled, not scheduled), then the disabled.
fn write_processes(out: &mut String, config: &Config) -> std::fmt::Result {
    let supervised: Vec<&Process> = config
        .enabled()
        .filter(|p| p.extra.schedule.is_none())
        .collect();
    let disabled: Vec<&str> = config
        .processes
        .values()
        .filter(|p| !p.enabled)
        .map(|p| p.name.as_str())
        .collect();
    writeln!(
        out,
        "\nProcesses ({} enabled, {} disabled):",
        supervised.len(),
        disabled.len()
    )?;
    if supervised.is_empty() {
        writeln!(out, "  (no enabled processes)")?;
    }
    for p in &supervised {
        writeln!(out, "  {}", p.name)?;
        writeln!(
            out,
            "    type: {}, scale: {} ({})",
            kind_name(p.kind),
            p.scale,
            instance_summary(p)
        )?;
        writeln!(
            out,
            "    restart: {}, initial_state: {}, critical: {}",
            restart_name(p.restart),
            state_name(p.initial_state),
            p.critical
        )?;
        write_shutdown_and_deps(out, p)?;
        for line in health_lines(p) {
            writeln!(out, "    {line}")?;
        }
        if !p.extra.ports.is_empty() {
            let ports: Vec<String> = p.extra.ports.iter().map(u16::to_string).collect();
            writeln!(
                out,
                "    ports: {} (+ index - 1 per instance): must be free before a start (waits up to {}) and keep listening",
                ports.join(", "),
                format_duration(p.extra.port_wait)
            )?;
        }
    }
    for name in &disabled {
        writeln!(out, "  {name}: disabled (enabled: false; not planned)")?;
    }
    Ok(())
}

fn write_shutdown_and_deps(out: &mut String, p: &Process) -> std::fmt::Result {
    // group::Stop follows a kill_signal that is not SIGKILL with SIGKILL.
    let then_kill = if p.shutdown.kill_signal == nix::sys::signal::Signal::SIGKILL {
        String::new()
    } else {
        format!(
            ", then SIGKILL {} later",
            format_duration(crate::group::KILL_GRACE)
        )
    };
    writeln!(
        out,
        "    shutdown: {}, then {} after {}{then_kill}",
        p.shutdown.signal.as_str(),
        p.shutdown.kill_signal.as_str(),
        format_duration(p.shutdown.timeout)
    )?;
    let deps: Vec<String> = p
        .depends_on
        .iter()
        .map(|d| match d.condition {
            Some(c) => format!("{} ({})", d.name, condition_name(c)),
            None => d.name.clone(),
        })
        .collect();
    writeln!(
        out,
        "    depends_on: {}",
        if deps.is_empty() {
            "-".to_string()
        } else {
            deps.join(", ")
        }
    )
}

/// Enabled scheduled jobs: not supervised processes but runs on a timer
/// (`supervisor::jobs`), so they get their own section and no type, scale,
/// restart, initial_state or critical line: the supervisor acts on none of
/// them for a job.
fn write_jobs(out: &mut String, config: &Config) -> std::fmt::Result {
    let jobs: Vec<(&Process, &Schedule)> = config
        .enabled()
        .filter_map(|p| Some((p, p.extra.schedule.as_ref()?)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nScheduled jobs ({}; each due time starts a run, with no instances; nothing can depend on a job):",
        jobs.len()
    )?;
    for (p, s) in jobs {
        writeln!(out, "  {}", p.name)?;
        writeln!(out, "    schedule: {}", schedule_summary(s))?;
        writeln!(
            out,
            "    schedule_timeout: {}, schedule_max_concurrent: {}, schedule_jitter: {}, schedule_catch_up: {}",
            s.timeout.map_or("none".to_string(), format_duration),
            match s.max_concurrent {
                0 => "0 (unlimited)".to_string(),
                n => format!("{n} (a trigger at the limit is skipped)"),
            },
            format_duration(s.jitter),
            s.catch_up
        )?;
        write_shutdown_and_deps(out, p)?;
        if !p.depends_on.is_empty() {
            writeln!(
                out,
                "    (a run that falls due while a dependency is not satisfied is skipped)"
            )?;
        }
    }
    Ok(())
}

/// `"0 3 * * *" (time zone Europe/Amsterdam)`; `@every` counts elapsed
/// time, so no zone applies to it.
fn schedule_summary(s: &Schedule) -> String {
    match s.spec {
        ScheduleSpec::Every(_) => format!("{:?}", s.expression),
        ScheduleSpec::Cron(_) => format!(
            "{:?} (time zone {})",
            s.expression,
            crate::scheduler::describe_zone(&s.timezone)
        ),
    }
}

fn write_start(out: &mut String, config: &Config, plan: &Plan) -> std::fmt::Result {
    writeln!(
        out,
        "\nStart order (processes in one level start in parallel, each once its \
         dependencies in earlier levels are ready):"
    )?;
    let mut any_stopped = false;
    for (i, level) in plan.levels.iter().enumerate() {
        let names: Vec<String> = level
            .iter()
            .map(|n| {
                let stopped = config
                    .processes
                    .get(n)
                    .is_some_and(|p| p.initial_state == InitialState::Stopped);
                any_stopped |= stopped;
                if stopped {
                    format!("{n} (stopped)")
                } else {
                    n.clone()
                }
            })
            .collect();
        writeln!(out, "  level {i}: {}", names.join(", "))?;
    }
    if plan.levels.is_empty() {
        writeln!(out, "  (nothing to start)")?;
    }
    if any_stopped {
        writeln!(
            out,
            "  (stopped): initial_state is stopped; its instances are created but not started until requested"
        )?;
    }
    Ok(())
}

/// One row per process, in stop order: when it gets its stop signal and
/// when, at the latest, it has stopped. The rule is the supervisor's
/// (`try_stop_ready`): a process is signalled once every process that
/// depends on it has stopped, never because a level has.
fn write_stop(out: &mut String, plan: &Plan, budget: &Budget) -> std::fmt::Result {
    writeln!(
        out,
        "\nStop order (a process gets its stop signal as soon as every process that depends on it \
         has stopped, without waiting for the rest of its level; times are worst cases from the \
         start of the shutdown, pre_stop hooks included):"
    )?;
    let rows = stop_rows(plan);
    if rows.is_empty() {
        return writeln!(out, "  (nothing to stop)");
    }
    let width = |col: usize| {
        rows.iter()
            .map(|r: &[String; 3]| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (lw, nw, ww) = (width(0), width(1), width(2));
    for [label, name, when] in &rows {
        let by = budget.stopped_by.get(name).copied().unwrap_or_default();
        writeln!(
            out,
            "  {label:<lw$} {name:<nw$}  {when:<ww$}  stopped by {}",
            format_duration(by)
        )?;
    }
    Ok(())
}

/// `[label, name, when it is signalled]` per stopping process, in stop
/// order, then the scheduled jobs (their runs are told to stop when the
/// shutdown begins).
fn stop_rows(plan: &Plan) -> Vec<[String; 3]> {
    let mut rows = Vec::new();
    for (i, level) in plan.stop_levels().into_iter().enumerate() {
        for (j, name) in level.into_iter().enumerate() {
            let label = if j == 0 {
                format!("level {i}:")
            } else {
                String::new()
            };
            let after = stop_after(plan, &name);
            let when = if after.is_empty() {
                "at once".to_string()
            } else {
                format!("after {}", after.join(", "))
            };
            rows.push([label, name, when]);
        }
    }
    for (j, name) in plan.jobs.iter().enumerate() {
        let label = if j == 0 { "scheduled:" } else { "" };
        rows.push([label.to_string(), name.clone(), "at once".to_string()]);
    }
    rows
}

/// What a process's stop waits for: its dependents, then the jobs whose
/// runs it waits for.
fn stop_after<'a>(plan: &'a Plan, name: &str) -> Vec<&'a str> {
    plan.dependents
        .get(name)
        .into_iter()
        .chain(plan.job_dependents.get(name))
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Whether Docker's default stop timeout (10s) can SIGKILL everything
/// before a shutdown within `limit` is done: after its deadline sheepdog
/// may still wait for killed groups to vanish (KILL_GRACE) and for the
/// last output lines (2 s).
fn docker_default_too_short(limit: Duration) -> bool {
    limit + crate::group::KILL_GRACE + Duration::from_secs(2) > Duration::from_secs(10)
}

/// Effective probe timings, for people.
fn health_lines(p: &Process) -> Vec<String> {
    let Some(hc) = &p.extra.health_check else {
        return Vec::new();
    };
    // Not a probe's arguments, nor a URL's query: after `${VAR}`
    // substitution they may hold secrets (`redis-cli -a $PASSWORD ping`),
    // left out as commands are.
    let target = match &hc.probe {
        Probe::Tcp { address } => format!("tcp {address}"),
        Probe::Http { url, .. } => format!("http GET {}", url.split('?').next().unwrap_or(url)),
        Probe::Exec { command } => format!("exec {}", command.first().map_or("", String::as_str)),
    };
    let mode = match hc.mode {
        HealthMode::Liveness => "liveness: restarts when unhealthy",
        HealthMode::Readiness => "readiness: gates dependents, never restarts",
        HealthMode::Both => "liveness and readiness",
    };
    let startup = hc.startup_timeout.map_or(String::new(), |t| {
        format!(
            "; startup budget {} before failures count",
            format_duration(t)
        )
    });
    vec![
        format!("health: {target} ({mode})"),
        format!(
            "  first probe at {}, then every {}, timeout {}{startup}",
            format_duration(hc.initial_delay),
            format_duration(hc.period),
            format_duration(hc.timeout)
        ),
        format!(
            "  unhealthy after {} failures in a row (worst-case detection {}), healthy after {} success(es)",
            hc.failure_threshold,
            format_duration(worst_case(hc)),
            hc.success_threshold
        ),
    ]
}

/// initial_delay + period × failure_threshold + timeout.
fn worst_case(hc: &HealthCheck) -> Duration {
    hc.initial_delay + hc.period * hc.failure_threshold + hc.timeout
}

fn write_budget(out: &mut String, plan: &Plan, budget: &Budget) -> std::fmt::Result {
    writeln!(
        out,
        "\nShutdown budget (the slowest chain of pre_stop hooks and shutdown.timeout along \
         dependencies, or a scheduled job's shutdown.timeout if longer; global stop hooks \
         before and after):"
    )?;
    let path: Vec<String> = budget
        .critical_path
        .iter()
        .map(|(n, t)| format!("{n} {}", format_duration(*t)))
        .collect();
    let how = match budget.critical_path.as_slice() {
        [] => String::new(),
        [(n, _)] if plan.jobs.contains(n) => format!(" (scheduled job {n})"),
        [(n, _)] => format!(" ({n})"),
        _ => format!(" = {}", path.join(" + ")),
    };
    writeln!(out, "  worst case: {}{how}", format_duration(budget.total))?;
    writeln!(
        out,
        "  limit:      {} (global.shutdown_timeout)",
        format_duration(budget.limit)
    )?;
    writeln!(
        out,
        "  runtime:    give the container runtime a stop timeout above {} plus a margin \
         (docker stop -t, stop_grace_period, terminationGracePeriodSeconds){}",
        format_duration(budget.limit),
        if docker_default_too_short(budget.limit) {
            ": Docker's default of 10s can SIGKILL everything before this shutdown is done"
        } else {
            ""
        }
    )?;
    if budget.exceeds_limit() {
        writeln!(
            out,
            "WARNING: the worst-case shutdown ({}) exceeds global.shutdown_timeout ({}): \
             processes still running at the global deadline get killed. Raise \
             global.shutdown_timeout, or lower shutdown.timeout or stop hooks' timeouts.",
            format_duration(budget.total),
            format_duration(budget.limit)
        )?;
    }
    Ok(())
}

/// The same report as JSON.
pub fn render_json(config: &Config, plan: &Plan) -> Value {
    let processes: Vec<Value> = config
        .processes
        .values()
        .map(|p| {
            let conditions: serde_json::Map<String, Value> =
                btree::collect(p.depends_on.iter().filter_map(|d| {
                    d.condition
                        .map(|c| (d.name.clone(), json!(condition_name(c))))
                }));
            let sched = p.extra.schedule.as_ref();
            json!({
                "name": p.name,
                "enabled": p.enabled,
                // A job is not a longrun or oneshot at run time; the status
                // API calls it "scheduled" too.
                "type": if sched.is_some() { "scheduled" } else { kind_name(p.kind) },
                "scale": p.scale,
                "instances": if p.enabled && sched.is_none() { instance_names(p) } else { Vec::new() },
                "restart": restart_name(p.restart),
                "initial_state": state_name(p.initial_state),
                "critical": p.critical,
                "depends_on": p.depends_on.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
                "depends_on_conditions": conditions,
                "shutdown": {
                    "signal": p.shutdown.signal.as_str(),
                    "timeout_ms": millis(p.shutdown.timeout),
                    "kill_signal": p.shutdown.kill_signal.as_str(),
                },
                "health_check": p.extra.health_check.as_ref().map(health_json),
                "ports": p.extra.ports,
                "schedule": sched.map(schedule_json),
                // The text's stop order "after …": empty for a job, a
                // disabled process, or one whose stop waits for nothing.
                "stop_after": if p.enabled && sched.is_none() { stop_after(plan, &p.name) } else { Vec::new() },
            })
        })
        .collect();
    let budget = plan.budget(config);
    json!({
        "source": config.source.as_ref().map(|p| p.display().to_string()),
        "version": config.version,
        "processes": processes,
        "start_levels": plan.levels,
        "stop_levels": plan.stop_levels(),
        "scheduled": plan.jobs,
        "budget": {
            "per_level_ms": budget.per_level.iter().map(|d| millis(*d)).collect::<Vec<_>>(),
            "stopped_by_ms": btree::collect::<serde_json::Map<String, Value>, _>(
                budget.stopped_by.iter().map(|(n, d)| (n.clone(), json!(millis(*d))))
            ),
            "critical_path": budget.critical_path.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "total_ms": millis(budget.total),
            "limit_ms": millis(budget.limit),
            "exceeds_limit": budget.exceeds_limit(),
            // The text's "runtime:" line: the container runtime's stop
            // timeout should be above limit_ms plus a margin.
            "runtime_docker_default_too_short": docker_default_too_short(budget.limit),
        },
        "warnings": config.warnings,
    })
}

fn schedule_json(s: &Schedule) -> Value {
    json!({
        "expression": s.expression,
        "timezone": crate::scheduler::zone_name(&s.timezone),
        "timeout_ms": s.timeout.map(millis),
        "max_concurrent": s.max_concurrent,
        "jitter_ms": millis(s.jitter),
        "catch_up": s.catch_up,
    })
}

fn health_json(hc: &HealthCheck) -> Value {
    json!({
        "type": match hc.probe {
            Probe::Tcp { .. } => "tcp",
            Probe::Http { .. } => "http",
            Probe::Exec { .. } => "exec",
        },
        "mode": match hc.mode {
            HealthMode::Liveness => "liveness",
            HealthMode::Readiness => "readiness",
            HealthMode::Both => "both",
        },
        "initial_delay_ms": millis(hc.initial_delay),
        "period_ms": millis(hc.period),
        "timeout_ms": millis(hc.timeout),
        "failure_threshold": hc.failure_threshold,
        "success_threshold": hc.success_threshold,
        "startup_timeout_ms": hc.startup_timeout.map(millis),
        "worst_case_detection_ms": millis(worst_case(hc)),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `<name>-1` … `<name>-N`.
fn instance_names(p: &Process) -> Vec<String> {
    (1..=p.scale).map(|i| format!("{}-{i}", p.name)).collect()
}

fn instance_summary(p: &Process) -> String {
    match p.scale {
        0 => "no instances".into(),
        n if n <= MAX_LISTED_INSTANCES => instance_names(p).join(", "),
        n => format!("{0}-1 … {0}-{n}", p.name),
    }
}

// Spelled as in the configuration file (and as serde serializes them).

fn kind_name(k: ProcessType) -> &'static str {
    match k {
        ProcessType::Longrun => "longrun",
        ProcessType::Oneshot => "oneshot",
    }
}

fn restart_name(r: RestartPolicy) -> &'static str {
    match r {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    }
}

fn state_name(s: InitialState) -> &'static str {
    match s {
        InitialState::Running => "running",
        InitialState::Stopped => "stopped",
    }
}

fn condition_name(c: Condition) -> &'static str {
    match c {
        Condition::Started => "started",
        Condition::Healthy => "healthy",
        Condition::Completed => "completed",
        Condition::CompletedSuccessfully => "completed_successfully",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::extra::Timezone;
    use crate::config::Dependency;
    use crate::plan::testutil::{config, job, process, with_deps};
    use nix::sys::signal::Signal;

    /// php-fpm ← nginx, queue ×3 on php-fpm (healthy), horizon stopped,
    /// an oneshot, a scheduled job on php-fpm, a disabled one, and a
    /// warning.
    fn sample() -> (Config, Plan) {
        let mut fpm = process("php-fpm");
        fpm.shutdown.signal = Signal::SIGQUIT;
        fpm.shutdown.timeout = Duration::from_secs(20);
        fpm.critical = true;
        let mut nginx = with_deps("nginx", &["php-fpm"]);
        nginx.shutdown.timeout = Duration::from_secs(90);
        let mut queue = process("queue");
        queue.scale = 3;
        queue.restart = RestartPolicy::OnFailure;
        queue.depends_on = vec![Dependency {
            name: "php-fpm".into(),
            condition: Some(Condition::Healthy),
        }];
        queue.shutdown.timeout = Duration::from_millis(500);
        let mut horizon = with_deps("horizon", &["php-fpm"]);
        horizon.initial_state = InitialState::Stopped;
        let mut migrate = process("migrate");
        migrate.kind = ProcessType::Oneshot;
        migrate.restart = RestartPolicy::Never;
        let mut old = process("old");
        old.enabled = false;
        let mut cleanup = job("cleanup");
        cleanup.depends_on = with_deps("cleanup", &["php-fpm"]).depends_on;
        cleanup.shutdown.timeout = Duration::from_secs(45);
        if let Some(s) = cleanup.extra.schedule.as_mut() {
            s.spec = ScheduleSpec::Cron("0 3 * * *".into());
            s.expression = "@daily".into();
            s.timezone = Timezone::Named("Europe/Amsterdam".into());
            s.timeout = Some(Duration::from_secs(600));
            s.max_concurrent = 0;
            s.jitter = Duration::from_secs(30);
        }
        let mut cfg = config(vec![fpm, nginx, queue, horizon, migrate, old, cleanup]);
        cfg.source = Some("/etc/sheepdog/sheepdog.yaml".into());
        cfg.global.shutdown_timeout = Duration::from_secs(60);
        cfg.warnings = vec!["global.autotune: ignored (not supported)".into()];
        let plan = Plan::build(&cfg).unwrap();
        (cfg, plan)
    }

    fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line containing {needle:?} in:\n{text}"))
    }

    #[test]
    fn enum_names_match_serde() {
        for k in [ProcessType::Longrun, ProcessType::Oneshot] {
            assert_eq!(json!(kind_name(k)), serde_json::to_value(k).unwrap());
        }
        for r in [
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ] {
            assert_eq!(json!(restart_name(r)), serde_json::to_value(r).unwrap());
        }
        for s in [InitialState::Running, InitialState::Stopped] {
            assert_eq!(json!(state_name(s)), serde_json::to_value(s).unwrap());
        }
        for c in [
            Condition::Started,
            Condition::Healthy,
            Condition::Completed,
            Condition::CompletedSuccessfully,
        ] {
            assert_eq!(json!(condition_name(c)), serde_json::to_value(c).unwrap());
        }
    }

    #[test]
    fn text_header_and_processes() {
        let (cfg, plan) = sample();
        let t = render_text(&cfg, &plan);
        assert!(t.starts_with("Configuration: /etc/sheepdog/sheepdog.yaml\nVersion: 1.0\n"));
        assert!(t.contains("Processes (5 enabled, 1 disabled):"));
        assert!(t.contains(
            "  queue\n    type: longrun, scale: 3 (queue-1, queue-2, queue-3)\n    \
             restart: on-failure, initial_state: running, critical: false\n    \
             shutdown: SIGTERM, then SIGKILL after 500ms\n    \
             depends_on: php-fpm (healthy)\n"
        ));
        assert!(line_with(&t, "SIGQUIT").ends_with("shutdown: SIGQUIT, then SIGKILL after 20s"));
        assert!(t.contains("  php-fpm\n    type: longrun, scale: 1 (php-fpm-1)\n"));
        assert!(t.contains("critical: true"));
        assert!(line_with(&t, "migrate-1").contains("type: oneshot"));
        assert!(!t.contains("cleanup-1"), "a scheduled job has no instances");
        assert!(t.contains("  old: disabled"));
        assert!(!t.contains("old-1"), "disabled processes have no instances");
        assert!(t.contains("    depends_on: -\n"));
    }

    #[test]
    fn text_orders_and_budget() {
        let (cfg, plan) = sample();
        let t = render_text(&cfg, &plan);
        assert!(t.contains("start in parallel"));
        assert!(t.contains("  level 0: migrate, php-fpm\n"));
        assert!(t.contains("  level 1: horizon (stopped), nginx, queue\n"));
        assert!(t.contains("created but not started"));
        assert!(!t.contains("once the level before it"));
        assert!(t.contains(
            "Stop order (a process gets its stop signal as soon as every process that depends on \
             it has stopped, without waiting for the rest of its level; times are worst cases \
             from the start of the shutdown, pre_stop hooks included):\n\
             \x20 level 0:   horizon  at once                               stopped by 30s\n\
             \x20            nginx    at once                               stopped by 1m30s\n\
             \x20            queue    at once                               stopped by 500ms\n\
             \x20 level 1:   migrate  at once                               stopped by 30s\n\
             \x20            php-fpm  after horizon, nginx, queue, cleanup  stopped by 1m50s\n\
             \x20 scheduled: cleanup  at once                               stopped by 45s\n"
        ));
        // The graph's slowest chain, not 1m30s + 30s summed per level.
        assert!(t.contains("  worst case: 1m50s = nginx 1m30s + php-fpm 20s\n"));
        assert!(t.contains("  limit:      1m (global.shutdown_timeout)\n"));
        let w = line_with(&t, "WARNING");
        assert!(w.starts_with(
            "WARNING: the worst-case shutdown (1m50s) exceeds global.shutdown_timeout (1m)"
        ));
        assert!(w.contains("get killed"));
        assert!(t.ends_with("\nWarnings:\n  - global.autotune: ignored (not supported)\n"));
    }

    #[test]
    fn text_without_warning_when_within_budget() {
        let (mut cfg, plan) = sample();
        cfg.global.shutdown_timeout = Duration::from_secs(120);
        cfg.warnings.clear();
        let t = render_text(&cfg, &plan);
        assert!(!t.contains("WARNING"));
        assert!(!t.contains("Warnings:"));
    }

    #[test]
    fn text_for_empty_config() {
        let cfg = config(vec![]);
        let plan = Plan::build(&cfg).unwrap();
        let t = render_text(&cfg, &plan);
        assert!(t.contains("Configuration: (no file)"));
        assert!(t.contains("(no enabled processes)"));
        assert!(t.contains("(nothing to start)"));
        assert!(t.contains("(nothing to stop)"));
        assert!(t.contains("  worst case: 0s\n"));
        assert!(!t.contains("Scheduled jobs"));
    }

    #[test]
    fn many_instances_are_abbreviated_in_text_but_listed_in_json() {
        let mut q = process("q");
        q.scale = 12;
        let cfg = config(vec![q]);
        let plan = Plan::build(&cfg).unwrap();
        assert!(render_text(&cfg, &plan).contains("scale: 12 (q-1 … q-12)"));
        let j = render_json(&cfg, &plan);
        let inst = j["processes"][0]["instances"].as_array().unwrap();
        assert_eq!(inst.len(), 12);
        assert_eq!(inst[0], "q-1");
        assert_eq!(inst[11], "q-12");
    }

    #[test]
    fn text_escapes_control_characters_in_the_version_and_file_name() {
        let (mut cfg, plan) = sample();
        cfg.version = "1\u{1b}[2J\nx".into();
        cfg.source = Some("/tmp/a\u{7}b.yaml".into());
        let text = render_text(&cfg, &plan);
        assert!(text.contains("Version: 1\\u{1b}[2J\\nx\n"), "{text}");
        assert!(
            text.contains("Configuration: /tmp/a\\u{7}b.yaml\n"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
    }

    #[test]
    fn json_structure() {
        let (cfg, plan) = sample();
        let j = render_json(&cfg, &plan);
        assert_eq!(j["source"], "/etc/sheepdog/sheepdog.yaml");
        assert_eq!(j["version"], "1.0");
        assert_eq!(
            j["start_levels"],
            json!([["migrate", "php-fpm"], ["horizon", "nginx", "queue"]])
        );
        assert_eq!(
            j["stop_levels"],
            json!([["horizon", "nginx", "queue"], ["migrate", "php-fpm"]])
        );
        assert_eq!(j["scheduled"], json!(["cleanup"]));
        assert_eq!(
            j["budget"],
            json!({
                "per_level_ms": [90_000, 30_000],
                "stopped_by_ms": {
                    "cleanup": 45_000,
                    "horizon": 30_000,
                    "migrate": 30_000,
                    "nginx": 90_000,
                    "php-fpm": 110_000,
                    "queue": 500,
                },
                "critical_path": ["nginx", "php-fpm"],
                "total_ms": 110_000,
                "limit_ms": 60_000,
                "exceeds_limit": true,
                "runtime_docker_default_too_short": true,
            })
        );
        assert_eq!(
            j["warnings"],
            json!(["global.autotune: ignored (not supported)"])
        );

        let procs = j["processes"].as_array().unwrap();
        let names: Vec<&str> = procs.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["cleanup", "horizon", "migrate", "nginx", "old", "php-fpm", "queue"]
        );
        let queue = &procs[6];
        assert_eq!(
            *queue,
            json!({
                "name": "queue",
                "enabled": true,
                "type": "longrun",
                "scale": 3,
                "instances": ["queue-1", "queue-2", "queue-3"],
                "restart": "on-failure",
                "initial_state": "running",
                "critical": false,
                "depends_on": ["php-fpm"],
                "depends_on_conditions": {"php-fpm": "healthy"},
                "shutdown": {"signal": "SIGTERM", "timeout_ms": 500, "kill_signal": "SIGKILL"},
                "health_check": null,
                "ports": [],
                "schedule": null,
                "stop_after": [],
            })
        );
        // As the text's stop order: dependents, then jobs' runs.
        assert_eq!(
            procs[5]["stop_after"],
            json!(["horizon", "nginx", "queue", "cleanup"])
        );
        assert_eq!(procs[0]["stop_after"], json!([]));
        assert_eq!(procs[4]["stop_after"], json!([]));
        assert_eq!(procs[1]["initial_state"], "stopped");
        assert_eq!(procs[2]["type"], "oneshot");
        assert_eq!(procs[4]["enabled"], false);
        assert_eq!(procs[4]["instances"], json!([]));
        assert_eq!(procs[5]["shutdown"]["signal"], "SIGQUIT");
        assert_eq!(procs[5]["critical"], true);

        let cleanup = &procs[0];
        assert_eq!(cleanup["type"], "scheduled");
        assert_eq!(cleanup["instances"], json!([]));
        assert_eq!(cleanup["depends_on"], json!(["php-fpm"]));
        assert_eq!(cleanup["shutdown"]["timeout_ms"], 45_000);
        assert_eq!(
            cleanup["schedule"],
            json!({
                "expression": "@daily",
                "timezone": "Europe/Amsterdam",
                "timeout_ms": 600_000,
                "max_concurrent": 0,
                "jitter_ms": 30_000,
                "catch_up": false,
            })
        );
    }

    #[test]
    fn text_lists_scheduled_jobs_apart() {
        let (cfg, plan) = sample();
        let t = render_text(&cfg, &plan);
        // Counted and described apart from the supervised processes.
        assert!(t.contains("Processes (5 enabled, 1 disabled):"));
        assert!(t.contains(
            "\nScheduled jobs (1; each due time starts a run, with no instances; nothing can \
             depend on a job):\n  cleanup\n    \
             schedule: \"@daily\" (time zone Europe/Amsterdam)\n    \
             schedule_timeout: 10m, schedule_max_concurrent: 0 (unlimited), \
             schedule_jitter: 30s, schedule_catch_up: false\n    \
             shutdown: SIGTERM, then SIGKILL after 45s\n    \
             depends_on: php-fpm\n    \
             (a run that falls due while a dependency is not satisfied is skipped)\n\n\
             Start order"
        ));
        assert!(!line_with(&t, "  level 0: migrate").contains("cleanup"));
    }

    #[test]
    fn a_slow_job_sets_the_budget() {
        // The tester's case: one job, nothing else.
        let mut ok = job("okjob");
        ok.shutdown.timeout = Duration::from_secs(60);
        let cfg = config(vec![ok]);
        let plan = Plan::build(&cfg).unwrap();
        let t = render_text(&cfg, &plan);
        assert!(t.contains("Processes (0 enabled, 0 disabled):\n  (no enabled processes)\n"));
        assert!(t.contains(
            "    schedule: \"@every 1m\"\n    schedule_timeout: none, \
             schedule_max_concurrent: 1 (a trigger at the limit is skipped), "
        ));
        assert!(!t.contains("type: longrun"));
        assert!(t.contains("(nothing to start)"));
        assert!(t.contains("  scheduled: okjob  at once  stopped by 1m\n"));
        assert!(t.contains("  worst case: 1m (scheduled job okjob)\n"));
        assert!(t.contains("WARNING: the worst-case shutdown (1m)"));

        let j = render_json(&cfg, &plan);
        assert_eq!(j["start_levels"], json!([]));
        assert_eq!(j["stop_levels"], json!([]));
        assert_eq!(j["scheduled"], json!(["okjob"]));
        assert_eq!(j["processes"][0]["type"], "scheduled");
        assert_eq!(j["processes"][0]["schedule"]["timeout_ms"], Value::Null);
        assert_eq!(j["budget"]["critical_path"], json!(["okjob"]));
        assert_eq!(j["budget"]["per_level_ms"], json!([]));
        assert_eq!(j["budget"]["total_ms"], 60_000);
    }

    #[test]
    fn single_process_budget_names_it() {
        let cfg = config(vec![process("web")]);
        let plan = Plan::build(&cfg).unwrap();
        let t = render_text(&cfg, &plan);
        assert!(t.contains("  level 0: web  at once  stopped by 30s\n"));
        assert!(t.contains("  worst case: 30s (web)\n"));
    }

    #[test]
    fn json_without_source() {
        let cfg = config(vec![]);
        let plan = Plan::build(&cfg).unwrap();
        let j = render_json(&cfg, &plan);
        assert_eq!(j["source"], Value::Null);
        assert_eq!(j["start_levels"], json!([]));
        assert_eq!(j["budget"]["exceeds_limit"], false);
        assert_eq!(j["scheduled"], json!([]));
        assert_eq!(j["budget"]["critical_path"], json!([]));
    }
}
