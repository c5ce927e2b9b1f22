//! The per-stream pipeline: what happens to a framed line before it is
//! printed, written or stored.
//!
//! Order (the seed's, DESIGN.md §6): multiline merge → redaction → JSON
//! parse → level detection → filters (`min_level`, `exclude`, `include`).
//! A `Pipeline` is one process's `logging` block compiled (regexes built
//! once); a `StreamState` is the mutable part of one pipe (the pending
//! multiline entry).
//!
//! Rules:
//! - Multiline: a line matching `pattern` starts a new entry; any other line
//!   joins the pending entry (or starts one if there is none). An entry is
//!   complete when the next one starts, at `max_lines` lines, at 4 ×
//!   `max_line_bytes` bytes, when `timeout` has passed since its last line
//!   (the output thread's poll deadline, so this happens even if no line
//!   follows), or when the pipe closes. Pieces of a cut line are joined
//!   without a newline.
//! - Redaction runs on the whole entry, before anything else sees it, so no
//!   sink (stdout, file, buffer, subscribers) ever gets the secret. A JSON
//!   line's decoded message and every string of its fields, nested ones
//!   too, are redacted again: its escapes (`\u0026`, `\/`) can hide a match
//!   from the raw text.
//! - JSON: a line whose first non-blank character is `{` and that parses as
//!   an object gives its level (`level`, `severity`, `level_name`, `lvl`:
//!   names or Monolog/pino numbers) and message (`message`, `msg`); with
//!   `merge_fields` its other keys but `event` become record fields. Anything else
//!   passes through as plain text.
//! - Level: from JSON, else the first `level_detection` pattern that matches
//!   (checked error, warn, info, debug), else its `default_level`, else info.
//!   A plain line is never demoted below info (the seed's hidden-lines bug).
//! - Filters see the redacted entry text: drop below `min_level`, drop on
//!   any `exclude` match, and with `include` keep only matches.
//! - One decision per line. A line cut into pieces (by the framer at
//!   `max_line_bytes`, or an entry cut at its cap) is judged on its first
//!   record: that level and filter verdict are kept (`OpenLine`) and apply
//!   to every later piece, so a long ERROR line is kept or dropped whole
//!   and an excluded line leaves no continuation behind. A piece is never
//!   parsed as JSON (it is not a whole object).
//! - Redaction across cuts: a secret must not escape because a cut split
//!   it. Buffering a whole line is not an option (`max_line_bytes` exists
//!   to bound memory), so with redaction on, the last quarter of
//!   `max_line_bytes` (`keep` bytes) of a cut line is held back and
//!   redacted together with the next piece, and a record is only cut off
//!   where no match of any pattern straddles the cut (`safe_cut`: the cut
//!   moves back to the match's start). So any match up to `keep` bytes
//!   long is found whole, wherever the framer cut; a longer one is still
//!   redacted when it lies within one record. Records stay at most the
//!   record cap (`max_line_bytes`, or the multiline entry cap), the held
//!   tail is usually `keep` and always less than cap + `keep`.
//!   Without redaction pieces pass through as they come.
//!
//! Invariants: pure (no I/O; the caller passes `now`); memory per stream is
//! bounded by the entry cap plus the held tail of a cut line; invalid
//! regexes never get here (they are config errors), but a failure to
//! compile is still handled, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use regex_lite::Regex;
use serde_json::{Map, Value};

use crate::config::extra::{JsonLogging, LogFile, Logging, RedactionPattern};
use crate::config::LogLevel;
use crate::logging::{Labels, Record, Stream};

/// Default `logging.max_line_bytes`.
#[allow(dead_code)] // documented default; the config keeps its own copy
pub const MAX_LINE: usize = 64 * 1024;

struct MultilineRule {
    start: Regex,
    max_lines: u32,
    max_bytes: usize,
    timeout: Duration,
}

/// One process's `logging` block, compiled.
pub struct Pipeline {
    pub process: Arc<str>,
    pub labels: Option<Labels>,
    pub max_line_bytes: usize,
    pub file: Option<LogFile>,
    multiline: Option<MultilineRule>,
    redaction: Vec<(Regex, String)>,
    json: Option<JsonLogging>,
    /// Highest level first.
    levels: Vec<(LogLevel, Regex)>,
    default_level: LogLevel,
    min_level: Option<LogLevel>,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

fn compile(what: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("{what}: invalid regex {pattern:?}: {e}"))
}

