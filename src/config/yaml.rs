//! Bytes → `serde_yaml::Value`, with every resource bounded.
//!
//! - The file is read through `take(MAX_FILE_BYTES + 1)`, so a huge file
//!   (or `/dev/zero`) costs at most 4 MiB; bigger is an error naming the size.
//! - Text must be UTF-8; the error gives the byte offset of the first bad byte.
//! - serde_yaml limits nesting depth (128) and alias jumps, but one alias
//!   to a large anchored list, repeated, still expands to billions of nodes.
//!   So the tree is built by our own visitor that counts nodes and scalar
//!   bytes *as they are produced* (aliases are replayed through it) and
//!   stops at `MAX_NODES` / `MAX_SCALAR_BYTES`.
//! - libyaml revisits every open flow collection on each token, so
//!   `[[[[…` nested 100,000 deep takes minutes before the depth limit
//!   refuses it, and 1,000 deep followed by 3 MB of `a,` seconds: nesting
//!   past that limit (`MAX_FLOW_DEPTH`) is refused by a linear scan first.
//! - Duplicate keys and YAML tags (`!foo`) are errors; `<<` merge keys are
//!   applied as YAML 1.1 (and the seed) do.
//!
//! Invariant: every function returns an error message, never panics, for
//! any input.

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value};

/// Largest configuration file accepted.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most YAML nodes one document may expand to (aliases included).
pub const MAX_NODES: usize = 100_000;
/// Most scalar bytes one document may expand to (aliases included).
pub const MAX_SCALAR_BYTES: usize = 8 * 1024 * 1024;

/// Flow collections (`[…]`, `{…}`) nested deeper than this are refused
/// before parsing: serde_yaml refuses deeper nesting of any kind anyway.
/// (What is left costs at most about 2 s of parsing for a 4 MiB file.)
const MAX_FLOW_DEPTH: usize = 128;

/// Read a configuration file as UTF-8 text, at most `MAX_FILE_BYTES`.
pub fn read_capped(path: &Path) -> Result<String, String> {
    let shown = path.display();
    // Not blocked by a FIFO that nobody writes to: PID 1 would hang in
    // open(2), deaf to SIGTERM. With a writer (`-c <(…)`) it reads as usual.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = file.map_err(|e| match std::fs::read_link(path) {
        // `ls` shows a dangling link (a ConfigMap not mounted yet): plain
        // "No such file" would send the operator looking at the wrong path.
        Ok(to) if e.kind() == std::io::ErrorKind::NotFound => std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "it is a symbolic link to {}, which does not exist",
                to.display()
            ),
        ),
        _ => e,
    });
    let file = file.map_err(|e| format!("unable to open {shown}: {e}"))?;
    if let Ok(meta) = file.metadata() {
        if meta.is_dir() {
            return Err(format!(
                "unable to read {shown}: it is a directory; expected a YAML file"
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_big(path, meta.len(), true));
        }
    }
    let fifo = file.metadata().is_ok_and(|m| m.file_type().is_fifo());
    crate::safe_open::blocking(&file).map_err(|e| format!("unable to read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unable to read {shown}: {e}"))?;
    if fifo && bytes.is_empty() {
        return Err(format!(
            "unable to read {shown}: it is a FIFO that nothing writes to; expected a YAML file"
        ));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path, bytes.len() as u64, false));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "unable to read {shown}: not UTF-8 text (invalid byte at offset {}); expected a YAML file",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `exact`: `len` is the file's size; otherwise reading stopped at `len`.
fn too_big(path: &Path, len: u64, exact: bool) -> String {
    let size = if exact {
        format!("{len} bytes")
    } else {
        format!("more than {MAX_FILE_BYTES} bytes")
    };
    format!(
        "unable to read {}: the file is {size}; the limit is {MAX_FILE_BYTES} bytes (4 MiB)",
        path.display(),
    )
}

