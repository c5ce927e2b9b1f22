//! Heartbeat pings against a local HTTP server that records what it gets
//! (issue 6): start/success/failure URLs of scheduled and oneshot runs,
//! explicit URLs, method and headers, failure bodies, retries, timeouts,
//! interval pings of a healthy longrun, https refused without network, the
//! metrics, and a stuck endpoint that cannot hold up a shutdown. Every
//! wait is bounded; nothing synchronises on a fixed sleep.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http;
use common::*;

/// Connections one test server accepts at most.
const MAX_CONNECTIONS: usize = 400;
/// The longest a test server waits for a request's bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    at: Instant,
}

/// What to answer a request for `path`, the `n`th (0-based) for it:
/// Some(status), or None to hold the connection without answering.
type Answer = dyn Fn(&str, usize) -> Option<u16> + Send + Sync;

struct Server {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(answer: impl Fn(&str, usize) -> Option<u16> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Box<Answer> = Box::new(answer);
        let (r, s) = (reqs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Connections held open unanswered, until the server goes.
            let mut held = Vec::new();
            for conn in listener.incoming().take(MAX_CONNECTIONS) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                let n = {
                    let mut all = r.lock().unwrap();
                    let n = all.iter().filter(|q: &&Req| q.path == req.path).count();
                    all.push(req.clone());
                    n
                };
                match answer(&req.path, n) {
                    Some(status) => {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    None => held.push(conn),
                }
            }
        });
        Server {
            port,
            reqs,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn reqs(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.reqs().into_iter().map(|r| r.path).collect()
    }

    fn count(&self, path: &str) -> usize {
        self.reqs().iter().filter(|r| r.path == path).count()
    }

    fn wait(&self, what: &str, sd: &Sheepdog, mut cond: impl FnMut(&[Req]) -> bool) {
        let ok = wait_until(WAIT, || cond(&self.reqs()));
        assert!(
            ok,
            "server never saw {what}; got {:?}\n{}",
            self.paths(),
            sd.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.len().min(head_end + len);
    Some(Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&buf[head_end..end]).into_owned(),
        at: Instant::now(),
    })
}

/// Sheepdog with a metrics port and `processes`; a longrun keeps it up.
fn start(name: &str, processes: &str) -> (Sheepdog, u16) {
    let (sd, _api, metrics) = start_serving(name, |api, metrics| {
        format!(
            "global:\n  shutdown_timeout: 5\n  api_port: {api}\n  metrics_port: {metrics}\n  \
             api_auth: tok\nprocesses:\n  idle:\n    command: [sleep, '300']\n{processes}"
        )
    });
    (sd, metrics)
}

fn metrics(port: u16) -> String {
    http::get(port, "/metrics", None).body
}

fn wait_metric(sd: &Sheepdog, port: u16, line: &str) -> String {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        last = metrics(port);
        last.lines().any(|l| l == line)
    });
    assert!(ok, "never {line:?}:\n{last}\n{}", sd.log());
    last
}

