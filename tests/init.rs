//! Single-command mode (`sheepdog -- CMD`), driven through the real binary:
//! exit codes, signal forwarding, orphan reaping, the registration race,
//! clean child state, exec failures and terminal handling. Each scenario
//! runs with sheepdog as an ordinary process (child subreaper) and, where it
//! matters, as PID 1 of a fresh PID namespace (`unshare --pid --fork`).
//!
//! Rules kept here: every wait polls a condition up to a deadline (no sleep
//! is used as synchronisation); every process a test starts is SIGKILLed,
//! with its descendants, when the test ends early (`Proc`'s Drop); temp
//! files live in a per-test directory removed on drop. The helpers stay in
//! this file on purpose (tests/common belongs to the shared harness).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_sheepdog");
/// Upper bound for one ordinary run; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound for the orphan storms (thousands of forks).
const STORM_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

/// A per-test scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sheepdog-init-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Write `body` to `name` and return its path as a string.
    fn write(&self, name: &str, body: &str) -> String {
        let p = self.path(name);
        fs::write(&p, body).expect("write scratch file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Poll `cond` every 10 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Parent pid from /proc/<pid>/stat (fields after the last ')').
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// One-letter state from /proc/<pid>/stat; None when the pid is gone.
fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| ppid_of(p) == Some(pid))
        .collect()
}

