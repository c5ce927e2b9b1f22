//! Lifecycle hooks with real commands: order at start and stop, failures
//! aborting start-up, continue_on_error, retries with delay, timeouts that
//! kill the hook's group, per-process pre-stop once and before the signal,
//! per-process pre-start before every start, cancelling a pre-start hook on
//! SIGTERM, and the hook's environment, output tagging and output order.

mod common;

use std::time::Duration;

use common::*;

const TERM: i32 = libc::SIGTERM;

fn header(hooks: &str) -> String {
    format!(
        "global:\n  shutdown_timeout: 15\n  restart_backoff_initial: 0\n  api_enabled: false\n  metrics_enabled: false\nhooks:\n{hooks}\nprocesses:\n"
    )
}

/// A longrun that records its start and its SIGTERM.
fn recorder(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    command: \"trap 'echo {name}-term >> $DIR/events; exit 0' TERM; echo {name}-up >> $DIR/events; while :; do sleep 0.05; done\"\n{extra}"
    )
}

#[test]
fn global_hooks_run_in_order_around_start_and_stop() {
    let hooks = r#"
  pre_start:
    - { name: first, command: "echo pre-1 >> $DIR/events; echo first says hello" }
    - { name: second, command: "echo pre-2 >> $DIR/events" }
  post_start:
    - { name: warm, command: "echo post-start >> $DIR/events" }
  pre-stop:
    - { name: drain, command: "echo pre-stop >> $DIR/events" }
  post_stop:
    - { name: bye, command: "echo post-stop >> $DIR/events" }
"#;
    let cfg = header(hooks) + &recorder("db", "") + &recorder("web", "    depends_on: [db]\n");
    let mut sd = Sheepdog::start("globalhooks", &cfg);
    assert!(
        wait_until(WAIT, || sd
            .dir
            .lines("events")
            .contains(&"post-start".to_string())),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let events = sd.dir.lines("events");
    let pos = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} missing: {events:?}"))
    };
    assert!(
        pos("pre-1") < pos("pre-2") && pos("pre-2") < pos("db-up"),
        "{events:?}"
    );
    // post_start follows every process's start ("started" is spawned: a
    // child's own first write may still come later, so judge by the log).
    let log = sd.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{log}"))
    };
    assert!(
        at("db-1: started") < at("post_start hook \"warm\""),
        "{log}"
    );
    assert!(
        at("web-1: started") < at("post_start hook \"warm\""),
        "{log}"
    );
    assert!(
        pos("post-start") < pos("pre-stop") && pos("pre-stop") < pos("web-term"),
        "{events:?}"
    );
    assert!(
        pos("web-term") < pos("db-term") && pos("db-term") < pos("post-stop"),
        "{events:?}"
    );
    assert!(
        sd.log().contains("hook:first | first says hello"),
        "hook output is tagged: {}",
        sd.log()
    );
}

