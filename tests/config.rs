//! Configuration through the real binary: `sheepdog check -c FILE` exits 0
//! for valid files and 2 for invalid ones, and stderr names the key path,
//! the bad value and what was expected.
//!
//! Every child is waited for with a deadline (a waiter thread and
//! `recv_timeout`), and killed if it overruns. Temp files get unique names
//! and are removed when the test's `TempDir` drops, pass or fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sheepdog");
const DEADLINE: Duration = Duration::from_secs(30);

/// A unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("sheepdog-config-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the binary with a clean SHEEPDOG_* environment plus `env`, bounded.
fn run(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHEEPDOG_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().copied());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    bounded(cmd, args)
}

/// `cmd`'s output, killed and failed past `DEADLINE`.
fn bounded(mut cmd: Command, args: &[&str]) -> Output {
    let child = cmd.spawn().expect("spawn sheepdog");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for sheepdog"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("sheepdog {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

fn check(path: &Path, env: &[(&str, &str)]) -> Output {
    run(
        &["check", "-c", path.to_str().expect("utf-8 path")],
        env,
        None,
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2 and every `needle` on stderr.
fn assert_invalid(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stderr:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn assert_valid(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected exit 0; stderr:\n{}",
        stderr(out)
    );
}

const MIN: &str = "processes:\n  web:\n    command: [nginx, -g, 'daemon off;']\n";

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "uses keys and examples of the default features"
)]
fn valid_configs_exit_0() {
    let dir = TempDir::new("valid");
    assert_valid(&check(&dir.file("min.yaml", MIN), &[]));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/laravel.yaml");
    assert_valid(&check(&example, &[]));
}

#[test]
fn check_warns_about_a_log_directory_that_run_would_refuse() {
    let dir = TempDir::new("logdir");
    let missing = dir.0.join("no-such-dir");
    let f = dir.file(
        "logs.yaml",
        format!(
            "processes:\n  app:\n    command: [sleep, '1']\n    logging: {{file: {{path: '{}/{{instance}}.log'}}}}\n",
            missing.display()
        ),
    );
    let out = check(&f, &[]);
    assert_valid(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("directory {} does not exist", missing.display()))
            && text.contains("`run` refuses to start until this is fixed"),
        "{text}"
    );
    // And run does refuse.
    let out = run(&["run", "-c", f.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A readiness file that is a directory exists: say what `run` waits for.
    let f = dir.file(
        "ready.yaml",
        format!("global: {{readiness_file: '{}'}}\n{MIN}", dir.0.display()),
    );
    let out = check(&f, &[]);
    assert_valid(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("it is a directory")
            && text.contains("`run` refuses to start until this is fixed"),
        "{text}"
    );
}

/// `global.log_file` at `logs/sheepdog.log`, then a process's log file at
/// `logs/<file>`: each one `check` warns of, naming its key and `said`,
/// and `run` refuses with exit 2 before anything starts.
fn refused_up_front(dir: &TempDir, logs: &Path, file: &str, said: &str) {
    for (key, yaml) in [
        (
            "global.log_file",
            format!("global:\n  log_file: '{}/sheepdog.log'\n{MIN}", logs.display()),
        ),
        (
            "processes.app.logging.file.path",
            format!(
                "processes:\n  app:\n    command: [sleep, '1']\n    logging: {{file: {{path: '{}/{file}'}}}}\n",
                logs.display()
            ),
        ),
    ] {
        let f = dir.file("refused.yaml", &yaml);
        let out = check(&f, &[]);
        assert_valid(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        let warned = text.lines().any(|l| {
            l.contains(&format!("{key}: unable to open log file {}/", logs.display()))
                && l.contains(said)
                && l.ends_with("`run` refuses to start until this is fixed")
        });
        assert!(warned, "no warning for {key}:\n{text}");
        let out = run(&["run", "-c", f.to_str().unwrap()], &[], None);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
    }
}

/// A log path through a symlink in a directory a child's user owns (a
/// Laravel `storage/` owned by www-data, `logs` a link to a volume) is one
/// `run` will not follow: refused before anything starts, like a missing
/// directory, and `check` says so beforehand, per key.
#[test]
fn a_log_path_through_a_link_run_will_not_follow_is_refused_up_front() {
    let dir = TempDir::new("loglinks");
    let storage = dir.0.join("storage");
    let volume = dir.0.join("volume");
    std::fs::create_dir(&storage).unwrap();
    std::fs::create_dir(&volume).unwrap();
    std::os::unix::fs::symlink(&volume, storage.join("logs")).unwrap();
    // Others may write `storage`: as a child's user could (0777 stands in
    // for a chown, which needs root).
    std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o777)).unwrap();
    let logs = storage.join("logs");
    let link = "logs is a symlink in ";
    refused_up_front(&dir, &logs, "{instance}.log", link);
    // Nothing was created on the way.
    assert_eq!(std::fs::read_dir(&volume).unwrap().count(), 0);
    // A process that logs nothing writes no file: no problem.
    let f = dir.file(
        "quiet.yaml",
        format!(
            "processes:\n  quiet:\n    command: [sleep, '1']\n    logging: {{stdout: false, stderr: false, file: {{path: '{}/q.log'}}}}\n",
            logs.display()
        ),
    );
    let text = String::from_utf8_lossy(&check(&f, &[]).stdout).into_owned();
    assert!(!text.contains(link), "{text}");
}

/// A log file with a second name (a hard link a child made to a file of
/// root's) is refused before anything starts, as at its open.
#[test]
fn a_hard_linked_log_file_is_refused_up_front() {
    let dir = TempDir::new("loghardlinks");
    let victim = dir.file("victim", "root only\n");
    let logs = dir.0.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::hard_link(&victim, logs.join("app.log")).unwrap();
    std::fs::hard_link(&victim, logs.join("sheepdog.log")).unwrap();
    refused_up_front(
        &dir,
        &logs,
        "app.log",
        "it has 3 hard links; a log file has one",
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root only\n");
    // A file with one name is fine: it is appended to.
    std::fs::remove_file(logs.join("sheepdog.log")).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let f = dir.file(
        "one.yaml",
        format!(
            "global: {{api_enabled: false, metrics_enabled: false}}\nprocesses:\n  app:\n    type: oneshot\n    command: [sh, -c, 'echo written']\n    logging: {{file: {{path: '{}/app.log', stdout_too: false}}}}\n",
            logs.display()
        ),
    );
    // (Not on the default ports: CI failed here once, exit 1, most likely
    // as 9180 was taken.)
    let out = run(&["run", "-c", f.to_str().unwrap()], &[], None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    let text = std::fs::read_to_string(logs.join("app.log")).unwrap();
    assert!(
        text.starts_with("root only\n") && text.contains("written"),
        "{text}"
    );
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "uses keys and examples of the default features"
)]
fn check_warns_about_an_api_token_file_or_socket_directory_that_run_would_refuse() {
    let dir = TempDir::new("apifiles");
    let empty = dir.file("token", "\n");
    // A FIFO nobody writes: refused at once, never waited on.
    let fifo = dir.0.join("token.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (key, value, said) in [
        (
            "api_auth_file",
            dir.0.join("missing-token"),
            "global.api_auth_file: unable to read",
        ),
        ("api_auth_file", empty.clone(), "is empty; expected a token"),
        (
            "api_auth_file",
            fifo,
            "token.fifo: not a regular file; expected a file holding the token",
        ),
        (
            "api_socket",
            dir.0.join("no-dir/api.sock"),
            "global.api_socket: unable to listen on",
        ),
    ] {
        let f = dir.file(
            "api.yaml",
            format!(
                "global:\n  api_port: 0\n  metrics_enabled: false\n  {key}: '{}'\n{}processes:\n  app:\n    command: [sleep, '1']\n",
                value.display(),
                if key == "api_socket" {
                    String::new()
                } else {
                    format!("  api_socket: '{}'\n", dir.0.join("api.sock").display())
                }
            ),
        );
        let out = check(&f, &[]);
        assert_valid(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(said), "{key}: {text}");
        // And run refuses it as the configuration error it is: exit 2,
        // before anything starts.
        let out = run(&["run", "-c", f.to_str().unwrap()], &[], None);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{key}: {}", stderr(&out));
        assert!(!stderr(&out).contains("app-1: started"), "{}", stderr(&out));
    }
}

#[test]
fn bad_values_name_path_value_and_expectation() {
    let dir = TempDir::new("values");
    let f = dir.file(
        "bad.yaml",
        "processes:\n  web:\n    command: [nginx]\n    restart: sometimes\n",
    );
    let out = check(&f, &[]);
    assert_invalid(
        &out,
        &[
            &f.display().to_string(),
            "processes.web.restart: unknown value \"sometimes\"; expected one of always, on-failure, never",
        ],
    );
}

#[test]
fn unknown_keys_suggest_the_right_one() {
    let dir = TempDir::new("keys");
    let f = dir.file(
        "typo.yaml",
        "global:\n  shutdown_timout: 5\nprocesses:\n  web:\n    comand: [nginx]\n",
    );
    assert_invalid(
        &check(&f, &[]),
        &[
            "global.shutdown_timout: unknown key; did you mean \"shutdown_timeout\"?",
            "processes.web.comand: unknown key; did you mean \"command\"?",
            "processes.web.command: missing",
        ],
    );
}

#[test]
fn every_problem_is_reported() {
    let dir = TempDir::new("many");
    let f = dir.file(
        "many.yaml",
        "global: {log_level: loud}\nprocesses:\n  web: {command: [], scale: 0, shutdown: {signal: SIGNOPE, timeout: soon}}\n  nginx: {command: x, depends_on: [php-fpm]}\n",
    );
    assert_invalid(
        &check(&f, &[]),
        &[
            "global.log_level: unknown value \"loud\"; expected one of debug, info, warn, error",
            "processes.web.command: command is empty",
            "processes.web.scale: invalid value 0; expected at least 1",
            "processes.web.shutdown.signal: unknown signal \"SIGNOPE\"",
            "processes.web.shutdown.timeout: invalid duration \"soon\"",
            "processes.nginx.depends_on: unknown process \"php-fpm\"",
        ],
    );
}

#[test]
fn missing_file_is_named() {
    let dir = TempDir::new("missing");
    let f = dir.0.join("nope.yaml");
    assert_invalid(&check(&f, &[]), &["nope.yaml", "does not exist"]);
}

#[test]
fn a_dangling_symlink_is_named_with_its_target() {
    // `ls` shows the file, so "No such file or directory" (or "does not
    // exist" for -c) sent the operator the wrong way: name where it leads.
    let dir = TempDir::new("dangling");
    let target = "/nonexistent-sheepdog-cm/sheepdog.yaml";
    let link = dir.0.join("sheepdog.yaml");
    std::os::unix::fs::symlink(target, &link).expect("symlink");
    let want = format!(
        "unable to open {}: it is a symbolic link to {target}, which does not exist",
        link.display()
    );
    assert_invalid(&check(&link, &[]), &[&want]);
    let env = [("SHEEPDOG_CONFIG", link.to_str().expect("utf-8"))];
    assert_invalid(&run(&["check"], &env, None), &[&want]);
    // Found by discovery in the working directory, shown relative.
    assert_invalid(
        &run(&["check"], &[], Some(&dir.0)),
        &[&format!(
            "unable to open sheepdog.yaml: it is a symbolic link to {target}, which does not exist"
        )],
    );
}

#[test]
fn discovery_uses_sheepdog_config_then_the_working_directory() {
    let dir = TempDir::new("discover");
    let f = dir.file("elsewhere.yaml", MIN);
    let empty = TempDir::new("discover-empty");
    let via_env = run(
        &["check"],
        &[("SHEEPDOG_CONFIG", f.to_str().expect("utf-8"))],
        Some(&empty.0),
    );
    assert_valid(&via_env);
    let cwd = TempDir::new("discover-cwd");
    cwd.file("sheepdog.yaml", MIN);
    assert_valid(&run(&["check"], &[], Some(&cwd.0)));
    if !Path::new("/etc/sheepdog/sheepdog.yaml").exists() {
        assert_invalid(
            &run(&["check"], &[], Some(&empty.0)),
            &[
                "no configuration file found",
                "./sheepdog.yaml",
                "/etc/sheepdog/sheepdog.yaml",
            ],
        );
    }
}

#[test]
fn variables_are_substituted_from_the_environment() {
    let dir = TempDir::new("subst");
    let f = dir.file(
        "subst.yaml",
        "processes:\n  web:\n    command: [nginx]\n    scale: ${WEB_SCALE}\n    env: {MODE: '${MODE:-prod}'}\n",
    );
    assert_invalid(
        &check(&f, &[]),
        &["processes.web.scale: environment variable WEB_SCALE is not set"],
    );
    assert_valid(&check(&f, &[("WEB_SCALE", "2")]));
    assert_invalid(
        &check(&f, &[("WEB_SCALE", "two")]),
        &["processes.web.scale: invalid value \"two\"; expected an integer"],
    );
}

#[test]
fn environment_overrides_are_typed_and_checked() {
    let dir = TempDir::new("override");
    let f = dir.file("min.yaml", MIN);
    assert_valid(&check(
        &f,
        &[
            ("SHEEPDOG_PROCESS_WEB_SCALE", "1"),
            ("SHEEPDOG_PROCESS_WEB_ENABLED", "yes"),
            ("SHEEPDOG_GLOBAL_MAX_RESTART_ATTEMPTS", "0"),
            ("SHEEPDOG_PROCESS_WEB_SHUTDOWN_TIMEOUT", "10s"),
            ("SHEEPDOG_PROCESS_WORKER_COMMAND", "php,artisan,queue:work"),
        ],
    ));
    assert_invalid(
        &check(&f, &[("SHEEPDOG_PROCESS_WEB_SCALE", "lots")]),
        &[
            "processes.web.scale: invalid value \"lots\"",
            "(set by SHEEPDOG_PROCESS_WEB_SCALE)",
        ],
    );
    assert_invalid(
        &check(&f, &[("SHEEPDOG_GLOBAL_SHUTDOWN_TIMOUT", "5")]),
        &["SHEEPDOG_GLOBAL_SHUTDOWN_TIMOUT: no such global key; did you mean \"SHEEPDOG_GLOBAL_SHUTDOWN_TIMEOUT\"?"],
    );
    // A misspelt process name adds a process; its problems say which
    // variable added it, and suggest the name in the file. Before, only
    // `processes.wbe.command: missing` named a process found nowhere.
    let out = check(
        &f,
        &[
            ("SHEEPDOG_PROCESS_WBE_SCALE", "3"),
            ("SHEEPDOG_PROCESS_WBE_ENABLED", "lots"),
        ],
    );
    assert_invalid(
        &out,
        &[
            "processes.wbe.command: missing; every process needs a command (a list like [php-fpm, -F] or a shell string) \
             (set by SHEEPDOG_PROCESS_WBE_ENABLED, which adds process wbe: the file has no process of that name; did you mean \"web\"?)",
            "processes.wbe.enabled: invalid value \"lots\"; expected a boolean (true, false, yes, no, 1, 0) (set by SHEEPDOG_PROCESS_WBE_ENABLED)",
        ],
    );
}

#[test]
fn an_override_adds_a_process_named_after_an_existing_one() {
    let dir = TempDir::new("override-split");
    let app = dir.file(
        "app.yaml",
        "global: {api_enabled: false, metrics_enabled: false}\nprocesses:\n  app: {command: [sleep, '1']}\n",
    );
    // `app` has no key WORKER_COMMAND, so this adds `app-worker`. Before,
    // the prefix `app` stopped the search: "process app has no such key".
    let out = check(&app, &[("SHEEPDOG_PROCESS_APP_WORKER_COMMAND", "sleep 5")]);
    assert_valid(&out);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("app-worker-1"), "{listed}");
    assert_invalid(
        &check(&app, &[("SHEEPDOG_PROCESS_APP_COMAND", "sleep 5")]),
        &["SHEEPDOG_PROCESS_APP_COMAND: process app has no key COMAND, and APP_COMAND does not end \
           in a key to add a new process; did you mean \"SHEEPDOG_PROCESS_APP_COMMAND\"?"],
    );
}

#[test]
fn an_override_replaces_a_hook_list_spelt_the_phpeek_way() {
    let dir = TempDir::new("override-hooks");
    // A PHPeek-style `pre-start` list is replaced by the override. Before,
    // both spellings were set: "pre_start is also set".
    let hooks = dir.file(
        "hooks.yaml",
        "global: {api_enabled: false, metrics_enabled: false}\nprocesses:\n  web:\n    command: [sleep, '1']\n    hooks:\n      pre-start:\n        - {name: a, command: 'true'}\n",
    );
    assert_valid(&check(
        &hooks,
        &[(
            "SHEEPDOG_PROCESS_WEB_HOOKS_PRE_START",
            "[{name: b, command: 'false'}]",
        )],
    ));
    assert_invalid(
        &check(&hooks, &[("SHEEPDOG_PROCESS_WEB_HOOKS_PRE_START", "[{name: b}]")]),
        &["processes.web.hooks.pre_start[0].command: missing; expected a list of arguments or a shell \
           command string (set by SHEEPDOG_PROCESS_WEB_HOOKS_PRE_START)"],
    );
}

#[test]
fn check_says_how_long_the_container_runtime_must_wait() {
    // Docker's stop waits 10 s before SIGKILL; with the default
    // shutdown_timeout of 30 s nothing in the report said so.
    let dir = TempDir::new("runtime");
    let out = check(&dir.file("min.yaml", MIN), &[]);
    assert_valid(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "  runtime:    give the container runtime a stop timeout above 30s plus a margin"
        ),
        "{text}"
    );
    assert!(text.contains("Docker's default of 10s"), "{text}");
    // A deadline Docker's default covers gets no Docker remark.
    let out = check(
        &dir.file(
            "short.yaml",
            format!("global:\n  shutdown_timeout: 3s\n{MIN}"),
        ),
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stop timeout above 3s plus a margin"),
        "{text}"
    );
    assert!(!text.contains("Docker's default"), "{text}");
}

#[test]
fn dash_as_the_config_file_points_to_dev_stdin() {
    // `-c -` is how many tools read stdin; sheepdog reads a path, so
    // `cat cfg.yaml | sheepdog check -c -` said only that '-' does not exist.
    let out = run(&["check", "-c", "-"], &[], None);
    assert_invalid(&out, &["to read it from stdin, give -c /dev/stdin"]);
}

#[test]
fn hostile_files_are_rejected_cleanly() {
    let dir = TempDir::new("hostile");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.yaml", Vec::new(), "the configuration is empty"),
        (
            "list.yaml",
            b"- a\n- b\n".to_vec(),
            "the configuration must be a map",
        ),
        (
            "truncated.yaml",
            b"processes:\n  web:\n    command: [nginx, \"-g".to_vec(),
            "invalid YAML",
        ),
        (
            "binary.yaml",
            vec![0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1, 2],
            "not UTF-8",
        ),
        (
            "deep.yaml",
            format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            "nested more than 128 deep",
        ),
        (
            "deep-map.yaml",
            "a: {".repeat(10_000).into_bytes(),
            "invalid YAML",
        ),
        (
            "huge.yaml",
            vec![b'#'; 10 * 1024 * 1024],
            "the limit is 4194304 bytes (4 MiB)",
        ),
    ];
    for (name, content, needle) in cases {
        let f = dir.file(name, content);
        let out = check(&f, &[]);
        assert_invalid(&out, &[needle]);
        assert!(!stderr(&out).contains("panicked"), "{name} panicked");
    }
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let f = dir.file("bomb.yaml", bomb);
    assert_invalid(&check(&f, &[]), &["invalid YAML"]);
}

