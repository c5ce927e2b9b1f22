//! The management API and metrics endpoint, driven over real sockets
//! against the real binary with real children (issue 4): every endpoint
//! and its errors, authentication, limits (body, head, rate, connections,
//! threads), the unix socket, scaling and rolling restarts observed through
//! /proc and the children's own records, and the metrics after a crash.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::http::{self, free_ports, Resp};
use common::*;
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

/// A running sheepdog with its API on `port` and metrics on `metrics`.
struct Api {
    sd: Sheepdog,
    port: u16,
    metrics: u16,
    token: Option<&'static str>,
}

impl Api {
    /// `global` lines are indented by two spaces; `processes` by two too.
    fn start(name: &str, token: Option<&'static str>, global: &str, processes: &str) -> Api {
        let auth = token.map_or(String::new(), |t| format!("  api_auth: {t}\n"));
        let (mut sd, port, metrics) = start_serving(name, |port, metrics| {
            format!(
                "global:\n  shutdown_timeout: 10\n  restart_backoff_initial: 50ms\n  restart_backoff_max: 200ms\n  \
                 api_port: {port}\n  metrics_port: {metrics}\n{auth}{global}processes:\n{processes}"
            )
        });
        assert!(
            sd.wait_exit(Duration::ZERO).is_none(),
            "exited:\n{}",
            sd.log()
        );
        Api {
            sd,
            port,
            metrics,
            token,
        }
    }

    fn get(&self, path: &str) -> Resp {
        http::get(self.port, path, self.token)
    }

    fn post(&self, path: &str, body: &str) -> Resp {
        http::post(self.port, path, self.token, body)
    }

    /// POST `body` to `name`'s scale endpoint; it must be accepted (202).
    fn scale(&self, name: &str, body: &str) -> Resp {
        let r = self.post(&format!("/api/v1/processes/{name}/scale"), body);
        assert_eq!(r.status, 202, "scale {name} {body}: {}", r.body);
        r
    }