#[test]
fn a_processs_hook_output_is_tagged_with_the_process() {
    let proc = |name: &str| {
        format!(
            "  {name}:\n    command: [sleep, \"1000\"]\n    hooks:\n      pre_start:\n        - {{ name: prep, command: \"echo preparing\" }}\n"
        )
    };
    let cfg = header("  pre_start: []") + &proc("a") + &proc("b");
    let mut sd = Sheepdog::start("hooktags", &cfg);
    for name in ["a", "b"] {
        sd.wait_log(&format!("{name}/hook:prep | preparing"));
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_hook_run_for_one_instance_knows_and_names_it() {
    // Regression: the three runs of a per-instance hook saw only
    // SHEEPDOG_PROCESS, and logged "w: pre_start hook ... succeeded" alike.
    let env = "echo $SHEEPDOG_HOOK_TYPE $SHEEPDOG_INSTANCE $SHEEPDOG_INSTANCE_INDEX >> $DIR/env";
    let cfg = header("  pre_stop:\n    - { name: g, command: \"echo global x$SHEEPDOG_INSTANCE >> $DIR/env\" }")
        + &format!(
            "  w:\n    command: [sleep, \"1000\"]\n    scale: 2\n    hooks:\n      \
             pre_start: [ {{ name: pre, command: \"{env}\" }} ]\n      \
             post_start: [ {{ name: post, command: \"{env}\" }} ]\n      \
             pre_stop: [ {{ name: drain, command: \"echo pre_stop x$SHEEPDOG_INSTANCE >> $DIR/env\" }} ]\n"
        );
    let mut sd = Sheepdog::start("hookinstance", &cfg);
    for i in 1..=2 {
        sd.wait_log(&format!("w-{i}: post_start hook \"post\" succeeded"));
        sd.wait_log(&format!("w-{i}: pre_start hook \"pre\" succeeded"));
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let mut env = sd.dir.lines("env");
    env.sort();
    // Hooks run once per process or globally name no instance.
    assert_eq!(
        env,
        [
            "global x",
            "post_start w-1 1",
            "post_start w-2 2",
            "pre_start w-1 1",
            "pre_start w-2 2",
            "pre_stop x",
        ],
        "{}",
        sd.log()
    );
}

#[test]
fn hooks_never_see_the_per_child_variables_of_an_outer_sheepdog() {
    // Regression: under a sheepdog (which sets these for its child), the
    // stop and global hooks inherited the outer instance and process.
    let show = |tag: &str| {
        format!(
            "echo {tag} p=$${{SHEEPDOG_PROCESS-}} i=$${{SHEEPDOG_INSTANCE-}} \
             n=$${{SHEEPDOG_INSTANCE_INDEX-}} h=$${{SHEEPDOG_HOOK_NAME-}} t=$${{SHEEPDOG_HOOK_TYPE-}} \
             r=$${{SHEEPDOG_RUN_ID-}}$${{SHEEPDOG_SCHEDULED-}}$${{SHEEPDOG_TRIGGER-}}$${{SHEEPDOG_PROBE-}} >> $DIR/env"
        )
    };
    let cfg = header(&format!(
        "  pre_stop: [ {{ name: gpre, command: \"{}\" }} ]\n  post_stop: [ {{ name: gpost, command: \"{}\" }} ]",
        show("gpre"),
        show("gpost")
    )) + &format!(
        "  a:\n    command: \"{}; exec sleep 1000\"\n    hooks:\n      \
         pre_start: [ {{ name: pres, command: \"{}\" }} ]\n      \
         pre_stop: [ {{ name: pre, command: \"{}\" }} ]\n      \
         post_stop: [ {{ name: post, command: \"{}\" }} ]\n",
        show("a"),
        show("pres"),
        show("pre"),
        show("post")
    );
    let mut sd = Sheepdog::start_with("hookouterenv", &cfg, |c| {
        c.envs([
            ("SHEEPDOG_PROCESS", "outer"),
            ("SHEEPDOG_INSTANCE", "outer-7"),
            ("SHEEPDOG_INSTANCE_INDEX", "7"),
            ("SHEEPDOG_HOOK_NAME", "outerhook"),
            ("SHEEPDOG_HOOK_TYPE", "outertype"),
            ("SHEEPDOG_RUN_ID", "9"),
            ("SHEEPDOG_SCHEDULED", "true"),
            ("SHEEPDOG_TRIGGER", "manual"),
            ("SHEEPDOG_PROBE", "outer-7"),
        ]);
    });
    sd.wait_lines("env", 2);
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let mut env = sd.dir.lines("env");
    env.sort();
    // Its own, or none.
    assert_eq!(
        env,
        [
            "a p=a i=a-1 n=1 h= t= r=",
            "gpost p= i= n= h=gpost t=post_stop r=",
            "gpre p= i= n= h=gpre t=pre_stop r=",
            "post p=a i= n= h=post t=post_stop r=",
            "pre p=a i= n= h=pre t=pre_stop r=",
            "pres p=a i=a-1 n=1 h=pres t=pre_start r=",
        ],
        "{}",
        sd.log()
    );
}

#[test]
fn what_a_global_post_stop_hook_leaves_outside_its_group_is_ended() {
    // Regression: the left-over sweep came before the global post_stop
    // hooks, so a `setsid` child of one outlived sheepdog, unsaid.
    let hooks =
        "  post_stop:\n    - { name: detach, command: \"setsid sh -c 'echo $$ > $DIR/e.tmp; \
                 mv $DIR/e.tmp $DIR/escaped; exec sleep 1000' >/dev/null 2>&1 & \
                 while [ ! -e $DIR/escaped ]; do sleep 0.01; done\" }\n";
    let cfg = header(hooks) + "  app:\n    command: [sleep, \"1000\"]\n";
    let mut sd = Sheepdog::start("poststopsweep", &cfg);
    sd.wait_log("app-1: started");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let escaped = read_pid(&sd.dir.path("escaped")).expect("the hook's pid file");
    let survived = alive(escaped);
    if survived {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(escaped),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!survived, "pid {escaped} outlived sheepdog\n{}", sd.log());
    let log = sd.log();
    // (`sh` or `sleep`: the hook may end before the exec.)
    let named = format!(
        "1 left-over process still running outside the stopped process groups: pid {escaped} ("
    );
    assert!(log.contains(&named), "{log}");
    assert!(
        log.find("post_stop hook \"detach\" succeeded") < log.find(&named),
        "{log}"
    );
}

#[test]
fn what_global_pre_start_hooks_leave_outside_their_group_is_ended_when_start_up_ends() {
    // Regression: a start-up ended by its pre_start hooks (SIGTERM during
    // them, or one failing) skipped the left-over sweep, so a `setsid`
    // child of a hook outlived sheepdog.
    let detach = "setsid sh -c 'echo $$ > $DIR/e.tmp; mv $DIR/e.tmp $DIR/escaped; \
                  exec sleep 1000' >/dev/null 2>&1 & \
                  while [ ! -e $DIR/escaped ]; do sleep 0.01; done";
    for (name, then, code) in [
        ("presweepterm", "sleep 1000", 0),
        ("presweepfail", "exit 3", 1),
    ] {
        let hooks =
            format!("  pre_start:\n    - {{ name: detach, command: \"{detach}; {then}\" }}\n");
        let cfg = header(&hooks) + &recorder("app", "");
        let mut sd = Sheepdog::start(name, &cfg);
        let escaped = sd.wait_pid("escaped");
        if code == 0 {
            sd.signal(TERM);
        }
        assert_eq!(sd.exit_code(WAIT), code, "{}", sd.log());
        let survived = alive(escaped);
        if survived {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(escaped),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(!survived, "pid {escaped} outlived sheepdog\n{}", sd.log());
        assert!(sd.dir.lines("events").is_empty(), "{}", sd.log());
    }
}

#[test]
fn a_failing_pre_start_hook_aborts_before_any_process_starts() {
    let hooks = r#"
  pre_start:
    - { name: migrate, command: "echo migrating; exit 3" }
"#;
    let cfg = header(hooks) + &recorder("app", "");
    let mut sd = Sheepdog::start("prestartfail", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(sd.dir.lines("events").is_empty(), "no process may start");
    let log = sd.log();
    assert!(
        log.contains("pre_start hook \"migrate\" failed: exited 3"),
        "{log}"
    );
    assert!(log.contains("hook:migrate | migrating"), "{log}");
}

#[test]
fn continue_on_error_lets_start_up_go_on() {
    let hooks = r#"
  pre_start:
    - { name: optional, command: "exit 1", continue_on_error: true }
"#;
    let cfg = header(hooks) + &recorder("app", "");
    let mut sd = Sheepdog::start("continue", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.lines("events") == ["app-up"]),
        "{}",
        sd.log()
    );
    // Logged before app starts, but through sheepdog's output thread:
    // app's own write may come first.
    sd.wait_log("continuing (continue_on_error)");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn retries_wait_their_delay_and_can_succeed() {
    // Fails twice, then succeeds; each attempt records its time.
    let hooks = r#"
  pre_start:
    - name: flaky
      command: "date +%s%N >> $DIR/attempts; [ $(wc -l < $DIR/attempts) -ge 3 ]"
      retry: 2
      retry_delay: 300ms
"#;
    let own = "    hooks:\n      pre_start:\n        - { name: warm, command: \"[ -e $DIR/warmed ] || { touch $DIR/warmed; exit 1; }\", retry: 1 }\n";
    let cfg = header(hooks) + &recorder("app", own);
    let mut sd = Sheepdog::start("retries", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.lines("events") == ["app-up"]),
        "{}",
        sd.log()
    );
    // Each retry line says whose hook it is.
    let log = sd.log();
    assert!(
        log.contains("pre_start hook \"flaky\" attempt 1/3 failed"),
        "{log}"
    );
    assert!(
        log.contains("app-1: pre_start hook \"warm\" attempt 1/2 failed"),
        "{log}"
    );
    let times: Vec<u128> = sd.dir.lines("attempts").iter().map(|l| nanos(l)).collect();
    assert_eq!(times.len(), 3, "{}", sd.log());
    for w in times.windows(2) {
        assert!(
            (w[1] - w[0]) / 1_000_000 >= 300,
            "attempts {times:?} must be 300ms apart"
        );
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0);
}

#[test]
fn a_hooks_leftover_children_are_gone_before_the_next_step() {
    // The hook exits at once but leaves a background child in its group.
    // That child is killed *and reaped* before the processes start: the
    // first process finds its pid gone (a zombie would still answer kill -0).
    let hooks = r#"
  pre_start:
    - name: leaky
      command: "sleep 1000 & echo $! > $DIR/bg; exit 0"
"#;
    let cfg = header(hooks)
        + "  app:\n    type: oneshot\n    command: \"if kill -0 $(cat $DIR/bg) 2>/dev/null; then echo alive; else echo gone; fi > $DIR/state\"\n";
    let mut sd = Sheepdog::start("leakyhook", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.dir.lines("state"), ["gone"], "{}", sd.log());
    let bg = read_pid(&sd.dir.path("bg")).expect("the hook wrote its child's pid");
    assert!(!alive(bg));
}

#[test]
fn a_hook_timeout_kills_its_whole_group() {
    let hooks = r#"
  pre_start:
    - { name: hang, command: "sleep 1000 & echo $! > $DIR/hook-child; wait", timeout: 300ms }
"#;
    let cfg = header(hooks) + &recorder("app", "");
    let mut sd = Sheepdog::start("hooktimeout", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(
        sd.log().contains("failed: timed out after 300ms"),
        "{}",
        sd.log()
    );
    let child = read_pid(&sd.dir.path("hook-child")).expect("hook child pid");
    assert!(
        wait_until(WAIT, || !alive(child)),
        "the hook's child {child} survived"
    );
}

#[test]
fn pre_stop_runs_once_per_process_and_before_its_signal() {
    let cfg = header("  pre_start: []")
        + r#"
  queue:
    command: "trap 'echo term $(date +%s%N) >> $DIR/events; exit 0' TERM; touch $DIR/up.$$; while :; do sleep 0.05; done"
    scale: 3
    shutdown:
      pre_stop_hook: { name: terminate, command: "echo pre_stop $(date +%s%N) $SHEEPDOG_HOOK_NAME $SHEEPDOG_HOOK_TYPE $SHEEPDOG_PROCESS >> $DIR/events" }
"#;
    let mut sd = Sheepdog::start("prestop", &cfg);
    // Each shell has set its trap (a SIGTERM before would end it at once).
    let trapped = || {
        std::fs::read_dir(&sd.dir.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("up."))
            .count()
            == 3
    };
    assert!(wait_until(WAIT, trapped), "{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let events = sd.dir.lines("events");
    let pre: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("pre_stop"))
        .collect();
    assert_eq!(
        pre.len(),
        1,
        "once per process, not per instance: {events:?}"
    );
    assert!(pre[0].ends_with("terminate pre_stop queue"), "{events:?}");
    let pre_at = nanos(pre[0].split_whitespace().nth(1).unwrap());
    let terms: Vec<u128> = events
        .iter()
        .filter(|e| e.starts_with("term"))
        .map(|e| nanos(e.split_whitespace().nth(1).unwrap()))
        .collect();
    assert_eq!(terms.len(), 3, "{events:?}");
    assert!(
        terms.iter().all(|t| *t > pre_at),
        "every SIGTERM after the hook: {events:?}"
    );
}

#[test]
fn a_process_that_exits_during_its_pre_stop_hook_is_stopped_when_the_hook_ends() {
    // horizon:terminate: the hook makes the process exit, then waits. Its
    // dependency must keep running, and post_stop wait, until the hook ends.
    let cfg = header("  pre_start: []")
        + &recorder("base", "")
        + r#"
  w:
    command: "echo w-up >> $DIR/events; while [ ! -e $DIR/quit ]; do sleep 0.02; done; echo w-exit >> $DIR/events"
    depends_on: [base]
    hooks:
      pre_stop:
        - { name: terminate, command: "touch $DIR/quit; while [ ! -e $DIR/release ]; do sleep 0.02; done; echo pre-end >> $DIR/events" }
      post_stop:
        - { name: after, command: "echo post >> $DIR/events" }
"#;
    let mut sd = Sheepdog::start("exitinprestop", &cfg);
    let has = |sd: &Sheepdog, e: &str| sd.dir.lines("events").iter().any(|x| x == e);
    assert!(wait_until(WAIT, || has(&sd, "w-up") && has(&sd, "base-up")));
    sd.signal(TERM);
    assert!(wait_until(WAIT, || has(&sd, "w-exit")), "{}", sd.log());
    // sheepdog has seen the exit (its instance thread reported it).
    sd.wait_log("w-1: exited 0");
    sd.dir.write("release", "");
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let events = sd.dir.lines("events");
    assert_eq!(events[2..4], ["w-exit", "pre-end"], "{}", sd.log());
    // Then post_stop and base's stop, in either order (as for any stop).
    let mut rest = events[4..].to_vec();
    rest.sort();
    assert_eq!(rest, ["base-term", "post"], "{}", sd.log());
}

#[test]
#[cfg_attr(not(feature = "api"), ignore = "stops through the API (feature `api`)")]
fn stopping_a_critical_process_whose_pre_stop_hook_ends_it_badly_is_no_failure() {
    // Regression: a stop request for a critical process whose pre_stop hook
    // makes it exit (`nginx -s quit`, a `kill` of its pid) with a failure
    // status was taken for its failure: sheepdog shut everything down, exit 1.
    let (mut sd, port, _) = start_serving("criticalprestop", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nprocesses:\n  w:\n    \
             command: \"while [ ! -e $DIR/quit ]; do sleep 0.02; done; exit 3\"\n    critical: true\n    hooks:\n      \
             pre_stop: [{{ name: terminate, command: \"touch $DIR/quit; sleep 0.3\" }}]\n  other:\n    command: [sleep, \"1000\"]\n"
        )
    });
    sd.wait_log("w-1: started");
    let r = http::post(port, "/api/v1/processes/w/stop", None, "{}");
    assert_eq!(r.status, 202, "{}", sd.log());
    sd.wait_log("; not restarting: it is being stopped");
    assert!(sd.log().contains("w-1: exited 3 after "), "{}", sd.log());
    sd.wait_log("pre_stop hook \"terminate\" succeeded");
    let w = http::get(port, "/api/v1/processes/w", None).json();
    assert_eq!(w["state"], "stopped", "{w}\n{}", sd.log());
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert!(!sd.log().contains("critical and failed"), "{}", sd.log());
}

#[test]
fn a_stop_while_a_pre_start_hook_runs_starts_nothing() {
    // The pre_start hook would end while pre_stop runs: the start must not
    // go ahead after the stop was asked for.
    let cfg = header("  pre_start: []")
        + r#"
  w:
    command: "echo w-up >> $DIR/events; exec sleep 1000"
    hooks:
      pre_start:
        - { name: prepare, command: "echo $$ > $DIR/hook; sleep 0.3" }
      pre_stop:
        - { name: drain, command: "sleep 1; echo pre-stop >> $DIR/events" }
"#;
    let mut sd = Sheepdog::start("stopinprestart", &cfg);
    sd.wait_pid("hook");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.dir.lines("events"), ["pre-stop"], "{}", sd.log());
    assert!(!sd.log().contains("w-1: started"), "{}", sd.log());
}

#[test]
fn a_second_sigterm_skips_the_stop_hooks_still_to_come() {
    let hooks = r#"
  post_stop:
    - { name: bye, command: "echo bye >> $DIR/events; sleep 60" }
"#;
    let cfg = header(hooks).replace("shutdown_timeout: 15", "shutdown_timeout: 120")
        + r#"
  stubborn:
    command: "trap '' TERM; echo $$ > $DIR/pid; while :; do sleep 0.02; done"
    hooks:
      post_stop:
        - { name: cleanup, command: "echo cleanup >> $DIR/events; sleep 60" }
"#;
    let mut sd = Sheepdog::start("forcedhooks", &cfg);
    sd.wait_pid("pid");
    sd.signal(TERM);
    sd.wait_log("stubborn-1: stopping");
    sd.signal(TERM);
    // Well before the 60 s of either hook, let alone the 120 s deadline.
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    // Named by what forced it, in the singular, and the global one
    // without a redundant `sheepdog:` inside sheepdog's own log.
    let log = sd.log();
    assert!(
        log.contains("stubborn: 1 post_stop hook skipped: forced by a second signal"),
        "{log}"
    );
    assert!(
        log.contains("| 1 post_stop hook skipped: forced by a second signal"),
        "{log}"
    );
    assert_eq!(sd.dir.lines("events"), Vec::<String>::new());
}

#[test]
fn the_shutdown_deadline_is_named_as_what_skipped_the_hooks_and_killed_the_run() {
    let hooks = r#"
  pre_stop:
    - { name: hang, command: "trap '' TERM; echo $$ > $DIR/hook; while :; do sleep 0.05; done", timeout: 10m }
  post_stop:
    - { name: bye, command: "echo bye >> $DIR/events" }
"#;
    let cfg = header(hooks).replace("shutdown_timeout: 15", "shutdown_timeout: 1s")
        + r#"
  job:
    schedule: "@every 1s"
    command: "trap '' TERM; echo $$ > $DIR/run; while :; do sleep 0.05; done"
    shutdown: { timeout: 60s }
"#;
    let mut sd = Sheepdog::start("deadlinehooks", &cfg);
    sd.wait_pid("run");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(
        log.contains("| 1 post_stop hook skipped: shutdown_timeout reached"),
        "{log}"
    );
    // Not "timed out after 999.862413ms": its own limit was 10m.
    assert!(
        log.contains("pre_stop hook \"hang\" cancelled: cut off at the shutdown deadline"),
        "{log}"
    );
    // The stop, then the kill at the deadline: said as two different things.
    assert_eq!(sd.count("job: stopping run 1 (shutdown)"), 1, "{log}");
    assert!(
        log.contains("job: killing run 1 (SIGKILL, forced shutdown)"),
        "{log}"
    );
    assert_eq!(sd.dir.lines("events"), Vec::<String>::new());
}

#[test]
fn a_process_pre_start_hook_runs_before_every_start() {
    let cfg = header("  pre_start: []")
        + r#"
  job:
    command: "echo run >> $DIR/events; sleep 0.1; exit 1"
    max_restart_attempts: 2
    hooks:
      pre_start:
        - { name: prepare, command: "echo pre >> $DIR/events" }
      post_start:
        - { name: announce, command: "echo post >> $DIR/posts" }
"#;
    let mut sd = Sheepdog::start("procprestart", &cfg);
    // 1 run + 2 restarts, then it fails for good and sheepdog exits 1.
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert_eq!(
        sd.dir.lines("events"),
        ["pre", "run", "pre", "run", "pre", "run"]
    );
    assert_eq!(
        sd.dir.lines("posts"),
        ["post", "post", "post"],
        "post_start after every start"
    );
}

#[test]
fn sigterm_during_a_pre_start_hook_cancels_it_and_starts_nothing() {
    let hooks = r#"
  pre_start:
    - { name: slow-migration, command: "echo $$ > $DIR/hook; trap 'echo hook-term >> $DIR/events; exit 1' TERM; while :; do sleep 0.05; done", timeout: 10m }
"#;
    let cfg = header(hooks) + &recorder("app", "");
    let mut sd = Sheepdog::start("cancelhook", &cfg);
    assert!(
        wait_until(WAIT, || read_pid(&sd.dir.path("hook")).is_some()),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(Duration::from_secs(30)), 0, "{}", sd.log());
    assert_eq!(
        sd.dir.lines("events"),
        ["hook-term"],
        "the hook got SIGTERM and no process started"
    );
}

#[test]
fn a_sigterm_between_two_pre_start_hooks_starts_neither_the_next_nor_a_process() {
    // Regression: a cancel that came after one hook ended and before the
    // next began started the next all the same, only to SIGTERM it at
    // once: a `migrate` begun as the container was being stopped. Here
    // the first hook's `setsid` child keeps its output open, so its last
    // lines are waited for (`output::LAST_LINES_WAIT`), and sends the
    // SIGTERM during that wait (once out of the group, or it is killed
    // with it).
    let hooks = r#"
  pre_start:
    - { name: first, command: "sd=$PPID; setsid sh -c 'touch $DIR/out; sleep 0.05; kill -TERM '$sd'; sleep 0.5' & while [ ! -e $DIR/out ]; do sleep 0.01; done" }
    - { name: second, command: "echo second >> $DIR/events" }
"#;
    let cfg = header(hooks) + &recorder("app", "");
    let mut sd = Sheepdog::start("cancelbetween", &cfg);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("pre_start hook \"first\" succeeded"), "{log}");
    assert!(!log.contains("\"second\""), "{log}");
    assert!(sd.dir.lines("events").is_empty(), "{log}");
}

#[test]
fn a_pre_start_hook_ignoring_sigterm_is_killed_at_the_shutdown_deadline() {
    // Regression: the cancelled hook had its own 5 s grace, past a shorter
    // shutdown_timeout, which the log claimed was being enforced.
    let hooks = r#"
  pre_start:
    - { name: stubborn, command: "trap '' TERM; echo $$ > $DIR/hook; while :; do sleep 0.05; done", timeout: 10m }
"#;
    let cfg = header(hooks).replace("shutdown_timeout: 15", "shutdown_timeout: 1s")
        + &recorder("app", "");
    let mut sd = Sheepdog::start("hookdeadline", &cfg);
    let pid = sd.wait_pid("hook");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("shutdown_timeout (1s) reached"), "{log}");
    assert!(
        !log.contains("still running after 5s"),
        "the hook kept its own grace past the deadline:\n{log}"
    );
    assert!(!alive(pid), "hook {pid} outlived sheepdog");
}

