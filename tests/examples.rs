//! The shipped examples stay true: every `examples/*.yaml` passes `sheepdog
//! check` and is listed in `examples/README.md`, and every one of them but
//! `laravel.yaml` (it needs PHP, nginx and the `www-data` user, so it is
//! checked only) is run for real with the real binary, and does what its
//! row in the README's table says: each test asserts that example's own
//! claims (log lines and their order, exit codes, files, the API's answers,
//! `sheepdog ctl`), not a generic smoke test.
//!
//! Examples listen on fixed ports and write to fixed paths for a person who
//! runs them by hand; here every port comes from `free_ports` through the
//! documented overrides (`SHEEPDOG_GLOBAL_API_PORT`, `…_METRICS_PORT`,
//! `…_API_SOCKET`, and the examples' own `${PORT:-…}`, `${WEB_PORT:-…}`,
//! `${CACHE_PORT:-…}`, `${ENDPOINT_PORT:-…}`), and every path is under a
//! `TMPDIR` of the test's own (`${TMPDIR:-/tmp}` in the examples), so the
//! tests run in parallel with each other and with anything else on the
//! machine. Independent variants of one example run side by side.
//!
//! `examples/bad/*.yaml` failing with exit 2 and their messages is covered
//! by `tests/config.rs` (`bad_examples_fail_with_their_expected_messages`).
//!
//! Every wait has a deadline; every process a test starts is killed (by pid
//! or process group) when the test ends, pass or fail.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::http::free_ports;
use common::*;
use serde_json::Value;

/// Whether this build has every optional feature (the default build). A
/// minimal build refuses the examples that use what it leaves out.
const FULL_BUILD: bool = cfg!(all(feature = "api", feature = "cron", feature = "http"));

/// Variables the examples read (`${VAR:-default}`) or that sheepdog applies
/// as overrides: removed so the examples see their defaults, whatever the
/// environment of the person running the tests. Proxies too: the heartbeat
/// example pings 127.0.0.1, which a proxy from the environment would get.
fn hermetic(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHEEPDOG_") {
            cmd.env_remove(&k);
        }
    }
    for k in [
        "PORT",
        "WEB_PORT",
        "CACHE_PORT",
        "ENDPOINT_PORT",
        "WORKERS",
        "GREETING",
        "APP_DIR",
        "MIGRATE_EXIT",
        "RUN_AS_NOBODY",
        "LOG_LEVEL",
        "HORIZON_ENABLED",
        "QUEUE_CONNECTION",
        "TMPDIR",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(k);
    }
}

/// `sheepdog check -c file`, hermetic, bounded.
fn check(file: &Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check").arg("-c").arg(file);
    hermetic(&mut cmd);
    output_within(cmd, WAIT)
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// `examples/NAME`.
fn example(name: &str) -> PathBuf {
    examples_dir().join(name)
}

/// `examples/*.yaml`, sorted (not `examples/bad/`).
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples found");
    files
}

/// User names a file switches to (`user: NAME`, not commented out, not a
/// numeric uid or a ${VAR}) that do not exist on this machine.
fn missing_users(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("user:"))
        .map(|v| {
            v.split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\''])
                .to_string()
        })
        .filter(|name| {
            !name.is_empty()
                && !name.contains('$')
                && name.parse::<u32>().is_err()
                && !matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
        })
        .collect()
}

#[test]
fn missing_users_finds_only_unknown_names() {
    let text = "    user: no-such-user-sheepdog # why\n    # user: commented-out\n    user: 1000\n    user: ${APP_USER}\n    user: root\n";
    assert_eq!(missing_users(text), ["no-such-user-sheepdog"]);
}

#[test]
fn every_example_passes_check() {
    let mut checked = 0;
    for file in example_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).expect("read example");
        let missing = missing_users(&text);
        if !missing.is_empty() {
            eprintln!("skipping {name}: user(s) {missing:?} do not exist on this machine");
            continue;
        }
        let out = check(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A minimal build refuses, with exit 2 and this reason, a file that
        // uses what it leaves out (docs/configuration.md §11).
        if !FULL_BUILD
            && out.status.code() == Some(2)
            && stderr.contains("this build of sheepdog leaves out")
        {
            eprintln!("skipping {name}: it uses a feature this build leaves out");
            continue;
        }
        assert_eq!(
            out.status.code(),
            Some(0),
            "sheepdog check {name} failed:\n{stderr}{stdout}"
        );
        // An example should show good practice: its shutdown fits its budget.
        assert!(
            !stdout.contains("WARNING:"),
            "{name} exceeds its shutdown budget:\n{stdout}"
        );
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn every_example_is_listed_in_the_examples_readme() {
    let readme =
        std::fs::read_to_string(examples_dir().join("README.md")).expect("examples/README.md");
    for file in example_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("({name})")),
            "examples/README.md does not link {name}"
        );
    }
}

/// A new example gets a test here that runs it: its name must appear, as a
/// string literal, in this file. `laravel.yaml` alone is check-only.
#[test]
fn every_example_but_laravel_is_run_by_a_test_here() {
    let this = include_str!("examples.rs");
    for file in example_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name == "laravel.yaml" {
            continue;
        }
        assert!(
            this.contains(&format!("example(\"{name}\")")),
            "no test in tests/examples.rs runs {name} (as example(\"{name}\"))"
        );
    }
}

