//! Configuration reload against the real binary: SIGHUP, `POST
//! /api/v1/config/reload` and `sheepdog ctl reload` read the file sheepdog
//! was started with again and apply the difference. Added processes start,
//! removed ones stop (their whole group, at their own timeout) and leave the
//! status, changed ones restart in dependency order while their unchanged
//! dependents keep running, scale-only changes keep the running instances,
//! and an invalid file changes nothing. Every observation is a pid in
//! /proc, a line a child wrote, or the API's answer; every wait is bounded.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::http::{self, Resp};
use common::*;
use serde_json::Value;

const TOKEN: &str = "reload-token";

/// A running sheepdog with its API on `port`, and the head of its
/// configuration (everything up to `processes:`) to write new versions with.
struct Reload {
    sd: Sheepdog,
    port: u16,
    metrics: u16,
    global: String,
}

/// The `global:` block: fast restarts, the API with a token, and `extra`
/// (lines indented by two spaces).
fn head(port: u16, metrics: u16, extra: &str) -> String {
    format!(
        "global:\n  shutdown_timeout: 10\n  restart_backoff_initial: 50ms\n  restart_backoff_max: 200ms\n  \
         api_port: {port}\n  metrics_port: {metrics}\n  api_auth: {TOKEN}\n{extra}"
    )
}

impl Reload {
    /// `processes` lines are indented by two spaces.
    fn start(name: &str, extra: &str, processes: &str) -> Reload {
        let (mut sd, port, metrics) = start_serving(name, |p, m| {
            format!("{}processes:\n{processes}", head(p, m, extra))
        });
        assert!(
            sd.wait_exit(Duration::ZERO).is_none(),
            "exited:\n{}",
            sd.log()
        );
        Reload {
            sd,
            port,
            metrics,
            global: head(port, metrics, extra),
        }
    }

    fn file(&self) -> PathBuf {
        self.sd.dir.path("sheepdog.yaml")
    }

    /// Wait until `$DIR/<name>.runs` (a line per start, written by the
    /// child after it was reported running) reads `want`.
    fn wait_runs(&self, name: &str, want: &[&str]) {
        let file = format!("{name}.runs");
        assert!(
            wait_until(WAIT, || self.sd.dir.lines(&file) == want),
            "{file}: {:?}, expected {want:?}\n{}",
            self.sd.dir.lines(&file),
            self.sd.log()
        );
    }

    /// Replace the file with the same `global` block and new `processes`.
    fn rewrite(&self, processes: &str) {
        self.rewrite_all(&format!("{}processes:\n{processes}", self.global));
    }

    /// Replace the whole file (`$DIR` is the temp dir, as at start).
    fn rewrite_all(&self, text: &str) {
        let text = text.replace("$DIR", self.sd.dir.0.to_str().unwrap());
        std::fs::write(self.file(), text).unwrap();
    }

    fn get(&self, path: &str) -> Resp {
        http::get(self.port, path, Some(TOKEN))
    }

    fn post(&self, path: &str) -> Resp {
        http::post(self.port, path, Some(TOKEN), "{}")
    }

    fn reload(&self) -> Resp {
        self.post("/api/v1/config/reload")
    }

    /// A reload that must succeed: its summary.
    fn reloaded(&self) -> Value {
        let r = self.reload();
        assert_eq!(r.status, 200, "reload: {}\n{}", r.body, self.sd.log());
        let v = r.json();
        assert_eq!(v["status"], "reloaded", "{v:#}");
        v
    }

    /// Every process in the status, by name.
    fn processes(&self) -> Vec<Value> {
        let r = self.get("/api/v1/processes");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["processes"].as_array().unwrap().clone()
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .processes()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    }

    fn process(&self, name: &str) -> Value {
        let r = self.get(&format!("/api/v1/processes/{name}"));
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.body, self.sd.log());
        r.json()
    }

    /// Wait until `name` has exactly `n` instances, all running with a live
    /// pid; return the pids in index order.
    fn wait_running(&self, name: &str, n: usize) -> Vec<i32> {
        http::wait_running(self.port, Some(TOKEN), name, n).unwrap_or_else(|last| {
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

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(BIN);
        c.arg("ctl")
            .arg("--url")
            .arg(format!("http://127.0.0.1:{}", self.port));
        c.args(args);
        for k in [
            "SHEEPDOG_API_TOKEN",
            "SHEEPDOG_API_SOCKET",
            "SHEEPDOG_API_URL",
        ] {
            c.env_remove(k);
        }
        output_within(c, WAIT)
    }
}

/// The pids of a process's instances, in index order (None skipped).
fn pids(process: &Value) -> Vec<i32> {
    process["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["pid"].as_i64())
        .map(|p| p as i32)
        .collect()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no list {key:?} in {v:#}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Every process (zombies too) whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(2))
                    .and_then(|g| g.parse::<i32>().ok())
                    == Some(pgid)
            })
        })
        .collect()
}

/// The value of the sample `series` in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Where `needle` occurs for the `n`th time (1-based) in `log`.
fn nth_pos(log: &str, needle: &str, n: usize) -> Option<usize> {
    log.match_indices(needle).nth(n - 1).map(|(i, _)| i)
}

/// A longrun that writes its pid into `$DIR/NAME.pid` and a line into
/// `$DIR/NAME.runs`, then sleeps.
fn sleeper(name: &str, tag: &str) -> String {
    format!(
        "  {name}:\n    command: \"echo $$ > $DIR/{name}.pid; echo {tag} >> $DIR/{name}.runs; exec sleep 1000\"\n"
    )
}

/// Wait until the shells `pids` ran past their `trap` (each command that
/// needs it does `touch $DIR/up.$$` right after): being reported running
/// comes first, and a stop before the trap ends the shell at once.
fn wait_trapped(r: &Reload, pids: &[i32]) {
    let up = |p: &i32| r.sd.dir.path(&format!("up.{p}")).exists();
    assert!(
        wait_until(WAIT, || pids.iter().all(up)),
        "{pids:?} never set their traps\n{}",
        r.sd.log()
    );
}

#[test]
fn sighup_adds_a_process_and_removes_one_with_its_whole_group() {
    // `old` leaves a grandchild in its group: the stop must take it too.
    let old = "  old:\n    command: \"echo $$ > $DIR/old.pid; sleep 1000 & echo $! > $DIR/old.gc; wait\"\n";
    let r = Reload::start("reload-hup", "", &(sleeper("keep", "v1") + old));
    let keep = r.wait_running("keep", 1);
    let old_pid = r.sd.wait_pid("old.pid");
    let gc = r.sd.wait_pid("old.gc");
    assert!(alive(old_pid) && alive(gc));

    r.rewrite(&(sleeper("keep", "v1") + &sleeper("new", "v1")));
    r.sd.signal(libc::SIGHUP);

    let new = r.wait_running("new", 1);
    assert_eq!(r.sd.wait_pid("new.pid"), new[0]);
    assert!(
        wait_until(WAIT, || r.names() == ["keep", "new"]),
        "old is still in the status: {:?}\n{}",
        r.names(),
        r.sd.log()
    );
    assert!(
        wait_until(WAIT, || group_members(old_pid).is_empty()),
        "old's group {old_pid} still has {:?}\n{}",
        group_members(old_pid),
        r.sd.log()
    );
    assert!(!alive(gc), "old's grandchild {gc} survived");
    assert!(!r.sd.log().contains("not supported"), "{}", r.sd.log());
    r.sd.wait_log("reloaded ");
    let line =
        r.sd.log()
            .lines()
            .find(|l| l.contains("reloaded "))
            .unwrap()
            .to_string();
    assert!(
        line.contains(&format!("reloaded {}:", r.file().display())),
        "{line}"
    );
    assert!(line.contains("added new"), "{line}");
    assert!(line.contains("removed old"), "{line}");
    assert!(line.contains("1 unchanged"), "{line}");
    // keep was not touched.
    assert_eq!(r.wait_running("keep", 1), keep);
    r.wait_runs("keep", &["v1"]);
    assert_eq!(r.process("keep")["instances"][0]["restart_count"], 0);
    // Gone from the status: asked for by name, it is unknown.
    assert_eq!(r.get("/api/v1/processes/old").status, 404);
}

#[test]
fn enabling_and_disabling_count_as_adding_and_removing() {
    let procs = |a: bool, b: bool| {
        format!(
            "{}    enabled: {a}\n{}    enabled: {b}\n",
            sleeper("a", "v1"),
            sleeper("b", "v1")
        )
    };
    let r = Reload::start("reload-enabled", "", &procs(true, false));
    let a = r.wait_running("a", 1);
    assert_eq!(r.names(), ["a"]);

    r.rewrite(&procs(false, true));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["b"], "{v:#}");
    assert_eq!(names(&v, "removed"), ["a"], "{v:#}");
    r.wait_running("b", 1);
    assert!(
        wait_until(WAIT, || r.names() == ["b"]
            && group_members(a[0]).is_empty()),
        "{:?}\n{}",
        r.names(),
        r.sd.log()
    );
}

#[test]
fn a_changed_command_restarts_only_that_process() {
    let r = Reload::start(
        "reload-changed",
        "",
        &(sleeper("a", "v1") + &sleeper("b", "v1")),
    );
    let a = r.wait_running("a", 1);
    let b = r.wait_running("b", 1);
    // Reported running comes before the shell's own line: a reload's stop
    // in between ended it first (CI, static binary).
    r.wait_runs("b", &["v1"]);

    r.rewrite(&(sleeper("a", "v1") + &sleeper("b", "v2")));
    let v = r.reloaded();
    assert_eq!(names(&v, "changed"), ["b"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["a"], "{v:#}");
    for k in ["added", "removed", "scaled", "needs_restart"] {
        assert!(names(&v, k).is_empty(), "{k}: {v:#}");
    }
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("changed b"), "{msg}");
    assert_eq!(v["source"], r.file().to_str().unwrap());

    assert!(
        wait_until(WAIT, || r.sd.dir.lines("b.runs") == ["v1", "v2"]),
        "b never ran its new command: {:?}\n{}",
        r.sd.dir.lines("b.runs"),
        r.sd.log()
    );
    let b2 = r.wait_running("b", 1);
    assert_ne!(b2, b);
    assert!(
        wait_until(WAIT, || group_members(b[0]).is_empty()),
        "{}",
        r.sd.log()
    );
    // a: same pid, never restarted.
    assert_eq!(r.wait_running("a", 1), a);
    r.wait_runs("a", &["v1"]);
    assert_eq!(r.process("a")["instances"][0]["restart_count"], 0);

    // The same file again: nothing to do, nothing touched.
    let v = r.reloaded();
    assert_eq!(names(&v, "unchanged"), ["a", "b"], "{v:#}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .ends_with(": no process changed"),
        "{v:#}"
    );
    assert_eq!(r.wait_running("b", 1), b2);
}

