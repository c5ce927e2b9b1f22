//! The output thread: every child's stdout/stderr pipe multiplexed with one
//! `poll`, framed into lines and written to the log sink.
//!
//! Invariants:
//! - One thread for all pipes, blocked in `poll` with no timeout: it wakes
//!   only for pipe data, pipe hang-up, or a new pipe being attached (a byte
//!   on its wake pipe).
//! - Fairness: at most one read (`CHUNK` bytes) per pipe per poll round, so
//!   a flooding child cannot starve the others; a slow sink slows children
//!   (their pipes fill), it never grows our memory: each pipe buffers at most
//!   `MAX_LINE` bytes of an unfinished line.
//! - Nothing is lost: a partial last line is flushed when its pipe closes.
//!   Lines longer than `MAX_LINE` are cut into pieces; invalid UTF-8 is
//!   replaced, never a panic.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::logging::{self, Stream};
use crate::spawn::Identity;

/// Bytes read from one pipe per poll round.
const CHUNK: usize = 16 * 1024;
/// Longest line kept whole; longer ones are cut.
pub const MAX_LINE: usize = 64 * 1024;

enum Msg {
    Attach(Source),
    /// Exit once every pipe has closed (or at the deadline).
    Finish(Instant, Sender<()>),
}

struct Source {
    fd: OwnedFd,
    process: Arc<str>,
    instance: Arc<str>,
    stream: Stream,
    pending: Vec<u8>,
}

/// Handle to the output thread.
pub struct Output {
    tx: Sender<Msg>,
    wake: OwnedFd,
}

impl Output {
    /// Start the output thread.
    pub fn start() -> io::Result<(Output, JoinHandle<()>)> {
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("output".into())
            .stack_size(128 * 1024)
            .spawn(move || run(rx, wake_r))?;
        Ok((Output { tx, wake: wake_w }, handle))
    }

    /// Hand a child's pipe to the thread.
    pub fn attach(&self, fd: OwnedFd, id: &Identity, stream: Stream) {
        let source = Source {
            fd,
            process: id.process.clone(),
            instance: id.instance.clone(),
            stream,
            pending: Vec::new(),
        };
        if self.tx.send(Msg::Attach(source)).is_ok() {
            self.wake();
        }
    }

    /// Wait (up to `grace`) until every pipe has closed and its last line
    /// has been written. Call after every child has exited.
    pub fn finish(&self, grace: Duration) {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + grace;
        if self.tx.send(Msg::Finish(deadline, done_tx)).is_ok() {
            self.wake();
            let _ = done_rx.recv_deadline(deadline + Duration::from_millis(50));
        }
    }

    fn wake(&self) {
        // EAGAIN means the pipe already holds wake-ups: fine.
        let _ = nix::unistd::write(&self.wake, &[1]);
    }
}

fn run(rx: Receiver<Msg>, wake: OwnedFd) {
    let mut sources: Vec<Source> = Vec::new();
    let mut finish: Option<(Instant, Sender<()>)> = None;
    let mut buf = vec![0u8; CHUNK];
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Attach(s) => {
                    if set_nonblocking(&s.fd).is_ok() {
                        sources.push(s);
                    }
                }
                Msg::Finish(deadline, done) => finish = Some((deadline, done)),
            }
        }
        if let Some((deadline, done)) = &finish {
            if sources.is_empty() || Instant::now() >= *deadline {
                for s in &mut sources {
                    flush_partial(s);
                }
                let _ = done.send(());
                return;
            }
        }
        let timeout = match &finish {
            // Only while finishing: bound the wait for stragglers.
            Some((deadline, _)) => {
                let ms = deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis();
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = Vec::with_capacity(sources.len() + 1);
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        fds.extend(
            sources
                .iter()
                .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::error!("unable to poll child output: {e}");
                return;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[0] {
            drain_wake(&wake, &mut buf);
        }
        let mut closed = Vec::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if ready[i + 1] && !read_once(s, &mut buf) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            let mut s = sources.swap_remove(i);
            flush_partial(&mut s);
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

fn drain_wake(wake: &OwnedFd, buf: &mut [u8]) {
    while let Ok(n) = nix::unistd::read(wake, buf) {
        if n == 0 {
            break;
        }
    }
}

/// One read; emits complete lines. Returns false when the pipe is closed.
fn read_once(s: &mut Source, buf: &mut [u8]) -> bool {
    match nix::unistd::read(&s.fd, buf) {
        Ok(0) => false,
        Ok(n) => {
            frame(s, &buf[..n]);
            true
        }
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => true,
        Err(_) => false,
    }
}

fn frame(s: &mut Source, data: &[u8]) {
    let mut rest = data;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(nl);
        if s.pending.is_empty() {
            emit(s, line);
        } else {
            s.pending.extend_from_slice(line);
            let whole = std::mem::take(&mut s.pending);
            emit(s, &whole);
        }
        rest = &tail[1..];
    }
    s.pending.extend_from_slice(rest);
    while s.pending.len() >= MAX_LINE {
        let piece: Vec<u8> = s.pending.drain(..MAX_LINE).collect();
        emit(s, &piece);
    }
}

fn flush_partial(s: &mut Source) {
    if !s.pending.is_empty() {
        let line = std::mem::take(&mut s.pending);
        emit(s, &line);
    }
}

fn emit(s: &Source, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    logging::child_line(&s.process, &s.instance, s.stream, &text);
}