fn replace(re: &Regex, text: &mut String, with: &str) {
    if let std::borrow::Cow::Owned(s) = re.replace_all(text, with) {
        *text = s;
    }
}

/// `text` with `patterns` applied: for sheepdog's own words that quote a
/// process (a failed probe's output and URL), which its redaction covers too.
pub fn redact(patterns: &[RedactionPattern], mut text: String) -> String {
    for p in patterns {
        match Regex::new(&p.pattern) {
            Ok(re) => replace(&re, &mut text, &p.replacement),
            // Validation compiled it; never show what it should hide.
            Err(_) => return p.replacement.clone(),
        }
    }
    text
}

impl Pipeline {
    /// Compile `l` for process `name`. Errors name the key (only possible
    /// if validation was bypassed).
    pub fn compile(name: &str, l: &Logging) -> Result<Pipeline, String> {
        let multiline = match &l.multiline {
            Some(m) => Some(MultilineRule {
                start: compile("multiline.pattern", &m.pattern)?,
                max_lines: m.max_lines.max(1),
                max_bytes: l.max_line_bytes.saturating_mul(4),
                timeout: m.timeout,
            }),
            None => None,
        };
        let redaction = l
            .redaction
            .iter()
            .map(|p| Ok((compile("redaction", &p.pattern)?, p.replacement.clone())))
            .collect::<Result<_, String>>()?;
        let (levels, default_level) = match &l.level_detection {
            Some(ld) => (
                ld.patterns
                    .iter()
                    .rev()
                    .map(|(lvl, p)| Ok((*lvl, compile("level_detection", p)?)))
                    .collect::<Result<_, String>>()?,
                ld.default_level,
            ),
            None => (Vec::new(), LogLevel::Info),
        };
        let list = |what: &str, v: &[String]| -> Result<Vec<Regex>, String> {
            v.iter().map(|p| compile(what, p)).collect()
        };
        Ok(Pipeline {
            process: name.into(),
            labels: (!l.labels.is_empty()).then(|| Arc::new(l.labels.clone())),
            max_line_bytes: l.max_line_bytes,
            file: l.file.clone(),
            multiline,
            redaction,
            json: l.json,
            levels,
            default_level,
            min_level: l.min_level,
            include: list("filters.include", &l.include)?,
            exclude: list("filters.exclude", &l.exclude)?,
        })
    }

    /// No processing at all: every line at info (the fallback).
    pub fn plain(name: &str, max_line_bytes: usize) -> Pipeline {
        Pipeline {
            process: name.into(),
            labels: None,
            max_line_bytes,
            file: None,
            multiline: None,
            redaction: Vec::new(),
            json: None,
            levels: Vec::new(),
            default_level: LogLevel::Info,
            min_level: None,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// Turn one entry (or one piece of a cut line) into a record, or None
    /// if a filter drops it. A later piece of a cut line takes the verdict
    /// its first piece got (`st.verdict`).
    fn finish_entry(
        &self,
        st: &mut StreamState,
        text: String,
        continued: bool,
        ts: SystemTime,
    ) -> Option<Record> {
        let mut text = text;
        self.redact_str(&mut text);
        let mut msg = None;
        let mut fields = Vec::new();
        let verdict = match st.verdict {
            Some(v) => v,
            None => {
                let mut level = None;
                // The first piece of a cut line is not a whole JSON object.
                if let (Some(cfg), false) = (&self.json, continued) {
                    if let Some(obj) = parse_object(&text) {
                        let (l, m, f) = from_json(cfg, obj);
                        level = l;
                        msg = m;
                        fields = f;
                        // Decoded, they may show what escapes (`\u0026`,
                        // `\/`) hid from the patterns on the raw line:
                        // nested ones too (Monolog's `context`).
                        if let Some(m) = msg.as_mut() {
                            self.redact_str(m);
                        }
                        for (_, v) in &mut fields {
                            self.redact_value(v);
                        }
                    }
                }
                let level = level.unwrap_or_else(|| {
                    self.levels
                        .iter()
                        .find(|(_, re)| re.is_match(&text))
                        .map_or(self.default_level, |(l, _)| *l)
                });
                if self.min_level.is_some_and(|min| level < min)
                    || self.exclude.iter().any(|re| re.is_match(&text))
                    || (!self.include.is_empty()
                        && !self.include.iter().any(|re| re.is_match(&text)))
                {
                    Verdict::Drop
                } else {
                    Verdict::Keep(level)
                }
            }
        };
        st.verdict = Some(verdict);
        let Verdict::Keep(level) = verdict else {
            return None;
        };
        let mut r = Record::new(level, self.process.clone(), text);
        if let Some(m) = msg {
            r.msg = m;
            r.decoded = true;
        }
        r.ts = ts;
        r.instance = Some(st.instance.clone());
        r.stream = Some(st.stream);
        r.continued = continued;
        r.labels = self.labels.clone();
        r.fields = fields;
        Some(r)
    }

    fn redact_str(&self, text: &mut String) {
        for (re, replacement) in &self.redaction {
            replace(re, text, replacement);
        }
    }

    /// Every string in `v`, however deep (its depth is bounded by the
    /// JSON parser's recursion limit).
    fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.redact_str(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.redact_value(i)),
            _ => {}
        }
    }