#[test]
fn a_scale_only_change_keeps_the_running_instances() {
    let w = |n: u32| {
        format!("  w:\n    command: \"exec sleep 1000\"\n    scale: {n}\n    max_scale: 5\n")
    };
    let r = Reload::start("reload-scale", "", &w(2));
    let before = r.wait_running("w", 2);

    r.rewrite(&w(3));
    let v = r.reloaded();
    assert_eq!(names(&v, "scaled"), ["w"], "{v:#}");
    assert!(names(&v, "changed").is_empty(), "{v:#}");
    let up = r.wait_running("w", 3);
    assert_eq!(up[..2], before[..], "w-1 and w-2 were restarted");

    r.rewrite(&w(1));
    let v = r.reloaded();
    assert_eq!(names(&v, "scaled"), ["w"], "{v:#}");
    let down = r.wait_running("w", 1);
    assert_eq!(down, before[..1], "w-1 was restarted");
    for gone in &up[1..] {
        assert!(
            wait_until(WAIT, || group_members(*gone).is_empty()),
            "{gone} still runs\n{}",
            r.sd.log()
        );
    }
}

#[test]
fn an_invalid_file_changes_nothing_and_is_reported_as_check_reports_it() {
    let good = sleeper("a", "v1") + &sleeper("b", "v1");
    let r = Reload::start("reload-invalid", "", &good);
    let a = r.wait_running("a", 1);
    let b = r.wait_running("b", 1);

    let bad_files = [
        // Not YAML.
        format!("{}processes:\n  a: [unclosed\n", r.global),
        // Validation errors, one of them a typo in a key: both named.
        format!(
            "{}processes:\n  a:\n    comand: \"exec sleep 1000\"\n  b:\n    command: \"exec sleep 1000\"\n    restart: sometimes\n",
            r.global
        ),
        // A dependency cycle.
        format!(
            "{}processes:\n  a:\n    command: \"exec sleep 1000\"\n    depends_on: [b]\n  b:\n    command: \"exec sleep 1000\"\n    depends_on: [a]\n",
            r.global
        ),
    ];
    for text in &bad_files {
        r.rewrite_all(text);
        // What `sheepdog check` says about this file.
        let mut c = Command::new(BIN);
        c.arg("check").arg("-c").arg(r.file());
        let check = output_within(c, WAIT);
        assert_eq!(check.status.code(), Some(2), "check accepted:\n{text}");
        let said = String::from_utf8_lossy(&check.stderr).into_owned();
        let problems: Vec<&str> = said
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .collect();
        assert!(!problems.is_empty(), "{said}");

        let resp = r.reload();
        assert_eq!(resp.status, 422, "{text}\n{}", resp.body);
        let e = resp.error();
        for p in &problems {
            assert!(e.contains(p), "422 {e:?} lacks check's {p:?}");
        }
        // And each is logged at error.
        for p in &problems {
            assert!(
                r.sd.wait_log_n(p, 1, WAIT),
                "{p:?} never logged:\n{}",
                r.sd.log()
            );
            assert!(
                r.sd.log()
                    .lines()
                    .any(|l| l.contains(p) && l.contains("ERROR")),
                "{p:?} not at error:\n{}",
                r.sd.log()
            );
        }
    }
    // A log directory that does not exist: `check` warns (the directory
    // may be made before `run`), `run` refuses to start, so a reload
    // refuses to apply.
    r.rewrite(
        "  a:\n    command: \"exec sleep 1000\"\n    logging:\n      file: { path: $DIR/no/such/dir/a.log }\n  b:\n    command: \"exec sleep 1000\"\n",
    );
    let resp = r.reload();
    assert_eq!(resp.status, 422, "{}", resp.body);
    let e = resp.error();
    assert!(
        e.contains("processes.a.logging.file.path") && e.contains("does not exist"),
        "{e}"
    );
    // The typo is named by its key path.
    r.rewrite_all(&bad_files[1]);
    let e = r.reload().error();
    assert!(e.contains("processes.a.comand"), "{e}");
    assert!(e.contains("processes.b.restart"), "{e}");

    // Nothing changed: the same processes, pids and runs.
    assert_eq!(r.names(), ["a", "b"]);
    assert_eq!(r.wait_running("a", 1), a);
    assert_eq!(r.wait_running("b", 1), b);
    r.wait_runs("a", &["v1"]);
    assert!(!r.sd.log().contains("reloaded "), "{}", r.sd.log());

    // A good file after the bad ones applies.
    r.rewrite(&(good + &sleeper("c", "v1")));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["c"], "{v:#}");
    r.wait_running("c", 1);
}

#[test]
fn a_log_directory_gone_under_an_unchanged_process_does_not_block_a_reload() {
    // `a` logs into a directory that then disappears: a child that owns it
    // may delete it, or turn it into a symlink.
    let logs = TempDir::new("reload-gone-log-dir");
    let alog = logs.path("alog");
    std::fs::create_dir(&alog).unwrap();
    let a = |cmd: &str, scale: u32| {
        format!(
            "  a:\n    command: \"{cmd}\"\n    scale: {scale}\n    logging:\n      file: {{ path: \"{}/a-{{instance}}.log\" }}\n",
            alog.display()
        )
    };
    let r = Reload::start("reload-gone-log-dir", "", &a("exec sleep 1000", 1));
    let pid = r.wait_running("a", 1);
    std::fs::remove_dir_all(&alog).unwrap();

    // Unchanged, so not checked: the reload of the others applies.
    r.rewrite(&(a("exec sleep 1000", 1) + &sleeper("b", "v1")));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["b"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["a"], "{v:#}");
    r.wait_running("b", 1);
    assert_eq!(r.wait_running("a", 1), pid);

    // Changed, or scaled up (a new instance opens a file there): checked,
    // and refused as at start.
    for changed in [a("exec sleep 999", 1), a("exec sleep 1000", 2)] {
        r.rewrite(&(changed + &sleeper("b", "v1")));
        let resp = r.reload();
        assert_eq!(resp.status, 422, "{}\n{}", resp.body, r.sd.log());
        let e = resp.error();
        assert!(
            e.contains("processes.a.logging.file.path") && e.contains("does not exist"),
            "{e}"
        );
    }
    assert_eq!(r.wait_running("a", 1), pid);
}

#[test]
fn a_removed_process_s_logs_stay_until_the_next_reload() {
    let old = "  old:\n    command: \"echo old-line; exec sleep 1000\"\n    hooks:\n      post_stop:\n        - { name: bye, command: \"echo hook-line\" }\n";
    let keep = "  keep:\n    command: \"echo keep-line; exec sleep 1000\"\n";
    let r = Reload::start("reload-drop-logs", "", &format!("{old}{keep}"));
    let lines = |path: &str| {
        let resp = r.get(path);
        (resp.status == 200).then(|| {
            resp.json()["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| format!("{} {}", l["process"], l["msg"]))
                .collect::<Vec<_>>()
        })
    };
    let holds =
        |path: &str, what: &str| lines(path).is_some_and(|l| l.iter().any(|m| m.contains(what)));
    assert!(
        wait_until(WAIT, || holds("/api/v1/processes/old/logs", "old-line")),
        "{}",
        r.sd.log()
    );
    assert!(
        wait_until(WAIT, || holds("/api/v1/processes/keep/logs", "keep-line")),
        "{}",
        r.sd.log()
    );
    r.rewrite(keep);
    assert_eq!(names(&r.reloaded(), "removed"), ["old"]);
    assert!(
        wait_until(WAIT, || !r.names().contains(&"old".to_string())),
        "{}",
        r.sd.log()
    );
    // Gone from the configuration, its lines and its hook's stay readable
    // for a look at why it went.
    assert!(holds("/api/v1/processes/old/logs", "old-line"));
    assert!(
        wait_until(WAIT, || holds(
            "/api/v1/logs",
            "\"old/hook:bye\" \"hook-line\""
        )),
        "{:?}",
        lines("/api/v1/logs")
    );
    // The next reload lets them go, and keeps everyone else's.
    r.reloaded();
    assert_eq!(r.get("/api/v1/processes/old/logs").status, 404);
    let all = lines("/api/v1/logs").unwrap();
    assert!(!all.iter().any(|m| m.starts_with("\"old")), "{all:?}");
    assert!(all.iter().any(|m| m.starts_with("\"sheepdog\"")), "{all:?}");
    assert!(holds("/api/v1/processes/keep/logs", "keep-line"));
}

#[test]
fn reload_metrics_count_successes_and_failures() {
    let r = Reload::start("reload-metrics", "", &sleeper("a", "v1"));
    r.wait_running("a", 1);
    let ok = "sheepdog_config_reloads_total{result=\"success\"}";
    let failed = "sheepdog_config_reloads_total{result=\"failure\"}";
    let last = "sheepdog_config_last_reload_successful";
    // Before any reload: both counters at 0, and (as docs/metrics.md
    // promises of every family) the gauge's family is there without a
    // sample.
    let m = r.scrape();
    assert_eq!(sample(&m, ok), Some(0.0), "{m}");
    assert_eq!(sample(&m, failed), Some(0.0), "{m}");
    assert_eq!(sample(&m, last), None, "{m}");
    assert!(
        m.lines().any(|l| l == format!("# TYPE {last} gauge")),
        "{m}"
    );
    r.rewrite(&(sleeper("a", "v1") + &sleeper("b", "v1")));
    r.reloaded();
    let m = r.scrape();
    assert_eq!(sample(&m, ok), Some(1.0), "{m}");
    assert_eq!(sample(&m, last), Some(1.0), "{m}");

    r.rewrite("  a: [bad\n");
    assert_eq!(r.reload().status, 422);
    let m = r.scrape();
    assert_eq!(sample(&m, ok), Some(1.0), "{m}");
    assert_eq!(sample(&m, failed), Some(1.0), "{m}");
    assert_eq!(sample(&m, last), Some(0.0), "{m}");
    promtool_check(&m);
    // Removed processes leave the metrics too.
    r.rewrite(&sleeper("a", "v1"));
    r.reloaded();
    r.wait_running("a", 1);
    assert!(
        wait_until(WAIT, || !r.scrape().contains("process=\"b\"")),
        "{}",
        r.scrape()
    );
    assert_eq!(sample(&r.scrape(), last), Some(1.0));
}

/// `db` and `web` (which depends on it) record their starts and stops.
fn db_and_web(db_version: u32, web_version: u32) -> String {
    format!(
        r#"  db:
    command: "trap 'echo db-term >> $DIR/events; exit 0' TERM; echo db-up-$V >> $DIR/events; while :; do sleep 0.05; done"
    env: {{ V: "{db_version}" }}
  web:
    command: "trap 'echo web-term >> $DIR/events; sleep 0.3; echo web-exit >> $DIR/events; exit 0' TERM; echo web-up-$V >> $DIR/events; while :; do sleep 0.05; done"
    depends_on: [db]
    env: {{ V: "{web_version}" }}
"#
    )
}

#[test]
fn a_changed_dependency_and_dependent_stop_dependent_first_and_start_dependency_first() {
    let r = Reload::start("reload-deps", "", &db_and_web(1, 1));
    r.wait_running("db", 1);
    r.wait_running("web", 1);
    assert!(wait_until(WAIT, || r.sd.dir.lines("events").len() >= 2));

    r.rewrite(&db_and_web(2, 2));
    let v = r.reloaded();
    assert_eq!(names(&v, "changed"), ["db", "web"], "{v:#}");
    let ok = wait_until(WAIT, || {
        let e = r.sd.dir.lines("events");
        e.contains(&"db-up-2".into()) && e.contains(&"web-up-2".into())
    });
    let events = r.sd.dir.lines("events");
    assert!(ok, "{events:?}\n{}", r.sd.log());
    let at = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} missing: {events:?}"))
    };
    // web has fully stopped (its trap finished) before db gets its signal.
    assert!(at("web-term") < at("web-exit"), "{events:?}");
    assert!(at("web-exit") < at("db-term"), "{events:?}");
    assert!(at("db-term") < at("db-up-2"), "{events:?}");
    // db is started again before web: sheepdog's own record of the spawns
    // (written by the output thread, maybe after the children's files).
    assert!(
        r.sd.wait_log_n("web-1: started (pid ", 2, WAIT),
        "{}",
        r.sd.log()
    );
    let log = r.sd.log();
    let db2 = nth_pos(&log, "db-1: started (pid ", 2).unwrap_or_else(|| panic!("{log}"));
    let web2 = nth_pos(&log, "web-1: started (pid ", 2).unwrap_or_else(|| panic!("{log}"));
    assert!(db2 < web2, "web started before db:\n{log}");
}

