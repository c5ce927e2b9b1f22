//! Secrets stay where they were given: override variables do not reach the
//! children, a process's redaction covers its hooks and its health-check
//! failures, a child's JSON cannot pass for sheepdog's own record, and ctl
//! never echoes a URL's password.

mod common;

use common::*;

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
