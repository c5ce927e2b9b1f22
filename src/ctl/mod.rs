//! `sheepdog ctl`: status and control of a running sheepdog through its
//! management API. One request per invocation; a table or a message for
//! people, the API's JSON with `--json`.
//!
//! Invariants:
//! - Exit code 0 only for a 2xx answer; any API error or transport failure
//!   prints the message (the API's `error` when there is one) to stderr and
//!   exits 1; usage errors exit 2 (from `cli`, or a token that cannot be
//!   sent in a header).
//! - The token is taken from `--token`, else `$SHEEPDOG_API_TOKEN`
//!   (trailing whitespace trimmed, as sheepdog trims `api_auth_file`), and
//!   is never printed.

mod client;

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::cli::{exit, Action, Ctl, LogsQuery, ScaleBy, Target, CTL_HELP};
use crate::group::Whom;
use crate::logging::escaped;
use crate::status::TRIGGER_WAIT_CAP;

/// Where a local sheepdog puts its socket by convention.
const DEFAULT_SOCKET: &str = "/run/sheepdog.sock";
const DEFAULT_URL: &str = "http://127.0.0.1:9180";

pub fn run(ctl: Ctl) -> i32 {
    if ctl.action == Action::Help {
        out!("{CTL_HELP}");
        return exit::OK;
    }
    // Read as sheepdog reads `api_auth_file` (trimmed, checked).
    let from_file = match ctl
        .token_file
        .as_deref()
        .map(|p| crate::api::auth::read_file(p, "--token-file"))
    {
        Some(Err(e)) => {
            outln!(err: "sheepdog ctl: {}", escaped(&e));
            return exit::USAGE;
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let token = match ctl
        .token
        .clone()
        .or(from_file)
        .map_or_else(|| env("SHEEPDOG_API_TOKEN"), |t| Ok(Some(t)))
    {
        // Trailing whitespace goes, as sheepdog trims its `api_auth_file`:
        // the same secret given as a variable (a Kubernetes secret made
        // from a file) ends with its newline. Empty is no token, as
        // `api_auth: ""` is; only whitespace is none of the two.
        Ok(t) => t.filter(|t| !t.is_empty()).map(|t| match t.trim_end() {
            "" => t,
            kept => kept.to_string(),
        }),
        Err(e) => {
            outln!(err: "sheepdog ctl: {e}");
            return exit::USAGE;
        }
    };
    // What sheepdog refuses as `api_auth` (only whitespace, a leading
    // space, a control character), ctl refuses to send, in its words.
    if let Some(e) = token
        .as_deref()
        .and_then(|t| crate::config::check_token(t).err())
    {
        let from = match ctl.token {
            Some(_) => "--token",
            None => "$SHEEPDOG_API_TOKEN",
        };
        outln!(err: "sheepdog ctl: {from}: {e}");
        return exit::USAGE;
    }
    let target = match ctl.target.clone().map_or_else(default_target, Ok) {
        Ok(t) => t,
        Err(e) => {
            outln!(err: "sheepdog ctl: {}", escaped(&e.to_string()));
            return exit::USAGE;
        }
    };
    if let Action::Logs(q) = &ctl.action {
        return logs(&target, token.as_deref(), q, ctl.json);
    }
    let (method, path, body) = request(&ctl.action);
    let timeout = read_timeout(&ctl.action);
    let value = match ask(
        &target,
        method,
        &path,
        body.as_deref(),
        token.as_deref(),
        timeout,
    ) {
        Ok(v) => v,
        Err(e) if ctl.action == Action::Reload => {
            // An invalid file is reported as `sheepdog check` reports it:
            // one problem a line.
            outln!(err: "sheepdog ctl: {}", escaped_lines(&e));
            return exit::FAILURE;
        }
        Err(e) => {
            // Past the API's own wait: name the bound that ran out.
            let e = match (timeout, &ctl.action) {
                (Some(t), Action::Trigger(..)) if e.starts_with("no answer") => format!(
                    "{e} (trigger --wait: {} at most)",
                    crate::config::format_duration(t - client::TIMEOUT)
                ),
                _ => e,
            };
            outln!(err: "sheepdog ctl: {}", escaped(&e));
            return exit::FAILURE;
        }
    };
    // `trigger --wait`: 0 only for a run that succeeded. An answer without
    // a result (202) says the API's wait ran out: the run goes on, and how
    // it ends is not known.
    let result = value.get("result").and_then(Value::as_str);
    let code = match (&ctl.action, result) {
        (Action::Trigger(_, true, _), r) if r != Some("success") => exit::FAILURE,
        _ => exit::OK,
    };
    if ctl.json {
        // Pretty, as `check --json` prints (`{:#}` is to_string_pretty's
        // text, through the one pretty printer in the binary).
        outln!("{value:#}");
        return code;
    }
    match &ctl.action {
        Action::Status(None) => {
            let procs = value
                .get("processes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out!("{}", table(&procs));
            if value.get("ready") == Some(&Value::Bool(false)) {
                let why: Vec<&str> = value
                    .get("not_ready")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                outln!("\nnot ready: {}", escaped(&why.join("; ")));
            }
        }
        Action::Status(Some(_)) => out!("{}", table(std::slice::from_ref(&value))),
        Action::Schedules(None) => {
            let jobs = value
                .get("schedules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out!("{}", schedules_table(&jobs));
        }
        Action::Schedules(Some(_)) => out!("{}", history_table(&value)),
        Action::Trigger(_, true, _) => {
            let Some(result) = result else {
                let msg = value.get("message").and_then(Value::as_str).unwrap_or("-");
                outln!(err: "sheepdog ctl: {}", escaped(msg));
                return code;
            };
            // (`get`, not `pointer`: the only use of that links its parser.)
            let record = value.get("run");
            let run = record
                .and_then(|r| r.get("run_id"))
                .map_or("-".into(), Value::to_string);
            let how = match (value.get("exit_code"), value.get("signal")) {
                (Some(Value::Number(c)), _) => format!("exit {c}"),
                (_, Some(Value::Number(s))) => format!("signal {s}"),
                _ => "no exit status".into(),
            };
            // Why a run failed without an exit (its pre_start hook), or timed out.
            let (sep, why) = match record.and_then(|r| r.get("error")).and_then(Value::as_str) {
                Some(e) => (": ", escaped(e)),
                None => ("", "".into()),
            };
            outln!("run {run}: {} ({how}){sep}{why}", escaped(result));
        }
        _ => {
            let msg = value.get("message").and_then(Value::as_str).unwrap_or("ok");
            outln!("{}", escaped(msg));
        }
    }
    code
}

/// The logs path for `q`: the last `tail` records, or (`follow_since`)
/// the stream of everything after that seq, then live.
fn logs_path(q: &LogsQuery, follow_since: Option<u64>) -> String {
    let base = match &q.name {
        Some(n) => format!("/api/v1/processes/{}/logs", segment(n)),
        None => "/api/v1/logs".to_string(),
    };
    let mut query = match follow_since {
        Some(s) => format!("follow=true&limit=10000&since={s}"),
        None => format!("limit={}", q.tail),
    };
    if let Some(s) = &q.stream {
        query.push_str(&format!("&stream={s}"));
    }
    format!("{base}?{query}")
}

/// How long the answer may take; None: the usual. `trigger --wait`: past
/// the API's own wait (DURATION, else the job's bound up to the cap),
/// which answers first.
fn read_timeout(action: &Action) -> Option<std::time::Duration> {
    match action {
        Action::Trigger(_, true, bound) => {
            Some(bound.unwrap_or(TRIGGER_WAIT_CAP) + client::TIMEOUT)
        }
        _ => None,
    }
}

/// One API call: the JSON answer of a 2xx, or the message to print (the
/// API's `error`, with the status).
fn ask(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    timeout: Option<std::time::Duration>,
) -> Result<Value, String> {
    let reply = client::call(target, method, path, body, token, timeout)?;
    if !(200..300).contains(&reply.status) {
        return Err(client::error_of(&reply.body, reply.status));
    }
    // from_slice: one JSON reader in the binary (see pipeline::parse_object).
    serde_json::from_slice(reply.body.as_bytes())
        .ok()
        .ok_or_else(|| {
            format!(
                "the API answered HTTP {} with something that is not JSON",
                reply.status
            )
        })
}

/// `ctl logs`: the last `tail` records, then (with --follow) every new one
/// from the streaming endpoint, until the API goes away.
fn logs(target: &Target, token: Option<&str>, q: &LogsQuery, json: bool) -> i32 {
    let print = |rec: &Value| {
        if json {
            outln!("{rec}");
        } else {
            outln!("{}", log_line(rec));
        }
    };
    let value = match ask(target, "GET", &logs_path(q, None), None, token, None) {
        Ok(v) => v,
        Err(e) => {
            outln!(err: "sheepdog ctl: {}", escaped(&e.to_string()));
            return exit::FAILURE;
        }
    };
    for rec in value
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        print(rec);
    }
    if !q.follow {
        return exit::OK;
    }
    let since = value.get("next_since").and_then(Value::as_u64).unwrap_or(0);
    // No thread to spare (a full pids cgroup, where a fork bomb is being
    // looked into): follow anyway, and notice a gone reader at the next
    // record's write. (`thread::spawn` would panic.)
    let _ = std::thread::Builder::new().spawn(watch_stdout);
    let mut on_line = |l: &str| {
        // Keep-alives are empty lines; `{"dropped":N}` says records were lost.
        if l.trim().is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(l.as_bytes()) {
            Ok(v) if v.get("dropped").is_some() => outln!(err:
                "sheepdog ctl: {} records dropped (reading too slowly)",
                v["dropped"]
            ),
            Ok(v) => print(&v),
            Err(_) => outln!("{}", escaped(l)),
        }
    };
    match client::follow(target, &logs_path(q, Some(since)), token, &mut on_line) {
        Ok(()) => exit::OK,
        Err(e) => {
            outln!(err: "sheepdog ctl: {}", escaped(&e.to_string()));
            exit::FAILURE
        }
    }
}

/// End the process (as a failed write would, `exit::PIPE`) once stdout's
/// reader is gone: `ctl logs --follow | grep -m1 x` stops when grep does,
/// not at the next record, which may be hours away. A pipe without a reader
/// polls as POLLERR, a closed socket or terminal as POLLHUP; a file never
/// does, and the thread sleeps until the process ends.
fn watch_stdout() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => {}
            Ok(_)
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)) =>
            {
                std::process::exit(exit::PIPE)
            }
            _ => return,
        }
    }
}