#[test]
fn an_unchanged_dependent_keeps_running_when_its_dependency_changes() {
    let r = Reload::start("reload-dep-kept", "", &db_and_web(1, 1));
    r.wait_running("db", 1);
    let web = r.wait_running("web", 1);

    r.rewrite(&db_and_web(2, 1));
    let v = r.reloaded();
    assert_eq!(names(&v, "changed"), ["db"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["web"], "{v:#}");
    assert!(
        wait_until(WAIT, || r
            .sd
            .dir
            .lines("events")
            .contains(&"db-up-2".into())),
        "{:?}\n{}",
        r.sd.dir.lines("events"),
        r.sd.log()
    );
    r.wait_running("db", 1);
    let events = r.sd.dir.lines("events");
    assert!(!events.contains(&"web-term".into()), "{events:?}");
    assert_eq!(r.wait_running("web", 1), web);
}

#[test]
fn a_changed_process_comes_back_as_it_stood() {
    // b: stopped on request, stays stopped. setup: a completed oneshot,
    // runs again. idle: held by initial_state, follows its new one.
    let procs = |v: &str, idle_state: &str| {
        format!(
            "{}  setup:\n    type: oneshot\n    command: \"echo {v} >> $DIR/setup.runs\"\n  idle:\n    command: \"echo {v} >> $DIR/idle.runs; exec sleep 1000\"\n    initial_state: {idle_state}\n",
            sleeper("b", v)
        )
    };
    let r = Reload::start("reload-as-it-stood", "", &procs("v1", "stopped"));
    r.wait_running("b", 1);
    r.wait_runs("b", &["v1"]);
    assert!(wait_until(WAIT, || r.sd.dir.lines("setup.runs") == ["v1"]));
    let stop = r.post("/api/v1/processes/b/stop");
    assert!(stop.status < 300, "{}", stop.body);
    assert!(
        wait_until(WAIT, || pids(&r.process("b")).is_empty()),
        "{}",
        r.sd.log()
    );

    r.rewrite(&procs("v2", "running"));
    let v = r.reloaded();
    assert_eq!(names(&v, "changed"), ["b", "idle", "setup"], "{v:#}");
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("setup.runs") == ["v1", "v2"]),
        "the completed oneshot did not run again: {:?}\n{}",
        r.sd.dir.lines("setup.runs"),
        r.sd.log()
    );
    r.wait_running("idle", 1);
    r.wait_runs("idle", &["v2"]);
    // b was started by nothing: the others have started again by now.
    assert!(pids(&r.process("b")).is_empty(), "{:#}", r.process("b"));
    r.wait_runs("b", &["v1"]);
    // And keeps its new definition for when it is started.
    let start = r.post("/api/v1/processes/b/start");
    assert!(start.status < 300, "{}", start.body);
    r.wait_running("b", 1);
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("b.runs") == ["v1", "v2"]),
        "{:?}",
        r.sd.dir.lines("b.runs")
    );
}

#[test]
fn an_added_process_with_initial_state_stopped_is_created_not_started() {
    let r = Reload::start("reload-held", "", &sleeper("a", "v1"));
    r.wait_running("a", 1);
    r.rewrite(&(sleeper("a", "v1") + &sleeper("later", "v1") + "    initial_state: stopped\n"));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["later"], "{v:#}");
    assert!(wait_until(WAIT, || r.names() == ["a", "later"]));
    let p = r.process("later");
    assert!(pids(&p).is_empty(), "{p:#}");
    let start = r.post("/api/v1/processes/later/start");
    assert!(start.status < 300, "{}", start.body);
    let pid = r.wait_running("later", 1);
    assert_eq!(r.sd.wait_pid("later.pid"), pid[0]);
}

#[test]
fn a_removed_process_that_ignores_sigterm_is_killed_at_its_timeout() {
    let stubborn = "  stubborn:\n    command: \"trap '' TERM; sleep 1000 & echo $! > $DIR/gc; echo $$ > $DIR/stubborn.pid; while :; do sleep 0.05; done\"\n    shutdown: { timeout: 1s }\n";
    let r = Reload::start("reload-stubborn", "", &(sleeper("keep", "v1") + stubborn));
    let pid = r.sd.wait_pid("stubborn.pid");
    let gc = r.sd.wait_pid("gc");
    let keep = r.wait_running("keep", 1);

    r.rewrite(&sleeper("keep", "v1"));
    let v = r.reloaded();
    assert_eq!(names(&v, "removed"), ["stubborn"], "{v:#}");
    assert!(
        wait_until(WAIT, || group_members(pid).is_empty()),
        "stubborn's group {pid} still has {:?}\n{}",
        group_members(pid),
        r.sd.log()
    );
    assert!(!alive(gc));
    // (Logged before the kill, but written by the output thread: wait.)
    r.sd.wait_log("still running after 1s; sending SIGKILL");
    assert!(
        wait_until(WAIT, || r.names() == ["keep"]),
        "{:?}",
        r.names()
    );
    assert_eq!(r.wait_running("keep", 1), keep);
}

#[test]
fn ctl_reload_prints_the_summary_or_the_problems_and_exits_by_the_answer() {
    let r = Reload::start("reload-ctl", "", &sleeper("a", "v1"));
    r.wait_running("a", 1);

    r.rewrite(&(sleeper("a", "v1") + &sleeper("b", "v1")));
    let o = r.ctl(&["--token", TOKEN, "reload"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.trim_end(),
        format!("reloaded {}: added b; 1 unchanged", r.file().display())
    );
    r.wait_running("b", 1);

    r.rewrite(&(sleeper("a", "v1") + &sleeper("b", "v1") + &sleeper("c", "v1")));
    let o = r.ctl(&["--token", TOKEN, "--json", "reload"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "reloaded");
    assert_eq!(names(&v, "added"), ["c"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["a", "b"], "{v:#}");

    // Two problems: exit 1, one line each on stderr, nothing on stdout.
    r.rewrite("  a:\n    comand: x\n  b:\n    command: x\n    restart: sometimes\n");
    let o = r.ctl(&["--token", TOKEN, "reload"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains("(HTTP 422)"), "{err}");
    let line = |k: &str| {
        err.lines()
            .find(|l| l.contains(k))
            .unwrap_or_else(|| panic!("{k} not named: {err}"))
    };
    assert_ne!(
        line("processes.a.comand"),
        line("processes.b.restart"),
        "{err}"
    );
    assert!(!err.contains("\\n"), "{err}");
    // The same with --json: the error on stderr, exit 1.
    let o = r.ctl(&["--token", TOKEN, "--json", "reload"]);
    assert_eq!(o.status.code(), Some(1));
    // Without the token: 401, exit 1.
    let o = r.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(HTTP 401)"));
    // Nothing changed by the refused ones.
    assert_eq!(r.names(), ["a", "b", "c"]);
}

#[test]
fn a_reload_during_shutdown_is_refused() {
    // slow takes its time to stop: shutdown is under way while it does.
    let slow = "  slow:\n    command: \"trap 'echo term > $DIR/term; sleep 5; exit 0' TERM; touch $DIR/up.$$; while :; do sleep 0.05; done\"\n    shutdown: { timeout: 8s }\n";
    let mut r = Reload::start("reload-shutdown", "", slow);
    let started = r.wait_running("slow", 1);
    wait_trapped(&r, &started);
    r.rewrite(&(slow.to_string() + &sleeper("b", "v1")));
    r.sd.signal(libc::SIGTERM);
    assert!(
        wait_until(WAIT, || r.sd.dir.path("term").exists()),
        "{}",
        r.sd.log()
    );
    let resp = r.reload();
    assert_eq!(resp.status, 409, "{}", resp.body);
    assert!(resp.error().contains("shutting down"), "{}", resp.body);
    // A SIGHUP now is no reload either.
    r.sd.signal(libc::SIGHUP);
    r.sd.wait_log("received SIGHUP while shutting down; not reloading");
    // A second SIGTERM forces the end.
    r.sd.signal(libc::SIGTERM);
    r.sd.exit_code(WAIT);
    assert!(!r.sd.dir.path("b.runs").exists(), "{}", r.sd.log());
    assert!(!r.sd.log().contains("reloaded "), "{}", r.sd.log());
}

#[test]
fn a_scheduled_job_added_by_reload_runs_on_its_schedule_and_leaves_when_removed() {
    // `clock` runs throughout and measures time for the checks below.
    let clock = "  clock:\n    command: \"echo tick >> $DIR/clock\"\n    schedule: \"@every 1s\"\n";
    let job = "  job:\n    command: \"echo $SHEEPDOG_RUN_ID >> $DIR/job.runs\"\n    schedule: \"@every 1s\"\n";
    let r = Reload::start("reload-schedule", "", &(sleeper("a", "v1") + clock));
    assert!(wait_until(WAIT, || !r.sd.dir.lines("clock").is_empty()));

    r.rewrite(&(sleeper("a", "v1") + clock + job));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["job"], "{v:#}");
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("job.runs").len() >= 2),
        "job never ran twice: {:?}\n{}",
        r.sd.dir.lines("job.runs"),
        r.sd.log()
    );
    let listed = |name: &str| {
        let s = r.get("/api/v1/schedules");
        assert_eq!(s.status, 200, "{}", s.body);
        s.json()["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["process"] == name)
    };
    assert!(listed("job"));

    r.rewrite(&(sleeper("a", "v1") + clock));
    let v = r.reloaded();
    assert_eq!(names(&v, "removed"), ["job"], "{v:#}");
    // (A run that had just begun ends first; then the job is gone.)
    assert!(wait_until(WAIT, || !listed("job")), "{}", r.sd.log());
    assert_eq!(r.get("/api/v1/schedules/job").status, 404);
    // Three more ticks of the clock: job would have run again by then
    // (one run that had just begun may still finish).
    let runs = r.sd.dir.lines("job.runs").len();
    let ticks = r.sd.dir.lines("clock").len();
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("clock").len() >= ticks + 3),
        "{}",
        r.sd.log()
    );
    assert!(
        r.sd.dir.lines("job.runs").len() <= runs + 1,
        "job still runs after its removal: {:?}",
        r.sd.dir.lines("job.runs")
    );
    assert!(listed("clock"));
}

