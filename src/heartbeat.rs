//! Heartbeats (dead-man's switch pings, healthchecks.io style): worker
//! threads send an HTTP ping when a scheduled or oneshot run starts
//! (`ping_start`), succeeds or fails, and every `heartbeat.interval` while
//! a longrun process is running and healthy. Results go back to the
//! supervisor, which counts them for metrics.
//!
//! Invariants:
//! - Never on anyone's critical path: the supervisor only `try_send`s to a
//!   bounded queue (`QUEUE` messages). When it is full the ping is dropped
//!   there, logged and counted as a failure; nothing ever blocks on the
//!   worker or on an endpoint.
//! - One slow endpoint holds up few others: the processes are dealt to at
//!   most `WORKERS` workers, each with its own queue, so with up to
//!   `WORKERS` processes each has a worker of its own.
//! - A monitor never ends up with a state older than the newest ping
//!   sheepdog sent or tried: a process's pings are attempted in the order
//!   they were queued, and one waiting for its retry holds back the newer
//!   ones (`Worker::pending`). Newer news makes it stale instead of leaving a
//!   backlog: an end-of-run or interval ping supersedes every ping of its
//!   process still waiting, a start ping an older start ping. The newer
//!   ping takes over the superseded one's retry schedule (its attempts and
//!   the time of its next one), so a dead endpoint is not hammered and its
//!   pings still fail for good, and count, after `retries`. So a process
//!   has at most two pings waiting: an end-of-run (or interval) ping and
//!   the start ping of the run after it.
//! - Every wait is bounded: each attempt by `heartbeat.timeout`; retries
//!   (`heartbeat.retries`, after `retry_delay` doubling per attempt, at
//!   most `MAX_BACKOFF`) wait on the worker's own deadline, not in a
//!   sleep, so a stop is seen at once.
//! - On shutdown or a reload the workers get `FLUSH_GRACE`, from when they
//!   see the stop (after the attempt in progress, if any), to send what is
//!   queued and pending (one attempt each, in order, cut to the time left),
//!   and then stop; at shutdown the supervisor waits for them no longer
//!   than `FLUSH_GRACE`. Workers that replace them after a reload send
//!   nothing before the old ones have ended (a wait bounded by the
//!   attempts in progress, `heartbeat.timeout` each, plus `FLUSH_GRACE`),
//!   so a reload keeps a process's pings in order too.
//! - No polling: the worker blocks on its inbox with one deadline, the
//!   earliest pending retry or interval ping. With no retry pending and no
//!   healthy process having an `interval`, it has no deadline at all and
//!   makes no wake-ups. Interval pings follow the supervisor's `Alive`
//!   messages (sent only on a change), never a probe of its own.
//! - sheepdog's own shortage (no socket or lookup thread to spare:
//!   EMFILE, ENFILE, EAGAIN, ENOMEM) is not an attempt: the ping waits
//!   `instance::shortage_backoff` (on the same deadline) and goes when it
//!   passes, warned once per streak (`Worker::short`).
//! - Only a 2xx answer is a success, and only 408, 429, 500 and 502–504 are
//!   retried (`transient`). No redirects are followed; there is no
//!   TLS: an `https://` URL fails every ping at once with an error saying
//!   so, without retries (`http_client`).
//! - A ping URL is a credential (anyone who has it can ping, and silence
//!   the alert): logs and errors name only its origin, `http://host/…`
//!   (`origin`). The process and the kind of ping say which one it was.
//! - A failure ping's body is bounded (`BODY_MAX`): the exit status plus
//!   the run's last output lines (`tail`), read from the `LogStore`, which
//!   holds them already redacted and filtered as printed.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select_biased, Receiver, Sender, TrySendError};

use crate::config::extra::Heartbeat;
use crate::config::format_duration;
use crate::logging::{Record, Stream};
use crate::output::buffer::LogStore;
use crate::sorted_map::SortedMap;

/// Messages a worker's queue holds.
pub const QUEUE: usize = 256;
/// Most worker threads: pings are sent one at a time per worker.
pub const WORKERS: usize = 4;
/// The longest wait between two attempts of one ping.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long the worker may keep sending after shutdown asks it to stop.
pub const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// Largest body of a ping.
pub const BODY_MAX: usize = 4096;
/// Output lines of a failed run sent with its failure ping.
pub const OUTPUT_LINES: usize = 20;
/// Of those, the last stderr lines always sent (they usually hold the
/// error), wherever the two pipes' reads put them.
pub const ERR_LINES: usize = OUTPUT_LINES / 2;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run began (`start_url`, or `url` + `/start`).
    Start,
    /// A run succeeded (`success_url`, or `url`).
    Success,
    /// A run failed (`failure_url`, or `url` + `/fail`).
    Failure,
    /// A longrun is alive (`success_url`, or `url`).
    Interval,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Success => "success",
            Kind::Failure => "failure",
            Kind::Interval => "interval",
        }
    }
}

