//! `${VAR}` substitution in the string values of the parsed YAML tree.
//!
//! Syntax, inside any string scalar (never in keys or comments):
//! - `${NAME}`: the variable's value; unset is an error naming it;
//! - `${NAME:-default}`: the default when NAME is unset **or empty** (as
//!   the seed does); the default is literal text up to the first `}`,
//!   so one holding another `${` is an error (`${A:-${B}}`);
//! - `$${`: a literal `${` (for a shell's own `${VAR}` in a command);
//! - any other `$` is left alone: `$HOME` and `$$` (the shell's pid) in a
//!   shell command reach the shell untouched, as in the seed, whose configs
//!   must run unchanged.
//!
//! NAME is `[A-Za-z_][A-Za-z0-9_]*`. Because substitution runs on the
//! parsed tree, a value can never inject YAML structure: the result is
//! always one string scalar, typed later like any other (so `"8080"` still
//! works as a port).
//!
//! Invariant: on error the scalar is reported with its key path and that
//! path suppressed, so it is reported once, unless an override
//! (`SHEEPDOG_…`) then replaces that key or a block above it: the text that
//! failed is gone, and the operator's override wins. The text is left as written:
//! as a null it read as absent, and checks of a whole list or block then
//! blamed the user for a null or a missing key they never wrote.

use std::fmt::Write;

use serde_yaml::Value;

use super::report::{push_key, Report};
use super::value::{describe, quote};
use super::EnvLookup;

/// Substitute in every string scalar under `value`. Returns the failures,
/// (key path, message), to report once overrides are applied
/// (`report_failures`).
pub fn substitute_tree(value: &mut Value, path: &str, env: &EnvLookup) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    walk(value, &mut path.to_string(), env, &mut failed);
    failed
}

/// Report each of `failed` but those whose key an override has replaced
/// since (`Report::overridden`).
pub fn report_failures(failed: Vec<(String, String)>, report: &mut Report) {
    for (path, e) in failed {
        if !report.overridden(&path) {
            report.error_and_suppress(path, e);
        }
    }
}