/// scheduling.yaml's header says what it needs: without zoneinfo its
/// Europe/Amsterdam job makes the whole file fail to load, so "sh only"
/// was wrong. Checked for real with zoneinfo hidden (root, `unshare -m`).
#[test]
#[cfg_attr(not(feature = "cron"), ignore = "time zones need feature `cron`")]
fn scheduling_example_says_it_needs_zoneinfo_and_does() {
    let text = std::fs::read_to_string(example("scheduling.yaml")).unwrap();
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    assert!(header.join("\n").contains("tzdata"), "{header:#?}");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c"])
        .arg("mount -t tmpfs none /usr/share/zoneinfo && exec \"$0\" check -c \"$1\"")
        .arg(BIN)
        .arg(example("scheduling.yaml"));
    hermetic(&mut cmd);
    cmd.env_remove("TZDIR");
    let out = output_within(cmd, WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("sheepdog") {
        eprintln!("skipping the load without zoneinfo: unshare -m unavailable: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs the tzdata package"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Helpers for running examples

/// Run `file` (an example, or a copy of one) with a hermetic environment
/// whose `TMPDIR` is `tmp`, then `tweak`.
fn run(tag: &str, file: &Path, tmp: &TempDir, tweak: impl FnOnce(&mut Command)) -> Sheepdog {
    Sheepdog::start_file(tag, file, |cmd| {
        hermetic(cmd);
        cmd.env("TMPDIR", &tmp.0);
        tweak(cmd);
    })
}

/// `run` with `N` fresh loopback ports handed to `tweak`; the first `own`
/// of them are sheepdog's own listeners (API, metrics). Returns once its
/// log says it listens on each of those. A port someone else took between
/// `free_ports` and sheepdog's bind makes it exit "unable to listen"; then
/// this tries again with new ports (like `common::start_serving`).
fn run_listening<const N: usize>(
    tag: &str,
    file: &Path,
    tmp: &TempDir,
    own: usize,
    tweak: impl Fn(&mut Command, [u16; N]),
) -> (Sheepdog, [u16; N]) {
    let (sd, ports) = with_free_ports(|ports| {
        let sd = run(tag, file, tmp, |cmd| tweak(cmd, ports));
        (sd, ports[..own].to_vec())
    });
    assert!(
        listening_on(&sd, &ports[..own]),
        "sheepdog does not listen:\n{}",
        sd.log()
    );
    (sd, ports)
}

/// Run `sheepdog ctl ARGS`, bounded by `WAIT`, with the token (if any) in
/// `SHEEPDOG_API_TOKEN` as the README does, and no other `SHEEPDOG_*`
/// variable of the person running the tests.
fn ctl(args: &[&str], token: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.arg("ctl").args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHEEPDOG_") {
            c.env_remove(&k);
        }
    }
    if let Some(t) = token {
        c.env("SHEEPDOG_API_TOKEN", t);
    }
    output_within(c, WAIT)
}

/// The stdout of a `ctl` that must have succeeded.
fn ctl_ok(args: &[&str], token: Option<&str>) -> String {
    let o = ctl(args, token);
    assert!(
        o.status.success(),
        "sheepdog ctl {args:?} failed ({:?}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Instance id → pid, from `ctl --json status` (or `GET /api/v1/status`).
fn instance_pids(status: &Value) -> BTreeMap<String, i64> {
    status["processes"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .flat_map(|p| p["instances"].as_array().map_or(&[][..], Vec::as_slice))
        .filter_map(|i| Some((i["id"].as_str()?.to_string(), i["pid"].as_i64()?)))
        .collect()
}

/// A raw `GET / HTTP/1.0` on 127.0.0.1:`port`: the whole response, or None
/// if nothing answers.
fn http_get(port: u16) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Byte offset of the first log line containing `needle`.
fn pos(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in log:\n{log}"))
}

/// Byte offset of the first line containing every one of `parts`.
fn pos_all(log: &str, parts: &[&str]) -> usize {
    let mut at = 0;
    for line in log.split_inclusive('\n') {
        if parts.iter().all(|p| line.contains(p)) {
            return at;
        }
        at += line.len();
    }
    panic!("no line with all of {parts:?} in log:\n{log}")
}

/// Whether the offsets are strictly increasing.
fn in_order(at: &[usize]) -> bool {
    at.windows(2).all(|w| w[0] < w[1])
}

/// How many lines of `log` contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Wait until the log contains `needle` after the `n`th (1-based) line
/// containing `after`.
fn wait_log_after(sd: &Sheepdog, after: &str, n: usize, needle: &str) {
    let seen = || {
        let log = sd.log();
        let mut at = 0;
        let mut found = 0;
        for line in log.split_inclusive('\n') {
            at += line.len();
            if line.contains(after) {
                found += 1;
                if found == n {
                    return log[at..].contains(needle);
                }
            }
        }
        false
    };
    assert!(
        wait_until(WAIT, seen),
        "timed out waiting for {needle:?} after line {n} with {after:?}; log:\n{}",
        sd.log()
    );
}

/// Wait for sheepdog's exit code after a SIGTERM.
fn stop(sd: &mut Sheepdog) -> i32 {
    sd.signal(libc::SIGTERM);
    sd.exit_code(WAIT)
}

// ---------------------------------------------------------------------------
// One test per example (laravel.yaml is check-only: see the header)

#[test]
fn basic_example_serves_its_page_and_stops_workers_before_web() {
    // `prepare` writes the page under ${TMPDIR:-/tmp}: give it this test's own.
    let tmp = TempDir::new("example-basic-tmp");
    let [port] = free_ports::<1>();
    let mut sd = run("example-basic", &example("basic.yaml"), &tmp, |cmd| {
        cmd.env("PORT", port.to_string());
    });
    let mut answer = None;
    let served = wait_until(WAIT, || {
        answer = http_get(port);
        answer
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") && r.contains("hello from sheepdog"))
    });
    assert!(
        served,
        "no hello page on port {port}; last answer {answer:?}; log:\n{}",
        sd.log()
    );
    // Both workers are up before the stop, so both must be stopped first.
    sd.wait_log("worker-1: started (pid");
    sd.wait_log("worker-2: started (pid");
    let log = sd.log();
    assert!(
        pos(&log, "prepare-1: completed") < pos(&log, "web-1: started"),
        "{log}"
    );
    assert!(
        pos(&log, "web-1: started") < pos(&log, "worker-1: started"),
        "{log}"
    );
    // The workers poll the page on the same PORT (the first poll may come
    // before web listens; the next is 5s later).
    sd.wait_log("worker-1: web ");
    sd.wait_log("worker-2: web ");
    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    let web_stop = pos(&log, "web-1: stopping pid");
    for w in ["worker-1: stopped", "worker-2: stopped"] {
        assert!(
            pos(&log, w) < web_stop,
            "{w} must come before web stops:\n{log}"
        );
    }
    assert!(pos(&log, "web-1: stopped (exited 0)") > web_stop, "{log}");
}

#[test]
fn restart_policies_example_applies_each_policy_backoff_and_the_attempt_limit() {
    let tmp = TempDir::new("example-restart-tmp");
    let mut sd = run(
        "example-restart",
        &example("restart-policies.yaml"),
        &tmp,
        |_| {},
    );
    // broken: 500ms + 1s + 2s of backoff, then it gives up.
    sd.wait_log("broken-1: failed: exited 1; gave up after 3 restart attempts");
    // steady's run lasts 3s, longer than restart_reset_after: after its
    // clean exit it is restarted at attempt 1.
    sd.wait_log("steady-1: started (pid");
    assert!(
        sd.wait_log_n("steady-1: started (pid", 2, WAIT),
        "steady was not restarted:\n{}",
        sd.log()
    );
    // By now (more than 3s in) a restart of once or flaky, 500ms to 2s
    // after its exit, would have happened.
    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    // steady: restart: always, also after exit 0.
    pos_all(
        &log,
        &[
            "steady-1: exited 0 after",
            "restarting (attempt 1, backoff 500ms)",
        ],
    );
    // broken: growing backoff, 3 restarts, 4 runs.
    let broken: Vec<usize> = [(1, "500ms"), (2, "1s"), (3, "2s")]
        .iter()
        .map(|(n, b)| {
            pos_all(
                &log,
                &[
                    "broken-1: exited 1 after",
                    &format!("restarting (attempt {n}, backoff {b})"),
                ],
            )
        })
        .chain([pos(&log, "gave up after 3 restart attempts")])
        .collect();
    assert!(in_order(&broken), "{log}");
    assert_eq!(sd.pids_of("broken-1").len(), 4, "{log}");
    // flaky: two failures with 500ms and 1s of backoff, then left alone.
    let flaky = [
        pos(&log, "flaky: run 1 fails"),
        pos_all(&log, &["flaky-1: exited 1", "(attempt 1, backoff 500ms)"]),
        pos(&log, "flaky: run 2 fails"),
        pos_all(&log, &["flaky-1: exited 1", "(attempt 2, backoff 1s)"]),
        pos(&log, "flaky: run 3 succeeds"),
        pos_all(
            &log,
            &[
                "flaky-1: exited 0 after ",
                "; not restarting (restart: on-failure)",
            ],
        ),
    ];
    assert!(in_order(&flaky), "{log}");
    assert_eq!(sd.pids_of("flaky-1").len(), 3, "{log}");
    // once: restart: never.
    pos_all(
        &log,
        &[
            "once-1: exited 1 after ",
            "; not restarting (restart: never)",
        ],
    );
    assert_eq!(sd.pids_of("once-1").len(), 1, "{log}");
}

#[test]
fn oneshot_dependency_example_gates_on_the_migration_and_fails_without_it() {
    let tmp = TempDir::new("example-oneshot-tmp");
    let file = example("oneshot-dependency.yaml");
    let mut good = run("example-oneshot", &file, &tmp, |_| {});
    let mut bad = run("example-oneshot-fail", &file, &tmp, |cmd| {
        cmd.env("MIGRATE_EXIT", "1");
    });

    // A failed migration: nothing else starts, sheepdog exits 1 by itself.
    assert_eq!(bad.exit_code(WAIT), 1, "{}", bad.log());
    let log = bad.log();
    let order = [
        pos(&log, "migrate: a migration failed"),
        pos(&log, "migrate-1: failed: exited 1"),
        pos(
            &log,
            "cannot start app: dependency migrate failed (exited 1)",
        ),
    ];
    assert!(in_order(&order), "{log}");
    for p in ["app", "worker"] {
        assert!(!log.contains(&format!("starting {p}")), "{log}");
        assert!(!log.contains(&format!("{p}-1: started")), "{log}");
    }

    // The good run: app and worker only after migrate completed.
    good.wait_log("app: schema is ready, serving");
    good.wait_log("worker: consuming jobs");
    let log = good.log();
    let done = pos(&log, "migrate-1: completed");
    assert!(pos(&log, "migrate: done") < done, "{log}");
    for line in [
        "starting app",
        "starting worker",
        "app-1: started",
        "worker-1: started",
    ] {
        assert!(
            done < pos(&log, line),
            "{line} before the migration:\n{log}"
        );
    }
    assert_eq!(stop(&mut good), 0, "{}", good.log());
}

#[test]
fn critical_example_gives_up_on_api_stops_the_sidecar_and_exits_1_by_itself() {
    let tmp = TempDir::new("example-critical-tmp");
    let mut sd = run("example-critical", &example("critical.yaml"), &tmp, |_| {});
    // About 8s: three runs of 2s, 1.5s of backoff. No signal from here.
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    // optional's failure changes nothing: api runs on for seconds after.
    let optional = pos_all(
        &log,
        &[
            "optional-1: exited 1 after ",
            "; not restarting (restart: never)",
        ],
    );
    assert!(optional < pos(&log, "api: crashed"), "{log}");
    let order = [
        pos_all(&log, &["api-1: exited 1", "(attempt 1, backoff 500ms)"]),
        pos_all(&log, &["api-1: exited 1", "(attempt 2, backoff 1s)"]),
        pos(
            &log,
            "api-1: failed: exited 1; gave up after 2 restart attempts",
        ),
        pos(&log, "api-1 is critical and failed: shutting down"),
        pos(&log, "sidecar: got SIGTERM, exiting"),
        pos(&log, "sidecar-1: stopped (exited 0)"),
        pos(&log, "exiting with code 1"),
    ];
    assert!(in_order(&order), "{log}");
    assert_eq!(sd.pids_of("api-1").len(), 3, "{log}");
    assert_eq!(sd.pids_of("sidecar-1").len(), 1, "{log}");
    assert_eq!(sd.pids_of("optional-1").len(), 1, "{log}");
}

#[test]
fn scaling_example_runs_n_instances_that_each_know_who_they_are() {
    let tmp = TempDir::new("example-scaling-tmp");
    let file = example("scaling.yaml");
    // The file's 3, ${WORKERS}, and the override (which wins over WORKERS).
    let variants: [(usize, &[(&str, &str)]); 3] = [
        (3, &[]),
        (5, &[("WORKERS", "5")]),
        (
            2,
            &[("WORKERS", "5"), ("SHEEPDOG_PROCESS_WORKER_SCALE", "2")],
        ),
    ];
    let mut runs: Vec<(usize, Sheepdog)> = variants
        .iter()
        .map(|(n, env)| {
            let sd = run(&format!("example-scaling-{n}"), &file, &tmp, |cmd| {
                cmd.envs(env.iter().copied());
            });
            (*n, sd)
        })
        .collect();
    for (n, sd) in &mut runs {
        let n = *n;
        for i in 1..=n {
            sd.wait_log(&format!(
                "worker-{i}: instance {i} of worker, would listen on port {}, queue default",
                9000 + i
            ));
        }
        let log = sd.log();
        pos(&log, &format!("starting worker ({n} instances)"));
        let pids: std::collections::BTreeSet<i32> = (1..=n)
            .flat_map(|i| sd.pids_of(&format!("worker-{i}")))
            .collect();
        assert_eq!(pids.len(), n, "each instance its own pid:\n{log}");
        assert!(!log.contains(&format!("worker-{}", n + 1)), "{log}");
        assert_eq!(stop(sd), 0, "{}", sd.log());
    }
    // `check` names the instances.
    let out = check(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("scale: 3 (worker-1, worker-2, worker-3)"),
        "{text}"
    );
}

#[test]
fn env_and_user_example_shows_env_substitution_working_dir_and_nobody() {
    let tmp = TempDir::new("example-env-tmp");
    let file = example("env-and-user.yaml");
    let mut plain = run("example-env", &file, &tmp, |_| {});
    let mut custom = run("example-env-custom", &file, &tmp, |cmd| {
        cmd.env("GREETING", "bonjour")
            .env("APP_DIR", "/")
            .env("SHEEPDOG_PROCESS_SHOW_ENV_ENV_TARGET", "override");
    });
    let root = nix::unistd::geteuid().is_root();
    let mut nobody = root.then(|| {
        run("example-env-nobody", &file, &tmp, |cmd| {
            cmd.env("RUN_AS_NOBODY", "true");
        })
    });
    // HOME reaches the child from sheepdog's environment.
    let home = std::env::var("HOME").unwrap_or_default();

    // Both oneshots complete: sheepdog ends by itself with 0.
    assert_eq!(plain.exit_code(WAIT), 0, "{}", plain.log());
    let log = plain.log();
    pos(&log, "show-env-1 | GREETING=hello TARGET=world WORKERS=4");
    pos(
        &log,
        &format!(
            "show-env-1 | I am show-env-1, uid {}, in /tmp, HOME={home}",
            nix::unistd::geteuid()
        ),
    );
    assert!(!log.contains("as-nobody-1"), "disabled by default:\n{log}");

    assert_eq!(custom.exit_code(WAIT), 0, "{}", custom.log());
    let log = custom.log();
    pos(
        &log,
        "show-env-1 | GREETING=bonjour TARGET=override WORKERS=4",
    );
    pos(&log, "I am show-env-1, uid");
    pos(&log, &format!(", in /, HOME={home}"));

    match nobody.as_mut() {
        Some(sd) => {
            assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
            let user = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .expect("user nobody (check() skips the file without it)");
            let log = sd.log();
            // Its primary group, and no group of root's left over.
            pos(
                &log,
                &format!(
                    "as-nobody-1 | now uid {}, gid {}, groups {}\n",
                    user.uid, user.gid, user.gid
                ),
            );
            pos(&log, "as-nobody-1: completed");
        }
        None => println!("SKIPPED the RUN_AS_NOBODY variant: it needs root"),
    }
}

#[test]
#[cfg_attr(not(feature = "api"), ignore = "uses sheepdog ctl (feature `api`)")]
fn initial_state_example_holds_profiler_without_holding_report_until_ctl_starts_it() {
    let tmp = TempDir::new("example-initial-tmp");
    let file = example("initial-state.yaml");
    let sock = tmp.path("api.sock");
    let sock2 = tmp.path("api2.sock");
    let mut sd = run("example-initial", &file, &tmp, |cmd| {
        cmd.env("SHEEPDOG_GLOBAL_API_SOCKET", &sock);
    });
    let mut running = run("example-initial-running", &file, &tmp, |cmd| {
        cmd.env("SHEEPDOG_GLOBAL_API_SOCKET", &sock2)
            .env("SHEEPDOG_PROCESS_PROFILER_INITIAL_STATE", "running");
    });
    let sock = sock.to_str().unwrap();

    // check: planned but stopped; legacy-cron not planned at all.
    let out = check(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("level 0: app, profiler (stopped)"), "{text}");
    // report depends on profiler.
    let report = text.split("\n  report\n").nth(1).unwrap_or_default();
    assert_eq!(
        report
            .lines()
            .find(|l| l.trim_start().starts_with("depends_on:")),
        Some("    depends_on: profiler"),
        "{text}"
    );
    assert!(
        text.contains("legacy-cron: disabled (enabled: false; not planned)"),
        "{text}"
    );

    // report starts although it depends on the held profiler.
    sd.wait_log("report: started (profiler is optional)");
    sd.wait_log("app: running");
    let log = sd.log();
    pos(&log, "profiler: initial_state is stopped; not starting it");
    assert!(!log.contains("profiler-1: started"), "{log}");
    assert!(!log.contains("legacy-cron"), "{log}");
    let table = ctl_ok(&["--socket", sock, "status"], None);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["profiler", "-", "held"])),
        "{table}"
    );

    // ctl start over the socket starts it; a disabled process does not exist.
    let out = ctl_ok(&["--socket", sock, "start", "profiler"], None);
    assert!(out.contains("starting profiler"), "{out}");
    sd.wait_log("profiler: collecting samples");
    assert!(
        wait_until(WAIT, || {
            ctl_ok(&["--socket", sock, "status"], None)
                .lines()
                .any(|l| l.starts_with("profiler ") && l.contains(" running "))
        }),
        "{}",
        sd.log()
    );
    let o = ctl(&["--socket", sock, "start", "legacy-cron"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no process named \"legacy-cron\""),
        "{o:?}"
    );
    assert_eq!(stop(&mut sd), 0, "{}", sd.log());

    // With the override, profiler starts too, before report.
    running.wait_log("report: started");
    let log = running.log();
    assert!(
        pos(&log, "profiler-1: started") < pos(&log, "starting report"),
        "{log}"
    );
    assert_eq!(stop(&mut running), 0, "{}", running.log());
}

#[test]
#[cfg_attr(
    not(feature = "http"),
    ignore = "uses an http health check (feature `http`)"
)]
fn health_checks_example_gates_app_restarts_only_the_sick_worker_and_keeps_the_ready_file() {
    let tmp = TempDir::new("example-health-tmp");
    let ready = tmp.path("sheepdog-health-example.ready");
    let sick = tmp.path("sheepdog-sick-worker-2");
    let [web, cache] = free_ports::<2>();
    let mut sd = run(
        "example-health",
        &example("health-checks.yaml"),
        &tmp,
        |cmd| {
            cmd.env("WEB_PORT", web.to_string())
                .env("CACHE_PORT", cache.to_string());
        },
    );
    // worker depends on cache, whose check is its port.
    sd.wait_log("worker-2: healthy");
    let log = sd.log();
    assert!(
        pos(&log, "cache-1: healthy") < pos(&log, "starting worker"),
        "{log}"
    );
    let worker1 = sd.pids_of("worker-1");
    let worker2 = sd.pids_of("worker-2");
    assert_eq!((worker1.len(), worker2.len()), (1, 1), "{log}");

    // Only worker-2 sees its file: it turns unhealthy and is stopped the
    // graceful way, then started again.
    std::fs::write(&sick, "").unwrap();
    sd.wait_log("worker-2: unhealthy: 2 consecutive failed health checks");
    assert!(
        sd.wait_log_n("worker-2: started (pid", 2, WAIT),
        "{}",
        sd.log()
    );
    std::fs::remove_file(&sick).unwrap();
    pos(
        &sd.log(),
        &format!(
            "worker-2: stopping pid {}: SIGTERM to its process group",
            worker2[0]
        ),
    );
    // Well again once the file is gone.
    wait_log_after(&sd, "worker-2: started (pid", 2, "worker-2: healthy");

    // app waited for both web and cache; then everything is ready.
    sd.wait_log("app: web and cache are ready");
    assert!(
        wait_until(WAIT, || ready.exists()),
        "no {}:\n{}",
        ready.display(),
        sd.log()
    );
    let log = sd.log();
    let app = pos(&log, "starting app");
    assert!(pos(&log, "web-1: healthy") < app, "{log}");
    assert!(pos(&log, "cache-1: healthy") < app, "{log}");
    assert!(!log.contains("worker-1: unhealthy"), "{log}");
    assert_eq!(
        sd.pids_of("worker-1"),
        worker1,
        "worker-1 kept its pid:\n{log}"
    );
    assert!(http_get(web).is_some_and(|r| r.starts_with("HTTP/1.0 200")));

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
    assert!(!ready.exists(), "the readiness file outlived the shutdown");
    let log = sd.log();
    let removed = format!("readiness file {}: removed", ready.display());
    assert!(
        log[pos(&log, "shutting down")..].contains(&removed),
        "{log}"
    );
}

