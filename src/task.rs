//! Short-lived commands run to completion: exec health probes and hooks
//! (scheduled runs later). The child is spawned through the reaper (own
//! process group, clean signal state, exit routed to us), waited for with a
//! deadline, and stopped as a whole group when the deadline passes or the
//! run is cancelled.
//!
//! Invariants:
//! - Never calls `waitpid`: the exit arrives from the reaper on a private
//!   channel.
//! - Bounded: at most `timeout` (its spawn included: a child still short of
//!   exec at the deadline, on a hung mount, is SIGKILLed by a timer armed
//!   in it and the spawn fails, `child::Command::exec_deadline`), plus
//!   `group::KILL_GRACE`
//!   after the group SIGKILL (a cancel adds at most `CANCEL_GRACE` of
//!   SIGTERM first, cut short by a second cancel: the shutdown deadline, a
//!   second SIGTERM); after a logged run's exit, at most
//!   `output::LAST_LINES_WAIT` for its last lines.
//! - Leaves no process behind: after the leader exits, the rest of its group
//!   is killed, and the task ends when the group is empty (`group::Stop`,
//!   the same stop as instances and scheduled runs): a probe's or hook's
//!   stray children must not pile up or keep a port. (What leaves the
//!   group, a daemon, is out of its reach: for probes,
//!   `stragglers::end_probe_strays` ends it after the run.)
//! - A task ends with its leader: the answer is the leader's exit, and a
//!   background child left in its group (`sleep 30 &`) is killed with the
//!   group, never waited for. Capture mode does not wait for the pipe's
//!   EOF, which that child holds: the leader's pidfd ends the wait (EOF
//!   only on a kernel without pidfds).
//! - No polling: the wait blocks on the pipe and the leader's pidfd
//!   (capture mode) or on the exit and cancel channels (log mode), each
//!   with the deadline.
//! - Capture mode keeps only the output's tail (`TAIL_BYTES`) and drains the
//!   pipe while waiting, so a chatty command never blocks on a full pipe.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::child::{Command, Stdio};
use crate::config::extra::{Logging, RedactionPattern};
use crate::config::Shutdown;
use crate::group;
use crate::output::Output;
use crate::reaper::{Exit, ExitStatus, Reaper};
use crate::spawn::{self, Identity};

/// How long a cancelled run gets after SIGTERM before SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Output kept for messages.
const TAIL_BYTES: usize = 2048;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// `output` is the captured tail (empty in log mode).
    Exited {
        status: ExitStatus,
        output: String,
    },
    TimedOut {
        output: String,
    },
    Cancelled,
    SpawnFailed(SpawnFailure),
}

/// Why a task did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnFailure {
    pub why: String,
    /// `sys::short_of_resources`: sheepdog's own shortage, not the
    /// command's fault.
    pub short_of_resources: bool,
}

impl SpawnFailure {
    fn of(context: &str, e: &std::io::Error) -> SpawnFailure {
        SpawnFailure {
            why: format!("{context}{e}"),
            short_of_resources: crate::sys::short_of_resources(e),
        }
    }
}