#[test]
fn switching_a_process_between_scheduled_and_not_refuses_the_reload() {
    let r = Reload::start("reload-switch", "", &sleeper("a", "v1"));
    let a = r.wait_running("a", 1);
    r.rewrite(&(sleeper("a", "v1") + "    schedule: \"@every 1s\"\n" + &sleeper("b", "v1")));
    let resp = r.reload();
    assert_eq!(resp.status, 422, "{}", resp.body);
    let e = resp.error();
    assert!(e.contains('a') && e.contains("schedule"), "{e}");
    // Nothing applied: not b either.
    assert_eq!(r.names(), ["a"]);
    assert_eq!(r.wait_running("a", 1), a);
}

#[test]
fn changes_that_need_a_restart_are_listed_and_not_applied() {
    let r = Reload::start("reload-needs-restart", "", &sleeper("a", "v1"));
    let a = r.wait_running("a", 1);
    let other = http::free_port();
    let text = std::fs::read_to_string(r.file()).unwrap().replace(
        &format!("api_port: {}", r.port),
        &format!("api_port: {other}"),
    );
    std::fs::write(r.file(), &text).unwrap();
    let v = r.reloaded();
    assert_eq!(names(&v, "needs_restart"), ["global.api_port"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["a"], "{v:#}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("global.api_port"), "{msg}");
    // The API stays where it was.
    assert_eq!(r.get("/api/v1/processes").status, 200);
    assert!(!http::listening(other));
    // (Logged before the answer, but written by the output thread: wait.)
    let warned = || {
        r.sd.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("global.api_port"))
    };
    assert!(wait_until(WAIT, warned), "{}", r.sd.log());
    assert_eq!(r.wait_running("a", 1), a);
}

#[test]
fn a_config_read_from_a_fifo_cannot_be_reloaded() {
    let dir = TempDir::new("reload-fifo-cfg");
    let fifo = dir.path("sheepdog.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let port = http::free_port();
    let text = format!(
        "global:\n  api_port: {port}\n  api_auth: {TOKEN}\n  metrics_enabled: false\nprocesses:\n  a:\n    command: \"exec sleep 1000\"\n"
    );
    // A writer is there before sheepdog opens it (a FIFO nobody writes to
    // is refused at start): opened read-write, which does not wait for a
    // reader, with the text in the pipe. Its end closes once sheepdog has
    // the FIFO open, for sheepdog to read the text and then its end.
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    std::io::Write::write_all(&mut writer, text.as_bytes()).unwrap();
    let sd = Sheepdog::start_file("reload-fifo", &fifo, |_| {});
    assert!(
        wait_until(WAIT, || open_files_under(sd.pid(), &fifo) > 0),
        "sheepdog never opened the FIFO:\n{}",
        sd.log()
    );
    drop(writer);
    assert!(wait_until(WAIT, || http::listening(port)), "{}", sd.log());
    let resp = http::post(port, "/api/v1/config/reload", Some(TOKEN), "{}");
    assert_eq!(resp.status, 422, "{}", resp.body);
    let e = resp.error();
    assert!(
        e.contains("regular file") || e.to_lowercase().contains("fifo"),
        "{e}"
    );
    // Still supervising a.
    let p = http::get(port, "/api/v1/processes/a", Some(TOKEN));
    assert_eq!(p.status, 200, "{}", p.body);
}

#[test]
fn log_format_applies_at_once() {
    let r = Reload::start(
        "reload-log-format",
        "  log_format: text\n",
        &sleeper("a", "v1"),
    );
    r.wait_running("a", 1);
    let text = std::fs::read_to_string(r.file())
        .unwrap()
        .replace("log_format: text", "log_format: json");
    std::fs::write(
        r.file(),
        text + &sleeper("b", "v1").replace("$DIR", r.sd.dir.0.to_str().unwrap()),
    )
    .unwrap();
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["b"], "{v:#}");
    assert!(names(&v, "needs_restart").is_empty(), "{v:#}");
    r.wait_running("b", 1);
    r.sd.wait_log("b-1: started (pid ");
    // Lines logged before the reload are text, those after it JSON.
    let log = r.sd.log();
    let find = |what: &str| log.lines().find(|l| l.contains(what)).unwrap();
    assert!(
        !find("a-1: started (pid ").trim_start().starts_with('{'),
        "{log}"
    );
    assert!(
        find("b-1: started (pid ").trim_start().starts_with('{'),
        "{log}"
    );
}

#[test]
fn a_changed_or_removed_heartbeat_is_updated_in_place() {
    let closed = http::free_port();
    let beat = |path: &str| {
        format!("    heartbeat: {{ url: \"http://127.0.0.1:{closed}/{path}\", interval: 1h, retries: 0 }}\n")
    };
    let r = Reload::start("reload-heartbeat", "", &(sleeper("web", "v1") + &beat("a")));
    let pids = r.wait_running("web", 1);

    r.rewrite(&(sleeper("web", "v1") + &beat("b")));
    let v = r.reloaded();
    assert_eq!(names(&v, "updated"), ["web"], "{v:#}");
    assert!(names(&v, "needs_restart").is_empty(), "{v:#}");
    assert!(names(&v, "changed").is_empty(), "{v:#}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("updated web"), "{msg}");

    // Removing the block is a change of it too.
    r.rewrite(&sleeper("web", "v1"));
    let v = r.reloaded();
    assert_eq!(names(&v, "updated"), ["web"], "{v:#}");
    // The same again: nothing to do.
    let v = r.reloaded();
    assert_eq!(names(&v, "unchanged"), ["web"], "{v:#}");
    assert_eq!(r.wait_running("web", 1), pids);
}

/// examples/reload.yaml, edited into examples/reload-edited.yaml, does what
/// their comments say.
#[test]
fn the_reload_example_does_what_it_says() {
    let example = |file: &str, port: u16| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("api_port: 9180\n"), "{file}");
        text.replace("api_port: 9180\n", &format!("api_port: {port}\n"))
    };
    let (sd, port, metrics) = start_serving("reload-example", |p, _| example("reload.yaml", p));
    let r = Reload {
        sd,
        port,
        metrics,
        global: String::new(),
    };
    let db = r.wait_running("db", 1);
    let workers = r.wait_running("worker", 2);
    r.wait_running("app", 1);
    r.wait_running("legacy", 1);

    r.rewrite_all(&example("reload-edited.yaml", port));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["mailer"], "{v:#}");
    assert_eq!(names(&v, "removed"), ["legacy"], "{v:#}");
    assert_eq!(names(&v, "changed"), ["app"], "{v:#}");
    assert_eq!(names(&v, "scaled"), ["worker"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["db"], "{v:#}");
    assert_eq!(
        names(&v, "needs_restart"),
        ["global.log_buffer_lines"],
        "{v:#}"
    );

    r.wait_running("mailer", 1);
    assert_eq!(r.wait_running("worker", 3)[..2], workers[..]);
    assert_eq!(r.wait_running("db", 1), db);
    r.sd.wait_log("app: bonjour from pid");
    r.sd.wait_log("legacy: removed (no longer in the configuration)");
    assert_eq!(r.names(), ["app", "db", "mailer", "worker"]);
}

// ---------------------------------------------------------------------
// Review findings (branch review-reload): each test below fails on the
// reload as first merged, and says what it expects.

/// A job that writes `$DIR/NAME.started` and then runs until the test
/// creates `$DIR/NAME.go` (at most ~20 s), so a run is in progress for as
/// long as the test needs, without a fixed sleep on either side.
fn gated_job(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    command: \"echo $SHEEPDOG_RUN_ID >> $DIR/{name}.started; i=0; while [ ! -e $DIR/{name}.go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo {name}-end >> $DIR/events\"\n    schedule: \"@every 1h\"\n{extra}"
    )
}

#[test]
fn a_job_removed_mid_run_and_added_back_unchanged_stays_scheduled() {
    let job = gated_job("job", "");
    let r = Reload::start("reload-retired-back", "", &(sleeper("keep", "v1") + &job));
    r.wait_running("keep", 1);
    let t = r.post("/api/v1/processes/job/schedule/trigger");
    assert!(t.status < 300, "{}", t.body);
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("job.started").len() == 1),
        "{}",
        r.sd.log()
    );
    // Removed while its run goes on, then added back as it was.
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["job"]);
    r.rewrite(&(sleeper("keep", "v1") + &job));
    r.reloaded();
    std::fs::write(r.sd.dir.path("job.go"), "").unwrap();
    r.sd.wait_log("job#1: run 1 exited");
    // The file has the job: it must still be there, and runnable.
    let s = r.get("/api/v1/schedules/job");
    assert_eq!(
        s.status,
        200,
        "the job in the file is gone: {}\n{}",
        s.body,
        r.sd.log()
    );
    let t = r.post("/api/v1/processes/job/schedule/trigger");
    assert!(t.status < 300, "{}\n{}", t.body, r.sd.log());
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("job.started").len() == 2),
        "{}",
        r.sd.log()
    );
}

#[test]
fn a_scale_raised_with_max_process_scale_in_one_reload_is_applied() {
    let w = |n: u32| format!("  w:\n    command: \"exec sleep 1000\"\n    scale: {n}\n");
    let r = Reload::start("reload-scale-cap", "  max_process_scale: 2\n", &w(2));
    let before = r.wait_running("w", 2);
    r.rewrite_all(&format!(
        "{}processes:\n{}",
        head(r.port, r.metrics, "  max_process_scale: 4\n"),
        w(4)
    ));
    let v = r.reloaded();
    assert_eq!(names(&v, "scaled"), ["w"], "{v:#}");
    // Refused against the old cap of 2 today ("its scale stays as it is"),
    // and the next reload calls w unchanged.
    let up = r.wait_running("w", 4);
    assert_eq!(up[..2], before[..]);
}

