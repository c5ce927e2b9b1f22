//! The log record, its two formats, and sheepdog's own `log::Log` logger.
//!
//! Every line sheepdog prints, whether its own decision or a child's output
//! line, is a `Record`, formatted by `format_line` and handed to the stdout
//! writer thread (`crate::stdout`): one formatter, one writer. The output thread
//! (`crate::output`) builds records from child pipes; the `Logger` here
//! builds them from `log::info!` and friends on any thread.
//!
//! Formats (`global.log_format`):
//! - text: `2026-01-01T12:00:00.123Z INFO  queue-default-2 | message`, the
//!   name column aligned on the longest instance name, the level coloured
//!   only when stdout is a terminal and `NO_COLOR` is unset or empty. Labels
//!   and structured fields are not shown in text. A child's line is written
//!   as it is; sheepdog's own messages and a message decoded from a child's
//!   JSON line (`Record::decoded`) have their control characters escaped, so
//!   each stays one line. A line stdout took only in part (a full disk) is
//!   ended before the next.
//! - json: one object per line, keys in a stable order: `ts`, `level`,
//!   `process`, `instance`, `stream`, `msg`, `continued` (only on a piece of
//!   a cut line), then the process's labels (sorted), then the record's own
//!   fields in order (fields merged from a child's JSON line, or the
//!   structured fields of sheepdog's decisions: `event`, `reason`, `pid`,
//!   `exit_code`, `signal`, `attempt`, `backoff_ms`, …). A label or field
//!   that would repeat an earlier key is left out.
//!
//! The API shows records (`WithSeq`) as the same object with `seq`, the
//! record's place in the `LogStore`, first; log lines never carry it.
//!
//! sheepdog's own records have `process: "sheepdog"`; key-value pairs given
//! to the `log` macros (`log::info!(event = "started", pid = 42; "…")`)
//! become their fields, and an `instance` pair fills the `instance` key.
//!
//! Invariants:
//! - A record is formatted into one buffer and written with a single
//!   `write_all` by the stdout thread, so lines from different threads never
//!   interleave mid-line. A failing stdout (closed pipe) never panics; the
//!   line is dropped, and stderr says so once per streak of failures.
//! - Logging never blocks on a stdout that does not drain: sheepdog's own
//!   records are dropped (and counted) when the writer's queue is full;
//!   only child lines wait for room (`crate::stdout`).
//! - Own records also go to `global.log_file` (rotated like process files,
//!   reopened on SIGUSR1) and to the in-memory `LogStore`, if installed.
//!   That file never blocks the thread that logs either: its own writer
//!   thread (`crate::stdout`) opens, writes and reopens it, so a hung
//!   mount blocks only that thread, and its full queue drops (and counts)
//!   lines. One that is not a regular file (a FIFO, a link to
//!   `/dev/stdout`) is written without waiting, and what its reader has no
//!   room for is dropped and counted (`sink::RotatingFile`).
//! - Formatting never panics on any input: messages are already valid UTF-8
//!   (the framer converts lossily) and JSON escaping is serde_json's.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::config::{LogFormat, LogLevel};
use crate::output::buffer::LogStore;
use crate::output::sink::RotatingFile;

static FORMAT: AtomicU8 = AtomicU8::new(0); // 0 text, 1 json
static COLOR: AtomicBool = AtomicBool::new(false);
static WIDTH: AtomicUsize = AtomicUsize::new(8); // "sheepdog".len()
static OWN_FILE: Mutex<Option<RotatingFile>> = Mutex::new(None);
static STORE: OnceLock<Arc<LogStore>> = OnceLock::new();

/// The `process` of sheepdog's own records.
pub const SELF: &str = "sheepdog";

/// Which child stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// `stdout` / `stderr` (for API query strings).
    #[allow(dead_code)] // parsed by the HTTP API's logs route
    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// `debug`, `info`, `warn`, `error`.
pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// Labels shared by every record of one process.
pub type Labels = Arc<BTreeMap<String, String>>;