fn descendants_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_of(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// A started process. Dropping it before it was waited for SIGKILLs it and
/// everything below it, so a failing test leaves nothing running.
struct Proc {
    child: Child,
    done: Option<ExitStatus>,
}

impl Proc {
    fn start(cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("unable to start {cmd:?}: {e}"));
        Proc { child, done: None }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for exit, polling up to `limit`; panics (and Drop kills) on timeout.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        if let Some(s) = self.done {
            return s;
        }
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.done = Some(s);
                return s;
            }
            assert!(
                Instant::now() < end,
                "process {} still running after {limit:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Exit code; panics when it died of a signal (sheepdog never should).
    fn code(&mut self, limit: Duration) -> i32 {
        let status = self.wait(limit);
        status
            .code()
            .unwrap_or_else(|| panic!("sheepdog itself died: {status:?}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.done.is_some() {
            return;
        }
        let pid = self.pid();
        let below = descendants_of(pid);
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        for p in below {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// `sheepdog -- ARGS`, or the same as PID 1 of a new PID namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Subreaper,
    Pid1,
}

fn sheepdog<S: AsRef<OsStr>>(mode: Mode, args: &[S]) -> Command {
    sheepdog_with(mode, &[], args)
}

/// `sheepdog OPTIONS -- ARGS`.
fn sheepdog_with<S: AsRef<OsStr>>(mode: Mode, options: &[&str], args: &[S]) -> Command {
    let mut cmd = match mode {
        Mode::Subreaper => Command::new(BIN),
        Mode::Pid1 => {
            let mut c = Command::new("unshare");
            // --kill-child: if unshare is killed (test failure), its child,
            // our PID 1, gets SIGKILL and the whole namespace goes with it.
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child", BIN]);
            c
        }
    };
    cmd.args(options).arg("--").args(args).stdin(Stdio::null());
    cmd
}

/// Run to completion with stdout/stderr captured into files (no pipe can
/// fill up and block the child). Returns (exit code, stdout, stderr).
fn run(mode: Mode, args: &[&str], limit: Duration) -> (i32, String, String) {
    let dir = Scratch::new("run");
    let mut cmd = sheepdog(mode, args);
    cmd.stdout(File::create(dir.path("out")).expect("stdout file"))
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(limit);
    (code, dir.read("out"), dir.read("err"))
}

/// Whether PID-namespace tests can run here; Err carries the reason.
fn pid1_support() -> &'static Result<(), String> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let out = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
            .stdin(Stdio::null())
            .output();
        match out {
            Err(e) => Err(format!("unshare unavailable: {e}")),
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "unshare --pid failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
        }
    })
}

/// The modes to run a scenario in: always Subreaper; Pid1 when possible.
fn modes(test: &str) -> Vec<Mode> {
    match pid1_support() {
        Ok(()) => vec![Mode::Subreaper, Mode::Pid1],
        Err(why) => {
            eprintln!("{test}: skipping the PID 1 run: {why}");
            vec![Mode::Subreaper]
        }
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The host pid of the sheepdog that `unshare` (pid `parent`) started.
fn sheepdog_under(parent: i32) -> i32 {
    let mut found = 0;
    wait_for(DEADLINE, "sheepdog to start under unshare", || {
        found = children_of(parent)
            .into_iter()
            .find(|&c| {
                fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "sheepdog")
            })
            .unwrap_or(0);
        found != 0
    });
    found
}

// ------------------------------------------------------- 1. exit codes

#[test]
fn exit_codes_propagate() {
    for code in [0, 1, 2, 3, 42, 126, 127, 255] {
        let script = format!("exit {code}");
        let (got, _, err) = run(Mode::Subreaper, &["sh", "-c", &script], DEADLINE);
        assert_eq!(got, code, "sh -c '{script}'; stderr: {err}");
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    // ulimit -c 0: no core file for SIGSEGV, whatever the host allows.
    for (sig, code) in [("TERM", 143), ("KILL", 137), ("SEGV", 139), ("INT", 130)] {
        let script = format!("ulimit -c 0; kill -{sig} $$");
        let (got, _, err) = run(Mode::Subreaper, &["sh", "-c", &script], DEADLINE);
        assert_eq!(got, code, "SIG{sig}; stderr: {err}");
    }
}

#[test]
fn exit_codes_propagate_as_pid1() {
    if let Err(why) = pid1_support() {
        eprintln!("exit_codes_propagate_as_pid1: skipped: {why}");
        return;
    }
    for (script, code) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
        ("ulimit -c 0; kill -SEGV $$", 139),
    ] {
        let (got, _, err) = run(Mode::Pid1, &["sh", "-c", script], DEADLINE);
        assert_eq!(got, code, "as PID 1: sh -c '{script}'; stderr: {err}");
    }
}

/// `sheepdog -- nginx` without `daemon off;`: the command forks its daemon
/// and exits 0, and sheepdog exited 0 at once without a word, so the
/// container just stopped. Now a warning names what was left running.
#[test]
fn a_command_that_leaves_processes_behind_is_warned_about() {
    for mode in modes("a_command_that_leaves_processes_behind_is_warned_about") {
        let dir = Scratch::new("daemonizes");
        let pidfile = dir.path("daemon.pid");
        let script = format!(
            "setsid sleep 30 & echo $! > {}; exit 0",
            pidfile.to_string_lossy()
        );
        let (code, _, err) = run(mode, &["sh", "-c", &script], DEADLINE);
        if mode == Mode::Subreaper {
            // It outlived sheepdog; end it (a host pid in this mode).
            if let Ok(pid) = dir.read("daemon.pid").trim().parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        assert_eq!(code, 0, "{mode:?}: stderr: {err}");
        assert!(
            err.contains("'sh' exited 0 and left 1 process running: pid ")
                && err.contains("did it daemonize?"),
            "{mode:?}: stderr: {err}"
        );
        let fate = match mode {
            Mode::Pid1 => "as PID 1, sheepdog's exit ends it",
            Mode::Subreaper => "it keeps running without sheepdog",
        };
        assert!(err.contains(fate), "{mode:?}: stderr: {err}");
        // Nothing is said when nothing is left.
        let (code, _, err) = run(mode, &["sh", "-c", "exit 0"], DEADLINE);
        assert_eq!((code, err.as_str()), (0, ""), "{mode:?}");
    }
}

/// After a stop signal was passed on, what is still running is most likely
/// on its way out (here: a worker that ignores SIGTERM), not a daemon: it is
/// named, without the "did it daemonize?" question.
#[test]
fn what_is_left_after_a_forwarded_stop_signal_is_not_called_a_daemon() {
    for mode in modes("what_is_left_after_a_forwarded_stop_signal_is_not_called_a_daemon") {
        let dir = Scratch::new("stopping");
        let (pidf, ready) = (dir.path("worker.pid"), dir.path("ready"));
        let script = format!(
            "trap '' TERM; sh -c 'echo $$ > {p}; exec sleep 30' & trap 'exit 0' TERM; \
             while [ ! -s {p} ]; do sleep 0.01; done; echo ready > {r}; wait",
            p = pidf.to_string_lossy(),
            r = ready.to_string_lossy()
        );
        let mut cmd = sheepdog(mode, &["sh", "-c", &script]);
        cmd.stderr(File::create(dir.path("err")).expect("stderr file"));
        let mut proc = Proc::start(&mut cmd);
        wait_for(DEADLINE, "the worker", || ready.exists());
        let target = match mode {
            Mode::Subreaper => proc.pid(),
            Mode::Pid1 => sheepdog_under(proc.pid()),
        };
        kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
        let code = proc.code(DEADLINE);
        if mode == Mode::Subreaper {
            // It outlived sheepdog; end it (a host pid in this mode).
            if let Ok(pid) = dir.read("worker.pid").trim().parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let err = dir.read("err");
        assert_eq!(code, 0, "{mode:?}: stderr: {err}");
        assert!(
            err.contains("'sh' exited 0 and left 1 process running: pid "),
            "{mode:?}: stderr: {err}"
        );
        assert!(!err.contains("daemonize"), "{mode:?}: stderr: {err}");
    }
}

/// A process names itself (its executable's name, or prctl): a newline in
/// that name split the warning in two, and the second line could pass
/// for a line of sheepdog's own. The supervisor's log escapes control
/// characters; single-command mode's must too.
#[test]
fn a_left_behind_process_with_a_newline_in_its_name_stays_on_one_line() {
    for mode in modes("a_left_behind_process_with_a_newline_in_its_name_stays_on_one_line") {
        let dir = Scratch::new("oddname");
        let pidfile = dir.path("daemon.pid");
        // comm is the basename of the path exec'd: a link to sleep.
        let odd = dir.path("x\nFAKE ERROR");
        let sleep = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v sleep"])
                .output()
                .expect("sh")
                .stdout,
        )
        .expect("utf-8 path");
        std::os::unix::fs::symlink(sleep.trim(), &odd).expect("symlink");
        let (code, _, err) = run(
            mode,
            &[
                "sh",
                "-c",
                // Exit once the child has exec'd (its name is no longer sh).
                "\"$0\" 30 & p=$!; echo $p > \"$1\"; \
                 while [ \"$(cat /proc/$p/comm)\" = sh ]; do :; done; exit 0",
                &odd.to_string_lossy(),
                &pidfile.to_string_lossy(),
            ],
            DEADLINE,
        );
        if mode == Mode::Subreaper {
            if let Ok(pid) = dir.read("daemon.pid").trim().parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        assert_eq!(code, 0, "{mode:?}: stderr: {err}");
        assert!(
            err.contains("(x\\nFAKE ERROR); did it daemonize?"),
            "{mode:?}: stderr: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{mode:?}: stderr: {err}");
    }
}

// ------------------------------------------------- 2. signal forwarding

/// Traps USR1, HUP, STKFLT and TERM, logging each to $1; exits 42 on TERM. Each
/// forwarded signal also ends the current `sleep` (same group), so the
/// shell's `wait` returns and the trap runs at once.
const TRAPPER: &str = r#"
out="$1"
trap 'echo USR1 >> "$out"' USR1
trap 'echo HUP >> "$out"' HUP
trap 'echo STKFLT >> "$out"' 16
trap 'echo RT40 >> "$out"' 40
trap 'echo TERM >> "$out"; kill $! 2>/dev/null; exit 42' TERM
echo ready >> "$out"
while :; do sleep 100 & wait $!; done
"#;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn signals_are_forwarded() {
    for mode in modes("signals_are_forwarded") {
        let dir = Scratch::new("fwd");
        let out = dir.path("got");
        let out_s = out.to_string_lossy().into_owned();
        let mut proc = Proc::start(&mut sheepdog(
            mode,
            &["sh", "-c", TRAPPER, "trapper", out_s.as_str()],
        ));
        let target = match mode {
            Mode::Subreaper => proc.pid(),
            Mode::Pid1 => sheepdog_under(proc.pid()),
        };
        let read = || fs::read_to_string(&out).unwrap_or_default();
        wait_for(DEADLINE, "the child's traps", || read() == "ready\n");
        let mut expected = vec!["ready"];
        // STKFLT: its default would end sheepdog (not PID 1) and orphan CMD.
        for (sig, name) in [
            (Signal::SIGUSR1, "USR1"),
            (Signal::SIGHUP, "HUP"),
            (Signal::SIGSTKFLT, "STKFLT"),
        ] {
            kill(Pid::from_raw(target), sig).expect("signal sheepdog");
            expected.push(name);
            wait_for(DEADLINE, name, || lines(&read()) == expected);
        }
        // A real-time signal (nix has no name for one): before, ignored as
        // PID 1, and the end of sheepdog otherwise, orphaning CMD.
        let rt = std::process::Command::new("kill")
            .args(["-s", "40", &target.to_string()])
            .status();
        assert!(rt.is_ok_and(|s| s.success()), "kill -s 40 {target}");
        expected.push("RT40");
        wait_for(DEADLINE, "RT40", || lines(&read()) == expected);
        kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
        assert_eq!(proc.code(DEADLINE), 42, "{mode:?}");
        assert_eq!(read(), "ready\nUSR1\nHUP\nSTKFLT\nRT40\nTERM\n", "{mode:?}");
    }
}

/// The whole process group gets the signal, not only the direct child:
/// a grandchild that does not trap TERM dies with it (tini needs -g).
#[test]
fn signals_reach_the_whole_group() {
    for mode in modes("signals_reach_the_whole_group") {
        let dir = Scratch::new("group");
        let pidfile = dir.path("pid");
        let pidfile_s = pidfile.to_string_lossy().into_owned();
        // The shell ignores nothing and does not trap TERM, so it dies of
        // it; its background sleep is in the same group.
        let script = r#"sleep 100 & echo $! > "$1.tmp"; mv "$1.tmp" "$1"; wait"#;
        let mut proc = Proc::start(&mut sheepdog(
            mode,
            &["sh", "-c", script, "group", pidfile_s.as_str()],
        ));
        let target = match mode {
            Mode::Subreaper => proc.pid(),
            Mode::Pid1 => sheepdog_under(proc.pid()),
        };
        wait_for(DEADLINE, "the grandchild's pid", || pidfile.exists());
        let inner: i32 = fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .trim()
            .parse()
            .expect("pid in pidfile");
        // As PID 1 the pid is namespace-relative: find the host sleep via
        // the tree under sheepdog instead.
        let sleeper = match mode {
            Mode::Subreaper => inner,
            Mode::Pid1 => {
                let mut found = 0;
                wait_for(DEADLINE, "the sleep under sheepdog", || {
                    found = descendants_of(target)
                        .into_iter()
                        .find(|&p| {
                            fs::read_to_string(format!("/proc/{p}/comm"))
                                .is_ok_and(|n| n.trim() == "sleep")
                        })
                        .unwrap_or(0);
                    found != 0
                });
                found
            }
        };
        kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
        assert_eq!(proc.code(DEADLINE), 143, "{mode:?}");
        wait_for(DEADLINE, "the grandchild to die", || {
            matches!(state_of(sleeper), None | Some('Z') | Some('X'))
        });
    }
}

/// A master whose worker traps TERM: it stops their whole group, as Ctrl-Z
/// does, once the worker is ready; on TERM it passes it on and waits.
const STOPPED_GROUP: &str = r#"
sh -c 'trap "exit 0" TERM; echo ready > "$0"; while :; do sleep 0.05; done' "$1" &
w=$!
trap 'kill $w 2>/dev/null; wait $w; exit 7' TERM
until [ -s "$1" ]; do sleep 0.01; done
kill -STOP 0
exit 3
"#;

/// A CMD stopped by Ctrl-Z (or SIGSTOP) holds a TERM it handles pending
/// until it is resumed: forwarded alone, `docker stop`'s TERM did nothing
/// and its SIGKILL followed 10 s later. TERM is followed by CONT, to the
/// whole group even with --main: the master's worker must run to exit.
#[test]
fn a_stopped_command_still_handles_a_forwarded_term() {
    for mode in modes("a_stopped_command_still_handles_a_forwarded_term") {
        for options in [&[][..], &["--main"]] {
            let dir = Scratch::new("stopped");
            let ready = dir.path("ready").to_string_lossy().into_owned();
            let args = ["sh", "-c", STOPPED_GROUP, "master", ready.as_str()];
            let mut proc = Proc::start(&mut sheepdog_with(mode, options, &args));
            let target = match mode {
                Mode::Subreaper => proc.pid(),
                Mode::Pid1 => sheepdog_under(proc.pid()),
            };
            wait_for(DEADLINE, "the group to stop itself", || {
                children_of(target)
                    .into_iter()
                    .any(|c| state_of(c) == Some('T'))
            });
            kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
            assert_eq!(proc.code(DEADLINE), 7, "{mode:?} {options:?}");
        }
    }
}

/// A master that passes USR1 on to its worker as USR2 itself, as php-fpm's
/// master reloads its workers. Both write down what they get.
const MASTER_AND_WORKER: &str = r#"
out="$1"
sh -c 'trap "echo worker-usr1 >> $0" USR1; trap "echo worker-usr2 >> $0; exit 0" USR2
       echo worker >> $0; while :; do sleep 0.05; done' "$out" &
w=$!
trap 'echo main-usr1 >> "$out"; kill -USR2 $w' USR1
trap 'kill $w 2>/dev/null; exit 0' TERM
echo main >> "$out"
while :; do sleep 0.05; done
"#;

/// With --main, CMD alone gets the signal, not the rest of its group.
#[test]
fn main_forwards_to_cmd_alone() {
    for mode in modes("main_forwards_to_cmd_alone") {
        let dir = Scratch::new("main");
        let out = dir.path("got");
        let out_s = out.to_string_lossy().into_owned();
        let mut proc = Proc::start(&mut sheepdog_with(
            mode,
            &["--main"],
            &["sh", "-c", MASTER_AND_WORKER, "master", out_s.as_str()],
        ));
        let target = match mode {
            Mode::Subreaper => proc.pid(),
            Mode::Pid1 => sheepdog_under(proc.pid()),
        };
        let got = || {
            let text = fs::read_to_string(&out).unwrap_or_default();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        let has = |line: &str| got().iter().any(|l| l == line);
        wait_for(DEADLINE, "both traps", || has("main") && has("worker"));
        kill(Pid::from_raw(target), Signal::SIGUSR1).expect("signal sheepdog");
        // The worker takes the master's USR2; it would have taken a USR1
        // of its own first (a shell runs pending traps in signal order).
        wait_for(DEADLINE, "the worker's USR2", || has("worker-usr2"));
        assert!(has("main-usr1"), "{mode:?}: {:?}", got());
        assert!(!has("worker-usr1"), "{mode:?}: {:?}", got());
        kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
        assert_eq!(proc.code(DEADLINE), 0, "{mode:?}: {:?}", got());
    }
}

/// Takes RT40 and RT41 with sigwaitinfo (a handler, a shell's trap
/// included, would merge repeats itself) and writes each one down, in the
/// order it came; TERM ends it.
const SIGNAL_COUNTER: &str = r#"
import signal, sys
out = open(sys.argv[1], "a", buffering=1)
wanted = {40, 41, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
out.write("ready\n")
while True:
    n = signal.sigwaitinfo(wanted).si_signo
    if n == signal.SIGTERM:
        sys.exit(0)
    out.write(f"{n}\n")
"#;

/// Signals that reach sheepdog together are all forwarded, in the order
/// the kernel queued them. signal-hook's iterator kept one flag per
/// signal and handed the set out by number: two RT40 became one, and a
/// TSTP whose handler had run before a CONT came went on after it,
/// leaving CMD stopped (a race; sheepdog stopped here makes it certain
/// for the real-time repeat).
#[test]
fn signals_arriving_together_are_all_forwarded() {
    if !have("python3") {
        eprintln!("signals_arriving_together_are_all_forwarded: no python3, skipped");
        return;
    }
    for mode in modes("signals_arriving_together_are_all_forwarded") {
        let dir = Scratch::new("together");
        let out = dir.path("got");
        let out_s = out.to_string_lossy().into_owned();
        let mut proc = Proc::start(&mut sheepdog(
            mode,
            &["python3", "-c", SIGNAL_COUNTER, out_s.as_str()],
        ));
        let target = match mode {
            Mode::Subreaper => proc.pid(),
            Mode::Pid1 => sheepdog_under(proc.pid()),
        };
        let read = || fs::read_to_string(&out).unwrap_or_default();
        wait_for(DEADLINE, "the child's ready", || read() == "ready\n");
        // Stopped, sheepdog takes nothing until it is resumed: all arrive
        // together.
        kill(Pid::from_raw(target), Signal::SIGSTOP).expect("stop sheepdog");
        wait_for(DEADLINE, "sheepdog to stop", || {
            state_of(target) == Some('T')
        });
        for sig in ["41", "40", "40", "41"] {
            let sent = Command::new("kill")
                .args(["-s", sig, &target.to_string()])
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "kill -s {sig} {target}");
        }
        kill(Pid::from_raw(target), Signal::SIGCONT).expect("resume sheepdog");
        // Lowest number first, each as often as it was sent.
        let all = "ready\n40\n40\n41\n41\n";
        wait_for(DEADLINE, "four real-time signals", || {
            read().len() >= all.len()
        });
        assert_eq!(read(), all, "{mode:?}");
        kill(Pid::from_raw(target), Signal::SIGTERM).expect("signal sheepdog");
        assert_eq!(proc.code(DEADLINE), 0, "{mode:?}");
    }
}

/// With `SHEEPDOG_LOG_LEVEL=debug` every forwarded signal is logged on
/// stderr. When stderr is a pipe nobody reads any more (`2>&1 | head`, a
/// log collector gone), that write raises SIGPIPE in sheepdog, which it
/// forwarded, logged, and so raised again: a spin at full CPU that sent
/// SIGPIPE to CMD's group without end and, since the signal iterator
/// hands out the same low-numbered signal again before any higher one,
/// never got to TERM or CHLD, so sheepdog never exited, even after CMD
/// did. A SIGPIPE that sheepdog's own write raised is not CMD's business.
#[test]
fn a_broken_stderr_at_debug_level_does_not_spin_or_reach_cmd() {
    let dir = Scratch::new("brokenerr");
    let (got, ready) = (dir.path("got"), dir.path("ready"));
    let script = format!(
        "exec 2>/dev/null; trap 'echo PIPE >> {g}' PIPE; trap 'echo TERM >> {g}; exit 3' TERM; \
         echo ready > {r}; while :; do sleep 100 & wait $!; done",
        g = got.to_string_lossy(),
        r = ready.to_string_lossy()
    );
    // The shell's own stderr is /dev/null: a SIGPIPE it gets is sheepdog's
    // (else its "Terminated" for the killed sleep would raise one).
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = sheepdog(Mode::Subreaper, &["sh", "-c", &script]);
    cmd.env("SHEEPDOG_LOG_LEVEL", "debug")
        .stdout(Stdio::null())
        .stderr(writer);
    let mut proc = Proc::start(&mut cmd);
    drop(cmd);
    wait_for(DEADLINE, "the child's traps", || ready.exists());
    kill(Pid::from_raw(proc.pid()), Signal::SIGTERM).expect("signal sheepdog");
    assert_eq!(proc.code(DEADLINE), 3, "got: {:?}", dir.read("got"));
    assert_eq!(dir.read("got"), "TERM\n");
}

// --------------------------------------------------- 3. orphan reaping

/// Makes 1000 orphans (each `true` loses its parent subshell at once), then
/// waits until no zombie whose parent is sheepdog ($PPID) is left; exits 0
/// then, or 1 if the zombies are still there after ~20 s.
const ORPHAN_STORM: &str = r#"
for i in $(seq 1000); do (true &); done
zombies() {
    cat /proc/[0-9]*/status 2>/dev/null | awk -v p="$PPID" '
        /^State:/ { s = $2 }
        /^PPid:/  { if (s == "Z" && $2 == p) n++ }
        END { print n + 0 }'
}
i=0
while [ "$i" -lt 400 ]; do
    z=$(zombies)
    [ "$z" -eq 0 ] && exit 0
    sleep 0.05
    i=$((i + 1))
done
echo "zombies left: $z" >&2
exit 1
"#;

fn orphan_storm(mode: Mode) {
    let dir = Scratch::new("storm");
    let mut cmd = sheepdog(mode, &["sh", "-c", ORPHAN_STORM]);
    cmd.env("SHEEPDOG_LOG_LEVEL", "debug")
        .stdout(File::create(dir.path("out")).expect("stdout file"))
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(STORM_DEADLINE);
    let err = dir.read("err");
    let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join("\n");
    assert_eq!(code, 0, "{mode:?}: zombies remained; stderr tail:\n{tail}");
    // Every one of the 1000 `true`s was orphaned to sheepdog and reaped by it.
    let reaped: u64 = err
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_suffix(" orphans reaped")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{mode:?}: no summary line; stderr tail:\n{tail}"));
    assert!(reaped >= 1000, "{mode:?}: only {reaped} orphans reaped");
}

#[test]
fn orphans_are_reaped_as_pid1() {
    if let Err(why) = pid1_support() {
        eprintln!("orphans_are_reaped_as_pid1: skipped: {why}");
        return;
    }
    orphan_storm(Mode::Pid1);
}

#[test]
fn orphans_are_reaped_as_subreaper() {
    orphan_storm(Mode::Subreaper);
}

/// Orphans that die while sheepdog itself is exiting must not hang it.
/// Dropping signal-hook's `Signals` used to close the self-pipe before
/// unregistering the handlers; a SIGCHLD in between raised SIGPIPE, which
/// this mode handles (to forward it), and each SIGPIPE handler raised the
/// next: a spin that even SIGTERM could not end. Hung about 1 run in 20.
#[test]
fn exiting_while_orphans_die_does_not_hang() {
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 \
                  21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40; \
                  do (exit 0) & done; exit 5";
    for i in 0..60 {
        let (got, _, err) = run(Mode::Subreaper, &["sh", "-c", script], DEADLINE);
        assert_eq!(got, 5, "run {i}; stderr: {err}");
    }
}

// ----------------------------------------- 4. the registration race

/// A child that exits at once must never lose its status (the reaper must
/// not collect it before its pid is registered).
#[test]
fn instant_exits_never_lose_their_status() {
    for i in 0..500 {
        let (got, _, err) = run(Mode::Subreaper, &["sh", "-c", "exit 7"], DEADLINE);
        assert_eq!(got, 7, "run {i}; stderr: {err}");
    }
}

#[test]
fn instant_exits_never_lose_their_status_as_pid1() {
    if let Err(why) = pid1_support() {
        eprintln!("instant_exits_never_lose_their_status_as_pid1: skipped: {why}");
        return;
    }
    for i in 0..50 {
        let (got, _, err) = run(Mode::Pid1, &["sh", "-c", "exit 7"], DEADLINE);
        assert_eq!(got, 7, "run {i}; stderr: {err}");
    }
}

// ---------------------------------------------- 5. clean child state

/// Prints the shell's own SigBlk/SigIgn and its open fds, using builtins
/// only: a forked `grep` would race with dash, which blocks every signal
/// around its own fork and wait. The glob's directory fd is closed by the
/// time `[ -e ]` runs, so it drops out of the fd list.
const REPORT_STATE: &str = r#"
while IFS= read -r line; do
    case "$line" in SigBlk:*|SigIgn:*) printf '%s\n' "$line" ;; esac
done < /proc/$$/status
fds=""
for f in /proc/$$/fd/*; do [ -e "$f" ] && fds="$fds ${f##*/}"; done
echo "fds:$fds"
"#;

const CLEAN: &str = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nfds: 0 1 2\n";

/// A python3 launcher that dirties everything a child could inherit —
/// ignored HUP/INT/TERM (plus python's own SIGPIPE/SIGXFSZ), blocked
/// USR1/TERM/CHLD, an inheritable pipe — and then execs argv[1:].
const DIRTY_LAUNCHER: &str = r#"
import os, signal, sys
for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM, signal.SIGCHLD})
r, w = os.pipe()
os.set_inheritable(r, True)
os.set_inheritable(w, True)
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn child_starts_clean() {
    let (code, out, err) = run(Mode::Subreaper, &["sh", "-c", REPORT_STATE], DEADLINE);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, CLEAN);
}

