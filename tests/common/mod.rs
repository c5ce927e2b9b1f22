//! Test harness: start the real sheepdog binary on a config in a fresh temp
//! dir, read what it logs, wait on conditions with deadlines, and clean up
//! every process it started (by pid) when the test ends, pass or fail.
#![allow(dead_code)]

pub mod http;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sheepdog");

/// The default bound for any wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

/// Poll `cond` every few ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A fresh directory for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("sheepdog-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        fs::write(&p, text).unwrap();
        p
    }

    /// Lines of a file the children append to (empty if it does not exist yet).
    pub fn lines(&self, file: &str) -> Vec<String> {
        fs::read_to_string(self.path(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running sheepdog with its output captured in a file.
pub struct Sheepdog {
    pub child: Child,
    /// Started under a pid-namespace wrapper: pids in its log are namespace
    /// pids and must never be signalled from here.
    namespaced: bool,
    pub dir: TempDir,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Sheepdog {
    /// Run `sheepdog run -c <dir>/sheepdog.yaml`. `$DIR` in the config is
    /// replaced by the temp dir's path.
    pub fn start(name: &str, config: &str) -> Sheepdog {
        Self::start_with(name, config, |_| {})
    }

    pub fn start_with(name: &str, config: &str, tweak: impl FnOnce(&mut Command)) -> Sheepdog {
        Self::start_under(name, config, &[], tweak)
    }

    /// Run sheepdog under `wrapper` (e.g. `unshare --pid --fork …`).
    pub fn start_under(
        name: &str,
        config: &str,
        wrapper: &[&str],
        tweak: impl FnOnce(&mut Command),
    ) -> Sheepdog {
        let dir = TempDir::new(name);
        let text = config.replace("$DIR", dir.0.to_str().unwrap());
        let cfg = dir.write("sheepdog.yaml", &text);
        Self::spawn(dir, &cfg, wrapper, tweak)
    }

    /// Run `sheepdog run -c <file>` on an existing file, used as it is (no
    /// `$DIR` replacement); the log goes to a fresh temp dir.
    pub fn start_file(name: &str, file: &Path, tweak: impl FnOnce(&mut Command)) -> Sheepdog {
        Self::spawn(TempDir::new(name), file, &[], tweak)
    }

    fn spawn(
        dir: TempDir,
        cfg: &Path,
        wrapper: &[&str],
        tweak: impl FnOnce(&mut Command),
    ) -> Sheepdog {
        let log = dir.path("sheepdog.log");
        let out = fs::File::create(&log).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("run")
            .arg("-c")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        tweak(&mut cmd);
        let child = cmd.spawn().expect("spawn sheepdog");
        Sheepdog {
            child,
            namespaced: wrapper.contains(&"--kill-child"),
            dir,
            log,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Wait until the log contains `needle` at least `n` times.
    pub fn wait_log_n(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.count(needle) >= n)
    }

    /// Wait until a child has written its pid into `file` in the temp dir,
    /// and return it.
    pub fn wait_pid(&self, file: &str) -> i32 {
        let path = self.dir.path(file);
        assert!(
            wait_until(WAIT, || read_pid(&path).is_some()),
            "no pid in {file}; log:\n{}",
            self.log()
        );
        read_pid(&path).expect("pid")
    }

    pub fn wait_log(&self, needle: &str) {
        assert!(
            self.wait_log_n(needle, 1, WAIT),
            "timed out waiting for {needle:?} in log:\n{}",
            self.log()
        );
    }

    /// Wait until `file` in the temp dir has `n` lines (each child wrote
    /// its one), failing the test with the log otherwise.
    pub fn wait_lines(&self, file: &str, n: usize) {
        assert!(
            wait_until(WAIT, || self.dir.lines(file).len() == n),
            "{file}: {:?}, expected {n} lines; log:\n{}",
            self.dir.lines(file),
            self.log()
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: the test's own child, not yet reaped (we reap only in wait_exit).
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::try_from(sig).unwrap(),
        )
        .unwrap();
    }

    /// Wait for sheepdog to exit; None if it did not within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let child = &mut self.child;
            let mut st = None;
            wait_until(timeout, || {
                st = child.try_wait().unwrap();
                st.is_some()
            });
            self.status = st;
        }
        self.status
    }

    /// Wait for exit and return the code, failing the test with the log if
    /// it does not exit in time.
    pub fn exit_code(&mut self, timeout: Duration) -> i32 {
        match self.wait_exit(timeout) {
            Some(s) => s
                .code()
                .unwrap_or_else(|| panic!("sheepdog died by signal {s:?}; log:\n{}", self.log())),
            None => panic!(
                "sheepdog did not exit within {timeout:?}; log:\n{}",
                self.log()
            ),
        }
    }

    /// Pids `instance` was started with, in order ("<instance>: started (pid N)").
    pub fn pids_of(&self, instance: &str) -> Vec<i32> {
        let prefix = format!("{instance}: started (pid ");
        self.log()
            .lines()
            .filter_map(|l| l.split(&prefix).nth(1)?.split(')').next()?.parse().ok())
            .collect()
    }

    /// Pids sheepdog reported starting ("started (pid N)").
    pub fn started_pids(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter_map(|l| {
                l.split("started (pid ")
                    .nth(1)?
                    .split(')')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

impl Drop for Sheepdog {
    fn drop(&mut self) {
        // Its children as they are now, while they are surely its own: a
        // "started (pid N)" line may still be queued for its stdout when
        // it is killed, and never reach the log.
        let mut orphans = Vec::new();
        if self.wait_exit(Duration::ZERO).is_none() {
            if !self.namespaced {
                // Stopped first, so no instance thread forks between the
                // list and the kill (a child started by a scale request
                // that had just been answered leaked that way).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid()),
                    nix::sys::signal::Signal::SIGSTOP,
                );
                let pid = self.pid();
                wait_until(Duration::from_secs(2), || all_threads_stopped(pid));
                orphans = children_of(pid);
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.child.wait();
        }
        if self.namespaced {
            // The wrapper (unshare --kill-child) took the namespace's PID 1
            // and with it every process in the namespace.
            return;
        }
        // Whatever sheepdog left behind (it was killed, or the test failed):
        // end the groups it reported starting, by pid. But pids come round
        // again (pid_max may be 32768, and a CI build spawns thousands): a
        // pid in this log may by now lead a group of another test's
        // sheepdog, which must not be touched. Ours lost their sheepdog
        // when it was reaped above.
        orphans.extend(self.started_pids());
        for pid in orphans.into_iter().filter(|&p| !parent_is_a_sheepdog(p)) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether every thread of `pid` is stopped (state `T` in its `stat`) or
/// has ended (`Z`, `X`: a sheepdog exiting as it is dropped); neither can
/// fork. Else the caller waited its whole 2 s for an exiting one.
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            matches!(
                stat.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next()),
                Some("T" | "Z" | "X")
            )
        })
    })
}

/// A wrapper for `Sheepdog::start_under` that gives sheepdog a directory
/// where a spawn gets stuck short of exec, as under a hung NFS mount:
/// `$DIR/mnt` becomes a FUSE mount (in a private mount namespace) whose
/// INIT is never answered, so a `chdir` below it blocks, killably, for as
/// long as its /dev/fuse descriptor is open. sheepdog inherits that
/// descriptor (it reads nothing from it), and so does a child of it stuck
/// short of exec: the mount hangs until both are gone (`Drop` kills such a
/// child too). None (the test should skip) without root or /dev/fuse.
pub fn hung_mount() -> Option<Vec<&'static str>> {
    const MOUNT: &str = r#"
import ctypes, os, sys
cmd = sys.argv[1:]
mnt = os.path.join(os.path.dirname(cmd[-1]), "mnt")
os.makedirs(mnt, exist_ok=True)
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
opts = "fd=%d,rootmode=40000,user_id=0,group_id=0" % fd
if libc.mount(b"hung", mnt.encode(), b"fuse", 0, opts.encode()) != 0:
    sys.exit("mount: " + os.strerror(ctypes.get_errno()))
os.set_inheritable(fd, True)
os.execv(cmd[0], cmd)
"#;
    if !nix::unistd::Uid::effective().is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: a FUSE mount needs root and /dev/fuse");
        return None;
    }
    let unshare = ["unshare", "--mount", "--propagation", "private"];
    let wrapper = [&unshare[..], &["python3", "-c", MOUNT]].concat();
    // Root is not enough (a container without CAP_SYS_ADMIN, or with no
    // FUSE in its kernel): try it, on a command that exits at once.
    let dir = TempDir::new("fuse-probe");
    let tried = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .args(["/bin/sh", "-c", ":"])
        .arg(dir.path("probe"))
        .stderr(Stdio::null())
        .status();
    if !tried.is_ok_and(|s| s.success()) {
        eprintln!("skipping: unable to mount FUSE in a private mount namespace");
        return None;
    }
    Some(wrapper)
}

/// Children of sheepdog `pid` that have not exec'd yet: still running
/// sheepdog (a spawn stuck before exec, see `hung_mount`). 0 while `pid`
/// is not sheepdog yet (a wrapper, or a shell script such as pyenv's
/// `python3` shim, whose children run the same shell).
pub fn unexeced_children(pid: i32) -> usize {
    let exe = |p: i32| fs::read_link(format!("/proc/{p}/exe")).ok();
    let sheepdog = fs::canonicalize(BIN).ok();
    if sheepdog.is_none() || exe(pid) != sheepdog {
        return 0;
    }
    children_of(pid)
        .into_iter()
        .filter(|&c| exe(c) == sheepdog)
        .count()
}

/// The children of `pid`'s threads.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether `pid`'s parent is a (living) sheepdog: a process it supervises.
pub fn parent_is_a_sheepdog(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse::<i32>().ok());
    ppid.and_then(|pp| fs::read_to_string(format!("/proc/{pp}/comm")).ok())
        .is_some_and(|c| c.trim_end() == "sheepdog")
}

