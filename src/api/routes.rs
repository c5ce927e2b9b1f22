//! The management API's endpoints: the route table, authentication and
//! the handlers, which turn requests into snapshot reads or control
//! requests and replies into JSON.
//!
//! Invariants:
//! - `ROUTES` is the single list of endpoints; the router, the 404/405
//!   answers and the OpenAPI sync test all read it.
//! - Order of checks (`Api::gate`): route (404), method (405), token
//!   (401) for every route but health and readiness, a query an action does
//!   not take (400), a body on a route that takes none (413); then the
//!   handler. The gate runs on the head, before the server reads any of
//!   the body (`Handler::admit`), and again before the handler. (The rate
//!   limit and `api_max_request_body` were applied by the server before.)
//! - With no token configured, a request bearing a browser's marks
//!   (`Origin`, `Sec-Fetch-Site` other than `none`, over TCP a `Host` that
//!   is not an IP address or `localhost`) is refused (403) before anything
//!   else: a web page must not drive a token-less API (CSRF, DNS
//!   rebinding). With a token, a forged request lacks it anyway.
//! - Readiness shows a health check's error text (probe output, probe
//!   URLs: secrets) only to clients with the token, or to all when no
//!   token is configured; others get `name-i: state` and nothing more.
//! - Handlers never block on anything but a control reply, and that wait
//!   is bounded (`REPLY_WAIT`, `PING_WAIT`); a supervisor that does not
//!   answer makes a 503, never a stuck worker. The one long wait, for a
//!   triggered run, first takes a slot shared with the logs' long waits.
//! - Every error is `{"error": "..."}` naming what was wrong (the JSON
//!   field, the process, the method); bad input never panics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde_json::{json, Map, Value};

use super::auth::Token;
use super::http::{percent_decode, query_bool, query_pairs, Head, Peer, Request, Response};
use super::metrics::ApiCounters;
use super::openapi;
use super::server::Handler;
use crate::config::quote;
use crate::group::Whom;
use crate::output::buffer::LogStore;
use crate::status::{
    unix_seconds, Control, ControlReply, HookStatus, ProcessStatus, Published,
    Request as ControlRequest, ScaleBy, Snapshot,
};

/// How long a control request may wait for the supervisor's reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);
/// How long the liveness check waits for the supervisor's pong.
pub const PING_WAIT: Duration = Duration::from_secs(1);

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Processes,
    Process,
    Start,
    Stop,
    Restart,
    Scale,
    Signal,
    Shutdown,
    OpenApi,
    /// `GET /api/v1/logs` and `/api/v1/processes/{name}/logs`.
    Logs,
    ReopenLogs,
    Schedules,
    Schedule,
    ScheduleHistory,
    Pause,
    Resume,
    Trigger,
    OneshotHistory,
    Reload,
}

/// One endpoint. `{name}` in `path` matches one path segment (a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
    /// Needs the bearer token (when one is configured).
    pub auth: bool,
    /// Reads a request body (up to `api_max_request_body`); the others
    /// accept at most `IGNORED_BODY` bytes and ignore them.
    pub body: bool,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
        auth: !matches!(endpoint, Endpoint::Health | Endpoint::Ready),
        body: matches!(endpoint, Endpoint::Scale | Endpoint::Signal),
    }
}

/// What `Api::gate` decides on: a request head (or a whole request).
#[derive(Clone, Copy)]
struct Asked<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(String, String)],
    /// Announced (`Content-Length`) or received.
    body_len: u64,
    peer: Peer,
}

/// With no token configured, anything that can connect may use the API:
/// right for `sheepdog ctl`, curl and probes, wrong for a web page open in
/// the operator's browser, which can send a form or `fetch` to
/// `http://127.0.0.1:9180` (CSRF) or reach it under a name of its own that
/// it re-points at 127.0.0.1 (DNS rebinding). Browsers mark what they
/// send; other clients do not send these marks:
/// - `Origin` (every cross-origin request, every POST): refused;
/// - `Sec-Fetch-Site` other than `none` (`none` is the user typing the
///   address): refused;
/// - a `Host` that is not an IP address or `localhost` (what DNS
///   rebinding needs: a name the page's owner controls): refused over TCP.
///   Not on the unix socket, which no browser reaches by itself, and where
///   the host in a client's URL means nothing (`curl --unix-socket`).
///
/// With a token, none of this applies: a page cannot attach the
/// `Authorization` header to a request it forges.
///
/// `check_host` is false on the unix socket and for `api_insecure` on an
/// address other hosts reach, which they call by name.
fn browser(headers: &[(String, String)], check_host: bool) -> Result<(), Response> {
    const WHY: &str = "the API has no token (api_auth), so a web page open in a browser \
                       must not be able to use it; use curl or sheepdog ctl, or set api_auth";
    let refuse = |what: String| Err(Response::error(403, &format!("refused: {what}: {WHY}")));
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("origin") {
            return refuse(format!(
                "the request comes from a web page (Origin: {value})"
            ));
        }
        if name.eq_ignore_ascii_case("sec-fetch-site") && !value.eq_ignore_ascii_case("none") {
            return refuse(format!(
                "the request comes from a web page (Sec-Fetch-Site: {value})"
            ));
        }
        if name.eq_ignore_ascii_case("host") && check_host && !local_host(value) {
            return refuse(format!(
                "Host {value:?} is not an IP address or localhost (a name could be \
                 re-pointed at this address by a web page: DNS rebinding)"
            ));
        }
    }
    Ok(())
}

/// A `Host` value that no web page can choose: empty, an IPv4 address,
/// `[IPv6]` or `localhost`, each with an optional port.
fn local_host(value: &str) -> bool {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => ("", after),
            _ => return false,
        },
        None => value.split_at(value.find(':').unwrap_or(value.len())),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::Ipv4Addr>().is_ok();
    port_ok && host_ok
}

