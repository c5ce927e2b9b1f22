//! The output thread: every child's stdout/stderr pipe multiplexed with one
//! `poll`, each pipe's bytes framed into lines, run through its process's
//! pipeline, and written to stdout, its log file and the `LogStore`.
//!
//! Invariants:
//! - One thread for all pipes, no thread per pipe. It blocks in `poll` and
//!   wakes only for pipe data or hang-up, a message (attach, reopen,
//!   finish: a byte on its wake pipe), or a deadline: the nearest pending
//!   multiline timeout, or the finish deadline. With no multiline entry
//!   pending it has no timeout at all (no tick).
//! - Fairness: at most one read (`CHUNK` bytes) per pipe per poll round, so
//!   a flooding child cannot starve the others.
//! - Bounded memory, whatever children do: per pipe at most
//!   `max_line_bytes` of an unfinished line plus one multiline entry (4 ×
//!   `max_line_bytes`) plus, with redaction, the held-back tail of a cut
//!   line (`pipeline`); one read buffer; write buffers flushed beyond
//!   `FLUSH_AT`; the store is bounded on its own. A slow sink (stdout or a
//!   disk) blocks this thread in `write`, so children's pipes fill and they
//!   are slowed, never killed. New pipes wait in the channel meanwhile; so
//!   that they cannot pile up without end, starts wait while too many do
//!   (`Output::stalled`).
//! - A log file that is not a regular file (a FIFO, a terminal) is never
//!   waited for: while its reader has no room, the pipes that write to it
//!   are not read (their children slow down, the others go on) and it is
//!   polled for room instead. A held pipe is still watched for hang-up: a
//!   run that ended is read out (lines its file has no room for are
//!   dropped, and counted) and closed, rather than held with its
//!   descriptors while its process restarts.
//! - Nothing is lost at the end of a stream: when a pipe closes its
//!   unfinished line and pending multiline entry are flushed, and `finish`
//!   flushes every remaining pipe's at the deadline. Invalid UTF-8 is
//!   replaced (lossy), never a panic.
//! - A closed pipe's `done` sender is dropped only after its last lines
//!   are written, so an instance thread can wait (briefly) for a child's
//!   output before logging what happened to the child.
//! - Lines are written whole: a write batch holds whole formatted lines
//!   only, handed to the stdout thread (`crate::stdout`) in one piece.
//! - A log file is open only while a pipe that writes to it is: bounded
//!   descriptors however many runs or instances come and go.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::buffer::LogStore;
use super::frame::Framer;
use super::pipeline::{Pipeline, StreamState};
use super::sink::{self, RotatingFile};
use super::Msg;
use crate::logging::{self, Record, Stream, Target};
use crate::spawn::Identity;

/// Bytes read from one pipe per poll round (a full default pipe buffer).
const CHUNK: usize = 64 * 1024;
/// Write the stdout batch once it holds this much.
const FLUSH_AT: usize = 64 * 1024;

/// One child pipe and its state.
pub struct Source {
    fd: OwnedFd,
    framer: Framer,
    state: StreamState,
    pipeline: Arc<Pipeline>,
    /// The resolved `logging.file.path`, if any.
    file: Option<PathBuf>,
    /// Dropped (after the final flush) to tell the instance thread that
    /// this stream's last line is out.
    _done: Sender<()>,
}

impl Source {
    pub fn new(
        fd: OwnedFd,
        id: &Identity,
        stream: Stream,
        pipeline: Arc<Pipeline>,
        done: Sender<()>,
    ) -> Source {
        let file = pipeline
            .file
            .as_ref()
            .map(|f| sink::expand(&f.path, &id.process, &id.instance));
        Source {
            fd,
            framer: Framer::new(pipeline.max_line_bytes),
            state: StreamState::new(id.instance.clone(), stream),
            pipeline,
            file,
            _done: done,
        }
    }
}

enum FileSlot {
    Open(RotatingFile),
    /// Not opened (yet): its lines go to stdout until it opens, tried
    /// again with the first line from this time on (None: not tried yet),
    /// so a moment when sheepdog was short of descriptors does not send
    /// them there for good.
    Broken(Option<Instant>),
}

