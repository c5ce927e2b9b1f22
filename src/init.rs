//! Single-command init (`sheepdog -- CMD [ARG...]`): a drop-in for tini.
//!
//! Job: run CMD as the only child, in its own process group, with
//! stdin/stdout/stderr inherited; forward every catchable signal
//! (`signals::FORWARDED` and the real-time ones) to that group (to CMD alone with `--main`, as
//! tini does without `-g`); reap every process that ends up
//! parented to us (PID 1, or a child subreaper otherwise); exit with the
//! child's code, or 128+N when it died of signal N. When stdin is our
//! terminal, the child's group becomes the terminal's foreground group, so
//! Ctrl-C, Ctrl-Z and window resizes reach it directly. A forwarded
//! TERM/INT/QUIT/HUP is followed by CONT to the group, so a stopped child
//! (and its stopped workers) handle it.
//!
//! Not its job: restarting, stop timeouts, killing the rest of the group
//! when the child exits (as PID 1 our exit makes the kernel kill the whole
//! namespace; as a subreaper the leftovers go to our parent, as with tini).
//! It does name them in a warning: usually a daemon that forked away.
//!
//! Invariants:
//! - One thread, one blocking point: the main thread sleeps in
//!   `sys::wait_signal` and wakes only for a signal. No timers, no polling.
//! - Signals are forwarded in the order the kernel queued them: they are
//!   blocked and taken with sigwaitinfo, not caught by handlers that set
//!   a flag per signal (signal-hook's iterator hands pending ones out by
//!   number, so a TSTP then CONT went on as CONT then TSTP, leaving CMD
//!   stopped, and two of one real-time signal went on as one). Standard
//!   signals pending together still come lowest number first, as the
//!   kernel delivers them; of a stop signal and CONT the later one wins.
//! - Signals are blocked *before* the child is spawned, so its SIGCHLD
//!   cannot be missed, however fast it exits. `Reaper::spawn` registers its
//!   pid under the registry lock, so its status is always routed to us.
//! - `Reaper::reap` is the only `waitpid` caller (DESIGN.md §2.1).
//! - We signal the child's group only while the child is unreaped: its pid,
//!   which is also its group id, cannot have been reused.
//! - sheepdog itself never stops for job control: SIGTTIN/SIGTTOU stay
//!   blocked on this thread (the only one), so background writes to the
//!   terminal and `tcsetpgrp` go through; SIGTSTP is blocked and
//!   forwarded. The child still starts with an empty mask and default
//!   dispositions (`sys::spawn_clean`).
//! - A signal raised by our own failed write to stderr (SIGPIPE, SIGXFSZ)
//!   is not forwarded: logging that forward would raise it again, a spin
//!   that also starves every higher-numbered signal, SIGCHLD included.
//! - A failed exec is a message naming the command and the errno, and a
//!   shell-like exit code: 127 when not found, 126 otherwise.
//! - The terminal we handed over is taken back before we exit, whether the
//!   child ran or its exec failed (it takes the terminal before it execs).

use std::ffi::OsString;
use std::io::{self, Write};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use crossbeam_channel::TryRecvError;
use nix::errno::Errno;
use nix::unistd::{getpgrp, Pid};

use crate::child::{Command, Stdio};
use crate::cli::exit;
use crate::group::Whom;
use crate::reaper::{ExitStatus, Reaper};
use crate::signals;
use crate::sys;

/// Exit code when CMD was not found (as a shell does).
pub const NOT_FOUND: i32 = 127;
/// Exit code when CMD was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;

/// Run `argv` as the only child; returns sheepdog's exit code.
pub fn run(argv: Vec<OsString>, whom: Whom) -> i32 {
    init_logging();
    let Some((program, args)) = argv.split_first() else {
        // cli.rs rejects an empty command; stay total anyway.
        say("'--' must be followed by a command to run");
        return exit::USAGE;
    };

    // Never stopped for job control of our own group, so never taken
    // from the signals either: they stay blocked, and are not forwarded.
    sys::block_signals(&[libc::SIGTTIN, libc::SIGTTOU]);
    let mut set: Vec<libc::c_int> = signals::FORWARDED.to_vec();
    // The real-time ones too (systemd's STOPSIGNAL SIGRTMIN+3).
    set.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    set.push(libc::SIGCHLD);
    let signals = sys::block_signals(&set);
    // PID 1 adopts orphans anyway; otherwise become a child subreaper
    // (adopt_orphans logs the warning when neither is possible).
    crate::reaper::adopt_orphans();

    let own_group = getpgrp();
    let foreground_tty = owns_terminal(own_group);
    crate::child::WHOLE_ENV.store(true, std::sync::atomic::Ordering::Relaxed);
    let reaper = Reaper::new();
    let (owner, exits) = crossbeam_channel::unbounded();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::Inherit)
        .foreground_tty(foreground_tty);
    let ended = reaper.spawn(cmd, &owner).map(|child| {
        let pid = Pid::from_raw(child.pid);
        log::debug!(
            "started '{}' as pid {pid} (terminal handed over: {foreground_tty})",
            program.to_string_lossy()
        );
        forward_until_exit(pid, &signals, &reaper, &exits, whom)
    });
    // The child takes the terminal before it execs: take it back whether
    // it ran or its exec failed.
    if foreground_tty {
        sys::take_back_tty(own_group.as_raw());
    }
    let (status, stopping) = match ended {
        Ok(Some(ended)) => ended,
        Ok(None) => {
            // sigwaitinfo fails only for a bad set, which ours is not.
            say("unable to wait for signals");
            return exit::FAILURE;
        }
        Err(e) => {
            say(&format!(
                "unable to run '{}': {e}",
                program.to_string_lossy()
            ));
            return exec_failure_code(&e);
        }
    };
    // Collect whatever else has already exited; as PID 1 our exit lets the
    // kernel take care of the rest of the namespace.
    reaper.reap(false);
    warn_left_behind(&reaper, &program.to_string_lossy(), status, stopping);
    let orphans = reaper.orphans_reaped();
    log::debug!(
        "'{}' {status}; {} reaped",
        program.to_string_lossy(),
        crate::logging::counted(orphans, "orphan", "orphans")
    );
    exit_code(status)
}