    /// Where to cut the next record off the front of a cut line's pending
    /// `text`, or None to print nothing more now: records are at most the
    /// cap (`max_line_bytes`, or the multiline entry cap) and, while pieces
    /// of the line are still to come (`more`), the last quarter of
    /// `max_line_bytes` (`keep`) stays for them.
    fn next_cut(&self, text: &str, more: bool) -> Option<usize> {
        if self.redaction.is_empty() {
            return None;
        }
        let cap = self
            .multiline
            .as_ref()
            .map_or(self.max_line_bytes, |m| m.max_bytes);
        let keep = if more { self.max_line_bytes / 4 } else { 0 };
        let mut cut = text.len().saturating_sub(keep).min(cap);
        if cut == text.len() {
            return None;
        }
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        match self.safe_cut(text, cut) {
            // Holding more would take the held text to a record's worth
            // beyond `keep`: only a match longer than a record is split.
            // (Then `cut` is about `cap`, never 0.)
            0 if text.len() >= cap + keep => Some(cut),
            0 => None,
            safe => Some(safe),
        }
    }

    /// `cut`, moved back to the start of any redaction match that straddles
    /// it, until every pattern has been checked against the final place (a
    /// pattern's own matches never overlap, so after a move only the others
    /// are checked again); 0 when only a cut at 0 splits nothing. Moves are
    /// bounded: a chain of overlapping matches of different patterns longer
    /// than that gives 0 too (`next_cut` then holds the text, or cuts where
    /// it must) rather than quadratic time.
    fn safe_cut(&self, text: &str, mut cut: usize) -> usize {
        let n = self.redaction.len();
        let (mut quiet, mut moves, mut i) = (0, 0, 0);
        while quiet < n {
            quiet += 1;
            for m in self.redaction[i % n].0.find_iter(text) {
                if m.start() >= cut {
                    break;
                }
                if m.end() > cut {
                    cut = m.start();
                    quiet = 1;
                    moves += 1;
                    break;
                }
            }
            if moves > 8 {
                return 0;
            }
            i += 1;
        }
        cut
    }
}

fn parse_object(text: &str) -> Option<Map<String, Value>> {
    let t = text.trim();
    if !t.starts_with('{') {
        return None;
    }
    // from_slice, like every JSON read in sheepdog (the API's bodies are
    // bytes): the binary then holds one JSON reader, not a second one for
    // `&str`. On valid UTF-8 both give the same values and errors.
    match serde_json::from_slice::<Value>(t.as_bytes()) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

const LEVEL_KEYS: [&str; 5] = ["level", "severity", "level_name", "lvl", "loglevel"];
const MESSAGE_KEYS: [&str; 2] = ["message", "msg"];

type Extracted = (Option<LogLevel>, Option<String>, Vec<(String, Value)>);

fn from_json(cfg: &JsonLogging, mut obj: Map<String, Value>) -> Extracted {
    let mut level = None;
    if cfg.extract_level {
        if let Some((k, l)) = LEVEL_KEYS
            .iter()
            .find_map(|k| obj.get(*k).and_then(json_level).map(|l| (*k, l)))
        {
            level = Some(l);
            obj.remove(k);
        }
    }
    let mut msg = None;
    if cfg.extract_message {
        if let Some(k) = MESSAGE_KEYS.iter().find(|k| obj.contains_key(**k)) {
            msg = obj.remove(*k).map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
    }
    let fields = if cfg.merge_fields {
        // `event` marks sheepdog's own decisions (what alerts key on): a
        // child's line must not pass for one.
        obj.remove("event");
        obj.into_iter().collect()
    } else {
        Vec::new()
    };
    (level, msg, fields)
}

/// A level named in a JSON log: a name (any case), a Monolog level (100
/// debug … 600 emergency) or a pino/bunyan level (10 trace … 60 fatal).
pub fn json_level(v: &Value) -> Option<LogLevel> {
    match v {
        Value::String(s) => level_from_name(s),
        Value::Number(n) => {
            let n = n.as_u64()?;
            Some(match n {
                10..=20 => LogLevel::Debug,
                30 => LogLevel::Info,
                40 => LogLevel::Warn,
                50..=60 => LogLevel::Error,
                100..=199 => LogLevel::Debug,
                200..=299 => LogLevel::Info,
                300..=399 => LogLevel::Warn,
                400..=600 => LogLevel::Error,
                _ => return None,
            })
        }
        _ => None,
    }
}

fn level_from_name(s: &str) -> Option<LogLevel> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "trace" | "debug" | "dbg" => LogLevel::Debug,
        "info" | "information" | "notice" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" | "err" | "critical" | "crit" | "alert" | "emergency" | "emerg" | "fatal"
        | "panic" => LogLevel::Error,
        _ => return None,
    })
}