#[test]
fn a_scale_change_that_arrives_during_a_rolling_restart_is_not_lost() {
    // The new file gives it a heartbeat too: a scale change with it.
    let w = |n: u32, beat: &str| {
        format!(
            "  w:\n    command: \"trap 'sleep 0.5; exit 0' TERM; touch $DIR/up.$$; while :; do sleep 0.05; done\"\n    scale: {n}\n    max_scale: 5\n{beat}"
        )
    };
    let beat = "    heartbeat: { url: \"http://127.0.0.1:9/w\" }\n";
    let r = Reload::start("reload-scale-rolling", "", &w(2, ""));
    let started = r.wait_running("w", 2);
    wait_trapped(&r, &started);
    let restart = r.post("/api/v1/processes/w/restart");
    assert!(restart.status < 300, "{}", restart.body);
    r.rewrite(&w(3, beat));
    let v = r.reloaded();
    // Refused for now, and said so: nothing claims it was scaled.
    assert!(names(&v, "scaled").is_empty(), "{v:#}");
    let refused = names(&v, "not_applied");
    assert!(
        refused.len() == 1 && refused[0].contains("w is being restarted"),
        "{v:#}"
    );
    // Nor is the rest of the new definition in force.
    let series = "sheepdog_heartbeats_total{process=\"w\"";
    assert!(!r.scrape().contains(series), "{}", r.scrape());
    r.sd.wait_log("w: rolling restart complete");
    // The next reload of the same file applies it.
    let again = r.reloaded();
    assert_eq!(names(&again, "scaled"), ["w"], "{again:#}");
    assert!(r.scrape().contains(series), "{}", r.scrape());
    let three = wait_until(WAIT, || pids(&r.process("w")).len() == 3);
    assert!(
        three,
        "w still runs {:?} after the file said scale 3; the next reload said {again:#}\n{}",
        pids(&r.process("w")),
        r.sd.log()
    );
}

#[test]
fn an_unchanged_every_job_keeps_its_schedule_across_reloads_of_other_jobs() {
    // `clock` is a longrun, so reloads do not touch it: it measures time.
    let clock =
        "  clock:\n    command: \"while :; do echo tick >> $DIR/clock; sleep 0.25; done\"\n";
    let a = "  a:\n    command: \"echo run >> $DIR/a.runs\"\n    schedule: \"@every 2s\"\n";
    let b = |v: u32| format!("  b:\n    command: \"true {v}\"\n    schedule: \"@every 1h\"\n");
    let r = Reload::start("reload-every", "", &(clock.to_string() + a + &b(0)));
    assert!(wait_until(WAIT, || !r.sd.dir.lines("clock").is_empty()));
    // Change b about once a second, for about 6 s: `a` (every 2 s, not
    // changed) must run meanwhile.
    for v in 1..=6 {
        let ticks = r.sd.dir.lines("clock").len();
        assert!(wait_until(WAIT, || r.sd.dir.lines("clock").len() >= ticks + 4));
        r.rewrite(&(clock.to_string() + a + &b(v)));
        assert_eq!(names(&r.reloaded(), "changed"), ["b"]);
    }
    assert!(
        !r.sd.dir.lines("a.runs").is_empty(),
        "a (@every 2s, unchanged) never ran in ~6 s of reloads that changed only b\n{}",
        r.sd.log()
    );
}

#[test]
fn a_removed_dependency_outlives_the_run_of_a_removed_job_that_depends_on_it() {
    let db = "  db:\n    command: \"trap 'echo db-term >> $DIR/events; exit 0' TERM; while :; do sleep 0.05; done\"\n";
    let backup = gated_job("backup", "    depends_on: [db]\n");
    let r = Reload::start(
        "reload-job-dep",
        "",
        &(sleeper("keep", "v1") + db + &backup),
    );
    r.wait_running("db", 1);
    let t = r.post("/api/v1/processes/backup/schedule/trigger");
    assert!(t.status < 300, "{}\n{}", t.body, r.sd.log());
    assert!(wait_until(WAIT, || r.sd.dir.lines("backup.started").len() == 1));
    r.rewrite(&sleeper("keep", "v1"));
    let v = r.reloaded();
    assert_eq!(names(&v, "removed"), ["backup", "db"], "{v:#}");
    // The log says why db still runs, and its status that it is leaving.
    r.sd.wait_log("db: its stop waits for the run of backup that depends on it");
    let db = r.process("db");
    assert_eq!(
        (db["state"].as_str(), db["operation"].as_str()),
        (Some("running"), Some("removing")),
        "{db:#}"
    );
    let job = r.process("backup");
    assert_eq!(job["operation"], "removing", "{job:#}");
    std::fs::write(r.sd.dir.path("backup.go"), "").unwrap();
    r.sd.wait_lines("events", 2);
    // As at shutdown: a run that depends on db ends before db is stopped.
    assert_eq!(
        r.sd.dir.lines("events"),
        ["backup-end", "db-term"],
        "{}",
        r.sd.log()
    );
}

#[test]
fn a_stop_requested_while_a_reload_restarts_a_process_keeps_it_stopped() {
    let web = |v: &str| {
        format!(
            "  web:\n    command: \"trap 'sleep 0.5; exit 0' TERM; echo {v} >> $DIR/web.runs; while :; do sleep 0.05; done\"\n"
        )
    };
    let r = Reload::start(
        "reload-stop-during",
        "",
        &(sleeper("keep", "v1") + &web("v1")),
    );
    r.wait_running("web", 1);
    r.rewrite(&(sleeper("keep", "v1") + &web("v2")));
    assert_eq!(names(&r.reloaded(), "changed"), ["web"]);
    let stop = r.post("/api/v1/processes/web/stop");
    assert!(stop.status < 300, "{}", stop.body);
    // What the reload does once web is down is logged at once.
    let said = |s: &str| r.sd.log().contains(s);
    assert!(
        wait_until(WAIT, || said("web: starting with its new definition")
            || said("web: new definition taken")),
        "{}",
        r.sd.log()
    );
    assert!(
        said("web: new definition taken"),
        "the stop was accepted, yet web starts again:\n{}",
        r.sd.log()
    );
    r.wait_runs("web", &["v1"]);
}