/// Forward signals to `pid` (the child) until it exits; its status, and
/// whether a stop signal was passed on (`stopping` in `warn_left_behind`).
/// None if sigwaitinfo fails, which it does not.
fn forward_until_exit(
    pid: Pid,
    signals: &sys::SignalSet,
    reaper: &Reaper,
    exits: &crossbeam_channel::Receiver<crate::reaper::Exit>,
    whom: Whom,
) -> Option<(ExitStatus, bool)> {
    let mut stopping = false;
    loop {
        let sig = sys::wait_signal(signals).ok()?;
        if sig == libc::SIGCHLD {
            // Exits only: a child stopped or resumed (SIGTSTP, SIGCONT
            // passed on) is the shell's job control, nothing to note.
            reaper.reap(false);
            match exits.try_recv() {
                Ok(e) if e.pid == pid.as_raw() => return Some((e.status, stopping)),
                Ok(e) => log::debug!("unexpected exit routed to us: pid {}", e.pid),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
            }
        } else if RAISED.compare_exchange(sig, 0, Relaxed, Relaxed).is_ok() {
            // Our own write to stderr raised it (`StderrLog`): forwarded,
            // and logged, it would be raised again, without end.
        } else {
            let stop = matches!(
                sig,
                libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP
            );
            stopping |= stop;
            forward(pid, sig, whom);
            if stop {
                // A CMD stopped by Ctrl-Z or SIGSTOP holds a handled stop
                // signal pending until its SIGKILL: resume it, as `sheepdog
                // run` (`group::signal_stop`), systemd and a tty hangup do.
                // Its whole group, even with --main: a master waits for
                // workers that Ctrl-Z stopped too.
                forward(pid, libc::SIGCONT, Whom::Group);
            }
        }
    }
}

/// Name what CMD left running: most often a daemon that forked away (nginx
/// without `daemon off;`), which would otherwise end the container, or
/// outlive sheepdog, without a word. After a stop signal was passed on
/// (`stopping`) they are more likely still on their way out: named, but
/// not called a daemon.
fn warn_left_behind(reaper: &Reaper, program: &str, status: ExitStatus, stopping: bool) {
    let Some(left) = crate::stragglers::unowned_children(reaper) else {
        return;
    };
    if left.is_empty() {
        return;
    }
    let one = left.len() == 1;
    let fate = match (std::process::id() == 1, one) {
        (true, true) => "as PID 1, sheepdog's exit ends it",
        (true, false) => "as PID 1, sheepdog's exit ends them",
        (false, true) => "it keeps running without sheepdog",
        (false, false) => "they keep running without sheepdog",
    };
    let hint = if stopping {
        ""
    } else {
        "; did it daemonize? Run it in the foreground (nginx -g 'daemon off;', php-fpm -F)"
    };
    log::warn!(
        "'{program}' {status} and left {} running: {}{hint}; {fate}",
        crate::logging::counted(left.len() as u64, "process", "processes"),
        crate::stragglers::name_list(&left)
    );
}

/// The exit code for a child status: its code, or 128+N for signal N.
fn exit_code(status: ExitStatus) -> i32 {
    status.shell_code()
}

/// 127 when the command was not found, 126 when it could not be run, 1
/// when sheepdog had no process or memory to run it with (`--ulimit
/// nproc` shared by a uid's containers): nothing wrong with CMD, as
/// tini's failed fork.
fn exec_failure_code(e: &io::Error) -> i32 {
    // By kind: the message may carry an explanation (`exec_error`).
    match e.kind() {
        io::ErrorKind::NotFound => NOT_FOUND,
        _ if sys::short_of_resources(e) => exit::FAILURE,
        _ => NOT_EXECUTABLE,
    }
}

