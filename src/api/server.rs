//! A small, bounded HTTP/1.x server for the management API and the metrics
//! endpoint: listeners, one I/O thread, a fixed pool of worker threads.
//!
//! Why not tiny_http's `Server`: it starts one thread per open connection
//! with no upper bound, reads heads without a size limit and has no read
//! timeout (DESIGN.md §1, research/dependencies.md), so 200 idle clients
//! cost 200 threads. Here a connection costs a descriptor and a buffer until
//! its request is complete.
//!
//! Invariants:
//! - Threads are fixed at start: one I/O thread per server, blocked in a
//!   single `poll` over the listeners and every open connection, with the
//!   earliest connection deadline as its only timeout (no deadline, no
//!   timeout: an idle server makes no syscalls); plus `workers` threads that
//!   run handlers. No thread is ever started per connection.
//! - Bounded cost per client: at most `max_connections` open connections
//!   (at the cap the oldest unfinished one of the peer holding the most is
//!   closed to admit the new one, so idle connections cannot lock others
//!   out, nor one address's flood close another's connections); a request head of at most
//!   `http::MAX_HEAD` bytes; a body of at most `max_body` bytes (413 before
//!   it is read); the whole request within `read_timeout` (408); responses
//!   written within `write_timeout`; per-peer rate limit (429) checked when
//!   the head arrives (not for urgent requests); complete requests wait in
//!   a bounded queue, and a full queue answers 503 at once. A client that
//!   closes its side mid-request is told what is missing (400).
//! - No body is read, and no `100 Continue` sent, before `Handler::admit`
//!   has accepted the head (route, method, token, whether the route takes
//!   a body): a client that may not use a route costs no body buffer.
//! - Bounded cost over all clients: bodies above `FREE_BODY` take their
//!   declared size from `body_budget` when admitted and give it back when
//!   their request is handled (or dropped); past the budget, 503 at once.
//! - Workers receive only complete requests, so a slow client never holds
//!   a worker while it sends; handlers only read snapshots or wait a bounded
//!   time for the supervisor. A client that does not read its response
//!   holds a worker for at most `write_timeout` in all (not per write).
//! - Liveness and readiness (`Handler::urgent`) have a worker of their own,
//!   so they never queue behind clients that are slow to read: their
//!   answers are small enough to fit in the socket's send buffer. Nor are
//!   they rate limited: a peer that spent its bucket on other requests
//!   (a local child sharing 127.0.0.1 with the probe) cannot make a
//!   liveness probe fail with 429. When a flood of them fills the urgent
//!   worker's queue, the I/O thread answers the overflow itself from what
//!   is known without waiting (`Handler::overflow`), not with 503.
//! - One request per connection (`Connection: close`).
//! - Listening sockets and connections are close-on-exec (std's defaults),
//!   so children never inherit them.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::http::{self, Head, Parse, Peer, Request, Response};
use super::ratelimit::{key as rate_key, RateLimit};

/// What a server does with a request.
pub trait Handler: Send + Sync + 'static {
    /// Decide from the head alone, before any of the body is read or
    /// `100 Continue` is sent: whether the route exists and takes this
    /// method, whether the client may use it (token), whether it takes a
    /// body this large. `Err` is answered at once and the connection
    /// closed, so a client that may not use a route cannot make the server
    /// buffer a body for it. Runs on the I/O thread: cheap, never blocks.
    fn admit(&self, head: &Head, peer: Peer) -> Result<(), Response>;
    /// Only requests `admit` let through reach it.
    fn handle(&self, req: &Request) -> Response;
    /// Write the body of a `streaming` response (bounded by the writes'
    /// timeout: a client that stops reading ends it).
    fn stream(&self, _req: &Request, _out: &mut dyn Write) -> std::io::Result<()> {
        Ok(())
    }
    /// A `streaming` response's head could not be written (the client
    /// left while the request waited for a worker): `stream` will not
    /// run, so give back what `handle` took for it.
    fn unstreamed(&self, _req: &Request) {}
    /// Told the status of every response sent, including the server's own
    /// early answers (400, 408, 413, 429, 431, 503) and `admit`'s.
    fn responded(&self, status: u16);
    /// A cheap request that must not wait behind slow clients (a liveness
    /// or readiness probe): it goes to the urgent worker, and neither
    /// takes from nor is refused by its peer's rate-limit bucket.
    fn urgent(&self, _method: &str, _path: &str) -> bool {
        false
    }
    /// An urgent request found the urgent worker's queue full (a flood of
    /// probes): its answer from what is known without waiting, given on
    /// the I/O thread; `None` answers 503. Cheap, never blocks.
    fn overflow(&self, _req: &Request) -> Option<Response> {
        None
    }
}

