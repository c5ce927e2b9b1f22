//! Health probes: TCP connect, HTTP GET, exec, and "declared ports are
//! listening". Each runs blocking on a probe thread the instance starts
//! for it, and is bounded by the probe timeout.
//!
//! Invariants:
//! - Every probe returns within its timeout (exec: plus the task module's
//!   bounded kill grace; a spawn stuck short of exec, on a hung mount, is
//!   killed at the timeout by its exec deadline, or by its instance a
//!   grace later if that could not be armed: `instance::Probing`); none
//!   panics on any target or response.
//! - HTTP probes use no TLS and follow no redirects unless told to
//!   (`http_client`): a 3xx is judged against `expected_status` like any
//!   status.
//! - Exec probes are children like any other: own process group, reaped by
//!   the one reaper, killed as a group at the timeout (see `task`).
//! - Declared ports listen only through a socket of the instance's own
//!   process group; another process's listener on the port is named, not
//!   counted (`ports`).
//! - Templates `{instance}`, `{index}` and `{port}` are resolved per
//!   instance, so each replica is probed on its own target.
//! - A failure's text (logged, and served by the API) gets the process's
//!   `logging.redaction`, and shows an http URL without its query.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::config::extra::Probe;
use crate::config::Process;
use crate::ports::{self, NotListening};
use crate::reaper::Reaper;
use crate::resolve::{self, Failure};
use crate::spawn::{self, Identity};
use crate::task::{self, TaskEnd};

/// A probe's outcome: Ok, or why it failed.
pub type Outcome = Result<(), String>;

/// What running a probe gave: the instance's health, or nothing because
/// sheepdog itself is short of descriptors, tasks or memory (a full pids
/// cgroup, its fd limit). That is not the instance's fault, so it is not
/// counted: restarting a healthy service would only make it worse.
#[derive(Debug)]
pub enum Checked {
    Ran(Outcome),
    NotRun(String),
}

/// Why a tcp or http probe got no answer: the target failed, or sheepdog
/// could not make the request (its own shortage, `Checked::NotRun`).
enum Miss {
    Failed(String),
    NotRun(String),
}

impl Miss {
    fn checked(self) -> Checked {
        match self {
            Miss::Failed(why) => Checked::Ran(Err(why)),
            Miss::NotRun(why) => Checked::NotRun(why),
        }
    }
}

/// Replace `{instance}`, `{index}` and `{port}` in `s`.
pub fn expand(s: &str, id: &Identity, port: Option<u16>) -> String {
    let mut out = s
        .replace("{instance}", &id.instance)
        .replace("{index}", &id.index.to_string());
    if let Some(p) = port {
        out = out.replace("{port}", &p.to_string());
    }
    out
}

/// The probe of `def` for instance `id`, templates resolved.
pub fn for_instance(probe: &Probe, id: &Identity, port: Option<u16>) -> Probe {
    match probe {
        Probe::Tcp { address } => Probe::Tcp {
            address: expand(address, id, port),
        },
        Probe::Http {
            url,
            expected_status,
            follow_redirects,
        } => Probe::Http {
            url: expand(url, id, port),
            expected_status: expected_status.clone(),
            follow_redirects: *follow_redirects,
        },
        Probe::Exec { command } => Probe::Exec {
            command: command.iter().map(|a| expand(a, id, port)).collect(),
        },
    }
}

/// Run one probe within `timeout`. `abandon` is the read end of a pipe
/// whose writer closing ends an exec probe early, its group killed.
pub fn run(
    probe: &Probe,
    timeout: Duration,
    def: &Process,
    id: &Identity,
    reaper: &Reaper,
    abandon: BorrowedFd<'_>,
) -> Checked {
    let checked = match probe {
        Probe::Tcp { address } => tcp(address, timeout),
        Probe::Http {
            url,
            expected_status,
            follow_redirects,
        } => http(url, expected_status, *follow_redirects, timeout),
        Probe::Exec { command } => exec(command, timeout, def, id, reaper, abandon),
    };
    // The text is logged and served by the API: it must not show what the
    // process's own lines hide.
    let hide = |why| crate::output::pipeline::redact(&def.extra.logging.redaction, why);
    match checked {
        Checked::Ran(Err(why)) => Checked::Ran(Err(hide(why))),
        Checked::NotRun(why) => Checked::NotRun(hide(why)),
        ok => ok,
    }
}

/// `url` as messages show it: without its query, which often holds a key.
fn shown(url: &str) -> String {
    match url.find('?') {
        Some(i) => format!("{}?…", &url[..i]),
        None => url.to_string(),
    }
}