/// The most body a route that takes none accepts (and ignores): clients
/// send `{}` or the like with a POST (`sheepdog ctl` does), and nothing
/// larger has a reason to reach such a route.
pub const IGNORED_BODY: u64 = 1024;

/// Every endpoint of the API.
pub const ROUTES: &[Route] = &[
    route("GET", "/api/v1/health", Endpoint::Health),
    route("GET", "/api/v1/ready", Endpoint::Ready),
    route("GET", "/api/v1/processes", Endpoint::Processes),
    route("GET", "/api/v1/processes/{name}", Endpoint::Process),
    route("POST", "/api/v1/processes/{name}/start", Endpoint::Start),
    route("POST", "/api/v1/processes/{name}/stop", Endpoint::Stop),
    route(
        "POST",
        "/api/v1/processes/{name}/restart",
        Endpoint::Restart,
    ),
    route("POST", "/api/v1/processes/{name}/scale", Endpoint::Scale),
    route("POST", "/api/v1/processes/{name}/signal", Endpoint::Signal),
    route("POST", "/api/v1/shutdown", Endpoint::Shutdown),
    route("GET", "/api/v1/openapi.json", Endpoint::OpenApi),
    route("GET", "/api/v1/processes/{name}/logs", Endpoint::Logs),
    route("GET", "/api/v1/logs", Endpoint::Logs),
    route("POST", "/api/v1/logs/reopen", Endpoint::ReopenLogs),
    route("GET", "/api/v1/schedules", Endpoint::Schedules),
    route("GET", "/api/v1/schedules/{name}", Endpoint::Schedule),
    route(
        "GET",
        "/api/v1/schedules/{name}/history",
        Endpoint::ScheduleHistory,
    ),
    route("POST", "/api/v1/schedules/{name}/pause", Endpoint::Pause),
    route("POST", "/api/v1/schedules/{name}/resume", Endpoint::Resume),
    route(
        "POST",
        "/api/v1/schedules/{name}/trigger",
        Endpoint::Trigger,
    ),
    route(
        "GET",
        "/api/v1/processes/{name}/schedule",
        Endpoint::Schedule,
    ),
    route(
        "GET",
        "/api/v1/processes/{name}/schedule/history",
        Endpoint::ScheduleHistory,
    ),
    route(
        "POST",
        "/api/v1/processes/{name}/schedule/pause",
        Endpoint::Pause,
    ),
    route(
        "POST",
        "/api/v1/processes/{name}/schedule/resume",
        Endpoint::Resume,
    ),
    route(
        "POST",
        "/api/v1/processes/{name}/schedule/trigger",
        Endpoint::Trigger,
    ),
    route("POST", "/api/v1/config/reload", Endpoint::Reload),
    route("GET", "/api/v1/oneshot/history", Endpoint::OneshotHistory),
];

/// The result of routing.
#[derive(Debug, PartialEq)]
pub enum Routed {
    Found(&'static Route, Option<String>),
    /// The path exists with other methods.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// Match `method path` against `ROUTES` (HEAD is GET without a body).
pub fn find(method: &str, path: &str) -> Routed {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut allowed = Vec::new();
    for r in ROUTES {
        let Some(name) = match_path(r.path, path) else {
            continue;
        };
        if r.method == method {
            return Routed::Found(r, name);
        }
        allowed.push(r.method);
    }
    if allowed.is_empty() {
        Routed::NotFound
    } else {
        Routed::WrongMethod(allowed)
    }
}

/// `Some(captured name)` when `path` matches `pattern`.
fn match_path(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    let mut name = None;
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(name),
            (Some("{name}"), Some(seg)) if !seg.is_empty() => name = Some(percent_decode(seg)),
            (Some(p), Some(seg)) if p == seg => {}
            _ => return None,
        }
    }
}

/// The API's request handler.
pub struct Api {
    pub published: Arc<Published>,
    pub logs: Arc<LogStore>,
    pub requests: Sender<ControlRequest>,
    pub token: Option<Token>,
    pub counters: ApiCounters,
    /// `api_insecure: true` on an address other hosts reach: they call it
    /// by name (a compose service, a pod's DNS name), so `Host` is not
    /// checked (`browser`); `Origin` still is.
    pub any_host: bool,
    /// When the supervisor last answered a health ping: an overflowing
    /// liveness probe is answered from it (`overflow`).
    pub pong: std::sync::Mutex<Option<Instant>>,
}

impl Handler for Api {
    fn admit(&self, head: &Head, peer: Peer) -> Result<(), Response> {
        self.gate(&Asked {
            method: &head.method,
            path: &head.path,
            query: &head.query,
            headers: &head.headers,
            body_len: head.content_length,
            peer,
        })
        .map(|_| ())
    }