#[test]
fn hooks_example_runs_its_hooks_in_the_order_described() {
    let tmp = TempDir::new("example-hooks-tmp");
    let mut sd = run("example-hooks", &example("hooks.yaml"), &tmp, |_| {});
    sd.wait_log("post_start hook \"warm\" succeeded");
    let log = sd.log();
    // migrate fails once, succeeds on its retry, and nothing starts before.
    let migrated = pos(&log, "pre_start hook \"migrate\" succeeded");
    let start = [
        pos(&log, "hook:migrate | database not ready yet"),
        pos(
            &log,
            "pre_start hook \"migrate\" attempt 1/3 failed: exited 1; retrying in 1s",
        ),
        pos(&log, "hook:migrate | migrations done"),
        migrated,
        pos(&log, "started (pid"),
    ];
    assert!(in_order(&start), "{log}");
    // prepare before each worker; warm once everything is up.
    let warm = pos(&log, "hook:warm | warming caches");
    assert_eq!(
        count(&log, "worker/hook:prepare | preparing worker"),
        3,
        "{log}"
    );
    for i in 1..=3 {
        let prepared = pos(
            &log,
            &format!("worker-{i}: pre_start hook \"prepare\" succeeded"),
        );
        let started = pos(&log, &format!("worker-{i}: started (pid"));
        assert!(
            migrated < prepared && prepared < started && started < warm,
            "{log}"
        );
    }
    assert!(pos(&log, "web-1: started") < warm, "{log}");

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    // maintenance, drain once for the 3 workers, their SIGTERM, web, bye.
    assert_eq!(
        count(&log, "draining the queue once for all workers"),
        1,
        "{log}"
    );
    let drained = pos(&log, "worker: pre_stop hook \"drain\" succeeded");
    let order = [
        pos(&log, "shutting down"),
        pos(&log, "hook:maintenance | maintenance mode on"),
        pos(&log, "worker/hook:drain | draining the queue"),
        drained,
    ];
    assert!(in_order(&order), "{log}");
    for i in 1..=3 {
        let stopping = pos(&log, &format!("worker-{i}: stopping pid"));
        let got = pos(&log, &format!("worker-{i} got SIGTERM"));
        assert!(drained < stopping && drained < got, "{log}");
        assert!(pos(&log, &format!("worker-{i}: stopped")) < pos(&log, "web-1: stopping"));
    }
    let end = [
        pos(&log, "web-1: stopped"),
        pos(&log, "hook:bye | all stopped"),
        pos(&log, "post_stop hook \"bye\" succeeded"),
        pos(&log, "shutdown complete"),
    ];
    assert!(in_order(&end), "{log}");
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "cron")),
    ignore = "uses the API and a cron expression (features `api`, `cron`)"
)]
fn scheduling_example_runs_skips_times_out_and_answers_ctl() {
    // `report` runs in Europe/Amsterdam: without zoneinfo for it the file
    // does not load. Say so, rather than fail on a missing listener.
    let file = example("scheduling.yaml");
    let out = check(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("unknown time zone"),
        "examples/scheduling.yaml needs zoneinfo for Europe/Amsterdam, which this \
         machine lacks: install tzdata (apt-get install tzdata, apk add tzdata):\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    let tmp = TempDir::new("example-scheduling-tmp");
    let (mut sd, [api]) = run_listening("example-scheduling", &file, &tmp, 1, |cmd, [a]| {
        cmd.env("SHEEPDOG_GLOBAL_API_PORT", a.to_string());
    });
    pos(
        &sd.log(),
        "report: scheduled \"0 * * * *\" (time zone Europe/Amsterdam)",
    );
    let url = format!("http://127.0.0.1:{api}");
    // stuck's first run is at 5s and is stopped 2s later, by its timeout:
    // by then heartbeat ran 3 times and slow overlapped its triggers.
    sd.wait_log("exceeded its schedule_timeout (2s); stopping it");
    wait_log_after(&sd, "exceeded its schedule_timeout", 1, "timed out after");
    let log = sd.log();
    assert!(count(&log, "| run ") >= 2, "heartbeat every 2s:\n{log}");
    pos_all(&log, &["heartbeat#", "| run ", "(schedule) at "]);
    pos(
        &log,
        "slow: 1 run still going (schedule_max_concurrent: 1); skipping this run",
    );
    pos_all(&log, &["stuck#", "| stopping"]);
    // slow never overlaps itself: every start comes after the previous end.
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sheepdog") && l.contains("| slow#"))
        .filter(|l| l.contains(" started (pid") || l.contains(" exited "))
        .collect();
    assert!(
        slow.iter()
            .enumerate()
            .all(|(i, l)| l.contains(if i % 2 == 0 { " started " } else { " exited " })),
        "{slow:#?}"
    );

    let table = ctl_ok(&["--url", &url, "schedules"], None);
    for (name, expr) in [
        ("heartbeat", "@every 2s"),
        ("slow", "@every 1s"),
        ("stuck", "@every 5s"),
        ("report", "0 * * * *"),
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(expr)),
            "{table}"
        );
    }
    let json: Value =
        serde_json::from_str(&ctl_ok(&["--url", &url, "--json", "schedules"], None)).unwrap();
    let job = |name: &str| -> Value {
        json["schedules"]
            .as_array()
            .and_then(|a| a.iter().find(|j| j["process"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {json}"))
    };
    assert_eq!(job("report")["timezone"], "Europe/Amsterdam", "{json}");
    assert!(
        job("slow")["stats"]["skipped"].as_u64() >= Some(1),
        "{json}"
    );
    assert!(
        job("stuck")["stats"]["timeout"].as_u64() >= Some(1),
        "{json}"
    );
    assert!(
        job("heartbeat")["stats"]["success"].as_u64() >= Some(2),
        "{json}"
    );

    let out = ctl_ok(&["--url", &url, "trigger", "report", "--wait"], None);
    assert!(out.contains(": success (exit 0)"), "{out}");
    sd.wait_log("report#");
    sd.wait_log("| hourly report for ");
    pos(&sd.log(), "report: run");

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
}

#[test]
#[cfg_attr(
    not(all(feature = "api", feature = "http")),
    ignore = "uses metrics and heartbeats (features `api`, `http`)"
)]
fn heartbeat_example_pings_its_endpoint_and_counts_the_broken_one() {
    let tmp = TempDir::new("example-heartbeat-tmp");
    let (mut sd, [metrics, _endpoint]) = run_listening(
        "example-heartbeat",
        &example("heartbeat.yaml"),
        &tmp,
        1,
        |cmd, [m, e]| {
            cmd.env("SHEEPDOG_GLOBAL_METRICS_PORT", m.to_string())
                .env("ENDPOINT_PORT", e.to_string());
        },
    );
    // broken and gone run first at 10s; broken's refused connection is
    // retried twice (1s, 2s), gone's 404 not at all.
    sd.wait_log("broken: heartbeat failure ping failed:");
    let log = sd.log();
    let get = |path: &str| format!("\"GET {path} HTTP/1.1\"");
    // backup: start, then success, from one run.
    assert!(
        pos(&log, &get("/backup/start")) < pos(&log, &get("/backup/")),
        "{log}"
    );
    // flaky: its second run fails.
    assert!(
        pos(&log, &get("/flaky/")) < pos(&log, &get("/flaky/fail")),
        "{log}"
    );
    pos(&log, "flaky#");
    pos(&log, "| disk full");
    // web, a longrun, every 3s.
    assert!(count(&log, &get("/web/")) >= 2, "{log}");
    // broken: 3 attempts, each refused.
    let order = [
        pos(&log, "broken: heartbeat failure ping attempt 1 failed"),
        pos(&log, "broken: heartbeat failure ping attempt 2 failed"),
        pos(&log, "broken: heartbeat failure ping failed:"),
    ];
    assert!(in_order(&order), "{log}");
    pos_all(
        &log,
        &[
            "broken: heartbeat failure ping attempt 1 failed",
            "GET http://127.0.0.1:1/…: connect to 127.0.0.1:1: ",
            "; retrying in 1s",
        ],
    );
    pos_all(
        &log,
        &["broken: heartbeat failure ping failed:", "(attempt 3)"],
    );
    // gone: one attempt, its 404 the same every time.
    pos_all(
        &log,
        &[
            "gone: heartbeat failure ping failed:",
            "status 404, expected 2xx (attempt 1)",
        ],
    );
    assert!(
        !log.contains("gone: heartbeat failure ping attempt"),
        "{log}"
    );

    let scrape = http::get(metrics, "/metrics", None);
    assert_eq!(scrape.status, 200);
    for line in [
        "sheepdog_heartbeat_failures_total{process=\"broken\"} 1",
        "sheepdog_heartbeats_total{process=\"broken\",result=\"failure\"} 1",
        "sheepdog_heartbeat_failures_total{process=\"gone\"} 1",
        "sheepdog_heartbeat_failures_total{process=\"web\"} 0",
    ] {
        assert!(
            scrape.body.lines().any(|l| l == line),
            "no {line}:\n{}",
            scrape.body
        );
    }
    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
}

