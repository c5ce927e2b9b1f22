//! Short-lived commands run to completion: exec health probes now, hooks
//! and scheduled runs later. The child is spawned through the reaper (own
//! process group, clean signal state, exit routed to us), waited for with a
//! deadline, and killed as a whole group when the deadline passes.
//!
//! Invariants:
//! - Never calls `waitpid`: the exit arrives from the reaper on a private
//!   channel.
//! - Bounded: at most `timeout` plus `KILL_GRACE` after the group SIGKILL.
//! - Leaves no process behind: after the leader exits, the rest of its group
//!   is killed (a probe's stray children must not pile up).
//! - Output is captured into one pipe and only its tail (`TAIL_BYTES`) is
//!   kept, for error messages; the pipe is drained while waiting, so a
//!   chatty command cannot block on a full pipe.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::reaper::{ExitStatus, Reaper};
use crate::sys::ChildSetup;

/// How long to wait for a group to vanish after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Output kept for messages.
const TAIL_BYTES: usize = 2048;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    Exited { status: ExitStatus, output: String },
    TimedOut { output: String },
    SpawnFailed(String),
}

/// Run `cmd` (stdin /dev/null, stdout+stderr captured) to completion within
/// `timeout`.
pub fn run(reaper: &Reaper, mut cmd: Command, setup: ChildSetup, timeout: Duration) -> TaskEnd {
    let pipe = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(std::io::Error::from)
        .and_then(|(r, w)| Ok((r, w.try_clone()?, w)));
    let (reader, writer, writer2) = match pipe {
        Ok(p) => p,
        Err(e) => return TaskEnd::SpawnFailed(format!("unable to create a pipe: {e}")),
    };
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let child = reaper.spawn(&mut cmd, setup, &tx);
    // The Command holds the pipe's write ends: drop it, or no EOF ever comes.
    drop(cmd);
    let child = match child {
        Ok(c) => c,
        Err(e) => return TaskEnd::SpawnFailed(e.to_string()),
    };
    let pid = child.id() as i32;
    drop(child);
    let mut tail = Tail::default();
    let deadline = Instant::now() + timeout;
    // Wait for the exit while draining output; poll wakes on output or EOF.
    let mut open = true;
    loop {
        if let Ok(exit) = rx.try_recv() {
            drain(&reader, &mut tail);
            kill_rest(pid);
            return TaskEnd::Exited {
                status: exit.status,
                output: tail.text(),
            };
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let left = deadline - now;
        if open {
            // Output or EOF wakes us; the exit itself arrives on `rx`, which
            // poll cannot see, so wait in short slices once the pipe is shut.
            let ms = left.as_millis().min(50) as i32;
            let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
            if poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO),
            )
            .is_ok()
                && fds[0].any().unwrap_or(false)
            {
                open = read_some(&reader, &mut tail);
            }
        } else if let Ok(exit) = rx.recv_timeout(left) {
            kill_rest(pid);
            return TaskEnd::Exited {
                status: exit.status,
                output: tail.text(),
            };
        }
    }
    // Timed out: the whole group goes, and we still wait for the leader's
    // exit so it is accounted for (bounded).
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = rx.recv_timeout(KILL_GRACE);
    drain(&reader, &mut tail);
    TaskEnd::TimedOut {
        output: tail.text(),
    }
}

/// Kill what is left of the group after its leader exited.
fn kill_rest(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
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