/// What the supervisor tells the worker.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Send one ping for `process` with `hb`'s settings. `detail` starts
    /// the body (`exit_code=1`); `instance` names the run an end-of-run ping
    /// is about (`backup#12`, `once-1`): for logs, and whose output a
    /// failure ping carries. The settings come with the ping: a run's end
    /// goes where its start went, whatever a reload did meanwhile.
    Ping {
        process: Arc<str>,
        kind: Kind,
        detail: String,
        instance: Option<String>,
        hb: Box<Heartbeat>,
    },
    /// `process` is now running and healthy (or no longer): interval pings
    /// start (at once) or stop.
    Alive { process: Arc<str>, alive: bool },
}

/// How one ping ended (after its retries), for the supervisor's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub process: Arc<str>,
    pub ok: bool,
}

/// The supervisor's side of the workers.
pub struct Handle {
    /// Each worker's queue.
    queues: Vec<Sender<Msg>>,
    /// Which queue a process's pings go to.
    route: SortedMap<Arc<str>, usize>,
    /// Dropped to stop every worker.
    stop: Option<Sender<()>>,
    /// Disconnected when every worker has returned.
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Handle {
    /// Queue `msg` without blocking; the message back when the queue is
    /// full (or the worker is gone). A process with no heartbeat here (a
    /// reload removed it, its run goes on) goes to the first worker.
    pub fn try_send(&self, msg: Msg) -> Result<(), TrySendError<Msg>> {
        let process = match &msg {
            Msg::Ping { process, .. } | Msg::Alive { process, .. } => process,
        };
        match self
            .queues
            .get(self.route.get(process).copied().unwrap_or(0))
        {
            Some(tx) => tx.try_send(msg),
            None => Err(TrySendError::Disconnected(msg)),
        }
    }

    /// Ask the worker to flush what is queued (within `FLUSH_GRACE`) and
    /// stop.
    pub fn stop(&mut self) {
        self.stop.take();
    }

    /// Disconnected when every worker has returned: what the workers that
    /// replace these wait for (`start`'s `after`). Those waited for the
    /// ones before, so waiting for the last workers is enough.
    pub fn done(&self) -> Receiver<()> {
        self.done.clone()
    }

    /// Whether every worker has returned.
    pub fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Wait for the workers until `deadline` at most; join those that
    /// ended.
    pub fn wait(mut self, deadline: Instant) {
        self.stop();
        // No worker sends on `done`: this returns when every one has
        // dropped its end (returned) or at the deadline.
        let _ = self.done.recv_deadline(deadline);
        let (ended, going): (Vec<_>, Vec<_>) =
            self.threads.drain(..).partition(JoinHandle::is_finished);
        for t in ended {
            let _ = t.join();
        }
        if !going.is_empty() {
            log::warn!("heartbeat pings still being sent at exit; abandoning them");
        }
    }
}

/// Start the workers for `configs` (process name → its heartbeat): the
/// processes, in name order, dealt round-robin to at most `WORKERS`. They
/// send nothing until the workers they replace, whose `Handle::done` is
/// `after`, have ended (those were told to stop already: they end within
/// their attempt in progress and `FLUSH_GRACE`).
pub fn start(
    configs: SortedMap<Arc<str>, Heartbeat>,
    store: Arc<LogStore>,
    results: Sender<Outcome>,
    after: Option<Receiver<()>>,
) -> io::Result<Handle> {
    let n = configs.len().clamp(1, WORKERS);
    let route: SortedMap<Arc<str>, usize> =
        SortedMap::from_iter(configs.keys().enumerate().map(|(i, p)| (p.clone(), i % n)));
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let mut handle = Handle {
        queues: Vec::new(),
        route,
        stop: Some(stop_tx),
        done: done_rx,
        threads: Vec::new(),
    };
    for i in 0..n {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let mine = SortedMap::from_iter(
            configs
                .iter()
                .filter(|(p, _)| handle.route.get(*p) == Some(&i))
                .map(|(p, hb)| (p.clone(), hb.clone())),
        );
        let worker = Worker {
            rx,
            stop: stop_rx.clone(),
            results: results.clone(),
            configs: mine,
            store: store.clone(),
            pending: Vec::new(),
            due: SortedMap::default(),
            short: 0,
        };
        let after = after.clone();
        let done = done_tx.clone();
        // On an error the workers already started stop with `handle`,
        // whose stop sender goes with it.
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{}", i + 1))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _done = done;
                if let Some(old) = after {
                    // Never sent on: returns when the old workers are gone,
                    // a bounded wait (see `start`).
                    let _ = old.recv();
                }
                worker.run();
            })?;
        handle.queues.push(tx);
        handle.threads.push(thread);
    }
    Ok(handle)
}