/// A record as a text log line: `ts LEVEL instance | msg`, or `sheepdog`
/// for its own records (about an instance too, as on its stdout), its
/// control characters escaped as in errors: a child's `\r`, ESC or OSC must
/// not rewrite the operator's terminal or forge a line (`--json` escapes
/// them).
fn log_line(rec: &Value) -> String {
    let s = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("");
    let who = if s("instance").is_empty() || s("process") == "sheepdog" {
        s("process")
    } else {
        s("instance")
    };
    let line = format!(
        "{} {:<5} {who} | {}",
        s("ts"),
        s("level").to_ascii_uppercase(),
        s("msg")
    );
    escaped(&line).into_owned()
}

/// `$SHEEPDOG_API_SOCKET`, `$SHEEPDOG_API_URL`, the conventional socket
/// if it exists, else loopback TCP. A URL that cannot be used is an error
/// naming the variable.
fn default_target() -> Result<Target, String> {
    if let Some(s) = std::env::var_os("SHEEPDOG_API_SOCKET").filter(|v| !v.is_empty()) {
        return Ok(Target::Socket(PathBuf::from(s)));
    }
    if let Some(u) = env("SHEEPDOG_API_URL")? {
        return crate::cli::api_url("$SHEEPDOG_API_URL", &u);
    }
    if std::path::Path::new(DEFAULT_SOCKET).exists() {
        return Ok(Target::Socket(PathBuf::from(DEFAULT_SOCKET)));
    }
    Ok(Target::Url(DEFAULT_URL.to_string()))
}