/// How long a log file that could not be opened is left alone.
const REOPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl FileSlot {
    fn waiting(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            FileSlot::Open(f) => f.waiting(),
            FileSlot::Broken(_) => None,
        }
    }
}

struct Mux {
    store: Arc<LogStore>,
    files: HashMap<PathBuf, FileSlot>,
    stdout: Vec<u8>,
    scratch: Vec<Record>,
}

pub fn run(rx: Receiver<Msg>, wake: OwnedFd, store: Arc<LogStore>) {
    let mut mux = Mux {
        store,
        files: HashMap::new(),
        stdout: Vec::new(),
        scratch: Vec::new(),
    };
    let mut sources: Vec<Source> = Vec::new();
    let mut finish: Option<(Instant, Sender<()>)> = None;
    let mut buf = vec![0u8; CHUNK];
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Attach(s) => match set_nonblocking(&s.fd) {
                    Ok(()) => sources.push(s),
                    Err(e) => log::error!(
                        "{}: unable to read its {}: {e}",
                        s.state.instance,
                        s.state.stream.as_str()
                    ),
                },
                Msg::Reopen => mux.reopen(),
                Msg::Finish(deadline, done) => finish = Some((deadline, done)),
            }
        }
        if let Some((deadline, done)) = &finish {
            if sources.is_empty() || Instant::now() >= *deadline {
                for s in &mut sources {
                    mux.close(s);
                }
                mux.flush();
                let _ = done.send(());
                return;
            }
        }
        let deadline = sources
            .iter()
            .filter_map(|s| s.state.deadline())
            .chain(finish.as_ref().map(|(d, _)| *d))
            .min();
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                // Round up, so a deadline less than 1 ms away is not a busy loop.
                let ns = at.saturating_duration_since(Instant::now()).as_nanos();
                let ms = ns.div_ceil(1_000_000).min(60_000) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO)
            }
        };
        let mut fds = Vec::with_capacity(sources.len() + 1);
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        fds.extend(sources.iter().map(|s| {
            // Held: only a hang-up (reported whatever is asked) wakes us.
            let events = match mux.held(s) {
                true => PollFlags::empty(),
                false => PollFlags::POLLIN,
            };
            PollFd::new(s.fd.as_fd(), events)
        }));
        fds.extend(
            mux.files
                .values()
                .filter_map(FileSlot::waiting)
                .map(|fd| PollFd::new(fd, PollFlags::POLLOUT)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::error!("unable to poll child output: {e}");
                for s in &mut sources {
                    mux.close(s);
                }
                mux.flush();
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
            if ready[i + 1] && !mux.read_once(s, &mut buf) {
                closed.push(i);
            }
        }
        let mut ended = Vec::new();
        for i in closed.into_iter().rev() {
            let mut s = sources.swap_remove(i);
            mux.close(&mut s);
            ended.push(s);
        }
        let now = Instant::now();
        for s in &mut sources {
            if s.state.deadline().is_some_and(|d| now >= d) {
                let mut out = std::mem::take(&mut mux.scratch);
                s.state.tick(&s.pipeline, now, &mut out);
                mux.emit(s, &mut out);
                mux.scratch = out;
            }
        }
        mux.flush();
        // A file no open pipe writes to is closed (and opened again, for
        // appending, by the next line): runs and instances come and go, and
        // a path per run (`{instance}` of a scheduled job) would otherwise
        // hold a descriptor per run until sheepdog runs out of them.
        for path in ended.iter().filter_map(|s| s.file.as_ref()) {
            if !sources.iter().any(|o| o.file.as_ref() == Some(path)) {
                mux.files.remove(path);
            }
        }
        // Only now, with their last lines written, let the ended sources go.
        drop(ended);
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

impl Mux {
    /// One read; processes complete lines. Returns false when the pipe is
    /// closed.
    fn read_once(&mut self, s: &mut Source, buf: &mut [u8]) -> bool {
        match nix::unistd::read(&s.fd, buf) {
            Ok(0) => false,
            Ok(n) => {
                self.feed(s, &buf[..n]);
                true
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => true,
            Err(_) => false,
        }
    }

    fn feed(&mut self, s: &mut Source, data: &[u8]) {
        self.frame(s, false, |framer, sink| framer.push(data, sink));
    }

    /// The pipe closed (or we are finishing): flush its partial line and
    /// pending entry.
    fn close(&mut self, s: &mut Source) {
        self.frame(s, true, |framer, sink| framer.finish(sink));
    }

    /// Cut lines with `cut` (push or finish the framer), run each through
    /// the source's pipeline (`flush`: then end its pending entry too) and
    /// emit the records.
    fn frame(
        &mut self,
        s: &mut Source,
        flush: bool,
        cut: impl FnOnce(&mut Framer, &mut dyn FnMut(&[u8], bool)),
    ) {
        let now = Instant::now();
        let mut out = std::mem::take(&mut self.scratch);
        {
            let Source {
                framer,
                state,
                pipeline,
                ..
            } = s;
            cut(framer, &mut |line, continued| {
                let text = String::from_utf8_lossy(line).into_owned();
                state.line(pipeline, text, continued, now, &mut out);
            });
            if flush {
                state.flush(pipeline, &mut out);
            }
        }
        self.emit(s, &mut out);
        self.scratch = out;
    }

    /// Send records to their sinks.
    fn emit(&mut self, s: &Source, records: &mut Vec<Record>) {
        for r in records.drain(..) {
            let mut to_stdout = s.pipeline.file.as_ref().is_none_or(|f| f.stdout_too);
            if let Some(path) = &s.file {
                let file_line = logging::format_line(&r, Target::File);
                if !self.write_file(path, &s.pipeline, &file_line) {
                    to_stdout = true;
                }
            }
            if to_stdout {
                // Formatted only when printed (`stdout_too: false` is a
                // file's common case).
                let line = logging::format_line(&r, Target::Stdout);
                self.stdout.extend_from_slice(&line);
                if self.stdout.len() >= FLUSH_AT {
                    self.flush_stdout();
                }
            }
            self.store.push(r);
        }
    }

    /// Queue a line for a process's file; false if the file is unusable.
    fn write_file(&mut self, path: &Path, p: &Pipeline, line: &[u8]) -> bool {
        let slot = self
            .files
            .entry(path.to_path_buf())
            .or_insert(FileSlot::Broken(None));
        if let FileSlot::Broken(at) = slot {
            let now = Instant::now();
            if at.is_none_or(|t| now >= t) {
                let (max_size, max_files) = p
                    .file
                    .as_ref()
                    .map_or((10 << 20, 5), |f| (f.max_size, f.max_files));
                match RotatingFile::open(path, max_size, max_files, false) {
                    Ok(f) => *slot = FileSlot::Open(f),
                    Err(e) => {
                        if at.is_none() {
                            log::error!(
                                "{}: {e}; its lines go to stdout until it opens",
                                p.process
                            );
                        }
                        *at = Some(now + REOPEN_AFTER);
                    }
                }
            }
        }
        match slot {
            FileSlot::Open(f) => {
                f.push_line(line);
                true
            }
            FileSlot::Broken(_) => false,
        }
    }

    /// Whether `s` is not read while its file has no room.
    fn held(&self, s: &Source) -> bool {
        s.file
            .as_ref()
            .and_then(|p| self.files.get(p))
            .and_then(FileSlot::waiting)
            .is_some()
    }

    fn flush_stdout(&mut self) {
        if !self.stdout.is_empty() {
            logging::write_stdout(&self.stdout);
            self.stdout.clear();
            if self.stdout.capacity() > 4 * FLUSH_AT {
                self.stdout = Vec::new();
            }
        }
    }

    fn flush(&mut self) {
        self.flush_stdout();
        for slot in self.files.values_mut() {
            if let FileSlot::Open(f) = slot {
                f.flush();
            }
        }
    }

    /// Reopen every process log file; retry the ones that failed to open.
    fn reopen(&mut self) {
        self.flush();
        self.files
            .retain(|_, slot| matches!(slot, FileSlot::Open(_)));
        for slot in self.files.values_mut() {
            if let FileSlot::Open(f) = slot {
                if let Err(e) = f.reopen() {
                    log::error!("{e}");
                }
            }
        }
    }
}