#[test]
fn post_stop_hooks_wait_for_scheduled_runs_to_stop() {
    let hooks = r#"
  post_stop:
    - { name: bye, command: "echo post-stop >> $DIR/events" }
"#;
    let cfg = header(hooks)
        + r#"
  job:
    schedule: "@every 1s"
    command: "trap 'sleep 0.5; echo job-stopped >> $DIR/events; exit 0' TERM; echo job-running > $DIR/running; while :; do sleep 0.05; done"
"#;
    let mut sd = Sheepdog::start("poststopjobs", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.path("running").exists()),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(
        sd.dir.lines("events"),
        ["job-stopped", "post-stop"],
        "{}",
        sd.log()
    );
}

#[test]
fn a_process_pre_start_hook_runs_before_every_scheduled_run() {
    let cfg = header("  pre_start: []")
        + r#"
  job:
    schedule: "@every 1s"
    command: "echo run >> $DIR/events"
    hooks:
      pre_start:
        - { name: prepare, command: "echo pre >> $DIR/events" }
"#;
    let mut sd = Sheepdog::start("jobprestart", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.lines("events").len() >= 4),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let events = sd.dir.lines("events");
    let pairs = events.len() / 2;
    assert_eq!(
        events[..pairs * 2],
        ["pre", "run"].repeat(pairs),
        "{events:?}"
    );
}

