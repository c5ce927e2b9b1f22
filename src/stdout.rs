//! The stdout writer: one thread that makes every write to sheepdog's stdout.
//!
//! A write to stdout blocks for as long as its reader pleases: a terminal
//! paused with Ctrl-S, a stalled log shipper, a pipe nobody drains. No
//! decision may wait on that, or PID 1 stops supervising: no stop, no
//! restart, no shutdown deadline. So the supervisor, instance and output
//! threads hand their formatted lines to this thread and go on.
//!
//! Invariants:
//! - Lines are written in the order they were handed over, in chunks of
//!   whole lines, each with one `write_all`: lines never interleave.
//! - Bounded: at most `QUEUE_BYTES` wait here. A line of sheepdog's own
//!   that finds the queue full is dropped and counted, and the count is
//!   written as soon as stdout takes lines again. Child lines
//!   (`Full::Wait`) wait for room instead: the output thread stops reading
//!   pipes and children slow down, as they always did behind a blocked
//!   stdout (backpressure, docs/logging.md).
//! - `flush` waits for what was handed over before it, at most until its
//!   deadline: the exit path uses it so that the last lines are out,
//!   without hanging on a reader that never reads.
//! - Until the thread runs (or if it cannot be started) lines are written
//!   directly, as they would be without it.
//! - The thread blocks on a condition variable with no timeout: an idle
//!   sheepdog makes no wake-ups here.
//! - `global.log_file` has a writer of its own (`log-file`, the same code):
//!   a file on a mount that hangs blocks its open, writes and reopens for
//!   as long as the mount pleases, and stdout must not wait for it. Only
//!   sheepdog's own lines go there (`Full::Drop`); a reopen (SIGUSR1) is
//!   a flag its thread acts on before its next write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// How many bytes may wait for stdout.
const QUEUE_BYTES: usize = 256 * 1024;
/// The writer's batch buffer is kept between writes up to this size.
const KEEP_BYTES: usize = 16 * 1024;

/// What a line does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Wait for room (child output: backpressure on the children).
    Wait,
    /// Drop it and count it (sheepdog's own records: a decision must not
    /// wait for stdout).
    Drop,
}

struct Queue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    bytes: usize,
    /// Chunks handed over so far, and chunks written (or failed) so far.
    queued: u64,
    written: u64,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: u64,
    /// `global.log_file` is to be reopened (SIGUSR1) before the next write.
    reopen: bool,
    /// The writer is asleep on `work`: only then does a push wake it (a
    /// futex call per line would cost a start of 50 processes ~100).
    idle: bool,
}

/// Where a writer writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    Stdout,
    /// `global.log_file` (`crate::logging::write_own_file`).
    OwnFile,
}

struct Writer {
    sink: Sink,
    queue: Mutex<Queue>,
    /// The writer waits here for work.
    work: Condvar,
    /// Producers wait here for room, and `flush` for progress.
    progress: Condvar,
}

impl Writer {
    const fn new(sink: Sink) -> Writer {
        Writer {
            sink,
            queue: Mutex::new(Queue {
                chunks: VecDeque::new(),
                bytes: 0,
                queued: 0,
                written: 0,
                dropped: 0,
                reopen: false,
                idle: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        }
    }
}

static WRITER: Writer = Writer::new(Sink::Stdout);
/// The writer of `global.log_file`: a file on a mount that hangs (NFS, a
/// FUSE server that stopped answering) blocks its writes, and its open,
/// for as long as it pleases; only this thread waits for it.
static FILE_WRITER: Writer = Writer::new(Sink::OwnFile);

/// Whether the writer thread runs (started at the first line).
static RUNNING: OnceLock<bool> = OnceLock::new();
/// Whether the file writer runs (started by `start_file`).
static FILE_RUNNING: OnceLock<bool> = OnceLock::new();

fn writer() -> Option<&'static Writer> {
    let running = RUNNING.get_or_init(|| {
        std::thread::Builder::new()
            .name("stdout".into())
            .stack_size(64 * 1024)
            .spawn(|| WRITER.run())
            .is_ok()
    });
    running.then_some(&WRITER)
}

/// Start the writer of `global.log_file`, which runs `open` first (the
/// open may hang on the mount too). False if it could not be started.
pub fn start_file(open: impl FnOnce() + Send + 'static) -> bool {
    *FILE_RUNNING.get_or_init(|| {
        std::thread::Builder::new()
            .name("log-file".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                open();
                FILE_WRITER.run()
            })
            .is_ok()
    })
}

/// Hand one of sheepdog's own lines to the `global.log_file` writer:
/// dropped (and counted) when its queue is full.
pub fn push_file(line: impl FnOnce() -> Vec<u8>) {
    if FILE_RUNNING.get() == Some(&true) {
        FILE_WRITER.push(&line(), Full::Drop);
    }
}

