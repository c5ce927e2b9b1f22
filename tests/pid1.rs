//! sheepdog as PID 1 in its own pid namespace (`unshare --pid --fork
//! --mount-proc`): orphans of managed processes are reaped, SIGTERM to PID 1
//! stops everything in order, a child holding the output pipe while
//! ignoring SIGTERM cannot hang the shutdown, and a process that left its
//! group still gets a SIGTERM before the end.
//!
//! Needs root (CI runs as root); skipped with a printed reason otherwise.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Whether this machine can make pid namespaces (printing why not, for
/// test `name`, when it cannot).
fn can_unshare(name: &str) -> bool {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipping {name}: unshare failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping {name}: unshare unavailable: {e}");
            false
        }
    }
}

/// Start sheepdog as PID 1 of a new pid namespace, or None (with the reason
/// printed) when this machine cannot.
fn start_pid1(name: &str, config: &str) -> Option<Sheepdog> {
    if !can_unshare(name) {
        return None;
    }
    let sd = Sheepdog::start_under(
        name,
        config,
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        |_| {},
    );
    Some(sd)
}

/// The host pid of the namespace's PID 1 (the child of `unshare`).
fn pid1_host_pid(sd: &Sheepdog) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", sd.pid())).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Zombies among the descendants of `root` (host view).
fn zombies_under(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        else {
            continue;
        };
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            if stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
            {
                out.push(c);
            }
            stack.push(c);
        }
    }
    out
}

#[test]
fn as_pid1_it_reaps_orphans_and_stops_cleanly_on_sigterm() {
    // `spawner` leaves 1,000 short-lived orphans behind (their parent, a
    // subshell, exits at once), then keeps running.
    let cfg = r#"
global: { shutdown_timeout: 20, api_enabled: false, metrics_enabled: false }
processes:
  spawner:
    command: "for i in $(seq 1000); do (sleep 0.01 &) ; done; echo spawned > $DIR/spawned; exec sleep 1000"
  app:
    command: "trap 'exit 0' TERM; echo $$ > $DIR/app; while :; do sleep 0.05; done"
    depends_on: [spawner]
"#;
    let Some(mut sd) = start_pid1("pid1-orphans", cfg) else {
        return;
    };
    assert!(
        wait_until(WAIT, || sd.dir.path("spawned").exists()),
        "{}",
        sd.log()
    );
    let root = wait_pid1(&sd);
    // Every orphan is reaped: no zombie stays under PID 1.
    assert!(
        wait_until(WAIT, || zombies_under(root).is_empty()),
        "zombies left: {:?}\n{}",
        zombies_under(root),
        sd.log()
    );
    assert!(
        wait_until(WAIT, || read_pid(&sd.dir.path("app")).is_some()),
        "app never ran:\n{}",
        sd.log()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(root),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains("pid 1,"), "runs as PID 1:\n{log}");
    let reaped: u64 = log
        .split(" orphans reaped")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no orphan count in log:\n{log}"));
    assert!(
        reaped >= 1000,
        "sheepdog reaped {reaped} orphans, expected all 1000:\n{log}"
    );
}

#[test]
fn as_pid1_a_child_ignoring_sigterm_and_holding_the_pipe_cannot_hang_shutdown() {
    // The grandchild keeps stdout open and ignores TERM: only the group
    // SIGKILL at the timeout ends it.
    let cfg = r#"
global: { shutdown_timeout: 20, api_enabled: false, metrics_enabled: false }
processes:
  holder:
    command: "trap '' TERM; (trap '' TERM; while :; do echo tick; sleep 0.2; done) & echo ready > $DIR/ready; wait"
    shutdown: { timeout: 1s }
"#;
    let Some(mut sd) = start_pid1("pid1-holder", cfg) else {
        return;
    };
    assert_eq!(term_when_ready(&mut sd), 0, "{}", sd.log());
    assert!(sd.log().contains("holder-1 | tick"), "{}", sd.log());
    assert!(sd.log().contains("sending SIGKILL"), "{}", sd.log());
}

