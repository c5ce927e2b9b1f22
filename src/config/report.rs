//! The collector every loading stage writes its findings to.
//!
//! Problems and warnings are single lines that start with the key path
//! (`processes.web.restart: …`). Two bookkeeping rules keep the output
//! useful when several stages see the same bad node:
//! - a path already reported (and pruned) by an earlier stage is
//!   *suppressed*: later problems at or below it are dropped, so one typo
//!   gives one message, not three;
//! - a path set by an environment override remembers the variable, and any
//!   problem at or below it says `(set by SHEEPDOG_…)`.
//!
//! At most `MAX_LINES` problems and warnings are kept (the rest are
//! counted): a hostile file with 100k bad keys must not make the
//! bookkeeping quadratic or the output unreadable.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Most problems (and, separately, warnings) kept.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    suppressed: BTreeSet<String>,
    origins: BTreeMap<String, String>,
    omitted_problems: usize,
    omitted_warnings: usize,
}

/// `base.key`, or `key` at the top.
///
/// Built at its final size: validation makes one of these for every key
/// of every process, and `format!` would grow each from nothing (a load of
/// 50 processes made 2,300 reallocations here).
pub fn join(base: &str, key: &str) -> String {
    let mut path = String::with_capacity(base.len() + 1 + key.len());
    path.push_str(base);
    push_key(&mut path, key);
    path
}

/// Append `.key` to `path` (just `key` at the top). A key that holds a
/// `.` or `[` (process names may hold dots) is written in double quotes,
/// `processes."web.v2".scale`, so that it stays one segment: suppression
/// and origins match whole segments, and `processes.web.v2` would read as
/// key `v2` of process `web`. So is an empty key (`""`: the empty path is
/// the root, and suppressing it would hide every other problem) and one
/// with whitespace or a control character, escaped (`"a\nb"`) so that a
/// problem stays on one line (bidirectional-text controls too, so that it
/// reads in the order it is).
pub fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let odd = |c: char| matches!(c, '.' | '[' | '"' | '\\') || c.is_whitespace() || unprintable(c);
    if !key.is_empty() && !key.contains(odd) {
        path.push_str(key);
        return;
    }
    path.push('"');
    for c in key.chars() {
        if unprintable(c) {
            path.extend(c.escape_default());
            continue;
        }
        if matches!(c, '"' | '\\') {
            path.push('\\');
        }
        path.push(c);
    }
    path.push('"');
}

/// A control character, or a bidirectional-text control that would make a
/// terminal show the line in another order than it is (`\u{202e}`).
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `processes.NAME.rest`, for checks made outside this module; `rest` is
/// a path as written (`logging.file.path`), the name is quoted if needed.
pub fn process_key(name: &str, rest: &str) -> String {
    let mut path = join("processes", name);
    path.push('.');
    path.push_str(rest);
    path
}

/// `base[i]`.
pub fn index(base: &str, i: usize) -> String {
    use std::fmt::Write;
    let mut path = String::with_capacity(base.len() + 12);
    path.push_str(base);
    // Writing to a String cannot fail.
    let _ = write!(path, "[{i}]");
    path
}

/// A key path as `Report` takes it: a string, or an `At` that is written
/// out only when there is something to report. Validation names every key
/// it reads, and nearly all of them are fine: spelling each path up front
/// was a sixth of the instructions of loading 50 processes.
pub trait KeyPath {
    fn spell(&self) -> Cow<'_, str>;
}

impl KeyPath for str {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPath for String {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyPath + ?Sized> KeyPath for &T {
    fn spell(&self) -> Cow<'_, str> {
        (**self).spell()
    }
}

/// `base.key`, not yet written out (see `KeyPath`).
#[derive(Debug, Clone, Copy)]
pub struct At<'a, 'k> {
    base: &'a str,
    key: &'k str,
}

impl KeyPath for At<'_, '_> {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Owned(self.path())
    }
}

impl At<'_, '_> {
    /// The path written out, as the base of a nested block's paths.
    pub fn path(&self) -> String {
        join(self.base, self.key)
    }
}

/// The paths of the keys of the block at `base`: `under(base)("key")` is
/// `base.key`, spelled only if needed.
pub fn under<'a>(base: &'a str) -> impl for<'k> Fn(&'k str) -> At<'a, 'k> + Copy + 'a {
    move |key| At { base, key }
}