/// A FIFO given as the configuration with nobody writing to it: open(2)
/// used to block for good (deaf to SIGTERM, as PID 1 too); a FIFO with a
/// writer is read as usual.
#[test]
fn a_configuration_fifo_nobody_writes_to_is_refused_not_waited_for() {
    let dir = TempDir::new("config-fifo");
    let fifo = dir.0.join("sheepdog.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [&["check", "-c"][..], &["run", "--dry-run", "-c"]] {
        let mut all = args.to_vec();
        all.push(fifo.to_str().expect("utf-8 path"));
        assert_invalid(
            &run(&all, &[], None),
            &["it is a FIFO that nothing writes to; expected a YAML file"],
        );
    }
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::write(fifo, MIN)
    });
    // The writer blocks in open until a reader comes: retry until it did.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let out = check(&fifo, &[]);
        if out.status.code() == Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap().expect("write the fifo");
}

/// A misspelt value is compared with the valid ones for a did-you-mean;
/// a megabyte-long one (an API body, a generated file) must not cost a
/// table of its length times theirs: 2 MB here took 176 MB and aborted
/// under this address-space limit, which the real work fits in 10 times.
#[test]
fn a_huge_misspelt_value_costs_no_more_than_its_length() {
    let dir = TempDir::new("huge-value");
    let f = dir.file(
        "big.yaml",
        format!(
            "processes:\n  web:\n    command: x\n    restart: {}\n    shutdown: {{signal: {}}}\n",
            "a".repeat(2_000_000),
            "SIGHUP".repeat(300_000)
        ),
    );
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -v 131072 && exec \"$0\" \"$@\"",
        BIN,
        "check",
        "-c",
    ])
    .arg(&f)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = bounded(cmd, &["check (address space 128 MiB)"]);
    assert_invalid(
        &out,
        &[
            "processes.web.restart: unknown value \"aaaa",
            "expected one of always, on-failure, never",
            "processes.web.shutdown.signal: unknown signal \"SIGHUPSIGHUP",
        ],
    );
}