/// One log line: a child's output line (or merged multiline entry) or one
/// of sheepdog's own records.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Place in the `LogStore` (1, 2, … in the order records are stored),
    /// stamped by `LogStore::push`; 0 until then. Stamped there, not here,
    /// because records are made on several threads and reach the store out
    /// of creation order: a number taken at creation would let a reader
    /// resuming from `since` miss a record stored after a larger one.
    pub seq: u64,
    pub ts: SystemTime,
    pub level: LogLevel,
    pub process: Arc<str>,
    pub instance: Option<Arc<str>>,
    pub stream: Option<Stream>,
    pub msg: String,
    /// A piece of a line longer than `max_line_bytes`: the next record of
    /// the same stream continues it.
    pub continued: bool,
    /// `msg` was decoded from a child's JSON line: its control characters
    /// came from escapes (`\n`), and the text format writes them as such,
    /// or a user's input the app logged could forge lines.
    pub decoded: bool,
    pub labels: Option<Labels>,
    /// Extra fields in order: merged JSON fields, or structured fields of
    /// sheepdog's own decisions.
    pub fields: Vec<(String, Value)>,
}

impl Record {
    /// A record stamped now (its `seq` is given when it is stored).
    pub fn new(level: LogLevel, process: Arc<str>, msg: String) -> Record {
        Record {
            seq: 0,
            ts: SystemTime::now(),
            level,
            process,
            instance: None,
            stream: None,
            msg,
            continued: false,
            decoded: false,
            labels: None,
            fields: Vec::new(),
        }
    }

    /// Approximate heap bytes held (for buffer accounting).
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = std::mem::size_of::<Record>() + 16;
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + 32 + value_weight(v))
            .sum();
        OVERHEAD + self.msg.capacity() + fields
    }

    /// The `instance` key: the record's own, or an `instance` field of
    /// sheepdog's own records.
    fn instance_key(&self) -> Option<&str> {
        self.instance.as_deref().or_else(|| {
            self.fields
                .iter()
                .find(|(k, _)| k == "instance")
                .and_then(|(_, v)| v.as_str())
        })
    }
}

fn value_weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(value_weight).sum::<usize>() + 16,
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + value_weight(v) + 32).sum(),
        _ => 8,
    }
}

/// Keys a record's labels and fields never repeat.
const RESERVED: [&str; 7] = [
    "ts",
    "level",
    "process",
    "instance",
    "stream",
    "msg",
    "continued",
];

impl Record {
    /// Every key but `seq`, in the documented stable order, into `m`;
    /// labels and fields named `skip` are left out too.
    fn serialize_keys<M: SerializeMap>(
        &self,
        m: &mut M,
        skip: Option<&str>,
    ) -> Result<(), M::Error> {
        let taken = |k: &str| RESERVED.contains(&k) || skip == Some(k);
        m.serialize_entry("ts", &rfc3339_millis(self.ts))?;
        m.serialize_entry("level", level_name(self.level))?;
        m.serialize_entry("process", &*self.process)?;
        if let Some(i) = self.instance_key() {
            m.serialize_entry("instance", i)?;
        }
        if let Some(st) = self.stream {
            m.serialize_entry("stream", st.as_str())?;
        }
        m.serialize_entry("msg", &self.msg)?;
        if self.continued {
            m.serialize_entry("continued", &true)?;
        }
        let mut seen: Vec<&str> = Vec::new();
        if let Some(labels) = &self.labels {
            for (k, v) in labels.iter() {
                if !taken(k) {
                    m.serialize_entry(k, v)?;
                    seen.push(k);
                }
            }
        }
        for (k, v) in &self.fields {
            if !taken(k) && !seen.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
                seen.push(k);
            }
        }
        Ok(())
    }
}

/// The JSON log line: keys in the documented stable order, no `seq` (it
/// means nothing outside the store that gives it).
impl serde::Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.serialize_keys(&mut m, None)?;
        m.end()
    }
}

/// A record as the logs API shows it: `seq` first, then the JSON log line's
/// keys, so a client can resume with `since` from the last one it saw. A
/// child's own `seq` field is left out here (not in its log line): one key
/// must mean one thing, and the API's is the one `since` takes.
#[cfg_attr(not(feature = "api"), allow(dead_code))] // read by the API only
pub struct WithSeq<'a>(pub &'a Record);

