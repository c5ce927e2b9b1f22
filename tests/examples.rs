//! The shipped examples stay true: every `examples/*.yaml` passes `sheepdog
//! check`, every one is listed in `examples/README.md`, and the two that
//! demonstrate start and stop order (`basic.yaml`, `shutdown-order.yaml`)
//! behave as their comments say when run for real.
//!
//! `examples/bad/*.yaml` failing with exit 2 and their messages is covered
//! by `tests/config.rs` (`bad_examples_fail_with_their_expected_messages`).
//!
//! Every wait has a deadline; every process a test starts is killed (by pid
//! or process group) when the test ends, pass or fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Variables the examples read (`${VAR:-default}`) or that sheepdog applies
/// as overrides: removed so the examples see their defaults, whatever the
/// environment of the person running the tests.
fn hermetic(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHEEPDOG_") {
            cmd.env_remove(&k);
        }
    }
    for k in [
        "PORT",
        "WORKERS",
        "GREETING",
        "APP_DIR",
        "MIGRATE_EXIT",
        "RUN_AS_NOBODY",
        "LOG_LEVEL",
        "HORIZON_ENABLED",
        "QUEUE_CONNECTION",
    ] {
        cmd.env_remove(k);
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
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
        let mut cmd = Command::new(BIN);
        cmd.arg("check").arg("-c").arg(&file);
        hermetic(&mut cmd);
        let out = output_within(cmd, WAIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
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

#[test]
fn basic_example_serves_its_page_and_stops_workers_before_web() {
    let port = free_port();
    // `prepare` writes the page under ${TMPDIR:-/tmp}: give it this test's own.
    let tmp = TempDir::new("example-basic-tmp");
    let file = examples_dir().join("basic.yaml");
    let mut sd = Sheepdog::start_file("example-basic", &file, |cmd| {
        hermetic(cmd);
        cmd.env("PORT", port.to_string()).env("TMPDIR", &tmp.0);
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
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
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
fn shutdown_order_example_stops_in_reverse_kills_the_stubborn_one_and_ends_the_daemon() {
    let file = examples_dir().join("shutdown-order.yaml");
    let mut sd = Sheepdog::start_file("example-shutdown", &file, hermetic);
    // Each process installs its trap before it prints "up".
    for p in ["db", "app", "worker", "stubborn", "daemon"] {
        sd.wait_log(&format!("{p}: up"));
    }
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
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
        at.windows(2).all(|w| w[0] < w[1]),
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
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{log}");
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