    fn process(&self, name: &str) -> Value {
        let r = self.get(&format!("/api/v1/processes/{name}"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Pids of `name`'s instances, in index order.
    fn pids(&self, name: &str) -> Vec<Option<i64>> {
        self.process(name)["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pid"].as_i64())
            .collect()
    }

    /// Wait until `name` has exactly `n` instances, all running with a
    /// live pid; return the pids.
    fn wait_running(&self, name: &str, n: usize) -> Vec<i32> {
        http::wait_running(self.port, self.token, name, n).unwrap_or_else(|last| {
            panic!(
                "{name} never ran {n} instances: {last:#}\n{}",
                self.sd.log()
            )
        })
    }

    fn scrape(&self) -> String {
        let r = http::get(self.metrics, "/metrics", None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.sd.pid()))
            .unwrap()
            .count()
    }
}

/// The value of the sample `line_prefix` (e.g. `sheepdog_ready`) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

const TWO_SLEEPERS: &str = "  web:\n    command: \"exec sleep 1000\"\n    scale: 2\n  other:\n    command: \"exec sleep 1000\"\n";

#[test]
fn health_and_ready_are_open_everything_else_needs_the_token() {
    let api = Api::start("api-auth", Some(TOKEN), "", TWO_SLEEPERS);
    api.wait_running("web", 2);
    api.wait_running("other", 1);
    let h = http::get(api.port, "/api/v1/health", None);
    assert_eq!(
        (h.status, h.json()["status"].clone()),
        (200, "healthy".into())
    );
    assert_eq!(h.header("content-type"), Some("application/json"));
    let r = http::get(api.port, "/api/v1/ready", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ready"], true);

    for (token, needle) in [
        (None, "missing bearer token"),
        (Some("wrong"), "invalid bearer token"),
        (Some("s3cret-token-and-more"), "invalid bearer token"),
    ] {
        for (method, path) in [
            ("GET", "/api/v1/processes"),
            ("GET", "/api/v1/processes/web"),
            ("POST", "/api/v1/processes/web/stop"),
            ("POST", "/api/v1/shutdown"),
            ("GET", "/api/v1/openapi.json"),
            ("GET", "/api/v1/logs"),
        ] {
            let body = (method == "POST").then_some("{}");
            let r = http::raw(api.port, &http::request(method, path, token, body));
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
            assert!(r.error().contains(needle), "{}", r.body);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"sheepdog\"")
            );
        }
    }
    // A Basic header is not a bearer token.
    let r = http::raw(
        api.port,
        b"GET /api/v1/processes HTTP/1.1\r\nAuthorization: Basic czNjcmV0LXRva2Vu\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    // Nothing was stopped or shut down by the refused requests.
    assert_eq!(api.wait_running("web", 2).len(), 2);
    let r = api.get("/api/v1/processes");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn reads_list_and_detail() {
    let api = Api::start("api-read", Some(TOKEN), "", TWO_SLEEPERS);
    let pids = api.wait_running("web", 2);
    let all = api.get("/api/v1/processes").json();
    assert_eq!(all["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(all["pid"], api.sd.pid());
    assert_eq!(all["phase"], "running");
    let names: Vec<&str> = all["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "web"]);
    let web = api.process("web");
    assert_eq!(web["process"], "web");
    assert_eq!(web["type"], "longrun");
    assert_eq!(web["state"], "running");
    assert_eq!(web["desired_scale"], 2);
    assert_eq!(web["current_scale"], 2);
    let i1 = &web["instances"][0];
    assert_eq!(i1["id"], "web-1");
    assert_eq!(i1["pid"], pids[0]);
    assert_eq!(i1["restart_count"], 0);
    assert_eq!(i1["health"], "unknown");
    assert!(i1["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(i1["started_at"].as_f64().unwrap() > 1.0e9);
    assert!(i1.get("last_exit").is_some() && i1.get("backoff_until").is_some());

    let r = api.get("/api/v1/processes/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "no process named \"nope\"");
    // HEAD is GET without a body.
    let r = http::raw(api.port, b"HEAD /api/v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "{}", r.body);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );

    let doc = api.get("/api/v1/openapi.json");
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/processes/{name}/scale"]["post"].is_object());
}

#[test]
fn unknown_routes_wrong_methods_and_later_endpoints() {
    let api = Api::start("api-routes", Some(TOKEN), "", TWO_SLEEPERS);
    let r = api.get("/api/v1/nothing");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no such endpoint: GET /api/v1/nothing"));
    assert_eq!(api.get("/").status, 404);

    let r = http::raw(
        api.port,
        &http::request("DELETE", "/api/v1/processes/web", Some(TOKEN), None),
    );
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(r.error().contains("method DELETE is not allowed"));
    let r = api.get("/api/v1/processes/web/stop");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = api.post("/api/v1/health", "{}");
    assert_eq!(r.status, 405);

    // Schedule endpoints on a process without a schedule.
    for (method, path, status) in [
        ("GET", "/api/v1/processes/web/schedule", 404),
        ("GET", "/api/v1/schedules/web/history", 404),
        ("POST", "/api/v1/processes/web/schedule/pause", 409),
        ("POST", "/api/v1/schedules/web/trigger", 409),
        ("POST", "/api/v1/schedules/nope/trigger", 404),
    ] {
        let body = (method == "POST").then_some("{}");
        let r = http::raw(api.port, &http::request(method, path, Some(TOKEN), body));
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(
            r.error().contains("web") || r.error().contains("nope"),
            "{}",
            r.body
        );
    }
}

#[test]
fn bad_bodies_are_400_naming_the_field() {
    let api = Api::start("api-bad", Some(TOKEN), "", TWO_SLEEPERS);
    api.wait_running("web", 2);
    for (path, body, needle) in [
        ("scale", "", "request body: empty"),
        ("scale", "{", "request body: invalid JSON"),
        ("scale", "[3]", "expected a JSON object"),
        (
            "scale",
            r#"{"desired": -1}"#,
            "desired: expected a non-negative integer",
        ),
        ("scale", r#"{"desired": "3"}"#, "desired:"),
        (
            "scale",
            r#"{"desired": 4294967297}"#,
            "desired: 4294967297 is too large; expected 0 to 4294967295",
        ),
        ("scale", r#"{"delta": 1.5}"#, "delta: expected an integer"),
        (
            "scale",
            r#"{"delta": -3}"#,
            "delta: -3 would take web below 0",
        ),
        ("scale", r#"{"desired": 1, "delta": 1}"#, "only one"),
        ("scale", r#"{"replicas": 1}"#, "unknown field \"replicas\""),
        (
            "signal",
            r#"{"signal": "NOPE"}"#,
            "signal: unknown signal \"NOPE\"",
        ),
        ("signal", r#"{"signal": 999}"#, "signal: invalid signal 999"),
        // Not trimmed: JSON quotes exactly what it means (as "to" is read).
        (
            "signal",
            r#"{"signal": " HUP"}"#,
            "signal: invalid signal \" HUP\"",
        ),
        (
            "signal",
            r#"{"signal": "9\n"}"#,
            "signal: invalid signal \"9\\n\"",
        ),
        ("signal", r#"{}"#, "signal: missing"),
        ("signal", r#"{"signal": ["HUP"]}"#, "got an array"),
        // A repeated field is refused, not read as its last value.
        (
            "scale",
            r#"{"desired": 1, "desired": 3}"#,
            "request body: field \"desired\" given twice; expected it once",
        ),
        (
            "signal",
            r#"{"signal": "HUP", "to": "main", "signal": "KILL"}"#,
            "request body: field \"signal\" given twice",
        ),
    ] {
        let r = api.post(&format!("/api/v1/processes/web/{path}"), body);
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.body);
        assert!(r.error().contains(needle), "{path} {body:?}: {}", r.body);
    }
    // Unknown names are 404 whatever the verb.
    for verb in ["start", "stop", "restart"] {
        let r = api.post(&format!("/api/v1/processes/nope/{verb}"), "");
        assert_eq!(r.status, 404, "{verb}: {}", r.body);
        assert!(r.error().contains("nope"));
    }
    let r = api.post("/api/v1/processes/nope/scale", r#"{"desired": 2}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.post("/api/v1/processes/nope/signal", r#"{"signal": "HUP"}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    // An action with a query it does not take is refused, not done
    // without it; a read ignores one.
    let before = api.pids("web");
    for path in ["restart?wait=true", "stop?force=1", "scale?desired=1"] {
        let r = api.post(
            &format!("/api/v1/processes/web/{path}"),
            r#"{"desired": 1}"#,
        );
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let key = path.split(['?', '=']).nth(1).unwrap_or_default();
        assert!(
            r.error()
                .contains(&format!("unknown query parameter \"{key}\"")),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(api.get("/api/v1/processes?_=1").status, 200);
    // So is a repeated query parameter.
    let r = api.get("/api/v1/logs?limit=1&limit=2");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("limit: given twice"), "{}", r.body);
    // Query names and values are percent-decoded, as path segments are;
    // numbers are plain digits.
    let r = api.get("/api/v1/logs?%6cimit=%31&stream=std%6fut");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.get("/api/v1/logs?limit=+1");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.post("/api/v1/processes/web/restart?wa%69t=true", "");
    assert!(r.error().contains("parameter \"wait\""), "{}", r.body);
    // Booleans read alike everywhere: a bare `follow` is true, as `wait` is.
    let r = api.get("/api/v1/logs?follow=maybe");
    assert!(
        r.error().contains("expected true, false, 1, 0, yes or no"),
        "{}",
        r.body
    );
    let r = api.post("/api/v1/schedules/web/trigger?wait=maybe", "");
    assert!(
        r.error().contains("expected true, false, 1, 0, yes or no"),
        "{}",
        r.body
    );
    // Still the same two: nothing applied.
    assert_eq!(api.wait_running("web", 2).len(), 2);
    assert_eq!(api.pids("web"), before);
}

#[test]
fn oversized_bodies_heads_and_malformed_requests() {
    let api = Api::start(
        "api-limits",
        Some(TOKEN),
        "  api_max_request_body: 1KiB\n",
        TWO_SLEEPERS,
    );
    // Announced too large: refused before the body is read.
    let r = http::raw(
        api.port,
        format!(
            "POST /api/v1/processes/web/scale HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 4096\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.error().contains("larger than the limit of 1024 bytes"),
        "{}",
        r.body
    );
    // Actually sent, too.
    let big = format!("{{\"desired\": 1, \"pad\": \"{}\"}}", "x".repeat(4000));
    let r = api.post("/api/v1/processes/web/scale", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    // Before authentication: no token needed to be refused for size.
    let r = http::raw(
        api.port,
        &http::request("POST", "/api/v1/shutdown", None, Some(&big)),
    );
    assert_eq!(r.status, 413);
    // Within the limit is fine.
    let r = api.post("/api/v1/processes/web/scale", r#"{"desired": 2}"#);
    assert!(matches!(r.status, 200 | 202), "{}", r.body);

    let huge_header = format!(
        "GET /api/v1/health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(http::raw(api.port, huge_header.as_bytes()).status, 431);
    assert_eq!(http::raw(api.port, b"NONSENSE\r\n\r\n").status, 400);
    // `printf 'GET /api/v1/health HTTP/1.0\n\n' | nc`: bare LFs are refused
    // at once, not answered 408 ("not complete within 10s") later.
    let asked = std::time::Instant::now();
    let r = http::raw(api.port, b"GET /api/v1/health HTTP/1.0\n\n");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("bare LF"), "{}", r.body);
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(
        http::raw(
            api.port,
            b"POST /api/v1/shutdown HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .status,
        411
    );
    // sheepdog is still running and serving.
    assert_eq!(api.get("/api/v1/health").status, 200);
    api.wait_running("web", 2);
}

#[test]
fn rate_limit_per_peer_answers_429() {
    let api = Api::start(
        "api-rate",
        None,
        "  api_rate_limit: 1\n  api_rate_burst: 3\n",
        TWO_SLEEPERS,
    );
    // At 1 request/s with a burst of 3, ten back-to-back requests cannot all
    // pass unless each took most of a second.
    // (An unknown path: limiting comes before routing, and 404 does not
    // depend on how far start-up has got.)
    let answers: Vec<Resp> = (0..10)
        .map(|_| http::get(api.port, "/nothing", None))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(statuses[..3].iter().all(|s| *s == 404), "{statuses:?}");
    let r = answers
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    assert!(
        r.error().contains("rate limit exceeded for 127.0.0.1"),
        "{}",
        r.body
    );
    // It names the setting that limits it.
    assert!(r.error().ends_with("(global.api_rate_limit)"), "{}", r.body);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // X-Forwarded-For does not buy a new bucket.
    let r = http::raw(
        api.port,
        b"GET /api/v1/processes HTTP/1.1\r\nX-Forwarded-For: 10.9.8.7\r\nX-Real-IP: 10.9.8.7\r\n\r\n",
    );
    assert_eq!(r.status, 429, "{}", r.body);
}

#[test]
fn health_and_ready_answer_a_peer_that_spent_its_rate_limit() {
    // Regression: 260 requests to a missing path from 127.0.0.1 made
    // /api/v1/health answer 429, so any local child could fail the
    // container's liveness probe.
    let api = Api::start(
        "api-rate-urgent",
        None,
        "  api_rate_limit: 1\n  api_rate_burst: 3\n",
        TWO_SLEEPERS,
    );
    let spent = |port: u16| {
        (0..10)
            .map(|_| http::get(port, "/api/v1/nope", None).status)
            .any(|s| s == 429)
    };
    assert!(
        spent(api.port),
        "the bucket was never empty: the test proves nothing"
    );
    for _ in 0..20 {
        let r = http::get(api.port, "/api/v1/health", None);
        assert_eq!(r.status, 200, "{}", r.body);
        let r = http::raw(api.port, b"HEAD /api/v1/health HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 200);
        let r = http::get(api.port, "/api/v1/ready", None);
        assert!(matches!(r.status, 200 | 503), "{}", r.body);
        assert!(r.json().get("ready").is_some(), "{}", r.body);
    }
    // ... and they took nothing from it: everything else is still limited.
    assert!(spent(api.port));
    let r = http::post(api.port, "/api/v1/health", None, "{}");
    assert_eq!(
        r.status, 429,
        "only health and readiness are exempt: {}",
        r.body
    );
    // On the metrics port too (a bucket of its own).
    assert!(spent(api.metrics));
    for _ in 0..20 {
        let r = http::get(api.metrics, "/health", None);
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[test]
fn unix_socket_is_private_and_a_stale_one_is_replaced() {
    let sockdir = TempDir::new("api-sockdir");
    let sock = sockdir.path("api.sock");
    // A stale socket: bound, then its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let api = Api::start(
        "api-unix",
        Some(TOKEN),
        &format!("  api_socket: {}\n", sock.display()),
        TWO_SLEEPERS,
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(
        api.sd.log().contains("replacing the stale socket"),
        "{}",
        api.sd.log()
    );
    let r = http::unix(&sock, "GET", "/api/v1/processes/web", Some(TOKEN), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http::unix(&sock, "GET", "/api/v1/processes/web", None, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        http::unix(&sock, "GET", "/api/v1/health", None, None).status,
        200
    );

    // A second sheepdog on the same (live) socket refuses to start.
    let mut second = Sheepdog::start(
        "api-unix-live",
        &format!(
            "global:\n  api_port: 0\n  metrics_enabled: false\n  api_socket: {}\nprocesses:\n  x:\n    command: \"exec sleep 1000\"\n",
            sock.display()
        ),
    );
    assert_eq!(second.exit_code(WAIT), 1, "{}", second.log());
    assert!(second.log().contains("is in use"), "{}", second.log());
    // The first one's socket still works.
    assert_eq!(
        http::unix(&sock, "GET", "/api/v1/health", None, None).status,
        200
    );
    // ...and a clean exit leaves no socket file behind.
    let mut api = api;
    api.sd.signal(libc::SIGTERM);
    assert_eq!(api.sd.exit_code(WAIT), 0, "{}", api.sd.log());
    assert!(!sock.exists(), "{} left behind", sock.display());
}

/// A start-up that fails after the socket was bound (here the metrics port
/// is taken) removes the socket, as a clean exit does.
#[test]
fn a_failed_start_up_leaves_no_socket_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut sd = Sheepdog::start(
        "api-failed-start",
        &format!(
            "global:\n  api_port: 0\n  metrics_port: {port}\n  api_socket: $DIR/api.sock\nprocesses:\n  x:\n    command: \"exec sleep 1000\"\n"
        ),
    );
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(sd.log().contains("global.metrics_port"), "{}", sd.log());
    let sock = sd.dir.path("api.sock");
    assert!(!sock.exists(), "{} left behind", sock.display());
    drop(taken);
}

#[test]
fn a_non_socket_file_at_the_socket_path_is_never_replaced() {
    let dir = TempDir::new("api-notsock");
    let path = dir.write("important.txt", "keep me");
    let mut sd = Sheepdog::start(
        "api-notsock-run",
        &format!(
            "global:\n  api_port: 0\n  metrics_enabled: false\n  api_socket: {}\nprocesses:\n  x:\n    command: \"exec sleep 1000\"\n",
            path.display()
        ),
    );
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(
        sd.log().contains("is not a socket; refusing to replace it"),
        "{}",
        sd.log()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    // And no process was started.
    assert!(!sd.log().contains("x-1: started"), "{}", sd.log());
}

#[test]
fn an_open_non_loopback_listener_needs_a_token_or_api_insecure() {
    let cfg = |p: u16, m: u16, extra: &str| {
        format!(
            "global:\n  api_port: {p}\n  metrics_port: {m}\n  api_listen: 0.0.0.0\n{extra}processes:\n  x:\n    command: \"exec sleep 1000\"\n"
        )
    };
    let [p, m] = free_ports::<2>();
    let mut sd = Sheepdog::start("api-open", &cfg(p, m, ""));
    assert_eq!(sd.exit_code(WAIT), 2, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("global.api_listen"), "{log}");
    assert!(log.contains("api_insecure"), "{log}");
    assert!(!log.contains("x-1: started"), "{log}");

    // With a token it starts, and the token is required.
    let (sd, p, _) = start_serving("api-open-token", |p, m| {
        cfg(p, m, &format!("  api_auth: {TOKEN}\n"))
    });
    assert_eq!(http::get(p, "/api/v1/processes", None).status, 401);
    assert_eq!(http::get(p, "/api/v1/processes", Some(TOKEN)).status, 200);
    drop(sd);

    // api_insecure: starts with a loud warning.
    let (sd, p, _) = start_serving("api-open-insecure", |p, m| {
        cfg(p, m, "  api_insecure: true\n")
    });
    assert!(sd.log().contains("INSECURE"), "{}", sd.log());
    assert_eq!(http::get(p, "/api/v1/processes", None).status, 200);
    // Other hosts call it by name (a compose service): served, while a
    // browser's Origin is still refused.
    let named = |extra: &str| {
        http::raw(
            p,
            format!("GET /api/v1/processes HTTP/1.1\r\nHost: app:{p}\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .status
    };
    assert_eq!(named(""), 200);
    assert_eq!(named("Origin: http://evil.example\r\n"), 403);
}

#[test]
fn api_auth_file_is_read_at_start_and_required() {
    let dir = TempDir::new("api-tokenfile");
    let file = dir.write("token", "file-token\n");
    let cfg = |p: u16, m: u16, file: &std::path::Path| {
        format!(
            "global:\n  api_port: {p}\n  metrics_port: {m}\n  api_auth_file: {}\nprocesses:\n  x:\n    command: \"exec sleep 1000\"\n",
            file.display()
        )
    };
    let (sd, p, _) = start_serving("api-tokenfile-run", |p, m| cfg(p, m, &file));
    assert_eq!(http::get(p, "/api/v1/processes", None).status, 401);
    assert_eq!(
        http::get(p, "/api/v1/processes", Some("file-token")).status,
        200
    );
    drop(sd);
    // A missing file aborts start-up before anything runs, as the
    // configuration error it is (exit 2).
    let [p, m] = free_ports::<2>();
    let mut sd = Sheepdog::start("api-tokenfile-missing", &cfg(p, m, &dir.path("missing")));
    assert_eq!(sd.exit_code(WAIT), 2, "{}", sd.log());
    assert!(
        sd.log().contains("global.api_auth_file: unable to read"),
        "{}",
        sd.log()
    );
    assert!(!sd.log().contains("x-1: started"), "{}", sd.log());
}

#[test]
fn a_signal_to_the_main_process_spares_the_rest_of_its_group() {
    // Like php-fpm: a master (the shell sheepdog started) and a worker in
    // its group, each writing down the signals it gets.
    let procs = r#"
  fpm:
    command: "trap 'echo main-usr1 >> $DIR/got' USR1; trap 'echo main-usr2 >> $DIR/got' USR2; sh -c 'trap \"echo worker-usr1 >> $DIR/got\" USR1; trap \"echo worker-usr2 >> $DIR/got\" USR2; echo worker >> $DIR/up; while :; do sleep 0.05; done' & echo main >> $DIR/up; while :; do sleep 0.05; done"
"#;
    let api = Api::start("api-signal-main", Some(TOKEN), "", procs);
    api.wait_running("fpm", 1);
    assert!(wait_until(WAIT, || api.sd.dir.lines("up").len() >= 2));
    let got = || api.sd.dir.lines("got");

    let r = api.post(
        "/api/v1/processes/fpm/signal",
        r#"{"signal": "USR1", "to": "main"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .ends_with("(main process only)"));
    assert!(
        wait_until(WAIT, || got().contains(&"main-usr1".to_string())),
        "{}",
        api.sd.log()
    );
    // Then one to the whole group: once the worker has taken it, it would
    // have taken an earlier USR1 too (a shell runs pending traps in signal
    // order), so its absence means the USR1 never reached the worker.
    let r = api.post("/api/v1/processes/fpm/signal", r#"{"signal": "USR2"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        wait_until(WAIT, || {
            let g = got();
            g.contains(&"worker-usr2".to_string()) && g.contains(&"main-usr2".to_string())
        }),
        "{:?}",
        got()
    );
    assert!(!got().contains(&"worker-usr1".to_string()), "{:?}", got());
    assert_eq!(api.wait_running("fpm", 1).len(), 1);
}

#[test]
fn stop_start_signal_and_shutdown_through_the_api() {
    let procs = r#"
  web:
    command: "trap 'echo hup >> $DIR/hups' HUP; trap 'exit 0' TERM; echo up >> $DIR/up; while :; do sleep 0.05; done"
    scale: 2
  other:
    command: "exec sleep 1000"
"#;
    let mut api = Api::start("api-control", Some(TOKEN), "", procs);
    let pids = api.wait_running("web", 2);
    // Both shells have their traps set.
    assert!(wait_until(WAIT, || api.sd.dir.lines("up").len() >= 2));

    let r = api.post("/api/v1/processes/web/signal", r#"{"signal": "SIGHUP"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "done");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("2 instance(s)"));
    assert!(
        wait_until(WAIT, || api.sd.dir.lines("hups").len() >= 2),
        "{}",
        api.sd.log()
    );
    // By number too.
    let r = api.post("/api/v1/processes/web/signal", r#"{"signal": 1}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(WAIT, || api.sd.dir.lines("hups").len() >= 4));

    let r = api.post("/api/v1/processes/web/stop", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "accepted");
    assert_eq!(r.json()["process"], "web");
    assert!(wait_until(WAIT, || api.process("web")["state"] == "stopped"));
    for p in &pids {
        assert!(wait_until(WAIT, || !alive(*p)), "pid {p} survived stop");
    }
    // Idempotent.
    let r = api.post("/api/v1/processes/web/stop", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("already stopped"));
    // Signalling a stopped process is a conflict.
    let r = api.post("/api/v1/processes/web/signal", r#"{"signal": "HUP"}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    // The other process is untouched, and sheepdog keeps running.
    assert_eq!(api.wait_running("other", 1).len(), 1);

    let r = api.post("/api/v1/processes/web/start", "");
    assert_eq!(r.status, 202, "{}", r.body);
    let fresh = api.wait_running("web", 2);
    assert!(fresh.iter().all(|p| !pids.contains(p)));
    let r = api.post("/api/v1/processes/web/start", "");
    assert_eq!(r.status, 200, "{}", r.body);

    let r = api.post("/api/v1/shutdown", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(api.sd.exit_code(WAIT), 0, "{}", api.sd.log());
    assert!(api.sd.log().contains("requested through the API"));
    for p in fresh {
        assert!(!alive(p));
    }
}

#[test]
fn processes_held_or_stopped_on_request_keep_sheepdog_up_for_a_start() {
    // `job` ends on its own (exit 0) after `app` was stopped on request
    // and while `later` is held: neither has "ended for good", so
    // sheepdog waits for a start request instead of exiting.
    let api = Api::start(
        "held-stopped-stay",
        None,
        "",
        "  app:\n    command: [sleep, '1000']\n  later:\n    command: [sleep, '1000']\n    initial_state: stopped\n  job:\n    command: \"while [ ! -e $DIR/go ]; do sleep 0.05; done\"\n    restart: on-failure\n",
    );
    api.wait_running("app", 1);
    let r = api.post("/api/v1/processes/app/stop", "");
    assert!(r.status < 300, "{}", r.body);
    assert!(wait_until(WAIT, || api.process("app")["state"] == "stopped"));
    std::fs::write(api.sd.dir.path("go"), "").unwrap();
    api.sd.wait_log("job-1: exited 0");
    // Still up: both can be started.
    for name in ["app", "later"] {
        let r = api.post(&format!("/api/v1/processes/{name}/start"), "");
        assert!(
            r.status < 300,
            "{name}: {} {}\n{}",
            r.status,
            r.body,
            api.sd.log()
        );
        api.wait_running(name, 1);
    }
    assert!(
        !api.sd.log().contains("every process has ended"),
        "{}",
        api.sd.log()
    );
}

#[test]
fn a_dependency_stopped_before_it_was_healthy_keeps_its_dependents_waiting() {
    // A database still starting (or a stuck migration) that an operator
    // stops must not let the app start on it.
    let procs = r#"
  db:
    command: "exec sleep 1000"
    health_check: {type: exec, command: [test, -e, $DIR/healthy], initial_delay: 0, period: 100ms, timeout: 1s, mode: readiness}
  web:
    command: "exec sleep 1000"
    depends_on: {db: {condition: healthy}}
"#;
    let api = Api::start("api-stopped-dep", Some(TOKEN), "", procs);
    api.wait_running("db", 1);
    let r = api.post("/api/v1/processes/db/stop", "");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    // The instance logs "stopped" before the supervisor has taken it in:
    // wait for the process's state, or the start finds it still stopping.
    assert!(
        wait_until(WAIT, || api.process("db")["state"] == "stopped"),
        "{}",
        api.sd.log()
    );
    api.sd.dir.write("healthy", "");
    let r = api.post("/api/v1/processes/db/start", "");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    api.sd.wait_log("starting web");
    let log = api.sd.log();
    let second_start = log.match_indices("db-1: started").nth(1).map(|(i, _)| i);
    let web = log.find("starting web");
    assert!(
        second_start.is_some() && web > second_start,
        "web started only once db ran again and was healthy:\n{log}"
    );
}

#[test]
fn a_dependency_stopped_after_it_met_its_condition_does_not_hold_dependents() {
    let procs = r#"
  d:
    command: "exec sleep 1000"
  e:
    command: "exec sleep 1000"
    health_check: {type: exec, command: [test, -e, $DIR/e-ready], initial_delay: 0, period: 100ms, timeout: 1s, mode: readiness}
  p:
    command: "exec sleep 1000"
    depends_on: [d, e]
"#;
    let api = Api::start("api-stopped-met", Some(TOKEN), "", procs);
    api.wait_running("d", 1);
    let r = api.post("/api/v1/processes/d/stop", "");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    api.sd.wait_log("d-1: stopped");
    api.sd.dir.write("e-ready", "");
    // d started before it was stopped: p starts once e is healthy.
    api.sd.wait_log("starting p");
}

#[test]
fn a_child_that_exits_during_its_pre_stop_hook_is_not_restarted_by_a_stop() {
    // horizon:terminate through the API: the hook makes the child exit and
    // then waits; that exit is the stop, not a crash to restart.
    let procs = r#"
  w:
    command: "echo up >> $DIR/ups; while [ ! -e $DIR/quit ]; do sleep 0.02; done"
    hooks:
      pre_stop:
        - { name: terminate, command: "touch $DIR/quit; while [ ! -e $DIR/release ]; do sleep 0.02; done" }
  keep:
    command: "exec sleep 1000"
"#;
    let api = Api::start("api-prestop-exit", Some(TOKEN), "", procs);
    api.wait_running("w", 1);
    let r = api.post("/api/v1/processes/w/stop", "");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    api.sd.wait_log("w-1: exited 0");
    api.sd.dir.write("release", "");
    api.sd.wait_log("pre_stop hook \"terminate\" succeeded");
    assert!(
        wait_until(WAIT, || api.process("w")["state"] == "stopped"),
        "{}",
        api.sd.log()
    );
    let log = api.sd.log();
    assert!(log.contains("not restarting: it is being stopped"), "{log}");
    assert_eq!(
        api.sd.dir.lines("ups").len(),
        1,
        "restarted during the hook:\n{log}"
    );
}

#[test]
fn a_stop_on_request_names_what_left_the_group() {
    let procs = r#"
  pg:
    command: "setsid sh -c 'echo $$ > $DIR/escaped; exec sleep 1000' & exec sleep 1000"
"#;
    let mut api = Api::start("api-stop-left", Some(TOKEN), "", procs);
    api.wait_running("pg", 1);
    let escaped = api.sd.wait_pid("escaped");
    let r = api.post("/api/v1/processes/pg/stop", "");
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    api.sd.wait_log(&format!("pg-1: pid {escaped} ("));
    assert!(alive(escaped), "only named while sheepdog runs");
    api.sd.signal(libc::SIGTERM);
    assert_eq!(api.sd.exit_code(WAIT), 0, "{}", api.sd.log());
    assert!(!alive(escaped), "the shutdown ends it:\n{}", api.sd.log());
}

#[test]
fn scaling_up_and_down_through_the_api() {
    let procs = "  q:\n    command: \"exec sleep 1000\"\n    max_scale: 4\n  once:\n    type: oneshot\n    command: \"exit 0\"\n";
    let api = Api::start("api-scale", Some(TOKEN), "", procs);
    let one = api.wait_running("q", 1);

    api.scale("q", r#"{"desired": 3}"#);
    let three = api.wait_running("q", 3);
    assert_eq!(three[0], one[0], "instance 1 kept its child");
    let mut distinct = three.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
    let snap = api.process("q");
    assert_eq!(
        (snap["desired_scale"].clone(), snap["current_scale"].clone()),
        (3.into(), 3.into())
    );
    let ids: Vec<&str> = snap["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["q-1", "q-2", "q-3"]);

    api.scale("q", r#"{"delta": 1}"#);
    let four = api.wait_running("q", 4);
    // Already so: 200 and nothing done, as for a start of a started process.
    for body in [r#"{"desired": 4}"#, r#"{"delta": 0}"#] {
        let r = api.post("/api/v1/processes/q/scale", body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(r.json()["status"], "done", "{}", r.body);
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing to do")),
            "{}",
            r.body
        );
    }
    assert_eq!(api.pids("q").len(), 4);

    // Above max_scale: 409, nothing changes.
    let r = api.post("/api/v1/processes/q/scale", r#"{"delta": 1}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.error().contains("max_scale"), "{}", r.body);
    // Oneshots do not scale, by any change either: 409, not a 400 for a
    // count below 0 computed as if they did.
    for body in [r#"{"desired": 2}"#, r#"{"delta": 1}"#, r#"{"delta": -5}"#] {
        let r = api.post("/api/v1/processes/once/scale", body);
        assert_eq!(r.status, 409, "{body}: {}", r.body);
        assert!(r.error().contains("oneshot"), "{body}: {}", r.body);
    }
    let r = api.post("/api/v1/processes/nope/scale", r#"{"delta": 1}"#);
    assert_eq!(r.status, 404, "{}", r.body);

    // Down by 3: the highest indices go, gracefully; q-1 stays.
    api.scale("q", r#"{"delta": -3}"#);
    let left = api.wait_running("q", 1);
    assert_eq!(left, [four[0]]);
    for p in &four[1..] {
        assert!(
            wait_until(WAIT, || !alive(*p)),
            "pid {p} survived scale-down"
        );
    }
    assert!(api.sd.log().contains("q-4: stopping (scale down)"));
    // Below zero: 400.
    let r = api.post("/api/v1/processes/q/scale", r#"{"delta": -2}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    // To zero and back.
    api.scale("q", r#"{"desired": 0}"#);
    assert!(wait_until(WAIT, || !alive(left[0])));
    assert!(wait_until(WAIT, || api.pids("q").is_empty()));
    api.scale("q", r#"{"desired": 2}"#);
    api.wait_running("q", 2);
}

#[test]
fn scaling_back_up_while_instances_are_still_stopping_runs_them_again() {
    // Each child takes 0.5 s to stop, so the second request always comes
    // while the first one's stops are still under way.
    let procs = "  q:\n    command: \"trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done\"\n    scale: 3\n    shutdown: {timeout: 5s}\n";
    let api = Api::start("api-scale-back", Some(TOKEN), "", procs);
    let before = api.wait_running("q", 3);

    // 3 → 1 → 3: q-2 and q-3 stop, then run again (new children).
    api.scale("q", r#"{"desired": 1}"#);
    api.scale("q", r#"{"desired": 3}"#);
    let after = api.wait_running("q", 3);
    assert_eq!(after[0], before[0], "q-1 was never stopped");
    assert!(
        after[1] != before[1] && after[2] != before[2],
        "{before:?} {after:?}"
    );

    // 3 → 0 → 2: the process stops, then starts again with 2.
    api.scale("q", r#"{"desired": 0}"#);
    let r = api.scale("q", r#"{"desired": 2}"#);
    assert!(r.body.contains("once stopped"), "{}", r.body);
    let again = api.wait_running("q", 2);
    assert!(!again.contains(&after[0]), "{after:?} {again:?}");

    // A rolling restart during a scale-down leaves the leaving alone.
    api.scale("q", r#"{"desired": 3}"#);
    let three = api.wait_running("q", 3);
    api.scale("q", r#"{"desired": 1}"#);
    let r = api.post("/api/v1/processes/q/restart", "");
    assert_eq!(r.status, 202, "{}", r.body);
    api.sd.wait_log("q: rolling restart complete");
    let one = api.wait_running("q", 1);
    assert_ne!(one[0], three[0], "q-1 was restarted");
    assert!(
        api.sd
            .log()
            .contains("q: rolling restart of 1 instance(s) requested"),
        "{}",
        api.sd.log()
    );

    // A stop while a start is pending cancels the start.
    api.scale("q", r#"{"desired": 0}"#);
    api.scale("q", r#"{"desired": 1}"#);
    let r = api.post("/api/v1/processes/q/stop", "");
    assert!(r.status == 202 || r.status == 200, "{}", r.body);
    assert!(
        wait_until(WAIT, || api.process("q")["state"] == "stopped"),
        "{:#}",
        api.process("q")
    );
    assert!(
        api.pids("q").iter().all(Option::is_none),
        "{:?}",
        api.pids("q")
    );
}

#[test]
fn rolling_restart_replaces_one_instance_at_a_time() {
    // Each child records its start and its stop; the stop takes a moment,
    // so overlapping stops would show.
    let procs = r#"
  web:
    command: "trap 'echo stop $SHEEPDOG_INSTANCE_INDEX $$ >> $DIR/events; sleep 0.2; exit 0' TERM; echo start $SHEEPDOG_INSTANCE_INDEX $$ >> $DIR/events; while :; do sleep 0.05; done"
    scale: 3
"#;
    let api = Api::start("api-rolling", Some(TOKEN), "", procs);
    let old = api.wait_running("web", 3);
    assert!(wait_until(WAIT, || api.sd.dir.lines("events").len() >= 3));

    let r = api.post("/api/v1/processes/web/restart", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("one instance at a time"));
    api.sd.wait_log("web: rolling restart complete");
    let new = api.wait_running("web", 3);
    for (o, n) in old.iter().zip(&new) {
        assert_ne!(o, n);
        assert!(!alive(*o), "old pid {o} alive");
    }
    assert!(wait_until(WAIT, || api.sd.dir.lines("events").len() >= 9));

    // The supervisor's own record: stop k, see k's new child start, then k+1.
    let log = api.sd.log();
    let after = &log[log
        .find("rolling restart of 3 instance(s) requested")
        .unwrap()..];
    let steps: Vec<String> = after
        .lines()
        .filter_map(|l| {
            let (_, msg) = l.split_once(" | ")?;
            if msg.contains(": restarting (rolling)") || msg.contains(": started (pid") {
                Some(
                    msg.split(':').next()?.to_string()
                        + if msg.contains("restarting") {
                            " down"
                        } else {
                            " up"
                        },
                )
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        steps,
        [
            "web-1 down",
            "web-1 up",
            "web-2 down",
            "web-2 up",
            "web-3 down",
            "web-3 up"
        ],
        "{log}"
    );

    // The children's record: stops in index order, each before its own
    // replacement starts, each by the old pid.
    let events = api.sd.dir.lines("events");
    let ev: Vec<(&str, &str, i32)> = events[3..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], f[1], f[2].parse().unwrap())
        })
        .collect();
    let stops: Vec<&str> = ev.iter().filter(|e| e.0 == "stop").map(|e| e.1).collect();
    assert_eq!(stops, ["1", "2", "3"], "{events:?}");
    for (k, idx) in ["1", "2", "3"].iter().enumerate() {
        let stop = ev
            .iter()
            .position(|e| e.0 == "stop" && e.1 == *idx)
            .unwrap();
        let start = ev
            .iter()
            .position(|e| e.0 == "start" && e.1 == *idx)
            .unwrap();
        assert!(stop < start, "{events:?}");
        assert_eq!(ev[stop].2, old[k], "{events:?}");
        assert_eq!(ev[start].2, new[k], "{events:?}");
    }
    // Restart counters: manual, per instance.
    let web = api.process("web");
    assert_eq!(web["restarts"]["manual"], 3);
    assert_eq!(web["operation"], Value::Null);
    for i in web["instances"].as_array().unwrap() {
        assert_eq!(i["restart_count"], 1, "{i}");
    }
}

#[test]
fn a_rolling_restart_cut_short_counts_only_the_restarts_made() {
    // Regression: all three were counted when the restart was asked for.
    let procs = r#"
  web:
    command: "trap 'sleep 2; exit 0' TERM; echo up >> $DIR/up; while :; do sleep 0.05; done"
    scale: 3
"#;
    let api = Api::start("api-roll-cut", Some(TOKEN), "", procs);
    api.wait_running("web", 3);
    // Running is not enough: a shell that has not set its trap yet dies
    // at once of the restart's SIGTERM, and is relaunched before the stop.
    assert!(
        wait_until(WAIT, || api.sd.dir.lines("up").len() >= 3),
        "{}",
        api.sd.log()
    );
    assert_eq!(api.post("/api/v1/processes/web/restart", "").status, 202);
    // Instance 1 takes 2 s to stop: the stop comes first.
    assert_eq!(api.post("/api/v1/processes/web/stop", "").status, 202);
    assert!(
        wait_until(WAIT, || api.process("web")["state"] == "stopped"),
        "{}",
        api.sd.log()
    );
    let web = api.process("web");
    assert_eq!(
        api.sd.count("web-1: started (pid"),
        1,
        "web-1 was relaunched after all:\n{}",
        api.sd.log()
    );
    assert_eq!(web["restarts"]["manual"].as_u64().unwrap_or(0), 0, "{web}");
}

#[test]
fn idle_connections_neither_block_status_nor_add_threads() {
    let api = Api::start("api-idle", Some(TOKEN), "", TWO_SLEEPERS);
    api.wait_running("web", 2);
    api.wait_running("other", 1);
    assert_eq!(api.get("/api/v1/processes").status, 200);
    let before = api.threads();

    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", api.port)).unwrap())
        .collect();
    // Half-sent requests too (a slowloris): a head that never ends.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", api.port)).unwrap())
        .collect();
    for s in &mut slow {
        s.write_all(b"GET /api/v1/processes HTTP/1.1\r\nX-Slow: ")
            .unwrap();
    }

    // Answered while all of them are open: well within the server's 10 s
    // read timeout, after which a blocked server would finally answer.
    let s = TcpStream::connect(("127.0.0.1", api.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut s2 = s.try_clone().unwrap();
    s2.write_all(&http::request(
        "GET",
        "/api/v1/processes",
        Some(TOKEN),
        None,
    ))
    .unwrap();
    let mut out = Vec::new();
    (&s).read_to_end(&mut out)
        .expect("status answered while 220 connections are open");
    let r = http::parse(&out).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["processes"].as_array().unwrap().len(), 2);
    // Metrics too.
    assert!(api.scrape().contains("sheepdog_process_up"));

    let after = api.threads();
    assert_eq!(
        after, before,
        "thread count changed with 220 open connections"
    );
    drop(idle);
    drop(slow);
    assert_eq!(api.get("/api/v1/health").status, 200);
    assert_eq!(api.threads(), before);
}

#[test]
fn reaped_orphans_are_counted_without_a_supervisor_event() {
    // A reap does not wake the supervisor, and the count was read only
    // when it published a snapshot: a Prometheus scrape of an idle
    // container showed sheepdog_zombies_reaped_total 0 however many it
    // had reaped (until a /health or a state change republished).
    let procs = r#"
  web:
    command: "for i in 1 2 3; do (sleep 0.05 &); done; exec sleep 1000"
"#;
    let api = Api::start("api-orphans", None, "", procs);
    api.wait_running("web", 1);
    let mut last = (String::new(), Value::Null);
    let counted = wait_until(WAIT, || {
        let scrape = api.scrape();
        let n = sample(&scrape, "sheepdog_zombies_reaped_total").unwrap_or(0.0);
        let status = api.get("/api/v1/processes").json();
        let ok = n >= 3.0 && status["orphans_reaped"].as_u64() >= Some(3);
        last = (scrape, status["orphans_reaped"].clone());
        ok
    });
    assert!(
        counted,
        "orphans_reaped {}; scrape:\n{}\n{}",
        last.1,
        last.0,
        api.sd.log()
    );
}

#[test]
fn metrics_families_and_values_after_a_crash_and_restarts() {
    // `crashy` exits 3 on its first run and stays up on the second; `web`
    // leaves an orphan behind for the reaper.
    let procs = r#"
  crashy:
    command: "if [ -e $DIR/ran ]; then exec sleep 1000; fi; touch $DIR/ran; exit 3"
  web:
    command: "(sleep 0.05 &); exec sleep 1000"
    scale: 2
"#;
    let api = Api::start("api-metrics", Some(TOKEN), "", procs);
    api.wait_running("web", 2);
    let crashy = api.wait_running("crashy", 1);
    // Let the orphan die and be reaped.
    assert!(wait_until(WAIT, || {
        api.get("/api/v1/processes").json()["orphans_reaped"].as_u64() >= Some(1)
    }));
    let r = api.post("/api/v1/processes/web/restart", "");
    assert_eq!(r.status, 202);
    api.sd.wait_log("web: rolling restart complete");
    api.wait_running("web", 2);
    let _ = api.get("/api/v1/nothing-here");

    let text = api.scrape();
    let v =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    assert_eq!(
        v(&format!(
            "sheepdog_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    let started = v("sheepdog_start_time_seconds");
    assert!(started > 1.0e9);
    assert_eq!(v("sheepdog_ready"), 1.0);
    assert_eq!(
        v("sheepdog_process_up{process=\"crashy\",instance_id=\"crashy-1\"}"),
        1.0
    );
    assert_eq!(
        v("sheepdog_process_up{process=\"web\",instance_id=\"web-2\"}"),
        1.0
    );
    assert_eq!(v("sheepdog_process_desired_scale{process=\"web\"}"), 2.0);
    assert_eq!(v("sheepdog_process_current_scale{process=\"web\"}"), 2.0);
    assert_eq!(
        v("sheepdog_process_restarts_total{process=\"crashy\",reason=\"exit\"}"),
        1.0
    );
    assert_eq!(
        v("sheepdog_process_restarts_total{process=\"crashy\",reason=\"signal\"}"),
        0.0
    );
    assert_eq!(
        v("sheepdog_process_restarts_total{process=\"web\",reason=\"manual\"}"),
        2.0
    );
    assert_eq!(
        v("sheepdog_process_last_exit_code{process=\"crashy\",instance_id=\"crashy-1\"}"),
        3.0
    );
    // The rolled web instances were stopped by SIGTERM: 128+15.
    assert_eq!(
        v("sheepdog_process_last_exit_code{process=\"web\",instance_id=\"web-1\"}"),
        143.0
    );
    let st = v("sheepdog_process_start_time_seconds{process=\"crashy\",instance_id=\"crashy-1\"}");
    assert!(st >= started, "{st} < {started}");
    assert!(v("sheepdog_zombies_reaped_total") >= 1.0);
    assert!(v("sheepdog_api_requests_total{code=\"200\"}") >= 1.0);
    assert!(v("sheepdog_api_requests_total{code=\"202\"}") >= 1.0);
    assert!(v("sheepdog_api_requests_total{code=\"404\"}") >= 1.0);
    for family in [
        "sheepdog_health_check_status gauge",
        "sheepdog_health_check_duration_seconds histogram",
        "sheepdog_health_checks_total counter",
        "sheepdog_zombies_reaped_total counter",
        "sheepdog_api_requests_total counter",
        "sheepdog_process_restarts_total counter",
        "sheepdog_process_start_time_seconds gauge",
        "sheepdog_process_last_exit_code gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "{family}:\n{text}"
        );
    }
    assert!(
        !text.contains("instance=\"") && !text.contains("job=\""),
        "{text}"
    );
    // Every exported reason is in the HELP text (it used to leave out
    // `start`).
    assert!(
        text.contains("restarts_total Restarts of the process's instances by reason: exit, signal, start, health, manual.\n"),
        "{text}"
    );
    // No shutdown going on: the family without a sample.
    assert!(
        text.contains("# TYPE sheepdog_shutdown_duration_seconds gauge\n")
            && sample(&text, "sheepdog_shutdown_duration_seconds").is_none(),
        "{text}"
    );
    assert!(!crashy.is_empty());

    // OpenMetrics on request; /health beside the metrics; nothing else.
    let om = http::raw(
        api.metrics,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
    );
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with("# EOF\n"));
    let h = http::get(api.metrics, "/health", None);
    assert_eq!((h.status, h.body.as_str()), (200, "OK\n"));
    assert_eq!(
        http::get(api.metrics, "/api/v1/processes", None).status,
        404
    );
    assert_eq!(http::post(api.metrics, "/metrics", None, "{}").status, 405);
}

/// An instance's health-check counters are Prometheus counters: a restart
/// on request (a new child in the same instance, the same series) keeps
/// them, as it keeps the instance's restart count; they used to start again
/// from 0, a counter reset in a series that never went away.
#[test]
fn health_check_counters_survive_a_restart_of_their_instance() {
    let procs = "  web:\n    command: \"exec sleep 1000\"\n    health_check: {type: exec, command: [true], initial_delay: 0, period: 100ms, timeout: 1s}\n";
    let api = Api::start("api-probe-counters", Some(TOKEN), "", procs);
    api.wait_running("web", 1);
    let ok =
        "sheepdog_health_checks_total{process=\"web\",instance_id=\"web-1\",result=\"success\"}";
    let count =
        "sheepdog_health_check_duration_seconds_count{process=\"web\",instance_id=\"web-1\"}";
    let mut before = (0.0, 0.0);
    assert!(
        wait_until(WAIT, || {
            let text = api.scrape();
            before = (
                sample(&text, ok).unwrap_or(0.0),
                sample(&text, count).unwrap_or(0.0),
            );
            before.0 >= 20.0
        }),
        "{}",
        api.scrape()
    );
    let old = api.wait_running("web", 1);
    assert_eq!(api.post("/api/v1/processes/web/restart", "").status, 202);
    api.sd.wait_log("web: rolling restart complete");
    assert_ne!(api.wait_running("web", 1), old);
    let text = api.scrape();
    let after = (sample(&text, ok).unwrap(), sample(&text, count).unwrap());
    assert!(
        after.0 >= before.0 && after.1 >= before.1,
        "{before:?} -> {after:?}:\n{text}"
    );
}

/// A process that is down because it failed (it gave up restarting, or a
/// oneshot failed) keeps its desired scale in /metrics, so the
/// `current < desired` alerts fire for it; the API calls it `failed`.
/// Only one that ended well (a completed oneshot) wants 0 instances. (A
/// process whose every instance gave up used to show desired 0, `finished`.)
#[test]
fn a_process_that_failed_keeps_its_desired_scale() {
    let procs = r#"
  half:
    command: 'if [ "$SHEEPDOG_INSTANCE_INDEX" = 1 ]; then exit 1; fi; exec sleep 1000'
    scale: 2
  all:
    command: 'exit 1'
    scale: 2
  badone:
    type: oneshot
    command: 'exit 4'
  goodone:
    type: oneshot
    command: 'true'
  keep:
    command: 'exec sleep 1000'
"#;
    let api = Api::start(
        "api-gave-up",
        None,
        "  max_restart_attempts: 2
",
        procs,
    );
    let state = |name: &str| api.process(name)["state"].as_str().map(str::to_string);
    let settled = wait_until(WAIT, || {
        state("all").as_deref() == Some("failed")
            && state("badone").as_deref() == Some("failed")
            && state("goodone").as_deref() == Some("finished")
            && api.process("half")["instances"][0]["state"] == "failed"
    });
    assert!(
        settled,
        "{:#}\n{}",
        api.get("/api/v1/processes").json(),
        api.sd.log()
    );
    assert_eq!(state("half").as_deref(), Some("running"));
    let text = api.scrape();
    for (name, desired, current) in [
        ("all", 2.0, 0.0),
        ("half", 2.0, 1.0),
        ("badone", 1.0, 0.0),
        ("goodone", 0.0, 0.0),
        ("keep", 1.0, 1.0),
    ] {
        let v = |family: &str| {
            sample(
                &text,
                &format!("sheepdog_process_{family}{{process=\"{name}\"}}"),
            )
        };
        assert_eq!(
            (v("desired_scale"), v("current_scale")),
            (Some(desired), Some(current)),
            "{name}:\n{text}"
        );
    }
}

#[test]
fn custom_metrics_path_and_promtool() {
    let api = Api::start(
        "api-promtool",
        None,
        "  metrics_path: /prom\n",
        "  web:\n    command: \"exit 3\"\n    restart: always\n  ok:\n    command: \"exec sleep 1000\"\n",
    );
    assert!(
        api.sd.wait_log_n("web-1: exited 3", 1, WAIT),
        "{}",
        api.sd.log()
    );
    // The 404 names the path asked for and where the metrics are.
    let r = http::get(api.metrics, "/metrics", None);
    assert_eq!(r.status, 404);
    assert!(
        r.body
            .contains("no such path \\\"/metrics\\\"; metrics are at /prom and health at /health"),
        "{}",
        r.body
    );
    let r = http::get(api.metrics, "/prom", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    promtool_check(&r.body);
}

#[test]
fn rolling_restart_waits_for_each_new_instance_to_be_ready() {
    // An instance becomes ready only once its `ready-<index>` file exists;
    // the test creates it for the replacement of web-1 only after checking
    // that web-2 has not been touched meanwhile.
    let procs = r#"
  web:
    command: "echo start $SHEEPDOG_INSTANCE_INDEX $$ >> $DIR/events; while :; do sleep 0.05; done"
    scale: 2
    health_check:
      type: exec
      command: [test, -e, "$DIR/ready-{index}"]
      initial_delay: 0
      period: 100ms
      timeout: 1s
      mode: readiness
"#;
    let api = Api::start("api-rolling-ready", Some(TOKEN), "", procs);
    for i in 1..=2 {
        api.sd.dir.write(&format!("ready-{i}"), "");
    }
    api.wait_running("web", 2);
    assert!(api.sd.wait_log_n(": healthy", 2, WAIT), "{}", api.sd.log());
    std::fs::remove_file(api.sd.dir.path("ready-1")).unwrap();
    let r = api.post("/api/v1/processes/web/restart", "");
    assert_eq!(r.status, 202, "{}", r.body);
    // web-1 is replaced, but its replacement is not ready: web-2 must wait.
    assert!(
        api.sd.wait_log_n("web-1: started (pid", 2, WAIT),
        "{}",
        api.sd.log()
    );
    assert!(
        !wait_until(Duration::from_millis(800), || api
            .sd
            .log()
            .contains("web-2: restarting (rolling)")),
        "web-2 restarted before web-1's replacement was ready:\n{}",
        api.sd.log()
    );
    api.sd.dir.write("ready-1", "");
    api.sd.wait_log("web-2: restarting (rolling)");
    api.sd.wait_log("web: rolling restart complete");
    let log = api.sd.log();
    let ready = log.rfind("web-1: healthy").unwrap();
    assert!(
        ready < log.find("web-2: restarting (rolling)").unwrap(),
        "{log}"
    );
}

#[test]
fn logs_recent_filtered_and_followed() {
    let procs = r#"
  talker:
    command: "echo out-one; echo err-one >&2; echo out-two; while [ ! -e $DIR/more ]; do sleep 0.05; done; echo after-the-request; exec sleep 1000"
"#;
    let api = Api::start("api-logs", Some(TOKEN), "", procs);
    api.wait_running("talker", 1);
    assert!(wait_until(WAIT, || api
        .get("/api/v1/processes/talker/logs")
        .body
        .contains("out-two")));
    let r = api.get("/api/v1/processes/talker/logs?stream=stdout&limit=10");
    assert_eq!(r.status, 200, "{}", r.body);
    let msgs: Vec<String> = r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec["msg"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs, ["out-one", "out-two"], "stdout only, oldest first");
    // Each record is the object a JSON log line is, in its order, seq first.
    assert!(
        r.body.starts_with("{\"records\":[{\"seq\":") && r.body.contains(",\"ts\":\""),
        "{}",
        r.body
    );
    let all = api.get("/api/v1/logs?limit=10000");
    assert!(
        all.body.contains("err-one") && all.body.contains("\"process\":\"sheepdog\""),
        "{}",
        all.body
    );
    assert_eq!(api.get("/api/v1/processes/ghost/logs").status, 404);
    let bad = api.get("/api/v1/logs?limit=0");
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("limit"), "{}", bad.body);
    // HEAD carries the stream's head (and no body), as RFC 9110 asks.
    let head = http::raw(
        api.port,
        &http::request("HEAD", "/api/v1/logs?follow=true", Some(TOKEN), None),
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.body, "");

    // Follow: a long poll from the latest record on (both streams) gets the
    // line printed after it was sent — whether it was already waiting when
    // the line came, or asked just after.
    let since = api.get("/api/v1/processes/talker/logs").json()["next_since"]
        .as_u64()
        .unwrap();
    let port = api.port;
    let poll = std::thread::spawn(move || {
        http::get(
            port,
            &format!("/api/v1/processes/talker/logs?since={since}&wait=20"),
            Some(TOKEN),
        )
    });
    api.sd.dir.write("more", "");
    let got = poll.join().unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.contains("after-the-request"), "{}", got.body);
    assert!(
        !got.body.contains("out-two"),
        "only records newer than since: {}",
        got.body
    );

    let reopen = api.post("/api/v1/logs/reopen", "");
    assert_eq!(reopen.status, 200, "{}", reopen.body);
}

/// The counters of hook `name` in a `hooks` list of the API.
fn hook_in<'a>(hooks: &'a Value, name: &str) -> Option<&'a Value> {
    hooks.as_array()?.iter().find(|h| h["name"] == name)
}

/// docs/hooks.md: the hook counters are in the API snapshot under `hooks`,
/// the global hooks' at the top, each process's with it; they change when a
/// hook runs.
#[test]
fn hook_counters_are_in_the_snapshot_and_count_each_run() {
    let hooks = "hooks:\n  pre_start:\n    - { name: prep, command: \"true\" }\n";
    let procs = r#"
  worker:
    command: [sleep, "1000"]
    hooks:
      pre_start: [ { name: warm, command: "true" } ]
      post_start: [ { name: note, command: "exit 3" } ]
"#;
    let api = Api::start("api-hook-counters", Some(TOKEN), hooks, procs);
    let first = api.wait_running("worker", 1);
    let all = api.get("/api/v1/processes").json();
    let prep = hook_in(&all["hooks"], "prep").unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(
        (&prep["type"], &prep["success"], &prep["failure"]),
        (&Value::from("pre_start"), &Value::from(1), &Value::from(0))
    );
    assert_eq!(prep["last_ok"], true);
    assert!(prep["last_at"].as_f64().unwrap() > 1.0e9);
    assert!(hook_in(&all["hooks"], "warm").is_none(), "{all:#}");
    // The post_start hook runs beside the process: wait for its failure.
    let counts = |name: &str| -> Option<(u64, u64)> {
        let w = api.process("worker");
        let h = hook_in(&w["hooks"], name)?;
        Some((h["success"].as_u64()?, h["failure"].as_u64()?))
    };
    let mut seen = (None, None);
    let ok = wait_until(WAIT, || {
        seen = (counts("warm"), counts("note"));
        seen == (Some((1, 0)), Some((0, 1)))
    });
    assert!(ok, "{seen:?}: {:#}", api.process("worker"));
    let listed = api.get("/api/v1/processes").json();
    assert_eq!(
        listed["processes"][0]["hooks"],
        api.process("worker")["hooks"]
    );

    // A restart runs both again; the counters move, the global one stays.
    api.post("/api/v1/processes/worker/restart", "");
    let ok = wait_until(WAIT, || {
        seen = (counts("warm"), counts("note"));
        seen == (Some((2, 0)), Some((0, 2)))
    });
    assert!(ok, "{seen:?}: {:#}", api.process("worker"));
    assert_ne!(api.wait_running("worker", 1), first);
    let all = api.get("/api/v1/processes").json();
    assert_eq!(hook_in(&all["hooks"], "prep").unwrap()["success"], 1);
}

/// The `seq` of each record in a logs answer, checking it is there.
fn seqs(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {r}")))
        .collect()
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

/// Follow `path` over HTTP/1.0 (the stream ends with the connection, no
/// chunking) until a record's `msg` is `last`; the records, keep-alive
/// lines left out.
fn follow_until(port: u16, path: &str, last: &str, then: impl FnOnce()) -> Vec<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let head = format!("GET {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // The head comes first: from then on the stream is live.
    let mut read_some = |raw: &mut Vec<u8>| match s.read(&mut buf) {
        Ok(n) => raw.extend_from_slice(&buf[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    };
    let has_head = |raw: &[u8]| raw.windows(4).any(|w| w == b"\r\n\r\n");
    assert!(wait_until(WAIT, || {
        read_some(&mut raw);
        has_head(&raw)
    }));
    then();
    let records = |raw: &[u8]| -> Vec<Value> {
        let text = String::from_utf8_lossy(raw);
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let done = wait_until(WAIT, || {
        read_some(&mut raw);
        records(&raw).iter().any(|r| r["msg"] == last)
    });
    assert!(done, "no {last:?} in: {}", String::from_utf8_lossy(&raw));
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.split(' ').nth(1), Some("200"), "{text}");
    records(&raw)
}

/// Every record the logs API gives, answered or followed, has its `seq`;
/// seqs increase, and `since` (the last one seen) resumes right after it,
/// with nothing missed and nothing twice.
#[test]
fn log_records_carry_increasing_seqs_and_since_resumes_after_one() {
    let procs = r#"
  talker:
    command: "echo l1; echo l2; echo l3; while [ ! -e $DIR/more ]; do sleep 0.05; done; echo l4; echo l5; exec sleep 1000"
"#;
    let api = Api::start("api-log-numbers", Some(TOKEN), "", procs);
    let path = "/api/v1/processes/talker/logs";
    assert!(wait_until(WAIT, || api.get(path).body.contains("l3")));
    let body = api.get(path).json();
    let recs = body["records"].as_array().unwrap().clone();
    let msgs: Vec<&str> = recs.iter().map(|r| r["msg"].as_str().unwrap()).collect();
    assert_eq!(msgs, ["l1", "l2", "l3"]);
    let talker = seqs(&recs);
    assert!(strictly_increasing(&talker), "{talker:?}");
    assert_eq!(body["next_since"].as_u64(), talker.last().copied());

    // Stack-wide, sheepdog's own records included: every one numbered.
    let all = api.get("/api/v1/logs?limit=10000").json();
    let all = seqs(all["records"].as_array().unwrap());
    assert!(strictly_increasing(&all), "{all:?}");
    assert!(talker.iter().all(|s| all.contains(s)));

    // Resume after l1: exactly l2 and l3.
    let after = api.get(&format!("{path}?since={}", talker[0])).json();
    let after = after["records"].as_array().unwrap();
    assert_eq!(seqs(after), talker[1..]);

    // Follow from l2's seq: l3 from the buffer, then l4 and l5 live.
    let port = api.port;
    let dir = &api.sd.dir;
    let followed = follow_until(
        port,
        &format!("{path}?follow=true&since={}", talker[1]),
        "l5",
        || {
            dir.write("more", "");
        },
    );
    let msgs: Vec<&str> = followed
        .iter()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["l3", "l4", "l5"]);
    let got = seqs(&followed);
    assert_eq!(got[0], talker[2]);
    assert!(strictly_increasing(&got), "{got:?}");
    // The answered form agrees with the followed one.
    let answered = api.get(&format!("{path}?since={}", talker[1])).json();
    assert_eq!(seqs(answered["records"].as_array().unwrap()), got);
    // Log lines (text here; JSON in the unit tests) never show a seq.
    assert!(!api.sd.log().contains("\"seq\""), "{}", api.sd.log());
}

/// A small seeded generator (xorshift64*): a failure names its seed and
/// request number, and the same seed replays the same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A well-formed request to a real endpoint, then a few byte-level
/// mutations: flipped, inserted, deleted or repeated bytes and the
/// fragments parsers trip on (percent escapes, NULs, huge numbers, bare
/// CRs, broken UTF-8). Never the shutdown route: the server must stay up.
fn hostile_request(rng: &mut Rng) -> Vec<u8> {
    const TARGETS: &[(&str, &str)] = &[
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/ready"),
        ("GET", "/api/v1/processes"),
        ("GET", "/api/v1/processes/web"),
        ("GET", "/api/v1/processes/web/logs?lines=5&stream=stderr"),
        ("GET", "/api/v1/logs?lines=3&since=10&process=other"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/processes/web/scale"),
        ("POST", "/api/v1/processes/other/signal"),
        ("POST", "/api/v1/processes/web/restart"),
        ("POST", "/api/v1/processes/other/stop"),
        ("POST", "/api/v1/processes/other/start"),
        ("POST", "/api/v1/logs/reopen"),
    ];
    const BODIES: &[&str] = &[
        r#"{"desired": 2}"#,
        r#"{"desired": 1}"#,
        r#"{"signal": "HUP"}"#,
        r#"{"signal": "USR1", "instance": 0}"#,
        r#"{"mode": "rolling"}"#,
        r#"{"timeout": "5s"}"#,
        "{}",
        "[]",
    ];
    const FRAGMENTS: &[&str] = &[
        "%",
        "%zz",
        "%ff%fe",
        "%00",
        "%2f..%2f",
        "\0",
        "\r",
        "\n",
        "\r\n",
        " ",
        "\t",
        "{",
        "}",
        "[",
        "\"",
        ":",
        ",",
        "?",
        "&",
        "=",
        "/",
        "..",
        "99999999999999999999999",
        "-1",
        "1e308",
        "\u{feff}",
        "\u{10ffff}",
        "\\u0000",
        "null",
        "true",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 7\r\n",
        "Authorization: Bearer x\r\n",
    ];
    let (method, path) = *rng.pick(TARGETS);
    let body = (method == "POST").then(|| *rng.pick(BODIES));
    let token = (rng.below(5) > 0).then_some(TOKEN);
    let mut req = http::request(method, path, token, body);
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(req.len() + 1);
        match rng.below(5) {
            0 if at < req.len() => req[at] ^= 1 << rng.below(8),
            1 => req.insert(at, rng.next() as u8),
            2 => {
                let end = (at + 1 + rng.below(16)).min(req.len());
                req.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(req.len());
                let copy = req[at..end].to_vec();
                req.splice(at..at, copy);
            }
            _ => {
                let f = rng.pick(FRAGMENTS).as_bytes();
                req.splice(at..at, f.iter().copied());
            }
        }
    }
    if req.windows(8).any(|w| w.eq_ignore_ascii_case(b"shutdown")) {
        return http::request("GET", "/api/v1/health", None, None);
    }
    req
}

/// Send `bytes`, close our side (so a short body ends now rather than at
/// the server's read timeout) and read whatever comes back.
fn send_half_closed(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn hostile_requests_get_answers_and_never_crash_the_server() {
    // A fixed seed keeps CI repeatable; set SHEEPDOG_TEST_SEED to explore.
    let seed = match std::env::var("SHEEPDOG_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("SHEEPDOG_TEST_SEED={s:?}: expected a whole number")),
        Err(_) => 0x05ee_dd09_u64,
    };
    let mut api = Api::start(
        "api-hostile",
        Some(TOKEN),
        "  api_rate_limit: 0\n",
        TWO_SLEEPERS,
    );
    api.wait_running("web", 2);
    let threads_before = api.threads();
    let mut rng = Rng(seed);
    let mut answered = 0;
    const REQUESTS: usize = 400;
    for n in 0..REQUESTS {
        let req = hostile_request(&mut rng);
        let shown = String::from_utf8_lossy(&req).into_owned();
        let out = send_half_closed(api.port, &req);
        if out.is_empty() {
            // Closing on bytes that are not HTTP at all is an answer too.
            continue;
        }
        let r = http::parse(&out).unwrap_or_else(|| {
            panic!(
                "seed {seed} request {n}: not an HTTP response: {:?}\nrequest: {shown:?}",
                String::from_utf8_lossy(&out)
            )
        });
        // 503: the supervisor did not answer in time; 505: a mangled
        // protocol version. Any other 5xx is a server fault.
        assert!(
            (200..500).contains(&r.status) || [503, 505].contains(&r.status),
            "seed {seed} request {n}: status {}: {}\nrequest: {shown:?}",
            r.status,
            r.body
        );
        answered += 1;
    }
    // Most mutations leave something a server can answer: if almost none
    // were answered, the requests never reached the handlers.
    assert!(
        answered > REQUESTS / 2,
        "only {answered} of {REQUESTS} requests were answered"
    );
    assert!(
        api.sd.wait_exit(Duration::ZERO).is_none(),
        "sheepdog exited:\n{}",
        api.sd.log()
    );
    assert!(!api.sd.log().contains("panicked"), "{}", api.sd.log());
    assert_eq!(api.get("/api/v1/health").status, 200);
    // Connection threads end with their connections.
    assert!(
        wait_until(WAIT, || api.threads() <= threads_before + 1),
        "threads: {} before, {} after",
        threads_before,
        api.threads()
    );
}

/// An API on a unix socket (no rate limit) whose process `loud` has
/// printed about 1.2 MB: enough for a logs request that fills a socket
/// no one reads, holding a worker.
fn loud_on_a_socket(name: &str) -> (TempDir, std::path::PathBuf, Api) {
    let sockdir = TempDir::new(&format!("{name}-sock"));
    let sock = sockdir.path("api.sock");
    let api = Api::start(
        name,
        Some(TOKEN),
        &format!("  api_socket: {}\n  api_rate_limit: 0\n", sock.display()),
        "  loud:\n    command: [python3, -c, \"import time\\nfor i in range(1200): print('x' * 1000)\\nprint('done', flush=True)\\ntime.sleep(1000)\"]\n",
    );
    assert!(
        wait_until(WAIT, || api
            .get("/api/v1/processes/loud/logs?limit=1")
            .body
            .contains("done")),
        "{}",
        api.sd.log()
    );
    (sockdir, sock, api)
}

#[test]
fn clients_that_do_not_read_cannot_hold_up_health() {
    // Regression: four clients that never read a large response held every
    // worker, and /health (a liveness probe) waited ~30 s behind them.
    let (_sockdir, sock, api) = loud_on_a_socket("api-stall");
    // About 1 MB each, far more than a unix socket buffers: more of them
    // than there are workers, and none is ever read.
    let ok_count =
        || sample(&api.scrape(), "sheepdog_api_requests_total{code=\"200\"}").unwrap_or(0.0);
    let before = ok_count();
    let ask = http::request("GET", "/api/v1/logs?limit=10000", Some(TOKEN), None);
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..6)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            s.write_all(&ask).unwrap();
            s
        })
        .collect();
    // A response is counted when a worker has built it, before writing it.
    assert!(
        wait_until(WAIT, || ok_count() >= before + 4.0),
        "the stalled requests were never answered"
    );
    // Every regular worker is stuck: a plain request gets no answer yet.
    let mut probe = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    probe
        .write_all(&http::request(
            "GET",
            "/api/v1/processes",
            Some(TOKEN),
            None,
        ))
        .unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut first = [0u8; 64];
    let got = probe.read(&mut first);
    assert!(
        got.is_err(),
        "the workers were not all busy: the test proves nothing ({:?})",
        got.map(|n| String::from_utf8_lossy(&first[..n]).into_owned())
    );
    // Liveness and readiness still answer, within the bound a liveness
    // probe is given (not after the stalled writes time out, 10 s or more).
    for path in ["/api/v1/health", "/api/v1/ready"] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&http::request("GET", path, None, None))
            .unwrap();
        let mut answer = Vec::new();
        let got = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            got.is_ok() && text.starts_with("HTTP/1.1 200"),
            "{path}: {got:?} {text}"
        );
    }
    drop(stalled);
}

/// A `follow` whose client left while the request waited for a worker
/// gives its waiting slot back. It used to keep it for good: the head's
/// write failed, the stream (which gives the slot back) never ran, and
/// after two such clients every `follow` and `trigger?wait=true` was a 503
/// until sheepdog restarted.
#[test]
fn a_follower_gone_before_its_answer_gives_its_slot_back() {
    let (_sockdir, sock, api) = loud_on_a_socket("api-follow-slot");
    let connect = || std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let ok_count =
        || sample(&api.scrape(), "sheepdog_api_requests_total{code=\"200\"}").unwrap_or(0.0);
    let before = ok_count();
    // Every worker stuck writing ~1 MB that is never read (as in
    // `clients_that_do_not_read_cannot_hold_up_health`).
    let big = http::request("GET", "/api/v1/logs?limit=10000", Some(TOKEN), None);
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect();
            s.write_all(&big).unwrap();
            s
        })
        .collect();
    assert!(wait_until(WAIT, || ok_count() >= before + 4.0));
    // Two followers queue behind them and leave: a unix socket's data is
    // read before its end, so each request is whole and dispatched.
    let follow = http::request("GET", "/api/v1/logs?follow=true", Some(TOKEN), None);
    for _ in 0..2 {
        connect().write_all(&follow).unwrap();
    }
    // Handled once the stuck writes time out (10 s); their heads fail.
    assert!(
        wait_until(WAIT, || ok_count() >= before + 6.0),
        "{}",
        api.sd.log()
    );
    drop(stalled);
    // Both slots are free: two followers at once get their streams.
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.write_all(&follow).unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            assert_eq!(String::from_utf8_lossy(&head), "HTTP/1.1 200");
            s
        })
        .collect();
    drop(streams);
}

#[test]
fn a_oneshot_that_failed_for_good_makes_the_container_not_ready() {
    // Nothing depends on `migrate`, so its failure does not end start-up;
    // /ready must still say the container is not fit to serve.
    let procs = r#"
  web:
    command: "exec sleep 1000"
  migrate:
    type: oneshot
    command: "exit 4"
    restart: never
"#;
    let api = Api::start("api-ready-oneshot", Some(TOKEN), "", procs);
    assert!(
        wait_until(WAIT, || api.process("migrate")["instances"][0]["state"]
            == "failed"),
        "{}",
        api.sd.log()
    );
    let r = http::get(api.port, "/api/v1/ready", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.json()["not_ready"],
        serde_json::json!(["migrate-1: failed"])
    );
}

#[test]
fn a_longrun_held_stopped_or_scaled_to_0_on_request_keeps_the_container_ready() {
    // docs/api.md (/ready): a longrun meant to be down does not count.
    let procs = format!(
        "{TWO_SLEEPERS}  held:\n    command: \"exec sleep 1000\"\n    initial_state: stopped\n"
    );
    let api = Api::start("api-ready-stopped", Some(TOKEN), "", &procs);
    api.wait_running("web", 2);
    api.wait_running("other", 1);
    let ready = || http::get(api.port, "/api/v1/ready", None);
    assert!(
        wait_until(WAIT, || ready().status == 200),
        "{}",
        ready().body
    );
    assert_eq!(api.post("/api/v1/processes/other/stop", "").status, 202);
    api.scale("web", r#"{"desired": 0}"#);
    for name in ["other", "web"] {
        assert!(
            wait_until(WAIT, || api.process(name)["state"] == "stopped"),
            "{}",
            api.sd.log()
        );
    }
    let r = ready();
    assert_eq!(
        (r.status, r.json()["not_ready"].clone()),
        (200, serde_json::json!([])),
        "{}",
        r.body
    );
}

#[test]
fn two_authorization_headers_are_refused_whatever_their_order() {
    let api = Api::start("api-two-auth", Some(TOKEN), "", TWO_SLEEPERS);
    for (first, second) in [("wrong", TOKEN), (TOKEN, "wrong")] {
        let req = format!(
            "GET /api/v1/processes HTTP/1.1\r\nAuthorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\n\r\n"
        );
        let r = http::raw(api.port, req.as_bytes());
        assert_eq!(r.status, 400, "{first} then {second}: {}", r.body);
    }
    // A 405 names the methods its Allow header does.
    let r = http::raw(api.port, b"DELETE /api/v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(r.body.contains("allowed: GET, HEAD"), "{}", r.body);
}

#[test]
fn scaling_past_the_last_port_is_refused() {
    // Instance n listens on each declared port + n - 1.
    let procs = "  edge:\n    command: \"exec sleep 1000\"\n    ports: [65534]\n";
    let api = Api::start("api-port-edge", Some(TOKEN), "", procs);
    let r = api.post("/api/v1/processes/edge/scale", r#"{"desired": 3}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("past 65535"), "{}", r.body);
    api.scale("edge", r#"{"desired": 2}"#);
}

#[test]
fn scaling_into_another_process_s_ports_or_sheepdog_s_own_is_refused() {
    // The load check allows for `scale` instances; a scale request went
    // past it and its new instance waited for a port it could never get.
    let (sd, port, metrics) = start_serving("api-port-meet", |port, metrics| {
        let lo = port.min(metrics);
        format!(
            "global:\n  shutdown_timeout: 10\n  api_port: {port}\n  metrics_port: {metrics}\n  api_auth: {TOKEN}\n\
             processes:\n  \
               a: {{command: \"exec sleep 1000\", ports: [{}], port_wait: 100ms, restart: never}}\n  \
               b: {{command: \"exec sleep 1000\", ports: [{}], port_wait: 100ms, restart: never}}\n",
            lo - 2,
            lo - 1
        )
    });
    let api = Api {
        sd,
        port,
        metrics,
        token: Some(TOKEN),
    };
    let lo = port.min(metrics);
    let key = if lo == port {
        "api_port"
    } else {
        "metrics_port"
    };
    let r = api.post("/api/v1/processes/a/scale", r#"{"desired": 2}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["error"],
        format!(
            "a: cannot scale to 2: processes.a.ports[0]: ports {} to {} (one per instance, up to 2) \
             meet the ports of processes.b.ports[0]; expected ports no two instances share",
            lo - 2,
            lo - 1
        )
    );
    let r = api.post("/api/v1/processes/b/scale", r#"{"delta": 1}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["error"],
        format!(
            "b: cannot scale to 2: processes.b.ports[0]: instance 2 would listen on {lo}, \
             sheepdog's own global.{key}; expected another port"
        )
    );
    // Nothing was scaled.
    assert_eq!(api.process("a")["desired_scale"], 1);
    assert_eq!(api.process("b")["desired_scale"], 1);
}

/// Two processes whose readiness checks fail with secrets in their words:
/// an exec probe's output and an HTTP probe's URL path (a query is never
/// shown).
fn failing_checks(closed_port: u16) -> String {
    format!(
        "  probed:\n    command: \"exec sleep 1000\"\n    health_check: {{ type: exec, command: [sh, -c, \"echo probe-output-s3cret; exit 1\"], initial_delay: 0, period: 100ms, timeout: 2s, failure_threshold: 1, mode: readiness }}\n  \
         fetched:\n    command: \"exec sleep 1000\"\n    health_check: {{ type: http, url: \"http://127.0.0.1:{closed_port}/h/url-s3cret\", initial_delay: 0, period: 100ms, timeout: 1s, failure_threshold: 1, mode: readiness }}\n"
    )
}

/// Wait until /ready, asked with `token`, shows both checks' words.
fn wait_for_detailed_ready(api: &Api, token: Option<&str>) -> Resp {
    let mut last = None;
    let ok = wait_until(WAIT, || {
        let r = http::get(api.port, "/api/v1/ready", token);
        let done = r.body.contains("probe-output-s3cret") && r.body.contains("url-s3cret");
        last = Some(r);
        done
    });
    let last = last.unwrap();
    assert!(
        ok,
        "/ready never showed the checks' errors: {}\n{}",
        last.body,
        api.sd.log()
    );
    last
}

#[test]
fn ready_without_the_token_says_what_is_not_ready_but_not_the_checks_words() {
    let closed = http::free_port();
    let api = Api::start("api-ready-secret", Some(TOKEN), "", &failing_checks(closed));
    // With the token: everything, as before.
    let r = wait_for_detailed_ready(&api, Some(TOKEN));
    assert_eq!(r.status, 503, "{}", r.body);
    // Without it, or with a wrong one: which instances and their state.
    for token in [None, Some("wrong")] {
        let r = http::get(api.port, "/api/v1/ready", token);
        assert_eq!(r.status, 503, "{token:?}: {}", r.body);
        assert!(!r.body.contains("s3cret"), "{token:?}: {}", r.body);
        let body = r.json();
        let mut why: Vec<&str> = body["not_ready"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        why.sort_unstable();
        assert_eq!(
            why,
            ["fetched-1: unhealthy", "probed-1: unhealthy"],
            "{token:?}: {}",
            r.body
        );
        assert_eq!(body["ready"], false);
        assert!(body["error"].as_str().unwrap().starts_with("not ready: "));
    }
}

#[test]
fn ready_without_a_configured_token_keeps_the_details() {
    let closed = http::free_port();
    let api = Api::start("api-ready-open", None, "", &failing_checks(closed));
    let r = wait_for_detailed_ready(&api, None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["not_ready"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().starts_with("probed-1: unhealthy: ")),
        "{}",
        r.body
    );
}

/// Send `head` and the first bytes of the body it announces, never the
/// rest, and read the answer. It must come at once: a server that waited
/// for the body would answer only at its 10 s read timeout, after this
/// client's 5 s.
fn answer_before_the_body(port: u16, head: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b"{\"desired\": ").unwrap();
    let mut out = Vec::new();
    let got = s.read_to_end(&mut out);
    assert!(
        got.is_ok(),
        "no answer before the body was sent: {got:?} {:?}\nrequest: {head:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

#[test]
fn refusals_come_before_the_body_is_read() {
    let api = Api::start("api-early", Some(TOKEN), "", TWO_SLEEPERS);
    let mib = 1 << 20;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    for (method, path, auth, length, status, needle) in [
        // No token: 401, whatever body it announces (no 100 Continue).
        (
            "POST",
            "/api/v1/processes/web/scale",
            "",
            mib,
            401,
            "missing bearer token",
        ),
        (
            "POST",
            "/api/v1/shutdown",
            "",
            mib,
            401,
            "missing bearer token",
        ),
        // No such route, or not with this method: 404, 405.
        (
            "POST",
            "/api/v1/nope",
            auth.as_str(),
            mib,
            404,
            "no such endpoint",
        ),
        (
            "POST",
            "/api/v1/processes/web",
            auth.as_str(),
            mib,
            405,
            "not allowed",
        ),
        // A route that takes no body: a body larger than `{}` and the like.
        (
            "POST",
            "/api/v1/processes/web/stop",
            auth.as_str(),
            4096,
            413,
            // The path sent, not the route's pattern.
            "POST /api/v1/processes/web/stop takes no request body",
        ),
        (
            "GET",
            "/api/v1/processes",
            auth.as_str(),
            4096,
            413,
            "GET /api/v1/processes takes no request body",
        ),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Expect: 100-continue\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        let out = answer_before_the_body(api.port, &head);
        let r = http::parse(&out)
            .unwrap_or_else(|| panic!("{method} {path}: {:?}", String::from_utf8_lossy(&out)));
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(r.error().contains(needle), "{method} {path}: {}", r.body);
    }
    // None of that stopped anything; a body where one belongs still works,
    // and so does the `{}` clients send with a POST.
    assert_eq!(api.wait_running("web", 2).len(), 2);
    let r = api.post("/api/v1/processes/web/scale", r#"{"desired": 2}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.post("/api/v1/processes/other/start", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Connect and send a head announcing a body with `Expect: 100-continue`;
/// true when the server says to go on (it admitted the body).
fn admitted(port: u16, head: &str) -> (bool, TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut first = [0u8; 512];
    let n = s.read(&mut first).unwrap_or(0);
    let text = String::from_utf8_lossy(&first[..n]).into_owned();
    (text.starts_with("HTTP/1.1 100 Continue"), s, text)
}

#[test]
fn bodies_held_at_once_are_bounded_across_connections() {
    // 1 MiB bodies (the default api_max_request_body): a budget of 4 MiB
    // for all the bodies being received and handled.
    let api = Api::start("api-budget", Some(TOKEN), "", TWO_SLEEPERS);
    let head = format!(
        "POST /api/v1/processes/web/scale HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    let held: Vec<TcpStream> = (0..4)
        .map(|n| {
            let (ok, s, text) = admitted(api.port, &head);
            assert!(ok, "body {n} was not admitted: {text:?}");
            s
        })
        .collect();
    // A fifth is refused at once, not left to wait.
    let out = answer_before_the_body(api.port, &head);
    let r = http::parse(&out).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(&out)));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.error().contains("retry shortly"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Small bodies need none of the budget.
    assert_eq!(api.scale("web", r#"{"desired": 1}"#).status, 202);
    // The budget comes back when those connections go.
    drop(held);
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            let (ok, _s, text) = admitted(api.port, &head);
            last = text;
            ok
        }),
        "the budget never came back: {last:?}"
    );
}

/// `method path` with these extra header lines (each ending in \r\n),
/// as HTTP/1.1 without a Host unless one is given.
fn with_headers(method: &str, path: &str, headers: &str, body: Option<&str>) -> Vec<u8> {
    let body_head = body.map_or(String::new(), |b| {
        format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    format!(
        "{method} {path} HTTP/1.1\r\n{headers}{body_head}Connection: close\r\n\r\n{}",
        body.unwrap_or_default()
    )
    .into_bytes()
}

#[test]
fn without_a_token_requests_from_browsers_are_refused() {
    let sockdir = TempDir::new("api-browser-sock");
    let sock = sockdir.path("api.sock");
    let api = Api::start(
        "api-browser",
        None,
        &format!("  api_socket: {}\n", sock.display()),
        TWO_SLEEPERS,
    );
    let before = api.wait_running("web", 2);
    let port = api.port;
    // What a web page can make a browser send: a form or fetch POST from
    // another origin, a sandboxed one (Origin: null), a cross-site or
    // same-site GET, a name re-pointed at 127.0.0.1 (DNS rebinding).
    for (method, path, headers, needle) in [
        (
            "POST",
            "/api/v1/processes/web/stop",
            "Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n".to_string(),
            "Origin: http://evil.example",
        ),
        (
            "POST",
            "/api/v1/shutdown",
            "Host: 127.0.0.1\r\nOrigin: null\r\n".into(),
            "Origin: null",
        ),
        (
            "GET",
            "/api/v1/processes",
            "Host: 127.0.0.1\r\nSec-Fetch-Site: cross-site\r\n".into(),
            "Sec-Fetch-Site: cross-site",
        ),
        (
            "GET",
            "/api/v1/ready",
            "Host: 127.0.0.1\r\nSec-Fetch-Site: same-origin\r\n".into(),
            "Sec-Fetch-Site: same-origin",
        ),
        (
            "POST",
            "/api/v1/processes/web/stop",
            format!("Host: rebind.evil.example:{port}\r\n"),
            "Host \"rebind.evil.example:",
        ),
        (
            "GET",
            "/api/v1/health",
            format!("Host: localhost.evil.example:{port}\r\n"),
            "not an IP address or localhost",
        ),
        (
            "GET",
            "/api/v1/processes",
            format!("Host: 127.0.0.1:{port}\r\nHost: evil.example\r\n"),
            "Host \"evil.example\"",
        ),
    ] {
        let body = (method == "POST").then_some("{}");
        let r = http::raw(port, &with_headers(method, path, &headers, body));
        assert_eq!(r.status, 403, "{method} {path} {headers:?}: {}", r.body);
        assert!(r.error().contains(needle), "{headers:?}: {}", r.body);
        assert!(r.error().contains("api_auth"), "{}", r.body);
    }
    // Nothing was stopped or shut down.
    assert_eq!(api.wait_running("web", 2), before);
    // What curl, probes and the user's own address bar send is served:
    // an IP address or localhost with or without a port, no Host at all
    // (HTTP/1.0), Sec-Fetch-Site: none (typed by the user).
    for headers in [
        format!("Host: 127.0.0.1:{port}\r\n"),
        "Host: 127.0.0.1\r\n".to_string(),
        format!("Host: localhost:{port}\r\n"),
        "Host: LOCALHOST\r\n".into(),
        format!("Host: [::1]:{port}\r\n"),
        "Host: 10.1.2.3:80\r\n".into(),
        format!("Host: 127.0.0.1:{port}\r\nSec-Fetch-Site: none\r\n"),
        String::new(),
    ] {
        let r = http::raw(
            port,
            &with_headers("GET", "/api/v1/processes", &headers, None),
        );
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
    }
    let r = http::raw(port, b"GET /api/v1/health HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.body);
    // The unix socket: no browser reaches it, and the host in a client's
    // URL means nothing there; a page's marks are still refused.
    for (headers, status) in [
        ("Host: sheepdog\r\n", 200),
        ("Host: localhost\r\n", 200),
        ("Host: localhost\r\nOrigin: http://evil.example\r\n", 403),
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&with_headers("GET", "/api/v1/processes", headers, None))
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let r = http::parse(&out).unwrap_or_else(|| panic!("{out:?}"));
        assert_eq!(r.status, status, "unix socket {headers:?}: {}", r.body);
    }
    // The metrics port changes nothing and is left alone.
    let r = http::raw(
        api.metrics,
        &with_headers(
            "GET",
            "/metrics",
            "Host: evil.example\r\nOrigin: http://evil.example\r\n",
            None,
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn with_a_token_browser_marks_change_nothing() {
    // A page cannot attach the Authorization header to a forged request,
    // so with a token the API serves whoever has it, browsers included.
    let api = Api::start("api-browser-token", Some(TOKEN), "", TWO_SLEEPERS);
    let headers = format!(
        "Host: sheepdog.example:{}\r\nOrigin: https://dashboard.example\r\nSec-Fetch-Site: cross-site\r\n\
         Authorization: Bearer {TOKEN}\r\n",
        api.port
    );
    let r = http::raw(
        api.port,
        &with_headers("GET", "/api/v1/processes", &headers, None),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http::raw(
        api.port,
        &with_headers(
            "GET",
            "/api/v1/ready",
            "Host: sheepdog.example\r\nOrigin: https://x.example\r\n",
            None,
        ),
    );
    assert!(matches!(r.status, 200 | 503), "{}", r.body);
}

#[test]
fn a_failed_start_keeps_its_reason_in_the_status_and_its_own_restart_reason() {
    let mut api = Api::start(
        "ghost-status",
        None,
        "  max_restart_attempts: 1\n",
        "  ghost:\n    command: [/nonexistent/ghost]\n  keep:\n    command: [sleep, \"1000\"]\n",
    );
    api.sd.wait_log("ghost-1: failed: ");
    let v = api.process("ghost");
    let error = v["instances"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "failed to start (unable to start \"/nonexistent/ghost\": No such file or directory"
        ),
        "{v}"
    );
    assert_eq!(v["restarts"]["start"], 1, "{v}");
    assert!(v["restarts"]["exit"].as_u64().unwrap_or(0) == 0, "{v}");
    let metrics = api.scrape();
    assert!(
        metrics.contains("sheepdog_process_restarts_total{process=\"ghost\",reason=\"start\"} 1"),
        "{metrics}"
    );
    api.sd.signal(libc::SIGTERM);
    assert_eq!(api.sd.exit_code(WAIT), 0, "{}", api.sd.log());
}

#[test]
fn a_slow_shutdown_shows_how_long_it_has_taken_while_it_goes_on() {
    // Regression: the gauge was set only as sheepdog exited, when nothing
    // could scrape it any more. It now grows while the shutdown goes on
    // (here a child that ignores SIGTERM for its whole 3 s timeout).
    let mut api = Api::start(
        "shutdown-gauge",
        None,
        "",
        "  stubborn:\n    command: \"trap '' TERM; touch $DIR/deaf; exec sleep 1000\"\n    shutdown:\n      timeout: 3s\n",
    );
    // Deaf to SIGTERM only once its shell has set the trap.
    assert!(
        wait_until(WAIT, || api.sd.dir.path("deaf").exists()),
        "{}",
        api.sd.log()
    );
    api.sd.signal(libc::SIGTERM);
    let mut seen = None;
    let ok = wait_until(WAIT, || {
        seen = sample(&api.scrape(), "sheepdog_shutdown_duration_seconds");
        seen.is_some_and(|s| s >= 0.5)
    });
    assert!(ok, "last sample {seen:?}\n{}", api.sd.log());
    assert_eq!(api.sd.exit_code(WAIT), 0, "{}", api.sd.log());
}

/// Regression (security review finding 8): a request that changes
/// something is logged at the default level with who sent it (the address
/// over TCP, the uid and pid over the unix socket), so the operator can tell
/// their own `ctl` from a child's curl. Reads stay at debug.
#[test]
fn state_changing_requests_are_logged_with_their_sender() {
    let port = 26040;
    let sd = Sheepdog::start(
        "api-sender",
        &format!(
            "global:\n  api_port: {port}\n  metrics_enabled: false\n  api_socket: $DIR/api.sock\n\
             processes:\n  web:\n    command: \"exec sleep 1000\"\n"
        ),
    );
    sd.wait_log(&format!("listening on http://127.0.0.1:{port}"));
    sd.wait_log("web-1: started");
    let sock = sd.dir.path("api.sock");
    let signal = "/api/v1/processes/web/signal";
    let cont = r#"{"signal": "CONT"}"#;
    assert_eq!(http::get(port, "/api/v1/processes", None).status, 200);
    // "started" is logged by the instance before the supervisor has its
    // pid: until then a signal finds nothing running (409).
    assert!(wait_until(WAIT, || http::post(port, signal, None, cont)
        .status
        == 200));
    let r = http::unix(&sock, "POST", signal, None, Some(cont));
    assert_eq!(r.status, 200, "{}", r.body);
    sd.wait_log(&format!(
        "INFO  sheepdog | api: POST {signal} from 127.0.0.1 -> 200"
    ));
    sd.wait_log(&format!(
        "INFO  sheepdog | api: POST {signal} from unix socket (uid {}, pid {}) -> 200",
        nix::unistd::geteuid(),
        std::process::id()
    ));
    assert!(!sd.log().contains("api: GET"), "{}", sd.log());
    // A long path is shown cut: a client without a token cannot make
    // sheepdog log kilobytes per request.
    let long = format!("/api/v1/processes/{}/restart", "b".repeat(5000));
    assert_eq!(http::post(port, &long, None, "").status, 404);
    sd.wait_log("api: POST /api/v1/processes/bbbb");
    let log = sd.log();
    let line = log.lines().find(|l| l.contains("processes/bbbb")).unwrap();
    assert!(
        line.len() < 300 && line.ends_with("… from 127.0.0.1 -> 404"),
        "{line}"
    );
}

#[test]
fn orphans_are_counted_while_a_spawn_is_stuck_before_exec() {
    // The reaper kept every unknown pid's exit while any spawn was between
    // clone and registration, in case it was that spawn's child: a spawn
    // stuck in a hung mount made orphans pile up there, uncounted, for as
    // long as it hung. Now only that spawn's own child's exit is kept.
    let Some(wrapper) = hung_mount() else { return };
    let (sd, [port]) = with_free_ports(|[port]| {
        let cfg = format!(
            "global:\n  shutdown_timeout: 1s\n  api_port: {port}\n  metrics_enabled: false\nprocesses:\n\
             \x20 hung:\n    command: [sleep, \"1000\"]\n    working_dir: $DIR/mnt/hung\n\
             \x20 orphans:\n    command: \"while :; do sh -c 'sleep 0.05 &'; sleep 0.2; done\"\n"
        );
        let sd = Sheepdog::start_under("hung-orphans", &cfg, &wrapper, |_| {});
        (sd, vec![port])
    });
    assert!(
        wait_until(WAIT, || unexeced_children(sd.pid()) == 1),
        "no spawn stuck in the hung mount\n{}",
        sd.log()
    );
    let reaped = || {
        let r = http::get(port, "/api/v1/processes", None);
        let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
        v["orphans_reaped"].as_u64().unwrap_or(0)
    };
    let before = reaped();
    assert!(
        wait_until(WAIT, || reaped() >= before + 3),
        "orphans reaped stayed at {} while a spawn hung\n{}",
        reaped(),
        sd.log()
    );
    assert_eq!(unexeced_children(sd.pid()), 1, "{}", sd.log());
}

/// A client that closes its side before its request is complete (`printf
/// 'GET … HTTP/1.0\r\n' | nc -N`, a body shorter than its Content-Length)
/// gets a 400 saying what is missing at once. It used to be closed without
/// a word ("Empty reply from server").
#[test]
fn a_request_cut_short_is_told_what_is_missing() {
    let api = Api::start("api-cut-short", Some(TOKEN), "", TWO_SLEEPERS);
    let answer = |bytes: &[u8]| {
        let out = send_half_closed(api.port, bytes);
        http::parse(&out)
            .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&out)))
    };
    for head in [
        "GET /api/v1/health HTTP/1.0\r\n".to_string(),
        format!("GET /api/v1/processes HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r"),
    ] {
        let r = answer(head.as_bytes());
        assert_eq!(r.status, 400, "{head:?}: {}", r.body);
        assert!(
            r.body.contains(
                "the request ended before its head did; expected a blank line (CRLF CRLF)"
            ),
            "{head:?}: {}",
            r.body
        );
    }
    let short = format!(
        "POST /api/v1/processes/web/scale HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 14\r\n\r\n{{\"d"
    );
    let r = answer(short.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("the request ended after 3 of its 14 body bytes (Content-Length)"),
        "{}",
        r.body
    );
    // Nothing sent: nothing to say.
    assert!(send_half_closed(api.port, b"").is_empty());
    // A whole request half-closed is answered as ever.
    let whole = format!(
        "POST /api/v1/processes/web/scale HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 14\r\n\r\n{{\"desired\": 2}}"
    );
    assert_eq!(answer(whole.as_bytes()).status, 200);
    assert_eq!(api.get("/api/v1/health").status, 200);
}

/// A `HEAD` gets no body, whoever answers it: the refusals made from the
/// head alone (401, 404, 429) used to carry their JSON error after the
/// head, unlike the handlers' answers.
#[test]
fn a_head_request_gets_no_body_with_a_refusal_either() {
    let api = Api::start(
        "api-head-refused",
        Some(TOKEN),
        "  api_rate_limit: 1\n  api_rate_burst: 3\n",
        TWO_SLEEPERS,
    );
    let head = |path: &str, token: bool| {
        let auth = if token {
            format!("Authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        let out = send_half_closed(
            api.port,
            format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        let (status_line, rest) = text.split_once("\r\n").unwrap_or_default();
        let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or_default();
        assert!(headers.contains("Content-Length: "), "{path}: {text:?}");
        assert_eq!(body, "", "HEAD {path}: {status_line}");
        status_line.to_string()
    };
    assert!(head("/api/v1/processes", false).starts_with("HTTP/1.1 401 "));
    assert!(head("/api/v1/nope", true).starts_with("HTTP/1.1 404 "));
    assert!(head("/api/v1/processes/nope", true).starts_with("HTTP/1.1 404 "));
    // Burst 3, 1 a second: the bucket runs dry within a few more.
    let mut limited = false;
    for _ in 0..20 {
        if head("/api/v1/processes", true).starts_with("HTTP/1.1 429 ") {
            limited = true;
            break;
        }
    }
    assert!(limited, "never rate limited");
}

#[test]
fn concurrent_deltas_all_count() {
    // Each request added its delta to the scale it read from the snapshot:
    // twelve `+1`s at once ended at 10, not 13, two of them answered
    // "already scaled to 3; nothing to do".
    let api = Api::start(
        "api-deltas",
        Some(TOKEN),
        "  api_rate_limit: 0\n",
        "  web:\n    command: \"exec sleep 1000\"\n",
    );
    api.wait_running("web", 1);
    const N: usize = 12;
    let start = std::sync::Barrier::new(N);
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    api.post("/api/v1/processes/web/scale", r#"{"delta": 1}"#)
                })
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    for r in &answers {
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(api.process("web")["desired_scale"], 1 + N, "{answers:?}");
    api.wait_running("web", 1 + N);
    // Below 0 is still refused, naming the count.
    let r = api.post("/api/v1/processes/web/scale", r#"{"delta": -14}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"],
        "delta: -14 would take web below 0 instances (it wants 13 now)"
    );
}

/// A plain answer's status from `s` (after writing `req` to it), or why
/// there is none.
fn status_of(mut s: TcpStream, req: &[u8]) -> Result<u16, String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(req);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => http::parse(&out)
            .map(|r| r.status)
            .ok_or_else(|| format!("no answer: {:?}", String::from_utf8_lossy(&out))),
        Err(e) => Err(format!("{e}")),
    }
}

#[test]
fn a_flood_of_probes_does_not_fail_the_probe_that_matters() {
    // Regression: 100 clients asking /api/v1/health (exempt from the rate
    // limit) filled the urgent worker's queue, and most probes, the
    // orchestrator's too, got 503 "the server is busy".
    let api = Api::start("api-probe-flood", Some(TOKEN), "", TWO_SLEEPERS);
    api.wait_running("web", 2);
    api.wait_running("other", 1);
    assert!(wait_until(WAIT, || api.get("/api/v1/ready").status == 200));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = api.port;
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let stop = stop.clone();
            let path = if i % 2 == 0 {
                "/api/v1/health"
            } else {
                "/api/v1/ready"
            };
            std::thread::spawn(move || {
                let req = http::request("GET", path, None, None);
                let mut answered = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                        answered += u32::from(status_of(s, &req).is_ok());
                    }
                }
                answered
            })
        })
        .collect();
    let mut bad = Vec::new();
    for n in 0..60 {
        let path = if n % 2 == 0 {
            "/api/v1/health"
        } else {
            "/api/v1/ready"
        };
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        match status_of(s, &http::request("GET", path, None, None)) {
            Ok(200) => {}
            other => bad.push(format!("{path}: {other:?}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: u32 = flood.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        answered > 0,
        "the flood never got through: it proves nothing"
    );
    assert!(bad.is_empty(), "probes failed under the flood: {bad:?}");
    assert_eq!(api.get("/api/v1/health").status, 200);
}

/// A TCP connection to `127.0.0.1:port` from `127.0.0.<last>`.
fn connect_from(last: u8, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let addr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, given to a TcpStream that owns it from here;
    // the addresses are valid sockaddr_in values of `len` bytes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let src = addr([127, 0, 0, last], 0);
        let dst = addr([127, 0, 0, 1], port);
        assert_eq!(
            libc::bind(fd, (&raw const src).cast(), len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::connect(fd, (&raw const dst).cast(), len),
            0,
            "connect: {}",
            std::io::Error::last_os_error()
        );
        s
    }
}

#[test]
fn a_flood_of_idle_connections_closes_its_own_not_a_probes() {
    // Regression: at the connection cap the oldest connection was closed,
    // whoever held it: one address opening idle connections closed a
    // liveness probe's from another before it had sent its request.
    let api = Api::start("api-evict-peer", Some(TOKEN), "", TWO_SLEEPERS);
    api.wait_running("web", 2);
    let flood = |n: usize| -> Vec<TcpStream> {
        let held = (0..n)
            .map(|_| TcpStream::connect(("127.0.0.1", api.port)).unwrap())
            .collect();
        // Answered after every connection before it was accepted (the
        // listen queue is in order).
        assert_eq!(api.get("/api/v1/health").status, 200);
        held
    };
    let _first = flood(63);
    let probe = connect_from(2, api.port);
    // Past the cap of 64 open connections by more than 64: the probe is
    // older than all of these.
    let _second = flood(80);
    let got = status_of(probe, &http::request("GET", "/api/v1/health", None, None));
    assert_eq!(got, Ok(200), "{}", api.sd.log());
}

/// `sig` to `pid`, a process this test started (through sheepdog).
fn send(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// `paused` of `name`'s first instance, and its state.
fn paused(api: &Api, name: &str) -> (Value, Value) {
    let i = &api.process(name)["instances"][0];
    (i["paused"].clone(), i["state"].clone())
}

#[test]
fn a_child_stopped_by_a_signal_shows_paused_and_still_stops() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    // A SIGSTOP (a debugger, a freezer) showed nothing: `running`, as if
    // it were working.
    let procs = "  web:\n    command: \"exec sleep 1000\"\n    shutdown: { timeout: 20s }\n";
    let api = Api::start("api-paused", None, "", procs);
    let pid = api.wait_running("web", 1)[0];
    assert_eq!(paused(&api, "web").0, false);
    let series = r#"sheepdog_process_paused{process="web",instance_id="web-1"}"#;
    assert_eq!(sample(&api.scrape(), series), Some(0.0));

    send(pid, SIGSTOP);
    let mut last = (Value::Null, Value::Null);
    let shown = wait_until(WAIT, || {
        last = paused(&api, "web");
        last.0 == true
    });
    assert!(shown, "{last:?}\n{}", api.sd.log());
    // A flag beside the state, which stays what it was.
    assert_eq!(last.1, "running");
    assert_eq!(sample(&api.scrape(), series), Some(1.0));
    assert!(alive(pid));

    send(pid, SIGCONT);
    assert!(
        wait_until(WAIT, || paused(&api, "web").0 == false),
        "{:?}\n{}",
        paused(&api, "web"),
        api.sd.log()
    );
    assert_eq!(api.pids("web"), vec![Some(i64::from(pid))]);

    // Stopped again, it still stops at once on request (SIGCONT follows
    // the stop signal), well before its 20 s timeout.
    send(pid, SIGSTOP);
    assert!(wait_until(WAIT, || paused(&api, "web").0 == true));
    let began = std::time::Instant::now();
    let r = api.post("/api/v1/processes/web/stop", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        wait_until(WAIT, || api.process("web")["state"] == "stopped"),
        "{}",
        api.sd.log()
    );
    assert!(!alive(pid));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert!(api.process("web")["instances"]
        .as_array()
        .is_none_or(|a| a.iter().all(|i| i["paused"] != true)));
}

#[test]
fn a_stopped_orphan_is_not_counted_reaped_until_it_exits() {
    use nix::sys::signal::Signal::{SIGCONT, SIGKILL, SIGSTOP};
    // The orphan leaves `web`'s session, so it is re-parented to sheepdog
    // (a subreaper here) and no stop of `web`'s group ends it.
    let procs = r#"
  web:
    command: "(setsid sh -c 'echo $$ > $DIR/orphan.tmp; mv $DIR/orphan.tmp $DIR/orphan; exec sleep 1000' &); exec sleep 1000"
"#;
    let api = Api::start("api-stopped-orphan", None, "", procs);
    let web = api.wait_running("web", 1)[0];
    let path = api.sd.dir.path("orphan");
    let mut orphan = None;
    assert!(wait_until(WAIT, || {
        orphan = read_pid(&path);
        orphan.is_some_and(parent_is_a_sheepdog)
    }));
    let orphan = orphan.unwrap();
    let reaped = || api.get("/api/v1/processes").json()["orphans_reaped"].as_u64();
    let before = reaped();

    send(orphan, SIGSTOP);
    // Stopped (`T` in its stat) before `web` is: the reap that notes
    // `web`'s stop drains the orphan's too.
    assert!(wait_until(WAIT, || {
        std::fs::read_to_string(format!("/proc/{orphan}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('T')
        })
    }));
    send(web, SIGSTOP);
    assert!(
        wait_until(WAIT, || paused(&api, "web").0 == true),
        "{}",
        api.sd.log()
    );
    assert_eq!(reaped(), before, "a stop counted as a reaping");
    assert!(alive(orphan));

    send(orphan, SIGCONT);
    send(orphan, SIGKILL);
    assert!(
        wait_until(WAIT, || reaped() == before.map(|n| n + 1)),
        "{:?} then {:?}",
        before,
        reaped()
    );
    send(web, SIGCONT);
}