#[test]
fn runs_ping_start_success_and_failure_urls() {
    let srv = Server::start(|_, _| Some(200));
    let procs = format!(
        "  ok:\n    command: 'echo fine'\n    schedule: '@every 1s'\n    \
         heartbeat: {{url: '{ok}', ping_start: true}}\n  \
         bad:\n    command: 'echo first-line; echo boom-line >&2; exit 3'\n    schedule: '@every 1s'\n    \
         heartbeat: {{url: '{bad}'}}\n  \
         explicit:\n    command: 'exit 1'\n    schedule: '@every 1s'\n    \
         heartbeat: {{start_url: '{go}', success_url: '{yes}', failure_url: '{no}'}}\n  \
         once:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: '{once}', ping_start: true, method: GET, headers: {{X-Token: t0k}}}}\n",
        ok = srv.url("/ok"),
        bad = srv.url("/bad/"),
        go = srv.url("/go"),
        yes = srv.url("/yes"),
        no = srv.url("/no"),
        once = srv.url("/once"),
    );
    let (sd, mport) = start("hb-urls", &procs);
    srv.wait(
        "two ok runs, a bad one, an explicit one and the oneshot",
        &sd,
        |r| {
            let n = |p: &str| r.iter().filter(|q| q.path == p).count();
            n("/ok") >= 2 && n("/bad/fail") >= 1 && n("/no") >= 1 && n("/once") >= 1
        },
    );
    let reqs = srv.reqs();
    // Each ok run: /ok/start, then /ok (POST, exit_code=0).
    let ok: Vec<&Req> = reqs.iter().filter(|r| r.path.starts_with("/ok")).collect();
    assert_eq!(ok[0].path, "/ok/start", "{:?}", srv.paths());
    assert_eq!(ok[1].path, "/ok", "{:?}", srv.paths());
    assert_eq!(ok[1].method, "POST");
    assert_eq!(ok[1].body, "exit_code=0");
    // A failure: /bad/fail with the exit code and the run's last lines.
    let bad = reqs.iter().find(|r| r.path == "/bad/fail").unwrap();
    assert!(bad.body.starts_with("exit_code=3\n\n"), "{:?}", bad.body);
    assert!(
        bad.body.contains("first-line") && bad.body.contains("boom-line"),
        "{:?}",
        bad.body
    );
    assert!(!reqs
        .iter()
        .any(|r| r.path == "/bad" || r.path == "/bad/start"));
    // Explicit URLs; start_url implies the start ping.
    let explicit: Vec<&str> = reqs
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| ["/go", "/yes", "/no"].contains(p))
        .collect();
    assert_eq!(&explicit[..2], ["/go", "/no"], "{explicit:?}");
    assert!(!explicit.contains(&"/yes"));
    // The oneshot: GET with the header, start then success.
    let once: Vec<&Req> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/once"))
        .collect();
    assert_eq!(once[0].path, "/once/start");
    assert_eq!(once[1].path, "/once");
    assert_eq!(once[1].method, "GET");
    assert!(once[1]
        .headers
        .iter()
        .any(|(k, v)| k == "x-token" && v == "t0k"));
    let text = wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeats_total{process=\"once\",result=\"success\"} 2",
    );
    assert!(
        text.contains("sheepdog_heartbeat_failures_total{process=\"ok\"} 0"),
        "{text}"
    );
    promtool_check(&text);
}

#[test]
fn an_answer_that_cannot_change_is_not_retried() {
    // A deleted check (404) or a redirect (never followed) answers the same
    // every time: its retries only held back the process's later pings.
    let srv = Server::start(|path, _| match path {
        "/gone" => Some(404),
        "/moved" => Some(301),
        _ => Some(200),
    });
    let procs = ["gone", "moved"]
        .map(|p| {
            format!(
                "  {p}:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
                 heartbeat: {{url: '{}', retries: 3, retry_delay: 50ms}}\n",
                srv.url(&format!("/{p}"))
            )
        })
        .concat();
    let (sd, mport) = start("hb-no-retry", &procs);
    for p in ["gone", "moved"] {
        wait_metric(
            &sd,
            mport,
            &format!("sheepdog_heartbeat_failures_total{{process=\"{p}\"}} 1"),
        );
        // Counted as failed after one attempt, not after 1 + retries.
        assert_eq!(srv.count(&format!("/{p}")), 1, "{:?}", srv.paths());
    }
    assert!(
        sd.log()
            .contains("/…: status 404, expected 2xx (attempt 1)"),
        "{}",
        sd.log()
    );
    assert_eq!(sd.count("ping attempt"), 0, "{}", sd.log());
}