/// Is `path` equal to `ancestor` or below it?
fn within(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// The root `""`, every path above `path`, and `path` itself. A `.` or
/// `[` inside a quoted key (see `push_key`) does not start a segment.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let inner = path.char_indices().filter_map(move |(i, c)| {
        if escaped {
            escaped = false;
            return None;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '.' | '[' if !quoted => return Some(&path[..i]),
            _ => {}
        }
        None
    });
    std::iter::once("")
        .chain(inner)
        .chain(std::iter::once(path))
}

impl Report {
    /// Whether `path` is at or below a suppressed path. A lookup per
    /// ancestor, not a scan of the set: a hostile file suppresses
    /// thousands of paths.
    pub fn is_suppressed(&self, path: &str) -> bool {
        ancestors(path).any(|a| self.suppressed.contains(a))
    }

    /// Record a problem at `path`. Suppression comes before the cap, so
    /// that what is suppressed is not counted as omitted either.
    pub fn error(&mut self, path: impl KeyPath, msg: impl AsRef<str>) {
        self.error_at(&path.spell(), msg.as_ref());
    }

    /// `error`'s body, compiled once rather than for every type of path
    /// and message.
    fn error_at(&mut self, path: &str, msg: &str) {
        if self.is_suppressed(path) {
            return;
        }
        if self.problems.len() >= MAX_LINES {
            self.omitted_problems += 1;
            return;
        }
        // The closest: the origins within reach are `path`'s ancestors,
        // sorted shortest first (a process an override added, then its key).
        let origin = self
            .origins
            .iter()
            .filter(|(p, _)| within(path, p))
            .map(|(_, var)| format!(" (set by {var})"))
            .next_back()
            .unwrap_or_default();
        let line = if path.is_empty() {
            format!("{msg}{origin}")
        } else {
            format!("{path}: {msg}{origin}")
        };
        if !self.problems.contains(&line) {
            self.problems.push(line);
        }
    }

    /// Record a problem at `path` and suppress everything else below it.
    pub fn error_and_suppress(&mut self, path: impl KeyPath, msg: impl AsRef<str>) {
        let path = path.spell();
        self.error(&*path, msg);
        self.suppressed.insert(path.into_owned());
    }

    /// Whether a problem was already recorded at exactly `path`: a check
    /// of the whole block (say, "no processes") then adds nothing, since
    /// what made it fail is already named.
    pub fn has_problem_at(&self, path: &str) -> bool {
        self.problems
            .iter()
            .any(|l| l.strip_prefix(path).is_some_and(|m| m.starts_with(": ")))
    }