impl serde::Serialize for WithSeq<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("seq", &self.0.seq)?;
        self.0.serialize_keys(&mut m, Some("seq"))?;
        m.end()
    }
}

/// Where a formatted line goes: a terminal may get colour, files never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File,
}

/// "1 process", "2 processes": a count and its noun, for log lines.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `a, b, 3 more`: the first `max` of `total` items, then how many more;
/// one line however many there are.
pub fn first_of(items: impl Iterator<Item = String>, total: usize, max: usize) -> String {
    let mut out: Vec<String> = items.take(max).collect();
    if total > out.len() {
        out.push(format!("{} more", total - out.len()));
    }
    out.join(", ")
}

/// Format `r` as one line (with its newline) in the configured format.
pub fn format_line(r: &Record, target: Target) -> Vec<u8> {
    let json = FORMAT.load(Ordering::Relaxed) == 1;
    let color = target == Target::Stdout && COLOR.load(Ordering::Relaxed);
    let width = WIDTH.load(Ordering::Relaxed);
    format_with(r, json, color, width)
}

/// `msg` with control characters but tab written as escapes (`\u{1b}`),
/// for text that reaches a terminal from elsewhere (`sheepdog ctl`, the
/// names single-command mode logs).
pub fn escaped(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut buf = Vec::with_capacity(msg.len() + 8);
    push_escaped(&mut buf, msg);
    std::borrow::Cow::Owned(String::from_utf8_lossy(&buf).into_owned())
}