/// Per-server bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body: u64,
    /// Bytes of request bodies larger than `FREE_BODY` held at once, from
    /// their admission until their handler is done, over all connections.
    pub body_budget: u64,
    pub workers: usize,
    pub max_connections: usize,
    /// Complete requests waiting for a worker.
    pub queue: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Requests per second per peer (0 = off) and burst.
    pub rate: u32,
    pub burst: u32,
}

/// How long a rejected connection's remaining input is read and discarded
/// after the answer, so that closing does not reset the connection before
/// the client has read it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// Bytes read from one connection per poll round.
const CHUNK: usize = 16 * 1024;
/// A body up to this size needs nothing from `Limits::body_budget`: at
/// most `max_connections` of them (1 MiB at 64) exist at once anyway.
const FREE_BODY: u64 = CHUNK as u64;
/// Connections accepted per listener per poll round.
const ACCEPT_BURST: usize = 64;
/// Pause after an accept error (EMFILE...), so a listener that stays
/// readable cannot spin the thread.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one accept-error warning this often.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind `listen:port` (`listen` is an IP address or `localhost`).
    /// `key` names the config key in errors.
    pub fn tcp(listen: &str, port: u16, key: &str) -> Result<Listener, String> {
        let addrs: Vec<SocketAddr> = match listen.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (listen, port)
                .to_socket_addrs()
                .map_err(|e| format!("{key}: unable to resolve {listen}: {e}"))?
                .collect(),
        };
        let l = TcpListener::bind(addrs.as_slice()).map_err(|e| {
            format!(
                "{key}: unable to listen on {}: {e}",
                display_addr(listen, port)
            )
        })?;
        l.set_nonblocking(true)
            .map_err(|e| format!("{key}: unable to configure the listener: {e}"))?;
        Ok(Listener::Tcp(l))
    }

    /// Bind a unix socket at `path`, mode 0600. A stale socket (nothing
    /// accepts on it) is replaced; a live one, or anything that is not a
    /// socket (a file, a directory, a symlink), is refused.
    pub fn unix(path: &Path) -> Result<Listener, String> {
        let key = "global.api_socket";
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "{key}: {shown} is in use: something accepts connections on it (another sheepdog?)"
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("api: replacing the stale socket {shown}");
                    std::fs::remove_file(path)
                        .map_err(|e| format!("{key}: unable to remove stale {shown}: {e}"))?;
                }
                Err(e) => {
                    return Err(format!(
                        "{key}: {shown} exists and cannot be checked ({e}); refusing to replace it"
                    ))
                }
            },
            Ok(_) => {
                return Err(format!(
                    "{key}: {shown} exists and is not a socket; refusing to replace it"
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{key}: unable to inspect {shown}: {e}")),
        }
        // Created 0600 from the start: no window in which others can
        // connect. umask is process-wide, but this runs at start-up before
        // any child or other file-creating thread exists.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let l = bound.map_err(|e| format!("{key}: unable to listen on {shown}: {e}"))?;
        // Ours from here, so `remove_sockets` removes it even when start-up
        // fails below or later.
        if let Ok(m) = std::fs::symlink_metadata(path) {
            BOUND.lock().unwrap_or_else(|e| e.into_inner()).push((
                path.to_path_buf(),
                m.dev(),
                m.ino(),
            ));
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{key}: unable to set mode 0600 on {shown}: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("{key}: unable to configure the listener: {e}"))?;
        Ok(Listener::Unix(l, path.to_path_buf()))
    }

    /// What it listens on, for logs.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp".into(), |a| format!("http://{a}")),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                Ok((Stream::Tcp(s), Peer::Ip(a.ip().to_canonical())))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                let (uid, pid) = crate::sys::peer_cred(s.as_fd());
                Ok((Stream::Unix(s), Peer::Unix(uid, pid)))
            }
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

