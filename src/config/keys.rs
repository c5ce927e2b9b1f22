//! The structural pass: every key is known, every block is the right kind
//! of node. Runs on the `Value` tree before `raw` decodes it.
//!
//! Each finding names the full key path, and unknown keys get a
//! did-you-mean from the valid keys at that level. The offending node is
//! then *pruned* (unknown keys removed, mis-shaped blocks replaced by null)
//! and its path suppressed, so decoding still succeeds and the validation
//! stage can report every other problem in the same run.
//!
//! Invariant: after `check`, `RawConfig::take` drops nothing, because every
//! struct node is a map (or null) with only known string keys, and every
//! map/list node has the right kind.

use std::fmt::Write as _;

use serde_yaml::Value;

use super::report::{self, join, Report};
use super::shape::Shape;
use super::suggest;
use super::value::describe;

/// Blocks with at most this many keys list them all in an unknown-key
/// message; bigger ones (a process, `global`) point at the docs instead.
const LISTED: usize = 16;

/// Check `value` against `shape`, reporting and pruning what does not fit.
pub fn check(value: &mut Value, shape: &Shape, path: &str, report: &mut Report) {
    // One path buffer for the whole walk, extended and cut back at each
    // level: a key costs no allocation unless it is reported.
    let mut path = path.to_string();
    walk(value, shape, &mut path, report);
}

fn walk(value: &mut Value, shape: &Shape, path: &mut String, report: &mut Report) {
    match shape {
        Shape::Leaf => {}
        Shape::Struct(fields) => {
            let Some(map) = expect_map(value, path, report) else {
                return;
            };
            let mut remove = Vec::new();
            for (k, v) in map.iter_mut() {
                let Value::String(key) = k else {
                    report.error(
                        path.as_str(),
                        format!(
                            "key {} is not a name; expected one of the keys of {}",
                            describe(k),
                            where_(path)
                        ),
                    );
                    remove.push(k.clone());
                    continue;
                };
                match fields.iter().find(|(n, _)| n == key) {
                    Some((_, sub)) => below(path, key, |p| walk(v, sub, p, report)),
                    // A top-level `x-…` block holds YAML anchors for the
                    // rest of the file, as in Compose: read, then dropped.
                    None if path.is_empty() && key.starts_with("x-") => remove.push(k.clone()),
                    None => {
                        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                        // Past the cap nothing more is printed: skip the
                        // distance sums (a file of 40k bad keys).
                        let hint = match suggest::known_as(key, &names) {
                            _ if report.is_full() => String::new(),
                            Some(ours) => format!("; did you mean {ours:?}?"),
                            None => suggest::hint(key, names.iter().copied()),
                        };
                        let msg = if !hint.is_empty() {
                            format!("unknown key{hint}")
                        } else if names.len() <= LISTED {
                            format!("unknown key; expected one of {}", names.join(", "))
                        } else {
                            format!(
                                "unknown key; expected one of the {} keys of {} (see docs/configuration.md)",
                                names.len(),
                                where_(path)
                            )
                        };
                        report.error_and_suppress(join(path, key), msg);
                        remove.push(k.clone());
                    }
                }
            }
            for k in remove {
                map.remove(&k);
            }
        }
        Shape::Map(inner) => {
            let Some(map) = expect_map(value, path, report) else {
                return;
            };
            let mut remove = Vec::new();
            for (k, v) in map.iter_mut() {
                match k {
                    Value::String(key) => below(path, key, |p| walk(v, inner, p, report)),
                    other => {
                        // `123:` and `true:` are YAML numbers and booleans:
                        // say how to write them as the name they look like.
                        let shown = describe(other);
                        let hint = match other {
                            Value::Number(_) | Value::Bool(_) => {
                                format!(" (quote it: \"{shown}\")")
                            }
                            _ => String::new(),
                        };
                        report.error(
                            path.as_str(),
                            format!("key {shown} is not a name; expected a string{hint}"),
                        );
                        remove.push(k.clone());
                    }
                }
            }
            for k in remove {
                map.remove(&k);
            }
        }
        Shape::Seq(inner) => match value {
            Value::Null => {}
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    // Writing to a String cannot fail.
                    let _ = write!(path, "[{i}]");
                    walk(item, inner, path, report);
                    path.truncate(len);
                }
            }
            other => {
                report.error_and_suppress(
                    path.as_str(),
                    format!("expected a list, got {}", describe(other)),
                );
                *other = Value::Null;
            }
        },
    }
}