    fn handle(&self, req: &Request) -> Response {
        // `admit` passed this head already; checked again, so a handler
        // never runs on a request that did not pass (it costs microseconds).
        let asked = Asked {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body_len: req.body.len() as u64,
            peer: req.peer,
        };
        let (route, name) = match self.gate(&asked) {
            Ok(found) => found,
            Err(resp) => return resp,
        };
        let name = name.unwrap_or_default();
        match route.endpoint {
            Endpoint::Health => self.health(),
            // Health check errors only for those who may read the rest.
            Endpoint::Ready => ready(&self.published.get(), self.authorize(&req.headers).is_ok()),
            Endpoint::Processes => {
                let snap = self.published.get();
                processes(&snap, self.published.orphans_reaped(&snap))
            }
            Endpoint::Process => process(&self.published.get(), &name),
            Endpoint::Start => self.control(Some(&name), Control::Start { name: name.clone() }),
            Endpoint::Stop => self.control(Some(&name), Control::Stop { name: name.clone() }),
            Endpoint::Restart => self.control(Some(&name), Control::Restart { name: name.clone() }),
            // A delta is added by the supervisor to the count it wants
            // then, so deltas sent at once all count.
            Endpoint::Scale => match scale_by(&req.body) {
                Ok(ScaleBy::To(desired)) => self.control(
                    Some(&name),
                    Control::Scale {
                        name: name.clone(),
                        desired,
                    },
                ),
                Ok(ScaleBy::Delta(delta)) => self.control(
                    Some(&name),
                    Control::ScaleBy {
                        name: name.clone(),
                        delta,
                    },
                ),
                Err(resp) => resp,
            },
            Endpoint::Signal => match signal_of(&req.body) {
                Ok((signal, whom)) => self.control(
                    Some(&name),
                    Control::Signal {
                        name: name.clone(),
                        signal,
                        whom,
                    },
                ),
                Err(resp) => resp,
            },
            Endpoint::Shutdown => self.control(None, Control::Shutdown),
            Endpoint::OpenApi => openapi::response(),
            Endpoint::Logs => {
                let name = (!name.is_empty()).then_some(name.as_str());
                let head_only = req.method == "HEAD";
                super::logs::get(
                    &self.logs,
                    &self.published.get(),
                    name,
                    &req.query,
                    head_only,
                )
            }
            Endpoint::ReopenLogs => self.control(None, Control::ReopenLogs),
            Endpoint::Schedules => schedules(&self.published.get()),
            Endpoint::Schedule => schedule(&self.published.get(), &name, false),
            Endpoint::ScheduleHistory => schedule(&self.published.get(), &name, true),
            Endpoint::Pause => self.control(Some(&name), Control::Pause { name: name.clone() }),
            Endpoint::Resume => self.control(Some(&name), Control::Resume { name: name.clone() }),
            Endpoint::Trigger => match wait_flag(&req.query) {
                Ok((false, _)) => self.control(
                    Some(&name),
                    Control::Trigger {
                        name: name.clone(),
                        wait: false,
                    },
                ),
                Ok((true, bound)) => self.trigger_wait(&name, bound),
                Err(resp) => resp,
            },
            Endpoint::OneshotHistory => oneshot_history(&self.published.get()),
            Endpoint::Reload => self.control(None, Control::Reload),
        }
    }

    fn urgent(&self, method: &str, path: &str) -> bool {
        matches!(
            find(method, path),
            Routed::Found(r, _) if matches!(r.endpoint, Endpoint::Health | Endpoint::Ready)
        )
    }

    /// Healthy while the supervisor answered a ping within `PING_WAIT`
    /// (what a liveness answer waits for at most anyway); readiness is
    /// read from the snapshot as usual.
    fn overflow(&self, req: &Request) -> Option<Response> {
        match find(&req.method, &req.path) {
            Routed::Found(r, _) if r.endpoint == Endpoint::Ready => Some(self.handle(req)),
            Routed::Found(r, _) if r.endpoint == Endpoint::Health => {
                let pong = *self.pong.lock().unwrap_or_else(|e| e.into_inner());
                pong.filter(|t| t.elapsed() < PING_WAIT)
                    .map(|_| self.healthy())
            }
            _ => None,
        }
    }

    fn responded(&self, status: u16) {
        self.counters.count(status);
    }

    fn stream(&self, req: &Request, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let name = match find(&req.method, &req.path) {
            Routed::Found(_, name) => name,
            Routed::WrongMethod(_) | Routed::NotFound => None,
        };
        super::logs::follow(&self.logs, name.as_deref(), &req.query, out)
    }

    /// A follow's head was not written: its slot (taken by `logs::get`)
    /// comes back here, since `follow` never runs.
    fn unstreamed(&self, _req: &Request) {
        super::logs::give_slot();
    }
}

impl Api {
    /// Everything decided from a request's head, in this order: with no
    /// token configured, a request a browser sent (403, `browser`); the
    /// route (404), the method (405), the token (400, 401) where the route
    /// needs it, a query an action does not take (400), a body on a route
    /// that takes none (413). The route and the `{name}` it captured, or
    /// the answer.
    fn gate(&self, asked: &Asked) -> Result<(&'static Route, Option<String>), Response> {
        let Asked {
            method,
            path,
            query,
            headers,
            body_len,
            peer,
        } = *asked;
        if self.token.is_none() {
            browser(headers, !matches!(peer, Peer::Unix(..)) && !self.any_host)?;
        }
        let (route, name) = match find(method, path) {
            Routed::Found(r, n) => (r, n),
            Routed::NotFound => {
                return Err(Response::error(
                    404,
                    &format!("no such endpoint: {method} {path} (see /api/v1/openapi.json)"),
                ))
            }
            Routed::WrongMethod(allowed) => {
                let mut allow: Vec<&str> = allowed.clone();
                if allow.contains(&"GET") {
                    allow.push("HEAD");
                }
                return Err(Response::error(
                    405,
                    &format!(
                        "method {method} is not allowed on {path}; allowed: {}",
                        allow.join(", ")
                    ),
                )
                .with_header("Allow", allow.join(", ")));
            }
        };
        if route.auth {
            self.authorize(headers)?;
        }
        no_stray_query(route, query)?;
        if !route.body && body_len > IGNORED_BODY {
            return Err(Response::error(
                413,
                &format!(
                    "{method} {path} takes no request body; got {body_len} bytes (at most \
                     {IGNORED_BODY}, such as {{}}, are accepted and ignored)"
                ),
            ));
        }
        Ok((route, name))
    }