/// Parse one YAML document into a `Value` with merge keys applied.
pub fn parse(text: &str) -> Result<Value, String> {
    let budget = Budget {
        nodes: Cell::new(0),
        bytes: Cell::new(0),
    };
    // YAML allows a leading byte-order mark (Windows editors write one);
    // serde_yaml reads it as the start of a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(line) = flow_too_deep(text) {
        return Err(format!(
            "invalid YAML: at line {line}, [...] or {{...}} nested more than {MAX_FLOW_DEPTH} deep"
        ));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let mut value = Node(&budget).deserialize(de).map_err(|e| {
        format!(
            "invalid YAML: {e}{}{}{}",
            duplicate_hint(text, &e),
            flow_hint(text, &e),
            limit_hint(&e)
        )
    })?;
    // serde_yaml's merge error has no location: find the key first (only
    // in a file that has one: no walk of the tree for everyone else).
    let mut at = String::new();
    let bad = if text.contains("<<") {
        bad_merge(&value, &mut at)
    } else {
        None
    };
    if let Some(bad) = bad {
        return Err(format!(
            "{at}: invalid YAML merge key: expected a map or a list of maps to merge, got {}",
            super::value::describe(bad)
        ));
    }
    value
        .apply_merge()
        .map_err(|e| format!("invalid YAML merge key (<<): {e}"))?;
    Ok(value)
}

/// The first `<<` whose value `apply_merge` refuses (anything but a map
/// or a list of maps), with its path in `at`. Before merging, every map
/// that a merge copies is still in the tree, so none is missed. The tree
/// is at most 128 deep (serde_yaml's limit), which bounds the recursion.
fn bad_merge<'v>(v: &'v Value, at: &mut String) -> Option<&'v Value> {
    let len = at.len();
    let found = match v {
        Value::Mapping(m) => m.iter().find_map(|(k, x)| {
            at.truncate(len);
            super::report::push_key(at, k.as_str().unwrap_or("?"));
            let merges = match x {
                Value::Mapping(_) => true,
                Value::Sequence(s) => s.iter().all(Value::is_mapping),
                _ => false,
            };
            if k.as_str() == Some("<<") && !merges {
                Some(x)
            } else {
                bad_merge(x, at)
            }
        }),
        Value::Sequence(s) => s.iter().enumerate().find_map(|(i, x)| {
            at.truncate(len);
            // Writing to a String cannot fail.
            let _ = fmt::Write::write_fmt(at, format_args!("[{i}]"));
            bad_merge(x, at)
        }),
        Value::Tagged(t) => bad_merge(&t.value, at),
        _ => None,
    };
    if found.is_none() {
        at.truncate(len);
    }
    found
}

/// The line where flow collections first nest past `MAX_FLOW_DEPTH`. A
/// rough lexer, linear in the text: it skips comments and quoted scalars,
/// and counts a bracket as opening a collection inside another one or where
/// a value starts (so `echo a[1]` in a plain scalar does not count).
fn flow_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    // Where a value may start: line start, after `- `, `: `, `? `, and in
    // a flow collection after `[`, `{`, `,`.
    let mut value_start = true;
    let mut after_space = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|n| n.is_whitespace());
        match c {
            '\n' => {
                line += 1;
                value_start = true;
            }
            ' ' | '\t' | '\r' => {}
            '#' if after_space => {
                // A comment: to the end of the line.
                while chars.next_if(|&n| n != '\n').is_some() {}
            }
            '"' | '\'' if value_start => {
                // A quoted scalar (may span lines): `\"` escapes in double
                // quotes, `''` in single ones.
                while let Some(q) = chars.next() {
                    match q {
                        '\n' => line += 1,
                        '\\' if c == '"' => {
                            chars.next_if(|&n| n != '\n');
                        }
                        _ if q == c && c == '\'' && chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        _ if q == c => break,
                        _ => {}
                    }
                }
                value_start = false;
            }
            '[' | '{' if value_start || depth > 0 => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
                value_start = true;
            }
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                value_start = false;
            }
            ',' if depth > 0 => value_start = true,
            '-' | ':' | '?' if next_is_space => value_start = true,
            _ => value_start = false,
        }
        after_space = c.is_whitespace();
    }
    None
}