/// Have the `global.log_file` writer reopen it before its next write.
pub fn reopen_file() {
    if FILE_RUNNING.get() == Some(&true) {
        let w = &FILE_WRITER;
        w.lock().reopen = true;
        w.work.notify_one();
    }
}

/// A `Full::Wait` producer (the output thread) is waiting for room.
static WAITING: AtomicBool = AtomicBool::new(false);

/// Whether child output is waiting for stdout to take lines: the output
/// thread reads no pipe meanwhile.
pub fn waiting() -> bool {
    WAITING.load(Ordering::Relaxed)
}

/// Hand `lines` (whole lines, each ending in `\n`) to the writer.
pub fn push(lines: &[u8], full: Full) {
    if lines.is_empty() {
        return;
    }
    let Some(w) = writer() else {
        crate::logging::write_direct(lines);
        return;
    };
    w.push(lines, full);
}

impl Writer {
    fn push(&self, lines: &[u8], full: Full) {
        let mut q = self.lock();
        // A chunk larger than the whole queue still goes in once it is empty.
        while q.bytes > 0 && q.bytes + lines.len() > QUEUE_BYTES {
            match full {
                Full::Drop => {
                    q.dropped += count_lines(lines);
                    return;
                }
                Full::Wait => {
                    WAITING.store(true, Ordering::Relaxed);
                    q = self.progress.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        if full == Full::Wait {
            WAITING.store(false, Ordering::Relaxed);
        }
        q.bytes += lines.len();
        q.queued += 1;
        q.chunks.push_back(lines.to_vec());
        let wake = std::mem::take(&mut q.idle);
        drop(q);
        if wake {
            self.work.notify_one();
        }
    }
}

/// The latest any later `flush` waits until, once the exit has begun
/// (`last_flush_by`): the supervisor's last output wait and the logger's
/// final flush share one budget, so a stdout that never drains costs an
/// exit that budget once, not once per wait.
static LAST_FLUSH_BY: OnceLock<Instant> = OnceLock::new();

/// No flush from now on waits past `deadline`.
pub fn last_flush_by(deadline: Instant) {
    let _ = LAST_FLUSH_BY.set(deadline);
}

/// Wait until what was handed over so far is written, or `deadline`.
/// True when it all was.
/// `global.log_file`'s writer is waited for too, after stdout (whether
/// it kept up is stdout's alone: a hung file must not cost its lines).
pub fn flush(deadline: Instant) -> bool {
    let deadline = LAST_FLUSH_BY.get().map_or(deadline, |&by| by.min(deadline));
    let out = RUNNING.get() != Some(&true) || WRITER.flush(deadline);
    if FILE_RUNNING.get() == Some(&true) {
        FILE_WRITER.flush(deadline);
    }
    out
}

impl Writer {
    fn flush(&self, deadline: Instant) -> bool {
        let mut q = self.lock();
        let target = q.queued;
        while q.written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .progress
                .wait_timeout(q, left)
                .map_or_else(|e| e.into_inner().0, |(q, _)| q);
        }
        true
    }
}

/// Lines in `lines`, a partial one too.
pub fn count_lines(lines: &[u8]) -> u64 {
    lines.iter().filter(|&&b| b == b'\n').count().max(1) as u64
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it cannot leave the queue inconsistent:
        // every update is a few plain assignments.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            let (taken, dropped) = {
                let mut q = self.lock();
                while q.chunks.is_empty() && !q.reopen {
                    q.idle = true;
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.idle = false;
                // Everything queued goes out in one write.
                let taken = q.chunks.len() as u64;
                for chunk in q.chunks.drain(..) {
                    batch.extend_from_slice(&chunk);
                }
                (taken, std::mem::take(&mut q.dropped))
            };
            if self.sink == Sink::OwnFile {
                let reopen = std::mem::take(&mut self.lock().reopen);
                crate::logging::write_own_file(&batch, dropped, reopen);
            } else {
                crate::logging::write_direct(&batch);
                if dropped > 0 {
                    crate::logging::write_direct(&crate::logging::dropped_note("stdout", dropped));
                }
            }
            {
                let mut q = self.lock();
                q.bytes = q.bytes.saturating_sub(batch.len());
                q.written += taken;
            }
            self.progress.notify_all();
            batch.clear();
            // A burst (a start of 50, a flood of child output) must not
            // keep its buffer for the rest of an idle life.
            if batch.capacity() > KEEP_BYTES {
                batch = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_by_their_ends_and_a_partial_one_counts() {
        assert_eq!(count_lines(b"a\nb\n"), 2);
        assert_eq!(count_lines(b"no end"), 1);
    }
}