    /// Whether `headers` carry the token (always, when none is configured);
    /// else the 400 or 401 to answer.
    fn authorize(&self, headers: &[(String, String)]) -> Result<(), Response> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        // Which of two would a proxy in front have checked? Neither is taken.
        let mut given = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str());
        let first = given.next();
        if given.next().is_some() {
            return Err(Response::error(400, "more than one Authorization header"));
        }
        token.check(first).map_err(|why| {
            Response::error(401, &format!("unauthorized: {why}"))
                .with_header("WWW-Authenticate", "Bearer realm=\"sheepdog\"")
        })
    }

    /// Send a control request and wait (bounded) for the reply.
    fn ask(&self, control: Control, wait: Duration) -> Result<ControlReply, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.requests
            .send(ControlRequest { control, reply: tx })
            .map_err(|_| "the supervisor has stopped".to_string())?;
        rx.recv_timeout(wait).map_err(|e| match e {
            RecvTimeoutError::Timeout => format!(
                "the supervisor did not answer within {}s",
                wait.as_secs_f64()
            ),
            RecvTimeoutError::Disconnected => "the supervisor has stopped".to_string(),
        })
    }

    fn health(&self) -> Response {
        match self.ask(Control::Ping, PING_WAIT) {
            Ok(_) => {
                *self.pong.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                self.healthy()
            }
            Err(e) => Response::json(503, &json!({ "status": "unhealthy", "error": e })),
        }
    }

    fn healthy(&self) -> Response {
        Response::json(200, &json!({ "status": "healthy" }))
    }

    fn control(&self, name: Option<&str>, control: Control) -> Response {
        let reply = match self.ask(control, REPLY_WAIT) {
            Ok(r) => r,
            Err(e) => return Response::error(503, &e).with_header("Retry-After", "1"),
        };
        self.reply_response(name, reply)
    }

    /// `trigger?wait=true`: start a run and answer when it has ended, or
    /// after a bound (`timeout` if given, else its timeout,
    /// `shutdown.timeout` and slack, else 10 minutes) with a 202 saying it
    /// still runs; 503 when every waiting slot is taken.
    fn trigger_wait(&self, name: &str, bound: Option<Duration>) -> Response {
        let snap = self.published.get();
        let Some(p) = snap.processes.iter().find(|p| *p.name == *name) else {
            return not_found(&snap, name);
        };
        let Some(sched) = &p.schedule else {
            return Response::error(409, &format!("{name} is not a scheduled job"));
        };
        // Past its timeout a run is stopped gracefully: wait for that too.
        let wait = bound.unwrap_or_else(|| {
            sched.timeout_seconds.map_or(TRIGGER_WAIT_MAX, |t| {
                Duration::from_secs_f64(t)
                    .saturating_add(sched.stop_timeout)
                    .saturating_add(TRIGGER_WAIT_SLACK)
                    .min(crate::status::TRIGGER_WAIT_CAP)
            })
        });
        let control = Control::Trigger {
            name: name.to_string(),
            wait: true,
        };
        // A waiting worker takes a slot shared with the logs' long waits,
        // so waiting clients can never take every worker. None free: the
        // run is not started, so the client may simply try again.
        if !super::logs::take_slot() {
            return super::logs::busy();
        }
        let reply = self.ask(control, wait);
        super::logs::give_slot();
        match reply {
            Ok(reply) => self.reply_response(Some(name), reply),
            Err(e) if e.contains("did not answer") => Response::json(
                202,
                &json!({
                    "status": "accepted",
                    "process": name,
                    "message": format!("the run is still going after {}s; see its history", wait.as_secs()),
                }),
            ),
            Err(e) => Response::error(503, &e).with_header("Retry-After", "1"),
        }
    }

    fn reply_response(&self, name: Option<&str>, reply: ControlReply) -> Response {
        let (status, word, msg) = match reply {
            ControlReply::Accepted(m) => (202, "accepted", m),
            ControlReply::Done(m) => (200, "done", m),
            ControlReply::NotFound(m) => return Response::error(404, &m),
            ControlReply::Conflict(m) => return Response::error(409, &m),
            ControlReply::Run(r) => return run_response(name, &r),
            ControlReply::Reloaded(summary) => return reloaded_response(&summary),
            ControlReply::Invalid(m) => return Response::error(422, &m),
            ControlReply::Bad(m) => return Response::error(400, &m),
        };
        let mut body = json!({ "status": word, "message": msg });
        if let (Some(n), Some(obj)) = (name, body.as_object_mut()) {
            obj.insert("process".into(), json!(n));
        }
        Response::json(status, &body)
    }
}

/// 200 with what a reload changed: `status`, a one-line `message`, then
/// the summary's lists.
fn reloaded_response(summary: &crate::status::ReloadSummary) -> Response {
    let mut body = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("status".into(), json!("reloaded"));
        obj.insert("message".into(), json!(summary.to_string()));
    }
    Response::json(200, &body)
}

/// The longest `trigger?wait=true` waits for a job without a timeout.
const TRIGGER_WAIT_MAX: Duration = Duration::from_secs(600);
/// Added to a job's timeout and `shutdown.timeout`: the kill, the group's
/// drain, the run's last output and post_start hook, and slack.
const TRIGGER_WAIT_SLACK: Duration = Duration::from_secs(70);

/// `wait` in the query (absent: false), read as every boolean is
/// (`http::query_bool`), and `timeout`, how long it waits at most (a
/// duration up to `TRIGGER_WAIT_CAP`; only with `wait=true`).
fn wait_flag(query: &str) -> Result<(bool, Option<Duration>), Response> {
    let (mut wait, mut timeout) = (None, None);
    for (k, v) in query_pairs(query) {
        let v = v.as_deref();
        let given = match &*k {
            "wait" => wait.replace(query_bool("wait", v).map_err(bad)?).is_some(),
            "timeout" => timeout
                .replace(
                    crate::status::wait_bound(v.unwrap_or(""))
                        .map_err(|e| bad(format!("timeout: {e}")))?,
                )
                .is_some(),
            _ => {
                return Err(bad(format!(
                    "unknown query parameter {k:?}; expected wait or timeout"
                )))
            }
        };
        if given {
            return Err(bad(format!("{k}: given twice; expected it once")));
        }
    }
    let wait = wait.unwrap_or(false);
    if timeout.is_some() && !wait {
        return Err(bad("timeout goes with wait=true".into()));
    }
    Ok((wait, timeout))
}