fn display_addr(listen: &str, port: u16) -> String {
    if listen.contains(':') {
        format!("[{listen}]:{port}")
    } else {
        format!("{listen}:{port}")
    }
}

/// A client connection.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A connection the I/O thread is reading a request from (or lingering on).
struct Conn {
    stream: Stream,
    peer: Peer,
    buf: Vec<u8>,
    head: Option<http::Head>,
    deadline: Instant,
    /// Accept order, for eviction.
    seq: u64,
    /// Answered already; input is read and discarded until EOF, deadline
    /// or `LINGER_BYTES`.
    lingering: bool,
    discarded: usize,
    /// The share of `Limits::body_budget` its body holds.
    reserved: Option<Reserved>,
}

/// A complete request for a worker.
struct Job {
    stream: Stream,
    req: Request,
    /// Given back when the worker is done with the request.
    _reserved: Option<Reserved>,
}

/// Bytes taken from a server's body budget, given back on drop.
struct Reserved {
    pool: Arc<AtomicU64>,
    bytes: u64,
}

impl Reserved {
    /// Take `bytes` from `pool` if that leaves it within `budget`; else
    /// say how much it holds already.
    fn take(pool: &Arc<AtomicU64>, bytes: u64, budget: u64) -> Result<Reserved, u64> {
        pool.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes).filter(|&total| total <= budget)
        })
        .map(|_| Reserved {
            pool: pool.clone(),
            bytes,
        })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Start a server: the I/O thread and `limits.workers` workers, named
/// after `name`. Returns once the threads exist.
pub fn spawn(
    name: &'static str,
    listeners: Vec<Listener>,
    limits: Limits,
    handler: Arc<dyn Handler>,
) -> Result<(), String> {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(limits.queue.max(1));
    let (urgent_tx, urgent_rx) = crossbeam_channel::bounded::<Job>(limits.queue.max(1));
    let lanes = (1..=limits.workers.max(1))
        .map(|n| (format!("{name}-worker-{n}"), rx.clone()))
        .chain([(format!("{name}-urgent"), urgent_rx)]);
    for (thread, rx) in lanes {
        let handler = handler.clone();
        let write_timeout = limits.write_timeout;
        std::thread::Builder::new()
            .name(thread)
            .stack_size(256 * 1024)
            .spawn(move || worker(rx, handler, write_timeout))
            .map_err(|e| format!("unable to start the {name} worker threads: {e}"))?;
    }
    let mut io = Io {
        name,
        listeners: listeners
            .into_iter()
            .map(|l| (l, None::<Instant>))
            .collect(),
        conns: Vec::new(),
        limiter: RateLimit::new(limits.rate, limits.burst),
        bodies: Arc::new(AtomicU64::new(0)),
        limits,
        handler,
        jobs: tx,
        urgent: urgent_tx,
        seq: 0,
        accept_errors: 0,
        accept_warned: None,
    };
    std::thread::Builder::new()
        .name(format!("{name}-io"))
        .stack_size(256 * 1024)
        .spawn(move || io.run())
        .map_err(|e| format!("unable to start the {name} I/O thread: {e}"))?;
    Ok(())
}

/// Requests workers are handling or answering, across every server, so
/// that exit can wait for them (the 202 of `POST /api/v1/shutdown` must
/// reach its client before sheepdog is gone).
static IN_FLIGHT: Mutex<usize> = Mutex::new(0);
static IDLE: Condvar = Condvar::new();

fn in_flight(delta: isize) {
    let mut n = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_add_signed(delta);
    if *n == 0 {
        IDLE.notify_all();
    }
}

