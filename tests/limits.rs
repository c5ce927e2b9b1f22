//! sheepdog short of its own resources: an instance whose thread cannot be
//! created (a full pids cgroup, RLIMIT_NPROC) is tried again, not failed
//! for good, and a health check it cannot run (no task for an exec probe
//! or a name lookup) counts neither way; nor does a pre_start hook it
//! has no descriptor for. Its own test binary, so no other
//! test's processes count against the limit it sets.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::*;

const NOBODY: u32 = 65534;

/// Tasks (threads included) whose real uid is `uid`: what RLIMIT_NPROC
/// counts.
fn tasks_of(uid: u32) -> u64 {
    let mut n = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let real = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                .and_then(|id| id.parse::<u32>().ok());
            if real == Some(uid) {
                n += 1;
            }
        }
    }
    n
}

/// RLIMIT_NPROC, soft and hard, for the process about to exec (lowering
/// needs no privilege, unlike changing another process's limit).
fn nproc_limit(cmd: &mut std::process::Command, limit: u64) {
    // SAFETY: only setrlimit, which is async-signal-safe, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &l) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// The tests here count and fill nobody's tasks: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// sheepdog may have LIMIT tasks of nobody's; the test's own tasks of
/// nobody's (fillers, started under root's limit) count against it.
const LIMIT: u64 = 64;

/// Sleepers of nobody's until nobody has `tasks` tasks.
fn fill(tasks: u64) -> Vec<std::process::Child> {
    let mut fillers = Vec::new();
    while tasks_of(NOBODY) < tasks {
        let mut c = std::process::Command::new("sleep");
        c.arg("1000").uid(NOBODY).gid(NOBODY);
        fillers.push(c.spawn().expect("spawn a filler"));
        assert!(fillers.len() <= LIMIT as usize, "cannot fill the limit");
    }
    fillers
}

fn free(fillers: &mut Vec<std::process::Child>) {
    for f in fillers.iter_mut() {
        let _ = f.kill();
        let _ = f.wait();
    }
    fillers.clear();
}

/// The lock that keeps these tests apart, or None (said) without root.
fn exclusive() -> Option<std::sync::MutexGuard<'static, ()>> {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to run sheepdog as another user");
        return None;
    }
    Some(one)
}

/// A FIFO a oneshot `read`s from: it runs until the test opens it.
struct Gate {
    fifo: std::path::PathBuf,
    /// Removed with the gate.
    _dir: TempDir,
}

impl Gate {
    fn new() -> Gate {
        let dir = TempDir::new("gate");
        let fifo = dir.path("gate");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        // mkfifo's mode is cut by the umask; nobody must read it.
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
        Gate { fifo, _dir: dir }
    }

    /// The oneshot process `gate` of a config.
    fn process(&self) -> String {
        format!(
            "gate: {{type: oneshot, command: \"read x < {}\"}}",
            self.fifo.display()
        )
    }

    fn open(&self) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"go\n"))
            .unwrap();
    }
}

const HEAD: &str = "global: {api_enabled: false, metrics_enabled: false}\nprocesses:\n";

fn as_nobody(name: &str, cfg: &str) -> (TempDir, Sheepdog) {
    let dir = TempDir::new(name);
    let file = dir.write("sheepdog.yaml", cfg);
    let sd = Sheepdog::start_file(name, &file, |cmd| {
        nproc_limit(cmd, LIMIT);
        cmd.uid(NOBODY).gid(NOBODY);
    });
    (dir, sd)
}

/// Run `app` with `check` as its health check as nobody; once healthy, fill
/// nobody's tasks: the check cannot run, and that must count neither way.
fn a_check_sheepdog_cannot_run_does_not_count(name: &str, check: &str) {
    let cfg = format!(
        "{HEAD}  app: {{command: [sleep, '1000'], health_check: {{{check}, \
         initial_delay: 0, period: 100ms, failure_threshold: 1}}}}\n"
    );
    let (_dir, mut sd) = as_nobody(name, &cfg);
    sd.wait_log("app-1: healthy");
    let mut fillers = fill(LIMIT + 1);
    let seen = sd.wait_log_n("app-1: health check not run", 1, WAIT);
    free(&mut fillers);
    assert!(seen, "{}", sd.log());
    assert!(!sd.log().contains("unhealthy"), "{}", sd.log());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_health_check_sheepdog_cannot_run_does_not_count_against_the_instance() {
    let Some(_one) = exclusive() else { return };
    a_check_sheepdog_cannot_run_does_not_count("probenotrun", "type: exec, command: ['true']");
}

/// This machine's host name and a loopback-or-local address it resolves to
/// (through /etc/hosts: a lookup, so a thread of sheepdog's), or None.
fn resolvable_host_name() -> Option<(String, std::net::IpAddr)> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_string();
    let ip = (name.as_str(), 0).to_socket_addrs().ok()?.next()?.ip();
    Some((name, ip))
}