/// The URL `kind` pings, if the config has one for it.
pub fn url_for(hb: &Heartbeat, kind: Kind) -> Option<String> {
    let (explicit, suffix) = match kind {
        Kind::Start => (&hb.start_url, Some("start")),
        Kind::Success | Kind::Interval => (&hb.success_url, None),
        Kind::Failure => (&hb.failure_url, Some("fail")),
    };
    if let Some(u) = explicit {
        return Some(u.clone());
    }
    let base = hb.url.as_deref()?;
    let Some(suffix) = suffix else {
        return Some(base.to_string());
    };
    // `/fail` goes on the path, before any query string.
    let (path, query) = match base.find(['?', '#']) {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    Some(format!("{}/{suffix}{query}", path.trim_end_matches('/')))
}

/// The wait before attempt `attempt` + 1 (0 = after the first failed one).
pub fn backoff(delay: Duration, attempt: u32) -> Duration {
    delay
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// `detail`, then a blank line and the `tail` of a run's output when
/// there is some; the whole at most `BODY_MAX` bytes (the end of the output
/// is what is kept).
pub fn body(detail: &str, out: &[Arc<Record>], err: &[Arc<Record>]) -> String {
    let mut text = detail.to_string();
    let room = BODY_MAX.saturating_sub(text.len() + 2);
    let lines = tail(out, err, room);
    if !lines.is_empty() {
        text.push_str("\n\n");
        text.push_str(&cut_front(lines.join("\n"), room));
    }
    cut_front(text, BODY_MAX)
}

/// The lines a failure body carries, oldest first: from a run's last
/// stdout (`out`) and stderr (`err`) lines, each oldest first, merged in
/// the order sheepdog read them (`Record::seq`), the last `ERR_LINES`
/// stderr lines always, and the most recent others while they fit in
/// `room` bytes, `OUTPUT_LINES` in all. stdout and stderr are separate
/// pipes, so sheepdog may read a stderr line before stdout lines printed
/// ahead of it: the last `OUTPUT_LINES` alone could leave out the error.
pub fn tail<'a>(out: &'a [Arc<Record>], err: &'a [Arc<Record>], room: usize) -> Vec<&'a str> {
    let must = err.len().saturating_sub(ERR_LINES);
    let mut bytes: usize = err[must..].iter().map(|r| r.msg.len() + 1).sum();
    let mut others = OUTPUT_LINES - (err.len() - must);
    let (mut o, mut e) = (out.len(), err.len());
    let mut kept = Vec::new();
    // Newest first.
    while o + e > 0 {
        let from_err = o == 0 || e > 0 && err[e - 1].seq > out[o - 1].seq;
        let line = if from_err {
            e -= 1;
            &err[e].msg
        } else {
            o -= 1;
            &out[o].msg
        };
        if from_err && e >= must {
            kept.push(line.as_str());
        } else if others > 0 && bytes + line.len() < room {
            others -= 1;
            bytes += line.len() + 1;
            kept.push(line.as_str());
        } else {
            // The lines kept stay the run's last ones: none past a gap.
            others = 0;
        }
    }
    kept.reverse();
    kept
}

/// The last `max` bytes of `s` at most, on a character boundary.
fn cut_front(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// One attempt: the status of a 2xx answer, or why not.
pub fn send(hb: &Heartbeat, url: &str, body: &str, timeout: Duration) -> Result<u16, Failed> {
    let method = hb.method.as_str();
    let (reason, again) = match request(hb, method, url, body, timeout) {
        Ok(status) if (200..300).contains(&status) => return Ok(status),
        Ok(status) if transient(status) => (format!("status {status}, expected 2xx"), Again::Retry),
        Ok(status) => (format!("status {status}, expected 2xx"), Again::Never),
        Err(e) => e,
    };
    Err(Failed {
        error: format!("{method} {}: {reason}", origin(url)),
        again,
    })
}

/// Whether an answer other than 2xx may change if the ping is sent again
/// (what curl's `--retry` retries): a timeout, a rate limit, a server or
/// gateway error. A redirect (never followed), a refusal (401, 403), an
/// unknown check (404) or a bad request answer the same every time, so
/// retrying them only holds back the process's later pings.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The request itself: the answer's status, or why there is none and
/// whether another attempt may help.
#[cfg(feature = "http")]
fn request(
    hb: &Heartbeat,
    method: &str,
    url: &str,
    body: &str,
    timeout: Duration,
) -> Result<u16, (String, Again)> {
    use crate::http_client::{self, Error, Proxy, Request};
    let headers: Vec<(&str, &str)> = hb
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = Request {
        method,
        url,
        headers: &headers,
        body: (method == "POST").then_some(body),
        timeout,
        redirects: 0,
        proxy: Proxy::FromEnv,
        what: "heartbeat",
    };
    http_client::send(&req).map_err(|e| match e {
        Error::TimedOut => (
            format!("timed out after {}", format_duration(timeout)),
            Again::Retry,
        ),
        Error::Failed {
            reason,
            permanent: true,
        } => (reason, Again::Never),
        Error::Failed { reason, .. } => (reason, Again::Retry),
        // sheepdog's own shortage: worth another try once it passes.
        Error::Unable(reason) => (reason, Again::Shortage),
    })
}

/// Without the `http` feature no heartbeat is configured (refused at load).
#[cfg(not(feature = "http"))]
fn request(_: &Heartbeat, _: &str, _: &str, _: &str, _: Duration) -> Result<u16, (String, Again)> {
    Err((
        "this build has no HTTP client (cargo feature `http`)".into(),
        Again::Never,
    ))
}

/// `url` as logs show it: scheme and authority, with `/…` for whatever
/// followed (the path and query hold the check's token or key). URLs with
/// credentials in them are refused at load, so the authority is only
/// host and port.
pub fn origin(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let rest = &url[end..];
    if rest.is_empty() || rest == "/" {
        url.to_string()
    } else {
        format!("{}/…", &url[..end])
    }
}

/// Why an attempt failed, and whether another may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub error: String,
    pub again: Again,
}

/// What a failed attempt says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// The answer may change (a timeout, a 503): retried, as one of the
    /// ping's `retries`.
    Retry,
    /// The same every time (a 404, an `https://` URL): not retried.
    Never,
    /// sheepdog had no descriptor or thread to spare (EMFILE, ENFILE,
    /// EAGAIN, ENOMEM): not the endpoint's failure, nor one of its attempts.
    Shortage,
}

/// One ping being sent.
#[derive(Debug, Clone)]
struct Job {
    process: Arc<str>,
    kind: Kind,
    /// The run an end-of-run ping is about (`backup#12`), for logs; empty
    /// for the others.
    run: String,
    hb: Box<Heartbeat>,
    url: String,
    body: String,
    /// Attempts made so far.
    attempts: u32,
    /// When the next attempt may go.
    at: Instant,
}

impl Job {
    /// Whether `self`, queued after `older`, makes it stale: an end-of-run
    /// or interval ping says the latest state, so everything before it is
    /// old news; a start ping replaces only an older start.
    fn supersedes(&self, older: &Job) -> bool {
        self.kind != Kind::Start || older.kind == Kind::Start
    }
}

/// Whether `pending[i]` is the first of its process's pings waiting: the
/// one to attempt next.
fn first(pending: &[Job], i: usize) -> bool {
    !pending[..i].iter().any(|o| o.process == pending[i].process)
}

struct Worker {
    rx: Receiver<Msg>,
    stop: Receiver<()>,
    results: Sender<Outcome>,
    configs: SortedMap<Arc<str>, Heartbeat>,
    store: Arc<LogStore>,
    /// Pings not sent yet, oldest first. Only a process's first one is
    /// attempted, at its `at`; its others wait behind it (`queue`: two at
    /// most).
    pending: Vec<Job>,
    /// Healthy processes with an interval: when their next ping is due.
    due: SortedMap<Arc<str>, Instant>,
    /// Attempts in a row that sheepdog's own shortage prevented, for
    /// their backoff and to warn once per streak.
    short: u32,
}

impl Worker {
    fn run(mut self) {
        loop {
            self.fire_due(Instant::now());
            let next = (0..self.pending.len())
                .filter(|&i| first(&self.pending, i))
                .map(|i| self.pending[i].at)
                .chain(self.due.values().copied())
                .min();
            let timer = match next {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            // Biased: a stop goes first, so that what follows it is only
            // the flush, within its grace (a reload's new workers wait).
            select_biased! {
                // A message or the sender dropped: either way, stop.
                recv(self.stop) -> _ => break,
                recv(self.rx) -> m => match m {
                    Ok(msg) => self.on_msg(msg),
                    Err(_) => break,
                },
                recv(timer) -> _ => {}
            }
        }
        self.flush(Instant::now() + FLUSH_GRACE);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Ping {
                process,
                kind,
                detail,
                instance,
                hb,
            } => {
                if let Some(job) = self.job(process, kind, &detail, instance, hb) {
                    self.queue(job);
                }
            }
            Msg::Alive { process, alive } => {
                let has_interval = self
                    .configs
                    .get(&process)
                    .is_some_and(|hb| hb.interval.is_some());
                match (alive, has_interval) {
                    (true, true) => {
                        self.due.get_or_insert_with(process, Instant::now);
                    }
                    (false, _) => {
                        // An interval ping still waiting goes with it
                        // (`fire_due`).
                        self.due.remove(&process);
                    }
                    (true, false) => {}
                }
            }
        }
    }

    /// The ping to send, when `hb` has a URL for `kind`.
    fn job(
        &self,
        process: Arc<str>,
        kind: Kind,
        detail: &str,
        instance: Option<String>,
        hb: Box<Heartbeat>,
    ) -> Option<Job> {
        let Some(url) = url_for(&hb, kind) else {
            log::debug!(
                "{process}: no heartbeat URL for a {} ping; not sending one",
                kind.as_str()
            );
            return None;
        };
        let run = instance.unwrap_or_default();
        // Only the child's lines: sheepdog's own records about the run
        // have no stream.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if kind == Kind::Failure && !run.is_empty() {
            out = self
                .store
                .recent(Some(&run), Some(Stream::Stdout), OUTPUT_LINES);
            err = self
                .store
                .recent(Some(&run), Some(Stream::Stderr), OUTPUT_LINES);
        }
        Some(Job {
            body: body(detail, &out, &err),
            process,
            kind,
            run,
            hb,
            url,
            attempts: 0,
            at: Instant::now(),
        })
    }

    /// Queue `job` behind its process's pending pings, dropping those it
    /// supersedes. When the first of them (the one waiting for its retry)
    /// goes, `job` takes over its schedule: a newer ping goes no sooner
    /// than the retry it replaces, and has only the attempts left.
    fn queue(&mut self, mut job: Job) {
        let (mut first, mut i) = (true, 0);
        while let Some(old) = self.pending.get(i) {
            if old.process != job.process || !job.supersedes(old) {
                first &= old.process != job.process;
                i += 1;
                continue;
            }
            let old = self.pending.remove(i);
            if first {
                (job.at, job.attempts, first) = (old.at, old.attempts, false);
            }
            // Only end-of-run pings are news worth a line (a start ping
            // says a run began, an interval ping that it is alive).
            if !old.run.is_empty() {
                log::info!(
                    "{}: heartbeat {} ping of {} superseded by the {} ping of {}; not sending it",
                    old.process,
                    old.kind.as_str(),
                    old.run,
                    job.kind.as_str(),
                    job.run
                );
            }
        }
        self.pending.push(job);
    }

    /// Interval pings and retries due at `now`.
    fn fire_due(&mut self, now: Instant) {
        let due: Vec<Arc<str>> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for process in due {
            let Some((hb, interval)) = self
                .configs
                .get(&process)
                .and_then(|hb| Some((hb, hb.interval?)))
            else {
                self.due.remove(&process);
                continue;
            };
            let hb = Box::new(hb.clone());
            if let Some(at) = self.due.get_mut(&process) {
                // A late wake-up sends one ping, never a burst.
                let next = *at + interval;
                *at = if next <= now { now + interval } else { next };
            }
            if let Some(job) = self.job(process, Kind::Interval, "", None, hb) {
                self.queue(job);
            }
        }
        let mut i = 0;
        while i < self.pending.len() {
            if !first(&self.pending, i) || self.pending[i].at > now {
                i += 1;
                continue;
            }
            // Sent or given up: whatever waited behind it is now first,
            // at `i` or later.
            let job = self.pending.remove(i);
            // A longrun no longer healthy: a retry would say it is alive.
            if job.kind == Kind::Interval && !self.due.contains_key(&job.process) {
                continue;
            }
            if let Some(again) = self.attempt(job, None) {
                self.pending.insert(i, again);
                i += 1;
            }
        }
    }

    /// Send `job` once. On failure, the job to retry (with its next
    /// attempt's time), unless it has none left or `until` (the flush
    /// deadline) is set.
    fn attempt(&mut self, mut job: Job, until: Option<Instant>) -> Option<Job> {
        let hb = &*job.hb;
        let mut timeout = hb.timeout;
        if let Some(end) = until {
            timeout = timeout.min(end.saturating_duration_since(Instant::now()));
            if timeout.is_zero() {
                self.failed(&job, "sheepdog is exiting; no time left to send it");
                return None;
            }
        }
        job.attempts += 1;
        // `request` sends the body only with POST.
        let sent = send(hb, &job.url, &job.body, timeout);
        let short = std::mem::replace(&mut self.short, 0);
        match sent {
            // No socket or thread to spare: sheepdog's shortage, not the
            // endpoint's failure, so not one of the ping's attempts; tried
            // again after 1 s, doubling up to 30 s (as an instance's start
            // is), for as long as it lasts. Said once per streak.
            Err(f) if f.again == Again::Shortage && until.is_none() => {
                job.attempts -= 1;
                let wait = crate::instance::shortage_backoff(short);
                self.short = short.saturating_add(1);
                let level = if short == 0 {
                    log::Level::Warn
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "{}: heartbeat {} ping not sent: {}; sheepdog is short of resources, \
                     which does not count against the ping; trying again in {}",
                    job.process,
                    job.kind.as_str(),
                    f.error,
                    format_duration(wait)
                );
                job.at = Instant::now() + wait;
                Some(job)
            }
            Ok(status) => {
                log::debug!(
                    "{}: heartbeat {} ping sent ({} answered {status})",
                    job.process,
                    job.kind.as_str(),
                    origin(&job.url)
                );
                let _ = self.results.send(Outcome {
                    process: job.process,
                    ok: true,
                });
                None
            }
            Err(f) if f.again == Again::Never || job.attempts > hb.retries || until.is_some() => {
                let why = format!("{} (attempt {})", f.error, job.attempts);
                self.failed(&job, &why);
                None
            }
            Err(f) => {
                let wait = backoff(hb.retry_delay, job.attempts - 1);
                log::info!(
                    "{}: heartbeat {} ping attempt {} failed: {}; retrying in {}",
                    job.process,
                    job.kind.as_str(),
                    job.attempts,
                    f.error,
                    format_duration(wait)
                );
                job.at = Instant::now() + wait;
                Some(job)
            }
        }
    }

    fn failed(&self, job: &Job, why: &str) {
        log::warn!(
            "{}: heartbeat {} ping failed: {why}",
            job.process,
            job.kind.as_str()
        );
        let _ = self.results.send(Outcome {
            process: job.process.clone(),
            ok: false,
        });
    }

    /// Shutdown: one attempt for each queued ping and pending retry, each
    /// process's in order, as long as time is left before `until`.
    fn flush(mut self, until: Instant) {
        self.due.clear();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Ping {
                process,
                kind,
                detail,
                instance,
                hb,
            } = msg
            {
                if let Some(job) = self.job(process, kind, &detail, instance, hb) {
                    self.queue(job);
                }
            }
        }
        for job in std::mem::take(&mut self.pending) {
            self.attempt(job, Some(until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(url: Option<&str>) -> Heartbeat {
        Heartbeat {
            url: url.map(String::from),
            success_url: None,
            failure_url: None,
            start_url: None,
            ping_start: false,
            method: "POST".into(),
            headers: Default::default(),
            timeout: Duration::from_secs(1),
            retries: 3,
            retry_delay: Duration::from_millis(100),
            interval: None,
        }
    }

    #[test]
    fn urls_follow_healthchecks_rules() {
        let h = hb(Some("http://hc/ping/abc"));
        assert_eq!(
            url_for(&h, Kind::Start).as_deref(),
            Some("http://hc/ping/abc/start")
        );
        assert_eq!(
            url_for(&h, Kind::Success).as_deref(),
            Some("http://hc/ping/abc")
        );
        assert_eq!(
            url_for(&h, Kind::Interval).as_deref(),
            Some("http://hc/ping/abc")
        );
        assert_eq!(
            url_for(&h, Kind::Failure).as_deref(),
            Some("http://hc/ping/abc/fail")
        );
        let q = hb(Some("http://hc/ping/abc/?create=1"));
        assert_eq!(
            url_for(&q, Kind::Failure).as_deref(),
            Some("http://hc/ping/abc/fail?create=1")
        );
        let mut e = hb(Some("http://hc/x"));
        e.failure_url = Some("http://other/bad".into());
        e.success_url = Some("http://other/good".into());
        e.start_url = Some("http://other/go".into());
        assert_eq!(
            url_for(&e, Kind::Failure).as_deref(),
            Some("http://other/bad")
        );
        assert_eq!(
            url_for(&e, Kind::Success).as_deref(),
            Some("http://other/good")
        );
        assert_eq!(url_for(&e, Kind::Start).as_deref(), Some("http://other/go"));
        let mut only = hb(None);
        only.failure_url = Some("http://other/bad".into());
        assert_eq!(url_for(&only, Kind::Success), None);
        assert_eq!(url_for(&only, Kind::Start), None);
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let d = Duration::from_secs(5);
        assert_eq!(backoff(d, 0), Duration::from_secs(5));
        assert_eq!(backoff(d, 1), Duration::from_secs(10));
        assert_eq!(backoff(d, 3), Duration::from_secs(40));
        assert_eq!(backoff(d, 4), MAX_BACKOFF);
        assert_eq!(backoff(d, 99), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    /// Records of `lines` (`true`: stderr), numbered in their order, split
    /// by stream.
    fn read(lines: &[(bool, &str)]) -> [Vec<Arc<Record>>; 2] {
        let mut split = [Vec::new(), Vec::new()];
        for (seq, (err, line)) in lines.iter().enumerate() {
            let mut r = Record::new(crate::config::LogLevel::Info, "p".into(), line.to_string());
            r.seq = seq as u64 + 1;
            r.stream = Some(if *err { Stream::Stderr } else { Stream::Stdout });
            split[usize::from(*err)].push(Arc::new(r));
        }
        split
    }

    #[test]
    fn bodies_are_bounded_and_keep_the_end() {
        assert_eq!(body("exit_code=1", &[], &[]), "exit_code=1");
        let [out, err] = read(&[(false, "a"), (true, "b"), (false, "c")]);
        assert_eq!(body("exit_code=2", &out, &err), "exit_code=2\n\na\nb\nc");
        let long: Vec<String> = (0..1000).map(|i| format!("line {i} é")).collect();
        let long: Vec<(bool, &str)> = long.iter().map(|l| (false, l.as_str())).collect();
        let [out, err] = read(&long);
        let b = body("signal=9", &out, &err);
        assert!(b.len() <= BODY_MAX, "{}", b.len());
        assert!(b.starts_with("signal=9\n\n"), "{}", &b[..20]);
        assert!(b.ends_with("line 999 é"));
        // Lines over 4 KiB: the end of the last one.
        let huge = "é".repeat(5000);
        let [out, err] = read(&[(true, &huge)]);
        let b = body("signal=9", &out, &err);
        assert!(b.len() <= BODY_MAX && b.ends_with("éé"), "{}", b.len());
    }

    #[test]
    fn a_failure_body_keeps_the_last_stderr_lines() {
        // Regression: stderr read before the stdout lines printed ahead of
        // it fell out of the last 20 lines, and took the error with it.
        let mut lines: Vec<(bool, String)> =
            (1..=8).map(|i| (false, format!("line {i}"))).collect();
        lines.push((true, "the error".into()));
        lines.extend((9..=30).map(|i| (false, format!("line {i}"))));
        let lines: Vec<(bool, &str)> = lines.iter().map(|(e, l)| (*e, l.as_str())).collect();
        let [out, err] = read(&lines);
        let kept = tail(&out, &err, BODY_MAX);
        assert_eq!(kept.len(), OUTPUT_LINES);
        assert_eq!(kept[0], "the error", "{kept:?}");
        assert_eq!(kept[1], "line 12", "{kept:?}");
        assert_eq!(kept.last(), Some(&"line 30"));
        // Only the last ERR_LINES stderr lines are sure to stay.
        let mut many: Vec<(bool, &str)> = vec![(true, "old"); 30];
        many.extend([(false, "out"); 30]);
        let [out, err] = read(&many);
        let kept = tail(&out, &err, BODY_MAX);
        assert_eq!(kept.iter().filter(|l| **l == "old").count(), ERR_LINES);
        assert_eq!(kept.len(), OUTPUT_LINES);
        // Only stderr: its last OUTPUT_LINES.
        let [out, err] = read(&[(true, "e"); 30]);
        assert_eq!(tail(&out, &err, BODY_MAX).len(), OUTPUT_LINES);
        // Long stdout lines give way to the stderr ones, not the reverse,
        // and what is kept is the end, without gaps.
        let big = "x".repeat(1000);
        let mixed = [
            (false, "first"),
            (true, "boom"),
            (false, big.as_str()),
            (false, big.as_str()),
        ];
        let [out, err] = read(&mixed);
        assert_eq!(tail(&out, &err, 1500), ["boom", big.as_str()]);
        let b = body("exit_code=1", &out, &err);
        assert!(b.starts_with("exit_code=1\n\nfirst\nboom\nxx"), "{b}");
    }

    /// A worker for processes `a` and `b`, never started: only its queue
    /// is used.
    fn worker() -> Worker {
        let (_, rx) = crossbeam_channel::bounded(1);
        let (_, stop) = crossbeam_channel::bounded(1);
        let (results, _) = crossbeam_channel::unbounded();
        Worker {
            rx,
            stop,
            results,
            configs: SortedMap::from_iter(
                ["a", "b"].map(|p| (Arc::from(p), hb(Some("http://x/")))),
            ),
            store: Arc::new(LogStore::new(10)),
            pending: Vec::new(),
            due: SortedMap::default(),
            short: 0,
        }
    }

    #[test]
    fn a_newer_ping_takes_a_stale_ones_place_and_retry_schedule() {
        let mut w = worker();
        let ping = |w: &Worker, p: &str, kind, run: &str| {
            let run = (!run.is_empty()).then(|| run.to_string());
            w.job(Arc::from(p), kind, "", run, Box::new(hb(Some("http://x/"))))
                .unwrap()
        };
        let later = Instant::now() + Duration::from_secs(30);
        // Run 1's failure waits for its second attempt.
        let mut fail = ping(&w, "a", Kind::Failure, "a#1");
        (fail.attempts, fail.at) = (1, later);
        w.queue(fail);
        // Run 2's start waits behind it; `b` is not held up.
        w.queue(ping(&w, "a", Kind::Start, ""));
        w.queue(ping(&w, "b", Kind::Start, ""));
        let kinds = |w: &Worker| -> Vec<(String, Kind)> {
            w.pending
                .iter()
                .map(|j| (j.process.to_string(), j.kind))
                .collect()
        };
        assert_eq!(
            kinds(&w),
            [
                ("a".into(), Kind::Failure),
                ("a".into(), Kind::Start),
                ("b".into(), Kind::Start)
            ]
        );
        assert!(first(&w.pending, 0) && !first(&w.pending, 1) && first(&w.pending, 2));
        // A newer start replaces the waiting one, behind the failure still.
        w.queue(ping(&w, "a", Kind::Start, ""));
        assert_eq!(w.pending.len(), 3);
        // Run 2's success supersedes both, and goes at the failure's retry
        // time with its attempts.
        w.queue(ping(&w, "a", Kind::Success, "a#2"));
        assert_eq!(
            kinds(&w),
            [("b".into(), Kind::Start), ("a".into(), Kind::Success)]
        );
        let ok = &w.pending[1];
        assert_eq!((ok.run.as_str(), ok.attempts, ok.at), ("a#2", 1, later));
    }

    #[test]
    fn end_of_run_pings_supersede_everything_before_them() {
        let job = |kind| Job {
            process: "p".into(),
            kind,
            run: String::new(),
            hb: Box::new(hb(None)),
            url: String::new(),
            body: String::new(),
            attempts: 0,
            at: Instant::now(),
        };
        let (start, ok, fail, alive) = (
            job(Kind::Start),
            job(Kind::Success),
            job(Kind::Failure),
            job(Kind::Interval),
        );
        for newer in [&ok, &fail] {
            for older in [&start, &ok, &fail] {
                assert!(newer.supersedes(older), "{newer:?} {older:?}");
            }
        }
        assert!(alive.supersedes(&alive));
        assert!(start.supersedes(&start));
        assert!(!start.supersedes(&ok) && !start.supersedes(&fail));
    }

    #[cfg(feature = "http")]
    #[test]
    fn https_fails_at_once_without_network() {
        let h = hb(Some("https://hc-ping.com/x"));
        let e = send(&h, "https://hc-ping.com/x", "", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.again, Again::Never);
        assert!(e.error.contains("https is not supported"), "{}", e.error);
        assert!(!e.error.contains("/x"), "the token is in: {}", e.error);
    }

    #[test]
    fn logs_show_a_ping_url_without_its_token() {
        let uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
        for (url, shown) in [
            (
                format!("http://hc.example/ping/{uuid}/fail"),
                "http://hc.example/…",
            ),
            (
                format!("http://hc.example:8000/ping/{uuid}"),
                "http://hc.example:8000/…",
            ),
            (format!("http://[::1]:9/p?key={uuid}"), "http://[::1]:9/…"),
            (
                format!("http://kuma.local?token={uuid}"),
                "http://kuma.local/…",
            ),
        ] {
            assert_eq!(origin(&url), shown);
        }
        // Nothing to hide: shown as written.
        assert_eq!(origin("http://hc.example/"), "http://hc.example/");
        assert_eq!(origin("http://hc.example"), "http://hc.example");
    }
}