/// Wait until no worker is handling a request, or `timeout` passes.
/// The unix sockets bound here, as (path, device, inode): removed at exit
/// while the path still names that very socket (not one a later sheepdog
/// bound in its place).
static BOUND: Mutex<Vec<(PathBuf, u64, u64)>> = Mutex::new(Vec::new());

/// Remove the unix sockets this process bound, so none is left behind.
pub fn remove_sockets() {
    let bound = std::mem::take(&mut *BOUND.lock().unwrap_or_else(|e| e.into_inner()));
    for (path, dev, ino) in bound {
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("api: unable to remove {}: {e}", path.display());
            }
        }
    }
}

pub fn drain(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut n = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        n = match IDLE.wait_timeout(n, left) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

fn worker(jobs: Receiver<Job>, handler: Arc<dyn Handler>, write_timeout: Duration) {
    // `_reserved` lives until the end of each round: the body's budget
    // comes back when its request has been handled and answered.
    for Job {
        mut stream,
        req,
        _reserved,
    } in jobs.iter()
    {
        in_flight(1);
        let resp = handler.handle(&req);
        handler.responded(resp.status);
        // Who changed something belongs at the default level; reads stay
        // at debug, or every probe and `ctl status` would flood the log.
        let level = match req.method.as_str() {
            "GET" | "HEAD" => log::Level::Debug,
            _ => log::Level::Info,
        };
        // A client without a token may send a 16 KiB path: the line shows
        // enough of it to tell the request, not all of it.
        let path = match req.path.char_indices().nth(120) {
            Some((at, _)) => format!("{}…", &req.path[..at]),
            None => req.path.clone(),
        };
        log::log!(
            level,
            "api: {} {path} from {} -> {}",
            req.method,
            req.peer,
            resp.status
        );
        // Blocking from here: the whole response within the write timeout.
        let _ = stream.set_nonblocking(false);
        let head_only = req.method == "HEAD";
        let deadline = Instant::now() + write_timeout;
        if let Err(e) = write_by(&mut stream, &resp.bytes(head_only, req.http11), deadline) {
            log::debug!("api: response to {} cut: {e}", req.peer);
            if resp.streaming && !head_only {
                handler.unstreamed(&req);
            }
            stream.shutdown_write();
            in_flight(-1);
            continue;
        }
        // A stream goes on as long as its client reads: each write within
        // the write timeout.
        let _ = stream.set_write_timeout(write_timeout);
        if resp.streaming && !head_only {
            let result = if req.http11 {
                let mut chunked = http::Chunked(&mut stream);
                handler
                    .stream(&req, &mut chunked)
                    .and_then(|()| chunked.finish())
            } else {
                handler.stream(&req, &mut stream)
            };
            if let Err(e) = result {
                log::debug!("api: stream to {} ended: {e}", req.peer);
            }
        }
        stream.shutdown_write();
        in_flight(-1);
    }
}

/// Write all of `bytes` by `deadline`: each write waits at most what is
/// left, so a client that takes a little at a time cannot stretch it.
fn write_by(stream: &mut Stream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(left)?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What reading from a connection led to.
enum Step {
    Keep,
    Close,
    Dispatch(Request),
}

struct Io {
    name: &'static str,
    /// Each listener with the time until which accepting is paused.
    listeners: Vec<(Listener, Option<Instant>)>,
    conns: Vec<Conn>,
    limiter: Option<RateLimit>,
    /// Bytes of `Limits::body_budget` held (by connections and jobs).
    bodies: Arc<AtomicU64>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    jobs: Sender<Job>,
    /// The urgent worker's queue (`Handler::urgent`).
    urgent: Sender<Job>,
    seq: u64,
    /// Accept errors since the last warning, and when it was given: at
    /// the fd limit they come every `ACCEPT_PAUSE`.
    accept_errors: u64,
    accept_warned: Option<Instant>,
}

impl Io {
    fn run(&mut self) {
        for (l, _) in &self.listeners {
            log::info!("{}: listening on {}", self.name, l.describe());
        }
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let now = Instant::now();
            self.expire(now);
            for (_, paused) in &mut self.listeners {
                if paused.is_some_and(|p| p <= now) {
                    *paused = None;
                }
            }
            let next = self
                .conns
                .iter()
                .map(|c| c.deadline)
                .chain(self.listeners.iter().filter_map(|(_, p)| *p))
                .min();
            let timeout = match next {
                None => PollTimeout::NONE,
                // Round up so we wake after the deadline, not just before.
                Some(d) => PollTimeout::try_from(
                    d.saturating_duration_since(now) + Duration::from_millis(1),
                )
                .unwrap_or(PollTimeout::MAX),
            };
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd> = self
                    .listeners
                    .iter()
                    .map(|(l, paused)| {
                        let ev = if paused.is_some() {
                            PollFlags::empty()
                        } else {
                            PollFlags::POLLIN
                        };
                        PollFd::new(l.as_fd(), ev)
                    })
                    .chain(
                        self.conns
                            .iter()
                            .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                    )
                    .collect();
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        // Only ENOMEM/EINVAL are possible; back off rather
                        // than spin.
                        log::error!("{}: poll failed: {e}", self.name);
                        std::thread::sleep(ACCEPT_PAUSE);
                        continue;
                    }
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            let nl = self.listeners.len();
            let now = Instant::now();
            // Descending, so swap_remove only moves already-handled entries.
            for i in (0..self.conns.len()).rev() {
                if !ready.get(nl + i).copied().unwrap_or(false) {
                    continue;
                }
                match self.step(i, &mut chunk, now) {
                    Step::Keep => {}
                    Step::Close => {
                        self.conns.swap_remove(i);
                    }
                    Step::Dispatch(req) => {
                        let c = self.conns.swap_remove(i);
                        self.dispatch(c.stream, req, c.reserved);
                    }
                }
            }
            for li in 0..nl {
                if ready.get(li).copied().unwrap_or(false) {
                    self.accept(li, now);
                }
            }
        }
    }

    /// Close connections past their deadline: 408 if a request had begun.
    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.conns.len() {
            if self.conns[i].deadline > now {
                i += 1;
                continue;
            }
            let mut c = self.conns.swap_remove(i);
            if !c.lingering && !c.buf.is_empty() {
                let msg = format!(
                    "the request was not complete within {}s",
                    self.limits.read_timeout.as_secs()
                );
                let resp = Response::error(408, &msg);
                self.handler.responded(resp.status);
                let _ = c.stream.write(&resp.to_bytes(asked_head(&c.buf)));
            }
        }
    }

    fn accept(&mut self, li: usize, now: Instant) {
        for _ in 0..ACCEPT_BURST {
            let accepted = match self.listeners.get(li) {
                Some((l, _)) => l.accept(),
                None => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.limits.max_connections {
                        self.evict_oldest();
                    }
                    self.seq += 1;
                    self.conns.push(Conn {
                        stream,
                        peer,
                        buf: Vec::new(),
                        head: None,
                        deadline: now + self.limits.read_timeout,
                        seq: self.seq,
                        lingering: false,
                        discarded: 0,
                        reserved: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: free a descriptor and pause this
                    // listener briefly instead of spinning on it.
                    self.accept_errors += 1;
                    if self
                        .accept_warned
                        .is_none_or(|t| now.saturating_duration_since(t) >= ACCEPT_WARN_EVERY)
                    {
                        log::warn!(
                            "{}: unable to accept a connection: {e} ({} time(s) since the last \
                             warning; said at most every {}s)",
                            self.name,
                            self.accept_errors,
                            ACCEPT_WARN_EVERY.as_secs()
                        );
                        self.accept_errors = 0;
                        self.accept_warned = Some(now);
                    }
                    self.evict_oldest();
                    if let Some((_, paused)) = self.listeners.get_mut(li) {
                        *paused = Some(now + ACCEPT_PAUSE);
                    }
                    return;
                }
            }
        }
    }

    /// Close a connection: a lingering one first (they are done), else
    /// the oldest of the peer holding the most, so that a client flooding
    /// the server from one address closes its own connections, not a
    /// probe's from another.
    fn evict_oldest(&mut self) {
        // At most `max_connections` (64) squared steps, once per eviction.
        let held = |p: Peer| {
            let k = rate_key(p);
            self.conns.iter().filter(|c| rate_key(c.peer) == k).count()
        };
        let victim = self
            .conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (!c.lingering, usize::MAX - held(c.peer), c.seq))
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.conns.swap_remove(i);
        }
    }

    fn step(&mut self, i: usize, chunk: &mut [u8], now: Instant) -> Step {
        let Some(c) = self.conns.get_mut(i) else {
            return Step::Close;
        };
        let n = match c.stream.read(chunk) {
            Ok(0) if c.lingering || c.buf.is_empty() => return Step::Close,
            // The client closed its side mid-request (`printf … | nc -N`
            // without the blank line, a short body): say what is missing
            // while it can still read, rather than close without a word.
            Ok(0) => {
                let msg = match &c.head {
                    Some(h) => format!(
                        "the request ended after {} of its {} body bytes (Content-Length)",
                        c.buf.len().saturating_sub(h.len),
                        h.content_length
                    ),
                    None => "the request ended before its head did; expected a blank line \
                             (CRLF CRLF) after the headers"
                        .into(),
                };
                return self.reject(i, Response::error(400, &msg), now);
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Step::Keep
            }
            Err(_) => return Step::Close,
        };
        if c.lingering {
            c.discarded += n;
            return if c.discarded >= LINGER_BYTES {
                Step::Close
            } else {
                Step::Keep
            };
        }
        let known = c.buf.len();
        c.buf.extend_from_slice(&chunk[..n]);
        if c.head.is_none() {
            match http::parse_head(&c.buf, known) {
                Parse::Partial => return Step::Keep,
                Parse::Reject(resp) => return self.reject(i, resp, now),
                Parse::Head(h) => {
                    let peer = c.peer;
                    // Health and readiness are cheap, and must answer
                    // whatever else the peer has asked.
                    let limited = !self.handler.urgent(&h.method, &h.path);
                    if let Some(rl) = self.limiter.as_mut().filter(|_| limited) {
                        if let Err(wait) = rl.check(peer, now) {
                            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                            let resp = Response::error(
                                429,
                                &format!(
                                    "rate limit exceeded for {peer}; retry in {secs}s \
                                     (global.api_rate_limit)"
                                ),
                            )
                            .with_header("Retry-After", secs.max(1).to_string());
                            return self.reject(i, resp, now);
                        }
                    }
                    if h.content_length > self.limits.max_body {
                        let msg = format!(
                            "request body of {} bytes is larger than the limit of {} bytes (api_max_request_body)",
                            h.content_length, self.limits.max_body
                        );
                        return self.reject(i, Response::error(413, &msg), now);
                    }
                    // Route, method, token, body: all decided before a
                    // byte of the body is read or 100 Continue is sent.
                    if let Err(resp) = self.handler.admit(&h, peer) {
                        return self.reject(i, resp, now);
                    }
                    let reserved = if h.content_length > FREE_BODY {
                        match Reserved::take(
                            &self.bodies,
                            h.content_length,
                            self.limits.body_budget,
                        ) {
                            Ok(r) => Some(r),
                            Err(held) => {
                                let msg = format!(
                                    "request bodies being received and handled hold {held} bytes; \
                                     {} more would pass the limit of {} bytes; retry shortly",
                                    h.content_length, self.limits.body_budget
                                );
                                let resp =
                                    Response::error(503, &msg).with_header("Retry-After", "1");
                                return self.reject(i, resp, now);
                            }
                        }
                    } else {
                        None
                    };
                    let Some(c) = self.conns.get_mut(i) else {
                        return Step::Close;
                    };
                    let total = h.len + content_len(&h);
                    // Exactly what the body needs (within its budget), not
                    // what doubling a growing buffer would take.
                    c.buf.reserve_exact(total.saturating_sub(c.buf.len()));
                    c.reserved = reserved;
                    if h.expect_continue && c.buf.len() < total {
                        let _ = c.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    c.head = Some(h);
                }
            }
        }
        let Some(c) = self.conns.get_mut(i) else {
            return Step::Close;
        };
        let Some(h) = &c.head else {
            return Step::Keep;
        };
        let total = h.len + content_len(h);
        if c.buf.len() < total {
            return Step::Keep;
        }
        let Some(h) = c.head.take() else {
            return Step::Keep;
        };
        // The body in place, without a copy: the buffer minus the head and
        // anything after the body.
        let mut body = std::mem::take(&mut c.buf);
        body.truncate(total);
        body.drain(..h.len.min(body.len()));
        Step::Dispatch(h.into_request(body, c.peer))
    }

    /// Answer from the I/O thread and linger briefly before closing.
    fn reject(&mut self, i: usize, resp: Response, now: Instant) -> Step {
        self.handler.responded(resp.status);
        let Some(c) = self.conns.get_mut(i) else {
            return Step::Close;
        };
        log::debug!("{}: {} from {}", self.name, resp.status, c.peer);
        // Small, so it fits the socket buffer in one non-blocking write.
        let _ = c.stream.write(&resp.to_bytes(asked_head(&c.buf)));
        c.stream.shutdown_write();
        c.lingering = true;
        c.buf = Vec::new();
        c.reserved = None;
        c.head = None;
        c.deadline = now + LINGER;
        Step::Keep
    }

    fn dispatch(&mut self, stream: Stream, req: Request, reserved: Option<Reserved>) {
        let urgent = self.handler.urgent(&req.method, &req.path);
        let queue = if urgent { &self.urgent } else { &self.jobs };
        let job = Job {
            stream,
            req,
            _reserved: reserved,
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(mut job) | TrySendError::Disconnected(mut job)) => {
                // A flood of probes must not fail the one that matters.
                let resp = urgent
                    .then(|| self.handler.overflow(&job.req))
                    .flatten()
                    .unwrap_or_else(|| {
                        Response::error(503, "the server is busy; retry shortly")
                            .with_header("Retry-After", "1")
                    });
                self.handler.responded(resp.status);
                let _ = job.stream.write(&resp.to_bytes(job.req.method == "HEAD"));
                job.stream.shutdown_write();
            }
        }
    }
}