/// Run `cmd` to completion with stdout and stderr captured; kill it (by
/// pid) and fail the test if it takes longer than `timeout`.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn command");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for command"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// A loopback TCP port that was free a moment ago: bound to port 0, then
/// released for the caller's server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// `pid`'s open descriptors on `path` or on files under it.
pub fn open_files_under(pid: i32, path: &Path) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| fs::read_link(fd.path()).is_ok_and(|p| p.starts_with(path)))
                .count()
        })
        .unwrap_or(0)
}

/// Read a pid written by a child into `file`.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Monotonic-ish timestamps children write: `date +%s%N` in nanoseconds.
pub fn nanos(field: &str) -> u128 {
    field
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a timestamp: {field:?}"))
}

/// Start sheepdog on a config that listens on fresh loopback ports:
/// `cfg(api_port, metrics_port)` builds it. Returns once sheepdog's log
/// says it listens on every one of those ports the config mentions (so no
/// other process holds them), or once it has exited for another reason.
/// A port taken by someone else between `free_ports` and sheepdog's bind
/// makes it exit "unable to listen"; then this retries with new ports.
pub fn start_serving(name: &str, cfg: impl Fn(u16, u16) -> String) -> (Sheepdog, u16, u16) {
    let mentioned = |text: &str, ports: [u16; 2]| -> Vec<u16> {
        ports
            .into_iter()
            .filter(|port| text.contains(&port.to_string()))
            .collect()
    };
    let (mut sd, [p, m]) = with_free_ports(|[p, m]| {
        let text = cfg(p, m);
        (Sheepdog::start(name, &text), mentioned(&text, [p, m]))
    });
    assert!(
        listening_on(&sd, &mentioned(&cfg(p, m), [p, m])) || sd.wait_exit(Duration::ZERO).is_some(),
        "{}",
        sd.log()
    );
    (sd, p, m)
}