#[test]
fn a_ping_is_retried_until_it_gets_a_2xx() {
    let srv = Server::start(|path, n| match path {
        "/retry" if n < 2 => Some(500),
        _ => Some(200),
    });
    let procs = format!(
        "  once:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: '{}', retries: 3, retry_delay: 50ms}}\n",
        srv.url("/retry")
    );
    let (sd, mport) = start("hb-retry", &procs);
    wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeats_total{process=\"once\",result=\"success\"} 1",
    );
    assert_eq!(srv.count("/retry"), 3, "{:?}", srv.paths());
    let text = metrics(mport);
    assert!(
        text.contains("sheepdog_heartbeat_failures_total{process=\"once\"} 0"),
        "{text}"
    );
    assert_eq!(
        sd.count("heartbeat success ping attempt"),
        2,
        "{}",
        sd.log()
    );
    // The URL's path holds the check's token: logs show only its origin.
    assert!(
        sd.log().contains("/…: status 500, expected 2xx"),
        "{}",
        sd.log()
    );
    assert!(!sd.log().contains("/retry"), "{}", sd.log());
    // Backoff doubles: the third attempt waits longer than the second.
    let at: Vec<Instant> = srv.reqs().iter().map(|r| r.at).collect();
    assert!(at[2] - at[1] >= Duration::from_millis(100), "{at:?}");
}