/// The formatter itself, with explicit settings (golden-tested).
/// `msg` with control characters but tab written as escapes (`\u{1b}`).
fn push_escaped(buf: &mut Vec<u8>, msg: &str) {
    for c in msg.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(buf, "{}", c.escape_default());
        } else {
            let mut utf8 = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

pub fn format_with(r: &Record, json: bool, color: bool, width: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(r.msg.len() + 64);
    if json {
        // Serialising a Record cannot fail: every key is a string and every
        // value is a string, bool or serde_json::Value.
        if serde_json::to_writer(&mut buf, r).is_err() {
            buf.clear();
            buf.extend_from_slice(b"{\"msg\":\"unserialisable record\"}");
        }
    } else {
        let ts = rfc3339_millis(r.ts);
        let who: &str = r.instance.as_deref().unwrap_or(&r.process);
        let upper = level_name(r.level).to_ascii_uppercase();
        let lvl = format!("{upper:<5}");
        let lvl = if color {
            let code = match r.level {
                LogLevel::Error => "31",
                LogLevel::Warn => "33",
                LogLevel::Info => "32",
                LogLevel::Debug => "2",
            };
            format!("\x1b[{code}m{lvl}\x1b[0m")
        } else {
            lvl
        };
        let _ = write!(buf, "{ts} {lvl} {who:<width$} | ");
        if &*r.process == SELF || r.decoded {
            // sheepdog's own messages quote what others wrote (a probe's
            // output, an error from a server), as does a message decoded
            // from a JSON line: one record stays one line, and no escape
            // sequence of theirs reaches the terminal.
            push_escaped(&mut buf, &r.msg);
        } else {
            // A child's line is its own, colours and all.
            buf.extend_from_slice(r.msg.as_bytes());
        }
        if r.continued {
            buf.extend_from_slice(" …(continued)".as_bytes());
        }
    }
    buf.push(b'\n');
    buf
}

/// Lines dropped since stdout last took a write (0 while it works).
static STDOUT_LOST: AtomicU64 = AtomicU64::new(0);
/// Stdout took a write in part and then failed inside a line.
static STDOUT_CUT: AtomicBool = AtomicBool::new(false);

/// Write child lines to stdout, through the stdout thread: they wait for
/// room there when stdout does not drain (backpressure on the children).
pub fn write_stdout(lines: &[u8]) {
    crate::stdout::push(lines, crate::stdout::Full::Wait);
}

/// Write one of sheepdog's own lines: dropped (and counted) rather than
/// wait when stdout does not drain, so no decision waits on its reader.
fn write_own(line: &[u8]) {
    crate::stdout::push(line, crate::stdout::Full::Drop);
}

/// The line that says how many of sheepdog's own lines found the queue of
/// `what` (stdout, `global.log_file`) full.
pub fn dropped_note(what: &str, n: u64) -> Vec<u8> {
    let note = Record::new(
        LogLevel::Warn,
        SELF.into(),
        format!(
            "{what} did not drain: {} of sheepdog's own {} dropped",
            counted(n, "line", "lines"),
            if n == 1 { "was" } else { "were" }
        ),
    );
    let target = match what {
        "stdout" => Target::Stdout,
        _ => Target::File,
    };
    format_line(&note, target)
}

/// Write formatted lines to stdout now: a single `write_all` under the
/// lock. Only the stdout thread calls it (or anyone, if that thread could
/// not be started).
///
/// If stdout fails (the log collector's pipe closed, a full disk behind a
/// redirect), the lines are dropped: there is nowhere better to hold them,
/// and children must not block on it. But not silently: the first loss of
/// a streak is said once on stderr, and how many lines were lost when
/// stdout takes a write again.
pub fn write_direct(lines: &[u8]) {
    let out = std::io::stdout().lock();
    let fd = std::os::fd::AsFd::as_fd(&out);
    // A write a full disk took in part ended inside a line: end it first,
    // or the next line is glued to its head.
    let result = match STDOUT_CUT.load(Ordering::Relaxed) {
        true => write_waiting(fd, b"\n").and_then(|()| {
            STDOUT_CUT.store(false, Ordering::Relaxed);
            write_waiting(fd, lines)
        }),
        false => write_waiting(fd, lines),
    };
    // The stdout lock orders these updates; the atomic only makes the
    // static shareable.
    let lost = STDOUT_LOST.load(Ordering::Relaxed);
    let note = match result {
        Ok(()) if lost == 0 => return,
        Ok(()) => {
            STDOUT_LOST.store(0, Ordering::Relaxed);
            loss_note(&"stdout", None, lost)
        }
        Err(e) => {
            let n = crate::stdout::count_lines(lines);
            STDOUT_LOST.store(lost.saturating_add(n), Ordering::Relaxed);
            if lost > 0 {
                return;
            }
            loss_note(&"stdout", Some(&e), 0)
        }
    };
    let _ = std::io::stderr().write_all(&format_line(&note, Target::File));
}

/// `write_all`, waiting for room when `fd` is non-blocking: a child that
/// shares sheepdog's stdout (`inherit`) may have set O_NONBLOCK on it
/// (Python's asyncio pipes, libuv do), and a reader that is only slow must
/// slow the children down, not have their lines dropped.
fn write_waiting(fd: std::os::fd::BorrowedFd, lines: &[u8]) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = lines;
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EAGAIN | Errno::EINTR) => {
                let _ = poll(
                    &mut [PollFd::new(fd, PollFlags::POLLOUT)],
                    PollTimeout::NONE,
                );
            }
            Err(e) => {
                let done = &lines[..lines.len() - buf.len()];
                if done.last().is_some_and(|&b| b != b'\n') {
                    STDOUT_CUT.store(true, Ordering::Relaxed);
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Emit one of sheepdog's own records: stdout, `global.log_file`, store.
fn emit_own(r: Record) {
    write_own(&format_line(&r, Target::Stdout));
    // To the thread that writes the file: it never waits for that file.
    crate::stdout::push_file(|| format_line(&r, Target::File));
    if let Some(store) = STORE.get() {
        store.push(r);
    }
}

/// What is said when lines to `what` (stdout, a log file) start being
/// dropped (`failed`: why, said once), and when it takes them again after
/// `lost` were.
pub fn loss_note(
    what: &dyn std::fmt::Display,
    failed: Option<&dyn std::fmt::Display>,
    lost: u64,
) -> Record {
    let (level, msg) = match failed {
        Some(e) => (
            LogLevel::Error,
            format!("unable to write to {what}: {e}; its lines are dropped until it works again"),
        ),
        None => (
            LogLevel::Warn,
            format!(
                "{what} works again; {} lost",
                counted(lost, "line was", "lines were")
            ),
        ),
    };
    Record::new(level, SELF.into(), msg)
}

/// Log a log file's trouble. sheepdog's own file's goes to stdout only:
/// that file is what failed, and its lock is held.
pub fn file_trouble(r: Record, own: bool) {
    match own {
        true => write_own(&format_line(&r, Target::Stdout)),
        false => emit_own(r),
    }
}

/// Collects `log` key-value pairs into record fields.
struct Fields(Vec<(String, Value)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let mut v = Typed(None);
        value.visit(&mut v)?;
        // A `None` (an `Option` that is empty) leaves the field out.
        if let Some(v) = v.0 {
            self.0.push((key.as_str().to_string(), v));
        }
        Ok(())
    }
}

/// One `log` value as JSON: numbers and booleans typed, anything else as
/// its text, null as absent.
struct Typed(Option<Value>);

impl<'v> log::kv::VisitValue<'v> for Typed {
    fn visit_any(&mut self, value: log::kv::Value) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::String(value.to_string()));
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0 = None;
        Ok(())
    }
    fn visit_u64(&mut self, v: u64) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::from(v));
        Ok(())
    }
    fn visit_i64(&mut self, v: i64) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::from(v));
        Ok(())
    }
    fn visit_f64(&mut self, v: f64) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::from(v));
        Ok(())
    }
    fn visit_bool(&mut self, v: bool) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::Bool(v));
        Ok(())
    }
    fn visit_str(&mut self, v: &str) -> Result<(), log::kv::Error> {
        self.0 = Some(Value::String(v.to_string()));
        Ok(())
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug | log::Level::Trace => LogLevel::Debug,
        };
        let mut r = Record::new(level, SELF.into(), record.args().to_string());
        let mut fields = Fields(Vec::new());
        let _ = record.key_values().visit(&mut fields);
        r.fields = fields.0;
        emit_own(r);
    }

    fn flush(&self) {
        crate::stdout::flush(std::time::Instant::now() + FLUSH_WAIT);
    }
}