#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "the HTTP API and metrics (feature `api`)"
)]
fn api_example_serves_the_api_with_its_token_socket_ctl_and_metrics() {
    const TOKEN: &str = "s3cret";
    let tmp = TempDir::new("example-api-tmp");
    let sock = tmp.path("api.sock");
    let (mut sd, [api, metrics, web]) = run_listening(
        "example-api",
        &example("api.yaml"),
        &tmp,
        2,
        |cmd, [a, m, w]| {
            cmd.env("SHEEPDOG_API_TOKEN", TOKEN)
                .env("SHEEPDOG_GLOBAL_API_PORT", a.to_string())
                .env("SHEEPDOG_GLOBAL_METRICS_PORT", m.to_string())
                .env("SHEEPDOG_GLOBAL_API_SOCKET", &sock)
                .env("WEB_PORT", w.to_string());
        },
    );
    let url = format!("http://127.0.0.1:{api}");
    let sock = sock.to_str().unwrap();

    // The token guards everything but the health endpoint.
    assert_eq!(http::get(api, "/api/v1/health", None).status, 200);
    assert_eq!(http::get(api, "/api/v1/processes", None).status, 401);
    assert_eq!(
        http::get(api, "/api/v1/processes", Some("wrong")).status,
        401
    );
    let workers = http::wait_running(api, Some(TOKEN), "worker", 2)
        .unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    let web1 = http::wait_running(api, Some(TOKEN), "web", 1)
        .unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    assert!(
        wait_until(WAIT, || http_get(web)
            .is_some_and(|r| r.starts_with("HTTP/1.0 200"))),
        "web does not serve on {web}:\n{}",
        sd.log()
    );

    // ctl: the table over TCP, and the same over the socket.
    let table = ctl_ok(&["--url", &url, "status"], Some(TOKEN));
    for inst in ["web-1", "worker-1", "worker-2"] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(inst) && l.contains(" running ")),
            "{table}"
        );
    }
    let table = ctl_ok(&["--socket", sock, "status"], Some(TOKEN));
    assert!(table.contains("worker-2"), "{table}");
    assert_eq!(ctl(&["--url", &url, "status"], None).status.code(), Some(1));

    // scale worker 3; not past its max_scale of 5.
    let out = ctl_ok(&["--url", &url, "scale", "worker", "3"], Some(TOKEN));
    assert!(out.contains("scaling worker from 2 to 3"), "{out}");
    let now = http::wait_running(api, Some(TOKEN), "worker", 3)
        .unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    assert_eq!(now[..2], workers[..], "worker-1 and worker-2 keep running");
    let o = ctl(&["--url", &url, "scale", "worker", "6"], Some(TOKEN));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("6 is above its max_scale of 5"),
        "{o:?}"
    );

    // restart web: a new pid.
    let out = ctl_ok(&["--url", &url, "restart", "web"], Some(TOKEN));
    assert!(out.contains("restarting web"), "{out}");
    sd.wait_log("web: rolling restart complete");
    let web2 = http::wait_running(api, Some(TOKEN), "web", 1)
        .unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    assert_ne!(web1, web2);
    // A second web would bind the same fixed port, which web-1 holds once
    // it serves again.
    assert!(
        wait_until(WAIT, || http_get(web)
            .is_some_and(|r| r.starts_with("HTTP/1.0 200"))),
        "web does not serve on {web} after its restart:\n{}",
        sd.log()
    );

    ctl_ok(&["--url", &url, "scale", "web", "2"], Some(TOKEN));
    sd.wait_log("web-2: exited 1");
    pos_all(&sd.log(), &["web-2 ", "Address already in use"]);
    ctl_ok(&["--url", &url, "scale", "web", "1"], Some(TOKEN));
    http::wait_running(api, Some(TOKEN), "web", 1).unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));

    // Prometheus metrics, no token.
    let scrape = http::get(metrics, "/metrics", None);
    assert_eq!(scrape.status, 200);
    for line in [
        "sheepdog_process_desired_scale{process=\"worker\"} 3",
        "sheepdog_process_up{process=\"worker\",instance_id=\"worker-3\"} 1",
        "sheepdog_process_restarts_total{process=\"web\",reason=\"manual\"} 1",
    ] {
        assert!(
            scrape.body.lines().any(|l| l == line),
            "no {line}:\n{}",
            scrape.body
        );
    }
    promtool_check(&scrape.body);

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
}