#[test]
fn a_reload_whose_new_dependency_never_gets_healthy_does_not_shut_sheepdog_down() {
    let cfg = |check: &str, v: u32| {
        format!(
            "  db:\n    command: \"exec sleep 1000\"\n    health_check: {{ type: exec, command: [{check}], initial_delay: 100ms, period: 300ms, timeout: 250ms }}\n  web:\n    command: \"exec sleep 1000\"\n    depends_on: [db]\n    env: {{ V: \"{v}\" }}\n{}",
            sleeper("other", "v1")
        )
    };
    let r = Reload::start(
        "reload-dep-timeout",
        "  dependency_timeout: 2s\n",
        &cfg("\"true\"", 1),
    );
    r.wait_running("web", 1);
    let other = r.wait_running("other", 1);
    // A bad edit: db's new check can never pass.
    r.rewrite(&cfg("\"false\"", 2));
    assert_eq!(names(&r.reloaded(), "changed"), ["db", "web"]);
    // web gives up alone (at start-up this would be "cannot start web: …"
    // and the end of sheepdog).
    r.sd.wait_log("web: not started: dependency_timeout (2s) passed waiting for db");
    assert!(!r.sd.log().contains("shutting down"), "{}", r.sd.log());
    // Not ready while it is down, and why; the rest runs on.
    let ready = http::get(r.port, "/api/v1/ready", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("web: not started after a reload"),
        "{}",
        ready.body
    );
    assert_eq!(r.wait_running("other", 1), other);
    let web = r.process("web");
    assert_eq!(web["state"], "stopped");
    // The process's own status says why, as /ready does.
    assert!(
        web["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("dependency_timeout (2s) passed waiting for db")),
        "{web:#}"
    );
    // The next reload fixes db only: web, unchanged, tries again and
    // comes back, and sheepdog is ready again.
    r.rewrite(&cfg("\"true\"", 2));
    let v = r.reloaded();
    // web, retried, starts: listed as changed, not unchanged.
    assert_eq!(names(&v, "changed"), ["db", "web"], "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["other"], "{v:#}");
    r.wait_running("web", 1);
    assert!(
        r.process("web")["error"].is_null(),
        "{:#}",
        r.process("web")
    );
    assert!(
        wait_until(WAIT, || http::get(r.port, "/api/v1/ready", None).status
            == 200),
        "{}",
        r.sd.log()
    );
}

#[test]
fn a_critical_process_whose_dependency_never_comes_after_a_reload_ends_sheepdog() {
    let cfg = |check: &str, v: u32| {
        format!(
            "  db:\n    command: \"exec sleep 1000\"\n    health_check: {{ type: exec, command: [{check}], initial_delay: 100ms, period: 300ms, timeout: 250ms }}\n  web:\n    command: \"exec sleep 1000\"\n    depends_on: [db]\n    critical: true\n    env: {{ V: \"{v}\" }}\n"
        )
    };
    let mut r = Reload::start(
        "reload-dep-critical",
        "  dependency_timeout: 2s\n",
        &cfg("\"true\"", 1),
    );
    r.wait_running("web", 1);
    r.rewrite(&cfg("\"false\"", 2));
    r.reloaded();
    assert_eq!(r.sd.exit_code(WAIT), 1, "{}", r.sd.log());
    assert!(
        r.sd.log()
            .contains("web is critical and cannot start after a reload"),
        "{}",
        r.sd.log()
    );
}

/// Threads of `pid` named `comm`.
fn threads_named(pid: i32, comm: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == comm)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn reloads_that_change_jobs_do_not_leave_threads_behind() {
    // A cron job: the scheduler watches for clock steps on a thread of its
    // own, blocked in read(2) on a timerfd.
    let b = |v: u32| format!("  b:\n    command: \"true {v}\"\n    schedule: \"0 3 * * *\"\n");
    let r = Reload::start("reload-threads", "", &(sleeper("keep", "v1") + &b(0)));
    r.wait_running("keep", 1);
    let pid = r.sd.pid();
    let before = threads_named(pid, "clock-steps");
    assert!(before <= 1, "{before}");
    for v in 1..=20 {
        r.rewrite(&(sleeper("keep", "v1") + &b(v)));
        assert_eq!(names(&r.reloaded(), "changed"), ["b"]);
    }
    // The old watchers end with their scheduler (each reload above joined
    // the old scheduler before starting the new one).
    let ok = wait_until(WAIT, || threads_named(pid, "clock-steps") <= 1);
    assert!(
        ok,
        "{} clock-steps threads after 20 reloads (one per scheduler ever started)",
        threads_named(pid, "clock-steps")
    );
}

// ---- second review of configuration reload ----

/// `p` appends `start TAG` to `$DIR/ev` when it starts; its post_stop
/// hook takes a second, then appends `post_stop TAG`.
fn hooked(tag: &str) -> String {
    format!(
        "  p:\n    command: \"echo start {tag} >> $DIR/ev; exec sleep 1000\"\n    hooks:\n      \
         post_stop: [ {{ name: post-stop-{tag}, command: \"sleep 1; echo post_stop {tag} >> $DIR/ev\" }} ]\n"
    )
}

#[test]
fn a_changed_processs_old_post_stop_ends_before_its_new_definition_starts() {
    let r = Reload::start("reload-post-stop-order", "", &hooked("v1"));
    r.wait_running("p", 1);
    r.rewrite(&hooked("v2"));
    assert_eq!(names(&r.reloaded(), "changed"), ["p"]);
    let ev = r.sd.dir.path("ev");
    let read = || std::fs::read_to_string(&ev).unwrap_or_default();
    let both = wait_until(WAIT, || {
        let t = read();
        t.contains("post_stop v1") && t.contains("start v2")
    });
    assert!(both, "{}\n{}", read(), r.sd.log());
    // The stop of the old definition (its post_stop included) comes
    // before the start of the new one, as at a stop and a start.
    let t = read();
    assert!(
        t.find("post_stop v1") < t.find("start v2"),
        "the new definition started while the old one's post_stop hook still ran:\n{t}"
    );
}

#[test]
fn a_removed_processs_hook_series_leave_the_metrics() {
    let b = "  b:\n    command: \"exec sleep 1000\"\n    hooks:\n      \
             pre_start: [ { name: warm, command: \"true\" } ]\n      \
             post_stop: [ { name: bye, command: \"sleep 0.5\" } ]\n";
    let r = Reload::start("reload-hook-metrics", "", &(sleeper("a", "v1") + b));
    r.wait_running("b", 1);
    assert!(
        wait_until(WAIT, || r.scrape().contains("process=\"b\"")),
        "{}",
        r.scrape()
    );
    r.rewrite(&sleeper("a", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["b"]);
    // It leaves the status once its post_stop hook has ended, which logs
    // its success a moment before the supervisor hears of it.
    r.sd.wait_log("post_stop hook \"bye\" succeeded");
    assert!(
        wait_until(WAIT, || r.get("/api/v1/processes/b").status == 404),
        "{}",
        r.sd.log()
    );
    let m = r.scrape();
    let stale: Vec<&str> = m.lines().filter(|l| l.contains("process=\"b\"")).collect();
    assert!(
        stale.is_empty(),
        "a removed process left {} series in the metrics, e.g. {}",
        stale.len(),
        stale[0]
    );
}

#[test]
fn a_renamed_hooks_old_series_leave_the_metrics_and_the_status() {
    // Regression: after renaming `hookv1` to `hookv2`, both were listed
    // until sheepdog restarted.
    let a = |hook: &str| {
        format!(
            "  a:\n    command: \"exec sleep 1000\"\n    hooks:\n      \
             pre_start: [ {{ name: {hook}, command: \"true\" }} ]\n"
        )
    };
    let r = Reload::start("reload-hook-rename", "", &a("hookv1"));
    r.wait_running("a", 1);
    let hooks = |r: &Reload| {
        let mut names: Vec<String> = r.process("a")["hooks"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|h| Some(h["name"].as_str()?.to_string()))
            .collect();
        names.sort();
        names
    };
    assert!(
        wait_until(WAIT, || hooks(&r) == ["hookv1"]),
        "{:?}",
        hooks(&r)
    );
    r.rewrite(&a("hookv2"));
    assert_eq!(names(&r.reloaded(), "changed"), ["a"]);
    r.sd.wait_log("a-1: pre_start hook \"hookv2\" succeeded");
    assert!(
        wait_until(WAIT, || hooks(&r) == ["hookv2"]),
        "{:?}\n{}",
        hooks(&r),
        r.sd.log()
    );
    let m = r.scrape();
    assert!(m.contains("name=\"hookv2\""), "{m}");
    assert!(!m.contains("name=\"hookv1\""), "{m}");
}

#[test]
fn ready_is_503_while_a_changed_process_is_being_replaced() {
    // web drains for 2 s (pre_stop) before its stop signal.
    let web = |v: u32| {
        format!(
            "  web:\n    command: \"exec sleep 1000\"\n    env: {{ V: \"{v}\" }}\n    \
             health_check: {{ type: exec, command: [\"true\"], initial_delay: 0s, period: 200ms, mode: readiness }}\n    \
             hooks:\n      pre_stop: [ {{ name: drain, command: \"sleep 2\" }} ]\n"
        )
    };
    let r = Reload::start("reload-ready", "", &web(1));
    r.wait_running("web", 1);
    assert!(
        wait_until(WAIT, || r.get("/api/v1/ready").status == 200),
        "{}",
        r.sd.log()
    );
    r.rewrite(&web(2));
    assert_eq!(names(&r.reloaded(), "changed"), ["web"]);
    // Draining and stopping, to be started again: it does not serve.
    let state = r.process("web")["state"].clone();
    let ready = r.get("/api/v1/ready");
    assert_eq!(
        ready.status, 503,
        "/ready while web ({state}) is being replaced: {}",
        ready.body
    );
    // And ready again once the new one is healthy.
    assert!(
        wait_until(WAIT, || r.get("/api/v1/ready").status == 200),
        "{}",
        r.sd.log()
    );
}

#[test]
fn changing_only_a_jobs_timeout_keeps_its_due_time() {
    let job = |timeout: &str| {
        format!(
            "  job:\n    command: \"true\"\n    schedule: \"@every 1h\"\n    schedule_timeout: {timeout}\n"
        )
    };
    let r = Reload::start(
        "reload-job-timeout",
        "",
        &(sleeper("a", "v1") + &job("10m")),
    );
    r.wait_running("a", 1);
    let next = || r.get("/api/v1/schedules/job").json()["next_run"].as_f64();
    assert!(wait_until(WAIT, || next().is_some()), "{}", r.sd.log());
    let before = next().unwrap();
    // Long enough that a due time planned anew is visibly later.
    std::thread::sleep(Duration::from_secs(3));
    r.rewrite(&(sleeper("a", "v1") + &job("20m")));
    assert_eq!(names(&r.reloaded(), "changed"), ["job"]);
    // (The scheduler learns the new list asynchronously.)
    std::thread::sleep(Duration::from_millis(500));
    let after = next().unwrap();
    assert!(
        (after - before).abs() < 1.0,
        "a schedule_timeout change moved the next run from {before} to {after}"
    );
}

/// The global log and readiness files are opened once, at start: a reload
/// that changes them (even to a path that could not be opened) lists them
/// in needs_restart and applies the rest, as `check` would warn.
#[test]
fn a_global_file_a_reload_does_not_open_does_not_refuse_it() {
    let r = Reload::start("reload-global-files", "", &sleeper("a", "v1"));
    r.wait_running("a", 1);
    let text = format!(
        "{}  log_file: $DIR/nope/own.log\n  readiness_file: $DIR\nprocesses:\n{}{}",
        r.global,
        sleeper("a", "v1"),
        sleeper("b", "v1")
    );
    r.rewrite_all(&text);
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["b"], "{v:#}");
    assert_eq!(
        names(&v, "needs_restart"),
        ["global.readiness_file", "global.log_file"],
        "{v:#}"
    );
    r.wait_running("b", 1);
}

/// A process that gave up after a reload is "not ready" until an operator
/// decides: a stop request makes its being down deliberate.
#[test]
fn stopping_a_process_that_gave_up_after_a_reload_ends_its_not_ready() {
    let cfg = |check: &str, v: u32| {
        format!(
            "  db:\n    command: \"exec sleep 1000\"\n    health_check: {{ type: exec, command: [{check}], initial_delay: 100ms, period: 300ms, timeout: 250ms }}\n  web:\n    command: \"exec sleep 1000\"\n    depends_on: [db]\n    env: {{ V: \"{v}\" }}\n"
        )
    };
    let r = Reload::start(
        "reload-gave-up-stop",
        "  dependency_timeout: 1s\n",
        &cfg("\"true\"", 1),
    );
    r.wait_running("web", 1);
    r.rewrite(&cfg("\"false\"", 2));
    r.reloaded();
    r.sd.wait_log("web: not started: dependency_timeout (1s) passed");
    let web_listed = || {
        http::get(r.port, "/api/v1/ready", None)
            .body
            .contains("web: not started after a reload")
    };
    assert!(web_listed(), "{}", r.sd.log());
    let stop = r.post("/api/v1/processes/web/stop");
    assert_eq!(stop.status, 200, "{}", stop.body);
    // (db, still unhealthy, keeps /ready at 503; web is no longer why.)
    assert!(!web_listed(), "{}", r.sd.log());
}

/// A longrun whose stop waits for `$DIR/go<V>` (V from its env), so a stop
/// lasts exactly as long as the test wants.
fn gated(v: u32) -> String {
    format!(
        "  w:\n    command: \"trap 'while [ ! -e $DIR/go$V ]; do sleep 0.05; done; exit 0' TERM; touch $DIR/up.$$; while :; do sleep 0.05; done\"\n    env: {{ V: \"{v}\" }}\n    scale: 2\n    max_scale: 5\n"
    )
}

#[test]
fn a_scale_while_a_reload_replaces_or_removes_the_process_is_refused() {
    let r = Reload::start(
        "reload-scale-replaced",
        "",
        &(gated(1) + &sleeper("keep", "v1")),
    );
    let started = r.wait_running("w", 2);
    wait_trapped(&r, &started);
    let scale = || {
        http::post(
            r.port,
            "/api/v1/processes/w/scale",
            Some(TOKEN),
            r#"{"desired":4}"#,
        )
    };
    // Replaced: the new definition's scale (2) would win over a 4 accepted now.
    r.rewrite(&(gated(2) + &sleeper("keep", "v1")));
    assert_eq!(names(&r.reloaded(), "changed"), ["w"]);
    let s = scale();
    assert_eq!(s.status, 409, "{}\n{}", s.body, r.sd.log());
    assert!(
        s.error()
            .contains("w is being restarted, replaced or removed"),
        "{}",
        s.body
    );
    std::fs::write(r.sd.dir.path("go1"), "").unwrap();
    let started = r.wait_running("w", 2);
    wait_trapped(&r, &started);
    // Removed: there would be nothing left to scale.
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["w"]);
    let s = scale();
    assert_eq!(s.status, 409, "{}\n{}", s.body, r.sd.log());
    std::fs::write(r.sd.dir.path("go2"), "").unwrap();
    assert!(wait_until(WAIT, || r.names() == ["keep"]), "{}", r.sd.log());
}

/// `p` appends `start TAG` to `$DIR/ev` when it starts; its post_stop hook
/// makes `$DIR/cleaning` and waits for `$DIR/go`, then removes both and
/// appends `post_stop TAG`.
fn cleaned(tag: &str) -> String {
    format!(
        "  p:\n    command: \"echo start {tag} >> $DIR/ev; exec sleep 1000\"\n    hooks:\n      \
         post_stop: [ {{ name: clean, timeout: 1m, command: \"touch $DIR/cleaning; \
         while [ ! -e $DIR/go ]; do sleep 0.05; done; rm -f $DIR/go $DIR/cleaning; echo post_stop {tag} >> $DIR/ev\" }} ]\n"
    )
}

/// Stop `p` once its child wrote its `start` line (being reported running
/// comes first), and wait until its post_stop hook runs.
fn stop_until_cleaning(r: &Reload) {
    assert!(
        wait_until(WAIT, || r
            .sd
            .dir
            .lines("ev")
            .last()
            .is_some_and(|l| l.starts_with("start "))),
        "{:?}\n{}",
        r.sd.dir.lines("ev"),
        r.sd.log()
    );
    let s = r.post("/api/v1/processes/p/stop");
    assert_eq!(s.status, 202, "{}\n{}", s.body, r.sd.log());
    assert!(
        wait_until(WAIT, || r.sd.dir.path("cleaning").exists()),
        "{}",
        r.sd.log()
    );
}

#[test]
fn a_start_while_a_replacement_waits_for_post_stop_hooks_starts_the_new_definition() {
    // Regression: accepted (202), then dropped: the reload's step, taken
    // when the hooks ended, left it stopped.
    let r = Reload::start("reload-start-waiting", "", &cleaned("v1"));
    r.wait_running("p", 1);
    let mut want = vec!["start v1".to_string()];
    for (what, old, new) in [("start", "v1", "v2"), ("restart", "v2", "v3")] {
        stop_until_cleaning(&r);
        r.rewrite(&cleaned(new));
        assert_eq!(names(&r.reloaded(), "changed"), ["p"]);
        let s = r.post(&format!("/api/v1/processes/p/{what}"));
        assert_eq!(s.status, 202, "{what}: {}\n{}", s.body, r.sd.log());
        std::fs::write(r.sd.dir.path("go"), "").unwrap();
        want.extend([format!("post_stop {old}"), format!("start {new}")]);
        assert!(
            wait_until(WAIT, || r.sd.dir.lines("ev") == want),
            "{what}: {:?}\n{}",
            r.sd.dir.lines("ev"),
            r.sd.log()
        );
        r.wait_running("p", 1);
    }
}

#[test]
fn a_start_while_a_removal_waits_for_post_stop_hooks_is_refused() {
    // Regression: accepted (202), then the process was removed.
    let r = Reload::start(
        "reload-start-removed",
        "",
        &(cleaned("v1") + &sleeper("keep", "v1")),
    );
    r.wait_running("p", 1);
    stop_until_cleaning(&r);
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["p"]);
    for what in ["start", "restart"] {
        let s = r.post(&format!("/api/v1/processes/p/{what}"));
        assert_eq!(s.status, 409, "{what}: {}\n{}", s.body, r.sd.log());
        assert!(s.error().contains("p is being removed"), "{}", s.body);
    }
    std::fs::write(r.sd.dir.path("go"), "").unwrap();
    assert!(wait_until(WAIT, || r.names() == ["keep"]), "{}", r.sd.log());
    assert_eq!(r.sd.dir.lines("ev"), ["start v1", "post_stop v1"]);
}

#[test]
fn a_lowered_max_scale_or_max_process_scale_brings_the_running_count_down() {
    let procs = |max: u32| {
        format!(
            "  w:\n    command: \"exec sleep 1000\"\n    scale: 2\n    max_scale: {max}\n  v:\n    command: \"exec sleep 1000\"\n    scale: 2\n"
        )
    };
    let r = Reload::start("reload-cap-lowered", "  max_process_scale: 10\n", &procs(6));
    r.wait_running("w", 2);
    for (name, n) in [("w", 6), ("v", 8)] {
        let body = format!("{{\"desired\":{n}}}");
        let s = http::post(
            r.port,
            &format!("/api/v1/processes/{name}/scale"),
            Some(TOKEN),
            &body,
        );
        assert_eq!(s.status, 202, "{}", s.body);
        r.wait_running(name, n);
    }
    let w = r.wait_running("w", 6);
    r.rewrite_all(&format!(
        "{}processes:\n{}",
        head(r.port, r.metrics, "  max_process_scale: 4\n"),
        procs(3)
    ));
    let v = r.reloaded();
    assert_eq!(names(&v, "scaled"), ["v", "w"], "{v:#}");
    // The lowest ones keep running; the surplus stops.
    assert_eq!(r.wait_running("w", 3), w[..3]);
    r.wait_running("v", 4);
    assert_eq!(r.process("w")["desired_scale"], 3);
    assert_eq!(r.process("v")["desired_scale"], 4);
}

#[test]
fn a_scale_only_change_starts_a_process_that_finished() {
    let f = |n: u32| {
        format!(
            "  f:\n    command: \"test -e $DIR/fixed || exit 1; exec sleep 1000\"\n    restart: on-failure\n    max_restart_attempts: 1\n    scale: {n}\n    max_scale: 3\n"
        )
    };
    let r = Reload::start(
        "reload-scale-finished",
        "",
        &(f(1) + &sleeper("keep", "v1")),
    );
    assert!(
        wait_until(WAIT, || r.process("f")["state"] == "failed"),
        "{:#}\n{}",
        r.process("f"),
        r.sd.log()
    );
    std::fs::write(r.sd.dir.path("fixed"), "").unwrap();
    r.rewrite(&(f(2) + &sleeper("keep", "v1")));
    assert_eq!(names(&r.reloaded(), "scaled"), ["f"]);
    // As a changed process that had finished: started again.
    r.wait_running("f", 2);
}

#[test]
fn reordering_depends_on_or_changing_a_running_initial_state_restarts_nothing() {
    let procs = |deps: &str, r_extra: &str| {
        format!(
            "{}{}  c:\n    command: \"exec sleep 1000\"\n    depends_on: [{deps}]\n  r:\n    command: \"exec sleep 1000\"\n{r_extra}",
            sleeper("a", "v1"),
            sleeper("b", "v1")
        )
    };
    let r = Reload::start("reload-no-op-edits", "", &procs("a, b", ""));
    let c = r.wait_running("c", 1);
    let rr = r.wait_running("r", 1);
    r.rewrite(&procs("b, a", "    initial_state: stopped\n"));
    let v = r.reloaded();
    assert_eq!(names(&v, "unchanged"), ["a", "b", "c", "r"], "{v:#}");
    assert!(names(&v, "changed").is_empty(), "{v:#}");
    assert_eq!(r.wait_running("c", 1), c);
    assert_eq!(r.wait_running("r", 1), rr);
}

#[test]
fn a_removal_under_way_is_not_listed_again_and_a_process_put_back_is_added() {
    let w = gated(1);
    let r = Reload::start("reload-removing", "", &(w.clone() + &sleeper("keep", "v1")));
    let old = r.wait_running("w", 2);
    wait_trapped(&r, &old);
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["w"]);
    // Still stopping (its stop waits for go1): on its way, not removed again.
    let v = r.reloaded();
    assert!(names(&v, "removed").is_empty(), "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["keep", "w"], "{v:#}");
    // Back as it was: added (its stop has begun), not changed.
    r.rewrite(&(w + &sleeper("keep", "v1")));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["w"], "{v:#}");
    assert!(names(&v, "changed").is_empty(), "{v:#}");
    std::fs::write(r.sd.dir.path("go1"), "").unwrap();
    assert!(
        wait_until(WAIT, || {
            let p = pids(&r.process("w"));
            p.len() == 2 && p.iter().all(|p| !old.contains(p))
        }),
        "{:#}\n{}",
        r.process("w"),
        r.sd.log()
    );
}

/// Put back once its removal's stop is done, while only its post_stop
/// hook still runs: it starts again, as one put back while still stopping
/// does (regression: it stayed stopped, its status `stopped`).
#[test]
fn a_process_put_back_while_its_post_stop_hook_runs_starts_again() {
    let w = "  w:\n    command: \"exec sleep 1000\"\n    hooks:\n      post_stop:\n        - { name: clean, command: \"touch $DIR/cleaning; while [ ! -e $DIR/go ]; do sleep 0.05; done; rm $DIR/cleaning\", timeout: 1m }\n";
    let r = Reload::start(
        "reload-putback-poststop",
        "",
        &(w.to_string() + &sleeper("keep", "v1")),
    );
    let old = r.wait_running("w", 1);
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["w"]);
    // Its instance is gone; its post_stop hook holds the removal.
    assert!(
        wait_until(WAIT, || r.sd.dir.path("cleaning").exists()
            && pids(&r.process("w")).is_empty()),
        "{:#}\n{}",
        r.process("w"),
        r.sd.log()
    );
    r.rewrite(&(w.to_string() + &sleeper("keep", "v1")));
    let v = r.reloaded();
    assert_eq!(names(&v, "added"), ["w"], "{v:#}");
    std::fs::write(r.sd.dir.path("go"), "").unwrap();
    assert!(
        wait_until(WAIT, || {
            let p = pids(&r.process("w"));
            p.len() == 1 && p != old
        }),
        "{:#}\n{}",
        r.process("w"),
        r.sd.log()
    );
}