#[test]
fn child_starts_clean_despite_an_ignoring_parent_and_a_leaked_fd() {
    // sheepdog is exec'd by a shell that ignores HUP and INT and has fd 7 open.
    let launcher = r#"trap "" HUP INT; exec 7</dev/null; exec "$0" -- sh -c "$1""#;
    let dir = Scratch::new("dirty-sh");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", launcher, BIN, REPORT_STATE])
        .stdin(Stdio::null())
        .stdout(File::create(dir.path("out")).expect("stdout file"))
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(DEADLINE);
    assert_eq!(code, 0, "stderr: {}", dir.read("err"));
    assert_eq!(dir.read("out"), CLEAN);
}

/// Without `/proc` (a bare container before it is mounted) sheepdog could
/// not list its inherited descriptors, and fd 7 reached the child.
#[test]
fn child_starts_clean_without_proc() {
    let unshare = ["--mount", "--propagation", "private"];
    let works = Command::new("unshare").args(unshare).arg("true").status();
    if !nix::unistd::Uid::effective().is_root() || !works.is_ok_and(|s| s.success()) {
        eprintln!("child_starts_clean_without_proc: skipped: needs root and unshare");
        return;
    }
    let check = "if { true <&7; } 2>/dev/null; then echo leaked; else echo clean; fi";
    let launcher = r#"umount -l /proc || exit 99; exec 7</dev/null; exec "$0" -- sh -c "$1""#;
    let dir = Scratch::new("no-proc");
    let mut cmd = Command::new("unshare");
    cmd.args(unshare)
        .args(["sh", "-c"])
        .args([launcher, BIN, check])
        .stdin(Stdio::null())
        .stdout(File::create(dir.path("out")).expect("stdout file"))
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(DEADLINE);
    if code == 99 {
        eprintln!("child_starts_clean_without_proc: skipped: /proc cannot be unmounted here");
        return;
    }
    assert_eq!(code, 0, "stderr: {}", dir.read("err"));
    assert_eq!(dir.read("out"), "clean\n");
}

