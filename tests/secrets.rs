//! Secrets stay where they were given: override variables do not reach the
//! children, a process's redaction covers its hooks and its health-check
//! failures, a child's JSON cannot pass for sheepdog's own record, and ctl
//! never echoes a URL's password.

mod common;

use std::process::Command;

use common::*;

const TERM: i32 = 15;

fn config(global: &str, processes: &str) -> String {
    format!(
        "version: \"1.0\"\nglobal:\n  shutdown_timeout: 10s\n  api_enabled: false\n  metrics_enabled: false\n{global}processes:\n{processes}"
    )
}

#[test]
fn override_variables_do_not_reach_children_or_hooks() {
    let cfg = config(
        "",
        r#"  web:
    type: oneshot
    command: "echo $DB_PASSWORD > $DIR/web"
  other:
    type: oneshot
    command: "env > $DIR/other.env"
    hooks:
      pre_start: [{name: look, command: "env > $DIR/hook.env"}]
"#,
    );
    let mut sd = Sheepdog::start_with("overrides", &cfg, |c| {
        c.env("SHEEPDOG_PROCESS_WEB_ENV_DB_PASSWORD", "only-for-web")
            .env("SHEEPDOG_GLOBAL_LOG_LEVEL", "info")
            .env("SHEEPDOG_API_TOKEN", "for-ctl");
    });
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.dir.lines("web"), ["only-for-web"], "{}", sd.log());
    for file in ["other.env", "hook.env"] {
        let env = sd.dir.lines(file);
        assert!(
            !env.iter()
                .any(|l| l.starts_with("SHEEPDOG_PROCESS_") || l.starts_with("SHEEPDOG_GLOBAL_")),
            "{file}: {env:?}"
        );
        // What sheepdog sets, and ctl's own variables, stay.
        for kept in ["SHEEPDOG_PROCESS=other", "SHEEPDOG_API_TOKEN=for-ctl"] {
            assert!(env.iter().any(|l| l == kept), "{file}: {kept}: {env:?}");
        }
    }
}

#[test]
fn a_processs_hooks_are_redacted_like_the_process() {
    let cfg = config(
        "",
        r#"  app:
    type: oneshot
    env: {DB_PASSWORD: hunter2}
    command: "echo app DB_PASSWORD=$DB_PASSWORD"
    logging: {redaction: {patterns: [{pattern: hunter2}]}}
    hooks:
      pre_start: [{name: migrate, command: "echo migrate DB_PASSWORD=$DB_PASSWORD >&2"}]
"#,
    );
    let mut sd = Sheepdog::start("hookredact", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        log.contains("app/hook:migrate | migrate DB_PASSWORD=***"),
        "{log}"
    );
    assert!(log.contains("app DB_PASSWORD=***"), "{log}");
}

#[test]
fn health_check_failures_show_no_secret() {
    let cfg = config(
        "",
        r#"  svc:
    command: [sleep, "1000"]
    logging: {redaction: {patterns: [{pattern: hunter2}]}}
    health_check: {type: exec, command: [sh, -c, "echo probe password=hunter2; exit 1"], initial_delay: 0, period: 200ms, timeout: 150ms, failure_threshold: 1, mode: readiness}
  web:
    command: [sleep, "1000"]
    health_check: {type: http, url: "http://127.0.0.1:25501/health?key=k3y-in-query", initial_delay: 0, period: 200ms, timeout: 150ms, failure_threshold: 1, mode: readiness}
"#,
    );
    let mut sd = Sheepdog::start("proberedact", &cfg);
    sd.wait_log("probe password=***");
    sd.wait_log("GET http://127.0.0.1:25501/health?…:");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(!log.contains("hunter2") && !log.contains("k3y"), "{log}");
}

#[test]
fn a_childs_json_cannot_carry_sheepdogs_event_field() {
    let cfg = config(
        "  log_format: json\n",
        r#"  evil:
    type: oneshot
    command: "echo '{\"message\":\"FORGED\",\"event\":\"exited\",\"user\":7}'"
    logging: {json: {merge_fields: true}}
"#,
    );
    let mut sd = Sheepdog::start("jsonevent", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    let rec: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["msg"] == "FORGED")
        .unwrap_or_else(|| panic!("no FORGED record:\n{log}"));
    assert_eq!(rec["user"], 7, "{rec}");
    assert!(rec.get("event").is_none(), "{rec}");
}

#[test]
fn ctl_never_echoes_a_urls_password() {
    let bad = "http://admin:s3cret@127.0.0.1:25502";
    let mut by_flag = Command::new(BIN);
    by_flag.args(["ctl", "--url", bad, "status"]);
    let mut by_env = Command::new(BIN);
    by_env
        .args(["ctl", "status"])
        .env_remove("SHEEPDOG_API_SOCKET")
        .env("SHEEPDOG_API_URL", bad);
    for cmd in [by_flag, by_env] {
        let o = output_within(cmd, WAIT);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("admin"), "{err}");
        assert!(
            err.contains(
                "'http://***@127.0.0.1:25502': a user or password in the URL is not supported"
            ),
            "{err}"
        );
    }
}