/// A multiline entry being collected.
#[derive(Debug)]
struct Entry {
    text: String,
    lines: u32,
    /// The last piece added was cut: the next one continues it.
    open_piece: bool,
    started: SystemTime,
    deadline: Instant,
}

/// What the first record of a cut line decided, for its other pieces.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Keep(LogLevel),
    Drop,
}

/// The mutable pipeline state of one pipe.
#[derive(Debug)]
pub struct StreamState {
    pub instance: Arc<str>,
    pub stream: Stream,
    entry: Option<Entry>,
    /// The verdict on the cut line in progress, from its first record;
    /// None between lines.
    verdict: Option<Verdict>,
    /// With redaction: the text of the cut line in progress not printed
    /// yet, to be redacted with what follows.
    held: String,
}

impl StreamState {
    pub fn new(instance: Arc<str>, stream: Stream) -> StreamState {
        StreamState {
            instance,
            stream,
            entry: None,
            verdict: None,
            held: String::new(),
        }
    }

    /// One framed line (or cut piece) arrived at `now`.
    pub fn line(
        &mut self,
        p: &Pipeline,
        text: String,
        continued: bool,
        now: Instant,
        out: &mut Vec<Record>,
    ) {
        let Some(rule) = &p.multiline else {
            self.unit(p, text, continued, SystemTime::now(), out);
            return;
        };
        if let Some(e) = &mut self.entry {
            let joins = e.open_piece || !rule.start.is_match(&text);
            let fits = e.lines < rule.max_lines && e.text.len() + text.len() < rule.max_bytes;
            if joins && fits {
                if !e.open_piece {
                    e.text.push('\n');
                    e.lines += 1;
                }
                e.text.push_str(&text);
                e.open_piece = continued;
                e.deadline = now + rule.timeout;
                return;
            }
            self.flush(p, out);
        }
        self.entry = Some(Entry {
            text,
            lines: 1,
            open_piece: continued,
            started: SystemTime::now(),
            deadline: now + rule.timeout,
        });
    }

    /// One whole line or entry, or a piece of a cut one (`continued`: more
    /// of it follows), into records.
    fn unit(
        &mut self,
        p: &Pipeline,
        mut text: String,
        continued: bool,
        ts: SystemTime,
        out: &mut Vec<Record>,
    ) {
        if !self.held.is_empty() {
            self.held.push_str(&text);
            text = std::mem::take(&mut self.held);
        }
        while let Some(cut) = p.next_cut(&text, continued) {
            let rest = text[cut..].to_string();
            text.truncate(cut);
            out.extend(p.finish_entry(self, text, true, ts));
            text = rest;
        }
        if continued && !p.redaction.is_empty() {
            self.held = text;
        } else {
            out.extend(p.finish_entry(self, text, continued, ts));
        }
        if !continued {
            self.verdict = None;
        }
    }