#[test]
fn as_pid1_a_process_that_left_its_group_gets_sigterm_before_the_end() {
    // When PID 1 exits the kernel SIGKILLs what is left of the namespace:
    // a daemon that made its own session would never see a SIGTERM. The
    // file it writes on SIGTERM shows it did.
    let cfg = r#"
global: { shutdown_timeout: 20, api_enabled: false, metrics_enabled: false }
processes:
  app:
    command: "setsid sh -c 'trap \"echo term > $DIR/got-term; exit 0\" TERM; echo ready > $DIR/ready; sleep 1000 & wait' & exec sleep 1000"
"#;
    let Some(mut sd) = start_pid1("pid1-left-group", cfg) else {
        return;
    };
    assert_eq!(term_when_ready(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    assert!(sd.dir.path("got-term").exists(), "{log}");
    assert!(log.contains("left-over pid"), "{log}");
}

#[test]
fn as_pid1_with_the_hosts_proc_no_left_over_search_signals_strangers() {
    // Without --mount-proc, /proc lists the host's processes under the
    // host's pids, which mean other processes (or none) in sheepdog's
    // namespace: the search is skipped, and said so.
    if !can_unshare("pid1-host-proc") {
        return;
    }
    let cfg = r#"
global: { shutdown_timeout: 20, api_enabled: false, metrics_enabled: false }
processes:
  app:
    command: "echo ready > $DIR/ready; exec sleep 1000"
"#;
    let mut sd = Sheepdog::start_under(
        "pid1-host-proc",
        cfg,
        &["unshare", "--pid", "--fork", "--kill-child"],
        |_| {},
    );
    assert_eq!(term_when_ready(&mut sd), 0, "{}", sd.log());
    let log = sd.log();
    assert!(
        log.contains("unable to look for left-over processes: /proc is missing or shows another pid namespace"),
        "{log}"
    );
    assert!(!log.contains("still running outside"), "{log}");
}

/// Once the config's process has written `$DIR/ready`, SIGTERM the
/// namespace's PID 1; its exit code.
fn term_when_ready(sd: &mut Sheepdog) -> i32 {
    assert!(
        wait_until(WAIT, || sd.dir.path("ready").exists()),
        "{}",
        sd.log()
    );
    let root = wait_pid1(sd);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(root),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    sd.exit_code(Duration::from_secs(30))
}

fn wait_pid1(sd: &Sheepdog) -> i32 {
    let mut root = None;
    assert!(wait_until(WAIT, || {
        root = pid1_host_pid(sd);
        root.is_some()
    }));
    root.unwrap()
}

#[test]
fn as_pid1_sighup_reloads_the_configuration() {
    // The kernel delivers to PID 1 only the signals it handles: a HUP from
    // the host (`docker kill -s HUP`) must reach the reload.
    let cfg = r#"
global: { shutdown_timeout: 20, api_enabled: false, metrics_enabled: false }
processes:
  first:
    command: "echo $$ > $DIR/first; exec sleep 1000"
"#;
    let Some(mut sd) = start_pid1("pid1-reload", cfg) else {
        return;
    };
    assert!(
        wait_until(WAIT, || read_pid(&sd.dir.path("first")).is_some()),
        "{}",
        sd.log()
    );
    let root = wait_pid1(&sd);
    let file = sd.dir.path("sheepdog.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let added = text
        + "  second:\n    command: \"echo $$ > "
        + sd.dir.0.to_str().unwrap()
        + "/second; exec sleep 1000\"\n";
    std::fs::write(&file, added).unwrap();
    let hup = nix::sys::signal::Signal::SIGHUP;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(root), hup).unwrap();
    assert!(
        wait_until(WAIT, || read_pid(&sd.dir.path("second")).is_some()),
        "second never started after SIGHUP:\n{}",
        sd.log()
    );
    // (The summary is logged first, but written by the output thread.)
    sd.wait_log("added second; 1 unchanged");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(root),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}