#[test]
fn logging_example_frames_levels_filters_files_redacts_and_routes_output() {
    let text_tmp = TempDir::new("example-logging-tmp");
    let json_tmp = TempDir::new("example-logging-json-tmp");
    let file = example("logging.yaml");
    // The nginx file, nearly full, with 3 rotated files: its first line
    // rotates it (max_size 1KiB), so no test waits for 1 KiB of lines.
    let nginx = text_tmp.path("sheepdog-example-nginx-1.log");
    std::fs::write(&nginx, "prefilled\n".repeat(100)).unwrap();
    for n in 1..=3 {
        text_tmp.write(
            &format!("sheepdog-example-nginx-1.log.{n}"),
            &format!("old {n}\n"),
        );
    }
    let mut text = run("example-logging", &file, &text_tmp, |_| {});
    let mut json = run("example-logging-json", &file, &json_tmp, |cmd| {
        cmd.env("SHEEPDOG_GLOBAL_LOG_FORMAT", "json");
    });

    // laravel: the stack trace is one ERROR record, written on the
    // multiline timeout (1s) although nothing follows it for 5s.
    let error = "ERROR laravel-1 | [2026-01-01 10:00:01] local.ERROR: Division by zero";
    text.wait_log(error);
    let log = text.log();
    assert!(
        !log.contains("job 2 done"),
        "the record waited for the next one:\n{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().position(|l| l.contains(error)).unwrap();
    assert_eq!(
        lines.get(at + 1..at + 6).unwrap_or_default(),
        [
            "[stacktrace]",
            "#0 /var/www/vendor/laravel/framework/src/Illuminate/Container/BoundMethod.php(36): App\\Jobs\\Report->handle()",
            "#1 /var/www/artisan(35): Illuminate\\Foundation\\Console\\Kernel->handle()",
            "#2 {main}",
            "\"}",
        ],
        "{log}"
    );
    pos(
        &log,
        "INFO  laravel-1 | [2026-01-01 10:00:01] local.INFO: job 1 done",
    );

    // secrets: replaced before anything prints them.
    text.wait_log("secrets-1 | calling the API with token=[redacted]");
    text.wait_log("secrets-1 | Authorization: ***");
    // direct: straight to sheepdog's stdout, no prefix.
    assert!(
        wait_until(WAIT, || text
            .log()
            .lines()
            .any(|l| l == "direct: written straight to our stdout")),
        "{}",
        text.log()
    );
    // chatter: its stdout is /dev/null.
    text.wait_log("chatter-1: started (pid");
    let chatter = text.pids_of("chatter-1")[0];
    assert_eq!(
        std::fs::read_link(format!("/proc/{chatter}/fd/1")).unwrap(),
        Path::new("/dev/null")
    );

    // nginx: rotated at its first line: .1 the full file, .2 and .3 the
    // older ones, the oldest gone.
    assert!(
        wait_until(WAIT, || text.log().lines().any(|l| l.contains("nginx-1 ")
            && l.contains(" | 10.0.0.7 - - ")
            && l.contains("\"GET /products/1 "))),
        "{}",
        text.log()
    );
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&nginx)
            .is_ok_and(|s| s.contains("GET /products/1 "))),
        "{}",
        text.log()
    );
    let rotated = |n: u32| {
        std::fs::read_to_string(text_tmp.path(&format!("sheepdog-example-nginx-1.log.{n}")))
            .unwrap_or_default()
    };
    assert_eq!(rotated(1), "prefilled\n".repeat(100));
    assert_eq!(rotated(2), "old 1\n");
    assert_eq!(rotated(3), "old 2\n");
    assert!(!text_tmp.path("sheepdog-example-nginx-1.log.4").exists());
    // SIGUSR1 reopens it: moved away, a new file takes the next lines.
    let moved = text_tmp.path("nginx-moved.log");
    std::fs::rename(&nginx, &moved).unwrap();
    text.signal(libc::SIGUSR1);
    text.wait_log("received SIGUSR1: reopening log files");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&nginx)
            .is_ok_and(|s| s.contains("GET /products/"))),
        "no new {}:\n{}",
        nginx.display(),
        text.log()
    );

    // monolog: message and level from the JSON; DEBUG dropped (checked
    // once its next round, 4s later, is out).
    text.wait_log("INFO  monolog-1 | order 1 placed");
    text.wait_log("monolog-1 | order 2 placed");
    assert_eq!(stop(&mut text), 0, "{}", text.log());
    let log = text.log();
    let file_text =
        std::fs::read_to_string(&nginx).unwrap() + &std::fs::read_to_string(&moved).unwrap();
    for never in [
        "cache hit",
        "GET /health",
        "sk_live_",
        "eyJhbGci",
        "nobody reads this",
    ] {
        assert!(!log.contains(never), "{never:?} in the log:\n{log}");
        assert!(!file_text.contains(never), "{never:?} in the nginx file");
    }
    assert!(
        file_text
            .lines()
            .all(|l| l.contains(" INFO  nginx-1 ") && l.contains(" | 10.0.0.7 - - ")),
        "{file_text}"
    );

    // The same as JSON records: level, message and fields.
    let records = |sd: &Sheepdog| -> Vec<Value> {
        sd.log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let found = |pred: &dyn Fn(&Value) -> bool| records(&json).into_iter().find(|r| pred(r));
    let mut laravel = None;
    assert!(
        wait_until(WAIT, || {
            laravel = found(&|r| r["process"] == "laravel" && r["level"] == "error");
            laravel.is_some()
        }),
        "{}",
        json.log()
    );
    let laravel = laravel.unwrap();
    let msg = laravel["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("[2026-01-01 10:00:01] local.ERROR: Division by zero"),
        "{msg}"
    );
    assert!(
        msg.contains("\n[stacktrace]\n#0 ") && msg.ends_with("#2 {main}\n\"}"),
        "{msg}"
    );
    assert_eq!(
        (&laravel["app"], &laravel["tier"]),
        (&Value::from("shop"), &Value::from("worker"))
    );
    let mut order = None;
    assert!(
        wait_until(WAIT, || {
            order = found(&|r| r["msg"] == "order 1 placed");
            order.is_some()
        }),
        "{}",
        json.log()
    );
    let order = order.unwrap();
    assert_eq!(order["level"], "info", "{order}");
    assert_eq!(order["process"], "monolog", "{order}");
    assert_eq!(order["channel"], "shop", "{order}");
    assert_eq!(order["context"], serde_json::json!({"order": 1}), "{order}");
    assert_eq!(stop(&mut json), 0, "{}", json.log());
    // Only `direct` (inherit) writes raw lines among the JSON.
    for l in json.log().lines().filter(|l| !l.starts_with('{')) {
        assert_eq!(
            l,
            "direct: written straight to our stdout",
            "{}",
            json.log()
        );
    }
    assert!(records(&json).iter().all(|r| r["msg"] != "cache hit"));
}