/// Send `sig` to the child's process group (or, with `--main`, to the
/// child alone). If the group is gone but the child is not (it moved to a
/// group or session of its own), send it to the child itself. Both are
/// safe: the child is unreaped (module invariant).
fn forward(pid: Pid, sig: libc::c_int, whom: Whom) {
    let name = crate::signals::name(sig);
    let to = match whom {
        Whom::Group => "process group",
        Whom::Main => "pid",
    };
    log::debug!("forwarding {name} to {to} {pid}");
    let pid = pid.as_raw();
    let sent = match whom {
        Whom::Group => match sys::send_signal(-pid, sig) {
            // The group is gone but the child is not: it left for its own.
            Err(Errno::ESRCH) => sys::send_signal(pid, sig),
            other => other,
        },
        Whom::Main => sys::send_signal(pid, sig),
    };
    match sent {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("unable to forward {name} to pid {pid}: {e}"),
    }
}

/// True when stdin is our controlling terminal and our group is its
/// foreground group: only then do we hand it to the child. (A sheepdog
/// started in the background must not steal the terminal from its shell.)
fn owns_terminal(own_group: Pid) -> bool {
    sys::stdin_is_tty() && nix::unistd::tcgetpgrp(io::stdin()) == Ok(own_group)
}

/// One line on stderr; a closed stderr is ignored rather than a panic.
fn say(msg: &str) {
    // It may quote CMD: one line, whatever its name holds.
    let msg = crate::logging::escaped(msg);
    let _ = writeln!(io::stderr().lock(), "sheepdog: {msg}");
}

/// sheepdog's own log lines go to stderr in this mode: stdout belongs to
/// the child. Quiet by default (warnings and errors only); raise it with
/// `SHEEPDOG_LOG_LEVEL=debug|info`.
fn init_logging() {
    let (level, bad) = match std::env::var("SHEEPDOG_LOG_LEVEL") {
        Err(_) => (log::LevelFilter::Warn, None),
        Ok(v) => match parse_level(&v) {
            Some(level) => (level, None),
            None => (log::LevelFilter::Warn, Some(v)),
        },
    };
    let _ = log::set_logger(&STDERR_LOG);
    log::set_max_level(level);
    if let Some(v) = bad {
        log::warn!("ignoring SHEEPDOG_LOG_LEVEL={v:?}: expected debug, info, warn or error");
    }
}

fn parse_level(v: &str) -> Option<log::LevelFilter> {
    match v.trim().to_ascii_lowercase().as_str() {
        "debug" => Some(log::LevelFilter::Debug),
        "info" => Some(log::LevelFilter::Info),
        "warn" | "warning" => Some(log::LevelFilter::Warn),
        "error" => Some(log::LevelFilter::Error),
        _ => None,
    }
}

struct StderrLog;

/// The signal that a failed write of ours to stderr raised (SIGPIPE for a
/// reader gone, SIGXFSZ past RLIMIT_FSIZE), for the loop to drop; 0: none.
static RAISED: AtomicI32 = AtomicI32::new(0);

static STDERR_LOG: StderrLog = StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Control characters escaped, as the supervisor's log does: a
        // message may carry a child's name (`warn_left_behind`), which the
        // child chose, and must stay one line.
        let msg = record.args().to_string();
        let line = format!(
            "{} {:<5} sheepdog | {}\n",
            crate::logging::rfc3339_millis(std::time::SystemTime::now()),
            record.level(),
            crate::logging::escaped(&msg)
        );
        // One write per line; a closed stderr drops the line.
        if let Err(e) = io::stderr().lock().write_all(line.as_bytes()) {
            let raised = match e.raw_os_error() {
                Some(libc::EPIPE) => libc::SIGPIPE,
                Some(libc::EFBIG) => libc::SIGXFSZ,
                _ => 0,
            };
            RAISED.store(raised, Relaxed);
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_failures_map_like_a_shell() {
        assert_eq!(
            exec_failure_code(&io::Error::from_raw_os_error(libc::ENOENT)),
            127
        );
        assert_eq!(
            exec_failure_code(&io::Error::from_raw_os_error(libc::EACCES)),
            126
        );
        assert_eq!(
            exec_failure_code(&io::Error::from_raw_os_error(libc::ENOEXEC)),
            126
        );
        assert_eq!(
            exec_failure_code(&io::Error::from_raw_os_error(libc::EAGAIN)),
            1
        );
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::Code(42)), 42);
        assert_eq!(
            exit_code(ExitStatus::Signal {
                signal: libc::SIGTERM,
                core_dumped: false
            }),
            143
        );
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_level("DEBUG"), Some(log::LevelFilter::Debug));
        assert_eq!(parse_level(" warn "), Some(log::LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