/// `$k` if set and not empty. Not UTF-8 is an error naming it: ignored,
/// the request went to the default address, or without the token.
fn env(k: &str) -> Result<Option<String>, String> {
    match std::env::var(k) {
        Ok(v) => Ok(Some(v).filter(|v| !v.is_empty())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("${k}: not valid UTF-8")),
    }
}

/// `msg` with each line escaped as `escaped` does, the line breaks kept:
/// a reload's list of problems, one a line.
fn escaped_lines(msg: &str) -> String {
    msg.lines().map(escaped).collect::<Vec<_>>().join("\n")
}

/// Percent-encode a process name for a path segment.
fn segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Method, path and JSON body for an action.
fn request(action: &Action) -> (&'static str, String, Option<String>) {
    let p = |name: &str, verb: &str| format!("/api/v1/processes/{}/{verb}", segment(name));
    match action {
        Action::Status(None) | Action::Help => ("GET", "/api/v1/processes".into(), None),
        Action::Status(Some(n)) => ("GET", format!("/api/v1/processes/{}", segment(n)), None),
        Action::Start(n) => ("POST", p(n, "start"), None),
        Action::Stop(n) => ("POST", p(n, "stop"), None),
        Action::Restart(n) => ("POST", p(n, "restart"), None),
        Action::Scale(n, by) => {
            let body = match by {
                ScaleBy::To(d) => json!({ "desired": d }),
                ScaleBy::Delta(d) => json!({ "delta": d }),
            };
            ("POST", p(n, "scale"), Some(body.to_string()))
        }
        Action::Signal(n, s, whom) => {
            let sig = match s.parse::<i64>() {
                Ok(num) => json!(num),
                Err(_) => json!(s),
            };
            let body = match whom {
                Whom::Group => json!({ "signal": sig }),
                Whom::Main => json!({ "signal": sig, "to": "main" }),
            };
            ("POST", p(n, "signal"), Some(body.to_string()))
        }
        Action::Shutdown => ("POST", "/api/v1/shutdown".into(), None),
        Action::Reload => ("POST", "/api/v1/config/reload".into(), None),
        Action::ReopenLogs => ("POST", "/api/v1/logs/reopen".into(), None),
        Action::Logs(q) => ("GET", logs_path(q, None), None),
        Action::Schedules(None) => ("GET", "/api/v1/schedules".into(), None),
        Action::Schedules(Some(n)) => ("GET", format!("/api/v1/schedules/{}", segment(n)), None),
        Action::Trigger(n, wait, bound) => (
            "POST",
            format!(
                "/api/v1/schedules/{}/trigger{}{}",
                segment(n),
                if *wait { "?wait=true" } else { "" },
                bound.map_or(String::new(), |d| format!("&timeout={}ms", d.as_millis()))
            ),
            None,
        ),
        Action::Pause(n) => (
            "POST",
            format!("/api/v1/schedules/{}/pause", segment(n)),
            None,
        ),
        Action::Resume(n) => (
            "POST",
            format!("/api/v1/schedules/{}/resume", segment(n)),
            None,
        ),
    }
}