#[test]
fn scheduled_jobs_wait_for_pre_start_hooks_and_their_dependencies() {
    let hooks = r#"
  pre_start:
    - { name: migrate, command: "sleep 1.5; echo migrated >> $DIR/events" }
"#;
    let cfg = header(hooks)
        + r#"
  warm:
    type: oneshot
    command: "sleep 1.5; echo warmed >> $DIR/events"
  job:
    schedule: "@every 1s"
    command: "echo run >> $DIR/events"
    depends_on: [warm]
"#;
    let mut sd = Sheepdog::start("jobwaits", &cfg);
    assert!(
        wait_until(WAIT, || sd.dir.lines("events").contains(&"run".to_string())),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let events = sd.dir.lines("events");
    assert_eq!(
        events[..2],
        ["migrated", "warmed"],
        "no run before the hook and the dependency: {events:?}"
    );
}

/// A scheduled run's post_start hook does not outlive the run: it gets a
/// short grace, then is cancelled (its group stopped) before the run counts
/// as ended. It used to be left running on its own thread.
#[test]
fn a_scheduled_runs_post_start_hook_ends_with_the_run() {
    let cfg = header("  pre_start: []")
        + r#"
  job:
    schedule: "@every 1s"
    command: "true"
    hooks:
      post_start:
        - { name: lingering, command: "(set -C; echo $$ > $DIR/hook) 2>/dev/null; exec sleep 30", timeout: 10m }
"#;
    let mut sd = Sheepdog::start("jobpoststart", &cfg);
    sd.wait_log("job#1: run 1 exited 0 after");
    let hook = read_pid(&sd.dir.path("hook")).expect("the hook wrote its pid");
    // Reaped before the run reported its end; allow only for /proc to catch up.
    assert!(
        wait_until(Duration::from_secs(2), || !alive(hook)),
        "post_start hook {hook} outlived its run\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_restart_cancels_the_previous_starts_post_start_hooks() {
    // A crash loop: every start's notification hook would run 30s.
    let cfg = header("  pre_start: []")
        + r#"
  loop:
    command: "sleep 0.2; exit 1"
    hooks:
      post_start:
        - { name: notify, command: "echo $$ >> $DIR/hooks; exec sleep 30", timeout: 10m }
"#;
    let mut sd = Sheepdog::start("poststartpile", &cfg);
    let pids = |sd: &Sheepdog| -> Vec<i32> {
        sd.dir
            .lines("hooks")
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    assert!(wait_until(WAIT, || pids(&sd).len() >= 4), "{}", sd.log());
    // All but the latest start's hooks (and one that may just be ending).
    let early: Vec<i32> = pids(&sd).into_iter().take(2).collect();
    assert!(
        wait_until(WAIT, || early.iter().all(|&p| !alive(p))),
        "hooks of earlier starts {early:?} still run\n{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let all = pids(&sd);
    assert!(
        wait_until(Duration::from_secs(2), || all.iter().all(|&p| !alive(p))),
        "post_start hooks {all:?} outlived sheepdog\n{}",
        sd.log()
    );
}

#[test]
fn a_hooks_last_output_lines_come_before_its_result() {
    // The result line used to race the output thread: with a chatty hook,
    // "succeeded" could be logged before the hook's last lines.
    let hook = |n: u32| {
        format!(
            "    - {{ name: h{n}, command: \"i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; echo LAST-h{n}\" }}\n"
        )
    };
    let hooks = format!("  pre_start:\n{}", (1..=5).map(hook).collect::<String>());
    let cfg = header(&hooks) + "  app:\n    command: [sleep, \"1000\"]\n";
    let mut sd = Sheepdog::start("hookorder", &cfg);
    sd.wait_log("app-1: started");
    let log = sd.log();
    for n in 1..=5 {
        let last = log
            .find(&format!("| LAST-h{n}"))
            .expect("the hook's last line");
        let result = log
            .find(&format!("pre_start hook \"h{n}\" succeeded"))
            .expect("the hook's result");
        assert!(last < result, "h{n}:\n{log}");
    }
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A process's own pre_start or post_start hook that ignores SIGTERM is
/// killed at the shutdown deadline (and at a second SIGTERM), not after
/// the hooks' own grace.
fn a_stubborn_start_hook(kind: &str, name: &str, second_term: bool) {
    let deadline = if second_term { "120" } else { "1" };
    let cfg = header("  pre_start: []").replace(
        "shutdown_timeout: 15",
        &format!("shutdown_timeout: {deadline}"),
    ) + &format!(
        r#"
  w:
    command: "exec sleep 1000"
    hooks:
      {kind}:
        - {{ name: slow, command: "trap '' TERM; echo $$ > $DIR/hook; while :; do sleep 0.05; done", timeout: 10m }}
"#
    );
    let mut sd = Sheepdog::start(name, &cfg);
    let hook = sd.wait_pid("hook");
    sd.signal(TERM);
    if second_term {
        sd.wait_log("shutting down (received SIGTERM)");
        sd.signal(TERM);
    }
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert!(!alive(hook), "{}", sd.log());
    // Killed for the shutdown, not by the hook's own grace running out.
    assert!(
        !sd.log().contains("still running after 5s; sending SIGKILL"),
        "{}",
        sd.log()
    );
}

#[test]
fn a_stubborn_pre_start_hook_is_killed_at_the_shutdown_deadline() {
    a_stubborn_start_hook("pre_start", "stubbornpre", false);
}

#[test]
fn a_stubborn_post_start_hook_is_killed_at_the_shutdown_deadline() {
    a_stubborn_start_hook("post_start", "stubbornpost", false);
}

#[test]
fn a_stubborn_pre_start_hook_is_killed_at_a_second_sigterm() {
    a_stubborn_start_hook("pre_start", "stubbornpre2", true);
}

#[test]
fn a_stubborn_post_start_hook_is_killed_at_a_second_sigterm() {
    a_stubborn_start_hook("post_start", "stubbornpost2", true);
}

#[test]
#[cfg_attr(not(feature = "api"), ignore = "reads /api/v1/ready (feature `api`)")]
fn ready_names_the_global_pre_start_hooks_while_they_run() {
    // Regression: every process was listed as "waiting for its
    // dependencies", `a` too, which has none: an operator reading the 503
    // looked for a dependency that does not exist.
    let (mut sd, port, _) = start_serving("readyprestart", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nhooks:\n  pre_start:\n    \
             - {{ name: migrate, command: \"touch $DIR/hook; while [ ! -e $DIR/go ]; do sleep 0.05; done\", timeout: 1m }}\n\
             processes:\n  a: {{command: [sleep, \"100\"]}}\n  b: {{command: [sleep, \"100\"], depends_on: [a]}}\n"
        )
    });
    assert!(
        wait_until(WAIT, || sd.dir.path("hook").exists()),
        "{}",
        sd.log()
    );
    // The hook may run before the supervisor's first publish: wait for a
    // snapshot that lists something.
    let mut r = http::get(port, "/api/v1/ready", None);
    assert!(
        wait_until(WAIT, || {
            r = http::get(port, "/api/v1/ready", None);
            r.json()["not_ready"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        }),
        "{}",
        r.body
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.json()["not_ready"],
        serde_json::json!(["sheepdog is running the global pre_start hooks"]),
        "{}",
        r.body
    );
    sd.dir.write("go", "");
    assert!(
        wait_until(WAIT, || http::get(port, "/api/v1/ready", None).status
            == 200),
        "{}",
        sd.log()
    );
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "starts a process through the API (feature `api`)"
)]
fn a_held_process_is_not_started_before_the_global_pre_start_hooks() {
    // Regression: `ctl start` of an `initial_state: stopped` process
    // started it while the global pre_start hooks (the migrations it may
    // need) were still running.
    let (mut sd, port, _) = start_serving("heldprestart", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nhooks:\n  pre_start:\n    \
             - {{ name: migrate, command: \"touch $DIR/hook; while [ ! -e $DIR/go ]; do sleep 0.05; done\", timeout: 1m }}\n\
             processes:\n  a: {{command: [sleep, \"100\"]}}\n  \
             h: {{command: \"touch $DIR/h-ran; exec sleep 100\", initial_state: stopped}}\n"
        )
    });
    assert!(
        wait_until(WAIT, || sd.dir.path("hook").exists()),
        "{}",
        sd.log()
    );
    let r = http::post(port, "/api/v1/processes/h/start", None, "{}");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("global pre_start hooks"), "{}", r.body);
    let r = http::post(port, "/api/v1/processes/a/restart", None, "{}");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("global pre_start hooks"), "{}", r.body);
    // Once they are done, it can be started.
    sd.dir.write("go", "");
    sd.wait_log("a-1: started");
    let r = http::post(port, "/api/v1/processes/h/start", None, "{}");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        wait_until(WAIT, || sd.dir.path("h-ran").exists()),
        "{}",
        sd.log()
    );
    let log = sd.log();
    let hook_done = log
        .find("pre_start hook \"migrate\" succeeded")
        .expect("hook line");
    let h_started = log.find("h-1: started").expect("h started");
    assert!(hook_done < h_started, "{log}");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// `app`'s post_stop hook is running (held by `$DIR/go`) and a start
/// (round `round`) was asked for, with `app-1` started `starts` times
/// before: that start waits until the hook has ended.
#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "stops and starts through the API (feature `api`)"
)]
fn a_stop_that_cancels_a_start_waiting_for_post_stop_hooks_says_so() {
    // Regression: it answered "app is already stopped", as if it did nothing.
    let (mut sd, port, _) = start_serving("cancelpendingstart", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nprocesses:\n  app:\n    \
             command: [sleep, \"1000\"]\n    hooks:\n      post_stop:\n        - {{ name: clean, command: \"touch $DIR/cleaning; \
             while [ ! -e $DIR/go ]; do sleep 0.05; done\", timeout: 1m }}\n"
        )
    });
    let post = |what: &str, body: &str| {
        http::post(port, &format!("/api/v1/processes/app/{what}"), None, body)
    };
    sd.wait_log("app-1: started");
    assert_eq!(post("stop", "{}").status, 202, "{}", sd.log());
    assert!(
        wait_until(WAIT, || sd.dir.path("cleaning").exists()),
        "{}",
        sd.log()
    );
    let rounds = [
        ("start", "{}", "stop", "app is already stopped"),
        ("scale", r#"{"desired":1}"#, "scale", "app scaled to 0"),
    ];
    for (up, up_body, down, said) in rounds {
        let r = post(up, up_body);
        assert_eq!(r.status, 202, "{up}: {}", r.body);
        // Its status says a start is on its way, not just "stopped".
        let app = http::get(port, "/api/v1/processes/app", None).json();
        assert_eq!(
            (&app["state"], &app["operation"]),
            (&"stopped".into(), &"starting".into()),
            "{app}"
        );
        let down_body = if down == "scale" {
            r#"{"desired":0}"#
        } else {
            "{}"
        };
        let r = post(down, down_body);
        assert_eq!(r.status, 200, "{down}: {}", r.body);
        assert_eq!(
            r.json()["message"],
            format!("{said}; its pending start was cancelled"),
            "{}",
            sd.log()
        );
        // Nothing is pending now.
        let app = http::get(port, "/api/v1/processes/app", None).json();
        assert_eq!(app["operation"], serde_json::Value::Null, "{app}");
        let r = post(down, down_body);
        assert_eq!(r.json()["message"], said, "{}", sd.log());
    }
    sd.dir.write("go", "");
    sd.wait_log("post_stop hook \"clean\" succeeded");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.count("app-1: started"), 1, "{}", sd.log());
}

