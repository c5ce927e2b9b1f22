//! Prometheus metrics: prometheus-client families rendered from the latest
//! published `Snapshot` at scrape time, served on `metrics_listen:
//! metrics_port` at `metrics_path`, with `/health` beside it.
//!
//! Invariants:
//! - Every family is named `sheepdog_…` with its unit in the name; labels
//!   are `process`, `instance_id`, `reason`, `result`, `code`, `version`,
//!   never `instance` or `job` (Prometheus owns those).
//! - A scrape reads one snapshot (never the supervisor) and builds a fresh
//!   registry from it, so values are consistent with each other and cost
//!   nothing between scrapes. The only state kept here is the API request
//!   counter, which only grows.
//! - Every family is present in every scrape, even with no samples yet
//!   (health checks), so dashboards and alerts can refer to it.
//! - Output is OpenMetrics when the scraper asks for it (`Accept:
//!   application/openmetrics-text`), else the Prometheus text format 0.0.4,
//!   which `promtool check metrics` accepts.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::http::{Head, Peer, Request, Response, TEXT};
use super::server::Handler;
use crate::status::{unix_seconds, Published, Snapshot};

type Labels = Vec<(&'static str, String)>;
type IntGauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Counters = Family<Labels, Counter>;

/// Restart reasons always exported (as 0 until they happen), so that
/// `increase()` works from the first restart.
pub const RESTART_REASONS: [&str; 5] = ["exit", "signal", "start", "health", "manual"];

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `sheepdog_api_requests_total{code}`: shared by the API server (which
/// counts) and the metrics server (which renders).
#[derive(Debug, Clone, Default)]
pub struct ApiCounters(Counters);

impl ApiCounters {
    pub fn count(&self, status: u16) {
        self.0
            .get_or_create(&vec![("code", status.to_string())])
            .inc();
    }
}

/// A histogram rebuilt at scrape time from counts the supervisor keeps
/// (per-bucket, +Inf last; not cumulative), so it needs no live
/// `Histogram` shared with the supervisor.
#[derive(Default)]
struct CountedHistogram(std::sync::Mutex<(f64, Vec<(f64, u64)>)>);

/// The registry wants `Debug` of its metrics (nothing prints it): a
/// derived one would link f64's `Debug`, the only user of core's
/// exponential float formatting.
impl std::fmt::Debug for CountedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountedHistogram")
    }
}

impl CountedHistogram {
    fn set(&self, sum: f64, bounds: &[f64], counts: &[u64]) {
        let buckets = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied().chain(std::iter::repeat(0)))
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (sum, buckets);
    }
}

impl prometheus_client::metrics::TypedMetric for CountedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, buckets) = &*self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(*sum, count, buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A metric that is encoded (descriptor only) even when it has no samples.
/// Every family is registered as one (a family with samples is encoded
/// the same either way), so that the registry's vtables hold this
/// `Debug`, not the families' derived ones and their maps'.
struct Present<M>(M);

impl<M> std::fmt::Debug for Present<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Present")
    }
}

