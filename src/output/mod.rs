//! Child output: from pipes to stdout, files and memory.
//!
//! ```text
//! child pipes ──poll──▶ mux (one thread) ──▶ frame ──▶ pipeline ──▶ sinks: stdout (logging::write_stdout)
//!                                                                         files (sink::RotatingFile)
//!                                                                         LogStore (buffer) + followers
//! ```
//!
//! - `mux`: the output thread, one `poll` over every pipe (DESIGN.md §1).
//! - `frame`: bytes → lines, long lines cut and marked.
//! - `pipeline`: multiline → redaction → JSON → level → filters.
//! - `sink`: log files with rotation, path templates.
//! - `buffer`: `LogStore`, recent records and live followers for the API.
//!
//! `Output` is the handle the rest of sheepdog holds: `attach` a child's
//! pipe, `reopen` files (SIGUSR1), `finish` at exit, and `store` for
//! readers. How a stream is wired (`logging.stdout`/`stderr`: a pipe here,
//! /dev/null, or sheepdog's own fd) is decided in `spawn`.

pub mod buffer;
pub mod frame;
mod mux;
pub mod pipeline;
pub mod sink;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::fcntl::OFlag;

use crate::config::extra::Logging;
use crate::config::{self, Config};
use crate::logging::Stream;
use crate::spawn::Identity;

use buffer::LogStore;
use pipeline::Pipeline;

/// How long a child's exit waits for the output thread to write its last
/// lines (`attach`'s done signal), so they read before what is logged about
/// the exit; a stray grandchild may hold the pipe much longer.
pub const LAST_LINES_WAIT: Duration = Duration::from_millis(100);

/// Messages waiting for a stuck output thread beyond which new starts
/// wait (`stalled`): 16 starts' pipes.
const STALLED_BACKLOG: usize = 32;

enum Msg {
    Attach(mux::Source),
    /// Reopen every log file.
    Reopen,
    /// Exit once every pipe has closed (or at the deadline).
    Finish(Instant, Sender<()>),
}

/// Most compiled pipelines kept (`Output::compiled`): far more names
/// than any configuration has processes and hooks.
const COMPILED_MAX: usize = 256;

/// Handle to the output thread.
pub struct Output {
    tx: Sender<Msg>,
    wake: OwnedFd,
    store: Arc<LogStore>,
    /// Compiled pipelines by process, reused while its `logging` block is
    /// unchanged (regexes are compiled once, not at every restart).
    compiled: Mutex<HashMap<String, (Logging, Arc<Pipeline>)>>,
}

impl Output {
    /// Start the output thread; records also go to `store`.
    pub fn start(store: Arc<LogStore>) -> io::Result<(Output, JoinHandle<()>)> {
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread_store = store.clone();
        let handle = std::thread::Builder::new()
            .name("output".into())
            .stack_size(256 * 1024)
            .spawn(move || mux::run(rx, wake_r, thread_store))?;
        Ok((
            Output {
                tx,
                wake: wake_w,
                store,
                compiled: Mutex::new(HashMap::new()),
            },
            handle,
        ))
    }

    /// How many messages wait for the output thread, when it is stuck
    /// behind a stdout that does not drain and they pile up: each start's
    /// pipes are among them, two descriptors each. None otherwise.
    pub fn stalled(&self) -> Option<usize> {
        let waiting = self.tx.len();
        (waiting >= STALLED_BACKLOG && crate::stdout::waiting()).then_some(waiting)
    }

    /// The recent-logs store (for the API).
    #[allow(dead_code)] // read by the HTTP API's logs routes
    pub fn store(&self) -> &Arc<LogStore> {
        &self.store
    }

    fn pipeline(&self, process: &str, logging: &Logging) -> Arc<Pipeline> {
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((l, p)) = cache.get(process) {
            if l == logging {
                return p.clone();
            }
        }
        let p = match Pipeline::compile(process, logging) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                // Validation compiles every regex, so this is unreachable
                // from a loaded config; still, never lose the output.
                log::error!("{process}: logging.{e}; printing its lines unprocessed");
                Arc::new(Pipeline::plain(process, logging.max_line_bytes))
            }
        };
        // Names a reload renamed away (processes, hooks) are never asked
        // for again: a cap keeps them from piling up, and a process still
        // running only has its pipeline compiled again at its next start.
        if cache.len() >= COMPILED_MAX {
            cache.clear();
        }
        cache.insert(process.to_string(), (logging.clone(), p.clone()));
        p
    }

    /// Hand a child's pipe to the thread. `done` is dropped once the pipe
    /// has closed and its last line has been written.
    pub fn attach(
        &self,
        fd: OwnedFd,
        id: &Identity,
        stream: Stream,
        logging: &Logging,
        done: Sender<()>,
    ) {
        let pipeline = self.pipeline(&id.process, logging);
        let source = mux::Source::new(fd, id, stream, pipeline, done);
        if self.tx.send(Msg::Attach(source)).is_ok() {
            self.wake();
        }
    }

    /// Reopen every log file (SIGUSR1, `ctl logs --reopen`): sheepdog's own
    /// at once, the processes' on the output thread.
    pub fn reopen(&self) {
        crate::logging::reopen_own_file();
        if self.tx.send(Msg::Reopen).is_ok() {
            self.wake();
        }
    }

    /// Wait (up to `grace`) until every pipe has closed and its last line
    /// (and pending multiline entry) has been written. Call after every
    /// child has exited.
    pub fn finish(&self, grace: Duration) {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let deadline = Instant::now() + grace;
        if self.tx.send(Msg::Finish(deadline, done_tx)).is_ok() {
            self.wake();
            let _ = done_rx.recv_deadline(deadline + Duration::from_millis(200));
        }
    }

    fn wake(&self) {
        // EAGAIN means the pipe already holds wake-ups: fine.
        let _ = nix::unistd::write(&self.wake, &[1]);
    }
}