static LOGGER: Logger = Logger;

/// How long `log::logger().flush()` and the exit wait for stdout to take
/// what is queued: long enough for a reader that reads, short enough that
/// one that never does cannot hold up an exit (a container's stop).
pub const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Install the logger. Safe to call more than once (later calls only
/// change format and level).
pub fn init(format: LogFormat, level: LogLevel) {
    configure(format, level);
    let _ = log::set_logger(&LOGGER);
}

/// Change format and level (after the config is loaded). Colour is decided
/// here: stdout is a terminal and `NO_COLOR` is unset or empty.
pub fn configure(format: LogFormat, level: LogLevel) {
    FORMAT.store(matches!(format, LogFormat::Json) as u8, Ordering::Relaxed);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    COLOR.store(
        !no_color && std::io::stdout().is_terminal(),
        Ordering::Relaxed,
    );
    log::set_max_level(match level {
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    });
}

/// Align text output on the longest instance name.
pub fn set_name_width(width: usize) {
    WIDTH.store(width.clamp(8, 40), Ordering::Relaxed);
}

/// Also write sheepdog's own records to `path` (`global.log_file`), rotated
/// at `max_size` keeping `max_files`. The file writer thread checks its
/// directory and opens it; an error that comes within `FLUSH_WAIT` is
/// returned. One that has not come by then (a hung mount) is logged and
/// the start goes on: the records wait for the file in the writer's
/// bounded queue, and are dropped beyond it.
pub fn open_own_file(path: &Path, max_size: u64, max_files: u32) -> Result<(), String> {
    let open = {
        let path = path.to_path_buf();
        move || {
            crate::output::sink::check_dir(&path)
                .and_then(|()| RotatingFile::open(&path, max_size, max_files, true))
        }
    };
    let started = crate::stdout::start_file(move || {
        let opened = open().map(|f| {
            *OWN_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        });
        *OPENED.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened);
        OPENED_NOW.notify_all();
    });
    if !started {
        return Err("unable to start its writer thread".into());
    }
    let deadline = std::time::Instant::now() + FLUSH_WAIT;
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(result) = opened.take() {
            return result;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            log::warn!(
                "global.log_file: {} did not open within {} (a hung mount?); its lines wait for it",
                path.display(),
                crate::config::format_duration(FLUSH_WAIT)
            );
            return Ok(());
        }
        opened = OPENED_NOW
            .wait_timeout(opened, left)
            .map_or_else(|e| e.into_inner().0, |(o, _)| o);
    }
}