/// Stopped on request, removed while it still stops, then put back: it
/// stays stopped, as it stood (regression: the removal's stop was taken
/// for a sign that it had been running, and it started).
#[test]
fn a_process_stopped_on_request_and_put_back_during_its_removal_stays_stopped() {
    let r = Reload::start(
        "reload-putback-stopped",
        "",
        &(gated(1) + &sleeper("keep", "v1")),
    );
    let started = r.wait_running("w", 2);
    wait_trapped(&r, &started);
    assert_eq!(r.post("/api/v1/processes/w/stop").status, 202);
    assert!(
        wait_until(WAIT, || r.process("w")["state"] == "stopping"),
        "{:#}",
        r.process("w")
    );
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["w"]);
    r.rewrite(&(gated(1) + &sleeper("keep", "v1")));
    assert_eq!(names(&r.reloaded(), "added"), ["w"]);
    std::fs::write(r.sd.dir.path("go1"), "").unwrap();
    r.sd.wait_log("w: new definition taken; it stays stopped until started");
    let w = r.process("w");
    assert_eq!(w["state"], "stopped", "{w:#}\n{}", r.sd.log());
    assert!(pids(&w).is_empty(), "{w:#}\n{}", r.sd.log());
}

/// A stop asked for while a removal stops the process holds when a later
/// reload puts it back: it comes back stopped, as a stop during a
/// replacement cancels that replacement's start.
#[test]
fn a_stop_requested_during_a_removal_holds_when_the_process_is_put_back() {
    let r = Reload::start(
        "reload-putback-stop-during",
        "",
        &(gated(1) + &sleeper("keep", "v1")),
    );
    let started = r.wait_running("w", 2);
    wait_trapped(&r, &started);
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["w"]);
    assert!(
        wait_until(WAIT, || r.process("w")["state"] == "stopping"),
        "{:#}",
        r.process("w")
    );
    let s = r.post("/api/v1/processes/w/stop");
    assert!(s.status < 300, "{}", s.body);
    r.rewrite(&(gated(1) + &sleeper("keep", "v1")));
    assert_eq!(names(&r.reloaded(), "added"), ["w"]);
    std::fs::write(r.sd.dir.path("go1"), "").unwrap();
    let (stays, starts) = (
        "w: new definition taken; it stays stopped until started",
        "w: starting with its new definition",
    );
    assert!(
        wait_until(WAIT, || r.sd.log().contains(stays)
            || r.sd.log().contains(starts)),
        "{}",
        r.sd.log()
    );
    assert!(!r.sd.log().contains(starts), "{}", r.sd.log());
    assert_eq!(r.process("w")["state"], "stopped", "{}", r.sd.log());
}