/// `${VAR}` is substituted after parsing, so inside a flow collection
/// (`[...]`, `{...}`) its braces are YAML syntax: point at the quoting fix
/// when the failing line holds one.
fn flow_hint(text: &str, e: &serde_yaml::Error) -> &'static str {
    let line = e
        .location()
        .and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
    if line.is_some_and(unquoted_in_flow) {
        " (a ${VAR} inside [...] or {...} must be quoted: [\"${VAR}\"])"
    } else if line.is_some_and(bare_cron) {
        " (a value starting with * or @ must be quoted: schedule: \"*/5 * * * *\")"
    } else {
        ""
    }
}

/// `schedule: */5 * * * *` or `schedule: @daily` unquoted: to YAML `*`
/// starts an alias and `@` is reserved, and its error names neither.
fn bare_cron(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(_, v)| {
        let v = v.trim_start();
        v.starts_with('@') || v.starts_with("* ") || v.starts_with("*/")
    })
}

/// serde_yaml's own limits, which it names in a few words: which limit.
fn limit_hint(e: &serde_yaml::Error) -> &'static str {
    let msg = e.to_string();
    if msg.starts_with("recursion limit exceeded") {
        " (lists and maps nested more than 128 levels deep)"
    } else if msg.starts_with("repetition limit exceeded") {
        " (aliases expand to more than 100 times the values the file holds)"
    } else if msg.starts_with("deserializing from YAML containing more") {
        // A stray `---` at the end, often (concatenated manifests).
        "; expected one document (a line --- starts another: remove it)"
    } else {
        ""
    }
}

/// Whether `line` has a `${` outside quotes after a `[` or `{`: what
/// the hint is about. A quoted one, or one in a plain value, is fine.
fn unquoted_in_flow(line: &str) -> bool {
    line.match_indices("${").any(|(i, _)| {
        let before = &line[..i];
        let odd = |q: char| before.matches(q).count() % 2 == 1;
        !odd('"') && !odd('\'') && before.contains(['[', '{'])
    })
}

/// serde_yaml places a duplicate key's error at the start of its mapping,
/// which is the first occurrence: name the line of the second, found as the
/// same key at the same column further down (a block mapping's keys align).
fn duplicate_hint(text: &str, e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    let Some(key) = msg
        .split_once("duplicate key \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(k, _)| k)
    else {
        return String::new();
    };
    let Some(at) = e.location() else {
        return String::new();
    };
    let col = at.column().saturating_sub(1);
    let is_key = |line: &str| {
        line.get(col..).is_some_and(|rest| {
            line[..col].trim().is_empty()
                && rest
                    .strip_prefix(key)
                    .is_some_and(|after| after.trim_start().starts_with(':'))
        })
    };
    text.lines()
        .enumerate()
        .skip(at.line().saturating_sub(1))
        .filter(|(_, l)| is_key(l))
        .nth(1)
        .map_or_else(String::new, |(i, _)| format!(" (again at line {})", i + 1))
}

struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
}

impl Budget {
    fn take<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let nodes = self.nodes.get() + 1;
        let bytes = self.bytes.get().saturating_add(bytes);
        self.nodes.set(nodes);
        self.bytes.set(bytes);
        if nodes > MAX_NODES || bytes > MAX_SCALAR_BYTES {
            return Err(E::custom(format!(
                "the document expands to more than {MAX_NODES} values or {MAX_SCALAR_BYTES} bytes \
                 (aliases included); this is not a plausible configuration"
            )));
        }
        Ok(())
    }
}

fn beyond_64_bits<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "integer {n} does not fit in 64 bits; quote it if it is text: \"{n}\""
    ))
}