/// What the open of `global.log_file` on its writer thread came to.
static OPENED: Mutex<Option<Result<(), String>>> = Mutex::new(None);
static OPENED_NOW: std::sync::Condvar = std::sync::Condvar::new();

/// Reopen `global.log_file` (after an external rotation), on its writer
/// thread.
pub fn reopen_own_file() {
    crate::stdout::reopen_file();
}

/// The file writer's part (`crate::stdout`): reopen `global.log_file` if
/// asked, then write `batch` (whole lines) and the count of lines its full
/// queue dropped.
pub fn write_own_file(batch: &[u8], dropped: u64, reopen: bool) {
    let mut file = OWN_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(f) = file.as_mut() else { return };
    if reopen {
        if let Err(e) = f.reopen() {
            let note = Record::new(LogLevel::Error, SELF.into(), e);
            write_own(&format_line(&note, Target::Stdout));
        }
    }
    for line in batch.split_inclusive(|&b| b == b'\n') {
        // Never waits for a FIFO's reader.
        f.push_line(line);
    }
    if dropped > 0 {
        f.push_line(&dropped_note("global.log_file", dropped));
    }
    f.flush();
}

/// Keep sheepdog's own records in `store` too (once; later calls ignored).
pub fn set_store(store: Arc<LogStore>) {
    let _ = STORE.set(store);
}