impl<M: EncodeMetric> EncodeMetric for Present<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Render `snap` as OpenMetrics text: a fresh registry, its families in
/// a fixed order.
pub fn render(snap: &Snapshot, orphans_reaped: u64, api: &ApiCounters) -> String {
    let mut r = Registry::with_prefix("sheepdog");
    identity_families(&mut r, snap);
    process_families(&mut r, snap);
    hook_families(&mut r, snap);
    schedule_families(&mut r, snap);
    heartbeat_families(&mut r, snap);
    supervisor_families(&mut r, snap, orphans_reaped, api);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

/// What is running: build, start time, readiness.
fn identity_families(r: &mut Registry, snap: &Snapshot) {
    let build: IntGauges = Family::default();
    build
        .get_or_create(&labels(&[("version", snap.version)]))
        .set(1);
    r.register(
        "build_info",
        "sheepdog build information; the value is always 1",
        Present(build),
    );
    let start: Gauge<f64, AtomicU64> = Gauge::default();
    start.set(snap.started_at);
    r.register_with_unit(
        "start_time",
        "When sheepdog started, in Unix seconds",
        Unit::Seconds,
        start,
    );
    let ready: Gauge = Gauge::default();
    ready.set(i64::from(snap.ready));
    r.register(
        "ready",
        "1 when the container is ready (every process with a readiness check is ready), else 0",
        ready,
    );
}

/// Per process and instance: scale, restarts, exits, health checks.
fn process_families(r: &mut Registry, snap: &Snapshot) {
    let up: IntGauges = Family::default();
    let paused: IntGauges = Family::default();
    let desired: IntGauges = Family::default();
    let current: IntGauges = Family::default();
    let restarts: Counters = Family::default();
    let started: FloatGauges = Family::default();
    let last_exit: IntGauges = Family::default();
    let health: IntGauges = Family::default();
    let durations: Family<Labels, CountedHistogram> = Family::default();
    let checks: Counters = Family::default();
    for p in &snap.processes {
        let pl = labels(&[("process", &p.name)]);
        // What it should run now: a process stopped on purpose, held or
        // done is not under-scaled (alerts compare this to the current);
        // one that is down because it `failed` is.
        let wanted = match p.state {
            "held" | "stopped" | "finished" => 0,
            _ => p.desired_scale,
        };
        desired.get_or_create(&pl).set(i64::from(wanted));
        current.get_or_create(&pl).set(i64::from(p.current_scale));
        for reason in RESTART_REASONS {
            restarts
                .get_or_create(&labels(&[("process", &p.name), ("reason", reason)]))
                .inc_by(p.restarts.get(reason).copied().unwrap_or(0));
        }
        for (reason, n) in &p.restarts {
            if !RESTART_REASONS.contains(reason) {
                restarts
                    .get_or_create(&labels(&[("process", &p.name), ("reason", reason)]))
                    .inc_by(*n);
            }
        }
        for i in &p.instances {
            let il = labels(&[("process", &p.name), ("instance_id", &i.id)]);
            up.get_or_create(&il).set(i64::from(i.pid.is_some()));
            if i.pid.is_some() {
                paused.get_or_create(&il).set(i64::from(i.paused));
            }
            if let Some(t) = i.started_at {
                started.get_or_create(&il).set(t);
            }
            if let Some(e) = i.last_exit {
                let code = match (e.code, e.signal) {
                    (Some(c), _) => i64::from(c),
                    (None, Some(s)) => 128 + i64::from(s),
                    (None, None) => continue,
                };
                last_exit.get_or_create(&il).set(code);
            }
            match i.health {
                "healthy" => {
                    health.get_or_create(&il).set(1);
                }
                "unhealthy" | "starting" => {
                    health.get_or_create(&il).set(0);
                }
                _ => {}
            }
            if i.health_checks_ok + i.health_checks_failed > 0 {
                durations.get_or_create(&il).set(
                    i.health_check_seconds_sum,
                    &crate::status::PROBE_BUCKETS,
                    &i.health_check_buckets,
                );
                for (result, n) in [
                    ("success", i.health_checks_ok),
                    ("failure", i.health_checks_failed),
                ] {
                    checks
                        .get_or_create(&labels(&[
                            ("process", &p.name),
                            ("instance_id", &i.id),
                            ("result", result),
                        ]))
                        .inc_by(n);
                }
            }
        }
    }
    r.register(
        "process_up",
        "1 while the instance has a running child, else 0",
        Present(up),
    );
    r.register(
        "process_paused",
        "1 while the instance's running child is stopped by a signal (SIGSTOP, SIGTSTP), else 0",
        Present(paused),
    );
    r.register(
        "process_desired_scale",
        "Instances the process should be running now (0 while held, stopped or finished)",
        Present(desired),
    );
    r.register(
        "process_current_scale",
        "Instances of the process with a running child",
        Present(current),
    );
    r.register(
        "process_restarts",
        "Restarts of the process's instances by reason: exit, signal, start, health, manual",
        Present(restarts),
    );
    r.register_with_unit(
        "process_start_time",
        "When the instance's current child started, in Unix seconds",
        Unit::Seconds,
        Present(started),
    );
    r.register(
        "process_last_exit_code",
        "Exit code of the instance's last child (128+N when killed by signal N)",
        Present(last_exit),
    );
    r.register(
        "health_check_status",
        "1 when the instance's health check passes, 0 when it fails or has not passed yet",
        Present(health),
    );
    r.register_with_unit(
        "health_check_duration",
        "How long health-check probes took",
        Unit::Seconds,
        Present(durations),
    );
    r.register(
        "health_checks",
        "Health-check probes run, by result: success, failure",
        Present(checks),
    );
}

/// Per hook: executions and their durations.
fn hook_families(r: &mut Registry, snap: &Snapshot) {
    let hook_runs: Counters = Family::default();
    let hook_durations: Family<Labels, CountedHistogram> = Family::default();
    for h in &snap.hooks {
        let process = h.process.as_deref().unwrap_or("");
        for (result, n) in [("success", h.success), ("failure", h.failure)] {
            hook_runs
                .get_or_create(&labels(&[
                    ("name", &h.name),
                    ("type", &h.kind),
                    ("process", process),
                    ("result", result),
                ]))
                .inc_by(n);
        }
        hook_durations
            .get_or_create(&labels(&[
                ("name", &h.name),
                ("type", &h.kind),
                ("process", process),
            ]))
            .set(
                h.duration_seconds_sum,
                &crate::status::HOOK_BUCKETS,
                &h.duration_buckets,
            );
    }
    r.register(
        "hook_executions",
        "Hook executions (all attempts of one run count once) by name, type, process (empty for global hooks) and result",
        Present(hook_runs),
    );
    r.register_with_unit(
        "hook_duration",
        "How long hook executions took, retries included",
        Unit::Seconds,
        Present(hook_durations),
    );
}

/// Per scheduled job: runs, skips, durations, last and next run.
fn schedule_families(r: &mut Registry, snap: &Snapshot) {
    let sched_runs: Counters = Family::default();
    let sched_skipped: Counters = Family::default();
    let sched_durations: Family<Labels, CountedHistogram> = Family::default();
    let sched_last: FloatGauges = Family::default();
    let sched_next: FloatGauges = Family::default();
    for p in &snap.processes {
        let Some(s) = &p.schedule else { continue };
        let st = &s.stats;
        for (result, n) in [
            ("success", st.success),
            ("failure", st.failure),
            ("timeout", st.timeout),
            ("stopped", st.stopped),
        ] {
            sched_runs
                .get_or_create(&labels(&[("process", &p.name), ("result", result)]))
                .inc_by(n);
        }
        sched_skipped
            .get_or_create(&labels(&[("process", &p.name)]))
            .inc_by(st.skipped);
        sched_durations
            .get_or_create(&labels(&[("process", &p.name)]))
            .set(
                st.duration_seconds_sum,
                &crate::status::RUN_BUCKETS,
                &st.duration_buckets,
            );
        if let Some(t) = s.last_run {
            sched_last
                .get_or_create(&labels(&[("process", &p.name)]))
                .set(t);
        }
        if let Some(t) = s.next_run {
            sched_next
                .get_or_create(&labels(&[("process", &p.name)]))
                .set(t);
        }
    }
    r.register(
        "scheduled_runs",
        "Finished runs of scheduled jobs by process and result: success, failure, timeout, stopped",
        Present(sched_runs),
    );
    r.register(
        "scheduled_skipped",
        "Scheduled triggers skipped: schedule_max_concurrent runs still going, or a dependency down",
        Present(sched_skipped),
    );
    r.register_with_unit(
        "scheduled_run_duration",
        "How long finished scheduled runs took",
        Unit::Seconds,
        Present(sched_durations),
    );
    r.register_with_unit(
        "scheduled_last_run_timestamp",
        "When the job's last run started (Unix time)",
        Unit::Seconds,
        Present(sched_last),
    );
    r.register_with_unit(
        "scheduled_next_run_timestamp",
        "When the job is next due (Unix time; absent while paused or shutting down)",
        Unit::Seconds,
        Present(sched_next),
    );
}

/// Per heartbeat: pings by result.
fn heartbeat_families(r: &mut Registry, snap: &Snapshot) {
    let beats: Counters = Family::default();
    let beat_failures: Counters = Family::default();
    for h in &snap.heartbeats {
        for (result, n) in [("success", h.success), ("failure", h.failure)] {
            beats
                .get_or_create(&labels(&[("process", &h.process), ("result", result)]))
                .inc_by(n);
        }
        beat_failures
            .get_or_create(&labels(&[("process", &h.process)]))
            .inc_by(h.failure);
    }
    r.register(
        "heartbeats",
        "Heartbeat pings by process and result (success: a 2xx answer; failure: after every retry)",
        Present(beats),
    );
    r.register(
        "heartbeat_failures",
        "Heartbeat pings that failed after every retry, or were dropped",
        Present(beat_failures),
    );
}

/// sheepdog's own work: orphans reaped, the shutdown, reloads, API
/// requests.
fn supervisor_families(r: &mut Registry, snap: &Snapshot, orphans_reaped: u64, api: &ApiCounters) {
    let reaped: Counter = Counter::default();
    reaped.inc_by(orphans_reaped);
    r.register("zombies_reaped", "Adopted orphan processes reaped", reaped);
    // Read at the scrape, so a slow shutdown shows while it goes on (the
    // metrics stay up until it is complete); no sample before one.
    let help = "How long the shutdown going on has taken so far";
    if let Some(began) = snap.shutdown_began {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set((unix_seconds(std::time::SystemTime::now()) - began).max(0.0));
        r.register_with_unit("shutdown_duration", help, Unit::Seconds, g);
    } else {
        let none = Present(FloatGauges::default());
        r.register_with_unit("shutdown_duration", help, Unit::Seconds, none);
    }
    let reloads: Counters = Family::default();
    for (result, n) in [
        ("success", snap.reloads.succeeded),
        ("failure", snap.reloads.failed),
    ] {
        reloads
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(n);
    }
    r.register(
        "config_reloads",
        "Configuration reloads by result (failure: unreadable or invalid file; nothing changed)",
        Present(reloads),
    );
    // Every family in every scrape: without a sample before the first.
    let help = "Whether the last configuration reload was applied (1) or refused (0); no sample before the first";
    if let Some(ok) = snap.reloads.last_ok {
        let g: Gauge = Gauge::default();
        g.set(i64::from(ok));
        r.register("config_last_reload_successful", help, g);
    } else {
        let none: IntGauges = Family::default();
        r.register("config_last_reload_successful", help, Present(none));
    }
    r.register(
        "api_requests",
        "Management API responses by HTTP status code",
        Present(api.0.clone()),
    );
}

/// OpenMetrics text → Prometheus text format 0.0.4: counters' HELP/TYPE
/// take the `_total` sample name, and `# UNIT` / `# EOF` lines go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let pending = help.take();
            match rest.rsplit_once(' ') {
                Some((name, "counter")) if !name.ends_with("_total") => {
                    if let Some(h) = pending {
                        let text = h
                            .strip_prefix("# HELP ")
                            .and_then(|t| t.strip_prefix(name))
                            .unwrap_or("");
                        out.push_str(&format!("# HELP {name}_total{text}\n"));
                    }
                    out.push_str(&format!("# TYPE {name}_total counter\n"));
                }
                _ => {
                    if let Some(h) = pending {
                        out.push_str(h);
                        out.push('\n');
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// The metrics server's routes.
pub struct Site {
    pub published: Arc<Published>,
    pub api: ApiCounters,
    pub path: String,
}

impl Site {
    /// 404 for other paths, 405 for other methods, 413 for a body: these
    /// routes read none (`routes::IGNORED_BODY` is accepted and ignored).
    fn gate(&self, method: &str, path: &str, body_len: u64) -> Result<(), Response> {
        if path != self.path && path != "/health" {
            return Err(Response::error(
                404,
                &format!(
                    "no such path {}; metrics are at {} and health at /health",
                    crate::config::quote(path),
                    self.path
                ),
            ));
        }
        if !matches!(method, "GET" | "HEAD") {
            return Err(
                Response::error(405, &format!("method {method} not allowed; use GET"))
                    .with_header("Allow", "GET, HEAD"),
            );
        }
        if body_len > super::routes::IGNORED_BODY {
            return Err(Response::error(
                413,
                &format!("{method} {path} takes no request body; got {body_len} bytes"),
            ));
        }
        Ok(())
    }
}

impl Handler for Site {
    fn admit(&self, head: &Head, _peer: Peer) -> Result<(), Response> {
        self.gate(&head.method, &head.path, head.content_length)
    }

    fn handle(&self, req: &Request) -> Response {
        if let Err(resp) = self.gate(&req.method, &req.path, req.body.len() as u64) {
            return resp;
        }
        if req.path == "/health" && req.path != self.path {
            return Response::text(200, TEXT, "OK\n");
        }
        let snap = self.published.get();
        let om = render(&snap, self.published.orphans_reaped(&snap), &self.api);
        let wants_om = req
            .header("accept")
            .is_some_and(|a| a.contains("application/openmetrics-text"));
        if wants_om {
            Response::text(200, OPENMETRICS, om)
        } else {
            Response::text(200, PROMETHEUS_TEXT, prometheus_text(&om))
        }
    }

    fn responded(&self, _status: u16) {}

    fn urgent(&self, method: &str, path: &str) -> bool {
        path == "/health" && path != self.path && matches!(method, "GET" | "HEAD")
    }

    /// `/health` is a constant answer.
    fn overflow(&self, req: &Request) -> Option<Response> {
        Some(self.handle(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{InstanceStatus, LastExit, ProcessStatus};

    fn snap() -> Snapshot {
        let mut restarts = crate::status::Counts::default();
        restarts.bump("exit");
        restarts.bump("exit");
        restarts.bump("manual");
        Snapshot {
            version: "9.9.9",
            pid: 1,
            started_at: 1_700_000_000.25,
            phase: "running",
            ready: true,
            not_ready: vec![],
            orphans_reaped: 7,
            shutdown_began: None,
            hooks: vec![],
            oneshot_history: vec![],
            heartbeats: vec![],
            reloads: Default::default(),
            processes: vec![ProcessStatus {
                name: "web".into(),
                kind: "longrun",
                state: "running",
                desired_scale: 2,
                current_scale: 1,
                restarts,
                instances: vec![
                    InstanceStatus {
                        id: "web-1".into(),
                        index: 1,
                        state: "running",
                        pid: Some(42),
                        started_at: Some(1_700_000_001.5),
                        health: "healthy",
                        last_exit: Some(LastExit {
                            code: None,
                            signal: Some(9),
                        }),
                        ..Default::default()
                    },
                    InstanceStatus {
                        id: "web-2".into(),
                        index: 2,
                        state: "backoff",
                        health: "unknown",
                        last_exit: Some(LastExit {
                            code: Some(3),
                            signal: None,
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_process_down_on_purpose_wants_no_instance_now() {
        let mut s = snap();
        for (name, state) in [
            ("held", "held"),
            ("stopped", "stopped"),
            ("migrate", "finished"),
            ("waiting", "pending"),
            ("crashed", "failed"),
        ] {
            s.processes.push(ProcessStatus {
                name: name.into(),
                state,
                desired_scale: 3,
                ..Default::default()
            });
        }
        let text = prometheus_text(&render(&s, 0, &ApiCounters::default()));
        for line in [
            "sheepdog_process_desired_scale{process=\"held\"} 0",
            "sheepdog_process_desired_scale{process=\"stopped\"} 0",
            "sheepdog_process_desired_scale{process=\"migrate\"} 0",
            // Waiting for its dependencies, it should run: under-scaled.
            "sheepdog_process_desired_scale{process=\"waiting\"} 3",
            // Down because it failed (gave up restarting): under-scaled.
            "sheepdog_process_desired_scale{process=\"crashed\"} 3",
            "sheepdog_process_desired_scale{process=\"web\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn families_and_values() {
        let api = ApiCounters::default();
        api.count(200);
        api.count(200);
        api.count(404);
        let text = prometheus_text(&render(&snap(), 7, &api));
        for line in [
            "sheepdog_build_info{version=\"9.9.9\"} 1",
            "sheepdog_start_time_seconds 1700000000.25",
            "sheepdog_ready 1",
            "sheepdog_process_up{process=\"web\",instance_id=\"web-1\"} 1",
            "sheepdog_process_up{process=\"web\",instance_id=\"web-2\"} 0",
            "sheepdog_process_desired_scale{process=\"web\"} 2",
            "sheepdog_process_current_scale{process=\"web\"} 1",
            "sheepdog_process_restarts_total{process=\"web\",reason=\"exit\"} 2",
            "sheepdog_process_restarts_total{process=\"web\",reason=\"signal\"} 0",
            "sheepdog_process_restarts_total{process=\"web\",reason=\"manual\"} 1",
            "sheepdog_process_start_time_seconds{process=\"web\",instance_id=\"web-1\"} 1700000001.5",
            "sheepdog_process_last_exit_code{process=\"web\",instance_id=\"web-1\"} 137",
            "sheepdog_process_last_exit_code{process=\"web\",instance_id=\"web-2\"} 3",
            "sheepdog_health_check_status{process=\"web\",instance_id=\"web-1\"} 1",
            "sheepdog_zombies_reaped_total 7",
            "sheepdog_api_requests_total{code=\"200\"} 2",
            "sheepdog_api_requests_total{code=\"404\"} 1",
            "# TYPE sheepdog_health_check_duration_seconds histogram",
            "# TYPE sheepdog_health_checks_total counter",
            "# TYPE sheepdog_process_restarts_total counter",
            "# TYPE sheepdog_shutdown_duration_seconds gauge",
            "# HELP sheepdog_zombies_reaped_total Adopted orphan processes reaped.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        assert!(!text.contains("instance=\""), "{text}");
        assert!(!text.contains("job=\""), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        // Every sample line belongs to a family prefixed sheepdog_.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("sheepdog_"), "{l}");
        }
    }

    #[test]
    fn heartbeat_families() {
        let empty = prometheus_text(&render(&snap(), 7, &ApiCounters::default()));
        assert!(
            empty.contains("# TYPE sheepdog_heartbeat_failures_total counter"),
            "{empty}"
        );
        let mut s = snap();
        s.heartbeats.push(crate::status::HeartbeatStats {
            process: "backup".into(),
            success: 5,
            failure: 2,
        });
        let text = prometheus_text(&render(&s, s.orphans_reaped, &ApiCounters::default()));
        for line in [
            "sheepdog_heartbeats_total{process=\"backup\",result=\"success\"} 5",
            "sheepdog_heartbeats_total{process=\"backup\",result=\"failure\"} 2",
            "sheepdog_heartbeat_failures_total{process=\"backup\"} 2",
            "# TYPE sheepdog_heartbeats_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
    }

    #[test]
    fn scheduled_job_families() {
        let mut s = snap();
        s.processes.push(ProcessStatus {
            name: "cron".into(),
            kind: "scheduled",
            schedule: Some(crate::status::ScheduleStatus {
                next_run: Some(1_700_000_060.0),
                last_run: Some(1_700_000_000.0),
                stats: crate::status::RunStats {
                    total: 4,
                    success: 2,
                    failure: 0,
                    timeout: 1,
                    stopped: 1,
                    skipped: 4,
                    duration_seconds_sum: 12.5,
                    average_duration_seconds: Some(12.5 / 3.0),
                    duration_buckets: [0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0],
                },
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = prometheus_text(&render(&s, s.orphans_reaped, &ApiCounters::default()));
        for needle in [
            "sheepdog_scheduled_runs_total{process=\"cron\",result=\"success\"} 2",
            "sheepdog_scheduled_runs_total{process=\"cron\",result=\"timeout\"} 1",
            "sheepdog_scheduled_runs_total{process=\"cron\",result=\"stopped\"} 1",
            "sheepdog_scheduled_skipped_total{process=\"cron\"} 4",
            "sheepdog_scheduled_run_duration_seconds_count{process=\"cron\"} 3",
            "sheepdog_scheduled_run_duration_seconds_sum{process=\"cron\"} 12.5",
            "sheepdog_scheduled_next_run_timestamp_seconds{process=\"cron\"} 1700000060",
            "sheepdog_scheduled_last_run_timestamp_seconds{process=\"cron\"} 1700000000",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn openmetrics_keeps_its_own_shape() {
        let om = render(&snap(), 7, &ApiCounters::default());
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE sheepdog_process_restarts counter\n"));
        assert!(om.contains("# UNIT sheepdog_start_time_seconds seconds\n"));
    }

    #[test]
    fn a_shutdown_going_on_shows_how_long_it_has_taken() {
        let text = prometheus_text(&render(&snap(), 0, &ApiCounters::default()));
        assert!(
            !text.contains("\nsheepdog_shutdown_duration_seconds "),
            "{text}"
        );
        let mut s = snap();
        s.shutdown_began = Some(unix_seconds(std::time::SystemTime::now()) - 1.5);
        let text = prometheus_text(&render(&s, 0, &ApiCounters::default()));
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("sheepdog_shutdown_duration_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample: {text}"));
        assert!((1.5..60.0).contains(&value), "{value}");
    }

    #[test]
    fn conversion_handles_plain_lines() {
        let om = "# HELP a_total x.\n# TYPE a_total counter\na_total 1\n# HELP b y.\n# TYPE b counter\nb_total 2\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_total x.\n# TYPE a_total counter\na_total 1\n# HELP b_total y.\n# TYPE b_total counter\nb_total 2\n"
        );
    }
}