#[test]
fn child_starts_clean_despite_a_blocking_parent() {
    if !have("python3") {
        eprintln!("child_starts_clean_despite_a_blocking_parent: skipped: no python3");
        return;
    }
    let dir = Scratch::new("dirty-py");
    let launcher = dir.write("launch.py", DIRTY_LAUNCHER);
    let run_launcher = |argv: &[&str], tag: &str| -> (i32, String) {
        let mut cmd = Command::new("python3");
        cmd.arg(&launcher)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(File::create(dir.path(tag)).expect("stdout file"))
            .stderr(Stdio::inherit());
        let code = Proc::start(&mut cmd).code(DEADLINE);
        (code, dir.read(tag))
    };
    // Control: without sheepdog the launcher's dirt reaches the shell, so
    // the assertion below tests something.
    let (code, dirty) = run_launcher(&["/bin/sh", "-c", REPORT_STATE], "control");
    assert_eq!(code, 0);
    assert_ne!(dirty, CLEAN, "the launcher failed to dirty the state");
    let (code, out) = run_launcher(&[BIN, "--", "sh", "-c", REPORT_STATE], "out");
    assert_eq!(code, 0);
    assert_eq!(out, CLEAN);
}

/// No configuration is read in this mode, so sheepdog's environment is
/// CMD's, passed on unchanged as tini does: the `SHEEPDOG_*` variables that
/// `run` keeps to itself (its overrides, already applied, and what it sets
/// per child) were dropped here too, so `sheepdog -- entrypoint.sh` whose
/// script ends in `exec sheepdog run` lost its overrides
/// (`SHEEPDOG_GLOBAL_API_AUTH` among them), and a `sheepdog --` run by a
/// supervisor hid the instance's `SHEEPDOG_INSTANCE` from its command.
#[test]
fn the_environment_is_passed_on_unchanged() {
    let vars = [
        ("SHEEPDOG_GLOBAL_LOG_LEVEL", "debug"),
        ("SHEEPDOG_PROCESS_WEB_SCALE", "2"),
        ("SHEEPDOG_INSTANCE", "web-1"),
        ("SHEEPDOG_CONFIG", "/etc/x.yaml"),
        ("SHEEPDOG_TEST_PLAIN", "plain"),
    ];
    let dir = Scratch::new("env");
    let mut cmd = sheepdog(
        Mode::Subreaper,
        &["sh", "-c", "env | grep ^SHEEPDOG_ | sort"],
    );
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars)
        .stdout(File::create(dir.path("out")).expect("stdout file"))
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(DEADLINE);
    assert_eq!(code, 0, "stderr: {}", dir.read("err"));
    let mut want: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    want.sort();
    assert_eq!(lines(&dir.read("out")), want);
}