/// The request (or the part of it read so far) is a `HEAD`: its answer,
/// an error too, has no body (RFC 9110 §9.3.2).
fn asked_head(buf: &[u8]) -> bool {
    buf.starts_with(b"HEAD ")
}

/// The body length as usize; `max_body` (≤ 100 MiB) was checked first.
fn content_len(h: &http::Head) -> usize {
    usize::try_from(h.content_length).unwrap_or(usize::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_budget_is_taken_and_given_back() {
        let pool = Arc::new(AtomicU64::new(0));
        let a = Reserved::take(&pool, 3, 4).unwrap();
        assert_eq!(Reserved::take(&pool, 2, 4).err(), Some(3));
        let b = Reserved::take(&pool, 1, 4).unwrap();
        assert_eq!(pool.load(Ordering::Acquire), 4);
        drop(a);
        let c = Reserved::take(&pool, 2, 4).unwrap();
        assert_eq!(pool.load(Ordering::Acquire), 3);
        drop((b, c));
        assert_eq!(pool.load(Ordering::Acquire), 0);
        // Never past u64 either.
        let _d = Reserved::take(&pool, 1, u64::MAX).unwrap();
        assert_eq!(Reserved::take(&pool, u64::MAX, u64::MAX).err(), Some(1));
    }

    /// A peer that takes a few bytes now and then cannot stretch a write
    /// past its deadline (a per-write timeout would let it go on for as
    /// long as it keeps taking something).
    #[test]
    fn a_trickling_reader_cannot_stretch_a_response_past_its_deadline() {
        let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // The writer's buffer stays full: every read finds something.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && theirs.read(&mut buf).is_ok_and(|n| n > 0)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut stream = Stream::Unix(ours);
        let body = vec![b'x'; 8 << 20];
        let deadline = Instant::now() + Duration::from_millis(300);
        let result = write_by(&mut stream, &body, deadline);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(stream);
        reader.join().expect("reader");
        let err = result.expect_err("8 MiB cannot trickle out in 300 ms");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err:?}"
        );
    }
}