/// A key that is empty or holds a space or a control character is quoted
/// in its path, like one with a `.`: an empty top-level key used to give
/// the root path "", which named nothing and, once suppressed, hid every
/// other problem; a newline in a key split its problem over two lines that
/// read as two problems.
#[test]
fn odd_keys_are_quoted_in_paths() {
    let dir = TempDir::new("oddkeys");
    let f = dir.file(
        "empty.yaml",
        "\"\": 1\nprocesses: {a: {command: x, restart: bogus}}\n",
    );
    assert_invalid(
        &check(&f, &[]),
        &[
            "  - \"\": unknown key; expected one of version, global, hooks, processes",
            "processes.a.restart: unknown value \"bogus\"",
        ],
    );
    let f = dir.file(
        "control.yaml",
        "global: {\"a\\nprocesses.web.x: fake\": 1, \"b c\": 2}\nprocesses: {\"\": {command: x}}\n",
    );
    let out = check(&f, &[]);
    assert_invalid(
        &out,
        &[
            "  - global.\"a\\nprocesses.web.x: fake\": unknown key",
            "  - global.\"b c\": unknown key",
            "  - processes.\"\": invalid process name \"\"",
        ],
    );
    assert!(
        !stderr(&out).contains("\nprocesses.web.x"),
        "{}",
        stderr(&out)
    );
}