// ------------------------------------------------- 6. exec failures

/// dumb-init and tini users write `sheepdog nginx ...` (dumb-init takes
/// the command without `--`); the usage error should show the way.
#[test]
fn a_command_without_the_double_dash_gets_a_hint() {
    for (args, hint) in [
        (
            &["nginx", "-g", "daemon off;"][..],
            "to run 'nginx' as the container's command: sheepdog -- nginx",
        ),
        (
            &["--main", "php-fpm", "-F"][..],
            "to run 'php-fpm' as the container's command: sheepdog --main -- php-fpm",
        ),
        (&["chek"][..], "did you mean 'check'?"),
    ] {
        let dir = Scratch::new("nodash");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path("err")).expect("stderr file"));
        let code = Proc::start(&mut cmd).code(DEADLINE);
        let err = dir.read("err");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
    }
}

#[test]
fn missing_command_exits_127() {
    for cmd in ["/nonexistent/sheepdog-test-cmd", "sheepdog-no-such-command"] {
        let (code, out, err) = run(Mode::Subreaper, &[cmd, "arg"], DEADLINE);
        assert_eq!(code, 127, "{cmd}: stderr: {err}");
        assert_eq!(out, "");
        assert!(
            err.contains(&format!("unable to run '{cmd}'"))
                && err.contains("No such file or directory"),
            "stderr: {err}"
        );
    }
}