fn run_response(name: Option<&str>, r: &crate::status::RunRecord) -> Response {
    Response::json(
        200,
        &json!({
            "status": "done",
            "process": name,
            "run": r,
            "exit_code": r.exit_code,
            "signal": r.signal,
            "result": r.result,
        }),
    )
}

/// A job's status as JSON (with its history when asked).
fn schedule_json(p: &ProcessStatus, with_history: bool) -> Value {
    let Some(s) = &p.schedule else {
        return Value::Null;
    };
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("process".into(), json!(p.name));
        obj.insert("state".into(), json!(p.state));
        if with_history {
            obj.insert("history".into(), json!(s.history));
        }
    }
    v
}

fn schedules(snap: &Snapshot) -> Response {
    let jobs: Vec<Value> = snap
        .processes
        .iter()
        .filter(|p| p.schedule.is_some())
        .map(|p| schedule_json(p, false))
        .collect();
    Response::json(200, &json!({ "schedules": jobs }))
}

fn schedule(snap: &Snapshot, name: &str, history_only: bool) -> Response {
    let Some(p) = snap.processes.iter().find(|p| *p.name == *name) else {
        return not_found(snap, name);
    };
    let Some(s) = &p.schedule else {
        return Response::error(
            404,
            &format!("{name} is not a scheduled job (it has no schedule)"),
        );
    };
    if history_only {
        return Response::json(200, &json!({ "process": name, "history": s.history }));
    }
    Response::json(200, &schedule_json(p, true))
}

fn oneshot_history(snap: &Snapshot) -> Response {
    Response::json(200, &json!({ "history": snap.oneshot_history }))
}

fn now_unix() -> f64 {
    unix_seconds(SystemTime::now())
}

/// Seconds rounded to milliseconds.
fn secs(x: f64) -> Value {
    json!((x.max(0.0) * 1000.0).round() / 1000.0)
}

/// Readiness. `detailed`: with each failing health check's own words,
/// which may hold secrets (probe output, probe URLs with their query), so
/// only for clients with the token (or when none is configured); others
/// learn which instances are not ready and their state.
fn ready(snap: &Snapshot, detailed: bool) -> Response {
    if snap.ready {
        return Response::json(
            200,
            &json!({ "status": "ready", "ready": true, "not_ready": [] }),
        );
    }
    let why: Vec<String> = snap
        .not_ready
        .iter()
        .map(|n| if detailed { n.full() } else { n.what.clone() })
        .collect();
    Response::json(
        503,
        &json!({
            "status": "not ready",
            "error": format!("not ready: {}", why.join("; ")),
            "ready": false,
            "not_ready": why,
        }),
    )
}

/// The counters of the hooks that belong to `process` (None: the global
/// hooks), in the snapshot's order. `process` is left out of each: where
/// the list sits says whose hooks they are.
fn hooks_json(hooks: &[HookStatus], process: Option<&str>) -> Value {
    let mine = hooks.iter().filter(|h| h.process.as_deref() == process);
    let list = mine.map(|h| {
        let mut v = serde_json::to_value(h).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("process");
        }
        v
    });
    Value::Array(list.collect())
}

/// A process as JSON, with uptimes as of now (the snapshot may be older)
/// and the counters of its own hooks (from the snapshot's `hooks`).
fn process_json(p: &ProcessStatus, hooks: &[HookStatus], now: f64) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(insts) = v.get_mut("instances").and_then(Value::as_array_mut) {
        for i in insts.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(t) = i.get("started_at").and_then(Value::as_f64) {
                i.insert("uptime_seconds".into(), secs(now - t));
            }
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.insert("hooks".into(), hooks_json(hooks, Some(&p.name)));
    }
    v
}

fn processes(snap: &Snapshot, orphans_reaped: u64) -> Response {
    let now = now_unix();
    Response::json(
        200,
        &json!({
            "version": snap.version,
            "pid": snap.pid,
            "phase": snap.phase,
            "started_at": snap.started_at,
            "uptime_seconds": secs(now - snap.started_at),
            "ready": snap.ready,
            "not_ready": snap.not_ready,
            "orphans_reaped": orphans_reaped,
            "hooks": hooks_json(&snap.hooks, None),
            "processes": snap.processes.iter().map(|p| process_json(p, &snap.hooks, now)).collect::<Vec<_>>(),
        }),
    )
}

fn not_found(snap: &Snapshot, name: &str) -> Response {
    let names: Vec<&str> = snap.processes.iter().map(|p| &*p.name).collect();
    Response::error(404, &crate::status::no_process_named(name, &names))
}

fn process(snap: &Snapshot, name: &str) -> Response {
    match snap.processes.iter().find(|p| *p.name == *name) {
        Some(p) => {
            let mut v = process_json(p, &snap.hooks, now_unix());
            if let Some(obj) = v.as_object_mut() {
                obj.insert("process".into(), json!(name));
            }
            Response::json(200, &v)
        }
        None => not_found(snap, name),
    }
}

/// An action takes no query parameters except `trigger`'s `wait`: a typo
/// there (`?wiat=true`, or `?desired=3` instead of a body) must not pass
/// for a plain request that then does something else. Reads take none
/// except `logs`, and stay lenient: a cache-buster hurts nobody.
fn no_stray_query(route: &Route, query: &str) -> Result<(), Response> {
    let takes_query = matches!(route.endpoint, Endpoint::Logs | Endpoint::Trigger);
    if route.method != "POST" || takes_query {
        return Ok(());
    }
    match query_pairs(query).next() {
        None => Ok(()),
        Some((key, _)) => Err(bad(format!(
            "unknown query parameter {key:?}; {} {} takes none",
            route.method, route.path
        ))),
    }
}

fn bad(msg: String) -> Response {
    Response::error(400, &msg)
}