/// `::1` (an IPv6 address without a port) split as host `:` and port 1,
/// and `localhost :9000` as a host with a space: both passed the check and
/// then failed every probe with a lookup error.
#[test]
fn a_health_check_address_that_cannot_resolve_is_refused() {
    let dir = TempDir::new("address");
    for (addr, ok) in [
        ("::1", false),
        ("0::1", false),
        ("localhost :9000", false),
        ("[::1]:9000", true),
        ("::1:9000", true),
        // A link-local address with its zone: getaddrinfo resolves it.
        ("fe80::1%eth0:9000", true),
        ("localhost:9000", true),
    ] {
        let f = dir.file(
            "addr.yaml",
            format!(
                "processes:\n  web:\n    command: [sleep, '9']\n    health_check: {{type: tcp, address: '{addr}'}}\n"
            ),
        );
        let out = check(&f, &[]);
        if ok {
            assert_valid(&out);
        } else {
            assert_invalid(
                &out,
                &[&format!(
                    "processes.web.health_check.address: invalid value \"{addr}\"; expected host:port"
                )],
            );
        }
    }
}

/// Messages the fuzzing round found without an "expected" part, or with
/// one that did not read.
#[test]
fn out_of_range_ids_negative_numbers_and_stream_blocks_say_what_was_expected() {
    let dir = TempDir::new("expected");
    let f = dir.file(
        "ids.yaml",
        "processes:\n  a: {command: x, user: '99999999999999999999'}\n  b: {command: x, group: '4294967295'}\n  \
         c: {command: x, shutdown: {timeout: -1.5}}\n  d: {command: x, stdout: {a: 1}}\n",
    );
    assert_invalid(
        &check(&f, &[]),
        &[
            "processes.a.user: uid 99999999999999999999 is out of range; expected a uid from 0 to 4294967294",
            "processes.b.group: gid 4294967295 is out of range; expected a gid from 0 to 4294967294",
            "processes.c.shutdown.timeout: invalid duration -1.5; durations cannot be negative",
            "processes.d.stdout: expected true (log it), false (discard it) or \"inherit\", got a map",
        ],
    );
}