#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "reloads through the API (feature `api`)"
)]
fn reload_example_edited_changes_only_what_changed() {
    let tmp = TempDir::new("example-reload-tmp");
    // Run a copy, as the README does, and copy the edit over it.
    let copy = tmp.path("sheepdog-reload.yaml");
    std::fs::copy(example("reload.yaml"), &copy).unwrap();
    let (mut sd, [api]) = run_listening("example-reload", &copy, &tmp, 1, |cmd, [a]| {
        cmd.env("SHEEPDOG_GLOBAL_API_PORT", a.to_string());
    });
    let url = format!("http://127.0.0.1:{api}");
    let status = || -> BTreeMap<String, i64> {
        instance_pids(
            &serde_json::from_str(&ctl_ok(&["--url", &url, "--json", "status"], None)).unwrap(),
        )
    };
    for (name, n) in [("db", 1), ("app", 1), ("worker", 2), ("legacy", 1)] {
        http::wait_running(api, None, name, n).unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    }
    sd.wait_log("legacy: up");
    let before = status();
    assert!(
        !sd.log().contains(" DEBUG "),
        "log_level is info:\n{}",
        sd.log()
    );

    std::fs::copy(example("reload-edited.yaml"), &copy).unwrap();
    let out = ctl_ok(&["--url", &url, "reload"], None);
    let summary = format!(
        "reloaded {}: added mailer; removed legacy; changed app; scaled worker; 1 unchanged; \
         only a restart of sheepdog applies global.log_buffer_lines",
        copy.display()
    );
    assert!(out.contains(&summary), "{out}");
    sd.wait_log(&summary);
    sd.wait_log("reload: global.log_buffer_lines changed; it applies only when sheepdog restarts");
    sd.wait_log("legacy: stopping");
    sd.wait_log("mailer: up");
    sd.wait_log("worker-3: up");
    sd.wait_log("app: bonjour from pid");
    http::wait_running(api, None, "worker", 3).unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    http::wait_running(api, None, "app", 1).unwrap_or_else(|v| panic!("{v}\n{}", sd.log()));
    assert!(
        wait_until(WAIT, || !status().contains_key("legacy-1")),
        "{:?}",
        status()
    );
    let after = status();
    for kept in ["db-1", "worker-1", "worker-2"] {
        assert_eq!(
            after.get(kept),
            before.get(kept),
            "{kept} was touched: {before:?} {after:?}"
        );
    }
    assert_ne!(after.get("app-1"), before.get("app-1"));
    pos(
        &sd.log(),
        &format!("app: bonjour from pid {}", after["app-1"]),
    );
    assert!(
        after.contains_key("mailer-1") && after.contains_key("worker-3"),
        "{after:?}"
    );
    // log_level debug at once: ctl's requests are logged at debug now.
    wait_log_after(&sd, &summary, 1, " DEBUG ");

    // A typo in the copy: ctl reload exits 1 naming it; nothing changes.
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace("command:", "comand:");
    std::fs::write(&copy, text).unwrap();
    let o = ctl(&["--url", &url, "reload"], None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("processes.db.comand: unknown key; did you mean \"command\"?"),
        "{err}"
    );
    sd.wait_log("reload: nothing changed; still running the configuration loaded before");
    assert_eq!(status(), after);

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
}