#[test]
fn a_silent_endpoint_times_out_and_is_counted() {
    let srv = Server::start(|_, _| None);
    let procs = format!(
        "  once:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: '{}', timeout: 300ms, retries: 1, retry_delay: 50ms}}\n",
        srv.url("/hang")
    );
    let (mut sd, mport) = start("hb-timeout", &procs);
    let text = wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeat_failures_total{process=\"once\"} 1",
    );
    assert!(
        text.contains("sheepdog_heartbeats_total{process=\"once\",result=\"failure\"} 1"),
        "{text}"
    );
    promtool_check(&text);
    assert_eq!(srv.count("/hang"), 2, "{:?}", srv.paths());
    sd.wait_log("heartbeat success ping failed");
    assert!(sd.log().contains("timed out after 300ms"), "{}", sd.log());
    // Two attempts of 300ms and one 50ms wait: well under a few seconds.
    let at: Vec<Instant> = srv.reqs().iter().map(|r| r.at).collect();
    assert!(at[1] - at[0] < Duration::from_secs(3), "{at:?}");
    assert!(sd.wait_exit(Duration::ZERO).is_none(), "{}", sd.log());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_stuck_ping_does_not_hold_up_shutdown() {
    let srv = Server::start(|_, _| None);
    let procs = format!(
        "  once:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: '{}', timeout: 60s}}\n",
        srv.url("/stuck")
    );
    let (mut sd, _) = start("hb-stuck", &procs);
    srv.wait("the ping", &sd, |r| !r.is_empty());
    let t = Instant::now();
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    // The shutdown itself, plus the heartbeat worker's 2s grace at most.
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // Written, after that wait: it did not use up stdout's last grace.
    assert!(sd.log().contains("abandoning them"), "{}", sd.log());
    assert!(sd.log().contains("shutdown complete"), "{}", sd.log());
}

#[test]
fn a_stuck_endpoint_does_not_hold_up_other_processes_pings() {
    // Regression: one worker sent every ping in turn, so a check URL that
    // never answered silenced every other process's heartbeat.
    let srv = Server::start(|path, _| (path == "/ok").then_some(200));
    let procs = format!(
        "  stuck:\n    schedule: '@every 1s'\n    command: 'true'\n    \
         heartbeat: {{url: '{}', timeout: 60s}}\n  \
         fine:\n    schedule: '@every 1s'\n    command: 'true'\n    \
         heartbeat: {{url: '{}'}}\n",
        srv.url("/stuck"),
        srv.url("/ok")
    );
    let (mut sd, _) = start("hb-isolated", &procs);
    srv.wait("the stuck ping", &sd, |r| {
        r.iter().any(|q| q.path == "/stuck")
    });
    let held = srv.count("/ok");
    srv.wait("pings of the other job meanwhile", &sd, |r| {
        r.iter().filter(|q| q.path == "/ok").count() >= held + 3
    });
    assert_eq!(srv.count("/stuck"), 1, "{:?}", srv.paths());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_healthy_longrun_pings_every_interval() {
    let srv = Server::start(|_, _| Some(200));
    let procs = format!(
        "  web:\n    command: [sleep, '300']\n    \
         heartbeat: {{url: '{alive}', interval: 200ms}}\n  \
         sick:\n    command: [sleep, '300']\n    \
         health_check: {{type: exec, command: ['false'], initial_delay: 0, period: 100ms}}\n    \
         heartbeat: {{url: '{sick}', interval: 200ms}}\n",
        alive = srv.url("/alive"),
        sick = srv.url("/sick"),
    );
    let (sd, mport) = start("hb-interval", &procs);
    srv.wait("three interval pings", &sd, |r| {
        r.iter().filter(|q| q.path == "/alive").count() >= 3
    });
    // Interval pings go to the success URL, empty.
    let reqs = srv.reqs();
    assert!(reqs.iter().all(|r| r.path == "/alive"), "{:?}", srv.paths());
    assert!(reqs.iter().all(|r| r.body.is_empty() && r.method == "POST"));
    // Spaced by the interval, roughly (no burst).
    let at: Vec<Instant> = reqs.iter().map(|r| r.at).collect();
    assert!(at[2] - at[0] >= Duration::from_millis(300), "{at:?}");
    wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeat_failures_total{process=\"sick\"} 0",
    );
}

#[test]
fn an_https_url_fails_clearly_without_network() {
    let procs = "  once:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
                 heartbeat: {url: 'https://hc-ping.invalid/abc', retries: 3}\n";
    let (sd, mport) = start("hb-https", procs);
    wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeat_failures_total{process=\"once\"} 1",
    );
    sd.wait_log("https is not supported");
    // No retries for it: one failure line, no attempt lines.
    assert_eq!(sd.count("heartbeat success ping failed"), 1, "{}", sd.log());
    assert_eq!(sd.count("ping attempt"), 0, "{}", sd.log());
}

#[test]
fn pings_go_through_the_environments_proxy_unless_no_proxy_names_the_host() {
    // The test server plays the proxy: it is told the absolute URL of a
    // host that does not resolve (.invalid), and a ping to 127.0.0.1,
    // excluded by NO_PROXY, reaches it directly by its path.
    let srv = Server::start(|_, _| Some(200));
    let cfg = format!(
        "global:\n  shutdown_timeout: 5\n  api_enabled: false\n  metrics_enabled: false\nprocesses:\n  idle:\n    command: [sleep, '300']\n  \
         far:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: 'http://hc-ping.invalid/far', method: GET}}\n  \
         near:\n    type: oneshot\n    command: 'true'\n    restart: never\n    \
         heartbeat: {{url: '{}'}}\n",
        srv.url("/near")
    );
    let proxy = format!("http://127.0.0.1:{}", srv.port);
    let mut sd = Sheepdog::start_with("hb-proxy", &cfg, |c| {
        for var in ["http_proxy", "ALL_PROXY", "all_proxy"] {
            c.env_remove(var);
        }
        c.env("HTTP_PROXY", &proxy)
            .env("NO_PROXY", "localhost,127.0.0.1")
            .env_remove("no_proxy");
    });
    srv.wait("both pings", &sd, |reqs| reqs.len() >= 2);
    let mut got: Vec<(String, String)> =
        srv.reqs().into_iter().map(|r| (r.method, r.path)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("GET".to_string(), "http://hc-ping.invalid/far".to_string()),
            ("POST".to_string(), "/near".to_string()),
        ],
        "{}",
        sd.log()
    );
    let far = srv.reqs().into_iter().find(|r| r.method == "GET").unwrap();
    assert!(
        far.headers
            .iter()
            .any(|(k, v)| k == "host" && v == "hc-ping.invalid"),
        "{:?}",
        far.headers
    );
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

/// A reload that adds, changes or removes a heartbeat applies it at once,
/// without restarting the process; removed counts leave the metrics.
#[test]
fn a_reload_applies_heartbeat_changes_without_restarting_the_process() {
    let srv = Server::start(|_, _| Some(200));
    let beat = |path: &str| {
        format!(
            "    heartbeat: {{url: '{}', interval: 200ms}}\n",
            srv.url(path)
        )
    };
    // `clock` pings throughout: its count stands in for time passing.
    let procs = |web: &str| {
        format!(
            "  web:\n    command: [sleep, '300']\n{web}  clock:\n    command: [sleep, '300']\n{}",
            beat("/clock")
        )
    };
    let (sd, mport) = start("hb-reload", &procs(&beat("/a")));
    srv.wait("a ping to /a", &sd, |r| r.iter().any(|q| q.path == "/a"));
    let cfg = sd.dir.path("sheepdog.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let reload = |text: String, n: usize| {
        std::fs::write(&cfg, text).unwrap();
        sd.signal(libc::SIGHUP);
        assert!(
            sd.wait_log_n("reloaded ", n, WAIT),
            "reload {n} never done\n{}",
            sd.log()
        );
    };
    let ticks_later = |n: usize| {
        let from = srv.count("/clock");
        srv.wait("clock ticks", &sd, |r| {
            r.iter().filter(|q| q.path == "/clock").count() >= from + n
        });
    };

    // A new URL: pings go there, and no longer to the old one.
    reload(text.replace("/a'", "/b'"), 1);
    assert!(sd.log().contains("updated web"), "{}", sd.log());
    srv.wait("two pings to /b", &sd, |r| {
        r.iter().filter(|q| q.path == "/b").count() >= 2
    });
    ticks_later(1);
    let a = srv.count("/a");
    ticks_later(3);
    assert_eq!(srv.count("/a"), a, "{:?}", srv.paths());
    wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeat_failures_total{process=\"web\"} 0",
    );

    // Removed: no more pings, and its series go.
    let without = text.replace(&beat("/a"), "");
    assert_ne!(without, text);
    reload(without, 2);
    ticks_later(1);
    let b = srv.count("/b");
    ticks_later(3);
    assert_eq!(srv.count("/b"), b, "{:?}", srv.paths());
    let m = metrics(mport);
    let web_beats = m
        .lines()
        .filter(|l| l.starts_with("sheepdog_heartbeat") && l.contains("process=\"web\""));
    assert_eq!(web_beats.count(), 0, "{m}");
    assert!(
        m.contains("sheepdog_heartbeat_failures_total{process=\"clock\"} 0"),
        "{m}"
    );

    // The process ran on throughout.
    assert_eq!(sd.pids_of("web-1").len(), 1, "{}", sd.log());
}

/// The run numbers (`run N` lines of the job's output) in the failure
/// bodies the server got for `path`, in the order it got them.
fn runs_in(srv: &Server, path: &str) -> Vec<u64> {
    srv.reqs()
        .iter()
        .filter(|r| r.path == path)
        .filter_map(|r| {
            r.body
                .lines()
                .find_map(|l| l.strip_prefix("run ")?.trim().parse().ok())
        })
        .collect()
}

fn in_order(runs: &[u64]) -> bool {
    runs.windows(2).all(|w| w[0] <= w[1])
}

/// Regression (review M2): a ping waiting for its retry was overtaken by
/// the pings of later runs, so run 1's failure could land after run 3's:
/// the monitor ended on a stale state. Now a process's pings go in order,
/// and a newer end-of-run ping supersedes the one waiting.
#[test]
fn a_retried_ping_never_lands_after_a_newer_runs_ping() {
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    // The first failure ping gets a 500; everything else a 200.
    let srv = Server::start(move |path, _| {
        let refuse = path == "/m/fail" && f.swap(false, Ordering::SeqCst);
        Some(if refuse { 500 } else { 200 })
    });
    let procs = format!(
        "  job:\n    command: 'echo run $SHEEPDOG_RUN_ID; exit 1'\n    schedule: '@every 1s'\n    \
         heartbeat: {{url: '{}', ping_start: true, retries: 3, retry_delay: 2500ms}}\n",
        srv.url("/m")
    );
    let (mut sd, _) = start("hb-order", &procs);
    srv.wait("failure pings of runs after the retry", &sd, |r| {
        r.iter()
            .any(|q| q.path == "/m/fail" && q.body.contains("run 5"))
    });
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let runs = runs_in(&srv, "/m/fail");
    assert!(in_order(&runs), "{runs:?} {:?}\n{}", srv.paths(), sd.log());
    // Run 1's failure was refused, then superseded by a newer run's.
    assert_eq!(runs[0], 1, "{runs:?}");
    assert!(runs[1] > 1, "{runs:?}\n{}", sd.log());
    assert!(
        sd.log()
            .contains("heartbeat failure ping of job#1 superseded by the failure ping of job#"),
        "{}",
        sd.log()
    );
    // A start ping never lands between a run's failure and its retry:
    // after the refused one, the next request is a failure ping.
    let paths = srv.paths();
    let refused = paths.iter().position(|p| p == "/m/fail").unwrap();
    assert_eq!(paths[refused + 1], "/m/fail", "{paths:?}\n{}", sd.log());
}

/// The same across a reload: a worker the reload retires flushes its
/// pending retry, and the new worker's pings wait for it, even when the
/// old one was held up by a slow endpoint at the time.
#[test]
fn a_reload_keeps_a_processs_pings_in_order() {
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    // The first failure ping is held without an answer (the old worker
    // times out on it, then flushes its retry); the rest get a 200.
    let srv = Server::start(move |path, _| {
        let hold = path == "/r/fail" && f.swap(false, Ordering::SeqCst);
        (!hold).then_some(200)
    });
    let procs = format!(
        "  job:\n    command: 'echo run $SHEEPDOG_RUN_ID; exit 1'\n    schedule: '@every 1s'\n    \
         heartbeat: {{url: '{}', timeout: 1500ms, retry_delay: 100ms}}\n",
        srv.url("/r")
    );
    let (mut sd, _) = start("hb-reload-order", &procs);
    srv.wait("the held failure ping", &sd, |r| {
        r.iter().any(|q| q.path == "/r/fail")
    });
    let cfg = sd.dir.path("sheepdog.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("timeout: 1500ms", "timeout: 1400ms")).unwrap();
    sd.signal(libc::SIGHUP);
    assert!(sd.wait_log_n("reloaded ", 1, WAIT), "{}", sd.log());
    srv.wait("failure pings of later runs", &sd, |r| {
        r.iter()
            .any(|q| q.path == "/r/fail" && q.body.contains("run 5"))
    });
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let runs = runs_in(&srv, "/r/fail");
    assert!(in_order(&runs), "{runs:?}\n{}", sd.log());
    assert_eq!(runs[0], 1, "{runs:?}");
}

/// Regression (review m3): a longrun pings only every `interval`; a
/// heartbeat without one sent nothing, and `check` did not say so.
#[test]
fn check_warns_about_a_longrun_heartbeat_without_interval() {
    let dir = TempDir::new("hb-check");
    let f = dir.write(
        "sheepdog.yaml",
        "processes:\n  crashy:\n    command: 'sleep 1'\n    \
         heartbeat: {url: 'http://127.0.0.1:28509/c', ping_start: true}\n  \
         web:\n    command: 'sleep 1'\n    \
         heartbeat: {url: 'http://127.0.0.1:28509/w', failure_url: 'http://127.0.0.1:28509/f', interval: 1m}\n  \
         job:\n    command: 'true'\n    schedule: '@hourly'\n    \
         heartbeat: {url: 'http://127.0.0.1:28509/j', interval: 1m}\n  \
         fine:\n    type: oneshot\n    command: 'true'\n    \
         heartbeat: {url: 'http://127.0.0.1:28509/o', ping_start: true}\n",
    );
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["check", "-c"]).arg(&f);
    let out = output_within(cmd, WAIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let want = "processes.crashy.heartbeat: has no effect on a longrun without interval";
    assert!(text.contains(want), "no {want:?} in:\n{text}");
    // Jobs, oneshots and longruns with an interval ping: nothing to say.
    assert_eq!(
        text.matches("heartbeat: has no effect").count(),
        1,
        "{text}"
    );
}

/// Regression (review m4): the body's last 20 lines were taken in the
/// order sheepdog read the two pipes, so a stderr line read before the
/// stdout lines around it fell out, and the error with it.
#[test]
fn a_failure_body_keeps_the_last_stderr_lines() {
    let srv = Server::start(|_, _| Some(200));
    let procs = format!(
        "  early:\n    command: 'echo the-error >&2; for i in $(seq 1 30); do echo line $i; done; exit 5'\n    \
         schedule: '@every 1s'\n    heartbeat: {{url: '{}'}}\n  \
         late:\n    command: 'for i in $(seq 1 30); do echo line $i; done; echo late-error >&2; exit 6'\n    \
         schedule: '@every 1s'\n    heartbeat: {{url: '{}'}}\n",
        srv.url("/early"),
        srv.url("/late")
    );
    let (mut sd, _) = start("hb-stderr", &procs);
    srv.wait("two failure pings of each", &sd, |r| {
        let n = |p: &str| r.iter().filter(|q| q.path == p).count();
        n("/early/fail") >= 2 && n("/late/fail") >= 2
    });
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    for (path, error, code) in [
        ("/early/fail", "the-error", 5),
        ("/late/fail", "late-error", 6),
    ] {
        for r in srv.reqs().iter().filter(|r| r.path == path) {
            let lines: Vec<&str> = r.body.lines().collect();
            assert_eq!(lines[0], format!("exit_code={code}"), "{:?}", r.body);
            assert!(lines.contains(&error), "{path}: {:?}", r.body);
            // Still the last 20 lines, ending with the last one printed.
            assert_eq!(lines.len(), 2 + 20, "{:?}", r.body);
            assert!(lines.contains(&"line 30"), "{:?}", r.body);
        }
    }
}

/// Regression (review M4): a run's end ping went to the heartbeat a reload
/// had put in place meanwhile, or nowhere when the reload removed the
/// heartbeat or the job. A run in progress finishes with the definition it
/// started with: its end ping goes where its start ping went.
#[test]
fn a_runs_end_ping_goes_where_its_start_ping_went_across_a_reload() {
    let srv = Server::start(|_, _| Some(200));
    let job = |path: &str| {
        format!(
            "  job:\n    command: 'touch $DIR/running.$SHEEPDOG_RUN_ID; while [ ! -e $DIR/go.$SHEEPDOG_RUN_ID ]; do sleep 0.05; done'\n    \
             schedule: '@every 1h'\n    heartbeat: {{url: '{}', ping_start: true}}\n",
            srv.url(path)
        )
    };
    let (sd, api, _) = start_serving("hb-run-reload", |api, metrics| {
        format!(
            "global:\n  shutdown_timeout: 5\n  api_port: {api}\n  metrics_port: {metrics}\n  \
             api_auth: tok\nprocesses:\n  idle:\n    command: [sleep, '300']\n{}",
            job("/a")
        )
    });
    let cfg = sd.dir.path("sheepdog.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let reload = |text: String, n: usize| {
        std::fs::write(&cfg, text).unwrap();
        sd.signal(libc::SIGHUP);
        assert!(sd.wait_log_n("reloaded ", n, WAIT), "{}", sd.log());
    };
    let trigger = |run: u32| {
        let r = http::post(api, "/api/v1/schedules/job/trigger", Some("tok"), "{}");
        assert_eq!(r.status, 202, "{}", r.body);
        let running = sd.dir.path(&format!("running.{run}"));
        assert!(wait_until(WAIT, || running.exists()), "{}", sd.log());
    };
    let end = |run: u32, path: &str| {
        sd.dir.write(&format!("go.{run}"), "");
        srv.wait(path, &sd, |r| r.iter().any(|q| q.path == path));
    };
    // Changed while run 1 goes on: its end still pings /a.
    trigger(1);
    srv.wait("/a/start", &sd, |r| r.iter().any(|q| q.path == "/a/start"));
    reload(text.replace("/a'", "/b'"), 1);
    end(1, "/a");
    // Run 2 started under /b; the job (and with it the last heartbeat) is
    // removed while it goes on: its end still pings /b.
    trigger(2);
    srv.wait("/b/start", &sd, |r| r.iter().any(|q| q.path == "/b/start"));
    let without_job = text.split("  job:").next().unwrap().to_string();
    reload(without_job, 2);
    assert!(sd.log().contains("removed job"), "{}", sd.log());
    end(2, "/b");
    sd.wait_log("job: removed (its last run ended)");
    assert_eq!(
        srv.paths(),
        ["/a/start", "/a", "/b/start", "/b"],
        "{}",
        sd.log()
    );
}

/// Set `pid`'s soft RLIMIT_NOFILE to `soft` (its hard limit stays);
/// returns the soft limit it had.
fn set_nofile(pid: i32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the limit into `old`, a valid rlimit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; the old one is not asked for.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// The lowest descriptor number `pid` has free: with its limit there, it
/// can open nothing more.
fn lowest_free_fd(pid: i32) -> u64 {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

#[test]
fn a_ping_sheepdog_had_no_socket_for_is_sent_once_it_has_one() {
    // Regression: a ping whose socket could not be made (sheepdog at its
    // descriptor limit: EMFILE) used up its attempts, and with `retries: 0`
    // was lost for good, though nothing was wrong with the endpoint.
    let srv = Server::start(|_, _| Some(200));
    let dir = TempDir::new("hb-emfile-fifo");
    let fifo = dir.path("go");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // No output pipes: its end frees no descriptor in sheepdog.
    let procs = format!(
        "  once:\n    type: oneshot\n    command: [cat, '{}']\n    restart: never\n    \
         stdout: false\n    stderr: false\n    \
         heartbeat: {{url: '{}', retries: 0}}\n",
        fifo.display(),
        srv.url("/ping")
    );
    let (sd, mport) = start("hb-emfile", &procs);
    assert!(
        wait_until(WAIT, || !sd.pids_of("once-1").is_empty()),
        "{}",
        sd.log()
    );
    let soft = set_nofile(sd.pid(), lowest_free_fd(sd.pid()));
    // The run ends (cat reads EOF), and its success ping finds no
    // descriptor to make a socket with.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    let tried = wait_until(WAIT, || {
        sd.log().contains("heartbeat success ping not sent")
            || sd.log().contains("heartbeat success ping failed")
    });
    assert!(tried, "the ping was never tried:\n{}", sd.log());
    assert_eq!(
        srv.count("/ping"),
        0,
        "it had a socket after all: proves nothing"
    );
    set_nofile(sd.pid(), soft);
    srv.wait("the ping once sheepdog had descriptors again", &sd, |r| {
        r.iter().any(|r| r.path == "/ping")
    });
    let text = wait_metric(
        &sd,
        mport,
        "sheepdog_heartbeats_total{process=\"once\",result=\"success\"} 1",
    );
    assert!(
        text.contains("sheepdog_heartbeat_failures_total{process=\"once\"} 0"),
        "{text}"
    );
    assert_eq!(
        sd.count("sheepdog is short of resources"),
        1,
        "{}",
        sd.log()
    );
}
