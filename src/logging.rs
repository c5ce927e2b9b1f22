//! The log sink: sheepdog's own records (through the `log` facade) and
//! child output lines, written to stdout in one format, text or JSON lines.
//!
//! Invariant: every record is formatted into one buffer and written with a
//! single `write_all` under the stdout lock, so lines from different threads
//! never interleave mid-line. A failing stdout (closed pipe) never panics;
//! the record is dropped.
//!
//! Text:  `2026-01-01T12:00:00.123Z INFO  queue-default-2 | message`
//! JSON:  `{"ts":"…","level":"info","process":"queue-default","instance":"queue-default-2","stream":"stdout","msg":"…"}`

use std::io::Write;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{LogFormat, LogLevel};

static FORMAT: AtomicU8 = AtomicU8::new(0); // 0 text, 1 json
static WIDTH: AtomicUsize = AtomicUsize::new(8); // "sheepdog".len()

/// Which child stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let msg = record.args().to_string();
        write_record(level_str(record.level()), "sheepdog", None, None, &msg);
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

static LOGGER: Logger = Logger;

/// Install the logger. Safe to call more than once (later calls only
/// change format and level).
pub fn init(format: LogFormat, level: LogLevel) {
    configure(format, level);
    let _ = log::set_logger(&LOGGER);
}

/// Change format and level (after the config is loaded).
pub fn configure(format: LogFormat, level: LogLevel) {
    FORMAT.store(matches!(format, LogFormat::Json) as u8, Ordering::Relaxed);
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

/// Emit one line a child printed. Child lines are shown at `info`.
pub fn child_line(process: &str, instance: &str, stream: Stream, line: &str) {
    write_record("info", process, Some(instance), Some(stream), line);
}

fn level_str(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

fn write_record(
    level: &str,
    process: &str,
    instance: Option<&str>,
    stream: Option<Stream>,
    msg: &str,
) {
    let ts = rfc3339_millis(SystemTime::now());
    let mut buf = String::with_capacity(msg.len() + 64);
    if FORMAT.load(Ordering::Relaxed) == 1 {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts.into());
        obj.insert("level".into(), level.into());
        obj.insert("process".into(), process.into());
        if let Some(i) = instance {
            obj.insert("instance".into(), i.into());
        }
        if let Some(s) = stream {
            obj.insert("stream".into(), s.as_str().into());
        }
        obj.insert("msg".into(), msg.into());
        buf.push_str(&serde_json::Value::Object(obj).to_string());
    } else {
        let who = instance.unwrap_or(process);
        let width = WIDTH.load(Ordering::Relaxed);
        let upper = level.to_ascii_uppercase();
        buf.push_str(&format!("{ts} {upper:<5} {who:<width$} | {msg}"));
    }
    buf.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(buf.as_bytes());
    let _ = out.flush();
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
}