/// Unix seconds as a UTC time of day with date (`2024-05-01 12:00:00Z`).
fn when(v: Option<&Value>) -> String {
    let Some(secs) = v.and_then(Value::as_f64) else {
        return "-".into();
    };
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    // Whole seconds; a float→int cast saturates.
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::logging::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a server sends is shown with its control characters escaped: a
/// name or message must not move the cursor, retitle or clear the
/// operator's terminal, or break a table row. (`ctl logs` prints a child's
/// lines as they are, as `kubectl logs` does.)
fn cell(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => escaped(x).into_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".into(),
    }
}

/// Rows to aligned text (the last column is not padded).
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = *w));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ctl schedules`: one row per job.
fn schedules_table(jobs: &[Value]) -> String {
    let mut rows = vec![[
        "NAME", "SCHEDULE", "STATE", "NEXT RUN", "LAST RUN", "LAST", "RUNS", "FAILED", "SKIPPED",
    ]
    .map(String::from)
    .to_vec()];
    for j in jobs {
        let stats = j.get("stats").cloned().unwrap_or(Value::Null);
        let failed = stats.get("failure").and_then(Value::as_u64).unwrap_or(0)
            + stats.get("timeout").and_then(Value::as_u64).unwrap_or(0);
        rows.push(vec![
            cell(j, "process"),
            cell(j, "expression"),
            cell(j, "state"),
            when(j.get("next_run")),
            when(j.get("last_run")),
            cell(j, "last_result"),
            cell(&stats, "total"),
            failed.to_string(),
            cell(&stats, "skipped"),
        ]);
    }
    align(&rows)
}

/// `ctl schedules NAME`: the job's runs, oldest first.
fn history_table(job: &Value) -> String {
    let mut out = format!(
        "{} {} ({}), {}; next run {}\n\n",
        cell(job, "process"),
        cell(job, "expression"),
        cell(job, "timezone"),
        cell(job, "state"),
        when(job.get("next_run"))
    );
    let mut rows = vec![["RUN", "TRIGGER", "STARTED", "DURATION", "RESULT", "EXIT"]
        .map(String::from)
        .to_vec()];
    for r in job
        .get("history")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let exit = match (r.get("exit_code"), r.get("signal")) {
            (Some(Value::Number(c)), _) => c.to_string(),
            (_, Some(Value::Number(s))) => format!("signal {s}"),
            _ => "-".into(),
        };
        rows.push(vec![
            cell(r, "run_id"),
            cell(r, "trigger"),
            when(r.get("started_at")),
            r.get("duration_seconds")
                .and_then(Value::as_f64)
                .map_or("-".into(), |d| format!("{d:.1}s")),
            cell(r, "result"),
            exit,
        ]);
    }
    out.push_str(&align(&rows));
    out
}

/// The aligned status table: one row per instance (one per process with
/// none).
fn table(procs: &[Value]) -> String {
    let s = |v: &Value, k: &str| -> String {
        match v.get(k) {
            Some(Value::String(x)) => escaped(x).into_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "-".into(),
        }
    };
    let mut rows: Vec<[String; 7]> = vec![[
        "NAME".into(),
        "INSTANCE".into(),
        "STATE".into(),
        "PID".into(),
        "UPTIME".into(),
        "RESTARTS".into(),
        "HEALTH".into(),
    ]];
    for p in procs {
        let name = s(p, "name");
        let insts = p
            .get("instances")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if insts.is_empty() {
            rows.push([
                name.clone(),
                "-".into(),
                s(p, "state"),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for i in &insts {
            let uptime = i
                .get("uptime_seconds")
                .and_then(Value::as_f64)
                .map_or_else(|| "-".into(), uptime);
            let mut state = s(i, "state");
            if i["paused"] == true {
                state.push_str(" (paused)");
            }
            rows.push([
                name.clone(),
                s(i, "id"),
                state,
                s(i, "pid"),
                uptime,
                s(i, "restart_count"),
                s(i, "health"),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&notes(procs));
    out
}

/// What a row cannot show, a line per process after the table: the
/// operation under way (`starting`, `restarting`, `replacing`,
/// `removing`) and why it is down though meant to run (`failed`, or its
/// `error`); then a line per instance that is down for a reason (in
/// backoff, failed, or of a failed process): its `error`, else how its
/// last child ended (`exited 3`, `killed by SIGKILL`).
fn notes(procs: &[Value]) -> String {
    let mut out = String::new();
    let mut line = |who: &Value, what: &str| {
        let who = who.as_str().unwrap_or("-");
        out.push_str(&format!("{}: {}\n", escaped(who), escaped(what)));
    };
    for p in procs {
        let failed = p["state"] == "failed";
        let said: Vec<&str> = [failed.then_some("failed")]
            .into_iter()
            .chain(["operation", "error"].map(|k| p[k].as_str()))
            .flatten()
            .collect();
        if !said.is_empty() {
            line(&p["name"], &said.join("; "));
        }
        for i in p["instances"].as_array().into_iter().flatten() {
            let down = failed || matches!(i["state"].as_str(), Some("backoff" | "failed"));
            let exit = &i["last_exit"];
            let how = match (exit["code"].as_i64(), exit["signal"].as_i64()) {
                (Some(c), _) => Some(crate::reaper::ExitStatus::Code(c as i32)),
                (_, Some(s)) => Some(crate::reaper::ExitStatus::Signal {
                    signal: s as i32,
                    core_dumped: false,
                }),
                _ => None,
            };
            match (i["error"].as_str(), how) {
                (Some(e), _) if down => line(&i["id"], e),
                (None, Some(how)) if down => line(&i["id"], &how.to_string()),
                _ => {}
            }
        }
    }
    if !out.is_empty() {
        out.insert(0, '\n');
    }
    out
}

/// `3d4h`, `2h5m`, `4m30s`, `12s`: the two largest units.
fn uptime(secs: f64) -> String {
    // Saturating float→int cast: negative or NaN become 0.
    let t = secs.max(0.0) as u64;
    let (d, h, m, s) = (t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_date() {
        let v = serde_json::json!(1_714_564_800.7);
        assert_eq!(when(Some(&v)), "2024-05-01 12:00:00Z");
        assert_eq!(when(Some(&serde_json::json!(0))), "1970-01-01 00:00:00Z");
        assert_eq!(when(Some(&serde_json::json!(-5))), "-");
        assert_eq!(when(None), "-");
    }

    /// `trigger --wait` gave up after 11 minutes, whatever the job's
    /// schedule_timeout (the API may wait longer): now past the API's own
    /// wait, up to the cap, or the bound given.
    #[test]
    fn trigger_wait_reads_past_the_apis_own_wait() {
        let t = |b| read_timeout(&Action::Trigger("j".into(), true, b));
        assert!(t(None) > Some(TRIGGER_WAIT_CAP));
        let m = std::time::Duration::from_secs(60);
        assert!(t(Some(m)) > Some(m) && t(Some(m)) < Some(m * 2));
        assert_eq!(
            read_timeout(&Action::Trigger("j".into(), false, None)),
            None
        );
        assert_eq!(
            request(&Action::Trigger("j".into(), true, Some(m))).1,
            "/api/v1/schedules/j/trigger?wait=true&timeout=60000ms"
        );
    }

    #[test]
    fn requests_for_actions() {
        assert_eq!(
            request(&Action::Scale("q w".into(), ScaleBy::Delta(-2))),
            (
                "POST",
                "/api/v1/processes/q%20w/scale".to_string(),
                Some(r#"{"delta":-2}"#.to_string())
            )
        );
        assert_eq!(
            request(&Action::Signal("web".into(), "10".into(), Whom::Group)).2,
            Some(r#"{"signal":10}"#.to_string())
        );
        assert_eq!(
            request(&Action::Signal("web".into(), "HUP".into(), Whom::Group)).2,
            Some(r#"{"signal":"HUP"}"#.to_string())
        );
        assert_eq!(
            request(&Action::Signal("web".into(), "USR2".into(), Whom::Main)).2,
            Some(r#"{"signal":"USR2","to":"main"}"#.to_string())
        );
        assert_eq!(request(&Action::Shutdown).1, "/api/v1/shutdown");
        assert_eq!(
            request(&Action::Reload),
            ("POST", "/api/v1/config/reload".to_string(), None)
        );
        assert_eq!(
            request(&Action::Status(Some("web".into()))).1,
            "/api/v1/processes/web"
        );
    }

    #[test]
    fn a_reload_error_keeps_its_lines_and_escapes_the_rest() {
        let e = "invalid configuration in /x.yaml:\n  - processes.a.restart: bad\u{1b}[2J\n  - b (HTTP 422)";
        assert_eq!(
            escaped_lines(e),
            "invalid configuration in /x.yaml:\n  - processes.a.restart: bad\\u{1b}[2J\n  - b (HTTP 422)"
        );
        // \r\n ends a line too; a lone \r is escaped.
        assert_eq!(escaped_lines("a\r\nb\rc"), "a\nb\\rc");
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(0.4), "0s");
        assert_eq!(uptime(75.0), "1m15s");
        assert_eq!(uptime(3.0 * 3600.0 + 61.0), "3h1m");
        assert_eq!(uptime(2.0 * 86_400.0 + 7200.0), "2d2h");
        assert_eq!(uptime(-5.0), "0s");
    }

    #[test]
    fn aligned_table() {
        let procs = vec![
            json!({"name": "web", "state": "running", "instances": [
                {"id": "web-1", "state": "running", "pid": 42, "uptime_seconds": 5.2, "restart_count": 0, "health": "unknown"},
                {"id": "web-2", "state": "backoff", "pid": null, "restart_count": 3, "health": "unknown"}
            ]}),
            json!({"name": "queue-default", "state": "stopped", "instances": []}),
        ];
        let t = table(&procs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME           INSTANCE  STATE    PID  UPTIME  RESTARTS  HEALTH"
        );
        assert_eq!(
            lines[1],
            "web            web-1     running  42   5s      0         unknown"
        );
        assert_eq!(
            lines[2],
            "web            web-2     backoff  -    -       3         unknown"
        );
        assert_eq!(
            lines[3],
            "queue-default  -         stopped  -    -       -         -"
        );
    }

    #[test]
    fn a_paused_instance_says_so_beside_its_state() {
        let procs = vec![json!({"name": "web", "state": "running", "instances": [
            {"id": "web-1", "state": "running", "pid": 42, "paused": true, "restart_count": 0, "health": "unknown"},
            {"id": "web-2", "state": "running", "pid": 43, "paused": false, "restart_count": 0, "health": "unknown"}
        ]})];
        let t = table(&procs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "web   web-1     running (paused)  42   -       0         unknown"
        );
        assert!(lines[2].starts_with("web   web-2     running           43"));
    }

    #[test]
    fn operations_and_errors_follow_the_table() {
        let procs = vec![
            json!({"name": "web", "state": "running", "operation": "restarting", "error": null, "instances": [
                {"id": "web-1", "state": "running", "pid": 42, "restart_count": 0, "health": "unknown"}
            ]}),
            json!({"name": "db", "state": "running", "operation": null, "error": null, "instances": []}),
            json!({"name": "api", "state": "stopped", "operation": "replacing",
                   "error": "dependency \"db\" did not come", "instances": []}),
        ];
        let t = table(&procs);
        let tail: Vec<&str> = t.lines().skip(4).collect();
        assert_eq!(
            tail,
            [
                "",
                "web: restarting",
                "api: replacing; dependency \"db\" did not come"
            ],
            "{t}"
        );
        assert!(!table(&procs[1..2]).contains("\n\n"));
    }

    #[test]
    fn why_an_instance_is_down_follows_the_table() {
        let procs = vec![
            json!({"name": "n", "state": "failed", "operation": null, "error": null, "instances": [
                {"id": "n-1", "state": "exited", "pid": null, "error": null,
                 "last_exit": {"code": 5, "signal": null}}
            ]}),
            json!({"name": "crash", "state": "running", "operation": null, "error": null, "instances": [
                {"id": "crash-1", "state": "backoff", "pid": null, "error": null,
                 "last_exit": {"code": null, "signal": 9}},
                {"id": "crash-2", "state": "running", "pid": 7, "error": null,
                 "last_exit": {"code": 3, "signal": null}},
                {"id": "crash-3", "state": "failed", "pid": null,
                 "error": "exited 3; gave up after 2 restart attempts",
                 "last_exit": {"code": 3, "signal": null}}
            ]}),
            json!({"name": "done", "state": "finished", "operation": null, "error": null, "instances": [
                {"id": "done-1", "state": "exited", "pid": null, "error": null,
                 "last_exit": {"code": 0, "signal": null}}
            ]}),
        ];
        let t = table(&procs);
        let tail: Vec<&str> = t.lines().skip(6).collect();
        assert_eq!(
            tail,
            [
                "",
                "n: failed",
                "n-1: exited 5",
                "crash-1: killed by SIGKILL",
                "crash-3: exited 3; gave up after 2 restart attempts"
            ],
            "{t}"
        );
    }

    #[test]
    fn a_servers_control_characters_never_reach_the_terminal() {
        let procs = vec![
            json!({"name": "a\u{1b}]0;owned\u{7}\nb", "state": "x\ry", "instances": [],
                        "operation": "\u{1b}[2J"}),
        ];
        let t = table(&procs);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert_eq!(t.lines().count(), 4, "one row and its note: {t:?}");
        assert!(t.contains("a\\u{1b}]0;owned\\u{7}\\nb"), "{t:?}");
    }
}