/// A `metrics_path` with a query or fragment, or a control character,
/// passed the check and then matched no request: the server compares the
/// path without its query, and refuses a control character in a target.
#[test]
fn a_metrics_path_no_request_can_match_is_refused() {
    let dir = TempDir::new("metrics-path");
    for bad in ["/metrics?x=1", "/metrics#top", "/met\\u0001rics"] {
        let f = dir.file(
            "m.yaml",
            format!("global:\n  metrics_path: \"{bad}\"\n{MIN}"),
        );
        assert_invalid(
            &check(&f, &[]),
            &[
                "global.metrics_path: invalid value",
                "expected a URL path starting with /",
            ],
        );
    }
    let f = dir.file(
        "ok.yaml",
        format!("global:\n  metrics_path: /prom/metrics\n{MIN}"),
    );
    assert_valid(&check(&f, &[]));
}

/// `restart_backoff_initial: 0` stays valid, but with unlimited attempts a
/// crash loop forks as fast as it can: one warning names every such
/// process (not those with a limit, `restart: never` or their own backoff).
#[test]
fn zero_backoff_with_unlimited_attempts_is_warned_about_once() {
    let dir = TempDir::new("backoff");
    let f = dir.file(
        "spin.yaml",
        "global: {restart_backoff_initial: 0, api_enabled: false, metrics_enabled: false}\n\
         processes:\n  a: {command: x}\n  b: {command: x, max_restart_attempts: 3}\n  \
         c: {command: x, restart: never}\n  d: {command: x, restart: on-failure}\n  \
         e: {command: x, restart_backoff_initial: 1s}\n",
    );
    let out = check(&f, &[]);
    assert_valid(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let spin: Vec<&str> = text.lines().filter(|l| l.contains("as fast as")).collect();
    assert_eq!(spin.len(), 1, "{text}");
    assert!(
        spin[0].contains("processes: a, d restart with restart_backoff_initial 0")
            && spin[0].contains("set restart_backoff_initial"),
        "{text}"
    );
    let f = dir.file(
        "one.yaml",
        format!("global: {{restart_backoff_initial: 0}}\n{MIN}"),
    );
    let f2 = dir.file(
        "two.yaml",
        "processes:\n  web: {command: x, restart_backoff_initial: 0ms}\n",
    );
    for f in [f, f2] {
        let out = check(&f, &[]);
        assert_valid(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("processes: web restart with"));
    }
}

/// Linux's alias signal names, and a day-of-week range ending on Sunday.
#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "uses keys and examples of the default features"
)]
fn signal_aliases_and_ranges_to_sunday_are_accepted() {
    let dir = TempDir::new("aliases");
    let f = dir.file(
        "ok.yaml",
        "processes:\n  a: {command: x, shutdown: {signal: SIGIOT, kill_signal: poll}}\n  \
         b: {command: x, shutdown: {signal: cld}}\n  \
         c: {command: x, schedule: '0 6 * * SAT-SUN'}\n",
    );
    let out = check(&f, &[]);
    assert_valid(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIGABRT, then SIGIO after"), "{text}");
}

/// Each `examples/bad/*.yaml` lists what stderr must say in `# expect:` lines.
#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "uses keys and examples of the default features"
)]
fn bad_examples_fail_with_their_expected_messages() {
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&bad)
        .expect("examples/bad exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read example");
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no '# expect:' line",
            f.display()
        );
        assert_invalid(&check(&f, &[]), &expects);
    }
}