/// A start waiting for post_stop hooks when a shutdown begins never
/// comes: the status stops saying `starting`.
#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "stops and starts through the API (feature `api`)"
)]
fn a_shutdown_drops_a_start_waiting_for_post_stop_hooks() {
    let (mut sd, port, _) = start_serving("shutdownpendingstart", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nprocesses:\n  app:\n    \
             command: [sleep, \"1000\"]\n    hooks:\n      post_stop:\n        - {{ name: clean, command: \"touch $DIR/cleaning; \
             while [ ! -e $DIR/go ]; do sleep 0.05; done\", timeout: 1m }}\n"
        )
    });
    let post = |what: &str| http::post(port, &format!("/api/v1/processes/app/{what}"), None, "{}");
    let operation = || http::get(port, "/api/v1/processes/app", None).json()["operation"].clone();
    sd.wait_log("app-1: started");
    assert_eq!(post("stop").status, 202, "{}", sd.log());
    assert!(
        wait_until(WAIT, || sd.dir.path("cleaning").exists()),
        "{}",
        sd.log()
    );
    assert_eq!(post("start").status, 202, "{}", sd.log());
    assert_eq!(operation(), "starting", "{}", sd.log());
    sd.signal(TERM);
    // The hook holds the shutdown; the API answers meanwhile.
    assert!(
        wait_until(WAIT, || operation().is_null()),
        "{}\n{}",
        operation(),
        sd.log()
    );
    assert!(!sd.dir.path("go").exists());
    sd.dir.write("go", "");
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    assert_eq!(sd.count("app-1: started"), 1, "{}", sd.log());
}

