//! Health checks with real servers and probes: thresholds both ways,
//! readiness-gated start, dependency timeout, per-instance liveness
//! restarts, readiness never restarting, the startup budget, no restart
//! storms, exec probe timeouts killing their group, busy and stale ports,
//! ports that only another process listens on, the readiness file, and
//! probes sheepdog has no descriptor for.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

const TERM: i32 = libc::SIGTERM;

fn header(extra: &str) -> String {
    format!(
        "global:\n  shutdown_timeout: 10\n  restart_backoff_initial: 0\n  api_enabled: false\n  metrics_enabled: false\n{extra}processes:\n"
    )
}

/// A loopback port nobody listens on (bound then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn health_needs_consecutive_results_both_ways() {
    // The probe reports into a file, so the test sees every result.
    let cfg = header("")
        + r#"
  svc:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "if [ -e $DIR/ok ]; then echo ok >> $DIR/probes; else echo fail >> $DIR/probes; exit 1; fi"]
      initial_delay: 0
      period: 100ms
      timeout: 2s
      failure_threshold: 3
      success_threshold: 2
      mode: readiness
"#;
    let sd = Sheepdog::start("hysteresis", &cfg);
    // Failing from the start: it is never declared healthy by failures.
    assert!(
        sd.wait_log_n(
            "svc-1: not ready: 3 consecutive failed health checks",
            1,
            WAIT
        ),
        "{}",
        sd.log()
    );
    assert_eq!(sd.count("svc-1: healthy"), 0);
    sd.dir.write("ok", "");
    sd.wait_log("svc-1: healthy");
    let probes = sd.dir.lines("probes");
    let first_ok = probes.iter().position(|p| p == "ok").unwrap();
    assert!(
        probes.len() - first_ok >= 2,
        "healthy after 2 successes, saw {probes:?}"
    );
    std::fs::remove_file(sd.dir.path("ok")).unwrap();
    assert!(
        sd.wait_log_n(
            "svc-1: not ready: 3 consecutive failed health checks",
            2,
            WAIT
        ),
        "{}",
        sd.log()
    );
    let probes = sd.dir.lines("probes");
    let trailing_fails = probes.iter().rev().take_while(|p| *p == "fail").count();
    assert!(
        trailing_fails >= 3,
        "unhealthy only after 3 failures in a row: {probes:?}"
    );
    assert_eq!(
        sd.count("svc-1: started"),
        1,
        "readiness mode never restarts"
    );
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn a_dependent_starts_only_after_its_dependency_is_healthy() {
    let port = free_port();
    let cfg = header("")
        + &format!(
            r#"
  web:
    command: "sleep 1; exec python3 -m http.server {port} --bind 127.0.0.1 --directory $DIR"
    health_check: {{ type: http, url: "http://127.0.0.1:{port}/", initial_delay: 0, period: 200ms, timeout: 150ms, startup_timeout: 20s }}
  app:
    command: "echo started >> $DIR/app; exec sleep 1000"
    depends_on: [web]
"#
        );
    let mut sd = Sheepdog::start("gated", &cfg);
    assert!(
        wait_until(WAIT, || !sd.dir.lines("app").is_empty()),
        "{}",
        sd.log()
    );
    let log = sd.log();
    let healthy = log.find("web-1: healthy").expect("web became healthy");
    let app = log.find("starting app").expect("app started");
    assert!(
        healthy < app,
        "app must wait for web's first successful probe:\n{log}"
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

/// Healthy is a running child's: a dependency that passed its check and
/// then crashed, waiting in backoff, does not let a dependent start when
/// its other dependency becomes ready (review-hc: its last health,
/// "healthy", was counted).
/// `app` depends on `crashes`, healthy at once and exiting 1 into an hour
/// of backoff once `$DIR/crash` exists, and on `slow`, ready once
/// `$DIR/ok` exists. `global` lines are added to the global block.
fn down_in_backoff(global: &str) -> String {
    format!(
        "global:\n  shutdown_timeout: 10\n{global}  restart_backoff_initial: 1h\n  restart_backoff_max: 1h\n  api_enabled: false\n  metrics_enabled: false\nprocesses:\n"
    ) + r#"
  crashes:
    command: "until [ -e $DIR/crash ]; do sleep 0.05; done; exit 1"
    health_check: { type: exec, command: [true], initial_delay: 0, period: 100ms }
  slow:
    command: [sleep, "1000"]
    health_check: { type: exec, command: [test, -e, $DIR/ok], initial_delay: 0, period: 100ms, mode: readiness }
  app:
    command: "echo started >> $DIR/app; exec sleep 1000"
    depends_on: [crashes, slow]
"#
}

#[test]
fn a_dependency_down_in_backoff_is_not_healthy() {
    let mut sd = Sheepdog::start("depbackoff", &down_in_backoff(""));
    sd.wait_log("crashes-1: healthy");
    sd.dir.write("crash", "");
    sd.wait_log("crashes-1: exited 1 after");
    sd.dir.write("ok", "");
    sd.wait_log("slow-1: healthy");
    // The supervisor has seen slow become healthy; app must still wait.
    assert!(
        !wait_until(Duration::from_secs(1), || !sd.dir.lines("app").is_empty()),
        "app started while crashes waits an hour to restart:\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn dependency_timeout_says_how_a_dependency_in_backoff_ended() {
    let cfg = down_in_backoff("  dependency_timeout: 3s\n");
    let mut sd = Sheepdog::start("depbackoff-timeout", &cfg);
    sd.wait_log("crashes-1: healthy");
    sd.dir.write("crash", "");
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(
        sd.log().contains(
            "cannot start app: dependency_timeout (3s) passed waiting for crashes (last error: exited 1), slow (last error: "
        ),
        "{}",
        sd.log()
    );
}

#[test]
fn map_form_conditions_are_honoured() {
    let cfg = header("")
        + r#"
  migrate:
    type: oneshot
    command: "sleep 0.3; echo migrated >> $DIR/events"
  app:
    command: "echo app >> $DIR/events; exec sleep 1000"
    depends_on:
      migrate: { condition: completed_successfully }
"#;
    let mut sd = Sheepdog::start("mapform", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.lines("events").len() >= 2),
        "{}",
        sd.log()
    );
    assert_eq!(sd.dir.lines("events"), ["migrated", "app"]);
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn dependency_timeout_names_the_dependency_and_its_last_probe_error() {
    let port = free_port();
    let cfg = header("  dependency_timeout: 1s\n")
        + &format!(
            r#"
  db:
    command: [sleep, "1000"]
    health_check: {{ type: tcp, address: "127.0.0.1:{port}", initial_delay: 0, period: 200ms, timeout: 500ms }}
  app:
    command: [sleep, "1000"]
    depends_on: [db]
"#
        );
    let mut sd = Sheepdog::start("deptimeout", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("cannot start app: dependency_timeout (1s) passed waiting for db (last error: connect to 127.0.0.1:"), "{log}");
    assert!(log.contains("refused"), "{log}");
}

#[test]
fn a_dependency_that_ended_for_good_fails_start_up_at_once() {
    // dependency_timeout is left at its 5 minutes: the test's bound (WAIT)
    // is far shorter, so it passes only if start-up fails without it.
    for (restart, why) in [
        (
            "restart: never",
            "cannot start app: dependency db ended (exited 3; not restarted)",
        ),
        (
            "max_restart_attempts: 1",
            "cannot start app: dependency db failed (exited 3; gave up after 1 restart attempt)",
        ),
    ] {
        let port = free_port();
        let cfg = header("")
            + &format!(
                r#"
  db:
    command: "exit 3"
    {restart}
    ports: [{port}]
  app:
    command: [sleep, "1000"]
    depends_on: [db]
"#
            );
        let mut sd = Sheepdog::start("depended", &cfg);
        assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
        assert!(sd.log().contains(why), "{}", sd.log());
        assert!(!sd.log().contains("app-1: started"), "{}", sd.log());
    }
}

#[test]
fn a_liveness_failure_restarts_only_that_instance() {
    let cfg = header("")
        + r#"
  app:
    command: [sleep, "1000"]
    scale: 3
    health_check:
      type: exec
      command: [sh, -c, "test ! -e $DIR/kill-{instance}"]
      initial_delay: 0
      period: 100ms
      timeout: 2s
      failure_threshold: 2
      mode: liveness
"#;
    let mut sd = Sheepdog::start("liveness", &cfg);
    assert!(sd.wait_log_n(": started (pid", 3, WAIT), "{}", sd.log());
    let (one, three) = (sd.pids_of("app-1")[0], sd.pids_of("app-3")[0]);
    sd.dir.write("kill-app-2", "");
    sd.wait_log("app-2: unhealthy");
    std::fs::remove_file(sd.dir.path("kill-app-2")).unwrap();
    assert!(
        sd.wait_log_n("app-2: started (pid", 2, WAIT),
        "{}",
        sd.log()
    );
    assert_eq!(sd.count("app-1: started"), 1, "{}", sd.log());
    assert_eq!(sd.count("app-3: started"), 1, "{}", sd.log());
    for pid in [one, three] {
        assert!(alive(pid), "the healthy instances keep running");
    }
    assert!(
        sd.log()
            .contains("app-2: unhealthy: 2 consecutive failed health checks"),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_startup_budget_fails_a_start_that_never_succeeds() {
    let cfg = header("")
        + r#"
  slow:
    command: [sleep, "1000"]
    restart: never
    health_check:
      type: exec
      command: ["false"]
      initial_delay: 0
      period: 100ms
      timeout: 1s
      failure_threshold: 1
      startup_timeout: 500ms
"#;
    let mut sd = Sheepdog::start("startup", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert!(
        log.contains("no successful health check within startup_timeout 500ms"),
        "{log}"
    );
    // Failures before the budget ran out did not count: it was not declared
    // unhealthy after the first failed probe.
    assert!(!log.contains("consecutive failed health checks"), "{log}");
}

/// `initial_delay` and `startup_timeout` count from the child's start,
/// not from before its pre_start hooks and its wait for ports: a slow hook
/// used up the delay and the budget (review-hc: a 3s hook and a 2.5s
/// startup_timeout failed every start at its first probe).
#[test]
fn timings_count_from_the_start_not_from_before_the_pre_start_hooks() {
    let cfg = header("")
        + r#"
  svc:
    command: "date +%s%N >> $DIR/started; exec sleep 1000"
    hooks:
      pre_start:
        - { name: slow, command: [sleep, "3"], timeout: 10s }
    health_check:
      type: exec
      command: [sh, -c, "date +%s%N >> $DIR/probes; test -e $DIR/ok"]
      initial_delay: 1s
      period: 100ms
      timeout: 1s
      startup_timeout: 2500ms
"#;
    let mut sd = Sheepdog::start("hookdelay", &cfg);
    assert!(
        wait_until(WAIT, || !sd.dir.lines("probes").is_empty()),
        "{}",
        sd.log()
    );
    let started = nanos(&sd.dir.lines("started")[0]);
    let first = nanos(&sd.dir.lines("probes")[0]);
    assert!(
        first >= started + 500_000_000,
        "first probe {}ms after the start, before its initial_delay\n{}",
        (first.saturating_sub(started)) / 1_000_000,
        sd.log()
    );
    sd.dir.write("ok", "");
    sd.wait_log("svc-1: healthy");
    assert_eq!(sd.count("startup_timeout"), 0, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_readiness_check_past_its_startup_budget_leaves_the_instance_running() {
    let cfg = header("")
        + r#"
  slow:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "echo probe >> $DIR/probes; exit 1"]
      mode: readiness
      initial_delay: 0
      period: 100ms
      timeout: 1s
      startup_timeout: 300ms
"#;
    let mut sd = Sheepdog::start("startup-readiness", &cfg);
    assert!(
        sd.wait_log_n(
            "slow-1: not ready: no successful health check within startup_timeout 300ms",
            1,
            WAIT
        ),
        "{}",
        sd.log()
    );
    // Probing goes on well past the budget, with no restart meanwhile.
    let after = sd.dir.lines("probes").len();
    assert!(
        wait_until(WAIT, || sd.dir.lines("probes").len() >= after + 5),
        "{}",
        sd.log()
    );
    assert_eq!(sd.count("slow-1: started (pid"), 1, "{}", sd.log());
    assert!(!sd.log().contains("restarting"), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn no_restart_storm_after_a_liveness_restart() {
    // Always failing, zero backoff: only initial_delay (fresh after every
    // restart) and the thresholds pace the restarts.
    let cfg = header("")
        + r#"
  sick:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: ["false"]
      initial_delay: 500ms
      period: 100ms
      timeout: 1s
      failure_threshold: 2
"#;
    let mut sd = Sheepdog::start("storm", &cfg);
    sd.wait_log("sick-1: started");
    let start = Instant::now();
    assert!(sd.wait_log_n("sick-1: started", 3, WAIT), "{}", sd.log());
    let elapsed = start.elapsed();
    // Two restarts, each at least initial_delay + one period after its start.
    assert!(
        elapsed >= Duration::from_millis(1200),
        "restarts came too fast: {elapsed:?}\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn an_exec_probe_timeout_kills_the_probes_whole_group() {
    let cfg = header("")
        + r#"
  svc:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "sleep 1000 & echo $! >> $DIR/probe-children; wait"]
      initial_delay: 0
      period: 2s
      timeout: 300ms
      mode: readiness
"#;
    let mut sd = Sheepdog::start("probetimeout", &cfg);
    assert!(
        wait_until(WAIT, || !sd.dir.lines("probe-children").is_empty()),
        "{}",
        sd.log()
    );
    let child: i32 = sd.dir.lines("probe-children")[0].parse().unwrap();
    assert!(
        wait_until(WAIT, || !alive(child)),
        "the probe's child {child} survived the timeout"
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

/// The answer is the leader's exit, not the end of its output: a child
/// left in the background holds the pipe for as long as it lives
/// (review-health m4: every probe took its whole timeout).
#[test]
fn an_exec_probe_is_judged_when_its_leader_exits_not_when_its_background_child_does() {
    let cfg = header("")
        + r#"
  ok:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "sleep 1000 & echo $! >> $DIR/ok-children; echo fine"]
      initial_delay: 0
      period: 200ms
      timeout: 60s
      success_threshold: 2
      mode: readiness
  bad:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "sleep 1000 & echo $! >> $DIR/bad-children; echo the reason; exit 3"]
      initial_delay: 0
      period: 200ms
      timeout: 60s
      failure_threshold: 1
      mode: readiness
"#;
    let mut sd = Sheepdog::start("probebg", &cfg);
    // Well within the 60 s timeout, which the old wait took for every run.
    sd.wait_log("ok-1: healthy");
    sd.wait_log("bad-1: not ready: 1 consecutive failed health checks: sh exited 3: the reason");
    // Each run's background child went with its group.
    for file in ["ok-children", "bad-children"] {
        let child: i32 = sd.dir.lines(file)[0].parse().unwrap();
        assert!(
            wait_until(WAIT, || !alive(child)),
            "the probe's background child {child} outlived its run"
        );
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

/// A probe that daemonizes escapes its group kill: what it leaves is
/// killed after the run (said once), while what the instance itself left
/// running is not the probe's to end (review-health m3: one `sleep` per
/// probe piled up until shutdown).
#[test]
fn what_an_exec_probe_daemonizes_is_ended_and_the_instances_own_is_not() {
    let cfg = header("")
        + r#"
  app:
    command: |
      sh -c 'setsid sh -c "echo \$\$ > $DIR/daemon; exec sleep 1000" >/dev/null 2>&1 &'
      exec sleep 1000
    health_check:
      type: exec
      command: [sh, -c, "setsid sh -c 'echo $$ >> $DIR/strays; exec sleep 1000' >/dev/null 2>&1 & sleep 0.1"]
      initial_delay: 0
      period: 300ms
      timeout: 250ms
      mode: readiness
"#;
    let mut sd = Sheepdog::start("probestrays", &cfg);
    let daemon = sd.wait_pid("daemon");
    assert!(
        wait_until(WAIT, || sd.dir.lines("strays").len() >= 4),
        "{}",
        sd.log()
    );
    // All but the latest runs' have been ended.
    let strays: Vec<i32> = sd.dir.lines("strays")[..2]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    for pid in strays {
        assert!(
            wait_until(WAIT, || !alive(pid)),
            "the probe's stray {pid} is still running\n{}",
            sd.log()
        );
    }
    assert!(alive(daemon), "the instance's own daemon was killed");
    // Said once, naming the instance and what was killed.
    assert_eq!(sd.count(" left by its health check"), 1, "{}", sd.log());
    assert_eq!(sd.count("app-1: killed pid "), 1, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_busy_port_fails_the_start_naming_its_holder() {
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let cfg = header("")
        + &format!(
            r#"
  fpm:
    command: [sleep, "1000"]
    restart: never
    ports: [{port}]
    port_wait: 300ms
"#
        );
    let mut sd = Sheepdog::start("busyport", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let me = std::process::id();
    let log = sd.log();
    assert!(
        log.contains(&format!("port {port} is held by pid {me} (")),
        "{log}"
    );
    drop(holder);
}

#[test]
fn a_start_waiting_for_a_busy_port_says_so_and_goes_on_once_it_is_free() {
    // The wait was silent: after "restarting (attempt 1, backoff 100ms)" the
    // log said nothing for up to port_wait (10s by default), while a
    // worker that had left its group still held php-fpm's port.
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let cfg = header("")
        + &format!(
            r#"
  fpm:
    command: [sleep, "1000"]
    ports: [{port}]
    port_wait: 5m
"#
        );
    let mut sd = Sheepdog::start("waitport", &cfg);
    let me = std::process::id();
    sd.wait_log(&format!("fpm-1: port {port} is held by pid {me} ("));
    assert!(
        sd.log().contains("waiting up to 5m for it to be released"),
        "{}",
        sd.log()
    );
    drop(holder);
    sd.wait_log("fpm-1: started (pid ");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_declared_port_that_stops_listening_makes_the_instance_unhealthy() {
    let port = free_port();
    // Listens, then closes its socket (while staying alive) once told to.
    let server = format!(
        "import socket, os, time\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port})); s.listen()\nwhile not os.path.exists('$DIR/close'): time.sleep(0.05)\ns.close()\nos.remove('$DIR/close')\ntime.sleep(1000)\n"
    );
    let cfg = header("")
        + &format!(
            r#"
  listener:
    command: [python3, -c, {server:?}]
    ports: [{port}]
    health_check: {{ type: exec, command: ["true"], initial_delay: 0, period: 100ms, timeout: 1s, failure_threshold: 2 }}
"#
        );
    let mut sd = Sheepdog::start("staleport", &cfg);
    sd.wait_log("listener-1: healthy");
    sd.dir.write("close", "");
    sd.wait_log("listener-1: unhealthy");
    assert!(
        sd.log()
            .contains(&format!("declared port {port} not listening")),
        "{}",
        sd.log()
    );
    assert!(
        sd.wait_log_n("listener-1: started", 2, WAIT),
        "restarted:\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_process_dying_mid_probe_is_restarted_at_once_and_the_probe_abandoned() {
    // The probe would take a minute: the exit is handled without waiting
    // for it, and the probe's process is killed.
    let cfg = header("")
        + r#"
  brief:
    command: "sleep 0.3; exit 1"
    health_check:
      type: exec
      command: [sh, -c, "echo $$ >> $DIR/probes; exec sleep 1000"]
      initial_delay: 0
      period: 5s
      timeout: 60s
      mode: readiness
"#;
    let mut sd = Sheepdog::start("midprobe", &cfg);
    assert!(sd.wait_log_n("brief-1: started", 2, WAIT), "{}", sd.log());
    assert!(sd.log().contains("brief-1: exited 1 after"), "{}", sd.log());
    // (On a loaded machine a probe may be abandoned before its shell has
    // written anything; brief keeps crashing, so one will.)
    assert!(
        wait_until(WAIT, || !sd.dir.lines("probes").is_empty()),
        "{}",
        sd.log()
    );
    let first: i32 = sd.dir.lines("probes")[0].parse().unwrap();
    assert!(
        wait_until(WAIT, || !alive(first)),
        "the abandoned probe {first} still runs\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_stop_never_waits_behind_a_probe() {
    // A probe that hangs for a minute (an endpoint that stopped
    // answering: when operators stop things) while sheepdog is asked to
    // stop: the process gets its graceful stop signal and sheepdog ends,
    // long before the probe's timeout; the probe's process goes too.
    let cfg = header("")
        + r#"
  svc:
    command: "trap 'echo term >> $DIR/events; exit 0' TERM; echo up > $DIR/up; while :; do sleep 0.05; done"
    health_check:
      type: exec
      command: [sh, -c, "echo $$ >> $DIR/probes; exec sleep 1000"]
      initial_delay: 0
      period: 60s
      timeout: 60s
      mode: liveness
"#;
    let mut sd = Sheepdog::start("stopmidprobe", &cfg);
    // The probe runs, and svc has its trap (the probe may start first).
    assert!(
        wait_until(WAIT, || !sd.dir.lines("probes").is_empty()
            && !sd.dir.lines("up").is_empty()),
        "{}",
        sd.log()
    );
    let probe: i32 = sd.dir.lines("probes")[0].parse().unwrap();
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.dir.lines("events"), ["term"], "{}", sd.log());
    // Gone by the time sheepdog has exited: the probe's thread kills it
    // when the stop abandons it, and the instance waits for that.
    let alive = alive(probe);
    if alive {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(probe),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!alive, "the probe {probe} outlived sheepdog");
}

/// A probe that closed its output is still abandoned when its instance
/// moves on: the end of its output does not end the watch for that
/// (review-hc: it ran to its timeout, and past sheepdog's exit).
#[test]
fn a_probe_that_closed_its_output_is_still_abandoned() {
    let cfg = header("")
        + r#"
  svc:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [sh, -c, "echo $$ >> $DIR/probes; exec sleep 1000 >/dev/null 2>&1"]
      initial_delay: 0
      period: 100s
      timeout: 60s
"#;
    let mut sd = Sheepdog::start("quietprobe", &cfg);
    assert!(
        wait_until(WAIT, || !sd.dir.lines("probes").is_empty()),
        "{}",
        sd.log()
    );
    let probe: i32 = sd.dir.lines("probes")[0].parse().unwrap();
    // Its output closed (the exec has happened).
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(format!(
            "/proc/{probe}/comm"
        ))
        .is_ok_and(|c| c.trim_end() == "sleep")),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    // At once, as in `a_stop_never_waits_behind_a_probe`.
    let gone = !alive(probe);
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(probe),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the probe {probe} outlived sheepdog\n{}", sd.log());
}

#[test]
fn the_readiness_file_exists_exactly_while_ready() {
    let cfg = header("  readiness_file: $DIR/ready\n")
        + r#"
  svc:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [test, -e, $DIR/ok]
      initial_delay: 0
      period: 100ms
      timeout: 1s
      failure_threshold: 1
      mode: readiness
"#;
    let mut sd = Sheepdog::start("readyfile", &cfg);
    let ready = sd.dir.path("ready");
    sd.wait_log("svc-1: started");
    assert!(
        !ready.exists(),
        "not ready before the first successful probe"
    );
    sd.dir.write("ok", "");
    assert!(wait_until(WAIT, || ready.exists()), "{}", sd.log());
    assert!(std::fs::read_to_string(&ready)
        .unwrap()
        .starts_with("ready\ntimestamp="));
    std::fs::remove_file(sd.dir.path("ok")).unwrap();
    assert!(
        wait_until(WAIT, || !ready.exists()),
        "removed when not ready:\n{}",
        sd.log()
    );
    sd.dir.write("ok", "");
    assert!(wait_until(WAIT, || ready.exists()), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
    assert!(!ready.exists(), "removed on shutdown");
}

#[test]
fn a_readiness_or_log_file_that_is_a_directory_is_refused_at_start() {
    let cfg = header("  readiness_file: $DIR\n")
        + "  svc:\n    command: [sleep, \"1000\"]\n    logging: {file: {path: $DIR}}\n";
    let mut sd = Sheepdog::start("readydir", &cfg);
    assert_eq!(sd.exit_code(WAIT), 2, "{}", sd.log());
    let log = sd.log();
    for key in ["global.readiness_file", "processes.svc.logging.file.path"] {
        assert!(
            log.lines()
                .any(|l| l.contains(key) && l.contains("it is a directory")),
            "{key}:\n{log}"
        );
    }
    assert!(!log.contains("svc-1: started"), "{log}");
}

/// Its directory may come later (a pre_start hook may make it): tried again
/// at each change, but said once, even while a crash loop publishes often.
#[test]
fn a_readiness_file_whose_directory_is_missing_is_warned_about_once() {
    let cfg = header("  readiness_file: $DIR/later/ready\n")
        + "  blink:\n    command: [sleep, \"0.05\"]\n";
    let mut sd = Sheepdog::start("readylater", &cfg);
    assert!(sd.wait_log_n("blink-1: started", 10, WAIT), "{}", sd.log());
    assert_eq!(
        sd.count("unable to update readiness file"),
        1,
        "{}",
        sd.log()
    );
    std::fs::create_dir(sd.dir.path("later")).unwrap();
    let ready = sd.dir.path("later/ready");
    assert!(wait_until(WAIT, || ready.exists()), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn declared_ports_alone_gate_dependents_until_they_listen() {
    let port = free_port();
    let cfg = header("")
        + &format!(
            r#"
  fpm:
    command: "sleep 0.5; exec python3 -m http.server {port} --bind 127.0.0.1 --directory $DIR"
    ports: [{port}]
  nginx:
    command: "echo started >> $DIR/nginx; exec sleep 1000"
    depends_on: [fpm]
"#
        );
    let mut sd = Sheepdog::start("portgate", &cfg);
    assert!(
        wait_until(WAIT, || !sd.dir.lines("nginx").is_empty()),
        "{}",
        sd.log()
    );
    // nginx started only once fpm's port accepted connections.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let log = sd.log();
    assert!(
        log.find("fpm-1: healthy").unwrap() < log.find("starting nginx").unwrap(),
        "{log}"
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_declared_port_counts_only_when_the_instances_own_group_listens() {
    // `db` never listens; another process taking its port after the start
    // made it healthy and released `app`. `grp` listens from a child in
    // its group, not from its leader: that counts.
    let [port, grp_port] = [free_port(), free_port()];
    let cfg = header("  dependency_timeout: 5s\n")
        + &format!(
            r#"
  db:
    command: [sleep, "1000"]
    ports: [{port}]
  grp:
    command: "python3 -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {grp_port})); s.listen(); time.sleep(1000)\" & wait"
    ports: [{grp_port}]
  app:
    command: "echo started >> $DIR/app; exec sleep 1000"
    depends_on: [db, grp]
"#
        );
    let mut sd = Sheepdog::start("foreignport", &cfg);
    sd.wait_log("db-1: started (pid ");
    let intruder = TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    let me = std::process::id();
    assert!(
        log.contains(&format!(
            "waiting for db (last error: port {port} is held by pid {me} ("
        )) && log.contains("), not by this instance"),
        "{log}"
    );
    assert!(log.contains("grp-1: healthy"), "{log}");
    assert!(!log.contains("db-1: healthy"), "{log}");
    assert!(sd.dir.lines("app").is_empty(), "{log}");
    drop(intruder);
}

#[test]
fn a_port_held_on_ipv6_only_is_seen_before_the_start() {
    // The test bind of 0.0.0.0 did not see a v6-only listener on [::1].
    let Ok(holder) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; nothing to test");
        return;
    };
    let port = holder.local_addr().unwrap().port();
    let cfg = header("")
        + &format!(
            r#"
  fpm:
    command: [sleep, "1000"]
    restart: never
    ports: [{port}]
    port_wait: 300ms
"#
        );
    let mut sd = Sheepdog::start("v6port", &cfg);
    let me = std::process::id();
    sd.wait_log(&format!("fpm-1: port {port} is held by pid {me} ("));
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    drop(holder);
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn http_checks_never_go_through_a_proxy_from_the_environment() {
    // An HTTP_PROXY set for the application (here a port nobody listens
    // on) must not carry a probe of 127.0.0.1 off to a proxy.
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = header("")
        + &format!(
            r#"
  web:
    command: "exec python3 -m http.server {port} --bind 127.0.0.1 --directory $DIR"
    health_check: {{ type: http, url: "http://127.0.0.1:{port}/", initial_delay: 0, period: 200ms, timeout: 500ms, startup_timeout: 20s }}
"#
        );
    let mut sd = Sheepdog::start_with("noproxy", &cfg, |c| {
        for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            c.env(var, &dead);
        }
        c.env_remove("NO_PROXY").env_remove("no_proxy");
    });
    assert!(sd.wait_log_n("web-1: healthy", 1, WAIT), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

/// Set sheepdog's soft limit on descriptors (the hard one stays).
fn nofile_soft(pid: i32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads `new` and writes `old`, both live locals.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn http_and_tcp_checks_sheepdog_cannot_make_a_socket_for_do_not_count() {
    // At its fd limit sheepdog cannot open the probe's socket: that is its
    // own shortage, not the service's, so it must not count as a failure
    // (a restart would only make things worse).
    let port = free_port();
    let cfg = header("")
        + &format!(
            r#"
  web:
    command: "exec python3 -m http.server {port} --bind 127.0.0.1 --directory $DIR"
    health_check: {{ type: http, url: "http://127.0.0.1:{port}/", initial_delay: 0, period: 100ms, timeout: 1s, failure_threshold: 1, startup_timeout: 20s }}
  sock:
    command: [sleep, "1000"]
    depends_on: {{ web: {{ condition: healthy }} }}
    health_check: {{ type: tcp, address: "127.0.0.1:{port}", initial_delay: 0, period: 100ms, timeout: 1s, failure_threshold: 1 }}
"#
        );
    let mut sd = Sheepdog::start("probenofd", &cfg);
    assert!(sd.wait_log_n("sock-1: healthy", 1, WAIT), "{}", sd.log());
    nofile_soft(sd.pid(), 1);
    let web = sd.wait_log_n("web-1: health check not run", 1, WAIT);
    let sock = sd.wait_log_n("sock-1: health check not run", 1, WAIT);
    nofile_soft(sd.pid(), 1024);
    assert!(web && sock, "{}", sd.log());
    assert_eq!(sd.count("unhealthy"), 0, "{}", sd.log());
    assert_eq!(sd.count("restarting"), 0, "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn a_followed_redirect_that_fails_names_the_url_that_gave_the_status() {
    // /redir → 302 → /fail500 → 500, as long as the test runs.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            use std::io::{Read, Write};
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap_or(0);
            let answer = if buf[..n].starts_with(b"GET /redir ") {
                "302 Found\r\nLocation: /fail500"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(
                c,
                "HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let cfg = header("")
        + &format!(
            r#"
  svc:
    command: [sleep, "1000"]
    health_check: {{ type: http, url: "http://127.0.0.1:{port}/redir", follow_redirects: true, initial_delay: 0, period: 200ms, timeout: 2s, failure_threshold: 1, mode: readiness }}
"#
        );
    let mut sd = Sheepdog::start("redirnames", &cfg);
    sd.wait_log(&format!(
        "svc-1: not ready: 1 consecutive failed health checks: GET http://127.0.0.1:{port}/redir → \
         http://127.0.0.1:{port}/fail500: status 500, expected 200-399"
    ));
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_run_that_never_became_healthy_does_not_reset_the_attempts() {
    // Regression: the startup budget plus the stop outlasted
    // `restart_reset_after`, so every failed start counted as a long run
    // and reset the count: the process restarted forever at "attempt 1"
    // and its `critical` never took effect.
    let cfg = header("")
        + r#"
  u:
    command: "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"
    critical: true
    max_restart_attempts: 2
    restart_backoff_initial: 50ms
    restart_reset_after: 500ms
    health_check:
      type: exec
      command: "false"
      initial_delay: 0
      period: 100ms
      timeout: 1s
      startup_timeout: 800ms
  other:
    command: [sleep, "1000"]
"#;
    let mut sd = Sheepdog::start("never-healthy-attempts", &cfg);
    gave_up_critical(&mut sd, "u-1");
}

/// `instance` (critical, `max_restart_attempts: 2`) restarted twice, gave
/// up, and took sheepdog down with it (exit 1).
fn gave_up_critical(sd: &mut Sheepdog, instance: &str) {
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("restarting (attempt 2,"), "{log}");
    assert!(log.contains("gave up after 2 restart attempts"), "{log}");
    assert!(
        log.contains(&format!("{instance} is critical and failed")),
        "{log}"
    );
}

#[test]
fn a_long_healthy_run_still_resets_the_attempts() {
    // The other side: a run that passed its checks for longer than
    // `restart_reset_after` starts the count again, so occasional failures
    // never add up to `max_restart_attempts`.
    let cfg = header("")
        + r#"
  w:
    command: "sleep 1.5; exit 3"
    max_restart_attempts: 1
    restart_backoff_initial: 50ms
    restart_reset_after: 500ms
    health_check:
      type: exec
      command: "true"
      initial_delay: 0
      period: 100ms
"#;
    let mut sd = Sheepdog::start("healthy-resets", &cfg);
    assert!(sd.wait_log_n("w-1: exited 3", 3, WAIT), "{}", sd.log());
    assert_eq!(
        sd.count("restarting (attempt 1,"),
        sd.count("w-1: exited 3"),
        "{}",
        sd.log()
    );
    assert!(!sd.log().contains("gave up"), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn failed_starts_after_a_long_healthy_run_count_toward_the_limit() {
    // Regression: the last run's healthy streak was kept after the exit
    // it reset the count for, so every failed start after it (a pre_start
    // hook that fails, a binary gone) reset the count again: "attempt 1"
    // forever, the backoff never growing, `critical` never acting.
    let cfg = header("")
        + r#"
  w:
    command: "touch $DIR/ran; sleep 1.5; exit 1"
    critical: true
    max_restart_attempts: 2
    restart_backoff_initial: 50ms
    restart_reset_after: 500ms
    hooks:
      pre_start: [{name: first-only, command: [sh, -c, "test ! -e $DIR/ran"]}]
    health_check:
      type: exec
      command: "true"
      initial_delay: 0
      period: 100ms
"#;
    let mut sd = Sheepdog::start("failed-starts-count", &cfg);
    gave_up_critical(&mut sd, "w-1");
    assert!(sd.log().contains("w-1: exited 1 after"), "{}", sd.log());
}

#[test]
fn a_long_healthy_run_ended_by_its_liveness_check_resets_the_attempts() {
    // Regression: the failure that restarts it cleared the healthy streak
    // before the restart policy read it, so a run healthy for longer than
    // `restart_reset_after` never reset the count when its liveness check
    // ended it: occasional liveness restarts, hours apart, added up to
    // `max_restart_attempts` and it gave up. Each run here is healthy
    // for 2s, then sick until stopped (its stop clears the mark, so the
    // next run's first checks pass).
    let cfg = header("")
        + r#"
  w:
    command: "rm -f $DIR/sick; trap 'rm -f $DIR/sick; exit 0' TERM; sleep 2; touch $DIR/sick; while :; do sleep 1 & wait $!; done"
    max_restart_attempts: 1
    restart_backoff_initial: 50ms
    restart_reset_after: 500ms
    health_check:
      type: exec
      command: "test ! -e $DIR/sick"
      mode: liveness
      initial_delay: 0
      period: 100ms
"#;
    let mut sd = Sheepdog::start("healthy-liveness-resets", &cfg);
    assert!(
        sd.wait_log_n("w-1: unhealthy after", 3, WAIT),
        "{}",
        sd.log()
    );
    assert_eq!(
        sd.count("restarting (attempt 1,"),
        sd.count("w-1: unhealthy after"),
        "{}",
        sd.log()
    );
    assert!(!sd.log().contains("gave up"), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A probe of `localhost`, 127.0.0.1 then ::1, names the first address's
/// error: in a container without IPv6, ::1 answers "Cannot assign
/// requested address", which hid the refused connection on 127.0.0.1
/// behind an IPv6 problem that is not one (the last address's error was
/// kept).
fn names_the_first_addresss_error(check: &str, name: &str) {
    let port = free_port();
    let check = check.replace("PORT", &port.to_string());
    let cfg = header("")
        + &format!(
            r#"
  svc:
    command: [sleep, "1000"]
    health_check: {{ {check}, initial_delay: 0, period: 200ms, timeout: 2s, failure_threshold: 1, mode: readiness }}
"#
        );
    let mut sd = Sheepdog::start(name, &cfg);
    sd.wait_log("svc-1: not ready: 1 consecutive failed health checks: ");
    let log = sd.log();
    let line = log
        .lines()
        .find(|l| l.contains("svc-1: not ready"))
        .unwrap();
    assert!(
        line.contains(&format!("connect to 127.0.0.1:{port}: ")) && !line.contains("::1"),
        "{line}"
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_tcp_check_of_localhost_names_the_ipv4_addresss_error() {
    names_the_first_addresss_error("type: tcp, address: \"localhost:PORT\"", "localhost-tcp");
}

#[test]
#[cfg_attr(not(feature = "http"), ignore = "needs the http feature")]
fn an_http_check_of_localhost_names_the_ipv4_addresss_error() {
    names_the_first_addresss_error(
        "type: http, url: \"http://localhost:PORT/up\"",
        "localhost-http",
    );
}

/// An exec probe whose command is on a mount that never answers (a hung
/// NFS server) is stuck short of exec, where no timeout of its own
/// reached it: the probe never failed, so the instance kept its last
/// health for ever, and a stop waited for the probe until the shutdown
/// deadline (a `ctl stop` or a crash: for ever). At its timeout the child
/// is killed (its exec deadline) and the probe fails, saying why; a stop
/// kills it at once.
#[test]
fn an_exec_probe_stuck_before_exec_fails_and_holds_up_no_stop() {
    let Some(wrapper) = hung_mount() else { return };
    let cfg = "global:\n  shutdown_timeout: 15s\n  api_enabled: false\n  metrics_enabled: false\nprocesses:\n".to_string()
        + r#"
  app:
    command: [sleep, "1000"]
    health_check:
      type: exec
      command: [$DIR/mnt/check]
      initial_delay: 0
      period: 100ms
      timeout: 200ms
      failure_threshold: 1
      mode: readiness
"#;
    let mut sd = Sheepdog::start_under("probe-hung-spawn", &cfg, &wrapper, |_| {});
    sd.wait_log("app-1: not ready: 1 consecutive failed health checks: ");
    sd.wait_log("check\": still short of exec when its time ran out (its working_dir or program on a hung mount?)");
    // The next probe is stuck by now; the stop does not wait for it.
    assert!(
        wait_until(WAIT, || unexeced_children(sd.pid()) == 1),
        "{}",
        sd.log()
    );
    let stop = Instant::now();
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert!(stop.elapsed() < Duration::from_secs(5), "{}", sd.log());
    assert!(
        !sd.log().contains("shutdown_timeout (15s) reached"),
        "{}",
        sd.log()
    );
}