impl std::fmt::Display for SpawnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Where the task's stdout/stderr go.
pub enum Capture<'a> {
    /// Keep the last lines, for error messages (probes). The fd is the
    /// read end of a pipe: its writer closing (the prober has gone on)
    /// ends the task at once, its group killed (`TaskEnd::Cancelled`).
    Tail(BorrowedFd<'a>),
    /// Through the output thread, tagged with this identity (hooks), with
    /// these redaction patterns (their process's: a hook runs with its env).
    Log(&'a Output, &'a Identity, &'a [RedactionPattern]),
}

/// Run `cmd` (stdin /dev/null) to completion within `timeout`; a message on
/// `cancel` stops it early (SIGTERM to the group, SIGKILL after a grace).
pub fn run(
    reaper: &Reaper,
    mut cmd: Command,
    timeout: Duration,
    capture: Capture<'_>,
    cancel: Option<&Receiver<()>>,
) -> TaskEnd {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = crossbeam_channel::bounded(1);
    cmd.stdin(Stdio::Null).exec_deadline(deadline);
    match capture {
        Capture::Tail(abandon) => {
            let pipe = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(std::io::Error::from)
                .and_then(|(r, w)| Ok((r, w.try_clone()?, w)));
            let (reader, writer, writer2) = match pipe {
                Ok(p) => p,
                Err(e) => {
                    return TaskEnd::SpawnFailed(SpawnFailure::of("unable to create a pipe: ", &e))
                }
            };
            cmd.stdout(Stdio::Fd(writer)).stderr(Stdio::Fd(writer2));
            let pid = match reaper.spawn(cmd, &tx) {
                Ok(child) => child.pid,
                Err(e) => return TaskEnd::SpawnFailed(SpawnFailure::of("", &e)),
            };
            let leader = reaper.pidfd(pid, &rx);
            wait_capturing("exec probe", pid, &rx, &reader, abandon, leader, deadline)
        }
        Capture::Log(output, id, redaction) => {
            cmd.stdout(Stdio::Pipe).stderr(Stdio::Pipe);
            let logging = Logging {
                redaction: redaction.to_vec(),
                ..Logging::default()
            };
            let (pid, flushed) = match spawn::attached(reaper, cmd, &tx, output, id, &logging) {
                Ok(started) => started,
                Err(e) => return TaskEnd::SpawnFailed(SpawnFailure::of("", &e)),
            };
            let end = wait_logging(&id.instance, pid, &rx, cancel, deadline);
            if matches!(end, TaskEnd::Exited { .. }) {
                let _ = flushed.recv_timeout(crate::output::LAST_LINES_WAIT);
            }
            end
        }
    }
}

/// Read output until the leader exits (`leader`, its pidfd, polls
/// readable; or its exit is here already) or the pipe ends, keep what is
/// readable then, and wait for the exit itself, all within the deadline.
/// Not until EOF: a background child (`sleep 30 &`) holds the pipe for as
/// long as it lives, and the answer is the leader's. Without a pidfd (a
/// kernel older than 5.3) EOF it is.
fn wait_capturing(
    owner: &str,
    pid: i32,
    rx: &Receiver<Exit>,
    reader: &OwnedFd,
    abandon: BorrowedFd<'_>,
    leader: Option<OwnedFd>,
    deadline: Instant,
) -> TaskEnd {
    let mut tail = Tail::default();
    // Without a pidfd, `abandon` stands in (checked first, so harmless).
    let exited = leader.as_ref().map_or(abandon, |fd| fd.as_fd());
    // No pidfd: the exit is here already, or the kernel has none.
    let early = if leader.is_none() {
        rx.try_recv().ok()
    } else {
        None
    };
    let mut open = early.is_none();
    // The output ended (`exec >/dev/null`) while the leader runs on: the
    // watch for its exit and for `abandon` goes on without the pipe.
    let mut ended = false;
    while open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [
            PollFd::new(
                if ended { abandon } else { reader.as_fd() },
                PollFlags::POLLIN,
            ),
            PollFd::new(abandon, PollFlags::POLLIN),
            PollFd::new(exited, PollFlags::POLLIN),
        ];
        let ready = |fd: &PollFd| fd.any().unwrap_or(false);
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            // Nobody waits for the answer any more.
            Ok(_) if ready(&fds[1]) => {
                stop_group(owner, pid, rx, None, true);
                return TaskEnd::Cancelled;
            }
            Ok(_) if ready(&fds[2]) => break,
            Ok(n) if n > 0 => {
                ended = !read_some(reader, &mut tail);
                open = !ended || leader.is_some();
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => open = false,
        }
    }
    // What the leader (or a child) wrote before it exited.
    drain(reader, &mut tail);
    // The exit may already be here even if a stray child kept the pipe open
    // past the deadline: judge by the exit when there is one.
    match early.map_or_else(|| rx.recv_deadline(deadline).or_else(|_| rx.try_recv()), Ok) {
        Ok(exit) => {
            stop_group(owner, pid, rx, Some(exit.status), true);
            TaskEnd::Exited {
                status: exit.status,
                output: tail.text(),
            }
        }
        Err(_) => {
            stop_group(owner, pid, rx, None, true);
            TaskEnd::TimedOut {
                output: tail.text(),
            }
        }
    }
}