/// `substitute_tree` with one path buffer for the whole walk (a key is
/// pushed on the way down and cut off on the way back), not a String per
/// node: most nodes have nothing to substitute and no path to report.
fn walk(value: &mut Value, path: &mut String, env: &EnvLookup, failed: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            match substitute(s, env) {
                Ok(out) => *s = out,
                Err(e) => failed.push((path.clone(), e)),
            }
        }
        Value::Sequence(items) => {
            let len = path.len();
            for (i, item) in items.iter_mut().enumerate() {
                // Writing to a String cannot fail.
                let _ = write!(path, "[{i}]");
                walk(item, path, env, failed);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            let len = path.len();
            for (k, v) in map.iter_mut() {
                match k {
                    Value::String(key) => push_key(path, key),
                    other => push_key(path, &describe(other)),
                }
                walk(v, path, env, failed);
                path.truncate(len);
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, env, failed),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Substitute in one string.
pub fn substitute(s: &str, env: &EnvLookup) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!(
                    "unterminated \"${{\" in {}; expected ${{NAME}} or ${{NAME:-default}} (write $${{ for a literal ${{)",
                    quote(s)
                )
            })?;
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The text between `${` and `}`.
fn expand(inner: &str, env: &EnvLookup) -> Result<String, String> {
    let (name, default) = match inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        None => (inner, None),
        Some(i) => match inner[i..].strip_prefix(":-") {
            // `${A:-${B}}` would end at B's `}`: "value-of-A}" or a
            // literal "${B}", silently. Said instead, as compose users
            // write it.
            Some(d) if d.contains("${") => {
                return Err(format!(
                    "nested substitution in {}; a default is literal text up to the first }} \
                     and cannot hold another ${{NAME}}",
                    quote(&format!("${{{inner}}}}}"))
                ))
            }
            Some(d) => (&inner[..i], Some(d)),
            None => {
                return Err(format!(
                    "invalid substitution {}; expected ${{NAME}} or ${{NAME:-default}} \
                     with NAME made of letters, digits and _",
                    quote(&format!("${{{inner}}}"))
                ))
            }
        },
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid {
        return Err(format!(
            "invalid variable name {} in {}; expected a name like APP_ENV",
            quote(name),
            quote(&format!("${{{inner}}}"))
        ));
    }
    let value = env(name)?;
    match (value, default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set; set it or give a default: ${{{name}:-default}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Result<Option<String>, String> {
        Ok(match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            "INJECT" => Some("x\n  evil: true\n- [".into()),
            "BAD" => return Err("BAD is not valid UTF-8".into()),
            _ => None,
        })
    }

    fn sub(s: &str) -> Result<String, String> {
        substitute(s, &env)
    }

    #[test]
    fn expands_and_defaults() {
        assert_eq!(sub("${HOST}:5432").unwrap(), "db.local:5432");
        assert_eq!(sub("${NOPE:-fallback}").unwrap(), "fallback");
        assert_eq!(sub("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(sub("${EMPTY}").unwrap(), "");
        assert_eq!(sub("${NOPE:-}").unwrap(), "");
        assert_eq!(sub("${HOST:-x}${HOST}").unwrap(), "db.localdb.local");
        assert_eq!(sub("${NOPE:-a b:c}").unwrap(), "a b:c");
    }

    #[test]
    fn dollars() {
        assert_eq!(sub("cost $$5").unwrap(), "cost $$5");
        assert_eq!(sub("echo $$ > pid").unwrap(), "echo $$ > pid");
        assert_eq!(sub("$$${HOST}").unwrap(), "$${HOST}");
        assert_eq!(sub("echo $HOME $1 $").unwrap(), "echo $HOME $1 $");
        assert_eq!(sub("$${HOST}").unwrap(), "${HOST}");
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(sub("${NOPE}").unwrap_err().contains("NOPE is not set"));
        assert!(sub("${HOST").unwrap_err().contains("unterminated"));
        assert!(sub("${1X}").unwrap_err().contains("invalid variable name"));
        assert!(sub("${}").unwrap_err().contains("invalid variable name"));
        assert!(sub("${A-b}").unwrap_err().contains("invalid substitution"));
        // Not "db}" or a literal "${FALLBACK}".
        for s in ["${HOST:-${NOPE}}", "${NOPE:-${HOST}}", "${NOPE:-x$${HOST}}"] {
            let e = sub(s).unwrap_err();
            assert!(e.starts_with("nested substitution in \"${"), "{e}");
        }
        assert_eq!(sub("${NOPE:-a$b{c}").unwrap(), "a$b{c");
        // What is quoted is escaped and cut: one problem, one line.
        let e = sub("${A x\n\u{1b}[2J}").unwrap_err();
        assert!(
            e.starts_with(r#"invalid substitution "${A x\n\u{1b}[2J}";"#),
            "{e}"
        );
        let e = sub(&format!("${{1{}}}", "x".repeat(1000))).unwrap_err();
        assert!(e.len() < 300, "{e}");
        assert!(sub("${BAD}").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn tree_substitution_touches_only_string_values() {
        let mut v: Value = serde_yaml::from_str(
            "'${HOST}': ${HOST}\nlist: [a, '${INJECT}']\nn: 5\nbad: ${NOPE}\n",
        )
        .unwrap();
        let mut r = Report::default();
        report_failures(substitute_tree(&mut v, "", &env), &mut r);
        assert_eq!(v["${HOST}"], Value::String("db.local".into()));
        assert_eq!(v["list"][1], Value::String("x\n  evil: true\n- [".into()));
        assert_eq!(v["n"], Value::Number(5.into()));
        assert_eq!(v["bad"], Value::String("${NOPE}".into()));
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].starts_with("bad: environment variable NOPE is not set"));
    }
}