fn started_after_post_stop(sd: &Sheepdog, round: usize, starts: usize) {
    let waiting = "app: waiting for its post_stop hooks to end before it starts";
    assert!(
        wait_until(WAIT, || sd.count(waiting) == round
            || sd.count("app-1: started") > starts),
        "{}",
        sd.log()
    );
    assert_eq!(
        sd.count("app-1: started"),
        starts,
        "round {round}: started while its post_stop hook ran:\n{}",
        sd.log()
    );
    sd.dir.write("go", "");
    let mut want = vec!["start"];
    for _ in 0..round {
        want.extend(["post_stop", "start"]);
    }
    assert!(
        wait_until(WAIT, || sd.dir.lines("ev") == want),
        "{:?}\n{}",
        sd.dir.lines("ev"),
        sd.log()
    );
}

#[test]
#[cfg_attr(
    not(feature = "api"),
    ignore = "stops and starts through the API (feature `api`)"
)]
fn a_start_waits_for_the_post_stop_hooks_of_the_previous_stop() {
    // Regression: the cleanup of the previous stop (rm the socket) ran
    // after the next start had made its own.
    let (mut sd, port, _) = start_serving("startwaitspoststop", |port, _| {
        format!(
            "global:\n  shutdown_timeout: 15\n  api_port: {port}\n  metrics_enabled: false\nprocesses:\n  app:\n    \
             command: \"trap 'while [ ! -e $DIR/term-ok ]; do sleep 0.05; done; exit 0' TERM; \
             echo start >> $DIR/ev; while :; do sleep 0.05; done\"\n    \
             hooks:\n      post_stop:\n        - {{ name: rmsock, command: \"touch $DIR/cleaning; \
             while [ ! -e $DIR/go ]; do sleep 0.05; done; rm -f $DIR/go $DIR/cleaning; echo post_stop >> $DIR/ev\", timeout: 1m }}\n"
        )
    });
    let post = |what: &str, body: &str| {
        let r = http::post(port, &format!("/api/v1/processes/app/{what}"), None, body);
        // Accepted as before: only the launch waits.
        assert!(r.status == 200 || r.status == 202, "{what}: {}", r.body);
    };
    let cleaning = |sd: &Sheepdog| {
        assert!(
            wait_until(WAIT, || sd.dir.path("cleaning").exists()),
            "{}",
            sd.log()
        );
    };
    sd.dir.write("term-ok", "");
    assert!(
        wait_until(WAIT, || sd.dir.lines("ev") == ["start"]),
        "{}",
        sd.log()
    );
    let rounds = [
        [("stop", "{}"), ("start", "{}")],
        [("scale", r#"{"desired":0}"#), ("scale", r#"{"desired":1}"#)],
    ];
    for (round, [down, up]) in rounds.into_iter().enumerate() {
        post(down.0, down.1);
        cleaning(&sd);
        let starts = sd.count("app-1: started");
        post(up.0, up.1);
        started_after_post_stop(&sd, round + 1, starts);
    }
    // Scaled up while the scale-down still stops it: once it has stopped,
    // its start waits for the hook too.
    std::fs::remove_file(sd.dir.path("term-ok")).unwrap();
    post("scale", r#"{"desired":0}"#);
    assert!(
        sd.wait_log_n("app-1: stopping pid", 3, WAIT),
        "{}",
        sd.log()
    );
    post("scale", r#"{"desired":1}"#);
    let app = http::get(port, "/api/v1/processes/app", None).json();
    assert_eq!(
        (&app["state"], &app["operation"]),
        (&"stopping".into(), &"starting".into()),
        "{app}"
    );
    let starts = sd.count("app-1: started");
    sd.dir.write("term-ok", "");
    cleaning(&sd);
    started_after_post_stop(&sd, 3, starts);
    // For the hook at the shutdown.
    sd.dir.write("go", "");
    sd.signal(TERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A run is the child's, not its pre_start hooks': a crash right after a
/// hook longer than `restart_reset_after` did not reset the attempts, so
/// `max_restart_attempts` still ends the loop (review-hc: the hook's time
/// counted as run time, and the loop never ended).
#[test]
fn pre_start_time_is_not_run_time_for_restart_reset_after() {
    let cfg = "global:\n  shutdown_timeout: 15\n  restart_backoff_initial: 0\n  restart_reset_after: 1s\n  api_enabled: false\n  metrics_enabled: false\nprocesses:\n".to_string()
        + r#"
  crashy:
    command: "exit 3"
    max_restart_attempts: 2
    hooks:
      pre_start:
        - { name: slow, command: [sleep, "1.5"] }
"#;
    let mut sd = Sheepdog::start("hookrun", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    assert!(
        sd.log()
            .contains("crashy-1: failed: exited 3; gave up after 2 restart attempts"),
        "{}",
        sd.log()
    );
}
