//! `sheepdog ctl` against a running sheepdog (issue 4): the status table,
//! `--json`, every verb, the unix socket and TCP, tokens from the flag and
//! the environment, and exit codes for API, transport and usage errors.

mod common;

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::http::free_port;
use common::*;
use serde_json::Value;

const TOKEN: &str = "ctl-token";

/// A sheepdog with TCP and a unix socket, token required.
fn serve(name: &str, sockdir: &TempDir) -> (Sheepdog, u16) {
    let sock = sockdir.path("api.sock");
    let (sd, port, _) = start_serving(name, |p, m| {
        format!(
            "global:\n  shutdown_timeout: 10\n  api_port: {p}\n  metrics_port: {m}\n  api_auth: {TOKEN}\n  api_socket: {}\nprocesses:\n  web:\n    command: \"trap 'echo hup >> $DIR/hups' HUP; echo up >> $DIR/up; while :; do sleep 0.05; done\"\n    scale: 2\n  idle:\n    command: \"exec sleep 1000\"\n    initial_state: stopped\n",
            sock.display()
        )
    });
    (sd, port)
}

/// Run `sheepdog ctl ARGS` with a clean environment for the ctl variables,
/// bounded by `WAIT`.
fn ctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("ctl").args(args);
    for k in [
        "SHEEPDOG_API_TOKEN",
        "SHEEPDOG_API_SOCKET",
        "SHEEPDOG_API_URL",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    output_within(c, WAIT)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `ctl --json status` over the socket.
fn status_json(sock: &Path) -> Value {
    let o = ctl(
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--token",
            TOKEN,
            "--json",
            "status",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn web_pids(v: &Value) -> Vec<i64> {
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web")
        .unwrap()["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["pid"].as_i64())
        .collect()
}

#[test]
fn status_table_and_json() {
    let sockdir = TempDir::new("ctl-sock");
    let (sd, port) = serve("ctl-status", &sockdir);
    let sock = sockdir.path("api.sock");
    assert!(
        wait_until(WAIT, || web_pids(&status_json(&sock)).len() == 2),
        "{}\n{}",
        status_json(&sock),
        sd.log()
    );

    // The table, over TCP with --token.
    let o = ctl(&["--url", &url(port), "--token", TOKEN, "status"], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "INSTANCE", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH"]
    );
    // Columns line up: every row's INSTANCE starts where the header's does.
    let col = lines[0].find("INSTANCE").unwrap();
    let pids = web_pids(&status_json(&sock));
    let web1 = lines
        .iter()
        .find(|l| l.starts_with("web ") && l.contains("web-1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(web1.find("web-1"), Some(col), "{text}");
    let f: Vec<&str> = web1.split_whitespace().collect();
    assert_eq!(f[2], "running", "{text}");
    assert_eq!(f[3].parse::<i64>().unwrap(), pids[0], "{text}");
    assert!(f[4].ends_with('s') || f[4].ends_with('m'), "{text}");
    assert_eq!(f[5], "0", "{text}");
    assert_eq!(f[6], "unknown", "{text}");
    let idle = lines.iter().find(|l| l.starts_with("idle")).unwrap();
    assert_eq!(
        idle.split_whitespace().collect::<Vec<_>>(),
        ["idle", "-", "held", "-", "-", "-", "-"]
    );

    // --json is the API's JSON.
    let v = status_json(&sock);
    assert_eq!(v["pid"], sd.pid());
    assert_eq!(v["processes"].as_array().unwrap().len(), 2);

    // One process, token from the environment, default target from
    // $SHEEPDOG_API_SOCKET.
    let o = ctl(
        &["status", "web"],
        &[
            ("SHEEPDOG_API_TOKEN", TOKEN),
            ("SHEEPDOG_API_SOCKET", sock.to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 3, "{}", out(&o));
    assert!(!out(&o).contains("idle"));
    // A token from a file ends with its newline (a Kubernetes secret
    // made with --from-file, given as a variable): sheepdog trims its
    // `api_auth_file`, and ctl the token, so the same secret works.
    let with_newline = format!("{TOKEN}\n");
    let o = ctl(
        &["--url", &url(port), "status", "web"],
        &[("SHEEPDOG_API_TOKEN", &with_newline)],
    );
    assert!(o.status.success(), "{}", err(&o));
    // And from $SHEEPDOG_API_URL.
    let o = ctl(
        &["--json", "status", "web"],
        &[
            ("SHEEPDOG_API_TOKEN", TOKEN),
            ("SHEEPDOG_API_URL", &url(port)),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "web");
}

#[test]
fn verbs_change_the_running_sheepdog() {
    let sockdir = TempDir::new("ctl-verbs-sock");
    let (mut sd, port) = serve("ctl-verbs", &sockdir);
    let sock = sockdir.path("api.sock");
    let s = sock.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut a = vec!["--socket", s, "--token", TOKEN];
        a.extend_from_slice(args);
        ctl(&a, &[])
    };
    assert!(wait_until(WAIT, || sd.dir.lines("up").len() >= 2));

    let o = run(&["scale", "web", "+1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "scaling web from 2 to 3");
    assert!(
        wait_until(WAIT, || web_pids(&status_json(&sock)).len() == 3),
        "{}\n{}",
        status_json(&sock),
        sd.log()
    );
    // web-3 has a pid as soon as it is spawned; its shell writes `up` a
    // moment later. Stopping it before then would leave one line short.
    assert!(wait_until(WAIT, || sd.dir.lines("up").len() >= 3));
    let o = run(&["scale", "web", "-2"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        wait_until(WAIT, || web_pids(&status_json(&sock)).len() == 1),
        "{}\n{}",
        status_json(&sock),
        sd.log()
    );
    let o = run(&["scale", "web", "2"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        wait_until(WAIT, || web_pids(&status_json(&sock)).len() == 2),
        "{}\n{}",
        status_json(&sock),
        sd.log()
    );
    assert!(
        wait_until(WAIT, || sd.dir.lines("up").len() >= 4),
        "{:?}\n{}",
        sd.dir.lines("up"),
        sd.log()
    );

    let o = run(&["signal", "web", "HUP"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("sent SIGHUP to 2 instance(s) of web"),
        "{}",
        out(&o)
    );
    assert!(wait_until(WAIT, || sd.dir.lines("hups").len() >= 2));

    let o = run(&["start", "idle"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "starting idle");
    let o = run(&["stop", "idle"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = run(&["restart", "web"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("one instance at a time"));
    sd.wait_log("web: rolling restart complete");

    // --json for a verb prints the API's answer.
    let o = ctl(
        &[
            "--url",
            &url(port),
            "--token",
            TOKEN,
            "--json",
            "stop",
            "idle",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["process"], "idle");

    let o = run(&["shutdown"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "shutting down");
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn errors_exit_non_zero_with_the_message() {
    let sockdir = TempDir::new("ctl-err-sock");
    let (_sd, port) = serve("ctl-errors", &sockdir);
    let u = url(port);

    // API errors: exit 1, the API's message on stderr, nothing on stdout.
    for (args, needle) in [
        (
            vec!["--url", &u, "--token", TOKEN, "stop", "nope"],
            "no process named \"nope\" (HTTP 404)",
        ),
        // An instance name, as `status` lists them: ctl acts on processes.
        (
            vec!["--url", &u, "--token", TOKEN, "restart", "web-1"],
            "no process named \"web-1\"; did you mean \"web\"? (HTTP 404)",
        ),
        (
            vec!["--url", &u, "--token", TOKEN, "status", "web-1"],
            "no process named \"web-1\"; did you mean \"web\"? (HTTP 404)",
        ),
        (
            vec!["--url", &u, "--token", TOKEN, "signal", "web", "NOPE"],
            "signal: unknown signal \"NOPE\"",
        ),
        (
            vec!["--url", &u, "--token", TOKEN, "scale", "web", "-5"],
            "delta: -5 would take web below 0",
        ),
        (
            vec!["--url", &u, "--token", "wrong", "status"],
            "unauthorized: invalid bearer token (HTTP 401)",
        ),
        (
            vec!["--url", &u, "status"],
            "unauthorized: missing bearer token",
        ),
    ] {
        let o = ctl(&args, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(needle), "{args:?}: {}", err(&o));
        assert!(out(&o).is_empty(), "{args:?}: {}", out(&o));
    }

    // Nothing listening: exit 1, naming the target.
    let dead = free_port();
    let o = ctl(&["--url", &url(dead), "status"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains(&format!("unable to connect to http://127.0.0.1:{dead}")),
        "{}",
        err(&o)
    );
    let o = ctl(&["--socket", "/nonexistent/sheepdog.sock", "status"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("unable to connect to /nonexistent/sheepdog.sock"),
        "{}",
        err(&o)
    );

    // Usage errors: exit 2.
    for args in [
        vec!["frobnicate"],
        vec!["stop"],
        vec!["scale", "web", "lots"],
        vec!["--url", "https://127.0.0.1:1", "status"],
        vec![],
    ] {
        let o = ctl(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).starts_with("sheepdog: "), "{}", err(&o));
    }
    let o = ctl(
        &["status"],
        &[
            ("SHEEPDOG_API_TOKEN", "bad\ntoken"),
            ("SHEEPDOG_API_URL", &u),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    // A URL from the environment that cannot be used names the variable.
    // So does one whose host or port no connection could use: these were
    // "unable to resolve", exit 1, as if the API were down.
    for bad in [
        "https://127.0.0.1:1",
        "127.0.0.1:1",
        "http://x:1/a?b=1",
        "http://127.0.0.1:99999",
        "http://[::1",
        "http://:9180",
        "http://::1:9180",
    ] {
        let o = ctl(&["status"], &[("SHEEPDOG_API_URL", bad)]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", err(&o));
        assert!(
            err(&o).contains(&format!("$SHEEPDOG_API_URL: invalid URL '{bad}'")),
            "{bad}: {}",
            err(&o)
        );
    }
    let o = ctl(&["--url", "http://127.0.0.1:99999", "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("--url: invalid URL 'http://127.0.0.1:99999'"),
        "{}",
        err(&o)
    );
    // A variable that is not UTF-8 is an error naming it, not ignored
    // (which sent the request to the default address instead).
    use std::os::unix::ffi::OsStrExt;
    for (var, args) in [
        ("SHEEPDOG_API_URL", vec!["ctl", "status"]),
        ("SHEEPDOG_API_TOKEN", vec!["ctl", "--url", &u, "status"]),
    ] {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_remove("SHEEPDOG_API_SOCKET")
            .env_remove("SHEEPDOG_API_URL")
            .env_remove("SHEEPDOG_API_TOKEN")
            .env(var, std::ffi::OsStr::from_bytes(b"http://127.0.0.1:1\xff"));
        let o = output_within(c, WAIT);
        assert_eq!(o.status.code(), Some(2), "{var}: {}", err(&o));
        assert!(
            err(&o).contains(&format!("${var}: not valid UTF-8")),
            "{var}: {}",
            err(&o)
        );
    }
}

#[test]
fn help_mentions_ctl() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out(&o).contains("sheepdog ctl"), "{}", out(&o));
    let o = ctl(&["--help"], &[]);
    assert!(o.status.success());
    for verb in [
        "status",
        "start",
        "stop",
        "restart",
        "scale",
        "signal",
        "shutdown",
        "--json",
        "--socket",
        "--url",
        "--token",
        "SHEEPDOG_API_TOKEN",
    ] {
        assert!(out(&o).contains(verb), "{verb}: {}", out(&o));
    }
}

/// Help takes nothing after it, like `version`: `sheepdog help extra` or
/// `sheepdog --help --bogus` is a usage error (exit 2) naming the extra
/// argument, with no help printed; they printed the help and exited 0.
#[test]
fn nothing_may_follow_help() {
    for (args, named) in [
        (
            &["help", "extra"][..],
            "unexpected argument 'extra' after 'help'",
        ),
        (&["--help", "--bogus"], "invalid option '--bogus'"),
        (
            &["version", "extra"],
            "unexpected argument 'extra' after 'version'",
        ),
        (&["ctl", "help", "extra"], "unexpected argument 'extra'"),
        (&["ctl", "--help", "--bogus"], "invalid option '--bogus'"),
    ] {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(named), "{args:?}: {}", err(&o));
        assert_eq!(out(&o), "", "{args:?}");
    }
}

#[test]
fn logs_tail_and_follow() {
    let sockdir = TempDir::new("ctl-logs-sock");
    let (sd, port) = serve("ctl-logs", &sockdir);
    assert!(sd.wait_log_n(": started (pid", 2, WAIT), "{}", sd.log());
    let base = ["--url", &url(port), "--token", TOKEN];

    let o = ctl(&[&base[..], &["logs", "--tail", "3"]].concat(), &[]);
    assert!(o.status.success(), "{}", err(&o));
    let lines: Vec<String> = out(&o).lines().map(str::to_string).collect();
    assert!(!lines.is_empty() && lines.len() <= 3, "{lines:?}");
    // sheepdog's own records about an instance are tagged `sheepdog`, as on
    // its stdout, not with the instance a child's lines carry.
    let o = ctl(&[&base[..], &["logs", "sheepdog"]].concat(), &[]);
    let text = out(&o);
    assert!(text.contains(" sheepdog | web-1: started (pid"), "{text}");
    assert!(!text.contains("web-1 | web-1: started"), "{text}");
    let o = ctl(&[&base[..], &["--json", "logs", "sheepdog"]].concat(), &[]);
    assert!(o.status.success(), "{}", err(&o));
    let first: Value = serde_json::from_str(out(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["process"], "sheepdog");

    // --follow receives a record made after it connected, over TCP
    // (chunked, HTTP/1.1) and over the unix socket (HTTP/1.0, until close).
    let sock = sockdir.path("api.sock");
    let targets: [Vec<String>; 2] = [
        vec!["--url".into(), url(port)],
        vec!["--socket".into(), sock.to_str().unwrap().into()],
    ];
    for (n, target) in targets.iter().enumerate() {
        let file = sockdir.path(&format!("follow-{n}.out"));
        let mut follower = Command::new(BIN)
            .arg("ctl")
            .args(target)
            .args(["--token", TOKEN, "logs", "--follow", "--tail", "1"])
            .stdout(std::fs::File::create(&file).unwrap())
            .spawn()
            .unwrap();
        let read = || std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            wait_until(WAIT, || !read().is_empty()),
            "the tail comes first"
        );
        let before = read().matches("sent SIGHUP").count();
        let o = ctl(&[&base[..], &["signal", "web", "HUP"]].concat(), &[]);
        assert!(o.status.success(), "{}", err(&o));
        let followed = wait_until(WAIT, || read().matches("sent SIGHUP").count() > before);
        let _ = follower.kill();
        let _ = follower.wait();
        assert!(followed, "{target:?} follow output:\n{}", read());
    }

    for bad in [
        &["logs", "--tail", "0"][..],
        &["status", "--follow"][..],
        &["logs", "a", "b"][..],
    ] {
        let o = ctl(&[&base[..], bad].concat(), &[]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", err(&o));
    }
}

/// Regression for the browser checks of a token-less API (docs/api.md,
/// "Requests from browsers"): ctl sends `Host: <the URL's host:port>` over
/// TCP, `Host: localhost` over the socket, and no Origin, so it is served
/// on every transport, reads and verbs alike.
#[test]
fn ctl_works_with_an_api_without_a_token() {
    let sockdir = TempDir::new("ctl-open-sock");
    let sock = sockdir.path("api.sock");
    let (sd, port, _) = start_serving("ctl-open", |p, m| {
        format!(
            "global:\n  shutdown_timeout: 10\n  api_port: {p}\n  metrics_port: {m}\n  api_socket: {}\n\
             processes:\n  web:\n    command: \"exec sleep 1000\"\n  idle:\n    command: \"exec sleep 1000\"\n    initial_state: stopped\n",
            sock.display()
        )
    });
    let by_localhost = format!("http://localhost:{port}");
    let targets = [
        vec!["--url".to_string(), url(port)],
        vec!["--url".to_string(), by_localhost],
        vec!["--socket".to_string(), sock.to_str().unwrap().to_string()],
    ];
    for target in &targets {
        let t: Vec<&str> = target.iter().map(String::as_str).collect();
        for verb in [&["status"][..], &["start", "idle"], &["stop", "idle"]] {
            let mut args = t.clone();
            args.extend_from_slice(verb);
            let o = ctl(&args, &[]);
            assert!(
                o.status.success(),
                "ctl {args:?}: {}{}\n{}",
                out(&o),
                err(&o),
                sd.log()
            );
        }
        // A stop is accepted before it is done: the next start would get
        // 409 "idle is stopping" if it came first.
        let stopped = wait_until(WAIT, || {
            let mut args = t.clone();
            args.extend_from_slice(&["--json", "status", "idle"]);
            out(&ctl(&args, &[])).contains("\"state\": \"stopped\"")
        });
        assert!(stopped, "idle never stopped\n{}", sd.log());
    }
}

/// A stand-in for the API on a loopback port: answers its connections in
/// turn with `answers` (raw HTTP, then closed; `true`: a stream, held open
/// until ctl closes it) and sends each request line on the channel.
fn fake_api(answers: Vec<(String, bool)>) -> (String, mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (answer, hold) in answers {
            let Ok((mut s, _)) = l.accept() else { return };
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head);
            // A POST's body too: closing with it unread would reset the
            // connection before ctl reads the answer.
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            let _ = s.read_exact(&mut vec![0; length]);
            let _ = tx.send(head.lines().next().unwrap_or("").to_string());
            let _ = s.write_all(answer.as_bytes());
            if hold {
                // Until ctl exits (EOF), or WAIT.
                let _ = s.read(&mut b);
            }
        }
    });
    (url, rx)
}

fn ok_json(body: &str) -> String {
    format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
}

/// `sheepdog ARGS | head -N`: the reader of stdout leaves, after the first
/// line (`first_line`; the rest must not fit in the pipe) or before
/// anything was written. The exit code and
/// stderr, within `within` (else the process is killed and the test fails).
fn reader_leaves(args: &[&str], first_line: bool, within: Duration) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SHEEPDOG_API_TOKEN")
        .env_remove("SHEEPDOG_API_SOCKET")
        .env_remove("SHEEPDOG_API_URL")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    if first_line {
        cmd.stdout(Stdio::piped());
    } else {
        // Gone before the process starts, whenever it writes (closing it
        // after the spawn raced with a quick writer under load).
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        drop(r);
        cmd.stdout(Stdio::from(w));
    }
    let mut child = cmd.spawn().unwrap();
    if first_line {
        let mut line = String::new();
        let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{args:?}: no first line");
    }
    let mut status = None;
    if !wait_until(within, || {
        status = child.try_wait().unwrap();
        status.is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{args:?} still running {within:?} after its reader left");
    }
    let mut e = String::new();
    child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    (status.and_then(|s| s.code()), e)
}

/// `ctl --json status | head -c 10`, `ctl logs | head -1`, `ctl logs
/// --follow | grep -m1 x`, `check | head -1`: a reader that leaves ends
/// sheepdog quietly with 141 (128 + SIGPIPE, as cat or jq would), not a
/// "failed printing to stdout" panic and SIGABRT (134).
#[test]
fn a_reader_that_leaves_ends_the_output_quietly_with_141() {
    let quietly = |args: &[&str], (code, e): (Option<i32>, String)| {
        assert_eq!(code, Some(141), "{args:?}: {e}");
        assert!(e.is_empty(), "{args:?}: {e}");
    };
    let (u, _rx) = fake_api(vec![(ok_json(r#"{"processes":[]}"#), false)]);
    let args = ["ctl", "--url", &u, "--json", "status"];
    quietly(&args, reader_leaves(&args, false, WAIT));

    // A tail larger than the pipe: ctl is still writing when head leaves.
    let rec = r#"{"ts":"2026-05-01T12:00:00Z","level":"info","process":"web","msg":"a line of the application's log"}"#;
    let tail = ok_json(&format!(
        r#"{{"records":[{}],"next_since":10000}}"#,
        vec![rec; 10_000].join(",")
    ));
    let (u, _rx) = fake_api(vec![(tail, false)]);
    let args = ["ctl", "--url", &u, "logs", "--tail", "10000"];
    quietly(&args, reader_leaves(&args, true, WAIT));

    // The stream stays quiet after the tail: ctl notices the reader left
    // at once, not at the next record or after 30 s of silence.
    let tail = ok_json(&format!(r#"{{"records":[{rec}],"next_since":1}}"#));
    let stream = "HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n".to_string();
    let (u, _rx) = fake_api(vec![(tail, false), (stream, true)]);
    let args = ["ctl", "--url", &u, "logs", "--follow"];
    quietly(&args, reader_leaves(&args, true, Duration::from_secs(10)));

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/laravel.yaml");
    for args in [
        &["check", "-c", example][..],
        &["check", "--json", "-c", example],
        &["--help"],
        &["version"],
        &["ctl", "--help"],
    ] {
        quietly(args, reader_leaves(args, false, WAIT));
    }
}

/// `--url` takes what `$SHEEPDOG_API_URL` takes, a /PREFIX included (an
/// API behind a proxy's path), and both send the same request.
#[test]
fn url_flag_and_variable_take_the_same_prefix() {
    let not_found =
        "HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"error\":\"no route\"}";
    let (u, rx) = fake_api(vec![(not_found.into(), false), (not_found.into(), false)]);
    let prefixed = format!("{u}/sheepdog/");
    for o in [
        ctl(&["--url", &prefixed, "status"], &[]),
        ctl(&["status"], &[("SHEEPDOG_API_URL", &prefixed)]),
    ] {
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(err(&o).contains("no route (HTTP 404)"), "{}", err(&o));
        assert_eq!(
            rx.recv_timeout(WAIT).as_deref(),
            Ok("GET /sheepdog/api/v1/processes HTTP/1.0")
        );
    }

    // Given twice, --url is named, as --token is.
    let o = ctl(&["--url", &u, "--url", &prefixed, "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--url given twice"), "{}", err(&o));
}

/// `trigger --wait` exits 0 only for a run that succeeded: when the API's
/// wait ran out (202, the run still going), its result is not known, so
/// ctl says so on stderr and exits 1, with `--json` too. (It used to print
/// the message and exit 0, so `ctl trigger migrate --wait && deploy`
/// deployed.)
#[test]
fn trigger_wait_fails_when_the_apis_wait_ran_out() {
    let still = "HTTP/1.0 202 Accepted\r\nContent-Type: application/json\r\n\r\n{\"status\":\"accepted\",\"process\":\"tj\",\"message\":\"the run is still going after 71s; see its history\"}";
    let failed =
        ok_json(r#"{"status":"done","result":"failure","exit_code":3,"run":{"run_id":2}}"#);
    let (u, rx) = fake_api(vec![
        (still.into(), false),
        (still.into(), false),
        (failed, false),
    ]);
    let o = ctl(&["--url", &u, "trigger", "tj", "--wait"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("sheepdog ctl: the run is still going after 71s"),
        "{}",
        err(&o)
    );
    assert_eq!(
        rx.recv_timeout(WAIT).as_deref(),
        Ok("POST /api/v1/schedules/tj/trigger?wait=true HTTP/1.0")
    );
    for answer in ["\"accepted\"", "\"failure\""] {
        let o = ctl(&["--url", &u, "--json", "trigger", "tj", "--wait"], &[]);
        assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
        assert!(out(&o).contains(answer), "{}", out(&o));
    }
}

/// An error answer without a body (a redirect ctl does not follow, a
/// proxy's bare 502) is reported by its status line, not as an empty
/// message.
#[test]
fn an_error_without_a_body_shows_its_status_line() {
    let (u, _rx) = fake_api(vec![(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n".into(),
        false,
    )]);
    let o = ctl(&["--url", &u, "stop", "web"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o),
        "sheepdog ctl: HTTP/1.1 302 Found (HTTP 302)\n",
        "{}",
        err(&o)
    );
}

/// `logs --reopen` takes no name and no other logs flag, as its message
/// says: a usage error before anything is sent. (`-f`, `--stream` and
/// `--tail` used to be accepted and ignored.)
#[test]
fn logs_reopen_refuses_other_logs_flags() {
    for flags in [
        &["-f"][..],
        &["--follow"],
        &["--stream", "stderr"],
        &["--tail", "5"],
    ] {
        let mut args = vec!["--url", "http://127.0.0.1:1", "logs", "--reopen"];
        args.extend_from_slice(flags);
        let o = ctl(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", err(&o));
        assert!(
            err(&o).contains("'ctl logs --reopen' takes no name or other flags"),
            "{flags:?}: {}",
            err(&o)
        );
    }
}

/// Regression (security review finding 7): a child's control characters
/// reach `ctl logs` escaped, in the tail and in `--follow`: its `\r` cannot
/// write over the line's prefix to forge a record, nor ESC, OSC, BEL or a
/// C1 control drive the operator's terminal.
#[test]
fn logs_escape_a_childs_control_characters() {
    let sd = Sheepdog::start(
        "ctl-escape",
        r#"global:
  api_port: 0
  metrics_enabled: false
  api_socket: $DIR/api.sock
processes:
  evil:
    command: |
      say() { printf 'x\r2026 ERROR sheepdog | FORGED\033]0;t\007\033[2J\302\233!\n'; }
      trap say HUP
      say
      while :; do sleep 0.05; done
"#,
    );
    sd.wait_log("FORGED");
    let sock = sd.dir.path("api.sock");
    let target = ["--socket", sock.to_str().unwrap()];
    let shown = "evil-1 | x\\r2026 ERROR sheepdog | FORGED\\u{1b}]0;t\\u{7}\\u{1b}[2J\\u{9b}!";
    let clean = |s: &str| !s.chars().any(|c| c.is_control() && c != '\n');
    let o = ctl(&[&target[..], &["logs", "evil"]].concat(), &[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(shown) && clean(&out(&o)), "{:?}", out(&o));

    let file = sd.dir.path("follow.out");
    let mut follower = Command::new(BIN)
        .arg("ctl")
        .args(target)
        .args(["logs", "--follow", "--tail", "1", "evil"])
        .stdout(std::fs::File::create(&file).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        wait_until(WAIT, || read().contains(shown)),
        "the tail comes first"
    );
    let o = ctl(&[&target[..], &["signal", "evil", "HUP"]].concat(), &[]);
    assert!(o.status.success(), "{}", err(&o));
    let followed = wait_until(WAIT, || read().matches(shown).count() == 2);
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(followed && clean(&read()), "{:?}", read());
}

#[test]
fn status_says_a_start_waits_for_post_stop_hooks() {
    let (mut sd, port, _) = start_serving("ctl-starting", |p, _| {
        format!(
            "global:\n  shutdown_timeout: 10\n  api_port: {p}\n  metrics_enabled: false\nprocesses:\n  app:\n    \
             command: [sleep, \"1000\"]\n    hooks:\n      post_stop:\n        - {{ name: clean, command: \"touch $DIR/cleaning; \
             while [ ! -e $DIR/go ]; do sleep 0.05; done\", timeout: 1m }}\n"
        )
    });
    let u = url(port);
    let ctl_ok = |args: &[&str]| {
        let mut all = vec!["--url", u.as_str()];
        all.extend_from_slice(args);
        let o = ctl(&all, &[]);
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        out(&o)
    };
    ctl_ok(&["stop", "app"]);
    assert!(
        wait_until(WAIT, || sd.dir.path("cleaning").exists()),
        "{}",
        sd.log()
    );
    ctl_ok(&["start", "app"]);
    let text = ctl_ok(&["status"]);
    assert!(
        text.ends_with("\napp: starting\n"),
        "the table should say the start is on its way:\n{text}"
    );
    sd.dir.write("go", "");
    assert!(
        wait_until(WAIT, || ctl_ok(&["status", "app"]).contains("running")),
        "{}",
        sd.log()
    );
    let text = ctl_ok(&["status", "app"]);
    assert!(
        !text.contains("app: "),
        "nothing under way any more:\n{text}"
    );
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A failed process shows as such, and a down instance says why (its
/// error, else how its child ended): the rows alone show `exited` or
/// `backoff` and nothing of the exit.
#[test]
fn status_says_why_instances_are_down() {
    let (mut sd, port, _) = start_serving("ctl-down", |p, _| {
        format!(
            "global:\n  shutdown_timeout: 10\n  api_port: {p}\n  metrics_enabled: false\nprocesses:\n  \
             keep:\n    command: [sleep, \"1000\"]\n  \
             once:\n    command: \"exit 5\"\n    restart: never\n  \
             gave:\n    command: \"kill -9 $$\"\n    restart: on-failure\n    max_restart_attempts: 1\n"
        )
    });
    let u = url(port);
    let status = || {
        let o = ctl(&["--url", &u, "status"], &[]);
        assert!(o.status.success(), "{}", err(&o));
        out(&o)
    };
    let done = wait_until(WAIT, || status().matches(": failed\n").count() == 2);
    let text = status();
    assert!(done, "{text}\n{}", sd.log());
    let notes: Vec<&str> = text.split("\n\n").nth(1).unwrap_or("").lines().collect();
    assert_eq!(
        notes,
        [
            "gave: failed",
            "gave-1: killed by SIGKILL; gave up after 1 restart attempt",
            "once: failed",
            "once-1: exited 5",
        ],
        "{text}"
    );
    sd.signal(libc::SIGTERM);
    sd.exit_code(WAIT);
}

/// A `$SHEEPDOG_API_TOKEN` of only whitespace (a secret file holding
/// just its newline), or with a leading space: sheepdog refuses it as
/// `api_auth: ${SHEEPDOG_API_TOKEN}`, and so does ctl, in the same words
/// and with the same exit code. ctl used to trim it to nothing and ask
/// without a token (401 "missing bearer token", exit 1, with the variable
/// set), or send the stray space.
#[test]
fn a_token_sheepdog_refuses_ctl_refuses_too() {
    let dir = TempDir::new("ctl-blank-token");
    let cfg = dir.write(
        "sheepdog.yaml",
        "global:\n  api_port: 1\n  metrics_enabled: false\n  api_auth: ${SHEEPDOG_API_TOKEN}\n\
         processes:\n  web:\n    command: [sleep, \"1000\"]\n",
    );
    for (token, words) in [
        ("   \n", "the token is only whitespace; expected a token"),
        ("\t", "the token is only whitespace; expected a token"),
        (" ctl-token", "the token has leading or trailing whitespace"),
        ("ctl\u{7}token", "the token contains a control character"),
    ] {
        let mut check = Command::new(BIN);
        check.args(["check", "-c"]).arg(&cfg);
        check.env("SHEEPDOG_API_TOKEN", token);
        let o = output_within(check, WAIT);
        assert_eq!(o.status.code(), Some(2), "check {token:?}: {}", err(&o));
        assert!(
            err(&o).contains(&format!("global.api_auth: {words}")),
            "check {token:?}: {}",
            err(&o)
        );
        // Refused before any connection: nothing listens on port 1.
        let env_given = ctl(
            &["--url", "http://127.0.0.1:1", "status"],
            &[("SHEEPDOG_API_TOKEN", token)],
        );
        let flag_given = ctl(
            &["--url", "http://127.0.0.1:1", "--token", token, "status"],
            &[],
        );
        for (o, from) in [(env_given, "$SHEEPDOG_API_TOKEN"), (flag_given, "--token")] {
            assert_eq!(o.status.code(), Some(2), "ctl {token:?}: {}", err(&o));
            assert!(
                err(&o).starts_with(&format!("sheepdog ctl: {from}: {words}")),
                "ctl {token:?}: {}",
                err(&o)
            );
            assert!(!err(&o).contains("ctl-token"), "{}", err(&o));
        }
    }
    // Empty is no token, for both (sheepdog: `api_auth: ""`).
    let o = ctl(
        &["--url", "http://127.0.0.1:1", "status"],
        &[("SHEEPDOG_API_TOKEN", "")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}