fn tcp(address: &str, timeout: Duration) -> Checked {
    match connect(address, timeout) {
        Ok(()) => Checked::Ran(Ok(())),
        Err(miss) => miss.checked(),
    }
}

/// Connect to `address` (`host:port`), by the timeout.
fn connect(address: &str, timeout: Duration) -> Result<(), Miss> {
    let (host, port) = resolve::split(address)
        .ok_or_else(|| Miss::Failed(format!("{address} is not host:port")))?;
    match resolve::connect(host, port, Instant::now() + timeout) {
        Ok(_) => Ok(()),
        Err(Failure::TimedOut) => Err(Miss::Failed(format!(
            "connect to {address} timed out after {}",
            crate::config::format_duration(timeout)
        ))),
        Err(Failure::Failed(why)) => Err(Miss::Failed(why)),
        Err(Failure::Unable(why)) => Err(Miss::NotRun(why)),
    }
}

fn http(url: &str, expected: &[(u16, u16)], follow: bool, timeout: Duration) -> Checked {
    let (target, url) = (url, &shown(url));
    match get_status(target, url, follow, timeout) {
        Ok((status, to)) => {
            // Named as asked for, and where the status came from.
            let url = to.map_or_else(|| url.to_string(), |to| format!("{url} → {}", shown(&to)));
            Checked::Ran(judge(&url, status, expected))
        }
        Err(miss) => miss.checked(),
    }
}

/// `status` (the answer of `url`) against the expected ranges.
fn judge(url: &str, status: u16, expected: &[(u16, u16)]) -> Outcome {
    if expected
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    {
        Ok(())
    } else {
        let want: Vec<String> = expected
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        Err(format!(
            "GET {url}: status {status}, expected {}",
            want.join(", ")
        ))
    }
}

fn exec(
    command: &[String],
    timeout: Duration,
    def: &Process,
    id: &Identity,
    reaper: &Reaper,
    abandon: BorrowedFd<'_>,
) -> Checked {
    let Some(program) = command.first() else {
        return Checked::Ran(Err("empty probe command".into()));
    };
    let mut cmd = match spawn::command(def, id, command) {
        Ok(c) => c,
        Err(e) => return Checked::Ran(Err(format!("unable to run {program:?}: {e}"))),
    };
    cmd.env(crate::child::var::PROBE, &*id.instance);
    let name = program.as_str();
    let end = task::run(reaper, cmd, timeout, task::Capture::Tail(abandon), None);
    // What the group kill could not reach.
    crate::stragglers::end_probe_strays(reaper, &id.instance);
    Checked::Ran(match end {
        TaskEnd::SpawnFailed(e) if e.short_of_resources => {
            return Checked::NotRun(format!("unable to run {name:?}: {e}"))
        }
        TaskEnd::Exited { status, .. } if status.success() => Ok(()),
        TaskEnd::Exited { status, output } => Err(with_output(format!("{name} {status}"), &output)),
        TaskEnd::TimedOut { output } => Err(with_output(
            format!(
                "{name} timed out after {}; its process group was killed",
                crate::config::format_duration(timeout)
            ),
            &output,
        )),
        TaskEnd::SpawnFailed(e) => Err(format!("unable to run {name:?}: {e}")),
        TaskEnd::Cancelled => Err(format!("{name} was cancelled")),
    })
}

/// GET `target` (`url` in messages): the answer's status, whatever it
/// is, and the URL that gave it after a redirect.
#[cfg(feature = "http")]
fn get_status(
    target: &str,
    url: &str,
    follow: bool,
    timeout: Duration,
) -> Result<(u16, Option<String>), Miss> {
    use crate::http_client::{self, Error, Proxy, Request};
    let req = Request {
        method: "GET",
        url: target,
        headers: &[],
        body: None,
        timeout,
        redirects: if follow { 5 } else { 0 },
        proxy: Proxy::Never,
        what: "health check",
    };
    http_client::send_to(&req).map_err(|e| match e {
        Error::TimedOut => Miss::Failed(format!(
            "GET {url}: timed out after {}",
            crate::config::format_duration(timeout)
        )),
        Error::Unable(why) => Miss::NotRun(format!("GET {url}: {why}")),
        e => Miss::Failed(format!("GET {url}: {e}")),
    })
}

/// Without the `http` feature no http check is configured (refused at load).
#[cfg(not(feature = "http"))]
fn get_status(_: &str, url: &str, _: bool, _: Duration) -> Result<(u16, Option<String>), Miss> {
    Err(Miss::Failed(format!(
        "GET {url}: this build has no HTTP client (cargo feature `http`)"
    )))
}