#[test]
fn non_executable_file_exits_126() {
    let dir = Scratch::new("noexec");
    let file = dir.write("not-executable", "#!/bin/sh\nexit 0\n");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = run(Mode::Subreaper, &[file.as_str()], DEADLINE);
    assert_eq!(code, 126, "stderr: {err}");
    assert!(
        err.contains(&format!("unable to run '{file}'")) && err.contains("Permission denied"),
        "stderr: {err}"
    );
}

#[test]
fn exec_failures_say_what_the_errno_does_not() {
    let dir = Scratch::new("exechint");
    let script = dir.write(
        "needs-interp",
        "#!/nonexistent/sheepdog-interp -e\nexit 0\n",
    );
    let plain = dir.write("no-shebang", "exit 0\n");
    // Saved on Windows: the kernel looks for "/bin/sh\r", which the hint
    // called "/bin/sh, which was not found" (it is there).
    let crlf = dir.write("crlf", "#!/bin/sh\r\nexit 0\r\n");
    let mut cases = vec![
        (
            crlf,
            127,
            "its #! line names /bin/sh\\r, which was not found \
             (its lines end in \\r\\n: convert it with dos2unix)"
                .to_string(),
        ),
        (
            script,
            127,
            "its #! line names /nonexistent/sheepdog-interp, which was not found".to_string(),
        ),
        (
            plain,
            126,
            "is neither a binary for this machine nor a script starting with #!".into(),
        ),
        (
            dir.0.to_string_lossy().into_owned(),
            126,
            "is a directory".into(),
        ),
    ];
    // A real binary whose loader path does not exist: an image built for
    // another libc.
    let binary = fs::read("/bin/true").expect("read /bin/true");
    match binary.windows(4).position(|w| w == b".so.") {
        Some(dot) if binary.starts_with(b"\x7fELF") => {
            let mut moved = binary.clone();
            let at = dot + 4;
            moved[at] = if moved[at] == b'9' { b'8' } else { b'9' };
            let start = moved[..at]
                .iter()
                .rposition(|&b| b == 0)
                .map_or(0, |i| i + 1);
            let end = at + moved[at..].iter().position(|&b| b == 0).unwrap_or(0);
            let loader = String::from_utf8_lossy(&moved[start..end]).into_owned();
            let file = dir.path("other-libc");
            fs::write(&file, &moved).expect("write binary");
            let hint = format!("its ELF loader {loader} was not found");
            cases.push((file.to_string_lossy().into_owned(), 127, hint));
        }
        _ => eprintln!("/bin/true is static: the ELF loader case is skipped"),
    }
    for (cmd, want, hint) in &cases {
        if cmd.as_str() != dir.0.to_string_lossy() {
            fs::set_permissions(cmd, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let (code, _, err) = run(Mode::Subreaper, &[cmd.as_str()], DEADLINE);
        assert_eq!(code, *want, "{cmd}: stderr: {err}");
        assert!(err.contains(hint.as_str()), "{cmd}: stderr: {err}");
    }
}

/// A CMD whose name holds a newline or an escape sequence is quoted on one
/// line, escaped: it cannot forge a second line or drive the terminal.
#[test]
fn an_exec_failure_quotes_an_odd_name_on_one_line() {
    let (code, _, err) = run(
        Mode::Subreaper,
        &["/nonexistent/a\nsheepdog: fine\u{1b}[2J"],
        DEADLINE,
    );
    assert_eq!(code, 127, "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.contains("unable to run '/nonexistent/a\\nsheepdog: fine\\u{1b}[2J'"),
        "stderr: {err}"
    );
}

#[test]
fn exec_failure_as_pid1() {
    if let Err(why) = pid1_support() {
        eprintln!("exec_failure_as_pid1: skipped: {why}");
        return;
    }
    let (code, _, err) = run(Mode::Pid1, &["/nonexistent/cmd"], DEADLINE);
    assert_eq!(code, 127, "stderr: {err}");
    assert!(
        err.contains("unable to run '/nonexistent/cmd'"),
        "stderr: {err}"
    );
}

/// No process left to start CMD with (RLIMIT_NPROC, which `docker run
/// --ulimit nproc` applies to all of a uid's processes on the host) is
/// sheepdog's failure, exit 1 as tini's failed fork: not 126, which says
/// CMD cannot be executed and should not be retried.
#[test]
fn no_process_left_to_start_cmd_exits_1() {
    if !have("prlimit") || !have("setpriv") {
        eprintln!("skipped: util-linux prlimit/setpriv are not installed");
        return;
    }
    // Root is exempt from RLIMIT_NPROC: run as nobody, from a copy nobody
    // may execute. Otherwise the limit of 1 is already used up by the
    // user's other processes.
    let dir = Scratch::new("nproc");
    let bin = dir.path("sheepdog");
    fs::copy(BIN, &bin).expect("copy the binary");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = Command::new("prlimit");
    if nix::unistd::geteuid().is_root() {
        cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
        ]);
    }
    cmd.arg("--nproc=1")
        .arg(&bin)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.path("err")).expect("stderr file"));
    let code = Proc::start(&mut cmd).code(DEADLINE);
    let err = dir.read("err");
    assert!(err.contains("unable to run 'true'"), "stderr: {err}");
    assert_eq!(code, 1, "stderr: {err}");
}