/// Wait for the exit, the deadline or a cancel. A cancel channel whose
/// sender is gone means nobody can cancel any more (not a cancel).
fn wait_logging(
    owner: &str,
    pid: i32,
    rx: &Receiver<Exit>,
    cancel: Option<&Receiver<()>>,
    deadline: Instant,
) -> TaskEnd {
    let never = crossbeam_channel::never();
    let mut cancel = cancel.unwrap_or(&never);
    let timer = crossbeam_channel::at(deadline);
    loop {
        select! {
            recv(rx) -> m => return match m {
                Ok(exit) => {
                    stop_group(owner, pid, rx, Some(exit.status), true);
                    TaskEnd::Exited { status: exit.status, output: String::new() }
                }
                Err(_) => TaskEnd::SpawnFailed(SpawnFailure {
                    why: "lost track of the child".into(),
                    short_of_resources: false,
                }),
            },
            recv(cancel) -> m => {
                if m.is_err() {
                    cancel = &never;
                    continue;
                }
                // A second cancel (the shutdown deadline, a second
                // SIGTERM) cuts the grace short.
                stop_group_cancellable(owner, pid, rx, cancel);
                return TaskEnd::Cancelled;
            },
            recv(timer) -> _ => {
                stop_group(owner, pid, rx, None, true);
                return TaskEnd::TimedOut { output: String::new() };
            },
        }
    }
}

/// Stop group `pgid` with `group::Stop` until it is empty, taking the
/// leader's exit from `rx` when it comes: SIGTERM and SIGKILL after
/// `CANCEL_GRACE`, or (`kill_now`) SIGKILL at once. Bounded by
/// `CANCEL_GRACE` + `group::KILL_GRACE`. Inlined: a function of its own
/// costs more unwind-table bytes than its few instructions, and the binary
/// is at its size limit (docs/performance.md).
#[inline(always)]
fn stop_group(
    owner: &str,
    pgid: i32,
    rx: &Receiver<Exit>,
    leader: Option<ExitStatus>,
    kill_now: bool,
) {
    let never = crossbeam_channel::never();
    stop_group_until(owner, pgid, rx, leader, kill_now, &never);
}

/// A cancelled task's stop: SIGTERM, then SIGKILL after `CANCEL_GRACE` or
/// at the next message on `cancel`, whichever comes first.
fn stop_group_cancellable(owner: &str, pgid: i32, rx: &Receiver<Exit>, cancel: &Receiver<()>) {
    stop_group_until(owner, pgid, rx, None, false, cancel);
}

fn stop_group_until(
    owner: &str,
    pgid: i32,
    rx: &Receiver<Exit>,
    leader: Option<ExitStatus>,
    kill_now: bool,
    kill: &Receiver<()>,
) {
    let sequence = Shutdown {
        signal: Signal::SIGTERM,
        timeout: CANCEL_GRACE,
        kill_signal: Signal::SIGKILL,
        pre_stop_hook: None,
    };
    let mut stop = group::Stop::begin(owner, pgid, &sequence, leader, kill_now, Instant::now());
    let never = crossbeam_channel::never();
    let no_kill = crossbeam_channel::never();
    let mut exits = rx;
    let mut kill = kill;
    while stop.advance(owner, Instant::now()).is_none() {
        select! {
            recv(exits) -> m => match m {
                Ok(exit) if exit.pid == pgid => stop.leader_exited(exit.status, Instant::now()),
                Ok(_) => {}
                // Cannot happen while `run` holds the sender; never spin.
                Err(_) => exits = &never,
            },
            recv(kill) -> m => match m {
                Ok(()) => stop.kill(owner, Instant::now()),
                // Nobody can cancel any more: wait for the grace to run out.
                Err(_) => kill = &no_kill,
            },
            recv(crossbeam_channel::at(stop.wake_at())) -> _ => {}
        }
    }
}

fn read_some(fd: &OwnedFd, tail: &mut Tail) -> bool {
    let mut buf = [0u8; 4096];
    match nix::unistd::read(fd, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            tail.push(&buf[..n]);
            true
        }
    }
}

/// Read what is already buffered without blocking on writers that linger.
fn drain(fd: &OwnedFd, tail: &mut Tail) {
    for _ in 0..64 {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 && fds[0].any().unwrap_or(false) => {
                if !read_some(fd, tail) {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// The last `TAIL_BYTES` of output.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        if self.0.len() > TAIL_BYTES {
            let cut = self.0.len() - TAIL_BYTES;
            self.0.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().to_string()
    }
}