/// `2026-01-01T12:00:00.123Z` (UTC, milliseconds).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_of_names_at_most_max_then_counts() {
        let items = |n: usize| (1..=n).map(|i| format!("p{i}"));
        assert_eq!(first_of(items(2), 2, 3), "p1, p2");
        assert_eq!(first_of(items(3), 3, 3), "p1, p2, p3");
        assert_eq!(first_of(items(5), 5, 3), "p1, p2, p3, 2 more");
        assert_eq!(first_of(items(0), 0, 3), "");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamp_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_268_800_123);
        assert_eq!(rfc3339_millis(t), "2026-01-01T12:00:00.123Z");
    }

    fn sample() -> Record {
        let mut r = Record::new(
            LogLevel::Warn,
            "queue-default".into(),
            "disk \"low\"".into(),
        );
        r.ts = UNIX_EPOCH + Duration::from_millis(1_767_268_800_123);
        r.instance = Some("queue-default-2".into());
        r.stream = Some(Stream::Stderr);
        r.labels = Some(Arc::new(BTreeMap::from([
            ("app".to_string(), "shop".to_string()),
            (
                "msg".to_string(),
                "reserved keys are never repeated".to_string(),
            ),
        ])));
        r.fields = vec![
            ("channel".into(), Value::from("local")),
            ("app".into(), Value::from("a label wins over a field")),
            ("context".into(), serde_json::json!({"user": 7})),
        ];
        r
    }

    #[test]
    fn own_messages_have_their_control_characters_escaped_a_childs_not() {
        let mut own = Record::new(
            LogLevel::Warn,
            SELF.into(),
            "probe: \u{1b}[31mred\u{0}\tx\ny".into(),
        );
        own.ts = UNIX_EPOCH;
        let line = String::from_utf8(format_with(&own, false, false, 8)).unwrap();
        assert!(
            line.ends_with("| probe: \\u{1b}[31mred\\u{0}\tx\\ny\n"),
            "{line:?}"
        );
        let mut child = Record::new(LogLevel::Info, "web".into(), "\u{1b}[32mgreen".into());
        child.ts = UNIX_EPOCH;
        let line = String::from_utf8(format_with(&child, false, false, 8)).unwrap();
        assert!(line.ends_with("| \u{1b}[32mgreen\n"), "{line:?}");
    }

    #[test]
    fn text_golden() {
        let r = sample();
        let line = String::from_utf8(format_with(&r, false, false, 16)).unwrap();
        assert_eq!(
            line,
            "2026-01-01T12:00:00.123Z WARN  queue-default-2  | disk \"low\"\n"
        );
        let colored = String::from_utf8(format_with(&r, false, true, 8)).unwrap();
        assert_eq!(
            colored,
            "2026-01-01T12:00:00.123Z \x1b[33mWARN \x1b[0m queue-default-2 | disk \"low\"\n"
        );
        let mut cut = r.clone();
        cut.continued = true;
        let line = String::from_utf8(format_with(&cut, false, false, 8)).unwrap();
        assert!(line.ends_with("disk \"low\" …(continued)\n"), "{line}");
    }

    #[test]
    fn json_golden() {
        let r = sample();
        let line = String::from_utf8(format_with(&r, true, true, 8)).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"ts":"2026-01-01T12:00:00.123Z","level":"warn","process":"queue-default","#,
                r#""instance":"queue-default-2","stream":"stderr","msg":"disk \"low\"","#,
                r#""app":"shop","channel":"local","context":{"user":7}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn the_api_form_puts_seq_first_and_log_lines_never_carry_it() {
        let mut r = sample();
        r.seq = 812;
        r.fields
            .push(("seq".into(), Value::from("a child's own seq")));
        let api = serde_json::to_string(&WithSeq(&r)).unwrap();
        assert!(
            api.starts_with(r#"{"seq":812,"ts":"2026-01-01T12:00:00.123Z","level":"warn","#),
            "{api}"
        );
        assert!(!api.contains("a child's own seq"), "{api}");
        // The log line is unchanged: no seq of ours, the child's field kept.
        let line = String::from_utf8(format_with(&r, true, false, 8)).unwrap();
        assert!(line.starts_with(r#"{"ts":"#), "{line}");
        assert!(line.contains(r#""seq":"a child's own seq""#), "{line}");
        assert!(!line.contains("812"), "{line}");
    }

    #[test]
    fn own_records_take_instance_and_fields_from_key_values() {
        let mut r = Record::new(
            LogLevel::Info,
            SELF.into(),
            "web-1: started (pid 42)".into(),
        );
        r.ts = UNIX_EPOCH;
        r.fields = vec![
            ("event".into(), Value::from("started")),
            ("instance".into(), Value::from("web-1")),
            ("pid".into(), Value::from(42)),
        ];
        let line = String::from_utf8(format_with(&r, true, false, 8)).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"ts":"1970-01-01T00:00:00.000Z","level":"info","process":"sheepdog","#,
                r#""instance":"web-1","msg":"web-1: started (pid 42)","event":"started","pid":42}"#,
                "\n"
            )
        );
        let text = String::from_utf8(format_with(&r, false, false, 8)).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000Z INFO  sheepdog | web-1: started (pid 42)\n"
        );
    }

    #[test]
    fn key_values_become_typed_fields() {
        use log::kv::ToValue;
        let kvs: &[(&str, log::kv::Value)] = &[
            ("event", log::kv::Value::from("exited")),
            ("exit_code", log::kv::Value::from(-3i64)),
            ("pid", log::kv::Value::from(42u32)),
            ("ok", log::kv::Value::from(true)),
            ("signal", None::<&str>.to_value()),
        ];
        let mut f = Fields(Vec::new());
        log::kv::Source::visit(&kvs, &mut f).unwrap();
        assert_eq!(
            f.0,
            vec![
                ("event".to_string(), Value::from("exited")),
                ("exit_code".to_string(), Value::from(-3)),
                ("pid".to_string(), Value::from(42)),
                ("ok".to_string(), Value::Bool(true)),
            ]
        );
    }
}