// ---------------------------------------------------------- 7. terminal

/// Run `command` under util-linux `script`, which gives it a pty as its
/// controlling terminal and stdin; None (after saying why) when unusable.
fn under_pty(command: &str, limit: Duration) -> Option<()> {
    if !have("script") {
        eprintln!("skipped: util-linux `script` is not installed");
        return None;
    }
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut proc = Proc::start(&mut cmd);
    proc.wait(limit);
    Some(())
}

/// Appends "<tag> pid pgrp tpgid" (from /proc/$$/stat) to the result file.
fn stat_line(tag: &str, file: &str) -> String {
    format!(
        "s=$(cat /proc/$$/stat); s=${{s#*) }}; set -- $s; echo \"{tag} $$ $3 $6\" >> '{file}'\n"
    )
}

/// Parse "<tag> pid pgrp tpgid".
fn ids(results: &str, tag: &str) -> (i64, i64, i64) {
    let line = results
        .lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no '{tag}' line in {results:?}"));
    let n: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("number"))
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn child_owns_the_terminal_and_sheepdog_takes_it_back() {
    let dir = Scratch::new("tty");
    let res = dir.path("res").to_string_lossy().into_owned();
    let child = dir.write("child.sh", &stat_line("child", &res));
    // Runs after sheepdog exits, in the group sheepdog ran in.
    let after = dir.write("after.sh", &stat_line("after", &res));
    let command = format!("'{BIN}' -- sh '{child}'; echo \"rc $?\" >> '{res}'; sh '{after}'");
    if under_pty(&command, DEADLINE).is_none() {
        return;
    }
    let results = dir.read("res");
    let (pid, pgrp, tpgid) = ids(&results, "child");
    assert_eq!(pgrp, pid, "the child leads its own group: {results}");
    assert_eq!(
        tpgid, pgrp,
        "the child's group is in the foreground: {results}"
    );
    assert!(results.contains("rc 0\n"), "{results}");
    let (_, pgrp, tpgid) = ids(&results, "after");
    assert_eq!(
        tpgid, pgrp,
        "sheepdog's group got the terminal back: {results}"
    );
}