/// Regression (security review finding 2): `user:` gives no isolation from
/// a TCP API without a token, so `check` names every child (process or
/// hook) that runs as another uid, and says what to do; not when a token
/// is set, nor for the unix socket alone (mode 0600).
#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron", feature = "http")),
    ignore = "uses keys and examples of the default features"
)]
fn check_warns_when_children_of_other_users_reach_an_api_without_a_token() {
    let dir = TempDir::new("apiusers");
    let procs = "hooks:\n  pre_start: [{name: g, command: x, user: '4242'}]\n\
                 processes:\n  a:\n    command: x\n    user: '4242'\n    \
                 hooks: {pre_stop: [{name: h, command: x, user: '4243'}]}\n  \
                 b: {command: x, group: '4242'}\n  c: {command: x, user: '4242', enabled: false}\n  \
                 d: {command: x, hooks: {pre_start: [{name: own, command: x}]}}\n";
    let said = "global.api_auth: not set, so the API on 127.0.0.1:26020 takes requests";
    let warned = |global: &str| {
        let f = dir.file("u.yaml", format!("global: {{{global}}}\n{procs}"));
        let out = check(&f, &[]);
        assert_valid(&out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(said)).collect();
        assert!(lines.len() <= 1, "{text}");
        lines.first().map(|l| l.to_string())
    };
    let line = warned("api_port: 26020").expect("a warning");
    assert!(
        line.contains("as another user than sheepdog: a, hook:g, a/hook:h; set api_auth or api_auth_file, or use api_socket with api_port: 0"),
        "{line}"
    );
    assert_eq!(warned("api_port: 26020, api_auth: t0ken"), None);
    assert_eq!(warned("api_port: 26020, api_enabled: false"), None);
    assert_eq!(warned("api_port: 0, api_socket: /tmp/x.sock"), None);
}