#[test]
fn minimal_init_example_sets_up_runs_tidy_and_restarts_the_sick_daemon() {
    let tmp = TempDir::new("example-minimal-tmp");
    let dir = tmp.path("sheepdog-minimal");
    let mut sd = run(
        "example-minimal",
        &example("minimal-init.yaml"),
        &tmp,
        |_| {},
    );
    sd.wait_log("daemon-1: started (pid");
    let log = sd.log();
    assert!(
        pos(&log, "setup-1: completed") < pos(&log, "starting daemon"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("state")).unwrap(),
        "ready\n"
    );
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(dir.join("beat"))
            .is_ok_and(|s| s.trim().parse::<u64>().is_ok())),
        "daemon does not beat:\n{}",
        sd.log()
    );
    let first = sd.pids_of("daemon-1")[0];

    // Sick: unhealthy after 3 failed checks, stopped gracefully, restarted.
    std::fs::write(dir.join("sick"), "").unwrap();
    sd.wait_log("daemon-1: unhealthy: 3 consecutive failed health checks");
    assert!(
        sd.wait_log_n("daemon-1: started (pid", 2, WAIT),
        "{}",
        sd.log()
    );
    std::fs::remove_file(dir.join("sick")).unwrap();
    pos(
        &sd.log(),
        &format!("daemon-1: stopping pid {first}: SIGTERM to its process group"),
    );
    wait_log_after(&sd, "daemon-1: started (pid", 2, "daemon-1: healthy");

    // tidy, @every 10s, counts the state directory (state and beat).
    sd.wait_log("| tidying: ");
    let log = sd.log();
    let at = pos(&log, "| tidying: ");
    let n: usize = log[at..]
        .trim_start_matches("| tidying: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(n >= 2, "{log}");
    assert!(pos(&log, "tidy: scheduled \"@every 10s\"") < at, "{log}");

    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
}