/// "msg: last line of output" (bounded). Its control characters are
/// escaped where it is logged (`logging`), and JSON escapes them in the API.
fn with_output(msg: String, output: &str) -> String {
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => {
            let line: String = line.chars().take(200).collect();
            format!("{msg}: {line}")
        }
        None => msg,
    }
}

/// Whether the instance led by `pgid` listens on its declared `ports`: a
/// socket of its own process group must, not any process's (`ports`).
pub fn ports_listening(ports: &[u16], pgid: i32) -> Outcome {
    let mut nobody = Vec::new();
    let mut why = Vec::new();
    for (port, state) in ports::not_listening(ports, pgid) {
        match state {
            NotListening::Nobody => nobody.push(port.to_string()),
            NotListening::Other(who) => why.push(format!(
                "port {port} is held by {}, not by this instance",
                who.as_deref().unwrap_or("another process")
            )),
        }
    }
    if !nobody.is_empty() {
        why.insert(
            0,
            format!("declared port {} not listening", nobody.join(", ")),
        );
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn templates_expand_per_instance() {
        let id = Identity::new("queue", 3);
        assert_eq!(
            expand(
                "http://127.0.0.1:{port}/{instance}?i={index}",
                &id,
                Some(9002)
            ),
            "http://127.0.0.1:9002/queue-3?i=3"
        );
        assert_eq!(
            expand("no {port} without ports", &id, None),
            "no {port} without ports"
        );
    }

    /// A probe's outcome when it ran (these tests never lack resources).
    fn ran(c: Checked) -> Outcome {
        match c {
            Checked::Ran(o) => o,
            Checked::NotRun(why) => panic!("not run: {why}"),
        }
    }

    #[test]
    fn tcp_probe_connects_or_explains() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert_eq!(ran(tcp(&addr, Duration::from_secs(2))), Ok(()));
        drop(l);
        let err = ran(tcp(&addr, Duration::from_secs(2))).unwrap_err();
        assert!(err.contains("refused"), "{err}");
        // A resolver without network may answer or stay silent: either way
        // the probe says which, within its timeout.
        let err = ran(tcp("no-such-host.invalid:80", Duration::from_secs(2))).unwrap_err();
        assert!(
            err.starts_with("unable to resolve no-such-host.invalid: ")
                || err == "connect to no-such-host.invalid:80 timed out after 2s",
            "{err}"
        );
        assert_eq!(
            ran(tcp("nonsense", Duration::from_secs(2))),
            Err("nonsense is not host:port".into())
        );
    }

    #[test]
    fn tcp_probe_resolves_names() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // localhost is 127.0.0.1 then ::1 (`resolve`).
        assert_eq!(
            ran(tcp(&format!("localhost:{port}"), Duration::from_secs(2))),
            Ok(())
        );
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn http_probe_checks_the_status_and_follows_no_redirect() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for (status, conn) in ["302 Found", "503 Service Unavailable", "200 OK"]
                .iter()
                .zip(l.incoming())
            {
                use std::io::{Read, Write};
                let mut c = conn.unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = write!(c, "HTTP/1.1 {status}\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        let url = format!("http://127.0.0.1:{port}/health");
        let ok_2xx = [(200, 299)];
        let e = ran(http(&url, &ok_2xx, false, Duration::from_secs(3))).unwrap_err();
        assert!(e.contains("status 302, expected 200-299"), "{e}");
        let e = ran(http(&url, &[(200, 200)], false, Duration::from_secs(3))).unwrap_err();
        assert!(e.contains("status 503, expected 200"), "{e}");
        assert_eq!(
            ran(http(&url, &ok_2xx, false, Duration::from_secs(3))),
            Ok(())
        );
        server.join().unwrap();
    }

    #[test]
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
    fn http_probe_follows_redirects_only_when_asked() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for (status, conn) in ["302 Found", "200 OK"].iter().zip(l.incoming()) {
                use std::io::{Read, Write};
                let mut c = conn.unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = write!(c, "HTTP/1.1 {status}\r\nLocation: /ok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(
            ran(http(&url, &[(200, 299)], true, Duration::from_secs(3))),
            Ok(())
        );
        server.join().unwrap();
    }

    #[test]
    #[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
    fn http_probe_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        // Accepted by the kernel, never answered.
        let start = Instant::now();
        assert!(ran(http(&url, &[(200, 200)], false, Duration::from_millis(300))).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(l);
    }
}