#[derive(Clone, Copy)]
struct Node<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.0.take(0)?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        self.0.take(0)?;
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        self.0.take(0)?;
        Ok(Value::Number(u.into()))
    }

    /// serde_yaml hands over integers beyond 64 bits this way; without it
    /// the message was serde's "invalid type: integer … as u128".
    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        match u64::try_from(u) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(beyond_64_bits(u)),
        }
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        match i64::try_from(i) {
            Ok(i) => self.visit_i64(i),
            Err(_) => Err(beyond_64_bits(i)),
        }
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        self.0.take(0)?;
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.0.take(s.len())?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.0.take(s.len())?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.take(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take(0)?;
        let mut out = Mapping::new();
        while let Some(key) = map.next_key_seed(self)? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {}",
                    super::value::describe(&key)
                )));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Mapping(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (!name) are not supported in sheepdog configuration",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_far_past_the_limit_is_refused_before_parsing() {
        let deep = format!("a: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.contains("nested more than 128 deep"), "{e}");
        let map = format!("x:\n  y: {}", "{a: ".repeat(5_000));
        assert!(flow_too_deep(&map) == Some(2), "{:?}", flow_too_deep(&map));
        // Up to the limit, the parser answers (here: the collections never end).
        let e = parse(&format!("a: {}", "[".repeat(128))).unwrap_err();
        assert!(!e.contains("nested more than 128 deep"), "{e}");
        let ok = format!("a: {}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn brackets_in_text_do_not_count_as_nesting() {
        let many = 2_000;
        let texts = [
            format!("a: \"{}\"", "[".repeat(many)),
            format!("a: '{}'", "{".repeat(many)),
            format!("a: 'it''s {}'", "[".repeat(many)),
            format!("a: \"\\\" {}\"", "[".repeat(many)),
            format!("a: b # {}", "[".repeat(many)),
            format!("a: echo x{}", "[".repeat(many)),
            "a: [\"[\"]\n".repeat(many),
            "a: |\n  [ -f x ] && echo\n".repeat(many),
        ];
        for t in &texts {
            assert_eq!(flow_too_deep(t), None, "{}", &t[..40.min(t.len())]);
        }
    }

    #[test]
    fn hints_at_quoting_variables_in_flow_collections() {
        let e = parse("ports: [${PORT:-80}]").unwrap_err();
        assert!(e.contains("must be quoted"), "{e}");
        assert!(!parse("a: [1,").unwrap_err().contains("quoted"));
        assert!(parse("ports: [\"${PORT:-80}\"]").is_ok());
        // A quoted one, or one outside a collection, is not the cause.
        for t in [
            "command: \"echo ${HOME}\" \"x\"",
            "env: {N: 99999999999999999999999, M: \"${HOME}\"}",
        ] {
            let e = parse(t).unwrap_err();
            assert!(!e.contains("must be quoted"), "{t}: {e}");
        }
    }

    #[test]
    fn hints_at_quoting_a_bare_cron_schedule() {
        for t in [
            "schedule: */5 * * * *",
            "schedule: * * * * *",
            "schedule: @daily",
        ] {
            let e = parse(t).unwrap_err();
            assert!(
                e.ends_with("must be quoted: schedule: \"*/5 * * * *\")"),
                "{t}: {e}"
            );
        }
        assert!(parse("schedule: \"*/5 * * * *\"").is_ok());
        // An alias to a missing anchor is not this mistake.
        assert!(!parse("processes: *nope").unwrap_err().contains("quoted"));
    }

    #[test]
    fn parses_plain_documents() {
        let v = parse("a: 1\nb: [x, y]\n").unwrap();
        assert_eq!(v["a"], Value::Number(1.into()));
        assert_eq!(parse("").unwrap(), Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap(), Value::Null);
    }

    #[test]
    fn rejects_bad_yaml_with_location() {
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.starts_with("invalid YAML"), "{e}");
        assert!(e.contains("line"), "{e}");
        assert!(parse("a: 1\na: 2\n")
            .unwrap_err()
            .contains("duplicate key \"a\""));
        // Located at the mapping's start by serde_yaml; the second is named.
        let e = parse("processes:\n  a: {command: x}\n  b: {command: y}\n  a: {command: z}\n")
            .unwrap_err();
        assert!(
            e.contains("duplicate key \"a\"") && e.contains("(again at line 4)"),
            "{e}"
        );
        // A flow mapping: no guess.
        let e = parse("a: {b: 1, b: 2}\n").unwrap_err();
        assert!(!e.contains("again at"), "{e}");
        assert!(parse("a: !custom 1\n").unwrap_err().contains("tags"));
        // What a second document is, said: a stray `---` at the end, say.
        for text in ["---\na: 1\n---\nb: 2\n", "# c\n\na: 1\n--- \n"] {
            let e = parse(text).unwrap_err();
            assert!(
                e.ends_with("; expected one document (a line --- starts another: remove it)"),
                "{e}"
            );
        }
        assert!(parse("\u{0}\u{1}\u{2}").is_err());
        let e = parse("a: {b: 99999999999999999999999}\n").unwrap_err();
        assert!(
            e.contains("a.b: integer 99999999999999999999999 does not fit in 64 bits"),
            "{e}"
        );
        assert!(parse("a: -99999999999999999999999\n")
            .unwrap_err()
            .contains("integer -99999999999999999999999 does not fit"));
        assert_eq!(
            parse("a: 18446744073709551615\n").unwrap()["a"],
            Value::Number(u64::MAX.into())
        );
    }

    #[test]
    fn applies_merge_keys() {
        let v = parse("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n").unwrap();
        assert_eq!(v["use"]["x"], Value::Number(1.into()));
        assert_eq!(v["use"]["y"], Value::Number(3.into()));
        assert!(parse("use: {<<: 5}\n").unwrap_err().contains("merge"));
        // Named by its path, with what was found.
        for (yaml, at) in [
            ("processes:\n  a: {command: x, <<: 5}\n", "processes.a.<<: "),
            ("a: [{b: 1}, {c: {<<: [{}, x]}}]\n", "a[1].c.<<: "),
            ("b: &b {x: 1}\na: {<<: [*b, [*b]]}\n", "a.<<: "),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(
                e.starts_with(at) && e.contains("expected a map or a list of maps"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_allowed() {
        let v = parse("\u{feff}processes: {a: {command: x}}").expect("parses");
        assert!(v.get("processes").is_some(), "{v:?}");
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.contains("nested more than 128 deep"), "{e}");
        let mut maps = String::new();
        for i in 0..1000 {
            maps.push_str(&" ".repeat(i));
            maps.push_str("k:\n");
        }
        let e = parse(&maps).unwrap_err();
        assert!(e.contains("recursion limit"), "{e}");
        assert!(e.contains("nested more than 128 levels deep"), "{e}");
    }

    #[test]
    fn billion_laughs_is_an_error() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        assert!(parse(&doc).is_err());
        // 20 × 20 × 20 values from 60 written: serde_yaml's own limit.
        let mut doc = String::from("a0: &a0 v\n");
        for i in 1..4 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                [prev.as_str(); 20].join(", ")
            ));
        }
        let e = parse(&doc).unwrap_err();
        assert!(
            e.contains("more than 100 times the values the file holds"),
            "{e}"
        );
    }

    #[test]
    fn one_big_anchor_repeated_is_an_error() {
        // ~200k-item anchor aliased 1000 times: few jumps, huge expansion.
        let mut doc = String::from("a: &a [");
        doc.push_str(&"1,".repeat(200_000));
        doc.push_str("1]\nb: [");
        doc.push_str(&"*a,".repeat(1000));
        doc.push_str("*a]\n");
        let e = parse(&doc).unwrap_err();
        assert!(e.contains("plausible"), "{e}");
        // A long string aliased many times hits the byte budget.
        let mut doc = format!("s: &s {}\nl: [", "x".repeat(1 << 20));
        doc.push_str(&"*s,".repeat(100));
        doc.push_str("*s]\n");
        assert!(parse(&doc).unwrap_err().contains("plausible"));
    }

    #[test]
    fn file_limits() {
        let dir = std::env::temp_dir().join(format!("sheepdog-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.yaml");
        std::fs::write(&big, vec![b'#'; (MAX_FILE_BYTES + 10) as usize]).unwrap();
        let e = read_capped(&big).unwrap_err();
        assert!(e.contains("4194314 bytes") && e.contains("4 MiB"), "{e}");
        let bin = dir.join("bin.yaml");
        std::fs::write(&bin, b"a: \xff\xfe\n").unwrap();
        assert!(read_capped(&bin).unwrap_err().contains("offset 3"));
        assert!(read_capped(&dir).unwrap_err().contains("directory"));
        assert!(read_capped(&dir.join("missing.yaml"))
            .unwrap_err()
            .contains("missing.yaml"));
        // A device that never ends is cut at the cap.
        let e = read_capped(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