/// Regression (security review finding 3): a configuration file, or its
/// directory, that others can write is a way to run commands as root at the
/// next reload; a token file or a file with the token inline that others
/// can read gives the API away. `check` warns (and still exits 0).
#[test]
fn check_warns_about_files_others_can_change_or_read() {
    let dir = TempDir::new("perms");
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let lines = |f: &Path| {
        let out = check(f, &[("TOK", "from-env-token")]);
        assert_valid(&out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter(|l| l.contains("(owner uid"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Whatever the umask made them.
    mode(&dir.0, 0o755);
    let f = dir.file("c.yaml", MIN);
    mode(&f, 0o644);
    assert_eq!(lines(&f), Vec::<String>::new());
    mode(&f, 0o666);
    let got = lines(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains(&format!("configuration file {} (owner uid", f.display()))
            && got[0].contains("mode 0666) can be changed by others than root and sheepdog"),
        "{got:?}"
    );
    mode(&f, 0o644);
    mode(&dir.0, 0o777);
    let got = lines(&f);
    mode(&dir.0, 0o755);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains(&format!("configuration directory {} (", dir.0.display())),
        "{got:?}"
    );
    // A directory further up, and where a link really leads, count too:
    // whoever can change them can replace what is below.
    let sub = dir.0.join("sub");
    std::fs::create_dir(&sub).unwrap();
    mode(&sub, 0o755);
    let deep = sub.join("c.yaml");
    std::fs::write(&deep, MIN).unwrap();
    mode(&deep, 0o644);
    let link = TempDir::new("perms-link");
    mode(&link.0, 0o755);
    let via = link.0.join("c.yaml");
    std::os::unix::fs::symlink(&deep, &via).unwrap();
    mode(&dir.0, 0o777);
    let (above, linked) = (lines(&deep), lines(&via));
    mode(&dir.0, 0o755);
    for got in [above, linked] {
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains(&format!("configuration directory {} (", dir.0.display())),
            "{got:?}"
        );
    }
    // A sticky directory (/tmp) lets others add names, not replace this one.
    mode(&dir.0, 0o1777);
    let got = lines(&f);
    mode(&dir.0, 0o755);
    assert_eq!(got, Vec::<String>::new());

    let token = dir.file("token", "t0ken-in-a-file\n");
    let f = dir.file(
        "t.yaml",
        format!(
            "global: {{api_port: 26021, api_auth_file: '{}'}}\n{MIN}",
            token.display()
        ),
    );
    mode(&f, 0o644);
    mode(&token, 0o644);
    let got = lines(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(&format!(
            "  - global.api_auth_file: {} (owner uid",
            token.display()
        )) && got[0].contains("mode 0644) can be read by its group or everyone"),
        "{got:?}"
    );
    mode(&token, 0o400);
    assert_eq!(lines(&f), Vec::<String>::new());

    // The token written in the file, not one from the environment.
    let f = dir.file(
        "i.yaml",
        format!("global: {{api_port: 26021, api_auth: t0ken-inline}}\n{MIN}"),
    );
    mode(&f, 0o644);
    let got = lines(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("mode 0644) holds the token, and others can read it"),
        "{got:?}"
    );
    mode(&f, 0o600);
    assert_eq!(lines(&f), Vec::<String>::new());
    let f = dir.file(
        "e.yaml",
        format!("global: {{api_port: 26021, api_auth: '${{TOK}}'}}\n{MIN}"),
    );
    mode(&f, 0o644);
    assert_eq!(lines(&f), Vec::<String>::new());
}

#[test]
fn the_report_does_not_print_probe_arguments_or_queries_that_may_hold_secrets() {
    // `check` output ends up in CI logs: commands are left out because
    // after `${VAR}` substitution they may hold secrets, and so must a
    // probe's (`redis-cli -a $PASSWORD ping` is the usual redis check).
    let dir = TempDir::new("probe-secrets");
    let mut yaml = String::from(
        "processes:\n  redis:\n    command: [redis-server]\n    health_check:\n      \
         type: exec\n      command: [redis-cli, -a, '${PW}', ping]\n  sh:\n    \
         command: [sleep, '9']\n    \
         health_check: {type: exec, command: 'check --password=${PW}'}\n",
    );
    // http checks need the `http` feature.
    let http = cfg!(feature = "http");
    if http {
        yaml.push_str(
            "  api:\n    command: [sleep, '9']\n    health_check:\n      type: http\n      \
             url: 'http://127.0.0.1:8080/health?token=${PW}'\n",
        );
    }
    let path = dir.file("probes.yaml", yaml);
    let p = path.to_str().expect("utf-8 path");
    for args in [&["check", "-c", p][..], &["run", "--dry-run", "-c", p][..]] {
        let out = run(args, &[("PW", "s3cr3t-pw")], None);
        assert_valid(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("s3cr3t-pw"),
            "{args:?} printed the secret:\n{text}"
        );
        assert!(text.contains("health: exec redis-cli (liveness"), "{text}");
        assert_eq!(
            text.contains("health: http GET http://127.0.0.1:8080/health (liveness"),
            http,
            "{text}"
        );
    }
}

/// docs/cli.md (JSON): a process's `health_check` is its type, mode and
/// timings (never its target), `ports` its declared ports.
#[test]
fn check_json_gives_a_health_check_s_timings_and_the_ports() {
    let dir = TempDir::new("json-health");
    let path = dir.file(
        "h.yaml",
        "processes:\n  fpm:\n    command: [sleep, '9']\n    ports: [9000]\n    \
         health_check: {type: tcp, address: '127.0.0.1:{port}', initial_delay: 2s, startup_timeout: 1m}\n  \
         plain:\n    command: [sleep, '9']\n",
    );
    let out = run(
        &["check", "--json", "-c", path.to_str().expect("utf-8 path")],
        &[],
        None,
    );
    assert_valid(&out);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let fpm = &j["processes"][0];
    assert_eq!(
        fpm["health_check"],
        serde_json::json!({
            "type": "tcp", "mode": "both", "initial_delay_ms": 2000, "period_ms": 10000,
            "timeout_ms": 3000, "failure_threshold": 3, "success_threshold": 1,
            "startup_timeout_ms": 60000, "worst_case_detection_ms": 35000,
        })
    );
    assert_eq!(fpm["ports"], serde_json::json!([9000]));
    assert_eq!(j["processes"][1]["health_check"], serde_json::Value::Null);
}

#[test]
fn a_cycle_through_thousands_of_processes_is_found_within_the_deadline() {
    // Cycle detection was quadratic (11s for 2,000 processes in a debug
    // build); now linear and iterative. `check`'s bounded wait is the guard.
    let n = 3000;
    let name = |i: usize| format!("p{i:04}");
    let mut yaml = String::from("processes:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  {}: {{command: x, depends_on: [{}]}}\n",
            name(i),
            name((i + 1) % n)
        ));
    }
    // A chain of as many hanging off the cycle: stuck, but on no cycle.
    for i in 0..n {
        let dep = if i == 0 {
            name(0)
        } else {
            format!("q{:04}", i - 1)
        };
        yaml.push_str(&format!("  q{i:04}: {{command: x, depends_on: [{dep}]}}\n"));
    }
    let dir = TempDir::new("longcycle");
    let out = check(&dir.file("s.yaml", yaml), &[]);
    let cycle: Vec<String> = (0..=n).map(|i| name(i % n)).collect();
    assert_invalid(
        &out,
        &[&format!("dependency cycle: {}\n", cycle.join(" → "))],
    );
    assert_eq!(stderr(&out).matches("dependency cycle").count(), 1);
}