    /// The items of the list at `path` whose own entry `path[i]` was not
    /// already reported (a failed `${VAR}` keeps its text): checks of the
    /// list as a whole, such as "unknown process", then say nothing more
    /// about them.
    pub fn unreported(&self, path: &str, items: Vec<String>) -> Vec<String> {
        if self.suppressed.is_empty() {
            return items;
        }
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.is_suppressed(&index(path, *i)))
            .map(|(_, item)| item)
            .collect()
    }

    /// True once no more problems will be kept (skip costly messages).
    pub fn is_full(&self) -> bool {
        self.problems.len() >= MAX_LINES
    }

    /// The problems, with a last line counting any that were not kept.
    pub fn into_problems(mut self) -> Vec<String> {
        if self.omitted_problems > 0 {
            self.problems
                .push(format!("… and {} more problems", self.omitted_problems));
        }
        self.problems
    }

    /// The warnings, with a last line counting any that were not kept.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.warnings.clone();
        if self.omitted_warnings > 0 {
            w.push(format!("… and {} more warnings", self.omitted_warnings));
        }
        w
    }

    /// Record a non-fatal finding at `path`.
    pub fn warn(&mut self, path: impl KeyPath, msg: impl AsRef<str>) {
        self.warn_at(&path.spell(), msg.as_ref());
    }

    /// `warn`'s body, compiled once (see `error_at`).
    fn warn_at(&mut self, path: &str, msg: &str) {
        if self.warnings.len() >= MAX_LINES {
            self.omitted_warnings += 1;
            return;
        }
        let line = format!("{path}: {msg}");
        if !self.warnings.contains(&line) {
            self.warnings.push(line);
        }
    }

    /// Whether an override set `path` or a block above it (`set_origin`).
    pub fn overridden(&self, path: &str) -> bool {
        ancestors(path).any(|a| self.origins.contains_key(a))
    }

    /// Remember that `path` was set by environment variable `var`.
    pub fn set_origin(&mut self, path: &str, var: &str) {
        self.origins.insert(path.to_string(), var.to_string());
    }

    /// Convert the leaf at `path` with `conv`; absent → `None`; a failed
    /// conversion is recorded and also gives `None`.
    pub fn get<T>(
        &mut self,
        v: &Option<serde_yaml::Value>,
        path: impl KeyPath,
        conv: impl FnOnce(&serde_yaml::Value) -> Result<T, String>,
    ) -> Option<T> {
        let v = v.as_ref()?;
        match conv(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// Like `get`, with a default for absent or invalid values (the
    /// problem is still recorded, so the default never reaches a `Config`).
    pub fn get_or<T>(
        &mut self,
        v: &Option<serde_yaml::Value>,
        path: impl KeyPath,
        conv: impl FnOnce(&serde_yaml::Value) -> Result<T, String>,
        default: T,
    ) -> T {
        self.get(v, path, conv).unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join("", "global"), "global");
        assert_eq!(join("global", "x"), "global.x");
        assert_eq!(index("hooks.pre_start", 2), "hooks.pre_start[2]");
        assert!(within("a.b", "a"));
        assert!(within("a[1].c", "a"));
        assert!(!within("ab", "a"));
    }

    #[test]
    fn bidirectional_controls_in_a_key_are_escaped() {
        assert_eq!(
            join("processes.web", "\u{202e}scale"),
            "processes.web.\"\\u{202e}scale\""
        );
        assert_eq!(join("env", "A\u{2066}B"), "env.\"A\\u{2066}B\"");
        assert_eq!(join("env", "é"), "env.é");
    }

    #[test]
    fn keys_with_separators_are_quoted_whole() {
        assert_eq!(join("processes", "web.v2"), "processes.\"web.v2\"");
        assert_eq!(join("env", "a\"b.c\\"), "env.\"a\\\"b.c\\\\\"");
        assert_eq!(
            process_key("a.b", "logging.file"),
            "processes.\"a.b\".logging.file"
        );
        let path = join(&join("processes", "w.[x\"y"), "scale");
        let all: Vec<_> = ancestors(&path).collect();
        assert_eq!(
            all,
            ["", "processes", "processes.\"w.[x\\\"y\"", path.as_str()]
        );
        let mut r = Report::default();
        r.error_and_suppress("processes.w", "bad");
        r.error(&path, "shown");
        assert_eq!(r.problems.len(), 2);
    }

    #[test]
    fn deferred_paths_read_as_joined_ones() {
        let p = under("processes.web");
        assert_eq!(p("scale").path(), join("processes.web", "scale"));
        assert_eq!(under("")("global").spell(), "global");
        let mut r = Report::default();
        r.error_and_suppress(p("env"), "bad");
        r.error("processes.web.env.A", "hidden by the problem above");
        r.warn(p("stdout"), "overrides");
        assert_eq!(r.problems, ["processes.web.env: bad"]);
        assert_eq!(r.warnings, ["processes.web.stdout: overrides"]);
    }

    #[test]
    fn problems_are_capped() {
        let mut r = Report::default();
        for i in 0..MAX_LINES + 5 {
            r.error_and_suppress(format!("k{i}"), "bad");
            r.warn(format!("k{i}"), "meh");
        }
        assert!(r.is_full());
        assert_eq!(r.warnings().len(), MAX_LINES + 1);
        let p = r.into_problems();
        assert_eq!(p.len(), MAX_LINES + 1);
        assert_eq!(p[MAX_LINES], "… and 5 more problems");
    }

    #[test]
    fn suppression_and_origins() {
        let mut r = Report::default();
        r.error_and_suppress("processes.web.shutdown", "expected a map");
        r.error("processes.web.shutdown.timeout", "x");
        r.set_origin("global.api_port", "SHEEPDOG_GLOBAL_API_PORT");
        r.error("global.api_port", "bad");
        r.error("global.api_port", "bad");
        assert_eq!(
            r.problems,
            vec![
                "processes.web.shutdown: expected a map".to_string(),
                "global.api_port: bad (set by SHEEPDOG_GLOBAL_API_PORT)".to_string(),
            ]
        );
    }
}