#[test]
fn shutdown_order_example_stops_in_reverse_kills_the_stubborn_one_and_ends_the_daemon() {
    let tmp = TempDir::new("example-shutdown-tmp");
    let mut sd = run(
        "example-shutdown",
        &example("shutdown-order.yaml"),
        &tmp,
        |_| {},
    );
    // Each process installs its trap before it prints "up".
    for p in ["db", "app", "worker", "stubborn", "daemon"] {
        sd.wait_log(&format!("{p}: up"));
    }
    assert_eq!(stop(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    // The children's lines, in the order their dependencies demand. Each
    // sheepdog "stopped" line is written before the next process is even
    // signalled; each child prints 0.3s before it exits.
    let order = [
        "worker: got SIGTERM",
        "worker-1: stopped (exited 0)",
        "app: got SIGTERM",
        "app-1: stopped (exited 0)",
        "db: got SIGTERM",
        "db-1: stopped (exited 0)",
    ];
    let at: Vec<usize> = order.iter().map(|n| pos(&log, n)).collect();
    assert!(
        in_order(&at),
        "expected this order: {order:#?}\nlog:\n{log}"
    );
    // stubborn is signalled at once (nothing depends on it), ignores it, and
    // is killed with its group at its 3s timeout.
    let stubborn = [
        "stubborn: got SIGTERM, ignoring it",
        "still running after 3s; sending SIGKILL",
        "stubborn-1: stopped (killed by SIGKILL)",
    ];
    let at: Vec<usize> = stubborn.iter().map(|n| pos(&log, n)).collect();
    assert!(in_order(&at), "{log}");
    assert!(
        pos(&log, "stubborn: got SIGTERM") < pos(&log, "app: got SIGTERM"),
        "{log}"
    );
    // The daemon outside every group is ended last, with SIGTERM.
    let last = [
        "db-1: stopped",
        "stubborn-1: stopped",
        "1 left-over process still running outside the stopped process groups",
        "daemon: got SIGTERM at the end of the shutdown",
        "shutdown complete",
    ];
    let at: Vec<usize> = last.iter().map(|n| pos(&log, n)).collect();
    assert!(
        at[0] < at[2] && at[1] < at[2] && at[2] < at[3] && at[3] < at[4],
        "{log}"
    );
}

// The guides' configurations (docs/guides/)

/// docs/guides/kubernetes.md §1 keeps the API token in a Secret file so that
/// the workers do not hold it. Mounted as the guide mounts it (a Secret
/// volume's files are mode 0644 unless `defaultMode` says otherwise), the
/// ConfigMap's configuration must pass `check` without a warning: a token
/// file everyone in the container can read is one.
#[test]
fn kubernetes_guide_config_with_its_secret_mounted_as_shown_passes_check_cleanly() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/guides/kubernetes.md"),
    )
    .expect("read the kubernetes guide");
    // The ConfigMap's `sheepdog.yaml: |` block, indented by 4, up to `---`.
    let config: String = guide
        .lines()
        .skip_while(|l| l.trim() != "sheepdog.yaml: |")
        .skip(1)
        .take_while(|l| l.trim() != "---")
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(
        config.contains("api_auth_file: /etc/sheepdog-token/token"),
        "{config}"
    );
    // The token volume: `secret:` with `secretName: app-sheepdog-token`,
    // and its `defaultMode` (octal, as kubectl reads it), if any.
    let volume: Vec<&str> = guide
        .lines()
        .skip_while(|l| !l.contains("secretName: app-sheepdog-token"))
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(!volume.is_empty(), "no token volume in the guide");
    let mode = volume
        .iter()
        .find_map(|l| l.split("defaultMode:").nth(1))
        .map(|v| u32::from_str_radix(v.split('#').next().unwrap().trim(), 8).expect("octal mode"))
        .unwrap_or(0o644);
    let tmp = TempDir::new("k8s-guide");
    let token = tmp.write("token", "0123456789abcdef0123456789abcdef\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .expect("chmod token");
    let file = tmp.write(
        "sheepdog.yaml",
        &config.replace("/etc/sheepdog-token/token", &token.to_string_lossy()),
    );
    let out = check(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !FULL_BUILD && out.status.code() == Some(2) {
        assert!(
            stderr.contains("this build of sheepdog leaves out"),
            "{stderr}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}{stdout}");
    assert!(!stdout.contains("Warnings:"), "mode {mode:o}:\n{stdout}");
}