#[test]
fn a_tcp_check_whose_lookup_thread_cannot_start_does_not_count() {
    let Some(_one) = exclusive() else { return };
    let Some((host, ip)) = resolvable_host_name() else {
        eprintln!("skipped: this machine's host name does not resolve");
        return;
    };
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    a_check_sheepdog_cannot_run_does_not_count(
        "lookupnotrun",
        &format!("type: tcp, address: '{host}:{port}'"),
    );
    drop(listener);
}

/// Start `rest` (processes after `gate`) as nobody, and once the gate runs
/// fill nobody's tasks so that, even after the gate's exit frees one, no
/// thread of sheepdog's can be made; then open the gate and wait for
/// `refused`. Returns sheepdog with the tasks freed again.
fn starved(name: &str, rest: &str, refused: &str, times: usize) -> (TempDir, Gate, Sheepdog) {
    let gate = Gate::new();
    let (dir, sd) = as_nobody(name, &format!("{HEAD}  {}\n{rest}", gate.process()));
    sd.wait_log("gate-1: started");
    let mut fillers = fill(LIMIT + 2);
    gate.open();
    let seen = sd.wait_log_n(refused, times, WAIT);
    free(&mut fillers);
    assert!(seen, "{}", sd.log());
    (dir, gate, sd)
}