#[test]
fn the_logs_of_a_scaled_down_instance_or_a_removed_process_stay_readable() {
    let procs = |legacy: bool| {
        let mut s = "  w:\n    command: \"echo $SHEEPDOG_INSTANCE says hi; exec sleep 1000\"\n    scale: 3\n    max_scale: 3\n".to_string();
        if legacy {
            s += "  legacy:\n    command: \"echo legacy line; exec sleep 1000\"\n";
        }
        s
    };
    let r = Reload::start("reload-gone-logs", "", &procs(true));
    r.wait_running("w", 3);
    r.wait_running("legacy", 1);
    r.sd.wait_log("legacy line");
    r.sd.wait_log("w-3 says hi");
    let s = http::post(
        r.port,
        "/api/v1/processes/w/scale",
        Some(TOKEN),
        r#"{"desired":1}"#,
    );
    assert_eq!(s.status, 202, "{}", s.body);
    r.rewrite(&procs(false));
    r.reloaded();
    assert!(
        wait_until(WAIT, || r.names() == ["w"]
            && pids(&r.process("w")).len() == 1),
        "{}",
        r.sd.log()
    );
    for (name, line) in [("w-3", "w-3 says hi"), ("legacy", "legacy line")] {
        let l = r.get(&format!("/api/v1/processes/{name}/logs"));
        assert_eq!(l.status, 200, "{name}: {}", l.body);
        assert!(l.body.contains(line), "{name}: {}", l.body);
    }
    assert_eq!(r.get("/api/v1/processes/nobody/logs").status, 404);
}

/// `keep` running and a run of `job` going on, which a reload has just
/// removed from the file (its removal waits for that run).
fn retired_job_running(name: &str) -> Reload {
    let r = Reload::start(name, "", &(sleeper("keep", "v1") + &gated_job("job", "")));
    r.wait_running("keep", 1);
    let t = r.post("/api/v1/processes/job/schedule/trigger");
    assert!(t.status < 300, "{}", t.body);
    assert!(
        wait_until(WAIT, || r.sd.dir.lines("job.started").len() == 1),
        "{}",
        r.sd.log()
    );
    r.rewrite(&sleeper("keep", "v1"));
    assert_eq!(names(&r.reloaded(), "removed"), ["job"]);
    r
}

#[test]
fn stopping_the_run_of_a_job_a_reload_removed_says_it_goes() {
    let r = retired_job_running("reload-stop-retired");
    let s = r.post("/api/v1/processes/job/stop");
    assert!(s.status < 300, "{}", s.body);
    let msg = s.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("removed by a reload"), "{msg}");
    assert!(!msg.contains("on its schedule"), "{msg}");
    r.sd.wait_log("job: removed");
}

/// Regression (security review findings 2 and 3): `run` logs at start-up
/// that a child of another user can reach the API without a token, and a
/// reload logs what it finds wrong with the file it read (here: others can
/// write it, so they could have sheepdog run anything as root).
#[test]
fn trust_warnings_are_logged_at_start_and_at_reload() {
    use std::os::unix::fs::PermissionsExt;
    let sd = Sheepdog::start(
        "reload-trust",
        "global:\n  api_port: 26030\n  metrics_enabled: false\nprocesses:\n  app:\n    command: \"exec sleep 1000\"\n    user: '65534'\n",
    );
    sd.wait_log(
        "WARN  sheepdog | config: global.api_auth: not set, so the API on 127.0.0.1:26030 \
         takes requests (stop, signal, reload, logs) from every child, also from those that \
         run as another user than sheepdog: app;",
    );
    let file = sd.dir.path("sheepdog.yaml");
    if std::fs::metadata(&file).unwrap().permissions().mode() & 0o022 == 0 {
        assert!(
            !sd.log().contains("can be changed by others"),
            "{}",
            sd.log()
        );
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    sd.signal(libc::SIGHUP);
    sd.wait_log(&format!(
        "config: configuration file {} (owner uid {}, mode 0666) can be changed by others than root and sheepdog",
        file.display(),
        nix::unistd::geteuid()
    ));
}

/// Top-level hooks whose pre_start waits for `$DIR/go`, and a post_start
/// that writes `tag` to `$DIR/post.runs`.
fn start_hooks(tag: &str) -> String {
    format!(
        "hooks:\n  pre_start:\n    - name: wait\n      command: \"while [ ! -e $DIR/go ]; do sleep 0.05; done\"\n  \
         post_start:\n    - name: mark\n      command: \"echo {tag} >> $DIR/post.runs\"\n"
    )
}

#[test]
fn a_post_start_hook_changed_before_it_ran_keeps_its_start_up_definition() {
    let a = sleeper("a", "v1");
    let r = Reload::start(
        "reload-post-start",
        "",
        &format!("{a}{}", start_hooks("v1")),
    );
    // Reloaded while the pre_start hook holds the start-up back.
    r.rewrite(&format!("{a}{}", start_hooks("v2")));
    let v = r.reloaded();
    assert_eq!(names(&v, "needs_restart"), ["hooks.post_start"], "{v:#}");
    r.sd.dir.write("go", "");
    r.wait_runs("a", &["v1"]);
    r.wait_runs("post", &["v1"]);
    // Still not applied: the next reload says so again.
    let v = r.reloaded();
    assert_eq!(names(&v, "needs_restart"), ["hooks.post_start"], "{v:#}");
    assert_eq!(r.sd.dir.lines("post.runs"), ["v1"]);
}

#[test]
fn ready_is_503_while_a_replacement_waits_for_its_post_stop_hook() {
    // web's cleanup runs until the test writes $DIR/go.
    let web = |v: u32| {
        format!(
            "  web:\n    command: \"exec sleep 1000\"\n    env: {{ V: \"{v}\" }}\n    \
             hooks:\n      post_stop: [ {{ name: cleanup, command: \"while [ ! -e $DIR/go ]; do sleep 0.05; done\" }} ]\n"
        )
    };
    let r = Reload::start("reload-ready-post-stop", "", &web(1));
    let old = r.wait_running("web", 1);
    assert!(wait_until(WAIT, || r.get("/api/v1/ready").status == 200));
    r.rewrite(&web(2));
    assert_eq!(names(&r.reloaded(), "changed"), ["web"]);
    let down = || {
        let p = r.process("web");
        p["state"] == "stopped" && p["operation"] == "replacing"
    };
    assert!(wait_until(WAIT, down), "{}", r.sd.log());
    let ready = r.get("/api/v1/ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("being restarted"), "{}", ready.body);
    r.sd.dir.write("go", "");
    assert_ne!(r.wait_running("web", 1), old);
    assert!(wait_until(WAIT, || r.get("/api/v1/ready").status == 200));
}

#[test]
fn a_job_whose_removal_waits_for_its_run_is_not_listed_as_removed_again() {
    let r = retired_job_running("reload-retired-twice");
    // As for a process still stopping for its removal.
    let v = r.reloaded();
    assert!(names(&v, "removed").is_empty(), "{v:#}");
    assert_eq!(names(&v, "unchanged"), ["job", "keep"], "{v:#}");
    std::fs::write(r.sd.dir.path("job.go"), "").unwrap();
    r.sd.wait_log("job: removed");
}

#[test]
fn a_finished_process_scaled_by_a_reload_waits_for_a_dependency_it_replaces() {
    // db's stop takes 300 ms and says when it is done.
    let procs = |v: u32, n: u32| {
        format!(
            "  db:\n    command: \"trap 'sleep 0.3; echo db-stopped >> $DIR/events; exit 0' TERM; echo db-v{v} >> $DIR/events; while :; do sleep 0.05; done\"\n  \
             worker:\n    command: \"echo worker >> $DIR/events\"\n    restart: never\n    scale: {n}\n    depends_on: [db]\n"
        )
    };
    let r = Reload::start("reload-scale-finished-dep", "", &procs(1, 1));
    assert!(
        wait_until(WAIT, || r.process("worker")["state"] == "finished"),
        "{:#}\n{}",
        r.process("worker"),
        r.sd.log()
    );
    // db has set its trap.
    assert!(wait_until(WAIT, || r.sd.dir.lines("events").len() == 2));
    r.rewrite(&procs(2, 2));
    let v = r.reloaded();
    assert_eq!(names(&v, "changed"), ["db"], "{v:#}");
    assert_eq!(names(&v, "scaled"), ["worker"], "{v:#}");
    // Started again as a changed one is: once its dependency is back.
    let done = || r.sd.dir.lines("events").len() >= 6;
    assert!(wait_until(WAIT, done), "{}", r.sd.log());
    // (A dependent starts once db has started, maybe before db's line.)
    let mut events = r.sd.dir.lines("events");
    events[..2].sort();
    events[3..].sort();
    assert_eq!(
        events,
        ["db-v1", "worker", "db-stopped", "db-v2", "worker", "worker"],
        "{}",
        r.sd.log()
    );
}

#[test]
fn a_scale_onto_the_ports_of_a_process_the_same_reload_removes_is_applied() {
    // `a` declares port P and `b` P+1. A file that removes `b` and scales
    // `a` to 2 (a-2 takes P+1) is valid, and `check` says so; the reload
    // refused the scale (not_applied, "meet the ports of processes.b"),
    // counting the process it was removing.
    let base = loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let a = |scale: u32| {
        format!("  a:\n    command: \"exec sleep 1000\"\n    ports: [{base}]\n    scale: {scale}\n")
    };
    let b = format!(
        "  b:\n    command: \"exec sleep 1000\"\n    ports: [{}]\n",
        base + 1
    );
    let r = Reload::start("reload-scale-ports", "", &(a(1) + &b));
    r.wait_running("a", 1);
    r.wait_running("b", 1);
    r.rewrite(&a(2));
    let v = r.reloaded();
    assert_eq!(names(&v, "scaled"), ["a"], "{v:#}");
    assert_eq!(names(&v, "removed"), ["b"], "{v:#}");
    assert!(
        v["not_applied"].as_array().is_none_or(|n| n.is_empty()),
        "{v:#}"
    );
    r.wait_running("a", 2);
}