/// The body as a JSON object with only `allowed` keys.
fn object(body: &[u8], allowed: &[&str], example: &str) -> Result<Map<String, Value>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!(
            "request body: empty; expected a JSON object like {example}"
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "request body: invalid JSON ({e}); expected {example}"
        ))
    })?;
    let Value::Object(m) = v else {
        return Err(bad(format!(
            "request body: expected a JSON object like {example}, got {}",
            kind(&v)
        )));
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        return Err(bad(format!(
            "request body: unknown field {}; expected {}",
            quote(k),
            names.join(" or ")
        )));
    }
    if let Some(k) = repeated_key(body) {
        return Err(bad(format!(
            "request body: field {k:?} given twice; expected it once"
        )));
    }
    Ok(m)
}

/// The first key the body's object repeats. `Map` keeps the last of two,
/// so `{"signal": "HUP", "signal": "KILL"}` would send KILL. Called once
/// every key is known to be allowed, so `seen` holds at most those few.
fn repeated_key(body: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut seen: Vec<String> = Vec::new();
            let mut repeated = None;
            while let Some(k) = a.next_key::<String>()? {
                a.next_value::<IgnoredAny>()?;
                if !seen.contains(&k) {
                    seen.push(k);
                } else if repeated.is_none() {
                    repeated = Some(k);
                }
            }
            Ok(repeated)
        }
    }
    serde_json::Deserializer::from_slice(body)
        .deserialize_map(Keys)
        .ok()
        .flatten()
}

/// `v` as an error quotes it: a string or number in a few dozen
/// characters (a body may be a megabyte), anything else by its kind.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Number(n) => n.to_string(),
        _ => kind(v).into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `{"desired": N}` or `{"delta": ±N}` → the count or the change to ask
/// for (the supervisor adds a change to what the process wants then).
fn scale_by(body: &[u8]) -> Result<ScaleBy, Response> {
    let m = object(
        body,
        &["desired", "delta"],
        r#"{"desired": 3} or {"delta": -1}"#,
    )?;
    match (m.get("desired"), m.get("delta")) {
        (Some(_), Some(_)) => Err(bad(
            "request body: expected only one of \"desired\" and \"delta\"".into(),
        )),
        (None, None) => Err(bad(
            "request body: expected \"desired\" (instances to run) or \"delta\" (a change such as 2 or -1)".into(),
        )),
        (Some(v), None) => match v.as_u64() {
            Some(n) => u32::try_from(n).map(ScaleBy::To).map_err(|_| {
                bad(format!(
                    "desired: {n} is too large; expected 0 to {}",
                    u32::MAX
                ))
            }),
            None if v.as_f64().is_some_and(|f| f > f64::from(u32::MAX)) => Err(bad(format!(
                "desired: {v} is too large; expected 0 to {}",
                u32::MAX
            ))),
            None => Err(bad(format!(
                "desired: expected a non-negative integer, got {}",
                shown(v)
            ))),
        },
        // (No process may run more than 1000: beyond ±2147483647 is no
        // use, and `Control` stays small.)
        (None, Some(v)) => match v.as_i64().and_then(|d| i32::try_from(d).ok()) {
            Some(d) => Ok(ScaleBy::Delta(d)),
            None if v.as_f64().is_some_and(|f| f.abs() > f64::from(i32::MAX)) => {
                Err(bad(format!("delta: {v} is too large")))
            }
            None => Err(bad(format!(
                "delta: expected an integer such as 2 or -1, got {}",
                shown(v)
            ))),
        },
    }
}