#[test]
fn an_instance_whose_thread_cannot_be_created_is_tried_again() {
    let Some(_one) = exclusive() else { return };
    let rest = "  app: {command: [sleep, '1000'], scale: 3, depends_on: [gate]}\n";
    let (_d, _g, mut sd) = starved("nothread", rest, "unable to start its thread", 3);
    assert!(sd.log().contains("trying again in 1s"), "{}", sd.log());
    for i in 1..=3 {
        sd.wait_log(&format!("app-{i}: started"));
    }
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_oneshot_dependency_whose_thread_is_retried_keeps_its_dependents_waiting() {
    let Some(_one) = exclusive() else { return };
    let rest = "  migrate: {type: oneshot, command: \"echo migrated\", depends_on: [gate]}\n  \
                web: {command: [sleep, '1000'], depends_on: [migrate]}\n";
    let refused = "migrate-1: unable to start its thread";
    let (_d, _g, mut sd) = starved("oneshotretry", rest, refused, 1);
    // Not "cannot start web": it waits for the retry, which succeeds.
    sd.wait_log("web-1: started");
    assert!(!sd.log().contains("cannot start web"), "{}", sd.log());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

#[test]
fn a_user_switch_without_root_says_so() {
    let Some(_one) = exclusive() else { return };
    let cfg = format!("{HEAD}  a: {{command: [sleep, '1'], user: root, restart: never}}\n");
    let (_dir, mut sd) = as_nobody("noroot", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert!(
        log.contains("unable to switch user/group: Operation not permitted")
            && log.contains("(switching to user \"root\" needs root; sheepdog runs as uid 65534)"),
        "{log}"
    );
}

#[test]
fn a_user_sheepdog_already_is_needs_no_switch_and_a_group_switch_is_named() {
    // `user: www-data` in an image run with `--user 33`: nothing to switch,
    // so it must not fail with EPERM from setgroups. A `group:` alone that
    // needs root names the group, not sheepdog's own user.
    let Some(_one) = exclusive() else { return };
    let cfg = format!(
        "{HEAD}  same: {{command: \"echo uid=$(id -u)\", user: '{NOBODY}', restart: never}}\n  \
         grp: {{command: [sleep, '1'], group: '0', restart: never}}\n"
    );
    let (_dir, mut sd) = as_nobody("sameuser", &cfg);
    assert_eq!(sd.exit_code(WAIT), 1, "{}", sd.log());
    let log = sd.log();
    assert!(log.contains(&format!("uid={NOBODY}")), "{log}");
    assert!(!log.contains("same-1: unable to start"), "{log}");
    assert!(
        log.contains("(switching to gid 0 needs root; sheepdog runs as uid 65534)"),
        "{log}"
    );
}

/// Set sheepdog's soft RLIMIT_NOFILE (its hard one kept): a limit below
/// what it has open leaves it no descriptor to make.
fn nofile_limit(pid: i32, soft: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes only the rlimit structs passed.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut l) };
    assert_eq!(got, 0, "{}", std::io::Error::last_os_error());
    l.rlim_cur = soft.min(l.rlim_max);
    // SAFETY: as above.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut()) };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

/// A pre_start hook sheepdog has no descriptor for (its pipes) is
/// sheepdog's shortage, as its own spawn's is: it counted as a failed
/// start, so a restart limit gave the process up for good.
#[test]
fn a_pre_start_hook_sheepdog_cannot_start_does_not_count() {
    let cfg = format!(
        "{HEAD}  app: {{command: [sleep, '1000'], max_restart_attempts: 1, \
         hooks: {{pre_start: [{{name: prep, command: ['true']}}]}}}}\n"
    );
    let mut sd = Sheepdog::start("hookshort", &cfg);
    sd.wait_log("app-1: started");
    let pid = sd.pids_of("app-1")[0];
    nofile_limit(sd.pid(), 3);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    // EMFILE's text is the libc's ("Too many open files" in glibc, "No
    // file descriptors available" in musl, which CI's static binary uses).
    let short = "(os error 24); sheepdog is short of resources, which does not count";
    let seen = sd.wait_log_n(short, 2, WAIT);
    nofile_limit(sd.pid(), 1024);
    assert!(seen, "{}", sd.log());
    assert!(
        sd.log()
            .contains("app-1: pre_start hook \"prep\": unable to run \"true\": "),
        "{}",
        sd.log()
    );
    assert!(sd.wait_log_n("app-1: started", 2, WAIT), "{}", sd.log());
    assert!(!sd.log().contains("gave up"), "{}", sd.log());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A process's log file that could not be opened while sheepdog had no
/// descriptor to spare is opened once it has one: its lines went to
/// stdout for as long as the instance lived.
#[test]
fn a_log_file_opened_while_short_of_descriptors_is_opened_later() {
    let (first, then) = (Gate::new(), Gate::new());
    let dir = TempDir::new("logshort");
    let log = dir.path("app.log");
    let cfg = format!(
        "{HEAD}  app: {{command: \"read x < {}; echo first; read x < {}; \
         while :; do echo again; sleep 0.1; done\", \
         logging: {{file: {{path: '{}', stdout_too: false}}}}}}\n",
        first.fifo.display(),
        then.fifo.display(),
        log.display()
    );
    let mut sd = Sheepdog::start("logshort", &cfg);
    sd.wait_log("app-1: started");
    nofile_limit(sd.pid(), 3);
    first.open();
    let seen = sd.wait_log_n("| first", 1, WAIT);
    nofile_limit(sd.pid(), 1024);
    assert!(seen, "{}", sd.log());
    // (EMFILE in the libc's words: see above.)
    let said = |l: &str| l.contains("app.log: ") && l.contains("(os error 24)");
    assert!(sd.log().lines().any(said), "{}", sd.log());
    then.open();
    let in_file = || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("again"));
    assert!(wait_until(WAIT, in_file), "{}", sd.log());
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// A readiness file that could not be written (a full disk) is written once
/// there is room, even if nothing else changes: it was tried again only at
/// the next change, so an idle sheepdog stayed unready for good. Nor is
/// an empty `ready.tmp` left behind by the failed write.
#[test]
fn a_readiness_file_on_a_full_disk_is_written_once_there_is_room() {
    let mnt = TempDir::new("readyfull-mnt");
    let works = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !nix::unistd::Uid::effective().is_root() || !works.is_ok_and(|s| s.success()) {
        eprintln!("skipped: needs root and unshare to mount a small tmpfs");
        return;
    }
    let small = mnt.0.display().to_string();
    let fill = format!(
        "mount -t tmpfs -o size=8k tmpfs {small} || exit 99; \
         head -c 8192 /dev/zero > {small}/fill; exec \"$@\""
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &fill,
        "sh",
    ];
    let cfg = format!(
        "global: {{api_enabled: false, metrics_enabled: false, readiness_file: {small}/ready}}\n\
         processes:\n  app: {{command: [sleep, '1000']}}\n"
    );
    let mut sd = Sheepdog::start_under("readyfull", &cfg, &wrapper, |_| {});
    sd.wait_log("unable to update readiness file");
    // The tmpfs as sheepdog's mount namespace has it.
    let inside = |f: &str| std::path::PathBuf::from(format!("/proc/{}/root{small}/{f}", sd.pid()));
    assert!(!inside("ready.tmp").exists(), "{}", sd.log());
    std::fs::remove_file(inside("fill")).unwrap();
    assert!(
        wait_until(WAIT, || inside("ready").exists()),
        "{}",
        sd.log()
    );
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// `ctl logs --follow` where no thread can be made (its stdout watcher):
/// it panicked (exit 101) instead of following.
#[test]
#[cfg_attr(not(feature = "api"), ignore = "needs the API")]
fn ctl_logs_follow_without_a_thread_to_spare_follows() {
    let Some(_one) = exclusive() else { return };
    let (_sd, api, _) = start_serving("ctlnothread", |api, _| {
        format!(
            "global: {{api_port: {api}, metrics_enabled: false}}\nprocesses:\n  \
             talk: {{command: \"while :; do echo hello; sleep 0.1; done\"}}\n"
        )
    });
    let dir = TempDir::new("ctlnothread-out");
    let out = dir.path("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sheepdog"));
    let url = format!("http://127.0.0.1:{api}");
    cmd.args(["ctl", "--url", &url, "logs", "--follow", "talk"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.path("err")).unwrap());
    // Room for ctl itself and no more: nobody's tasks now, plus it.
    nproc_limit(&mut cmd, tasks_of(NOBODY) + 1);
    cmd.uid(NOBODY).gid(NOBODY);
    let mut ctl = cmd.spawn().unwrap();
    let followed = wait_until(WAIT, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.matches("hello").count() >= 2)
            || ctl.try_wait().unwrap().is_some()
    });
    let _ = ctl.kill();
    let _ = ctl.wait();
    let err = std::fs::read_to_string(dir.path("err")).unwrap_or_default();
    assert!(followed && !err.contains("panicked"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.matches("hello").count() >= 2, "{text}\n{err}");
}

/// A probe sheepdog has no descriptor for (its abandon pipe, made before
/// its thread) was said to lack a thread: `unable to start a probe
/// thread: Too many open files`.
#[test]
fn a_probe_without_a_descriptor_is_not_said_to_lack_a_thread() {
    let cfg = format!(
        "{HEAD}  app: {{command: [sleep, '1000'], health_check: {{type: exec, \
         command: ['true'], initial_delay: 0, period: 100ms, failure_threshold: 1}}}}\n"
    );
    let mut sd = Sheepdog::start("probenofd", &cfg);
    sd.wait_log("app-1: healthy");
    nofile_limit(sd.pid(), 3);
    let seen = sd.wait_log_n("app-1: health check not run", 1, WAIT);
    nofile_limit(sd.pid(), 1024);
    assert!(seen, "{}", sd.log());
    let log = sd.log();
    assert!(!log.contains("start a probe thread"), "{log}");
    assert!(!log.contains("unhealthy"), "{log}");
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}

/// Heartbeat workers that could not be started (no task to spare) are
/// started once there is one, and the pings that waited go: they used to
/// be given up at once ("no ping will be sent") until a restart.
#[test]
fn heartbeat_workers_that_could_not_start_are_tried_again() {
    let Some(_one) = exclusive() else { return };
    let monitor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    monitor.set_nonblocking(true).unwrap();
    let port = monitor.local_addr().unwrap().port();
    let apps = "  a: {command: [sleep, '1000']}\n  b: {command: [sleep, '1000']}\n";
    let (dir, sd) = as_nobody("hbthread", &format!("{HEAD}{apps}"));
    sd.wait_log("b-1: started");
    // Two processes with a heartbeat: two workers to start.
    let beat = format!("heartbeat: {{url: 'http://127.0.0.1:{port}/ping', interval: 1h}}");
    dir.write(
        "sheepdog.yaml",
        &format!(
            "{HEAD}  a: {{command: [sleep, '1000'], {beat}}}\n  \
             b: {{command: [sleep, '1000'], {beat}}}\n"
        ),
    );
    // One task left: the reload's own thread, not the workers.
    let mut fillers = fill(LIMIT - 1);
    sd.signal(libc::SIGHUP);
    let seen = sd.wait_log_n("unable to start the heartbeat thread", 1, WAIT);
    free(&mut fillers);
    assert!(seen, "{}", sd.log());
    let pinged = wait_until(WAIT, || monitor.accept().is_ok());
    assert!(pinged, "no ping once tasks were free:\n{}", sd.log());
    let mut sd = sd;
    sd.signal(libc::SIGTERM);
    assert_eq!(sd.exit_code(WAIT), 0, "{}", sd.log());
}