    /// When the pending entry must be flushed, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.entry.as_ref().map(|e| e.deadline)
    }

    /// Flush the pending entry if its deadline has passed.
    pub fn tick(&mut self, p: &Pipeline, now: Instant, out: &mut Vec<Record>) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.flush(p, out);
        }
    }

    /// Flush the pending entry now (timeout, pipe closed, exit). What is
    /// held of a cut line waits for its next piece, and one always comes:
    /// the framer ends every cut line with a last piece, at the latest
    /// when the pipe closes, before this is called.
    pub fn flush(&mut self, p: &Pipeline, out: &mut Vec<Record>) {
        if let Some(e) = self.entry.take() {
            self.unit(p, e.text, e.open_piece, e.started, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::extra::{LevelDetection, Multiline, RedactionPattern};
    use std::collections::BTreeMap;

    fn logging() -> Logging {
        Logging::default()
    }

    fn run(p: &Pipeline, lines: &[&str]) -> Vec<Record> {
        let mut st = StreamState::new("app-1".into(), Stream::Stdout);
        let mut out = Vec::new();
        let now = Instant::now();
        for l in lines {
            st.line(p, l.to_string(), false, now, &mut out);
        }
        st.flush(p, &mut out);
        out
    }

    fn msgs(rs: &[Record]) -> Vec<&str> {
        rs.iter().map(|r| r.msg.as_str()).collect()
    }

    #[test]
    fn plain_lines_are_info_and_carry_identity_and_labels() {
        let mut l = logging();
        l.labels = BTreeMap::from([("team".into(), "core".into())]);
        let p = Pipeline::compile("app", &l).unwrap();
        let rs = run(&p, &["hello", "PHP Warning: x"]);
        assert_eq!(msgs(&rs), ["hello", "PHP Warning: x"]);
        assert!(rs.iter().all(|r| r.level == LogLevel::Info));
        assert_eq!(rs[0].instance.as_deref(), Some("app-1"));
        assert_eq!(rs[0].labels.as_ref().unwrap()["team"], "core");
    }

    fn multiline(pattern: &str, max_lines: u32) -> Logging {
        let mut l = logging();
        l.multiline = Some(Multiline {
            pattern: pattern.into(),
            max_lines,
            timeout: Duration::from_millis(500),
        });
        l
    }

    #[test]
    fn multiline_merges_stack_traces() {
        let p = Pipeline::compile("app", &multiline(r"^\[\d{4}-", 100)).unwrap();
        let rs = run(
            &p,
            &[
                "[2024-01-01 10:00:00] local.ERROR: boom",
                "#0 /app/a.php(10): f()",
                "#1 {main}",
                "[2024-01-01 10:00:01] local.INFO: next",
            ],
        );
        assert_eq!(
            msgs(&rs),
            [
                "[2024-01-01 10:00:00] local.ERROR: boom\n#0 /app/a.php(10): f()\n#1 {main}",
                "[2024-01-01 10:00:01] local.INFO: next"
            ]
        );
    }

    #[test]
    fn multiline_caps_lines_and_flushes_on_its_deadline() {
        let p = Pipeline::compile("app", &multiline("^S", 2)).unwrap();
        assert_eq!(msgs(&run(&p, &["S1", "a", "b", "c"])), ["S1\na", "b\nc"]);
        let mut st = StreamState::new("app-1".into(), Stream::Stdout);
        let mut out = Vec::new();
        let t0 = Instant::now();
        st.line(&p, "S1".into(), false, t0, &mut out);
        assert_eq!(st.deadline(), Some(t0 + Duration::from_millis(500)));
        st.tick(&p, t0 + Duration::from_millis(499), &mut out);
        assert!(out.is_empty());
        st.tick(&p, t0 + Duration::from_millis(500), &mut out);
        assert_eq!(msgs(&out), ["S1"]);
        assert_eq!(st.deadline(), None);
    }

    #[test]
    fn multiline_joins_cut_pieces_without_a_newline() {
        let p = Pipeline::compile("app", &multiline("^S", 10)).unwrap();
        let mut st = StreamState::new("app-1".into(), Stream::Stdout);
        let mut out = Vec::new();
        let now = Instant::now();
        st.line(&p, "S-abc".into(), true, now, &mut out);
        st.line(&p, "S-def".into(), false, now, &mut out);
        st.line(&p, "more".into(), false, now, &mut out);
        st.flush(&p, &mut out);
        assert_eq!(msgs(&out), ["S-abcS-def\nmore"]);
    }

    #[test]
    fn redaction_applies_before_everything() {
        let mut l = logging();
        l.redaction = vec![
            RedactionPattern {
                name: "token".into(),
                pattern: r"token=\w+".into(),
                replacement: "token=***".into(),
            },
            RedactionPattern {
                name: "password".into(),
                pattern: r#"("password":")[^"]*"#.into(),
                replacement: "${1}***".into(),
            },
            RedactionPattern {
                name: "card".into(),
                pattern: r"\b(\d{4})\d{8}(\d{4})\b".into(),
                replacement: "$1********$2".into(),
            },
        ];
        l.exclude = vec!["token=abc".into()];
        let p = Pipeline::compile("app", &l).unwrap();
        let rs = run(
            &p,
            &[r#"login token=abc123 card 4111111111111111 {"password":"hunter2"} $$"#],
        );
        assert_eq!(
            msgs(&rs),
            [r#"login token=*** card 4111********1111 {"password":"***"} $$"#]
        );
    }

    #[test]
    fn json_lines_give_level_message_and_fields() {
        let mut l = logging();
        l.json = Some(JsonLogging {
            detect_auto: true,
            extract_level: true,
            extract_message: true,
            merge_fields: true,
        });
        let p = Pipeline::compile("app", &l).unwrap();
        let rs = run(
            &p,
            &[
                r#"{"message":"Order failed","context":{"id":7},"level":400,"level_name":"ERROR","channel":"local"}"#,
                r#"{"msg":"ok","level":"warning"}"#,
                "{not json",
                r#"["an","array"]"#,
            ],
        );
        assert_eq!(
            msgs(&rs),
            ["Order failed", "ok", "{not json", r#"["an","array"]"#]
        );
        assert_eq!(rs[0].level, LogLevel::Error);
        assert_eq!(rs[1].level, LogLevel::Warn);
        assert_eq!(rs[2].level, LogLevel::Info);
        let keys: Vec<&str> = rs[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["channel", "context", "level_name"]);
        // Without merge_fields nor extract_message: the line stays whole.
        l.json = Some(JsonLogging {
            detect_auto: false,
            extract_level: true,
            extract_message: false,
            merge_fields: false,
        });
        let p = Pipeline::compile("app", &l).unwrap();
        let rs = run(&p, &[r#"{"msg":"x","severity":"DEBUG"}"#]);
        assert_eq!(rs[0].msg, r#"{"msg":"x","severity":"DEBUG"}"#);
        assert_eq!(rs[0].level, LogLevel::Debug);
        assert!(rs[0].fields.is_empty());
    }

    #[test]
    fn json_levels() {
        use serde_json::json;
        assert_eq!(json_level(&json!(200)), Some(LogLevel::Info));
        assert_eq!(json_level(&json!(250)), Some(LogLevel::Info));
        assert_eq!(json_level(&json!(550)), Some(LogLevel::Error));
        assert_eq!(json_level(&json!(30)), Some(LogLevel::Info));
        assert_eq!(json_level(&json!(60)), Some(LogLevel::Error));
        assert_eq!(json_level(&json!("CRITICAL")), Some(LogLevel::Error));
        assert_eq!(json_level(&json!(7)), None);
        assert_eq!(json_level(&json!("loud")), None);
        assert_eq!(json_level(&json!(-1)), None);
    }

    #[test]
    fn level_detection_checks_error_first_then_default() {
        let mut l = logging();
        l.level_detection = Some(LevelDetection {
            patterns: BTreeMap::from([
                (LogLevel::Error, "(?i)error|fatal".to_string()),
                (LogLevel::Warn, "(?i)warn".to_string()),
                (LogLevel::Debug, "^DEBUG".to_string()),
            ]),
            default_level: LogLevel::Info,
        });
        l.min_level = Some(LogLevel::Info);
        let p = Pipeline::compile("app", &l).unwrap();
        let rs = run(
            &p,
            &["WARN then ERROR", "a warning", "DEBUG noise", "plain"],
        );
        assert_eq!(msgs(&rs), ["WARN then ERROR", "a warning", "plain"]);
        let levels: Vec<LogLevel> = rs.iter().map(|r| r.level).collect();
        assert_eq!(levels, [LogLevel::Error, LogLevel::Warn, LogLevel::Info]);
    }

    #[test]
    fn include_and_exclude_filters() {
        let mut l = logging();
        l.include = vec!["^GET".into(), "^POST".into()];
        l.exclude = vec!["/health".into()];
        let p = Pipeline::compile("nginx", &l).unwrap();
        let rs = run(&p, &["GET /", "GET /health", "POST /login", "noise"]);
        assert_eq!(msgs(&rs), ["GET /", "POST /login"]);
    }

    fn redacting(max_line_bytes: usize, patterns: &[(&str, &str)]) -> Logging {
        let mut l = logging();
        l.max_line_bytes = max_line_bytes;
        l.redaction = patterns
            .iter()
            .map(|(pattern, replacement)| RedactionPattern {
                name: "p".into(),
                pattern: pattern.to_string(),
                replacement: replacement.to_string(),
            })
            .collect();
        l
    }

    /// `input` through the real framer (cut at the pipeline's
    /// `max_line_bytes`), fed in `chunk`-byte reads, and the pipeline.
    fn framed(p: &Pipeline, input: &[u8], chunk: usize) -> Vec<Record> {
        let mut f = crate::output::frame::Framer::new(p.max_line_bytes);
        let mut st = StreamState::new("app-1".into(), Stream::Stdout);
        let mut out = Vec::new();
        let now = Instant::now();
        let mut emit = |l: &[u8], c: bool| {
            st.line(p, String::from_utf8_lossy(l).into_owned(), c, now, &mut out)
        };
        for c in input.chunks(chunk) {
            f.push(c, &mut emit);
        }
        f.finish(&mut emit);
        st.flush(p, &mut out);
        out
    }

    /// The lines the records make once their pieces are joined, checking
    /// that every piece but a line's last is marked continued and that no
    /// record is longer than `cap`.
    fn joined(rs: &[Record], cap: usize) -> Vec<String> {
        let mut lines = vec![String::new()];
        for r in rs {
            assert!(r.msg.len() <= cap, "{} > {cap}", r.msg.len());
            lines.last_mut().unwrap().push_str(&r.msg);
            if !r.continued {
                lines.push(String::new());
            }
        }
        assert_eq!(
            lines.pop().as_deref(),
            Some(""),
            "the last record ends its line"
        );
        lines
    }

    #[test]
    fn a_secret_straddling_a_cut_is_redacted_wherever_the_cut_falls() {
        let l = redacting(1024, &[(r"token=\w+", "token=***")]);
        let p = Pipeline::compile("app", &l).unwrap();
        let secret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
        // Every position of the secret around the first, second and
        // third cut, in one read and byte by byte.
        for pad in (980..1030).chain(2030..2060).chain(3060..3090) {
            let line = format!("{}token={secret} rest", "x".repeat(pad));
            let want = format!("{}token=*** rest", "x".repeat(pad));
            for chunk in [1, 64 * 1024] {
                let input = format!("{line}\nshort token=abc\n");
                let rs = framed(&p, input.as_bytes(), chunk);
                assert!(rs.iter().all(|r| !r.msg.contains("sk_")), "pad {pad}");
                assert_eq!(joined(&rs, 1024), [want.as_str(), "short token=***"]);
            }
        }
    }

    #[test]
    fn a_cut_line_comes_out_as_redacted_as_if_it_were_whole() {
        // Overlapping matches of two patterns, in both orders: the cut
        // moves back to the earlier start, wherever it falls in them.
        let card = (r"\b(\d{4})\d{8}(\d{4})\b", "$1********$2");
        let key = (r"key=\w+", "key=***");
        for patterns in [[card, key], [key, card]] {
            let p = Pipeline::compile("app", &redacting(1024, &patterns)).unwrap();
            let whole = Pipeline::compile("app", &redacting(1 << 20, &patterns)).unwrap();
            // The framer cuts at 1024, the first record at 768.
            for pad in (730..780).chain(990..1030) {
                let line = format!(
                    "{} key=4111111111111111 end{}",
                    "x".repeat(pad),
                    "y".repeat(1500)
                );
                let want = framed(&whole, line.as_bytes(), 4096);
                assert_eq!(want.len(), 1);
                assert!(!want[0].msg.contains("11111111"));
                let got = framed(&p, line.as_bytes(), 4096);
                assert_eq!(joined(&got, 1024), [want[0].msg.as_str()], "pad {pad}");
            }
        }
    }

    #[test]
    fn a_long_line_in_a_multiline_entry_is_redacted_across_the_entry_cap() {
        let mut l = redacting(1024, &[(r"token=\w+", "token=***")]);
        l.multiline = Some(Multiline {
            pattern: "^S".into(),
            max_lines: 100,
            timeout: Duration::from_millis(500),
        });
        let p = Pipeline::compile("app", &l).unwrap();
        // An entry is cut before the 1024-byte piece that would take it to
        // 4 × 1024 bytes, so at 3072 in a line longer than 4096 bytes: put
        // the secret across that.
        let tail = "y".repeat(2000);
        for pad in 3040..3080 {
            let input = format!(
                "S{} token=abcdefghij0123456789 {tail}\nS next\n",
                "x".repeat(pad)
            );
            let rs = framed(&p, input.as_bytes(), 64 * 1024);
            assert!(rs.iter().all(|r| !r.msg.contains("abcdef")), "pad {pad}");
            let want = format!("S{} token=*** {tail}", "x".repeat(pad));
            assert_eq!(joined(&rs, 4096), [want.as_str(), "S next"]);
        }
    }

    #[test]
    fn a_multiline_timeout_in_the_middle_of_a_line_holds_back_only_its_tail() {
        let mut l = redacting(1024, &[(r"token=\w+", "token=***")]);
        l.multiline = Some(Multiline {
            pattern: "^S".into(),
            max_lines: 100,
            timeout: Duration::from_millis(500),
        });
        let p = Pipeline::compile("app", &l).unwrap();
        let mut st = StreamState::new("app-1".into(), Stream::Stdout);
        let mut out = Vec::new();
        let t0 = Instant::now();
        st.line(
            &p,
            format!("S{}token=ab", "x".repeat(1015)),
            true,
            t0,
            &mut out,
        );
        // The timeout flushes the entry, cut mid-line: all but its last
        // quarter of max_line_bytes comes out.
        st.tick(&p, t0 + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].msg.len(), out[0].continued), (768, true));
        // The rest of the line, much later, and the pipe closes.
        st.line(
            &p,
            "cd rest".into(),
            false,
            t0 + Duration::from_secs(9),
            &mut out,
        );
        st.flush(&p, &mut out);
        assert_eq!(
            joined(&out, 4096),
            [format!("S{}token=*** rest", "x".repeat(1015))]
        );
    }

    #[test]
    fn a_cut_line_is_kept_or_dropped_whole_on_its_first_piece() {
        let mut l = logging();
        l.max_line_bytes = 1024;
        l.level_detection = Some(LevelDetection {
            patterns: BTreeMap::from([(LogLevel::Error, "ERROR".to_string())]),
            default_level: LogLevel::Info,
        });
        l.min_level = Some(LogLevel::Warn);
        l.exclude = vec!["GET /health".into()];
        for redact in [false, true] {
            if redact {
                l.redaction = redacting(1024, &[("never-matches", "")]).redaction;
            }
            let p = Pipeline::compile("app", &l).unwrap();
            let input = format!(
                "ERROR: db down {y}\ninfo {y} ERROR late\nERROR GET /health {y}\nERROR: short\n",
                y = "y".repeat(3000)
            );
            let rs = framed(&p, input.as_bytes(), 64 * 1024);
            assert!(rs.iter().all(|r| r.level == LogLevel::Error));
            let want = format!("ERROR: db down {}", "y".repeat(3000));
            assert_eq!(joined(&rs, 1024), [want.as_str(), "ERROR: short"]);
        }
    }

    #[test]
    fn a_cut_json_line_is_not_parsed_piece_by_piece() {
        let mut l = logging();
        l.max_line_bytes = 1024;
        l.json = Some(JsonLogging {
            detect_auto: false,
            extract_level: true,
            extract_message: true,
            merge_fields: false,
        });
        let p = Pipeline::compile("app", &l).unwrap();
        let cut = format!(
            "{}{{\"msg\":\"inner\",\"level\":\"debug\"}}",
            "x".repeat(1024)
        );
        let rs = framed(
            &p,
            format!("{cut}\n{{\"msg\":\"whole\"}}\n").as_bytes(),
            4096,
        );
        assert_eq!(joined(&rs, 1024), [cut.as_str(), "whole"]);
        assert!(rs.iter().all(|r| r.level == LogLevel::Info));
    }

    #[test]
    fn a_bad_regex_is_an_error_naming_the_key_not_a_panic() {
        let mut l = logging();
        l.exclude = vec!["(".into()];
        let e = Pipeline::compile("x", &l).err().unwrap();
        assert!(e.starts_with("filters.exclude: invalid regex \"(\""), "{e}");
    }
}