/// `{"signal": "HUP" | "SIGHUP" | 1}`.
fn signal_of(body: &[u8]) -> Result<(nix::sys::signal::Signal, Whom), Response> {
    let m = object(body, &["signal", "to"], r#"{"signal": "HUP"}"#)?;
    let whom = match m.get("to") {
        None => Whom::Group,
        Some(Value::String(s)) if s == "group" => Whom::Group,
        Some(Value::String(s)) if s == "main" => Whom::Main,
        Some(other) => {
            return Err(bad(format!(
                "to: invalid value {}; expected \"group\" (every process of each instance, \
                 the default) or \"main\" (only the process sheepdog started)",
                shown(other)
            )))
        }
    };
    let Some(v) = m.get("signal") else {
        return Err(bad(
            "signal: missing; expected a signal name like \"HUP\" or \"SIGHUP\", or a number"
                .into(),
        ));
    };
    let yaml = match v {
        // JSON says exactly what it means (no unquoted word to trim, as in
        // YAML): " HUP" is not HUP, as " main" is not main above.
        Value::String(s) if s.trim() != s => {
            return Err(bad(format!(
                "signal: invalid signal {}; expected a signal name like \"HUP\" or a number, \
                 with no spaces around it",
                quote(s)
            )))
        }
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => serde_yaml::Value::Number(i.into()),
            None => {
                return Err(bad(format!(
                    "signal: invalid signal {n}; expected a signal number from 1 to 31"
                )))
            }
        },
        other => {
            return Err(bad(format!(
                "signal: expected a signal name like \"HUP\" or a number, got {}",
                kind(other)
            )))
        }
    };
    let signal = crate::config::parse_signal(&yaml).map_err(|e| bad(format!("signal: {e}")))?;
    Ok((signal, whom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{InstanceStatus, NotReady};

    fn snap() -> Snapshot {
        Snapshot {
            processes: vec![ProcessStatus {
                name: "web".into(),
                desired_scale: 2,
                instances: vec![InstanceStatus {
                    id: "web-1".into(),
                    started_at: Some(now_unix() - 10.0),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn err(r: Result<impl std::fmt::Debug, Response>) -> (u16, String) {
        let r = r.unwrap_err();
        (r.status, String::from_utf8(r.body).unwrap())
    }

    #[test]
    fn a_repeated_wait_is_refused_not_read_as_its_last_value() {
        assert!(wait_flag("wait=true").unwrap().0);
        assert!(!wait_flag("").unwrap().0);
        let (status, body) = err(wait_flag("wait=true&wait=false"));
        assert_eq!(status, 400);
        assert!(body.contains("wait: given twice"), "{body}");
        // Decoded as the path is; a bare flag is true, as for `follow`.
        assert!(wait_flag("wa%69t=%74rue").unwrap().0);
        assert!(wait_flag("wait").unwrap().0);
        assert!(!wait_flag("wait=no").unwrap().0);
        // `timeout` bounds the wait, up to the cap; only with wait=true.
        assert_eq!(
            wait_flag("wait=true&timeout=90s").unwrap(),
            (true, Some(Duration::from_secs(90)))
        );
        for (bad, given) in [
            ("wait=true&timeout=25h", r#"got \"25h\""#),
            ("wait=true&timeout=0", r#"got \"0\""#),
            ("wait=true&timeout", r#"got \"\""#),
        ] {
            // (The body is JSON: the quotes around the value are escaped.)
            let msg = err(wait_flag(bad)).1;
            assert!(msg.contains("up to 24h") && msg.contains(given), "{msg}");
        }
        assert!(err(wait_flag("timeout=1m"))
            .1
            .contains("goes with wait=true"));
        assert!(err(wait_flag("wait=1&timeout=1m&timeout=2m"))
            .1
            .contains("timeout: given twice"));
        let (_, body) = err(wait_flag("wait=maybe"));
        assert!(
            body.contains("expected true, false, 1, 0, yes or no"),
            "{body}"
        );
    }

    #[test]
    fn routing() {
        match find("GET", "/api/v1/processes/web%2Dx") {
            Routed::Found(r, n) => {
                assert_eq!(r.endpoint, Endpoint::Process);
                assert_eq!(n.as_deref(), Some("web-x"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            find("HEAD", "/api/v1/health"),
            Routed::Found(r, None) if r.endpoint == Endpoint::Health && !r.auth
        ));
        assert_eq!(
            find("DELETE", "/api/v1/processes/web"),
            Routed::WrongMethod(vec!["GET"])
        );
        assert_eq!(
            find("GET", "/api/v1/processes/web/stop"),
            Routed::WrongMethod(vec!["POST"])
        );
        assert_eq!(find("GET", "/api/v1/processes/"), Routed::NotFound);
        assert_eq!(find("GET", "/api/v1/processes//stop"), Routed::NotFound);
        assert_eq!(find("GET", "/api/v2/processes"), Routed::NotFound);
        assert_eq!(find("GET", "/"), Routed::NotFound);
        assert!(ROUTES
            .iter()
            .all(|r| r.auth || matches!(r.endpoint, Endpoint::Health | Endpoint::Ready)));
        // Only scale and signal read a body.
        assert!(ROUTES
            .iter()
            .all(|r| r.body == matches!(r.endpoint, Endpoint::Scale | Endpoint::Signal)));
    }

    #[test]
    fn hosts_no_page_can_choose() {
        for ok in [
            "",
            "127.0.0.1",
            "127.0.0.1:9180",
            "10.0.0.7:80",
            "localhost",
            "LocalHost:9180",
            "localhost:",
            "[::1]",
            "[::1]:9180",
            "[2001:db8::1]:80",
        ] {
            assert!(local_host(ok), "{ok:?}");
        }
        for bad in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io:9180",
            "0x7f.1",
            "127.1",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:80x",
            "[evil.example]:80",
            "127.0.0.1:80:80",
            "127.0.0.1:http",
        ] {
            assert!(!local_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn browser_marks() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // `true`: the Host is checked (TCP, not api_insecure on an open
        // address).
        assert!(browser(&h(&[("Host", "127.0.0.1:9180")]), true).is_ok());
        assert!(browser(&h(&[]), true).is_ok());
        assert!(browser(&h(&[("sec-fetch-site", "None")]), true).is_ok());
        for (headers, check_host) in [
            (h(&[("origin", "http://127.0.0.1:9180")]), true),
            (h(&[("Origin", "null")]), false),
            (h(&[("Sec-Fetch-Site", "same-origin")]), false),
            (h(&[("Host", "evil.example")]), true),
        ] {
            let r = browser(&headers, check_host).unwrap_err();
            assert_eq!(r.status, 403, "{headers:?}");
        }
        // The socket's Host, or an open api_insecure one's, means nothing.
        assert!(browser(&h(&[("Host", "sheepdog")]), false).is_ok());
    }

    #[test]
    fn scale_bodies() {
        assert_eq!(scale_by(br#"{"desired": 5}"#).unwrap(), ScaleBy::To(5));
        assert_eq!(scale_by(br#"{"desired": 0}"#).unwrap(), ScaleBy::To(0));
        // A change goes to the supervisor as such (below 0 is its 400).
        assert_eq!(scale_by(br#"{"delta": 3}"#).unwrap(), ScaleBy::Delta(3));
        assert_eq!(scale_by(br#"{"delta": -3}"#).unwrap(), ScaleBy::Delta(-3));
        for (body, status, needle) in [
            (&b""[..], 400, "empty"),
            (b"{", 400, "invalid JSON"),
            (b"[1]", 400, "got an array"),
            (
                br#"{"desired": -1}"#,
                400,
                "desired: expected a non-negative integer",
            ),
            (br#"{"desired": "3"}"#, 400, "desired:"),
            (br#"{"desired": 1.5}"#, 400, "desired:"),
            (
                br#"{"desired": 4294967297}"#,
                400,
                "desired: 4294967297 is too large; expected 0 to 4294967295",
            ),
            (
                br#"{"desired": 18446744073709551616}"#,
                400,
                "desired: 1.8446744073709552e+19 is too large",
            ),
            (
                br#"{"delta": 9223372036854775808}"#,
                400,
                "delta: 9223372036854775808 is too large",
            ),
            (
                br#"{"delta": -2147483649}"#,
                400,
                "delta: -2147483649 is too large",
            ),
            (br#"{"delta": "x"}"#, 400, "delta: expected an integer"),
            (br#"{"delta": 1, "desired": 1}"#, 400, "only one"),
            (br#"{}"#, 400, "expected \\\"desired\\\""),
            (br#"{"replicas": 2}"#, 400, "unknown field \\\"replicas\\\""),
        ] {
            let (st, msg) = err(scale_by(body));
            assert_eq!(st, status, "{msg}");
            assert!(
                msg.contains(needle),
                "{:?}: {msg}",
                String::from_utf8_lossy(body)
            );
        }
        // A megabyte of value comes back in a few dozen characters.
        let long = "x".repeat(1 << 20);
        for body in [
            format!(r#"{{"{long}": 1}}"#),
            format!(r#"{{"desired": "{long}"}}"#),
            format!(r#"{{"desired": ["{long}"]}}"#),
        ] {
            let (st, msg) = err(scale_by(body.as_bytes()));
            assert_eq!(st, 400);
            assert!(msg.len() < 300, "{}…", &msg[..300]);
        }
        let to = format!(r#"{{"signal": "HUP", "to": "{long}"}}"#);
        let (st, msg) = err(signal_of(to.as_bytes()));
        assert_eq!(st, 400);
        assert!(msg.len() < 300, "{}…", &msg[..300]);
    }

    #[test]
    fn signal_bodies() {
        use nix::sys::signal::Signal;
        let group = |s| (s, Whom::Group);
        assert_eq!(
            signal_of(br#"{"signal": "HUP"}"#).unwrap(),
            group(Signal::SIGHUP)
        );
        assert_eq!(
            signal_of(br#"{"signal": "sigusr1"}"#).unwrap(),
            group(Signal::SIGUSR1)
        );
        assert_eq!(
            signal_of(br#"{"signal": 15}"#).unwrap(),
            group(Signal::SIGTERM)
        );
        assert_eq!(
            signal_of(br#"{"signal": "USR2", "to": "main"}"#).unwrap(),
            (Signal::SIGUSR2, Whom::Main)
        );
        assert_eq!(
            signal_of(br#"{"signal": "USR2", "to": "group"}"#).unwrap(),
            group(Signal::SIGUSR2)
        );
        for (body, needle) in [
            (
                &br#"{"signal": "HUP", "to": "leader"}"#[..],
                "(only the process sheepdog started)",
            ),
            (br#"{"signal": "HUP", "to": 1}"#, "to: invalid value 1"),
            (br#"{"signal": "FOO"}"#, "signal: unknown signal"),
            (br#"{"signal": 0}"#, "signal: invalid signal 0"),
            (br#"{"signal": 1.5}"#, "signal: invalid signal"),
            (br#"{"signal": true}"#, "got a boolean"),
            (br#"{}"#, "signal: missing"),
            (br#"{"sig": "HUP"}"#, "unknown field"),
            (b"HUP", "invalid JSON"),
        ] {
            let (st, msg) = err(signal_of(body));
            assert_eq!(st, 400);
            assert!(msg.contains(needle), "{msg}");
        }
    }

    fn hook(name: &str, process: Option<&str>, success: u64) -> HookStatus {
        HookStatus {
            name: name.into(),
            kind: "pre_start".into(),
            process: process.map(Into::into),
            success,
            ..Default::default()
        }
    }

    #[test]
    fn hook_counters_sit_with_their_process_and_global_ones_at_the_top() {
        let mut s = snap();
        s.hooks = vec![
            hook("migrate", None, 1),
            hook("clear", Some("web"), 3),
            hook("other", Some("db"), 9),
        ];
        let body: Value = serde_json::from_slice(&processes(&s, s.orphans_reaped).body).unwrap();
        let top = body["hooks"].as_array().unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0]["name"], "migrate");
        assert_eq!(top[0]["type"], "pre_start");
        assert_eq!(top[0]["success"], 1);
        assert!(top[0].get("process").is_none(), "{}", top[0]);
        let web = &body["processes"][0]["hooks"];
        assert_eq!(web.as_array().unwrap().len(), 1, "{web}");
        assert_eq!(web[0]["name"], "clear");
        assert_eq!(web[0]["success"], 3);
        for key in ["failure", "duration_seconds_sum", "last_ok", "last_at"] {
            assert!(web[0].get(key).is_some(), "{key}: {web}");
        }
        let one: Value = serde_json::from_slice(&process(&s, "web").body).unwrap();
        assert_eq!(one["hooks"], *web);
        // A process whose hooks never ran has an empty list, not none.
        s.hooks.clear();
        let body: Value = serde_json::from_slice(&processes(&s, s.orphans_reaped).body).unwrap();
        assert_eq!(body["hooks"], json!([]));
        assert_eq!(body["processes"][0]["hooks"], json!([]));
    }

    #[test]
    fn uptime_is_as_of_now_and_ready_lists_reasons() {
        let v = process_json(&snap().processes[0], &[], now_unix());
        let up = v["instances"][0]["uptime_seconds"].as_f64().unwrap();
        assert!((9.0..60.0).contains(&up), "{up}");
        let mut s = snap();
        s.not_ready = vec![
            NotReady::new("web-1: starting".into()),
            NotReady {
                what: "db-1: unhealthy".into(),
                detail: Some("GET http://127.0.0.1/h?key=s3cret: 500".into()),
            },
        ];
        let r = ready(&s, true);
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["not_ready"][0], "web-1: starting");
        assert_eq!(
            body["not_ready"][1],
            "db-1: unhealthy: GET http://127.0.0.1/h?key=s3cret: 500"
        );
        assert!(body["error"].as_str().unwrap().contains("web-1: starting"));
        // Without the token: which and their state, never the check's words.
        let r = ready(&s, false);
        assert_eq!(r.status, 503);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["not_ready"],
            json!(["web-1: starting", "db-1: unhealthy"])
        );
        assert_eq!(body["error"], "not ready: web-1: starting; db-1: unhealthy");
        s.ready = true;
        assert_eq!(ready(&s, false).status, 200);
    }
}