/// Start sheepdog (`start`) with `N` fresh loopback ports; `start` also
/// says which of them sheepdog itself must listen on. Returns once its log
/// says it listens on each (`listening_on`), or once it has exited for
/// another reason. A port someone else took between `free_ports` and
/// sheepdog's bind makes it exit "unable to listen"; then this tries again
/// with new ports.
pub fn with_free_ports<const N: usize>(
    start: impl Fn([u16; N]) -> (Sheepdog, Vec<u16>),
) -> (Sheepdog, [u16; N]) {
    for _ in 0..5 {
        let ports = http::free_ports::<N>();
        let (mut sd, own) = start(ports);
        wait_until(WAIT, || {
            listening_on(&sd, &own) || sd.wait_exit(Duration::ZERO).is_some()
        });
        if sd.wait_exit(Duration::ZERO).is_some() && sd.log().contains("unable to listen on") {
            continue;
        }
        return (sd, ports);
    }
    panic!("no free ports after 5 attempts");
}

/// Whether sheepdog's log says it listens on every one of `ports`.
pub fn listening_on(sd: &Sheepdog, ports: &[u16]) -> bool {
    let log = sd.log();
    ports.iter().all(|port| {
        log.lines()
            .any(|l| l.contains("listening on http://") && l.ends_with(&format!(":{port}")))
    })
}

/// Check a scrape with `promtool check metrics` when promtool is on PATH
/// (`.ci/run` installs it where it can); otherwise say it was skipped.
pub fn promtool_check(scrape: &str) {
    use std::io::Write;
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|f| f.is_file())
    });
    let Some(promtool) = found else {
        println!("SKIPPED promtool check: promtool is not on PATH (apt-get install prometheus)");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(scrape.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("wait for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}