/// The child takes the terminal before it execs; when the exec then fails
/// (a typo in CMD), nothing took it back: the terminal stayed with a group
/// that no longer exists, so the next command of a shell without job
/// control (`sh -c 'sheepdog -- typo; bash'`, `docker run -it`) could not
/// read from it (EIO).
#[test]
fn sheepdog_takes_the_terminal_back_when_the_exec_fails() {
    let dir = Scratch::new("tty-noexec");
    let res = dir.path("res").to_string_lossy().into_owned();
    let after = dir.write("after.sh", &stat_line("after", &res));
    let command = format!(
        "'{BIN}' -- /nonexistent/sheepdog-test-cmd; echo \"rc $?\" >> '{res}'; sh '{after}'"
    );
    if under_pty(&command, DEADLINE).is_none() {
        return;
    }
    let results = dir.read("res");
    assert!(results.contains("rc 127\n"), "{results}");
    let (_, pgrp, tpgid) = ids(&results, "after");
    assert_eq!(
        tpgid, pgrp,
        "sheepdog's group got the terminal back: {results}"
    );
}

/// With `stty tostop`, a background process that writes to the terminal is
/// sent SIGTTOU. sheepdog is in the background while its child owns the
/// terminal and (at debug level) logs each forwarded signal to it, so it
/// must not be stopped: the child only gets USR1 after that log line.
#[test]
fn sheepdog_is_not_stopped_by_background_tty_writes() {
    let dir = Scratch::new("tostop");
    let res = dir.path("res").to_string_lossy().into_owned();
    let child = dir.write(
        "child.sh",
        &format!(
            "trap 'echo got-usr1 >> \"{res}\"; kill $! 2>/dev/null; exit 5' USR1\n\
             stty tostop\n\
             kill -USR1 $PPID\n\
             while :; do sleep 100 & wait $!; done\n"
        ),
    );
    // `set -m`: job control puts sheepdog in a process group of its own,
    // whose parent (this shell) is in another group of the same session. So
    // the group is not orphaned and the kernel would stop it with SIGTTOU
    // (an orphaned group just gets EIO, which would prove nothing).
    let command = format!(
        "set -m; SHEEPDOG_LOG_LEVEL=debug '{BIN}' -- sh '{child}'; echo \"rc $?\" >> '{res}'"
    );
    if under_pty(&command, DEADLINE).is_none() {
        return;
    }
    assert_eq!(dir.read("res"), "got-usr1\nrc 5\n");
}