/// Before anything starts: every log file's directory must exist, no log
/// or readiness file be a directory, and no process's log file be
/// `global.log_file`; the API's token file must hold a
/// token and its socket's directory exist. (The readiness file's directory
/// may come later: a pre_start hook may make it.) Errors name the key.
/// `own_log`: check `global.log_file`'s directory too (`run` has its
/// writer thread check it, as that may hang on a hung mount).
pub fn check_files(cfg: &Config, own_log: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(path) = cfg.global.extra.log_file.as_ref().filter(|_| own_log) {
        if let Err(e) = sink::check_dir(path) {
            problems.push(format!("global.log_file: {e}"));
        }
    }
    if let Some(r) = &cfg.global.extra.readiness {
        if let Err(e) = sink::not_a_directory(&r.path, "write readiness file") {
            problems.push(format!("global.readiness_file: {e}"));
        }
    }
    #[cfg(feature = "api")]
    problems.extend(crate::api::check_files(&cfg.global));
    match check_process_files(cfg, &[]) {
        Ok(()) if problems.is_empty() => Ok(()),
        Ok(()) => Err(problems.join("\n")),
        Err(e) => {
            problems.push(e);
            Err(problems.join("\n"))
        }
    }
}

/// `check_files` for the processes' log files only: what a reload applies
/// (the global files are opened once, at start). A reload passes the
/// processes it runs now (`before`): one the new file leaves as it is is
/// not checked, since the reload changes nothing for it (its files are
/// checked again as each one opens). So a child that deletes or relinks
/// its own log directory cannot block the reload of every other process.
pub fn check_process_files(cfg: &Config, before: &[config::Process]) -> Result<(), String> {
    use crate::config::extra::StreamMode;
    let mut problems = Vec::new();
    for p in cfg.enabled().filter(|p| !before.contains(p)) {
        let l = &p.extra.logging;
        let Some(f) = &l.file else { continue };
        if l.stdout != StreamMode::Log && l.stderr != StreamMode::Log {
            continue;
        }
        for index in 1..=p.scale.max(1) {
            let path = sink::expand(&f.path, &p.name, &format!("{}-{index}", p.name));
            let e = match sink::check_dir(&path) {
                Err(e) => e,
                // Each has its own writer, which rotates it: sheepdog's
                // records would go on into a file the other rotated away.
                // (Path equality ignores `.` and repeated slashes.)
                Ok(()) if cfg.global.extra.log_file.as_ref() == Some(&path) => {
                    "the same file as global.log_file; expected a file of its own".into()
                }
                Ok(()) => continue,
            };
            let key = config::process_key(&p.name, "logging.file.path");
            problems.push(format!("{key}: {e}"));
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::extra::{Multiline, RedactionPattern};
    use buffer::Followed;

    #[test]
    fn pipes_reach_the_store_redacted_with_timer_flushes_and_followers() {
        let store = Arc::new(LogStore::new(100));
        let (out, thread) = Output::start(store.clone()).unwrap();
        let sub = store.subscribe(Some("api"), None, 16).unwrap();
        let l = Logging {
            redaction: vec![RedactionPattern {
                name: "token".into(),
                pattern: r"token=\w+".into(),
                replacement: "token=***".into(),
            }],
            multiline: Some(Multiline {
                pattern: "^S".into(),
                max_lines: 10,
                timeout: Duration::from_millis(100),
            }),
            ..Logging::default()
        };
        let (r, w) = nix::unistd::pipe().unwrap();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        out.attach(r, &Identity::new("api", 1), Stream::Stderr, &l, done_tx);
        nix::unistd::write(&w, b"S token=abc\n  more\n").unwrap();
        // The entry is pending with the pipe still open: only its timeout
        // can flush it.
        let got = sub.rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let Followed::Record(rec) = got else {
            panic!("{got:?}")
        };
        assert_eq!(rec.msg, "S token=***\n  more");
        assert_eq!(rec.instance.as_deref(), Some("api-1"));
        assert_eq!(rec.stream, Some(Stream::Stderr));
        nix::unistd::write(&w, b"S partial, no newline").unwrap();
        drop(w);
        // Disconnected once the pipe is closed and its last line written.
        assert!(matches!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
        assert_eq!(store.recent(Some("api"), None, 10).len(), 2);
        out.finish(Duration::from_secs(10));
        let msgs: Vec<String> = store
            .recent(Some("api-1"), Some(Stream::Stderr), 10)
            .iter()
            .map(|r| r.msg.clone())
            .collect();
        assert_eq!(msgs, ["S token=***\n  more", "S partial, no newline"]);
        assert!(store
            .recent(Some("api"), Some(Stream::Stdout), 10)
            .is_empty());
        thread.join().unwrap();
    }

    #[test]
    fn compiled_pipelines_are_reused_and_bounded() {
        let (out, thread) = Output::start(Arc::new(LogStore::new(10))).unwrap();
        let l = Logging::default();
        let first = out.pipeline("web", &l);
        assert!(Arc::ptr_eq(&first, &out.pipeline("web", &l)));
        // Names a series of reloads renamed away.
        for i in 0..3 * COMPILED_MAX {
            out.pipeline(&format!("renamed-{i}"), &l);
        }
        let kept = out.compiled.lock().map(|c| c.len()).unwrap_or(usize::MAX);
        assert!(kept <= COMPILED_MAX, "{kept}");
        out.finish(Duration::from_secs(10));
        thread.join().unwrap();
    }
}