/// Run `f` with `path` extended by `.key` (or `key` at the top), as
/// `report::join` spells it, then cut it back.
fn below(path: &mut String, key: &str, f: impl FnOnce(&mut String)) {
    let len = path.len();
    report::push_key(path, key);
    f(path);
    path.truncate(len);
}

fn where_(path: &str) -> &str {
    if path.is_empty() {
        "the top level (version, global, hooks, processes)"
    } else {
        path
    }
}

fn expect_map<'v>(
    value: &'v mut Value,
    path: &str,
    report: &mut Report,
) -> Option<&'v mut serde_yaml::Mapping> {
    match value {
        Value::Mapping(m) => Some(m),
        Value::Null => None,
        other => {
            let what = if path.is_empty() {
                "the configuration must be a map with keys version, global, hooks, processes"
                    .to_string()
            } else {
                format!("expected a map, got {}", describe(other))
            };
            report.error_and_suppress(path, what);
            *other = Value::Null;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shape::CONFIG;

    fn run(text: &str) -> (Value, Vec<String>) {
        let mut v: Value = serde_yaml::from_str(text).unwrap();
        let mut r = Report::default();
        check(&mut v, &CONFIG, "", &mut r);
        (v, r.problems)
    }

    #[test]
    fn unknown_keys_name_the_path_and_suggest() {
        let (v, p) = run("global: {shutdown_timout: 5}\nprocesses: {web: {comand: x, scale: 2}}\n");
        assert_eq!(
            p,
            vec![
                "global.shutdown_timout: unknown key; did you mean \"shutdown_timeout\"?",
                "processes.web.comand: unknown key; did you mean \"command\"?",
            ]
        );
        assert!(v["processes"]["web"].get("comand").is_none());
        assert_eq!(v["processes"]["web"]["scale"], Value::from(2));
    }

    #[test]
    fn unknown_without_a_close_match_lists_the_keys_or_points_at_the_docs() {
        let (_, p) = run("processes: {web: {shutdown: {banana: 1}}}\n");
        assert_eq!(p.len(), 1);
        let Some(Shape::Map(process)) = CONFIG.field("processes") else {
            panic!("processes is a map of processes");
        };
        let shutdown = process.field("shutdown").unwrap();
        let listed = shutdown.field_names().join(", ");
        assert!(
            listed.starts_with("signal, timeout, kill_signal"),
            "{listed}"
        );
        assert_eq!(
            p[0],
            format!("processes.web.shutdown.banana: unknown key; expected one of {listed}")
        );
        // A process has too many keys to list in one line.
        let (_, p) = run("processes: {web: {command: x, banana: 1}}\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("processes.web.banana: unknown key; expected one of the ")
                && p[0].ends_with(" keys of processes.web (see docs/configuration.md)"),
            "{}",
            p[0]
        );
        let (_, p) = run("porcesses: {}\n");
        assert!(p[0].contains("did you mean \"processes\""), "{p:?}");
    }

    #[test]
    fn wrong_kinds_are_pruned() {
        let (v, p) =
            run("global: 5\nhooks: {pre_start: {name: x}}\nprocesses: {web: {shutdown: [1]}}\n");
        assert_eq!(
            p,
            vec![
                "global: expected a map, got 5",
                "hooks.pre_start: expected a list, got a map",
                "processes.web.shutdown: expected a map, got a list",
            ]
        );
        // Pruned to null, so decoding sees them as absent.
        assert!(v["global"].is_null() && v["hooks"]["pre_start"].is_null());
        assert!(v["processes"]["web"]["shutdown"].is_null());
        let (_, p) = run("- a\n- b\n");
        assert!(p[0].contains("must be a map"));
        let (v, p) = run("processes: {1: {command: x}}\n");
        assert!(p[0].contains("key 1 is not a name"), "{p:?}");
        assert_eq!(v["processes"].as_mapping().map(|m| m.len()), Some(0));
    }

    #[test]
    fn lists_of_blocks_are_checked_per_item() {
        let (_, p) = run("hooks: {pre-start: [{name: a, command: x}, {name: b, comand: y}]}\n");
        assert_eq!(
            p,
            vec!["hooks.pre-start[1].comand: unknown key; did you mean \"command\"?"]
        );
    }
}
